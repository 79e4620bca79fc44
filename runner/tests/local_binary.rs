//! The binary with `AI_BACKEND=local` against a FAKE Ollama: the health report's `ollama` and
//! `models` checks, readiness, GPU offload in health and metrics, and `preflight`.

mod common;

use std::time::Duration;

use learning_tests::fake_ollama::{Endpoint, FakeAnswer, FakeOllama};
use learning_tests::TestDb;

use common::local::{fake_with_models, FEEDBACK_MODEL, VISION_MODEL};
use common::process::{
    base_env, free_port, http_get, sigterm, spawn, start_runner, wait_with_limit,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_report_ollama_models_and_gpu_offload() {
    let db = TestDb::new().await;
    let fake = fake_with_models().await;
    fake.set_ps(vec![
        (VISION_MODEL.into(), 1000, 1000),
        (FEEDBACK_MODEL.into(), 1000, 400),
    ]);
    let base = fake.base_url();
    let mut r = start_runner(
        &db,
        &[("AI_BACKEND", "local"), ("OLLAMA_BASE_URL", base.as_str())],
    );

    let health = http_get(&r.http, "/internal/health/learning-worker", None).unwrap();
    assert_eq!(health.status, 200, "{}", health.body);
    let report: serde_json::Value = serde_json::from_str(&health.body).unwrap();
    let checks = report["checks"].as_array().unwrap();
    let find = |name: &str| checks.iter().find(|c| c["check"] == name).cloned().unwrap();
    assert_eq!(find("ollama")["status"], "ok");
    assert!(find("ollama")["detail"]
        .as_str()
        .unwrap()
        .contains("gpt-oss:latest 40% GPU (partial CPU fallback)"));
    assert_eq!(find("models")["status"], "ok");
    assert_eq!(http_get(&r.http, "/readyz", None).unwrap().status, 200);
    let metrics = http_get(&r.http, "/metrics", None).unwrap().body;
    assert!(
        metrics.contains("learning_runner_ollama_gpu_offload_ratio{model=\"gpt-oss:latest\"} 0.4"),
        "{metrics}"
    );
    assert!(metrics.contains("learning_runner_ollama_up 1"));
    assert!(
        metrics.contains("learning_runner_build_info{backend=\"local\""),
        "{metrics}"
    );
    sigterm(&r.child);
    wait_with_limit(&mut r.child, Duration::from_secs(15));

    // A missing model: degraded, unready, and the fix is named.
    let bare = FakeOllama::start().await;
    bare.add_model(VISION_MODEL);
    let bare_url = bare.base_url();
    let mut r = start_runner(
        &db,
        &[
            ("AI_BACKEND", "local"),
            ("OLLAMA_BASE_URL", bare_url.as_str()),
        ],
    );
    let health = http_get(&r.http, "/internal/health/learning-worker", None).unwrap();
    assert_eq!(health.status, 503);
    assert!(
        health.body.contains("missing: gpt-oss:latest"),
        "{}",
        health.body
    );
    assert_eq!(http_get(&r.http, "/readyz", None).unwrap().status, 503);
    sigterm(&r.child);
    wait_with_limit(&mut r.child, Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_models_are_pulled_at_start_when_configured() {
    let db = TestDb::new().await;
    let fake = FakeOllama::start().await;
    let base = fake.base_url();
    let mut r = start_runner(
        &db,
        &[
            ("AI_BACKEND", "local"),
            ("OLLAMA_BASE_URL", base.as_str()),
            ("OLLAMA_PULL_MISSING", "true"),
        ],
    );
    common::process::eventually(Duration::from_secs(10), "both models pulled", || async {
        http_get(&r.http, "/readyz", None)
            .map(|h| h.status == 200)
            .unwrap_or(false)
    })
    .await;
    let pulls: Vec<String> = fake
        .requests_to("/api/pull")
        .iter()
        .map(|b| b["model"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(pulls, [VISION_MODEL, FEEDBACK_MODEL]);
    sigterm(&r.child);
    wait_with_limit(&mut r.child, Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_passes_on_a_healthy_setup_and_names_the_fix_otherwise() {
    let db = TestDb::new().await;
    let fake = fake_with_models().await;
    fake.set_ps(vec![(FEEDBACK_MODEL.into(), 1000, 1000)]);
    fake.default_answer(
        Endpoint::Chat,
        FEEDBACK_MODEL,
        FakeAnswer::Text("OK".into()),
    );
    fake.script(
        Endpoint::Chat,
        FEEDBACK_MODEL,
        vec![
            FakeAnswer::Text("OK".into()),
            FakeAnswer::Text(common::local::analysis_answer(
                &["Fachliche Richtigkeit", "Struktur"],
                8,
            )),
            FakeAnswer::Text("Gut.".into()),
        ],
    );
    let base = fake.base_url();
    let env = base_env(&db, free_port());
    let mut ok = spawn(
        &env,
        &[("AI_BACKEND", "local"), ("OLLAMA_BASE_URL", base.as_str())],
        &["preflight", "--with-test-submission"],
    );
    let (status, out, err) = wait_with_limit(&mut ok, Duration::from_secs(60));
    assert!(status.success(), "{out}\n{err}");
    for line in [
        "✔ configuration — backend=local",
        "✔ database reachable — connected as gustav_worker",
        "✔ role not privileged",
        "✔ queue schema",
        "✔ health probe — db_role ok",
        "✔ ollama reachable",
        "✔ models present",
        "✔ generate round trip — gpt-oss:latest answered",
        "ran on the GPU (100%)",
        "✔ test submission",
        "preflight: all checks passed",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert!(
        !out.contains("worker-test-password"),
        "the password is masked"
    );

    let bare = FakeOllama::start().await;
    bare.add_model(VISION_MODEL);
    let bare_url = bare.base_url();
    let mut bad = spawn(
        &env,
        &[
            ("AI_BACKEND", "local"),
            ("OLLAMA_BASE_URL", bare_url.as_str()),
        ],
        &["preflight"],
    );
    let (status, out, _) = wait_with_limit(&mut bad, Duration::from_secs(60));
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(
        out.contains("✘ models present — missing: gpt-oss:latest"),
        "{out}"
    );
    assert!(out.contains("fix: ollama pull gpt-oss:latest"), "{out}");
    assert!(out.contains("– generate round trip — skipped"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_with_the_stub_skips_the_ollama_checks_and_passes() {
    let db = TestDb::new().await;
    let env = base_env(&db, free_port());
    let mut p = spawn(&env, &[], &["preflight", "--with-test-submission"]);
    let (status, out, err) = wait_with_limit(&mut p, Duration::from_secs(60));
    assert!(status.success(), "{out}\n{err}");
    assert!(
        out.contains("– ollama reachable — skipped: AI_BACKEND=stub"),
        "{out}"
    );
    assert!(out.contains("✔ test submission"), "{out}");

    let dead = format!(
        "postgres://gustav_worker:x@127.0.0.1:{}/nowhere",
        free_port()
    );
    let mut down = spawn(
        &env,
        &[("LEARNING_DATABASE_URL", dead.as_str())],
        &["preflight"],
    );
    let (status, out, _) = wait_with_limit(&mut down, Duration::from_secs(60));
    assert_eq!(status.code(), Some(1));
    assert!(out.contains("✘ database reachable"), "{out}");
    // Refused at once, or — when another test's process took the free port meanwhile and
    // does not speak PostgreSQL — no answer within the deadline: either way a fix is named.
    assert!(
        out.contains("fix: check host, port, database and password")
            || out.contains("fix: check the network path to PostgreSQL"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_ollama_down_jobs_wait_in_the_queue_untouched() {
    let db = TestDb::new().await;
    let (sub, job) = learning_tests::fixtures::enqueue(
        &db.admin,
        &learning_tests::fixtures::NewSubmission::text("s1", "x"),
    )
    .await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    let mut r = start_runner(
        &db,
        &[("AI_BACKEND", "local"), ("OLLAMA_BASE_URL", dead.as_str())],
    );
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let j = learning_tests::fixtures::job(&db.admin, job).await.unwrap();
    assert_eq!((j.status.as_str(), j.retry_count), ("queued", 0));
    let s = learning_tests::fixtures::submission(&db.admin, sub).await;
    assert_eq!((s.status.as_str(), s.error_code), ("pending", None));
    assert_eq!(http_get(&r.http, "/readyz", None).unwrap().status, 503);
    sigterm(&r.child);
    let (status, _, err) = wait_with_limit(&mut r.child, Duration::from_secs(15));
    assert!(status.success(), "{err}");
    assert!(
        err.contains("learning.worker.paused"),
        "the pause is logged"
    );
}
