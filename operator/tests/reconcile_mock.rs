//! The controller's API interaction without a cluster: kube's `tower-test` mock pattern. A
//! scripted mock (`fake_api_server` below: answers by method and path, records every request)
//! stands in for kube-apiserver, and `ScriptedProber` for the runner and Ollama HTTP endpoints
//! (neither can run here). Each test runs `reconcile` (or one leader-election step) and checks
//! the exact requests: the SSA patches of the children, pruning deletes, the status patch, the
//! Events, the Lease calls — and every request is checked against the declared RBAC
//! (`learning_operator::rbac`). The whole loop (watches, queueing) is in `whole_loop.rs`.

mod support;

use std::sync::{Arc, Mutex};

use http::{Request, Response};
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::Client;
use learning_crds::LearningWorker;
use learning_operator::controller::{reconcile, Context};
use learning_operator::metrics::Metrics;
use learning_operator::rbac::RequestAttributes;
use serde_json::{json, Value};
use support::prober::{tags, ScriptedProber};
use support::rbac_audit;

/// One recorded request.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    uri: String,
    body: Value,
}

/// What the fake API server knows: Deployments by name, and the objects every list returns.
#[derive(Default, Clone)]
struct Cluster {
    deployments: Vec<Value>,
    /// Returned by lists of their resource (`kind` decides which), and by gets by name.
    listed: Vec<Value>,
    /// Resources (plural) whose server-side applies the server refuses with 422 Invalid.
    refuse_apply: Vec<&'static str>,
}

fn invalid(message: &str) -> (u16, Value) {
    (
        422,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Invalid", "code": 422, "message": message}),
    )
}

fn not_found() -> (u16, Value) {
    (
        404,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
    )
}

/// The resource (plural) of a kind, for lists.
fn plural(kind: &str) -> String {
    match kind {
        "NetworkPolicy" => "networkpolicies".into(),
        k => format!("{}s", k.to_lowercase()),
    }
}

fn answer(cluster: &Cluster, method: &str, uri: &str, body: &Value) -> (u16, Value) {
    let (path, query) = uri
        .split_once('?')
        .map_or((uri, None), |(p, q)| (p, Some(q)));
    let attrs = RequestAttributes::parse(method, path, query).unwrap();
    match (method, attrs.verb.as_str()) {
        ("GET", "get") if attrs.resource == "deployments" => cluster
            .deployments
            .iter()
            .find(|d| d["metadata"]["name"] == attrs.name.as_deref().unwrap())
            .map_or_else(not_found, |d| (200, d.clone())),
        ("GET", "get") => cluster
            .listed
            .iter()
            .find(|o| {
                plural(o["kind"].as_str().unwrap()) == attrs.resource
                    && o["metadata"]["name"] == attrs.name.as_deref().unwrap()
            })
            .map_or_else(not_found, |o| (200, o.clone())),
        ("PATCH", _) if cluster.refuse_apply.contains(&attrs.resource.as_str()) => {
            invalid(&format!(
                "{} is invalid: spec: Forbidden: field is immutable",
                attrs.resource
            ))
        }
        ("GET", "list") => {
            let items: Vec<Value> = cluster
                .listed
                .iter()
                .filter(|o| plural(o["kind"].as_str().unwrap()) == attrs.resource)
                .cloned()
                .collect();
            (
                200,
                json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "7"}, "items": items}),
            )
        }
        // The API server answers a status patch with the whole object.
        ("PATCH", _) if path.ends_with("/status") => {
            let mut obj = serde_json::to_value(example(1)).unwrap();
            obj["status"] = body["status"].clone();
            (200, obj)
        }
        ("PATCH" | "POST", _) => (200, body.clone()),
        ("DELETE", "delete") => (
            200,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200}),
        ),
        _ => not_found(),
    }
}

/// Starts the fake API server; returns the client and the request log.
fn fake_api_server(cluster: Cluster) -> (Client, Arc<Mutex<Vec<Recorded>>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().to_string();
            let uri = req.uri().to_string();
            let bytes = req.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let (code, reply) = answer(&cluster, &method, &uri, &body);
            log2.lock().unwrap().push(Recorded { method, uri, body });
            let resp = Response::builder()
                .status(code)
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap();
            send.send_response(resp);
        }
    });
    (Client::new(service, "default"), log)
}

/// The request log, after checking every request against the declared RBAC.
fn finish(log: &Arc<Mutex<Vec<Recorded>>>) -> Vec<Recorded> {
    let log = log.lock().unwrap().clone();
    let checked =
        rbac_audit::assert_declared(log.iter().map(|r| (r.method.as_str(), r.uri.as_str())));
    assert_eq!(checked, log.len());
    log
}

fn healthy_endpoints(health_status: &str) -> ScriptedProber {
    let p = ScriptedProber::healthy();
    p.set_health(health_status);
    p
}

