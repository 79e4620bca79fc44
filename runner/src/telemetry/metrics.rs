//! The runner's Prometheus metrics: the contract's four (§9) plus durations, lease and
//! heartbeat counters and queue depth. Labels are bounded sets; no ids, no text.

use learning_contract::metrics as contract;
use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::db::queue::QueueDepth;
use crate::job::error_code::{ErrorCode, Phase};

/// Outcomes a job can end with, the `status` label of `ai_worker_processed_total`.
pub const OUTCOMES: [&str; 7] = [
    "completed",
    "retried",
    "failed",
    "skipped",
    "lease_lost",
    "handed_back",
    "abandoned",
];

const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// All metrics of one runner, registered in their own registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Jobs being processed now.
    pub inflight: IntGauge,
    /// Finished jobs by outcome.
    pub processed: IntCounterVec,
    /// Retries scheduled, by phase.
    pub retries: IntCounterVec,
    /// Failed jobs by error code.
    pub failed: IntCounterVec,
    /// Whole-job durations by outcome.
    pub job_duration: HistogramVec,
    /// Phase durations.
    pub phase_duration: HistogramVec,
    /// Finishes refused because another runner held the lease.
    pub lease_lost: IntCounter,
    /// Heartbeat results (`extended`, `lost`, `error`).
    pub heartbeats: IntCounterVec,
    /// Jobs leased.
    pub leased: IntCounter,
    /// Database errors by operation.
    pub db_errors: IntCounterVec,
    /// Queue depth by state.
    pub queue_depth: GaugeVec,
    /// Age of the oldest visible job.
    pub oldest_job_age: Gauge,
    /// How feedback analyses were obtained (`parsed_structured`, `parsed`, `fallback`, `no_criteria`).
    pub feedback_parse: IntCounterVec,
    /// Time a model phase waited in the runner for a model slot.
    pub admission_wait: HistogramVec,
    /// Model phases admitted and running now.
    pub model_phases_in_flight: IntGauge,
    /// Hand-in to stored feedback, per completed job.
    pub time_to_feedback: prometheus::Histogram,
    /// Loads of a configured model seen in `/api/ps` between two checks.
    pub ollama_model_loads: prometheus::IntCounterVec,
    /// 1 when the last Ollama check succeeded.
    pub ollama_up: IntGauge,
    /// 1 when a configured model is installed in Ollama.
    pub ollama_model_present: IntGaugeVec,
    /// Share of a loaded model in GPU memory (`size_vram / size` from `/api/ps`).
    pub ollama_gpu_offload: GaugeVec,
    /// 1, labelled with the AI backend and the runner version.
    pub build_info: IntGaugeVec,
}

impl Metrics {
    /// Creates and registers every metric, with every label value pre-created so that series
    /// exist (at 0) from the first scrape.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let jobs = JobMetrics::register(&registry)?;
        let queue = QueueMetrics::register(&registry)?;
        let ai = AiMetrics::register(&registry)?;
        let work = ModelWorkMetrics::register(&registry)?;
        Ok(Metrics {
            registry,
            inflight: jobs.inflight,
            processed: jobs.processed,
            retries: jobs.retries,
            failed: jobs.failed,
            job_duration: jobs.job_duration,
            phase_duration: jobs.phase_duration,
            lease_lost: queue.lease_lost,
            heartbeats: queue.heartbeats,
            leased: queue.leased,
            db_errors: queue.db_errors,
            queue_depth: queue.queue_depth,
            oldest_job_age: queue.oldest_job_age,
            feedback_parse: ai.feedback_parse,
            admission_wait: work.admission_wait,
            model_phases_in_flight: work.model_phases_in_flight,
            time_to_feedback: work.time_to_feedback,
            ollama_model_loads: work.ollama_model_loads,
            ollama_up: ai.ollama_up,
            ollama_model_present: ai.ollama_model_present,
            ollama_gpu_offload: ai.ollama_gpu_offload,
            build_info: ai.build_info,
        })
    }

    /// Records which backend this runner uses (`learning_runner_build_info`).
    pub fn set_build_info(&self, backend: &str) {
        self.build_info
            .with_label_values(&[backend, env!("CARGO_PKG_VERSION")])
            .set(1);
    }

    /// Records a queue-depth reading.
    pub fn observe_queue(&self, depth: &QueueDepth) {
        for (state, jobs) in [
            (contract::STATE_VISIBLE, depth.visible),
            (contract::STATE_DELAYED, depth.delayed),
            (contract::STATE_LEASED, depth.leased),
            (contract::STATE_FAILED, depth.failed),
        ] {
            self.queue_depth
                .with_label_values(&[state])
                .set(jobs as f64);
        }
        self.oldest_job_age.set(depth.oldest_visible_age_seconds);
    }

    /// The count of jobs finished with `outcome`.
    pub fn processed_count(&self, outcome: &str) -> u64 {
        self.processed.with_label_values(&[outcome]).get()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(event = "learning.metrics.encode_failed", error = %e);
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The jobs' metrics: the contract's four, and how long jobs and their phases take.
struct JobMetrics {
    inflight: IntGauge,
    processed: IntCounterVec,
    retries: IntCounterVec,
    failed: IntCounterVec,
    job_duration: HistogramVec,
    phase_duration: HistogramVec,
}

impl JobMetrics {
    fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let phases = [Phase::Vision, Phase::Feedback].map(Phase::as_str);
        let codes = ErrorCode::ALL.map(ErrorCode::as_str);
        Ok(JobMetrics {
            inflight: registered(
                registry,
                IntGauge::new(
                    "analysis_jobs_inflight",
                    "Learning jobs being processed right now.",
                )?,
            )?,
            processed: counter_vec(
                registry,
                Opts::new(
                    "ai_worker_processed_total",
                    "Learning jobs finished, by outcome.",
                ),
                "status",
                &OUTCOMES,
            )?,
            retries: counter_vec(
                registry,
                Opts::new(
                    "ai_worker_retry_total",
                    "Learning jobs scheduled for a retry, by phase.",
                ),
                "phase",
                &phases,
            )?,
            failed: counter_vec(
                registry,
                Opts::new(
                    "ai_worker_failed_total",
                    "Learning jobs failed for good, by error code.",
                ),
                "error_code",
                &codes,
            )?,
            job_duration: duration_histogram(
                registry,
                "learning_runner_job_duration_seconds",
                "Time from lease to finish of one job, by outcome.",
                "outcome",
            )?,
            phase_duration: duration_histogram(
                registry,
                "learning_runner_phase_duration_seconds",
                "Time spent in one processing phase.",
                "phase",
            )?,
        })
    }
}

