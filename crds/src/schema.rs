//! Small schema helpers shared by the spec types: the secret-key reference type and the
//! patterns that both the OpenAPI schema and the Rust validation use.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A DNS-1123 subdomain (Kubernetes object names such as Secrets and PVCs).
pub const DNS_SUBDOMAIN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A key inside a Secret.
pub const SECRET_KEY: &str = r"^[-._a-zA-Z0-9]+$";
/// An Ollama model reference (`name[:tag]`, optionally with a namespace or registry path).
pub const MODEL_NAME: &str = r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$";
/// A Kubernetes extended resource name such as `amd.com/gpu`.
pub const RESOURCE_NAME: &str = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$";

/// Reference to one key of a Secret in the worker's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret (in the LearningWorker's namespace).
    #[schemars(length(min = 1, max = 253), pattern(DNS_SUBDOMAIN))]
    pub name: String,
    /// Key within the Secret.
    #[schemars(length(min = 1, max = 253), pattern(SECRET_KEY))]
    pub key: String,
}
