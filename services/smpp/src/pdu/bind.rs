//! Session management: bind_transmitter, bind_receiver and bind_transceiver and their
//! response, outbind, and alert_notification (which SMPP 5.0 files with them, §4.1).
//! The bodiless ones (unbind, enquire_link, generic_nack) are only [`super::Body`] variants.

use bytes::{BufMut, BytesMut};

use super::wire::{Reader, addr_len, put_addr, put_cstr};
use crate::error::Field;
use crate::tlv::Tlvs;
use crate::types::{Address, COctetString, Npi, Ton};

/// bind_transmitter, bind_receiver and bind_transceiver share one body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bind {
    pub system_id: COctetString<16>,
    pub password: COctetString<9>,
    pub system_type: COctetString<13>,
    pub interface_version: u8,
    pub addr_ton: Ton,
    pub addr_npi: Npi,
    pub address_range: COctetString<41>,
}

impl Bind {
    pub(super) fn encoded_len(&self) -> usize {
        self.system_id.encoded_len()
            + self.password.encoded_len()
            + self.system_type.encoded_len()
            + 3
            + self.address_range.encoded_len()
    }

    pub(super) fn encode(&self, out: &mut BytesMut) {
        put_cstr(out, &self.system_id);
        put_cstr(out, &self.password);
        put_cstr(out, &self.system_type);
        out.put_u8(self.interface_version);
        out.put_u8(self.addr_ton.0);
        out.put_u8(self.addr_npi.0);
        put_cstr(out, &self.address_range);
    }

    pub(super) fn read(r: &mut Reader<'_>) -> Self {
        Bind {
            system_id: r.cstr(Field::SystemId),
            password: r.cstr(Field::Password),
            system_type: r.cstr(Field::SystemType),
            interface_version: r.u8(Field::InterfaceVersion),
            addr_ton: Ton(r.u8(Field::Octet)),
            addr_npi: Npi(r.u8(Field::Octet)),
            address_range: r.cstr(Field::AddressRange),
        }
    }
}

/// The response to any bind. `sc_interface_version` goes in the TLVs, and only to peers
/// that bound with interface_version 0x34 or later.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BindResp {
    pub system_id: COctetString<16>,
    pub tlvs: Tlvs,
}

impl BindResp {
    pub(super) fn encoded_len(&self) -> usize {
        self.system_id.encoded_len() + self.tlvs.encoded_len()
    }

    pub(super) fn encode(&self, out: &mut BytesMut) {
        put_cstr(out, &self.system_id);
        self.tlvs.encode(out);
    }

    pub(super) fn read(r: &mut Reader<'_>) -> Self {
        BindResp { system_id: r.cstr(Field::SystemId), tlvs: r.tlvs() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outbind {
    pub system_id: COctetString<16>,
    pub password: COctetString<9>,
}

impl Outbind {
    pub(super) fn encoded_len(&self) -> usize {
        self.system_id.encoded_len() + self.password.encoded_len()
    }

    pub(super) fn encode(&self, out: &mut BytesMut) {
        put_cstr(out, &self.system_id);
        put_cstr(out, &self.password);
    }

    pub(super) fn read(r: &mut Reader<'_>) -> Self {
        Outbind { system_id: r.cstr(Field::SystemId), password: r.cstr(Field::Password) }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AlertNotification {
    pub source: Address<65>,
    pub esme_addr: Address<65>,
    pub tlvs: Tlvs,
}

impl AlertNotification {
    pub(super) fn encoded_len(&self) -> usize {
        addr_len(&self.source) + addr_len(&self.esme_addr) + self.tlvs.encoded_len()
    }

    pub(super) fn encode(&self, out: &mut BytesMut) {
        put_addr(out, &self.source);
        put_addr(out, &self.esme_addr);
        self.tlvs.encode(out);
    }

    pub(super) fn read(r: &mut Reader<'_>) -> Self {
        AlertNotification {
            source: r.addr(Field::SourceAddr),
            esme_addr: r.addr(Field::EsmeAddr),
            tlvs: r.tlvs(),
        }
    }
}
