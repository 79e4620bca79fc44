//! What can be checked here of the kind end-to-end path (which itself needs Docker and runs
//! only in CI): the workflow against the GitHub workflow schema (`check-jsonschema`), its
//! shell steps and the script with shellcheck, the manifests the script applies with
//! `kubernetes-validate --strict` (the LearningWorkers through the CRD schema and the
//! operator's renderer), the chart profile it installs, and the Dockerfile's shape.

mod chart_support;

use std::process::Command;

use chart_support::*;
use serde_yaml_ng::Value;

use learning_tests::tools::{
    check_jsonschema, HINT_CHECK_JSONSCHEMA as HINT_JSONSCHEMA, HINT_SHELLCHECK,
};

fn workflows() -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(root().join(".github/workflows"))
        .expect(".github/workflows")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    v.sort();
    assert!(!v.is_empty());
    v
}

#[test]
fn workflows_match_the_github_workflow_schema() {
    require_tool("check-jsonschema", HINT_JSONSCHEMA);
    for wf in workflows() {
        let out = check_jsonschema("vendor.github-workflows", &wf);
        assert!(out.status.success(), "{}:\n{}", wf.display(), text(&out));
    }
    // The schema check itself can fail: a job without runs-on is refused.
    let dir = TempDir::new("workflow-bad");
    let bad = dir.write(
        "bad.yml",
        "name: x\non: push\njobs:\n  a:\n    steps:\n      - run: echo\n",
    );
    let out = check_jsonschema("vendor.github-workflows", &bad);
    assert!(
        !out.status.success(),
        "a broken workflow passed:\n{}",
        text(&out)
    );
}

#[test]
fn the_e2e_workflow_runs_make_e2e_kind_and_keeps_diagnostics() {
    let wf: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root().join(".github/workflows/e2e.yml")).unwrap(),
    )
    .unwrap();
    let steps = wf["jobs"]["kind"]["steps"].as_sequence().expect("steps");
    let runs: Vec<&str> = steps.iter().filter_map(|s| s["run"].as_str()).collect();
    assert!(runs.iter().any(|r| r.trim() == "make e2e-kind"), "{runs:?}");
    let runs_env = steps
        .iter()
        .find(|s| s["run"].as_str() == Some("make e2e-kind"))
        .unwrap();
    assert_eq!(runs_env["env"]["E2E_RUNS"].as_str(), Some("stub gpu"));
    assert!(steps.iter().any(|s| s["if"].as_str() == Some("failure()")
        && s["with"]["path"].as_str() == Some("target/e2e-kind/")));
}

/// shellcheck on the e2e script and on every `run:` block of the workflows (as bash, the
/// shell GitHub uses on Linux runners).
#[test]
fn shell_in_the_script_and_the_workflows_passes_shellcheck() {
    require_tool("shellcheck", HINT_SHELLCHECK);
    let script = root().join("scripts/e2e-kind.sh");
    let head = std::fs::read_to_string(&script).unwrap();
    assert!(head.contains("set -euo pipefail"));
    let out = run(Command::new("shellcheck").arg(&script), HINT_SHELLCHECK);
    assert!(
        out.status.success(),
        "shellcheck scripts/e2e-kind.sh:\n{}",
        text(&out)
    );

    let dir = TempDir::new("workflow-shell");
    for wf in workflows() {
        let doc: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&wf).unwrap()).unwrap();
        for (job, spec) in doc["jobs"].as_mapping().unwrap() {
            for (i, step) in spec["steps"].as_sequence().unwrap().iter().enumerate() {
                let Some(body) = step["run"].as_str() else {
                    continue;
                };
                // GitHub expressions are substituted before the shell runs.
                let body = body.replace("${{", "EXPR_").replace("}}", "_EXPR");
                let f = dir.write(
                    &format!("step-{i}.sh"),
                    &format!("#!/usr/bin/env bash\n{body}\n"),
                );
                let out = run(
                    Command::new("shellcheck").args(["-s", "bash"]).arg(&f),
                    HINT_SHELLCHECK,
                );
                assert!(
                    out.status.success(),
                    "{} job {job:?} step {i}: shellcheck:\n{}",
                    wf.display(),
                    text(&out)
                );
            }
        }
    }
}

