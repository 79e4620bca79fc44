//! The chart's RBAC against what the operator needs: `learning-operator rbac` (ClusterRole
//! rules) and `learning-operator rbac --leader-election` (the Role for the Lease) print
//! `learning_operator::rbac::rules_yaml`, which this test calls. The operator's own tests map
//! every API request it makes to those rules; this test fails when the chart does not grant
//! one of them, and when it grants anything more (least privilege).

mod chart_support;

use std::collections::BTreeSet;

use chart_support::*;
use learning_operator::rbac::{rules_yaml, Scope};
use serde_yaml_ng::Value;

/// (apiGroup, resource, verb)
type Grant = (String, String, String);

/// Expands a `rules:` list into single grants; panics on wildcards, resourceNames and
/// nonResourceURLs (the chart uses none).
fn grants(rules: &Value, what: &str) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for r in rules
        .as_sequence()
        .unwrap_or_else(|| panic!("{what}: no rules"))
    {
        assert!(
            r["resourceNames"].is_null(),
            "{what}: resourceNames in {r:?}"
        );
        assert!(
            r["nonResourceURLs"].is_null(),
            "{what}: nonResourceURLs in {r:?}"
        );
        let list = |k: &str| -> Vec<String> {
            r[k].as_sequence()
                .unwrap_or_else(|| panic!("{what}: rule without {k}: {r:?}"))
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        for g in list("apiGroups") {
            for res in list("resources") {
                for v in list("verbs") {
                    for s in [&g, &res, &v] {
                        assert!(!s.contains('*'), "{what}: wildcard in {r:?}");
                    }
                    out.insert((g.clone(), res.clone(), v));
                }
            }
        }
    }
    out
}

fn needed(scope: Scope) -> BTreeSet<Grant> {
    let yaml = rules_yaml(scope).expect("learning-operator rbac");
    let rules: Value = serde_yaml_ng::from_str(&yaml).expect("rules YAML");
    let g = grants(&rules, "learning-operator rbac");
    assert!(!g.is_empty());
    g
}

/// What `needed` has that `granted` lacks.
fn missing(needed: &BTreeSet<Grant>, granted: &BTreeSet<Grant>) -> Vec<String> {
    needed
        .difference(granted)
        .map(|(g, r, v)| format!("{v} {}/{r}", if g.is_empty() { "core" } else { g }))
        .collect()
}

fn find<'a>(all: &'a [Value], k: &str, n: &str) -> &'a Value {
    all.iter()
        .find(|d| kind(d) == k && name(d) == n)
        .unwrap_or_else(|| panic!("no {k} {n}"))
}

fn assert_exact(needed: &BTreeSet<Grant>, granted: &BTreeSet<Grant>, what: &str) {
    let lacking = missing(needed, granted);
    assert!(
        lacking.is_empty(),
        "{what}: the operator needs {lacking:?}, which the chart does not grant: add them to \
         charts/learning-worker-operator/templates/rbac.yaml"
    );
    let extra = missing(granted, needed);
    assert!(
        extra.is_empty(),
        "{what}: the chart grants {extra:?}, which the operator does not use (least privilege): \
         remove them from templates/rbac.yaml"
    );
}

#[test]
fn the_comparison_catches_a_missing_and_an_extra_grant() {
    let need = needed(Scope::Watched);
    let mut fewer = need.clone();
    let dropped = fewer.pop_first().unwrap();
    assert_eq!(missing(&need, &fewer).len(), 1, "dropping {dropped:?}");
    let mut more = need.clone();
    more.insert(("".into(), "secrets".into(), "get".into()));
    assert_eq!(missing(&more, &need), vec!["get core/secrets".to_owned()]);
}

#[test]
fn the_cluster_role_grants_exactly_what_the_operator_needs() {
    let all = docs(&render(4, &[]));
    let fullname = format!("{RELEASE}-learning-worker-operator");
    let role = find(&all, "ClusterRole", &fullname);
    let granted = grants(&role["rules"], "ClusterRole");
    assert_exact(&needed(Scope::Watched), &granted, "ClusterRole");
    assert!(
        !granted.iter().any(|(_, r, _)| r == "secrets"),
        "the operator never reads Secrets"
    );
    assert!(
        !granted.iter().any(|(_, r, _)| r == "leases"),
        "Leases only in the operator's namespace"
    );
    let binding = find(&all, "ClusterRoleBinding", &fullname);
    assert_eq!(binding["roleRef"]["kind"].as_str(), Some("ClusterRole"));
    assert_eq!(binding["roleRef"]["name"].as_str(), Some(fullname.as_str()));
    assert_binds_the_operator(&all, binding);
}

fn ha_profile() -> String {
    format!("{}/profiles/ha.yaml", chart_dir().display())
}

