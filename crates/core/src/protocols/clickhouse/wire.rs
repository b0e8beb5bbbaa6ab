//! ClickHouse as leakscope speaks it: the allowlisted SQL (rendered by `driver::sql` in the
//! ClickHouse dialect) and the one function that sends it, read-only, over either of the
//! server's two client ports:
//!
//! - HTTP (8123): `POST /?max_execution_time=N&readonly=1` with the statement as the body and
//!   `FORMAT JSONCompact` appended, so the server itself refuses anything but reads. A user
//!   whose profile is already read-only may not set `readonly` at all (code 164); that user
//!   gets the statement as `GET /?query=…`, which ClickHouse runs read-only by itself.
//! - native TCP (9000): hand-written, because no maintained Rust client reads a reply through
//!   a bounded frame checker: `Hello`, then `Query` with the settings `readonly=1` and
//!   `max_execution_time`, and the reply's packets, each checked whole under its cap before it
//!   is parsed. The client announces protocol revision [`REVISION`], so the server sends the
//!   oldest, smallest packet forms (no logs, no profile events, no compression).
//!
//! A native port answers the shared `GET /` with its own HTTP 400 (`Port 9000 is for
//! clickhouse-client program`), which is how identification finds it.

use std::sync::Arc;

use serde_json::{Number, Value};

use crate::driver::http::{self, percent_encode, Request, Response};
use crate::driver::sql::{Allowlist, Arg, Dialect};
use crate::driver::{self, Budget, ProbeCtx, Session, Wait};
use crate::net::Check;

/// The server's version.
pub const VERSION: &str = "SELECT version()";
/// Database names (the probe's proof of a read).
pub const DATABASES: &str = "SELECT name FROM system.databases LIMIT $INT";
/// User tables with their engine; the server's own databases are left out.
pub const TABLES: &str = "SELECT database, name, engine FROM system.tables \
     WHERE database NOT IN ('system', 'INFORMATION_SCHEMA', 'information_schema') LIMIT $INT";
/// Rows and bytes of the active parts of every MergeTree table.
pub const PARTS: &str = "SELECT database, table, sum(rows), sum(bytes_on_disk) \
     FROM system.parts WHERE active GROUP BY database, table LIMIT $INT";
/// Column names and types of user tables.
pub const COLUMNS: &str = "SELECT database, table, name, type FROM system.columns \
     WHERE database NOT IN ('system', 'INFORMATION_SCHEMA', 'information_schema') LIMIT $INT";
/// Exact rows of one table.
pub const COUNT: &str = "SELECT count() FROM $IDENT.$IDENT";
/// The first rows of one table (a MergeTree reads its first granules only).
pub const SAMPLE: &str = "SELECT * FROM $IDENT.$IDENT LIMIT $INT";
/// Distinct values of one column of one table, exactly (a hash set inside the server).
pub const DISTINCT_EXACT: &str = "SELECT uniqExact($IDENT) FROM $IDENT.$IDENT";
/// Distinct values of one column of one table, estimated (an adaptive sketch).
pub const DISTINCT: &str = "SELECT uniq($IDENT) FROM $IDENT.$IDENT";

/// Every statement leakscope may send to ClickHouse: reads of the catalogue and of tables,
/// nothing that writes, alters, optimizes, kills or changes a setting.
pub const SQL: Allowlist = Allowlist {
    dialect: Dialect::ClickHouse,
    templates: &[
        VERSION,
        DATABASES,
        TABLES,
        PARTS,
        COLUMNS,
        COUNT,
        SAMPLE,
        DISTINCT_EXACT,
        DISTINCT,
    ],
};

/// The HTTP requests sent besides the SQL: the server's ping.
pub const PING: &str = "GET /";

/// What ClickHouse answers to the ping.
pub const PING_ANSWER: &[u8] = b"Ok.\n";

/// What a native port answers to an HTTP request (every version since 2018).
pub const NATIVE_PORT_ANSWER: &str = "is for clickhouse-client program";

/// The native protocol revision leakscope announces (settings as binary values, client info
/// with a quota key, `Hello` with a time zone; no logs or profile events).
pub const REVISION: u64 = 54060;

/// The user of a native login without credentials (HTTP sends none and gets the same one).
pub const DEFAULT_USER: &str = "default";

/// Longest string a native packet may hold (a name, a type, one value).
pub const MAX_STRING: usize = 1 << 20;
/// Most columns of one block, and most nested exceptions.
const MAX_COLUMNS: u64 = 10_000;
const MAX_NESTED: usize = 8;
/// Settings sent with every native query: the server refuses any write (`readonly=1`) and
/// abandons a query at the time the scan leaves it (`max_execution_time`, seconds).
const READONLY: &str = "readonly";
const MAX_EXECUTION_TIME: &str = "max_execution_time";
/// The longest `max_execution_time` sent (a probe's budget has no deadline of its own: its
/// reads end at the read timeout, and the server should not go on for long after).
const MAX_SECS: u64 = 60;

