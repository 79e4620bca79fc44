//! `make bench`, GPU section: a class of 30 submissions (20 photos, 10 texts) handed in at
//! once, worked by real runner processes against the GPU simulator (a FAKE Ollama on a
//! simulated clock, `learning_tests::gpu_sim`; 1 simulated second = 10 ms, 50 ms with three
//! runners): a model load
//! takes 8 s, a vision call 6 s, a feedback step 10 s (two calls of 5 s), two slots.
//!
//! Compared in the same run, on a GPU that holds one model, one that holds two, and a
//! one-model GPU shared by three runners:
//! - (a) today's behaviour: the default of GUSTAV's worker and of `spec.runner.concurrency`
//!   before capacity was derived, one job at a time per runner;
//! - (b) what the operator now derives from `numParallel` 2 and the two models
//!   ([`derived`]): model calls per runner and model = ⌈2 ÷ runners⌉, jobs per runner =
//!   4 × that × 2 models (at most 16), model-aware phases (`AI_MAX_PHASE_WAIT_SECONDS=120`);
//! - (b′) the same, first come, first served (`AI_MAX_PHASE_WAIT_SECONDS=0`);
//! - for context, 16 jobs per runner with no admission limit: every step queues inside Ollama.
//!
//! Timeouts are generous in every variant (300 s), which favours (a) and the no-admission
//! row: their calls wait inside Ollama, and with the default timeouts (30 s, 15 s) such waits
//! become timeouts and retries. Medians of `BENCH_GPU_RUNS` (default 3) seeded runs;
//! throughput in submissions per simulated GPU-hour over the span from the first model call
//! to the last, time to feedback from the first model call to the submission's completion,
//! in simulated seconds; GPU busy: the share of that span with at least one call running.

use std::collections::HashMap;
use std::io::Cursor;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use image::{ImageFormat, Rgb, RgbImage};
use learning_tests::fixtures::{self, NewSubmission};
use learning_tests::gpu_sim::{EventKind, GpuConfig, GpuModel, GpuReport, GpuSim};
use learning_tests::tools::free_port;
use learning_tests::TestDb;

const VISION: &str = "qwen2.5vl:3b";
const FEEDBACK: &str = "gpt-oss:latest";
const PHOTOS: usize = 20;
const TEXTS: usize = 10;
/// Parallel slots per loaded model.
const SLOTS: usize = 2;

/// One measured run.
#[derive(Debug, Clone, Copy)]
struct Measured {
    per_gpu_hour: f64,
    p50: f64,
    p95: f64,
    swaps_per_submission: f64,
    busy: f64,
    /// The bottleneck model's slots busy while its work flows ([`bottleneck_slots_busy`]).
    slots_busy: f64,
}

fn png() -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    RgbImage::from_pixel(64, 48, Rgb([20, 20, 20]))
        .write_to(&mut out, ImageFormat::Png)
        .expect("encode a PNG");
    out.into_inner()
}

/// The class, enqueued as GUSTAV's web app does; photos stored below `root`.
async fn hand_in(db: &TestDb, root: &std::path::Path) {
    let photo = png();
    for i in 0..PHOTOS {
        let s = NewSubmission::gustav_file(&format!("student-{i}"), "image", "image/png", &photo);
        let path = root.join(s.key());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, &photo).unwrap();
        fixtures::enqueue(&db.admin, &s).await;
    }
    for i in 0..TEXTS {
        let s = NewSubmission::text(
            &format!("writer-{i}"),
            "Die Zelle ist die kleinste Einheit.",
        );
        fixtures::enqueue(&db.admin, &s).await;
    }
}

async fn gpu(resident_models: usize, seed: u64, scale: Duration) -> GpuSim {
    GpuSim::start(GpuConfig {
        resident_models,
        slots: SLOTS,
        keep_alive: -1.0,
        time_scale: scale,
        seed,
        jitter: 0.1,
        ..GpuConfig::with_models(vec![
            GpuModel::new(VISION, 3_000_000_000).load(8.0).base(6.0),
            GpuModel::new(FEEDBACK, 13_000_000_000).load(8.0).base(5.0),
        ])
    })
    .await
}

