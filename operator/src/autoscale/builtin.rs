//! The builtin engine: how many runner pods to ask for. Pure.
//!
//! - **Demand**: ⌈(visible + leased jobs) ÷ `jobsPerReplica`⌉ — leased jobs count, so the
//!   runners at the tail of a backlog are not removed while they still work.
//! - **Capacity cap**: ⌈numParallel × Ollama replicas ÷ the model calls one runner keeps in
//!   flight per model⌉, the calls being min(`AI_MAX_PARALLEL_CALLS`, `WORKER_CONCURRENCY`)
//!   ([`capacity`](crate::desired::runner::capacity)). More runners than that would only
//!   queue inside Ollama, where the wait counts against each call's time limit. A managed
//!   Ollama counts as [`MANAGED_OLLAMA_REPLICAS`] pod; an external one as one server with the
//!   stated `numParallel`. No cap with the stub backend.
//! - **Recommendation**: the demand within `minReplicas` and min(`maxReplicas`, cap) —
//!   `minReplicas` wins over a smaller cap.
//! - **Up at once, down after the window**: a recommendation at or above the count in force
//!   is taken at once and restarts the window (`status.autoscaling.lastHighDemandTime`); a
//!   lower one only once `scaleDownStabilizationSeconds` have passed since the demand last
//!   reached the count in force.
//! - **Lease floor**: never fewer than min(leased jobs, the pods there are) — the most runners
//!   that can hold a lease. Which pods go is the ReplicaSet controller's choice; a removed
//!   runner drains (`drainGraceSeconds`) before its jobs are released.
//! - **Unknown queue** (no runner answered): the count in force holds.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use learning_crds::ai::Backend;
use learning_crds::runner::AutoscalingSpec;
use learning_crds::status::{AutoscalingStatus, QueueStatus};
use learning_crds::LearningWorker;

use crate::desired::runner::capacity;

/// Pods of a managed Ollama the cap counts (its Deployment runs one).
pub const MANAGED_OLLAMA_REPLICAS: u32 = 1;

/// What the decision starts from.
#[derive(Debug, Clone, Default)]
pub struct Inputs<'a> {
    /// The queue as the runners reported it in this reconcile (`None`: not read).
    pub queue: Option<&'a QueueStatus>,
    /// `replicas` of the runner Deployment as it is now.
    pub current: Option<i32>,
    /// The engine's state from the last status.
    pub previous: Option<&'a AutoscalingStatus>,
}

/// The most runners Ollama can keep busy; `None` with the stub backend (no Ollama).
pub fn capacity_cap(lw: &LearningWorker) -> Option<i32> {
    if lw.spec.ai.backend == Backend::Stub {
        return None;
    }
    let c = capacity::capacity(lw)?;
    let slots = lw
        .spec
        .ollama
        .num_parallel
        .map_or(capacity::OLLAMA_DEFAULT_NUM_PARALLEL, |n| n.max(1) as u32)
        * MANAGED_OLLAMA_REPLICAS;
    let per_runner = c.calls_per_model.min(c.concurrency).max(1);
    Some(slots.div_ceil(per_runner).max(1) as i32)
}

/// ⌈jobs ÷ per⌉ for non-negative jobs.
fn demand(queue: &QueueStatus, per: i32) -> i64 {
    let jobs = queue.visible.max(0) + queue.leased.max(0);
    let per = i64::from(per.max(1));
    (jobs + per - 1) / per
}

/// The demand within the bounds and the cap (`minReplicas` wins over a smaller cap).
pub fn recommend(a: &AutoscalingSpec, queue: &QueueStatus, cap: Option<i32>) -> i32 {
    let min = a.min_replicas.max(1);
    let upper = a.max_replicas.min(cap.unwrap_or(a.max_replicas)).max(min);
    demand(queue, a.jobs_per_replica).clamp(i64::from(min), i64::from(upper)) as i32
}

/// Whether `window_seconds` have passed since `since` (always with a window of 0; never
/// without a start).
fn window_passed(since: Option<&Time>, window_seconds: i32, now: Timestamp) -> bool {
    window_seconds <= 0
        || since.is_some_and(|t| {
            now.duration_since(t.0) >= SignedDuration::from_secs(window_seconds.into())
        })
}

/// The builtin engine's decision for `lw` (which autoscales with `a`) at `now`: the replicas
/// to apply, in `desired_replicas` of the returned state.
pub fn decide(
    lw: &LearningWorker,
    a: &AutoscalingSpec,
    inputs: &Inputs<'_>,
    now: Timestamp,
) -> AutoscalingStatus {
    let cap = capacity_cap(lw);
    let min = a.min_replicas.max(1);
    let upper = a.max_replicas.min(cap.unwrap_or(a.max_replicas)).max(min);
    let previous = inputs.previous.cloned().unwrap_or_default();
    let held = previous
        .desired_replicas
        .or(inputs.current)
        .unwrap_or(min)
        .clamp(min, upper);
    let (recommended, desired, below_since) = match inputs.queue {
        // Unknown demand: hold, and keep the window's clock as it is.
        None => (None, held, previous.demand_below_since.clone()),
        Some(queue) => {
            let recommended = recommend(a, queue, cap);
            let floor = queue.leased.min(i64::from(inputs.current.unwrap_or(held))) as i32;
            if recommended >= held {
                // Up at once (or steady): no window runs.
                (Some(recommended), recommended.max(floor), None)
            } else {
                let since = previous.demand_below_since.clone().unwrap_or(Time(now));
                if window_passed(Some(&since), a.scale_down_stabilization_seconds, now) {
                    // One step down; a further one waits a whole window again.
                    let stepped = recommended.max(floor);
                    let next = (stepped > recommended).then_some(Time(now));
                    (Some(recommended), stepped, next)
                } else {
                    (Some(recommended), held.max(floor), Some(since))
                }
            }
        }
    };
    AutoscalingStatus {
        engine: a.engine.as_str().into(),
        desired_replicas: Some(desired),
        recommended_replicas: recommended,
        capacity_cap: cap,
        demand_below_since: below_since,
        scaled_object: None,
    }
}
