//! The acceptance cases of the GUSTAV contract (§10, 1–13), against a real PostgreSQL, with the
//! runner connected as the `gustav_worker` login role.

mod common;

use std::sync::atomic::Ordering;

use learning_runner::ai::stub::stub_transcript;
use learning_runner::ai::AdapterError;
use learning_runner::db::queue;
use learning_runner::http::health;
use learning_runner::job::analysis::AnalysisV2;
use learning_runner::job::process::JobOutcome;
use learning_tests::fixtures::{self, NewSubmission};
use learning_tests::TestDb;
use serde_json::json;

use common::{context, process_next, run_until_drained, Script, Scripted};

fn timeout_error() -> AdapterError {
    AdapterError::transient("timeout", "model did not answer in time")
}

#[tokio::test]
async fn case_01_image_with_the_stub_completes() {
    let db = TestDb::new().await;
    let pool = db.worker_pool(4).await;
    let adapters = Scripted::stub();
    let ctx = context(&pool, adapters.adapters());
    let (sub, job) = fixtures::enqueue(&db.admin, &NewSubmission::image("s1")).await;

    assert_eq!(process_next(&ctx).await, JobOutcome::Completed);

    let s = fixtures::submission(&db.admin, sub).await;
    assert_eq!(s.status, "completed");
    assert_eq!(s.text_body.as_deref(), Some(stub_transcript(sub).as_str()));
    assert_eq!(s.vision_attempts, 1);
    assert_eq!(
        (s.error_code, s.vision_last_error, s.feedback_last_error),
        (None, None, None)
    );
    assert!(s.completed);
    assert!(fixtures::job(&db.admin, job).await.is_none(), "job deleted");
    let analysis: AnalysisV2 = serde_json::from_value(s.analysis_json.unwrap()).unwrap();
    assert_eq!(analysis.schema, "criteria.v2");
    analysis.validate(&["Rechenweg".into()]).unwrap();
    assert_eq!(adapters.vision_count(), 1);
}

#[tokio::test]
async fn case_02_transient_vision_error_requeues_with_backoff() {
    let db = TestDb::new().await;
    let pool = db.worker_pool(4).await;
    let adapters = Scripted::with(vec![Script::Fail(timeout_error())], vec![]);
    let ctx = context(&pool, adapters.adapters());
    let (sub, job) = fixtures::enqueue(&db.admin, &NewSubmission::image("s1")).await;

    assert_eq!(process_next(&ctx).await, JobOutcome::Retried);

    let j = fixtures::job(&db.admin, job).await.unwrap();
    assert_eq!(
        (j.status.as_str(), j.retry_count, j.leased),
        ("queued", 1, false)
    );
    assert!(
        j.visible_in_seconds >= 9.5,
        "visible_at ≥ now + 10 s backoff, got {}",
        j.visible_in_seconds
    );
    let s = fixtures::submission(&db.admin, sub).await;
    assert_eq!(
        (s.status.as_str(), s.error_code.as_deref()),
        ("pending", Some("vision_retrying"))
    );
    assert_eq!(
        s.vision_last_error.as_deref(),
        Some("model did not answer in time")
    );
    assert_eq!(s.vision_attempts, 1);
}

#[tokio::test]
async fn case_03_retries_used_up_fail_the_job_and_submission() {
    let db = TestDb::new().await;
    let pool = db.worker_pool(4).await;
    let adapters = Scripted::with(vec![Script::Fail(timeout_error()); 4], vec![]);
    let ctx = context(&pool, adapters.adapters());
    let (sub, job) = fixtures::enqueue(&db.admin, &NewSubmission::image("s1")).await;

    for attempt in 0..3 {
        assert_eq!(
            process_next(&ctx).await,
            JobOutcome::Retried,
            "attempt {attempt}"
        );
        fixtures::make_all_visible(&db.admin).await;
    }
    assert_eq!(process_next(&ctx).await, JobOutcome::Failed);

    let j = fixtures::job(&db.admin, job).await.unwrap();
    assert_eq!(
        (j.status.as_str(), j.error_code.as_deref(), j.retry_count),
        ("failed", Some("vision_failed"), 3)
    );
    let s = fixtures::submission(&db.admin, sub).await;
    assert_eq!(
        (s.status.as_str(), s.error_code.as_deref()),
        ("failed", Some("vision_failed"))
    );
    assert_eq!(
        ctx.metrics
            .failed
            .with_label_values(&["vision_failed"])
            .get(),
        1
    );
    assert_eq!(ctx.metrics.retries.with_label_values(&["vision"]).get(), 3);
}

