//! The fake API server's in-memory object store: objects keyed by (group, resource, namespace,
//! name), a global resourceVersion counter, server-set metadata (uid, creationTimestamp,
//! generation bumped on changes outside metadata and status), the status subresource split,
//! no-op writes that change nothing (no new resourceVersion, no watch event — as the real API
//! server, which keeps controllers from looping on their own status writes), a history of
//! changes for watches, and the garbage collector's job: dependents of a deleted owner are
//! deleted (or orphaned), and objects whose every owner is gone are collected.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::merge;
use super::resources::{self, ResourceType};
use super::selector::Selector;

/// Identity of a stored object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// API group.
    pub group: String,
    /// Resource (plural).
    pub plural: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl Key {
    /// The key of `name` in `namespace` of type `rt`.
    pub fn new(rt: &ResourceType, namespace: &str, name: &str) -> Self {
        Key {
            group: rt.group.into(),
            plural: rt.plural.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    fn is(&self, rt: &ResourceType) -> bool {
        self.group == rt.group && self.plural == rt.plural
    }
}

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Deleted.
    Deleted,
}

/// One change, as watches see it.
#[derive(Debug, Clone)]
pub struct Change {
    /// The resourceVersion of the change.
    pub rv: u64,
    /// The object's key.
    pub key: Key,
    /// What happened.
    pub kind: ChangeKind,
    /// The object before (for label-selector transitions).
    pub old: Option<Value>,
    /// The object after (for a deletion: its last state, with the deletion's resourceVersion).
    pub object: Value,
}

/// Why a store operation failed (mapped to an HTTP status by the server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// 404.
    NotFound(String),
    /// 409, on create.
    AlreadyExists(String),
    /// 409, resourceVersion precondition.
    Conflict(String),
    /// 400/422.
    Invalid(String),
    /// 410, a watch from a compacted resourceVersion.
    Gone(String),
}

impl StoreError {
    /// HTTP status code.
    pub fn code(&self) -> u16 {
        match self {
            StoreError::NotFound(_) => 404,
            StoreError::AlreadyExists(_) | StoreError::Conflict(_) => 409,
            StoreError::Invalid(_) => 422,
            StoreError::Gone(_) => 410,
        }
    }

    /// `Status.reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            StoreError::NotFound(_) => "NotFound",
            StoreError::AlreadyExists(_) => "AlreadyExists",
            StoreError::Conflict(_) => "Conflict",
            StoreError::Invalid(_) => "Invalid",
            StoreError::Gone(_) => "Expired",
        }
    }

    /// Human-readable message.
    pub fn message(&self) -> &str {
        match self {
            StoreError::NotFound(m)
            | StoreError::AlreadyExists(m)
            | StoreError::Conflict(m)
            | StoreError::Invalid(m)
            | StoreError::Gone(m) => m,
        }
    }
}

/// Which part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// The main resource (status is kept when the type has a status subresource).
    Main,
    /// The `/status` subresource (only status changes).
    Status,
}

/// Deletion propagation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Dependents are deleted (here: at once, like `Foreground`).
    Background,
    /// Dependents are deleted before the owner (here: the same as `Background`).
    Foreground,
    /// Dependents lose the owner reference and stay.
    Orphan,
}

/// The changes kept for watches that resume; beyond it the older half is compacted.
const HISTORY_LIMIT: usize = 100_000;

/// The store.
pub struct Store {
    objects: BTreeMap<Key, Value>,
    rv: u64,
    uids: u64,
    /// The uids of the stored objects (owner lookups without a scan).
    live_uids: std::collections::HashSet<String>,
    history: Vec<Change>,
    compacted_rv: u64,
    /// The last configuration each field manager applied, per object and target.
    applied: HashMap<(Key, Target), BTreeMap<String, Value>>,
    tx: broadcast::Sender<Change>,
}

fn strip_for_generation(v: &Value) -> Value {
    let mut v = v.clone();
    if let Value::Object(m) = &mut v {
        m.remove("metadata");
        m.remove("status");
    }
    v
}

