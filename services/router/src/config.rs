//! `routing:`: the router's MT and MO routes.

use serde::Deserialize;

/// Routes. MT rules are tried in order; the first whose conditions all hold wins.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    pub mt: Vec<MtRoute>,
    pub mo: Vec<MoRoute>,
}

impl RoutingConfig {
    /// The rules of `routing.*` that deserialising does not check.
    pub fn validate(&self) -> Result<(), smsc_runtime::config::ConfigError> {
        for (i, r) in self.mt.iter().enumerate() {
            if r.rate > 0 && r.name.is_empty() {
                let key = format!("routing.mt[{i}].name");
                return Err(smsc_runtime::config::invalid(
                    &key,
                    "a route with a rate needs a name",
                ));
            }
            // One name, one pace: the workers pace a route by the rate its tasks carry.
            let first = self.mt.iter().position(|o| !r.name.is_empty() && o.name == r.name);
            if let Some(j) = first.filter(|&j| self.mt[j].rate != r.rate) {
                let key = format!("routing.mt[{i}].rate");
                let reason = format!(
                    "{}, but routing.mt[{j}] of the same name has {}",
                    r.rate, self.mt[j].rate
                );
                return Err(smsc_runtime::config::invalid(&key, reason));
            }
        }
        Ok(())
    }
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
    /// Names the route for its `rate`: rules of one name share one limit (the prefixes
    /// of one destination network, say).
    pub name: String,
    /// Messages per second from each worker over this route (0 = unlimited): paced,
    /// never refused, like a connector's `rate`.
    pub rate: u32,
}

impl Default for MtRoute {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            pattern: String::new(),
            accounts: Vec::new(),
            connector: "sim".to_owned(),
            failover: Vec::new(),
            name: String::new(),
            rate: 0,
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
