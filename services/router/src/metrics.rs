//! `smsc_router_*`: the router's metric families, on the process's registry.

use std::fmt;

use prometheus::{IntCounterVec, Registry};
use smsc_runtime::telemetry::{Family, counter_vec};

/// `smsc_router_*`.
pub struct RouterMetrics {
    /// Submit events by `result` = routed|scheduled|duplicate|no_route.
    pub routed_total: IntCounterVec,
    /// MO by `result` = routed|no_route.
    pub mo_total: IntCounterVec,
}

impl fmt::Debug for RouterMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouterMetrics").finish_non_exhaustive()
    }
}

impl Family for RouterMetrics {
    fn register(r: &Registry) -> Self {
        Self {
            routed_total: counter_vec(
                r,
                "smsc_router_routed_total",
                "Submit events by routing result.",
                &["result"],
            ),
            mo_total: counter_vec(
                r,
                "smsc_router_mo_total",
                "MO messages by routing result.",
                &["result"],
            ),
        }
    }
}
