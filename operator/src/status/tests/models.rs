//! Tables of the model inventory and of ModelsReady.

use super::*;
use crate::status::models::{models_ready, Inventory};

fn tags(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

#[test]
fn the_inventory_matches_required_models_to_listed_tags() {
    let lw = worker("managed");
    let rows = [
        (
            "both listed",
            Some(tags(&["qwen2.5vl:3b", "gpt-oss:20b"])),
            vec![],
            "2/2 models present",
        ),
        (
            "a registry path names another model",
            Some(tags(&[
                "qwen2.5vl:3b",
                "registry.example/library/gpt-oss:20b",
            ])),
            vec!["gpt-oss:20b"],
            "1/2 models present",
        ),
        (
            "one listed",
            Some(tags(&["qwen2.5vl:3b", "other:1b"])),
            vec!["gpt-oss:20b"],
            "1/2 models present",
        ),
        (
            "none listed",
            Some(vec![]),
            vec!["qwen2.5vl:3b", "gpt-oss:20b"],
            "0/2 models present",
        ),
        (
            "tags unknown",
            None,
            vec!["qwen2.5vl:3b", "gpt-oss:20b"],
            "0/2 models present",
        ),
    ];
    for (case, listed, missing, progress) in rows {
        let inventory = Inventory::new(&lw, listed.as_ref());
        assert_eq!(
            inventory.required(),
            ["qwen2.5vl:3b", "gpt-oss:20b"],
            "{case}"
        );
        assert_eq!(inventory.missing(), missing, "{case}");
        assert_eq!(inventory.progress(), progress, "{case}");
    }
}

#[test]
fn models_ready_by_listed_models_and_the_pull_job() {
    let one_missing = || Probe::Ok(tags(&["qwen2.5vl:3b"]));
    let rows = [
        (
            "stub backend",
            "stub",
            Probe::Skipped,
            None,
            (Status::True, r::NOT_REQUIRED),
            "needs no models",
        ),
        (
            "all present",
            "managed",
            Probe::Ok(tags(&["gpt-oss:20b", "qwen2.5vl:3b"])),
            Some(pull_job(false, Some("stale"))),
            (Status::True, r::MODELS_PRESENT),
            "2/2 models present",
        ),
        (
            "a pull Job will fetch them",
            "managed",
            one_missing(),
            None,
            (Status::False, r::MODELS_MISSING),
            "missing: gpt-oss:20b (a pull Job will fetch them)",
        ),
        (
            "pulls off",
            "no-pulls",
            one_missing(),
            None,
            (Status::False, r::MODELS_MISSING),
            "missing: gpt-oss:20b (put them on the model volume)",
        ),
        (
            "external Ollama",
            "external",
            one_missing(),
            None,
            (Status::False, r::MODELS_MISSING),
            "(put them on the model volume)",
        ),
        (
            "pulling",
            "managed",
            one_missing(),
            Some(pull_job(false, None)),
            (Status::False, r::MODEL_PULL_IN_PROGRESS),
            "Job school-a-model-pull-1 pulls gpt-oss:20b; 1/2 models present",
        ),
        (
            "the pull failed",
            "managed",
            one_missing(),
            Some(pull_job(false, Some("BackoffLimitExceeded"))),
            (Status::False, r::MODEL_PULL_FAILED),
            "Job school-a-model-pull-1 failed: BackoffLimitExceeded; 1/2 models present",
        ),
        (
            "the pull succeeded, still missing",
            "managed",
            one_missing(),
            Some(pull_job(true, None)),
            (Status::False, r::MODELS_MISSING),
            "missing: gpt-oss:20b",
        ),
        (
            "Ollama unreachable",
            "managed",
            Probe::Failed("connection refused".into()),
            None,
            (Status::Unknown, r::OLLAMA_UNREACHABLE),
            "connection refused",
        ),
        (
            "Ollama not asked",
            "managed",
            Probe::Skipped,
            Some(pull_job(false, None)),
            (Status::Unknown, r::OLLAMA_STARTING),
            "Ollama is not ready to ask",
        ),
    ];
    for (case, setup, listed, job, expected, message) in rows {
        let lw = worker(setup);
        let inventory = Inventory::new(&lw, listed.ok());
        let draft = models_ready(&lw.spec, &listed, job.as_ref(), &inventory);
        assert_eq!(draft.type_, t::MODELS_READY);
        assert_eq!(verdict(&draft), expected, "{case}");
        assert!(draft.message.contains(message), "{case}: {}", draft.message);
    }
}
