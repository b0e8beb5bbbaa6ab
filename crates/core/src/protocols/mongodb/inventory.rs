//! Inventory of an exposed MongoDB-wire server: its collections with counts and sizes, the BSON
//! types seen in them, and a bounded sample of documents spread over each.
//!
//! Every request goes through `Session::call_on` (allowlist, pipeline and cursor checks):
//! - `listDatabases` (`nameOnly: true`), then `listCollections` per database
//!   (`nameOnly: true, authorizedCollections: true`: names and types without taking collection
//!   locks), following its cursor with `getMore`. All of it comes first, so a budget that runs
//!   out later still leaves the list. The databases' `sizeOnDisk` (`nameOnly: false`) is asked
//!   last, under a deadline of its own ([`sizes_wait`]): MongoDB reads it from its catalogue, but
//!   FerretDB on SQLite sums `dbstat`, reading every page of its database file — over a
//!   minute for a few gigabytes, which made a listing that asked it first miss every deadline. Databases `admin`, `local`, `config` and `system.*`
//!   collections are listed as system, after the others. Views are listed but neither counted
//!   nor sampled (reading a view runs its pipeline).
//! - `count` without a query gives the number of documents and, on MongoDB only, `collStats`
//!   the data size and average document size (which sizes the read batches); FerretDB runs
//!   SQLite `ANALYZE` for `collStats`, a write, so it gets none and sizes are per database
//!   (`sizeOnDisk`, in a note). MongoDB answers a `count` with an empty predicate — `{}`
//!   included — from collection metadata (its `RECORD_STORE_FAST_COUNT` plan), which drifts
//!   after an unclean shutdown and counts orphans on sharded clusters, so it is reported as an
//!   estimate; FerretDB has no such metadata and counts by reading the collection, so its
//!   `count` is exact. Such a count reads every document (FerretDB ignores `maxTimeMS` on
//!   `count`), so such counts end at [`COUNT_SHARE`] of the inventory's time; a collection
//!   too large to count by then is listed without a count (noted), and the rest of the budget
//!   goes to samples.
//! - Samples: `aggregate [{$sample: {size: N}}]` where the server has it (MongoDB picks random
//!   documents with a random cursor); otherwise (FerretDB answers code 238 NotImplemented, found
//!   once per server) up to ten `find` windows of `limit` documents at a random `skip` inside
//!   each tenth of the collection. Windows use `singleBatch`, so the server keeps no cursor.
//! - `--full`: a census that walks a `find` cursor projected to `{_id: 1}` with `getMore` and
//!   counts the documents of each batch without keeping them: memory is one frame, every batch
//!   returns well within a read deadline however large the collection, and a budget stops it
//!   between batches (the catalogue figure then stays, marked as an estimate). A `count` with
//!   a predicate that forces a scan would be one request, but one that can outlast any read
//!   deadline on a large collection with nothing to show when it does.
//! - `killCursors` closes a cursor of ours that was left open (a `$sample` or census cut short).
//!
//! Documents are converted to JSON (ObjectId as hex, dates as RFC 3339, binary UUIDs as UUIDs,
//! other binary as base64) and flattened with [`flatten_json`]. A top-level ObjectId `_id` is
//! left out of the sample (a server-made key with no subject data in it), other `_id` values
//! stay: applications put e-mail addresses and user ids there.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bson::raw::{RawArray, RawBsonRef, RawDocument};
use bson::spec::BinarySubtype;
use bson::{doc, Bson};
use serde_json::{Map, Number, Value};
use tokio::time::Instant;

use super::wire::{clean, command_error, field, handshake, number, CommandError, Session, Wire};
use crate::driver::{self, Budget, Finding, ProbeCtx, Spent, Wait};
use crate::inventory::{flatten_json, Holding, Inventory, InventoryOptions, Record};
use crate::net::NetError;

/// What the manifest and the report call a MongoDB container.
const KIND: &str = "collection";
/// Databases of the server itself.
const SYSTEM_DATABASES: &[&str] = &["admin", "local", "config"];
/// Reads of a skip window or a `$sample` over a large collection take longer than a probe's.
const MIN_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// `find` windows a sample is spread over, at most.
const SAMPLE_WINDOWS: usize = 10;
/// Documents the windows of one sample may make the server skip over, about (see
/// [`plan_sample`]).
const SKIP_BUDGET: u64 = 20_000;
/// Average document size assumed when `collStats` gives none.
const DEFAULT_DOC_SIZE: usize = 4096;
/// Census batch sizes: the first, and the most any later one asks for.
const CENSUS_FIRST_BATCH: usize = 1000;
const CENSUS_MAX_BATCH: usize = 50_000;
/// Collections whose names are kept while listing (the rest are only counted).
const MAX_LISTED: usize = 100_000;
/// Deepest BSON nesting converted, and most schema paths kept from one collection.
const MAX_DEPTH: usize = 20;
const MAX_SCHEMA_PATHS: usize = 2000;
/// Bytes of the read budget kept back for closing a cursor left open when the rest ran out.
const CLEANUP_RESERVE: usize = 4096;
/// Notes kept per service; later ones are counted in a last note.
const MAX_NOTES: usize = 40;
/// Codes that say the server lacks `$sample`: NotImplemented (FerretDB), unrecognised stage.
const NO_SAMPLE_STAGE: &[i32] = &[238, 40324, 16436];

/// One database of `listDatabases`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbInfo {
    pub name: String,
    pub size_on_disk: Option<u64>,
}

/// One entry of `listCollections`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollInfo {
    pub name: String,
    /// `collection`, `view`, `timeseries` …; `collection` when the server leaves it out
    /// (FerretDB with `nameOnly`).
    pub kind: String,
}

/// What `collStats` says of one collection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CollStats {
    pub count: Option<u64>,
    pub size: Option<u64>,
    pub avg_obj_size: Option<u64>,
}

fn non_negative(v: RawBsonRef<'_>) -> Option<u64> {
    let x = number(v)?;
    (0.0..1.8e19).contains(&x).then_some(x as u64)
}

/// Databases of a successful `listDatabases` reply (`sizeOnDisk` only with `nameOnly: false`).
pub fn parse_databases(d: &RawDocument) -> Option<Vec<DbInfo>> {
    if command_error(d).is_some() {
        return None;
    }
    let mut out = Vec::new();
    for entry in field(d, "databases")?.as_array()? {
        let db = entry.ok()?.as_document()?;
        out.push(DbInfo {
            name: field(db, "name")?.as_str()?.to_string(),
            size_on_disk: field(db, "sizeOnDisk").and_then(non_negative),
        });
    }
    Some(out)
}

/// A cursor reply's batch (`firstBatch` or `nextBatch`) and the cursor id (0 = exhausted).
pub fn cursor_batch(d: &RawDocument) -> Option<(&RawArray, i64)> {
    if command_error(d).is_some() {
        return None;
    }
    let cursor = field(d, "cursor")?.as_document()?;
    let batch = field(cursor, "firstBatch")
        .or_else(|| field(cursor, "nextBatch"))?
        .as_array()?;
    let id = match field(cursor, "id")? {
        RawBsonRef::Int64(x) => x,
        RawBsonRef::Int32(x) => i64::from(x),
        _ => return None,
    };
    Some((batch, id))
}

/// Collections of one `listCollections` batch.
pub fn parse_collections(batch: &RawArray) -> Option<Vec<CollInfo>> {
    let mut out = Vec::new();
    for entry in batch {
        let c = entry.ok()?.as_document()?;
        out.push(CollInfo {
            name: field(c, "name")?.as_str()?.to_string(),
            kind: field(c, "type")
                .and_then(|t| t.as_str())
                .map_or_else(|| "collection".to_string(), |t| clean(t, 32)),
        });
    }
    Some(out)
}

/// `n` of a successful `count` reply.
pub fn parse_count(d: &RawDocument) -> Option<u64> {
    if command_error(d).is_some() {
        return None;
    }
    field(d, "n").and_then(non_negative)
}

/// Figures of a successful `collStats` reply.
pub fn parse_coll_stats(d: &RawDocument) -> Option<CollStats> {
    if command_error(d).is_some() {
        return None;
    }
    Some(CollStats {
        count: field(d, "count").and_then(non_negative),
        size: field(d, "size").and_then(non_negative),
        avg_obj_size: field(d, "avgObjSize").and_then(non_negative),
    })
}

/// Documents in a batch, each checked to be a document; None when one is not.
pub fn count_documents(batch: &RawArray) -> Option<u64> {
    let mut n = 0u64;
    for item in batch {
        item.ok()?.as_document()?;
        n += 1;
    }
    Some(n)
}

/// A system container: the server's own databases, `system.*` collections anywhere.
pub fn is_system(db: &str, coll: &str) -> bool {
    SYSTEM_DATABASES.contains(&db) || coll.starts_with("system.")
}

