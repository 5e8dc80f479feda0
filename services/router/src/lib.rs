//! The router: consumes `smsc.submit` (each class's topic), persists each message once (`INSERT … IF NOT
//! EXISTS`), picks its MT route and hands a delivery task to the workers (directly, or
//! through the retry tiers when it is scheduled for later). It also consumes `smsc.mo`
//! and routes handset messages by destination to the account that owns the short code.
//!
//! Everything here is idempotent: a record redelivered after a crash finds its row and
//! produces the same task again, which the worker's conditional writes absorb.
//!
//! [`start`] is the entry point `smsc router` runs; [`config`] the `routing:` section;
//! [`metrics`] the `smsc_router_*` families; [`routes`] the compiled tables.
#![forbid(unsafe_code)]

pub mod config;
pub mod metrics;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use futures::future::BoxFuture;
use prost::Message as _;
use smsc_bus::Topics;
use smsc_bus::lanes::{Lanes, Step, join, publish_until_ok, run_batches};
use smsc_bus::pressure::Pressure;
use smsc_bus::{Bus, BusError, Delivery, Record};
use smsc_bus::{Class, Flow, Shares};
use smsc_proto::{DeliveryTask, MoEvent, Notification, NotificationKind, SubmitEvent};
use smsc_runtime::telemetry::Metrics;
use smsc_smpp::pdu::{DeliverSm, ShortMessage};
use smsc_smpp::{Body, DataCoding, EsmClass, Npi, Pdu, Tlvs, Ton};
use smsc_store::DeliveryState;
use smsc_store::store_until_ok;
use smsc_store::{Address, Applied, Clock, Store, StoredMessage};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

pub use config::RoutingConfig;
pub use metrics::RouterMetrics;
pub use routes::Routes;

/// Consumer group of the routers: `<bus.group_prefix>-router` ([`Topics::group`]).
pub const GROUP: &str = "router";

#[derive(Debug)]
pub struct Router {
    pub bus: Arc<dyn Bus>,
    pub store: Arc<dyn Store>,
    pub routes: Arc<ArcSwap<Routes>>,
    /// The release's topics (its retry tiers among them) and groups.
    pub topics: Topics,
    pub clock: Arc<dyn Clock>,
    /// The process's registry (consumer lag).
    pub process_metrics: Arc<Metrics>,
    pub metrics: Arc<RouterMetrics>,
    pub shutdown: CancellationToken,
}

impl Router {
    pub fn new(
        bus: Arc<dyn Bus>,
        store: Arc<dyn Store>,
        routes: Arc<ArcSwap<Routes>>,
        topics: Topics,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            bus,
            store,
            routes,
            topics,
            clock,
            metrics: metrics.family(),
            process_metrics: metrics,
            shutdown,
        })
    }
}

/// What the router runs on, given by the process that runs it.
#[derive(Debug, Clone)]
pub struct Deps {
    pub bus: Arc<dyn Bus>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// Where the router reports the accounts crowding it (the edge slows them).
    pub pressure: Pressure,
    /// The traffic classes' shares (`bus.class_shares`).
    pub shares: Shares,
}

/// The router's entry point: what `smsc router` (and `smsc all`) run. Starts it into
/// `tasks` until `shutdown`, with `lanes` records in progress; `routes` may be swapped
/// while it runs (a reload).
pub fn start(
    routes: Arc<ArcSwap<Routes>>,
    topics: Topics,
    lanes: usize,
    deps: Deps,
    tasks: &mut tokio::task::JoinSet<()>,
    shutdown: CancellationToken,
) {
    let lanes = Lanes {
        shares: deps.shares,
        pressure: Some((deps.pressure, "router")),
        ..Lanes::new(lanes)
    };
    let router =
        Router::new(deps.bus, deps.store, routes, topics, deps.clock, deps.metrics, shutdown);
    tasks.spawn(async move {
        if let Err(e) = run(router, lanes).await {
            warn!(error = %smsc_runtime::telemetry::error_chain(&e), "router stopped");
        }
    });
}

