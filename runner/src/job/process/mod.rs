//! One job from lease to finish: parse the payload, read the submission under RLS, vision,
//! feedback, then complete / retry / fail in one fenced transaction (contract §6).
//!
//! Decisions are pure ([`crate::job::outcome`]); this module sequences the I/O: `vision`
//! obtains the text, `feedback` asks for the feedback, `record` finishes the job. Adapter
//! calls run in their own task with a timeout (`adapter_call`), so a hanging or panicking
//! adapter becomes a transient error of its phase instead of a stuck or dead runner.

mod adapter_call;
mod feedback;
mod hand_back;
mod record;
mod vision;

use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::PgPool;
use tracing::Instrument;

use self::feedback::give_feedback;
use self::hand_back::{hand_back, HandBack};
use self::record::record;
use self::vision::obtain_text;
use crate::ai::Adapters;
use crate::db::queue::{self, LeasedJob, SubmissionRow, VisionCache};
use crate::job::admission::ModelAdmission;
use crate::job::error_code::{ErrorCode, Phase};
use crate::job::outcome::JobError;
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
    /// A database error kept this runner from finishing the job; once the database answered
    /// again it was given back to the queue (no retry and no takeover counted).
    HandedBack,
    /// The database could not record the outcome, nor take the job back; the lease will
    /// expire and the job return.
    Abandoned,
    /// Never started: shutdown began while it waited for its turn; given back to the queue.
    Released,
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
            JobOutcome::HandedBack => "handed_back",
            JobOutcome::Abandoned => "abandoned",
            JobOutcome::Released => "released",
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
    /// Model slots: a phase waits for one before its time limit starts.
    pub admission: ModelAdmission,
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

/// After this many takeovers of a job that was running alone when its holder died (crash,
/// out of memory), the job is failed instead of being handed to the next runner to crash.
/// Takeovers of jobs that ran beside others do not count here: the job that killed the
/// runner cannot be told from its neighbours, so each of them runs alone next time
/// ([`Running::Alone`]), and only a death during such a run is blamed on the job.
pub const MAX_SOLO_TAKEOVERS: u32 = 2;

/// A backstop: after this many takeovers of any kind the job is failed, so that no job can
/// circulate for ever (each takeover means a runner died or lost its lease while holding it).
pub const MAX_LEASE_TAKEOVERS: u32 = 10;

