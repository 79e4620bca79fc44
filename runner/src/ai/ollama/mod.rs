//! A small Ollama client: one shared `reqwest` client with connect and request timeouts,
//! `/api/generate` and `/api/chat` (whole answers), `/api/tags`, `/api/ps`,
//! `/api/pull` with progress, `/api/version`. Every failure is classified ([`OllamaError`])
//! so callers can tell a retry-worthy problem from a permanent one. Every body is read with a
//! size cap ([`body`]): a whole answer at most [`MAX_ANSWER_BYTES`], metadata
//! [`MAX_METADATA_BYTES`], a stream line [`MAX_LINE_BYTES`], a pull [`MAX_STREAM_BYTES`].
//!
//! Response bodies are never logged: a model may echo student text.

mod body;
pub mod monitor;
pub mod residency;
pub mod types;

use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::ai::AdapterError;
use body::{read_capped, read_ndjson};
pub use body::{
    MAX_ANSWER_BYTES, MAX_ERROR_BODY_BYTES, MAX_LINE_BYTES, MAX_METADATA_BYTES, MAX_STREAM_BYTES,
};
pub use types::*;

/// How long establishing a TCP connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Limit of metadata calls (`tags`, `ps`, `version`).
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest error text taken from an Ollama error body.
const MAX_ERROR_CHARS: usize = 200;

/// A failed Ollama call, by cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OllamaError {
    /// Nothing listens, or DNS fails.
    #[error("cannot connect to Ollama: {0}")]
    Connect(String),
    /// No (complete) answer in time.
    #[error("Ollama did not answer within {}s", .0.as_secs_f64())]
    Timeout(Duration),
    /// The model is not installed (HTTP 404).
    #[error("model '{0}' is not installed in Ollama (pull it first)")]
    ModelNotFound(String),
    /// HTTP 5xx.
    #[error("Ollama failed with HTTP {status}: {message}")]
    Server {
        /// Status code.
        status: u16,
        /// Ollama's error text, shortened.
        message: String,
    },
    /// Another HTTP 4xx: the request itself is unacceptable.
    #[error("Ollama rejected the request with HTTP {status}: {message}")]
    Rejected {
        /// Status code.
        status: u16,
        /// Ollama's error text, shortened.
        message: String,
    },
    /// 200, but the body is not what the API promises.
    #[error("Ollama sent a malformed answer: {0}")]
    Malformed(String),
    /// The connection broke mid-answer.
    #[error("the connection to Ollama broke: {0}")]
    Broken(String),
    /// The model stopped at its generation limit (`done_reason: "length"`, the request's
    /// `num_predict`): the answer is cut off, so unusable where a whole answer is needed (the
    /// analysis JSON, the feedback text). Transient, like a garbage answer.
    #[error("the model's answer hit its generation limit of {0} tokens and was cut off")]
    Truncated(u32),
    /// 200, but the body (or one line of a stream) is larger than its cap; reading stopped
    /// there, the rest was never buffered.
    ///
    /// Transient, like [`OllamaError::Malformed`] and like the feedback step's unusable
    /// answers: within the time limit of a call no model writes megabytes, so this is a
    /// misbehaving server or proxy, or a model that ran away on this input — the contract's
    /// "model returned nothing usable" (§6.6), which is retried while retries remain. The
    /// feedback step treats it as an unusable answer (asked again, the deterministic
    /// fallback on the job's final attempt); vision retries and then fails with
    /// `vision_failed`.
    #[error("Ollama's answer is larger than {limit} bytes; it was not read further")]
    TooLarge {
        /// The cap that was passed, in bytes.
        limit: usize,
    },
}

impl OllamaError {
    /// A bounded reason code for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            OllamaError::Connect(_) => "connection_refused",
            OllamaError::Timeout(_) => "timeout",
            OllamaError::ModelNotFound(_) => "model_not_found",
            OllamaError::Server { .. } => "server_error",
            OllamaError::Rejected { .. } => "rejected",
            OllamaError::Malformed(_) => "malformed_response",
            OllamaError::Broken(_) => "connection_reset",
            OllamaError::TooLarge { .. } => "response_too_large",
            OllamaError::Truncated(_) => "answer_truncated",
        }
    }

    /// Whether a later retry may succeed.
    ///
    /// A missing model counts as transient: the submission is not at fault, and the health
    /// report and `/readyz` already show the missing model so an operator can pull it before
    /// the retries run out. An answer over its size cap is transient too (see
    /// [`OllamaError::TooLarge`]). Only a rejected request (another 4xx) is permanent.
    pub fn is_transient(&self) -> bool {
        !matches!(self, OllamaError::Rejected { .. })
    }

    /// As an adapter error of the matching kind.
    pub fn into_adapter_error(self) -> AdapterError {
        let reason = self.reason();
        if self.is_transient() {
            AdapterError::transient(reason, self.to_string())
        } else {
            AdapterError::permanent(reason, self.to_string())
        }
    }
}

