//! Every statement of `queue.rs` against a real PostgreSQL, run as the `gustav_worker` login role.

mod common;

use std::time::Duration;

use learning_runner::db::queue::{self, Fenced, LeaseRef, VisionCache};
use learning_runner::job::error_code::{ErrorCode, Phase};
use learning_tests::fixtures::{self, NewSubmission};
use learning_tests::TestDb;
use serde_json::json;
use uuid::Uuid;

use common::LEASE;

#[tokio::test]
async fn lease_takes_visible_jobs_oldest_first_and_marks_them() {
    let db = TestDb::new().await;
    let worker = db.worker_pool(2).await;
    let (_, first) = fixtures::enqueue(&db.admin, &NewSubmission::text("s1", "a")).await;
    let (_, second) = fixtures::enqueue(&db.admin, &NewSubmission::text("s2", "b")).await;
    sqlx::query("update learning_submission_jobs set visible_at = now() - interval '1 minute' where id = $1")
        .bind(second)
        .execute(&db.admin)
        .await
        .unwrap();

    let jobs = queue::lease_jobs(&worker, 10, LEASE).await.unwrap();
    assert_eq!(
        jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![second, first]
    );
    let state = fixtures::job(&db.admin, first).await.unwrap();
    assert_eq!(state.status, "leased");
    assert!(state.leased && state.has_lease_expiry);
    assert_ne!(jobs[0].lease_key, jobs[1].lease_key);
    assert!(
        queue::lease_jobs(&worker, 10, LEASE)
            .await
            .unwrap()
            .is_empty(),
        "leased jobs are not leased twice"
    );
}

#[tokio::test]
async fn lease_honours_visible_at_exactly_and_the_limit() {
    let db = TestDb::new().await;
    let worker = db.worker_pool(2).await;
    let (_, later) = fixtures::enqueue(&db.admin, &NewSubmission::text("s1", "a")).await;
    sqlx::query("update learning_submission_jobs set visible_at = now() + interval '5 seconds' where id = $1")
        .bind(later)
        .execute(&db.admin)
        .await
        .unwrap();
    assert!(
        queue::lease_jobs(&worker, 10, LEASE)
            .await
            .unwrap()
            .is_empty(),
        "no early window before visible_at"
    );
    for i in 0..3 {
        fixtures::enqueue(&db.admin, &NewSubmission::text(&format!("s{i}"), "x")).await;
    }
    assert_eq!(queue::lease_jobs(&worker, 2, LEASE).await.unwrap().len(), 2);
    assert_eq!(queue::lease_jobs(&worker, 2, LEASE).await.unwrap().len(), 1);
}

#[tokio::test]
async fn expired_leases_are_leasable_again_without_touching_retry_count() {
    let db = TestDb::new().await;
    let worker = db.worker_pool(2).await;
    let (_, job) = fixtures::enqueue(&db.admin, &NewSubmission::text("s1", "a")).await;
    let first = queue::lease_jobs(&worker, 1, Duration::from_millis(200))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = queue::lease_jobs(&worker, 1, LEASE).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].id, job);
    assert_ne!(second[0].lease_key, first[0].lease_key);
    assert_eq!(second[0].retry_count, 0);
}

#[tokio::test]
async fn skip_locked_lets_concurrent_leasers_split_the_queue() {
    let db = TestDb::new().await;
    let worker = db.worker_pool(8).await;
    for i in 0..40 {
        fixtures::enqueue(&db.admin, &NewSubmission::text(&format!("s{i}"), "x")).await;
    }
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let pool = worker.clone();
            tokio::spawn(async move { queue::lease_jobs(&pool, 10, LEASE).await.unwrap() })
        })
        .collect();
    let mut ids = Vec::new();
    for h in handles {
        ids.extend(h.await.unwrap().into_iter().map(|j| j.id));
    }
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(ids.len(), 40);
    assert_eq!(unique.len(), 40, "no job leased twice");
}

