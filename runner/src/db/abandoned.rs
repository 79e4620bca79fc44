//! What happens to a connection whose call was abandoned at its deadline
//! ([`queue::CALL_DEADLINE`](super::queue::CALL_DEADLINE)).
//!
//! The pool pings every connection it takes back, without a time limit: on a half-open
//! connection (a peer that vanished without a FIN or RST) that ping waits until the kernel
//! gives up — a quarter of an hour, or for ever — and the pool slot stays taken; the
//! heartbeat's one-connection pool would be blocked for good. So for a while after any call
//! was abandoned, every returned connection is first pinged with a short deadline of its own;
//! one that does not answer is closed at once, and the pool opens a fresh one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sqlx::Connection as _;

/// How long a returned connection may take to answer the check.
pub const RELEASE_CHECK_DEADLINE: Duration = Duration::from_secs(5);

/// How long after an abandoned call returned connections are checked. Longer than it takes a
/// connection to come back to the pool after its call was dropped.
const CHECK_WINDOW: Duration = Duration::from_secs(120);

/// Milliseconds after [`epoch`] of the last abandoned call (0: none yet).
static LAST_ABANDONED_MS: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    u64::try_from(epoch().elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Notes that a call was abandoned at its deadline; the error to return for it.
pub fn abandoned_call_error() -> sqlx::Error {
    LAST_ABANDONED_MS.store(now_ms(), Ordering::Relaxed);
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "the database did not answer within 45 s",
    ))
}

/// Whether a call was abandoned within the last [`CHECK_WINDOW`].
fn recently_abandoned() -> bool {
    within_window(LAST_ABANDONED_MS.load(Ordering::Relaxed), now_ms())
}

/// Whether `last` (0: never) lies less than [`CHECK_WINDOW`] before `now`, in milliseconds.
fn within_window(last: u64, now: u64) -> bool {
    last != 0 && now.saturating_sub(last) < CHECK_WINDOW.as_millis() as u64
}

/// The pool's `after_release` hook: `Ok(true)` keeps the connection; an error makes the pool
/// close it without waiting for the peer.
pub async fn check_on_release(conn: &mut sqlx::PgConnection) -> Result<bool, sqlx::Error> {
    if !recently_abandoned() {
        return Ok(true);
    }
    match tokio::time::timeout(RELEASE_CHECK_DEADLINE, conn.ping()).await {
        Ok(Ok(())) => Ok(true),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "a returned connection did not answer its check; closed",
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_checked_only_for_a_while_after_an_abandoned_call() {
        let window = CHECK_WINDOW.as_millis() as u64;
        assert!(!within_window(0, 5), "nothing abandoned yet");
        assert!(within_window(1_000, 1_000));
        assert!(within_window(1_000, 1_000 + window - 1));
        assert!(!within_window(1_000, 1_000 + window));
        let e = abandoned_call_error();
        assert!(matches!(&e, sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut));
        assert!(recently_abandoned(), "an abandoned call opens the window");
    }
}
