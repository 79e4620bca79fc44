//! The whole loop: the operator's real `operate` (leader election + kube-runtime Controller with
//! its watches, queue and the reconcile pipeline — the code `learning-operator run` runs)
//! against the in-process FAKE API server (`support::fake_apiserver`; no real kube-apiserver
//! can run here). The test plays the other actors: an administrator creating, editing and
//! deleting the LearningWorker, the Deployment and Job controllers (writing status, creating
//! pods), another operator replica (taking the Lease), and the runner and Ollama endpoints
//! (`ScriptedProber`). The server authorizes every request against the operator's declared
//! RBAC and the test audits the log, so an undeclared request fails here.
//!
//! Every wait is bounded (`eventually`); the few fixed windows only count what happened in
//! them (no hot loop), they never assert speed.

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use learning_operator::controller::Requeue;
use learning_operator::metrics::Metrics;
use learning_operator::run::{operate, RunError, Settings};
use serde_json::{json, Value};
use support::fake_apiserver::{FakeApiServer, Options, Propagation};
use support::prober::{tags, ScriptedProber};
use support::rbac_audit::{self, OPERATOR_NAMESPACE};
use support::wait::eventually;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const NS: &str = "gustav";
const LW_API: &str = "learning.gustav.dev/v1alpha1";
const WAIT: Duration = Duration::from_secs(30);
const LEASE: &str = "learning-operator-leader";
/// Only watch events trigger reconciles (no timer within a test's lifetime).
const WATCH_DRIVEN: Requeue = Requeue {
    busy: Duration::from_secs(600),
    idle: Duration::from_secs(600),
};
/// Health, queue and models are polled: short intervals for the polling scenarios.
const POLLING: Requeue = Requeue {
    busy: Duration::from_millis(200),
    idle: Duration::from_millis(200),
};

