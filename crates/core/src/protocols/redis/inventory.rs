//! Redis (and RESP-compatible servers: Valkey, KeyDB, Dragonfly).
//!
//! Asks `INFO` without `AUTH`. A Redis answers with its info text, or `-NOAUTH` when a password
//! is set, or `-DENIED` in protected mode. `open` needs a second, data-level read (`DBSIZE`
//! returning an integer), so a peer that echoes anything plausible is not called open.

use futures::future::BoxFuture;

use super::wire::{self as resp, RespLimits, Value};
use crate::driver::{Finding, Handler, Outcome, ProbeCtx, Protocol, Seen};
use crate::model::Access;
use crate::net::{Conn, NetError};

pub const PROTOCOL: Protocol = Protocol {
    id: "redis",
    name: "Redis",
    default_ports: &[6379, 6380],
    server_speaks_first: false,
    default_credentials: &[],
    method:
        "INFO and DBSIZE without AUTH; -NOAUTH, -DENIED or -NOPERM mean authentication is required",
    handler: Handler::Raw(probe),
    inventory: Some(inventory),
    subjects: Some(subjects),
    keys_exist: Some(keys_exist),
};

/// The only commands this module ever sends. All are read-only: `SELECT` only picks the
/// connection's logical database; the rest read keys, types and values, each bounded
/// (`GETRANGE` instead of `GET`, one `HSCAN`/`SSCAN` page, `LRANGE`/`ZRANGE`/`XRANGE` with limits,
/// `HGET` of one field; `EXISTS` answers only how many of the named keys exist).
pub const ALLOWED_COMMANDS: &[&str] = &[
    "INFO", "DBSIZE", "SELECT", "SCAN", "TYPE", "GETRANGE", "HSCAN", "HGET", "LRANGE", "SSCAN",
    "ZRANGE", "XRANGE", "EXISTS",
];

fn allowed(name: &str) -> Result<(), NetError> {
    if ALLOWED_COMMANDS
        .iter()
        .any(|c| c.eq_ignore_ascii_case(name))
    {
        Ok(())
    } else {
        Err(NetError::Invalid(format!(
            "refusing to send non-allowlisted Redis command {name}"
        )))
    }
}

fn limits(ctx: &ProbeCtx) -> RespLimits {
    RespLimits {
        max_bulk: ctx.opts.frame_cap,
        max_items: 10_000,
    }
}

/// Sends one allowlisted command and reads one reply.
async fn call(conn: &mut Conn, ctx: &ProbeCtx, args: &[&str]) -> Result<Value, NetError> {
    allowed(args.first().copied().unwrap_or(""))?;
    conn.send(&resp::command(args)).await?;
    let lim = limits(ctx);
    let frame = conn
        .read_frame(ctx.opts.frame_cap + 64, |b| resp::check(b, lim))
        .await?;
    Ok(resp::parse(&frame))
}

/// Sends a batch of allowlisted commands at once (pipelining) and reads their replies in order.
/// Returns the replies and the bytes they took.
async fn call_many(
    conn: &mut Conn,
    ctx: &ProbeCtx,
    cmds: &[Vec<String>],
) -> Result<(Vec<Value>, usize), NetError> {
    let mut out = Vec::new();
    for c in cmds {
        allowed(c.first().map(String::as_str).unwrap_or(""))?;
        let args: Vec<&str> = c.iter().map(String::as_str).collect();
        out.extend_from_slice(&resp::command(&args));
    }
    conn.send(&out).await?;
    let lim = limits(ctx);
    let mut replies = Vec::with_capacity(cmds.len());
    let mut bytes = 0;
    for _ in cmds {
        let frame = conn
            .read_frame(ctx.opts.frame_cap + 64, |b| resp::check(b, lim))
            .await?;
        bytes += frame.len();
        replies.push(resp::parse(&frame));
    }
    Ok((replies, bytes))
}

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

