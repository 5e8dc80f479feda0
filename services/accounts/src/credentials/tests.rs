use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use super::*;
use crate::testing::cheap_hash;
use crate::{AccountConfig, hash_password};

const MIN: Duration = Duration::from_secs(60);

fn config(system_id: &str, password: &str) -> AccountConfig {
    AccountConfig { password_hash: cheap_hash(password), ..crate::testing::account(system_id) }
}

fn account(system_id: &str, password: &str) -> Account {
    Account::from_config(&config(system_id, password)).expect("valid account")
}

/// A directory of accounts `ids`, each with the password "secret" (cheap hashes).
fn directory(ids: &[&str]) -> AccountDirectory {
    AccountDirectory::new(ids.iter().map(|id| account(id, "secret")).collect())
}

/// A verifier that runs the real argon2 check and counts the calls.
fn counting() -> (Arc<AtomicUsize>, Arc<Verifier>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let verifier = move |account: Option<&Account>, password: &[u8]| {
        counter.fetch_add(1, Ordering::SeqCst);
        verify(account, password)
    };
    (calls, Arc::new(verifier))
}

fn cache(ttl: Duration, max_entries: usize) -> (Arc<AtomicUsize>, CredentialCache) {
    let (calls, verifier) = counting();
    (calls, CredentialCache::with_verifier(ttl, max_entries, verifier))
}

/// The way and the answer of one bind's check (the answer as the account's system_id).
async fn check(
    cache: &CredentialCache,
    dir: &AccountDirectory,
    system_id: &str,
    password: &str,
) -> (Via, Result<String, AuthError>) {
    let c = cache.authenticate(dir, system_id, password.as_bytes()).await;
    (c.via, c.result.map(|a| a.system_id.clone()))
}

fn ok(system_id: &str) -> Result<String, AuthError> {
    Ok(system_id.to_owned())
}

/// The first bind of `system_id` with "secret": checked with argon2, and let in.
async fn first_bind(cache: &CredentialCache, dir: &AccountDirectory, system_id: &str) {
    assert_eq!(check(cache, dir, system_id, "secret").await, (Via::Argon2, ok(system_id)));
}

#[tokio::test]
async fn a_verified_password_binds_again_without_argon2() {
    let (calls, cache) = cache(5 * MIN, 100);
    let dir = directory(&["bank"]);
    assert_eq!(check(&cache, &dir, "bank", "secret").await, (Via::Argon2, ok("bank")));
    for _ in 0..10 {
        assert_eq!(check(&cache, &dir, "bank", "secret").await, (Via::Cache, ok("bank")));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.len(), 1);
}

#[tokio::test]
async fn a_wrong_password_after_a_right_one_pays_argon2_every_time() {
    let (calls, cache) = cache(5 * MIN, 100);
    let dir = directory(&["bank"]);
    first_bind(&cache, &dir, "bank").await;
    for n in 2..5 {
        let wrong = check(&cache, &dir, "bank", "secre").await;
        assert_eq!(wrong, (Via::Argon2, Err(AuthError::BadPassword)));
        assert_eq!(calls.load(Ordering::SeqCst), n, "no negative cache");
    }
    // A longer password is not cut to the cached one either.
    let longer = check(&cache, &dir, "bank", "secret1").await;
    assert_eq!(longer, (Via::Argon2, Err(AuthError::BadPassword)));
    // The wrong ones did not push out the right one.
    assert_eq!(check(&cache, &dir, "bank", "secret").await, (Via::Cache, ok("bank")));
}

#[tokio::test]
async fn an_unknown_system_id_pays_argon2_every_time_and_is_never_cached() {
    // The real verifier: the decoy hash is of "decoy", which must not let anyone in.
    let cache = CredentialCache::new(5 * MIN, 100);
    let dir = directory(&["bank"]);
    for password in ["decoy", "decoy", "secret"] {
        let c = cache.authenticate(&dir, "nobody", password.as_bytes()).await;
        assert_eq!((c.via, c.result.err()), (Via::Argon2, Some(AuthError::UnknownSystemId)));
    }
    assert!(cache.is_empty());
}

