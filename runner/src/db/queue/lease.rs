//! Taking jobs (one `for update skip locked` statement), extending and giving back leases,
//! and reading a job's submission as its student.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::{seconds, within, Fenced, LeaseRef, LeasedJob, SubmissionRow};

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
    within(async move {
        let rows = sqlx::query(concat!(
            lease_candidates_cte!(),
            r#"
            update public.learning_submission_jobs as j
               set status = 'leased',
                   lease_key = gen_random_uuid(),
                   leased_until = now() + make_interval(secs => $2),
                   updated_at = now(),
                   -- a lease that expired in someone's hands: count the takeover (poison-job
                   -- guard), and count it as a solo takeover when its holder ran the job alone
                   payload = case
                       when j.status = 'leased' and jsonb_typeof(j.payload) = 'object' then
                           j.payload || jsonb_build_object(
                               'lease_takeovers', 1 + case when jsonb_typeof(j.payload -> 'lease_takeovers') = 'number'
                                   then least(greatest((j.payload ->> 'lease_takeovers')::numeric, 0), 1000)::int else 0 end,
                               'lease_solo_takeovers', case when jsonb_typeof(j.payload -> 'lease_solo_takeovers') = 'number'
                                   then least(greatest((j.payload ->> 'lease_solo_takeovers')::numeric, 0), 1000)::int else 0 end
                                   + case when j.payload ->> 'lease_solo' = j.lease_key::text then 1 else 0 end)
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
                        enqueued_at: r.try_get("created_at")?,
                    },
                ))
            })
            .collect::<Result<_, sqlx::Error>>()?;
        jobs.sort_by_key(|(visible_at, created_at, _)| (*visible_at, *created_at));
        Ok(jobs.into_iter().map(|(_, _, job)| job).collect())
    })
    .await
}

/// What one heartbeat found for the leases it was given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseExtension {
    /// Extended.
    pub extended: Vec<LeaseRef>,
    /// Still ours, but the row is locked right now (by this runner's own finish of the job,
    /// which may be waiting on a lock of the web app): not extended, and not lost. The lock
    /// keeps any other runner from taking the job while it is held.
    pub busy: Vec<LeaseRef>,
}

/// Extends the leases still held, without ever waiting for a row lock: rows locked by a
/// finish in progress are skipped and reported [`LeaseExtension::busy`], so one slow finish
/// never holds up the heartbeat of every other job. A lease in neither list is gone (taken
/// over, or the job finished).
pub async fn extend_leases(
    pool: &PgPool,
    leases: &[LeaseRef],
    lease: Duration,
) -> Result<LeaseExtension, sqlx::Error> {
    within(async move {
        if leases.is_empty() {
            return Ok(LeaseExtension::default());
        }
        let ids: Vec<Uuid> = leases.iter().map(|l| l.job_id).collect();
        let keys: Vec<Uuid> = leases.iter().map(|l| l.lease_key).collect();
        let rows = sqlx::query(
            r#"
            with held as (
                select * from unnest($1::uuid[], $2::uuid[]) as h(id, lease_key)
            ), lockable as (
                select j.id
                  from public.learning_submission_jobs as j
                  join held on held.id = j.id and held.lease_key = j.lease_key
                 where j.status = 'leased'
                   for update of j skip locked
            ), extended as (
                update public.learning_submission_jobs as j
                   set leased_until = now() + make_interval(secs => $3), updated_at = now()
                  from lockable
                 where j.id = lockable.id
                returning j.id, j.lease_key
            )
            select held.id, held.lease_key,
                   exists (select 1 from extended
                            where extended.id = held.id
                              and extended.lease_key = held.lease_key) as extended,
                   exists (select 1 from public.learning_submission_jobs as j
                            where j.id = held.id and j.lease_key = held.lease_key
                              and j.status = 'leased') as still_ours
              from held
            "#,
        )
        .bind(&ids)
        .bind(&keys)
        .bind(seconds(lease))
        .fetch_all(pool)
        .await?;
        let mut found = LeaseExtension::default();
        for row in rows {
            let lease = LeaseRef {
                job_id: row.try_get("id")?,
                lease_key: row.try_get("lease_key")?,
            };
            if row.try_get::<bool, _>("extended")? {
                found.extended.push(lease);
            } else if row.try_get::<bool, _>("still_ours")? {
                found.busy.push(lease);
            }
        }
        Ok(found)
    })
    .await
}

