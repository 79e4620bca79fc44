//! What this operator wrote during its current leadership term, so a reconcile does not
//! depend on the watch cache having caught up with its own writes.
//!
//! The controller's cache of LearningWorkers is filled by a watch, which may deliver the
//! operator's last status write after the next (timed) reconcile has already started. Reading
//! the previous status from that stale copy would restart the builtin autoscaler's
//! stabilisation window, miss a `RunnersScaled` Event ("runners 1 → 5" needs the 1) or write a
//! status that was already written. The status this operator last wrote for an object (by
//! uid) is the freshest one there is — the operator is the status' only writer — so
//! [`Written::freshest`] puts it in place of the cached one.
//!
//! The memory lives in the controller's `Context`, which is made anew for each leadership
//! term: a new leader starts from what the API server says, never from a memory of a term in
//! which another replica may have written.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;

use learning_crds::{LearningWorker, LearningWorkerStatus};

/// The statuses this operator wrote, by the object's uid.
#[derive(Default)]
pub struct Written {
    statuses: Mutex<HashMap<String, LearningWorkerStatus>>,
}

impl Written {
    /// `lw` with the status this operator last wrote for it, when that differs from the
    /// cached one (the watch has not delivered the write yet); `lw` itself otherwise.
    pub fn freshest<'a>(&self, lw: &'a LearningWorker) -> Cow<'a, LearningWorker> {
        let Some(uid) = lw.metadata.uid.as_deref() else {
            return Cow::Borrowed(lw);
        };
        let statuses = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
        match statuses.get(uid) {
            Some(written) if lw.status.as_ref() != Some(written) => {
                let mut fresh = lw.clone();
                fresh.status = Some(written.clone());
                Cow::Owned(fresh)
            }
            _ => Cow::Borrowed(lw),
        }
    }

    /// Remembers `status` as written for `lw`.
    pub fn status_written(&self, lw: &LearningWorker, status: &LearningWorkerStatus) {
        if let Some(uid) = lw.metadata.uid.clone() {
            let mut statuses = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
            statuses.insert(uid, status.clone());
        }
    }

    /// Forgets every object whose uid `keep` refuses (deleted LearningWorkers).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut statuses = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
        statuses.retain(|uid, _| keep(uid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::fixtures::example;
    use learning_crds::status::AutoscalingStatus;

    fn worker(uid: &str, desired: Option<i32>) -> LearningWorker {
        let mut lw = example("cpu-only.yaml");
        lw.metadata.uid = Some(uid.into());
        lw.status = desired.map(|d| LearningWorkerStatus {
            autoscaling: Some(AutoscalingStatus {
                desired_replicas: Some(d),
                ..AutoscalingStatus::default()
            }),
            ..LearningWorkerStatus::default()
        });
        lw
    }

    #[test]
    fn the_written_status_wins_over_a_stale_cache_until_the_cache_catches_up() {
        let written = Written::default();
        let stale = worker("u1", None);
        assert!(matches!(written.freshest(&stale), Cow::Borrowed(_)));

        let caught_up = worker("u1", Some(1));
        written.status_written(&caught_up, caught_up.status.as_ref().unwrap());
        let fresh = written.freshest(&stale);
        assert!(matches!(fresh, Cow::Owned(_)));
        assert_eq!(fresh.status, caught_up.status);
        assert!(matches!(written.freshest(&caught_up), Cow::Borrowed(_)));

        // Another object (another uid, e.g. deleted and created again) is not affected.
        assert!(matches!(
            written.freshest(&worker("u2", None)),
            Cow::Borrowed(_)
        ));
        written.retain(|uid| uid != "u1");
        assert!(matches!(written.freshest(&stale), Cow::Borrowed(_)));
    }
}