fn join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn capitalise(s: &str) -> String {
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

fn probe<'a>(ctx: &'a ProbeCtx, mut conn: Conn) -> BoxFuture<'a, Outcome> {
    Box::pin(async move {
        let reply = match call(&mut conn, ctx, &["INFO"]).await {
            Ok(v) => v,
            Err(e) => return Outcome::NotMe(Seen::from_error(&e, conn.buffered())),
        };
        let mut f = Finding::new(PROTOCOL.id);
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
                match call(&mut conn, ctx, &["DBSIZE"]).await {
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `INFO server` of Debian's redis-server 7.0.15, captured from the lab.
    const INFO_SERVER: &[u8] = include_bytes!("../../../fixtures/redis/info_server.resp");
    /// The same server with `requirepass`: two `-NOAUTH` replies (INFO, DBSIZE).
    const NOAUTH: &[u8] = include_bytes!("../../../fixtures/redis/noauth.resp");

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

// ---------------------------------------------------------------------------------------------
// Inventory

/// Keys per logical database from `INFO keyspace` (`db0:keys=31207,expires=0,avg_ttl=0`).
pub fn parse_keyspace(text: &str) -> Vec<(u32, u64)> {
    text.lines()
        .filter_map(|l| {
            let (db, rest) = l.trim_end().split_once(':')?;
            let n: u32 = db.strip_prefix("db")?.parse().ok()?;
            let keys = rest
                .split(',')
                .find_map(|kv| kv.strip_prefix("keys="))?
                .parse()
                .ok()?;
            Some((n, keys))
        })
        .collect()
}

/// Keys looked at per database without `--full`; beyond it counts are extrapolated.
const SCAN_BUDGET: u64 = 200_000;
/// Largest part of a string value read for sampling.
const STRING_READ: usize = 64 * 1024;
/// Key patterns kept per database.
const MAX_PATTERNS: usize = 1000;

fn bulk_texts(v: &Value) -> Vec<String> {
    match v {
        Value::Array(Some(items)) => items.iter().filter_map(Value::text).collect(),
        _ => Vec::new(),
    }
}

/// Turns one key's value into a flattened record.
fn record_of(kind: &str, reply: &Value, cap: usize) -> Option<crate::inventory::Record> {
    use crate::inventory::flatten::{flatten_json, flatten_row};
    use serde_json::Value as J;
    match kind {
        "string" => reply.text().map(|t| flatten_json(&J::String(t), cap)),
        "hash" => {
            // HSCAN reply: [cursor, [field, value, field, value …]]
            let Value::Array(Some(parts)) = reply else {
                return None;
            };
            let flat = bulk_texts(parts.get(1)?);
            let pairs: Vec<(&str, Option<&str>)> = flat
                .chunks(2)
                .filter(|c| c.len() == 2)
                .map(|c| (c[0].as_str(), Some(c[1].as_str())))
                .collect();
            Some(flatten_row(pairs, cap))
        }
        "set" => {
            let Value::Array(Some(parts)) = reply else {
                return None;
            };
            let items = bulk_texts(parts.get(1)?);
            Some(flatten_json(
                &J::Array(items.into_iter().map(J::String).collect()),
                cap,
            ))
        }
        "list" | "zset" => {
            let items = bulk_texts(reply);
            Some(flatten_json(
                &J::Array(items.into_iter().map(J::String).collect()),
                cap,
            ))
        }
        "stream" => {
            // [[id, [field, value …]] …] → one record of the entries' fields.
            let Value::Array(Some(entries)) = reply else {
                return None;
            };
            let mut pairs = Vec::new();
            for e in entries {
                if let Value::Array(Some(parts)) = e {
                    let flat = parts.get(1).map(bulk_texts).unwrap_or_default();
                    for c in flat.chunks(2).filter(|c| c.len() == 2) {
                        pairs.push((c[0].clone(), c[1].clone()));
                    }
                }
            }
            Some(flatten_row(
                pairs.iter().map(|(k, v)| (k.as_str(), Some(v.as_str()))),
                cap,
            ))
        }
        _ => None,
    }
}

/// The bounded read of one key of a known type.
fn read_command(kind: &str, key: &str, n: usize) -> Option<Vec<String>> {
    let last = n.saturating_sub(1).to_string();
    let c = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect());
    match kind {
        "string" => c(&["GETRANGE", key, "0", &(STRING_READ - 1).to_string()]),
        "hash" => c(&["HSCAN", key, "0", "COUNT", "200"]),
        "set" => c(&["SSCAN", key, "0", "COUNT", "50"]),
        "list" => c(&["LRANGE", key, "0", &last]),
        "zset" => c(&["ZRANGE", key, "0", &last]),
        "stream" => c(&["XRANGE", key, "-", "+", "COUNT", "10"]),
        _ => None,
    }
}

async fn inventory_db(
    conn: &mut Conn,
    ctx: &ProbeCtx,
    opts: &crate::inventory::InventoryOptions,
    db: u32,
    dbsize: u64,
    budget: &mut usize,
    inv: &mut crate::inventory::Inventory,
) -> Result<(), NetError> {
    use crate::inventory::keys::Grouper;
    use crate::inventory::Holding;
    match call(conn, ctx, &["SELECT", &db.to_string()]).await? {
        Value::Simple(_) => {}
        other => return Err(NetError::Invalid(format!("SELECT {db} answered {other:?}"))),
    }
    let mut groups = Grouper::new(MAX_PATTERNS, opts.sample);
    let mut cursor = "0".to_string();
    let limit = if opts.full { u64::MAX } else { SCAN_BUDGET };
    loop {
        let (replies, bytes) = call_many(
            conn,
            ctx,
            &[vec![
                "SCAN".into(),
                cursor.clone(),
                "COUNT".into(),
                "1000".into(),
            ]],
        )
        .await?;
        *budget = budget.saturating_sub(bytes);
        let Some(Value::Array(Some(parts))) = replies.into_iter().next() else {
            return Err(NetError::Invalid("SCAN reply is not an array".into()));
        };
        cursor = parts
            .first()
            .and_then(Value::text)
            .unwrap_or_else(|| "0".into());
        for key in parts.get(1).map(bulk_texts).unwrap_or_default() {
            groups.add(&key, 0);
        }
        if cursor == "0" || groups.total >= limit || *budget == 0 {
            break;
        }
    }
    let complete = cursor == "0";
    if !complete {
        inv.notes.push(format!(
            "db{db}: looked at {} of {dbsize} keys; counts per pattern are extrapolated",
            groups.total
        ));
    }
    let scanned = groups.total.max(1);
    for (name, g) in groups.finish() {
        let records = if complete {
            g.keys
        } else {
            g.keys.saturating_mul(dbsize) / scanned
        };
        let mut sample = Vec::new();
        let mut sample_keys = Vec::new();
        for chunk in g.sample.chunks(100) {
            if *budget == 0 || opts.sample == 0 {
                break;
            }
            let types: Vec<Vec<String>> = chunk
                .iter()
                .map(|k| vec!["TYPE".into(), k.clone()])
                .collect();
            let (kinds, bytes) = call_many(conn, ctx, &types).await?;
            *budget = budget.saturating_sub(bytes);
            let kinds: Vec<String> = kinds.iter().map(|k| k.text().unwrap_or_default()).collect();
            let reads: Vec<(usize, Vec<String>)> = kinds
                .iter()
                .enumerate()
                .filter_map(|(i, kind)| {
                    read_command(kind, &chunk[i], opts.sample.min(50)).map(|c| (i, c))
                })
                .collect();
            let cmds: Vec<Vec<String>> = reads.iter().map(|(_, c)| c.clone()).collect();
            let (values, bytes) = call_many(conn, ctx, &cmds).await?;
            *budget = budget.saturating_sub(bytes);
            for ((i, _), v) in reads.iter().zip(values.iter()) {
                if let Some(rec) = record_of(&kinds[*i], v, opts.value_cap) {
                    if !rec.is_empty() {
                        sample.push(rec);
                        sample_keys.push(chunk[*i].clone());
                    }
                }
            }
        }
        inv.holdings.push(Holding {
            name: format!("db{db}:{name}"),
            kind: "keyspace",
            records: Some(records),
            records_exact: complete,
            bytes: None,
            system: false,
            schema: Vec::new(),
            sample,
            sample_keys,
        });
    }
    Ok(())
}

fn inventory<'a>(
    ctx: &'a ProbeCtx,
    _finding: &'a Finding,
    opts: &'a crate::inventory::InventoryOptions,
) -> BoxFuture<'a, crate::inventory::Inventory> {
    Box::pin(async move {
        let mut inv = crate::inventory::Inventory::default();
        let mut conn = match ctx.connect().await {
            Ok(c) => c,
            Err(e) => {
                inv.notes.push(format!("inventory connection failed: {e}"));
                return inv;
            }
        };
        let dbs = match call(&mut conn, ctx, &["INFO", "keyspace"]).await {
            Ok(v) => parse_keyspace(&v.text().unwrap_or_default()),
            Err(e) => {
                inv.notes.push(format!("INFO keyspace failed: {e}"));
                return inv;
            }
        };
        let mut budget = opts.byte_budget;
        for (db, keys) in dbs {
            if inv.holdings.len() >= opts.max_containers {
                inv.notes.push(format!(
                    "stopped listing at {} key patterns",
                    opts.max_containers
                ));
                break;
            }
            if let Err(e) =
                inventory_db(&mut conn, ctx, opts, db, keys, &mut budget, &mut inv).await
            {
                inv.notes.push(format!("db{db}: {e}"));
                // The connection may hold half a reply; the next database gets a fresh one.
                match ctx.connect().await {
                    Ok(c) => conn = c,
                    Err(_) => break,
                }
            }
            if budget == 0 {
                inv.notes.push(format!(
                    "stopped at the {}-byte read budget",
                    opts.byte_budget
                ));
                break;
            }
        }
        inv
    })
}

