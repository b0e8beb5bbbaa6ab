//! ClickHouse inventory: the user tables of a server the probe could read, their rows, bytes
//! and column types, and a bounded sample of their rows, over whichever port was scanned.
//!
//! Every statement is an allowlisted read sent with `readonly=1` (see [`super::wire`]):
//! 1. `system.tables` (the server's own databases left out) → names and engines;
//! 2. `system.parts` → rows and bytes of the active parts of MergeTree tables: exact, and what
//!    `count()` itself would read;
//! 3. `system.columns` → [`Holding::schema`];
//! 4. `SELECT * … LIMIT n` per table, the first rows (a MergeTree reads its first granules);
//! 5. `count()` for the tables step 2 did not count (Log and Memory engines).
//!
//! Only tables whose data lives on this server are counted or sampled: a `Distributed`,
//! `URL`, `MySQL`, `Kafka`, `S3` … table would make the server contact other hosts, and a view
//! runs a query of unknown cost, so those are listed with their columns only.

use std::collections::HashMap;
use std::time::Duration;

use super::wire::{
    cell_text, cell_u64, transport_of, Client, Rows, Transport, COLUMNS, COUNT, PARTS, SAMPLE,
    TABLES,
};
use crate::driver::sql::Arg;
use crate::driver::{Budget, Finding, ProbeCtx, Wait};
use crate::inventory::flatten::flatten_row;
use crate::inventory::{Holding, Inventory, InventoryOptions};

/// Reply cap of a catalogue listing.
const LIST_CAP: usize = 8 << 20;
/// Reply cap of one table's sample.
const SAMPLE_CAP: usize = 4 << 20;
/// Most rows read from `system.parts` and `system.columns`.
const MAX_CATALOGUE_ROWS: i128 = 200_000;
/// How long one reply may take to start (a count of a big Log table is not a dead peer).
const READ_WAIT: Duration = Duration::from_secs(10);

/// Engines whose data lives on the server, so reading them contacts nobody and costs a
/// bounded scan: the MergeTree family, the Log family and Memory.
pub fn is_local_engine(engine: &str) -> bool {
    engine.ends_with("MergeTree") || matches!(engine, "Log" | "TinyLog" | "StripeLog" | "Memory")
}

struct Table {
    database: String,
    name: String,
    engine: String,
}

fn text(row: &[serde_json::Value], i: usize) -> Option<String> {
    row.get(i).and_then(cell_text)
}

fn tables(rows: &Rows) -> Vec<Table> {
    rows.rows
        .iter()
        .filter_map(|r| {
            Some(Table {
                database: text(r, 0)?,
                name: text(r, 1)?,
                engine: text(r, 2).unwrap_or_default(),
            })
        })
        .collect()
}

type Key = (String, String);

fn parts(rows: &Rows) -> HashMap<Key, (u64, u64)> {
    rows.rows
        .iter()
        .filter_map(|r| {
            let key = (text(r, 0)?, text(r, 1)?);
            Some((key, (cell_u64(r.get(2)?)?, cell_u64(r.get(3)?)?)))
        })
        .collect()
}

fn columns(rows: &Rows) -> HashMap<Key, Vec<(String, String)>> {
    let mut out: HashMap<Key, Vec<(String, String)>> = HashMap::new();
    for r in &rows.rows {
        if let (Some(db), Some(t), Some(name), Some(ty)) =
            (text(r, 0), text(r, 1), text(r, 2), text(r, 3))
        {
            out.entry((db, t)).or_default().push((name, ty));
        }
    }
    out
}

/// The sampled rows, flattened (a column holding JSON text is expanded under its name).
pub fn flatten_rows(rows: &Rows, value_cap: usize) -> Vec<crate::inventory::Record> {
    rows.rows
        .iter()
        .map(|r| {
            let texts: Vec<Option<String>> = r.iter().map(cell_text).collect();
            flatten_row(
                rows.columns
                    .iter()
                    .zip(&texts)
                    .map(|((name, _), v)| (name.as_str(), v.as_deref())),
                value_cap,
            )
        })
        .collect()
}

