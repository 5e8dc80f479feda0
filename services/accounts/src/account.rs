//! [`Account`]: one `accounts` entry checked and compiled ([`Account::from_config`],
//! [`compile`] for a whole list), what it allows (binds, clients, source addresses),
//! and its password: argon2 hashing ([`hash_password`]) and verification.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, Params};
use ipnet::IpNet;
use smsc_bus::Class;
use smsc_runtime::config::ConfigError;
use smsc_store::BindKind;

use crate::config::{AccountConfig, Quota};

/// SMPP 3.4 system_id: a C-Octet String of at most 16 octets with the NUL.
const MAX_SYSTEM_ID_LEN: usize = 15;

/// Argon2 memory cost above which a configured hash is refused (KiB): every bind pays
/// it, so a typo'd `m=` must not let one bind take gigabytes.
const MAX_M_COST_KIB: u32 = 256 * 1024;

/// Why an account entry or a password cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccountError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("password_hash: not a usable argon2 PHC string")]
    PasswordHash {
        #[source]
        source: argon2::password_hash::Error,
    },
    #[error("cannot hash the password")]
    Hashing {
        #[source]
        source: argon2::password_hash::Error,
    },
}

impl AccountError {
    fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid { field, reason: reason.into() }
    }
}

/// A source_addr pattern, classified once so the common cases skip the matcher.
#[derive(Clone, PartialEq, Eq)]
enum SourcePattern {
    Any,
    Exact(String),
    Glob(String),
}

impl SourcePattern {
    fn new(pattern: &str) -> Self {
        if pattern.bytes().all(|b| b == b'*') {
            Self::Any
        } else if pattern.contains(['*', '?']) {
            Self::Glob(pattern.to_owned())
        } else {
            Self::Exact(pattern.to_owned())
        }
    }

    fn matches(&self, addr: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(p) => p == addr,
            Self::Glob(p) => glob_match(p, addr),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Self::Any => "*",
            Self::Exact(p) | Self::Glob(p) => p,
        }
    }
}

/// `*` matches any run of characters (also none), `?` exactly one; everything else
/// matches itself, case-sensitively.
///
/// Iterative, remembering only the last `*`: when a later literal fails, that star
/// swallows one more character and matching resumes after it. Earlier stars never
/// need revisiting, so this is O(pattern × text) at worst with no recursion.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    // Byte offsets, always on char boundaries: they only move by whole chars.
    let (mut p, mut t) = (0, 0);
    // (offset in pattern just after the last `*`, offset in text it resumes from)
    let mut star: Option<(usize, usize)> = None;
    while let Some(tc) = text.get(t..).and_then(|s| s.chars().next()) {
        match pattern.get(p..).and_then(|s| s.chars().next()) {
            Some('*') => {
                p += 1;
                star = Some((p, t));
                continue;
            }
            Some(pc) if pc == '?' || pc == tc => {
                p += pc.len_utf8();
                t += tc.len_utf8();
                continue;
            }
            _ => {}
        }
        let Some((star_p, star_t)) = star else { return false };
        let skipped = text.get(star_t..).and_then(|s| s.chars().next()).map_or(1, char::len_utf8);
        p = star_p;
        t = star_t + skipped;
        star = Some((star_p, t));
    }
    pattern.get(p..).is_some_and(|rest| rest.bytes().all(|b| b == b'*'))
}

/// An account, checked and compiled from an [`AccountConfig`].
///
/// Built only by [`Account::from_config`] and [`Account::demo`], so every one in a
/// directory is valid. `Debug` leaves the password hash out.
#[derive(Clone)]
pub struct Account {
    pub system_id: String,
    /// PHC string; only [`Account::verify_password`] and the credential cache (which
    /// keys its digests on it) read it.
    password_hash: String,
    pub bind_types: Vec<BindKind>,
    pub max_binds: u32,
    /// Requests in process per session.
    pub window: u32,
    /// Messages per second for the account on one pod; 0 = unlimited.
    pub max_submit_rate: u32,
    source_patterns: Vec<SourcePattern>,
    pub allowed_cidrs: Vec<IpNet>,
    pub enabled: bool,
    pub default_validity: Duration,
    pub max_validity: Duration,
    /// Traffic class of the account's messages.
    pub class: Class,
    /// The highest class its submits' priority_flag may ask for.
    pub max_class: Class,
    /// Its daily and monthly limits; never a limit of 0.
    pub quota: Quota,
    /// Where its HTTP receipts (and MO while no SMPP receiver is bound) are POSTed.
    pub webhook: Option<Webhook>,
    /// SHA-256 digests of its HTTP API keys.
    api_keys: Vec<[u8; 32]>,
}

