//! The poison-job guard in the worker loop: a job whose earlier holder died with it (a
//! suspect) runs alone, so that a death during its run can be blamed on it; other jobs run
//! side by side as usual.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use learning_tests::fixtures::{self, NewSubmission};
use learning_tests::TestDb;

use common::{context, run_until_drained, Script, Scripted};

/// Four image jobs, `suspects` of them taken over from a holder that died; returns the most
/// vision calls that ran at once while a worker with four slots drained them.
async fn most_at_once(suspects: usize) -> usize {
    let db = TestDb::new().await;
    let pool = db.worker_pool(8).await;
    let mut subs = Vec::new();
    for i in 0..4 {
        let (sub, job) =
            fixtures::enqueue(&db.admin, &NewSubmission::image(&format!("s{i}"))).await;
        if i < suspects {
            sqlx::query(
                "update learning_submission_jobs set status = 'leased', lease_key = gen_random_uuid(), \
                 leased_until = now() - interval '1 second' where id = $1",
            )
            .bind(job)
            .execute(&db.admin)
            .await
            .unwrap();
        }
        subs.push(sub);
    }
    let adapters = Scripted::with(vec![Script::Sleep(Duration::from_millis(400)); 4], vec![]);
    let summary = run_until_drained(&pool, context(&pool, adapters.adapters()), 4).await;
    assert_eq!(summary.completed, 4, "{summary:?}");
    for sub in subs {
        assert_eq!(
            fixtures::submission(&db.admin, sub).await.status,
            "completed"
        );
    }
    adapters.max_active.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_side_by_side_but_suspects_run_alone() {
    assert!(
        most_at_once(0).await >= 2,
        "without suspects the slots are shared"
    );
    assert_eq!(
        most_at_once(4).await,
        1,
        "suspects never run beside another job"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspect_still_waiting_for_its_turn_at_shutdown_goes_back_unstarted() {
    use std::sync::Arc;
    let db = TestDb::new().await;
    let pool = db.worker_pool(8).await;
    let (_, running) = fixtures::enqueue(&db.admin, &NewSubmission::image("a")).await;
    // A job held by a runner that died: its lease runs out in 3 s, while the other job runs.
    let (_, suspect) = fixtures::enqueue(&db.admin, &NewSubmission::image("s")).await;
    sqlx::query(
        "update learning_submission_jobs set status = 'leased', lease_key = gen_random_uuid(), \
         leased_until = now() + interval '3 seconds' where id = $1",
    )
    .bind(suspect)
    .execute(&db.admin)
    .await
    .unwrap();
    let entered = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let adapters = Scripted::with(vec![Script::Gate(entered.clone(), release.clone())], vec![]);
    let worker = learning_runner::worker::Worker {
        ctx: context(&pool, adapters.adapters()),
        config: learning_runner::config::WorkerConfig {
            drain_grace: Duration::from_secs(10),
            exit_when_drained: false,
            ..common::worker_config(2)
        },
        state: Arc::new(learning_runner::worker::RunnerState::default()),
        wake: Arc::new(tokio::sync::Notify::new()),
        gate: None,
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let handle = tokio::spawn(worker.run(shutdown.clone()));
    entered.notified().await;
    // Once its lease has run out, the suspect is taken over into the free slot and waits.
    let started = std::time::Instant::now();
    loop {
        let j = fixtures::job(&db.admin, suspect).await.unwrap();
        if j.leased && j.visible_in_seconds <= 0.0 && j.status == "leased" {
            let payload: serde_json::Value =
                sqlx::query_scalar("select payload from learning_submission_jobs where id = $1")
                    .bind(suspect)
                    .fetch_one(&db.admin)
                    .await
                    .unwrap();
            if payload["lease_takeovers"] == 1 {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the runner takes the suspect over"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Shutdown begins; then the running job finishes within the grace period. The suspect
    // must not start in its place: it went back to the queue when shutdown began.
    shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    release.notify_one();
    let summary = tokio::time::timeout(Duration::from_secs(30), handle)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((summary.completed, summary.released), (1, 1), "{summary:?}");
    assert_eq!(adapters.vision_count(), 1, "the suspect never started");
    assert!(
        fixtures::job(&db.admin, running).await.is_none(),
        "completed"
    );
    let j = fixtures::job(&db.admin, suspect).await.unwrap();
    assert_eq!((j.status.as_str(), j.leased), ("queued", false));
}
