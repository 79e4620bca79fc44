//! The controller's API interaction without a cluster: kube's `tower-test` mock pattern. A
//! scripted API server (`FakeApiServer`, answering by method and path, recording every request)
//! stands in for kube-apiserver, and `ScriptedProber` for the runner and Ollama HTTP endpoints
//! (neither can run here). Each test runs `reconcile` and checks the exact requests: the SSA
//! patches of the children, the status patch, the Events.

use std::sync::{Arc, Mutex};

use http::{Request, Response};
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::Client;
use learning_crds::LearningWorker;
use learning_operator::controller::{reconcile, Context};
use learning_operator::metrics::Metrics;
use learning_operator::observe::Prober;
use serde_json::{json, Value};

/// One recorded request.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    uri: String,
    body: Value,
}

/// What the fake API server knows: Deployments by name.
#[derive(Default, Clone)]
struct Cluster {
    deployments: Vec<Value>,
}

fn not_found() -> (u16, Value) {
    (
        404,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
    )
}

fn answer(cluster: &Cluster, method: &str, path: &str, body: &Value) -> (u16, Value) {
    match method {
        "GET" if path.contains("/deployments/") => {
            let name = path.rsplit('/').next().unwrap();
            cluster
                .deployments
                .iter()
                .find(|d| d["metadata"]["name"] == name)
                .map_or_else(not_found, |d| (200, d.clone()))
        }
        "GET" if path.ends_with("/pods") => (
            200,
            json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []}),
        ),
        "GET" if path.ends_with("/jobs") => (
            200,
            json!({"kind": "JobList", "apiVersion": "batch/v1", "metadata": {}, "items": []}),
        ),
        // The API server answers a status patch with the whole object.
        "PATCH" if path.ends_with("/status") => {
            let mut obj = serde_json::to_value(example(1)).unwrap();
            obj["status"] = body["status"].clone();
            (200, obj)
        }
        "PATCH" | "POST" => (200, body.clone()),
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
            let path = req.uri().path().to_owned();
            let bytes = req.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let (code, reply) = answer(&cluster, &method, &path, &body);
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

/// Scripted answers for runner and Ollama URLs, matched by path suffix.
struct ScriptedProber(Vec<(&'static str, u16, String)>);

#[async_trait::async_trait]
impl Prober for ScriptedProber {
    async fn get(&self, url: &str) -> Result<(u16, String), String> {
        self.0
            .iter()
            .find(|(suffix, _, _)| url.ends_with(suffix))
            .map(|(_, code, body)| (*code, body.clone()))
            .ok_or_else(|| format!("GET {url}: connection refused"))
    }
}

fn healthy_endpoints(health_status: &str, code: u16) -> ScriptedProber {
    let check_status = if health_status == "healthy" {
        "ok"
    } else {
        "failed"
    };
    let detail = if health_status == "healthy" {
        "gustav_worker"
    } else {
        "db_connect_failed"
    };
    ScriptedProber(vec![
        ("/internal/health/learning-worker", code, json!({"status": health_status, "currentRole": "gustav_worker", "checks": [{"check": "db_role", "status": check_status, "detail": detail}]}).to_string()),
        ("/metrics", 200, "learning_runner_queue_jobs{state=\"visible\"} 5\nlearning_runner_oldest_job_age_seconds 42\n".into()),
        ("/api/version", 200, r#"{"version":"0.12.3"}"#.into()),
        ("/api/tags", 200, r#"{"models":[{"name":"qwen2.5vl:3b"},{"name":"gpt-oss:20b"}]}"#.into()),
        ("/api/ps", 200, r#"{"models":[{"name":"gpt-oss:20b","size":100,"size_vram":100}]}"#.into()),
    ])
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
    let action = reconcile(Arc::new(example(1)), ctx(client, ScriptedProber(vec![])))
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(std::time::Duration::from_secs(30)));
    let log = log.lock().unwrap().clone();

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
    };
    let (client, log) = fake_api_server(cluster);
    reconcile(
        Arc::new(example(1)),
        ctx(client, healthy_endpoints("healthy", 200)),
    )
    .await
    .unwrap();
    let log = log.lock().unwrap().clone();
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
    };
    let (client, log) = fake_api_server(cluster);
    reconcile(
        Arc::new(example(1)),
        ctx(client, healthy_endpoints("degraded", 503)),
    )
    .await
    .unwrap();
    let log = log.lock().unwrap().clone();
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

#[tokio::test]
async fn spec_change_updates_children_and_observed_generation() {
    let (client, log) = fake_api_server(Cluster::default());
    let mut lw = example(4);
    lw.spec.runner.replicas = Some(3);
    lw.spec.ai.feedback_model = "gpt-oss:120b".into();
    reconcile(Arc::new(lw), ctx(client, ScriptedProber(vec![])))
        .await
        .unwrap();
    let log = log.lock().unwrap().clone();
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
    };
    let (client, log) = fake_api_server(cluster);
    let mut prober = healthy_endpoints("healthy", 200);
    prober.0[3].2 = r#"{"models":[{"name":"qwen2.5vl:3b"}]}"#.into();
    reconcile(Arc::new(example(1)), ctx(client, prober))
        .await
        .unwrap();
    let log = log.lock().unwrap().clone();
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
async fn invalid_spec_reports_a_condition_and_an_event_applies_nothing_and_waits() {
    let (client, log) = fake_api_server(Cluster::default());
    let context = ctx(client, ScriptedProber(vec![]));
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
    let first = log.lock().unwrap().clone();
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
    assert!(events(&log.lock().unwrap()).is_empty());
}
