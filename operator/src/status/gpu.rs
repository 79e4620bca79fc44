//! GPUAccelerated: whether the required models Ollama has loaded (`/api/ps`) run fully in
//! GPU memory; with an AMD GPU but no `gpu.renderGroupId`, the likely cause when they do not.

use learning_crds::ai::Backend;
use learning_crds::conditions::{reasons as r, types as t, Status};
use learning_crds::ollama::GpuVendor;
use learning_crds::LearningWorkerSpec;

use super::Draft;
use crate::probes::{same_model, LoadedModel, Probe};

/// Why a non-root Ollama on an AMD GPU without `gpu.renderGroupId` most likely runs on the
/// CPU.
const RENDER_GROUP_HINT: &str = "gpu.renderGroupId is unset: the non-root Ollama cannot open /dev/kfd and /dev/dri/renderD* unless the node's render group is a supplemental group (set renderGroupId, e.g. from `getent group render` on the node) or containerd gives devices to the pod's user (device_ownership_from_security_context = true)";

/// GPUAccelerated for the worker's setup, from `/api/ps` and the `required` models.
pub(super) fn gpu_accelerated(
    spec: &LearningWorkerSpec,
    ps: &Probe<Vec<LoadedModel>>,
    required: &[String],
) -> Draft {
    let measured = if spec.ai.backend == Backend::Stub {
        Draft::new(
            t::GPU_ACCELERATED,
            false,
            r::NOT_REQUIRED,
            "the stub backend uses no GPU",
        )
    } else if spec.manages_ollama() && spec.ollama.gpu.vendor == GpuVendor::None {
        Draft::new(
            t::GPU_ACCELERATED,
            false,
            r::CPU_ONLY,
            "gpu.vendor is none: Ollama runs on the CPU",
        )
    } else {
        loaded_on_gpu(ps, required)
    };
    with_render_group_hint(spec, measured)
}

/// What `/api/ps` shows of the required models: all fully on the GPU, or the first that is
/// not; `Unknown` while none is loaded or Ollama cannot be asked.
fn loaded_on_gpu(ps: &Probe<Vec<LoadedModel>>, required: &[String]) -> Draft {
    let loaded: Vec<&LoadedModel> = match ps {
        Probe::Ok(models) => models
            .iter()
            .filter(|model| required.iter().any(|name| same_model(&model.name, name)))
            .collect(),
        Probe::Failed(error) => {
            return Draft::new(
                t::GPU_ACCELERATED,
                Status::Unknown,
                r::OLLAMA_UNREACHABLE,
                error.clone(),
            )
        }
        Probe::Skipped => {
            return Draft::new(
                t::GPU_ACCELERATED,
                Status::Unknown,
                r::OLLAMA_STARTING,
                "Ollama is not ready to ask",
            )
        }
    };
    if loaded.is_empty() {
        return Draft::new(
            t::GPU_ACCELERATED,
            Status::Unknown,
            r::NO_MODEL_LOADED,
            "no model is loaded right now",
        );
    }
    match loaded.iter().find(|model| model.gpu_percent() < 100) {
        Some(partly_on_cpu) => Draft::new(
            t::GPU_ACCELERATED,
            false,
            r::CPU_FALLBACK,
            format!(
                "{} runs {}% on the GPU, the rest on the CPU",
                partly_on_cpu.name,
                partly_on_cpu.gpu_percent()
            ),
        ),
        None => Draft::new(
            t::GPU_ACCELERATED,
            true,
            r::MODELS_ON_GPU,
            format!("{} loaded model(s) fully in GPU memory", loaded.len()),
        ),
    }
}

/// A non-root Ollama opens /dev/kfd and /dev/dri/renderD* only through the node's render
/// group: without `renderGroupId` it most likely runs on the CPU. What /api/ps shows wins:
/// models fully on the GPU keep `ModelsOnGPU`, a CPU fallback gets the hint appended, and
/// anything else becomes `DeviceGroupsMissing`.
fn with_render_group_hint(spec: &LearningWorkerSpec, measured: Draft) -> Draft {
    let gpu = &spec.ollama.gpu;
    let hint_applies = spec.manages_ollama()
        && gpu.vendor == GpuVendor::Amd
        && gpu.render_group_id.is_none()
        && measured.reason != r::MODELS_ON_GPU;
    if !hint_applies {
        measured
    } else if measured.reason == r::CPU_FALLBACK {
        Draft {
            message: format!("{}; {RENDER_GROUP_HINT}", measured.message),
            ..measured
        }
    } else {
        Draft::new(
            t::GPU_ACCELERATED,
            false,
            r::DEVICE_GROUPS_MISSING,
            RENDER_GROUP_HINT,
        )
    }
}
