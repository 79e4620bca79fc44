//! The runner's children: ServiceAccount (no token), Deployment (the contract's env, DSN from a
//! Secret, probes on the runner's endpoints, drain-aware termination grace, restricted security
//! context), Service (health and metrics) and PodDisruptionBudget. Pure.

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, SeccompProfile, SecretKeySelector, SecurityContext, Service, ServiceAccount, Volume,
    VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use learning_contract::env as var;
use learning_crds::schema::SecretKeyRef;
use learning_crds::LearningWorker;

use super::{child_meta, names, selector_labels, worker, OLLAMA_PORT, RUNNER_PORT};

pub mod capacity;

/// Component label of the runners.
pub const COMPONENT: &str = "runner";
/// Numeric uid/gid the runner runs as.
pub const RUNNER_UID: i64 = 65532;
/// Seconds added to the drain grace for `terminationGracePeriodSeconds`.
pub const TERMINATION_MARGIN_SECONDS: i64 = 15;

/// The runner ServiceAccount: the runner talks to no Kubernetes API, so no token is mounted.
pub fn service_account(lw: &LearningWorker) -> ServiceAccount {
    ServiceAccount {
        metadata: child_meta(lw, names::runner(&worker(lw)), COMPONENT),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

/// A plain environment variable.
fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// An environment variable from a Secret key (required).
fn secret_env(name: &str, secret: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.name.clone(),
                key: secret.key.clone(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// Seconds from milliseconds, as the runner parses them (`0.5`, `2`).
fn seconds_from_millis(ms: i32) -> String {
    if ms % 1000 == 0 {
        (ms / 1000).to_string()
    } else {
        format!("{}", f64::from(ms) / 1000.0)
    }
}

/// The runner container's environment, in the contract's names (§8).
pub fn runner_env(lw: &LearningWorker) -> Vec<EnvVar> {
    let spec = &lw.spec;
    let r = &spec.runner;
    let ai = &spec.ai;
    let mut e = vec![secret_env(
        var::LEARNING_DATABASE_URL,
        &spec.database.secret_ref,
    )];
    if let Some(environment) = &spec.environment {
        e.push(env(var::GUSTAV_ENV, environment));
    }
    e.push(env(var::AI_BACKEND, ai.backend.as_str()));
    if let Some(url) = ollama_url(lw) {
        e.push(env(var::OLLAMA_BASE_URL, url));
    }
    e.extend([
        env(var::AI_VISION_MODEL, &ai.vision_model),
        env(var::AI_FEEDBACK_MODEL, &ai.feedback_model),
        env(
            var::AI_TIMEOUT_VISION,
            ai.vision_timeout_seconds.to_string(),
        ),
        env(
            var::AI_TIMEOUT_FEEDBACK,
            ai.feedback_timeout_seconds.to_string(),
        ),
        env(
            var::LEARNING_DSPY_JSON_ADAPTER,
            ai.structured_output.to_string(),
        ),
    ]);
    if let Some(level) = ai.think_level {
        e.push(env(var::AI_THINK_LEVEL, level.as_str()));
    }
    e.extend(worker_env(lw));
    if let Some(storage) = &spec.storage {
        if let Some(volume) = &storage.submissions_volume {
            e.push(env(var::STORAGE_VERIFY_ROOT, &volume.mount_path));
        }
        if let Some(supabase) = &storage.supabase {
            e.push(env(var::SUPABASE_URL, &supabase.url));
            e.push(secret_env(
                var::SUPABASE_SERVICE_ROLE_KEY,
                &supabase.service_role_key_secret_ref,
            ));
            e.push(env(var::LEARNING_STORAGE_BUCKET, &supabase.bucket));
        }
    }
    if let Some(c) = capacity::capacity(lw) {
        let user_sets = |name: &str| r.env.iter().flatten().any(|v| v.name == name);
        if !user_sets(var::AI_MAX_PARALLEL_CALLS) {
            e.push(env(
                var::AI_MAX_PARALLEL_CALLS,
                c.calls_per_model.to_string(),
            ));
        }
    }
    e.extend([
        env(var::LEARNING_HTTP_ADDR, format!("0.0.0.0:{RUNNER_PORT}")),
        env(var::LOG_LEVEL, &r.log_level),
        env(var::LOG_FORMAT, "json"),
    ]);
    e.extend(r.env.iter().flatten().cloned());
    e
}

/// The job loop's settings: concurrency ([`capacity`]), retries, leases, polling, drain.
fn worker_env(lw: &LearningWorker) -> Vec<EnvVar> {
    let r = &lw.spec.runner;
    vec![
        env(
            var::WORKER_CONCURRENCY,
            capacity::concurrency(lw).to_string(),
        ),
        env(var::WORKER_MAX_RETRIES, r.max_retries.to_string()),
        env(var::WORKER_BACKOFF_SECONDS, r.backoff_seconds.to_string()),
        env(
            var::WORKER_BACKOFF_MAX_SECONDS,
            r.backoff_max_seconds.to_string(),
        ),
        env(var::WORKER_LEASE_SECONDS, r.lease_seconds.to_string()),
        env(var::WORKER_LEASE_MULTIPLIER, r.lease_multiplier.to_string()),
        env(
            var::WORKER_POLL_INTERVAL,
            seconds_from_millis(r.poll_interval_milliseconds),
        ),
        env(var::WORKER_LISTEN_NOTIFY, r.listen_notify.to_string()),
        env(
            var::WORKER_DRAIN_GRACE_SECONDS,
            r.drain_grace_seconds.to_string(),
        ),
    ]
}

/// The Ollama URL the runners get: the managed Service (a dot-less name in the same
/// namespace, as the runner requires) or the external URL; none for the stub backend.
pub fn ollama_url(lw: &LearningWorker) -> Option<String> {
    let spec = &lw.spec;
    if spec.ai.backend == learning_crds::ai::Backend::Stub {
        return None;
    }
    match &spec.ollama.url {
        Some(url) if spec.ollama.mode == learning_crds::ollama::OllamaMode::External => {
            Some(url.clone())
        }
        _ => Some(format!(
            "http://{}:{OLLAMA_PORT}",
            names::ollama(&worker(lw))
        )),
    }
}

/// An HTTP probe on the `http` port.
fn http_probe(path: &str, period: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(failure_threshold),
        ..Probe::default()
    }
}

/// The restricted container security context (non-root, no privilege escalation, no
/// capabilities, read-only root filesystem, RuntimeDefault seccomp).
pub fn restricted_container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..SecurityContext::default()
    }
}

/// The runner's volumes and their mounts: a bounded `/tmp`, and the submissions volume
/// (read-only) when one is configured.
fn volumes(lw: &LearningWorker) -> (Vec<Volume>, Vec<VolumeMount>) {
    let mut volumes = vec![Volume {
        name: "tmp".into(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(Quantity("64Mi".into())),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: "tmp".into(),
        mount_path: "/tmp".into(),
        ..VolumeMount::default()
    }];
    if let Some(volume) = lw
        .spec
        .storage
        .as_ref()
        .and_then(|s| s.submissions_volume.as_ref())
    {
        volumes.push(Volume {
            name: "submissions".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: volume.claim_name.clone(),
                read_only: Some(true),
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: "submissions".into(),
            mount_path: volume.mount_path.clone(),
            sub_path: volume.sub_path.clone(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    (volumes, mounts)
}

/// The runner container: `run` with the contract's env on the `http` port, probes on
/// `/livez` and `/readyz`, restricted, with the given mounts.
fn container(lw: &LearningWorker, mounts: Vec<VolumeMount>) -> Container {
    let r = &lw.spec.runner;
    Container {
        name: "runner".into(),
        image: r.image.clone(),
        image_pull_policy: r.image_pull_policy.map(|p| p.as_str().to_owned()),
        args: Some(vec!["run".into()]),
        env: Some(runner_env(lw)),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: RUNNER_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        liveness_probe: Some(http_probe("/livez", 10, 3)),
        readiness_probe: Some(http_probe("/readyz", 5, 3)),
        // A crash's last log lines become the termination message (the CrashLoopBackOff
        // condition quotes it).
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        resources: r.resources.clone(),
        security_context: Some(restricted_container_security()),
        volume_mounts: Some(mounts),
        ..Container::default()
    }
}

/// The runner pod's security context: non-root as [`RUNNER_UID`], RuntimeDefault seccomp.
fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUNNER_UID),
        run_as_group: Some(RUNNER_UID),
        fs_group: Some(RUNNER_UID),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..PodSecurityContext::default()
    }
}

/// The runner pod template: the runner ServiceAccount without a token, a termination grace
/// of the drain grace plus [`TERMINATION_MARGIN_SECONDS`], the user's scheduling settings.
fn pod_template(lw: &LearningWorker) -> PodTemplateSpec {
    let name = worker(lw);
    let r = &lw.spec.runner;
    let (volumes, mounts) = volumes(lw);
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(super::labels(&name, COMPONENT)),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            service_account_name: Some(names::runner(&name)),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            termination_grace_period_seconds: Some(
                i64::from(r.drain_grace_seconds) + TERMINATION_MARGIN_SECONDS,
            ),
            security_context: Some(pod_security()),
            containers: vec![container(lw, mounts)],
            volumes: Some(volumes),
            node_selector: r.node_selector.clone(),
            tolerations: r.tolerations.clone(),
            affinity: r.affinity.clone(),
            image_pull_secrets: r.image_pull_secrets.clone(),
            ..PodSpec::default()
        }),
    }
}

