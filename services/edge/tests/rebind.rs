//! Rebinds over real TCP with the pod's credential cache (`edge.credential_cache`):
//! known credentials bind again without argon2, a storm of them costs one argon2 check,
//! and wrong passwords, changed passwords and the lockout work as without the cache.

mod common;

use common::{Client, ESME, PASSWORD, Setup, TestEdge, account, assert_status};
use smsc_accounts::testing::cheap_hash;
use smsc_accounts::{Account, AccountConfig};
use smsc_edge::config::CredentialCacheConfig;
use smsc_edge::{Limits, LockoutSettings, Settings};
use smsc_smpp::CommandStatus;
use smsc_store::BindKind;

const WRONG: &str = "wrongpw1";

/// How many binds' credentials were checked `via` cache, shared or argon2.
fn checks(edge: &TestEdge, via: &str) -> u64 {
    let prefix = format!("smsc_edge_bind_password_checks_total{{via=\"{via}\"}} ");
    let text = edge.metrics.encode();
    let line = text.lines().find_map(|l| l.strip_prefix(prefix.as_str()));
    line.unwrap_or_else(|| panic!("no {prefix} in\n{text}")).parse().expect("a count")
}

/// (cache, shared, argon2)
fn all_checks(edge: &TestEdge) -> (u64, u64, u64) {
    (checks(edge, "cache"), checks(edge, "shared"), checks(edge, "argon2"))
}

async fn bind(edge: &TestEdge, password: &str) -> (Client, CommandStatus) {
    let mut c = edge.connect().await;
    let resp = c.bind_as(BindKind::Transceiver, ESME, password, 0x34).await;
    (c, resp.status)
}

#[tokio::test]
async fn a_rebind_with_known_credentials_skips_argon2_and_a_wrong_password_is_refused() {
    let edge = TestEdge::start(Setup::default()).await;
    let (first, status) = bind(&edge, PASSWORD).await;
    assert_eq!(status, CommandStatus::ESME_ROK);
    assert_eq!(all_checks(&edge), (0, 0, 1));
    // The ESME's pod went away: it binds again, here (the first session still open
    // or closed, as a lost pod leaves it).
    let (_second, status) = bind(&edge, PASSWORD).await;
    assert_eq!(status, CommandStatus::ESME_ROK);
    drop(first);
    let (_third, status) = bind(&edge, PASSWORD).await;
    assert_eq!(status, CommandStatus::ESME_ROK);
    assert_eq!(all_checks(&edge), (2, 0, 1));

    // A wrong password, after the right one was cached: argon2, and refused.
    let (_, status) = bind(&edge, WRONG).await;
    assert_eq!(status, CommandStatus::ESME_RINVPASWD);
    assert_eq!(all_checks(&edge), (2, 0, 2));
    // An unknown system_id too.
    let mut c = edge.connect().await;
    let resp = c.bind_as(BindKind::Transceiver, "nobody", PASSWORD, 0x34).await;
    assert_status(&resp, CommandStatus::ESME_RINVSYSID);
    assert_eq!(all_checks(&edge), (2, 0, 3));
}

#[tokio::test]
async fn a_storm_of_rebinds_costs_one_argon2_check() {
    const STORM: usize = 16;
    let setup = Setup::accounts(vec![AccountConfig { max_binds: 64, ..account(ESME) }]);
    let edge = TestEdge::start(setup).await;
    let mut clients = Vec::new();
    for _ in 0..STORM {
        clients.push(edge.connect().await);
    }
    // Every bind written before any answer is read: they arrive together.
    for c in &mut clients {
        let seq = c.next_seq();
        let bind = common::bind_body(BindKind::Transceiver, ESME, PASSWORD, 0x34);
        c.send(&[smsc_smpp::Pdu::new(seq, bind)]).await;
    }
    for c in &mut clients {
        assert_status(&c.recv().await, CommandStatus::ESME_ROK);
    }
    let (cache, shared, argon2) = all_checks(&edge);
    assert_eq!(argon2, 1, "one check for all of them");
    assert_eq!(cache + shared, STORM as u64 - 1);
}

#[tokio::test]
async fn after_a_password_change_the_old_password_is_refused_and_the_new_one_checked() {
    let edge = TestEdge::start(Setup::default()).await;
    assert_eq!(bind(&edge, PASSWORD).await.1, CommandStatus::ESME_ROK);
    let changed = AccountConfig { password_hash: cheap_hash("newpass"), ..account(ESME) };
    edge.edge.accounts.replace(vec![Account::from_config(&changed).expect("valid account")]);

    assert_eq!(bind(&edge, PASSWORD).await.1, CommandStatus::ESME_RINVPASWD);
    assert_eq!(bind(&edge, "newpass").await.1, CommandStatus::ESME_ROK);
    assert_eq!(all_checks(&edge), (0, 0, 3));
    assert_eq!(bind(&edge, "newpass").await.1, CommandStatus::ESME_ROK);
    assert_eq!(all_checks(&edge), (1, 0, 3));
}

#[tokio::test]
async fn the_lockout_counts_wrong_passwords_after_a_cached_right_one_and_then_refuses_it() {
    let limits = Limits {
        lockout: LockoutSettings { max_failures: 3, ..LockoutSettings::default() },
        ..Limits::default()
    };
    let edge = TestEdge::start(Setup { limits, ..Setup::default() }).await;
    assert_eq!(bind(&edge, PASSWORD).await.1, CommandStatus::ESME_ROK);
    let mut c = edge.connect().await;
    for _ in 0..3 {
        let resp = c.bind_as(BindKind::Transceiver, ESME, WRONG, 0x34).await;
        assert_status(&resp, CommandStatus::ESME_RINVPASWD);
    }
    // Locked: the cached right password is refused before any check, and closed.
    let (mut c, status) = bind(&edge, PASSWORD).await;
    assert_eq!(status, CommandStatus::ESME_RBINDFAIL);
    c.expect_closed().await;
    assert_eq!(all_checks(&edge), (0, 0, 4));
}

#[tokio::test]
async fn with_the_cache_off_every_bind_pays_argon2() {
    let settings = Settings {
        credential_cache: CredentialCacheConfig {
            ttl: std::time::Duration::ZERO,
            ..CredentialCacheConfig::default()
        },
        ..Setup::default().settings
    };
    let edge = TestEdge::start(Setup { settings, ..Setup::default() }).await;
    for _ in 0..3 {
        assert_eq!(bind(&edge, PASSWORD).await.1, CommandStatus::ESME_ROK);
    }
    assert_eq!(all_checks(&edge), (0, 0, 3));
    assert!(edge.edge.credentials.is_empty());
}

#[test]
fn the_cache_needs_room_for_an_entry_unless_it_is_off() {
    use smsc_edge::EdgeConfig;
    use smsc_runtime::config::ConfigError;
    let deadline = std::time::Duration::from_secs(30);
    let with = |ttl, max_entries| EdgeConfig {
        credential_cache: CredentialCacheConfig { ttl, max_entries },
        ..EdgeConfig::default()
    };
    let defaults = EdgeConfig::default().credential_cache;
    assert_eq!((defaults.ttl.as_secs(), defaults.max_entries), (300, 10_000));
    match with(defaults.ttl, 0).validate(deadline) {
        Err(ConfigError::Invalid { key, .. }) => {
            assert_eq!(key, "edge.credential_cache.max_entries")
        }
        other => panic!("{other:?}"),
    }
    with(std::time::Duration::ZERO, 0).validate(deadline).expect("off needs no room");
}
