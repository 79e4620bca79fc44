//! Watches the local Ollama for the runner's health report and readiness: reachable, both
//! models installed (`/api/tags`), and how much of each loaded model sits in GPU memory
//! (`/api/ps`: `size_vram / size` below 1 reveals a silent CPU fallback).
//!
//! It also warms the models: when the watch starts and whenever Ollama becomes ready again
//! (back after an outage, a missing model installed), every configured model is loaded with
//! Ollama's empty request (and the configured `keep_alive`) before any job is leased —
//! readiness stays off while it warms, and the health report says `warming` — so the first
//! submission after a start or a restart of Ollama does not pay the model load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use learning_contract::health::{CHECK_MODELS, CHECK_OLLAMA};
use learning_contract::model::same_model;

use super::types::{GenerateRequest, RunningModel};
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

/// The longest one model may take to load when warming.
pub const WARM_TIMEOUT: Duration = Duration::from_secs(300);

/// The `ollama` and `models` checks of the health report, from a snapshot and whether the
/// models are being warmed. Pure.
pub fn health_checks(
    snapshot: &OllamaSnapshot,
    models: &[String],
    warming: bool,
) -> Vec<HealthCheck> {
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
        let warming = if warming {
            "; warming (loading the models into memory; no job is leased until done)"
        } else {
            ""
        };
        check(
            CHECK_MODELS,
            true,
            format!("present: {}{warming}", models.join(", ")),
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
    keep_alive: Option<String>,
    snapshot: Arc<RwLock<OllamaSnapshot>>,
    warming: Arc<AtomicBool>,
    metrics: Metrics,
}

impl OllamaMonitor {
    /// A monitor for the configured `models`, warming them with `keep_alive`.
    pub fn new(
        client: OllamaClient,
        models: Vec<String>,
        keep_alive: Option<String>,
        metrics: Metrics,
    ) -> Self {
        let mut unique = models;
        unique.dedup();
        OllamaMonitor {
            client,
            models: unique,
            keep_alive,
            snapshot: Arc::default(),
            warming: Arc::default(),
            metrics,
        }
    }

    /// Whether the models are being warmed right now.
    pub fn warming(&self) -> bool {
        self.warming.load(Ordering::SeqCst)
    }

    /// Loads every configured model (Ollama's empty request), one after the other, the first
    /// one last; readiness is off meanwhile. A model that fails to load is logged; its first
    /// job loads it.
    pub async fn warm(&self) {
        self.warming.store(true, Ordering::SeqCst);
        // The snapshot was refreshed just before (at start, or by the check that saw Ollama
        // serve again). A model already loaded means this Ollama is in use (another runner, or
        // a restart of this one): loading the other model now would only evict it mid-work.
        let loaded = self.snapshot().loaded;
        if self
            .models
            .iter()
            .any(|m| loaded.iter().any(|l| same_model(&l.name, m)))
        {
            self.warming.store(false, Ordering::SeqCst);
            return;
        }
        // The first configured model (the vision model) last: on a GPU that holds one model
        // at a time, the model a class's first photos need is the one left loaded.
        for model in self.models.iter().rev() {
            let started = Instant::now();
            let load = GenerateRequest {
                model: model.clone(),
                keep_alive: self.keep_alive.clone(),
                ..GenerateRequest::default()
            };
            match self.client.generate(&load, WARM_TIMEOUT).await {
                Ok(_) => tracing::info!(event = "learning.ollama.warmed", model = %model,
                    seconds = started.elapsed().as_secs_f64()),
                Err(e) => {
                    tracing::warn!(event = "learning.ollama.warm_failed", model = %model, error = %e)
                }
            }
        }
        self.warming.store(false, Ordering::SeqCst);
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

    /// Ready when reachable, every model installed, and not warming.
    pub fn ready(&self) -> bool {
        serves(&self.snapshot()) && !self.warming()
    }

    /// The health checks for the current snapshot.
    pub fn health_checks(&self) -> Vec<HealthCheck> {
        health_checks(&self.snapshot(), &self.models, self.warming())
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
        self.count_loads(&snap);
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = snap.clone();
        snap
    }

    /// Counts the configured models that are loaded now and were not at the last check.
    fn count_loads(&self, now: &OllamaSnapshot) {
        let before = self.snapshot();
        if !before.reachable || !now.reachable {
            return;
        }
        for model in &self.models {
            let loaded = |s: &OllamaSnapshot| s.loaded.iter().any(|m| same_model(&m.name, model));
            if loaded(now) && !loaded(&before) {
                self.metrics
                    .ollama_model_loads
                    .with_label_values(&[model.as_str()])
                    .inc();
            }
        }
    }

    /// Starts [`OllamaMonitor::run`] in a task. When Ollama serves the models already, the
    /// monitor counts as warming from this moment on, so no job is leased before the warm-up
    /// has even begun.
    pub fn spawn(self, interval: Duration, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        if serves(&self.snapshot()) {
            self.warming.store(true, Ordering::SeqCst);
        }
        tokio::spawn(self.run(interval, stop))
    }

    /// Warms the models if Ollama serves them, then refreshes every `interval` until `stop`,
    /// warming again whenever Ollama becomes ready again.
    pub async fn run(self, interval: Duration, stop: CancellationToken) {
        if serves(&self.snapshot()) {
            self.warm_unless_stopped(&stop).await;
        }
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            let before = self.snapshot();
            // Not ready in the moment between a serving snapshot and the warm-up it starts.
            if !serves(&before) {
                self.warming.store(true, Ordering::SeqCst);
            }
            let now = self.refresh().await;
            if before.reachable != now.reachable || before.missing != now.missing {
                tracing::warn!(event = "learning.ollama.changed", reachable = now.reachable, missing = ?now.missing);
            }
            if !serves(&before) && serves(&now) {
                self.warm_unless_stopped(&stop).await;
            } else if !serves(&before) {
                self.warming.store(false, Ordering::SeqCst);
            }
        }
    }

    async fn warm_unless_stopped(&self, stop: &CancellationToken) {
        tokio::select! {
            _ = stop.cancelled() => self.warming.store(false, Ordering::SeqCst),
            () = self.warm() => {}
        }
    }
}

/// Whether Ollama answered and has every configured model.
fn serves(s: &OllamaSnapshot) -> bool {
    s.checked && s.reachable && s.missing.is_empty()
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
        let checks = health_checks(&s, &models(), false);
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
        let checks = health_checks(&s, &models(), false);
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
        let checks = health_checks(&s, &models(), false);
        assert!(checks.iter().all(|c| c.status == "failed"));
        assert!(checks[0].detail.contains("connection refused"));
    }
}
