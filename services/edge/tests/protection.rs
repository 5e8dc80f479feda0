//! What protects the edge from abusive clients, over real TCP: the bind lockout, the
//! per-address and per-pod connection limits, the deadline for a started PDU (slow
//! clients), and no secret in the log lines or metrics this produces.

mod common;

use std::io::Write;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Client, ESME, PASSWORD, Setup, TestEdge, account, assert_status, paused, submit_sm};
use smsc_edge::{Limits, LockoutSettings};
use smsc_smpp::{Body, CommandId, CommandStatus, Pdu};
use smsc_store::BindKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

const WRONG: &str = "wrongpw1";
const OTHER: &str = "other";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn limits(max_failures: u32) -> Limits {
    Limits {
        lockout: LockoutSettings { max_failures, ..LockoutSettings::default() },
        ..Limits::default()
    }
}

async fn edge_with(limits: Limits) -> TestEdge {
    let setup = Setup { limits, ..Setup::accounts(vec![account(ESME), account(OTHER)]) };
    TestEdge::start(setup).await
}

/// The metrics text has this exact line.
fn has_metric(edge: &TestEdge, line: &str) -> bool {
    edge.metrics.encode().lines().any(|l| l == line)
}

/// `n` binds with a wrong password on one connection from `source`, each refused as a
/// wrong password is (the connection stays open after each).
async fn fail_binds(edge: &TestEdge, source: &str, system_id: &str, n: u32) -> Client {
    let mut c = edge.connect_from(ip(source)).await;
    for _ in 0..n {
        let resp = c.bind_as(BindKind::Transceiver, system_id, WRONG, 0x34).await;
        assert!(
            matches!(resp.status, CommandStatus::ESME_RINVPASWD | CommandStatus::ESME_RINVSYSID),
            "{resp:?}"
        );
    }
    c
}

/// A bind with the right password, refused by the lockout: ESME_RBINDFAIL, then closed.
async fn assert_locked_out(c: &mut Client, system_id: &str) -> Pdu {
    let resp = c.bind_as(BindKind::Transceiver, system_id, PASSWORD, 0x34).await;
    assert_status(&resp, CommandStatus::ESME_RBINDFAIL);
    c.expect_closed().await;
    resp
}

// ---- lockout ---------------------------------------------------------------------------

