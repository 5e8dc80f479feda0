//! submit_multi (one message to up to 254 destinations) and its response, which lists
//! the destinations refused.

use bytes::{BufMut, BytesMut};

use super::wire::{Reader, addr_len, put_addr, put_cstr, put_sm};
use super::{ShortMessage, TimeString};
use crate::CommandStatus;
use crate::error::{DecodeErrorKind, Field};
use crate::text::DataCoding;
use crate::tlv::Tlvs;
use crate::types::{Address, COctetString, EsmClass, RegisteredDelivery};

/// One destination of a submit_multi.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestAddress {
    /// dest_flag 1.
    Sme(Address<21>),
    /// dest_flag 2.
    DistributionList(COctetString<21>),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubmitMulti {
    pub service_type: COctetString<6>,
    pub source: Address<21>,
    /// 1 to 254 destinations; `encode` refuses more.
    pub dests: Vec<DestAddress>,
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

impl SubmitMulti {
    pub(super) fn encoded_len(&self) -> usize {
        let dests: usize = self
            .dests
            .iter()
            .map(|d| match d {
                DestAddress::Sme(a) => 1 + addr_len(a),
                DestAddress::DistributionList(n) => 1 + n.encoded_len(),
            })
            .sum();
        self.service_type.encoded_len()
            + addr_len(&self.source)
            + 1
            + dests
            + 3
            + self.schedule_delivery_time.0.encoded_len()
            + self.validity_period.0.encoded_len()
            + 5
            + self.short_message.len()
            + self.tlvs.encoded_len()
    }

    /// The destination count must have been checked (at most 254).
    pub(super) fn encode(&self, out: &mut BytesMut) {
        put_cstr(out, &self.service_type);
        put_addr(out, &self.source);
        out.put_u8(self.dests.len() as u8);
        for d in &self.dests {
            match d {
                DestAddress::Sme(a) => {
                    out.put_u8(1);
                    put_addr(out, a);
                }
                DestAddress::DistributionList(n) => {
                    out.put_u8(2);
                    put_cstr(out, n);
                }
            }
        }
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
        let service_type = r.cstr(Field::ServiceType);
        let source = r.addr(Field::SourceAddr);
        let n = r.u8(Field::NumberOfDests);
        if n == 0 || n > 254 {
            r.fail(DecodeErrorKind::Invalid { field: Field::NumberOfDests });
        }
        // Each destination takes at least 2 octets: bound the allocation by what is there.
        let mut dests = Vec::with_capacity(usize::from(n).min(r.remaining().len() / 2));
        while dests.len() < usize::from(n) && r.err.is_none() {
            match r.u8(Field::DestFlag) {
                1 => dests.push(DestAddress::Sme(r.addr(Field::DestinationAddr))),
                2 => dests.push(DestAddress::DistributionList(r.cstr(Field::DlName))),
                _ => r.fail(DecodeErrorKind::Invalid { field: Field::DestFlag }),
            }
        }
        SubmitMulti {
            service_type,
            source,
            dests,
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

/// A destination the SMSC did not accept, with the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsuccessSme {
    pub dest: Address<21>,
    pub error_status_code: CommandStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubmitMultiResp {
    pub message_id: COctetString<65>,
    pub unsuccess: Vec<UnsuccessSme>,
    pub tlvs: Tlvs,
}

impl SubmitMultiResp {
    pub(super) fn encoded_len(&self) -> usize {
        let unsuccess: usize = self.unsuccess.iter().map(|u| addr_len(&u.dest) + 4).sum();
        self.message_id.encoded_len() + 1 + unsuccess + self.tlvs.encoded_len()
    }

    /// The count must have been checked (at most 255).
    pub(super) fn encode(&self, out: &mut BytesMut) {
        put_cstr(out, &self.message_id);
        out.put_u8(self.unsuccess.len() as u8);
        for u in &self.unsuccess {
            put_addr(out, &u.dest);
            out.put_u32(u.error_status_code.0);
        }
        self.tlvs.encode(out);
    }

    pub(super) fn read(r: &mut Reader<'_>) -> Self {
        let message_id = r.cstr(Field::MessageId);
        let n = r.u8(Field::NoUnsuccess);
        let mut unsuccess = Vec::with_capacity(usize::from(n).min(r.remaining().len() / 7));
        while unsuccess.len() < usize::from(n) && r.err.is_none() {
            unsuccess.push(UnsuccessSme {
                dest: r.addr(Field::DestinationAddr),
                error_status_code: CommandStatus(r.u32(Field::ErrorStatusCode)),
            });
        }
        SubmitMultiResp { message_id, unsuccess, tlvs: r.tlvs() }
    }
}
