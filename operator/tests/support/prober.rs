//! A scripted `Prober` standing in for the runner's and Ollama's HTTP endpoints (the operator
//! reaches them through cluster DNS, which tests do not have): answers by URL path suffix,
//! changeable while the controller runs; unknown URLs fail like a refused connection.

use std::sync::Mutex;

use learning_operator::observe::Prober;
use serde_json::json;

/// The scripted prober.
#[derive(Default)]
pub struct ScriptedProber {
    answers: Mutex<Vec<(String, u16, String)>>,
    calls: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl Prober for ScriptedProber {
    async fn get(&self, url: &str) -> Result<(u16, String), String> {
        self.calls.lock().unwrap().push(url.to_owned());
        self.answers
            .lock()
            .unwrap()
            .iter()
            .find(|(suffix, _, _)| url.ends_with(suffix.as_str()))
            .map(|(_, code, body)| (*code, body.clone()))
            .ok_or_else(|| format!("GET {url}: connection refused"))
    }
}

/// The runner's health report for `status` (`healthy`, or `degraded` with the database down).
pub fn health_report(status: &str) -> String {
    let ok = status == "healthy";
    json!({"status": status, "currentRole": "gustav_worker", "checks": [{
        "check": "db_role",
        "status": if ok { "ok" } else { "failed" },
        "detail": if ok { "gustav_worker" } else { "db_connect_failed" },
    }]})
    .to_string()
}

/// Ollama's `/api/tags` listing `models`.
pub fn tags(models: &[&str]) -> String {
    json!({"models": models.iter().map(|m| json!({"name": m})).collect::<Vec<_>>()}).to_string()
}

impl ScriptedProber {
    /// Every URL refused.
    pub fn unreachable() -> Self {
        Self::default()
    }

    /// Healthy runners (5 jobs waiting, the oldest 42 s) and an Ollama with both models on
    /// the GPU.
    pub fn healthy() -> Self {
        let p = Self::default();
        p.set(
            "/internal/health/learning-worker",
            200,
            &health_report("healthy"),
        );
        p.set(
            "/metrics",
            200,
            "learning_runner_queue_jobs{state=\"visible\"} 5\nlearning_runner_oldest_job_age_seconds 42\n",
        );
        p.set("/api/version", 200, r#"{"version":"0.12.3"}"#);
        p.set("/api/tags", 200, &tags(&["qwen2.5vl:3b", "gpt-oss:20b"]));
        p.set(
            "/api/ps",
            200,
            r#"{"models":[{"name":"gpt-oss:20b","size":100,"size_vram":100}]}"#,
        );
        p
    }

    /// Sets (or replaces) the answer for URLs ending in `suffix`.
    pub fn set(&self, suffix: &str, code: u16, body: &str) {
        let mut answers = self.answers.lock().unwrap();
        answers.retain(|(s, _, _)| s != suffix);
        answers.push((suffix.to_owned(), code, body.to_owned()));
    }

    /// The runner's health report answers `status` (503 unless healthy, as the runner does).
    pub fn set_health(&self, status: &str) {
        let code = if status == "healthy" { 200 } else { 503 };
        self.set(
            "/internal/health/learning-worker",
            code,
            &health_report(status),
        );
    }

    /// Every URL asked so far.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}
