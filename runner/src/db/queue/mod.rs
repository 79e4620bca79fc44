//! Every SQL statement the runner sends, in one place (design convention 10): `lease`
//! (taking, holding and giving back jobs, reading their submission), `finish` (the fenced
//! ends of a job and GUSTAV's update functions) and `inspect` (queue depth, the health probe,
//! schema and role checks).
//!
//! Leasing is one statement (CTE + `for update skip locked`, committed at once). Every finish —
//! complete, retry, fail, skip, release — runs in one short transaction and is **fenced** by the
//! job's `lease_key`: a runner whose lease was taken over changes nothing and learns
//! [`Fenced::LeaseLost`]. No transaction is ever open while a model runs.

mod finish;
mod inspect;
mod lease;

pub use finish::*;
pub use inspect::*;
pub use lease::*;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

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
    /// When the web app enqueued the job (the hand-in), by the database's clock.
    pub enqueued_at: DateTime<Utc>,
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

impl Fenced {
    /// From the rows a statement fenced by one lease changed: one, or none.
    fn from_rows(rows: u64) -> Fenced {
        if rows == 1 {
            Fenced::Applied
        } else {
            Fenced::LeaseLost
        }
    }
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

/// The client-side deadline of one database call, beyond the server's `statement_timeout`
/// (30 s) and `lock_timeout` (10 s): those fire first on a live connection; this one catches
/// the connection that no longer answers at all (half-open after a failover, a stalled
/// network). The call's connection is then checked with a deadline before the pool takes it
/// back, and closed when it does not answer ([`crate::db::abandoned`]).
pub const CALL_DEADLINE: Duration = Duration::from_secs(45);

/// Runs one database call under [`CALL_DEADLINE`]; past it, an I/O `TimedOut` error.
async fn within<T>(
    call: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    match tokio::time::timeout(CALL_DEADLINE, call).await {
        Ok(result) => result,
        Err(_) => Err(crate::db::abandoned::abandoned_call_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_call_that_never_answers_ends_at_the_deadline() {
        let started = tokio::time::Instant::now();
        let err = within(std::future::pending::<Result<(), sqlx::Error>>())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, sqlx::Error::Io(e) if e.kind() == std::io::ErrorKind::TimedOut),
            "{err}"
        );
        assert_eq!(started.elapsed(), CALL_DEADLINE);
        assert_eq!(within(async { Ok(7) }).await.unwrap(), 7);
    }
}