/// Error codes of a refused login: unknown user, wrong or missing password, address not
/// allowed, authentication failed (the one code of newer versions).
pub const AUTH_CODES: &[u32] = &[192, 193, 194, 195, 516];
/// "Cannot modify setting in readonly mode": the user's profile is read-only already.
pub const READONLY_CODE: u32 = 164;

/// An exception the server sent: its code and first line, shortened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    pub code: Option<u32>,
    pub message: String,
}

impl ServerError {
    pub fn is_auth(&self) -> bool {
        self.code.is_some_and(|c| AUTH_CODES.contains(&c))
    }
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.code {
            Some(c) => write!(f, "code {c}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Why a statement gave no rows.
pub type Failure = driver::Failure<ServerError>;

/// The message of an HTTP error body: `Code: 193, e.displayText() = DB::Exception: …` (before
/// 2021) or `Code: 516. DB::Exception: …` (after). None when the body is not one.
pub fn parse_error_text(body: &[u8]) -> Option<ServerError> {
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)]);
    let at = text.find("Code: ")?;
    let rest = &text[at + "Code: ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let code = digits.parse().ok()?;
    if !text.contains("Exception") {
        return None;
    }
    let line = rest.lines().next().unwrap_or_default();
    let line =
        line.trim_start_matches(|c: char| c.is_ascii_digit() || c == ',' || c == '.' || c == ' ');
    // Before 2021: `e.displayText() = DB::Exception: …, e.what() = DB::Exception`.
    let line = line.strip_prefix("e.displayText() = ").unwrap_or(line);
    let line = line.split(", e.what() = ").next().unwrap_or(line);
    Some(ServerError {
        code: Some(code),
        message: short(line),
    })
}

fn short(s: &str) -> String {
    s.chars().take(200).collect()
}

/// The error of an HTTP reply that is not 200: the `X-ClickHouse-Exception-Code` header of
/// newer versions, or the code in the body.
pub fn http_error(r: &Response) -> ServerError {
    let mut e = parse_error_text(&r.body).unwrap_or_else(|| ServerError {
        code: None,
        message: format!("HTTP {}", r.status),
    });
    if let Some(code) = r
        .header("x-clickhouse-exception-code")
        .and_then(|v| v.trim().parse().ok())
    {
        e.code = Some(code);
    }
    e
}

/// A result: the columns (name, type) and the rows, values as JSON.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    pub columns: Vec<(String, String)>,
    pub rows: Vec<Vec<Value>>,
}

/// Parses `FORMAT JSONCompact`: `{"meta": [{"name", "type"}…], "data": [[…]…]}`.
pub fn parse_json_compact(body: &[u8]) -> Option<Rows> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let columns = v
        .get("meta")?
        .as_array()?
        .iter()
        .map(|m| {
            Some((
                m.get("name")?.as_str()?.to_string(),
                m.get("type")?.as_str()?.to_string(),
            ))
        })
        .collect::<Option<Vec<_>>>()?;
    let rows = v
        .get("data")?
        .as_array()?
        .iter()
        .map(|r| r.as_array().filter(|r| r.len() == columns.len()).cloned())
        .collect::<Option<Vec<_>>>()?;
    Some(Rows { columns, rows })
}

pub use crate::inventory::flatten::json_cell as cell_text;

/// A value as an unsigned count: JSON numbers, and the strings ClickHouse quotes 64-bit
/// integers as.
pub fn cell_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

// ---------------------------------------------------------------- the native protocol

/// Client packet types.
const CLIENT_HELLO: u8 = 0;
const CLIENT_QUERY: u8 = 1;
const CLIENT_DATA: u8 = 2;
/// Server packet types.
const SERVER_HELLO: u64 = 0;
const SERVER_DATA: u64 = 1;
const SERVER_EXCEPTION: u64 = 2;
const SERVER_PROGRESS: u64 = 3;
const SERVER_PONG: u64 = 4;
const SERVER_END: u64 = 5;
const SERVER_PROFILE_INFO: u64 = 6;
const SERVER_TOTALS: u64 = 7;
const SERVER_EXTREMES: u64 = 8;

fn put_varuint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varuint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// The client's `Hello`: name, version, [`REVISION`], the default database, the login.
pub fn hello(user: &str, password: &str) -> Vec<u8> {
    let mut out = vec![CLIENT_HELLO];
    put_str(&mut out, "leakscope");
    put_varuint(&mut out, 1);
    put_varuint(&mut out, 0);
    put_varuint(&mut out, REVISION);
    put_str(&mut out, "");
    put_str(&mut out, user);
    put_str(&mut out, password);
    out
}