#[tokio::test]
async fn heartbeat_extends_held_leases_and_reports_lost_ones() {
    let db = TestDb::new().await;
    let worker = db.worker_pool(2).await;
    fixtures::enqueue(&db.admin, &NewSubmission::text("s1", "a")).await;
    let job = queue::lease_jobs(&worker, 1, Duration::from_secs(2))
        .await
        .unwrap()
        .remove(0);
    let stale = LeaseRef {
        job_id: job.id,
        lease_key: Uuid::new_v4(),
    };
    let found = queue::extend_leases(&worker, &[job.lease_ref(), stale], Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(found.extended, vec![job.lease_ref()]);
    assert!(
        found.busy.is_empty(),
        "the stale key is neither extended nor busy"
    );
    let until: f64 = sqlx::query_scalar("select extract(epoch from leased_until - now())::float8 from learning_submission_jobs where id = $1")
        .bind(job.id)
        .fetch_one(&db.admin)
        .await
        .unwrap();
    assert!(until > 100.0, "lease extended to ~120 s, got {until}");
}

#[tokio::test]
async fn a_heartbeat_never_waits_for_a_row_its_own_finish_holds() {
    // One job's finish holds its row (waiting, say, on a submission row the web app locked);
    // the heartbeat must still extend the other jobs at once and must not call the busy one
    // lost.
    let db = TestDb::new().await;
    let worker = db.worker_pool(3).await;
    fixtures::enqueue(&db.admin, &NewSubmission::text("s1", "a")).await;
    fixtures::enqueue(&db.admin, &NewSubmission::text("s2", "b")).await;
    let jobs = queue::lease_jobs(&worker, 2, Duration::from_secs(2))
        .await
        .unwrap();
    let (busy, free) = (jobs[0].lease_ref(), jobs[1].lease_ref());
    let mut finishing = db.admin.begin().await.unwrap();
    sqlx::query("select 1 from learning_submission_jobs where id = $1 for update")
        .bind(busy.job_id)
        .execute(&mut *finishing)
        .await
        .unwrap();
    let found = tokio::time::timeout(
        Duration::from_secs(20),
        queue::extend_leases(&worker, &[busy, free], Duration::from_secs(120)),
    )
    .await
    .expect("the heartbeat waited for a locked row")
    .unwrap();
    assert_eq!((found.extended, found.busy), (vec![free], vec![busy]));
    finishing.rollback().await.unwrap();
    let found = queue::extend_leases(&worker, &[busy, free], Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(
        found.extended.len(),
        2,
        "extended again once the lock is gone"
    );
}

#[tokio::test]
async fn read_submission_sees_only_the_payload_students_row() {
    let db = TestDb::new().await;
    let worker = db.worker_pool(2).await;
    let (sub, _) =
        fixtures::enqueue(&db.admin, &NewSubmission::text("student-a", "Mein Text")).await;
    let row = queue::read_submission(&worker, "student-a", sub)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.kind, "text");
    assert_eq!(row.text_body.as_deref(), Some("Mein Text"));
    assert_eq!(row.analysis_status, "pending");
    assert!(
        queue::read_submission(&worker, "student-b", sub)
            .await
            .unwrap()
            .is_none(),
        "RLS hides other students"
    );
    // The GUC is transaction-local: a plain read afterwards sees nothing.
    let leaked: i64 = sqlx::query_scalar("select count(*) from learning_submissions")
        .fetch_one(&worker)
        .await
        .unwrap();
    assert_eq!(leaked, 0);
}

#[tokio::test]
async fn complete_deletes_the_job_and_stores_the_result() {
    let db = TestDb::new().await;
    let worker = db.worker_pool(2).await;
    let (sub, job_id) = fixtures::enqueue(&db.admin, &NewSubmission::text("s1", "a")).await;
    let job = queue::lease_jobs(&worker, 1, LEASE)
        .await
        .unwrap()
        .remove(0);
    let analysis = json!({"schema": "criteria.v2", "score": 4, "criteria_results": []});
    let r = queue::complete(
        &worker,
        job.lease_ref(),
        sub,
        "Text",
        "Gut gemacht",
        &analysis,
    )
    .await
    .unwrap();
    assert_eq!(r, Fenced::Applied);
    assert!(fixtures::job(&db.admin, job_id).await.is_none());
    let s = fixtures::submission(&db.admin, sub).await;
    assert_eq!(s.status, "completed");
    assert_eq!(s.feedback_md.as_deref(), Some("Gut gemacht"));
    assert_eq!(s.analysis_json, Some(analysis));
    assert_eq!(s.vision_attempts, 1);
}

#[tokio::test]
async fn retry_requeues_with_backoff_caches_vision_and_records_the_attempt() {
    let db = TestDb::new().await;
    let worker = db.worker_pool(2).await;
    let (sub, job_id) = fixtures::enqueue(&db.admin, &NewSubmission::image("s1")).await;
    let job = queue::lease_jobs(&worker, 1, LEASE)
        .await
        .unwrap()
        .remove(0);
    let cache = VisionCache {
        text_md: "# erkannt".into(),
        raw_metadata: json!({"model": "m"}),
    };
    let r = queue::retry(
        &worker,
        job.lease_ref(),
        sub,
        Phase::Feedback,
        "model timeout",
        Duration::from_secs(20),
        Some(&cache),
    )
    .await
    .unwrap();
    assert_eq!(r, Fenced::Applied);
    let j = fixtures::job(&db.admin, job_id).await.unwrap();
    assert_eq!(
        (
            j.status.as_str(),
            j.retry_count,
            j.leased,
            j.has_lease_expiry
        ),
        ("queued", 1, false, false)
    );
    assert!(
        j.visible_in_seconds > 19.0 && j.visible_in_seconds <= 20.0,
        "{}",
        j.visible_in_seconds
    );
    assert_eq!(j.payload["cached_text_md"], "# erkannt");
    assert_eq!(
        j.payload["student_sub"], "s1",
        "the payload keeps its fields"
    );
    let s = fixtures::submission(&db.admin, sub).await;
    assert_eq!(
        (s.status.as_str(), s.error_code.as_deref()),
        ("pending", Some("feedback_retrying"))
    );
    assert_eq!(s.feedback_last_error.as_deref(), Some("model timeout"));
}

#[tokio::test]
async fn fail_marks_job_and_submission_failed() {
    let db = TestDb::new().await;
    let worker = db.worker_pool(2).await;
    let (sub, job_id) = fixtures::enqueue(&db.admin, &NewSubmission::image("s1")).await;
    let job = queue::lease_jobs(&worker, 1, LEASE)
        .await
        .unwrap()
        .remove(0);
    let r = queue::fail(
        &worker,
        job.lease_ref(),
        sub,
        ErrorCode::VisionFailed,
        "unreadable",
    )
    .await
    .unwrap();
    assert_eq!(r, Fenced::Applied);
    let j = fixtures::job(&db.admin, job_id).await.unwrap();
    assert_eq!(
        (j.status.as_str(), j.error_code.as_deref(), j.leased),
        ("failed", Some("vision_failed"), false)
    );
    let s = fixtures::submission(&db.admin, sub).await;
    assert_eq!(
        (s.status.as_str(), s.error_code.as_deref()),
        ("failed", Some("vision_failed"))
    );
    assert_eq!(s.vision_last_error.as_deref(), Some("unreadable"));
    assert!(
        queue::lease_jobs(&worker, 1, LEASE)
            .await
            .unwrap()
            .is_empty(),
        "failed jobs are never leased again"
    );
}

#[tokio::test]
async fn every_finish_is_fenced_by_the_lease_key() {
    let db = TestDb::new().await;
    let worker = db.worker_pool(2).await;
    let (sub, job_id) = fixtures::enqueue(&db.admin, &NewSubmission::text("s1", "a")).await;
    let ours = queue::lease_jobs(&worker, 1, Duration::from_millis(100))
        .await
        .unwrap()
        .remove(0);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let theirs = queue::lease_jobs(&worker, 1, LEASE)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(theirs.id, ours.id);

    let stale = ours.lease_ref();
    let analysis = json!({});
    assert_eq!(
        queue::complete(&worker, stale, sub, "t", "f", &analysis)
            .await
            .unwrap(),
        Fenced::LeaseLost
    );
    assert_eq!(
        queue::retry(
            &worker,
            stale,
            sub,
            Phase::Vision,
            "m",
            Duration::from_secs(1),
            None
        )
        .await
        .unwrap(),
        Fenced::LeaseLost
    );
    assert_eq!(
        queue::fail(&worker, stale, sub, ErrorCode::VisionFailed, "m")
            .await
            .unwrap(),
        Fenced::LeaseLost
    );
    assert_eq!(
        queue::discard(&worker, stale).await.unwrap(),
        Fenced::LeaseLost
    );
    assert_eq!(queue::release(&worker, &[stale]).await.unwrap(), 0);

    let j = fixtures::job(&db.admin, job_id).await.unwrap();
    assert_eq!(
        (j.status.as_str(), j.retry_count),
        ("leased", 0),
        "the new holder's job is untouched"
    );
    let s = fixtures::submission(&db.admin, sub).await;
    assert_eq!(
        (s.status.as_str(), s.error_code, s.vision_attempts),
        ("pending", None, 0)
    );
}

#[tokio::test]
async fn release_and_discard() {
    let db = TestDb::new().await;
    let worker = db.worker_pool(2).await;
    let (_, a) = fixtures::enqueue(&db.admin, &NewSubmission::text("s1", "a")).await;
    let (_, b) = fixtures::enqueue(&db.admin, &NewSubmission::text("s2", "b")).await;
    let jobs = queue::lease_jobs(&worker, 2, LEASE).await.unwrap();
    let by_id = |id| jobs.iter().find(|j| j.id == id).unwrap().lease_ref();
    assert_eq!(queue::release(&worker, &[by_id(a)]).await.unwrap(), 1);
    let released = fixtures::job(&db.admin, a).await.unwrap();
    assert_eq!(
        (
            released.status.as_str(),
            released.leased,
            released.retry_count
        ),
        ("queued", false, 0)
    );
    assert!(
        released.visible_in_seconds <= 0.0,
        "released jobs are visible at once"
    );
    assert_eq!(
        queue::discard(&worker, by_id(b)).await.unwrap(),
        Fenced::Applied
    );
    assert!(fixtures::job(&db.admin, b).await.is_none());
}

#[tokio::test]
async fn queue_depth_counts_by_state() {
    let db = TestDb::new().await;
    let worker = db.worker_pool(2).await;
    for i in 0..3 {
        fixtures::enqueue(&db.admin, &NewSubmission::text(&format!("s{i}"), "x")).await;
    }
    let (_, delayed) = fixtures::enqueue(&db.admin, &NewSubmission::text("d", "x")).await;
    sqlx::query(
        "update learning_submission_jobs set visible_at = now() + interval '1 hour' where id = $1",
    )
    .bind(delayed)
    .execute(&db.admin)
    .await
    .unwrap();
    queue::lease_jobs(&worker, 1, LEASE).await.unwrap();
    let depth = queue::queue_depth(&worker).await.unwrap();
    assert_eq!(
        (depth.visible, depth.delayed, depth.leased, depth.failed),
        (2, 1, 1, 0)
    );
    assert!(depth.oldest_visible_age_seconds >= 0.0);
    assert_eq!(queue::unfinished_jobs(&worker).await.unwrap(), 4);
}

#[tokio::test]
async fn health_probe_schema_check_and_role_check() {
    let db = TestDb::new().await;
    let worker = db.worker_pool(2).await;
    let (role, checks) = queue::health_probe(&worker).await.unwrap();
    assert_eq!(role, "gustav_worker");
    let names: Vec<_> = checks
        .iter()
        .map(|c| (c.check.as_str(), c.status.as_str()))
        .collect();
    assert_eq!(names, vec![("db_role", "ok"), ("queue_visibility", "ok")]);
    assert!(queue::schema_present(&worker).await.unwrap());
    assert!(!queue::role_bypasses_rls(&worker).await.unwrap());
    assert!(queue::role_bypasses_rls(&db.admin).await.unwrap());
}

#[tokio::test]
async fn expired_leases_and_queued_jobs_are_taken_in_one_visible_at_order() {
    let db = TestDb::new().await;
    let worker = db.worker_pool(2).await;
    let (_, queued) = fixtures::enqueue(&db.admin, &NewSubmission::text("s1", "a")).await;
    let (_, expired) = fixtures::enqueue(&db.admin, &NewSubmission::text("s2", "b")).await;
    sqlx::query("update learning_submission_jobs set visible_at = now() - interval '2 minutes' where id = $1")
        .bind(queued)
        .execute(&db.admin)
        .await
        .unwrap();
    sqlx::query(
        "update learning_submission_jobs set status = 'leased', lease_key = gen_random_uuid(), \
         leased_until = now() - interval '1 second', visible_at = now() - interval '5 minutes' where id = $1",
    )
    .bind(expired)
    .execute(&db.admin)
    .await
    .unwrap();
    let first = queue::lease_jobs(&worker, 1, LEASE).await.unwrap();
    assert_eq!(
        first.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![expired],
        "the older (expired) job first"
    );
    let second = queue::lease_jobs(&worker, 5, LEASE).await.unwrap();
    assert_eq!(
        second.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![queued]
    );
}

#[tokio::test]
async fn taking_over_an_expired_lease_counts_the_takeover_in_the_payload() {
    let db = TestDb::new().await;
    let worker = db.worker_pool(2).await;
    let (_, job) = fixtures::enqueue(&db.admin, &NewSubmission::text("s1", "a")).await;
    queue::lease_jobs(&worker, 1, Duration::from_millis(100))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let taken = queue::lease_jobs(&worker, 1, LEASE)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(taken.payload["lease_takeovers"], 1);
    assert_eq!(
        taken.payload["student_sub"], "s1",
        "the rest of the payload is kept"
    );
    queue::release(&worker, &[taken.lease_ref()]).await.unwrap();
    let released = queue::lease_jobs(&worker, 1, LEASE)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        released.payload["lease_takeovers"], 1,
        "a graceful release is not a takeover"
    );
    // A garbage counter never breaks the lease statement.
    sqlx::query("update learning_submission_jobs set payload = payload || '{\"lease_takeovers\": \"viele\"}', leased_until = now() - interval '1 second' where id = $1")
        .bind(job)
        .execute(&db.admin)
        .await
        .unwrap();
    let again = queue::lease_jobs(&worker, 1, LEASE)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(again.payload["lease_takeovers"], 1);
}

