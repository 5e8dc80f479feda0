//! ESME accounts: the checked form of the config's `accounts` entries, and the
//! directory the edge authenticates binds against, reloaded while the process runs.
//!
//! - `config.rs`: the `accounts` entries as written, and where they come from
//!   (`accounts`, `accounts_file`, `accounts_crd`).
//! - `account.rs`: [`Account`], an entry checked and compiled, what it allows, and
//!   password hashing and verification (argon2).
//! - `directory.rs`: [`AccountDirectory`], the lock-free snapshot binds are checked
//!   against, its reload from a file, and the watch (file changes and SIGHUP).
//! - `credentials.rs`: [`CredentialCache`], the bind credentials verified lately, so a
//!   storm of rebinds does not pay argon2 for every bind.
//! - `testing.rs`: account fixtures for tests of any role (feature `testing`).

mod account;
pub mod config;
mod credentials;
mod directory;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;

pub use account::{
    Account, AccountError, MAX_PASSWORD, Webhook, api_key_digest, compile, glob_match,
    hash_password, new_api_key,
};
pub use config::{
    AccountConfig, AccountsCrdConfig, AccountsSource, Quota, ReadConfigFile, WebhookConfig,
};
pub use credentials::{Checked, CredentialCache, Via};
pub use directory::{AccountDirectory, AuthError, WatchError};
