//! The operator's Prometheus metrics: reconciles, errors by bounded category, reconcile
//! duration, leadership, and per LearningWorker its conditions and queue depth as its status
//! says (series removed when the LearningWorker is gone).
//!
//! The per-worker series carry `namespace` (the LearningWorker's) and `learning_worker` (its
//! name), the labels the runners' series get from their ServiceMonitor, so alerts can join
//! them; the chart's operator ServiceMonitor scrapes with `honorLabels: true` so Prometheus
//! keeps that `namespace` instead of renaming it `exported_namespace`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use learning_crds::status::LearningWorkerStatus;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
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

/// The `state` values of `learning_operator_worker_queue_jobs`: the runners' own queue states.
pub use learning_contract::metrics::QUEUE_STATES;

/// (namespace, name) of a LearningWorker.
type WorkerKey = (String, String);
/// (type, status, reason) of one condition series.
type ConditionLabels = (String, String, String);

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
    /// 1 while this replica reconciles: it holds the leader Lease, or leader election is off.
    pub leader: IntGauge,
    /// 1 per condition of each LearningWorker, labelled with its current status and reason.
    pub worker_condition: IntGaugeVec,
    /// Queue depth per LearningWorker and state, from its status.
    pub worker_queue: IntGaugeVec,
    /// Age of the oldest visible job per LearningWorker, from its status.
    pub worker_oldest_job_age: IntGaugeVec,
    /// The condition series currently set, per worker (to remove the stale ones).
    conditions_set: Arc<Mutex<BTreeMap<WorkerKey, Vec<ConditionLabels>>>>,
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
            "1 while this replica reconciles: it holds the leader Lease, or leader election is off.",
        )?;
        let worker_condition = IntGaugeVec::new(
            Opts::new(
                "learning_operator_worker_condition",
                "1 for each condition of a LearningWorker, with its current status (True, False, Unknown) and reason.",
            ),
            &["namespace", "learning_worker", "type", "status", "reason"],
        )?;
        let worker_queue = IntGaugeVec::new(
            Opts::new(
                "learning_operator_worker_queue_jobs",
                "Jobs in a LearningWorker's queue by state, as its status last reported them.",
            ),
            &["namespace", "learning_worker", "state"],
        )?;
        let worker_oldest_job_age = IntGaugeVec::new(
            Opts::new(
                "learning_operator_worker_oldest_job_age_seconds",
                "Age of the oldest visible job of a LearningWorker, as its status last reported it.",
            ),
            &["namespace", "learning_worker"],
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        registry.register(Box::new(worker_condition.clone()))?;
        registry.register(Box::new(worker_queue.clone()))?;
        registry.register(Box::new(worker_oldest_job_age.clone()))?;
        for c in CATEGORIES {
            errors.with_label_values(&[c]);
        }
        Ok(Metrics {
            registry,
            reconciles,
            errors,
            duration,
            leader,
            worker_condition,
            worker_queue,
            worker_oldest_job_age,
            conditions_set: Arc::new(Mutex::new(BTreeMap::new())),
        })
    }

    /// Mirrors a LearningWorker's status just written: one series per condition (a changed
    /// status or reason replaces the old series), the queue when the status has one.
    pub fn observe_worker(&self, namespace: &str, name: &str, status: &LearningWorkerStatus) {
        let now: Vec<ConditionLabels> = status
            .conditions
            .iter()
            .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
            .collect();
        let Ok(mut set) = self.conditions_set.lock() else {
            return;
        };
        let before = set
            .insert((namespace.to_owned(), name.to_owned()), now.clone())
            .unwrap_or_default();
        for (t, s, r) in &now {
            self.worker_condition
                .with_label_values(&[namespace, name, t, s, r])
                .set(1);
        }
        for (t, s, r) in before.iter().filter(|l| !now.contains(l)) {
            let _ = self
                .worker_condition
                .remove_label_values(&[namespace, name, t, s, r]);
        }
        match &status.queue {
            Some(q) => {
                for (state, n) in QUEUE_STATES
                    .iter()
                    .zip([q.visible, q.delayed, q.leased, q.failed])
                {
                    self.worker_queue
                        .with_label_values(&[namespace, name, state])
                        .set(n);
                }
                self.worker_oldest_job_age
                    .with_label_values(&[namespace, name])
                    .set(q.oldest_job_age_seconds);
            }
            None => self.remove_queue(namespace, name),
        }
    }

    /// Removes every series of a LearningWorker.
    pub fn forget_worker(&self, namespace: &str, name: &str) {
        let Ok(mut set) = self.conditions_set.lock() else {
            return;
        };
        for (t, s, r) in set
            .remove(&(namespace.to_owned(), name.to_owned()))
            .unwrap_or_default()
        {
            let _ = self
                .worker_condition
                .remove_label_values(&[namespace, name, &t, &s, &r]);
        }
        self.remove_queue(namespace, name);
    }

    /// Forgets every LearningWorker for which `keep(namespace, name)` is false.
    pub fn retain_workers(&self, keep: impl Fn(&str, &str) -> bool) {
        let gone: Vec<WorkerKey> = match self.conditions_set.lock() {
            Ok(set) => set.keys().filter(|(n, w)| !keep(n, w)).cloned().collect(),
            Err(_) => return,
        };
        for (namespace, name) in gone {
            self.forget_worker(&namespace, &name);
        }
    }

    /// The LearningWorkers that have series, as (namespace, name).
    pub fn observed_workers(&self) -> Vec<(String, String)> {
        self.conditions_set
            .lock()
            .map(|set| set.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn remove_queue(&self, namespace: &str, name: &str) {
        for state in QUEUE_STATES {
            let _ = self
                .worker_queue
                .remove_label_values(&[namespace, name, state]);
        }
        let _ = self
            .worker_oldest_job_age
            .remove_label_values(&[namespace, name]);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use k8s_openapi::jiff::Timestamp;
    use learning_crds::status::QueueStatus;

    fn condition(type_: &str, status: &str, reason: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: String::new(),
            last_transition_time: Time(Timestamp::from_second(0).unwrap()),
            observed_generation: None,
        }
    }

    fn status(
        conditions: &[(&str, &str, &str)],
        queue: Option<QueueStatus>,
    ) -> LearningWorkerStatus {
        LearningWorkerStatus {
            conditions: conditions
                .iter()
                .map(|(t, s, r)| condition(t, s, r))
                .collect(),
            queue,
            ..LearningWorkerStatus::default()
        }
    }

    /// The sample lines of `name`, sorted.
    fn samples(m: &Metrics, name: &str) -> Vec<String> {
        let mut v: Vec<String> = m
            .render()
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn conditions_follow_the_status_and_stale_series_go() {
        let m = Metrics::new().unwrap();
        m.observe_worker(
            "gustav",
            "school-a",
            &status(
                &[
                    ("Ready", "False", "MinimumReplicasUnavailable"),
                    ("RunnersHealthy", "Unknown", "NoRunners"),
                ],
                None,
            ),
        );
        assert_eq!(
            samples(&m, "learning_operator_worker_condition"),
            [
                r#"learning_operator_worker_condition{learning_worker="school-a",namespace="gustav",reason="MinimumReplicasUnavailable",status="False",type="Ready"} 1"#,
                r#"learning_operator_worker_condition{learning_worker="school-a",namespace="gustav",reason="NoRunners",status="Unknown",type="RunnersHealthy"} 1"#,
            ]
        );
        // Ready flips and RunnersHealthy changes reason: one series per type, none left over.
        m.observe_worker(
            "gustav",
            "school-a",
            &status(
                &[
                    ("Ready", "True", "Ready"),
                    ("RunnersHealthy", "True", "Healthy"),
                ],
                None,
            ),
        );
        assert_eq!(
            samples(&m, "learning_operator_worker_condition"),
            [
                r#"learning_operator_worker_condition{learning_worker="school-a",namespace="gustav",reason="Healthy",status="True",type="RunnersHealthy"} 1"#,
                r#"learning_operator_worker_condition{learning_worker="school-a",namespace="gustav",reason="Ready",status="True",type="Ready"} 1"#,
            ]
        );
    }

    #[test]
    fn the_queue_is_mirrored_when_the_status_has_one() {
        let m = Metrics::new().unwrap();
        let queue = QueueStatus {
            visible: 7,
            delayed: 2,
            leased: 3,
            failed: 1,
            oldest_job_age_seconds: 42,
        };
        m.observe_worker("gustav", "school-a", &status(&[], Some(queue)));
        assert_eq!(
            samples(&m, "learning_operator_worker_queue_jobs"),
            [
                r#"learning_operator_worker_queue_jobs{learning_worker="school-a",namespace="gustav",state="delayed"} 2"#,
                r#"learning_operator_worker_queue_jobs{learning_worker="school-a",namespace="gustav",state="failed"} 1"#,
                r#"learning_operator_worker_queue_jobs{learning_worker="school-a",namespace="gustav",state="leased"} 3"#,
                r#"learning_operator_worker_queue_jobs{learning_worker="school-a",namespace="gustav",state="visible"} 7"#,
            ]
        );
        assert_eq!(
            samples(&m, "learning_operator_worker_oldest_job_age_seconds"),
            [
                r#"learning_operator_worker_oldest_job_age_seconds{learning_worker="school-a",namespace="gustav"} 42"#
            ]
        );
        m.observe_worker("gustav", "school-a", &status(&[], None));
        assert!(samples(&m, "learning_operator_worker_queue_jobs").is_empty());
        assert!(samples(&m, "learning_operator_worker_oldest_job_age_seconds").is_empty());
    }

    #[test]
    fn a_gone_worker_loses_every_series_and_the_others_keep_theirs() {
        let m = Metrics::new().unwrap();
        let queue = QueueStatus::default();
        for name in ["school-a", "school-b"] {
            m.observe_worker(
                "gustav",
                name,
                &status(&[("Ready", "True", "Ready")], Some(queue.clone())),
            );
        }
        m.retain_workers(|ns, name| ns == "gustav" && name == "school-b");
        assert_eq!(
            m.observed_workers(),
            [("gustav".to_owned(), "school-b".to_owned())]
        );
        let text = m.render();
        assert!(!text.contains("school-a"), "{text}");
        assert!(text.contains("school-b"), "{text}");
        m.forget_worker("gustav", "school-b");
        assert!(!m.render().contains("school-b"));
        assert!(m.observed_workers().is_empty());
    }
}
