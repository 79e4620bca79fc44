//! The whole loop for each autoscaling engine (`spec.runner.autoscaling.engine`): the
//! operator's real `operate` against the in-process FAKE API server (`support::fake_apiserver`),
//! the test playing the runners' `/metrics` (`ScriptedProber`), the Deployment controller
//! (status), KEDA's installation (`install_optional_crds`) and an HPA of the user's own.
//!
//! - builtin: up at once (a `RunnersScaled` Event saying why), held for the stabilisation
//!   window (across an operator restart), never below the runners that may hold leases,
//!   within the capacity cap;
//! - keda: without KEDA `AutoscalerUnavailable` and no ScaledObject; with it a ScaledObject and a
//!   TriggerAuthentication that pass KEDA's published CRD schemas (vendored in `tests/data/keda/`)
//!   and the stricter hand-written subset (`tests/data/keda-crds-subset.yaml`, no unknown
//!   fields), checked with `check-jsonschema`, and no `replicas` from the operator;
//!   leaving the engine deletes both; the KEDA requests are exactly the declared KEDA RBAC;
//! - external: the operator never writes `replicas`, an HPA's value stays.
//!
//! Every wait is bounded (`eventually`); "holds" is checked over a counted number of
//! reconciles, never by sleeping.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use learning_operator::controller::Requeue;
use learning_operator::rbac::{Scope, RULES};
use learning_tests::tools::{require_tool, run, text, TempDir, HINT_CHECK_JSONSCHEMA};
use serde_json::{json, Value};
use support::fake_apiserver::{FakeApiServer, Options};
use support::operator::{Operator, WAIT};
use support::prober::ScriptedProber;
use support::rbac_audit::{self, OPERATOR_NAMESPACE};
use support::wait::eventually;

const NS: &str = "gustav";
const LW_API: &str = "learning.gustav.dev/v1alpha1";
const WORKER: &str = "school-e";
const RUNNER: &str = "school-e-runner";
/// Short requeues: the queue is polled.
const POLLING: Requeue = Requeue {
    busy: Duration::from_millis(100),
    idle: Duration::from_millis(100),
};

async fn server(authorize: bool) -> FakeApiServer {
    FakeApiServer::start(Options {
        authorize: if authorize {
            rbac_audit::authorizer()
        } else {
            Box::new(|a| a.api_group != "keda.sh" && a.granted_by(OPERATOR_NAMESPACE).is_some())
        },
        max_watch: Duration::from_secs(2),
    })
    .await
}

