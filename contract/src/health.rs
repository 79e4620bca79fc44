//! The health report (`GET /internal/health/learning-worker`), in the shape GUSTAV's own
//! worker serves: `{"status", "currentRole", "checks": [{"check", "status", "detail"}]}`. The
//! runner builds it; the operator reads it into the LearningWorker's status.

use serde::{Deserialize, Serialize};

/// The path of the health report on the runner's HTTP port.
pub const HEALTH_PATH: &str = "/internal/health/learning-worker";

/// The database role check (from `learning_worker_health_probe()`).
pub const CHECK_DB_ROLE: &str = "db_role";
/// The queue visibility check (from `learning_worker_health_probe()`).
pub const CHECK_QUEUE_VISIBILITY: &str = "queue_visibility";
/// The runner's Ollama check: reachable, and its version.
pub const CHECK_OLLAMA: &str = "ollama";
/// The runner's model check: the configured models are present.
pub const CHECK_MODELS: &str = "models";
/// The checks the runner adds when it uses Ollama (the operator reads them for its conditions).
pub const OLLAMA_CHECKS: [&str; 2] = [CHECK_OLLAMA, CHECK_MODELS];

/// A check that passed.
pub const CHECK_OK: &str = "ok";
/// A check that failed.
pub const CHECK_FAILED: &str = "failed";
/// The detail of the `db_role` check when the database cannot be reached.
pub const DB_CONNECT_FAILED: &str = "db_connect_failed";

/// The overall state of the report.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// Every check passed.
    Healthy,
    /// At least one check failed, or there were none.
    #[default]
    Degraded,
}

/// One check of the report.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct HealthCheck {
    /// Check name: `db_role`, `queue_visibility`, and with Ollama `ollama` and `models`.
    pub check: String,
    /// `ok` or `failed`.
    pub status: String,
    /// What was found, in a few words.
    #[serde(default)]
    pub detail: String,
}

impl HealthCheck {
    /// A check that passed (`ok`) or failed (`failed`).
    pub fn new(check: &str, passed: bool, detail: impl Into<String>) -> Self {
        HealthCheck {
            check: check.to_owned(),
            status: if passed { CHECK_OK } else { CHECK_FAILED }.to_owned(),
            detail: detail.into(),
        }
    }

    /// Whether the check passed.
    pub fn passed(&self) -> bool {
        self.status == CHECK_OK
    }
}

/// The health report.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct HealthReport {
    /// `healthy` when every check passed, else `degraded`.
    pub status: HealthState,
    /// The database role the runner is connected as (`null` when it is not connected).
    #[serde(default)]
    pub current_role: Option<String>,
    /// The individual checks.
    #[serde(default)]
    pub checks: Vec<HealthCheck>,
}

impl HealthReport {
    /// A report of these checks; healthy only when there is at least one and all passed.
    pub fn new(current_role: Option<String>, checks: Vec<HealthCheck>) -> Self {
        let mut report = HealthReport {
            status: HealthState::Degraded,
            current_role,
            checks,
        };
        report.status = report.computed_state();
        report
    }

    /// The report when the database cannot be reached (or the probe cannot run).
    pub fn connect_failed() -> Self {
        HealthReport::new(
            None,
            vec![HealthCheck::new(CHECK_DB_ROLE, false, DB_CONNECT_FAILED)],
        )
    }

    /// Adds checks (e.g. Ollama's) and recomputes the overall state.
    pub fn with_checks(mut self, extra: Vec<HealthCheck>) -> Self {
        self.checks.extend(extra);
        self.status = self.computed_state();
        self
    }

    /// Whether every check passed.
    pub fn is_healthy(&self) -> bool {
        self.status == HealthState::Healthy
    }

    /// The named check, if the report has it.
    pub fn check(&self, name: &str) -> Option<&HealthCheck> {
        self.checks.iter().find(|c| c.check == name)
    }

    fn computed_state(&self) -> HealthState {
        if !self.checks.is_empty() && self.checks.iter().all(HealthCheck::passed) {
            HealthState::Healthy
        } else {
            HealthState::Degraded
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn healthy_only_when_there_are_checks_and_all_passed() {
        let ok = HealthReport::new(
            Some("gustav_worker".into()),
            vec![
                HealthCheck::new(CHECK_DB_ROLE, true, "d"),
                HealthCheck::new(CHECK_QUEUE_VISIBILITY, true, "d"),
            ],
        );
        assert!(ok.is_healthy());
        let bad = ok
            .clone()
            .with_checks(vec![HealthCheck::new(CHECK_MODELS, false, "missing: x")]);
        assert_eq!(bad.status, HealthState::Degraded);
        assert!(!HealthReport::new(None, vec![]).is_healthy());
        assert_eq!(bad.check(CHECK_MODELS).unwrap().detail, "missing: x");
    }

    #[test]
    fn serialises_in_the_shape_gustav_serves() {
        let v = serde_json::to_value(HealthReport::connect_failed()).unwrap();
        assert_eq!(
            v,
            json!({"status": "degraded", "currentRole": null,
                "checks": [{"check": "db_role", "status": "failed", "detail": "db_connect_failed"}]})
        );
    }

    #[test]
    fn reads_what_it_writes_and_refuses_unknown_states() {
        let report = HealthReport::new(
            Some("gustav_worker".into()),
            vec![HealthCheck::new(CHECK_DB_ROLE, true, "role ok")],
        );
        let text = serde_json::to_string(&report).unwrap();
        assert_eq!(serde_json::from_str::<HealthReport>(&text).unwrap(), report);
        assert!(serde_json::from_str::<HealthReport>(r#"{"status":"fine"}"#).is_err());
        let minimal: HealthReport = serde_json::from_str(r#"{"status":"healthy"}"#).unwrap();
        assert!(minimal.checks.is_empty() && minimal.current_role.is_none());
    }
}
