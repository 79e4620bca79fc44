//! The Ollama Deployment: one pod (`Recreate`), the pinned image with the GPU resource, the
//! ROCm variables, HOME and models on the volume, probes on the API. Pure.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, HTTPGetAction, PersistentVolumeClaimVolumeSource, PodSpec,
    PodTemplateSpec, Probe, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use learning_crds::LearningWorker;

use super::super::runner::{capacity, restricted_container_security};
use super::super::{child_meta, labels, names, selector_labels, worker, OLLAMA_PORT};
use super::{
    env, pod_security, resources, tmp_volume, tolerations, COMPONENT, DATA_DIR, OLLAMA_TMP_SIZE,
};

/// Ollama's environment: its address, HOME and models on the volume, the keep-alive, the
/// models loaded at once ([`capacity`]), the optional parallelism and ROCm variables, then
/// `spec.ollama.env`.
fn ollama_env(lw: &LearningWorker) -> Vec<EnvVar> {
    let o = &lw.spec.ollama;
    let mut e = vec![
        env("OLLAMA_HOST", format!("0.0.0.0:{OLLAMA_PORT}")),
        env("HOME", DATA_DIR),
        env("OLLAMA_MODELS", format!("{DATA_DIR}/models")),
        env("OLLAMA_KEEP_ALIVE", &o.keep_alive),
    ];
    if let Some(n) = o.num_parallel {
        e.push(env("OLLAMA_NUM_PARALLEL", n.to_string()));
    }
    if let Some(c) = capacity::capacity(lw) {
        e.push(env("OLLAMA_MAX_LOADED_MODELS", c.loaded_models.to_string()));
    }
    if let Some(devices) = &o.gpu.hip_visible_devices {
        e.push(env("HIP_VISIBLE_DEVICES", devices));
    }
    if let Some(gfx) = &o.gpu.hsa_override_gfx_version {
        e.push(env("HSA_OVERRIDE_GFX_VERSION", gfx));
    }
    e.extend(o.env.iter().flatten().cloned());
    e
}

/// An HTTP probe on the `api` port.
fn api_probe(path: &str, period: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("api".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(failure_threshold),
        ..Probe::default()
    }
}

/// The Ollama container: `serve` on the `api` port with the GPU resource, probes on the API,
/// the model volume at [`DATA_DIR`] and a bounded `/tmp`.
fn container(lw: &LearningWorker, tmp_mount: VolumeMount) -> Container {
    let o = &lw.spec.ollama;
    Container {
        name: "ollama".into(),
        image: Some(o.effective_image().to_owned()),
        image_pull_policy: o.image_pull_policy.map(|p| p.as_str().to_owned()),
        args: Some(vec!["serve".into()]),
        env: Some(ollama_env(lw)),
        ports: Some(vec![ContainerPort {
            name: Some("api".into()),
            container_port: OLLAMA_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        startup_probe: Some(api_probe("/", 5, 60)),
        readiness_probe: Some(api_probe("/api/version", 10, 3)),
        liveness_probe: Some(api_probe("/", 20, 3)),
        resources: Some(resources(lw)),
        security_context: Some(restricted_container_security()),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "models".into(),
                mount_path: DATA_DIR.into(),
                ..VolumeMount::default()
            },
            tmp_mount,
        ]),
        ..Container::default()
    }
}

/// The model volume of the pod: the worker's claim.
fn models_volume(worker: &str) -> Volume {
    Volume {
        name: "models".into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: names::models_pvc(worker),
            read_only: None,
        }),
        ..Volume::default()
    }
}

/// The Ollama pod template: no token, non-root with the GPU groups, the model volume and
/// `/tmp`, on the configured GPU nodes.
fn pod_template(lw: &LearningWorker) -> PodTemplateSpec {
    let name = worker(lw);
    let o = &lw.spec.ollama;
    let (tmp, tmp_mount) = tmp_volume(OLLAMA_TMP_SIZE);
    let container = container(lw, tmp_mount);
    let tolerations = tolerations(lw);
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(&name, COMPONENT)),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            security_context: Some(pod_security(lw)),
            containers: vec![container],
            volumes: Some(vec![models_volume(&name), tmp]),
            node_selector: o.node_selector.clone(),
            tolerations: (!tolerations.is_empty()).then_some(tolerations),
            affinity: o.affinity.clone(),
            ..PodSpec::default()
        }),
    }
}

/// The Ollama Deployment: one pod, `Recreate` (the volume is ReadWriteOnce and the GPU single);
/// none while `released` (idle, the GPU freed: `spec.ollama.idleScaleDown`).
pub fn deployment(lw: &LearningWorker, released: bool) -> Deployment {
    let name = worker(lw);
    Deployment {
        metadata: child_meta(lw, names::ollama(&name), COMPONENT),
        spec: Some(DeploymentSpec {
            replicas: Some(if released { 0 } else { 1 }),
            selector: LabelSelector {
                match_labels: Some(selector_labels(&name, COMPONENT)),
                match_expressions: None,
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                rolling_update: None,
            }),
            template: pod_template(lw),
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}