#[tokio::test]
async fn a_changed_password_hash_is_never_served_from_the_cache() {
    let (calls, cache) = cache(5 * MIN, 100);
    let dir = directory(&["bank"]);
    first_bind(&cache, &dir, "bank").await;

    // The password changed: the old one is checked again, and refused.
    dir.replace(vec![account("bank", "newpass")]);
    let old = check(&cache, &dir, "bank", "secret").await;
    assert_eq!(old, (Via::Argon2, Err(AuthError::BadPassword)));
    assert_eq!(check(&cache, &dir, "bank", "newpass").await, (Via::Argon2, ok("bank")));
    assert_eq!(check(&cache, &dir, "bank", "newpass").await, (Via::Cache, ok("bank")));

    // The same password under a new hash (new salt and cost): checked again too.
    let mut same = config("bank", "newpass");
    same.password_hash = hash_password("newpass").expect("hashes");
    dir.replace(vec![Account::from_config(&same).expect("valid")]);
    let before = calls.load(Ordering::SeqCst);
    assert_eq!(check(&cache, &dir, "bank", "newpass").await, (Via::Argon2, ok("bank")));
    assert_eq!(calls.load(Ordering::SeqCst), before + 1);

    // Removed: unknown, whatever the cache held.
    dir.replace(Vec::new());
    let gone = check(&cache, &dir, "bank", "newpass").await;
    assert_eq!(gone, (Via::Argon2, Err(AuthError::UnknownSystemId)));
}

#[tokio::test]
async fn a_disabled_account_is_refused_even_from_the_cache() {
    let (_, cache) = cache(5 * MIN, 100);
    let dir = directory(&["bank"]);
    first_bind(&cache, &dir, "bank").await;
    dir.replace(vec![
        Account::from_config(&AccountConfig { enabled: false, ..config("bank", "secret") })
            .expect("valid"),
    ]);
    let disabled = check(&cache, &dir, "bank", "secret").await;
    assert_eq!(disabled, (Via::Cache, Err(AuthError::Disabled)));
    // A wrong password still hears nothing of it.
    let wrong = check(&cache, &dir, "bank", "wrong").await;
    assert_eq!(wrong, (Via::Argon2, Err(AuthError::BadPassword)));
}