/// One operator replica running `operate` in this process.
struct Replica {
    prober: Arc<ScriptedProber>,
    metrics: Metrics,
    ready: Arc<AtomicBool>,
    task: JoinHandle<Result<(), RunError>>,
    /// Completes `operate`'s shutdown future: what SIGTERM does in the binary.
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Replica {
    fn reconciles(&self) -> u64 {
        self.metrics.reconciles.get()
    }

    /// A graceful stop (SIGTERM): returns what `operate` returned.
    async fn stop(mut self) -> Result<(), RunError> {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("operate returns after the shutdown signal")
            .unwrap()
    }
}

async fn server() -> FakeApiServer {
    FakeApiServer::start(Options {
        authorize: rbac_audit::authorizer(),
        // Short watches: the watchers re-watch from bookmarks many times per test.
        max_watch: Duration::from_secs(2),
    })
    .await
}

/// The settings of a replica: leader election on, a 3 s Lease (renewed every second).
fn settings(identity: &str, requeue: Requeue) -> Settings {
    Settings {
        namespace: None,
        operator_namespace: OPERATOR_NAMESPACE.into(),
        identity: identity.into(),
        lease_name: LEASE.into(),
        lease_seconds: 3,
        leader_election: true,
        requeue,
        default_runner_image: None,
    }
}

fn replica(
    server: &FakeApiServer,
    identity: &str,
    prober: ScriptedProber,
    requeue: Requeue,
) -> Replica {
    replica_with(server, settings(identity, requeue), prober)
}

fn replica_with(server: &FakeApiServer, settings: Settings, prober: ScriptedProber) -> Replica {
    let prober = Arc::new(prober);
    let metrics = Metrics::new().unwrap();
    let ready = Arc::new(AtomicBool::new(false));
    let (stop, stopped) = oneshot::channel::<()>();
    // Named, so that the server can stall one replica's requests alone.
    let task = tokio::spawn(operate(
        server.client_as(&settings.identity),
        prober.clone(),
        metrics.clone(),
        ready.clone(),
        settings,
        stopped.map(drop),
    ));
    Replica {
        prober,
        metrics,
        ready,
        task,
        stop: Some(stop),
    }
}

/// An example CR from `crds/examples/` as JSON.
fn example(file: &str) -> Value {
    let path = format!("{}/../crds/examples/{file}", env!("CARGO_MANIFEST_DIR"));
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn lw(server: &FakeApiServer) -> Result<Value, String> {
    server
        .get(LW_API, "LearningWorker", NS, "school-a")
        .ok_or_else(|| "no LearningWorker".to_owned())
}

fn condition(lw: &Value, type_: &str) -> Option<(String, String)> {
    lw["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_owned(),
                c["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
}

/// Waits until condition `type_` of school-a has `status` and `reason`.
async fn wait_condition(server: &FakeApiServer, type_: &str, status: &str, reason: &str) -> Value {
    eventually(&format!("{type_}={status}/{reason}"), WAIT, || {
        let lw = lw(server)?;
        match condition(&lw, type_) {
            Some((s, r)) if s == status && r == reason => Ok(lw),
            other => Err(format!("{other:?}; status: {}", lw["status"])),
        }
    })
    .await
}

/// (kind, name) of every object in the namespace whose owner references include `uid`.
fn owned_by(server: &FakeApiServer, uid: &str) -> BTreeSet<(String, String)> {
    server
        .all_objects()
        .into_iter()
        .filter(|o| o["metadata"]["namespace"] == NS)
        .filter(|o| {
            o["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| {
                    refs.iter()
                        .any(|r| r["uid"] == uid && r["controller"] == true)
                })
        })
        .map(|o| {
            (
                o["kind"].as_str().unwrap().to_owned(),
                o["metadata"]["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    v.iter()
        .map(|(k, n)| ((*k).to_owned(), (*n).to_owned()))
        .collect()
}

/// The children of the managed-Ollama example (no pull Job).
fn managed_children() -> BTreeSet<(String, String)> {
    pairs(&[
        ("ServiceAccount", "school-a-runner"),
        ("Deployment", "school-a-runner"),
        ("Service", "school-a-runner"),
        ("PodDisruptionBudget", "school-a-runner"),
        ("PersistentVolumeClaim", "school-a-ollama-models"),
        ("Deployment", "school-a-ollama"),
        ("Service", "school-a-ollama"),
        ("NetworkPolicy", "school-a-runner"),
        ("NetworkPolicy", "school-a-ollama"),
        ("NetworkPolicy", "school-a-model-pull"),
    ])
}

/// Plays the Deployment controller: every replica of `name` is up to date and available.
fn make_available(server: &FakeApiServer, name: &str) {
    support::operator::make_available(server, NS, name);
}

async fn wait_for_children(
    server: &FakeApiServer,
    uid: &str,
    expected: &BTreeSet<(String, String)>,
) {
    eventually("the children", WAIT, || {
        let owned = owned_by(server, uid);
        (&owned == expected)
            .then_some(())
            .ok_or(format!("{owned:?}"))
    })
    .await;
}

fn events(server: &FakeApiServer) -> Vec<Value> {
    server
        .list("events.k8s.io/v1", "Event", NS)
        .into_iter()
        .filter(|e| e["regarding"]["name"] == "school-a")
        .collect()
}

fn event(server: &FakeApiServer, reason: &str, type_: &str) -> Result<Value, String> {
    let all = events(server);
    all.iter()
        .find(|e| e["reason"] == reason && e["type"] == type_)
        .cloned()
        .ok_or_else(|| {
            format!(
                "no {type_} Event {reason}; have {:?}",
                all.iter().map(|e| e["reason"].clone()).collect::<Vec<_>>()
            )
        })
}

/// Audits every request of the run against the declared RBAC; returns the (verb, group,
/// resource) triples used.
fn audit(server: &FakeApiServer) -> BTreeSet<(String, String, String)> {
    let log = server.requests();
    let forbidden: Vec<String> = log
        .iter()
        .filter(|r| r.status == 403)
        .map(|r| r.uri())
        .collect();
    assert!(forbidden.is_empty(), "the server refused: {forbidden:#?}");
    let requests: Vec<(String, String)> = log.iter().map(|r| (r.method.clone(), r.uri())).collect();
    let checked =
        rbac_audit::assert_declared(requests.iter().map(|(m, u)| (m.as_str(), u.as_str())));
    assert!(checked > 10, "the audit saw only {checked} requests");
    rbac_audit::used(requests.iter().map(|(m, u)| (m.as_str(), u.as_str())))
}

async fn create_worker(server: &FakeApiServer, spec_change: impl FnOnce(&mut Value)) -> String {
    let mut obj = example("amd-gpu.yaml");
    spec_change(&mut obj["spec"]);
    let created = server.create(obj);
    created["metadata"]["uid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn create_applies_owned_children_writes_status_events_and_holds_the_lease() {
    let server = server().await;
    let op = replica(
        &server,
        "operator-0",
        ScriptedProber::unreachable(),
        WATCH_DRIVEN,
    );
    // Ready is reset when leadership is won and set again after the first sync.
    eventually("leading and ready after the first sync", WAIT, || {
        (op.metrics.leader.get() == 1 && op.ready.load(Ordering::Relaxed))
            .then_some(())
            .ok_or("not yet".into())
    })
    .await;
    let uid = create_worker(&server, |_| {}).await;
    wait_for_children(&server, &uid, &managed_children()).await;
    let lw = wait_condition(
        &server,
        "RunnersAvailable",
        "False",
        "MinimumReplicasUnavailable",
    )
    .await;
    assert_eq!(lw["status"]["observedGeneration"], 1);
    assert_eq!(condition(&lw, "Ready").unwrap().0, "False");
    eventually("Events for the new conditions", WAIT, || {
        event(&server, "MinimumReplicasUnavailable", "Warning")
    })
    .await;

    // Children are written with server-side apply by one field manager, and carry the labels
    // pruning selects by.
    let applies: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| {
            r.method == "PATCH" && !r.path.ends_with("/status") && !r.path.contains("/events/")
        })
        .collect();
    assert!(!applies.is_empty());
    for r in &applies {
        assert_eq!(
            r.content_type,
            "application/apply-patch+yaml",
            "{}",
            r.uri()
        );
        assert!(
            r.query.contains("fieldManager=learning-operator") && r.query.contains("force=true")
        );
    }
    let runner = server
        .get("apps/v1", "Deployment", NS, "school-a-runner")
        .unwrap();
    assert_eq!(
        runner["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "learning-operator"
    );
    assert_eq!(
        runner["metadata"]["labels"]["app.kubernetes.io/instance"],
        "school-a"
    );

    let lease = server
        .get("coordination.k8s.io/v1", "Lease", OPERATOR_NAMESPACE, LEASE)
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "operator-0");
    assert_eq!(op.metrics.leader.get(), 1);
    audit(&server);
}

#[tokio::test]
async fn deployments_becoming_available_flip_the_conditions_through_the_watch() {
    let server = server().await;
    // No timer requeue: only the Deployment watch can bring the news.
    let op = replica(
        &server,
        "operator-0",
        ScriptedProber::healthy(),
        WATCH_DRIVEN,
    );
    let uid = create_worker(&server, |_| {}).await;
    wait_for_children(&server, &uid, &managed_children()).await;
    wait_condition(&server, "Ready", "False", "OllamaStarting").await;

    make_available(&server, "school-a-ollama");
    wait_condition(&server, "OllamaReady", "True", "OllamaAvailable").await;
    make_available(&server, "school-a-runner");
    let lw = wait_condition(&server, "Ready", "True", "Ready").await;
    for (type_, reason) in [
        ("RunnersAvailable", "MinimumReplicasAvailable"),
        ("RunnersHealthy", "Healthy"),
        ("QueueReachable", "QueueVisible"),
        ("ModelsReady", "ModelsPresent"),
        ("GPUAccelerated", "ModelsOnGPU"),
    ] {
        assert_eq!(
            condition(&lw, type_),
            Some(("True".into(), reason.into())),
            "{type_}"
        );
    }
    assert_eq!(lw["status"]["runnersReady"], "2/2");
    assert_eq!(lw["status"]["queue"]["visible"], 5);
    let ready = eventually("a Normal Event for Ready", WAIT, || {
        event(&server, "Ready", "Normal")
    })
    .await;
    assert_eq!(ready["regarding"]["uid"], uid.as_str());
    assert!(
        op.prober
            .calls()
            .iter()
            .any(|u| u == "http://school-a-runner.gustav.svc:8080/internal/health/learning-worker"),
        "health read through the runner Service: {:?}",
        op.prober.calls()
    );
    audit(&server);
}

#[tokio::test]
async fn degraded_runner_health_turns_runners_healthy_false_with_a_warning() {
    let server = server().await;
    let op = replica(&server, "operator-0", ScriptedProber::healthy(), POLLING);
    let uid = create_worker(&server, |_| {}).await;
    wait_for_children(&server, &uid, &managed_children()).await;
    make_available(&server, "school-a-ollama");
    make_available(&server, "school-a-runner");
    wait_condition(&server, "RunnersHealthy", "True", "Healthy").await;

    op.prober.set_health("degraded");
    let lw = wait_condition(&server, "RunnersHealthy", "False", "HealthDegraded").await;
    assert_eq!(
        condition(&lw, "QueueReachable"),
        Some(("False".into(), "DatabaseUnreachable".into()))
    );
    assert_eq!(condition(&lw, "Ready").unwrap().0, "False");
    assert_eq!(condition(&lw, "Degraded").unwrap().0, "True");
    eventually("a Warning Event", WAIT, || {
        event(&server, "HealthDegraded", "Warning")
    })
    .await;

    // Recovery, then the same trouble again: the repeated Event becomes a series (a patch),
    // not one more Event object.
    op.prober.set_health("healthy");
    wait_condition(&server, "RunnersHealthy", "True", "Healthy").await;
    op.prober.set_health("degraded");
    wait_condition(&server, "RunnersHealthy", "False", "HealthDegraded").await;
    let repeated = eventually("the HealthDegraded Event's series", WAIT, || {
        let e = event(&server, "HealthDegraded", "Warning")?;
        (e["series"]["count"] == 2)
            .then_some(e.clone())
            .ok_or(format!("{e}"))
    })
    .await;
    let same_reason = events(&server)
        .iter()
        .filter(|e| e["reason"] == "HealthDegraded" && e["action"] == "SetRunnersHealthy")
        .count();
    assert_eq!(same_reason, 1, "{repeated}");
    audit(&server);
}

#[tokio::test]
async fn spec_change_updates_children_and_observed_generation() {
    let server = server().await;
    let _op = replica(
        &server,
        "operator-0",
        ScriptedProber::unreachable(),
        WATCH_DRIVEN,
    );
    let uid = create_worker(&server, |_| {}).await;
    wait_for_children(&server, &uid, &managed_children()).await;
    wait_condition(&server, "Ready", "False", "OllamaStarting").await;

    let edited = server.modify(LW_API, "LearningWorker", NS, "school-a", |lw| {
        lw["spec"]["runner"]["replicas"] = 3.into();
        lw["spec"]["ai"]["feedbackModel"] = "gpt-oss:120b".into();
    });
    assert_eq!(edited["metadata"]["generation"], 2);
    eventually("the runner Deployment to follow the spec", WAIT, || {
        let d = server
            .get("apps/v1", "Deployment", NS, "school-a-runner")
            .unwrap();
        let env = d["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let model = env
            .iter()
            .any(|e| e["name"] == "AI_FEEDBACK_MODEL" && e["value"] == "gpt-oss:120b");
        (d["spec"]["replicas"] == 3 && model)
            .then_some(())
            .ok_or(format!("{}", d["spec"]["replicas"]))
    })
    .await;
    eventually("observedGeneration 2", WAIT, || {
        let lw = lw(&server)?;
        let conds_follow = lw["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().all(|c| c["observedGeneration"] == 2));
        (lw["status"]["observedGeneration"] == 2 && conds_follow)
            .then_some(())
            .ok_or(format!("{}", lw["status"]))
    })
    .await;
    audit(&server);
}

#[tokio::test]
async fn unwanted_children_are_pruned_and_a_pruned_jobs_pods_go_with_it() {
    let server = server().await;
    let op = replica(&server, "operator-0", ScriptedProber::healthy(), POLLING);
    op.prober.set("/api/tags", 200, &tags(&["qwen2.5vl:3b"]));
    let uid = create_worker(&server, |_| {}).await;
    wait_for_children(&server, &uid, &managed_children()).await;
    make_available(&server, "school-a-ollama");
    make_available(&server, "school-a-runner");
    let job = eventually("a model-pull Job for the missing model", WAIT, || {
        server
            .list("batch/v1", "Job", NS)
            .into_iter()
            .next()
            .ok_or_else(|| "no Job".to_owned())
    })
    .await;
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["args"],
        json!(["model-pull", "gpt-oss:20b"])
    );
    // Play the Job controller: a pod owned by the Job.
    server.create(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pull-pod", "namespace": NS,
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job["metadata"]["name"], "uid": job["metadata"]["uid"], "controller": true}]}}));
    // A child left under an old name (e.g. by an older operator version) and a look-alike
    // that is not this worker's.
    let labels = json!({"app.kubernetes.io/name": "learning-worker", "app.kubernetes.io/instance": "school-a", "app.kubernetes.io/managed-by": "learning-operator"});
    let owner = json!([{"apiVersion": LW_API, "kind": "LearningWorker", "name": "school-a", "uid": uid, "controller": true}]);
    server.create(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "school-a-legacy", "namespace": NS, "labels": labels, "ownerReferences": owner}}));
    server.create(json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "school-a-legacy", "namespace": NS, "labels": labels, "ownerReferences": owner}}));
    server.create(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "school-a-handmade", "namespace": NS, "labels": labels}}));
    eventually("the legacy children pruned", WAIT, || {
        let gone = server
            .get("v1", "ServiceAccount", NS, "school-a-legacy")
            .is_none()
            && server
                .get("policy/v1", "PodDisruptionBudget", NS, "school-a-legacy")
                .is_none();
        gone.then_some(()).ok_or("still there".into())
    })
    .await;

    server.modify(LW_API, "LearningWorker", NS, "school-a", |lw| {
        lw["spec"]["ollama"]["mode"] = "external".into();
        lw["spec"]["ollama"]["url"] = "http://ollama:11434".into();
        lw["spec"]["network"]["policies"] = false.into();
    });
    // The model volume stays (never pruned): switching back finds the models.
    let expected = pairs(&[
        ("ServiceAccount", "school-a-runner"),
        ("Deployment", "school-a-runner"),
        ("Service", "school-a-runner"),
        ("PodDisruptionBudget", "school-a-runner"),
        ("PersistentVolumeClaim", "school-a-ollama-models"),
    ]);
    wait_for_children(&server, &uid, &expected).await;
    assert!(
        server.get("v1", "Pod", NS, "pull-pod").is_none(),
        "the Job's pod went with it (Background)"
    );
    assert!(
        server
            .get("v1", "Service", NS, "school-a-handmade")
            .is_some(),
        "not owned: never pruned"
    );
    let runner = server
        .get("apps/v1", "Deployment", NS, "school-a-runner")
        .unwrap();
    let env = runner["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .clone();
    assert!(env
        .iter()
        .any(|e| e["name"] == "OLLAMA_BASE_URL" && e["value"] == "http://ollama:11434"));
    let deletes: BTreeSet<String> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE" && r.status == 200)
        .map(|r| r.path.rsplit('/').take(2).collect::<Vec<_>>().join(" "))
        .collect();
    let job_name = job["metadata"]["name"].as_str().unwrap();
    let expected_deletes: BTreeSet<String> = [
        "school-a-legacy serviceaccounts".to_owned(),
        "school-a-legacy poddisruptionbudgets".to_owned(),
        format!("{job_name} jobs"),
        "school-a-ollama deployments".to_owned(),
        "school-a-ollama services".to_owned(),
        "school-a-ollama networkpolicies".to_owned(),
        "school-a-model-pull networkpolicies".to_owned(),
        "school-a-runner networkpolicies".to_owned(),
    ]
    .into();
    assert_eq!(deletes, expected_deletes);
    audit(&server);
}

