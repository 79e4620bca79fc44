//! Pure status computation: from what was observed (workloads, pod issues, health report,
//! queue metrics, Ollama's API, the pull Job) to the status with its conditions, and the
//! condition transitions that become Events.
//!
//! `compute` is a short pipeline. The component conditions come first, one function each:
//! `runners` (RunnersAvailable, RunnersHealthy, QueueReachable), `ollama` (OllamaReady),
//! `models` (ModelsReady), `gpu` (GPUAccelerated). The summaries are drawn from them in
//! `summary` (Progressing, Degraded, Ready); `report` fills in the status fields beside the
//! conditions; `finish` merges the conditions into the previous status and collects the
//! transitions.

mod gpu;
mod models;
mod ollama;
mod report;
mod runners;
mod summary;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use learning_crds::conditions::{new_condition, reasons as r, set_condition, types as t, Status};
use learning_crds::status::LearningWorkerStatus;
use learning_crds::validate::SpecError;
use learning_crds::LearningWorker;

use crate::observed::{Observed, Workload};
use crate::pod_issues::PodIssue;

/// A condition that changed status or reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The condition now.
    pub condition: Condition,
    /// Whether it signals trouble (a Warning Event) rather than recovery or progress.
    pub warning: bool,
}

/// The new status and its transitions.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The status to write.
    pub status: LearningWorkerStatus,
    /// Conditions that changed, for Events.
    pub transitions: Vec<Transition>,
}

/// A condition as computed, before it gets the generation and a transition time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Draft {
    type_: &'static str,
    status: Status,
    reason: &'static str,
    message: String,
}

impl Draft {
    fn new(
        type_: &'static str,
        status: impl Into<Status>,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Draft {
            type_,
            status: status.into(),
            reason,
            message: message.into(),
        }
    }
}

/// The component conditions, from which the summaries (Progressing, Degraded, Ready) are
/// drawn.
#[derive(Debug, Clone)]
struct Components {
    runners_available: Draft,
    runners_healthy: Draft,
    queue_reachable: Draft,
    ollama_ready: Draft,
    models_ready: Draft,
    gpu_accelerated: Draft,
}

/// Why `spec.suspend` makes the runners (and so the worker) unavailable.
const SUSPENDED_MESSAGE: &str = "spec.suspend is true: runners are scaled to zero";

/// Reasons of a condition that is not `True` but no trouble either (no Warning Event).
const BENIGN: [&str; 7] = [
    r::SUSPENDED,
    r::SCALED_TO_ZERO,
    r::NOT_REQUIRED,
    r::CPU_ONLY,
    r::OLLAMA_STARTING,
    r::MODEL_PULL_IN_PROGRESS,
    r::NO_MODEL_LOADED,
];

fn is_warning(condition: &Condition) -> bool {
    match condition.type_.as_str() {
        t::DEGRADED => condition.status == "True",
        t::PROGRESSING => false,
        _ => condition.status != "True" && !BENIGN.contains(&condition.reason.as_str()),
    }
}

/// `ready/desired` pods of a workload (`0/0` when it does not exist).
fn counts_text(workload: Option<&Workload>) -> String {
    workload.map_or("0/0".into(), |w| {
        format!("{}/{}", w.counts.ready, w.counts.desired)
    })
}

/// A pod-level problem as a condition message.
fn pod_message(issue: &PodIssue) -> String {
    format!("pod {}: {}", issue.pod, issue.message)
}

/// Merges `drafts` into `status` (keeping the transition time of a condition whose status
/// holds), in the order of `types::ALL`, and collects the conditions that changed.
fn finish(
    lw: &LearningWorker,
    mut status: LearningWorkerStatus,
    drafts: Vec<Draft>,
    now: Timestamp,
) -> Outcome {
    let generation = lw.metadata.generation;
    let mut transitions = Vec::new();
    for draft in drafts {
        let next = new_condition(
            draft.type_,
            draft.status,
            draft.reason,
            draft.message,
            generation,
            now,
        );
        if set_condition(&mut status.conditions, next.clone()) {
            let condition = status
                .conditions
                .iter()
                .find(|existing| existing.type_ == next.type_)
                .cloned()
                .unwrap_or(next);
            transitions.push(Transition {
                warning: is_warning(&condition),
                condition,
            });
        }
    }
    status.conditions.sort_by_key(|condition| {
        t::ALL
            .iter()
            .position(|type_| *type_ == condition.type_)
            .unwrap_or(usize::MAX)
    });
    status.observed_generation = generation;
    Outcome {
        status,
        transitions,
    }
}

