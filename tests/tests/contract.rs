//! The runner ↔ operator contract across the two programs: what the operator puts into a
//! runner pod is what the runner reads, and what each side checks is the same rule. The items
//! themselves are defined once, in the `learning-contract` crate; these tests catch a side
//! that stops using it.

use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::CommandFactory;
use learning_crds::LearningWorker;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every environment variable the runner's command line reads, subcommands included.
fn runner_reads() -> BTreeSet<String> {
    fn walk(command: &clap::Command, names: &mut BTreeSet<String>) {
        for arg in command.get_arguments() {
            if let Some(name) = arg.get_env() {
                names.insert(name.to_string_lossy().into_owned());
            }
        }
        for sub in command.get_subcommands() {
            walk(sub, names);
        }
    }
    let mut names = BTreeSet::new();
    walk(&learning_runner::cli::Cli::command(), &mut names);
    names
}

fn examples() -> Vec<(String, LearningWorker)> {
    let dir = root().join("crds/examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "too few examples in {}", dir.display());
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let lw =
                serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), lw)
        })
        .collect()
}

/// The names of the env entries of every container of the runner Deployment.
fn deployment_env_names(lw: &LearningWorker) -> BTreeSet<String> {
    let deployment =
        serde_json::to_value(learning_operator::desired::runner::deployment(lw, None)).unwrap();
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("the runner Deployment has containers")
        .clone();
    containers
        .iter()
        .flat_map(|c| c["env"].as_array().cloned().unwrap_or_default())
        .map(|e: Value| e["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_operator_sets_only_environment_the_runners_command_line_reads() {
    let reads = runner_reads();
    assert!(reads.contains("LEARNING_DATABASE_URL") && reads.len() > 20);
    for (file, lw) in examples() {
        let own: BTreeSet<String> = lw
            .spec
            .runner
            .env
            .iter()
            .flatten()
            .map(|e| e.name.clone())
            .collect();
        let set = deployment_env_names(&lw);
        assert!(set.contains("LEARNING_DATABASE_URL"), "{file}: {set:?}");
        let unknown: Vec<&String> = set
            .iter()
            .filter(|name| !reads.contains(*name) && !own.contains(*name))
            .collect();
        assert!(
            unknown.is_empty(),
            "{file}: the operator sets {unknown:?}, which the runner does not read"
        );
    }
}

#[test]
fn the_contracts_env_list_is_the_runners_command_line() {
    let listed: BTreeSet<String> = learning_contract::env::RUNNER_READS
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(runner_reads(), listed);
    for name in learning_contract::env::OPERATOR_SET {
        assert!(listed.contains(name), "{name}");
    }
}

#[test]
fn a_model_with_a_registry_port_is_judged_the_same_by_runner_and_operator() {
    // The runner used to read the port's colon as a tag; the operator did not. A worker then
    // showed ModelsReady=True while its runners paused for a "missing" model.
    for (installed, wanted, same) in [
        ("registry:5000/foo:latest", "registry:5000/foo", true),
        ("registry:5000/foo:1b", "registry:5000/foo", false),
        ("gpt-oss:latest", "gpt-oss", true),
    ] {
        assert_eq!(
            learning_operator::probes::same_model(installed, wanted),
            same,
            "{installed} / {wanted}"
        );
        assert_eq!(
            learning_contract::model::same_model(installed, wanted),
            same
        );
    }
}
