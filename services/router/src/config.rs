//! `routing:`: the router's MT and MO routes.

use serde::Deserialize;

/// Routes. MT rules are tried in order; the first whose conditions all hold wins.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    pub mt: Vec<MtRoute>,
    pub mo: Vec<MoRoute>,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self { mt: vec![MtRoute::default()], mo: Vec::new() }
    }
}

/// An MT rule: destination prefix and/or glob pattern, optionally limited to accounts,
/// to a connector with failovers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MtRoute {
    /// Destination address prefix ("" matches all).
    pub prefix: String,
    /// Glob on the destination ('*', '?'); empty means no pattern condition.
    pub pattern: String,
    /// Submitting accounts this rule applies to; empty means all.
    pub accounts: Vec<String>,
    pub connector: String,
    /// Tried in order when the connector is unreachable.
    pub failover: Vec<String>,
}

impl Default for MtRoute {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            pattern: String::new(),
            accounts: Vec::new(),
            connector: "sim".to_owned(),
            failover: Vec::new(),
        }
    }
}

/// An MO rule: messages to a destination (short code) prefix go to an account. The
/// longest matching prefix wins.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoRoute {
    pub prefix: String,
    pub account: String,
}