/// An account's webhook, checked. `Debug` leaves the secret out.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    /// `http://host[:port]/path`.
    pub url: String,
    secret: Vec<u8>,
}

impl Webhook {
    /// The key of the HMAC-SHA256 signature of every request.
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook").field("url", &self.url).field("secret", &"<redacted>").finish()
    }
}

/// The shortest webhook secret: 16 octets make a forged signature a 2^-128 guess.
const MIN_WEBHOOK_SECRET: usize = 16;

/// SHA-256 of an HTTP API key: what an account stores (`api_key_sha256`).
pub fn api_key_digest(key: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A new HTTP API key (`smsc_` and 43 characters of base64url: 32 random octets) and
/// its SHA-256 in hex, for the account's `api_key_sha256`.
pub fn new_api_key() -> Result<(String, String), ring::error::Unspecified> {
    use ring::rand::SecureRandom as _;
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut raw = [0u8; 43];
    ring::rand::SystemRandom::new().fill(&mut raw)?;
    // 43 characters of 6 bits: 258 bits, of which the 2 extra are uniform too.
    let key: String =
        "smsc_".chars().chain(raw.iter().map(|b| ALPHABET[usize::from(b & 63)] as char)).collect();
    let digest = hex::encode(api_key_digest(&key));
    Ok((key, digest))
}

/// 64 hex digits (either case) as the 32 octets of a SHA-256.
fn parse_digest(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sources: Vec<&str> = self.source_patterns.iter().map(SourcePattern::as_str).collect();
        f.debug_struct("Account")
            .field("system_id", &self.system_id)
            .field("password_hash", &"<redacted>")
            .field("bind_types", &self.bind_types)
            .field("max_binds", &self.max_binds)
            .field("window", &self.window)
            .field("max_submit_rate", &self.max_submit_rate)
            .field("source_addresses", &sources)
            .field("allowed_cidrs", &self.allowed_cidrs)
            .field("enabled", &self.enabled)
            .field("default_validity", &self.default_validity)
            .field("max_validity", &self.max_validity)
            .field("class", &self.class)
            .field("max_class", &self.max_class)
            .field("quota", &self.quota)
            .field("webhook", &self.webhook)
            .field("api_keys", &self.api_keys.len())
            .finish()
    }
}

