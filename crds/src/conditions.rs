//! The condition vocabulary: condition types, stable CamelCase reasons, and a pure helper that
//! sets a condition while keeping `lastTransitionTime` when the status did not change.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// Condition types, in the order they appear in status.
pub mod types {
    /// The worker processes jobs: runners available and healthy, queue reachable, models ready.
    pub const READY: &str = "Ready";
    /// The runner Deployment has the desired number of available pods.
    pub const RUNNERS_AVAILABLE: &str = "RunnersAvailable";
    /// The runners' health report (`/internal/health/learning-worker`) is `healthy`.
    pub const RUNNERS_HEALTHY: &str = "RunnersHealthy";
    /// The runners reach the database and see the queue.
    pub const QUEUE_REACHABLE: &str = "QueueReachable";
    /// The Ollama server answers.
    pub const OLLAMA_READY: &str = "OllamaReady";
    /// Every required model is present (`/api/tags`).
    pub const MODELS_READY: &str = "ModelsReady";
    /// Loaded models run on the GPU (`/api/ps`: `size_vram` equals `size`).
    pub const GPU_ACCELERATED: &str = "GPUAccelerated";
    /// A rollout or model pull is under way.
    pub const PROGRESSING: &str = "Progressing";
    /// Something needs attention.
    pub const DEGRADED: &str = "Degraded";
    /// The autoscaling engine of `spec.runner.autoscaling` is in place. Only present with
    /// autoscaling, so not in [`ALL`]; it comes after them.
    pub const AUTOSCALER_READY: &str = "AutoscalerReady";
    /// Every type that is always present, in status order.
    pub const ALL: [&str; 9] = [
        READY,
        RUNNERS_AVAILABLE,
        RUNNERS_HEALTHY,
        QUEUE_REACHABLE,
        OLLAMA_READY,
        MODELS_READY,
        GPU_ACCELERATED,
        PROGRESSING,
        DEGRADED,
    ];
}

/// Stable reasons (CamelCase). Pod-level causes are shared by runner and Ollama conditions.
pub mod reasons {
    /// Everything as expected.
    pub const AS_EXPECTED: &str = "AsExpected";
    /// The worker processes jobs.
    pub const READY: &str = "Ready";
    /// `spec.suspend` is true.
    pub const SUSPENDED: &str = "Suspended";
    /// An autoscaler (KEDA, or the user's own) runs no runner because there is no job.
    pub const SCALED_TO_ZERO: &str = "ScaledToZero";
    /// The spec breaks a rule the schema could not check.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Applying child objects failed.
    pub const APPLY_FAILED: &str = "ApplyFailed";
    /// Every desired runner pod is available.
    pub const MINIMUM_REPLICAS_AVAILABLE: &str = "MinimumReplicasAvailable";
    /// Fewer runner pods are available than desired (no pod-level cause found).
    pub const MINIMUM_REPLICAS_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
    /// A pod cannot be scheduled (e.g. no free `amd.com/gpu`).
    pub const UNSCHEDULABLE: &str = "Unschedulable";
    /// An image cannot be pulled.
    pub const IMAGE_PULL_BACK_OFF: &str = "ImagePullBackOff";
    /// A container keeps crashing.
    pub const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";
    /// A container was killed for exceeding its memory limit.
    pub const OOM_KILLED: &str = "OOMKilled";
    /// A container cannot be created (bad config, missing Secret or key).
    pub const CREATE_CONTAINER_CONFIG_ERROR: &str = "CreateContainerConfigError";
    /// The health report says `healthy`.
    pub const HEALTHY: &str = "Healthy";
    /// The health report says `degraded`.
    pub const HEALTH_DEGRADED: &str = "HealthDegraded";
    /// The health endpoint could not be read.
    pub const HEALTH_UNREACHABLE: &str = "HealthUnreachable";
    /// No runner pod is running to ask.
    pub const NO_RUNNERS: &str = "NoRunners";
    /// The runners see the queue.
    pub const QUEUE_VISIBLE: &str = "QueueVisible";
    /// The runners cannot connect to the database.
    pub const DATABASE_UNREACHABLE: &str = "DatabaseUnreachable";
    /// The runners connect but the queue check failed (role, grants, schema).
    pub const QUEUE_CHECK_FAILED: &str = "QueueCheckFailed";
    /// Ollama answers.
    pub const OLLAMA_AVAILABLE: &str = "OllamaAvailable";
    /// The Ollama pod is not ready yet.
    pub const OLLAMA_STARTING: &str = "OllamaStarting";
    /// Ollama's API did not answer.
    pub const OLLAMA_UNREACHABLE: &str = "OllamaUnreachable";
    /// Ollama is external; reported from its API.
    pub const EXTERNAL: &str = "External";
    /// The stub backend needs no Ollama or models.
    pub const NOT_REQUIRED: &str = "NotRequired";
    /// Every required model is present.
    pub const MODELS_PRESENT: &str = "ModelsPresent";
    /// Some models are missing and no pull is running.
    pub const MODELS_MISSING: &str = "ModelsMissing";
    /// The model-pull Job is running.
    pub const MODEL_PULL_IN_PROGRESS: &str = "ModelPullInProgress";
    /// The model-pull Job failed.
    pub const MODEL_PULL_FAILED: &str = "ModelPullFailed";
    /// `spec.ollama.storage` asks for a smaller size or another class than the existing model
    /// PersistentVolumeClaim has; the claim is kept as it is.
    pub const STORAGE_CHANGE_REFUSED: &str = "StorageChangeRefused";
    /// Every loaded model is fully in GPU memory.
    pub const MODELS_ON_GPU: &str = "ModelsOnGPU";
    /// A loaded model runs (partly) on the CPU although a GPU was requested.
    pub const CPU_FALLBACK: &str = "CPUFallback";
    /// AMD GPU without `gpu.renderGroupId`: the non-root Ollama most likely cannot open the
    /// GPU devices (nothing loaded on the GPU yet to show otherwise).
    pub const DEVICE_GROUPS_MISSING: &str = "DeviceGroupsMissing";
    /// No model is loaded right now, so GPU use cannot be seen.
    pub const NO_MODEL_LOADED: &str = "NoModelLoaded";
    /// `gpu.vendor: none`.
    pub const CPU_ONLY: &str = "CPUOnly";
    /// A rollout is under way.
    pub const ROLLOUT_IN_PROGRESS: &str = "RolloutInProgress";
    /// Nothing is changing.
    pub const ROLLOUT_COMPLETE: &str = "RolloutComplete";
    /// The builtin engine scales the runners.
    pub const BUILTIN_SCALING: &str = "BuiltinScaling";
    /// The operator's KEDA ScaledObject and TriggerAuthentication are applied.
    pub const SCALED_OBJECT_APPLIED: &str = "ScaledObjectApplied";
    /// An autoscaler of the user's own sets the runner replicas.
    pub const EXTERNAL_AUTOSCALER: &str = "ExternalAutoscaler";
    /// Engine `keda` but KEDA's CRDs are not installed (or the operator may not write them):
    /// no ScaledObject, nothing scales the runners.
    pub const AUTOSCALER_UNAVAILABLE: &str = "AutoscalerUnavailable";
}

