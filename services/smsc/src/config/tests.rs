use std::time::Duration;

use ipnet::IpNet;
use smsc_accounts::AccountDirectory;
use smsc_accounts::testing::SECRET_HASH as HASH;
use smsc_bus::BusKind;
use smsc_delivery_worker::config::{ReceiptIdFormat, UpstreamBindMode};
use smsc_edge::config::{LockoutConfig, RebalanceConfig};
use smsc_runtime::config::ClientTls;
use smsc_store::BindKind;

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn parse(text: &str, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_yaml_str(text, env(pairs))
}

/// The full chain, as the binary prints it.
fn chain(e: &ConfigError) -> String {
    smsc_runtime::telemetry::error_chain(e).to_string()
}

#[test]
fn empty_file_is_all_defaults() {
    let c = parse("", &[("POD_NAME", "edge-7")]).expect("empty config is valid");
    assert_eq!(c.node_id, "edge-7");
    assert_eq!(c.admin_listen, "127.0.0.1:9090".parse().expect("addr"));
    assert_eq!(c.edge, EdgeConfig::default());
    assert_eq!(c.edge.inactivity_timeout, Duration::from_secs(300));
    assert_eq!(c.edge.advertised_grpc_addr(), "127.0.0.1:50051");
    assert_eq!(c.edge.max_connections_per_ip, 100);
    assert_eq!(c.edge.pdu_read_timeout, Duration::from_secs(10));
    assert_eq!(
        (c.edge.lockout.max_failures, c.edge.lockout.window, c.edge.lockout.duration),
        (5, Duration::from_secs(300), Duration::from_secs(900))
    );
    assert_eq!(c.edge.lockout.max_entries, 100_000);
    assert_eq!(c.grpc_tls, None);
    assert!(c.accounts.is_empty());
    assert_eq!(
        c.bus,
        BusConfig {
            kind: BusKind::Embedded,
            partitions: 8,
            max_lag: 100_000,
            ..BusConfig::default()
        }
    );
    assert_eq!(c.store.message_ttl, Duration::from_secs(72 * 3600));
    assert!(c.accounts_source().is_none());
}

#[test]
fn node_id_falls_back_to_hostname() {
    let c = parse("", &[("HOSTNAME", "box-1")]).expect("valid");
    assert_eq!(c.node_id, "box-1");
    let c = parse("node_id: n1", &[("POD_NAME", "edge-7")]).expect("valid");
    assert_eq!(c.node_id, "n1");
    assert!(!parse("", &[]).expect("valid").node_id.is_empty());
}

