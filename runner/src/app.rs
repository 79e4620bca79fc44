//! Wires the pieces together for each subcommand: the job loop with its HTTP server and
//! background tasks, `migrate`, and `healthcheck`.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::ai::ollama::monitor::OllamaMonitor;
use crate::ai::ollama::residency::OllamaResidency;
use crate::ai::ollama::OllamaClient;
use crate::ai::ollama_feedback::OllamaFeedback;
use crate::ai::ollama_vision::OllamaVision;
use crate::ai::stub::StubBackend;
use crate::ai::Adapters;
use crate::config::{Backend, RunnerConfig};
use crate::db::phase_locks::PgPhaseLocks;
use crate::db::queue;
use crate::http::{self, HttpState};
use crate::job::admission::{AdmissionSettings, ModelAdmission, PhaseLocks, Residency};
use crate::job::process::JobContext;
use crate::submission::storage::{RemoteStorage, SubmissionStorage};
use crate::telemetry::metrics::Metrics;
use crate::worker::wakeup;
use crate::worker::{BackendGate, RunSummary, RunnerState, Worker};

/// The migrations bundled into the binary (`migrations/` at the workspace root).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// How often the queue depth gauges are refreshed.
const QUEUE_REFRESH: Duration = Duration::from_secs(10);
/// How often Ollama is checked.
const OLLAMA_REFRESH: Duration = Duration::from_secs(10);
/// The longest a model pull at start may take.
const PULL_TIMEOUT: Duration = Duration::from_secs(3600);

