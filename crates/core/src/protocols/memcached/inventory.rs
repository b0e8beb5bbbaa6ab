//! Memcached inventory: keys listed by `lru_crawler metadump all` (key metadata only, items
//! untouched), grouped into key patterns with counts and sizes, and a sample of values read
//! with `get` in batches.

use super::wire::{
    call, call_get, check_line_lf, check_stats, parse_metadump_line, parse_values, send_allowed,
    stat, GET_BATCH, MAX_LINE,
};
use crate::driver::{Finding, ProbeCtx};
use crate::net::{Conn, NetError};

/// Keys looked at without `--full`; beyond it counts are extrapolated from `curr_items`.
pub(super) const KEY_BUDGET: u64 = 200_000;

/// Key patterns kept.
pub(super) const MAX_PATTERNS: usize = 1000;

/// The protocol's [`crate::driver::InventoryFn`].
pub(super) async fn inventory(
    ctx: &ProbeCtx,
    _finding: &Finding,
    opts: &crate::inventory::InventoryOptions,
) -> crate::inventory::Inventory {
    use crate::inventory::flatten::flatten_bytes;
    use crate::inventory::keys::Grouper;
    use crate::inventory::{Holding, Inventory};
    let mut inv = Inventory::default();
    let Some(mut conn) = ctx.connect_or_note(&mut inv.notes, "inventory").await else {
        return inv;
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
                        // As bytes: pickled, MessagePack and compressed values are not text.
                        let rec = flatten_bytes(&data, opts.value_cap);
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
}

/// Streams `lru_crawler metadump all` into `grouper`, line by line so the caps bound memory, not
/// the number of keys. Returns whether the dump was read to its end.
pub(super) async fn metadump(
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
