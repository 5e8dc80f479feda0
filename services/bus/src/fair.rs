//! Fair scheduling of a hop's work (router, worker, dispatcher), pure and synchronous:
//! traffic classes served by weighted shares, the accounts of a class in turn, each
//! account's share of the lanes bounded, and which accounts hold more than their share
//! of a hop that is falling behind (the edge slows those, and only those).
//!
//! A record's flow (its class and account) travels in its headers ([`Flow::of`]), set
//! by the edge and copied by every hop that republishes it.

use std::collections::VecDeque;

use bytes::Bytes;
use serde::Deserialize;

use crate::Record;

/// Keyed by account, per record: a fast hash (accounts are not attacker-chosen keys
/// here: they are the bound system_ids).
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Header naming the account (system_id) a record is for.
pub const ACCOUNT_HEADER: &str = "smsc-account";
/// Header naming the record's traffic class (`interactive`, `standard`, `bulk`).
pub const CLASS_HEADER: &str = "smsc-class";

/// A message's traffic class. Higher classes are served first by weighted shares
/// ([`Shares`]), so a lower class is slowed, never starved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// One-time passwords, alerts: a person is waiting.
    Interactive,
    #[default]
    Standard,
    /// Campaigns: throughput over latency.
    Bulk,
}

impl Class {
    /// Highest first.
    pub const ALL: [Class; 3] = [Class::Interactive, Class::Standard, Class::Bulk];

    pub const fn index(self) -> usize {
        self as usize
    }

    pub const fn name(self) -> &'static str {
        match self {
            Class::Interactive => "interactive",
            Class::Standard => "standard",
            Class::Bulk => "bulk",
        }
    }

    pub fn from_name(name: &[u8]) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.name().as_bytes() == name)
    }

    /// `steps` classes above `self`, but not above `ceiling` (nor below `self`): a
    /// submit's priority_flag within what its account may use.
    pub fn raised(self, steps: u8, ceiling: Class) -> Class {
        let target = self.index().saturating_sub(usize::from(steps));
        Class::ALL[target.max(ceiling.index().min(self.index()))]
    }
}

/// Who a record is for and how urgent it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Flow {
    pub class: Class,
    /// The account's system_id; empty when the record names none.
    pub account: Bytes,
}

impl Flow {
    pub fn new(class: Class, account: Bytes) -> Self {
        Self { class, account }
    }

    /// The flow a record's headers name; standard class and no account when they do not.
    pub fn of(record: &Record) -> Flow {
        let mut flow = Flow { class: Class::Standard, account: Bytes::new() };
        for (key, value) in &record.headers {
            match &**key {
                ACCOUNT_HEADER => flow.account = value.clone(),
                CLASS_HEADER => flow.class = Class::from_name(value).unwrap_or_default(),
                _ => {}
            }
        }
        flow
    }

    /// Writes this flow into `record`'s headers.
    pub fn mark(&self, record: &mut Record) {
        record.headers.push((ACCOUNT_HEADER.into(), self.account.clone()));
        let class = Bytes::from_static(self.class.name().as_bytes());
        record.headers.push((CLASS_HEADER.into(), class));
    }
}

/// Picks per class when every class has work: out of `interactive + standard + bulk`
/// picks, each class gets its own number. A class without work gives its turns away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Shares {
    pub interactive: u32,
    pub standard: u32,
    pub bulk: u32,
}

impl Default for Shares {
    fn default() -> Self {
        Self { interactive: 8, standard: 3, bulk: 1 }
    }
}

impl Shares {
    fn of(&self, class: Class) -> u32 {
        match class {
            Class::Interactive => self.interactive,
            Class::Standard => self.standard,
            Class::Bulk => self.bulk,
        }
        .max(1)
    }
}

/// What a hop holds of one account: received and not acked yet, and running now.
#[derive(Debug, Default, Clone, Copy)]
struct Load {
    held: usize,
    running: usize,
}

/// The accounts of one class, each with its ready records, served in turn.
#[derive(Debug)]
struct Rotation<T> {
    /// An account's queue stays when it empties (accounts are few; they come back), so
    /// a hop serving one record at a time per account allocates nothing per record.
    queues: HashMap<Bytes, VecDeque<T>>,
    /// Accounts with ready records, in the order they are served.
    turn: VecDeque<Bytes>,
}

impl<T> Default for Rotation<T> {
    fn default() -> Self {
        Self { queues: HashMap::default(), turn: VecDeque::new() }
    }
}