/// The status of a spec that breaks the rules: `Ready=False`/`Degraded=True`, reason
/// `InvalidSpec`, the other conditions untouched.
pub fn invalid(lw: &LearningWorker, errors: &[SpecError], now: Timestamp) -> Outcome {
    let message = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    let previous = lw.status.clone().unwrap_or_default();
    finish(
        lw,
        previous,
        vec![
            Draft::new(t::READY, false, r::INVALID_SPEC, message.clone()),
            Draft::new(t::DEGRADED, true, r::INVALID_SPEC, message),
        ],
        now,
    )
}

/// While the GPU is released (`spec.ollama.idleScaleDown`): Ollama and the models are
/// `ScaledToZero`, and so are the runners' conditions that are not `True` only because they
/// wait for Ollama (no pod problem).
fn idle_gpu_released(components: &mut Components, observed: &Observed) {
    components.ollama_ready = Draft::new(
        t::OLLAMA_READY,
        false,
        r::SCALED_TO_ZERO,
        "no job in the queue: Ollama is scaled to zero to free the GPU; the first job starts it \
         again",
    );
    components.models_ready = Draft::new(
        t::MODELS_READY,
        Status::Unknown,
        r::SCALED_TO_ZERO,
        "Ollama is scaled to zero",
    );
    // Only runners that wait for Ollama alone: no pod problem, no failing database check.
    let waiting = "the runners wait for Ollama, scaled to zero while the queue is empty";
    let only_ollama_fails = match &observed.health {
        crate::probes::Probe::Ok(report) => report
            .checks
            .iter()
            .filter(|c| !c.passed())
            .all(|c| learning_contract::health::OLLAMA_CHECKS.contains(&c.check.as_str())),
        _ => false,
    };
    if observed.runner_pods.is_empty() && only_ollama_fails {
        for draft in [
            &mut components.runners_available,
            &mut components.runners_healthy,
        ] {
            if draft.status != Status::True {
                *draft = Draft::new(draft.type_, false, r::SCALED_TO_ZERO, waiting);
            }
        }
    }
}

/// Progressing; runners that are unready only because Ollama is released are no rollout.
fn progressing(observed: &Observed, progress: &str, gpu_released: bool) -> Draft {
    let draft = summary::progressing(observed, progress);
    if gpu_released && draft.reason == r::ROLLOUT_IN_PROGRESS && settled(observed) {
        return Draft::new(
            t::PROGRESSING,
            false,
            r::ROLLOUT_COMPLETE,
            "nothing is changing: the runners wait for Ollama, scaled to zero",
        );
    }
    draft
}

/// Every Deployment runs its current template with the pods it wants, readiness aside (the
/// runners are unready on purpose while Ollama is scaled to zero).
fn settled(observed: &Observed) -> bool {
    let current = |w: &Workload| w.observed_current && w.counts.updated >= w.counts.desired;
    observed.runner.as_ref().is_none_or(current)
        && observed
            .ollama
            .as_ref()
            .is_none_or(|w| current(w) && w.counts.ready >= w.counts.desired)
}

