//! Releasing the GPU while no one is working (`spec.ollama.idleScaleDown`), decided purely
//! from the queue the runners report and the time the queue was first seen empty.
//!
//! - Jobs in the queue (visible, leased or delayed for a retry), a model pull running, or a
//!   model known to be missing: Ollama runs (it is started again at once if it was scaled to
//!   zero); the idle clock is cleared. A pull is never cut off, and a failed one is not hidden.
//! - No job (or `spec.suspend`: no runner will ask for a model): the clock starts (`status.ollama.idleSince`, kept across operator restarts);
//!   once it is `afterSeconds` old, Ollama is scaled to zero.
//! - The queue unknown (no runner answered): nothing changes — the clock neither starts nor
//!   stops, so a released GPU stays released and a running Ollama is not stopped for lack
//!   of news (a clock that had already started keeps running).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use learning_crds::status::QueueStatus;
use learning_crds::LearningWorker;

use crate::observed::Observed;

/// The decision for one reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleGpu {
    /// Since when the queue has had no job, for `status.ollama.idleSince`.
    pub idle_since: Option<Time>,
    /// Ollama is scaled to zero (the GPU is free).
    pub released: bool,
    /// How long the queue must be empty (for messages).
    pub after_seconds: i32,
}

/// Whether the queue holds any job.
fn has_work(q: &QueueStatus) -> bool {
    q.visible > 0 || q.leased > 0 || q.delayed > 0
}

/// The decision for `lw` from what was observed (`None` without `idleScaleDown` or without a
/// managed Ollama).
pub fn decide_observed(lw: &LearningWorker, o: &Observed, now: Timestamp) -> Option<IdleGpu> {
    // A missing model counts while a pull can still bring it (pulls on, the last not failed);
    // otherwise it would hold the GPU forever.
    let pull_can_help =
        lw.spec.ollama.pull_models && o.pull_job.as_ref().is_none_or(|j| j.failed.is_none());
    let missing = crate::observe::missing_models(lw, o).is_some();
    let models_busy = o.pull_active || (missing && pull_can_help);
    decide(lw, o.queue.ok(), models_busy, now)
}

