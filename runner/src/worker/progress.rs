//! Liveness by progress: the job loop and the lease heartbeat each note when they last
//! completed a turn, and `/livez` fails once either has been silent for longer than the bound.
//! Every turn is bounded (database calls have deadlines, idle waits and pauses are short), so
//! silence past the bound means the runner hangs — a restart is the cure — while a database
//! or Ollama outage, where every turn still completes with an error, keeps the runner alive.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The bound when none is configured: the default lease (45 s × 4).
pub const DEFAULT_BOUND: Duration = Duration::from_secs(180);

/// The liveness bound for a runner: its lease duration (past it, its leases are lost anyway),
/// at least 120 s, and at least two poll intervals.
pub fn liveness_bound(lease: Duration, poll_interval: Duration) -> Duration {
    lease.max(Duration::from_secs(120)).max(poll_interval * 2)
}

/// When the job loop and the heartbeat last completed a turn.
#[derive(Debug)]
pub struct Progress {
    started: Instant,
    bound: Duration,
    loop_turn_ms: AtomicU64,
    heartbeat_ms: AtomicU64,
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new(DEFAULT_BOUND)
    }
}

impl Progress {
    /// Both counted as having turned just now.
    pub fn new(bound: Duration) -> Self {
        Progress {
            started: Instant::now(),
            bound,
            loop_turn_ms: AtomicU64::new(0),
            heartbeat_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The job loop completed a turn.
    pub fn loop_turned(&self) {
        self.loop_turn_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// The heartbeat completed a beat (extended, or failed and will try again).
    pub fn heartbeat_beat(&self) {
        self.heartbeat_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// What has been silent for longer than the bound, and for how long.
    pub fn stalled(&self) -> Option<(&'static str, Duration)> {
        let now = self.now_ms();
        stalled_part(
            [
                ("job loop", self.loop_turn_ms.load(Ordering::Relaxed)),
                ("lease heartbeat", self.heartbeat_ms.load(Ordering::Relaxed)),
            ],
            now,
            self.bound,
        )
    }
}

/// The first part whose last turn (ms since start) lies more than `bound` before `now_ms`.
fn stalled_part(
    parts: [(&'static str, u64); 2],
    now_ms: u64,
    bound: Duration,
) -> Option<(&'static str, Duration)> {
    parts.into_iter().find_map(|(name, last)| {
        let silent = Duration::from_millis(now_ms.saturating_sub(last));
        (silent > bound).then_some((name, silent))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_past_the_bound_is_stalled_and_a_turn_clears_it() {
        let bound = Duration::from_secs(180);
        let parts = |job_loop, heartbeat| [("job loop", job_loop), ("lease heartbeat", heartbeat)];
        assert_eq!(stalled_part(parts(0, 0), 180_000, bound), None);
        assert_eq!(
            stalled_part(parts(0, 100_000), 180_001, bound),
            Some(("job loop", Duration::from_millis(180_001)))
        );
        assert_eq!(
            stalled_part(parts(200_000, 10_000), 200_001, bound),
            Some(("lease heartbeat", Duration::from_millis(190_001)))
        );
        let progress = Progress::new(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
        assert!(progress.stalled().is_some());
        progress.loop_turned();
        progress.heartbeat_beat();
        assert_eq!(progress.stalled(), None);
    }

    #[test]
    fn the_bound_is_the_lease_at_least_two_minutes_and_two_polls() {
        let s = Duration::from_secs;
        assert_eq!(liveness_bound(s(180), s(1)), s(180));
        assert_eq!(liveness_bound(s(20), s(1)), s(120));
        assert_eq!(liveness_bound(s(180), s(100)), s(200));
    }
}
