//! The summary conditions, drawn from the observation and the component conditions:
//! Progressing (a rollout or a model pull under way), Degraded (the first cause that needs
//! attention) and Ready (everything the worker needs to process jobs).

use learning_crds::conditions::{reasons as r, types as t, Status};
use learning_crds::LearningWorker;

use super::{counts_text, pod_message, Components, Draft, SUSPENDED_MESSAGE};
use crate::desired::ollama::refused_storage_change;
use crate::observed::{Observed, Workload};

/// Progressing: `True` while a Deployment rolls out or a model pull runs (`progress` says
/// how many models are present).
pub(super) fn progressing(observed: &Observed, progress: &str) -> Draft {
    let runners_rolling = observed.runner.as_ref().is_some_and(|w| {
        !w.observed_current
            || w.counts.updated < w.counts.desired
            || w.counts.ready < w.counts.desired
    });
    let ollama_rolling = observed
        .ollama
        .as_ref()
        .is_some_and(|w| !w.observed_current || w.counts.ready < w.counts.desired);
    let pulling = observed
        .pull_job
        .as_ref()
        .is_some_and(|job| !job.succeeded && job.failed.is_none());
    if runners_rolling || ollama_rolling {
        Draft::new(
            t::PROGRESSING,
            true,
            r::ROLLOUT_IN_PROGRESS,
            format!("runners {}", counts_text(observed.runner.as_ref())),
        )
    } else if pulling {
        Draft::new(t::PROGRESSING, true, r::MODEL_PULL_IN_PROGRESS, progress)
    } else {
        Draft::new(
            t::PROGRESSING,
            false,
            r::ROLLOUT_COMPLETE,
            "nothing is changing",
        )
    }
}

/// Degraded: the first cause that needs attention — a failed apply, a pod problem (runners
/// before Ollama), the queue, the runners' health, a failed pull, a refused storage change,
/// a CPU fallback — with that cause's reason and message.
pub(super) fn degraded(
    lw: &LearningWorker,
    observed: &Observed,
    apply_error: Option<&str>,
    components: &Components,
) -> Draft {
    let degraded_by = |reason, message: String| Draft::new(t::DEGRADED, true, reason, message);
    let pod_problem = observed
        .runner_pods
        .first()
        .or(observed.ollama_pods.first());
    let storage_refused = lw
        .spec
        .manages_ollama()
        .then(|| refused_storage_change(lw, observed.models_claim.as_ref()))
        .flatten();
    let Components {
        queue_reachable: queue,
        runners_healthy: health,
        models_ready: models,
        gpu_accelerated: gpu,
        ..
    } = components;
    if let Some(error) = apply_error {
        degraded_by(r::APPLY_FAILED, error.to_owned())
    } else if let Some(issue) = pod_problem {
        degraded_by(issue.reason, pod_message(issue))
    } else if queue.status == Status::False {
        degraded_by(queue.reason, queue.message.clone())
    } else if health.status == Status::False
        && !lw.spec.suspend
        && health.reason != r::SCALED_TO_ZERO
    {
        degraded_by(health.reason, health.message.clone())
    } else if models.reason == r::MODEL_PULL_FAILED {
        degraded_by(r::MODEL_PULL_FAILED, models.message.clone())
    } else if let Some(why) = storage_refused {
        degraded_by(r::STORAGE_CHANGE_REFUSED, why)
    } else if gpu.reason == r::CPU_FALLBACK {
        degraded_by(r::CPU_FALLBACK, gpu.message.clone())
    } else {
        Draft::new(t::DEGRADED, false, r::AS_EXPECTED, "")
    }
}

/// Ready: `True` when nothing blocks processing jobs; otherwise the blocking condition's
/// reason, its type and message as the message.
pub(super) fn ready(
    suspended: bool,
    apply_error: Option<&str>,
    components: &Components,
    runner: Option<&Workload>,
) -> Draft {
    if suspended {
        return Draft::new(t::READY, false, r::SUSPENDED, SUSPENDED_MESSAGE);
    }
    if let Some(error) = apply_error {
        return Draft::new(t::READY, false, r::APPLY_FAILED, error);
    }
    match blocker(components) {
        Some(blocker) => Draft::new(
            t::READY,
            false,
            blocker.reason,
            format!("{}: {}", blocker.type_, blocker.message),
        ),
        None => Draft::new(
            t::READY,
            true,
            r::READY,
            format!("{} runners processing the queue", counts_text(runner)),
        ),
    }
}

/// The component condition that keeps the worker from being ready, if any.
///
/// Dependencies before their dependents: runners stay unready (`/readyz` 503) while the
/// database, Ollama or the models are missing, so "too few runners" is reported only when the
/// runners have no pod-level cause of their own and nothing they depend on is known to be
/// down.
fn blocker(components: &Components) -> Option<&Draft> {
    let Components {
        runners_available,
        runners_healthy,
        queue_reachable,
        ollama_ready,
        models_ready,
        ..
    } = components;
    let runner_pod_cause = runners_available.status != Status::True
        && runners_available.reason != r::MINIMUM_REPLICAS_UNAVAILABLE;
    if runner_pod_cause {
        return Some(runners_available);
    }
    let dependency_down = [queue_reachable, ollama_ready, models_ready]
        .into_iter()
        .find(|dependency| {
            dependency.status == Status::False
                || (dependency.type_ != t::QUEUE_REACHABLE && dependency.status != Status::True)
        });
    dependency_down.or_else(|| {
        [runners_available, runners_healthy, queue_reachable]
            .into_iter()
            .find(|condition| {
                condition.status != Status::True && condition.reason != r::SCALED_TO_ZERO
            })
    })
}