#[test]
fn full_file_parses() {
    let text = format!(
        r#"
node_id: edge-1
admin_listen: 0.0.0.0:9091
edge:
  smpp_listen: 0.0.0.0:2775
  tls: {{ listen: 0.0.0.0:2776, cert: /c.pem, key: /k.pem }}
  grpc_listen: 0.0.0.0:50051
  grpc_advertise: edge-1.edge:50051
  session_init_timeout: 5s
  enquire_link_interval: 1m
  inactivity_timeout: 10m
  response_timeout: 3s
  max_command_length: 4096
  drain_timeout: 30s
  max_connections: 100
  max_connections_per_ip: 20
  pdu_read_timeout: 3s
  lockout: {{ max_failures: 3, window: 1m, duration: 1h, max_entries: 1000 }}
  session_lease_ttl: 15s
  deliver_queue_wait: 500ms
grpc_tls: {{ ca: /tls/ca.crt, cert: /tls/tls.crt, key: /tls/tls.key, server_name: smsc.internal }}
accounts:
  - system_id: bank
    password_hash: "{HASH}"
    bind_types: [transmitter]
    max_binds: 2
    window: 10
    max_submit_rate: 50
    source_addresses: ["BANK", "4470??"]
    allowed_cidrs: ["10.0.0.0/8", "192.168.1.5"]
    enabled: false
    default_validity: 1h
    max_validity: 2h
bus: {{ kind: embedded, partitions: 4, max_lag: 10, tls: {{ ca: /k/ca.crt }} }}
store: {{ kind: embedded, message_ttl: 24h, auth: {{ username: smsc, password_file: /s/pw }}, tls: {{ ca: /s/ca.crt }} }}
"#
    );
    let c = parse(&text, &[]).expect("valid");
    assert_eq!(c.edge.tls.as_ref().map(|t| t.cert.as_path()), Some(Path::new("/c.pem")));
    assert_eq!(c.edge.enquire_link_interval, Duration::from_secs(60));
    assert_eq!(c.edge.advertised_grpc_addr(), "edge-1.edge:50051");
    assert_eq!(c.edge.max_connections_per_ip, 20);
    assert_eq!(c.edge.pdu_read_timeout, Duration::from_secs(3));
    assert_eq!(c.edge.deliver_queue_wait, Duration::from_millis(500));
    assert_eq!(
        c.edge.lockout,
        LockoutConfig {
            max_failures: 3,
            window: Duration::from_secs(60),
            duration: Duration::from_secs(3600),
            max_entries: 1000,
        }
    );
    let tls = c.grpc_tls.as_ref().expect("grpc_tls");
    assert_eq!(
        (tls.ca.as_path(), tls.cert.as_path(), tls.key.as_path()),
        (Path::new("/tls/ca.crt"), Path::new("/tls/tls.crt"), Path::new("/tls/tls.key"))
    );
    assert_eq!(tls.server_name.as_deref(), Some("smsc.internal"));
    let a = &c.accounts[0];
    assert_eq!(a.bind_types, vec![BindKind::Transmitter]);
    assert_eq!(a.allowed_cidrs[1], "192.168.1.5/32".parse::<IpNet>().expect("net"));
    assert!(!a.enabled);
    assert_eq!(a.max_validity, Duration::from_secs(7200));
    assert_eq!(c.bus.partitions, 4);
    assert_eq!(
        c.bus.tls,
        Some(ClientTls { ca: PathBuf::from("/k/ca.crt"), cert: None, key: None })
    );
    let auth = c.store.auth.as_ref().expect("store.auth");
    assert_eq!(
        (auth.username.as_str(), auth.password_file.as_path()),
        ("smsc", Path::new("/s/pw"))
    );
    assert_eq!(c.store.tls.as_ref().map(|t| t.ca.as_path()), Some(Path::new("/s/ca.crt")));
}

#[test]
fn account_defaults() {
    let c = parse(&format!("accounts: [{{system_id: a, password_hash: '{HASH}'}}]"), &[])
        .expect("valid");
    let a = &c.accounts[0];
    assert_eq!(a.bind_types.len(), 3);
    assert_eq!((a.max_binds, a.window, a.max_submit_rate), (8, 64, 0));
    assert_eq!(a.source_addresses, vec!["*"]);
    assert_eq!(a.allowed_cidrs.len(), 2);
    assert!(a.enabled);
    assert_eq!(a.default_validity, Duration::from_secs(48 * 3600));
}

#[test]
fn env_overrides_set_nested_keys() {
    let c = parse(
        "edge: { smpp_listen: 127.0.0.1:1 }",
        &[
            ("SMSC_EDGE__SMPP_LISTEN", "0.0.0.0:2775"),
            ("SMSC_ADMIN_LISTEN", "0.0.0.0:9999"),
            ("SMSC_EDGE__ENQUIRE_LINK_INTERVAL", "45s"),
            ("SMSC_EDGE__TLS__CERT", "/c.pem"),
            ("SMSC_EDGE__TLS__KEY", "/k.pem"),
            ("SMSC_BUS__PARTITIONS", "16"),
            ("SMSC_CONFIG", "/etc/smsc.yaml"),
            ("SMSC_LOG_JSON", "true"),
            ("OTHER", "ignored"),
        ],
    )
    .expect("valid");
    assert_eq!(c.edge.smpp_listen, "0.0.0.0:2775".parse().expect("addr"));
    assert_eq!(c.admin_listen, "0.0.0.0:9999".parse().expect("addr"));
    assert_eq!(c.edge.enquire_link_interval, Duration::from_secs(45));
    assert_eq!(
        c.edge.tls.as_ref().map(|t| t.listen),
        Some("127.0.0.1:2776".parse().expect("addr"))
    );
    assert_eq!(c.bus.partitions, 16);
}

