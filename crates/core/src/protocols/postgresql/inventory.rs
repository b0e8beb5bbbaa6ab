//! Inventory and read-only sampling of an exposed PostgreSQL server.
//!
//! What it does, cheapest first so that a time budget cut leaves a useful partial answer:
//! 1. logs in again the way the probe did (trust, or the default credential that worked; SSL
//!    when `pg_hba.conf` wants it) and lists the databases that accept connections;
//! 2. connects to each database in turn and reads the catalogue: tables, partitioned tables,
//!    views, materialized views and foreign tables with `reltuples` estimates and on-disk sizes,
//!    and every column's type (`format_type`) as the holding's schema;
//! 3. connects again per database and, table by table, counts rows exactly where that is cheap
//!    (small tables) or asked for (`--full`), and samples rows spread across the table
//!    (`ORDER BY random()` over a small table, `TABLESAMPLE SYSTEM` over a large one).
//!
//! Every statement runs inside `BEGIN READ ONLY` with `SET LOCAL statement_timeout` (what is
//! left of the time budget, so the server stops working when we stop waiting) and
//! `SET LOCAL lock_timeout` (we never queue behind DDL for long), and ends with `ROLLBACK`.
//! `LOCAL` settings die with the transaction, so nothing lingers on a pooled server connection.
//! Views are listed but never counted or sampled (their query could be arbitrarily expensive),
//! and foreign tables never are either: reading one would make the server contact another
//! host, which is outside the scan's scope.
//!
//! The system schemas (`pg_catalog`, `information_schema`, `pg_toast*`, `pg_temp*`) are not
//! listed: the catalogue is the same few hundred relations in every database and holds no
//! customer rows, and listing it per database would drown the tables that matter and eat
//! `max_containers`. Tables that belong to an extension (PostGIS `spatial_ref_sys`, …) are
//! listed with `system: true`.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::time::Instant;

pub(super) use super::wire::Fail;
use super::wire::{
    check_message, fresh, login, parse_error, send_query, Arg, Credential, Login, LoginError, Msg,
    PgError, Reader, BEGIN_READ_ONLY, COUNT_ROWS, DATABASES, LIST_COLUMNS,
    LIST_DATABASES_FOR_INVENTORY, LIST_RELATIONS, LIST_RELATIONS_UNLOCKED, QUERY_TYPES, ROLLBACK,
    SAMPLE_FIRST, SAMPLE_RANDOM, SAMPLE_TABLESAMPLE, SET_LOCK_TIMEOUT, SET_STATEMENT_TIMEOUT,
    TERMINATE,
};
use crate::driver::{Budget, Failure, Finding, ProbeCtx, Session, Spent, Wait};
use crate::inventory::{flatten_json, Holding, Inventory, InventoryOptions, Record};
use crate::net::Check;

// ---------------------------------------------------------------------------------------------
// Tunables

/// Tables whose main fork is at most this big are counted exactly and sampled uniformly
/// (a full scan of 8 MiB costs milliseconds).
const SMALL_TABLE_BYTES: u64 = 8 << 20;
/// TABLESAMPLE asks for this many times the rows wanted (block sampling is lumpy).
const OVERSAMPLE: f64 = 3.0;
const LOCK_TIMEOUT_MS: u64 = 2_000;
/// Characters kept of a string value that looks like JSON (it is parsed, so it must be whole).
const JSON_TEXT_CHARS: usize = 16 << 10;
/// Rows kept from the catalogue queries of one database (more are counted, not kept).
const MAX_COLUMN_ROWS: usize = 200_000;
/// Databases inventoried at most (more are noted).
const MAX_DATABASES: usize = 1_000;
/// Names shown in a note before "…".
const NOTE_NAMES: usize = 5;

// ---------------------------------------------------------------------------------------------
// Reading results

/// The answer to one statement.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Answer {
    pub columns: Vec<String>,
    /// Rows kept (at most the `keep` asked for), text values.
    pub rows: Vec<Vec<Option<String>>>,
    /// Rows the server sent, kept or not.
    pub row_count: usize,
    /// DataRows over the frame cap, skipped unread.
    pub skipped: usize,
    /// CommandComplete tag (`SELECT 3`, `BEGIN`, `SET`, `ROLLBACK`).
    pub tag: Option<String>,
    pub error: Option<PgError>,
    /// Transaction status from ReadyForQuery: `I` idle, `T` in a transaction, `E` failed one.
    pub status: u8,
}

/// Parses a RowDescription body into column names.
pub fn parse_row_description(body: &[u8]) -> Option<Vec<String>> {
    let mut r = Reader(body);
    let n = r.i16()?;
    if n < 1 {
        return None;
    }
    let mut names = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let name = r.cstr()?;
        // table oid, column number, type oid, type size, type modifier, format code
        r.take(4 + 2 + 4 + 2 + 4 + 2)?;
        names.push(String::from_utf8_lossy(name).into_owned());
    }
    r.is_empty().then_some(names)
}

/// Parses a DataRow body of `width` text columns.
pub fn parse_data_row(body: &[u8], width: usize) -> Option<Vec<Option<String>>> {
    let mut r = Reader(body);
    if r.i16()? as usize != width {
        return None;
    }
    let mut row = Vec::with_capacity(width);
    for _ in 0..width {
        match r.i32()? {
            -1 => row.push(None),
            n if n >= 0 => row.push(Some(
                String::from_utf8_lossy(r.take(n as usize)?).into_owned(),
            )),
            _ => return None,
        }
    }
    r.is_empty().then_some(row)
}

impl Answer {
    /// Feeds one message; true at ReadyForQuery. Only single statements are sent, so one
    /// RowDescription at most, rows of its width, and a `SELECT n` tag that agrees with them.
    pub fn step(&mut self, msg: &Msg, keep: usize) -> Result<bool, String> {
        match msg.ty {
            b'T' => {
                if !self.columns.is_empty() || self.tag.is_some() {
                    return Err("unexpected RowDescription".into());
                }
                self.columns =
                    parse_row_description(&msg.body).ok_or("malformed RowDescription")?;
            }
            b'D' => {
                if self.columns.is_empty() || self.tag.is_some() {
                    return Err("DataRow outside a result".into());
                }
                let row =
                    parse_data_row(&msg.body, self.columns.len()).ok_or("malformed DataRow")?;
                self.row_count += 1;
                if self.rows.len() < keep {
                    self.rows.push(row);
                }
            }
            b'C' => {
                if self.tag.is_some() {
                    return Err("second CommandComplete".into());
                }
                let tag = Reader(&msg.body)
                    .cstr()
                    .map(|t| String::from_utf8_lossy(t).into_owned())
                    .ok_or("malformed CommandComplete")?;
                if !self.columns.is_empty() {
                    let n = tag
                        .strip_prefix("SELECT ")
                        .and_then(|n| n.parse::<usize>().ok());
                    if n != Some(self.row_count + self.skipped) {
                        return Err(format!(
                            "CommandComplete {tag:?} does not match {} rows",
                            self.row_count
                        ));
                    }
                }
                self.tag = Some(tag);
            }
            b'E' => self.error = Some(parse_error(&msg.body).ok_or("malformed ErrorResponse")?),
            // Notices, parameter changes and notifications are not ours to act on.
            b'N' | b'S' | b'A' => {}
            b'Z' => {
                let status = match msg.body.as_slice() {
                    [s @ (b'I' | b'T' | b'E')] => *s,
                    _ => return Err("malformed ReadyForQuery".into()),
                };
                if self.tag.is_none() && self.error.is_none() {
                    return Err("ReadyForQuery before a result".into());
                }
                self.status = status;
                return Ok(true);
            }
            other => return Err(format!("unexpected message type {other}")),
        }
        Ok(false)
    }
}

/// Checks a backend message like `check_message`, except that a DataRow over the cap is
/// accepted by its five header bytes alone, so its body can be skipped instead of failing the
/// whole connection.
pub(super) fn check_result_message(buf: &[u8], cap: usize) -> Check {
    match check_message(buf, usize::MAX, QUERY_TYPES) {
        Check::Invalid(why) => Check::Invalid(why),
        _ if buf.len() < 5 => Check::Incomplete,
        other => {
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if len < cap {
                other
            } else if buf[0] == b'D' {
                Check::Complete(5)
            } else {
                Check::Invalid(format!("message length {len} exceeds the {cap}-byte cap"))
            }
        }
    }
}

/// One session in one database.
pub(super) struct Pg {
    s: Session,
    pub(super) db: String,
    cap: usize,
}

impl Pg {
    /// Until when the next statements may run, in place of the budget's deadline (one count's
    /// slot; the server is told to stop before, by `statement_timeout`).
    pub(super) fn set_deadline(&mut self, until: Instant) {
        self.s.set_deadline(Some(until));
    }

