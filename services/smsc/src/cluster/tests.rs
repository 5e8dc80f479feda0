use std::fs;
use std::net::SocketAddr;
use std::time::Duration;

use smsc_delivery_worker::config::SimProfile;

use super::plan::{PORTS, free_ports, new_temp_dir, quote};
use super::*;

#[test]
fn quoting_keeps_yaml_specials_literal() {
    assert_eq!(quote("$argon2id$v=19$m"), "\"$argon2id$v=19$m\"");
    assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
    assert_eq!(quote(""), "\"\"");
}

#[test]
fn free_ports_are_distinct() {
    let ports = free_ports(12).expect("ports");
    let mut unique: Vec<u16> = ports.iter().map(SocketAddr::port).collect();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 12);
    assert!(unique.iter().all(|p| PORTS.contains(p)), "{unique:?}");
}

/// The generated member configs load with the binary's own config loader.
#[test]
fn generated_configs_are_valid() {
    let dir = new_temp_dir().expect("dir");
    let options = ClusterOptions {
        brokers: Some("127.0.0.1:9092".into()),
        dir: Some(dir.clone()),
        accounts: vec![ClusterAccount::demo(), ClusterAccount::new("b\"ank", "pw", &["6666"])],
        sim_profiles: vec![SimProfile {
            prefix: "1555".into(),
            temporary_failures: 1,
            latency: Duration::from_millis(20),
            ..SimProfile::default()
        }],
        extra_connectors: "  up:\n    kind: smpp\n    address: 127.0.0.1:2775\n    system_id: a\n    password: p\n    max_binds: 2\n".into(),
        mt_routes: vec![("3361".into(), "up".into())],
        ..ClusterOptions::new("/bin/true")
    };
    let mut cluster = Cluster {
        endpoints: Endpoints {
            brokers: "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094,127.0.0.1:9095".into(),
            cql: "127.0.0.1:9042, 127.0.0.2:9042".into(),
            keyspace: "smsc_cluster_test".into(),
            dir: dir.clone(),
            members: Vec::new(),
        },
        children: Vec::new(),
        engines: None,
        options,
    };
    fs::create_dir_all(dir.join("logs")).expect("logs dir");
    cluster.endpoints.members = cluster.plan().expect("plan");
    assert_eq!(cluster.endpoints.members.len(), 5);
    cluster.write_configs().expect("configs");
    for m in &cluster.endpoints.members {
        let c = crate::config::Config::load_with_env(Some(&m.config), Vec::new())
            .unwrap_or_else(|e| panic!("{}: {e}", m.config.display()));
        assert_eq!(c.admin_listen, m.admin);
        assert_eq!(c.node_id, m.name);
        assert_eq!(c.store.kind, smsc_store::config::StoreKind::Scylla);
        assert_eq!(c.store.uris, ["127.0.0.1:9042", "127.0.0.2:9042"]);
        assert_eq!(
            (c.store.keyspace.as_str(), c.store.replication_factor),
            ("smsc_cluster_test", 1)
        );
        assert_eq!(c.bus.kind, smsc_bus::BusKind::Kafka);
        assert_eq!((c.bus.replication_factor, c.bus.session_timeout.as_secs()), (3, 6));
        assert_eq!(c.accounts.len(), 2);
        assert_eq!(c.accounts[1].system_id, "b\"ank");
        assert_eq!(c.routing.mo.len(), 2);
        let mt: Vec<(&str, &str)> =
            c.routing.mt.iter().map(|r| (r.prefix.as_str(), r.connector.as_str())).collect();
        assert_eq!(mt, [("3361", "up"), ("", "sim")]);
        assert!(matches!(
            c.connectors.get("up"),
            Some(smsc_delivery_worker::config::ConnectorConfig::Smpp(u)) if u.max_binds == 2
        ));
        assert_eq!(c.retry.tiers, cluster.options.retry_tiers);
        if let Some(smpp) = m.smpp {
            assert_eq!(c.edge.smpp_listen, smpp);
            assert_eq!(c.edge.grpc_advertise, Some(m.grpc.to_string()));
        }
        if let Some(sim) = m.simulator {
            assert_eq!(c.worker.simulator_listen, sim);
        }
    }
    let text = cluster.endpoints.to_string();
    assert!(text.contains("edge-1") && text.contains("SMPP"), "{text}");
    fs::remove_dir_all(dir).ok();
}
