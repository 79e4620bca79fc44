//! The fake's HTTP side: the accept loop (which can drop a connection for
//! [`FakeAnswer::Reset`]), the request router, and Ollama's answer shapes.

use super::*;

/// Fired by a handler to drop its connection ([`FakeAnswer::Reset`]).
#[derive(Clone)]
struct Kill(Arc<Notify>);

pub(super) async fn serve(listener: TcpListener, router: Router) {
    // Owned by this task: aborting it drops the set, which aborts every connection.
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let kill = Arc::new(Notify::new());
        let service = TowerToHyperService::new(router.clone().layer(Extension(Kill(kill.clone()))));
        connections.spawn(async move {
            let mut conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = &mut conn => {}
                _ = kill.notified() => {
                    // Drops the in-flight handler too; zero linger makes the close an RST.
                    let stream = conn.into_parts().io.into_inner();
                    let _ = stream.set_zero_linger();
                }
            }
        });
    }
}

/// The parts of a generate/chat request an answer needs.
struct Ctx {
    endpoint: Endpoint,
    model: String,
    stream: bool,
    started: Instant,
}

pub(super) async fn handle(State(state): State<Shared>, request: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let kill = parts.extensions.get::<Kill>().cloned();
    let path = parts.uri.path().to_owned();
    let bytes = axum::body::to_bytes(body, 256 << 20)
        .await
        .unwrap_or_default();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    let failure = {
        let mut s = lock(&state);
        s.requests.push(RecordedRequest {
            method: parts.method.to_string(),
            path: path.clone(),
            body: body.clone(),
        });
        s.failures.get(&path).cloned()
    };
    let model = (body.get("model").or_else(|| body.get("name")))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(true);
    let endpoint = match path.as_str() {
        "/api/generate" => Some(Endpoint::Generate),
        "/api/chat" => Some(Endpoint::Chat),
        _ => None,
    };
    let ctx = endpoint.map(|endpoint| Ctx {
        endpoint,
        model: model.clone(),
        stream,
        started,
    });
    if let Some(answer) = failure {
        return answer_with(&state, answer, ctx.as_ref(), kill).await;
    }
    match (&parts.method, ctx) {
        (&Method::POST, Some(ctx)) => generate(&state, &body, ctx, kill).await,
        (&Method::GET, None) if path == "/api/version" => {
            Json(json!({ "version": lock(&state).version })).into_response()
        }
        (&Method::GET, None) if path == "/api/tags" => tags(&state),
        (&Method::GET, None) if path == "/api/ps" => ps(&state),
        (&Method::POST, None) if path == "/api/pull" => pull(&state, &model, stream),
        _ => (StatusCode::NOT_FOUND, "404 page not found").into_response(),
    }
}

async fn generate(state: &Shared, body: &Value, ctx: Ctx, kill: Option<Kill>) -> Response {
    if !body.is_object() {
        return error(400, "invalid request body");
    }
    if ctx.model.is_empty() {
        return error(400, "model is required");
    }
    let key = (ctx.endpoint, canonical(&ctx.model));
    let loading = match ctx.endpoint {
        Endpoint::Generate => body["prompt"].as_str().unwrap_or_default().is_empty(),
        Endpoint::Chat => body["messages"].as_array().is_none_or(|m| m.is_empty()),
    };
    let answer = {
        let mut s = lock(state);
        if !s.models.contains(&key.1) {
            let message = format!("model {:?} not found, try pulling it first", ctx.model);
            return error(404, &message);
        }
        if loading {
            return Json(chunk(&ctx, "", Some("load"))).into_response();
        }
        let scripted = s.scripts.get_mut(&key).and_then(VecDeque::pop_front);
        scripted.or_else(|| s.defaults.get(&key).cloned())
    };
    match answer {
        Some(answer) => answer_with(state, answer, Some(&ctx), kill).await,
        None => error(500, &format!("fake ollama: nothing scripted for {key:?}")),
    }
}

