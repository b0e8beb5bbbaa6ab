//! The protocol contract: what every protocol in [`crate::protocols`] implements, and the one
//! copy of what they share.
//!
//! - [`Protocol`] is a registry entry: ports, default credentials, how identification reaches
//!   the protocol, and the hooks a scan calls ([`InventoryFn`], [`SubjectsFn`], [`KeysExistFn`]).
//! - [`ProbeCtx`] is a protocol's only way to the network: it dials the endpoint being probed
//!   and nothing else, so scope containment holds by construction.
//! - [`http`] is the bounded HTTP/1.1 client of every HTTP store.
//!
//! The driver sits above `net`, `scope`, `model` and `inventory`'s data types, and below every
//! protocol; nothing here names a protocol.

mod budget;
mod context;
mod count;
mod entry;
mod failure;
pub mod http;
mod session;
pub mod sql;

pub use budget::{margin, Budget, Spent};
pub use failure::Failure;
pub use session::{Session, Wait};

#[cfg(test)]
pub(crate) use context::test_ctx;
pub use context::{
    preview, Connector, DirectConnector, Finding, Outcome, ProbeCtx, ProbeOptions, Seen,
};
pub use count::{
    from_value_sample, secs, value_at, value_modulus, value_sample, DistinctCounter, Got, Slot,
    Subjects, SubjectsBudget, SubjectsQuery, GRACE,
};
pub use entry::{Credential, Handler, InventoryFn, KeysExistFn, Protocol, SubjectsFn};
