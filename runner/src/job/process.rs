//! One job from lease to finish: parse the payload, read the submission under RLS, vision,
//! feedback, then complete / retry / fail in one fenced transaction (contract §6).
//!
//! Decisions are pure ([`crate::job::outcome`]); this module sequences the I/O. Adapter calls run in
//! their own task with a timeout, so a hanging or panicking adapter becomes a transient error
//! of its phase instead of a stuck or dead runner.

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::PgPool;
use tracing::Instrument;

use crate::ai::{
    AdapterError, Adapters, FeedbackRequest, StoredFile, SubmissionKind, SubmissionOwner,
    VisionRequest,
};
use crate::db::queue::{self, Fenced, LeasedJob, SubmissionRow, VisionCache};
use crate::job::error_code::{ErrorCode, Phase};
use crate::job::message::{strip_nul, strip_nul_json, truncate_message};
use crate::job::outcome::{decide, Decision, JobError};
use crate::job::payload::{parse_payload, JobPayload};
use crate::telemetry::metrics::Metrics;
use crate::worker::backoff::BackoffPolicy;

/// How a job ended, for metrics and the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// Result stored, job deleted.
    Completed,
    /// Requeued for a later attempt.
    Retried,
    /// Failed for good.
    Failed,
    /// Nothing to do (submission no longer pending); job deleted.
    Skipped,
    /// Another runner holds the job; our result was dropped.
    LeaseLost,
    /// The database could not record the outcome; the lease will expire and the job return.
    Abandoned,
}

impl JobOutcome {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Completed => "completed",
            JobOutcome::Retried => "retried",
            JobOutcome::Failed => "failed",
            JobOutcome::Skipped => "skipped",
            JobOutcome::LeaseLost => "lease_lost",
            JobOutcome::Abandoned => "abandoned",
        }
    }
}

/// Everything a job needs besides the job itself.
#[derive(Clone)]
pub struct JobContext {
    /// Database pool (the worker login role).
    pub pool: PgPool,
    /// Vision and feedback backends.
    pub adapters: Adapters,
    /// Metrics.
    pub metrics: Metrics,
    /// Retries before failing.
    pub max_retries: u32,
    /// Retry spacing.
    pub backoff: BackoffPolicy,
    /// Limit of the whole vision phase (storage reads and the model call).
    pub timeout_vision: Duration,
    /// Limit of the whole feedback phase (every model call of it).
    pub timeout_feedback: Duration,
}

/// Keeps `analysis_jobs_inflight` right even when a job's future is dropped (drain abort)
/// or unwinds.
struct InflightGuard(prometheus::IntGauge);

