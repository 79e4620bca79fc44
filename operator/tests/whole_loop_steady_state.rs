//! The quiet worker against the in-process FAKE API server (`support::fake_apiserver`), the
//! test playing the runners' `/metrics` (`ScriptedProber`) and the Deployment controller:
//!
//! - once a worker is Ready and nothing changes, its reconciles send no request at all — no
//!   write (children unchanged, status unchanged) and no get or list (children and pods come
//!   from the watch caches) — and yet a child someone else changed or deleted is put back;
//! - with `spec.ollama.idleScaleDown`, an empty queue starts the idle clock, Ollama is scaled
//!   to zero once it has run out (`OllamaReady=False/ScaledToZero`, the worker still Ready),
//!   and the first job brings it back (`OllamaStarting`, then available), with Events.
//!
//! Waits are bounded (`eventually`); "nothing is sent" is checked over a counted
//! number of reconciles, never by sleeping.

mod support;

use std::sync::Arc;
use std::time::Duration;

use learning_operator::controller::Requeue;
use serde_json::{json, Value};
use support::fake_apiserver::{FakeApiServer, Options};
use support::operator::{make_available, Operator, WAIT};
use support::prober::{tags, ScriptedProber};
use support::rbac_audit;
use support::wait::eventually;

const NS: &str = "gustav";
/// Short requeues: many reconciles in a short test.
const POLLING: Requeue = Requeue {
    busy: Duration::from_millis(50),
    idle: Duration::from_millis(50),
};

/// The fake API server, RBAC enforced, short watches.
async fn server() -> FakeApiServer {
    FakeApiServer::start(Options {
        authorize: rbac_audit::authorizer(),
        max_watch: Duration::from_secs(2),
    })
    .await
}

/// An operator whose Ollama has the example's two models.
fn start(server: &FakeApiServer) -> Operator {
    let prober = Arc::new(ScriptedProber::healthy());
    prober.set("/api/tags", 200, &tags(&["qwen2.5vl:3b", "qwen2.5:3b"]));
    Operator::start(server, prober, POLLING)
}

