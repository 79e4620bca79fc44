//! The lease loop: keeps up to `concurrency` jobs in flight, leases as many as there are free
//! slots in one statement, sleeps until notified or the poll interval passes, backs off while
//! the database is away, and drains on shutdown (stop leasing, let running jobs finish within
//! the grace period, release the rest).

pub mod backoff;
pub mod leases;
pub mod shutdown;
pub mod wakeup;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::WorkerConfig;
use crate::db::queue::{self, LeaseRef};
use crate::job::process::{process_job, JobContext, JobOutcome};
use crate::telemetry::metrics::Metrics;
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
            JobOutcome::Abandoned => self.abandoned += 1,
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

/// Pauses between lease attempts while the database is unreachable: 0.5 s doubling to 30 s.
fn next_db_pause(current: Duration) -> Duration {
    (current * 2).clamp(Duration::from_millis(500), Duration::from_secs(30))
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
        let registry = LeaseRegistry::default();
        let slots = Arc::new(Semaphore::new(self.config.concurrency));
        let heartbeat_stop = CancellationToken::new();
        let heartbeat = tokio::spawn(run_heartbeat(
            self.pool().clone(),
            registry.clone(),
            self.metrics().clone(),
            self.config.heartbeat_interval,
            self.config.lease_duration,
            heartbeat_stop.clone(),
        ));
        let mut tasks: JoinSet<JobOutcome> = JoinSet::new();
        let mut summary = RunSummary::default();
        let mut db_pause = Duration::ZERO;

        tracing::info!(
            event = "learning.worker.started",
            concurrency = self.config.concurrency,
            lease_s = self.config.lease_duration.as_secs_f64(),
            poll_s = self.config.poll_interval.as_secs_f64()
        );

        let mut paused = false;
        loop {
            while let Some(done) = tasks.try_join_next() {
                summary.add(done.unwrap_or(JobOutcome::Abandoned));
            }
            if shutdown.is_cancelled() {
                break;
            }
            let backend_ready = self.gate.as_ref().is_none_or(|g| g.ready());
            if backend_ready == paused {
                paused = !backend_ready;
                if paused {
                    tracing::warn!(
                        event = "learning.worker.paused",
                        reason = "backend_unavailable",
                        "the AI backend is unavailable; no new jobs are leased until it is back"
                    );
                } else {
                    tracing::info!(
                        event = "learning.worker.resumed",
                        "the AI backend is available again; leasing resumes"
                    );
                }
            }
            if paused {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(GATE_RECHECK) => continue,
                }
            }
            let first = tokio::select! {
                _ = shutdown.cancelled() => break,
                permit = slots.clone().acquire_owned() => permit.expect("the slot semaphore is never closed"),
                Some(done) = tasks.join_next(), if slots.available_permits() == 0 => {
                    summary.add(done.unwrap_or(JobOutcome::Abandoned));
                    continue;
                }
            };
            let mut permits = vec![first];
            while let Ok(p) = slots.clone().try_acquire_owned() {
                permits.push(p);
            }
            // The wait for a slot can be long: look at the gate again before leasing.
            if !self.gate.as_ref().is_none_or(|g| g.ready()) {
                drop(permits);
                continue;
            }

            match queue::lease_jobs(
                self.pool(),
                permits.len() as i64,
                self.config.lease_duration,
            )
            .await
            {
                Ok(jobs) => {
                    db_pause = Duration::ZERO;
                    if jobs.is_empty() {
                        drop(permits);
                        if self.config.exit_when_drained
                            && tasks.is_empty()
                            && self.queue_is_drained().await
                        {
                            tracing::info!(
                                event = "learning.worker.queue_drained",
                                "no queued or leased job left; stopping"
                            );
                            break;
                        }
                        self.idle(&shutdown).await;
                        continue;
                    }
                    self.metrics().leased.inc_by(jobs.len() as u64);
                    for job in jobs {
                        let permit = permits.pop().expect("never more jobs than permits");
                        registry.insert(job.lease_ref());
                        let ctx = self.ctx.clone();
                        let registry = registry.clone();
                        tasks.spawn(async move {
                            // Forgets the lease however the task ends (finished, aborted, panicked),
                            // so the heartbeat never extends a lease nobody works on.
                            let _held = HeldLease {
                                registry,
                                job_id: job.id,
                            };
                            let outcome = process_job(&ctx, job).await;
                            drop(permit);
                            outcome
                        });
                    }
                }
                Err(e) => {
                    drop(permits);
                    self.metrics().db_errors.with_label_values(&["lease"]).inc();
                    db_pause = next_db_pause(db_pause);
                    tracing::warn!(event = "learning.worker.lease_failed", error = %e, retry_in_s = db_pause.as_secs_f64(),
                        "cannot lease jobs; database unreachable?");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(db_pause) => {}
                    }
                }
            }
        }

        self.state.draining.store(true, Ordering::Relaxed);
        let unfinished = self.drain(&mut tasks, &registry, &mut summary).await;
        heartbeat_stop.cancel();
        let _ = heartbeat.await;
        summary.released = self.release(&unfinished).await;
        tracing::info!(
            event = "learning.worker.stopped",
            completed = summary.completed,
            retried = summary.retried,
            failed = summary.failed,
            skipped = summary.skipped,
            lease_lost = summary.lease_lost,
            abandoned = summary.abandoned,
            released = summary.released
        );
        summary
    }

    async fn queue_is_drained(&self) -> bool {
        match queue::unfinished_jobs(self.pool()).await {
            Ok(n) => n == 0,
            Err(e) => {
                tracing::warn!(event = "learning.worker.count_failed", error = %e);
                false
            }
        }
    }

    async fn idle(&self, shutdown: &CancellationToken) {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = self.wake.notified() => {}
            _ = tokio::time::sleep(self.config.poll_interval) => {}
        }
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
            tokio::select! {
                done = tasks.join_next() => match done {
                    Some(done) => summary.add(done.unwrap_or(JobOutcome::Abandoned)),
                    None => return Vec::new(),
                },
                _ = tokio::time::sleep_until(deadline.into()) => break,
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

/// Removes a job's lease from the registry when dropped.
struct HeldLease {
    registry: LeaseRegistry,
    job_id: uuid::Uuid,
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        self.registry.remove(self.job_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_pauses_grow_to_a_cap() {
        let mut p = Duration::ZERO;
        p = next_db_pause(p);
        assert_eq!(p, Duration::from_millis(500));
        p = next_db_pause(p);
        assert_eq!(p, Duration::from_secs(1));
        for _ in 0..20 {
            p = next_db_pause(p);
        }
        assert_eq!(p, Duration::from_secs(30));
    }
}
