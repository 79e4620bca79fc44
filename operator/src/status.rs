//! Pure status computation: from what was observed (workloads, pod issues, health report,
//! queue metrics, Ollama's API, the pull Job) to the status with its conditions, and the
//! condition transitions that become Events.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use learning_crds::ai::Backend;
use learning_crds::conditions::{new_condition, reasons as r, set_condition, types as t, Status};
use learning_crds::ollama::{GpuVendor, OllamaMode};
use learning_crds::status::{
    HealthStatus, LearningWorkerStatus, ModelPullStatus, ModelStatus, OllamaStatus, QueueStatus,
    ReplicaCounts,
};
use learning_crds::validate::SpecError;
use learning_crds::LearningWorker;

use crate::desired::ollama::{refused_storage_change, required_models, ExistingClaim};
use crate::pod_issues::PodIssue;
use crate::probes::{same_model, LoadedModel, Probe};

/// State of a Deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workload {
    /// Pod counts.
    pub counts: ReplicaCounts,
    /// The Deployment controller has seen the latest template.
    pub observed_current: bool,
}

/// State of the model-pull Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullJob {
    /// Job name.
    pub name: String,
    /// The models it pulls.
    pub models: Vec<String>,
    /// Finished successfully.
    pub succeeded: bool,
    /// Failed for good (the message says why).
    pub failed: Option<String>,
}

/// Everything observed for one LearningWorker.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Runner Deployment, when it exists.
    pub runner: Option<Workload>,
    /// Problems of runner pods.
    pub runner_pods: Vec<PodIssue>,
    /// Health report through the runner Service.
    pub health: Probe<HealthStatus>,
    /// Queue depth from the runners' metrics.
    pub queue: Probe<QueueStatus>,
    /// Managed Ollama Deployment, when it exists.
    pub ollama: Option<Workload>,
    /// Problems of Ollama pods.
    pub ollama_pods: Vec<PodIssue>,
    /// `/api/version`.
    pub ollama_version: Probe<String>,
    /// `/api/tags`.
    pub tags: Probe<Vec<String>>,
    /// `/api/ps`.
    pub ps: Probe<Vec<LoadedModel>>,
    /// The newest pull Job, when one exists.
    pub pull_job: Option<PullJob>,
    /// Some pull Job of this worker is still running.
    pub pull_active: bool,
    /// The URL the runners use for Ollama.
    pub ollama_url: Option<String>,
    /// The model PersistentVolumeClaim, when it exists.
    pub models_claim: Option<ExistingClaim>,
}

impl Default for Observed {
    fn default() -> Self {
        Observed {
            runner: None,
            runner_pods: Vec::new(),
            health: Probe::Skipped,
            queue: Probe::Skipped,
            ollama: None,
            ollama_pods: Vec::new(),
            ollama_version: Probe::Skipped,
            tags: Probe::Skipped,
            ps: Probe::Skipped,
            pull_job: None,
            pull_active: false,
            ollama_url: None,
            models_claim: None,
        }
    }
}

/// A condition that changed status or reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The condition now.
    pub condition: Condition,
    /// Whether it signals trouble (a Warning Event) rather than recovery or progress.
    pub warning: bool,
}

/// The new status and its transitions.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The status to write.
    pub status: LearningWorkerStatus,
    /// Conditions that changed, for Events.
    pub transitions: Vec<Transition>,
}

/// One condition being built.
struct C {
    type_: &'static str,
    status: Status,
    reason: &'static str,
    message: String,
}

fn c(
    type_: &'static str,
    status: impl Into<Status>,
    reason: &'static str,
    message: impl Into<String>,
) -> C {
    C {
        type_,
        status: status.into(),
        reason,
        message: message.into(),
    }
}

/// The checks of the runner's health report that are about Ollama, not the database
/// (`AI_BACKEND=local`).
pub const RUNNER_OLLAMA_CHECKS: [&str; 2] = ["ollama", "models"];

