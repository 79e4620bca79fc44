//! One operator running `operate` in this process against the fake API server, without
//! leader election (it reconciles at once): started, counted (reconciles), told what the
//! runners' `/metrics` say, and stopped as SIGTERM stops the binary. The whole-loop tests of
//! autoscaling and of the quiet worker use it; `whole_loop.rs` has its own replicas (leader
//! election).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use learning_operator::controller::Requeue;
use learning_operator::metrics::Metrics;
use learning_operator::run::{operate, RunError, Settings};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::fake_apiserver::FakeApiServer;
use super::prober::ScriptedProber;
use super::rbac_audit::OPERATOR_NAMESPACE;
use super::wait::eventually;

/// How long any wait of these tests may take.
pub const WAIT: Duration = Duration::from_secs(30);

/// A running operator; aborted when dropped.
pub struct Operator {
    /// What the runners and Ollama answer.
    pub prober: Arc<ScriptedProber>,
    /// Its metrics (the reconcile counter).
    pub metrics: Metrics,
    task: JoinHandle<Result<(), RunError>>,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Operator {
    /// Starts an operator polling at `requeue`.
    pub fn start(server: &FakeApiServer, prober: Arc<ScriptedProber>, requeue: Requeue) -> Self {
        let metrics = Metrics::new().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let settings = Settings {
            namespace: None,
            operator_namespace: OPERATOR_NAMESPACE.into(),
            identity: "operator-0".into(),
            lease_name: "learning-operator-leader".into(),
            lease_seconds: 3,
            leader_election: false,
            requeue,
            default_runner_image: None,
        };
        let task = tokio::spawn(operate(
            server.client(),
            prober.clone(),
            metrics.clone(),
            Arc::new(AtomicBool::new(false)),
            settings,
            stopped.map(drop),
        ));
        Operator {
            prober,
            metrics,
            task,
            stop: Some(stop),
        }
    }

    /// A graceful stop (SIGTERM): running reconciles finish.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let done = tokio::time::timeout(WAIT, &mut self.task).await;
        assert!(matches!(done, Ok(Ok(Ok(())))), "{done:?}");
    }

    /// Waits until `n` more reconciles have finished.
    pub async fn reconciles(&self, n: u64) {
        let until = self.metrics.reconciles.get() + n;
        eventually(&format!("{n} reconciles"), WAIT, || {
            let now = self.metrics.reconciles.get();
            (now > until).then_some(()).ok_or(format!("{now}"))
        })
        .await;
    }

    /// The runners report `visible` and `leased` jobs (none delayed).
    pub fn queue(&self, visible: i64, leased: i64) {
        self.prober.set(
            "/metrics",
            200,
            &format!(
                "learning_runner_queue_jobs{{state=\"visible\"}} {visible}\n\
                 learning_runner_queue_jobs{{state=\"leased\"}} {leased}\n\
                 learning_runner_queue_jobs{{state=\"delayed\"}} 0\n"
            ),
        );
    }
}

/// Plays the Deployment controller for Deployment `name` in `ns`: all its replicas available.
pub fn make_available(server: &FakeApiServer, ns: &str, name: &str) {
    let d = server.get("apps/v1", "Deployment", ns, name).unwrap();
    let n = d["spec"]["replicas"].as_i64().unwrap_or(1);
    server.set_status(
        "apps/v1",
        "Deployment",
        ns,
        name,
        json!({"observedGeneration": d["metadata"]["generation"], "replicas": n,
               "readyReplicas": n, "availableReplicas": n, "updatedReplicas": n}),
    );
}
