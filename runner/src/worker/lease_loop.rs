//! The lease loop's steps: wait while the backend is unavailable, wait for free slots, lease
//! as many jobs as there are free slots in one statement, run each in its own task, idle
//! when nothing is queued and back off while the database is away.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, RwLock, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{RunSummary, Worker, GATE_RECHECK};
use crate::db::queue::LeaseRef;
use crate::db::queue::{self, LeasedJob};
use crate::job::payload::was_taken_over;
use crate::job::process::{process_job, JobContext, JobOutcome, Running};
use crate::worker::leases::LeaseRegistry;
use crate::worker::suspects::{admit, SuspectHeld};

/// What the loop does after one step.
pub(super) enum Flow {
    /// Go round again.
    Continue,
    /// Stop leasing and drain.
    Stop,
}

/// The outcome of waiting for free slots.
enum Slots {
    /// These slots are free to lease into.
    Free(Vec<OwnedSemaphorePermit>),
    /// A job finished while every slot was taken: look again.
    Again,
    /// Shutdown began.
    Stop,
}

/// The loop's own state between steps.
pub(super) struct RunState {
    /// Leases held by running jobs, extended by the heartbeat.
    pub(super) registry: LeaseRegistry,
    /// One permit per job that may run at once.
    slots: Arc<Semaphore>,
    /// The running jobs.
    pub(super) tasks: JoinSet<JobOutcome>,
    /// Totals so far.
    pub(super) summary: RunSummary,
    /// The current pause after a failed lease attempt (zero while the database answers).
    db_pause: Duration,
    /// Leasing is paused because the backend is unavailable.
    paused: bool,
    /// Held shared by every running job, exclusively by a suspect (a job whose earlier holder
    /// died with it), so a suspect runs alone.
    company: Arc<RwLock<()>>,
    /// Suspects held (waiting or running): while there is one, nothing more is leased.
    suspects: Arc<AtomicUsize>,
}

