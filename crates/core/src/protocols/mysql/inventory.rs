//! MySQL/MariaDB inventory: which tables a server the probe logged into holds, how many rows and
//! bytes each has, their column types, and a bounded, read-only sample of their rows.
//!
//! The inventory logs in again on its own connection with the credential the probe found (the
//! probe's session is closed once it has proved the read). The session is read-only twice over:
//! only the statements of [`super::wire::ALLOWED_QUERIES`] can be sent, and they run inside
//! `SET SESSION TRANSACTION READ ONLY` + `START TRANSACTION READ ONLY`, so even a statement that
//! got past the allowlist could not write. `max_statement_time` (MariaDB) or
//! `max_execution_time` (MySQL) is set to the time left, so the server abandons a slow count
//! when the scan does.
//!
//! What is read, cheapest first, so a budget cut leaves a useful listing:
//! 1. `information_schema.TABLES`: names, type, engine, `TABLE_ROWS` and data + index length.
//!    `TABLE_ROWS` is exact for MyISAM, Aria and MEMORY and an estimate for InnoDB (from index
//!    dives, off by 20 % and more on a freshly loaded table; MySQL 8 also caches it for a day),
//!    so InnoDB tables are counted with `SELECT COUNT(*)` (one index walk inside the server,
//!    nothing buffered here) when the estimate is at most [`CHEAP_COUNT`] rows or `--full`
//!    asks for every count, and are `records_exact = false` otherwise. The stored tables of
//!    `mysql` and `sys` (accounts, grants) are listed as system and neither counted nor
//!    sampled; `information_schema`,
//!    `performance_schema` and the views of `mysql`/`sys` are the server's views of its own
//!    state, not stored data, and are only counted in a note.
//! 2. `information_schema.COLUMNS`: column names and types of user tables → `Holding::schema`.
//! 3. Samples, spread over the table as far as is cheap (InnoDB has no TABLESAMPLE):
//!    - up to [`SMALL_TABLE`] rows: `ORDER BY RAND() LIMIT n`, a uniform sample for one scan of
//!      the table and a top-n sort (an estimate is first confirmed by asking for the row at
//!      offset [`SMALL_TABLE`], so a stale estimate cannot turn this into a sort of a big table);
//!    - larger, with a numeric single-column primary key: `MIN`/`MAX` of the key (two index
//!      dives), then [`CHUNKS`] runs of rows from random points of the key range
//!      (`WHERE pk >= p ORDER BY pk LIMIT k`, one index seek each);
//!    - larger, other keys: runs at random offsets (`LIMIT off, k`). The server steps over `off`
//!      rows per run, so offsets stay within the first [`OFFSET_SPAN`] rows of the scan order:
//!      a bounded cost, and for random keys (UUIDs) that part of the key order is itself a
//!      random subset of the table.
//!
//! 4. `SELECT COUNT(*)` per table not already exact: those estimated at most [`CHEAP_COUNT`]
//!    rows, and with `--full` all. Every table is sampled before any is counted, so one huge
//!    count cannot starve the samples of the others.
//!
//! Views are listed with their columns but not counted or sampled: reading one runs its query,
//! whose cost is unknown. A table that fails (a row over the frame cap, a refused statement) is
//! noted and the next one goes on, on a fresh connection when the old one is out of step.

use std::sync::Arc;

use tokio::time::Instant;

use super::wire::{
    exchange, frame, login, parse_greeting, product_version, read_packet, Arg, Greeting, Login,
    QueryReply, ResultSet, COM_QUIT, COUNT_ROWS, COUNT_TABLES, KEY_RANGE, LIST_COLUMNS,
    LIST_TABLES, SAMPLE_AT_OFFSET, SAMPLE_FROM_KEY, SAMPLE_RANDOM, SET_EXECUTION_TIME,
    SET_READ_ONLY, SET_STATEMENT_TIME, START_READ_ONLY,
};
use crate::driver::{self, Budget, Finding, ProbeCtx, Wait};
use crate::inventory::flatten::flatten_row;
use crate::inventory::{Holding, Inventory, InventoryOptions, Record};
use crate::net::Conn;

/// InnoDB tables estimated at most this many rows are counted exactly even without `--full`:
/// an index walk of a million rows takes the server a fraction of a second, and an owner told
/// "about 7,900 rows" of a 10,000-row table is told wrong for no saving.
pub const CHEAP_COUNT: u64 = 1_000_000;
/// Tables up to this many rows are sampled with `ORDER BY RAND()` (one scan of ≤ 10k rows).
pub const SMALL_TABLE: u64 = 10_000;
/// Runs a larger table's sample is split into.
pub const CHUNKS: usize = 8;
/// Offsets of `LIMIT off, k` runs stay below this: at most `CHUNKS` × 200k rows stepped over.
pub const OFFSET_SPAN: u64 = 200_000;
/// Most columns read from `information_schema.COLUMNS` (a few MB at most).
const MAX_COLUMN_ROWS: usize = 50_000;
/// Times a broken connection is reopened before the inventory gives up.
const MAX_REOPEN: usize = 2;
/// Engines whose `TABLE_ROWS` is the exact row count.
const EXACT_ENGINES: &[&str] = &["MyISAM", "Aria", "MEMORY"];
/// Schemas holding the server's own stored tables (accounts, grants, settings).
const SYSTEM_SCHEMAS: &[&str] = &["mysql", "sys"];
/// Integer column types whose values can be seeked to (`DATA_TYPE` of the key).
const INTEGER_TYPES: &[&str] = &["tinyint", "smallint", "mediumint", "int", "bigint"];

/// One table as the catalogue lists it, plus what the inventory learns about it.
#[derive(Debug, Clone, PartialEq)]
struct Table {
    schema: String,
    name: String,
    view: bool,
    holding: Holding,
    /// The single-column integer primary key, when there is one.
    int_key: Option<String>,
    /// Primary-key columns seen (a composite key is not seekable by one value).
    key_columns: usize,
}

/// A logged-in, read-only session on the budget of its inventory (or of the people counts in
/// [`super::count`]).
pub(super) struct Session {
    s: driver::Session,
    /// As the handshake gave it (`5.5.5-10.11.19-MariaDB-0+deb12u1`, `8.0.36`).
    pub(super) server_version: String,
}

