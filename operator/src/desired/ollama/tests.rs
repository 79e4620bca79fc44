//! Tests of the Ollama builders: the pod per GPU vendor, the model claim, the pull Job.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, PersistentVolumeClaim, PodSpec};

use super::super::fixtures::example;
use super::*;

fn pod(d: &Deployment) -> &PodSpec {
    d.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

fn env_of(c: &Container) -> BTreeMap<String, String> {
    c.env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect()
}

#[test]
fn amd_pod_gets_rocm_image_gpu_toleration_groups_and_variables() {
    let d = deployment(&example("amd-gpu.yaml"), false);
    let p = pod(&d);
    let c = &p.containers[0];
    assert_eq!(
        c.image.as_deref(),
        Some("docker.io/ollama/ollama:0.12.3-rocm")
    );
    assert_eq!(
        c.resources.as_ref().unwrap().limits.as_ref().unwrap()["amd.com/gpu"],
        Quantity("1".into())
    );
    assert_eq!(
        p.tolerations.as_ref().unwrap()[0].key.as_deref(),
        Some("amd.com/gpu")
    );
    let sc = p.security_context.as_ref().unwrap();
    assert_eq!(sc.supplemental_groups, Some(vec![109, 44]));
    assert_eq!(
        (sc.run_as_user, sc.run_as_non_root, sc.fs_group),
        (Some(1000), Some(true), Some(1000))
    );
    let env = env_of(c);
    assert_eq!(env["HSA_OVERRIDE_GFX_VERSION"], "11.0.0");
    assert_eq!(env["HIP_VISIBLE_DEVICES"], "0");
    assert_eq!(env["OLLAMA_KEEP_ALIVE"], "24h");
    assert_eq!(env["OLLAMA_NUM_PARALLEL"], "2");
    assert_eq!(env["OLLAMA_MODELS"], "/data/models");
    assert_eq!(env["HOME"], "/data");
    assert_eq!(env["OLLAMA_MAX_LOADED_MODELS"], "2", "vision and feedback");
    assert_eq!(p.node_selector.as_ref().unwrap()["gustav.dev/gpu"], "amd");
    assert_eq!(
        d.spec
            .as_ref()
            .unwrap()
            .strategy
            .as_ref()
            .unwrap()
            .type_
            .as_deref(),
        Some("Recreate")
    );
    let tmp = p
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "tmp")
        .unwrap();
    assert_eq!(
        tmp.empty_dir.as_ref().unwrap().size_limit,
        Some(Quantity("1Gi".into()))
    );
    let startup = c.startup_probe.as_ref().unwrap();
    assert_eq!(startup.failure_threshold, Some(60));
    assert_eq!(
        c.readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .as_deref(),
        Some("/api/version")
    );
}

#[test]
fn nvidia_and_cpu_pods_differ_only_where_they_should() {
    let nv = deployment(&example("nvidia-gpu.yaml"), false);
    let c = &pod(&nv).containers[0];
    assert_eq!(c.image.as_deref(), Some("docker.io/ollama/ollama:0.12.3"));
    assert!(c
        .resources
        .as_ref()
        .unwrap()
        .limits
        .as_ref()
        .unwrap()
        .contains_key("nvidia.com/gpu"));
    let keys: Vec<_> = pod(&nv)
        .tolerations
        .iter()
        .flatten()
        .filter_map(|t| t.key.clone())
        .collect();
    assert_eq!(keys, ["nvidia.com/gpu", "gpu-node"]);
    assert!(!env_of(c).contains_key("HSA_OVERRIDE_GFX_VERSION"));

    let cpu = deployment(&example("cpu-only.yaml"), false);
    let c = &pod(&cpu).containers[0];
    let limits = c.resources.as_ref().unwrap().limits.as_ref().unwrap();
    assert!(!limits.keys().any(|k| k.contains("gpu")), "{limits:?}");
    assert!(pod(&cpu).tolerations.is_none());
}

#[test]
fn pvc_holds_the_models() {
    let p = pvc(&example("nvidia-gpu.yaml"), None).spec.unwrap();
    assert_eq!(
        p.resources.unwrap().requests.unwrap()["storage"],
        Quantity("40Gi".into())
    );
    assert_eq!(p.storage_class_name.as_deref(), Some("local-path"));
    assert_eq!(p.access_modes.unwrap(), ["ReadWriteOnce"]);
}

