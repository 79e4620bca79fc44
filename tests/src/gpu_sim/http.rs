//! The simulator's HTTP side: the accept loop (every connection a task of one set, dropped
//! with it), the routes, and Ollama's answer shapes.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use chrono::{SecondsFormat, Utc};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::answers::{work, Work};
use super::config::{keep_alive, GpuModel, SimSecs};
use super::engine::{Ask, Outcome};
use super::Shared;

/// Largest request body read (base64 images included).
const MAX_BODY: usize = 64 << 20;
/// Longest wait for a request's headers, and for its body.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest real wait for a simulated answer (a safety net; the simulation always ends).
const MAX_ANSWER_WAIT: Duration = Duration::from_secs(600);
/// What `/api/version` says.
const VERSION: &str = "0.6.8";

pub(super) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let router = Router::new().fallback(handle).with_state(shared);
    // Owned by this task: aborting it drops the set, which aborts every connection.
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        connections.spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(READ_TIMEOUT, axum::body::to_bytes(body, MAX_BODY)).await;
    let Ok(Ok(bytes)) = read else {
        return error(400, "could not read the request body");
    };
    match (&parts.method, parts.uri.path()) {
        (&Method::POST, "/api/generate") => generate(&shared, &bytes, false).await,
        (&Method::POST, "/api/chat") => generate(&shared, &bytes, true).await,
        (&Method::GET, "/api/tags") => tags(&shared),
        (&Method::GET, "/api/ps") => ps(&shared),
        (&Method::GET, "/api/version") => Json(json!({ "version": VERSION })).into_response(),
        (&Method::POST, "/api/pull") => pull(&shared, &bytes),
        _ => (StatusCode::NOT_FOUND, "404 page not found").into_response(),
    }
}

/// Takes a request out of the simulation when its handler is dropped before the answer
/// (the client went away).
struct InFlight<'a> {
    shared: &'a Shared,
    id: u64,
    answered: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.shared.engine().cancel(self.id);
            self.shared.wake.notify_one();
        }
    }
}

/// The parts of a generate/chat request its answer needs.
struct Ctx<'a> {
    chat: bool,
    model: &'a GpuModel,
    stream: bool,
}

async fn generate(shared: &Shared, bytes: &Bytes, chat: bool) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(bytes) else {
        return error(400, "invalid request body");
    };
    let name = body["model"].as_str().unwrap_or_default();
    if name.is_empty() {
        return error(400, "model is required");
    }
    let Some(index) = shared.config.model_index(name) else {
        return error(
            404,
            &format!("model {name:?} not found, try pulling it first"),
        );
    };
    let ctx = Ctx {
        chat,
        model: &shared.config.models[index],
        stream: body["stream"].as_bool().unwrap_or(true),
    };
    let keep = keep_alive(&body["keep_alive"]);
    let empty = if chat {
        body["messages"].as_array().is_none_or(Vec::is_empty)
    } else {
        body["prompt"].as_str().unwrap_or_default().is_empty()
    };
    if empty && keep == Some(0.0) {
        shared.engine().expire(index);
        shared.wake.notify_one();
        return Json(last_chunk(&ctx, "", "unload", None)).into_response();
    }
    let job = (!empty).then(|| work(ctx.model, chat, &body));
    let ask = match &job {
        None => Ask::Load,
        Some(w) => Ask::Generate {
            cost: cost(ctx.model, w),
            done_reason: w.done_reason,
        },
    };
    let submitted = shared.engine().submit(index, ask, keep);
    shared.wake.notify_one();
    let Ok((id, answer)) = submitted else {
        let busy = "server busy, please try again.  maximum pending requests exceeded";
        return error(503, busy);
    };
    let mut in_flight = InFlight {
        shared,
        id,
        answered: false,
    };
    let outcome = match tokio::time::timeout(MAX_ANSWER_WAIT, answer).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_)) => return error(500, "gpu sim: the simulation stopped"),
        Err(_) => return error(500, "gpu sim: no simulated answer in time"),
    };
    in_flight.answered = true;
    match job {
        None => Json(last_chunk(&ctx, "", "load", Some((&outcome, None)))).into_response(),
        Some(w) => success(&ctx, &w, &outcome),
    }
}

/// The cost of `work` on `model` before jitter.
fn cost(model: &GpuModel, work: &Work) -> SimSecs {
    model.base + prompt_cost(model, work) + work.answer_tokens() as f64 * model.per_answer_token
}

fn prompt_cost(model: &GpuModel, work: &Work) -> SimSecs {
    work.prompt_tokens() as f64 * model.per_prompt_token + work.images as f64 * model.per_image
}

/// One generate/chat object, not the last.
fn chunk(ctx: &Ctx, text: &str) -> Value {
    let mut v = json!({ "model": ctx.model.name, "created_at": timestamp(0.0), "done": false });
    if ctx.chat {
        v["message"] = json!({ "role": "assistant", "content": text });
    } else {
        v["response"] = json!(text);
    }
    v
}