fn example(generation: i64) -> LearningWorker {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crds/examples/amd-gpu.yaml"
    ))
    .unwrap();
    let mut lw: LearningWorker = serde_yaml_ng::from_str(&text).unwrap();
    lw.metadata.uid = Some("0b5c9a8e-1111-4222-8333-444455556666".into());
    lw.metadata.generation = Some(generation);
    lw
}

fn ctx(client: Client, prober: ScriptedProber) -> Arc<Context> {
    Arc::new(Context::new(
        client,
        Arc::new(prober),
        Metrics::new().unwrap(),
        "learning-system".into(),
        "test-pod".into(),
    ))
}

fn available_deployment(name: &str, replicas: i32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "gustav", "generation": 1},
        "spec": {"replicas": replicas, "selector": {}, "template": {}},
        "status": {"observedGeneration": 1, "replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas, "updatedReplicas": replicas}})
}

fn patches(log: &[Recorded]) -> Vec<&Recorded> {
    log.iter()
        .filter(|r| {
            r.method == "PATCH" && !r.uri.contains("/status?") && !r.uri.contains("/events/")
        })
        .collect()
}

fn status_patch(log: &[Recorded]) -> &Recorded {
    let v: Vec<&Recorded> = log
        .iter()
        .filter(|r| r.uri.contains("/learningworkers/school-a/status?"))
        .collect();
    assert_eq!(v.len(), 1, "exactly one status patch: {log:#?}");
    v[0]
}

fn condition<'a>(status_body: &'a Value, type_: &str) -> &'a Value {
    status_body["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap()
}

fn events(log: &[Recorded]) -> Vec<&Recorded> {
    log.iter()
        .filter(|r| {
            r.uri
                .contains("/apis/events.k8s.io/v1/namespaces/gustav/events")
        })
        .collect()
}

#[tokio::test]
async fn create_applies_every_child_with_ssa_and_reports_status_and_events() {
    let (client, log) = fake_api_server(Cluster::default());
    let action = reconcile(
        Arc::new(example(1)),
        ctx(client, ScriptedProber::unreachable()),
    )
    .await
    .unwrap();
    assert_eq!(action, Action::requeue(std::time::Duration::from_secs(30)));
    let log = finish(&log);

    let applied: Vec<(String, String)> = patches(&log)
        .iter()
        .map(|r| {
            (
                r.body["kind"].as_str().unwrap().to_owned(),
                r.body["metadata"]["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expect = [
        ("ServiceAccount", "school-a-runner"),
        ("NetworkPolicy", "school-a-runner"),
        ("NetworkPolicy", "school-a-ollama"),
        ("NetworkPolicy", "school-a-model-pull"),
        ("PersistentVolumeClaim", "school-a-ollama-models"),
        ("Service", "school-a-ollama"),
        ("Deployment", "school-a-ollama"),
        ("Service", "school-a-runner"),
        ("PodDisruptionBudget", "school-a-runner"),
        ("Deployment", "school-a-runner"),
    ];
    assert_eq!(applied, expect.map(|(k, n)| (k.to_owned(), n.to_owned())));
    for r in patches(&log) {
        assert!(
            r.uri.contains("fieldManager=learning-operator") && r.uri.contains("force=true"),
            "{}",
            r.uri
        );
        assert!(
            r.uri.starts_with("/api/v1/namespaces/gustav/")
                || r.uri.contains("/namespaces/gustav/"),
            "{}",
            r.uri
        );
        let owner = &r.body["metadata"]["ownerReferences"][0];
        assert_eq!(
            (owner["kind"].as_str(), owner["controller"].as_bool()),
            (Some("LearningWorker"), Some(true)),
            "delete is left to owner references: {}",
            r.uri
        );
        assert_eq!(owner["uid"], "0b5c9a8e-1111-4222-8333-444455556666");
    }
    let dep = patches(&log)
        .into_iter()
        .find(|r| r.uri.contains("/deployments/school-a-runner?"))
        .unwrap();
    assert_eq!(dep.uri, "/apis/apps/v1/namespaces/gustav/deployments/school-a-runner?&force=true&fieldManager=learning-operator");

    let status = status_patch(&log);
    assert!(
        status.uri.contains("fieldManager=learning-operator"),
        "{}",
        status.uri
    );
    assert_eq!(status.body["status"]["observedGeneration"], 1);
    assert_eq!(condition(&status.body, "Ready")["status"], "False");
    assert_eq!(
        condition(&status.body, "RunnersAvailable")["reason"],
        "MinimumReplicasUnavailable"
    );
    assert_eq!(events(&log).len(), 9, "one Event per new condition");
}

#[tokio::test]
async fn available_runners_and_ollama_flip_the_conditions_to_ready() {
    let cluster = Cluster {
        deployments: vec![
            available_deployment("school-a-runner", 2),
            available_deployment("school-a-ollama", 1),
        ],
        ..Cluster::default()
    };
    let (client, log) = fake_api_server(cluster);
    reconcile(
        Arc::new(example(1)),
        ctx(client, healthy_endpoints("healthy")),
    )
    .await
    .unwrap();
    let log = finish(&log);
    let status = &status_patch(&log).body;
    for type_ in [
        "Ready",
        "RunnersAvailable",
        "RunnersHealthy",
        "QueueReachable",
        "OllamaReady",
        "ModelsReady",
        "GPUAccelerated",
    ] {
        assert_eq!(
            condition(status, type_)["status"],
            "True",
            "{type_}: {status:#}"
        );
    }
    assert_eq!(status["status"]["queue"]["visible"], 5);
    assert_eq!(status["status"]["runnersReady"], "2/2");
    assert!(
        patches(&log).iter().all(|r| !r.uri.contains("/jobs/")),
        "all models present: no pull Job"
    );
    let ready_event = events(&log)
        .into_iter()
        .find(|e| e.body["reason"] == "Ready")
        .expect("an Event for Ready");
    assert_eq!(ready_event.body["type"], "Normal");
    assert_eq!(ready_event.body["regarding"]["name"], "school-a");
}

#[tokio::test]
async fn degraded_health_gives_runners_healthy_false_and_a_warning() {
    let cluster = Cluster {
        deployments: vec![
            available_deployment("school-a-runner", 2),
            available_deployment("school-a-ollama", 1),
        ],
        ..Cluster::default()
    };
    let (client, log) = fake_api_server(cluster);
    reconcile(
        Arc::new(example(1)),
        ctx(client, healthy_endpoints("degraded")),
    )
    .await
    .unwrap();
    let log = finish(&log);
    let status = &status_patch(&log).body;
    assert_eq!(condition(status, "RunnersHealthy")["status"], "False");
    assert_eq!(
        condition(status, "RunnersHealthy")["reason"],
        "HealthDegraded"
    );
    assert_eq!(
        condition(status, "QueueReachable")["reason"],
        "DatabaseUnreachable"
    );
    assert_eq!(condition(status, "Ready")["status"], "False");
    let warning = events(&log)
        .into_iter()
        .find(|e| e.body["reason"] == "HealthDegraded")
        .unwrap();
    assert_eq!(warning.body["type"], "Warning");
}

/// A runner Deployment whose pods run but fail their readiness probe.
fn unready_deployment(name: &str, replicas: i32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "gustav", "generation": 1},
        "spec": {"replicas": replicas, "selector": {}, "template": {}},
        "status": {"observedGeneration": 1, "replicas": replicas, "readyReplicas": 0, "availableReplicas": 0, "updatedReplicas": replicas}})
}

