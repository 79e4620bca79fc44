//! One reconcile's children and status: the SSA patches of every child, the status patch
//! and its conditions, the Events, a refused child, the model claim, the pull Job, an invalid
//! spec.

use super::*;

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
    // Deployments and pods come from the watch caches: no get, no list.
    let reads: Vec<&str> = log
        .iter()
        .filter(|r| r.method == "GET")
        .map(|r| r.uri.as_str())
        .collect();
    assert!(reads.is_empty(), "{reads:?}");
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
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"app.kubernetes.io/name": "learning-worker", "app.kubernetes.io/instance": "school-a",
                "app.kubernetes.io/component": "model-pull", "app.kubernetes.io/managed-by": "learning-operator"}},
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
    lw.spec.runner.autoscaling = Some(learning_crds::runner::AutoscalingSpec::between(4, 2));
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