#[tokio::test(start_paused = true)]
async fn an_entry_expires_ttl_after_its_verification_and_a_hit_does_not_extend_it() {
    let (calls, cache) = cache(5 * MIN, 100);
    let dir = directory(&["bank"]);
    first_bind(&cache, &dir, "bank").await;
    tokio::time::advance(5 * MIN - Duration::from_millis(1)).await;
    assert_eq!(check(&cache, &dir, "bank", "secret").await.0, Via::Cache);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(check(&cache, &dir, "bank", "secret").await, (Via::Argon2, ok("bank")));
    assert_eq!(check(&cache, &dir, "bank", "secret").await.0, Via::Cache);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn the_cache_is_bounded_and_drops_the_entry_expiring_first() {
    let (_, cache) = cache(5 * MIN, 2);
    let dir = directory(&["a", "b", "c"]);
    for id in ["a", "b", "c"] {
        assert_eq!(check(&cache, &dir, id, "secret").await.0, Via::Argon2);
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    assert_eq!(cache.len(), 2);
    assert_eq!(check(&cache, &dir, "b", "secret").await.0, Via::Cache);
    assert_eq!(check(&cache, &dir, "c", "secret").await.0, Via::Cache);
    assert_eq!(check(&cache, &dir, "a", "secret").await.0, Via::Argon2);
    // "a" came back in place of "b", the one expiring first then.
    assert_eq!(check(&cache, &dir, "b", "secret").await.0, Via::Argon2);
    assert_eq!(cache.len(), 2);
    // Expired entries go before any live one.
    tokio::time::advance(5 * MIN).await;
    assert_eq!(check(&cache, &dir, "c", "secret").await.0, Via::Argon2);
    assert_eq!(cache.len(), 1, "both expired entries dropped to make room");
}

#[tokio::test]
async fn ttl_zero_turns_the_cache_off() {
    let (calls, cache) = cache(Duration::ZERO, 100);
    let dir = directory(&["bank"]);
    for _ in 0..3 {
        assert_eq!(check(&cache, &dir, "bank", "secret").await, (Via::Argon2, ok("bank")));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert!(cache.is_empty());
}

#[tokio::test]
async fn forget_stale_drops_entries_of_removed_or_rehashed_accounts() {
    let (_, cache) = cache(5 * MIN, 100);
    let dir = directory(&["keep", "gone", "rehashed"]);
    for id in ["keep", "gone", "rehashed"] {
        first_bind(&cache, &dir, id).await;
    }
    dir.replace(vec![account("keep", "secret"), account("rehashed", "other")]);
    cache.forget_stale(&dir);
    assert_eq!(cache.len(), 1);
    assert_eq!(check(&cache, &dir, "keep", "secret").await.0, Via::Cache);
}

#[tokio::test]
async fn debug_shows_neither_key_nor_digest_nor_password() {
    let (_, cache) = cache(5 * MIN, 100);
    let dir = directory(&["bank"]);
    first_bind(&cache, &dir, "bank").await;
    let debug = format!("{cache:?}");
    assert_eq!(debug, "CredentialCache { ttl: 300s, max_entries: 100, entries: 1, .. }");
}

/// Holds every argon2 check until opened.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn wait(&self) {
        let mut open = self.open.lock().expect("gate");
        while !*open {
            open = self.opened.wait(open).expect("gate");
        }
    }

    fn open(&self) {
        *self.open.lock().expect("gate") = true;
        self.opened.notify_all();
    }
}

/// A cache whose checks are counted as they start, then wait for `gate`.
fn gated(gate: &Arc<Gate>) -> (Arc<AtomicUsize>, Arc<CredentialCache>) {
    let (calls, counted) = counting();
    let gate = gate.clone();
    let verifier = move |account: Option<&Account>, password: &[u8]| {
        let verified = counted(account, password);
        gate.wait();
        verified
    };
    (calls, Arc::new(CredentialCache::with_verifier(5 * MIN, 100, Arc::new(verifier))))
}

impl CredentialCache {
    /// Binds waiting for a check under way.
    fn waiting(&self) -> usize {
        self.lock().checking.values().flatten().map(|c| c.outcome.receiver_count()).sum()
    }

    fn checks_under_way(&self) -> usize {
        self.lock().checking.values().map(Vec::len).sum()
    }
}

/// Waits until `cond` holds (it depends on blocking threads too); fails the test
/// after about 10 s.
async fn until(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..10_000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("never: {what}");
}

/// `n` binds of `system_id` with `password` at once; their ways and answers.
async fn at_once(
    cache: &Arc<CredentialCache>,
    dir: &Arc<AccountDirectory>,
    system_id: &'static str,
    password: &'static str,
    n: usize,
    gate: &Gate,
) -> Vec<(Via, Result<String, AuthError>)> {
    let binds: Vec<_> = (0..n)
        .map(|_| {
            let (cache, dir) = (cache.clone(), dir.clone());
            tokio::spawn(async move { check(&cache, &dir, system_id, password).await })
        })
        .collect();
    until("all but one waiting", || cache.waiting() == n - 1).await;
    gate.open();
    let mut out = Vec::with_capacity(n);
    for b in binds {
        out.push(b.await.expect("bind task"));
    }
    out
}

#[tokio::test]
async fn binds_with_the_same_credentials_at_once_share_one_argon2_check() {
    let gate = Arc::new(Gate::default());
    let (calls, cache) = gated(&gate);
    let dir = Arc::new(directory(&["bank"]));
    let answers = at_once(&cache, &dir, "bank", "secret", 10, &gate).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(answers.iter().all(|(_, r)| *r == ok("bank")), "{answers:?}");
    let shared = answers.iter().filter(|(via, _)| *via == Via::Shared).count();
    assert_eq!(shared, 9, "{answers:?}");
    assert_eq!(cache.checks_under_way(), 0);
}

#[tokio::test]
async fn a_shared_refusal_is_not_kept() {
    let gate = Arc::new(Gate::default());
    let (calls, cache) = gated(&gate);
    let dir = Arc::new(directory(&["bank"]));
    let answers = at_once(&cache, &dir, "bank", "wrong", 5, &gate).await;
    assert!(answers.iter().all(|(_, r)| *r == Err(AuthError::BadPassword)), "{answers:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Once answered, the same wrong password is checked again.
    let again = check(&cache, &dir, "bank", "wrong").await;
    assert_eq!(again, (Via::Argon2, Err(AuthError::BadPassword)));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(cache.is_empty());
}

#[tokio::test]
async fn when_the_bind_running_the_check_goes_away_a_waiting_one_checks_itself() {
    let gate = Arc::new(Gate::default());
    let (calls, cache) = gated(&gate);
    let dir = Arc::new(directory(&["bank"]));
    let spawn = || {
        let (cache, dir) = (cache.clone(), dir.clone());
        tokio::spawn(async move { check(&cache, &dir, "bank", "secret").await })
    };
    let first = spawn();
    until("a check started", || calls.load(Ordering::SeqCst) == 1).await;
    let second = spawn();
    until("the second bind waiting", || cache.waiting() == 1).await;
    // Its connection closed: the bind's future is dropped mid-check.
    first.abort();
    until("the second bind running its own check", || cache.waiting() == 0).await;
    gate.open();
    assert_eq!(second.await.expect("bind task"), (Via::Argon2, ok("bank")));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(cache.checks_under_way(), 0);
}
