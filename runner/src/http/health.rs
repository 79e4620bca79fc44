//! The health report of the contract (`learning_contract::health`), built from
//! `learning_worker_health_probe()`, with `db_connect_failed` when the database is unreachable.

pub use learning_contract::health::{HealthCheck, HealthReport, HealthState};

use crate::db::queue::ProbeCheck;

/// The report of the probe's rows for the connected `role`.
pub fn from_probe(role: String, checks: Vec<ProbeCheck>) -> HealthReport {
    let checks = checks
        .into_iter()
        .map(|c| HealthCheck {
            check: c.check,
            status: c.status,
            detail: c.detail,
        })
        .collect();
    HealthReport::new(Some(role), checks)
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
    fn healthy_only_when_every_probe_row_is_ok() {
        let ok = from_probe(
            "gustav_worker".into(),
            vec![check("db_role", "ok"), check("queue_visibility", "ok")],
        );
        assert!(ok.is_healthy());
        assert_eq!(ok.current_role.as_deref(), Some("gustav_worker"));
        let bad = from_probe(
            "gustav_worker".into(),
            vec![check("db_role", "failed"), check("queue_visibility", "ok")],
        );
        assert_eq!(bad.status, HealthState::Degraded);
        assert!(!from_probe("x".into(), vec![]).is_healthy());
    }
}
