//! The `keda` engine's I/O: server-side apply of the TriggerAuthentication and the
//! ScaledObject (the operator's field manager, `force`), and their removal when the worker
//! leaves the `keda` engine (only when `status.autoscaling.scaledObject` says the operator
//! made them, so workers that never used KEDA cost no request). KEDA missing (404: its CRDs
//! are not installed) or not granted (403: the chart's `keda.enabled` is off) is a state for
//! the `AutoscalerReady` condition, not an error. Also the builtin engine's `RunnersScaled`
//! Event.

use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::Resource;
use kube::{Api, Client, ResourceExt};
use learning_crds::runner::AutoscalingEngine;
use learning_crds::LearningWorker;

use super::keda::{self, ScaledObject, TriggerAuthentication};
use super::EngineState;
use crate::caches::Caches;
use crate::desired::kinds::ChildObject;
use crate::desired::names;
use crate::desired::MANAGER;
use crate::error::ReconcileError;
use crate::written::Written;
use k8s_openapi::api::apps::v1::Deployment;
use std::time::Instant;

/// The field manager that keeps the runner Deployment's `replicas` when the operator stops
/// applying it (see [`hand_over_replicas`]).
pub const HANDOVER_MANAGER: &str = "learning-operator-handover";

/// Hands the runner Deployment's `replicas` over to KEDA or the user's autoscaler when the
/// worker has just moved to an engine that leaves `replicas` to them (`keda`, `external`)
/// while its last status names another engine, or none. A failure fails the reconcile before
/// anything else is applied or the status records the new engine, so it is retried. Not
/// while suspended, and not a count of 0 (an HPA does not act on a Deployment at zero:
/// Kubernetes' default of 1 is better there).
///
/// Server-side apply deletes a field its only manager stops applying, and the Deployment's
/// default (1) would take its place: a worker running 5 runners would drop to 1 until the
/// new autoscaler acts. So the current count is first applied by a second field manager
/// ([`HANDOVER_MANAGER`]); the field then stays when the operator's own apply leaves it out,
/// and KEDA or the HPA take it over with their next write.
pub async fn hand_over_replicas(
    client: &Client,
    caches: &Caches,
    lw: &LearningWorker,
    ns: &str,
) -> Result<(), ReconcileError> {
    let leaves_replicas = matches!(
        super::engine(lw),
        Some(AutoscalingEngine::Keda | AutoscalingEngine::External)
    );
    let before = lw
        .status
        .as_ref()
        .and_then(|s| s.autoscaling.as_ref())
        .map(|a| a.engine.as_str());
    let left_before = matches!(before, Some("keda" | "external"));
    if !leaves_replicas || left_before || lw.spec.suspend {
        return Ok(());
    }
    let name = names::runner(&lw.name_any());
    let Some(cached) = caches
        .get::<Deployment>(ns, &name)
        .and_then(|d| d.spec.as_ref().and_then(|s| s.replicas))
    else {
        return Ok(());
    };
    // The cache may not show the builtin engine's last step yet: never hand over fewer.
    let decided = lw
        .status
        .as_ref()
        .and_then(|s| s.autoscaling.as_ref())
        .and_then(|a| a.desired_replicas)
        .unwrap_or(0);
    let replicas = cached.max(decided);
    if replicas == 0 {
        return Ok(());
    }
    let body = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": replicas},
    });
    Api::<Deployment>::namespaced(client.clone(), ns)
        .patch(
            &name,
            &PatchParams::apply(HANDOVER_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(|source| ReconcileError::ApplyChild {
            kind: "Deployment",
            name: name.clone(),
            source,
        })?;
    tracing::info!(event = "learning.operator.replicas_handed_over", deployment = %name, replicas);
    Ok(())
}

/// What the KEDA step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KedaOutcome {
    /// `KedaApplied` or `KedaUnavailable` with engine `keda`; `None` otherwise.
    pub state: Option<EngineState>,
    /// The ScaledObject the operator now owns, for `status.autoscaling.scaledObject`.
    pub scaled_object: Option<String>,
}

impl KedaOutcome {
    /// The outcome when the KEDA step failed with an error: the last known ScaledObject kept.
    pub fn failed(lw: &LearningWorker) -> Self {
        KedaOutcome {
            state: super::engine(lw)
                .filter(|e| *e == AutoscalingEngine::Keda)
                .map(|_| EngineState::KedaUnavailable("applying the KEDA objects failed".into())),
            scaled_object: lw
                .status
                .as_ref()
                .and_then(|s| s.autoscaling.as_ref())
                .and_then(|a| a.scaled_object.clone()),
        }
    }
}