const BENIGN: [&str; 6] = [
    r::SUSPENDED,
    r::NOT_REQUIRED,
    r::CPU_ONLY,
    r::OLLAMA_STARTING,
    r::MODEL_PULL_IN_PROGRESS,
    r::NO_MODEL_LOADED,
];

fn is_warning(cond: &Condition) -> bool {
    match cond.type_.as_str() {
        t::DEGRADED => cond.status == "True",
        t::PROGRESSING => false,
        _ => cond.status != "True" && !BENIGN.contains(&cond.reason.as_str()),
    }
}

fn finish(
    lw: &LearningWorker,
    mut status: LearningWorkerStatus,
    conds: Vec<C>,
    now: Timestamp,
) -> Outcome {
    let generation = lw.metadata.generation;
    let mut transitions = Vec::new();
    for cond in conds {
        let next = new_condition(
            cond.type_,
            cond.status,
            cond.reason,
            cond.message,
            generation,
            now,
        );
        if set_condition(&mut status.conditions, next.clone()) {
            let condition = status
                .conditions
                .iter()
                .find(|c| c.type_ == next.type_)
                .cloned()
                .unwrap_or(next);
            transitions.push(Transition {
                warning: is_warning(&condition),
                condition,
            });
        }
    }
    status.conditions.sort_by_key(|c| {
        t::ALL
            .iter()
            .position(|x| *x == c.type_)
            .unwrap_or(usize::MAX)
    });
    status.observed_generation = generation;
    Outcome {
        status,
        transitions,
    }
}

/// The status of a spec that breaks the rules: `Ready=False`/`Degraded=True`, reason
/// `InvalidSpec`, the other conditions untouched.
pub fn invalid(lw: &LearningWorker, errors: &[SpecError], now: Timestamp) -> Outcome {
    let message = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    let previous = lw.status.clone().unwrap_or_default();
    finish(
        lw,
        previous,
        vec![
            c(t::READY, false, r::INVALID_SPEC, message.clone()),
            c(t::DEGRADED, true, r::INVALID_SPEC, message),
        ],
        now,
    )
}

fn counts_text(w: &Option<Workload>) -> String {
    w.as_ref().map_or("0/0".into(), |w| {
        format!("{}/{}", w.counts.ready, w.counts.desired)
    })
}

fn pod_message(i: &PodIssue) -> String {
    format!("pod {}: {}", i.pod, i.message)
}