/// A `Query` packet for `sql` (already rendered from the allowlist), with the read-only
/// settings when `readonly`, followed by the empty block that ends its (absent) external
/// tables.
fn query_packet(sql: &str, readonly: bool, max_secs: u64) -> Vec<u8> {
    let mut out = vec![CLIENT_QUERY];
    put_str(&mut out, ""); // query id: the server makes one
    out.push(1); // query kind: initial
    put_str(&mut out, ""); // initial user
    put_str(&mut out, ""); // initial query id
    put_str(&mut out, "0.0.0.0:0"); // initial address
    out.push(1); // interface: TCP
    put_str(&mut out, ""); // OS user
    put_str(&mut out, ""); // client host name
    put_str(&mut out, "leakscope");
    put_varuint(&mut out, 1);
    put_varuint(&mut out, 0);
    put_varuint(&mut out, REVISION);
    put_str(&mut out, ""); // quota key
    if readonly {
        // Settings in the binary form of this revision: name, then the value as a varuint
        // (both are integer settings); an empty name ends them. `readonly` last, so nothing
        // after it needs changing.
        put_str(&mut out, MAX_EXECUTION_TIME);
        put_varuint(&mut out, max_secs);
        put_str(&mut out, READONLY);
        put_varuint(&mut out, 1);
    }
    put_str(&mut out, "");
    put_varuint(&mut out, 2); // stage: complete
    put_varuint(&mut out, 0); // no compression
    put_str(&mut out, sql);
    out.push(CLIENT_DATA);
    put_str(&mut out, "");
    out.extend_from_slice(&[1, 0, 2, 0xff, 0xff, 0xff, 0xff, 0]); // block info: no overflows, bucket -1
    put_varuint(&mut out, 0);
    put_varuint(&mut out, 0);
    out
}

/// Why a native packet could not be parsed (yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Short {
    /// More bytes are needed.
    Incomplete,
    /// Not a packet of this protocol (or of a type leakscope does not read).
    Invalid(String),
}

fn invalid(why: impl Into<String>) -> Short {
    Short::Invalid(why.into())
}

/// A cursor over received bytes: every length is checked against what is there and a cap.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], Short> {
        let end = self.pos.checked_add(n).ok_or_else(|| invalid("length"))?;
        let b = self.buf.get(self.pos..end).ok_or(Short::Incomplete)?;
        self.pos = end;
        Ok(b)
    }

    fn u8(&mut self) -> Result<u8, Short> {
        Ok(self.bytes(1)?[0])
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], Short> {
        Ok(self.bytes(N)?.try_into().expect("N bytes"))
    }

    fn varuint(&mut self) -> Result<u64, Short> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(invalid("varint longer than 10 bytes"))
    }

    fn string(&mut self) -> Result<&'a [u8], Short> {
        let n = self.varuint()?;
        if n > MAX_STRING as u64 {
            return Err(invalid(format!("string of {n} bytes")));
        }
        self.bytes(n as usize)
    }

    fn text(&mut self) -> Result<String, Short> {
        Ok(String::from_utf8_lossy(self.string()?).into_owned())
    }
}

/// The server's `Hello`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello {
    pub name: String,
    pub version: String,
    pub revision: u64,
}

/// One packet from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Packet {
    Hello(ServerHello),
    /// A block of a result (data, totals or extremes).
    Data(Rows),
    Exception(ServerError),
    /// Progress, profile info, pong: nothing a scan keeps.
    Info,
    End,
}

/// Parses one server packet at the start of `buf`: the packet and its length, or why not.
pub fn parse_packet(buf: &[u8]) -> Result<(Packet, usize), Short> {
    let mut r = Reader { buf, pos: 0 };
    let packet = match r.varuint()? {
        SERVER_HELLO => {
            let name = r.text()?;
            let major = r.varuint()?;
            let minor = r.varuint()?;
            let revision = r.varuint()?;
            if revision >= 54058 {
                r.string()?; // time zone
            }
            Packet::Hello(ServerHello {
                name: short(&name),
                version: format!("{major}.{minor}"),
                revision,
            })
        }
        SERVER_DATA | SERVER_TOTALS | SERVER_EXTREMES => Packet::Data(block(&mut r)?),
        SERVER_EXCEPTION => {
            let mut first = None;
            for _ in 0..MAX_NESTED {
                let code = i32::from_le_bytes(r.fixed()?);
                let _name = r.string()?;
                let message = r.text()?;
                let _stack = r.string()?;
                first.get_or_insert(ServerError {
                    code: u32::try_from(code).ok(),
                    message: short(message.lines().next().unwrap_or_default()),
                });
                if r.u8()? == 0 {
                    return Ok((Packet::Exception(first.expect("set")), r.pos));
                }
            }
            return Err(invalid("exceptions nested too deep"));
        }
        SERVER_PROGRESS => {
            for _ in 0..3 {
                r.varuint()?; // rows, bytes, total rows
            }
            Packet::Info
        }
        SERVER_PONG => Packet::Info,
        SERVER_END => Packet::End,
        SERVER_PROFILE_INFO => {
            for _ in 0..3 {
                r.varuint()?; // rows, blocks, bytes
            }
            r.u8()?;
            r.varuint()?;
            r.u8()?;
            Packet::Info
        }
        other => return Err(invalid(format!("packet type {other}"))),
    };
    Ok((packet, r.pos))
}

