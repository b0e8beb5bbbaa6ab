//! leakscope-core: the library behind the `leakscope` binary.
//!
//! It finds data stores in an authorized scope, identifies them by protocol probes and decides
//! whether they can be read without credentials. The binary (`crates/cli`) only parses arguments,
//! shows progress and writes output; everything a scan does lives here.
//!
//! Layers, bottom up (a module uses only those before it):
//! [`scope`] (what may be contacted) and [`net`] (bounded I/O); [`model`] (the JSON contract);
//! [`inventory`] (what an exposed store holds: containers, flattened samples); [`classify`]
//! (which sensitive data the samples hold); [`safe`] (what a server sent, made safe as it enters
//! the model); [`driver`] (the protocol contract every protocol is built on); [`protocols`] (one
//! folder per protocol, and the registry); [`identify`] (one endpoint); [`subjects`] (how many
//! people a container exposes); [`impact`] (how many people the whole scan exposes,
//! de-duplicated across stores); [`rate`] (severity); [`scan`] (the engine); then [`store`] and
//! [`report`] (output formats), which read only the model, and [`diff`] (two scans compared,
//! with the report's summary); last [`watch`] (continuous checking and alerts, on the engine,
//! the store and the reports).
//!
//! ```
//! use leakscope_core::protocols::{default_ports, REGISTRY};
//! assert!(REGISTRY.iter().any(|p| p.id == "redis"));
//! assert!(default_ports().contains(&6379));
//! ```

pub mod classify;
pub mod diff;
pub mod driver;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod identify;
pub mod impact;
pub mod inventory;
pub mod model;
pub mod net;
pub mod protocols;
pub mod rate;
pub mod report;
pub mod safe;
pub mod scan;
pub mod scope;
pub mod store;
pub mod subjects;
#[cfg(test)]
mod testkit;
pub mod watch;
