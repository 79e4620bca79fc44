//! The `LearningWorker` custom resource types, shared by the operator and the runner.
//! Placeholder: the types are defined by the operator issue.
