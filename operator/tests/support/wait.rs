//! Deadline-bound polling: every wait in the whole-loop tests ends, with the last reason the
//! condition did not hold. Never a sleep used as an assertion.

use std::time::{Duration, Instant};

/// Polls `check` every 25 ms until it returns `Ok`, or panics after `timeout` with `what` and
/// the last `Err`.
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}
