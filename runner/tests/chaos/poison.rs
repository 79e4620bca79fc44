//! A runner SIGKILLed three times while it holds four jobs, one of which is the "poison" (the
//! job whose run kills the runner): the first death hits all four — beside each other nobody
//! can tell which one did it — so all four become suspects and run alone; the poison is
//! killed twice more while alone and fails with `lease_takeovers`; the innocent three
//! complete.

use std::time::{Duration, Instant};

use learning_tests::fixtures::{self, NewSubmission};
use learning_tests::TestDb;

use crate::invariant::{assert_exactly_once, assert_ready, install_audit, settle};
use crate::runners::start;

/// A 1 s lease with a heartbeat every 0.5 s; every model call takes 2 s.
const RUNNER: &[(&str, &str)] = &[
    ("WORKER_CONCURRENCY", "4"),
    ("WORKER_LEASE_SECONDS", "0.5"),
    ("WORKER_LEASE_MULTIPLIER", "2"),
    ("AI_STUB_DELAY_MS", "2000"),
    ("LOG_LEVEL", "warn"),
];

/// The lease under which the poison runs alone right now (its lease row is marked so).
async fn lease_running_alone(db: &TestDb, job: uuid::Uuid) -> Option<uuid::Uuid> {
    sqlx::query_scalar(
        "select lease_key from learning_submission_jobs where id = $1 and status = 'leased' and payload ->> 'lease_solo' = lease_key::text",
    )
    .bind(job)
    .fetch_optional(&db.admin)
    .await
    .unwrap()
}

async fn wait_for(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_killed_three_times_by_one_poison_job_fails_only_the_poison() {
    let db = TestDb::new().await;
    install_audit(&db).await;
    let (poison, poison_job) = fixtures::enqueue(&db.admin, &NewSubmission::image("poison")).await;
    let mut innocent = Vec::new();
    for i in 0..3 {
        innocent.push(
            fixtures::enqueue(&db.admin, &NewSubmission::image(&format!("s{i}")))
                .await
                .0,
        );
    }

    // Death 1: while it holds all four, side by side.
    let mut runner = start(&db, RUNNER);
    wait_for(
        "the runner leases all four jobs",
        Duration::from_secs(20),
        async || fixtures::job_count(&db.admin, "leased").await == 4,
    )
    .await;
    runner.kill();

    // Deaths 2 and 3: whenever the poison runs (now alone, as a suspect) under a new lease.
    let mut killed_under = None;
    for death in 2..=3 {
        runner = start(&db, RUNNER);
        let what = format!("the poison to run alone before death {death}");
        wait_for(&what, Duration::from_secs(60), async || {
            let alone = lease_running_alone(&db, poison_job).await;
            alone.is_some() && alone != killed_under
        })
        .await;
        killed_under = lease_running_alone(&db, poison_job).await;
        runner.kill();
    }

    runner = start(&db, RUNNER);
    // A lease of 1 s and a heartbeat of 0.5 s; a killed runner's leases are taken over at
    // the next runner's first lease statement.
    settle(&db, Duration::from_secs(120), Duration::from_secs(15)).await;
    let (completed, failed) = assert_exactly_once(&db, 4).await;
    assert_eq!((completed, failed), (3, 1));
    for sub in innocent {
        assert_eq!(
            fixtures::submission(&db.admin, sub).await.status,
            "completed"
        );
    }
    let p = fixtures::submission(&db.admin, poison).await;
    assert_eq!(
        (p.status.as_str(), p.error_code.as_deref()),
        ("failed", Some("vision_failed"))
    );
    let message = p.vision_last_error.unwrap_or_default();
    assert!(
        message.contains("died 2 times while processing this submission alone"),
        "{message}"
    );
    assert_ready(&mut runner.process);
    let totals = runner.stop();
    assert_eq!(
        totals["failed"], 1,
        "the last runner failed the poison: {totals:?}"
    );
}
