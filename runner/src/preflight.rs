//! `learning-runner preflight`: the runbook's preflight checklist as one command. Each check
//! prints ✔ or ✘ (with the fix) or – (skipped); the exit code is 0 only when nothing failed.
//! Secrets are masked; nothing is written to the database (function calls run in a
//! transaction that is rolled back).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use uuid::Uuid;

use crate::ai::ollama::monitor::OllamaMonitor;
use learning_contract::model::same_model;

use crate::ai::ollama::{ChatMessage, ChatRequest, OllamaError, Options};
use crate::ai::{Adapters, FeedbackRequest};
use crate::app;
use crate::cli::Settings;
use crate::config::{runner_config, RunnerConfig};
use crate::db::queue;
use crate::job::analysis::AnalysisV2;
use crate::job::error_code::{ErrorCode, Phase};
use crate::telemetry::metrics::Metrics;

const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Holds.
    Pass,
    /// Does not hold; the string says how to fix it.
    Fail(String),
    /// Not run; the string says why.
    Skipped(String),
}

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckLine {
    /// What was checked.
    pub name: &'static str,
    /// What was found (no secrets).
    pub detail: String,
    /// The verdict.
    pub verdict: Verdict,
}

impl CheckLine {
    fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        CheckLine {
            name,
            detail: detail.into(),
            verdict: Verdict::Pass,
        }
    }
    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        CheckLine {
            name,
            detail: detail.into(),
            verdict: Verdict::Fail(fix.into()),
        }
    }
    fn skip(name: &'static str, why: impl Into<String>) -> Self {
        CheckLine {
            name,
            detail: String::new(),
            verdict: Verdict::Skipped(why.into()),
        }
    }
}

/// Renders the checklist; the text a person reads.
pub fn render(lines: &[CheckLine]) -> String {
    let mut out = String::new();
    for l in lines {
        let _ = match &l.verdict {
            Verdict::Pass => writeln!(out, "✔ {} — {}", l.name, l.detail),
            Verdict::Fail(fix) => writeln!(out, "✘ {} — {}\n    fix: {}", l.name, l.detail, fix),
            Verdict::Skipped(why) => writeln!(out, "– {} — skipped: {}", l.name, why),
        };
    }
    let failed = lines
        .iter()
        .filter(|l| matches!(l.verdict, Verdict::Fail(_)))
        .count();
    let _ = writeln!(
        out,
        "{}",
        if failed == 0 {
            "preflight: all checks passed".to_owned()
        } else {
            format!("preflight: {failed} check(s) failed")
        }
    );
    out
}

/// Whether every check passed or was skipped.
pub fn all_passed(lines: &[CheckLine]) -> bool {
    !lines.iter().any(|l| matches!(l.verdict, Verdict::Fail(_)))
}

fn describe(config: &RunnerConfig) -> String {
    let c = &config.database.connect;
    let ai = &config.ai;
    format!(
        "backend={} vision={} feedback={} ollama={} structured_output={} think={} db={}@{}:{}/{} storage_root={} supabase={} health_token={}",
        ai.backend.as_str(),
        ai.vision_model,
        ai.feedback_model,
        ai.ollama_base_url,
        ai.structured_output,
        ai.think_level.map(|t| format!("{t:?}").to_lowercase()).unwrap_or_else(|| "-".into()),
        c.get_username(),
        c.get_host(),
        c.get_port(),
        c.get_database().unwrap_or("-"),
        config.storage.verify_root.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "-".into()),
        if config.storage.supabase_url.is_some() { "set (key hidden)" } else { "unset" },
        if config.http.health_token.is_some() { "set (hidden)" } else { "unset" },
    )
}