/// How one runner is set: jobs in flight, model calls admitted, `AI_MAX_PHASE_WAIT_SECONDS`.
#[derive(Debug, Clone, Copy)]
struct Settings {
    jobs: usize,
    calls: usize,
    phase_wait: u32,
}

/// The operator's rule (`operator/src/desired/runner/capacity.rs`) for `numParallel` 2 and
/// two models: calls per model = ⌈numParallel ÷ runners⌉, jobs = min(4 × calls × 2, 16).
fn derived(runners: usize, phase_wait: u32) -> Settings {
    let calls = 2_usize.div_ceil(runners);
    Settings {
        jobs: (4 * calls * 2).min(16),
        calls,
        phase_wait,
    }
}

fn runner(db: &TestDb, gpu: &GpuSim, root: &std::path::Path, set: Settings) -> Child {
    let port = free_port();
    Command::new(env!("CARGO_BIN_EXE_learning-runner"))
        .env_clear()
        .envs([
            ("LEARNING_DATABASE_URL", db.worker_url()),
            ("LEARNING_HTTP_ADDR", format!("127.0.0.1:{port}")),
            ("LOG_LEVEL", "error".into()),
            ("AI_BACKEND", "local".into()),
            ("OLLAMA_BASE_URL", gpu.base_url()),
            ("STORAGE_VERIFY_ROOT", root.display().to_string()),
            ("WORKER_CONCURRENCY", set.jobs.to_string()),
            ("AI_MAX_PARALLEL_CALLS", set.calls.to_string()),
            ("AI_MAX_PHASE_WAIT_SECONDS", set.phase_wait.to_string()),
            ("AI_TIMEOUT_VISION", "300".into()),
            ("AI_TIMEOUT_FEEDBACK", "300".into()),
            ("WORKER_POLL_INTERVAL", "0.05".into()),
            ("WORKER_EXIT_WHEN_DRAINED", "true".into()),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(root.join(format!("runner-{port}.log"))).unwrap())
        .spawn()
        .expect("spawn learning-runner")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Times to feedback in simulated seconds from the first model call.
async fn times_to_feedback(
    db: &TestDb,
    gpu: &GpuSim,
    first_call: f64,
    scale: Duration,
) -> Vec<f64> {
    let (real_now, sim_now): (DateTime<Utc>, f64) = (
        sqlx::query_scalar("select clock_timestamp()")
            .fetch_one(&db.admin)
            .await
            .unwrap(),
        gpu.now(),
    );
    let done: Vec<DateTime<Utc>> = sqlx::query_scalar(
        "select completed_at from learning_submissions where completed_at is not null",
    )
    .fetch_all(&db.admin)
    .await
    .unwrap();
    let mut ttf: Vec<f64> = done
        .iter()
        .map(|t| {
            let ago = (real_now - *t).to_std().unwrap_or_default();
            sim_now - ago.as_secs_f64() / scale.as_secs_f64() - first_call
        })
        .collect();
    ttf.sort_by(f64::total_cmp);
    ttf
}

fn span(report: &GpuReport) -> (f64, f64) {
    let first = report
        .timeline
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Admitted { .. }))
        .map(|e| e.at)
        .fold(f64::INFINITY, f64::min);
    let last = report
        .timeline
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Finished { .. }))
        .map(|e| e.at)
        .fold(0.0, f64::max);
    (first, last)
}

