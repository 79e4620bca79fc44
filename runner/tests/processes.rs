//! The real `learning-runner` binary, several at once, killed and drained: crash recovery,
//! exactly-once completion under concurrency, and graceful drain on SIGTERM.

mod common;

use std::time::Duration;

use learning_tests::fixtures::{self, NewSubmission};
use learning_tests::TestDb;

use common::process::{eventually, sigterm, start_runner, summary, wait_with_limit};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_runners_jobs_are_finished_by_another_runner_exactly_once() {
    let db = TestDb::new().await;
    let mut subs = Vec::new();
    for i in 0..4 {
        subs.push(
            fixtures::enqueue(&db.admin, &NewSubmission::image(&format!("s{i}")))
                .await
                .0,
        );
    }
    // Runner A: slow model, short lease (1 s, heartbeat every 0.5 s).
    let mut a = start_runner(
        &db,
        &[
            ("AI_STUB_DELAY_MS", "60000"),
            ("WORKER_CONCURRENCY", "4"),
            ("WORKER_LEASE_SECONDS", "0.5"),
            ("WORKER_LEASE_MULTIPLIER", "2"),
        ],
    );
    eventually(
        Duration::from_secs(15),
        "runner A leases all four jobs",
        || async { fixtures::job_count(&db.admin, "leased").await == 4 },
    )
    .await;
    a.child.kill().expect("SIGKILL runner A");
    let _ = a.child.wait();

    let mut b = start_runner(
        &db,
        &[
            ("WORKER_CONCURRENCY", "4"),
            ("WORKER_EXIT_WHEN_DRAINED", "true"),
        ],
    );
    let (status, out, err) = wait_with_limit(&mut b.child, Duration::from_secs(30));
    assert!(status.success(), "runner B failed: {err}");
    let totals = summary(&out);
    assert_eq!(
        totals["completed"], 4,
        "runner B completed every job once: {out}"
    );
    assert_eq!(totals["lease_lost"], 0);
    for sub in subs {
        let s = fixtures::submission(&db.admin, sub).await;
        assert_eq!((s.status.as_str(), s.vision_attempts), ("completed", 1));
    }
    assert_eq!(
        fixtures::job_count(&db.admin, "queued").await
            + fixtures::job_count(&db.admin, "leased").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_runners_with_concurrency_eight_complete_2000_jobs_exactly_once() {
    let db = TestDb::new().await;
    fixtures::enqueue_bulk_text(&db.admin, 2000).await;
    let mut runners: Vec<_> = (0..4)
        .map(|_| {
            start_runner(
                &db,
                &[
                    ("WORKER_CONCURRENCY", "8"),
                    ("WORKER_EXIT_WHEN_DRAINED", "true"),
                    ("LOG_LEVEL", "warn"),
                ],
            )
        })
        .collect();
    let mut completed = 0;
    let mut lease_lost = 0;
    let mut busy_runners = 0;
    for r in runners.iter_mut() {
        let (status, out, err) = wait_with_limit(&mut r.child, Duration::from_secs(240));
        assert!(status.success(), "a runner failed: {err}");
        let totals = summary(&out);
        completed += totals["completed"];
        lease_lost += totals["lease_lost"];
        assert_eq!(
            totals["failed"] + totals["abandoned"] + totals["retried"],
            0,
            "{out}"
        );
        if totals["completed"] > 0 {
            busy_runners += 1;
        }
    }
    assert_eq!(
        completed, 2000,
        "every job completed exactly once across the runners"
    );
    assert_eq!(lease_lost, 0);
    assert!(busy_runners >= 2, "the work was shared between runners");
    assert_eq!(
        fixtures::submission_count(&db.admin, "completed").await,
        2000
    );
    let jobs_left: i64 = sqlx::query_scalar("select count(*) from learning_submission_jobs")
        .fetch_one(&db.admin)
        .await
        .unwrap();
    assert_eq!(jobs_left, 0);
    let twice: i64 =
        sqlx::query_scalar("select count(*) from learning_submissions where vision_attempts <> 1")
            .fetch_one(&db.admin)
            .await
            .unwrap();
    assert_eq!(twice, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_jobs_that_cannot_finish_within_the_grace_period() {
    let db = TestDb::new().await;
    let mut jobs = Vec::new();
    for i in 0..4 {
        jobs.push(
            fixtures::enqueue(&db.admin, &NewSubmission::text(&format!("s{i}"), "x"))
                .await
                .1,
        );
    }
    let mut r = start_runner(
        &db,
        &[
            ("AI_STUB_DELAY_MS", "30000"),
            ("WORKER_CONCURRENCY", "4"),
            ("WORKER_DRAIN_GRACE_SECONDS", "0.5"),
        ],
    );
    eventually(Duration::from_secs(15), "all four jobs leased", || async {
        fixtures::job_count(&db.admin, "leased").await == 4
    })
    .await;
    sigterm(&r.child);
    let (status, out, err) = wait_with_limit(&mut r.child, Duration::from_secs(15));
    assert!(status.success(), "clean exit after drain: {err}");
    assert_eq!(summary(&out)["released"], 4, "{out}");
    for job in jobs {
        let j = fixtures::job(&db.admin, job).await.unwrap();
        assert_eq!(
            (j.status.as_str(), j.leased, j.retry_count),
            ("queued", false, 0)
        );
        assert!(
            j.visible_in_seconds <= 0.0,
            "released jobs are visible at once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_running_jobs_finish_within_the_grace_period() {
    let db = TestDb::new().await;
    let mut subs = Vec::new();
    for i in 0..3 {
        subs.push(
            fixtures::enqueue(&db.admin, &NewSubmission::text(&format!("s{i}"), "x"))
                .await
                .0,
        );
    }
    // Concurrency 3: no free slot, so the late job cannot be leased before the signal lands.
    let mut r = start_runner(
        &db,
        &[
            ("AI_STUB_DELAY_MS", "700"),
            ("WORKER_CONCURRENCY", "3"),
            ("WORKER_DRAIN_GRACE_SECONDS", "20"),
        ],
    );
    eventually(Duration::from_secs(15), "all three jobs leased", || async {
        fixtures::job_count(&db.admin, "leased").await == 3
    })
    .await;
    // One more job arrives after the signal: it must not be leased.
    sigterm(&r.child);
    let (_, late) = fixtures::enqueue(&db.admin, &NewSubmission::text("late", "x")).await;
    let (status, out, err) = wait_with_limit(&mut r.child, Duration::from_secs(20));
    assert!(status.success(), "{err}");
    let totals = summary(&out);
    assert_eq!((totals["completed"], totals["released"]), (3, 0), "{out}");
    for sub in subs {
        assert_eq!(
            fixtures::submission(&db.admin, sub).await.status,
            "completed"
        );
    }
    assert_eq!(
        fixtures::job_count(&db.admin, "leased").await,
        0,
        "none stay leased"
    );
    assert_eq!(
        fixtures::job(&db.admin, late).await.unwrap().status,
        "queued",
        "no new lease after SIGTERM"
    );
}
