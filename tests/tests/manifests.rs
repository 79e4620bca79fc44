//! The plain manifests in `deploy/` (for `kubectl apply -f deploy/`): generated from the
//! chart by `make manifests` (scripts/manifests.sh); this test regenerates them into a
//! temporary directory with the same script and fails on any difference ("drift"), then
//! validates them with `kubernetes-validate --strict`.

mod chart_support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use chart_support::*;

fn files(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for sub in ["", "monitoring"] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                out.insert(format!(
                    "{}{}",
                    if sub.is_empty() {
                        String::new()
                    } else {
                        format!("{sub}/")
                    },
                    p.file_name().unwrap().to_string_lossy()
                ));
            }
        }
    }
    out
}

#[test]
fn deploy_matches_the_chart() {
    let dir = TempDir::new("manifests-drift");
    let out = run(
        Command::new("bash")
            .arg(root().join("scripts/manifests.sh"))
            .arg("--out")
            .arg(&dir.0)
            .env("HELM", helm(4)),
        "bash is needed",
    );
    assert!(
        out.status.success(),
        "scripts/manifests.sh failed:\n{}",
        text(&out)
    );

    let chart_crd = std::fs::read_to_string(dir.0.join("chart-crd.yaml")).unwrap();
    std::fs::remove_file(dir.0.join("chart-crd.yaml")).unwrap();
    let committed_crd =
        std::fs::read_to_string(chart_dir().join("crds/learningworkers.learning.gustav.dev.yaml"))
            .unwrap();
    assert!(
        chart_crd == committed_crd,
        "the chart's CRD copy is stale: run `make manifests`"
    );

    let deploy = root().join("deploy");
    let want = files(&dir.0);
    assert_eq!(
        files(&deploy),
        want,
        "deploy/ has other files than `make manifests` generates: run `make manifests`"
    );
    for f in &want {
        let generated = std::fs::read_to_string(dir.0.join(f)).unwrap();
        let committed = std::fs::read_to_string(deploy.join(f)).unwrap();
        if generated != committed {
            let line = generated
                .lines()
                .zip(committed.lines())
                .position(|(a, b)| a != b)
                .map_or_else(
                    || "at the end".to_owned(),
                    |i| format!("first at line {}", i + 1),
                );
            panic!("deploy/{f} differs from the chart ({line}): run `make manifests`");
        }
    }
}

#[test]
fn deploy_passes_kubernetes_validate_strict() {
    let deploy = root().join("deploy");
    let crd = kubernetes_validate(&deploy.join("00-crd.yaml"), "deploy/00-crd.yaml");
    assert_eq!(crd, 1);
    let n = kubernetes_validate(&deploy.join("10-operator.yaml"), "deploy/10-operator.yaml");
    // Namespace, ServiceAccount, ClusterRole, ClusterRoleBinding, Service, Deployment: one
    // replica, so no leader election and no Lease Role.
    assert_eq!(n, 6, "deploy/10-operator.yaml");
    let all = docs(&std::fs::read_to_string(deploy.join("10-operator.yaml")).unwrap());
    assert!(
        of_kind(&all, "Role").is_empty() && of_kind(&all, "RoleBinding").is_empty(),
        "deploy/ runs one replica without leader election: no Lease Role"
    );
    assert_eq!(
        kind(&all[0]),
        "Namespace",
        "the Namespace comes first for kubectl apply"
    );
    let m = kubernetes_validate(
        &deploy.join("monitoring/monitoring.yaml"),
        "deploy/monitoring/monitoring.yaml",
    );
    assert_eq!(
        m, 1,
        "the dashboard ConfigMap (ServiceMonitor/PrometheusRule: chart_monitoring.rs)"
    );
    // The CRD must sort before the objects that need it when applied as a directory.
    let mut names: Vec<String> = files(&deploy)
        .into_iter()
        .filter(|f| !f.contains('/'))
        .collect();
    names.sort();
    assert_eq!(names.first().map(String::as_str), Some("00-crd.yaml"));
}

/// The shared-Ollama example: its objects validate strictly, and they fit the two schools'
/// LearningWorkers — the URL names this Service, the NetworkPolicy admits their namespaces'
/// runners, and its parallelism is the sum of their shares.
#[test]
fn the_shared_ollama_example_validates_and_fits_the_schools() {
    let file = root().join("deploy/examples/shared-ollama.yaml");
    let n = kubernetes_validate(&file, "deploy/examples/shared-ollama.yaml");
    assert_eq!(n, 5, "Namespace, PVC, Deployment, Service, NetworkPolicy");
    let all = docs(&std::fs::read_to_string(&file).unwrap());
    let service = of_kind(&all, "Service")[0];
    let host = format!(
        "http://{}.{}.svc:{}",
        service["metadata"]["name"].as_str().unwrap(),
        service["metadata"]["namespace"].as_str().unwrap(),
        service["spec"]["ports"][0]["port"].as_u64().unwrap()
    );
    let policy = of_kind(&all, "NetworkPolicy")[0];
    let admitted = &policy["spec"]["ingress"][0]["from"][0];
    let namespaces: Vec<&str> = admitted["namespaceSelector"]["matchExpressions"][0]["values"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let deployment = of_kind(&all, "Deployment")[0];
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence()
        .unwrap();
    let num_parallel: u64 = env
        .iter()
        .find(|e| e["name"] == "OLLAMA_NUM_PARALLEL")
        .and_then(|e| e["value"].as_str()?.parse().ok())
        .expect("OLLAMA_NUM_PARALLEL");
    let mut shares = 0;
    for school in ["school-1", "school-2"] {
        let example = root().join(format!("crds/examples/shared-ollama-{school}.yaml"));
        let lw = &docs(&std::fs::read_to_string(example).unwrap())[0];
        assert_eq!(lw["spec"]["ollama"]["url"].as_str(), Some(host.as_str()));
        let namespace = lw["metadata"]["namespace"].as_str().unwrap();
        assert!(namespaces.contains(&namespace), "{namespace} admitted");
        shares += lw["spec"]["ollama"]["numParallel"].as_u64().unwrap();
    }
    assert_eq!(shares, num_parallel, "the schools' shares add up");
}
