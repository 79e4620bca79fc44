//! Model work is admitted up to the runner's model slots (`AI_MAX_PARALLEL_CALLS` per model):
//! beyond them, phases wait in the runner, and a phase's time limit starts only when it is admitted,
//! so four jobs on one slot all complete instead of timing out while they wait.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use learning_runner::job::admission::{AdmissionSettings, ModelAdmission};
use learning_tests::fixtures::{self, NewSubmission};
use learning_tests::TestDb;

use common::{context, run_until_drained, Script, Scripted};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_jobs_on_one_model_slot_run_one_at_a_time_and_none_times_out() {
    let db = TestDb::new().await;
    let pool = db.worker_pool(8).await;
    let mut subs = Vec::new();
    for i in 0..4 {
        subs.push(
            fixtures::enqueue(&db.admin, &NewSubmission::image(&format!("s{i}")))
                .await
                .0,
        );
    }
    // Each vision call takes 0.6 s against a 1 s limit: the fourth job waits 1.8 s for its
    // turn, which must not count against its limit.
    let adapters = Scripted::with(vec![Script::Sleep(Duration::from_millis(600)); 4], vec![]);
    let mut ctx = context(&pool, adapters.adapters());
    ctx.timeout_vision = Duration::from_secs(1);
    // One model serves both steps here (the scripted adapters count all calls together),
    // so its one slot admits one step at a time.
    ctx.admission = ModelAdmission::limited(AdmissionSettings {
        capacity: 1,
        vision_model: "one-model".into(),
        feedback_model: "one-model".into(),
        phase_bound: Duration::ZERO,
        residency: None,
        phase_locks: None,
    });
    let metrics = ctx.metrics.clone();
    let summary = run_until_drained(&pool, ctx, 4).await;
    assert_eq!((summary.completed, summary.retried), (4, 0), "{summary:?}");
    assert_eq!(
        adapters.max_active.load(Ordering::SeqCst),
        1,
        "one model call at a time"
    );
    for sub in subs {
        let s = fixtures::submission(&db.admin, sub).await;
        assert_eq!((s.status.as_str(), s.vision_attempts), ("completed", 1));
    }
    let waited = metrics.admission_wait.with_label_values(&["vision"]);
    assert_eq!(waited.get_sample_count(), 4);
    assert!(
        waited.get_sample_sum() > 1.0,
        "later jobs waited for the slot: {} s in all",
        waited.get_sample_sum()
    );
    assert_eq!(metrics.model_phases_in_flight.get(), 0);
}

/// Two runners on one database (a real PostgreSQL): while one runs a vision step, the other,
/// with nothing running, does not begin a feedback phase (which would swap the model out on a
/// GPU that holds one); it begins it once the vision step has ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runners_on_one_database_do_not_swap_out_each_others_phase() {
    use learning_runner::db::phase_locks::PgPhaseLocks;
    use learning_runner::job::admission::PhaseLocks;
    use learning_runner::job::error_code::Phase;
    use std::sync::Arc;

    let db = TestDb::new().await;
    let pool = db.worker_pool(4).await;
    let runner = || {
        ModelAdmission::limited(AdmissionSettings {
            capacity: 1,
            vision_model: "qwen2.5vl:3b".into(),
            feedback_model: "gpt-oss:20b".into(),
            phase_bound: Duration::from_secs(60),
            residency: None,
            phase_locks: Some(Arc::new(PgPhaseLocks::new(&pool)) as Arc<dyn PhaseLocks>),
        })
    };
    let (a, b) = (runner(), runner());
    let metrics = learning_runner::telemetry::metrics::Metrics::new().unwrap();
    let vision = a.admit(Phase::Vision, &metrics).await;
    let feedback = tokio::spawn({
        let metrics = metrics.clone();
        async move {
            let _slot = b.admit(Phase::Feedback, &metrics).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(
        !feedback.is_finished(),
        "the other runner's vision phase is not swapped out"
    );
    drop(vision);
    tokio::time::timeout(Duration::from_secs(5), feedback)
        .await
        .expect("the feedback phase begins once vision has ended everywhere")
        .unwrap();
}

/// A job aborted while its step's model loads leaves no advisory lock behind: the lock is
/// counted by the session task, and the slot's release gives it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_step_leaves_no_phase_lock_behind() {
    use async_trait::async_trait;
    use learning_runner::db::phase_locks::PgPhaseLocks;
    use learning_runner::job::admission::{PhaseLocks, Residency};
    use learning_runner::job::error_code::Phase;
    use std::sync::Arc;

    /// Nothing loaded, and a load that never ends.
    struct EndlessLoad(tokio::sync::Notify);
    #[async_trait]
    impl Residency for EndlessLoad {
        async fn resident(&self) -> Vec<String> {
            Vec::new()
        }
        async fn load(&self, _model: &str) {
            self.0.notify_one();
            std::future::pending::<()>().await;
        }
    }

    let db = TestDb::new().await;
    let pool = db.worker_pool(4).await;
    let gpu = Arc::new(EndlessLoad(tokio::sync::Notify::new()));
    let admission = ModelAdmission::limited(AdmissionSettings {
        capacity: 1,
        vision_model: "qwen2.5vl:3b".into(),
        feedback_model: "gpt-oss:20b".into(),
        phase_bound: Duration::from_secs(60),
        residency: Some(gpu.clone()),
        phase_locks: Some(Arc::new(PgPhaseLocks::new(&pool)) as Arc<dyn PhaseLocks>),
    });
    let advisory_locks = || async {
        sqlx::query_scalar::<_, i64>(
            "select count(*) from pg_locks where locktype = 'advisory' and classid = 19538",
        )
        .fetch_one(&db.admin)
        .await
        .unwrap()
    };
    let loading = gpu.0.notified();
    let metrics = learning_runner::telemetry::metrics::Metrics::new().unwrap();
    let step = tokio::spawn({
        let (a, m) = (admission.clone(), metrics.clone());
        async move {
            let _slot = a.admit(Phase::Vision, &m).await;
        }
    });
    tokio::time::timeout(Duration::from_secs(5), loading)
        .await
        .expect("the step loads its model");
    let started = std::time::Instant::now();
    while advisory_locks().await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the phase lock is held"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    step.abort();
    let _ = step.await;
    while advisory_locks().await != 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the aborted step's phase lock is given back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(metrics.model_phases_in_flight.get(), 0);
}
