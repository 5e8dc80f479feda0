//! Bind lockout: after repeated failed binds for one system_id from one client
//! address, that pair's binds are refused for a while without their password being
//! checked, so guessing costs the attacker time and the edge no argon2 work.
//!
//! Unknown system_ids count exactly like known ones: the lockout answers the same
//! whether or not the account exists. The table is per pod, in memory, and bounded:
//! past `max_entries` pairs the least recently touched one is forgotten.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;

use tokio::time::Instant;

/// `edge.lockout`: the config's own type, so its defaults are written once.
pub use crate::config::LockoutConfig as LockoutSettings;

/// The address a client is counted under: an IPv4 address (IPv4-mapped IPv6 included)
/// as it is, an IPv6 address by its /64, since one host commonly holds a whole /64.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// What a failed bind did to its pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Counted; the pair may still try.
    Counted { failures: u32 },
    /// This failure locked the pair.
    LockedOut { failures: u32 },
    /// The lockout is off.
    Ignored,
}

type Key = (Box<[u8]>, IpAddr);

#[derive(Debug)]
struct Entry {
    failures: u32,
    window_start: Instant,
    locked_until: Option<Instant>,
    /// Its key in `Table::order`.
    stamp: u64,
}

#[derive(Debug, Default)]
struct Table {
    entries: HashMap<Key, Entry>,
    /// Entries by last touch, oldest first: what to forget when the table is full.
    order: BTreeMap<u64, Key>,
    next_stamp: u64,
}

impl Table {
    fn remove(&mut self, key: &Key) {
        if let Some(e) = self.entries.remove(key) {
            self.order.remove(&e.stamp);
        }
    }

    fn touch(&mut self, key: &Key) -> Option<&mut Entry> {
        let stamp = self.next_stamp;
        let entry = self.entries.get_mut(key)?;
        self.order.remove(&entry.stamp);
        entry.stamp = stamp;
        self.order.insert(stamp, key.clone());
        self.next_stamp += 1;
        Some(entry)
    }

    fn insert(&mut self, key: Key, mut entry: Entry, max_entries: usize) {
        while self.entries.len() >= max_entries.max(1) {
            let Some((_, oldest)) = self.order.pop_first() else { break };
            self.entries.remove(&oldest);
        }
        entry.stamp = self.next_stamp;
        self.next_stamp += 1;
        self.order.insert(entry.stamp, key.clone());
        self.entries.insert(key, entry);
    }
}

/// The failed binds of this pod, by (system_id, client address).
#[derive(Debug)]
pub struct Lockout {
    settings: LockoutSettings,
    table: Mutex<Table>,
}

impl Lockout {
    pub fn new(settings: LockoutSettings) -> Self {
        Self { settings, table: Mutex::new(Table::default()) }
    }

    pub fn settings(&self) -> &LockoutSettings {
        &self.settings
    }

    fn enabled(&self) -> bool {
        self.settings.max_failures > 0
    }

    fn key(system_id: &[u8], ip: IpAddr) -> Key {
        (system_id.into(), client_key(ip))
    }

    /// Whether binds of `system_id` from `ip` are refused at `now`.
    pub fn is_locked(&self, system_id: &[u8], ip: IpAddr, now: Instant) -> bool {
        if !self.enabled() {
            return false;
        }
        let key = Self::key(system_id, ip);
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        match t.entries.get(&key).and_then(|e| e.locked_until) {
            Some(until) if now < until => true,
            Some(_) => {
                // Served its time: the pair starts again from nothing.
                t.remove(&key);
                false
            }
            None => false,
        }
    }

    /// Counts a failed bind (unknown system_id or wrong password).
    pub fn failure(&self, system_id: &[u8], ip: IpAddr, now: Instant) -> Failure {
        if !self.enabled() {
            return Failure::Ignored;
        }
        let s = &self.settings;
        let key = Self::key(system_id, ip);
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let failures = match t.touch(&key) {
            Some(e) => {
                if e.locked_until.is_some_and(|until| now < until) {
                    // A bind that was already being checked when the pair got locked.
                    return Failure::Counted { failures: e.failures };
                }
                if e.locked_until.is_some() || now.duration_since(e.window_start) > s.window {
                    *e = Entry { failures: 0, window_start: now, locked_until: None, ..*e };
                }
                e.failures += 1;
                if e.failures >= s.max_failures {
                    e.locked_until = Some(now + s.duration);
                }
                e.failures
            }
            None => {
                let locked_until = (s.max_failures <= 1).then(|| now + s.duration);
                let entry = Entry { failures: 1, window_start: now, locked_until, stamp: 0 };
                t.insert(key, entry, s.max_entries);
                1
            }
        };
        if failures >= s.max_failures {
            Failure::LockedOut { failures }
        } else {
            Failure::Counted { failures }
        }
    }

    /// A successful bind: the pair's count starts again.
    pub fn success(&self, system_id: &[u8], ip: IpAddr) {
        if !self.enabled() {
            return;
        }
        let key = Self::key(system_id, ip);
        self.table.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
    }

