//! Watches the local Ollama for the runner's health report and readiness: reachable, both
//! models installed (`/api/tags`), and how much of each loaded model sits in GPU memory
//! (`/api/ps`: `size_vram / size` below 1 reveals a silent CPU fallback).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use learning_contract::health::{CHECK_MODELS, CHECK_OLLAMA};
use learning_contract::model::same_model;

use super::types::RunningModel;
use super::OllamaClient;
use crate::http::health::HealthCheck;
use crate::telemetry::metrics::Metrics;

/// The last observation of Ollama.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OllamaSnapshot {
    /// A check has run at least once.
    pub checked: bool,
    /// The server answered.
    pub reachable: bool,
    /// Its version.
    pub version: Option<String>,
    /// Why it could not be reached.
    pub error: Option<String>,
    /// Configured models that are not installed.
    pub missing: Vec<String>,
    /// Loaded models, with their size and the part of it in GPU memory.
    pub loaded: Vec<RunningModel>,
}

/// The `ollama` and `models` checks of the health report, from a snapshot. Pure.
pub fn health_checks(snapshot: &OllamaSnapshot, models: &[String]) -> Vec<HealthCheck> {
    let check = HealthCheck::new;
    if !snapshot.checked {
        return vec![
            check(CHECK_OLLAMA, false, "not checked yet".into()),
            check(CHECK_MODELS, false, "not checked yet".into()),
        ];
    }
    if !snapshot.reachable {
        let why = snapshot
            .error
            .clone()
            .unwrap_or_else(|| "unreachable".into());
        return vec![
            check(CHECK_OLLAMA, false, format!("unreachable: {why}")),
            check(CHECK_MODELS, false, "unknown: Ollama unreachable".into()),
        ];
    }
    let loaded = if snapshot.loaded.is_empty() {
        "no model loaded".to_owned()
    } else {
        snapshot
            .loaded
            .iter()
            .map(|m| {
                let percent = m.gpu_percent();
                let note = match percent {
                    100 => "",
                    0 => " (CPU only)",
                    _ => " (partial CPU fallback)",
                };
                format!("{} {percent}% GPU{note}", m.name)
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let version = snapshot.version.clone().unwrap_or_else(|| "?".into());
    let models_check = if snapshot.missing.is_empty() {
        check(
            CHECK_MODELS,
            true,
            format!("present: {}", models.join(", ")),
        )
    } else {
        check(
            CHECK_MODELS,
            false,
            format!(
                "missing: {} (run `ollama pull <model>` or set OLLAMA_PULL_MISSING=true)",
                snapshot.missing.join(", ")
            ),
        )
    };
    vec![
        check(CHECK_OLLAMA, true, format!("version {version}; {loaded}")),
        models_check,
    ]
}

/// Periodic Ollama checks, shared with the HTTP handlers.
#[derive(Clone)]
pub struct OllamaMonitor {
    client: OllamaClient,
    models: Vec<String>,
    snapshot: Arc<RwLock<OllamaSnapshot>>,
    metrics: Metrics,
}

impl OllamaMonitor {
    /// A monitor for the configured `models`.
    pub fn new(client: OllamaClient, models: Vec<String>, metrics: Metrics) -> Self {
        let mut unique = models;
        unique.dedup();
        OllamaMonitor {
            client,
            models: unique,
            snapshot: Arc::default(),
            metrics,
        }
    }

    /// The configured models.
    pub fn models(&self) -> &[String] {
        &self.models
    }

    /// The client.
    pub fn client(&self) -> &OllamaClient {
        &self.client
    }

    /// The last snapshot.
    pub fn snapshot(&self) -> OllamaSnapshot {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Ready when reachable and every model is installed.
    pub fn ready(&self) -> bool {
        let s = self.snapshot();
        s.checked && s.reachable && s.missing.is_empty()
    }

    /// The health checks for the current snapshot.
    pub fn health_checks(&self) -> Vec<HealthCheck> {
        health_checks(&self.snapshot(), &self.models)
    }

    /// Checks Ollama now and stores the result.
    pub async fn refresh(&self) -> OllamaSnapshot {
        let mut snap = OllamaSnapshot {
            checked: true,
            ..OllamaSnapshot::default()
        };
        match self.client.tags().await {
            Ok(installed) => {
                snap.reachable = true;
                snap.missing = self
                    .models
                    .iter()
                    .filter(|m| !installed.iter().any(|i| same_model(&i.name, m)))
                    .cloned()
                    .collect();
                snap.version = self.client.version().await.ok();
                snap.loaded = self
                    .client
                    .ps()
                    .await
                    .map(|ps| ps.to_vec())
                    .unwrap_or_default();
            }
            Err(e) => snap.error = Some(e.to_string()),
        }
        self.metrics.ollama_up.set(i64::from(snap.reachable));
        for model in &self.models {
            let present = snap.reachable && !snap.missing.contains(model);
            self.metrics
                .ollama_model_present
                .with_label_values(&[model.as_str()])
                .set(i64::from(present));
        }
        for model in &snap.loaded {
            if self.models.iter().any(|m| same_model(&model.name, m)) {
                self.metrics
                    .ollama_gpu_offload
                    .with_label_values(&[model.name.as_str()])
                    .set(model.gpu_share());
            }
        }
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = snap.clone();
        snap
    }

    /// Refreshes every `interval` until `stop`.
    pub async fn run(self, interval: Duration, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            let before = self.snapshot();
            let now = self.refresh().await;
            if before.reachable != now.reachable || before.missing != now.missing {
                tracing::warn!(event = "learning.ollama.changed", reachable = now.reachable, missing = ?now.missing);
            }
        }
    }
}

impl crate::worker::BackendGate for OllamaMonitor {
    fn ready(&self) -> bool {
        OllamaMonitor::ready(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(name: &str, size: u64, size_vram: u64) -> RunningModel {
        RunningModel {
            name: name.into(),
            size,
            size_vram,
        }
    }

    fn models() -> Vec<String> {
        vec!["qwen2.5vl:3b".into(), "gpt-oss:latest".into()]
    }

    #[test]
    fn all_present_and_on_gpu_is_ok() {
        let s = OllamaSnapshot {
            checked: true,
            reachable: true,
            version: Some("0.12.0".into()),
            loaded: vec![running("qwen2.5vl:3b", 1000, 1000)],
            ..Default::default()
        };
        let checks = health_checks(&s, &models());
        assert!(checks.iter().all(|c| c.status == "ok"), "{checks:?}");
        assert!(checks[0].detail.contains("qwen2.5vl:3b 100% GPU"));
    }

    #[test]
    fn missing_models_and_cpu_fallback_are_reported() {
        let s = OllamaSnapshot {
            checked: true,
            reachable: true,
            missing: vec!["gpt-oss:latest".into()],
            loaded: vec![running("qwen2.5vl:3b", 1000, 404)],
            ..Default::default()
        };
        let checks = health_checks(&s, &models());
        assert_eq!(checks[1].status, "failed");
        assert!(checks[1].detail.contains("missing: gpt-oss:latest"));
        assert!(checks[0].detail.contains("40% GPU (partial CPU fallback)"));
    }

    #[test]
    fn unreachable_fails_both_checks() {
        let s = OllamaSnapshot {
            checked: true,
            error: Some("connection refused".into()),
            ..Default::default()
        };
        let checks = health_checks(&s, &models());
        assert!(checks.iter().all(|c| c.status == "failed"));
        assert!(checks[0].detail.contains("connection refused"));
    }
}
