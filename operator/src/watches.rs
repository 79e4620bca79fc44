//! The watches that feed the controller: the LearningWorkers (only the events that call for
//! a reconcile, `spec_changes`), and one watch per child kind and of the operator's pods,
//! each filling its store in `crate::caches` (`cached_watch`); a child kind's watch also wakes
//! its owner's reconcile (`Owns`, what `owns()` does).

use std::collections::HashMap;

use futures::{Stream, StreamExt};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, Controller, WatchStreamExt};
use kube::{Api, Client};
use learning_crds::LearningWorker;

use crate::caches::{self, Feeds};
use crate::desired::kinds::{ChildObject, KindVisitor};
use crate::desired::ChildKind;

/// The API of `K` in `namespace`, or in all namespaces.
pub fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The watch of `K` by the operator's labels, filling its cache (`caches::slim` objects);
/// yields every touched object.
pub fn cached_watch<K: ChildObject>(
    client: &Client,
    namespace: Option<&str>,
    config: &watcher::Config,
    feeds: &mut Feeds,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static {
    watcher(api::<K>(client, namespace), config.clone())
        .default_backoff()
        .modify(caches::slim::<K>)
        .reflect(feeds.take::<K>())
        .touched_objects()
}

/// Adds the watch of one child kind (by the operator's labels) to the controller: it fills
/// the kind's cache and wakes the owner's reconcile (as `owns()` does).
pub struct Owns<'a> {
    /// The controller to add the watch to.
    pub controller: Controller<LearningWorker>,
    /// The API client.
    pub client: &'a Client,
    /// The watched namespace (`None`: all).
    pub namespace: Option<&'a str>,
    /// The watch configuration (the operator's label selector).
    pub config: &'a watcher::Config,
    /// Where the kind's store is fed.
    pub feeds: &'a mut Feeds,
}

impl KindVisitor for Owns<'_> {
    type Output = Controller<LearningWorker>;
    fn visit<K: ChildObject>(self, _kind: ChildKind) -> Self::Output {
        let stream = cached_watch::<K>(self.client, self.namespace, self.config, self.feeds);
        self.controller.owns_stream(stream)
    }
}

/// The LearningWorker events that call for a reconcile: a new object, a new `generation` (a
/// spec change) and a deletion — not the operator's own status writes (nor other
/// metadata-only changes), which would otherwise reconcile every worker once more after each
/// reconcile. Polling (health, queue, models) is the timed requeue's job.
pub fn spec_changes<S>(events: S) -> impl Stream<Item = Result<LearningWorker, watcher::Error>>
where
    S: Stream<Item = Result<watcher::Event<LearningWorker>, watcher::Error>>,
{
    let mut generations: HashMap<ObjectRef<LearningWorker>, Option<i64>> = HashMap::new();
    events.filter_map(move |event| {
        let out = match event {
            Ok(watcher::Event::Apply(lw) | watcher::Event::InitApply(lw)) => {
                let generation = lw.metadata.generation;
                let seen = generations.insert(ObjectRef::from_obj(&lw), generation);
                (seen != Some(generation)).then_some(Ok(lw))
            }
            Ok(watcher::Event::Delete(lw)) => {
                generations.remove(&ObjectRef::from_obj(&lw));
                Some(Ok(lw))
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
            Err(e) => Some(Err(e)),
        };
        futures::future::ready(out)
    })
}
