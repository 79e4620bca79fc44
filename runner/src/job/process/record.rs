//! Recording how a job ends: one fenced finishing transaction (discard, complete, retry or
//! fail), retried a few times on database errors, then the log line and metrics of the
//! outcome — or of the lost lease, or of the outcome that could not be recorded.

use std::future::Future;
use std::time::Duration;

use super::hand_back::{hand_back, HandBack};
use super::{Finish, JobContext, JobOutcome};
use crate::db::queue::{self, Fenced, IntendedEnd, LeasedJob, VisionCache};
use crate::job::message::truncate_message;
use crate::job::outcome::{decide, Decision, JobError};

/// Finishes the job in the database as `finish` says.
pub(super) async fn record(ctx: &JobContext, job: &LeasedJob, finish: Finish) -> JobOutcome {
    let lease = job.lease_ref();
    let pool = &ctx.pool;
    match finish {
        Finish::Discard => {
            let intended = IntendedEnd::Discarded;
            let r = with_db_retry(ctx, job, "discard", intended.clone(), || {
                queue::discard(pool, lease)
            })
            .await;
            let end = Intended::new("discard", intended, JobOutcome::Skipped);
            settle(ctx, job, r, end, || {
                tracing::info!(
                    event = "learning.job.skipped",
                    "submission is no longer pending; job removed"
                );
            })
            .await
        }
        Finish::Complete {
            text,
            feedback_md,
            analysis,
        } => {
            let intended = IntendedEnd::Completed {
                feedback_md: &feedback_md,
            };
            let r = with_db_retry(ctx, job, "complete", intended.clone(), || {
                queue::complete(
                    pool,
                    lease,
                    job.submission_id,
                    &text,
                    &feedback_md,
                    &analysis,
                )
            })
            .await;
            let end = Intended::new("complete", intended, JobOutcome::Completed);
            settle(ctx, job, r, end, || {
                let waited = chrono::Utc::now() - job.enqueued_at;
                ctx.metrics
                    .time_to_feedback
                    .observe(waited.as_seconds_f64().max(0.0));
                tracing::info!(event = "learning.job.completed", "feedback stored");
            })
            .await
        }
        Finish::Error { error, cache } => record_error(ctx, job, error, cache).await,
    }
}

/// Requeues the job for a retry or fails it for good, as [`decide`] says.
async fn record_error(
    ctx: &JobContext,
    job: &LeasedJob,
    error: JobError,
    cache: Option<VisionCache>,
) -> JobOutcome {
    let decision = decide(
        &error,
        job.retry_count,
        ctx.max_retries,
        &ctx.backoff,
        fastrand::f64(),
    );
    let lease = job.lease_ref();
    let pool = &ctx.pool;
    match decision {
        Decision::Retry {
            phase,
            delay,
            message,
        } => {
            let intended = IntendedEnd::Requeued {
                retry_count: job.retry_count + 1,
            };
            let r = with_db_retry(ctx, job, "retry", intended.clone(), || {
                queue::retry(
                    pool,
                    lease,
                    job.submission_id,
                    phase,
                    &message,
                    delay,
                    cache.as_ref(),
                )
            })
            .await;
            let end = Intended::new("retry", intended, JobOutcome::Retried);
            settle(ctx, job, r, end, || {
                ctx.metrics
                    .retries
                    .with_label_values(&[phase.as_str()])
                    .inc();
                tracing::warn!(
                    event = "learning.job.retry_scheduled",
                    phase = phase.as_str(),
                    reason = error.reason,
                    delay_s = delay.as_secs_f64(),
                    "transient error; job requeued"
                );
            })
            .await
        }
        Decision::Fail { code, message } => {
            let message = truncate_message(&message);
            let intended = IntendedEnd::Failed {
                code: code.as_str(),
            };
            let r = with_db_retry(ctx, job, "fail", intended.clone(), || {
                queue::fail(pool, lease, job.submission_id, code, &message)
            })
            .await;
            let end = Intended::new("fail", intended, JobOutcome::Failed);
            settle(ctx, job, r, end, || {
                ctx.metrics.failed.with_label_values(&[code.as_str()]).inc();
                tracing::warn!(
                    event = "learning.job.failed",
                    error_code = code.as_str(),
                    phase = error.phase.as_str(),
                    reason = error.reason,
                    "job failed for good"
                );
            })
            .await
        }
    }
}

