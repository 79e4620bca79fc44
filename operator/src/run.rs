//! `learning-operator run`: logging, the HTTP server, then `operate` — leader election (unless
//! switched off) and the controller. `operate` is what the binary runs and what the whole-loop
//! tests run against a fake API server. It returns `Ok` after a graceful shutdown (SIGTERM or
//! SIGINT in the binary: running reconciles finish, then a leader releases its Lease so a
//! standby takes over at once), and `Err` when leadership is lost (the binary then exits 1,
//! and Kubernetes restarts the pod as a standby).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::FutureExt as _;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};

use crate::cli::RunArgs;
use crate::controller::{self, Context, Requeue};
use crate::http::{router, HttpState};
use crate::leader::LeaderElector;
use crate::metrics::Metrics;
use crate::observe::{HttpProber, Prober};

/// What `operate` needs besides the client and the prober.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Watch only this namespace (`None`: all).
    pub namespace: Option<String>,
    /// The operator's namespace (the Lease lives there).
    pub operator_namespace: String,
    /// This replica's identity (Lease holder, Event instance).
    pub identity: String,
    /// Name of the leader Lease.
    pub lease_name: String,
    /// Seconds a Lease is valid without renewal.
    pub lease_seconds: u32,
    /// Take the Lease before reconciling; `false`: no Lease at all, reconcile at once (one
    /// replica only).
    pub leader_election: bool,
    /// Requeue intervals of the controller.
    pub requeue: Requeue,
    /// The runner image for LearningWorkers that name none.
    pub default_runner_image: Option<String>,
}

impl From<&RunArgs> for Settings {
    fn from(a: &RunArgs) -> Self {
        Settings {
            namespace: a.namespace.clone(),
            operator_namespace: a.operator_namespace.clone(),
            identity: a.pod_name.clone(),
            lease_name: a.lease_name.clone(),
            lease_seconds: a.lease_seconds,
            leader_election: a.leader_election,
            requeue: Requeue::default(),
            default_runner_image: a.runner_image.clone(),
        }
    }
}

/// Why `operate` stopped leading.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Another replica holds the Lease now.
    #[error("another replica took over the leader Lease")]
    LeadershipLost,
    /// The Lease could not be renewed within the renew deadline (two thirds of its duration),
    /// so the leader stepped down before the Lease could expire under it.
    #[error("the leader Lease could not be renewed within {deadline:?}: {last_error}")]
    RenewFailed {
        /// The renew deadline.
        deadline: Duration,
        /// What the last attempt ended with (an API error, or "no answer" when it hung).
        last_error: String,
    },
}

/// How often the Lease is renewed (and a standby retries): a third of its duration.
pub fn renew_period(lease_seconds: u32) -> Duration {
    Duration::from_secs_f64(f64::from(lease_seconds.max(3)) / 3.0)
}

/// How long a leader keeps trying to renew before it steps down: two thirds of the Lease
/// duration (Kubernetes' own controllers use 10 s of 15 s). Every attempt is cut off at this
/// deadline, so a hung API connection cannot keep a leader reconciling after the Lease has
/// expired and a standby has taken over.
pub fn renew_deadline(lease_seconds: u32) -> Duration {
    Duration::from_secs_f64(f64::from(lease_seconds.max(3)) * 2.0 / 3.0)
}

/// The wait before another renewal attempt after a failed one.
fn retry_period(period: Duration) -> Duration {
    (period / 4).max(Duration::from_millis(100))
}

/// How long a graceful stop waits for the Lease release before giving up (the Lease then
/// expires by itself).
pub const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// With leader election: waits for the Lease, then runs the controller while renewing it.
/// Without: runs the controller at once. Returns `Ok` once `shutdown` has completed and the
/// controller has stopped (a leader then releases the Lease), `Err` when leadership is lost
/// (the controller is stopped first, the Lease is not ours to release).
pub async fn operate(
    client: Client,
    prober: Arc<dyn Prober>,
    metrics: Metrics,
    ready: Arc<AtomicBool>,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let shutdown = shutdown.boxed().shared();
    let ctx = |client: Client| {
        Arc::new(
            Context::new(
                client,
                prober.clone(),
                metrics.clone(),
                settings.operator_namespace.clone(),
                settings.identity.clone(),
            )
            .with_requeue(settings.requeue)
            .with_default_runner_image(settings.default_runner_image.clone()),
        )
    };
    if !settings.leader_election {
        // One replica by contract: no Lease, not ready until the first list.
        metrics.leader.set(1);
        tracing::info!(event = "learning.operator.leading", identity = %settings.identity, leader_election = false);
        controller::run(ctx(client), settings.namespace.clone(), ready, shutdown).await;
        metrics.leader.set(0);
        tracing::info!(event = "learning.operator.stopped");
        return Ok(());
    }

    let elector = LeaderElector::new(
        Api::<Lease>::namespaced(client.clone(), &settings.operator_namespace),
        settings.lease_name.clone(),
        settings.identity.clone(),
        i32::try_from(settings.lease_seconds).unwrap_or(i32::MAX),
    );
    let period = renew_period(settings.lease_seconds);
    ready.store(true, Ordering::Relaxed); // a standby is healthy
    let Some(acquired_at) = acquire(&elector, period, shutdown.clone()).await else {
        tracing::info!(event = "learning.operator.stopped", leading = false);
        return Ok(());
    };
    ready.store(false, Ordering::Relaxed);
    metrics.leader.set(1);
    tracing::info!(event = "learning.operator.leading", identity = %settings.identity, leader_election = true);
    // On shutdown the controller drains while `hold` keeps renewing; then the Lease is released.
    let result = tokio::select! {
        () = controller::run(ctx(client), settings.namespace.clone(), ready, shutdown) => Ok(()),
        lost = hold(&elector, period, settings.lease_seconds, acquired_at) => Err(lost),
    };
    metrics.leader.set(0);
    if result.is_ok() {
        match tokio::time::timeout(RELEASE_TIMEOUT, elector.release()).await {
            Ok(Ok(released)) => {
                tracing::info!(event = "learning.operator.lease_released", released);
            }
            Ok(Err(e)) => {
                tracing::warn!(event = "learning.operator.lease_release_failed", error = %e);
            }
            Err(_) => tracing::warn!(
                event = "learning.operator.lease_release_failed",
                error = "timed out"
            ),
        }
        tracing::info!(event = "learning.operator.stopped", leading = true);
    }
    result
}