/// The autoscaling example (1..6 runners, 20 jobs each, Ollama serving 6 per model) with
/// `autoscaling` merged in; returns its uid.
fn create_worker(server: &FakeApiServer, autoscaling: Value) -> String {
    let path = format!(
        "{}/../crds/examples/autoscaling.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut lw: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for (k, v) in autoscaling.as_object().unwrap() {
        lw["spec"]["runner"]["autoscaling"][k] = v.clone();
    }
    server.create(lw)["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn worker(server: &FakeApiServer) -> Value {
    server.get(LW_API, "LearningWorker", NS, WORKER).unwrap()
}

fn edit(server: &FakeApiServer, f: impl FnOnce(&mut Value)) {
    server.modify(
        LW_API,
        "LearningWorker",
        NS,
        WORKER,
        |lw| f(&mut lw["spec"]),
    );
}

fn runner(server: &FakeApiServer) -> Option<Value> {
    server.get("apps/v1", "Deployment", NS, RUNNER)
}

/// Plays the Deployment controller: the runners run (so the operator reads their metrics).
async fn runners_running(server: &FakeApiServer) {
    eventually("the runner Deployment", WAIT, || {
        runner(server).ok_or_else(|| "none yet".to_owned())
    })
    .await;
    server.set_status(
        "apps/v1",
        "Deployment",
        NS,
        RUNNER,
        json!({"observedGeneration": 1, "replicas": 1, "readyReplicas": 1,
               "availableReplicas": 1, "updatedReplicas": 1}),
    );
}

async fn wait_replicas(server: &FakeApiServer, want: i64) {
    eventually(&format!("{want} runner replicas"), WAIT, || {
        let got = runner(server).map(|d| d["spec"]["replicas"].clone());
        (got == Some(json!(want))).then_some(()).ok_or(format!(
            "{got:?}; status {}",
            worker(server)["status"]["autoscaling"]
        ))
    })
    .await;
}

/// Waits until `AutoscalerReady` has `status` and `reason`; returns the worker.
async fn wait_autoscaler(server: &FakeApiServer, status: &str, reason: &str) -> Value {
    eventually(&format!("AutoscalerReady={status}/{reason}"), WAIT, || {
        let lw = worker(server);
        let c = lw["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "AutoscalerReady").cloned());
        match c {
            Some(c) if c["status"] == status && c["reason"] == reason => Ok(lw),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

/// The operator's applies of the runner Deployment (request bodies).
fn runner_applies(server: &FakeApiServer) -> Vec<Value> {
    server
        .requests()
        .into_iter()
        .filter(|r| {
            r.method == "PATCH"
                && r.path == format!("/apis/apps/v1/namespaces/{NS}/deployments/{RUNNER}")
        })
        .map(|r| r.body)
        .collect()
}

#[tokio::test]
async fn builtin_scales_up_at_once_holds_for_the_window_and_never_below_the_leases() {
    let server = server(true).await;
    let prober = Arc::new(ScriptedProber::healthy());
    let op = Operator::start(&server, prober.clone(), POLLING);
    op.queue(0, 0);
    create_worker(&server, json!({"scaleDownStabilizationSeconds": 600}));
    runners_running(&server).await;
    wait_autoscaler(&server, "True", "BuiltinScaling").await;

    // Up at once: 100 jobs, 20 per runner, with an Event saying why.
    op.queue(60, 40);
    wait_replicas(&server, 5).await;
    eventually("a RunnersScaled Event", WAIT, || {
        let notes: Vec<Value> = server
            .list("events.k8s.io/v1", "Event", NS)
            .into_iter()
            .filter(|e| e["reason"] == "RunnersScaled")
            .map(|e| e["note"].clone())
            .collect();
        notes
            .iter()
            .any(|n| {
                n == "runners 1 → 5: 60 visible + 40 leased jobs, 20 per runner, capacity cap 6"
            })
            .then_some(())
            .ok_or(format!("{notes:?}"))
    })
    .await;
    // The capacity cap: Ollama serving 3 per model keeps 3 runners busy, however long the queue.
    op.queue(1000, 0);
    wait_replicas(&server, 6).await;
    edit(&server, |spec| spec["ollama"]["numParallel"] = 3.into());
    wait_replicas(&server, 3).await;
    eventually("the cap in the status", WAIT, || {
        let cap = worker(&server)["status"]["autoscaling"]["capacityCap"].clone();
        (cap == 3).then_some(()).ok_or(format!("{cap}"))
    })
    .await;

    // The queue empties: held for the window, through an operator restart — the window's
    // start is read back from the status, not started again.
    op.queue(0, 0);
    op.reconciles(5).await;
    let started = worker(&server)["status"]["autoscaling"]["demandBelowSince"].clone();
    assert!(started.is_string(), "the window started: {started}");
    op.stop().await;
    let op = Operator::start(&server, prober, POLLING);
    op.reconciles(5).await;
    let state = &worker(&server)["status"]["autoscaling"];
    assert_eq!(
        state["demandBelowSince"], started,
        "the same window after the restart"
    );
    assert_eq!(
        (
            state["desiredReplicas"].clone(),
            state["recommendedReplicas"].clone()
        ),
        (json!(3), json!(1)),
        "{state}"
    );
    assert_eq!(runner(&server).unwrap()["spec"]["replicas"], 3);

    // The window over (shortened), two jobs still leased: two runners stay.
    op.queue(0, 2);
    edit(&server, |spec| {
        spec["runner"]["autoscaling"]["scaleDownStabilizationSeconds"] = 0.into()
    });
    wait_replicas(&server, 2).await;
    op.reconciles(5).await;
    assert_eq!(runner(&server).unwrap()["spec"]["replicas"], 2);
    // The leases end: down to the minimum.
    op.queue(0, 0);
    wait_replicas(&server, 1).await;
    let applied: Vec<Value> = runner_applies(&server)
        .iter()
        .map(|b| b["spec"]["replicas"].clone())
        .collect();
    assert!(applied.iter().all(Value::is_i64), "{applied:?}");
}

/// The object of `kind` against the `openAPIV3Schema` of the CRD in `file` (under
/// `tests/data/`).
fn check_keda_schema(file: &str, kind: &str, object: &Value) -> std::process::Output {
    let path = format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap();
    let crd = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .find(|crd| crd["spec"]["names"]["kind"] == kind)
        .unwrap_or_else(|| panic!("no CRD of {kind} in {file}"));
    let version = crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "v1alpha1")
        .unwrap_or_else(|| panic!("no v1alpha1 in {file}"));
    let dir = TempDir::new("keda-schema");
    let schema = dir.write(
        "schema.json",
        &version["schema"]["openAPIV3Schema"].to_string(),
    );
    let file = dir.write("object.json", &object.to_string());
    run(
        std::process::Command::new("check-jsonschema")
            .arg("--schemafile")
            .arg(&schema)
            .arg(&file),
        HINT_CHECK_JSONSCHEMA,
    )
}

/// KEDA's published CRDs (vendored, `tests/data/keda/`) and the stricter hand-written subset.
const KEDA_SCHEMAS: [(&str, &str); 3] = [
    ("ScaledObject", "keda/keda.sh_scaledobjects.yaml"),
    (
        "TriggerAuthentication",
        "keda/keda.sh_triggerauthentications.yaml",
    ),
    ("", "keda-crds-subset.yaml"),
];

fn keda_object(server: &FakeApiServer, kind: &str, name: &str) -> Option<Value> {
    server.get("keda.sh/v1alpha1", kind, NS, name)
}

#[tokio::test]
async fn keda_gets_a_valid_scaled_object_once_installed_and_the_operator_leaves_replicas_alone() {
    require_tool("check-jsonschema", HINT_CHECK_JSONSCHEMA);
    let server = server(true).await;
    let op = Operator::start(&server, Arc::new(ScriptedProber::healthy()), POLLING);
    op.queue(3, 0);
    let uid = create_worker(&server, json!({"engine": "keda", "minReplicas": 0}));
    let lw = wait_autoscaler(&server, "False", "AutoscalerUnavailable").await;
    let message = lw["status"]["conditions"].to_string();
    assert!(message.contains("KEDA is not installed"), "{message}");
    assert!(keda_object(&server, "ScaledObject", RUNNER).is_none());
    assert!(runner(&server).is_some(), "the runners are applied anyway");

    server.install_optional_crds();
    wait_autoscaler(&server, "True", "ScaledObjectApplied").await;
    let so = keda_object(&server, "ScaledObject", RUNNER).unwrap();
    let auth = keda_object(&server, "TriggerAuthentication", "school-e-runner-db").unwrap();
    for (kind, object) in [("ScaledObject", &so), ("TriggerAuthentication", &auth)] {
        for (only, file) in KEDA_SCHEMAS {
            if !only.is_empty() && only != kind {
                continue;
            }
            let out = check_keda_schema(file, kind, object);
            assert!(
                out.status.success(),
                "{kind} against {file}: {}\n{object:#}",
                text(&out)
            );
        }
        assert_eq!(
            object["metadata"]["ownerReferences"][0]["uid"],
            uid.as_str()
        );
    }
    assert_eq!(so["spec"]["minReplicaCount"], 0);
    assert_eq!(
        so["spec"]["triggers"][0]["authenticationRef"]["name"],
        "school-e-runner-db"
    );
    assert_eq!(auth["spec"]["secretTargetRef"][0]["name"], "learning-db");
    // The checks are not vacuous: a misspelt field fails the strict subset, a wrong type
    // or a missing required field fails KEDA's published schema.
    let mut misspelt = so.clone();
    misspelt["spec"]["maxReplicas"] = 4.into();
    assert!(
        !check_keda_schema(KEDA_SCHEMAS[2].1, "ScaledObject", &misspelt)
            .status
            .success()
    );
    let mut wrong_type = so.clone();
    wrong_type["spec"]["maxReplicaCount"] = "four".into();
    assert!(
        !check_keda_schema(KEDA_SCHEMAS[0].1, "ScaledObject", &wrong_type)
            .status
            .success()
    );
    let mut no_target = auth.clone();
    no_target["spec"]["secretTargetRef"][0]
        .as_object_mut()
        .unwrap()
        .remove("key");
    assert!(
        !check_keda_schema(KEDA_SCHEMAS[1].1, "TriggerAuthentication", &no_target)
            .status
            .success()
    );
    let applies = runner_applies(&server);
    assert!(!applies.is_empty());
    for body in &applies {
        assert!(body["spec"].get("replicas").is_none(), "{body}");
    }
    assert_eq!(
        worker(&server)["status"]["autoscaling"]["scaledObject"],
        RUNNER
    );

    // Leaving the engine deletes both objects, and the operator sets replicas again.
    edit(
        &server,
        |spec| {
            spec["runner"]["autoscaling"] =
                json!({"engine": "builtin", "minReplicas": 1, "maxReplicas": 4})
        },
    );
    eventually("the KEDA objects to go", WAIT, || {
        let left = (
            keda_object(&server, "ScaledObject", RUNNER).is_some(),
            keda_object(&server, "TriggerAuthentication", "school-e-runner-db").is_some(),
        );
        (left == (false, false))
            .then_some(())
            .ok_or(format!("{left:?}"))
    })
    .await;
    wait_replicas(&server, 1).await;
    op.reconciles(3).await;

    // The KEDA requests were exactly the declared KEDA rules (least privilege).
    let used = rbac_audit::used(
        server
            .requests()
            .iter()
            .filter(|r| r.path.starts_with("/apis/keda.sh/"))
            .map(|r| (r.method.as_str(), r.uri()))
            .collect::<Vec<_>>()
            .iter()
            .map(|(m, u)| (*m, u.as_str())),
    );
    let declared: BTreeSet<(String, String, String)> = RULES
        .iter()
        .filter(|r| r.scope == Scope::Keda)
        .flat_map(|r| {
            r.resources.iter().flat_map(move |res| {
                r.verbs
                    .iter()
                    .map(move |v| ((*v).to_owned(), r.api_group.to_owned(), (*res).to_owned()))
            })
        })
        .collect();
    assert_eq!(used, declared);
}

#[tokio::test]
async fn keda_without_its_rbac_says_how_to_grant_it() {
    let server = server(false).await;
    server.install_optional_crds();
    let _op = Operator::start(&server, Arc::new(ScriptedProber::healthy()), POLLING);
    create_worker(&server, json!({"engine": "keda"}));
    let lw = wait_autoscaler(&server, "False", "AutoscalerUnavailable").await;
    let message = lw["status"]["conditions"].to_string();
    assert!(message.contains("keda.enabled=true"), "{message}");
    assert!(keda_object(&server, "ScaledObject", RUNNER).is_none());
}

#[tokio::test]
async fn external_never_writes_replicas_and_an_hpas_value_stays() {
    let server = server(true).await;
    let op = Operator::start(&server, Arc::new(ScriptedProber::healthy()), POLLING);
    op.queue(500, 0);
    create_worker(&server, json!({"engine": "external"}));
    runners_running(&server).await;
    wait_autoscaler(&server, "True", "ExternalAutoscaler").await;
    // The user's HPA scales the Deployment.
    server.modify("apps/v1", "Deployment", NS, RUNNER, |d| {
        d["spec"]["replicas"] = 4.into()
    });
    op.reconciles(5).await;
    assert_eq!(runner(&server).unwrap()["spec"]["replicas"], 4);
    // The first apply, and one more after the HPA's write moved the Deployment's generation
    // (an unchanged Deployment is not applied again).
    let applies = runner_applies(&server);
    assert!(applies.len() >= 2, "{} applies", applies.len());
    for body in &applies {
        assert!(body["spec"].get("replicas").is_none(), "{body}");
    }
    assert!(worker(&server)["status"]["autoscaling"]["desiredReplicas"].is_null());
}

#[tokio::test]
async fn switching_a_scaled_worker_to_external_keeps_its_runners() {
    let server = server(true).await;
    let op = Operator::start(&server, Arc::new(ScriptedProber::healthy()), POLLING);
    op.queue(0, 0);
    create_worker(&server, json!({}));
    runners_running(&server).await;
    wait_autoscaler(&server, "True", "BuiltinScaling").await;
    op.queue(60, 20);
    wait_replicas(&server, 4).await;

    // The user's HPA takes over: the operator stops applying `replicas`, and the Deployment
    // keeps its 4 runners (server-side apply would otherwise drop the field, and its default
    // of 1 would take over until the HPA acts).
    let from = runner_applies(&server).len();
    edit(&server, |spec| {
        spec["runner"]["autoscaling"]["engine"] = "external".into()
    });
    wait_autoscaler(&server, "True", "ExternalAutoscaler").await;
    op.reconciles(5).await;
    assert_eq!(runner(&server).unwrap()["spec"]["replicas"], 4);
    let after: Vec<Value> = runner_applies(&server).split_off(from);
    let handover: Vec<&Value> = after
        .iter()
        .filter(|b| b["spec"].as_object().is_some_and(|s| s.len() == 1))
        .collect();
    assert_eq!(handover.len(), 1, "one hand-over apply: {after:#?}");
    assert_eq!(handover[0]["spec"]["replicas"], 4);
    assert!(
        after
            .iter()
            .filter(|b| b["spec"].get("template").is_some())
            .all(|b| b["spec"].get("replicas").is_none()),
        "{after:#?}"
    );
    // The HPA scales: its value stays.
    server.modify("apps/v1", "Deployment", NS, RUNNER, |d| {
        d["spec"]["replicas"] = 2.into()
    });
    op.reconciles(5).await;
    assert_eq!(runner(&server).unwrap()["spec"]["replicas"], 2);
}
