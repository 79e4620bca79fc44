//! The check every scenario ends with, and the audit trail it reads: a trigger records every
//! write that puts a submission into a final state, so a submission completed (or failed)
//! twice shows as two rows even when the second write changed nothing visible.

use std::time::{Duration, Instant};

use learning_tests::TestDb;

use crate::common::process::{http_get, RunnerProcess};

/// Installs the audit trigger on the scenario's database (as the superuser).
pub async fn install_audit(db: &TestDb) {
    for statement in [
        "create table chaos_final_writes (submission_id uuid not null, status text not null, at timestamptz not null default clock_timestamp())",
        "create function chaos_record_final_write() returns trigger language plpgsql security definer as $$
         begin
             insert into chaos_final_writes (submission_id, status) values (new.id, new.analysis_status);
             return new;
         end $$",
        "create trigger chaos_final_write after update on public.learning_submissions for each row
         when (new.analysis_status in ('completed', 'failed')) execute function chaos_record_final_write()",
    ] {
        sqlx::query(statement).execute(&db.admin).await.unwrap();
    }
}

/// How many jobs are still queued or leased; `None` while the database does not answer.
pub async fn unfinished(db: &TestDb) -> Option<i64> {
    sqlx::query_scalar(
        "select count(*) from learning_submission_jobs where status in ('queued', 'leased')",
    )
    .fetch_one(&db.admin)
    .await
    .ok()
}

/// How many submissions are completed; 0 while the database does not answer.
pub async fn completed(db: &TestDb) -> i64 {
    sqlx::query_scalar(
        "select count(*) from learning_submissions where analysis_status = 'completed'",
    )
    .fetch_one(&db.admin)
    .await
    .unwrap_or(0)
}

/// The default lease (45 s × 4) plus one heartbeat interval (45 s): with default settings no
/// lease may stay past its end longer than this.
pub const DEFAULT_LEASE_AND_BEAT: Duration = Duration::from_secs(225);

/// How many leased jobs are past their lease end by more than `grace`; `None` while the
/// database does not answer.
pub async fn overdue(db: &TestDb, grace: Duration) -> Option<i64> {
    sqlx::query_scalar(
        "select count(*) from learning_submission_jobs where status = 'leased' and leased_until < now() - make_interval(secs => $1)",
    )
    .bind(grace.as_secs_f64())
    .fetch_one(&db.admin)
    .await
    .ok()
}

/// Waits until no job is queued or leased (every one completed or failed), at most `limit`;
/// meanwhile no lease may stay past its end by more than `grace` (the lease is either
/// extended by its holder or taken over by another runner).
pub async fn settle(db: &TestDb, limit: Duration, grace: Duration) {
    let started = Instant::now();
    loop {
        let left = unfinished(db).await;
        if left == Some(0) {
            return;
        }
        let late = overdue(db, grace).await.unwrap_or(0);
        assert_eq!(
            late, 0,
            "leases left {grace:?} past their end with nobody taking them over"
        );
        assert!(
            started.elapsed() < limit,
            "{left:?} jobs still queued or leased after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The end of every scenario: `expected` submissions, each completed or failed by exactly
/// one final write, no job queued or leased. Returns (completed, failed).
pub async fn assert_exactly_once(db: &TestDb, expected: i64) -> (i64, i64) {
    let (total, open): (i64, i64) = sqlx::query_as(
        "select count(*), count(*) filter (where analysis_status not in ('completed', 'failed')) from learning_submissions",
    )
    .fetch_one(&db.admin)
    .await
    .unwrap();
    assert_eq!(total, expected, "submissions in the database");
    assert_eq!(
        open, 0,
        "submissions neither completed nor failed (lost jobs)"
    );
    let twice: Vec<(uuid::Uuid, i64)> = sqlx::query_as(
        "select submission_id, count(*) from chaos_final_writes group by submission_id having count(*) > 1",
    )
    .fetch_all(&db.admin)
    .await
    .unwrap();
    assert!(
        twice.is_empty(),
        "submissions finished more than once: {twice:?}"
    );
    let writes: i64 = sqlx::query_scalar("select count(*) from chaos_final_writes")
        .fetch_one(&db.admin)
        .await
        .unwrap();
    assert_eq!(writes, expected, "one final write per submission");
    assert_eq!(unfinished(db).await, Some(0), "jobs left queued or leased");
    let counts: (i64, i64) = sqlx::query_as(
        "select count(*) filter (where analysis_status = 'completed'), count(*) filter (where analysis_status = 'failed') from learning_submissions",
    )
    .fetch_one(&db.admin)
    .await
    .unwrap();
    println!(
        "invariant holds: {} completed, {} failed, each exactly once",
        counts.0, counts.1
    );
    counts
}

/// The runner is alive and ready (`/readyz` answers 200).
pub fn assert_ready(runner: &mut RunnerProcess) {
    assert!(
        runner.child.try_wait().unwrap().is_none(),
        "the runner is still running"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = http_get(&runner.http, "/readyz", None).map(|r| r.status);
        if matches!(status, Ok(200)) {
            return;
        }
        assert!(Instant::now() < deadline, "/readyz answers {status:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
