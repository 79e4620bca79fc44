//! `learning-operator render`: the children of a LearningWorker read from a file, as the
//! operator would apply them, printed as a multi-document YAML stream. Offline: no owner
//! references (the resource has no uid yet) and no model-pull Job unless models are named.

use learning_crds::LearningWorker;
use serde_json::Value;

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
