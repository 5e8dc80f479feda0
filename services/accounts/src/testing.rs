//! Account fixtures for tests of any role.

use std::sync::OnceLock;
use std::time::Duration;

use smsc_store::BindKind;

use crate::config::AccountConfig;

/// An argon2id hash with the same tiny parameters as [`SECRET_HASH`].
pub fn cheap_hash(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(8, 1, 1, None).expect("valid argon2 parameters");
    let argon2 = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"fixture-salt").expect("valid salt");
    argon2.hash_password(password.as_bytes(), &salt).expect("hashes").to_string()
}

/// argon2id of "secret" with tiny parameters (m=8 KiB, t=1), so tests need not pay
/// for the defaults.
pub const SECRET_HASH: &str =
    "$argon2id$v=19$m=8,t=1,p=1$Zml4dHVyZS1zYWx0$WJEFL8NndZsdrq5NkUV09qPFpNjBbMQcMNAkey5WW+o";

/// The password of every [`account`].
pub const PASSWORD: &str = "secret";

/// argon2id of [`PASSWORD`], once per test process (hashing is slow on purpose).
pub fn password_hash() -> String {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| super::hash_password(PASSWORD).expect("argon2 hashes")).clone()
}

/// An account that may do anything, from anywhere; tests narrow what they check.
pub fn account(system_id: &str) -> AccountConfig {
    AccountConfig {
        system_id: system_id.to_owned(),
        password_hash: password_hash(),
        bind_types: vec![BindKind::Transmitter, BindKind::Receiver, BindKind::Transceiver],
        max_binds: 4,
        window: 16,
        max_submit_rate: 0,
        source_addresses: vec!["*".to_owned()],
        allowed_cidrs: vec!["0.0.0.0/0".parse().expect("net"), "::/0".parse().expect("net")],
        enabled: true,
        default_validity: Duration::from_secs(3600),
        max_validity: Duration::from_secs(48 * 3600),
        class: Default::default(),
        max_class: None,
        quota: Default::default(),
        webhook: None,
        api_key_sha256: Vec::new(),
    }
}
