//! Giving a job back to the queue when a database error kept this runner from finishing it:
//! the job is released as soon as the database answers again — no takeover counted, and no
//! retry either when the database was unavailable ([`crate::db::is_unavailable`]); a
//! database that answered and refused the finish counts one retry, since that may not pass
//! by itself — instead of waiting in a lease nobody works on until it expires.

use std::time::{Duration, Instant};

use super::JobContext;
use crate::db::queue::{self, Fenced, LeasedJob};

/// How long a job keeps trying to give itself back before it leaves the job to its lease
/// expiry (the database has been away that long; the heartbeat has stopped extending the
/// lease too, so another runner takes the job once the database is back).
pub const HAND_BACK_PATIENCE: Duration = Duration::from_secs(300);

/// When a handed-back job becomes visible again: a short pause, so a fault that keeps
/// repeating for one job does not turn into a tight lease-and-give-back loop.
pub const HAND_BACK_DELAY: Duration = Duration::from_secs(5);

/// The first pause between attempts; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(500);
const MAX_PAUSE: Duration = Duration::from_secs(10);

/// How a hand-back ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HandBack {
    /// The job is back in the queue.
    Done,
    /// The lease is no longer this runner's (taken over, or the job already ended).
    LeaseGone,
    /// The database stayed away for [`HAND_BACK_PATIENCE`]; the lease will expire.
    GaveUp,
}

/// Releases the job (fenced by its lease) once the database answers; `cause` is the error
/// that kept it from finishing.
pub(super) async fn hand_back(ctx: &JobContext, job: &LeasedJob, cause: &sqlx::Error) -> HandBack {
    let started = Instant::now();
    let mut pause = FIRST_PAUSE;
    let count_retry = !crate::db::is_unavailable(cause);
    loop {
        match queue::hand_back(&ctx.pool, job.lease_ref(), HAND_BACK_DELAY, count_retry).await {
            Ok(Fenced::Applied) => {
                tracing::info!(
                    event = "learning.job.handed_back",
                    visible_in_s = HAND_BACK_DELAY.as_secs_f64(),
                    retry_counted = count_retry,
                    "the job went back to the queue"
                );
                return HandBack::Done;
            }
            Ok(Fenced::LeaseLost) => return HandBack::LeaseGone,
            Err(e) if started.elapsed() + pause > HAND_BACK_PATIENCE => {
                ctx.metrics
                    .db_errors
                    .with_label_values(&["hand_back"])
                    .inc();
                tracing::error!(event = "learning.job.abandoned", error = %e,
                    "the database stayed away; the job returns when its lease expires");
                return HandBack::GaveUp;
            }
            Err(e) => {
                ctx.metrics
                    .db_errors
                    .with_label_values(&["hand_back"])
                    .inc();
                tracing::warn!(event = "learning.job.hand_back_retry", error = %e, retry_in_s = pause.as_secs_f64());
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
        }
    }
}
