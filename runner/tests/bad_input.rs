//! Bad input gets a defined, visible outcome and the runner keeps going: malformed payloads,
//! missing fields, unknown kinds, missing or invisible submission rows, a dead database.

mod common;

use std::time::Duration;

use learning_runner::job::process::JobOutcome;
use learning_tests::fixtures::{self, NewSubmission};
use learning_tests::TestDb;
use serde_json::{json, Value};
use uuid::Uuid;

use common::{context, process_next, run_until_drained, Scripted};

async fn enqueue_raw(
    db: &TestDb,
    submission: &NewSubmission,
    payload: impl FnOnce(Uuid) -> Value,
) -> (Uuid, Uuid) {
    let id = Uuid::new_v4();
    fixtures::enqueue_with_payload(&db.admin, submission, id, payload(id)).await
}

async fn assert_failed(db: &TestDb, sub: Uuid, job: Uuid, code: &str) {
    let j = fixtures::job(&db.admin, job)
        .await
        .expect("the failed job stays visible");
    assert_eq!(
        (j.status.as_str(), j.error_code.as_deref(), j.leased),
        ("failed", Some(code), false)
    );
    let s = fixtures::submission(&db.admin, sub).await;
    assert_eq!(
        (s.status.as_str(), s.error_code.as_deref()),
        ("failed", Some(code))
    );
    assert!(
        s.vision_last_error.is_some(),
        "the reason is recorded for the teacher"
    );
}

#[tokio::test]
async fn a_payload_that_is_not_an_object_fails_as_input_corrupt() {
    let db = TestDb::new().await;
    let pool = db.worker_pool(4).await;
    let ctx = context(&pool, Scripted::stub().adapters());
    let (sub, job) = enqueue_raw(&db, &NewSubmission::text("s1", "x"), |_| {
        json!(["not", "an", "object"])
    })
    .await;
    assert_eq!(process_next(&ctx).await, JobOutcome::Failed);
    assert_failed(&db, sub, job, "input_corrupt").await;
    let s = fixtures::submission(&db.admin, sub).await;
    assert!(s.vision_last_error.unwrap().contains("not a JSON object"));
}

#[tokio::test]
async fn a_payload_without_student_sub_fails_visibly_instead_of_staying_pending() {
    let db = TestDb::new().await;
    let pool = db.worker_pool(4).await;
    let ctx = context(&pool, Scripted::stub().adapters());
    let (sub, job) = enqueue_raw(
        &db,
        &NewSubmission::text("s1", "x"),
        |id| json!({"submission_id": id, "criteria": ["A"]}),
    )
    .await;
    assert_eq!(process_next(&ctx).await, JobOutcome::Failed);
    assert_failed(&db, sub, job, "input_corrupt").await;
}

#[tokio::test]
async fn missing_optional_fields_take_their_defaults() {
    let db = TestDb::new().await;
    let pool = db.worker_pool(4).await;
    let ctx = context(&pool, Scripted::stub().adapters());
    let (sub, _) = enqueue_raw(
        &db,
        &NewSubmission::text("s1", "x"),
        |_| json!({"student_sub": "s1"}),
    )
    .await;
    assert_eq!(process_next(&ctx).await, JobOutcome::Completed);
    let s = fixtures::submission(&db.admin, sub).await;
    assert_eq!(
        s.analysis_json,
        Some(json!({})),
        "no criteria: feedback only, analysis {{}}"
    );
    assert!(s.feedback_md.is_some());
}

#[tokio::test]
async fn wrongly_typed_fields_fail_as_input_corrupt() {
    let db = TestDb::new().await;
    let pool = db.worker_pool(4).await;
    let ctx = context(&pool, Scripted::stub().adapters());
    let (sub, job) = enqueue_raw(
        &db,
        &NewSubmission::text("s1", "x"),
        |_| json!({"student_sub": "s1", "criteria": "A, B"}),
    )
    .await;
    assert_eq!(process_next(&ctx).await, JobOutcome::Failed);
    assert_failed(&db, sub, job, "input_corrupt").await;
    let (sub, job) = enqueue_raw(
        &db,
        &NewSubmission::text("s2", "x"),
        |_| json!({"student_sub": "s2", "submission_id": Uuid::new_v4()}),
    )
    .await;
    assert_eq!(process_next(&ctx).await, JobOutcome::Failed);
    assert_failed(&db, sub, job, "input_corrupt").await;
}

