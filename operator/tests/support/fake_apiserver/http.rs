//! The HTTP front of the fake API server: resolves each request the way kube-apiserver does
//! (path → resource, verb), authorizes it (a test-supplied authorizer; 403 otherwise), records
//! it, and serves GET (one object; lists with `labelSelector`, `limit`/`continue` and
//! metadata-only lists), `watch=true` (newline-delimited JSON events from a resourceVersion,
//! BOOKMARKs when asked, closed after `timeoutSeconds` capped by the server), POST, PUT,
//! PATCH (server-side apply, JSON merge patch), DELETE (with `propagationPolicy`). Requests a
//! test has stalled (see `Stall`) are held before they are served.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use learning_operator::rbac::RequestAttributes;
use serde_json::{json, Value};

use super::resources::{self, ResourceType};
use super::selector::Selector;
use super::store::{watch_event, Key, Propagation, Store, StoreError, Target};

/// Decides whether a request is allowed (the RBAC under test).
pub type Authorizer = Box<dyn Fn(&RequestAttributes) -> bool + Send + Sync>;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// HTTP method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// `Content-Type`.
    pub content_type: String,
    /// `Accept`.
    pub accept: String,
    /// The body as JSON (`Null` when empty or not JSON).
    pub body: Value,
    /// Verb, group, resource, namespace, name (`None`: not a resource request).
    pub attributes: Option<RequestAttributes>,
    /// The status code answered.
    pub status: u16,
    /// The client's name (header `x-fake-client`, see `FakeApiServer::client_as`; empty when
    /// not named).
    pub client: String,
}

/// The header a client names itself with (`FakeApiServer::client_as`).
pub const CLIENT_HEADER: &str = "x-fake-client";

/// Requests the server holds before serving them, as a stalled API server (or network path)
/// would: the request hangs until `until`, then is served as usual.
#[derive(Debug, Clone)]
pub struct Stall {
    /// Held when the path contains this (e.g. `/leases`).
    pub path_contains: String,
    /// Held only for the client of this name (`None`: for every client).
    pub client: Option<String>,
    /// Held until then.
    pub until: tokio::time::Instant,
}

impl Stall {
    fn holds(&self, path: &str, client: &str) -> bool {
        path.contains(&self.path_contains)
            && self.client.as_deref().is_none_or(|c| c == client)
            && tokio::time::Instant::now() < self.until
    }
}

impl Recorded {
    /// `path?query`.
    pub fn uri(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.query)
        }
    }
}

/// State shared by the handlers and the test's handle.
pub struct Shared {
    /// The objects.
    pub store: Mutex<Store>,
    /// Every request, in arrival order.
    pub log: Mutex<Vec<Recorded>>,
    /// The authorizer.
    pub authorize: Authorizer,
    /// The longest a watch stays open.
    pub max_watch: Duration,
    /// Requests to hold (`FakeApiServer::stall`).
    pub stalls: Mutex<Vec<Stall>>,
    /// Whether the optional CRDs (KEDA's) are installed: their types are 404 until then.
    pub optional_crds: std::sync::atomic::AtomicBool,
}

/// The router: every path goes to one handler.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn json_response(code: u16, body: &Value) -> Response {
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(body).unwrap_or_default(),
    )
        .into_response()
}

fn error(e: &StoreError) -> (u16, Value) {
    (e.code(), status_body(e.code(), e.reason(), e.message()))
}

/// A resolved resource path.
struct Resolved {
    rt: &'static ResourceType,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

fn resolve(path: &str) -> Result<Resolved, (u16, Value)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let not_found = || {
        (
            404,
            status_body(
                404,
                "NotFound",
                &format!("the server could not find the requested resource ({path})"),
            ),
        )
    };
    let (group, version, rest) = match parts.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(not_found()),
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
        _ => (None, rest),
    };
    let (plural, name, status) = match rest {
        [p] => (*p, None, false),
        [p, n] => (*p, Some((*n).to_owned()), false),
        [p, n, "status"] => (*p, Some((*n).to_owned()), true),
        _ => return Err(not_found()),
    };
    let rt = resources::by_path(group, version, plural).ok_or_else(not_found)?;
    if name.is_some() && namespace.is_none() {
        return Err(not_found()); // every served type is namespaced
    }
    Ok(Resolved {
        rt,
        namespace,
        name,
        status,
    })
}

