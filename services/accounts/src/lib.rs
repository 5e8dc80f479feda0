//! ESME accounts: the checked form of the config's `accounts` entries, and the
//! directory the edge authenticates binds against, reloaded while the process runs.
//!
//! The directory is an [`ArcSwap`] snapshot: a bind reads it without a lock, and a
//! reload swaps the whole map at once, so a bind never sees half a reload. A reload that
//! fails (unreadable file, bad YAML, an invalid account) keeps the previous accounts.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, Params};
use ipnet::IpNet;
use notify::Watcher as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use smsc_runtime::config::{ConfigError, read_text};
use smsc_runtime::telemetry::error_chain;
use smsc_store::BindKind;

pub mod config;

pub use config::{AccountConfig, AccountsCrdConfig, AccountsSource, ReadConfigFile};

/// SMPP 3.4 system_id: a C-Octet String of at most 16 octets with the NUL.
const MAX_SYSTEM_ID_LEN: usize = 15;

/// Argon2 memory cost above which a configured hash is refused (KiB): every bind pays
/// it, so a typo'd `m=` must not let one bind take gigabytes.
const MAX_M_COST_KIB: u32 = 256 * 1024;

/// Quiet time after the last file event before reloading: a ConfigMap update is a
/// burst of events (new dir, symlink swap, old dir removed).
const DEBOUNCE: Duration = Duration::from_millis(300);

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

/// Why [`AccountDirectory::watch`] could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    #[error("cannot watch {}", path.display())]
    Notify {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("cannot listen for SIGHUP")]
    Signal {
        #[source]
        source: std::io::Error,
    },
}

/// Why a bind's credentials were refused. The edge picks the command_status; telling
/// the ESME which of these it was is its choice too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("unknown system_id")]
    UnknownSystemId,
    #[error("account disabled")]
    Disabled,
    #[error("wrong password")]
    BadPassword,
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
    /// PHC string; only [`Account::verify_password`] reads it.
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
        Ok(Account {
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
        })
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
        }
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

fn check_password_hash(phc: &str) -> Result<(), AccountError> {
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

/// An argon2id PHC string of `password` with a random salt, for `smsc hash-password`.
/// Slow on purpose (see [`Account::verify_password`]).
pub fn hash_password(password: &str) -> Result<String, AccountError> {
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
        accounts.push(account);
    }
    Ok(accounts)
}

/// A hash to verify against when the system_id is unknown, so that answer takes as
/// long as a wrong password and does not reveal which system_ids exist.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        hash_password("decoy").expect("argon2 defaults and a fresh salt always hash 5 bytes")
    })
}

/// The accounts a bind is checked against. Cheap to read from many sessions at once.
pub struct AccountDirectory {
    accounts: ArcSwap<HashMap<String, Arc<Account>>>,
    /// Bumped by every [`AccountDirectory::replace`], for whoever holds what an earlier
    /// set admitted (the edge's bound sessions).
    generation: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for AccountDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let snapshot = self.accounts.load();
        let mut ids: Vec<&str> = snapshot.keys().map(String::as_str).collect();
        ids.sort_unstable();
        f.debug_struct("AccountDirectory").field("system_ids", &ids).finish()
    }
}

impl AccountDirectory {
    pub fn new(accounts: Vec<Account>) -> Self {
        Self {
            accounts: ArcSwap::from_pointee(index(accounts)),
            generation: tokio::sync::watch::Sender::new(0),
        }
    }

    /// The config's `accounts` list, checked as [`compile`] does.
    pub fn from_config(
        list: &[AccountConfig],
        max_validity_cap: Duration,
    ) -> Result<Self, ConfigError> {
        Ok(Self::new(compile(list, max_validity_cap, "")?))
    }

    pub fn get(&self, system_id: &str) -> Option<Arc<Account>> {
        self.accounts.load().get(system_id).cloned()
    }

    /// Swaps in a new set at once. A system_id given twice keeps the later entry.
    pub fn replace(&self, accounts: Vec<Account>) {
        self.accounts.store(Arc::new(index(accounts)));
        self.generation.send_modify(|g| *g += 1);
    }

