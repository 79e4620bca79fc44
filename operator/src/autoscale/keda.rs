//! The `keda` engine's objects (`keda.sh/v1alpha1`), as typed Rust: a `TriggerAuthentication`
//! that hands KEDA the runners' DSN from the same Secret (`secretTargetRef`, parameter
//! `connection`), and a `ScaledObject` on the runner Deployment with one `postgresql` trigger
//! counting GUSTAV's visible and leased jobs. Pure; [`super::apply`] applies them.
//!
//! Mapping from `spec.runner.autoscaling`: `minReplicas`/`maxReplicas` → `minReplicaCount`/
//! `maxReplicaCount` (the latter capped like the builtin engine's, see
//! [`super::builtin::capacity_cap`]); `jobsPerReplica` → `targetQueryValue`;
//! `scaleDownStabilizationSeconds` → the HPA's scale-down `stabilizationWindowSeconds` and
//! KEDA's `cooldownPeriod` (before scaling to zero); activation (scale from zero) at the
//! first visible or leased job (`activationTargetQueryValue: 0`). Suspended: the annotation
//! `autoscaling.keda.sh/paused-replicas: "0"`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use learning_crds::runner::AutoscalingSpec;
use learning_crds::LearningWorker;
use serde::{Deserialize, Serialize};

use super::builtin::capacity_cap;
use crate::desired::{child_meta, names, runner, worker};

/// KEDA's API group and version.
pub const API_VERSION: &str = "keda.sh/v1alpha1";
/// The query KEDA runs on GUSTAV's queue (`docs/gustav-contract.md`): the jobs visible now
/// plus the leased ones — the same states the builtin engine counts.
pub const QUEUE_QUERY: &str = "SELECT count(*) FROM public.learning_submission_jobs WHERE (status = 'queued' AND visible_at <= now()) OR status = 'leased'";
/// KEDA's annotation that holds a ScaledObject's target at a fixed count.
pub const PAUSED_REPLICAS: &str = "autoscaling.keda.sh/paused-replicas";
/// Seconds between KEDA's queries.
pub const POLLING_INTERVAL_SECONDS: i32 = 15;

/// Implements the traits kube's typed `Api` needs for a KEDA kind.
macro_rules! keda_kind {
    ($ty:ident, $kind:literal, $plural:literal) => {
        impl k8s_openapi::Resource for $ty {
            const API_VERSION: &'static str = API_VERSION;
            const GROUP: &'static str = "keda.sh";
            const KIND: &'static str = $kind;
            const VERSION: &'static str = "v1alpha1";
            const URL_PATH_SEGMENT: &'static str = $plural;
            type Scope = k8s_openapi::NamespaceResourceScope;
        }

        impl k8s_openapi::Metadata for $ty {
            type Ty = ObjectMeta;
            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

/// `keda.sh/v1alpha1` TriggerAuthentication (the subset the operator writes).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TriggerAuthentication {
    /// `keda.sh/v1alpha1`.
    pub api_version: String,
    /// `TriggerAuthentication`.
    pub kind: String,
    /// Name, namespace, labels, owner reference.
    pub metadata: ObjectMeta,
    /// The secret references.
    pub spec: TriggerAuthenticationSpec,
}

/// The spec of a TriggerAuthentication.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TriggerAuthenticationSpec {
    /// Trigger parameters read from Secrets.
    #[serde(default)]
    pub secret_target_ref: Vec<SecretTargetRef>,
}

/// A trigger parameter from a Secret key.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct SecretTargetRef {
    /// The trigger's parameter (`connection`: the PostgreSQL connection string).
    pub parameter: String,
    /// Secret name.
    pub name: String,
    /// Key in the Secret.
    pub key: String,
}

/// `keda.sh/v1alpha1` ScaledObject (the subset the operator writes).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScaledObject {
    /// `keda.sh/v1alpha1`.
    pub api_version: String,
    /// `ScaledObject`.
    pub kind: String,
    /// Name, namespace, labels, owner reference, the pause annotation.
    pub metadata: ObjectMeta,
    /// What to scale and on which trigger.
    pub spec: ScaledObjectSpec,
}

