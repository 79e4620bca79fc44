//! The resource types the fake API server serves: the operator's custom resource, its children,
//! pods, Events and Leases, and KEDA's ScaledObjects and TriggerAuthentications once a test has
//! "installed" KEDA (`FakeApiServer::install_optional_crds`). A request for any other resource
//! gets 404, as from an API server that does not serve it.

/// One served resource type.
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// API group (`""` is core).
    pub group: &'static str,
    /// Version.
    pub version: &'static str,
    /// URL name (plural).
    pub plural: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Whether it has a `/status` subresource (writes to the main resource then ignore
    /// `status`, writes to `/status` change only `status`).
    pub status_subresource: bool,
    /// Whether deleting it orphans its dependents unless a propagation policy is given
    /// (`batch/v1` Jobs keep this legacy REST default; kubectl passes `Background`).
    pub orphan_by_default: bool,
    /// Served only once the test installed the optional CRDs (KEDA's); 404 before.
    pub optional_crd: bool,
}

impl ResourceType {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

const fn rt(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    status_subresource: bool,
) -> ResourceType {
    ResourceType {
        group,
        version,
        plural,
        kind,
        status_subresource,
        orphan_by_default: false,
        optional_crd: false,
    }
}

/// Every served type (all namespaced).
pub const RESOURCES: &[ResourceType] = &[
    rt(
        "learning.gustav.dev",
        "v1alpha1",
        "learningworkers",
        "LearningWorker",
        true,
    ),
    rt("apps", "v1", "deployments", "Deployment", true),
    rt("", "v1", "services", "Service", true),
    rt("", "v1", "serviceaccounts", "ServiceAccount", false),
    rt(
        "",
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        true,
    ),
    rt("", "v1", "pods", "Pod", true),
    rt(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        true,
    ),
    rt(
        "networking.k8s.io",
        "v1",
        "networkpolicies",
        "NetworkPolicy",
        false,
    ),
    ResourceType {
        orphan_by_default: true,
        ..rt("batch", "v1", "jobs", "Job", true)
    },
    rt("events.k8s.io", "v1", "events", "Event", false),
    rt("coordination.k8s.io", "v1", "leases", "Lease", false),
    ResourceType {
        optional_crd: true,
        ..rt("keda.sh", "v1alpha1", "scaledobjects", "ScaledObject", true)
    },
    ResourceType {
        optional_crd: true,
        ..rt(
            "keda.sh",
            "v1alpha1",
            "triggerauthentications",
            "TriggerAuthentication",
            true,
        )
    },
];

/// The type served at `group/version/plural`.
pub fn by_path(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The type of `apiVersion` + `kind`.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.api_version() == api_version && r.kind == kind)
}