async fn answer_with(
    state: &Shared,
    mut answer: FakeAnswer,
    ctx: Option<&Ctx>,
    kill: Option<Kill>,
) -> Response {
    while let FakeAnswer::Delay(wait, next) = answer {
        tokio::time::sleep(wait).await;
        answer = *next;
    }
    let streaming = ctx.is_some_and(|c| c.stream);
    match (answer, ctx) {
        (FakeAnswer::Text(text), Some(ctx)) => success(ctx, &text, None),
        (FakeAnswer::Truncated(text), Some(ctx)) => finished(ctx, &text, "length"),
        (FakeAnswer::Truncated(text), None) => raw("application/json; charset=utf-8", text),
        (FakeAnswer::Empty, Some(ctx)) => success(ctx, "", None),
        (FakeAnswer::MidStreamError(text, msg), Some(ctx)) if ctx.stream => {
            success(ctx, &text, Some(msg))
        }
        (FakeAnswer::MidStreamError(_, msg), _) => error(500, &msg),
        (FakeAnswer::Text(text), None) => raw("application/json; charset=utf-8", text),
        (FakeAnswer::Empty, None) => StatusCode::OK.into_response(),
        (FakeAnswer::Status(code, msg), _) => error(code, &msg),
        (FakeAnswer::Huge(size), ctx) => huge(state, ctx, size),
        (FakeAnswer::Garbage(text), _) if streaming => raw("application/x-ndjson", text),
        (FakeAnswer::Garbage(text), _) => raw("application/json; charset=utf-8", text),
        (FakeAnswer::Reset, _) => {
            if let Some(kill) = kill {
                kill.0.notify_one();
            }
            std::future::pending().await
        }
        // `Delay` was unwrapped above.
        (FakeAnswer::Hang | FakeAnswer::Delay(..), _) => std::future::pending().await,
    }
}

/// One generate/chat object: `response` or `message`; the last one (`done_reason` given) has
/// `"done": true`, and the statistics when the reason is `stop`.
fn chunk(ctx: &Ctx, text: &str, done_reason: Option<&str>) -> Value {
    let mut v = json!({ "model": ctx.model, "created_at": now(0), "done": done_reason.is_some() });
    match ctx.endpoint {
        Endpoint::Generate => v["response"] = json!(text),
        Endpoint::Chat => v["message"] = json!({ "role": "assistant", "content": text }),
    }
    if let Some(reason) = done_reason {
        v["done_reason"] = json!(reason);
    }
    if done_reason == Some("stop") {
        let total = u64::try_from(ctx.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        for (key, value) in [
            ("total_duration", json!(total)),
            ("load_duration", json!(total / 10)),
            ("prompt_eval_count", json!(26)),
            ("prompt_eval_duration", json!(total / 5)),
            ("eval_count", json!(text.split_whitespace().count().max(1))),
            ("eval_duration", json!(total / 2)),
        ] {
            v[key] = value;
        }
        if ctx.endpoint == Endpoint::Generate {
            v["context"] = json!([1, 2, 3]);
        }
    }
    v
}

/// The whole answer as one object ending for `reason`, or as NDJSON: the text, then a final
/// `done` object with an empty text.
fn finished(ctx: &Ctx, text: &str, reason: &str) -> Response {
    if !ctx.stream {
        return Json(chunk(ctx, text, Some(reason))).into_response();
    }
    ndjson(vec![chunk(ctx, text, None), chunk(ctx, "", Some(reason))])
}

/// The whole answer as one object, or as NDJSON: a few chunks, then a final `done` object
/// with an empty text (or an `{"error"}` line for a mid-stream failure).
fn success(ctx: &Ctx, text: &str, stream_error: Option<String>) -> Response {
    if !ctx.stream {
        return Json(chunk(ctx, text, Some("stop"))).into_response();
    }
    let mut lines: Vec<Value> = pieces(text).map(|p| chunk(ctx, p, None)).collect();
    lines.push(match stream_error {
        Some(msg) => json!({ "error": msg }),
        None => chunk(ctx, "", Some("stop")),
    });
    ndjson(lines)
}

/// Splits `text` into at most three non-empty pieces on char boundaries.
fn pieces(text: &str) -> impl Iterator<Item = &str> {
    let per = text.chars().count().div_ceil(3).max(1);
    let mut cuts: Vec<usize> = text.char_indices().map(|(i, _)| i).step_by(per).collect();
    cuts.push(text.len());
    (1..cuts.len()).map(move |i| &text[cuts[i - 1]..cuts[i]])
}

/// [`FakeAnswer::Huge`]: an answer object (or a status line) of `size` bytes.
fn huge(state: &Shared, ctx: Option<&Ctx>, size: u64) -> Response {
    let (head, tail, content_type) = match ctx {
        Some(ctx) => {
            let mut head = chunk(ctx, "", Some("stop")).to_string();
            let field = match ctx.endpoint {
                Endpoint::Generate => "\"response\":\"",
                Endpoint::Chat => "\"content\":\"",
            };
            // Cut the object after its (empty) text's opening quote; the filler is the text.
            let at = head.find(field).map_or(0, |i| i + field.len());
            let tail = head.split_off(at);
            let newline = if ctx.stream { "\n" } else { "" };
            let kind = if ctx.stream {
                "application/x-ndjson"
            } else {
                "application/json; charset=utf-8"
            };
            (head, format!("{tail}{newline}"), kind)
        }
        None => (
            "{\"status\":\"".to_owned(),
            "\"}\n".to_owned(),
            "application/x-ndjson",
        ),
    };
    let sent = lock(state).huge_sent.clone();
    let body = HugeBody::new(head, b'a', tail, size, sent);
    ([(header::CONTENT_TYPE, content_type)], Body::new(body)).into_response()
}

/// An NDJSON body sent one line per HTTP chunk.
struct Lines(VecDeque<Bytes>);

impl hyper::body::Body for Lines {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|line| Ok(Frame::data(line))))
    }
}

