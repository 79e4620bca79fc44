//! Typed configuration, validated once at start with errors that name the variable to fix.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;

use crate::cli::Settings;
use crate::db::dsn::{self, DsnError, Secret};
use crate::worker::backoff::BackoffPolicy;
use learning_contract::env::SUPABASE_URL;
use learning_contract::url::{check_ollama_base_url, check_supabase_url, OllamaUrlError};

/// Environments in which the stub backend is refused.
pub const PRODUCTION_ENVS: [&str; 4] = ["prod", "production", "stage", "staging"];
/// Timeouts of model calls must lie in this range, in seconds.
pub const TIMEOUT_RANGE: std::ops::RangeInclusive<u64> = 1..=300;
/// The highest concurrency a runner accepts.
pub const MAX_CONCURRENCY: usize = 1024;

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

/// Which AI backend runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Deterministic outputs, no model.
    Stub,
    /// A local Ollama.
    Local,
}

impl Backend {
    /// The name used in logs and `AI_BACKEND`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Stub => "stub",
            Backend::Local => "local",
        }
    }
}

/// Reasoning effort for gpt-oss models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThinkLevel {
    /// Fast.
    Low,
    /// Balanced.
    Medium,
    /// Thorough.
    High,
}

/// Database settings. `Debug` leaves the connection options (and so the password) out.
#[derive(Clone)]
pub struct DatabaseConfig {
    /// Parsed connection options (the password stays inside).
    pub connect: PgConnectOptions,
    /// Pool size.
    pub max_connections: u32,
    /// Whether a login role that bypasses RLS may connect (tests, and `migrate`).
    pub allow_privileged: bool,
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("host", &self.connect.get_host())
            .field("user", &self.connect.get_username())
            .field("database", &self.connect.get_database())
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

/// AI settings.
#[derive(Debug, Clone)]
pub struct AiConfig {
    /// The backend.
    pub backend: Backend,
    /// Validated Ollama base URL, without trailing slash.
    pub ollama_base_url: String,
    /// Vision model.
    pub vision_model: String,
    /// Feedback model.
    pub feedback_model: String,
    /// Limit of one vision call.
    pub timeout_vision: Duration,
    /// Limit of one feedback call.
    pub timeout_feedback: Duration,
    /// Ask for schema-constrained JSON.
    pub structured_output: bool,
    /// Reasoning effort, only for gpt-oss models.
    pub think_level: Option<ThinkLevel>,
    /// Stub latency per call.
    pub stub_delay: Duration,
    /// `keep_alive` sent with every model call.
    pub keep_alive: Option<String>,
    /// Pull missing models at start.
    pub pull_missing: bool,
}

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

/// Submission storage settings.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Local root of the submissions volume.
    pub verify_root: Option<PathBuf>,
    /// Supabase URL for the fallback.
    pub supabase_url: Option<String>,
    /// Supabase service-role key.
    pub service_role_key: Option<Secret>,
    /// Bucket name.
    pub bucket: String,
}

/// HTTP settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Listen address.
    pub addr: SocketAddr,
    /// Bearer token for the health endpoint.
    pub health_token: Option<Secret>,
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

