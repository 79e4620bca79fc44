//! The fenced ends of a job — complete, retry, fail, discard — each in one short transaction
//! with the GUSTAV update function it calls.

use std::time::Duration;

use serde_json::Value;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
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
