use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use smsc_runtime::config::ConfigError;
use smsc_runtime::telemetry::error_chain;
use smsc_store::BindKind;
use tokio_util::sync::CancellationToken;

use super::account::check_password_hash;
use super::testing::{SECRET_HASH, cheap_hash};
use super::*;

fn config(system_id: &str) -> AccountConfig {
    AccountConfig {
        system_id: system_id.to_owned(),
        password_hash: SECRET_HASH.to_owned(),
        bind_types: vec![BindKind::Transmitter, BindKind::Transceiver],
        max_binds: 2,
        window: 10,
        max_submit_rate: 0,
        source_addresses: vec!["BANK".into(), "4470*".into(), "?SMS".into()],
        allowed_cidrs: vec![
            "10.0.0.0/8".parse().expect("net"),
            "2001:db8::/32".parse().expect("net"),
        ],
        enabled: true,
        default_validity: Duration::from_secs(3600),
        max_validity: Duration::from_secs(7200),
        class: Default::default(),
        max_class: None,
        quota: Default::default(),
        webhook: None,
        api_key_sha256: Vec::new(),
    }
}

#[test]
fn api_keys_name_one_account_by_their_sha256() {
    let (key, hex) = new_api_key().expect("random");
    assert!(key.starts_with("smsc_") && key.len() == 48, "{key}");
    assert_eq!(hex.len(), 64);
    let (other, _) = new_api_key().expect("random");
    assert_ne!(key, other);
    // Upper-case hex is read too.
    let bank = AccountConfig { api_key_sha256: vec![hex.to_uppercase()], ..config("bank") };
    let dir = AccountDirectory::from_config(&[bank.clone(), config("shop")], Duration::MAX)
        .expect("valid");
    assert_eq!(dir.by_api_key(&key).map(|a| a.system_id.clone()).as_deref(), Some("bank"));
    assert!(dir.by_api_key(&other).is_none());
    assert!(dir.by_api_key("").is_none());
    // sha256("smsc_test"), as `printf smsc_test | sha256sum` prints it.
    let known = "f0e94416fcd71a182d157f315f53d54be503edabf1c31ac92188eb269b2306f4";
    let digest: String = api_key_digest("smsc_test").iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(digest, known);

    // A system_id given twice keeps the later entry, and only its keys.
    let (later_key, later_hex) = new_api_key().expect("random");
    let later = AccountConfig { api_key_sha256: vec![later_hex], ..config("bank") };
    let twice = [&bank, &later].map(|c| Account::from_config(c).expect("valid")).to_vec();
    let dir = AccountDirectory::new(twice);
    assert!(dir.by_api_key(&key).is_none(), "the earlier entry's key is gone");
    assert!(dir.by_api_key(&later_key).is_some());

    let shared = AccountConfig { system_id: "shop".into(), ..bank.clone() };
    let e = AccountDirectory::from_config(&[bank, shared], Duration::MAX).expect_err("shared key");
    assert!(e.to_string().contains("api_key_sha256"), "{e}");
    let bad = AccountConfig { api_key_sha256: vec!["abc".into()], ..config("bad") };
    let e = Account::from_config(&bad).expect_err("not a digest");
    assert!(e.to_string().contains("api_key_sha256"), "{e}");
}

#[test]
fn a_webhook_is_plain_http_with_a_long_enough_secret() {
    let with = |url: &str, secret: &str| AccountConfig {
        webhook: Some(WebhookConfig { url: url.into(), secret: secret.into() }),
        ..config("bank")
    };
    let secret = "0123456789abcdef";
    let a = Account::from_config(&with("http://hooks.example:8080/sms", secret)).expect("valid");
    let w = a.webhook.as_ref().expect("webhook");
    assert_eq!(w.secret(), secret.as_bytes());
    assert!(!format!("{a:?}").contains(secret), "Debug keeps the secret out");
    for url in ["https://hooks.example/", "ftp://x/", "http:///path", "http://u:p@host/", "hooks"] {
        let e = Account::from_config(&with(url, secret)).expect_err(url);
        assert!(e.to_string().contains("webhook.url"), "{url}: {e}");
    }
    let e = Account::from_config(&with("http://h/", "short")).expect_err("short secret");
    assert!(e.to_string().contains("webhook.secret"), "{e}");
}

