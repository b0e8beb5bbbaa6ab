//! Distinct people per collection (`subjects_estimate`): the server's own exact distinct count
//! of the person key where it has an efficient one, else every document's key read and counted
//! here; read-only and within a time budget.
//!
//! Per collection, over one session that passes every command through `Session::call_on`:
//! 1. `listIndexes`: a unique index on exactly the key (one field, not sparse, not partial)
//!    means every document is a different person, so the inventory's `count` is the answer,
//!    with no scan at all. Not for an array path: a unique multikey index still lets one
//!    document hold several people.
//! 2. Otherwise, on MongoDB, `aggregate` with [`group_pipeline`]: `$project` the key, `$unwind`
//!    each array on the path (`devices[].owner` counts owners, not arrays of them), `$group` on
//!    the key, drop the null group (documents without the key), `$count`. `maxTimeMS` makes the
//!    server give up within the budget and `allowDiskUse: false` keeps the grouping in memory
//!    (a spill writes temporary files); [`super::wire::refuse_command`] enforces both. A group over
//!    more distinct keys than MongoDB's 100 MB per-stage memory allows fails with code 292;
//!    the census below then counts in the time left.
//! 3. A key census ([`key_census_args`]): a `find` projected to the key, walked with `getMore`
//!    in batches sized to the frame cap, each document's key values (flattened the way the
//!    sample was, so `devices[].owner` means the same) counted in a
//!    [`DistinctCounter`] (exact up to 100 000 values, then a HyperLogLog of about 0.8 %).
//!    FerretDB 1.x gets this instead of `$group`: its `$group` compares each document with every
//!    group found so far (a list, not a hash table), so time grows with documents × people.
//!    Measured on FerretDB 1.24.2 with SQLite: the group of 719 619 measurements of 239 760
//!    people ran 8 minutes at full CPU without answering (stopped there); a `find` projected to
//!    the key read the same collection in 73 s, linear in its documents.
//! 4. A count the server stops at `maxTimeMS` (code 50) or the session's deadline is an error
//!    saying so, never a partial number.
//!
//! `collStats`/`dbStats` are not needed here and stay refused to FerretDB by the session.

use std::sync::Arc;
use std::time::Duration;

use bson::{doc, Bson, Document};
use tokio::time::Instant;

use super::inventory::{cursor_batch, document_json, get_more_args, next_census_batch};
use super::wire::{clean, command_error, field, handshake, number, CallError, Session, Wire};
use crate::driver::Finding;
use crate::driver::{Counting, DistinctCounter, Subjects, SubjectsBudget, SubjectsQuery};
use crate::driver::{Failure, Spent};
use crate::inventory::{flatten_json, Holding};

/// Longest key path sent.
const MAX_PATH: usize = 1024;
/// Indexes in one `listIndexes` batch: more than a collection may have (64), so the first
/// batch is the whole list and no cursor stays open.
const INDEX_BATCH: i64 = 1000;
/// `maxTimeMS` is this share of the budget, so the server's own stop arrives before ours.
const SERVER_SHARE: f32 = 0.9;
/// MaxTimeMSExpired.
const CODE_MAX_TIME: i32 = 50;
/// QueryExceededMemoryLimitNoDiskUseAllowed (and its pre-6.0 code).
const CODE_MEMORY: &[i32] = &[292, 16945];
/// Documents in the first batch of a key census (later ones: [`next_census_batch`]).
const CENSUS_FIRST_BATCH: i64 = 1000;
/// Bytes kept of one key value in the census (longer keys are rarer than collisions of
/// their first kilobyte).
const KEY_CAP: usize = 1024;

/// A person key path split into what `$unwind` and `$group` need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPath {
    /// The dotted path without `[]` (`devices.owner`).
    pub plain: String,
    /// Array prefixes to unwind, outermost first (`devices`).
    pub unwind: Vec<String>,
}

/// Parses a flattened field path (`user_id`, `user.email`, `devices[].owner`, `emails[]`).
/// None for anything a field path expression cannot name safely: empty segments, `$` at the
/// start of a segment (an operator), NUL, or more than `MAX_PATH` bytes.
pub fn key_path(path: &str) -> Option<KeyPath> {
    if path.is_empty() || path.len() > MAX_PATH || path.contains('\0') {
        return None;
    }
    let plain = path.replace("[]", "");
    if plain
        .split('.')
        .any(|s| s.is_empty() || s.starts_with('$') || s.contains('['))
    {
        return None;
    }
    let unwind = path
        .match_indices("[]")
        .map(|(at, _)| path[..at].replace("[]", ""))
        .collect();
    Some(KeyPath { plain, unwind })
}