// ---------------------------------------------------------------------------------------------
// Distinct people

/// `dbN:prefix:*` → (N, `prefix:`), for the patterns the grouper makes; None for others
/// (a single key, the overflow group).
fn split_container(name: &str) -> Option<(u32, &str)> {
    let (db, pattern) = name.split_once(':')?;
    let db = db.strip_prefix("db")?.parse().ok()?;
    let prefix = pattern.strip_suffix('*')?;
    (!prefix.is_empty() && !prefix.contains('*')).then_some((db, prefix))
}

/// Escapes SCAN MATCH's glob characters in a literal prefix.
fn glob_literal(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 2);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The person key's value in one key's reply (`HGET` of a hash field, or the JSON path in a
/// string read with `GETRANGE`).
fn person_value(kind: &str, reply: &Value, field: &str, cap: usize) -> Option<String> {
    match kind {
        "hash" => reply.text(),
        "string" => crate::driver::value_at(reply.text()?, field, cap),
        _ => None,
    }
}

/// The read of one key's person field: `HGET` of a hash, the bounded head of anything else.
fn read_person(kind: &str, key: &str, field: &str) -> Vec<String> {
    match kind {
        "hash" => vec!["HGET".into(), key.into(), field.into()],
        _ => vec![
            "GETRANGE".into(),
            key.into(),
            "0".into(),
            (STRING_READ - 1).to_string(),
        ],
    }
}

/// Redis has no distinct count of values, so this reads the person key of every key of the
/// pattern (SCAN MATCH, then pipelined `TYPE` and `HGET`/`GETRANGE` in batches) into a
/// [`crate::driver::DistinctCounter`], within the budget.
async fn count_pattern(
    conn: &mut Conn,
    ctx: &ProbeCtx,
    q: &crate::driver::SubjectsQuery<'_>,
    deadline: tokio::time::Instant,
) -> Result<crate::driver::Subjects, String> {
    use crate::inventory::keys::pattern;
    let (db, prefix) =
        split_container(&q.holding.name).ok_or_else(|| "not a key pattern".to_string())?;
    let want = format!("{prefix}*");
    select(conn, ctx, db).await?;
    let mut counter = crate::driver::DistinctCounter::default();
    let (mut keys_read, mut missing) = (0u64, 0u64);
    let mut uniform: Option<String> = None;
    let mut cursor = "0".to_string();
    let matcher = format!("{}*", glob_literal(prefix));
    loop {
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "read {keys_read} keys of {} before the time budget",
                q.holding.name
            ));
        }
        let reply = call(
            conn,
            ctx,
            &["SCAN", &cursor, "MATCH", &matcher, "COUNT", "1000"],
        )
        .await
        .map_err(|e| e.to_string())?;
        let Value::Array(Some(parts)) = reply else {
            return Err("SCAN reply is not an array".into());
        };
        cursor = parts
            .first()
            .and_then(Value::text)
            .unwrap_or_else(|| "0".into());
        let keys: Vec<String> = parts
            .get(1)
            .map(bulk_texts)
            .unwrap_or_default()
            .into_iter()
            .filter(|k| pattern(k) == want)
            .collect();
        if !keys.is_empty() {
            // A pattern's keys nearly always share one type: once a batch showed a single
            // type, later batches skip TYPE and read directly; a WRONGTYPE reply sends that
            // batch back through TYPE.
            let mut values = None;
            let mut kinds = Vec::new();
            if let Some(kind) = &uniform {
                let reads: Vec<Vec<String>> = keys
                    .iter()
                    .map(|k| read_person(kind, k, &q.field))
                    .collect();
                let (v, _) = call_many(conn, ctx, &reads)
                    .await
                    .map_err(|e| e.to_string())?;
                if !v.iter().any(|r| matches!(r, Value::Error(_))) {
                    kinds = vec![kind.clone(); keys.len()];
                    values = Some(v);
                }
            }
            let values = match values {
                Some(v) => v,
                None => {
                    let types: Vec<Vec<String>> = keys
                        .iter()
                        .map(|k| vec!["TYPE".into(), k.clone()])
                        .collect();
                    let (k, _) = call_many(conn, ctx, &types)
                        .await
                        .map_err(|e| e.to_string())?;
                    kinds = k.iter().map(|k| k.text().unwrap_or_default()).collect();
                    uniform = kinds
                        .iter()
                        .all(|k| *k == kinds[0])
                        .then(|| kinds[0].clone());
                    let reads: Vec<Vec<String>> = keys
                        .iter()
                        .zip(&kinds)
                        .map(|(k, kind)| read_person(kind, k, &q.field))
                        .collect();
                    call_many(conn, ctx, &reads)
                        .await
                        .map_err(|e| e.to_string())?
                        .0
                }
            };
            for (kind, v) in kinds.iter().zip(&values) {
                keys_read += 1;
                match person_value(kind, v, &q.field, STRING_READ) {
                    Some(p) => counter.add(p.as_bytes()),
                    None => missing += 1,
                }
            }
        }
        if cursor == "0" {
            break;
        }
    }
    Ok(counter.answer(
        &q.field,
        keys_read,
        "keys",
        &format!("SCAN MATCH {want}"),
        missing,
    ))
}

