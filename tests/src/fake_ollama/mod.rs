//! A **fake** Ollama HTTP server for tests. No real Ollama runs here: this is an in-process
//! axum server on `127.0.0.1:<random port>` that speaks the shapes of Ollama's REST API
//! (`docs/api.md` of the ollama repository) and answers what the test scripted.
//!
//! Served: `POST /api/generate`, `POST /api/chat` (NDJSON streaming unless the body says
//! `"stream": false`, as in Ollama), `GET /api/tags`, `GET /api/ps`, `POST /api/pull` (adds the
//! model to the tags), `GET /api/version`. Anything else gets gin's `404 page not found`.
//! Generate/chat for a model not in the tags get Ollama's 404
//! `{"error":"model \"<name>\" not found, try pulling it first"}`; an empty prompt (or empty
//! `messages`) is Ollama's "load the model" request and is answered without using the script.
//! Model names without a tag mean `:latest`, as in Ollama. `format`, `options`, `think`,
//! `images` are not interpreted, only recorded: a test asserts on [`FakeOllama::requests`].
//!
//! [`FakeAnswer::Reset`] really drops the TCP connection: the fake serves each connection
//! itself with hyper (not `axum::serve`), racing the connection against a per-connection
//! [`Notify`] that the handler fires; the connection task then takes the socket back out of
//! hyper, sets `SO_LINGER` to zero and drops it, so the client reads an RST, no HTTP response.
//! Dropping the [`FakeOllama`] aborts the accept task and with it every connection task.
//!
//! [`FakeAnswer::Huge`] answers with a body of any size made on the fly ([`HugeBody`]), never
//! held in memory; [`FakeOllama::huge_bytes_sent`] tells how much of it left the fake.

mod huge;
mod server;

pub use huge::HugeBody;

use server::canonical;

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use chrono::{SecondsFormat, Utc};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

/// The endpoints whose answers are scripted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /api/generate` (answer in `response`).
    Generate,
    /// `POST /api/chat` (answer in `message.content`).
    Chat,
}

/// What the fake answers to one request.
#[derive(Clone, Debug, PartialEq)]
pub enum FakeAnswer {
    /// A normal answer with this text (`response` / `message.content`; split into a few NDJSON
    /// chunks when streaming). On other paths (via [`FakeOllama::fail_endpoint`]): a 200 with
    /// this raw body as `application/json`.
    Text(String),
    /// An answer with this text cut at the request's `num_predict`: `done_reason: "length"`.
    Truncated(String),
    /// This HTTP status with `{"error": msg}` (an invalid status becomes 500).
    Status(u16, String),
    /// 200 with this raw, non-JSON body.
    Garbage(String),
    /// Wait this long, then answer.
    Delay(Duration, Box<FakeAnswer>),
    /// Never answer (until the client gives up).
    Hang,
    /// Drop the TCP connection (RST) without any HTTP response.
    Reset,
    /// 200 with an empty answer text (the model said nothing).
    Empty,
    /// Streaming: this partial text, then an in-stream `{"error": msg}` line and the end of the
    /// body (Ollama's mid-generation failure). Not streaming: 500 with `{"error": msg}`.
    MidStreamError(String, String),
    /// 200 with a body of this many bytes, made on the fly (chunked, no `Content-Length`):
    /// for generate/chat one answer object whose text is filler (a newline after it when
    /// streaming); on other paths one NDJSON line `{"status":"aaa…"}` — for a pull, a line
    /// that does not end before the body does. Counted in [`FakeOllama::huge_bytes_sent`].
    Huge(u64),
}

/// One request the fake received, recorded before it was answered.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, e.g. `/api/generate`.
    pub path: String,
    /// The JSON body; `Value::Null` without a body, `Value::String` for a non-JSON one.
    pub body: Value,
}

