//! The delayed retry tiers: one topic per delay, `<bus.topic_prefix>.retry.<name>`.

use crate::config::RetryConfig;

/// The retry tiers: topics `<prefix>.retry.<name>` with equal delays inside each, so
/// that a tier is a FIFO in due order. Part of [`crate::Topics`], which names them.
#[derive(Debug, Clone)]
pub struct Tiers {
    tiers: Vec<(std::time::Duration, std::sync::Arc<str>)>,
}

impl Tiers {
    /// Tiers of `delays` named `<retry_prefix><name>` (`retry_prefix` ends in `.retry.`).
    pub fn new(retry_prefix: &str, delays: &[std::time::Duration]) -> Self {
        let name = |d: std::time::Duration| -> std::sync::Arc<str> {
            format!("{retry_prefix}{}", RetryConfig::tier_name(d)).into()
        };
        let mut tiers: Vec<_> = delays.iter().map(|d| (*d, name(*d))).collect();
        if tiers.is_empty() {
            let d = std::time::Duration::from_secs(10);
            tiers.push((d, name(d)));
        }
        Self { tiers }
    }

    /// Every tier topic (the worker consumes them all).
    pub fn topics(&self) -> Vec<String> {
        let mut t: Vec<String> = self.tiers.iter().map(|(_, t)| t.to_string()).collect();
        t.dedup();
        t
    }

    /// The tier after `attempts` failed attempts (1 = the first retry).
    pub fn for_attempt(&self, attempts: u32) -> (std::time::Duration, &str) {
        let i = (attempts.max(1) as usize - 1).min(self.tiers.len() - 1);
        (self.tiers[i].0, &self.tiers[i].1)
    }

    /// The longest tier not longer than `wait` (the shortest if all are), for a message
    /// scheduled `wait` ahead: it hops tiers until due, and never blocks a tier's FIFO
    /// with a record due later than the ones behind it.
    pub fn for_wait(&self, wait: std::time::Duration) -> (std::time::Duration, &str) {
        let best = self.tiers.iter().filter(|(d, _)| *d <= wait).max_by_key(|(d, _)| *d);
        let (d, t) = best.unwrap_or(&self.tiers[0]);
        (*d, t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn tiers() {
        let t = Tiers::new(
            "smsc.retry.",
            &[Duration::from_secs(10), Duration::from_secs(60), Duration::from_secs(300)],
        );
        assert_eq!(t.for_attempt(1), (Duration::from_secs(10), "smsc.retry.10s"));
        assert_eq!(t.for_attempt(2), (Duration::from_secs(60), "smsc.retry.1m"));
        assert_eq!(t.for_attempt(9), (Duration::from_secs(300), "smsc.retry.5m"));
        assert_eq!(t.for_wait(Duration::from_secs(90)).1, "smsc.retry.1m");
        assert_eq!(t.for_wait(Duration::from_secs(3)).1, "smsc.retry.10s");
        assert_eq!(t.topics().len(), 3);
    }
}
