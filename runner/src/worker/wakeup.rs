//! Wake-ups for idle runners: `LISTEN learning_jobs` (our notify trigger) with polling as the
//! fallback. On a GUSTAV database without the trigger no notification ever arrives and the
//! loop simply polls. A notification for a job that becomes visible later schedules a wake-up
//! for that moment.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::db::queue::NOTIFY_CHANNEL;

/// How long from now until the job announced by `payload` (a Unix epoch in seconds) becomes
/// visible; zero for past times and for payloads that are not a number.
pub fn delay_until_visible(payload: &str, now: SystemTime) -> Duration {
    let Ok(epoch) = payload.trim().parse::<f64>() else {
        return Duration::ZERO;
    };
    if !epoch.is_finite() || epoch <= 0.0 {
        return Duration::ZERO;
    }
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    Duration::from_secs_f64((epoch - now_secs).clamp(0.0, 86_400.0))
}

/// Listens for queue notifications and wakes the loop through `wake`, reconnecting with a
/// growing pause when the connection drops, until `stop` is cancelled.
pub async fn run_listener(pool: PgPool, wake: Arc<Notify>, stop: CancellationToken) {
    let mut pause = Duration::from_millis(500);
    loop {
        let connected = tokio::select! {
            _ = stop.cancelled() => return,
            l = connect(&pool) => l,
        };
        match connected {
            Ok(mut listener) => {
                tracing::debug!(
                    event = "learning.wakeup.listening",
                    channel = NOTIFY_CHANNEL
                );
                pause = Duration::from_millis(500);
                // A notification may have been missed while disconnected.
                wake.notify_one();
                loop {
                    let received = tokio::select! {
                        _ = stop.cancelled() => return,
                        n = listener.recv() => n,
                    };
                    match received {
                        Ok(notification) => {
                            let delay =
                                delay_until_visible(notification.payload(), SystemTime::now());
                            schedule_wake(&wake, delay);
                        }
                        Err(e) => {
                            tracing::warn!(event = "learning.wakeup.listen_failed", error = %e, "notification connection lost; polling until it is back");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(event = "learning.wakeup.listen_failed", error = %e, "cannot LISTEN; polling only for now");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(30));
    }
}

async fn connect(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(NOTIFY_CHANNEL).await?;
    Ok(listener)
}

fn schedule_wake(wake: &Arc<Notify>, delay: Duration) {
    if delay.is_zero() {
        wake.notify_one();
    } else {
        let wake = Arc::clone(wake);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            wake.notify_one();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_and_garbage_payloads_wake_at_once() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(delay_until_visible("999.5", now), Duration::ZERO);
        assert_eq!(delay_until_visible("soon", now), Duration::ZERO);
        assert_eq!(delay_until_visible("", now), Duration::ZERO);
    }

    #[test]
    fn future_payloads_wait_until_visible() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(
            delay_until_visible("1010.250000", now),
            Duration::from_secs_f64(10.25)
        );
    }
}
