//! Memcached (text protocol).
//!
//! `version` identifies it; `stats` is the read: memcached has no accounts in the text
//! protocol, so a server that answers `stats` with item counts lets anyone read every key.
//! With SASL or ASCII auth enabled the same commands fail with `CLIENT_ERROR`/`ERROR`.

use futures::future::BoxFuture;

use crate::driver::{Finding, Handler, Outcome, ProbeCtx, Protocol, Seen};
use crate::model::Access;
use crate::net::{Check, Conn, NetError};

pub const PROTOCOL: Protocol = Protocol {
    id: "memcached",
    name: "Memcached",
    default_ports: &[11211],
    server_speaks_first: false,
    default_credentials: &[],
    method: "`version`, then `stats` (item counts) without authentication",
    handler: Handler::Raw(probe),
    inventory: Some(inventory),
    subjects: Some(subjects),
    keys_exist: None,
};

/// The only command lines this module ever sends (`get` takes keys after it). All are reads:
/// `lru_crawler metadump all` lists key metadata without touching items; `get` returns values
/// (it refreshes an item's LRU position, as any client read does, and changes no data).
pub const ALLOWED_COMMANDS: &[&str] = &["version", "stats", "lru_crawler metadump all", "get"];

const MAX_LINE: usize = 1024;

pub(super) fn check_line(buf: &[u8]) -> Check {
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(i) => Check::Complete(i + 2),
        None if buf.len() > MAX_LINE => Check::Invalid("line too long".into()),
        None => Check::Incomplete,
    }
}

/// A `stats` reply ends with `END\r\n`; errors are one line.
pub(super) fn check_stats(buf: &[u8]) -> Check {
    if buf.starts_with(b"STAT ") {
        if let Some(i) = buf.windows(7).position(|w| w == b"\r\nEND\r\n") {
            return Check::Complete(i + 7);
        }
        return Check::Incomplete;
    }
    check_line(buf)
}

/// How memcached refuses a command to a client that has not authenticated (ASCII auth, SASL):
/// `CLIENT_ERROR …` or `ERROR`.
fn is_refusal(reply: &[u8]) -> bool {
    reply.starts_with(b"CLIENT_ERROR") || reply.starts_with(b"ERROR")
}

/// `VERSION 1.6.18` → `1.6.18`.
pub fn parse_version(line: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(line).ok()?.trim_end();
    let v = s.strip_prefix("VERSION ")?;
    (!v.is_empty() && v.len() < 64 && v.chars().all(|c| c.is_ascii_graphic()))
        .then(|| v.to_string())
}

/// `STAT name value` lines → value of `name`.
pub fn stat<'a>(reply: &'a str, name: &str) -> Option<&'a str> {
    reply.lines().find_map(|l| {
        let mut it = l.splitn(3, ' ');
        (it.next() == Some("STAT") && it.next() == Some(name))
            .then(|| it.next())
            .flatten()
    })
}

/// The one function that sends: refuses any line outside the allowlist (`get` with any keys).
async fn send_allowed(conn: &mut Conn, line: &str) -> Result<(), NetError> {
    let verb = if line.starts_with("get ") {
        "get"
    } else {
        line
    };
    if !ALLOWED_COMMANDS.contains(&verb) {
        return Err(NetError::Invalid(format!(
            "refusing to send non-allowlisted memcached command {verb}"
        )));
    }
    conn.send(format!("{line}\r\n").as_bytes()).await
}

async fn call(
    conn: &mut Conn,
    cmd: &str,
    check: fn(&[u8]) -> Check,
    cap: usize,
) -> Result<Vec<u8>, NetError> {
    send_allowed(conn, cmd).await?;
    conn.read_frame(cap, check).await
}