/// How a statement failed: the server refused it (an ERR packet; the session is still
/// usable), the connection failed or is out of step, or the budget ran out.
pub(super) type Failure = driver::Failure<super::wire::ServerError>;

impl Session {
    /// Connects, logs in as `user` (empty password) and makes the session read-only with a
    /// statement time limit. Notes what the server would not do.
    pub(super) async fn open(
        ctx: &ProbeCtx,
        user: &str,
        maria_hint: bool,
        budget: &Arc<Budget>,
        notes: &mut Vec<String>,
    ) -> Result<Session, String> {
        let left = budget.time_left();
        let opened = tokio::time::timeout(left, Self::login(ctx, user)).await;
        let (conn, server_version) = match opened {
            Err(_) => return Err("login did not finish within the time budget".into()),
            Ok(r) => r?,
        };
        let mut s = Session {
            s: driver::Session::with_conn(ctx, conn, budget.clone()),
            server_version,
        };
        // A count's answer comes after the whole count: reads wait until the deadline.
        s.s.set_wait(Wait::Deadline);
        match s.simple(SET_READ_ONLY, &[]).await {
            Ok(()) => {}
            Err(Failure::Server(e)) => notes.push(format!(
                "the server refused a read-only session ({e}); the SQL allowlist still keeps the inventory to reads"
            )),
            Err(e) => return Err(format!("{SET_READ_ONLY}: {e}")),
        }
        let maria = maria_hint || product_version(&s.server_version).0 == "MariaDB";
        let secs = budget.time_left().as_secs().max(1);
        let (template, value) = if maria {
            (SET_STATEMENT_TIME, i128::from(secs))
        } else {
            (SET_EXECUTION_TIME, i128::from(secs) * 1000)
        };
        match s.simple(template, &[Arg::Int(value)]).await {
            Ok(()) => {}
            Err(Failure::Server(e)) => notes.push(format!(
                "no server-side statement time limit ({e}); statements are bounded by the client deadline only"
            )),
            Err(e) => return Err(format!("setting the statement time limit: {e}")),
        }
        match s.simple(START_READ_ONLY, &[]).await {
            Ok(()) => {}
            Err(Failure::Server(e)) => notes.push(format!(
                "the server refused START TRANSACTION READ ONLY ({e}); the SQL allowlist still keeps the inventory to reads"
            )),
            Err(e) => return Err(format!("{START_READ_ONLY}: {e}")),
        }
        Ok(s)
    }

    /// Reads the greeting and logs in; returns the connection and the server version.
    async fn login(ctx: &ProbeCtx, user: &str) -> Result<(Conn, String), String> {
        let mut conn = ctx.connect().await.map_err(|e| format!("connect: {e}"))?;
        let (seq, payload) = read_packet(&mut conn, ctx.opts.frame_cap)
            .await
            .map_err(|e| format!("greeting: {e}"))?;
        let hs = match (seq, parse_greeting(&payload)) {
            (0, Some(Greeting::Handshake(hs))) => hs,
            (_, Some(Greeting::Error(e))) => return Err(format!("refused before login: {e}")),
            _ => return Err("the server no longer sends a MySQL greeting".into()),
        };
        match login(ctx, &mut conn, &hs, user).await {
            Ok(Login::Accepted) => Ok((conn, hs.server_version)),
            Ok(Login::Refused(e)) => Err(format!("login as {user} refused: {e}")),
            Ok(Login::GaveUp(why)) => Err(format!("login as {user} not completed: {why}")),
            Err(e) => Err(format!("login as {user} failed: {e}")),
        }
    }

    /// The connection is out of step (an answer left unread, an I/O error): reopen before use.
    pub(super) fn broken(&self) -> bool {
        self.s.is_broken()
    }

    /// Until when the next statements may run, in place of the budget's deadline (one count's
    /// slot); None returns to the budget's.
    pub(super) fn set_deadline(&mut self, until: Option<Instant>) {
        self.s.set_deadline(until);
    }

    /// Runs one allowlisted statement within the budget.
    pub(super) async fn query(
        &mut self,
        template: &'static str,
        args: &[Arg<'_>],
        max_rows: usize,
    ) -> Result<ResultSet, Failure> {
        if let Some(spent) = self.s.spent() {
            return Err(Failure::Budget(spent));
        }
        match exchange(&mut self.s, template, args, max_rows).await {
            Ok(QueryReply::Rows(set)) => {
                if set.truncated {
                    // The rest of the answer is still on the wire.
                    self.s.mark_broken();
                    if set.rows.len() < max_rows {
                        self.s.budget().exhaust_bytes();
                    }
                }
                Ok(set)
            }
            Ok(QueryReply::Ok) => Ok(ResultSet::default()),
            Ok(QueryReply::Err(e)) => Err(Failure::Server(e)),
            Err(e) => Err(e),
        }
    }

    /// A statement answered by OK (SET, START TRANSACTION).
    async fn simple(&mut self, template: &'static str, args: &[Arg<'_>]) -> Result<(), Failure> {
        self.query(template, args, 0).await.map(drop)
    }

    pub(super) async fn quit(mut self) {
        // Ends the read-only transaction (rolled back: it changed nothing) and the session.
        self.s.goodbye(&frame(0, &[COM_QUIT])).await;
    }
}

/// A small PRNG for sample positions (seeded from the OS; quality is not critical).
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let mut b = [0u8; 8];
        let _ = getrandom::getrandom(&mut b);
        Rng::seeded(u64::from_le_bytes(b))
    }
    fn seeded(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform enough in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: u128) -> u128 {
        if n == 0 {
            return 0;
        }
        ((u128::from(self.next()) << 64) | u128::from(self.next())) % n
    }
}

fn parse_u64(v: &Option<String>) -> Option<u64> {
    v.as_deref()?.trim().parse().ok()
}

fn cell(row: &[Option<String>], i: usize) -> Option<&str> {
    row.get(i)?.as_deref()
}

/// Parses the answer to [`COUNT_TABLES`]: (all tables, listable tables).
fn parse_table_counts(set: &ResultSet) -> Option<(u64, u64)> {
    let row = set.rows.first()?;
    Some((
        parse_u64(row.first()?)?,
        parse_u64(row.get(1)?).unwrap_or(0),
    ))
}