/// The end a finishing transaction meant to record.
struct Intended<'a> {
    operation: &'static str,
    end: IntendedEnd<'a>,
    outcome: JobOutcome,
}

impl<'a> Intended<'a> {
    fn new(operation: &'static str, end: IntendedEnd<'a>, outcome: JobOutcome) -> Self {
        Intended {
            operation,
            end,
            outcome,
        }
    }
}

/// The outcome of a finishing transaction: applied, a lost lease, or — after a database
/// error — the job handed back to the queue once the database answers. A hand-back that finds
/// the lease gone asks whether the finish went through after all (its commit may have been
/// applied without an acknowledgement).
async fn settle(
    ctx: &JobContext,
    job: &LeasedJob,
    result: Result<Fenced, sqlx::Error>,
    intended: Intended<'_>,
    on_applied: impl FnOnce(),
) -> JobOutcome {
    let fenced = match result {
        Ok(fenced) => fenced,
        Err(e) => {
            tracing::error!(event = "learning.job.finish_failed", intended = intended.outcome.as_str(), error = %e,
                "could not record the outcome; the job goes back to the queue once the database answers");
            match hand_back(ctx, job, &e).await {
                HandBack::Done => return JobOutcome::HandedBack,
                HandBack::GaveUp => return JobOutcome::Abandoned,
                HandBack::LeaseGone => {
                    confirm_unacknowledged(ctx, job, intended.operation, &intended.end).await
                }
            }
        }
    };
    match fenced {
        Fenced::Applied => {
            on_applied();
            intended.outcome
        }
        Fenced::LeaseLost => {
            ctx.metrics.lease_lost.inc();
            tracing::warn!(
                event = "learning.job.lease_lost",
                intended = intended.outcome.as_str(),
                "another runner holds this job; result dropped"
            );
            JobOutcome::LeaseLost
        }
    }
}

/// Retries a finishing transaction a few times on database errors. Safe: each attempt is one
/// atomic, fenced transaction. An attempt that failed may still have committed (the
/// connection broke after `COMMIT` was sent): when a later attempt then finds the lease gone,
/// the database is asked whether `intended` is what it holds — then the finish is this
/// runner's own and counts as applied, not as a lease another runner took.
async fn with_db_retry<'a, F, Fut>(
    ctx: &JobContext,
    job: &LeasedJob,
    operation: &'static str,
    intended: IntendedEnd<'_>,
    mut attempt: F,
) -> Result<Fenced, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Fenced, sqlx::Error>> + 'a,
{
    let mut pause = Duration::from_millis(250);
    let mut tries = 0;
    loop {
        match attempt().await {
            Ok(Fenced::LeaseLost) if tries > 0 => {
                return Ok(confirm_unacknowledged(ctx, job, operation, &intended).await);
            }
            Ok(v) => return Ok(v),
            Err(e) => {
                ctx.metrics.db_errors.with_label_values(&[operation]).inc();
                tries += 1;
                if tries >= 4 {
                    return Err(e);
                }
                tracing::warn!(event = "learning.job.finish_retry", operation, error = %e, "database error while finishing; retrying");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
    }
}

/// After an attempt with an unknown outcome, a retry found the lease gone: applied when the
/// database holds exactly the intended end, else the lease really is lost.
async fn confirm_unacknowledged(
    ctx: &JobContext,
    job: &LeasedJob,
    operation: &'static str,
    intended: &IntendedEnd<'_>,
) -> Fenced {
    let Some(student_sub) = job.payload.get("student_sub").and_then(|v| v.as_str()) else {
        return Fenced::LeaseLost;
    };
    match queue::end_is_recorded(
        &ctx.pool,
        job.lease_ref(),
        job.submission_id,
        student_sub,
        intended,
    )
    .await
    {
        Ok(true) => {
            tracing::info!(
                event = "learning.job.finish_confirmed",
                operation,
                "the commit was not acknowledged, but the database holds this runner's result"
            );
            Fenced::Applied
        }
        Ok(false) => Fenced::LeaseLost,
        Err(e) => {
            ctx.metrics.db_errors.with_label_values(&[operation]).inc();
            tracing::warn!(event = "learning.job.finish_unconfirmed", operation, error = %e,
                "could not look up whether the unacknowledged finish went through");
            Fenced::LeaseLost
        }
    }
}