impl Account {
    /// Checks one entry. The cap on `max_validity` (the store's message TTL) and
    /// uniqueness of system_ids are checked by the caller, which sees the whole list.
    pub fn from_config(c: &AccountConfig) -> Result<Account, AccountError> {
        let id = &c.system_id;
        if id.is_empty() || id.len() > MAX_SYSTEM_ID_LEN {
            return Err(AccountError::invalid(
                "system_id",
                format!("must be 1 to {MAX_SYSTEM_ID_LEN} characters"),
            ));
        }
        if !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AccountError::invalid("system_id", "printable ASCII without spaces only"));
        }
        check_password_hash(&c.password_hash)?;
        if c.bind_types.is_empty() {
            return Err(AccountError::invalid("bind_types", "empty: the account could never bind"));
        }
        if c.max_binds == 0 {
            return Err(AccountError::invalid("max_binds", "must be at least 1"));
        }
        if c.window == 0 {
            return Err(AccountError::invalid("window", "must be at least 1"));
        }
        if c.source_addresses.is_empty() {
            return Err(AccountError::invalid("source_addresses", "empty: use [\"*\"] for any"));
        }
        if let Some(i) = c.source_addresses.iter().position(String::is_empty) {
            return Err(AccountError::invalid("source_addresses", format!("entry {i} is empty")));
        }
        if c.allowed_cidrs.is_empty() {
            return Err(AccountError::invalid(
                "allowed_cidrs",
                "empty: use [0.0.0.0/0, ::/0] for any client",
            ));
        }
        if c.default_validity.is_zero() {
            return Err(AccountError::invalid("default_validity", "must be longer than 0s"));
        }
        if c.default_validity > c.max_validity {
            return Err(AccountError::invalid("default_validity", "longer than max_validity"));
        }
        for (field, limit) in [("quota.daily", c.quota.daily), ("quota.monthly", c.quota.monthly)] {
            if limit == Some(0) {
                return Err(AccountError::invalid(
                    field,
                    "0 would refuse every message: set enabled: false instead, or leave it out for no limit",
                ));
            }
            // The store keeps the counter in a CQL bigint.
            if limit.is_some_and(|l| i64::try_from(l).is_err()) {
                return Err(AccountError::invalid(field, format!("at most {}", i64::MAX)));
            }
        }
        let webhook = match &c.webhook {
            None => None,
            Some(w) => {
                // Plain HTTP/1.1 (the worker's client); no credentials in the URL.
                let authority =
                    w.url.strip_prefix("http://").and_then(|rest| rest.split(['/', '?']).next());
                let ok = authority.is_some_and(|a| {
                    !a.is_empty() && !a.contains('@') && !a.contains(char::is_whitespace)
                });
                if !ok {
                    return Err(AccountError::invalid(
                        "webhook.url",
                        "not an http://host[:port]/path URL",
                    ));
                }
                if w.secret.len() < MIN_WEBHOOK_SECRET {
                    return Err(AccountError::invalid(
                        "webhook.secret",
                        format!("at least {MIN_WEBHOOK_SECRET} characters"),
                    ));
                }
                Some(Webhook { url: w.url.clone(), secret: w.secret.as_bytes().to_vec() })
            }
        };
        let mut api_keys = Vec::with_capacity(c.api_key_sha256.len());
        for (i, hex) in c.api_key_sha256.iter().enumerate() {
            let digest = parse_digest(hex).ok_or_else(|| {
                AccountError::invalid(
                    "api_key_sha256",
                    format!("entry {i}: not 64 hex digits (make one with `smsc api-key`)"),
                )
            })?;
            api_keys.push(digest);
        }
        Ok(Account {
            webhook,
            api_keys,
            system_id: id.clone(),
            password_hash: c.password_hash.clone(),
            bind_types: c.bind_types.clone(),
            max_binds: c.max_binds,
            window: c.window,
            max_submit_rate: c.max_submit_rate,
            source_patterns: c.source_addresses.iter().map(|p| SourcePattern::new(p)).collect(),
            allowed_cidrs: c.allowed_cidrs.clone(),
            enabled: c.enabled,
            default_validity: c.default_validity,
            max_validity: c.max_validity,
            class: c.class,
            max_class: c.max_class.unwrap_or(c.class),
            quota: c.quota,
        })
    }

    /// The class of a submit with `priority_flag`: each step one class above the
    /// account's, up to its `max_class`.
    pub fn class_of(&self, priority_flag: u8) -> Class {
        self.class.raised(priority_flag, self.max_class)
    }

    /// The account `smsc all` starts with: `demo`/`demo`, any bind, source and client.
    /// Hashes at call time (tens of milliseconds), so call it once at startup.
    pub fn demo() -> Account {
        let password_hash =
            hash_password("demo").expect("argon2 defaults and a fresh salt always hash 4 bytes");
        Account {
            system_id: "demo".to_owned(),
            password_hash,
            bind_types: vec![BindKind::Transmitter, BindKind::Receiver, BindKind::Transceiver],
            max_binds: 64,
            window: 256,
            max_submit_rate: 0,
            source_patterns: vec![SourcePattern::Any],
            allowed_cidrs: vec![
                IpNet::V4(ipnet::Ipv4Net::default()),
                IpNet::V6(ipnet::Ipv6Net::default()),
            ],
            enabled: true,
            default_validity: Duration::from_secs(48 * 3600),
            max_validity: Duration::from_secs(72 * 3600),
            // priority_flag 1 or more lifts a message to interactive.
            class: Class::Standard,
            max_class: Class::Interactive,
            quota: Quota::default(),
            webhook: None,
            api_keys: Vec::new(),
        }
    }

    /// SHA-256 digests of its HTTP API keys.
    pub fn api_keys(&self) -> &[[u8; 32]] {
        &self.api_keys
    }

    pub fn allows_bind(&self, kind: BindKind) -> bool {
        self.bind_types.contains(&kind)
    }

    /// Whether a client at `ip` may bind. An IPv4 client seen on a dual-stack socket
    /// (`::ffff:10.1.2.3`) is matched against the IPv4 networks too.
    pub fn client_allowed(&self, ip: IpAddr) -> bool {
        let mapped = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.allowed_cidrs
            .iter()
            .any(|net| net.contains(&ip) || mapped.is_some_and(|v4| net.contains(&v4)))
    }

    /// Whether the account may submit with this source_addr.
    pub fn source_allowed(&self, addr: &str) -> bool {
        self.source_patterns.iter().any(|p| p.matches(addr))
    }

    /// The PHC string the password is checked against.
    pub(crate) fn password_hash(&self) -> &str {
        &self.password_hash
    }

    /// Checks a bind's password against the stored hash, in constant time.
    ///
    /// Argon2 is deliberately slow (tens of milliseconds, a few MiB of memory): call it
    /// from `tokio::task::spawn_blocking`, never on a runtime worker. SMPP caps passwords
    /// at 8 characters, but a longer one is compared whole, not truncated: a hash of a
    /// 12-character password must not accept its first 8.
    pub fn verify_password(&self, password: &[u8]) -> bool {
        match PasswordHash::new(&self.password_hash) {
            Ok(hash) => Argon2::default().verify_password(password, &hash).is_ok(),
            // Checked at load; a hash that stopped parsing refuses everyone.
            Err(_) => false,
        }
    }
}