/// The last object: `done`, the reason, and for a generation its statistics (simulated
/// nanoseconds; the prompt's share of the run is `prompt_eval_duration`).
fn last_chunk(
    ctx: &Ctx,
    text: &str,
    reason: &str,
    stats: Option<(&Outcome, Option<&Work>)>,
) -> Value {
    let mut v = chunk(ctx, text);
    v["done"] = json!(true);
    v["done_reason"] = json!(reason);
    let Some((outcome, work)) = stats else {
        return v;
    };
    let ns = |s: SimSecs| (s.max(0.0) * 1e9).round() as u64;
    v["total_duration"] = json!(ns(outcome.waited + outcome.ran));
    v["load_duration"] = json!(ns(outcome.load_wait));
    if let Some(work) = work {
        let full = cost(ctx.model, work);
        let share = if full > 0.0 {
            prompt_cost(ctx.model, work) / full
        } else {
            0.0
        };
        let prompt = outcome.ran * share;
        v["prompt_eval_count"] = json!(work.prompt_tokens());
        v["prompt_eval_duration"] = json!(ns(prompt));
        v["eval_count"] = json!(work.answer_tokens());
        v["eval_duration"] = json!(ns(outcome.ran - prompt));
    }
    v
}

/// The answer as one object, or as NDJSON: up to 16 chunks of text, then the last object
/// with an empty text.
fn success(ctx: &Ctx, work: &Work, outcome: &Outcome) -> Response {
    let stats = Some((outcome, Some(work)));
    if !ctx.stream {
        return Json(last_chunk(ctx, &work.text, work.done_reason, stats)).into_response();
    }
    let chars: Vec<char> = work.text.chars().collect();
    let per = chars.len().div_ceil(16).max(1);
    let mut lines: Vec<Value> = (chars.chunks(per))
        .map(|piece| chunk(ctx, &piece.iter().collect::<String>()))
        .collect();
    lines.push(last_chunk(ctx, "", work.done_reason, stats));
    ndjson(&lines)
}

fn ndjson(lines: &[Value]) -> Response {
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from(body),
    )
        .into_response()
}

fn error(code: u16, message: &str) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(json!({ "error": message }))).into_response()
}

/// A `/api/tags` or `/api/ps` entry: the common fields plus `extra`.
fn model_entry(model: &GpuModel, extra: Value) -> Value {
    let digest = format!("{:x}", Sha256::digest(model.name.as_bytes()));
    let mut v = json!({
        "name": model.name, "model": model.name, "size": model.size, "digest": digest,
        "details": {
            "parent_model": "", "format": "gguf", "family": "simulated",
            "families": ["simulated"], "parameter_size": "?", "quantization_level": "Q4_K_M",
        },
    });
    if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
        v.extend(extra);
    }
    v
}

fn tags(shared: &Shared) -> Response {
    let models: Vec<Value> = (shared.config.models.iter())
        .map(|m| model_entry(m, json!({ "modified_at": timestamp(0.0) })))
        .collect();
    Json(json!({ "models": models })).into_response()
}

fn ps(shared: &Shared) -> Response {
    let loaded = shared.engine().loaded_models();
    let models: Vec<Value> = (loaded.into_iter())
        .map(|(m, left)| {
            let model = &shared.config.models[m];
            // Never unloading: a date far ahead, as Ollama shows for a negative keep-alive.
            let left = if left < 0.0 {
                100.0 * 365.0 * 86_400.0
            } else {
                left
            };
            let extra = json!({
                "size_vram": model.size, "expires_at": timestamp(left), "context_length": 4096,
            });
            model_entry(model, extra)
        })
        .collect();
    Json(json!({ "models": models })).into_response()
}

/// A configured model "pulls" at once; any other is not in the registry.
fn pull(shared: &Shared, bytes: &Bytes) -> Response {
    let body: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let name = (body.get("model").or_else(|| body.get("name")))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if shared.config.model_index(name).is_none() {
        return error(500, "pull model manifest: file does not exist");
    }
    if body["stream"].as_bool() == Some(false) {
        return Json(json!({ "status": "success" })).into_response();
    }
    let lines = [
        "pulling manifest",
        "verifying sha256 digest",
        "writing manifest",
        "success",
    ];
    let lines: Vec<Value> = lines.iter().map(|s| json!({ "status": s })).collect();
    ndjson(&lines)
}

/// RFC 3339 UTC time, `seconds` (simulated, shown as real seconds) from now.
fn timestamp(seconds: SimSecs) -> String {
    let later = chrono::Duration::milliseconds((seconds * 1000.0) as i64);
    (Utc::now() + later).to_rfc3339_opts(SecondsFormat::Nanos, true)
}