/// The queue's and the leases' metrics: takeovers, heartbeats, leases taken, database errors
/// and the queue's depth.
struct QueueMetrics {
    lease_lost: IntCounter,
    heartbeats: IntCounterVec,
    leased: IntCounter,
    db_errors: IntCounterVec,
    queue_depth: GaugeVec,
    oldest_job_age: Gauge,
}

impl QueueMetrics {
    fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        Ok(QueueMetrics {
            lease_lost: registered(
                registry,
                IntCounter::new(
                    "learning_runner_lease_lost_total",
                    "Job results dropped because another runner took the lease over.",
                )?,
            )?,
            heartbeats: counter_vec(
                registry,
                Opts::new(
                    "learning_runner_heartbeats_total",
                    "Lease extensions, by result (busy: the job's own finish held the row, so it was skipped).",
                ),
                "result",
                &["extended", "busy", "lost", "error"],
            )?,
            leased: registered(
                registry,
                IntCounter::new(
                    "learning_runner_jobs_leased_total",
                    "Jobs leased by this runner.",
                )?,
            )?,
            db_errors: counter_vec(
                registry,
                Opts::new(
                    "learning_runner_db_errors_total",
                    "Database errors, by operation.",
                ),
                "operation",
                &[],
            )?,
            queue_depth: queue_depth(registry)?,
            oldest_job_age: registered(
                registry,
                Gauge::new(
                    contract::OLDEST_JOB_AGE_SECONDS,
                    "Age of the oldest job that is visible and waiting.",
                )?,
            )?,
        })
    }
}

/// `learning_runner_queue_jobs`, with a series for every state of the contract.
fn queue_depth(registry: &Registry) -> Result<GaugeVec, prometheus::Error> {
    let queue_depth = registered(
        registry,
        GaugeVec::new(
            Opts::new(
                contract::QUEUE_JOBS,
                "Jobs in the queue by state (visible, delayed, leased, failed).",
            ),
            &[contract::QUEUE_STATE_LABEL],
        )?,
    )?;
    for state in contract::QUEUE_STATES {
        queue_depth.with_label_values(&[state]);
    }
    Ok(queue_depth)
}

/// How model work flows to the GPU: admission waits and slots, time to feedback, model loads.
struct ModelWorkMetrics {
    admission_wait: HistogramVec,
    model_phases_in_flight: IntGauge,
    time_to_feedback: prometheus::Histogram,
    ollama_model_loads: prometheus::IntCounterVec,
}