#[test]
fn glob_matches() {
    let yes = [
        ("*", ""),
        ("*", "anything"),
        ("", ""),
        ("abc", "abc"),
        ("a?c", "abc"),
        ("a*", "a"),
        ("a*c", "abbbc"),
        ("*c", "abc"),
        ("a*b*c", "axxbyyc"),
        ("a*b*c", "abcbc"),
        ("*aab", "aaaab"),
        ("?", "é"),
        ("é*", "éa"),
        ("**a**", "a"),
        ("4470*", "447012345678"),
    ];
    let no = [
        ("", "a"),
        ("abc", "abd"),
        ("a?c", "ac"),
        ("a*c", "abcd"),
        ("?", ""),
        ("??", "é"),
        ("a*b*c", "acb"),
        ("ABC", "abc"),
        ("4470*", "4471"),
    ];
    for (p, t) in yes {
        assert!(glob_match(p, t), "{p:?} should match {t:?}");
    }
    for (p, t) in no {
        assert!(!glob_match(p, t), "{p:?} should not match {t:?}");
    }
    // The single-star backtrack stays fast on the classic bad case.
    let text = "a".repeat(10_000);
    assert!(!glob_match("*a*a*a*a*a*b", &text));
}

#[test]
fn account_rules() {
    let a = Account::from_config(&config("bank")).expect("valid");
    assert!(a.allows_bind(BindKind::Transmitter));
    assert!(!a.allows_bind(BindKind::Receiver));
    assert!(a.source_allowed("BANK"));
    assert!(a.source_allowed("447000000"));
    assert!(a.source_allowed("XSMS"));
    assert!(!a.source_allowed("bank"));
    assert!(!a.source_allowed("SMS"));
    assert!(a.client_allowed("10.1.2.3".parse().expect("ip")));
    assert!(a.client_allowed("::ffff:10.1.2.3".parse().expect("ip")));
    assert!(a.client_allowed("2001:db8::1".parse().expect("ip")));
    assert!(!a.client_allowed("11.1.2.3".parse().expect("ip")));
    assert!(!a.client_allowed("::ffff:11.1.2.3".parse().expect("ip")));
}

#[test]
fn bad_entries_are_refused() {
    type Change = fn(&mut AccountConfig);
    let cases: Vec<(Change, &str)> = vec![
        (|c| c.system_id = String::new(), "system_id"),
        (|c| c.system_id = "sixteen-chars-xx".into(), "system_id"),
        (|c| c.system_id = "has space".into(), "system_id"),
        (|c| c.password_hash = "secret".into(), "password_hash"),
        (|c| c.password_hash = "$pbkdf2-sha256$i=1000$c2FsdA$aGFzaA".into(), "password_hash"),
        (
            |c| {
                c.password_hash =
                    "$argon2id$v=19$m=1048576,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into()
            },
            "password_hash",
        ),
        (|c| c.bind_types.clear(), "bind_types"),
        (|c| c.max_binds = 0, "max_binds"),
        (|c| c.window = 0, "window"),
        (|c| c.source_addresses.clear(), "source_addresses"),
        (|c| c.source_addresses.push(String::new()), "source_addresses"),
        (|c| c.allowed_cidrs.clear(), "allowed_cidrs"),
        (|c| c.default_validity = Duration::ZERO, "default_validity"),
        (|c| c.default_validity = Duration::from_secs(9000), "default_validity"),
        (|c| c.quota.daily = Some(0), "quota.daily"),
        (|c| c.quota.monthly = Some(u64::MAX), "quota.monthly"),
    ];
    for (change, field) in cases {
        let mut c = config("bank");
        change(&mut c);
        let e = Account::from_config(&c).expect_err(field);
        assert!(e.to_string().starts_with(field), "{field}: {e}");
    }
}

