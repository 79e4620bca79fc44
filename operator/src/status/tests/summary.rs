//! Tables of the summary conditions: Progressing, Degraded and Ready.

use super::*;
use crate::desired::ollama::ExistingClaim;
use crate::status::summary::{degraded, progressing, ready};

/// A component condition that is not `True`.
fn down(type_: &'static str, status: Status, reason: &'static str) -> Draft {
    Draft::new(type_, status, reason, format!("{reason} happened"))
}

#[test]
fn progressing_while_a_rollout_or_a_pull_runs() {
    let rollout = (Status::True, r::ROLLOUT_IN_PROGRESS);
    let complete = (Status::False, r::ROLLOUT_COMPLETE);
    let stale = |mut w: Workload| {
        w.observed_current = false;
        w
    };
    let outdated = |mut w: Workload| {
        w.counts.updated -= 1;
        w
    };
    let rows = [
        ("all current", all_good(), complete),
        ("no workloads", Observed::default(), complete),
        (
            "runner template not seen yet",
            Observed {
                runner: Some(stale(workload(2, 2))),
                ..all_good()
            },
            rollout,
        ),
        (
            "runners not updated",
            Observed {
                runner: Some(outdated(workload(2, 2))),
                ..all_good()
            },
            rollout,
        ),
        (
            "runners not ready",
            Observed {
                runner: Some(workload(2, 1)),
                ..all_good()
            },
            rollout,
        ),
        (
            "Ollama template not seen yet",
            Observed {
                ollama: Some(stale(workload(1, 1))),
                ..all_good()
            },
            rollout,
        ),
        (
            "Ollama not ready",
            Observed {
                ollama: Some(workload(1, 0)),
                ..all_good()
            },
            rollout,
        ),
        (
            "a pull runs",
            Observed {
                pull_job: Some(pull_job(false, None)),
                ..all_good()
            },
            (Status::True, r::MODEL_PULL_IN_PROGRESS),
        ),
        (
            "a rollout wins over a pull",
            Observed {
                runner: Some(workload(2, 1)),
                pull_job: Some(pull_job(false, None)),
                ..all_good()
            },
            rollout,
        ),
        (
            "the pull failed",
            Observed {
                pull_job: Some(pull_job(false, Some("x"))),
                ..all_good()
            },
            complete,
        ),
        (
            "the pull succeeded",
            Observed {
                pull_job: Some(pull_job(true, None)),
                ..all_good()
            },
            complete,
        ),
    ];
    for (case, observed, expected) in rows {
        let draft = progressing(&observed, "1/2 models present");
        assert_eq!(draft.type_, t::PROGRESSING);
        assert_eq!(verdict(&draft), expected, "{case}");
    }
    let pulling = Observed {
        pull_job: Some(pull_job(false, None)),
        ..all_good()
    };
    assert_eq!(
        progressing(&pulling, "1/2 models present").message,
        "1/2 models present"
    );
    let rolling = Observed {
        runner: Some(workload(2, 1)),
        ..all_good()
    };
    assert_eq!(progressing(&rolling, "").message, "runners 1/2");
}

/// A change to the worker, the observation and the components before Degraded is drawn.
type Change = fn(&mut LearningWorker, &mut Observed, &mut Components);

