//! The watch caches of the children and their pods: what a reconcile reads instead of asking
//! the API server. One watch per child kind (by the operator's `managed-by` label, the same
//! watch that wakes the owner's reconcile) and one of the pods; each fills a `Store` kept
//! here. Observing (Deployments, pods, the model claim, model-pull Jobs), pruning (which
//! children exist) and skipping unchanged applies (`crate::written`) read these stores, so a
//! steady-state reconcile sends no get and no list — with 1,000 LearningWorkers, one
//! reconcile each per requeue interval, those were 13 requests per reconcile.
//!
//! The stored objects drop `metadata.managedFields` (often the largest part of an object, and
//! never read here), which keeps the operator's memory proportional to what it reads.
//! A reconcile waits for every store's first list (`wait_until_ready`) before it reads.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;

use crate::desired::kinds::{ChildObject, KindVisitor};
use crate::desired::ChildKind;
use crate::error::ReconcileError;

/// How long a reconcile waits for the caches' first lists before it fails (and is retried
/// with backoff).
pub const READY_DEADLINE: Duration = Duration::from_secs(60);

/// The stores, one per child kind and one of pods, by the Rust type they hold.
pub struct Caches {
    stores: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
    /// Per store: a future that ends (true) once its first list is in.
    ready: Vec<Box<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>>,
}

/// The writing ends of the stores, taken one by one by the watches that fill them.
pub struct Feeds {
    writers: HashMap<TypeId, Box<dyn Any + Send>>,
}

/// Creates the store of `K` in both maps.
fn add<K: ChildObject>(caches: &mut Caches, feeds: &mut Feeds) {
    let (reader, writer) = reflector::store::<K>();
    let watched = reader.clone();
    caches.ready.push(Box::new(move || {
        let store = watched.clone();
        Box::pin(async move { store.wait_until_ready().await.is_ok() })
    }));
    caches.stores.insert(TypeId::of::<K>(), Box::new(reader));
    feeds.writers.insert(TypeId::of::<K>(), Box::new(writer));
}

/// Adds a store for a child kind, as its own type.
struct AddStore<'a> {
    caches: &'a mut Caches,
    feeds: &'a mut Feeds,
}

impl KindVisitor for AddStore<'_> {
    type Output = ();
    fn visit<K: ChildObject>(self, _kind: ChildKind) {
        add::<K>(self.caches, self.feeds);
    }
}

/// Empty stores for every child kind and pods, and their feeds.
pub fn new() -> (Caches, Feeds) {
    let mut caches = Caches {
        stores: HashMap::new(),
        ready: Vec::new(),
    };
    let mut feeds = Feeds {
        writers: HashMap::new(),
    };
    for kind in ChildKind::ALL {
        kind.visit(AddStore {
            caches: &mut caches,
            feeds: &mut feeds,
        });
    }
    add::<Pod>(&mut caches, &mut feeds);
    (caches, feeds)
}

/// Drops what no reconcile reads before an object is stored: `managedFields` everywhere; the
/// spec of the kinds only their metadata is read of (ServiceAccount, Service, NetworkPolicy,
/// PodDisruptionBudget: pruning and the skip of unchanged applies need names, owners,
/// labels, annotations, generation and resourceVersion), the pod template of Deployments
/// (their `replicas` and status are read) and the spec of pods (their status is read).
/// Jobs (the models in their arguments) and the model claim (its size and class) stay whole.
pub fn slim<K: ChildObject>(object: &mut K) {
    object.meta_mut().managed_fields = None;
    let any: &mut dyn Any = object;
    if let Some(d) = any.downcast_mut::<Deployment>() {
        if let Some(spec) = d.spec.as_mut() {
            spec.template = Default::default();
        }
    } else if let Some(p) = any.downcast_mut::<Pod>() {
        p.spec = None;
    } else if let Some(s) = any.downcast_mut::<Service>() {
        s.spec = None;
        s.status = None;
    } else if let Some(n) = any.downcast_mut::<NetworkPolicy>() {
        n.spec = None;
    } else if let Some(b) = any.downcast_mut::<PodDisruptionBudget>() {
        b.spec = None;
    } else if let Some(a) = any.downcast_mut::<ServiceAccount>() {
        a.secrets = None;
        a.image_pull_secrets = None;
    }
}

