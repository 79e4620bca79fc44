//! The `LearningWorker` root type: the top-level spec (database, runner, AI, Ollama, storage,
//! network, suspend), printer columns, short name and the root-level CEL rules.

use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::ai::AiSpec;
use crate::ollama::OllamaSpec;
use crate::runner::RunnerSpec;
use crate::schema::SecretKeyRef;
use crate::status::LearningWorkerStatus;
use crate::storage::StorageSpec;

/// Longest `metadata.name`: child names append suffixes such as `-model-pull-<hash>` and must
/// stay valid DNS labels (63 characters).
pub const MAX_NAME_LEN: usize = 40;

/// Desired state of a learning worker: the database Secret, the runners, the AI backend and
/// models, the Ollama server (managed or external), submission storage and network isolation.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "learning.gustav.dev",
    version = "v1alpha1",
    kind = "LearningWorker",
    plural = "learningworkers",
    singular = "learningworker",
    shortname = "lw",
    category = "gustav",
    namespaced,
    status = "LearningWorkerStatus",
    derive = "PartialEq",
    doc = "A GUSTAV learning worker: runners that process the learning queue and the Ollama server they use.",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status", description = "Whether the worker processes jobs"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason", description = "Why it is (not) ready"),
    printcolumn(name = "Runners", type_ = "string", json_path = ".status.runnersReady", description = "Ready/desired runner pods"),
    printcolumn(name = "Ollama", type_ = "string", json_path = ".status.ollama.phase", description = "State of the model server"),
    printcolumn(name = "Backlog", type_ = "integer", json_path = ".status.queue.visible", description = "Jobs waiting to be leased"),
    printcolumn(name = "Oldest", type_ = "integer", json_path = ".status.queue.oldestJobAgeSeconds", description = "Age of the oldest waiting job in seconds", priority = "1"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 40 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message("metadata.name must be a DNS label of at most 40 characters starting with a letter (child objects append suffixes)"),
    validation = Rule::new("has(self.spec.environment) && has(self.spec.ai) && has(self.spec.ai.backend) && self.spec.ai.backend == 'stub' ? !(self.spec.environment.trim().lowerAscii() in ['prod', 'production', 'stage', 'staging']) : true").message("the stub AI backend is refused in production and staging environments"),
    validation = Rule::new("!has(self.spec.network) || !has(self.spec.network.runnerEgress) || !has(self.spec.storage) || !has(self.spec.storage.supabase) || has(self.spec.network.runnerEgress.supabase)").message("network.runnerEgress.supabase is required when storage.supabase is set (the runners must reach it)"),
    validation = Rule::new("has(self.spec.storage) || (has(self.spec.ai) && has(self.spec.ai.backend) && self.spec.ai.backend == 'stub')").message("the local AI backend needs spec.storage (the submissions volume and/or Supabase Storage) to read submission files"),
    validation = Rule::new("!has(self.spec.ollama) || !has(self.spec.ollama.idleScaleDown) || !has(self.spec.ai) || !has(self.spec.ai.backend) || self.spec.ai.backend != 'stub'").message("ollama.idleScaleDown needs ai.backend local (the stub backend runs no Ollama)")
)]
#[serde(rename_all = "camelCase")]
pub struct LearningWorkerSpec {
    /// Stop processing: the runners are scaled to zero (running jobs drain first). Ollama and
    /// its models stay. Status reports `Ready=False` with reason `Suspended`.
    #[serde(default)]
    pub suspend: bool,
    /// GUSTAV deployment environment (`GUSTAV_ENV`), e.g. `production`; the runner refuses
    /// the stub backend in production and staging.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub environment: Option<String>,
    /// The PostgreSQL connection of the runners.
    pub database: DatabaseSpec,
    /// The runner pods.
    #[serde(default)]
    pub runner: RunnerSpec,
    /// The AI backend and its models.
    #[serde(default)]
    pub ai: AiSpec,
    /// The Ollama model server (used when `ai.backend` is `local`).
    #[serde(default)]
    pub ollama: OllamaSpec,
    /// Where the runners read submission files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
    /// NetworkPolicies the operator creates.
    #[serde(default)]
    pub network: NetworkSpec,
}

/// The database connection.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// Secret key holding the PostgreSQL DSN (`LEARNING_DATABASE_URL`). The DSN is never a
    /// plain field of this resource. Use the worker role (e.g. `gustav_worker`), not a superuser.
    pub secret_ref: SecretKeyRef,
}

