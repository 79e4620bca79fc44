//! The controller's API interaction without a cluster: kube's `tower-test` mock pattern. A
//! scripted mock (`fake_api_server` below: answers by method and path, records every request)
//! stands in for kube-apiserver, and `ScriptedProber` for the runner and Ollama HTTP endpoints
//! (neither can run here). Each test runs `reconcile` (or one leader-election step) and checks
//! the exact requests: the SSA patches of the children, pruning deletes, the status patch, the
//! Events, the Lease calls — and every request is checked against the declared RBAC
//! (`learning_operator::rbac`). The whole loop (watches, queueing) is in `whole_loop.rs`.

mod support;

#[path = "reconcile_mock/children_and_status.rs"]
mod children_and_status;
#[path = "reconcile_mock/leader_election.rs"]
mod leader_election;
#[path = "reconcile_mock/prune.rs"]
mod prune;

use std::sync::{Arc, Mutex};

use http::{Request, Response};
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::Client;
use learning_crds::LearningWorker;
use learning_operator::caches::Caches;
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

/// A client of the fake API server, and what the operator's watch caches hold: the same
/// objects the server answers with (the reconcile reads children and pods from the caches).
struct Fake {
    client: Client,
    cached: Vec<Value>,
}

/// Starts the fake API server; returns its client (with the cache contents) and the request
/// log.
fn fake_api_server(cluster: Cluster) -> (Fake, Arc<Mutex<Vec<Recorded>>>) {
    let cached: Vec<Value> = cluster
        .deployments
        .iter()
        .chain(&cluster.listed)
        .cloned()
        .collect();
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
    let client = Client::new(service, "default");
    (Fake { client, cached }, log)
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

fn ctx(fake: Fake, prober: ScriptedProber) -> Arc<Context> {
    Arc::new(
        Context::new(
            fake.client,
            Arc::new(prober),
            Metrics::new().unwrap(),
            "learning-system".into(),
            "test-pod".into(),
        )
        .with_caches(Caches::holding(&fake.cached)),
    )
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
