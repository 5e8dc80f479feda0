//! The handset side of the network simulator: `Simulator.InjectMo` turns a text into MO
//! events on `smsc.mo`, split into concatenated parts (with their UDH) when long.

use std::sync::Arc;

use bytes::Bytes;
use prost::Message as _;
use smsc_bus::{Bus, Record};
use smsc_proto::simulator_server::Simulator;
use smsc_proto::{Address, InjectMoRequest, InjectMoResponse, MoEvent};
use smsc_runtime::ids::IdGenerator;
use smsc_smpp::EsmClass;
use smsc_smpp::text;
use smsc_store::Clock;
use tonic::{Request, Response, Status};

#[derive(Debug)]
pub struct SimulatorGrpc {
    pub bus: Arc<dyn Bus>,
    /// Where the handsets' messages go: the release's `<prefix>.mo`.
    pub mo: Arc<str>,
    pub clock: Arc<dyn Clock>,
    pub ids: IdGenerator,
    /// Concatenation reference numbers.
    pub next_ref: std::sync::atomic::AtomicU16,
}

impl SimulatorGrpc {
    pub fn new(bus: Arc<dyn Bus>, mo: Arc<str>, clock: Arc<dyn Clock>) -> Self {
        Self {
            bus,
            mo,
            clock,
            ids: IdGenerator::new(),
            next_ref: std::sync::atomic::AtomicU16::new(rand_ref()),
        }
    }
}

fn rand_ref() -> u16 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        & 0xFFFF) as u16
}

fn address(a: &str) -> Address {
    let digits = a.strip_prefix('+').unwrap_or(a);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        // Short codes (up to 8 digits) are network specific; longer numbers international.
        let (ton, npi) = if digits.len() <= 8 { (3, 0) } else { (1, 1) };
        Address { ton, npi, addr: digits.to_owned() }
    } else {
        Address { ton: 5, npi: 0, addr: a.to_owned() }
    }
}

#[tonic::async_trait]
impl Simulator for SimulatorGrpc {
    async fn inject_mo(
        &self,
        req: Request<InjectMoRequest>,
    ) -> Result<Response<InjectMoResponse>, Status> {
        let req = req.into_inner();
        if req.from.is_empty() || req.to.is_empty() {
            return Err(Status::invalid_argument("from and to are required"));
        }
        let (dc, _) = text::choose(&req.text);
        let reference = self.next_ref.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let parts = smsc_smpp::concat::split(&req.text, dc.alphabet(), reference, false)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let now = self.clock.now_ms();
        let mut ids = Vec::with_capacity(parts.len());
        let mut records = Vec::with_capacity(parts.len());
        for p in parts {
            let id = self.ids.next_at(now).to_string();
            let ev = MoEvent {
                id: id.clone(),
                source: Some(address(&req.from)),
                dest: Some(address(&req.to)),
                esm_class: if p.udhi { u32::from(EsmClass::UDHI) } else { 0 },
                data_coding: u32::from(dc.0),
                payload: p.short_message,
                tlvs: Vec::new(),
                received_at_ms: now,
                connector: "sim".into(),
            };
            records.push(Record::new(
                Bytes::from(req.to.clone().into_bytes()),
                Bytes::from(ev.encode_to_vec()),
            ));
            ids.push(id);
        }
        self.bus
            .publish(&self.mo, records)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(InjectMoResponse { ids }))
    }
}
