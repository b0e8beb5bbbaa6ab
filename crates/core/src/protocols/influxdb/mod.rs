//! InfluxDB 1.x (HTTP API).
//!
//! InfluxDB 1.x ships with `auth-enabled = false`: whoever reaches port 8086 can query every
//! database. "Open" means `SHOW DATABASES` was answered without credentials; with
//! authentication enabled the same query is a 401 (`auth_required`). InfluxDB has no default
//! account.
//!
//! [`wire`] holds the allowlisted InfluxQL and the one sending function; [`probe`] identifies
//! it from the shared `GET /` (its `X-Influxdb-Version` header) and judges; [`inventory`]
//! lists, counts and samples the measurements; [`count`] counts the distinct people of one.

pub mod count;
pub mod inventory;
pub mod probe;
pub mod wire;

use crate::driver::{hook, Protocol};

pub const PROTOCOL: Protocol = Protocol {
    id: probe::ID,
    name: "InfluxDB 1.x",
    default_ports: &[8086],
    default_credentials: &[],
    method: "GET / (the X-Influxdb-Version header), then SHOW DATABASES without credentials",
    handler: hook!(http: probe::probe),
    inventory: hook!(inventory: inventory::inventory),
    subjects: hook!(count: count::subjects),
    keys_exist: None,
};