async fn run_once(row: Row, variant: Variant, seed: u64) -> Measured {
    let Row {
        resident,
        runners,
        scale,
    } = row;
    let set = variant.settings(runners);
    let db = TestDb::new().await;
    let root = std::env::temp_dir().join(format!("bench-gpu-{}", uuid::Uuid::new_v4().simple()));
    hand_in(&db, &root).await;
    let gpu = gpu(resident, seed, scale).await;
    let mut children: Vec<Child> = (0..runners)
        .map(|_| runner(&db, &gpu, &root, set))
        .collect();
    let started = Instant::now();
    for child in &mut children {
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "a run took over 10 minutes"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let completed = fixtures::submission_count(&db.admin, "completed").await;
    if completed as usize != PHOTOS + TEXTS {
        for entry in std::fs::read_dir(&root).unwrap().flatten() {
            if entry.file_name().to_string_lossy().starts_with("runner-") {
                let log = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                eprintln!("{}: {tail:?}", entry.path().display());
            }
        }
        panic!("{completed} of {} submissions completed", PHOTOS + TEXTS);
    }
    let report = gpu.report();
    let (first, last) = span(&report);
    let ttf = times_to_feedback(&db, &gpu, first, scale).await;
    let _ = std::fs::remove_dir_all(&root);
    let submissions = (PHOTOS + TEXTS) as f64;
    Measured {
        per_gpu_hour: submissions / ((last - first) / 3600.0),
        p50: percentile(&ttf, 0.5),
        p95: percentile(&ttf, 0.95),
        swaps_per_submission: report.swaps as f64 / submissions,
        // Busy time lies within the span: the share of it with a call running.
        busy: report.busy / (last - first),
        slots_busy: bottleneck_slots_busy(&report),
    }
}

/// The slots of the model with the most work (the bottleneck): their busy time over
/// (slots × the time from its first call to its last), the time its work flows.
fn bottleneck_slots_busy(report: &GpuReport) -> f64 {
    let Some(model) = report
        .models
        .iter()
        .max_by(|a, b| a.busy().total_cmp(&b.busy()))
    else {
        return 0.0;
    };
    let times = |admitted: bool| {
        report.timeline.iter().filter(move |e| {
            e.model == model.name
                && if admitted {
                    matches!(e.kind, EventKind::Admitted { .. })
                } else {
                    matches!(e.kind, EventKind::Finished { .. })
                }
        })
    };
    let first = times(true).map(|e| e.at).fold(f64::INFINITY, f64::min);
    let last = times(false).map(|e| e.at).fold(0.0, f64::max);
    model.busy() / (SLOTS as f64 * (last - first))
}

/// One configuration: models the GPU holds, runners, real time per simulated second.
#[derive(Debug, Clone, Copy)]
struct Row {
    resident: usize,
    runners: usize,
    scale: Duration,
}

impl Row {
    /// Three runners agree on the phase through `/api/ps` and the database, asked every
    /// 0.25 s (real) at most: a slower clock keeps that from weighing 25 simulated seconds.
    const ALL: [Row; 3] = [
        Row {
            resident: 1,
            runners: 1,
            scale: Duration::from_millis(10),
        },
        Row {
            resident: 2,
            runners: 1,
            scale: Duration::from_millis(10),
        },
        Row {
            resident: 1,
            runners: 3,
            scale: Duration::from_millis(50),
        },
    ];
}

/// What is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Variant {
    /// (a) One job at a time per runner.
    Today,
    /// (b) The derived capacity with model-aware phases: the operator's defaults.
    Derived,
    /// (b′) The derived capacity, first come, first served.
    Fifo,
    /// 16 jobs per runner, no admission limit.
    Unlimited,
}

impl Variant {
    const ALL: [Variant; 4] = [
        Variant::Today,
        Variant::Derived,
        Variant::Fifo,
        Variant::Unlimited,
    ];

    fn name(self, runners: usize) -> String {
        let set = self.settings(runners);
        match self {
            Variant::Today => "(a) today: 1 job".into(),
            Variant::Derived => format!(
                "(b) derived: {} jobs, {} calls/model, phases",
                set.jobs, set.calls
            ),
            Variant::Fifo => format!(
                "(b′) same, first come: {} jobs, {} calls/model",
                set.jobs, set.calls
            ),
            Variant::Unlimited => "16 jobs, no admission".into(),
        }
    }