#[tokio::test]
async fn case_04_transient_feedback_error_leaves_vision_attempts_alone() {
    let db = TestDb::new().await;
    let pool = db.worker_pool(4).await;
    let adapters = Scripted::with(vec![], vec![Script::Fail(timeout_error())]);
    let ctx = context(&pool, adapters.adapters());
    let (sub, job) = fixtures::enqueue(&db.admin, &NewSubmission::text("s1", "Mein Aufsatz")).await;

    assert_eq!(process_next(&ctx).await, JobOutcome::Retried);

    let j = fixtures::job(&db.admin, job).await.unwrap();
    assert_eq!((j.status.as_str(), j.retry_count), ("queued", 1));
    assert!(j.visible_in_seconds >= 9.5);
    let s = fixtures::submission(&db.admin, sub).await;
    assert_eq!(
        (s.status.as_str(), s.error_code.as_deref()),
        ("pending", Some("feedback_retrying"))
    );
    assert_eq!(
        s.feedback_last_error.as_deref(),
        Some("model did not answer in time")
    );
    assert_eq!(s.vision_attempts, 0);
}

#[tokio::test]
async fn case_05_permanent_feedback_error_fails_at_once() {
    let db = TestDb::new().await;
    let pool = db.worker_pool(4).await;
    let adapters = Scripted::with(
        vec![],
        vec![Script::Fail(AdapterError::permanent(
            "model_missing",
            "model not found",
        ))],
    );
    let ctx = context(&pool, adapters.adapters());
    let (sub, job) = fixtures::enqueue(&db.admin, &NewSubmission::text("s1", "x")).await;

    assert_eq!(process_next(&ctx).await, JobOutcome::Failed);

    let j = fixtures::job(&db.admin, job).await.unwrap();
    assert_eq!(
        (j.status.as_str(), j.retry_count, j.error_code.as_deref()),
        ("failed", 0, Some("feedback_failed"))
    );
    let s = fixtures::submission(&db.admin, sub).await;
    assert_eq!(
        (s.status.as_str(), s.error_code.as_deref()),
        ("failed", Some("feedback_failed"))
    );
    assert_eq!(s.feedback_last_error.as_deref(), Some("model not found"));
}

#[tokio::test]
async fn case_06_counters_move_and_the_inflight_gauge_returns_to_zero() {
    let db = TestDb::new().await;
    let pool = db.worker_pool(8).await;
    let adapters = Scripted::with(
        vec![],
        vec![
            Script::Fail(timeout_error()),
            Script::Fail(AdapterError::permanent("x", "y")),
        ],
    );
    let ctx = context(&pool, adapters.adapters());
    fixtures::enqueue(&db.admin, &NewSubmission::text("s1", "a")).await;
    assert_eq!(process_next(&ctx).await, JobOutcome::Retried);
    fixtures::make_all_visible(&db.admin).await;
    assert_eq!(process_next(&ctx).await, JobOutcome::Failed);
    fixtures::enqueue(&db.admin, &NewSubmission::text("s2", "b")).await;
    assert_eq!(process_next(&ctx).await, JobOutcome::Completed);

    let m = &ctx.metrics;
    assert_eq!(m.processed_count("completed"), 1);
    assert_eq!(m.processed_count("retried"), 1);
    assert_eq!(m.processed_count("failed"), 1);
    assert_eq!(m.retries.with_label_values(&["feedback"]).get(), 1);
    assert_eq!(m.failed.with_label_values(&["feedback_failed"]).get(), 1);
    assert_eq!(m.inflight.get(), 0);
    assert_eq!(
        m.job_duration
            .with_label_values(&["completed"])
            .get_sample_count(),
        1
    );
}

