//! The runner's HTTP server: `/livez`, `/readyz`, `/internal/health/learning-worker` (the
//! contract's JSON and headers, optionally behind a bearer token) and `/metrics`.

pub mod health;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use sqlx::PgPool;

use crate::ai::ollama::monitor::OllamaMonitor;
use crate::db::dsn::Secret;
use crate::db::queue;
use crate::http::health::HealthReport;
use crate::telemetry::metrics::Metrics;
use crate::worker::RunnerState;

pub use learning_contract::health::HEALTH_PATH;
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// What the handlers share.
#[derive(Clone)]
pub struct HttpState {
    /// Database pool.
    pub pool: PgPool,
    /// Metrics registry.
    pub metrics: Metrics,
    /// Loop state (draining, database reachable).
    pub runner: Arc<RunnerState>,
    /// Bearer token required for the health report, when set.
    pub health_token: Option<Secret>,
    /// The local Ollama, when `AI_BACKEND=local`.
    pub ollama: Option<OllamaMonitor>,
}

/// The router with every endpoint.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route(HEALTH_PATH, get(health))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Alive while the job loop and the heartbeat keep turning (see `worker::progress`).
async fn livez(State(state): State<HttpState>) -> (StatusCode, String) {
    match state.runner.progress.stalled() {
        None => (StatusCode::OK, "ok\n".into()),
        Some((part, silent)) => {
            tracing::error!(
                event = "learning.liveness.stalled",
                part,
                silent_s = silent.as_secs(),
                "no progress past the liveness bound; /livez fails so the runner is restarted"
            );
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "stalled: the {part} made no progress for {} s\n",
                    silent.as_secs()
                ),
            )
        }
    }
}

async fn readyz(State(state): State<HttpState>) -> (StatusCode, &'static str) {
    if state.runner.draining.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n");
    }
    if let Some(ollama) = &state.ollama {
        if !ollama.ready() {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "ollama unreachable or models missing\n",
            );
        }
    }
    match tokio::time::timeout(PROBE_TIMEOUT, queue::schema_present(&state.pool)).await {
        Ok(Ok(true)) => (StatusCode::OK, "ready\n"),
        Ok(Ok(false)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "queue table or worker functions missing\n",
        ),
        Ok(Err(_)) | Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n"),
    }
}

/// Compares in time independent of where the strings differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorised(headers: &HeaderMap, token: &Option<Secret>) -> bool {
    let Some(token) = token else { return true };
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| constant_time_eq(given.trim().as_bytes(), token.expose().as_bytes()))
}

fn with_health_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    response
}

async fn health(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    if !authorised(&headers, &state.health_token) {
        let mut r = (StatusCode::UNAUTHORIZED, "bearer token required\n").into_response();
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return with_health_headers(r);
    }
    let mut report = probe_report(&state.pool).await;
    if let Some(ollama) = &state.ollama {
        report = report.with_checks(ollama.health_checks());
    }
    let code = if report.is_healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    with_health_headers((code, Json(report)).into_response())
}

/// Runs the probe and builds the report; a connection error gives the `db_connect_failed` report.
pub async fn probe_report(pool: &PgPool) -> HealthReport {
    match tokio::time::timeout(PROBE_TIMEOUT, queue::health_probe(pool)).await {
        Ok(Ok((role, checks))) => health::from_probe(role, checks),
        Ok(Err(e)) => {
            tracing::warn!(event = "learning.health.probe_failed", error = %e);
            HealthReport::connect_failed()
        }
        Err(_) => {
            tracing::warn!(event = "learning.health.probe_failed", error = "timeout");
            HealthReport::connect_failed()
        }
    }
}

async fn metrics(State(state): State<HttpState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_compared_exactly() {
        let token = Some(Secret::new("s3cret"));
        let mut h = HeaderMap::new();
        assert!(!authorised(&h, &token));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert!(authorised(&h, &token));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cres"),
        );
        assert!(!authorised(&h, &token));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic s3cret"),
        );
        assert!(!authorised(&h, &token));
        assert!(authorised(&HeaderMap::new(), &None));
    }

    #[tokio::test]
    async fn livez_fails_once_the_loop_or_the_heartbeat_is_silent_past_the_bound() {
        let state = |bound| HttpState {
            pool: sqlx::postgres::PgPoolOptions::new()
                .connect_lazy("postgres://nobody@127.0.0.1:1/none")
                .unwrap(),
            metrics: Metrics::new().unwrap(),
            runner: Arc::new(RunnerState {
                draining: Default::default(),
                progress: crate::worker::progress::Progress::new(bound),
            }),
            health_token: None,
            ollama: None,
        };
        let alive = state(Duration::from_secs(180));
        assert_eq!(livez(State(alive)).await.0, StatusCode::OK);
        let silent = state(Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let (status, body) = livez(State(silent.clone())).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("job loop"), "{body}");
        silent.runner.progress.loop_turned();
        let (_, body) = livez(State(silent.clone())).await;
        assert!(body.contains("lease heartbeat"), "{body}");
    }
}
