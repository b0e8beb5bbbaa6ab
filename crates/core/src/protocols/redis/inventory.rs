//! Redis inventory: the databases of `INFO keyspace`, each `SCAN`ned (a bounded number of keys
//! without `--full`) into key patterns with counts and sizes, and a sample of values read with
//! bounded reads of each key's type.
//!
//! Names first: the SCANs of all databases share the first half of the inventory's time (each
//! database its part of what is left, so a huge db0 cannot leave db1 unlisted), and counts past
//! it are extrapolated; samples are read until the inventory's own deadline, after which the
//! remaining patterns are listed unsampled. The engine's timeout, which would drop every
//! pattern found, is never reached.

use tokio::time::{timeout_at, Instant};

use super::wire::{call, call_many, Value};
use crate::driver::{Finding, ProbeCtx};
use crate::net::{Conn, NetError};

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
pub(super) const SCAN_BUDGET: u64 = 200_000;

/// Largest part of a string value read for sampling.
pub(super) const STRING_READ: usize = 64 * 1024;

/// Key patterns kept per database.
pub(super) const MAX_PATTERNS: usize = 1000;

pub(super) fn bulk_texts(v: &Value) -> Vec<String> {
    match v {
        Value::Array(Some(items)) => items.iter().filter_map(Value::text).collect(),
        _ => Vec::new(),
    }
}

