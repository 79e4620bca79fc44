//! Pure builders of every child object of a LearningWorker: deterministic names, the
//! `app.kubernetes.io/*` labels, owner references, and the full set of children the operator
//! applies. No I/O; the controller and `render` both use these.

pub mod kinds;
pub mod network;
pub mod ollama;
pub mod runner;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use learning_crds::LearningWorker;

pub use kinds::{Child, ChildKind};

/// Field manager and `managed-by` label value.
pub const MANAGER: &str = "learning-operator";
/// The runner's HTTP port (`LEARNING_HTTP_ADDR`).
pub const RUNNER_PORT: i32 = 8080;
/// Ollama's API port.
pub const OLLAMA_PORT: i32 = 11434;
/// Label key of the component.
pub const COMPONENT: &str = "app.kubernetes.io/component";
/// Label key of the instance (the LearningWorker's name).
pub const INSTANCE: &str = "app.kubernetes.io/instance";

/// What the builders need besides the resource itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderContext {
    /// Namespace the operator runs in (NetworkPolicies admit it to health and Ollama APIs).
    pub operator_namespace: String,
    /// Models the pull Job should pull; `None`: no Job (nothing missing or not known yet).
    pub models_to_pull: Option<Vec<String>>,
    /// Waiting jobs last reported by the runners.
    pub queue_visible: Option<i64>,
    /// The builtin autoscaling engine's decision (`status.autoscaling.desiredReplicas`);
    /// `None`: none made (offline rendering), the minimum is used.
    pub runner_replicas: Option<i32>,
    /// The model PersistentVolumeClaim as it exists: it is never shrunk and its class never
    /// changed (both are refused by the API server and would block the apply).
    pub models_claim: Option<ollama::ExistingClaim>,
    /// A model-pull Job of this worker is still running: no second one is started, and
    /// Ollama's pull egress stays open until it ends.
    pub pull_active: bool,
    /// The managed Ollama is scaled to zero to free the GPU (`spec.ollama.idleScaleDown`).
    pub ollama_released: bool,
}

/// Deterministic child names.
pub mod names {
    /// Runner Deployment, Service, PDB, ServiceAccount and NetworkPolicy.
    pub fn runner(worker: &str) -> String {
        format!("{worker}-runner")
    }
    /// Ollama Deployment, Service and NetworkPolicy (a dot-less in-cluster host for the runner).
    pub fn ollama(worker: &str) -> String {
        format!("{worker}-ollama")
    }
    /// The model volume claim.
    pub fn models_pvc(worker: &str) -> String {
        format!("{worker}-ollama-models")
    }
    /// The model-pull Job and its NetworkPolicy prefix; `hash` identifies the model list.
    pub fn model_pull(worker: &str, hash: &str) -> String {
        format!("{worker}-model-pull-{hash}")
    }
    /// NetworkPolicy of the model-pull pods.
    pub fn model_pull_policy(worker: &str) -> String {
        format!("{worker}-model-pull")
    }
}

/// Selector labels of a component of `worker`.
pub fn selector_labels(worker: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "learning-worker".to_owned(),
        ),
        (INSTANCE.to_owned(), worker.to_owned()),
        (COMPONENT.to_owned(), component.to_owned()),
    ])
}

/// All labels of a child object of `worker`.
pub fn labels(worker: &str, component: &str) -> BTreeMap<String, String> {
    let mut l = selector_labels(worker, component);
    l.insert("app.kubernetes.io/managed-by".into(), MANAGER.into());
    l.insert("app.kubernetes.io/part-of".into(), "gustav".into());
    l
}

