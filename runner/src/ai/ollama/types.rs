//! Request and response bodies of the Ollama REST API, as far as the runner uses them.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Sampling options.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Options {
    /// 0 for deterministic transcription and analysis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Upper bound of generated tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_predict: Option<i32>,
    /// Context window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_ctx: Option<u32>,
}

/// `POST /api/generate`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GenerateRequest {
    /// Model name.
    pub model: String,
    /// The prompt.
    pub prompt: String,
    /// System prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Base64 images for vision models.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    /// `"json"` or a JSON schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<Value>,
    /// Sampling options.
    pub options: Options,
    /// Whether to stream NDJSON.
    pub stream: bool,
    /// Reasoning effort (`low`/`medium`/`high`) for models that support it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub think: Option<Value>,
    /// How long the model stays loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<String>,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`.
    pub role: String,
    /// The text.
    #[serde(default)]
    pub content: String,
}

impl ChatMessage {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        ChatMessage {
            role: "system".into(),
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage {
            role: "user".into(),
            content: content.into(),
        }
    }
}

/// `POST /api/chat`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChatRequest {
    /// Model name.
    pub model: String,
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// `"json"` or a JSON schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<Value>,
    /// Sampling options.
    pub options: Options,
    /// Whether to stream NDJSON.
    pub stream: bool,
    /// Reasoning effort for models that support it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub think: Option<Value>,
    /// How long the model stays loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<String>,
}

/// A (possibly partial) `/api/generate` answer.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GenerateChunk {
    /// Generated text (the whole answer when not streaming).
    #[serde(default)]
    pub response: String,
    /// Last chunk.
    #[serde(default)]
    pub done: bool,
    /// Why generation ended (last chunk): `stop`, `length` (the `num_predict` limit), `load`.
    #[serde(default)]
    pub done_reason: Option<String>,
    /// Error reported mid-stream.
    #[serde(default)]
    pub error: Option<String>,
}

/// A (possibly partial) `/api/chat` answer.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ChatChunk {
    /// The assistant message (partial when streaming).
    #[serde(default)]
    pub message: Option<ChatMessage>,
    /// Last chunk.
    #[serde(default)]
    pub done: bool,
    /// Why generation ended (last chunk): `stop`, `length` (the `num_predict` limit), `load`.
    #[serde(default)]
    pub done_reason: Option<String>,
    /// Error reported mid-stream.
    #[serde(default)]
    pub error: Option<String>,
}

/// What `/api/generate` and `/api/chat` answers have in common.
pub trait Answer: DeserializeOwned {
    /// The (partial) generated text.
    fn text(&self) -> &str;
    /// Whether this is the last chunk.
    fn done(&self) -> bool;
    /// An error reported in the body.
    fn error(&self) -> Option<&str>;
    /// Why generation ended, when said.
    fn done_reason(&self) -> Option<&str>;
}

impl Answer for GenerateChunk {
    fn text(&self) -> &str {
        &self.response
    }
    fn done(&self) -> bool {
        self.done
    }
    fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
    fn done_reason(&self) -> Option<&str> {
        self.done_reason.as_deref()
    }
}

impl Answer for ChatChunk {
    fn text(&self) -> &str {
        self.message
            .as_ref()
            .map(|m| m.content.as_str())
            .unwrap_or("")
    }
    fn done(&self) -> bool {
        self.done
    }
    fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
    fn done_reason(&self) -> Option<&str> {
        self.done_reason.as_deref()
    }
}

/// An installed model (`/api/tags`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LocalModel {
    /// Name with tag, e.g. `qwen2.5vl:3b`.
    pub name: String,
    /// Size on disk in bytes.
    #[serde(default)]
    pub size: u64,
}

/// `/api/tags`.
#[derive(Debug, Clone, Deserialize)]
pub struct TagsResponse {
    /// Installed models.
    #[serde(default)]
    pub models: Vec<LocalModel>,
}

/// A loaded model (`/api/ps`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RunningModel {
    /// Name with tag.
    pub name: String,
    /// Bytes the loaded model takes.
    #[serde(default)]
    pub size: u64,
    /// Of those, bytes in GPU memory.
    #[serde(default)]
    pub size_vram: u64,
}

impl RunningModel {
    /// Share of the model in GPU memory, `0.0..=1.0` (0 for an empty size).
    pub fn gpu_share(&self) -> f64 {
        learning_contract::gpu::gpu_share(self.size, self.size_vram)
    }

    /// Share of the model in GPU memory in whole percent, rounded down.
    pub fn gpu_percent(&self) -> i32 {
        learning_contract::gpu::gpu_percent(self.size, self.size_vram)
    }
}

/// `/api/ps`.
#[derive(Debug, Clone, Deserialize)]
pub struct PsResponse {
    /// Loaded models.
    #[serde(default)]
    pub models: Vec<RunningModel>,
}

/// One line of `/api/pull` progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PullProgress {
    /// What Ollama is doing (`pulling manifest`, `success`, …).
    #[serde(default)]
    pub status: String,
    /// Bytes to download for the current layer.
    #[serde(default)]
    pub total: Option<u64>,
    /// Bytes downloaded so far.
    #[serde(default)]
    pub completed: Option<u64>,
    /// Error reported mid-pull.
    #[serde(default)]
    pub error: Option<String>,
}

/// `/api/version`.
#[derive(Debug, Clone, Deserialize)]
pub struct VersionResponse {
    /// The server version.
    pub version: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_share_is_vram_over_size() {
        let m = RunningModel {
            name: "m".into(),
            size: 200,
            size_vram: 50,
        };
        assert_eq!(m.gpu_share(), 0.25);
        assert_eq!(
            RunningModel {
                name: "m".into(),
                size: 0,
                size_vram: 0
            }
            .gpu_share(),
            0.0
        );
    }

    #[test]
    fn generate_requests_serialise_without_empty_fields() {
        let r = GenerateRequest {
            model: "m".into(),
            prompt: "p".into(),
            options: Options {
                temperature: Some(0.0),
                ..Options::default()
            },
            ..GenerateRequest::default()
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"model": "m", "prompt": "p", "options": {"temperature": 0.0}, "stream": false})
        );
    }
}
