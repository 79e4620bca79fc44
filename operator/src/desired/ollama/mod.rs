//! The managed Ollama's children: the model PersistentVolumeClaim, the Deployment (pinned image,
//! GPU resource and tolerations, ROCm variables, render/video supplemental groups, non-root with
//! HOME and models on the volume, probes on the API), the Service, and the model-pull Job that
//! pulls only the models that are missing. Pure.
//!
//! By what they build: `claim` (the model volume claim and what of an existing one is kept),
//! `deployment` (the Ollama Deployment, its pod template and container), `pull` (the
//! model-pull Job); the Service and the pod pieces both pods share (GPU resources and
//! tolerations, pod security, `/tmp`) are here.

mod claim;
mod deployment;
mod pull;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EmptyDirVolumeSource, EnvVar, PodSecurityContext, ResourceRequirements, SeccompProfile,
    Service, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use learning_crds::LearningWorker;

use super::{names, worker, OLLAMA_PORT};

pub use claim::{pvc, refused_storage_change, ExistingClaim};
pub use deployment::deployment;
pub use pull::{model_pull_job, pull_hash, PULL_JOB_TTL_SECONDS, PULL_SCRIPT};

/// Component label of Ollama.
pub const COMPONENT: &str = "ollama";
/// Component label of the model-pull Job.
pub const PULL_COMPONENT: &str = "model-pull";
/// Where the model volume is mounted; Ollama's HOME (keys) and models live under it.
pub const DATA_DIR: &str = "/data";

/// A plain environment variable.
fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// Every model Ollama must have: the AI spec's, then the extra ones, without duplicates.
pub fn required_models(lw: &LearningWorker) -> Vec<String> {
    let mut models = lw.spec.ai.models();
    for m in &lw.spec.ollama.extra_models {
        if !models.contains(m) {
            models.push(m.clone());
        }
    }
    models
}

/// The GPU's extended resource added to the user's resources.
pub fn resources(lw: &LearningWorker) -> ResourceRequirements {
    let o = &lw.spec.ollama;
    let mut r = o.resources.clone().unwrap_or_default();
    if let Some(resource) = o.gpu.resource() {
        r.limits
            .get_or_insert_with(BTreeMap::new)
            .insert(resource.to_owned(), Quantity(o.gpu.count.to_string()));
    }
    r
}

/// The vendor's taint toleration (GPU nodes are usually tainted with the resource name) plus
/// the user's tolerations.
pub fn tolerations(lw: &LearningWorker) -> Vec<Toleration> {
    let o = &lw.spec.ollama;
    let mut t: Vec<Toleration> = o
        .gpu
        .resource()
        .map(|resource| Toleration {
            key: Some(resource.to_owned()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Toleration::default()
        })
        .into_iter()
        .collect();
    t.extend(o.tolerations.iter().flatten().cloned());
    t
}

/// Non-root pod security: the configured uid, the volume group-owned by it, the GPU device
/// groups as supplemental groups.
fn pod_security(lw: &LearningWorker) -> PodSecurityContext {
    let o = &lw.spec.ollama;
    let groups: Vec<i64> = [o.gpu.render_group_id, o.gpu.video_group_id]
        .into_iter()
        .flatten()
        .collect();
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(o.run_as_user),
        run_as_group: Some(o.run_as_user),
        fs_group: Some(o.run_as_user),
        fs_group_change_policy: Some("OnRootMismatch".into()),
        supplemental_groups: (!groups.is_empty()).then_some(groups),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..PodSecurityContext::default()
    }
}

/// Size of Ollama's `/tmp` (scratch space; models and partial downloads live on the volume).
pub const OLLAMA_TMP_SIZE: &str = "1Gi";
/// Size of the pull pod's `/tmp` (its HOME: the CLI keeps only a key there).
pub const PULL_TMP_SIZE: &str = "64Mi";

/// A bounded `emptyDir` for `/tmp` and its mount (the root filesystem is read-only).
fn tmp_volume(size: &str) -> (Volume, VolumeMount) {
    (
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity(size.into())),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        },
        VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..VolumeMount::default()
        },
    )
}

/// The Ollama Service (a dot-less in-cluster name, as the runner requires).
pub fn service(lw: &LearningWorker) -> Service {
    super::component_service(
        lw,
        names::ollama(&worker(lw)),
        COMPONENT,
        "api",
        OLLAMA_PORT,
        false,
    )
}

#[cfg(test)]
mod tests;
