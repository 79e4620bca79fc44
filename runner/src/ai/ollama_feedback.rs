//! The local feedback adapter, two steps through Ollama's chat API:
//! 1. *analysis* — the criteria JSON, schema-constrained when structured output is on, parsed
//!    tolerantly otherwise, always normalised (contract §5); asked twice per attempt;
//! 2. *synthesis* — short formative feedback in German prose from the analysis and the
//!    teacher's context.
//!
//! Timeouts, connection errors and 5xx are transient errors of the feedback phase. An answer
//! that stays unusable (garbage, or larger than the client's cap) is transient too ("model returned nothing usable", contract §6.6)
//! while retries remain; on the job's final attempt the step uses its deterministic fallback
//! instead, so the submission still completes with a valid `criteria.v2`.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};

use super::normalize::{analysis_from_answer, fallback_analysis, strip_code_fence, ParseStatus};
use super::prompts::{analysis_prompt, analysis_schema, fallback_feedback, synthesis_prompt};
use super::{AdapterError, FeedbackAdapter, FeedbackOutput, FeedbackRequest};
use crate::ai::ollama::{
    ChatMessage, ChatRequest, OllamaClient, OllamaError, Options, MAX_ANSWER_BYTES,
};
use crate::config::{AiConfig, NumPredict, ThinkLevel};
use crate::job::analysis::AnalysisV2;
use crate::telemetry::metrics::Metrics;

/// Model calls for the analysis before the fallback is used.
pub const ANALYSIS_ATTEMPTS: usize = 2;

/// Feedback through a local Ollama.
pub struct OllamaFeedback {
    client: OllamaClient,
    model: String,
    timeout: Duration,
    structured: bool,
    think: Option<ThinkLevel>,
    keep_alive: Option<String>,
    num_predict: NumPredict,
    metrics: Metrics,
}

impl OllamaFeedback {
    /// A feedback adapter for the feedback model and settings of `ai`.
    pub fn new(client: OllamaClient, ai: &AiConfig, metrics: Metrics) -> Self {
        OllamaFeedback {
            client,
            model: ai.feedback_model.clone(),
            timeout: ai.timeout_feedback,
            structured: ai.structured_output,
            think: ai.think_level,
            keep_alive: ai.keep_alive.clone(),
            num_predict: ai.num_predict,
            metrics,
        }
    }

    /// A chat request of this model; `num_predict` limits the tokens generated.
    fn request(
        &self,
        (system, user): (String, String),
        format: Option<Value>,
        num_predict: u32,
    ) -> ChatRequest {
        ChatRequest {
            model: self.model.clone(),
            messages: vec![ChatMessage::system(system), ChatMessage::user(user)],
            format,
            options: Options {
                temperature: Some(0.0),
                num_predict: Some(i32::try_from(num_predict).unwrap_or(i32::MAX)),
                ..Options::default()
            },
            think: self.think.map(|t| {
                json!(match t {
                    ThinkLevel::Low => "low",
                    ThinkLevel::Medium => "medium",
                    ThinkLevel::High => "high",
                })
            }),
            keep_alive: self.keep_alive.clone(),
            ..ChatRequest::default()
        }
    }

    /// One chat call; `Err(reason)` for an answer over [`MAX_ANSWER_BYTES`] or cut at its
    /// generation limit, which counts as unusable like any garbage answer (asked again, the
    /// fallback on the final attempt).
    async fn answer(
        &self,
        chat: &ChatRequest,
    ) -> Result<Result<String, &'static str>, AdapterError> {
        match self.client.chat(chat, self.timeout).await {
            Ok(answer) => Ok(Ok(answer)),
            Err(e @ OllamaError::TooLarge { .. }) => {
                tracing::warn!(
                    event = "learning.feedback.answer_too_large",
                    limit = MAX_ANSWER_BYTES,
                    "the model's answer was too large and was not read further: {e}"
                );
                Ok(Err("response_too_large"))
            }
            Err(OllamaError::Truncated(limit)) => {
                tracing::warn!(
                    event = "learning.feedback.answer_truncated",
                    done_reason = "length",
                    num_predict = limit,
                    "the model's answer hit its generation limit and was cut off"
                );
                Ok(Err("answer_truncated"))
            }
            Err(e) => Err(e.into_adapter_error()),
        }
    }

    async fn analyse(
        &self,
        request: &FeedbackRequest,
    ) -> Result<(AnalysisV2, ParseStatus), AdapterError> {
        let (system, user) = analysis_prompt(
            &request.criteria,
            &request.text_md,
            request.instruction_md.as_deref(),
            request.hints_md.as_deref(),
            self.structured,
        );
        let format = self.structured.then(|| analysis_schema(&request.criteria));
        let chat = self.request((system, user), format, self.num_predict.analysis);
        let mut reason = "unusable_answer";
        for attempt in 1..=ANALYSIS_ATTEMPTS {
            let answer = match self.answer(&chat).await? {
                Ok(answer) => answer,
                Err(unusable) => {
                    reason = unusable;
                    continue;
                }
            };
            reason = "unusable_answer";
            if let Some(parsed) = analysis_from_answer(&answer, &request.criteria, self.structured)
            {
                return Ok(parsed);
            }
            tracing::warn!(
                event = "learning.feedback.unusable_analysis",
                attempt,
                chars = answer.chars().count(),
                "the model's analysis was not usable JSON"
            );
        }
        if !request.final_attempt {
            return Err(AdapterError::transient(
                reason,
                format!("the model gave no usable analysis in {ANALYSIS_ATTEMPTS} tries"),
            ));
        }
        Ok((fallback_analysis(&request.criteria), ParseStatus::Fallback))
    }

    async fn synthesise(
        &self,
        request: &FeedbackRequest,
        analysis: Option<&AnalysisV2>,
    ) -> Result<(String, bool), AdapterError> {
        let (system, user) = synthesis_prompt(
            analysis,
            &request.text_md,
            request.instruction_md.as_deref(),
            request.hints_md.as_deref(),
        );
        let chat = self.request((system, user), None, self.num_predict.feedback);
        let answer = self.answer(&chat).await?;
        let text = answer
            .as_ref()
            .map(|a| strip_code_fence(a).trim().to_owned())
            .unwrap_or_default();
        if text.is_empty() || text.starts_with('{') {
            if !request.final_attempt {
                return Err(AdapterError::transient(
                    answer.err().unwrap_or("unusable_answer"),
                    "the model gave no usable feedback text",
                ));
            }
            return Ok((fallback_feedback(analysis), true));
        }
        Ok((text, false))
    }
}

#[async_trait]
impl FeedbackAdapter for OllamaFeedback {
    async fn feedback(&self, request: &FeedbackRequest) -> Result<FeedbackOutput, AdapterError> {
        let (analysis, status) = if request.criteria.is_empty() {
            (None, "no_criteria")
        } else {
            let (a, s) = self.analyse(request).await?;
            (Some(a), s.as_str())
        };
        let (feedback_md, synthesis_fallback) = self.synthesise(request, analysis.as_ref()).await?;
        self.metrics
            .feedback_parse
            .with_label_values(&[status])
            .inc();
        tracing::info!(event = "learning.feedback.completed", submission_id = %request.submission_id, parse_status = status,
            synthesis_fallback, "learning.feedback.completed submission_id={} parse_status={status}", request.submission_id);
        let analysis_json = match analysis {
            Some(a) => serde_json::to_value(a)
                .map_err(|e| AdapterError::permanent("serialize", e.to_string()))?,
            None => json!({}),
        };
        Ok(FeedbackOutput {
            feedback_md,
            analysis_json,
        })
    }
}
