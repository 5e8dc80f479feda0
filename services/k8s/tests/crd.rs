//! The CRD `crdgen` prints: a valid CustomResourceDefinition with the fields the edge
//! reads, and the same bytes as the chart's copy (`helm/smsc/crds/smppaccount.yaml`).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};

fn crd() -> CustomResourceDefinition {
    let yaml = smsc_k8s::crd::crd_yaml().expect("the CRD serialises");
    serde_yaml::from_str(&yaml).expect("crdgen prints a CustomResourceDefinition")
}

fn props(schema: &JSONSchemaProps) -> Vec<&str> {
    schema.properties.as_ref().map(|p| p.keys().map(String::as_str).collect()).unwrap_or_default()
}

#[test]
fn crd_has_the_account_fields_and_a_status_subresource() {
    let crd = crd();
    assert_eq!(crd.metadata.name.as_deref(), Some("smppaccounts.smsc.io"));
    assert_eq!(crd.spec.group, "smsc.io");
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.kind, "SmppAccount");
    assert_eq!(crd.spec.names.short_names, Some(vec!["smppacct".to_owned()]));
    let [version] = crd.spec.versions.as_slice() else { panic!("one version") };
    assert_eq!(version.name, "v1alpha1");
    assert!(version.served && version.storage);
    assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some());

    let root = version.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()).expect("schema");
    let all = root.properties.as_ref().expect("properties");
    let spec = &all["spec"];
    let mut fields = props(spec);
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "allowedCidrs",
            "apiKeySha256",
            "bindTypes",
            "class",
            "defaultValidity",
            "enabled",
            "maxBinds",
            "maxClass",
            "maxSubmitRate",
            "maxValidity",
            "passwordSecretRef",
            "quota",
            "sourceAddresses",
            "systemId",
            "webhook",
            "window",
        ]
    );
    assert_eq!(spec.required, Some(vec!["passwordSecretRef".to_owned(), "systemId".to_owned()]));
    let spec_props = spec.properties.as_ref().expect("spec properties");
    // The password is only ever a reference to a Secret key.
    let mut secret_ref = props(&spec_props["passwordSecretRef"]);
    secret_ref.sort_unstable();
    assert_eq!(secret_ref, ["key", "name"]);
    // So is the webhook's signing secret.
    let webhook = &spec_props["webhook"];
    let mut webhook_fields = props(webhook);
    webhook_fields.sort_unstable();
    assert_eq!(webhook_fields, ["secretRef", "url"]);
    assert_eq!(webhook.required, Some(vec!["secretRef".to_owned(), "url".to_owned()]));
    let mut webhook_ref =
        props(&webhook.properties.as_ref().expect("webhook properties")["secretRef"]);
    webhook_ref.sort_unstable();
    assert_eq!(webhook_ref, ["key", "name"]);
    // API key digests are not secret: in the spec, checked as 64 hex digits.
    let digests = match spec_props["apiKeySha256"].items.as_ref() {
        Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray::Schema(s)) => s,
        other => panic!("apiKeySha256 items: {other:?}"),
    };
    assert_eq!(digests.pattern.as_deref(), Some("^[0-9a-fA-F]{64}$"));
    let system_id = &spec_props["systemId"];
    assert_eq!((system_id.min_length, system_id.max_length), (Some(1), Some(15)));
    let bind_items = match spec_props["bindTypes"].items.as_ref() {
        Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray::Schema(s)) => s,
        other => panic!("bindTypes items: {other:?}"),
    };
    let kinds: Vec<String> = bind_items
        .enum_
        .iter()
        .flatten()
        .map(|v| v.0.as_str().expect("a string").to_owned())
        .collect();
    assert_eq!(kinds, ["transmitter", "receiver", "transceiver"]);
    assert_eq!(spec_props["maxBinds"].default.as_ref().map(|d| d.0.clone()), Some(8.into()));

    let status = &all["status"];
    let mut status_fields = props(status);
    status_fields.sort_unstable();
    assert_eq!(status_fields, ["conditions", "message", "observedGeneration", "pods", "sessions"]);
    let pods = &status.properties.as_ref().expect("status properties")["pods"];
    assert_eq!(pods.x_kubernetes_list_type.as_deref(), Some("map"));
    assert_eq!(pods.x_kubernetes_list_map_keys, Some(vec!["pod".to_owned()]));

    let columns: Vec<&str> =
        version.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
    assert_eq!(columns, ["System ID", "Enabled", "Ready", "Sessions", "Age"]);
}

#[test]
fn the_charts_crd_is_crdgens_output() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../helm/smsc/crds/smppaccount.yaml");
    let in_chart = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let generated = smsc_k8s::crd::crd_yaml().expect("the CRD serialises");
    assert!(
        in_chart == generated,
        "helm/smsc/crds/smppaccount.yaml is out of date: \
         cargo run -p smsc-k8s --bin crdgen > helm/smsc/crds/smppaccount.yaml"
    );
}

#[test]
fn every_format_is_one_the_api_server_knows() {
    // An unknown format (schemars' uint32) is accepted with a warning on every apply.
    let yaml = smsc_k8s::crd::crd_yaml().expect("the CRD serialises");
    let formats: Vec<&str> =
        yaml.lines().filter_map(|l| l.trim().strip_prefix("format: ")).collect();
    assert!(!formats.is_empty(), "the schema has integer fields with a format");
    for f in formats {
        assert!(matches!(f, "int32" | "int64" | "date-time"), "format {f} is not Kubernetes'");
    }
}