    /// The next message; None when it was a DataRow over the cap, skipped.
    async fn message(&mut self) -> Result<Option<Msg>, Fail> {
        let cap = self.cap;
        let frame = self
            .s
            .read_frame(cap.saturating_add(1), |b| check_result_message(b, cap))
            .await?;
        let len = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
        if frame.len() == 5 && len > 4 {
            // An oversized row: read its body in chunks and drop it.
            let mut left = len - 4;
            while left > 0 {
                let chunk = self
                    .s
                    .read_frame(left.min(64 << 10), |b| Check::Complete(b.len().min(left)))
                    .await?;
                left -= chunk.len();
                self.bytes_left()?;
            }
            return Ok(None);
        }
        Ok(Some(Msg {
            ty: frame[0],
            body: frame[5..].to_vec(),
        }))
    }

    /// A read that spent the last of the byte budget abandons the connection mid-answer.
    fn bytes_left(&mut self) -> Result<(), Fail> {
        if self.s.budget().bytes_left() == 0 {
            self.s.mark_broken();
            return Err(Failure::Budget(Spent::Bytes));
        }
        Ok(())
    }

    /// Sends one allowlisted statement without waiting for its answer.
    async fn send(&mut self, template: &str, args: &[Arg<'_>]) -> Result<(), Fail> {
        send_query(&mut self.s, template, args).await
    }

    /// Reads the whole answer to the next statement, keeping `keep` rows. A server error is
    /// in the answer, not an `Err`: the connection is still in step.
    async fn answer(&mut self, keep: usize) -> Result<Answer, Fail> {
        let mut answer = Answer::default();
        loop {
            let msg = self.message().await?;
            self.bytes_left()?;
            let Some(msg) = msg else {
                answer.skipped += 1;
                continue;
            };
            match answer.step(&msg, keep) {
                Ok(true) => return Ok(answer),
                Ok(false) => {}
                Err(why) => {
                    self.s.mark_broken();
                    return Err(Fail::unexpected(why));
                }
            }
        }
    }

    /// One statement in its own read-only transaction:
    /// `BEGIN READ ONLY; SET LOCAL statement_timeout; SET LOCAL lock_timeout`, then the
    /// statement and `ROLLBACK`. Each group is sent in one go and then read (two round trips,
    /// not five); the statement is only sent once the BEGIN answer proved a transaction block
    /// is open. `LOCAL` settings end with the transaction, so nothing lingers on a pooled
    /// server connection.
    async fn read_only(
        &mut self,
        template: &str,
        args: &[Arg<'_>],
        keep: usize,
    ) -> Result<Answer, Fail> {
        let left = self
            .s
            .deadline()
            .saturating_duration_since(Instant::now())
            .as_millis()
            .max(1) as u64;
        self.read_only_within(template, args, keep, left).await
    }

    /// [`Pg::read_only`] with the server told to give up after `statement_ms` (SQLSTATE 57014)
    /// rather than at our deadline: a caller that keeps a fallback for a slow statement sets
    /// its deadline a little later, so the server's cancellation arrives first and the
    /// session stays usable.
    pub(super) async fn read_only_within(
        &mut self,
        template: &str,
        args: &[Arg<'_>],
        keep: usize,
        statement_ms: u64,
    ) -> Result<Answer, Fail> {
        self.send(BEGIN_READ_ONLY, &[]).await?;
        self.send(
            SET_STATEMENT_TIMEOUT,
            &[Arg::Int(i128::from(statement_ms.max(1)))],
        )
        .await?;
        self.send(SET_LOCK_TIMEOUT, &[Arg::Int(i128::from(LOCK_TIMEOUT_MS))])
            .await?;
        let begin = self.answer(0).await?;
        let settings = [self.answer(0).await?, self.answer(0).await?];
        let refused = begin
            .error
            .clone()
            .or_else(|| settings.iter().find_map(|a| a.error.clone()));
        if let Some(e) = refused {
            self.send(ROLLBACK, &[]).await?;
            self.answer(0).await?;
            return Err(Failure::Server(e));
        }
        // 'T' proves a transaction block is open, so READ ONLY governs what follows.
        if begin.status != b'T' || settings.iter().any(|a| a.status != b'T') {
            self.s.mark_broken();
            return Err(Fail::unexpected(format!(
                "BEGIN READ ONLY left status {:?}",
                begin.status as char
            )));
        }
        self.send(template, args).await?;
        self.send(ROLLBACK, &[]).await?;
        let mut result = self.answer(keep).await?;
        let rollback = self.answer(0).await?;
        if let Some(e) = rollback.error {
            self.s.mark_broken();
            return Err(Fail::unexpected(format!("ROLLBACK failed: {e}")));
        }
        match result.error.take() {
            Some(e) => Err(Failure::Server(e)),
            None => Ok(result),
        }
    }
}

/// A connection is usable after these; others leave it out of step.
pub(super) fn usable(e: &Fail) -> bool {
    e.keeps_session()
}

// ---------------------------------------------------------------------------------------------
// The catalogue

/// One relation as the catalogue describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    pub oid: String,
    pub database: String,
    pub schema: String,
    pub name: String,
    /// `r` table, `p` partitioned table, `v` view, `m` materialized view, `f` foreign table.
    pub kind: char,
    /// `reltuples`; None when never analysed.
    pub tuples: Option<u64>,
    pub pages: u64,
    pub heap_bytes: u64,
    pub total_bytes: u64,
    pub extension: bool,
    pub readable: bool,
    /// Sizes come from `relpages` (a lock stopped the size functions), not from the files.
    pub sizes_from_stats: bool,
}

impl Relation {
    pub fn qualified(&self) -> String {
        format!("{}.{}.{}", self.database, self.schema, self.name)
    }

    fn has_rows(&self) -> bool {
        matches!(self.kind, 'r' | 'p' | 'm')
    }

    fn sampled(&self) -> bool {
        matches!(self.kind, 'r' | 'p')
    }

    /// Small enough to count and shuffle whole. Statistics-based sizes only count when the
    /// table was analysed: a never-vacuumed table shows 0 pages whatever it holds.
    fn small(&self) -> bool {
        self.heap_bytes <= SMALL_TABLE_BYTES && (!self.sizes_from_stats || self.tuples.is_some())
    }
}

pub(super) fn cell(row: &[Option<String>], i: usize) -> Option<&str> {
    row.get(i).and_then(|v| v.as_deref())
}

/// Relations from a `LIST_RELATIONS` answer. Before PostgreSQL 14 an unanalysed table has
/// `reltuples = 0` and `relpages = 0` while its file is not empty: that is "unknown" too.
pub fn parse_relations(
    database: &str,
    answer: &Answer,
    sizes_from_stats: bool,
) -> Result<Vec<Relation>, String> {
    if answer.columns.len() != 10 {
        return Err(format!(
            "relation list has {} columns, not 10",
            answer.columns.len()
        ));
    }
    let int = |row: &[Option<String>], i: usize| {
        cell(row, i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    answer
        .rows
        .iter()
        .map(|row| {
            let text = |i: usize| {
                cell(row, i)
                    .map(str::to_string)
                    .ok_or(format!("NULL in column {i}"))
            };
            let kind = text(3)?.chars().next().ok_or("empty relkind")?;
            let reltuples = cell(row, 4)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(-1.0);
            let (pages, heap_bytes) = (int(row, 5), int(row, 6));
            let never_analysed =
                reltuples < 0.0 || (reltuples == 0.0 && pages == 0 && heap_bytes > 0);
            Ok(Relation {
                oid: text(0)?,
                database: database.to_string(),
                schema: text(1)?,
                name: text(2)?,
                kind,
                tuples: (!never_analysed && matches!(kind, 'r' | 'p' | 'm'))
                    .then(|| reltuples.round() as u64),
                pages,
                heap_bytes,
                total_bytes: int(row, 7),
                extension: cell(row, 8) == Some("t"),
                readable: cell(row, 9) == Some("t"),
                sizes_from_stats,
            })
        })
        .collect()
}

/// `oid -> [(column, type)]` from a `LIST_COLUMNS` answer.
pub fn parse_columns(answer: &Answer) -> HashMap<String, Vec<(String, String)>> {
    let mut out: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for row in &answer.rows {
        if let (Some(oid), Some(name), Some(ty)) = (cell(row, 0), cell(row, 1), cell(row, 2)) {
            out.entry(oid.to_string())
                .or_default()
                .push((name.to_string(), ty.to_string()));
        }
    }
    out
}

/// Databases from a `LIST_DATABASES_FOR_INVENTORY` answer: (name, may connect).
pub fn parse_databases(answer: &Answer) -> Vec<(String, bool)> {
    answer
        .rows
        .iter()
        .filter_map(|row| Some((cell(row, 0)?.to_string(), cell(row, 1) == Some("t"))))
        .collect()
}

/// Position of the column a flattened path comes from (`payload.device.mac` → `payload`); the
/// longest matching name wins, since column names may hold `.` themselves.
fn column_position(path: &str, columns: &[(String, String)]) -> usize {
    columns
        .iter()
        .enumerate()
        .filter(|(_, (c, _))| {
            path.strip_prefix(c.as_str()).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with('.') || rest.starts_with("[]")
            })
        })
        .max_by_key(|(_, (c, _))| c.len())
        .map_or(usize::MAX, |(i, _)| i)
}

/// Flattens sampled rows (one JSON object each, keys in JSONB order) with the pairs put back
/// in column order, so fields are reported as the table declares them. Rows that do not parse
/// are counted.
pub fn flatten_sample(
    answer: &Answer,
    columns: &[(String, String)],
    value_cap: usize,
) -> (Vec<Record>, usize) {
    let mut bad = 0;
    let mut out = Vec::with_capacity(answer.rows.len());
    for row in &answer.rows {
        match cell(row, 0).map(serde_json::from_str::<serde_json::Value>) {
            Some(Ok(v)) => {
                let mut rec = flatten_json(&v, value_cap);
                rec.sort_by_cached_key(|(path, _)| column_position(path, columns));
                out.push(rec);
            }
            // A row of only NULL-free zero columns aggregates to NULL: nothing to flatten.
            None => out.push(Vec::new()),
            Some(Err(_)) => bad += 1,
        }
    }
    (out, bad)
}

/// The TABLESAMPLE percentage for `want` rows: enough rows (`OVERSAMPLE × want`), and at
/// least `want` blocks when the page count is known. SYSTEM sampling takes whole blocks, so
/// 600 rows from six blocks of a big table would be six clumps of neighbours; with about one
/// block per row wanted, `ORDER BY random() LIMIT want` keeps rows from all over the table.
/// The extra rows cost little: the sort is a top-N heapsort (memory bounded by the LIMIT) and
/// the JSON of a row is only built for the rows kept.
pub fn sample_percent(want: usize, rows: Option<u64>, pages: u64) -> f64 {
    // Without statistics assume ten rows a page: more pages read rather than too few rows.
    let rows = rows
        .filter(|&r| r > 0)
        .unwrap_or(pages.max(1).saturating_mul(10)) as f64;
    let by_rows = 100.0 * OVERSAMPLE * want as f64 / rows;
    let by_blocks = if pages > 0 {
        100.0 * want as f64 / pages as f64
    } else {
        0.0
    };
    by_rows.max(by_blocks).clamp(0.0001, 100.0)
}

// ---------------------------------------------------------------------------------------------
// The run

fn names(list: &[String]) -> String {
    let mut s = list
        .iter()
        .take(NOTE_NAMES)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if list.len() > NOTE_NAMES {
        s.push_str(&format!(", … ({} in all)", list.len()));
    }
    s
}

/// Logins, budgets and notes of one run over a service (the inventory's, or the distinct
/// counts' in [`super::subjects`]).
pub(super) struct Run<'a> {
    pub(super) ctx: &'a ProbeCtx,
    pub(super) opts: &'a InventoryOptions,
    pub(super) cred: Option<Credential>,
    /// SSLRequest before the startup; None until a login settled it.
    pub(super) ssl: Option<bool>,
    /// Time and bytes of the whole run, shared by its sessions.
    pub(super) budget: Arc<Budget>,
    pub(super) notes: Vec<String>,
}

impl<'a> Run<'a> {
    pub(super) fn time_left(&self) -> bool {
        self.budget.spent() != Some(Spent::Time)
    }

