//! The error codes GUSTAV's schema accepts for submissions (contract §1), as a closed enum.

use std::fmt;

/// A submission-level error code. Only these strings pass the `error_code` CHECK constraint
/// and `learning_worker_update_failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The vision phase failed for good (or its retries are used up).
    VisionFailed,
    /// The feedback phase failed for good (or its retries are used up).
    FeedbackFailed,
    /// The job or its input is malformed (bad payload, hash/size mismatch).
    InputCorrupt,
    /// The input kind or MIME type cannot be processed.
    InputUnsupported,
    /// The input exceeds the size limit.
    InputTooLarge,
}

impl ErrorCode {
    /// Every code, for exhaustive tests and metric pre-registration.
    pub const ALL: [ErrorCode; 5] = [
        ErrorCode::VisionFailed,
        ErrorCode::FeedbackFailed,
        ErrorCode::InputCorrupt,
        ErrorCode::InputUnsupported,
        ErrorCode::InputTooLarge,
    ];

    /// The string stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::VisionFailed => "vision_failed",
            ErrorCode::FeedbackFailed => "feedback_failed",
            ErrorCode::InputCorrupt => "input_corrupt",
            ErrorCode::InputUnsupported => "input_unsupported",
            ErrorCode::InputTooLarge => "input_too_large",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The processing phase an error belongs to; `learning_worker_mark_retry` takes its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Turning the submission into text.
    Vision,
    /// Analysis against the criteria and the feedback text.
    Feedback,
}

impl Phase {
    /// The phase name the SQL functions and metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Vision => "vision",
            Phase::Feedback => "feedback",
        }
    }

    /// The code a submission gets when this phase fails for good.
    pub fn failed_code(self) -> ErrorCode {
        match self {
            Phase::Vision => ErrorCode::VisionFailed,
            Phase::Feedback => ErrorCode::FeedbackFailed,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_the_contract_strings() {
        let strings: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            strings,
            [
                "vision_failed",
                "feedback_failed",
                "input_corrupt",
                "input_unsupported",
                "input_too_large"
            ]
        );
    }

    #[test]
    fn each_phase_fails_with_its_own_code() {
        assert_eq!(Phase::Vision.failed_code(), ErrorCode::VisionFailed);
        assert_eq!(Phase::Feedback.failed_code(), ErrorCode::FeedbackFailed);
        assert_eq!(Phase::Feedback.to_string(), "feedback");
    }
}