/// Lets the job's lease run out now.
async fn expire(db: &TestDb, job: uuid::Uuid) {
    sqlx::query(
        "update learning_submission_jobs set leased_until = now() - interval '1 second' where id = $1",
    )
    .bind(job)
    .execute(&db.admin)
    .await
    .unwrap();
}

#[tokio::test]
async fn only_a_takeover_of_a_job_that_ran_alone_counts_as_a_solo_takeover() {
    let db = TestDb::new().await;
    let worker = db.worker_pool(2).await;
    let (_, job) = fixtures::enqueue(&db.admin, &NewSubmission::text("s1", "a")).await;
    let first = queue::lease_jobs(&worker, 1, LEASE)
        .await
        .unwrap()
        .remove(0);
    expire(&db, job).await;
    // Its holder ran it beside others: a takeover, not a solo one.
    let second = queue::lease_jobs(&worker, 1, LEASE)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(second.payload["lease_takeovers"], 1);
    assert_eq!(second.payload["lease_solo_takeovers"], 0);
    // The new holder runs the suspect alone and says so; then it dies too.
    assert_eq!(
        queue::mark_solo(&worker, second.lease_ref()).await.unwrap(),
        queue::Fenced::Applied
    );
    assert_eq!(
        queue::mark_solo(&worker, first.lease_ref()).await.unwrap(),
        queue::Fenced::LeaseLost,
        "fenced by the lease"
    );
    expire(&db, job).await;
    let third = queue::lease_jobs(&worker, 1, LEASE)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(third.payload["lease_takeovers"], 2);
    assert_eq!(third.payload["lease_solo_takeovers"], 1);
    // The mark names the old lease: this holder did not mark it, so its death is not solo.
    expire(&db, job).await;
    let fourth = queue::lease_jobs(&worker, 1, LEASE)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(fourth.payload["lease_takeovers"], 3);
    assert_eq!(fourth.payload["lease_solo_takeovers"], 1);
}