/// A hop's scheduler: which ready record runs next on a free lane.
///
/// - Classes by weighted round robin ([`Shares`]): work-conserving, no starvation.
/// - Accounts of a class in turn, one record each (equal cost per message).
/// - An account already running its fair share of the lanes (`lanes / (accounts
///   holding work + 1)`: room for one more) starts more only while more than an eighth
///   of the lanes stay free, so that another account's record finds a lane at once
///   instead of waiting for the busy account's calls to end.
///
/// The caller keeps per-key order: it hands in a record only when the one before it
/// with the same key is done ([`Scheduler::ready`]), while [`Scheduler::received`]
/// counts every record held.
#[derive(Debug)]
pub struct Scheduler<T> {
    lanes: usize,
    running: usize,
    shares: Shares,
    /// Turns left per class in the current round.
    credit: [u32; 3],
    classes: [Rotation<T>; 3],
    loads: HashMap<Bytes, Load>,
    held: usize,
    /// The accounts of the last `window` records received, oldest first, and how many
    /// each has among them: what the backlog in front of the hop is made of.
    recent: VecDeque<Bytes>,
    recent_counts: HashMap<Bytes, usize>,
    window: usize,
}

impl<T> Scheduler<T> {
    /// `lanes` records run at once; the last `window` received tell who crowds the hop.
    pub fn new(lanes: usize, window: usize, shares: Shares) -> Self {
        Self {
            lanes: lanes.max(1),
            running: 0,
            shares,
            credit: [0; 3],
            classes: Default::default(),
            loads: HashMap::default(),
            held: 0,
            recent: VecDeque::new(),
            recent_counts: HashMap::default(),
            window: window.max(1),
        }
    }

    /// A record of `account` was received (it may wait behind its key before it is ready).
    pub fn received(&mut self, account: &Bytes) {
        self.loads.entry(account.clone()).or_default().held += 1;
        self.held += 1;
        *self.recent_counts.entry(account.clone()).or_default() += 1;
        self.recent.push_back(account.clone());
        if self.recent.len() > self.window
            && let Some(old) = self.recent.pop_front()
            && let Some(n) = self.recent_counts.get_mut(&old)
        {
            *n -= 1;
            if *n == 0 {
                self.recent_counts.remove(&old);
            }
        }
    }

    /// A received record may run now.
    pub fn ready(&mut self, flow: Flow, item: T) {
        let rotation = &mut self.classes[flow.class.index()];
        let queue = rotation.queues.entry(flow.account.clone()).or_default();
        if queue.is_empty() {
            rotation.turn.push_back(flow.account);
        }
        queue.push_back(item);
    }

    /// A running record of `account` is done (acked or given up).
    pub fn finished(&mut self, account: &Bytes) {
        self.running = self.running.saturating_sub(1);
        self.held = self.held.saturating_sub(1);
        if let Some(load) = self.loads.get_mut(account) {
            load.running = load.running.saturating_sub(1);
            load.held = load.held.saturating_sub(1);
            if load.held == 0 {
                self.loads.remove(account);
            }
        }
    }

    /// Records held: received and not finished.
    pub fn held(&self) -> usize {
        self.held
    }

    pub fn running(&self) -> usize {
        self.running
    }

    /// The record to start on a free lane, if a lane is free and one is ready.
    pub fn start_next(&mut self) -> Option<(Flow, T)> {
        if self.running >= self.lanes {
            return None;
        }
        for _round in 0..2 {
            for class in Class::ALL {
                if self.credit[class.index()] == 0 {
                    continue;
                }
                if let Some(picked) = self.pick(class) {
                    self.credit[class.index()] -= 1;
                    return Some(picked);
                }
            }
            // Every class with turns left had nothing startable: a new round.
            self.credit = Class::ALL.map(|c| self.shares.of(c));
        }
        None
    }

    /// The next account of `class` in turn that may start a record now.
    fn pick(&mut self, class: Class) -> Option<(Flow, T)> {
        let free = self.lanes - self.running;
        let reserve = self.lanes / 8;
        let fair = (self.lanes / (self.loads.len() + 1)).max(1);
        let rotation = &mut self.classes[class.index()];
        for _ in 0..rotation.turn.len() {
            let account = rotation.turn.pop_front()?;
            let running = self.loads.get(&account).map_or(0, |l| l.running);
            if running >= fair && free <= reserve {
                rotation.turn.push_back(account);
                continue;
            }
            let queue = rotation.queues.get_mut(&account)?;
            let item = queue.pop_front()?;
            if !queue.is_empty() {
                rotation.turn.push_back(account.clone());
            } else if queue.capacity() > 64 {
                // A burst drained: keep a little, not the burst's size.
                queue.shrink_to(8);
            }
            if let Some(load) = self.loads.get_mut(&account) {
                load.running += 1;
            }
            self.running += 1;
            return Some((Flow { class, account }, item));
        }
        None
    }

    /// The accounts crowding a hop that is falling behind: once `waiting` records (not
    /// started yet, read or not) reach `threshold`, every account with at least an equal
    /// share of the records received last (the head of that backlog). Empty while the
    /// hop keeps up.
    pub fn over_share(&self, waiting: usize, threshold: usize) -> Vec<Bytes> {
        if waiting < threshold.max(1) || self.recent_counts.is_empty() {
            return Vec::new();
        }
        let share = self.recent.len() / self.recent_counts.len();
        let crowding = self.recent_counts.iter().filter(|(_, n)| **n >= share);
        crowding.map(|(a, _)| a.clone()).collect()
    }
}

#[cfg(test)]
mod tests;