fn running_runner_pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "gustav",
        "labels": {"app.kubernetes.io/name": "learning-worker", "app.kubernetes.io/instance": "school-a", "app.kubernetes.io/component": "runner"}},
        "status": {"phase": "Running", "podIP": "10.0.0.7", "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "runner", "image": "r:1", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]}})
}

#[tokio::test]
async fn the_health_report_of_running_but_unready_runners_names_the_database() {
    // /readyz is 503 while the database is down, so no runner is ready: the operator must
    // still read their health report (the runner Service publishes not-ready addresses).
    let cluster = Cluster {
        deployments: vec![
            unready_deployment("school-a-runner", 2),
            available_deployment("school-a-ollama", 1),
        ],
        listed: vec![running_runner_pod("school-a-runner-1")],
        ..Cluster::default()
    };
    let (client, log) = fake_api_server(cluster);
    let prober = healthy_endpoints("degraded");
    let context = ctx(client, prober);
    reconcile(Arc::new(example(1)), context.clone())
        .await
        .unwrap();
    let log = finish(&log);
    let status = &status_patch(&log).body;
    assert_eq!(
        condition(status, "QueueReachable")["reason"],
        "DatabaseUnreachable",
        "{status:#}"
    );
    assert_eq!(condition(status, "Ready")["reason"], "DatabaseUnreachable");
    assert_eq!(
        condition(status, "RunnersAvailable")["reason"],
        "MinimumReplicasUnavailable"
    );
    let service = patches(&log)
        .into_iter()
        .find(|r| r.uri.contains("/services/school-a-runner?"))
        .unwrap();
    assert_eq!(service.body["spec"]["publishNotReadyAddresses"], true);
    // Pods are found by all selector labels, the name label included.
    let pod_lists: Vec<&str> = log
        .iter()
        .filter(|r| r.method == "GET" && r.uri.contains("/pods?"))
        .map(|r| r.uri.as_str())
        .collect();
    assert_eq!(pod_lists.len(), 2, "runner and Ollama pods");
    for uri in pod_lists {
        assert!(
            uri.contains("app.kubernetes.io%2Fname%3Dlearning-worker"),
            "{uri}"
        );
    }
}

