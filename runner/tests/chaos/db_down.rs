//! PostgreSQL unreachable for 60 s in the middle of a run: the runners stay alive (`/livez`
//! keeps answering — an outage is not a hang), nothing fails for good, and everything
//! completes once the database is back.

use std::time::{Duration, Instant};

use learning_tests::fixtures;
use learning_tests::own_cluster::OwnCluster;
use learning_tests::TestDb;

use crate::common::process::http_get;
use crate::invariant::{
    assert_exactly_once, assert_ready, completed, install_audit, settle, DEFAULT_LEASE_AND_BEAT,
};
use crate::runners::{start, total};

const JOBS: i64 = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_away_for_a_minute_fails_nothing() {
    let cluster = OwnCluster::start();
    let db = TestDb::on(cluster.admin_url()).await;
    install_audit(&db).await;
    fixtures::enqueue_bulk_text(&db.admin, JOBS).await;
    let settings = [
        ("WORKER_CONCURRENCY", "4"),
        ("AI_STUB_DELAY_MS", "20"),
        ("LOG_LEVEL", "warn"),
    ];
    let mut runners = vec![start(&db, &settings), start(&db, &settings)];

    let started = Instant::now();
    while completed(&db).await < JOBS / 4 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no progress before the outage"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.halt();
    let down = Instant::now();
    println!("database down after {} of {JOBS} jobs", JOBS / 4);
    while down.elapsed() < Duration::from_secs(60) {
        for runner in &mut runners {
            assert!(
                runner.process.child.try_wait().unwrap().is_none(),
                "a runner died:\n{}",
                runner.tail()
            );
            let live = http_get(&runner.process.http, "/livez", None).map(|r| r.status);
            assert!(
                matches!(live, Ok(200)),
                "/livez during the outage: {live:?}"
            );
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    cluster.resume();

    settle(&db, Duration::from_secs(240), DEFAULT_LEASE_AND_BEAT).await;
    let (done, failed) = assert_exactly_once(&db, JOBS).await;
    assert_eq!((done, failed), (JOBS, 0), "nothing failed for good");
    for runner in &mut runners {
        assert_ready(&mut runner.process);
    }
    let totals: Vec<_> = runners.into_iter().map(|r| r.stop()).collect();
    println!("database down 60 s: runner totals {totals:?}");
    assert_eq!(
        total(&totals, "completed"),
        JOBS as u64,
        "each job counted completed once"
    );
}