#[test]
fn env_overrides_reach_into_lists_and_coerce_to_strings() {
    let text = format!("accounts: [{{system_id: a, password_hash: '{HASH}'}}]");
    let c = parse(
        &text,
        &[
            ("SMSC_ACCOUNTS__0__WINDOW", "128"),
            ("SMSC_ACCOUNTS__0__BIND_TYPES", "[receiver]"),
            ("SMSC_ACCOUNTS__1__SYSTEM_ID", "12345"),
            ("SMSC_ACCOUNTS__1__PASSWORD_HASH", HASH),
            ("SMSC_NODE_ID", "42"),
        ],
    )
    .expect("valid");
    assert_eq!(c.accounts[0].window, 128);
    assert_eq!(c.accounts[0].bind_types, vec![BindKind::Receiver]);
    assert_eq!(c.accounts[1].system_id, "12345");
    assert_eq!(c.node_id, "42");

    // No `accounts` in the file: an index makes the list.
    let c = parse(
        "",
        &[("SMSC_ACCOUNTS__0__SYSTEM_ID", "env"), ("SMSC_ACCOUNTS__0__PASSWORD_HASH", HASH)],
    )
    .expect("valid");
    assert_eq!(c.accounts[0].system_id, "env");
}

#[test]
fn bad_override_names_the_variable_and_key() {
    let e = parse("", &[("SMSC_EDGE__SMPP_LISTEN", "nowhere")]).expect_err("bad addr");
    assert!(
        matches!(&e, ConfigError::Value { key, env_var: Some(v), .. }
                if key == "edge.smpp_listen" && v == "SMSC_EDGE__SMPP_LISTEN"),
        "{e:?}"
    );
    assert!(chain(&e).contains("invalid socket address"), "{}", chain(&e));

    let e = parse("", &[("SMSC_EDGE__NOPE", "1")]).expect_err("unknown key");
    assert!(chain(&e).contains("unknown field `nope`"), "{}", chain(&e));
    assert!(chain(&e).contains("SMSC_EDGE__NOPE"), "{}", chain(&e));

    let e = parse("", &[("SMSC_EDGE__", "1")]).expect_err("empty segment");
    assert!(matches!(&e, ConfigError::Override { var, .. } if var == "SMSC_EDGE__"));

    let e = parse("admin_listen: 127.0.0.1:1", &[("SMSC_ADMIN_LISTEN__X", "1")])
        .expect_err("into a scalar");
    assert!(matches!(e, ConfigError::Override { .. }), "{e:?}");
    let e = parse("", &[("SMSC_ADMIN_LISTEN__X", "1")]).expect_err("scalar made a map");
    assert!(
        matches!(&e, ConfigError::Value { key, env_var: Some(v), .. }
                if key == "admin_listen" && v == "SMSC_ADMIN_LISTEN__X"),
        "{e:?}"
    );

    let e = parse("", &[("SMSC_ACCOUNTS__1__WINDOW", "1")]).expect_err("gap in list");
    assert!(matches!(e, ConfigError::Override { .. }), "{e:?}");

    let e = parse("", &[("SMSC_EDGE__MAX_CONNECTIONS", "[1")]).expect_err("bad yaml");
    assert!(matches!(e, ConfigError::Override { .. }), "{e:?}");

    let e = parse("", &[("SMSC_EDGE__INACTIVITY_TIMEOUT", "10s")]).expect_err("rule");
    assert!(
        matches!(&e, ConfigError::Invalid { key, env_var: Some(_), .. }
                if key == "edge.inactivity_timeout"),
        "{e:?}"
    );
}