/// Computes the status from the observation. `apply_error` is set when applying children failed.
pub fn compute(
    lw: &LearningWorker,
    o: &Observed,
    apply_error: Option<&str>,
    now: Timestamp,
) -> Outcome {
    let spec = &lw.spec;
    let previous = lw.status.clone().unwrap_or_default();
    let stub = spec.ai.backend == Backend::Stub;
    let managed = spec.manages_ollama();
    let models = required_models(lw);

    // Runners.
    let runners_available = if spec.suspend {
        c(
            t::RUNNERS_AVAILABLE,
            false,
            r::SUSPENDED,
            "spec.suspend is true: runners are scaled to zero",
        )
    } else {
        match &o.runner {
            Some(w) if w.counts.desired > 0 && w.counts.available >= w.counts.desired => c(
                t::RUNNERS_AVAILABLE,
                true,
                r::MINIMUM_REPLICAS_AVAILABLE,
                format!(
                    "{}/{} runners available",
                    w.counts.available, w.counts.desired
                ),
            ),
            _ => match o.runner_pods.first() {
                Some(issue) => c(
                    t::RUNNERS_AVAILABLE,
                    false,
                    issue.reason,
                    pod_message(issue),
                ),
                None => c(
                    t::RUNNERS_AVAILABLE,
                    false,
                    r::MINIMUM_REPLICAS_UNAVAILABLE,
                    format!("{} runners ready", counts_text(&o.runner)),
                ),
            },
        }
    };
    let (runners_healthy, queue_reachable) = match (&o.health, spec.suspend) {
        (_, true) => (
            c(
                t::RUNNERS_HEALTHY,
                false,
                r::SUSPENDED,
                "no runners while suspended",
            ),
            c(
                t::QUEUE_REACHABLE,
                Status::Unknown,
                r::SUSPENDED,
                "no runners while suspended",
            ),
        ),
        (Probe::Ok(h), _) => {
            let failed: Vec<&learning_crds::status::HealthCheck> =
                h.checks.iter().filter(|c| c.status != "ok").collect();
            let listing = failed
                .iter()
                .map(|c| format!("{} ({})", c.check, c.detail))
                .collect::<Vec<_>>()
                .join(", ");
            let healthy = if h.status == "healthy" {
                c(
                    t::RUNNERS_HEALTHY,
                    true,
                    r::HEALTHY,
                    "health report: healthy",
                )
            } else {
                c(
                    t::RUNNERS_HEALTHY,
                    false,
                    r::HEALTH_DEGRADED,
                    format!("health report: degraded; failed checks: {listing}"),
                )
            };
            // The queue is about the database checks; the runner's `ollama` and `models`
            // checks (local backend) are OllamaReady's and ModelsReady's business.
            let db_checks: Vec<&learning_crds::status::HealthCheck> = h
                .checks
                .iter()
                .filter(|c| !RUNNER_OLLAMA_CHECKS.contains(&c.check.as_str()))
                .collect();
            let db_failed: Vec<&&learning_crds::status::HealthCheck> =
                db_checks.iter().filter(|c| c.status != "ok").collect();
            let db_listing = db_failed
                .iter()
                .map(|c| format!("{} ({})", c.check, c.detail))
                .collect::<Vec<_>>()
                .join(", ");
            let queue = if db_failed.iter().any(|c| c.detail == "db_connect_failed") {
                c(t::QUEUE_REACHABLE, false, r::DATABASE_UNREACHABLE, "the runners cannot connect to the database (check the DSN Secret and the network)")
            } else if db_failed.is_empty() && !db_checks.is_empty() {
                c(
                    t::QUEUE_REACHABLE,
                    true,
                    r::QUEUE_VISIBLE,
                    format!("connected as {}", h.current_role.as_deref().unwrap_or("?")),
                )
            } else {
                c(
                    t::QUEUE_REACHABLE,
                    false,
                    r::QUEUE_CHECK_FAILED,
                    format!("failed checks: {db_listing}"),
                )
            };
            (healthy, queue)
        }
        (Probe::Failed(e), _) => (
            c(
                t::RUNNERS_HEALTHY,
                Status::Unknown,
                r::HEALTH_UNREACHABLE,
                e.clone(),
            ),
            c(
                t::QUEUE_REACHABLE,
                Status::Unknown,
                r::HEALTH_UNREACHABLE,
                e.clone(),
            ),
        ),
        (Probe::Skipped, _) => (
            c(
                t::RUNNERS_HEALTHY,
                Status::Unknown,
                r::NO_RUNNERS,
                "no running runner to ask",
            ),
            c(
                t::QUEUE_REACHABLE,
                Status::Unknown,
                r::NO_RUNNERS,
                "no running runner to ask",
            ),
        ),
    };

    // Ollama.
    let ollama_ready = if stub {
        c(
            t::OLLAMA_READY,
            true,
            r::NOT_REQUIRED,
            "the stub backend needs no Ollama",
        )
    } else if managed {
        let ready = o.ollama.as_ref().is_some_and(|w| w.counts.ready >= 1);
        match (ready, o.ollama_pods.first(), &o.ollama_version) {
            (true, _, Probe::Ok(v)) => c(
                t::OLLAMA_READY,
                true,
                r::OLLAMA_AVAILABLE,
                format!("Ollama {v} answers"),
            ),
            (true, _, Probe::Failed(e)) => {
                c(t::OLLAMA_READY, false, r::OLLAMA_UNREACHABLE, e.clone())
            }
            (false, Some(issue), _) => c(t::OLLAMA_READY, false, issue.reason, pod_message(issue)),
            _ => c(
                t::OLLAMA_READY,
                false,
                r::OLLAMA_STARTING,
                "the Ollama pod is not ready yet",
            ),
        }
    } else {
        match &o.ollama_version {
            Probe::Ok(v) => c(
                t::OLLAMA_READY,
                true,
                r::EXTERNAL,
                format!("external Ollama {v} answers"),
            ),
            Probe::Failed(e) => c(t::OLLAMA_READY, false, r::OLLAMA_UNREACHABLE, e.clone()),
            Probe::Skipped => c(
                t::OLLAMA_READY,
                Status::Unknown,
                r::EXTERNAL,
                "the external Ollama cannot be reached from the operator",
            ),
        }
    };
    let present = |m: &String| {
        o.tags
            .ok()
            .is_some_and(|tags| tags.iter().any(|x| same_model(x, m)))
    };
    let missing: Vec<&String> = models.iter().filter(|m| !present(m)).collect();
    let progress = format!(
        "{}/{} models present",
        models.len() - missing.len(),
        models.len()
    );
    let models_ready = if stub {
        c(
            t::MODELS_READY,
            true,
            r::NOT_REQUIRED,
            "the stub backend needs no models",
        )
    } else {
        match (&o.tags, missing.is_empty(), &o.pull_job) {
            (Probe::Ok(_), true, _) => {
                c(t::MODELS_READY, true, r::MODELS_PRESENT, progress.clone())
            }
            (Probe::Ok(_), false, Some(job)) if job.failed.is_some() => c(
                t::MODELS_READY,
                false,
                r::MODEL_PULL_FAILED,
                format!(
                    "Job {} failed: {}; {progress}",
                    job.name,
                    job.failed.clone().unwrap_or_default()
                ),
            ),
            (Probe::Ok(_), false, Some(job)) if !job.succeeded => c(
                t::MODELS_READY,
                false,
                r::MODEL_PULL_IN_PROGRESS,
                format!(
                    "Job {} pulls {}; {progress}",
                    job.name,
                    job.models.join(", ")
                ),
            ),
            (Probe::Ok(_), false, _) => {
                let list = missing
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                let how = if managed && spec.ollama.pull_models {
                    "a pull Job will fetch them"
                } else {
                    "put them on the model volume"
                };
                c(
                    t::MODELS_READY,
                    false,
                    r::MODELS_MISSING,
                    format!("missing: {list} ({how})"),
                )
            }
            (Probe::Failed(e), _, _) => c(
                t::MODELS_READY,
                Status::Unknown,
                r::OLLAMA_UNREACHABLE,
                e.clone(),
            ),
            (Probe::Skipped, _, _) => c(
                t::MODELS_READY,
                Status::Unknown,
                r::OLLAMA_STARTING,
                "Ollama is not ready to ask",
            ),
        }
    };
    let cpu_only = managed && spec.ollama.gpu.vendor == GpuVendor::None;
    let loaded: Vec<&LoadedModel> =
        o.ps.ok()
            .map(|ps| {
                ps.iter()
                    .filter(|l| models.iter().any(|m| same_model(&l.name, m)))
                    .collect()
            })
            .unwrap_or_default();
    let gpu = if stub {
        c(
            t::GPU_ACCELERATED,
            false,
            r::NOT_REQUIRED,
            "the stub backend uses no GPU",
        )
    } else if cpu_only {
        c(
            t::GPU_ACCELERATED,
            false,
            r::CPU_ONLY,
            "gpu.vendor is none: Ollama runs on the CPU",
        )
    } else {
        match &o.ps {
            Probe::Ok(_) if loaded.is_empty() => c(
                t::GPU_ACCELERATED,
                Status::Unknown,
                r::NO_MODEL_LOADED,
                "no model is loaded right now",
            ),
            Probe::Ok(_) => match loaded.iter().find(|l| l.gpu_percent() < 100) {
                Some(l) => c(
                    t::GPU_ACCELERATED,
                    false,
                    r::CPU_FALLBACK,
                    format!(
                        "{} runs {}% on the GPU, the rest on the CPU",
                        l.name,
                        l.gpu_percent()
                    ),
                ),
                None => c(
                    t::GPU_ACCELERATED,
                    true,
                    r::MODELS_ON_GPU,
                    format!("{} loaded model(s) fully in GPU memory", loaded.len()),
                ),
            },
            Probe::Failed(e) => c(
                t::GPU_ACCELERATED,
                Status::Unknown,
                r::OLLAMA_UNREACHABLE,
                e.clone(),
            ),
            Probe::Skipped => c(
                t::GPU_ACCELERATED,
                Status::Unknown,
                r::OLLAMA_STARTING,
                "Ollama is not ready to ask",
            ),
        }
    };

    // A non-root Ollama opens /dev/kfd and /dev/dri/renderD* only through the node's render
    // group: without `renderGroupId` it most likely runs on the CPU. What /api/ps shows wins.
    let gpu = if managed
        && spec.ollama.gpu.vendor == GpuVendor::Amd
        && spec.ollama.gpu.render_group_id.is_none()
        && gpu.reason != r::MODELS_ON_GPU
    {
        let hint = "gpu.renderGroupId is unset: the non-root Ollama cannot open /dev/kfd and /dev/dri/renderD* unless the node's render group is a supplemental group (set renderGroupId, e.g. from `getent group render` on the node) or containerd gives devices to the pod's user (device_ownership_from_security_context = true)";
        if gpu.reason == r::CPU_FALLBACK {
            C {
                message: format!("{}; {hint}", gpu.message),
                ..gpu
            }
        } else {
            c(t::GPU_ACCELERATED, false, r::DEVICE_GROUPS_MISSING, hint)
        }
    } else {
        gpu
    };

    // Progressing.
    let rolling = o.runner.as_ref().is_some_and(|w| {
        !w.observed_current
            || w.counts.updated < w.counts.desired
            || w.counts.ready < w.counts.desired
    }) || o
        .ollama
        .as_ref()
        .is_some_and(|w| !w.observed_current || w.counts.ready < w.counts.desired);
    let pulling = o
        .pull_job
        .as_ref()
        .is_some_and(|j| !j.succeeded && j.failed.is_none());
    let progressing = if rolling {
        c(
            t::PROGRESSING,
            true,
            r::ROLLOUT_IN_PROGRESS,
            format!("runners {}", counts_text(&o.runner)),
        )
    } else if pulling {
        c(
            t::PROGRESSING,
            true,
            r::MODEL_PULL_IN_PROGRESS,
            progress.clone(),
        )
    } else {
        c(
            t::PROGRESSING,
            false,
            r::ROLLOUT_COMPLETE,
            "nothing is changing",
        )
    };

    // Degraded: the first cause that needs attention.
    let pod_cause = o.runner_pods.first().or(o.ollama_pods.first());
    let degraded = if let Some(e) = apply_error {
        c(t::DEGRADED, true, r::APPLY_FAILED, e)
    } else if let Some(issue) = pod_cause {
        c(t::DEGRADED, true, issue.reason, pod_message(issue))
    } else if queue_reachable.status == Status::False {
        c(
            t::DEGRADED,
            true,
            queue_reachable.reason,
            queue_reachable.message.clone(),
        )
    } else if runners_healthy.status == Status::False && !spec.suspend {
        c(
            t::DEGRADED,
            true,
            runners_healthy.reason,
            runners_healthy.message.clone(),
        )
    } else if models_ready.reason == r::MODEL_PULL_FAILED {
        c(
            t::DEGRADED,
            true,
            r::MODEL_PULL_FAILED,
            models_ready.message.clone(),
        )
    } else if let Some(why) = managed
        .then(|| refused_storage_change(lw, o.models_claim.as_ref()))
        .flatten()
    {
        c(t::DEGRADED, true, r::STORAGE_CHANGE_REFUSED, why)
    } else if gpu.reason == r::CPU_FALLBACK {
        c(t::DEGRADED, true, r::CPU_FALLBACK, gpu.message.clone())
    } else {
        c(t::DEGRADED, false, r::AS_EXPECTED, "")
    };

    // Ready: everything the worker needs to process jobs.
    let ready = if spec.suspend {
        c(
            t::READY,
            false,
            r::SUSPENDED,
            "spec.suspend is true: runners are scaled to zero",
        )
    } else if let Some(e) = apply_error {
        c(t::READY, false, r::APPLY_FAILED, e)
    } else {
        // Dependencies before their dependents: runners stay unready (`/readyz` 503) while
        // the database, Ollama or the models are missing, so "too few runners" is reported
        // only when the runners have no pod-level cause of their own and nothing they depend
        // on is known to be down.
        let runner_pod_cause = runners_available.status != Status::True
            && runners_available.reason != r::MINIMUM_REPLICAS_UNAVAILABLE;
        let dependency_down = [&queue_reachable, &ollama_ready, &models_ready]
            .into_iter()
            .find(|x| {
                x.status == Status::False
                    || (x.type_ != t::QUEUE_REACHABLE && x.status != Status::True)
            });
        let blocker = if runner_pod_cause {
            Some(&runners_available)
        } else {
            dependency_down.or_else(|| {
                [&runners_available, &runners_healthy, &queue_reachable]
                    .into_iter()
                    .find(|x| x.status != Status::True)
            })
        };
        match blocker {
            Some(blocker) => c(
                t::READY,
                false,
                blocker.reason,
                format!("{}: {}", blocker.type_, blocker.message),
            ),
            None => c(
                t::READY,
                true,
                r::READY,
                format!("{} runners processing the queue", counts_text(&o.runner)),
            ),
        }
    };

    let mut status = previous;
    status.runners_ready = Some(counts_text(&o.runner));
    status.runners = o.runner.as_ref().map(|w| w.counts.clone());
    status.ollama = Some(OllamaStatus {
        phase: match (stub, managed, ollama_ready.status) {
            (true, _, _) => "NotRequired",
            (false, false, _) => "External",
            (false, true, Status::True) => "Ready",
            _ => "NotReady",
        }
        .into(),
        url: o.ollama_url.clone(),
        replicas: o.ollama.as_ref().map(|w| w.counts.clone()),
        version: o.ollama_version.ok().cloned(),
    });
    if !stub && o.tags.ok().is_some() {
        status.models = models
            .iter()
            .map(|m| {
                let l =
                    o.ps.ok()
                        .and_then(|ps| ps.iter().find(|l| same_model(&l.name, m)));
                ModelStatus {
                    name: m.clone(),
                    present: present(m),
                    loaded: l.is_some(),
                    gpu_percent: l.map(LoadedModel::gpu_percent),
                }
            })
            .collect();
    }
    status.model_pull = o.pull_job.as_ref().map(|j| ModelPullStatus {
        job: j.name.clone(),
        phase: if j.failed.is_some() {
            "Failed"
        } else if j.succeeded {
            "Succeeded"
        } else {
            "Running"
        }
        .into(),
        models: j.models.clone(),
        progress: Some(progress.clone()),
        message: j.failed.clone(),
    });
    if let Probe::Ok(q) = &o.queue {
        status.queue = Some(q.clone());
    }
    if let Probe::Ok(h) = &o.health {
        status.health = Some(h.clone());
    }
    finish(
        lw,
        status,
        vec![
            ready,
            runners_available,
            runners_healthy,
            queue_reachable,
            ollama_ready,
            models_ready,
            gpu,
            progressing,
            degraded,
        ],
        now,
    )
}

/// Whether the external URL's host can be reached from the operator (a dot-less service name
/// in the worker's namespace); `localhost` URLs point into the runner pod and cannot.
pub fn operator_reachable_url(url: &str, namespace: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.starts_with('[') => (h, Some(p)),
        _ => (authority, None),
    };
    if host.eq_ignore_ascii_case("localhost")
        || host.starts_with('[')
        || host.parse::<std::net::IpAddr>().is_ok()
    {
        return None;
    }
    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
    Some(format!(
        "{scheme}://{host}.{namespace}.svc{port}{}",
        path.trim_end_matches('/')
    ))
}

/// Whether `mode` is external (used by the observer).
pub fn is_external(lw: &LearningWorker) -> bool {
    lw.spec.ollama.mode == OllamaMode::External && lw.spec.ai.backend == Backend::Local
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
