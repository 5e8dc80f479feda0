//! MT and MO routing tables, compiled from the config and swapped whole on reload.

use crate::RoutingConfig;
use smsc_accounts::glob_match;

/// The compiled routing config.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    mt: Vec<MtRule>,
    /// Longest prefix first.
    mo: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
struct MtRule {
    prefix: String,
    pattern: Option<String>,
    accounts: Vec<String>,
    route: Route,
}

/// Where an MT rule sends a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The connector, then its failovers in order.
    pub connectors: Vec<String>,
    /// The route's name and its rate (0: unlimited), which the workers pace it by.
    pub name: String,
    pub rate: u32,
}

impl Routes {
    pub fn new(c: &RoutingConfig) -> Self {
        let mt =
            c.mt.iter()
                .map(|r| MtRule {
                    prefix: r.prefix.clone(),
                    pattern: (!r.pattern.is_empty()).then(|| r.pattern.clone()),
                    accounts: r.accounts.clone(),
                    route: Route {
                        connectors: std::iter::once(r.connector.clone())
                            .chain(r.failover.iter().cloned())
                            .collect(),
                        name: r.name.clone(),
                        rate: r.rate,
                    },
                })
                .collect();
        let mut mo: Vec<_> = c.mo.iter().map(|r| (r.prefix.clone(), r.account.clone())).collect();
        mo.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
        Self { mt, mo }
    }

    /// The route of a message from `system_id` to `dest`: the first rule whose
    /// conditions all hold.
    pub fn mt(&self, system_id: &str, dest: &str) -> Option<&Route> {
        self.mt
            .iter()
            .find(|r| {
                dest.starts_with(&r.prefix)
                    && r.pattern.as_deref().is_none_or(|p| glob_match(p, dest))
                    && (r.accounts.is_empty() || r.accounts.iter().any(|a| a == system_id))
            })
            .map(|r| &r.route)
    }

    /// The account that owns MO to `dest` (longest matching prefix).
    pub fn mo(&self, dest: &str) -> Option<&str> {
        self.mo.iter().find(|(p, _)| dest.starts_with(p.as_str())).map(|(_, a)| a.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{MoRoute, MtRoute};

    fn mt(
        prefix: &str,
        pattern: &str,
        accounts: &[&str],
        connector: &str,
        failover: &[&str],
    ) -> MtRoute {
        MtRoute {
            prefix: prefix.into(),
            pattern: pattern.into(),
            accounts: accounts.iter().map(|s| s.to_string()).collect(),
            connector: connector.into(),
            failover: failover.iter().map(|s| s.to_string()).collect(),
            ..MtRoute::default()
        }
    }

    #[test]
    fn first_matching_mt_rule_wins() {
        let r = Routes::new(&RoutingConfig {
            mt: vec![
                mt("44", "", &["bank"], "uk-bank", &["uk-backup"]),
                mt("44", "", &[], "uk", &[]),
                mt("", "1555???????", &[], "sim", &[]),
                mt("", "", &[], "default", &[]),
            ],
            mo: vec![],
        });
        let first = |system_id, dest| r.mt(system_id, dest).map(|c| c.connectors[0].clone());
        assert_eq!(
            r.mt("bank", "447700900123").map(|c| c.connectors.clone()),
            Some(vec!["uk-bank".into(), "uk-backup".into()])
        );
        assert_eq!(first("shop", "447700900123"), Some("uk".into()));
        assert_eq!(first("shop", "15551234567"), Some("sim".into()));
        assert_eq!(first("shop", "155512345678"), Some("default".into()));
        assert_eq!(Routes::new(&RoutingConfig { mt: vec![], mo: vec![] }).mt("a", "1"), None);
    }

    #[test]
    fn a_route_carries_its_name_and_rate() {
        let limited =
            MtRoute { name: "uk-mobile".into(), rate: 50, ..mt("447", "", &[], "uk", &[]) };
        let r = Routes::new(&RoutingConfig {
            mt: vec![limited, mt("", "", &[], "sim", &[])],
            mo: vec![],
        });
        let uk = r.mt("shop", "447700900123").expect("route");
        assert_eq!((uk.name.as_str(), uk.rate), ("uk-mobile", 50));
        assert_eq!(r.mt("shop", "15551234567").map(|c| c.rate), Some(0));
    }

    #[test]
    fn a_rate_needs_a_name() {
        let unnamed = MtRoute { rate: 50, ..mt("447", "", &[], "uk", &[]) };
        let config = RoutingConfig { mt: vec![unnamed], mo: vec![] };
        let e = config.validate().expect_err("refused").to_string();
        assert!(e.contains("routing.mt[0].name"), "{e}");
    }

    #[test]
    fn rules_of_one_name_have_one_rate() {
        let uk = |prefix: &str, rate| MtRoute {
            name: "uk".into(),
            rate,
            ..mt(prefix, "", &[], "uk", &[])
        };
        let same = RoutingConfig { mt: vec![uk("447", 50), uk("4478", 50)], mo: vec![] };
        assert!(same.validate().is_ok());
        let other = RoutingConfig { mt: vec![uk("447", 50), uk("4478", 0)], mo: vec![] };
        let e = other.validate().expect_err("refused").to_string();
        assert!(e.contains("routing.mt[1].rate") && e.contains("routing.mt[0]"), "{e}");
    }

    #[test]
    fn longest_mo_prefix_wins() {
        let r = Routes::new(&RoutingConfig {
            mt: vec![],
            mo: vec![
                MoRoute { prefix: "12".into(), account: "broad".into() },
                MoRoute { prefix: "12345".into(), account: "exact".into() },
            ],
        });
        assert_eq!(r.mo("12345"), Some("exact"));
        assert_eq!(r.mo("1299"), Some("broad"));
        assert_eq!(r.mo("999"), None);
    }
}
