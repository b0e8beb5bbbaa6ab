//! Distinct people per key pattern: Memcached has no distinct count of its own, so every key of
//! the pattern is read (the key dump on one connection, `get` batches on another) into a
//! bounded distinct counter; when the budget ends first, an estimate from the keys read, with
//! its interval ([`crate::driver::partial_read`]).

use super::wire::{call_get, check_line_lf, parse_metadump_line, parse_values, send_allowed};
use super::wire::{GET_BATCH, MAX_LINE};
use crate::driver::{Counting, ProbeCtx};

/// Memcached has no distinct count, so this streams the key dump on one connection and reads
/// the matching keys' values in `get` batches on a second, counting the person key's values
/// in a [`crate::driver::DistinctCounter`] until the dump ends or the budget does.
pub(super) async fn count_pattern(
    ctx: &ProbeCtx,
    q: &crate::driver::SubjectsQuery<'_>,
    deadline: tokio::time::Instant,
) -> Result<crate::driver::Subjects, String> {
    use crate::inventory::keys::pattern;
    let name = &q.holding.name;
    if crate::inventory::keys::family_prefix(name).is_none() {
        return Err("not a key pattern".into());
    }
    let family = crate::inventory::keys::structural(name);
    let mut dump = ctx.connect().await.map_err(|e| e.to_string())?;
    let mut reader = ctx.connect().await.map_err(|e| e.to_string())?;
    send_allowed(&mut dump, "lru_crawler metadump all")
        .await
        .map_err(|e| e.to_string())?;
    let mut counter = crate::driver::DistinctCounter::default();
    let mut profile = crate::driver::ValueProfile::default();
    let (mut keys_read, mut missing) = (0u64, 0u64);
    let mut batch: Vec<String> = Vec::with_capacity(GET_BATCH);
    let cap = ctx.opts.frame_cap;
    let mut done = false;
    while !done {
        if tokio::time::Instant::now() >= deadline {
            // The dump walks the slabs, in an order unrelated to the values: the keys read are
            // a random sample of the pattern's.
            return crate::driver::partial_read(
                &counter,
                &profile,
                crate::driver::CutShort {
                    read: keys_read,
                    missing,
                    total: q.holding.records.unwrap_or(0),
                    field: &q.field,
                    how: "lru_crawler metadump, get",
                    why: "its share of the time budget ran out",
                },
            )
            .ok_or_else(|| format!("read {keys_read} keys of {name} before the time budget"));
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
            if pattern(&key) == family && key.bytes().all(|b| b.is_ascii_graphic()) {
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
                    Some(v) => {
                        counter.add(v.as_bytes());
                        profile.add(v.as_bytes());
                    }
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
pub(super) async fn subjects(c: Counting<'_>) -> Vec<Result<crate::driver::Subjects, String>> {
    c.one_at_a_time(|q, deadline| count_pattern(c.ctx, q, deadline))
        .await
}
