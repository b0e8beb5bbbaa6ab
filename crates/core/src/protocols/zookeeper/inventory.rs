//! ZooKeeper inventory: the znode tree walked breadth-first with pipelined `getChildren2`
//! (each znode's own stat comes with its children), the data-holding znodes grouped into path
//! patterns with counts and sizes, and a sample of their data read with pipelined `getData`.
//! ZooKeeper's own subtree (`/zookeeper`) is left out; znodes whose ACL refuses an
//! unauthenticated read are counted in a note.

use std::collections::VecDeque;
use std::sync::Arc;

use super::wire::{
    child_path, handshake, parse_children, parse_data, pipeline, Failure, Stat, ERR_NO_AUTH,
    ERR_NO_NODE, OP_GET_CHILDREN2, OP_GET_DATA, SYSTEM,
};
use crate::driver::{Budget, Finding, ProbeCtx, Session, Wait};

/// Znodes visited without `--full`; beyond it counts are not exact.
pub(super) const NODE_BUDGET: u64 = 200_000;

/// Path patterns kept.
pub(super) const MAX_PATTERNS: usize = 1000;

/// Requests sent before their replies are read.
pub(super) const BATCH: usize = 64;

/// A session for an inventory or a count: connected, handshaken, on `budget`.
pub(super) async fn session(ctx: &ProbeCtx, budget: Arc<Budget>) -> Result<Session, Failure> {
    let mut s = Session::new(ctx, budget);
    s.connect().await?;
    s.set_wait(Wait::Deadline);
    let c = handshake(&mut s).await?;
    if c.timeout_ms == 0 {
        return Err(Failure::unexpected("the server refused the session"));
    }
    Ok(s)
}

/// What the walk found.
#[derive(Default)]
pub(super) struct Walk {
    pub(super) visited: u64,
    pub(super) refused: u64,
    pub(super) complete: bool,
}

/// Walks the tree from `/` breadth-first, calling `add` with each znode that holds data or
/// has no children (a record), until the tree ends, `limit` znodes or an error.
pub(super) async fn walk(
    s: &mut Session,
    xid: &mut i32,
    limit: u64,
    mut add: impl FnMut(&str, &Stat),
) -> (Walk, Option<Failure>) {
    let mut w = Walk::default();
    let mut queue: VecDeque<String> = VecDeque::from(["/".to_string()]);
    while !queue.is_empty() {
        if w.visited >= limit {
            return (w, None);
        }
        let batch: Vec<String> = queue.drain(..queue.len().min(BATCH)).collect();
        let requests: Vec<(i32, &str)> = batch
            .iter()
            .map(|p| (OP_GET_CHILDREN2, p.as_str()))
            .collect();
        let replies = match pipeline(s, xid, &requests, |_, b| parse_children(b)).await {
            Ok(r) => r,
            Err(e) => return (w, Some(e)),
        };
        for (path, reply) in batch.iter().zip(replies) {
            w.visited += 1;
            match reply {
                Ok((children, stat)) => {
                    if path != "/" && (stat.num_children == 0 || stat.data_length > 0) {
                        add(path, &stat);
                    }
                    for c in children {
                        if path == "/" && c == SYSTEM {
                            continue;
                        }
                        if queue.len() as u64 + w.visited < limit {
                            if let Some(p) = child_path(path, &c) {
                                queue.push_back(p);
                            }
                        }
                    }
                }
                // Deleted since its parent was listed.
                Err(ERR_NO_NODE) => {}
                Err(ERR_NO_AUTH) => w.refused += 1,
                Err(code) => {
                    return (
                        w,
                        Some(Failure::unexpected(format!("getChildren2 error {code}"))),
                    )
                }
            }
        }
    }
    w.complete = true;
    (w, None)
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
    let mut s = match session(ctx, Arc::new(Budget::for_inventory(opts))).await {
        Ok(s) => s,
        Err(e) => {
            inv.notes.push(format!("inventory: no session: {e}"));
            return inv;
        }
    };
    let mut xid = 0;
    let mut grouper = Grouper::new(MAX_PATTERNS.min(opts.max_containers), opts.sample);
    let limit = if opts.full { u64::MAX } else { NODE_BUDGET };
    let (w, failed) = walk(&mut s, &mut xid, limit, |path, stat| {
        grouper.add(path, u64::try_from(stat.data_length).unwrap_or(0));
    })
    .await;
    if let Some(e) = &failed {
        inv.notes
            .push(format!("the walk of the znode tree stopped: {e}"));
    } else if !w.complete {
        inv.notes.push(format!(
            "visited {} znodes; the rest of the tree was not walked",
            w.visited
        ));
    }
    if w.refused > 0 {
        inv.notes.push(format!(
            "{} znodes refuse reads without authentication (ACL)",
            w.refused
        ));
    }
    let complete = w.complete && failed.is_none();
    let mut sampling = opts.sample > 0 && failed.is_none();
    for (name, g) in grouper.finish() {
        let mut sample = Vec::new();
        let mut sample_keys = Vec::new();
        let paths: Vec<&String> = g.sample.iter().take(opts.sample).collect();
        if sampling && !paths.is_empty() {
            let requests: Vec<(i32, &str)> =
                paths.iter().map(|p| (OP_GET_DATA, p.as_str())).collect();
            match pipeline(&mut s, &mut xid, &requests, |_, b| parse_data(b)).await {
                Ok(replies) => {
                    for (path, reply) in paths.iter().zip(replies) {
                        let Ok((data, _)) = reply else { continue };
                        // As bytes: JSON, properties, serialized Java, plain text.
                        let rec = flatten_bytes(&data, opts.value_cap);
                        if !rec.is_empty() {
                            sample.push(rec);
                            sample_keys.push((*path).clone());
                        }
                    }
                }
                Err(e) => {
                    inv.notes.push(format!("{name}: sampling stopped: {e}"));
                    sampling = false;
                }
            }
        }
        inv.holdings.push(Holding {
            name,
            kind: "keyspace",
            records: Some(g.keys),
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