/// `SELECT db` on `conn`, for the distinct counts and key checks (errors in words).
async fn select(conn: &mut Conn, ctx: &ProbeCtx, db: u32) -> Result<(), String> {
    match call(conn, ctx, &["SELECT", &db.to_string()])
        .await
        .map_err(|e| e.to_string())?
    {
        Value::Simple(_) => Ok(()),
        other => Err(format!("SELECT {db} answered {other:?}")),
    }
}

/// Keys per `EXISTS` (it takes many and answers how many exist).
const EXISTS_BATCH: usize = 500;

/// The registered [`crate::driver::KeysExistFn`]: `SELECT` the container's database, then
/// `EXISTS k1 k2 …` (read-only; it answers a count, not the values).
fn keys_exist<'a>(
    ctx: &'a ProbeCtx,
    container: &'a str,
    keys: &'a [String],
) -> BoxFuture<'a, Result<u64, String>> {
    Box::pin(async move {
        let (db, _) = split_container(container).ok_or_else(|| "not a key pattern".to_string())?;
        let mut conn = ctx.connect().await.map_err(|e| e.to_string())?;
        select(&mut conn, ctx, db).await?;
        let mut found = 0;
        for batch in keys.chunks(EXISTS_BATCH) {
            let mut args = vec!["EXISTS"];
            args.extend(batch.iter().map(String::as_str));
            match call(&mut conn, ctx, &args).await {
                Ok(Value::Int(n)) => found += n.clamp(0, batch.len() as i64) as u64,
                Ok(other) => return Err(format!("EXISTS answered {other:?}")),
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(found)
    })
}

/// The registered [`crate::driver::SubjectsFn`].
fn subjects<'a>(
    ctx: &'a ProbeCtx,
    _finding: &'a Finding,
    _opts: &'a crate::inventory::InventoryOptions,
    budget: crate::driver::SubjectsBudget,
    queries: &'a [crate::driver::SubjectsQuery<'a>],
) -> BoxFuture<'a, Vec<Result<crate::driver::Subjects, String>>> {
    Box::pin(async move {
        let mut out = Vec::with_capacity(queries.len());
        let mut conn: Option<Conn> = None;
        for q in queries {
            if conn.is_none() {
                conn = ctx.connect().await.ok();
            }
            let Some(c) = conn.as_mut() else {
                out.push(Err("connection failed".to_string()));
                continue;
            };
            let deadline = tokio::time::Instant::now() + budget.per_container;
            let r = count_pattern(c, ctx, q, deadline).await;
            if r.is_err() {
                // The connection may hold half a reply; the next pattern gets a fresh one.
                conn = None;
            }
            out.push(r);
        }
        out
    })
}