/// The decision for `lw`: the queue (`None`: unknown), whether Ollama has model work of its
/// own (a pull, missing models), the time.
pub fn decide(
    lw: &LearningWorker,
    queue: Option<&QueueStatus>,
    models_busy: bool,
    now: Timestamp,
) -> Option<IdleGpu> {
    let idle = lw.spec.ollama.idle_scale_down.as_ref()?;
    if !lw.spec.manages_ollama() {
        return None;
    }
    let previous = lw
        .status
        .as_ref()
        .and_then(|s| s.ollama.as_ref())
        .and_then(|o| o.idle_since.clone());
    let empty = QueueStatus::default();
    let queue = if lw.spec.suspend { Some(&empty) } else { queue };
    let idle_since = match queue {
        _ if models_busy => None,
        Some(q) if has_work(q) => None,
        Some(_) => Some(previous.unwrap_or(Time(now))),
        None => previous,
    };
    let after = SignedDuration::from_secs(i64::from(idle.after_seconds));
    let released = idle_since
        .as_ref()
        .is_some_and(|since| now.duration_since(since.0) >= after);
    Some(IdleGpu {
        idle_since,
        released,
        after_seconds: idle.after_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::fixtures::example;
    use learning_crds::ollama::{IdleScaleDown, OllamaMode};
    use learning_crds::status::{LearningWorkerStatus, OllamaStatus};

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn queue(visible: i64, leased: i64, delayed: i64) -> QueueStatus {
        QueueStatus {
            visible,
            leased,
            delayed,
            ..QueueStatus::default()
        }
    }

    /// The CPU example with a 600 s idle release, and the clock started at `since`.
    fn worker(since: Option<i64>) -> LearningWorker {
        let mut lw = example("cpu-only.yaml");
        lw.spec.ollama.idle_scale_down = Some(IdleScaleDown { after_seconds: 600 });
        lw.status = Some(LearningWorkerStatus {
            ollama: Some(OllamaStatus {
                idle_since: since.map(|s| Time(at(s))),
                ..OllamaStatus::default()
            }),
            ..LearningWorkerStatus::default()
        });
        lw
    }

    #[test]
    fn an_empty_queue_starts_the_clock_and_releases_the_gpu_after_the_bound() {
        let d = decide(&worker(None), Some(&queue(0, 0, 0)), false, at(0)).unwrap();
        assert_eq!((d.idle_since, d.released), (Some(Time(at(0))), false));
        let d = decide(&worker(Some(0)), Some(&queue(0, 0, 0)), false, at(599)).unwrap();
        assert_eq!((d.idle_since, d.released), (Some(Time(at(0))), false));
        let d = decide(&worker(Some(0)), Some(&queue(0, 0, 0)), false, at(600)).unwrap();
        assert_eq!((d.idle_since, d.released), (Some(Time(at(0))), true));
    }

    #[test]
    fn any_job_brings_ollama_back_and_clears_the_clock() {
        for q in [queue(1, 0, 0), queue(0, 1, 0), queue(0, 0, 1)] {
            let d = decide(&worker(Some(0)), Some(&q), false, at(5000)).unwrap();
            assert_eq!((d.idle_since, d.released), (None, false), "{q:?}");
        }
    }

    #[test]
    fn an_unknown_queue_changes_nothing() {
        let d = decide(&worker(None), None, false, at(5000)).unwrap();
        assert_eq!((d.idle_since, d.released), (None, false));
        let d = decide(&worker(Some(0)), None, false, at(5000)).unwrap();
        assert_eq!((d.idle_since, d.released), (Some(Time(at(0))), true));
    }

    #[test]
    fn a_pull_or_a_missing_model_keeps_ollama_running() {
        let d = decide(&worker(Some(0)), Some(&queue(0, 0, 0)), true, at(5000)).unwrap();
        assert_eq!((d.idle_since, d.released), (None, false));
    }

    #[test]
    fn what_ollama_was_seen_doing_decides_whether_it_is_busy() {
        use crate::observed::PullJob;
        use crate::probes::Probe;
        let lw = worker(Some(0));
        let empty = Observed {
            queue: Probe::Ok(queue(0, 0, 0)),
            ..Observed::default()
        };
        // Released: Ollama's tags unknown, no pull: stays released.
        let d = decide_observed(&lw, &empty, at(5000)).unwrap();
        assert!(d.released);
        // A pull running keeps Ollama.
        let pulling = Observed {
            pull_active: true,
            ..empty.clone()
        };
        assert!(!decide_observed(&lw, &pulling, at(5000)).unwrap().released);
        // A model missing while a pull can bring it keeps Ollama; after a failed pull it does not.
        let missing = Observed {
            tags: Probe::Ok(vec![]),
            ..empty.clone()
        };
        assert!(!decide_observed(&lw, &missing, at(5000)).unwrap().released);
        let failed = Observed {
            pull_job: Some(PullJob {
                name: "p".into(),
                models: vec![],
                succeeded: false,
                failed: Some("BackoffLimitExceeded".into()),
            }),
            ..missing
        };
        assert!(decide_observed(&lw, &failed, at(5000)).unwrap().released);
    }

    #[test]
    fn a_suspended_worker_counts_as_idle() {
        let mut lw = worker(None);
        lw.spec.suspend = true;
        let d = decide(&lw, None, false, at(0)).unwrap();
        assert_eq!((d.idle_since, d.released), (Some(Time(at(0))), false));
    }

    #[test]
    fn off_without_the_setting_or_without_a_managed_ollama() {
        let mut lw = worker(Some(0));
        lw.spec.ollama.idle_scale_down = None;
        assert_eq!(decide(&lw, Some(&queue(0, 0, 0)), false, at(5000)), None);
        let mut lw = worker(Some(0));
        lw.spec.ollama.mode = OllamaMode::External;
        assert_eq!(decide(&lw, Some(&queue(0, 0, 0)), false, at(5000)), None);
    }
}
