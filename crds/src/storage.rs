//! `spec.storage`: where the runners read submissions — a mounted volume
//! (`STORAGE_VERIFY_ROOT`) and/or Supabase Storage (URL plus a Secret reference for the key).

use kube::KubeSchema;
use learning_contract::url::SUPABASE_URL_PATTERN;
use serde::{Deserialize, Serialize};

use crate::schema::{SecretKeyRef, DNS_SUBDOMAIN};

/// Submission storage.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.submissionsVolume) || has(self.supabase)").message("set submissionsVolume, supabase, or both"))]
pub struct StorageSpec {
    /// A PersistentVolumeClaim with the submission files, mounted read-only into the runners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submissions_volume: Option<SubmissionsVolume>,
    /// Supabase Storage, the fallback for files not on the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supabase: Option<SupabaseStorage>,
}

/// The submissions volume.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubmissionsVolume {
    /// Name of the PersistentVolumeClaim (in the LearningWorker's namespace).
    #[schemars(length(min = 1, max = 253), pattern(DNS_SUBDOMAIN))]
    pub claim_name: String,
    /// Sub-path inside the volume to mount, if not its root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), regex(pattern = r"^[^/].*$"))]
    pub sub_path: Option<String>,
    /// Where the volume is mounted in the runner; becomes `STORAGE_VERIFY_ROOT`.
    #[serde(default = "default_mount_path")]
    #[schemars(length(min = 2, max = 1024), regex(pattern = r"^/.+$"))]
    pub mount_path: String,
}

/// Supabase Storage access.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SupabaseStorage {
    /// Base URL of the Supabase instance (`SUPABASE_URL`): `http(s)://host[:port]`, without
    /// path, credentials, query or fragment (the runner appends the object path).
    #[schemars(length(min = 8, max = 2048), pattern(SUPABASE_URL_PATTERN))]
    pub url: String,
    /// Secret key holding the service-role key (`SUPABASE_SERVICE_ROLE_KEY`).
    pub service_role_key_secret_ref: SecretKeyRef,
    /// Storage bucket of the submissions (`LEARNING_STORAGE_BUCKET`): letters, digits, `.`,
    /// `_`, `-`, not starting with `.` (the runner refuses anything else).
    #[serde(default = "default_bucket")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")
    )]
    pub bucket: String,
}

fn default_mount_path() -> String {
    "/var/lib/gustav/submissions".into()
}
fn default_bucket() -> String {
    "submissions".into()
}
