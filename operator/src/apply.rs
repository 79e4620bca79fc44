//! The only writer: server-side apply of every child (one field manager, `force`), pruning of
//! children that are no longer wanted (decided by `prune`), the status (server-side apply on
//! the status subresource), and an Event per condition transition.

use std::fmt::Debug;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource, ResourceExt};
use learning_crds::{LearningWorker, LearningWorkerStatus};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::desired::{Children, MANAGER};
use crate::error::ReconcileError;
use crate::prune::{self, ChildKind, Existing};
use crate::status::Transition;

fn params() -> PatchParams {
    PatchParams::apply(MANAGER).force()
}

async fn apply_one<K>(client: &Client, ns: &str, obj: &K) -> Result<(), ReconcileError>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + k8s_openapi::Resource
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let name = obj.name_any();
    api.patch(&name, &params(), &Patch::Apply(obj))
        .await
        .map_err(|source| ReconcileError::ApplyChild {
            kind: <K as k8s_openapi::Resource>::KIND,
            name,
            source,
        })?;
    Ok(())
}

/// Applies every child, dependencies first (ServiceAccount, policies, volume, Ollama, Job,
/// runners). One refused child (e.g. an immutable field) does not stop the others: every
/// child is tried and the failures are returned together.
pub async fn apply_children(client: &Client, ns: &str, c: &Children) -> Result<(), ReconcileError> {
    let mut failures = Vec::new();
    let mut record = |r: Result<(), ReconcileError>| {
        if let Err(e) = r {
            failures.push(e);
        }
    };
    if let Some(o) = &c.runner_service_account {
        record(apply_one(client, ns, o).await);
    }
    for p in &c.network_policies {
        record(apply_one(client, ns, p).await);
    }
    if let Some(o) = &c.ollama_pvc {
        record(apply_one(client, ns, o).await);
    }
    if let Some(o) = &c.ollama_service {
        record(apply_one(client, ns, o).await);
    }
    if let Some(o) = &c.ollama_deployment {
        record(apply_one(client, ns, o).await);
    }
    if let Some(o) = &c.model_pull_job {
        record(apply_one(client, ns, o).await);
    }
    if let Some(o) = &c.runner_service {
        record(apply_one(client, ns, o).await);
    }
    if let Some(o) = &c.runner_pdb {
        record(apply_one(client, ns, o).await);
    }
    if let Some(o) = &c.runner_deployment {
        record(apply_one(client, ns, o).await);
    }
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.remove(0)),
        _ => Err(ReconcileError::ApplyChildren(failures)),
    }
}

/// Lists the candidate children of one kind (metadata only, by the operator's labels).
async fn list_kind<K>(
    client: &Client,
    ns: &str,
    kind: ChildKind,
    selector: &str,
) -> Result<Vec<Existing>, ReconcileError>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let list = api
        .list_metadata(&ListParams::default().labels(selector))
        .await
        .map_err(|source| ReconcileError::ListChildren {
            kind: kind.kind(),
            source,
        })?;
    Ok(list
        .items
        .into_iter()
        .map(|o| Existing {
            kind,
            name: o.metadata.name.clone().unwrap_or_default(),
            controller_uid: o
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|r| r.controller == Some(true))
                .map(|r| r.uid.clone()),
        })
        .collect())
}

/// Deletes one child; dependents (a Job's pods) go with it in the background. Already gone
/// counts as done.
async fn delete_kind<K>(client: &Client, ns: &str, e: &Existing) -> Result<(), ReconcileError>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    match api.delete(&e.name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(ReconcileError::DeleteChild {
            kind: e.kind.kind(),
            name: e.name.clone(),
            source,
        }),
    }
}

