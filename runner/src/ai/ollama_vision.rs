//! The local vision adapter: gets the images of a submission from [`VisionInputs`] (a photo,
//! or the sheets of a PDF) and sends each to the Ollama vision model with temperature 0 and our
//! transcription instruction, one call per image, in page order. The transcripts are joined;
//! calls stop early once the text holds as much as the feedback prompt takes
//! ([`MAX_STUDENT_CHARS`]), since more would be cut there anyway.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use serde_json::json;

use super::normalize::strip_code_fence;
use super::prompts::{MAX_STUDENT_CHARS, VISION_PROMPT};
use super::{AdapterError, VisionAdapter, VisionOutput, VisionRequest};
use crate::ai::ollama::{GenerateRequest, OllamaClient, Options};
use crate::config::AiConfig;
use crate::submission::storage::SubmissionStorage;
use crate::submission::vision_input::VisionInputs;

/// Vision through a local Ollama.
pub struct OllamaVision {
    client: OllamaClient,
    inputs: VisionInputs,
    model: String,
    timeout: Duration,
    keep_alive: Option<String>,
    num_predict: u32,
}

impl OllamaVision {
    /// A vision adapter for the vision model and settings of `ai`, reading files from
    /// `storage`.
    pub fn new(client: OllamaClient, storage: SubmissionStorage, ai: &AiConfig) -> Self {
        OllamaVision {
            client,
            inputs: VisionInputs::new(storage),
            model: ai.vision_model.clone(),
            timeout: ai.timeout_vision,
            keep_alive: ai.keep_alive.clone(),
            num_predict: ai.num_predict.vision,
        }
    }

    /// One model call for one image; the transcript without a surrounding code fence.
    async fn transcribe(&self, image: &[u8]) -> Result<String, AdapterError> {
        let generate = GenerateRequest {
            model: self.model.clone(),
            prompt: VISION_PROMPT.to_owned(),
            images: vec![base64::engine::general_purpose::STANDARD.encode(image)],
            options: Options {
                temperature: Some(0.0),
                num_predict: Some(i32::try_from(self.num_predict).unwrap_or(i32::MAX)),
                ..Options::default()
            },
            keep_alive: self.keep_alive.clone(),
            ..GenerateRequest::default()
        };
        let (answer, cut) = self
            .client
            .generate_bounded(&generate, self.timeout)
            .await
            .map_err(|e| e.into_adapter_error())?;
        if cut {
            // More than the feedback prompt takes anyway: keep what was written.
            tracing::warn!(
                event = "learning.vision.answer_truncated",
                done_reason = "length",
                num_predict = self.num_predict,
                "the transcript hit its generation limit; the part written is used"
            );
        }
        Ok(strip_code_fence(&answer).trim().to_owned())
    }
}

#[async_trait]
impl VisionAdapter for OllamaVision {
    async fn extract(&self, request: &VisionRequest) -> Result<VisionOutput, AdapterError> {
        let input = self.inputs.images_for(request).await?;
        let mut parts: Vec<String> = Vec::with_capacity(input.images.len());
        let mut chars = 0usize;
        for image in input.images.iter() {
            if chars >= MAX_STUDENT_CHARS {
                break;
            }
            let text = self.transcribe(image).await?;
            chars += text.chars().count();
            parts.push(text);
        }
        let calls = parts.len();
        let text = parts
            .into_iter()
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join("\n\n");
        if text.is_empty() {
            return Err(AdapterError::transient(
                "empty_answer",
                "the vision model returned no text",
            ));
        }
        Ok(VisionOutput {
            text_md: text,
            raw_metadata: json!({
                "backend": "local",
                "model": self.model,
                "pages": input.pages,
                "pages_total": input.pages_total,
                "images": input.images.len(),
                "calls": calls,
                "source": input.source,
            }),
        })
    }
}