async fn database_checks(
    pool: &PgPool,
    allow_privileged: bool,
    lines: &mut Vec<CheckLine>,
) -> bool {
    let role = match tokio::time::timeout(STEP_TIMEOUT, queue::current_role(pool)).await {
        Ok(Ok(role)) => role,
        Ok(Err(e)) => {
            lines.push(CheckLine::fail("database reachable", e.to_string(), "check host, port, database and password in LEARNING_DATABASE_URL; is PostgreSQL up and reachable from here?"));
            return false;
        }
        Err(_) => {
            lines.push(CheckLine::fail(
                "database reachable",
                "no answer within 10 s",
                "check the network path to PostgreSQL (NetworkPolicy, Service, firewall)",
            ));
            return false;
        }
    };
    lines.push(CheckLine::pass(
        "database reachable",
        format!("connected as {role}"),
    ));
    match queue::role_bypasses_rls(pool).await {
        Ok(false) => lines.push(CheckLine::pass(
            "role not privileged",
            format!("{role} is subject to row-level security"),
        )),
        Ok(true) if allow_privileged => lines.push(CheckLine::pass(
            "role not privileged",
            "privileged role allowed by LEARNING_ALLOW_SUPERUSER_DSN (tests only)",
        )),
        Ok(true) => lines.push(CheckLine::fail(
            "role not privileged",
            format!("{role} is a superuser or has BYPASSRLS"),
            "log in as gustav_worker (LOGIN, password from a Secret)",
        )),
        Err(e) => lines.push(CheckLine::fail(
            "role not privileged",
            e.to_string(),
            "the role must be able to read pg_roles",
        )),
    }
    match queue::schema_present(pool).await {
        Ok(true) => lines.push(CheckLine::pass(
            "queue schema",
            "learning_submissions, learning_submission_jobs and the worker functions exist",
        )),
        Ok(false) => {
            lines.push(CheckLine::fail("queue schema", "tables or functions missing", "apply GUSTAV's migrations (standalone: `learning-runner migrate` as the database owner)"));
            return false;
        }
        Err(e) => lines.push(CheckLine::fail(
            "queue schema",
            e.to_string(),
            "grant the worker role USAGE on schema public",
        )),
    }
    match queue::health_probe(pool).await {
        Ok((_, checks)) => {
            let detail = checks.iter().map(|c| format!("{} {} {}", c.check, c.status, c.detail)).collect::<Vec<_>>().join("; ");
            if checks.iter().all(|c| c.status == "ok") && !checks.is_empty() {
                lines.push(CheckLine::pass("health probe", detail));
            } else {
                lines.push(CheckLine::fail("health probe", detail, "create the gustav_worker role and its grants (GUSTAV's migrations do this)"));
            }
        }
        Err(e) => lines.push(CheckLine::fail("health probe", e.to_string(), "grant EXECUTE on learning_worker_health_probe() (the worker inherits it through gustav_limited)")),
    }
    true
}

/// The Ollama checks: reachable, models present, and one generate round trip.
async fn ollama_checks(monitor: &OllamaMonitor, feedback_model: &str, lines: &mut Vec<CheckLine>) {
    let snapshot = monitor.refresh().await;
    if !snapshot.reachable {
        lines.push(CheckLine::fail(
            "ollama reachable",
            snapshot.error.unwrap_or_default(),
            format!(
                "check OLLAMA_BASE_URL ({}) and that the Ollama pod/service is running",
                monitor.client().base_url()
            ),
        ));
        lines.push(CheckLine::skip("models present", "Ollama unreachable"));
        lines.push(CheckLine::skip("generate round trip", "Ollama unreachable"));
        return;
    }
    lines.push(CheckLine::pass(
        "ollama reachable",
        format!("version {}", snapshot.version.unwrap_or_else(|| "?".into())),
    ));
    if models_check(monitor, &snapshot.missing, feedback_model, lines) {
        lines.push(round_trip_check(monitor, feedback_model).await);
    }
}

