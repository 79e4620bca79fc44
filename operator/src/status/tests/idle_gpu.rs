//! The status while the GPU is released (`spec.ollama.idleScaleDown`): what waits for Ollama
//! is `ScaledToZero` and the worker stays Ready, but a real fault still shows.

use super::*;
use crate::status::compute;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use learning_crds::ollama::IdleScaleDown;
use learning_crds::status::{LearningWorkerStatus, OllamaStatus};

/// A worker idle for two hours with a one-hour release.
fn idle_worker() -> LearningWorker {
    let mut lw = example("amd-gpu.yaml");
    lw.spec.ollama.idle_scale_down = Some(IdleScaleDown {
        after_seconds: 3600,
    });
    let since = Timestamp::from_second(now().as_second() - 7200).unwrap();
    lw.status = Some(LearningWorkerStatus {
        ollama: Some(OllamaStatus {
            idle_since: Some(Time(since)),
            ..OllamaStatus::default()
        }),
        ..LearningWorkerStatus::default()
    });
    lw
}

/// Ollama at zero, the runners up but unready (their Ollama checks fail), the queue empty.
fn released() -> Observed {
    Observed {
        runner: Some(workload(2, 0)),
        health: Probe::Ok(report_without_ollama()),
        queue: Probe::Ok(QueueStatus::default()),
        ollama: Some(workload(0, 0)),
        ollama_version: Probe::Skipped,
        tags: Probe::Skipped,
        ps: Probe::Skipped,
        ..all_good()
    }
}

fn assert_not_ready(o: &Outcome) {
    let ready = cond(o, t::READY);
    assert_eq!(ready.status, "False", "{ready:?}");
}

#[test]
fn waiting_for_a_released_ollama_is_ready_and_nothing_is_progressing() {
    let o = compute(&idle_worker(), &released(), None, now());
    assert_eq!(summary(&o, t::READY), s("True", r::SCALED_TO_ZERO));
    assert_eq!(summary(&o, t::OLLAMA_READY), s("False", r::SCALED_TO_ZERO));
    assert_eq!(
        summary(&o, t::MODELS_READY),
        s("Unknown", r::SCALED_TO_ZERO)
    );
    assert_eq!(
        summary(&o, t::RUNNERS_AVAILABLE),
        s("False", r::SCALED_TO_ZERO)
    );
    assert_eq!(summary(&o, t::DEGRADED), s("False", r::AS_EXPECTED));
    assert_eq!(summary(&o, t::PROGRESSING), s("False", r::ROLLOUT_COMPLETE));
    let ollama = o.status.ollama.unwrap();
    assert_eq!(ollama.phase, "ScaledToZero");
    assert!(ollama.idle_since.is_some());
    // Not a warning: the release is deliberate.
    assert!(o
        .transitions
        .iter()
        .filter(|tr| tr.condition.reason == r::SCALED_TO_ZERO)
        .all(|tr| !tr.warning));
}

#[test]
fn a_database_outage_while_released_is_not_ready() {
    let mut obs = released();
    obs.health = Probe::Ok(degraded_report(vec![
        check("db_role", "failed", "db_connect_failed"),
        check("ollama", "failed", "unreachable"),
    ]));
    let o = compute(&idle_worker(), &obs, None, now());
    assert_not_ready(&o);
    assert_ne!(cond(&o, t::RUNNERS_HEALTHY).reason, r::SCALED_TO_ZERO);
    assert_eq!(cond(&o, t::DEGRADED).status, "True");
}

#[test]
fn runners_that_cannot_be_asked_while_released_are_not_ready() {
    // No one would see the first job: Ollama would never come back.
    for health in [Probe::Failed("timed out".into()), Probe::Skipped] {
        let mut obs = released();
        obs.health = health;
        assert_not_ready(&compute(&idle_worker(), &obs, None, now()));
    }
}

#[test]
fn a_runner_pod_problem_while_released_still_shows() {
    let mut obs = released();
    obs.runner_pods = vec![issue(r::IMAGE_PULL_BACK_OFF)];
    let o = compute(&idle_worker(), &obs, None, now());
    assert_eq!(
        summary(&o, t::RUNNERS_AVAILABLE),
        s("False", r::IMAGE_PULL_BACK_OFF)
    );
    assert_eq!(cond(&o, t::READY).status, "False");
}
