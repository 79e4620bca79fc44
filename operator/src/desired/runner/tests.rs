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
    // Derived: numParallel 2 shared by 2 runners, 4 × 1 call × 2 models.
    assert_eq!(value("WORKER_CONCURRENCY"), "8");
    assert_eq!(value("AI_MAX_PARALLEL_CALLS"), "1");
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
    let lw = example("amd-gpu.yaml");
    let d = deployment(&lw, crate::autoscale::runner_replicas(&lw, None));
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

#[test]
fn model_calls_and_jobs_are_derived_from_what_ollama_serves() {
    let mut lw = example("amd-gpu.yaml");
    lw.spec.runner.concurrency = None;
    lw.spec.runner.autoscaling = None;
    lw.spec.runner.replicas = Some(1);
    lw.spec.ollama.num_parallel = Some(2);
    lw.spec.ollama.extra_models.clear();
    let c = capacity::capacity(&lw).expect("local backend");
    // Two slots per model for the one runner; 4 × 2 calls × 2 models, capped at 16.
    assert_eq!(
        (c.calls_per_model, c.concurrency, c.loaded_models),
        (2, 16, 2)
    );
    let env = env_map(&lw);
    assert_eq!(env["AI_MAX_PARALLEL_CALLS"].value.as_deref(), Some("2"));
    assert_eq!(env["WORKER_CONCURRENCY"].value.as_deref(), Some("16"));

    // Three runners share the two slots: one call per model each (⌈2 ÷ 3⌉), 8 jobs.
    lw.spec.runner.replicas = Some(3);
    let c = capacity::capacity(&lw).unwrap();
    assert_eq!((c.calls_per_model, c.concurrency), (1, 8));
    // Ollama's default is one slot; one model for both steps halves the jobs.
    lw.spec.ollama.num_parallel = None;
    lw.spec.ai.feedback_model = lw.spec.ai.vision_model.clone();
    let c = capacity::capacity(&lw).unwrap();
    assert_eq!(
        (c.calls_per_model, c.concurrency, c.loaded_models),
        (1, 4, 1)
    );
}

#[test]
fn an_explicit_concurrency_or_model_call_limit_wins_and_the_stub_derives_nothing() {
    let mut lw = example("amd-gpu.yaml");
    lw.spec.runner.concurrency = Some(3);
    lw.spec.runner.env = Some(vec![EnvVar {
        name: "AI_MAX_PARALLEL_CALLS".into(),
        value: Some("7".into()),
        value_from: None,
    }]);
    let env = runner_env(&lw);
    let named = |n: &str| env.iter().filter(|e| e.name == n).collect::<Vec<_>>();
    assert_eq!(named("WORKER_CONCURRENCY")[0].value.as_deref(), Some("3"));
    let calls = named("AI_MAX_PARALLEL_CALLS");
    assert_eq!(calls.len(), 1, "only the user's value");
    assert_eq!(calls[0].value.as_deref(), Some("7"));

    lw.spec.runner.concurrency = None;
    lw.spec.runner.env = None;
    // An external Ollama's capacity is known only when numParallel states it.
    lw.spec.ollama.mode = learning_crds::ollama::OllamaMode::External;
    lw.spec.ollama.url = Some("http://ollama.ai-shared.svc:11434".into());
    lw.spec.ollama.num_parallel = None;
    assert_eq!(capacity::capacity(&lw), None);
    lw.spec.ollama.num_parallel = Some(1);
    assert_eq!(capacity::capacity(&lw).map(|c| c.calls_per_model), Some(1));

    lw.spec.ai.backend = learning_crds::ai::Backend::Stub;
    assert_eq!(capacity::capacity(&lw), None);
    let env = env_map(&lw);
    assert_eq!(env["WORKER_CONCURRENCY"].value.as_deref(), Some("1"));
    assert!(!env.contains_key("AI_MAX_PARALLEL_CALLS"));
}

#[test]
fn autoscaling_shares_the_slots_among_the_most_runners_there_can_be() {
    let mut lw = example("amd-gpu.yaml");
    lw.spec.runner.concurrency = None;
    lw.spec.runner.replicas = None;
    lw.spec.runner.autoscaling = Some(learning_crds::runner::AutoscalingSpec {
        jobs_per_replica: 20,
        ..learning_crds::runner::AutoscalingSpec::between(1, 4)
    });
    lw.spec.ollama.num_parallel = Some(8);
    let c = capacity::capacity(&lw).unwrap();
    assert_eq!((c.calls_per_model, c.concurrency), (2, 16));
}
