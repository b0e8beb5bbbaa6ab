//! InfluxDB inventory: the measurements of every database of a server the probe could read,
//! their field and tag names and types, their points, and a bounded sample of points.
//!
//! Per database: `SHOW MEASUREMENTS`, `SHOW FIELD KEYS` and `SHOW TAG KEYS` (the schema: fields
//! with their type, tags as `tag`); then per measurement the first points (`SELECT * … LIMIT
//! n`, time, tags and fields) and `SELECT COUNT(*)` (one count per field; the largest is the
//! number of points, exact). `_internal` (the server's own monitoring) is listed as system and
//! neither counted nor sampled.

use std::time::Duration;

use super::wire::{
    cell_text, Client, Series, COUNT, SAMPLE, SHOW_DATABASES, SHOW_FIELD_KEYS, SHOW_MEASUREMENTS,
    SHOW_TAG_KEYS,
};
use crate::driver::sql::Arg;
use crate::driver::{Budget, Finding, ProbeCtx, Wait};
use crate::inventory::flatten::flatten_row;
use crate::inventory::{Holding, Inventory, InventoryOptions, Record};

/// Reply cap of a listing.
const LIST_CAP: usize = 8 << 20;
/// Reply cap of one measurement's sample.
const SAMPLE_CAP: usize = 4 << 20;
/// How long one reply may take to start (a count over many shards is not a dead peer).
const READ_WAIT: Duration = Duration::from_secs(10);
/// The server's own monitoring database.
const SYSTEM_DATABASE: &str = "_internal";

fn names(series: &[Series]) -> Vec<String> {
    series
        .iter()
        .flat_map(|s| s.values.iter())
        .filter_map(|r| r.first().and_then(cell_text))
        .collect()
}

/// Points read back as records: every column (time, tags, fields) by name.
pub fn records(series: &[Series], value_cap: usize) -> Vec<Record> {
    series
        .iter()
        .flat_map(|s| {
            s.values.iter().map(move |r| {
                let texts: Vec<Option<String>> = r.iter().map(cell_text).collect();
                flatten_row(
                    s.columns
                        .iter()
                        .zip(&texts)
                        .map(|(c, v)| (c.as_str(), v.as_deref())),
                    value_cap,
                )
            })
        })
        .collect()
}

/// The number of points from `COUNT(*)`'s one row: the largest per-field count.
pub fn points(series: &[Series]) -> Option<u64> {
    series
        .iter()
        .flat_map(|s| s.values.iter())
        .flat_map(|r| r.iter().skip(1))
        .filter_map(|v| v.as_u64())
        .max()
}

pub(super) async fn inventory(
    ctx: &ProbeCtx,
    _finding: &Finding,
    opts: &InventoryOptions,
) -> Inventory {
    let mut inv = Inventory::default();
    let c = Client::new(ctx, Budget::for_inventory(opts), Wait::AtLeast(READ_WAIT));
    let databases = match c.query(SHOW_DATABASES, &[], LIST_CAP).await {
        Ok(s) => names(&s),
        Err(e) => {
            inv.notes
                .push(format!("inventory: SHOW DATABASES failed: {e}"));
            return inv;
        }
    };
    let mut listed: Vec<(String, String)> = Vec::new();
    'databases: for db in &databases {
        let left = opts.max_containers.saturating_sub(listed.len());
        let args = [Arg::Ident(db), Arg::Int(left as i128 + 1)];
        let mut measurements = match c.query(SHOW_MEASUREMENTS, &args, LIST_CAP).await {
            Ok(s) => names(&s),
            Err(e) => {
                inv.notes
                    .push(format!("{db}: measurements not listed: {e}"));
                continue;
            }
        };
        let mut schema: std::collections::HashMap<String, Vec<(String, String)>> =
            std::collections::HashMap::new();
        for (template, tags) in [(SHOW_FIELD_KEYS, false), (SHOW_TAG_KEYS, true)] {
            match c.query(template, &[Arg::Ident(db)], LIST_CAP).await {
                Ok(series) => {
                    for s in series {
                        let cols = schema.entry(s.name.clone()).or_default();
                        for r in &s.values {
                            let name = r.first().and_then(cell_text).unwrap_or_default();
                            let ty = if tags {
                                Some("tag".to_string())
                            } else {
                                r.get(1).and_then(cell_text)
                            };
                            cols.push((name, ty.unwrap_or_default()));
                        }
                    }
                }
                Err(e) => inv.notes.push(format!("{db}: schema not read: {e}")),
            }
        }
        for m in measurements.drain(..) {
            if listed.len() >= opts.max_containers {
                inv.notes.push(format!(
                    "more than {} measurements: the first {} are listed",
                    opts.max_containers, opts.max_containers
                ));
                break 'databases;
            }
            inv.holdings.push(Holding {
                name: format!("{db}.{m}"),
                kind: "table",
                system: db == SYSTEM_DATABASE,
                schema: schema.remove(&m).unwrap_or_default(),
                ..Holding::default()
            });
            listed.push((db.clone(), m));
        }
    }
    for ((db, m), h) in listed.iter().zip(inv.holdings.iter_mut()) {
        if h.system {
            continue;
        }
        if opts.sample > 0 {
            let args = [Arg::Ident(db), Arg::Ident(m), Arg::Int(opts.sample as i128)];
            match c.query(SAMPLE, &args, SAMPLE_CAP).await {
                Ok(s) => h.sample = records(&s, opts.value_cap),
                Err(e) if e.is_budget() => {
                    inv.notes
                        .push(format!("sampling stopped at {}: {e}", h.name));
                    break;
                }
                Err(e) => inv.notes.push(format!("{}: not sampled: {e}", h.name)),
            }
        }
        match c
            .query(COUNT, &[Arg::Ident(db), Arg::Ident(m)], 64 * 1024)
            .await
        {
            Ok(s) => {
                h.records = Some(points(&s).unwrap_or(0));
                h.records_exact = true;
            }
            Err(e) if e.is_budget() => {
                inv.notes
                    .push(format!("counting stopped at {}: {e}", h.name));
                break;
            }
            Err(e) => inv.notes.push(format!("{}: not counted: {e}", h.name)),
        }
    }
    inv
}

#[cfg(test)]
mod tests {
    use super::super::wire::parse_result;
    use super::*;

    #[test]
    fn points_are_the_largest_field_count() {
        let body = br#"{"results":[{"statement_id":0,"series":[{"name":"users","columns":["time","count_email","count_n"],"values":[["1970-01-01T00:00:00Z",2,1]]}]}]}"#;
        assert_eq!(points(&parse_result(body).unwrap().unwrap()), Some(2));
        let body = br#"{"results":[{"statement_id":0,"series":[{"name":"users","columns":["time","email","n"],"values":[["2020-09-13T12:26:40Z","x@y.com",3]]}]}]}"#;
        let recs = records(&parse_result(body).unwrap().unwrap(), 256);
        assert_eq!(recs[0][1], ("email".to_string(), "x@y.com".to_string()));
        assert_eq!(recs[0][2], ("n".to_string(), "3".to_string()));
    }
}
