//! The model PersistentVolumeClaim: what of an existing claim is kept (its class, a larger
//! size) and why a spec change cannot be applied to it. Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use learning_crds::LearningWorker;

use super::super::{child_meta, names, worker};
use super::COMPONENT;

/// The model PersistentVolumeClaim as it exists in the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExistingClaim {
    /// Its requested size (`spec.resources.requests.storage`).
    pub size: Option<String>,
    /// Its storage class (set by the default-class admission when the spec named none).
    pub storage_class_name: Option<String>,
}

impl ExistingClaim {
    /// What matters of an existing claim.
    pub fn of(pvc: &PersistentVolumeClaim) -> Self {
        let spec = pvc.spec.as_ref();
        ExistingClaim {
            size: spec
                .and_then(|s| s.resources.as_ref())
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage"))
                .map(|q| q.0.clone()),
            storage_class_name: spec.and_then(|s| s.storage_class_name.clone()),
        }
    }
}

fn smaller(a: &str, b: &str) -> bool {
    matches!(
        (crate::quantity::parse(a), crate::quantity::parse(b)),
        (Some(x), Some(y)) if x < y
    )
}

/// Why the spec's model storage cannot be applied to the existing claim (a smaller size, or
/// another storage class), if it cannot; the claim is then kept as it is.
pub fn refused_storage_change(
    lw: &LearningWorker,
    existing: Option<&ExistingClaim>,
) -> Option<String> {
    let existing = existing?;
    let storage = &lw.spec.ollama.storage;
    let mut why = Vec::new();
    if let Some(current) = &existing.size {
        if smaller(&storage.size.0, current) {
            why.push(format!(
                "spec.ollama.storage.size {} is smaller than the claim's {current} (a PersistentVolumeClaim cannot shrink)",
                storage.size.0
            ));
        }
    }
    if let Some(class) = &storage.storage_class_name {
        if existing.storage_class_name.as_ref() != Some(class) {
            why.push(format!(
                "spec.ollama.storage.storageClassName {class} differs from the claim's {} (immutable)",
                existing.storage_class_name.as_deref().unwrap_or("(none)")
            ));
        }
    }
    (!why.is_empty()).then(|| {
        format!(
            "{}: the claim {} is kept as it is; delete it to recreate it (the models are pulled again)",
            why.join("; "),
            names::models_pvc(&worker(lw))
        )
    })
}

/// The model volume claim. When it exists already, it keeps its storage class and never
/// shrinks (only a larger size is applied): the API server refuses both changes.
pub fn pvc(lw: &LearningWorker, existing: Option<&ExistingClaim>) -> PersistentVolumeClaim {
    let storage = &lw.spec.ollama.storage;
    let size = match existing.and_then(|e| e.size.as_ref()) {
        Some(current) if smaller(&storage.size.0, current) => Quantity(current.clone()),
        _ => storage.size.clone(),
    };
    let storage_class_name = match existing {
        Some(e) => e.storage_class_name.clone(),
        None => storage.storage_class_name.clone(),
    };
    PersistentVolumeClaim {
        metadata: child_meta(lw, names::models_pvc(&worker(lw)), COMPONENT),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_owned(), size)])),
                limits: None,
            }),
            storage_class_name,
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}
