//! Field types that carry the spec's limits, so an out-of-range value cannot be built.

use std::fmt;

/// A C-Octet String of at most `MAX` octets *including* the NUL terminator, as the
/// spec's tables give sizes (`source_addr` is "Var. max 21": 20 characters and a NUL).
///
/// Stored inline: decoding a field copies at most a few dozen bytes instead of
/// taking a reference-counted slice, which keeps a PDU free of atomics and drops.
#[derive(Clone, Copy)]
pub struct COctetString<const MAX: usize> {
    len: u8,
    buf: [u8; MAX],
}

/// Why a value does not fit a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FieldError {
    #[error("value of {len} octets exceeds the field's {max} (NUL included)")]
    TooLong { len: usize, max: usize },
    #[error("value holds a NUL octet at {offset}")]
    Nul { offset: usize },
}

impl<const MAX: usize> COctetString<MAX> {
    /// The empty string (a lone NUL on the wire).
    pub const EMPTY: Self = {
        assert!(MAX >= 1 && MAX <= 256, "C-Octet String size must be 1..=256");
        Self { len: 0, buf: [0; MAX] }
    };

    /// Builds the field from its characters (without the terminator).
    pub fn new(value: &[u8]) -> Result<Self, FieldError> {
        if value.len() >= MAX {
            return Err(FieldError::TooLong { len: value.len() + 1, max: MAX });
        }
        if let Some(offset) = memchr::memchr(0, value) {
            return Err(FieldError::Nul { offset });
        }
        Ok(Self::from_checked(value))
    }

    /// Reads a NUL-terminated value off the front of `rest`, returning it and the octets
    /// consumed. `Err(true)`: no NUL within MAX octets (too long); `Err(false)`: the input
    /// ends first. The fixed-size copy compiles to a few vector moves, where a copy of
    /// the exact length would be a `memcpy` call per field; octets after the NUL that
    /// land in `buf` are never read.
    pub(crate) fn read(rest: &[u8]) -> Result<(Self, usize), bool> {
        let mut buf = [0u8; MAX];
        let n = rest.len().min(MAX);
        match rest.first_chunk::<MAX>() {
            Some(chunk) => buf = *chunk,
            None => buf[..n].copy_from_slice(&rest[..n]),
        }
        match buf[..n].iter().position(|&b| b == 0) {
            Some(end) => Ok((Self { len: end as u8, buf }, end + 1)),
            None => Err(n == MAX),
        }
    }

    /// `value` is known to be shorter than MAX and NUL-free.
    pub(crate) fn from_checked(value: &[u8]) -> Self {
        let mut s = Self::EMPTY;
        s.buf[..value.len()].copy_from_slice(value);
        s.len = value.len() as u8;
        s
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    /// The value as text, when it is UTF-8 (SMPP strings are ASCII in practice).
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(self.as_bytes()).ok()
    }

    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Octets on the wire, terminator included.
    pub fn encoded_len(&self) -> usize {
        self.len() + 1
    }
}

impl<const MAX: usize> Default for COctetString<MAX> {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl<const MAX: usize> PartialEq for COctetString<MAX> {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}
impl<const MAX: usize> Eq for COctetString<MAX> {}

impl<const MAX: usize> std::hash::Hash for COctetString<MAX> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl<const MAX: usize> TryFrom<&str> for COctetString<MAX> {
    type Error = FieldError;
    fn try_from(value: &str) -> Result<Self, FieldError> {
        Self::new(value.as_bytes())
    }
}

impl<const MAX: usize> fmt::Debug for COctetString<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_bytes().escape_ascii().to_string())
    }
}

impl<const MAX: usize> fmt::Display for COctetString<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_bytes().escape_ascii())
    }
}

/// Type of Number (SMPP 3.4 §5.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Ton(pub u8);

impl Ton {
    pub const UNKNOWN: Self = Self(0);
    pub const INTERNATIONAL: Self = Self(1);
    pub const NATIONAL: Self = Self(2);
    pub const NETWORK_SPECIFIC: Self = Self(3);
    pub const SUBSCRIBER_NUMBER: Self = Self(4);
    pub const ALPHANUMERIC: Self = Self(5);
    pub const ABBREVIATED: Self = Self(6);

    /// Values the spec defines; anything else is ESME_RINV{SRC,DST}TON at the edge.
    pub const fn is_defined(self) -> bool {
        self.0 <= 6
    }
}

/// Numbering Plan Indicator (SMPP 3.4 §5.2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Npi(pub u8);

impl Npi {
    pub const UNKNOWN: Self = Self(0);
    pub const ISDN: Self = Self(1);
    pub const DATA: Self = Self(3);
    pub const TELEX: Self = Self(4);
    pub const LAND_MOBILE: Self = Self(6);
    pub const NATIONAL: Self = Self(8);
    pub const PRIVATE: Self = Self(9);
    pub const ERMES: Self = Self(10);
    pub const INTERNET: Self = Self(14);
    pub const WAP_CLIENT_ID: Self = Self(18);

    pub const fn is_defined(self) -> bool {
        matches!(self.0, 0 | 1 | 3 | 4 | 6 | 8 | 9 | 10 | 14 | 18)
    }
}

/// An SME address: TON, NPI and the digits (or alphanumeric sender), at most `MAX`
/// octets with the NUL (21 in most PDUs, 65 in alert_notification and 5.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Address<const MAX: usize = 21> {
    pub ton: Ton,
    pub npi: Npi,
    pub addr: COctetString<MAX>,
}

impl<const MAX: usize> Address<MAX> {
    pub fn new(ton: Ton, npi: Npi, addr: &str) -> Result<Self, FieldError> {
        Ok(Self { ton, npi, addr: COctetString::new(addr.as_bytes())? })
    }

