//! Messages: submit_sm and deliver_sm (one body), data_sm, and the response the three
//! share ([`MessageIdResp`]).

use bytes::{BufMut, BytesMut};

use super::wire::{Reader, addr_len, put_addr, put_cstr, put_sm};
use super::{ShortMessage, TimeString};
use crate::error::Field;
use crate::text::DataCoding;
use crate::tlv::Tlvs;
use crate::types::{Address, COctetString, EsmClass, RegisteredDelivery};

/// submit_sm and deliver_sm have the same body (SMPP 3.4 §4.4.1, §4.6.1); in deliver_sm
/// the schedule and validity times are empty.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubmitSm {
    pub service_type: COctetString<6>,
    pub source: Address<21>,
    pub dest: Address<21>,
    pub esm_class: EsmClass,
    pub protocol_id: u8,
    pub priority_flag: u8,
    pub schedule_delivery_time: TimeString,
    pub validity_period: TimeString,
    pub registered_delivery: RegisteredDelivery,
    pub replace_if_present_flag: u8,
    pub data_coding: DataCoding,
    pub sm_default_msg_id: u8,
    pub short_message: ShortMessage,
    pub tlvs: Tlvs,
}

/// deliver_sm: the same body as submit_sm.
pub type DeliverSm = SubmitSm;

impl SubmitSm {
    pub(super) fn encoded_len(&self) -> usize {
        self.service_type.encoded_len()
            + addr_len(&self.source)
            + addr_len(&self.dest)
            + 3
            + self.schedule_delivery_time.0.encoded_len()
            + self.validity_period.0.encoded_len()
            + 5
            + self.short_message.len()
            + self.tlvs.encoded_len()
    }

    pub(super) fn encode(&self, out: &mut BytesMut) {
        put_cstr(out, &self.service_type);
        put_addr(out, &self.source);
        put_addr(out, &self.dest);
        out.put_u8(self.esm_class.0);
        out.put_u8(self.protocol_id);
        out.put_u8(self.priority_flag);
        put_cstr(out, &self.schedule_delivery_time.0);
        put_cstr(out, &self.validity_period.0);
        out.put_u8(self.registered_delivery.0);
        out.put_u8(self.replace_if_present_flag);
        out.put_u8(self.data_coding.0);
        out.put_u8(self.sm_default_msg_id);
        put_sm(out, &self.short_message);
        self.tlvs.encode(out);
    }

    pub(super) fn read(r: &mut Reader<'_>) -> Self {
        SubmitSm {
            service_type: r.cstr(Field::ServiceType),
            source: r.addr(Field::SourceAddr),
            dest: r.addr(Field::DestinationAddr),
            esm_class: EsmClass(r.u8(Field::Octet)),
            protocol_id: r.u8(Field::Octet),
            priority_flag: r.u8(Field::Octet),
            schedule_delivery_time: r.time(Field::ScheduleDeliveryTime),
            validity_period: r.time(Field::ValidityPeriod),
            registered_delivery: RegisteredDelivery(r.u8(Field::Octet)),
            replace_if_present_flag: r.u8(Field::Octet),
            data_coding: DataCoding(r.u8(Field::Octet)),
            sm_default_msg_id: r.u8(Field::Octet),
            short_message: r.short_message(),
            tlvs: r.tlvs(),
        }
    }
}

/// submit_sm_resp, deliver_sm_resp and data_sm_resp: a message_id (empty in
/// deliver_sm_resp) and, from 5.0, TLVs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageIdResp {
    pub message_id: COctetString<65>,
    pub tlvs: Tlvs,
}

impl MessageIdResp {
    pub(super) fn encoded_len(&self) -> usize {
        self.message_id.encoded_len() + self.tlvs.encoded_len()
    }

    pub(super) fn encode(&self, out: &mut BytesMut) {
        put_cstr(out, &self.message_id);
        self.tlvs.encode(out);
    }

    pub(super) fn read(r: &mut Reader<'_>) -> Self {
        MessageIdResp { message_id: r.cstr(Field::MessageId), tlvs: r.tlvs() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DataSm {
    pub service_type: COctetString<6>,
    pub source: Address<65>,
    pub dest: Address<65>,
    pub esm_class: EsmClass,
    pub registered_delivery: RegisteredDelivery,
    pub data_coding: DataCoding,
    pub tlvs: Tlvs,
}

impl DataSm {
    pub(super) fn encoded_len(&self) -> usize {
        self.service_type.encoded_len()
            + addr_len(&self.source)
            + addr_len(&self.dest)
            + 3
            + self.tlvs.encoded_len()
    }

    pub(super) fn encode(&self, out: &mut BytesMut) {
        put_cstr(out, &self.service_type);
        put_addr(out, &self.source);
        put_addr(out, &self.dest);
        out.put_u8(self.esm_class.0);
        out.put_u8(self.registered_delivery.0);
        out.put_u8(self.data_coding.0);
        self.tlvs.encode(out);
    }

    pub(super) fn read(r: &mut Reader<'_>) -> Self {
        DataSm {
            service_type: r.cstr(Field::ServiceType),
            source: r.addr(Field::SourceAddr),
            dest: r.addr(Field::DestinationAddr),
            esm_class: EsmClass(r.u8(Field::Octet)),
            registered_delivery: RegisteredDelivery(r.u8(Field::Octet)),
            data_coding: DataCoding(r.u8(Field::Octet)),
            tlvs: r.tlvs(),
        }
    }
}
