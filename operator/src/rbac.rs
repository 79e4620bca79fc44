//! The RBAC the operator needs, as code: every (API group, resource, verbs) it uses, least
//! privilege, no wildcards. `learning-operator rbac` prints these as the `rules:` of the Helm
//! chart's ClusterRole (and, with `--leader-election`, of the Role in the operator's namespace);
//! the tests map every request the controller makes to a rule (`RequestAttributes`) and fail
//! when one is not declared here.

use k8s_openapi::api::rbac::v1::PolicyRule;

/// Where a rule must be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every watched namespace: a ClusterRole (or a Role per namespace with `WATCH_NAMESPACE`).
    Watched,
    /// Only the operator's own namespace (`OPERATOR_NAMESPACE`): a Role.
    OperatorNamespace,
    /// Every watched namespace, but only when KEDA is used (the chart's `keda.enabled`, `rbac
    /// --keda`): without it, a worker with engine `keda` reports `AutoscalerUnavailable`.
    Keda,
}

/// One permission the operator needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// API group (`""` is the core group).
    pub api_group: &'static str,
    /// Resources (a subresource as `resource/subresource`).
    pub resources: &'static [&'static str],
    /// Verbs.
    pub verbs: &'static [&'static str],
    /// Where it is granted.
    pub scope: Scope,
    /// What the operator does with it.
    pub why: &'static str,
}

/// Verbs on every child kind (`desired::ChildKind`): watched by `owns()`, listed and deleted
/// by pruning, written by server-side apply (a `patch`, which also creates). The tests check
/// every kind of `ChildKind::ALL` against the rules.
const CHILD_VERBS: &[&str] = &["list", "watch", "patch", "delete"];

/// Everything the operator needs. Kept sorted by scope (the KEDA rules, granted only when
/// KEDA is used, before the Lease), then group.
pub const RULES: &[Rule] = &[
    Rule {
        api_group: "learning.gustav.dev",
        resources: &["learningworkers"],
        verbs: &["list", "watch"],
        scope: Scope::Watched,
        why: "the watched resource (the controller reads it from its watch cache)",
    },
    Rule {
        api_group: "learning.gustav.dev",
        resources: &["learningworkers/status"],
        verbs: &["patch"],
        scope: Scope::Watched,
        why: "the status, written with server-side apply",
    },
    Rule {
        api_group: "",
        resources: &["persistentvolumeclaims"],
        verbs: &["list", "watch", "patch"],
        scope: Scope::Watched,
        why: "children: Ollama's model volume (its size and class, read from the watch cache, never shrink or change; never deleted: pruning keeps it)",
    },
    Rule {
        api_group: "",
        resources: &["serviceaccounts", "services"],
        verbs: CHILD_VERBS,
        scope: Scope::Watched,
        why: "children: the runner ServiceAccount, the Services",
    },
    Rule {
        api_group: "",
        resources: &["pods"],
        verbs: &["list", "watch"],
        scope: Scope::Watched,
        why: "pod-level causes (Unschedulable, ImagePullBackOff, CrashLoopBackOff, OOMKilled), from a watch cache of the operator's pods",
    },
    Rule {
        api_group: "apps",
        resources: &["deployments"],
        verbs: CHILD_VERBS,
        scope: Scope::Watched,
        why: "children: runner and Ollama Deployments (their replica counts from the watch cache)",
    },
    Rule {
        api_group: "batch",
        resources: &["jobs"],
        verbs: CHILD_VERBS,
        scope: Scope::Watched,
        why: "children: the model-pull Job",
    },
    Rule {
        api_group: "policy",
        resources: &["poddisruptionbudgets"],
        verbs: CHILD_VERBS,
        scope: Scope::Watched,
        why: "children: the runner PodDisruptionBudget",
    },
    Rule {
        api_group: "networking.k8s.io",
        resources: &["networkpolicies"],
        verbs: CHILD_VERBS,
        scope: Scope::Watched,
        why: "children: the NetworkPolicies",
    },
    Rule {
        api_group: "events.k8s.io",
        resources: &["events"],
        verbs: &["create", "patch"],
        scope: Scope::Watched,
        why: "an Event per condition transition (patch: a repeated Event's series count)",
    },
    Rule {
        api_group: "keda.sh",
        resources: &["scaledobjects", "triggerauthentications"],
        verbs: &["patch", "delete"],
        scope: Scope::Keda,
        why: "autoscaling engine keda: the runners' ScaledObject and its TriggerAuthentication (server-side apply; deleted when the engine changes)",
    },
    Rule {
        api_group: "coordination.k8s.io",
        resources: &["leases"],
        verbs: &["get", "create", "update"],
        scope: Scope::OperatorNamespace,
        why: "leader election",
    },
];

