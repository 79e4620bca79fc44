//! Typed configuration, validated once at start with errors that name the variable to fix.
//!
//! [`runner_config`] checks the settings section by section, in a fixed order (so the first
//! problem reported is always the same one): the worker's concurrency, which sizes the
//! [`database`] pool, then [`ai`], the rest of [`worker`], [`storage`] and [`http`].

pub mod ai;
pub mod database;
pub mod http;
pub mod storage;
pub mod worker;

#[cfg(test)]
mod tests;

use crate::cli::Settings;
use crate::db::dsn::DsnError;
use learning_contract::url::OllamaUrlError;

pub use self::ai::{
    structured_output, think_level, AiConfig, Backend, NumPredict, ThinkLevel, NUM_PREDICT_RANGE,
    PRODUCTION_ENVS, TIMEOUT_RANGE,
};
pub use self::database::{database_config, DatabaseConfig};
pub use self::http::HttpConfig;
pub use self::storage::StorageConfig;
pub use self::worker::{WorkerConfig, MAX_CONCURRENCY};

/// A setting that failed validation.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The DSN is missing, malformed or privileged.
    #[error(transparent)]
    Dsn(#[from] DsnError),
    /// `OLLAMA_BASE_URL` is not acceptable.
    #[error("OLLAMA_BASE_URL {0}")]
    OllamaUrl(#[from] OllamaUrlError),
    /// Any other setting, named by its environment variable.
    #[error("{name}: {problem}")]
    Invalid {
        /// The environment variable.
        name: &'static str,
        /// What is wrong and what is allowed.
        problem: String,
    },
}

fn invalid(name: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name,
        problem: problem.into(),
    }
}

fn non_empty(name: &'static str, value: &str) -> Result<String, ConfigError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(invalid(name, "must not be empty"));
    }
    Ok(v.to_owned())
}

/// Everything the job loop needs.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Database.
    pub database: DatabaseConfig,
    /// AI.
    pub ai: AiConfig,
    /// Loop.
    pub worker: WorkerConfig,
    /// Storage.
    pub storage: StorageConfig,
    /// HTTP.
    pub http: HttpConfig,
    /// Settings that were accepted with a fallback, to be logged once at start.
    pub warnings: Vec<String>,
}

/// Validates every setting the job loop uses.
pub fn runner_config(settings: &Settings) -> Result<RunnerConfig, ConfigError> {
    let concurrency = worker::concurrency(settings)?;
    let database = database_config(settings, true, concurrency as u32 + 4)?;
    let (ai, warnings) = ai::ai_config(settings)?;
    let worker = worker::worker_config(settings, concurrency)?;
    let storage = storage::storage_config(settings, ai.backend)?;
    let http = http::http_config(settings)?;
    Ok(RunnerConfig {
        database,
        ai,
        worker,
        storage,
        http,
        warnings,
    })
}
