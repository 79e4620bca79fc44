//! The model-pull Job: the Ollama CLI against the managed Service, pulling the missing models
//! given as arguments, named by a hash of its whole pod template. Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use learning_crds::LearningWorker;
use sha2::{Digest, Sha256};

use super::super::runner::restricted_container_security;
use super::super::{child_meta, labels, names, worker, OLLAMA_PORT};
use super::{env, pod_security, tmp_volume, tolerations, PULL_COMPONENT, PULL_TMP_SIZE};

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

/// The pull container: the pull script over `models`, the CLI pointed at the managed
/// Service, HOME on `/tmp`, small resources.
fn container(lw: &LearningWorker, models: &[String], tmp_mount: VolumeMount) -> Container {
    let o = &lw.spec.ollama;
    let mut args = vec!["model-pull".to_owned()];
    args.extend(models.iter().cloned());
    Container {
        name: "pull".into(),
        image: Some(o.effective_image().to_owned()),
        image_pull_policy: o.image_pull_policy.map(|p| p.as_str().to_owned()),
        command: Some(vec!["/bin/sh".into(), "-c".into(), PULL_SCRIPT.into()]),
        args: Some(args),
        env: Some(vec![
            env(
                "OLLAMA_HOST",
                format!("http://{}:{OLLAMA_PORT}", names::ollama(&worker(lw))),
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
    }
}

/// The pull pod template: never restarted, no token, Ollama's user without its volume and GPU
/// groups, on the Ollama nodes.
fn pod_template(lw: &LearningWorker, models: &[String]) -> PodTemplateSpec {
    let o = &lw.spec.ollama;
    let (tmp, tmp_mount) = tmp_volume(PULL_TMP_SIZE);
    let container = container(lw, models, tmp_mount);
    let tolerations = tolerations(lw);
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(&worker(lw), PULL_COMPONENT)),
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
    }
}

/// The model-pull Job for `models` (the missing ones): the Ollama CLI against the managed
/// Service; no GPU, no token, restricted, on the Ollama nodes (the image is cached there).
pub fn model_pull_job(lw: &LearningWorker, models: &[String]) -> Job {
    let template = pod_template(lw, models);
    Job {
        metadata: child_meta(
            lw,
            names::model_pull(&worker(lw), &pull_hash(&template)),
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
