//! Tests of the admission: slots, waits, phases.

use super::*;

/// Polls a future once: its output if it is ready at once.
async fn ready_now<F: std::future::Future + Unpin>(mut f: F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

#[tokio::test]
async fn steps_beyond_their_models_capacity_wait_for_a_slot() {
    let metrics = Metrics::new().unwrap();
    let admission = ModelAdmission::with_capacity(1);
    assert_eq!(admission.capacity(), Some(1));
    // One slot per model: a vision and a feedback step run side by side.
    let a = admission.admit(Phase::Vision, &metrics).await;
    let _b = admission.admit(Phase::Feedback, &metrics).await;
    assert_eq!(metrics.model_phases_in_flight.get(), 2);
    let third = admission.admit(Phase::Vision, &metrics);
    tokio::pin!(third);
    assert!(ready_now(third.as_mut()).await.is_none(), "the third waits");
    drop(a);
    let _c = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .unwrap();
    assert_eq!(metrics.model_phases_in_flight.get(), 2);
    assert_eq!(ModelAdmission::unlimited().capacity(), None);
}

#[tokio::test]
async fn a_running_phase_goes_on_before_the_other_model_and_a_dropped_waiter_leaves() {
    let metrics = Metrics::new().unwrap();
    let admission = ModelAdmission::limited(AdmissionSettings {
        capacity: 1,
        vision_model: "v".into(),
        feedback_model: "f".into(),
        phase_bound: Duration::from_secs(60),
        residency: None,
        phase_locks: None,
    });
    let first_vision = admission.admit(Phase::Vision, &metrics).await;
    // A feedback step queues first, then a vision step.
    let feedback = tokio::spawn({
        let (a, m) = (admission.clone(), metrics.clone());
        async move {
            let slot = a.admit(Phase::Feedback, &m).await;
            (Instant::now(), slot)
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let vision = tokio::spawn({
        let (a, m) = (admission.clone(), metrics.clone());
        async move {
            let slot = a.admit(Phase::Vision, &m).await;
            (Instant::now(), slot)
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // An aborted job's waiting step leaves the queue.
    let aborted = tokio::spawn({
        let (a, m) = (admission.clone(), metrics.clone());
        async move { a.admit(Phase::Feedback, &m).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    aborted.abort();
    drop(first_vision);
    let (vision_at, vision_slot) = vision.await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!feedback.is_finished(), "the vision phase goes on first");
    drop(vision_slot);
    let (feedback_at, _slot) = tokio::time::timeout(Duration::from_secs(5), feedback)
        .await
        .expect("then the feedback phase begins")
        .unwrap();
    assert!(vision_at < feedback_at);
}

#[tokio::test]
async fn two_names_of_one_model_share_its_slots() {
    let metrics = Metrics::new().unwrap();
    let admission = ModelAdmission::limited(AdmissionSettings {
        capacity: 1,
        vision_model: "qwen2.5vl".into(),
        feedback_model: "qwen2.5vl:latest".into(),
        phase_bound: Duration::ZERO,
        residency: None,
        phase_locks: None,
    });
    let _vision = admission.admit(Phase::Vision, &metrics).await;
    let feedback = admission.admit(Phase::Feedback, &metrics);
    tokio::pin!(feedback);
    assert!(
        ready_now(feedback.as_mut()).await.is_none(),
        "one model, one slot"
    );
}

/// A GPU that holds nothing and whose first load never ends; it says when a load begins.
struct StuckFirstLoad {
    loads: std::sync::atomic::AtomicUsize,
    loading: Notify,
}

#[async_trait]
impl Residency for StuckFirstLoad {
    async fn resident(&self) -> Vec<String> {
        Vec::new()
    }

    async fn load(&self, _model: &str) {
        let n = self.loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.loading.notify_one();
        if n == 0 {
            std::future::pending::<()>().await;
        }
    }
}

#[tokio::test]
async fn a_step_aborted_while_its_model_loads_gives_its_slot_back() {
    let metrics = Metrics::new().unwrap();
    let gpu = Arc::new(StuckFirstLoad {
        loads: Default::default(),
        loading: Notify::new(),
    });
    let admission = ModelAdmission::limited(AdmissionSettings {
        capacity: 1,
        vision_model: "v".into(),
        feedback_model: "f".into(),
        phase_bound: Duration::from_secs(60),
        residency: Some(gpu.clone()),
        phase_locks: None,
    });
    let loading = gpu.loading.notified();
    let stuck = tokio::spawn({
        let (a, m) = (admission.clone(), metrics.clone());
        async move {
            let _slot = a.admit(Phase::Vision, &m).await;
        }
    });
    tokio::time::timeout(Duration::from_secs(5), loading)
        .await
        .expect("the first step loads its model");
    stuck.abort();
    let _ = stuck.await;
    let next = tokio::time::timeout(
        Duration::from_secs(5),
        admission.admit(Phase::Vision, &metrics),
    )
    .await
    .expect("the aborted step's slot is free again");
    drop(next);
    assert_eq!(metrics.model_phases_in_flight.get(), 0);
}
