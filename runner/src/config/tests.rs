//! Tests of the whole configuration: defaults, and each setting refused with its variable named.

use super::*;
use crate::cli::Cli;
use clap::Parser;
use std::time::Duration;

fn settings(args: &[&str]) -> Settings {
    let mut argv = vec![
        "learning-runner",
        "--database-url",
        "postgres://gustav_worker:pw@localhost/gustav",
    ];
    argv.extend_from_slice(args);
    Cli::try_parse_from(argv).unwrap().settings
}

fn problem(args: &[&str]) -> String {
    runner_config(&settings(args)).unwrap_err().to_string()
}

#[test]
fn defaults_follow_the_contract() {
    let c = runner_config(&settings(&[])).unwrap();
    assert_eq!(c.ai.backend, Backend::Stub);
    assert_eq!(c.ai.ollama_base_url, "http://ollama:11434");
    assert_eq!(c.ai.vision_model, "qwen2.5vl:3b");
    assert_eq!(c.ai.feedback_model, "gpt-oss:latest");
    assert_eq!(c.ai.timeout_vision, Duration::from_secs(30));
    assert_eq!(c.ai.timeout_feedback, Duration::from_secs(15));
    assert!(c.ai.structured_output);
    assert_eq!(c.worker.max_retries, 3);
    assert_eq!(c.worker.backoff.base, Duration::from_secs(10));
    assert_eq!(c.worker.lease_duration, Duration::from_secs(180));
    assert_eq!(c.worker.heartbeat_interval, Duration::from_secs(45));
    assert_eq!(c.worker.concurrency, 1);
    assert_eq!(c.worker.poll_interval, Duration::from_millis(500));
    assert_eq!(c.storage.bucket, "submissions");
    assert_eq!(c.database.max_connections, 5);
}

#[test]
fn timeouts_must_lie_in_1_to_300() {
    assert!(problem(&["--ai-timeout-vision", "0"]).starts_with("AI_TIMEOUT_VISION"));
    assert!(problem(&["--ai-timeout-feedback", "301"]).starts_with("AI_TIMEOUT_FEEDBACK"));
    assert!(runner_config(&settings(&["--ai-timeout-vision", "300"])).is_ok());
}

#[test]
fn model_slots_default_to_the_concurrency_and_are_bounded() {
    let c = runner_config(&settings(&["--worker-concurrency", "3"])).unwrap();
    assert_eq!(c.ai.max_parallel_calls, 3);
    let c = runner_config(&settings(&[
        "--worker-concurrency",
        "4",
        "--ai-max-parallel-calls",
        "1",
    ]))
    .unwrap();
    assert_eq!(c.ai.max_parallel_calls, 1);
    assert!(problem(&["--ai-max-parallel-calls", "0"]).starts_with("AI_MAX_PARALLEL_CALLS"));
    assert!(problem(&["--ai-max-parallel-calls", "257"]).starts_with("AI_MAX_PARALLEL_CALLS"));
    let c = runner_config(&settings(&["--worker-concurrency", "300"])).unwrap();
    assert_eq!(
        c.ai.max_parallel_calls, 300,
        "an unset limit never refuses a valid concurrency"
    );
}

#[test]
fn the_phase_wait_is_two_minutes_by_default_and_bounded() {
    let c = runner_config(&settings(&[])).unwrap();
    assert_eq!(c.ai.max_phase_wait, Duration::from_secs(120));
    let c = runner_config(&settings(&["--ai-max-phase-wait-seconds", "0"])).unwrap();
    assert_eq!(
        c.ai.max_phase_wait,
        Duration::ZERO,
        "first come, first served"
    );
    let c = runner_config(&settings(&["--ai-max-phase-wait-seconds", "60"])).unwrap();
    assert_eq!(c.ai.max_phase_wait, Duration::from_secs(60));
    assert!(
        problem(&["--ai-max-phase-wait-seconds", "3601"]).starts_with("AI_MAX_PHASE_WAIT_SECONDS")
    );
}

