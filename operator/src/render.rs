//! `learning-operator render`: the children of a LearningWorker read from a file, as the
//! operator would apply them, printed as a multi-document YAML stream — with the autoscaling
//! engine `keda`, its TriggerAuthentication and ScaledObject last. Offline: no owner
//! references (the resource has no uid yet), no model-pull Job unless models are named, and
//! the builtin engine's minimum as the runners' count.

use learning_crds::runner::AutoscalingEngine;
use learning_crds::LearningWorker;
use serde_json::Value;

use crate::autoscale::{self, keda};
use crate::desired::kinds::{ChildObject, ChildVisitor};
use crate::desired::{children, Children, RenderContext};
use crate::error::RenderError;

/// A child as JSON with its `apiVersion` and `kind`.
struct Typed;

impl ChildVisitor<'_> for Typed {
    type Output = Result<Value, RenderError>;
    fn visit<K: ChildObject>(self, obj: &K) -> Self::Output {
        let mut v = serde_json::to_value(obj).map_err(RenderError::Serialize)?;
        if let Value::Object(map) = &mut v {
            map.insert(
                "apiVersion".into(),
                <K as k8s_openapi::Resource>::API_VERSION.into(),
            );
            map.insert("kind".into(), <K as k8s_openapi::Resource>::KIND.into());
        }
        Ok(v)
    }
}

/// Every child as a JSON object with `apiVersion` and `kind`, in apply order.
pub fn objects(c: &Children) -> Result<Vec<Value>, RenderError> {
    c.iter().map(|child| child.visit(Typed)).collect()
}

/// The KEDA objects of a worker with engine `keda` (none otherwise), as JSON.
pub fn keda_objects(lw: &LearningWorker) -> Result<Vec<Value>, RenderError> {
    let Some(a) = autoscale::autoscaling(lw).filter(|a| a.engine == AutoscalingEngine::Keda) else {
        return Ok(Vec::new());
    };
    Ok(vec![
        serde_json::to_value(keda::trigger_authentication(lw)).map_err(RenderError::Serialize)?,
        serde_json::to_value(keda::scaled_object(lw, a)).map_err(RenderError::Serialize)?,
    ])
}

/// Parses a LearningWorker from YAML, checks the cross-field rules, fills in the runner image
/// (`default_runner_image` when the spec names none), and renders its children.
pub fn render_yaml(
    input: &str,
    ctx: &RenderContext,
    default_runner_image: Option<&str>,
) -> Result<String, RenderError> {
    let lw: LearningWorker = serde_yaml_ng::from_str(input).map_err(RenderError::Parse)?;
    let name = lw.metadata.name.clone().unwrap_or_default();
    let mut errors = learning_crds::validate::validate(&name, &lw.spec);
    let resolved = crate::runner_image::resolve(&lw, default_runner_image);
    if let Err(unset) = &resolved {
        errors.push(unset.clone());
    }
    let (true, Ok(lw)) = (errors.is_empty(), resolved) else {
        return Err(RenderError::Invalid(
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        ));
    };
    let mut out = String::new();
    let mut all = objects(&children(&lw, ctx))?;
    all.extend(keda_objects(&lw)?);
    for obj in all {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&obj).map_err(RenderError::Yaml)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keda_worker_renders_its_keda_objects_last_and_its_runners_without_replicas() {
        let path = format!(
            "{}/../crds/examples/autoscaling.yaml",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(path).unwrap();
        let keda = text.replace("minReplicas: 1", "engine: keda\n      minReplicas: 0");
        let out = render_yaml(&keda, &RenderContext::default(), None).unwrap();
        let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&out)
            .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
            .collect();
        let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds[kinds.len() - 2..],
            ["TriggerAuthentication", "ScaledObject"]
        );
        let runner = docs
            .iter()
            .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "school-e-runner")
            .unwrap();
        assert!(runner["spec"].get("replicas").is_none(), "{runner}");
        let builtin = render_yaml(&text, &RenderContext::default(), None).unwrap();
        assert!(!builtin.contains("ScaledObject") && builtin.contains("replicas: 1"));
    }
}