#[tokio::test]
async fn an_unknown_kind_fails_as_input_unsupported() {
    let db = TestDb::new().await;
    // GUSTAV may one day add a kind this runner does not know; simulate it.
    let constraint: String = sqlx::query_scalar(
        "select conname::text from pg_constraint where conrelid = 'learning_submissions'::regclass and pg_get_constraintdef(oid) like '%kind%'",
    )
    .fetch_one(&db.admin)
    .await
    .unwrap();
    sqlx::query(&format!(
        "alter table learning_submissions drop constraint {constraint}"
    ))
    .execute(&db.admin)
    .await
    .unwrap();
    let pool = db.worker_pool(4).await;
    let ctx = context(&pool, Scripted::stub().adapters());
    let mut audio = NewSubmission::text("s1", "x");
    audio.kind = "audio";
    let (sub, job) = fixtures::enqueue(&db.admin, &audio).await;
    assert_eq!(process_next(&ctx).await, JobOutcome::Failed);
    assert_failed(&db, sub, job, "input_unsupported").await;
}

#[tokio::test]
async fn a_submission_invisible_under_rls_fails_as_input_corrupt() {
    let db = TestDb::new().await;
    let pool = db.worker_pool(4).await;
    let ctx = context(&pool, Scripted::stub().adapters());
    let (sub, job) = enqueue_raw(
        &db,
        &NewSubmission::text("the-real-student", "x"),
        |id| json!({"submission_id": id, "student_sub": "someone-else"}),
    )
    .await;
    assert_eq!(process_next(&ctx).await, JobOutcome::Failed);
    assert_failed(&db, sub, job, "input_corrupt").await;
}

#[tokio::test]
async fn a_missing_submission_row_fails_the_job_without_touching_anything_else() {
    let db = TestDb::new().await;
    // Our schema cascades deletes; a GUSTAV copy without the foreign key can hold orphans.
    sqlx::query(
        "alter table learning_submission_jobs drop constraint if exists learning_submission_jobs_submission_id_fkey",
    )
    .execute(&db.admin)
    .await
    .unwrap();
    let fk_left: i64 = sqlx::query_scalar("select count(*) from pg_constraint where conrelid = 'learning_submission_jobs'::regclass and contype = 'f'")
        .fetch_one(&db.admin)
        .await
        .unwrap();
    assert_eq!(fk_left, 0, "the foreign key was dropped");
    let pool = db.worker_pool(4).await;
    let ctx = context(&pool, Scripted::stub().adapters());
    let (sub, job) = fixtures::enqueue(&db.admin, &NewSubmission::text("s1", "x")).await;
    sqlx::query("delete from learning_submissions where id = $1")
        .bind(sub)
        .execute(&db.admin)
        .await
        .unwrap();
    assert_eq!(process_next(&ctx).await, JobOutcome::Failed);
    let j = fixtures::job(&db.admin, job).await.unwrap();
    assert_eq!(
        (j.status.as_str(), j.error_code.as_deref()),
        ("failed", Some("input_corrupt"))
    );
}

#[tokio::test]
async fn finished_submissions_are_skipped_and_their_jobs_removed() {
    let db = TestDb::new().await;
    let pool = db.worker_pool(4).await;
    let adapters = Scripted::stub();
    let ctx = context(&pool, adapters.adapters());
    let mut done = NewSubmission::text("s1", "x");
    done.analysis_status = "completed";
    let (_, job) = fixtures::enqueue(&db.admin, &done).await;
    assert_eq!(process_next(&ctx).await, JobOutcome::Skipped);
    assert!(fixtures::job(&db.admin, job).await.is_none());
    assert_eq!(adapters.feedback_count(), 0);
}

#[tokio::test]
async fn a_text_submission_without_text_fails_as_input_corrupt() {
    let db = TestDb::new().await;
    let pool = db.worker_pool(4).await;
    let ctx = context(&pool, Scripted::stub().adapters());
    let mut empty = NewSubmission::text("s1", "x");
    empty.text_body = None;
    let (sub, job) = fixtures::enqueue(&db.admin, &empty).await;
    assert_eq!(process_next(&ctx).await, JobOutcome::Failed);
    assert_failed(&db, sub, job, "input_corrupt").await;
}