#[tokio::test]
async fn invalid_spec_gives_a_condition_and_an_event_and_no_hot_loop() {
    let server = server().await;
    // Short requeues: a reconcile loop that did requeue an invalid spec would show at once.
    let op = replica(
        &server,
        "operator-0",
        ScriptedProber::unreachable(),
        POLLING,
    );
    create_worker(&server, |spec| {
        spec["runner"].as_object_mut().unwrap().remove("replicas");
        spec["runner"]["autoscaling"] =
            json!({"minReplicas": 4, "maxReplicas": 2, "jobsPerReplica": 10});
    })
    .await;
    let lw = wait_condition(&server, "Ready", "False", "InvalidSpec").await;
    let message = lw["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()["message"]
        .clone();
    assert!(
        message
            .as_str()
            .unwrap()
            .contains("minReplicas must not exceed maxReplicas"),
        "{message}"
    );
    eventually("a Warning Event InvalidSpec", WAIT, || {
        event(&server, "InvalidSpec", "Warning")
    })
    .await;
    assert!(
        server.list("apps/v1", "Deployment", NS).is_empty(),
        "nothing applied"
    );

    // The window: with 200 ms requeues a hot loop would reconcile ~10 times; the operator
    // reconciles at most once more (its own status write comes back through the watch).
    let (reconciles, requests) = (op.reconciles(), server.requests().len());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let extra_reconciles = op.reconciles() - reconciles;
    let extra_writes: Vec<String> = server.requests()[requests..]
        .iter()
        .filter(|r| r.method != "GET" && !r.path.contains("/leases/"))
        .map(|r| r.uri())
        .collect();
    assert!(
        extra_reconciles <= 1,
        "{extra_reconciles} reconciles in the window"
    );
    assert!(
        extra_writes.len() <= 1,
        "writes in the window: {extra_writes:#?}"
    );
    assert_eq!(
        events(&server)
            .iter()
            .filter(|e| e["reason"] == "InvalidSpec")
            .count(),
        2,
        "Ready and Degraded, once each"
    );

    // Fixing the spec is a change: reconciling resumes.
    server.modify(LW_API, "LearningWorker", NS, "school-a", |lw| {
        lw["spec"]["runner"]["autoscaling"]["maxReplicas"] = 6.into();
    });
    eventually("children after the fix", WAIT, || {
        server
            .get("apps/v1", "Deployment", NS, "school-a-runner")
            .map(|_| ())
            .ok_or("no runner".into())
    })
    .await;
    audit(&server);
}

/// Status patches of LearningWorker `name` (one per reconcile of an invalid spec).
fn status_patches(server: &FakeApiServer, name: &str) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| {
            r.method == "PATCH" && r.path.ends_with(&format!("/learningworkers/{name}/status"))
        })
        .count()
}

