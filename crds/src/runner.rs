//! `spec.runner`: the learning-runner pods — image, replica count or queue-driven autoscaling
//! bounds, the worker settings of the contract (§8), resources, scheduling and extra env.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, ResourceRequirements, Toleration,
};
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Environment variables the operator sets itself; `spec.runner.env` must not name them.
/// The DSN and the Supabase key in particular may only come from Secret references.
pub use learning_contract::env::OPERATOR_SET as RESERVED_ENV;

/// The runner pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!(has(self.replicas) && has(self.autoscaling))").message("set either replicas or autoscaling, not both"),
    validation = Rule::new("!has(self.backoffSeconds) || !has(self.backoffMaxSeconds) || self.backoffSeconds <= self.backoffMaxSeconds").message("backoffSeconds must not exceed backoffMaxSeconds"),
    validation = Rule::new("!has(self.env) || self.env.all(e, !(e.name in ['LEARNING_DATABASE_URL', 'LEARNING_DB_URL', 'DATABASE_URL', 'LEARNING_ALLOW_SUPERUSER_DSN', 'SUPABASE_SERVICE_ROLE_KEY', 'SUPABASE_URL', 'STORAGE_VERIFY_ROOT', 'LEARNING_STORAGE_BUCKET', 'AI_BACKEND', 'GUSTAV_ENV', 'OLLAMA_BASE_URL', 'AI_VISION_MODEL', 'AI_FEEDBACK_MODEL', 'AI_TIMEOUT_VISION', 'AI_TIMEOUT_FEEDBACK', 'LEARNING_DSPY_JSON_ADAPTER', 'AI_THINK_LEVEL', 'WORKER_MAX_RETRIES', 'WORKER_BACKOFF_SECONDS', 'WORKER_BACKOFF_MAX_SECONDS', 'WORKER_LEASE_SECONDS', 'WORKER_LEASE_MULTIPLIER', 'WORKER_CONCURRENCY', 'WORKER_POLL_INTERVAL', 'WORKER_LISTEN_NOTIFY', 'WORKER_DRAIN_GRACE_SECONDS', 'WORKER_EXIT_WHEN_DRAINED', 'LEARNING_HTTP_ADDR', 'LOG_LEVEL', 'LOG_FORMAT', 'LEARNING_HEALTH_TOKEN']))").message("env must not set variables the operator manages (the DSN and the Supabase key come only from Secret references; use the dedicated spec fields for the rest; LEARNING_HEALTH_TOKEN would lock the operator out of the health report)")
)]
pub struct RunnerSpec {
    /// Container image of `learning-runner`. Default: the runner image the operator was
    /// installed with (its `RUNNER_IMAGE`; the Helm chart sets it to the runner of the
    /// operator's own version). Set it to pin another version (a tag or a digest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// Image pull policy (`Always`, `IfNotPresent`, `Never`). Default: Kubernetes' default for the tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// Secrets for pulling the runner image from a private registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// Fixed number of runner pods (default 1). Mutually exclusive with `autoscaling`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: Option<i32>,
    /// Scale the runners with the queue: the operator's own engine, KEDA, or an autoscaler of
    /// your own (`engine`), between bounds. Mutually exclusive with `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
    /// Jobs one runner processes at once (`WORKER_CONCURRENCY`). Default: derived from what
    /// Ollama serves — 4 × the model calls per runner (⌈`spec.ollama.numParallel` ÷ the most
    /// runners⌉) × the models, at most 16, so that work for one model runs in phases; 1 with
    /// the stub backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub concurrency: Option<i32>,
    /// Retries of a transient error before a job fails (`WORKER_MAX_RETRIES`).
    #[serde(default = "default_max_retries")]
    #[schemars(range(min = 0, max = 20))]
    pub max_retries: i32,
    /// Base of the exponential retry delay in seconds (`WORKER_BACKOFF_SECONDS`).
    #[serde(default = "default_backoff_seconds")]
    #[schemars(range(min = 1, max = 3600))]
    pub backoff_seconds: i32,
    /// Cap of the retry delay in seconds (`WORKER_BACKOFF_MAX_SECONDS`); at least `backoffSeconds`.
    #[serde(default = "default_backoff_max_seconds")]
    #[schemars(range(min = 1, max = 86400))]
    pub backoff_max_seconds: i32,
    /// Heartbeat interval in seconds (`WORKER_LEASE_SECONDS`); a lease lasts this times `leaseMultiplier`.
    #[serde(default = "default_lease_seconds")]
    #[schemars(range(min = 5, max = 3600))]
    pub lease_seconds: i32,
    /// Lease length as a multiple of the heartbeat interval (`WORKER_LEASE_MULTIPLIER`).
    #[serde(default = "default_lease_multiplier")]
    #[schemars(range(min = 2, max = 20))]
    pub lease_multiplier: i32,
    /// Queue polling interval in milliseconds, the fallback when no notification arrives
    /// (`WORKER_POLL_INTERVAL`, passed in seconds).
    #[serde(default = "default_poll_interval_milliseconds")]
    #[schemars(range(min = 50, max = 60000))]
    pub poll_interval_milliseconds: i32,
    /// Wake on PostgreSQL `LISTEN learning_jobs` notifications (`WORKER_LISTEN_NOTIFY`).
    #[serde(default = "default_true")]
    pub listen_notify: bool,
    /// Seconds running jobs get to finish after SIGTERM (`WORKER_DRAIN_GRACE_SECONDS`). The pod's
    /// `terminationGracePeriodSeconds` is this plus a margin of 15 seconds.
    #[serde(default = "default_drain_grace_seconds")]
    #[schemars(range(min = 0, max = 3600))]
    pub drain_grace_seconds: i32,
    /// Log level or filter (`LOG_LEVEL`), e.g. `info` or `learning_runner=debug`.
    #[serde(default = "default_log_level")]
    #[schemars(length(min = 1, max = 256))]
    pub log_level: String,
    /// CPU and memory requests and limits of the runner container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Node labels the runner pods must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Tolerations of the runner pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub tolerations: Option<Vec<Toleration>>,
    /// Affinity rules of the runner pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Extra environment variables of the runner container. Names the operator manages
    /// (see the documentation) are refused; secrets belong in `valueFrom.secretKeyRef`. Each
    /// name at most once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub env: Option<Vec<EnvVar>>,
}

