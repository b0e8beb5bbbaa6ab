//! Identifying Redis and judging access: `INFO` and `DBSIZE` without `AUTH`.

use super::wire::{read_reply, send_many, Value};
use crate::driver::{Finding, Outcome, ProbeCtx, Seen};
use crate::model::Access;
use crate::net::Conn;

/// The registry id.
pub(super) const ID: &str = "redis";

/// Facts read from an `INFO` reply.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Info {
    pub product: String,
    pub version: Option<String>,
    pub role: Option<String>,
    /// `host:port` of the master and of connected replicas.
    pub peers: Vec<String>,
}

/// Parses `INFO` text. None when it does not look like a Redis INFO reply.
pub fn parse_info(text: &str) -> Option<Info> {
    let mut info = Info::default();
    let mut recognised = false;
    let (mut master_host, mut master_port) = (None, None);
    for line in text.lines() {
        let Some((k, v)) = line.trim_end().split_once(':') else {
            continue;
        };
        match k {
            "redis_version" => {
                recognised = true;
                info.version.get_or_insert_with(|| v.to_string());
            }
            "valkey_version" | "dragonfly_version" => {
                recognised = true;
                info.version = Some(v.to_string());
            }
            "server_name" => info.product = capitalise(v),
            "role" => info.role = Some(v.to_string()),
            "master_host" => master_host = Some(v.to_string()),
            "master_port" => master_port = Some(v.to_string()),
            _ if k.starts_with("slave") && k[5..].chars().all(|c| c.is_ascii_digit()) => {
                // slave0:ip=10.0.0.2,port=6379,state=online,…
                let field = |name: &str| {
                    v.split(',')
                        .find_map(|kv| kv.strip_prefix(name).map(str::to_string))
                };
                if let (Some(ip), Some(port)) = (field("ip="), field("port=")) {
                    info.peers.push(join_host_port(&ip, &port));
                }
            }
            _ => {}
        }
    }
    if let (Some(h), Some(p)) = (master_host, master_port) {
        info.peers.push(join_host_port(&h, &p));
    }
    if info.product.is_empty() {
        info.product = "Redis".into();
    }
    recognised.then_some(info)
}

pub(super) fn join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

pub(super) fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// Verdict for an error reply to an unauthenticated command, if it is one Redis uses for that.
pub fn auth_error(msg: &str) -> Option<&'static str> {
    let code = msg.split_whitespace().next().unwrap_or("");
    match code {
        "NOAUTH" => Some("requires a password (NOAUTH)"),
        "WRONGPASS" => Some("rejects the default user (WRONGPASS)"),
        "NOPERM" => Some("the default user lacks permission (NOPERM)"),
        "DENIED" => Some("is in protected mode and refuses remote clients (DENIED)"),
        _ => None,
    }
}