#[tokio::test]
async fn a_handed_back_job_is_queued_after_its_delay_without_a_retry_or_takeover() {
    let db = TestDb::new().await;
    let worker = db.worker_pool(2).await;
    let (_, job) = fixtures::enqueue(&db.admin, &NewSubmission::text("s1", "a")).await;
    let held = queue::lease_jobs(&worker, 1, LEASE)
        .await
        .unwrap()
        .remove(0);
    let stale = learning_runner::db::queue::LeaseRef {
        job_id: held.id,
        lease_key: uuid::Uuid::new_v4(),
    };
    assert_eq!(
        queue::hand_back(&worker, stale, Duration::from_secs(60), false)
            .await
            .unwrap(),
        queue::Fenced::LeaseLost
    );
    assert_eq!(
        queue::hand_back(&worker, held.lease_ref(), Duration::from_secs(60), false)
            .await
            .unwrap(),
        queue::Fenced::Applied
    );
    let state = fixtures::job(&db.admin, job)
        .await
        .expect("the job row is kept");
    assert_eq!(
        (state.status.as_str(), state.retry_count, state.leased),
        ("queued", 0, false)
    );
    assert!(
        state.visible_in_seconds > 50.0,
        "{}",
        state.visible_in_seconds
    );
    assert!(
        queue::lease_jobs(&worker, 1, LEASE)
            .await
            .unwrap()
            .is_empty(),
        "not visible yet"
    );
    sqlx::query("update learning_submission_jobs set visible_at = now() where id = $1")
        .bind(job)
        .execute(&db.admin)
        .await
        .unwrap();
    let again = queue::lease_jobs(&worker, 1, LEASE)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        again.payload.get("lease_takeovers"),
        None,
        "no takeover counted"
    );
}

