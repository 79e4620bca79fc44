//! Tables of RunnersAvailable, RunnersHealthy and QueueReachable.

use super::*;
use crate::status::runners::{queue_reachable, runners_available, runners_healthy};

#[test]
fn runners_available_counts_available_runners_or_names_the_first_pod_problem() {
    let rows = [
        (
            "every runner available",
            false,
            Some(workload(2, 2)),
            vec![],
            (Status::True, r::MINIMUM_REPLICAS_AVAILABLE),
            "2/2 runners available",
        ),
        (
            "available despite a pod problem",
            false,
            Some(workload(2, 2)),
            vec![issue(r::OOM_KILLED)],
            (Status::True, r::MINIMUM_REPLICAS_AVAILABLE),
            "2/2 runners available",
        ),
        (
            "one short",
            false,
            Some(workload(2, 1)),
            vec![],
            (Status::False, r::MINIMUM_REPLICAS_UNAVAILABLE),
            "1/2 runners ready",
        ),
        (
            "none desired",
            false,
            Some(workload(0, 0)),
            vec![],
            (Status::False, r::MINIMUM_REPLICAS_UNAVAILABLE),
            "0/0 runners ready",
        ),
        (
            "no Deployment yet",
            false,
            None,
            vec![],
            (Status::False, r::MINIMUM_REPLICAS_UNAVAILABLE),
            "0/0 runners ready",
        ),
        (
            "the first pod problem",
            false,
            Some(workload(2, 1)),
            vec![issue(r::IMAGE_PULL_BACK_OFF), issue(r::OOM_KILLED)],
            (Status::False, r::IMAGE_PULL_BACK_OFF),
            "pod school-a-x: why",
        ),
        (
            "suspended",
            true,
            Some(workload(0, 0)),
            vec![issue(r::OOM_KILLED)],
            (Status::False, r::SUSPENDED),
            "spec.suspend is true",
        ),
    ];
    for (case, suspended, runner, pods, expected, message) in rows {
        let draft = runners_available(suspended, runner.as_ref(), &pods);
        assert_eq!(draft.type_, t::RUNNERS_AVAILABLE);
        assert_eq!(verdict(&draft), expected, "{case}");
        assert!(draft.message.contains(message), "{case}: {}", draft.message);
    }
}

#[test]
fn runners_healthy_follows_the_health_report() {
    let rows = [
        (
            "healthy",
            false,
            Probe::Ok(healthy_report()),
            (Status::True, r::HEALTHY),
            "health report: healthy",
        ),
        (
            "degraded by Ollama",
            false,
            Probe::Ok(report_without_ollama()),
            (Status::False, r::HEALTH_DEGRADED),
            "failed checks: ollama (unreachable: connection refused), models (unknown",
        ),
        (
            "degraded by the database",
            false,
            Probe::Ok(degraded_report(vec![check(
                "db_role",
                "failed",
                "db_connect_failed",
            )])),
            (Status::False, r::HEALTH_DEGRADED),
            "failed checks: db_role (db_connect_failed)",
        ),
        (
            "unreachable",
            false,
            Probe::Failed("connection refused".into()),
            (Status::Unknown, r::HEALTH_UNREACHABLE),
            "connection refused",
        ),
        (
            "no runner to ask",
            false,
            Probe::Skipped,
            (Status::Unknown, r::NO_RUNNERS),
            "no running runner to ask",
        ),
        (
            "suspended",
            true,
            Probe::Ok(healthy_report()),
            (Status::False, r::SUSPENDED),
            "no runners while suspended",
        ),
    ];
    for (case, suspended, health, expected, message) in rows {
        let draft = runners_healthy(suspended, &health);
        assert_eq!(draft.type_, t::RUNNERS_HEALTHY);
        assert_eq!(verdict(&draft), expected, "{case}");
        assert!(draft.message.contains(message), "{case}: {}", draft.message);
    }
}

#[test]
fn queue_reachable_follows_the_database_checks_of_the_health_report() {
    let rows = [
        (
            "database checks pass",
            false,
            Probe::Ok(healthy_report()),
            (Status::True, r::QUEUE_VISIBLE),
            "connected as gustav_worker",
        ),
        (
            "only the Ollama checks failed",
            false,
            Probe::Ok(report_without_ollama()),
            (Status::True, r::QUEUE_VISIBLE),
            "connected as gustav_worker",
        ),
        (
            "no role reported",
            false,
            Probe::Ok(degraded_report(vec![check("db_role", "ok", "x")])),
            (Status::True, r::QUEUE_VISIBLE),
            "connected as ?",
        ),
        (
            "cannot connect",
            false,
            Probe::Ok(degraded_report(vec![
                check("queue_visibility", "failed", "no grant"),
                check("db_role", "failed", "db_connect_failed"),
            ])),
            (Status::False, r::DATABASE_UNREACHABLE),
            "cannot connect to the database",
        ),
        (
            "queue hidden",
            false,
            Probe::Ok(degraded_report(vec![
                check("db_role", "ok", "x"),
                check("queue_visibility", "failed", "no grant"),
            ])),
            (Status::False, r::QUEUE_CHECK_FAILED),
            "failed checks: queue_visibility (no grant)",
        ),
        (
            "no database check at all",
            false,
            Probe::Ok(degraded_report(vec![check("ollama", "ok", "fine")])),
            (Status::False, r::QUEUE_CHECK_FAILED),
            "failed checks: ",
        ),
        (
            "unreachable",
            false,
            Probe::Failed("connection refused".into()),
            (Status::Unknown, r::HEALTH_UNREACHABLE),
            "connection refused",
        ),
        (
            "no runner to ask",
            false,
            Probe::Skipped,
            (Status::Unknown, r::NO_RUNNERS),
            "no running runner to ask",
        ),
        (
            "suspended",
            true,
            Probe::Failed("connection refused".into()),
            (Status::Unknown, r::SUSPENDED),
            "no runners while suspended",
        ),
    ];
    for (case, suspended, health, expected, message) in rows {
        let draft = queue_reachable(suspended, &health);
        assert_eq!(draft.type_, t::QUEUE_REACHABLE);
        assert_eq!(verdict(&draft), expected, "{case}");
        assert!(draft.message.contains(message), "{case}: {}", draft.message);
    }
}
