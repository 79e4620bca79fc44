//! `spec.ai`: which AI backend the runners use and the model settings of the contract (§8).

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::schema::MODEL_NAME;

/// The AI backend and its models.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.thinkLevel) || !has(self.feedbackModel) || self.feedbackModel.startsWith('gpt-oss')").message("thinkLevel applies only to gpt-oss feedback models"))]
pub struct AiSpec {
    /// `local` (Ollama; the default) or `stub` (deterministic text, no model; refused by the
    /// runner when `spec.environment` is a production or staging name) (`AI_BACKEND`).
    #[serde(default)]
    pub backend: Backend,
    /// Vision model that turns photos and PDFs into text (`AI_VISION_MODEL`).
    #[serde(default = "default_vision_model")]
    #[schemars(length(min = 1, max = 128), pattern(MODEL_NAME))]
    pub vision_model: String,
    /// Model that writes the feedback (`AI_FEEDBACK_MODEL`).
    #[serde(default = "default_feedback_model")]
    #[schemars(length(min = 1, max = 128), pattern(MODEL_NAME))]
    pub feedback_model: String,
    /// Timeout of one vision call in seconds (`AI_TIMEOUT_VISION`).
    #[serde(default = "default_vision_timeout")]
    #[schemars(range(min = 1, max = 300))]
    pub vision_timeout_seconds: i32,
    /// Timeout of one feedback call in seconds (`AI_TIMEOUT_FEEDBACK`).
    #[serde(default = "default_feedback_timeout")]
    #[schemars(range(min = 1, max = 300))]
    pub feedback_timeout_seconds: i32,
    /// Ask the model for schema-constrained JSON (true) or parse free text tolerantly (false)
    /// (`LEARNING_DSPY_JSON_ADAPTER`).
    #[serde(default = "crate::runner::default_true")]
    pub structured_output: bool,
    /// Reasoning effort of gpt-oss feedback models (`AI_THINK_LEVEL`); only for `gpt-oss*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub think_level: Option<ThinkLevel>,
}

impl Default for AiSpec {
    fn default() -> Self {
        AiSpec {
            backend: Backend::default(),
            vision_model: default_vision_model(),
            feedback_model: default_feedback_model(),
            vision_timeout_seconds: default_vision_timeout(),
            feedback_timeout_seconds: default_feedback_timeout(),
            structured_output: true,
            think_level: None,
        }
    }
}

impl AiSpec {
    /// The models the runners need, vision first, without duplicates.
    pub fn models(&self) -> Vec<String> {
        let mut models = vec![self.vision_model.clone()];
        if self.feedback_model != self.vision_model {
            models.push(self.feedback_model.clone());
        }
        models
    }
}

/// AI backend of the runners.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Ollama, managed by the operator or external.
    #[default]
    Local,
    /// Deterministic stub output (demos and tests; refused in production).
    Stub,
}

impl Backend {
    /// The runner's spelling (`AI_BACKEND`).
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Local => "local",
            Backend::Stub => "stub",
        }
    }
}

/// Reasoning effort of gpt-oss models.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ThinkLevel {
    /// Low effort.
    Low,
    /// Medium effort.
    Medium,
    /// High effort.
    High,
}

impl ThinkLevel {
    /// The runner's spelling (`AI_THINK_LEVEL`).
    pub fn as_str(self) -> &'static str {
        match self {
            ThinkLevel::Low => "low",
            ThinkLevel::Medium => "medium",
            ThinkLevel::High => "high",
        }
    }
}

fn default_vision_model() -> String {
    "qwen2.5vl:3b".into()
}
fn default_feedback_model() -> String {
    "gpt-oss:latest".into()
}
fn default_vision_timeout() -> i32 {
    30
}
fn default_feedback_timeout() -> i32 {
    15
}
