//! Reads what the status needs: the child Deployments and the pull Job, the pods' problems
//! (all from the watch caches, `crate::caches`: no API request), and over HTTP the runners' health report and queue metrics (through their Service) and
//! Ollama's `/api/version`, `/api/tags`, `/api/ps`. Read-only.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use learning_crds::ai::Backend;
use learning_crds::ollama::OllamaMode;
use learning_crds::LearningWorker;

use crate::caches::Caches;
use crate::desired::{names, ollama, runner, OLLAMA_PORT, RUNNER_PORT};
use crate::observed::{Observed, PullJob, Workload};
use crate::pod_issues;
use crate::probes::{self, Probe};

/// The runner's health path (contract §9).
pub use learning_contract::health::HEALTH_PATH;

/// HTTP GET for the probes; the real one uses reqwest, tests script the answers.
#[async_trait::async_trait]
pub trait Prober: Send + Sync {
    /// GETs `url`; returns the status code and the body, or why it failed.
    async fn get(&self, url: &str) -> Result<(u16, String), String>;
}

/// The real prober: plain HTTP to in-cluster Services, short timeouts, no redirects.
pub struct HttpProber {
    client: reqwest::Client,
}

impl HttpProber {
    /// A prober with a 5-second timeout.
    pub fn new() -> Result<Self, reqwest::Error> {
        Ok(HttpProber {
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
        })
    }
}

#[async_trait::async_trait]
impl Prober for HttpProber {
    async fn get(&self, url: &str) -> Result<(u16, String), String> {
        let resp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {}", e.without_url()))?;
        let code = resp.status().as_u16();
        let body = resp
            .text()
            .await
            .map_err(|e| format!("GET {url}: {}", e.without_url()))?;
        Ok((code, body))
    }
}

async fn probe<T>(
    prober: &dyn Prober,
    url: &str,
    ok_codes: &[u16],
    parse: impl Fn(&str) -> Result<T, String>,
) -> Probe<T> {
    match prober.get(url).await {
        Ok((code, body)) if ok_codes.contains(&code) => match parse(&body) {
            Ok(v) => Probe::Ok(v),
            Err(e) => Probe::Failed(e),
        },
        Ok((code, _)) => Probe::Failed(format!("GET {url} answered {code}")),
        Err(e) => Probe::Failed(e),
    }
}

fn workload(d: &Deployment) -> Workload {
    let s = d.status.clone().unwrap_or_default();
    Workload {
        counts: learning_crds::status::ReplicaCounts {
            desired: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            ready: s.ready_replicas.unwrap_or(0),
            available: s.available_replicas.unwrap_or(0),
            updated: s.updated_replicas.unwrap_or(0),
        },
        observed_current: s.observed_generation >= d.metadata.generation,
    }
}

fn pull_job(job: &Job) -> PullJob {
    let s = job.status.clone().unwrap_or_default();
    let failed = s
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Failed" && c.status == "True")
        .map(|c| {
            c.message
                .clone()
                .or(c.reason.clone())
                .unwrap_or_else(|| "failed".into())
        });
    let models = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.args.clone())
        .map(|a| a.into_iter().skip(1).collect())
        .unwrap_or_default();
    PullJob {
        name: job.metadata.name.clone().unwrap_or_default(),
        models,
        succeeded: s.succeeded.unwrap_or(0) > 0,
        failed,
    }
}

/// A pod that is running and not being deleted (its HTTP server may answer, ready or not).
pub fn is_running(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .is_some_and(|s| s.phase.as_deref() == Some("Running"))
}

/// Pods and Jobs of one component of `worker`: its selector labels (the name label too, so
/// another app's pods with the same instance and component labels are not mistaken for it).
fn selector(worker: &str, component: &str) -> BTreeMap<String, String> {
    crate::desired::selector_labels(worker, component)
}

/// Observes one LearningWorker: the runners, then a managed Ollama's objects, then Ollama's
/// API (managed, or external when the operator can reach it).
pub async fn observe(
    caches: &Caches,
    prober: &dyn Prober,
    lw: &LearningWorker,
    ns: &str,
) -> Observed {
    let worker = lw.metadata.name.clone().unwrap_or_default();
    let mut o = Observed {
        ollama_url: runner::ollama_url(lw),
        ..Observed::default()
    };
    observe_runners(caches, prober, &worker, ns, &mut o).await;
    let ollama_base = if lw.spec.manages_ollama() {
        observe_managed_ollama(caches, &worker, ns, &mut o);
        o.ollama
            .as_ref()
            .filter(|w| w.counts.ready > 0)
            .map(|_| format!("http://{}.{ns}.svc:{OLLAMA_PORT}", names::ollama(&worker)))
    } else if is_external(lw) {
        lw.spec
            .ollama
            .url
            .as_deref()
            .and_then(|u| operator_reachable_url(u, ns))
    } else {
        None
    };
    if let Some(base) = ollama_base {
        probe_ollama(prober, &base, &mut o).await;
    }
    o
}

/// A Deployment and the pods of its component.
fn observe_workload(
    caches: &Caches,
    ns: &str,
    deployment: &str,
    pods: &BTreeMap<String, String>,
) -> (Option<Workload>, Vec<Pod>) {
    let workload = caches
        .get::<Deployment>(ns, deployment)
        .as_deref()
        .map(workload);
    let pods = caches
        .matching::<Pod>(ns, pods)
        .into_iter()
        .map(|p| (*p).clone())
        .collect();
    (workload, pods)
}

