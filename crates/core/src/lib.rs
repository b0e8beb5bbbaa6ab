//! leakscope-core: the library behind the `leakscope` binary.
//!
//! It finds data stores in an authorized scope, identifies them by protocol probes and decides
//! whether they can be read without credentials. The binary (`crates/cli`) only parses arguments,
//! shows progress and writes output; everything a scan does lives here.
//!
//! Layers, bottom up: [`scope`] (what may be contacted), [`net`] (bounded I/O), [`probe`] (one
//! module per protocol plus the registry), [`identify`] (one endpoint), [`scan`] (the engine),
//! [`inventory`] (what an exposed store holds, sampled), [`classify`] (which sensitive data the
//! samples hold), [`rate`] (severity), [`model`] (the JSON contract), [`report`] (output formats).
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
pub mod inventory;
pub mod model;
pub mod net;
pub mod protocols;
pub mod rate;
pub mod report;
pub mod scan;
pub mod scope;
pub mod store;
pub mod subjects;
