//! The cross-field rules: each invalid spec is refused by the CRD's CEL rules (kube-cel's
//! evaluator; the API server runs the same rules at admission) with the expected message, and by
//! the Rust mirror in `learning_crds::validate`. Also: no rule trips kube-cel's static analysis
//! (scope, cost budget).

mod common;

use kube::core::cel::{analyze_rule, compile_schema, ScopeContext, Validator, WarningKind};
use learning_crds::LearningWorker;
use serde_json::{json, Value};

fn base() -> Value {
    common::load_yaml(&common::crate_dir().join("examples/amd-gpu.yaml"))
}

/// A named change that makes the spec invalid, and the CEL message fragment expected.
type Case = (&'static str, Box<dyn Fn(&mut Value)>, &'static str);

fn invalid_cases() -> Vec<Case> {
    vec![
        (
            "external without url",
            Box::new(|v: &mut Value| {
                v["spec"]["ollama"] = json!({"mode": "external"});
            }),
            "url is required when mode is external",
        ),
        (
            "managed with url",
            Box::new(|v: &mut Value| {
                v["spec"]["ollama"]["url"] = json!("http://ollama:11434");
            }),
            "url is only allowed when mode is external",
        ),
        (
            "external Ollama on localhost",
            Box::new(|v: &mut Value| {
                v["spec"]["ollama"] = json!({"mode": "external", "url": "http://localhost:11434"});
            }),
            "url must not be localhost",
        ),
        (
            "external Ollama on localhost, upper case",
            Box::new(|v: &mut Value| {
                v["spec"]["ollama"] = json!({"mode": "external", "url": "http://LocalHost"});
            }),
            "url must not be localhost",
        ),
        (
            "min above max",
            Box::new(|v: &mut Value| {
                v["spec"]["runner"]
                    .as_object_mut()
                    .unwrap()
                    .remove("replicas");
                v["spec"]["runner"]["autoscaling"] = json!({"minReplicas": 5, "maxReplicas": 2});
            }),
            "minReplicas must not exceed maxReplicas",
        ),
        (
            "scale from zero without keda",
            Box::new(|v: &mut Value| {
                v["spec"]["runner"]
                    .as_object_mut()
                    .unwrap()
                    .remove("replicas");
                v["spec"]["runner"]["autoscaling"] =
                    json!({"engine": "builtin", "minReplicas": 0, "maxReplicas": 2});
            }),
            "minReplicas 0 (scale from zero) needs engine keda",
        ),
        (
            "replicas and autoscaling",
            Box::new(|v: &mut Value| {
                v["spec"]["runner"]["autoscaling"] = json!({"minReplicas": 1, "maxReplicas": 2});
            }),
            "set either replicas or autoscaling",
        ),
        (
            "backoff above cap",
            Box::new(|v: &mut Value| {
                v["spec"]["runner"]["backoffSeconds"] = json!(900);
                v["spec"]["runner"]["backoffMaxSeconds"] = json!(60);
            }),
            "backoffSeconds must not exceed backoffMaxSeconds",
        ),
        (
            "plain DSN in env",
            Box::new(|v: &mut Value| {
                v["spec"]["runner"]["env"] =
                    json!([{"name": "LEARNING_DATABASE_URL", "value": "postgres://u:p@db/x"}]);
            }),
            "env must not set variables the operator manages",
        ),
        (
            "think level for another model",
            Box::new(|v: &mut Value| {
                v["spec"]["ai"]["feedbackModel"] = json!("qwen2.5:7b");
            }),
            "thinkLevel applies only to gpt-oss",
        ),
        (
            "stub in production",
            Box::new(|v: &mut Value| {
                v["spec"]["ai"]["backend"] = json!("stub");
                v["spec"]["environment"] = json!("Production");
            }),
            "stub AI backend is refused",
        ),
        (
            "stub in production, padded",
            Box::new(|v: &mut Value| {
                v["spec"]["ai"]["backend"] = json!("stub");
                v["spec"]["environment"] = json!(" production ");
            }),
            "stub AI backend is refused",
        ),
        (
            "gfx override on nvidia",
            Box::new(|v: &mut Value| {
                v["spec"]["ollama"]["gpu"]["vendor"] = json!("nvidia");
            }),
            "apply to AMD GPUs only",
        ),
        (
            "more visible devices than GPUs",
            Box::new(|v: &mut Value| {
                v["spec"]["ollama"]["gpu"]["hipVisibleDevices"] = json!("0,1");
            }),
            "hipVisibleDevices lists more GPUs than gpu.count",
        ),
        (
            "resource name without a GPU",
            Box::new(|v: &mut Value| {
                v["spec"]["ollama"]["gpu"] =
                    json!({"vendor": "none", "resourceName": "amd.com/gpu"});
            }),
            "resourceName needs a GPU vendor",
        ),
        (
            "runner egress without policies",
            Box::new(|v: &mut Value| {
                v["spec"]["network"] = json!({"policies": false, "runnerEgress": {
                    "database": {"to": [{"ipBlock": {"cidr": "10.0.5.0/24"}}], "ports": [5432]},
                    "supabase": {"to": [{"ipBlock": {"cidr": "10.0.6.0/24"}}], "ports": [8000]}}});
            }),
            "runnerEgress needs policies: true",
        ),
        (
            "runner egress without a way to Supabase",
            Box::new(|v: &mut Value| {
                v["spec"]["network"] = json!({"runnerEgress": {
                    "database": {"to": [{"ipBlock": {"cidr": "10.0.5.0/24"}}], "ports": [5432]}}});
            }),
            "network.runnerEgress.supabase is required when storage.supabase is set",
        ),
        (
            "DNS block that is no CIDR",
            Box::new(|v: &mut Value| {
                v["spec"]["network"] = json!({"dnsCidrs": ["999.1.2.3/32"]});
            }),
            "dnsCidrs must be CIDRs",
        ),
        (
            "empty storage",
            Box::new(|v: &mut Value| {
                v["spec"]["storage"] = json!({});
            }),
            "set submissionsVolume, supabase, or both",
        ),
        (
            "local backend without storage",
            Box::new(|v: &mut Value| {
                v["spec"].as_object_mut().unwrap().remove("storage");
            }),
            "the local AI backend needs spec.storage",
        ),
        (
            "name too long",
            Box::new(|v: &mut Value| {
                v["metadata"]["name"] = json!("a-very-long-learning-worker-name-for-a-school");
            }),
            "metadata.name must be a DNS label",
        ),
        (
            "name with a dot",
            Box::new(|v: &mut Value| {
                v["metadata"]["name"] = json!("school.a");
            }),
            "metadata.name must be a DNS label",
        ),
    ]
}

