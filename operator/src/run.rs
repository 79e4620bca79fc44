//! `learning-operator run`: logging, the HTTP server, leader election, then the controller.
//! Losing the Lease ends the process (Kubernetes restarts it as a standby).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};

use crate::cli::RunArgs;
use crate::controller::{self, Context};
use crate::http::{router, HttpState};
use crate::leader::LeaderElector;
use crate::metrics::Metrics;
use crate::observe::HttpProber;

/// Runs the controller.
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

    let client = Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let elector = LeaderElector::new(
        Api::<Lease>::namespaced(client.clone(), &args.operator_namespace),
        args.lease_name.clone(),
        args.pod_name.clone(),
        args.lease_seconds as i32,
    );
    let period = Duration::from_secs(u64::from(args.lease_seconds.max(3)) / 3);
    ready.store(true, Ordering::Relaxed); // a standby is healthy
    while !elector.try_acquire_or_renew().await.unwrap_or(false) {
        tokio::time::sleep(period).await;
    }
    ready.store(false, Ordering::Relaxed);
    metrics.leader.set(1);
    tracing::info!(event = "learning.operator.leading", identity = %args.pod_name);
    let lease_seconds = u64::from(args.lease_seconds);
    tokio::spawn(async move {
        let mut last_ok = std::time::Instant::now();
        loop {
            tokio::time::sleep(period).await;
            match elector.try_acquire_or_renew().await {
                Ok(true) => last_ok = std::time::Instant::now(),
                Ok(false) => {
                    tracing::error!(event = "learning.operator.leadership_lost");
                    std::process::exit(1);
                }
                Err(e) if last_ok.elapsed() > Duration::from_secs(lease_seconds) => {
                    tracing::error!(event = "learning.operator.lease_renew_failed", error = %e);
                    std::process::exit(1);
                }
                Err(e) => tracing::warn!(event = "learning.operator.lease_renew_retry", error = %e),
            }
        }
    });
    let ctx = Arc::new(Context::new(
        client,
        Arc::new(HttpProber::new()?),
        metrics,
        args.operator_namespace,
        args.pod_name,
    ));
    controller::run(ctx, args.namespace, ready).await;
    Ok(())
}
