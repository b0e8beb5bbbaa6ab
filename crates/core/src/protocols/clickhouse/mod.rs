//! ClickHouse (HTTP interface and native TCP protocol).
//!
//! ClickHouse ships with a `default` user without a password; a server reachable on its HTTP
//! port (8123) or native port (9000) with that user unchanged lets anyone run SQL. "Open"
//! means the database list was read without credentials; a refused login (unknown user,
//! wrong or missing password) is `auth_required`.
//!
//! [`wire`] holds the allowlisted SQL, both transports and their parsers, and the one sending
//! function (every statement with `readonly=1`); [`probe`] identifies either port from the
//! shared `GET /` and judges; [`inventory`] lists, counts and samples the user tables;
//! [`count`] counts the distinct people of a table with `uniqExact`/`uniq`.

pub mod count;
pub mod inventory;
pub mod probe;
pub mod wire;

use crate::driver::{hook, Protocol};

pub const PROTOCOL: Protocol = Protocol {
    id: probe::ID,
    name: "ClickHouse",
    default_ports: &[8123, 9000],
    default_credentials: &[],
    method: "GET / (`Ok.` on the HTTP port, the native port's refusal of HTTP), then \
             SELECT version() and the database list as user default without a password, \
             with readonly=1",
    handler: hook!(http: probe::probe),
    inventory: hook!(inventory: inventory::inventory),
    subjects: hook!(count: count::subjects),
    keys_exist: None,
};
