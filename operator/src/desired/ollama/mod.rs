//! The managed Ollama's children: the model PersistentVolumeClaim, the Deployment (pinned image,
//! GPU resource and tolerations, ROCm variables, render/video supplemental groups, non-root with
//! HOME and models on the volume, probes on the API), the Service, and the model-pull Job that
//! pulls only the models that are missing. Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, HTTPGetAction, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, Service, Toleration, Volume,
    VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use learning_crds::LearningWorker;
use sha2::{Digest, Sha256};

use super::runner::restricted_container_security;
use super::{child_meta, labels, names, selector_labels, worker, OLLAMA_PORT};

/// Component label of Ollama.
pub const COMPONENT: &str = "ollama";
/// Component label of the model-pull Job.
pub const PULL_COMPONENT: &str = "model-pull";
/// Where the model volume is mounted; Ollama's HOME (keys) and models live under it.
pub const DATA_DIR: &str = "/data";
/// Seconds a finished pull Job is kept (a failed pull is retried after it is gone).
pub const PULL_JOB_TTL_SECONDS: i32 = 3600;

/// The shell loop of the pull Job: models come as arguments (never interpolated into the
/// script); `ollama show` skips those already present.
pub const PULL_SCRIPT: &str = r#"set -eu
for m in "$@"; do
  if ollama show "$m" >/dev/null 2>&1; then
    echo "present: $m"
  else
    echo "pulling: $m"
    ollama pull "$m"
  fi
done"#;

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
    if let Some(devices) = &o.gpu.hip_visible_devices {
        e.push(env("HIP_VISIBLE_DEVICES", devices));
    }
    if let Some(gfx) = &o.gpu.hsa_override_gfx_version {
        e.push(env("HSA_OVERRIDE_GFX_VERSION", gfx));
    }
    e
}

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

/// The Ollama Deployment: one pod, `Recreate` (the volume is ReadWriteOnce and the GPU single).
pub fn deployment(lw: &LearningWorker) -> Deployment {
    let name = worker(lw);
    let o = &lw.spec.ollama;
    let (tmp, tmp_mount) = tmp_volume(OLLAMA_TMP_SIZE);
    let container = Container {
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
    };
    let tolerations = tolerations(lw);
    Deployment {
        metadata: child_meta(lw, names::ollama(&name), COMPONENT),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(selector_labels(&name, COMPONENT)),
                match_expressions: None,
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                rolling_update: None,
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&name, COMPONENT)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(pod_security(lw)),
                    containers: vec![container],
                    volumes: Some(vec![
                        Volume {
                            name: "models".into(),
                            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                                claim_name: names::models_pvc(&name),
                                read_only: None,
                            }),
                            ..Volume::default()
                        },
                        tmp,
                    ]),
                    node_selector: o.node_selector.clone(),
                    tolerations: (!tolerations.is_empty()).then_some(tolerations),
                    affinity: o.affinity.clone(),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
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

