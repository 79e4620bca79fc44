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

const JOBS: i64 = 500;

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
    // A quarter of the connections dropped and one in twenty stalled, each within 4 s or
    // 256 KiB, so the runners' connections keep breaking and reconnecting all run long.
    let plan = FaultPlan::chaotic(seed)
        .with_faults(0.25, 0.05, 0.20)
        .with_triggers(256 << 10, Duration::from_secs(4));
    println!("proxy faults: seed {seed}, plan {plan:?}");
    let proxy = ChaosProxy::start(upstream, plan).await;
    let dsn = db.worker_url().replace(
        &format!(":{}/", options.get_port()),
        &format!(":{}/", proxy.port()),
    );
    let settings = [
        ("LEARNING_DATABASE_URL", dsn.as_str()),
        ("WORKER_CONCURRENCY", "4"),
        ("AI_STUB_DELAY_MS", "20"),
        ("LOG_LEVEL", "warn"),
    ];
    let mut runners = vec![start(&db, &settings), start(&db, &settings)];

    // Churn: cut every connection now and then, so each reconnect meets its seeded fate.
    let started = Instant::now();
    while completed(&db).await < JOBS / 3 {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "no progress under churn"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        proxy.cut_all();
    }
    // Every connection at once goes half-open, as after a failover, and nothing resets them:
    // only the runners' own deadlines get them out.
    proxy.stall_all();
    println!(
        "proxy faults: all connections stalled after {} jobs",
        completed(&db).await
    );
    tokio::time::sleep(Duration::from_secs(50)).await;
    while unfinished(&db).await != Some(0) {
        assert!(
            started.elapsed() < Duration::from_secs(480),
            "not settled under churn"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        proxy.cut_all();
    }
    let stats = proxy.stats();
    println!("proxy faults: {stats:?}");
    assert!(stats.dropped >= 10, "connections were dropped: {stats:?}");
    assert!(stats.stalled >= 2, "connections were stalled: {stats:?}");
    let (done, failed) = assert_exactly_once(&db, JOBS).await;
    assert_eq!((done, failed), (JOBS, 0), "nothing failed for good");
    // Readiness is asked through the same faulty path, so allow it to recover first.
    for runner in &mut runners {
        assert_ready(&mut runner.process);
    }
    let totals: Vec<_> = runners.into_iter().map(|r| r.stop()).collect();
    println!("proxy faults: runner totals {totals:?}");
    assert_eq!(total(&totals, "failed"), 0);
}