fn probe<'a>(ctx: &'a ProbeCtx, mut conn: Conn) -> BoxFuture<'a, Outcome> {
    Box::pin(async move {
        let line = match call(&mut conn, "version", check_line, MAX_LINE).await {
            Ok(l) => l,
            Err(e) => return Outcome::NotMe(Seen::from_error(&e, conn.buffered())),
        };
        let mut f = Finding::new(PROTOCOL.id);
        f.product = Some("Memcached".into());
        match parse_version(&line) {
            Some(v) => f.version = Some(v),
            None if line.starts_with(b"CLIENT_ERROR unauthenticated") => {
                f.access = Access::AuthRequired;
                f.evidence
                    .push("`version` refused: CLIENT_ERROR unauthenticated (ASCII auth)".into());
                return Outcome::Found(f);
            }
            None => return Outcome::NotMe(Seen::Bytes(line)),
        }
        f.evidence
            .push("`version` answered without authentication".into());
        match call(
            &mut conn,
            "stats",
            check_stats,
            ctx.opts.frame_cap.min(64 * 1024),
        )
        .await
        {
            Ok(reply) if reply.starts_with(b"STAT ") => {
                let text = String::from_utf8_lossy(&reply);
                let items = stat(&text, "curr_items").unwrap_or("?");
                f.access = Access::Open;
                f.evidence.push(format!(
                    "`stats` answered without authentication (curr_items {items})"
                ));
            }
            Ok(reply) if is_refusal(&reply) => {
                f.access = Access::AuthRequired;
                f.evidence.push(format!(
                    "`stats` refused: {}",
                    crate::driver::preview(&reply)
                ));
            }
            // Neither the statistics nor a refusal (a honeypot's `OK`, junk): nothing proven.
            Ok(reply) => f.evidence.push(format!(
                "`stats` gave neither statistics nor a refusal: {}",
                crate::driver::preview(&reply)
            )),
            Err(e) => f.evidence.push(format!("`stats` failed: {e}")),
        }
        Outcome::Found(f)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `version` then `stats` of Debian's memcached 1.6.18, captured from the lab.
    const REAL: &[u8] = include_bytes!("../../../fixtures/memcached/version_stats.txt");

    #[test]
    fn real_version_and_stats() {
        let Check::Complete(n) = check_line(REAL) else {
            panic!()
        };
        assert_eq!(parse_version(&REAL[..n]).as_deref(), Some("1.6.18"));
        let Check::Complete(m) = check_stats(&REAL[n..]) else {
            panic!()
        };
        assert_eq!(n + m, REAL.len());
        let text = String::from_utf8_lossy(&REAL[n..]);
        assert_eq!(stat(&text, "curr_items"), Some("1"));
    }

    #[test]
    fn other_protocols_are_not_memcached() {
        assert_eq!(parse_version(b"ERROR\r\n"), None);
        assert_eq!(parse_version(b"+PONG\r\n"), None);
        assert_eq!(parse_version(b"VERSION \x01\x02\r\n"), None);
        assert!(matches!(check_line(&[b'x'; 2000]), Check::Invalid(_)));
    }

    #[test]
    fn only_refusals_of_stats_mean_authentication_required() {
        assert!(is_refusal(b"CLIENT_ERROR unauthenticated\r\n"));
        assert!(is_refusal(b"ERROR\r\n"));
        // A honeypot that says `OK` to everything proves nothing either way.
        assert!(!is_refusal(b"OK\r\n"));
        assert!(!is_refusal(b"STORED\r\n"));
    }
}

// ---------------------------------------------------------------------------------------------
// Inventory

/// Keys looked at without `--full`; beyond it counts are extrapolated from `curr_items`.
const KEY_BUDGET: u64 = 200_000;
/// Key patterns kept.
const MAX_PATTERNS: usize = 1000;
/// Keys per `get`.
const GET_BATCH: usize = 50;

/// One metadump line: `key=session%3Aab exp=-1 la=… cas=… fetch=no cls=10 size=669`.
pub fn parse_metadump_line(line: &str) -> Option<(String, u64)> {
    let mut key = None;
    let mut size = 0;
    for field in line.split(' ') {
        if let Some(k) = field.strip_prefix("key=") {
            key = Some(crate::inventory::keys::percent_decode(k));
        } else if let Some(s) = field.strip_prefix("size=") {
            size = s.parse().unwrap_or(0);
        }
    }
    key.map(|k| (k, size))
}

/// Checker for a `get` reply: `VALUE <key> <flags> <bytes>\r\n<data>\r\n` … `END\r\n`. Each
/// announced length is checked against `cap` before its data is awaited.
pub(super) fn check_values(buf: &[u8], cap: usize) -> Check {
    let mut pos = 0;
    loop {
        let Some(eol) = buf[pos..].windows(2).position(|w| w == b"\r\n") else {
            return if buf.len() - pos > MAX_LINE {
                Check::Invalid("line too long".into())
            } else {
                Check::Incomplete
            };
        };
        let line = &buf[pos..pos + eol];
        if line == b"END" {
            return Check::Complete(pos + eol + 2);
        }
        let Some(rest) = line.strip_prefix(b"VALUE ") else {
            return Check::Invalid(format!("unexpected reply {}", crate::driver::preview(line)));
        };
        let n: Option<usize> = std::str::from_utf8(rest)
            .ok()
            .and_then(|r| r.split(' ').nth(2))
            .and_then(|b| b.parse().ok());
        let Some(n) = n else {
            return Check::Invalid("bad VALUE line".into());
        };
        if n > cap {
            return Check::TooLarge(cap);
        }
        let end = pos + eol + 2 + n + 2;
        if buf.len() < end {
            return Check::Incomplete;
        }
        pos = end;
    }
}

/// Values of a checked `get` reply, in order.
pub(super) fn parse_values(buf: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(eol) = buf[pos..].windows(2).position(|w| w == b"\r\n") {
        let line = &buf[pos..pos + eol];
        let Some(rest) = line.strip_prefix(b"VALUE ") else {
            break;
        };
        let text = String::from_utf8_lossy(rest);
        let mut parts = text.split(' ');
        let key = parts.next().unwrap_or("").to_string();
        let n: usize = parts.nth(1).and_then(|b| b.parse().ok()).unwrap_or(0);
        let start = pos + eol + 2;
        if start + n > buf.len() {
            break;
        }
        out.push((key, buf[start..start + n].to_vec()));
        pos = start + n + 2;
    }
    out
}

pub(super) fn check_line_lf(buf: &[u8]) -> Check {
    match buf.iter().position(|&b| b == b'\n') {
        Some(i) => Check::Complete(i + 1),
        None if buf.len() > MAX_LINE => Check::Invalid("line too long".into()),
        None => Check::Incomplete,
    }
}

fn inventory<'a>(
    ctx: &'a ProbeCtx,
    _finding: &'a Finding,
    opts: &'a crate::inventory::InventoryOptions,
) -> BoxFuture<'a, crate::inventory::Inventory> {
    Box::pin(async move {
        use crate::inventory::flatten::flatten_json;
        use crate::inventory::keys::Grouper;
        use crate::inventory::{Holding, Inventory};
        let mut inv = Inventory::default();
        let mut conn = match ctx.connect().await {
            Ok(c) => c,
            Err(e) => {
                inv.notes.push(format!("inventory connection failed: {e}"));
                return inv;
            }
        };
        let items: u64 = match call(&mut conn, "stats", check_stats, 64 * 1024).await {
            Ok(r) => stat(&String::from_utf8_lossy(&r), "curr_items")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            Err(e) => {
                inv.notes.push(format!("`stats` failed: {e}"));
                return inv;
            }
        };
        let mut budget = opts.byte_budget;
        let mut grouper = Grouper::new(MAX_PATTERNS.min(opts.max_containers), opts.sample);
        let limit = if opts.full { u64::MAX } else { KEY_BUDGET };
        // Metadump lines end with a bare LF; only the final END has CRLF.
        let complete = match metadump(&mut conn, &mut grouper, limit, &mut budget).await {
            Ok(done) => done,
            Err(e) => {
                inv.notes.push(format!(
                    "keys could not be listed ({e}); only the item total is known"
                ));
                inv.holdings.push(Holding {
                    name: "*".into(),
                    kind: "keyspace",
                    records: Some(items),
                    records_exact: true,
                    ..Holding::default()
                });
                return inv;
            }
        };
        if !complete {
            inv.notes.push(format!(
                "looked at {} of {items} keys; counts per pattern are extrapolated",
                grouper.total
            ));
            // The rest of the dump is still streaming on this connection.
            conn = match ctx.connect().await {
                Ok(c) => c,
                Err(e) => {
                    inv.notes.push(format!("reconnect failed: {e}"));
                    return inv;
                }
            };
        }
        let scanned = grouper.total.max(1);
        for (name, g) in grouper.finish() {
            let mut sample = Vec::new();
            let mut sample_keys = Vec::new();
            for batch in g.sample.chunks(GET_BATCH) {
                if budget == 0 || opts.sample == 0 {
                    break;
                }
                // Keys come from the server's own listing; a key with spaces or control bytes
                // cannot be asked for in the text protocol, so it is skipped.
                let keys: Vec<&str> = batch
                    .iter()
                    .map(String::as_str)
                    .filter(|k| k.bytes().all(|b| b.is_ascii_graphic()))
                    .collect();
                if keys.is_empty() {
                    continue;
                }
                let cap = ctx.opts.frame_cap;
                match call_get(&mut conn, &keys, cap).await {
                    Ok(reply) => {
                        budget = budget.saturating_sub(reply.len());
                        for (key, data) in parse_values(&reply) {
                            let text = String::from_utf8_lossy(&data).into_owned();
                            let rec =
                                flatten_json(&serde_json::Value::String(text), opts.value_cap);
                            if !rec.is_empty() {
                                sample.push(rec);
                                sample_keys.push(key);
                            }
                        }
                    }
                    Err(e) => {
                        inv.notes.push(format!("{name}: get failed: {e}"));
                        break;
                    }
                }
            }
            let records = if complete {
                g.keys
            } else {
                g.keys.saturating_mul(items) / scanned
            };
            inv.holdings.push(Holding {
                name,
                kind: "keyspace",
                records: Some(records),
                records_exact: complete,
                bytes: Some(g.bytes),
                system: false,
                schema: Vec::new(),
                sample,
                sample_keys,
            });
        }
        inv
    })
}