#[test]
fn each_invalid_spec_is_refused_by_cel_and_by_the_rust_rules() {
    let schema = common::open_api_schema();
    for (case, mutate, message) in invalid_cases() {
        let mut value = base();
        mutate(&mut value);
        let errors = Validator::new()
            .validate(&schema, &value, None)
            .expect_err(case);
        assert!(
            errors.iter().any(|e| e.message.contains(message)),
            "{case}: expected {message:?}, got {errors:?}"
        );
        let lw: LearningWorker = serde_json::from_value(value).unwrap();
        let rust =
            learning_crds::validate::validate(lw.metadata.name.as_deref().unwrap(), &lw.spec);
        assert!(!rust.is_empty(), "{case}: the Rust rules accepted it");
    }
}

#[test]
fn the_model_volume_may_grow_but_neither_shrink_nor_change_its_class() {
    let schema = common::open_api_schema();
    let mut old = base();
    old["spec"]["ollama"]["storage"] = json!({"size": "60Gi", "storageClassName": "fast"});
    let edit = |change: &dyn Fn(&mut Value)| {
        let mut new = old.clone();
        change(&mut new["spec"]["ollama"]["storage"]);
        Validator::new().validate(&schema, &new, Some(&old))
    };
    assert!(edit(&|_| {}).is_ok(), "unchanged");
    assert!(edit(&|s| s["size"] = json!("100Gi")).is_ok(), "grow");
    assert!(
        edit(&|s| s["size"] = json!("61440Mi")).is_ok(),
        "the same size in other units"
    );
    for (case, change, message) in [
        (
            "shrink",
            Box::new(|s: &mut Value| s["size"] = json!("50Gi")) as Box<dyn Fn(&mut Value)>,
            "size may grow but not shrink",
        ),
        (
            "shrink in other units",
            Box::new(|s: &mut Value| s["size"] = json!("60G")),
            "size may grow but not shrink",
        ),
        (
            "other class",
            Box::new(|s: &mut Value| s["storageClassName"] = json!("slow")),
            "storageClassName is immutable",
        ),
        (
            "class removed",
            Box::new(|s: &mut Value| {
                s.as_object_mut().unwrap().remove("storageClassName");
            }),
            "storageClassName is immutable",
        ),
    ] {
        let errors = edit(&change).expect_err(case);
        assert!(
            errors.iter().any(|e| e.message.contains(message)),
            "{case}: {errors:?}"
        );
    }
    // Creating with any size or class is fine: transition rules need an old object.
    let mut fresh = old.clone();
    fresh["spec"]["ollama"]["storage"] = json!({"size": "1Gi"});
    assert!(Validator::new().validate(&schema, &fresh, None).is_ok());
}

