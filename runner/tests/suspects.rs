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
