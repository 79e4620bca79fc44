//! NetworkPolicies: Ollama accepts only this worker's runners, its model-pull pods and the
//! operator, and reaches nothing but DNS and — only while a pull is wanted, when allowed —
//! public addresses on the model-pull ports; the pull pods reach only DNS and Ollama; runners
//! accept only their HTTP port from the operator and the configured metrics scrapers, and, when
//! `runnerEgress` opts in, reach only DNS, this worker's Ollama (managed, or an external one's
//! namespace on its URL's port) and the configured peers. Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use learning_contract::url::{ollama_host_and_port, InClusterHost};
use learning_crds::learning_worker::EgressTarget;
use learning_crds::ollama::OllamaMode;
use learning_crds::LearningWorker;

use super::{
    child_meta, names, ollama, runner, selector_labels, RenderContext, OLLAMA_PORT, RUNNER_PORT,
};

/// The label the operator's own pods carry (the Helm chart must set it).
pub const OPERATOR_POD_LABEL: (&str, &str) = ("app.kubernetes.io/name", "learning-operator");
/// Ranges excluded from the model-pull egress (pulls go to the public registry): private,
/// carrier-grade NAT (often the pod or node network), link-local (cloud metadata endpoints) and
/// loopback.
pub const PRIVATE_RANGES: [&str; 6] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "127.0.0.0/8",
];

fn select(labels: BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels),
        match_expressions: None,
    }
}

fn pods(worker: &str, component: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(select(selector_labels(worker, component))),
        ..NetworkPolicyPeer::default()
    }
}

fn operator_pods(operator_namespace: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(select(BTreeMap::from([(
            "kubernetes.io/metadata.name".to_owned(),
            operator_namespace.to_owned(),
        )]))),
        pod_selector: Some(select(BTreeMap::from([(
            OPERATOR_POD_LABEL.0.to_owned(),
            OPERATOR_POD_LABEL.1.to_owned(),
        )]))),
        ip_block: None,
    }
}

fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        end_port: None,
    }
}

/// DNS to pods in any namespace (cluster DNS lives in kube-system on most clusters, not all)
/// and to `network.dnsCidrs` (NodeLocal DNSCache listens on a link-local address, not a pod).
fn dns(lw: &LearningWorker) -> NetworkPolicyEgressRule {
    let mut to = vec![NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector::default()),
        ..NetworkPolicyPeer::default()
    }];
    to.extend(
        lw.spec
            .network
            .dns_cidrs
            .iter()
            .map(|cidr| NetworkPolicyPeer {
                ip_block: Some(IPBlock {
                    cidr: cidr.clone(),
                    except: None,
                }),
                ..NetworkPolicyPeer::default()
            }),
    );
    NetworkPolicyEgressRule {
        to: Some(to),
        ports: Some(vec![
            NetworkPolicyPort {
                port: Some(IntOrString::Int(53)),
                protocol: Some("UDP".into()),
                end_port: None,
            },
            tcp(53),
        ]),
    }
}

fn policy(
    lw: &LearningWorker,
    name: String,
    component: &str,
    spec: NetworkPolicySpec,
) -> NetworkPolicy {
    NetworkPolicy {
        metadata: child_meta(lw, name, component),
        spec: Some(spec),
    }
}

/// Whether Ollama may reach public addresses now: pulls allowed and one wanted (missing
/// models to pull, or a pull Job still running).
pub fn pull_egress_open(lw: &LearningWorker, ctx: &RenderContext) -> bool {
    lw.spec.network.allow_model_pulls
        && lw.spec.ollama.pull_models
        && (ctx.pull_active || ctx.models_to_pull.as_ref().is_some_and(|m| !m.is_empty()))
}

fn egress_to(target: &EgressTarget) -> NetworkPolicyEgressRule {
    NetworkPolicyEgressRule {
        to: Some(target.to.clone()),
        ports: Some(target.ports.iter().map(|p| tcp(*p)).collect()),
    }
}

/// The runners' way to an external Ollama: the namespace its URL names (by the label
/// `kubernetes.io/metadata.name`, which Kubernetes sets on every namespace) or, for a dot-less
/// service name, this namespace — on the URL's port, which NetworkPolicy matches against the
/// pod's port (after the Service): the Service's port must equal its target port, as Ollama's
/// 11434 usually does; otherwise add the pod's port under `others`. Any pod there: the
/// operator does not know the external Ollama's labels (narrow it with a policy of that
/// namespace).
fn external_ollama_egress(lw: &LearningWorker) -> Option<NetworkPolicyEgressRule> {
    let spec = &lw.spec;
    if spec.ai.backend != learning_crds::ai::Backend::Local
        || spec.ollama.mode != OllamaMode::External
    {
        return None;
    }
    let (host, port) = ollama_host_and_port(spec.ollama.url.as_deref()?)?;
    let peer = match InClusterHost::parse(host)?.namespace {
        // DNS names are case-insensitive; namespace names (and so their label) are lowercase.
        Some(namespace) => NetworkPolicyPeer {
            namespace_selector: Some(select(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_owned(),
                namespace.to_ascii_lowercase(),
            )]))),
            ..NetworkPolicyPeer::default()
        },
        None => NetworkPolicyPeer {
            pod_selector: Some(LabelSelector::default()),
            ..NetworkPolicyPeer::default()
        },
    };
    Some(NetworkPolicyEgressRule {
        to: Some(vec![peer]),
        ports: Some(vec![tcp(i32::from(port))]),
    })
}