/// Turns one key's value into a flattened record.
pub(super) fn record_of(kind: &str, reply: &Value, cap: usize) -> Option<crate::inventory::Record> {
    use crate::inventory::flatten::{flatten_bytes, flatten_json, flatten_row};
    use serde_json::Value as J;
    match kind {
        // As bytes: pickled, MessagePack and compressed values are not text.
        "string" => match reply {
            Value::Bulk(Some(b)) => Some(flatten_bytes(b, cap)),
            _ => reply.text().map(|t| flatten_json(&J::String(t), cap)),
        },
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
pub(super) fn read_command(kind: &str, key: &str, n: usize) -> Option<Vec<String>> {
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

/// `SELECT db` on `conn`.
async fn select(conn: &mut Conn, ctx: &ProbeCtx, db: u32) -> Result<(), NetError> {
    match call(conn, ctx, &["SELECT", &db.to_string()]).await? {
        Value::Simple(_) => Ok(()),
        other => Err(NetError::Invalid(format!("SELECT {db} answered {other:?}"))),
    }
}

/// The keys to sample of each pattern listed: (index in the inventory's holdings, keys).
type ToSample = Vec<(usize, Vec<String>)>;

/// Lists one database's key patterns (SCAN until `until` or the key budget), with counts,
/// into `inv`, unsampled; returns what to sample of each.
pub(super) async fn list_db(
    conn: &mut Conn,
    ctx: &ProbeCtx,
    opts: &crate::inventory::InventoryOptions,
    (db, dbsize): (u32, u64),
    budget: &mut usize,
    until: Instant,
    inv: &mut crate::inventory::Inventory,
) -> Result<ToSample, NetError> {
    use crate::inventory::keys::Grouper;
    use crate::inventory::Holding;
    select(conn, ctx, db).await?;
    let mut groups = Grouper::new(MAX_PATTERNS, opts.sample);
    let mut cursor = "0".to_string();
    let limit = if opts.full { u64::MAX } else { SCAN_BUDGET };
    let mut timed_out = false;
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
        if Instant::now() >= until {
            timed_out = true;
            break;
        }
    }
    let complete = cursor == "0";
    if !complete {
        inv.notes.push(format!(
            "db{db}: looked at {} of {dbsize} keys{}; counts per pattern are extrapolated",
            groups.total,
            if timed_out {
                " (the listing's share of the time budget ran out)"
            } else {
                ""
            }
        ));
    }
    let scanned = groups.total.max(1);
    let mut to_sample = Vec::new();
    for (name, g) in groups.finish() {
        let records = if complete {
            g.keys
        } else {
            g.keys.saturating_mul(dbsize) / scanned
        };
        to_sample.push((inv.holdings.len(), g.sample));
        inv.holdings.push(Holding {
            name: format!("db{db}:{name}"),
            kind: "keyspace",
            records: Some(records),
            records_exact: complete,
            bytes: None,
            system: false,
            schema: Vec::new(),
            sample: Vec::new(),
            sample_keys: Vec::new(),
        });
    }
    Ok(to_sample)
}

/// Reads the sample of each pattern of database `db` listed by [`list_db`], until `until`:
/// `Ok(false)` when the time ran out with a read outstanding (the connection may hold a late
/// reply).
async fn sample_db(
    conn: &mut Conn,
    ctx: &ProbeCtx,
    opts: &crate::inventory::InventoryOptions,
    (db, to_sample): (u32, ToSample),
    budget: &mut usize,
    until: Instant,
    inv: &mut crate::inventory::Inventory,
) -> Result<bool, NetError> {
    select(conn, ctx, db).await?;
    for (at, keys) in to_sample {
        for chunk in keys.chunks(100) {
            if *budget == 0 || Instant::now() >= until {
                return Ok(true);
            }
            let types: Vec<Vec<String>> = chunk
                .iter()
                .map(|k| vec!["TYPE".into(), k.clone()])
                .collect();
            let Ok(kinds) = timeout_at(until, call_many(conn, ctx, &types)).await else {
                return Ok(false);
            };
            let (kinds, bytes) = kinds?;
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
            let Ok(values) = timeout_at(until, call_many(conn, ctx, &cmds)).await else {
                return Ok(false);
            };
            let (values, bytes) = values?;
            *budget = budget.saturating_sub(bytes);
            let h = &mut inv.holdings[at];
            for ((i, _), v) in reads.iter().zip(values.iter()) {
                if let Some(rec) = record_of(&kinds[*i], v, opts.value_cap) {
                    if !rec.is_empty() {
                        h.sample.push(rec);
                        h.sample_keys.push(chunk[*i].clone());
                    }
                }
            }
        }
    }
    Ok(true)
}

/// The protocol's [`crate::driver::InventoryFn`].
pub(super) async fn inventory(
    ctx: &ProbeCtx,
    _finding: &Finding,
    opts: &crate::inventory::InventoryOptions,
) -> crate::inventory::Inventory {
    let mut inv = crate::inventory::Inventory::default();
    // The inventory outlives the work: a round trip that outlasts even the work's own
    // deadlines (a starved machine) ends here, before the engine's timeout would drop it all.
    let margin = crate::driver::margin(opts.time_budget);
    let hard = Instant::now() + opts.time_budget.saturating_sub(margin / 2);
    if timeout_at(hard, work(ctx, opts, &mut inv)).await.is_err() {
        inv.notes.push(format!(
            "inventory stopped at its {} time budget; what was listed by then is kept",
            crate::driver::secs(opts.time_budget)
        ));
    }
    inv
}

async fn work(
    ctx: &ProbeCtx,
    opts: &crate::inventory::InventoryOptions,
    inv: &mut crate::inventory::Inventory,
) {
    let Some(mut conn) = ctx.connect_or_note(&mut inv.notes, "inventory").await else {
        return;
    };
    let dbs = match call(&mut conn, ctx, &["INFO", "keyspace"]).await {
        Ok(v) => parse_keyspace(&v.text().unwrap_or_default()),
        Err(e) => {
            inv.notes.push(format!("INFO keyspace failed: {e}"));
            return;
        }
    };
    let mut budget = opts.byte_budget;
    // Stop a little before the engine's timeout, which would drop every pattern found.
    let start = Instant::now();
    let work = opts
        .time_budget
        .saturating_sub(crate::driver::margin(opts.time_budget));
    let (scan_end, sample_end) = (start + work / 2, start + work);
    // Names first: every database is listed before any value is read.
    let mut listed: Vec<(u32, ToSample)> = Vec::new();
    let n_dbs = dbs.len();
    for (i, (db, keys)) in dbs.into_iter().enumerate() {
        if inv.holdings.len() >= opts.max_containers {
            inv.notes.push(format!(
                "stopped listing at {} key patterns",
                opts.max_containers
            ));
            break;
        }
        let now = Instant::now();
        let left = u32::try_from(n_dbs - i).unwrap_or(u32::MAX);
        let until = now + scan_end.saturating_duration_since(now) / left;
        match list_db(&mut conn, ctx, opts, (db, keys), &mut budget, until, inv).await {
            Ok(plan) => listed.push((db, plan)),
            Err(e) => {
                inv.notes.push(format!("db{db}: {e}"));
                // The connection may hold half a reply; the next database gets a fresh one.
                match ctx.connect().await {
                    Ok(c) => conn = c,
                    Err(_) => return,
                }
            }
        }
        if budget == 0 {
            inv.notes.push(format!(
                "stopped at the {}-byte read budget",
                opts.byte_budget
            ));
            return;
        }
    }
    if opts.sample == 0 {
        return;
    }
    for (db, plan) in listed {
        match sample_db(
            &mut conn,
            ctx,
            opts,
            (db, plan),
            &mut budget,
            sample_end,
            inv,
        )
        .await
        {
            Ok(true) => {}
            Ok(false) => {
                inv.notes.push(format!(
                    "db{db}: samples cut short at the time budget; the patterns after it are \
                     listed unsampled"
                ));
                return;
            }
            Err(e) => {
                inv.notes.push(format!("db{db}: sampling failed: {e}"));
                match ctx.connect().await {
                    Ok(c) => conn = c,
                    Err(_) => return,
                }
            }
        }
        if Instant::now() >= sample_end {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::redis::wire::allowed;

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
