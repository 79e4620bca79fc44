//! What the operator observed of one LearningWorker, as plain data: its workloads, the pods'
//! problems, the answers of the runners and of Ollama, the pull Job and the model volume.
//! `observe` fills it in; `status` computes the conditions from it.

use learning_crds::status::{HealthReport, QueueStatus, ReplicaCounts};

use crate::desired::ollama::ExistingClaim;
use crate::pod_issues::PodIssue;
use crate::probes::{LoadedModel, Probe};

/// State of a Deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workload {
    /// Pod counts.
    pub counts: ReplicaCounts,
    /// The Deployment controller has seen the latest template.
    pub observed_current: bool,
}

/// State of the model-pull Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullJob {
    /// Job name.
    pub name: String,
    /// The models it pulls.
    pub models: Vec<String>,
    /// Finished successfully.
    pub succeeded: bool,
    /// Failed for good (the message says why).
    pub failed: Option<String>,
}

/// Everything observed for one LearningWorker.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Runner Deployment, when it exists.
    pub runner: Option<Workload>,
    /// Problems of runner pods.
    pub runner_pods: Vec<PodIssue>,
    /// Health report through the runner Service.
    pub health: Probe<HealthReport>,
    /// Queue depth from the runners' metrics.
    pub queue: Probe<QueueStatus>,
    /// Managed Ollama Deployment, when it exists.
    pub ollama: Option<Workload>,
    /// Problems of Ollama pods.
    pub ollama_pods: Vec<PodIssue>,
    /// `/api/version`.
    pub ollama_version: Probe<String>,
    /// `/api/tags`.
    pub tags: Probe<Vec<String>>,
    /// `/api/ps`.
    pub ps: Probe<Vec<LoadedModel>>,
    /// The newest pull Job, when one exists.
    pub pull_job: Option<PullJob>,
    /// Some pull Job of this worker is still running.
    pub pull_active: bool,
    /// The URL the runners use for Ollama.
    pub ollama_url: Option<String>,
    /// The model PersistentVolumeClaim, when it exists.
    pub models_claim: Option<ExistingClaim>,
}

impl Default for Observed {
    fn default() -> Self {
        Observed {
            runner: None,
            runner_pods: Vec::new(),
            health: Probe::Skipped,
            queue: Probe::Skipped,
            ollama: None,
            ollama_pods: Vec::new(),
            ollama_version: Probe::Skipped,
            tags: Probe::Skipped,
            ps: Probe::Skipped,
            pull_job: None,
            pull_active: false,
            ollama_url: None,
            models_claim: None,
        }
    }
}
