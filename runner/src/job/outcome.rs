//! What happens to a job after an error: retry later, or fail for good. Pure (contract §6.6).

use std::time::Duration;

use crate::ai::AdapterError;
use crate::job::error_code::{ErrorCode, Phase};
use crate::job::message::truncate_message;
use crate::worker::backoff::BackoffPolicy;

/// An error while processing one job, attributed to a phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    /// Where it happened; decides `vision_*` vs `feedback_*` codes.
    pub phase: Phase,
    /// Retry may help.
    pub transient: bool,
    /// The submission code for a permanent error (`None` → the phase's `*_failed`).
    pub code: Option<ErrorCode>,
    /// Bounded reason for logs and metrics.
    pub reason: &'static str,
    /// Message stored in `*_last_error` (never student text).
    pub message: String,
}

impl JobError {
    /// Attributes an adapter error to `phase`.
    pub fn from_adapter(phase: Phase, error: AdapterError) -> Self {
        match error {
            AdapterError::Transient { reason, message } => JobError {
                phase,
                transient: true,
                code: None,
                reason,
                message,
            },
            AdapterError::Permanent {
                code,
                reason,
                message,
            } => JobError {
                phase,
                transient: false,
                code,
                reason,
                message,
            },
        }
    }

    /// A permanent input error detected by the runner itself.
    pub fn input(code: ErrorCode, reason: &'static str, message: impl Into<String>) -> Self {
        JobError {
            phase: Phase::Vision,
            transient: false,
            code: Some(code),
            reason,
            message: message.into(),
        }
    }
}

/// The decided fate of a failed job.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Back to the queue after `delay`; the submission records the attempt.
    Retry {
        /// The phase for `learning_worker_mark_retry`.
        phase: Phase,
        /// How long the job stays invisible.
        delay: Duration,
        /// The stored message (trimmed, ≤ 1024 characters).
        message: String,
    },
    /// Failed for good.
    Fail {
        /// The submission and job error code.
        code: ErrorCode,
        /// The stored message (trimmed, ≤ 1024 characters).
        message: String,
    },
}

/// Retries a transient error while `retry_count < max_retries`; otherwise fails with the
/// error's code or the phase's `*_failed` code. `unit_draw` ∈ [0, 1) feeds the jitter.
pub fn decide(
    error: &JobError,
    retry_count: i32,
    max_retries: u32,
    backoff: &BackoffPolicy,
    unit_draw: f64,
) -> Decision {
    let retries_done = u32::try_from(retry_count.max(0)).unwrap_or(0);
    let message = truncate_message(&error.message);
    if error.transient && retries_done < max_retries {
        return Decision::Retry {
            phase: error.phase,
            delay: backoff.delay(retries_done, unit_draw),
            message,
        };
    }
    let code = if error.transient {
        error.phase.failed_code()
    } else {
        error.code.unwrap_or_else(|| error.phase.failed_code())
    };
    let message = if error.transient {
        truncate_message(&format!("retries exhausted ({retries_done}): {message}"))
    } else {
        message
    };
    Decision::Fail { code, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BackoffPolicy {
        BackoffPolicy {
            base: Duration::from_secs(10),
            cap: Duration::from_secs(600),
            jitter_ratio: 0.0,
        }
    }

    fn transient(phase: Phase) -> JobError {
        JobError::from_adapter(phase, AdapterError::transient("timeout", "model timed out"))
    }

    #[test]
    fn transient_errors_retry_with_exponential_delay() {
        let d = decide(&transient(Phase::Vision), 2, 3, &policy(), 0.0);
        assert_eq!(
            d,
            Decision::Retry {
                phase: Phase::Vision,
                delay: Duration::from_secs(40),
                message: "model timed out".into()
            }
        );
    }

    #[test]
    fn exhausted_retries_fail_with_the_phase_code() {
        match decide(&transient(Phase::Feedback), 3, 3, &policy(), 0.0) {
            Decision::Fail { code, message } => {
                assert_eq!(code, ErrorCode::FeedbackFailed);
                assert!(message.contains("retries exhausted"));
            }
            other => panic!("expected failure, got {other:?}"),
        }
    }

    #[test]
    fn permanent_errors_fail_at_once_with_their_code() {
        let e = JobError::from_adapter(
            Phase::Vision,
            AdapterError::permanent_with_code(
                ErrorCode::InputUnsupported,
                "mime",
                "image/gif is not supported",
            ),
        );
        assert!(matches!(
            decide(&e, 0, 3, &policy(), 0.0),
            Decision::Fail {
                code: ErrorCode::InputUnsupported,
                ..
            }
        ));
        let plain = JobError::from_adapter(
            Phase::Feedback,
            AdapterError::permanent("bad_model", "no such model"),
        );
        assert!(matches!(
            decide(&plain, 0, 3, &policy(), 0.0),
            Decision::Fail {
                code: ErrorCode::FeedbackFailed,
                ..
            }
        ));
    }

    #[test]
    fn zero_max_retries_fails_the_first_transient_error() {
        assert!(matches!(
            decide(&transient(Phase::Vision), 0, 0, &policy(), 0.0),
            Decision::Fail { .. }
        ));
    }
}