impl RunState {
    /// Nothing running yet, `concurrency` free slots.
    pub(super) fn new(concurrency: usize) -> Self {
        RunState {
            registry: LeaseRegistry::default(),
            slots: Arc::new(Semaphore::new(concurrency)),
            tasks: JoinSet::new(),
            summary: RunSummary::default(),
            db_pause: Duration::ZERO,
            paused: false,
            company: Arc::new(RwLock::new(())),
            suspects: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Counts the jobs that have finished, without waiting.
    fn collect_finished(&mut self) {
        while let Some(done) = self.tasks.try_join_next() {
            self.summary.add(done.unwrap_or(JobOutcome::Abandoned));
        }
    }
}

/// The longest the loop waits for a free slot before it turns (and counts as alive).
const SLOT_WAIT_TURN: Duration = Duration::from_secs(5);

/// Pauses between lease attempts while the database is unreachable: 0.5 s doubling to 30 s.
fn next_db_pause(current: Duration) -> Duration {
    (current * 2).clamp(Duration::from_millis(500), Duration::from_secs(30))
}

impl Worker {
    /// One turn of the loop: count finished jobs, wait while the backend is paused, wait for
    /// free slots, and lease jobs into them.
    pub(super) async fn step(&self, run: &mut RunState, shutdown: &CancellationToken) -> Flow {
        run.collect_finished();
        if shutdown.is_cancelled() {
            return Flow::Stop;
        }
        if self.backend_paused(&mut run.paused) {
            return tokio::select! {
                _ = shutdown.cancelled() => Flow::Stop,
                _ = tokio::time::sleep(GATE_RECHECK) => Flow::Continue,
            };
        }
        if run.suspects.load(Ordering::SeqCst) > 0 {
            return while_a_suspect_is_held(run, shutdown).await;
        }
        let permits = match self.free_slots(run, shutdown).await {
            Slots::Free(permits) => permits,
            Slots::Again => return Flow::Continue,
            Slots::Stop => return Flow::Stop,
        };
        // The wait for a slot can be long: look at the gate again before leasing.
        if !self.backend_ready() {
            drop(permits);
            return Flow::Continue;
        }
        self.lease_into(permits, run, shutdown).await
    }

    fn backend_ready(&self) -> bool {
        self.gate.as_ref().is_none_or(|g| g.ready())
    }

    /// Whether leasing is paused because the backend is unavailable; logs when that changes.
    fn backend_paused(&self, paused: &mut bool) -> bool {
        let backend_ready = self.backend_ready();
        if backend_ready == *paused {
            *paused = !backend_ready;
            if *paused {
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
        *paused
    }

    /// Waits for at least one free slot (counting jobs that finish meanwhile), then takes
    /// every free slot.
    async fn free_slots(&self, run: &mut RunState, shutdown: &CancellationToken) -> Slots {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return Slots::Stop,
            permit = run.slots.clone().acquire_owned() => permit.expect("the slot semaphore is never closed"),
            Some(done) = run.tasks.join_next(), if run.slots.available_permits() == 0 => {
                run.summary.add(done.unwrap_or(JobOutcome::Abandoned));
                return Slots::Again;
            }
            // Turn the loop now and then while every slot is busy: /livez watches its turns.
            _ = tokio::time::sleep(SLOT_WAIT_TURN) => return Slots::Again,
        };
        let mut permits = vec![first];
        while let Ok(p) = run.slots.clone().try_acquire_owned() {
            permits.push(p);
        }
        Slots::Free(permits)
    }

    /// Leases up to one job per permit and starts them; with nothing queued, stops (when
    /// draining the queue is the goal and it is drained) or idles; on a database error,
    /// waits a growing pause.
    async fn lease_into(
        &self,
        mut permits: Vec<OwnedSemaphorePermit>,
        run: &mut RunState,
        shutdown: &CancellationToken,
    ) -> Flow {
        match queue::lease_jobs(
            self.pool(),
            permits.len() as i64,
            self.config.lease_duration,
        )
        .await
        {
            Ok(jobs) => {
                run.db_pause = Duration::ZERO;
                if jobs.is_empty() {
                    drop(permits);
                    return self.when_nothing_leased(run, shutdown).await;
                }
                self.metrics().leased.inc_by(jobs.len() as u64);
                let admitted = admit(jobs);
                self.give_back(&admitted.give_back).await;
                for job in admitted.run {
                    let permit = permits.pop().expect("never more jobs than permits");
                    self.spawn_job(run, job, permit, shutdown);
                }
                Flow::Continue
            }
            Err(e) => {
                drop(permits);
                self.metrics().db_errors.with_label_values(&["lease"]).inc();
                run.db_pause = next_db_pause(run.db_pause);
                tracing::warn!(event = "learning.worker.lease_failed", error = %e, retry_in_s = run.db_pause.as_secs_f64(),
                    "cannot lease jobs; database unreachable?");
                tokio::select! {
                    _ = shutdown.cancelled() => Flow::Stop,
                    _ = tokio::time::sleep(run.db_pause) => Flow::Continue,
                }
            }
        }
    }

    /// Nothing was queued: stop when the queue is drained and that was the goal, else idle
    /// until notified or the poll interval passes.
    async fn when_nothing_leased(&self, run: &RunState, shutdown: &CancellationToken) -> Flow {
        if self.config.exit_when_drained && run.tasks.is_empty() && self.queue_is_drained().await {
            tracing::info!(
                event = "learning.worker.queue_drained",
                "no queued or leased job left; stopping"
            );
            return Flow::Stop;
        }
        self.idle(shutdown).await;
        Flow::Continue
    }

    /// Whether no job is queued or leased; a failed count says no.
    async fn queue_is_drained(&self) -> bool {
        match queue::unfinished_jobs(self.pool()).await {
            Ok(n) => n == 0,
            Err(e) => {
                tracing::warn!(event = "learning.worker.count_failed", error = %e);
                false
            }
        }
    }

    /// Waits until notified, the poll interval passes or shutdown begins.
    async fn idle(&self, shutdown: &CancellationToken) {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = self.wake.notified() => {}
            _ = tokio::time::sleep(self.config.poll_interval) => {}
        }
    }

    /// Gives the jobs of a batch that came with a suspect straight back to the queue.
    async fn give_back(&self, leases: &[LeaseRef]) {
        if leases.is_empty() {
            return;
        }
        match queue::release(self.pool(), leases).await {
            Ok(n) => tracing::info!(
                event = "learning.worker.gave_back_beside_suspect",
                released = n,
                "a suspect runs alone: the rest of its lease batch went back to the queue"
            ),
            Err(e) => {
                tracing::warn!(event = "learning.worker.release_failed", error = %e, held = leases.len(),
                "could not give jobs back; they return when their leases expire")
            }
        }
    }

    /// Runs one leased job in its own task, holding `permit` (its slot) and its lease in the
    /// registry until the task ends. A suspect waits until it can run alone (its lease is
    /// extended meanwhile), and no other job starts while it runs: a crash during its run is
    /// then its own. A job still waiting for its turn when shutdown begins goes back to the
    /// queue at once instead of starting.
    fn spawn_job(
        &self,
        run: &mut RunState,
        job: LeasedJob,
        permit: OwnedSemaphorePermit,
        shutdown: &CancellationToken,
    ) {
        let lease = job.lease_ref();
        run.registry.insert(lease);
        let ctx = self.ctx.clone();
        let registry = run.registry.clone();
        let company = run.company.clone();
        let shutdown = shutdown.clone();
        let suspect = was_taken_over(&job.payload).then(|| SuspectHeld::enter(&run.suspects));
        run.tasks.spawn(async move {
            // Forgets the lease however the task ends (finished, aborted, panicked), so the
            // heartbeat never extends a lease nobody works on — this lease only: the job may
            // have been leased again meanwhile under another key.
            let _held = HeldLease { registry, lease };
            let outcome = if suspect.is_some() {
                tokio::select! {
                    _alone = company.write_owned() => process_job(&ctx, job, Running::Alone).await,
                    () = shutdown.cancelled() => give_back_unstarted(&ctx, lease).await,
                }
            } else {
                tokio::select! {
                    _shared = company.read_owned() => process_job(&ctx, job, Running::WithOthers).await,
                    () = shutdown.cancelled() => give_back_unstarted(&ctx, lease).await,
                }
            };
            drop(suspect);
            drop(permit);
            outcome
        });
    }
}

/// Waits while a suspect is held: for a job to finish, the loop's turn, or shutdown.
async fn while_a_suspect_is_held(run: &mut RunState, shutdown: &CancellationToken) -> Flow {
    tokio::select! {
        _ = shutdown.cancelled() => Flow::Stop,
        Some(done) = run.tasks.join_next() => {
            run.summary.add(done.unwrap_or(JobOutcome::Abandoned));
            Flow::Continue
        }
        _ = tokio::time::sleep(SLOT_WAIT_TURN) => Flow::Continue,
    }
}

/// A job that never started because shutdown began: back to the queue at once.
async fn give_back_unstarted(ctx: &JobContext, lease: LeaseRef) -> JobOutcome {
    match queue::release(&ctx.pool, &[lease]).await {
        Ok(1) => JobOutcome::Released,
        Ok(_) => JobOutcome::LeaseLost,
        Err(e) => {
            tracing::warn!(event = "learning.worker.release_failed", error = %e, held = 1,
                "could not give a job back; it returns when its lease expires");
            JobOutcome::Abandoned
        }
    }
}

/// Removes a job's lease from the registry when dropped.
struct HeldLease {
    registry: LeaseRegistry,
    lease: LeaseRef,
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        self.registry.remove_exact(self.lease);
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