#[tokio::test]
async fn a_refused_child_does_not_stop_the_others_and_the_failure_names_the_kinds() {
    let cluster = Cluster {
        refuse_apply: vec!["persistentvolumeclaims", "poddisruptionbudgets"],
        ..Cluster::default()
    };
    let (client, log) = fake_api_server(cluster);
    let error = reconcile(
        Arc::new(example(1)),
        ctx(client, ScriptedProber::unreachable()),
    )
    .await
    .unwrap_err();
    let log = finish(&log);
    let applied: Vec<String> = patches(&log)
        .iter()
        .map(|r| r.body["kind"].as_str().unwrap().to_owned())
        .collect();
    for kind in ["Service", "Deployment", "NetworkPolicy", "ServiceAccount"] {
        assert!(
            applied.iter().any(|k| k == kind),
            "{kind} applied: {applied:?}"
        );
    }
    let runner = patches(&log)
        .into_iter()
        .filter(|r| r.uri.contains("/deployments/school-a-runner?"))
        .count();
    assert_eq!(runner, 1, "the runners applied after the refused PVC");
    assert!(
        log.iter().all(|r| r.method != "DELETE"),
        "nothing pruned after a failed apply"
    );
    let ready = condition(&status_patch(&log).body, "Ready").clone();
    assert_eq!(ready["reason"], "ApplyFailed");
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.starts_with("applying PersistentVolumeClaim, PodDisruptionBudget failed:"),
        "{message}"
    );
    assert_eq!(error.category(), "invalid");
}

#[tokio::test]
async fn an_existing_larger_model_claim_is_kept_and_the_refused_shrink_reported() {
    let claim = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "school-a-ollama-models", "namespace": "gustav"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard",
            "resources": {"requests": {"storage": "100Gi"}}}});
    let cluster = Cluster {
        deployments: vec![
            available_deployment("school-a-runner", 2),
            available_deployment("school-a-ollama", 1),
        ],
        listed: vec![claim],
        ..Cluster::default()
    };
    let (client, log) = fake_api_server(cluster);
    reconcile(
        Arc::new(example(1)),
        ctx(client, healthy_endpoints("healthy")),
    )
    .await
    .unwrap();
    let log = finish(&log);
    let pvc = patches(&log)
        .into_iter()
        .find(|r| {
            r.uri
                .contains("/persistentvolumeclaims/school-a-ollama-models?")
        })
        .unwrap();
    assert_eq!(
        pvc.body["spec"]["resources"]["requests"]["storage"], "100Gi",
        "never shrunk (the example asks for 60Gi)"
    );
    assert_eq!(pvc.body["spec"]["storageClassName"], "standard");
    let status = &status_patch(&log).body;
    assert_eq!(
        condition(status, "Degraded")["reason"],
        "StorageChangeRefused"
    );
    assert_eq!(condition(status, "Ready")["status"], "True");
}

#[tokio::test]
async fn spec_change_updates_children_and_observed_generation() {
    let (client, log) = fake_api_server(Cluster::default());
    let mut lw = example(4);
    lw.spec.runner.replicas = Some(3);
    lw.spec.ai.feedback_model = "gpt-oss:120b".into();
    reconcile(Arc::new(lw), ctx(client, ScriptedProber::unreachable()))
        .await
        .unwrap();
    let log = finish(&log);
    let dep = patches(&log)
        .into_iter()
        .find(|r| r.uri.contains("/deployments/school-a-runner?"))
        .unwrap();
    assert_eq!(dep.body["spec"]["replicas"], 3);
    let env = dep.body["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    assert!(env
        .iter()
        .any(|e| e["name"] == "AI_FEEDBACK_MODEL" && e["value"] == "gpt-oss:120b"));
    assert_eq!(status_patch(&log).body["status"]["observedGeneration"], 4);
}

#[tokio::test]
async fn missing_models_start_a_pull_job_for_exactly_those() {
    let cluster = Cluster {
        deployments: vec![
            available_deployment("school-a-runner", 2),
            available_deployment("school-a-ollama", 1),
        ],
        ..Cluster::default()
    };
    let (client, log) = fake_api_server(cluster);
    let prober = healthy_endpoints("healthy");
    prober.set("/api/tags", 200, &tags(&["qwen2.5vl:3b"]));
    reconcile(Arc::new(example(1)), ctx(client, prober))
        .await
        .unwrap();
    let log = finish(&log);
    let job = patches(&log)
        .into_iter()
        .find(|r| {
            r.uri
                .contains("/apis/batch/v1/namespaces/gustav/jobs/school-a-model-pull-")
        })
        .expect("a pull Job");
    assert_eq!(
        job.body["spec"]["template"]["spec"]["containers"][0]["args"],
        json!(["model-pull", "gpt-oss:20b"])
    );
    assert_eq!(
        condition(&status_patch(&log).body, "ModelsReady")["reason"],
        "ModelsMissing"
    );
}

