//! The environment variables the runner reads — its whole configuration (GUSTAV's names,
//! contract §8, plus the runner's own). The runner's command line takes its names from here,
//! the operator sets them from here, and the CRD refuses `spec.runner.env` entries that would
//! override the ones the operator sets ([`OPERATOR_SET`]).

/// The DSN (GUSTAV's name).
pub const LEARNING_DATABASE_URL: &str = "LEARNING_DATABASE_URL";
/// The DSN (older alias).
pub const LEARNING_DB_URL: &str = "LEARNING_DB_URL";
/// The DSN (generic alias).
pub const DATABASE_URL: &str = "DATABASE_URL";
/// Allow a login role that bypasses row-level security.
pub const LEARNING_ALLOW_SUPERUSER_DSN: &str = "LEARNING_ALLOW_SUPERUSER_DSN";
/// Size of the job connection pool.
pub const LEARNING_DB_MAX_CONNECTIONS: &str = "LEARNING_DB_MAX_CONNECTIONS";
/// `stub` or `local` (Ollama).
pub const AI_BACKEND: &str = "AI_BACKEND";
/// GUSTAV's environment name (`prod` refuses the stub backend).
pub const GUSTAV_ENV: &str = "GUSTAV_ENV";
/// Ollama's base URL (see [`crate::url::check_ollama_base_url`]).
pub const OLLAMA_BASE_URL: &str = "OLLAMA_BASE_URL";
/// The vision model.
pub const AI_VISION_MODEL: &str = "AI_VISION_MODEL";
/// The feedback model.
pub const AI_FEEDBACK_MODEL: &str = "AI_FEEDBACK_MODEL";
/// Seconds per vision call.
pub const AI_TIMEOUT_VISION: &str = "AI_TIMEOUT_VISION";
/// Seconds per feedback call.
pub const AI_TIMEOUT_FEEDBACK: &str = "AI_TIMEOUT_FEEDBACK";
/// Model phases a runner sends to Ollama at once.
pub const AI_MAX_PARALLEL_CALLS: &str = "AI_MAX_PARALLEL_CALLS";
/// The longest a model step is held back for its model's phase (0: first come, first served).
pub const AI_MAX_PHASE_WAIT_SECONDS: &str = "AI_MAX_PHASE_WAIT_SECONDS";
/// Most tokens the vision model may generate for one image (`num_predict`).
pub const AI_NUM_PREDICT_VISION: &str = "AI_NUM_PREDICT_VISION";
/// Most tokens the feedback model may generate for the analysis (`num_predict`).
pub const AI_NUM_PREDICT_ANALYSIS: &str = "AI_NUM_PREDICT_ANALYSIS";
/// Most tokens the feedback model may generate for the feedback text (`num_predict`).
pub const AI_NUM_PREDICT_FEEDBACK: &str = "AI_NUM_PREDICT_FEEDBACK";
/// Structured (JSON-schema) output for the analysis.
pub const LEARNING_DSPY_JSON_ADAPTER: &str = "LEARNING_DSPY_JSON_ADAPTER";
/// Reasoning effort of thinking models.
pub const AI_THINK_LEVEL: &str = "AI_THINK_LEVEL";
/// How long Ollama keeps a model loaded after a call.
pub const OLLAMA_KEEP_ALIVE: &str = "OLLAMA_KEEP_ALIVE";
/// Pull missing models at start.
pub const OLLAMA_PULL_MISSING: &str = "OLLAMA_PULL_MISSING";
/// Artificial delay of the stub backend.
pub const AI_STUB_DELAY_MS: &str = "AI_STUB_DELAY_MS";
/// Attempts before a job fails for good.
pub const WORKER_MAX_RETRIES: &str = "WORKER_MAX_RETRIES";
/// First retry delay.
pub const WORKER_BACKOFF_SECONDS: &str = "WORKER_BACKOFF_SECONDS";
/// Longest retry delay.
pub const WORKER_BACKOFF_MAX_SECONDS: &str = "WORKER_BACKOFF_MAX_SECONDS";
/// Lease length.
pub const WORKER_LEASE_SECONDS: &str = "WORKER_LEASE_SECONDS";
/// Lease length as a multiple of the heartbeat.
pub const WORKER_LEASE_MULTIPLIER: &str = "WORKER_LEASE_MULTIPLIER";
/// Jobs in flight per runner.
pub const WORKER_CONCURRENCY: &str = "WORKER_CONCURRENCY";
/// Seconds between polls of an idle queue.
pub const WORKER_POLL_INTERVAL: &str = "WORKER_POLL_INTERVAL";
/// Wake up on PostgreSQL notifications.
pub const WORKER_LISTEN_NOTIFY: &str = "WORKER_LISTEN_NOTIFY";
/// Time running jobs get to finish on shutdown.
pub const WORKER_DRAIN_GRACE_SECONDS: &str = "WORKER_DRAIN_GRACE_SECONDS";
/// Exit once the queue is empty.
pub const WORKER_EXIT_WHEN_DRAINED: &str = "WORKER_EXIT_WHEN_DRAINED";
/// The mounted submissions volume.
pub const STORAGE_VERIFY_ROOT: &str = "STORAGE_VERIFY_ROOT";
/// Supabase's base URL (see [`crate::url::check_supabase_url`]).
pub const SUPABASE_URL: &str = "SUPABASE_URL";
/// Supabase's service-role key.
pub const SUPABASE_SERVICE_ROLE_KEY: &str = "SUPABASE_SERVICE_ROLE_KEY";
/// The submissions bucket.
pub const LEARNING_STORAGE_BUCKET: &str = "LEARNING_STORAGE_BUCKET";
/// Address of the HTTP server.
pub const LEARNING_HTTP_ADDR: &str = "LEARNING_HTTP_ADDR";
/// Bearer token for the health report.
pub const LEARNING_HEALTH_TOKEN: &str = "LEARNING_HEALTH_TOKEN";
/// Log level or filter.
pub const LOG_LEVEL: &str = "LOG_LEVEL";
/// `json` (default) or `plain`.
pub const LOG_FORMAT: &str = "LOG_FORMAT";

