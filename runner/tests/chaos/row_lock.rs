//! A submission row locked by another session (the web app, a teacher's edit, a migration)
//! for longer than the lease, while the same runner holds other jobs: the heartbeat never
//! waits for the lock, so the other jobs keep their leases and complete; the locked job
//! completes once the lock is gone.

use std::time::{Duration, Instant};

use learning_tests::fixtures::{self, NewSubmission};
use learning_tests::TestDb;

use crate::invariant::{assert_exactly_once, assert_ready, install_audit, settle};
use crate::runners::{start, total};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_locked_past_the_lease_stalls_only_its_own_job() {
    let db = TestDb::new().await;
    install_audit(&db).await;
    let mut subs = Vec::new();
    for i in 0..4 {
        subs.push(
            fixtures::enqueue(&db.admin, &NewSubmission::text(&format!("s{i}"), "Text"))
                .await
                .0,
        );
    }
    let locked = subs[0];
    let mut runner = start(
        &db,
        &[
            ("WORKER_CONCURRENCY", "4"),
            ("WORKER_LEASE_SECONDS", "0.5"),
            ("WORKER_LEASE_MULTIPLIER", "2"),
            ("AI_STUB_DELAY_MS", "1500"),
        ],
    );
    let leasing = Instant::now();
    while fixtures::job_count(&db.admin, "leased").await < 4 {
        assert!(
            leasing.elapsed() < Duration::from_secs(20),
            "the runner leases all four"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A second runner stands by: the locked job's lease runs out, but its finish holds the job
    // row, so no runner may take it over.
    let standby = start(
        &db,
        &[
            ("WORKER_CONCURRENCY", "4"),
            ("WORKER_LEASE_SECONDS", "0.5"),
            ("WORKER_LEASE_MULTIPLIER", "2"),
        ],
    );
    // While the runner works on them, another session locks the first submission's row and
    // keeps it for 6 s: six times the lease (1 s, heartbeat every 0.5 s).
    let mut lock = db.admin.begin().await.unwrap();
    sqlx::query("select 1 from learning_submissions where id = $1 for update")
        .bind(locked)
        .execute(&mut *lock)
        .await
        .unwrap();
    let locked_at = Instant::now();
    // While the lock is held, the three other jobs complete.
    loop {
        let mut done = 0;
        for sub in &subs[1..] {
            if fixtures::submission(&db.admin, *sub).await.status == "completed" {
                done += 1;
            }
        }
        if done == 3 {
            break;
        }
        assert!(
            locked_at.elapsed() < Duration::from_secs(5),
            "only {done} of the three other jobs completed while the row was locked:\n{}",
            runner.tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        fixtures::submission(&db.admin, locked).await.status,
        "pending"
    );
    let remaining = Duration::from_secs(6).saturating_sub(locked_at.elapsed());
    tokio::time::sleep(remaining).await;
    lock.commit().await.unwrap();

    // The locked job's lease is not extended while its finish holds its row (busy), and not
    // taken over either: that lock keeps other runners off it.
    settle(&db, Duration::from_secs(60), Duration::from_secs(15)).await;
    let (completed, failed) = assert_exactly_once(&db, 4).await;
    assert_eq!((completed, failed), (4, 0));
    assert_ready(&mut runner.process);
    let totals = [runner.stop(), standby.stop()];
    println!("row lock: runner totals {totals:?}");
    assert_eq!(
        total(&totals, "completed"),
        4,
        "each job completed once, by its first holder"
    );
    assert_eq!(totals[0]["completed"], 4);
    assert_eq!(total(&totals, "lease_lost"), 0, "no lease was lost");
}
