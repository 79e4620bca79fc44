//! The leases this runner holds right now, and the heartbeat that extends them.
//!
//! One heartbeat statement per interval extends every held lease; a lease that could not be
//! extended was taken over (or its job vanished) and is counted as lost. The finish of such a
//! job is refused by the fence anyway; the heartbeat only makes the loss visible early.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::db::queue::{self, LeaseRef};
use crate::telemetry::metrics::Metrics;

/// Shared set of held leases (job id → lease key).
#[derive(Clone, Default, Debug)]
pub struct LeaseRegistry {
    held: Arc<Mutex<HashMap<Uuid, Uuid>>>,
}

impl LeaseRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Uuid>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a new lease.
    pub fn insert(&self, lease: LeaseRef) {
        self.lock().insert(lease.job_id, lease.lease_key);
    }

    /// Forgets a lease (the job finished, one way or another).
    pub fn remove(&self, job_id: Uuid) {
        self.lock().remove(&job_id);
    }

    /// Forgets `lease` if it is still held with that key; true when it was.
    pub fn remove_exact(&self, lease: LeaseRef) -> bool {
        let mut held = self.lock();
        if held.get(&lease.job_id) == Some(&lease.lease_key) {
            held.remove(&lease.job_id);
            true
        } else {
            false
        }
    }

    /// Every held lease.
    pub fn snapshot(&self) -> Vec<LeaseRef> {
        self.lock()
            .iter()
            .map(|(&job_id, &lease_key)| LeaseRef { job_id, lease_key })
            .collect()
    }

    /// How many leases are held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no lease is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Extends every held lease once; returns how many were lost. A lease whose row is locked by
/// its own finish right now is left as it is (the lock protects it). A lease counts as lost only
/// when its job is still registered with the same key (a job that simply finished between the
/// snapshot and the statement is not lost); lost leases are forgotten so they are reported
/// once, and the job's finish is refused by the fence anyway.
pub async fn beat_once(
    pool: &PgPool,
    registry: &LeaseRegistry,
    metrics: &Metrics,
    lease: Duration,
) -> Result<usize, sqlx::Error> {
    let held = registry.snapshot();
    if held.is_empty() {
        return Ok(0);
    }
    let found = queue::extend_leases(pool, &held, lease).await?;
    metrics
        .heartbeats
        .with_label_values(&["extended"])
        .inc_by(found.extended.len() as u64);
    metrics
        .heartbeats
        .with_label_values(&["busy"])
        .inc_by(found.busy.len() as u64);
    let mut lost = 0;
    let kept = |h: &&LeaseRef| found.extended.contains(h) || found.busy.contains(h);
    for gone in held.iter().filter(|h| !kept(h)) {
        if registry.remove_exact(*gone) {
            lost += 1;
            tracing::warn!(event = "learning.lease.lost", job_id = %gone.job_id, "lease could not be extended; another runner holds the job now");
        }
    }
    metrics
        .heartbeats
        .with_label_values(&["lost"])
        .inc_by(lost as u64);
    Ok(lost)
}

/// Runs the heartbeat every `interval` until `stop` is cancelled; notes each beat in `state`
/// (for `/livez`).
pub async fn run_heartbeat(
    pool: PgPool,
    registry: LeaseRegistry,
    metrics: Metrics,
    state: std::sync::Arc<super::RunnerState>,
    interval: Duration,
    lease: Duration,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick fires at once; leases are fresh then
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if let Err(e) = beat_once(&pool, &registry, &metrics, lease).await {
            metrics.heartbeats.with_label_values(&["error"]).inc();
            metrics.db_errors.with_label_values(&["heartbeat"]).inc();
            tracing::warn!(event = "learning.lease.heartbeat_failed", error = %e, "could not extend leases; will try again");
        }
        state.progress.heartbeat_beat();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_tracks_inserts_and_removals() {
        let r = LeaseRegistry::default();
        let a = LeaseRef {
            job_id: Uuid::new_v4(),
            lease_key: Uuid::new_v4(),
        };
        r.insert(a);
        assert_eq!(r.snapshot(), vec![a]);
        let other_key = LeaseRef {
            job_id: a.job_id,
            lease_key: Uuid::new_v4(),
        };
        assert!(!r.remove_exact(other_key), "another key does not remove it");
        assert!(r.remove_exact(a));
        assert!(r.is_empty());
        r.insert(a);
        r.remove(a.job_id);
        assert!(r.is_empty());
    }
}
