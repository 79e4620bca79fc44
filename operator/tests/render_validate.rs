//! `learning-operator render` for every example CR, and `learning-operator crd`, checked by
//! `kubernetes-validate --strict` (PyPI; bundles the upstream OpenAPI schemas) against the
//! oldest and newest Kubernetes versions the k8s-openapi feature targets. Fails loudly when the
//! tool is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

const VERSIONS: [&str; 2] = ["1.33.0", "1.37.0"];

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_learning-operator")
}

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/examples");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    assert_eq!(v.len(), 7, "{v:?}");
    v
}

fn operator(args: &[&str]) -> String {
    let out = Command::new(bin()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "learning-operator {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn kubernetes_validate(file: &Path, version: &str) -> String {
    let out = learning_tests::tools::kubernetes_validate(file, version);
    let text = learning_tests::tools::text(&out);
    assert!(
        out.status.success(),
        "kubernetes-validate --strict -k {version} {} failed:\n{text}",
        file.display()
    );
    text
}

fn scratch(name: &str, content: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("learning-operator-render-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

#[test]
fn rendered_children_of_every_example_pass_kubernetes_validate_strict() {
    for example in examples() {
        let yaml = operator(&[
            "render",
            "-f",
            example.to_str().unwrap(),
            "--pull",
            "qwen2.5vl:3b,gpt-oss:latest",
        ]);
        let documents = yaml.matches("---\n").count();
        assert!(
            documents >= 5,
            "{}: only {documents} objects",
            example.display()
        );
        let file = scratch(example.file_name().unwrap().to_str().unwrap(), &yaml);
        for version in VERSIONS {
            let report = kubernetes_validate(&file, version);
            assert_eq!(
                report.matches("passed for resource").count(),
                documents,
                "{}: {report}",
                example.display()
            );
        }
    }
}

#[test]
fn crd_command_prints_the_committed_crd_and_it_passes_kubernetes_validate_strict() {
    let yaml = operator(&["crd"]);
    let committed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../crds/learningworkers.learning.gustav.dev.yaml"),
    )
    .unwrap();
    assert!(
        yaml == committed,
        "crds/learningworkers.learning.gustav.dev.yaml is out of date: run `make crds`"
    );
    let file = scratch("crd.yaml", &yaml);
    for version in VERSIONS {
        assert!(kubernetes_validate(&file, version).contains(
            "passed for resource customresourcedefinition/learningworkers.learning.gustav.dev"
        ));
    }
}

#[test]
fn render_refuses_a_contradictory_spec_with_the_reason() {
    let bad = std::fs::read_to_string(&examples()[0]).unwrap().replace(
        "replicas: 2",
        "replicas: 2\n    autoscaling: {minReplicas: 3, maxReplicas: 1}",
    );
    let file = scratch("bad.yaml", &bad);
    let out = Command::new(bin())
        .args(["render", "-f", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("minReplicas must not exceed maxReplicas")
            && err.contains("set either replicas or autoscaling"),
        "{err}"
    );
}

#[test]
fn without_spec_runner_image_the_operators_default_is_used_or_the_reason_given() {
    let pinned = std::fs::read_to_string(&examples()[0]).unwrap();
    let line = pinned
        .lines()
        .find(|l| {
            l.trim_start()
                .starts_with("image: registry.example.org/gustav/learning-runner")
        })
        .expect("the example pins a runner image")
        .to_owned();
    let file = scratch("no-image.yaml", &pinned.replace(&format!("{line}\n"), ""));
    let render = |default: Option<&str>| {
        let mut cmd = Command::new(bin());
        cmd.args(["render", "-f", file.to_str().unwrap()]);
        match default {
            Some(image) => cmd.env("RUNNER_IMAGE", image),
            None => cmd.env_remove("RUNNER_IMAGE"),
        };
        cmd.output().unwrap()
    };
    let out = render(Some("registry.example.org/gustav/learning-runner:9.9.9"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(
        yaml.contains("image: registry.example.org/gustav/learning-runner:9.9.9"),
        "{yaml}"
    );
    let out = render(None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spec.runner.image") && err.contains("RUNNER_IMAGE"),
        "{err}"
    );
}

/// The rendered children of each example, compared with `operator/tests/snapshots/`. After an
/// intended change, review the diff and refresh them with `UPDATE_SNAPSHOTS=1 cargo test -p
/// learning-operator --test render_validate`.
#[test]
fn rendered_children_match_the_reviewed_snapshots() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    let mut stale = Vec::new();
    for example in examples() {
        let yaml = operator(&[
            "render",
            "-f",
            example.to_str().unwrap(),
            "--pull",
            "qwen2.5vl:3b",
        ]);
        let snapshot = dir.join(example.file_name().unwrap());
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&snapshot, &yaml).unwrap();
        } else if std::fs::read_to_string(&snapshot).ok().as_deref() != Some(yaml.as_str()) {
            stale.push(snapshot.display().to_string());
        }
    }
    assert!(stale.is_empty(), "rendered children differ from {stale:?}: review with `learning-operator render`, then refresh with UPDATE_SNAPSHOTS=1");
}
