//! Redis.

mod inventory;
pub mod wire;

pub use inventory::*;
