//! One SMPP session: one task that owns the socket and drives both directions with
//! non-blocking reads and writes.
//!
//! Each pass of the loop reads whatever is there (up to [`READ_CHUNK`]) and handles every
//! whole PDU in it (in place for submit_sm_resp and deliver_sm, through
//! [`smsc_smpp::split_frame`] otherwise), then refills the window from the
//! pre-encoded templates, then writes everything queued with one `write`. Submits in
//! flight live in a ring indexed by sequence_number; message_ids waiting for a receipt
//! in a per-session map. A receipt that arrives on another session (a receiver, or
//! another transceiver of the account) is kept with its arrival time and matched by the
//! runner at the end, so sessions never share a lock.
//!
//! The files of this module:
//! - `state.rs`: what a session is given and hands back, what it holds (the ring of
//!   submits in flight, the phase), and the helpers every part uses to answer.
//! - `bind.rs`: the connection and the bind ([`connect`]).
//! - `load.rs`: what the session sends: iterations as the executor allows, and the
//!   phases through to the unbind.
//! - `inbound.rs`: what the SMSC sends: responses, deliver_sm (MOs and receipts, matched
//!   to their submits), and everything else.
//! - `conn.rs`: the task's loop, its reads and writes.

mod bind;
mod conn;
mod inbound;
mod load;
mod state;

use std::time::Duration;

pub(crate) use bind::{BindAs, connect};
pub(crate) use state::{Outcome, RunShared, ScenarioRun, Session};

/// Octets read per `read` at most.
const READ_CHUNK: usize = 128 * 1024;
/// How often an idle session looks at the clock anyway.
const IDLE_TICK: Duration = Duration::from_millis(50);
/// How long the SMSC gets to answer our unbind.
const UNBIND_WAIT: Duration = Duration::from_secs(2);
/// Sequence numbers run 1..=0x7FFFFFFF (SMPP 3.4 §5.1.4).
const MAX_SEQ: u32 = 0x7FFF_FFFF;