/// The spec of a ScaledObject.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScaledObjectSpec {
    /// The runner Deployment.
    pub scale_target_ref: ScaleTargetRef,
    /// Seconds between queries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polling_interval: Option<i32>,
    /// Seconds after the last activity before scaling to `minReplicaCount` 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_period: Option<i32>,
    /// Fewest pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replica_count: Option<i32>,
    /// Most pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replica_count: Option<i32>,
    /// The HPA's behaviour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advanced: Option<serde_json::Value>,
    /// The triggers.
    #[serde(default)]
    pub triggers: Vec<Trigger>,
}

/// The scale target.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScaleTargetRef {
    /// `apps/v1`.
    pub api_version: String,
    /// `Deployment`.
    pub kind: String,
    /// The runner Deployment's name.
    pub name: String,
}

/// One trigger.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    /// `postgresql`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Name of the trigger.
    pub name: String,
    /// The scaler's settings (strings).
    pub metadata: BTreeMap<String, String>,
    /// The TriggerAuthentication.
    pub authentication_ref: AuthenticationRef,
}

/// A reference to a TriggerAuthentication.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct AuthenticationRef {
    /// Its name.
    pub name: String,
}

keda_kind!(ScaledObject, "ScaledObject", "scaledobjects");
keda_kind!(
    TriggerAuthentication,
    "TriggerAuthentication",
    "triggerauthentications"
);

/// Name of the ScaledObject (the runner Deployment's; KEDA names its HPA `keda-hpa-<name>`).
pub fn scaled_object_name(lw: &LearningWorker) -> String {
    names::runner(&worker(lw))
}

/// Name of the TriggerAuthentication.
pub fn trigger_authentication_name(lw: &LearningWorker) -> String {
    format!("{}-db", names::runner(&worker(lw)))
}

/// The TriggerAuthentication: the DSN from `spec.database.secretRef` as `connection`.
pub fn trigger_authentication(lw: &LearningWorker) -> TriggerAuthentication {
    let secret = &lw.spec.database.secret_ref;
    TriggerAuthentication {
        api_version: API_VERSION.into(),
        kind: "TriggerAuthentication".into(),
        metadata: child_meta(lw, trigger_authentication_name(lw), runner::COMPONENT),
        spec: TriggerAuthenticationSpec {
            secret_target_ref: vec![SecretTargetRef {
                parameter: "connection".into(),
                name: secret.name.clone(),
                key: secret.key.clone(),
            }],
        },
    }
}

/// `maxReplicaCount`: `maxReplicas` within the capacity cap (never below `minReplicas`, at
/// least 1).
pub fn max_replica_count(lw: &LearningWorker, a: &AutoscalingSpec) -> i32 {
    let cap = capacity_cap(lw).unwrap_or(a.max_replicas);
    a.max_replicas.min(cap).max(a.min_replicas).max(1)
}

/// The ScaledObject on the runner Deployment.
pub fn scaled_object(lw: &LearningWorker, a: &AutoscalingSpec) -> ScaledObject {
    let mut metadata = child_meta(lw, scaled_object_name(lw), runner::COMPONENT);
    if lw.spec.suspend {
        metadata.annotations = Some(BTreeMap::from([(PAUSED_REPLICAS.into(), "0".into())]));
    }
    let window = a.scale_down_stabilization_seconds;
    let behavior = serde_json::json!({"horizontalPodAutoscalerConfig": {"behavior": {
        "scaleDown": {"stabilizationWindowSeconds": window}}}});
    ScaledObject {
        api_version: API_VERSION.into(),
        kind: "ScaledObject".into(),
        metadata,
        spec: ScaledObjectSpec {
            scale_target_ref: ScaleTargetRef {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name: names::runner(&worker(lw)),
            },
            polling_interval: Some(POLLING_INTERVAL_SECONDS),
            cooldown_period: Some(window),
            min_replica_count: Some(a.min_replicas),
            max_replica_count: Some(max_replica_count(lw, a)),
            advanced: Some(behavior),
            triggers: vec![Trigger {
                type_: "postgresql".into(),
                name: "gustav-queue".into(),
                metadata: BTreeMap::from([
                    ("query".into(), QUEUE_QUERY.into()),
                    ("targetQueryValue".into(), a.jobs_per_replica.to_string()),
                    ("activationTargetQueryValue".into(), "0".into()),
                ]),
                authentication_ref: AuthenticationRef {
                    name: trigger_authentication_name(lw),
                },
            }],
        },
    }
}
