//! The health report of the contract (§9): `{"status", "currentRole", "checks"}` built from
//! `learning_worker_health_probe()`, with `db_connect_failed` when the database is unreachable.

use serde::Serialize;

use crate::db::queue::ProbeCheck;

/// One check of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthCheck {
    /// Check name (`db_role`, `queue_visibility`).
    pub check: String,
    /// `ok` or `failed`.
    pub status: String,
    /// Detail text.
    pub detail: String,
}

/// The report served at `/internal/health/learning-worker`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthReport {
    /// `healthy` when every check is `ok`, else `degraded`.
    pub status: &'static str,
    /// The database role the runner is connected as (`null` when not connected).
    pub current_role: Option<String>,
    /// The checks.
    pub checks: Vec<HealthCheck>,
}

impl HealthReport {
    /// Builds the report from the probe's rows.
    pub fn from_probe(role: String, checks: Vec<ProbeCheck>) -> Self {
        let checks: Vec<HealthCheck> = checks
            .into_iter()
            .map(|c| HealthCheck {
                check: c.check,
                status: c.status,
                detail: c.detail,
            })
            .collect();
        let healthy = !checks.is_empty() && checks.iter().all(|c| c.status == "ok");
        HealthReport {
            status: if healthy { "healthy" } else { "degraded" },
            current_role: Some(role),
            checks,
        }
    }

    /// The report when the database cannot be reached (or the probe cannot run).
    pub fn connect_failed() -> Self {
        HealthReport {
            status: "degraded",
            current_role: None,
            checks: vec![HealthCheck {
                check: "db_role".into(),
                status: "failed".into(),
                detail: "db_connect_failed".into(),
            }],
        }
    }

    /// Adds checks (e.g. Ollama's) and recomputes the overall status.
    pub fn with_checks(mut self, extra: Vec<HealthCheck>) -> Self {
        self.checks.extend(extra);
        let healthy = !self.checks.is_empty() && self.checks.iter().all(|c| c.status == "ok");
        self.status = if healthy { "healthy" } else { "degraded" };
        self
    }

    /// Whether every check passed.
    pub fn is_healthy(&self) -> bool {
        self.status == "healthy"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, status: &str) -> ProbeCheck {
        ProbeCheck {
            check: name.into(),
            status: status.into(),
            detail: "d".into(),
        }
    }

    #[test]
    fn healthy_only_when_every_check_is_ok() {
        let ok = HealthReport::from_probe(
            "gustav_worker".into(),
            vec![check("db_role", "ok"), check("queue_visibility", "ok")],
        );
        assert!(ok.is_healthy());
        let bad = HealthReport::from_probe(
            "gustav_worker".into(),
            vec![check("db_role", "failed"), check("queue_visibility", "ok")],
        );
        assert_eq!(bad.status, "degraded");
        assert!(!HealthReport::from_probe("x".into(), vec![]).is_healthy());
    }

    #[test]
    fn serialises_with_the_contract_field_names() {
        let v = serde_json::to_value(HealthReport::connect_failed()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"status": "degraded", "currentRole": null,
                "checks": [{"check": "db_role", "status": "failed", "detail": "db_connect_failed"}]})
        );
    }
}
