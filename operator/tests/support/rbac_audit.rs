//! The RBAC audit: every request the operator makes is mapped to (verb, group, resource) the
//! way kube-apiserver's authorizer sees it, and checked against the rules the operator
//! declares (`learning_operator::rbac::RULES`, printed by `learning-operator rbac`). The fake
//! API server enforces the same check (403), so an undeclared request also breaks the loop.

use std::collections::BTreeSet;

use learning_operator::rbac::RequestAttributes;

use super::fake_apiserver::Authorizer;

/// The operator's namespace in the tests (the Lease lives there).
pub const OPERATOR_NAMESPACE: &str = "learning-system";

/// An authorizer granting exactly the declared rules.
pub fn authorizer() -> Authorizer {
    Box::new(|a: &RequestAttributes| a.granted_by(OPERATOR_NAMESPACE).is_some())
}

/// Splits `path?query`.
fn split(uri: &str) -> (&str, Option<&str>) {
    match uri.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (uri, None),
    }
}

/// (verb, group, resource) of every request, given as (method, `path?query`).
pub fn used<'a>(
    requests: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> BTreeSet<(String, String, String)> {
    requests
        .into_iter()
        .map(|(method, uri)| {
            let (path, query) = split(uri);
            let a = RequestAttributes::parse(method, path, query)
                .unwrap_or_else(|| panic!("{method} {uri} is not a resource request"));
            (a.verb, a.api_group, a.resource)
        })
        .collect()
}

/// Panics with the list of requests the declared RBAC does not grant. Returns how many
/// requests were checked (so callers can assert the audit saw something).
pub fn assert_declared<'a>(requests: impl IntoIterator<Item = (&'a str, &'a str)>) -> usize {
    let mut checked = 0;
    let mut missing = BTreeSet::new();
    for (method, uri) in requests {
        checked += 1;
        let (path, query) = split(uri);
        match RequestAttributes::parse(method, path, query) {
            Some(a) if a.granted_by(OPERATOR_NAMESPACE).is_some() => {}
            Some(a) => {
                missing.insert(format!(
                    "{} {}/{} in {:?} ({method} {uri})",
                    a.verb, a.api_group, a.resource, a.namespace
                ));
            }
            None => {
                missing.insert(format!("not a resource request: {method} {uri}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "requests not covered by learning_operator::rbac::RULES (add them there, least privilege):\n{}",
        missing.into_iter().collect::<Vec<_>>().join("\n")
    );
    checked
}
