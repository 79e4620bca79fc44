//! What the GPU holds, for the model-aware admission of model work: Ollama's `/api/ps`,
//! read at most every half second (every runner sharing the Ollama reads the same answer, so
//! they agree on the phase without talking to each other). An unanswered read is "unknown".

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::OllamaClient;
use crate::job::admission::Residency;

/// How long a read of `/api/ps` is reused.
const FRESH_FOR: Duration = Duration::from_millis(500);
/// The longest a read may take before it counts as unknown.
const READ_LIMIT: Duration = Duration::from_secs(2);

/// `/api/ps` of one Ollama, cached briefly.
pub struct OllamaResidency {
    client: OllamaClient,
    last: Mutex<Option<(Instant, Vec<String>)>>,
}

impl OllamaResidency {
    /// Reads `client`'s loaded models.
    pub fn new(client: OllamaClient) -> Self {
        OllamaResidency {
            client,
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
}