/// Streams `lru_crawler metadump all` into `grouper`, line by line so the caps bound memory, not
/// the number of keys. Returns whether the dump was read to its end.
async fn metadump(
    conn: &mut Conn,
    grouper: &mut crate::inventory::keys::Grouper,
    limit: u64,
    budget: &mut usize,
) -> Result<bool, NetError> {
    send_allowed(conn, "lru_crawler metadump all").await?;
    loop {
        let line = conn.read_frame(MAX_LINE + 2, check_line_lf).await?;
        *budget = budget.saturating_sub(line.len());
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if text == "END" {
            return Ok(true);
        }
        if text.starts_with("BUSY") || text.starts_with("ERROR") || text.starts_with("CLIENT_ERROR")
        {
            return Err(NetError::Invalid(format!("metadump refused: {text}")));
        }
        if let Some((key, size)) = parse_metadump_line(text) {
            grouper.add(&key, size);
        }
        if grouper.total >= limit || *budget == 0 {
            return Ok(false);
        }
    }
}

async fn call_get(conn: &mut Conn, keys: &[&str], cap: usize) -> Result<Vec<u8>, NetError> {
    send_allowed(conn, &format!("get {}", keys.join(" "))).await?;
    // Each value is at most `cap`; the whole reply at most one cap per key plus headers.
    let total = cap
        .saturating_mul(keys.len())
        .saturating_add(keys.len() * 300 + 16);
    conn.read_frame(total, |b| check_values(b, cap)).await
}