#[test]
fn file_errors_name_the_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("edge: { smpp_lisen: x }", "edge", "unknown field `smpp_lisen`"),
        ("nope: 1", "nope", "unknown field `nope`"),
        ("edge: { response_timeout: 10 }", "edge.response_timeout", "expected a duration like"),
        ("edge: { response_timeout: 10 parsecs }", "edge.response_timeout", "unknown time unit"),
        ("bus: { kind: rabbitmq }", "bus.kind", "unknown variant `rabbitmq`"),
        ("edge: { max_connections: -1 }", "edge.max_connections", "invalid value"),
        (
            "accounts: [{system_id: a, password_hash: x, allowed_cidrs: [10.0.0.0/33]}]",
            "accounts[0].allowed_cidrs",
            "`10.0.0.0/33` is neither",
        ),
        ("accounts: [{system_id: a}]", "accounts[0]", "missing field `password_hash`"),
        (
            "accounts: [{system_id: a, password_hash: x, bind_types: [outbind]}]",
            "accounts[0].bind_types[0]",
            "unknown variant",
        ),
    ];
    for (text, key, reason) in cases {
        let e = parse(text, &[]).expect_err(text);
        let ConfigError::Value { key: got, env_var: None, .. } = &e else {
            panic!("{text}: {e:?}");
        };
        assert!(got.starts_with(key), "{text}: key {got}");
        assert!(chain(&e).contains(reason), "{text}: {}", chain(&e));
    }
}

#[test]
fn rules_are_checked() {
    let cases: &[(&str, &str)] = &[
        ("edge: { max_connections: 0 }", "edge.max_connections"),
        ("edge: { max_connections_per_ip: 0 }", "edge.max_connections_per_ip"),
        ("edge: { pdu_read_timeout: 0s }", "edge.pdu_read_timeout"),
        ("edge: { lockout: { window: 0s } }", "edge.lockout.window"),
        ("edge: { lockout: { duration: 0s } }", "edge.lockout.duration"),
        ("edge: { lockout: { max_entries: 0 } }", "edge.lockout.max_entries"),
        ("grpc_tls: { ca: '', cert: /c, key: /k }", "grpc_tls.ca"),
        ("bus: { tls: { ca: '' } }", "bus.tls.ca"),
        ("bus: { tls: { ca: /ca.crt, cert: /c.crt } }", "bus.tls.key"),
        ("bus: { tls: { ca: /ca.crt, key: /c.key } }", "bus.tls.cert"),
        ("store: { tls: { ca: /ca.crt, cert: /c.crt } }", "store.tls.key"),
        ("store: { auth: { username: '', password_file: /p } }", "store.auth.username"),
        ("store: { auth: { username: u, password_file: '' } }", "store.auth.password_file"),
        ("edge: { response_timeout: 0s }", "edge.response_timeout"),
        ("edge: { deliver_queue_wait: 25s }", "edge.deliver_queue_wait"),
        ("edge: { max_command_length: 15 }", "edge.max_command_length"),
        ("edge: { grpc_advertise: 'nohost' }", "edge.grpc_advertise"),
        ("edge: { grpc_listen: '127.0.0.1:2775' }", "edge.grpc_listen"),
        ("edge: { grpc_listen: '0.0.0.0:9090' }", "edge.grpc_listen"),
        ("bus: { partitions: 0 }", "bus.partitions"),
        ("bus: { topic_prefix: 'blue/sms' }", "bus.topic_prefix"),
        ("bus: { topic_prefix: '' }", "bus.topic_prefix"),
        ("bus: { group_prefix: 'blue sms' }", "bus.group_prefix"),
        ("node_id: 'has space'", "node_id"),
        ("[1, 2]", "."),
    ];
    for (text, key) in cases {
        let e = parse(text, &[]).expect_err(text);
        assert!(matches!(&e, ConfigError::Invalid { key: k, .. } if k == key), "{text}: {e:?}");
    }
    let e = parse("edge: {", &[]).expect_err("syntax");
    assert!(matches!(e, ConfigError::Syntax { .. }), "{e:?}");
}

