//! Tests of the status computation: `compute` end to end (`compute`), and a table per
//! condition function (`runners`, `ollama`, `models`, `gpu`, `summary`). The fixtures here
//! describe a healthy managed-Ollama worker on an AMD GPU that each test changes.

mod compute;
mod gpu;
mod idle_gpu;
mod models;
mod ollama;
mod runners;
mod summary;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use learning_crds::ai::Backend;
use learning_crds::conditions::{reasons as r, types as t, Status};
use learning_crds::status::{HealthCheck, HealthReport, HealthState, QueueStatus, ReplicaCounts};
use learning_crds::LearningWorker;

use super::{Components, Draft, Outcome};
use crate::desired::fixtures::example;
use crate::observed::{Observed, PullJob, Workload};
use crate::pod_issues::PodIssue;
use crate::probes::{LoadedModel, Probe};

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

fn workload(desired: i32, ready: i32) -> Workload {
    Workload {
        counts: ReplicaCounts {
            desired,
            ready,
            available: ready,
            updated: desired,
        },
        observed_current: true,
    }
}

fn check(name: &str, status: &str, detail: &str) -> HealthCheck {
    HealthCheck {
        check: name.into(),
        status: status.into(),
        detail: detail.into(),
    }
}

fn healthy_report() -> HealthReport {
    HealthReport {
        status: HealthState::Healthy,
        current_role: Some("gustav_worker".into()),
        checks: vec![
            check("db_role", "ok", "gustav_worker"),
            check("queue_visibility", "ok", "ok"),
        ],
    }
}

/// What a local-backend runner reports while its Ollama is unreachable: database fine, the
/// `ollama` and `models` checks failed.
fn report_without_ollama() -> HealthReport {
    let mut h = healthy_report();
    h.status = HealthState::Degraded;
    h.checks.extend([
        check("ollama", "failed", "unreachable: connection refused"),
        check("models", "failed", "unknown: Ollama unreachable"),
    ]);
    h
}

/// A degraded report with these checks and no role.
fn degraded_report(checks: Vec<HealthCheck>) -> HealthReport {
    HealthReport {
        status: HealthState::Degraded,
        current_role: None,
        checks,
    }
}

fn loaded(name: &str, size_vram: u64) -> LoadedModel {
    LoadedModel {
        name: name.into(),
        size: 100,
        size_vram,
    }
}

fn all_good() -> Observed {
    Observed {
        runner: Some(workload(2, 2)),
        health: Probe::Ok(healthy_report()),
        queue: Probe::Ok(QueueStatus {
            visible: 4,
            ..QueueStatus::default()
        }),
        ollama: Some(workload(1, 1)),
        ollama_version: Probe::Ok("0.12.3".into()),
        tags: Probe::Ok(vec!["qwen2.5vl:3b".into(), "gpt-oss:20b".into()]),
        ps: Probe::Ok(vec![loaded("gpt-oss:20b", 100)]),
        ollama_url: Some("http://school-a-ollama:11434".into()),
        ..Observed::default()
    }
}

fn issue(reason: &'static str) -> PodIssue {
    PodIssue {
        pod: "school-a-x".into(),
        reason,
        message: "why".into(),
    }
}

fn pull_job(succeeded: bool, failed: Option<&str>) -> PullJob {
    PullJob {
        name: "school-a-model-pull-1".into(),
        models: vec!["gpt-oss:20b".into()],
        succeeded,
        failed: failed.map(Into::into),
    }
}

/// The worker of the condition tables: `managed` (an AMD GPU with its render group),
/// `amd-without-render-group`, `no-pulls` (`pullModels: false`), `nvidia`, `cpu-only`,
/// `external` or `stub`.
fn worker(setup: &str) -> LearningWorker {
    let mut lw = match setup {
        "managed" | "amd-without-render-group" | "no-pulls" | "stub" => example("amd-gpu.yaml"),
        "nvidia" => example("nvidia-gpu.yaml"),
        "cpu-only" => example("cpu-only.yaml"),
        "external" => example("external-ollama.yaml"),
        _ => panic!("no setup {setup}"),
    };
    match setup {
        "amd-without-render-group" => lw.spec.ollama.gpu.render_group_id = None,
        "no-pulls" => lw.spec.ollama.pull_models = false,
        "stub" => lw.spec.ai.backend = Backend::Stub,
        _ => {}
    }
    lw
}

/// A draft's status and reason, for the tables.
fn verdict(draft: &Draft) -> (Status, &'static str) {
    (draft.status, draft.reason)
}

/// Every component condition as it is when all is well.
fn healthy_components() -> Components {
    let ok = |type_, reason| Draft::new(type_, true, reason, "fine");
    Components {
        runners_available: ok(t::RUNNERS_AVAILABLE, r::MINIMUM_REPLICAS_AVAILABLE),
        runners_healthy: ok(t::RUNNERS_HEALTHY, r::HEALTHY),
        queue_reachable: ok(t::QUEUE_REACHABLE, r::QUEUE_VISIBLE),
        ollama_ready: ok(t::OLLAMA_READY, r::OLLAMA_AVAILABLE),
        models_ready: ok(t::MODELS_READY, r::MODELS_PRESENT),
        gpu_accelerated: ok(t::GPU_ACCELERATED, r::MODELS_ON_GPU),
    }
}

fn cond<'a>(o: &'a Outcome, type_: &str) -> &'a Condition {
    o.status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_}"))
}

fn summary(o: &Outcome, type_: &str) -> (String, String) {
    let c = cond(o, type_);
    (c.status.clone(), c.reason.clone())
}

fn s(status: &str, reason: &str) -> (String, String) {
    (status.to_owned(), reason.to_owned())
}
