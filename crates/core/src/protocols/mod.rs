//! The protocol registry: every protocol leakscope knows, one folder each.
//!
//! [`REGISTRY`] is the one table of protocols: it drives probing order, the `--help` text, the
//! docs and the per-protocol tests. Each protocol is a folder of the same shape, built on the
//! contract in [`crate::driver`]; this module only lists them.

use crate::driver::Protocol;

pub mod clickhouse;
pub mod elasticsearch;
pub mod etcd;
pub mod influxdb;
pub mod memcached;
pub mod mongodb;
pub mod mysql;
pub mod postgresql;
pub mod redis;
pub mod zookeeper;

/// Every protocol leakscope identifies. Identification tries them by the kind of their first
/// message (greeting, text line, binary; see [`crate::identify`]); within a kind, those that
/// claim the port first, then this order.
pub static REGISTRY: &[Protocol] = &[
    elasticsearch::PROTOCOL,
    redis::PROTOCOL,
    mongodb::PROTOCOL,
    // Before PostgreSQL: ZooKeeper answers a PostgreSQL startup message with silence (a read
    // deadline), while PostgreSQL refuses a ZooKeeper handshake at once.
    zookeeper::PROTOCOL,
    postgresql::PROTOCOL,
    memcached::PROTOCOL,
    mysql::PROTOCOL,
    clickhouse::PROTOCOL,
    influxdb::PROTOCOL,
    etcd::PROTOCOL,
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

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use super::REGISTRY;
    use crate::driver::{Handler, Outcome, ProbeOptions, Seen, LINE_PROBE_MIN};
    use crate::testkit::{timeouts, FakeServer, Reply};

    /// The code of a source file: everything before its first test module, comments out.
    fn code(path: &Path) -> String {
        let src = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let code = src.split("\n#[cfg(test)]\n").next().unwrap_or_default();
        code.lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/protocols")
    }

    /// Every registry protocol is a folder of the same shape, and its files import downward
    /// only: `mod.rs` names its children, the children never name `mod.rs` (so the import
    /// graph has no loop through the parent), `wire.rs` names no sibling, `inventory.rs` and
    /// `probe.rs` only `wire`, and `count.rs` `wire` and `inventory`.
    #[test]
    fn every_protocol_is_a_folder_of_one_shape() {
        let mut folders: Vec<String> = std::fs::read_dir(root())
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        folders.sort();
        let mut ids: Vec<&str> = REGISTRY.iter().map(|p| p.id).collect();
        ids.sort_unstable();
        assert_eq!(
            folders, ids,
            "one folder per registry protocol, named by its id"
        );
        for p in REGISTRY {
            let dir = root().join(p.id);
            let has = |f: &str| dir.join(f).exists();
            assert!(
                has("mod.rs") && has("wire.rs") && has("probe.rs"),
                "{}",
                p.id
            );
            assert_eq!(has("inventory.rs"), p.inventory.is_some(), "{}", p.id);
            assert_eq!(
                has("count.rs"),
                p.subjects.is_some() || p.keys_exist.is_some(),
                "{}",
                p.id
            );
            let allowed: &[(&str, &[&str])] = &[
                ("wire.rs", &[]),
                ("probe.rs", &["wire"]),
                ("inventory.rs", &["wire"]),
                ("count.rs", &["wire", "inventory"]),
                ("fuzz_hooks.rs", &["wire", "probe", "inventory", "count"]),
            ];
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let file = path.file_name().unwrap().to_string_lossy().into_owned();
                if file == "mod.rs" {
                    continue;
                }
                let Some((_, siblings)) = allowed.iter().find(|(f, _)| *f == file) else {
                    panic!("{}: {file} is not one of the shape's files", p.id);
                };
                let code = code(&path);
                for (at, _) in code.match_indices("super::") {
                    let after = &code[at + "super::".len()..];
                    let name: String = after
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    assert!(
                        siblings.contains(&name.as_str()),
                        "{}/{file} names super::{name}",
                        p.id
                    );
                }
            }
        }
    }

    /// A read deadline far longer than a round trip: a probe that returns well within it
    /// waited for none.
    const DEADLINE: Duration = Duration::from_secs(5);

    /// A binary server's header check: it reads a header's worth of a line probe and closes
    /// (mongod and postgres on a length no message has). This framing takes a first send only
    /// once it is [`LINE_PROBE_MIN`] bytes long and ends with a line break, so a line probe
    /// that breaks either rule waits here for its read deadline.
    fn header_of_nonsense(buf: &[u8], _: usize) -> Option<usize> {
        (buf.len() >= LINE_PROBE_MIN && buf.ends_with(b"\n")).then_some(buf.len())
    }

    fn ctx(server: &FakeServer) -> crate::driver::ProbeCtx {
        server.ctx_with(ProbeOptions {
            limits: timeouts(DEADLINE),
            ..ProbeOptions::default()
        })
    }

    /// Every line probe's first send makes a binary server close: identification's "a wrong
    /// guess costs a close" (see [`crate::identify`]).
    #[tokio::test]
    async fn every_line_probe_meets_a_binary_server_with_a_close() {
        let mut tried = 0;
        for p in REGISTRY {
            let Handler::Line(probe) = p.handler else {
                continue;
            };
            tried += 1;
            let server = FakeServer::start(Vec::new(), header_of_nonsense, |_| Reply::Close).await;
            let ctx = ctx(&server);
            let t = Instant::now();
            let conn = ctx.connect().await.expect("connect");
            assert_eq!(
                probe(&ctx, conn).await,
                Outcome::NotMe(Seen::Closed),
                "{}",
                p.id
            );
            assert!(t.elapsed() < DEADLINE / 2, "{}: {:?}", p.id, t.elapsed());
            assert_eq!(server.messages().len(), 1, "{}", p.id);
        }
        assert!(tried >= 2, "the registry has line probes");
    }

    /// Every line probe is answered at once by a text server of another protocol: "a wrong
    /// guess costs a round trip".
    #[tokio::test]
    async fn every_line_probe_meets_a_text_server_with_a_round_trip() {
        // What memcached and a web server say to a line they do not know (Redis's `-ERR`
        // would be a Redis).
        let refusals: [&[u8]; 2] = [b"ERROR\r\n", b"HTTP/1.1 400 Bad Request\r\n\r\n"];
        for refusal in refusals {
            for p in REGISTRY {
                let Handler::Line(probe) = p.handler else {
                    continue;
                };
                let server = FakeServer::lines(move |_| Reply::Send(refusal.to_vec())).await;
                let ctx = ctx(&server);
                let t = Instant::now();
                let conn = ctx.connect().await.expect("connect");
                let out = probe(&ctx, conn).await;
                assert!(
                    matches!(out, Outcome::NotMe(Seen::Bytes(_))),
                    "{}: {out:?}",
                    p.id
                );
                assert!(t.elapsed() < DEADLINE / 2, "{}: {:?}", p.id, t.elapsed());
            }
        }
    }

    /// The registry is only the registry: no protocol code in this file.
    #[test]
    fn the_registry_holds_no_protocol_code() {
        let code = code(&root().join("mod.rs"));
        for word in ["async fn", "Conn", "send(", "read_frame"] {
            assert!(!code.contains(word), "protocols/mod.rs holds {word}");
        }
    }
}
