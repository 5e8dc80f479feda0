//! Every SMPP 3.4 PDU, its body type, and the pure decoder and encoder.
//!
//! `decode` takes one whole PDU (the framer has already checked command_length) as
//! `Bytes` and borrows the short message and TLV values from it without copying.
//! `Pdu::encode` appends to a `BytesMut`, writing the length last.
//!
//! Each family of PDUs is a file, with how its bodies are measured, written and read:
//! - `body.rs`: [`Body`] (the body by command), [`Pdu`] (the header fields around it),
//!   [`Pdu::encode`] and [`decode`], which dispatch to the bodies below.
//! - `bind.rs`: session management: the binds and their response, outbind,
//!   alert_notification.
//! - `submit.rs`: submit_sm and deliver_sm (one body), data_sm, and their responses.
//! - `multi.rs`: submit_multi and its response.
//! - `query.rs`: query_sm, cancel_sm and replace_sm.
//! - `fields.rs`: the fields several bodies share, [`TimeString`] and [`ShortMessage`].
//! - `wire.rs`: the octet-level writers and the reader every body uses.

mod bind;
mod body;
mod fields;
mod multi;
mod query;
mod submit;
mod wire;

pub use bind::{AlertNotification, Bind, BindResp, Outbind};
pub use body::{Body, Pdu, decode};
pub use fields::{ShortMessage, TimeString};
pub use multi::{DestAddress, SubmitMulti, SubmitMultiResp, UnsuccessSme};
pub use query::{CancelSm, QuerySm, QuerySmResp, ReplaceSm};
pub use submit::{DataSm, DeliverSm, MessageIdResp, SubmitSm};