/// Every variable the runner reads.
pub const RUNNER_READS: [&str; 40] = [
    LEARNING_DATABASE_URL,
    LEARNING_DB_URL,
    DATABASE_URL,
    LEARNING_ALLOW_SUPERUSER_DSN,
    LEARNING_DB_MAX_CONNECTIONS,
    AI_BACKEND,
    GUSTAV_ENV,
    OLLAMA_BASE_URL,
    AI_VISION_MODEL,
    AI_FEEDBACK_MODEL,
    AI_TIMEOUT_VISION,
    AI_TIMEOUT_FEEDBACK,
    AI_MAX_PARALLEL_CALLS,
    AI_MAX_PHASE_WAIT_SECONDS,
    AI_NUM_PREDICT_VISION,
    AI_NUM_PREDICT_ANALYSIS,
    AI_NUM_PREDICT_FEEDBACK,
    LEARNING_DSPY_JSON_ADAPTER,
    AI_THINK_LEVEL,
    OLLAMA_KEEP_ALIVE,
    OLLAMA_PULL_MISSING,
    AI_STUB_DELAY_MS,
    WORKER_MAX_RETRIES,
    WORKER_BACKOFF_SECONDS,
    WORKER_BACKOFF_MAX_SECONDS,
    WORKER_LEASE_SECONDS,
    WORKER_LEASE_MULTIPLIER,
    WORKER_CONCURRENCY,
    WORKER_POLL_INTERVAL,
    WORKER_LISTEN_NOTIFY,
    WORKER_DRAIN_GRACE_SECONDS,
    WORKER_EXIT_WHEN_DRAINED,
    STORAGE_VERIFY_ROOT,
    SUPABASE_URL,
    SUPABASE_SERVICE_ROLE_KEY,
    LEARNING_STORAGE_BUCKET,
    LEARNING_HTTP_ADDR,
    LEARNING_HEALTH_TOKEN,
    LOG_LEVEL,
    LOG_FORMAT,
];

/// The variables `spec.runner.env` must not name: those the operator sets itself (from the
/// LearningWorker spec and its Secrets; the DSN and the Supabase key in particular may only come
/// from Secret references), and `LEARNING_HEALTH_TOKEN`, which the operator leaves unset on
/// purpose: it reads the health report without a token (it reads no Secrets), so with one set
/// the report would answer 401 and the status would never show the runners' health.
pub const OPERATOR_SET: [&str; 31] = [
    LEARNING_DATABASE_URL,
    LEARNING_DB_URL,
    DATABASE_URL,
    LEARNING_ALLOW_SUPERUSER_DSN,
    SUPABASE_SERVICE_ROLE_KEY,
    SUPABASE_URL,
    STORAGE_VERIFY_ROOT,
    LEARNING_STORAGE_BUCKET,
    AI_BACKEND,
    GUSTAV_ENV,
    OLLAMA_BASE_URL,
    AI_VISION_MODEL,
    AI_FEEDBACK_MODEL,
    AI_TIMEOUT_VISION,
    AI_TIMEOUT_FEEDBACK,
    LEARNING_DSPY_JSON_ADAPTER,
    AI_THINK_LEVEL,
    WORKER_MAX_RETRIES,
    WORKER_BACKOFF_SECONDS,
    WORKER_BACKOFF_MAX_SECONDS,
    WORKER_LEASE_SECONDS,
    WORKER_LEASE_MULTIPLIER,
    WORKER_CONCURRENCY,
    WORKER_POLL_INTERVAL,
    WORKER_LISTEN_NOTIFY,
    WORKER_DRAIN_GRACE_SECONDS,
    WORKER_EXIT_WHEN_DRAINED,
    LEARNING_HTTP_ADDR,
    LOG_LEVEL,
    LOG_FORMAT,
    LEARNING_HEALTH_TOKEN,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_the_operator_sets_is_one_the_runner_reads() {
        for name in OPERATOR_SET {
            assert!(RUNNER_READS.contains(&name), "{name}");
        }
        let mut unique = RUNNER_READS.to_vec();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), RUNNER_READS.len(), "a name is listed twice");
    }
}
