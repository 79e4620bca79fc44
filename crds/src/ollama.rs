//! `spec.ollama`: the model server — `managed` (the operator runs Ollama on a GPU node, with the
//! models on a PVC) or `external` (an existing in-cluster Ollama reached by URL).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, EnvVar, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::runner::PullPolicy;
use crate::schema::{MODEL_NAME, RESOURCE_NAME};

/// The Ollama version the default images pin.
pub const OLLAMA_VERSION: &str = "0.12.3";
/// Default image for AMD GPUs (ROCm build).
pub const DEFAULT_IMAGE_AMD: &str = "docker.io/ollama/ollama:0.12.3-rocm";
/// Default image for NVIDIA GPUs and CPU-only (the CUDA build also runs on CPU).
pub const DEFAULT_IMAGE_GENERIC: &str = "docker.io/ollama/ollama:0.12.3";
/// An external Ollama's URL in the schema (the contract's pattern; `localhost` also matches
/// its name part and is refused by a CEL rule).
pub use learning_contract::url::EXTERNAL_OLLAMA_URL_PATTERN as EXTERNAL_URL_PATTERN;

/// Environment variables the operator sets on the managed Ollama itself (from the spec);
/// `spec.ollama.env` must not name them.
pub const OLLAMA_OPERATOR_SET: [&str; 8] = [
    "OLLAMA_HOST",
    "HOME",
    "OLLAMA_MODELS",
    "OLLAMA_KEEP_ALIVE",
    "OLLAMA_NUM_PARALLEL",
    "OLLAMA_MAX_LOADED_MODELS",
    "HIP_VISIBLE_DEVICES",
    "HSA_OVERRIDE_GFX_VERSION",
];

/// A Kubernetes resource quantity (the pattern controller-gen gives `resource.Quantity`).
pub const QUANTITY_PATTERN: &str = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";

/// The model server.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.mode) && self.mode == 'external' ? has(self.url) : true").message("url is required when mode is external"),
    validation = Rule::new("has(self.mode) && self.mode == 'external' ? true : !has(self.url)").message("url is only allowed when mode is external (the operator gives runners the URL of a managed Ollama)"),
    validation = Rule::new("!has(self.url) || !self.url.lowerAscii().matches('^https?://localhost([:/]|$)')").message("url must not be localhost: it would be the runner pod itself, which runs no Ollama; use the external Ollama's in-cluster service name"),
    validation = Rule::new("!has(self.env) || self.env.all(e, !(e.name in ['OLLAMA_HOST', 'HOME', 'OLLAMA_MODELS', 'OLLAMA_KEEP_ALIVE', 'OLLAMA_NUM_PARALLEL', 'OLLAMA_MAX_LOADED_MODELS', 'HIP_VISIBLE_DEVICES', 'HSA_OVERRIDE_GFX_VERSION']))").message("env must not set variables the operator manages (use keepAlive, numParallel and gpu for those)"),
    validation = Rule::new("!has(self.env) || size(self.env) == 0 || !has(self.mode) || self.mode == 'managed'").message("env applies only to a managed Ollama"),
    validation = Rule::new("!has(self.idleScaleDown) || !has(self.mode) || self.mode == 'managed'").message("idleScaleDown applies only to a managed Ollama (the operator cannot scale an external one)")
)]
pub struct OllamaSpec {
    /// `managed` (default): the operator runs Ollama; `external`: use `url`, create no Ollama objects.
    #[serde(default)]
    pub mode: OllamaMode,
    /// Base URL of an external Ollama (`OLLAMA_BASE_URL`); only with `mode: external`: an
    /// in-cluster service — its name (without dots, starting with a letter) in the worker's
    /// namespace, e.g. `http://ollama:11434`, or its cluster DNS name in another namespace,
    /// `http://ollama.ai-shared.svc:11434` or `….svc.cluster.local` (one Ollama shared by
    /// several schools). Public hosts are refused (no cloud egress for student work), and so
    /// are `localhost` and loopback addresses (that would be the runner pod itself). With
    /// `network.runnerEgress` the runners may reach that namespace on the URL's port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 8, max = 256), pattern(EXTERNAL_URL_PATTERN))]
    pub url: Option<String>,
    /// Ollama image. Default: a pinned release, the ROCm build for AMD GPUs
    /// (`docker.io/ollama/ollama:<version>-rocm`), else the generic build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// Image pull policy of the Ollama image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// The GPU Ollama runs on.
    #[serde(default)]
    pub gpu: GpuSpec,
    /// Node labels the Ollama pod must match, e.g. the GPU nodes' label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Tolerations in addition to the one the operator adds for the GPU resource taint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub tolerations: Option<Vec<Toleration>>,
    /// Affinity rules of the Ollama pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// CPU and memory requests and limits; the GPU limit is added from `gpu`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The volume the models are kept on.
    #[serde(default)]
    pub storage: ModelStorage,
    /// Models to pull in addition to `spec.ai`'s vision and feedback models.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        inner(length(min = 1, max = 128), pattern(MODEL_NAME))
    )]
    pub extra_models: Vec<String>,
    /// Pull missing models with a Job (default true). When false, models must be put on the
    /// volume by other means; status still reports which are missing.
    #[serde(default = "crate::runner::default_true")]
    pub pull_models: bool,
    /// How long a model stays loaded after its last use (`OLLAMA_KEEP_ALIVE`): whole seconds,
    /// minutes or hours (`30s`, `30m`, `24h`; a bare number is seconds), or `-1` for forever —
    /// the runner's rule.
    #[serde(default = "default_keep_alive")]
    #[schemars(length(min = 1, max = 16), regex(pattern = r"^(-1|[0-9]+[smh]?)$"))]
    pub keep_alive: String,
    /// Requests one model serves at once (`OLLAMA_NUM_PARALLEL`). Default: Ollama's own (1).
    /// The runners' model calls per model (`AI_MAX_PARALLEL_CALLS`) and, unless
    /// `spec.runner.concurrency` is set, their jobs derive from it; with `mode: external`
    /// state what that server is configured with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub num_parallel: Option<i32>,
    /// Extra environment variables of the managed Ollama container, e.g.
    /// `OLLAMA_FLASH_ATTENTION=1`, `OLLAMA_CONTEXT_LENGTH=8192`, `OLLAMA_KV_CACHE_TYPE=q8_0`.
    /// Names the operator sets (`OLLAMA_HOST`, `HOME`, `OLLAMA_MODELS`, `OLLAMA_KEEP_ALIVE`,
    /// `OLLAMA_NUM_PARALLEL`, `OLLAMA_MAX_LOADED_MODELS`, `HIP_VISIBLE_DEVICES`,
    /// `HSA_OVERRIDE_GFX_VERSION`) are refused: use the dedicated fields. Managed mode only;
    /// each name at most once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub env: Option<Vec<EnvVar>>,
    /// Frees the GPU while no one is working (off when absent): once the queue has had no job
    /// (visible, leased or waiting for a retry) for `afterSeconds`, the managed Ollama is
    /// scaled to zero; when jobs become visible again it is started, the runners wait for it
    /// and warm the models. The queue is read from the runners' metrics, so it needs running
    /// runners. Managed mode only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_scale_down: Option<IdleScaleDown>,
    /// Numeric user id Ollama runs as (non-root; its HOME and models live on the volume).
    #[serde(default = "default_run_as_user")]
    #[schemars(range(min = 1, max = 2147483647))]
    pub run_as_user: i64,
}

