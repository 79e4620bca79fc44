//! When two Ollama model references mean the same model. A reference is
//! `[registry[:port]/][namespace/]name[:tag]`; a missing tag means `latest`. Only a colon in
//! the last path segment starts a tag: in `registry:5000/foo` the colon belongs to the port.

/// The reference with its tag made explicit (`gpt-oss` → `gpt-oss:latest`).
pub fn with_tag(reference: &str) -> String {
    let last_segment = reference.rsplit('/').next().unwrap_or(reference);
    if last_segment.contains(':') {
        reference.to_owned()
    } else {
        format!("{reference}:latest")
    }
}

/// Whether two references name the same model (`gpt-oss` = `gpt-oss:latest`).
pub fn same_model(a: &str, b: &str) -> bool {
    with_tag(a) == with_tag(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tag_means_latest() {
        assert!(same_model("gpt-oss", "gpt-oss:latest"));
        assert!(same_model("library/x:1", "library/x:1"));
        assert!(!same_model("gpt-oss:20b", "gpt-oss:latest"));
        assert!(!same_model("qwen2.5vl:3b", "qwen2.5vl:7b"));
    }

    #[test]
    fn a_registry_port_is_not_a_tag() {
        assert_eq!(with_tag("registry:5000/foo"), "registry:5000/foo:latest");
        assert!(same_model("registry:5000/foo", "registry:5000/foo:latest"));
        assert!(!same_model("registry:5000/foo", "registry:5000/foo:1b"));
        assert!(same_model(
            "registry:5000/ns/foo:1b",
            "registry:5000/ns/foo:1b"
        ));
    }
}