/// The Lease Role exists exactly when leader election is on: the `ha` profile (two replicas,
/// `enabled: auto`) and an explicit `enabled: true`; never with the default single replica.
#[test]
fn the_leader_election_role_is_namespaced_exact_and_only_there_when_election_is_on() {
    let n = format!("{RELEASE}-learning-worker-operator-leader-election");
    let ha = ha_profile();
    for args in [
        vec!["-f", ha.as_str()],
        vec!["--set", "leaderElection.enabled=true"],
    ] {
        let all = docs(&render(4, &args));
        let role = find(&all, "Role", &n);
        assert_eq!(role["metadata"]["namespace"].as_str(), Some(NAMESPACE));
        assert_exact(
            &needed(Scope::OperatorNamespace),
            &grants(&role["rules"], "leader Role"),
            &format!("leader-election Role with {args:?}"),
        );
        let binding = find(&all, "RoleBinding", &n);
        assert_eq!(binding["metadata"]["namespace"].as_str(), Some(NAMESPACE));
        assert_eq!(binding["roleRef"]["name"].as_str(), Some(n.as_str()));
        assert_binds_the_operator(&all, binding);
    }
    for args in [vec![], vec!["--set", "leaderElection.enabled=false"]] {
        let all = docs(&render(4, &args));
        let lease_rules: Vec<String> = all
            .iter()
            .filter(|d| matches!(kind(d), "Role" | "RoleBinding" | "ClusterRole"))
            .filter(|d| {
                name(d) == n
                    || serde_yaml_ng::to_string(&d["rules"])
                        .unwrap()
                        .contains("leases")
            })
            .map(|d| format!("{} {}", kind(d), name(d)))
            .collect();
        assert!(
            lease_rules.is_empty(),
            "one replica without leader election needs no Lease rights ({args:?}): {lease_rules:?}"
        );
    }
}

/// The KEDA rules (`learning-operator rbac --keda`) are in the ClusterRole (or the Role of the
/// watched namespace) exactly when `keda.enabled` is set, and nowhere else.
#[test]
fn keda_rights_are_granted_only_with_keda_enabled() {
    let fullname = format!("{RELEASE}-learning-worker-operator");
    let keda = needed(Scope::Keda);
    let mut both = needed(Scope::Watched);
    both.extend(keda.iter().cloned());
    for (args, kind) in [
        (vec!["--set", "keda.enabled=true"], "ClusterRole"),
        (
            vec![
                "--set",
                "keda.enabled=true",
                "--set",
                "watchNamespace=gustav",
            ],
            "Role",
        ),
    ] {
        let all = docs(&render(4, &args));
        let role = find(&all, kind, &fullname);
        assert_exact(&both, &grants(&role["rules"], kind), &format!("{args:?}"));
    }
    let all = docs(&render(4, &[]));
    let granted = grants(
        &find(&all, "ClusterRole", &fullname)["rules"],
        "ClusterRole",
    );
    assert!(
        granted.is_disjoint(&keda),
        "KEDA rights without keda.enabled: {granted:?}"
    );
}

#[test]
fn watching_one_namespace_needs_no_cluster_wide_rights() {
    let all = docs(&render(4, &["--set", "watchNamespace=gustav"]));
    assert!(of_kind(&all, "ClusterRole").is_empty());
    assert!(of_kind(&all, "ClusterRoleBinding").is_empty());
    let fullname = format!("{RELEASE}-learning-worker-operator");
    let role = find(&all, "Role", &fullname);
    assert_eq!(role["metadata"]["namespace"].as_str(), Some("gustav"));
    assert_exact(
        &needed(Scope::Watched),
        &grants(&role["rules"], "Role"),
        "Role in gustav",
    );
    let binding = find(&all, "RoleBinding", &fullname);
    assert_eq!(binding["metadata"]["namespace"].as_str(), Some("gustav"));
    assert_eq!(binding["roleRef"]["kind"].as_str(), Some("Role"));
    assert_binds_the_operator(&all, binding);
}

#[test]
fn rbac_create_false_renders_no_rbac() {
    let all = docs(&render(4, &["--set", "rbac.create=false"]));
    for k in ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"] {
        assert!(of_kind(&all, k).is_empty(), "{k} with rbac.create=false");
    }
}

/// The binding's subject is the ServiceAccount the operator Deployment runs as.
fn assert_binds_the_operator(all: &[Value], binding: &Value) {
    let dep = of_kind(all, "Deployment")[0];
    let sa = dep["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .expect("serviceAccountName");
    let subjects = binding["subjects"].as_sequence().expect("subjects");
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0]["kind"].as_str(), Some("ServiceAccount"));
    assert_eq!(subjects[0]["name"].as_str(), Some(sa));
    assert_eq!(subjects[0]["namespace"].as_str(), Some(NAMESPACE));
    assert!(of_kind(all, "ServiceAccount").iter().any(|s| name(s) == sa));
}