/// Whether `labels` has every entry of `selector` (equality only, as the operator selects).
pub fn labels_match(
    labels: Option<&BTreeMap<String, String>>,
    selector: &BTreeMap<String, String>,
) -> bool {
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

impl Feeds {
    /// The writer of the store of `K`; each is taken once.
    pub fn take<K: ChildObject>(&mut self) -> reflector::store::Writer<K> {
        let writer = self
            .writers
            .remove(&TypeId::of::<K>())
            .unwrap_or_else(|| panic!("no store (or taken twice): {}", K::KIND));
        *writer
            .downcast::<reflector::store::Writer<K>>()
            .unwrap_or_else(|_| panic!("the store of {} holds another type", K::KIND))
    }
}

impl Caches {
    fn store<K: ChildObject>(&self) -> &Store<K> {
        self.stores
            .get(&TypeId::of::<K>())
            .and_then(|s| s.downcast_ref::<Store<K>>())
            .unwrap_or_else(|| panic!("no store of {}", K::KIND))
    }

    /// The cached `K` named `name` in `ns`.
    pub fn get<K: ChildObject>(&self, ns: &str, name: &str) -> Option<Arc<K>> {
        self.store::<K>().get(&ObjectRef::<K>::new(name).within(ns))
    }

    /// The cached objects of `K` in `ns` whose labels match `selector` (see [`labels_match`]).
    pub fn matching<K: ChildObject>(
        &self,
        ns: &str,
        selector: &BTreeMap<String, String>,
    ) -> Vec<Arc<K>> {
        self.store::<K>()
            .state()
            .into_iter()
            .filter(|o| {
                o.meta().namespace.as_deref() == Some(ns)
                    && labels_match(o.meta().labels.as_ref(), selector)
            })
            .collect()
    }

    /// Waits until every store has had its first list, at most [`READY_DEADLINE`].
    pub async fn wait_until_ready(&self) -> Result<(), ReconcileError> {
        let all = futures::future::join_all(self.ready.iter().map(|ready| ready()));
        match tokio::time::timeout(READY_DEADLINE, all).await {
            Ok(results) if results.iter().all(|r| *r) => Ok(()),
            _ => Err(ReconcileError::CachesNotReady),
        }
    }

    /// Caches holding exactly `objects` (each deserialised by its `kind`; other kinds are
    /// ignored), all ready: for tests and tools that run a reconcile without watches.
    pub fn holding(objects: &[serde_json::Value]) -> Caches {
        let (caches, mut feeds) = new();
        for kind in ChildKind::ALL {
            kind.visit(Fill {
                feeds: &mut feeds,
                objects,
            });
        }
        Fill {
            feeds: &mut feeds,
            objects,
        }
        .fill::<Pod>();
        caches
    }
}

/// Fills the store of a kind from JSON objects and marks it ready.
struct Fill<'a> {
    feeds: &'a mut Feeds,
    objects: &'a [serde_json::Value],
}

impl Fill<'_> {
    fn fill<K: ChildObject>(self) {
        let mut writer = self.feeds.take::<K>();
        writer.apply_watcher_event(&watcher::Event::Init);
        for o in self.objects.iter().filter(|o| o["kind"] == K::KIND) {
            let object: K = serde_json::from_value(o.clone())
                .unwrap_or_else(|e| panic!("a cached {}: {e}", K::KIND));
            writer.apply_watcher_event(&watcher::Event::InitApply(object));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
    }
}

impl KindVisitor for Fill<'_> {
    type Output = ();
    fn visit<K: ChildObject>(self, _kind: ChildKind) {
        self.fill::<K>();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors_match_equality_terms_only_when_all_hold() {
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect()
        };
        let labels = map(&[("a", "1"), ("b", "2")]);
        assert!(labels_match(Some(&labels), &map(&[("a", "1"), ("b", "2")])));
        assert!(labels_match(Some(&labels), &map(&[("a", "1")])));
        assert!(!labels_match(
            Some(&labels),
            &map(&[("a", "1"), ("b", "3")])
        ));
        assert!(!labels_match(
            Some(&labels),
            &map(&[("a", "1"), ("c", "2")])
        ));
        assert!(!labels_match(None, &map(&[("a", "1")])));
        assert!(labels_match(None, &map(&[])));
    }

    #[tokio::test]
    async fn held_objects_are_found_by_name_and_labels_in_their_namespace() {
        let deployment = |ns: &str, name: &str, component: &str| {
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": name, "namespace": ns, "labels": {"c": component}}})
        };
        let caches = Caches::holding(&[
            deployment("a", "x", "runner"),
            deployment("a", "y", "ollama"),
            deployment("b", "x", "runner"),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "a"}}),
        ]);
        caches.wait_until_ready().await.unwrap();
        assert!(caches.get::<Deployment>("a", "x").is_some());
        assert!(caches.get::<Deployment>("a", "z").is_none());
        let runner = BTreeMap::from([("c".to_owned(), "runner".to_owned())]);
        let runners = caches.matching::<Deployment>("a", &runner);
        assert_eq!(runners.len(), 1);
        assert_eq!(runners[0].metadata.name.as_deref(), Some("x"));
        assert_eq!(caches.matching::<Pod>("a", &BTreeMap::new()).len(), 1);
    }

    #[test]
    fn slim_keeps_what_is_read_and_drops_the_rest() {
        let mut d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "r", "generation": 3, "labels": {"a": "1"},
                         "managedFields": [{"manager": "x"}]},
            "spec": {"replicas": 4, "selector": {},
                     "template": {"spec": {"containers": [{"name": "runner"}]}}},
            "status": {"readyReplicas": 2}}))
        .unwrap();
        slim(&mut d);
        assert_eq!(d.metadata.managed_fields, None);
        assert_eq!(d.metadata.generation, Some(3));
        assert!(d.metadata.labels.is_some());
        let spec = d.spec.unwrap();
        assert_eq!(spec.replicas, Some(4));
        assert_eq!(spec.template, Default::default());
        assert_eq!(d.status.unwrap().ready_replicas, Some(2));

        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Running"}}))
        .unwrap();
        slim(&mut pod);
        assert!(pod.spec.is_none());
        assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Running"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cache_whose_first_list_never_came_is_an_error_not_a_hang() {
        let (caches, _feeds) = new();
        let err = caches.wait_until_ready().await.unwrap_err();
        assert!(matches!(err, ReconcileError::CachesNotReady));
    }
}
