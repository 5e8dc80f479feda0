//! The Store contract suite against [`RemoteStore`] → real loopback gRPC →
//! [`StoreServer`] → [`EmbeddedStore`], one test per property, plus the failure modes
//! the client adds (server down, server silent).
//!
//! The server runs in the test process, so its embedded store can share a
//! [`ManualClock`] with the test: the TTL properties move that clock and nothing else
//! ([`ClockOnly`]). Tokio time stays real, because paused time would auto-advance
//! while the client waits on the socket and fire its request timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use smsc_store::contract::{self as store_contract, TimeControl};
use smsc_store::embedded::{EmbeddedStore, EmbeddedStoreConfig};
use smsc_store::remote::{RemoteStore, RemoteStoreConfig, StoreServer};
use smsc_store::{Clock, ManualClock, Store, StoreError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const START_MS: i64 = 1_700_000_000_000;
const MESSAGE_TTL: Duration = Duration::from_secs(3600);

/// Moves the server's clock; no sleeping, as nothing here waits on a tokio timer.
struct ClockOnly(Arc<ManualClock>);

impl TimeControl for ClockOnly {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0.now_ms().unsigned_abs())
    }

    fn advance(&self, by: Duration) -> BoxFuture<'_, ()> {
        self.0.advance(by);
        Box::pin(async {})
    }
}

/// A store server on a free loopback port, stopped when dropped.
struct Served {
    client: Arc<dyn Store>,
    time: ClockOnly,
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn served() -> Served {
    let clock = Arc::new(ManualClock::new(START_MS));
    let config = EmbeddedStoreConfig { message_ttl: MESSAGE_TTL, ..EmbeddedStoreConfig::default() };
    let embedded: Arc<dyn Store> = Arc::new(EmbeddedStore::with_clock(config, clock.clone()));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("bound");
    let stop = CancellationToken::new();
    let shutdown = stop.clone().cancelled_owned();
    tokio::spawn(async move {
        StoreServer::new(embedded).serve(listener, shutdown).await.expect("store server");
    });
    let client = RemoteStore::connect(RemoteStoreConfig::new(addr.to_string()))
        .await
        .expect("connects to the store server");
    Served { client: Arc::new(client), time: ClockOnly(clock), addr, stop }
}

mod contract {
    use super::*;

    #[tokio::test]
    async fn insert_is_if_not_exists() {
        store_contract::insert_is_if_not_exists(&*served().await.client).await;
    }

    #[tokio::test]
    async fn get_message_lists_every_destination() {
        store_contract::get_message_lists_every_destination(&*served().await.client).await;
    }

    #[tokio::test]
    async fn batch_inserts_and_reads_answer_per_message_in_order() {
        let s = served().await;
        store_contract::batch_inserts_and_reads_answer_per_message_in_order(&*s.client).await;
    }

    #[tokio::test]
    async fn transition_applies_only_from_the_stored_state() {
        let s = served().await;
        store_contract::transition_applies_only_from_the_stored_state(&*s.client).await;
    }

    /// On two worker threads, so the racers' calls really overlap on the wire.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_transitions_apply_once() {
        let s = served().await;
        store_contract::concurrent_transitions_apply_once(s.client.clone()).await;
    }

    #[tokio::test]
    async fn messages_expire_after_the_ttl() {
        let s = served().await;
        store_contract::messages_expire_after_the_ttl(&*s.client, &s.time, MESSAGE_TTL).await;
    }

    #[tokio::test]
    async fn leases_expire_unless_refreshed() {
        let s = served().await;
        store_contract::leases_expire_unless_refreshed(&*s.client, &s.time).await;
    }

    #[tokio::test]
    async fn sessions_lists_the_live_leases_of_the_account() {
        let s = served().await;
        store_contract::sessions_lists_the_live_leases_of_the_account(&*s.client, &s.time).await;
    }

    #[tokio::test]
    async fn pending_pages_in_order_after_the_cursor() {
        store_contract::pending_pages_in_order_after_the_cursor(&*served().await.client).await;
    }

    #[tokio::test]
    async fn delete_pending_removes_once() {
        store_contract::delete_pending_removes_once(&*served().await.client).await;
    }

    #[tokio::test]
    async fn upstream_links_and_parked_receipts_merge_and_expire() {
        let s = served().await;
        store_contract::upstream_links_and_parked_receipts_merge_and_expire(&*s.client, &s.time)
            .await;
    }

    #[tokio::test]
    async fn a_bind_slot_has_one_holder_until_released_or_expired() {
        let s = served().await;
        store_contract::a_bind_slot_has_one_holder_until_released_or_expired(&*s.client, &s.time)
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_slot_claims_have_one_winner() {
        let s = served().await;
        store_contract::concurrent_slot_claims_have_one_winner(s.client.clone()).await;
    }

    #[tokio::test]
    async fn a_quota_counter_stops_at_its_limit_and_takes_back() {
        let s = served().await;
        store_contract::a_quota_counter_stops_at_its_limit_and_takes_back(&*s.client, &s.time)
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_quota_takes_never_pass_the_limit() {
        let s = served().await;
        store_contract::concurrent_quota_takes_never_pass_the_limit(s.client.clone()).await;
    }

    #[tokio::test]
    async fn run_all_on_one_server() {
        let s = served().await;
        store_contract::run_all(s.client.clone(), &s.time, MESSAGE_TTL).await;
    }
}

mod failures {
    use super::*;

    fn quick(addr: impl Into<String>) -> RemoteStoreConfig {
        RemoteStoreConfig {
            request_timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_millis(500),
            ..RemoteStoreConfig::new(addr)
        }
    }

    #[tokio::test]
    async fn connect_to_nothing_is_unavailable() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("bound")
        };
        let e = RemoteStore::connect(quick(addr.to_string())).await.expect_err("nothing listens");
        assert!(matches!(e, StoreError::Unavailable { .. }), "{e:?}");
    }

