//! Distinct people per path pattern: ZooKeeper has no query, so the data of every znode of
//! the pattern (the children of its parent that have its shape) is read with pipelined
//! `getData` into a bounded distinct counter.

use std::sync::Arc;

use super::inventory::{session, BATCH};
use super::wire::{
    child_path, parse_children, parse_data, pipeline, OP_GET_CHILDREN2, OP_GET_DATA,
};
use crate::driver::{Budget, Counting, ProbeCtx};

/// Reads the data of every znode of the pattern `q.holding.name` into a
/// [`crate::driver::DistinctCounter`], by the deadline.
pub(super) async fn count_pattern(
    ctx: &ProbeCtx,
    q: &crate::driver::SubjectsQuery<'_>,
    deadline: tokio::time::Instant,
    bytes: usize,
) -> Result<crate::driver::Subjects, String> {
    use crate::inventory::keys::{family_prefix, pattern, structural};
    let name = &q.holding.name;
    let parent = family_prefix(name)
        .and_then(|p| p.strip_suffix('/'))
        .filter(|p| super::wire::is_path(p))
        .ok_or_else(|| "not a pattern of sibling znodes".to_string())?;
    let family = structural(name);
    let mut s = session(ctx, Arc::new(Budget::new(deadline, bytes)))
        .await
        .map_err(|e| e.to_string())?;
    let mut xid = 0;
    let listed = pipeline(&mut s, &mut xid, &[(OP_GET_CHILDREN2, parent)], |_, b| {
        parse_children(b)
    })
    .await
    .map_err(|e| e.to_string())?;
    let (children, _) = listed
        .into_iter()
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| format!("{parent} could not be listed"))?;
    let paths: Vec<String> = children
        .iter()
        .filter_map(|c| child_path(parent, c))
        .filter(|p| pattern(p) == family)
        .collect();
    let cap = ctx.opts.frame_cap;
    let mut counter = crate::driver::DistinctCounter::default();
    let (mut read, mut missing) = (0u64, 0u64);
    for chunk in paths.chunks(BATCH) {
        let requests: Vec<(i32, &str)> = chunk.iter().map(|p| (OP_GET_DATA, p.as_str())).collect();
        let replies = pipeline(&mut s, &mut xid, &requests, |_, b| parse_data(b))
            .await
            .map_err(|e| format!("read {read} znodes of {name}, then: {e}"))?;
        for reply in replies {
            let Ok((data, _)) = reply else {
                missing += 1;
                continue;
            };
            read += 1;
            match crate::driver::value_at(
                String::from_utf8_lossy(&data).into_owned(),
                &q.field,
                cap,
            ) {
                Some(v) => counter.add(v.as_bytes()),
                None => missing += 1,
            }
        }
    }
    Ok(counter.answer(&q.field, read, "znodes", "getChildren2, getData", missing))
}

/// The registered [`crate::driver::SubjectsFn`].
pub(super) async fn subjects(c: Counting<'_>) -> Vec<Result<crate::driver::Subjects, String>> {
    let bytes = c.opts.byte_budget;
    c.one_at_a_time(|q, deadline| count_pattern(c.ctx, q, deadline, bytes))
        .await
}
