//! The SMPP stacks aggregators run (jSMPP, Cloudhopper, gosmpp) as ESMEs against
//! `smsc all` in this process: each binds as a transceiver, and as a transmitter plus a
//! receiver, submits GSM, UCS2 and a long concatenated text with receipts requested,
//! matches every receipt to its submit_sm_resp id with its own parser, takes an MO, and
//! rebinds after the SMSC unbinds it (a graceful restart, as in a rolling update).
//! The programs are tests/smpp-peers'; the script they run is in docs/testing.md.

mod esme;
mod node;
mod peers;

use esme::inject_mo;
use node::Node;
use peers::{Ask, EsmeArgs, Mode, Peer, Stack};

/// The account's short code (MO to it reaches the peer).
const SHORT_CODE: &str = "55501";

async fn start(system_id: &str) -> Node {
    Node::start(&format!(
        r#"
node_id: interop-{system_id}
admin_listen: "{{admin}}"
edge:
  smpp_listen: "{{smpp}}"
  grpc_listen: "127.0.0.1:0"
accounts:
  - system_id: {system_id}
    password_hash: "{{hash}}"
routing:
  mo:
    - prefix: "{SHORT_CODE}"
      account: {system_id}
worker:
  pending_interval: 100ms
  simulator_listen: "{{simulator}}"
"#
    ))
    .await
}

async fn esme_against_smsc_all(stack: Stack, mode: Mode) {
    let Some(dir) = peers::peers() else { return };
    let system_id = stack.name();
    let mut smsc = start(system_id).await;
    smsc.ready().await;
    let args = EsmeArgs { smpp: smsc.smpp, rx: None, system_id, mode, short_code: SHORT_CODE };
    let mut peer = Peer::esme(&dir, stack, &args);
    loop {
        match peer.next().await {
            Ask::Mo(text) => {
                assert_eq!(inject_mo(smsc.simulator, SHORT_CODE, &text).await.len(), 1)
            }
            Ask::Unbind => {
                smsc = smsc.restart().await;
                smsc.ready().await;
            }
            Ask::Pass => break,
        }
    }
    peer.finish().await;
    smsc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsmpp_as_a_transceiver() {
    esme_against_smsc_all(Stack::Jsmpp, Mode::Trx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsmpp_as_a_transmitter_and_a_receiver() {
    esme_against_smsc_all(Stack::Jsmpp, Mode::TxRx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudhopper_as_a_transceiver() {
    esme_against_smsc_all(Stack::Cloudhopper, Mode::Trx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudhopper_as_a_transmitter_and_a_receiver() {
    esme_against_smsc_all(Stack::Cloudhopper, Mode::TxRx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gosmpp_as_a_transceiver() {
    esme_against_smsc_all(Stack::Gosmpp, Mode::Trx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gosmpp_as_a_transmitter_and_a_receiver() {
    esme_against_smsc_all(Stack::Gosmpp, Mode::TxRx).await;
}

/// A wrong password reaches each stack's user as ESME_RINVPASWD, for a transceiver and
/// a receiver bind alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_stack_sees_a_wrong_password_refused_as_invalid_password() {
    let Some(dir) = peers::peers() else { return };
    for stack in Stack::ALL {
        // Two failures per account: far from the bind lockout.
        let smsc = start(stack.name()).await;
        smsc.ready().await;
        for mode in [Mode::Trx, Mode::TxRx] {
            let args = EsmeArgs {
                smpp: smsc.smpp,
                rx: None,
                system_id: stack.name(),
                mode,
                short_code: SHORT_CODE,
            };
            Peer::refused_bind(&dir, stack, &args).await;
        }
        smsc.stop().await;
    }
}
