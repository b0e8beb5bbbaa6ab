//! MySQL's client/server protocol as leakscope speaks it: packets (every length judged before
//! anything is buffered), the greeting, the login with an empty password, text result sets read
//! within a row cap and a byte budget, and the SQL allowlist with the one function that sends.
//!
//! Hand-written over [`Conn`] rather than with a driver: drivers buffer whatever packet length
//! the server announces (16 MB per packet, chained without limit), answer LOCAL INFILE requests
//! and hide their deadlines. Here every length is checked against `frame_cap` before anything is
//! buffered, TLS, compression and LOCAL INFILE are never offered, and only the SQL in
//! [`ALLOWED_QUERIES`] can be sent.

use tokio::time::Instant;

pub use crate::driver::sql::Arg;
use crate::driver::sql::{Allowlist, Dialect};
use crate::driver::{preview, Failure, ProbeCtx, Session};
use crate::net::{Check, Conn, NetError};

// ---- The SQL allowlist ----
//
// Every statement this module can send is one of these templates. Their only variables are
// `$IDENT`, an identifier (schema, table or column name as the server itself reported it), always
// rendered inside backticks with inner backticks doubled, and `$INT`, an integer rendered from
// a Rust integer; nothing else is ever spliced in (no string literal: MySQL's meaning of one
// depends on the session's sql_mode). [`com_query_with`] refuses any other text.

/// The probe's proof of a read.
pub const SHOW_DATABASES: &str = "SHOW DATABASES";

/// The probe's check of the greeting's version (proxies configure theirs).
pub const SELECT_VERSION: &str = "SELECT VERSION()";

/// Makes every later transaction of the session read-only: a write would fail with
/// ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION even if one got past the allowlist.
pub const SET_READ_ONLY: &str = "SET SESSION TRANSACTION READ ONLY";

/// One read-only transaction for the whole inventory: one consistent snapshot, and autocommit
/// cannot end the read-only state between statements.
pub const START_READ_ONLY: &str = "START TRANSACTION READ ONLY";

/// MariaDB 10.1+: the server aborts any statement of this session after `$INT` seconds, so a
/// slow count stops on the server when the scan gives up on it.
pub const SET_STATEMENT_TIME: &str = "SET SESSION max_statement_time = $INT";

/// MySQL 5.7.8+: the same for read-only SELECTs, in milliseconds.
pub const SET_EXECUTION_TIME: &str = "SET SESSION max_execution_time = $INT";

/// Which tables are listed: all but the server's views of its own state (`information_schema`,
/// `performance_schema` and the views of `sys` and `mysql`). The stored tables of `mysql` and
/// `sys` (accounts, grants, settings) are listed and marked system.
macro_rules! listable {
    () => {
        "TABLE_SCHEMA NOT IN ('information_schema', 'performance_schema') AND (TABLE_SCHEMA NOT IN ('mysql', 'sys') OR TABLE_TYPE = 'BASE TABLE')"
    };
}

/// Schemas whose tables are the server's own (listed as system, never sampled).
macro_rules! system_schema {
    () => {
        "TABLE_SCHEMA IN ('mysql', 'sys')"
    };
}

/// How many tables are listable and how many are not (the catalogue's names only: cheap).
pub const COUNT_TABLES: &str = concat!(
    "SELECT COUNT(*), SUM(",
    listable!(),
    ") FROM information_schema.TABLES"
);

/// The listable tables, user tables first, with the catalogue's row counts (exact for MyISAM,
/// Aria and MEMORY, estimates for InnoDB) and sizes.
pub const LIST_TABLES: &str = concat!(
    "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE, ENGINE, TABLE_ROWS, DATA_LENGTH + INDEX_LENGTH FROM information_schema.TABLES WHERE ",
    listable!(),
    " ORDER BY ",
    system_schema!(),
    ", TABLE_SCHEMA, TABLE_NAME LIMIT $INT"
);

/// Column names and types of the user tables, in the listing's order.
pub const LIST_COLUMNS: &str = "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, COLUMN_KEY, DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA NOT IN ('information_schema', 'performance_schema', 'mysql', 'sys') ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION LIMIT $INT";

/// `--full`: the exact count (InnoDB walks an index; bounded by the statement time).
pub const COUNT_ROWS: &str = "SELECT COUNT(*) FROM $IDENT.$IDENT";

/// The range of a numeric single-column primary key: two index dives.
pub const KEY_RANGE: &str = "SELECT MIN($IDENT), MAX($IDENT) FROM $IDENT.$IDENT";

/// A run of rows from a random point of a numeric primary key: one index seek.
pub const SAMPLE_FROM_KEY: &str =
    "SELECT * FROM $IDENT.$IDENT WHERE $IDENT >= $INT ORDER BY $IDENT LIMIT $INT";

/// Uniform random rows of a small table: one scan of it and a top-N sort of LIMIT rows.
pub const SAMPLE_RANDOM: &str = "SELECT * FROM $IDENT.$IDENT ORDER BY RAND() LIMIT $INT";

/// A run of rows at an offset of the table's scan order: the server steps over `offset` rows.
pub const SAMPLE_AT_OFFSET: &str = "SELECT * FROM $IDENT.$IDENT LIMIT $INT, $INT";

/// A table's indexes (the data of `information_schema.STATISTICS`: NON_UNIQUE, SEQ_IN_INDEX,
/// COLUMN_NAME, CARDINALITY, NULLABLE), addressed by identifiers alone, so no string literal is
/// ever rendered into SQL.
pub const SHOW_INDEX: &str = "SHOW INDEX FROM $IDENT.$IDENT";

/// MariaDB 10.1.2+: the non-NULL values of a column, stopped by the server after `$INT` s.
pub const COUNT_VALUES_MARIADB: &str =
    "SET STATEMENT max_statement_time = $INT FOR SELECT COUNT($IDENT) FROM $IDENT.$IDENT";

/// MariaDB 10.1.2+: the distinct values of a column, stopped after `$INT` s.
pub const COUNT_DISTINCT_MARIADB: &str =
    "SET STATEMENT max_statement_time = $INT FOR SELECT COUNT(DISTINCT $IDENT) FROM $IDENT.$IDENT";

/// MySQL 5.7.8+: the same, stopped after `$INT` ms by the optimizer hint.
pub const COUNT_VALUES_MYSQL: &str =
    "SELECT /*+ MAX_EXECUTION_TIME($INT) */ COUNT($IDENT) FROM $IDENT.$IDENT";

pub const COUNT_DISTINCT_MYSQL: &str =
    "SELECT /*+ MAX_EXECUTION_TIME($INT) */ COUNT(DISTINCT $IDENT) FROM $IDENT.$IDENT";

/// The distinct values among those whose CRC32 is 0 modulo `$INT`: a sample of the values,
/// not of the rows (every row of a sampled value is in it), whose count times the modulus
/// estimates the whole; its distinct set is a modulus-th of the full count's, so big tables
/// are counted in about the time of one scan. MariaDB 10.1.2+, then MySQL 5.7.8+.
pub const COUNT_DISTINCT_HASHED_MARIADB: &str = "SET STATEMENT max_statement_time = $INT FOR SELECT COUNT(DISTINCT $IDENT) FROM $IDENT.$IDENT WHERE CRC32($IDENT) % $INT = 0";

pub const COUNT_DISTINCT_HASHED_MYSQL: &str = "SELECT /*+ MAX_EXECUTION_TIME($INT) */ COUNT(DISTINCT $IDENT) FROM $IDENT.$IDENT WHERE CRC32($IDENT) % $INT = 0";

/// Older servers, which have no statement time limit: only sent for tables whose row estimate
/// is small enough to count within the client's deadline.
pub const COUNT_VALUES: &str = "SELECT COUNT($IDENT) FROM $IDENT.$IDENT";

pub const COUNT_DISTINCT: &str = "SELECT COUNT(DISTINCT $IDENT) FROM $IDENT.$IDENT";