#[derive(Default)]
struct Inner {
    models: Vec<String>,
    ps: Vec<(String, u64, u64)>,
    scripts: HashMap<(Endpoint, String), VecDeque<FakeAnswer>>,
    defaults: HashMap<(Endpoint, String), FakeAnswer>,
    failures: HashMap<String, FakeAnswer>,
    requests: Vec<RecordedRequest>,
    version: String,
    huge_sent: Arc<AtomicU64>,
}

impl Inner {
    fn install(&mut self, name: String) {
        if !self.models.contains(&name) {
            self.models.push(name);
        }
    }
}

type Shared = Arc<Mutex<Inner>>;

/// Never poisoned in practice (nothing panics under the lock); recover anyway.
fn lock(state: &Shared) -> MutexGuard<'_, Inner> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running fake Ollama; serves until dropped.
pub struct FakeOllama {
    addr: SocketAddr,
    state: Shared,
    task: JoinHandle<()>,
}

impl FakeOllama {
    /// Binds `127.0.0.1:0` and serves in a background task (needs a tokio runtime).
    /// No models are installed; the version is `0.6.8`.
    pub async fn start() -> FakeOllama {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake ollama: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake ollama: local address");
        let state: Shared = Arc::new(Mutex::new(Inner {
            version: "0.6.8".into(),
            ..Inner::default()
        }));
        let router = Router::new()
            .fallback(server::handle)
            .with_state(state.clone());
        let task = tokio::spawn(server::serve(listener, router));
        FakeOllama { addr, state, task }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Installs a model (listed by `/api/tags` as `name`, or `name:latest` without a tag).
    pub fn add_model(&self, name: &str) {
        lock(&self.state).install(canonical(name));
    }

    /// Replaces what `/api/ps` lists: `(model, size, size_vram)`.
    pub fn set_ps(&self, entries: Vec<(String, u64, u64)>) {
        lock(&self.state).ps = entries;
    }

    /// Appends answers for `endpoint` and `model`, used front-first, one per request.
    pub fn script(&self, endpoint: Endpoint, model: &str, answers: Vec<FakeAnswer>) {
        let mut s = lock(&self.state);
        s.scripts
            .entry((endpoint, canonical(model)))
            .or_default()
            .extend(answers);
    }

    /// The answer once the script is used up. Without script and default: 500 saying so.
    pub fn default_answer(&self, endpoint: Endpoint, model: &str, answer: FakeAnswer) {
        lock(&self.state)
            .defaults
            .insert((endpoint, canonical(model)), answer);
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state).requests.clone()
    }

    /// The bodies of the requests to `path`, in arrival order.
    pub fn requests_to(&self, path: &str) -> Vec<Value> {
        let s = lock(&self.state);
        s.requests
            .iter()
            .filter(|r| r.path == path)
            .map(|r| r.body.clone())
            .collect()
    }

    /// What `/api/version` reports.
    pub fn set_version(&self, version: &str) {
        lock(&self.state).version = version.to_owned();
    }

    /// Answers every request to `path` (any method, before any other check) with `answer`,
    /// or with 500 `{"error":"fake failure"}` for `None`, until [`FakeOllama::clear_failure`].
    pub fn fail_endpoint(&self, path: &str, answer: Option<FakeAnswer>) {
        let answer = answer.unwrap_or(FakeAnswer::Status(500, "fake failure".into()));
        lock(&self.state).failures.insert(path.to_owned(), answer);
    }

    /// How many bytes of [`FakeAnswer::Huge`] bodies left the fake so far (handed to the
    /// connection; hyper takes more only as the client reads).
    pub fn huge_bytes_sent(&self) -> u64 {
        lock(&self.state).huge_sent.load(Ordering::Relaxed)
    }

    /// Undoes [`FakeOllama::fail_endpoint`] for `path`.
    pub fn clear_failure(&self, path: &str) {
        lock(&self.state).failures.remove(path);
    }
}

impl Drop for FakeOllama {
    fn drop(&mut self) {
        self.task.abort();
    }
}