/// Arguments of `listIndexes` on a collection: names, keys and options of its indexes.
pub fn list_indexes_args() -> Document {
    doc! { "cursor": { "batchSize": INDEX_BATCH } }
}

/// The name of a unique index whose key is exactly `field` (ascending or descending) and that
/// covers every document: not sparse, no partial filter. `_id`'s own index counts too.
pub fn unique_index_on(batch: &bson::RawArray, field_path: &str) -> Option<String> {
    for entry in batch.into_iter().map_while(Result::ok) {
        let Some(ix) = entry.as_document() else {
            continue;
        };
        let Some(key) = field(ix, "key").and_then(|k| k.as_document()) else {
            continue;
        };
        let mut keys = key.into_iter().map_while(Result::ok);
        let (Some((k, dir)), None) = (keys.next(), keys.next()) else {
            continue;
        };
        // 1 or -1; a text, hashed or 2d index says nothing about uniqueness.
        if k != field_path || !number(dir).is_some_and(|d| d == 1.0 || d == -1.0) {
            continue;
        }
        let flag = |name| field(ix, name).and_then(number) == Some(1.0);
        let unique = flag("unique") || k == "_id";
        let covers_all = !flag("sparse") && field(ix, "partialFilterExpression").is_none();
        if unique && covers_all {
            let name = field(ix, "name").and_then(|n| n.as_str()).unwrap_or("");
            return Some(clean(name, 64));
        }
    }
    None
}

/// Arguments of the `aggregate` that counts the distinct non-null values of `key` exactly.
pub fn group_pipeline(key: &KeyPath, max_time: Duration) -> Document {
    let projection = if key.plain == "_id" {
        doc! { "_id": 1 }
    } else {
        doc! { key.plain.as_str(): 1, "_id": 0 }
    };
    let mut pipeline = vec![Bson::Document(doc! { "$project": projection })];
    for a in &key.unwind {
        pipeline.push(Bson::Document(doc! { "$unwind": format!("${a}") }));
    }
    pipeline.push(Bson::Document(
        doc! { "$group": { "_id": format!("${}", key.plain) } },
    ));
    pipeline.push(Bson::Document(
        doc! { "$match": { "_id": { "$ne": Bson::Null } } },
    ));
    pipeline.push(Bson::Document(doc! { "$count": "n" }));
    doc! {
        "pipeline": pipeline,
        "cursor": { "batchSize": 2i64 },
        "allowDiskUse": false,
        "maxTimeMS": max_time.as_millis().clamp(1, i64::MAX as u128) as i64,
    }
}

/// Arguments of the `find` that opens a key census cursor: the key only, every document.
pub fn key_census_args(key: &KeyPath) -> Document {
    let projection = if key.plain == "_id" {
        doc! { "_id": 1 }
    } else {
        doc! { key.plain.as_str(): 1, "_id": 0 }
    };
    doc! { "filter": {}, "projection": projection, "batchSize": CENSUS_FIRST_BATCH }
}

/// Whether the server's `$group` is a hashed one worth asking: not FerretDB 1.x (see the
/// module docs), whose version says so; an unknown FerretDB version counts as 1.x.
pub fn groups_efficiently(finding: &Finding) -> bool {
    match finding.product.as_deref() {
        Some("FerretDB") => finding
            .version
            .as_deref()
            .and_then(|v| v.split('.').next()?.parse::<u32>().ok())
            .is_some_and(|major| major >= 2),
        _ => true,
    }
}

/// Adds the values at flattened `path` of each document of a census batch to `counter`.
/// Returns the documents seen and how many had no value there; None for a malformed batch.
pub fn count_keys(
    batch: &bson::RawArray,
    path: &str,
    counter: &mut DistinctCounter,
) -> Option<(u64, u64)> {
    let (mut docs, mut missing) = (0u64, 0u64);
    for item in batch {
        let d = item.ok()?.as_document()?;
        docs += 1;
        let mut found = false;
        // Nulls are not flattened: no person, as the `$group` drops the null group.
        for (p, v) in flatten_json(&document_json(d, KEY_CAP, 0, true), KEY_CAP) {
            if p == path {
                counter.add(v.as_bytes());
                found = true;
            }
        }
        missing += u64::from(!found);
    }
    Some((docs, missing))
}