#[test]
fn accounts_crd_and_rebalancing() {
    let c = parse("", &[]).expect("defaults");
    assert_eq!((c.accounts_crd, c.edge.peers), (None, None));
    assert_eq!(c.edge.rebalance, RebalanceConfig::default());

    let c = parse(
        "accounts_crd: {}\nedge: { peers: { dns: smsc-edge-peers.smsc.svc } }",
        &[("SMSC_EDGE__REBALANCE__MAX_SHED_PER_INTERVAL", "2")],
    )
    .expect("valid");
    let crd = c.accounts_crd.clone().expect("accounts_crd");
    assert_eq!(crd.status_interval, Duration::from_secs(10));
    assert_eq!(crd.namespace, None);
    assert!(c.accounts_source().is_none(), "no file reload replaces CRD accounts");
    let peers = c.edge.peers.expect("peers");
    assert_eq!(peers.dns.as_deref(), Some("smsc-edge-peers.smsc.svc"));
    assert_eq!(c.edge.rebalance.max_shed_per_interval, 2);
    assert_eq!(c.edge.rebalance.interval, Duration::from_secs(15));

    let c = parse(
        "accounts_crd: { namespace: smsc, secret_selector: a=b, status_interval: 30s }\n\
             edge: { peers: { admin: ['127.0.0.1:9091'] }, rebalance: { interval: 1s, slack: 0 } }",
        &[],
    )
    .expect("valid");
    assert_eq!(c.accounts_crd.expect("crd").namespace.as_deref(), Some("smsc"));
    assert_eq!(c.edge.rebalance.slack, 0);
    let c = parse("edge: { peers: { service: smsc-edge-smpp } }", &[]).expect("valid");
    assert_eq!(c.edge.peers.expect("peers").service.as_deref(), Some("smsc-edge-smpp"));

    for (text, key) in [
        (
            format!("accounts_crd: {{}}\naccounts: [{{system_id: a, password_hash: '{HASH}'}}]"),
            "accounts_crd",
        ),
        ("accounts_crd: { status_interval: 0s }".to_owned(), "accounts_crd.status_interval"),
        ("accounts_crd: { namespace: '' }".to_owned(), "accounts_crd.namespace"),
        ("edge: { peers: {} }".to_owned(), "edge.peers"),
        ("edge: { peers: { dns: a, admin: ['b:1'] } }".to_owned(), "edge.peers"),
        ("edge: { peers: { dns: ' ' } }".to_owned(), "edge.peers.dns"),
        ("edge: { peers: { service: '' } }".to_owned(), "edge.peers.service"),
        ("edge: { peers: { dns: a, service: b } }".to_owned(), "edge.peers"),
        (
            "edge: { peers: { dns: a }, rebalance: { interval: 0s } }".to_owned(),
            "edge.rebalance.interval",
        ),
    ] {
        let e = parse(&text, &[]).expect_err(&text);
        assert!(matches!(&e, ConfigError::Invalid { key: k, .. } if k == key), "{text}: {e:?}");
    }
    let e = parse("accounts_crd: { bogus: 1 }", &[]).expect_err("unknown key");
    assert!(chain(&e).contains("accounts_crd"), "{}", chain(&e));
}

#[test]
fn pod_deletion_cost() {
    assert_eq!(parse("", &[]).expect("defaults").edge.pod_deletion_cost, None, "off by default");
    let c = parse("edge: { pod_deletion_cost: {} }", &[]).expect("valid");
    let cost = c.edge.pod_deletion_cost.expect("on");
    assert_eq!(cost.interval, Duration::from_secs(10));
    let c = parse("edge: { pod_deletion_cost: { interval: 30s } }", &[]).expect("valid");
    assert_eq!(c.edge.pod_deletion_cost.expect("on").interval, Duration::from_secs(30));
    let e = parse("edge: { pod_deletion_cost: { interval: 0s } }", &[]).expect_err("0s");
    assert!(
        matches!(&e, ConfigError::Invalid { key, .. } if key == "edge.pod_deletion_cost.interval"),
        "{e:?}"
    );
    let e = parse("edge: { pod_deletion_cost: { bogus: 1 } }", &[]).expect_err("unknown key");
    assert!(chain(&e).contains("pod_deletion_cost"), "{}", chain(&e));
}