fn shorten(text: &str) -> String {
    let t = text.trim();
    if t.chars().count() <= MAX_ERROR_CHARS {
        t.to_owned()
    } else {
        format!("{}...", t.chars().take(MAX_ERROR_CHARS).collect::<String>())
    }
}

/// Describes a JSON decoding failure without quoting the body (serde's message may quote
/// model output, which may echo student text).
pub(crate) fn json_problem(what: &str, e: &serde_json::Error) -> String {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "unexpected JSON shape",
        serde_json::error::Category::Eof => "truncated JSON",
    };
    format!("{what}: {kind} at line {} column {}", e.line(), e.column())
}

pub(crate) fn classify_transport(e: &reqwest::Error, limit: Duration) -> OllamaError {
    if e.is_timeout() {
        OllamaError::Timeout(limit)
    } else if e.is_connect() {
        OllamaError::Connect(e.to_string())
    } else {
        OllamaError::Broken(e.to_string())
    }
}

/// A client for one Ollama server.
#[derive(Debug, Clone)]
pub struct OllamaClient {
    http: reqwest::Client,
    base: String,
}

impl OllamaClient {
    /// A client for `base_url` (already validated: local or in-cluster).
    pub fn new(base_url: &str) -> Result<Self, OllamaError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| OllamaError::Connect(format!("HTTP client setup failed: {e}")))?;
        Ok(OllamaClient {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
        })
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn send_json<B: Serialize>(
        &self,
        path: &str,
        body: &B,
        limit: Duration,
        model: &str,
    ) -> Result<Response, OllamaError> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .timeout(limit)
            .json(body)
            .send()
            .await
            .map_err(|e| classify_transport(&e, limit))?;
        check_status(response, model).await
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, OllamaError> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .timeout(METADATA_TIMEOUT)
            .send()
            .await
            .map_err(|e| classify_transport(&e, METADATA_TIMEOUT))?;
        let mut response = check_status(response, "").await?;
        let bytes = read_capped(&mut response, MAX_METADATA_BYTES, METADATA_TIMEOUT).await?;
        serde_json::from_slice(&bytes).map_err(|e| OllamaError::Malformed(json_problem(path, &e)))
    }

    /// One whole (non-streamed) answer of `T` from `path`, and whether it was cut at its
    /// `num_predict` (`done_reason: "length"`).
    async fn complete<T: Answer, B: Serialize>(
        &self,
        path: &str,
        body: &B,
        model: &str,
        limit: Duration,
    ) -> Result<(String, bool), OllamaError> {
        let mut response = self.send_json(path, body, limit, model).await?;
        let bytes = read_capped(&mut response, MAX_ANSWER_BYTES, limit).await?;
        let answer: T = serde_json::from_slice(&bytes)
            .map_err(|e| OllamaError::Malformed(json_problem(path, &e)))?;
        if let Some(err) = answer.error() {
            return Err(OllamaError::Server {
                status: 200,
                message: shorten(err),
            });
        }
        Ok((
            answer.text().to_owned(),
            answer.done_reason() == Some("length"),
        ))
    }

    /// `/api/generate` without streaming; the whole answer, and whether it was cut at the
    /// request's `num_predict` (a transcript cut there is still most of the page).
    pub async fn generate_bounded(
        &self,
        request: &GenerateRequest,
        limit: Duration,
    ) -> Result<(String, bool), OllamaError> {
        let request = GenerateRequest {
            stream: false,
            ..request.clone()
        };
        self.complete::<GenerateChunk, _>("/api/generate", &request, &request.model, limit)
            .await
    }

    /// `/api/generate` without streaming; returns the whole answer. An answer cut at
    /// `num_predict` is [`OllamaError::Truncated`].
    pub async fn generate(
        &self,
        request: &GenerateRequest,
        limit: Duration,
    ) -> Result<String, OllamaError> {
        let (text, cut) = self.generate_bounded(request, limit).await?;
        uncut(text, cut, request.options.num_predict)
    }

    /// `/api/chat` without streaming; returns the assistant's content. An answer cut at
    /// `num_predict` is [`OllamaError::Truncated`].
    pub async fn chat(
        &self,
        request: &ChatRequest,
        limit: Duration,
    ) -> Result<String, OllamaError> {
        let request = ChatRequest {
            stream: false,
            ..request.clone()
        };
        let (text, cut) = self
            .complete::<ChatChunk, _>("/api/chat", &request, &request.model, limit)
            .await?;
        uncut(text, cut, request.options.num_predict)
    }

    /// Installed models.
    pub async fn tags(&self) -> Result<Vec<LocalModel>, OllamaError> {
        Ok(self.get_json::<TagsResponse>("/api/tags").await?.models)
    }

    /// Loaded models with their GPU share.
    pub async fn ps(&self) -> Result<Vec<RunningModel>, OllamaError> {
        Ok(self.get_json::<PsResponse>("/api/ps").await?.models)
    }

    /// The server version.
    pub async fn version(&self) -> Result<String, OllamaError> {
        Ok(self
            .get_json::<VersionResponse>("/api/version")
            .await?
            .version)
    }

    /// Pulls `model`, reporting progress; fails on an error line or a missing `success`.
    pub async fn pull(
        &self,
        model: &str,
        limit: Duration,
        mut on_progress: impl FnMut(&PullProgress),
    ) -> Result<(), OllamaError> {
        let body = serde_json::json!({"model": model, "stream": true});
        let work = async {
            let response = self.send_json("/api/pull", &body, limit, model).await?;
            let mut succeeded = false;
            read_ndjson::<PullProgress>(response, limit, |p| {
                if let Some(err) = &p.error {
                    return Err(OllamaError::Server {
                        status: 200,
                        message: shorten(err),
                    });
                }
                on_progress(p);
                succeeded |= p.status == "success";
                Ok(succeeded)
            })
            .await?;
            if succeeded {
                Ok(())
            } else {
                Err(OllamaError::Malformed("pull ended without success".into()))
            }
        };
        tokio::time::timeout(limit, work)
            .await
            .map_err(|_| OllamaError::Timeout(limit))?
    }
}

