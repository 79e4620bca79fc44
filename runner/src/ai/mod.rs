//! The AI backends behind two traits: [`VisionAdapter`] turns a submission into Markdown text,
//! [`FeedbackAdapter`] analyses that text against the teacher's criteria and writes feedback.
//!
//! Errors say whether a retry can help ([`AdapterError::Transient`]) or not
//! ([`AdapterError::Permanent`]), with a short, bounded reason for logs and metrics.

pub mod normalize;
pub mod ollama;
pub mod ollama_feedback;
pub mod ollama_vision;
pub mod prompts;
pub mod stub;

use async_trait::async_trait;
use serde_json::Value;
use uuid::Uuid;

use crate::job::error_code::ErrorCode;

/// What kind of submission this is (`learning_submissions.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmissionKind {
    /// Typed text; vision is skipped.
    Text,
    /// A photo (`image/jpeg`, `image/png`).
    Image,
    /// A document (`application/pdf`).
    File,
}

impl SubmissionKind {
    /// Parses the column value; `None` for anything the contract does not define.
    pub fn parse(kind: &str) -> Option<Self> {
        match kind {
            "text" => Some(SubmissionKind::Text),
            "image" => Some(SubmissionKind::Image),
            "file" => Some(SubmissionKind::File),
            _ => None,
        }
    }
}

/// The stored file of an `image` or `file` submission. Its `storage_key` is sensitive: never log it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// Path below the storage root / object key in the bucket.
    pub storage_key: String,
    /// MIME type as recorded by the web app.
    pub mime_type: Option<String>,
    /// Size in bytes as recorded by the web app.
    pub size_bytes: Option<i32>,
    /// Lower-case hex SHA-256 as recorded by the web app.
    pub sha256: Option<String>,
}

/// Input of the vision step.
#[derive(Debug, Clone)]
pub struct VisionRequest {
    /// The submission (an id: safe to log).
    pub submission_id: Uuid,
    /// `image` or `file` (text never reaches vision).
    pub kind: SubmissionKind,
    /// Where the bytes are.
    pub file: StoredFile,
    /// `internal_metadata` of the submission (may hold `page_keys`).
    pub internal_metadata: Value,
    /// Whose submission it is: names the derived folder of a PDF's page images.
    pub owner: SubmissionOwner,
}

/// The course, task and student of a submission, as stored (`student_sub` is PII: it may
/// appear in a path on the shared volume, never in a log line or message).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubmissionOwner {
    /// `course_id` as text.
    pub course_id: String,
    /// `task_id` as text.
    pub task_id: String,
    /// `student_sub`.
    pub student_sub: String,
}

/// Output of the vision step.
#[derive(Debug, Clone, PartialEq)]
pub struct VisionOutput {
    /// The extracted text, Markdown.
    pub text_md: String,
    /// Adapter metadata worth caching (model, pages, timings); never student content.
    pub raw_metadata: Value,
}

/// Input of the feedback step.
#[derive(Debug, Clone)]
pub struct FeedbackRequest {
    /// The submission (an id: safe to log).
    pub submission_id: Uuid,
    /// The student's text (from vision or typed). Never log it.
    pub text_md: String,
    /// The teacher's criteria, in order.
    pub criteria: Vec<String>,
    /// The task's instruction, context only.
    pub instruction_md: Option<String>,
    /// The teacher's hints, context only.
    pub hints_md: Option<String>,
    /// No retry follows this attempt: an unusable model answer must give the deterministic
    /// fallback now instead of a transient error (contract §6.6 retries it otherwise).
    pub final_attempt: bool,
}

/// Output of the feedback step.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackOutput {
    /// The feedback for the student, Markdown.
    pub feedback_md: String,
    /// `criteria.v2`, or `{}` when no criteria were given.
    pub analysis_json: Value,
}

/// A failed adapter call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdapterError {
    /// A retry may succeed (timeouts, connection errors, 5xx, unusable answers).
    #[error("{message}")]
    Transient {
        /// A short, bounded reason code for logs and metrics (e.g. `timeout`).
        reason: &'static str,
        /// A human-readable message; must not contain student text or storage keys.
        message: String,
    },
    /// A retry cannot help; the submission fails with `code`.
    #[error("{message}")]
    Permanent {
        /// The submission error code, or `None` for the phase's own `*_failed` code.
        code: Option<ErrorCode>,
        /// A short, bounded reason code for logs and metrics.
        reason: &'static str,
        /// A human-readable message; must not contain student text or storage keys.
        message: String,
    },
}

impl AdapterError {
    /// A transient error.
    pub fn transient(reason: &'static str, message: impl Into<String>) -> Self {
        AdapterError::Transient {
            reason,
            message: message.into(),
        }
    }

    /// A permanent error that fails the submission with the phase's own code.
    pub fn permanent(reason: &'static str, message: impl Into<String>) -> Self {
        AdapterError::Permanent {
            code: None,
            reason,
            message: message.into(),
        }
    }

    /// A permanent error with an explicit submission error code (e.g. `input_unsupported`).
    pub fn permanent_with_code(
        code: ErrorCode,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        AdapterError::Permanent {
            code: Some(code),
            reason,
            message: message.into(),
        }
    }

    /// The bounded reason code.
    pub fn reason(&self) -> &'static str {
        match self {
            AdapterError::Transient { reason, .. } | AdapterError::Permanent { reason, .. } => {
                reason
            }
        }
    }
}

/// Turns a stored image or PDF into Markdown text.
#[async_trait]
pub trait VisionAdapter: Send + Sync {
    /// Extracts the text of one submission.
    async fn extract(&self, request: &VisionRequest) -> Result<VisionOutput, AdapterError>;
}

/// Analyses text against criteria and writes formative feedback.
#[async_trait]
pub trait FeedbackAdapter: Send + Sync {
    /// Produces the feedback and the analysis for one submission.
    async fn feedback(&self, request: &FeedbackRequest) -> Result<FeedbackOutput, AdapterError>;
}

/// The pair of adapters a runner uses, with a name for logs.
#[derive(Clone)]
pub struct Adapters {
    /// `stub` or `local`, for the `learning.adapters.selected` log line.
    pub backend: &'static str,
    /// The vision step.
    pub vision: std::sync::Arc<dyn VisionAdapter>,
    /// The feedback step.
    pub feedback: std::sync::Arc<dyn FeedbackAdapter>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_strictly() {
        assert_eq!(SubmissionKind::parse("image"), Some(SubmissionKind::Image));
        assert_eq!(SubmissionKind::parse("Image"), None);
        assert_eq!(SubmissionKind::parse("audio"), None);
    }

    #[test]
    fn errors_expose_their_reason() {
        assert_eq!(AdapterError::transient("timeout", "x").reason(), "timeout");
        let p = AdapterError::permanent_with_code(ErrorCode::InputUnsupported, "mime", "x");
        assert_eq!(p.reason(), "mime");
        assert_eq!(p.to_string(), "x");
    }
}