#[test]
fn passwords_verify_in_full() {
    assert_eq!(cheap_hash("secret"), SECRET_HASH);
    let a = Account::from_config(&config("bank")).expect("valid");
    assert!(a.verify_password(b"secret"));
    assert!(!a.verify_password(b"Secret"));
    assert!(!a.verify_password(b""));

    // SMPP's 8-character cap is not applied: no truncation either way.
    let mut long = config("long");
    long.password_hash = cheap_hash("longpassword");
    let long = Account::from_config(&long).expect("valid");
    assert!(long.verify_password(b"longpassword"));
    assert!(!long.verify_password(b"longpass"));
    assert!(!long.verify_password(b"longpassword2"));
}

#[test]
fn hash_password_makes_salted_argon2id() {
    let a = hash_password("pw").expect("hash");
    let b = hash_password("pw").expect("hash");
    assert!(a.starts_with("$argon2id$v=19$"), "{a}");
    assert_ne!(a, b, "salts differ");
    check_password_hash(&a).expect("loadable");
}

#[test]
fn a_password_no_bind_can_carry_is_not_hashed() {
    assert!(hash_password("8chars!!").is_ok());
    for password in ["bank-password", "nine char", "nul\0"] {
        let e = hash_password(password).expect_err(password);
        assert!(e.to_string().starts_with("password: "), "{password}: {e}");
    }
}

#[test]
fn demo_account() {
    let demo = Account::demo();
    assert_eq!((demo.system_id.as_str(), demo.window), ("demo", 256));
    assert!(demo.max_binds >= 8, "room for a few binds: {}", demo.max_binds);
    assert!(demo.verify_password(b"demo"));
    assert!(!demo.verify_password(b"demo1"));
    assert!(demo.allows_bind(BindKind::Receiver));
    assert!(demo.source_allowed("anything"));
    assert!(demo.client_allowed("203.0.113.9".parse().expect("ip")));
    assert!(demo.client_allowed("2001:db8::9".parse().expect("ip")));
    assert_eq!(demo.max_submit_rate, 0);
}

