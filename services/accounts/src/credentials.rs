//! [`CredentialCache`]: the bind credentials this process verified lately, so that a
//! storm of rebinds (an edge pod lost, drained or scaled down, and its ESMEs binding
//! again on the other pods at once) costs about one argon2 verification per account
//! instead of one per bind. Passwords stay stored as argon2 hashes only.
//!
//! What it keeps, per system_id: a keyed digest (BLAKE2b-256 under 64 random bytes
//! drawn when the cache is made and held only in this process's memory) of the
//! system_id, the password and the account's `password_hash`; when the entry expires;
//! and the hash it was verified against. Never the password. The contract:
//!
//! - Only a password argon2 accepted is remembered. A wrong password or an unknown
//!   system_id leaves nothing behind (no negative cache): each pays the full argon2
//!   check, and the edge's lockout counts it as before.
//! - The account's current hash is part of the digest: once a reload changes the hash,
//!   no entry made before can match. An account that is gone is not in the directory,
//!   so its binds never reach the cache. [`CredentialCache::forget_stale`] drops such
//!   entries after a reload, to free them sooner.
//! - An entry expires `ttl` after the verification that made it; a hit does not extend
//!   it. At most `max_entries` entries: past that the one expiring first is dropped.
//! - Binds that arrive while the same credentials are being checked wait for that check
//!   instead of starting another one, so a cold cache meets a storm with one argon2 run
//!   per account. They share its answer, a refusal too; nothing of a refusal is kept
//!   once it is given.
//! - Digests are compared in constant time (`subtle`).
//! - Per process: each edge pod has its own. `ttl` 0 turns it off: every bind is
//!   checked with argon2, concurrent ones each on their own, as without the cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use blake2::Blake2bMac;
use blake2::digest::consts::U32;
use blake2::digest::{Key, KeyInit, Mac};
use subtle::ConstantTimeEq;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::directory::{decoy_hash, verdict, verify};
use crate::{Account, AccountDirectory, AuthError};

#[cfg(test)]
mod tests;

/// BLAKE2b with a 256-bit output, keyed.
type Keyed = Blake2bMac<U32>;
type Digest = [u8; 32];
/// The argon2 check; tests count calls through it.
type Verifier = dyn Fn(Option<&Account>, &[u8]) -> bool + Send + Sync;

/// How a bind's credentials were checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Found verified in the cache: no argon2.
    Cache,
    /// Waited for another bind's argon2 check of the same credentials.
    Shared,
    /// Checked with argon2 (for an unknown system_id, against the decoy).
    Argon2,
}

impl Via {
    pub const ALL: [Via; 3] = [Via::Cache, Via::Shared, Via::Argon2];

    pub fn as_str(self) -> &'static str {
        match self {
            Via::Cache => "cache",
            Via::Shared => "shared",
            Via::Argon2 => "argon2",
        }
    }
}

/// The answer to a bind's credentials, and how it was reached.
#[derive(Debug)]
pub struct Checked {
    pub result: Result<Arc<Account>, AuthError>,
    pub via: Via,
}

/// Credentials verified lately, by system_id; see the module docs.
pub struct CredentialCache {
    keyed: Keyed,
    ttl: Duration,
    max_entries: usize,
    verify: Arc<Verifier>,
    table: Mutex<Table>,
}

impl std::fmt::Debug for CredentialCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialCache")
            .field("ttl", &self.ttl)
            .field("max_entries", &self.max_entries)
            .field("entries", &self.len())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Table {
    verified: HashMap<String, Verified>,
    /// Argon2 checks under way, by system_id (several: different passwords).
    checking: HashMap<String, Vec<Checking>>,
    next_check: u64,
}

struct Verified {
    digest: Digest,
    expires: Instant,
    /// What the password was verified against, for [`CredentialCache::forget_stale`].
    password_hash: String,
}

struct Checking {
    id: u64,
    digest: Digest,
    /// `Some(verified)` once the check is done. Dropped unsent when the bind that runs
    /// the check goes away: its waiters then check for themselves.
    outcome: watch::Sender<Option<bool>>,
}

/// What a bind does with its credentials.
enum Step<'a> {
    Hit,
    Wait(watch::Receiver<Option<bool>>),
    Check(Lead<'a>),
}