    pub(super) fn bytes_left(&self) -> bool {
        self.budget.bytes_left() > 0
    }

    /// Logs in to `db` as the probe did, with the credential that worked, if any.
    pub(super) async fn connect(&mut self, db: &str) -> Result<Pg, String> {
        let modes: Vec<bool> = match (self.ssl, self.ctx.tls) {
            (Some(ssl), _) => vec![ssl],
            // Direct TLS already; an SSLRequest inside it makes no sense.
            (None, true) => vec![false],
            (None, false) => vec![false, true],
        };
        let mut last = String::from("no connection attempted");
        for ssl in modes {
            let attempt = async {
                let conn = fresh(self.ctx, ssl).await.map_err(|e| (e, false))?;
                match login(self.ctx, conn, db, self.cred.as_ref()).await {
                    Ok(Login::Ready(ready)) => Ok(ready),
                    Ok(Login::Challenge(c)) => Err((
                        format!("server asked for a password ({})", c.method()),
                        false,
                    )),
                    Ok(Login::Refused { err, .. }) => {
                        // `hostssl`-only servers refuse plaintext with 28000; SSL may pass.
                        let retry = err.code == "28000" && err.message.contains("pg_hba.conf");
                        Err((format!("login refused: {err}"), retry))
                    }
                    Err(LoginError::NotMe(seen)) => {
                        Err((format!("answer not understood: {seen:?}"), false))
                    }
                    Err(LoginError::Broken(why)) => Err((why, false)),
                }
            };
            match tokio::time::timeout_at(self.budget.deadline(), attempt).await {
                Err(_) => return Err("time budget spent while logging in".into()),
                Ok(Ok(ready)) => {
                    self.ssl = Some(ssl);
                    let mut s = Session::with_conn(self.ctx, *ready.conn, self.budget.clone());
                    // A long count is not a dead peer: reads wait until the deadline.
                    s.set_wait(Wait::Deadline);
                    return Ok(Pg {
                        s,
                        db: db.to_string(),
                        cap: self.ctx.opts.frame_cap,
                    });
                }
                Ok(Err((why, retry))) => {
                    last = why;
                    if !retry {
                        break;
                    }
                }
            }
        }
        Err(last)
    }

    /// Says goodbye (within the budget's time) and closes.
    pub(super) async fn close(&mut self, mut pg: Pg) {
        if pg.s.spent() != Some(Spent::Time) {
            let deadline = self.budget.deadline();
            let _ = tokio::time::timeout_at(deadline, pg.s.goodbye(TERMINATE)).await;
        }
    }

    /// Closes a connection that is out of step, without a goodbye.
    pub(super) fn drop_conn(&mut self, mut pg: Pg) {
        pg.s.detach();
    }

    /// The first session: `postgres`, else `template1` (which every cluster has).
    async fn first_session(&mut self) -> Result<Pg, String> {
        let mut errors = Vec::new();
        for db in DATABASES {
            match self.connect(db).await {
                Ok(pg) => return Ok(pg),
                Err(e) => errors.push(format!("{db}: {e}")),
            }
            if !self.time_left() {
                break;
            }
        }
        Err(errors.join("; "))
    }

