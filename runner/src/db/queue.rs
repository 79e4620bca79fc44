//! Every SQL statement the runner sends, in one place (design convention 10).
//!
//! Leasing is one statement (CTE + `for update skip locked`, committed at once). Every finish —
//! complete, retry, fail, skip, release — runs in one short transaction and is **fenced** by the
//! job's `lease_key`: a runner whose lease was taken over changes nothing and learns
//! [`Fenced::LeaseLost`]. No transaction is ever open while a model runs.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use crate::job::error_code::{ErrorCode, Phase};

/// The channel our notify trigger uses (migration `..._job_notify.sql`).
pub const NOTIFY_CHANNEL: &str = "learning_jobs";

/// A job this runner holds.
#[derive(Debug, Clone, PartialEq)]
pub struct LeasedJob {
    /// Job id.
    pub id: Uuid,
    /// The submission (authoritative over the payload's copy).
    pub submission_id: Uuid,
    /// The raw payload (may be malformed; parsed later).
    pub payload: Value,
    /// Retries so far.
    pub retry_count: i32,
    /// Our fencing token.
    pub lease_key: Uuid,
    /// When the lease ends unless extended.
    pub leased_until: DateTime<Utc>,
}

/// A job id with the lease key that proves ownership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseRef {
    /// Job id.
    pub job_id: Uuid,
    /// Fencing token.
    pub lease_key: Uuid,
}

impl LeasedJob {
    /// The fencing reference of this job.
    pub fn lease_ref(&self) -> LeaseRef {
        LeaseRef {
            job_id: self.id,
            lease_key: self.lease_key,
        }
    }
}

/// Whether a fenced statement found the lease still ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fenced {
    /// The change was made.
    Applied,
    /// Another runner holds the job now (or it is gone); nothing was changed.
    LeaseLost,
}

/// The submission columns the runner reads.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmissionRow {
    /// Submission id.
    pub id: Uuid,
    /// The course, as text.
    pub course_id: String,
    /// The task, as text.
    pub task_id: String,
    /// The student's identity (PII: never log it).
    pub student_sub: String,
    /// `text`, `image`, `file` (or anything a corrupt row holds).
    pub kind: String,
    /// The typed text (PII).
    pub text_body: Option<String>,
    /// Storage key (sensitive).
    pub storage_key: Option<String>,
    /// MIME type.
    pub mime_type: Option<String>,
    /// Size in bytes.
    pub size_bytes: Option<i32>,
    /// SHA-256, lower-case hex.
    pub sha256: Option<String>,
    /// `pending`, `extracted`, `completed`, `failed`.
    pub analysis_status: String,
    /// Adapter hints such as `page_keys`.
    pub internal_metadata: Value,
}

/// Queue counts for metrics and status.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct QueueDepth {
    /// Queued and visible now.
    pub visible: i64,
    /// Queued, visible later (retry backoff).
    pub delayed: i64,
    /// Leased.
    pub leased: i64,
    /// Failed for good.
    pub failed: i64,
    /// Age of the oldest visible queued job, in seconds (0 when none).
    pub oldest_visible_age_seconds: f64,
}

/// One row of `learning_worker_health_probe()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeCheck {
    /// `db_role`, `queue_visibility`.
    pub check: String,
    /// `ok` or `failed`.
    pub status: String,
    /// Detail text.
    pub detail: String,
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The lease statement's candidate selection (`$1` = the limit), shared with the benchmark so
/// that what `make bench` measures is exactly what the runner sends.
macro_rules! lease_candidates_cte {
    () => {
        r#"
        with queued as (
            select id, visible_at, created_at
              from public.learning_submission_jobs
             where status = 'queued' and visible_at <= now()
             order by visible_at, created_at
             limit $1
               for update skip locked
        ), expired as (
            select id, visible_at, created_at
              from public.learning_submission_jobs
             where status = 'leased' and leased_until <= now()
             order by visible_at, created_at
             limit $1
               for update skip locked
        ), candidates as (
            select id
              from (select * from queued union all select * from expired) as c
             order by visible_at, created_at
             limit $1
        )
        "#
    };
}

/// The candidate selection of [`lease_jobs`] as a `WITH` clause ending in the `candidates` CTE.
pub const LEASE_CANDIDATES_CTE: &str = lease_candidates_cte!();

