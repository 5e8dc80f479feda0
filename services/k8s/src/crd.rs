//! The `SmppAccount` custom resource (`smppaccounts.smsc.io/v1alpha1`): one ESME account,
//! the same fields as an `accounts:` entry of the config, with the password hash and the
//! webhook's signing secret in Secrets the resource names.
//!
//! [`crd`] is what `crdgen` prints and `helm/smsc/crds/smppaccount.yaml` holds.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResource;
use kube::CustomResourceExt as _;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of the resource.
pub const GROUP: &str = "smsc.io";
/// Its one version.
pub const VERSION: &str = "v1alpha1";

/// An ESME account. Checked by every pod that watches it; a resource that cannot be
/// used is left out (the others still work) and says why in its `Ready` condition.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "smsc.io",
    version = "v1alpha1",
    kind = "SmppAccount",
    plural = "smppaccounts",
    shortname = "smppacct",
    namespaced,
    status = "SmppAccountStatus",
    doc = "An ESME account of the SMSC: who may bind over SMPP, how, and how much.",
    printcolumn = r#"{"name":"System ID","type":"string","jsonPath":".spec.systemId"}"#,
    printcolumn = r#"{"name":"Enabled","type":"boolean","jsonPath":".spec.enabled"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Sessions","type":"integer","jsonPath":".status.sessions"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SmppAccountSpec {
    /// The system_id the ESME binds with (1 to 15 printable ASCII characters). Unique
    /// among the namespace's SmppAccounts: of two resources with the same one, the older
    /// is used.
    #[schemars(length(min = 1, max = 15), pattern(r"^[!-~]+$"))]
    pub system_id: String,
    /// The Secret key holding the account's argon2 password hash (a PHC string from
    /// `smsc hash-password`), never the password itself.
    pub password_secret_ref: SecretKeyRef,
    /// Bind types the account may use.
    #[serde(default = "all_bind_types")]
    #[schemars(length(min = 1))]
    pub bind_types: Vec<BindType>,
    /// Sessions across the cluster.
    #[serde(default = "default_max_binds")]
    #[schemars(range(min = 1))]
    pub max_binds: u32,
    /// Requests in process per session; past it ESME_RTHROTTLED.
    #[serde(default = "default_window")]
    #[schemars(range(min = 1))]
    pub window: u32,
    /// Messages per second for the account on one edge pod; 0 = unlimited.
    #[serde(default)]
    pub max_submit_rate: u32,
    /// Glob patterns on source_addr: `*` any run of characters, `?` one character.
    #[serde(default = "any_source")]
    #[schemars(length(min = 1))]
    pub source_addresses: Vec<String>,
    /// Client networks (CIDR, or a bare address for one host).
    #[serde(default = "any_network")]
    #[schemars(length(min = 1))]
    pub allowed_cidrs: Vec<String>,
    /// A disabled account refuses binds (after checking the password).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Validity of a submit that gives none (`48h`, `30m`, `1h 30m`).
    #[serde(default = "default_validity")]
    pub default_validity: String,
    /// Longer requested validity periods are cut to this; at most the store's
    /// `store.message_ttl`.
    #[serde(default = "max_validity")]
    pub max_validity: String,
    /// Traffic class of the account's messages: higher classes are served first by
    /// weighted shares, none starves.
    #[serde(default)]
    pub class: TrafficClass,
    /// The highest class a submit's priority_flag may lift a message to (one class per
    /// step of the flag); absent: the account's class, whatever the flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_class: Option<TrafficClass>,
    /// Messages the account may submit per UTC day and month across the cluster (each
    /// destination one); past one, submits are answered 0x00000400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<AccountQuota>,
    /// Where the receipts of the account's HTTP API submits go, and its MO while no SMPP
    /// receiver is bound; absent: HTTP submits cannot ask for a receipt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<AccountWebhook>,
    /// SHA-256 digests (64 hex digits) of the account's HTTP API keys, from
    /// `smsc api-key`; the keys themselves are never stored. Each key names one account:
    /// of two resources with the same digest, the older is used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(pattern(r"^[0-9a-fA-F]{64}$")))]
    pub api_key_sha256: Vec<String>,
}

/// `webhook` of an SmppAccount: `POST url` with a JSON event, signed (HMAC-SHA256) with
/// the secret in the referenced Secret key, never in the resource.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountWebhook {
    /// `http://host[:port]/path`.
    #[schemars(pattern(r"^http://[^/?@\s]+([/?].*)?$"))]
    pub url: String,
    /// The Secret key holding the signing secret (at least 16 characters).
    pub secret_ref: SecretKeyRef,
}