    /// Changes whenever the set is replaced.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Whether the current set still admits a session bound as `kind` from `ip` under
    /// `system_id`: the account exists, is enabled, and allows that bind and address.
    pub fn admits(&self, system_id: &str, kind: BindKind, ip: IpAddr) -> bool {
        self.get(system_id)
            .is_some_and(|a| a.enabled && a.allows_bind(kind) && a.client_allowed(ip))
    }

    /// The system_ids of every account.
    pub fn system_ids(&self) -> Vec<String> {
        self.accounts.load().keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.accounts.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks a bind's credentials: the account, whether it is enabled, its password.
    ///
    /// Blocking and CPU-heavy (argon2): run it on `spawn_blocking`. An unknown
    /// system_id costs a decoy verification, so timing does not tell which exist.
    pub fn authenticate(
        &self,
        system_id: &str,
        password: &[u8],
    ) -> Result<Arc<Account>, AuthError> {
        let Some(account) = self.get(system_id) else {
            if let Ok(decoy) = PasswordHash::new(decoy_hash()) {
                let _ = Argon2::default().verify_password(password, &decoy);
            }
            return Err(AuthError::UnknownSystemId);
        };
        if !account.verify_password(password) {
            return Err(AuthError::BadPassword);
        }
        // After the password, so a disabled account reveals nothing to a wrong one.
        if !account.enabled {
            return Err(AuthError::Disabled);
        }
        Ok(account)
    }

    /// Reloads from `source` now. On success swaps the accounts in and logs INFO with
    /// the count; on failure keeps the current ones and logs WARN with the reason.
    pub fn reload_now(&self, source: &AccountsSource) -> Result<usize, ConfigError> {
        let text = read_text(source.path());
        self.apply(source, text)
    }

    /// The reload of [`AccountDirectory::reload_now`], from text already read (so the
    /// watcher knows exactly which bytes it applied).
    fn apply(
        &self,
        source: &AccountsSource,
        text: Result<String, ConfigError>,
    ) -> Result<usize, ConfigError> {
        match text.and_then(|text| parse_source(source, &text)) {
            Ok(accounts) => {
                let count = accounts.len();
                self.replace(accounts);
                info!(path = %source.path().display(), count, "accounts reloaded");
                Ok(count)
            }
            Err(e) => {
                warn!(
                    path = %source.path().display(),
                    error = %error_chain(&e),
                    kept = self.len(),
                    "accounts not reloaded, keeping the previous ones"
                );
                Err(e)
            }
        }
    }

    /// Starts watching `source` and returns the task to spawn: it reloads when the
    /// file's directory changes (debounced, and only when the file's bytes changed) and
    /// on every SIGHUP, until `shutdown` is cancelled.
    ///
    /// The file's content when this is called is the baseline: a change before that
    /// (between loading the config and watching) is not seen until the next change or
    /// SIGHUP. Nothing is reloaded up front, so accounts set by hand (the demo account
    /// of `smsc all`) stay until the file really changes. The directory is watched
    /// rather than the file because Kubernetes updates a mounted ConfigMap by swapping a
    /// symlink (a ConfigMap mounted with `subPath` is never updated by the kubelet).
    /// Must be called inside a tokio runtime.
    pub fn watch(
        self: Arc<Self>,
        source: AccountsSource,
        shutdown: CancellationToken,
    ) -> Result<impl Future<Output = ()> + Send + 'static, WatchError> {
        let path = source.path().to_owned();
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        // Capacity 1: a pending wake-up already covers any later event.
        let (tx, mut changed) = mpsc::channel::<()>(1);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                Ok(e) if !matches!(e.kind, notify::EventKind::Access(_)) => {
                    let _ = tx.try_send(());
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, "accounts file watcher error"),
            })
            .map_err(|source| WatchError::Notify { path: dir.clone(), source })?;
        watcher
            .watch(&dir, notify::RecursiveMode::NonRecursive)
            .map_err(|source| WatchError::Notify { path: dir.clone(), source })?;
        let mut hangup =
            smsc_runtime::shutdown::sighup().map_err(|source| WatchError::Signal { source })?;

        // The text last read: an event that leaves it unchanged (a neighbour file
        // changing, a touch) is no reload.
        let mut last_seen = std::fs::read_to_string(&path).ok();
        Ok(async move {
            // Dropping the watcher stops it: it lives as long as this task.
            let _watcher = watcher;
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    Some(()) = hangup.recv() => {
                        info!(path = %source.path().display(), "SIGHUP: reloading accounts");
                        last_seen = self.reload_from(&source, None).1;
                    }
                    Some(()) = changed.recv() => {
                        if !quiet_for(&mut changed, &shutdown).await {
                            break;
                        }
                        let (unchanged, seen) = self.reload_from(&source, last_seen.as_deref());
                        if unchanged {
                            debug!(path = %source.path().display(), "accounts file unchanged");
                        }
                        last_seen = seen;
                    }
                }
            }
            debug!(path = %source.path().display(), "accounts watcher stopped");
        })
    }

    /// Reads `source` (a small file on a local or tmpfs mount: fine inline) and applies
    /// it unless its text equals `unless_equal`. Returns whether it was skipped as
    /// unchanged, and the text read (`None` if unreadable, so the next event retries).
    fn reload_from(
        &self,
        source: &AccountsSource,
        unless_equal: Option<&str>,
    ) -> (bool, Option<String>) {
        let text = read_text(source.path());
        let seen = text.as_ref().ok().cloned();
        if seen.is_some() && seen.as_deref() == unless_equal {
            return (true, seen);
        }
        let _ = self.apply(source, text);
        (false, seen)
    }
}