#[test]
fn the_manifests_the_e2e_script_applies_are_valid() {
    let dir = root().join("scripts/e2e");
    let mut n_files = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        n_files += 1;
        let what = format!("scripts/e2e/{}", p.file_name().unwrap().to_string_lossy());
        let all = docs(&std::fs::read_to_string(&p).unwrap());
        assert!(!all.is_empty(), "{what}");
        kubernetes_validate(&p, &what);
        for d in &all {
            if kind(d) == "LearningWorker" {
                check_learningworker(d, &format!("{what} {}", name(d)));
            }
            // The namespace enforces restricted Pod Security: the script's own pods comply.
            if let Some(pod) = match kind(d) {
                "Deployment" | "Job" => Some(&d["spec"]["template"]["spec"]),
                _ => None,
            } {
                assert_eq!(
                    pod["securityContext"]["runAsNonRoot"].as_bool(),
                    Some(true),
                    "{what}"
                );
                assert_eq!(
                    pod["securityContext"]["seccompProfile"]["type"].as_str(),
                    Some("RuntimeDefault"),
                    "{what}"
                );
                for c in pod["containers"].as_sequence().unwrap() {
                    let sc = &c["securityContext"];
                    assert_eq!(
                        sc["allowPrivilegeEscalation"].as_bool(),
                        Some(false),
                        "{what}"
                    );
                    assert_eq!(
                        sc["capabilities"]["drop"][0].as_str(),
                        Some("ALL"),
                        "{what}"
                    );
                }
            }
        }
    }
    assert_eq!(
        n_files, 4,
        "postgres, migrate Job, stub and GPU LearningWorkers"
    );

    // The stub run: no Ollama, no GPU. The GPU run: two workers, one amd.com/gpu each.
    let stub = docs(&std::fs::read_to_string(dir.join("learningworker-stub.yaml")).unwrap());
    assert_eq!(stub[0]["spec"]["ai"]["backend"].as_str(), Some("stub"));
    let gpu = docs(&std::fs::read_to_string(dir.join("learningworker-gpu.yaml")).unwrap());
    assert_eq!(gpu.len(), 2);
    for g in &gpu {
        assert_eq!(g["spec"]["ollama"]["gpu"]["vendor"].as_str(), Some("amd"));
        assert_eq!(g["spec"]["ollama"]["gpu"]["count"].as_u64(), Some(1));
    }
    // The images the script loads into kind are the ones these manifests and the profile use.
    let script = std::fs::read_to_string(root().join("scripts/e2e-kind.sh")).unwrap();
    assert!(
        script.contains("\"learning-runner:$TAG\" \"learning-operator:$TAG\"")
            && script.contains("TAG=e2e")
    );
    let profile = render(
        4,
        &[
            "-f",
            &format!("{}/profiles/kind-e2e.yaml", chart_dir().display()),
        ],
    );
    let dep = docs(&profile)
        .into_iter()
        .find(|d| kind(d) == "Deployment")
        .unwrap();
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"].as_str(), Some("learning-operator:e2e"));
    assert_eq!(c["imagePullPolicy"].as_str(), Some("Never"));
}

/// The Dockerfile cannot be built here (no Docker engine); its shape is checked instead:
/// the two targets, multi-stage, distroless non-root final images, no HEALTHCHECK.
#[test]
fn the_dockerfile_has_both_small_non_root_targets() {
    let df = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let stages: Vec<(String, Vec<String>)> = df
        .split("\nFROM ")
        .skip(1)
        .map(|s| {
            let mut lines = s.lines();
            let from = lines.next().unwrap().to_owned();
            (from, lines.map(str::to_owned).collect())
        })
        .collect();
    assert!(stages.len() >= 3, "a build stage and two final stages");
    for target in ["runner", "operator"] {
        let (from, body) = stages
            .iter()
            .find(|(f, _)| f.ends_with(&format!(" AS {target}")))
            .unwrap_or_else(|| panic!("no target {target}"));
        assert!(
            from.starts_with("gcr.io/distroless/cc-debian12:nonroot"),
            "{target}: {from}"
        );
        let body = body.join("\n");
        assert!(
            body.contains("USER 65532:65532"),
            "{target}: the uid the pods run as"
        );
        assert!(body.contains(&format!(
            "ENTRYPOINT [\"/usr/local/bin/learning-{target}\"]"
        )));
        assert!(
            !body.contains("RUN "),
            "{target}: no RUN in a final image without a shell"
        );
        assert!(body.contains("COPY --from=build "), "{target}: multi-stage");
    }
    assert!(
        !df.lines().any(|l| l
            .trim_start()
            .to_ascii_uppercase()
            .starts_with("HEALTHCHECK")),
        "Kubernetes probes, no HEALTHCHECK instruction"
    );
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    assert!(
        ignore.lines().any(|l| l.trim() == "!migrations/"),
        "sqlx::migrate! embeds migrations/"
    );
    // `cargo build` in the image loads every workspace member: each must be in the context.
    let workspace: toml_members::Members =
        toml_members::read(&std::fs::read_to_string(root().join("Cargo.toml")).unwrap());
    assert!(workspace.0.len() >= 5, "{:?}", workspace.0);
    for member in workspace.0 {
        assert!(
            ignore.lines().any(|l| l.trim() == format!("!{member}/")),
            ".dockerignore leaves out the workspace member {member}/: the image build would fail"
        );
    }
}

/// The `members` of the workspace's Cargo.toml (a one-line array, as this repository writes it).
mod toml_members {
    pub struct Members(pub Vec<String>);

    pub fn read(cargo_toml: &str) -> Members {
        let line = cargo_toml
            .lines()
            .find(|l| l.trim_start().starts_with("members"))
            .expect("Cargo.toml has a members line");
        let list = line.split_once('[').and_then(|(_, r)| r.split_once(']'));
        let (list, _) = list.expect("members = [\"a\", \"b\"] on one line");
        Members(
            list.split(',')
                .map(|m| m.trim().trim_matches('"').to_owned())
                .filter(|m| !m.is_empty())
                .collect(),
        )
    }
}