#[test]
fn debug_never_shows_the_hash() {
    let a = Account::from_config(&config("bank")).expect("valid");
    let shown = format!("{a:?} {:?} {a:#?}", config("bank"));
    assert!(shown.contains("bank") && shown.contains("4470*"), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
    assert!(!shown.contains("argon2"), "{shown}");
    assert!(!shown.contains("c2FsdHNhbHQ"), "{shown}");
    let demo = format!("{:?}", Account::demo());
    assert!(!demo.contains("argon2"), "{demo}");
}

#[test]
fn directory_get_replace_authenticate() {
    let mut disabled = config("off");
    disabled.enabled = false;
    let dir = AccountDirectory::new(vec![
        Account::from_config(&config("bank")).expect("valid"),
        Account::from_config(&disabled).expect("valid"),
    ]);
    assert_eq!(dir.len(), 2);
    assert_eq!(dir.get("bank").map(|a| a.window), Some(10));
    assert!(dir.get("nobody").is_none());
    assert!(format!("{dir:?}").contains("bank"));

    // A bind's answer: the argon2 check (a decoy for an unknown id), then the verdict.
    let authenticate = |id: &str, password: &[u8]| {
        let account = dir.get(id);
        let verified = crate::directory::verify(account.as_deref(), password);
        crate::directory::verdict(account, verified)
    };
    assert_eq!(authenticate("bank", b"secret").map(|a| a.window), Ok(10));
    assert_eq!(authenticate("bank", b"wrong").err(), Some(AuthError::BadPassword));
    assert_eq!(authenticate("off", b"secret").err(), Some(AuthError::Disabled));
    assert_eq!(authenticate("off", b"wrong").err(), Some(AuthError::BadPassword));
    assert_eq!(authenticate("nobody", b"x").err(), Some(AuthError::UnknownSystemId));

    let held = dir.get("bank").expect("present");
    dir.replace(vec![Account::from_config(&config("new")).expect("valid")]);
    assert!(dir.get("bank").is_none());
    assert_eq!(dir.len(), 1);
    // A session keeps the account it bound with.
    assert_eq!(held.system_id, "bank");
}

fn accounts_yaml(ids: &[&str]) -> String {
    let mut text = String::from("accounts:\n");
    for id in ids {
        text.push_str(&format!("  - system_id: {id}\n    password_hash: '{SECRET_HASH}'\n"));
    }
    text
}

/// Replaces the file the way a ConfigMap update or an editor does: write aside, rename.
fn swap_in(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[test]
fn reload_from_accounts_file_keeps_last_good() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("accounts.yaml");
    let source = AccountsSource::AccountsFile {
        path: path.clone(),
        max_validity_cap: Duration::from_secs(72 * 3600),
    };
    let dir = AccountDirectory::new(Vec::new());

    swap_in(&path, &accounts_yaml(&["a", "b"]));
    assert_eq!(dir.reload_now(&source).expect("good file"), 2);
    assert!(dir.get("a").is_some() && dir.get("b").is_some());

    swap_in(&path, &accounts_yaml(&["c"]));
    assert_eq!(dir.reload_now(&source).expect("good file"), 1);
    assert!(dir.get("a").is_none() && dir.get("c").is_some());

    for broken in [
        "accounts: [".to_owned(),
        "accounts: [{system_id: x}]".to_owned(),
        "accounts: []\nextra: 1".to_owned(),
        accounts_yaml(&["d", "d"]),
        format!("accounts: [{{system_id: x, password_hash: '{SECRET_HASH}', max_validity: 100h}}]"),
    ] {
        swap_in(&path, &broken);
        let e = dir.reload_now(&source).expect_err(&broken);
        assert!(error_chain(&e).to_string().contains("accounts.yaml"), "{e}");
        assert_eq!(dir.len(), 1, "kept after {broken:?}");
        assert!(dir.get("c").is_some());
    }

    std::fs::remove_file(&path).expect("rm");
    assert!(matches!(dir.reload_now(&source), Err(ConfigError::Read { .. })));
    assert!(dir.get("c").is_some());

    swap_in(&path, "");
    assert_eq!(dir.reload_now(&source).expect("empty file: no accounts"), 0);
}

#[tokio::test]
async fn watcher_reloads_on_file_change() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("accounts.yaml");
    swap_in(&path, &accounts_yaml(&["a"]));
    let source = AccountsSource::AccountsFile {
        path: path.clone(),
        max_validity_cap: Duration::from_secs(72 * 3600),
    };
    let dir = Arc::new(AccountDirectory::new(Vec::new()));
    dir.reload_now(&source).expect("good");

    let shutdown = CancellationToken::new();
    let task = tokio::spawn(dir.clone().watch(source, shutdown.clone()).expect("watch"));
    // Accounts set by hand stay until the file changes.
    dir.replace(vec![Account::from_config(&config("manual")).expect("valid")]);

    let wait_for = |id: &'static str, present: bool| {
        let dir = dir.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while dir.get(id).is_some() != present {
                assert!(tokio::time::Instant::now() < deadline, "no reload for {id}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    swap_in(&path, &accounts_yaml(&["a", "b"]));
    wait_for("b", true).await;
    assert!(dir.get("manual").is_none());

    // A broken file keeps the accounts; the next good one is applied.
    swap_in(&path, "accounts: [");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(dir.len(), 2);
    swap_in(&path, &accounts_yaml(&["c"]));
    wait_for("c", true).await;
    assert_eq!(dir.len(), 1);

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("watcher stops on shutdown")
        .expect("watcher task did not panic");
}