/// Waits until no event came for [`DEBOUNCE`]; false if shut down meanwhile.
async fn quiet_for(changed: &mut mpsc::Receiver<()>, shutdown: &CancellationToken) -> bool {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(DEBOUNCE) => return true,
            more = changed.recv() => if more.is_none() { return true },
        }
    }
}

fn index(accounts: Vec<Account>) -> HashMap<String, Arc<Account>> {
    accounts.into_iter().map(|a| (a.system_id.clone(), Arc::new(a))).collect()
}

/// The accounts in `text`, the content of `source`.
fn parse_source(source: &AccountsSource, text: &str) -> Result<Vec<Account>, ConfigError> {
    match source {
        AccountsSource::ConfigFile { path, read } => {
            let (list, max_validity_cap) = read.accounts(path, text)?;
            compile(&list, max_validity_cap, "")
        }
        AccountsSource::AccountsFile { path, max_validity_cap } => {
            let list = config::parse_accounts_file(path, text, *max_validity_cap)?;
            compile(&list, *max_validity_cap, &format!("{}: ", path.display()))
        }
    }
}

/// Account fixtures for tests of any role.
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use std::sync::OnceLock;
    use std::time::Duration;

    use smsc_store::BindKind;

    use crate::config::AccountConfig;

    /// An argon2id hash with the same tiny parameters as [`SECRET_HASH`].
    pub fn cheap_hash(password: &str) -> String {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let params = argon2::Params::new(8, 1, 1, None).expect("valid argon2 parameters");
        let argon2 =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let salt = SaltString::encode_b64(b"fixture-salt").expect("valid salt");
        argon2.hash_password(password.as_bytes(), &salt).expect("hashes").to_string()
    }

    /// argon2id of "secret" with tiny parameters (m=8 KiB, t=1), so tests need not pay
    /// for the defaults.
    pub const SECRET_HASH: &str =
        "$argon2id$v=19$m=8,t=1,p=1$Zml4dHVyZS1zYWx0$WJEFL8NndZsdrq5NkUV09qPFpNjBbMQcMNAkey5WW+o";

    /// The password of every [`account`].
    pub const PASSWORD: &str = "secret";

    /// argon2id of [`PASSWORD`], once per test process (hashing is slow on purpose).
    pub fn password_hash() -> String {
        static HASH: OnceLock<String> = OnceLock::new();
        HASH.get_or_init(|| super::hash_password(PASSWORD).expect("argon2 hashes")).clone()
    }

    /// An account that may do anything, from anywhere; tests narrow what they check.
    pub fn account(system_id: &str) -> AccountConfig {
        AccountConfig {
            system_id: system_id.to_owned(),
            password_hash: password_hash(),
            bind_types: vec![BindKind::Transmitter, BindKind::Receiver, BindKind::Transceiver],
            max_binds: 4,
            window: 16,
            max_submit_rate: 0,
            source_addresses: vec!["*".to_owned()],
            allowed_cidrs: vec!["0.0.0.0/0".parse().expect("net"), "::/0".parse().expect("net")],
            enabled: true,
            default_validity: Duration::from_secs(3600),
            max_validity: Duration::from_secs(48 * 3600),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::testing::{SECRET_HASH, cheap_hash};
    use super::*;

    fn config(system_id: &str) -> AccountConfig {
        AccountConfig {
            system_id: system_id.to_owned(),
            password_hash: SECRET_HASH.to_owned(),
            bind_types: vec![BindKind::Transmitter, BindKind::Transceiver],
            max_binds: 2,
            window: 10,
            max_submit_rate: 0,
            source_addresses: vec!["BANK".into(), "4470*".into(), "?SMS".into()],
            allowed_cidrs: vec![
                "10.0.0.0/8".parse().expect("net"),
                "2001:db8::/32".parse().expect("net"),
            ],
            enabled: true,
            default_validity: Duration::from_secs(3600),
            max_validity: Duration::from_secs(7200),
        }
    }

    #[test]
    fn glob_matches() {
        let yes = [
            ("*", ""),
            ("*", "anything"),
            ("", ""),
            ("abc", "abc"),
            ("a?c", "abc"),
            ("a*", "a"),
            ("a*c", "abbbc"),
            ("*c", "abc"),
            ("a*b*c", "axxbyyc"),
            ("a*b*c", "abcbc"),
            ("*aab", "aaaab"),
            ("?", "é"),
            ("é*", "éa"),
            ("**a**", "a"),
            ("4470*", "447012345678"),
        ];
        let no = [
            ("", "a"),
            ("abc", "abd"),
            ("a?c", "ac"),
            ("a*c", "abcd"),
            ("?", ""),
            ("??", "é"),
            ("a*b*c", "acb"),
            ("ABC", "abc"),
            ("4470*", "4471"),
        ];
        for (p, t) in yes {
            assert!(glob_match(p, t), "{p:?} should match {t:?}");
        }
        for (p, t) in no {
            assert!(!glob_match(p, t), "{p:?} should not match {t:?}");
        }
        // The single-star backtrack stays fast on the classic bad case.
        let text = "a".repeat(10_000);
        assert!(!glob_match("*a*a*a*a*a*b", &text));
    }

    #[test]
    fn account_rules() {
        let a = Account::from_config(&config("bank")).expect("valid");
        assert!(a.allows_bind(BindKind::Transmitter));
        assert!(!a.allows_bind(BindKind::Receiver));
        assert!(a.source_allowed("BANK"));
        assert!(a.source_allowed("447000000"));
        assert!(a.source_allowed("XSMS"));
        assert!(!a.source_allowed("bank"));
        assert!(!a.source_allowed("SMS"));
        assert!(a.client_allowed("10.1.2.3".parse().expect("ip")));
        assert!(a.client_allowed("::ffff:10.1.2.3".parse().expect("ip")));
        assert!(a.client_allowed("2001:db8::1".parse().expect("ip")));
        assert!(!a.client_allowed("11.1.2.3".parse().expect("ip")));
        assert!(!a.client_allowed("::ffff:11.1.2.3".parse().expect("ip")));
    }

    #[test]
    fn bad_entries_are_refused() {
        type Change = fn(&mut AccountConfig);
        let cases: Vec<(Change, &str)> = vec![
            (|c| c.system_id = String::new(), "system_id"),
            (|c| c.system_id = "sixteen-chars-xx".into(), "system_id"),
            (|c| c.system_id = "has space".into(), "system_id"),
            (|c| c.password_hash = "secret".into(), "password_hash"),
            (|c| c.password_hash = "$pbkdf2-sha256$i=1000$c2FsdA$aGFzaA".into(), "password_hash"),
            (
                |c| {
                    c.password_hash =
                        "$argon2id$v=19$m=1048576,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into()
                },
                "password_hash",
            ),
            (|c| c.bind_types.clear(), "bind_types"),
            (|c| c.max_binds = 0, "max_binds"),
            (|c| c.window = 0, "window"),
            (|c| c.source_addresses.clear(), "source_addresses"),
            (|c| c.source_addresses.push(String::new()), "source_addresses"),
            (|c| c.allowed_cidrs.clear(), "allowed_cidrs"),
            (|c| c.default_validity = Duration::ZERO, "default_validity"),
            (|c| c.default_validity = Duration::from_secs(9000), "default_validity"),
        ];
        for (change, field) in cases {
            let mut c = config("bank");
            change(&mut c);
            let e = Account::from_config(&c).expect_err(field);
            assert!(e.to_string().starts_with(field), "{field}: {e}");
        }
    }

    #[test]
    fn passwords_verify_in_full() {
        assert_eq!(cheap_hash("secret"), SECRET_HASH);
        let a = Account::from_config(&config("bank")).expect("valid");
        assert!(a.verify_password(b"secret"));
        assert!(!a.verify_password(b"Secret"));
        assert!(!a.verify_password(b""));

        // SMPP's 8-character cap is not applied: no truncation either way.
        let mut long = config("long");
        long.password_hash = cheap_hash("longpassword");
        let long = Account::from_config(&long).expect("valid");
        assert!(long.verify_password(b"longpassword"));
        assert!(!long.verify_password(b"longpass"));
        assert!(!long.verify_password(b"longpassword2"));
    }

    #[test]
    fn hash_password_makes_salted_argon2id() {
        let a = hash_password("pw").expect("hash");
        let b = hash_password("pw").expect("hash");
        assert!(a.starts_with("$argon2id$v=19$"), "{a}");
        assert_ne!(a, b, "salts differ");
        check_password_hash(&a).expect("loadable");
    }

    #[test]
    fn demo_account() {
        let demo = Account::demo();
        assert_eq!((demo.system_id.as_str(), demo.window), ("demo", 256));
        assert!(demo.max_binds >= 8, "room for a few binds: {}", demo.max_binds);
        assert!(demo.verify_password(b"demo"));
        assert!(!demo.verify_password(b"demo1"));
        assert!(demo.allows_bind(BindKind::Receiver));
        assert!(demo.source_allowed("anything"));
        assert!(demo.client_allowed("203.0.113.9".parse().expect("ip")));
        assert!(demo.client_allowed("2001:db8::9".parse().expect("ip")));
        assert_eq!(demo.max_submit_rate, 0);
    }

    #[test]
    fn debug_never_shows_the_hash() {
        let a = Account::from_config(&config("bank")).expect("valid");
        let shown = format!("{a:?} {:?} {a:#?}", config("bank"));
        assert!(shown.contains("bank") && shown.contains("4470*"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(!shown.contains("argon2"), "{shown}");
        assert!(!shown.contains("c2FsdHNhbHQ"), "{shown}");
        let demo = format!("{:?}", Account::demo());
        assert!(!demo.contains("argon2"), "{demo}");
    }

    #[test]
    fn directory_get_replace_authenticate() {
        let mut disabled = config("off");
        disabled.enabled = false;
        let dir = AccountDirectory::new(vec![
            Account::from_config(&config("bank")).expect("valid"),
            Account::from_config(&disabled).expect("valid"),
        ]);
        assert_eq!(dir.len(), 2);
        assert_eq!(dir.get("bank").map(|a| a.window), Some(10));
        assert!(dir.get("nobody").is_none());
        assert!(format!("{dir:?}").contains("bank"));

        assert_eq!(dir.authenticate("bank", b"secret").map(|a| a.window), Ok(10));
        assert_eq!(dir.authenticate("bank", b"wrong").err(), Some(AuthError::BadPassword));
        assert_eq!(dir.authenticate("off", b"secret").err(), Some(AuthError::Disabled));
        assert_eq!(dir.authenticate("off", b"wrong").err(), Some(AuthError::BadPassword));
        assert_eq!(dir.authenticate("nobody", b"x").err(), Some(AuthError::UnknownSystemId));

        let held = dir.get("bank").expect("present");
        dir.replace(vec![Account::from_config(&config("new")).expect("valid")]);
        assert!(dir.get("bank").is_none());
        assert_eq!(dir.len(), 1);
        // A session keeps the account it bound with.
        assert_eq!(held.system_id, "bank");
    }

    fn accounts_yaml(ids: &[&str]) -> String {
        let mut text = String::from("accounts:\n");
        for id in ids {
            text.push_str(&format!("  - system_id: {id}\n    password_hash: '{SECRET_HASH}'\n"));
        }
        text
    }

    /// Replaces the file the way a ConfigMap update or an editor does: write aside, rename.
    fn swap_in(path: &Path, text: &str) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, path).expect("rename");
    }

    #[test]
    fn reload_from_accounts_file_keeps_last_good() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("accounts.yaml");
        let source = AccountsSource::AccountsFile {
            path: path.clone(),
            max_validity_cap: Duration::from_secs(72 * 3600),
        };
        let dir = AccountDirectory::new(Vec::new());

        swap_in(&path, &accounts_yaml(&["a", "b"]));
        assert_eq!(dir.reload_now(&source).expect("good file"), 2);
        assert!(dir.get("a").is_some() && dir.get("b").is_some());

        swap_in(&path, &accounts_yaml(&["c"]));
        assert_eq!(dir.reload_now(&source).expect("good file"), 1);
        assert!(dir.get("a").is_none() && dir.get("c").is_some());

        for broken in [
            "accounts: [".to_owned(),
            "accounts: [{system_id: x}]".to_owned(),
            "accounts: []\nextra: 1".to_owned(),
            accounts_yaml(&["d", "d"]),
            format!(
                "accounts: [{{system_id: x, password_hash: '{SECRET_HASH}', max_validity: 100h}}]"
            ),
        ] {
            swap_in(&path, &broken);
            let e = dir.reload_now(&source).expect_err(&broken);
            assert!(error_chain(&e).to_string().contains("accounts.yaml"), "{e}");
            assert_eq!(dir.len(), 1, "kept after {broken:?}");
            assert!(dir.get("c").is_some());
        }

        std::fs::remove_file(&path).expect("rm");
        assert!(matches!(dir.reload_now(&source), Err(ConfigError::Read { .. })));
        assert!(dir.get("c").is_some());

        swap_in(&path, "");
        assert_eq!(dir.reload_now(&source).expect("empty file: no accounts"), 0);
    }

    #[tokio::test]
    async fn watcher_reloads_on_file_change() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("accounts.yaml");
        swap_in(&path, &accounts_yaml(&["a"]));
        let source = AccountsSource::AccountsFile {
            path: path.clone(),
            max_validity_cap: Duration::from_secs(72 * 3600),
        };
        let dir = Arc::new(AccountDirectory::new(Vec::new()));
        dir.reload_now(&source).expect("good");

        let shutdown = CancellationToken::new();
        let task = tokio::spawn(dir.clone().watch(source, shutdown.clone()).expect("watch"));
        // Accounts set by hand stay until the file changes.
        dir.replace(vec![Account::from_config(&config("manual")).expect("valid")]);

        let wait_for = |id: &'static str, present: bool| {
            let dir = dir.clone();
            async move {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
                while dir.get(id).is_some() != present {
                    assert!(tokio::time::Instant::now() < deadline, "no reload for {id}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        swap_in(&path, &accounts_yaml(&["a", "b"]));
        wait_for("b", true).await;
        assert!(dir.get("manual").is_none());

        // A broken file keeps the accounts; the next good one is applied.
        swap_in(&path, "accounts: [");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(dir.len(), 2);
        swap_in(&path, &accounts_yaml(&["c"]));
        wait_for("c", true).await;
        assert_eq!(dir.len(), 1);

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("watcher stops on shutdown")
            .expect("watcher task did not panic");
    }
}
