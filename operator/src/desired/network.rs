//! NetworkPolicies: Ollama accepts only this worker's runners, its model-pull pods and the
//! operator, and reaches nothing but DNS and (when allowed) public HTTPS/HTTP for model pulls;
//! the pull pods reach only DNS and Ollama; runners accept only their HTTP port from the
//! operator and the configured metrics scrapers. Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use learning_crds::LearningWorker;

use super::{child_meta, names, ollama, runner, selector_labels, OLLAMA_PORT, RUNNER_PORT};

/// The label the operator's own pods carry (the Helm chart must set it).
pub const OPERATOR_POD_LABEL: (&str, &str) = ("app.kubernetes.io/name", "learning-operator");
/// Private ranges excluded from the model-pull egress (pulls go to the public registry).
pub const PRIVATE_RANGES: [&str; 3] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];

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

/// DNS to any namespace (cluster DNS lives in kube-system on most clusters, not all).
fn dns() -> NetworkPolicyEgressRule {
    NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector::default()),
            ..NetworkPolicyPeer::default()
        }]),
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

/// Every NetworkPolicy of the worker.
pub fn policies(lw: &LearningWorker, operator_namespace: &str) -> Vec<NetworkPolicy> {
    let worker = lw.metadata.name.clone().unwrap_or_default();
    let mut runner_from = vec![operator_pods(operator_namespace)];
    runner_from.extend(lw.spec.network.metrics_from.iter().cloned());
    let mut out = vec![policy(
        lw,
        names::runner(&worker),
        runner::COMPONENT,
        NetworkPolicySpec {
            pod_selector: Some(select(selector_labels(&worker, runner::COMPONENT))),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(runner_from),
                ports: Some(vec![tcp(RUNNER_PORT)]),
            }]),
            egress: None,
        },
    )];
    if !lw.spec.manages_ollama() {
        return out;
    }
    let mut ollama_egress = vec![dns()];
    if lw.spec.network.allow_model_pulls {
        ollama_egress.push(NetworkPolicyEgressRule {
            to: Some(vec![NetworkPolicyPeer {
                ip_block: Some(IPBlock {
                    cidr: "0.0.0.0/0".into(),
                    except: Some(PRIVATE_RANGES.iter().map(|r| r.to_string()).collect()),
                }),
                ..NetworkPolicyPeer::default()
            }]),
            ports: Some(vec![tcp(443), tcp(80)]),
        });
    }
    out.push(policy(
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
                    operator_pods(operator_namespace),
                ]),
                ports: Some(vec![tcp(OLLAMA_PORT)]),
            }]),
            egress: Some(ollama_egress),
        },
    ));
    out.push(policy(
        lw,
        names::model_pull_policy(&worker),
        ollama::PULL_COMPONENT,
        NetworkPolicySpec {
            pod_selector: Some(select(selector_labels(&worker, ollama::PULL_COMPONENT))),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(Vec::new()),
            egress: Some(vec![
                dns(),
                NetworkPolicyEgressRule {
                    to: Some(vec![pods(&worker, ollama::COMPONENT)]),
                    ports: Some(vec![tcp(OLLAMA_PORT)]),
                },
            ]),
        },
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::example;
    use super::*;

    fn by_name<'a>(list: &'a [NetworkPolicy], name: &str) -> &'a NetworkPolicySpec {
        list.iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .unwrap()
            .spec
            .as_ref()
            .unwrap()
    }

    fn components(peers: &[NetworkPolicyPeer]) -> Vec<String> {
        peers
            .iter()
            .filter_map(|p| {
                p.pod_selector
                    .as_ref()?
                    .match_labels
                    .as_ref()?
                    .get(super::super::COMPONENT)
                    .cloned()
            })
            .collect()
    }

    #[test]
    fn ollama_admits_only_this_workers_runners_pull_pods_and_the_operator() {
        let list = policies(&example("amd-gpu.yaml"), "learning-system");
        assert_eq!(list.len(), 3);
        let o = by_name(&list, "school-a-ollama");
        let rule = &o.ingress.as_ref().unwrap()[0];
        let from = rule.from.as_ref().unwrap();
        assert_eq!(components(from), ["runner", "model-pull"]);
        for peer in &from[..2] {
            let labels = peer
                .pod_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap();
            assert_eq!(labels["app.kubernetes.io/instance"], "school-a");
            assert!(peer.namespace_selector.is_none(), "same namespace only");
        }
        let op = &from[2];
        assert_eq!(
            op.namespace_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap()["kubernetes.io/metadata.name"],
            "learning-system"
        );
        assert_eq!(
            rule.ports.as_ref().unwrap()[0].port,
            Some(IntOrString::Int(11434))
        );
    }

    #[test]
    fn ollama_egress_is_dns_plus_public_pulls_or_dns_only() {
        let mut lw = example("amd-gpu.yaml");
        let list = policies(&lw, "ops");
        let egress = by_name(&list, "school-a-ollama").egress.clone().unwrap();
        assert_eq!(egress.len(), 2);
        let block = egress[1].to.as_ref().unwrap()[0].ip_block.as_ref().unwrap();
        assert_eq!(block.except.as_ref().unwrap().len(), 3);
        lw.spec.network.allow_model_pulls = false;
        let list = policies(&lw, "ops");
        let egress = by_name(&list, "school-a-ollama").egress.clone().unwrap();
        assert_eq!(egress.len(), 1, "DNS only");
        assert_eq!(
            egress[0].ports.as_ref().unwrap()[0].port,
            Some(IntOrString::Int(53))
        );
    }

    #[test]
    fn runners_admit_the_operator_and_metrics_scrapers_on_their_port_only() {
        let list = policies(&example("autoscaling.yaml"), "ops");
        let r = by_name(&list, "school-e-runner");
        assert_eq!(r.policy_types.as_ref().unwrap(), &["Ingress"]);
        let rule = &r.ingress.as_ref().unwrap()[0];
        assert_eq!(rule.from.as_ref().unwrap().len(), 2);
        assert_eq!(
            rule.ports.as_ref().unwrap()[0].port,
            Some(IntOrString::Int(8080))
        );
        let pull = by_name(&list, "school-e-model-pull");
        assert_eq!(
            pull.ingress.as_ref().unwrap().len(),
            0,
            "nothing may call the pull pods"
        );
    }

    #[test]
    fn external_ollama_has_only_the_runner_policy() {
        let list = policies(&example("external-ollama.yaml"), "ops");
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].metadata.name.as_deref(), Some("school-d-runner"));
    }
}
