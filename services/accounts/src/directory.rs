//! [`AccountDirectory`]: the accounts a bind is checked against, reloaded from a file
//! ([`AccountDirectory::reload_now`]) and watched while the process runs
//! ([`AccountDirectory::watch`]: file changes and SIGHUP).
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
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordVerifier};
use notify::Watcher as _;
use smsc_runtime::config::{ConfigError, read_text};
use smsc_runtime::telemetry::error_chain;
use smsc_store::BindKind;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{self, AccountConfig, AccountsSource};
use crate::{Account, compile, hash_password};

/// Quiet time after the last file event before reloading: a ConfigMap update is a
/// burst of events (new dir, symlink swap, old dir removed).
const DEBOUNCE: Duration = Duration::from_millis(300);

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
    /// The check itself failed (its blocking task panicked): no verdict on the
    /// credentials.
    #[error("the password check did not complete")]
    Unavailable,
}

/// A hash to verify against when the system_id is unknown, so that answer takes as
/// long as a wrong password and does not reveal which system_ids exist.
pub(crate) fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        hash_password("decoy").expect("argon2 defaults and a fresh salt always hash 5 bytes")
    })
}

/// The argon2 check of a bind's password: against the account's hash, or for an
/// unknown system_id (`None`) against the decoy, which takes as long and never passes.
/// Blocking and CPU-heavy.
pub(crate) fn verify(account: Option<&Account>, password: &[u8]) -> bool {
    match account {
        Some(account) => account.verify_password(password),
        None => {
            if let Ok(decoy) = PasswordHash::new(decoy_hash()) {
                let _ = Argon2::default().verify_password(password, &decoy);
            }
            false
        }
    }
}

/// The answer to a bind whose password `verified` (or not) against `account`'s hash.
/// Disabled is told only after the password, so a disabled account reveals nothing
/// to a wrong one.
pub(crate) fn verdict(
    account: Option<Arc<Account>>,
    verified: bool,
) -> Result<Arc<Account>, AuthError> {
    match account {
        None => Err(AuthError::UnknownSystemId),
        Some(_) if !verified => Err(AuthError::BadPassword),
        Some(a) if !a.enabled => Err(AuthError::Disabled),
        Some(a) => Ok(a),
    }
}

/// The accounts a bind is checked against. Cheap to read from many sessions at once.
pub struct AccountDirectory {
    accounts: ArcSwap<Index>,
    /// Bumped by every [`AccountDirectory::replace`], for whoever holds what an earlier
    /// set admitted (the edge's bound sessions).
    generation: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for AccountDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let snapshot = self.accounts.load();
        let mut ids: Vec<&str> = snapshot.by_id.keys().map(String::as_str).collect();
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
        self.accounts.load().by_id.get(system_id).cloned()
    }

    /// The account holding HTTP API key `key` (looked up by its SHA-256).
    pub fn by_api_key(&self, key: &str) -> Option<Arc<Account>> {
        let snapshot = self.accounts.load();
        let system_id = snapshot.by_key.get(&crate::api_key_digest(key))?;
        snapshot.by_id.get(system_id).cloned()
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
        self.accounts.load().by_id.keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.accounts.load().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

/// The accounts by system_id, and by the digests of their API keys.
#[derive(Default)]
struct Index {
    by_id: HashMap<String, Arc<Account>>,
    by_key: HashMap<[u8; 32], String>,
}

fn index(accounts: Vec<Account>) -> Index {
    let mut i = Index::default();
    for a in accounts {
        i.by_id.insert(a.system_id.clone(), Arc::new(a));
    }
    // From the accounts kept: a system_id given twice keeps only the later entry's keys.
    for a in i.by_id.values() {
        for digest in a.api_keys() {
            i.by_key.insert(*digest, a.system_id.clone());
        }
    }
    i
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