/// The rules of `scope` as Kubernetes `PolicyRule`s, in declaration order.
pub fn policy_rules(scope: Scope) -> Vec<PolicyRule> {
    RULES
        .iter()
        .filter(|r| r.scope == scope)
        .map(|r| PolicyRule {
            api_groups: Some(vec![r.api_group.to_owned()]),
            resources: Some(r.resources.iter().map(|s| (*s).to_owned()).collect()),
            verbs: r.verbs.iter().map(|s| (*s).to_owned()).collect(),
            ..PolicyRule::default()
        })
        .collect()
}

/// The rules of `scope` as a YAML list (the value of a ClusterRole's or Role's `rules:`).
pub fn rules_yaml(scope: Scope) -> Result<String, serde_yaml_ng::Error> {
    serde_yaml_ng::to_string(&policy_rules(scope))
}

/// What the API server's authorizer sees of a request: verb, group, resource, namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestAttributes {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: String,
    /// API group (`""` is core).
    pub api_group: String,
    /// Resource, with `/subresource` when there is one.
    pub resource: String,
    /// Namespace, for namespaced requests.
    pub namespace: Option<String>,
    /// Object name, for requests on one object.
    pub name: Option<String>,
}

impl RequestAttributes {
    /// Resolves a resource request the way kube-apiserver does (method, path, `watch` query);
    /// `None` for paths that are not resource requests (discovery, `/version`, …).
    pub fn parse(method: &str, path: &str, query: Option<&str>) -> Option<Self> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (api_group, rest) = match parts.as_slice() {
            ["api", "v1", rest @ ..] => ("", rest),
            ["apis", group, _version, rest @ ..] => (*group, rest),
            _ => return None,
        };
        let (namespace, rest) = match rest {
            ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
            _ => (None, rest),
        };
        let (resource, name) = match rest {
            [resource] => ((*resource).to_owned(), None),
            [resource, name] => ((*resource).to_owned(), Some((*name).to_owned())),
            [resource, name, sub] => (format!("{resource}/{sub}"), Some((*name).to_owned())),
            _ => return None,
        };
        let watch = query.is_some_and(|q| {
            q.split('&')
                .any(|kv| matches!(kv, "watch=true" | "watch=1" | "watch=True"))
        });
        let verb = match (method, name.is_some()) {
            ("GET", true) => "get",
            ("GET", false) if watch => "watch",
            ("GET", false) => "list",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", true) => "delete",
            ("DELETE", false) => "deletecollection",
            _ => return None,
        };
        Some(RequestAttributes {
            verb: verb.to_owned(),
            api_group: api_group.to_owned(),
            resource,
            namespace,
            name,
        })
    }

    /// The rule that grants this request, if any. Rules scoped to the operator's namespace
    /// grant only requests in `operator_namespace`.
    pub fn granted_by(&self, operator_namespace: &str) -> Option<&'static Rule> {
        RULES.iter().find(|r| {
            r.api_group == self.api_group
                && r.resources.contains(&self.resource.as_str())
                && r.verbs.contains(&self.verb.as_str())
                && match r.scope {
                    Scope::Watched | Scope::Keda => true,
                    Scope::OperatorNamespace => {
                        self.namespace.as_deref() == Some(operator_namespace)
                    }
                }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::kinds::{ChildObject, KindVisitor};
    use crate::desired::ChildKind;
    use crate::prune;

    /// The API group and resource of a child kind.
    struct GroupAndResource;

    impl KindVisitor for GroupAndResource {
        type Output = (&'static str, &'static str);
        fn visit<K: ChildObject>(self, _kind: ChildKind) -> Self::Output {
            (
                <K as k8s_openapi::Resource>::GROUP,
                <K as k8s_openapi::Resource>::URL_PATH_SEGMENT,
            )
        }
    }

    #[test]
    fn every_child_kind_is_granted_what_the_operator_does_with_it() {
        for kind in ChildKind::ALL {
            let (group, resource) = kind.visit(GroupAndResource);
            // Watched by `owns()` and written by server-side apply; pruned kinds are listed
            // and deleted too (list also feeds the watch).
            let mut verbs = vec!["list", "watch", "patch"];
            if prune::is_pruned(*kind) {
                verbs.push("delete");
            }
            for verb in verbs {
                let request = RequestAttributes {
                    verb: verb.into(),
                    api_group: group.into(),
                    resource: resource.into(),
                    namespace: Some("gustav".into()),
                    name: None,
                };
                assert!(
                    request.granted_by("learning-system").is_some(),
                    "{verb} {group}/{resource} is not granted"
                );
            }
        }
    }

    #[test]
    fn child_verbs_are_granted_on_child_kinds_only() {
        let children: Vec<(&str, &str)> = ChildKind::ALL
            .iter()
            .map(|kind| kind.visit(GroupAndResource))
            .collect();
        for rule in RULES.iter().filter(|r| r.verbs == CHILD_VERBS) {
            for resource in rule.resources {
                assert!(
                    children.contains(&(rule.api_group, *resource)),
                    "{}/{resource} is no child kind",
                    rule.api_group
                );
            }
        }
    }

    fn attrs(method: &str, path: &str, query: Option<&str>) -> (String, String, String) {
        let a = RequestAttributes::parse(method, path, query).unwrap();
        (a.verb, a.api_group, a.resource)
    }

    fn t(verb: &str, group: &str, resource: &str) -> (String, String, String) {
        (verb.into(), group.into(), resource.into())
    }

    #[test]
    fn requests_resolve_to_verb_group_and_resource() {
        let cases = [
            (
                ("GET", "/apis/apps/v1/namespaces/gustav/deployments/x", None),
                t("get", "apps", "deployments"),
            ),
            (
                (
                    "GET",
                    "/apis/apps/v1/deployments",
                    Some("labelSelector=a%3Db"),
                ),
                t("list", "apps", "deployments"),
            ),
            (
                (
                    "GET",
                    "/apis/apps/v1/deployments",
                    Some("watch=true&resourceVersion=5"),
                ),
                t("watch", "apps", "deployments"),
            ),
            (
                ("GET", "/api/v1/namespaces/gustav/pods", None),
                t("list", "", "pods"),
            ),
            (
                (
                    "PATCH",
                    "/apis/learning.gustav.dev/v1alpha1/namespaces/gustav/learningworkers/a/status",
                    Some("fieldManager=x"),
                ),
                t("patch", "learning.gustav.dev", "learningworkers/status"),
            ),
            (
                (
                    "POST",
                    "/apis/events.k8s.io/v1/namespaces/gustav/events",
                    None,
                ),
                t("create", "events.k8s.io", "events"),
            ),
            (
                (
                    "PUT",
                    "/apis/coordination.k8s.io/v1/namespaces/ops/leases/l",
                    None,
                ),
                t("update", "coordination.k8s.io", "leases"),
            ),
            (
                ("DELETE", "/apis/batch/v1/namespaces/gustav/jobs/j", None),
                t("delete", "batch", "jobs"),
            ),
            (
                ("DELETE", "/apis/batch/v1/namespaces/gustav/jobs", None),
                t("deletecollection", "batch", "jobs"),
            ),
            (
                ("GET", "/api/v1/namespaces/gustav", None),
                t("get", "", "namespaces"),
            ),
        ];
        for ((method, path, query), expect) in cases {
            assert_eq!(attrs(method, path, query), expect, "{method} {path}");
        }
        assert_eq!(RequestAttributes::parse("GET", "/version", None), None);
        assert_eq!(RequestAttributes::parse("GET", "/apis", None), None);
    }

    #[test]
    fn leases_are_granted_only_in_the_operator_namespace() {
        let lease = |ns: &str| {
            RequestAttributes::parse(
                "PUT",
                &format!("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/l"),
                None,
            )
            .unwrap()
        };
        assert!(lease("learning-system")
            .granted_by("learning-system")
            .is_some());
        assert!(lease("gustav").granted_by("learning-system").is_none());
        let secret =
            RequestAttributes::parse("GET", "/api/v1/namespaces/gustav/secrets/s", None).unwrap();
        assert!(
            secret.granted_by("learning-system").is_none(),
            "the operator never reads Secrets"
        );
    }

    #[test]
    fn rules_have_no_wildcards_and_no_duplicates() {
        let mut seen = std::collections::BTreeSet::new();
        for r in RULES {
            assert!(!r.api_group.contains('*'));
            for res in r.resources {
                assert!(!res.contains('*') && !res.is_empty(), "{res}");
                for v in r.verbs {
                    assert!(!v.contains('*'));
                    assert!(
                        seen.insert((r.api_group, *res, *v)),
                        "{}/{res} {v} declared twice",
                        r.api_group
                    );
                }
            }
            assert!(!r.why.is_empty());
        }
    }

    #[test]
    fn yaml_is_a_list_of_policy_rules() {
        let yaml = rules_yaml(Scope::Watched).unwrap();
        let parsed: Vec<PolicyRule> = serde_yaml_ng::from_str(&yaml).unwrap();
        assert_eq!(parsed, policy_rules(Scope::Watched));
        assert_eq!(parsed.len(), RULES.len() - 2);
        let keda: Vec<PolicyRule> =
            serde_yaml_ng::from_str(&rules_yaml(Scope::Keda).unwrap()).unwrap();
        assert_eq!(keda.len(), 1);
        assert_eq!(
            keda[0].api_groups.as_deref(),
            Some(&["keda.sh".to_owned()][..])
        );
        assert!(
            yaml.starts_with("- apiGroups:\n  - learning.gustav.dev\n"),
            "{yaml}"
        );
        let lease: Vec<PolicyRule> =
            serde_yaml_ng::from_str(&rules_yaml(Scope::OperatorNamespace).unwrap()).unwrap();
        assert_eq!(lease.len(), 1);
        assert_eq!(
            lease[0].resources.as_deref(),
            Some(&["leases".to_owned()][..])
        );
    }
}