async fn list_any(
    client: &Client,
    ns: &str,
    kind: ChildKind,
    selector: &str,
) -> Result<Vec<Existing>, ReconcileError> {
    match kind {
        ChildKind::Job => list_kind::<Job>(client, ns, kind, selector).await,
        ChildKind::Deployment => list_kind::<Deployment>(client, ns, kind, selector).await,
        ChildKind::Service => list_kind::<Service>(client, ns, kind, selector).await,
        ChildKind::PodDisruptionBudget => {
            list_kind::<PodDisruptionBudget>(client, ns, kind, selector).await
        }
        // Never pruned (not in `ChildKind::PRUNED`).
        ChildKind::PersistentVolumeClaim => Ok(Vec::new()),
        ChildKind::ServiceAccount => list_kind::<ServiceAccount>(client, ns, kind, selector).await,
        ChildKind::NetworkPolicy => list_kind::<NetworkPolicy>(client, ns, kind, selector).await,
    }
}

async fn delete_any(client: &Client, ns: &str, e: &Existing) -> Result<(), ReconcileError> {
    match e.kind {
        ChildKind::Job => delete_kind::<Job>(client, ns, e).await,
        ChildKind::Deployment => delete_kind::<Deployment>(client, ns, e).await,
        ChildKind::Service => delete_kind::<Service>(client, ns, e).await,
        ChildKind::PodDisruptionBudget => delete_kind::<PodDisruptionBudget>(client, ns, e).await,
        // Never pruned: the model volume goes with the LearningWorker, or by hand.
        ChildKind::PersistentVolumeClaim => Ok(()),
        ChildKind::ServiceAccount => delete_kind::<ServiceAccount>(client, ns, e).await,
        ChildKind::NetworkPolicy => delete_kind::<NetworkPolicy>(client, ns, e).await,
    }
}

/// Deletes the children this worker owns but no longer wants (see `prune::unwanted`); returns
/// what was deleted. Lists every child kind by the operator's labels, then deletes workloads
/// first and NetworkPolicies last.
pub async fn prune_children(
    client: &Client,
    lw: &LearningWorker,
    ns: &str,
    desired: &Children,
) -> Result<Vec<Existing>, ReconcileError> {
    let selector = prune::selector(&lw.name_any());
    let mut existing = Vec::new();
    for kind in ChildKind::PRUNED {
        existing.extend(list_any(client, ns, kind, &selector).await?);
    }
    let unwanted = prune::unwanted(lw, desired, &existing);
    for e in &unwanted {
        delete_any(client, ns, e).await?;
        tracing::info!(event = "learning.operator.child_pruned", kind = e.kind.kind(), name = %e.name);
    }
    Ok(unwanted)
}

/// Writes the status with server-side apply on the status subresource.
pub async fn patch_status(
    client: &Client,
    lw: &LearningWorker,
    status: &LearningWorkerStatus,
) -> Result<(), ReconcileError> {
    let api: Api<LearningWorker> =
        Api::namespaced(client.clone(), &lw.namespace().unwrap_or_default());
    let body = serde_json::json!({
        "apiVersion": "learning.gustav.dev/v1alpha1",
        "kind": "LearningWorker",
        "status": status,
    });
    api.patch_status(&lw.name_any(), &params(), &Patch::Apply(&body))
        .await
        .map_err(ReconcileError::PatchStatus)?;
    Ok(())
}

/// Publishes one Event per transition. A failed Event is logged, never fatal.
pub async fn publish_transitions(
    recorder: &Recorder,
    lw: &LearningWorker,
    transitions: &[Transition],
) {
    // Without the resourceVersion (which changes with every status write), a transition that
    // repeats within kube's Event cache window updates that Event's series (a patch) instead
    // of creating one more Event: a flapping condition does not flood the namespace.
    let mut reference = lw.object_ref(&());
    reference.resource_version = None;
    for tr in transitions {
        let c = &tr.condition;
        let event = Event {
            type_: if tr.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: c.reason.clone(),
            note: Some(
                format!("{} is {}: {}", c.type_, c.status, c.message)
                    .chars()
                    .take(1000)
                    .collect(),
            ),
            action: format!("Set{}", c.type_),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::warn!(event = "learning.operator.event_failed", error = %e, reason = %c.reason);
        }
    }
}
