//! Parsers for what the operator reads over HTTP — the runners' health report (contract §9) and
//! queue metrics, Ollama's `/api/version`, `/api/tags` and `/api/ps` — and model-name matching.
//! Pure; the HTTP calls live in `observe`.

use learning_contract::metrics as scraped;
use learning_crds::status::{HealthReport, QueueStatus};
use serde::Deserialize;

/// Result of asking something over HTTP.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe<T> {
    /// Not asked (nothing to ask, or not applicable).
    Skipped,
    /// Asked, and it failed (the text says how).
    Failed(String),
    /// The answer.
    Ok(T),
}

impl<T> Probe<T> {
    /// The answer, if there is one.
    pub fn ok(&self) -> Option<&T> {
        match self {
            Probe::Ok(t) => Some(t),
            _ => None,
        }
    }
}

/// The health report (served with 200 when healthy and 503 when degraded; both carry it).
pub fn parse_health(body: &str) -> Result<HealthReport, String> {
    serde_json::from_str(body).map_err(|e| format!("health report is not the contract's JSON: {e}"))
}

/// Queue depth from the runner's `/metrics` (`learning_runner_queue_jobs{state=...}` and
/// `learning_runner_oldest_job_age_seconds`).
pub fn parse_queue_metrics(text: &str) -> Result<QueueStatus, String> {
    let mut q = QueueStatus::default();
    let mut seen = false;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        let n = v.max(0.0).round() as i64;
        if let Some(labels) = key
            .strip_prefix(scraped::QUEUE_JOBS)
            .and_then(|rest| rest.strip_prefix('{'))
        {
            seen = true;
            let state = labels
                .trim_end_matches('}')
                .strip_prefix(scraped::QUEUE_STATE_LABEL)
                .and_then(|rest| rest.strip_prefix("=\""))
                .and_then(|rest| rest.strip_suffix('"'));
            match state {
                Some(scraped::STATE_VISIBLE) => q.visible = n,
                Some(scraped::STATE_DELAYED) => q.delayed = n,
                Some(scraped::STATE_LEASED) => q.leased = n,
                Some(scraped::STATE_FAILED) => q.failed = n,
                _ => {}
            }
        } else if key == scraped::OLDEST_JOB_AGE_SECONDS {
            q.oldest_job_age_seconds = n;
        }
    }
    if seen {
        Ok(q)
    } else {
        Err(format!(
            "no {} in the runner's metrics",
            scraped::QUEUE_JOBS
        ))
    }
}

#[derive(Deserialize)]
struct VersionJson {
    version: String,
}

/// `/api/version` → the version.
pub fn parse_version(body: &str) -> Result<String, String> {
    serde_json::from_str::<VersionJson>(body)
        .map(|v| v.version)
        .map_err(|e| format!("/api/version: {e}"))
}

#[derive(Deserialize)]
struct ModelsJson {
    #[serde(default)]
    models: Vec<ModelJson>,
}

#[derive(Deserialize)]
struct ModelJson {
    name: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    size_vram: u64,
}

/// `/api/tags` → the names of the models present.
pub fn parse_tags(body: &str) -> Result<Vec<String>, String> {
    serde_json::from_str::<ModelsJson>(body)
        .map(|m| m.models.into_iter().map(|m| m.name).collect())
        .map_err(|e| format!("/api/tags: {e}"))
}

/// A loaded model (`/api/ps`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedModel {
    /// Model name.
    pub name: String,
    /// Bytes in memory.
    pub size: u64,
    /// Bytes of it in GPU memory.
    pub size_vram: u64,
}

impl LoadedModel {
    /// Share in GPU memory, in whole percent rounded down (the contract's rounding).
    pub fn gpu_percent(&self) -> i32 {
        learning_contract::gpu::gpu_percent(self.size, self.size_vram)
    }
}

/// `/api/ps` → the loaded models.
pub fn parse_ps(body: &str) -> Result<Vec<LoadedModel>, String> {
    serde_json::from_str::<ModelsJson>(body)
        .map(|m| {
            m.models
                .into_iter()
                .map(|m| LoadedModel {
                    name: m.name,
                    size: m.size,
                    size_vram: m.size_vram,
                })
                .collect()
        })
        .map_err(|e| format!("/api/ps: {e}"))
}

pub use learning_contract::model::same_model;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_report_in_the_contracts_shape() {
        let h = parse_health(r#"{"status":"degraded","currentRole":null,"checks":[{"check":"db_role","status":"failed","detail":"db_connect_failed"}]}"#).unwrap();
        assert_eq!(h.status, learning_crds::status::HealthState::Degraded);
        assert_eq!(h.checks[0].detail, "db_connect_failed");
        assert!(parse_health(r#"{"status":"fine"}"#).is_err());
        assert!(parse_health("<html>").is_err());
    }

    #[test]
    fn queue_metrics_from_the_runner_text_format() {
        let text = "# HELP learning_runner_queue_jobs Jobs\n# TYPE learning_runner_queue_jobs gauge\nlearning_runner_queue_jobs{state=\"delayed\"} 2\nlearning_runner_queue_jobs{state=\"failed\"} 1\nlearning_runner_queue_jobs{state=\"leased\"} 3\nlearning_runner_queue_jobs{state=\"visible\"} 7\nlearning_runner_oldest_job_age_seconds 12.5\n";
        let q = parse_queue_metrics(text).unwrap();
        assert_eq!(
            (
                q.visible,
                q.delayed,
                q.leased,
                q.failed,
                q.oldest_job_age_seconds
            ),
            (7, 2, 3, 1, 13)
        );
        assert!(parse_queue_metrics("up 1\n").is_err());
    }

    #[test]
    fn ollama_answers() {
        assert_eq!(parse_version(r#"{"version":"0.12.3"}"#).unwrap(), "0.12.3");
        assert_eq!(
            parse_tags(r#"{"models":[{"name":"qwen2.5vl:3b","size":3}]}"#).unwrap(),
            ["qwen2.5vl:3b"]
        );
        let ps =
            parse_ps(r#"{"models":[{"name":"gpt-oss:20b","size":1000,"size_vram":400}]}"#).unwrap();
        assert_eq!(ps[0].gpu_percent(), 40);
        assert!(same_model("gpt-oss", "gpt-oss:latest"));
        assert!(same_model("library/x:1", "library/x:1"));
        assert!(!same_model("gpt-oss:20b", "gpt-oss:latest"));
        assert!(same_model("registry:5000/foo", "registry:5000/foo:latest"));
    }
}