/// Frame checker of one server packet of at most `cap` bytes.
pub fn check_packet(buf: &[u8], cap: usize) -> Check {
    match parse_packet(buf) {
        Ok((_, n)) if n > cap => Check::TooLarge(cap),
        Ok((_, n)) => Check::Complete(n),
        Err(Short::Incomplete) if buf.len() >= cap => Check::TooLarge(cap),
        Err(Short::Incomplete) => Check::Incomplete,
        Err(Short::Invalid(why)) => Check::Invalid(why),
    }
}

/// A data block: table name, block info, then each column's name, type and values.
fn block(r: &mut Reader) -> Result<Rows, Short> {
    r.string()?; // temporary table name
    loop {
        match r.varuint()? {
            0 => break,
            1 => {
                r.u8()?;
            }
            2 => {
                r.fixed::<4>()?;
            }
            f => return Err(invalid(format!("block info field {f}"))),
        }
    }
    let ncols = r.varuint()?;
    let nrows = r.varuint()?;
    if ncols > MAX_COLUMNS {
        return Err(invalid(format!("{ncols} columns")));
    }
    // Every row of every column takes at least one byte: a count beyond the bytes there are
    // is a lie, refused before anything is allocated for it.
    if ncols > 0 && nrows > r.buf.len() as u64 {
        return match nrows > (u32::MAX as u64) {
            true => Err(invalid(format!("{nrows} rows"))),
            false => Err(Short::Incomplete),
        };
    }
    // With no column there is no value to read, so the peer's row count bounds nothing: it
    // must not size an allocation either (the fuzzer's 6.5 GB `vec!` of empty rows).
    let nrows = if ncols == 0 { 0 } else { nrows as usize };
    let mut columns = Vec::with_capacity(ncols as usize);
    let mut rows = vec![Vec::with_capacity(ncols as usize); nrows];
    for _ in 0..ncols {
        let name = r.text()?;
        let ty = r.text()?;
        let values = column(r, &ty, nrows, 0)?;
        for (row, v) in rows.iter_mut().zip(values) {
            row.push(v);
        }
        columns.push((name, ty));
    }
    Ok(Rows { columns, rows })
}

/// `Inner` of `Wrapper(Inner)`.
fn inner<'t>(ty: &'t str, wrapper: &str) -> Option<&'t str> {
    ty.strip_prefix(wrapper)?
        .strip_prefix('(')?
        .strip_suffix(')')
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a[..b.len()].copy_from_slice(b);
    u64::from_le_bytes(a)
}

fn sign_extend(v: u64, bytes: usize) -> i64 {
    let shift = 64 - 8 * bytes as u32;
    ((v << shift) as i64) >> shift
}

/// `n` values of a column of type `ty`. Types a scan needs to read people's data (text,
/// numbers, dates, UUIDs, and arrays and nullables of them); any other is refused, so a
/// misread can never shift the rest of the block.
fn column(r: &mut Reader, ty: &str, n: usize, depth: usize) -> Result<Vec<Value>, Short> {
    if depth > 8 {
        return Err(invalid("type nested too deep"));
    }
    if let Some(t) = inner(ty, "Nullable") {
        let nulls = r.bytes(n)?.to_vec();
        let values = column(r, t, n, depth + 1)?;
        return Ok(values
            .into_iter()
            .zip(nulls)
            .map(|(v, null)| if null != 0 { Value::Null } else { v })
            .collect());
    }
    if let Some(t) = inner(ty, "Array") {
        let mut offsets = Vec::with_capacity(n);
        for _ in 0..n {
            offsets.push(u64::from_le_bytes(r.fixed()?));
        }
        let total = offsets.last().copied().unwrap_or(0);
        if offsets.windows(2).any(|w| w[0] > w[1]) {
            return Err(invalid("array offsets out of order"));
        }
        // Every element takes at least one byte.
        if total > (r.buf.len() - r.pos) as u64 {
            return Err(match total > u64::from(u32::MAX) {
                true => invalid(format!("array of {total} elements")),
                false => Short::Incomplete,
            });
        }
        let mut flat = column(r, t, total as usize, depth + 1)?.into_iter();
        let mut prev = 0;
        return Ok(offsets
            .into_iter()
            .map(|end| {
                let v: Vec<Value> = flat.by_ref().take((end - prev) as usize).collect();
                prev = end;
                Value::Array(v)
            })
            .collect());
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    let unsigned = |b: &[u8]| Value::from(le_u64(b));
    let signed = |b: &[u8]| Value::from(sign_extend(le_u64(b), b.len()));
    match ty {
        "String" => (0..n).map(|_| Ok(Value::String(r.text()?))).collect(),
        "UInt8" | "Bool" => fixed(r, n, 1, unsigned),
        "UInt16" => fixed(r, n, 2, unsigned),
        "UInt32" => fixed(r, n, 4, unsigned),
        "UInt64" => fixed(r, n, 8, unsigned),
        "Int8" => fixed(r, n, 1, signed),
        "Int16" => fixed(r, n, 2, signed),
        "Int32" => fixed(r, n, 4, signed),
        "Int64" => fixed(r, n, 8, signed),
        "Float32" => fixed(r, n, 4, |b| {
            float(f32::from_le_bytes(b.try_into().expect("4 bytes")).into())
        }),
        "Float64" => fixed(r, n, 8, |b| {
            float(f64::from_le_bytes(b.try_into().expect("8 bytes")))
        }),
        "Date" => fixed(r, n, 2, |b| Value::String(date(le_u64(b) as i64))),
        "DateTime" => fixed(r, n, 4, |b| Value::String(date_time(le_u64(b) as i64))),
        "UUID" => fixed(r, n, 16, |b| {
            let hi = le_u64(&b[..8]);
            let lo = le_u64(&b[8..]);
            let h = format!("{hi:016x}{lo:016x}");
            Value::String(format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            ))
        }),
        _ => {
            if let Some(width) = inner(ty, "FixedString").and_then(|w| w.parse::<usize>().ok()) {
                if width == 0 || width > MAX_STRING {
                    return Err(invalid(format!("FixedString({width})")));
                }
                return fixed(r, n, width, |b| {
                    Value::String(
                        String::from_utf8_lossy(b)
                            .trim_end_matches('\0')
                            .to_string(),
                    )
                });
            }
            if ty.starts_with("DateTime(") {
                return fixed(r, n, 4, |b| Value::String(date_time(le_u64(b) as i64)));
            }
            if ty.starts_with("Enum8(") {
                return fixed(r, n, 1, signed);
            }
            if ty.starts_with("Enum16(") {
                return fixed(r, n, 2, signed);
            }
            Err(invalid(format!("column type {}", short(ty))))
        }
    }
}