impl InflightGuard {
    fn enter(metrics: &Metrics) -> Self {
        metrics.inflight.inc();
        InflightGuard(metrics.inflight.clone())
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// After this many lease takeovers (the job's holder crashed, ran out of memory or lost the
/// database mid-job) the job is failed instead of being handed to the next runner to crash.
pub const MAX_LEASE_TAKEOVERS: u32 = 3;

/// What the pipeline decided before the finishing transaction.
enum Finish {
    Complete {
        text: String,
        feedback_md: String,
        analysis: Value,
    },
    Error {
        error: JobError,
        cache: Option<VisionCache>,
    },
    Discard,
}

/// Processes one leased job to its end. Never panics on bad input; every path finishes the
/// job in the database or leaves it to lease expiry when the database is unreachable.
pub async fn process_job(ctx: &JobContext, job: LeasedJob) -> JobOutcome {
    let span = tracing::info_span!("job", job_id = %job.id, submission_id = %job.submission_id, retry = job.retry_count);
    async {
        let started = Instant::now();
        let _inflight = InflightGuard::enter(&ctx.metrics);
        let finish = run_pipeline(ctx, &job).await;
        let outcome = match finish {
            Ok(finish) => record(ctx, &job, finish).await,
            Err(e) => {
                ctx.metrics.db_errors.with_label_values(&["read_submission"]).inc();
                tracing::warn!(event = "learning.job.db_error", error = %e, "could not read the submission; the job returns when its lease expires");
                JobOutcome::Abandoned
            }
        };
        ctx.metrics.processed.with_label_values(&[outcome.as_str()]).inc();
        ctx.metrics
            .job_duration
            .with_label_values(&[outcome.as_str()])
            .observe(started.elapsed().as_secs_f64());
        outcome
    }
    .instrument(span)
    .await
}

async fn run_pipeline(ctx: &JobContext, job: &LeasedJob) -> Result<Finish, sqlx::Error> {
    let payload = match parse_payload(&job.payload, job.submission_id) {
        Ok(p) => p,
        Err(e) => {
            return Ok(Finish::Error {
                error: JobError::input(ErrorCode::InputCorrupt, "bad_payload", e.to_string()),
                cache: None,
            })
        }
    };
    let Some(row) =
        queue::read_submission(&ctx.pool, &payload.student_sub, job.submission_id).await?
    else {
        // The job's foreign key guarantees the row exists, so an invisible row means the
        // payload names the wrong student: fail visibly instead of dropping the job.
        return Ok(Finish::Error {
            error: JobError::input(
                ErrorCode::InputCorrupt,
                "submission_not_visible",
                "submission not visible for the job's student_sub (missing row or wrong student)",
            ),
            cache: None,
        });
    };
    if !matches!(row.analysis_status.as_str(), "pending" | "extracted") {
        return Ok(Finish::Discard);
    }
    if payload.lease_takeovers >= MAX_LEASE_TAKEOVERS {
        let phase = if row.kind == "text" {
            Phase::Feedback
        } else {
            Phase::Vision
        };
        return Ok(Finish::Error {
            error: JobError {
                phase,
                transient: false,
                code: None,
                reason: "lease_takeovers",
                message: format!(
                    "processing was interrupted {} times (runner crash, out of memory or database error); giving up so the queue keeps moving",
                    payload.lease_takeovers
                ),
            },
            cache: None,
        });
    }
    let final_attempt = u32::try_from(job.retry_count.max(0)).unwrap_or(0) >= ctx.max_retries;
    Ok(analyse(ctx, &payload, &row, final_attempt).await)
}

async fn analyse(
    ctx: &JobContext,
    payload: &JobPayload,
    row: &SubmissionRow,
    final_attempt: bool,
) -> Finish {
    let text = match obtain_text(ctx, payload, row).await {
        Ok(text) => text,
        Err(error) => return Finish::Error { error, cache: None },
    };
    let request = FeedbackRequest {
        submission_id: row.id,
        text_md: text.text_md.clone(),
        criteria: payload.criteria.clone(),
        instruction_md: payload.instruction_md.clone(),
        hints_md: payload.hints_md.clone(),
        final_attempt,
    };
    let feedback = ctx.adapters.feedback.clone();
    let started = Instant::now();
    let result = guarded(Phase::Feedback, ctx.timeout_feedback, async move {
        feedback.feedback(&request).await
    })
    .await;
    ctx.metrics
        .phase_duration
        .with_label_values(&["feedback"])
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(out) => {
            let mut analysis = out.analysis_json;
            strip_nul_json(&mut analysis);
            Finish::Complete {
                text: strip_nul(&text.text_md),
                feedback_md: strip_nul(&out.feedback_md),
                analysis,
            }
        }
        Err(error) => Finish::Error {
            error,
            cache: text.fresh_vision.then(|| {
                let mut raw_metadata = text.raw_metadata;
                strip_nul_json(&mut raw_metadata);
                VisionCache {
                    text_md: strip_nul(&text.text_md),
                    raw_metadata,
                }
            }),
        },
    }
}

struct ObtainedText {
    text_md: String,
    raw_metadata: Value,
    /// True when vision ran in this attempt (worth caching for a feedback retry).
    fresh_vision: bool,
}

async fn obtain_text(
    ctx: &JobContext,
    payload: &JobPayload,
    row: &SubmissionRow,
) -> Result<ObtainedText, JobError> {
    let kind = SubmissionKind::parse(&row.kind).ok_or_else(|| {
        JobError::input(
            ErrorCode::InputUnsupported,
            "unknown_kind",
            format!("submission kind '{}' is not supported", row.kind),
        )
    })?;
    if kind == SubmissionKind::Text {
        let text = row.text_body.clone().ok_or_else(|| {
            JobError::input(
                ErrorCode::InputCorrupt,
                "missing_text",
                "text submission has no text_body",
            )
        })?;
        return Ok(ObtainedText {
            text_md: text,
            raw_metadata: Value::Null,
            fresh_vision: false,
        });
    }
    if let Some(cached) = &payload.cached_text_md {
        tracing::debug!(event = "learning.vision.cache_hit");
        return Ok(ObtainedText {
            text_md: cached.clone(),
            raw_metadata: Value::Null,
            fresh_vision: false,
        });
    }
    let storage_key = row
        .storage_key
        .clone()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            JobError::input(
                ErrorCode::InputCorrupt,
                "missing_storage_key",
                "file submission has no storage_key",
            )
        })?;
    let request = VisionRequest {
        submission_id: row.id,
        kind,
        file: StoredFile {
            storage_key,
            mime_type: row.mime_type.clone(),
            size_bytes: row.size_bytes,
            sha256: row.sha256.clone(),
        },
        internal_metadata: row.internal_metadata.clone(),
        owner: SubmissionOwner {
            course_id: row.course_id.clone(),
            task_id: row.task_id.clone(),
            student_sub: row.student_sub.clone(),
        },
    };
    let vision = ctx.adapters.vision.clone();
    let started = Instant::now();
    let result = guarded(Phase::Vision, ctx.timeout_vision, async move {
        vision.extract(&request).await
    })
    .await;
    ctx.metrics
        .phase_duration
        .with_label_values(&["vision"])
        .observe(started.elapsed().as_secs_f64());
    let out = result?;
    if out.text_md.trim().is_empty() {
        return Err(JobError::from_adapter(
            Phase::Vision,
            AdapterError::transient("empty_answer", "vision returned no text"),
        ));
    }
    Ok(ObtainedText {
        text_md: out.text_md,
        raw_metadata: out.raw_metadata,
        fresh_vision: true,
    })
}

