use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use rdkafka::message::{Headers as _, OwnedHeaders};

use super::headers::{decode_not_before, encode_headers, encode_not_before};
use super::{KafkaBusConfig, NOT_BEFORE_HEADER, PARENT_SPAN_HEADER};
use crate::Record;
use crate::config::BusConfig;

#[test]
fn bus_tls_becomes_ssl_settings_of_every_client_and_extra_wins() {
    let text = "brokers: k1:9093\ntls: { ca: /t/ca.crt, cert: /t/user.crt, key: /t/user.key }\n\
                extra: { security.protocol: sasl_ssl, sasl.mechanism: SCRAM-SHA-512 }";
    let bus: BusConfig = serde_yaml::from_str(text).expect("bus section");
    let config = KafkaBusConfig::from_config(&bus, "edge-0");
    for (role, client) in [
        ("producer", config.producer()),
        ("consumer", config.consumer("g")),
        ("admin", config.admin()),
    ] {
        let get = |key| client.get(key).unwrap_or_else(|| panic!("{role}: no {key}"));
        assert_eq!(get("bootstrap.servers"), "k1:9093", "{role}");
        assert_eq!(get("client.id"), "edge-0", "{role}");
        assert_eq!(get("ssl.ca.location"), "/t/ca.crt", "{role}");
        assert_eq!(get("ssl.certificate.location"), "/t/user.crt", "{role}");
        assert_eq!(get("ssl.key.location"), "/t/user.key", "{role}");
        assert_eq!(get("ssl.endpoint.identification.algorithm"), "https", "{role}");
        assert_eq!(get("security.protocol"), "sasl_ssl", "{role}: extra overrides");
        assert_eq!(get("sasl.mechanism"), "SCRAM-SHA-512", "{role}");
    }

    let plain = KafkaBusConfig::from_config(&BusConfig::default(), "n").producer();
    assert_eq!(plain.get("security.protocol"), None);
    let ca_only: BusConfig = serde_yaml::from_str("tls: { ca: /ca.crt }").expect("bus section");
    let ca_only = KafkaBusConfig::from_config(&ca_only, "n").consumer("g");
    assert_eq!(ca_only.get("security.protocol"), Some("ssl"));
    assert_eq!(ca_only.get("ssl.certificate.location"), None);
}

#[test]
fn not_before_round_trips_to_the_nanosecond() {
    for at in [
        UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
        UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
        UNIX_EPOCH + Duration::new(1_700_000_000, 1),
        UNIX_EPOCH,
    ] {
        let text = encode_not_before(at);
        assert_eq!(decode_not_before(text.as_bytes()), Some(at), "{text}");
    }
    assert_eq!(encode_not_before(UNIX_EPOCH + Duration::new(1, 2_500_000)), "1002.500000");
}

#[test]
fn not_before_is_read_as_unix_millis() {
    let ms = |ms| Some(UNIX_EPOCH + Duration::from_millis(ms));
    assert_eq!(decode_not_before(b"1700000000123"), ms(1_700_000_000_123));
    assert_eq!(decode_not_before(b"5.5"), Some(UNIX_EPOCH + Duration::from_micros(5_500)));
    for bad in [&b""[..], b"x", b"-1", b"1.", b"1.1234567", b"1.-2", b"1e3"] {
        assert_eq!(decode_not_before(bad), None, "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn headers_carry_not_before_and_the_parent_span_only_without_traceparent() {
    let mut record = Record::new("k", "v");
    record.headers.push(("a".into(), Bytes::from_static(b"1")));
    record.headers.push((NOT_BEFORE_HEADER.into(), Bytes::from_static(b"forged")));
    record.not_before = Some(UNIX_EPOCH + Duration::from_millis(42));
    let names = |h: &OwnedHeaders| -> Vec<(String, Vec<u8>)> {
        h.iter().map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec())).collect()
    };
    let h = encode_headers(&record, Some(0xab));
    assert_eq!(
        names(&h),
        vec![
            ("a".to_owned(), b"1".to_vec()),
            (NOT_BEFORE_HEADER.to_owned(), b"42".to_vec()),
            (PARENT_SPAN_HEADER.to_owned(), b"00000000000000ab".to_vec()),
        ]
    );
    record.headers.push(("traceparent".into(), Bytes::from_static(b"00-t-s-01")));
    record.not_before = None;
    let h = encode_headers(&record, Some(0xab));
    assert_eq!(names(&h).len(), 2, "traceparent given: no parent span header");
}

#[test]
fn config_overrides_come_last() {
    let mut config = KafkaBusConfig::new("127.0.0.1:9092");
    config.extra.insert("linger.ms".to_owned(), "50".to_owned());
    assert_eq!(config.producer().get("linger.ms"), Some("50"));
    assert_eq!(config.producer().get("acks"), Some("all"));
    assert_eq!(config.consumer("g").get("enable.auto.offset.store"), Some("false"));
    assert_eq!(config.consumer("g").get("session.timeout.ms"), Some("10000"));
    assert_eq!(config.consumer("g").get("heartbeat.interval.ms"), Some("1000"));
}
