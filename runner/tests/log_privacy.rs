//! Contract case 11: no log line at any level contains the student's text, a storage key or
//! the student's id. Alone in its test binary, so the capturing subscriber sees every event
//! (tracing caches per-callsite interest across threads of one process).

mod common;

use common::capture::Capture;

use learning_runner::ai::AdapterError;
use learning_runner::db::queue;
use learning_tests::fixtures::{self, NewSubmission};
use learning_tests::TestDb;

use common::{context, run_until_drained, Script, Scripted};

fn timeout_error() -> AdapterError {
    AdapterError::transient("timeout", "model did not answer in time")
}

#[test]
fn case_11_no_log_line_contains_student_text_storage_keys_or_student_ids() {
    let capture = Capture::default();
    let _guard = capture.install();

    let secret_text = "GEHEIMER-SCHUELERTEXT-4711";
    let student = "student-sub-PII-0815";
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let image_key = runtime.block_on(async {
        let db = TestDb::new().await;
        // Default sqlx options: statement logging on, as in the runner binary.
        let pool = sqlx::PgPool::connect(&db.worker_url()).await.unwrap();
        let adapters = Scripted::with(
            vec![Script::Fail(timeout_error())],
            vec![Script::Fail(timeout_error())],
        );
        let ctx = context(&pool, adapters.adapters());
        fixtures::enqueue(&db.admin, &NewSubmission::text(student, secret_text)).await;
        let image = NewSubmission::image(student);
        fixtures::enqueue(&db.admin, &image).await;
        let summary = {
            // Retries happen after the backoff: make them visible, then let the loop finish.
            for _ in 0..2 {
                let jobs = queue::lease_jobs(&pool, 10, common::LEASE).await.unwrap();
                for job in jobs {
                    learning_runner::job::process::process_job(
                        &ctx,
                        job,
                        learning_runner::job::process::Running::WithOthers,
                    )
                    .await;
                }
                fixtures::make_all_visible(&db.admin).await;
            }
            run_until_drained(&pool, ctx.clone(), 2).await
        };
        assert_eq!(
            fixtures::submission_count(&db.admin, "completed").await,
            2,
            "{summary:?}"
        );
        image.storage_key.unwrap()
    });

    let logs = capture.text();
    assert!(logs.lines().count() > 10, "logging was captured:\n{logs}");
    assert!(logs.contains("learning.job.completed"));
    for forbidden in [secret_text, student, image_key.as_str()] {
        assert!(
            !logs.contains(forbidden),
            "a log line contains {forbidden:?}"
        );
    }
}