#[tokio::test]
async fn no_second_pull_job_starts_while_one_of_the_worker_runs() {
    // A Job pulling both models is still running; one of them has arrived meanwhile, so the
    // missing list (and the Job name it would give) changed.
    let running = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "school-a-model-pull-0123456789", "namespace": "gustav",
            "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"template": {"spec": {"containers": [{"name": "pull", "args": ["model-pull", "qwen2.5vl:3b", "gpt-oss:20b"]}]}}},
        "status": {"active": 1}});
    let cluster = Cluster {
        deployments: vec![
            available_deployment("school-a-runner", 2),
            available_deployment("school-a-ollama", 1),
        ],
        listed: vec![running],
        ..Cluster::default()
    };
    let (client, log) = fake_api_server(cluster);
    let prober = healthy_endpoints("healthy");
    prober.set("/api/tags", 200, &tags(&["qwen2.5vl:3b"]));
    reconcile(Arc::new(example(1)), ctx(client, prober))
        .await
        .unwrap();
    let log = finish(&log);
    let jobs: Vec<&str> = patches(&log)
        .into_iter()
        .filter(|r| r.uri.contains("/jobs/"))
        .map(|r| r.uri.as_str())
        .collect();
    assert!(jobs.is_empty(), "a second pull Job: {jobs:?}");
    assert_eq!(
        condition(&status_patch(&log).body, "ModelsReady")["reason"],
        "ModelPullInProgress"
    );
}

#[tokio::test]
async fn invalid_spec_reports_a_condition_and_an_event_applies_nothing_and_waits() {
    let (client, log) = fake_api_server(Cluster::default());
    let context = ctx(client, ScriptedProber::unreachable());
    let mut lw = example(2);
    lw.spec.runner.autoscaling = Some(learning_crds::runner::AutoscalingSpec {
        min_replicas: 4,
        max_replicas: 2,
        jobs_per_replica: 10,
    });
    let action = reconcile(Arc::new(lw.clone()), context.clone())
        .await
        .unwrap();
    assert_eq!(action, Action::await_change(), "no requeue: no hot loop");
    let first = finish(&log);
    assert!(patches(&first).is_empty(), "no child applied: {first:#?}");
    let status = &status_patch(&first).body;
    assert_eq!(condition(status, "Ready")["reason"], "InvalidSpec");
    assert!(condition(status, "Ready")["message"]
        .as_str()
        .unwrap()
        .contains("minReplicas must not exceed maxReplicas"));
    let evs = events(&first);
    assert_eq!(evs.len(), 2);
    assert!(evs
        .iter()
        .all(|e| e.body["type"] == "Warning" && e.body["reason"] == "InvalidSpec"));

    // The same bad spec again (status now stored): no new Events.
    let stored: learning_crds::LearningWorkerStatus =
        serde_json::from_value(status["status"].clone()).unwrap();
    lw.status = Some(stored);
    log.lock().unwrap().clear();
    reconcile(Arc::new(lw), context).await.unwrap();
    assert!(events(&finish(&log)).is_empty());
}

const UID: &str = "0b5c9a8e-1111-4222-8333-444455556666";

/// An existing object as a metadata list shows it: the operator's labels, owned by `uid`.
fn existing(api_version: &str, kind: &str, name: &str, owner_uid: Option<&str>) -> Value {
    let mut meta = json!({"name": name, "namespace": "gustav", "labels": {
        "app.kubernetes.io/name": "learning-worker", "app.kubernetes.io/instance": "school-a",
        "app.kubernetes.io/managed-by": "learning-operator"}});
    if let Some(uid) = owner_uid {
        meta["ownerReferences"] = json!([{"apiVersion": "learning.gustav.dev/v1alpha1", "kind": "LearningWorker",
            "name": "school-a", "uid": uid, "controller": true, "blockOwnerDeletion": true}]);
    }
    json!({"apiVersion": api_version, "kind": kind, "metadata": meta})
}