#[test]
fn an_existing_claim_only_grows_and_keeps_its_class() {
    let lw = example("nvidia-gpu.yaml"); // 40Gi, local-path
    let request = |p: &PersistentVolumeClaim| {
        p.spec
            .as_ref()
            .unwrap()
            .resources
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap()["storage"]
            .clone()
    };
    let class = |p: &PersistentVolumeClaim| p.spec.as_ref().unwrap().storage_class_name.clone();
    let claim = |size: &str, class: Option<&str>| ExistingClaim {
        size: Some(size.into()),
        storage_class_name: class.map(Into::into),
    };
    // Larger claim (e.g. grown by hand, or the spec shrunk): kept, and reported.
    let big = claim("100Gi", Some("local-path"));
    assert_eq!(request(&pvc(&lw, Some(&big))), Quantity("100Gi".into()));
    assert!(refused_storage_change(&lw, Some(&big))
        .unwrap()
        .contains("cannot shrink"));
    // Smaller claim: the spec grows it, nothing refused.
    let small = claim("20Gi", Some("local-path"));
    assert_eq!(request(&pvc(&lw, Some(&small))), Quantity("40Gi".into()));
    assert_eq!(refused_storage_change(&lw, Some(&small)), None);
    // The same size in other units is no shrink.
    assert_eq!(
        refused_storage_change(&lw, Some(&claim("40960Mi", Some("local-path")))),
        None
    );
    // Another class: the claim keeps its own.
    let other = claim("40Gi", Some("fast"));
    assert_eq!(class(&pvc(&lw, Some(&other))).as_deref(), Some("fast"));
    assert!(refused_storage_change(&lw, Some(&other))
        .unwrap()
        .contains("immutable"));
    // No class in the spec, the default class filled in by the API server: not a change.
    let mut no_class = lw.clone();
    no_class.spec.ollama.storage.storage_class_name = None;
    let defaulted = claim("40Gi", Some("standard"));
    assert_eq!(
        class(&pvc(&no_class, Some(&defaulted))).as_deref(),
        Some("standard")
    );
    assert_eq!(refused_storage_change(&no_class, Some(&defaulted)), None);
    // No claim yet: the spec as it is.
    assert_eq!(class(&pvc(&lw, None)).as_deref(), Some("local-path"));
    assert_eq!(refused_storage_change(&lw, None), None);
}

#[test]
fn pull_job_pulls_only_the_given_models_as_arguments() {
    let lw = example("autoscaling.yaml");
    assert_eq!(
        required_models(&lw),
        ["qwen2.5vl:3b", "gpt-oss:latest", "llama3.2:3b"]
    );
    let missing = vec!["llama3.2:3b".to_owned()];
    let job = model_pull_job(&lw, &missing);
    let name = job.metadata.name.clone().unwrap();
    assert!(
        name.starts_with("school-e-model-pull-") && name.len() == "school-e-model-pull-".len() + 10,
        "{name}"
    );
    let c = &job
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    assert_eq!(c.args.as_ref().unwrap(), &["model-pull", "llama3.2:3b"]);
    assert!(
        !c.command.as_ref().unwrap()[2].contains("llama3.2"),
        "models are never part of the script"
    );
    assert_eq!(env_of(c)["OLLAMA_HOST"], "http://school-e-ollama:11434");
    let resources = c.resources.as_ref().unwrap();
    assert!(
        resources
            .limits
            .as_ref()
            .unwrap()
            .keys()
            .all(|k| k == "memory"),
        "the pull needs no GPU: {resources:?}"
    );
    assert!(resources.requests.as_ref().unwrap().contains_key("cpu"));
    // Another list, another Job; the same list, the same Job.
    let name_of =
        |lw: &LearningWorker, models: &[String]| model_pull_job(lw, models).metadata.name.unwrap();
    assert_ne!(name_of(&lw, &missing), name_of(&lw, &["x".into()]));
    assert_eq!(name_of(&lw, &missing), name_of(&lw, &missing));
}

#[test]
fn any_change_of_the_pull_pod_gives_a_new_job_name() {
    // A Job's pod template is immutable: a changed template under the old name would be
    // refused by the API server and block the apply.
    let lw = example("amd-gpu.yaml");
    let models = vec!["gpt-oss:20b".to_owned()];
    let name = |lw: &LearningWorker| model_pull_job(lw, &models).metadata.name.unwrap();
    let before = name(&lw);
    let mut moved = lw.clone();
    moved
        .spec
        .ollama
        .node_selector
        .get_or_insert_with(BTreeMap::new)
        .insert("gustav.dev/pool".into(), "b".into());
    let mut other_user = lw.clone();
    other_user.spec.ollama.run_as_user = 2000;
    let mut tolerant = lw.clone();
    tolerant.spec.ollama.tolerations = Some(vec![Toleration {
        key: Some("x".into()),
        operator: Some("Exists".into()),
        ..Toleration::default()
    }]);
    for changed in [moved, other_user, tolerant] {
        assert_ne!(name(&changed), before);
    }
}

#[test]
fn extra_env_comes_after_the_operators_own() {
    let mut lw = example("amd-gpu.yaml");
    lw.spec.ollama.env = Some(vec![k8s_openapi::api::core::v1::EnvVar {
        name: "OLLAMA_FLASH_ATTENTION".into(),
        value: Some("1".into()),
        value_from: None,
    }]);
    let d = deployment(&lw, false);
    let names: Vec<String> = pod(&d).containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(
        names.last().map(String::as_str),
        Some("OLLAMA_FLASH_ATTENTION")
    );
    assert!(names.contains(&"OLLAMA_HOST".to_owned()));
}

#[test]
fn a_released_gpu_means_no_ollama_pod_and_the_same_pod_template() {
    let lw = example("amd-gpu.yaml");
    let running = deployment(&lw, false);
    let released = deployment(&lw, true);
    let replicas = |d: &Deployment| d.spec.as_ref().and_then(|s| s.replicas);
    assert_eq!(
        (replicas(&running), replicas(&released)),
        (Some(1), Some(0))
    );
    // Only the count changes: waking up starts the same pod (models on the same volume).
    assert_eq!(pod(&running), pod(&released));
}