/// A start-up failure of the job loop.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The Ollama client could not be set up.
    #[error("Ollama client: {0}")]
    Ollama(#[from] crate::ai::ollama::OllamaError),
    /// The Supabase storage settings are unusable.
    #[error(transparent)]
    Storage(#[from] crate::submission::storage::RemoteConfigError),
    /// The login role is a superuser or bypasses RLS.
    #[error("the database role bypasses row-level security (superuser or BYPASSRLS); use the gustav_worker login role")]
    PrivilegedRole,
    /// Metrics could not be registered.
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The HTTP port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The submission storage of the configuration.
pub fn submission_storage(config: &RunnerConfig) -> Result<SubmissionStorage, StartError> {
    let remote = match &config.storage.supabase_url {
        Some(url) => Some(RemoteStorage::new(
            url,
            &config.storage.bucket,
            config.storage.service_role_key.clone(),
        )?),
        None => None,
    };
    Ok(SubmissionStorage {
        root: config.storage.verify_root.clone(),
        bucket: config.storage.bucket.clone(),
        remote,
    })
}

/// Builds the adapters for the configured backend (and, for `local`, the Ollama monitor).
pub fn select_adapters(
    config: &RunnerConfig,
    metrics: &Metrics,
) -> Result<(Adapters, Option<OllamaMonitor>), StartError> {
    match config.ai.backend {
        Backend::Stub => {
            let stub = Arc::new(StubBackend::new(config.ai.stub_delay));
            let adapters = Adapters {
                backend: "stub",
                vision: stub.clone(),
                feedback: stub,
            };
            Ok((adapters, None))
        }
        Backend::Local => {
            let ai = &config.ai;
            let client = OllamaClient::new(&ai.ollama_base_url)?;
            let vision = OllamaVision::new(client.clone(), submission_storage(config)?, ai);
            let feedback = OllamaFeedback::new(client.clone(), ai, metrics.clone());
            let monitor = OllamaMonitor::new(
                client,
                vec![ai.vision_model.clone(), ai.feedback_model.clone()],
                ai.keep_alive.clone(),
                metrics.clone(),
            );
            let adapters = Adapters {
                backend: "local",
                vision: Arc::new(vision),
                feedback: Arc::new(feedback),
            };
            Ok((adapters, Some(monitor)))
        }
    }
}

/// The time the whole vision phase may take, a safety net above the adapter's own limits:
/// `AI_TIMEOUT_VISION` bounds each model call (a PDF costs one call per sheet, at most
/// `MAX_SHEETS`), and reading, decoding and rendering the file get `INPUT_BUDGET`.
pub fn phase_budget_vision(config: &RunnerConfig) -> Duration {
    match config.ai.backend {
        Backend::Stub => config.ai.timeout_vision,
        Backend::Local => {
            config.ai.timeout_vision * crate::submission::pages::MAX_SHEETS as u32
                + crate::submission::vision_input::INPUT_BUDGET
        }
    }
}

/// The time the whole feedback phase may take. `AI_TIMEOUT_FEEDBACK` bounds each model call
/// (inside the adapter); the local backend makes up to `ANALYSIS_ATTEMPTS` analysis calls and
/// one synthesis call.
pub fn phase_budget_feedback(config: &RunnerConfig) -> Duration {
    match config.ai.backend {
        Backend::Stub => config.ai.timeout_feedback,
        Backend::Local => {
            let calls = crate::ai::ollama_feedback::ANALYSIS_ATTEMPTS as u32 + 1;
            config.ai.timeout_feedback * calls + Duration::from_secs(5)
        }
    }
}

/// Checks Ollama once at start, pulls missing models when configured, and logs the outcome.
async fn prepare_ollama(monitor: &OllamaMonitor, pull_missing: bool) {
    let snapshot = monitor.refresh().await;
    if !snapshot.reachable {
        tracing::warn!(
            event = "learning.ollama.unreachable",
            base_url = monitor.client().base_url(),
            error = snapshot.error.as_deref().unwrap_or(""),
            "Ollama is not reachable; jobs will retry"
        );
        return;
    }
    if snapshot.missing.is_empty() {
        tracing::info!(event = "learning.ollama.models_present", models = ?monitor.models());
        return;
    }
    if !pull_missing {
        tracing::warn!(event = "learning.ollama.models_missing", missing = ?snapshot.missing,
            "configured models are not installed; pull them or set OLLAMA_PULL_MISSING=true");
        return;
    }
    for model in &snapshot.missing {
        tracing::info!(event = "learning.ollama.pull_started", model = %model);
        let mut last_decile = None;
        let result = monitor
            .client()
            .pull(model, PULL_TIMEOUT, |p| {
                if let (Some(total), Some(done)) = (p.total, p.completed) {
                    let decile = (done * 10).checked_div(total).unwrap_or(0);
                    if last_decile != Some(decile) {
                        last_decile = Some(decile);
                        tracing::info!(event = "learning.ollama.pull_progress", model = %model, percent = decile * 10, status = %p.status);
                    }
                }
            })
            .await;
        match result {
            Ok(()) => tracing::info!(event = "learning.ollama.pull_done", model = %model),
            Err(e) => {
                tracing::error!(event = "learning.ollama.pull_failed", model = %model, error = %e)
            }
        }
    }
    monitor.refresh().await;
}

/// Refuses a role that bypasses RLS unless allowed. It uses one direct connection (the pool
/// would refuse such a role itself, connection by connection, and retry); an unreachable
/// database is not an error here — the loop waits for it, and the pool keeps the guard.
async fn check_role(
    connect: &sqlx::postgres::PgConnectOptions,
    allow_privileged: bool,
) -> Result<(), StartError> {
    use sqlx::{ConnectOptions, Connection};
    let probe = async {
        let mut conn = connect.connect().await?;
        let bypasses = queue::role_bypasses_rls_on(&mut conn).await;
        let _ = conn.close().await;
        bypasses
    };
    match tokio::time::timeout(Duration::from_secs(5), probe).await {
        Ok(Ok(true)) if !allow_privileged => Err(StartError::PrivilegedRole),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => {
            tracing::warn!(event = "learning.runner.db_unreachable_at_start", error = %e, "will keep trying");
            Ok(())
        }
        Err(_) => {
            tracing::warn!(
                event = "learning.runner.db_unreachable_at_start",
                error = "timeout",
                "will keep trying"
            );
            Ok(())
        }
    }
}

async fn refresh_queue_metrics(pool: PgPool, metrics: Metrics, stop: CancellationToken) {
    loop {
        match queue::queue_depth(&pool).await {
            Ok(depth) => metrics.observe_queue(&depth),
            Err(_) => metrics.db_errors.with_label_values(&["queue_depth"]).inc(),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(QUEUE_REFRESH) => {}
        }
    }
}

/// Runs the job loop until a signal (or, with `exit_when_drained`, an empty queue).
pub async fn run(config: RunnerConfig, allow_privileged: bool) -> Result<RunSummary, StartError> {
    let metrics = Metrics::new()?;
    let (adapters, ollama) = select_adapters(&config, &metrics)?;
    metrics.set_build_info(adapters.backend);
    let pool = crate::db::lazy_pool(&config.database);
    check_role(&config.database.connect, allow_privileged).await?;
    let state = Arc::new(RunnerState {
        draining: Default::default(),
        progress: crate::worker::progress::Progress::new(crate::worker::progress::liveness_bound(
            config.worker.lease_duration,
            config.worker.poll_interval,
        )),
    });
    let shutdown = CancellationToken::new();
    tokio::spawn(crate::worker::shutdown::cancel_on_signal(shutdown.clone()));
    log_start(&config, adapters.backend);

    let mut http = HttpServer::start(&config, &metrics, &state, ollama.clone()).await?;
    let background_stop = CancellationToken::new();
    let wake = Arc::new(Notify::new());
    spawn_queue_watchers(&config, &pool, &metrics, &wake, &background_stop);
    let gate: Option<Arc<dyn BackendGate>> = match ollama {
        Some(monitor) => {
            Some(ollama_gate(monitor, &config, &state, &shutdown, &background_stop).await)
        }
        None => None,
    };

    let worker = Worker {
        ctx: job_context(&config, pool.clone(), adapters, metrics),
        config: config.worker.clone(),
        state,
        wake,
        gate,
    };
    let summary = worker.run(shutdown.clone()).await;

    background_stop.cancel();
    http.stop().await;
    pool.close().await;
    http.probe_pool.close().await;
    Ok(summary)
}

/// Logs the settings accepted with a fallback and the selected adapters.
fn log_start(config: &RunnerConfig, backend: &str) {
    for warning in &config.warnings {
        tracing::warn!(event = "learning.config.fallback", "{warning}");
    }
    tracing::info!(event = "learning.adapters.selected", backend = backend,
        vision = %config.ai.vision_model, feedback = %config.ai.feedback_model,
        "learning.adapters.selected backend={} vision={} feedback={}", backend, config.ai.vision_model, config.ai.feedback_model);
}

/// The HTTP server (probes, health, metrics) running in its own task.
struct HttpServer {
    /// Stops the server gracefully.
    stop: CancellationToken,
    /// The server task.
    task: tokio::task::JoinHandle<()>,
    /// The probes' own pool, closed after the job loop's.
    probe_pool: PgPool,
}

impl HttpServer {
    /// Binds the listen address and serves until stopped.
    async fn start(
        config: &RunnerConfig,
        metrics: &Metrics,
        state: &Arc<RunnerState>,
        ollama: Option<OllamaMonitor>,
    ) -> Result<Self, StartError> {
        let listener = tokio::net::TcpListener::bind(config.http.addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.http.addr,
                source,
            })?;
        let bound = listener.local_addr().unwrap_or(config.http.addr);
        tracing::info!(event = "learning.http.listening", addr = %bound);
        let stop = CancellationToken::new();
        // The probes get their own two connections: a busy job loop must not make them time out.
        let probe_pool = crate::db::lazy_pool_sized(&config.database, 2);
        let router = http::router(HttpState {
            pool: probe_pool.clone(),
            metrics: metrics.clone(),
            runner: state.clone(),
            health_token: config.http.health_token.clone(),
            ollama,
        });
        let stop_signal = stop.clone();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, router)
                .with_graceful_shutdown(async move { stop_signal.cancelled().await });
            if let Err(e) = serve.await {
                tracing::error!(event = "learning.http.failed", error = %e);
            }
        });
        Ok(HttpServer {
            stop,
            task,
            probe_pool,
        })
    }

    /// Shuts the server down gracefully and waits for it.
    async fn stop(&mut self) {
        self.stop.cancel();
        let _ = (&mut self.task).await;
    }
}