/// The only SQL this module ever sends (as COM_QUERY). All of it reads.
pub const ALLOWED_QUERIES: &[&str] = &[
    SHOW_DATABASES,
    SELECT_VERSION,
    SET_READ_ONLY,
    START_READ_ONLY,
    SET_STATEMENT_TIME,
    SET_EXECUTION_TIME,
    COUNT_TABLES,
    LIST_TABLES,
    LIST_COLUMNS,
    COUNT_ROWS,
    KEY_RANGE,
    SAMPLE_FROM_KEY,
    SAMPLE_RANDOM,
    SAMPLE_AT_OFFSET,
    SHOW_INDEX,
    COUNT_VALUES_MARIADB,
    COUNT_DISTINCT_MARIADB,
    COUNT_VALUES_MYSQL,
    COUNT_DISTINCT_MYSQL,
    COUNT_DISTINCT_HASHED_MARIADB,
    COUNT_DISTINCT_HASHED_MYSQL,
    COUNT_VALUES,
    COUNT_DISTINCT,
];

/// Every statement this module may send, in MySQL's dialect (see [`crate::driver::sql`]).
pub const SQL: Allowlist = Allowlist {
    dialect: Dialect::MySql,
    templates: ALLOWED_QUERIES,
};

/// Renders an allowlisted template with its arguments: `$IDENT` becomes a backtick-quoted
/// identifier, `$INT` a decimal integer; anything else is refused (see [`Allowlist::render`]).
pub fn render(template: &str, args: &[Arg]) -> Result<String, String> {
    SQL.render(template, args)
}

/// Builds a COM_QUERY packet from an allowlisted template and its arguments (see [`render`]).
/// The only place SQL is turned into bytes.
pub fn com_query_with(template: &str, args: &[Arg]) -> Result<Vec<u8>, NetError> {
    let sql = render(template, args).map_err(NetError::Invalid)?;
    let mut payload = vec![COM_QUERY];
    payload.extend_from_slice(sql.as_bytes());
    Ok(frame(0, &payload))
}

/// Builds a COM_QUERY packet for an allowlisted statement without placeholders.
pub fn com_query(sql: &str) -> Result<Vec<u8>, NetError> {
    com_query_with(sql, &[])
}

/// Runs one allowlisted query of the probe and reads its answer within one read deadline.
pub(super) async fn query(s: &mut Session, sql: &str) -> Result<QueryReply, Failure<ServerError>> {
    s.set_deadline(Some(Instant::now() + s.ctx().opts.limits.read_timeout));
    exchange(s, sql, &[], MAX_ROWS).await
}

/// Sends one allowlisted statement and reads its answer (at most `max_rows` rows, and what the
/// budget has left in bytes): the one way SQL leaves this module.
pub(super) async fn exchange(
    s: &mut Session,
    template: &str,
    args: &[Arg<'_>],
    max_rows: usize,
) -> Result<QueryReply, Failure<ServerError>> {
    let packet = com_query_with(template, args)?;
    let cap = s.ctx().opts.frame_cap;
    let mut reader = ResultReader::with_rows(s.budget().bytes_left(), max_rows);
    s.send(&packet).await?;
    let mut seq = 1u8;
    loop {
        let (got, payload) = read_packet_on(s, cap).await?;
        if got != seq {
            s.mark_broken();
            return Err(Failure::unexpected(format!(
                "packet sequence {got}, expected {seq}"
            )));
        }
        seq = seq.wrapping_add(1);
        match reader.feed(&payload) {
            Ok(Some(reply)) => return Ok(reply),
            Ok(None) => {}
            Err(why) => {
                s.mark_broken();
                return Err(Failure::Net(NetError::Invalid(why)));
            }
        }
    }
}

/// Reads one packet on a session: (sequence id, payload).
pub(super) async fn read_packet_on(
    s: &mut Session,
    cap: usize,
) -> Result<(u8, Vec<u8>), Failure<ServerError>> {
    let mut frame = s
        .read_frame(cap.saturating_add(4), |b| check_packet(b, cap))
        .await?;
    let Some(&seq) = frame.get(3) else {
        s.mark_broken();
        return Err(Failure::unexpected("short packet"));
    };
    Ok((seq, frame.split_off(4)))
}

// Capability flags (protocol documentation, "Capabilities Flags").
pub(super) const CLIENT_LONG_PASSWORD: u32 = 0x1;

pub(super) const CLIENT_LONG_FLAG: u32 = 0x4;

pub(super) const CLIENT_LOCAL_FILES: u32 = 0x80;

pub(super) const CLIENT_PROTOCOL_41: u32 = 0x200;

pub(super) const CLIENT_SSL: u32 = 0x800;

pub(super) const CLIENT_TRANSACTIONS: u32 = 0x2000;

pub(super) const CLIENT_SECURE_CONNECTION: u32 = 0x8000;

pub(super) const CLIENT_PLUGIN_AUTH: u32 = 0x8_0000;

pub(super) const CLIENT_COMPRESS: u32 = 0x20;

/// What every login offers (plus CLIENT_PLUGIN_AUTH when the server has it).
pub(super) const CLIENT_CAPS: u32 = CLIENT_LONG_PASSWORD
    | CLIENT_LONG_FLAG
    | CLIENT_PROTOCOL_41
    | CLIENT_TRANSACTIONS
    | CLIENT_SECURE_CONNECTION;

/// Never offered: TLS (the probe reports plaintext exposure), compression (unbounded inflation)
/// and LOCAL INFILE (lets a server ask for client files).
pub(super) const NEVER_OFFERED: u32 = CLIENT_SSL | CLIENT_COMPRESS | CLIENT_LOCAL_FILES;

const _: () = assert!(CLIENT_CAPS & NEVER_OFFERED == 0);

pub(super) const COM_QUIT: u8 = 0x01;

pub(super) const COM_QUERY: u8 = 0x03;

/// utf8_general_ci: known to every server since 4.1, unlike utf8mb4.
pub(super) const CHARSET_UTF8: u8 = 33;

/// Result-set bounds. Columns: the most a MySQL table can have (4096), for `SELECT *` samples.
/// Rows: a server with more databases than this is reported as "more than"; the inventory sets
/// its own row caps per statement.
pub(super) const MAX_COLUMNS: u64 = 4096;

pub(super) const MAX_ROWS: usize = 10_000;

/// Longest server error message kept for evidence.
pub(super) const MAX_MESSAGE: usize = 200;

/// Checks one packet header: 3-byte little-endian payload length, 1-byte sequence id. The
/// length is judged before any payload is buffered, so a 16 MB announcement costs four bytes.
pub(super) fn check_packet(buf: &[u8], cap: usize) -> Check {
    let [a, b, c, _, ..] = *buf else {
        return Check::Incomplete;
    };
    let len = u32::from_le_bytes([a, b, c, 0]) as usize;
    if len == 0 {
        return Check::Invalid("zero-length packet".into());
    }
    if len > cap {
        return Check::TooLarge(cap);
    }
    if len == 0xff_ffff {
        // A payload continued in further packets (only with a cap of 16 MB or more): nothing
        // this probe reads is that large.
        return Check::Invalid("multi-packet payload".into());
    }
    // `Complete` only once the whole packet is buffered, as `Check` promises: a caller that
    // slices `buf[..n]` must not be handed a length from the header alone.
    if buf.len() < 4 + len {
        return Check::Incomplete;
    }
    Check::Complete(4 + len)
}

/// Reads one packet: (sequence id, payload).
pub(super) async fn read_packet(conn: &mut Conn, cap: usize) -> Result<(u8, Vec<u8>), NetError> {
    let mut frame = conn
        .read_frame(cap.saturating_add(4), |b| check_packet(b, cap))
        .await?;
    let Some(&seq) = frame.get(3) else {
        return Err(NetError::Invalid("short packet".into()));
    };
    Ok((seq, frame.split_off(4)))
}

/// Reads one packet that must carry sequence id `*seq`, then advances it.
pub(super) async fn read_next(
    conn: &mut Conn,
    cap: usize,
    seq: &mut u8,
) -> Result<Vec<u8>, NetError> {
    let (got, payload) = read_packet(conn, cap).await?;
    if got != *seq {
        return Err(NetError::Invalid(format!(
            "packet sequence {got}, expected {}",
            *seq
        )));
    }
    *seq = seq.wrapping_add(1);
    Ok(payload)
}

pub(super) fn frame(seq: u8, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_le_bytes();
    let mut out = Vec::with_capacity(payload.len() + 4);
    out.extend_from_slice(&len[..3]);
    out.push(seq);
    out.extend_from_slice(payload);
    out
}

pub(super) async fn send_next(
    conn: &mut Conn,
    seq: &mut u8,
    payload: &[u8],
) -> Result<(), NetError> {
    conn.send(&frame(*seq, payload)).await?;
    *seq = seq.wrapping_add(1);
    Ok(())
}

/// A cursor over peer bytes: every read is checked, nothing indexes blindly.
pub(super) struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8]) -> Self {
        Reader { b }
    }
    fn is_empty(&self) -> bool {
        self.b.is_empty()
    }
    fn peek(&self) -> Option<u8> {
        self.b.first().copied()
    }
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.b.len() {
            return None;
        }
        let (head, tail) = self.b.split_at(n);
        self.b = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.bytes(1).and_then(|s| s.first().copied())
    }
    fn u16(&mut self) -> Option<u16> {
        let s = self.bytes(2)?;
        Some(u16::from_le_bytes(s.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        let s = self.bytes(4)?;
        Some(u32::from_le_bytes(s.try_into().ok()?))
    }
    /// Bytes up to a NUL (consumed, not returned).
    fn nul_terminated(&mut self) -> Option<&'a [u8]> {
        let i = self.b.iter().position(|&c| c == 0)?;
        let s = self.bytes(i)?;
        self.bytes(1)?;
        Some(s)
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.b)
    }
    /// Length-encoded integer; `None` for the NULL (0xfb) and invalid (0xff) markers.
    fn lenenc(&mut self) -> Option<u64> {
        let n = match self.u8()? {
            b @ 0..=0xfa => return Some(u64::from(b)),
            0xfc => 2,
            0xfd => 3,
            0xfe => 8,
            _ => return None,
        };
        let mut v = [0u8; 8];
        v.get_mut(..n)?.copy_from_slice(self.bytes(n)?);
        Some(u64::from_le_bytes(v))
    }
    fn lenenc_bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.lenenc()?).ok()?;
        self.bytes(n)
    }
}

