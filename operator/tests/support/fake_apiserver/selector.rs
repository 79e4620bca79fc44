//! Label selectors as the API server parses them: equality (`k=v`, `k==v`, `k!=v`), existence
//! (`k`, `!k`) and sets (`k in (a,b)`, `k notin (a,b)`), comma-separated, all must match.

use std::collections::BTreeMap;

use serde_json::Value;

/// One requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(Vec<Requirement>);

/// Splits at commas outside parentheses.
fn terms(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, ch) in s.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn set_values(s: &str) -> Result<Vec<String>, String> {
    let inner = s
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("set must be parenthesised: {s}"))?;
    Ok(inner.split(',').map(|v| v.trim().to_owned()).collect())
}

fn valid_key(k: &str) -> Result<String, String> {
    let k = k.trim();
    if k.is_empty() || k.contains(char::is_whitespace) {
        return Err(format!("invalid label key {k:?}"));
    }
    Ok(k.to_owned())
}

impl Selector {
    /// Parses a `labelSelector` query value.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(Selector(reqs));
        }
        for term in terms(s) {
            let term = term.trim();
            let req = if let Some((k, v)) = term.split_once(" notin ") {
                Requirement::NotIn(valid_key(k)?, set_values(v)?)
            } else if let Some((k, v)) = term.split_once(" in ") {
                Requirement::In(valid_key(k)?, set_values(v)?)
            } else if let Some((k, v)) = term.split_once("!=") {
                Requirement::NotEq(valid_key(k)?, v.trim().to_owned())
            } else if let Some((k, v)) = term.split_once("==") {
                Requirement::Eq(valid_key(k)?, v.trim().to_owned())
            } else if let Some((k, v)) = term.split_once('=') {
                Requirement::Eq(valid_key(k)?, v.trim().to_owned())
            } else if let Some(k) = term.strip_prefix('!') {
                Requirement::NotExists(valid_key(k)?)
            } else {
                Requirement::Exists(valid_key(term)?)
            };
            reqs.push(req);
        }
        Ok(Selector(reqs))
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Eq(k, v) => labels.get(k) == Some(v),
            Requirement::NotEq(k, v) => labels.get(k) != Some(v),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
        })
    }

    /// Whether the object's `metadata.labels` satisfy the selector.
    pub fn matches_object(&self, obj: &Value) -> bool {
        let labels: BTreeMap<String, String> = obj["metadata"]["labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        self.matches(&labels)
    }
}