/// A row of the Degraded table: case, apply error, change, expected status and reason.
type DegradedRow = (
    &'static str,
    Option<&'static str>,
    Change,
    (Status, &'static str),
);

/// A row of the Ready table: case, suspended, apply error, change of the components,
/// expected status and reason, part of the message.
type ReadyRow = (
    &'static str,
    bool,
    Option<&'static str>,
    fn(&mut Components),
    (Status, &'static str),
    &'static str,
);

#[test]
fn degraded_names_the_first_cause_that_needs_attention() {
    let as_expected = (Status::False, r::AS_EXPECTED);
    let rows: Vec<DegradedRow> = vec![
        ("all well", None, |_, _, _| {}, as_expected),
        (
            "the apply failed, before everything else",
            Some("forbidden"),
            |_, o, _| o.runner_pods = vec![issue(r::OOM_KILLED)],
            (Status::True, r::APPLY_FAILED),
        ),
        (
            "a runner pod before an Ollama pod",
            None,
            |_, o, _| {
                o.runner_pods = vec![issue(r::OOM_KILLED)];
                o.ollama_pods = vec![issue(r::UNSCHEDULABLE)];
            },
            (Status::True, r::OOM_KILLED),
        ),
        (
            "an Ollama pod",
            None,
            |_, o, _| o.ollama_pods = vec![issue(r::UNSCHEDULABLE)],
            (Status::True, r::UNSCHEDULABLE),
        ),
        (
            "the queue",
            None,
            |_, _, c| {
                c.queue_reachable =
                    down(t::QUEUE_REACHABLE, Status::False, r::DATABASE_UNREACHABLE);
                c.runners_healthy = down(t::RUNNERS_HEALTHY, Status::False, r::HEALTH_DEGRADED);
            },
            (Status::True, r::DATABASE_UNREACHABLE),
        ),
        (
            "the queue unknown is no cause",
            None,
            |_, _, c| c.queue_reachable = down(t::QUEUE_REACHABLE, Status::Unknown, r::NO_RUNNERS),
            as_expected,
        ),
        (
            "the runners' health",
            None,
            |_, _, c| {
                c.runners_healthy = down(t::RUNNERS_HEALTHY, Status::False, r::HEALTH_DEGRADED)
            },
            (Status::True, r::HEALTH_DEGRADED),
        ),
        (
            "unhealthy because suspended",
            None,
            |lw, _, c| {
                lw.spec.suspend = true;
                c.runners_healthy = down(t::RUNNERS_HEALTHY, Status::False, r::SUSPENDED);
            },
            as_expected,
        ),
        (
            "a failed pull",
            None,
            |_, _, c| c.models_ready = down(t::MODELS_READY, Status::False, r::MODEL_PULL_FAILED),
            (Status::True, r::MODEL_PULL_FAILED),
        ),
        (
            "missing models are no cause",
            None,
            |_, _, c| c.models_ready = down(t::MODELS_READY, Status::False, r::MODELS_MISSING),
            as_expected,
        ),
        (
            "a refused storage change",
            None,
            |_, o, c| {
                o.models_claim = Some(ExistingClaim {
                    size: Some("10Ti".into()),
                    storage_class_name: None,
                });
                c.gpu_accelerated = down(t::GPU_ACCELERATED, Status::False, r::CPU_FALLBACK);
            },
            (Status::True, r::STORAGE_CHANGE_REFUSED),
        ),
        (
            "an external Ollama has no claim to refuse",
            None,
            |lw, o, _| {
                lw.spec.ollama.mode = learning_crds::ollama::OllamaMode::External;
                o.models_claim = Some(ExistingClaim {
                    size: Some("10Ti".into()),
                    storage_class_name: None,
                });
            },
            as_expected,
        ),
        (
            "a CPU fallback",
            None,
            |_, _, c| c.gpu_accelerated = down(t::GPU_ACCELERATED, Status::False, r::CPU_FALLBACK),
            (Status::True, r::CPU_FALLBACK),
        ),
        (
            "missing device groups are a warning, no cause",
            None,
            |_, _, c| {
                c.gpu_accelerated =
                    down(t::GPU_ACCELERATED, Status::False, r::DEVICE_GROUPS_MISSING)
            },
            as_expected,
        ),
    ];
    for (case, apply_error, change, expected) in rows {
        let (mut lw, mut observed, mut components) =
            (worker("managed"), all_good(), healthy_components());
        change(&mut lw, &mut observed, &mut components);
        let draft = degraded(&lw, &observed, apply_error, &components);
        assert_eq!(draft.type_, t::DEGRADED);
        assert_eq!(verdict(&draft), expected, "{case}");
    }
}

/// Too few runners, without a pod-level cause.
fn unavailable() -> Draft {
    down(
        t::RUNNERS_AVAILABLE,
        Status::False,
        r::MINIMUM_REPLICAS_UNAVAILABLE,
    )
}

#[test]
fn ready_names_the_blocker_dependencies_before_their_dependents() {
    let rows: Vec<ReadyRow> = vec![
        (
            "all well",
            false,
            None,
            |_| {},
            (Status::True, r::READY),
            "2/2 runners processing the queue",
        ),
        (
            "suspended",
            true,
            Some("x"),
            |_| {},
            (Status::False, r::SUSPENDED),
            "spec.suspend is true",
        ),
        (
            "the apply failed",
            false,
            Some("forbidden"),
            |_| {},
            (Status::False, r::APPLY_FAILED),
            "forbidden",
        ),
        (
            "a runner pod problem before a dependency",
            false,
            None,
            |c| {
                c.runners_available =
                    down(t::RUNNERS_AVAILABLE, Status::False, r::IMAGE_PULL_BACK_OFF);
                c.ollama_ready = down(t::OLLAMA_READY, Status::False, r::UNSCHEDULABLE);
            },
            (Status::False, r::IMAGE_PULL_BACK_OFF),
            "RunnersAvailable: ImagePullBackOff happened",
        ),
        (
            "Ollama before the runners waiting for it",
            false,
            None,
            |c| {
                c.runners_available = unavailable();
                c.ollama_ready = down(t::OLLAMA_READY, Status::False, r::OLLAMA_STARTING);
            },
            (Status::False, r::OLLAMA_STARTING),
            "OllamaReady: OllamaStarting happened",
        ),
        (
            "the database before Ollama",
            false,
            None,
            |c| {
                c.queue_reachable =
                    down(t::QUEUE_REACHABLE, Status::False, r::DATABASE_UNREACHABLE);
                c.ollama_ready = down(t::OLLAMA_READY, Status::False, r::OLLAMA_STARTING);
            },
            (Status::False, r::DATABASE_UNREACHABLE),
            "QueueReachable: ",
        ),
        (
            "models unknown block",
            false,
            None,
            |c| {
                c.runners_available = unavailable();
                c.models_ready = down(t::MODELS_READY, Status::Unknown, r::OLLAMA_UNREACHABLE);
            },
            (Status::False, r::OLLAMA_UNREACHABLE),
            "ModelsReady: ",
        ),
        (
            "the queue unknown is no dependency down: then the runners",
            false,
            None,
            |c| {
                c.runners_available = unavailable();
                c.queue_reachable = down(t::QUEUE_REACHABLE, Status::Unknown, r::NO_RUNNERS);
            },
            (Status::False, r::MINIMUM_REPLICAS_UNAVAILABLE),
            "RunnersAvailable: ",
        ),
        (
            "unhealthy runners",
            false,
            None,
            |c| {
                c.runners_healthy = down(t::RUNNERS_HEALTHY, Status::Unknown, r::HEALTH_UNREACHABLE)
            },
            (Status::False, r::HEALTH_UNREACHABLE),
            "RunnersHealthy: ",
        ),
        (
            "the queue unknown, last",
            false,
            None,
            |c| c.queue_reachable = down(t::QUEUE_REACHABLE, Status::Unknown, r::NO_RUNNERS),
            (Status::False, r::NO_RUNNERS),
            "QueueReachable: ",
        ),
        (
            "the GPU does not block",
            false,
            None,
            |c| c.gpu_accelerated = down(t::GPU_ACCELERATED, Status::False, r::CPU_FALLBACK),
            (Status::True, r::READY),
            "processing the queue",
        ),
    ];
    for (case, suspended, apply_error, change, expected, message) in rows {
        let mut components = healthy_components();
        change(&mut components);
        let draft = ready(suspended, apply_error, &components, Some(&workload(2, 2)));
        assert_eq!(draft.type_, t::READY);
        assert_eq!(verdict(&draft), expected, "{case}");
        assert!(draft.message.contains(message), "{case}: {}", draft.message);
    }
}
