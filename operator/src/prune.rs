//! Pruning, decided purely: which existing children of a LearningWorker are no longer wanted
//! (e.g. the Ollama objects after switching to `external`, the NetworkPolicies after
//! `network.policies: false`). Only objects carrying the operator's labels for this worker AND
//! a controller owner reference to this worker's uid are candidates; anything else is never
//! touched. `apply::prune_children` does the listing and deleting.

use std::collections::{BTreeMap, BTreeSet};

use learning_crds::LearningWorker;

use crate::desired::{ChildKind, Children, INSTANCE, MANAGER};

/// Whether pruning lists and may delete children of `kind`: every kind but the
/// PersistentVolumeClaim (the model volume is never pruned — switching to an external Ollama
/// or the stub backend and back must not throw the pulled models away; deleting the
/// LearningWorker still deletes it through its owner reference, or delete it by hand).
pub fn is_pruned(kind: ChildKind) -> bool {
    kind != ChildKind::PersistentVolumeClaim
}

/// An existing object as pruning sees it (from a metadata-only list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    /// Its kind.
    pub kind: ChildKind,
    /// Its name.
    pub name: String,
    /// The uid of its controller owner reference, if it has one.
    pub controller_uid: Option<String>,
}

/// The labels that find candidate children of `worker` (the operator's own labels).
pub fn selector(worker: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "learning-worker".to_owned(),
        ),
        (INSTANCE.to_owned(), worker.to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            MANAGER.to_owned(),
        ),
    ])
}

/// Every (kind, name) in the desired children.
pub fn wanted(c: &Children) -> BTreeSet<(ChildKind, String)> {
    c.iter().map(|child| (child.kind(), child.name())).collect()
}

/// Whether the worker wants a model-pull step at all (managed Ollama with `pullModels`).
pub fn pull_wanted(lw: &LearningWorker) -> bool {
    lw.spec.manages_ollama() && lw.spec.ollama.pull_models
}

