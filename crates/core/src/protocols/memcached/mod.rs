//! Memcached.

#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz_hooks;
mod inventory;

pub use inventory::*;