/// The `$type` alias of a BSON value, as MongoDB names types.
pub fn type_name(v: RawBsonRef<'_>) -> &'static str {
    match v {
        RawBsonRef::Double(_) => "double",
        RawBsonRef::String(_) => "string",
        RawBsonRef::Document(_) => "object",
        RawBsonRef::Array(_) => "array",
        RawBsonRef::Binary(_) => "binData",
        RawBsonRef::Undefined => "undefined",
        RawBsonRef::ObjectId(_) => "objectId",
        RawBsonRef::Boolean(_) => "bool",
        RawBsonRef::DateTime(_) => "date",
        RawBsonRef::Null => "null",
        RawBsonRef::RegularExpression(_) => "regex",
        RawBsonRef::DbPointer(_) => "dbPointer",
        RawBsonRef::JavaScriptCode(_) => "javascript",
        RawBsonRef::Symbol(_) => "symbol",
        RawBsonRef::JavaScriptCodeWithScope(_) => "javascriptWithScope",
        RawBsonRef::Int32(_) => "int",
        RawBsonRef::Timestamp(_) => "timestamp",
        RawBsonRef::Int64(_) => "long",
        RawBsonRef::Decimal128(_) => "decimal",
        RawBsonRef::MinKey => "minKey",
        RawBsonRef::MaxKey => "maxKey",
    }
}

fn uuid_string(b: &[u8]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// One BSON value as JSON; `cap` bounds the bytes of binary taken. Nesting deeper than
/// `MAX_DEPTH` becomes null (the flattener drops it anyway), so a hostile document cannot
/// recurse the stack away; an element that fails to decode ends its document or array.
pub fn to_json(v: RawBsonRef<'_>, cap: usize, depth: usize) -> Value {
    match v {
        RawBsonRef::Double(x) => {
            Number::from_f64(x).map_or_else(|| Value::String(x.to_string()), Value::Number)
        }
        RawBsonRef::String(s) | RawBsonRef::Symbol(s) | RawBsonRef::JavaScriptCode(s) => {
            Value::String(s.to_string())
        }
        RawBsonRef::JavaScriptCodeWithScope(c) => Value::String(c.code.to_string()),
        RawBsonRef::Document(d) => document_json(d, cap, depth, false),
        RawBsonRef::Array(a) => {
            if depth >= MAX_DEPTH {
                return Value::Null;
            }
            Value::Array(
                a.into_iter()
                    .map_while(Result::ok)
                    .map(|x| to_json(x, cap, depth + 1))
                    .collect(),
            )
        }
        RawBsonRef::Binary(b) => {
            let uuid = matches!(b.subtype, BinarySubtype::Uuid | BinarySubtype::UuidOld)
                && b.bytes.len() == 16;
            if uuid {
                Value::String(uuid_string(b.bytes))
            } else {
                let take = &b.bytes[..b.bytes.len().min(cap)];
                Value::String(base64::engine::general_purpose::STANDARD.encode(take))
            }
        }
        RawBsonRef::ObjectId(o) => Value::String(o.to_hex()),
        RawBsonRef::Boolean(b) => Value::Bool(b),
        RawBsonRef::DateTime(t) => Value::String(
            t.try_to_rfc3339_string()
                .unwrap_or_else(|_| t.timestamp_millis().to_string()),
        ),
        RawBsonRef::RegularExpression(r) => Value::String(format!("/{}/{}", r.pattern, r.options)),
        RawBsonRef::Int32(x) => Value::from(x),
        RawBsonRef::Int64(x) => Value::from(x),
        RawBsonRef::Timestamp(t) => Value::from(t.time),
        RawBsonRef::Decimal128(d) => Value::String(d.to_string()),
        RawBsonRef::Null
        | RawBsonRef::Undefined
        | RawBsonRef::MinKey
        | RawBsonRef::MaxKey
        | RawBsonRef::DbPointer(_) => Value::Null,
    }
}

/// A document as a JSON object; `top` drops an ObjectId `_id` (see the module docs).
pub fn document_json(d: &RawDocument, cap: usize, depth: usize, top: bool) -> Value {
    if depth >= MAX_DEPTH {
        return Value::Null;
    }
    let mut out = Map::new();
    for (k, v) in d.into_iter().map_while(Result::ok) {
        if top && k == "_id" && matches!(v, RawBsonRef::ObjectId(_)) {
            continue;
        }
        out.insert(k.to_string(), to_json(v, cap, depth + 1));
    }
    Value::Object(out)
}

/// Field paths and the BSON types seen at each, in first-seen order (`devices` array,
/// `devices[]` object, `devices[].mac` string).
#[derive(Debug, Default)]
pub struct Schema {
    order: Vec<(String, Vec<&'static str>)>,
    index: HashMap<String, usize>,
}

impl Schema {
    pub fn add_document(&mut self, d: &RawDocument) {
        self.walk_doc(d, "", 0);
    }

    fn note(&mut self, path: &str, ty: &'static str) {
        match self.index.get(path) {
            Some(&i) if !self.order[i].1.contains(&ty) => self.order[i].1.push(ty),
            Some(_) => {}
            None if self.order.len() < MAX_SCHEMA_PATHS => {
                self.index.insert(path.to_string(), self.order.len());
                self.order.push((path.to_string(), vec![ty]));
            }
            None => {}
        }
    }

    fn walk_doc(&mut self, d: &RawDocument, prefix: &str, depth: usize) {
        for (k, v) in d.into_iter().map_while(Result::ok) {
            // A generated ObjectId `_id` is the store's row id, not data: kept out of the schema
            // as it is kept out of the sample (a custom `_id`, say an e-mail, stays).
            if prefix.is_empty() && k == "_id" && matches!(v, bson::RawBsonRef::ObjectId(_)) {
                continue;
            }
            let path = if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            };
            self.walk(v, &path, depth + 1);
        }
    }

    fn walk(&mut self, v: RawBsonRef<'_>, path: &str, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        self.note(path, type_name(v));
        match v {
            RawBsonRef::Document(d) => self.walk_doc(d, path, depth),
            RawBsonRef::Array(a) => {
                let item = format!("{path}[]");
                for x in a.into_iter().map_while(Result::ok) {
                    self.walk(x, &item, depth + 1);
                }
            }
            _ => {}
        }
    }

    /// (path, types joined by `|`).
    pub fn finish(self) -> Vec<(String, String)> {
        self.order
            .into_iter()
            .map(|(p, t)| (p, t.join("|")))
            .collect()
    }
}

/// Arguments of `listCollections`: names and types only (no collection locks, no options),
/// including collections a restricted user may read.
pub fn list_collections_args() -> bson::Document {
    doc! { "nameOnly": true, "authorizedCollections": true, "cursor": {} }
}

/// Arguments of the `aggregate` that samples `n` random documents.
pub fn sample_args(n: usize, batch: usize) -> bson::Document {
    doc! {
        "pipeline": [ { "$sample": { "size": n as i64 } } ],
        "cursor": { "batchSize": batch as i64 },
    }
}

/// Arguments of the `find` that reads one sample window; `singleBatch` closes the cursor.
pub fn window_args(skip: u64, take: usize) -> bson::Document {
    let mut args =
        doc! { "filter": {}, "limit": take as i64, "batchSize": take as i64, "singleBatch": true };
    if skip > 0 {
        args.insert("skip", skip as i64);
    }
    args
}

/// Arguments of the `find` that opens a census cursor over `_id` only.
pub fn census_args() -> bson::Document {
    doc! { "filter": {}, "projection": { "_id": 1 }, "batchSize": CENSUS_FIRST_BATCH as i64 }
}

/// Arguments of a `getMore` on collection `coll`.
pub fn get_more_args(coll: &str, batch: Option<usize>) -> bson::Document {
    let mut args = doc! { "collection": coll };
    if let Some(b) = batch {
        args.insert("batchSize", b as i64);
    }
    args
}

/// Documents to ask of the next `getMore` of a census (the inventory's, or the key census of
/// [`super::count`]): as many as half a frame holds at what the last batch of `n` weighed.
pub fn next_census_batch(frame_cap: usize, last: &RawArray, n: u64) -> usize {
    let per_doc = (last.as_bytes().len() as u64 / n.max(1)).max(8) as usize;
    ((frame_cap / 2) / per_doc).clamp(1, CENSUS_MAX_BATCH)
}

/// Arguments of the `killCursors` that closes our cursor `id`.
pub fn kill_cursors_args(id: i64) -> bson::Document {
    doc! { "cursors": [Bson::Int64(id)] }
}

/// Notes with a cap, so a server with a thousand failing collections does not flood the report.
#[derive(Default)]
struct Notes {
    kept: Vec<String>,
    dropped: usize,
}

impl Notes {
    fn push(&mut self, s: String) {
        if self.kept.len() < MAX_NOTES {
            self.kept.push(s);
        } else {
            self.dropped += 1;
        }
    }
}

/// Where one listed container lives and what the listing said of it.
struct Target {
    db: String,
    coll: String,
    view: bool,
    avg_size: Option<u64>,
}

/// Everything gathered so far; it outlives the work future, so a time budget that cancels the
/// work still leaves what was found.
struct State {
    inv: Inventory,
    notes: Notes,
    targets: Vec<Target>,
    /// `sizeOnDisk` of each database, said when `collStats` gives no per-collection size.
    db_sizes: Vec<DbInfo>,
    session: Option<Session>,
    /// The server's `count` reads every document (FerretDB): exact.
    count_is_census: bool,
    /// When such counts must have ended (see [`COUNT_SHARE`]).
    counts_until: Instant,
    /// None until `$sample` was tried; false once the server refused it.
    sample_stage: Option<bool>,
}

/// Why one request gave nothing usable: the server answered with an error, or the call
/// failed (see [`stop_reason`] for the failures that stop the whole inventory).
type Failure = driver::Failure<CommandError>;

/// Why the whole inventory stops, as a note: a budget ran out. Any other failure concerns the
/// current container only.
fn stop_reason(e: &Failure, opts: &InventoryOptions) -> String {
    match e {
        Failure::Budget(Spent::Bytes) => {
            format!("the {}-byte read budget ran out", opts.byte_budget)
        }
        _ => format!(
            "the {} time budget ran out",
            crate::driver::secs(opts.time_budget)
        ),
    }
}

/// A failure in words: a spent budget as [`stop_reason`] says it.
fn say(e: &Failure, opts: &InventoryOptions) -> String {
    if e.is_budget() {
        stop_reason(e, opts)
    } else {
        e.to_string()
    }
}

/// The reply would not fit in one frame (documents larger than expected).
fn too_large(e: &Failure) -> bool {
    matches!(e, Failure::Net(NetError::TooLarge { .. }))
}

async fn ask(
    s: &mut Session,
    cmd: &str,
    value: Bson,
    db: &str,
    args: bson::Document,
) -> Result<bson::RawDocumentBuf, Failure> {
    match s.call_on(cmd, value, db, args).await {
        Ok(d) => match command_error(&d) {
            Some(e) => Err(Failure::Server(e)),
            None => Ok(d),
        },
        Err(e) => Err(e.map_server(|never| match never {})),
    }
}

/// The share of the inventory's working time that counts which read every document may use,
/// so a few huge collections cannot use it all up before anything is sampled.
pub const COUNT_SHARE: f32 = 0.6;

/// How long the databases' sizes may take (see the module docs): a tenth of the budget, 1 to 5 s.
pub fn sizes_wait(opts: &InventoryOptions) -> Duration {
    (opts.time_budget / 10).clamp(Duration::from_secs(1), Duration::from_secs(5))
}

/// The protocol's [`crate::driver::InventoryFn`].
pub(super) async fn inventory(
    ctx: &ProbeCtx,
    finding: &Finding,
    opts: &InventoryOptions,
) -> Inventory {
    let start = Instant::now();
    // Stop a little before the engine's own timeout, which would drop everything gathered, and
    // keep the last moments for closing a cursor left open.
    let margin = driver::margin(opts.time_budget);
    let work_deadline = start + opts.time_budget.saturating_sub(margin);
    let cleanup_deadline = start + opts.time_budget.saturating_sub(margin / 2);
    let ictx = ctx.with_read_timeout_at_least(MIN_READ_TIMEOUT);
    let mut st = State {
        inv: Inventory::default(),
        notes: Notes::default(),
        targets: Vec::new(),
        db_sizes: Vec::new(),
        session: None,
        count_is_census: finding.product.as_deref() == Some("FerretDB"),
        counts_until: start + opts.time_budget.saturating_sub(margin).mul_f32(COUNT_SHARE),
        sample_stage: None,
    };
    if finding.credential.is_some() {
        st.notes.push("MongoDB inventory reads without logging in; collections that need a login are not listed".into());
    }
    match tokio::time::timeout_at(work_deadline, work(&ictx, opts, work_deadline, &mut st)).await {
        Ok(Ok(())) => {}
        Ok(Err(why)) => st.notes.push(format!("inventory stopped early: {why}")),
        Err(_) => st.notes.push(format!(
            "inventory stopped early: the {} time budget ran out",
            crate::driver::secs(opts.time_budget)
        )),
    }
    if let Some(s) = st.session.as_mut() {
        s.s.set_deadline(Some(cleanup_deadline));
        s.reserve = 0;
        close_cursors(s, &mut st.notes).await;
    }
    let mut inv = st.inv;
    inv.notes = st.notes.kept;
    if st.notes.dropped > 0 {
        inv.notes
            .push(format!("{} more notes left out", st.notes.dropped));
    }
    inv
}

/// Closes every cursor of ours still open (a `$sample` or census cut short).
async fn close_cursors(s: &mut Session, notes: &mut Notes) {
    while let Some((db, coll, id)) = s.cursors.first().cloned() {
        let args = kill_cursors_args(id);
        if let Err(e) = s
            .call_on("killCursors", Bson::String(coll.clone()), &db, args)
            .await
        {
            notes.push(format!(
                "could not close cursor {id} on {db}.{coll} ({e}); the server drops it when it times out"
            ));
            return;
        }
        // The reply may be an error (cursor already gone); either way it is no longer ours.
        s.cursors.retain(|c| *c != (db.clone(), coll.clone(), id));
    }
}

/// Listing, counts, samples and the census, in that order (cheapest first).
async fn work(
    ctx: &ProbeCtx,
    opts: &InventoryOptions,
    deadline: Instant,
    st: &mut State,
) -> Result<(), String> {
    let conn = ctx
        .connect()
        .await
        .map_err(|e| format!("connect failed: {e}"))?;
    let mut s = Session::new(
        ctx,
        conn,
        Wire::Msg,
        Arc::new(Budget::new(deadline, opts.byte_budget)),
    );
    s.reserve = CLEANUP_RESERVE;
    st.session = Some(s);
    let s = st.session.as_mut().expect("session just set");
    handshake(ctx, s)
        .await
        .map_err(|seen| format!("handshake failed: {seen:?}"))?;
    // Names the product on this session, which decides whether `collStats` may be sent.
    match ask(s, "buildInfo", Bson::Int32(1), "admin", doc! {}).await {
        Err(e) if e.is_budget() => return Err(stop_reason(&e, opts)),
        Err(e) => st.notes.push(format!(
            "buildInfo failed ({e}); collStats not sent, so no sizes"
        )),
        Ok(_) => {}
    }
    if let Some(p) = s.product.as_deref().filter(|p| *p != "MongoDB") {
        st.notes.push(format!(
            "collStats not sent to {}: FerretDB answers it by running SQLite ANALYZE, a write to its \
             database files; sizes are per database (listDatabases sizeOnDisk)",
            clean(p, 32)
        ));
    }

    list(ctx, opts, st).await?;
    for i in 0..st.targets.len() {
        count(opts, st, i).await?;
    }
    if opts.sample > 0 {
        for i in 0..st.targets.len() {
            sample(opts, st, i).await?;
        }
    }
    if opts.full {
        for i in 0..st.targets.len() {
            census(opts, st, i).await?;
        }
    }
    sizes(opts, st).await;
    for db in &st.db_sizes {
        let of_db: Vec<&Holding> = st
            .targets
            .iter()
            .zip(&st.inv.holdings)
            .filter(|(t, _)| t.db == db.name)
            .map(|(_, h)| h)
            .collect();
        let unsized_db = !of_db.is_empty() && of_db.iter().all(|h| h.bytes.is_none());
        if let (Some(size), true) = (db.size_on_disk, unsized_db) {
            st.notes.push(format!(
                "database {} holds {size} bytes on disk (listDatabases); no per-collection size",
                clean(&db.name, 64)
            ));
        }
    }
    Ok(())
}

/// `sizeOnDisk` of every listed database, within [`sizes_wait`] (see the module docs); without
/// them the databases stay unsized, with a note.
async fn sizes(opts: &InventoryOptions, st: &mut State) {
    if st.db_sizes.is_empty() {
        return;
    }
    let s = st.session.as_mut().expect("session");
    let deadline = s.s.deadline();
    let wait = Instant::now() + sizes_wait(opts);
    s.s.set_deadline(Some(deadline.min(wait)));
    let args = doc! { "nameOnly": false };
    let reply = ask(s, "listDatabases", Bson::Int32(1), "admin", args).await;
    s.s.set_deadline(None);
    match reply.map(|r| parse_databases(&r)) {
        Ok(Some(dbs)) => {
            for db in &mut st.db_sizes {
                db.size_on_disk = dbs
                    .iter()
                    .find(|d| d.name == db.name)
                    .and_then(|d| d.size_on_disk);
            }
        }
        Ok(None) => st
            .notes
            .push("listDatabases with sizes gave no database list; databases are not sized".into()),
        Err(e) if e.is_budget() && Instant::now() < deadline => st.notes.push(format!(
            "database sizes not read: listDatabases with sizeOnDisk gave no answer within {} s \
                 (FerretDB sums them by reading its whole SQLite file)",
            sizes_wait(opts).as_secs()
        )),
        Err(e) => st.notes.push(format!(
            "database sizes not read: listDatabases failed: {e}"
        )),
    }
}

/// `listDatabases` on a connection of its own whose read may take the rest of the budget:
/// FerretDB sums every database's size for it, names only or not (see the module docs), and
/// nothing else can be listed before it answers.
async fn list_databases(
    ctx: &ProbeCtx,
    opts: &InventoryOptions,
    s: &mut Session,
) -> Result<bson::RawDocumentBuf, String> {
    let lctx = ctx.with_read_timeout_at_least(opts.time_budget);
    let conn = lctx
        .connect()
        .await
        .map_err(|e| format!("connect failed: {e}"))?;
    let mut ls = Session::new(&lctx, conn, s.wire, s.s.budget().clone());
    ls.reserve = s.reserve;
    ls.next_id = s.next_id;
    let args = doc! { "nameOnly": true };
    let reply = ask(&mut ls, "listDatabases", Bson::Int32(1), "admin", args).await;
    reply.map_err(|e| format!("listDatabases failed: {e}"))
}

async fn list(ctx: &ProbeCtx, opts: &InventoryOptions, st: &mut State) -> Result<(), String> {
    let s = st.session.as_mut().expect("session");
    let reply = list_databases(ctx, opts, s).await?;
    let dbs = parse_databases(&reply).ok_or("listDatabases gave no database list")?;
    let mut found: Vec<(String, CollInfo)> = Vec::new();
    let mut total = 0usize;
    for db in &dbs {
        let args = list_collections_args();
        let mut reply = match ask(s, "listCollections", Bson::Int32(1), &db.name, args).await {
            Ok(r) => r,
            Err(e) if e.is_budget() => return Err(stop_reason(&e, opts)),
            Err(e) => {
                st.notes.push(format!(
                    "listCollections on {} failed: {e}",
                    clean(&db.name, 64)
                ));
                continue;
            }
        };
        loop {
            let Some((batch, id)) = cursor_batch(&reply) else {
                st.notes.push(format!(
                    "listCollections on {} gave no collection list",
                    clean(&db.name, 64)
                ));
                break;
            };
            let Some(colls) = parse_collections(batch) else {
                st.notes.push(format!(
                    "listCollections on {} gave a malformed entry",
                    clean(&db.name, 64)
                ));
                break;
            };
            total += colls.len();
            for c in colls {
                if found.len() < MAX_LISTED {
                    found.push((db.name.clone(), c));
                }
            }
            if id == 0 {
                break;
            }
            let args = get_more_args("$cmd.listCollections", None);
            reply = match ask(s, "getMore", Bson::Int64(id), &db.name, args).await {
                Ok(r) => r,
                Err(e) if e.is_budget() => return Err(stop_reason(&e, opts)),
                Err(e) => {
                    st.notes.push(format!(
                        "listCollections on {} cut short: {e}",
                        clean(&db.name, 64)
                    ));
                    break;
                }
            };
        }
    }
    // Data first: a budget that runs out should cut the server's own collections, not the data.
    found.sort_by_key(|(db, c)| is_system(db, &c.name));
    if total > opts.max_containers {
        st.notes.push(format!(
            "listed {} of {total} collections (at most {} per service)",
            opts.max_containers.min(found.len()),
            opts.max_containers
        ));
    }
    found.truncate(opts.max_containers);
    let views: Vec<String> = found
        .iter()
        .filter(|(_, c)| c.kind == "view")
        .map(|(db, c)| format!("{db}.{}", c.name))
        .collect();
    if !views.is_empty() {
        st.notes.push(format!(
            "views listed but not counted or sampled (reading a view runs its pipeline): {}",
            clean(&views.join(", "), 400)
        ));
    }
    for (db, c) in found {
        st.inv.holdings.push(Holding {
            name: clean(&format!("{db}.{}", c.name), 200),
            kind: KIND,
            system: is_system(&db, &c.name),
            ..Holding::default()
        });
        st.targets.push(Target {
            view: c.kind == "view",
            db,
            coll: c.name,
            avg_size: None,
        });
    }
    st.db_sizes = dbs;
    Ok(())
}

async fn count(opts: &InventoryOptions, st: &mut State, i: usize) -> Result<(), String> {
    if st.targets[i].view {
        return Ok(());
    }
    let (db, coll) = (st.targets[i].db.clone(), st.targets[i].coll.clone());
    let name = st.inv.holdings[i].name.clone();
    let s = st.session.as_mut().expect("session");
    let deadline = s.s.deadline();
    if st.count_is_census {
        if Instant::now() >= st.counts_until {
            st.notes.push(format!(
                "{name}: not counted: the counts' share of the time budget was spent (the server \
                 reads every document to count them)"
            ));
            return Ok(());
        }
        s.s.set_deadline(Some(deadline.min(st.counts_until)));
        // One reply after reading every document: the counts' share, not a read timeout,
        // decides how long it may take (a 2.4 M-document collection counts in minutes).
        s.s.set_wait(Wait::AtLeast(
            st.counts_until.saturating_duration_since(Instant::now()),
        ));
    }
    let reply = ask(s, "count", Bson::String(coll.clone()), &db, doc! {}).await;
    s.s.set_deadline(None);
    s.s.set_wait(Wait::Probe);
    match reply {
        Ok(r) => match parse_count(&r) {
            Some(n) => {
                st.inv.holdings[i].records = Some(n);
                st.inv.holdings[i].records_exact = st.count_is_census;
            }
            None => st.notes.push(format!("{name}: count gave no number")),
        },
        // The count's own deadline, not the inventory's: this collection stays uncounted.
        Err(e) if e.is_budget() && Instant::now() < deadline => st.notes.push(format!(
            "{name}: not counted: count gave no answer within the counts' share of the time \
                 budget (the server reads every document to count them)"
        )),
        Err(e) if e.is_budget() => return Err(stop_reason(&e, opts)),
        Err(e) => st.notes.push(format!("{name}: count failed: {e}")),
    }
    if s.product.as_deref() != Some("MongoDB") {
        return Ok(());
    }
    match ask(s, "collStats", Bson::String(coll), &db, doc! {}).await {
        Ok(r) => {
            let stats = parse_coll_stats(&r).unwrap_or_default();
            let h = &mut st.inv.holdings[i];
            h.bytes = stats.size;
            if h.records.is_none() {
                // The catalogue figure, when `count` would not say.
                h.records = stats.count;
                h.records_exact = false;
            }
            st.targets[i].avg_size = stats.avg_obj_size.filter(|&a| a > 0);
        }
        Err(e) if e.is_budget() => return Err(stop_reason(&e, opts)),
        Err(e) => st.notes.push(format!("{name}: collStats failed: {e}")),
    }
    Ok(())
}

/// Documents per read batch so one reply stays well inside the frame cap.
fn batch_limit(frame_cap: usize, avg_size: Option<u64>) -> usize {
    let avg = avg_size.map_or(DEFAULT_DOC_SIZE, |a| {
        usize::try_from(a).unwrap_or(usize::MAX).max(16)
    });
    ((frame_cap / 2) / avg).clamp(1, 10_000)
}

/// Where the `find` windows of a sample of `n` documents start and how many each reads, and
/// how far into the collection they reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamplePlan {
    /// (skip, limit) of each read, in ascending order of skip.
    pub reads: Vec<(u64, usize)>,
    /// Documents the windows are spread over (from the start).
    pub span: u64,
}

/// Plans the windows of a sample of `n` from a collection of `records` documents, with
/// `per_read` documents at most per reply. Windows sit at a random offset inside equal strata
/// of the collection; `skip` makes the server walk every document it passes (FerretDB at a few
/// thousand a second), so there are as many windows as `SKIP_BUDGET` affords (at most
/// `SAMPLE_WINDOWS`), and a collection much larger than the budget is sampled within its
/// first `2 × SKIP_BUDGET` documents rather than not at all.
pub fn plan_sample(
    n: usize,
    records: Option<u64>,
    per_read: usize,
    mut rand: impl FnMut() -> u64,
) -> SamplePlan {
    let per_read = per_read.max(1);
    let mut reads = Vec::new();
    let push = |reads: &mut Vec<(u64, usize)>, skip: u64, take: usize| {
        let mut done = 0;
        while done < take {
            let now = per_read.min(take - done);
            reads.push((skip + done as u64, now));
            done += now;
        }
    };
    match records {
        Some(c) if c > n as u64 && n > 0 => {
            // Windows at random offsets in equal strata skip about windows × span / 2 in all.
            let windows = ((2 * SKIP_BUDGET) / c).clamp(1, SAMPLE_WINDOWS as u64) as usize;
            let windows = windows.min(n);
            let span = c.min(2 * SKIP_BUDGET);
            let stratum = span / windows as u64;
            let k = n.div_ceil(windows);
            for i in 0..windows {
                let take = k.min(n.saturating_sub(i * k));
                if take == 0 {
                    break;
                }
                let slack = stratum.saturating_sub(take as u64);
                let jitter = if slack == 0 { 0 } else { rand() % (slack + 1) };
                push(&mut reads, i as u64 * stratum + jitter, take);
            }
            SamplePlan { reads, span }
        }
        // Small or uncounted: from the start, as far as `n` goes.
        _ => {
            push(&mut reads, 0, n);
            SamplePlan {
                reads,
                span: records.unwrap_or(n as u64),
            }
        }
    }
}

/// A small random source seeded from the OS, for skip offsets.
fn rng() -> impl FnMut() -> u64 {
    let mut seed = [0u8; 8];
    let _ = getrandom::getrandom(&mut seed);
    let mut x = u64::from_le_bytes(seed) | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// Adds a batch of documents to the sample and schema, up to `want` records in all.
fn take_batch(
    batch: &RawArray,
    want: usize,
    cap: usize,
    sample: &mut Vec<Record>,
    schema: &mut Schema,
) {
    for item in batch.into_iter().map_while(Result::ok) {
        if sample.len() >= want {
            break;
        }
        let Some(d) = item.as_document() else {
            continue;
        };
        schema.add_document(d);
        sample.push(flatten_json(&document_json(d, cap, 0, true), cap));
    }
}

async fn sample(opts: &InventoryOptions, st: &mut State, i: usize) -> Result<(), String> {
    let t = &st.targets[i];
    if t.view || st.inv.holdings[i].records == Some(0) {
        return Ok(());
    }
    let (db, coll, avg) = (t.db.clone(), t.coll.clone(), t.avg_size);
    let name = st.inv.holdings[i].name.clone();
    let n = opts.sample;
    let cap = opts.value_cap;
    let records = st.inv.holdings[i].records;
    let s = st.session.as_mut().expect("session");
    let mut per_batch = batch_limit(s.cap, avg);
    let mut out: Vec<Record> = Vec::new();
    let mut schema = Schema::default();
    let mut result = Ok(());
    let mut windows = st.sample_stage == Some(false);

    if !windows {
        let args = sample_args(n, n.min(per_batch));
        match ask(s, "aggregate", Bson::String(coll.clone()), &db, args).await {
            Ok(reply) => {
                st.sample_stage = Some(true);
                let mut reply = reply;
                while let Some((batch, id)) = cursor_batch(&reply) {
                    take_batch(batch, n, cap, &mut out, &mut schema);
                    if id == 0 || out.len() >= n {
                        break;
                    }
                    let args = get_more_args(&coll, Some((n - out.len()).min(per_batch)));
                    reply = match ask(s, "getMore", Bson::Int64(id), &db, args).await {
                        Ok(r) => r,
                        Err(e) if e.is_budget() => {
                            result = Err(stop_reason(&e, opts));
                            break;
                        }
                        Err(e) => {
                            st.notes.push(format!("{name}: $sample cut short: {e}"));
                            break;
                        }
                    };
                }
                // Enough documents: the rest of the cursor is not needed.
                close_cursors(s, &mut st.notes).await;
            }
            Err(Failure::Server(e)) if e.code.is_some_and(|c| NO_SAMPLE_STAGE.contains(&c)) => {
                st.sample_stage = Some(false);
                windows = true;
                st.notes.push(format!(
                    "$sample is not available (code {} {}: {}); samples are find windows at \
                     random offsets",
                    e.code.unwrap_or_default(),
                    clean(e.code_name.as_deref().unwrap_or(""), 40),
                    clean(&e.message, 120)
                ));
            }
            Err(e) if e.is_budget() => result = Err(stop_reason(&e, opts)),
            Err(e) if too_large(&e) => {
                // Larger documents than collStats suggested: small windows instead.
                per_batch = (per_batch / 8).max(1);
                windows = true;
            }
            Err(e) => {
                st.notes.push(format!("{name}: not sampled: {e}"));
                return Ok(());
            }
        }
    }

    if result.is_ok() && windows {
        let plan = plan_sample(n - out.len(), records, per_batch, rng());
        if let Some(c) = records.filter(|&c| plan.span < c) {
            st.notes.push(format!(
                "{name}: sample spread over the first {} of {c} documents",
                plan.span
            ));
        }
        let mut w = 0;
        while w < plan.reads.len() && out.len() < n {
            let (skip, take) = plan.reads[w];
            let take = take.min(per_batch).min(n - out.len());
            let args = window_args(skip, take);
            match ask(s, "find", Bson::String(coll.clone()), &db, args).await {
                Ok(reply) => {
                    let Some((batch, _)) = cursor_batch(&reply) else {
                        st.notes.push(format!("{name}: find gave no batch"));
                        break;
                    };
                    let before = out.len();
                    take_batch(batch, n, cap, &mut out, &mut schema);
                    // A window the server answered short reached the end of the collection.
                    if out.len() - before < take
                        && !matches!(records, Some(c) if skip + (take as u64) < c)
                    {
                        break;
                    }
                    w += 1;
                }
                Err(e) if e.is_budget() => {
                    result = Err(stop_reason(&e, opts));
                    break;
                }
                Err(e) if too_large(&e) && per_batch > 1 => {
                    // A reply over the frame cap: the same window again, in smaller pieces.
                    per_batch = (per_batch / 8).max(1);
                }
                Err(e) => {
                    st.notes
                        .push(format!("{name}: sample cut short at offset {skip}: {e}"));
                    break;
                }
            }
        }
    }
    let h = &mut st.inv.holdings[i];
    h.sample = out;
    h.schema = schema.finish();
    result
}

async fn census(opts: &InventoryOptions, st: &mut State, i: usize) -> Result<(), String> {
    // FerretDB's `count` already read every document: a census would read them all again
    // for the same number (on a 2.4 M-user lab, minutes per pass).
    if st.targets[i].view || st.inv.holdings[i].records_exact {
        return Ok(());
    }
    let (db, coll) = (st.targets[i].db.clone(), st.targets[i].coll.clone());
    let name = st.inv.holdings[i].name.clone();
    let s = st.session.as_mut().expect("session");
    let args = census_args();
    let mut reply = match ask(s, "find", Bson::String(coll.clone()), &db, args).await {
        Ok(r) => r,
        Err(e) if e.is_budget() => {
            let why = stop_reason(&e, opts);
            st.notes.push(format!("{name}: census not done: {why}"));
            return Err(why);
        }
        Err(e) => {
            st.notes.push(format!("{name}: census failed: {e}"));
            return Ok(());
        }
    };
    let mut counted = 0u64;
    loop {
        let Some((batch, id)) = cursor_batch(&reply) else {
            st.notes.push(format!(
                "{name}: census got a reply without a batch after {counted} documents"
            ));
            return Ok(());
        };
        let Some(n) = count_documents(batch) else {
            st.notes.push(format!(
                "{name}: census got a malformed batch after {counted} documents"
            ));
            return Ok(());
        };
        counted += n;
        if id == 0 {
            break;
        }
        let args = get_more_args(&coll, Some(next_census_batch(s.cap, batch, n)));
        reply = match ask(s, "getMore", Bson::Int64(id), &db, args).await {
            Ok(r) => r,
            Err(e) => {
                st.notes.push(format!(
                    "{name}: census stopped after {counted} documents: {}",
                    say(&e, opts)
                ));
                return if e.is_budget() {
                    Err(stop_reason(&e, opts))
                } else {
                    Ok(())
                };
            }
        };
    }
    let h = &mut st.inv.holdings[i];
    if let Some(reported) = h.records.filter(|&r| r != counted) {
        st.notes.push(format!(
            "{name}: census counted {counted} documents, the server's count said {reported}"
        ));
    }
    h.records = Some(counted);
    h.records_exact = true;
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::net::SocketAddr;

    use bson::{Document, RawDocumentBuf};

    use crate::testkit::{fixture, frames, FakeServer, Message, Reply};

    use crate::driver::ProbeOptions;

    use crate::protocols::mongodb::wire::{
        parse_reply, refuse_command, ALLOWED_COMMANDS, ALLOWED_STAGES,
    };

    // Raw replies of FerretDB v1.24.2 (SQLite backend) seeded with the lab dataset (500 users),
    // captured on a throwaway instance (127.0.21.1) with a Python socket script; the requestID
    // of each request is given.
    const LIST_DATABASES: &[u8] = fixture!("mongodb/inv_listdatabases.bin"); // 101
    const LIST_COLLECTIONS: &[u8] = fixture!("mongodb/inv_listcollections.bin"); // 102
    const LIST_COLLECTIONS_ANALYTICS: &[u8] = fixture!("mongodb/inv_listcollections_analytics.bin"); // 116
    const COUNT: &[u8] = fixture!("mongodb/inv_count.bin"); // 103
    const COUNT_MISSING: &[u8] = fixture!("mongodb/inv_count_missing.bin"); // 113
    /// `collStats` answered (104), captured before it turned out FerretDB runs ANALYZE for it.
    const COLL_STATS: &[u8] = fixture!("mongodb/inv_collstats.bin");
    const SAMPLE_UNSUPPORTED: &[u8] = fixture!("mongodb/inv_sample_unsupported.bin"); // 105
    /// `find users skip 7 limit 2 singleBatch` (106); `find telemetry_daily skip 100 …` (114).
    const FIND_WINDOW: &[u8] = fixture!("mongodb/inv_find_window.bin");
    const FIND_TELEMETRY: &[u8] = fixture!("mongodb/inv_find_telemetry.bin");
    /// Census: `find` projected to `_id`, batchSize 3 (107), `getMore` 2 (108), `killCursors`
    /// (109), `getMore` on the killed cursor (110); a tail: `find` skip 497 (111), `getMore` (112).
    const CENSUS_FIRST: &[u8] = fixture!("mongodb/inv_census_first.bin");
    const CENSUS_MORE: &[u8] = fixture!("mongodb/inv_census_more.bin");
    const KILL_CURSORS: &[u8] = fixture!("mongodb/inv_killcursors.bin");
    const GETMORE_NOT_FOUND: &[u8] = fixture!("mongodb/inv_getmore_notfound.bin");
    const CENSUS_TAIL_FIRST: &[u8] = fixture!("mongodb/inv_census_tail_first.bin");
    const CENSUS_TAIL_LAST: &[u8] = fixture!("mongodb/inv_census_tail_last.bin");
    /// From the probe's fixtures: FerretDB `hello` (1) and `buildInfo` (2).
    pub(in crate::protocols::mongodb) const OPEN_HELLO: &[u8] = fixture!("mongodb/open_hello.bin");
    const OPEN_BUILD_INFO: &[u8] = fixture!("mongodb/open_buildinfo.bin");

    const CAP: usize = 1 << 20;

    fn reply(frame: &[u8], id: i32) -> RawDocumentBuf {
        parse_reply(frame, id, Wire::Msg).unwrap()
    }

    /// The lab manifest's field paths of `smarthome.users`.
    const USERS_PATHS: &[&str] = &[
        "user_id",
        "username",
        "email",
        "full_name",
        "phone",
        "country",
        "created_at",
        "last_login_ip",
        "wifi_ssid",
        "app.platform",
        "app.api_token",
        "devices[].device_id",
        "devices[].model",
        "devices[].mac",
        "devices[].firmware_version",
        "devices[].nickname",
        "devices[].added_at",
    ];

    #[test]
    fn real_listing_replies() {
        let dbs = parse_databases(&reply(LIST_DATABASES, 101)).unwrap();
        assert_eq!(
            dbs,
            vec![
                DbInfo {
                    name: "analytics".into(),
                    size_on_disk: Some(1_470_464)
                },
                DbInfo {
                    name: "smarthome".into(),
                    size_on_disk: Some(1_974_272)
                },
            ]
        );
        let d = reply(LIST_COLLECTIONS, 102);
        let (batch, id) = cursor_batch(&d).unwrap();
        assert_eq!(id, 0);
        let colls = parse_collections(batch).unwrap();
        let names: Vec<&str> = colls.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["alexa_links", "orders", "scale_measurements", "users"]
        );
        // FerretDB leaves `type` out with nameOnly; MongoDB sends it.
        assert!(colls.iter().all(|c| c.kind == "collection"));
        let d = reply(LIST_COLLECTIONS_ANALYTICS, 116);
        assert_eq!(
            parse_collections(cursor_batch(&d).unwrap().0).unwrap()[0].name,
            "telemetry_daily"
        );
        // The probe's auth-required reply is no listing.
        assert!(parse_databases(&reply(fixture!("mongodb/auth_listdatabases.bin"), 7)).is_none());
    }

    #[test]
    fn real_count_and_stats_replies() {
        assert_eq!(parse_count(&reply(COUNT, 103)), Some(500));
        assert_eq!(parse_count(&reply(COUNT_MISSING, 113)), Some(0));
        assert_eq!(
            parse_coll_stats(&reply(COLL_STATS, 104)),
            Some(CollStats {
                count: Some(500),
                size: Some(1_040_384),
                avg_obj_size: Some(2080)
            })
        );
        let err = command_error(&reply(SAMPLE_UNSUPPORTED, 105)).unwrap();
        assert_eq!(err.code, Some(238));
        assert!(NO_SAMPLE_STAGE.contains(&238));
        assert_eq!(parse_count(&reply(SAMPLE_UNSUPPORTED, 105)), None);
    }

    #[test]
    fn real_documents_flatten_to_manifest_paths() {
        let d = reply(FIND_WINDOW, 106);
        let (batch, id) = cursor_batch(&d).unwrap();
        assert_eq!(id, 0, "singleBatch leaves no cursor");
        let mut sample = Vec::new();
        let mut schema = Schema::default();
        take_batch(batch, 10, 256, &mut sample, &mut schema);
        assert_eq!(sample.len(), 2);
        let paths = crate::inventory::paths_seen(&sample);
        let paths: Vec<&str> = paths.iter().map(|(p, _)| p.as_str()).collect();
        // The loader's ObjectId `_id` is not a field of the dataset.
        assert!(!paths.contains(&"_id"));
        for want in USERS_PATHS {
            assert!(paths.contains(want), "{want} missing from {paths:?}");
        }
        let first = &sample[0];
        assert!(first
            .iter()
            .any(|(p, v)| p == "email" && v == "mathieudurand277@yahoo.com"));
        let schema = schema.finish();
        let ty = |p: &str| schema.iter().find(|(q, _)| q == p).map(|(_, t)| t.as_str());
        assert_eq!(ty("_id"), None, "a generated ObjectId _id is not data");
        assert_eq!(ty("devices"), Some("array"));
        assert_eq!(ty("devices[]"), Some("object"));
        assert_eq!(ty("devices[].mac"), Some("string"));
        assert_eq!(ty("app.api_token"), Some("string"));
        let d = reply(FIND_TELEMETRY, 114);
        let mut schema = Schema::default();
        take_batch(
            cursor_batch(&d).unwrap().0,
            10,
            256,
            &mut sample,
            &mut schema,
        );
        let schema = schema.finish();
        let ty = |p: &str| schema.iter().find(|(q, _)| q == p).map(|(_, t)| t.clone());
        assert_eq!(ty("ssid_count").as_deref(), Some("int"));
        assert_eq!(ty("avg_rssi").as_deref(), Some("double"));
    }

    #[test]
    fn real_census_replies() {
        let d = reply(CENSUS_FIRST, 107);
        let (batch, id) = cursor_batch(&d).unwrap();
        assert_eq!((count_documents(batch), id), (Some(3), 359_105_921));
        let d = reply(CENSUS_MORE, 108);
        let (batch, id) = cursor_batch(&d).unwrap();
        assert_eq!((count_documents(batch), id), (Some(2), 359_105_921));
        assert!(command_error(&reply(KILL_CURSORS, 109)).is_none());
        assert_eq!(
            command_error(&reply(GETMORE_NOT_FOUND, 110)).unwrap().code,
            Some(43)
        );
        let d = reply(CENSUS_TAIL_FIRST, 111);
        assert_eq!(
            cursor_batch(&d).map(|(b, id)| (count_documents(b), id != 0)),
            Some((Some(2), true))
        );
        let d = reply(CENSUS_TAIL_LAST, 112);
        assert_eq!(
            cursor_batch(&d).map(|(b, id)| (count_documents(b), id)),
            Some((Some(1), 0))
        );
    }

    /// CONSTRUCTED: BSON types the lab data does not use, as MongoDB stores them.
    #[test]
    fn bson_types_become_json() {
        let uuid = bson::Binary {
            subtype: BinarySubtype::Uuid,
            bytes: (0u8..16).collect(),
        };
        let blob = bson::Binary {
            subtype: BinarySubtype::Generic,
            bytes: b"secret-bytes".to_vec(),
        };
        let oid = bson::oid::ObjectId::parse_str("6b0ad54ef2f8e6864fd42b76").unwrap();
        let d = doc! {
            "_id": "jane@example.com",
            "ref": oid,
            "at": bson::DateTime::from_millis(1_575_417_600_000),
            "u": uuid,
            "b": blob,
            "dec": bson::Decimal128::from_bytes([0u8; 16]),
            "nan": f64::NAN,
            "re": bson::Regex { pattern: "^a".into(), options: "i".into() },
            "ts": bson::Timestamp { time: 7, increment: 1 },
            "big": 1i64 << 40,
            "nil": Bson::Null,
        };
        let raw = RawDocumentBuf::from_document(&d).unwrap();
        let v = document_json(&raw, 256, 0, true);
        // A custom `_id` is data (an e-mail here) and stays; an ObjectId elsewhere is a hex string.
        assert_eq!(v["_id"], "jane@example.com");
        assert_eq!(v["ref"], "6b0ad54ef2f8e6864fd42b76");
        assert_eq!(v["at"], "2019-12-04T00:00:00Z");
        assert_eq!(v["u"], "00010203-0405-0607-0809-0a0b0c0d0e0f");
        assert_eq!(v["b"], "c2VjcmV0LWJ5dGVz");
        assert_eq!(v["nan"], "NaN");
        assert_eq!(v["re"], "/^a/i");
        assert_eq!(v["ts"], 7);
        assert_eq!(v["big"], 1i64 << 40);
        assert!(v["nil"].is_null());
        assert!(v["dec"].is_string());
        // Binary is cut to the value cap before encoding.
        assert_eq!(document_json(&raw, 3, 0, true)["b"], "c2Vj");
        let mut schema = Schema::default();
        schema.add_document(&raw);
        let s = schema.finish();
        let types: Vec<&str> = s.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(
            types,
            [
                "string",
                "objectId",
                "date",
                "binData",
                "binData",
                "decimal",
                "double",
                "regex",
                "timestamp",
                "long",
                "null"
            ]
        );
    }

    /// A document nested `depth` levels deep under key `a`, built without recursion.
    fn nested(depth: usize) -> Vec<u8> {
        let mut lens = Vec::with_capacity(depth + 1);
        let mut len = 5usize;
        lens.push(len);
        for _ in 0..depth {
            len += 8;
            lens.push(len);
        }
        let mut out = Vec::with_capacity(len);
        for l in lens.iter().rev().take(depth) {
            out.extend_from_slice(&(*l as i32).to_le_bytes());
            out.extend_from_slice(&[0x03, b'a', 0]);
        }
        out.extend_from_slice(&[5, 0, 0, 0, 0]);
        out.resize(out.len() + depth, 0);
        out
    }

    #[test]
    fn hostile_documents_cost_bounded_work() {
        // 100 000 levels would blow the stack of any recursive converter.
        let bytes = nested(100_000);
        let d = RawDocument::from_bytes(&bytes).unwrap();
        let v = document_json(d, 64, 0, true);
        assert!(flatten_json(&v, 64).is_empty());
        let mut schema = Schema::default();
        schema.add_document(d);
        assert!(schema.finish().len() <= MAX_DEPTH + 1);
        // A truncated document ends where it breaks instead of failing the batch.
        let mut cut = RawDocumentBuf::from_document(&doc! { "a": "x", "b": "y" })
            .unwrap()
            .into_bytes();
        cut.truncate(cut.len() - 4);
        let len = cut.len() as i32;
        cut[0..4].copy_from_slice(&len.to_le_bytes());
        if let Ok(d) = RawDocument::from_bytes(&cut) {
            let _ = document_json(d, 64, 0, true);
        }
        // Many paths: the schema keeps a bounded number.
        let mut wide = Document::new();
        for i in 0..5000 {
            wide.insert(format!("k{i}"), i);
        }
        let mut schema = Schema::default();
        schema.add_document(&RawDocumentBuf::from_document(&wide).unwrap());
        assert_eq!(schema.finish().len(), MAX_SCHEMA_PATHS);
    }

    fn fixed_rand() -> impl FnMut() -> u64 {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    #[test]
    fn sample_windows_are_spread_and_bounded() {
        // The lab's users: 4 windows of 50, one in each quarter, skipping about 20 000 in all.
        let p = plan_sample(200, Some(10_000), 128, fixed_rand());
        assert_eq!(p.span, 10_000);
        assert_eq!(p.reads.len(), 4);
        for (i, &(skip, take)) in p.reads.iter().enumerate() {
            assert_eq!(take, 50);
            assert!(
                skip >= i as u64 * 2500 && skip + 50 <= (i as u64 + 1) * 2500,
                "{p:?}"
            );
        }
        // Small collections get ten windows; reads never exceed the per-reply limit.
        let p = plan_sample(200, Some(2920), 8, fixed_rand());
        assert_eq!(p.reads.iter().map(|r| r.1).sum::<usize>(), 200);
        assert!(p.reads.iter().all(|&(s, t)| t <= 8 && s + t as u64 <= 2920));
        assert!(p.reads.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(
            p.reads.last().unwrap().0 >= 2628,
            "reaches the last tenth: {p:?}"
        );
        // A huge collection: one window, within the skip budget.
        let p = plan_sample(200, Some(50_000_000), 128, fixed_rand());
        assert_eq!(p.span, 2 * SKIP_BUDGET);
        assert!(p
            .reads
            .iter()
            .all(|&(s, t)| s + t as u64 <= 2 * SKIP_BUDGET));
        // Fewer documents than wanted, or no count: from the start.
        assert_eq!(
            plan_sample(200, Some(150), 128, fixed_rand()).reads,
            vec![(0, 128), (128, 72)]
        );
        assert_eq!(plan_sample(5, None, 128, fixed_rand()).reads, vec![(0, 5)]);
        assert!(plan_sample(0, Some(10), 128, fixed_rand()).reads.is_empty());
        assert_eq!(
            plan_sample(3, Some(1_000), 128, fixed_rand()).reads.len(),
            3
        );
    }

    #[test]
    fn system_containers() {
        assert!(is_system("admin", "system.users"));
        assert!(is_system("local", "oplog.rs"));
        assert!(is_system("config", "chunks"));
        assert!(is_system("smarthome", "system.views"));
        assert!(!is_system("smarthome", "users"));
        assert!(!is_system("administration", "users"));
    }

    // ---- read-only by construction ----

    /// Every request this module builds passes the allowlist and pipeline check.
    #[test]
    fn every_request_built_here_is_allowed() {
        let built: &[(&str, Document)] = &[
            ("listCollections", list_collections_args()),
            ("aggregate", sample_args(200, 128)),
            ("find", window_args(0, 20)),
            ("find", window_args(9000, 20)),
            ("find", census_args()),
            ("getMore", get_more_args("users", Some(10))),
            ("getMore", get_more_args("$cmd.listCollections", None)),
            ("killCursors", kill_cursors_args(7)),
            ("listDatabases", doc! { "nameOnly": false }),
            ("listDatabases", doc! { "nameOnly": true }),
            ("count", doc! {}),
            ("collStats", doc! {}),
            ("buildInfo", doc! {}),
        ];
        for (cmd, args) in built {
            assert_eq!(refuse_command(cmd, args), None, "{cmd} {args}");
        }
    }

    /// Every command name this module's source passes to the send path is allowlisted: a new
    /// call with another command fails here before it can reach a server. The only sends with
    /// a computed name are the two pass-throughs (`Session::call`, `ask`), which hand `cmd` on
    /// to `call_on` and its runtime check.
    #[test]
    fn every_command_in_the_source_is_allowlisted() {
        let mut literal = Vec::new();
        let mut computed = Vec::new();
        for src in [
            include_str!("inventory.rs"),
            include_str!("mod.rs"),
            include_str!("wire.rs"),
            include_str!("probe.rs"),
            include_str!("count.rs"),
        ] {
            let code = &src[..src.find("#[cfg(test)]").unwrap_or(src.len())];
            let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
            for marker in ["ask(s,", "ask(&mutls,", ".call(", ".call_on("] {
                for (at, _) in code.match_indices(marker) {
                    let rest = &code[at + marker.len()..];
                    match rest.strip_prefix('"') {
                        Some(lit) => literal.push(lit[..lit.find('"').unwrap()].to_string()),
                        None => computed.push(rest[..rest.find(',').unwrap()].to_string()),
                    }
                }
            }
        }
        for name in &literal {
            assert!(
                ALLOWED_COMMANDS.contains(&name.as_str()),
                "{name} is sent but not allowlisted"
            );
        }
        assert_eq!(
            computed,
            ["cmd", "cmd"],
            "a send with a computed command name"
        );
        for cmd in ALLOWED_COMMANDS {
            assert!(
                literal.iter().any(|s| s == cmd),
                "the scan missed {cmd}: {literal:?}"
            );
        }
    }

    #[test]
    fn writing_pipelines_are_refused() {
        let agg = |pipeline: Bson| doc! { "pipeline": pipeline, "cursor": {} };
        for (pipeline, why) in [
            (bson::bson!([{ "$out": "stolen" }]), "$out"),
            (
                bson::bson!([{ "$sample": { "size": 5 } }, { "$merge": { "into": "x" } }]),
                "$merge",
            ),
            (bson::bson!([{ "$group": { "_id": 1 } }]), "$group"),
            (
                bson::bson!([{ "$group": { "_id": "$u", "n": { "$sum": 1 } } }]),
                "$group",
            ),
            (bson::bson!([{ "$group": { "_id": "$$ROOT" } }]), "$group"),
            (bson::bson!([{ "$unwind": { "path": "$a" } }]), "$unwind"),
            (bson::bson!([{ "$count": 1 }]), "$count"),
            (bson::bson!([{ "$lookup": { "from": "x" } }]), "$lookup"),
            (
                bson::bson!([{ "$match": { "$where": "sleep(1000)" } }]),
                "$where",
            ),
            (
                bson::bson!([{ "$match": { "a": { "$function": {} } } }]),
                "$function",
            ),
            (bson::bson!([{ "$sample": {}, "$limit": 1 }]), "exactly one"),
            (bson::bson!(["$out"]), "not a document"),
            (bson::bson!({ "$out": "x" }), "$out"),
            (bson::bson!({ "$sample": {} }), "pipeline array"),
        ] {
            let refused = refuse_command("aggregate", &agg(pipeline)).expect(why);
            assert!(refused.contains(why), "{refused} should name {why}");
        }
        assert!(refuse_command("aggregate", &doc! { "cursor": {} }).is_some());
        // A find cannot smuggle a write stage either.
        assert!(refuse_command("find", &doc! { "filter": { "$where": "1" } }).is_some());
        for stage in ALLOWED_STAGES {
            let arg = match *stage {
                "$group" => bson::bson!({ "_id": "$user_id" }),
                "$unwind" => bson::bson!("$devices"),
                "$count" => bson::bson!("n"),
                _ => bson::bson!({}),
            };
            let mut p = agg(bson::bson!([{ *stage: arg }]));
            p.insert("allowDiskUse", false);
            assert_eq!(refuse_command("aggregate", &p), None, "{stage}");
        }
        // Hostile nesting is refused, not recursed into without end.
        let mut deep = doc! { "x": 1 };
        for _ in 0..100 {
            deep = doc! { "x": deep };
        }
        assert!(refuse_command("find", &doc! { "filter": deep }).is_some());
    }

    // ---- against scripted local peers ----

    /// One request as a scripted peer sees it.
    #[derive(Debug, Clone)]
    pub(in crate::protocols::mongodb) struct Request {
        id: i32,
        pub cmd: String,
        db: String,
        pub body: Document,
    }

    pub(in crate::protocols::mongodb) enum Answer {
        /// A captured reply (its responseTo is rewritten to the request's id).
        Frame(&'static [u8]),
        /// A reply built here from the MongoDB documentation.
        Doc(Document),
        /// Never answers.
        Stall,
        /// Answers with a captured reply after a wait.
        Late(Duration, &'static [u8]),
    }

    fn op_msg(response_to: i32, body: &Document) -> Vec<u8> {
        let mut out = vec![0u8; 16];
        out.extend_from_slice(&0u32.to_le_bytes());
        out.push(0);
        body.to_writer(&mut out).unwrap();
        let len = out.len() as i32;
        out[0..4].copy_from_slice(&len.to_le_bytes());
        out[8..12].copy_from_slice(&response_to.to_le_bytes());
        out[12..16].copy_from_slice(&2013i32.to_le_bytes());
        out
    }

    /// One OP_MSG request as the scripted peer reads it.
    fn request(m: &Message) -> Option<Request> {
        let body = Document::from_reader(m.bytes.get(21..)?).ok()?;
        Some(Request {
            id: i32::from_le_bytes(m.bytes.get(4..8)?.try_into().ok()?),
            cmd: body.keys().next()?.clone(),
            db: body.get_str("$db").ok()?.to_string(),
            body,
        })
    }

    /// The requests the scripted peer received, in order.
    pub(in crate::protocols::mongodb) type Log = Vec<Request>;

    /// A scripted peer: `script`'s answer to each request (see [`Answer`]).
    pub(in crate::protocols::mongodb) struct Scripted(FakeServer);

    impl Scripted {
        pub(in crate::protocols::mongodb) fn requests(&self) -> Log {
            self.0.messages().iter().filter_map(request).collect()
        }
    }

    /// Serves `script`'s answers on a loopback port; the log is the server's.
    pub(in crate::protocols::mongodb) async fn scripted(
        script: fn(&Request) -> Answer,
    ) -> (SocketAddr, Scripted) {
        let server = FakeServer::start(Vec::new(), frames::le32_length, move |m| {
            let Some(req) = request(m) else {
                return Reply::Close;
            };
            let captured = |f: &[u8]| {
                let mut f = f.to_vec();
                f[8..12].copy_from_slice(&req.id.to_le_bytes());
                f
            };
            match script(&req) {
                Answer::Frame(f) => Reply::Send(captured(f)),
                Answer::Doc(d) => Reply::Send(op_msg(req.id, &d)),
                Answer::Stall => Reply::Stall(Duration::from_secs(60)),
                Answer::Late(wait, f) => Reply::Later(wait, captured(f)),
            }
        })
        .await;
        (server.addr(), Scripted(server))
    }

    pub(in crate::protocols::mongodb) fn ctx(addr: SocketAddr) -> ProbeCtx {
        let ms = Duration::from_millis(800);
        let opts = ProbeOptions {
            limits: crate::testkit::timeouts(ms),
            ..ProbeOptions::default()
        };
        crate::driver::test_ctx(addr, opts)
    }

    fn opts(sample: usize, full: bool) -> InventoryOptions {
        InventoryOptions {
            sample,
            full,
            time_budget: Duration::from_secs(10),
            ..InventoryOptions::default()
        }
    }

    pub(in crate::protocols::mongodb) fn finding(product: &str) -> Finding {
        let mut f = Finding::new("mongodb");
        f.product = Some(product.into());
        f.access = crate::model::Access::Open;
        f
    }

    /// FerretDB as captured: no `$sample`, `count` exact, `collStats` must never be asked.
    fn ferret(r: &Request) -> Answer {
        let projected = r.body.get_document("projection").is_ok();
        match (r.cmd.as_str(), r.db.as_str()) {
            ("hello", _) => Answer::Frame(OPEN_HELLO),
            ("buildInfo", _) => Answer::Frame(OPEN_BUILD_INFO),
            ("listDatabases", _) => Answer::Frame(LIST_DATABASES),
            ("listCollections", "smarthome") => Answer::Frame(LIST_COLLECTIONS),
            ("listCollections", _) => Answer::Frame(LIST_COLLECTIONS_ANALYTICS),
            ("count", _) => Answer::Frame(COUNT),
            ("aggregate", _) => Answer::Frame(SAMPLE_UNSUPPORTED),
            ("find", _) if projected => Answer::Frame(CENSUS_FIRST),
            ("find", _) => Answer::Frame(FIND_WINDOW),
            ("getMore", _) => Answer::Frame(CENSUS_TAIL_LAST),
            ("killCursors", _) => Answer::Frame(KILL_CURSORS),
            _ => Answer::Stall,
        }
    }

    /// [`ferret`] whose `count` of `users` failed: the census counts that collection.
    fn ferret_users_uncounted(r: &Request) -> Answer {
        match r.cmd.as_str() {
            "count" if r.body.get_str("count") == Ok("users") => Answer::Doc(doc! {
                "ok": 0.0, "errmsg": "operation was interrupted", "code": 11601,
            }),
            _ => ferret(r),
        }
    }

    #[tokio::test]
    async fn ferretdb_inventory_from_captured_replies() {
        let (addr, log) = scripted(ferret_users_uncounted).await;
        let inv = inventory(&ctx(addr), &finding("FerretDB"), &opts(6, true)).await;
        let names: Vec<&str> = inv.holdings.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "analytics.telemetry_daily",
                "smarthome.alexa_links",
                "smarthome.orders",
                "smarthome.scale_measurements",
                "smarthome.users"
            ]
        );
        for h in &inv.holdings {
            assert_eq!(h.kind, "collection");
            assert!(!h.system);
            // FerretDB's counts are exact, so only the uncounted `users` gets a census (3 + 1
            // documents in the captured cursor); the others keep the count of 500.
            let want = if h.name == "smarthome.users" { 4 } else { 500 };
            assert_eq!((h.records, h.records_exact), (Some(want), true), "{h:?}");
            assert_eq!(h.bytes, None);
            // Uncounted, `users` is read from its start (the captured window holds 2).
            let sampled = if h.name == "smarthome.users" { 2 } else { 6 };
            assert_eq!(h.sample.len(), sampled, "{}", h.name);
            assert!(h
                .schema
                .iter()
                .any(|(p, t)| p == "devices[].mac" && t == "string"));
        }
        let notes = inv.notes.join("\n");
        assert!(notes.contains("$sample is not available"), "{notes}");
        assert!(notes.contains("collStats not sent to FerretDB"), "{notes}");
        assert!(notes.contains("smarthome.users: count failed"), "{notes}");
        let log = log.requests();
        let censuses: Vec<&str> = log
            .iter()
            .filter(|r| r.cmd == "find" && r.body.get("projection").is_some())
            .map(|r| r.body.get_str("find").unwrap())
            .collect();
        assert_eq!(censuses, ["users"]);
        assert!(
            !log.iter().any(|r| r.cmd == "collStats"),
            "collStats sent to FerretDB"
        );
        // `$sample` is tried once per server, then windows with singleBatch.
        assert_eq!(log.iter().filter(|r| r.cmd == "aggregate").count(), 1);
        let windows: Vec<&Request> = log
            .iter()
            .filter(|r| r.cmd == "find" && r.body.get("projection").is_none())
            .collect();
        assert!(windows
            .iter()
            .all(|r| r.body.get_bool("singleBatch") == Ok(true)));
        assert!(
            windows.iter().any(|r| r.body.get_i64("skip").is_ok()),
            "spread by skip"
        );
        // Every getMore named the cursor the census find opened.
        for r in log.iter().filter(|r| r.cmd == "getMore") {
            assert_eq!(r.body.get_i64("getMore"), Ok(359_105_921));
        }
        assert!(log
            .iter()
            .all(|r| ALLOWED_COMMANDS.contains(&r.cmd.as_str())));
    }

    /// FerretDB holding millions of users: its `count` of `users` and its `listDatabases` with
    /// sizes (a `dbstat` walk of the whole SQLite file) never answer in time.
    fn ferret_at_scale(r: &Request) -> Answer {
        let with_sizes = r.body.get_bool("nameOnly") == Ok(false);
        match r.cmd.as_str() {
            "count" if r.body.get_str("count") == Ok("users") => Answer::Stall,
            "listDatabases" if with_sizes => Answer::Stall,
            _ => ferret(r),
        }
    }

    #[tokio::test]
    async fn slow_ferretdb_counts_and_sizes_have_deadlines_of_their_own() {
        let (addr, log) = scripted(ferret_at_scale).await;
        let t0 = std::time::Instant::now();
        let inv = inventory(&ctx(addr), &finding("FerretDB"), &opts(6, false)).await;
        // The stalled count ends at the counts' share (60 % of 9 s), the stalled sizes after a
        // second: samples and sizes still fit in the budget.
        let took = t0.elapsed();
        assert!(
            took > Duration::from_secs(5) && took < Duration::from_secs(8),
            "{took:?}"
        );
        assert_eq!(inv.holdings.len(), 5);
        for h in &inv.holdings {
            // Uncounted, `users` is read from its start (the captured window holds 2).
            assert!(h.sample.len() >= 2, "{} sampled", h.name);
            let want = if h.name == "smarthome.users" {
                None
            } else {
                Some(500)
            };
            assert_eq!(h.records, want, "{}", h.name);
        }
        let notes = inv.notes.join("\n");
        assert!(
            notes.contains(
                "smarthome.users: not counted: count gave no answer within the counts' share"
            ),
            "{notes}"
        );
        assert!(
            notes.contains(
                "database sizes not read: listDatabases with sizeOnDisk gave no answer within 1 s"
            ),
            "{notes}"
        );
        assert!(!notes.contains("stopped early"), "{notes}");
        // The listing asked for names only; sizes came last.
        let log = log.requests();
        let lists: Vec<bool> = log
            .iter()
            .filter(|r| r.cmd == "listDatabases")
            .map(|r| r.body.get_bool("nameOnly").unwrap())
            .collect();
        assert_eq!(lists, [true, false]);
        assert_eq!(log.last().map(|r| r.cmd.as_str()), Some("listDatabases"));
    }

    /// FerretDB whose `count` of `users` answers after longer than any read timeout (it reads
    /// every document), within the counts' share of a 30 s budget.
    fn ferret_counting_slowly(r: &Request) -> Answer {
        match r.cmd.as_str() {
            "count" if r.body.get_str("count") == Ok("users") => {
                Answer::Late(MIN_READ_TIMEOUT + Duration::from_secs(1), COUNT)
            }
            _ => ferret(r),
        }
    }

    #[tokio::test]
    async fn a_ferretdb_count_may_take_the_counts_share() {
        let (addr, log) = scripted(ferret_counting_slowly).await;
        let mut o = opts(2, true);
        o.time_budget = Duration::from_secs(30);
        let inv = inventory(&ctx(addr), &finding("FerretDB"), &o).await;
        let users = inv
            .holdings
            .iter()
            .find(|h| h.name == "smarthome.users")
            .unwrap();
        assert_eq!((users.records, users.records_exact), (Some(500), true));
        let notes = inv.notes.join("\n");
        assert!(!notes.contains("count failed"), "{notes}");
        // Counted exactly, nothing needs a census.
        let log = log.requests();
        assert!(!log.iter().any(|r| r.cmd == "getMore"));
    }

    #[tokio::test]
    async fn ferretdb_sizes_are_noted_per_database() {
        let (addr, _server) = scripted(ferret).await;
        let inv = inventory(&ctx(addr), &finding("FerretDB"), &opts(0, false)).await;
        let notes = inv.notes.join("\n");
        assert!(
            notes.contains("database smarthome holds 1974272 bytes on disk (listDatabases)"),
            "{notes}"
        );
    }

    /// CONSTRUCTED from the MongoDB reference (no MongoDB server in the lab): a server with
    /// `$sample`, `collStats`, a view and the admin database.
    fn mongod(r: &Request) -> Answer {
        let ok = |mut d: Document| {
            d.insert("ok", 1.0);
            Answer::Doc(d)
        };
        let cursor = |db: &str, first: bool, id: i64, docs: Vec<Document>| {
            let key = if first { "firstBatch" } else { "nextBatch" };
            doc! { "cursor": { key: docs, "id": id, "ns": db }, "ok": 1.0 }
        };
        match (r.cmd.as_str(), r.db.as_str()) {
            ("hello", _) => ok(doc! { "isWritablePrimary": true, "maxWireVersion": 21 }),
            ("buildInfo", _) => ok(doc! { "version": "7.0.14" }),
            ("listDatabases", _) => ok(doc! { "databases": [
                { "name": "admin", "sizeOnDisk": 40960i64, "empty": false },
                { "name": "crm", "sizeOnDisk": 81920i64, "empty": false },
            ] }),
            ("listCollections", "crm") => Answer::Doc(cursor(
                "crm.$cmd.listCollections",
                true,
                0,
                vec![
                    doc! { "name": "people", "type": "collection" },
                    doc! { "name": "v", "type": "view" },
                ],
            )),
            ("listCollections", _) => Answer::Doc(cursor(
                "admin.$cmd.listCollections",
                true,
                0,
                vec![doc! { "name": "system.users", "type": "collection" }],
            )),
            ("count", _) => ok(doc! { "n": 1000i32 }),
            ("collStats", _) => {
                ok(doc! { "count": 1000i32, "size": 64000i32, "avgObjSize": 64i32 })
            }
            ("aggregate", db) => Answer::Doc(cursor(
                db,
                true,
                77,
                vec![
                    doc! { "_id": 1, "email": "a@b.c" },
                    doc! { "_id": 2, "email": "d@e.f" },
                ],
            )),
            ("getMore", db) => Answer::Doc(cursor(
                db,
                false,
                77,
                vec![doc! { "_id": 3, "email": "g@h.i" }],
            )),
            ("killCursors", _) => ok(doc! { "cursorsKilled": [77i64] }),
            _ => Answer::Stall,
        }
    }

    #[tokio::test]
    async fn mongodb_inventory_uses_sample_and_closes_its_cursor() {
        let (addr, log) = scripted(mongod).await;
        let inv = inventory(&ctx(addr), &finding("MongoDB"), &opts(3, false)).await;
        type Row<'a> = (&'a str, bool, Option<u64>, bool, Option<u64>, usize);
        let got: Vec<Row> = inv
            .holdings
            .iter()
            .map(|h| {
                (
                    h.name.as_str(),
                    h.system,
                    h.records,
                    h.records_exact,
                    h.bytes,
                    h.sample.len(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("crm.people", false, Some(1000), false, Some(64000), 3),
                ("crm.v", false, None, false, None, 0),
                (
                    "admin.system.users",
                    true,
                    Some(1000),
                    false,
                    Some(64000),
                    3
                ),
            ]
        );
        assert!(inv
            .notes
            .iter()
            .any(|n| n.contains("views listed but not counted or sampled") && n.contains("crm.v")));
        let log = log.requests();
        let aggregates: Vec<&Request> = log.iter().filter(|r| r.cmd == "aggregate").collect();
        assert_eq!(aggregates.len(), 2);
        assert_eq!(
            aggregates[0].body.get_array("pipeline").unwrap()[0],
            Bson::Document(doc! { "$sample": { "size": 3i64 } })
        );
        // Three documents were enough: the cursor left open is closed, once per sample.
        let kills: Vec<&Request> = log.iter().filter(|r| r.cmd == "killCursors").collect();
        assert_eq!(kills.len(), 2, "{kills:?}");
        assert_eq!(
            kills[0].body.get_array("cursors").unwrap(),
            &vec![Bson::Int64(77)]
        );
        assert!(
            !log.iter()
                .any(|r| r.db == "crm" && r.body.get_str("count") == Ok("v")),
            "view counted"
        );
    }

    #[tokio::test]
    async fn budgets_cut_short_and_say_so() {
        // Listing limit.
        let (addr, _server) = scripted(ferret).await;
        let mut o = opts(0, false);
        o.max_containers = 2;
        let inv = inventory(&ctx(addr), &finding("FerretDB"), &o).await;
        assert_eq!(inv.holdings.len(), 2);
        assert!(
            inv.notes
                .iter()
                .any(|n| n == "listed 2 of 5 collections (at most 2 per service)"),
            "{:?}",
            inv.notes
        );
        // Byte budget: enough to list, not to sample everything.
        let (addr, _server) = scripted(ferret).await;
        let mut o = opts(50, false);
        o.byte_budget = 6000;
        let inv = inventory(&ctx(addr), &finding("FerretDB"), &o).await;
        assert_eq!(inv.holdings.len(), 5, "the listing survives");
        assert!(
            inv.notes
                .iter()
                .any(|n| n.contains("6000-byte read budget ran out")),
            "{:?}",
            inv.notes
        );
        // Time: a server that never answers `count` nor `find` costs the budget, not more, and
        // the list stays. (The counts end at their share of it, noted; the samples run out.)
        let (addr, _server) = scripted(|r| {
            if r.cmd == "count" || r.cmd == "find" {
                Answer::Stall
            } else {
                ferret(r)
            }
        })
        .await;
        let mut o = opts(5, false);
        o.time_budget = Duration::from_millis(1500);
        let t = std::time::Instant::now();
        let inv = tokio::time::timeout(
            o.time_budget,
            inventory(&ctx(addr), &finding("FerretDB"), &o),
        )
        .await
        .expect("inventory returned within its time budget");
        assert!(t.elapsed() < Duration::from_millis(1500));
        assert_eq!(inv.holdings.len(), 5);
        assert!(
            inv.notes.iter().any(|n| n.contains("time budget ran out")),
            "{:?}",
            inv.notes
        );
        assert!(
            inv.notes
                .iter()
                .any(|n| n.starts_with("smarthome.users: not counted")),
            "{:?}",
            inv.notes
        );
    }

    #[tokio::test]
    async fn one_failing_collection_does_not_stop_the_others() {
        let (addr, _server) = scripted(|r| match (r.cmd.as_str(), r.body.get_str(&r.cmd)) {
            ("count" | "find", Ok("orders")) => Answer::Doc(doc! {
                "ok": 0.0, "errmsg": "not authorized on smarthome", "code": 13i32, "codeName": "Unauthorized"
            }),
            _ => ferret(r),
        })
        .await;
        let inv = inventory(&ctx(addr), &finding("FerretDB"), &opts(4, false)).await;
        let orders = inv
            .holdings
            .iter()
            .find(|h| h.name == "smarthome.orders")
            .unwrap();
        assert_eq!((orders.records, orders.sample.len()), (None, 0));
        assert!(
            inv.notes
                .iter()
                .any(|n| n.starts_with("smarthome.orders: count failed")),
            "{:?}",
            inv.notes
        );
        let users = inv
            .holdings
            .iter()
            .find(|h| h.name == "smarthome.users")
            .unwrap();
        assert_eq!((users.records, users.sample.len()), (Some(500), 4));
    }

    /// Refusals that need a session: foreign cursors, `collStats` to a server that is not
    /// MongoDB, writes of every kind. None of them reaches the peer.
    #[tokio::test]
    async fn session_refuses_foreign_cursors_and_writes() {
        let (addr, log) = scripted(ferret).await;
        let c = ctx(addr);
        let mut s = Session::new(
            &c,
            c.connect().await.unwrap(),
            Wire::Msg,
            Arc::new(Budget::bytes_only(CAP)),
        );
        let refused = |r: Result<RawDocumentBuf, driver::Failure>| {
            matches!(r, Err(driver::Failure::Refused(_)))
        };
        assert!(refused(
            s.call_on(
                "getMore",
                Bson::Int64(359_105_921),
                "smarthome",
                get_more_args("users", None)
            )
            .await
        ));
        assert!(refused(
            s.call_on(
                "killCursors",
                Bson::String("users".into()),
                "smarthome",
                kill_cursors_args(5)
            )
            .await
        ));
        assert!(refused(
            s.call_on(
                "collStats",
                Bson::String("users".into()),
                "smarthome",
                doc! {}
            )
            .await
        ));
        for cmd in [
            "insert",
            "update",
            "delete",
            "drop",
            "dropDatabase",
            "createIndexes",
            "findAndModify",
        ] {
            assert!(
                refused(
                    s.call_on(cmd, Bson::String("users".into()), "smarthome", doc! {})
                        .await
                ),
                "{cmd}"
            );
        }
        let out = doc! { "pipeline": [ { "$out": "copy" } ], "cursor": {} };
        assert!(refused(
            s.call_on("aggregate", Bson::String("users".into()), "smarthome", out)
                .await
        ));
        assert!(
            log.requests().is_empty(),
            "a refused command reached the server"
        );
        // Once the session opened the cursor itself, it may continue and close it.
        s.call_on(
            "find",
            Bson::String("users".into()),
            "smarthome",
            census_args(),
        )
        .await
        .unwrap();
        assert_eq!(
            s.cursors,
            vec![("smarthome".to_string(), "users".to_string(), 359_105_921)]
        );
        let args = kill_cursors_args(359_105_921);
        // Same id on another collection or database is still not ours.
        assert!(refused(
            s.call_on(
                "killCursors",
                Bson::String("orders".into()),
                "smarthome",
                args.clone()
            )
            .await
        ));
        s.call_on(
            "killCursors",
            Bson::String("users".into()),
            "smarthome",
            args,
        )
        .await
        .unwrap();
        assert!(s.cursors.is_empty());
    }
}