/// Why KEDA cannot be used, from the API's answer; `None` for other errors.
fn unavailable(kind: &str, e: &kube::Error) -> Option<String> {
    match e {
        kube::Error::Api(s) if s.code == 404 => Some(format!(
            "KEDA is not installed: the API server does not serve {} {kind} (404); install KEDA \
             (its CRDs), or use engine builtin or external",
            keda::API_VERSION
        )),
        kube::Error::Api(s) if s.code == 403 => Some(format!(
            "the operator may not write {} {kind} (403): install the chart with keda.enabled=true \
             (its RBAC for scaledobjects and triggerauthentications)",
            keda::API_VERSION
        )),
        _ => None,
    }
}

/// Server-side apply of one KEDA object; `Ok(Err(why))` when KEDA is unavailable. Skipped
/// when the same object was applied less than `written::UNWATCHED_RESYNC` ago.
async fn apply_one<K: ChildObject>(
    client: &Client,
    written: &Written,
    ns: &str,
    obj: &K,
) -> Result<Result<(), String>, ReconcileError> {
    if written.unwatched_unchanged(obj, Instant::now()) {
        return Ok(Ok(()));
    }
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let name = obj.name_any();
    let kind = <K as k8s_openapi::Resource>::KIND;
    match api
        .patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await
    {
        Ok(returned) => {
            written.child_applied(obj, &returned, Instant::now());
            Ok(Ok(()))
        }
        Err(e) => match unavailable(kind, &e) {
            Some(why) => Ok(Err(why)),
            None => Err(ReconcileError::ApplyChild {
                kind,
                name,
                source: e,
            }),
        },
    }
}

/// Deletes one KEDA object; gone (404) or never allowed (403) counts as done.
async fn delete_one<K: ChildObject>(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<(), ReconcileError> {
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 403 => Ok(()),
        Err(source) => Err(ReconcileError::DeleteChild {
            kind: <K as k8s_openapi::Resource>::KIND,
            name: name.to_owned(),
            source,
        }),
    }
}

/// Applies the KEDA objects (engine `keda`), or deletes the ones the operator made before
/// (any other engine, or no autoscaling).
pub async fn reconcile(
    client: &Client,
    written: &Written,
    lw: &LearningWorker,
    ns: &str,
) -> Result<KedaOutcome, ReconcileError> {
    let made = lw
        .status
        .as_ref()
        .and_then(|s| s.autoscaling.as_ref())
        .and_then(|a| a.scaled_object.clone());
    let Some(a) = super::autoscaling(lw).filter(|a| a.engine == AutoscalingEngine::Keda) else {
        if let Some(name) = made {
            let auth = keda::trigger_authentication_name(lw);
            delete_one::<ScaledObject>(client, ns, &name).await?;
            delete_one::<TriggerAuthentication>(client, ns, &auth).await?;
            let uid = lw.metadata.uid.as_deref().unwrap_or_default();
            written.child_gone(uid, <ScaledObject as k8s_openapi::Resource>::KIND, &name);
            written.child_gone(
                uid,
                <TriggerAuthentication as k8s_openapi::Resource>::KIND,
                &auth,
            );
            tracing::info!(event = "learning.operator.child_pruned", kind = "ScaledObject", name = %name);
        }
        return Ok(KedaOutcome {
            state: None,
            scaled_object: None,
        });
    };
    let auth = apply_one(client, written, ns, &keda::trigger_authentication(lw)).await?;
    let applied = match auth {
        Ok(()) => apply_one(client, written, ns, &keda::scaled_object(lw, a)).await?,
        Err(why) => Err(why),
    };
    Ok(match applied {
        Ok(()) => KedaOutcome {
            state: Some(EngineState::KedaApplied),
            scaled_object: Some(keda::scaled_object_name(lw)),
        },
        Err(why) => KedaOutcome {
            state: Some(EngineState::KedaUnavailable(why)),
            scaled_object: made,
        },
    })
}

/// Publishes a Normal `RunnersScaled` Event with `note` (see `super::rescale_note`); a failed
/// Event is logged, never fatal.
pub async fn publish_rescale(recorder: &Recorder, lw: &LearningWorker, note: String) {
    let mut reference = lw.object_ref(&());
    reference.resource_version = None;
    let event = Event {
        type_: EventType::Normal,
        reason: "RunnersScaled".into(),
        note: Some(note),
        action: "Scale".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &reference).await {
        tracing::warn!(event = "learning.operator.event_failed", error = %e, reason = "RunnersScaled");
    }
}
