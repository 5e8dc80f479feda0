use crate::DeliveryState;
use bytes::Bytes;
use smsc_proto as pb;
use tonic::Status;

use super::*;
use crate::contract::{sample_lease, sample_message};
use crate::{
    Address, Applied, BindKind, NotificationKind, Page, PendingNotification, SessionLease,
    SlotClaim, StoreError, StoredMessage, Update, UpstreamEntry, UpstreamLink,
};

fn notification(kind: NotificationKind) -> PendingNotification {
    PendingNotification {
        id: "0001".into(),
        kind,
        message_id: "m-1".into(),
        pdu: Bytes::from_static(b"\x00\x00\x00\x10deliver"),
        created_at: 1_700_000_000_123,
    }
}

/// Every field away from its default, so a field dropped on the way is noticed.
fn full_message() -> StoredMessage {
    StoredMessage {
        service_type: "CMT".into(),
        registered_delivery: 0x11,
        data_coding: 0x08,
        esm_class: 0x40,
        error_code: 0xffff,
        attempts: 7,
        schedule_at: Some(1_700_000_000_500),
        final_at: Some(-1),
        state: DeliveryState::InDelivery,
        source: Address::new(smsc_smpp::Ton(255), smsc_smpp::Npi(255), "SHOP").expect("address"),
        ..sample_message("m-1", 3, "acme")
    }
}

#[test]
fn messages_round_trip() {
    for m in [full_message(), sample_message("m-2", 0, "bank")] {
        assert_eq!(message_from_proto(message_to_proto(m.clone())), Ok(m));
    }
}

#[test]
fn updates_round_trip_with_every_schedule_change() {
    let full = Update {
        state: Some(DeliveryState::Delivered),
        error_code: Some(27),
        attempts: Some(2),
        final_at: Some(1_700_000_000_999),
        payload: Some(Bytes::from_static(b"replaced")),
        data_coding: Some(8),
        registered_delivery: Some(1),
        schedule_at: Some(Some(1_700_000_100_000)),
        expire_at: Some(1_700_086_400_000),
        event: Some(Bytes::from_static(b"\x0a\x01x")),
        first_attempt_at: None,
        connector: None,
    };
    let cases = [
        Update::default(),
        full,
        Update { schedule_at: Some(None), ..Update::default() },
        Update { schedule_at: Some(Some(0)), ..Update::default() },
        Update { payload: Some(Bytes::new()), ..Update::default() },
    ];
    for u in cases {
        assert_eq!(update_from_proto(update_to_proto(u.clone())), Ok(u));
    }
}

#[test]
fn clearing_the_schedule_differs_from_leaving_it_on_the_wire() {
    let clear = update_to_proto(Update { schedule_at: Some(None), ..Update::default() });
    let leave = update_to_proto(Update::default());
    assert_ne!(clear, leave);
    use prost::Message as _;
    let decoded = pb::Update::decode(clear.encode_to_vec().as_slice()).expect("decodes");
    assert_eq!(update_from_proto(decoded).expect("converts").schedule_at, Some(None));
}

#[test]
fn applied_round_trips() {
    for a in [Applied::Yes, Applied::No(None), Applied::No(Some(full_message()))] {
        assert_eq!(applied_from_proto(applied_to_proto(a.clone())), Ok(a));
    }
    let contradiction =
        pb::Applied { applied: true, current: Some(message_to_proto(full_message())) };
    assert_eq!(applied_from_proto(contradiction), Err(ConvertError::AppliedWithRow));
}

#[test]
fn leases_round_trip_with_every_bind_kind() {
    for bind in [BindKind::Transmitter, BindKind::Receiver, BindKind::Transceiver] {
        let lease = SessionLease { bind, ..sample_lease("acme", "edge-0/1") };
        assert_eq!(lease_from_proto(lease_to_proto(lease.clone())), Ok(lease));
    }
    let unset = pb::SessionLease { bind: 0, ..lease_to_proto(sample_lease("a", "s")) };
    assert_eq!(lease_from_proto(unset), Err(ConvertError::UnknownEnum { field: "bind", value: 0 }));
}