    /// An international ISDN number (TON 1, NPI 1), the usual MSISDN form.
    pub fn international(digits: &str) -> Result<Self, FieldError> {
        Self::new(Ton::INTERNATIONAL, Npi::ISDN, digits)
    }

    /// `addr` cut to the `MAX - 1` octets that fit rather than refused (empty if it holds
    /// a NUL): for addresses our own network already accepted, never for a peer's bytes.
    pub fn truncated(ton: Ton, npi: Npi, addr: &str) -> Self {
        let bytes = addr.as_bytes();
        let cut = &bytes[..bytes.len().min(MAX.saturating_sub(1))];
        Self { ton, npi, addr: COctetString::new(cut).unwrap_or_default() }
    }

    /// The same address in a field of another size: exact when it fits, else cut to the
    /// `M - 1` octets that do (a 64-character data_sm address in a deliver_sm's 20).
    pub fn resized<const M: usize>(&self) -> Address<M> {
        let bytes = self.addr.as_bytes();
        let cut = &bytes[..bytes.len().min(M.saturating_sub(1))];
        Address { ton: self.ton, npi: self.npi, addr: COctetString::from_checked(cut) }
    }
}

/// esm_class (SMPP 3.4 §5.2.12): messaging mode, message type and GSM features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EsmClass(pub u8);

impl EsmClass {
    pub const DEFAULT: Self = Self(0);
    /// Messaging mode, bits 1-0.
    pub const MODE_MASK: u8 = 0x03;
    pub const MODE_DATAGRAM: u8 = 0x01;
    pub const MODE_FORWARD: u8 = 0x02;
    pub const MODE_STORE_AND_FORWARD: u8 = 0x03;
    /// Message type, bits 5-2.
    pub const TYPE_MASK: u8 = 0x3C;
    pub const TYPE_DELIVERY_RECEIPT: u8 = 0x04;
    pub const TYPE_DELIVERY_ACK: u8 = 0x08;
    pub const TYPE_USER_ACK: u8 = 0x10;
    pub const TYPE_CONVERSATION_ABORT: u8 = 0x18;
    pub const TYPE_INTERMEDIATE_NOTIFICATION: u8 = 0x20;
    /// GSM network specific features, bits 7-6.
    pub const UDHI: u8 = 0x40;
    pub const REPLY_PATH: u8 = 0x80;

    pub const fn message_type(self) -> u8 {
        self.0 & Self::TYPE_MASK
    }
    pub const fn is_delivery_receipt(self) -> bool {
        self.message_type() == Self::TYPE_DELIVERY_RECEIPT
    }
    /// The short message starts with a User Data Header.
    pub const fn udhi(self) -> bool {
        self.0 & Self::UDHI != 0
    }
    pub const fn with(self, bits: u8) -> Self {
        Self(self.0 | bits)
    }
}

/// registered_delivery (SMPP 3.4 §5.2.17).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RegisteredDelivery(pub u8);

impl RegisteredDelivery {
    pub const NONE: Self = Self(0);
    /// A receipt on final outcome, success or failure.
    pub const FINAL: Self = Self(0x01);
    /// A receipt on failure only.
    pub const FAILURE: Self = Self(0x02);
    /// Intermediate notifications (ACCEPTD / ENROUTE), bit 4.
    pub const INTERMEDIATE: u8 = 0x10;

    /// Whether a receipt is owed for a final outcome that was (or was not) a success.
    pub const fn wants_receipt(self, success: bool) -> bool {
        match self.0 & 0x03 {
            1 => true,
            2 => !success,
            // 3 is "success only" in SMPP 5.0.
            3 => success,
            _ => false,
        }
    }
    pub const fn wants_intermediate(self) -> bool {
        self.0 & Self::INTERMEDIATE != 0
    }
    /// Bits 7-5 are reserved; the edge rejects them with ESME_RINVREGDLVFLG.
    pub const fn is_valid(self) -> bool {
        self.0 & 0xE0 == 0
    }
}

/// The spec's interface_version for 3.4 (3.3 peers send 0x33 or lower and get no TLVs).
pub const INTERFACE_VERSION_34: u8 = 0x34;
/// SMPP 5.0.
pub const INTERFACE_VERSION_50: u8 = 0x50;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_resized_is_exact_when_it_fits_and_cut_when_not() {
        let wide = Address::<65>::new(Ton(5), Npi(0), &"x".repeat(30)).expect("fits 65");
        let narrow: Address<21> = wide.resized();
        assert_eq!((narrow.ton, narrow.npi), (Ton(5), Npi(0)));
        assert_eq!(narrow.addr.as_bytes(), "x".repeat(20).as_bytes());
        let short = Address::<21>::international("447700900123").expect("fits");
        let back: Address<21> = short.resized::<65>().resized();
        assert_eq!(back, short);
    }

    #[test]
    fn limits_are_enforced() {
        assert!(COctetString::<21>::new(&[b'1'; 20]).is_ok());
        assert_eq!(
            COctetString::<21>::new(&[b'1'; 21]),
            Err(FieldError::TooLong { len: 22, max: 21 })
        );
        assert_eq!(COctetString::<21>::new(b"12\x003"), Err(FieldError::Nul { offset: 2 }));
        assert!(Address::<21>::international("123456789012345678901").is_err());
    }

    #[test]
    fn registered_delivery() {
        assert!(RegisteredDelivery(1).wants_receipt(true));
        assert!(RegisteredDelivery(1).wants_receipt(false));
        assert!(!RegisteredDelivery(2).wants_receipt(true));
        assert!(RegisteredDelivery(2).wants_receipt(false));
        assert!(RegisteredDelivery(0x11).wants_intermediate());
        assert!(!RegisteredDelivery(0x20).is_valid());
    }
}