/// Metadata of a child: name, namespace, labels, owner reference (absent offline).
pub fn child_meta(lw: &LearningWorker, name: String, component: &str) -> ObjectMeta {
    let worker = lw.metadata.name.clone().unwrap_or_default();
    ObjectMeta {
        name: Some(name),
        namespace: lw.metadata.namespace.clone(),
        labels: Some(labels(&worker, component)),
        owner_references: owner_reference(lw).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// The worker's name (its children's name prefix and `instance` label).
pub fn worker(lw: &LearningWorker) -> String {
    lw.metadata.name.clone().unwrap_or_default()
}

/// A ClusterIP Service for one component of a worker, with one named TCP port whose target
/// is the container port of the same name.
pub fn component_service(
    lw: &LearningWorker,
    service_name: String,
    component: &str,
    port_name: &str,
    port: i32,
    publish_not_ready_addresses: bool,
) -> Service {
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let name = worker(lw);
    Service {
        metadata: child_meta(lw, service_name, component),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(&name, component)),
            ports: Some(vec![ServicePort {
                name: Some(port_name.into()),
                port,
                target_port: Some(IntOrString::String(port_name.into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            type_: Some("ClusterIP".into()),
            publish_not_ready_addresses: publish_not_ready_addresses.then_some(true),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The controller owner reference, when the resource has a uid (it has none offline).
pub fn owner_reference(lw: &LearningWorker) -> Option<OwnerReference> {
    use kube::Resource;
    lw.metadata.uid.as_ref()?;
    lw.controller_owner_ref(&())
}

/// Every child the operator applies for one LearningWorker, in apply order: dependencies
/// first (the runner ServiceAccount, the NetworkPolicies, Ollama's model volume, Service and
/// Deployment, the model-pull Job), then the runners' Service, PodDisruptionBudget and
/// Deployment. Rendering lists them in the same order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Children(Vec<Child>);

impl Children {
    /// The children in apply order.
    pub fn iter(&self) -> std::slice::Iter<'_, Child> {
        self.0.iter()
    }
}

impl<'a> IntoIterator for &'a Children {
    type Item = &'a Child;
    type IntoIter = std::slice::Iter<'a, Child>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Builds every child, in apply order. The spec must have passed
/// `learning_crds::validate::validate`.
pub fn children(lw: &LearningWorker, ctx: &RenderContext) -> Children {
    let spec = &lw.spec;
    let managed = spec.manages_ollama();
    let mut out: Vec<Child> = vec![runner::service_account(lw).into()];
    if spec.network.policies {
        out.extend(network::policies(lw, ctx).into_iter().map(Child::from));
    }
    if managed {
        out.push(ollama::pvc(lw, ctx.models_claim.as_ref()).into());
        out.push(ollama::service(lw).into());
        out.push(ollama::deployment(lw, ctx.ollama_released).into());
    }
    // One pull at a time: while a pull Job runs, none is started (a shorter missing list
    // would otherwise give another Job, pulling the same models twice over).
    match (&ctx.models_to_pull, managed && spec.ollama.pull_models) {
        (Some(models), true) if !models.is_empty() && !ctx.pull_active => {
            out.push(ollama::model_pull_job(lw, models).into());
        }
        _ => {}
    }
    out.push(runner::service(lw).into());
    out.push(runner::pdb(lw).into());
    let replicas = crate::autoscale::runner_replicas(lw, ctx.runner_replicas);
    out.push(runner::deployment(lw, replicas).into());
    Children(out)
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Example resources for the builder tests.
    use learning_crds::LearningWorker;

    /// An example CR from `crds/examples/`, with a uid as the API server would set.
    pub fn example(file: &str) -> LearningWorker {
        let path = format!("{}/../crds/examples/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lw: LearningWorker = serde_yaml_ng::from_str(&text).unwrap();
        lw.metadata.uid = Some("8f0c1a4e-0000-4000-8000-000000000001".into());
        lw.metadata.generation = Some(3);
        lw
    }

    /// The render context of the tests.
    pub fn ctx() -> super::RenderContext {
        super::RenderContext {
            operator_namespace: "learning-system".into(),
            ..super::RenderContext::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{ctx, example};
    use super::*;

    #[test]
    fn names_fit_dns_labels_for_the_longest_allowed_worker_name() {
        let worker = "a".repeat(learning_crds::learning_worker::MAX_NAME_LEN);
        for n in [
            names::runner(&worker),
            names::ollama(&worker),
            names::models_pvc(&worker),
            names::model_pull(&worker, "0123456789"),
        ] {
            assert!(n.len() <= 63, "{n} is {} long", n.len());
        }
    }

    /// Every child as (kind, name), in apply order.
    fn listing(c: &Children) -> Vec<(ChildKind, String)> {
        c.iter().map(|child| (child.kind(), child.name())).collect()
    }

    #[test]
    fn children_come_in_apply_order_dependencies_first() {
        let mut c = ctx();
        c.models_to_pull = Some(vec!["gpt-oss:20b".into()]);
        let built = children(&example("amd-gpu.yaml"), &c);
        let expected: Vec<(ChildKind, &str)> = vec![
            (ChildKind::ServiceAccount, "school-a-runner"),
            (ChildKind::NetworkPolicy, "school-a-runner"),
            (ChildKind::NetworkPolicy, "school-a-ollama"),
            (ChildKind::NetworkPolicy, "school-a-model-pull"),
            (ChildKind::PersistentVolumeClaim, "school-a-ollama-models"),
            (ChildKind::Service, "school-a-ollama"),
            (ChildKind::Deployment, "school-a-ollama"),
            (ChildKind::Job, "school-a-model-pull-"),
            (ChildKind::Service, "school-a-runner"),
            (ChildKind::PodDisruptionBudget, "school-a-runner"),
            (ChildKind::Deployment, "school-a-runner"),
        ];
        let listed = listing(&built);
        assert_eq!(listed.len(), expected.len(), "{listed:?}");
        for ((kind, name), (want_kind, want_name)) in listed.iter().zip(expected) {
            assert_eq!(*kind, want_kind, "{listed:?}");
            assert!(name.starts_with(want_name), "{name} is not {want_name}");
        }
    }

    #[test]
    fn managed_ollama_gets_its_objects_and_external_gets_none() {
        let managed = listing(&children(&example("amd-gpu.yaml"), &ctx()));
        for wanted in [
            (ChildKind::Deployment, "school-a-ollama".to_owned()),
            (ChildKind::Service, "school-a-ollama".to_owned()),
            (
                ChildKind::PersistentVolumeClaim,
                "school-a-ollama-models".to_owned(),
            ),
        ] {
            assert!(managed.contains(&wanted), "{wanted:?}");
        }
        assert!(
            !managed.iter().any(|(kind, _)| *kind == ChildKind::Job),
            "no Job until missing models are known"
        );
        let external = listing(&children(&example("external-ollama.yaml"), &ctx()));
        assert!(
            !external.iter().any(|(kind, name)| name.contains("-ollama")
                || *kind == ChildKind::PersistentVolumeClaim),
            "{external:?}"
        );
        assert!(external.contains(&(ChildKind::Deployment, "school-d-runner".to_owned())));
    }

    #[test]
    fn no_second_pull_job_while_one_runs() {
        let lw = example("amd-gpu.yaml");
        let mut c = ctx();
        c.models_to_pull = Some(vec!["gpt-oss:20b".into()]);
        let has_job = |c: &Children| c.iter().any(|child| child.kind() == ChildKind::Job);
        assert!(has_job(&children(&lw, &c)));
        c.pull_active = true;
        let busy = children(&lw, &c);
        assert!(!has_job(&busy), "the running Job finishes first");
        assert!(
            busy.iter().any(|child| match child {
                Child::NetworkPolicy(p) =>
                    p.metadata.name.as_deref() == Some("school-a-ollama")
                        && p.spec.as_ref().unwrap().egress.as_ref().unwrap().len() == 2,
                _ => false,
            }),
            "its pull egress stays open"
        );
    }

    /// Every pod template the operator renders for `lw` (runners, Ollama, the pull Job).
    fn pod_templates(c: &Children) -> Vec<(String, k8s_openapi::api::core::v1::PodSpec)> {
        c.iter()
            .filter_map(|child| match child {
                Child::Deployment(d) => Some((&d.metadata, &d.spec.as_ref()?.template)),
                Child::Job(j) => Some((&j.metadata, &j.spec.as_ref()?.template)),
                _ => None,
            })
            .map(|(meta, template)| (meta.name.clone().unwrap(), template.spec.clone().unwrap()))
            .collect()
    }

    #[test]
    fn every_pod_of_every_example_meets_the_restricted_pod_security_standard() {
        let dir = format!("{}/../crds/examples", env!("CARGO_MANIFEST_DIR"));
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(files.len(), 7);
        let mut checked = 0;
        for file in files {
            let lw = example(&file);
            let mut c = ctx();
            c.models_to_pull = Some(vec!["qwen2.5vl:3b".into()]);
            for (name, pod) in pod_templates(&children(&lw, &c)) {
                let what = format!("{file}: {name}");
                let psc = pod.security_context.clone().unwrap_or_default();
                assert_eq!(psc.run_as_non_root, Some(true), "{what}");
                assert!(psc.run_as_user.is_some_and(|u| u > 0), "{what}");
                assert_eq!(
                    psc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
                    Some("RuntimeDefault"),
                    "{what}"
                );
                assert_eq!(pod.automount_service_account_token, Some(false), "{what}");
                assert!(
                    pod.host_network != Some(true)
                        && pod.host_pid != Some(true)
                        && pod.host_ipc != Some(true),
                    "{what}"
                );
                for v in pod.volumes.iter().flatten() {
                    assert!(v.host_path.is_none(), "{what}: hostPath {}", v.name);
                    if let Some(e) = &v.empty_dir {
                        assert!(
                            e.size_limit.is_some(),
                            "{what}: emptyDir {} unbounded",
                            v.name
                        );
                    }
                }
                for ct in pod.init_containers.iter().flatten().chain(&pod.containers) {
                    let what = format!("{what}/{}", ct.name);
                    let sc = ct.security_context.clone().unwrap_or_default();
                    assert_eq!(sc.allow_privilege_escalation, Some(false), "{what}");
                    assert_ne!(sc.privileged, Some(true), "{what}");
                    assert_eq!(sc.read_only_root_filesystem, Some(true), "{what}");
                    let caps = sc.capabilities.clone().unwrap_or_default();
                    assert_eq!(caps.drop, Some(vec!["ALL".to_owned()]), "{what}");
                    assert!(caps.add.unwrap_or_default().is_empty(), "{what}");
                    assert!(
                        ct.ports.iter().flatten().all(|p| p.host_port.is_none()),
                        "{what}"
                    );
                    checked += 1;
                }
            }
        }
        // 7 runners, 4 managed Ollamas and their 4 pull Jobs.
        assert_eq!(checked, 15);
    }

    #[test]
    fn every_child_is_owned_by_the_worker() {
        let lw = example("amd-gpu.yaml");
        let mut c = ctx();
        c.models_to_pull = Some(vec!["gpt-oss:20b".into()]);
        let rendered = crate::render::objects(&children(&lw, &c)).unwrap();
        assert_eq!(rendered.len(), 11);
        for obj in rendered {
            let owners = &obj["metadata"]["ownerReferences"];
            assert_eq!(owners[0]["kind"], "LearningWorker", "{obj}");
            assert_eq!(owners[0]["controller"], true);
            assert_eq!(owners[0]["uid"], "8f0c1a4e-0000-4000-8000-000000000001");
            assert_eq!(
                obj["metadata"]["labels"]["app.kubernetes.io/managed-by"],
                MANAGER
            );
            assert_eq!(obj["metadata"]["namespace"], "gustav");
        }
    }
}