#[test]
fn edge_lockout_off_and_overrides() {
    let c = parse("edge: { lockout: { max_failures: 0, window: 0s, duration: 0s } }", &[])
        .expect("a lockout that is off needs no durations");
    assert_eq!(c.edge.lockout.max_failures, 0);
    let c = parse(
        "",
        &[
            ("SMSC_EDGE__LOCKOUT__MAX_FAILURES", "10"),
            ("SMSC_EDGE__LOCKOUT__DURATION", "1h"),
            ("SMSC_EDGE__MAX_CONNECTIONS_PER_IP", "7"),
            ("SMSC_GRPC_TLS", "{ca: /s/ca.crt, cert: /s/tls.crt, key: /s/tls.key}"),
        ],
    )
    .expect("valid");
    assert_eq!(c.edge.lockout.max_failures, 10);
    assert_eq!(c.edge.lockout.duration, Duration::from_secs(3600));
    assert_eq!(c.edge.lockout.window, Duration::from_secs(300));
    assert_eq!(c.edge.max_connections_per_ip, 7);
    let tls = c.grpc_tls.expect("grpc_tls from the environment");
    assert_eq!(tls.key, Path::new("/s/tls.key"));
    assert_eq!(tls.server_name, None);
    let e = parse("grpc_tls: { ca: /a, cert: /b }", &[]).expect_err("no key");
    assert!(chain(&e).contains("missing field `key`"), "{}", chain(&e));
}

#[test]
fn account_rules_name_the_entry() {
    let long = format!(
        "accounts: [{{system_id: a, password_hash: '{HASH}'}}, \
             {{system_id: b, password_hash: '{HASH}', max_validity: 100h}}]"
    );
    let e = parse(&long, &[]).expect_err("validity past ttl");
    assert!(
        matches!(&e, ConfigError::Account { key, system_id, .. } if key == "accounts[1]" && system_id == "b"),
        "{e:?}"
    );
    assert!(chain(&e).contains("max_validity"), "{}", chain(&e));

    let dup = format!(
        "accounts: [{{system_id: a, password_hash: '{HASH}'}}, \
             {{system_id: a, password_hash: '{HASH}'}}]"
    );
    let e = parse(&dup, &[]).expect_err("duplicate");
    assert!(chain(&e).contains("accounts[1]") && chain(&e).contains("accounts[0]"), "{e}");

    let e = parse("accounts: [{system_id: a, password_hash: 'plain'}]", &[]).expect_err("hash");
    assert!(chain(&e).contains("password_hash"), "{}", chain(&e));
    assert!(!chain(&e).contains("plain"), "{}", chain(&e));
}

#[test]
fn smpp_upstream_connectors_parse_with_defaults_and_checks() {
    let text = r#"
connectors:
  up:
    kind: smpp
    address: smsc.example.net:2775
    system_id: acme
    password: s3cret
  pair:
    kind: smpp
    address: 10.0.0.9:3550
    system_id: acme2
    password: pw
    system_type: VMA
    bind: transmitter_receiver
    max_binds: 6
    binds_per_worker: 2
    window: 50
    rate: 200
    enquire_link_interval: 15s
    response_timeout: 5s
    receipt_id: hex_submit_decimal_receipt
    tls: { ca: /etc/ssl/certs/ca-certificates.crt, server_name: smsc.example.net }
"#;
    let c = parse(text, &[("SMSC_CONNECTORS__UP__PASSWORD", "fromenv")]).expect("valid");
    let Some(ConnectorConfig::Smpp(up)) = c.connectors.get("up") else { panic!("smpp") };
    assert_eq!(up.password, "fromenv");
    assert_eq!((up.bind, up.max_binds, up.binds_per_worker), (UpstreamBindMode::Transceiver, 1, 1));
    assert_eq!((up.window, up.rate, up.slots()), (10, 0, 1));
    assert_eq!(up.response_timeout, Duration::from_secs(10));
    assert_eq!(up.receipt_id, ReceiptIdFormat::Auto);
    assert_eq!(up.tls, None);
    assert!(!format!("{up:?}").contains("fromenv"), "password redacted");
    let Some(ConnectorConfig::Smpp(pair)) = c.connectors.get("pair") else { panic!("smpp") };
    assert_eq!((pair.slots(), pair.binds_per_slot(), pair.rate), (3, 2, 200));
    assert_eq!(pair.receipt_id, ReceiptIdFormat::HexSubmitDecimalReceipt);
    assert_eq!(pair.tls.as_ref().and_then(|t| t.server_name.as_deref()), Some("smsc.example.net"));

    let base = "connectors:\n  up:\n    kind: smpp\n    address: h:2775\n    system_id: a\n    password: p\n";
    for (extra, key) in [
        ("    max_binds: 1\n    bind: transmitter_receiver\n", "connectors.up.max_binds"),
        ("    window: 0\n", "connectors.up.window"),
        ("    lease_ttl: 1s\n", "connectors.up.lease_ttl"),
        ("    reconnect_min: 5s\n    reconnect_max: 1s\n", "connectors.up.reconnect_max"),
    ] {
        let e = parse(&format!("{base}{extra}"), &[]).expect_err(extra);
        assert!(chain(&e).starts_with(key), "{}", chain(&e));
    }
    let bad = base.replace("h:2775", "nohost");
    assert!(chain(&parse(&bad, &[]).expect_err("address")).starts_with("connectors.up.address"));
    let bad = base.replace("password: p", "password: ninechars");
    assert!(chain(&parse(&bad, &[]).expect_err("pw")).starts_with("connectors.up.password"));
    let e = parse(&format!("{base}    colour: red\n"), &[]).expect_err("unknown key");
    assert!(chain(&e).contains("colour"), "{}", chain(&e));
}

