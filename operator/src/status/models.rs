//! ModelsReady: the required models (the AI settings' models plus `ollama.extraModels`)
//! against what Ollama lists in `/api/tags`, with the pull Job's progress or failure, or how
//! the missing ones get there.

use learning_crds::ai::Backend;
use learning_crds::conditions::{reasons as r, types as t, Status};
use learning_crds::{LearningWorker, LearningWorkerSpec};

use super::Draft;
use crate::desired::ollama::required_models;
use crate::observed::PullJob;
use crate::probes::{same_model, Probe};

/// The models the worker needs and which of them Ollama lists.
pub(super) struct Inventory<'a> {
    required: Vec<String>,
    listed: Option<&'a Vec<String>>,
}

impl<'a> Inventory<'a> {
    /// The required models of `lw` against `listed` (`/api/tags`, when it answered).
    pub(super) fn new(lw: &LearningWorker, listed: Option<&'a Vec<String>>) -> Self {
        Inventory {
            required: required_models(lw),
            listed,
        }
    }

    /// Every required model.
    pub(super) fn required(&self) -> &[String] {
        &self.required
    }

    /// Whether Ollama lists `model` (never, while `/api/tags` did not answer).
    pub(super) fn is_present(&self, model: &str) -> bool {
        self.listed
            .is_some_and(|tags| tags.iter().any(|tag| same_model(tag, model)))
    }

    /// The required models Ollama does not list.
    pub(super) fn missing(&self) -> Vec<&str> {
        self.required
            .iter()
            .filter(|model| !self.is_present(model))
            .map(String::as_str)
            .collect()
    }

    /// `present/required models present`.
    pub(super) fn progress(&self) -> String {
        let required = self.required.len();
        format!(
            "{}/{required} models present",
            required - self.missing().len()
        )
    }
}

/// ModelsReady: not required by the stub backend; otherwise whether every required model is
/// listed, `Unknown` while Ollama cannot be asked.
pub(super) fn models_ready(
    spec: &LearningWorkerSpec,
    tags: &Probe<Vec<String>>,
    pull_job: Option<&PullJob>,
    inventory: &Inventory,
) -> Draft {
    if spec.ai.backend == Backend::Stub {
        return Draft::new(
            t::MODELS_READY,
            true,
            r::NOT_REQUIRED,
            "the stub backend needs no models",
        );
    }
    match tags {
        Probe::Ok(_) => listed_models_ready(spec, pull_job, inventory),
        Probe::Failed(error) => Draft::new(
            t::MODELS_READY,
            Status::Unknown,
            r::OLLAMA_UNREACHABLE,
            error.clone(),
        ),
        Probe::Skipped => Draft::new(
            t::MODELS_READY,
            Status::Unknown,
            r::OLLAMA_STARTING,
            "Ollama is not ready to ask",
        ),
    }
}

/// ModelsReady once Ollama listed its models: all present; or the pull Job's failure or
/// progress; or what is missing and how it gets there.
fn listed_models_ready(
    spec: &LearningWorkerSpec,
    pull_job: Option<&PullJob>,
    inventory: &Inventory,
) -> Draft {
    let progress = inventory.progress();
    let missing = inventory.missing();
    if missing.is_empty() {
        return Draft::new(t::MODELS_READY, true, r::MODELS_PRESENT, progress);
    }
    match pull_job {
        Some(job) if job.failed.is_some() => Draft::new(
            t::MODELS_READY,
            false,
            r::MODEL_PULL_FAILED,
            format!(
                "Job {} failed: {}; {progress}",
                job.name,
                job.failed.as_deref().unwrap_or_default()
            ),
        ),
        Some(job) if !job.succeeded => Draft::new(
            t::MODELS_READY,
            false,
            r::MODEL_PULL_IN_PROGRESS,
            format!(
                "Job {} pulls {}; {progress}",
                job.name,
                job.models.join(", ")
            ),
        ),
        _ => {
            let how = if spec.manages_ollama() && spec.ollama.pull_models {
                "a pull Job will fetch them"
            } else {
                "put them on the model volume"
            };
            Draft::new(
                t::MODELS_READY,
                false,
                r::MODELS_MISSING,
                format!("missing: {} ({how})", missing.join(", ")),
            )
        }
    }
}
