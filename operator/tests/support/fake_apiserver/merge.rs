//! Patch semantics: JSON merge patch (RFC 7386) and a simplified server-side apply.
//!
//! Server-side apply, simplified: the server remembers the last configuration each field
//! manager applied to an object; a new apply first removes the fields the manager applied
//! before and no longer applies — unless another manager's last configuration still sets
//! them (shared ownership keeps a field, as on the real API server; this is how a field is
//! handed over) — then merges the new configuration in (maps by key, everything else — lists
//! included — replaced whole). With one field manager owning the spec of every
//! child (the operator's `learning-operator`, with `force`) and other writers touching only
//! `status` (a separate subresource), this gives the same object as real SSA. Not simulated:
//! conflicts between managers, `listType=map` merging of lists shared by several managers,
//! and `managedFields` in the returned object.

use serde_json::{Map, Value};

/// Applies a JSON merge patch to `target`.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target_map) = target else {
        return;
    };
    for (k, v) in patch_map {
        if v.is_null() {
            target_map.remove(k);
        } else {
            merge_patch(target_map.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// Removes from `target` what `previous` set and neither `config` nor any of `others` (the
/// other managers' configurations at the same place) sets.
fn remove_stale(target: &mut Value, previous: &Value, config: &Value, others: &[&Value]) {
    let (Value::Object(t), Value::Object(p)) = (target, previous) else {
        return;
    };
    let empty = Value::Object(Map::new());
    for (k, pv) in p {
        let kept: Vec<&Value> = others.iter().filter_map(|o| o.get(k)).collect();
        match config.get(k) {
            None if kept.is_empty() => {
                t.remove(k);
            }
            None if pv.is_object() => {
                if let Some(tv) = t.get_mut(k) {
                    remove_stale(tv, pv, &empty, &kept);
                }
            }
            Some(cv) if pv.is_object() && cv.is_object() => {
                if let Some(tv) = t.get_mut(k) {
                    remove_stale(tv, pv, cv, &kept);
                }
            }
            _ => {}
        }
    }
}

/// Merges `config` into `target`: maps by key, any other value replaced.
fn merge_config(target: &mut Value, config: &Value) {
    match (target, config) {
        (Value::Object(t), Value::Object(c)) => {
            for (k, cv) in c {
                match t.get_mut(k) {
                    Some(tv) if tv.is_object() && cv.is_object() => merge_config(tv, cv),
                    _ => {
                        t.insert(k.clone(), cv.clone());
                    }
                }
            }
        }
        (t, c) => *t = c.clone(),
    }
}

/// One server-side apply of `config` by a manager whose previous configuration was
/// `previous`, while `others` are the other managers' last configurations.
pub fn apply(target: &mut Value, previous: Option<&Value>, config: &Value, others: &[&Value]) {
    if let Some(prev) = previous {
        remove_stale(target, prev, config, others);
    }
    merge_config(target, config);
}