#[test]
fn every_reserved_env_name_is_refused_by_cel_and_by_the_rust_rules() {
    // The CEL rule spells the list out; it must cover exactly RESERVED_ENV.
    let schema = common::open_api_schema();
    for name in learning_crds::runner::RESERVED_ENV {
        let mut value = base();
        value["spec"]["runner"]["env"] = json!([{"name": name, "value": "x"}]);
        let errors = Validator::new()
            .validate(&schema, &value, None)
            .expect_err(name);
        assert!(
            errors.iter().any(|e| e
                .message
                .contains("env must not set variables the operator manages")),
            "{name}: {errors:?}"
        );
        let lw: LearningWorker = serde_json::from_value(value).unwrap();
        assert!(
            !learning_crds::validate::validate("school-a", &lw.spec).is_empty(),
            "{name}: the Rust rules accepted it"
        );
    }
    assert!(learning_crds::runner::RESERVED_ENV.contains(&"LEARNING_HEALTH_TOKEN"));
    let mut value = base();
    value["spec"]["runner"]["env"] = json!([{"name": "RUST_BACKTRACE", "value": "1"}]);
    Validator::new().validate(&schema, &value, None).unwrap();
}

#[test]
fn external_urls_on_loopback_addresses_fail_the_schema_pattern() {
    let schema = common::open_api_schema();
    for url in [
        "http://127.0.0.1:11434",
        "http://[::1]:11434",
        "http://1ollama",
    ] {
        let mut value = base();
        value["spec"]["ollama"] = json!({"mode": "external", "url": url});
        let errors = common::check(&schema["properties"]["spec"], &value["spec"], "spec");
        assert!(
            errors.iter().any(|e| e.starts_with("spec.ollama.url")),
            "{url}: {errors:?}"
        );
        let lw: LearningWorker = serde_json::from_value(value).unwrap();
        assert!(
            !learning_crds::validate::validate("school-a", &lw.spec).is_empty(),
            "{url}: the Rust rules accepted it"
        );
    }
    let mut value = base();
    value["spec"]["ollama"] = json!({"mode": "external", "url": "http://ollama:11434"});
    assert!(common::check(&schema["properties"]["spec"], &value["spec"], "spec").is_empty());
    Validator::new().validate(&schema, &value, None).unwrap();
}