    fn settings(self, runners: usize) -> Settings {
        match self {
            Variant::Today => Settings {
                jobs: 1,
                calls: 1,
                phase_wait: 0,
            },
            Variant::Derived => derived(runners, 120),
            Variant::Fifo => derived(runners, 0),
            Variant::Unlimited => Settings {
                jobs: 16,
                calls: 16,
                phase_wait: 0,
            },
        }
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn medians(runs: &[Measured]) -> Measured {
    let of = |f: fn(&Measured) -> f64| median(runs.iter().map(f).collect());
    Measured {
        per_gpu_hour: of(|m| m.per_gpu_hour),
        p50: of(|m| m.p50),
        p95: of(|m| m.p95),
        swaps_per_submission: of(|m| m.swaps_per_submission),
        busy: of(|m| m.busy),
        slots_busy: of(|m| m.slots_busy),
    }
}

fn main() {
    let runs: u64 = std::env::var("BENCH_GPU_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("GPU section: {PHOTOS} photos + {TEXTS} texts at once; load 8 s, vision 6 s, feedback 10 s, 2 slots (simulated); medians of {runs} seeded runs");
    println!(
        "| GPU | runners | runner settings | submissions / GPU-hour | time to feedback p50 | p95 | swaps / submission | GPU busy | bottleneck model's slots busy |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut results: HashMap<(usize, usize, Variant), Measured> = HashMap::new();
    for row in Row::ALL {
        let Row {
            resident, runners, ..
        } = row;
        for variant in Variant::ALL {
            let measured: Vec<Measured> = (0..runs)
                .map(|seed| rt.block_on(run_once(row, variant, seed + 1)))
                .collect();
            let m = medians(&measured);
            results.insert((resident, runners, variant), m);
            println!(
                "| {resident} model{} | {runners} | {} | {:.0} | {:.0} s | {:.0} s | {:.2} | {:.0} % | {:.0} % |",
                if resident == 1 { "" } else { "s" },
                variant.name(runners),
                m.per_gpu_hour,
                m.p50,
                m.p95,
                m.swaps_per_submission,
                m.busy * 100.0,
                m.slots_busy * 100.0
            );
        }
        let a = results[&(resident, runners, Variant::Today)];
        let b = results[&(resident, runners, Variant::Derived)];
        println!(
            "|  |  | ratio (b)/(a) | {:.2}× | {:.2}× | {:.2}× |  |  |  |",
            b.per_gpu_hour / a.per_gpu_hour,
            b.p50 / a.p50,
            b.p95 / a.p95
        );
    }
    verdicts(&results);
}

/// Issue 11's targets, each printed met or missed (a bench reports; it does not fail).
fn verdicts(results: &HashMap<(usize, usize, Variant), Measured>) {
    let (a, b) = (
        results[&(1, 1, Variant::Today)],
        results[&(1, 1, Variant::Derived)],
    );
    let two = results[&(2, 1, Variant::Derived)];
    let (a3, b3) = (
        results[&(1, 3, Variant::Today)],
        results[&(1, 3, Variant::Derived)],
    );
    let checks = [
        (
            "one-model GPU: (b) at least 2x (a) in submissions per GPU-hour",
            b.per_gpu_hour >= 2.0 * a.per_gpu_hour,
        ),
        (
            "one-model GPU: (b) p95 time to feedback lower",
            b.p95 < a.p95,
        ),
        (
            "one-model GPU: (b) at most 0.2 swaps per submission",
            b.swaps_per_submission <= 0.2,
        ),
        (
            "two-model GPU: (b) the bottleneck model's slots at least 90 % busy while its work flows",
            two.slots_busy >= 0.9,
        ),
        (
            "two-model GPU: (b) no swaps",
            two.swaps_per_submission == 0.0,
        ),
        (
            "three runners, one-model GPU: (b) at least 2x (a) in submissions per GPU-hour",
            b3.per_gpu_hour >= 2.0 * a3.per_gpu_hour,
        ),
        (
            "three runners, one-model GPU: (b) p95 time to feedback lower",
            b3.p95 < a3.p95,
        ),
        (
            "three runners, one-model GPU: (b) at most 0.2 swaps per submission",
            b3.swaps_per_submission <= 0.2,
        ),
    ];
    for (what, met) in checks {
        println!("{}: {what}", if met { "met" } else { "MISSED" });
    }
}