/// What a managed-Ollama worker with policies leaves in the cluster, plus look-alikes that are
/// not this worker's (another owner's, unowned).
fn full_cluster() -> Cluster {
    let own = Some(UID);
    Cluster {
        listed: vec![
            existing("v1", "ServiceAccount", "school-a-runner", own),
            existing("apps/v1", "Deployment", "school-a-runner", own),
            existing("apps/v1", "Deployment", "school-a-ollama", own),
            existing("v1", "Service", "school-a-runner", own),
            existing("v1", "Service", "school-a-ollama", own),
            existing("policy/v1", "PodDisruptionBudget", "school-a-runner", own),
            existing("v1", "PersistentVolumeClaim", "school-a-ollama-models", own),
            existing(
                "networking.k8s.io/v1",
                "NetworkPolicy",
                "school-a-runner",
                own,
            ),
            existing(
                "networking.k8s.io/v1",
                "NetworkPolicy",
                "school-a-ollama",
                own,
            ),
            existing(
                "networking.k8s.io/v1",
                "NetworkPolicy",
                "school-a-model-pull",
                own,
            ),
            existing("batch/v1", "Job", "school-a-model-pull-0123456789", own),
            existing("v1", "Service", "school-a-ollama-old", Some("another-uid")),
            existing("v1", "PersistentVolumeClaim", "school-a-scratch", None),
        ],
        ..Cluster::default()
    }
}

fn deletes(log: &[Recorded]) -> Vec<String> {
    log.iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| {
            assert_eq!(
                r.body["propagationPolicy"], "Background",
                "dependents (a Job's pods) must go too: {}",
                r.uri
            );
            r.uri.trim_end_matches('?').to_owned()
        })
        .collect()
}

#[tokio::test]
async fn switching_to_external_ollama_prunes_only_this_workers_ollama_objects() {
    let (client, log) = fake_api_server(full_cluster());
    let mut lw = example(5);
    lw.spec.ollama.mode = learning_crds::ollama::OllamaMode::External;
    lw.spec.ollama.url = Some("http://ollama:11434".into());
    reconcile(Arc::new(lw), ctx(client, ScriptedProber::unreachable()))
        .await
        .unwrap();
    let log = finish(&log);
    assert_eq!(
        deletes(&log),
        [
            "/apis/batch/v1/namespaces/gustav/jobs/school-a-model-pull-0123456789",
            "/apis/apps/v1/namespaces/gustav/deployments/school-a-ollama",
            "/api/v1/namespaces/gustav/services/school-a-ollama",
            "/apis/networking.k8s.io/v1/namespaces/gustav/networkpolicies/school-a-model-pull",
            "/apis/networking.k8s.io/v1/namespaces/gustav/networkpolicies/school-a-ollama",
        ],
        "owned and unwanted only; the model PVC (never pruned), the other owner's Service and \
         the unowned PVC stay"
    );
    // Deletes come after the applies (the runner is re-pointed first), lists use the labels.
    let first_delete = log.iter().position(|r| r.method == "DELETE").unwrap();
    let last_apply = log
        .iter()
        .rposition(|r| r.method == "PATCH" && !r.uri.contains("/status?"))
        .unwrap();
    assert!(last_apply < first_delete, "{log:#?}");
    let lists: Vec<&Recorded> = log
        .iter()
        .filter(|r| {
            r.method == "GET"
                && r.uri.contains("labelSelector=app.kubernetes.io%2Fname%3Dlearning-worker%2Capp.kubernetes.io%2Finstance%3Dschool-a%2Capp.kubernetes.io%2Fmanaged-by%3Dlearning-operator")
        })
        .collect();
    assert_eq!(
        lists.len(),
        6,
        "one list per pruned kind (not PersistentVolumeClaims): {log:#?}"
    );
    let runner = patches(&log)
        .into_iter()
        .find(|r| r.uri.contains("/deployments/school-a-runner?"))
        .unwrap();
    let env = runner.body["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    assert!(
        env.iter()
            .any(|e| e["name"] == "OLLAMA_BASE_URL" && e["value"] == "http://ollama:11434"),
        "{env:#?}"
    );
}

#[tokio::test]
async fn disabling_network_policies_deletes_them_and_nothing_else() {
    let (client, log) = fake_api_server(full_cluster());
    let mut lw = example(5);
    lw.spec.network.policies = false;
    reconcile(Arc::new(lw), ctx(client, ScriptedProber::unreachable()))
        .await
        .unwrap();
    assert_eq!(
        deletes(&finish(&log)),
        [
            "/apis/networking.k8s.io/v1/namespaces/gustav/networkpolicies/school-a-model-pull",
            "/apis/networking.k8s.io/v1/namespaces/gustav/networkpolicies/school-a-ollama",
            "/apis/networking.k8s.io/v1/namespaces/gustav/networkpolicies/school-a-runner",
        ],
        "the pull Job is kept while pulls are wanted (its TTL removes it)"
    );
}