/// The answer, or [`OllamaError::Truncated`] when it was cut at `num_predict`.
fn uncut(text: String, cut: bool, num_predict: Option<i32>) -> Result<String, OllamaError> {
    if cut {
        let limit = u32::try_from(num_predict.unwrap_or(0)).unwrap_or(0);
        return Err(OllamaError::Truncated(limit));
    }
    Ok(text)
}

async fn check_status(mut response: Response, model: &str) -> Result<Response, OllamaError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = read_capped(&mut response, MAX_ERROR_BODY_BYTES, METADATA_TIMEOUT)
        .await
        .unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(shorten))
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    Err(match status {
        StatusCode::NOT_FOUND if message.contains("not found") && !model.is_empty() => {
            OllamaError::ModelNotFound(model.to_owned())
        }
        s if s.is_server_error() => OllamaError::Server {
            status: s.as_u16(),
            message,
        },
        s => OllamaError::Rejected {
            status: s.as_u16(),
            message,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rejected_requests_are_permanent() {
        assert!(OllamaError::Timeout(Duration::from_secs(1)).is_transient());
        assert!(OllamaError::ModelNotFound("m".into()).is_transient());
        let too_large = OllamaError::TooLarge { limit: 4 };
        assert!(too_large.is_transient());
        assert_eq!(too_large.reason(), "response_too_large");
        assert!(OllamaError::Server {
            status: 500,
            message: "x".into()
        }
        .is_transient());
        assert!(!OllamaError::Rejected {
            status: 400,
            message: "x".into()
        }
        .is_transient());
        let e = OllamaError::Rejected {
            status: 400,
            message: "bad".into(),
        }
        .into_adapter_error();
        assert!(matches!(
            e,
            AdapterError::Permanent {
                reason: "rejected",
                ..
            }
        ));
    }

    #[test]
    fn error_text_is_shortened() {
        assert_eq!(
            shorten(&"x".repeat(500)).chars().count(),
            MAX_ERROR_CHARS + 3
        );
    }
}
