//! Table of OllamaReady.

use super::*;
use crate::status::ollama::ollama_ready;

#[test]
fn ollama_ready_by_setup_pod_and_api_version() {
    let starting = || Observed {
        ollama: Some(workload(1, 0)),
        ollama_version: Probe::Skipped,
        ..all_good()
    };
    let rows = [
        (
            "stub backend",
            "stub",
            Observed::default(),
            (Status::True, r::NOT_REQUIRED),
            "needs no Ollama",
        ),
        (
            "managed, ready and answering",
            "managed",
            all_good(),
            (Status::True, r::OLLAMA_AVAILABLE),
            "Ollama 0.12.3 answers",
        ),
        (
            "managed, ready, a stale pod problem",
            "managed",
            Observed {
                ollama_pods: vec![issue(r::OOM_KILLED)],
                ..all_good()
            },
            (Status::True, r::OLLAMA_AVAILABLE),
            "answers",
        ),
        (
            "managed, ready but not answering",
            "managed",
            Observed {
                ollama_version: Probe::Failed("GET /api/version answered 500".into()),
                ..all_good()
            },
            (Status::False, r::OLLAMA_UNREACHABLE),
            "answered 500",
        ),
        (
            "managed, ready, not asked yet",
            "managed",
            Observed {
                ollama_version: Probe::Skipped,
                ..all_good()
            },
            (Status::False, r::OLLAMA_STARTING),
            "not ready yet",
        ),
        (
            "managed, starting",
            "managed",
            starting(),
            (Status::False, r::OLLAMA_STARTING),
            "the Ollama pod is not ready yet",
        ),
        (
            "managed, no Deployment yet",
            "managed",
            Observed::default(),
            (Status::False, r::OLLAMA_STARTING),
            "not ready yet",
        ),
        (
            "managed, the pod's problem",
            "managed",
            Observed {
                ollama_pods: vec![issue(r::UNSCHEDULABLE)],
                ..starting()
            },
            (Status::False, r::UNSCHEDULABLE),
            "pod school-a-x: why",
        ),
        (
            "external, answering",
            "external",
            all_good(),
            (Status::True, r::EXTERNAL),
            "external Ollama 0.12.3 answers",
        ),
        (
            "external, not answering",
            "external",
            Observed {
                ollama_version: Probe::Failed("connection refused".into()),
                ..all_good()
            },
            (Status::False, r::OLLAMA_UNREACHABLE),
            "connection refused",
        ),
        (
            "external, out of the operator's reach",
            "external",
            Observed::default(),
            (Status::Unknown, r::EXTERNAL),
            "cannot be reached from the operator",
        ),
    ];
    for (case, setup, observed, expected, message) in rows {
        let draft = ollama_ready(&worker(setup).spec, &observed);
        assert_eq!(draft.type_, t::OLLAMA_READY);
        assert_eq!(verdict(&draft), expected, "{case}");
        assert!(draft.message.contains(message), "{case}: {}", draft.message);
    }
}