/// The status of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `True`.
    True,
    /// `False`.
    False,
    /// `Unknown`: the operator could not find out.
    Unknown,
}

impl Status {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }
}

impl From<bool> for Status {
    fn from(b: bool) -> Self {
        if b {
            Status::True
        } else {
            Status::False
        }
    }
}

/// A condition of the given type for `generation`, with `now` as its transition time.
pub fn new_condition(
    type_: &str,
    status: impl Into<Status>,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: status.into().as_str().to_owned(),
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: Time(now),
    }
}

/// Puts `next` into `conditions`, keeping the old `lastTransitionTime` when the status is
/// unchanged. Returns whether status or reason changed (a transition worth an Event).
pub fn set_condition(conditions: &mut Vec<Condition>, mut next: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == next.type_) {
        Some(current) => {
            let transitioned = current.status != next.status || current.reason != next.reason;
            if current.status == next.status {
                next.last_transition_time = current.last_transition_time.clone();
            }
            *current = next;
            transitioned
        }
        None => {
            conditions.push(next);
            true
        }
    }
}

/// The condition of `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    #[test]
    fn keeps_transition_time_while_status_holds() {
        let mut conds = Vec::new();
        assert!(set_condition(
            &mut conds,
            new_condition(
                types::READY,
                false,
                reasons::OLLAMA_STARTING,
                "",
                Some(1),
                at(10)
            )
        ));
        // Same status, new reason: a transition for Events, but the time stays.
        assert!(set_condition(
            &mut conds,
            new_condition(
                types::READY,
                false,
                reasons::MODELS_MISSING,
                "",
                Some(2),
                at(20)
            )
        ));
        assert_eq!(conds[0].last_transition_time, Time(at(10)));
        assert_eq!(conds[0].observed_generation, Some(2));
        // Nothing changed: no transition.
        assert!(!set_condition(
            &mut conds,
            new_condition(
                types::READY,
                false,
                reasons::MODELS_MISSING,
                "",
                Some(2),
                at(30)
            )
        ));
        // Status flips: new time.
        assert!(set_condition(
            &mut conds,
            new_condition(types::READY, true, reasons::READY, "", Some(2), at(40))
        ));
        assert_eq!(conds[0].last_transition_time, Time(at(40)));
        assert_eq!(conds.len(), 1);
        assert_eq!(find(&conds, types::READY).unwrap().status, "True");
    }
}