impl Default for OllamaSpec {
    fn default() -> Self {
        OllamaSpec {
            mode: OllamaMode::default(),
            url: None,
            image: None,
            image_pull_policy: None,
            gpu: GpuSpec::default(),
            node_selector: None,
            tolerations: None,
            affinity: None,
            resources: None,
            storage: ModelStorage::default(),
            extra_models: Vec::new(),
            pull_models: true,
            keep_alive: default_keep_alive(),
            num_parallel: None,
            env: None,
            idle_scale_down: None,
            run_as_user: default_run_as_user(),
        }
    }
}

/// When the managed Ollama is scaled to zero (`spec.ollama.idleScaleDown`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdleScaleDown {
    /// How long the queue must have had no job before Ollama is scaled to zero, in seconds
    /// (default 1800, at least 60: the runners refresh the queue they report every 10 s, and
    /// every wake-up costs a model load).
    #[serde(default = "default_idle_after_seconds")]
    #[schemars(range(min = 60, max = 604800))]
    pub after_seconds: i32,
}

fn default_idle_after_seconds() -> i32 {
    1800
}

impl OllamaSpec {
    /// The image to run: the explicit one, else the pinned default for the GPU vendor.
    pub fn effective_image(&self) -> &str {
        match (&self.image, self.gpu.vendor) {
            (Some(image), _) => image,
            (None, GpuVendor::Amd) => DEFAULT_IMAGE_AMD,
            (None, _) => DEFAULT_IMAGE_GENERIC,
        }
    }
}

/// Who runs Ollama.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum OllamaMode {
    /// The operator runs Ollama.
    #[default]
    Managed,
    /// An Ollama the operator does not manage, reached by `url`.
    External,
}

