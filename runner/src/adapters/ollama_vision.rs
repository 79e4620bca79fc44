//! The local vision adapter: loads the submission's bytes (image, or the pre-rendered pages of
//! a PDF stitched into one image), sends one base64 image to the Ollama vision model with
//! temperature 0 and our transcription instruction, and returns the Markdown transcript.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use serde_json::{json, Value};
use uuid::Uuid;

use super::normalize::strip_code_fence;
use super::pages::{looks_like, stitch_pages, MAX_PAGES};
use super::prompts::VISION_PROMPT;
use super::storage::{Expected, SubmissionStorage};
use super::{AdapterError, VisionAdapter, VisionOutput, VisionRequest};
use crate::error_code::ErrorCode;
use crate::ollama::{GenerateRequest, OllamaClient, Options};

/// How many stitched PDFs are kept in memory for retries.
const STITCH_CACHE_ENTRIES: usize = 8;

/// Vision through a local Ollama.
pub struct OllamaVision {
    client: OllamaClient,
    storage: SubmissionStorage,
    model: String,
    timeout: Duration,
    keep_alive: Option<String>,
    stitched: Mutex<VecDeque<(Uuid, Vec<u8>, usize)>>,
}

impl OllamaVision {
    /// A vision adapter for `model`, reading files from `storage`.
    pub fn new(
        client: OllamaClient,
        storage: SubmissionStorage,
        model: String,
        timeout: Duration,
        keep_alive: Option<String>,
    ) -> Self {
        OllamaVision {
            client,
            storage,
            model,
            timeout,
            keep_alive,
            stitched: Mutex::new(VecDeque::new()),
        }
    }

    fn cached(&self, id: Uuid) -> Option<(Vec<u8>, usize)> {
        let cache = self.stitched.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .iter()
            .find(|(k, _, _)| *k == id)
            .map(|(_, bytes, pages)| (bytes.clone(), *pages))
    }

    fn remember(&self, id: Uuid, bytes: Vec<u8>, pages: usize) {
        let mut cache = self.stitched.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|(k, _, _)| *k != id);
        if cache.len() >= STITCH_CACHE_ENTRIES {
            cache.pop_front();
        }
        cache.push_back((id, bytes, pages));
    }

    /// The image to send and how many pages it holds.
    async fn image_for(
        &self,
        request: &VisionRequest,
    ) -> Result<(Vec<u8>, usize, &'static str), AdapterError> {
        let mime = request
            .file
            .mime_type
            .as_deref()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let expected = Expected {
            size: request.file.size_bytes,
            sha256: request.file.sha256.clone(),
        };
        match mime.as_str() {
            "image/png" | "image/jpeg" => {
                let bytes = self
                    .storage
                    .read(&request.file.storage_key, &expected)
                    .await?;
                if !looks_like(&mime, &bytes) {
                    return Err(AdapterError::permanent_with_code(
                        ErrorCode::InputCorrupt,
                        "not_an_image",
                        format!("submission file is not a valid {mime} image"),
                    ));
                }
                Ok((bytes, 1, "file"))
            }
            "application/pdf" => {
                if let Some((bytes, pages)) = self.cached(request.submission_id) {
                    return Ok((bytes, pages, "page_keys_cached"));
                }
                let keys = page_keys(&request.internal_metadata);
                if keys.is_empty() {
                    return Err(AdapterError::transient(
                        "pdf_not_rendered",
                        "the PDF has no pre-rendered pages (internal_metadata.page_keys); this runner does not render PDFs itself",
                    ));
                }
                let mut pages = Vec::with_capacity(keys.len().min(MAX_PAGES));
                for key in keys.iter().take(MAX_PAGES) {
                    pages.push(self.storage.read(key, &Expected::default()).await?);
                }
                // Decoding and stitching are CPU-heavy: keep them off the async workers so the
                // heartbeat and the probes stay responsive.
                let stitched = tokio::task::spawn_blocking(move || stitch_pages(&pages))
                    .await
                    .map_err(|_| {
                        AdapterError::transient("internal_error", "page stitching was interrupted")
                    })?;
                let (bytes, used) = stitched.map_err(|e| {
                    AdapterError::permanent_with_code(
                        ErrorCode::InputCorrupt,
                        "bad_page",
                        format!("PDF pages: {e}"),
                    )
                })?;
                self.remember(request.submission_id, bytes.clone(), used);
                Ok((bytes, used, "page_keys"))
            }
            other => Err(AdapterError::permanent_with_code(
                ErrorCode::InputUnsupported,
                "unsupported_mime",
                format!(
                    "MIME type '{other}' is not supported (image/jpeg, image/png, application/pdf)"
                ),
            )),
        }
    }
}

/// The storage keys of pre-rendered PDF pages, in order.
pub fn page_keys(internal_metadata: &Value) -> Vec<String> {
    internal_metadata
        .get("page_keys")
        .and_then(Value::as_array)
        .map(|keys| {
            keys.iter()
                .filter_map(Value::as_str)
                .filter(|k| !k.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[async_trait]
impl VisionAdapter for OllamaVision {
    async fn extract(&self, request: &VisionRequest) -> Result<VisionOutput, AdapterError> {
        let (image, pages, source) = self.image_for(request).await?;
        let generate = GenerateRequest {
            model: self.model.clone(),
            prompt: VISION_PROMPT.to_owned(),
            images: vec![base64::engine::general_purpose::STANDARD.encode(&image)],
            options: Options {
                temperature: Some(0.0),
                ..Options::default()
            },
            keep_alive: self.keep_alive.clone(),
            ..GenerateRequest::default()
        };
        let answer = self
            .client
            .generate(&generate, self.timeout)
            .await
            .map_err(|e| e.into_adapter_error())?;
        let text = strip_code_fence(&answer).trim().to_owned();
        if text.is_empty() {
            return Err(AdapterError::transient(
                "empty_answer",
                "the vision model returned no text",
            ));
        }
        Ok(VisionOutput {
            text_md: text,
            raw_metadata: json!({"backend": "local", "model": self.model, "pages": pages, "source": source}),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_keys_are_read_in_order_and_junk_is_ignored() {
        let meta = json!({"page_keys": ["p1.png", "", 3, "p2.png"]});
        assert_eq!(page_keys(&meta), ["p1.png", "p2.png"]);
        assert!(page_keys(&json!({})).is_empty());
    }
}
