//! Apache ZooKeeper (its binary client protocol).
//!
//! Recognised by the session handshake: a `ConnectResponse` to a `ConnectRequest`, sent only
//! to a server that closed on every text probe. `open` means the root and a top-level znode
//! can be listed without authentication; with digest or SASL ACLs on the data the same reads
//! answer `NoAuth`. Only reads are sent (`getChildren2`, `getData`, never a watch); the
//! session itself is ZooKeeper's bookkeeping (the server logs its creation and expiry), not
//! data.
//!
//! [`wire`] holds the records, their parsers, the allowlist and the one sending function;
//! [`probe`], [`inventory`] and [`count`] are built on it.

pub mod count;
pub mod inventory;
pub mod probe;
pub mod wire;

use crate::driver::{hook, Protocol};

pub const PROTOCOL: Protocol = Protocol {
    id: probe::ID,
    name: "ZooKeeper",
    default_ports: &[2181],
    default_credentials: &[],
    method: "session handshake, then getChildren2 of / and of its top-level znodes without \
             authentication; the version from `srvr`",
    handler: hook!(binary: probe::probe),
    inventory: hook!(inventory: inventory::inventory),
    subjects: hook!(count: count::subjects),
    keys_exist: None,
};