/// GPU settings of the managed Ollama.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.vendor) && self.vendor == 'amd' ? true : !has(self.hsaOverrideGfxVersion) && !has(self.hipVisibleDevices)").message("hsaOverrideGfxVersion and hipVisibleDevices apply to AMD GPUs only"),
    validation = Rule::new("has(self.vendor) && self.vendor == 'none' ? !has(self.resourceName) : true").message("resourceName needs a GPU vendor (amd or nvidia)"),
    validation = Rule::new("!has(self.hipVisibleDevices) || self.hipVisibleDevices.split(',').size() <= (has(self.count) ? self.count : 1)").message("hipVisibleDevices lists more GPUs than gpu.count requests (the pod gets only count devices)")
)]
pub struct GpuSpec {
    /// `amd` (default; ROCm, resource `amd.com/gpu`), `nvidia` (`nvidia.com/gpu`) or `none` (CPU only).
    #[serde(default)]
    pub vendor: GpuVendor,
    /// GPUs for the Ollama pod.
    #[serde(default = "default_gpu_count")]
    #[schemars(range(min = 1, max = 8))]
    pub count: i32,
    /// Extended resource name, if the device plugin uses another than the vendor's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 253), pattern(RESOURCE_NAME))]
    pub resource_name: Option<String>,
    /// `HIP_VISIBLE_DEVICES`: which of the GPUs given to the pod Ollama sees, e.g. `0` or `0,1`;
    /// at most `count` entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[0-9]+(,[0-9]+)*$"))]
    pub hip_visible_devices: Option<String>,
    /// `HSA_OVERRIDE_GFX_VERSION`: make ROCm treat the GPU as another gfx target, e.g. `10.3.0`
    /// for RDNA2 cards ROCm does not list, `11.0.0` for RDNA3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 5, max = 16),
        regex(pattern = r"^[0-9]+\.[0-9]+\.[0-9]+$")
    )]
    pub hsa_override_gfx_version: Option<String>,
    /// Group id of the node's `render` group (owner of `/dev/dri/renderD*`), added to the
    /// Ollama pod's supplemental groups so a non-root Ollama can open the GPU. Unset on AMD:
    /// `GPUAccelerated=False`, reason `DeviceGroupsMissing` (unless containerd's
    /// `device_ownership_from_security_context` gives the devices to the pod's user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2147483647))]
    pub render_group_id: Option<i64>,
    /// Group id of the node's `video` group (owner of `/dev/kfd` on many distributions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2147483647))]
    pub video_group_id: Option<i64>,
}

impl Default for GpuSpec {
    fn default() -> Self {
        GpuSpec {
            vendor: GpuVendor::default(),
            count: default_gpu_count(),
            resource_name: None,
            hip_visible_devices: None,
            hsa_override_gfx_version: None,
            render_group_id: None,
            video_group_id: None,
        }
    }
}

impl GpuSpec {
    /// The extended resource requested for the GPUs (`None` for CPU only).
    pub fn resource(&self) -> Option<&str> {
        match (self.vendor, &self.resource_name) {
            (GpuVendor::None, _) => None,
            (_, Some(name)) => Some(name),
            (GpuVendor::Amd, None) => Some("amd.com/gpu"),
            (GpuVendor::Nvidia, None) => Some("nvidia.com/gpu"),
        }
    }
}

/// GPU vendor.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum GpuVendor {
    /// AMD GPUs with ROCm.
    #[default]
    Amd,
    /// NVIDIA GPUs with CUDA.
    Nvidia,
    /// No GPU: Ollama runs on the CPU.
    None,
}

/// The model volume. A PersistentVolumeClaim's class cannot change and its size cannot
/// shrink: the rules refuse such edits (the operator keeps the claim as it is if one slips
/// through and reports `Degraded`, reason `StorageChangeRefused`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)").message("storageClassName is immutable (the model PersistentVolumeClaim's class cannot change; delete the claim to change it)"),
    validation = Rule::new("quantity(string(self.size)).compareTo(quantity(string(oldSelf.size))) >= 0").message("size may grow but not shrink (a PersistentVolumeClaim cannot shrink)")
)]
pub struct ModelStorage {
    /// Size of the PersistentVolumeClaim for models; may grow (if the class allows it), never shrink.
    #[serde(default = "default_storage_size")]
    #[schemars(extend("maxLength" = 32, "pattern" = QUANTITY_PATTERN))]
    pub size: Quantity,
    /// Storage class of the claim. Default: the cluster's default class. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
}

impl Default for ModelStorage {
    fn default() -> Self {
        ModelStorage {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

fn default_keep_alive() -> String {
    "24h".into()
}
fn default_run_as_user() -> i64 {
    1000
}
fn default_gpu_count() -> i32 {
    1
}
fn default_storage_size() -> Quantity {
    Quantity("50Gi".into())
}