/// A short, stable hash of the pull Job's whole pod template (the Job's name suffix): a Job's
/// template is immutable, so any change — models, image, scheduling, security — gives a new Job
/// instead of an apply the API server refuses.
pub fn pull_hash(template: &PodTemplateSpec) -> String {
    let mut h = Sha256::new();
    // Serialising a typed object cannot fail (no maps with non-string keys).
    h.update(serde_json::to_vec(template).unwrap_or_default());
    h.finalize()
        .iter()
        .take(5)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The model-pull Job for `models` (the missing ones): the Ollama CLI against the managed
/// Service; no GPU, no token, restricted, on the Ollama nodes (the image is cached there).
pub fn model_pull_job(lw: &LearningWorker, models: &[String]) -> Job {
    let name = worker(lw);
    let o = &lw.spec.ollama;
    let image = o.effective_image();
    let (tmp, tmp_mount) = tmp_volume(PULL_TMP_SIZE);
    let mut args = vec!["model-pull".to_owned()];
    args.extend(models.iter().cloned());
    let tolerations = tolerations(lw);
    let container = Container {
        name: "pull".into(),
        image: Some(image.to_owned()),
        image_pull_policy: o.image_pull_policy.map(|p| p.as_str().to_owned()),
        command: Some(vec!["/bin/sh".into(), "-c".into(), PULL_SCRIPT.into()]),
        args: Some(args),
        env: Some(vec![
            env(
                "OLLAMA_HOST",
                format!("http://{}:{OLLAMA_PORT}", names::ollama(&name)),
            ),
            env("HOME", "/tmp"),
        ]),
        // The CLI only asks the server to pull and prints its progress.
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity("10m".into())),
                ("memory".to_owned(), Quantity("32Mi".into())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_owned(),
                Quantity("256Mi".into()),
            )])),
            claims: None,
        }),
        security_context: Some(restricted_container_security()),
        volume_mounts: Some(vec![tmp_mount]),
        ..Container::default()
    };
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(&name, PULL_COMPONENT)),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            security_context: Some(PodSecurityContext {
                supplemental_groups: None,
                fs_group: None,
                fs_group_change_policy: None,
                ..pod_security(lw)
            }),
            containers: vec![container],
            volumes: Some(vec![tmp]),
            node_selector: o.node_selector.clone(),
            tolerations: (!tolerations.is_empty()).then_some(tolerations),
            ..PodSpec::default()
        }),
    };
    Job {
        metadata: child_meta(
            lw,
            names::model_pull(&name, &pull_hash(&template)),
            PULL_COMPONENT,
        ),
        spec: Some(JobSpec {
            backoff_limit: Some(3),
            active_deadline_seconds: Some(6 * 3600),
            ttl_seconds_after_finished: Some(PULL_JOB_TTL_SECONDS),
            template,
            ..JobSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::example;
    use super::*;

    fn pod(d: &Deployment) -> &PodSpec {
        d.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
    }

    fn env_of(c: &Container) -> BTreeMap<String, String> {
        c.env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect()
    }

    #[test]
    fn amd_pod_gets_rocm_image_gpu_toleration_groups_and_variables() {
        let d = deployment(&example("amd-gpu.yaml"));
        let p = pod(&d);
        let c = &p.containers[0];
        assert_eq!(
            c.image.as_deref(),
            Some("docker.io/ollama/ollama:0.12.3-rocm")
        );
        assert_eq!(
            c.resources.as_ref().unwrap().limits.as_ref().unwrap()["amd.com/gpu"],
            Quantity("1".into())
        );
        assert_eq!(
            p.tolerations.as_ref().unwrap()[0].key.as_deref(),
            Some("amd.com/gpu")
        );
        let sc = p.security_context.as_ref().unwrap();
        assert_eq!(sc.supplemental_groups, Some(vec![109, 44]));
        assert_eq!(
            (sc.run_as_user, sc.run_as_non_root, sc.fs_group),
            (Some(1000), Some(true), Some(1000))
        );
        let env = env_of(c);
        assert_eq!(env["HSA_OVERRIDE_GFX_VERSION"], "11.0.0");
        assert_eq!(env["HIP_VISIBLE_DEVICES"], "0");
        assert_eq!(env["OLLAMA_KEEP_ALIVE"], "24h");
        assert_eq!(env["OLLAMA_NUM_PARALLEL"], "2");
        assert_eq!(env["OLLAMA_MODELS"], "/data/models");
        assert_eq!(env["HOME"], "/data");
        assert_eq!(p.node_selector.as_ref().unwrap()["gustav.dev/gpu"], "amd");
        assert_eq!(
            d.spec
                .as_ref()
                .unwrap()
                .strategy
                .as_ref()
                .unwrap()
                .type_
                .as_deref(),
            Some("Recreate")
        );
        let tmp = p
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "tmp")
            .unwrap();
        assert_eq!(
            tmp.empty_dir.as_ref().unwrap().size_limit,
            Some(Quantity("1Gi".into()))
        );
        let startup = c.startup_probe.as_ref().unwrap();
        assert_eq!(startup.failure_threshold, Some(60));
        assert_eq!(
            c.readiness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .as_deref(),
            Some("/api/version")
        );
    }

    #[test]
    fn nvidia_and_cpu_pods_differ_only_where_they_should() {
        let nv = deployment(&example("nvidia-gpu.yaml"));
        let c = &pod(&nv).containers[0];
        assert_eq!(c.image.as_deref(), Some("docker.io/ollama/ollama:0.12.3"));
        assert!(c
            .resources
            .as_ref()
            .unwrap()
            .limits
            .as_ref()
            .unwrap()
            .contains_key("nvidia.com/gpu"));
        let keys: Vec<_> = pod(&nv)
            .tolerations
            .iter()
            .flatten()
            .filter_map(|t| t.key.clone())
            .collect();
        assert_eq!(keys, ["nvidia.com/gpu", "gpu-node"]);
        assert!(!env_of(c).contains_key("HSA_OVERRIDE_GFX_VERSION"));

        let cpu = deployment(&example("cpu-only.yaml"));
        let c = &pod(&cpu).containers[0];
        let limits = c.resources.as_ref().unwrap().limits.as_ref().unwrap();
        assert!(!limits.keys().any(|k| k.contains("gpu")), "{limits:?}");
        assert!(pod(&cpu).tolerations.is_none());
    }

    #[test]
    fn pvc_holds_the_models() {
        let p = pvc(&example("nvidia-gpu.yaml"), None).spec.unwrap();
        assert_eq!(
            p.resources.unwrap().requests.unwrap()["storage"],
            Quantity("40Gi".into())
        );
        assert_eq!(p.storage_class_name.as_deref(), Some("local-path"));
        assert_eq!(p.access_modes.unwrap(), ["ReadWriteOnce"]);
    }

    #[test]
    fn an_existing_claim_only_grows_and_keeps_its_class() {
        let lw = example("nvidia-gpu.yaml"); // 40Gi, local-path
        let request = |p: &PersistentVolumeClaim| {
            p.spec
                .as_ref()
                .unwrap()
                .resources
                .as_ref()
                .unwrap()
                .requests
                .as_ref()
                .unwrap()["storage"]
                .clone()
        };
        let class = |p: &PersistentVolumeClaim| p.spec.as_ref().unwrap().storage_class_name.clone();
        let claim = |size: &str, class: Option<&str>| ExistingClaim {
            size: Some(size.into()),
            storage_class_name: class.map(Into::into),
        };
        // Larger claim (e.g. grown by hand, or the spec shrunk): kept, and reported.
        let big = claim("100Gi", Some("local-path"));
        assert_eq!(request(&pvc(&lw, Some(&big))), Quantity("100Gi".into()));
        assert!(refused_storage_change(&lw, Some(&big))
            .unwrap()
            .contains("cannot shrink"));
        // Smaller claim: the spec grows it, nothing refused.
        let small = claim("20Gi", Some("local-path"));
        assert_eq!(request(&pvc(&lw, Some(&small))), Quantity("40Gi".into()));
        assert_eq!(refused_storage_change(&lw, Some(&small)), None);
        // The same size in other units is no shrink.
        assert_eq!(
            refused_storage_change(&lw, Some(&claim("40960Mi", Some("local-path")))),
            None
        );
        // Another class: the claim keeps its own.
        let other = claim("40Gi", Some("fast"));
        assert_eq!(class(&pvc(&lw, Some(&other))).as_deref(), Some("fast"));
        assert!(refused_storage_change(&lw, Some(&other))
            .unwrap()
            .contains("immutable"));
        // No class in the spec, the default class filled in by the API server: not a change.
        let mut no_class = lw.clone();
        no_class.spec.ollama.storage.storage_class_name = None;
        let defaulted = claim("40Gi", Some("standard"));
        assert_eq!(
            class(&pvc(&no_class, Some(&defaulted))).as_deref(),
            Some("standard")
        );
        assert_eq!(refused_storage_change(&no_class, Some(&defaulted)), None);
        // No claim yet: the spec as it is.
        assert_eq!(class(&pvc(&lw, None)).as_deref(), Some("local-path"));
        assert_eq!(refused_storage_change(&lw, None), None);
    }

    #[test]
    fn pull_job_pulls_only_the_given_models_as_arguments() {
        let lw = example("autoscaling.yaml");
        assert_eq!(
            required_models(&lw),
            ["qwen2.5vl:3b", "gpt-oss:latest", "llama3.2:3b"]
        );
        let missing = vec!["llama3.2:3b".to_owned()];
        let job = model_pull_job(&lw, &missing);
        let name = job.metadata.name.clone().unwrap();
        assert!(
            name.starts_with("school-e-model-pull-")
                && name.len() == "school-e-model-pull-".len() + 10,
            "{name}"
        );
        let c = &job
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0];
        assert_eq!(c.args.as_ref().unwrap(), &["model-pull", "llama3.2:3b"]);
        assert!(
            !c.command.as_ref().unwrap()[2].contains("llama3.2"),
            "models are never part of the script"
        );
        assert_eq!(env_of(c)["OLLAMA_HOST"], "http://school-e-ollama:11434");
        let resources = c.resources.as_ref().unwrap();
        assert!(
            resources
                .limits
                .as_ref()
                .unwrap()
                .keys()
                .all(|k| k == "memory"),
            "the pull needs no GPU: {resources:?}"
        );
        assert!(resources.requests.as_ref().unwrap().contains_key("cpu"));
        // Another list, another Job; the same list, the same Job.
        let name_of = |lw: &LearningWorker, models: &[String]| {
            model_pull_job(lw, models).metadata.name.unwrap()
        };
        assert_ne!(name_of(&lw, &missing), name_of(&lw, &["x".into()]));
        assert_eq!(name_of(&lw, &missing), name_of(&lw, &missing));
    }

    #[test]
    fn any_change_of_the_pull_pod_gives_a_new_job_name() {
        // A Job's pod template is immutable: a changed template under the old name would be
        // refused by the API server and block the apply.
        let lw = example("amd-gpu.yaml");
        let models = vec!["gpt-oss:20b".to_owned()];
        let name = |lw: &LearningWorker| model_pull_job(lw, &models).metadata.name.unwrap();
        let before = name(&lw);
        let mut moved = lw.clone();
        moved
            .spec
            .ollama
            .node_selector
            .get_or_insert_with(BTreeMap::new)
            .insert("gustav.dev/pool".into(), "b".into());
        let mut other_user = lw.clone();
        other_user.spec.ollama.run_as_user = 2000;
        let mut tolerant = lw.clone();
        tolerant.spec.ollama.tolerations = Some(vec![Toleration {
            key: Some("x".into()),
            operator: Some("Exists".into()),
            ..Toleration::default()
        }]);
        for changed in [moved, other_user, tolerant] {
            assert_ne!(name(&changed), before);
        }
    }
}
