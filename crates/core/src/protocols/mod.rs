//! The protocol registry: every protocol leakscope knows, one folder each.
//!
//! [`REGISTRY`] is the one table of protocols: it drives probing order, the `--help` text, the
//! docs and the per-protocol tests. Each protocol is a folder of the same shape, built on the
//! contract in [`crate::driver`]; this module only lists them.

use crate::driver::Protocol;

pub mod elasticsearch;
pub mod memcached;
pub mod mongodb;
pub mod mysql;
pub mod postgresql;
pub mod redis;

/// Every protocol leakscope identifies, in the order they are tried on a port no entry claims.
/// Client-first protocols come before server-first ones: a server that greets on connect
/// (MySQL) answers each client-first probe at once with its greeting, so trying it last costs
/// nothing, while trying it first would cost a banner wait on every silent client-first server.
pub static REGISTRY: &[Protocol] = &[
    elasticsearch::PROTOCOL,
    redis::PROTOCOL,
    mongodb::PROTOCOL,
    postgresql::PROTOCOL,
    memcached::PROTOCOL,
    mysql::PROTOCOL,
];

/// Looks a protocol up by id.
pub fn protocol(id: &str) -> Option<&'static Protocol> {
    REGISTRY.iter().find(|p| p.id == id)
}

/// The default port list: every registry port, in registry order, without duplicates.
pub fn default_ports() -> Vec<u16> {
    let mut out = Vec::new();
    for p in REGISTRY {
        for &port in p.default_ports {
            if !out.contains(&port) {
                out.push(port);
            }
        }
    }
    out
}

/// The order in which protocols are tried on `port`: those that claim the port first.
pub fn candidates(port: u16) -> Vec<&'static Protocol> {
    let (mut hinted, rest): (Vec<_>, Vec<_>) = REGISTRY
        .iter()
        .partition(|p| p.default_ports.contains(&port));
    hinted.extend(rest);
    hinted
}
