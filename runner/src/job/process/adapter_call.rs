//! Adapter calls under a deadline, in their own task: a hanging or panicking adapter becomes
//! a transient error of its phase instead of a stuck or dead runner.

use std::future::Future;
use std::time::Duration;

use tracing::Instrument;

use crate::ai::AdapterError;
use crate::job::error_code::Phase;
use crate::job::outcome::JobError;

/// Runs an adapter call in its own task with a deadline: a timeout or a panic becomes a
/// transient error of `phase`.
pub(super) async fn guarded<T, F>(phase: Phase, limit: Duration, call: F) -> Result<T, JobError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, AdapterError>> + Send + 'static,
{
    let task = tokio::spawn(tokio::time::timeout(limit, call).in_current_span());
    match task.await {
        Ok(Ok(Ok(value))) => Ok(value),
        Ok(Ok(Err(e))) => Err(JobError::from_adapter(phase, e)),
        Ok(Err(_elapsed)) => Err(JobError::from_adapter(
            phase,
            AdapterError::transient(
                "timeout",
                format!("{phase} timed out after {}s", limit.as_secs_f64()),
            ),
        )),
        Err(join) => {
            tracing::error!(
                event = "learning.job.adapter_panicked",
                phase = phase.as_str(),
                "adapter task panicked; treating as transient"
            );
            Err(JobError::from_adapter(
                phase,
                AdapterError::transient(
                    "internal_error",
                    format!(
                        "internal error in {phase}: {}",
                        if join.is_panic() {
                            "panic"
                        } else {
                            "cancelled"
                        }
                    ),
                ),
            ))
        }
    }
}