/// Whether the configured models are installed. Returns whether the round trip can run,
/// that is whether the feedback model is there.
fn models_check(
    monitor: &OllamaMonitor,
    missing: &[String],
    feedback_model: &str,
    lines: &mut Vec<CheckLine>,
) -> bool {
    if missing.is_empty() {
        lines.push(CheckLine::pass(
            "models present",
            monitor.models().join(", "),
        ));
        return true;
    }
    let fix = missing
        .iter()
        .map(|m| format!("ollama pull {m}"))
        .collect::<Vec<_>>()
        .join("; ");
    lines.push(CheckLine::fail(
        "models present",
        format!("missing: {}", missing.join(", ")),
        format!("{fix} (or set OLLAMA_PULL_MISSING=true)"),
    ));
    if missing.iter().any(|m| same_model(m, feedback_model)) {
        lines.push(CheckLine::skip(
            "generate round trip",
            format!("the feedback model {feedback_model} is missing"),
        ));
        return false;
    }
    true
}

/// One short chat with the feedback model, and where the model ran (GPU or CPU).
async fn round_trip_check(monitor: &OllamaMonitor, feedback_model: &str) -> CheckLine {
    let started = Instant::now();
    let request = ChatRequest {
        model: feedback_model.to_owned(),
        messages: vec![ChatMessage::user("Antworte nur mit dem Wort OK.")],
        options: Options {
            temperature: Some(0.0),
            num_predict: Some(16),
            ..Options::default()
        },
        ..ChatRequest::default()
    };
    match monitor
        .client()
        .chat(&request, Duration::from_secs(120))
        .await
    {
        // Cut at the 16 tokens asked for (a thinking model spends them on reasoning): the
        // model ran, which is what this check is about.
        Ok(answer) => {
            round_trip_pass(monitor, feedback_model, started, answer.trim().is_empty()).await
        }
        Err(OllamaError::Truncated(_)) => {
            round_trip_pass(monitor, feedback_model, started, false).await
        }
        Err(e) => CheckLine::fail(
            "generate round trip",
            e.to_string(),
            "see the Ollama pod's log; a first call may need more memory or time to load the model",
        ),
    }
}

/// The passed round trip, with where the model ran.
async fn round_trip_pass(
    monitor: &OllamaMonitor,
    feedback_model: &str,
    started: Instant,
    empty: bool,
) -> CheckLine {
    let gpu = gpu_placement(monitor, feedback_model).await;
    let empty = if empty {
        ", but the answer was empty"
    } else {
        ""
    };
    CheckLine::pass(
        "generate round trip",
        format!(
            "{feedback_model} answered in {:.1} s{empty}; ran {gpu}",
            started.elapsed().as_secs_f64()
        ),
    )
}

/// Where the loaded feedback model runs, from `/api/ps`.
async fn gpu_placement(monitor: &OllamaMonitor, feedback_model: &str) -> String {
    match monitor.client().ps().await {
        Ok(ps) => match ps.iter().find(|m| same_model(&m.name, feedback_model)) {
            Some(m) if m.gpu_percent() == 100 => "on the GPU (100%)".to_owned(),
            Some(m) if m.gpu_percent() == 0 => "on the CPU only (no GPU offload)".to_owned(),
            Some(m) => format!("partly on the GPU ({}%, rest on CPU)", m.gpu_percent()),
            None => "GPU use unknown (model not listed in /api/ps)".to_owned(),
        },
        Err(_) => "GPU use unknown (/api/ps failed)".to_owned(),
    }
}

