//! Where a stored message is in its life: the `messages.state` column. SMPP's
//! message_state values, plus two of the SMSC's own that SMPP does not name; an ESME is
//! only ever told SMPP's ([`DeliveryState::to_smpp`]).

use smsc_smpp::MessageState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Due later (a schedule_delivery_time in the future).
    Scheduled,
    /// Waiting for a delivery attempt: new, or after a temporary failure.
    Enroute,
    /// A worker holds the message and is handing it to the network. query_sm reports it
    /// as ENROUTE, and cancel/replace, which only act on ENROUTE or SCHEDULED messages,
    /// cannot race the delivery.
    InDelivery,
    /// An upstream SMSC accepted the message (submit_sm_resp OK) and its final state will
    /// come with the upstream's receipt; reported as ENROUTE. Left by the upstream's
    /// receipt (to its final state) or, when none comes, by the validity period (EXPIRED).
    AtUpstream,
    Delivered,
    Expired,
    /// Cancelled (cancel_sm).
    Deleted,
    Undeliverable,
    Accepted,
    Unknown,
    Rejected,
    Skipped,
}

impl DeliveryState {
    /// The value stored in `messages.state`: SMPP's message_state number, 64 and 65 for
    /// the SMSC's own states.
    pub const fn code(self) -> u8 {
        match self {
            Self::Scheduled => 0,
            Self::Enroute => 1,
            Self::Delivered => 2,
            Self::Expired => 3,
            Self::Deleted => 4,
            Self::Undeliverable => 5,
            Self::Accepted => 6,
            Self::Unknown => 7,
            Self::Rejected => 8,
            Self::Skipped => 9,
            Self::InDelivery => 64,
            Self::AtUpstream => 65,
        }
    }

    /// The state stored as `code`; `None` for a value no state has.
    pub const fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Scheduled,
            1 => Self::Enroute,
            2 => Self::Delivered,
            3 => Self::Expired,
            4 => Self::Deleted,
            5 => Self::Undeliverable,
            6 => Self::Accepted,
            7 => Self::Unknown,
            8 => Self::Rejected,
            9 => Self::Skipped,
            64 => Self::InDelivery,
            65 => Self::AtUpstream,
            _ => return None,
        })
    }

    /// The state an SMPP message_state names (an upstream's receipt, a test's fixture);
    /// `None` for a value SMPP does not define.
    pub const fn from_smpp(state: MessageState) -> Option<Self> {
        match state.0 {
            0..=9 => Self::from_code(state.0),
            _ => None,
        }
    }

    /// What an ESME is told (query_sm, receipts): the SMSC's own states are ENROUTE.
    pub const fn to_smpp(self) -> MessageState {
        match self {
            Self::InDelivery | Self::AtUpstream => MessageState::ENROUTE,
            other => MessageState(other.code()),
        }
    }

    /// One of the SMSC's own states, which SMPP does not name.
    pub const fn is_internal(self) -> bool {
        matches!(self, Self::InDelivery | Self::AtUpstream)
    }

    /// A final state: the message will not change again.
    pub const fn is_final(self) -> bool {
        self.to_smpp().is_final() && !self.is_internal()
    }

    /// Its name in logs, metrics and receipts' words: SMPP's, or ours.
    pub const fn name(self) -> &'static str {
        match self {
            Self::InDelivery => "IN_DELIVERY",
            Self::AtUpstream => "AT_UPSTREAM",
            other => match other.to_smpp().name() {
                Some(name) => name,
                None => "UNKNOWN",
            },
        }
    }
}

impl std::fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [DeliveryState; 12] = [
        DeliveryState::Scheduled,
        DeliveryState::Enroute,
        DeliveryState::InDelivery,
        DeliveryState::AtUpstream,
        DeliveryState::Delivered,
        DeliveryState::Expired,
        DeliveryState::Deleted,
        DeliveryState::Undeliverable,
        DeliveryState::Accepted,
        DeliveryState::Unknown,
        DeliveryState::Rejected,
        DeliveryState::Skipped,
    ];

    #[test]
    fn every_state_round_trips_through_its_code() {
        for s in ALL {
            assert_eq!(DeliveryState::from_code(s.code()), Some(s), "{s}");
        }
        for code in (10..64).chain(66..=255) {
            assert_eq!(DeliveryState::from_code(code), None, "{code}");
        }
    }

    #[test]
    fn an_esme_sees_only_smpp_states() {
        for s in ALL {
            let told = s.to_smpp();
            assert!(told.name().is_some(), "{s} -> {told:?}");
            assert_eq!(told == MessageState::ENROUTE && s.is_internal(), s.is_internal(), "{s}");
            if !s.is_internal() {
                assert_eq!(DeliveryState::from_smpp(told), Some(s));
            }
        }
        assert_eq!(DeliveryState::from_smpp(MessageState(64)), None);
        assert_eq!(DeliveryState::InDelivery.name(), "IN_DELIVERY");
        assert!(!DeliveryState::AtUpstream.is_final() && DeliveryState::Rejected.is_final());
    }
}