#[test]
fn debug_redacts_password_hashes() {
    let c = parse(&format!("accounts: [{{system_id: a, password_hash: '{HASH}'}}]"), &[])
        .expect("valid");
    let debug = format!("{c:?}");
    assert!(debug.contains("system_id: \"a\""), "{debug}");
    assert!(!debug.contains("argon2"), "{debug}");
    assert!(!debug.contains("WJEFL8Nn"), "{debug}");
}

#[test]
fn loads_files_and_resolves_accounts_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("smsc.yaml");
    std::fs::write(&config_path, "accounts_file: accounts.yaml\n").expect("write");
    std::fs::write(
        dir.path().join("accounts.yaml"),
        format!("accounts:\n  - system_id: a\n    password_hash: '{HASH}'\n"),
    )
    .expect("write");
    let c = Config::load_with_env(Some(&config_path), env(&[])).expect("valid");
    assert_eq!(c.accounts.len(), 1);
    assert_eq!(c.path.as_deref(), Some(config_path.as_path()));
    assert!(matches!(
        c.accounts_source(),
        Some(AccountsSource::AccountsFile { path, max_validity_cap })
            if path == dir.path().join("accounts.yaml")
                && max_validity_cap == Duration::from_secs(72 * 3600)
    ));

    std::fs::write(
        &config_path,
        format!(
            "accounts_file: accounts.yaml\naccounts: [{{system_id: b, password_hash: '{HASH}'}}]\n"
        ),
    )
    .expect("write");
    let e = Config::load_with_env(Some(&config_path), env(&[])).expect_err("both");
    assert!(matches!(&e, ConfigError::Invalid { key, .. } if key == "accounts_file"), "{e:?}");

    std::fs::write(dir.path().join("accounts.yaml"), "accounts: [{system_id: a}]\n")
        .expect("write");
    std::fs::write(&config_path, "accounts_file: accounts.yaml\n").expect("write");
    let e = Config::load_with_env(Some(&config_path), env(&[])).expect_err("bad accounts");
    assert!(chain(&e).contains("accounts.yaml: accounts[0]"), "{}", chain(&e));

    let missing = dir.path().join("missing.yaml");
    let e = Config::load_with_env(Some(&missing), env(&[])).expect_err("missing");
    assert!(matches!(e, ConfigError::Read { .. }), "{e:?}");
}

fn accounts_yaml(ids: &[&str]) -> String {
    let mut text = String::from("accounts:\n");
    for id in ids {
        text.push_str(&format!("  - system_id: {id}\n    password_hash: '{HASH}'\n"));
    }
    text
}