/// Starts the LISTEN/NOTIFY wake-ups (when configured) and the queue depth gauges.
fn spawn_queue_watchers(
    config: &RunnerConfig,
    pool: &PgPool,
    metrics: &Metrics,
    wake: &Arc<Notify>,
    stop: &CancellationToken,
) {
    if config.worker.listen_notify {
        tokio::spawn(wakeup::run_listener(
            pool.clone(),
            wake.clone(),
            stop.clone(),
        ));
    }
    tokio::spawn(refresh_queue_metrics(
        pool.clone(),
        metrics.clone(),
        stop.clone(),
    ));
}

/// Prepares Ollama (a signal interrupts a long model pull; the loop then drains at once),
/// then keeps checking it; leasing pauses while it is unavailable.
async fn ollama_gate(
    monitor: OllamaMonitor,
    config: &RunnerConfig,
    state: &RunnerState,
    shutdown: &CancellationToken,
    background_stop: &CancellationToken,
) -> Arc<dyn BackendGate> {
    // Pulling models can take longer than the liveness bound; the pull has its own deadline,
    // so the runner counts as alive while it runs.
    let alive_while_preparing = async {
        let mut turn = tokio::time::interval(Duration::from_secs(10));
        loop {
            turn.tick().await;
            state.progress.loop_turned();
            state.progress.heartbeat_beat();
        }
    };
    tokio::select! {
        _ = prepare_ollama(&monitor, config.ai.pull_missing) => {}
        _ = alive_while_preparing => {}
        _ = shutdown.cancelled() => {
            tracing::info!(event = "learning.ollama.pull_interrupted", "start-up interrupted by a signal");
        }
    }
    monitor
        .clone()
        .spawn(OLLAMA_REFRESH, background_stop.clone());
    Arc::new(monitor)
}

