//! The runners' autoscaling (`spec.runner.autoscaling`), by engine:
//! - `builtin` ([`builtin`]): the operator sets `replicas` from the queue depth the runners
//!   report — visible + leased jobs, capped by what Ollama serves, up at once, down only after
//!   the stabilisation window, never below the runners that may hold leases. Its state lives
//!   in `status.autoscaling`, so a restarted operator holds the same window;
//! - `keda` ([`keda`], applied by [`apply`]): the operator owns a KEDA `ScaledObject` and
//!   `TriggerAuthentication` and never sets `replicas`; without KEDA's CRDs the condition
//!   `AutoscalerReady=False` (reason `AutoscalerUnavailable`) says so;
//! - `external`: the operator never sets `replicas`, for an autoscaler of the user's own.
//!
//! With `spec.suspend` every engine gets `replicas: 0` (a HorizontalPodAutoscaler does not act
//! on a target at zero; KEDA is paused at zero with `autoscaling.keda.sh/paused-replicas`).
//! Everything here is pure but [`apply`].

pub mod apply;
pub mod builtin;
pub mod keda;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use learning_crds::conditions::{new_condition, reasons as r, set_condition, types as t};
use learning_crds::runner::{AutoscalingEngine, AutoscalingSpec};
use learning_crds::status::{AutoscalingStatus, LearningWorkerStatus, QueueStatus};
use learning_crds::LearningWorker;

use crate::observed::Observed;
use crate::status::Transition;
use apply::KedaOutcome;

/// The autoscaling settings and engine of `lw`, when it autoscales.
pub fn autoscaling(lw: &LearningWorker) -> Option<&AutoscalingSpec> {
    lw.spec.runner.autoscaling.as_ref()
}

/// The engine of `lw`, when it autoscales.
pub fn engine(lw: &LearningWorker) -> Option<AutoscalingEngine> {
    autoscaling(lw).map(|a| a.engine)
}

/// The runner Deployment's `replicas` as the operator applies it: 0 when suspended, the fixed
/// count, the builtin engine's decision (`builtin`; the minimum while none was made), or
/// `None` — the field is left out of the apply — for `keda` and `external`.
pub fn runner_replicas(lw: &LearningWorker, builtin: Option<i32>) -> Option<i32> {
    let r = &lw.spec.runner;
    if lw.spec.suspend {
        return Some(0);
    }
    match &r.autoscaling {
        None => Some(r.replicas.unwrap_or(1)),
        Some(a) => match a.engine {
            AutoscalingEngine::Builtin => Some(builtin.unwrap_or(a.min_replicas.max(1))),
            AutoscalingEngine::Keda | AutoscalingEngine::External => None,
        },
    }
}

/// How the engine came out of a reconcile, for the `AutoscalerReady` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineState {
    /// The builtin engine decided.
    Builtin,
    /// The ScaledObject and TriggerAuthentication are applied.
    KedaApplied,
    /// KEDA cannot be used: the message says why (CRDs missing, RBAC not granted).
    KedaUnavailable(String),
    /// An autoscaler of the user's own is in charge.
    External,
}

/// The `AutoscalerReady` condition for `state`: (status, reason, message).
fn condition_parts(state: &EngineState) -> (bool, &'static str, String) {
    match state {
        EngineState::Builtin => (
            true,
            r::BUILTIN_SCALING,
            "the operator scales the runners with the queue (status.autoscaling)".into(),
        ),
        EngineState::KedaApplied => (
            true,
            r::SCALED_OBJECT_APPLIED,
            "the operator's ScaledObject is applied: KEDA scales the runners (its own Ready \
             condition on the ScaledObject says whether it can read the queue)"
                .into(),
        ),
        EngineState::KedaUnavailable(why) => (false, r::AUTOSCALER_UNAVAILABLE, why.clone()),
        EngineState::External => (
            true,
            r::EXTERNAL_AUTOSCALER,
            "the operator leaves the runner replicas to an autoscaler of your own".into(),
        ),
    }
}

