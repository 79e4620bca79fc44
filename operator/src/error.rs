//! Typed errors of the operator, one enum per concern, each variant named after the failed
//! action, with a bounded `category()` for metric labels and Event reasons.

/// Errors of `render` (and of reading a resource from a file).
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The input is not a LearningWorker.
    #[error("cannot parse the LearningWorker: {0}")]
    Parse(#[source] serde_yaml_ng::Error),
    /// The spec breaks a cross-field rule.
    #[error("invalid spec: {0}")]
    Invalid(String),
    /// A child could not be turned into JSON.
    #[error("cannot serialise a child object: {0}")]
    Serialize(#[source] serde_json::Error),
    /// A child could not be turned into YAML.
    #[error("cannot write YAML: {0}")]
    Yaml(#[source] serde_yaml_ng::Error),
}

/// Errors of one reconcile.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The resource has no namespace or name.
    #[error("the LearningWorker has no namespace or name")]
    MissingMetadata,
    /// Server-side apply of a child failed.
    #[error("applying {kind} {name} failed: {source}")]
    ApplyChild {
        /// Kind of the child.
        kind: &'static str,
        /// Name of the child.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Server-side apply of several children failed (each was tried).
    #[error("applying {} failed: {}", kinds(.0), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    ApplyChildren(Vec<ReconcileError>),
    /// The watch caches had not had their first list in time (`caches::READY_DEADLINE`).
    #[error("the operator's watch caches are not filled yet (their first list did not complete)")]
    CachesNotReady,
    /// Writing the status failed.
    #[error("patching the status failed: {0}")]
    PatchStatus(#[source] kube::Error),
    /// A child could not be serialised.
    #[error("serialising a child failed: {0}")]
    Serialize(#[source] serde_json::Error),
    /// Deleting an unwanted child failed.
    #[error("deleting {kind} {name} failed: {source}")]
    DeleteChild {
        /// Kind of the child.
        kind: &'static str,
        /// Name of the child.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// The kinds of failed applies, e.g. `PersistentVolumeClaim, Job`.
fn kinds(failures: &[ReconcileError]) -> String {
    let mut kinds: Vec<&str> = Vec::new();
    for f in failures {
        if let ReconcileError::ApplyChild { kind, .. } = f {
            if !kinds.contains(kind) {
                kinds.push(kind);
            }
        }
    }
    kinds.join(", ")
}

impl ReconcileError {
    /// Bounded label for metrics and Event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            ReconcileError::MissingMetadata => "invalid_object",
            ReconcileError::ApplyChildren(all) => {
                all.first().map_or("api_other", ReconcileError::category)
            }
            ReconcileError::ApplyChild { source, .. }
            | ReconcileError::PatchStatus(source)
            | ReconcileError::DeleteChild { source, .. } => api_category(source),
            ReconcileError::Serialize(_) => "serialize",
            ReconcileError::CachesNotReady => "api_other",
        }
    }

    /// Whether the error is a write conflict (retried soon rather than backed off).
    pub fn is_conflict(&self) -> bool {
        match self {
            ReconcileError::ApplyChildren(all) => all.iter().all(ReconcileError::is_conflict),
            ReconcileError::ApplyChild { source, .. }
            | ReconcileError::PatchStatus(source)
            | ReconcileError::DeleteChild { source, .. } => status_code(source) == Some(409),
            _ => false,
        }
    }
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// Bounded category of an API error.
pub fn api_category(e: &kube::Error) -> &'static str {
    match status_code(e) {
        Some(409) => "conflict",
        Some(401 | 403) => "forbidden",
        Some(404) => "not_found",
        Some(422 | 400) => "invalid",
        Some(429) => "throttled",
        Some(500..=599) => "api_server",
        Some(_) => "api_other",
        None => "transport",
    }
}