/// The server's initial handshake (protocol version 10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub server_version: String,
    pub connection_id: u32,
    pub scramble: Vec<u8>,
    pub capabilities: u32,
    pub auth_plugin: Option<String>,
}

/// An ERR packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    pub code: u16,
    pub sql_state: Option<String>,
    pub message: String,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.sql_state {
            Some(s) => write!(f, "ERR {} ({s}) {}", self.code, self.message),
            None => write!(f, "ERR {} {}", self.code, self.message),
        }
    }
}

/// What a server may say first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Greeting {
    Handshake(Handshake),
    /// Refused before the handshake (host not allowed, too many connections).
    Error(ServerError),
}

pub(super) fn is_plugin_name(s: &[u8]) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

pub(super) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Printable, length-capped text of a peer message, for evidence.
pub(super) fn clean(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(MAX_MESSAGE)
        .collect()
}

/// Parses an ERR packet (also used before the handshake, where it has no SQL state).
pub fn parse_err(payload: &[u8]) -> Option<ServerError> {
    let mut r = Reader::new(payload);
    if r.u8()? != 0xff {
        return None;
    }
    let code = r.u16()?;
    let mut sql_state = None;
    if r.peek() == Some(b'#') {
        r.u8()?;
        let s = r.bytes(5)?;
        if !s.iter().all(u8::is_ascii_alphanumeric) {
            return None;
        }
        sql_state = Some(text(s));
    }
    Some(ServerError {
        code,
        sql_state,
        message: clean(&String::from_utf8_lossy(r.rest())),
    })
}

/// Whether `bytes`, the first a server sent, start like a MySQL greeting: a packet of
/// sequence 0 and a greeting's size whose payload is protocol 10 with a version starting with a
/// digit, or an error packet (what a server sends a refused host instead). Enough to tell the
/// protocol from a prefix; [`parse_greeting`] judges the whole packet.
pub fn greets(bytes: &[u8]) -> bool {
    let [a, b, c, seq, first, rest @ ..] = bytes else {
        return false;
    };
    let len = u32::from_le_bytes([*a, *b, *c, 0]);
    if *seq != 0 || !(3..=4096).contains(&len) {
        return false;
    }
    match first {
        10 => rest.first().is_some_and(u8::is_ascii_digit),
        0xff => rest.len() >= 2,
        _ => false,
    }
}

/// Parses the first packet a server sends. `None`: not MySQL.
pub fn parse_greeting(payload: &[u8]) -> Option<Greeting> {
    if payload.first() == Some(&0xff) {
        // Strict, since any first byte 0xff would otherwise do: a server error code and a
        // printable message.
        let e = parse_err(payload)?;
        let raw = payload.get(3..)?;
        let printable = std::str::from_utf8(raw)
            .ok()?
            .chars()
            .all(|c| !c.is_control());
        return ((1000..10_000).contains(&e.code) && !e.message.is_empty() && printable)
            .then_some(Greeting::Error(e));
    }
    parse_handshake(payload).map(Greeting::Handshake)
}

pub(super) fn parse_handshake(payload: &[u8]) -> Option<Handshake> {
    let mut r = Reader::new(payload);
    if r.u8()? != 10 {
        return None;
    }
    let version = r.nul_terminated()?;
    let version_ok = (1..=128).contains(&version.len())
        && version.first().is_some_and(u8::is_ascii_digit)
        && version.iter().all(|&c| (0x20..0x7f).contains(&c));
    if !version_ok {
        return None;
    }
    let connection_id = r.u32()?;
    let mut scramble = r.bytes(8)?.to_vec();
    if r.u8()? != 0 {
        return None;
    }
    let mut capabilities = u32::from(r.u16()?);
    let mut auth_plugin = None;
    // Servers before 4.1 stop here.
    if !r.is_empty() {
        let _charset = r.u8()?;
        let _status = r.u16()?;
        capabilities |= u32::from(r.u16()?) << 16;
        let auth_data_len = usize::from(r.u8()?);
        // Reserved: zeros in MySQL; MariaDB puts its extended capabilities in the last four.
        r.bytes(10)?;
        if capabilities & CLIENT_SECURE_CONNECTION != 0 {
            let part2 = r.bytes(auth_data_len.saturating_sub(8).max(13))?;
            let part2 = part2.strip_suffix(&[0]).unwrap_or(part2);
            scramble.extend_from_slice(part2);
        }
        if capabilities & CLIENT_PLUGIN_AUTH != 0 {
            // NUL-terminated, except in some 5.5 servers where it runs to the end.
            let rest = r.rest();
            let name = rest.split(|&c| c == 0).next().unwrap_or_default();
            if !name.is_empty() {
                if !is_plugin_name(name) {
                    return None;
                }
                auth_plugin = Some(text(name));
            }
        }
    }
    Some(Handshake {
        server_version: text(version),
        connection_id,
        scramble,
        capabilities,
        auth_plugin,
    })
}

/// Product and numeric version from a server version string. MariaDB prefixes `5.5.5-` so that
/// old clients that compare versions do not take 10.x for 1.0.
pub fn product_version(server_version: &str) -> (&'static str, Option<String>) {
    let is_maria = server_version.contains("MariaDB");
    let v = if is_maria {
        server_version
            .strip_prefix("5.5.5-")
            .unwrap_or(server_version)
    } else {
        server_version
    };
    let end = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let num = v.get(..end).unwrap_or_default().trim_end_matches('.');
    let version =
        (!num.is_empty() && num.starts_with(|c: char| c.is_ascii_digit())).then(|| num.to_string());
    (if is_maria { "MariaDB" } else { "MySQL" }, version)
}