async fn test_submission(pool: &PgPool, adapters: &Adapters, lines: &mut Vec<CheckLine>) {
    let criteria = vec!["Fachliche Richtigkeit".to_owned(), "Struktur".to_owned()];
    let request = FeedbackRequest {
        submission_id: Uuid::new_v4(),
        text_md: "Die Photosynthese wandelt Lichtenergie in chemische Energie um. Dabei entsteht Sauerstoff.".into(),
        criteria: criteria.clone(),
        instruction_md: Some("Erkläre die Photosynthese in zwei Sätzen.".into()),
        hints_md: None,
        final_attempt: true,
    };
    let started = Instant::now();
    let output = match adapters.feedback.feedback(&request).await {
        Ok(o) => o,
        Err(e) => {
            lines.push(CheckLine::fail(
                "test submission",
                format!("feedback failed: {e}"),
                "fix the checks above; then look at the model's answers in the runner log",
            ));
            return;
        }
    };
    let valid = serde_json::from_value::<AnalysisV2>(output.analysis_json.clone())
        .map_err(|e| e.to_string())
        .and_then(|a| a.validate(&criteria));
    if let Err(problem) = valid {
        lines.push(CheckLine::fail(
            "test submission",
            format!("analysis is not valid criteria.v2: {problem}"),
            "report this as a bug in the runner",
        ));
        return;
    }
    let probe = async {
        let mut tx = pool.begin().await?;
        let nobody = Uuid::new_v4();
        queue::mark_retry(&mut tx, nobody, Phase::Feedback, "preflight").await?;
        queue::update_failed(
            &mut tx,
            nobody,
            ErrorCode::FeedbackFailed.as_str(),
            "preflight",
        )
        .await?;
        queue::update_completed(
            &mut tx,
            nobody,
            &request.text_md,
            &output.feedback_md,
            &output.analysis_json,
        )
        .await?;
        tx.rollback().await
    };
    match probe.await {
        Ok(()) => lines.push(CheckLine::pass(
            "test submission",
            format!("feedback and criteria.v2 produced in {:.1} s; the three update functions accept it (rolled back)", started.elapsed().as_secs_f64()),
        )),
        Err(e) => lines.push(CheckLine::fail("test submission", e.to_string(), "grant the worker role EXECUTE on the three learning_worker_update/mark functions")),
    }
}

/// Runs every check; `with_test_submission` adds the end-to-end check.
pub async fn run(settings: &Settings, with_test_submission: bool) -> Vec<CheckLine> {
    let mut lines = Vec::new();
    let config = match runner_config(settings) {
        Ok(c) => c,
        Err(e) => {
            lines.push(CheckLine::fail(
                "configuration",
                e.to_string(),
                "correct the variable named above (see the README's configuration reference)",
            ));
            return lines;
        }
    };
    let mut description = describe(&config);
    for warning in &config.warnings {
        description.push_str("; warning: ");
        description.push_str(warning);
    }
    lines.push(CheckLine::pass("configuration", description));
    let metrics = Metrics::new().expect("metrics register once per process");
    let (adapters, monitor) = match app::select_adapters(&config, &metrics) {
        Ok(a) => a,
        Err(e) => {
            lines.push(CheckLine::fail(
                "adapters",
                e.to_string(),
                "fix the storage or Ollama settings",
            ));
            return lines;
        }
    };
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(STEP_TIMEOUT)
        .connect_lazy_with(config.database.connect.clone());
    let database_ok = database_checks(&pool, settings.allow_superuser_dsn, &mut lines).await;
    match &monitor {
        Some(m) => ollama_checks(m, &config.ai.feedback_model, &mut lines).await,
        None => {
            for name in ["ollama reachable", "models present", "generate round trip"] {
                lines.push(CheckLine::skip(name, "AI_BACKEND=stub"));
            }
        }
    }
    if with_test_submission {
        if database_ok && all_passed(&lines) {
            test_submission(&pool, &adapters, &mut lines).await;
        } else {
            lines.push(CheckLine::skip(
                "test submission",
                "an earlier check failed",
            ));
        }
    }
    pool.close().await;
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_marks_each_verdict_and_counts_failures() {
        let lines = vec![
            CheckLine::pass("a", "fine"),
            CheckLine::fail("b", "broken", "do this"),
            CheckLine::skip("c", "not needed"),
        ];
        let text = render(&lines);
        assert!(text.contains("✔ a — fine"));
        assert!(text.contains("✘ b — broken\n    fix: do this"));
        assert!(text.contains("– c — skipped: not needed"));
        assert!(text.ends_with("preflight: 1 check(s) failed\n"));
        assert!(!all_passed(&lines));
        assert!(all_passed(&lines[..1]));
    }
}