#[test]
fn supabase_urls_and_keep_alive_follow_the_runners_rules() {
    let schema = common::open_api_schema();
    let errors_for = |change: &dyn Fn(&mut Value)| {
        let mut value = base();
        change(&mut value);
        common::check(&schema["properties"]["spec"], &value["spec"], "spec")
    };
    // Every URL is judged the same by the schema (pattern + CEL), the Rust rules and the
    // runner's rule in the contract crate. A path was accepted by the schema while the runner
    // refused it at start: such a LearningWorker produced runner pods that exited at once.
    for url in [
        "http://supabase-kong:8000",
        "http://supabase_kong_gustav:8000",
        "https://db.example.org/",
        "https://example.org/base/path",
        "https://example.org/base",
        "https://user:pw@example.org",
        "https://example.org/?token=x",
        "https://example.org/base#frag",
        "https://example.org?x",
        "ftp://example.org",
        "https://exa\\mple.org",
        "http://kong\u{b}:8000",
        "http://kong\u{a0}:8000",
        "http://kong:abc",
        "http://kong:+80",
        "http://kong:99999",
        "http://kong:08000",
        "http://[::1]:8000",
        "http://kong:8000//",
    ] {
        let runner_accepts = learning_contract::url::check_supabase_url(url).is_ok();
        let schema_errors = errors_for(&|v| v["spec"]["storage"]["supabase"]["url"] = json!(url));
        let mut value = base();
        value["spec"]["storage"]["supabase"]["url"] = json!(url);
        let cel_ok = Validator::new().validate(&schema, &value, None).is_ok();
        let lw: LearningWorker = serde_json::from_value(value).unwrap();
        let rust_ok = learning_crds::validate::validate("school-a", &lw.spec).is_empty();
        assert_eq!(
            (schema_errors.is_empty() && cel_ok, rust_ok),
            (runner_accepts, runner_accepts),
            "{url}: schema {schema_errors:?}"
        );
    }
    assert!(learning_contract::url::check_supabase_url("https://example.org/base/path").is_err());
    for ok in ["-1", "0", "300", "30s", "10m", "24h"] {
        let errors = errors_for(&|v| v["spec"]["ollama"]["keepAlive"] = json!(ok));
        assert!(errors.is_empty(), "{ok}: {errors:?}");
    }
    for bad in ["1.5", "1.5h", "500ms", "5mh", "soon", "-2"] {
        let errors = errors_for(&|v| v["spec"]["ollama"]["keepAlive"] = json!(bad));
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("spec.ollama.keepAlive")),
            "{bad}: {errors:?}"
        );
    }
}

#[test]
fn an_opted_in_runner_egress_is_valid() {
    let schema = common::open_api_schema();
    let mut value = base();
    value["spec"]["network"] = json!({"dnsCidrs": ["169.254.20.10/32", "fd00::a/128"],
        "modelPullPorts": [443, 80], "runnerEgress": {
        "database": {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "db"}}}], "ports": [5432]},
        "supabase": {"to": [{"ipBlock": {"cidr": "10.0.6.0/24"}}], "ports": [8000]},
        "others": [{"to": [{"podSelector": {"matchLabels": {"app": "ollama"}}}], "ports": [11434]}]}});
    Validator::new().validate(&schema, &value, None).unwrap();
    assert!(common::check(&schema["properties"]["spec"], &value["spec"], "spec").is_empty());
    let lw: LearningWorker = serde_json::from_value(value).unwrap();
    assert!(learning_crds::validate::validate("school-a", &lw.spec).is_empty());
}

