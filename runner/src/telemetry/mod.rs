//! Logging: `tracing` with JSON lines (default) or plain text on stderr, filtered by
//! `LOG_LEVEL`. Log fields are ids, codes and timings only (never student data).

pub mod metrics;

use tracing_subscriber::EnvFilter;

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `LOG_LEVEL` is not a level or filter.
    #[error(
        "LOG_LEVEL: '{0}' is not a log level or filter (try info, debug, or learning_runner=debug)"
    )]
    Filter(String),
    /// `LOG_FORMAT` is not `json` or `plain`.
    #[error("LOG_FORMAT: '{0}' is not 'json' or 'plain'")]
    Format(String),
}

/// Installs the global subscriber.
pub fn init(level: &str, format: &str) -> Result<(), TelemetryError> {
    let filter = EnvFilter::try_new(level).map_err(|_| TelemetryError::Filter(level.to_owned()))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        "json" => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        "plain" => builder.with_ansi(false).init(),
        other => return Err(TelemetryError::Format(other.to_owned())),
    }
    Ok(())
}