pub(crate) fn check_password_hash(phc: &str) -> Result<(), AccountError> {
    let hash = PasswordHash::new(phc).map_err(|source| AccountError::PasswordHash { source })?;
    if !matches!(hash.algorithm.as_str(), "argon2id" | "argon2i" | "argon2d") {
        return Err(AccountError::invalid("password_hash", "not an argon2 hash"));
    }
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err(AccountError::invalid("password_hash", "has no salt or no hash output"));
    }
    let params = Params::try_from(&hash).map_err(|source| AccountError::PasswordHash { source })?;
    if params.m_cost() > MAX_M_COST_KIB {
        return Err(AccountError::invalid(
            "password_hash",
            format!("memory cost above {} MiB", MAX_M_COST_KIB / 1024),
        ));
    }
    Ok(())
}

/// The longest password a bind can carry: SMPP's `password` is a C-Octet String of at most
/// 9 octets with its NUL (3.4 §4.1.1, 5.0 §4.1.1.1).
pub const MAX_PASSWORD: usize = 8;

/// An argon2id PHC string of `password` with a random salt, for `smsc hash-password`.
/// Slow on purpose (see [`Account::verify_password`]). A password no bind can carry
/// (longer than [`MAX_PASSWORD`] octets, or with a NUL) is refused: its hash would never
/// match.
pub fn hash_password(password: &str) -> Result<String, AccountError> {
    if password.len() > MAX_PASSWORD || password.contains('\0') {
        let reason = format!(
            "{} octets{}: a bind carries at most {MAX_PASSWORD}, without NUL (SMPP's password field)",
            password.len(),
            if password.contains('\0') { " with a NUL" } else { "" },
        );
        return Err(AccountError::invalid("password", reason));
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|source| AccountError::Hashing { source })
}

/// Checks a whole accounts list: every entry, unique system_ids, and `max_validity`
/// within `max_validity_cap` (the store keeps a message no longer than that).
/// `key_prefix` goes before `accounts[i]` in errors (a file name, or nothing).
pub fn compile(
    list: &[AccountConfig],
    max_validity_cap: Duration,
    key_prefix: &str,
) -> Result<Vec<Account>, ConfigError> {
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(list.len());
    let mut keys: HashMap<[u8; 32], usize> = HashMap::new();
    let mut accounts = Vec::with_capacity(list.len());
    for (i, c) in list.iter().enumerate() {
        let key = format!("{key_prefix}accounts[{i}]");
        let entry_error = |source: AccountError| ConfigError::Account {
            key: key.clone(),
            system_id: c.system_id.clone(),
            source: Box::new(source),
        };
        let account = Account::from_config(c).map_err(entry_error)?;
        if account.max_validity > max_validity_cap {
            return Err(entry_error(AccountError::invalid(
                "max_validity",
                format!(
                    "{} is longer than store.message_ttl {}",
                    humantime::format_duration(account.max_validity),
                    humantime::format_duration(max_validity_cap)
                ),
            )));
        }
        if let Some(first) = seen.insert(c.system_id.as_str(), i) {
            return Err(ConfigError::Invalid {
                key: format!("{key}.system_id"),
                env_var: None,
                reason: format!("{:?} is also {key_prefix}accounts[{first}]", c.system_id),
            });
        }
        // A key names one account: the same digest twice would let it act as either.
        for digest in account.api_keys() {
            if let Some(first) = keys.insert(*digest, i) {
                return Err(ConfigError::Invalid {
                    key: format!("{key}.api_key_sha256"),
                    env_var: None,
                    reason: format!("a key of {key_prefix}accounts[{first}] too"),
                });
            }
        }
        accounts.push(account);
    }
    Ok(accounts)
}
