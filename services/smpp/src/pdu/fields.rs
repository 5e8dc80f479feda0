//! The field types several bodies share: [`TimeString`] and [`ShortMessage`].

use bytes::Bytes;

use crate::types::{COctetString, FieldError};

/// `schedule_delivery_time`, `validity_period`, `final_date`: empty, or exactly the 16
/// characters of an SMPP time. `parse` turns it into a [`crate::time::SmppTime`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TimeString(pub(super) COctetString<17>);

impl TimeString {
    pub const EMPTY: Self = Self(COctetString::EMPTY);

    pub fn new(value: &[u8]) -> Result<Self, FieldError> {
        if !(value.is_empty() || value.len() == 16) {
            return Err(FieldError::TooLong { len: value.len() + 1, max: 17 });
        }
        COctetString::new(value).map(Self)
    }

    pub fn from_time(t: &crate::time::SmppTime) -> Self {
        Self(COctetString::from_checked(&t.format()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(None)` when empty (immediate delivery, default validity).
    pub fn parse(&self) -> Result<Option<crate::time::SmppTime>, crate::time::TimeError> {
        crate::time::SmppTime::parse(self.as_bytes())
    }
}

/// The `short_message` field: at most 254 octets (sm_length is one octet and the spec
/// caps it at 254); longer content goes in the `message_payload` TLV.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ShortMessage(pub(super) Bytes);

impl ShortMessage {
    pub const MAX: usize = 254;

    pub fn new(value: impl Into<Bytes>) -> Result<Self, FieldError> {
        let value = value.into();
        if value.len() > Self::MAX {
            return Err(FieldError::TooLong { len: value.len(), max: Self::MAX });
        }
        Ok(Self(value))
    }

    pub fn empty() -> Self {
        Self(Bytes::new())
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
