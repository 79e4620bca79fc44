//! The lease loop: keeps up to `concurrency` jobs in flight, leases as many as there are free
//! slots in one statement, sleeps until notified or the poll interval passes, backs off while
//! the database is away, and drains on shutdown (stop leasing, let running jobs finish within
//! the grace period, release the rest).

pub mod backoff;
mod lease_loop;
pub mod leases;
pub mod progress;
pub mod shutdown;
mod suspects;
pub mod wakeup;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::WorkerConfig;
use crate::db::queue::{self, LeaseRef};
use crate::job::process::{JobContext, JobOutcome};
use crate::telemetry::metrics::Metrics;
use crate::worker::lease_loop::{Flow, RunState};
use crate::worker::leases::{run_heartbeat, LeaseRegistry};

/// Whether the AI backend can take work now. While it cannot (Ollama down, models missing),
/// the loop leases nothing, so an outage does not burn the students' retries.
pub trait BackendGate: Send + Sync {
    /// True when jobs may be leased.
    fn ready(&self) -> bool;
}

/// How often a paused loop looks at the gate again.
const GATE_RECHECK: Duration = Duration::from_secs(1);

/// Live state shared with the HTTP probes.
#[derive(Debug, Default)]
pub struct RunnerState {
    /// Shutdown has begun; no new jobs are leased.
    pub draining: AtomicBool,
    /// When the job loop and the heartbeat last turned (`/livez`).
    pub progress: progress::Progress,
}

/// Totals of one run, printed on exit.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    /// Jobs completed.
    pub completed: u64,
    /// Jobs requeued for retry.
    pub retried: u64,
    /// Jobs failed for good.
    pub failed: u64,
    /// Jobs skipped (submission no longer pending).
    pub skipped: u64,
    /// Results dropped because the lease was lost.
    pub lease_lost: u64,
    /// Jobs whose outcome could not be recorded.
    pub abandoned: u64,
    /// Jobs given back to the queue after a database error kept them from finishing.
    pub handed_back: u64,
    /// Jobs handed back to the queue on shutdown.
    pub released: u64,
}

impl RunSummary {
    fn add(&mut self, outcome: JobOutcome) {
        match outcome {
            JobOutcome::Completed => self.completed += 1,
            JobOutcome::Retried => self.retried += 1,
            JobOutcome::Failed => self.failed += 1,
            JobOutcome::Skipped => self.skipped += 1,
            JobOutcome::LeaseLost => self.lease_lost += 1,
            JobOutcome::HandedBack => self.handed_back += 1,
            JobOutcome::Abandoned => self.abandoned += 1,
            JobOutcome::Released => self.released += 1,
        }
    }
}

/// The job loop of one runner.
pub struct Worker {
    /// Per-job dependencies.
    pub ctx: JobContext,
    /// Loop settings.
    pub config: WorkerConfig,
    /// Shared probe state.
    pub state: Arc<RunnerState>,
    /// Poked by notifications.
    pub wake: Arc<Notify>,
    /// Leasing pauses while this says the backend is unavailable (`None`: never pauses).
    pub gate: Option<Arc<dyn BackendGate>>,
}

/// How often a drain counts as a turn of the loop for `/livez`.
const DRAIN_TURN: Duration = Duration::from_secs(5);

/// The lease heartbeat task and its stop signal.
struct Heartbeat {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Heartbeat {
    /// Stops extending leases and waits for the task to end.
    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Logs the totals of a run.
fn log_stopped(summary: &RunSummary) {
    tracing::info!(
        event = "learning.worker.stopped",
        completed = summary.completed,
        retried = summary.retried,
        failed = summary.failed,
        skipped = summary.skipped,
        lease_lost = summary.lease_lost,
        abandoned = summary.abandoned,
        handed_back = summary.handed_back,
        released = summary.released
    );
}

impl Worker {
    fn pool(&self) -> &PgPool {
        &self.ctx.pool
    }

    fn metrics(&self) -> &Metrics {
        &self.ctx.metrics
    }

    /// Runs until `shutdown` is cancelled (or, with `exit_when_drained`, until no queued or
    /// leased job is left), then drains. Returns the totals.
    pub async fn run(self, shutdown: CancellationToken) -> RunSummary {
        let mut run = RunState::new(self.config.concurrency);
        let heartbeat = self.start_heartbeat(&run.registry);
        tracing::info!(
            event = "learning.worker.started",
            concurrency = self.config.concurrency,
            lease_s = self.config.lease_duration.as_secs_f64(),
            poll_s = self.config.poll_interval.as_secs_f64()
        );
        while let Flow::Continue = self.step(&mut run, &shutdown).await {
            self.state.progress.loop_turned();
        }

        self.state.draining.store(true, Ordering::Relaxed);
        let unfinished = self
            .drain(&mut run.tasks, &run.registry, &mut run.summary)
            .await;
        heartbeat.stop().await;
        run.summary.released += self.release(&unfinished).await;
        log_stopped(&run.summary);
        run.summary
    }

    /// Starts extending the leases in `registry` until stopped.
    fn start_heartbeat(&self, registry: &LeaseRegistry) -> Heartbeat {
        let stop = CancellationToken::new();
        // Its own connection: with all job connections busy (or one stuck), leases would
        // otherwise expire while the heartbeat waits for a connection.
        let task = tokio::spawn(run_heartbeat(
            crate::db::dedicated_pool(self.pool()),
            registry.clone(),
            self.metrics().clone(),
            self.state.clone(),
            self.config.heartbeat_interval,
            self.config.lease_duration,
            stop.clone(),
        ));
        Heartbeat { stop, task }
    }

    /// Lets running jobs finish within the grace period, then aborts the rest. Returns the
    /// leases of the aborted jobs (taken before the abort, which forgets them).
    async fn drain(
        &self,
        tasks: &mut JoinSet<JobOutcome>,
        registry: &LeaseRegistry,
        summary: &mut RunSummary,
    ) -> Vec<LeaseRef> {
        if tasks.is_empty() {
            return Vec::new();
        }
        tracing::info!(
            event = "learning.worker.draining",
            running = tasks.len(),
            grace_s = self.config.drain_grace.as_secs_f64()
        );
        let deadline = Instant::now() + self.config.drain_grace;
        loop {
            // A drain is progress too: the grace may be longer than the liveness bound.
            self.state.progress.loop_turned();
            tokio::select! {
                done = tasks.join_next() => match done {
                    Some(done) => summary.add(done.unwrap_or(JobOutcome::Abandoned)),
                    None => return Vec::new(),
                },
                _ = tokio::time::sleep_until(deadline.into()) => break,
                _ = tokio::time::sleep(DRAIN_TURN) => {}
            }
        }
        let unfinished = registry.snapshot();
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        unfinished
    }

    /// Gives the aborted jobs back to the queue (fenced: a job that finished meanwhile is not
    /// touched). Returns how many were released.
    async fn release(&self, unfinished: &[LeaseRef]) -> u64 {
        if unfinished.is_empty() {
            return 0;
        }
        match queue::release(self.pool(), unfinished).await {
            Ok(n) => {
                tracing::info!(
                    event = "learning.worker.released",
                    released = n,
                    "unfinished jobs handed back to the queue"
                );
                n
            }
            Err(e) => {
                tracing::error!(event = "learning.worker.release_failed", error = %e, held = unfinished.len(),
                    "could not release leases; the jobs return when their leases expire");
                0
            }
        }
    }
}
