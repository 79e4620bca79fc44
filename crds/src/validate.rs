//! The cross-field rules in Rust, mirroring the CRD's CEL rules (and the runner's URL check), so
//! the operator reports a bad spec even where the API server did not check it (an older CRD, a
//! cluster without CEL, `render` offline). Pure.

use crate::ai::Backend;
use crate::learning_worker::{LearningWorkerSpec, MAX_NAME_LEN};
use crate::ollama::{GpuSpec, GpuVendor, OllamaMode, OllamaSpec};
use crate::runner::{AutoscalingEngine, RunnerSpec};
use crate::storage::StorageSpec;
use learning_contract::env::OPERATOR_SET;
use learning_contract::url::{check_external_ollama_url, check_supabase_url};

/// One broken rule: the field path and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    /// JSON path of the field, e.g. `spec.ollama.url`.
    pub field: &'static str,
    /// What is wrong, in plain words.
    pub message: String,
}

fn err(field: &'static str, message: impl Into<String>) -> SpecError {
    SpecError {
        field,
        message: message.into(),
    }
}

/// Checks the rules the schema's types cannot express. An empty list means valid.
///
/// The errors come section by section, in the order of the spec: the name, the runner, the AI,
/// Ollama, the storage, the network, and last whether the storage names any source.
pub fn validate(name: &str, spec: &LearningWorkerSpec) -> Vec<SpecError> {
    let mut errors = Vec::new();
    check_name(name, &mut errors);
    check_runner(&spec.runner, &mut errors);
    check_ai(spec, &mut errors);
    check_ollama_url(&spec.ollama, &mut errors);
    check_ollama_env(&spec.ollama, &mut errors);
    if spec.ollama.idle_scale_down.is_some() && !spec.manages_ollama() {
        errors.push(err(
            "spec.ollama.idleScaleDown",
            "applies only to a managed Ollama with ai.backend local (the operator cannot scale \
             an external one, and the stub backend runs none)",
        ));
    }
    check_gpu(&spec.ollama.gpu, &mut errors);
    check_storage(spec, &mut errors);
    check_network(spec, &mut errors);
    check_storage_sources(spec.storage.as_ref(), &mut errors);
    errors
}

/// `metadata.name`: a short DNS label, as every child's name derives from it.
fn check_name(name: &str, errors: &mut Vec<SpecError>) {
    if name.len() > MAX_NAME_LEN || !is_dns_label_starting_with_letter(name) {
        errors.push(err(
            "metadata.name",
            format!(
                "must be a DNS label of at most {MAX_NAME_LEN} characters starting with a letter"
            ),
        ));
    }
}

/// `spec.runner`: replicas or autoscaling (with sane bounds), a positive concurrency, a
/// backoff within its maximum, and no env the operator sets itself.
fn check_runner(r: &RunnerSpec, errors: &mut Vec<SpecError>) {
    if r.replicas.is_some() && r.autoscaling.is_some() {
        errors.push(err(
            "spec.runner",
            "set either replicas or autoscaling, not both",
        ));
    }
    if let Some(a) = &r.autoscaling {
        if a.min_replicas > a.max_replicas {
            errors.push(err(
                "spec.runner.autoscaling",
                "minReplicas must not exceed maxReplicas",
            ));
        }
        if a.min_replicas < 1 && a.engine != AutoscalingEngine::Keda {
            errors.push(err(
                "spec.runner.autoscaling.minReplicas",
                "minReplicas 0 (scale from zero) needs engine keda: the builtin engine learns the backlog from a running runner",
            ));
        }
        if a.jobs_per_replica < 1 {
            errors.push(err(
                "spec.runner.autoscaling.jobsPerReplica",
                "must be positive",
            ));
        }
    }
    if r.concurrency.is_some_and(|c| c < 1) {
        errors.push(err("spec.runner.concurrency", "must be positive"));
    }
    if r.backoff_seconds > r.backoff_max_seconds {
        errors.push(err(
            "spec.runner",
            "backoffSeconds must not exceed backoffMaxSeconds",
        ));
    }
    if let Some(name) = r.env.as_deref().and_then(duplicate_name) {
        errors.push(err("spec.runner.env", format!("{name} is listed twice")));
    }
    for e in r.env.iter().flatten() {
        if OPERATOR_SET.contains(&e.name.as_str()) {
            errors.push(err(
                "spec.runner.env",
                format!(
                    "{} is managed by the operator (secrets only via Secret references)",
                    e.name
                ),
            ));
        }
    }
}