#[test]
fn keda_may_scale_from_zero_and_every_engine_is_admitted() {
    let schema = common::open_api_schema();
    for (engine, min) in [("keda", 0), ("keda", 2), ("builtin", 1), ("external", 1)] {
        let mut value = base();
        value["spec"]["runner"]
            .as_object_mut()
            .unwrap()
            .remove("replicas");
        value["spec"]["runner"]["autoscaling"] = json!({"engine": engine, "minReplicas": min,
            "maxReplicas": 4, "scaleDownStabilizationSeconds": 60});
        Validator::new().validate(&schema, &value, None).unwrap();
        assert!(common::check(&schema["properties"]["spec"], &value["spec"], "spec").is_empty());
        let lw: LearningWorker = serde_json::from_value(value).unwrap();
        assert!(
            learning_crds::validate::validate("school-a", &lw.spec).is_empty(),
            "{engine} {min}"
        );
    }
}

#[test]
fn as_many_visible_devices_as_gpus_are_fine() {
    let schema = common::open_api_schema();
    let mut value = base();
    value["spec"]["ollama"]["gpu"]["count"] = json!(2);
    value["spec"]["ollama"]["gpu"]["hipVisibleDevices"] = json!("0,1");
    Validator::new().validate(&schema, &value, None).unwrap();
    let lw: LearningWorker = serde_json::from_value(value).unwrap();
    assert!(learning_crds::validate::validate("school-a", &lw.spec).is_empty());
}

#[test]
fn an_amd_gpu_without_device_groups_is_admitted() {
    // Reported in status (GPUAccelerated=False/DeviceGroupsMissing), not refused: containerd
    // may hand the devices to the pod's user instead.
    let schema = common::open_api_schema();
    let mut value = base();
    let gpu = value["spec"]["ollama"]["gpu"].as_object_mut().unwrap();
    gpu.remove("renderGroupId");
    gpu.remove("videoGroupId");
    Validator::new().validate(&schema, &value, None).unwrap();
}

#[test]
fn cel_defaults_make_a_minimal_spec_valid() {
    let schema = common::open_api_schema();
    let minimal = json!({
        "apiVersion": "learning.gustav.dev/v1alpha1", "kind": "LearningWorker",
        "metadata": {"name": "tiny"},
        "spec": {"database": {"secretRef": {"name": "db", "key": "dsn"}}, "runner": {"image": "r:1"},
                 "storage": {"submissionsVolume": {"claimName": "submissions"}}}
    });
    Validator::new().validate(&schema, &minimal, None).unwrap();
    assert!(common::check(&schema["properties"]["spec"], &minimal["spec"], "spec").is_empty());
}

#[test]
fn a_bucket_name_the_runner_would_refuse_is_refused_by_the_schema_and_the_rust_rules() {
    let schema = common::open_api_schema();
    let mut value = base();
    value["spec"]["storage"]["supabase"] = json!({"url": "http://kong:8000", "serviceRoleKeySecretRef": {"name": "s", "key": "k"}, "bucket": "a/b"});
    let problems = common::check(&schema["properties"]["spec"], &value["spec"], "spec");
    assert!(
        problems.iter().any(|p| p.contains("bucket")),
        "{problems:?}"
    );
    let lw: LearningWorker = serde_json::from_value(value).unwrap();
    let rust = learning_crds::validate::validate("school-a", &lw.spec);
    assert!(
        rust.iter().any(|e| e.to_string().contains("bucket")),
        "{rust:?}"
    );
}

fn rules(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(list) = map
                .get("x-kubernetes-validations")
                .and_then(Value::as_array)
            {
                out.extend(list.iter().map(|r| r["rule"].as_str().unwrap().to_owned()));
            }
            map.values().for_each(|v| rules(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| rules(v, out)),
        _ => {}
    }
}

/// Whether the variable a scope warning names is bound by a CEL macro in `rule`.
fn bound_by_macro(rule: &str, message: &str) -> bool {
    let Some(var) = message.split('\'').nth(1) else {
        return false;
    };
    ["all", "exists", "exists_one", "map", "filter"]
        .iter()
        .any(|m| rule.contains(&format!(".{m}({var},")))
}

