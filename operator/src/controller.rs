//! The controller: shared context, the reconcile pipeline (observe → validate → desire → apply
//! → prune → report), the error policy (exponential backoff with jitter, short retry on
//! conflicts), and `run`, which wires the watches (`crate::watches`: the LearningWorker
//! stream filtered to spec changes, one cache-filling watch per child kind) to the
//! controller. After each
//! status write the worker's condition and queue metrics follow it; series of LearningWorkers no
//! longer in the watch cache are dropped after every reconcile result (including the "object
//! not found" a deleted one gives).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{reflector, watcher, Controller, WatchStreamExt};
use kube::{Client, ResourceExt};
use learning_crds::{LearningWorker, LearningWorkerStatus};

use crate::autoscale::apply::KedaOutcome;
use crate::caches::{self, Caches, Feeds};
use crate::desired::{self, ChildKind, RenderContext, MANAGER};
use crate::error::ReconcileError;
use crate::metrics::Metrics;
use crate::observe::{self, Prober};
use crate::watches::{api, cached_watch, spec_changes, Owns};
use crate::written::Written;
use crate::{apply, autoscale, status};

/// Reconciles at once, at most: each holds its worker's built children and API calls in
/// flight, so an unbounded number (a thousand workers at start) costs memory the allocator
/// keeps; the API server answers a few dozen at a time anyway.
pub const CONCURRENCY: u16 = 16;

/// How often the per-term memory forgets deleted LearningWorkers.
const MEMORY_SWEEP: Duration = Duration::from_secs(30);

/// Requeue while something is changing.
pub const REQUEUE_BUSY: Duration = Duration::from_secs(10);
/// Requeue when stable (health, queue depth and models are polled, not watched).
pub const REQUEUE_IDLE: Duration = Duration::from_secs(30);

/// How soon a healthy worker is reconciled again (health, queue depth and models are polled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requeue {
    /// While something is changing.
    pub busy: Duration,
    /// When stable.
    pub idle: Duration,
}

impl Default for Requeue {
    fn default() -> Self {
        Requeue {
            busy: REQUEUE_BUSY,
            idle: REQUEUE_IDLE,
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    /// API client.
    pub client: Client,
    /// HTTP prober for runners and Ollama.
    pub prober: Arc<dyn Prober>,
    /// Event recorder.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Metrics,
    /// The operator's namespace.
    pub operator_namespace: String,
    /// Consecutive failures per object (for the backoff).
    pub failures: Mutex<HashMap<String, u32>>,
    /// Requeue intervals.
    pub requeue: Requeue,
    /// The runner image for LearningWorkers that name none (`RUNNER_IMAGE`).
    pub default_runner_image: Option<String>,
    /// What this operator wrote in this leadership term (fresher than the watch cache).
    pub written: Written,
    /// The watch caches of the children and pods (what a reconcile reads).
    pub caches: Caches,
    /// The caches' writing ends, until `run` hands them to the watches.
    feeds: Mutex<Option<Feeds>>,
}

impl Context {
    /// A context for `client`.
    pub fn new(
        client: Client,
        prober: Arc<dyn Prober>,
        metrics: Metrics,
        operator_namespace: String,
        instance: String,
    ) -> Self {
        let (caches, feeds) = caches::new();
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance: Some(instance),
            },
        );
        Context {
            client,
            prober,
            recorder,
            metrics,
            operator_namespace,
            failures: Mutex::new(HashMap::new()),
            requeue: Requeue::default(),
            default_runner_image: None,
            written: Written::default(),
            caches,
            feeds: Mutex::new(Some(feeds)),
        }
    }

    /// The same context with a default runner image.
    pub fn with_default_runner_image(mut self, image: Option<String>) -> Self {
        self.default_runner_image = image;
        self
    }

    /// The same context reading `caches` (filled by the caller, e.g. `Caches::holding`)
    /// instead of caches fed by `run`'s watches.
    pub fn with_caches(mut self, caches: Caches) -> Self {
        self.caches = caches;
        self.feeds = Mutex::new(None);
        self
    }

    /// The same context with other requeue intervals.
    pub fn with_requeue(mut self, requeue: Requeue) -> Self {
        self.requeue = requeue;
        self
    }
}

fn key(lw: &LearningWorker) -> String {
    format!("{}/{}", lw.namespace().unwrap_or_default(), lw.name_any())
}

/// One reconcile of one LearningWorker.
pub async fn reconcile(
    lw: Arc<LearningWorker>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    ctx.metrics.reconciles.inc();
    let result = reconcile_inner(&lw, &ctx).await;
    ctx.metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.failures.lock().map(|mut f| f.remove(&key(&lw))).ok();
    }
    result
}

async fn reconcile_inner(lw: &LearningWorker, ctx: &Context) -> Result<Action, ReconcileError> {
    let ns = lw.namespace().ok_or(ReconcileError::MissingMetadata)?;
    let name = lw
        .metadata
        .name
        .clone()
        .ok_or(ReconcileError::MissingMetadata)?;
    // The status this operator last wrote, even when the watch has not delivered it yet.
    let lw = ctx.written.freshest(lw);
    ctx.caches.wait_until_ready().await?;
    reconcile_worker(&lw, ctx, &ns, &name).await
}

