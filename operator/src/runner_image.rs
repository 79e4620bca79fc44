//! The runner image of a LearningWorker: `spec.runner.image`, or else the operator's default
//! (`RUNNER_IMAGE`; the Helm chart sets it to the runner image of the operator's own version,
//! so an operator upgrade rolls the runners that do not pin an image). Pure.

use std::borrow::Cow;

use learning_crds::validate::SpecError;
use learning_crds::LearningWorker;

/// The LearningWorker with its runner image filled in from `default` when the spec has none;
/// an error when neither names one.
pub fn resolve<'a>(
    lw: &'a LearningWorker,
    default: Option<&str>,
) -> Result<Cow<'a, LearningWorker>, SpecError> {
    if lw.spec.runner.image.is_some() {
        return Ok(Cow::Borrowed(lw));
    }
    let Some(image) = default.map(str::trim).filter(|i| !i.is_empty()) else {
        return Err(SpecError {
            field: "spec.runner.image",
            message: "unset, and the operator has no default runner image: set spec.runner.image, \
                      or RUNNER_IMAGE on the operator (the Helm chart's runnerImage)"
                .into(),
        });
    };
    let mut resolved = lw.clone();
    resolved.spec.runner.image = Some(image.to_owned());
    Ok(Cow::Owned(resolved))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::fixtures::example;

    #[test]
    fn the_spec_wins_then_the_operators_default_then_a_clear_error() {
        let pinned = example("amd-gpu.yaml");
        let image = pinned.spec.runner.image.clone();
        assert_eq!(
            resolve(&pinned, Some("default:1"))
                .unwrap()
                .spec
                .runner
                .image,
            image
        );
        let mut unset = pinned.clone();
        unset.spec.runner.image = None;
        assert_eq!(
            resolve(&unset, Some("registry/runner:0.2.0"))
                .unwrap()
                .spec
                .runner
                .image
                .as_deref(),
            Some("registry/runner:0.2.0")
        );
        assert_eq!(
            resolve(&unset, Some(" registry/runner:0.2.0\n"))
                .unwrap()
                .spec
                .runner
                .image
                .as_deref(),
            Some("registry/runner:0.2.0"),
            "trimmed"
        );
        for missing in [None, Some(""), Some("  ")] {
            let err = resolve(&unset, missing).unwrap_err();
            assert_eq!(err.field, "spec.runner.image");
            assert!(err.message.contains("RUNNER_IMAGE"), "{}", err.message);
        }
    }
}