/// Creates another invalid worker `name` and waits until it is reconciled: the watch delivers
/// events in order, so every event on the other workers before its creation has reached the
/// controller by then.
async fn barrier(server: &FakeApiServer, name: &str) {
    let mut obj = example("amd-gpu.yaml");
    obj["metadata"]["name"] = name.into();
    obj["spec"]["runner"]["autoscaling"] = json!({"minReplicas": 1, "maxReplicas": 2});
    server.create(obj);
    eventually(&format!("{name} reconciled"), WAIT, || {
        let lw = server
            .get(LW_API, "LearningWorker", NS, name)
            .ok_or("gone")?;
        (condition(&lw, "Ready").map(|c| c.1) == Some("InvalidSpec".into()))
            .then_some(())
            .ok_or(format!("{}", lw["status"]))
    })
    .await;
}

#[tokio::test]
async fn status_writes_alone_do_not_trigger_a_reconcile_but_spec_changes_do() {
    let server = server().await;
    // No timer requeue, and invalid specs (no children, so no owned-object events): every
    // reconcile here is triggered by a LearningWorker watch event, and writes the status once.
    let _op = replica(
        &server,
        "operator-0",
        ScriptedProber::unreachable(),
        WATCH_DRIVEN,
    );
    create_worker(&server, |spec| {
        spec["runner"]["autoscaling"] = json!({"minReplicas": 1, "maxReplicas": 2});
    })
    .await;
    wait_condition(&server, "Ready", "False", "InvalidSpec").await;
    // The operator's own status write has come back through the watch by now.
    barrier(&server, "barrier-1").await;
    assert_eq!(
        status_patches(&server, "school-a"),
        1,
        "the operator's own status write triggered another reconcile"
    );

    // Someone else writes the status: not a spec change either.
    let mut status = lw(&server).unwrap()["status"].clone();
    status["health"] = json!({"status": "healthy"});
    server.set_status(LW_API, "LearningWorker", NS, "school-a", status);
    barrier(&server, "barrier-2").await;
    assert_eq!(
        status_patches(&server, "school-a"),
        1,
        "a status patch triggered a reconcile"
    );

    // A spec change (generation 2) does.
    server.modify(LW_API, "LearningWorker", NS, "school-a", |lw| {
        lw["spec"]["runner"]["autoscaling"]["maxReplicas"] = 3.into();
    });
    eventually("the spec change reconciled", WAIT, || {
        let lw = lw(&server)?;
        (lw["status"]["observedGeneration"] == 2)
            .then_some(())
            .ok_or(format!("{}", lw["status"]))
    })
    .await;
    barrier(&server, "barrier-3").await;
    assert_eq!(status_patches(&server, "school-a"), 2);
    audit(&server);
}