/// Leases up to `limit` jobs that are visible now, or whose lease has expired, oldest first.
///
/// One statement. The two kinds of candidates are picked in two index-friendly CTEs rather
/// than one `OR` condition: with the `OR`, PostgreSQL scans and sorts the whole backlog on
/// every lease (O(backlog)); split, each side walks the `(status, visible_at)` index and stops
/// after `limit` rows. Rows locked by one side but not picked are released when the statement
/// commits.
pub async fn lease_jobs(
    pool: &PgPool,
    limit: i64,
    lease: Duration,
) -> Result<Vec<LeasedJob>, sqlx::Error> {
    let rows = sqlx::query(concat!(
        lease_candidates_cte!(),
        r#"
        update public.learning_submission_jobs as j
           set status = 'leased',
               lease_key = gen_random_uuid(),
               leased_until = now() + make_interval(secs => $2),
               updated_at = now(),
               -- a lease that expired in someone's hands: count the takeover (poison-job guard)
               payload = case
                   when j.status = 'leased' and jsonb_typeof(j.payload) = 'object' then
                       jsonb_set(j.payload, '{lease_takeovers}', to_jsonb(1 + case
                           when jsonb_typeof(j.payload -> 'lease_takeovers') = 'number'
                           then least(greatest((j.payload ->> 'lease_takeovers')::numeric, 0), 1000)::int
                           else 0 end))
                   else j.payload end
          from candidates
         where j.id = candidates.id
        returning j.id, j.submission_id, j.payload, j.retry_count, j.lease_key, j.leased_until, j.visible_at, j.created_at
        "#
    ))
    .bind(limit)
    .bind(seconds(lease))
    .fetch_all(pool)
    .await?;

    let mut jobs: Vec<(DateTime<Utc>, DateTime<Utc>, LeasedJob)> = rows
        .into_iter()
        .map(|r| {
            Ok((
                r.try_get("visible_at")?,
                r.try_get("created_at")?,
                LeasedJob {
                    id: r.try_get("id")?,
                    submission_id: r.try_get("submission_id")?,
                    payload: r.try_get("payload")?,
                    retry_count: r.try_get("retry_count")?,
                    lease_key: r.try_get("lease_key")?,
                    leased_until: r.try_get("leased_until")?,
                },
            ))
        })
        .collect::<Result<_, sqlx::Error>>()?;
    jobs.sort_by_key(|(visible_at, created_at, _)| (*visible_at, *created_at));
    Ok(jobs.into_iter().map(|(_, _, job)| job).collect())
}

/// Extends the leases still held; returns the ones that were extended (the rest are lost).
pub async fn extend_leases(
    pool: &PgPool,
    leases: &[LeaseRef],
    lease: Duration,
) -> Result<Vec<LeaseRef>, sqlx::Error> {
    if leases.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = leases.iter().map(|l| l.job_id).collect();
    let keys: Vec<Uuid> = leases.iter().map(|l| l.lease_key).collect();
    let rows = sqlx::query(
        r#"
        update public.learning_submission_jobs as j
           set leased_until = now() + make_interval(secs => $3), updated_at = now()
          from unnest($1::uuid[], $2::uuid[]) as held(id, lease_key)
         where j.id = held.id and j.lease_key = held.lease_key and j.status = 'leased'
        returning j.id, j.lease_key
        "#,
    )
    .bind(&ids)
    .bind(&keys)
    .bind(seconds(lease))
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(LeaseRef {
                job_id: r.try_get("id")?,
                lease_key: r.try_get("lease_key")?,
            })
        })
        .collect()
}

/// Reads a submission as the student (`app.current_sub` set transaction-locally, so RLS lets
/// exactly that student's rows through). `None` when the row is not visible.
pub async fn read_submission(
    pool: &PgPool,
    student_sub: &str,
    submission_id: Uuid,
) -> Result<Option<SubmissionRow>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("select set_config('app.current_sub', $1, true)")
        .bind(student_sub)
        .execute(&mut *tx)
        .await?;
    let row = sqlx::query(
        r#"
        select id, course_id::text as course_id, task_id::text as task_id, student_sub,
               kind, text_body, storage_key, mime_type, size_bytes, sha256, analysis_status,
               internal_metadata
          from public.learning_submissions
         where id = $1
        "#,
    )
    .bind(submission_id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    row.map(|r| {
        Ok(SubmissionRow {
            id: r.try_get("id")?,
            course_id: r.try_get("course_id")?,
            task_id: r.try_get("task_id")?,
            student_sub: r.try_get("student_sub")?,
            kind: r.try_get("kind")?,
            text_body: r.try_get("text_body")?,
            storage_key: r.try_get("storage_key")?,
            mime_type: r.try_get("mime_type")?,
            size_bytes: r.try_get("size_bytes")?,
            sha256: r.try_get("sha256")?,
            analysis_status: r.try_get("analysis_status")?,
            internal_metadata: r.try_get("internal_metadata")?,
        })
    })
    .transpose()
}

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
    let mut tx = pool.begin().await?;
    let deleted = delete_fenced(&mut tx, lease).await?;
    if deleted {
        sqlx::query("select public.learning_worker_update_completed($1, $2, $3, $4::jsonb)")
            .bind(submission_id)
            .bind(text_body)
            .bind(feedback_md)
            .bind(analysis_json)
            .execute(&mut *tx)
            .await?;
    }
    finish(tx, deleted).await
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
        sqlx::query("select public.learning_worker_mark_retry($1, $2, $3, now())")
            .bind(submission_id)
            .bind(phase.as_str())
            .bind(message)
            .execute(&mut *tx)
            .await?;
    }
    finish(tx, requeued).await
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
        sqlx::query("select public.learning_worker_update_failed($1, $2, $3)")
            .bind(submission_id)
            .bind(code.as_str())
            .bind(message)
            .execute(&mut *tx)
            .await?;
    }
    finish(tx, failed).await
}