/// Rolling updates one extra runner at a time, never below the wanted count.
fn rolling_update() -> DeploymentStrategy {
    DeploymentStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: Some(IntOrString::Int(1)),
            max_unavailable: Some(IntOrString::Int(0)),
        }),
    }
}

/// The runner Deployment with `replicas` as `crate::autoscale::runner_replicas` decided;
/// `None` leaves the field out of the apply (KEDA or an autoscaler of the user's own owns it).
pub fn deployment(lw: &LearningWorker, replicas: Option<i32>) -> Deployment {
    let name = worker(lw);
    Deployment {
        metadata: child_meta(lw, names::runner(&name), COMPONENT),
        spec: Some(DeploymentSpec {
            replicas,
            selector: LabelSelector {
                match_labels: Some(selector_labels(&name, COMPONENT)),
                match_expressions: None,
            },
            strategy: Some(rolling_update()),
            template: pod_template(lw),
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// The runner Service: port `http` (health report and `/metrics`), not-ready pods included.
pub fn service(lw: &LearningWorker) -> Service {
    super::component_service(
        lw,
        names::runner(&worker(lw)),
        COMPONENT,
        "http",
        RUNNER_PORT,
        true,
    )
}

/// The runner PodDisruptionBudget: at most one healthy runner evicted at a time (it drains
/// first); unhealthy (unready) runners may always be evicted.
pub fn pdb(lw: &LearningWorker) -> PodDisruptionBudget {
    let name = worker(lw);
    PodDisruptionBudget {
        metadata: child_meta(lw, names::runner(&name), COMPONENT),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&name, COMPONENT)),
                match_expressions: None,
            }),
            // Runners are unready while the database or Ollama is down; such pods must not
            // block a node drain (the default policy only evicts them when the budget allows).
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests;