    /// Lists the databases, then each one's relations and columns.
    async fn catalogue(&mut self) -> (Vec<Relation>, HashMap<String, Vec<(String, String)>>) {
        let mut rels = Vec::new();
        let mut columns = HashMap::new();
        let mut first = match self.first_session().await {
            Ok(pg) => Some(pg),
            Err(e) => {
                self.notes
                    .push(format!("could not log in again for the inventory: {e}"));
                return (rels, columns);
            }
        };
        let pg = first.as_mut().expect("just set");
        let listing = pg
            .read_only(LIST_DATABASES_FOR_INVENTORY, &[], MAX_DATABASES)
            .await;
        let login_db = pg.db.clone();
        if listing.as_ref().is_err_and(|e| !usable(e)) {
            let pg = first.take().expect("just set");
            self.drop_conn(pg);
        }
        let dbs = match listing {
            Ok(a) => {
                if a.row_count > MAX_DATABASES {
                    self.notes.push(format!(
                        "{} databases; the first {MAX_DATABASES} by name are inventoried",
                        a.row_count
                    ));
                }
                parse_databases(&a)
            }
            Err(e) => {
                self.notes.push(format!(
                    "could not list databases ({e}); only {login_db} is inventoried"
                ));
                vec![(login_db, true)]
            }
        };
        let mut listed: Vec<String> = Vec::new();
        let mut refused: Vec<String> = Vec::new();
        let mut total = 0usize;
        for (i, (db, allowed)) in dbs.iter().enumerate() {
            if !self.time_left() || !self.bytes_left() {
                let why = if self.time_left() { "byte" } else { "time" };
                self.notes.push(format!(
                    "{why} budget spent after listing {i} of {} databases; not listed: {}",
                    dbs.len(),
                    names(&dbs[i..].iter().map(|d| d.0.clone()).collect::<Vec<_>>())
                ));
                break;
            }
            if !allowed {
                refused.push(db.clone());
                continue;
            }
            let mut pg = match first.take() {
                Some(pg) if &pg.db == db => pg,
                other => {
                    first = other;
                    match self.connect(db).await {
                        Ok(pg) => pg,
                        Err(e) => {
                            self.notes.push(format!("database {db}: {e}"));
                            continue;
                        }
                    }
                }
            };
            let room = self.opts.max_containers.saturating_sub(rels.len());
            let result = async {
                // Rows past `room` are counted for the note, not kept.
                let (r, from_stats) = match pg.read_only(LIST_RELATIONS, &[], room).await {
                    // 55P03 lock_not_available: a relation is locked by DDL.
                    Err(Fail::Server(e)) if e.code == "55P03" => (
                        pg.read_only(LIST_RELATIONS_UNLOCKED, &[], room).await?,
                        true,
                    ),
                    other => (other?, false),
                };
                let c = pg.read_only(LIST_COLUMNS, &[], MAX_COLUMN_ROWS).await?;
                Ok::<_, Fail>((r, c, from_stats))
            }
            .await;
            match result {
                Ok((r, c, from_stats)) => match parse_relations(db, &r, from_stats) {
                    Ok(found) => {
                        if from_stats {
                            self.notes.push(format!(
                                "database {db}: a relation is locked, so sizes are from statistics \
                                 (relpages), not from the files"
                            ));
                        }
                        total += r.row_count;
                        listed.push(format!("{db} ({} relations)", r.row_count));
                        let cols = parse_columns(&c);
                        for rel in found {
                            if let Some(cs) = cols.get(&rel.oid) {
                                columns.insert(rel.qualified(), cs.clone());
                            }
                            rels.push(rel);
                        }
                        if c.row_count > c.rows.len() {
                            self.notes.push(format!(
                                "database {db}: column types of the first {MAX_COLUMN_ROWS} columns only"
                            ));
                        }
                        self.close(pg).await;
                    }
                    Err(e) => {
                        self.notes
                            .push(format!("database {db}: relation list not understood: {e}"));
                        self.close(pg).await;
                    }
                },
                Err(e) => {
                    self.notes
                        .push(format!("database {db}: catalogue not read: {e}"));
                    if usable(&e) {
                        self.close(pg).await;
                    } else {
                        self.drop_conn(pg);
                    }
                }
            }
        }
        if let Some(pg) = first.take() {
            self.close(pg).await;
        }
        if !listed.is_empty() {
            self.notes.push(format!(
                "databases: {}; system schemas (pg_catalog, information_schema, pg_toast) are not \
                 listed: the catalogue, the same in every database",
                listed.join(", ")
            ));
        }
        if !refused.is_empty() {
            self.notes.push(format!(
                "no CONNECT privilege on databases: {}",
                names(&refused)
            ));
        }
        if total > rels.len() {
            self.notes.push(format!(
                "listed {} of {total} relations (max_containers {})",
                rels.len(),
                self.opts.max_containers
            ));
        }
        (rels, columns)
    }