    /// Pairs remembered now.
    pub fn len(&self) -> usize {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MIN: Duration = Duration::from_secs(60);

    fn lockout(max_failures: u32, max_entries: usize) -> Lockout {
        Lockout::new(LockoutSettings {
            max_failures,
            window: 5 * MIN,
            duration: 15 * MIN,
            max_entries,
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn locks_at_max_failures_within_the_window_and_for_the_duration() {
        let l = lockout(3, 100);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        assert_eq!(l.failure(b"bank", a, t0), Failure::Counted { failures: 1 });
        assert_eq!(l.failure(b"bank", a, t0 + MIN), Failure::Counted { failures: 2 });
        assert!(!l.is_locked(b"bank", a, t0 + MIN));
        assert_eq!(l.failure(b"bank", a, t0 + 2 * MIN), Failure::LockedOut { failures: 3 });
        assert!(l.is_locked(b"bank", a, t0 + 2 * MIN));
        assert!(l.is_locked(b"bank", a, t0 + 17 * MIN - Duration::from_millis(1)));
        // Another account from the same address, the same account from another address.
        assert!(!l.is_locked(b"other", a, t0 + 3 * MIN));
        assert!(!l.is_locked(b"bank", ip("192.0.2.2"), t0 + 3 * MIN));
        // Served: the count starts again.
        assert!(!l.is_locked(b"bank", a, t0 + 17 * MIN));
        assert_eq!(l.failure(b"bank", a, t0 + 18 * MIN), Failure::Counted { failures: 1 });
    }

    #[test]
    fn failures_outside_the_window_start_a_new_count() {
        let l = lockout(3, 100);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        l.failure(b"bank", a, t0);
        l.failure(b"bank", a, t0 + MIN);
        assert_eq!(l.failure(b"bank", a, t0 + 6 * MIN), Failure::Counted { failures: 1 });
        assert!(!l.is_locked(b"bank", a, t0 + 6 * MIN));
    }

    #[test]
    fn success_clears_the_count() {
        let l = lockout(3, 100);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        l.failure(b"bank", a, t0);
        l.failure(b"bank", a, t0);
        l.success(b"bank", a);
        assert!(l.is_empty());
        assert_eq!(l.failure(b"bank", a, t0), Failure::Counted { failures: 1 });
    }

    #[test]
    fn ipv6_counts_by_64_and_mapped_ipv4_as_ipv4() {
        let l = lockout(2, 100);
        let t0 = Instant::now();
        l.failure(b"bank", ip("2001:db8:1:2::1"), t0);
        assert_eq!(
            l.failure(b"bank", ip("2001:db8:1:2:ffff::9"), t0),
            Failure::LockedOut { failures: 2 }
        );
        assert!(l.is_locked(b"bank", ip("2001:db8:1:2::77"), t0));
        assert!(!l.is_locked(b"bank", ip("2001:db8:1:3::1"), t0));
        l.failure(b"bank", ip("192.0.2.9"), t0);
        l.failure(b"bank", ip("::ffff:192.0.2.9"), t0);
        assert!(l.is_locked(b"bank", ip("192.0.2.9"), t0));
    }

    #[test]
    fn the_table_is_bounded_and_forgets_the_least_recently_touched() {
        let l = lockout(3, 3);
        let t0 = Instant::now();
        for i in 0..3u8 {
            l.failure(&[b'a' + i], ip("192.0.2.1"), t0);
        }
        // "a" touched again: "b" is now the oldest.
        l.failure(b"a", ip("192.0.2.1"), t0);
        l.failure(b"d", ip("192.0.2.1"), t0);
        assert_eq!(l.len(), 3);
        assert_eq!(l.failure(b"a", ip("192.0.2.1"), t0), Failure::LockedOut { failures: 3 });
        assert_eq!(l.failure(b"b", ip("192.0.2.1"), t0), Failure::Counted { failures: 1 });
        for i in 0..10_000u32 {
            l.failure(&i.to_be_bytes(), ip("192.0.2.1"), t0);
        }
        assert_eq!(l.len(), 3);
        let t = l.table.lock().expect("lock");
        assert_eq!(t.order.len(), 3, "the order index follows the entries");
    }

    #[test]
    fn zero_max_failures_is_off() {
        let l = lockout(0, 100);
        let t0 = Instant::now();
        for _ in 0..100 {
            assert_eq!(l.failure(b"bank", ip("192.0.2.1"), t0), Failure::Ignored);
        }
        assert!(!l.is_locked(b"bank", ip("192.0.2.1"), t0));
        assert!(l.is_empty());
    }

    #[test]
    fn one_failure_locks_when_max_failures_is_one() {
        let l = lockout(1, 100);
        let t0 = Instant::now();
        assert_eq!(l.failure(b"bank", ip("192.0.2.1"), t0), Failure::LockedOut { failures: 1 });
        assert!(l.is_locked(b"bank", ip("192.0.2.1"), t0));
    }
}