/// Whether the job runs alone in its runner (no other job runs meanwhile) or beside others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Running {
    /// No other job of this runner runs while this one does: a suspect (a job whose earlier
    /// holder died) is marked in its lease row, so a death now is blamed on it alone.
    Alone,
    /// Other jobs may run at the same time.
    WithOthers,
}

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
/// job in the database, hands it back to the queue after a database error, or — when the
/// database stays away — leaves it to lease expiry.
pub async fn process_job(ctx: &JobContext, job: LeasedJob, running: Running) -> JobOutcome {
    let span = tracing::info_span!("job", job_id = %job.id, submission_id = %job.submission_id, retry = job.retry_count);
    async {
        let started = Instant::now();
        let _inflight = InflightGuard::enter(&ctx.metrics);
        let outcome = match run_pipeline(ctx, &job, running).await {
            Ok(Some(finish)) => record(ctx, &job, finish).await,
            Ok(None) => lease_lost_early(ctx),
            Err(e) if crate::db::is_unavailable(&e) => {
                ctx.metrics.db_errors.with_label_values(&["read_submission"]).inc();
                tracing::warn!(event = "learning.job.db_error", error = %e, "could not read the submission; the job goes back to the queue once the database answers");
                match hand_back(ctx, &job, &e).await {
                    HandBack::Done => JobOutcome::HandedBack,
                    HandBack::GaveUp => JobOutcome::Abandoned,
                    HandBack::LeaseGone => lease_lost_early(ctx),
                }
            }
            Err(e) => {
                ctx.metrics.db_errors.with_label_values(&["read_submission"]).inc();
                tracing::warn!(event = "learning.job.db_error", error = %e, "the database refused to read the submission; counted as a retry");
                record(ctx, &job, refused(&e)).await
            }
        };
        if running == Running::Alone && outcome == JobOutcome::LeaseLost {
            absolve(ctx, &job).await;
        }
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

/// The lease was found gone before the job was recorded.
fn lease_lost_early(ctx: &JobContext) -> JobOutcome {
    ctx.metrics.lease_lost.inc();
    tracing::warn!(
        event = "learning.job.lease_lost",
        "the lease expired before the job was recorded; another runner has the job"
    );
    JobOutcome::LeaseLost
}

/// The transient error for a statement the database answered and refused (its SQLSTATE
/// only: a message may quote values).
fn refused(e: &sqlx::Error) -> Finish {
    let code = match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    };
    Finish::Error {
        error: JobError {
            phase: Phase::Vision,
            transient: true,
            code: None,
            reason: "database_error",
            message: format!(
                "the database refused to read the submission (SQLSTATE {})",
                code.as_deref().unwrap_or("unknown")
            ),
        },
        cache: None,
    }
}

/// A runner that ran a suspect alone and is alive lost its lease anyway (it expired during
/// a database outage): the solo takeover counted for it was no death; take it back.
async fn absolve(ctx: &JobContext, job: &LeasedJob) {
    match queue::absolve(&ctx.pool, job.lease_ref()).await {
        Ok(true) => tracing::info!(
            event = "learning.job.absolved",
            "this runner is alive: the solo takeover counted against the job was taken back"
        ),
        Ok(false) => {}
        Err(e) => tracing::warn!(event = "learning.job.absolve_failed", error = %e),
    }
}

/// What the job comes to before it is recorded; `None` when the lease was lost on the way.
async fn run_pipeline(
    ctx: &JobContext,
    job: &LeasedJob,
    running: Running,
) -> Result<Option<Finish>, sqlx::Error> {
    let payload = match parse_payload(&job.payload, job.submission_id) {
        Ok(p) => p,
        Err(e) => {
            return Ok(Some(Finish::Error {
                error: JobError::input(ErrorCode::InputCorrupt, "bad_payload", e.to_string()),
                cache: None,
            }))
        }
    };
    let Some(row) =
        queue::read_submission(&ctx.pool, &payload.student_sub, job.submission_id).await?
    else {
        // The job's foreign key guarantees the row exists, so an invisible row means the
        // payload names the wrong student: fail visibly instead of dropping the job.
        return Ok(Some(Finish::Error {
            error: JobError::input(
                ErrorCode::InputCorrupt,
                "submission_not_visible",
                "submission not visible for the job's student_sub (missing row or wrong student)",
            ),
            cache: None,
        }));
    };
    if !matches!(row.analysis_status.as_str(), "pending" | "extracted") {
        return Ok(Some(Finish::Discard));
    }
    if let Some(error) = poison_guard(&payload, &row) {
        return Ok(Some(Finish::Error { error, cache: None }));
    }
    if payload.is_suspect() && running == Running::Alone {
        if queue::mark_solo(&ctx.pool, job.lease_ref()).await? == queue::Fenced::LeaseLost {
            return Ok(None);
        }
        tracing::info!(
            event = "learning.job.running_alone",
            takeovers = payload.lease_takeovers,
            solo_takeovers = payload.solo_takeovers,
            "an earlier holder of this job died with it; it runs alone"
        );
    }
    let final_attempt = u32::try_from(job.retry_count.max(0)).unwrap_or(0) >= ctx.max_retries;
    Ok(Some(analyse(ctx, &payload, &row, final_attempt).await))
}

/// The permanent error for a job whose holders kept dying with it
/// ([`MAX_SOLO_TAKEOVERS`] while it ran alone, or [`MAX_LEASE_TAKEOVERS`] in all).
fn poison_guard(payload: &JobPayload, row: &SubmissionRow) -> Option<JobError> {
    let alone = payload.solo_takeovers >= MAX_SOLO_TAKEOVERS;
    if !alone && payload.lease_takeovers < MAX_LEASE_TAKEOVERS {
        return None;
    }
    let phase = if row.kind == "text" {
        Phase::Feedback
    } else {
        Phase::Vision
    };
    let message = if alone {
        format!(
            "the runner died {} times while processing this submission alone (crash or out of memory); giving up so the queue keeps moving",
            payload.solo_takeovers
        )
    } else {
        format!(
            "processing was interrupted {} times (runner crash, out of memory or lost lease); giving up so the queue keeps moving",
            payload.lease_takeovers
        )
    };
    Some(JobError {
        phase,
        transient: false,
        code: None,
        reason: "lease_takeovers",
        message,
    })
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
    give_feedback(ctx, payload, row, text, final_attempt).await
}
