//! The cross-field rules in Rust, mirroring the CRD's CEL rules (and the runner's URL check), so
//! the operator reports a bad spec even where the API server did not check it (an older CRD, a
//! cluster without CEL, `render` offline). Pure.

use crate::ai::Backend;
use crate::learning_worker::{LearningWorkerSpec, MAX_NAME_LEN};
use crate::ollama::{GpuVendor, OllamaMode};
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
pub fn validate(name: &str, spec: &LearningWorkerSpec) -> Vec<SpecError> {
    let mut errors = Vec::new();
    if name.len() > MAX_NAME_LEN || !is_dns_label_starting_with_letter(name) {
        errors.push(err(
            "metadata.name",
            format!(
                "must be a DNS label of at most {MAX_NAME_LEN} characters starting with a letter"
            ),
        ));
    }
    let r = &spec.runner;
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
        if a.jobs_per_replica < 1 {
            errors.push(err(
                "spec.runner.autoscaling.jobsPerReplica",
                "must be positive",
            ));
        }
    }
    if r.concurrency < 1 {
        errors.push(err("spec.runner.concurrency", "must be positive"));
    }
    if r.backoff_seconds > r.backoff_max_seconds {
        errors.push(err(
            "spec.runner",
            "backoffSeconds must not exceed backoffMaxSeconds",
        ));
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
    let o = &spec.ollama;
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
    if o.gpu.vendor != GpuVendor::Amd
        && (o.gpu.hsa_override_gfx_version.is_some() || o.gpu.hip_visible_devices.is_some())
    {
        errors.push(err(
            "spec.ollama.gpu",
            "hsaOverrideGfxVersion and hipVisibleDevices apply to AMD GPUs only",
        ));
    }
    if let Some(devices) = &o.gpu.hip_visible_devices {
        if devices.split(',').count() > usize::try_from(o.gpu.count).unwrap_or(0) {
            errors.push(err(
                "spec.ollama.gpu.hipVisibleDevices",
                "lists more GPUs than gpu.count requests (the pod gets only count devices)",
            ));
        }
    }
    if o.gpu.vendor == GpuVendor::None && o.gpu.resource_name.is_some() {
        errors.push(err(
            "spec.ollama.gpu.resourceName",
            "needs a GPU vendor (amd or nvidia)",
        ));
    }
    if let Some(url) = spec
        .storage
        .as_ref()
        .and_then(|s| s.supabase.as_ref())
        .map(|s| &s.url)
    {
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
    if let Some(bucket) = spec
        .storage
        .as_ref()
        .and_then(|s| s.supabase.as_ref())
        .map(|s| &s.bucket)
    {
        let ok = !bucket.is_empty()
            && bucket.len() <= 63
            && !bucket.starts_with('.')
            && bucket
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !ok {
            errors.push(err(
                "spec.storage.supabase.bucket",
                "bucket must be letters, digits, '.', '_' or '-'",
            ));
        }
    }
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
    if let Some(s) = &spec.storage {
        if s.submissions_volume.is_none() && s.supabase.is_none() {
            errors.push(err(
                "spec.storage",
                "set submissionsVolume, supabase, or both",
            ));
        }
    }
    errors
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
