//! The job loop's section: concurrency, retries and their backoff, the lease and its
//! heartbeat, polling and the drain on shutdown.

use std::time::Duration;

use super::{invalid, ConfigError};
use crate::cli::Settings;
use crate::worker::backoff::BackoffPolicy;

/// The highest concurrency a runner accepts.
pub const MAX_CONCURRENCY: usize = 1024;

/// Loop settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Jobs at once.
    pub concurrency: usize,
    /// Transient retries before failing.
    pub max_retries: u32,
    /// Retry spacing.
    pub backoff: BackoffPolicy,
    /// How long a lease lasts without a heartbeat.
    pub lease_duration: Duration,
    /// How often held leases are extended.
    pub heartbeat_interval: Duration,
    /// Polling interval when idle.
    pub poll_interval: Duration,
    /// Time running jobs get after SIGTERM.
    pub drain_grace: Duration,
    /// Exit when nothing is queued or leased.
    pub exit_when_drained: bool,
    /// Use LISTEN/NOTIFY wake-ups.
    pub listen_notify: bool,
}

/// `WORKER_CONCURRENCY`, checked on its own: it sizes the database pool, which is checked
/// before the rest of the loop's settings.
pub fn concurrency(settings: &Settings) -> Result<usize, ConfigError> {
    let concurrency = settings.worker_concurrency;
    if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
        return Err(invalid(
            "WORKER_CONCURRENCY",
            format!("{concurrency} is out of range; allowed 1..={MAX_CONCURRENCY}"),
        ));
    }
    Ok(concurrency)
}

/// The loop settings, for a `concurrency` already checked by [`concurrency`].
pub fn worker_config(settings: &Settings, concurrency: usize) -> Result<WorkerConfig, ConfigError> {
    let heartbeat_interval = seconds(
        "WORKER_LEASE_SECONDS",
        settings.worker_lease_seconds,
        0.2,
        3600.0,
    )?;
    if !(1.5..=100.0).contains(&settings.worker_lease_multiplier) {
        return Err(invalid(
            "WORKER_LEASE_MULTIPLIER",
            "must lie in 1.5..=100 so a lease outlives a missed heartbeat",
        ));
    }
    let backoff = backoff_policy(settings)?;
    if settings.worker_max_retries > 100 {
        return Err(invalid("WORKER_MAX_RETRIES", "must be at most 100"));
    }
    Ok(WorkerConfig {
        concurrency,
        max_retries: settings.worker_max_retries,
        backoff,
        lease_duration: heartbeat_interval.mul_f64(settings.worker_lease_multiplier),
        heartbeat_interval,
        poll_interval: seconds(
            "WORKER_POLL_INTERVAL",
            settings.worker_poll_interval,
            0.01,
            60.0,
        )?,
        drain_grace: seconds(
            "WORKER_DRAIN_GRACE_SECONDS",
            settings.worker_drain_grace_seconds,
            0.0,
            3600.0,
        )?,
        exit_when_drained: settings.exit_when_drained,
        listen_notify: settings.listen_notify,
    })
}

/// Retry spacing: `WORKER_BACKOFF_SECONDS` doubling up to `WORKER_BACKOFF_MAX_SECONDS`.
fn backoff_policy(settings: &Settings) -> Result<BackoffPolicy, ConfigError> {
    let base = seconds(
        "WORKER_BACKOFF_SECONDS",
        settings.worker_backoff_seconds,
        0.0,
        86_400.0,
    )?;
    let cap = seconds(
        "WORKER_BACKOFF_MAX_SECONDS",
        settings.worker_backoff_max_seconds,
        0.0,
        7.0 * 86_400.0,
    )?;
    if cap < base {
        return Err(invalid(
            "WORKER_BACKOFF_MAX_SECONDS",
            "must not be below WORKER_BACKOFF_SECONDS",
        ));
    }
    Ok(BackoffPolicy {
        base,
        cap,
        jitter_ratio: 0.1,
    })
}

fn seconds(name: &'static str, value: f64, min: f64, max: f64) -> Result<Duration, ConfigError> {
    if !value.is_finite() || value < min || value > max {
        return Err(invalid(
            name,
            format!("{value} is out of range; allowed {min}..={max} seconds"),
        ));
    }
    Ok(Duration::from_secs_f64(value))
}
