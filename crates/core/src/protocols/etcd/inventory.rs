//! etcd inventory: the key space listed in keys-only range pages (no value leaves the server
//! for the listing), grouped into key patterns with counts, and a sample of values read under
//! each pattern's prefix (one key at a time for a pattern without one). Every request is a
//! serializable range read, within one budget.

use std::sync::Arc;

use super::wire::{next_key, range, Failure, Range, RangeReq, PAGE, SMALL_BODY_CAP};
use crate::driver::{Budget, Finding, ProbeCtx};

/// Keys looked at without `--full`; beyond it counts are extrapolated from the key count.
pub(super) const KEY_BUDGET: u64 = 200_000;

/// Key patterns kept.
pub(super) const MAX_PATTERNS: usize = 1000;

/// Body cap of one keys-only page: [`PAGE`] keys of up to 4 KiB each, base64 and JSON.
pub(super) const PAGE_CAP: usize = 8 << 20;

/// Body cap of one sample read: etcd's default request limit is 1.5 MiB (a value); a page of
/// values under a prefix is cut here too, and the budget's bytes bound it further.
pub(super) const VALUE_CAP: usize = 8 << 20;

/// Reads the keys-only pages of the whole key space into `add`, from the first key on, until
/// the last page, `limit` keys or an error. Returns whether the listing reached its end, and
/// the error that ended it early.
pub(super) async fn list_keys(
    ctx: &ProbeCtx,
    budget: &Arc<Budget>,
    limit: u64,
    mut add: impl FnMut(&[u8]),
) -> (bool, Option<Failure>) {
    let mut from = vec![0u8];
    let mut seen = 0u64;
    loop {
        let page: Range =
            match range(ctx, budget, &RangeReq::from(&from, PAGE, true), PAGE_CAP).await {
                Ok(p) => p,
                Err(e) => return (false, Some(e)),
            };
        for kv in &page.kvs {
            add(&kv.key);
        }
        seen += page.kvs.len() as u64;
        let Some(last) = page.kvs.last() else {
            return (true, None);
        };
        // Keys come in ascending order; a peer that does not move forward would page forever.
        if last.key < from {
            return (
                false,
                Some(Failure::unexpected("range pages do not move forward")),
            );
        }
        if !page.more {
            return (true, None);
        }
        if seen >= limit {
            return (false, None);
        }
        from = next_key(&last.key);
    }
}

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
    let budget = Arc::new(Budget::for_inventory(opts));
    let total = match range(ctx, &budget, &RangeReq::count_all(), SMALL_BODY_CAP).await {
        Ok(r) => r.count,
        Err(e) => {
            inv.notes.push(format!("the key count failed: {e}"));
            return inv;
        }
    };
    let mut grouper = Grouper::new(MAX_PATTERNS.min(opts.max_containers), opts.sample);
    let limit = if opts.full { u64::MAX } else { KEY_BUDGET };
    let (complete, failed) = list_keys(ctx, &budget, limit, |key| {
        grouper.add(&String::from_utf8_lossy(key), 0);
    })
    .await;
    if let Some(e) = failed {
        inv.notes.push(format!("the key listing stopped: {e}"));
    }
    if grouper.total == 0 && total > 0 {
        inv.holdings.push(Holding {
            name: "*".into(),
            kind: "keyspace",
            records: Some(total),
            records_exact: true,
            ..Holding::default()
        });
        return inv;
    }
    if !complete {
        inv.notes.push(format!(
            "looked at {} of {total} keys; counts per pattern are extrapolated",
            grouper.total
        ));
    }
    let scanned = grouper.total.max(1);
    let mut sampling = opts.sample > 0;
    for (name, g) in grouper.finish() {
        let mut sample = Vec::new();
        let mut sample_keys = Vec::new();
        // A family of keys (`session:<uuid>`) is sampled with one range read under its
        // prefix: keys sort by their ids, so a run of them is as good as a spread, and one
        // round trip replaces one per key.
        if let (true, Some(prefix)) = (sampling, crate::inventory::keys::family_prefix(&name)) {
            let family = crate::inventory::keys::structural(&name);
            let p = prefix.as_bytes();
            let limit = opts.sample as u64;
            match range(ctx, &budget, &RangeReq::prefixed(p, p, limit), VALUE_CAP).await {
                Ok(r) => {
                    for kv in r.kvs {
                        let key = String::from_utf8_lossy(&kv.key).into_owned();
                        if crate::inventory::keys::pattern(&key) != family {
                            continue;
                        }
                        let rec = flatten_bytes(&kv.value, opts.value_cap);
                        if !rec.is_empty() {
                            sample.push(rec);
                            sample_keys.push(key);
                        }
                    }
                }
                Err(e) => {
                    inv.notes.push(format!("{name}: sampling stopped: {e}"));
                    sampling = !e.is_budget();
                }
            }
        }
        let by_key = if sample.is_empty() { opts.sample } else { 0 };
        for key in g.sample.iter().take(by_key) {
            if !sampling {
                break;
            }
            match range(ctx, &budget, &RangeReq::one(key.as_bytes()), VALUE_CAP).await {
                Ok(r) => {
                    for kv in r.kvs.into_iter().take(1) {
                        // As bytes: Kubernetes stores protobuf, others JSON or plain text.
                        let rec = flatten_bytes(&kv.value, opts.value_cap);
                        if !rec.is_empty() {
                            sample.push(rec);
                            sample_keys.push(key.clone());
                        }
                    }
                }
                Err(e) => {
                    inv.notes.push(format!("{name}: sampling stopped: {e}"));
                    sampling = !e.is_budget();
                    break;
                }
            }
        }
        let records = if complete {
            g.keys
        } else {
            g.keys.saturating_mul(total) / scanned
        };
        inv.holdings.push(Holding {
            name,
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
    inv
}
