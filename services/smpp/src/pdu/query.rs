//! Operations on a message already submitted: query_sm and its response, cancel_sm,
//! replace_sm (their responses have no body).

use bytes::{BufMut, BytesMut};

use super::wire::{Reader, addr_len, put_addr, put_cstr, put_sm};
use super::{ShortMessage, TimeString};
use crate::MessageState;
use crate::error::Field;
use crate::tlv::Tlvs;
use crate::types::{Address, COctetString, RegisteredDelivery};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QuerySm {
    pub message_id: COctetString<65>,
    pub source: Address<21>,
}

impl QuerySm {
    pub(super) fn encoded_len(&self) -> usize {
        self.message_id.encoded_len() + addr_len(&self.source)
    }

    pub(super) fn encode(&self, out: &mut BytesMut) {
        put_cstr(out, &self.message_id);
        put_addr(out, &self.source);
    }

    pub(super) fn read(r: &mut Reader<'_>) -> Self {
        QuerySm { message_id: r.cstr(Field::MessageId), source: r.addr(Field::SourceAddr) }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QuerySmResp {
    pub message_id: COctetString<65>,
    pub final_date: TimeString,
    pub message_state: MessageState,
    /// The network error code of a failed message (GSM: the MAP error).
    pub error_code: u8,
}

impl QuerySmResp {
    pub(super) fn encoded_len(&self) -> usize {
        self.message_id.encoded_len() + self.final_date.0.encoded_len() + 2
    }

    pub(super) fn encode(&self, out: &mut BytesMut) {
        put_cstr(out, &self.message_id);
        put_cstr(out, &self.final_date.0);
        out.put_u8(self.message_state.0);
        out.put_u8(self.error_code);
    }

    pub(super) fn read(r: &mut Reader<'_>) -> Self {
        QuerySmResp {
            message_id: r.cstr(Field::MessageId),
            final_date: r.time(Field::FinalDate),
            message_state: MessageState(r.u8(Field::Octet)),
            error_code: r.u8(Field::Octet),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CancelSm {
    pub service_type: COctetString<6>,
    /// Empty to cancel every message from `source` to `dest` (with service_type).
    pub message_id: COctetString<65>,
    pub source: Address<21>,
    pub dest: Address<21>,
}

impl CancelSm {
    pub(super) fn encoded_len(&self) -> usize {
        self.service_type.encoded_len()
            + self.message_id.encoded_len()
            + addr_len(&self.source)
            + addr_len(&self.dest)
    }

    pub(super) fn encode(&self, out: &mut BytesMut) {
        put_cstr(out, &self.service_type);
        put_cstr(out, &self.message_id);
        put_addr(out, &self.source);
        put_addr(out, &self.dest);
    }

    pub(super) fn read(r: &mut Reader<'_>) -> Self {
        CancelSm {
            service_type: r.cstr(Field::ServiceType),
            message_id: r.cstr(Field::MessageId),
            source: r.addr(Field::SourceAddr),
            dest: r.addr(Field::DestinationAddr),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplaceSm {
    pub message_id: COctetString<65>,
    pub source: Address<21>,
    pub schedule_delivery_time: TimeString,
    pub validity_period: TimeString,
    pub registered_delivery: RegisteredDelivery,
    pub sm_default_msg_id: u8,
    pub short_message: ShortMessage,
    /// 5.0 allows message_payload here.
    pub tlvs: Tlvs,
}

impl ReplaceSm {
    pub(super) fn encoded_len(&self) -> usize {
        self.message_id.encoded_len()
            + addr_len(&self.source)
            + self.schedule_delivery_time.0.encoded_len()
            + self.validity_period.0.encoded_len()
            + 3
            + self.short_message.len()
            + self.tlvs.encoded_len()
    }

    pub(super) fn encode(&self, out: &mut BytesMut) {
        put_cstr(out, &self.message_id);
        put_addr(out, &self.source);
        put_cstr(out, &self.schedule_delivery_time.0);
        put_cstr(out, &self.validity_period.0);
        out.put_u8(self.registered_delivery.0);
        out.put_u8(self.sm_default_msg_id);
        put_sm(out, &self.short_message);
        self.tlvs.encode(out);
    }

    pub(super) fn read(r: &mut Reader<'_>) -> Self {
        ReplaceSm {
            message_id: r.cstr(Field::MessageId),
            source: r.addr(Field::SourceAddr),
            schedule_delivery_time: r.time(Field::ScheduleDeliveryTime),
            validity_period: r.time(Field::ValidityPeriod),
            registered_delivery: RegisteredDelivery(r.u8(Field::Octet)),
            sm_default_msg_id: r.u8(Field::Octet),
            short_message: r.short_message(),
            tlvs: r.tlvs(),
        }
    }
}
