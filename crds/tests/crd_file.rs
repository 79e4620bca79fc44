//! The generated CRD file matches the Rust types, and the CRD has the shape `kubectl` users rely
//! on: short name, status subresource, printer columns, documentation on every field.

mod common;

use serde_json::Value;

#[test]
fn generated_crd_file_is_up_to_date() {
    let path = common::crate_dir().join(learning_crds::CRD_FILE);
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = learning_crds::crd_yaml().unwrap();
    assert!(
        on_disk == generated,
        "{} is out of date with the Rust types in crds/src: run `make crds`",
        path.display()
    );
}

#[test]
fn crd_names_scope_and_subresources() {
    let crd = serde_json::to_value(learning_crds::crd()).unwrap();
    assert_eq!(
        crd["metadata"]["name"],
        "learningworkers.learning.gustav.dev"
    );
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(
        crd["spec"]["names"]["shortNames"],
        serde_json::json!(["lw"])
    );
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(version["subresources"]["status"], serde_json::json!({}));
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        ["Ready", "Reason", "Runners", "Ollama", "Backlog", "Oldest", "Age"]
    );
    let conditions =
        &version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(
        conditions["x-kubernetes-list-map-keys"],
        serde_json::json!(["type"])
    );
}

fn undocumented(schema: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(props) = schema["properties"].as_object() {
        for (name, prop) in props {
            let child = format!("{path}.{name}");
            if prop["description"]
                .as_str()
                .is_none_or(|d| d.trim().is_empty())
            {
                out.push(child.clone());
            }
            undocumented(prop, &child, out);
        }
    }
    if schema["items"].is_object() {
        undocumented(&schema["items"], &format!("{path}[]"), out);
    }
}

#[test]
fn every_spec_and_status_field_is_documented_for_kubectl_explain() {
    let schema = common::open_api_schema();
    let mut missing = Vec::new();
    undocumented(&schema["properties"]["spec"], "spec", &mut missing);
    undocumented(&schema["properties"]["status"], "status", &mut missing);
    assert!(
        missing.is_empty(),
        "fields without a description: {missing:#?}"
    );
}

#[test]
fn dsn_is_only_a_secret_reference() {
    let schema = common::open_api_schema();
    let db = &schema["properties"]["spec"]["properties"]["database"];
    let keys: Vec<&String> = db["properties"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["secretRef"]);
    assert_eq!(db["required"], serde_json::json!(["secretRef"]));
}