#[test]
fn generations_are_bounded_per_step_with_defaults_and_a_range() {
    let c = runner_config(&settings(&[])).unwrap();
    assert_eq!(
        (
            c.ai.num_predict.vision,
            c.ai.num_predict.analysis,
            c.ai.num_predict.feedback
        ),
        (4096, 4096, 2048)
    );
    let c = runner_config(&settings(&["--ai-num-predict-feedback", "64"])).unwrap();
    assert_eq!(c.ai.num_predict.feedback, 64);
    assert!(problem(&["--ai-num-predict-vision", "63"]).starts_with("AI_NUM_PREDICT_VISION"));
    assert!(problem(&["--ai-num-predict-analysis", "40000"]).starts_with("AI_NUM_PREDICT_ANALYSIS"));
}

#[test]
fn unknown_backends_are_refused() {
    assert!(problem(&["--ai-backend", "openai"]).contains("unknown backend 'openai'"));
}

#[test]
fn stub_is_refused_in_production() {
    for env in ["prod", "Production", "stage", "staging"] {
        assert!(problem(&["--gustav-env", env]).contains("refused"), "{env}");
    }
    assert!(runner_config(&settings(&["--gustav-env", "dev"])).is_ok());
    let root = std::env::temp_dir().display().to_string();
    assert!(runner_config(&settings(&[
        "--gustav-env",
        "prod",
        "--ai-backend",
        "local",
        "--storage-verify-root",
        &root
    ]))
    .is_ok());
}

#[test]
fn public_ollama_hosts_are_refused() {
    assert!(problem(&["--ollama-base-url", "https://ollama.example.com"]).contains("not local"));
    // Two labels are a public domain, not a namespace: only `.svc` names count.
    assert!(problem(&["--ollama-base-url", "http://ollama.ai:11434"]).contains("not local"));
}

#[test]
fn a_shared_ollama_in_another_namespace_is_accepted_by_its_cluster_dns_name() {
    for url in [
        "http://ollama.ai-shared.svc:11434",
        "http://ollama.ai-shared.svc.cluster.local:11434/",
    ] {
        let c = runner_config(&settings(&["--ollama-base-url", url])).unwrap();
        assert_eq!(c.ai.ollama_base_url, url.trim_end_matches('/'));
    }
}

#[test]
fn superuser_dsn_needs_the_override() {
    let s = Cli::try_parse_from([
        "learning-runner",
        "--database-url",
        "postgres://postgres@localhost/db",
    ])
    .unwrap()
    .settings;
    assert!(runner_config(&s)
        .unwrap_err()
        .to_string()
        .contains("privileged"));
    let allowed = Cli::try_parse_from([
        "learning-runner",
        "--database-url",
        "postgres://postgres@localhost/db",
        "--allow-superuser-dsn",
        "true",
    ])
    .unwrap()
    .settings;
    assert!(runner_config(&allowed).is_ok());
}

#[test]
fn debug_output_never_contains_the_password() {
    let s = Cli::try_parse_from([
        "learning-runner",
        "--database-url",
        "postgres://gustav_worker:hunter2@db/gustav",
    ])
    .unwrap()
    .settings;
    let config = runner_config(&s).unwrap();
    assert!(!format!("{config:?}").contains("hunter2"));
}

#[test]
fn concurrency_is_not_capped_at_four() {
    let c = runner_config(&settings(&["--worker-concurrency", "32"])).unwrap();
    assert_eq!(c.worker.concurrency, 32);
    assert!(problem(&["--worker-concurrency", "0"]).starts_with("WORKER_CONCURRENCY"));
}

#[test]
fn think_level_applies_only_to_gpt_oss() {
    let c = runner_config(&settings(&["--ai-think-level", "high"])).unwrap();
    assert_eq!(c.ai.think_level, Some(ThinkLevel::High));
    assert!(c.warnings.is_empty());
    let other = runner_config(&settings(&[
        "--ai-think-level",
        "high",
        "--ai-feedback-model",
        "llama3.1:8b",
    ]))
    .unwrap();
    assert_eq!(other.ai.think_level, None);
    assert_eq!(
        think_level(None, "GPT-OSS:20b"),
        (Some(ThinkLevel::Low), None),
        "unset means low, the prefix is matched in any case"
    );
    assert_eq!(
        think_level(Some("  "), "gpt-oss:latest").0,
        Some(ThinkLevel::Low)
    );
}

