//! OllamaReady: not required by the stub backend; for a managed Ollama, its pod ready and
//! `/api/version` answering (or the pod's problem); for an external one, `/api/version`
//! answering when the operator can reach it at all.

use learning_crds::ai::Backend;
use learning_crds::conditions::{reasons as r, types as t, Status};
use learning_crds::LearningWorkerSpec;

use super::{pod_message, Draft};
use crate::observed::Observed;
use crate::probes::Probe;

/// OllamaReady for the worker's backend and Ollama mode.
pub(super) fn ollama_ready(spec: &LearningWorkerSpec, observed: &Observed) -> Draft {
    if spec.ai.backend == Backend::Stub {
        Draft::new(
            t::OLLAMA_READY,
            true,
            r::NOT_REQUIRED,
            "the stub backend needs no Ollama",
        )
    } else if spec.manages_ollama() {
        managed_ollama_ready(observed)
    } else {
        external_ollama_ready(&observed.ollama_version)
    }
}

/// A managed Ollama: a ready pod that answers `/api/version`; while no pod is ready, the
/// first pod's problem, if any.
fn managed_ollama_ready(observed: &Observed) -> Draft {
    let pod_ready = observed
        .ollama
        .as_ref()
        .is_some_and(|w| w.counts.ready >= 1);
    match (
        pod_ready,
        observed.ollama_pods.first(),
        &observed.ollama_version,
    ) {
        (true, _, Probe::Ok(version)) => Draft::new(
            t::OLLAMA_READY,
            true,
            r::OLLAMA_AVAILABLE,
            format!("Ollama {version} answers"),
        ),
        (true, _, Probe::Failed(error)) => {
            Draft::new(t::OLLAMA_READY, false, r::OLLAMA_UNREACHABLE, error.clone())
        }
        (false, Some(issue), _) => {
            Draft::new(t::OLLAMA_READY, false, issue.reason, pod_message(issue))
        }
        _ => Draft::new(
            t::OLLAMA_READY,
            false,
            r::OLLAMA_STARTING,
            "the Ollama pod is not ready yet",
        ),
    }
}

/// An external Ollama: whether `/api/version` answers (`Unknown` when the operator cannot
/// reach the URL, e.g. `localhost` inside the runner pod).
fn external_ollama_ready(version: &Probe<String>) -> Draft {
    match version {
        Probe::Ok(version) => Draft::new(
            t::OLLAMA_READY,
            true,
            r::EXTERNAL,
            format!("external Ollama {version} answers"),
        ),
        Probe::Failed(error) => {
            Draft::new(t::OLLAMA_READY, false, r::OLLAMA_UNREACHABLE, error.clone())
        }
        Probe::Skipped => Draft::new(
            t::OLLAMA_READY,
            Status::Unknown,
            r::EXTERNAL,
            "the external Ollama cannot be reached from the operator",
        ),
    }
}
