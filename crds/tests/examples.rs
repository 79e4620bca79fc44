//! Every example CR in `crds/examples/` passes the CRD's schema (a structural check written for
//! these tests, see `common`), its CEL rules (kube-cel's evaluator, with schema defaults applied
//! first as the API server does), deserialises into the Rust types, and passes the Rust rules.

mod common;

use kube::core::cel::Validator;
use learning_crds::LearningWorker;

#[test]
fn there_is_an_example_for_each_documented_setup() {
    let names: Vec<String> = common::examples().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "amd-gpu.yaml",
            "autoscaling.yaml",
            "cpu-only.yaml",
            "external-ollama.yaml",
            "nvidia-gpu.yaml",
            "shared-ollama-school-1.yaml",
            "shared-ollama-school-2.yaml"
        ]
    );
}

#[test]
fn examples_pass_the_schema() {
    let schema = common::open_api_schema();
    for (name, value) in common::examples() {
        assert_eq!(
            value["apiVersion"], "learning.gustav.dev/v1alpha1",
            "{name}"
        );
        assert_eq!(value["kind"], "LearningWorker", "{name}");
        let errors = common::check(&schema["properties"]["spec"], &value["spec"], "spec");
        assert!(errors.is_empty(), "{name}: {errors:#?}");
    }
}

#[test]
fn examples_pass_the_cel_rules() {
    let schema = common::open_api_schema();
    for (name, value) in common::examples() {
        if let Err(errors) = Validator::new().validate(&schema, &value, None) {
            panic!("{name}: {errors:?}");
        }
    }
}

#[test]
fn examples_deserialise_and_pass_the_rust_rules() {
    for (name, value) in common::examples() {
        let lw: LearningWorker =
            serde_json::from_value(value).unwrap_or_else(|e| panic!("{name}: {e}"));
        let errors =
            learning_crds::validate::validate(lw.metadata.name.as_deref().unwrap(), &lw.spec);
        assert!(errors.is_empty(), "{name}: {errors:?}");
    }
}

#[test]
fn the_schema_check_catches_what_it_should() {
    // Guard against a checker that passes everything.
    let schema = common::open_api_schema();
    let (_, mut value) = common::examples().remove(0);
    value["spec"]["runner"]["concurrency"] = serde_json::json!(0);
    value["spec"]["runner"]["bogus"] = serde_json::json!(true);
    value["spec"]["ollama"]["gpu"]["vendor"] = serde_json::json!("intel");
    value["spec"]["ai"]["visionModel"] = serde_json::json!("bad model name");
    value["spec"]["database"] = serde_json::json!({"url": "postgres://u:p@db/x"});
    let errors = common::check(&schema["properties"]["spec"], &value["spec"], "spec");
    for expected in [
        "spec.runner.concurrency: 0 < minimum 1",
        "spec.runner.bogus: unknown field",
        "spec.ollama.gpu.vendor",
        "spec.ai.visionModel",
        "spec.database.secretRef: required",
        "spec.database.url: unknown field",
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "missing {expected:?} in {errors:#?}"
        );
    }
}
