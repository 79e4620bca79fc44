//! NetworkPolicies: Ollama accepts only this worker's runners, its model-pull pods and the
//! operator, and reaches nothing but DNS and — only while a pull is wanted, when allowed —
//! public addresses on the model-pull ports; the pull pods reach only DNS and Ollama; runners
//! accept only their HTTP port from the operator and the configured metrics scrapers, and, when
//! `runnerEgress` opts in, reach only DNS, this worker's Ollama and the configured peers. Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use learning_crds::learning_worker::EgressTarget;
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

/// The runners' egress when `runnerEgress` opts in: DNS, this worker's managed Ollama, the
/// database, Supabase and the other configured peers.
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
    rules.push(egress_to(&e.database));
    rules.extend(e.supabase.iter().map(egress_to));
    rules.extend(e.others.iter().map(egress_to));
    Some(rules)
}

/// Every NetworkPolicy of the worker.
pub fn policies(lw: &LearningWorker, ctx: &RenderContext) -> Vec<NetworkPolicy> {
    let operator_namespace = ctx.operator_namespace.as_str();
    let worker = lw.metadata.name.clone().unwrap_or_default();
    let mut runner_from = vec![operator_pods(operator_namespace)];
    runner_from.extend(lw.spec.network.metrics_from.iter().cloned());
    let runner_egress = runner_egress(lw);
    let mut out = vec![policy(
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
    )];
    if !lw.spec.manages_ollama() {
        return out;
    }
    let mut ollama_egress = vec![dns(lw)];
    if pull_egress_open(lw, ctx) {
        ollama_egress.push(NetworkPolicyEgressRule {
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
                dns(lw),
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
        let list = policies(&example("amd-gpu.yaml"), &ctx("learning-system"));
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

    fn ctx(operator_namespace: &str) -> RenderContext {
        RenderContext {
            operator_namespace: operator_namespace.into(),
            ..RenderContext::default()
        }
    }

    fn pulling(models: &[&str]) -> RenderContext {
        RenderContext {
            models_to_pull: Some(models.iter().map(|m| (*m).to_owned()).collect()),
            ..ctx("ops")
        }
    }

    fn ollama_egress(lw: &LearningWorker, ctx: &RenderContext) -> Vec<NetworkPolicyEgressRule> {
        by_name(
            &policies(lw, ctx),
            &names::ollama(lw.metadata.name.as_deref().unwrap()),
        )
        .egress
        .clone()
        .unwrap()
    }

    fn ports(rule: &NetworkPolicyEgressRule) -> Vec<IntOrString> {
        rule.ports
            .iter()
            .flatten()
            .filter_map(|p| p.port.clone())
            .collect()
    }

    #[test]
    fn ollama_reaches_public_https_only_while_a_pull_is_wanted() {
        let mut lw = example("amd-gpu.yaml");
        // Nothing missing (or not known yet), no pull running: DNS only.
        assert_eq!(ollama_egress(&lw, &ctx("ops")).len(), 1, "DNS only");
        // Models missing: public HTTPS, private, CGNAT, link-local and loopback excluded.
        let egress = ollama_egress(&lw, &pulling(&["gpt-oss:20b"]));
        assert_eq!(egress.len(), 2);
        let block = egress[1].to.as_ref().unwrap()[0].ip_block.as_ref().unwrap();
        assert_eq!(block.cidr, "0.0.0.0/0");
        for excluded in [
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "100.64.0.0/10",
            "169.254.0.0/16",
            "127.0.0.0/8",
        ] {
            assert!(
                block.except.as_ref().unwrap().iter().any(|e| e == excluded),
                "{excluded}"
            );
        }
        assert_eq!(
            ports(&egress[1]),
            [IntOrString::Int(443)],
            "no port 80 by default"
        );
        // A pull Job still running (the missing list may be unknown meanwhile): open.
        let running = RenderContext {
            pull_active: true,
            ..ctx("ops")
        };
        assert_eq!(ollama_egress(&lw, &running).len(), 2);
        // Port 80 only when configured.
        lw.spec.network.model_pull_ports = vec![443, 80];
        assert_eq!(
            ports(&ollama_egress(&lw, &pulling(&["x"]))[1]),
            [IntOrString::Int(443), IntOrString::Int(80)]
        );
        // Pulls not allowed, or no pull step: DNS only even with models missing.
        lw.spec.network.allow_model_pulls = false;
        assert_eq!(ollama_egress(&lw, &pulling(&["x"])).len(), 1);
        lw.spec.network.allow_model_pulls = true;
        lw.spec.ollama.pull_models = false;
        assert_eq!(ollama_egress(&lw, &pulling(&["x"])).len(), 1);
        assert_eq!(
            ollama_egress(&lw, &ctx("ops"))[0].ports.as_ref().unwrap()[0].port,
            Some(IntOrString::Int(53))
        );
    }

    #[test]
    fn dns_is_allowed_to_pods_and_to_the_configured_blocks() {
        let mut lw = example("amd-gpu.yaml");
        let blocks = |lw: &LearningWorker| -> Vec<String> {
            let dns = &ollama_egress(lw, &ctx("ops"))[0];
            assert!(dns.to.as_ref().unwrap()[0].namespace_selector.is_some());
            dns.to
                .as_ref()
                .unwrap()
                .iter()
                .filter_map(|p| p.ip_block.as_ref().map(|b| b.cidr.clone()))
                .collect()
        };
        assert_eq!(
            blocks(&lw),
            ["169.254.20.10/32"],
            "NodeLocal DNSCache by default"
        );
        lw.spec.network.dns_cidrs = vec!["10.96.0.10/32".into(), "169.254.20.10/32".into()];
        assert_eq!(blocks(&lw), ["10.96.0.10/32", "169.254.20.10/32"]);
        lw.spec.network.dns_cidrs.clear();
        assert!(blocks(&lw).is_empty());
    }

    #[test]
    fn runner_egress_is_opt_in_and_then_reaches_only_dns_ollama_and_the_given_peers() {
        use learning_crds::learning_worker::RunnerEgress;
        let mut lw = example("amd-gpu.yaml");
        let runner =
            |lw: &LearningWorker| by_name(&policies(lw, &ctx("ops")), "school-a-runner").clone();
        let open = runner(&lw);
        assert_eq!(open.policy_types.as_ref().unwrap(), &["Ingress"]);
        assert!(open.egress.is_none(), "not restricted unless asked");

        let peer = |cidr: &str| NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: cidr.into(),
                except: None,
            }),
            ..NetworkPolicyPeer::default()
        };
        lw.spec.network.runner_egress = Some(RunnerEgress {
            database: EgressTarget {
                to: vec![peer("10.0.5.0/24")],
                ports: vec![5432],
            },
            supabase: Some(EgressTarget {
                to: vec![peer("10.0.6.0/24")],
                ports: vec![8000],
            }),
            others: Vec::new(),
        });
        let closed = runner(&lw);
        assert_eq!(
            closed.policy_types.as_ref().unwrap(),
            &["Ingress", "Egress"]
        );
        let egress = closed.egress.unwrap();
        assert_eq!(egress.len(), 4, "{egress:#?}");
        assert_eq!(
            egress[0].ports.as_ref().unwrap()[0].port,
            Some(IntOrString::Int(53))
        );
        assert_eq!(components(egress[1].to.as_ref().unwrap()), ["ollama"]);
        assert_eq!(ports(&egress[1]), [IntOrString::Int(11434)]);
        assert_eq!(ports(&egress[2]), [IntOrString::Int(5432)]);
        assert_eq!(ports(&egress[3]), [IntOrString::Int(8000)]);

        // External Ollama: no managed Ollama to allow (add its pods under `others`).
        let mut external = example("external-ollama.yaml");
        external.spec.network.runner_egress = lw.spec.network.runner_egress.clone();
        let egress = by_name(&policies(&external, &ctx("ops")), "school-d-runner")
            .egress
            .clone()
            .unwrap();
        assert!(egress.iter().all(|r| ports(r) != [IntOrString::Int(11434)]));
    }

    #[test]
    fn runners_admit_the_operator_and_metrics_scrapers_on_their_port_only() {
        let list = policies(&example("autoscaling.yaml"), &ctx("ops"));
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
        let list = policies(&example("external-ollama.yaml"), &ctx("ops"));
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].metadata.name.as_deref(), Some("school-d-runner"));
    }
}
