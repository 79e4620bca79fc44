//! A FAKE network path (the test crate's seeded [`ChaosProxy`]) between two runners and
//! PostgreSQL that drops connections (RST), stalls them half-open (no FIN, no RST: what a
//! peer that vanished after a failover looks like) and delays them, at random but
//! reproducibly: the seed is printed, and `CHAOS_SEED=<n>` replays a run. Every job still
//! ends exactly once and nothing fails for good.

use std::time::{Duration, Instant};

use learning_tests::chaos_proxy::{ChaosProxy, FaultPlan};
use learning_tests::fixtures;
use learning_tests::TestDb;

use crate::invariant::{assert_exactly_once, assert_ready, completed, install_audit, unfinished};
use crate::runners::{start, total};

const JOBS: i64 = 1_500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_stalled_and_delayed_connections_lose_and_repeat_nothing() {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_201);
    let db = TestDb::new().await;
    install_audit(&db).await;
    fixtures::enqueue_bulk_text(&db.admin, JOBS).await;
    let options = db.worker_options();
    let upstream = format!("{}:{}", options.get_host(), options.get_port())
        .parse()
        .expect("the test cluster listens on an IP address");
    // A quarter of the connections dropped and one in ten stalled, each within 2 s or
    // 128 KiB, so the runners' connections keep breaking and reconnecting.
    let plan = FaultPlan::chaotic(seed)
        .with_faults(0.25, 0.10, 0.20)
        .with_triggers(128 << 10, Duration::from_secs(2));
    println!("proxy faults: seed {seed}, plan {plan:?}");
    let proxy = ChaosProxy::start(upstream, plan).await;
    let dsn = db.worker_url().replace(
        &format!(":{}/", options.get_port()),
        &format!(":{}/", proxy.port()),
    );
    let settings = [
        ("LEARNING_DATABASE_URL", dsn.as_str()),
        ("WORKER_CONCURRENCY", "4"),
        ("AI_STUB_DELAY_MS", "200"),
        ("LOG_LEVEL", "warn"),
    ];
    let mut runners = vec![start(&db, &settings), start(&db, &settings)];

    // Churn for 18 s: cut every connection every 3 s, so that each reconnect meets its
    // seeded fate (and a seeded stall is not left to last until the runner's deadline).
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(18) {
        tokio::time::sleep(Duration::from_secs(3)).await;
        proxy.cut_all();
    }
    assert!(completed(&db).await > 0, "progress under churn");
    let seeded = proxy.stats();
    println!("proxy faults: after the churn {seeded:?}");
    assert!(seeded.stalled >= 1, "seeded stalls happened: {seeded:?}");
    // Then every connection at once goes half-open, as after a failover, and nothing resets
    // them any more: only the runners' own deadlines get them out (new connections pass).
    proxy.set_plan(FaultPlan::healthy());
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.stall_all();
    // Each connection's task obeys the order on its own schedule: give them a moment.
    let ordered = Instant::now();
    let mut halted = 0;
    while halted == 0 && ordered.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        halted = proxy.stats().stalled - seeded.stalled;
    }
    assert!(
        halted >= 1,
        "the runners' connections went half-open: {halted}"
    );
    let stalled_at = completed(&db).await;
    println!("proxy faults: all connections stalled after {stalled_at} jobs, no more cuts");
    assert!(stalled_at < JOBS, "work is left for the stalled phase");
    let recovering = Instant::now();
    while unfinished(&db).await != Some(0) {
        assert!(
            recovering.elapsed() < Duration::from_secs(420),
            "the runners did not recover from half-open connections by themselves ({} done)",
            completed(&db).await
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!("proxy faults: recovered in {:?}", recovering.elapsed());
    let stats = proxy.stats();
    println!("proxy faults: {stats:?}");
    assert!(stats.dropped >= 10, "connections were dropped: {stats:?}");
    let (done, failed) = assert_exactly_once(&db, JOBS).await;
    assert_eq!((done, failed), (JOBS, 0), "nothing failed for good");
    for runner in &mut runners {
        assert_ready(&mut runner.process);
    }
    let totals: Vec<_> = runners.into_iter().map(|r| r.stop()).collect();
    println!("proxy faults: runner totals {totals:?}");
    assert_eq!(total(&totals, "failed"), 0);
}