impl CredentialCache {
    /// A cache keeping each verification for `ttl` (0: off), at most `max_entries`.
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        Self::with_verifier(ttl, max_entries, Arc::new(verify))
    }

    fn with_verifier(ttl: Duration, max_entries: usize, verify: Arc<Verifier>) -> Self {
        let mut key = Key::<Keyed>::default();
        OsRng.fill_bytes(&mut key);
        Self {
            keyed: <Keyed as KeyInit>::new(&key),
            ttl,
            max_entries,
            verify,
            table: Mutex::new(Table::default()),
        }
    }

    /// Whether anything is remembered at all.
    pub fn is_enabled(&self) -> bool {
        !self.ttl.is_zero() && self.max_entries > 0
    }

    /// Entries held now, expired ones included until they are dropped.
    pub fn len(&self) -> usize {
        self.lock().verified.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks a bind's credentials against `directory`: from the cache when this
    /// password verified lately against the account's current hash, else with argon2
    /// on the blocking pool (or by waiting for a check of the same credentials already
    /// under way). The answers: unknown system_id, bad password, disabled, or the account.
    pub async fn authenticate(
        &self,
        directory: &AccountDirectory,
        system_id: &str,
        password: &[u8],
    ) -> Checked {
        let account = directory.get(system_id);
        if !self.is_enabled() {
            let result = match self.verify_blocking(account.clone(), password).await {
                Some(verified) => verdict(account, verified),
                None => Err(AuthError::Unavailable),
            };
            return Checked { result, via: Via::Argon2 };
        }
        // An unknown system_id goes the same way with the decoy's hash, so waiting for
        // a check under way does not tell either whether the id exists.
        let hash = account.as_deref().map_or(decoy_hash(), Account::password_hash);
        let digest = self.digest(system_id, password, hash);
        loop {
            match self.step(system_id, &digest, account.is_some()) {
                Step::Hit => return Checked { result: verdict(account, true), via: Via::Cache },
                Step::Wait(mut outcome) => {
                    // Err: the check was abandoned; go again (and most likely run it).
                    if let Ok(verified) = outcome.wait_for(Option::is_some).await {
                        let verified = *verified == Some(true);
                        return Checked { result: verdict(account, verified), via: Via::Shared };
                    }
                }
                Step::Check(lead) => {
                    let result = match self.verify_blocking(account.clone(), password).await {
                        Some(verified) => {
                            lead.finish(account.as_deref().filter(|_| verified), verified);
                            verdict(account, verified)
                        }
                        None => Err(AuthError::Unavailable),
                    };
                    return Checked { result, via: Via::Argon2 };
                }
            }
        }
    }

    /// Drops the entries whose account is gone or has another password hash now, and
    /// the expired ones. Only frees memory: such entries can never match anyway.
    pub fn forget_stale(&self, directory: &AccountDirectory) {
        let now = Instant::now();
        self.lock().verified.retain(|system_id, v| {
            v.expires > now
                && directory.get(system_id).is_some_and(|a| a.password_hash() == v.password_hash)
        });
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn digest(&self, system_id: &str, password: &[u8], password_hash: &str) -> Digest {
        let mut mac = self.keyed.clone();
        // Each part after its length, so that no two different triples feed the same bytes.
        for part in [system_id.as_bytes(), password, password_hash.as_bytes()] {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
        let mut digest = Digest::default();
        digest.copy_from_slice(&mac.finalize().into_bytes());
        digest
    }

    fn step(&self, system_id: &str, digest: &Digest, known: bool) -> Step<'_> {
        let now = Instant::now();
        let mut t = self.lock();
        if known && let Some(v) = t.verified.get(system_id) {
            if v.expires <= now {
                t.verified.remove(system_id);
            } else if bool::from(v.digest.ct_eq(digest)) {
                return Step::Hit;
            }
        }
        let under_way = t.checking.get(system_id).into_iter().flatten();
        if let Some(c) = under_way.into_iter().find(|c| bool::from(c.digest.ct_eq(digest))) {
            return Step::Wait(c.outcome.subscribe());
        }
        let id = t.next_check;
        t.next_check += 1;
        let check = Checking { id, digest: *digest, outcome: watch::Sender::new(None) };
        t.checking.entry(system_id.to_owned()).or_default().push(check);
        Step::Check(Lead {
            cache: self,
            system_id: system_id.to_owned(),
            id,
            digest: *digest,
            done: false,
        })
    }

    /// The argon2 check on the blocking pool; `None` if its task panicked.
    async fn verify_blocking(
        &self,
        account: Option<Arc<Account>>,
        password: &[u8],
    ) -> Option<bool> {
        let (verify, password) = (self.verify.clone(), password.to_vec());
        tokio::task::spawn_blocking(move || verify(account.as_deref(), &password)).await.ok()
    }
}

impl Table {
    fn end_check(&mut self, system_id: &str, id: u64) -> Option<Checking> {
        let list = self.checking.get_mut(system_id)?;
        let i = list.iter().position(|c| c.id == id)?;
        let check = list.swap_remove(i);
        if list.is_empty() {
            self.checking.remove(system_id);
        }
        Some(check)
    }

    fn remember(&mut self, system_id: String, entry: Verified, max_entries: usize, now: Instant) {
        if !self.verified.contains_key(&system_id) && self.verified.len() >= max_entries {
            self.verified.retain(|_, v| v.expires > now);
            while self.verified.len() >= max_entries {
                let first = self.verified.iter().min_by_key(|(_, v)| v.expires);
                let Some(first) = first.map(|(id, _)| id.clone()) else { break };
                self.verified.remove(&first);
            }
        }
        self.verified.insert(system_id, entry);
    }
}

/// The argon2 check one bind runs for everyone waiting on the same credentials.
struct Lead<'a> {
    cache: &'a CredentialCache,
    system_id: String,
    id: u64,
    digest: Digest,
    done: bool,
}

impl Lead<'_> {
    /// Ends the check: remembers the credentials if they verified against `account`,
    /// then gives the waiters the answer.
    fn finish(mut self, account: Option<&Account>, verified: bool) {
        self.done = true;
        let now = Instant::now();
        let cache = self.cache;
        let mut t = cache.lock();
        let check = t.end_check(&self.system_id, self.id);
        if let Some(account) = account {
            let entry = Verified {
                digest: self.digest,
                expires: now + cache.ttl,
                password_hash: account.password_hash().to_owned(),
            };
            t.remember(self.system_id.clone(), entry, cache.max_entries, now);
        }
        drop(t);
        if let Some(check) = check {
            check.outcome.send_replace(Some(verified));
        }
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        if !self.done {
            // Abandoned (the bind's connection closed): the waiters see the sender go.
            self.cache.lock().end_check(&self.system_id, self.id);
        }
    }
}