    #[tokio::test]
    async fn a_stopped_server_makes_calls_unavailable() {
        let s = served().await;
        assert!(s.client.get_message("m").await.expect("served").is_empty());
        let (client, addr) = (s.client.clone(), s.addr);
        drop(s);
        // The server closes its connections once it has stopped; until then a call may
        // still be answered.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match client.get_message("m").await {
                Err(StoreError::Unavailable { .. }) => break,
                Ok(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => panic!("after the server at {addr} stopped: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        // Accepts TCP and never speaks HTTP/2: the call must not hang.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("bound");
        let held = tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((c, _)) = listener.accept().await {
                conns.push(c);
            }
        });
        let client = RemoteStore::connect_lazy(quick(addr.to_string())).expect("valid endpoint");
        let started = tokio::time::Instant::now();
        let e = client.get_message("m").await.expect_err("no answer");
        assert!(matches!(e, StoreError::Timeout), "{e:?}");
        assert!(started.elapsed() < Duration::from_secs(3), "bounded by the request timeout");
        held.abort();
    }
}

/// The coalescing of insert/get/transition into `Batch` calls.
mod batching {
    use super::*;
    use smsc_proto as pb;
    use smsc_store::DeliveryState;
    use smsc_store::contract::sample_message;
    use smsc_store::{Applied, Update};

    /// Hundreds of concurrent calls (they share batches) each get their own answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_calls_each_get_their_own_answer() {
        let s = served().await;
        let ids: Vec<String> = (0..600).map(|i| format!("m-{i}")).collect();
        let inserts = ids.iter().map(|id| s.client.insert_message(sample_message(id, 0, "bank")));
        for applied in futures::future::join_all(inserts).await {
            assert_eq!(applied.expect("insert"), Applied::Yes);
        }
        // Every other message moves; a repeated insert is refused with its own row.
        let update = Update { state: Some(DeliveryState::Delivered), ..Update::default() };
        let moves = ids.iter().enumerate().map(|(i, id)| {
            let from = if i % 2 == 0 { DeliveryState::Enroute } else { DeliveryState::Rejected };
            s.client.transition(id, 0, from, update.clone())
        });
        let again = ids.iter().map(|id| s.client.insert_message(sample_message(id, 0, "other")));
        let (moved, again) = futures::future::join(
            futures::future::join_all(moves),
            futures::future::join_all(again),
        )
        .await;
        for (i, applied) in moved.into_iter().enumerate() {
            assert_eq!(applied.expect("transition").applied(), i % 2 == 0, "message {i}");
        }
        for (id, applied) in ids.iter().zip(again) {
            match applied.expect("insert again") {
                Applied::No(Some(row)) => {
                    assert_eq!((&row.message_id, &*row.system_id), (id, "bank"))
                }
                other => panic!("{id}: {other:?}"),
            }
        }
        let rows = futures::future::join_all(ids.iter().map(|id| s.client.get_message(id))).await;
        for (i, rows) in rows.into_iter().enumerate() {
            let rows = rows.expect("get");
            assert_eq!(rows.len(), 1);
            assert_eq!(rows[0].message_id, ids[i]);
            let want = if i % 2 == 0 { DeliveryState::Delivered } else { DeliveryState::Enroute };
            assert_eq!(rows[0].state, want, "message {i}");
        }
    }

    /// A malformed op fails alone: the ops around it in the same batch are answered.
    #[tokio::test]
    async fn a_bad_op_fails_alone() {
        let s = served().await;
        let mut raw =
            pb::store_service_client::StoreServiceClient::connect(format!("http://{}", s.addr))
                .await
                .expect("connect");
        let message = smsc_store::remote::message_to_proto(sample_message("m-1", 0, "bank"));
        let ops = vec![
            pb::batch_op::Op::InsertMessage(pb::InsertMessageRequest { message: Some(message) }),
            // No update: InvalidArgument.
            pb::batch_op::Op::Transition(pb::TransitionRequest {
                message_id: "m-1".into(),
                dest_index: 0,
                from: 2,
                update: None,
            }),
            pb::batch_op::Op::GetMessage(pb::GetMessageRequest { message_id: "m-1".into() }),
        ];
        let ops = ops
            .into_iter()
            .map(|op| pb::BatchOp { op: Some(op) })
            .chain([pb::BatchOp { op: None }]);
        let reply =
            raw.batch(pb::BatchRequest { ops: ops.collect() }).await.expect("batch").into_inner();
        use pb::batch_result::Result as R;
        let results: Vec<_> =
            reply.results.into_iter().map(|r| r.result.expect("result")).collect();
        assert_eq!(results.len(), 4);
        assert!(matches!(&results[0], R::Applied(a) if a.applied), "{:?}", results[0]);
        assert!(
            matches!(&results[1], R::Error(e) if e.code == tonic::Code::InvalidArgument as i32),
            "{:?}",
            results[1]
        );
        assert!(matches!(&results[2], R::Rows(r) if r.rows.len() == 1), "{:?}", results[2]);
        assert!(matches!(&results[3], R::Error(_)), "{:?}", results[3]);
    }
}