/// The runner Deployment, its pods' problems and, once a runner runs, its health report and
/// queue metrics.
async fn observe_runners(
    caches: &Caches,
    prober: &dyn Prober,
    worker: &str,
    ns: &str,
    o: &mut Observed,
) {
    let runner_pods;
    (o.runner, runner_pods) = observe_workload(
        caches,
        ns,
        &names::runner(worker),
        &selector(worker, runner::COMPONENT),
    );
    o.runner_pods = pod_issues::issues(&runner_pods);
    // Runners are unready exactly when the database, the schema or Ollama are the problem,
    // and their health report says which: ask as soon as one runs (the runner Service
    // publishes not-ready addresses), not only once one is ready.
    let running = runner_pods.iter().filter(|p| is_running(p)).count();
    if running > 0 || o.runner.as_ref().is_some_and(|w| w.counts.ready > 0) {
        let base = format!("http://{}.{ns}.svc:{RUNNER_PORT}", names::runner(worker));
        o.health = probe(
            prober,
            &format!("{base}{HEALTH_PATH}"),
            &[200, 503],
            probes::parse_health,
        )
        .await;
        o.queue = probe(
            prober,
            &format!("{base}/metrics"),
            &[200],
            probes::parse_queue_metrics,
        )
        .await;
    }
}

/// A managed Ollama's Deployment, its pods' problems, the model volume claim and the
/// model-pull Jobs (the newest, and whether any still runs).
fn observe_managed_ollama(caches: &Caches, worker: &str, ns: &str, o: &mut Observed) {
    let ollama_pods;
    (o.ollama, ollama_pods) = observe_workload(
        caches,
        ns,
        &names::ollama(worker),
        &selector(worker, ollama::COMPONENT),
    );
    o.ollama_pods = pod_issues::issues(&ollama_pods);
    o.models_claim = caches
        .get::<PersistentVolumeClaim>(ns, &names::models_pvc(worker))
        .as_deref()
        .map(ollama::ExistingClaim::of);
    let mut list = caches.matching::<Job>(ns, &selector(worker, ollama::PULL_COMPONENT));
    list.sort_by(|a, b| {
        a.metadata
            .creation_timestamp
            .cmp(&b.metadata.creation_timestamp)
    });
    o.pull_job = list.last().map(|job| pull_job(job));
    o.pull_active = list.iter().any(|job| {
        let j = pull_job(job);
        job.metadata.deletion_timestamp.is_none() && !j.succeeded && j.failed.is_none()
    });
}

/// Ollama's `/api/version`, then (when it answered) `/api/tags` and `/api/ps`; when it
/// failed, those fail the same way.
async fn probe_ollama(prober: &dyn Prober, base: &str, o: &mut Observed) {
    o.ollama_version = probe(
        prober,
        &format!("{base}/api/version"),
        &[200],
        probes::parse_version,
    )
    .await;
    if o.ollama_version.ok().is_some() {
        o.tags = probe(
            prober,
            &format!("{base}/api/tags"),
            &[200],
            probes::parse_tags,
        )
        .await;
        o.ps = probe(prober, &format!("{base}/api/ps"), &[200], probes::parse_ps).await;
    } else if let Probe::Failed(e) = &o.ollama_version {
        o.tags = Probe::Failed(e.clone());
        o.ps = Probe::Failed(e.clone());
    }
}

/// The models the pull Job should fetch: the required ones Ollama does not list.
pub fn missing_models(lw: &LearningWorker, o: &Observed) -> Option<Vec<String>> {
    let tags = o.tags.ok()?;
    let missing: Vec<String> = ollama::required_models(lw)
        .into_iter()
        .filter(|m| !tags.iter().any(|t| probes::same_model(t, m)))
        .collect();
    (!missing.is_empty()).then_some(missing)
}

/// Whether the external URL's host can be reached from the operator (a dot-less service name
/// in the worker's namespace); `localhost` URLs point into the runner pod and cannot.
pub fn operator_reachable_url(url: &str, namespace: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.starts_with('[') => (h, Some(p)),
        _ => (authority, None),
    };
    if host.eq_ignore_ascii_case("localhost")
        || host.starts_with('[')
        || host.parse::<std::net::IpAddr>().is_ok()
    {
        return None;
    }
    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
    Some(format!(
        "{scheme}://{host}.{namespace}.svc{port}{}",
        path.trim_end_matches('/')
    ))
}

/// Whether the worker uses an external Ollama (`mode: external` with the local backend).
pub fn is_external(lw: &LearningWorker) -> bool {
    lw.spec.ollama.mode == OllamaMode::External && lw.spec.ai.backend == Backend::Local
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_urls_reachable_from_the_operator() {
        assert_eq!(
            operator_reachable_url("http://ollama:11434", "gustav").as_deref(),
            Some("http://ollama.gustav.svc:11434")
        );
        assert_eq!(
            operator_reachable_url("http://ollama/base/", "g").as_deref(),
            Some("http://ollama.g.svc/base")
        );
        assert_eq!(operator_reachable_url("http://localhost:11434", "g"), None);
        assert_eq!(operator_reachable_url("http://127.0.0.1:11434", "g"), None);
    }
}