#[tokio::test]
async fn the_loop_keeps_going_past_every_kind_of_bad_job() {
    let db = TestDb::new().await;
    let pool = db.worker_pool(8).await;
    let ctx = context(&pool, Scripted::stub().adapters());
    enqueue_raw(&db, &NewSubmission::text("a", "x"), |_| json!(42)).await;
    enqueue_raw(&db, &NewSubmission::text("b", "x"), |_| json!({})).await;
    enqueue_raw(
        &db,
        &NewSubmission::text("c", "x"),
        |id| json!({"submission_id": id, "student_sub": "wrong"}),
    )
    .await;
    let mut good = Vec::new();
    for i in 0..5 {
        good.push(
            fixtures::enqueue(&db.admin, &NewSubmission::text(&format!("g{i}"), "gut"))
                .await
                .0,
        );
    }
    let summary = run_until_drained(&pool, ctx, 2).await;
    assert_eq!((summary.completed, summary.failed), (5, 3));
    for sub in good {
        assert_eq!(
            fixtures::submission(&db.admin, sub).await.status,
            "completed"
        );
    }
}

#[tokio::test]
async fn a_dead_database_is_survived_and_work_resumes() {
    let db = TestDb::new().await;
    let pool = db.worker_pool(4).await;
    let ctx = context(&pool, Scripted::stub().adapters());
    // Block the worker role from connecting, and kill its sessions: the database is "gone".
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
    let worker_ctx = ctx.clone();
    let worker_pool = pool.clone();
    let handle = tokio::spawn(async move { run_until_drained(&worker_pool, worker_ctx, 2).await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !handle.is_finished(),
        "the loop waits for the database instead of exiting"
    );
    assert!(
        ctx.metrics.db_errors.with_label_values(&["lease"]).get() >= 1,
        "lease errors are counted"
    );
    let (sub, _) = fixtures::enqueue(&db.admin, &NewSubmission::text("s1", "x")).await;
    sqlx::query(&format!("grant connect on database {} to public", db.name))
        .execute(&db.admin)
        .await
        .unwrap();
    let summary = handle.await.unwrap();
    assert_eq!(summary.completed, 1);
    assert_eq!(
        fixtures::submission(&db.admin, sub).await.status,
        "completed"
    );
}

#[tokio::test]
async fn a_submission_read_the_database_refuses_counts_as_a_retry_and_names_only_the_sqlstate() {
    let db = TestDb::new().await;
    let pool = db.worker_pool(4).await;
    let adapters = Scripted::stub();
    let ctx = context(&pool, adapters.adapters());
    let (sub, job) = fixtures::enqueue(&db.admin, &NewSubmission::text("s1", "x")).await;
    // The database answers and refuses the read (a permission): not an outage, so it counts
    // (gustav_worker reads through its own grant and through gustav_limited's).
    sqlx::query("revoke select on learning_submissions from gustav_worker, gustav_limited")
        .execute(&db.admin)
        .await
        .unwrap();
    let outcome = process_next(&ctx).await;
    sqlx::query("grant select on learning_submissions to gustav_worker, gustav_limited")
        .execute(&db.admin)
        .await
        .unwrap();
    assert_eq!(outcome, JobOutcome::Retried);
    let j = fixtures::job(&db.admin, job)
        .await
        .expect("the job is kept");
    assert_eq!(
        (j.status.as_str(), j.retry_count, j.leased),
        ("queued", 1, false)
    );
    let s = fixtures::submission(&db.admin, sub).await;
    assert_eq!(s.status, "pending");
    let message = s.vision_last_error.unwrap_or_default();
    assert!(message.contains("SQLSTATE 42501"), "{message}");
    assert_eq!(adapters.vision_count() + adapters.feedback_count(), 0);
}

#[test]
fn outages_are_told_from_refusals() {
    use learning_runner::db::is_unavailable;
    let io = sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "t"));
    assert!(is_unavailable(&io));
    assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
    assert!(!is_unavailable(&sqlx::Error::RowNotFound));
}

struct SwitchGate(std::sync::atomic::AtomicBool);