/// Puts the autoscaling state into `status`: `status.autoscaling` and the `AutoscalerReady`
/// condition (both removed when `lw` does not autoscale). Returns the condition when it
/// changed (an Event; a Warning when it is not `True`).
pub fn report(
    lw: &LearningWorker,
    status: &mut LearningWorkerStatus,
    state: Option<(EngineState, AutoscalingStatus)>,
    now: Timestamp,
) -> Option<Transition> {
    let Some((state, autoscaling)) = state else {
        status.autoscaling = None;
        status.conditions.retain(|c| c.type_ != t::AUTOSCALER_READY);
        return None;
    };
    status.autoscaling = Some(autoscaling);
    let (ok, reason, message) = condition_parts(&state);
    let next = new_condition(
        t::AUTOSCALER_READY,
        ok,
        reason,
        message,
        lw.metadata.generation,
        now,
    );
    set_condition(&mut status.conditions, next)
        .then(|| find(&status.conditions))
        .flatten()
        .map(|condition| Transition {
            warning: condition.status != "True",
            condition,
        })
}

/// The builtin engine's decision for this reconcile (`None` unless `lw` uses it), from the
/// queue the runners just reported, the runner Deployment as it is, and the last status.
pub fn decide_builtin(
    lw: &LearningWorker,
    observed: &Observed,
    now: Timestamp,
) -> Option<AutoscalingStatus> {
    let a = autoscaling(lw).filter(|a| a.engine == AutoscalingEngine::Builtin)?;
    let inputs = builtin::Inputs {
        queue: observed.queue.ok(),
        current: observed.runner.as_ref().map(|w| w.counts.desired),
        previous: lw.status.as_ref().and_then(|s| s.autoscaling.as_ref()),
    };
    Some(builtin::decide(lw, a, &inputs, now))
}

/// The engine's state for the status: the builtin decision, the KEDA step's outcome, or the
/// external engine; `None` without autoscaling.
pub fn engine_state(
    lw: &LearningWorker,
    builtin: Option<AutoscalingStatus>,
    keda: &KedaOutcome,
) -> Option<(EngineState, AutoscalingStatus)> {
    let engine = engine(lw)?;
    let plain = AutoscalingStatus {
        engine: engine.as_str().into(),
        ..AutoscalingStatus::default()
    };
    Some(match engine {
        AutoscalingEngine::Builtin => (EngineState::Builtin, builtin.unwrap_or(plain)),
        AutoscalingEngine::Keda => (
            keda.state
                .clone()
                .unwrap_or(EngineState::KedaUnavailable("KEDA step not run".into())),
            AutoscalingStatus {
                scaled_object: keda.scaled_object.clone(),
                ..plain
            },
        ),
        AutoscalingEngine::External => (EngineState::External, plain),
    })
}

/// The note of a `RunnersScaled` Event when the builtin engine changed the count (`None`
/// when it did not, or on its first decision), e.g. `runners 1 → 5: 60 visible + 40 leased
/// jobs, 20 per runner, capacity cap 6`.
pub fn rescale_note(
    lw: &LearningWorker,
    decided: Option<&AutoscalingStatus>,
    queue: Option<&QueueStatus>,
) -> Option<String> {
    let before = lw
        .status
        .as_ref()
        .and_then(|s| s.autoscaling.as_ref())
        .and_then(|a| a.desired_replicas)?;
    let after = decided?.desired_replicas?;
    let a = autoscaling(lw)?;
    (before != after).then(|| {
        let why = match queue {
            Some(q) => format!(
                "{} visible + {} leased jobs, {} per runner",
                q.visible, q.leased, a.jobs_per_replica
            ),
            None => "the bounds changed".to_owned(),
        };
        let cap = decided
            .and_then(|d| d.capacity_cap)
            .map(|c| format!(", capacity cap {c}"))
            .unwrap_or_default();
        format!("runners {before} → {after}: {why}{cap}")
    })
}

fn find(conditions: &[Condition]) -> Option<Condition> {
    learning_crds::conditions::find(conditions, t::AUTOSCALER_READY).cloned()
}

#[cfg(test)]
mod tests;
