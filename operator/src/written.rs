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
//! The same memory lets a reconcile skip applies that would change nothing: a child is applied
//! again only when what the operator wants of it changed since its last apply (a digest of
//! the object), or when the live object (from the watch caches) is not the one that apply
//! left — another object of the same name (a new uid), its `generation` moved (someone
//! edited its spec), or, for kinds without a generation, its `resourceVersion` did — or it
//! lost a label, an annotation or the owner reference the operator sets, or it is gone. Objects of kinds the operator cannot watch (KEDA's) are applied again
//! after [`UNWATCHED_RESYNC`] at the latest. A steady-state reconcile therefore writes nothing.
//!
//! The memory lives in the controller's `Context`, which is made anew for each leadership
//! term: a new leader starts from what the API server says, never from a memory of a term in
//! which another replica may have written.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use learning_crds::{LearningWorker, LearningWorkerStatus};

use crate::desired::kinds::ChildObject;

/// How long an applied object the operator cannot watch (KEDA's) is trusted unchanged.
pub const UNWATCHED_RESYNC: Duration = Duration::from_secs(600);

/// A child by its owner's uid, its kind and its name.
type ChildKey = (String, &'static str, String);

/// A child as this operator last applied it.
#[derive(Debug, Clone)]
struct AppliedChild {
    digest: u64,
    uid: Option<String>,
    generation: Option<i64>,
    resource_version: Option<String>,
    at: Instant,
}

/// The statuses and children this operator wrote, by the owning object's uid.
#[derive(Default)]
pub struct Written {
    statuses: Mutex<HashMap<String, LearningWorkerStatus>>,
    children: Mutex<HashMap<ChildKey, AppliedChild>>,
}

/// The uid of the controller owner of `object` ("" when it has none).
fn owner_uid<K: ChildObject>(object: &K) -> String {
    object
        .meta()
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.clone())
        .unwrap_or_default()
}

fn key<K: ChildObject>(object: &K) -> ChildKey {
    (
        owner_uid(object),
        K::KIND,
        object.meta().name.clone().unwrap_or_default(),
    )
}

/// A digest of the whole object as it would be applied.
fn digest<K: ChildObject>(object: &K) -> u64 {
    let mut hasher = DefaultHasher::new();
    serde_json::to_vec(object)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

/// Whether `live` has every entry of `wanted`.
fn has_all(
    live: Option<&BTreeMap<String, String>>,
    wanted: Option<&BTreeMap<String, String>>,
) -> bool {
    wanted
        .into_iter()
        .flatten()
        .all(|(k, v)| live.and_then(|l| l.get(k)) == Some(v))
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

    /// Whether applying `desired` again would change nothing: it is what this operator last
    /// applied, and `live` (the cached object) is still what that apply left.
    pub fn child_unchanged<K: ChildObject>(&self, desired: &K, live: Option<&K>) -> bool {
        let Some(live) = live else { return false };
        let children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        let Some(applied) = children.get(&key(desired)) else {
            return false;
        };
        let meta = live.meta();
        let same_version = match applied.generation.filter(|g| *g > 0) {
            Some(generation) => meta.generation == Some(generation),
            None => meta.resource_version == applied.resource_version,
        };
        let owners = meta.owner_references.as_deref().unwrap_or_default();
        let owned = desired
            .meta()
            .owner_references
            .iter()
            .flatten()
            .all(|want| {
                owners
                    .iter()
                    .any(|have| have.uid == want.uid && have.controller == want.controller)
            });
        applied.digest == digest(desired)
            && meta.uid == applied.uid
            && owned
            && same_version
            && meta.deletion_timestamp.is_none()
            && has_all(meta.labels.as_ref(), desired.meta().labels.as_ref())
            && has_all(
                meta.annotations.as_ref(),
                desired.meta().annotations.as_ref(),
            )
    }

    /// Whether `desired`, of a kind the operator does not watch, was applied as it is less
    /// than [`UNWATCHED_RESYNC`] ago.
    pub fn unwatched_unchanged<K: ChildObject>(&self, desired: &K, now: Instant) -> bool {
        let children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        children.get(&key(desired)).is_some_and(|applied| {
            applied.digest == digest(desired) && now.duration_since(applied.at) < UNWATCHED_RESYNC
        })
    }

    /// Remembers that `desired` was applied and the API server answered with `returned`.
    pub fn child_applied<K: ChildObject>(&self, desired: &K, returned: &K, now: Instant) {
        let applied = AppliedChild {
            digest: digest(desired),
            uid: returned.meta().uid.clone(),
            generation: returned.meta().generation,
            resource_version: returned.meta().resource_version.clone(),
            at: now,
        };
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        children.insert(key(desired), applied);
    }

    /// Forgets an applied child of the owner `owner_uid` (it was deleted).
    pub fn child_gone(&self, owner_uid: &str, kind: &'static str, name: &str) {
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        children.remove(&(owner_uid.to_owned(), kind, name.to_owned()));
    }

    /// Forgets every object whose uid `keep` refuses (deleted LearningWorkers), and the
    /// children they owned.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut statuses = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
        statuses.retain(|uid, _| keep(uid));
        drop(statuses);
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        children.retain(|(uid, _, _), _| keep(uid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::fixtures::example;
    use k8s_openapi::api::core::v1::ServiceAccount;
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

    /// A ServiceAccount (no `generation`: the resourceVersion path) as applied and as live.
    fn account(uid: &str, rv: &str, owner: Option<&str>, label: bool) -> ServiceAccount {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "r", "namespace": "ns", "uid": uid, "resourceVersion": rv,
                "labels": if label { serde_json::json!({"a": "1"}) } else { serde_json::json!({}) },
                "ownerReferences": owner.map(|o| vec![serde_json::json!({"apiVersion": "v", "kind": "K",
                    "name": "w", "uid": o, "controller": true})]).unwrap_or_default()}}))
        .unwrap()
    }

    #[test]
    fn an_apply_is_skipped_only_while_the_live_object_is_what_it_left() {
        let written = Written::default();
        let desired = account("", "", Some("w1"), true);
        let returned = account("c1", "5", Some("w1"), true);
        let now = Instant::now();
        assert!(
            !written.child_unchanged(&desired, Some(&returned)),
            "never applied"
        );
        written.child_applied(&desired, &returned, now);
        assert!(written.child_unchanged(&desired, Some(&returned)));
        // Gone, changed by someone (new resourceVersion), recreated (new uid), an owner
        // reference or a label removed: applied again.
        assert!(!written.child_unchanged(&desired, None));
        let cases = [
            account("c1", "6", Some("w1"), true),
            account("c2", "5", Some("w1"), true),
            account("c1", "5", None, true),
            account("c1", "5", Some("w1"), false),
        ];
        for live in cases {
            assert!(!written.child_unchanged(&desired, Some(&live)), "{live:?}");
        }
        // Something else wanted: applied again.
        let other = account("", "", Some("w1"), false);
        assert!(!written.child_unchanged(&other, Some(&returned)));
        // Forgotten once pruned.
        written.child_gone("w1", "ServiceAccount", "r");
        assert!(!written.child_unchanged(&desired, Some(&returned)));
    }

    #[test]
    fn unwatched_objects_are_applied_again_after_the_resync() {
        let written = Written::default();
        let desired = account("", "", Some("w1"), true);
        let then = Instant::now();
        written.child_applied(&desired, &desired, then);
        assert!(written.unwatched_unchanged(&desired, then));
        assert!(!written.unwatched_unchanged(&desired, then + UNWATCHED_RESYNC));
    }
}