#[tokio::test]
async fn a_refused_finish_is_handed_back_with_one_retry_counted() {
    let db = TestDb::new().await;
    let worker = db.worker_pool(2).await;
    let (_, job) = fixtures::enqueue(&db.admin, &NewSubmission::text("s1", "a")).await;
    let held = queue::lease_jobs(&worker, 1, LEASE)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        queue::hand_back(&worker, held.lease_ref(), Duration::ZERO, true)
            .await
            .unwrap(),
        queue::Fenced::Applied
    );
    let state = fixtures::job(&db.admin, job).await.unwrap();
    assert_eq!((state.status.as_str(), state.retry_count), ("queued", 1));
}

#[tokio::test]
async fn a_living_holder_takes_back_a_solo_takeover_once() {
    let db = TestDb::new().await;
    let worker = db.worker_pool(2).await;
    let (_, job) = fixtures::enqueue(&db.admin, &NewSubmission::text("s1", "a")).await;
    queue::lease_jobs(&worker, 1, LEASE).await.unwrap();
    expire(&db, job).await;
    // The suspect's holder runs it alone; its lease expires while it is alive (an outage),
    // and another runner takes it over: a solo takeover is counted.
    let alone = queue::lease_jobs(&worker, 1, LEASE)
        .await
        .unwrap()
        .remove(0);
    queue::mark_solo(&worker, alone.lease_ref()).await.unwrap();
    assert!(
        !queue::absolve(&worker, alone.lease_ref()).await.unwrap(),
        "nothing to take back while the lease is still its own"
    );
    expire(&db, job).await;
    let taken = queue::lease_jobs(&worker, 1, LEASE)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(taken.payload["lease_solo_takeovers"], 1);
    assert!(queue::absolve(&worker, alone.lease_ref()).await.unwrap());
    assert!(
        !queue::absolve(&worker, alone.lease_ref()).await.unwrap(),
        "only once"
    );
    let payload: serde_json::Value =
        sqlx::query_scalar("select payload from learning_submission_jobs where id = $1")
            .bind(job)
            .fetch_one(&db.admin)
            .await
            .unwrap();
    assert_eq!(payload["lease_solo_takeovers"], 0);
    assert_eq!(
        payload["lease_takeovers"], 2,
        "the takeovers themselves stay counted"
    );
    assert_eq!(payload.get("lease_solo"), None);
}

