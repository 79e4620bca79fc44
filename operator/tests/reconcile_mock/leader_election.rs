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
fn lease_server(current: Option<Value>, write_code: u16) -> (Client, Arc<Mutex<Vec<Recorded>>>) {
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
