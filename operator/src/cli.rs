//! The command line: `crd`, `render -f FILE`, `rbac`, `run`, with every setting also readable from the
//! environment. Parsed once in `main`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Kubernetes operator for GUSTAV's learning worker.
#[derive(Debug, Parser)]
#[command(name = "learning-operator", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the LearningWorker CustomResourceDefinition as YAML.
    Crd,
    /// Print every child object the operator would apply for a LearningWorker, as YAML.
    Render(RenderArgs),
    /// Print the RBAC rules the operator needs, as the `rules:` list of a ClusterRole.
    Rbac(RbacArgs),
    /// Run the controller.
    Run(RunArgs),
}

/// Arguments of `rbac`.
#[derive(Debug, clap::Args)]
pub struct RbacArgs {
    /// Print instead the rules of the Role in the operator's namespace (the leader Lease; only
    /// needed with leader election on).
    #[arg(long, conflicts_with = "keda")]
    pub leader_election: bool,
    /// Print instead the rules for the `keda` autoscaling engine (ScaledObjects and
    /// TriggerAuthentications; the chart adds them to the ClusterRole with `keda.enabled`).
    #[arg(long)]
    pub keda: bool,
}

/// Arguments of `render`.
#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// The LearningWorker YAML file (`-` for standard input).
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    /// Namespace the operator runs in (NetworkPolicies admit it).
    #[arg(long, env = "OPERATOR_NAMESPACE", default_value = "learning-system")]
    pub operator_namespace: String,
    /// Render the model-pull Job for these models (as if they were missing).
    #[arg(long = "pull", value_delimiter = ',')]
    pub pull: Vec<String>,
    /// The runner image for a LearningWorker that names none (`spec.runner.image` unset).
    #[arg(long, env = "RUNNER_IMAGE")]
    pub runner_image: Option<String>,
}

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Namespace the operator runs in (the leader Lease lives there; NetworkPolicies admit it).
    #[arg(long, env = "OPERATOR_NAMESPACE", default_value = "learning-system")]
    pub operator_namespace: String,
    /// The runner image for LearningWorkers that name none (`spec.runner.image` unset); the
    /// Helm chart sets it to the runner image of the operator's own version.
    #[arg(long, env = "RUNNER_IMAGE")]
    pub runner_image: Option<String>,
    /// This replica's identity for leader election and Events (the pod name).
    #[arg(long, env = "POD_NAME", default_value = "learning-operator")]
    pub pod_name: String,
    /// Address of `/metrics`, `/livez`, `/readyz`.
    #[arg(long, env = "OPERATOR_HTTP_ADDR", default_value = "0.0.0.0:8081")]
    pub http_addr: SocketAddr,
    /// Take the leader Lease before reconciling (needed with more than one replica). `false`:
    /// no Lease at all (no Lease RBAC needed); the controller starts at once — run exactly one
    /// replica then, and never two at a time (the chart uses the Recreate strategy).
    #[arg(
        long,
        env = "LEADER_ELECTION",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_name = "true|false"
    )]
    pub leader_election: bool,
    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "LEADER_LEASE_NAME",
        default_value = "learning-operator-leader"
    )]
    pub lease_name: String,
    /// Seconds a leader's Lease is valid without renewal.
    #[arg(long, env = "LEADER_LEASE_SECONDS", default_value_t = 15)]
    pub lease_seconds: u32,
    /// Log level or filter.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}