/// Replaces the file the way a ConfigMap update or an editor does: write aside, rename.
fn swap_in(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// The accounts watcher rereads the whole config file through the binary's loader.
#[test]
fn reload_from_the_config_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("smsc.yaml");
    swap_in(&path, &accounts_yaml(&["a"]));
    let config = Config::load_with_env(Some(&path), Vec::new()).expect("valid");
    let source = config.accounts_source().expect("has a file");
    assert!(matches!(&source, AccountsSource::ConfigFile { path: p, .. } if *p == path));
    let dir =
        AccountDirectory::from_config(&config.accounts, config.store.message_ttl).expect("valid");
    assert_eq!(dir.len(), 1);

    swap_in(&path, &format!("{}admin_listen: 127.0.0.1:9\n", accounts_yaml(&["a", "b"])));
    assert_eq!(dir.reload_now(&source).expect("good"), 2);

    swap_in(&path, &format!("{}edge: {{ bogus: 1 }}\n", accounts_yaml(&["z"])));
    assert!(dir.reload_now(&source).is_err());
    assert!(dir.get("b").is_some() && dir.get("z").is_none());
}

#[test]
fn a_webhook_url_must_be_plain_http_with_a_host() {
    let yaml = |url: &str| format!("connectors: {{ hook: {{ kind: webhook, url: '{url}' }} }}");
    parse(&yaml("http://127.0.0.1:8080/sms"), &[]).expect("plain http is valid");
    for url in ["not a url", "https://sms.example.com/in", "/sms", "ftp://example.com/x"] {
        let e = parse(&yaml(url), &[]).expect_err(url);
        assert!(
            matches!(&e, ConfigError::Invalid { key, .. } if key == "connectors.hook.url"),
            "{url}: {e:?}"
        );
    }
    let e =
        parse("", &[("SMSC_CONNECTORS__HOOK", "{kind: webhook, url: 'x y'}")]).expect_err("env");
    assert!(chain(&e).contains("SMSC_CONNECTORS__HOOK"), "{}", chain(&e));
}

#[test]
fn proxy_protocol_trusted_cidrs_are_parsed_and_a_bad_one_is_named() {
    let c = parse("", &[]).expect("valid");
    assert!(c.edge.proxy_protocol.trusted_cidrs.is_empty(), "off by default");
    let c = parse(
        "edge: { proxy_protocol: { trusted_cidrs: [10.1.2.3/8, 192.0.2.1, '2001:db8::/32'] } }",
        &[],
    )
    .expect("valid");
    let nets: Vec<String> =
        c.edge.proxy_protocol.trusted_cidrs.iter().map(|n| n.to_string()).collect();
    assert_eq!(nets, ["10.0.0.0/8", "192.0.2.1/32", "2001:db8::/32"]);
    let c = parse("", &[("SMSC_EDGE__PROXY_PROTOCOL__TRUSTED_CIDRS", "[172.16.0.0/12]")])
        .expect("valid");
    assert_eq!(
        c.edge.proxy_protocol.trusted_cidrs,
        ["172.16.0.0/12".parse::<IpNet>().expect("net")]
    );

    let cases: &[(&str, &str, &str)] = &[
        (
            "edge: { proxy_protocol: { trusted_cidrs: [10.0.0.0/8, 10.0.0.0/33] } }",
            "edge.proxy_protocol.trusted_cidrs[1]",
            "`10.0.0.0/33` is neither a CIDR nor an IP address",
        ),
        (
            "edge: { proxy_protocol: { trusted_cidrs: [10.0.0.0/8, '::/0'] } }",
            "edge.proxy_protocol.trusted_cidrs[1]",
            "`::/0` trusts every address",
        ),
        (
            "edge: { proxy_protocol: { trusted_cidrs: [0.0.0.0/0] } }",
            "edge.proxy_protocol.trusted_cidrs[0]",
            "`0.0.0.0/0` trusts every address",
        ),
        (
            "edge: { proxy_protocol: { trusted_cidr: [10.0.0.0/8] } }",
            "edge.proxy_protocol.trusted_cidr",
            "unknown field `trusted_cidr`",
        ),
        (
            "edge: { proxy_protocol: { trusted_cidrs: 10.0.0.0/8 } }",
            "edge.proxy_protocol.trusted_cidrs",
            "a sequence",
        ),
    ];
    for (text, key, reason) in cases {
        let e = parse(text, &[]).expect_err(text);
        let ConfigError::Value { key: got, .. } = &e else { panic!("{text}: {e:?}") };
        assert_eq!(got, key, "{text}");
        assert!(chain(&e).contains(reason), "{text}: {}", chain(&e));
    }
}