/// The children to delete, in `ChildKind::ALL` order: owned by this worker (controller owner
/// reference with its uid), not wanted, and of a pruned kind (never the model volume).
/// Model-pull Jobs are deleted only when the worker wants no pull step any more; otherwise a Job that is not in the desired set is left to its
/// `ttlSecondsAfterFinished` (a running pull is never interrupted because `/api/tags` was
/// briefly unknown, and a failed one stays visible until it expires and is retried).
pub fn unwanted(lw: &LearningWorker, desired: &Children, existing: &[Existing]) -> Vec<Existing> {
    let Some(uid) = lw.metadata.uid.as_deref() else {
        return Vec::new();
    };
    let wanted = wanted(desired);
    let keep_jobs = pull_wanted(lw);
    let mut out: Vec<Existing> = existing
        .iter()
        .filter(|e| e.controller_uid.as_deref() == Some(uid))
        .filter(|e| !wanted.contains(&(e.kind, e.name.clone())))
        .filter(|e| !(e.kind == ChildKind::Job && keep_jobs))
        .filter(|e| is_pruned(e.kind))
        .cloned()
        .collect();
    out.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::fixtures::{ctx, example};
    use crate::desired::{children, names};
    use learning_crds::ollama::OllamaMode;

    const UID: &str = "8f0c1a4e-0000-4000-8000-000000000001";

    fn owned(kind: ChildKind, name: &str) -> Existing {
        Existing {
            kind,
            name: name.into(),
            controller_uid: Some(UID.into()),
        }
    }

    /// What exists after a managed-Ollama worker with policies was applied and pulled.
    fn full_set() -> Vec<Existing> {
        vec![
            owned(ChildKind::ServiceAccount, &names::runner("school-a")),
            owned(ChildKind::Deployment, &names::runner("school-a")),
            owned(ChildKind::Service, &names::runner("school-a")),
            owned(ChildKind::PodDisruptionBudget, &names::runner("school-a")),
            owned(ChildKind::NetworkPolicy, &names::runner("school-a")),
            owned(ChildKind::Deployment, &names::ollama("school-a")),
            owned(ChildKind::Service, &names::ollama("school-a")),
            owned(ChildKind::NetworkPolicy, &names::ollama("school-a")),
            owned(
                ChildKind::NetworkPolicy,
                &names::model_pull_policy("school-a"),
            ),
            owned(
                ChildKind::PersistentVolumeClaim,
                &names::models_pvc("school-a"),
            ),
            owned(ChildKind::Job, &names::model_pull("school-a", "0123456789")),
        ]
    }

    fn names_of(v: &[Existing]) -> Vec<(ChildKind, &str)> {
        v.iter().map(|e| (e.kind, e.name.as_str())).collect()
    }

    #[test]
    fn nothing_is_pruned_while_everything_is_wanted() {
        let lw = example("amd-gpu.yaml");
        let c = children(&lw, &ctx());
        // The Job is not desired (no missing models known) but pulling is on: kept.
        assert!(unwanted(&lw, &c, &full_set()).is_empty());
    }

    #[test]
    fn switching_to_external_ollama_prunes_the_ollama_objects_and_the_pull_job_but_not_the_models()
    {
        let mut lw = example("amd-gpu.yaml");
        lw.spec.ollama.mode = OllamaMode::External;
        lw.spec.ollama.url = Some("http://ollama:11434".into());
        let c = children(&lw, &ctx());
        assert_eq!(
            names_of(&unwanted(&lw, &c, &full_set())),
            vec![
                (ChildKind::Job, "school-a-model-pull-0123456789"),
                (ChildKind::Deployment, "school-a-ollama"),
                (ChildKind::Service, "school-a-ollama"),
                (ChildKind::NetworkPolicy, "school-a-model-pull"),
                (ChildKind::NetworkPolicy, "school-a-ollama"),
            ],
            "the model PVC stays"
        );
    }

    #[test]
    fn the_model_volume_survives_a_toggle_to_the_stub_backend() {
        let mut lw = example("amd-gpu.yaml");
        lw.spec.ai.backend = learning_crds::ai::Backend::Stub;
        lw.spec.environment = Some("demo".into());
        let c = children(&lw, &ctx());
        assert!(
            !c.iter()
                .any(|child| child.kind() == ChildKind::PersistentVolumeClaim),
            "not wanted any more"
        );
        let pruned = unwanted(&lw, &c, &full_set());
        assert!(
            !pruned
                .iter()
                .any(|e| e.kind == ChildKind::PersistentVolumeClaim),
            "{pruned:?}"
        );
        assert!(pruned.iter().any(|e| e.name == "school-a-ollama"));
    }

    #[test]
    fn disabling_policies_prunes_every_network_policy() {
        let mut lw = example("amd-gpu.yaml");
        lw.spec.network.policies = false;
        let c = children(&lw, &ctx());
        assert_eq!(
            names_of(&unwanted(&lw, &c, &full_set())),
            vec![
                (ChildKind::NetworkPolicy, "school-a-model-pull"),
                (ChildKind::NetworkPolicy, "school-a-ollama"),
                (ChildKind::NetworkPolicy, "school-a-runner"),
            ]
        );
    }

    #[test]
    fn disabling_pulls_prunes_pull_jobs() {
        let mut lw = example("amd-gpu.yaml");
        lw.spec.ollama.pull_models = false;
        let c = children(&lw, &ctx());
        assert_eq!(
            names_of(&unwanted(&lw, &c, &full_set())),
            vec![(ChildKind::Job, "school-a-model-pull-0123456789")]
        );
    }

    #[test]
    fn objects_of_another_owner_or_without_one_are_never_pruned() {
        let mut lw = example("amd-gpu.yaml");
        lw.spec.network.policies = false;
        let c = children(&lw, &ctx());
        let existing = vec![
            Existing {
                kind: ChildKind::NetworkPolicy,
                name: "school-a-runner".into(),
                controller_uid: Some("another-uid".into()),
            },
            Existing {
                kind: ChildKind::NetworkPolicy,
                name: "school-a-ollama".into(),
                controller_uid: None,
            },
        ];
        assert!(unwanted(&lw, &c, &existing).is_empty());
        lw.metadata.uid = None;
        assert!(
            unwanted(&lw, &c, &full_set()).is_empty(),
            "offline: no uid, no pruning"
        );
    }

    #[test]
    fn selector_uses_the_operators_own_labels() {
        let lw = example("amd-gpu.yaml");
        let labels = crate::desired::labels("school-a", "runner");
        for (k, v) in selector("school-a") {
            assert_eq!(labels.get(&k), Some(&v), "{k}");
        }
        assert_eq!(lw.metadata.name.as_deref(), Some("school-a"));
    }
}
