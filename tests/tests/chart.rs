//! The Helm chart `charts/learning-worker-operator` with the real helm v3 and v4 binaries:
//! `helm lint --strict`, `helm template` of the default values and every values profile
//! through `kubernetes-validate --strict`, bad values refused by `values.schema.json`, the
//! restricted pod security of everything the chart runs, the operator's settings, the CRD
//! copy, and the configuration reference generated from the schema and `values.yaml`.
//!
//! RBAC: chart_rbac.rs. Monitoring: chart_monitoring.rs. deploy/: manifests.rs.

mod chart_support;

use std::collections::BTreeSet;
use std::process::Command;

use chart_support::*;
use clap::CommandFactory;
use serde_yaml_ng::Value;

/// The profiles the README documents; each must exist (more may).
const DOCUMENTED_PROFILES: [&str; 4] = ["gpu-amd", "gpu-nvidia", "cpu", "monitoring"];

fn profile_args(p: &std::path::Path) -> Vec<String> {
    vec!["-f".into(), p.display().to_string()]
}

/// Every values set the tests render: the defaults, KEDA's RBAC on, then each profile.
fn value_sets() -> Vec<(String, Vec<String>)> {
    let mut sets = vec![
        ("default values".to_owned(), Vec::new()),
        (
            "keda.enabled=true".to_owned(),
            vec!["--set".into(), "keda.enabled=true".into()],
        ),
    ];
    for p in profiles() {
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        sets.push((format!("profile {name}"), profile_args(&p)));
    }
    sets
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn documented_profiles_exist() {
    let have: BTreeSet<String> = profiles()
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    for p in DOCUMENTED_PROFILES {
        assert!(
            have.contains(p),
            "profiles/{p}.yaml is missing (have {have:?})"
        );
    }
}

#[test]
fn helm_lint_strict_passes_with_helm_v3_and_v4() {
    for major in [3, 4] {
        for (what, args) in value_sets() {
            let out = run(
                Command::new(helm(major))
                    .args(["lint", "--strict"])
                    .arg(chart_dir())
                    .args(&args),
                "run `make deps`",
            );
            let t = text(&out);
            assert!(
                out.status.success() && t.contains("0 chart(s) failed"),
                "helm v{major} lint --strict with {what} failed:\n{t}"
            );
            assert!(
                !t.contains("[WARNING]"),
                "helm v{major} lint warns ({what}):\n{t}"
            );
        }
    }
}

#[test]
fn helm_v3_and_v4_render_the_same_objects() {
    for (what, args) in value_sets() {
        let mut a = strs(&args);
        a.push("--include-crds");
        assert_eq!(
            render(3, &a),
            render(4, &a),
            "helm v3 and v4 differ for {what}"
        );
    }
}

#[test]
fn default_values_and_every_profile_pass_kubernetes_validate_strict() {
    let dir = TempDir::new("chart-validate");
    for (i, (what, args)) in value_sets().into_iter().enumerate() {
        let mut a = strs(&args);
        a.push("--include-crds");
        let rendered = render(4, &a);
        let all = docs(&rendered);
        // CRD, ServiceAccount, ClusterRole(Binding) or Role(Binding), Service, Deployment at
        // least (the leader-election Role(Binding) only with more than one replica).
        assert!(all.len() >= 6, "{what}: only {} objects", all.len());
        assert_eq!(
            of_kind(&all, "CustomResourceDefinition").len(),
            1,
            "{what}: the CRD"
        );
        let file = dir.write(&format!("{i}.yaml"), &rendered);
        let n = kubernetes_validate(&file, &what);
        println!("{what}: {n} objects pass kubernetes-validate --strict for {K8S_VERSIONS:?}");
        for lw in of_kind(&all, "LearningWorker") {
            check_learningworker(lw, &what);
        }
    }
}

#[test]
fn profiles_render_what_they_promise() {
    let by_profile = |p: &str| {
        docs(&render(
            4,
            &[
                "-f",
                &format!("{}/profiles/{p}.yaml", chart_dir().display()),
            ],
        ))
    };
    let gpu = |all: &[Value]| {
        let lw = of_kind(all, "LearningWorker");
        assert_eq!(lw.len(), 1);
        lw[0]["spec"]["ollama"]["gpu"]["vendor"]
            .as_str()
            .map(str::to_owned)
    };
    assert_eq!(gpu(&by_profile("gpu-amd")).as_deref(), Some("amd"));
    assert_eq!(gpu(&by_profile("gpu-nvidia")).as_deref(), Some("nvidia"));
    assert_eq!(gpu(&by_profile("cpu")).as_deref(), Some("none"));
    let mon = by_profile("monitoring");
    assert_eq!(
        of_kind(&mon, "ServiceMonitor").len(),
        2,
        "operator + runners"
    );
    assert_eq!(of_kind(&mon, "PrometheusRule").len(), 1);
    assert_eq!(of_kind(&mon, "ConfigMap").len(), 1, "Grafana dashboard");
    let defaults = docs(&render(4, &[]));
    for k in [
        "ServiceMonitor",
        "PrometheusRule",
        "ConfigMap",
        "LearningWorker",
        "Namespace",
    ] {
        assert!(
            of_kind(&defaults, k).is_empty(),
            "{k} is optional and off by default"
        );
    }
}

/// Bad values: each must fail `helm template` with both helm versions, naming the key.
#[test]
fn bad_values_fail_helm_template_with_a_clear_message() {
    let dir = TempDir::new("chart-bad-values");
    let wrong_type_file = dir.write("wrong-type.yaml", "resources: lots\n");
    let unknown_nested_file = dir.write(
        "unknown-nested.yaml",
        "monitoring:\n  serviceMonitor:\n    enable: true\n",
    );
    let wrong_file = wrong_type_file.display().to_string();
    let nested_file = unknown_nested_file.display().to_string();
    // (arguments, key the message must name, what is wrong)
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (
            vec!["--set", "replicaCount=two"],
            "replicaCount",
            "wrong type (string for integer)",
        ),
        (
            vec!["--set", "rbac.create=maybe"],
            "rbac",
            "wrong type (string for boolean)",
        ),
        (
            vec!["-f", &wrong_file],
            "resources",
            "wrong type (string for object)",
        ),
        (
            vec!["--set", "imagee.tag=1"],
            "imagee",
            "unknown top-level key",
        ),
        (vec!["-f", &nested_file], "enable", "unknown nested key"),
        (
            vec!["--set", "image.pullPolicy=Sometimes"],
            "pullPolicy",
            "not in the enum",
        ),
        (
            vec!["--set", "leaderElection.leaseSeconds=1"],
            "leaseSeconds",
            "below the minimum",
        ),
        (
            vec!["--set", "leaderElection.enabled=sometimes"],
            "enabled",
            "neither auto nor a boolean",
        ),
        (
            vec!["--set", "watchNamespace=Not_A_Namespace"],
            "watchNamespace",
            "not a namespace name",
        ),
        (
            vec!["--set", "sample.spec.runnr.image=x"],
            "runnr",
            "unknown key in the sample spec",
        ),
        (
            vec![
                "--set",
                "monitoring.prometheusRule.alerts.failureRate.ratio=3",
            ],
            "ratio",
            "above the maximum",
        ),
        (
            vec![
                "--set",
                "extraEnv[0].name=WATCH_NAMESPACE",
                "--set",
                "extraEnv[0].value=x",
            ],
            "extraEnv",
            "a variable the chart sets itself",
        ),
        (
            vec!["--set", "podLabels.app\\.kubernetes\\.io/name=other"],
            "app.kubernetes.io/name",
            "a selector label (the Deployment and the NetworkPolicies select by it)",
        ),
        (
            vec!["--set", "podLabels.app\\.kubernetes\\.io/instance=other"],
            "app.kubernetes.io/instance",
            "a selector label",
        ),
    ];
    for major in [3, 4] {
        for (args, key, why) in &cases {
            match template(major, args) {
                Ok(_) => panic!("helm v{major} template {args:?} ({why}) succeeded"),
                Err(e) => {
                    assert!(
                        e.contains("values don't meet the specifications of the schema"),
                        "helm v{major} {args:?} ({why}) failed, but not in the schema check:\n{e}"
                    );
                    assert!(
                        e.contains(key),
                        "helm v{major} {args:?} ({why}): the message does not name {key}:\n{e}"
                    );
                }
            }
        }
    }
}