/// Runs an adapter call in its own task with a deadline: a timeout or a panic becomes a
/// transient error of `phase`.
async fn guarded<T, F>(phase: Phase, limit: Duration, call: F) -> Result<T, JobError>
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

async fn record(ctx: &JobContext, job: &LeasedJob, finish: Finish) -> JobOutcome {
    let lease = job.lease_ref();
    let pool = &ctx.pool;
    match finish {
        Finish::Discard => {
            let r = with_db_retry(ctx, "discard", || queue::discard(pool, lease)).await;
            settle(ctx, r, JobOutcome::Skipped, || {
                tracing::info!(
                    event = "learning.job.skipped",
                    "submission is no longer pending; job removed"
                );
            })
        }
        Finish::Complete {
            text,
            feedback_md,
            analysis,
        } => {
            let r = with_db_retry(ctx, "complete", || {
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
            settle(ctx, r, JobOutcome::Completed, || {
                tracing::info!(event = "learning.job.completed", "feedback stored");
            })
        }
        Finish::Error { error, cache } => {
            let decision = decide(
                &error,
                job.retry_count,
                ctx.max_retries,
                &ctx.backoff,
                fastrand::f64(),
            );
            match decision {
                Decision::Retry {
                    phase,
                    delay,
                    message,
                } => {
                    let r = with_db_retry(ctx, "retry", || {
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
                    settle(ctx, r, JobOutcome::Retried, || {
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
                }
                Decision::Fail { code, message } => {
                    let message = truncate_message(&message);
                    let r = with_db_retry(ctx, "fail", || {
                        queue::fail(pool, lease, job.submission_id, code, &message)
                    })
                    .await;
                    settle(ctx, r, JobOutcome::Failed, || {
                        ctx.metrics.failed.with_label_values(&[code.as_str()]).inc();
                        tracing::warn!(
                            event = "learning.job.failed",
                            error_code = code.as_str(),
                            phase = error.phase.as_str(),
                            reason = error.reason,
                            "job failed for good"
                        );
                    })
                }
            }
        }
    }
}

fn settle(
    ctx: &JobContext,
    result: Result<Fenced, sqlx::Error>,
    applied: JobOutcome,
    on_applied: impl FnOnce(),
) -> JobOutcome {
    match result {
        Ok(Fenced::Applied) => {
            on_applied();
            applied
        }
        Ok(Fenced::LeaseLost) => {
            ctx.metrics.lease_lost.inc();
            tracing::warn!(
                event = "learning.job.lease_lost",
                intended = applied.as_str(),
                "another runner holds this job; result dropped"
            );
            JobOutcome::LeaseLost
        }
        Err(e) => {
            tracing::error!(event = "learning.job.finish_failed", intended = applied.as_str(), error = %e,
                "could not record the outcome; the job returns when its lease expires");
            JobOutcome::Abandoned
        }
    }
}

/// Retries a finishing transaction a few times on database errors. Safe: each attempt is one
/// atomic, fenced transaction.
async fn with_db_retry<'a, F, Fut>(
    ctx: &JobContext,
    operation: &'static str,
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