#[tokio::test]
async fn readiness_requires_the_grants_not_just_the_names() {
    let db = TestDb::new().await;
    let worker = db.worker_pool(2).await;
    assert!(queue::schema_present(&worker).await.unwrap());
    sqlx::query("revoke execute on function learning_worker_update_completed(uuid, text, text, jsonb) from gustav_worker")
        .execute(&db.admin)
        .await
        .unwrap();
    assert!(
        !queue::schema_present(&worker).await.unwrap(),
        "a missing EXECUTE grant makes the runner unready"
    );
}

#[tokio::test]
async fn the_heartbeat_reports_a_taken_lease_once_and_forgets_it() {
    use learning_runner::worker::leases::{beat_once, LeaseRegistry};
    let db = TestDb::new().await;
    let worker = db.worker_pool(2).await;
    let metrics = learning_runner::telemetry::metrics::Metrics::new().unwrap();
    fixtures::enqueue(&db.admin, &NewSubmission::text("s1", "a")).await;
    fixtures::enqueue(&db.admin, &NewSubmission::text("s2", "b")).await;
    let jobs = queue::lease_jobs(&worker, 2, LEASE).await.unwrap();
    let registry = LeaseRegistry::default();
    jobs.iter().for_each(|j| registry.insert(j.lease_ref()));
    assert_eq!(
        beat_once(&worker, &registry, &metrics, LEASE)
            .await
            .unwrap(),
        0
    );
    sqlx::query("update learning_submission_jobs set lease_key = gen_random_uuid() where id = $1")
        .bind(jobs[0].id)
        .execute(&db.admin)
        .await
        .unwrap();
    assert_eq!(
        beat_once(&worker, &registry, &metrics, LEASE)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        registry.snapshot(),
        vec![jobs[1].lease_ref()],
        "the lost lease is forgotten"
    );
    assert_eq!(
        beat_once(&worker, &registry, &metrics, LEASE)
            .await
            .unwrap(),
        0,
        "reported once"
    );
    assert_eq!(metrics.heartbeats.with_label_values(&["lost"]).get(), 1);
}

