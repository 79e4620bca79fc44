//! Shared pieces of the runner's integration tests: scripted adapters that count their calls,
//! and a job context wired to a real test database.
#![allow(dead_code)]

pub mod capture;
pub mod local;
pub mod process;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use learning_runner::ai::stub::StubBackend;
use learning_runner::ai::{
    AdapterError, Adapters, FeedbackAdapter, FeedbackOutput, FeedbackRequest, VisionAdapter,
    VisionOutput, VisionRequest,
};
use learning_runner::job::process::JobContext;
use learning_runner::telemetry::metrics::Metrics;
use learning_runner::worker::backoff::BackoffPolicy;
use sqlx::PgPool;

/// What a scripted call does.
#[derive(Clone)]
pub enum Script {
    /// Delegate to the stub.
    Stub,
    /// Fail with this error.
    Fail(AdapterError),
    /// Sleep, then delegate to the stub.
    Sleep(Duration),
    /// Panic.
    Panic,
    /// Signal `entered`, wait for `release`, then behave like the stub.
    Gate(Arc<tokio::sync::Notify>, Arc<tokio::sync::Notify>),
    /// Wait at the barrier (all N parties must be inside at once), then behave like the stub.
    Barrier(Arc<tokio::sync::Barrier>),
}

/// An adapter pair whose behaviour is scripted per call and whose calls are counted.
pub struct Scripted {
    stub: StubBackend,
    pub vision_script: Mutex<Vec<Script>>,
    pub feedback_script: Mutex<Vec<Script>>,
    pub vision_calls: AtomicUsize,
    pub feedback_calls: AtomicUsize,
    /// Texts the feedback adapter saw (to check what reached the model).
    pub feedback_texts: Mutex<Vec<String>>,
    /// Calls running right now, and the most ever seen at once.
    pub active: AtomicUsize,
    pub max_active: AtomicUsize,
}

impl Scripted {
    /// Every call behaves like the stub.
    pub fn stub() -> Arc<Self> {
        Self::with(vec![], vec![])
    }

    /// Calls take their behaviour from the front of each list; when a list is empty, the stub.
    pub fn with(vision: Vec<Script>, feedback: Vec<Script>) -> Arc<Self> {
        Arc::new(Scripted {
            stub: StubBackend::default(),
            vision_script: Mutex::new(vision),
            feedback_script: Mutex::new(feedback),
            vision_calls: AtomicUsize::new(0),
            feedback_calls: AtomicUsize::new(0),
            feedback_texts: Mutex::new(Vec::new()),
            active: AtomicUsize::new(0),
            max_active: AtomicUsize::new(0),
        })
    }

    pub fn adapters(self: &Arc<Self>) -> Adapters {
        Adapters {
            backend: "scripted",
            vision: self.clone(),
            feedback: self.clone(),
        }
    }

    fn next(list: &Mutex<Vec<Script>>) -> Script {
        let mut l = list.lock().unwrap();
        if l.is_empty() {
            Script::Stub
        } else {
            l.remove(0)
        }
    }

    pub fn vision_count(&self) -> usize {
        self.vision_calls.load(Ordering::SeqCst)
    }

