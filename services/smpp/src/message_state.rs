//! `message_state` values (SMPP 3.4 §5.2.28, 5.0 §4.8.4.37): the state a message is in,
//! carried by query_sm_resp and by the `message_state` TLV of a delivery receipt.

/// A message_state octet. A newtype rather than an enum so that a value this
/// table does not know (a peer's extension) still decodes and re-encodes unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MessageState(pub u8);

impl MessageState {
    /// 5.0 calls it SCHEDULED; 3.4 had no name for 0.
    pub const SCHEDULED: Self = Self(0);
    pub const ENROUTE: Self = Self(1);
    pub const DELIVERED: Self = Self(2);
    pub const EXPIRED: Self = Self(3);
    pub const DELETED: Self = Self(4);
    pub const UNDELIVERABLE: Self = Self(5);
    pub const ACCEPTED: Self = Self(6);
    pub const UNKNOWN: Self = Self(7);
    pub const REJECTED: Self = Self(8);
    /// SMPP 5.0.
    pub const SKIPPED: Self = Self(9);

    /// The state as a peer of `interface_version` is told it: SMPP 3.4 defines 1-8
    /// only, so a scheduled message is ENROUTE to a 3.4 (or 3.3) peer.
    pub const fn for_version(self, interface_version: u8) -> Self {
        if self.0 == Self::SCHEDULED.0 && interface_version < crate::types::INTERFACE_VERSION_50 {
            Self::ENROUTE
        } else {
            self
        }
    }

    /// The spec's name, or `None` for a value outside the table.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "SCHEDULED",
            1 => "ENROUTE",
            2 => "DELIVERED",
            3 => "EXPIRED",
            4 => "DELETED",
            5 => "UNDELIVERABLE",
            6 => "ACCEPTED",
            7 => "UNKNOWN",
            8 => "REJECTED",
            9 => "SKIPPED",
            _ => return None,
        })
    }

    /// A final state: the message will not change again.
    pub const fn is_final(self) -> bool {
        matches!(self.0, 2..=5 | 7..=9)
    }
}

impl std::fmt::Display for MessageState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "message_state({})", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::MessageState;

    #[test]
    fn scheduled_is_enroute_to_a_peer_before_smpp_5() {
        let s = MessageState::SCHEDULED;
        assert_eq!(s.for_version(0x34), MessageState::ENROUTE);
        assert_eq!(s.for_version(0x33), MessageState::ENROUTE);
        assert_eq!(s.for_version(0x50), MessageState::SCHEDULED);
        for v in [0x33, 0x34, 0x50] {
            assert_eq!(MessageState::DELIVERED.for_version(v), MessageState::DELIVERED);
        }
    }
}