/// Reads a submission as the student (`app.current_sub` set transaction-locally, so RLS lets
/// exactly that student's rows through). `None` when the row is not visible.
pub async fn read_submission(
    pool: &PgPool,
    student_sub: &str,
    submission_id: Uuid,
) -> Result<Option<SubmissionRow>, sqlx::Error> {
    within(async move {
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
    })
    .await
}

/// Marks that this runner now runs the job alone (a suspect, see the lease statement): if its
/// lease expires before the job ends, the takeover counts as a solo takeover.
pub async fn mark_solo(pool: &PgPool, lease: LeaseRef) -> Result<Fenced, sqlx::Error> {
    within(async move {
        let done = sqlx::query(
            r#"
            update public.learning_submission_jobs
               set payload = payload || jsonb_build_object('lease_solo', lease_key::text),
                   updated_at = now()
             where id = $1 and lease_key = $2 and status = 'leased'
               and jsonb_typeof(payload) = 'object'
            "#,
        )
        .bind(lease.job_id)
        .bind(lease.lease_key)
        .execute(pool)
        .await?;
        Ok(Fenced::from_rows(done.rows_affected()))
    })
    .await
}

/// Gives one job back to the queue after a database error kept this runner from finishing
/// it: visible again after `delay`, no takeover counted, `retry_count` raised by one only
/// when `count_retry` (the database refused the finish, which may not pass by itself).
pub async fn hand_back(
    pool: &PgPool,
    lease: LeaseRef,
    delay: Duration,
    count_retry: bool,
) -> Result<Fenced, sqlx::Error> {
    within(async move {
        let done = sqlx::query(
            r#"
            update public.learning_submission_jobs
               set status = 'queued', lease_key = null, leased_until = null,
                   visible_at = now() + make_interval(secs => $3), updated_at = now(),
                   retry_count = retry_count + case when $4 then 1 else 0 end
             where id = $1 and lease_key = $2 and status = 'leased'
            "#,
        )
        .bind(lease.job_id)
        .bind(lease.lease_key)
        .bind(seconds(delay))
        .bind(count_retry)
        .execute(pool)
        .await?;
        Ok(Fenced::from_rows(done.rows_affected()))
    })
    .await
}

/// Takes back the blame of a solo takeover that was no death: this runner ran the job alone
/// under `lease` and is alive, yet its lease expired (a database outage longer than the
/// lease) and another runner took the job over and counted a solo takeover. Fenced by the
/// solo mark, so it applies once, and only while that mark is still this lease's.
pub async fn absolve(pool: &PgPool, lease: LeaseRef) -> Result<bool, sqlx::Error> {
    within(async move {
        let done = sqlx::query(
            r#"
            update public.learning_submission_jobs
               set payload = (payload - 'lease_solo') || jsonb_build_object('lease_solo_takeovers',
                       greatest(case when jsonb_typeof(payload -> 'lease_solo_takeovers') = 'number'
                                then least((payload ->> 'lease_solo_takeovers')::numeric, 1000)::int else 0 end - 1, 0)),
                   updated_at = now()
             where id = $1 and payload ->> 'lease_solo' = $2::text
               and lease_key is distinct from $2
            "#,
        )
        .bind(lease.job_id)
        .bind(lease.lease_key)
        .execute(pool)
        .await?;
        Ok(done.rows_affected() == 1)
    })
    .await
}

/// Drain: gives the listed jobs back to the queue at once (lease cleared, `retry_count` and
/// `visible_at` unchanged). Returns how many were released.
pub async fn release(pool: &PgPool, leases: &[LeaseRef]) -> Result<u64, sqlx::Error> {
    within(async move {
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
    })
    .await
}