impl ModelWorkMetrics {
    fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        Ok(ModelWorkMetrics {
            admission_wait: registered(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "learning_runner_model_admission_wait_seconds",
                        "Time a model phase waited in the runner for a model slot (AI_MAX_PARALLEL_CALLS).",
                    )
                    .buckets(DURATION_BUCKETS.to_vec()),
                    &["phase"],
                )?,
            )?,
            model_phases_in_flight: registered(
                registry,
                IntGauge::new(
                    "learning_runner_model_phases_in_flight",
                    "Model steps admitted and running now (at most AI_MAX_PARALLEL_CALLS per model).",
                )?,
            )?,
            time_to_feedback: registered(
                registry,
                prometheus::Histogram::with_opts(
                    HistogramOpts::new(
                        "learning_runner_time_to_feedback_seconds",
                        "Time from a submission's hand-in (job enqueued) to its stored feedback.",
                    )
                    .buckets(vec![
                        5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
                    ]),
                )?,
            )?,
            ollama_model_loads: registered(
                registry,
                prometheus::IntCounterVec::new(
                    Opts::new(
                        "learning_runner_ollama_model_loads_total",
                        "Loads of a configured model seen in Ollama's /api/ps between two checks (every 10 s); on a GPU that holds one model, each is a swap.",
                    ),
                    &["model"],
                )?,
            )?,
        })
    }
}

/// The AI backend's metrics: how feedback was parsed, Ollama's state, and the build info.
struct AiMetrics {
    feedback_parse: IntCounterVec,
    ollama_up: IntGauge,
    ollama_model_present: IntGaugeVec,
    ollama_gpu_offload: GaugeVec,
    build_info: IntGaugeVec,
}

impl AiMetrics {
    fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        Ok(AiMetrics {
            feedback_parse: counter_vec(
                registry,
                Opts::new(
                    "learning_runner_feedback_parse_total",
                    "Feedback analyses by how they were obtained.",
                ),
                "parse_status",
                &["parsed_structured", "parsed", "fallback", "no_criteria"],
            )?,
            ollama_up: registered(
                registry,
                IntGauge::new(
                    "learning_runner_ollama_up",
                    "1 when the last Ollama check succeeded, else 0.",
                )?,
            )?,
            ollama_model_present: registered(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "learning_runner_ollama_model_present",
                        "1 when a configured model is installed in Ollama.",
                    ),
                    &["model"],
                )?,
            )?,
            ollama_gpu_offload: registered(
                registry,
                GaugeVec::new(
                    Opts::new(
                        "learning_runner_ollama_gpu_offload_ratio",
                        "Share of a loaded model in GPU memory (size_vram / size); below 1 means a partial or full CPU fallback.",
                    ),
                    &["model"],
                )?,
            )?,
            build_info: registered(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "learning_runner_build_info",
                        "Always 1; the labels say which AI backend this runner uses and its version.",
                    ),
                    &["backend", "version"],
                )?,
            )?,
        })
    }
}

/// Registers `metric` in `registry` and hands it back.
fn registered<M>(registry: &Registry, metric: M) -> Result<M, prometheus::Error>
where
    M: Collector + Clone + 'static,
{
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// A registered counter with one label, its series for `values` pre-created.
fn counter_vec(
    registry: &Registry,
    opts: Opts,
    label: &str,
    values: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    let counter = registered(registry, IntCounterVec::new(opts, &[label])?)?;
    for value in values {
        counter.with_label_values(&[value]);
    }
    Ok(counter)
}

/// A registered histogram of durations in seconds ([`DURATION_BUCKETS`]) with one label.
fn duration_histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &str,
) -> Result<HistogramVec, prometheus::Error> {
    let opts = HistogramOpts::new(name, help).buckets(DURATION_BUCKETS.to_vec());
    registered(registry, HistogramVec::new(opts, &[label])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_the_contract_metrics_from_the_start() {
        let m = Metrics::new().unwrap();
        let text = m.render();
        for name in [
            "analysis_jobs_inflight 0",
            "ai_worker_processed_total{status=\"completed\"} 0",
            "ai_worker_retry_total{phase=\"vision\"} 0",
            "ai_worker_failed_total{error_code=\"feedback_failed\"} 0",
            "learning_runner_lease_lost_total 0",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }

    #[test]
    fn build_info_names_the_backend() {
        let m = Metrics::new().unwrap();
        m.set_build_info("local");
        let line = format!(
            "learning_runner_build_info{{backend=\"local\",version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(m.render().contains(&line), "{}", m.render());
    }

    #[test]
    fn queue_readings_are_exported() {
        let m = Metrics::new().unwrap();
        m.observe_queue(&QueueDepth {
            visible: 7,
            delayed: 1,
            leased: 2,
            failed: 3,
            oldest_visible_age_seconds: 12.5,
        });
        let text = m.render();
        assert!(text.contains("learning_runner_queue_jobs{state=\"visible\"} 7"));
        assert!(text.contains("learning_runner_oldest_job_age_seconds 12.5"));
    }
}