#[tokio::test]
async fn deleting_the_worker_leaves_nothing_that_owner_references_would_not_collect() {
    let server = server().await;
    let op = replica(&server, "operator-0", ScriptedProber::healthy(), POLLING);
    let uid = create_worker(&server, |_| {}).await;
    wait_for_children(&server, &uid, &managed_children()).await;
    make_available(&server, "school-a-ollama");
    make_available(&server, "school-a-runner");
    wait_condition(&server, "Ready", "True", "Ready").await;
    eventually("the condition metrics follow the status", WAIT, || {
        let series = worker_series(&op.metrics);
        let ready = r#"learning_operator_worker_condition{learning_worker="school-a",namespace="gustav",reason="Ready",status="True",type="Ready"} 1"#;
        (series.iter().any(|l| l == ready)
            && series.iter().filter(|l| l.contains(r#"type="Ready""#)).count() == 1)
            .then_some(())
            .ok_or(format!("{series:#?}"))
    })
    .await;
    let series = worker_series(&op.metrics);
    for type_ in learning_crds::conditions::types::ALL {
        assert_eq!(
            series
                .iter()
                .filter(|l| l.starts_with("learning_operator_worker_condition{")
                    && l.contains(&format!("type=\"{type_}\"")))
                .count(),
            1,
            "one series for {type_}: {series:#?}"
        );
    }

    // Every object the operator wrote into the namespace, except Events, names it as owner.
    for r in server.requests().iter().filter(|r| {
        r.method == "PATCH" && !r.path.ends_with("/status") && !r.path.contains("/events/")
    }) {
        let owner = &r.body["metadata"]["ownerReferences"][0];
        assert_eq!(
            (owner["uid"].as_str(), owner["controller"].as_bool()),
            (Some(uid.as_str()), Some(true)),
            "{}",
            r.uri()
        );
    }
    assert!(server
        .requests()
        .iter()
        .all(|r| r.method != "POST" || r.path.ends_with("/events") || r.path.ends_with("/leases")));

    // kubectl delete (background propagation): the garbage collector removes the children.
    server.delete(
        LW_API,
        "LearningWorker",
        NS,
        "school-a",
        Some(Propagation::Background),
    );
    eventually("everything but Events gone", WAIT, || {
        let left: Vec<String> = server
            .all_objects()
            .into_iter()
            .filter(|o| o["metadata"]["namespace"] == NS && o["kind"] != "Event")
            .map(|o| format!("{} {}", o["kind"], o["metadata"]["name"]))
            .collect();
        left.is_empty().then_some(()).ok_or(format!("{left:?}"))
    })
    .await;
    // Events regard the worker but are not owned: the API server expires them (event TTL).
    assert!(!events(&server).is_empty());
    eventually("the worker's series gone", WAIT, || {
        let series = worker_series(&op.metrics);
        series
            .is_empty()
            .then_some(())
            .ok_or(format!("{series:#?}"))
    })
    .await;
    assert!(op.metrics.observed_workers().is_empty());
    audit(&server);
}

#[tokio::test]
async fn a_standby_takes_over_an_expired_lease_and_a_leader_that_loses_it_stops() {
    let server = server().await;
    let leader = replica(
        &server,
        "operator-0",
        ScriptedProber::unreachable(),
        WATCH_DRIVEN,
    );
    eventually("operator-0 to lead", WAIT, || {
        (leader.metrics.leader.get() == 1)
            .then_some(())
            .ok_or("not yet".into())
    })
    .await;
    let standby = replica(
        &server,
        "operator-1",
        ScriptedProber::unreachable(),
        WATCH_DRIVEN,
    );
    create_worker(&server, |_| {}).await;
    wait_condition(&server, "Ready", "False", "OllamaStarting").await;
    eventually("the standby to find the Lease held", WAIT, || {
        let tried = server
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with(LEASE))
            .count();
        (tried >= 3)
            .then_some(())
            .ok_or(format!("{tried} Lease reads"))
    })
    .await;
    assert_eq!(standby.reconciles(), 0, "a standby does not reconcile");
    assert_eq!(standby.metrics.leader.get(), 0);
    assert!(
        standby.ready.load(Ordering::Relaxed),
        "a standby is ready (healthy)"
    );

    // The leader dies without releasing the Lease: the standby takes over after it expires.
    leader.task.abort();
    eventually("operator-1 to take over", WAIT, || {
        let lease = server
            .get("coordination.k8s.io/v1", "Lease", OPERATOR_NAMESPACE, LEASE)
            .unwrap();
        (lease["spec"]["holderIdentity"] == "operator-1" && standby.reconciles() > 0)
            .then_some(lease["spec"]["leaseTransitions"].clone())
            .ok_or(format!("{}", lease["spec"]))
    })
    .await;

    // Another replica takes the Lease from operator-1 (e.g. after a network partition):
    // operator-1 notices at its next renewal and stops with LeadershipLost.
    server.modify(
        "coordination.k8s.io/v1",
        "Lease",
        OPERATOR_NAMESPACE,
        LEASE,
        |l| {
            l["spec"]["holderIdentity"] = "operator-2".into();
            l["spec"]["renewTime"] = k8s_openapi::jiff::Timestamp::now().to_string().into();
        },
    );
    let mut standby = standby;
    let ended = tokio::time::timeout(WAIT, &mut standby.task)
        .await
        .expect("operate returns")
        .unwrap();
    assert!(matches!(ended, Err(RunError::LeadershipLost)), "{ended:?}");
    assert_eq!(standby.metrics.leader.get(), 0);
    audit(&server);
}

/// The renewTimes the replica `identity` wrote to the Lease successfully (PUTs answered 200).
fn renewals(server: &FakeApiServer, identity: &str) -> Vec<Timestamp> {
    server
        .requests()
        .iter()
        .filter(|r| r.client == identity && r.method == "PUT" && r.path.ends_with(LEASE))
        .filter(|r| r.status == 200 && r.body["spec"]["holderIdentity"] == identity)
        .map(|r| {
            r.body["spec"]["renewTime"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

#[tokio::test]
async fn a_leader_whose_lease_requests_stall_steps_down_before_its_lease_expires() {
    let server = server().await;
    let leader = replica(
        &server,
        "operator-0",
        ScriptedProber::unreachable(),
        POLLING,
    );
    eventually("operator-0 to lead", WAIT, || {
        (leader.metrics.leader.get() == 1)
            .then_some(())
            .ok_or("not yet".into())
    })
    .await;
    create_worker(&server, |_| {}).await;
    let standby = replica(
        &server,
        "operator-1",
        ScriptedProber::unreachable(),
        POLLING,
    );
    eventually(
        "operator-0 to reconcile and renew, the standby to find the Lease held",
        WAIT,
        || {
            let standby_reads = server
                .requests()
                .iter()
                .filter(|r| r.client == "operator-1" && r.path.ends_with(LEASE))
                .count();
            (standby_reads >= 1
                && !renewals(&server, "operator-0").is_empty()
                && leader.reconciles() > 0)
                .then_some(())
                .ok_or(format!("{standby_reads} standby reads"))
        },
    )
    .await;

    // From now on operator-0's Lease requests hang (longer than this test), as on a stalled
    // API server connection; everything else, and the standby, still gets through.
    server.stall("/leases", Some("operator-0"), Duration::from_secs(600));
    let mut leader = leader;
    let ended = tokio::time::timeout(WAIT, &mut leader.task)
        .await
        .expect("the stalled leader steps down")
        .unwrap();
    let ended_at = Timestamp::now();
    assert!(
        matches!(ended, Err(RunError::RenewFailed { .. })),
        "{ended:?}"
    );
    assert_eq!(leader.metrics.leader.get(), 0);
    // The bound that is the point: it stopped reconciling before its Lease (3 s) could expire.
    let last_renewal = *renewals(&server, "operator-0").iter().max().unwrap();
    let lease_end = last_renewal + SignedDuration::from_secs(3);
    assert!(
        ended_at < lease_end,
        "stopped {} after its last renewal, the Lease lasts 3 s",
        ended_at.duration_since(last_renewal)
    );
    let reconciled = leader.reconciles();

    // The standby takes over once the Lease has expired, so never while operator-0 reconciled.
    let acquired = eventually("operator-1 to take over", WAIT, || {
        let lease = server
            .get("coordination.k8s.io/v1", "Lease", OPERATOR_NAMESPACE, LEASE)
            .unwrap();
        (lease["spec"]["holderIdentity"] == "operator-1" && standby.reconciles() > 0)
            .then(|| {
                lease["spec"]["acquireTime"]
                    .as_str()
                    .unwrap()
                    .parse::<Timestamp>()
                    .unwrap()
            })
            .ok_or(format!("{}", lease["spec"]))
    })
    .await;
    assert!(
        acquired >= lease_end && acquired > ended_at,
        "{acquired} vs {ended_at}"
    );
    assert_eq!(
        leader.reconciles(),
        reconciled,
        "no reconcile after the step-down"
    );
    audit(&server);
}

/// Every request on a Lease, as "METHOD uri".
fn lease_requests(server: &FakeApiServer) -> Vec<String> {
    server
        .requests()
        .iter()
        .filter(|r| r.path.contains("/leases"))
        .map(|r| format!("{} {}", r.method, r.uri()))
        .collect()
}

#[tokio::test]
async fn a_gracefully_stopping_leader_releases_the_lease_and_a_standby_takes_over_at_once() {
    let server = server().await;
    // The leader asks for a 300 s Lease (renewed every 100 s): within this test the Lease can
    // only change hands because the leader released it, never because it expired.
    let leader = replica_with(
        &server,
        Settings {
            lease_seconds: 300,
            ..settings("operator-0", WATCH_DRIVEN)
        },
        ScriptedProber::unreachable(),
    );
    eventually("operator-0 to lead", WAIT, || {
        (leader.metrics.leader.get() == 1)
            .then_some(())
            .ok_or("not yet".into())
    })
    .await;
    // The standby retries every second (its own 3 s Lease setting).
    let standby = replica(
        &server,
        "operator-1",
        ScriptedProber::unreachable(),
        WATCH_DRIVEN,
    );
    create_worker(&server, |_| {}).await;
    wait_condition(&server, "Ready", "False", "OllamaStarting").await;
    eventually("the standby to find the Lease held", WAIT, || {
        let tried = server
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with(LEASE))
            .count();
        (tried >= 3)
            .then_some(())
            .ok_or(format!("{tried} Lease reads"))
    })
    .await;
    assert_eq!(standby.reconciles(), 0, "a standby does not reconcile");

    // SIGTERM (e.g. a rolling update): the leader stops reconciling and gives the Lease up.
    let leader_metrics = leader.metrics.clone();
    assert!(matches!(leader.stop().await, Ok(())));
    assert_eq!(leader_metrics.leader.get(), 0);
    let release = server
        .requests()
        .into_iter()
        .find(|r| {
            r.method == "PUT"
                && r.path.ends_with(LEASE)
                && r.status == 200
                && r.body["spec"]["holderIdentity"].is_null()
        })
        .expect("the leader cleared the holder");
    assert_eq!(release.body["spec"]["leaseDurationSeconds"], 1);

    eventually(
        "operator-1 to take over without waiting 300 s",
        WAIT,
        || {
            let lease = server
                .get("coordination.k8s.io/v1", "Lease", OPERATOR_NAMESPACE, LEASE)
                .unwrap();
            (lease["spec"]["holderIdentity"] == "operator-1" && standby.reconciles() > 0)
                .then_some(lease["spec"]["leaseTransitions"].clone())
                .ok_or(format!("{}", lease["spec"]))
        },
    )
    .await;
    assert_eq!(standby.metrics.leader.get(), 1);

    // The new leader stops too; a standby that never led writes nothing on its way out.
    let idle = replica(
        &server,
        "operator-2",
        ScriptedProber::unreachable(),
        WATCH_DRIVEN,
    );
    eventually("operator-2 standing by", WAIT, || {
        idle.ready
            .load(Ordering::Relaxed)
            .then_some(())
            .ok_or("not yet".into())
    })
    .await;
    assert!(matches!(idle.stop().await, Ok(())));
    assert!(matches!(standby.stop().await, Ok(())));
    let lease = server
        .get("coordination.k8s.io/v1", "Lease", OPERATOR_NAMESPACE, LEASE)
        .unwrap();
    assert!(
        lease["spec"]["holderIdentity"].is_null(),
        "{}",
        lease["spec"]
    );
    assert!(
        !server
            .requests()
            .iter()
            .any(|r| r.method != "GET" && r.body["spec"]["holderIdentity"] == "operator-2"),
        "operator-2 never wrote the Lease"
    );
    audit(&server);
}

#[tokio::test]
async fn without_leader_election_no_lease_is_requested_and_the_controller_starts_at_once() {
    let server = server().await;
    let op = replica_with(
        &server,
        Settings {
            leader_election: false,
            ..settings("operator-0", WATCH_DRIVEN)
        },
        ScriptedProber::unreachable(),
    );
    eventually("ready after the first list", WAIT, || {
        (op.ready.load(Ordering::Relaxed) && op.metrics.leader.get() == 1)
            .then_some(())
            .ok_or("not yet".into())
    })
    .await;
    let uid = create_worker(&server, |_| {}).await;
    wait_for_children(&server, &uid, &managed_children()).await;
    wait_condition(&server, "Ready", "False", "OllamaStarting").await;
    let op_metrics = op.metrics.clone();
    assert!(matches!(op.stop().await, Ok(())));
    assert_eq!(op_metrics.leader.get(), 0);
    assert_eq!(
        lease_requests(&server),
        Vec::<String>::new(),
        "no Lease request at all"
    );
    assert!(server
        .get("coordination.k8s.io/v1", "Lease", OPERATOR_NAMESPACE, LEASE)
        .is_none());
    audit(&server);
}

/// The sample lines of the per-worker metrics for school-a.
fn worker_series(metrics: &Metrics) -> Vec<String> {
    metrics
        .render()
        .lines()
        .filter(|l| l.starts_with("learning_operator_worker_") && l.contains("school-a"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn the_declared_rbac_is_exactly_what_the_operator_uses() {
    // One run that walks every path: create, available, flapping health (Event series), a
    // missing model (pull Job), legacy children, external Ollama without policies, delete.
    let server = server().await;
    let op = replica(&server, "operator-0", ScriptedProber::healthy(), POLLING);
    op.prober.set("/api/tags", 200, &tags(&["qwen2.5vl:3b"]));
    let uid = create_worker(&server, |_| {}).await;
    wait_for_children(&server, &uid, &managed_children()).await;
    make_available(&server, "school-a-ollama");
    make_available(&server, "school-a-runner");
    eventually("a pull Job", WAIT, || {
        server
            .list("batch/v1", "Job", NS)
            .first()
            .cloned()
            .ok_or("none".into())
    })
    .await;
    for status in ["degraded", "healthy", "degraded"] {
        op.prober.set_health(status);
        let (s, r) = if status == "healthy" {
            ("True", "Healthy")
        } else {
            ("False", "HealthDegraded")
        };
        wait_condition(&server, "RunnersHealthy", s, r).await;
    }
    eventually("an Event series", WAIT, || {
        event(&server, "HealthDegraded", "Warning").and_then(|e| {
            (e["series"]["count"] == 2)
                .then_some(())
                .ok_or(format!("{e}"))
        })
    })
    .await;
    let labels = json!({"app.kubernetes.io/name": "learning-worker", "app.kubernetes.io/instance": "school-a", "app.kubernetes.io/managed-by": "learning-operator"});
    let owner = json!([{"apiVersion": LW_API, "kind": "LearningWorker", "name": "school-a", "uid": uid, "controller": true}]);
    server.create(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "school-a-legacy", "namespace": NS, "labels": labels, "ownerReferences": owner}}));
    server.create(json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "school-a-legacy", "namespace": NS, "labels": labels, "ownerReferences": owner}}));
    server.modify(LW_API, "LearningWorker", NS, "school-a", |lw| {
        lw["spec"]["ollama"]["mode"] = "external".into();
        lw["spec"]["ollama"]["url"] = "http://ollama:11434".into();
        lw["spec"]["network"]["policies"] = false.into();
    });
    // The model volume stays (never pruned): switching back finds the models.
    let expected = pairs(&[
        ("ServiceAccount", "school-a-runner"),
        ("Deployment", "school-a-runner"),
        ("Service", "school-a-runner"),
        ("PodDisruptionBudget", "school-a-runner"),
        ("PersistentVolumeClaim", "school-a-ollama-models"),
    ]);
    wait_for_children(&server, &uid, &expected).await;
    eventually("a renewed Lease", WAIT, || {
        let puts = server
            .requests()
            .iter()
            .filter(|r| r.method == "PUT" && r.path.ends_with(LEASE))
            .count();
        (puts > 0).then_some(()).ok_or("no renewal yet".into())
    })
    .await;

    let used = audit(&server);
    // The KEDA rules are used only by workers with engine keda (whole_loop_autoscaling.rs).
    let declared: BTreeSet<(String, String, String)> = learning_operator::rbac::RULES
        .iter()
        .filter(|r| r.scope != learning_operator::rbac::Scope::Keda)
        .flat_map(|r| {
            r.resources.iter().flat_map(move |res| {
                r.verbs
                    .iter()
                    .map(move |v| ((*v).to_owned(), r.api_group.to_owned(), (*res).to_owned()))
            })
        })
        .collect();
    let unused: Vec<_> = declared.difference(&used).collect();
    assert!(
        unused.is_empty(),
        "declared but never used (least privilege: remove them): {unused:#?}"
    );
    assert_eq!(used, declared);
}