/// Memcached has no distinct count, so this streams the key dump on one connection and reads
/// the matching keys' values in `get` batches on a second, counting the person key's values
/// in a [`crate::driver::DistinctCounter`] until the dump ends or the budget does.
async fn count_pattern(
    ctx: &ProbeCtx,
    q: &crate::driver::SubjectsQuery<'_>,
    deadline: tokio::time::Instant,
) -> Result<crate::driver::Subjects, String> {
    use crate::inventory::keys::pattern;
    let name = &q.holding.name;
    if !name.ends_with('*') || name == crate::inventory::keys::OVERFLOW {
        return Err("not a key pattern".into());
    }
    let mut dump = ctx.connect().await.map_err(|e| e.to_string())?;
    let mut reader = ctx.connect().await.map_err(|e| e.to_string())?;
    send_allowed(&mut dump, "lru_crawler metadump all")
        .await
        .map_err(|e| e.to_string())?;
    let mut counter = crate::driver::DistinctCounter::default();
    let (mut keys_read, mut missing) = (0u64, 0u64);
    let mut batch: Vec<String> = Vec::with_capacity(GET_BATCH);
    let cap = ctx.opts.frame_cap;
    let mut done = false;
    while !done {
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "read {keys_read} keys of {name} before the time budget"
            ));
        }
        let line = dump
            .read_frame(MAX_LINE + 2, check_line_lf)
            .await
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if text == "END" {
            done = true;
        } else if text.starts_with("BUSY") || text.contains("ERROR") {
            return Err(format!("metadump refused: {text}"));
        } else if let Some((key, _)) = parse_metadump_line(text) {
            if pattern(&key) == *name && key.bytes().all(|b| b.is_ascii_graphic()) {
                batch.push(key);
            }
        }
        if batch.len() == GET_BATCH || (done && !batch.is_empty()) {
            let keys: Vec<&str> = batch.iter().map(String::as_str).collect();
            let reply = call_get(&mut reader, &keys, cap)
                .await
                .map_err(|e| e.to_string())?;
            let values = parse_values(&reply);
            // Keys that expired or were evicted since the dump are simply absent.
            missing += (batch.len() - values.len()) as u64;
            for (_, data) in values {
                keys_read += 1;
                let text = String::from_utf8_lossy(&data).into_owned();
                match crate::driver::value_at(text, &q.field, cap) {
                    Some(v) => counter.add(v.as_bytes()),
                    None => missing += 1,
                }
            }
            batch.clear();
        }
    }
    Ok(counter.answer(
        &q.field,
        keys_read,
        "keys",
        "lru_crawler metadump, get",
        missing,
    ))
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
        for q in queries {
            let deadline = tokio::time::Instant::now() + budget.per_container;
            out.push(count_pattern(ctx, q, deadline).await);
        }
        out
    })
}