/// Runs the router until `shutdown`: `lanes` records in progress, per-destination order
/// kept (the bus key is the destination).
pub async fn run(router: Arc<Router>, lanes: Lanes) -> Result<(), BusError> {
    let shutdown = router.shutdown.clone();
    let names = &router.topics;
    let [interactive, standard, bulk] = names.submits().each_ref().map(|t| &**t);
    let topics = [interactive, standard, bulk, &**names.mo()];
    let metrics = Some(&router.process_metrics);
    let group = names.group(GROUP);
    let Some(consumer) =
        join(&router.bus, &group, &topics, lanes.read_ahead, &shutdown, metrics).await
    else {
        return Ok(());
    };
    run_batches(consumer, lanes, shutdown, move |batch: &[(Flow, Delivery)]| {
        let work: Vec<Work> = batch
            .iter()
            .map(|(flow, d)| match d.topic == *router.topics.mo() {
                true => Work::Mo(d.record.payload.clone()),
                false => Work::Submit(d.record.payload.clone(), flow.clone()),
            })
            .collect();
        router.clone().batch(work)
    })
    .await;
    Ok(())
}

/// One record of a router's batch.
#[derive(Debug)]
pub enum Work {
    /// An accepted submit's event, and its flow.
    Submit(Bytes, Flow),
    /// An MO event.
    Mo(Bytes),
}

/// The row of an accepted submit, as first written (its short message taken out of
/// `ev`; `event` is the record's payload, kept for replace_sm and the receipts).
/// The row of a submit, routed by `route` (its name; empty when none matched).
fn stored_row(ev: &mut SubmitEvent, event: Bytes, now: i64, route: String) -> StoredMessage {
    let scheduled = ev.schedule_at_ms > now;
    StoredMessage {
        message_id: ev.message_id.clone(),
        dest_index: ev.dest_index,
        system_id: ev.system_id.clone(),
        source: stored_address(ev.source.as_ref()),
        dest: stored_address(ev.dest.as_ref()),
        service_type: std::mem::take(&mut ev.service_type),
        registered_delivery: ev.registered_delivery as u8,
        data_coding: ev.data_coding as u8,
        esm_class: ev.esm_class as u8,
        payload: Bytes::from(std::mem::take(&mut ev.payload)),
        state: if scheduled { DeliveryState::Scheduled } else { DeliveryState::Enroute },
        error_code: 0,
        attempts: 0,
        submitted_at: ev.submitted_at_ms,
        schedule_at: scheduled.then_some(ev.schedule_at_ms),
        expire_at: ev.expire_at_ms,
        final_at: None,
        event,
        first_attempt_at: None,
        connector: String::new(),
        route,
    }
}

/// What became of a batch's submits, counted once per batch.
#[derive(Debug, Default)]
struct Outcomes {
    routed: u64,
    scheduled: u64,
    duplicate: u64,
    no_route: u64,
}

impl Outcomes {
    fn count(&self, metrics: &RouterMetrics) {
        let counts = [
            ("routed", self.routed),
            ("scheduled", self.scheduled),
            ("duplicate", self.duplicate),
            ("no_route", self.no_route),
        ];
        for (label, n) in counts.into_iter().filter(|(_, n)| *n > 0) {
            metrics.routed_total.with_label_values(&[label]).inc_by(n);
        }
    }
}

/// An event's address as stored. The edge accepted it, so it fits; were it longer it
/// would be cut rather than refused.
fn stored_address(a: Option<&smsc_proto::Address>) -> Address {
    a.map(|a| Address::truncated(Ton(a.ton as u8), Npi(a.npi as u8), &a.addr)).unwrap_or_default()
}

