//! `make bench`: throughput and pickup latency of the runner loop on a real PostgreSQL, with
//! the stub backend (so the numbers measure the queue machinery, not a model).
//!
//! 1. Throughput: `BENCH_JOBS` (default 10,000) text jobs drained at concurrency 1, 8, 32;
//!    each configuration `BENCH_RUNS` times (default 3), median reported.
//! 2. Pickup latency: jobs enqueued one at a time at random gaps into an idle runner; time
//!    from the enqueue commit to the start of processing (the feedback call), p50/p99, with
//!    `LISTEN/NOTIFY` wake-ups and with polling only (the contract's 0.5 s interval).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use learning_runner::ai::stub::StubBackend;
use learning_runner::ai::{
    AdapterError, Adapters, FeedbackAdapter, FeedbackOutput, FeedbackRequest,
};
use learning_runner::config::WorkerConfig;
use learning_runner::job::process::JobContext;
use learning_runner::telemetry::metrics::Metrics;
use learning_runner::worker::backoff::BackoffPolicy;
use learning_runner::worker::wakeup;
use learning_runner::worker::{RunnerState, Worker};
use learning_tests::fixtures::{self, NewSubmission};
use learning_tests::TestDb;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn worker_config(
    concurrency: usize,
    poll: Duration,
    listen: bool,
    exit_when_drained: bool,
) -> WorkerConfig {
    WorkerConfig {
        concurrency,
        max_retries: 3,
        backoff: BackoffPolicy {
            base: Duration::from_secs(10),
            cap: Duration::from_secs(600),
            jitter_ratio: 0.1,
        },
        lease_duration: Duration::from_secs(180),
        heartbeat_interval: Duration::from_secs(45),
        poll_interval: poll,
        drain_grace: Duration::from_secs(25),
        exit_when_drained,
        listen_notify: listen,
    }
}

