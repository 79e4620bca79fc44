//! Turns SIGTERM and SIGINT into a cancellation the loop and the HTTP server watch.

use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first SIGTERM or SIGINT.
pub async fn cancel_on_signal(token: CancellationToken) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(event = "learning.shutdown.no_sigterm_handler", error = %e);
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = term => tracing::info!(event = "learning.shutdown.signal", signal = "SIGTERM"),
        _ = tokio::signal::ctrl_c() => tracing::info!(event = "learning.shutdown.signal", signal = "SIGINT"),
        _ = token.cancelled() => return,
    }
    token.cancel();
}