    pub fn feedback_count(&self) -> usize {
        self.feedback_calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl VisionAdapter for Scripted {
    async fn extract(&self, request: &VisionRequest) -> Result<VisionOutput, AdapterError> {
        self.vision_calls.fetch_add(1, Ordering::SeqCst);
        match Self::next(&self.vision_script) {
            Script::Stub => self.stub.extract(request).await,
            Script::Fail(e) => Err(e),
            Script::Sleep(d) => {
                let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
                self.max_active.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(d).await;
                self.active.fetch_sub(1, Ordering::SeqCst);
                self.stub.extract(request).await
            }
            Script::Panic => panic!("scripted vision panic"),
            Script::Gate(entered, release) => {
                entered.notify_one();
                release.notified().await;
                self.stub.extract(request).await
            }
            Script::Barrier(barrier) => {
                let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
                self.max_active.fetch_max(now, Ordering::SeqCst);
                barrier.wait().await;
                self.active.fetch_sub(1, Ordering::SeqCst);
                self.stub.extract(request).await
            }
        }
    }
}

#[async_trait]
impl FeedbackAdapter for Scripted {
    async fn feedback(&self, request: &FeedbackRequest) -> Result<FeedbackOutput, AdapterError> {
        self.feedback_calls.fetch_add(1, Ordering::SeqCst);
        self.feedback_texts
            .lock()
            .unwrap()
            .push(request.text_md.clone());
        match Self::next(&self.feedback_script) {
            Script::Stub => self.stub.feedback(request).await,
            Script::Fail(e) => Err(e),
            Script::Sleep(d) => {
                tokio::time::sleep(d).await;
                self.stub.feedback(request).await
            }
            Script::Panic => panic!("scripted feedback panic"),
            Script::Gate(entered, release) => {
                entered.notify_one();
                release.notified().await;
                self.stub.feedback(request).await
            }
            Script::Barrier(barrier) => {
                let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
                self.max_active.fetch_max(now, Ordering::SeqCst);
                barrier.wait().await;
                self.active.fetch_sub(1, Ordering::SeqCst);
                self.stub.feedback(request).await
            }
        }
    }
}

/// The contract's default retry policy without jitter (so delays are exact).
pub fn backoff() -> BackoffPolicy {
    BackoffPolicy {
        base: Duration::from_secs(10),
        cap: Duration::from_secs(600),
        jitter_ratio: 0.0,
    }
}

/// A job context on `pool` with the contract's defaults (3 retries, 10 s backoff).
pub fn context(pool: &PgPool, adapters: Adapters) -> JobContext {
    JobContext {
        pool: pool.clone(),
        adapters,
        metrics: Metrics::new().unwrap(),
        max_retries: 3,
        backoff: backoff(),
        timeout_vision: Duration::from_secs(5),
        timeout_feedback: Duration::from_secs(5),
        admission: learning_runner::job::admission::ModelAdmission::unlimited(),
    }
}

/// The lease length tests use.
pub const LEASE: Duration = Duration::from_secs(30);

/// The worker settings of the in-process loop tests: `concurrency` slots, the test lease,
/// polling every 50 ms, a 5 s drain, stopping once the queue is drained.
pub fn worker_config(concurrency: usize) -> learning_runner::config::WorkerConfig {
    learning_runner::config::WorkerConfig {
        concurrency,
        max_retries: 3,
        backoff: backoff(),
        lease_duration: LEASE,
        heartbeat_interval: Duration::from_secs(5),
        poll_interval: Duration::from_millis(50),
        drain_grace: Duration::from_secs(5),
        exit_when_drained: true,
        listen_notify: false,
    }
}

/// Runs a whole worker loop in-process until no queued or leased job is left.
pub async fn run_until_drained(
    pool: &PgPool,
    ctx: JobContext,
    concurrency: usize,
) -> learning_runner::worker::RunSummary {
    use learning_runner::worker::{RunnerState, Worker};
    let _ = pool;
    let worker = Worker {
        ctx,
        config: worker_config(concurrency),
        state: Arc::new(RunnerState::default()),
        wake: Arc::new(tokio::sync::Notify::new()),
        gate: None,
    };
    tokio::time::timeout(
        Duration::from_secs(60),
        worker.run(tokio_util::sync::CancellationToken::new()),
    )
    .await
    .expect("the worker drains the queue within a minute")
}

/// Leases the one queued job and processes it.
pub async fn process_next(ctx: &JobContext) -> learning_runner::job::process::JobOutcome {
    let mut jobs = learning_runner::db::queue::lease_jobs(&ctx.pool, 1, LEASE)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1, "exactly one job is leasable");
    learning_runner::job::process::process_job(
        ctx,
        jobs.remove(0),
        learning_runner::job::process::Running::Alone,
    )
    .await
}