/// The database settings; `guard_privileged` applies the superuser guard (off for `migrate`,
/// which needs an owner role).
pub fn database_config(
    settings: &Settings,
    guard_privileged: bool,
    default_pool: u32,
) -> Result<DatabaseConfig, ConfigError> {
    let dsn = dsn::pick_dsn([
        settings.database_url.as_ref(),
        settings.learning_db_url.as_ref(),
        settings.fallback_database_url.as_ref(),
    ])?;
    let connect = dsn::connect_options(&dsn)?;
    if guard_privileged {
        dsn::guard_login(&connect, settings.allow_superuser_dsn)?;
    }
    let max_connections = settings.db_max_connections.unwrap_or(default_pool);
    if max_connections == 0 {
        return Err(invalid("LEARNING_DB_MAX_CONNECTIONS", "must be at least 1"));
    }
    Ok(DatabaseConfig {
        connect: connect.application_name("learning-runner"),
        max_connections,
        allow_privileged: !guard_privileged || settings.allow_superuser_dsn,
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

fn timeout(name: &'static str, value: u64) -> Result<Duration, ConfigError> {
    if !TIMEOUT_RANGE.contains(&value) {
        return Err(invalid(
            name,
            format!("{value} is out of range; allowed 1..=300 seconds"),
        ));
    }
    Ok(Duration::from_secs(value))
}

fn backend(settings: &Settings) -> Result<Backend, ConfigError> {
    let backend = match settings.ai_backend.trim().to_ascii_lowercase().as_str() {
        "stub" => Backend::Stub,
        "local" => Backend::Local,
        other => {
            return Err(invalid(
                "AI_BACKEND",
                format!("unknown backend '{other}'; use 'stub' or 'local'"),
            ))
        }
    };
    let env = settings
        .gustav_env
        .as_deref()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if backend == Backend::Stub && PRODUCTION_ENVS.contains(&env.as_str()) {
        return Err(invalid(
            "AI_BACKEND",
            format!("'stub' is refused when GUSTAV_ENV={env}; set AI_BACKEND=local"),
        ));
    }
    Ok(backend)
}

/// `LEARNING_DSPY_JSON_ADAPTER` as GUSTAV reads it: on when unset, else on only for `1`,
/// `true`, `yes`, `on` (trimmed, any case). A value that is neither one of those nor a usual
/// "off" spelling (`0`, `false`, `no`, `off`, `default`) gives a warning.
pub fn structured_output(raw: Option<&str>) -> (bool, Option<String>) {
    let Some(raw) = raw else {
        return (true, None);
    };
    let value = raw.trim().to_ascii_lowercase();
    let on = matches!(value.as_str(), "1" | "true" | "yes" | "on");
    let known_off = matches!(
        value.as_str(),
        "0" | "false" | "no" | "off" | "default" | ""
    );
    let warning = (!on && !known_off).then(|| {
        format!(
            "LEARNING_DSPY_JSON_ADAPTER='{}' is not 1/true/yes/on: structured output is off (free text parsed tolerantly)",
            raw.trim()
        )
    });
    (on, warning)
}

/// `AI_THINK_LEVEL` as GUSTAV reads it: `low` when unset or empty, `low` with a warning for a
/// value other than low/medium/high; sent only to models whose name starts with `gpt-oss`
/// (any case).
pub fn think_level(
    raw: Option<&str>,
    feedback_model: &str,
) -> (Option<ThinkLevel>, Option<String>) {
    let value = raw.map(str::trim).unwrap_or("").to_ascii_lowercase();
    let (level, warning) = match value.as_str() {
        "" | "low" => (ThinkLevel::Low, None),
        "medium" => (ThinkLevel::Medium, None),
        "high" => (ThinkLevel::High, None),
        _ => (
            ThinkLevel::Low,
            Some(format!(
                "AI_THINK_LEVEL='{}' is not low, medium or high: using low",
                raw.unwrap_or("").trim()
            )),
        ),
    };
    let applies = feedback_model.to_ascii_lowercase().starts_with("gpt-oss");
    (applies.then_some(level), warning)
}

fn keep_alive(settings: &Settings) -> Result<Option<String>, ConfigError> {
    let Some(raw) = settings
        .ollama_keep_alive
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    else {
        return Ok(None);
    };
    let digits = raw.trim_end_matches(['s', 'm', 'h']);
    let valid = raw == "-1"
        || (!digits.is_empty()
            && digits.len() + 1 >= raw.len()
            && digits.chars().all(|c| c.is_ascii_digit()));
    if !valid {
        return Err(invalid(
            "OLLAMA_KEEP_ALIVE",
            format!("'{raw}' is not a duration like 30s, 10m, 1h, 0 or -1"),
        ));
    }
    Ok(Some(raw.to_owned()))
}

/// A bucket name: ASCII letters, digits, `.`, `_` or `-` (no `/`, so it cannot change the
/// object path).
fn bucket_name(raw: &str) -> Result<String, ConfigError> {
    let name = non_empty("LEARNING_STORAGE_BUCKET", raw)?;
    let ok = name.len() <= 63
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !ok {
        return Err(invalid(
            "LEARNING_STORAGE_BUCKET",
            format!("'{name}' is not a bucket name (letters, digits, '.', '_', '-')"),
        ));
    }
    Ok(name)
}

/// The local backend must be able to read submission files: a readable root directory, or
/// Supabase Storage given as `http(s)://host[:port]` with its key.
fn check_storage(storage: &StorageConfig, backend: Backend) -> Result<(), ConfigError> {
    if let Some(root) = &storage.verify_root {
        if std::fs::read_dir(root).is_err() {
            return Err(invalid(
                "STORAGE_VERIFY_ROOT",
                format!("{} is not a readable directory", root.display()),
            ));
        }
    }
    if let Some(url) = &storage.supabase_url {
        if let Err(why) = check_supabase_url(url) {
            return Err(invalid(SUPABASE_URL, why.to_string()));
        }
        if storage
            .service_role_key
            .as_ref()
            .is_none_or(|k| k.expose().is_empty())
        {
            return Err(invalid(
                "SUPABASE_SERVICE_ROLE_KEY",
                "is required when SUPABASE_URL is set",
            ));
        }
    }
    if backend == Backend::Local && storage.verify_root.is_none() && storage.supabase_url.is_none()
    {
        return Err(invalid(
            "STORAGE_VERIFY_ROOT",
            "AI_BACKEND=local needs the submission files: set STORAGE_VERIFY_ROOT (the shared volume) and/or SUPABASE_URL",
        ));
    }
    Ok(())
}

fn non_empty(name: &'static str, value: &str) -> Result<String, ConfigError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(invalid(name, "must not be empty"));
    }
    Ok(v.to_owned())
}

/// Validates every setting the job loop uses.
pub fn runner_config(settings: &Settings) -> Result<RunnerConfig, ConfigError> {
    let concurrency = settings.worker_concurrency;
    if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
        return Err(invalid(
            "WORKER_CONCURRENCY",
            format!("{concurrency} is out of range; allowed 1..={MAX_CONCURRENCY}"),
        ));
    }
    let database = database_config(settings, true, concurrency as u32 + 4)?;

    let (structured_output, adapter_warning) =
        structured_output(settings.learning_dspy_json_adapter.as_deref());
    let (think_level, think_warning) = think_level(
        settings.ai_think_level.as_deref(),
        &settings.ai_feedback_model,
    );
    let warnings = [adapter_warning, think_warning]
        .into_iter()
        .flatten()
        .collect();
    let ai = AiConfig {
        backend: backend(settings)?,
        ollama_base_url: check_ollama_base_url(&settings.ollama_base_url)?,
        vision_model: non_empty("AI_VISION_MODEL", &settings.ai_vision_model)?,
        feedback_model: non_empty("AI_FEEDBACK_MODEL", &settings.ai_feedback_model)?,
        timeout_vision: timeout("AI_TIMEOUT_VISION", settings.ai_timeout_vision)?,
        timeout_feedback: timeout("AI_TIMEOUT_FEEDBACK", settings.ai_timeout_feedback)?,
        structured_output,
        think_level,
        stub_delay: Duration::from_millis(settings.ai_stub_delay_ms),
        keep_alive: keep_alive(settings)?,
        pull_missing: settings.ollama_pull_missing,
    };

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
    if settings.worker_max_retries > 100 {
        return Err(invalid("WORKER_MAX_RETRIES", "must be at most 100"));
    }
    let worker = WorkerConfig {
        concurrency,
        max_retries: settings.worker_max_retries,
        backoff: BackoffPolicy {
            base,
            cap,
            jitter_ratio: 0.1,
        },
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
    };

    let storage = StorageConfig {
        verify_root: settings.storage_verify_root.clone(),
        supabase_url: settings
            .supabase_url
            .clone()
            .filter(|s| !s.trim().is_empty()),
        service_role_key: settings.supabase_service_role_key.clone(),
        bucket: bucket_name(&settings.learning_storage_bucket)?,
    };
    check_storage(&storage, ai.backend)?;

    let addr = settings.http_addr.parse::<SocketAddr>().map_err(|_| {
        invalid(
            "LEARNING_HTTP_ADDR",
            format!(
                "'{}' is not an address like 0.0.0.0:8080",
                settings.http_addr
            ),
        )
    })?;
    let http = HttpConfig {
        addr,
        health_token: settings
            .health_token
            .clone()
            .filter(|t| !t.expose().is_empty()),
    };

    Ok(RunnerConfig {
        database,
        ai,
        worker,
        storage,
        http,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn settings(args: &[&str]) -> Settings {
        let mut argv = vec![
            "learning-runner",
            "--database-url",
            "postgres://gustav_worker:pw@localhost/gustav",
        ];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap().settings
    }

    fn problem(args: &[&str]) -> String {
        runner_config(&settings(args)).unwrap_err().to_string()
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = runner_config(&settings(&[])).unwrap();
        assert_eq!(c.ai.backend, Backend::Stub);
        assert_eq!(c.ai.ollama_base_url, "http://ollama:11434");
        assert_eq!(c.ai.vision_model, "qwen2.5vl:3b");
        assert_eq!(c.ai.feedback_model, "gpt-oss:latest");
        assert_eq!(c.ai.timeout_vision, Duration::from_secs(30));
        assert_eq!(c.ai.timeout_feedback, Duration::from_secs(15));
        assert!(c.ai.structured_output);
        assert_eq!(c.worker.max_retries, 3);
        assert_eq!(c.worker.backoff.base, Duration::from_secs(10));
        assert_eq!(c.worker.lease_duration, Duration::from_secs(180));
        assert_eq!(c.worker.heartbeat_interval, Duration::from_secs(45));
        assert_eq!(c.worker.concurrency, 1);
        assert_eq!(c.worker.poll_interval, Duration::from_millis(500));
        assert_eq!(c.storage.bucket, "submissions");
        assert_eq!(c.database.max_connections, 5);
    }

    #[test]
    fn timeouts_must_lie_in_1_to_300() {
        assert!(problem(&["--ai-timeout-vision", "0"]).starts_with("AI_TIMEOUT_VISION"));
        assert!(problem(&["--ai-timeout-feedback", "301"]).starts_with("AI_TIMEOUT_FEEDBACK"));
        assert!(runner_config(&settings(&["--ai-timeout-vision", "300"])).is_ok());
    }

    #[test]
    fn unknown_backends_are_refused() {
        assert!(problem(&["--ai-backend", "openai"]).contains("unknown backend 'openai'"));
    }

    #[test]
    fn stub_is_refused_in_production() {
        for env in ["prod", "Production", "stage", "staging"] {
            assert!(problem(&["--gustav-env", env]).contains("refused"), "{env}");
        }
        assert!(runner_config(&settings(&["--gustav-env", "dev"])).is_ok());
        let root = std::env::temp_dir().display().to_string();
        assert!(runner_config(&settings(&[
            "--gustav-env",
            "prod",
            "--ai-backend",
            "local",
            "--storage-verify-root",
            &root
        ]))
        .is_ok());
    }

    #[test]
    fn public_ollama_hosts_are_refused() {
        assert!(
            problem(&["--ollama-base-url", "https://ollama.example.com"]).contains("not local")
        );
    }

    #[test]
    fn superuser_dsn_needs_the_override() {
        let s = Cli::try_parse_from([
            "learning-runner",
            "--database-url",
            "postgres://postgres@localhost/db",
        ])
        .unwrap()
        .settings;
        assert!(runner_config(&s)
            .unwrap_err()
            .to_string()
            .contains("privileged"));
        let allowed = Cli::try_parse_from([
            "learning-runner",
            "--database-url",
            "postgres://postgres@localhost/db",
            "--allow-superuser-dsn",
            "true",
        ])
        .unwrap()
        .settings;
        assert!(runner_config(&allowed).is_ok());
    }

    #[test]
    fn debug_output_never_contains_the_password() {
        let s = Cli::try_parse_from([
            "learning-runner",
            "--database-url",
            "postgres://gustav_worker:hunter2@db/gustav",
        ])
        .unwrap()
        .settings;
        let config = runner_config(&s).unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn concurrency_is_not_capped_at_four() {
        let c = runner_config(&settings(&["--worker-concurrency", "32"])).unwrap();
        assert_eq!(c.worker.concurrency, 32);
        assert!(problem(&["--worker-concurrency", "0"]).starts_with("WORKER_CONCURRENCY"));
    }

    #[test]
    fn think_level_applies_only_to_gpt_oss() {
        let c = runner_config(&settings(&["--ai-think-level", "high"])).unwrap();
        assert_eq!(c.ai.think_level, Some(ThinkLevel::High));
        assert!(c.warnings.is_empty());
        let other = runner_config(&settings(&[
            "--ai-think-level",
            "high",
            "--ai-feedback-model",
            "llama3.1:8b",
        ]))
        .unwrap();
        assert_eq!(other.ai.think_level, None);
        assert_eq!(
            think_level(None, "GPT-OSS:20b"),
            (Some(ThinkLevel::Low), None),
            "unset means low, the prefix is matched in any case"
        );
        assert_eq!(
            think_level(Some("  "), "gpt-oss:latest").0,
            Some(ThinkLevel::Low)
        );
    }

    #[test]
    fn an_unknown_think_level_falls_back_to_low_with_a_warning() {
        let c = runner_config(&settings(&["--ai-think-level", "max"])).unwrap();
        assert_eq!(c.ai.think_level, Some(ThinkLevel::Low));
        assert_eq!(c.warnings.len(), 1);
        assert!(
            c.warnings[0].starts_with("AI_THINK_LEVEL='max'"),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn the_json_adapter_setting_is_read_as_gustav_reads_it() {
        for (raw, on) in [
            (None, true),
            (Some("1"), true),
            (Some(" TRUE "), true),
            (Some("yes"), true),
            (Some("On"), true),
            (Some("default"), false),
            (Some("false"), false),
            (Some("0"), false),
            (Some(""), false),
            (Some("jsonadapter"), false),
        ] {
            assert_eq!(structured_output(raw).0, on, "{raw:?}");
        }
        assert!(
            structured_output(Some("default")).1.is_none(),
            "the runbook's value is no warning"
        );
        assert!(structured_output(Some("jsonadapter")).1.is_some());
        let c = runner_config(&settings(&["--learning-dspy-json-adapter", "default"])).unwrap();
        assert!(!c.ai.structured_output);
        assert!(c.warnings.is_empty());
        assert!(runner_config(&settings(&[])).unwrap().ai.structured_output);
        assert!(
            runner_config(&settings(&["--learning-dspy-json-adapter"]))
                .unwrap()
                .ai
                .structured_output
        );
    }

    #[test]
    fn keep_alive_takes_ollama_durations() {
        assert_eq!(
            runner_config(&settings(&["--ollama-keep-alive", "30m"]))
                .unwrap()
                .ai
                .keep_alive
                .as_deref(),
            Some("30m")
        );
        assert!(runner_config(&settings(&["--ollama-keep-alive", "-1"])).is_ok());
        assert!(problem(&["--ollama-keep-alive", "soon"]).starts_with("OLLAMA_KEEP_ALIVE"));
        assert!(problem(&["--ollama-keep-alive", "5mh"]).starts_with("OLLAMA_KEEP_ALIVE"));
    }

    #[test]
    fn the_local_backend_needs_a_place_to_read_files_from() {
        assert!(problem(&["--ai-backend", "local"])
            .contains("AI_BACKEND=local needs the submission files"));
        let root = std::env::temp_dir().display().to_string();
        assert!(runner_config(&settings(&[
            "--ai-backend",
            "local",
            "--storage-verify-root",
            &root
        ]))
        .is_ok());
        assert!(problem(&["--storage-verify-root", "/nonexistent/lr-root"])
            .starts_with("STORAGE_VERIFY_ROOT"));
        let remote = [
            "--ai-backend",
            "local",
            "--supabase-url",
            "http://kong:8000",
            "--supabase-service-role-key",
            "k",
        ];
        assert!(runner_config(&settings(&remote)).is_ok());
    }

    #[test]
    fn supabase_settings_and_bucket_names_are_checked() {
        assert!(problem(&[
            "--supabase-url",
            "http://kong:8000/storage",
            "--supabase-service-role-key",
            "k"
        ])
        .starts_with("SUPABASE_URL"));
        assert!(problem(&["--supabase-url", "http://kong:8000"])
            .starts_with("SUPABASE_SERVICE_ROLE_KEY"));
        assert!(
            problem(&["--learning-storage-bucket", "a/b"]).starts_with("LEARNING_STORAGE_BUCKET")
        );
        assert!(problem(&["--learning-storage-bucket", "my bucket"])
            .starts_with("LEARNING_STORAGE_BUCKET"));
    }

    #[test]
    fn bad_listen_address_is_named() {
        assert!(problem(&["--http-addr", "nowhere"]).starts_with("LEARNING_HTTP_ADDR"));
    }

    #[test]
    fn backoff_cap_must_not_undercut_the_base() {
        assert!(problem(&[
            "--worker-backoff-seconds",
            "100",
            "--worker-backoff-max-seconds",
            "10"
        ])
        .starts_with("WORKER_BACKOFF_MAX_SECONDS"));
    }
}