/// `n` values of `width` bytes each, each made a value by `f`.
fn fixed(
    r: &mut Reader,
    n: usize,
    width: usize,
    f: impl Fn(&[u8]) -> Value,
) -> Result<Vec<Value>, Short> {
    (0..n).map(|_| r.bytes(width).map(&f)).collect()
}

fn float(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// `YYYY-MM-DD` of a day number since 1970-01-01 (the civil calendar, proleptic Gregorian).
fn date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DD hh:mm:ss` (UTC) of seconds since the epoch.
fn date_time(secs: i64) -> String {
    let s = secs.rem_euclid(86_400);
    format!(
        "{} {:02}:{:02}:{:02}",
        date(secs.div_euclid(86_400)),
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

// ---------------------------------------------------------------- the one sending function

/// Which of the server's client ports a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Http,
    Native,
}

/// The server as a scan reads it: its port's transport, one budget for every statement, and
/// whether `readonly=1` may be sent (not to a user whose profile is read-only already).
pub struct Client {
    ctx: ProbeCtx,
    pub transport: Transport,
    budget: Arc<Budget>,
    wait: Wait,
    readonly_setting: bool,
    native: Option<Session>,
}

impl Client {
    pub fn new(ctx: &ProbeCtx, transport: Transport, budget: Budget, wait: Wait) -> Client {
        Client {
            ctx: ctx.copy(),
            transport,
            budget: Arc::new(budget),
            wait,
            readonly_setting: true,
            native: None,
        }
    }

    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Seconds the server may spend on one statement: what the budget has left.
    fn max_secs(&self) -> u64 {
        self.budget.time_left().as_secs().clamp(1, MAX_SECS)
    }

    /// Runs an allowlisted statement and returns its rows, within `cap` bytes of reply.
    pub async fn query(
        &mut self,
        template: &str,
        args: &[Arg<'_>],
        cap: usize,
    ) -> Result<Rows, Failure> {
        let sql = SQL.render(template, args).map_err(Failure::Refused)?;
        for _ in 0..2 {
            let readonly = self.readonly_setting;
            let r = match self.transport {
                Transport::Http => self.http_query(&sql, readonly, cap).await,
                Transport::Native => self.native_query(&sql, readonly, cap).await,
            };
            match r {
                Err(Failure::Server(e)) if readonly && e.code == Some(READONLY_CODE) => {
                    self.readonly_setting = false;
                }
                other => return other,
            }
        }
        Err(Failure::unexpected("read-only mode refused twice"))
    }

    async fn http_query(&mut self, sql: &str, readonly: bool, cap: usize) -> Result<Rows, Failure> {
        let mut s = Session::new(&self.ctx, self.budget.clone());
        s.set_wait(self.wait);
        s.connect().await?;
        let body = format!("{sql} FORMAT JSONCompact");
        let (method, path, body) = if readonly {
            let path = format!("/?{MAX_EXECUTION_TIME}={}&{READONLY}=1", self.max_secs());
            ("POST", path, Some(body.as_bytes()))
        } else {
            ("GET", format!("/?query={}", percent_encode(&body)), None)
        };
        let authority = self.ctx.authority();
        let req = Request {
            method,
            path: &path,
            host: &authority,
            basic_auth: None,
        };
        let cap = s.cap(cap);
        let r = http::exchange(&mut s, &req, body, cap).await?;
        if r.status != 200 {
            return Err(Failure::Server(http_error(&r)));
        }
        parse_json_compact(&r.body).ok_or_else(|| Failure::Unexpected {
            why: "a 200 that is not JSONCompact".into(),
            head: r.body.iter().take(48).copied().collect(),
        })
    }

    /// Logs in on a native connection as the default user without a password.
    pub async fn native_login(&mut self) -> Result<ServerHello, Failure> {
        let mut s = Session::new(&self.ctx, self.budget.clone());
        s.set_wait(self.wait);
        s.connect().await?;
        s.send(&hello(DEFAULT_USER, "")).await?;
        let frame = s
            .read_frame(64 * 1024, |b| check_packet(b, 64 * 1024))
            .await?;
        match parse_packet(&frame).map(|(p, _)| p) {
            Ok(Packet::Hello(h)) => {
                self.native = Some(s);
                Ok(h)
            }
            Ok(Packet::Exception(e)) => Err(Failure::Server(e)),
            _ => Err(Failure::Unexpected {
                why: "not a ClickHouse Hello".into(),
                head: frame.iter().take(48).copied().collect(),
            }),
        }
    }

    async fn native_query(
        &mut self,
        sql: &str,
        readonly: bool,
        cap: usize,
    ) -> Result<Rows, Failure> {
        if self.native.as_ref().is_none_or(|s| s.is_broken()) {
            self.native_login().await?;
        }
        let max_secs = self.max_secs();
        let s = self.native.as_mut().expect("logged in");
        s.send(&query_packet(sql, readonly, max_secs)).await?;
        let mut out = Rows::default();
        let mut read = 0usize;
        loop {
            let left = cap.saturating_sub(read).max(1);
            let frame = match s.read_frame_within(left, |b| check_packet(b, left)).await {
                Ok(f) => f,
                Err(e) => {
                    s.mark_broken();
                    return Err(e);
                }
            };
            read += frame.len();
            match parse_packet(&frame).map(|(p, _)| p) {
                Ok(Packet::Data(block)) => {
                    if out.columns.is_empty() {
                        out.columns = block.columns;
                    }
                    out.rows.extend(block.rows);
                }
                Ok(Packet::Exception(e)) => return Err(Failure::Server(e)),
                Ok(Packet::End) => return Ok(out),
                Ok(Packet::Info) => {}
                Ok(Packet::Hello(_)) | Err(_) => {
                    s.mark_broken();
                    return Err(Failure::unexpected("a packet out of place"));
                }
            }
        }
    }

    /// Sends the ping on a fresh HTTP connection: the reply tells an HTTP port from a native
    /// one.
    pub async fn ping(&self) -> Result<Response, Failure> {
        let mut s = Session::new(&self.ctx, self.budget.clone());
        s.set_wait(self.wait);
        s.connect().await?;
        let authority = self.ctx.authority();
        let req = Request {
            method: "GET",
            path: "/",
            host: &authority,
            basic_auth: None,
        };
        http::exchange(&mut s, &req, None, 4096).await
    }
}

/// The transport a reply to the ping reveals: `Ok.` is the HTTP port, the native port's
/// refusal of HTTP is the native one.
pub fn transport_of(root: &Response) -> Option<Transport> {
    if root.status == 200 && root.body == PING_ANSWER {
        Some(Transport::Http)
    } else if root.status == 400 && String::from_utf8_lossy(&root.body).contains(NATIVE_PORT_ANSWER)
    {
        Some(Transport::Native)
    } else {
        None
    }
}

/// A probe's read: within the probe's read timeout, a small byte allowance.
pub fn probe_budget() -> Budget {
    Budget::bytes_only(1 << 20)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::testkit::fixture;

    /// Server packets built the way ClickHouse writes them at revision [`REVISION`].
    pub(in crate::protocols::clickhouse) mod build {
        use super::super::{put_str, put_varuint};

        pub fn hello(name: &str, major: u64, minor: u64, revision: u64) -> Vec<u8> {
            let mut out = vec![0];
            put_str(&mut out, name);
            put_varuint(&mut out, major);
            put_varuint(&mut out, minor);
            put_varuint(&mut out, revision);
            put_str(&mut out, "UTC");
            out
        }

        pub fn exception(code: i32, message: &str) -> Vec<u8> {
            let mut out = vec![2];
            out.extend_from_slice(&code.to_le_bytes());
            put_str(&mut out, "DB::Exception");
            put_str(&mut out, message);
            put_str(&mut out, "");
            out.push(0);
            out
        }

        /// A data block of `String` columns.
        pub fn strings(columns: &[&str], rows: &[&[&str]]) -> Vec<u8> {
            let mut out = vec![1];
            put_str(&mut out, "");
            out.extend_from_slice(&[1, 0, 2, 0xff, 0xff, 0xff, 0xff, 0]);
            put_varuint(&mut out, columns.len() as u64);
            put_varuint(&mut out, rows.len() as u64);
            for (i, c) in columns.iter().enumerate() {
                put_str(&mut out, c);
                put_str(&mut out, "String");
                for r in rows {
                    put_str(&mut out, r[i]);
                }
            }
            out
        }

        pub fn end() -> Vec<u8> {
            vec![5]
        }

        pub fn progress() -> Vec<u8> {
            vec![3, 1, 10, 0]
        }
    }

    #[test]
    fn only_reads_are_allowlisted() {
        for t in SQL.templates {
            assert!(t.starts_with("SELECT "), "{t}");
            let upper = t.to_ascii_uppercase();
            for word in [
                "INSERT",
                "ALTER",
                "DROP",
                "CREATE",
                "TRUNCATE",
                "OPTIMIZE",
                "KILL",
                "SYSTEM ",
                "RENAME",
                "ATTACH",
                "DETACH",
                "GRANT",
                "SET ",
                "SETTINGS",
                "INTO OUTFILE",
                "URL(",
                "REMOTE",
                "FILE(",
            ] {
                assert!(!upper.contains(word), "{t}: {word}");
            }
            assert!(!t.contains(';'), "{t}");
        }
        assert!(SQL.render("SELECT * FROM system.users", &[]).is_err());
        assert_eq!(
            SQL.render(SAMPLE, &[Arg::Ident("db"), Arg::Ident("a`b"), Arg::Int(5)])
                .unwrap(),
            "SELECT * FROM `db`.`a\\`b` LIMIT 5"
        );
    }

    #[test]
    fn the_native_query_is_read_only() {
        let q = query_packet("SELECT 1", true, 30);
        let at = |needle: &[u8]| q.windows(needle.len()).position(|w| w == needle);
        let ro = at(b"\x08readonly\x01").expect("readonly=1");
        let met = at(b"\x12max_execution_time\x1e").expect("max_execution_time=30");
        assert!(met < ro, "readonly last");
        assert!(q.ends_with(&[2, 0, 1, 0, 2, 0xff, 0xff, 0xff, 0xff, 0, 0, 0]));
        assert!(at(b"\x08SELECT 1").is_some());
        let plain = query_packet("SELECT 1", false, 30);
        assert!(!plain.windows(8).any(|w| w == b"readonly"));
    }

    #[test]
    fn packets_parse_and_every_prefix_is_incomplete() {
        let mut data = build::strings(&["name"], &[&["default"], &["system"]]);
        let packets = [
            build::hello("ClickHouse", 18, 16, 54409),
            build::exception(193, "Wrong password for user default\nstack"),
            data.clone(),
            build::progress(),
            build::end(),
        ];
        for p in &packets {
            for n in 0..p.len() {
                assert_eq!(
                    parse_packet(&p[..n]),
                    Err(Short::Incomplete),
                    "{p:?} cut at {n}"
                );
                assert_eq!(check_packet(&p[..n], 1 << 20), Check::Incomplete);
            }
            assert_eq!(parse_packet(p).unwrap().1, p.len());
            assert_eq!(check_packet(p, p.len()), Check::Complete(p.len()));
            assert_eq!(
                check_packet(&p[..p.len() - 1], p.len() - 1),
                Check::TooLarge(p.len() - 1)
            );
        }
        let Packet::Hello(h) = parse_packet(&packets[0]).unwrap().0 else {
            panic!("hello")
        };
        assert_eq!(
            (h.name.as_str(), h.version.as_str(), h.revision),
            ("ClickHouse", "18.16", 54409)
        );
        assert_eq!(
            parse_packet(&packets[1]).unwrap().0,
            Packet::Exception(ServerError {
                code: Some(193),
                message: "Wrong password for user default".into()
            })
        );
        let Packet::Data(rows) = parse_packet(&data).unwrap().0 else {
            panic!("data")
        };
        assert_eq!(rows.columns, [("name".to_string(), "String".to_string())]);
        assert_eq!(
            rows.rows,
            [[Value::from("default")], [Value::from("system")]]
        );
        // Two packets back to back: the first one's length.
        data.extend(build::end());
        assert_eq!(
            check_packet(&data, 1 << 20),
            Check::Complete(data.len() - 1)
        );
    }

    #[test]
    fn lengths_beyond_reason_are_refused_before_allocating() {
        // A string of 2^40 bytes.
        let mut huge = vec![0];
        put_varuint(&mut huge, 1 << 40);
        assert!(matches!(parse_packet(&huge), Err(Short::Invalid(_))));
        // A block claiming 2^40 rows of one column.
        let mut rows = vec![1, 0, 0];
        put_varuint(&mut rows, 1);
        put_varuint(&mut rows, 1 << 40);
        assert!(matches!(parse_packet(&rows), Err(Short::Invalid(_))));
        // An endless varint, an unknown packet, a column type nobody reads.
        assert!(matches!(parse_packet(&[0xff; 16]), Err(Short::Invalid(_))));
        assert!(matches!(parse_packet(&[42]), Err(Short::Invalid(_))));
        let mut odd = vec![1, 0, 0, 1, 1];
        put_str(&mut odd, "x");
        put_str(&mut odd, "AggregateFunction(uniq, String)");
        odd.push(0);
        assert!(matches!(parse_packet(&odd), Err(Short::Invalid(_))));
        // Exceptions nested without end.
        let mut nested = vec![2];
        for _ in 0..20 {
            nested.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 1]);
        }
        assert!(matches!(parse_packet(&nested), Err(Short::Invalid(_))));
        // Array offsets past the bytes there are.
        let mut arr = vec![1, 0, 0, 1, 1];
        put_str(&mut arr, "a");
        put_str(&mut arr, "Array(UInt8)");
        arr.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(parse_packet(&arr), Err(Short::Invalid(_))));
    }

    #[test]
    fn typed_columns_decode() {
        let mut b = vec![1, 0, 0];
        put_varuint(&mut b, 6);
        put_varuint(&mut b, 2);
        let mut col = |name: &str, ty: &str, data: &[u8]| {
            put_str(&mut b, name);
            put_str(&mut b, ty);
            b.extend_from_slice(data);
        };
        col("n", "Nullable(String)", &[1, 0, 0, 2, b'h', b'i']);
        col("u", "UInt64", &[&[7u8][..], &[0; 7], &[255; 8]].concat());
        col("i", "Int16", &[0xff, 0xff, 5, 0]);
        col("d", "Date", &[0, 0, 0x8c, 0x45]);
        let offsets = [1u64.to_le_bytes(), 3u64.to_le_bytes()].concat();
        col(
            "a",
            "Array(String)",
            &[&offsets[..], &[1, b'x', 1, b'y', 0]].concat(),
        );
        col("id", "UUID", &[[0x11u8; 16], [0x22; 16]].concat());
        let Packet::Data(rows) = parse_packet(&b).unwrap().0 else {
            panic!()
        };
        assert_eq!(rows.rows[0][0], Value::Null);
        assert_eq!(rows.rows[1][0], Value::from("hi"));
        assert_eq!(rows.rows[0][1], Value::from(7u64));
        assert_eq!(rows.rows[1][1], Value::from(u64::MAX));
        assert_eq!(rows.rows[0][2], Value::from(-1i64));
        assert_eq!(rows.rows[1][2], Value::from(5i64));
        assert_eq!(rows.rows[0][3], Value::from("1970-01-01"));
        assert_eq!(rows.rows[1][3], Value::from("2018-09-30"));
        assert_eq!(rows.rows[0][4], serde_json::json!(["x"]));
        assert_eq!(rows.rows[1][4], serde_json::json!(["y", ""]));
        assert_eq!(
            rows.rows[0][5],
            Value::from("11111111-1111-1111-1111-111111111111")
        );
    }

    #[test]
    fn http_errors_old_and_new() {
        let old = b"Code: 193, e.displayText() = DB::Exception: Wrong password for user default, e.what() = DB::Exception\n";
        let e = parse_error_text(old).unwrap();
        assert_eq!(e.code, Some(193));
        assert!(e.is_auth());
        assert_eq!(e.message, "DB::Exception: Wrong password for user default");
        let new = b"Code: 516. DB::Exception: default: Authentication failed: password is incorrect, or there is no user with such name. (AUTHENTICATION_FAILED) (version 24.3.1.1)\n";
        let e = parse_error_text(new).unwrap();
        assert_eq!(e.code, Some(516));
        assert!(e
            .message
            .starts_with("DB::Exception: default: Authentication failed"));
        assert_eq!(parse_error_text(b"Code: 12 of conduct"), None);
        assert_eq!(parse_error_text(b"<html>nope</html>"), None);
    }

    #[test]
    fn json_compact_results() {
        let body = br#"{"meta":[{"name":"count()","type":"UInt64"}],"data":[["42"]],"rows":1}"#;
        let rows = parse_json_compact(body).unwrap();
        assert_eq!(cell_u64(&rows.rows[0][0]), Some(42));
        assert_eq!(
            parse_json_compact(br#"{"meta":[{"name":"a","type":"String"}],"data":[["x","y"]]}"#),
            None
        );
        assert_eq!(parse_json_compact(b"Ok.\n"), None);
    }

    /// Bytes a real ClickHouse 18.16.1 (Debian bookworm) sent on its native port, captured
    /// from the lab (`lab/kinds/clickhouse.py`): its Hello, then the reply to
    /// `SELECT name FROM system.databases LIMIT 10000`.
    const REAL_HELLO: &[u8] = fixture!("clickhouse/native_hello.bin");
    const REAL_DATABASES: &[u8] = fixture!("clickhouse/native_databases.bin");

    #[test]
    fn real_native_replies_parse() {
        let Packet::Hello(h) = parse_packet(REAL_HELLO).unwrap().0 else {
            panic!("hello")
        };
        assert_eq!(h.name, "ClickHouse");
        let mut rest = REAL_DATABASES;
        let mut names = Vec::new();
        loop {
            let (p, n) = parse_packet(rest).unwrap();
            rest = &rest[n..];
            match p {
                Packet::Data(rows) => names.extend(rows.rows.into_iter().map(|r| r[0].clone())),
                Packet::End => break,
                _ => {}
            }
        }
        assert!(rest.is_empty());
        assert!(names.contains(&Value::from("system")), "{names:?}");
    }
}
