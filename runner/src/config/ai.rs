//! The AI section: the backend (and where the stub is refused), Ollama's address, the models,
//! their time limits, and the settings read as GUSTAV reads them (structured output, think
//! level, keep-alive).

use std::time::Duration;

use super::{invalid, non_empty, ConfigError};
use crate::cli::Settings;
use learning_contract::url::check_ollama_base_url;

/// Environments in which the stub backend is refused.
pub const PRODUCTION_ENVS: [&str; 4] = ["prod", "production", "stage", "staging"];
/// Timeouts of model calls must lie in this range, in seconds.
pub const TIMEOUT_RANGE: std::ops::RangeInclusive<u64> = 1..=300;

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
    /// Generation limits per step.
    pub num_predict: NumPredict,
    /// Model steps this runner has in flight at once per model (Ollama's parallel capacity
    /// for it; `OLLAMA_NUM_PARALLEL` counts per loaded model too).
    pub max_parallel_calls: usize,
    /// The longest a model step is held back for its model's phase.
    pub max_phase_wait: Duration,
}

/// The most tokens a model may generate per step (Ollama's `num_predict`): a rambling model
/// stops there instead of holding the GPU until the call's time limit; an answer cut at the
/// limit is unusable and retried like a garbage answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumPredict {
    /// One image's transcript. The feedback prompt takes at most 12,000 characters of text
    /// (≈ 3,500 tokens of German), so 4,096 leaves room for a whole page.
    pub vision: u32,
    /// The analysis JSON: some 200 tokens per criterion (10 at most in GUSTAV), plus the
    /// reasoning of a thinking model.
    pub analysis: u32,
    /// The feedback text (a few paragraphs), plus reasoning.
    pub feedback: u32,
}

/// The accepted range of a generation limit.
pub const NUM_PREDICT_RANGE: std::ops::RangeInclusive<u32> = 64..=32_768;

/// `AI_MAX_PARALLEL_CALLS`, 1..=256; unset: `WORKER_CONCURRENCY` (no limit beyond the jobs).
fn max_parallel_calls(settings: &Settings) -> Result<usize, ConfigError> {
    let Some(value) = settings.ai_max_parallel_calls else {
        return Ok(settings.worker_concurrency.max(1));
    };
    let value = value as usize;
    if !(1..=256).contains(&value) {
        return Err(invalid(
            "AI_MAX_PARALLEL_CALLS",
            format!("{value} is out of range; allowed 1..=256"),
        ));
    }
    Ok(value)
}

/// `AI_MAX_PHASE_WAIT_SECONDS`, 0..=3600.
fn max_phase_wait(seconds: u64) -> Result<Duration, ConfigError> {
    if seconds > 3600 {
        return Err(invalid(
            "AI_MAX_PHASE_WAIT_SECONDS",
            format!("{seconds} is out of range; allowed 0..=3600 seconds"),
        ));
    }
    Ok(Duration::from_secs(seconds))
}

fn num_predict(name: &'static str, value: u32) -> Result<u32, ConfigError> {
    if !NUM_PREDICT_RANGE.contains(&value) {
        return Err(invalid(
            name,
            format!("{value} is out of range; allowed 64..=32768 tokens"),
        ));
    }
    Ok(value)
}

/// The AI settings, and the warnings of the settings accepted with a fallback.
pub fn ai_config(settings: &Settings) -> Result<(AiConfig, Vec<String>), ConfigError> {
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
        max_parallel_calls: max_parallel_calls(settings)?,
        max_phase_wait: max_phase_wait(settings.ai_max_phase_wait_seconds)?,
        num_predict: NumPredict {
            vision: num_predict("AI_NUM_PREDICT_VISION", settings.ai_num_predict_vision)?,
            analysis: num_predict("AI_NUM_PREDICT_ANALYSIS", settings.ai_num_predict_analysis)?,
            feedback: num_predict("AI_NUM_PREDICT_FEEDBACK", settings.ai_num_predict_feedback)?,
        },
    };
    Ok((ai, warnings))
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
