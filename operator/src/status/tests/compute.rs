//! `compute` end to end: the conditions together, their order, the summaries drawn from the
//! components, the status fields beside the conditions, and which changes are transitions.

use super::*;
use crate::status::{compute, invalid};
use learning_crds::validate::SpecError;

#[test]
fn everything_fine_is_ready() {
    let o = compute(&example("amd-gpu.yaml"), &all_good(), None, now());
    for (type_, reason) in [
        (t::READY, r::READY),
        (t::RUNNERS_AVAILABLE, r::MINIMUM_REPLICAS_AVAILABLE),
        (t::RUNNERS_HEALTHY, r::HEALTHY),
        (t::QUEUE_REACHABLE, r::QUEUE_VISIBLE),
        (t::OLLAMA_READY, r::OLLAMA_AVAILABLE),
        (t::MODELS_READY, r::MODELS_PRESENT),
        (t::GPU_ACCELERATED, r::MODELS_ON_GPU),
    ] {
        assert_eq!(summary(&o, type_), s("True", reason), "{type_}");
    }
    assert_eq!(summary(&o, t::DEGRADED), s("False", r::AS_EXPECTED));
    assert_eq!(summary(&o, t::PROGRESSING), s("False", r::ROLLOUT_COMPLETE));
    assert_eq!(o.status.observed_generation, Some(3));
    assert_eq!(o.status.runners_ready.as_deref(), Some("2/2"));
    assert_eq!(o.status.queue.as_ref().unwrap().visible, 4);
    assert_eq!(o.status.ollama.as_ref().unwrap().phase, "Ready");
    let order: Vec<&str> = o
        .status
        .conditions
        .iter()
        .map(|c| c.type_.as_str())
        .collect();
    assert_eq!(order, t::ALL);
    assert_eq!(
        o.transitions.len(),
        9,
        "first status: every condition is new"
    );
}

#[test]
fn each_runner_pod_failure_becomes_the_reason_of_runners_available_degraded_and_ready() {
    for reason in [
        r::UNSCHEDULABLE,
        r::IMAGE_PULL_BACK_OFF,
        r::CRASH_LOOP_BACK_OFF,
        r::OOM_KILLED,
        r::CREATE_CONTAINER_CONFIG_ERROR,
    ] {
        let mut obs = all_good();
        obs.runner = Some(workload(2, 1));
        obs.runner_pods = vec![issue(reason)];
        let o = compute(&example("amd-gpu.yaml"), &obs, None, now());
        assert_eq!(summary(&o, t::RUNNERS_AVAILABLE), s("False", reason));
        assert_eq!(summary(&o, t::DEGRADED), s("True", reason));
        assert_eq!(summary(&o, t::READY), s("False", reason));
        assert!(cond(&o, t::RUNNERS_AVAILABLE)
            .message
            .contains("pod school-a-x: why"));
        assert!(o
            .transitions
            .iter()
            .any(|tr| tr.condition.type_ == t::DEGRADED && tr.warning));
    }
}

#[test]
fn each_ollama_pod_failure_becomes_the_reason_of_ollama_ready() {
    for reason in [
        r::UNSCHEDULABLE,
        r::IMAGE_PULL_BACK_OFF,
        r::CRASH_LOOP_BACK_OFF,
        r::OOM_KILLED,
    ] {
        // Realistic: the runners' /readyz is 503 until Ollama answers, so no runner is
        // available either; their health report is degraded by its Ollama checks while the
        // database checks pass.
        let mut obs = all_good();
        obs.runner = Some(workload(2, 0));
        obs.health = Probe::Ok(report_without_ollama());
        obs.ollama = Some(workload(1, 0));
        obs.ollama_pods = vec![issue(reason)];
        obs.ollama_version = Probe::Skipped;
        obs.tags = Probe::Skipped;
        obs.ps = Probe::Skipped;
        let o = compute(&example("amd-gpu.yaml"), &obs, None, now());
        assert_eq!(summary(&o, t::OLLAMA_READY), s("False", reason));
        assert_eq!(
            summary(&o, t::RUNNERS_AVAILABLE),
            s("False", r::MINIMUM_REPLICAS_UNAVAILABLE)
        );
        assert_eq!(summary(&o, t::DEGRADED), s("True", reason));
        assert_eq!(
            summary(&o, t::READY),
            s("False", reason),
            "Ready names the dependency, not the runners waiting for it"
        );
        assert!(cond(&o, t::READY).message.starts_with("OllamaReady: "));
        assert_eq!(o.status.ollama.as_ref().unwrap().phase, "NotReady");
    }
}