#[test]
fn an_unknown_think_level_falls_back_to_low_with_a_warning() {
    let c = runner_config(&settings(&["--ai-think-level", "max"])).unwrap();
    assert_eq!(c.ai.think_level, Some(ThinkLevel::Low));
    assert_eq!(c.warnings.len(), 1);
    assert!(
        c.warnings[0].starts_with("AI_THINK_LEVEL='max'"),
        "{:?}",
        c.warnings
    );
}

#[test]
fn the_json_adapter_setting_is_read_as_gustav_reads_it() {
    for (raw, on) in [
        (None, true),
        (Some("1"), true),
        (Some(" TRUE "), true),
        (Some("yes"), true),
        (Some("On"), true),
        (Some("default"), false),
        (Some("false"), false),
        (Some("0"), false),
        (Some(""), false),
        (Some("jsonadapter"), false),
    ] {
        assert_eq!(structured_output(raw).0, on, "{raw:?}");
    }
    assert!(
        structured_output(Some("default")).1.is_none(),
        "the runbook's value is no warning"
    );
    assert!(structured_output(Some("jsonadapter")).1.is_some());
    let c = runner_config(&settings(&["--learning-dspy-json-adapter", "default"])).unwrap();
    assert!(!c.ai.structured_output);
    assert!(c.warnings.is_empty());
    assert!(runner_config(&settings(&[])).unwrap().ai.structured_output);
    assert!(
        runner_config(&settings(&["--learning-dspy-json-adapter"]))
            .unwrap()
            .ai
            .structured_output
    );
}

#[test]
fn keep_alive_takes_ollama_durations() {
    assert_eq!(
        runner_config(&settings(&["--ollama-keep-alive", "30m"]))
            .unwrap()
            .ai
            .keep_alive
            .as_deref(),
        Some("30m")
    );
    assert!(runner_config(&settings(&["--ollama-keep-alive", "-1"])).is_ok());
    assert!(problem(&["--ollama-keep-alive", "soon"]).starts_with("OLLAMA_KEEP_ALIVE"));
    assert!(problem(&["--ollama-keep-alive", "5mh"]).starts_with("OLLAMA_KEEP_ALIVE"));
}

#[test]
fn the_local_backend_needs_a_place_to_read_files_from() {
    assert!(
        problem(&["--ai-backend", "local"]).contains("AI_BACKEND=local needs the submission files")
    );
    let root = std::env::temp_dir().display().to_string();
    assert!(runner_config(&settings(&[
        "--ai-backend",
        "local",
        "--storage-verify-root",
        &root
    ]))
    .is_ok());
    assert!(problem(&["--storage-verify-root", "/nonexistent/lr-root"])
        .starts_with("STORAGE_VERIFY_ROOT"));
    let remote = [
        "--ai-backend",
        "local",
        "--supabase-url",
        "http://kong:8000",
        "--supabase-service-role-key",
        "k",
    ];
    assert!(runner_config(&settings(&remote)).is_ok());
}

#[test]
fn supabase_settings_and_bucket_names_are_checked() {
    assert!(problem(&[
        "--supabase-url",
        "http://kong:8000/storage",
        "--supabase-service-role-key",
        "k"
    ])
    .starts_with("SUPABASE_URL"));
    assert!(
        problem(&["--supabase-url", "http://kong:8000"]).starts_with("SUPABASE_SERVICE_ROLE_KEY")
    );
    assert!(problem(&["--learning-storage-bucket", "a/b"]).starts_with("LEARNING_STORAGE_BUCKET"));
    assert!(
        problem(&["--learning-storage-bucket", "my bucket"]).starts_with("LEARNING_STORAGE_BUCKET")
    );
}

#[test]
fn bad_listen_address_is_named() {
    assert!(problem(&["--http-addr", "nowhere"]).starts_with("LEARNING_HTTP_ADDR"));
}

#[test]
fn backoff_cap_must_not_undercut_the_base() {
    assert!(problem(&[
        "--worker-backoff-seconds",
        "100",
        "--worker-backoff-max-seconds",
        "10"
    ])
    .starts_with("WORKER_BACKOFF_MAX_SECONDS"));
}
