//! The runner conditions: RunnersAvailable (the runner Deployment's available pods, or the
//! first pod-level problem), RunnersHealthy (the runners' health report as a whole) and
//! QueueReachable (the database checks of that report).

// The checks of the runner's health report that are about Ollama, not the database
// (`AI_BACKEND=local`): OllamaReady's and ModelsReady's business, not the queue's.
use learning_contract::health::OLLAMA_CHECKS as RUNNER_OLLAMA_CHECKS;
use learning_crds::conditions::{reasons as r, types as t, Status};
use learning_crds::status::{HealthCheck, HealthReport};

use super::{counts_text, pod_message, Draft, SUSPENDED_MESSAGE};
use crate::observed::Workload;
use crate::pod_issues::PodIssue;
use crate::probes::Probe;

const NO_RUNNERS_WHILE_SUSPENDED: &str = "no runners while suspended";
const NO_RUNNER_TO_ASK: &str = "no running runner to ask";

/// Whether an autoscaler (engine `keda` or `external`) runs no runner on purpose: not
/// suspended, and the runner Deployment wants none.
pub(super) fn scaled_to_zero(
    lw: &learning_crds::LearningWorker,
    runner: Option<&Workload>,
) -> bool {
    use learning_crds::runner::AutoscalingEngine;
    let by_autoscaler = lw.spec.runner.autoscaling.as_ref().is_some_and(|a| {
        matches!(
            a.engine,
            AutoscalingEngine::Keda | AutoscalingEngine::External
        )
    });
    !lw.spec.suspend && by_autoscaler && runner.is_some_and(|w| w.counts.desired == 0)
}

/// The runner conditions while [`scaled_to_zero`]: no runner is wanted, so none is missing
/// and none is unhealthy; the queue is not asked (KEDA reads it itself).
pub(super) fn while_scaled_to_zero() -> [Draft; 3] {
    const WHY: &str =
        "the autoscaler runs no runner while there is no job; the first job brings one back";
    [
        Draft::new(t::RUNNERS_AVAILABLE, true, r::SCALED_TO_ZERO, WHY),
        Draft::new(t::RUNNERS_HEALTHY, true, r::SCALED_TO_ZERO, WHY),
        Draft::new(
            t::QUEUE_REACHABLE,
            Status::Unknown,
            r::SCALED_TO_ZERO,
            NO_RUNNER_TO_ASK,
        ),
    ]
}

/// RunnersAvailable: `True` once every desired runner is available; otherwise the first
/// runner pod's problem, or how many runners are ready.
pub(super) fn runners_available(
    suspended: bool,
    runner: Option<&Workload>,
    runner_pods: &[PodIssue],
) -> Draft {
    if suspended {
        return Draft::new(t::RUNNERS_AVAILABLE, false, r::SUSPENDED, SUSPENDED_MESSAGE);
    }
    match runner {
        Some(w) if w.counts.desired > 0 && w.counts.available >= w.counts.desired => Draft::new(
            t::RUNNERS_AVAILABLE,
            true,
            r::MINIMUM_REPLICAS_AVAILABLE,
            format!(
                "{}/{} runners available",
                w.counts.available, w.counts.desired
            ),
        ),
        _ => match runner_pods.first() {
            Some(issue) => Draft::new(
                t::RUNNERS_AVAILABLE,
                false,
                issue.reason,
                pod_message(issue),
            ),
            None => Draft::new(
                t::RUNNERS_AVAILABLE,
                false,
                r::MINIMUM_REPLICAS_UNAVAILABLE,
                format!("{} runners ready", counts_text(runner)),
            ),
        },
    }
}