#[test]
fn the_runners_ollama_checks_do_not_make_the_queue_unreachable() {
    let mut obs = all_good();
    obs.health = Probe::Ok(report_without_ollama());
    let o = compute(&example("amd-gpu.yaml"), &obs, None, now());
    assert_eq!(summary(&o, t::QUEUE_REACHABLE), s("True", r::QUEUE_VISIBLE));
    assert_eq!(
        summary(&o, t::RUNNERS_HEALTHY),
        s("False", r::HEALTH_DEGRADED)
    );
    assert!(cond(&o, t::RUNNERS_HEALTHY)
        .message
        .contains("ollama (unreachable"));
}

#[test]
fn ready_names_the_dependency_the_unready_runners_wait_for() {
    let lw = example("amd-gpu.yaml");
    let check = |name: &str, status: &str, detail: &str| HealthCheck {
        check: name.into(),
        status: status.into(),
        detail: detail.into(),
    };
    // Runners unready (503 on /readyz) in every case below, without a pod-level cause.
    let unready = || {
        let mut obs = all_good();
        obs.runner = Some(workload(2, 0));
        obs
    };

    let mut obs = unready();
    obs.tags = Probe::Ok(vec!["qwen2.5vl:3b".into()]);
    obs.pull_job = Some(PullJob {
        name: "school-a-model-pull-1".into(),
        models: vec!["gpt-oss:20b".into()],
        succeeded: false,
        failed: None,
    });
    let o = compute(&lw, &obs, None, now());
    assert_eq!(summary(&o, t::READY), s("False", r::MODEL_PULL_IN_PROGRESS));

    let mut obs = unready();
    obs.health = Probe::Ok(report_without_ollama());
    obs.ollama = Some(workload(1, 0));
    obs.ollama_version = Probe::Skipped;
    obs.tags = Probe::Skipped;
    obs.ps = Probe::Skipped;
    let o = compute(&lw, &obs, None, now());
    assert_eq!(summary(&o, t::READY), s("False", r::OLLAMA_STARTING));

    let mut obs = unready();
    obs.health = Probe::Ok(HealthReport {
        status: HealthState::Degraded,
        current_role: None,
        checks: vec![check("db_role", "failed", "db_connect_failed")],
    });
    let o = compute(&lw, &obs, None, now());
    assert_eq!(summary(&o, t::READY), s("False", r::DATABASE_UNREACHABLE));

    // Everything they need is there: then the runners themselves are the reason.
    let o = compute(&lw, &unready(), None, now());
    assert_eq!(
        summary(&o, t::READY),
        s("False", r::MINIMUM_REPLICAS_UNAVAILABLE)
    );

    // A runner pod problem of their own wins over a dependency.
    let mut obs = unready();
    obs.runner_pods = vec![issue(r::IMAGE_PULL_BACK_OFF)];
    obs.ollama = Some(workload(1, 0));
    obs.ollama_pods = vec![issue(r::UNSCHEDULABLE)];
    obs.ollama_version = Probe::Skipped;
    let o = compute(&lw, &obs, None, now());
    assert_eq!(summary(&o, t::READY), s("False", r::IMAGE_PULL_BACK_OFF));
}