/// Queue-driven scaling: who scales the runners (`engine`), and within which bounds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.minReplicas) || self.minReplicas <= self.maxReplicas").message("minReplicas must not exceed maxReplicas"),
    validation = Rule::new("!has(self.minReplicas) || self.minReplicas >= 1 || (has(self.engine) && self.engine == 'keda')").message("minReplicas 0 (scale from zero) needs engine keda: the builtin engine learns the backlog from a running runner")
)]
pub struct AutoscalingSpec {
    /// Who sets the runner Deployment's `replicas`: `builtin` (default) — the operator, from
    /// the queue depth the runners report; `keda` — a KEDA `ScaledObject` the operator creates
    /// (PostgreSQL trigger on GUSTAV's queue; needs KEDA installed); `external` — nobody here:
    /// the operator never sets `replicas`, for a HorizontalPodAutoscaler of your own.
    #[serde(default)]
    pub engine: AutoscalingEngine,
    /// Fewest runner pods. At least 1 with `builtin` (the operator learns the backlog from the
    /// runners); 0 with `keda` scales to zero while no job is visible or leased.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 0, max = 100))]
    pub min_replicas: i32,
    /// Most runner pods. With every engine also the divisor of Ollama's slots: the runners'
    /// model calls per model are ⌈`spec.ollama.numParallel` ÷ `maxReplicas`⌉.
    #[schemars(range(min = 1, max = 100))]
    pub max_replicas: i32,
    /// Jobs (visible and leased) one runner pod is expected to absorb: the engine asks for
    /// ⌈jobs ÷ `jobsPerReplica`⌉ pods within the bounds (`keda`: the trigger's
    /// `targetQueryValue`; unused with `external`).
    #[serde(default = "default_jobs_per_replica")]
    #[schemars(range(min = 1, max = 10000))]
    pub jobs_per_replica: i32,
    /// Seconds the demand must stay below the current count before runners are removed
    /// (`builtin`; `keda`: the HPA's scale-down stabilisation window and KEDA's
    /// `cooldownPeriod` before scaling to zero). Scaling up is immediate.
    #[serde(default = "default_scale_down_stabilization_seconds")]
    #[schemars(range(min = 0, max = 3600))]
    pub scale_down_stabilization_seconds: i32,
}