/// Parses the answer to [`LIST_TABLES`].
fn parse_tables(set: &ResultSet) -> Vec<Table> {
    set.rows
        .iter()
        .filter_map(|row| {
            let schema = cell(row, 0)?.to_string();
            let name = cell(row, 1)?.to_string();
            let view = cell(row, 2) == Some("VIEW");
            let engine = cell(row, 3).unwrap_or_default();
            let system = SYSTEM_SCHEMAS.contains(&schema.as_str());
            let records = if view { None } else { parse_u64(row.get(4)?) };
            let holding = Holding {
                name: format!("{schema}.{name}"),
                kind: "table",
                records,
                records_exact: records.is_some() && EXACT_ENGINES.contains(&engine),
                bytes: if view { None } else { parse_u64(row.get(5)?) },
                system,
                schema: Vec::new(),
                sample: Vec::new(),
                sample_keys: Vec::new(),
            };
            Some(Table {
                schema,
                name,
                view,
                holding,
                int_key: None,
                key_columns: 0,
            })
        })
        .collect()
}

/// Attaches the answer to [`LIST_COLUMNS`] to the tables: column types, and the integer
/// primary key where the key is one integer column.
fn attach_columns(tables: &mut [Table], set: &ResultSet) {
    let index: std::collections::HashMap<(&str, &str), usize> = tables
        .iter()
        .enumerate()
        .map(|(i, t)| ((t.schema.as_str(), t.name.as_str()), i))
        .collect();
    let mut found: Vec<(usize, String, String, bool, bool)> = Vec::new();
    for row in &set.rows {
        let (Some(schema), Some(table), Some(column)) = (cell(row, 0), cell(row, 1), cell(row, 2))
        else {
            continue;
        };
        let Some(&i) = index.get(&(schema, table)) else {
            continue;
        };
        let ty = cell(row, 3).unwrap_or_default().to_string();
        let key = cell(row, 4) == Some("PRI");
        let int = INTEGER_TYPES.contains(&cell(row, 5).unwrap_or_default());
        found.push((i, column.to_string(), ty, key, int));
    }
    for (i, column, ty, key, int) in found {
        let Some(t) = tables.get_mut(i) else { continue };
        if key {
            t.key_columns += 1;
            t.int_key = int.then(|| column.clone());
        }
        t.holding.schema.push((column, ty));
    }
    for t in tables.iter_mut() {
        if t.key_columns != 1 {
            t.int_key = None;
        }
    }
}

/// Flattens sampled rows under their column names.
fn flatten_rows(set: &ResultSet, value_cap: usize) -> Vec<Record> {
    set.rows
        .iter()
        .map(|row| {
            flatten_row(
                set.names
                    .iter()
                    .map(String::as_str)
                    .zip(row.iter().map(Option::as_deref)),
                value_cap,
            )
        })
        .collect()
}

/// `(offset, count)` runs for a table of `rows` rows: `want` rows in up to [`CHUNKS`] runs at
/// sorted, non-overlapping random offsets within the first [`OFFSET_SPAN`] rows.
fn offset_runs(rows: u64, want: usize, rng: &mut Rng) -> Vec<(u64, u64)> {
    let want = want as u64;
    if want == 0 {
        return Vec::new();
    }
    let span = rows.min(OFFSET_SPAN).max(want);
    let chunks = (CHUNKS as u64).min(want);
    let per = want.div_ceil(chunks);
    // Each run gets its own slot of the span, at a random place inside it: spread, no overlap.
    let slot = span / chunks;
    (0..chunks)
        .map(|c| {
            let room = slot.saturating_sub(per);
            let off = c * slot + rng.below(u128::from(room) + 1) as u64;
            (off, per.min(want - c * per))
        })
        .filter(|&(_, n)| n > 0)
        .collect()
}

/// Sorted random starting points in `min..=max` for the key-range runs: one in each of
/// `chunks` equal slices of the range, so the runs cover it evenly.
fn key_points(min: i128, max: i128, chunks: usize, rng: &mut Rng) -> Vec<i128> {
    if max < min || chunks == 0 {
        return Vec::new();
    }
    let width = (max - min) as u128 + 1;
    let chunks = (chunks as u128).min(width);
    let slice = width / chunks;
    (0..chunks)
        .map(|c| min + (c * slice + rng.below(slice)) as i128)
        .collect()
}

/// Samples one table into `out` (what was read before a failure is kept).
async fn sample_table(
    s: &mut Session,
    t: &Table,
    opts: &InventoryOptions,
    rng: &mut Rng,
    out: &mut Vec<Record>,
) -> Result<(), Failure> {
    let want = opts.sample;
    let (db, name) = (t.schema.as_str(), t.name.as_str());
    let mut rows = t.holding.records;
    if !t.holding.records_exact && rows.is_some_and(|n| n <= SMALL_TABLE) {
        // An estimate can be far off (MySQL 8 caches TABLE_ROWS for a day): before a sort
        // over the whole table, check that it really is small by stepping over SMALL_TABLE
        // rows, a bounded cost.
        let past = s
            .query(
                SAMPLE_AT_OFFSET,
                &[
                    Arg::Ident(db),
                    Arg::Ident(name),
                    Arg::Int(i128::from(SMALL_TABLE)),
                    Arg::Int(1),
                ],
                1,
            )
            .await?;
        if !past.rows.is_empty() {
            rows = None;
        }
    }
    if rows.is_some_and(|n| n <= SMALL_TABLE) {
        let set = s
            .query(
                SAMPLE_RANDOM,
                &[Arg::Ident(db), Arg::Ident(name), Arg::Int(want as i128)],
                want,
            )
            .await?;
        out.extend(flatten_rows(&set, opts.value_cap));
        return Ok(());
    }
    if let Some(key) = &t.int_key {
        return sample_by_key(s, (db, name, key), opts, rng, out).await;
    }
    // Unknown size: the runs stay within the span; a short run ends them.
    let at = |off: u64, n: u64| [Arg::Int(i128::from(off)), Arg::Int(i128::from(n))];
    let start = out.len();
    let mut prev_end = 0;
    for (off, n) in offset_runs(rows.unwrap_or(OFFSET_SPAN), want, rng) {
        let [o, k] = at(off, n);
        let set = s
            .query(
                SAMPLE_AT_OFFSET,
                &[Arg::Ident(db), Arg::Ident(name), o, k],
                n as usize,
            )
            .await?;
        let got = set.rows.len() as u64;
        out.extend(flatten_rows(&set, opts.value_cap));
        if got < n {
            // Past the end: the estimate was high, and later offsets are further out. What is
            // still wanted comes from the unread gap since the last full run: just before this
            // run when it got rows (the table reaches that far), else just after the last one.
            let missing = (want - (out.len() - start)) as u64;
            let take = missing.min(off - prev_end);
            let from = if got > 0 { off - take } else { prev_end };
            if take > 0 {
                let [o, k] = at(from, take);
                let set = s
                    .query(
                        SAMPLE_AT_OFFSET,
                        &[Arg::Ident(db), Arg::Ident(name), o, k],
                        take as usize,
                    )
                    .await?;
                out.extend(flatten_rows(&set, opts.value_cap));
            }
            break;
        }
        prev_end = off + n;
    }
    Ok(())
}

