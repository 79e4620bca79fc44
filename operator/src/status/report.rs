//! The status fields beside the conditions: runner counts, Ollama's phase and version, each
//! required model, the pull Job, and the last queue and health reports.

use learning_crds::ai::Backend;
use learning_crds::conditions::Status;
use learning_crds::status::{LearningWorkerStatus, ModelPullStatus, ModelStatus, OllamaStatus};
use learning_crds::LearningWorkerSpec;

use super::counts_text;
use super::models::Inventory;
use crate::observed::{Observed, PullJob};
use crate::probes::{same_model, LoadedModel, Probe};

/// `previous` with the fields reported from `observed`; `ollama_ready` is OllamaReady's
/// status (it decides Ollama's phase). The models and the queue and health reports keep
/// their last known values while they cannot be read.
pub(super) fn report(
    mut status: LearningWorkerStatus,
    spec: &LearningWorkerSpec,
    observed: &Observed,
    inventory: &Inventory,
    ollama_ready: Status,
) -> LearningWorkerStatus {
    let stub = spec.ai.backend == Backend::Stub;
    status.runners_ready = Some(counts_text(observed.runner.as_ref()));
    status.runners = observed.runner.as_ref().map(|w| w.counts.clone());
    status.ollama = Some(ollama_status(
        stub,
        spec.manages_ollama(),
        observed,
        ollama_ready,
    ));
    if !stub && observed.tags.ok().is_some() {
        status.models = model_statuses(inventory, &observed.ps);
    }
    status.model_pull = observed
        .pull_job
        .as_ref()
        .map(|job| model_pull_status(job, inventory.progress()));
    if let Probe::Ok(queue) = &observed.queue {
        status.queue = Some(queue.clone());
    }
    if let Probe::Ok(health) = &observed.health {
        status.health = Some(health.clone());
    }
    status
}

fn ollama_status(
    stub: bool,
    managed: bool,
    observed: &Observed,
    ollama_ready: Status,
) -> OllamaStatus {
    let phase = match (stub, managed, ollama_ready) {
        (true, _, _) => "NotRequired",
        (false, false, _) => "External",
        (false, true, Status::True) => "Ready",
        _ => "NotReady",
    };
    OllamaStatus {
        phase: phase.into(),
        url: observed.ollama_url.clone(),
        replicas: observed.ollama.as_ref().map(|w| w.counts.clone()),
        version: observed.ollama_version.ok().cloned(),
        idle_since: None,
    }
}

/// Each required model: listed by Ollama, loaded, and how much of it is in GPU memory.
fn model_statuses(inventory: &Inventory, ps: &Probe<Vec<LoadedModel>>) -> Vec<ModelStatus> {
    inventory
        .required()
        .iter()
        .map(|model| {
            let loaded = ps
                .ok()
                .and_then(|loaded| loaded.iter().find(|l| same_model(&l.name, model)));
            ModelStatus {
                name: model.clone(),
                present: inventory.is_present(model),
                loaded: loaded.is_some(),
                gpu_percent: loaded.map(LoadedModel::gpu_percent),
            }
        })
        .collect()
}

fn model_pull_status(job: &PullJob, progress: String) -> ModelPullStatus {
    let phase = if job.failed.is_some() {
        "Failed"
    } else if job.succeeded {
        "Succeeded"
    } else {
        "Running"
    };
    ModelPullStatus {
        job: job.name.clone(),
        phase: phase.into(),
        models: job.models.clone(),
        progress: Some(progress),
        message: job.failed.clone(),
    }
}
