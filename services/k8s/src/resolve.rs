//! From `SmppAccount` resources and their Secrets (password hash, webhook secret) to the
//! accounts the edge checks binds and HTTP API keys against. Pure: no API calls, so every
//! rule is unit-tested here.
//!
//! Each resource is checked on its own: one that cannot be used is left out with a
//! [`Problem`] (reported in its status), and never keeps the others from loading.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt as _;
use smsc_accounts::{Account, AccountError};
use smsc_accounts::{AccountConfig, Quota, WebhookConfig};
use smsc_store::BindKind;

use crate::crd::{BindType, SecretKeyRef, SmppAccount, SmppAccountSpec};

/// Why a resource is not used. The `Display` text is the status message: it names
/// fields and Secrets, never a hash or a webhook secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    #[error("{field}: {reason}")]
    InvalidSpec { field: String, reason: String },
    #[error("Secret {name:?} not found")]
    SecretNotFound { name: String },
    #[error("Secret {name:?} has no key {key:?}")]
    SecretKeyNotFound { name: String, key: String },
    #[error("Secret {name:?} key {key:?}: {reason}")]
    InvalidPasswordHash { name: String, key: String, reason: String },
    /// The webhook's signing secret (`webhook.secretRef`) cannot be used.
    #[error("Secret {name:?} key {key:?} (webhook secret): {reason}")]
    InvalidWebhookSecret { name: String, key: String, reason: String },
    #[error("systemId {system_id:?} is already used by SmppAccount {used_by:?}")]
    DuplicateSystemId { system_id: String, used_by: String },
    /// An API key names one account: the older resource keeps it.
    #[error("apiKeySha256[{index}] is already a key of SmppAccount {used_by:?}")]
    DuplicateApiKey { index: usize, used_by: String },
}

impl Problem {
    /// The condition's `reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidSpec { .. } => "InvalidSpec",
            Self::SecretNotFound { .. } => "SecretNotFound",
            Self::SecretKeyNotFound { .. } => "SecretKeyNotFound",
            Self::InvalidPasswordHash { .. } => "InvalidPasswordHash",
            Self::InvalidWebhookSecret { .. } => "InvalidWebhookSecret",
            Self::DuplicateSystemId { .. } => "DuplicateSystemId",
            Self::DuplicateApiKey { .. } => "DuplicateApiKey",
        }
    }

    fn spec(field: &str, reason: impl Into<String>) -> Self {
        Self::InvalidSpec { field: field.to_owned(), reason: reason.into() }
    }
}

/// The accounts to use and, by resource name, what became of each resource.
#[derive(Debug, Default)]
pub struct Resolved {
    pub accounts: Vec<Account>,
    pub outcomes: BTreeMap<String, Result<(), Problem>>,
}

/// Resolves every resource against `secret` (a Secret of the same namespace by name).
/// `max_validity_cap` is the store's `store.message_ttl`. Of two resources with the
/// same systemId, or an API key digest in common, the older (then the first by name)
/// wins, on every pod alike.
pub fn resolve(
    resources: &[Arc<SmppAccount>],
    secret: impl Fn(&str) -> Option<Arc<Secret>>,
    max_validity_cap: Duration,
) -> Resolved {
    let mut ordered: Vec<&Arc<SmppAccount>> = resources.iter().collect();
    ordered.sort_by(|a, b| {
        let created = |r: &SmppAccount| r.metadata.creation_timestamp.clone().map(|t| t.0);
        created(a).cmp(&created(b)).then_with(|| a.name_any().cmp(&b.name_any()))
    });
    let mut out = Resolved::default();
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    let mut key_owners: HashMap<[u8; 32], String> = HashMap::new();
    for r in ordered {
        let name = r.name_any();
        let result = account(r, &secret, max_validity_cap).and_then(|account| {
            if let Some(first) = owners.get(&account.system_id) {
                return Err(Problem::DuplicateSystemId {
                    system_id: account.system_id.clone(),
                    used_by: first.clone(),
                });
            }
            // The same digest on two accounts would let its key act as either.
            for (index, digest) in account.api_keys().iter().enumerate() {
                if let Some(first) = key_owners.get(digest) {
                    return Err(Problem::DuplicateApiKey { index, used_by: first.clone() });
                }
            }
            Ok(account)
        });
        let outcome = match result {
            Ok(account) => {
                owners.insert(account.system_id.clone(), name.clone());
                for digest in account.api_keys() {
                    key_owners.insert(*digest, name.clone());
                }
                out.accounts.push(account);
                Ok(())
            }
            Err(p) => Err(p),
        };
        out.outcomes.insert(name, outcome);
    }
    out
}

