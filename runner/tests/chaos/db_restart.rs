//! PostgreSQL restarted (`pg_ctl restart -m fast`: every session terminated) in the middle of
//! 2,000 jobs worked by two runners with eight slots each: every job ends exactly once,
//! nothing fails, both runners are ready again.

use std::time::{Duration, Instant};

use learning_tests::fixtures;
use learning_tests::own_cluster::OwnCluster;
use learning_tests::TestDb;

use crate::invariant::{
    assert_exactly_once, assert_ready, completed, install_audit, settle, DEFAULT_LEASE_AND_BEAT,
};
use crate::runners::{start, total};

const JOBS: i64 = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_mid_run_loses_and_repeats_nothing() {
    let cluster = OwnCluster::start();
    let db = TestDb::on(cluster.admin_url()).await;
    install_audit(&db).await;
    fixtures::enqueue_bulk_text(&db.admin, JOBS).await;
    let settings = [("WORKER_CONCURRENCY", "8"), ("LOG_LEVEL", "warn")];
    let mut runners = vec![start(&db, &settings), start(&db, &settings)];

    let started = Instant::now();
    while completed(&db).await < JOBS / 5 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no progress before the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = completed(&db).await;
    cluster.restart();
    println!("database restarted after {before} of {JOBS} jobs");

    settle(&db, Duration::from_secs(300), DEFAULT_LEASE_AND_BEAT).await;
    let (done, failed) = assert_exactly_once(&db, JOBS).await;
    assert_eq!((done, failed), (JOBS, 0));
    for runner in &mut runners {
        assert_ready(&mut runner.process);
    }
    let totals: Vec<_> = runners.into_iter().map(|r| r.stop()).collect();
    println!("database restart: runner totals {totals:?}");
    assert_eq!(
        total(&totals, "completed"),
        JOBS as u64,
        "each job counted completed once"
    );
    assert_eq!(total(&totals, "failed"), 0);
}