#[cfg(test)]
mod inventory_tests {
    use super::*;

    #[test]
    fn metadump_lines() {
        let l = "key=session%3A76b2d9d0 exp=-1 la=1795871308 cas=1 fetch=no cls=10 size=669";
        assert_eq!(
            parse_metadump_line(l),
            Some(("session:76b2d9d0".into(), 669))
        );
        assert_eq!(parse_metadump_line("END"), None);
    }

    #[test]
    fn get_replies_are_checked_before_reading_values() {
        let r = b"VALUE a 0 2\r\nhi\r\nVALUE b 0 3\r\nyou\r\nEND\r\n";
        assert_eq!(check_values(r, 10), Check::Complete(r.len()));
        assert_eq!(
            parse_values(r),
            vec![("a".into(), b"hi".to_vec()), ("b".into(), b"you".to_vec())]
        );
        assert_eq!(
            check_values(b"VALUE a 0 999999999\r\n", 1024),
            Check::TooLarge(1024)
        );
        assert_eq!(check_values(b"VALUE a 0 5\r\nhel", 1024), Check::Incomplete);
        assert!(matches!(
            check_values(b"SERVER_ERROR out of memory\r\n", 1024),
            Check::Invalid(_)
        ));
    }

    #[test]
    fn only_reads_are_allowlisted() {
        for c in [
            "set",
            "delete",
            "flush_all",
            "incr",
            "touch",
            "lru_crawler enable",
            "slabs reassign",
        ] {
            assert!(!ALLOWED_COMMANDS.contains(&c), "{c}");
        }
    }
}