/// Restricted Pod Security Standard for every pod the chart can create.
#[test]
fn every_pod_is_restricted() {
    let mut checked = 0;
    for (what, args) in value_sets() {
        for d in docs(&render(4, &strs(&args))) {
            let pod = match kind(&d) {
                "Deployment" | "StatefulSet" | "DaemonSet" | "Job" => {
                    &d["spec"]["template"]["spec"]
                }
                "Pod" => &d["spec"],
                _ => continue,
            };
            let at = format!("{what}: {} {}", kind(&d), name(&d));
            assert_eq!(
                pod["securityContext"]["runAsNonRoot"].as_bool(),
                Some(true),
                "{at}"
            );
            assert_eq!(
                pod["securityContext"]["seccompProfile"]["type"].as_str(),
                Some("RuntimeDefault"),
                "{at}"
            );
            for host in ["hostNetwork", "hostPID", "hostIPC"] {
                assert_ne!(pod[host].as_bool(), Some(true), "{at}: {host}");
            }
            for v in pod["volumes"].as_sequence().into_iter().flatten() {
                assert!(v["hostPath"].is_null(), "{at}: hostPath volume");
            }
            let containers = pod["containers"].as_sequence().expect("containers");
            let init = pod["initContainers"]
                .as_sequence()
                .cloned()
                .unwrap_or_default();
            for c in containers.iter().chain(init.iter()) {
                let sc = &c["securityContext"];
                let at = format!("{at} container {}", c["name"].as_str().unwrap_or("?"));
                assert_eq!(
                    sc["allowPrivilegeEscalation"].as_bool(),
                    Some(false),
                    "{at}"
                );
                assert_ne!(sc["privileged"].as_bool(), Some(true), "{at}");
                assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true), "{at}");
                let drop = sc["capabilities"]["drop"].as_sequence().expect("drop");
                assert!(drop.iter().any(|c| c.as_str() == Some("ALL")), "{at}");
                assert!(
                    sc["capabilities"]["add"].is_null(),
                    "{at}: adds capabilities"
                );
                for p in c["ports"].as_sequence().into_iter().flatten() {
                    assert!(p["hostPort"].is_null(), "{at}: hostPort");
                }
                assert!(
                    c["resources"]["limits"]["memory"].is_string(),
                    "{at}: memory limit"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 7, "only {checked} pod templates checked");
    let ns = docs(&render(4, &["--set", "namespace.create=true"]));
    let ns = of_kind(&ns, "Namespace");
    assert_eq!(ns.len(), 1);
    assert_eq!(
        ns[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"].as_str(),
        Some("restricted")
    );
}

fn deployment(all: &[Value]) -> Value {
    let d = of_kind(all, "Deployment");
    assert_eq!(d.len(), 1, "one operator Deployment");
    d[0].clone()
}

fn env_names(dep: &Value) -> Vec<String> {
    dep["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence()
        .expect("env")
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The chart sets only settings `learning-operator run` reads (its clap definition), with the
/// downward API where the operator needs its own pod and namespace, and the labels its
/// NetworkPolicies admit.
#[test]
fn the_deployment_matches_the_operators_command_line() {
    let cli = learning_operator::cli::Cli::command();
    let run_cmd = cli
        .get_subcommands()
        .find(|c| c.get_name() == "run")
        .expect("learning-operator run");
    let known: BTreeSet<String> = run_cmd
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    let all = docs(&render(4, &["--set", "watchNamespace=gustav"]));
    let dep = deployment(&all);
    let names = env_names(&dep);
    for n in &names {
        assert!(
            known.contains(n),
            "the chart sets {n}, which `learning-operator run` does not read ({known:?})"
        );
    }
    for n in [
        "OPERATOR_NAMESPACE",
        "POD_NAME",
        "WATCH_NAMESPACE",
        "OPERATOR_HTTP_ADDR",
        "LEADER_ELECTION",
    ] {
        assert!(names.iter().any(|x| x == n), "{n} is not set");
    }
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    let env = |n: &str| {
        c["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|e| e["name"].as_str() == Some(n))
            .cloned()
            .unwrap()
    };
    assert_eq!(
        env("POD_NAME")["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("metadata.name")
    );
    assert_eq!(
        env("OPERATOR_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("metadata.namespace")
    );
    assert_eq!(env("WATCH_NAMESPACE")["value"].as_str(), Some("gustav"));
    assert_eq!(c["args"][0].as_str(), Some("run"));
    assert_eq!(c["ports"][0]["containerPort"].as_u64(), Some(8081));
    assert_eq!(
        c["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/livez")
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    assert_eq!(
        dep["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"].as_str(),
        Some("learning-operator"),
        "the operator's NetworkPolicies admit its pods by this label"
    );
    // Without watchNamespace: no WATCH_NAMESPACE at all (clap would read an empty one).
    let dep = deployment(&docs(&render(4, &[])));
    assert!(!env_names(&dep).iter().any(|n| n == "WATCH_NAMESPACE"));
    assert_eq!(dep["spec"]["replicas"].as_u64(), Some(1));
}

/// `env` value of the operator container, if set.
fn env_value(dep: &Value, n: &str) -> Option<String> {
    dep["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence()?
        .iter()
        .find(|e| e["name"].as_str() == Some(n))
        .and_then(|e| e["value"].as_str().map(str::to_owned))
}

/// LEADER_ELECTION is on exactly when replicaCount > 1 (`enabled: auto`) or set explicitly;
/// with it on the Deployment rolls with a standby (maxSurge 1, maxUnavailable 0) and gets the
/// Lease settings, with it off it is recreated (never two operators reconciling at once).
#[test]
fn leader_election_follows_the_replicas_unless_set_and_decides_the_rollout() {
    let ha = format!("{}/profiles/ha.yaml", chart_dir().display());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![], "false"),
        (vec!["--set", "replicaCount=0"], "false"),
        (vec!["-f", &ha], "true"),
        (vec!["--set", "replicaCount=3"], "true"),
        (vec!["--set", "leaderElection.enabled=true"], "true"),
        (vec!["--set", "leaderElection.enabled=false"], "false"),
        (
            vec![
                "--set",
                "replicaCount=2",
                "--set",
                "leaderElection.enabled=auto",
            ],
            "true",
        ),
    ];
    for (args, expected) in &cases {
        let dep = deployment(&docs(&render(4, args)));
        assert_eq!(
            env_value(&dep, "LEADER_ELECTION").as_deref(),
            Some(*expected),
            "{args:?}"
        );
        let strategy = &dep["spec"]["strategy"];
        if *expected == "true" {
            assert_eq!(
                env_value(&dep, "LEADER_LEASE_NAME").as_deref(),
                Some("learning-operator-leader")
            );
            assert_eq!(
                env_value(&dep, "LEADER_LEASE_SECONDS").as_deref(),
                Some("15")
            );
            assert_eq!(strategy["type"].as_str(), Some("RollingUpdate"), "{args:?}");
            assert_eq!(
                strategy["rollingUpdate"]["maxUnavailable"].as_u64(),
                Some(0)
            );
        } else {
            let names = env_names(&dep);
            assert!(
                !names.iter().any(|n| n.starts_with("LEADER_LEASE_")),
                "no Lease settings without leader election ({args:?}): {names:?}"
            );
            assert_eq!(strategy["type"].as_str(), Some("Recreate"), "{args:?}");
            assert!(strategy["rollingUpdate"].is_null());
        }
    }
    // Explicitly off with more than one replica: refused, with the reason, by both helm versions.
    for major in [3, 4] {
        let err = template(
            major,
            &[
                "--set",
                "replicaCount=2",
                "--set",
                "leaderElection.enabled=false",
            ],
        )
        .expect_err("two replicas without leader election");
        assert!(
            err.contains("leaderElection.enabled=false with replicaCount=2"),
            "helm v{major}: {err}"
        );
    }
}

#[test]
fn two_replicas_stand_by_on_different_nodes() {
    let dep = deployment(&docs(&render(4, &["--set", "replicaCount=2"])));
    assert_eq!(dep["spec"]["replicas"].as_u64(), Some(2));
    let anti = &dep["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"];
    assert_eq!(
        anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
            ["topologyKey"]
            .as_str(),
        Some("kubernetes.io/hostname")
    );
    let dep = deployment(&docs(&render(4, &[])));
    assert!(dep["spec"]["template"]["spec"]["affinity"].is_null());
}

#[test]
fn the_charts_crd_is_the_generated_crd() {
    let name = "learningworkers.learning.gustav.dev.yaml";
    let generated = std::fs::read_to_string(root().join("crds").join(name)).unwrap();
    let copy = std::fs::read_to_string(chart_dir().join("crds").join(name))
        .expect("charts/learning-worker-operator/crds/ has the CRD");
    assert!(
        generated == copy,
        "charts/learning-worker-operator/crds/{name} differs from crds/{name}: run `make manifests`"
    );
    let entries: Vec<_> = std::fs::read_dir(chart_dir().join("crds"))
        .unwrap()
        .collect();
    assert_eq!(
        entries.len(),
        1,
        "only the generated CRD in the chart's crds/"
    );
}

/// Every values key is described in the schema, present in values.yaml with a comment, and
/// listed in the chart README's generated configuration reference.
#[test]
fn values_are_documented_key_by_key() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(chart_dir().join("values.schema.json")).unwrap(),
    )
    .expect("values.schema.json is JSON");
    let values_text = std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap();
    let values: Value = serde_yaml_ng::from_str(&values_text).unwrap();

    let mut rows = Vec::new();
    reference_rows(&schema, &values, "", &mut rows);
    assert!(rows.len() > 40, "{} rows", rows.len());

    // Every key line of values.yaml (outside free-form maps) has a comment above or inline.
    let lines: Vec<&str> = values_text.lines().collect();
    let mut free_indent: Option<usize> = None;
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('-') {
            continue;
        }
        if let Some(fi) = free_indent {
            if indent > fi {
                continue;
            }
            free_indent = None;
        }
        let key = trimmed.split(':').next().unwrap();
        let commented = line.contains(" # ")
            || lines[..i]
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .is_some_and(|l| l.trim_start().starts_with('#'));
        assert!(
            commented,
            "values.yaml line {}: key {key} has no comment",
            i + 1
        );
        // Free-form maps whose content is an example, not chart keys.
        if matches!(key, "spec" | "resources" | "labels" | "annotations") {
            free_indent = Some(indent);
        }
    }

    let table = rows.join("\n");
    let readme_path = chart_dir().join("README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap_or_default();
    const BEGIN: &str = "<!-- values-reference:begin (generated by tests/tests/chart.rs: UPDATE_CHART_DOCS=1 cargo test -p learning-tests --test chart) -->";
    const END: &str = "<!-- values-reference:end -->";
    let generated = format!(
        "{BEGIN}\n| key | type | default | description |\n|---|---|---|---|\n{table}\n{END}"
    );
    let current = readme
        .find(BEGIN)
        .and_then(|b| readme[b..].find(END).map(|e| &readme[b..b + e + END.len()]));
    if std::env::var_os("UPDATE_CHART_DOCS").is_some() {
        let updated = match current {
            Some(c) => readme.replace(c, &generated),
            None => format!("{readme}\n{generated}\n"),
        };
        std::fs::write(&readme_path, updated).unwrap();
        return;
    }
    assert_eq!(
        current,
        Some(generated.as_str()),
        "the configuration reference in charts/learning-worker-operator/README.md is out of date: \
         UPDATE_CHART_DOCS=1 cargo test -p learning-tests --test chart"
    );
}

/// Rows `| key | type | default | description |` for every leaf of the schema (objects with
/// declared properties are descended into; free-form maps and lists are leaves).
fn reference_rows(schema: &serde_json::Value, values: &Value, path: &str, rows: &mut Vec<String>) {
    let props = schema["properties"].as_object();
    let descend = props.is_some() && !path.ends_with("sample.spec");
    if descend {
        for (k, sub) in props.unwrap() {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            let v = values.get(k.as_str()).cloned().unwrap_or(Value::Null);
            assert!(
                !v.is_null() || sub["type"] == "string",
                "values.schema.json declares {p}, values.yaml has no default for it"
            );
            reference_rows(sub, &v, &p, rows);
        }
        return;
    }
    let description = schema["description"]
        .as_str()
        .unwrap_or_else(|| panic!("values.schema.json: {path} has no description"));
    let ty = match &schema["type"] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null if schema["oneOf"].is_array() => "quantity".into(),
        serde_json::Value::Array(types) => types
            .iter()
            .filter_map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(" or "),
        other => other.to_string(),
    };
    let default = match values {
        Value::Mapping(m) if m.len() > 3 || path.ends_with("spec") => "see values.yaml".to_owned(),
        v => {
            let s = serde_json::to_string(v).unwrap_or_default();
            if s.len() > 60 {
                "see values.yaml".into()
            } else {
                format!("`{s}`")
            }
        }
    };
    rows.push(format!(
        "| `{path}` | {ty} | {default} | {} |",
        description.replace('|', "\\|")
    ));
}

/// The operator's default runner image (`RUNNER_IMAGE`) is the runner of the chart's own
/// version unless `runnerImage` says otherwise.
#[test]
fn the_default_runner_image_is_the_runner_of_the_charts_version() {
    let chart: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap())
            .unwrap();
    let version = chart["appVersion"].as_str().expect("appVersion").to_owned();
    let dep = deployment(&docs(&render(4, &[])));
    assert_eq!(
        env_value(&dep, "RUNNER_IMAGE"),
        Some(format!(
            "registry.example.org/gustav/learning-runner:{version}"
        ))
    );
    let digest = format!("sha256:{}", "a".repeat(64));
    let dep = deployment(&docs(&render(
        4,
        &[
            "--set",
            "runnerImage.repository=ghcr.io/school/runner",
            "--set",
            &format!("runnerImage.digest={digest}"),
        ],
    )));
    assert_eq!(
        env_value(&dep, "RUNNER_IMAGE"),
        Some(format!("ghcr.io/school/runner@{digest}"))
    );
}