fn owner_uids(obj: &Value) -> Vec<String> {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r["uid"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

impl Default for Store {
    fn default() -> Self {
        Store {
            objects: BTreeMap::new(),
            rv: 1,
            uids: 0,
            live_uids: std::collections::HashSet::new(),
            history: Vec::new(),
            compacted_rv: 0,
            applied: HashMap::new(),
            tx: broadcast::channel(4096).0,
        }
    }
}

impl Store {
    /// The current (latest) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// A receiver of every future change.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.tx.subscribe()
    }

    /// One object.
    pub fn get(&self, key: &Key) -> Option<&Value> {
        self.objects.get(key)
    }

    /// Every object (for assertions).
    pub fn all(&self) -> Vec<(Key, Value)> {
        self.objects
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Objects of `rt`, in `namespace` (or all), matching `selector`, ordered by key.
    pub fn list(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        selector: &Selector,
    ) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|(k, _)| k.is(rt) && namespace.is_none_or(|ns| k.namespace == ns))
            .filter(|(_, v)| selector.matches_object(v))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Changes after `rv`; `Gone` when the history before them was compacted.
    pub fn changes_after(&self, rv: u64) -> Result<Vec<Change>, StoreError> {
        if rv < self.compacted_rv {
            return Err(StoreError::Gone(format!(
                "too old resource version: {rv} ({})",
                self.compacted_rv
            )));
        }
        let start = self.history.partition_point(|c| c.rv <= rv);
        Ok(self.history[start..].to_vec())
    }

    /// Forgets the change history (as etcd compaction does): older watches get 410 Gone.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted_rv = self.rv;
    }

    fn next_uid(&mut self) -> String {
        self.uids += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.uids)
    }

    fn record(&mut self, key: Key, kind: ChangeKind, old: Option<Value>, object: Value) {
        let change = Change {
            rv: self.rv,
            key,
            kind,
            old,
            object,
        };
        self.history.push(change.clone());
        // Compaction, as etcd does: older watches get 410 Gone and list again.
        if self.history.len() > HISTORY_LIMIT {
            let dropped = self.history.len() - HISTORY_LIMIT / 2;
            self.compacted_rv = self.history[dropped - 1].rv;
            self.history.drain(..dropped);
        }
        let _ = self.tx.send(change); // no receivers is fine
    }

    /// Stores `candidate` as the new state of `key` (created when `old` is `None`), setting
    /// server-owned metadata; a write that changes nothing returns the stored object as is.
    fn write(
        &mut self,
        rt: &ResourceType,
        key: &Key,
        candidate: Value,
        target: Target,
        keep_status: bool,
    ) -> Value {
        let old = self.objects.get(key).cloned();
        let mut next = candidate;
        if !next.is_object() {
            next = json!({});
        }
        if let Some(old) = &old {
            match target {
                Target::Status => {
                    let status = next.get("status").cloned();
                    next = old.clone();
                    match status {
                        Some(s) => next["status"] = s,
                        None => {
                            next.as_object_mut().map(|m| m.remove("status"));
                        }
                    }
                }
                Target::Main if rt.status_subresource && !keep_status => match old.get("status") {
                    Some(s) => next["status"] = s.clone(),
                    None => {
                        next.as_object_mut().map(|m| m.remove("status"));
                    }
                },
                Target::Main => {}
            }
        } else if rt.status_subresource && !keep_status {
            next.as_object_mut().map(|m| m.remove("status"));
        }
        next["apiVersion"] = rt.api_version().into();
        next["kind"] = rt.kind.into();
        if !next["metadata"].is_object() {
            next["metadata"] = json!({});
        }
        let meta = &mut next["metadata"];
        meta["name"] = key.name.clone().into();
        meta["namespace"] = key.namespace.clone().into();
        if let Some(m) = meta.as_object_mut() {
            m.remove("managedFields");
        }
        let kind = match &old {
            Some(old) => {
                for f in ["uid", "creationTimestamp", "resourceVersion"] {
                    next["metadata"][f] = old["metadata"][f].clone();
                }
                let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
                let changed = strip_for_generation(old) != strip_for_generation(&next);
                next["metadata"]["generation"] = (generation + i64::from(changed)).into();
                if &next == old {
                    return next;
                }
                ChangeKind::Modified
            }
            None => {
                next["metadata"]["uid"] = self.next_uid().into();
                next["metadata"]["creationTimestamp"] = Timestamp::now()
                    .strftime("%Y-%m-%dT%H:%M:%SZ")
                    .to_string()
                    .into();
                next["metadata"]["generation"] = 1.into();
                ChangeKind::Added
            }
        };
        self.rv += 1;
        next["metadata"]["resourceVersion"] = self.rv.to_string().into();
        if let Some(uid) = next["metadata"]["uid"].as_str() {
            self.live_uids.insert(uid.to_owned());
        }
        self.objects.insert(key.clone(), next.clone());
        self.record(key.clone(), kind, old, next.clone());
        // A dependent written after its owner was deleted: the garbage collector deletes it.
        let owners = owner_uids(&next);
        if !owners.is_empty() && owners.iter().all(|u| !self.live_uids.contains(u)) {
            let _ = self.delete(rt, key, Some(Propagation::Background));
        }
        next
    }

    /// Creates an object (`metadata.generateName` gives a name when there is none).
    /// `keep_status` keeps a given status (test setup; API clients cannot).
    pub fn create(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        obj: Value,
        keep_status: bool,
    ) -> Result<Value, StoreError> {
        let name = match obj["metadata"]["name"].as_str() {
            Some(n) if !n.is_empty() => n.to_owned(),
            _ => match obj["metadata"]["generateName"].as_str() {
                Some(prefix) => format!("{prefix}{:05x}", self.rv + 1),
                None => return Err(StoreError::Invalid("metadata.name: Required value".into())),
            },
        };
        if let Some(ns) = obj["metadata"]["namespace"].as_str() {
            if ns != namespace {
                return Err(StoreError::Invalid(format!(
                    "the namespace of the object ({ns}) does not match the namespace on the request ({namespace})"
                )));
            }
        }
        let key = Key::new(rt, namespace, &name);
        if self.objects.contains_key(&key) {
            return Err(StoreError::AlreadyExists(format!(
                "{} \"{name}\" already exists",
                rt.plural
            )));
        }
        let mut obj = obj;
        obj["metadata"]["name"] = name.into();
        Ok(self.write(rt, &key, obj, Target::Main, keep_status))
    }

    fn existing(&self, rt: &ResourceType, key: &Key) -> Result<Value, StoreError> {
        self.objects.get(key).cloned().ok_or_else(|| {
            StoreError::NotFound(format!("{} \"{}\" not found", rt.plural, key.name))
        })
    }

    /// Replaces an object (PUT); a given `metadata.resourceVersion` must be the current one.
    pub fn replace(
        &mut self,
        rt: &ResourceType,
        key: &Key,
        obj: Value,
        target: Target,
    ) -> Result<Value, StoreError> {
        let old = self.existing(rt, key)?;
        if let Some(rv) = obj["metadata"]["resourceVersion"].as_str() {
            if rv
                != old["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
            {
                return Err(StoreError::Conflict(format!(
                    "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
                    rt.plural, key.name
                )));
            }
        }
        if obj["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n != key.name)
        {
            return Err(StoreError::Invalid(
                "metadata.name does not match the URL".into(),
            ));
        }
        Ok(self.write(rt, key, obj, target, false))
    }

    /// JSON merge patch.
    pub fn merge_patch(
        &mut self,
        rt: &ResourceType,
        key: &Key,
        patch: &Value,
        target: Target,
    ) -> Result<Value, StoreError> {
        let mut obj = self.existing(rt, key)?;
        merge::merge_patch(&mut obj, patch);
        Ok(self.write(rt, key, obj, target, false))
    }

    /// Server-side apply (simplified, see `merge`); creates the object on the main resource.
    /// Returns the object and whether it was created.
    pub fn apply(
        &mut self,
        rt: &ResourceType,
        key: &Key,
        config: &Value,
        manager: &str,
        target: Target,
    ) -> Result<(Value, bool), StoreError> {
        if config["apiVersion"].as_str() != Some(rt.api_version().as_str())
            || config["kind"].as_str() != Some(rt.kind)
        {
            return Err(StoreError::Invalid(format!(
                "apply needs apiVersion {} and kind {}, got {} {}",
                rt.api_version(),
                rt.kind,
                config["apiVersion"],
                config["kind"]
            )));
        }
        for (field, expected) in [("name", &key.name), ("namespace", &key.namespace)] {
            if let Some(v) = config["metadata"][field].as_str() {
                if v != expected {
                    return Err(StoreError::Invalid(format!(
                        "metadata.{field} {v} does not match the URL ({expected})"
                    )));
                }
            }
        }
        let slot = (key.clone(), target);
        let (mut obj, created) = match self.objects.get(key) {
            Some(o) => (o.clone(), false),
            None if target == Target::Main => (json!({}), true),
            None => return Err(self.existing(rt, key).unwrap_err()),
        };
        let managers = self.applied.entry(slot).or_default();
        let others: Vec<&Value> = managers
            .iter()
            .filter(|(m, _)| m.as_str() != manager)
            .map(|(_, c)| c)
            .collect();
        merge::apply(&mut obj, managers.get(manager), config, &others);
        managers.insert(manager.to_owned(), config.clone());
        Ok((self.write(rt, key, obj, target, false), created))
    }

    /// Deletes an object and collects its dependents per `propagation` (default: the type's).
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        key: &Key,
        propagation: Option<Propagation>,
    ) -> Result<Value, StoreError> {
        let mut obj = self.objects.remove(key).ok_or_else(|| {
            StoreError::NotFound(format!("{} \"{}\" not found", rt.plural, key.name))
        })?;
        if let Some(uid) = obj["metadata"]["uid"].as_str() {
            self.live_uids.remove(uid);
        }
        self.applied.retain(|(k, _), _| k != key);
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = self.rv.to_string().into();
        self.record(key.clone(), ChangeKind::Deleted, None, obj.clone());
        let propagation = propagation.unwrap_or(if rt.orphan_by_default {
            Propagation::Orphan
        } else {
            Propagation::Background
        });
        if let Some(uid) = obj["metadata"]["uid"].as_str() {
            self.collect(uid, propagation);
        }
        Ok(obj)
    }

    /// The garbage collector's reaction to deleting the owner `uid`.
    fn collect(&mut self, uid: &str, propagation: Propagation) {
        let dependents: Vec<Key> = self
            .objects
            .iter()
            .filter(|(_, v)| owner_uids(v).iter().any(|u| u == uid))
            .map(|(k, _)| k.clone())
            .collect();
        for key in dependents {
            let Some(rt) = resources::RESOURCES.iter().find(|r| key.is(r)) else {
                continue;
            };
            let Some(mut obj) = self.objects.get(&key).cloned() else {
                continue; // already collected through another owner
            };
            let remaining: Vec<Value> = obj["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["uid"] != uid)
                .cloned()
                .collect();
            if propagation == Propagation::Orphan || !remaining.is_empty() {
                obj["metadata"]["ownerReferences"] = Value::Array(remaining);
                self.write(rt, &key, obj, Target::Main, true);
            } else {
                let _ = self.delete(rt, &key, Some(Propagation::Background));
            }
        }
    }
}

/// What a watch of `rt` in `namespace` with `selector` sees of `change`: the event type and
/// object, or nothing. An object that stops (starts) matching the selector is DELETED
/// (ADDED) for that watch, as on the real API server.
pub fn watch_event(
    change: &Change,
    rt: &ResourceType,
    namespace: Option<&str>,
    selector: &Selector,
) -> Option<(&'static str, Value)> {
    if !change.key.is(rt) || namespace.is_some_and(|ns| ns != change.key.namespace) {
        return None;
    }
    let now = selector.matches_object(&change.object);
    let before = change
        .old
        .as_ref()
        .is_some_and(|o| selector.matches_object(o));
    let kind = match change.kind {
        ChangeKind::Added if now => "ADDED",
        ChangeKind::Deleted if now => "DELETED",
        ChangeKind::Modified => match (before, now) {
            (true, true) => "MODIFIED",
            (false, true) => "ADDED",
            (true, false) => "DELETED",
            (false, false) => return None,
        },
        _ => return None,
    };
    Some((kind, change.object.clone()))
}