/// Ready and Degraded from the components; while the GPU is released on purpose, being
/// `ScaledToZero` is neither unreadiness nor degradation.
fn summarise(
    lw: &LearningWorker,
    observed: &Observed,
    apply_error: Option<&str>,
    components: &Components,
    gpu_released: bool,
) -> (Draft, Draft) {
    let degraded = summary::degraded(lw, observed, apply_error, components);
    let mut ready = summary::ready(
        lw.spec.suspend,
        apply_error,
        components,
        observed.runner.as_ref(),
    );
    // Ready while released only when the runners are known to wait for Ollama alone: they
    // answer (so the first job is seen and wakes Ollama) and nothing else is wrong.
    let waiting = |d: &Draft| d.status == Status::True || d.reason == r::SCALED_TO_ZERO;
    let runners_wait =
        waiting(&components.runners_available) && waiting(&components.runners_healthy);
    let queue_down = components.queue_reachable.status == Status::False;
    if gpu_released
        && ready.reason == r::SCALED_TO_ZERO
        && apply_error.is_none()
        && runners_wait
        && !queue_down
    {
        ready = Draft::new(
            t::READY,
            true,
            r::SCALED_TO_ZERO,
            "idle: no job in the queue, so Ollama is scaled to zero and the GPU is free; the \
             first job starts it again (spec.ollama.idleScaleDown)",
        );
    }
    (ready, degraded)
}

/// `status.ollama.idleSince`, and the phase `ScaledToZero` while the GPU is released.
fn record_idle_gpu(status: &mut LearningWorkerStatus, decision: Option<crate::idle_gpu::IdleGpu>) {
    if let (Some(ollama), Some(decision)) = (status.ollama.as_mut(), decision) {
        ollama.idle_since = decision.idle_since;
        if decision.released {
            ollama.phase = "ScaledToZero".into();
        }
    }
}

/// Computes the status from the observation. `apply_error` is set when applying children failed.
pub fn compute(
    lw: &LearningWorker,
    observed: &Observed,
    apply_error: Option<&str>,
    now: Timestamp,
) -> Outcome {
    let spec = &lw.spec;
    let suspended = spec.suspend;
    let inventory = models::Inventory::new(lw, observed.tags.ok());
    let mut components = Components {
        runners_available: runners::runners_available(
            suspended,
            observed.runner.as_ref(),
            &observed.runner_pods,
        ),
        runners_healthy: runners::runners_healthy(suspended, &observed.health),
        queue_reachable: runners::queue_reachable(suspended, &observed.health),
        ollama_ready: ollama::ollama_ready(spec, observed),
        models_ready: models::models_ready(
            spec,
            &observed.tags,
            observed.pull_job.as_ref(),
            &inventory,
        ),
        gpu_accelerated: gpu::gpu_accelerated(spec, &observed.ps, inventory.required()),
    };
    let idle = runners::scaled_to_zero(lw, observed.runner.as_ref());
    if idle {
        let [available, healthy, queue] = runners::while_scaled_to_zero();
        components.runners_available = available;
        components.runners_healthy = healthy;
        components.queue_reachable = queue;
    }
    let released = crate::idle_gpu::decide_observed(lw, observed, now);
    let gpu_released = released.as_ref().is_some_and(|d| d.released);
    if gpu_released {
        idle_gpu_released(&mut components, observed);
    }
    let progressing = progressing(observed, &inventory.progress(), gpu_released);
    let (mut ready, degraded) = summarise(lw, observed, apply_error, &components, gpu_released);
    if idle && ready.status == Status::True {
        ready = Draft::new(
            t::READY,
            true,
            r::SCALED_TO_ZERO,
            "no job: the autoscaler runs no runner; the first job brings one back",
        );
    }

    let previous = lw.status.clone().unwrap_or_default();
    let mut status = report::report(
        previous,
        spec,
        observed,
        &inventory,
        components.ollama_ready.status,
    );
    record_idle_gpu(&mut status, released);
    let Components {
        runners_available,
        runners_healthy,
        queue_reachable,
        ollama_ready,
        models_ready,
        gpu_accelerated,
    } = components;
    let drafts = vec![
        ready,
        runners_available,
        runners_healthy,
        queue_reachable,
        ollama_ready,
        models_ready,
        gpu_accelerated,
        progressing,
        degraded,
    ];
    finish(lw, status, drafts, now)
}

#[cfg(test)]
mod tests;