/// `n` of a `$count` reply's batch: 0 when the batch is empty (nothing to count). None when
/// the reply is not that.
pub fn parse_group_count(d: &bson::RawDocument) -> Option<(u64, i64)> {
    let (batch, id) = cursor_batch(d)?;
    let mut items = batch.into_iter();
    let n = match items.next() {
        None => 0,
        Some(first) => {
            let x = number(field(first.ok()?.as_document()?, "n")?)?;
            if !(0.0..1.8e19).contains(&x) || items.next().is_some() {
                return None;
            }
            x as u64
        }
    };
    Some((n, id))
}

/// `db` and `collection` of a holding named `db.collection` by the inventory. A name the
/// inventory shortened cannot be asked for.
fn namespace(h: &Holding) -> Option<(&str, &str)> {
    if h.name.chars().count() >= 200 {
        return None;
    }
    h.name
        .split_once('.')
        .filter(|(d, c)| !d.is_empty() && !c.is_empty())
}

/// The protocol's [`crate::driver::SubjectsFn`].
pub(super) async fn subjects(c: Counting<'_>) -> Vec<Result<Subjects, String>> {
    let (ctx, finding, opts, budget, queries) = (c.ctx, c.finding, c.opts, c.budget, c.queries);
    // Reads may take the whole budget; the session's deadline, not a read timeout, ends them.
    let ctx = ctx.with_read_timeout_at_least(budget.read_timeout());
    let setup = async {
        let conn = ctx
            .connect()
            .await
            .map_err(|e| format!("connect failed: {e}"))?;
        let mut s = Session::new(
            &ctx,
            conn,
            Wire::Msg,
            Arc::new(budget.budget(queries.len(), opts.byte_budget)),
        );
        s.s.set_deadline(Some(Instant::now() + budget.per_container));
        handshake(&ctx, &mut s)
            .await
            .map_err(|seen| format!("handshake failed: {seen:?}"))?;
        Ok::<Session, String>(s)
    };
    let mut s = match setup.await {
        Ok(s) => s,
        Err(why) => return queries.iter().map(|_| Err(why.clone())).collect(),
    };
    let product = finding.product.as_deref().unwrap_or("MongoDB");
    let mut out = Vec::with_capacity(queries.len());
    // One collection at a time: a `$group` is a full pass over the collection.
    for q in queries {
        s.s.set_deadline(Some(Instant::now() + budget.per_container));
        out.push(count(&mut s, finding, product, budget, q).await);
    }
    // A `$count` answers in its first batch; a cursor left open (a server that did not) is
    // closed rather than left to time out.
    s.s.set_deadline(Some(Instant::now() + Duration::from_secs(2)));
    while let Some((db, coll, id)) = s.cursors.first().cloned() {
        let args = doc! { "cursors": [Bson::Int64(id)] };
        let closed = s
            .call_on("killCursors", Bson::String(coll.clone()), &db, args)
            .await;
        s.cursors.retain(|c| *c != (db.clone(), coll.clone(), id));
        if closed.is_err() {
            break;
        }
    }
    out
}

/// Words for a failed call.
fn call_failure(e: &CallError, what: &str, budget: SubjectsBudget) -> String {
    match e {
        Failure::Budget(Spent::Time) => format!(
            "{what} gave no answer within the {} ms budget",
            budget.per_container.as_millis()
        ),
        other => format!("{what} failed: {other}"),
    }
}

