//! Distinct people per key pattern: etcd has no distinct count of its own, so the values of
//! every key under the pattern's prefix are read in range pages into a bounded distinct
//! counter.

use std::sync::Arc;

use super::inventory::PAGE_CAP;
use super::wire::{next_key, range, RangeReq};
use crate::driver::{Budget, Counting, ProbeCtx};

/// Keys per page of values: fewer than the listing's (values are larger than keys), but enough
/// that a pattern of a few thousand keys costs a few round trips, not dozens.
pub(super) const COUNT_PAGE: u64 = 500;

/// Reads the values of every key of the pattern `q.holding.name` (the keys under its literal
/// prefix that have its shape) into a [`crate::driver::DistinctCounter`], until the last page
/// or the deadline.
pub(super) async fn count_pattern(
    ctx: &ProbeCtx,
    q: &crate::driver::SubjectsQuery<'_>,
    deadline: tokio::time::Instant,
    bytes: usize,
) -> Result<crate::driver::Subjects, String> {
    use crate::inventory::keys::{family_prefix, pattern, structural};
    let name = &q.holding.name;
    let prefix = family_prefix(name).ok_or_else(|| "not a key pattern".to_string())?;
    let family = structural(name);
    let budget = Arc::new(Budget::new(deadline, bytes));
    let cap = ctx.opts.frame_cap;
    let mut counter = crate::driver::DistinctCounter::default();
    let (mut keys_read, mut missing) = (0u64, 0u64);
    let mut from = prefix.as_bytes().to_vec();
    loop {
        let page = range(
            ctx,
            &budget,
            &RangeReq::prefixed(prefix.as_bytes(), &from, COUNT_PAGE),
            PAGE_CAP,
        )
        .await
        .map_err(|e| format!("read {keys_read} keys of {name}, then: {e}"))?;
        for kv in &page.kvs {
            let key = String::from_utf8_lossy(&kv.key);
            if pattern(&key) != family {
                continue;
            }
            keys_read += 1;
            let text = String::from_utf8_lossy(&kv.value).into_owned();
            match crate::driver::value_at(text, &q.field, cap) {
                Some(v) => counter.add(v.as_bytes()),
                None => missing += 1,
            }
        }
        match page.kvs.last() {
            Some(last) if page.more && last.key >= from => from = next_key(&last.key),
            _ => break,
        }
    }
    Ok(counter.answer(&q.field, keys_read, "keys", "range reads", missing))
}

/// The registered [`crate::driver::SubjectsFn`].
pub(super) async fn subjects(c: Counting<'_>) -> Vec<Result<crate::driver::Subjects, String>> {
    let bytes = c.opts.byte_budget;
    c.one_at_a_time(|q, deadline| count_pattern(c.ctx, q, deadline, bytes))
        .await
}