/// The reconcile of a worker with a namespace and a name, in the `reconcile` span (entered
/// on every poll of the future, never held across an `.await`).
#[tracing::instrument(
    name = "reconcile",
    skip_all,
    fields(namespace = %ns, name = %name, generation = lw.metadata.generation)
)]
async fn reconcile_worker(
    lw: &LearningWorker,
    ctx: &Context,
    ns: &str,
    name: &str,
) -> Result<Action, ReconcileError> {
    // Validate: a bad spec is reported once and waits for a change (no hot loop).
    let mut errors = learning_crds::validate::validate(name, &lw.spec);
    let resolved = crate::runner_image::resolve(lw, ctx.default_runner_image.as_deref());
    if let Err(unset) = &resolved {
        errors.push(unset.clone());
    }
    let (true, Ok(resolved)) = (errors.is_empty(), resolved) else {
        ctx.metrics
            .errors
            .with_label_values(&["invalid_spec"])
            .inc();
        let outcome = status::invalid(lw, &errors, Timestamp::now());
        write_status(ctx, lw, &outcome.status).await?;
        ctx.metrics.observe_worker(ns, name, &outcome.status);
        apply::publish_transitions(&ctx.recorder, lw, &outcome.transitions).await;
        return Ok(Action::await_change());
    };

    // Observe, desire, apply.
    let observed = observe::observe(&ctx.caches, ctx.prober.as_ref(), lw, ns).await;
    // One instant for every decision of this reconcile (autoscaling, the idle GPU, status).
    let now = Timestamp::now();
    let builtin = autoscale::decide_builtin(lw, &observed, now);
    let idle_gpu = crate::idle_gpu::decide_observed(lw, &observed, now);
    let render = RenderContext {
        operator_namespace: ctx.operator_namespace.clone(),
        models_to_pull: observe::missing_models(lw, &observed),
        queue_visible: observed.queue.ok().map(|q| q.visible).or_else(|| {
            lw.status
                .as_ref()
                .and_then(|s| s.queue.as_ref())
                .map(|q| q.visible)
        }),
        models_claim: observed.models_claim.clone(),
        pull_active: observed.pull_active,
        runner_replicas: builtin.as_ref().and_then(|b| b.desired_replicas),
        ollama_released: idle_gpu.is_some_and(|d| d.released),
    };
    let children = desired::children(&resolved, &render);
    // Before the first apply without `replicas`; a failure stops here (retried).
    autoscale::apply::hand_over_replicas(&ctx.client, &ctx.caches, lw, ns).await?;
    let (applied, keda) = apply_all(ctx, lw, ns, &children).await;

    // Report.
    let apply_error = applied.as_ref().err().map(ToString::to_string);
    let mut outcome = status::compute(lw, &observed, apply_error.as_deref(), now);
    let rescaled = autoscale::rescale_note(lw, builtin.as_ref(), observed.queue.ok());
    let scaling = autoscale::engine_state(lw, builtin, &keda);
    outcome
        .transitions
        .extend(autoscale::report(lw, &mut outcome.status, scaling, now));
    write_status(ctx, lw, &outcome.status).await?;
    ctx.metrics.observe_worker(ns, name, &outcome.status);
    apply::publish_transitions(&ctx.recorder, lw, &outcome.transitions).await;
    if let (Some(note), Ok(())) = (rescaled, &applied) {
        autoscale::apply::publish_rescale(&ctx.recorder, lw, note).await;
    }
    applied?;
    let busy =
        outcome.status.conditions.iter().any(|c| {
            c.type_ == learning_crds::conditions::types::PROGRESSING && c.status == "True"
        });
    Ok(Action::requeue(if busy {
        ctx.requeue.busy
    } else {
        ctx.requeue.idle
    }))
}

/// Writes `status` unless it is already the object's status (nothing changed: no write), and
/// remembers it as written.
async fn write_status(
    ctx: &Context,
    lw: &LearningWorker,
    status: &LearningWorkerStatus,
) -> Result<(), ReconcileError> {
    if lw.status.as_ref() != Some(status) {
        apply::patch_status(&ctx.client, lw, status).await?;
    }
    ctx.written.status_written(lw, status);
    Ok(())
}

/// Applies the children, prunes the unwanted ones, then applies or removes the KEDA objects
/// (`autoscale::apply`); the first error, and what the KEDA step did.
async fn apply_all(
    ctx: &Context,
    lw: &LearningWorker,
    ns: &str,
    children: &desired::Children,
) -> (Result<(), ReconcileError>, KedaOutcome) {
    let target = apply::Target {
        client: &ctx.client,
        caches: &ctx.caches,
        written: &ctx.written,
    };
    let applied = match apply::apply_children(target, ns, children).await {
        Ok(()) => apply::prune_children(&ctx.client, &ctx.caches, &ctx.written, lw, ns, children)
            .await
            .map(drop),
        Err(e) => Err(e),
    };
    let keda = autoscale::apply::reconcile(&ctx.client, &ctx.written, lw, ns).await;
    match (applied, keda) {
        (applied, Ok(keda)) => (applied, keda),
        (applied, Err(e)) => (applied.and(Err(e)), KedaOutcome::failed(lw)),
    }
}

