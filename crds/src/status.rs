//! `status`: what the operator observed — conditions, runner and Ollama replica counts, model
//! and pull state, queue depth, the last health report and the autoscaling engine's state.
//! Written only by the operator.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a LearningWorker.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LearningWorkerStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Standard conditions: Ready, RunnersAvailable, RunnersHealthy, QueueReachable,
    /// OllamaReady, ModelsReady, GPUAccelerated, Progressing, Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Ready and desired runner pods as `ready/desired` (the `Runners` column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runners_ready: Option<String>,
    /// Runner pod counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runners: Option<ReplicaCounts>,
    /// The model server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ollama: Option<OllamaStatus>,
    /// The required models and whether they are present and loaded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<ModelStatus>,
    /// The model-pull Job, when one was needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_pull: Option<ModelPullStatus>,
    /// Queue depth as the runners last reported it (`learning_runner_queue_jobs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueStatus>,
    /// The runners' last health report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthReport>,
    /// What the autoscaling engine decided (only with `spec.runner.autoscaling`); the builtin
    /// engine keeps its stabilisation state here, so it survives operator restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingStatus>,
}

/// The autoscaling engine's state.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingStatus {
    /// The engine in use: `builtin`, `keda` or `external`.
    pub engine: String,
    /// `builtin`: the runner pods asked for now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_replicas: Option<i32>,
    /// `builtin`: what the queue alone asks for now — ⌈(visible + leased) ÷ jobsPerReplica⌉
    /// within the bounds and the capacity cap, before the stabilisation window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommended_replicas: Option<i32>,
    /// `builtin`: the most runners Ollama can keep busy — ⌈numParallel × Ollama replicas ÷
    /// the model calls one runner makes per model⌉ (absent with the stub backend: no cap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_cap: Option<i32>,
    /// `builtin`: since when the demand has been below `desiredReplicas` (absent while it is
    /// not). Runners are removed only once `scaleDownStabilizationSeconds` have passed since
    /// then; each step down starts the window again for the next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demand_below_since: Option<Time>,
    /// `keda`: the ScaledObject the operator owns (deleted again when the engine changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaled_object: Option<String>,
}

/// Pod counts of a workload.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaCounts {
    /// Pods the operator asked for.
    pub desired: i32,
    /// Pods passing their readiness probe.
    pub ready: i32,
    /// Pods available (ready for at least `minReadySeconds`).
    pub available: i32,
    /// Pods running the current template.
    pub updated: i32,
}

/// State of the model server.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OllamaStatus {
    /// `Ready`, `NotReady`, `ScaledToZero` (idle, GPU released), `External` or `NotRequired`
    /// (the `Ollama` column).
    pub phase: String,
    /// The URL the runners use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Ollama pod counts (managed mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<ReplicaCounts>,
    /// Ollama's version (`/api/version`), when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Since when the queue has had no job (`spec.ollama.idleScaleDown`; absent while there
    /// is work, kept as it is while the queue is unknown). Ollama is scaled to zero once this
    /// is `idleScaleDown.afterSeconds` ago.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_since: Option<Time>,
}

/// One required model.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelStatus {
    /// Model name as in the spec.
    pub name: String,
    /// Present on the model volume (`/api/tags`).
    pub present: bool,
    /// Loaded right now (`/api/ps`).
    #[serde(default)]
    pub loaded: bool,
    /// Share of the loaded model in GPU memory, in percent (`size_vram / size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_percent: Option<i32>,
}

/// The model-pull Job.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelPullStatus {
    /// Name of the Job.
    pub job: String,
    /// `Running`, `Succeeded` or `Failed`.
    pub phase: String,
    /// The models the Job pulls (those that were missing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// Present / required models, e.g. `1/2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// What went wrong, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Queue depth by state.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueStatus {
    /// Jobs waiting and visible (the `Backlog` column).
    pub visible: i64,
    /// Jobs waiting for their retry time.
    pub delayed: i64,
    /// Jobs leased by a runner.
    pub leased: i64,
    /// Jobs that failed for good.
    pub failed: i64,
    /// Age of the oldest visible job in seconds.
    pub oldest_job_age_seconds: i64,
}

/// The runners' health report: the contract's type (`learning_contract::health`), stored as the
/// runners serve it.
pub use learning_contract::health::{HealthCheck, HealthReport, HealthState};
