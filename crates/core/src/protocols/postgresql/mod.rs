//! PostgreSQL (frontend/backend protocol 3.0).
//!
//! Sends a StartupMessage as user `postgres` to database `postgres` and reads what the server
//! asks for. AuthenticationOk without a password is not enough for `open`: the session must
//! also answer one catalog query (the databases that accept connections). A SASL, MD5 or
//! cleartext challenge means a password is required; with `--try-defaults` the documented
//! default `postgres`/`postgres` is tried on a fresh connection (SCRAM-SHA-256 with the server
//! signature verified, MD5 or cleartext). A server whose `pg_hba.conf` refuses plaintext
//! (`hostssl` only) is asked again after an SSLRequest, inside TLS.
//!
//! [`wire`] holds the messages, the startup and its authentication, and the SQL allowlist with
//! the one sending function; [`probe`] identifies and judges; [`inventory`] and [`count`] read
//! what an exposed server holds, each statement in its own read-only transaction.

pub mod count;
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz_hooks;
pub mod inventory;
pub mod probe;
pub mod wire;

use crate::driver::{hook, Protocol};

pub const PROTOCOL: Protocol = Protocol {
    id: probe::ID,
    name: "PostgreSQL",
    default_ports: &[5432],
    default_credentials: probe::DEFAULTS,
    method: "StartupMessage as user postgres; AuthenticationOk is confirmed by SELECT datname FROM \
             pg_database; a SCRAM/MD5/cleartext challenge or SQLSTATE 28P01/28000 means authentication \
             is required",
    handler: hook!(binary: probe::probe),
    inventory: hook!(inventory: inventory::inventory),
    subjects: hook!(count: count::subjects),
    keys_exist: None,
};