/// RunnersHealthy: the overall verdict of the runners' health report, naming the failed
/// checks; `Unknown` when no runner could be asked.
pub(super) fn runners_healthy(suspended: bool, health: &Probe<HealthReport>) -> Draft {
    match (health, suspended) {
        (_, true) => Draft::new(
            t::RUNNERS_HEALTHY,
            false,
            r::SUSPENDED,
            NO_RUNNERS_WHILE_SUSPENDED,
        ),
        (Probe::Ok(report), _) if report.is_healthy() => Draft::new(
            t::RUNNERS_HEALTHY,
            true,
            r::HEALTHY,
            "health report: healthy",
        ),
        (Probe::Ok(report), _) => {
            let failed: Vec<&HealthCheck> = report.checks.iter().filter(|c| failed(c)).collect();
            Draft::new(
                t::RUNNERS_HEALTHY,
                false,
                r::HEALTH_DEGRADED,
                format!(
                    "health report: degraded; failed checks: {}",
                    listing(&failed)
                ),
            )
        }
        (Probe::Failed(error), _) => Draft::new(
            t::RUNNERS_HEALTHY,
            Status::Unknown,
            r::HEALTH_UNREACHABLE,
            error.clone(),
        ),
        (Probe::Skipped, _) => Draft::new(
            t::RUNNERS_HEALTHY,
            Status::Unknown,
            r::NO_RUNNERS,
            NO_RUNNER_TO_ASK,
        ),
    }
}

/// QueueReachable: what the database checks of the health report say; `Unknown` when no
/// runner could be asked.
pub(super) fn queue_reachable(suspended: bool, health: &Probe<HealthReport>) -> Draft {
    match (health, suspended) {
        (_, true) => Draft::new(
            t::QUEUE_REACHABLE,
            Status::Unknown,
            r::SUSPENDED,
            NO_RUNNERS_WHILE_SUSPENDED,
        ),
        (Probe::Ok(report), _) => queue_from_report(report),
        (Probe::Failed(error), _) => Draft::new(
            t::QUEUE_REACHABLE,
            Status::Unknown,
            r::HEALTH_UNREACHABLE,
            error.clone(),
        ),
        (Probe::Skipped, _) => Draft::new(
            t::QUEUE_REACHABLE,
            Status::Unknown,
            r::NO_RUNNERS,
            NO_RUNNER_TO_ASK,
        ),
    }
}

/// QueueReachable from a health report: only its database checks count (the runner's
/// `ollama` and `models` checks are OllamaReady's and ModelsReady's business).
fn queue_from_report(report: &HealthReport) -> Draft {
    let database_checks: Vec<&HealthCheck> = report
        .checks
        .iter()
        .filter(|c| !RUNNER_OLLAMA_CHECKS.contains(&c.check.as_str()))
        .collect();
    let failed_checks: Vec<&HealthCheck> = database_checks
        .iter()
        .copied()
        .filter(|c| failed(c))
        .collect();
    if failed_checks
        .iter()
        .any(|c| c.detail == learning_contract::health::DB_CONNECT_FAILED)
    {
        Draft::new(
            t::QUEUE_REACHABLE,
            false,
            r::DATABASE_UNREACHABLE,
            "the runners cannot connect to the database (check the DSN Secret and the network)",
        )
    } else if failed_checks.is_empty() && !database_checks.is_empty() {
        let role = report.current_role.as_deref().unwrap_or("?");
        Draft::new(
            t::QUEUE_REACHABLE,
            true,
            r::QUEUE_VISIBLE,
            format!("connected as {role}"),
        )
    } else {
        Draft::new(
            t::QUEUE_REACHABLE,
            false,
            r::QUEUE_CHECK_FAILED,
            format!("failed checks: {}", listing(&failed_checks)),
        )
    }
}

fn failed(check: &HealthCheck) -> bool {
    !check.passed()
}

/// Checks as `check (detail)`, comma-separated.
fn listing(checks: &[&HealthCheck]) -> String {
    checks
        .iter()
        .map(|c| format!("{} ({})", c.check, c.detail))
        .collect::<Vec<_>>()
        .join(", ")
}