#[tokio::test]
async fn the_sql_functions_refuse_bad_codes_and_phases_and_take_both_json_types() {
    let db = TestDb::new().await;
    let worker = db.worker_pool(2).await;
    let (sub, _) = fixtures::enqueue(&db.admin, &NewSubmission::text("s1", "a")).await;
    let bad_code = sqlx::query("select learning_worker_update_failed($1, 'oops', 'x')")
        .bind(sub)
        .execute(&worker)
        .await;
    assert!(bad_code.is_err(), "update_failed raises on an unknown code");
    let bad_phase = sqlx::query("select learning_worker_mark_retry($1, 'ocr', 'x', now())")
        .bind(sub)
        .execute(&worker)
        .await;
    assert!(bad_phase.is_err(), "mark_retry raises on an unknown phase");
    sqlx::query("select learning_worker_update_completed($1, 't', 'f', '{\"schema\": \"criteria.v2\"}'::json)")
        .bind(sub)
        .execute(&worker)
        .await
        .expect("the json overload works");
    assert_eq!(
        fixtures::submission(&db.admin, sub).await.status,
        "completed"
    );
    fixtures::enqueue(&db.admin, &NewSubmission::text("s2", "b")).await;
    let (_, checks) = queue::health_probe(&worker).await.unwrap();
    assert_eq!(
        checks[1].detail, "visible_jobs=2",
        "both jobs are queued and visible"
    );
}

