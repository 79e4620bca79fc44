//! The `LearningWorker` custom resource (`learning.gustav.dev/v1alpha1`): spec and status types
//! with their documentation (what `kubectl explain` shows), defaults, schema and CEL validation,
//! the condition vocabulary, and a Rust mirror of the cross-field rules for the operator.
//!
//! The Rust types are the single source of the CRD: `crds/learningworkers.learning.gustav.dev.yaml`
//! is generated from them (`learning-operator crd`, `make crds`) and a test fails on drift.

pub mod ai;
pub mod conditions;
pub mod learning_worker;
pub mod ollama;
pub mod runner;
pub mod schema;
pub mod status;
pub mod storage;
pub mod validate;

pub use learning_worker::{LearningWorker, LearningWorkerSpec};
pub use status::LearningWorkerStatus;

/// The API group of the resource.
pub const GROUP: &str = "learning.gustav.dev";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";
/// The file name of the generated CRD (in `crds/`).
pub const CRD_FILE: &str = "learningworkers.learning.gustav.dev.yaml";

/// The first lines of the generated CRD file.
pub const CRD_HEADER: &str = "# Generated from the Rust types in crds/src by `make crds` (`learning-operator crd`).\n# Do not edit by hand: a test fails when this file and the types disagree.\n";

/// The CustomResourceDefinition of `LearningWorker`.
pub fn crd(
) -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    LearningWorker::crd()
}

/// The CRD as YAML, exactly as `crds/learningworkers.learning.gustav.dev.yaml` holds it.
pub fn crd_yaml() -> Result<String, serde_yaml_ng::Error> {
    Ok(format!("{CRD_HEADER}{}", serde_yaml_ng::to_string(&crd())?))
}