/// Builds HandshakeResponse41 for `user` with an empty auth response. Never asks for TLS,
/// compression or LOCAL INFILE.
pub fn handshake_response(hs: &Handshake, user: &str, max_packet: u32) -> Result<Vec<u8>, String> {
    let needed = CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION;
    if hs.capabilities & needed != needed {
        return Err("the server predates the 4.1 protocol".into());
    }
    let mut caps = CLIENT_CAPS;
    let plugin_auth = hs.capabilities & CLIENT_PLUGIN_AUTH != 0;
    if plugin_auth {
        caps |= CLIENT_PLUGIN_AUTH;
    }
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&caps.to_le_bytes());
    out.extend_from_slice(&max_packet.to_le_bytes());
    out.push(CHARSET_UTF8);
    out.extend_from_slice(&[0; 23]);
    out.extend_from_slice(user.as_bytes());
    out.push(0);
    // Empty auth response: an empty password under mysql_native_password and
    // caching_sha2_password alike.
    out.push(0);
    if plugin_auth {
        // Anything but these two: name one we speak and let the server switch us if it must.
        let plugin = hs
            .auth_plugin
            .as_deref()
            .filter(|p| matches!(*p, "mysql_native_password" | "caching_sha2_password"))
            .unwrap_or("mysql_native_password");
        out.extend_from_slice(plugin.as_bytes());
        out.push(0);
    }
    Ok(out)
}

/// The auth response for an empty password after an AuthSwitchRequest to `plugin`, as the
/// reference client sends it; `None` for plugins this probe does not implement.
pub fn empty_password_response(plugin: &str) -> Option<&'static [u8]> {
    match plugin {
        "mysql_native_password" => Some(&[]),
        "caching_sha2_password" | "sha256_password" => Some(&[0]),
        _ => None,
    }
}

/// A server packet during authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthReply {
    Ok,
    Err(ServerError),
    /// AuthSwitchRequest.
    Switch(String),
    /// caching_sha2_password: the cached hash matched; OK follows.
    FastAuthOk,
    /// caching_sha2_password: the password is wanted over TLS or RSA.
    FullAuthNeeded,
}

/// An OK packet: header 0x00, affected rows, last insert id, status, warnings.
pub(super) fn is_ok_packet(payload: &[u8]) -> bool {
    let mut r = Reader::new(payload);
    r.u8() == Some(0)
        && r.lenenc().is_some()
        && r.lenenc().is_some()
        && r.u16().is_some()
        && r.u16().is_some()
}

pub(super) fn is_eof_packet(payload: &[u8]) -> bool {
    payload.first() == Some(&0xfe) && payload.len() < 9
}

pub fn parse_auth_reply(payload: &[u8]) -> Result<AuthReply, String> {
    match payload.first() {
        Some(0x00) if is_ok_packet(payload) => Ok(AuthReply::Ok),
        Some(0xff) => parse_err(payload)
            .map(AuthReply::Err)
            .ok_or_else(|| "malformed ERR packet".into()),
        Some(0xfe) if payload.len() == 1 => Ok(AuthReply::Switch("mysql_old_password".into())),
        Some(0xfe) => {
            let mut r = Reader::new(payload.get(1..).unwrap_or_default());
            match r.nul_terminated() {
                Some(name) if is_plugin_name(name) => Ok(AuthReply::Switch(text(name))),
                _ => Err("malformed AuthSwitchRequest".into()),
            }
        }
        Some(0x01) => match payload.get(1..) {
            Some([0x03]) => Ok(AuthReply::FastAuthOk),
            Some([0x04]) => Ok(AuthReply::FullAuthNeeded),
            _ => Err("unexpected AuthMoreData".into()),
        },
        _ => Err(format!(
            "unexpected packet during authentication: {}",
            preview(payload)
        )),
    }
}

/// How the login attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Login {
    Accepted,
    Refused(ServerError),
    /// The server wants something this probe does not do; the reason, for evidence.
    GaveUp(String),
}

/// Logs in as `user` with an empty password on a connection that has read the handshake.
pub(super) async fn login(
    ctx: &ProbeCtx,
    conn: &mut Conn,
    hs: &Handshake,
    user: &str,
) -> Result<Login, NetError> {
    let cap = ctx.opts.frame_cap;
    let max_packet = u32::try_from(cap).unwrap_or(u32::MAX).min(0xff_ffff);
    let response = match handshake_response(hs, user, max_packet) {
        Ok(r) => r,
        Err(why) => return Ok(Login::GaveUp(why)),
    };
    let mut seq = 1;
    send_next(conn, &mut seq, &response).await?;
    let mut switched = false;
    // At most: switch, fast-auth result, OK.
    for _ in 0..3 {
        let payload = read_next(conn, cap, &mut seq).await?;
        match parse_auth_reply(&payload).map_err(NetError::Invalid)? {
            AuthReply::Ok => return Ok(Login::Accepted),
            AuthReply::Err(e) => return Ok(Login::Refused(e)),
            AuthReply::FastAuthOk => continue,
            AuthReply::FullAuthNeeded => return Ok(Login::GaveUp(
                "caching_sha2_password asked for full authentication (password over TLS or RSA)"
                    .into(),
            )),
            AuthReply::Switch(plugin) => {
                let Some(answer) = empty_password_response(&plugin).filter(|_| !switched) else {
                    return Ok(Login::GaveUp(format!(
                        "the server switched to auth plugin {}, which this probe does not implement",
                        clean(&plugin)
                    )));
                };
                switched = true;
                send_next(conn, &mut seq, answer).await?;
            }
        }
    }
    Err(NetError::Invalid("authentication did not finish".into()))
}

/// A text-protocol result set, bounded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResultSet {
    pub columns: usize,
    /// Column names (as the server labels them), from the column definitions.
    pub names: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
    /// The row or byte cap was hit: more rows exist than `rows` holds, and the rest of the
    /// result set is still unread on the connection.
    pub truncated: bool,
}

/// The answer to COM_QUERY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryReply {
    Rows(ResultSet),
    /// OK without a result set.
    Ok,
    Err(ServerError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    Start,
    Columns(u64),
    ColumnsEof,
    Rows,
}

/// Reads a COM_QUERY answer packet by packet ("check, then parse" per packet), within a row cap
/// and a byte budget (wire bytes plus the memory of the cells kept).
pub(super) struct ResultReader {
    stage: Stage,
    set: ResultSet,
    bytes: usize,
    budget: usize,
    max_rows: usize,
}

impl ResultReader {
    #[cfg(test)]
    pub(super) fn new(budget: usize) -> Self {
        Self::with_rows(budget, MAX_ROWS)
    }

    pub(super) fn with_rows(budget: usize, max_rows: usize) -> Self {
        ResultReader {
            stage: Stage::Start,
            set: ResultSet::default(),
            bytes: 0,
            budget,
            max_rows,
        }
    }

    /// Takes the next packet; `Some` once the answer is complete (or cut at a cap).
    pub(super) fn feed(&mut self, payload: &[u8]) -> Result<Option<QueryReply>, String> {
        self.bytes = self.bytes.saturating_add(payload.len());
        match self.stage {
            Stage::Start => match payload.first() {
                Some(0x00) if is_ok_packet(payload) => Ok(Some(QueryReply::Ok)),
                Some(0xff) => parse_err(payload)
                    .map(|e| Some(QueryReply::Err(e)))
                    .ok_or_else(|| "malformed ERR packet".into()),
                // LOCAL INFILE request: a hostile server asking for a client file. Never
                // offered (no CLIENT_LOCAL_FILES), never answered.
                Some(0xfb) => Err("server asked for a LOCAL INFILE upload".into()),
                _ => {
                    let mut r = Reader::new(payload);
                    match r.lenenc() {
                        Some(n @ 1..=MAX_COLUMNS) if r.is_empty() => {
                            self.set.columns = n as usize;
                            self.stage = Stage::Columns(n);
                            Ok(None)
                        }
                        _ => Err(format!("not a result set: {}", preview(payload))),
                    }
                }
            },
            Stage::Columns(left) => {
                // ColumnDefinition41: catalog (always "def"), schema, table, org_table, name.
                let mut r = Reader::new(payload);
                if r.lenenc_bytes() != Some(b"def") {
                    return Err("malformed column definition".into());
                }
                for _ in 0..3 {
                    r.lenenc_bytes().ok_or("malformed column definition")?;
                }
                let name = r.lenenc_bytes().ok_or("malformed column definition")?;
                self.set.names.push(text(name));
                self.stage = if left > 1 {
                    Stage::Columns(left - 1)
                } else {
                    Stage::ColumnsEof
                };
                Ok(None)
            }
            Stage::ColumnsEof => {
                if !is_eof_packet(payload) {
                    return Err("missing EOF after column definitions".into());
                }
                self.stage = Stage::Rows;
                Ok(None)
            }
            Stage::Rows => {
                if is_eof_packet(payload) {
                    return Ok(Some(QueryReply::Rows(std::mem::take(&mut self.set))));
                }
                if payload.first() == Some(&0xff) {
                    return parse_err(payload)
                        .map(|e| Some(QueryReply::Err(e)))
                        .ok_or_else(|| "malformed ERR packet".into());
                }
                let row = parse_row(payload, self.set.columns)?;
                // A cell costs more in memory than on the wire (a NULL is one byte there, a
                // 24-byte Option<String> here): charge that too, so the budget bounds memory.
                self.bytes = self
                    .bytes
                    .saturating_add(row.len() * std::mem::size_of::<Option<String>>());
                if self.set.rows.len() >= self.max_rows || self.bytes > self.budget {
                    self.set.truncated = true;
                    return Ok(Some(QueryReply::Rows(std::mem::take(&mut self.set))));
                }
                self.set.rows.push(row);
                Ok(None)
            }
        }
    }
}

