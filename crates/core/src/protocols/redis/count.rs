//! Distinct people per key pattern: Redis has no distinct count of a field, so the keys of the
//! pattern are read (`SCAN MATCH` on its database, the person field of each key in pipelined
//! batches) into a bounded distinct counter, until the container's share of the budget ends:
//! then the keys read are a random sample (SCAN's order has nothing to do with the values) and
//! the answer an estimate with its interval ([`crate::driver::partial_read`]); and `EXISTS` for
//! the key-id method.

use super::inventory::{bulk_texts, STRING_READ};
use super::wire::{call, call_many, Value};
use crate::driver::{Counting, ProbeCtx};
use crate::net::Conn;

/// `dbN:prefix:*` → (N, `prefix:`), for the patterns the grouper makes; None for others
/// (a single key, the overflow group).
pub(super) fn split_container(name: &str) -> Option<(u32, &str)> {
    let (db, pattern) = name.split_once(':')?;
    let db = db.strip_prefix("db")?.parse().ok()?;
    Some((db, crate::inventory::keys::family_prefix(pattern)?))
}

/// Escapes SCAN MATCH's glob characters in a literal prefix.
pub(super) fn glob_literal(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 2);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The person key's value in one key's reply (`HGET` of a hash field, or the JSON path in a
/// string read with `GETRANGE`).
pub(super) fn person_value(kind: &str, reply: &Value, field: &str, cap: usize) -> Option<String> {
    match kind {
        "hash" => reply.text(),
        "string" => crate::driver::value_at(reply.text()?, field, cap),
        _ => None,
    }
}

/// The read of one key's person field: `HGET` of a hash, the bounded head of anything else.
pub(super) fn read_person(kind: &str, key: &str, field: &str) -> Vec<String> {
    match kind {
        "hash" => vec!["HGET".into(), key.into(), field.into()],
        _ => vec![
            "GETRANGE".into(),
            key.into(),
            "0".into(),
            (STRING_READ - 1).to_string(),
        ],
    }
}

/// Redis has no distinct count of values, so this reads the person key of every key of the
/// pattern (SCAN MATCH, then pipelined `TYPE` and `HGET`/`GETRANGE` in batches) into a
/// [`crate::driver::DistinctCounter`], within the budget.
pub(super) async fn count_pattern(
    conn: &mut Conn,
    ctx: &ProbeCtx,
    q: &crate::driver::SubjectsQuery<'_>,
    deadline: tokio::time::Instant,
) -> Result<crate::driver::Subjects, String> {
    use crate::inventory::keys::pattern;
    let (db, prefix) =
        split_container(&q.holding.name).ok_or_else(|| "not a key pattern".to_string())?;
    let want = format!("{prefix}*");
    select(conn, ctx, db).await?;
    let mut counter = crate::driver::DistinctCounter::default();
    let mut profile = crate::driver::ValueProfile::default();
    let (mut keys_read, mut missing) = (0u64, 0u64);
    let mut uniform: Option<String> = None;
    let mut cursor = "0".to_string();
    let matcher = format!("{}*", glob_literal(prefix));
    loop {
        if tokio::time::Instant::now() >= deadline {
            // SCAN walks the hash table, in an order unrelated to the values: the keys read
            // so far are a random sample of the pattern's, and the estimate says so.
            return crate::driver::partial_read(
                &counter,
                &profile,
                crate::driver::CutShort {
                    read: keys_read,
                    missing,
                    total: q.holding.records.unwrap_or(0),
                    field: &q.field,
                    how: &format!("SCAN MATCH {want}"),
                    why: "its share of the time budget ran out",
                },
            )
            .ok_or_else(|| {
                format!(
                    "read {keys_read} keys of {} before the time budget",
                    q.holding.name
                )
            });
        }
        let reply = call(
            conn,
            ctx,
            &["SCAN", &cursor, "MATCH", &matcher, "COUNT", "1000"],
        )
        .await
        .map_err(|e| e.to_string())?;
        let Value::Array(Some(parts)) = reply else {
            return Err("SCAN reply is not an array".into());
        };
        cursor = parts
            .first()
            .and_then(Value::text)
            .unwrap_or_else(|| "0".into());
        let keys: Vec<String> = parts
            .get(1)
            .map(bulk_texts)
            .unwrap_or_default()
            .into_iter()
            .filter(|k| pattern(k) == want)
            .collect();
        if !keys.is_empty() {
            // A pattern's keys nearly always share one type: once a batch showed a single
            // type, later batches skip TYPE and read directly; a WRONGTYPE reply sends that
            // batch back through TYPE.
            let mut values = None;
            let mut kinds = Vec::new();
            if let Some(kind) = &uniform {
                let reads: Vec<Vec<String>> = keys
                    .iter()
                    .map(|k| read_person(kind, k, &q.field))
                    .collect();
                let (v, _) = call_many(conn, ctx, &reads)
                    .await
                    .map_err(|e| e.to_string())?;
                if !v.iter().any(|r| matches!(r, Value::Error(_))) {
                    kinds = vec![kind.clone(); keys.len()];
                    values = Some(v);
                }
            }
            let values = match values {
                Some(v) => v,
                None => {
                    let types: Vec<Vec<String>> = keys
                        .iter()
                        .map(|k| vec!["TYPE".into(), k.clone()])
                        .collect();
                    let (k, _) = call_many(conn, ctx, &types)
                        .await
                        .map_err(|e| e.to_string())?;
                    kinds = k.iter().map(|k| k.text().unwrap_or_default()).collect();
                    uniform = kinds
                        .iter()
                        .all(|k| *k == kinds[0])
                        .then(|| kinds[0].clone());
                    let reads: Vec<Vec<String>> = keys
                        .iter()
                        .zip(&kinds)
                        .map(|(k, kind)| read_person(kind, k, &q.field))
                        .collect();
                    call_many(conn, ctx, &reads)
                        .await
                        .map_err(|e| e.to_string())?
                        .0
                }
            };
            for (kind, v) in kinds.iter().zip(&values) {
                keys_read += 1;
                match person_value(kind, v, &q.field, STRING_READ) {
                    Some(p) => {
                        counter.add(p.as_bytes());
                        profile.add(p.as_bytes());
                    }
                    None => missing += 1,
                }
            }
        }
        if cursor == "0" {
            break;
        }
    }
    Ok(counter.answer(
        &q.field,
        keys_read,
        "keys",
        &format!("SCAN MATCH {want}"),
        missing,
    ))
}

/// `SELECT db` on `conn`, for the distinct counts and key checks (errors in words).
pub(super) async fn select(conn: &mut Conn, ctx: &ProbeCtx, db: u32) -> Result<(), String> {
    match call(conn, ctx, &["SELECT", &db.to_string()])
        .await
        .map_err(|e| e.to_string())?
    {
        Value::Simple(_) => Ok(()),
        other => Err(format!("SELECT {db} answered {other:?}")),
    }
}

/// Keys per `EXISTS` (it takes many and answers how many exist).
pub(super) const EXISTS_BATCH: usize = 500;

/// The registered [`crate::driver::KeysExistFn`]: `SELECT` the container's database, then
/// `EXISTS k1 k2 …` (read-only; it answers a count, not the values).
pub(super) async fn keys_exist(
    ctx: &ProbeCtx,
    container: &str,
    keys: &[String],
) -> Result<u64, String> {
    let (db, _) = split_container(container).ok_or_else(|| "not a key pattern".to_string())?;
    let mut conn = ctx.connect().await.map_err(|e| e.to_string())?;
    select(&mut conn, ctx, db).await?;
    let mut found = 0;
    for batch in keys.chunks(EXISTS_BATCH) {
        let mut args = vec!["EXISTS"];
        args.extend(batch.iter().map(String::as_str));
        match call(&mut conn, ctx, &args).await {
            Ok(Value::Int(n)) => found += n.clamp(0, batch.len() as i64) as u64,
            Ok(other) => return Err(format!("EXISTS answered {other:?}")),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(found)
}

/// The registered [`crate::driver::SubjectsFn`].
pub(super) async fn subjects(
    counting: Counting<'_>,
) -> Vec<Result<crate::driver::Subjects, String>> {
    let (ctx, queries) = (counting.ctx, counting.queries);
    let mut out = Vec::with_capacity(queries.len());
    let mut conn: Option<Conn> = None;
    for (i, q) in queries.iter().enumerate() {
        if conn.is_none() {
            conn = ctx.connect().await.ok();
        }
        let Some(c) = conn.as_mut() else {
            out.push(Err("connection failed".to_string()));
            continue;
        };
        let deadline = counting.deadline_for(i);
        let r = count_pattern(c, ctx, q, deadline).await;
        if r.is_err() {
            // The connection may hold half a reply; the next pattern gets a fresh one.
            conn = None;
        }
        out.push(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_and_globs() {
        assert_eq!(split_container("db0:user:*"), Some((0, "user:")));
        assert_eq!(split_container("db1:alexa:*"), Some((1, "alexa:")));
        assert_eq!(split_container("db0:queue:jobs"), None);
        assert_eq!(split_container("db0:*"), None);
        assert_eq!(glob_literal("a[1]?*\\"), "a\\[1\\]\\?\\*\\\\");
        let s = Value::Bulk(Some(br#"{"user_id":"u1","n":2}"#.to_vec()));
        assert_eq!(
            person_value("string", &s, "user_id", 64).as_deref(),
            Some("u1")
        );
        let h = Value::Bulk(Some(b"u2".to_vec()));
        assert_eq!(
            person_value("hash", &h, "user_id", 64).as_deref(),
            Some("u2")
        );
        assert_eq!(
            person_value("hash", &Value::Bulk(None), "user_id", 64),
            None
        );
    }
}