#[tokio::test]
async fn after_max_failures_even_the_right_password_is_refused_and_the_connection_closed() {
    let edge = edge_with(limits(3)).await;
    let mut c = fail_binds(&edge, "127.0.0.1", ESME, 3).await;
    // The right password is not even checked now.
    assert_locked_out(&mut c, ESME).await;
    // Nor on a new connection.
    let mut c = edge.connect().await;
    assert_locked_out(&mut c, ESME).await;

    assert!(has_metric(&edge, r#"smsc_edge_lockouts_total{reason="bind_failures"} 1"#));
    assert!(has_metric(&edge, r#"smsc_edge_connections_refused_total{reason="lockout"} 2"#));
    assert!(has_metric(
        &edge,
        r#"smsc_edge_binds_total{bind_type="transceiver",result="ESME_RBINDFAIL"} 2"#
    ));
    // The edge itself carries on: other sessions bind and submit.
    let mut other = edge.bind(BindKind::Transceiver, OTHER).await;
    assert_status(&other.submit(submit_sm("unaffected")).await, CommandStatus::ESME_ROK);
}

#[tokio::test]
async fn an_unknown_system_id_is_locked_out_with_the_same_answer_as_a_known_one() {
    let edge = edge_with(limits(3)).await;
    let mut known = fail_binds(&edge, "127.0.0.1", ESME, 3).await;
    let mut unknown = fail_binds(&edge, "127.0.0.1", "nobody", 3).await;
    let a = assert_locked_out(&mut known, ESME).await;
    let b = assert_locked_out(&mut unknown, "nobody").await;
    // Byte for byte the same answer: the lockout does not tell which ids exist.
    assert_eq!(a.to_bytes().expect("encodes"), b.to_bytes().expect("encodes"));
    assert!(has_metric(&edge, r#"smsc_edge_lockouts_total{reason="bind_failures"} 2"#));
}

#[tokio::test]
async fn the_lockout_is_per_system_id_and_client_address() {
    let edge = edge_with(limits(3)).await;
    let mut c = fail_binds(&edge, "127.0.0.1", ESME, 3).await;
    assert_locked_out(&mut c, ESME).await;
    // The same account from another address.
    let mut c = edge.connect_from(ip("127.0.0.2")).await;
    c.bind_ok(BindKind::Transceiver, ESME).await;
    // Another account from the same address.
    let mut c = edge.connect_from(ip("127.0.0.1")).await;
    c.bind_ok(BindKind::Transceiver, OTHER).await;
}

#[tokio::test]
async fn a_successful_bind_resets_the_count() {
    let edge = edge_with(limits(3)).await;
    let mut c = fail_binds(&edge, "127.0.0.1", ESME, 2).await;
    c.bind_ok(BindKind::Transceiver, ESME).await;
    assert_eq!(c.request(Body::Unbind).await.command_id(), CommandId::UnbindResp);
    c.expect_closed().await;
    // Two more failures: four in all, but only two since the success.
    let mut c = fail_binds(&edge, "127.0.0.1", ESME, 2).await;
    c.bind_ok(BindKind::Transceiver, ESME).await;
    assert!(!edge.metrics.encode().contains("smsc_edge_lockouts_total{"), "no lockout");
}

#[tokio::test]
async fn max_failures_zero_never_locks() {
    let edge = edge_with(limits(0)).await;
    let mut c = fail_binds(&edge, "127.0.0.1", ESME, 8).await;
    c.bind_ok(BindKind::Transceiver, ESME).await;
}

/// With the defaults (5 failures in 5m lock for 15m), on paused time.
#[test]
fn the_default_lockout_ends_after_15_minutes_and_slow_failures_never_lock() {
    paused(|| async {
        let edge = edge_with(Limits::default()).await;
        // One failure every 6 minutes: never 5 within a 5-minute window.
        for _ in 0..6 {
            let mut c = fail_binds(&edge, "127.0.0.1", OTHER, 1).await;
            c.bind_ok(BindKind::Transceiver, ESME).await;
            drop(c);
            tokio::time::sleep(Duration::from_secs(6 * 60)).await;
        }
        let mut c = edge.connect().await;
        c.bind_ok(BindKind::Transceiver, OTHER).await;

        let mut c = fail_binds(&edge, "127.0.0.1", ESME, 5).await;
        let locked_at = Instant::now();
        assert_locked_out(&mut c, ESME).await;
        tokio::time::sleep_until(locked_at + Duration::from_secs(15 * 60 - 1)).await;
        assert_locked_out(&mut edge.connect().await, ESME).await;
        tokio::time::sleep_until(locked_at + Duration::from_secs(15 * 60)).await;
        edge.bind(BindKind::Transceiver, ESME).await;
    });
}

/// Log lines as the fmt subscriber writes them, kept for the test to read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

#[tokio::test]
async fn the_lockout_warning_names_system_id_and_address_and_no_password_is_logged() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    // A current-thread runtime: the sessions log on this thread.
    let _guard = tracing::subscriber::set_default(subscriber);

    let edge = edge_with(limits(3)).await;
    let mut c = fail_binds(&edge, "127.0.0.1", ESME, 3).await;
    assert_locked_out(&mut c, ESME).await;
    let mut c = edge.bind(BindKind::Transceiver, OTHER).await;
    assert_status(&c.submit(submit_sm("logged?")).await, CommandStatus::ESME_ROK);

    let text = logs.text();
    let warning = text
        .lines()
        .find(|l| l.contains("bind lockout"))
        .unwrap_or_else(|| panic!("no lockout warning in\n{text}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("system_id=esme"), "{warning}");
    assert!(warning.contains("ip=127.0.0.1"), "{warning}");
    assert!(warning.contains("failures=3"), "{warning}");
    assert!(text.contains("bind refused"), "the failed binds are logged too:\n{text}");
    for secret in [WRONG, PASSWORD] {
        assert!(!text.contains(secret), "{secret:?} in the logs:\n{text}");
    }
    let metrics = edge.metrics.encode();
    for secret in [WRONG, PASSWORD, ESME, OTHER] {
        assert!(!metrics.contains(secret), "{secret:?} in the metrics:\n{metrics}");
    }
}

// ---- connection limits -------------------------------------------------------------------

#[tokio::test]
async fn past_max_connections_per_ip_a_connection_is_closed_at_accept() {
    let edge = edge_with(Limits { max_connections_per_ip: 2, ..Limits::default() }).await;
    let mut first = edge.connect_from(ip("127.0.0.1")).await;
    let mut second = edge.connect_from(ip("127.0.0.1")).await;
    for c in [&mut first, &mut second] {
        assert_eq!(c.request(Body::EnquireLink).await.command_id(), CommandId::EnquireLinkResp);
    }
    let mut third = edge.connect_from(ip("127.0.0.1")).await;
    third.expect_closed().await;
    assert!(has_metric(&edge, r#"smsc_edge_connections_refused_total{reason="per_ip"} 1"#));

    // Another client address is not affected.
    let mut elsewhere = edge.connect_from(ip("127.0.0.2")).await;
    elsewhere.bind_ok(BindKind::Transceiver, ESME).await;
    assert_status(&elsewhere.submit(submit_sm("other host")).await, CommandStatus::ESME_ROK);
    // The first two still work.
    first.bind_ok(BindKind::Transceiver, ESME).await;

    // A closed connection gives its place back.
    drop(second);
    let e = &edge.edge;
    common::eventually("the connection closed", || async { e.open_connections() == 2 }).await;
    let mut again = edge.connect_from(ip("127.0.0.1")).await;
    again.bind_ok(BindKind::Transceiver, ESME).await;
}

#[tokio::test]
async fn past_max_connections_a_connection_is_refused_per_pod() {
    let mut setup = Setup { limits: Limits::default(), ..Setup::default() };
    setup.settings.max_connections = 2;
    let edge = TestEdge::start(setup).await;
    let mut a = edge.connect_from(ip("127.0.0.1")).await;
    let mut b = edge.connect_from(ip("127.0.0.2")).await;
    for c in [&mut a, &mut b] {
        assert_eq!(c.request(Body::EnquireLink).await.command_id(), CommandId::EnquireLinkResp);
    }
    edge.connect_from(ip("127.0.0.3")).await.expect_closed().await;
    assert!(has_metric(&edge, r#"smsc_edge_connections_refused_total{reason="per_pod"} 1"#));
    assert_eq!(edge.edge.open_connections(), 2);
}

// ---- slow clients ----------------------------------------------------------------------

const PDU_TIMEOUT: Duration = Duration::from_secs(10);

/// An edge whose only timers that matter here are far away, but for the PDU deadline.
async fn slow_client_edge() -> TestEdge {
    let mut setup = Setup { limits: Limits::default(), ..Setup::default() };
    setup.settings.enquire_link_interval = Duration::from_secs(60);
    setup.settings.inactivity_timeout = Duration::from_secs(600);
    assert_eq!(setup.limits.pdu_read_timeout, PDU_TIMEOUT, "the default");
    TestEdge::start(setup).await
}

fn submit_bytes(seq: u32) -> Vec<u8> {
    Pdu::new(seq, Body::SubmitSm(submit_sm("slowly"))).to_bytes().expect("encodes").to_vec()
}

fn assert_after(elapsed: Duration, timer: Duration) {
    assert!(
        elapsed >= timer && elapsed < timer + Duration::from_secs(1),
        "after {elapsed:?}, expected {timer:?}"
    );
}

#[test]
fn a_pdu_started_and_never_finished_closes_the_connection_at_pdu_read_timeout() {
    paused(|| async {
        let edge = slow_client_edge().await;
        let mut c = edge.bind(BindKind::Transceiver, ESME).await;
        c.timeout = Duration::from_secs(600);
        // Half a header.
        c.write(&submit_bytes(2)[..10]).await;
        let start = Instant::now();
        c.expect_closed().await;
        assert_after(start.elapsed(), PDU_TIMEOUT);
        assert!(has_metric(&edge, "smsc_edge_pdu_read_timeouts_total 1"));
        let registry = &edge.edge.registry;
        common::eventually("session unregistered", || async { registry.count(ESME) == 0 }).await;
    });
}

#[test]
fn a_header_without_its_body_closes_the_connection_at_pdu_read_timeout() {
    paused(|| async {
        let edge = slow_client_edge().await;
        let mut c = edge.bind(BindKind::Transceiver, ESME).await;
        c.timeout = Duration::from_secs(600);
        c.write(&submit_bytes(2)[..16]).await;
        let start = Instant::now();
        c.expect_closed().await;
        assert_after(start.elapsed(), PDU_TIMEOUT);
    });
}

#[test]
fn trickling_a_pdu_byte_by_byte_does_not_extend_the_deadline() {
    paused(|| async {
        let edge = slow_client_edge().await;
        let c = edge.bind(BindKind::Transceiver, ESME).await;
        let (mut rd, mut wr) = c.into_inner().into_split();
        let bytes = submit_bytes(2);
        let start = Instant::now();
        let writer = tokio::spawn(async move {
            for b in bytes {
                if wr.write_all(&[b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(600), rd.read(&mut buf))
            .await
            .expect("the edge closes the connection")
            .unwrap_or(0);
        assert_eq!(n, 0, "nothing is answered to a PDU that never completed: {:02x?}", &buf[..n]);
        assert_after(start.elapsed(), PDU_TIMEOUT);
        writer.abort();
    });
}

#[test]
fn pdus_completed_within_the_deadline_are_answered_and_idling_between_pdus_is_fine() {
    paused(|| async {
        let edge = slow_client_edge().await;
        let mut c = edge.bind(BindKind::Transceiver, ESME).await;
        c.timeout = Duration::from_secs(600);
        // Idle (nothing started) for longer than the PDU deadline: still open.
        c.expect_silence(PDU_TIMEOUT * 3).await;

        // Two PDUs in three writes 9s apart: the first completes 9s after its first
        // octet, the second 9s after its own, although 18s after the first began.
        let (one, two) = (submit_bytes(2), submit_bytes(3));
        c.write(&one[..20]).await;
        tokio::time::sleep(Duration::from_secs(9)).await;
        let mut middle = one[20..].to_vec();
        middle.extend_from_slice(&two[..20]);
        c.write(&middle).await;
        let first = c.recv().await;
        assert_eq!((first.sequence_number, first.status), (2, CommandStatus::ESME_ROK));
        tokio::time::sleep(Duration::from_secs(9)).await;
        c.write(&two[20..]).await;
        let second = c.recv().await;
        assert_eq!((second.sequence_number, second.status), (3, CommandStatus::ESME_ROK));
        assert!(has_metric(&edge, "smsc_edge_pdu_read_timeouts_total 0"));
    });
}

#[test]
fn an_unbound_connection_trickling_a_bind_is_closed_too() {
    paused(|| async {
        let mut setup = Setup::default();
        // Longer than the PDU deadline, so that it is the deadline that closes.
        setup.settings.session_init_timeout = Duration::from_secs(60);
        let edge = TestEdge::start(setup).await;
        let mut c = edge.connect().await;
        c.timeout = Duration::from_secs(600);
        c.write(&[0, 0, 0]).await;
        let start = Instant::now();
        c.expect_closed().await;
        assert_after(start.elapsed(), PDU_TIMEOUT);
        // And a fresh connection binds as usual.
        edge.bind(BindKind::Transceiver, ESME).await;
    });
}

/// A bind is checked once; an account set that changes under bound sessions unbinds
/// those it no longer admits (removed, disabled, bind type or client address no longer
/// allowed), and leaves the others alone.
#[tokio::test]
async fn sessions_the_changed_accounts_no_longer_admit_are_unbound() {
    use smsc_accounts::Account;
    use smsc_accounts::AccountConfig;
    let names = ["removed", "disabled", "no_rx", "elsewhere", "kept"];
    let setup = Setup::accounts(names.iter().map(|n| account(n)).collect());
    let edge = TestEdge::start(setup).await;
    let mut clients = Vec::new();
    for name in names {
        clients.push((name, edge.bind(BindKind::Transceiver, name).await));
    }

    let changed = |c: AccountConfig| Account::from_config(&c).expect("valid account");
    edge.edge.accounts.replace(vec![
        changed(AccountConfig { enabled: false, ..account("disabled") }),
        changed(AccountConfig { bind_types: vec![BindKind::Transmitter], ..account("no_rx") }),
        changed(AccountConfig {
            allowed_cidrs: vec!["10.0.0.0/8".parse().expect("net")],
            ..account("elsewhere")
        }),
        changed(account("kept")),
    ]);

    for (name, c) in &mut clients {
        if *name == "kept" {
            c.expect_silence(Duration::from_millis(300)).await;
            continue;
        }
        let pdu = c.recv().await;
        assert_eq!(pdu.command_id(), CommandId::Unbind, "{name}: {pdu:?}");
        c.send(&[Pdu::new(pdu.sequence_number, Body::UnbindResp)]).await;
        c.expect_closed().await;
    }
    let (_, kept) = clients.iter_mut().find(|(n, _)| *n == "kept").expect("kept");
    assert_status(&kept.submit(submit_sm("still here")).await, CommandStatus::ESME_ROK);
    assert!(has_metric(&edge, "smsc_edge_sessions_revoked_total 4"));
    // And they cannot come back.
    let mut again = edge.connect().await;
    let resp = again.bind_as(BindKind::Transceiver, "disabled", PASSWORD, 0x34).await;
    assert_ne!(resp.status, CommandStatus::ESME_ROK);
}

/// A bound session follows its account's changes from its next requests: a lower
/// max_submit_rate throttles it without a rebind.
#[tokio::test]
async fn a_bound_session_follows_its_accounts_new_limits() {
    use smsc_accounts::Account;
    use smsc_accounts::AccountConfig;
    let edge = TestEdge::start(Setup::accounts(vec![account(ESME)])).await;
    let mut c = edge.bind(BindKind::Transceiver, ESME).await;
    for _ in 0..5 {
        assert_status(&c.submit(submit_sm("unlimited")).await, CommandStatus::ESME_ROK);
    }
    let slower = AccountConfig { max_submit_rate: 1, ..account(ESME) };
    edge.edge.accounts.replace(vec![Account::from_config(&slower).expect("valid account")]);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(c.submit(submit_sm("one a second")).await.status);
    }
    assert!(statuses.contains(&CommandStatus::ESME_RTHROTTLED), "{statuses:?}");
    assert!(has_metric(&edge, "smsc_edge_sessions_revoked_total 0"), "still admitted");
}
