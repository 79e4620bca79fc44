//! Suspects: jobs whose earlier holder died with them (`lease_takeovers` > 0). A suspect runs
//! alone in its runner, so that a death during its run can be blamed on it and on nothing
//! else (see `job::process::MAX_SOLO_TAKEOVERS`). The rules, kept small so that other runners
//! go on working meanwhile:
//! - a runner holds at most one suspect: when a lease batch brings one, every other job of
//!   the batch goes straight back to the queue (no takeover, no retry counted);
//! - while a suspect is held, the runner leases nothing more;
//! - the suspect waits until the jobs already running have finished (its lease is extended
//!   meanwhile), and no other job runs beside it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::db::queue::{LeaseRef, LeasedJob};
use crate::job::payload::was_taken_over;

/// What to do with a freshly leased batch.
#[derive(Debug, Default)]
pub(super) struct Admitted {
    /// Jobs to start.
    pub run: Vec<LeasedJob>,
    /// Leases to give back at once.
    pub give_back: Vec<LeaseRef>,
}

/// Splits a leased batch: the first suspect alone, or every job when there is none.
pub(super) fn admit(jobs: Vec<LeasedJob>) -> Admitted {
    let Some(first) = jobs.iter().position(|j| was_taken_over(&j.payload)) else {
        return Admitted {
            run: jobs,
            give_back: Vec::new(),
        };
    };
    let mut admitted = Admitted::default();
    for (i, job) in jobs.into_iter().enumerate() {
        if i == first {
            admitted.run.push(job);
        } else {
            admitted.give_back.push(job.lease_ref());
        }
    }
    admitted
}

/// Counts the suspects a runner holds (waiting or running) while the guard lives.
pub(super) struct SuspectHeld(Arc<AtomicUsize>);

impl SuspectHeld {
    pub(super) fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        SuspectHeld(count.clone())
    }
}

impl Drop for SuspectHeld {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use uuid::Uuid;

    fn job(takeovers: u32) -> LeasedJob {
        LeasedJob {
            id: Uuid::new_v4(),
            submission_id: Uuid::new_v4(),
            payload: json!({"student_sub": "s", "lease_takeovers": takeovers}),
            retry_count: 0,
            lease_key: Uuid::new_v4(),
            leased_until: chrono::Utc::now(),
            enqueued_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn a_batch_without_suspects_runs_whole() {
        let jobs = vec![job(0), job(0), job(0)];
        let ids: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
        let admitted = admit(jobs);
        assert_eq!(admitted.run.iter().map(|j| j.id).collect::<Vec<_>>(), ids);
        assert!(admitted.give_back.is_empty());
    }

    #[test]
    fn the_first_suspect_runs_alone_and_the_rest_goes_back() {
        let jobs = vec![job(0), job(1), job(2), job(0)];
        let suspect = jobs[1].id;
        let back: Vec<LeaseRef> = [0, 2, 3].iter().map(|&i| jobs[i].lease_ref()).collect();
        let admitted = admit(jobs);
        assert_eq!(admitted.run.len(), 1);
        assert_eq!(admitted.run[0].id, suspect);
        assert_eq!(admitted.give_back, back);
    }

    #[test]
    fn the_guard_counts_while_it_lives() {
        let count = Arc::new(AtomicUsize::new(0));
        let held = SuspectHeld::enter(&count);
        assert_eq!(count.load(Ordering::SeqCst), 1);
        drop(held);
        assert_eq!(count.load(Ordering::SeqCst), 0);
    }
}