/// A `MakeWriter` that keeps what the fmt subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn the_reconcile_span_marks_its_own_log_lines_and_is_left_while_it_waits() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let (client, log) = fake_api_server(full_cluster());
    let mut lw = example(5);
    lw.spec.network.policies = false;
    // Another task on the same thread logs while the reconcile waits for the API server.
    let elsewhere = tokio::spawn(async {
        for _ in 0..20 {
            tracing::info!(event = "elsewhere");
            tokio::task::yield_now().await;
        }
    });
    reconcile(Arc::new(lw), ctx(client, ScriptedProber::unreachable()))
        .await
        .unwrap();
    elsewhere.await.unwrap();
    finish(&log);
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let pruned: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("learning.operator.child_pruned"))
        .collect();
    assert_eq!(pruned.len(), 3, "{text}");
    for line in pruned {
        assert!(
            line.contains("reconcile{namespace=gustav name=school-a generation=5}"),
            "{line}"
        );
    }
    let others: Vec<&str> = text.lines().filter(|l| l.contains("elsewhere")).collect();
    assert_eq!(others.len(), 20, "{text}");
    assert!(
        others.iter().all(|l| !l.contains("reconcile{")),
        "the span is left while the reconcile waits:\n{}",
        others.join("\n")
    );
}

#[tokio::test]
async fn an_unchanged_worker_prunes_nothing() {
    let (client, log) = fake_api_server(full_cluster());
    reconcile(
        Arc::new(example(5)),
        ctx(client, ScriptedProber::unreachable()),
    )
    .await
    .unwrap();
    assert!(deletes(&finish(&log)).is_empty());
}

mod leader_election {
    //! The Lease calls of `LeaderElector::try_acquire_or_renew`: acquire, renew, lose, lost
    //! race, take-over of an expired Lease — and of `release` on a graceful stop — each as
    //! exact requests against a scripted mock.

    use super::*;
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::jiff::{SignedDuration, Timestamp};
    use kube::Api;
    use learning_operator::leader::LeaderElector;

    const LEASE_PATH: &str =
        "/apis/coordination.k8s.io/v1/namespaces/learning-system/leases/learning-operator-leader";

