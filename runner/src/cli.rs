//! The command line: subcommands and every setting, each also readable from the environment
//! under the contract's names (§8). Values are raw here; [`crate::config`] validates them once.

use learning_contract::env;
use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, Parser, Subcommand};

use crate::db::dsn::Secret;

/// GUSTAV learning-worker job runner.
#[derive(Debug, Parser)]
#[command(name = "learning-runner", version, about, long_about = None, args_override_self = true)]
pub struct Cli {
    /// What to do; the job loop when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings shared by all subcommands.
    #[command(flatten)]
    pub settings: Settings,
}

/// Subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Run the job loop with its HTTP endpoints (the default).
    Run,
    /// Apply the bundled migrations (standalone deployments, tests, demo) and exit.
    Migrate,
    /// Run the database health probe once; exit 0 when every check is ok, 1 otherwise.
    Healthcheck,
    /// Check configuration, database, schema, Ollama and models; ✔/✘ per check with the fix.
    Preflight {
        /// Also process one synthetic submission end to end (database writes rolled back).
        #[arg(long)]
        with_test_submission: bool,
    },
}

/// Every setting, with its environment variable.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// PostgreSQL DSN (first choice).
    #[arg(
        long,
        env = env::LEARNING_DATABASE_URL,
        global = true,
        hide_env_values = true
    )]
    pub database_url: Option<Secret>,
    /// PostgreSQL DSN (second choice).
    #[arg(
        long,
        env = env::LEARNING_DB_URL,
        global = true,
        hide = true,
        hide_env_values = true
    )]
    pub learning_db_url: Option<Secret>,
    /// PostgreSQL DSN (third choice).
    #[arg(
        long = "fallback-database-url",
        env = env::DATABASE_URL,
        global = true,
        hide = true,
        hide_env_values = true
    )]
    pub fallback_database_url: Option<Secret>,
    /// Allow a privileged DSN user (postgres, service_role, supabase_admin). Tests only.
    #[arg(long, env = env::LEARNING_ALLOW_SUPERUSER_DSN, global = true, value_parser = BoolishValueParser::new(), action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub allow_superuser_dsn: bool,

    /// AI backend: `stub` (deterministic, no model) or `local` (Ollama).
    #[arg(long, env = env::AI_BACKEND, default_value = "stub")]
    pub ai_backend: String,
    /// Deployment environment; `stub` is refused in prod/production/stage/staging.
    #[arg(long, env = env::GUSTAV_ENV)]
    pub gustav_env: Option<String>,
    /// Ollama base URL (local or in-cluster hosts only).
    #[arg(long, env = env::OLLAMA_BASE_URL, default_value = "http://ollama:11434")]
    pub ollama_base_url: String,
    /// Vision model name.
    #[arg(long, env = env::AI_VISION_MODEL, default_value = "qwen2.5vl:3b")]
    pub ai_vision_model: String,
    /// Feedback model name.
    #[arg(long, env = env::AI_FEEDBACK_MODEL, default_value = "gpt-oss:latest")]
    pub ai_feedback_model: String,
    /// Vision timeout in seconds (1..=300).
    #[arg(long, env = env::AI_TIMEOUT_VISION, default_value_t = 30)]
    pub ai_timeout_vision: u64,
    /// Feedback timeout in seconds (1..=300).
    #[arg(long, env = env::AI_TIMEOUT_FEEDBACK, default_value_t = 15)]
    pub ai_timeout_feedback: u64,
    /// Model steps (a vision or a feedback step, each one or a few calls) this runner sends
    /// to Ollama at once per model; set it to what Ollama serves in parallel for this runner
    /// (`OLLAMA_NUM_PARALLEL`, per loaded model, × Ollama replicas ÷ runners). Unset:
    /// `WORKER_CONCURRENCY` (no limit beyond the jobs).
    #[arg(long, env = env::AI_MAX_PARALLEL_CALLS)]
    pub ai_max_parallel_calls: Option<u32>,
    /// The longest a model step is held back for its model's phase, in seconds (0..=3600; 0:
    /// first come, first served, no grouping into phases). Matters with more than one job at
    /// a time (`WORKER_CONCURRENCY`) and the local backend.
    #[arg(long, env = env::AI_MAX_PHASE_WAIT_SECONDS, default_value_t = 120)]
    pub ai_max_phase_wait_seconds: u64,
    /// Most tokens the vision model may write for one image (`num_predict`), 64..=32768.
    #[arg(long, env = env::AI_NUM_PREDICT_VISION, default_value_t = 4096)]
    pub ai_num_predict_vision: u32,
    /// Most tokens the feedback model may write for the analysis, reasoning included
    /// (`num_predict`), 64..=32768.
    #[arg(long, env = env::AI_NUM_PREDICT_ANALYSIS, default_value_t = 4096)]
    pub ai_num_predict_analysis: u32,
    /// Most tokens the feedback model may write for the feedback text, reasoning included
    /// (`num_predict`), 64..=32768.
    #[arg(long, env = env::AI_NUM_PREDICT_FEEDBACK, default_value_t = 2048)]
    pub ai_num_predict_feedback: u32,
    /// Ask the model for schema-constrained JSON; read as GUSTAV reads it: unset or 1, true,
    /// yes, on means on; any other value (GUSTAV's runbook writes `default`, `false`) means off,
    /// and free text is parsed tolerantly.
    #[arg(long, env = env::LEARNING_DSPY_JSON_ADAPTER, num_args = 0..=1, default_missing_value = "true")]
    pub learning_dspy_json_adapter: Option<String>,
    /// Reasoning effort for gpt-oss* models: low, medium or high; unset means low, any other
    /// value falls back to low with a warning (as GUSTAV does).
    #[arg(long, env = env::AI_THINK_LEVEL)]
    pub ai_think_level: Option<String>,
    /// How long Ollama keeps a model loaded after a call (e.g. `30m`); Ollama's default when unset.
    #[arg(long, env = env::OLLAMA_KEEP_ALIVE, allow_hyphen_values = true)]
    pub ollama_keep_alive: Option<String>,
    /// Pull configured models that are missing in Ollama at start.
    #[arg(long, env = env::OLLAMA_PULL_MISSING, value_parser = BoolishValueParser::new(), action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub ollama_pull_missing: bool,
    /// Simulated latency of every stub call, in milliseconds (demos, benchmarks, tests).
    #[arg(long, env = env::AI_STUB_DELAY_MS, default_value_t = 0)]
    pub ai_stub_delay_ms: u64,

    /// Retries of a transient error before the job fails.
    #[arg(long, env = env::WORKER_MAX_RETRIES, default_value_t = 3)]
    pub worker_max_retries: u32,
    /// Base of the exponential retry delay, in seconds.
    #[arg(long, env = env::WORKER_BACKOFF_SECONDS, default_value_t = 10.0)]
    pub worker_backoff_seconds: f64,
    /// Cap of the exponential retry delay, in seconds.
    #[arg(long, env = env::WORKER_BACKOFF_MAX_SECONDS, default_value_t = 600.0)]
    pub worker_backoff_max_seconds: f64,
    /// Heartbeat interval in seconds; the lease lasts this times the multiplier.
    #[arg(long, env = env::WORKER_LEASE_SECONDS, default_value_t = 45.0)]
    pub worker_lease_seconds: f64,
    /// Lease length as a multiple of the heartbeat interval.
    #[arg(long, env = env::WORKER_LEASE_MULTIPLIER, default_value_t = 4.0)]
    pub worker_lease_multiplier: f64,
    /// Jobs processed at once by this runner.
    #[arg(long, env = env::WORKER_CONCURRENCY, default_value_t = 1)]
    pub worker_concurrency: usize,
    /// Polling interval in seconds (fallback when no notification arrives).
    #[arg(long, env = env::WORKER_POLL_INTERVAL, default_value_t = 0.5)]
    pub worker_poll_interval: f64,
    /// Wake on `LISTEN learning_jobs` notifications (polling stays as the fallback).
    #[arg(long, env = env::WORKER_LISTEN_NOTIFY, value_parser = BoolishValueParser::new(), action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value = "true")]
    pub listen_notify: bool,
    /// Seconds running jobs get to finish after SIGTERM before their leases are released.
    #[arg(long, env = env::WORKER_DRAIN_GRACE_SECONDS, default_value_t = 25.0)]
    pub worker_drain_grace_seconds: f64,
    /// Exit once no queued or leased job is left (demo, benchmarks, batch runs).
    #[arg(long, env = env::WORKER_EXIT_WHEN_DRAINED, value_parser = BoolishValueParser::new(), action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub exit_when_drained: bool,
    /// Database pool size; default: concurrency + 4.
    #[arg(long, env = env::LEARNING_DB_MAX_CONNECTIONS)]
    pub db_max_connections: Option<u32>,

    /// Local root of the submissions volume.
    #[arg(long, env = env::STORAGE_VERIFY_ROOT)]
    pub storage_verify_root: Option<PathBuf>,
    /// Supabase URL for the storage fallback.
    #[arg(long, env = env::SUPABASE_URL)]
    pub supabase_url: Option<String>,
    /// Supabase service-role key (a secret).
    #[arg(long, env = env::SUPABASE_SERVICE_ROLE_KEY, hide_env_values = true)]
    pub supabase_service_role_key: Option<Secret>,
    /// Storage bucket of the submissions.
    #[arg(long, env = env::LEARNING_STORAGE_BUCKET, default_value = "submissions")]
    pub learning_storage_bucket: String,

    /// Address of the HTTP server (probes, health, metrics).
    #[arg(long, env = env::LEARNING_HTTP_ADDR, default_value = "0.0.0.0:8080")]
    pub http_addr: String,
    /// Bearer token required by the health endpoint, when set.
    #[arg(long, env = env::LEARNING_HEALTH_TOKEN, hide_env_values = true)]
    pub health_token: Option<Secret>,

    /// Log level or filter (e.g. `info`, `learning_runner=debug`).
    #[arg(long, env = env::LOG_LEVEL, global = true, default_value = "info")]
    pub log_level: String,
    /// Log format: `json` (one object per line) or `plain`.
    #[arg(long, env = env::LOG_FORMAT, global = true, default_value = "json")]
    pub log_format: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn env_names(command: &clap::Command, names: &mut Vec<String>) {
        for arg in command.get_arguments() {
            if let Some(name) = arg.get_env() {
                names.push(name.to_string_lossy().into_owned());
            }
        }
        for sub in command.get_subcommands() {
            env_names(sub, names);
        }
    }

    #[test]
    fn reads_exactly_the_environment_the_contract_lists() {
        let mut read = Vec::new();
        env_names(&Cli::command(), &mut read);
        read.sort();
        read.dedup();
        let mut listed: Vec<String> = env::RUNNER_READS.iter().map(|n| n.to_string()).collect();
        listed.sort();
        assert_eq!(read, listed);
    }
}