/// `spec.ai`: the think level only for gpt-oss, and no stub backend in production or staging.
fn check_ai(spec: &LearningWorkerSpec, errors: &mut Vec<SpecError>) {
    if spec.ai.think_level.is_some() && !spec.ai.feedback_model.starts_with("gpt-oss") {
        errors.push(err(
            "spec.ai.thinkLevel",
            "applies only to gpt-oss feedback models",
        ));
    }
    if spec.ai.backend == Backend::Stub
        && spec.environment.as_deref().is_some_and(|e| {
            matches!(
                e.trim().to_ascii_lowercase().as_str(),
                "prod" | "production" | "stage" | "staging"
            )
        })
    {
        errors.push(err(
            "spec.ai.backend",
            "the stub AI backend is refused in production and staging environments",
        ));
    }
}

/// The first name that `env` lists twice (server-side apply keys a container's env by name).
fn duplicate_name(env: &[k8s_openapi::api::core::v1::EnvVar]) -> Option<&str> {
    env.iter()
        .enumerate()
        .find(|(i, e)| env[..*i].iter().any(|f| f.name == e.name))
        .map(|(_, e)| e.name.as_str())
}

/// `spec.ollama.env`: no names the operator sets, each name once, and only for a managed
/// Ollama.
fn check_ollama_env(o: &crate::ollama::OllamaSpec, errors: &mut Vec<SpecError>) {
    let env = o.env.as_deref().unwrap_or_default();
    if let Some(name) = duplicate_name(env) {
        errors.push(err("spec.ollama.env", format!("{name} is listed twice")));
    }
    if !env.is_empty() && o.mode != crate::ollama::OllamaMode::Managed {
        errors.push(err("spec.ollama.env", "applies only to a managed Ollama"));
    }
    for e in env {
        if crate::ollama::OLLAMA_OPERATOR_SET.contains(&e.name.as_str()) {
            errors.push(err(
                "spec.ollama.env",
                format!(
                    "{} is managed by the operator (use keepAlive, numParallel, gpu)",
                    e.name
                ),
            ));
        }
    }
}

/// `spec.ollama.url`: required (and local) when external, refused when managed.
fn check_ollama_url(o: &OllamaSpec, errors: &mut Vec<SpecError>) {
    match (o.mode, &o.url) {
        (OllamaMode::External, None) => {
            errors.push(err("spec.ollama.url", "required when mode is external"))
        }
        (OllamaMode::External, Some(url)) => {
            if let Err(why) = check_external_ollama_url(url) {
                errors.push(err("spec.ollama.url", why.to_string()));
            }
        }
        (OllamaMode::Managed, Some(_)) => {
            errors.push(err("spec.ollama.url", "only allowed when mode is external"))
        }
        (OllamaMode::Managed, None) => {}
    }
}

