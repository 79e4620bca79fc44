//! The only writer: server-side apply of every child (one field manager, `force`), the status
//! (server-side apply on the status subresource), and an Event per condition transition.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource, ResourceExt};
use learning_crds::{LearningWorker, LearningWorkerStatus};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::desired::{Children, MANAGER};
use crate::error::ReconcileError;
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

/// Applies every child, dependencies first (ServiceAccount, policies, volume, Ollama, Job, runners).
pub async fn apply_children(client: &Client, ns: &str, c: &Children) -> Result<(), ReconcileError> {
    if let Some(o) = &c.runner_service_account {
        apply_one(client, ns, o).await?;
    }
    for p in &c.network_policies {
        apply_one(client, ns, p).await?;
    }
    if let Some(o) = &c.ollama_pvc {
        apply_one(client, ns, o).await?;
    }
    if let Some(o) = &c.ollama_service {
        apply_one(client, ns, o).await?;
    }
    if let Some(o) = &c.ollama_deployment {
        apply_one(client, ns, o).await?;
    }
    if let Some(o) = &c.model_pull_job {
        apply_one(client, ns, o).await?;
    }
    if let Some(o) = &c.runner_service {
        apply_one(client, ns, o).await?;
    }
    if let Some(o) = &c.runner_pdb {
        apply_one(client, ns, o).await?;
    }
    if let Some(o) = &c.runner_deployment {
        apply_one(client, ns, o).await?;
    }
    Ok(())
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
    let reference = lw.object_ref(&());
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
