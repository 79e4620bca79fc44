//! The cross-field rules in Rust, mirroring the CRD's CEL rules (and the runner's URL check), so
//! the operator reports a bad spec even where the API server did not check it (an older CRD, a
//! cluster without CEL, `render` offline). Pure.

use crate::ai::Backend;
use crate::learning_worker::{LearningWorkerSpec, MAX_NAME_LEN};
use crate::ollama::{GpuVendor, OllamaMode};
use crate::runner::RESERVED_ENV;

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
        if RESERVED_ENV.contains(&e.name.as_str()) {
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
            if let Err(why) = check_external_url(url) {
                errors.push(err("spec.ollama.url", why));
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
            errors.push(err("spec.storage.supabase.url", why));
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

/// The runner's `SUPABASE_URL` rule: http(s) and a non-empty rest without `@` (userinfo), `?`,
/// `#` or spaces (the object path is appended to it).
pub fn check_supabase_url(url: &str) -> Result<(), String> {
    let url = url.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("must start with http:// or https://")?;
    if rest.is_empty() || rest.contains(['@', '?', '#', ' ']) {
        return Err("must be a plain base URL: no credentials, query (?) or fragment (#)".into());
    }
    Ok(())
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

/// The runner's `OLLAMA_BASE_URL` rule: http(s), no userinfo, a valid port, and a host that is
/// `localhost`, a loopback address or a dot-less service name.
pub fn check_local_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("must start with http:// or https://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err("must not contain credentials".into());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("malformed IPv6 host")?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if let Some(p) = port {
        if !matches!(p.parse::<u16>(), Ok(n) if n > 0) {
            return Err(format!("invalid port {p:?}"));
        }
    }
    let loopback = host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback());
    let service = !host.is_empty()
        && host.len() <= 63
        && host.parse::<std::net::IpAddr>().is_err()
        && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !host.starts_with('-')
        && !host.ends_with('-');
    if host.eq_ignore_ascii_case("localhost") || loopback || service {
        Ok(())
    } else {
        Err(format!("host {host:?} is not local: use localhost, a loopback address, or an in-cluster service name without dots"))
    }
}

/// The rule for an external Ollama's URL: the runner's rule ([`check_local_url`]), and a
/// dot-less service name that starts with a letter — not `localhost` or a loopback address,
/// which would point into the runner pod (the operator runs no Ollama sidecar there) and which
/// the operator could never probe.
pub fn check_external_url(url: &str) -> Result<(), String> {
    check_local_url(url)?;
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    if host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!("host {host:?} would be the runner pod itself (no Ollama runs there): use the in-cluster service name of the external Ollama, e.g. http://ollama:11434"));
    }
    if !host.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(format!(
            "host {host:?} must be a service name starting with a letter"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_urls_follow_the_runner_rule() {
        for ok in [
            "http://ollama:11434",
            "http://localhost:11434/",
            "https://127.0.0.1:8443",
            "http://[::1]:11434",
            "http://gpu-ollama",
        ] {
            assert_eq!(check_local_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "ftp://ollama",
            "http://u:p@ollama:1",
            "http://ollama:0",
            "http://ollama:99999",
            "https://api.example.com",
            "http://10.0.0.5:11434",
            "http://-x",
        ] {
            assert!(check_local_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn external_urls_must_name_a_service_not_the_runner_pod() {
        for ok in [
            "http://ollama:11434",
            "https://gpu-ollama/",
            "http://Ollama:8080/api",
        ] {
            assert_eq!(check_external_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://localhost:11434",
            "http://LOCALHOST",
            "https://127.0.0.1:8443",
            "http://127.1.2.3",
            "http://[::1]:11434",
            "http://1ollama:11434",
            "https://api.example.com",
        ] {
            assert!(check_external_url(bad).is_err(), "{bad}");
        }
    }
}