/// `spec.ollama.gpu`: the ROCm settings only for AMD, no more visible devices than requested,
/// and a resource name only with a vendor.
fn check_gpu(gpu: &GpuSpec, errors: &mut Vec<SpecError>) {
    if gpu.vendor != GpuVendor::Amd
        && (gpu.hsa_override_gfx_version.is_some() || gpu.hip_visible_devices.is_some())
    {
        errors.push(err(
            "spec.ollama.gpu",
            "hsaOverrideGfxVersion and hipVisibleDevices apply to AMD GPUs only",
        ));
    }
    if let Some(devices) = &gpu.hip_visible_devices {
        if devices.split(',').count() > usize::try_from(gpu.count).unwrap_or(0) {
            errors.push(err(
                "spec.ollama.gpu.hipVisibleDevices",
                "lists more GPUs than gpu.count requests (the pod gets only count devices)",
            ));
        }
    }
    if gpu.vendor == GpuVendor::None && gpu.resource_name.is_some() {
        errors.push(err(
            "spec.ollama.gpu.resourceName",
            "needs a GPU vendor (amd or nvidia)",
        ));
    }
}

/// `spec.storage`: a Supabase URL the runner accepts, storage for the local backend, and a
/// bucket name the runner accepts.
fn check_storage(spec: &LearningWorkerSpec, errors: &mut Vec<SpecError>) {
    let supabase = spec.storage.as_ref().and_then(|s| s.supabase.as_ref());
    if let Some(url) = supabase.map(|s| &s.url) {
        if let Err(why) = check_supabase_url(url) {
            errors.push(err("spec.storage.supabase.url", why.to_string()));
        }
    }
    if spec.ai.backend == Backend::Local && spec.storage.is_none() {
        errors.push(err(
            "spec.storage",
            "the local AI backend needs spec.storage (the submissions volume and/or Supabase Storage) to read submission files",
        ));
    }
    if let Some(bucket) = supabase.map(|s| &s.bucket) {
        if !is_bucket_name(bucket) {
            errors.push(err(
                "spec.storage.supabase.bucket",
                "bucket must be letters, digits, '.', '_' or '-'",
            ));
        }
    }
}

/// `spec.storage` (checked last): at least one source of submission files.
fn check_storage_sources(storage: Option<&StorageSpec>, errors: &mut Vec<SpecError>) {
    if let Some(s) = storage {
        if s.submissions_volume.is_none() && s.supabase.is_none() {
            errors.push(err(
                "spec.storage",
                "set submissionsVolume, supabase, or both",
            ));
        }
    }
}

/// `spec.network`: DNS CIDRs that parse, and runner egress only with policies and with a
/// Supabase peer when Supabase is used.
fn check_network(spec: &LearningWorkerSpec, errors: &mut Vec<SpecError>) {
    let n = &spec.network;
    for cidr in &n.dns_cidrs {
        if !is_cidr(cidr) {
            errors.push(err(
                "spec.network.dnsCidrs",
                format!("{cidr:?} is not a CIDR, e.g. 169.254.20.10/32"),
            ));
        }
    }
    if let Some(egress) = &n.runner_egress {
        if !n.policies {
            errors.push(err("spec.network.runnerEgress", "needs policies: true"));
        }
        if egress.supabase.is_none() && spec.storage.as_ref().is_some_and(|s| s.supabase.is_some())
        {
            errors.push(err(
                "spec.network.runnerEgress.supabase",
                "required when storage.supabase is set (the runners must reach it)",
            ));
        }
    }
}

/// A Supabase Storage bucket name: 1 to 63 letters, digits, `.`, `_` or `-`, not starting
/// with a dot.
fn is_bucket_name(bucket: &str) -> bool {
    !bucket.is_empty()
        && bucket.len() <= 63
        && !bucket.starts_with('.')
        && bucket
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// `address/prefix` with a prefix that fits the address family.
fn is_cidr(s: &str) -> bool {
    let Some((addr, prefix)) = s.split_once('/') else {
        return false;
    };
    let max = match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => 32,
        Ok(std::net::IpAddr::V6(_)) => 128,
        Err(_) => return false,
    };
    prefix.parse::<u8>().is_ok_and(|p| p <= max) && !prefix.starts_with('+')
}

fn is_dns_label_starting_with_letter(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && !name.ends_with('-')
}