/// Runs of rows from random points of a numeric primary key's range.
async fn sample_by_key(
    s: &mut Session,
    (db, name, key): (&str, &str, &str),
    opts: &InventoryOptions,
    rng: &mut Rng,
    out: &mut Vec<Record>,
) -> Result<(), Failure> {
    let want = opts.sample;
    let range = s
        .query(
            KEY_RANGE,
            &[
                Arg::Ident(key),
                Arg::Ident(key),
                Arg::Ident(db),
                Arg::Ident(name),
            ],
            1,
        )
        .await?;
    let bound = |i| {
        range
            .rows
            .first()
            .and_then(|r| cell(r, i))
            .and_then(|v| v.parse::<i128>().ok())
    };
    let (Some(min), Some(max)) = (bound(0), bound(1)) else {
        return Ok(()); // NULLs: the table is empty
    };
    let chunks = CHUNKS.min(want);
    let per = want.div_ceil(chunks);
    let mut next = min;
    let taken = out.len();
    for p in key_points(min, max, chunks, rng) {
        let take = per.min(want - (out.len() - taken));
        let from = p.max(next);
        if take == 0 || from > max {
            break;
        }
        let set = s
            .query(
                SAMPLE_FROM_KEY,
                &[
                    Arg::Ident(db),
                    Arg::Ident(name),
                    Arg::Ident(key),
                    Arg::Int(from),
                    Arg::Ident(key),
                    Arg::Int(take as i128),
                ],
                take,
            )
            .await?;
        // The next run starts after this one ends: no row is taken twice.
        let last = set
            .names
            .iter()
            .position(|n| n == key)
            .and_then(|i| set.rows.last().and_then(|r| cell(r, i)))
            .and_then(|v| v.parse::<i128>().ok());
        if let Some(last) = last {
            next = last + 1;
        }
        out.extend(flatten_rows(&set, opts.value_cap));
    }
    Ok(())
}

/// What is done to a user table, in this order over all tables: every table is sampled
/// before any is counted, so one huge `COUNT(*)` cannot starve the samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Sample,
    Count,
}

impl Step {
    fn verb(self) -> &'static str {
        match self {
            Step::Sample => "sampled",
            Step::Count => "counted",
        }
    }
}

/// Whether a user table gets `SELECT COUNT(*)`: its count is an estimate, and either a small
/// one or `--full` asks for every count. A table without an estimate (the catalogue said
/// NULL) is counted only by `--full`: its size is unknown.
fn wants_count(h: &Holding, full: bool) -> bool {
    !h.records_exact && (full || h.records.is_some_and(|n| n <= CHEAP_COUNT))
}