/// The runners' egress when `runnerEgress` opts in: DNS, this worker's managed Ollama or the
/// external one's namespace, the database, Supabase and the other configured peers.
fn runner_egress(lw: &LearningWorker) -> Option<Vec<NetworkPolicyEgressRule>> {
    let e = lw.spec.network.runner_egress.as_ref()?;
    let worker = lw.metadata.name.clone().unwrap_or_default();
    let mut rules = vec![dns(lw)];
    if lw.spec.manages_ollama() {
        rules.push(NetworkPolicyEgressRule {
            to: Some(vec![pods(&worker, ollama::COMPONENT)]),
            ports: Some(vec![tcp(OLLAMA_PORT)]),
        });
    }
    rules.extend(external_ollama_egress(lw));
    rules.push(egress_to(&e.database));
    rules.extend(e.supabase.iter().map(egress_to));
    rules.extend(e.others.iter().map(egress_to));
    Some(rules)
}

/// Every NetworkPolicy of the worker: the runners', and with a managed Ollama, Ollama's and
/// the model-pull pods'.
pub fn policies(lw: &LearningWorker, ctx: &RenderContext) -> Vec<NetworkPolicy> {
    let mut out = vec![runner_policy(lw, ctx)];
    if lw.spec.manages_ollama() {
        out.push(ollama_policy(lw, ctx));
        out.push(model_pull_policy(lw));
    }
    out
}

/// The runners accept their HTTP port from the operator and the metrics scrapers; their
/// egress is restricted only when `runnerEgress` opts in.
fn runner_policy(lw: &LearningWorker, ctx: &RenderContext) -> NetworkPolicy {
    let worker = lw.metadata.name.clone().unwrap_or_default();
    let mut runner_from = vec![operator_pods(&ctx.operator_namespace)];
    runner_from.extend(lw.spec.network.metrics_from.iter().cloned());
    let runner_egress = runner_egress(lw);
    policy(
        lw,
        names::runner(&worker),
        runner::COMPONENT,
        NetworkPolicySpec {
            pod_selector: Some(select(selector_labels(&worker, runner::COMPONENT))),
            policy_types: Some(if runner_egress.is_some() {
                vec!["Ingress".into(), "Egress".into()]
            } else {
                vec!["Ingress".into()]
            }),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(runner_from),
                ports: Some(vec![tcp(RUNNER_PORT)]),
            }]),
            egress: runner_egress,
        },
    )
}

/// Ollama's egress: DNS, and public addresses on the model-pull ports while a pull is wanted.
fn ollama_egress(lw: &LearningWorker, ctx: &RenderContext) -> Vec<NetworkPolicyEgressRule> {
    let mut egress = vec![dns(lw)];
    if pull_egress_open(lw, ctx) {
        egress.push(NetworkPolicyEgressRule {
            to: Some(vec![NetworkPolicyPeer {
                ip_block: Some(IPBlock {
                    cidr: "0.0.0.0/0".into(),
                    except: Some(PRIVATE_RANGES.iter().map(|r| r.to_string()).collect()),
                }),
                ..NetworkPolicyPeer::default()
            }]),
            ports: Some(
                lw.spec
                    .network
                    .model_pull_ports
                    .iter()
                    .map(|p| tcp(*p))
                    .collect(),
            ),
        });
    }
    egress
}

/// Ollama accepts its API port from this worker's runners and pull pods and the operator.
fn ollama_policy(lw: &LearningWorker, ctx: &RenderContext) -> NetworkPolicy {
    let worker = lw.metadata.name.clone().unwrap_or_default();
    policy(
        lw,
        names::ollama(&worker),
        ollama::COMPONENT,
        NetworkPolicySpec {
            pod_selector: Some(select(selector_labels(&worker, ollama::COMPONENT))),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![
                    pods(&worker, runner::COMPONENT),
                    pods(&worker, ollama::PULL_COMPONENT),
                    operator_pods(&ctx.operator_namespace),
                ]),
                ports: Some(vec![tcp(OLLAMA_PORT)]),
            }]),
            egress: Some(ollama_egress(lw, ctx)),
        },
    )
}

/// The model-pull pods accept nothing and reach only DNS and this worker's Ollama.
fn model_pull_policy(lw: &LearningWorker) -> NetworkPolicy {
    let worker = lw.metadata.name.clone().unwrap_or_default();
    policy(
        lw,
        names::model_pull_policy(&worker),
        ollama::PULL_COMPONENT,
        NetworkPolicySpec {
            pod_selector: Some(select(selector_labels(&worker, ollama::PULL_COMPONENT))),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(Vec::new()),
            egress: Some(vec![
                dns(lw),
                NetworkPolicyEgressRule {
                    to: Some(vec![pods(&worker, ollama::COMPONENT)]),
                    ports: Some(vec![tcp(OLLAMA_PORT)]),
                },
            ]),
        },
    )
}

#[cfg(test)]
mod tests;
