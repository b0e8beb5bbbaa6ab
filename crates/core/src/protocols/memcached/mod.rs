//! Memcached (text protocol).
//!
//! `version` identifies it; `stats` is the read: memcached has no accounts in the text
//! protocol, so a server that answers `stats` with item counts lets anyone read every key.
//! With SASL or ASCII auth enabled the same commands fail with `CLIENT_ERROR`/`ERROR`.
//!
//! [`wire`] holds the replies' checkers and parsers, the allowlist and the one sending
//! function; [`probe`], [`inventory`] and [`count`] are built on it.

pub mod count;
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz_hooks;
pub mod inventory;
pub mod probe;
pub mod wire;

use crate::driver::{hook, Protocol};

pub const PROTOCOL: Protocol = Protocol {
    id: probe::ID,
    name: "Memcached",
    default_ports: &[11211],
    default_credentials: &[],
    method: "`version`, then `stats` (item counts) without authentication",
    handler: hook!(line: probe::probe),
    inventory: hook!(inventory: inventory::inventory),
    subjects: hook!(count: count::subjects),
    keys_exist: None,
};
