//! Malformed input over real TCP, one row per class: the raw bytes an ESME sends, what
//! the edge answers (command_id, command_status, sequence_number) or that it closes the
//! connection, and that afterwards a new session still binds and submits, a session
//! that was bound all along is unaffected, and the edge's accept loop still runs.
//!
//! The same table is in docs/malformed-input.md; a test checks that every row's bytes are there.

mod common;

use std::time::Duration;

use common::{Client, ESME, Setup, TestEdge, account, assert_status, submit_sm};
use smsc_smpp::{Body, CommandId, CommandStatus, Pdu};
use smsc_store::BindKind;

use Expect::{Answer, Closed, Nothing};
use State::{Bound, Open};

#[derive(Debug, Clone, Copy)]
enum State {
    /// Sent right after connecting.
    Open,
    /// Sent on a transceiver session bound as [`ESME`].
    Bound,
}

#[derive(Debug)]
enum Expect {
    /// These PDUs, in this order; the session stays open.
    Answer(&'static [(CommandId, CommandStatus, u32)]),
    /// No answer; the session stays open.
    Nothing,
    /// These PDUs, then the edge closes the connection.
    Closed(&'static [(CommandId, CommandStatus, u32)]),
}

#[derive(Debug)]
struct Row {
    class: &'static str,
    name: &'static str,
    state: State,
    /// The bytes sent, in hex, in one write: header (16 octets), then the body.
    hex: &'static str,
    expect: Expect,
}

const ROWS: &[Row] = &[
    Row {
        class: "command_length",
        name: "command_length below 16",
        state: Bound,
        hex: "00000008 00000004 00000000 00000001",
        expect: Closed(&[(CommandId::GenericNack, CommandStatus::ESME_RINVCMDLEN, 0x00000001)]),
    },
    Row {
        class: "command_length",
        name: "command_length above edge.max_command_length (70001 > 70000)",
        state: Bound,
        hex: "00011171 00000004 00000000 00000002",
        expect: Closed(&[(CommandId::GenericNack, CommandStatus::ESME_RINVCMDLEN, 0x00000002)]),
    },
    Row {
        class: "command_length",
        name: "command_length 0xFFFFFFFF",
        state: Bound,
        hex: "ffffffff 00000004 00000000 00000003",
        expect: Closed(&[(CommandId::GenericNack, CommandStatus::ESME_RINVCMDLEN, 0x00000003)]),
    },
    Row {
        class: "command_length",
        name: "not SMPP: an HTTP request",
        state: Open,
        hex: "47455420 2f204854 54502f31 2e310d0a",
        expect: Closed(&[(CommandId::GenericNack, CommandStatus::ESME_RINVCMDLEN, 0x2E310D0A)]),
    },
    Row {
        class: "command_length",
        name: "not SMPP: a TLS ClientHello on the plain port",
        state: Open,
        hex: "16030102 00010000 01fc0303 00000004",
        expect: Closed(&[(CommandId::GenericNack, CommandStatus::ESME_RINVCMDLEN, 0x00000004)]),
    },
    Row {
        class: "truncated body",
        name: "submit_sm with no body at all",
        state: Bound,
        hex: "00000010 00000004 00000000 00000005",
        expect: Answer(&[(CommandId::SubmitSmResp, CommandStatus::ESME_RINVCMDLEN, 0x00000005)]),
    },
    Row {
        class: "truncated body",
        name: "submit_sm ending inside source_addr_npi",
        state: Bound,
        hex: "00000015 00000004 00000000 00000006 434d5400 01",
        expect: Answer(&[(CommandId::SubmitSmResp, CommandStatus::ESME_RINVCMDLEN, 0x00000006)]),
    },
    Row {
        class: "truncated body",
        name: "sm_length longer than the rest of the body",
        state: Bound,
        hex: concat!(
            "00000036 00000004 00000000 00000007 00010131 35353530 30303100 01013135 ",
            "35353939 39390000 00000000 00000000 2068656c 6c6f ",
        ),
        expect: Answer(&[(CommandId::SubmitSmResp, CommandStatus::ESME_RINVMSGLEN, 0x00000007)]),
    },
    Row {
        class: "truncated body",
        name: "command_length 100 and only the header sent: closed at edge.pdu_read_timeout",
        state: Bound,
        hex: "00000064 00000004 00000000 00000030",
        expect: Closed(&[]),
    },
    Row {
        class: "truncated body",
        name: "bytes after a body-less PDU (enquire_link + 4 octets)",
        state: Bound,
        hex: "00000014 00000015 00000000 00000008 00000000",
        expect: Answer(&[(CommandId::EnquireLinkResp, CommandStatus::ESME_RINVCMDLEN, 0x00000008)]),
    },
    Row {
        class: "C-string terminator",
        name: "source_addr without its NUL at the end of the body",
        state: Bound,
        hex: "0000001b 00000004 00000000 00000009 00010131 35353530 303031",
        expect: Answer(&[(CommandId::SubmitSmResp, CommandStatus::ESME_RINVCMDLEN, 0x00000009)]),
    },
    Row {
        class: "C-string terminator",
        name: "bind with no NUL anywhere",
        state: Open,
        hex: "00000014 00000009 00000000 0000000a 65736d65",
        expect: Answer(&[(
            CommandId::BindTransceiverResp,
            CommandStatus::ESME_RINVCMDLEN,
            0x0000000A,
        )]),
    },
    Row {
        class: "over-long field",
        name: "service_type of 9 characters (max 5)",
        state: Bound,
        hex: concat!(
            "0000003f 00000004 00000000 0000000b 434d5443 4d54434d 54000101 31353535 ",
            "30303031 00010131 35353539 39393900 00000000 00000000 00056865 6c6c6f ",
        ),
        expect: Answer(&[(CommandId::SubmitSmResp, CommandStatus::ESME_RINVSERTYP, 0x0000000B)]),
    },
    Row {
        class: "over-long field",
        name: "source_addr of 25 digits (max 20)",
        state: Bound,
        hex: concat!(
            "00000047 00000004 00000000 0000000c 00010131 31313131 31313131 31313131 ",
            "31313131 31313131 31313131 00010131 35353539 39393900 00000000 00000000 ",
            "00056865 6c6c6f ",
        ),
        expect: Answer(&[(CommandId::SubmitSmResp, CommandStatus::ESME_RINVSRCADR, 0x0000000C)]),
    },
    Row {
        class: "over-long field",
        name: "destination_addr of 25 digits (max 20)",
        state: Bound,
        hex: concat!(
            "00000047 00000004 00000000 0000000d 00010131 35353530 30303100 01013131 ",
            "31313131 31313131 31313131 31313131 31313131 31313100 00000000 00000000 ",
            "00056865 6c6c6f ",
        ),
        expect: Answer(&[(CommandId::SubmitSmResp, CommandStatus::ESME_RINVDSTADR, 0x0000000D)]),
    },
    Row {
        class: "over-long field",
        name: "sm_length 255 (max 254)",
        state: Bound,
        hex: concat!(
            "00000130 00000004 00000000 0000000e 00010131 35353530 30303100 01013135 ",
            "35353939 39390000 00000000 00000000 ff787878 78787878 78787878 78787878 ",
            "78787878 78787878 78787878 78787878 78787878 78787878 78787878 78787878 ",
            "78787878 78787878 78787878 78787878 78787878 78787878 78787878 78787878 ",
            "78787878 78787878 78787878 78787878 78787878 78787878 78787878 78787878 ",
            "78787878 78787878 78787878 78787878 78787878 78787878 78787878 78787878 ",
            "78787878 78787878 78787878 78787878 78787878 78787878 78787878 78787878 ",
            "78787878 78787878 78787878 78787878 78787878 78787878 78787878 78787878 ",
            "78787878 78787878 78787878 78787878 78787878 78787878 78787878 78787878 ",
            "78787878 78787878 78787878 78787878 ",
        ),
        expect: Answer(&[(CommandId::SubmitSmResp, CommandStatus::ESME_RINVMSGLEN, 0x0000000E)]),
    },
    Row {
        class: "over-long field",
        name: "bind system_id of 20 characters (max 15)",
        state: Open,
        hex: concat!(
            "00000031 00000009 00000000 0000000f 65656565 65656565 65656565 65656565 ",
            "65656565 00736563 72657400 00340000 00 ",
        ),
        expect: Answer(&[(
            CommandId::BindTransceiverResp,
            CommandStatus::ESME_RINVSYSID,
            0x0000000F,
        )]),
    },
    Row {
        class: "over-long field",
        name: "bind password of 12 characters (max 8)",
        state: Open,
        hex: concat!(
            "00000027 00000009 00000000 00000010 65736d65 00736563 72657473 65637265 ",
            "74000034 000000 ",
        ),
        expect: Answer(&[(
            CommandId::BindTransceiverResp,
            CommandStatus::ESME_RINVPASWD,
            0x00000010,
        )]),
    },
    Row {
        class: "TLV",
        name: "TLV header cut short (3 octets)",
        state: Bound,
        hex: concat!(
            "00000039 00000004 00000000 00000011 00010131 35353530 30303100 01013135 ",
            "35353939 39390000 00000000 00000000 0568656c 6c6f0204 00 ",
        ),
        expect: Answer(&[(
            CommandId::SubmitSmResp,
            CommandStatus::ESME_RINVOPTPARSTREAM,
            0x00000011,
        )]),
    },
    Row {
        class: "TLV",
        name: "TLV length past the end of the body",
        state: Bound,
        hex: concat!(
            "0000003c 00000004 00000000 00000012 00010131 35353530 30303100 01013135 ",
            "35353939 39390000 00000000 00000000 0568656c 6c6f0204 00100001 ",
        ),
        expect: Answer(&[(
            CommandId::SubmitSmResp,
            CommandStatus::ESME_RINVOPTPARSTREAM,
            0x00000012,
        )]),
    },
    Row {
        class: "TLV",
        name: "known TLV with a wrong length (user_message_reference, 1 octet)",
        state: Bound,
        hex: concat!(
            "0000003b 00000004 00000000 00000013 00010131 35353530 30303100 01013135 ",
            "35353939 39390000 00000000 00000000 0568656c 6c6f0204 000101 ",
        ),
        expect: Answer(&[(CommandId::SubmitSmResp, CommandStatus::ESME_RINVPARLEN, 0x00000013)]),
    },
    Row {
        class: "TLV",
        name: "duplicate TLV (user_message_reference twice)",
        state: Bound,
        hex: concat!(
            "00000042 00000004 00000000 00000014 00010131 35353530 30303100 01013135 ",
            "35353939 39390000 00000000 00000000 0568656c 6c6f0204 00020001 02040002 ",
            "0002 ",
        ),
        expect: Answer(&[(
            CommandId::SubmitSmResp,
            CommandStatus::ESME_RINVOPTPARSTREAM,
            0x00000014,
        )]),
    },
    Row {
        class: "TLV",
        name: "unknown TLV (tag 0x1400): ignored, the submit is accepted",
        state: Bound,
        hex: concat!(
            "0000003c 00000004 00000000 00000015 00010131 35353530 30303100 01013135 ",
            "35353939 39390000 00000000 00000000 0568656c 6c6f1400 0002abcd ",
        ),
        expect: Answer(&[(CommandId::SubmitSmResp, CommandStatus::ESME_ROK, 0x00000015)]),
    },
    Row {
        class: "TLV",
        name: "message_payload together with a short_message",
        state: Bound,
        hex: concat!(
            "0000003d 00000004 00000000 00000016 00010131 35353530 30303100 01013135 ",
            "35353939 39390000 00000000 00000000 0568656c 6c6f0424 00036162 63 ",
        ),
        expect: Answer(&[(CommandId::SubmitSmResp, CommandStatus::ESME_RINVMSGLEN, 0x00000016)]),
    },
    Row {
        class: "invalid value",
        name: "data_coding 0x80 (reserved coding group)",
        state: Bound,
        hex: concat!(
            "00000036 00000004 00000000 00000017 00010131 35353530 30303100 01013135 ",
            "35353939 39390000 00000000 00008000 0568656c 6c6f ",
        ),
        expect: Answer(&[(CommandId::SubmitSmResp, CommandStatus::ESME_RINVDCS, 0x00000017)]),
    },
    Row {
        class: "invalid value",
        name: "esm_class 0x04 (a delivery receipt, from an ESME)",
        state: Bound,
        hex: concat!(
            "00000036 00000004 00000000 00000018 00010131 35353530 30303100 01013135 ",
            "35353939 39390004 00000000 00000000 0568656c 6c6f ",
        ),
        expect: Answer(&[(CommandId::SubmitSmResp, CommandStatus::ESME_RINVESMCLASS, 0x00000018)]),
    },
    Row {
        class: "invalid value",
        name: "priority_flag 9",
        state: Bound,
        hex: concat!(
            "00000036 00000004 00000000 00000019 00010131 35353530 30303100 01013135 ",
            "35353939 39390000 00090000 00000000 0568656c 6c6f ",
        ),
        expect: Answer(&[(CommandId::SubmitSmResp, CommandStatus::ESME_RINVPRTFLG, 0x00000019)]),
    },
    Row {
        class: "invalid value",
        name: "source_addr_ton 9",
        state: Bound,
        hex: concat!(
            "00000036 00000004 00000000 0000001a 00090131 35353530 30303100 01013135 ",
            "35353939 39390000 00000000 00000000 0568656c 6c6f ",
        ),
        expect: Answer(&[(CommandId::SubmitSmResp, CommandStatus::ESME_RINVSRCTON, 0x0000001A)]),
    },
    Row {
        class: "invalid value",
        name: "empty destination_addr",
        state: Bound,
        hex: concat!(
            "0000002e 00000004 00000000 0000001b 00010131 35353530 30303100 01010000 ",
            "00000000 00000000 0568656c 6c6f ",
        ),
        expect: Answer(&[(CommandId::SubmitSmResp, CommandStatus::ESME_RINVDSTADR, 0x0000001B)]),
    },
    Row {
        class: "invalid value",
        name: "submit_multi with number_of_dests 0",
        state: Bound,
        hex: concat!(
            "0000002c 00000021 00000000 0000001c 00010131 35353530 30303100 00000000 ",
            "00000000 00000568 656c6c6f ",
        ),
        expect: Answer(&[(
            CommandId::SubmitMultiResp,
            CommandStatus::ESME_RINVNUMDESTS,
            0x0000001C,
        )]),
    },
    Row {
        class: "invalid time",
        name: "schedule_delivery_time of 4 characters (must be 0 or 16)",
        state: Bound,
        hex: concat!(
            "0000003a 00000004 00000000 0000001d 00010131 35353530 30303100 01013135 ",
            "35353939 39390000 00003236 30310000 00000000 0568656c 6c6f ",
        ),
        expect: Answer(&[(CommandId::SubmitSmResp, CommandStatus::ESME_RINVSCHED, 0x0000001D)]),
    },
    Row {
        class: "invalid time",
        name: "schedule_delivery_time with month 13",
        state: Bound,
        hex: concat!(
            "00000046 00000004 00000000 0000001e 00010131 35353530 30303100 01013135 ",
            "35353939 39390000 00003236 31333031 31323030 30303030 302b0000 00000000 ",
            "0568656c 6c6f ",
        ),
        expect: Answer(&[(CommandId::SubmitSmResp, CommandStatus::ESME_RINVSCHED, 0x0000001E)]),
    },
    Row {
        class: "invalid time",
        name: "validity_period of 4 characters",
        state: Bound,
        hex: concat!(
            "0000003a 00000004 00000000 0000001f 00010131 35353530 30303100 01013135 ",
            "35353939 39390000 00000030 30303100 00000000 0568656c 6c6f ",
        ),
        expect: Answer(&[(CommandId::SubmitSmResp, CommandStatus::ESME_RINVEXPIRY, 0x0000001F)]),
    },
    Row {
        class: "invalid time",
        name: "validity_period with a bad relative/absolute marker (X)",
        state: Bound,
        hex: concat!(
            "00000046 00000004 00000000 00000020 00010131 35353530 30303100 01013135 ",
            "35353939 39390000 00000030 30303030 31303030 30303030 30305800 00000000 ",
            "0568656c 6c6f ",
        ),
        expect: Answer(&[(CommandId::SubmitSmResp, CommandStatus::ESME_RINVEXPIRY, 0x00000020)]),
    },
    Row {
        class: "sequence_number",
        name: "sequence_number 0 (spec range 1..=0x7FFFFFFF): answered, echoed",
        state: Bound,
        hex: "00000010 00000015 00000000 00000000",
        expect: Answer(&[(CommandId::EnquireLinkResp, CommandStatus::ESME_ROK, 0x00000000)]),
    },
    Row {
        class: "sequence_number",
        name: "submit_sm with sequence_number 0: answered, echoed",
        state: Bound,
        hex: concat!(
            "00000036 00000004 00000000 00000000 00010131 35353530 30303100 01013135 ",
            "35353939 39390000 00000000 00000000 0568656c 6c6f ",
        ),
        expect: Answer(&[(CommandId::SubmitSmResp, CommandStatus::ESME_ROK, 0x00000000)]),
    },
    Row {
        class: "sequence_number",
        name: "sequence_number 0xFFFFFFFF: answered, echoed",
        state: Bound,
        hex: "00000010 00000015 00000000 ffffffff",
        expect: Answer(&[(CommandId::EnquireLinkResp, CommandStatus::ESME_ROK, 0xFFFFFFFF)]),
    },
    Row {
        class: "header",
        name: "a request with command_status set: the status is ignored",
        state: Bound,
        hex: "00000010 00000015 00000008 00000021",
        expect: Answer(&[(CommandId::EnquireLinkResp, CommandStatus::ESME_ROK, 0x00000021)]),
    },
    Row {
        class: "command_id",
        name: "unknown command_id 0x00000099",
        state: Bound,
        hex: "00000010 00000099 00000000 00000022",
        expect: Answer(&[(CommandId::GenericNack, CommandStatus::ESME_RINVCMDID, 0x00000022)]),
    },
    Row {
        class: "command_id",
        name: "unknown command_id 0x80000099 (a response): not answered",
        state: Bound,
        hex: "00000010 80000099 00000000 00000023",
        expect: Nothing,
    },
    Row {
        class: "command_id",
        name: "deliver_sm from the ESME (only an SMSC sends it)",
        state: Bound,
        hex: concat!(
            "00000036 00000005 00000000 00000024 00010131 35353530 30303100 01013135 ",
            "35353939 39390000 00000000 00000000 0568656c 6c6f ",
        ),
        expect: Answer(&[(CommandId::GenericNack, CommandStatus::ESME_RINVCMDID, 0x00000024)]),
    },
    Row {
        class: "command_id",
        name: "outbind from the ESME",
        state: Open,
        hex: "0000001c 0000000b 00000000 00000025 65736d65 00736563 72657400",
        expect: Answer(&[(CommandId::GenericNack, CommandStatus::ESME_RINVCMDID, 0x00000025)]),
    },
    Row {
        class: "unasked response",
        name: "submit_sm_resp nobody asked for: not answered",
        state: Bound,
        hex: "00000015 80000004 00000000 00000026 30313233 00",
        expect: Nothing,
    },
    Row {
        class: "unasked response",
        name: "deliver_sm_resp with an unknown sequence_number: not answered",
        state: Bound,
        hex: "00000011 80000005 00000000 00000027 00",
        expect: Nothing,
    },
    Row {
        class: "unasked response",
        name: "enquire_link_resp nobody asked for: not answered",
        state: Bound,
        hex: "00000010 80000015 00000000 00000028",
        expect: Nothing,
    },
    Row {
        class: "unasked response",
        name: "generic_nack from the ESME: not answered",
        state: Bound,
        hex: "00000010 80000000 00000003 00000029",
        expect: Nothing,
    },
    Row {
        class: "unasked response",
        name: "malformed deliver_sm_resp (truncated): not answered",
        state: Bound,
        hex: "00000013 80000005 00000000 0000002a 616263",
        expect: Nothing,
    },
    Row {
        class: "session state",
        name: "submit_sm before bind",
        state: Open,
        hex: concat!(
            "00000036 00000004 00000000 0000002b 00010131 35353530 30303100 01013135 ",
            "35353939 39390000 00000000 00000000 0568656c 6c6f ",
        ),
        expect: Answer(&[(CommandId::SubmitSmResp, CommandStatus::ESME_RINVBNDSTS, 0x0000002B)]),
    },
    Row {
        class: "session state",
        name: "bind when already bound",
        state: Bound,
        hex: concat!(
            "00000021 00000009 00000000 0000002c 65736d65 00736563 72657400 00340000 ",
            "00 ",
        ),
        expect: Answer(&[(
            CommandId::BindTransceiverResp,
            CommandStatus::ESME_RALYBND,
            0x0000002C,
        )]),
    },
    Row {
        class: "session state",
        name: "a PDU after unbind (same write): refused, then unbind_resp and close",
        state: Bound,
        hex: concat!(
            "00000010 00000006 00000000 0000002d 00000036 00000004 00000000 0000002e ",
            "00010131 35353530 30303100 01013135 35353939 39390000 00000000 00000000 ",
            "0568656c 6c6f ",
        ),
        expect: Closed(&[
            (CommandId::SubmitSmResp, CommandStatus::ESME_RINVBNDSTS, 0x0000002E),
            (CommandId::UnbindResp, CommandStatus::ESME_ROK, 0x0000002D),
        ]),
    },
    Row {
        class: "session state",
        name: "unbind before bind",
        state: Open,
        hex: "00000010 00000006 00000000 0000002f",
        expect: Closed(&[(CommandId::UnbindResp, CommandStatus::ESME_ROK, 0x0000002F)]),
    },
];

/// Every session of these tests binds as [`ESME`]; room for all of them at once. A
/// short PDU deadline, for the row whose PDU never completes.
async fn edge() -> TestEdge {
    let mut esme = account(ESME);
    esme.max_binds = 1000;
    let mut setup = Setup::accounts(vec![esme]);
    setup.limits.pdu_read_timeout = Duration::from_secs(1);
    TestEdge::start(setup).await
}

fn seen(p: &Pdu) -> (CommandId, CommandStatus, u32) {
    (p.command_id(), p.status, p.sequence_number)
}

/// Sends the row and checks what comes back; an `Err` says what differed.
async fn run_row(edge: &TestEdge, i: usize, row: &Row) -> Result<(), String> {
    let mut c = edge.connect().await;
    if let Bound = row.state {
        c.bind_ok(BindKind::Transceiver, ESME).await;
    }
    c.write_hex(row.hex).await;
    let started = std::time::Instant::now();
    let (answers, closes) = match row.expect {
        Answer(a) => (a, false),
        Nothing => (&[][..], false),
        Closed(a) => (a, true),
    };
    for expected in answers {
        match c.read().await {
            Some(p) if seen(&p) == *expected => {}
            Some(p) => return Err(format!("expected {expected:?}, got {:?}", seen(&p))),
            None => return Err(format!("expected {expected:?}, the connection closed")),
        }
    }
    if closes {
        return match c.read().await {
            None if answers.is_empty() && started.elapsed() < Duration::from_secs(1) => {
                Err("closed before edge.pdu_read_timeout".into())
            }
            None => Ok(()),
            Some(p) => Err(format!("expected the connection closed, got {:?}", seen(&p))),
        };
    }
    // Nothing else was sent, and the session still answers.
    let probe = 0x7000_0000 + i as u32;
    c.send(&[Pdu::new(probe, Body::EnquireLink)]).await;
    match c.read().await {
        Some(p) if seen(&p) == (CommandId::EnquireLinkResp, CommandStatus::ESME_ROK, probe) => {
            Ok(())
        }
        Some(p) => Err(format!("expected nothing more, got {:?}", seen(&p))),
        None => Err("expected the session to stay open, it closed".into()),
    }
}

/// A new session binds, submits and unbinds.
async fn healthy(edge: &TestEdge) {
    let mut c: Client = edge.bind(BindKind::Transceiver, ESME).await;
    assert_status(&c.submit(submit_sm("healthy")).await, CommandStatus::ESME_ROK);
    assert_eq!(c.request(Body::Unbind).await.command_id(), CommandId::UnbindResp);
}

#[tokio::test]
async fn every_class_of_malformed_input_gets_its_answer_and_hurts_no_other_session() {
    let edge = edge().await;
    let mut bystander = edge.bind(BindKind::Transceiver, ESME).await;
    let mut failures = Vec::new();
    for (i, row) in ROWS.iter().enumerate() {
        if let Err(e) = run_row(&edge, i, row).await {
            failures.push(format!("{} / {}: {e}", row.class, row.name));
        }
        assert!(!edge.serving.is_finished(), "the edge stopped serving after {row:?}");
        healthy(&edge).await;
        let resp = bystander.submit(submit_sm("bystander")).await;
        assert_status(&resp, CommandStatus::ESME_ROK);
    }
    assert!(failures.is_empty(), "{} rows differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn malformed_md_lists_every_row() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/malformed-input.md");
    let doc = std::fs::read_to_string(path).expect("docs/malformed-input.md");
    let squeezed: String = doc.chars().filter(|c| !c.is_whitespace()).collect();
    for row in ROWS {
        let hex: String = row.hex.chars().filter(|c| !c.is_whitespace()).collect();
        assert!(
            squeezed.contains(&hex),
            "{} / {}: bytes not in the malformed-input table of docs/malformed-input.md",
            row.class,
            row.name
        );
        assert!(doc.contains(row.name), "{}: not in the docs/malformed-input.md table", row.name);
    }
}
