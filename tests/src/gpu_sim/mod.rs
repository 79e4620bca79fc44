//! A **fake** Ollama on a **simulated** GPU, for tests and benchmarks of scheduling. No model
//! and no GPU run here: an in-process HTTP server on `127.0.0.1:<random port>` speaks the
//! parts of Ollama's REST API the runner uses and answers after the time a GPU would take,
//! on a simulated clock where one second lasts [`GpuConfig::time_scale`] of real time
//! (default 1 ms). Every time in the configuration and in the [`GpuReport`] is simulated.
//!
//! # The rules (Ollama's, from its FAQ "How does Ollama handle concurrent requests?" and
//! "How do I keep a model loaded…", and `docs/api.md`)
//! - At most [`GpuConfig::resident_models`] models are in VRAM (`OLLAMA_MAX_LOADED_MODELS`;
//!   the budget is counted in models). A request for a model that is not resident loads it,
//!   taking the model's load time; when the budget is full, the least recently used *idle*
//!   model is unloaded first (a swap). A model with calls running or waiting is never
//!   evicted: the request waits until one becomes idle. As in Ollama, every request that
//!   arrives while one waits for room waits behind it, even for a resident model ("all new
//!   requests will be queued until the new model can be loaded … processed in order").
//! - Each loaded model runs [`GpuConfig::slots`] calls at once (`OLLAMA_NUM_PARALLEL`);
//!   further calls for it wait in FIFO order. A call takes the model's
//!   `base + prompt tokens × per_prompt_token + images × per_image + answer tokens ×
//!   per_answer_token` (tokens = characters / 4, rounded up), times the seeded jitter
//!   (none by default). Simultaneous calls do not slow each other down.
//! - More than [`GpuConfig::queue_limit`] requests waiting (not running): 503
//!   `server busy, please try again.  maximum pending requests exceeded` (`OLLAMA_MAX_QUEUE`).
//! - An empty `prompt` (generate) or `messages` (chat) is a load request: it waits like any
//!   request, is answered as soon as the model is loaded, without a slot, with
//!   `done_reason: "load"` (one JSON object, also when streaming). With `keep_alive: 0` it
//!   is an unload request instead: answered at once with `done_reason: "unload"`, the model
//!   unloads when idle.
//! - `keep_alive` (seconds or a Go duration like `"5m"`, read as simulated time; default
//!   [`GpuConfig::keep_alive`], 5 minutes) keeps an idle model loaded that long after the
//!   last request touching it; 0 unloads it right after the call, negative: never.
//! - Answers: see [`Answer::Auto`]. `options.num_predict` > 0 cuts an answer longer than
//!   that many tokens to `num_predict × 4` characters with `done_reason: "length"`.
//!   `stream` (default true) gives NDJSON chunks, sent together when the call ends; `false`
//!   one object. Durations in the answers (`total_duration`, `load_duration`, …) are in
//!   simulated nanoseconds.
//! - `/api/ps` lists the loaded models (not those still loading) with `size`,
//!   `size_vram = size` (all on the GPU) and `expires_at` (now + the simulated time left, as
//!   a real timestamp); `/api/tags` lists every configured model; `/api/version`,
//!   `/api/pull` (success for a configured model) are served too.
//! - A client that goes away (timeout) takes its request out of the queue or frees its
//!   slot at once, as Ollama aborts a cancelled request.
//!
//! Differences from Ollama: loads of different models may overlap; a victim is chosen only
//! among idle models (Ollama may pick a busy one and wait for it); the queue limit counts
//! every waiting request, also those already given to a model.
//!
//! # Determinism
//! Arrivals are stamped with the simulated time when they reach the server; everything else
//! (load ends, admissions, completions, expiries) is computed from the configuration, so
//! the same configuration and the same requests in the same order give the same counts
//! (calls, loads, swaps, queue order). Recorded times differ between runs only through the
//! arrival times: by the client's own real-time jitter divided by the time scale (with
//! 1 ms per second, a 3 ms late request arrives 3 simulated seconds late). Answers reach the
//! client a little after their simulated end (timer resolution, about 1 ms real), which
//! shifts only what the client does next.
//!
//! Dropping the [`GpuSim`] stops the accept loop, every connection and the clock task.