impl learning_runner::worker::BackendGate for SwitchGate {
    fn ready(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[tokio::test]
async fn a_backend_outage_pauses_leasing_instead_of_burning_retries() {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    let db = TestDb::new().await;
    let pool = db.worker_pool(4).await;
    let (sub, job) = fixtures::enqueue(&db.admin, &NewSubmission::text("s1", "x")).await;
    let gate = Arc::new(SwitchGate(std::sync::atomic::AtomicBool::new(false)));
    let worker = learning_runner::worker::Worker {
        ctx: context(&pool, Scripted::stub().adapters()),
        config: common::worker_config(2),
        state: Arc::new(learning_runner::worker::RunnerState::default()),
        wake: Arc::new(tokio::sync::Notify::new()),
        gate: Some(gate.clone()),
    };
    let running = tokio::spawn(worker.run(tokio_util::sync::CancellationToken::new()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let j = fixtures::job(&db.admin, job).await.unwrap();
    assert_eq!(
        (j.status.as_str(), j.retry_count),
        ("queued", 0),
        "nothing leased while the backend is down"
    );
    assert!(
        !running.is_finished(),
        "a paused loop does not exit, even with exit_when_drained"
    );
    gate.0.store(true, Ordering::SeqCst);
    let summary = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.completed, 1);
    assert_eq!(
        fixtures::submission(&db.admin, sub).await.status,
        "completed"
    );
}

/// Puts the job into a lease that has run out, with `payload` merged into its payload (the
/// lease key is `lease_key`).
async fn expired_lease(
    db: &TestDb,
    job: uuid::Uuid,
    lease_key: uuid::Uuid,
    payload: serde_json::Value,
) {
    sqlx::query(
        "update learning_submission_jobs set status = 'leased', lease_key = $2, leased_until = now() - interval '1 second', \
         payload = payload || $3 where id = $1",
    )
    .bind(job)
    .bind(lease_key)
    .bind(payload)
    .execute(&db.admin)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_job_whose_runner_died_twice_while_it_ran_alone_is_failed() {
    let db = TestDb::new().await;
    let pool = db.worker_pool(4).await;
    let adapters = Scripted::stub();
    let ctx = context(&pool, adapters.adapters());
    let (sub, job) = fixtures::enqueue(&db.admin, &NewSubmission::image("s1")).await;
    // One earlier death while it ran alone; its current holder marked it alone too, then died.
    let key = uuid::Uuid::new_v4();
    let counters = serde_json::json!({"lease_takeovers": 2, "lease_solo_takeovers": 1, "lease_solo": key.to_string()});
    expired_lease(&db, job, key, counters).await;
    assert_eq!(process_next(&ctx).await, JobOutcome::Failed);
    assert_eq!(
        adapters.vision_count(),
        0,
        "the poison job is not run again"
    );
    let s = fixtures::submission(&db.admin, sub).await;
    assert_eq!(
        (s.status.as_str(), s.error_code.as_deref()),
        ("failed", Some("vision_failed"))
    );
    let message = s.vision_last_error.unwrap();
    assert!(
        message.contains("died 2 times while processing this submission alone"),
        "{message}"
    );
}

#[tokio::test]
async fn takeovers_beside_other_jobs_make_a_suspect_that_runs_alone_not_a_failure() {
    let db = TestDb::new().await;
    let pool = db.worker_pool(4).await;
    let adapters = Scripted::stub();
    let ctx = context(&pool, adapters.adapters());
    let (sub, job) = fixtures::enqueue(&db.admin, &NewSubmission::image("s1")).await;
    // Three runners died while it ran beside other jobs (never alone): innocent so far.
    let counters = serde_json::json!({"lease_takeovers": 3, "lease_solo_takeovers": 0});
    expired_lease(&db, job, uuid::Uuid::new_v4(), counters).await;
    assert_eq!(process_next(&ctx).await, JobOutcome::Completed);
    assert_eq!(
        fixtures::submission(&db.admin, sub).await.status,
        "completed"
    );
}

#[tokio::test]
async fn a_job_taken_over_ten_times_is_failed_whatever_ran_beside_it() {
    let db = TestDb::new().await;
    let pool = db.worker_pool(4).await;
    let adapters = Scripted::stub();
    let ctx = context(&pool, adapters.adapters());
    let (sub, job) = fixtures::enqueue(&db.admin, &NewSubmission::text("s1", "Text")).await;
    let counters = serde_json::json!({"lease_takeovers": 9});
    expired_lease(&db, job, uuid::Uuid::new_v4(), counters).await;
    assert_eq!(process_next(&ctx).await, JobOutcome::Failed);
    let s = fixtures::submission(&db.admin, sub).await;
    assert_eq!(
        (s.status.as_str(), s.error_code.as_deref()),
        ("failed", Some("feedback_failed"))
    );
    assert!(s
        .feedback_last_error
        .unwrap()
        .contains("interrupted 10 times"));
}

#[tokio::test]
async fn the_pool_refuses_a_role_that_bypasses_rls_on_every_new_connection() {
    use std::str::FromStr;
    let db = TestDb::new().await;
    let alias = format!("bypass_{}", &db.name[4..14]);
    sqlx::query(&format!(
        "create role {alias} login bypassrls password 'pw'"
    ))
    .execute(&db.admin)
    .await
    .unwrap();
    let url = db.worker_url().replace(
        &format!("gustav_worker:{}", learning_tests::WORKER_PASSWORD),
        &format!("{alias}:pw"),
    );
    let config = learning_runner::config::DatabaseConfig {
        connect: sqlx::postgres::PgConnectOptions::from_str(&url).unwrap(),
        max_connections: 1,
        allow_privileged: false,
    };
    let pool = learning_runner::db::lazy_pool(&config);
    let refused = sqlx::query("select 1").execute(&pool).await;
    sqlx::query(&format!("drop role {alias}"))
        .execute(&db.admin)
        .await
        .unwrap();
    // Every connection is refused after login (sqlx logs the reason and keeps trying until
    // the acquire timeout): no statement ever runs as a role that bypasses RLS.
    let err = refused.expect_err("a BYPASSRLS role gets no connection");
    assert!(matches!(err, sqlx::Error::PoolTimedOut), "{err}");
}

#[tokio::test]
async fn every_runner_connection_has_time_limits_so_no_statement_waits_without_bound() {
    use std::str::FromStr;
    let db = TestDb::new().await;
    let config = learning_runner::config::DatabaseConfig {
        connect: sqlx::postgres::PgConnectOptions::from_str(&db.worker_url()).unwrap(),
        max_connections: 2,
        allow_privileged: false,
    };
    let pool = learning_runner::db::lazy_pool(&config);
    let heartbeat = learning_runner::db::dedicated_pool(&pool);
    for pool in [&pool, &heartbeat] {
        let limits: (String, String, String) = sqlx::query_as(
            "select current_setting('statement_timeout'), current_setting('lock_timeout'), \
             current_setting('idle_in_transaction_session_timeout')",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(limits, ("30s".into(), "10s".into(), "1min".into()));
        // The test cluster is reached over TCP, where the keepalive settings apply.
        let keepalives: (String, String, String) = sqlx::query_as(
            "select current_setting('tcp_keepalives_idle'), current_setting('tcp_keepalives_interval'), \
             current_setting('tcp_keepalives_count')",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(keepalives, ("30".into(), "10".into(), "3".into()));
    }
    // A row the web app keeps locked: the runner's update gives up after lock_timeout with
    // PostgreSQL's lock_not_available (55P03) instead of waiting for ever.
    let (_, id) = fixtures::enqueue(&db.admin, &NewSubmission::text("s1", "a")).await;
    let mut web_app = db.admin.begin().await.unwrap();
    sqlx::query("select 1 from learning_submission_jobs where id = $1 for update")
        .bind(id)
        .execute(&mut *web_app)
        .await
        .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("set lock_timeout = '200ms'")
        .execute(&mut *conn)
        .await
        .unwrap();
    let err = sqlx::query("update learning_submission_jobs set updated_at = now() where id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await
        .unwrap_err();
    assert_eq!(
        err.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("55P03"),
        "{err}"
    );
    assert!(
        learning_runner::db::is_unavailable(&err),
        "a lock timeout passes by itself: a job it interrupts is handed back uncounted"
    );
    web_app.rollback().await.unwrap();
    // A statement the database refuses (here: a table the role may not write) is no outage.
    let refused = sqlx::query("delete from learning_submissions")
        .execute(&mut *conn)
        .await
        .unwrap_err();
    assert!(!learning_runner::db::is_unavailable(&refused), "{refused}");
}