    /// A mock that answers GET with `current` (404 when `None`) and writes with `write_code`.
    fn lease_server(
        current: Option<Value>,
        write_code: u16,
    ) -> (Client, Arc<Mutex<Vec<Recorded>>>) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let log = Arc::new(Mutex::new(Vec::new()));
        let log2 = log.clone();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let method = req.method().to_string();
                let uri = req.uri().to_string();
                let bytes = req.into_body().collect_bytes().await.unwrap();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let (code, reply) = match (method.as_str(), &current) {
                    ("GET", Some(lease)) => (200, lease.clone()),
                    ("GET", None) => not_found(),
                    _ if write_code >= 400 => (
                        write_code,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": write_code,
                               "reason": if write_code == 409 { "Conflict" } else { "InternalError" }, "message": "scripted failure"}),
                    ),
                    _ => (write_code, body.clone()),
                };
                log2.lock().unwrap().push(Recorded { method, uri, body });
                send.send_response(
                    Response::builder()
                        .status(code)
                        .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                        .unwrap(),
                );
            }
        });
        (Client::new(service, "default"), log)
    }

    fn lease(holder: &str, renewed_secs_ago: i64, transitions: i32) -> Value {
        let renewed = Timestamp::now() - SignedDuration::from_secs(renewed_secs_ago);
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "learning-operator-leader", "namespace": "learning-system", "resourceVersion": "41"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                     "acquireTime": "2025-01-01T00:00:00.000000Z", "renewTime": renewed.to_string(),
                     "leaseTransitions": transitions}})
    }

    fn elector(client: Client) -> LeaderElector {
        LeaderElector::new(
            Api::<Lease>::namespaced(client, "learning-system"),
            "learning-operator-leader".into(),
            "pod-a".into(),
            15,
        )
    }

    fn calls(log: &[Recorded]) -> Vec<(String, String)> {
        log.iter()
            .map(|r| (r.method.clone(), r.uri.clone()))
            .collect()
    }

    #[tokio::test]
    async fn acquire_creates_the_lease_when_there_is_none() {
        let (client, log) = lease_server(None, 201);
        assert!(elector(client).try_acquire_or_renew().await.unwrap());
        let log = finish(&log);
        assert_eq!(
            calls(&log),
            [
                ("GET".into(), LEASE_PATH.into()),
                (
                    "POST".into(),
                    "/apis/coordination.k8s.io/v1/namespaces/learning-system/leases?".into()
                ),
            ]
        );
        let spec = &log[1].body["spec"];
        assert_eq!(spec["holderIdentity"], "pod-a");
        assert_eq!(spec["leaseDurationSeconds"], 15);
        assert_eq!(spec["leaseTransitions"], 0);
        assert!(spec["acquireTime"].is_string() && spec["renewTime"].is_string());
    }

    #[tokio::test]
    async fn renew_replaces_our_lease_with_its_resource_version() {
        let (client, log) = lease_server(Some(lease("pod-a", 4, 2)), 200);
        assert!(elector(client).try_acquire_or_renew().await.unwrap());
        let log = finish(&log);
        assert_eq!(
            calls(&log),
            [
                ("GET".into(), LEASE_PATH.into()),
                ("PUT".into(), format!("{LEASE_PATH}?"))
            ]
        );
        let put = &log[1].body;
        assert_eq!(
            put["metadata"]["resourceVersion"], "41",
            "optimistic concurrency"
        );
        assert_eq!(put["spec"]["holderIdentity"], "pod-a");
        assert_eq!(
            put["spec"]["acquireTime"], "2025-01-01T00:00:00.000000Z",
            "kept on renew"
        );
        assert_eq!(put["spec"]["leaseTransitions"], 2);
        let renewed: Timestamp = put["spec"]["renewTime"].as_str().unwrap().parse().unwrap();
        assert!(renewed > Timestamp::now() - SignedDuration::from_secs(4));
    }

    #[tokio::test]
    async fn a_valid_lease_of_another_replica_is_not_touched() {
        let (client, log) = lease_server(Some(lease("pod-b", 2, 0)), 200);
        assert!(!elector(client).try_acquire_or_renew().await.unwrap());
        assert_eq!(calls(&finish(&log)), [("GET".into(), LEASE_PATH.into())]);
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_over_and_a_lost_race_is_no_error() {
        let (client, log) = lease_server(Some(lease("pod-b", 60, 3)), 200);
        assert!(elector(client).try_acquire_or_renew().await.unwrap());
        let log = finish(&log);
        assert_eq!(log[1].method, "PUT");
        assert_eq!(log[1].body["spec"]["holderIdentity"], "pod-a");
        assert_eq!(log[1].body["spec"]["leaseTransitions"], 4);
        assert_ne!(
            log[1].body["spec"]["acquireTime"],
            "2025-01-01T00:00:00.000000Z"
        );

        // Another replica wrote first: 409 means "not ours", not a failure.
        let (client, log) = lease_server(Some(lease("pod-b", 60, 3)), 409);
        assert!(!elector(client).try_acquire_or_renew().await.unwrap());
        assert_eq!(finish(&log).len(), 2);
    }

    #[tokio::test]
    async fn release_clears_our_holder_so_the_lease_is_free_at_once() {
        let (client, log) = lease_server(Some(lease("pod-a", 4, 2)), 200);
        assert!(elector(client).release().await.unwrap());
        let log = finish(&log);
        assert_eq!(
            calls(&log),
            [
                ("GET".into(), LEASE_PATH.into()),
                ("PUT".into(), format!("{LEASE_PATH}?"))
            ]
        );
        let put = &log[1].body;
        assert_eq!(
            put["metadata"]["resourceVersion"], "41",
            "optimistic concurrency"
        );
        assert!(put["spec"]["holderIdentity"].is_null(), "{put}");
        assert_eq!(put["spec"]["leaseDurationSeconds"], 1);
        assert_eq!(put["spec"]["leaseTransitions"], 2);

        // What a standby then reads: free, so it takes the Lease at its next attempt.
        let (client, log) = lease_server(Some(put.clone()), 200);
        let standby = LeaderElector::new(
            Api::<Lease>::namespaced(client, "learning-system"),
            "learning-operator-leader".into(),
            "pod-b".into(),
            15,
        );
        assert!(standby.try_acquire_or_renew().await.unwrap());
        let log = finish(&log);
        assert_eq!(log[1].body["spec"]["holderIdentity"], "pod-b");
        assert_eq!(log[1].body["spec"]["leaseTransitions"], 3);
    }

    #[tokio::test]
    async fn release_leaves_a_lease_that_is_not_ours_alone() {
        for current in [Some(lease("pod-b", 2, 0)), None] {
            let (client, log) = lease_server(current, 200);
            assert!(!elector(client).release().await.unwrap());
            assert_eq!(calls(&finish(&log)), [("GET".into(), LEASE_PATH.into())]);
        }
        // Changed under us between GET and PUT: not ours any more, no error.
        let (client, log) = lease_server(Some(lease("pod-a", 4, 0)), 409);
        assert!(!elector(client).release().await.unwrap());
        assert_eq!(finish(&log).len(), 2);
    }

    #[tokio::test]
    async fn api_errors_are_returned_for_the_caller_to_retry() {
        let (client, log) = lease_server(Some(lease("pod-a", 4, 0)), 500);
        let err = elector(client).try_acquire_or_renew().await.unwrap_err();
        assert!(
            matches!(err, kube::Error::Api(ref s) if s.code == 500),
            "{err:?}"
        );
        assert_eq!(finish(&log).len(), 2);
    }
}
