//! How much model work the runners send to Ollama, derived from what Ollama serves. Pure.
//!
//! Ollama serves `OLLAMA_NUM_PARALLEL` requests per loaded model at once (its default, 1,
//! when `spec.ollama.numParallel` is unset) and queues the rest. The rules:
//! - **model calls per runner** (`AI_MAX_PARALLEL_CALLS`, per model): ⌈numParallel ÷ the
//!   most runners there can be⌉ — the fixed `replicas`, or autoscaling's `maxReplicas` — so
//!   the runners together do not queue inside Ollama, where the wait would count against a
//!   call's time limit. Each runner gets at least one call: with more runners than
//!   `numParallel`, calls can still wait inside Ollama (keep `maxReplicas` ≤ `numParallel`,
//!   or the timeouts generous). An external Ollama's capacity is known only from
//!   `numParallel`: without it nothing is derived;
//! - **jobs per runner** (`WORKER_CONCURRENCY`) unless `spec.runner.concurrency` is set:
//!   4 × the calls per model × the models, at most 16 — enough jobs waiting in the runner
//!   that the work for one model runs in long phases (few model swaps on a GPU that holds
//!   one model at a time), few enough that every job's file stays small in memory;
//! - **models loaded at once** (`OLLAMA_MAX_LOADED_MODELS`, managed Ollama): the distinct
//!   models the worker uses (vision, feedback and `extraModels`). Ollama loads a model
//!   beside another only when both fit in GPU memory, and otherwise swaps; the setting caps
//!   how many stay loaded (Ollama's own default is three per GPU).

use learning_contract::model::same_model;
use learning_crds::ai::Backend;
use learning_crds::ollama::OllamaMode;
use learning_crds::LearningWorker;

/// Ollama's default `OLLAMA_NUM_PARALLEL` (0.12).
pub const OLLAMA_DEFAULT_NUM_PARALLEL: u32 = 1;
/// Jobs per model call waiting in a runner, so that phases form.
pub const JOBS_PER_CALL: u32 = 4;
/// The most jobs a runner takes at once by derivation.
pub const MAX_DERIVED_CONCURRENCY: u32 = 16;

/// What the runners may send, and what the managed Ollama keeps loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// `AI_MAX_PARALLEL_CALLS`: model steps one runner has in flight per model.
    pub calls_per_model: u32,
    /// `WORKER_CONCURRENCY`: the user's `spec.runner.concurrency`, or derived.
    pub concurrency: u32,
    /// `OLLAMA_MAX_LOADED_MODELS`.
    pub loaded_models: u32,
}

/// The distinct models among `names`.
fn distinct(names: &[&str]) -> u32 {
    let mut seen: Vec<&str> = Vec::new();
    for name in names {
        if !seen.iter().any(|s| same_model(s, name)) {
            seen.push(name);
        }
    }
    seen.len() as u32
}

/// The most runner pods there can be (at least one).
fn most_runners(lw: &LearningWorker) -> u32 {
    let r = &lw.spec.runner;
    let most = match &r.autoscaling {
        Some(a) => a.max_replicas,
        None => r.replicas.unwrap_or(1),
    };
    most.max(1) as u32
}

/// The capacity of `lw`'s runners; `None` for the stub backend (no Ollama) and for an
/// external Ollama without `numParallel` (whose capacity the operator cannot know): one job at
/// a time unless `spec.runner.concurrency` says otherwise, and no model-call limit.
pub fn capacity(lw: &LearningWorker) -> Option<Capacity> {
    let spec = &lw.spec;
    if spec.ai.backend == Backend::Stub {
        return None;
    }
    let num_parallel = match (spec.ollama.mode, spec.ollama.num_parallel) {
        (_, Some(n)) => n.max(1) as u32,
        (OllamaMode::Managed, None) => OLLAMA_DEFAULT_NUM_PARALLEL,
        (OllamaMode::External, None) => return None,
    };
    let calls_per_model = num_parallel.div_ceil(most_runners(lw));
    let step_models = distinct(&[&spec.ai.vision_model, &spec.ai.feedback_model]);
    let mut all: Vec<&str> = vec![&spec.ai.vision_model, &spec.ai.feedback_model];
    all.extend(spec.ollama.extra_models.iter().map(String::as_str));
    let derived = (JOBS_PER_CALL * calls_per_model * step_models).min(MAX_DERIVED_CONCURRENCY);
    Some(Capacity {
        calls_per_model,
        concurrency: spec.runner.concurrency.map_or(derived, |c| c.max(1) as u32),
        loaded_models: distinct(&all),
    })
}

/// `WORKER_CONCURRENCY` for `lw`'s runners.
pub fn concurrency(lw: &LearningWorker) -> u32 {
    match capacity(lw) {
        Some(c) => c.concurrency,
        None => lw.spec.runner.concurrency.map_or(1, |c| c.max(1) as u32),
    }
}
