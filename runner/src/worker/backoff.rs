//! Retry delays: exponential in the retry count, capped, with additive jitter so that many
//! jobs failing together do not come back in lock-step. Pure; the random draw is injected.

use std::time::Duration;

/// How retries are spaced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    /// Delay before the first retry (`WORKER_BACKOFF_SECONDS`).
    pub base: Duration,
    /// Upper bound of the exponential part.
    pub cap: Duration,
    /// Extra random delay as a fraction of the exponential part, in `[0, 1]`.
    pub jitter_ratio: f64,
}

impl BackoffPolicy {
    /// The deterministic part of the delay: `min(cap, base · 2^retry_count)`.
    pub fn exponential(&self, retry_count: u32) -> Duration {
        let factor = 2f64.powi(retry_count.min(62) as i32);
        let secs = (self.base.as_secs_f64() * factor).min(self.cap.as_secs_f64());
        Duration::from_secs_f64(secs.max(0.0))
    }

    /// The delay for a job that has been retried `retry_count` times, where `unit_draw` is a
    /// uniform random number in `[0, 1)`. Never shorter than [`Self::exponential`], so
    /// `visible_at ≥ now + base · 2^n` holds below the cap.
    pub fn delay(&self, retry_count: u32, unit_draw: f64) -> Duration {
        let exp = self.exponential(retry_count);
        let jitter =
            exp.as_secs_f64() * self.jitter_ratio.clamp(0.0, 1.0) * unit_draw.clamp(0.0, 1.0);
        exp + Duration::from_secs_f64(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BackoffPolicy {
        BackoffPolicy {
            base: Duration::from_secs(10),
            cap: Duration::from_secs(300),
            jitter_ratio: 0.1,
        }
    }

    #[test]
    fn doubles_per_retry() {
        let p = policy();
        assert_eq!(p.exponential(0), Duration::from_secs(10));
        assert_eq!(p.exponential(1), Duration::from_secs(20));
        assert_eq!(p.exponential(3), Duration::from_secs(80));
    }

    #[test]
    fn is_capped() {
        assert_eq!(policy().exponential(10), Duration::from_secs(300));
        assert_eq!(policy().exponential(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn jitter_only_adds_and_is_bounded() {
        let p = policy();
        assert_eq!(p.delay(1, 0.0), Duration::from_secs(20));
        let max = p.delay(1, 0.999_999);
        assert!(max > Duration::from_secs(20) && max <= Duration::from_secs(22));
        assert_eq!(
            p.delay(1, 7.0),
            Duration::from_secs(22),
            "draws are clamped"
        );
    }
}
