//! The operator's Prometheus metrics: reconciles, errors by bounded category, reconcile
//! duration, leadership.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Error categories, pre-created so every series exists from the start.
pub const CATEGORIES: [&str; 11] = [
    "invalid_spec",
    "invalid_object",
    "conflict",
    "forbidden",
    "not_found",
    "invalid",
    "throttled",
    "api_server",
    "api_other",
    "transport",
    "serialize",
];

/// Every metric, in its own registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Reconciles run.
    pub reconciles: IntCounter,
    /// Failed reconciles by category.
    pub errors: IntCounterVec,
    /// Reconcile duration.
    pub duration: Histogram,
    /// 1 while this replica leads.
    pub leader: IntGauge,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let reconciles = IntCounter::new(
            "learning_operator_reconciles_total",
            "Reconciles of LearningWorker resources.",
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "learning_operator_reconcile_errors_total",
                "Failed reconciles, by category.",
            ),
            &["category"],
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "learning_operator_reconcile_duration_seconds",
                "Duration of one reconcile.",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )?;
        let leader = IntGauge::new(
            "learning_operator_leader",
            "1 while this replica holds the leader Lease.",
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        for c in CATEGORIES {
            errors.with_label_values(&[c]);
        }
        Ok(Metrics {
            registry,
            reconciles,
            errors,
            duration,
            leader,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