mod answers;
mod config;
mod engine;
mod http;
mod recorder;

pub use answers::{analysis, criteria_from_prompt, criteria_from_schema, FEEDBACK, TRANSCRIPT};
pub use config::CHARS_PER_TOKEN;
pub use config::{canonical, keep_alive, tokens, Answer, GpuConfig, GpuModel, SimSecs};
pub use recorder::{EventKind, GpuReport, ModelReport, SimEvent, MAX_TIMELINE};

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use engine::Engine;

/// Real time and simulated time.
struct Clock {
    epoch: Instant,
    /// Real seconds per simulated second.
    scale: f64,
}

impl Clock {
    fn now(&self) -> SimSecs {
        self.epoch.elapsed().as_secs_f64() / self.scale
    }

    fn instant(&self, at: SimSecs) -> Instant {
        self.epoch + Duration::from_secs_f64((at * self.scale).max(0.0))
    }
}

/// What the server, the clock task and the handle share.
struct Shared {
    config: Arc<GpuConfig>,
    engine: Mutex<Engine>,
    clock: Clock,
    /// Wakes the clock task after a change (a new request, a cancel).
    wake: Notify,
}

impl Shared {
    /// The engine, brought up to the current simulated time.
    fn engine(&self) -> MutexGuard<'_, Engine> {
        // Nothing panics under the lock in practice; recover anyway.
        let mut engine = self.engine.lock().unwrap_or_else(|p| p.into_inner());
        engine.advance(self.clock.now());
        engine
    }
}

/// A running simulated Ollama; serves until dropped.
pub struct GpuSim {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
    clock: JoinHandle<()>,
}

impl GpuSim {
    /// Binds `127.0.0.1:0` and serves in background tasks (needs a tokio runtime). The
    /// simulated clock starts at 0 now. Panics on an impossible configuration (no slot, a
    /// budget of 0 models, a zero time scale, negative times, jitter outside `[0, 1)`).
    pub async fn start(config: GpuConfig) -> GpuSim {
        config.check();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("gpu sim: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("gpu sim: local address");
        let config = Arc::new(config);
        let shared = Arc::new(Shared {
            engine: Mutex::new(Engine::new(config.clone())),
            clock: Clock {
                epoch: Instant::now(),
                scale: config.time_scale.as_secs_f64(),
            },
            config,
            wake: Notify::new(),
        });
        let accept = tokio::spawn(http::serve(listener, shared.clone()));
        let clock = tokio::spawn(run_clock(shared.clone()));
        GpuSim {
            addr,
            shared,
            accept,
            clock,
        }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &GpuConfig {
        &self.shared.config
    }

    /// The simulated time now, in seconds since the start.
    pub fn now(&self) -> SimSecs {
        self.shared.engine().now()
    }

    /// Simulated seconds as real time.
    pub fn real(&self, simulated: SimSecs) -> Duration {
        Duration::from_secs_f64((simulated * self.shared.clock.scale).max(0.0))
    }

    /// What the recorder saw since the start or the last [`GpuSim::reset`], up to now.
    pub fn report(&self) -> GpuReport {
        self.shared.engine().report()
    }

    /// Forgets what was recorded; requests under way keep running and count from now on.
    pub fn reset(&self) {
        self.shared.engine().reset();
    }

    /// The models loaded now (not those still loading), in the configured order.
    pub fn resident(&self) -> Vec<String> {
        let engine = self.shared.engine();
        (engine.loaded_models().into_iter())
            .map(|(m, _)| self.shared.config.models[m].name.clone())
            .collect()
    }
}

impl Drop for GpuSim {
    fn drop(&mut self) {
        self.accept.abort();
        self.clock.abort();
    }
}

/// Handles each event when it is due on the simulated clock (or sooner, when woken).
async fn run_clock(shared: Arc<Shared>) {
    loop {
        let wake = shared.wake.notified();
        let next = shared.engine().next_time();
        match next {
            Some(at) => {
                let due = tokio::time::Instant::from_std(shared.clock.instant(at));
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = wake => {}
                }
            }
            None => wake.await,
        }
    }
}