/// Who scales the runners.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum AutoscalingEngine {
    /// The operator: visible + leased jobs, capped by what Ollama serves, a scale-down
    /// stabilisation window, never below the runners holding leases.
    #[default]
    Builtin,
    /// A KEDA `ScaledObject` (and `TriggerAuthentication`) owned by the operator.
    Keda,
    /// An autoscaler of your own (e.g. a HorizontalPodAutoscaler); the operator leaves
    /// `replicas` alone.
    External,
}

impl AutoscalingSpec {
    /// The builtin engine between `min` and `max` replicas, every other setting defaulted.
    pub fn between(min: i32, max: i32) -> Self {
        AutoscalingSpec {
            engine: AutoscalingEngine::default(),
            min_replicas: min,
            max_replicas: max,
            jobs_per_replica: default_jobs_per_replica(),
            scale_down_stabilization_seconds: default_scale_down_stabilization_seconds(),
        }
    }
}

impl AutoscalingEngine {
    /// The spelling in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            AutoscalingEngine::Builtin => "builtin",
            AutoscalingEngine::Keda => "keda",
            AutoscalingEngine::External => "external",
        }
    }
}

/// Image pull policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum PullPolicy {
    /// Always pull.
    Always,
    /// Pull when the image is not on the node.
    IfNotPresent,
    /// Never pull.
    Never,
}

impl PullPolicy {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

impl Default for RunnerSpec {
    /// Every default; the image the operator's.
    fn default() -> Self {
        RunnerSpec {
            image: None,
            image_pull_policy: None,
            image_pull_secrets: None,
            replicas: None,
            autoscaling: None,
            concurrency: None,
            max_retries: default_max_retries(),
            backoff_seconds: default_backoff_seconds(),
            backoff_max_seconds: default_backoff_max_seconds(),
            lease_seconds: default_lease_seconds(),
            lease_multiplier: default_lease_multiplier(),
            poll_interval_milliseconds: default_poll_interval_milliseconds(),
            listen_notify: true,
            drain_grace_seconds: default_drain_grace_seconds(),
            log_level: default_log_level(),
            resources: None,
            node_selector: None,
            tolerations: None,
            affinity: None,
            env: None,
        }
    }
}

impl RunnerSpec {
    /// A runner spec with every default and the given image.
    pub fn with_image(image: impl Into<String>) -> Self {
        RunnerSpec {
            image: Some(image.into()),
            ..RunnerSpec::default()
        }
    }
}

fn default_max_retries() -> i32 {
    3
}
fn default_backoff_seconds() -> i32 {
    10
}
fn default_backoff_max_seconds() -> i32 {
    600
}
fn default_lease_seconds() -> i32 {
    45
}
fn default_lease_multiplier() -> i32 {
    4
}
fn default_poll_interval_milliseconds() -> i32 {
    500
}
fn default_drain_grace_seconds() -> i32 {
    25
}
fn default_log_level() -> String {
    "info".into()
}
fn default_min_replicas() -> i32 {
    1
}
fn default_jobs_per_replica() -> i32 {
    10
}
fn default_scale_down_stabilization_seconds() -> i32 {
    300
}
pub(crate) fn default_true() -> bool {
    true
}