#[test]
fn health_report_drives_runners_healthy_and_queue_reachable() {
    let check = |name: &str, status: &str, detail: &str| HealthCheck {
        check: name.into(),
        status: status.into(),
        detail: detail.into(),
    };
    let table = vec![
        (
            "db down",
            vec![check("db_role", "failed", "db_connect_failed")],
            s("False", r::HEALTH_DEGRADED),
            s("False", r::DATABASE_UNREACHABLE),
        ),
        (
            "queue hidden",
            vec![
                check("db_role", "ok", "x"),
                check("queue_visibility", "failed", "no grant"),
            ],
            s("False", r::HEALTH_DEGRADED),
            s("False", r::QUEUE_CHECK_FAILED),
        ),
    ];
    for (case, checks, healthy, queue) in table {
        let mut obs = all_good();
        obs.health = Probe::Ok(HealthReport {
            status: HealthState::Degraded,
            current_role: None,
            checks,
        });
        let o = compute(&example("amd-gpu.yaml"), &obs, None, now());
        assert_eq!(summary(&o, t::RUNNERS_HEALTHY), healthy, "{case}");
        assert_eq!(summary(&o, t::QUEUE_REACHABLE), queue, "{case}");
        assert_eq!(cond(&o, t::READY).status, "False", "{case}");
        assert_eq!(cond(&o, t::DEGRADED).status, "True", "{case}");
    }
    let mut obs = all_good();
    obs.health = Probe::Failed("connection refused".into());
    let o = compute(&example("amd-gpu.yaml"), &obs, None, now());
    assert_eq!(
        summary(&o, t::RUNNERS_HEALTHY),
        s("Unknown", r::HEALTH_UNREACHABLE)
    );
    assert_eq!(summary(&o, t::READY), s("False", r::HEALTH_UNREACHABLE));
}

#[test]
fn models_pull_progress_failure_and_cpu_fallback() {
    let lw = example("amd-gpu.yaml");
    let job = |failed: Option<&str>| PullJob {
        name: "school-a-model-pull-1".into(),
        models: vec!["gpt-oss:20b".into()],
        succeeded: false,
        failed: failed.map(Into::into),
    };
    let mut obs = all_good();
    obs.tags = Probe::Ok(vec!["qwen2.5vl:3b".into()]);
    obs.pull_job = Some(job(None));
    let o = compute(&lw, &obs, None, now());
    assert_eq!(
        summary(&o, t::MODELS_READY),
        s("False", r::MODEL_PULL_IN_PROGRESS)
    );
    assert_eq!(
        summary(&o, t::PROGRESSING),
        s("True", r::MODEL_PULL_IN_PROGRESS)
    );
    assert_eq!(
        o.status.model_pull.as_ref().unwrap().progress.as_deref(),
        Some("1/2 models present")
    );
    assert!(!o.status.models[1].present);

    obs.pull_job = Some(job(Some("BackoffLimitExceeded")));
    let o = compute(&lw, &obs, None, now());
    assert_eq!(
        summary(&o, t::MODELS_READY),
        s("False", r::MODEL_PULL_FAILED)
    );
    assert_eq!(summary(&o, t::DEGRADED), s("True", r::MODEL_PULL_FAILED));
    assert_eq!(o.status.model_pull.as_ref().unwrap().phase, "Failed");

    let mut obs = all_good();
    obs.ps = Probe::Ok(vec![LoadedModel {
        name: "gpt-oss:20b".into(),
        size: 100,
        size_vram: 30,
    }]);
    let o = compute(&lw, &obs, None, now());
    assert_eq!(summary(&o, t::GPU_ACCELERATED), s("False", r::CPU_FALLBACK));
    assert_eq!(summary(&o, t::DEGRADED), s("True", r::CPU_FALLBACK));
    assert_eq!(cond(&o, t::READY).status, "True", "slow but working");
    assert_eq!(o.status.models[1].gpu_percent, Some(30));
}

