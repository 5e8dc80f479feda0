//! Cluster-unique message ids with no coordination between pods.
//!
//! 128 bits as 32 lowercase hex digits: 48 bits of Unix milliseconds (so ids sort by
//! time, which keeps store partitions and logs readable), 32 bits of a per-process
//! random node number, 48 bits of a counter that starts at a random value. Two pods
//! collide only if they draw the same node number *and* their counters meet in the same
//! millisecond. Fits the 64-character message_id of SMPP with room to spare.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
pub struct IdGenerator {
    node: u32,
    counter: AtomicU64,
}

impl IdGenerator {
    pub fn new() -> Self {
        Self::with_seed(rand::random(), rand::random())
    }

    /// Deterministic, for tests.
    pub fn with_seed(node: u32, counter: u64) -> Self {
        Self { node, counter: AtomicU64::new(counter) }
    }

    /// The node number, for logs (`edge_id` is the human one).
    pub fn node(&self) -> u32 {
        self.node
    }

    /// A new id at `now_ms`.
    pub fn next_at(&self, now_ms: i64) -> MessageId {
        let seq = self.counter.fetch_add(1, Ordering::Relaxed) & 0xFFFF_FFFF_FFFF;
        let hi = ((now_ms as u64) & 0xFFFF_FFFF_FFFF) << 16 | u64::from(self.node >> 16);
        let lo = u64::from(self.node & 0xFFFF) << 48 | seq;
        MessageId(u128::from(hi) << 64 | u128::from(lo))
    }
}

impl Default for IdGenerator {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub u128);

impl MessageId {
    /// Writes the 32 hex digits into `out` without allocating.
    pub fn write_hex(self, out: &mut [u8; 32]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (i, b) in out.iter_mut().enumerate() {
            *b = HEX[((self.0 >> (124 - 4 * i)) & 0xF) as usize];
        }
    }

    /// Milliseconds since the epoch when it was made.
    pub fn millis(self) -> i64 {
        (self.0 >> 80) as i64
    }
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut buf = [0u8; 32];
        self.write_hex(&mut buf);
        for &b in &buf {
            f.write_char(b as char)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_sortable_and_hex() {
        let g = IdGenerator::with_seed(0xDEAD_BEEF, u64::MAX - 1);
        let a = g.next_at(1_700_000_000_000);
        let b = g.next_at(1_700_000_000_000);
        let c = g.next_at(1_700_000_000_001);
        assert_ne!(a, b, "counter wraps within 48 bits without repeating here");
        assert!(c > a && c > b, "later millisecond sorts later");
        assert_eq!(a.millis(), 1_700_000_000_000);
        let s = a.to_string();
        assert_eq!(s.len(), 32);
        assert!(s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert!(s.contains("deadbeef"), "{s}");
    }

    #[test]
    fn two_generators_differ() {
        let (g1, g2) = (IdGenerator::new(), IdGenerator::new());
        assert_ne!(g1.next_at(5), g2.next_at(5));
    }
}