/// Delay before retrying after `failures` consecutive failures: 5 s doubling to 5 min, with
/// ±50 % jitter; conflicts retry after about a second.
pub fn backoff(failures: u32, conflict: bool, jitter: f64) -> Duration {
    let base = if conflict {
        1.0
    } else {
        (5.0 * 2f64.powi(failures.min(6) as i32)).min(300.0)
    };
    Duration::from_secs_f64(base * (0.5 + jitter.clamp(0.0, 1.0)))
}

/// The error policy: count, log, back off with jitter.
pub fn error_policy(lw: Arc<LearningWorker>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .errors
        .with_label_values(&[error.category()])
        .inc();
    let failures = ctx
        .failures
        .lock()
        .map(|mut f| {
            let n = f.entry(key(&lw)).or_insert(0);
            *n += 1;
            *n - 1
        })
        .unwrap_or(0);
    let delay = backoff(failures, error.is_conflict(), fastrand::f64());
    tracing::warn!(event = "learning.operator.reconcile_failed", object = %key(&lw), category = error.category(), error = %error, retry_in_s = delay.as_secs_f64());
    Action::requeue(delay)
}

/// Forgets deleted LearningWorkers: they leave the watch cache, and their metric series and
/// the per-term memory go with them.
struct Forget {
    cache: reflector::Store<LearningWorker>,
    ctx: Arc<Context>,
    last_sweep: Instant,
}

impl Forget {
    /// After every reconcile result: the series at once; the memory at most every
    /// [`MEMORY_SWEEP`] (a whole-cache pass).
    fn deleted_workers(&mut self) {
        let cache = &self.cache;
        self.ctx.metrics.retain_workers(|ns, name| {
            cache
                .get(&ObjectRef::<LearningWorker>::new(name).within(ns))
                .is_some()
        });
        if self.last_sweep.elapsed() >= MEMORY_SWEEP {
            self.last_sweep = Instant::now();
            let uids: HashSet<String> = cache.state().iter().filter_map(|lw| lw.uid()).collect();
            self.ctx.written.retain(|uid| uids.contains(uid));
        }
    }
}

/// Runs the controller until `shutdown` completes, then lets running reconciles finish;
/// `ready` is set once the LearningWorker watch has completed its initial list (the first
/// sync), even when there is nothing to reconcile.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let ns = namespace.as_deref();
    let children =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGER}"));
    let mut feeds = ctx
        .feeds
        .lock()
        .ok()
        .and_then(|mut f| f.take())
        .expect("controller::run needs a Context made by Context::new (its caches' feeds)");
    // The pods are read (their problems), never a reason to reconcile.
    let pods = tokio::spawn(
        cached_watch::<Pod>(&client, ns, &children, &mut feeds).for_each(|event| async move {
            if let Err(e) = event {
                tracing::warn!(event = "learning.operator.watch_failed", kind = "Pod", error = %e);
            }
        }),
    );
    let (reader, writer) = reflector::store();
    let workers = watcher(
        api::<LearningWorker>(&client, ns),
        watcher::Config::default(),
    )
    .default_backoff()
    // Never read, and often the largest part of a LearningWorker.
    .modify(|lw| lw.metadata.managed_fields = None)
    .reflect(writer);
    let controller = ChildKind::ALL.iter().fold(
        Controller::for_stream(spec_changes(workers), reader)
            .with_config(kube::runtime::controller::Config::default().concurrency(CONCURRENCY)),
        |controller, kind| {
            kind.visit(Owns {
                controller,
                client: &client,
                namespace: ns,
                config: &children,
                feeds: &mut feeds,
            })
        },
    );
    let store = controller.store();
    let synced = {
        let ready = ready.clone();
        async move {
            if store.wait_until_ready().await.is_ok() {
                ready.store(true, Ordering::Relaxed);
            }
        }
    };
    let mut forget = Forget {
        cache: controller.store(),
        ctx: ctx.clone(),
        last_sweep: Instant::now(),
    };
    let reconciling = controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(move |result| {
            if let Err(e) = result {
                tracing::debug!(event = "learning.operator.controller_error", error = %e);
            }
            forget.deleted_workers();
            futures::future::ready(())
        });
    futures::future::join(synced, reconciling).await;
    pods.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        assert_eq!(backoff(0, false, 0.5), Duration::from_secs(5));
        assert_eq!(backoff(1, false, 0.5), Duration::from_secs(10));
        assert_eq!(backoff(20, false, 0.5), Duration::from_secs(300));
        assert_eq!(backoff(20, false, 0.0), Duration::from_secs(150));
        assert_eq!(backoff(20, false, 1.0), Duration::from_secs(450));
        assert!(backoff(9, true, 0.5) <= Duration::from_secs(1));
    }
}
