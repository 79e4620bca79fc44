//! What the GPU holds, for the model-aware admission of model work: Ollama's `/api/ps`,
//! read at most every half second (every runner sharing the Ollama reads the same answer, so
//! they agree on the phase without talking to each other). An unanswered read is "unknown".
//! It also loads a model (Ollama's empty request) for the first step of a phase, before that
//! step's time limit starts.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::monitor::WARM_TIMEOUT;
use super::types::GenerateRequest;
use super::OllamaClient;
use crate::job::admission::Residency;

/// How long a read of `/api/ps` is reused.
const FRESH_FOR: Duration = Duration::from_millis(500);
/// The longest a read may take before it counts as unknown.
const READ_LIMIT: Duration = Duration::from_secs(2);

/// `/api/ps` of one Ollama, cached briefly.
pub struct OllamaResidency {
    client: OllamaClient,
    keep_alive: Option<String>,
    last: Mutex<Option<(Instant, Vec<String>)>>,
}

impl OllamaResidency {
    /// Reads `client`'s loaded models; loads models with `keep_alive`.
    pub fn new(client: OllamaClient, keep_alive: Option<String>) -> Self {
        OllamaResidency {
            client,
            keep_alive,
            last: Mutex::new(None),
        }
    }
}

#[async_trait]
impl Residency for OllamaResidency {
    async fn resident(&self) -> Vec<String> {
        if let Some((at, models)) = &*self.last.lock().unwrap_or_else(|e| e.into_inner()) {
            if at.elapsed() < FRESH_FOR {
                return models.clone();
            }
        }
        let models = match tokio::time::timeout(READ_LIMIT, self.client.ps()).await {
            Ok(Ok(ps)) => ps.into_iter().map(|m| m.name).collect(),
            _ => Vec::new(),
        };
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), models.clone()));
        models
    }

    async fn load(&self, model: &str) {
        let request = GenerateRequest {
            model: model.to_owned(),
            keep_alive: self.keep_alive.clone(),
            ..GenerateRequest::default()
        };
        let started = Instant::now();
        match self.client.generate(&request, WARM_TIMEOUT).await {
            Ok(_) => tracing::info!(event = "learning.ollama.loaded_for_phase", model = %model,
                seconds = started.elapsed().as_secs_f64()),
            // The step's own call loads it then, within its time limit.
            Err(e) => {
                tracing::warn!(event = "learning.ollama.load_failed", model = %model, error = %e)
            }
        }
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}
