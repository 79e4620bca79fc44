//! Tests of the runner builders: the env, the Ollama URL, the pod, the replicas, the Service
//! and the PodDisruptionBudget.

use super::super::fixtures::example;
use super::*;

fn env_map(lw: &LearningWorker) -> std::collections::BTreeMap<String, EnvVar> {
    runner_env(lw)
        .into_iter()
        .map(|e| (e.name.clone(), e))
        .collect()
}

#[test]
fn env_uses_the_contract_names_and_the_dsn_only_from_the_secret() {
    let lw = example("amd-gpu.yaml");
    let env = env_map(&lw);
    let dsn = &env["LEARNING_DATABASE_URL"];
    assert_eq!(dsn.value, None);
    let sel = dsn
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        (sel.name.as_str(), sel.key.as_str()),
        ("learning-db", "dsn")
    );
    let key = env["SUPABASE_SERVICE_ROLE_KEY"]
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(key.name, "supabase-service-role");
    let value = |k: &str| env[k].value.clone().unwrap();
    assert_eq!(value("OLLAMA_BASE_URL"), "http://school-a-ollama:11434");
    assert_eq!(value("AI_BACKEND"), "local");
    assert_eq!(value("AI_FEEDBACK_MODEL"), "gpt-oss:20b");
    assert_eq!(value("AI_THINK_LEVEL"), "low");
    assert_eq!(value("GUSTAV_ENV"), "production");
    assert_eq!(value("WORKER_CONCURRENCY"), "2");
    assert_eq!(value("WORKER_POLL_INTERVAL"), "0.5");
    assert_eq!(value("WORKER_DRAIN_GRACE_SECONDS"), "25");
    assert_eq!(value("STORAGE_VERIFY_ROOT"), "/var/lib/gustav/submissions");
    assert_eq!(value("LEARNING_HTTP_ADDR"), "0.0.0.0:8080");
    assert!(!env.contains_key("DATABASE_URL"));
}

#[test]
fn external_mode_passes_the_url_and_stub_gets_none() {
    let lw = example("external-ollama.yaml");
    assert_eq!(ollama_url(&lw).as_deref(), Some("http://ollama:11434"));
    let mut stub = example("cpu-only.yaml");
    stub.spec.ai.backend = learning_crds::ai::Backend::Stub;
    assert!(!env_map(&stub).contains_key("OLLAMA_BASE_URL"));
}

#[test]
fn pod_is_restricted_tokenless_and_drains_within_its_grace() {
    let d = deployment(&example("amd-gpu.yaml"), None);
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(pod.termination_grace_period_seconds, Some(40));
    assert_eq!(
        pod.security_context.as_ref().unwrap().run_as_non_root,
        Some(true)
    );
    let c = &pod.containers[0];
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(
        c.termination_message_policy.as_deref(),
        Some("FallbackToLogsOnError")
    );
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_owned()][..])
    );
    let live = c
        .liveness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    let ready = c
        .readiness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(
        (live.path.as_deref(), ready.path.as_deref()),
        (Some("/livez"), Some("/readyz"))
    );
    let submissions = c
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.name == "submissions")
        .unwrap();
    assert_eq!(submissions.read_only, Some(true));
    assert_eq!(d.spec.as_ref().unwrap().replicas, Some(2));
}

#[test]
fn replicas_follow_suspend_fixed_count_and_backlog_within_bounds() {
    let mut lw = example("autoscaling.yaml"); // 1..6, 20 jobs per replica
    for (visible, want) in [
        (None, 1),
        (Some(0), 1),
        (Some(20), 1),
        (Some(21), 2),
        (Some(119), 6),
        (Some(10_000), 6),
    ] {
        assert_eq!(desired_replicas(&lw, visible), want, "{visible:?}");
    }
    lw.spec.suspend = true;
    assert_eq!(desired_replicas(&lw, Some(500)), 0);
    let fixed = example("nvidia-gpu.yaml");
    assert_eq!(desired_replicas(&fixed, Some(500)), 1);
}

#[test]
fn service_and_pdb_select_the_runner_pods() {
    let lw = example("amd-gpu.yaml");
    let pod_labels = deployment(&lw, None)
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .labels
        .unwrap();
    let svc = service(&lw).spec.unwrap();
    for (k, v) in svc.selector.unwrap() {
        assert_eq!(pod_labels.get(&k), Some(&v));
    }
    assert_eq!(svc.ports.unwrap()[0].port, 8080);
    assert_eq!(
        svc.publish_not_ready_addresses,
        Some(true),
        "the health report of unready runners must be readable"
    );
    let pdb = pdb(&lw).spec.unwrap();
    assert_eq!(pdb.max_unavailable, Some(IntOrString::Int(1)));
    assert_eq!(
        pdb.unhealthy_pod_eviction_policy.as_deref(),
        Some("AlwaysAllow"),
        "unready runners never block a drain"
    );
    assert_eq!(
        service_account(&lw).automount_service_account_token,
        Some(false)
    );
}
