//! The runner binary against the GPU simulator (a FAKE Ollama on a simulated clock, see
//! `learning_tests::gpu_sim`): capacity matched to Ollama and warm models.
//!
//! Times: 1 simulated second = 100 ms. A feedback call takes 10 simulated seconds (1 s real)
//! against a per-call limit of 2 s real.

mod common;

use std::time::Duration;

use learning_tests::fixtures::{self, NewSubmission};
use learning_tests::gpu_sim::{EventKind, GpuConfig, GpuModel, GpuReport, GpuSim};
use learning_tests::tools::TempDir;
use learning_tests::TestDb;

use common::local::png;
use common::process::{start_runner, summary, wait_with_limit};

const VISION: &str = "qwen2.5vl:3b";
const FEEDBACK: &str = "gpt-oss:latest";

/// One slot, both models resident, 100 ms of real time per simulated second.
async fn one_slot_gpu() -> GpuSim {
    GpuSim::start(GpuConfig {
        resident_models: 2,
        slots: 1,
        keep_alive: -1.0,
        time_scale: Duration::from_millis(100),
        ..GpuConfig::with_models(vec![
            GpuModel::new(VISION, 3_000_000_000).load(8.0).base(6.0),
            GpuModel::new(FEEDBACK, 13_000_000_000).load(8.0).base(10.0),
        ])
    })
    .await
}