impl Router {
    /// A batch of records: the submits together (one store call, one publish per
    /// topic), each MO on its own.
    pub async fn batch(self: Arc<Self>, work: Vec<Work>) -> Vec<Step<BoxFuture<'static, bool>>> {
        let mut steps = Vec::with_capacity(work.len());
        let mut submits = Vec::with_capacity(work.len());
        for w in work {
            match w {
                Work::Submit(payload, flow) => {
                    submits.push((payload, flow));
                    steps.push(None);
                }
                Work::Mo(payload) => {
                    let router = self.clone();
                    let mo: BoxFuture<'static, bool> =
                        Box::pin(async move { router.mo(&payload).await });
                    steps.push(Some(Step::Then(mo)));
                }
            }
        }
        let done = submits.is_empty() || self.submits(submits).await;
        steps.into_iter().map(|s| s.unwrap_or(Step::Done(done))).collect()
    }

    /// Accepted submits (one destination each), each of its flow (its task goes on with
    /// it): decoded in one pass, written in one store call, their tasks published in one
    /// call per topic. `true` once all of it is durable.
    pub async fn submits(&self, batch: Vec<(Bytes, Flow)>) -> bool {
        let now = self.clock.now_ms();
        let routes = self.routes.load();
        let mut events = Vec::with_capacity(batch.len());
        let mut rows = Vec::with_capacity(batch.len());
        for (payload, flow) in batch {
            match SubmitEvent::decode(payload.clone()) {
                Ok(mut ev) => {
                    let dest = ev.dest.as_ref().map_or("", |d| d.addr.as_str());
                    let route = routes.mt(&ev.system_id, dest);
                    let name = route.map(|r| r.name.clone()).unwrap_or_default();
                    rows.push(stored_row(&mut ev, payload, now, name));
                    events.push((ev, flow, route));
                }
                // Nothing can make it decode later; keeping it would block its partition.
                Err(e) => warn!(error = %e, "undecodable submit event dropped"),
            }
        }
        if rows.is_empty() {
            return true;
        }
        let Some(applied) =
            store_until_ok("insert_messages", &self.shutdown, || self.store.insert_messages(&rows))
                .await
        else {
            return false;
        };
        let mut outcomes = Outcomes::default();
        let mut out: Vec<(&str, Vec<Record>)> = Vec::new();
        for (((ev, flow, route), row), applied) in events.into_iter().zip(&rows).zip(applied) {
            if let Applied::No(Some(existing)) = &applied
                && existing.state.is_final()
            {
                // A redelivered record of a message already finished: nothing to do.
                outcomes.duplicate += 1;
                continue;
            }
            let (topic, record) = self.task(route, ev, &flow, row, now, &mut outcomes);
            match out.iter_mut().find(|(t, _)| *t == topic) {
                Some((_, records)) => records.push(record),
                None => out.push((topic, vec![record])),
            }
        }
        outcomes.count(&self.metrics);
        let published = out
            .into_iter()
            .map(|(topic, records)| publish_until_ok(&*self.bus, topic, records, &self.shutdown));
        futures::future::join_all(published).await.into_iter().all(|ok| ok)
    }

    /// The delivery task of a stored submit, and its topic: its class's `smsc.deliver`,
    /// or a retry tier when it is due later.
    fn task(
        &self,
        route: Option<&routes::Route>,
        ev: SubmitEvent,
        flow: &Flow,
        row: &StoredMessage,
        now: i64,
        outcomes: &mut Outcomes,
    ) -> (&str, Record) {
        let dest = row.dest.addr;
        // The route's name travels only when the workers pace by it (a rate is set).
        let (connectors, route, route_rate) = match route {
            Some(r) if r.rate > 0 => (r.connectors.clone(), r.name.clone(), r.rate),
            Some(r) => (r.connectors.clone(), String::new(), 0),
            None => Default::default(),
        };
        if connectors.is_empty() {
            // The worker turns a task without connectors into UNDELIVERABLE and a receipt.
            outcomes.no_route += 1;
        }
        let task = DeliveryTask {
            message_id: ev.message_id,
            dest_index: ev.dest_index,
            connectors,
            attempt: 0,
            seen_claim: 0,
            check_claim: false,
            upstream_check: false,
            route,
            route_rate,
        };
        let mut record =
            Record::new(Bytes::copy_from_slice(dest.as_bytes()), Bytes::from(task.encode_to_vec()));
        flow.mark(&mut record);
        if ev.schedule_at_ms > now {
            let wait = Duration::from_millis((ev.schedule_at_ms - now) as u64);
            let (delay, topic) = self.topics.tiers.for_wait(wait);
            // On the injected clock, the one the bus compares `not_before` with.
            record.not_before = Some(smsc_runtime::clock::after(now, delay.min(wait)));
            outcomes.scheduled += 1;
            (topic, record)
        } else {
            outcomes.routed += 1;
            (self.topics.deliver(flow.class), record)
        }
    }

    /// One MO message: to the account that owns its destination, as a deliver_sm.
    pub async fn mo(&self, payload: &Bytes) -> bool {
        let mo = match MoEvent::decode(payload.clone()) {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "undecodable MO event dropped");
                return true;
            }
        };
        let dest = mo.dest.as_ref().map(|d| d.addr.as_str()).unwrap_or_default();
        let Some(account) = self.routes.load().mo(dest).map(str::to_owned) else {
            warn!(dest, "MO without a route dropped");
            self.metrics.mo_total.with_label_values(&["no_route"]).inc();
            return true;
        };
        let Some(pdu) = mo_deliver_sm(&mo) else {
            warn!(id = %mo.id, "MO payload does not fit a deliver_sm; dropped");
            return true;
        };
        let n = Notification {
            system_id: account.clone(),
            kind: NotificationKind::Mo as i32,
            message_id: mo.id.clone(),
            deliver_sm: pdu.to_vec(),
            created_at_ms: self.clock.now_ms(),
        };
        debug!(id = %mo.id, %account, "MO routed");
        self.metrics.mo_total.with_label_values(&["routed"]).inc();
        // Keyed by the handset: the parts of its concatenated message stay in order.
        let source = mo.source.as_ref().map(|a| a.addr.clone()).unwrap_or_default();
        let mut record =
            Record::new(Bytes::from(source.into_bytes()), Bytes::from(n.encode_to_vec()));
        Flow::new(Class::Standard, Bytes::from(account.into_bytes())).mark(&mut record);
        publish_until_ok(&*self.bus, self.topics.notify(), vec![record], &self.shutdown).await
    }
}