#[cfg(test)]
mod inventory_tests {
    use super::*;

    #[test]
    fn keyspace_lines() {
        let text = "# Keyspace\r\ndb0:keys=31207,expires=0,avg_ttl=0\r\ndb1:keys=3331,expires=2,avg_ttl=9\r\n";
        assert_eq!(parse_keyspace(text), vec![(0, 31207), (1, 3331)]);
    }

    #[test]
    fn every_read_command_is_allowlisted() {
        for kind in ["string", "hash", "set", "list", "zset", "stream"] {
            let cmd = read_command(kind, "k", 10).unwrap();
            assert!(allowed(&cmd[0]).is_ok(), "{cmd:?}");
        }
        assert!(read_command("vectorset", "k", 10).is_none());
        for forbidden in [
            "SET", "DEL", "FLUSHALL", "CONFIG", "KEYS", "GET", "HGETALL", "EVAL", "SAVE", "HSET",
            "PFADD",
        ] {
            assert!(
                allowed(forbidden).is_err(),
                "{forbidden} must not be allowlisted"
            );
        }
    }

    #[test]
    fn containers_and_globs() {
        assert_eq!(split_container("db0:user:*"), Some((0, "user:")));
        assert_eq!(split_container("db1:alexa:*"), Some((1, "alexa:")));
        assert_eq!(split_container("db0:queue:jobs"), None);
        assert_eq!(split_container("db0:*"), None);
        assert_eq!(glob_literal("a[1]?*\\"), "a\\[1\\]\\?\\*\\\\");
        let s = Value::Bulk(Some(br#"{"user_id":"u1","n":2}"#.to_vec()));
        assert_eq!(
            person_value("string", &s, "user_id", 64).as_deref(),
            Some("u1")
        );
        let h = Value::Bulk(Some(b"u2".to_vec()));
        assert_eq!(
            person_value("hash", &h, "user_id", 64).as_deref(),
            Some("u2")
        );
        assert_eq!(
            person_value("hash", &Value::Bulk(None), "user_id", 64),
            None
        );
    }

    #[test]
    fn values_become_records() {
        let session = Value::Bulk(Some(br#"{"user_id":"u1","email":"a@b.c"}"#.to_vec()));
        let r = record_of("string", &session, 64).unwrap();
        assert_eq!(
            r,
            vec![
                ("user_id".to_string(), "u1".to_string()),
                ("email".into(), "a@b.c".into())
            ]
        );
        let hash = Value::Array(Some(vec![
            Value::Bulk(Some(b"0".to_vec())),
            Value::Array(Some(vec![
                Value::Bulk(Some(b"mac".to_vec())),
                Value::Bulk(Some(b"AA:BB".to_vec())),
            ])),
        ]));
        assert_eq!(
            record_of("hash", &hash, 64).unwrap(),
            vec![("mac".to_string(), "AA:BB".to_string())]
        );
        let list = Value::Array(Some(vec![Value::Bulk(Some(
            br#"{"request_id":"r"}"#.to_vec(),
        ))]));
        assert_eq!(
            record_of("list", &list, 64).unwrap(),
            vec![("[].request_id".to_string(), "r".to_string())]
        );
        assert_eq!(
            record_of("string", &Value::Bulk(Some(b"42".to_vec())), 64).unwrap()[0].0,
            "value"
        );
    }
}
