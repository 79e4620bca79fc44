//! The only writer: server-side apply of every child (one field manager, `force`; skipped when
//! it would change nothing, see `crate::written`), pruning of
//! children that are no longer wanted (decided by `prune`), the status (server-side apply on
//! the status subresource), and an Event per condition transition.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource, ResourceExt};
use learning_crds::{LearningWorker, LearningWorkerStatus};

use crate::caches::Caches;
use crate::desired::kinds::{ChildObject, ChildVisitor, KindVisitor};
use crate::desired::{ChildKind, Children, MANAGER};
use crate::error::ReconcileError;
use crate::prune::{self, Existing};
use crate::status::Transition;
use crate::written::Written;

fn params() -> PatchParams {
    PatchParams::apply(MANAGER).force()
}

/// Where applies go and what they may skip: the API, the watch caches and this term's
/// memory of earlier applies.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    /// The API client.
    pub client: &'a Client,
    /// The watch caches (the live children).
    pub caches: &'a Caches,
    /// What this operator applied before.
    pub written: &'a Written,
}

/// Applies one child, unless the live object is still what the last apply of the same
/// object left (`Written::child_unchanged`): then nothing is sent.
async fn apply_one<K: ChildObject>(
    target: Target<'_>,
    ns: &str,
    obj: &K,
) -> Result<(), ReconcileError> {
    let name = obj.name_any();
    let live = target.caches.get::<K>(ns, &name);
    if target.written.child_unchanged(obj, live.as_deref()) {
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(target.client.clone(), ns);
    let returned = api
        .patch(&name, &params(), &Patch::Apply(obj))
        .await
        .map_err(|source| ReconcileError::ApplyChild {
            kind: <K as k8s_openapi::Resource>::KIND,
            name,
            source,
        })?;
    target
        .written
        .child_applied(obj, &returned, std::time::Instant::now());
    Ok(())
}

/// Server-side apply of one child, as its own type.
struct Apply<'a> {
    target: Target<'a>,
    ns: &'a str,
}

impl<'a> ChildVisitor<'a> for Apply<'a> {
    type Output = BoxFuture<'a, Result<(), ReconcileError>>;
    fn visit<K: ChildObject>(self, object: &'a K) -> Self::Output {
        Box::pin(apply_one(self.target, self.ns, object))
    }
}

/// Applies every child in the order of `Children` (dependencies first: ServiceAccount,
/// policies, volume, Ollama, Job, runners). One refused child (e.g. an immutable field) does
/// not stop the others: every child is tried and the failures are returned together.
pub async fn apply_children(
    target: Target<'_>,
    ns: &str,
    c: &Children,
) -> Result<(), ReconcileError> {
    let mut failures = Vec::new();
    for child in c {
        if let Err(e) = child.visit(Apply { target, ns }).await {
            failures.push(e);
        }
    }
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.remove(0)),
        _ => Err(ReconcileError::ApplyChildren(failures)),
    }
}

/// The cached candidate children of one kind (by the operator's labels).
fn cached_kind<K: ChildObject>(
    caches: &Caches,
    ns: &str,
    kind: ChildKind,
    selector: &BTreeMap<String, String>,
) -> Vec<Existing> {
    caches
        .matching::<K>(ns, selector)
        .into_iter()
        .map(|o| Existing {
            kind,
            name: o.meta().name.clone().unwrap_or_default(),
            controller_uid: o
                .meta()
                .owner_references
                .iter()
                .flatten()
                .find(|r| r.controller == Some(true))
                .map(|r| r.uid.clone()),
        })
        .collect()
}

/// Deletes one child; dependents (a Job's pods) go with it in the background. Already gone
/// counts as done.
async fn delete_kind<K: ChildObject>(
    client: &Client,
    ns: &str,
    e: &Existing,
) -> Result<(), ReconcileError> {
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

/// The cached candidate children of a kind, as its own type.
struct Cached<'a> {
    caches: &'a Caches,
    ns: &'a str,
    selector: &'a BTreeMap<String, String>,
}

impl KindVisitor for Cached<'_> {
    type Output = Vec<Existing>;
    fn visit<K: ChildObject>(self, kind: ChildKind) -> Self::Output {
        cached_kind::<K>(self.caches, self.ns, kind, self.selector)
    }
}

/// Deletes one child, as the type of its kind.
struct Delete<'a> {
    client: &'a Client,
    ns: &'a str,
    existing: &'a Existing,
}

impl<'a> KindVisitor for Delete<'a> {
    type Output = BoxFuture<'a, Result<(), ReconcileError>>;
    fn visit<K: ChildObject>(self, _kind: ChildKind) -> Self::Output {
        Box::pin(delete_kind::<K>(self.client, self.ns, self.existing))
    }
}

/// Deletes the children this worker owns but no longer wants (see `prune::unwanted`); returns
/// what was deleted. Reads which children exist from the watch caches (by the operator's
/// labels), then deletes workloads first and NetworkPolicies last.
pub async fn prune_children(
    client: &Client,
    caches: &Caches,
    written: &Written,
    lw: &LearningWorker,
    ns: &str,
    desired: &Children,
) -> Result<Vec<Existing>, ReconcileError> {
    let selector = &prune::selector(&lw.name_any());
    let mut existing = Vec::new();
    for kind in ChildKind::ALL
        .iter()
        .filter(|kind| prune::is_pruned(**kind))
    {
        existing.extend(kind.visit(Cached {
            caches,
            ns,
            selector,
        }));
    }
    // `unwanted` holds pruned kinds only: the model volume is never deleted here.
    let unwanted = prune::unwanted(lw, desired, &existing);
    for e in &unwanted {
        e.kind
            .visit(Delete {
                client,
                ns,
                existing: e,
            })
            .await?;
        written.child_gone(
            lw.metadata.uid.as_deref().unwrap_or_default(),
            e.kind.kind(),
            &e.name,
        );
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
