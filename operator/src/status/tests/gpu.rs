//! Table of GPUAccelerated.

use super::*;
use crate::desired::ollama::required_models;
use crate::status::gpu::gpu_accelerated;

#[test]
fn gpu_accelerated_by_setup_and_loaded_models() {
    let on_gpu = || Probe::Ok(vec![loaded("gpt-oss:20b", 100)]);
    let on_cpu = || Probe::Ok(vec![loaded("qwen2.5vl:3b", 100), loaded("gpt-oss:20b", 30)]);
    let nothing = || Probe::Ok(vec![]);
    let external_model = required_models(&worker("external"))[0].clone();
    let rows = [
        (
            "stub backend",
            "stub",
            on_gpu(),
            (Status::False, r::NOT_REQUIRED),
            "uses no GPU",
        ),
        (
            "CPU only",
            "cpu-only",
            on_gpu(),
            (Status::False, r::CPU_ONLY),
            "gpu.vendor is none",
        ),
        (
            "fully on the GPU",
            "managed",
            on_gpu(),
            (Status::True, r::MODELS_ON_GPU),
            "1 loaded model(s) fully in GPU memory",
        ),
        (
            "partly on the CPU",
            "managed",
            on_cpu(),
            (Status::False, r::CPU_FALLBACK),
            "gpt-oss:20b runs 30% on the GPU, the rest on the CPU",
        ),
        (
            "nothing loaded",
            "managed",
            nothing(),
            (Status::Unknown, r::NO_MODEL_LOADED),
            "no model",
        ),
        (
            "only a model the worker does not use",
            "managed",
            Probe::Ok(vec![loaded("llama3:8b", 0)]),
            (Status::Unknown, r::NO_MODEL_LOADED),
            "no model is loaded right now",
        ),
        (
            "Ollama unreachable",
            "managed",
            Probe::Failed("connection refused".into()),
            (Status::Unknown, r::OLLAMA_UNREACHABLE),
            "connection refused",
        ),
        (
            "Ollama not asked",
            "managed",
            Probe::Skipped,
            (Status::Unknown, r::OLLAMA_STARTING),
            "not ready to ask",
        ),
        (
            "AMD without the render group, nothing loaded",
            "amd-without-render-group",
            nothing(),
            (Status::False, r::DEVICE_GROUPS_MISSING),
            "gpu.renderGroupId is unset",
        ),
        (
            "AMD without the render group, Ollama unreachable",
            "amd-without-render-group",
            Probe::Failed("connection refused".into()),
            (Status::False, r::DEVICE_GROUPS_MISSING),
            "device_ownership_from_security_context",
        ),
        (
            "AMD without the render group, on the GPU anyway",
            "amd-without-render-group",
            on_gpu(),
            (Status::True, r::MODELS_ON_GPU),
            "fully in GPU memory",
        ),
        (
            "AMD without the render group, on the CPU",
            "amd-without-render-group",
            on_cpu(),
            (Status::False, r::CPU_FALLBACK),
            "runs 30% on the GPU, the rest on the CPU; gpu.renderGroupId is unset",
        ),
        (
            "NVIDIA, nothing loaded",
            "nvidia",
            nothing(),
            (Status::Unknown, r::NO_MODEL_LOADED),
            "no model",
        ),
        (
            "external, fully on the GPU",
            "external",
            Probe::Ok(vec![loaded(&external_model, 100)]),
            (Status::True, r::MODELS_ON_GPU),
            "fully",
        ),
    ];
    for (case, setup, ps, expected, message) in rows {
        let lw = worker(setup);
        let required = required_models(&lw);
        let draft = gpu_accelerated(&lw.spec, &ps, &required);
        assert_eq!(draft.type_, t::GPU_ACCELERATED);
        assert_eq!(verdict(&draft), expected, "{case}");
        assert!(draft.message.contains(message), "{case}: {}", draft.message);
    }
}