/// The deliver_sm that carries an MO to its account: the handset as source, the short
/// code as destination, the UDH (concatenated MO) and TLVs passed through as received.
pub fn mo_deliver_sm(mo: &MoEvent) -> Option<Bytes> {
    let src = mo.source.as_ref().map(mo_address).unwrap_or_default();
    let dst = mo.dest.as_ref().map(mo_address).unwrap_or_default();
    let mut tlvs = Tlvs::from_bytes(Bytes::from(mo.tlvs.clone())).unwrap_or_default();
    let short_message = if mo.payload.len() <= ShortMessage::MAX {
        ShortMessage::new(Bytes::from(mo.payload.clone())).ok()?
    } else {
        tlvs.set(smsc_smpp::Tlv::MessagePayload(Bytes::from(mo.payload.clone())));
        ShortMessage::empty()
    };
    let d = DeliverSm {
        source: src,
        dest: dst,
        esm_class: EsmClass(mo.esm_class as u8 & EsmClass::UDHI),
        data_coding: DataCoding(mo.data_coding as u8),
        short_message,
        tlvs,
        ..DeliverSm::default()
    };
    Pdu::new(1, Body::DeliverSm(d)).to_bytes().ok()
}

/// An MO's address as SMPP carries it (cut to 20 characters: it came from our network).
fn mo_address(a: &smsc_proto::Address) -> smsc_smpp::Address {
    smsc_smpp::Address::truncated(smsc_smpp::Ton(a.ton as u8), smsc_smpp::Npi(a.npi as u8), &a.addr)
}

#[cfg(test)]
mod tests;