async fn count(
    s: &mut Session,
    finding: &Finding,
    product: &str,
    budget: SubjectsBudget,
    q: &SubjectsQuery<'_>,
) -> Result<Subjects, String> {
    let (db, coll) =
        namespace(q.holding).ok_or("not a db.collection name that can be asked for")?;
    let key =
        key_path(&q.field).ok_or_else(|| format!("{:?} is not a usable field path", q.field))?;
    let target = Bson::String(coll.to_string());

    // 1. A unique index on the key: the document count is the number of people.
    if let (true, Some(records)) = (key.unwind.is_empty(), q.holding.records) {
        let reply = s
            .call_on("listIndexes", target.clone(), db, list_indexes_args())
            .await;
        match reply {
            Ok(d) if command_error(&d).is_none() => {
                if let Some(name) =
                    cursor_batch(&d).and_then(|(b, _)| unique_index_on(b, &key.plain))
                {
                    let how = if q.holding.records_exact {
                        "exact count"
                    } else {
                        "count from collection metadata"
                    };
                    return Ok(Subjects {
                        count: records,
                        method: format!(
                            "{product} unique index {name} on {}: one person per document, so \
                             the documents' {how}",
                            key.plain
                        ),
                        interval: None,
                    });
                }
            }
            // No index list is no shortcut; the group below still counts.
            Ok(_) => {}
            Err(e @ Failure::Budget(Spent::Time)) => {
                return Err(call_failure(&e, "listIndexes", budget))
            }
            Err(_) => {}
        }
    }

    let census = KeyCensus {
        budget,
        q,
        key: &key,
        db,
        coll,
    };
    if !groups_efficiently(finding) {
        let why = format!("not $group: {product} 1.x groups in time documents × people");
        return census.run(s, product, &why).await;
    }

    // 2. The server counts the distinct values itself.
    let left = s.s.deadline().saturating_duration_since(Instant::now());
    let max_time = left.mul_f32(SERVER_SHARE);
    let args = group_pipeline(&key, max_time);
    let d = s
        .call_on("aggregate", target, db, args)
        .await
        .map_err(|e| call_failure(&e, "aggregate $group", budget))?;
    if let Some(e) = command_error(&d) {
        return match e.code {
            Some(CODE_MAX_TIME) => Err(format!(
                "aggregate $group on {} stopped at maxTimeMS {} ({e})",
                key.plain,
                max_time.as_millis()
            )),
            // More people than the group may hold in memory: read the keys instead.
            Some(c) if CODE_MEMORY.contains(&c) => {
                let why = format!(
                    "aggregate $group needed more memory than the server allows without \
                     spilling to disk ({e})"
                );
                census.run(s, product, &why).await
            }
            _ => Err(format!("aggregate $group on {} failed: {e}", key.plain)),
        };
    }
    let (n, _) = parse_group_count(&d).ok_or("aggregate $group gave no count")?;
    if n == 0 && q.holding.records.is_some_and(|r| r > 0) {
        return Err(format!("aggregate $group found no value of {}", key.plain));
    }
    let unwound = if key.unwind.is_empty() {
        String::new()
    } else {
        format!(" after $unwind of {}", key.unwind.join(", "))
    };
    Ok(Subjects {
        count: n,
        method: format!(
            "{product} aggregate $group on {}{unwound}, then $count: exact distinct values \
             (maxTimeMS {})",
            key.plain,
            max_time.as_millis()
        ),
        interval: None,
    })
}

/// Step 3 of the module docs: every document's key, read here and counted distinct.
struct KeyCensus<'q> {
    budget: SubjectsBudget,
    q: &'q SubjectsQuery<'q>,
    key: &'q KeyPath,
    db: &'q str,
    coll: &'q str,
}

