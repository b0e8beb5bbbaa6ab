//! leakscope-core: the library behind the `leakscope` binary.
//!
//! It finds data stores in an authorized scope, identifies them by protocol probes and decides
//! whether they can be read without credentials. The binary (`crates/cli`) only parses arguments,
//! shows progress and writes output; everything a scan does lives here.
//!
//! Layers, bottom up: [`scope`] (what may be contacted), [`net`] (bounded I/O), [`probe`] (one
//! module per protocol plus the registry), [`identify`] (one endpoint), [`scan`] (the engine),
//! [`inventory`] (what an exposed store holds, sampled), [`classify`] (which sensitive data the
//! samples hold), [`rate`] (severity), [`model`] (the JSON contract; [`safe`] makes what a server sent safe
//! as it enters it), [`report`] (output formats), [`store`] (the findings store), [`watch`]
//! (continuous checking and alerts).
//!
//! ```
//! use leakscope_core::probe::{default_ports, REGISTRY};
//! assert!(REGISTRY.iter().any(|p| p.id == "redis"));
//! assert!(default_ports().contains(&6379));
//! ```

pub mod classify;
pub mod diff;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod identify;
pub mod inventory;
pub mod model;
pub mod net;
pub mod probe;
pub mod rate;
pub mod report;
pub mod safe;
pub mod scan;
pub mod scope;
pub mod store;
pub mod subjects;
pub mod watch;