/// Tries to take the Lease every `period` until it is ours (returns when the successful
/// attempt started) or `shutdown` completes (`None`).
async fn acquire(
    elector: &LeaderElector,
    period: Duration,
    shutdown: impl Future<Output = ()>,
) -> Option<Instant> {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // An attempt is never cancelled halfway: a write the server applied is known to us.
        let attempt = Instant::now();
        match elector.try_acquire_or_renew().await {
            Ok(true) => return Some(attempt),
            Ok(false) => {}
            Err(e) => tracing::warn!(event = "learning.operator.lease_acquire_retry", error = %e),
        }
        tokio::select! {
            () = &mut shutdown => return None,
            () = tokio::time::sleep(period) => {}
        }
    }
}

/// A future that completes on SIGTERM or SIGINT (Ctrl-C): what the binary's graceful shutdown
/// waits for. The handlers are installed here, before the future is first polled.
#[cfg(unix)]
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(event = "learning.operator.shutdown_signal", signal = name);
    })
}

/// A future that completes on Ctrl-C (no SIGTERM outside Unix).
#[cfg(not(unix))]
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!(
            event = "learning.operator.shutdown_signal",
            signal = "ctrl-c"
        );
    })
}

/// Renews the Lease every `period` until it is lost or cannot be renewed within the renew
/// deadline. The deadline counts from the start of the last successful attempt (the
/// `renewTime` it wrote is no earlier), so the leader has stepped down — and the caller has
/// stopped the controller — before the Lease it last wrote can expire.
async fn hold(
    elector: &LeaderElector,
    period: Duration,
    lease_seconds: u32,
    acquired_at: Instant,
) -> RunError {
    let deadline_after = renew_deadline(lease_seconds);
    let mut renewed_at = acquired_at;
    let mut wait = period;
    loop {
        let deadline = tokio::time::Instant::from_std(renewed_at + deadline_after);
        tokio::time::sleep_until((tokio::time::Instant::now() + wait).min(deadline)).await;
        let attempt = Instant::now();
        let last_error =
            match tokio::time::timeout_at(deadline, elector.try_acquire_or_renew()).await {
                Ok(Ok(true)) => {
                    renewed_at = attempt;
                    wait = period;
                    continue;
                }
                Ok(Ok(false)) => {
                    tracing::error!(event = "learning.operator.leadership_lost");
                    return RunError::LeadershipLost;
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "no answer before the renew deadline".to_owned(),
            };
        if tokio::time::Instant::now() >= deadline {
            tracing::error!(event = "learning.operator.lease_renew_failed", error = %last_error, deadline_seconds = deadline_after.as_secs_f64());
            return RunError::RenewFailed {
                deadline: deadline_after,
                last_error,
            };
        }
        tracing::warn!(event = "learning.operator.lease_renew_retry", error = %last_error);
        wait = retry_period(period);
    }
}

/// The longest the client waits to connect to the API server.
pub const API_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest the client waits for the next bytes of an answer once a request is sent. Longer
/// than a watch stays open without a bookmark (the watcher asks for at most 290 s), so only a
/// connection that stopped answering trips it.
pub const API_READ_TIMEOUT: Duration = Duration::from_secs(295);
/// The longest the client takes to send a request.
pub const API_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The Kubernetes client from the in-cluster or kubeconfig settings, with connect, read and
/// write timeouts: a half-open connection fails the call instead of hanging the controller.
async fn api_client() -> anyhow::Result<Client> {
    let mut config = kube::Config::infer()
        .await
        .context("reading the Kubernetes client configuration")?;
    config.connect_timeout = Some(API_CONNECT_TIMEOUT);
    config.read_timeout = Some(API_READ_TIMEOUT);
    config.write_timeout = Some(API_WRITE_TIMEOUT);
    // The read timeout counts from each request, not from when a pooled connection went idle.
    config.reset_reader_on_write = true;
    Client::try_from(config).context("connecting to the Kubernetes API")
}

/// Runs the controller (the `run` subcommand).
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&args.log_level).context("LOG_LEVEL")?,
        )
        .init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run_async(args))
}

async fn run_async(args: RunArgs) -> anyhow::Result<()> {
    let shutdown = shutdown_signal().context("installing the SIGTERM/SIGINT handlers")?;
    let metrics = Metrics::new()?;
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("binding {}", args.http_addr))?;
    let state = HttpState {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    tokio::spawn(async move { axum::serve(listener, router(state)).await });

    let client = api_client().await?;
    let prober = Arc::new(HttpProber::new()?);
    operate(
        client,
        prober,
        metrics,
        ready,
        Settings::from(&args),
        shutdown,
    )
    .await
    .context("leading")?;
    Ok(())
}