/// The exact row count of one table (cheap, or asked for by `--full`).
async fn count_table(
    s: &mut Session,
    t: &mut Table,
    notes: &mut Vec<String>,
) -> Result<(), Failure> {
    let args = [Arg::Ident(&t.schema), Arg::Ident(&t.name)];
    match s.query(COUNT_ROWS, &args, 1).await {
        Ok(set) => {
            if let Some(n) = set.rows.first().and_then(|r| parse_u64(r.first()?)) {
                t.holding.records = Some(n);
                t.holding.records_exact = true;
            }
            Ok(())
        }
        // Refused or cut by the statement time limit: the session goes on.
        Err(Failure::Server(e)) => {
            notes.push(format!(
                "{}: exact count refused ({e}); the catalogue estimate is kept",
                t.holding.name
            ));
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The protocol's [`crate::driver::InventoryFn`].
pub(super) async fn inventory(
    ctx: &ProbeCtx,
    finding: &Finding,
    opts: &InventoryOptions,
) -> Inventory {
    let mut inv = Inventory::default();
    let Some(cred) = finding.credential else {
        inv.notes
            .push("no credential to log in with: MySQL always requires an account".into());
        return inv;
    };
    if !cred.password.is_empty() {
        inv.notes.push(format!(
            "logging in as {} needs a password, which this inventory does not send",
            cred.user
        ));
        return inv;
    }
    // Our deadline comes before the engine's, so that what was read is returned, not dropped.
    let budget = Arc::new(Budget::for_inventory(opts));
    let ictx = ctx;
    let maria = finding.product.as_deref() == Some("MariaDB");
    let mut s = match Session::open(ictx, cred.user, maria, &budget, &mut inv.notes).await {
        Ok(s) => s,
        Err(e) => {
            inv.notes.push(format!("inventory login failed: {e}"));
            return inv;
        }
    };

    // 1. The catalogue: counts first (names only), then the listing.
    let counts = match s.query(COUNT_TABLES, &[], 1).await {
        Ok(set) => parse_table_counts(&set),
        Err(e) => {
            inv.notes.push(format!("counting tables failed: {e}"));
            None
        }
    };
    let limit = opts.max_containers;
    let mut listing_cut = false;
    let mut tables = match s
        .query(LIST_TABLES, &[Arg::Int(limit as i128)], limit)
        .await
    {
        Ok(set) => {
            if set.truncated && set.rows.len() < limit {
                inv.notes.push(format!(
                    "table listing cut at the byte budget after {} tables",
                    set.rows.len()
                ));
                listing_cut = true;
            }
            parse_tables(&set)
        }
        Err(e) => {
            inv.notes.push(format!("listing tables failed: {e}"));
            s.quit().await;
            return inv;
        }
    };

    match counts {
        _ if listing_cut => {}
        Some((_, listable)) if listable > tables.len() as u64 => inv.notes.push(format!(
            "listed {} of {listable} tables (--max-containers)",
            tables.len()
        )),
        None if tables.len() >= limit => inv.notes.push(format!(
            "listed the first {limit} tables (--max-containers); more may exist"
        )),
        _ => {}
    }
    if let Some((all, listable)) = counts {
        let hidden = all.saturating_sub(listable);
        if hidden > 0 {
            inv.notes.push(format!(
                "{hidden} objects of information_schema, performance_schema and the views of mysql and sys not listed: the server's views of its own state, not stored data"
            ));
        }
    }

    // 2. Column names and types of the user tables.
    match s
        .query(
            LIST_COLUMNS,
            &[Arg::Int(MAX_COLUMN_ROWS as i128)],
            MAX_COLUMN_ROWS,
        )
        .await
    {
        Ok(set) => {
            if set.rows.len() >= MAX_COLUMN_ROWS {
                inv.notes.push(format!(
                    "column types read for the first {MAX_COLUMN_ROWS} columns only"
                ));
            }
            attach_columns(&mut tables, &set);
        }
        Err(e) => inv.notes.push(format!("reading column types failed: {e}")),
    }

    // 3. Per table: samples, then exact counts (cheap ones, or all with --full). One table
    // failing never stops the others.
    let mut rng = Rng::new();
    let mut reopened = 0;
    let user: Vec<usize> = (0..tables.len())
        .filter(|&i| !tables[i].view && !tables[i].holding.system)
        .collect();
    let mut work: Vec<(Step, usize)> = Vec::new();
    if opts.sample > 0 {
        work.extend(user.iter().map(|&i| (Step::Sample, i)));
    }
    work.extend(
        user.iter()
            .filter(|&&i| wants_count(&tables[i].holding, opts.full))
            .map(|&i| (Step::Count, i)),
    );
    let mut stopped: Option<(usize, &'static str)> = None;
    for (done, &(step, i)) in work.iter().enumerate() {
        if let Some(spent) = budget.spent() {
            stopped = Some((done, spent.budget()));
            break;
        }
        if s.broken() {
            // The last table left the connection out of step; the next gets a fresh one.
            if reopened >= MAX_REOPEN {
                stopped = Some((done, "reconnect limit"));
                break;
            }
            reopened += 1;
            match Session::open(ictx, cred.user, maria, &budget, &mut inv.notes).await {
                Ok(fresh) => s = fresh,
                Err(e) => {
                    inv.notes.push(format!("reconnecting failed: {e}"));
                    stopped = Some((done, "lost connection"));
                    break;
                }
            }
        }
        let t = &mut tables[i];
        let r = match step {
            Step::Sample => {
                let empty = t.holding.records_exact && t.holding.records == Some(0);
                let mut sample = Vec::new();
                let r = if empty {
                    Ok(())
                } else {
                    sample_table(&mut s, t, opts, &mut rng, &mut sample).await
                };
                // What was read before a failure is kept.
                t.holding.sample = sample;
                r
            }
            Step::Count => count_table(&mut s, t, &mut inv.notes).await,
        };
        match r {
            Ok(()) => {}
            Err(Failure::Budget(spent)) => {
                stopped = Some((done, spent.budget()));
                break;
            }
            Err(e) => inv
                .notes
                .push(format!("{}: not {} ({e})", t.holding.name, step.verb())),
        }
    }
    if let Some((done, what)) = stopped {
        let left = |st: Step| work[done..].iter().filter(|w| w.0 == st).count();
        let parts: Vec<String> = [Step::Sample, Step::Count]
            .into_iter()
            .filter(|&st| left(st) > 0)
            .map(|st| format!("{} tables not {}", left(st), st.verb()))
            .collect();
        inv.notes
            .push(format!("stopped at the {what}: {}", parts.join(", ")));
    }
    s.quit().await;
    inv.holdings = tables.into_iter().map(|t| t.holding).collect();
    inv
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::time::Duration;

    use crate::driver::ProbeOptions;
    use crate::testkit::{fixture, frames, FakeServer, Message, Reply};

    use crate::protocols::mysql::probe::ROOT_EMPTY;
    use crate::protocols::mysql::wire::tests::{matches_template, packets};
    use crate::protocols::mysql::wire::{ResultReader, ALLOWED_QUERIES};

    // Captured from Debian 12's MariaDB 10.11.19 (a throwaway mariadbd on 127.0.23.1 holding
    // databases `shop`, `big` and `odd db`) by a small Python socket client sending the
    // statements below, as the inventory renders them, inside a read-only transaction.
    const GREETING: &[u8] = fixture!("mysql/mariadb_greeting.bin");
    const LOGIN_OK: &[u8] = fixture!("mysql/mariadb_login_ok.bin");
    /// OK to `SET SESSION TRANSACTION READ ONLY`.
    const SET_OK: &[u8] = fixture!("mysql/inv_set_ok.bin");
    const COUNTS: &[u8] = fixture!("mysql/inv_count_tables.bin");
    const TABLES: &[u8] = fixture!("mysql/inv_list_tables.bin");
    const COLUMNS: &[u8] = fixture!("mysql/inv_list_columns.bin");
    /// `SELECT COUNT(*) FROM `shop`.`customers``.
    const COUNT: &[u8] = fixture!("mysql/inv_count_rows.bin");
    /// `SELECT MIN(`id`), MAX(`id`) FROM `shop`.`customers``.
    const RANGE: &[u8] = fixture!("mysql/inv_key_range.bin");
    /// `... WHERE `id` >= 41000 ORDER BY `id` LIMIT 3` (a JSON text column).
    const FROM_KEY: &[u8] = fixture!("mysql/inv_sample_from_key.bin");
    /// `SELECT * FROM `odd db`.`we``ird` ORDER BY RAND() LIMIT 200` (a NULL, odd names).
    const RANDOM: &[u8] = fixture!("mysql/inv_sample_random_weird.bin");
    /// `SELECT * FROM `shop`.`events` LIMIT 1200, 2`.
    const AT_OFFSET: &[u8] = fixture!("mysql/inv_sample_at_offset.bin");
    /// `SELECT * FROM `shop`.`legacy` LIMIT 10000, 1`: past the end, no rows.
    const PAST_END: &[u8] = fixture!("mysql/inv_sample_past_end.bin");
    /// An INSERT inside the read-only transaction: ERR 1792.
    const WRITE_REFUSED: &[u8] = fixture!("mysql/inv_write_refused.bin");
    /// A count cut by `max_statement_time`: ERR 1969 after the column definitions.
    const TIMED_OUT: &[u8] = fixture!("mysql/inv_statement_timeout.bin");

    fn read(bytes: &[u8]) -> QueryReply {
        let mut r = ResultReader::with_rows(1 << 20, 1000);
        for (_, p) in packets(bytes) {
            if let Some(reply) = r.feed(&p).unwrap() {
                return reply;
            }
        }
        panic!("answer did not end")
    }

    fn rows(bytes: &[u8]) -> ResultSet {
        match read(bytes) {
            QueryReply::Rows(set) => set,
            other => panic!("{other:?}"),
        }
    }

    fn listed() -> Vec<Table> {
        let mut tables = parse_tables(&rows(TABLES));
        attach_columns(&mut tables, &rows(COLUMNS));
        tables
    }

    fn table<'a>(tables: &'a [Table], name: &str) -> &'a Table {
        tables.iter().find(|t| t.holding.name == name).unwrap()
    }

    #[test]
    fn real_catalogue_listing() {
        assert_eq!(parse_table_counts(&rows(COUNTS)), Some((301, 40)));
        let tables = listed();
        assert_eq!(tables.len(), 40);
        let names: Vec<&str> = tables.iter().map(|t| t.holding.name.as_str()).collect();
        // User tables first, in schema and name order; then the server's own.
        assert_eq!(
            names[..9],
            [
                "big.blobby",
                "big.rows_uuid",
                "odd db.we`ird",
                "shop.cache_mem",
                "shop.customers",
                "shop.empty_t",
                "shop.events",
                "shop.legacy",
                "shop.v_customers"
            ]
        );
        assert!(tables[9..].iter().all(|t| t.holding.system));
        assert!(tables[..9].iter().all(|t| !t.holding.system));
        assert!(tables.iter().all(|t| t.holding.kind == "table"));

        // InnoDB: an estimate; MyISAM, MEMORY and Aria: exact; a view: nothing.
        let c = &table(&tables, "shop.customers").holding;
        assert_eq!(
            (c.records, c.records_exact, c.bytes),
            (Some(49813), false, Some(4734976))
        );
        let l = &table(&tables, "shop.legacy").holding;
        assert_eq!((l.records, l.records_exact), (Some(3), true));
        assert!(table(&tables, "shop.cache_mem").holding.records_exact);
        assert!(table(&tables, "mysql.global_priv").holding.records_exact);
        let v = table(&tables, "shop.v_customers");
        assert!(v.view);
        assert_eq!((v.holding.records, v.holding.bytes), (None, None));
    }

    #[test]
    fn real_column_types_and_keys() {
        let tables = listed();
        let c = table(&tables, "shop.customers");
        assert_eq!(
            c.holding.schema,
            [
                ("id".to_string(), "int(11)".to_string()),
                ("email".into(), "varchar(100)".into()),
                ("prefs".into(), "text".into()),
                ("created".into(), "datetime".into())
            ]
        );
        assert_eq!(c.int_key.as_deref(), Some("id"));
        // A UUID key cannot be seeked to by number; no key at all neither.
        assert_eq!(table(&tables, "shop.events").int_key, None);
        assert_eq!(table(&tables, "shop.legacy").int_key, None);
        assert_eq!(table(&tables, "shop.cache_mem").int_key, None);
        let w = table(&tables, "odd db.we`ird");
        assert_eq!(w.holding.schema[0], ("co`l".into(), "int(11)".into()));
        assert_eq!(table(&tables, "shop.v_customers").holding.schema.len(), 2);
        // System tables get no columns (never sampled).
        assert!(table(&tables, "mysql.global_priv")
            .holding
            .schema
            .is_empty());
    }

    fn pairs(r: &Record) -> Vec<(&str, &str)> {
        r.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
    }

    #[test]
    fn real_samples_flatten_under_column_names() {
        let set = rows(FROM_KEY);
        assert_eq!(set.names, ["id", "email", "prefs", "created"]);
        let recs = flatten_rows(&set, 64);
        assert_eq!(recs.len(), 3);
        assert_eq!(
            pairs(&recs[0]),
            [
                ("id", "41000"),
                ("email", "user41000@example.com"),
                ("prefs.lang", "en"),
                ("prefs.tags[]", "a"),
                ("prefs.tags[]", "41000"),
                ("created", "2024-01-29 11:20:00")
            ]
        );
        // NULL columns are left out; names keep their backticks.
        let recs = flatten_rows(&rows(RANDOM), 64);
        assert_eq!(pairs(&recs[0]), [("co`l", "1"), ("note", "x")]);
        assert_eq!(pairs(&recs[1]), [("co`l", "2")]);
        let past = rows(PAST_END);
        assert_eq!((past.names.len(), past.rows.len()), (2, 0));
        let recs = flatten_rows(&rows(AT_OFFSET), 8);
        assert_eq!(pairs(&recs[0])[0], ("event_id", "f6d45264"));
        assert_eq!(rows(COUNT).rows, [[Some("50000".to_string())]]);
        assert_eq!(
            rows(RANGE).rows,
            [[Some("1".to_string()), Some("50000".into())]]
        );
    }

    #[test]
    fn real_refusals_are_server_errors() {
        let QueryReply::Err(e) = read(WRITE_REFUSED) else {
            panic!()
        };
        assert_eq!(e.code, 1792);
        assert!(e.message.contains("READ ONLY transaction"), "{e}");
        let QueryReply::Err(e) = read(TIMED_OUT) else {
            panic!()
        };
        assert_eq!(e.code, 1969);
        assert!(e.message.contains("max_statement_time"), "{e}");
        assert_eq!(read(SET_OK), QueryReply::Ok);
    }

    #[test]
    fn offset_runs_are_spread_bounded_and_disjoint() {
        let mut rng = Rng::seeded(7);
        for rows in [0, 1, 150, 200, 5_000, 1_000_000, u64::MAX] {
            for want in [1, 3, 200, 1000] {
                let runs = offset_runs(rows, want, &mut rng);
                let total: u64 = runs.iter().map(|r| r.1).sum();
                assert_eq!(total, want as u64, "{rows} {want} {runs:?}");
                assert!(runs.len() <= CHUNKS);
                let span = rows.min(OFFSET_SPAN).max(want as u64);
                for w in runs.windows(2) {
                    assert!(w[0].0 + w[0].1 <= w[1].0, "{runs:?}");
                }
                assert!(runs.iter().all(|&(off, n)| off + n <= span), "{runs:?}");
            }
        }
        // Spread: the runs of a large table reach its last slot.
        let runs = offset_runs(10_000_000, 200, &mut rng);
        assert!(runs.last().unwrap().0 >= OFFSET_SPAN / CHUNKS as u64 * (CHUNKS as u64 - 1));
        assert!(offset_runs(100, 0, &mut rng).is_empty());
    }

    #[test]
    fn key_points_cover_the_range_in_order() {
        let mut rng = Rng::seeded(11);
        for (min, max) in [
            (1, 50_000),
            (-5, 5),
            (7, 7),
            (0, 3),
            (i128::from(i64::MIN), i128::from(u64::MAX)),
        ] {
            let p = key_points(min, max, CHUNKS, &mut rng);
            assert!(!p.is_empty() && p.len() <= CHUNKS);
            assert!(p.windows(2).all(|w| w[0] < w[1]), "{p:?}");
            assert!(p.iter().all(|&x| (min..=max).contains(&x)), "{p:?}");
        }
        let p = key_points(1, 80_000, 8, &mut rng);
        for (i, x) in p.iter().enumerate() {
            assert!((1 + i as i128 * 10_000..1 + (i as i128 + 1) * 10_000).contains(x));
        }
        assert!(key_points(5, 4, 8, &mut rng).is_empty());
    }

    // ---- end to end against a fake MariaDB that answers with the captured replies ----

    /// The captured answer for a statement, by its shape.
    fn answer(sql: &str) -> &'static [u8] {
        if sql.starts_with("SET ") || sql.starts_with("START ") {
            SET_OK
        } else if sql.starts_with("SELECT COUNT(*), SUM(") {
            COUNTS
        } else if sql.contains("FROM information_schema.TABLES") {
            TABLES
        } else if sql.contains("FROM information_schema.COLUMNS") {
            COLUMNS
        } else if sql.starts_with("SELECT COUNT(*) FROM") {
            COUNT
        } else if sql.starts_with("SELECT MIN(") {
            RANGE
        } else if sql.contains(" WHERE ") {
            FROM_KEY
        } else if sql.contains("RAND()") {
            RANDOM
        } else if sql.ends_with(&format!("LIMIT {SMALL_TABLE}, 1")) {
            PAST_END
        } else {
            AT_OFFSET
        }
    }

    async fn fake_mariadb(stall: Option<&'static str>) -> FakeServer {
        fake_mariadb_answering(answer, stall).await
    }

    /// A fake MariaDB 10.11: greets, accepts the login, then answers each COM_QUERY with
    /// `answer(sql)` (captured replies by the statement's shape; statements containing `stall`
    /// get no answer). Shared by the inventory's and the counter's tests.
    pub(in crate::protocols::mysql) async fn fake_mariadb_answering(
        answer: fn(&str) -> &'static [u8],
        stall: Option<&'static str>,
    ) -> FakeServer {
        FakeServer::start(
            vec![Reply::Send(GREETING.to_vec())],
            frames::mysql_packet,
            move |m| match query_text(m) {
                _ if m.index == 0 => Reply::Send(LOGIN_OK.to_vec()),
                None => Reply::Close, // COM_QUIT
                Some(sql) if stall.is_some_and(|st| sql.contains(st)) => {
                    Reply::Stall(Duration::from_secs(30))
                }
                Some(sql) => Reply::Send(answer(&sql).to_vec()),
            },
        )
        .await
    }

    /// The SQL of a COM_QUERY packet.
    fn query_text(m: &Message) -> Option<String> {
        let body = m.bytes.get(4..)?;
        (m.index > 0 && body.first() == Some(&0x03))
            .then(|| String::from_utf8_lossy(&body[1..]).into_owned())
    }

    /// Every statement the fake server received, in order.
    pub(in crate::protocols::mysql) fn sql_sent(server: &FakeServer) -> Vec<String> {
        server.messages().iter().filter_map(query_text).collect()
    }

    fn ctx(addr: SocketAddr) -> ProbeCtx {
        let opts = ProbeOptions {
            try_defaults: true,
            ..ProbeOptions::default()
        };
        crate::driver::test_ctx(addr, opts)
    }

    fn finding() -> Finding {
        let mut f = Finding::new("mysql");
        f.product = Some("MariaDB".into());
        f.access = crate::model::Access::DefaultCredentials;
        f.credential = Some(ROOT_EMPTY);
        f
    }

    /// Every statement sent is one allowlisted template with identifiers and integers only.
    fn assert_allowlisted(sent: &[String]) {
        for sql in sent {
            assert!(
                ALLOWED_QUERIES.iter().any(|t| matches_template(sql, t)),
                "not allowlisted: {sql}"
            );
        }
    }

    #[tokio::test]
    async fn replayed_inventory_lists_counts_and_samples() {
        let server = fake_mariadb(None).await;
        let addr = server.addr();
        let opts = InventoryOptions {
            full: true,
            time_budget: Duration::from_secs(10),
            ..InventoryOptions::default()
        };
        let inv = inventory(&ctx(addr), &finding(), &opts).await;
        assert_eq!(inv.holdings.len(), 40, "{:?}", inv.notes);
        let h = |n: &str| inv.holdings.iter().find(|h| h.name == n).unwrap();
        // --full: every user table counted (the fake answers 50000 to every count) ...
        assert_eq!(
            (
                h("shop.customers").records,
                h("shop.customers").records_exact
            ),
            (Some(50000), true)
        );
        // ... but exact-engine tables, views and system tables are not.
        assert_eq!(h("shop.legacy").records, Some(3));
        assert_eq!(h("shop.v_customers").records, None);
        assert_eq!(h("mysql.global_priv").records, Some(3));
        assert!(h("shop.customers").sample.len() >= 3);
        assert!(h("shop.legacy").sample.len() == 2);
        assert!(h("shop.v_customers").sample.is_empty());
        assert!(h("mysql.global_priv").sample.is_empty());
        assert!(
            inv.notes.iter().any(|n| n.contains("261 objects")),
            "{:?}",
            inv.notes
        );

        let sent = sql_sent(&server);
        assert_allowlisted(&sent);
        assert_eq!(
            sent[..3],
            [
                "SET SESSION TRANSACTION READ ONLY",
                "SET SESSION max_statement_time = 8",
                "START TRANSACTION READ ONLY"
            ]
        );
        assert!(sent.contains(&"SELECT COUNT(*) FROM `odd db`.`we``ird`".to_string()));
        assert!(sent
            .iter()
            .any(|s| s.starts_with("SELECT * FROM `shop`.`customers` WHERE `id` >= ")));
        assert!(sent
            .iter()
            .any(|s| s.starts_with("SELECT * FROM `shop`.`events` LIMIT ")));
        assert!(!sent
            .iter()
            .any(|s| s.contains("`mysql`") || s.contains("v_customers")));
    }

    #[tokio::test]
    async fn listing_survives_a_stalled_table_and_the_budget() {
        // The count of one table never answers: the listing, the other tables before it, and a
        // note come back before the engine's deadline.
        let server = fake_mariadb(Some("COUNT(*) FROM `shop`.`customers`")).await;
        let addr = server.addr();
        let opts = InventoryOptions {
            full: true,
            time_budget: Duration::from_secs(2),
            ..InventoryOptions::default()
        };
        let t = std::time::Instant::now();
        let inv = tokio::time::timeout(opts.time_budget, inventory(&ctx(addr), &finding(), &opts))
            .await
            .expect("the inventory must finish within its own budget");
        assert!(t.elapsed() < Duration::from_secs(2));
        assert_eq!(inv.holdings.len(), 40);
        let h = |n: &str| inv.holdings.iter().find(|h| h.name == n).unwrap();
        // Samples come before counts: every table was sampled, whatever a count costs.
        for n in ["big.blobby", "shop.customers", "shop.events", "shop.legacy"] {
            assert!(!h(n).sample.is_empty(), "{n}");
        }
        assert_eq!(h("big.blobby").records, Some(50000));
        assert_eq!(h("shop.customers").records, Some(49813));
        assert!(!h("shop.customers").records_exact);
        assert!(
            inv.notes
                .iter()
                .any(|n| n.starts_with("stopped at the time budget: 3 tables not counted")),
            "{:?}",
            inv.notes
        );
        assert_allowlisted(&sql_sent(&server));
    }

    #[test]
    fn small_estimates_are_counted_big_ones_only_with_full() {
        let h = |records, records_exact| Holding {
            records,
            records_exact,
            ..Holding::default()
        };
        assert!(wants_count(&h(Some(7923), false), false));
        assert!(wants_count(&h(Some(CHEAP_COUNT), false), false));
        assert!(!wants_count(&h(Some(CHEAP_COUNT + 1), false), false));
        assert!(wants_count(&h(Some(CHEAP_COUNT + 1), false), true));
        assert!(!wants_count(&h(None, false), false));
        assert!(wants_count(&h(None, false), true));
        assert!(!wants_count(&h(Some(3), true), true));
    }

    #[tokio::test]
    async fn default_mode_counts_small_innodb_tables() {
        let server = fake_mariadb(None).await;
        let addr = server.addr();
        let inv = inventory(&ctx(addr), &finding(), &InventoryOptions::default()).await;
        let h = |n: &str| inv.holdings.iter().find(|h| h.name == n).unwrap();
        // The catalogue said 49813; the count (the fake answers 50000) replaces it.
        let c = h("shop.customers");
        assert_eq!((c.records, c.records_exact), (Some(50000), true));
        assert_eq!(h("shop.legacy").records, Some(3));
        let sent = sql_sent(&server);
        assert_allowlisted(&sent);
        assert!(sent.contains(&"SELECT COUNT(*) FROM `shop`.`customers`".to_string()));
        assert!(!sent.contains(&"SELECT COUNT(*) FROM `shop`.`legacy`".to_string()));
    }

    #[tokio::test]
    async fn byte_budget_keeps_what_was_read() {
        let server = fake_mariadb(None).await;
        let addr = server.addr();
        // Enough for the login, the counts, the listing and the columns, not for every sample.
        let opts = InventoryOptions {
            byte_budget: 10_000,
            ..InventoryOptions::default()
        };
        let inv = inventory(&ctx(addr), &finding(), &opts).await;
        assert_eq!(inv.holdings.len(), 40, "{:?}", inv.notes);
        assert!(
            inv.notes
                .iter()
                .any(|n| n.contains("stopped at the byte budget")),
            "{:?}",
            inv.notes
        );
        assert!(inv.holdings.iter().any(|h| !h.sample.is_empty()));
        assert!(!inv
            .holdings
            .iter()
            .find(|h| h.name == "shop.customers")
            .unwrap()
            .schema
            .is_empty());
        assert_allowlisted(&sql_sent(&server));
    }

    #[tokio::test]
    async fn max_containers_and_sample_zero() {
        let server = fake_mariadb(None).await;
        let addr = server.addr();
        let opts = InventoryOptions {
            sample: 0,
            max_containers: 5,
            ..InventoryOptions::default()
        };
        let inv = inventory(&ctx(addr), &finding(), &opts).await;
        // The fake ignores LIMIT; the reader's row cap still holds the listing to 5.
        assert_eq!(inv.holdings.len(), 5);
        assert!(
            inv.notes
                .iter()
                .any(|n| n.contains("listed 5 of 40 tables")),
            "{:?}",
            inv.notes
        );
        assert!(inv.holdings.iter().all(|h| h.sample.is_empty()));
        let sent = sql_sent(&server);
        assert!(sent.iter().any(|s| s.ends_with("LIMIT 5")));
        assert!(!sent.iter().any(|s| s.starts_with("SELECT *")));
    }

    #[tokio::test]
    async fn without_a_usable_credential_nothing_is_sent() {
        let server = fake_mariadb(None).await;
        let addr = server.addr();
        let mut f = finding();
        f.credential = None;
        let inv = inventory(&ctx(addr), &f, &InventoryOptions::default()).await;
        assert!(inv.holdings.is_empty());
        assert!(!inv.notes.is_empty());
        assert!(sql_sent(&server).is_empty());
    }
}