#[test]
fn notifications_and_pages_round_trip() {
    for kind in [NotificationKind::Receipt, NotificationKind::Mo, NotificationKind::WebhookReceipt]
    {
        let n = notification(kind);
        assert_eq!(notification_from_proto(notification_to_proto(n.clone())), Ok(n));
    }
    let pages = [
        Page::default(),
        Page {
            items: vec![
                notification(NotificationKind::Mo),
                notification(NotificationKind::Receipt),
            ],
            next: Some("0001".into()),
        },
    ];
    for p in pages {
        assert_eq!(page_from_proto(page_to_proto(p.clone())), Ok(p));
    }
    let unknown = pb::PendingNotification {
        kind: 9,
        ..notification_to_proto(notification(NotificationKind::Mo))
    };
    assert!(matches!(notification_from_proto(unknown), Err(ConvertError::UnknownEnum { .. })));
}

#[test]
fn upstream_entries_and_slot_claims_round_trip() {
    let link = UpstreamLink { message_id: "m-1".into(), dest_index: 7 };
    let receipt = Bytes::from_static(b"\x00\x00\x00\x10receipt");
    let entries = [
        None,
        Some(UpstreamEntry { link: Some(link.clone()), parked_receipt: None }),
        Some(UpstreamEntry { link: None, parked_receipt: Some(receipt.clone()) }),
        Some(UpstreamEntry { link: Some(link), parked_receipt: Some(Bytes::new()) }),
    ];
    for e in entries {
        assert_eq!(upstream_entry_from_proto(upstream_entry_to_proto(e.clone())), Ok(e));
    }
    let found_empty = pb::GetUpstreamEntryResponse { found: true, ..Default::default() };
    assert!(upstream_entry_from_proto(found_empty).is_err());
    let unfound_part = pb::GetUpstreamEntryResponse {
        parked_receipt: Some(receipt.to_vec()),
        ..Default::default()
    };
    assert!(upstream_entry_from_proto(unfound_part).is_err());
    for c in [SlotClaim::Held, SlotClaim::Busy { holder: "worker-1/0".into() }] {
        assert_eq!(slot_claim_from_proto(slot_claim_to_proto(c.clone())), c);
    }
}

#[test]
fn narrowing_rejects_values_that_do_not_fit() {
    let mut m = message_to_proto(full_message());
    m.data_coding = 256;
    assert_eq!(
        message_from_proto(m),
        Err(ConvertError::OutOfRange { field: "data_coding", value: 256 })
    );
    let mut m = message_to_proto(full_message());
    m.source = None;
    assert_eq!(message_from_proto(m), Err(ConvertError::Missing { field: "source" }));
    let u = pb::Update { error_code: Some(70_000), ..pb::Update::default() };
    assert!(matches!(update_from_proto(u), Err(ConvertError::OutOfRange { .. })));
}

#[test]
fn store_errors_survive_the_status_round_trip() {
    let errors = [
        StoreError::unavailable("scylla down"),
        StoreError::unavailable_by("the request failed", std::io::Error::other("node down")),
        StoreError::Timeout,
        StoreError::corrupt("bad row"),
        StoreError::corrupt_by("a row", std::io::Error::other("not UTF-8")),
    ];
    // Only text crosses the wire: the kind and the whole chain of causes.
    let chain = |e: &StoreError| smsc_runtime::telemetry::error_chain(e).to_string();
    for e in errors {
        let back = error_from_status(&error_to_status(&e));
        assert_eq!(chain(&back), chain(&e));
        assert_eq!(std::mem::discriminant(&back), std::mem::discriminant(&e));
    }
    let refused = Status::unavailable("tcp connect error");
    assert!(matches!(error_from_status(&refused), StoreError::Unavailable { .. }));
}
