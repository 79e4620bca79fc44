//! `learning-operator render`: the children of a LearningWorker read from a file, as the
//! operator would apply them, printed as a multi-document YAML stream. Offline: no owner
//! references (the resource has no uid yet) and no model-pull Job unless models are named.

use k8s_openapi::Resource;
use learning_crds::LearningWorker;
use serde::Serialize;
use serde_json::Value;

use crate::desired::{children, Children, RenderContext};
use crate::error::RenderError;

fn typed<K: Resource + Serialize>(obj: &K) -> Result<Value, RenderError> {
    let mut v = serde_json::to_value(obj).map_err(RenderError::Serialize)?;
    if let Value::Object(map) = &mut v {
        map.insert("apiVersion".into(), K::API_VERSION.into());
        map.insert("kind".into(), K::KIND.into());
    }
    Ok(v)
}

/// Every child as a JSON object with `apiVersion` and `kind`, in apply order.
pub fn objects(c: &Children) -> Result<Vec<Value>, RenderError> {
    let mut out = Vec::new();
    if let Some(o) = &c.runner_service_account {
        out.push(typed(o)?);
    }
    for p in &c.network_policies {
        out.push(typed(p)?);
    }
    if let Some(o) = &c.ollama_pvc {
        out.push(typed(o)?);
    }
    if let Some(o) = &c.ollama_service {
        out.push(typed(o)?);
    }
    if let Some(o) = &c.ollama_deployment {
        out.push(typed(o)?);
    }
    if let Some(o) = &c.model_pull_job {
        out.push(typed(o)?);
    }
    if let Some(o) = &c.runner_service {
        out.push(typed(o)?);
    }
    if let Some(o) = &c.runner_pdb {
        out.push(typed(o)?);
    }
    if let Some(o) = &c.runner_deployment {
        out.push(typed(o)?);
    }
    Ok(out)
}

/// Parses a LearningWorker from YAML, checks the cross-field rules, and renders its children.
pub fn render_yaml(input: &str, ctx: &RenderContext) -> Result<String, RenderError> {
    let lw: LearningWorker = serde_yaml_ng::from_str(input).map_err(RenderError::Parse)?;
    let name = lw.metadata.name.clone().unwrap_or_default();
    let errors = learning_crds::validate::validate(&name, &lw.spec);
    if !errors.is_empty() {
        return Err(RenderError::Invalid(
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        ));
    }
    let mut out = String::new();
    for obj in objects(&children(&lw, ctx))? {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&obj).map_err(RenderError::Yaml)?);
    }
    Ok(out)
}