/// Network isolation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.runnerEgress) || !has(self.policies) || self.policies").message("runnerEgress needs policies: true"))]
pub struct NetworkSpec {
    /// Create NetworkPolicies (default true): Ollama accepts traffic only from this worker's
    /// runners, its model-pull Job and the operator; runners accept traffic only on their HTTP
    /// port from the operator and `metricsFrom`.
    #[serde(default = "crate::runner::default_true")]
    pub policies: bool,
    /// Let Ollama reach public addresses on `modelPullPorts` to pull models (default true) —
    /// only while a pull is wanted (models missing or a pull Job running); otherwise, and when
    /// false, Ollama has no egress but DNS and models must be provided on the volume.
    #[serde(default = "crate::runner::default_true")]
    pub allow_model_pulls: bool,
    /// TCP ports Ollama may reach on public addresses while pulling (default `[443]`; add 80
    /// only for a registry served over plain HTTP).
    #[serde(default = "default_model_pull_ports")]
    #[schemars(length(min = 1, max = 4), inner(range(min = 1, max = 65535)))]
    pub model_pull_ports: Vec<i32>,
    /// Address blocks (CIDR) of DNS servers outside the cluster's pods that the policed pods
    /// may ask on port 53, in addition to DNS pods in any namespace. Default: NodeLocal
    /// DNSCache's link-local `169.254.20.10/32`; add the cluster DNS Service's IP block if
    /// your network plugin evaluates policies before Service translation.
    #[serde(default = "default_dns_cidrs")]
    #[schemars(
        length(max = 8),
        inner(
            length(min = 9, max = 43),
            regex(pattern = r"^[0-9a-fA-F:.]+/[0-9]{1,3}$")
        )
    )]
    #[x_kube(validation = Rule::new("self.all(c, isCIDR(c))").message("dnsCidrs must be CIDRs, e.g. 169.254.20.10/32"))]
    pub dns_cidrs: Vec<String>,
    /// Extra peers allowed to reach the runners' HTTP port (health and `/metrics`), e.g. the
    /// Prometheus namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub metrics_from: Vec<NetworkPolicyPeer>,
    /// Opt in to restricting the runners' egress too: DNS, this worker's Ollama (the managed
    /// one, or an external one's namespace on its URL's port), and the peers given here for
    /// the database, Supabase and anything else. Unset (default): the runners' egress is not
    /// restricted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_egress: Option<RunnerEgress>,
}

/// Where the runners may connect when their egress is restricted (besides DNS and this
/// worker's Ollama, which are always allowed).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunnerEgress {
    /// The PostgreSQL server(s) of `database.secretRef`'s DSN.
    pub database: EgressTarget,
    /// Supabase (needed when `storage.supabase` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supabase: Option<EgressTarget>,
    /// Anything else the runners must reach, e.g. an external Ollama's pods on a port other
    /// than its URL's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub others: Vec<EgressTarget>,
}

/// Peers and TCP ports of one egress destination.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct EgressTarget {
    /// Who: pods (`podSelector`, `namespaceSelector`) or addresses (`ipBlock`).
    #[schemars(length(min = 1, max = 16))]
    pub to: Vec<NetworkPolicyPeer>,
    /// TCP ports, e.g. `[5432]` for PostgreSQL, `[443]` or `[8000]` for Supabase.
    #[schemars(length(min = 1, max = 8), inner(range(min = 1, max = 65535)))]
    pub ports: Vec<i32>,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        NetworkSpec {
            policies: true,
            allow_model_pulls: true,
            model_pull_ports: default_model_pull_ports(),
            dns_cidrs: default_dns_cidrs(),
            metrics_from: Vec::new(),
            runner_egress: None,
        }
    }
}

fn default_model_pull_ports() -> Vec<i32> {
    vec![443]
}

/// NodeLocal DNSCache's usual address.
fn default_dns_cidrs() -> Vec<String> {
    vec!["169.254.20.10/32".into()]
}

impl LearningWorkerSpec {
    /// Whether the operator runs an Ollama for this worker (local backend, managed mode).
    pub fn manages_ollama(&self) -> bool {
        self.ai.backend == crate::ai::Backend::Local
            && self.ollama.mode == crate::ollama::OllamaMode::Managed
    }
}
