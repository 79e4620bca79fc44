//! The binary's interfaces: HTTP endpoints and headers, `/metrics` through `promtool`,
//! `healthcheck` and `migrate` subcommands, configuration errors, the DSN guard, and a full
//! run at TRACE level whose output must not contain student data or the DSN password.

mod common;

use std::process::Command;
use std::time::Duration;

use learning_tests::fixtures::{self, NewSubmission};
use learning_tests::{TestDb, WORKER_PASSWORD};

use common::process::{
    base_env, free_port, http_get, sigterm, spawn, start_runner, wait_with_limit,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoints_answer_with_the_contract_shapes_and_headers() {
    let db = TestDb::new().await;
    let mut r = start_runner(&db, &[("LEARNING_HEALTH_TOKEN", "tok-123")]);

    assert_eq!(http_get(&r.http, "/livez", None).unwrap().status, 200);
    assert_eq!(http_get(&r.http, "/readyz", None).unwrap().status, 200);

    let denied = http_get(&r.http, "/internal/health/learning-worker", None).unwrap();
    assert_eq!(denied.status, 401);
    assert_eq!(denied.header("www-authenticate"), Some("Bearer"));
    assert_eq!(denied.header("cache-control"), Some("private, no-store"));
    let wrong = http_get(&r.http, "/internal/health/learning-worker", Some("tok-124")).unwrap();
    assert_eq!(wrong.status, 401);

    let ok = http_get(&r.http, "/internal/health/learning-worker", Some("tok-123")).unwrap();
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.header("cache-control"), Some("private, no-store"));
    assert_eq!(ok.header("vary"), Some("Origin"));
    let report: serde_json::Value = serde_json::from_str(&ok.body).unwrap();
    assert_eq!(report["status"], "healthy");
    assert_eq!(report["currentRole"], "gustav_worker");
    assert_eq!(report["checks"][0]["check"], "db_role");
    assert_eq!(report["checks"][1]["check"], "queue_visibility");

    // The database goes away: the report says so with 503, readiness fails, liveness holds.
    sqlx::query(&format!(
        "revoke connect on database {} from public",
        db.name
    ))
    .execute(&db.admin)
    .await
    .unwrap();
    sqlx::query("select pg_terminate_backend(pid) from pg_stat_activity where usename = 'gustav_worker' and datname = current_database()")
        .execute(&db.admin)
        .await
        .unwrap();
    let down = http_get(&r.http, "/internal/health/learning-worker", Some("tok-123")).unwrap();
    assert_eq!(down.status, 503, "{}", down.body);
    assert_eq!(down.header("cache-control"), Some("private, no-store"));
    let report: serde_json::Value = serde_json::from_str(&down.body).unwrap();
    assert_eq!(report["status"], "degraded");
    assert_eq!(report["checks"][0]["detail"], "db_connect_failed");
    assert_eq!(http_get(&r.http, "/readyz", None).unwrap().status, 503);
    assert_eq!(http_get(&r.http, "/livez", None).unwrap().status, 200);
    sqlx::query(&format!("grant connect on database {} to public", db.name))
        .execute(&db.admin)
        .await
        .unwrap();

    sigterm(&r.child);
    let (status, _, err) = wait_with_limit(&mut r.child, Duration::from_secs(15));
    assert!(status.success(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_check_metrics() {
    let promtool = Command::new("promtool").arg("--version").output();
    assert!(
        promtool.map(|o| o.status.success()).unwrap_or(false),
        "promtool is not installed: run `make deps` (Debian package `prometheus`); this test cannot run without it"
    );
    let db = TestDb::new().await;
    fixtures::enqueue(&db.admin, &NewSubmission::text("s1", "x")).await;
    let mut r = start_runner(&db, &[]);
    common::process::eventually(Duration::from_secs(10), "the job completes", || async {
        fixtures::submission_count(&db.admin, "completed").await == 1
    })
    .await;
    let metrics = http_get(&r.http, "/metrics", None).unwrap();
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    assert!(
        metrics
            .body
            .contains("ai_worker_processed_total{status=\"completed\"} 1"),
        "{}",
        metrics.body
    );
    assert!(metrics.body.contains("analysis_jobs_inflight 0"));

    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    check
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.body.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    sigterm(&r.child);
    wait_with_limit(&mut r.child, Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_level_run_never_prints_student_data_or_the_password() {
    let db = TestDb::new().await;
    let secret_text = "VERTRAULICHER-AUFSATZ-9921";
    let student = "pii-student-sub-5512";
    fixtures::enqueue(&db.admin, &NewSubmission::text(student, secret_text)).await;
    let image = NewSubmission::image(student);
    fixtures::enqueue(&db.admin, &image).await;
    let mut faulty = NewSubmission::text(
        student,
        &format!("{secret_text} [[stub:feedback-transient-once]]"),
    );
    faulty.criteria = vec!["Kriterium".into()];
    fixtures::enqueue(&db.admin, &faulty).await;

    let env = base_env(&db, free_port());
    let mut child = spawn(
        &env,
        &[
            ("LOG_LEVEL", "trace"),
            ("WORKER_EXIT_WHEN_DRAINED", "true"),
            ("WORKER_BACKOFF_SECONDS", "0.2"),
        ],
        &[],
    );
    let (status, out, err) = wait_with_limit(&mut child, Duration::from_secs(60));
    assert!(status.success(), "{err}");
    assert!(out.contains("completed=3"), "{out}");
    assert!(err.lines().count() > 20, "trace logging was on:\n{err}");
    for forbidden in [
        secret_text,
        student,
        image.storage_key.as_deref().unwrap(),
        WORKER_PASSWORD,
    ] {
        assert!(
            !out.contains(forbidden) && !err.contains(forbidden),
            "output contains {forbidden:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_exits_zero_when_healthy_and_one_when_the_database_is_unreachable() {
    let db = TestDb::new().await;
    let env = base_env(&db, free_port());
    let mut ok = spawn(&env, &[], &["healthcheck"]);
    let (status, out, err) = wait_with_limit(&mut ok, Duration::from_secs(20));
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("\"status\":\"healthy\""), "{out}");

    let dead = format!(
        "postgres://gustav_worker:x@127.0.0.1:{}/nowhere",
        free_port()
    );
    let mut bad = spawn(
        &env,
        &[("LEARNING_DATABASE_URL", dead.as_str())],
        &["healthcheck"],
    );
    let (status, out, _) = wait_with_limit(&mut bad, Duration::from_secs(20));
    assert_eq!(status.code(), Some(1));
    assert!(out.contains("db_connect_failed"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_applies_to_an_empty_database_and_is_idempotent() {
    let db = TestDb::new().await;
    let name = format!("{}_empty", db.name);
    sqlx::query(&format!("create database {name}"))
        .execute(&db.admin)
        .await
        .unwrap();
    let admin_url = db
        .admin_url()
        .replace(&format!("/{}", db.name), &format!("/{name}"));
    let env = base_env(&db, free_port());
    for round in 0..2 {
        let mut m = spawn(
            &env,
            &[("LEARNING_DATABASE_URL", admin_url.as_str())],
            &["migrate"],
        );
        let (status, out, err) = wait_with_limit(&mut m, Duration::from_secs(60));
        assert!(status.success(), "round {round}: {out}{err}");
    }
    let check = sqlx::PgPool::connect(&admin_url).await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "select count(*) from pg_tables where schemaname = 'public' and tablename in ('learning_submissions', 'learning_submission_jobs')",
    )
    .fetch_one(&check)
    .await
    .unwrap();
    assert_eq!(tables, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_errors_name_the_variable_and_exit_2() {
    let db = TestDb::new().await;
    let env = base_env(&db, free_port());
    let cases: [(&str, &str, &str); 5] = [
        ("AI_TIMEOUT_VISION", "0", "AI_TIMEOUT_VISION"),
        ("AI_BACKEND", "cloud", "unknown backend 'cloud'"),
        ("OLLAMA_BASE_URL", "https://api.example.com", "is not local"),
        ("WORKER_CONCURRENCY", "0", "WORKER_CONCURRENCY"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT"),
    ];
    for (name, value, expected) in cases {
        let mut c = spawn(&env, &[(name, value)], &[]);
        let (status, _, err) = wait_with_limit(&mut c, Duration::from_secs(20));
        assert_eq!(status.code(), Some(2), "{name}={value}: {err}");
        assert!(err.contains(expected), "{name}={value}: {err}");
    }
    let mut prod = spawn(&env, &[("GUSTAV_ENV", "production")], &[]);
    let (status, _, err) = wait_with_limit(&mut prod, Duration::from_secs(20));
    assert_eq!(status.code(), Some(2));
    assert!(err.contains("'stub' is refused"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dsn_guard_refuses_privileged_logins() {
    let db = TestDb::new().await;
    let env = base_env(&db, free_port());
    let admin_url = db.admin_url();
    let mut by_name = spawn(&env, &[("LEARNING_DATABASE_URL", admin_url.as_str())], &[]);
    let (status, _, err) = wait_with_limit(&mut by_name, Duration::from_secs(20));
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("privileged role"), "{err}");

    // A superuser under another name is caught by the role check at start.
    let alias = format!("dba_{}", &db.name[4..16]);
    sqlx::query(&format!(
        "create role {alias} login superuser password 'alias-pw'"
    ))
    .execute(&db.admin)
    .await
    .unwrap();
    let alias_url = db.worker_url().replace(
        &format!("gustav_worker:{WORKER_PASSWORD}"),
        &format!("{alias}:alias-pw"),
    );
    let mut by_role = spawn(&env, &[("LEARNING_DATABASE_URL", alias_url.as_str())], &[]);
    let (status, _, err) = wait_with_limit(&mut by_role, Duration::from_secs(20));
    sqlx::query(&format!("drop role {alias}"))
        .execute(&db.admin)
        .await
        .unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("bypasses row-level security"), "{err}");
}