    /// Counts and samples one relation on `pg`; Err when the connection is out of step.
    async fn census(&mut self, pg: &mut Pg, rel: &Relation, h: &mut Holding) -> Result<(), Fail> {
        let name = rel.qualified();
        let table = [Arg::Ident(&rel.schema), Arg::Ident(&rel.name)];
        if rel.has_rows() && (self.opts.full || rel.small()) {
            match pg.read_only(COUNT_ROWS, &table, 1).await {
                Ok(a) => {
                    if let Some(n) = a
                        .rows
                        .first()
                        .and_then(|r| cell(r, 0))
                        .and_then(|v| v.parse().ok())
                    {
                        h.records = Some(n);
                        h.records_exact = true;
                    }
                }
                Err(Fail::Server(e)) => self.notes.push(format!("{name}: count failed: {e}")),
                Err(e) => return Err(e),
            }
        }
        let want = self.opts.sample;
        if want == 0 || !rel.sampled() || (h.records_exact && h.records == Some(0)) {
            return Ok(());
        }
        // `left()` takes an int4.
        let chars = |n: usize| Arg::Int(n.min(i32::MAX as usize) as i128);
        let keep = [
            chars(JSON_TEXT_CHARS.max(self.opts.value_cap)),
            chars(self.opts.value_cap),
        ];
        let n = Arg::Int(want as i128);
        let mut plan: Vec<(&str, Vec<Arg>)> = Vec::new();
        if rel.small() {
            plan.push((SAMPLE_RANDOM, [&keep[..], &table[..], &[n][..]].concat()));
        } else {
            let pct = Arg::Percent(sample_percent(
                want,
                h.records,
                rel.pages.max(rel.heap_bytes / 8192),
            ));
            plan.push((
                SAMPLE_TABLESAMPLE,
                [&keep[..], &table[..], &[pct, n][..]].concat(),
            ));
        }
        // Fewer rows than asked (stale statistics, a bloated or just-emptied table): take the
        // first rows found instead, unless the table is known to hold no more.
        plan.push((SAMPLE_FIRST, [&keep[..], &table[..], &[n][..]].concat()));
        let mut best: Option<Answer> = None;
        for (i, (template, args)) in plan.iter().enumerate() {
            if i > 0 {
                let got = best.as_ref().map_or(0, |a| a.row_count);
                let enough =
                    got >= want || (h.records_exact && h.records.is_some_and(|r| got as u64 >= r));
                if enough || rel.small() {
                    break;
                }
            }
            match pg.read_only(template, args, want).await {
                Ok(a) => {
                    if best.as_ref().is_none_or(|b| a.row_count > b.row_count) {
                        best = Some(a);
                    }
                }
                Err(Fail::Server(e)) => {
                    // A lock or the statement timeout would stop the next attempt just the same.
                    let hopeless = matches!(e.code.as_str(), "55P03" | "57014");
                    self.notes.push(format!("{name}: sample failed: {e}"));
                    if hopeless {
                        break;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(a) = best {
            let (sample, bad) = flatten_sample(&a, &h.schema, self.opts.value_cap);
            if bad > 0 || a.skipped > 0 {
                self.notes.push(format!(
                    "{name}: {bad} sampled rows not parsed, {} over the frame cap skipped",
                    a.skipped
                ));
            }
            h.sample = sample;
        }
        Ok(())
    }

    /// Counts and samples, database by database, in listing order.
    async fn sample_all(&mut self, rels: &[Relation], holdings: &mut [Holding]) {
        let work = |r: &Relation| {
            r.readable
                && r.has_rows()
                && (self.opts.full || r.small() || (r.sampled() && self.opts.sample > 0))
        };
        let todo: Vec<usize> = (0..rels.len()).filter(|&i| work(&rels[i])).collect();
        let unreadable: Vec<String> = rels
            .iter()
            .filter(|r| !r.readable)
            .map(Relation::qualified)
            .collect();
        if !unreadable.is_empty() {
            self.notes.push(format!(
                "no SELECT privilege (listed, not read): {}",
                names(&unreadable)
            ));
        }
        let foreign: Vec<String> = rels
            .iter()
            .filter(|r| r.kind == 'f')
            .map(Relation::qualified)
            .collect();
        if !foreign.is_empty() {
            self.notes.push(format!(
                "foreign tables listed, not read (that would contact another server): {}",
                names(&foreign)
            ));
        }
        let unknown: Vec<String> = rels
            .iter()
            .filter(|r| r.has_rows() && r.tuples.is_none() && !(self.opts.full || r.small()))
            .map(Relation::qualified)
            .collect();
        if !unknown.is_empty() {
            self.notes.push(format!(
                "never analysed, so no row estimate (--full counts them): {}",
                names(&unknown)
            ));
        }
        let mut pg: Option<Pg> = None;
        let mut done = 0;
        for (k, &i) in todo.iter().enumerate() {
            let rel = &rels[i];
            if !self.time_left() || !self.bytes_left() {
                let why = if self.time_left() { "byte" } else { "time" };
                let rest: Vec<String> = todo[k..].iter().map(|&j| rels[j].qualified()).collect();
                self.notes.push(format!(
                    "{why} budget spent after {done} of {} tables were counted/sampled; not read: {}",
                    todo.len(),
                    names(&rest)
                ));
                break;
            }
            if pg.as_ref().is_some_and(|p| p.db != rel.database) {
                let old = pg.take().expect("checked");
                self.close(old).await;
            }
            let mut session = match pg.take() {
                Some(p) => p,
                None => match self.connect(&rel.database).await {
                    Ok(p) => p,
                    Err(e) => {
                        self.notes
                            .push(format!("{}: not read: {e}", rel.qualified()));
                        continue;
                    }
                },
            };
            match self.census(&mut session, rel, &mut holdings[i]).await {
                Ok(()) => {
                    done += 1;
                    pg = Some(session);
                }
                Err(e) => {
                    self.notes.push(format!("{}: {e}", rel.qualified()));
                    // Out of step: the next table gets a fresh connection.
                    self.drop_conn(session);
                }
            }
        }
        if let Some(p) = pg {
            self.close(p).await;
        }
    }
}

fn holding(rel: &Relation, schema: Vec<(String, String)>) -> Holding {
    Holding {
        name: rel.qualified(),
        kind: "table",
        records: rel.tuples,
        records_exact: false,
        bytes: rel.has_rows().then_some(rel.total_bytes),
        system: rel.extension,
        schema,
        sample: Vec::new(),
        sample_keys: Vec::new(),
    }
}

/// The registered [`crate::driver::InventoryFn`].
pub async fn inventory(ctx: &ProbeCtx, finding: &Finding, opts: &InventoryOptions) -> Inventory {
    // Stop a little before the engine's own timeout so the partial answer is returned,
    // not dropped with the future.
    let mut run = Run {
        ctx,
        opts,
        cred: finding.credential,
        ssl: None,
        budget: Arc::new(Budget::for_inventory(opts)),
        notes: Vec::new(),
    };
    let (rels, mut columns) = run.catalogue().await;
    let mut holdings: Vec<Holding> = rels
        .iter()
        .map(|r| holding(r, columns.remove(&r.qualified()).unwrap_or_default()))
        .collect();
    run.sample_all(&rels, &mut holdings).await;
    Inventory {
        holdings,
        notes: run.notes,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use base64::Engine;

    use crate::testkit::{fixture, frames, FakeServer, Message, Reply};

    use super::super::wire::{frontend, messages_for_tests, render, ALLOWED_QUERIES};
    use super::*;
    use crate::driver::ProbeOptions;
    use crate::model::Access;

    /// A whole inventory of a trust-auth PostgreSQL 15.18 seeded with the lab's main dataset
    /// (10 000 users), recorded with `record_inventory.py` through `leakscope scan --sample 5`:
    /// one JSON line per answer, keyed by database and statement.
    const SESSION: &str = include_str!("../../../fixtures/postgresql/inventory_session.jsonl");
    /// `SELECT count(*)` on a table without SELECT privilege, inside a transaction: 42501.
    const DENIED: &[u8] = fixture!("postgresql/inv_denied.bin");

    /// The lab manifest's tables of that dataset: name, rows, columns.
    const TRUTH: &[(&str, u64, &[&str])] = &[
        (
            "smarthome.crm_it.clienti",
            500,
            &[
                "cliente_id",
                "nome",
                "cognome",
                "email",
                "telefono",
                "codice_fiscale",
                "indirizzo",
                "data_nascita",
                "iban",
                "creato_il",
            ],
        ),
        (
            "smarthome.public.alexa_links",
            3365,
            &[
                "user_id",
                "access_token",
                "refresh_token",
                "linked_at",
                "scope",
            ],
        ),
        (
            "smarthome.public.devices",
            15890,
            &[
                "device_id",
                "user_id",
                "model",
                "mac",
                "firmware_version",
                "nickname",
                "added_at",
            ],
        ),
        (
            "smarthome.public.firmware_builds",
            200,
            &[
                "build_sha",
                "build_number",
                "channel",
                "artifact_size_bytes",
                "released_at",
            ],
        ),
        (
            "smarthome.public.orders",
            10933,
            &[
                "order_id",
                "user_id",
                "sku",
                "quantity",
                "unit_price",
                "shipment_weight_kg",
                "request_id",
                "status",
                "created_at",
            ],
        ),
        (
            "smarthome.public.scale_measurements",
            2800,
            &[
                "user_id",
                "measured_at",
                "height_cm",
                "weight_kg",
                "bone_density",
                "body_fat_pct",
                "protein_g",
            ],
        ),
        (
            "smarthome.public.telemetry_daily",
            2920,
            &[
                "day",
                "region",
                "ssid_count",
                "active_devices",
                "avg_rssi",
                "motion_events",
            ],
        ),
        (
            "smarthome.public.users",
            10000,
            &[
                "user_id",
                "username",
                "email",
                "full_name",
                "phone",
                "country",
                "created_at",
                "last_login_ip",
                "wifi_ssid",
                "app_platform",
                "app_api_token",
                "password_hash",
            ],
        ),
    ];

    /// (database, statement with the timeout value blanked) → recorded answer; None = startup.
    type Recorded = HashMap<(String, Option<String>), Vec<u8>>;

    fn normalise(sql: &str) -> String {
        match sql.strip_prefix("SET LOCAL statement_timeout = ") {
            Some(_) => "SET LOCAL statement_timeout = N".into(),
            None => sql.to_string(),
        }
    }

    fn recorded() -> Recorded {
        SESSION
            .lines()
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                let db = v["database"].as_str().unwrap().to_string();
                let q = v["query"].as_str().map(normalise);
                let answer = base64::engine::general_purpose::STANDARD
                    .decode(v["answer"].as_str().unwrap())
                    .unwrap();
                ((db, q), answer)
            })
            .collect()
    }

    /// The recorded answer to one statement, split into messages.
    fn answer_to(db: &str, sql: &str, keep: usize) -> Answer {
        let rec = recorded();
        let bytes = &rec[&(db.to_string(), Some(normalise(sql)))];
        let mut a = Answer::default();
        let msgs = messages_for_tests(bytes, QUERY_TYPES);
        let done: Vec<bool> = msgs.iter().map(|m| a.step(m, keep).unwrap()).collect();
        assert_eq!(done.last(), Some(&true));
        a
    }

    fn recorded_sql(prefix: &str) -> Vec<(String, String)> {
        recorded()
            .into_keys()
            .filter_map(|(db, q)| q.filter(|q| q.starts_with(prefix)).map(|q| (db, q)))
            .collect()
    }

    /// Whether `sql` is an instance of `template`: literal text equal, `$IDENT` a quoted
    /// identifier, `$INT` digits, `$PCT` digits with a fraction, `$TEXT` a string literal.
    pub(in crate::protocols::postgresql) fn instance_of(mut sql: &str, template: &str) -> bool {
        let mut rest = template;
        loop {
            let Some(i) = rest.find('$') else {
                return sql == rest;
            };
            let Some(s) = sql.strip_prefix(&rest[..i]) else {
                return false;
            };
            rest = &rest[i..];
            sql = s;
            if let Some(r) = rest.strip_prefix("$IDENT") {
                rest = r;
                let Some(body) = sql.strip_prefix('"') else {
                    return false;
                };
                let mut end = None;
                let b = body.as_bytes();
                let mut k = 0;
                while k < b.len() {
                    if b[k] == b'"' {
                        if b.get(k + 1) == Some(&b'"') {
                            k += 2;
                            continue;
                        }
                        end = Some(k);
                        break;
                    }
                    k += 1;
                }
                let Some(end) = end else { return false };
                sql = &body[end + 1..];
            } else if let Some(r) = rest.strip_prefix("$TEXT") {
                rest = r;
                // `'…'` with `''` inside, or `E'…'` where a backslash also takes the next byte.
                let (escapes, body) = match sql.strip_prefix("E'") {
                    Some(b) => (true, b),
                    None => match sql.strip_prefix('\'') {
                        Some(b) => (false, b),
                        None => return false,
                    },
                };
                let b = body.as_bytes();
                let mut k = 0;
                let end = loop {
                    match b.get(k) {
                        None => return false,
                        Some(b'\'') if b.get(k + 1) == Some(&b'\'') => k += 2,
                        Some(b'\'') => break k,
                        Some(b'\\') if escapes => k += 2,
                        Some(_) => k += 1,
                    }
                };
                sql = &body[end + 1..];
            } else {
                let (r, frac) = match (rest.strip_prefix("$INT"), rest.strip_prefix("$PCT")) {
                    (Some(r), _) => (r, false),
                    (_, Some(r)) => (r, true),
                    _ => return false,
                };
                rest = r;
                let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
                let mut n = digits(sql);
                if n == 0 {
                    return false;
                }
                if frac {
                    if sql.as_bytes().get(n) != Some(&b'.') {
                        return false;
                    }
                    let m = digits(&sql[n + 1..]);
                    if m == 0 {
                        return false;
                    }
                    n += 1 + m;
                }
                sql = &sql[n..];
            }
        }
    }

    // -- The allowlist ------------------------------------------------------------------------

    /// Every statement constant this module sends, named one by one.
    const USED: &[&str] = &[
        BEGIN_READ_ONLY,
        SET_STATEMENT_TIMEOUT,
        SET_LOCK_TIMEOUT,
        ROLLBACK,
        LIST_DATABASES_FOR_INVENTORY,
        LIST_RELATIONS,
        LIST_RELATIONS_UNLOCKED,
        LIST_COLUMNS,
        COUNT_ROWS,
        SAMPLE_TABLESAMPLE,
        SAMPLE_RANDOM,
        SAMPLE_FIRST,
    ];

    /// Arguments of the right kinds for a template's placeholders.
    pub(in crate::protocols::postgresql) fn args_for(template: &str) -> Vec<Arg<'static>> {
        let mut out = Vec::new();
        let mut rest = template;
        while let Some(i) = rest.find('$') {
            rest = &rest[i..];
            let (arg, len) = if rest.starts_with("$IDENT") {
                (Arg::Ident("na\"me"), 6)
            } else if rest.starts_with("$TEXT") {
                (Arg::Text("it's a \\ name"), 5)
            } else if rest.starts_with("$INT") {
                (Arg::Int(42), 4)
            } else {
                (Arg::Percent(1.5), 4)
            };
            out.push(arg);
            rest = &rest[len..];
        }
        out
    }

    /// SQL words that write, lock, change settings beyond the transaction, or run code.
    pub(in crate::protocols::postgresql) const WRITE_WORDS: &[&str] = &[
        "INSERT",
        "UPDATE",
        "DELETE",
        "MERGE",
        "UPSERT",
        "CREATE",
        "DROP",
        "ALTER",
        "TRUNCATE",
        "GRANT",
        "REVOKE",
        "COPY",
        "VACUUM",
        "ANALYZE",
        "CLUSTER",
        "REINDEX",
        "LOCK",
        "COMMENT",
        "SECURITY",
        "CALL",
        "DO",
        "NOTIFY",
        "LISTEN",
        "PREPARE",
        "EXECUTE",
        "RESET",
        "DISCARD",
        "REFRESH",
        "IMPORT",
        "LOAD",
        "CHECKPOINT",
        "COMMIT",
        "SESSION",
        "INTO",
        "FOR",
        "NEXTVAL",
        "SETVAL",
        "PG_TERMINATE_BACKEND",
        "PG_CANCEL_BACKEND",
        "DBLINK",
        "LO_IMPORT",
        "LO_EXPORT",
    ];

    #[test]
    fn every_statement_is_allowlisted_read_only_and_renders() {
        for &t in USED {
            assert!(ALLOWED_QUERIES.contains(&t), "{t}");
        }
        for &t in ALLOWED_QUERIES {
            let sql = render(t, &args_for(t)).unwrap();
            assert!(instance_of(&sql, t), "{sql}");
            // One statement: no `;` at all, so nothing can follow it.
            assert!(!t.contains(';'), "{t}");
            let upper = t.to_ascii_uppercase();
            assert!(
                [
                    "SELECT ",
                    "WITH RECURSIVE ",
                    "BEGIN READ ONLY",
                    "SET LOCAL ",
                    "ROLLBACK"
                ]
                .iter()
                .any(|p| upper.starts_with(p)),
                "{t}"
            );
            let words: Vec<&str> = upper
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .collect();
            for w in WRITE_WORDS {
                assert!(!words.contains(w), "{w} in {t}");
            }
        }
    }

    #[test]
    fn identifiers_are_quoted_and_never_sql() {
        let quote_ident = |n| crate::driver::sql::Dialect::PostgreSql.quote_ident(n);
        assert_eq!(quote_ident("users").unwrap(), "\"users\"");
        assert_eq!(quote_ident("We\"ird").unwrap(), "\"We\"\"ird\"");
        assert_eq!(quote_ident(""), None);
        assert_eq!(quote_ident("a\0b"), None);
        let evil = "x\"; DROP TABLE users; --";
        let sql = render(COUNT_ROWS, &[Arg::Ident("public"), Arg::Ident(evil)]).unwrap();
        assert_eq!(
            sql,
            "SELECT count(*) FROM \"public\".\"x\"\"; DROP TABLE users; --\""
        );
        assert!(instance_of(&sql, COUNT_ROWS));
        // A placeholder inside a value is not expanded again.
        let sql = render(COUNT_ROWS, &[Arg::Ident("$INT"), Arg::Ident("$IDENT")]).unwrap();
        assert_eq!(sql, "SELECT count(*) FROM \"$INT\".\"$IDENT\"");
    }

    #[test]
    fn rendering_refuses_anything_else() {
        for (t, args) in [
            ("DROP DATABASE postgres", vec![]),
            ("SELECT count(*) FROM $IDENT.$IDENT", vec![Arg::Ident("a")]),
            (COUNT_ROWS, vec![Arg::Ident("a")]),
            (
                COUNT_ROWS,
                vec![Arg::Ident("a"), Arg::Ident("b"), Arg::Ident("c")],
            ),
            (COUNT_ROWS, vec![Arg::Ident("a"), Arg::Int(1)]),
            (COUNT_ROWS, vec![Arg::Ident("a"), Arg::Ident("")]),
            (SET_STATEMENT_TIMEOUT, vec![Arg::Ident("1; DROP TABLE x")]),
            (SET_STATEMENT_TIMEOUT, vec![]),
            (ROLLBACK, vec![Arg::Int(1)]),
        ] {
            assert!(render(t, &args).is_err(), "{t} {args:?}");
        }
        let sample = |p: f64| {
            let mut args = args_for(SAMPLE_TABLESAMPLE);
            args[4] = Arg::Percent(p);
            render(SAMPLE_TABLESAMPLE, &args)
        };
        for bad in [0.0, -1.0, 100.5, f64::NAN, f64::INFINITY] {
            assert!(sample(bad).is_err(), "{bad}");
        }
        assert!(sample(0.0001)
            .unwrap()
            .contains("TABLESAMPLE SYSTEM (0.000100)"));
        assert!(sample(100.0)
            .unwrap()
            .contains("TABLESAMPLE SYSTEM (100.000000)"));
    }

    // -- Parsers on recorded answers -------------------------------------------------------

    #[test]
    fn real_catalogue_answers() {
        let dbs = parse_databases(&answer_to("postgres", LIST_DATABASES_FOR_INVENTORY, 100));
        assert_eq!(
            dbs,
            vec![
                ("postgres".to_string(), true),
                ("smarthome".to_string(), true)
            ]
        );

        let rels = parse_relations(
            "smarthome",
            &answer_to("smarthome", LIST_RELATIONS, 100),
            false,
        )
        .unwrap();
        let names: Vec<String> = rels.iter().map(Relation::qualified).collect();
        assert_eq!(names, TRUTH.iter().map(|t| t.0).collect::<Vec<_>>());
        for (rel, (_, rows, _)) in rels.iter().zip(TRUTH) {
            // After the lab's ANALYZE, reltuples of tables this small are the exact counts.
            assert_eq!(rel.tuples, Some(*rows), "{}", rel.qualified());
            assert_eq!(rel.kind, 'r');
            assert!(rel.readable && !rel.extension && rel.small());
            assert!(rel.total_bytes > rel.heap_bytes && rel.heap_bytes > 0);
        }

        let cols = parse_columns(&answer_to("smarthome", LIST_COLUMNS, 1000));
        for (rel, (_, _, want)) in rels.iter().zip(TRUTH) {
            let got: Vec<&str> = cols[&rel.oid].iter().map(|(c, _)| c.as_str()).collect();
            assert_eq!(&got, want);
        }
        let users = &cols[&rels[7].oid];
        assert_eq!(users[0], ("user_id".to_string(), "uuid".to_string()));
        assert_eq!(users[7], ("last_login_ip".to_string(), "inet".to_string()));
        let scale = &cols[&rels[5].oid];
        assert_eq!(
            scale[3],
            ("weight_kg".to_string(), "numeric(4,1)".to_string())
        );

        // The database without tables: an empty, well-formed answer.
        let a = answer_to("postgres", LIST_RELATIONS, 100);
        assert_eq!((a.columns.len(), a.row_count), (10, 0));
    }

    #[test]
    fn real_count_sample_and_error_answers() {
        let a = answer_to("smarthome", "SELECT count(*) FROM \"public\".\"users\"", 1);
        assert_eq!(a.rows, vec![vec![Some("10000".to_string())]]);
        assert_eq!(a.tag.as_deref(), Some("SELECT 1"));

        let (_, sample_sql) = recorded_sql("SELECT (SELECT jsonb_object_agg")
            .into_iter()
            .find(|(_, q)| q.contains("\"public\".\"users\""))
            .unwrap();
        assert!(instance_of(&sample_sql, SAMPLE_RANDOM), "{sample_sql}");
        let a = answer_to("smarthome", &sample_sql, 5);
        let columns: Vec<(String, String)> = TRUTH[7]
            .2
            .iter()
            .map(|c| (c.to_string(), String::new()))
            .collect();
        let (records, bad) = flatten_sample(&a, &columns, 256);
        assert_eq!((records.len(), bad), (5, 0));
        for rec in &records {
            // Back in column order, every column present (the dataset has no NULLs).
            let paths: Vec<&str> = rec.iter().map(|(p, _)| p.as_str()).collect();
            assert_eq!(&paths, TRUTH[7].2);
            let email = &rec.iter().find(|(p, _)| p == "email").unwrap().1;
            assert!(email.contains('@'), "{email}");
        }

        for sql in [
            BEGIN_READ_ONLY,
            SET_LOCK_TIMEOUT.replace("$INT", "2000").as_str(),
            ROLLBACK,
        ] {
            let a = answer_to("smarthome", sql, 0);
            assert!(a.columns.is_empty() && a.error.is_none());
            let want = if sql == ROLLBACK { b'I' } else { b'T' };
            assert_eq!(a.status, want, "{sql}");
        }

        let mut a = Answer::default();
        for m in messages_for_tests(DENIED, QUERY_TYPES) {
            a.step(&m, 1).unwrap();
        }
        let e = a.error.unwrap();
        assert_eq!((e.code.as_str(), a.status), ("42501", b'E'));
        assert_eq!(e.message, "permission denied for table hidden");
    }

    #[test]
    fn malformed_answers_are_refused() {
        let msg = |ty: u8, body: &[u8]| Msg {
            ty,
            body: body.to_vec(),
        };
        let t = msg(
            b'T',
            b"\0\x01a\0\0\0\0\0\0\0\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0",
        );
        let d = msg(b'D', b"\0\x01\0\0\0\x01x");
        let z = msg(b'Z', b"I");
        let cases: Vec<Vec<Msg>> = vec![
            vec![z.clone()],
            vec![d.clone()],
            vec![t.clone(), t.clone()],
            vec![t.clone(), d.clone(), msg(b'C', b"SELECT 2\0")],
            vec![t.clone(), msg(b'D', b"\0\x02\0\0\0\x01x\0\0\0\x01y")],
            vec![t.clone(), msg(b'D', b"\0\x01\x7f\xff\xff\xff")],
            vec![t.clone(), msg(b'D', b"\0\x01\0\0\0\x01xy")],
            vec![
                t.clone(),
                d.clone(),
                msg(b'C', b"SELECT 1\0"),
                msg(b'Z', b"X"),
            ],
            vec![msg(b'C', b"SET\0"), msg(b'C', b"SET\0")],
            vec![msg(b'T', b"\0\0")],
            vec![msg(b'I', b"")],
        ];
        for case in cases {
            let mut a = Answer::default();
            let r = case.iter().try_fold(false, |_, m| a.step(m, 10));
            assert!(!matches!(r, Ok(true)), "{case:?}");
        }
        let mut a = Answer::default();
        let ok = [t, d.clone(), d, msg(b'C', b"SELECT 2\0"), z]
            .iter()
            .try_fold(false, |_, m| a.step(m, 1));
        assert!(ok.unwrap());
        // Two rows counted, one kept.
        assert_eq!((a.row_count, a.rows.len()), (2, 1));
    }

    #[test]
    fn unanalysed_tables_have_no_estimate() {
        let row = |kind: &str, tuples: &str, pages: &str, heap: &str| -> Vec<Option<String>> {
            ["1", "s", "t", kind, tuples, pages, heap, "0", "f", "t"]
                .iter()
                .map(|v| Some(v.to_string()))
                .collect()
        };
        let answer = |rows| Answer {
            columns: (0..10).map(|i| i.to_string()).collect(),
            rows,
            ..Answer::default()
        };
        let rels = parse_relations(
            "d",
            &answer(vec![
                row("r", "-1", "0", "8192"),
                row("r", "0", "0", "8192"),
                row("r", "0", "0", "0"),
                row("r", "1234.6", "10", "81920"),
                row("v", "0", "0", "0"),
            ]),
            false,
        )
        .unwrap();
        let tuples: Vec<Option<u64>> = rels.iter().map(|r| r.tuples).collect();
        assert_eq!(tuples, vec![None, None, Some(0), Some(1235), None]);
        // Sizes from statistics: 0 pages says nothing about an unanalysed table.
        let rels = parse_relations(
            "d",
            &answer(vec![row("r", "-1", "0", "0"), row("r", "5", "1", "8192")]),
            true,
        )
        .unwrap();
        assert!(!rels[0].small() && rels[1].small());
        assert!(parse_relations("d", &Answer::default(), false).is_err());
    }

    #[test]
    fn sample_percentages() {
        // 200 rows wanted of 1 000 000: 3 × 200 / 10⁶ = 0.06 %.
        assert!((sample_percent(200, Some(1_000_000), 0) - 0.06).abs() < 1e-9);
        // … in 100 000 pages: 200 blocks at least, 0.2 %.
        assert!((sample_percent(200, Some(1_000_000), 100_000) - 0.2).abs() < 1e-9);
        // Wide rows (one a page): the row term wins.
        assert!((sample_percent(200, Some(1_000_000), 1_000_000) - 0.06).abs() < 1e-9);
        assert_eq!(sample_percent(200, Some(100), 0), 100.0);
        assert_eq!(sample_percent(1, Some(u64::MAX), 0), 0.0001);
        // No statistics: ten rows a page assumed; then the block term, 200 of 60 000 pages.
        assert!((sample_percent(200, None, 60_000) - 100.0 / 300.0).abs() < 1e-9);
        assert_eq!(sample_percent(200, None, 0), 100.0);
        assert_eq!(sample_percent(200, None, u64::MAX), 0.0001);
    }

    #[test]
    fn fields_follow_column_order() {
        let cols: Vec<(String, String)> = ["id", "a.b", "a", "payload"]
            .iter()
            .map(|c| (c.to_string(), String::new()))
            .collect();
        for (path, pos) in [
            ("id", 0),
            ("a.b", 1),
            ("a.c", 2),
            ("a", 2),
            ("payload[].x", 3),
            ("payload.y", 3),
            ("zz", usize::MAX),
            ("identity", usize::MAX),
        ] {
            assert_eq!(column_position(path, &cols), pos, "{path}");
        }
    }

    #[test]
    fn oversized_rows_are_headers_only() {
        let mut big = vec![b'D'];
        big.extend_from_slice(&5000u32.to_be_bytes());
        assert_eq!(check_result_message(&big, 1000), Check::Complete(5));
        let mut t = big.clone();
        t[0] = b'T';
        assert!(matches!(check_result_message(&t, 1000), Check::Invalid(_)));
        assert!(matches!(
            check_result_message(b"Q\0\0\0\x04", 1000),
            Check::Invalid(_)
        ));
        assert_eq!(check_result_message(b"D\0\0", 1000), Check::Incomplete);
        assert_eq!(
            check_result_message(b"Z\0\0\0\x05I", 1000),
            Check::Complete(6)
        );
    }

    // -- Whole inventories against a replaying server ----------------------------------------

    #[derive(Default)]
    struct Seen {
        /// (database, statement) in arrival order.
        statements: Vec<(String, String)>,
        /// Statements that arrived outside a `BEGIN READ ONLY` … `ROLLBACK` block.
        outside: Vec<String>,
        unknown: Vec<String>,
        connections: usize,
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Mode {
        Replay,
        /// Answers the startup, then never a statement.
        Silent,
        /// Answers samples with one DataRow of `frame_cap` bytes before the recorded rows.
        GiantRow,
    }

    /// The database a startup message names.
    pub(in crate::protocols::postgresql) fn startup_database(m: &Message) -> Option<String> {
        let fields: Vec<&[u8]> = m.bytes.get(8..)?.split(|&b| b == 0).collect();
        fields
            .windows(2)
            .find(|w| w[0] == b"database")
            .map(|w| String::from_utf8_lossy(w[1]).into_owned())
    }

    /// The SQL of a simple Query message; None for any other message.
    pub(in crate::protocols::postgresql) fn query_sql(m: &Message) -> Option<String> {
        let body = m.bytes.get(5..)?;
        (m.index > 0 && m.bytes[0] == b'Q')
            .then(|| String::from_utf8_lossy(&body[..body.len().saturating_sub(1)]).into_owned())
    }

    /// A server replaying recorded answers per database and statement (see [`Mode`]), keeping
    /// what it saw in `Seen`.
    async fn replay(mode: Mode, frame_cap: usize) -> (FakeServer, Arc<Mutex<Seen>>) {
        let rec = recorded();
        let giant = frame_cap + 10;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let log = seen.clone();
        // Per connection: its database, and whether a transaction block is open.
        let conns: Mutex<HashMap<usize, (String, bool)>> = Mutex::default();
        let server = FakeServer::start(Vec::new(), frames::pg_message, move |m| {
            if m.index == 0 {
                let Some(db) = startup_database(m) else {
                    return Reply::Close;
                };
                log.lock().unwrap().connections += 1;
                let Some(hello) = rec.get(&(db.clone(), None)) else {
                    return Reply::SendAndClose(frontend(
                        b'E',
                        b"SFATAL\0VFATAL\0C3D000\0Mno such database\0\0",
                    ));
                };
                conns.lock().unwrap().insert(m.conn, (db, false));
                return Reply::Send(hello.clone());
            }
            let Some(sql) = query_sql(m) else {
                return Reply::Close;
            };
            let mut conns = conns.lock().unwrap();
            let (db, in_txn) = conns.get_mut(&m.conn).expect("started");
            {
                let mut seen = log.lock().unwrap();
                seen.statements.push((db.clone(), sql.clone()));
                match sql.as_str() {
                    BEGIN_READ_ONLY => *in_txn = true,
                    ROLLBACK => *in_txn = false,
                    _ if *in_txn => {}
                    _ => seen.outside.push(sql.clone()),
                }
            }
            if mode == Mode::Silent {
                return Reply::Nothing;
            }
            if mode == Mode::GiantRow && sql.starts_with("SELECT (SELECT jsonb_object_agg") {
                let mut row = b"\0\x01".to_vec();
                row.extend_from_slice(&(giant as u32).to_be_bytes());
                row.resize(row.len() + giant, b'x');
                let answer = &rec[&(db.clone(), Some(normalise(&sql)))];
                // RowDescription first, then the giant row, then the rest (with its tag
                // corrected to count the extra row).
                let msgs = messages_for_tests(answer, QUERY_TYPES);
                let mut out = frontend(msgs[0].ty, &msgs[0].body);
                out.extend(frontend(b'D', &row));
                for m in &msgs[1..] {
                    if m.ty == b'C' {
                        let n = String::from_utf8_lossy(&m.body[7..m.body.len() - 1])
                            .parse::<usize>()
                            .unwrap();
                        out.extend(frontend(b'C', format!("SELECT {}\0", n + 1).as_bytes()));
                    } else {
                        out.extend(frontend(m.ty, &m.body));
                    }
                }
                return Reply::Send(out);
            }
            match rec.get(&(db.clone(), Some(normalise(&sql)))) {
                Some(answer) => Reply::Send(answer.clone()),
                None => {
                    log.lock().unwrap().unknown.push(sql.clone());
                    let mut e = frontend(b'E', b"SERROR\0VERROR\0C42P01\0Mnot recorded\0\0");
                    e.extend(frontend(b'Z', if *in_txn { b"E" } else { b"I" }));
                    Reply::Send(e)
                }
            }
        })
        .await;
        (server, seen)
    }

    fn ctx(addr: SocketAddr, frame_cap: usize) -> ProbeCtx {
        let ms = Duration::from_millis(300);
        let opts = ProbeOptions {
            limits: crate::testkit::timeouts(ms),
            frame_cap,
            ..ProbeOptions::default()
        };
        crate::driver::test_ctx(addr, opts)
    }

    fn open_finding() -> Finding {
        let mut f = Finding::new("postgresql");
        f.access = Access::Open;
        f
    }

    fn options(sample: usize) -> InventoryOptions {
        InventoryOptions {
            sample,
            time_budget: Duration::from_secs(10),
            ..InventoryOptions::default()
        }
    }

    #[tokio::test]
    async fn whole_inventory_from_a_recorded_server() {
        let (server, seen) = replay(Mode::Replay, 1 << 20).await;
        let addr = server.addr();
        let inv = inventory(&ctx(addr, 1 << 20), &open_finding(), &options(5)).await;
        let seen = seen.lock().unwrap();
        assert!(seen.unknown.is_empty(), "{:?}", seen.unknown);
        // Everything the inventory sent was inside a read-only transaction and is an instance
        // of an allowlisted template.
        assert!(seen.outside.is_empty(), "{:?}", seen.outside);
        for (_, sql) in &seen.statements {
            assert!(ALLOWED_QUERIES.iter().any(|t| instance_of(sql, t)), "{sql}");
        }
        // The login session (databases, then postgres's own catalogue), smarthome's catalogue,
        // smarthome's census; postgres has no tables, so no census connection.
        assert_eq!(seen.connections, 3);
        assert_eq!(inv.holdings.len(), TRUTH.len(), "{inv:#?}");
        for (h, (name, rows, cols)) in inv.holdings.iter().zip(TRUTH) {
            assert_eq!(&h.name, name);
            assert_eq!(h.kind, "table");
            assert_eq!((h.records, h.records_exact), (Some(*rows), true), "{name}");
            assert!(h.bytes.unwrap() > 0 && !h.system);
            let declared: Vec<&str> = h.schema.iter().map(|(c, _)| c.as_str()).collect();
            assert_eq!(&declared, cols);
            assert_eq!(h.sample.len(), 5, "{name}");
            let paths: Vec<String> = crate::inventory::paths_seen(&h.sample)
                .into_iter()
                .map(|p| p.0)
                .collect();
            assert_eq!(&paths, cols, "{name}");
        }
        assert_eq!(inv.notes.len(), 1, "{:?}", inv.notes);
        assert!(
            inv.notes[0].starts_with("databases: postgres (0 relations), smarthome (8 relations)")
        );
    }

    #[tokio::test]
    async fn nothing_but_listing_without_samples() {
        let (server, seen) = replay(Mode::Replay, 1 << 20).await;
        let addr = server.addr();
        let opts = InventoryOptions {
            max_containers: 3,
            ..options(0)
        };
        let inv = inventory(&ctx(addr, 1 << 20), &open_finding(), &opts).await;
        assert_eq!(inv.holdings.len(), 3);
        assert!(inv
            .holdings
            .iter()
            .all(|h| h.sample.is_empty() && h.records_exact));
        assert!(
            inv.notes
                .iter()
                .any(|n| n == "listed 3 of 8 relations (max_containers 3)"),
            "{:?}",
            inv.notes
        );
        let seen = seen.lock().unwrap();
        assert!(!seen
            .statements
            .iter()
            .any(|(_, q)| q.contains("jsonb_object_agg")));
        assert!(seen.outside.is_empty());
    }

    #[tokio::test]
    async fn a_silent_server_costs_the_time_budget_and_no_more() {
        let (server, _) = replay(Mode::Silent, 1 << 20).await;
        let addr = server.addr();
        let opts = InventoryOptions {
            time_budget: Duration::from_millis(1200),
            ..options(5)
        };
        let t = std::time::Instant::now();
        let inv = tokio::time::timeout(
            Duration::from_secs(5),
            inventory(&ctx(addr, 1 << 20), &open_finding(), &opts),
        )
        .await
        .expect("returns by itself");
        // It returns before the engine's timeout (the budget) so the partial answer survives.
        assert!(
            t.elapsed() < Duration::from_millis(1200),
            "{:?}",
            t.elapsed()
        );
        assert!(inv.holdings.is_empty());
        assert!(
            inv.notes.iter().any(|n| n.contains("time budget")),
            "{:?}",
            inv.notes
        );
    }

    #[tokio::test]
    async fn the_byte_budget_stops_the_census() {
        let (server, _) = replay(Mode::Replay, 1 << 20).await;
        let addr = server.addr();
        // Enough for the catalogue (about 8 KB), not for samples of every table.
        let opts = InventoryOptions {
            byte_budget: 14_000,
            ..options(5)
        };
        let inv = inventory(&ctx(addr, 1 << 20), &open_finding(), &opts).await;
        assert_eq!(inv.holdings.len(), 8);
        let sampled = inv.holdings.iter().filter(|h| !h.sample.is_empty()).count();
        assert!(sampled < 8, "{sampled}");
        assert!(
            inv.notes.iter().any(|n| n.contains("byte budget")),
            "{:?}",
            inv.notes
        );
    }

    #[tokio::test]
    async fn rows_over_the_frame_cap_are_skipped_not_fatal() {
        let cap = 16 << 10;
        let (server, _) = replay(Mode::GiantRow, cap).await;
        let addr = server.addr();
        let inv = inventory(&ctx(addr, cap), &open_finding(), &options(5)).await;
        assert_eq!(inv.holdings.len(), 8);
        for h in &inv.holdings {
            // The recorded five rows are still read after the giant one.
            assert_eq!(h.sample.len(), 5, "{}", h.name);
        }
        assert!(
            inv.notes
                .iter()
                .any(|n| n.contains("1 over the frame cap skipped")),
            "{:?}",
            inv.notes
        );
    }
}