/// The protocol's probe: is this its protocol, and can it be read without credentials?
///
/// `INFO` and `DBSIZE` go out together: 30 bytes of RESP, more than a binary protocol's header,
/// so a server of another protocol answers or closes at once (see [`crate::identify`]); the
/// `DBSIZE` reply is read only when `INFO` proved a Redis.
pub(super) async fn probe(ctx: &ProbeCtx, mut conn: Conn) -> Outcome {
    let reply = match send_many(&mut conn, &[&["INFO"], &["DBSIZE"]]).await {
        Ok(()) => read_reply(&mut conn, ctx).await.map(|(v, _)| v),
        Err(e) => Err(e),
    };
    let reply = match reply {
        Ok(v) => v,
        Err(e) => return Outcome::NotMe(Seen::from_error(&e, conn.buffered())),
    };
    let mut f = Finding::new(ID);
    match reply {
        Value::Bulk(Some(bytes)) => {
            let text = String::from_utf8_lossy(&bytes);
            let Some(info) = parse_info(&text) else {
                return Outcome::NotMe(Seen::Bytes(bytes[..bytes.len().min(64)].to_vec()));
            };
            f.product = Some(info.product);
            f.version = info.version;
            f.out_of_scope_peers = ctx.out_of_scope(info.peers);
            f.evidence.push("INFO answered without AUTH".into());
            match read_reply(&mut conn, ctx).await.map(|(v, _)| v) {
                Ok(Value::Int(n)) => {
                    f.access = Access::Open;
                    f.evidence
                        .push(format!("DBSIZE answered {n} keys in db 0 without AUTH"));
                }
                Ok(Value::Error(msg)) if auth_error(&msg).is_some() => {
                    f.access = Access::AuthRequired;
                    f.evidence.push(format!("DBSIZE refused: -{msg}"));
                }
                Ok(other) => f
                    .evidence
                    .push(format!("DBSIZE gave an unexpected reply: {other:?}")),
                Err(e) => f.evidence.push(format!("DBSIZE failed: {e}")),
            }
        }
        Value::Error(msg) => match auth_error(&msg) {
            Some(why) => {
                f.product = Some("Redis".into());
                f.access = Access::AuthRequired;
                f.evidence
                    .push(format!("INFO without AUTH: server {why}: -{msg}"));
            }
            // A RESP error to INFO (renamed or disabled command) is still a RESP server,
            // but nothing proves access either way.
            None if msg.starts_with("ERR") => {
                f.product = Some("Redis".into());
                f.evidence
                    .push(format!("INFO answered with an error: -{msg}"));
            }
            None => return Outcome::NotMe(Seen::Bytes(msg.into_bytes())),
        },
        other => {
            return Outcome::NotMe(Seen::Bytes(format!("{other:?}").into_bytes()));
        }
    }
    Outcome::Found(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::redis::wire::{self as resp, RespLimits};
    use crate::testkit::fixture;

    /// `INFO server` of Debian's redis-server 7.0.15, captured from the lab.
    const INFO_SERVER: &[u8] = fixture!("redis/info_server.resp");

    /// The same server with `requirepass`: two `-NOAUTH` replies (INFO, DBSIZE).
    const NOAUTH: &[u8] = fixture!("redis/noauth.resp");

    #[test]
    fn real_info_reply() {
        let crate::net::Check::Complete(n) = resp::check(INFO_SERVER, RespLimits::default()) else {
            panic!("captured INFO is a complete frame")
        };
        let Value::Bulk(Some(b)) = resp::parse(&INFO_SERVER[..n]) else {
            panic!()
        };
        let info = parse_info(&String::from_utf8_lossy(&b)).unwrap();
        assert_eq!(info.product, "Redis");
        assert_eq!(info.version.as_deref(), Some("7.0.15"));
    }

    #[test]
    fn real_noauth_reply() {
        let Value::Error(msg) = resp::parse(NOAUTH) else {
            panic!()
        };
        assert_eq!(msg, "NOAUTH Authentication required.");
        assert!(auth_error(&msg).is_some());
    }

    #[test]
    fn protected_mode_and_acl_errors() {
        // Text Redis 7 sends to a remote client in protected mode (src/networking.c).
        let denied = "DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user.";
        assert!(auth_error(denied).unwrap().contains("protected mode"));
        assert!(
            auth_error("NOPERM this user has no permissions to run the 'dbsize' command").is_some()
        );
        assert!(auth_error("ERR unknown command 'INFO'").is_none());
    }

    #[test]
    fn replication_peers_and_forks() {
        let text = "# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:8.0.1\r\n# Replication\r\nrole:master\r\nslave0:ip=10.9.9.9,port=6379,state=online,offset=1,lag=0\r\n";
        let info = parse_info(text).unwrap();
        assert_eq!(info.product, "Valkey");
        assert_eq!(info.version.as_deref(), Some("8.0.1"));
        assert_eq!(info.peers, vec!["10.9.9.9:6379"]);
        assert!(parse_info("HTTP/1.1 200 OK\r\nServer: x\r\n").is_none());
    }
}