impl KeyCensus<'_> {
    /// `why` says, in the method, why the server was not asked to count.
    async fn run(&self, s: &mut Session, product: &str, why: &str) -> Result<Subjects, String> {
        let (q, db, coll) = (self.q, self.db, self.coll);
        let mut counter = DistinctCounter::default();
        let (mut docs, mut missing) = (0u64, 0u64);
        let of = |docs: u64| match q.holding.records {
            Some(r) => format!("{docs} of {r} documents"),
            None => format!("{docs} documents"),
        };
        let stopped = |docs: u64, e: CallError| match e {
            Failure::Budget(Spent::Time) => format!(
                "key census read {} before the {} ms budget ({why})",
                of(docs),
                self.budget.per_container.as_millis()
            ),
            e => format!("key census stopped after {}: {e}", of(docs)),
        };
        let target = Bson::String(coll.to_string());
        let mut reply = s
            .call_on("find", target, db, key_census_args(self.key))
            .await
            .map_err(|e| stopped(0, e))?;
        loop {
            if let Some(e) = command_error(&reply) {
                return Err(format!("key census find failed after {}: {e}", of(docs)));
            }
            let (batch, id) =
                cursor_batch(&reply).ok_or("key census got a reply without a batch")?;
            let (n, m) = count_keys(batch, &q.field, &mut counter)
                .ok_or_else(|| format!("key census got a malformed batch after {}", of(docs)))?;
            docs += n;
            missing += m;
            if id == 0 {
                break;
            }
            let args = get_more_args(coll, Some(next_census_batch(s.cap, batch, n)));
            reply = s
                .call_on("getMore", Bson::Int64(id), db, args)
                .await
                .map_err(|e| stopped(docs, e))?;
        }
        if counter.count().0 == 0 && docs > 0 {
            return Err(format!("key census found no value of {}", q.field));
        }
        let how = format!("{product} find projected to the key; {why}");
        Ok(counter.answer(&q.field, docs, "documents", &how, missing))
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use bson::RawDocumentBuf;

    use super::super::inventory::tests::{ctx, finding, scripted, Answer, Request};
    use super::super::wire::refuse_command;
    use super::*;
    use crate::inventory::InventoryOptions;
    use crate::testkit::fixture;

    /// FerretDB v1.24.2 of the lab answering `listIndexes` on `smarthome.users` (only `_id_`)
    /// and the `aggregate` of [`group_pipeline`] on `smarthome.scale_measurements`' `user_id`
    /// (2 800 measurements of 951 people), captured with a Python socket script.
    const LIST_INDEXES: &[u8] = fixture!("mongodb/subj_listindexes.bin");
    const GROUP_COUNT: &[u8] = fixture!("mongodb/subj_group_count.bin");
    /// The same `aggregate` on `smarthome.users` with `maxTimeMS` 1000: code 50.
    const GROUP_TIMEOUT: &[u8] = fixture!("mongodb/subj_group_timeout.bin");

    fn reply(frame: &[u8]) -> RawDocumentBuf {
        let id = i32::from_le_bytes(frame[8..12].try_into().unwrap());
        super::super::wire::parse_reply(frame, id, Wire::Msg).unwrap()
    }

    #[test]
    fn key_paths() {
        let k = key_path("user_id").unwrap();
        assert_eq!((k.plain.as_str(), k.unwind.len()), ("user_id", 0));
        let k = key_path("devices[].owner").unwrap();
        assert_eq!(
            (k.plain.as_str(), k.unwind),
            ("devices.owner", vec!["devices".to_string()])
        );
        let k = key_path("a[].b[].c").unwrap();
        assert_eq!(k.unwind, ["a", "a.b"]);
        assert_eq!(key_path("emails[]").unwrap().unwind, ["emails"]);
        for bad in ["", "a..b", "$where", "a.$x", "a\0b", ".a", "a[x]"] {
            assert!(key_path(bad).is_none(), "{bad:?}");
        }
        assert!(key_path(&"a".repeat(2000)).is_none());
    }

    #[test]
    fn the_pipeline_counts_distinct_values_within_the_allowlist() {
        let k = key_path("devices[].owner").unwrap();
        let args = group_pipeline(&k, Duration::from_millis(9000));
        assert_eq!(
            args,
            doc! {
                "pipeline": [
                    { "$project": { "devices.owner": 1, "_id": 0 } },
                    { "$unwind": "$devices" },
                    { "$group": { "_id": "$devices.owner" } },
                    { "$match": { "_id": { "$ne": Bson::Null } } },
                    { "$count": "n" },
                ],
                "cursor": { "batchSize": 2i64 },
                "allowDiskUse": false,
                "maxTimeMS": 9000i64,
            }
        );
        assert_eq!(refuse_command("aggregate", &args), None);
        let id = group_pipeline(&key_path("_id").unwrap(), Duration::from_secs(1));
        assert_eq!(refuse_command("aggregate", &id), None);
        // Without allowDiskUse: false, or with an accumulator, the group is refused.
        let mut spill = args.clone();
        spill.insert("allowDiskUse", true);
        assert!(refuse_command("aggregate", &spill)
            .unwrap()
            .contains("allowDiskUse"));
        spill.remove("allowDiskUse");
        assert!(refuse_command("aggregate", &spill)
            .unwrap()
            .contains("allowDiskUse"));
        let mut acc = args.clone();
        acc.insert(
            "pipeline",
            bson::bson!([{ "$group": { "_id": "$u", "docs": { "$push": "$$ROOT" } } }]),
        );
        assert!(refuse_command("aggregate", &acc)
            .unwrap()
            .contains("$group"));
        assert_eq!(
            list_indexes_args(),
            doc! { "cursor": { "batchSize": 1000i64 } }
        );
    }

    #[test]
    fn unique_indexes_from_spec_and_capture() {
        // The lab's users: only the `_id` index, so user_id needs a group.
        let d = reply(LIST_INDEXES);
        let (batch, id) = cursor_batch(&d).unwrap();
        assert_eq!(id, 0);
        assert_eq!(unique_index_on(batch, "user_id"), None);
        assert_eq!(unique_index_on(batch, "_id").as_deref(), Some("_id_"));
        // CONSTRUCTED from the listIndexes reference: unique, sparse, partial, compound, hashed.
        let d = RawDocumentBuf::from_document(&doc! {
            "cursor": { "id": 0i64, "ns": "s.u", "firstBatch": [
                { "v": 2, "key": { "_id": 1 }, "name": "_id_" },
                { "v": 2, "key": { "email": 1 }, "name": "email_1", "unique": true, "sparse": true },
                { "v": 2, "key": { "phone": 1 }, "name": "phone_1", "unique": true,
                  "partialFilterExpression": { "phone": { "$exists": true } } },
                { "v": 2, "key": { "user_id": 1, "org": 1 }, "name": "uo", "unique": true },
                { "v": 2, "key": { "handle": "hashed" }, "name": "h", "unique": true },
                { "v": 2, "key": { "user_id": -1 }, "name": "user_id_-1", "unique": true },
                { "v": 2, "key": { "name": 1 }, "name": "name_1" },
            ] },
            "ok": 1.0,
        })
        .unwrap();
        let (batch, _) = cursor_batch(&d).unwrap();
        assert_eq!(
            unique_index_on(batch, "user_id").as_deref(),
            Some("user_id_-1")
        );
        for no in ["email", "phone", "org", "handle", "name"] {
            assert_eq!(unique_index_on(batch, no), None, "{no}");
        }
    }

    #[test]
    fn real_group_replies() {
        assert_eq!(parse_group_count(&reply(GROUP_COUNT)), Some((951, 0)));
        let e = command_error(&reply(GROUP_TIMEOUT)).unwrap();
        assert_eq!(e.code, Some(CODE_MAX_TIME));
        assert_eq!(parse_group_count(&reply(GROUP_TIMEOUT)), None);
        // An empty collection: no group, no count document.
        let empty = RawDocumentBuf::from_document(
            &doc! { "cursor": { "id": 0i64, "ns": "s.u", "firstBatch": [] }, "ok": 1.0 },
        )
        .unwrap();
        assert_eq!(parse_group_count(&empty), Some((0, 0)));
        let two = RawDocumentBuf::from_document(
            &doc! { "cursor": { "id": 0i64, "ns": "s.u", "firstBatch": [{"n": 1}, {"n": 2}] }, "ok": 1.0 },
        )
        .unwrap();
        assert_eq!(parse_group_count(&two), None);
    }

    // ---- against a scripted server ----

    fn server(r: &Request) -> Answer {
        let coll = r.body.get_str(&r.cmd).unwrap_or("");
        match r.cmd.as_str() {
            "hello" => Answer::Frame(super::super::inventory::tests::OPEN_HELLO),
            "listIndexes" if coll == "users" => Answer::Doc(doc! {
                "cursor": { "id": 0i64, "ns": "s.users", "firstBatch": [
                    { "v": 2, "key": { "_id": 1 }, "name": "_id_" },
                    { "v": 2, "key": { "user_id": 1 }, "name": "user_id_1", "unique": true },
                ] },
                "ok": 1.0,
            }),
            "listIndexes" => Answer::Frame(LIST_INDEXES),
            "aggregate" if coll == "slow" => Answer::Frame(GROUP_TIMEOUT),
            "aggregate" if coll == "stall" => Answer::Stall,
            "aggregate" => Answer::Frame(GROUP_COUNT),
            _ => Answer::Stall,
        }
    }

    fn holding(name: &str, records: u64) -> Holding {
        Holding {
            name: name.into(),
            kind: "collection",
            records: Some(records),
            records_exact: true,
            ..Holding::default()
        }
    }

    #[tokio::test]
    async fn unique_index_group_timeout_and_stall() {
        let (addr, log): (SocketAddr, _) = scripted(server).await;
        let hs = [
            holding("s.users", 10_000),
            holding("s.scale", 2_800),
            holding("s.scale", 2_800),
            holding("s.slow", 10_000),
            holding("s.stall", 10_000),
            holding("nodot", 1),
        ];
        let q = |h, f: &str| SubjectsQuery {
            holding: h,
            field: f.into(),
            field_type: None,
        };
        let queries = [
            q(&hs[0], "user_id"),
            q(&hs[1], "user_id"),
            q(&hs[2], "devices[].owner"),
            q(&hs[3], "user_id"),
            q(&hs[4], "user_id"),
            q(&hs[5], "user_id"),
        ];
        let budget = SubjectsBudget {
            per_container: Duration::from_millis(1500),
            until: None,
        };
        let t0 = std::time::Instant::now();
        let got = subjects(
            Counting { ctx: &ctx(addr), finding: // The captured FerretDB replies stand in for MongoDB's (the same shapes): the
            // `$group` path is MongoDB's.
            &finding("MongoDB"), opts: &InventoryOptions::default(), budget, queries: &queries },
        )
        .await;
        assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
        assert_eq!(
            got[0].as_ref().unwrap(),
            &Subjects {
                count: 10_000,
                method: "MongoDB unique index user_id_1 on user_id: one person per document, \
                         so the documents' exact count"
                    .into(),
                interval: None,
            }
        );
        let g = got[1].as_ref().unwrap();
        assert_eq!(g.count, 951);
        assert!(
            g.method.starts_with("MongoDB aggregate $group on user_id, then $count: exact distinct values (maxTimeMS "),
            "{}",
            g.method
        );
        assert!(got[2]
            .as_ref()
            .unwrap()
            .method
            .contains("after $unwind of devices"));
        assert!(
            got[3]
                .as_ref()
                .unwrap_err()
                .contains("stopped at maxTimeMS"),
            "{got:?}"
        );
        assert!(
            got[4]
                .as_ref()
                .unwrap_err()
                .contains("no answer within the 1500 ms budget"),
            "{got:?}"
        );
        assert!(got[5].is_err());

        let log = log.requests();
        let cmds: Vec<&str> = log.iter().map(|r| r.cmd.as_str()).collect();
        // No listIndexes for an array path; the stalled exchange is followed by nothing.
        assert_eq!(
            cmds,
            [
                "hello",
                "listIndexes",
                "listIndexes",
                "aggregate",
                "aggregate",
                "listIndexes",
                "aggregate",
                "listIndexes",
                "aggregate"
            ]
        );
        for r in log.iter().filter(|r| r.cmd == "aggregate") {
            let mut args = r.body.clone();
            args.remove("aggregate");
            args.remove("$db");
            assert_eq!(refuse_command("aggregate", &args), None);
            assert_eq!(args.get_bool("allowDiskUse"), Ok(false));
            let ms = args.get_i64("maxTimeMS").unwrap();
            assert!((1..=1500).contains(&ms), "{ms}");
        }
    }

    #[test]
    fn only_ferretdb_1_is_spared_the_group() {
        let mut f = finding("FerretDB");
        assert!(
            !groups_efficiently(&f),
            "an unknown FerretDB version counts as 1.x"
        );
        f.version = Some("1.24.2".into());
        assert!(!groups_efficiently(&f));
        f.version = Some("2.1.0".into());
        assert!(groups_efficiently(&f));
        assert!(groups_efficiently(&finding("MongoDB")));
        let k = key_path("devices[].owner").unwrap();
        assert_eq!(
            key_census_args(&k),
            doc! { "filter": {}, "projection": { "devices.owner": 1, "_id": 0 }, "batchSize": 1000i64 }
        );
        assert_eq!(refuse_command("find", &key_census_args(&k)), None);
    }

    /// CONSTRUCTED from the `find`/`getMore` reference: key census batches, a `$group` over
    /// MongoDB's memory limit (code 292), a census that stalls.
    fn census_server(r: &Request) -> Answer {
        let coll = r.body.get_str(&r.cmd).unwrap_or("");
        let cursor = |first: bool, id: i64, docs: Vec<Document>| {
            let key = if first { "firstBatch" } else { "nextBatch" };
            Answer::Doc(doc! { "cursor": { key: docs, "id": id, "ns": "s.x" }, "ok": 1.0 })
        };
        match (r.cmd.as_str(), coll) {
            ("hello", _) => Answer::Frame(super::super::inventory::tests::OPEN_HELLO),
            ("listIndexes", _) => Answer::Frame(LIST_INDEXES),
            ("aggregate", "big") => Answer::Doc(doc! {
                "ok": 0.0, "code": 292, "codeName": "QueryExceededMemoryLimitNoDiskUseAllowed",
                "errmsg": "Exceeded memory limit for $group, but didn't allow external spilling",
            }),
            ("find", "scale") => cursor(
                true,
                77,
                vec![
                    doc! { "user_id": "u1" },
                    doc! { "user_id": "u2" },
                    doc! {},
                    doc! { "user_id": Bson::Null },
                ],
            ),
            ("getMore", _) if r.body.get_i64("getMore") == Ok(77) => cursor(
                false,
                0,
                vec![doc! { "user_id": "u1" }, doc! { "user_id": 3i32 }],
            ),
            ("find", "devices") => cursor(
                true,
                0,
                vec![
                    doc! { "devices": [{ "owner": "a" }, { "owner": "b" }] },
                    doc! { "devices": [{ "owner": "a" }] },
                ],
            ),
            ("find", "big") => cursor(true, 0, vec![doc! { "user_id": "x" }]),
            ("find", "nokey") => cursor(true, 0, vec![doc! { "other": 1 }]),
            _ => Answer::Stall,
        }
    }

    #[tokio::test]
    async fn key_census_for_ferretdb_1_and_after_a_group_out_of_memory() {
        let (addr, log): (SocketAddr, _) = scripted(census_server).await;
        let hs = [
            holding("s.scale", 6),
            holding("s.devices", 2),
            holding("s.stall", 10_000),
            holding("s.nokey", 1),
            holding("s.big", 1),
        ];
        let q = |h, f: &str| SubjectsQuery {
            holding: h,
            field: f.into(),
            field_type: None,
        };
        let budget = SubjectsBudget {
            per_container: Duration::from_millis(1500),
            until: None,
        };
        let mut ferret = finding("FerretDB");
        ferret.version = Some("1.24.2".into());
        let queries = [
            q(&hs[0], "user_id"),
            q(&hs[1], "devices[].owner"),
            q(&hs[2], "user_id"),
            q(&hs[3], "user_id"),
        ];
        let opts = InventoryOptions::default();
        let got = subjects(Counting {
            ctx: &ctx(addr),
            finding: &ferret,
            opts: &opts,
            budget,
            queries: &queries,
        })
        .await;
        let scale = got[0].as_ref().unwrap();
        assert_eq!(scale.count, 3, "u1, u2 and 3; no null, no missing");
        assert_eq!(
            scale.method,
            "exact distinct user_id over all 6 documents read (FerretDB find projected to the \
             key; not $group: FerretDB 1.x groups in time documents × people), 2 documents \
             without it or gone"
        );
        assert_eq!(got[1].as_ref().unwrap().count, 2, "owners, not arrays");
        let stalled = got[2].as_ref().unwrap_err();
        assert!(
            stalled.starts_with("key census read 0 of 10000 documents before the 1500 ms budget"),
            "{stalled}"
        );
        assert!(got[3].as_ref().unwrap_err().contains("no value of user_id"));
        {
            let log = log.requests();
            assert!(
                !log.iter().any(|r| r.cmd == "aggregate"),
                "no $group to FerretDB 1.x"
            );
            let more: Vec<&Request> = log.iter().filter(|r| r.cmd == "getMore").collect();
            assert_eq!(more.len(), 1);
            assert_eq!(more[0].body.get_str("collection"), Ok("scale"));
        }

        let got = subjects(Counting {
            ctx: &ctx(addr),
            finding: &finding("MongoDB"),
            opts: &opts,
            budget,
            queries: &[q(&hs[4], "user_id")],
        })
        .await;
        let big = got[0].as_ref().unwrap();
        assert_eq!(big.count, 1);
        assert!(
            big.method
                .contains("aggregate $group needed more memory than the server allows"),
            "{}",
            big.method
        );
        let log = log.requests();
        for r in log.iter() {
            let mut args = r.body.clone();
            args.remove(&r.cmd);
            args.remove("$db");
            assert_eq!(refuse_command(&r.cmd, &args), None, "{}", r.cmd);
        }
    }
}
