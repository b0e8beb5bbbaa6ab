//! Elasticsearch and OpenSearch (REST API over HTTP or HTTPS).
//!
//! Recognised from the shared `GET /`: the root document (`version.number` plus the tagline, the
//! OpenSearch `distribution` or the cluster name and uuid), the security layer's 401/403 (the
//! `security_exception` JSON of X-Pack, the `OpenSearch Security` realm), or the
//! `X-elastic-product` header. `open` needs a second, data-level read: `GET /_cat/indices`
//! answering a real index list, so a honeypot that repeats the root document to every path is
//! not called open. Cluster peers named by `GET /_nodes/http` are reported, never contacted.
//!
//! [`wire`] holds the allowlisted requests and the one sending function; [`probe`] identifies
//! and judges; [`inventory`] lists, counts and samples the indices of an exposed cluster with
//! the same allowlisted, read-only GETs; [`count`] counts the distinct people of an index with a
//! `cardinality` aggregation, a search whose body the sending function checks to be exactly that.

pub mod count;
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz_hooks;
pub mod inventory;
pub mod probe;
pub mod wire;

use crate::driver::{hook, Protocol};

pub const PROTOCOL: Protocol = Protocol {
    id: probe::ID,
    name: "Elasticsearch / OpenSearch",
    default_ports: &[9200, 9201],
    default_credentials: probe::DEFAULTS,
    method: "GET / (root document, or the security layer's 401), then GET /_cat/indices without \
             credentials; cluster peers from GET /_nodes/http are reported, never contacted",
    handler: hook!(http: probe::probe),
    inventory: hook!(inventory: inventory::inventory),
    subjects: hook!(count: count::subjects),
    keys_exist: None,
};