/// `quota` of an SmppAccount; a limit left out is no limit.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountQuota {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub daily: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub monthly: Option<u64>,
}

/// A traffic class (`accounts[].class` of the config).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TrafficClass {
    /// One-time passwords, alerts: a person is waiting.
    Interactive,
    #[default]
    Standard,
    /// Campaigns: throughput over latency.
    Bulk,
}

/// A key of a Secret in the resource's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretKeyRef {
    #[schemars(length(min = 1))]
    pub name: String,
    #[schemars(length(min = 1))]
    pub key: String,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BindType {
    Transmitter,
    Receiver,
    Transceiver,
}

/// What the edge pods report.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SmppAccountStatus {
    /// Bound sessions across the edge pods that report one (the sum of `pods`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<u32>,
    /// Bound sessions per edge pod; a pod with none is not listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["pod"]))]
    pub pods: Vec<PodSessions>,
    /// `Ready`: whether the edges use this resource, and if not, why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `Ready` condition's message: why the resource is not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The `metadata.generation` the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One edge pod's bound sessions of the account.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodSessions {
    pub pod: String,
    pub sessions: u32,
    /// When the pod last wrote this entry (RFC 3339). Pods rewrite it every few minutes;
    /// an entry far older is from a pod that died, and is removed.
    pub updated: String,
}

/// A status condition, as `metav1.Condition`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// CamelCase: `Accepted`, `InvalidSpec`, `SecretNotFound`, `SecretKeyNotFound`,
    /// `InvalidPasswordHash`, `InvalidWebhookSecret`, `DuplicateSystemId`,
    /// `DuplicateApiKey`.
    pub reason: String,
    pub message: String,
    /// RFC 3339.
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

fn all_bind_types() -> Vec<BindType> {
    vec![BindType::Transmitter, BindType::Receiver, BindType::Transceiver]
}
fn default_max_binds() -> u32 {
    8
}
fn default_window() -> u32 {
    64
}
fn any_source() -> Vec<String> {
    vec!["*".to_owned()]
}
fn any_network() -> Vec<String> {
    vec!["0.0.0.0/0".to_owned(), "::/0".to_owned()]
}
fn yes() -> bool {
    true
}
fn default_validity() -> String {
    "48h".to_owned()
}
fn max_validity() -> String {
    "72h".to_owned()
}

/// The CustomResourceDefinition.
///
/// schemars names Rust's unsigned integers `format: uint32`/`uint64`, which the API server
/// does not know (it warns on every apply): they become plain integers with their range.
pub fn crd() -> CustomResourceDefinition {
    let mut crd = SmppAccount::crd();
    for version in &mut crd.spec.versions {
        if let Some(schema) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) {
            kubernetes_formats(schema);
        }
    }
    crd
}

fn kubernetes_formats(schema: &mut JSONSchemaProps) {
    match schema.format.as_deref() {
        Some("uint32") => {
            schema.format = Some("int64".into());
            schema.minimum = Some(schema.minimum.unwrap_or(0.0).max(0.0));
            schema.maximum = Some(f64::from(u32::MAX));
        }
        // Above i64::MAX a Kubernetes integer cannot go; the resolver refuses it anyway.
        Some("uint64") => {
            schema.format = Some("int64".into());
            schema.minimum = Some(schema.minimum.unwrap_or(0.0).max(0.0));
        }
        _ => {}
    }
    for child in schema.properties.iter_mut().flat_map(|p| p.values_mut()) {
        kubernetes_formats(child);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = schema.items.as_mut() {
        kubernetes_formats(items);
    }
    for child in
        [&mut schema.any_of, &mut schema.one_of, &mut schema.all_of].into_iter().flatten().flatten()
    {
        kubernetes_formats(child);
    }
    if let Some(JSONSchemaPropsOrBool::Schema(extra)) = schema.additional_properties.as_mut() {
        kubernetes_formats(extra);
    }
}

/// The CRD as the YAML document `crdgen` prints (and the chart's `crds/` holds).
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    let yaml = serde_yaml::to_string(&crd())?;
    Ok(format!("# Generated by `cargo run -p smsc-k8s --bin crdgen`: do not edit by hand.\n{yaml}"))
}