#[tokio::test]
async fn an_unacknowledged_finish_is_recognised_by_what_it_recorded() {
    // After a commit whose acknowledgement was lost, the runner asks what the database holds:
    // exactly its own end counts as applied; anything else stays a lost lease.
    use learning_runner::db::queue::IntendedEnd;
    let db = TestDb::new().await;
    let worker = db.worker_pool(2).await;
    let mut ends = Vec::new();
    for student in ["s1", "s2", "s3", "s4"] {
        let (sub, _) = fixtures::enqueue(&db.admin, &NewSubmission::text(student, "a")).await;
        let job = queue::lease_jobs(&worker, 1, LEASE)
            .await
            .unwrap()
            .remove(0);
        ends.push((student, sub, job));
    }
    let lease_of = |i: usize| ends[i].2.lease_ref();
    let recorded = |i: usize, intended: IntendedEnd<'static>| {
        let (student, sub, job) = (ends[i].0, ends[i].1, ends[i].2.lease_ref());
        let worker = worker.clone();
        async move {
            queue::end_is_recorded(&worker, job, sub, student, &intended)
                .await
                .unwrap()
        }
    };
    // Nothing recorded yet: no intended end is there.
    let feedback = IntendedEnd::Completed {
        feedback_md: "Gut gemacht",
    };
    assert!(!recorded(0, feedback.clone()).await);
    let analysis = json!({"schema": "criteria.v2", "score": 4, "criteria_results": []});
    queue::complete(
        &worker,
        lease_of(0),
        ends[0].1,
        "Text",
        "Gut gemacht",
        &analysis,
    )
    .await
    .unwrap();
    assert!(recorded(0, feedback).await);
    assert!(
        !recorded(
            0,
            IntendedEnd::Completed {
                feedback_md: "another runner's words"
            }
        )
        .await,
        "someone else's feedback is not this runner's finish"
    );
    queue::fail(
        &worker,
        lease_of(1),
        ends[1].1,
        ErrorCode::FeedbackFailed,
        "m",
    )
    .await
    .unwrap();
    assert!(
        recorded(
            1,
            IntendedEnd::Failed {
                code: "feedback_failed"
            }
        )
        .await
    );
    assert!(
        !recorded(
            1,
            IntendedEnd::Failed {
                code: "vision_failed"
            }
        )
        .await
    );
    queue::retry(
        &worker,
        lease_of(2),
        ends[2].1,
        Phase::Vision,
        "m",
        Duration::from_secs(60),
        None,
    )
    .await
    .unwrap();
    assert!(recorded(2, IntendedEnd::Requeued { retry_count: 1 }).await);
    assert!(!recorded(2, IntendedEnd::Requeued { retry_count: 2 }).await);
    assert!(!recorded(3, IntendedEnd::Discarded).await, "still leased");
    queue::discard(&worker, lease_of(3)).await.unwrap();
    assert!(recorded(3, IntendedEnd::Discarded).await);
}