/// What every job needs: the pool, the adapters, the metrics, the retry policy and the phase
/// budgets.
fn job_context(
    config: &RunnerConfig,
    pool: PgPool,
    adapters: Adapters,
    metrics: Metrics,
) -> JobContext {
    JobContext {
        adapters,
        metrics,
        max_retries: config.worker.max_retries,
        backoff: config.worker.backoff,
        timeout_vision: phase_budget_vision(config),
        timeout_feedback: phase_budget_feedback(config),
        admission: admission(config, &pool),
        pool,
    }
}

/// The model slots: unlimited for the stub; for Ollama `AI_MAX_PARALLEL_CALLS` slots, steps
/// grouped into phases by what `/api/ps` says is resident and, through advisory locks on
/// `pool`'s database, by what the other runners run.
fn admission(config: &RunnerConfig, pool: &PgPool) -> ModelAdmission {
    let ai = &config.ai;
    match ai.backend {
        Backend::Stub => ModelAdmission::unlimited(),
        Backend::Local => {
            let residency = OllamaClient::new(&ai.ollama_base_url).ok().map(|c| {
                Arc::new(OllamaResidency::new(c, ai.keep_alive.clone())) as Arc<dyn Residency>
            });
            ModelAdmission::limited(AdmissionSettings {
                capacity: ai.max_parallel_calls,
                vision_model: ai.vision_model.clone(),
                feedback_model: ai.feedback_model.clone(),
                phase_bound: ai.max_phase_wait,
                residency,
                phase_locks: Some(Arc::new(PgPhaseLocks::new(pool)) as Arc<dyn PhaseLocks>),
            })
        }
    }
}

/// Applies the bundled migrations.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}
