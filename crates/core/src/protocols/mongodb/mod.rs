//! MongoDB and servers speaking its wire protocol (FerretDB, Percona Server for MongoDB, …).
//!
//! `hello` (or `isMaster`) recognises the server, `buildInfo` names it, `listDatabases` (names
//! only: FerretDB computes sizes by reading its whole database file) decides access: a list
//! means open, code 13 Unauthorized means authentication is required. An empty list
//! is ambiguous (some servers filter it down to what the caller may see), so `listCollections` on
//! `admin` settles it. Servers older than 3.6 drop OP_MSG; they get the same commands over legacy
//! OP_QUERY. Replica-set members named in `hello` are reported, never contacted.
//!
//! [`wire`] holds the frames, the handshake and the session whose one sending function enforces
//! the command allowlist; [`probe`] identifies and judges; [`inventory`] lists, counts and
//! samples the collections of an exposed server; [`count`] counts the distinct people of a
//! collection (a unique index, or a `$group` under `maxTimeMS`).

pub mod count;
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz_hooks;
pub mod inventory;
pub mod probe;
pub mod wire;

use crate::driver::{hook, Protocol};

pub const PROTOCOL: Protocol = Protocol {
    id: probe::ID,
    name: "MongoDB",
    default_ports: &[27017, 27018, 27019],
    default_credentials: &[],
    method: "OP_MSG hello (isMaster, legacy OP_QUERY for old servers) and buildInfo, then \
             listDatabases without credentials; code 13 Unauthorized means authentication is required",
    handler: hook!(binary: probe::probe),
    inventory: hook!(inventory: inventory::inventory),
    subjects: hook!(count: count::subjects),
    keys_exist: None,
};