pub(super) async fn inventory(
    ctx: &ProbeCtx,
    _finding: &Finding,
    opts: &InventoryOptions,
) -> Inventory {
    let mut inv = Inventory::default();
    let mut c = Client::new(
        ctx,
        Transport::Http,
        Budget::for_inventory(opts),
        Wait::AtLeast(READ_WAIT),
    );
    match c.ping().await.map(|r| transport_of(&r)) {
        Ok(Some(t)) => c.transport = t,
        Ok(None) => {
            inv.notes
                .push("inventory: GET / no longer answers as ClickHouse".into());
            return inv;
        }
        Err(e) => {
            inv.notes.push(format!("inventory: GET / failed: {e}"));
            return inv;
        }
    }
    let limit = opts.max_containers as i128 + 1;
    let mut list = match c.query(TABLES, &[Arg::Int(limit)], LIST_CAP).await {
        Ok(rows) => tables(&rows),
        Err(e) => {
            inv.notes
                .push(format!("inventory: system.tables was not read: {e}"));
            return inv;
        }
    };
    if list.len() > opts.max_containers {
        list.truncate(opts.max_containers);
        inv.notes.push(format!(
            "more than {} tables: the first {} are listed",
            opts.max_containers, opts.max_containers
        ));
    }
    let parts = match c
        .query(PARTS, &[Arg::Int(MAX_CATALOGUE_ROWS)], LIST_CAP)
        .await
    {
        Ok(rows) => parts(&rows),
        Err(e) => {
            inv.notes.push(format!("system.parts was not read: {e}"));
            HashMap::new()
        }
    };
    let mut schema = match c
        .query(COLUMNS, &[Arg::Int(MAX_CATALOGUE_ROWS)], LIST_CAP)
        .await
    {
        Ok(rows) => columns(&rows),
        Err(e) => {
            inv.notes.push(format!("system.columns was not read: {e}"));
            HashMap::new()
        }
    };
    let mut skipped = 0;
    for t in &list {
        let key = (t.database.clone(), t.name.clone());
        let counted = parts.get(&key).filter(|_| t.engine.ends_with("MergeTree"));
        // A MergeTree without active parts is empty.
        let (records, bytes) = match counted {
            Some(&(rows, bytes)) => (Some(rows), Some(bytes)),
            None if t.engine.ends_with("MergeTree") => (Some(0), Some(0)),
            None => (None, None),
        };
        if !is_local_engine(&t.engine) {
            skipped += 1;
        }
        inv.holdings.push(Holding {
            name: format!("{}.{}", t.database, t.name),
            kind: "table",
            records,
            records_exact: records.is_some(),
            bytes,
            schema: schema.remove(&key).unwrap_or_default(),
            ..Holding::default()
        });
    }
    if skipped > 0 {
        inv.notes.push(format!(
            "{skipped} table(s) of views or remote engines listed without counting or \
             sampling (reading them would run a query or contact other hosts)"
        ));
    }
    for (t, h) in list.iter().zip(inv.holdings.iter_mut()) {
        if !is_local_engine(&t.engine) {
            continue;
        }
        if opts.sample > 0 {
            let args = [
                Arg::Ident(&t.database),
                Arg::Ident(&t.name),
                Arg::Int(opts.sample as i128),
            ];
            match c.query(SAMPLE, &args, SAMPLE_CAP).await {
                Ok(rows) => h.sample = flatten_rows(&rows, opts.value_cap),
                Err(e) if e.is_budget() => {
                    inv.notes
                        .push(format!("sampling stopped at {}: {e}", h.name));
                    break;
                }
                Err(e) => inv.notes.push(format!("{}: not sampled: {e}", h.name)),
            }
        }
        if h.records.is_none() {
            let args = [Arg::Ident(&t.database), Arg::Ident(&t.name)];
            match c.query(COUNT, &args, 64 * 1024).await {
                Ok(rows) => {
                    h.records = rows.rows.first().and_then(|r| r.first()).and_then(cell_u64);
                    h.records_exact = h.records.is_some();
                }
                Err(e) if e.is_budget() => {
                    inv.notes
                        .push(format!("counting stopped at {}: {e}", h.name));
                    break;
                }
                Err(e) => inv.notes.push(format!("{}: not counted: {e}", h.name)),
            }
        }
    }
    inv
}