/// Drains `jobs` text submissions with four jobs in flight and `parallel_calls` model steps;
/// returns the runner's totals and the simulator.
async fn drain(
    jobs: usize,
    parallel_calls: &str,
) -> (std::collections::HashMap<String, u64>, GpuSim) {
    let db = TestDb::new().await;
    for i in 0..jobs {
        fixtures::enqueue(
            &db.admin,
            &NewSubmission::text(&format!("s{i}"), "Die Zelle ist klein."),
        )
        .await;
    }
    let gpu = one_slot_gpu().await;
    let url = gpu.base_url();
    let mut runner = start_runner(
        &db,
        &[
            ("AI_BACKEND", "local"),
            ("OLLAMA_BASE_URL", url.as_str()),
            ("WORKER_CONCURRENCY", "4"),
            ("AI_MAX_PARALLEL_CALLS", parallel_calls),
            ("AI_TIMEOUT_FEEDBACK", "2"),
            ("WORKER_MAX_RETRIES", "0"),
            ("WORKER_EXIT_WHEN_DRAINED", "true"),
            ("LOG_LEVEL", "warn"),
        ],
    );
    let (status, out, err) = wait_with_limit(&mut runner.child, Duration::from_secs(180));
    assert!(status.success(), "{err}");
    (summary(&out), gpu)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slot_and_four_jobs_complete_without_waiting_inside_ollama() {
    let (totals, gpu) = drain(6, "1").await;
    assert_eq!(
        (totals["completed"], totals["failed"]),
        (6, 0),
        "{totals:?}"
    );
    let report = gpu.report();
    let feedback = report.model(FEEDBACK).expect("feedback calls");
    println!(
        "one slot, admission 1: {totals:?}, feedback queue wait max {:.1} s (simulated)",
        feedback.queue_wait_max
    );
    assert!(
        feedback.queue_wait_max < 2.0,
        "no call waited inside Ollama: {:.1} simulated s",
        feedback.queue_wait_max
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_admission_calls_wait_inside_ollama_and_time_out() {
    // The behaviour the admission prevents: four steps sent at once to a one-slot Ollama, the
    // fourth waits three calls (3 s real) against a 2 s limit.
    let (totals, gpu) = drain(6, "4").await;
    let feedback = gpu
        .report()
        .model(FEEDBACK)
        .cloned()
        .expect("feedback calls");
    println!(
        "one slot, admission 4: {totals:?}, feedback queue wait max {:.1} s (simulated)",
        feedback.queue_wait_max
    );
    assert!(
        feedback.queue_wait_max >= 15.0,
        "calls queued inside Ollama"
    );
    assert!(
        totals["failed"] > 0,
        "waiting inside Ollama ran into the per-call limit: {totals:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_models_are_loaded_before_the_first_job_calls_them() {
    let (totals, gpu) = drain(1, "1").await;
    assert_eq!(totals["completed"], 1, "{totals:?}");
    let report = gpu.report();
    let first_call = report
        .timeline
        .iter()
        .find(|e| matches!(e.kind, EventKind::Admitted { .. }))
        .expect("a model call")
        .at;
    for model in [VISION, FEEDBACK] {
        let loaded = report
            .timeline
            .iter()
            .find(|e| e.model == model && matches!(e.kind, EventKind::LoadFinished))
            .unwrap_or_else(|| panic!("{model} was loaded"))
            .at;
        assert!(
            loaded <= first_call,
            "{model} loaded at {loaded}, first call at {first_call}"
        );
    }
    let feedback = report.model(FEEDBACK).unwrap();
    assert_eq!(feedback.warmups, 1, "warmed once");
    assert_eq!(feedback.loads, 1, "and never loaded again for the job");
    assert!(
        feedback.queue_wait_max < 1.0,
        "the job's calls did not wait for a load: {:.1} simulated s",
        feedback.queue_wait_max
    );
}

/// One photo, stored and enqueued as GUSTAV's web app does, worked by one runner (with
/// `extra` settings) against a GPU that holds one model at a time and has one slot; the
/// runner's totals and the simulator's report.
async fn one_photo_on_a_one_model_gpu(
    models: Vec<GpuModel>,
    time_scale: Duration,
    extra: &[(&str, &str)],
) -> (std::collections::HashMap<String, u64>, GpuReport) {
    let db = TestDb::new().await;
    let root = TempDir::new("gpu-capacity");
    let photo = png(32, 24, [10, 10, 10]);
    let sub = NewSubmission::gustav_file("student-1", "image", "image/png", &photo);
    let path = root.0.join(sub.key());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &photo).unwrap();
    fixtures::enqueue(&db.admin, &sub).await;
    let gpu = GpuSim::start(GpuConfig {
        resident_models: 1,
        slots: 1,
        keep_alive: -1.0,
        time_scale,
        ..GpuConfig::with_models(models)
    })
    .await;
    let (url, root_dir) = (gpu.base_url(), root.0.display().to_string());
    let mut settings = vec![
        ("AI_BACKEND", "local"),
        ("OLLAMA_BASE_URL", url.as_str()),
        ("STORAGE_VERIFY_ROOT", root_dir.as_str()),
        ("WORKER_EXIT_WHEN_DRAINED", "true"),
        ("LOG_LEVEL", "warn"),
    ];
    settings.extend_from_slice(extra);
    let mut runner = start_runner(&db, &settings);
    let (status, out, err) = wait_with_limit(&mut runner.child, Duration::from_secs(120));
    assert!(status.success(), "{err}");
    (summary(&out), gpu.report())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_one_model_gpu_the_vision_model_is_warmed_last_and_stays_for_the_first_photo() {
    let (totals, report) = one_photo_on_a_one_model_gpu(
        vec![
            GpuModel::new(VISION, 3_000_000_000).load(8.0).base(6.0),
            GpuModel::new(FEEDBACK, 13_000_000_000).load(8.0).base(10.0),
        ],
        Duration::from_millis(20),
        &[],
    )
    .await;
    assert_eq!(totals["completed"], 1, "{totals:?}");
    let vision = report.model(VISION).unwrap();
    // Feedback warmed first, then vision (one swap); the photo's vision call finds vision
    // loaded, and only its feedback step swaps again. Vision first would cost a third swap.
    assert_eq!((vision.warmups, vision.loads), (1, 1), "{report:?}");
    assert_eq!(report.swaps, 2, "{:?}", report.timeline);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_swap_at_the_start_of_a_phase_does_not_count_against_the_steps_time_limit() {
    // One model at a time; loading the feedback model takes 3 s (real), its step 1 s, its
    // limit 2 s. After the photo's vision step the feedback model must be loaded again.
    let (totals, report) = one_photo_on_a_one_model_gpu(
        vec![
            GpuModel::new(VISION, 3_000_000_000).load(8.0).base(4.0),
            GpuModel::new(FEEDBACK, 13_000_000_000).load(30.0).base(5.0),
        ],
        Duration::from_millis(100),
        &[("AI_TIMEOUT_FEEDBACK", "2"), ("WORKER_MAX_RETRIES", "0")],
    )
    .await;
    assert_eq!(
        (totals["completed"], totals["failed"]),
        (1, 0),
        "the load ran before the step's limit started: {totals:?}"
    );
    let feedback = report.model(FEEDBACK).unwrap();
    assert_eq!(feedback.loads, 2, "warmed, then loaded again after vision");
    assert!(
        feedback.queue_wait_max < 1.0,
        "no feedback call waited for a load: {:.1} simulated s",
        feedback.queue_wait_max
    );
}
