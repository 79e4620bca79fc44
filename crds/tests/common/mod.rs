//! Test support: load the example CRs, and a structural check of a value against the CRD's
//! OpenAPI v3 schema (types, required, enums, bounds, lengths, patterns, unknown fields) — the
//! checks the API server's schema validation and pruning do, written for these tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The crate directory.
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `crds/examples/*.yaml`, sorted, as (file name, JSON value).
pub fn examples() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(crate_dir().join("examples"))
        .expect("crds/examples exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| (file_name(&p), load_yaml(&p)))
        .collect()
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// One YAML document as JSON.
pub fn load_yaml(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The generated CRD's `openAPIV3Schema` as JSON.
pub fn open_api_schema() -> Value {
    let crd = serde_json::to_value(learning_crds::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Checks `value` against `schema`; returns every violation as `path: problem`.
pub fn check(schema: &Value, value: &Value, path: &str) -> Vec<String> {
    let mut errors = Vec::new();
    walk(schema, value, path, &mut errors);
    errors
}

fn walk(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    if value.is_null() {
        if schema["nullable"] != Value::Bool(true) {
            errors.push(format!("{path}: null is not allowed"));
        }
        return;
    }
    if schema["x-kubernetes-int-or-string"] == Value::Bool(true) {
        if !(value.is_i64() || value.is_u64() || value.is_string()) {
            errors.push(format!("{path}: expected integer or string"));
        }
        return;
    }
    let ty = schema["type"].as_str();
    let type_ok = match ty {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    };
    if !type_ok {
        errors.push(format!(
            "{path}: expected {}, got {value}",
            ty.unwrap_or("?")
        ));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            errors.push(format!("{path}: {value} is not one of {allowed:?}"));
        }
    }
    match value {
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(max) = schema["maxLength"].as_u64() {
                if len > max {
                    errors.push(format!("{path}: longer than {max}"));
                }
            }
            if let Some(min) = schema["minLength"].as_u64() {
                if len < min {
                    errors.push(format!("{path}: shorter than {min}"));
                }
            }
            if let Some(p) = schema["pattern"].as_str() {
                let re = regex::Regex::new(p).unwrap_or_else(|e| panic!("pattern {p}: {e}"));
                if !re.is_match(s) {
                    errors.push(format!("{path}: {s:?} does not match {p}"));
                }
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap();
            if let Some(min) = schema["minimum"].as_f64() {
                if x < min {
                    errors.push(format!("{path}: {x} < minimum {min}"));
                }
            }
            if let Some(max) = schema["maximum"].as_f64() {
                if x > max {
                    errors.push(format!("{path}: {x} > maximum {max}"));
                }
            }
        }
        Value::Array(items) => {
            if let Some(max) = schema["maxItems"].as_u64() {
                if items.len() as u64 > max {
                    errors.push(format!("{path}: more than {max} items"));
                }
            }
            for (i, item) in items.iter().enumerate() {
                walk(&schema["items"], item, &format!("{path}[{i}]"), errors);
            }
        }
        Value::Object(map) => {
            for req in schema["required"].as_array().into_iter().flatten() {
                if !map.contains_key(req.as_str().unwrap()) {
                    errors.push(format!("{path}.{}: required", req.as_str().unwrap()));
                }
            }
            let preserve = schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true);
            for (key, v) in map {
                let child = format!("{path}.{key}");
                if let Some(prop) = schema["properties"].get(key) {
                    walk(prop, v, &child, errors);
                } else if schema["additionalProperties"].is_object() {
                    walk(&schema["additionalProperties"], v, &child, errors);
                } else if !preserve {
                    errors.push(format!("{child}: unknown field"));
                }
            }
        }
        _ => {}
    }
}