#[tokio::test]
async fn case_07_concurrency_n_processes_n_jobs_at_once() {
    let db = TestDb::new().await;
    let pool = db.worker_pool(12).await;
    // Two rounds of a 4-party barrier: the jobs can only get past it when exactly 4 run at
    // once (fewer would wait forever and hit the drain timeout; more would show in max_active).
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(4));
    let adapters = Scripted::with(vec![Script::Barrier(barrier); 8], vec![]);
    let ctx = context(&pool, adapters.adapters());
    for i in 0..8 {
        fixtures::enqueue(&db.admin, &NewSubmission::image(&format!("s{i}"))).await;
    }
    let summary = run_until_drained(&pool, ctx, 4).await;
    assert_eq!(summary.completed, 8);
    assert_eq!(
        adapters.max_active.load(Ordering::SeqCst),
        4,
        "exactly 4 jobs ran at once"
    );
    assert_eq!(fixtures::submission_count(&db.admin, "completed").await, 8);
}

#[tokio::test]
async fn case_08_extracted_submission_with_cached_text_skips_vision() {
    let db = TestDb::new().await;
    let pool = db.worker_pool(4).await;
    let adapters = Scripted::stub();
    let ctx = context(&pool, adapters.adapters());
    let mut s = NewSubmission::image("s1");
    s.analysis_status = "extracted";
    let sub = uuid::Uuid::new_v4();
    let payload = json!({"submission_id": sub, "student_sub": "s1", "kind": "image", "criteria": ["A"],
        "cached_text_md": "# Bereits erkannt", "cached_raw_metadata": {"model": "m"}});
    fixtures::enqueue_with_payload(&db.admin, &s, sub, payload).await;

    assert_eq!(process_next(&ctx).await, JobOutcome::Completed);
    assert_eq!(adapters.vision_count(), 0, "vision skipped");
    let row = fixtures::submission(&db.admin, sub).await;
    assert_eq!(row.status, "completed");
    assert_eq!(row.text_body.as_deref(), Some("# Bereits erkannt"));
}

#[tokio::test]
async fn case_08b_a_feedback_retry_reuses_the_cached_vision_result() {
    let db = TestDb::new().await;
    let pool = db.worker_pool(4).await;
    let adapters = Scripted::with(vec![], vec![Script::Fail(timeout_error())]);
    let ctx = context(&pool, adapters.adapters());
    let (sub, _) = fixtures::enqueue(&db.admin, &NewSubmission::image("s1")).await;
    assert_eq!(process_next(&ctx).await, JobOutcome::Retried);
    fixtures::make_all_visible(&db.admin).await;
    assert_eq!(process_next(&ctx).await, JobOutcome::Completed);
    assert_eq!(
        adapters.vision_count(),
        1,
        "vision ran once across both attempts"
    );
    assert_eq!(
        fixtures::submission(&db.admin, sub)
            .await
            .text_body
            .as_deref(),
        Some(stub_transcript(sub).as_str())
    );
}

#[tokio::test]
async fn case_09_a_crash_mid_job_puts_the_job_back_with_the_lease_cleared() {
    let db = TestDb::new().await;
    let pool = db.worker_pool(4).await;
    let adapters = Scripted::with(vec![Script::Panic], vec![]);
    let ctx = context(&pool, adapters.adapters());
    let (sub, job) = fixtures::enqueue(&db.admin, &NewSubmission::image("s1")).await;

    assert_eq!(
        process_next(&ctx).await,
        JobOutcome::Retried,
        "a panicking adapter is a transient error"
    );
    let j = fixtures::job(&db.admin, job).await.unwrap();
    assert_eq!(
        (j.status.as_str(), j.leased, j.has_lease_expiry),
        ("queued", false, false)
    );
    assert_eq!(ctx.metrics.inflight.get(), 0);
    fixtures::make_all_visible(&db.admin).await;
    assert_eq!(
        process_next(&ctx).await,
        JobOutcome::Completed,
        "the runner keeps working"
    );
    assert_eq!(
        fixtures::submission(&db.admin, sub).await.status,
        "completed"
    );
}