#[test]
fn cpu_only_external_and_stub_setups() {
    let o = compute(&example("cpu-only.yaml"), &all_good(), None, now());
    assert_eq!(summary(&o, t::GPU_ACCELERATED), s("False", r::CPU_ONLY));
    assert!(!o
        .transitions
        .iter()
        .any(|tr| tr.condition.type_ == t::GPU_ACCELERATED && tr.warning));

    let mut obs = all_good();
    obs.ollama = None;
    let o = compute(&example("external-ollama.yaml"), &obs, None, now());
    assert_eq!(summary(&o, t::OLLAMA_READY), s("True", r::EXTERNAL));
    assert_eq!(o.status.ollama.as_ref().unwrap().phase, "External");

    let mut lw = example("cpu-only.yaml");
    lw.spec.ai.backend = Backend::Stub;
    let mut obs = all_good();
    obs.tags = Probe::Skipped;
    let o = compute(&lw, &obs, None, now());
    assert_eq!(summary(&o, t::MODELS_READY), s("True", r::NOT_REQUIRED));
    assert_eq!(summary(&o, t::READY), s("True", r::READY));
}

#[test]
fn suspended_says_so() {
    let mut lw = example("amd-gpu.yaml");
    lw.spec.suspend = true;
    let mut obs = all_good();
    obs.runner = Some(workload(0, 0));
    obs.health = Probe::Skipped;
    let o = compute(&lw, &obs, None, now());
    assert_eq!(summary(&o, t::READY), s("False", r::SUSPENDED));
    assert_eq!(summary(&o, t::RUNNERS_AVAILABLE), s("False", r::SUSPENDED));
    assert_eq!(cond(&o, t::DEGRADED).status, "False");
    assert!(
        !o.transitions.iter().any(|tr| tr.warning),
        "suspending is not a warning"
    );
}

#[test]
fn an_autoscaler_at_zero_runners_is_ready_not_an_outage() {
    let mut lw = example("amd-gpu.yaml");
    let mut a = example("autoscaling.yaml").spec.runner.autoscaling.unwrap();
    a.engine = learning_crds::runner::AutoscalingEngine::Keda;
    a.min_replicas = 0;
    lw.spec.runner.replicas = None;
    lw.spec.runner.autoscaling = Some(a);
    let mut obs = all_good();
    obs.runner = Some(workload(0, 0));
    obs.health = Probe::Skipped;
    let o = compute(&lw, &obs, None, now());
    assert_eq!(summary(&o, t::READY), s("True", r::SCALED_TO_ZERO));
    assert_eq!(
        summary(&o, t::RUNNERS_AVAILABLE),
        s("True", r::SCALED_TO_ZERO)
    );
    assert_eq!(
        summary(&o, t::RUNNERS_HEALTHY),
        s("True", r::SCALED_TO_ZERO)
    );
    assert_eq!(
        summary(&o, t::QUEUE_REACHABLE),
        s("Unknown", r::SCALED_TO_ZERO)
    );
    assert_eq!(cond(&o, t::DEGRADED).status, "False");
    // The builtin engine never goes below one runner: zero there is still an outage.
    let mut builtin = lw.clone();
    let a = builtin.spec.runner.autoscaling.as_mut().unwrap();
    a.engine = learning_crds::runner::AutoscalingEngine::Builtin;
    a.min_replicas = 1;
    let o = compute(&builtin, &obs, None, now());
    assert_eq!(cond(&o, t::RUNNERS_AVAILABLE).status, "False");
}