/// One resource's account.
pub fn account(
    r: &SmppAccount,
    secret: &impl Fn(&str) -> Option<Arc<Secret>>,
    max_validity_cap: Duration,
) -> Result<Account, Problem> {
    let s = &r.spec;
    let duration = |field: &str, text: &str| {
        humantime::parse_duration(text)
            .map_err(|e| Problem::spec(field, format!("`{text}` is not a duration like 48h: {e}")))
    };
    let default_validity = duration("defaultValidity", &s.default_validity)?;
    let max_validity = duration("maxValidity", &s.max_validity)?;
    if max_validity > max_validity_cap {
        return Err(Problem::spec(
            "maxValidity",
            format!(
                "{} is longer than store.message_ttl {}",
                humantime::format_duration(max_validity),
                humantime::format_duration(max_validity_cap)
            ),
        ));
    }
    let allowed_cidrs = s
        .allowed_cidrs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            network(text).ok_or_else(|| {
                Problem::spec(
                    &format!("allowedCidrs[{i}]"),
                    format!("`{text}` is neither a CIDR nor an IP address"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let password_hash = secret_value(&s.password_secret_ref, secret, |name, key, reason| {
        Problem::InvalidPasswordHash { name, key, reason }
    })?;
    let webhook = match &s.webhook {
        None => None,
        Some(w) => Some(WebhookConfig {
            url: w.url.clone(),
            secret: secret_value(&w.secret_ref, secret, |name, key, reason| {
                Problem::InvalidWebhookSecret { name, key, reason }
            })?,
        }),
    };
    let config = AccountConfig {
        system_id: s.system_id.clone(),
        password_hash,
        bind_types: s
            .bind_types
            .iter()
            .map(|b| match b {
                BindType::Transmitter => BindKind::Transmitter,
                BindType::Receiver => BindKind::Receiver,
                BindType::Transceiver => BindKind::Transceiver,
            })
            .collect(),
        max_binds: s.max_binds,
        window: s.window,
        max_submit_rate: s.max_submit_rate,
        source_addresses: s.source_addresses.clone(),
        allowed_cidrs,
        enabled: s.enabled,
        default_validity,
        max_validity,
        class: traffic_class(s.class),
        max_class: s.max_class.map(traffic_class),
        quota: s
            .quota
            .map_or_else(Quota::default, |q| Quota { daily: q.daily, monthly: q.monthly }),
        webhook,
        api_key_sha256: s.api_key_sha256.clone(),
    };
    Account::from_config(&config).map_err(|e| {
        let secret_ref = &s.password_secret_ref;
        match e {
            AccountError::Invalid { field: "webhook.secret", reason } => {
                let secret_ref = s.webhook.as_ref().map_or(secret_ref, |w| &w.secret_ref);
                Problem::InvalidWebhookSecret {
                    name: secret_ref.name.clone(),
                    key: secret_ref.key.clone(),
                    reason,
                }
            }
            AccountError::Invalid { field: "password_hash", reason } => {
                Problem::InvalidPasswordHash {
                    name: secret_ref.name.clone(),
                    key: secret_ref.key.clone(),
                    reason,
                }
            }
            AccountError::PasswordHash { .. } => Problem::InvalidPasswordHash {
                name: secret_ref.name.clone(),
                key: secret_ref.key.clone(),
                reason: "not an argon2 PHC string (make one with `smsc hash-password`)".into(),
            },
            AccountError::Invalid { field, reason } => Problem::spec(&camel_case(field), reason),
            other => Problem::spec("spec", other.to_string()),
        }
    })
}

/// The value of the referenced Secret key (the password hash, the webhook secret),
/// trimmed (a file made with `echo` ends in a newline); `invalid` makes the problem of a
/// value that is empty or not UTF-8 from the Secret's name, key and why.
fn secret_value(
    reference: &SecretKeyRef,
    secret: &impl Fn(&str) -> Option<Arc<Secret>>,
    invalid: impl FnOnce(String, String, String) -> Problem,
) -> Result<String, Problem> {
    let (name, key) = (reference.name.clone(), reference.key.clone());
    let Some(found) = secret(&name) else { return Err(Problem::SecretNotFound { name }) };
    let Some(value) = found.data.as_ref().and_then(|d| d.get(&key)) else {
        return Err(Problem::SecretKeyNotFound { name, key });
    };
    match std::str::from_utf8(&value.0) {
        Ok(text) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
        Ok(_) => Err(invalid(name, key, format!("empty, or longer than {MAX_SECRET_VALUE} bytes"))),
        Err(_) => Err(invalid(name, key, "not UTF-8".into())),
    }
}

/// The Secrets a resource reads, by name: its password's, then its webhook's (the same
/// name twice when both are keys of one Secret). The watcher re-resolves when one of
/// them changes.
pub fn secret_names(spec: &SmppAccountSpec) -> impl Iterator<Item = &str> {
    std::iter::once(spec.password_secret_ref.name.as_str())
        .chain(spec.webhook.as_ref().map(|w| w.secret_ref.name.as_str()))
}

/// Secret values longer than this are dropped before they are cached (a PHC string is
/// about 100 bytes): a namespace's other Secrets (Helm releases, certificates) need not
/// sit in every pod's memory.
pub const MAX_SECRET_VALUE: usize = 1024;

/// Empties the values of `secret` longer than [`MAX_SECRET_VALUE`], and drops what the
/// watcher does not need.
pub fn slim_secret(secret: &mut Secret) {
    secret.metadata.managed_fields = None;
    secret.metadata.annotations = None;
    secret.string_data = None;
    if let Some(data) = secret.data.as_mut() {
        for value in data.values_mut() {
            if value.0.len() > MAX_SECRET_VALUE {
                value.0 = Vec::new();
            }
        }
    }
}

/// A CIDR (host bits cleared) or a bare address, as the config's `allowed_cidrs`.
fn network(text: &str) -> Option<IpNet> {
    let t = text.trim();
    t.parse::<IpNet>()
        .map(|n| n.trunc())
        .or_else(|_| t.parse::<std::net::IpAddr>().map(IpNet::from))
        .ok()
}

/// `max_binds` → `maxBinds`: the spec's name of an account field.
fn camel_case(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut upper = false;
    for c in field.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The resource's class as the accounts know it.
fn traffic_class(c: crate::crd::TrafficClass) -> smsc_bus::Class {
    match c {
        crate::crd::TrafficClass::Interactive => smsc_bus::Class::Interactive,
        crate::crd::TrafficClass::Standard => smsc_bus::Class::Standard,
        crate::crd::TrafficClass::Bulk => smsc_bus::Class::Bulk,
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::ObjectMeta;

    use crate::crd::{SecretKeyRef, SmppAccount, SmppAccountSpec};

    /// argon2id of "secret" with tiny parameters (m=8 KiB, t=1).
    pub(crate) const HASH: &str =
        "$argon2id$v=19$m=8,t=1,p=1$Zml4dHVyZS1zYWx0$WJEFL8NndZsdrq5NkUV09qPFpNjBbMQcMNAkey5WW+o";

    /// A resource as the API would return it after defaulting.
    pub(crate) fn resource(name: &str, system_id: &str, secret: &str) -> SmppAccount {
        let spec: SmppAccountSpec = serde_json::from_value(serde_json::json!({
            "systemId": system_id,
            "passwordSecretRef": { "name": secret, "key": "hash" },
        }))
        .expect("a spec with defaults");
        let mut r = SmppAccount::new(name, spec);
        r.metadata.namespace = Some("smsc".into());
        r.metadata.resource_version = Some("1".into());
        r.metadata.generation = Some(1);
        r
    }

    pub(crate) fn secret(name: &str, key: &str, value: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("smsc".into()),
                resource_version: Some("1".into()),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(key.to_owned(), ByteString(value.as_bytes().to_vec()))])),
            ..Secret::default()
        }
    }

    #[allow(dead_code)]
    pub(crate) fn reference(name: &str) -> SecretKeyRef {
        SecretKeyRef { name: name.into(), key: "hash".into() }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;

    use super::fixtures::{HASH, resource, secret};
    use super::*;

    const CAP: Duration = Duration::from_secs(72 * 3600);

    fn secrets(list: Vec<Secret>) -> impl Fn(&str) -> Option<Arc<Secret>> {
        move |name| list.iter().find(|s| s.name_any() == name).cloned().map(Arc::new)
    }

    #[test]
    fn a_good_resource_is_an_account_with_the_spec_defaults() {
        let r = resource("bank", "BANK1", "bank-password");
        let a =
            account(&r, &secrets(vec![secret("bank-password", "hash", &format!("{HASH}\n"))]), CAP)
                .expect("valid");
        assert_eq!(a.system_id, "BANK1");
        assert_eq!((a.max_binds, a.window, a.max_submit_rate, a.enabled), (8, 64, 0, true));
        assert_eq!(a.default_validity, Duration::from_secs(48 * 3600));
        assert_eq!(a.max_validity, CAP);
        assert!(a.allows_bind(BindKind::Receiver));
        assert!(a.source_allowed("anything"));
        assert!(a.client_allowed("2001:db8::1".parse().expect("ip")));
        assert!(a.verify_password(b"secret"));
        assert!(!a.verify_password(b"Secret"));
    }

    #[test]
    fn the_traffic_class_comes_from_the_resource() {
        use crate::crd::TrafficClass;
        use smsc_bus::Class;
        let secrets = secrets(vec![secret("promo-password", "hash", HASH)]);
        let mut r = resource("promo", "PROMO", "promo-password");
        let plain = account(&r, &secrets, CAP).expect("valid");
        assert_eq!((plain.class, plain.class_of(3)), (Class::Standard, Class::Standard));
        r.spec.class = TrafficClass::Bulk;
        r.spec.max_class = Some(TrafficClass::Standard);
        let a = account(&r, &secrets, CAP).expect("valid");
        assert_eq!((a.class, a.max_class), (Class::Bulk, Class::Standard));
        assert_eq!((a.class_of(0), a.class_of(2)), (Class::Bulk, Class::Standard));
    }

    #[test]
    fn the_quota_comes_from_the_resource() {
        use crate::crd::AccountQuota;
        let secrets = secrets(vec![secret("promo-password", "hash", HASH)]);
        let mut r = resource("promo", "PROMO", "promo-password");
        assert!(account(&r, &secrets, CAP).expect("valid").quota.is_unlimited());
        r.spec.quota = Some(AccountQuota { daily: Some(10_000), monthly: None });
        let a = account(&r, &secrets, CAP).expect("valid");
        assert_eq!((a.quota.daily, a.quota.monthly), (Some(10_000), None));
        r.spec.quota = Some(AccountQuota { daily: Some(0), monthly: None });
        assert!(account(&r, &secrets, CAP).is_err(), "a quota of 0 is refused");
    }

    #[test]
    fn each_problem_is_named_without_the_hash() {
        type Change = fn(&mut SmppAccount);
        let good = || vec![secret("pw", "hash", HASH)];
        let cases: Vec<(Change, Vec<Secret>, &str, &str)> = vec![
            (
                |r| r.spec.allowed_cidrs = vec!["10.0.0.0/8".into(), "10.0.0.0/33".into()],
                good(),
                "InvalidSpec",
                "allowedCidrs[1]",
            ),
            (|r| r.spec.max_validity = "100h".into(), good(), "InvalidSpec", "maxValidity"),
            (|r| r.spec.default_validity = "soon".into(), good(), "InvalidSpec", "defaultValidity"),
            (|r| r.spec.max_binds = 0, good(), "InvalidSpec", "maxBinds"),
            (|r| r.spec.system_id = "sixteen-chars-xx".into(), good(), "InvalidSpec", "systemId"),
            (|r| r.spec.bind_types.clear(), good(), "InvalidSpec", "bindTypes"),
            (|_| {}, vec![], "SecretNotFound", "\"pw\""),
            (|_| {}, vec![secret("pw", "other", HASH)], "SecretKeyNotFound", "\"hash\""),
            (|_| {}, vec![secret("pw", "hash", "plaintext")], "InvalidPasswordHash", "argon2"),
            (|_| {}, vec![secret("pw", "hash", "  \n")], "InvalidPasswordHash", "empty"),
            (
                |_| {},
                vec![secret("pw", "hash", "$pbkdf2-sha256$i=1000$c2FsdA$aGFzaA")],
                "InvalidPasswordHash",
                "argon2",
            ),
        ];
        for (change, list, reason, mentions) in cases {
            let mut r = resource("a", "A", "pw");
            change(&mut r);
            let p = account(&r, &secrets(list), CAP).expect_err(reason);
            assert_eq!(p.reason(), reason, "{p}");
            let text = p.to_string();
            assert!(text.contains(mentions), "{reason}: {text}");
            assert!(!text.contains("argon2id$"), "{text}");
        }
    }

    #[test]
    fn bad_and_duplicate_resources_leave_the_others_loaded() {
        let mut older = resource("first", "SAME", "pw");
        older.metadata.creation_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-01-01T00:00:00Z".parse().expect("time"),
            ));
        let mut newer = resource("a-newer", "SAME", "pw");
        newer.metadata.creation_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-02-01T00:00:00Z".parse().expect("time"),
            ));
        let mut bad = resource("bad", "BAD", "pw");
        bad.spec.allowed_cidrs = vec!["nonsense".into()];
        let missing = resource("missing", "MISSING", "nope");
        let good = resource("good", "GOOD", "pw");
        let all: Vec<Arc<SmppAccount>> =
            [newer, bad, missing, good, older].into_iter().map(Arc::new).collect();
        let r = resolve(&all, secrets(vec![secret("pw", "hash", HASH)]), CAP);
        let mut ids: Vec<&str> = r.accounts.iter().map(|a| a.system_id.as_str()).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["GOOD", "SAME"]);
        let reasons: BTreeMap<&str, &str> = r
            .outcomes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_ref().err().map_or("Accepted", Problem::reason)))
            .collect();
        assert_eq!(
            reasons,
            BTreeMap::from([
                ("a-newer", "DuplicateSystemId"),
                ("bad", "InvalidSpec"),
                ("first", "Accepted"),
                ("good", "Accepted"),
                ("missing", "SecretNotFound"),
            ])
        );
        let dup = r.outcomes["a-newer"].as_ref().expect_err("dup").to_string();
        assert!(dup.contains("\"first\""), "{dup}");
    }

    /// The hex of `api_key_digest(key)`, as `smsc api-key` prints it.
    fn digest_hex(key: &str) -> String {
        smsc_accounts::api_key_digest(key).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// `resource` with a webhook whose secret is key `signing` of Secret `hook`.
    fn with_webhook(name: &str, system_id: &str, url: &str) -> SmppAccount {
        let mut r = resource(name, system_id, "pw");
        r.spec.webhook = Some(crate::crd::AccountWebhook {
            url: url.into(),
            secret_ref: crate::crd::SecretKeyRef { name: "hook".into(), key: "signing".into() },
        });
        r
    }

    const SIGNING: &str = "0123456789abcdef-signing";

    #[test]
    fn the_webhook_and_its_secret_make_the_accounts_webhook() {
        let r = with_webhook("bank", "BANK", "http://receipts.bank.svc:8080/smsc?x=1");
        let list =
            vec![secret("pw", "hash", HASH), secret("hook", "signing", &format!("{SIGNING}\n"))];
        let a = account(&r, &secrets(list.clone()), CAP).expect("valid");
        let webhook = a.webhook.as_ref().expect("a webhook");
        assert_eq!(webhook.url, "http://receipts.bank.svc:8080/smsc?x=1");
        assert_eq!(webhook.secret(), SIGNING.as_bytes(), "trimmed, as the password hash");
        assert!(!format!("{a:?}").contains(SIGNING), "Debug leaves the secret out");
        // Both values may be keys of one Secret.
        let mut both = secret("pw", "hash", HASH);
        both.data.as_mut().expect("data").insert("signing".into(), ByteString(SIGNING.into()));
        let mut r2 = r.clone();
        r2.spec.webhook.as_mut().expect("webhook").secret_ref.name = "pw".into();
        let a2 = account(&r2, &secrets(vec![both]), CAP).expect("valid");
        assert_eq!(a2.webhook.expect("a webhook").secret(), SIGNING.as_bytes());
        // No webhook in the resource: none in the account.
        let plain = account(&resource("p", "P", "pw"), &secrets(list), CAP).expect("valid");
        assert!(plain.webhook.is_none());
        assert!(plain.api_keys().is_empty());
    }

    #[test]
    fn a_webhook_secret_that_cannot_be_used_leaves_the_account_out() {
        let r = with_webhook("bank", "BANK", "http://hooks.example/smsc");
        let pw = || secret("pw", "hash", HASH);
        let cases: Vec<(Vec<Secret>, &str, &str)> = vec![
            (vec![pw()], "SecretNotFound", "\"hook\""),
            (vec![pw(), secret("hook", "other", SIGNING)], "SecretKeyNotFound", "\"signing\""),
            (vec![pw(), secret("hook", "signing", " \n")], "InvalidWebhookSecret", "empty"),
            (
                vec![pw(), secret("hook", "signing", "too-short")],
                "InvalidWebhookSecret",
                "at least 16",
            ),
        ];
        for (list, reason, mentions) in cases {
            let p = account(&r, &secrets(list.clone()), CAP).expect_err(reason);
            assert_eq!(p.reason(), reason, "{p}");
            let text = p.to_string();
            assert!(text.contains(mentions), "{reason}: {text}");
            assert!(!text.contains("too-short") && !text.contains(SIGNING), "{text}");
            // As for a password Secret: the resource is not loaded, the others are.
            let all = vec![Arc::new(r.clone()), Arc::new(resource("other", "OTHER", "pw"))];
            let resolved = resolve(&all, secrets(list), CAP);
            let ids: Vec<&str> = resolved.accounts.iter().map(|a| a.system_id.as_str()).collect();
            assert_eq!(ids, ["OTHER"], "{reason}");
            let outcome = resolved.outcomes["bank"].as_ref().expect_err("not loaded");
            assert_eq!(outcome.reason(), reason);
            assert_eq!(resolved.outcomes["other"], Ok(()));
        }
        // A URL the worker cannot post to is a spec problem.
        let bad = with_webhook("bank", "BANK", "https://hooks.example/smsc");
        let list = vec![pw(), secret("hook", "signing", SIGNING)];
        let p = account(&bad, &secrets(list), CAP).expect_err("https");
        assert_eq!(p.reason(), "InvalidSpec");
        assert!(p.to_string().starts_with("webhook.url: "), "{p}");
    }

    #[test]
    fn api_key_digests_land_in_the_account() {
        let mut r = resource("shop", "SHOP", "pw");
        let (one, two) = (digest_hex("smsc_first-key"), digest_hex("smsc_second-key"));
        r.spec.api_key_sha256 = vec![one, two.to_ascii_uppercase()];
        let a = account(&r, &secrets(vec![secret("pw", "hash", HASH)]), CAP).expect("valid");
        assert_eq!(
            a.api_keys(),
            [
                smsc_accounts::api_key_digest("smsc_first-key"),
                smsc_accounts::api_key_digest("smsc_second-key")
            ]
        );
    }

    #[test]
    fn an_invalid_api_key_digest_is_a_spec_problem() {
        let list = || vec![secret("pw", "hash", HASH)];
        for bad in ["abc", &"g".repeat(64), &"a".repeat(65), ""] {
            let mut r = resource("shop", "SHOP", "pw");
            r.spec.api_key_sha256 = vec![digest_hex("smsc_good"), bad.to_owned()];
            let p = account(&r, &secrets(list()), CAP).expect_err(bad);
            assert_eq!(p.reason(), "InvalidSpec", "{p}");
            let text = p.to_string();
            assert!(text.starts_with("apiKeySha256: entry 1:"), "{text}");
            let resolved = resolve(&[Arc::new(r)], secrets(list()), CAP);
            assert!(resolved.accounts.is_empty(), "{bad:?} is not loaded");
            assert_eq!(
                resolved.outcomes["shop"].as_ref().map_err(Problem::reason),
                Err("InvalidSpec")
            );
        }
    }

    #[test]
    fn an_api_key_names_one_account_the_older_one() {
        let time = |t: &str| {
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t.parse().expect("time")))
        };
        let shared = digest_hex("smsc_shared");
        let mut older = resource("z-older", "OLD", "pw");
        older.metadata.creation_timestamp = time("2026-01-01T00:00:00Z");
        older.spec.api_key_sha256 = vec![shared.clone()];
        let mut newer = resource("a-newer", "NEW", "pw");
        newer.metadata.creation_timestamp = time("2026-02-01T00:00:00Z");
        newer.spec.api_key_sha256 = vec![digest_hex("smsc_own"), shared];
        let all = vec![Arc::new(newer), Arc::new(older)];
        let r = resolve(&all, secrets(vec![secret("pw", "hash", HASH)]), CAP);
        let ids: Vec<&str> = r.accounts.iter().map(|a| a.system_id.as_str()).collect();
        assert_eq!(ids, ["OLD"]);
        let p = r.outcomes["a-newer"].as_ref().expect_err("duplicate key");
        assert_eq!(p.reason(), "DuplicateApiKey");
        assert_eq!(p.to_string(), "apiKeySha256[1] is already a key of SmppAccount \"z-older\"");
    }

    #[test]
    fn the_secrets_a_resource_reads() {
        let plain = resource("p", "P", "pw");
        assert_eq!(secret_names(&plain.spec).collect::<Vec<_>>(), ["pw"]);
        let hooked = with_webhook("h", "H", "http://x/y");
        assert_eq!(secret_names(&hooked.spec).collect::<Vec<_>>(), ["pw", "hook"]);
    }

    #[test]
    fn large_secret_values_are_not_cached() {
        let mut s = secret("helm-release", "release", &"x".repeat(MAX_SECRET_VALUE + 1));
        s.data.as_mut().expect("data").insert("hash".into(), k8s_openapi::ByteString(HASH.into()));
        slim_secret(&mut s);
        let data = s.data.expect("data");
        assert!(data["release"].0.is_empty());
        assert_eq!(data["hash"].0, HASH.as_bytes());
    }
}