/// Nothing to do for this job (submission already completed or failed): deletes it (fenced).
pub async fn discard(pool: &PgPool, lease: LeaseRef) -> Result<Fenced, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let deleted = delete_fenced(&mut tx, lease).await?;
    finish(tx, deleted).await
}

/// Drain: gives the listed jobs back to the queue at once (lease cleared, `retry_count` and
/// `visible_at` unchanged). Returns how many were released.
pub async fn release(pool: &PgPool, leases: &[LeaseRef]) -> Result<u64, sqlx::Error> {
    if leases.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = leases.iter().map(|l| l.job_id).collect();
    let keys: Vec<Uuid> = leases.iter().map(|l| l.lease_key).collect();
    let done = sqlx::query(
        r#"
        update public.learning_submission_jobs as j
           set status = 'queued', lease_key = null, leased_until = null, updated_at = now()
          from unnest($1::uuid[], $2::uuid[]) as held(id, lease_key)
         where j.id = held.id and j.lease_key = held.lease_key and j.status = 'leased'
        "#,
    )
    .bind(&ids)
    .bind(&keys)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Counts of the queue by state, and the age of the oldest visible job.
pub async fn queue_depth(pool: &PgPool) -> Result<QueueDepth, sqlx::Error> {
    let r = sqlx::query(
        r#"
        select count(*) filter (where status = 'queued' and visible_at <= now()) as visible,
               count(*) filter (where status = 'queued' and visible_at > now())  as delayed,
               count(*) filter (where status = 'leased')                         as leased,
               count(*) filter (where status = 'failed')                         as failed,
               coalesce(extract(epoch from now() - min(visible_at) filter (where status = 'queued' and visible_at <= now())), 0)::float8 as oldest
          from public.learning_submission_jobs
        "#,
    )
    .fetch_one(pool)
    .await?;
    Ok(QueueDepth {
        visible: r.try_get("visible")?,
        delayed: r.try_get("delayed")?,
        leased: r.try_get("leased")?,
        failed: r.try_get("failed")?,
        oldest_visible_age_seconds: r.try_get("oldest")?,
    })
}

/// Jobs that are still to be processed (queued at any time, or leased).
pub async fn unfinished_jobs(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "select count(*) from public.learning_submission_jobs where status in ('queued', 'leased')",
    )
    .fetch_one(pool)
    .await
}

/// The role the pool logs in as, and the rows of `learning_worker_health_probe()`.
pub async fn health_probe(pool: &PgPool) -> Result<(String, Vec<ProbeCheck>), sqlx::Error> {
    let role: String = sqlx::query_scalar("select current_user::text")
        .fetch_one(pool)
        .await?;
    let rows =
        sqlx::query("select check_name, status, detail from public.learning_worker_health_probe()")
            .fetch_all(pool)
            .await?;
    let checks = rows
        .into_iter()
        .map(|r| {
            Ok(ProbeCheck {
                check: r
                    .try_get::<Option<String>, _>("check_name")?
                    .unwrap_or_default(),
                status: r
                    .try_get::<Option<String>, _>("status")?
                    .unwrap_or_default(),
                detail: r
                    .try_get::<Option<String>, _>("detail")?
                    .unwrap_or_default(),
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok((role, checks))
}

/// Whether the queue table and the three update functions exist and the login role may use
/// them (readiness): SELECT on submissions, SELECT/UPDATE/DELETE on jobs, EXECUTE on the
/// functions. A missing grant would otherwise fail every finish while the runner looked ready.
pub async fn schema_present(pool: &PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        r#"
        select case
            when to_regclass('public.learning_submission_jobs') is null
              or to_regclass('public.learning_submissions') is null
              or to_regprocedure('public.learning_worker_update_completed(uuid,text,text,jsonb)') is null
              or to_regprocedure('public.learning_worker_update_failed(uuid,text,text)') is null
              or to_regprocedure('public.learning_worker_mark_retry(uuid,text,text,timestamptz)') is null
            then false
            else has_table_privilege('public.learning_submissions', 'select')
             and has_table_privilege('public.learning_submission_jobs', 'select')
             and has_table_privilege('public.learning_submission_jobs', 'update')
             and has_table_privilege('public.learning_submission_jobs', 'delete')
             and has_function_privilege('public.learning_worker_update_completed(uuid,text,text,jsonb)', 'execute')
             and has_function_privilege('public.learning_worker_update_failed(uuid,text,text)', 'execute')
             and has_function_privilege('public.learning_worker_mark_retry(uuid,text,text,timestamptz)', 'execute')
            end
        "#,
    )
    .fetch_one(pool)
    .await
}

/// Like [`role_bypasses_rls`], on one connection.
pub async fn role_bypasses_rls_on(conn: &mut sqlx::PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("select rolsuper or rolbypassrls from pg_roles where rolname = current_user")
        .fetch_one(conn)
        .await
}

/// Whether the login role bypasses row-level security (superuser or BYPASSRLS).
pub async fn role_bypasses_rls(pool: &PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("select rolsuper or rolbypassrls from pg_roles where rolname = current_user")
        .fetch_one(pool)
        .await
}
