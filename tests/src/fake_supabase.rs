//! A FAKE Supabase Storage (no real one can run here): an HTTP server on 127.0.0.1 that serves
//! only `GET /storage/v1/object/<bucket>/<object>`, and only with the service key as both
//! `apikey` and `Authorization: Bearer` headers, as the real authenticated object endpoint
//! does. A missing object answers 400 (what Supabase Storage answers for a missing object),
//! a wrong key 403, any other path 404. Every request path is recorded.
//!
//! [`FakeSupabase::put_huge`] stores an object made on the fly, of any size, sent chunked
//! without `Content-Length` (so only the bytes themselves tell the client how big it is);
//! [`FakeSupabase::huge_bytes_sent`] tells how much of it left the server.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::fake_ollama::HugeBody;

#[derive(Default)]
struct Inner {
    objects: HashMap<String, Vec<u8>>,
    huge: HashMap<String, u64>,
    paths: Vec<String>,
}

#[derive(Clone)]
struct Shared {
    bucket: String,
    key: String,
    inner: Arc<Mutex<Inner>>,
    huge_sent: Arc<AtomicU64>,
}

/// The fake storage server; stops when dropped.
pub struct FakeSupabase {
    url: String,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl FakeSupabase {
    /// Starts a server for `bucket` that accepts `service_key`.
    pub async fn start(bucket: &str, service_key: &str) -> FakeSupabase {
        let shared = Shared {
            bucket: bucket.to_owned(),
            key: service_key.to_owned(),
            inner: Arc::default(),
            huge_sent: Arc::default(),
        };
        let router = Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake Supabase");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        FakeSupabase { url, shared, task }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stores `bytes` as object `name` of the bucket (the name inside the bucket, without it).
    pub fn put(&self, name: &str, bytes: &[u8]) {
        let mut inner = self.shared.inner.lock().unwrap();
        inner.objects.insert(name.to_owned(), bytes.to_vec());
    }

    /// Stores object `name` as `size` bytes of `x`, made on the fly and sent chunked without
    /// `Content-Length`.
    pub fn put_huge(&self, name: &str, size: u64) {
        let mut inner = self.shared.inner.lock().unwrap();
        inner.huge.insert(name.to_owned(), size);
    }

    /// How many bytes of [`FakeSupabase::put_huge`] objects left the server so far.
    pub fn huge_bytes_sent(&self) -> u64 {
        self.shared.huge_sent.load(Ordering::Relaxed)
    }

    /// The paths requested so far, in order.
    pub fn paths(&self) -> Vec<String> {
        self.shared.inner.lock().unwrap().paths.clone()
    }
}

impl Drop for FakeSupabase {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(shared): State<Shared>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    shared.inner.lock().unwrap().paths.push(path.clone());
    let prefix = format!("/storage/v1/object/{}/", shared.bucket);
    let Some(object) = path.strip_prefix(&prefix) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if request.method() != axum::http::Method::GET {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    if header("apikey") != shared.key || header("authorization") != format!("Bearer {}", shared.key)
    {
        return (StatusCode::FORBIDDEN, "signature verification failed").into_response();
    }
    let object = percent_decode(object);
    let inner = shared.inner.lock().unwrap();
    if let Some(size) = inner.huge.get(&object) {
        let body = HugeBody::new(String::new(), b'x', String::new(), *size, shared.huge_sent);
        return (StatusCode::OK, Body::new(body)).into_response();
    }
    match inner.objects.get(&object) {
        Some(bytes) => (StatusCode::OK, bytes.clone()).into_response(),
        None => (
            StatusCode::BAD_REQUEST,
            r#"{"statusCode":"404","error":"not_found","message":"Object not found"}"#,
        )
            .into_response(),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