fn context(pool: &sqlx::PgPool, adapters: Adapters) -> JobContext {
    JobContext {
        pool: pool.clone(),
        adapters,
        metrics: Metrics::new().unwrap(),
        max_retries: 3,
        backoff: BackoffPolicy {
            base: Duration::from_secs(10),
            cap: Duration::from_secs(600),
            jitter_ratio: 0.1,
        },
        timeout_vision: Duration::from_secs(30),
        timeout_feedback: Duration::from_secs(15),
        admission: learning_runner::job::admission::ModelAdmission::unlimited(),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn throughput_once(jobs: usize, concurrency: usize) -> f64 {
    let db = TestDb::new().await;
    fixtures::enqueue_bulk_text(&db.admin, jobs as i64).await;
    let pool = db.worker_pool(concurrency as u32 + 4).await;
    let stub = Arc::new(StubBackend::default());
    let adapters = Adapters {
        backend: "stub",
        vision: stub.clone(),
        feedback: stub,
    };
    let worker = Worker {
        ctx: context(&pool, adapters),
        config: worker_config(concurrency, Duration::from_millis(50), false, true),
        state: Arc::new(RunnerState::default()),
        wake: Arc::new(Notify::new()),
        gate: None,
    };
    let started = Instant::now();
    let summary = worker.run(CancellationToken::new()).await;
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(summary.completed as usize, jobs, "every job completed");
    jobs as f64 / elapsed
}

/// Records when processing of each submission starts, then behaves like the stub.
struct StartClock {
    stub: StubBackend,
    started: Mutex<HashMap<Uuid, Instant>>,
}

#[async_trait]
impl FeedbackAdapter for StartClock {
    async fn feedback(&self, request: &FeedbackRequest) -> Result<FeedbackOutput, AdapterError> {
        self.started
            .lock()
            .unwrap()
            .insert(request.submission_id, Instant::now());
        self.stub.feedback(request).await
    }
}

async fn pickup_latencies(samples: usize, listen: bool) -> Vec<f64> {
    let db = TestDb::new().await;
    let pool = db.worker_pool(8).await;
    let clock = Arc::new(StartClock {
        stub: StubBackend::default(),
        started: Mutex::new(HashMap::new()),
    });
    let adapters = Adapters {
        backend: "stub",
        vision: Arc::new(StubBackend::default()),
        feedback: clock.clone(),
    };
    let stop = CancellationToken::new();
    let wake = Arc::new(Notify::new());
    if listen {
        tokio::spawn(wakeup::run_listener(
            pool.clone(),
            wake.clone(),
            stop.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(300)).await; // LISTEN is in place
    }
    let worker = Worker {
        ctx: context(&pool, adapters),
        config: worker_config(4, Duration::from_millis(500), listen, false),
        state: Arc::new(RunnerState::default()),
        wake,
        gate: None,
    };
    let loop_stop = stop.clone();
    let running = tokio::spawn(worker.run(loop_stop));
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut enqueued = HashMap::new();
    for i in 0..samples {
        // Random gaps so arrivals fall at every phase of the polling interval.
        tokio::time::sleep(Duration::from_millis(20 + fastrand::u64(0..480))).await;
        let (sub, _) = fixtures::enqueue(
            &db.admin,
            &NewSubmission::text(&format!("bench-{i}"), "Text"),
        )
        .await;
        enqueued.insert(sub, Instant::now());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while clock.started.lock().unwrap().len() < samples && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    let _ = running.await;
    let started = clock.started.lock().unwrap();
    let mut latencies: Vec<f64> = enqueued
        .iter()
        .filter_map(|(sub, at)| {
            started
                .get(sub)
                .map(|s| s.saturating_duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    assert_eq!(latencies.len(), samples, "every sample was picked up");
    latencies.sort_by(f64::total_cmp);
    latencies
}

/// The candidate selection as the contract phrases it (one `OR` condition), kept here only
/// as the baseline the runner's split form is measured against.
const LEASE_SELECT_OR_FORM: &str = "select id from public.learning_submission_jobs \
     where (status = 'queued' and visible_at <= now()) or (status = 'leased' and leased_until <= now()) \
     order by visible_at, created_at limit $1 for update skip locked";

/// Median time of one candidate selection (locked, then rolled back) with `backlog` queued jobs.
async fn lease_select_micros(backlog: usize, iterations: usize) -> Vec<(&'static str, f64)> {
    let db = TestDb::new().await;
    fixtures::enqueue_bulk_text(&db.admin, backlog as i64).await;
    sqlx::query("analyze").execute(&db.admin).await.unwrap();
    let pool = db.worker_pool(2).await;
    let mut out = Vec::new();
    let split_form = format!(
        "{} select id from candidates",
        learning_runner::db::queue::LEASE_CANDIDATES_CTE
    );
    for (label, sql) in [
        ("one OR condition (contract wording)", LEASE_SELECT_OR_FORM),
        ("two CTEs (runner)", split_form.as_str()),
    ] {
        let mut times = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let mut tx = pool.begin().await.unwrap();
            let started = Instant::now();
            let rows = sqlx::query(sql)
                .bind(8i64)
                .fetch_all(&mut *tx)
                .await
                .unwrap();
            times.push(started.elapsed().as_secs_f64() * 1e6);
            assert_eq!(rows.len(), 8);
            tx.rollback().await.unwrap();
        }
        out.push((label, median(times)));
    }
    out
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--exact") {
        return; // `cargo test --benches` probes; this benchmark only runs under `cargo bench`.
    }
    let jobs = env_number("BENCH_JOBS", 10_000);
    let runs = env_number("BENCH_RUNS", 3).max(1);
    let samples = env_number("BENCH_LATENCY_SAMPLES", 100).max(2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!("\n## Throughput (stub backend, {jobs} text jobs, median of {runs} runs, one runner in-process)\n");
        println!("| concurrency | median jobs/s | runs (jobs/s) | vs concurrency 1 |");
        println!("|---:|---:|---|---:|");
        let mut baseline = None;
        for concurrency in [1, 8, 32] {
            let mut rates = Vec::new();
            for _ in 0..runs {
                rates.push(throughput_once(jobs, concurrency).await);
            }
            let runs_text = rates.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ");
            let m = median(rates);
            let base = *baseline.get_or_insert(m);
            println!("| {concurrency} | {m:.0} | {runs_text} | {:.2}× |", m / base);
        }

        println!("\n## Lease candidate selection (median of 300, one call = up to 8 jobs, locked then rolled back)\n");
        println!("| queued backlog | statement | median µs |");
        println!("|---:|---|---:|");
        for backlog in [1_000, jobs] {
            let results = lease_select_micros(backlog, 300).await;
            for (label, micros) in &results {
                println!("| {backlog} | {label} | {micros:.0} |");
            }
            println!("| {backlog} | ratio OR / split | {:.1}× |", results[0].1 / results[1].1.max(0.001));
        }

        println!("\n## Pickup latency (enqueue commit → processing start, idle runner, {samples} samples each)\n");
        println!("| wake-up | p50 ms | p99 ms | max ms |");
        println!("|---|---:|---:|---:|");
        let mut p50s = Vec::new();
        for (label, listen) in [("LISTEN/NOTIFY (+ 0.5 s poll fallback)", true), ("polling only, 0.5 s", false)] {
            let l = pickup_latencies(samples, listen).await;
            let p50 = percentile(&l, 50.0);
            p50s.push(p50);
            println!("| {label} | {p50:.1} | {:.1} | {:.1} |", percentile(&l, 99.0), l[l.len() - 1]);
        }
        println!("\nPolling p50 / NOTIFY p50 = {:.0}×", p50s[1] / p50s[0].max(0.001));
    });
}