fn ndjson(lines: Vec<Value>) -> Response {
    let lines = lines.iter().map(|l| Bytes::from(format!("{l}\n")));
    let body = Body::new(Lines(lines.collect()));
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}

fn raw(content_type: &'static str, body: String) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn error(code: u16, message: &str) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(json!({ "error": message }))).into_response()
}

/// Fake size of every installed model, in bytes.
const MODEL_SIZE: u64 = 3_338_801_804;

/// A `/api/tags` or `/api/ps` entry: the common fields plus `extra`.
fn model_entry(name: &str, size: u64, extra: Value) -> Value {
    let mut v = json!({
        "name": name, "model": name, "size": size, "digest": digest(name),
        "details": {
            "parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
            "parameter_size": "3.2B", "quantization_level": "Q4_K_M",
        },
    });
    if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
        v.extend(extra);
    }
    v
}

fn tags(state: &Shared) -> Response {
    let s = lock(state);
    let models: Vec<Value> = (s.models.iter())
        .map(|name| model_entry(name, MODEL_SIZE, json!({ "modified_at": now(0) })))
        .collect();
    Json(json!({ "models": models })).into_response()
}

fn ps(state: &Shared) -> Response {
    let s = lock(state);
    let models: Vec<Value> = (s.ps.iter())
        .map(|(name, size, vram)| {
            let extra =
                json!({ "size_vram": vram, "expires_at": now(300), "context_length": 4096 });
            model_entry(name, *size, extra)
        })
        .collect();
    Json(json!({ "models": models })).into_response()
}

/// Ollama's pull progress (manifest, one layer downloading, verify, write, success); the
/// model is installed when the answer starts.
fn pull(state: &Shared, model: &str, stream: bool) -> Response {
    if model.is_empty() {
        return error(400, "model is required");
    }
    let name = canonical(model);
    lock(state).install(name.clone());
    if !stream {
        return Json(json!({ "status": "success" })).into_response();
    }
    let layer = format!("sha256:{}", digest(&name));
    let mut lines = vec![json!({ "status": "pulling manifest" })];
    for completed in [None, Some(MODEL_SIZE / 2), Some(MODEL_SIZE)] {
        let status = format!("downloading {layer}");
        let mut line = json!({ "status": status, "digest": layer, "total": MODEL_SIZE });
        if let Some(completed) = completed {
            line["completed"] = json!(completed);
        }
        lines.push(line);
    }
    for status in ["verifying sha256 digest", "writing manifest", "success"] {
        lines.push(json!({ "status": status }));
    }
    ndjson(lines)
}

/// RFC 3339 UTC time, `seconds` from now.
fn now(seconds: i64) -> String {
    (Utc::now() + chrono::Duration::seconds(seconds)).to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// `name`, with `:latest` when it has no tag.
pub(super) fn canonical(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') {
        name.to_owned()
    } else {
        format!("{name}:latest")
    }
}

/// A stable, fake 64-hex-digit digest of `name`.
fn digest(name: &str) -> String {
    (0u8..4)
        .map(|i| {
            let mut h = DefaultHasher::new();
            (i, name).hash(&mut h);
            format!("{:016x}", h.finish())
        })
        .collect()
}