pub(super) fn parse_row(payload: &[u8], columns: usize) -> Result<Vec<Option<String>>, String> {
    let mut r = Reader::new(payload);
    let mut row = Vec::with_capacity(columns.min(MAX_COLUMNS as usize));
    for _ in 0..columns {
        if r.peek() == Some(0xfb) {
            r.u8();
            row.push(None);
        } else {
            let v = r.lenenc_bytes().ok_or("malformed row")?;
            row.push(Some(text(v)));
        }
    }
    if !r.is_empty() {
        return Err("row longer than its columns".into());
    }
    Ok(row)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::testkit::fixture;

    // Captured from Debian 12's MariaDB 10.11.19 (mariadbd on 127.0.23.x, fresh
    // mariadb-install-db) by a small Python socket client doing the exchange this probe does.
    /// Initial handshake.
    pub(in crate::protocols::mysql) const GREETING: &[u8] = fixture!("mysql/mariadb_greeting.bin");

    /// Greeting of a server with no account matching the client's address (ERR 1130).
    pub(in crate::protocols::mysql) const HOST_NOT_ALLOWED: &[u8] =
        fixture!("mysql/mariadb_host_not_allowed.bin");

    /// OK to root with an empty password (`'root'@'%' IDENTIFIED BY ''`).
    pub(in crate::protocols::mysql) const LOGIN_OK: &[u8] = fixture!("mysql/mariadb_login_ok.bin");

    /// `SHOW DATABASES` on that server (crm, information_schema, mysql, performance_schema,
    /// shop, sys).
    pub(in crate::protocols::mysql) const SHOW_DATABASES: &[u8] =
        fixture!("mysql/mariadb_show_databases.bin");

    pub(in crate::protocols::mysql) const SELECT_VERSION: &[u8] =
        fixture!("mysql/mariadb_select_version.bin");

    /// ERR 1045 to an empty password when root has a password.
    pub(in crate::protocols::mysql) const ACCESS_DENIED: &[u8] =
        fixture!("mysql/mariadb_access_denied.bin");

    /// AuthSwitchRequest for an account `IDENTIFIED VIA ed25519`.
    pub(in crate::protocols::mysql) const SWITCH_ED25519: &[u8] =
        fixture!("mysql/mariadb_switch_ed25519.bin");

    /// AuthSwitchRequest to mysql_native_password (the client had named caching_sha2_password),
    /// then OK after an empty answer.
    pub(in crate::protocols::mysql) const SWITCH_NATIVE_OK: &[u8] =
        fixture!("mysql/mariadb_switch_native_ok.bin");

    /// Splits captured bytes into (sequence id, payload) packets.
    pub(in crate::protocols::mysql) fn packets(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let Check::Complete(n) = check_packet(bytes, 1 << 20) else {
                panic!("bad fixture")
            };
            out.push((bytes[3], bytes[4..n].to_vec()));
            bytes = &bytes[n..];
        }
        out
    }

    pub(in crate::protocols::mysql) fn payload(bytes: &[u8]) -> Vec<u8> {
        let p = packets(bytes);
        assert_eq!(p.len(), 1);
        p[0].1.clone()
    }

    fn read_all(bytes: &[u8]) -> QueryReply {
        let mut r = ResultReader::new(1 << 20);
        for (i, (seq, p)) in packets(bytes).into_iter().enumerate() {
            assert_eq!(usize::from(seq), i + 1);
            if let Some(reply) = r.feed(&p).unwrap() {
                return reply;
            }
        }
        panic!("result set did not end")
    }

    pub(in crate::protocols::mysql) fn handshake(bytes: &[u8]) -> Handshake {
        match parse_greeting(&payload(bytes)) {
            Some(Greeting::Handshake(h)) => h,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn real_login_and_reads() {
        assert_eq!(parse_auth_reply(&payload(LOGIN_OK)), Ok(AuthReply::Ok));
        let QueryReply::Rows(set) = read_all(SHOW_DATABASES) else {
            panic!()
        };
        assert_eq!(set.columns, 1);
        assert!(!set.truncated);
        let names: Vec<_> = set.rows.iter().map(|r| r[0].clone().unwrap()).collect();
        assert_eq!(
            names,
            [
                "crm",
                "information_schema",
                "mysql",
                "performance_schema",
                "shop",
                "sys"
            ]
        );
        let QueryReply::Rows(v) = read_all(SELECT_VERSION) else {
            panic!()
        };
        assert_eq!(
            v.rows,
            vec![vec![Some("10.11.19-MariaDB-0+deb12u1".to_string())]]
        );
    }

    #[test]
    fn real_access_denied() {
        let Ok(AuthReply::Err(e)) = parse_auth_reply(&payload(ACCESS_DENIED)) else {
            panic!()
        };
        assert_eq!(e.code, 1045);
        assert_eq!(e.sql_state.as_deref(), Some("28000"));
        assert!(
            e.message.starts_with("Access denied for user 'root'"),
            "{e}"
        );
    }

    #[test]
    fn real_auth_switches() {
        assert_eq!(
            parse_auth_reply(&payload(SWITCH_ED25519)),
            Ok(AuthReply::Switch("client_ed25519".into()))
        );
        assert_eq!(empty_password_response("client_ed25519"), None);
        let p = packets(SWITCH_NATIVE_OK);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].0, 2);
        assert_eq!(
            parse_auth_reply(&p[0].1),
            Ok(AuthReply::Switch("mysql_native_password".into()))
        );
        assert_eq!(
            empty_password_response("mysql_native_password"),
            Some(&[][..])
        );
        assert_eq!(p[1].0, 4);
        assert_eq!(parse_auth_reply(&p[1].1), Ok(AuthReply::Ok));
    }

    #[test]
    fn handshake_response_is_minimal() {
        let hs = handshake(GREETING);
        let r = handshake_response(&hs, "root", 1 << 20).unwrap();
        let caps = u32::from_le_bytes(r[..4].try_into().unwrap());
        assert_eq!(caps & NEVER_OFFERED, 0);
        assert_ne!(caps & CLIENT_PLUGIN_AUTH, 0);
        assert!(r.ends_with(b"root\0\0mysql_native_password\0"));
        // A pre-4.1 server is not logged into.
        let old = Handshake {
            capabilities: 0xffff & !CLIENT_PROTOCOL_41,
            ..hs
        };
        assert!(handshake_response(&old, "root", 1 << 20).is_err());
    }

    #[test]
    fn only_allowlisted_sql_is_sent() {
        assert!(com_query("SHOW DATABASES").is_ok());
        assert_eq!(
            com_query("SELECT VERSION()").unwrap()[4..],
            *b"\x03SELECT VERSION()"
        );
        for sql in [
            "DROP DATABASE shop",
            "show databases",
            "SHOW DATABASES; DROP TABLE x",
            "SELECT * FROM `shop`.`users`",
            "",
        ] {
            assert!(com_query(sql).is_err(), "{sql}");
            assert!(com_query_with(sql, &[Arg::Ident("x")]).is_err(), "{sql}");
        }
        // A template with placeholders is only sent with its arguments.
        assert!(com_query(COUNT_ROWS).is_err());
        assert_eq!(
            com_query_with(COUNT_ROWS, &[Arg::Ident("shop"), Arg::Ident("users")]).unwrap()[4..],
            *b"\x03SELECT COUNT(*) FROM `shop`.`users`"
        );
    }

    /// Does `sql` consist of `template` with a backtick-quoted identifier for each `$IDENT` and a
    /// decimal integer for each `$INT`, and nothing else?
    pub(in crate::protocols::mysql) fn matches_template(sql: &str, template: &str) -> bool {
        let mut sql = sql;
        let mut rest = template;
        loop {
            let (lit, next) = match rest.find('$') {
                Some(i) => (&rest[..i], Some(&rest[i..])),
                None => (rest, None),
            };
            let Some(after) = sql.strip_prefix(lit) else {
                return false;
            };
            sql = after;
            let Some(next) = next else {
                return sql.is_empty();
            };
            if let Some(tail) = next.strip_prefix("$IDENT") {
                // `...` where a backtick inside is doubled.
                let Some(body) = sql.strip_prefix('`') else {
                    return false;
                };
                let b = body.as_bytes();
                let mut i = 0;
                loop {
                    match b.get(i) {
                        None => return false,
                        Some(b'`') if b.get(i + 1) == Some(&b'`') => i += 2,
                        Some(b'`') => break,
                        Some(_) => i += 1,
                    }
                }
                sql = &body[i + 1..];
                rest = tail;
            } else if let Some(tail) = next.strip_prefix("$INT") {
                let digits = sql.strip_prefix('-').unwrap_or(sql);
                let n = digits.bytes().take_while(u8::is_ascii_digit).count();
                if n == 0 {
                    return false;
                }
                sql = &digits[n..];
                rest = tail;
            } else {
                return false;
            }
        }
    }

    fn placeholders(template: &str) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut rest = template;
        while let Some(i) = rest.find('$') {
            rest = &rest[i..];
            let p = if rest.starts_with("$IDENT") {
                "$IDENT"
            } else if rest.starts_with("$INT") {
                "$INT"
            } else {
                panic!("unknown placeholder in {template}")
            };
            out.push(p);
            rest = &rest[p.len()..];
        }
        out
    }

    #[test]
    fn every_allowlisted_statement_only_reads() {
        // Words of statements that write, lock, flush, change settings or run code.
        const FORBIDDEN: &[&str] = &[
            "INSERT",
            "UPDATE",
            "DELETE",
            "REPLACE",
            "CREATE",
            "DROP",
            "ALTER",
            "TRUNCATE",
            "RENAME",
            "GRANT",
            "REVOKE",
            "LOCK",
            "UNLOCK",
            "FLUSH",
            "INTO",
            "LOAD",
            "HANDLER",
            "CALL",
            "DO",
            "KILL",
            "SHUTDOWN",
            "INSTALL",
            "UNINSTALL",
            "PURGE",
            "RESET",
            "CHANGE",
            "OPTIMIZE",
            "REPAIR",
            "ANALYZE",
            "CACHE",
            "SLEEP",
            "BENCHMARK",
            "GET_LOCK",
            "OUTFILE",
            "DUMPFILE",
            "FOR",
            "SHARE",
            "GLOBAL",
            "PERSIST",
            "PREPARE",
            "EXECUTE",
            "COMMIT",
            "SAVEPOINT",
            "XA",
            "BINLOG",
            "USE",
            "WRITE",
        ];
        let mut unique = ALLOWED_QUERIES.to_vec();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ALLOWED_QUERIES.len(), "duplicate template");
        // The two statement-level time limits are the only text allowed to hold `FOR` and
        // `/*`; they may only be followed by a SELECT, and what follows them passes every rule
        // below on its own.
        const LIMITS: &[&str] = &[
            "SET STATEMENT max_statement_time = $INT FOR SELECT ",
            "SELECT /*+ MAX_EXECUTION_TIME($INT) */ ",
        ];
        for template in ALLOWED_QUERIES {
            let t = &LIMITS
                .iter()
                .find_map(|l| template.strip_prefix(l))
                .map_or_else(|| template.to_string(), |rest| format!("SELECT {rest}"));
            let upper = t.to_ascii_uppercase();
            let read_shape = [
                "SELECT ",
                "SHOW ",
                "SET SESSION ",
                "START TRANSACTION READ ONLY",
            ]
            .iter()
            .any(|p| upper.starts_with(p));
            assert!(read_shape, "{t}");
            for bad in [";", "--", "/*", "#", "\\", "\"", "@"] {
                assert!(!t.contains(bad), "{t} contains {bad}");
            }
            for word in upper.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                assert!(!FORBIDDEN.contains(&word), "{t} contains {word}");
            }
            // SET only ever makes this session read-only or time-limited.
            if upper.starts_with("SET ") {
                assert!(
                    [SET_READ_ONLY, SET_STATEMENT_TIME, SET_EXECUTION_TIME].contains(&t.as_str()),
                    "{t}"
                );
            }
        }
    }

    #[test]
    fn the_distinct_counts_render_exactly_and_nothing_else_passes() {
        let args = [
            Arg::Int(10),
            Arg::Ident("user_id"),
            Arg::Ident("db"),
            Arg::Ident("t`x"),
        ];
        assert_eq!(
            render(COUNT_DISTINCT_MARIADB, &args).unwrap(),
            "SET STATEMENT max_statement_time = 10 FOR SELECT COUNT(DISTINCT `user_id`) FROM `db`.`t``x`"
        );
        assert_eq!(
            render(COUNT_VALUES_MYSQL, &args).unwrap(),
            "SELECT /*+ MAX_EXECUTION_TIME(10) */ COUNT(`user_id`) FROM `db`.`t``x`"
        );
        assert_eq!(
            render(SHOW_INDEX, &args[2..]).unwrap(),
            "SHOW INDEX FROM `db`.`t``x`"
        );
        // Near misses of the new templates are not allowlisted: another setting or statement
        // behind SET STATEMENT, a hint that is not the time limit, an expression counted.
        for sql in [
            "SET STATEMENT max_statement_time = $INT FOR DELETE FROM $IDENT.$IDENT",
            "SET STATEMENT sql_mode = $INT FOR SELECT COUNT(DISTINCT $IDENT) FROM $IDENT.$IDENT",
            "SET STATEMENT max_statement_time = $INT FOR SELECT COUNT(DISTINCT $IDENT) FROM $IDENT.$IDENT INTO OUTFILE $IDENT",
            "SELECT /*+ SET_VAR(sql_mode = $INT) */ COUNT(DISTINCT $IDENT) FROM $IDENT.$IDENT",
            "SELECT COUNT(DISTINCT $IDENT) FROM $IDENT.$IDENT FOR UPDATE",
            "SELECT COUNT(DISTINCT JSON_EXTRACT($IDENT, $IDENT)) FROM $IDENT.$IDENT",
            "SHOW INDEX FROM $IDENT",
            "SHOW CREATE TABLE $IDENT.$IDENT",
        ] {
            assert!(render(sql, &[]).is_err(), "{sql}");
            assert!(com_query_with(sql, &args).is_err(), "{sql}");
        }
        // An argument cannot turn the time limit into text: it is an integer or nothing.
        let id_for_int = [
            Arg::Ident("1; DROP TABLE x"),
            Arg::Ident("c"),
            Arg::Ident("d"),
            Arg::Ident("t"),
        ];
        assert!(render(COUNT_DISTINCT_MARIADB, &id_for_int).is_err());
        assert!(render(COUNT_DISTINCT_MYSQL, &args[1..]).is_err());
    }

    #[test]
    fn templates_render_only_with_their_arguments() {
        for t in ALLOWED_QUERIES {
            let kinds = placeholders(t);
            let good: Vec<Arg> = kinds
                .iter()
                .map(|k| {
                    if *k == "$IDENT" {
                        Arg::Ident("t")
                    } else {
                        Arg::Int(-42)
                    }
                })
                .collect();
            let sql = render(t, &good).unwrap();
            assert!(matches_template(&sql, t), "{sql}");
            assert!(!sql.contains('$'), "{sql}");
            let mut more = good.clone();
            more.push(Arg::Int(1));
            assert!(render(t, &more).is_err(), "{t}");
            if let Some((_, fewer)) = good.split_last() {
                assert!(render(t, fewer).is_err(), "{t}");
                let swapped: Vec<Arg> = good
                    .iter()
                    .map(|a| match a {
                        Arg::Ident(_) => Arg::Int(1),
                        _ => Arg::Ident("1"),
                    })
                    .collect();
                assert!(render(t, &swapped).is_err(), "{t}");
            }
        }
    }

    #[test]
    fn identifiers_cannot_leave_their_quotes() {
        let hostile = [
            "a`; DROP TABLE x; -- ",
            "`",
            "``",
            "x` UNION SELECT password FROM mysql.user #",
            "a'b\"c\\",
            "名前 with spaces",
            "a`.`b",
        ];
        for h in hostile {
            let sql = render(COUNT_ROWS, &[Arg::Ident(h), Arg::Ident("t")]).unwrap();
            assert!(matches_template(&sql, COUNT_ROWS), "{sql}");
            // Unquoting gives the name back: it stayed one identifier.
            let quoted = sql
                .strip_prefix("SELECT COUNT(*) FROM `")
                .and_then(|s| s.strip_suffix("`.`t`"))
                .unwrap();
            assert_eq!(quoted.replace("``", "`"), h);
            // And it matches no other template (say, one with more identifiers).
            for other in ALLOWED_QUERIES.iter().filter(|o| **o != COUNT_ROWS) {
                assert!(!matches_template(&sql, other), "{sql} ~ {other}");
            }
        }
        let long = "x".repeat(257);
        for bad in ["", "a\0b", long.as_str()] {
            assert!(render(COUNT_ROWS, &[Arg::Ident(bad), Arg::Ident("t")]).is_err());
        }
        assert_eq!(
            render(
                SAMPLE_AT_OFFSET,
                &[Arg::Ident("d"), Arg::Ident("t"), Arg::Int(10), Arg::Int(3)]
            ),
            Ok("SELECT * FROM `d`.`t` LIMIT 10, 3".into())
        );
    }

    /// The string literals of Rust source, comments skipped (no raw strings in these files).
    fn string_literals(src: &str) -> Vec<String> {
        let b = src.as_bytes();
        let (mut out, mut i) = (Vec::new(), 0);
        while i < b.len() {
            match b[i] {
                b'/' if b.get(i + 1) == Some(&b'/') => {
                    i += b[i..].iter().position(|&c| c == b'\n').unwrap_or(b.len());
                }
                // A char literal ('"', '\'', 'x'); otherwise a lifetime.
                b'\'' if b.get(i + 1) == Some(&b'\\') => {
                    let end = b
                        .get(i + 3..)
                        .and_then(|r| r.iter().position(|&c| c == b'\''));
                    i = end.map_or(b.len(), |n| i + 3 + n + 1);
                }
                b'\'' if b.get(i + 2) == Some(&b'\'') => i += 3,
                b'"' => {
                    let mut lit = String::new();
                    i += 1;
                    while i < b.len() && b[i] != b'"' {
                        if b[i] == b'\\' {
                            i += 1;
                        }
                        if let Some(&c) = b.get(i) {
                            lit.push(c as char);
                        }
                        i += 1;
                    }
                    out.push(lit);
                    i += 1;
                }
                _ => i += 1,
            }
        }
        out
    }

    #[test]
    fn sql_in_the_sources_is_allowlisted() {
        // Every string literal in the module's code that starts like SQL must be (part of) an
        // allowlisted template: no statement is assembled anywhere else.
        const STARTS: &[&str] = &[
            "SELECT", "SHOW", "SET ", "START", "INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE",
            "DROP", "ALTER", "TRUNCATE", "GRANT", "LOCK", "FLUSH", "LOAD", "CALL", "KILL", "DO ",
            "HANDLER", "COMMIT", "ROLLBACK", "USE ", "WITH ", "EXPLAIN", "DESC", "ANALYZE",
        ];
        let sources = [
            ("mod.rs", include_str!("mod.rs")),
            ("wire.rs", include_str!("wire.rs")),
            ("probe.rs", include_str!("probe.rs")),
            ("inventory.rs", include_str!("inventory.rs")),
            ("count.rs", include_str!("count.rs")),
        ];
        for (file, src) in sources {
            // Everything from the first test module on is test code (`mod tests`, or the
            // `pub(super) mod tests` whose fake server other modules' tests share).
            let code = src.split("\n#[cfg(test)]\n").next().unwrap();
            let mut sql = 0;
            for lit in string_literals(code) {
                let upper = lit.trim_start().to_ascii_uppercase();
                if !STARTS.iter().any(|s| upper.starts_with(s)) {
                    continue;
                }
                sql += 1;
                assert!(
                    ALLOWED_QUERIES.iter().any(|t| t.contains(lit.as_str())),
                    "{file}: SQL outside the allowlist: {lit:?}"
                );
            }
            // The scanner does see the templates themselves.
            assert!(file != "wire.rs" || sql >= ALLOWED_QUERIES.len(), "{sql}");
        }
        assert_eq!(
            string_literals("let c = '\"'; fn f<'a>(x: &'a str) {} // \"no\"\n g(\"SE\\\"LECT\");"),
            ["SE\"LECT"]
        );
    }

    // MySQL itself is not packaged in Debian 12 (default-mysql-server depends on
    // mariadb-server), so its caching_sha2_password exchanges are built from the MySQL
    // protocol documentation ("Protocol::HandshakeV10", "Caching_sha2_password information").
    pub(in crate::protocols::mysql) fn mysql8_greeting() -> Vec<u8> {
        let mut p = vec![10];
        p.extend_from_slice(b"8.0.36\0");
        p.extend_from_slice(&9u32.to_le_bytes());
        p.extend_from_slice(b"abcdefgh\0");
        p.extend_from_slice(&0xffffu16.to_le_bytes());
        p.push(255);
        p.extend_from_slice(&2u16.to_le_bytes());
        p.extend_from_slice(&0xdfffu16.to_le_bytes());
        p.push(21);
        p.extend_from_slice(&[0; 10]);
        p.extend_from_slice(b"ijklmnopqrst\0caching_sha2_password\0");
        frame(0, &p)
    }

    pub(in crate::protocols::mysql) fn ok_packet() -> Vec<u8> {
        vec![0, 0, 0, 2, 0, 0, 0]
    }

    /// A one-column result set as MySQL sends it (seq 1..).
    pub(in crate::protocols::mysql) fn result_set(rows: &[&str]) -> Vec<u8> {
        let mut seq = 1;
        let mut out = Vec::new();
        let mut push = |p: &[u8]| {
            out.extend(frame(seq, p));
            seq += 1;
        };
        push(&[1]);
        push(b"\x03def\x12information_schema\x08SCHEMATA\x08SCHEMATA\x08Database\x0bSCHEMA_NAME\x0c\xff\x00\x00\x01\x00\x00\xfd\x01\x10\x00\x00\x00");
        push(&[0xfe, 0, 0, 2, 0]);
        for r in rows {
            let mut p = vec![r.len() as u8];
            p.extend_from_slice(r.as_bytes());
            push(&p);
        }
        push(&[0xfe, 0, 0, 2, 0]);
        out
    }

    #[test]
    fn mysql8_caching_sha2() {
        let hs = handshake(&mysql8_greeting());
        assert_eq!(
            product_version(&hs.server_version),
            ("MySQL", Some("8.0.36".into()))
        );
        assert_eq!(hs.auth_plugin.as_deref(), Some("caching_sha2_password"));
        assert_eq!(hs.scramble, b"abcdefghijklmnopqrst");
        let r = handshake_response(&hs, "root", 1 << 20).unwrap();
        assert!(r.ends_with(b"root\0\0caching_sha2_password\0"));
        assert_eq!(parse_auth_reply(&[0x01, 0x03]), Ok(AuthReply::FastAuthOk));
        assert_eq!(
            parse_auth_reply(&[0x01, 0x04]),
            Ok(AuthReply::FullAuthNeeded)
        );
        let mut switch = b"\xfecaching_sha2_password\0".to_vec();
        switch.extend_from_slice(b"01234567890123456789\0");
        assert_eq!(
            parse_auth_reply(&switch),
            Ok(AuthReply::Switch("caching_sha2_password".into()))
        );
        assert_eq!(
            empty_password_response("caching_sha2_password"),
            Some(&[0u8][..])
        );
        let QueryReply::Rows(set) = read_all(&result_set(&["information_schema", "mysql"])) else {
            panic!()
        };
        assert_eq!(set.rows.len(), 2);
    }

    #[test]
    fn product_and_version_strings() {
        assert_eq!(
            product_version("8.0.36-0ubuntu0.22.04.1"),
            ("MySQL", Some("8.0.36".into()))
        );
        assert_eq!(
            product_version("5.7.44-log"),
            ("MySQL", Some("5.7.44".into()))
        );
        assert_eq!(
            product_version("11.4.2-MariaDB"),
            ("MariaDB", Some("11.4.2".into()))
        );
        assert_eq!(
            product_version("5.5.5-10.6.18-MariaDB-log"),
            ("MariaDB", Some("10.6.18".into()))
        );
        assert_eq!(product_version("x"), ("MySQL", None));
    }

    #[test]
    fn oversized_and_empty_packets_are_refused_from_the_header() {
        let cap = 1 << 20;
        assert_eq!(
            check_packet(&[0xff, 0xff, 0xff, 0], cap),
            Check::TooLarge(cap)
        );
        assert_eq!(
            check_packet(&[0x00, 0x00, 0x20, 0], cap),
            Check::TooLarge(cap)
        );
        assert_eq!(
            check_packet(&[0x01, 0x00, 0x10, 0], cap),
            Check::TooLarge(cap)
        );
        // Exactly the cap is accepted: not refused from the header, awaited in full.
        assert_eq!(check_packet(&[0x00, 0x00, 0x10, 0], cap), Check::Incomplete);
        assert!(matches!(
            check_packet(&[0xff, 0xff, 0xff, 0], 1 << 25),
            Check::Invalid(_)
        ));
        assert!(matches!(
            check_packet(&[0, 0, 0, 0], cap),
            Check::Invalid(_)
        ));
        assert_eq!(check_packet(&[0x05, 0, 0], cap), Check::Incomplete);
        assert_eq!(check_packet(&[0x05, 0, 0, 0], cap), Check::Incomplete);
        assert_eq!(check_packet(b"\x05\0\0\0abcde", cap), Check::Complete(9));
    }

    /// Found by fuzz/fuzz_targets/mysql.rs: a header announcing more than is buffered was
    /// `Complete(4 + len)` beyond the end of the buffer.
    #[test]
    fn complete_packets_lie_within_the_buffer() {
        let cap = 1 << 20;
        let mut packet = vec![0x10, 0, 0, 1];
        packet.extend_from_slice(&[b'x'; 0x10]);
        for n in 0..packet.len() {
            assert_eq!(
                check_packet(&packet[..n], cap),
                Check::Incomplete,
                "{n} bytes"
            );
        }
        assert_eq!(check_packet(&packet, cap), Check::Complete(packet.len()));
        packet.extend_from_slice(b"next");
        assert_eq!(check_packet(&packet, cap), Check::Complete(0x14));
    }

    /// Deterministic pseudo-random bytes.
    fn garbage(seed: &mut u64, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                *seed as u8
            })
            .collect()
    }

    #[test]
    fn other_protocols_and_garbage_are_not_mysql() {
        let others: &[&[u8]] = &[
            b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n",
            b"220 ftp.example ready\r\n",
            b"HTTP/1.1 400 Bad Request\r\n\r\n",
            b"-ERR unknown command\r\n",
            b"+OK\r\n",
            b"\x15\x03\x03\x00\x02\x02\x28",
            b"E\x00\x00\x00\x10SFATAL\x00\x00",
            fixture!("redis/noauth.resp"),
            fixture!("memcached/version_stats.txt"),
        ];
        for bytes in others {
            match check_packet(bytes, 1 << 20) {
                Check::Complete(n) => {
                    if let Some(p) = bytes.get(4..n) {
                        assert_eq!(parse_greeting(p), None, "{bytes:?}");
                    }
                }
                Check::Invalid(_) | Check::Incomplete | Check::TooLarge(_) => {}
            }
            assert_eq!(parse_greeting(bytes), None, "{bytes:?}");
            assert!(!greets(bytes), "{bytes:?}");
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        for i in 0..20_000 {
            let g = garbage(&mut seed, i % 200);
            assert_eq!(parse_greeting(&g), None);
            let _ = parse_auth_reply(&g);
            let _ = ResultReader::new(1 << 20).feed(&g);
        }
        // A recognisable greeting cut anywhere never panics.
        let full = payload(GREETING);
        for n in 0..full.len() {
            let _ = parse_greeting(&full[..n]);
        }
    }

    #[test]
    fn a_greeting_is_recognised_from_its_first_bytes() {
        for g in [GREETING, HOST_NOT_ALLOWED] {
            assert!(greets(g));
            // Identification keeps at most 64 bytes of what a probe met.
            assert!(greets(&g[..g.len().min(64)]));
        }
        // Too short to tell, a later packet, an absurd length.
        assert!(!greets(&GREETING[..4]));
        let mut later = GREETING.to_vec();
        later[3] = 1;
        assert!(!greets(&later));
        assert!(!greets(b"\xff\xff\xff\x00\x0a5.7"));
    }

    #[test]
    fn honeypot_replies_are_not_a_result_set() {
        // "Yes" to everything: an OK packet, a bare 0x00, a text line.
        for p in [
            &ok_packet()[..],
            b"\x00",
            b"+OK\r\n",
            b"\xfe",
            b"\xfb/etc/passwd",
        ] {
            let mut r = ResultReader::new(1 << 20);
            assert!(!matches!(r.feed(p), Ok(Some(QueryReply::Rows(_)))), "{p:?}");
        }
        assert!(parse_auth_reply(b"\x00").is_err());
    }

    #[test]
    fn null_heavy_rows_are_charged_their_memory() {
        // 4096 NULL columns: 4 KB on the wire, ~100 KB as cells. The budget bounds the latter.
        let budget = 1 << 20;
        let mut r = ResultReader::with_rows(budget, MAX_ROWS);
        assert_eq!(r.feed(&[0xfc, 0x00, 0x10]), Ok(None));
        for _ in 0..4096 {
            assert_eq!(r.feed(b"\x03def\x00\x00\x00\x01c"), Ok(None));
        }
        assert_eq!(r.feed(&[0xfe, 0, 0, 2, 0]), Ok(None));
        let row = vec![0xfb; 4096];
        let set = loop {
            if let Some(QueryReply::Rows(set)) = r.feed(&row).unwrap() {
                break set;
            }
        };
        assert!(set.truncated);
        assert_eq!(set.names.len(), 4096);
        let kept = set.rows.len() * 4096 * std::mem::size_of::<Option<String>>();
        assert!(kept <= budget, "{kept}");
        assert!(set.rows.len() >= 5, "{}", set.rows.len());
    }

    #[test]
    fn row_cap_truncates() {
        let mut r = ResultReader::new(1 << 20);
        for (_, p) in packets(&result_set(&[]))[..3].iter() {
            assert_eq!(r.feed(p), Ok(None));
        }
        for _ in 0..MAX_ROWS {
            assert_eq!(r.feed(b"\x01a"), Ok(None));
        }
        let Ok(Some(QueryReply::Rows(set))) = r.feed(b"\x01a") else {
            panic!()
        };
        assert!(set.truncated);
        assert_eq!(set.rows.len(), MAX_ROWS);
    }
}