#[tokio::test]
async fn case_10_text_submissions_never_call_vision_and_are_stored_verbatim() {
    let db = TestDb::new().await;
    let pool = db.worker_pool(4).await;
    let adapters = Scripted::stub();
    let ctx = context(&pool, adapters.adapters());
    let text = "  Die Photosynthese wandelt Licht in Energie um.\n\n| a | b |\n";
    let (sub, _) = fixtures::enqueue(&db.admin, &NewSubmission::text("s1", text)).await;
    assert_eq!(process_next(&ctx).await, JobOutcome::Completed);
    assert_eq!(adapters.vision_count(), 0);
    assert_eq!(
        fixtures::submission(&db.admin, sub)
            .await
            .text_body
            .as_deref(),
        Some(text)
    );
    assert_eq!(
        adapters.feedback_texts.lock().unwrap().as_slice(),
        [text.to_owned()]
    );
}

// Case 11 (no student text in any log line) lives in `log_privacy.rs`: it installs a
// capturing subscriber and must not share its process with concurrently running tests.

#[tokio::test]
async fn case_12_update_completed_twice_is_a_no_op() {
    let db = TestDb::new().await;
    let pool = db.worker_pool(2).await;
    let (sub, _) = fixtures::enqueue(&db.admin, &NewSubmission::text("s1", "x")).await;
    for feedback in ["erste", "zweite"] {
        sqlx::query("select learning_worker_update_completed($1, $2, $3, $4::jsonb)")
            .bind(sub)
            .bind("t")
            .bind(feedback)
            .bind(json!({}))
            .execute(&pool)
            .await
            .expect("the second call is not an error");
    }
    let s = fixtures::submission(&db.admin, sub).await;
    assert_eq!(s.feedback_md.as_deref(), Some("erste"));
    assert_eq!(s.vision_attempts, 1);
}

#[tokio::test]
async fn case_13_health_probe_reports_a_missing_role_as_degraded() {
    let db = TestDb::new().await;
    let pool = db.worker_pool(2).await;
    let (role, checks) = queue::health_probe(&pool).await.unwrap();
    assert!(health::from_probe(role, checks).is_healthy());

    // Roles are cluster-wide: rename inside a transaction that is rolled back.
    let mut tx = db.admin.begin().await.unwrap();
    sqlx::query("alter role gustav_worker rename to gustav_worker_gone")
        .execute(&mut *tx)
        .await
        .unwrap();
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("select check_name, status, detail from learning_worker_health_probe()")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    tx.rollback().await.unwrap();
    let checks = rows
        .into_iter()
        .map(|(check, status, detail)| queue::ProbeCheck {
            check,
            status,
            detail,
        })
        .collect();
    let report = health::from_probe("postgres".into(), checks);
    assert_eq!(report.status, health::HealthState::Degraded);
    assert!(report
        .checks
        .iter()
        .any(|c| c.check == "db_role" && c.status == "failed"));
}

#[tokio::test]
async fn fencing_a_runner_whose_lease_was_taken_over_drops_its_result_and_counts_it() {
    let db = TestDb::new().await;
    let pool = db.worker_pool(4).await;
    let entered = std::sync::Arc::new(tokio::sync::Notify::new());
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let adapters = Scripted::with(vec![], vec![Script::Gate(entered.clone(), release.clone())]);
    let ctx = context(&pool, adapters.adapters());
    let (sub, job) = fixtures::enqueue(&db.admin, &NewSubmission::text("s1", "x")).await;
    let leased = queue::lease_jobs(&pool, 1, common::LEASE)
        .await
        .unwrap()
        .remove(0);
    let running = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            learning_runner::job::process::process_job(
                &ctx,
                leased,
                learning_runner::job::process::Running::WithOthers,
            )
            .await
        })
    };
    // While the model "runs", another runner takes the job over.
    entered.notified().await;
    sqlx::query("update learning_submission_jobs set lease_key = gen_random_uuid(), leased_until = now() + interval '1 minute' where id = $1")
        .bind(job)
        .execute(&db.admin)
        .await
        .unwrap();
    release.notify_one();
    let outcome = running.await.unwrap();
    assert_eq!(outcome, JobOutcome::LeaseLost);
    assert_eq!(ctx.metrics.lease_lost.get(), 1);
    assert_eq!(
        fixtures::job(&db.admin, job).await.unwrap().status,
        "leased",
        "the thief still holds it"
    );
    assert_eq!(
        fixtures::submission(&db.admin, sub).await.status,
        "pending",
        "nothing was written"
    );
}