/// The CPU-only example (runners and a managed Ollama on the CPU), `edit`ed.
fn create_worker(server: &FakeApiServer, edit: impl FnOnce(&mut Value)) {
    let path = format!(
        "{}/../crds/examples/cpu-only.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut lw: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut lw);
    server.create(lw);
}

fn ready(server: &FakeApiServer, name: &str) -> Result<(), String> {
    let lw = server
        .get("learning.gustav.dev/v1alpha1", "LearningWorker", NS, name)
        .ok_or("no worker")?;
    let conditions = lw["status"]["conditions"].as_array().cloned();
    conditions
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
        .then_some(())
        .ok_or_else(|| format!("{}", lw["status"]["conditions"]))
}

/// The requests since `from` that are not watches or Events (method and path).
fn requests_since(server: &FakeApiServer, from: usize) -> Vec<String> {
    server
        .requests_since(from)
        .into_iter()
        .filter(|r| !r.query.contains("watch=true") && !r.path.contains("/events"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[tokio::test]
async fn a_steady_worker_costs_no_request_and_a_changed_child_is_put_back() {
    let server = server().await;
    let op = start(&server);
    create_worker(&server, |_| {});
    let runner = "school-c-runner";
    eventually("the runner Deployment", WAIT, || {
        server
            .get("apps/v1", "Deployment", NS, runner)
            .ok_or_else(|| "none yet".to_owned())
    })
    .await;
    eventually("the Ollama Deployment", WAIT, || {
        server
            .get("apps/v1", "Deployment", NS, "school-c-ollama")
            .ok_or_else(|| "none yet".to_owned())
    })
    .await;
    make_available(&server, NS, runner);
    make_available(&server, NS, "school-c-ollama");
    eventually("Ready", WAIT, || ready(&server, "school-c")).await;

    // Steady: 20 reconciles, not one request (watches and Events aside).
    op.reconciles(3).await;
    let from = server.request_count();
    op.reconciles(20).await;
    let sent = requests_since(&server, from);
    assert!(sent.is_empty(), "a steady reconcile sent {sent:?}");

    // Someone edits the runner Deployment's spec: the next reconciles put it back.
    server.modify("apps/v1", "Deployment", NS, runner, |d| {
        d["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:1".into()
    });
    eventually("the runner image put back", WAIT, || {
        let d = server.get("apps/v1", "Deployment", NS, runner).unwrap();
        let image = d["spec"]["template"]["spec"]["containers"][0]["image"].clone();
        (image != "evil:1").then_some(()).ok_or(format!("{image}"))
    })
    .await;
    // Someone deletes the runner Service: it comes back.
    server.delete("v1", "Service", NS, runner, None);
    eventually("the runner Service back", WAIT, || {
        server
            .get("v1", "Service", NS, runner)
            .map(drop)
            .ok_or_else(|| "gone".to_owned())
    })
    .await;
    // Someone removes a label the operator sets: it comes back.
    server.modify("policy/v1", "PodDisruptionBudget", NS, runner, |p| {
        p["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("app.kubernetes.io/part-of");
    });
    eventually("the label put back", WAIT, || {
        let p = server
            .get("policy/v1", "PodDisruptionBudget", NS, runner)
            .unwrap();
        let label = p["metadata"]["labels"]["app.kubernetes.io/part-of"].clone();
        (label == "gustav").then_some(()).ok_or(format!("{label}"))
    })
    .await;

    // And quiet again.
    make_available(&server, NS, runner);
    eventually("Ready again", WAIT, || ready(&server, "school-c")).await;
    op.reconciles(3).await;
    let from = server.request_count();
    op.reconciles(20).await;
    let sent = requests_since(&server, from);
    assert!(sent.is_empty(), "a steady reconcile sent {sent:?}");
}

const LW_API: &str = "learning.gustav.dev/v1alpha1";
const OLLAMA: &str = "school-c-ollama";

fn ollama_replicas(server: &FakeApiServer) -> Value {
    server.get("apps/v1", "Deployment", NS, OLLAMA).unwrap()["spec"]["replicas"].clone()
}

/// Waits until condition `type_` has `status` and `reason`; returns the worker.
async fn wait_condition(server: &FakeApiServer, type_: &str, status: &str, reason: &str) -> Value {
    eventually(&format!("{type_}={status}/{reason}"), WAIT, || {
        let lw = server
            .get(LW_API, "LearningWorker", NS, "school-c")
            .unwrap();
        let c = lw["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == type_).cloned());
        match c {
            Some(c) if c["status"] == status && c["reason"] == reason => Ok(lw),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

/// The notes of the Events with `reason`.
fn event_notes(server: &FakeApiServer, reason: &str) -> Vec<String> {
    server
        .list("events.k8s.io/v1", "Event", NS)
        .into_iter()
        .filter(|e| e["reason"] == reason)
        .map(|e| e["note"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn an_idle_queue_releases_the_gpu_and_the_first_job_brings_ollama_back() {
    let server = server().await;
    let op = start(&server);
    op.queue(0, 0);
    create_worker(&server, |lw| {
        lw["spec"]["ollama"]["idleScaleDown"] = json!({"afterSeconds": 3600});
    });
    let runner = "school-c-runner";
    for name in [runner, OLLAMA] {
        eventually(name, WAIT, || {
            server
                .get("apps/v1", "Deployment", NS, name)
                .ok_or_else(|| "none yet".to_owned())
        })
        .await;
        make_available(&server, NS, name);
    }
    eventually("Ready", WAIT, || ready(&server, "school-c")).await;

    // An empty queue starts the clock; within the hour Ollama keeps running.
    op.reconciles(5).await;
    let lw = server
        .get(LW_API, "LearningWorker", NS, "school-c")
        .unwrap();
    let since = lw["status"]["ollama"]["idleSince"].clone();
    assert!(since.is_string(), "{}", lw["status"]["ollama"]);
    assert_eq!(ollama_replicas(&server), 1);

    // Two hours later (the clock moved back while the operator is stopped; a new operator
    // reads it from the status): Ollama goes to zero, the worker stays Ready.
    op.stop().await;
    let mut status = server
        .get(LW_API, "LearningWorker", NS, "school-c")
        .unwrap()["status"]
        .clone();
    let two_hours_ago =
        k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_hours(2);
    let since = serde_json::Value::from(two_hours_ago.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    status["ollama"]["idleSince"] = since.clone();
    server.set_status(LW_API, "LearningWorker", NS, "school-c", status);
    let op = start(&server);
    op.queue(0, 0);
    eventually("Ollama at zero", WAIT, || {
        let r = ollama_replicas(&server);
        (r == 0).then_some(()).ok_or(format!("{r}"))
    })
    .await;
    // The Deployment controller removes the pod; the runners turn unready (no Ollama).
    server.set_status(
        "apps/v1",
        "Deployment",
        NS,
        OLLAMA,
        json!({"observedGeneration": server.get("apps/v1", "Deployment", NS, OLLAMA).unwrap()["metadata"]["generation"], "replicas": 0}),
    );
    server.set_status(
        "apps/v1",
        "Deployment",
        NS,
        runner,
        json!({"observedGeneration": 1, "replicas": 1, "unavailableReplicas": 1}),
    );
    // Its pod runs (unready: /readyz fails without Ollama), so its /metrics are read.
    server.create(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "school-c-runner-0", "namespace": NS, "labels": {
            "app.kubernetes.io/name": "learning-worker", "app.kubernetes.io/instance": "school-c",
            "app.kubernetes.io/component": "runner",
            "app.kubernetes.io/managed-by": "learning-operator"}},
        "spec": {"containers": [{"name": "runner", "image": "r:1"}]}}));
    server.set_status(
        "v1",
        "Pod",
        NS,
        "school-c-runner-0",
        json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}),
    );
    let lw = wait_condition(&server, "OllamaReady", "False", "ScaledToZero").await;
    assert_eq!(lw["status"]["ollama"]["phase"], "ScaledToZero");
    assert_eq!(
        lw["status"]["ollama"]["idleSince"], since,
        "the same idle clock"
    );
    // The runners wait for Ollama: not an alarm, the worker stays Ready.
    wait_condition(&server, "RunnersAvailable", "False", "ScaledToZero").await;
    let lw = wait_condition(&server, "Ready", "True", "ScaledToZero").await;
    let conditions = lw["status"]["conditions"].as_array().unwrap();
    let degraded = conditions.iter().find(|c| c["type"] == "Degraded").unwrap();
    assert_eq!(degraded["status"], "False", "{degraded}");
    eventually("an Event for the release", WAIT, || {
        let notes = event_notes(&server, "ScaledToZero");
        notes
            .iter()
            .any(|n| n.starts_with("OllamaReady is False"))
            .then_some(())
            .ok_or(format!("{notes:?}"))
    })
    .await;

    // A job arrives: Ollama comes back at once, starting, then available.
    op.queue(3, 0);
    eventually("Ollama back", WAIT, || {
        let r = ollama_replicas(&server);
        (r == 1).then_some(()).ok_or(format!("{r}"))
    })
    .await;
    let lw = wait_condition(&server, "OllamaReady", "False", "OllamaStarting").await;
    assert!(
        lw["status"]["ollama"]["idleSince"].is_null(),
        "the clock cleared"
    );
    eventually("an Event for the start", WAIT, || {
        let notes = event_notes(&server, "OllamaStarting");
        (!notes.is_empty())
            .then_some(())
            .ok_or(format!("{notes:?}"))
    })
    .await;
    make_available(&server, NS, OLLAMA);
    make_available(&server, NS, runner);
    wait_condition(&server, "OllamaReady", "True", "OllamaAvailable").await;
    eventually("Ready", WAIT, || ready(&server, "school-c")).await;
}
