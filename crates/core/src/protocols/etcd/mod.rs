//! etcd (v3 API through its JSON gateway, HTTP on the client port).
//!
//! Recognised by `GET /version` (`etcdserver`), asked only when `GET /` got Go's plain 404 or
//! the port is etcd's. `open` means a count-only range read of every key answered without a
//! token; with authentication enabled the same read fails with `user name is empty`. etcd has
//! no default account, so none is tried. Every read is a serializable `Range`: it costs the
//! cluster no consensus round and moves no revision.
//!
//! [`wire`] holds the allowlist, the range bodies, the parsers and the one sending function;
//! [`probe`], [`inventory`] and [`count`] are built on it.

pub mod count;
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz_hooks;
pub mod inventory;
pub mod probe;
pub mod wire;

use crate::driver::{hook, Protocol};

pub const PROTOCOL: Protocol = Protocol {
    id: probe::ID,
    name: "etcd",
    default_ports: probe::DEFAULT_PORTS,
    default_credentials: &[],
    method: "GET /version, then a count-only range read of every key (POST /v3/kv/range) \
             without a token",
    handler: hook!(http: probe::probe),
    inventory: hook!(inventory: inventory::inventory),
    subjects: hook!(count: count::subjects),
    keys_exist: None,
};
