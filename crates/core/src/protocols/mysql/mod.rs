//! MySQL and MariaDB (the classic client/server protocol).
//!
//! The server speaks first: its initial handshake names the product, the version and the auth
//! plugin, which recognises it. MySQL has no anonymous access, so without `--try-defaults` the
//! verdict is `auth_required`. With it, the probe logs in as `root` with an empty password on the
//! same connection and, only when that works, runs `SHOW DATABASES` as the proof of a read.
//!
//! [`wire`] holds the packets, the login and the SQL allowlist with the one sending function;
//! [`probe`] identifies and judges; [`inventory`] lists, counts and samples the tables of a
//! server the probe logged into, on its own session and under the same allowlist; [`count`]
//! counts the distinct people of a table the same way.

pub mod count;
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz_hooks;
pub mod inventory;
pub mod probe;
pub mod wire;

use crate::driver::{hook, Protocol};

pub const PROTOCOL: Protocol = Protocol {
    id: probe::ID,
    name: "MySQL / MariaDB",
    default_ports: &[3306],
    default_credentials: &[probe::ROOT_EMPTY],
    method: "reads the server greeting (protocol 10: version, auth plugin); with --try-defaults logs in as root with an empty password and runs SHOW DATABASES",
    handler: hook!(greeting: wire::greets, probe::probe),
    inventory: hook!(inventory: inventory::inventory),
    subjects: hook!(count: count::subjects),
    keys_exist: None,
};