fn parse_body(content_type: &str, bytes: &[u8]) -> Result<Value, String> {
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    match serde_json::from_slice(bytes) {
        Ok(v) => Ok(v),
        Err(e) if content_type.contains("yaml") => serde_yaml_ng::from_slice(bytes)
            .map_err(|y| format!("neither JSON ({e}) nor YAML ({y})")),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header_of = |h: header::HeaderName| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let content_type = header_of(header::CONTENT_TYPE);
    let accept = header_of(header::ACCEPT);
    let query = uri.query().unwrap_or_default().to_owned();
    let path = uri.path().to_owned();
    let client = headers
        .get(CLIENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let held = shared
        .stalls
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.holds(&path, &client))
        .map(|s| s.until)
        .max();
    if let Some(until) = held {
        tokio::time::sleep_until(until).await;
    }
    let attributes = RequestAttributes::parse(method.as_str(), &path, Some(&query));
    let parsed_body = parse_body(&content_type, &body);
    let mut record = Recorded {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        content_type: content_type.clone(),
        accept: accept.clone(),
        body: parsed_body.clone().unwrap_or(Value::Null),
        attributes: attributes.clone(),
        status: 0,
        client,
    };
    let result = match (&attributes, parsed_body) {
        (None, _) => Err((404, status_body(404, "NotFound", &format!("not a resource path: {path}")))),
        (Some(a), _) if !(shared.authorize)(a) => Err((
            403,
            status_body(
                403,
                "Forbidden",
                &format!(
                    "{} is forbidden: cannot {} resource \"{}\" in API group \"{}\" in the namespace \"{}\" (not in the operator's declared RBAC)",
                    path,
                    a.verb,
                    a.resource,
                    a.api_group,
                    a.namespace.as_deref().unwrap_or("")
                ),
            ),
        )),
        (Some(_), Err(e)) => Err((400, status_body(400, "BadRequest", &e))),
        (Some(_), Ok(body)) => serve(&shared, &method, &path, &query, &content_type, &accept, &body),
    };
    let response = match result {
        Ok(Served::Json(code, v)) => {
            record.status = code;
            json_response(code, &v)
        }
        Ok(Served::Stream(resp)) => {
            record.status = 200;
            resp
        }
        Err((code, v)) => {
            record.status = code;
            json_response(code, &v)
        }
    };
    shared.log.lock().unwrap().push(record);
    response
}

enum Served {
    Json(u16, Value),
    Stream(Response),
}

type Answer = Result<Served, (u16, Value)>;

fn serve(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    query: &str,
    content_type: &str,
    accept: &str,
    body: &Value,
) -> Answer {
    let r = resolve(path)?;
    if r.rt.optional_crd
        && !shared
            .optional_crds
            .load(std::sync::atomic::Ordering::Relaxed)
    {
        let message = format!("the server could not find the requested resource ({path})");
        return Err((404, status_body(404, "NotFound", &message)));
    }
    let params = parse_query(query);
    let target = if r.status {
        Target::Status
    } else {
        Target::Main
    };
    let ns = r.namespace.clone();
    let key = |name: &str| Key::new(r.rt, ns.as_deref().unwrap_or_default(), name);
    let mut store = shared.store.lock().unwrap();
    match (method.as_str(), r.name.as_deref()) {
        ("GET", Some(name)) => store
            .get(&key(name))
            .cloned()
            .map(|o| Served::Json(200, o))
            .ok_or_else(|| {
                error(&StoreError::NotFound(format!(
                    "{} \"{name}\" not found",
                    r.rt.plural
                )))
            }),
        ("GET", None) => {
            if params.contains_key("fieldSelector") {
                return Err((
                    400,
                    status_body(
                        400,
                        "BadRequest",
                        "fieldSelector is not supported by this fake",
                    ),
                ));
            }
            let selector = Selector::parse(params.get("labelSelector").map_or("", String::as_str))
                .map_err(|e| (400, status_body(400, "BadRequest", &e)))?;
            if matches!(params.get("watch").map(String::as_str), Some("true" | "1")) {
                drop(store);
                return watch(shared, r.rt, ns, selector, &params);
            }
            Ok(Served::Json(
                200,
                list(&store, r.rt, ns.as_deref(), &selector, &params, accept)?,
            ))
        }
        ("POST", None) => store
            .create(r.rt, ns.as_deref().unwrap_or_default(), body.clone(), false)
            .map(|o| Served::Json(201, o))
            .map_err(|e| error(&e)),
        ("PUT", Some(name)) => store
            .replace(r.rt, &key(name), body.clone(), target)
            .map(|o| Served::Json(200, o))
            .map_err(|e| error(&e)),
        ("PATCH", Some(name)) => {
            let media = content_type.split(';').next().unwrap_or_default().trim();
            match media {
                "application/apply-patch+yaml" => {
                    let manager = params
                        .get("fieldManager")
                        .filter(|m| !m.is_empty())
                        .ok_or_else(|| {
                            (
                                400,
                                status_body(
                                    400,
                                    "BadRequest",
                                    "fieldManager is required for apply requests",
                                ),
                            )
                        })?;
                    store
                        .apply(r.rt, &key(name), body, manager, target)
                        .map(|(o, created)| Served::Json(if created { 201 } else { 200 }, o))
                        .map_err(|e| error(&e))
                }
                "application/merge-patch+json" => store
                    .merge_patch(r.rt, &key(name), body, target)
                    .map(|o| Served::Json(200, o))
                    .map_err(|e| error(&e)),
                other => Err((
                    415,
                    status_body(
                        415,
                        "UnsupportedMediaType",
                        &format!("patch type {other:?} is not supported by this fake"),
                    ),
                )),
            }
        }
        ("DELETE", Some(name)) => {
            let policy = body["propagationPolicy"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| params.get("propagationPolicy").cloned());
            let propagation = match policy.as_deref() {
                None => None,
                Some("Background") => Some(Propagation::Background),
                Some("Foreground") => Some(Propagation::Foreground),
                Some("Orphan") => Some(Propagation::Orphan),
                Some(other) => {
                    return Err((
                        400,
                        status_body(
                            400,
                            "BadRequest",
                            &format!("unknown propagationPolicy {other}"),
                        ),
                    ))
                }
            };
            store
                .delete(r.rt, &key(name), propagation)
                .map(|o| Served::Json(200, o))
                .map_err(|e| error(&e))
        }
        _ => Err((
            405,
            status_body(
                405,
                "MethodNotAllowed",
                &format!("{method} is not supported here by this fake"),
            ),
        )),
    }
}

fn list(
    store: &Store,
    rt: &ResourceType,
    ns: Option<&str>,
    selector: &Selector,
    params: &HashMap<String, String>,
    accept: &str,
) -> Result<Value, (u16, Value)> {
    let mut items = store.list(rt, ns, selector);
    if let Some(token) = params.get("continue").filter(|t| !t.is_empty()) {
        let after: (String, String) = token
            .split_once('/')
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .ok_or_else(|| {
                (
                    400,
                    status_body(400, "BadRequest", "invalid continue token"),
                )
            })?;
        items.retain(|o| {
            let k = (
                o["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
            k > after
        });
    }
    let limit = params
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let mut continue_token = String::new();
    if let Some(limit) = limit {
        if items.len() > limit {
            items.truncate(limit);
            let last = &items[limit - 1]["metadata"];
            continue_token = format!(
                "{}/{}",
                last["namespace"].as_str().unwrap_or_default(),
                last["name"].as_str().unwrap_or_default()
            );
        }
    }
    let metadata = json!({"resourceVersion": store.resource_version().to_string(), "continue": continue_token});
    Ok(if accept.contains("as=PartialObjectMetadataList") {
        let items: Vec<Value> = items
            .into_iter()
            .map(|o| json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": o["metadata"]}))
            .collect();
        json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList", "metadata": metadata, "items": items})
    } else {
        json!({"apiVersion": rt.api_version(), "kind": format!("{}List", rt.kind), "metadata": metadata, "items": items})
    })
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

fn watch(
    shared: &Arc<Shared>,
    rt: &'static ResourceType,
    ns: Option<String>,
    selector: Selector,
    params: &HashMap<String, String>,
) -> Answer {
    let requested = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(shared.max_watch, Duration::from_secs);
    let timeout = requested.min(shared.max_watch);
    let bookmarks = params
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let (initial, mut rx, mut last_rv) = {
        let store = shared.store.lock().unwrap();
        let initial: Result<Vec<(&'static str, Value)>, StoreError> =
            match params.get("resourceVersion").map(String::as_str) {
                None | Some("" | "0") => Ok(store
                    .list(rt, ns.as_deref(), &selector)
                    .into_iter()
                    .map(|o| ("ADDED", o))
                    .collect()),
                Some(v) => {
                    let rv: u64 = v.parse().map_err(|_| {
                        (
                            400,
                            status_body(400, "BadRequest", &format!("invalid resourceVersion {v}")),
                        )
                    })?;
                    store.changes_after(rv).map(|cs| {
                        cs.iter()
                            .filter_map(|c| watch_event(c, rt, ns.as_deref(), &selector))
                            .collect()
                    })
                }
            };
        (initial, store.subscribe(), store.resource_version())
    };
    let (tx, out) = tokio::sync::mpsc::channel::<Bytes>(64);
    let bookmark = move |rv: u64| json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": {"resourceVersion": rv.to_string()}});
    tokio::spawn(async move {
        let events = match initial {
            Ok(events) => events,
            Err(e) => {
                let _ = tx
                    .send(line(
                        "ERROR",
                        &status_body(e.code(), e.reason(), e.message()),
                    ))
                    .await;
                return;
            }
        };
        for (kind, obj) in events {
            if tx.send(line(kind, &obj)).await.is_err() {
                return;
            }
        }
        if bookmarks && tx.send(line("BOOKMARK", &bookmark(last_rv))).await.is_err() {
            return;
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => {
                    if bookmarks {
                        let _ = tx.send(line("BOOKMARK", &bookmark(last_rv))).await;
                    }
                    return;
                }
                change = rx.recv() => match change {
                    Ok(c) => {
                        last_rv = c.rv;
                        if let Some((kind, obj)) = watch_event(&c, rt, ns.as_deref(), &selector) {
                            if tx.send(line(kind, &obj)).await.is_err() {
                                return;
                            }
                        }
                    }
                    // Lagged or closed: end the watch; the client resumes from its last version.
                    Err(_) => return,
                },
                () = tx.closed() => return,
            }
        }
    });
    let stream = futures::stream::unfold(out, |mut out| async move {
        out.recv().await.map(|b| (Ok::<_, Infallible>(b), out))
    });
    Ok(Served::Stream(
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            Body::from_stream(stream),
        )
            .into_response(),
    ))
}
