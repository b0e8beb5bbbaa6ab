//! Redis (and RESP-compatible servers: Valkey, KeyDB, Dragonfly).
//!
//! Asks `INFO` without `AUTH`. A Redis answers with its info text, or `-NOAUTH` when a password
//! is set, or `-DENIED` in protected mode. `open` needs a second, data-level read (`DBSIZE`
//! returning an integer), so a peer that echoes anything plausible is not called open.
//!
//! [`wire`] holds the RESP codec, the command allowlist and the one sending function;
//! [`probe`], [`inventory`] and [`count`] are built on it.

pub mod count;
pub mod inventory;
pub mod probe;
pub mod wire;

use crate::driver::{hook, Protocol};

pub const PROTOCOL: Protocol = Protocol {
    id: probe::ID,
    name: "Redis",
    default_ports: &[6379, 6380],
    default_credentials: &[],
    method:
        "INFO and DBSIZE without AUTH; -NOAUTH, -DENIED or -NOPERM mean authentication is required",
    handler: hook!(line: probe::probe),
    inventory: hook!(inventory: inventory::inventory),
    subjects: hook!(count: count::subjects),
    keys_exist: hook!(keys_exist: count::keys_exist),
};
