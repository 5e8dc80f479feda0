//! A tiny SMSC for the tests, built from the codec: it acknowledges binds and submits
//! (a hex message_id per submit), sends a DELIVRD receipt for each submit that asks
//! for one (on the same transceiver, or on a receiver of the same account), answers
//! enquire_link and unbind. It can throttle every Nth submit.
// Each test binary uses part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use smsc_smpp::codec::SmppCodec;
use smsc_smpp::pdu::{BindResp, DeliverSm, MessageIdResp, ShortMessage};
use smsc_smpp::receipt::{Receipt, ReceiptStat};
use smsc_smpp::tlv::TlvString;
use smsc_smpp::{Body, COctetString, CommandStatus, EsmClass, MessageState, Pdu, Tlv};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::Framed;

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Options {
    /// Answer every Nth submit with ESME_RTHROTTLED (0: never).
    pub(crate) throttle_every: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) submits: AtomicU64,
    pub(crate) receipts: AtomicU64,
    pub(crate) binds: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct Responder {
    pub(crate) addr: SocketAddr,
    pub(crate) counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Receivers = Arc<Mutex<Vec<mpsc::Sender<Pdu>>>>;

pub(crate) async fn start(opts: Options) -> Responder {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let addr = listener.local_addr().expect("local addr");
    let counters = Arc::new(Counters::default());
    let receivers: Receivers = Arc::default();
    let c = Arc::clone(&counters);
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(session(stream, opts, Arc::clone(&c), Arc::clone(&receivers)));
        }
    });
    Responder { addr, counters, task }
}

/// Starts a responder on its own runtime thread, for tests that run the binary.
pub(crate) fn start_in_thread(opts: Options) -> (SocketAddr, Arc<Counters>) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let r = start(opts).await;
            tx.send((r.addr, Arc::clone(&r.counters))).expect("report the address");
            std::future::pending::<()>().await;
        });
    });
    rx.recv().expect("responder started")
}

fn receipt(id: &str, seq: u32) -> Pdu {
    let now = chrono_free_now();
    let text = Receipt {
        id: id.to_owned(),
        sub: 1,
        dlvrd: 1,
        submit_date: Some(now),
        done_date: Some(now),
        stat: ReceiptStat::Delivered,
        err: 0,
        text: String::new(),
    }
    .format();
    let mut d = DeliverSm {
        esm_class: EsmClass(EsmClass::TYPE_DELIVERY_RECEIPT),
        short_message: ShortMessage::new(Bytes::from(text)).expect("fits"),
        ..DeliverSm::default()
    };
    d.tlvs.push(Tlv::ReceiptedMessageId(TlvString::new(id.as_bytes())));
    d.tlvs.push(Tlv::MessageState(MessageState::DELIVERED));
    Pdu::new(seq, Body::DeliverSm(d))
}

/// A fixed receipt date: the tests do not read it.
fn chrono_free_now() -> chrono::NaiveDateTime {
    chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
        .and_then(|d| d.and_hms_opt(12, 0, 0))
        .expect("valid date")
}

async fn session(stream: TcpStream, opts: Options, counters: Arc<Counters>, receivers: Receivers) {
    let _ = stream.set_nodelay(true);
    let mut io = Framed::new(stream, SmppCodec::default());
    let mut transceiver = false;
    let (tx, mut rx) = mpsc::channel::<Pdu>(1024);
    let mut out_seq = 0u32;
    loop {
        let pdu = tokio::select! {
            next = io.next() => match next {
                Some(Ok(Ok(pdu))) => pdu,
                _ => return,
            },
            Some(mut receipt) = rx.recv() => {
                out_seq += 1;
                receipt.sequence_number = out_seq;
                if io.send(receipt).await.is_err() {
                    return;
                }
                continue;
            }
        };
        let seq = pdu.sequence_number;
        let reply = match pdu.body {
            Body::BindTransceiver(_) | Body::BindTransmitter(_) | Body::BindReceiver(_) => {
                counters.binds.fetch_add(1, Relaxed);
                let resp = BindResp {
                    system_id: COctetString::new(b"responder").expect("fits"),
                    ..BindResp::default()
                };
                match pdu.body {
                    Body::BindTransceiver(_) => {
                        transceiver = true;
                        Body::BindTransceiverResp(resp)
                    }
                    Body::BindReceiver(_) => {
                        receivers.lock().expect("not poisoned").push(tx.clone());
                        Body::BindReceiverResp(resp)
                    }
                    _ => Body::BindTransmitterResp(resp),
                }
            }
            Body::SubmitSm(s) => {
                let n = counters.submits.fetch_add(1, Relaxed) + 1;
                if opts.throttle_every > 0 && n.is_multiple_of(opts.throttle_every) {
                    let _ = io
                        .feed(Pdu::error_response(
                            smsc_smpp::CommandId::SubmitSmResp,
                            seq,
                            CommandStatus::ESME_RTHROTTLED,
                        ))
                        .await;
                    flush_if_idle(&mut io).await;
                    continue;
                }
                let id = format!("{n:x}");
                let ok = MessageIdResp {
                    message_id: COctetString::new(id.as_bytes()).expect("fits"),
                    ..MessageIdResp::default()
                };
                if io.feed(Pdu::new(seq, Body::SubmitSmResp(ok))).await.is_err() {
                    return;
                }
                if s.registered_delivery.0 & 3 == 1 {
                    counters.receipts.fetch_add(1, Relaxed);
                    if transceiver {
                        out_seq += 1;
                        if io.feed(receipt(&id, out_seq)).await.is_err() {
                            return;
                        }
                    } else {
                        // A receiver of the account, round robin by message.
                        let target = {
                            let list = receivers.lock().expect("not poisoned");
                            list.get(n as usize % list.len().max(1)).cloned()
                        };
                        if let Some(t) = target {
                            let _ = t.send(receipt(&id, 0)).await;
                        }
                    }
                }
                flush_if_idle(&mut io).await;
                continue;
            }
            Body::EnquireLink => Body::EnquireLinkResp,
            Body::Unbind => {
                let _ = io.send(Pdu::new(seq, Body::UnbindResp)).await;
                return;
            }
            // deliver_sm_resp and the rest: nothing to answer, but what is queued goes out.
            _ => {
                flush_if_idle(&mut io).await;
                continue;
            }
        };
        if io.send(Pdu::new(seq, reply)).await.is_err() {
            return;
        }
    }
}

/// Writes what is queued once no whole PDU is left to read: one write per batch.
async fn flush_if_idle(io: &mut Framed<TcpStream, SmppCodec>) {
    let buffered = io.read_buffer();
    let whole = smsc_smpp::Header::peek(buffered)
        .is_some_and(|h| h.command_length as usize <= buffered.len());
    if !whole {
        let _ = futures::SinkExt::<Pdu>::flush(io).await;
    }
}