#[test]
fn rules_stay_in_scope_and_within_the_cost_budget() {
    let schema = common::open_api_schema();
    let mut all = Vec::new();
    rules(&schema, &mut all);
    assert!(
        all.len() >= 10,
        "expected every cross-field rule, found {all:?}"
    );
    let compiled = compile_schema(&schema);
    for rule in &all {
        let bad: Vec<_> = analyze_rule(rule, &compiled, ScopeContext::CrdValidation)
            .into_iter()
            .filter(|w| match w.kind {
                WarningKind::CostExceeded => true,
                // The analyser does not know comprehension variables (`all(e, ...)`).
                WarningKind::WrongScope => !bound_by_macro(rule, &w.message),
                _ => false,
            })
            .collect();
        assert!(bad.is_empty(), "{rule}: {bad:?}");
    }
}

#[test]
fn external_ollama_urls_are_judged_as_the_runner_judges_them() {
    let schema = common::open_api_schema();
    for url in [
        "http://ollama:11434",
        "https://gpu-ollama/",
        "http://Ollama:8080/api",
        "http://localhost:11434",
        "http://LOCALHOST",
        "https://127.0.0.1:8443",
        "http://[::1]:11434",
        "http://1ollama:11434",
        "http://-x",
        "https://api.example.com",
        "http://ollama.ai-shared.svc:11434",
        "http://ollama.ai-shared.svc.cluster.local:11434/",
        "http://ollama.2026.svc",
        "http://ollama.ai",
        "http://ollama.ai-shared",
        "http://ollama.ai-shared.svc.example.org",
        "http://ollama.ai-shared.svc.cluster.local.",
        "http://a.b.c.svc",
        "http://ollama.-x.svc",
        "http://ollama.ai-shared.SVC",
        "http://u:p@ollama:1",
        "http://ollama:0",
        "http://ollama:65535",
        "http://ollama:65536",
        "http://ollama:99999",
        "http://ollama:011434",
        "http://ollama/?x=1",
        "ftp://ollama",
    ] {
        let runner_accepts = learning_contract::url::check_external_ollama_url(url).is_ok();
        let mut value = base();
        value["spec"]["ai"]["backend"] = json!("local");
        value["spec"]["ollama"] = json!({"mode": "external", "url": url});
        let schema_errors = common::check(&schema["properties"]["spec"], &value["spec"], "spec");
        let cel_ok = Validator::new().validate(&schema, &value, None).is_ok();
        let lw: LearningWorker = serde_json::from_value(value).unwrap();
        let rust_ok = learning_crds::validate::validate("school-a", &lw.spec).is_empty();
        assert_eq!(
            (schema_errors.is_empty() && cel_ok, rust_ok),
            (runner_accepts, runner_accepts),
            "{url}: schema {schema_errors:?}"
        );
    }
}

#[test]
fn ollama_env_refuses_the_names_the_operator_sets_and_an_external_ollama() {
    let schema = common::open_api_schema();
    let with = |env: serde_json::Value, mode: &str| {
        let mut value = base();
        value["spec"]["ai"]["backend"] = json!("local");
        value["spec"]["ollama"]["env"] = env;
        if mode == "external" {
            value["spec"]["ollama"]["mode"] = json!("external");
            value["spec"]["ollama"]["url"] = json!("http://ollama:11434");
        }
        value
    };
    for name in learning_crds::ollama::OLLAMA_OPERATOR_SET {
        let value = with(json!([{"name": name, "value": "x"}]), "managed");
        let errors = Validator::new()
            .validate(&schema, &value, None)
            .expect_err(name);
        assert!(
            errors.iter().any(|e| e
                .message
                .contains("env must not set variables the operator manages")),
            "{name}: {errors:?}"
        );
        let lw: LearningWorker = serde_json::from_value(value).unwrap();
        assert!(
            !learning_crds::validate::validate("school-a", &lw.spec).is_empty(),
            "{name}: the Rust rules accepted it"
        );
    }
    let tuning = json!([{"name": "OLLAMA_FLASH_ATTENTION", "value": "1"}]);
    let value = with(tuning.clone(), "managed");
    Validator::new().validate(&schema, &value, None).unwrap();
    let lw: LearningWorker = serde_json::from_value(value).unwrap();
    assert!(learning_crds::validate::validate("school-a", &lw.spec).is_empty());
    let value = with(tuning, "external");
    assert!(Validator::new().validate(&schema, &value, None).is_err());
    let lw: LearningWorker = serde_json::from_value(value).unwrap();
    assert!(!learning_crds::validate::validate("school-a", &lw.spec).is_empty());
}

