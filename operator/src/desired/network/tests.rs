//! Tests of the NetworkPolicies: who may reach Ollama and the runners, and when Ollama may
//! reach public addresses.

use super::super::fixtures::example;
use super::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// The one peer the runners of `lw` (`school-d`) may reach on `port`.
fn only_peer_on_port(lw: &LearningWorker, port: i32) -> NetworkPolicyPeer {
    let egress = by_name(&policies(lw, &ctx("ops")), "school-d-runner")
        .egress
        .clone()
        .unwrap();
    let on_port: Vec<_> = egress
        .iter()
        .filter(|r| ports(r) == [IntOrString::Int(port)])
        .collect();
    assert_eq!(on_port.len(), 1, "{egress:#?}");
    on_port[0].to.as_ref().unwrap()[0].clone()
}

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

    // External Ollama in this namespace (`http://ollama:11434`): any pod here on its port.
    let mut external = example("external-ollama.yaml");
    external.spec.network.runner_egress = lw.spec.network.runner_egress.clone();
    let peer = only_peer_on_port(&external, 11434);
    assert_eq!(peer.pod_selector, Some(LabelSelector::default()));
    assert_eq!(peer.namespace_selector, None, "this namespace only");

    // Shared in another namespace, on https's default port: that namespace, by its name label.
    external.spec.ollama.url = Some("https://ollama.AI-Shared.svc.cluster.local".into());
    let peer = only_peer_on_port(&external, 443);
    let labels = peer
        .namespace_selector
        .as_ref()
        .unwrap()
        .match_labels
        .as_ref();
    assert_eq!(
        labels
            .unwrap()
            .get("kubernetes.io/metadata.name")
            .map(String::as_str),
        Some("ai-shared")
    );
    assert_eq!(peer.pod_selector, None);

    // Without runnerEgress the runners' egress stays open: nothing to add.
    external.spec.network.runner_egress = None;
    let runner = by_name(&policies(&external, &ctx("ops")), "school-d-runner").clone();
    assert_eq!(runner.egress, None);
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
