//! The fenced ends of a job — complete, retry, fail, discard — each in one short transaction
//! with the GUSTAV update function it calls.

use std::time::Duration;

use serde_json::Value;
use sqlx::{PgConnection, PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use super::{seconds, within, Fenced, LeaseRef};
use crate::job::error_code::{ErrorCode, Phase};

async fn finish(tx: Transaction<'_, Postgres>, applied: bool) -> Result<Fenced, sqlx::Error> {
    if applied {
        tx.commit().await?;
        Ok(Fenced::Applied)
    } else {
        tx.rollback().await?;
        Ok(Fenced::LeaseLost)
    }
}

/// Success: deletes the job (fenced) and stores the result through
/// `learning_worker_update_completed`, in one transaction.
pub async fn complete(
    pool: &PgPool,
    lease: LeaseRef,
    submission_id: Uuid,
    text_body: &str,
    feedback_md: &str,
    analysis_json: &Value,
) -> Result<Fenced, sqlx::Error> {
    within(async move {
        let mut tx = pool.begin().await?;
        let deleted = delete_fenced(&mut tx, lease).await?;
        if deleted {
            update_completed(
                &mut tx,
                submission_id,
                text_body,
                feedback_md,
                analysis_json,
            )
            .await?;
        }
        finish(tx, deleted).await
    })
    .await
}

async fn delete_fenced(
    tx: &mut Transaction<'_, Postgres>,
    lease: LeaseRef,
) -> Result<bool, sqlx::Error> {
    let deleted = sqlx::query("delete from public.learning_submission_jobs where id = $1 and lease_key = $2 and status = 'leased'")
        .bind(lease.job_id)
        .bind(lease.lease_key)
        .execute(&mut **tx)
        .await?;
    Ok(deleted.rows_affected() == 1)
}

/// A vision result to keep in the payload so a feedback retry does not redo vision.
#[derive(Debug, Clone, PartialEq)]
pub struct VisionCache {
    /// The extracted text.
    pub text_md: String,
    /// Adapter metadata.
    pub raw_metadata: Value,
}

/// Transient error: requeues the job after `delay` with `retry_count + 1` (fenced), optionally
/// caching the vision result, and records the attempt with `learning_worker_mark_retry`.
pub async fn retry(
    pool: &PgPool,
    lease: LeaseRef,
    submission_id: Uuid,
    phase: Phase,
    message: &str,
    delay: Duration,
    cache: Option<&VisionCache>,
) -> Result<Fenced, sqlx::Error> {
    within(async move {
        let mut tx = pool.begin().await?;
        let requeued = sqlx::query(
            r#"
            update public.learning_submission_jobs
               set status = 'queued',
                   retry_count = retry_count + 1,
                   visible_at = now() + make_interval(secs => $3),
                   lease_key = null,
                   leased_until = null,
                   updated_at = now(),
                   payload = case when $4::text is null or jsonb_typeof(payload) <> 'object' then payload
                                  else payload || jsonb_build_object('cached_text_md', $4::text, 'cached_raw_metadata', $5::jsonb) end
             where id = $1 and lease_key = $2 and status = 'leased'
            "#,
        )
        .bind(lease.job_id)
        .bind(lease.lease_key)
        .bind(seconds(delay))
        .bind(cache.map(|c| c.text_md.as_str()))
        .bind(cache.map(|c| &c.raw_metadata))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if requeued {
            mark_retry(&mut tx, submission_id, phase, message).await?;
        }
        finish(tx, requeued).await
    })
    .await
}

/// Permanent error (or retries used up): marks the job `failed` with `code` (fenced) and the
/// submission through `learning_worker_update_failed`.
pub async fn fail(
    pool: &PgPool,
    lease: LeaseRef,
    submission_id: Uuid,
    code: ErrorCode,
    message: &str,
) -> Result<Fenced, sqlx::Error> {
    within(async move {
        let mut tx = pool.begin().await?;
        let failed = sqlx::query(
            r#"
            update public.learning_submission_jobs
               set status = 'failed', error_code = $3, lease_key = null, leased_until = null, updated_at = now()
             where id = $1 and lease_key = $2 and status = 'leased'
            "#,
        )
        .bind(lease.job_id)
        .bind(lease.lease_key)
        .bind(code.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if failed {
            update_failed(&mut tx, submission_id, code.as_str(), message).await?;
        }
        finish(tx, failed).await
    })
    .await
}

/// Nothing to do for this job (submission already completed or failed): deletes it (fenced).
pub async fn discard(pool: &PgPool, lease: LeaseRef) -> Result<Fenced, sqlx::Error> {
    within(async move {
        let mut tx = pool.begin().await?;
        let deleted = delete_fenced(&mut tx, lease).await?;
        finish(tx, deleted).await
    })
    .await
}

/// GUSTAV's `learning_worker_update_completed`: stores text, feedback and analysis and marks
/// the submission `completed`.
pub async fn update_completed(
    conn: &mut PgConnection,
    submission_id: Uuid,
    text_body: &str,
    feedback_md: &str,
    analysis_json: &Value,
) -> Result<(), sqlx::Error> {
    within(async move {
        sqlx::query("select public.learning_worker_update_completed($1, $2, $3, $4::jsonb)")
            .bind(submission_id)
            .bind(text_body)
            .bind(feedback_md)
            .bind(analysis_json)
            .execute(conn)
            .await
            .map(drop)
    })
    .await
}

/// GUSTAV's `learning_worker_update_failed`: marks the submission `failed` with `code`.
pub async fn update_failed(
    conn: &mut PgConnection,
    submission_id: Uuid,
    code: &str,
    message: &str,
) -> Result<(), sqlx::Error> {
    within(async move {
        sqlx::query("select public.learning_worker_update_failed($1, $2, $3)")
            .bind(submission_id)
            .bind(code)
            .bind(message)
            .execute(conn)
            .await
            .map(drop)
    })
    .await
}

/// GUSTAV's `learning_worker_mark_retry`: records a failed attempt of `phase` on the
/// submission.
pub async fn mark_retry(
    conn: &mut PgConnection,
    submission_id: Uuid,
    phase: Phase,
    message: &str,
) -> Result<(), sqlx::Error> {
    within(async move {
        sqlx::query("select public.learning_worker_mark_retry($1, $2, $3, now())")
            .bind(submission_id)
            .bind(phase.as_str())
            .bind(message)
            .execute(conn)
            .await
            .map(drop)
    })
    .await
}

/// The end a finishing transaction meant to record, to be looked up when its commit was never
/// acknowledged (the connection broke after `COMMIT` was sent).
#[derive(Debug, Clone, PartialEq)]
pub enum IntendedEnd<'a> {
    /// `complete`: job deleted, submission `completed` with this feedback.
    Completed {
        /// The feedback that was stored.
        feedback_md: &'a str,
    },
    /// `fail`: job `failed` with this code, submission `failed`.
    Failed {
        /// The job's and the submission's error code.
        code: &'a str,
    },
    /// `retry`: job queued again with this retry count.
    Requeued {
        /// `retry_count` after the retry.
        retry_count: i32,
    },
    /// `discard`: job deleted.
    Discarded,
}

/// Whether the database shows `intended` as recorded for this job — read as the student, so
/// row-level security lets the submission through. Used only after a finish whose outcome is
/// unknown found its lease gone: then the job is gone because this runner's own commit went
/// through, not because another runner took it.
pub async fn end_is_recorded(
    pool: &PgPool,
    lease: LeaseRef,
    submission_id: Uuid,
    student_sub: &str,
    intended: &IntendedEnd<'_>,
) -> Result<bool, sqlx::Error> {
    within(async move {
        let mut tx = pool.begin().await?;
        sqlx::query("select set_config('app.current_sub', $1, true)")
            .bind(student_sub)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(
            r#"
            select j.status as job_status, j.retry_count, j.lease_key, j.error_code as job_code,
                   s.analysis_status, s.feedback_md, s.error_code as submission_code
              from (select 1) as one
              left join public.learning_submission_jobs as j on j.id = $1
              left join public.learning_submissions as s on s.id = $2
            "#,
        )
        .bind(lease.job_id)
        .bind(submission_id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        let job_status: Option<String> = row.try_get("job_status")?;
        let analysis: Option<String> = row.try_get("analysis_status")?;
        Ok(match intended {
            IntendedEnd::Completed { feedback_md } => {
                job_status.is_none()
                    && analysis.as_deref() == Some("completed")
                    && row.try_get::<Option<String>, _>("feedback_md")?.as_deref()
                        == Some(*feedback_md)
            }
            IntendedEnd::Failed { code } => {
                job_status.as_deref() == Some("failed")
                    && row.try_get::<Option<String>, _>("job_code")?.as_deref() == Some(*code)
                    && analysis.as_deref() == Some("failed")
                    && row
                        .try_get::<Option<String>, _>("submission_code")?
                        .as_deref()
                        == Some(*code)
            }
            IntendedEnd::Requeued { retry_count } => {
                job_status.as_deref() == Some("queued")
                    && row.try_get::<Option<i32>, _>("retry_count")? == Some(*retry_count)
                    && row.try_get::<Option<Uuid>, _>("lease_key")?.is_none()
            }
            IntendedEnd::Discarded => job_status.is_none(),
        })
    })
    .await
}