#[test]
fn an_env_name_listed_twice_is_refused_by_the_schema_and_the_rust_rules() {
    let schema = common::open_api_schema();
    for (path, list_field) in [("runner", "runner"), ("ollama", "ollama")] {
        let field = &schema["properties"]["spec"]["properties"][list_field]["properties"]["env"];
        assert_eq!(field["x-kubernetes-list-type"], "map", "{path}");
        assert_eq!(
            field["x-kubernetes-list-map-keys"],
            json!(["name"]),
            "{path}"
        );
        let mut value = base();
        value["spec"]["ai"]["backend"] = json!("local");
        value["spec"][path]["env"] = json!([
            {"name": "RUST_LOG", "value": "a"},
            {"name": "RUST_LOG", "value": "b"}
        ]);
        let lw: LearningWorker = serde_json::from_value(value).unwrap();
        let errors = learning_crds::validate::validate("school-a", &lw.spec);
        assert!(
            errors
                .iter()
                .any(|e| e.message.contains("RUST_LOG is listed twice")),
            "{path}: {errors:?}"
        );
    }
}

#[test]
fn idle_scale_down_defaults_to_half_an_hour_and_needs_a_managed_ollama() {
    let schema = common::open_api_schema();
    let with = |mode: &str| {
        let mut value = base();
        value["spec"]["ai"]["backend"] = json!("local");
        value["spec"]["ollama"]["idleScaleDown"] = json!({});
        if mode == "external" {
            value["spec"]["ollama"]["mode"] = json!("external");
            value["spec"]["ollama"]["url"] = json!("http://ollama:11434");
        }
        value
    };
    let managed = with("managed");
    Validator::new().validate(&schema, &managed, None).unwrap();
    let lw: LearningWorker = serde_json::from_value(managed).unwrap();
    assert!(learning_crds::validate::validate("school-a", &lw.spec).is_empty());
    assert_eq!(lw.spec.ollama.idle_scale_down.unwrap().after_seconds, 1800);

    let external = with("external");
    let errors = Validator::new()
        .validate(&schema, &external, None)
        .expect_err("external");
    assert!(
        errors.iter().any(|e| e
            .message
            .contains("idleScaleDown applies only to a managed Ollama")),
        "{errors:?}"
    );
    let lw: LearningWorker = serde_json::from_value(external).unwrap();
    assert!(!learning_crds::validate::validate("school-a", &lw.spec).is_empty());

    let mut negative = with("managed");
    negative["spec"]["ollama"]["idleScaleDown"]["afterSeconds"] = json!(59);
    let errors = common::check(&schema["properties"]["spec"], &negative["spec"], "spec");
    assert!(!errors.is_empty(), "less than a minute is refused");

    let mut stub = with("managed");
    stub["spec"]["ai"]["backend"] = json!("stub");
    let errors = Validator::new()
        .validate(&schema, &stub, None)
        .expect_err("stub");
    assert!(
        errors
            .iter()
            .any(|e| e.message.contains("idleScaleDown needs ai.backend local")),
        "{errors:?}"
    );
    let lw: LearningWorker = serde_json::from_value(stub).unwrap();
    assert!(!learning_crds::validate::validate("school-a", &lw.spec).is_empty());
}