#[test]
fn only_changes_are_transitions_and_times_hold() {
    let mut lw = example("amd-gpu.yaml");
    let first = compute(&lw, &all_good(), None, now());
    lw.status = Some(first.status.clone());
    let later = Timestamp::from_second(1_800_000_600).unwrap();
    let same = compute(&lw, &all_good(), None, later);
    assert!(same.transitions.is_empty(), "{:?}", same.transitions);
    assert_eq!(
        cond(&same, t::READY).last_transition_time,
        cond(&first, t::READY).last_transition_time
    );

    let mut obs = all_good();
    obs.health = Probe::Ok(HealthReport {
        status: HealthState::Degraded,
        current_role: None,
        checks: vec![],
    });
    let changed = compute(&lw, &obs, None, later);
    let types: Vec<&str> = changed
        .transitions
        .iter()
        .map(|tr| tr.condition.type_.as_str())
        .collect();
    assert_eq!(
        types,
        [
            t::READY,
            t::RUNNERS_HEALTHY,
            t::QUEUE_REACHABLE,
            t::DEGRADED
        ]
    );
    assert!(changed.transitions.iter().all(|tr| tr.warning));
    assert_eq!(cond(&changed, t::READY).last_transition_time.0, later);
}

#[test]
fn invalid_spec_reports_once() {
    let mut lw = example("amd-gpu.yaml");
    let errors = vec![SpecError {
        field: "spec.runner",
        message: "set either replicas or autoscaling, not both".into(),
    }];
    let first = invalid(&lw, &errors, now());
    assert_eq!(summary(&first, t::READY), s("False", r::INVALID_SPEC));
    assert!(cond(&first, t::READY)
        .message
        .contains("set either replicas or autoscaling"));
    assert_eq!(first.transitions.len(), 2);
    lw.status = Some(first.status);
    let again = invalid(&lw, &errors, now());
    assert!(
        again.transitions.is_empty(),
        "no repeated Events for the same problem"
    );
}

#[test]
fn apply_failure_is_not_ready_and_degraded() {
    let o = compute(
        &example("amd-gpu.yaml"),
        &all_good(),
        Some("applying Deployment x failed: forbidden"),
        now(),
    );
    assert_eq!(summary(&o, t::READY), s("False", r::APPLY_FAILED));
    assert_eq!(summary(&o, t::DEGRADED), s("True", r::APPLY_FAILED));
}

#[test]
fn amd_without_the_render_group_reports_device_groups_missing_until_a_model_runs_on_the_gpu() {
    let mut lw = example("amd-gpu.yaml");
    lw.spec.ollama.gpu.render_group_id = None;
    let mut obs = all_good();
    obs.ps = Probe::Ok(vec![]);
    let o = compute(&lw, &obs, None, now());
    assert_eq!(
        summary(&o, t::GPU_ACCELERATED),
        s("False", r::DEVICE_GROUPS_MISSING)
    );
    let message = &cond(&o, t::GPU_ACCELERATED).message;
    assert!(
        message.contains("renderGroupId")
            && message.contains("device_ownership_from_security_context"),
        "{message}"
    );
    assert!(o
        .transitions
        .iter()
        .any(|tr| tr.condition.type_ == t::GPU_ACCELERATED && tr.warning));
    assert_eq!(
        cond(&o, t::READY).status,
        "True",
        "a warning, not a blocker"
    );

    // What /api/ps shows wins: fully on the GPU (e.g. containerd hands the devices over).
    let o = compute(&lw, &all_good(), None, now());
    assert_eq!(summary(&o, t::GPU_ACCELERATED), s("True", r::MODELS_ON_GPU));

    // On the CPU: CPUFallback, with the likely cause.
    let mut obs = all_good();
    obs.ps = Probe::Ok(vec![LoadedModel {
        name: "gpt-oss:20b".into(),
        size: 100,
        size_vram: 0,
    }]);
    let o = compute(&lw, &obs, None, now());
    assert_eq!(summary(&o, t::GPU_ACCELERATED), s("False", r::CPU_FALLBACK));
    assert!(cond(&o, t::GPU_ACCELERATED)
        .message
        .contains("renderGroupId"));

    // NVIDIA needs no groups.
    let mut obs = all_good();
    obs.ps = Probe::Ok(vec![]);
    let o = compute(&example("nvidia-gpu.yaml"), &obs, None, now());
    assert_eq!(
        summary(&o, t::GPU_ACCELERATED),
        s("Unknown", r::NO_MODEL_LOADED)
    );
}
