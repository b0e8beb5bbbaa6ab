//! PostgreSQL's frontend/backend protocol 3.0 as leakscope speaks it: messages (every length
//! judged before anything is buffered), the startup and its authentication (SCRAM-SHA-256 with
//! the server's signature verified, MD5, cleartext), the one-column answer of the probe, and the
//! SQL allowlist with the one function that sends.
//!
//! Hand-written over [`Conn`] rather than a driver: a driver's reads are not bounded by our
//! caps and deadlines, and a driver sends statements of its own that no allowlist covers.
//!
//! Every statement sent, by the probe, the inventory and the distinct-people count, is one of
//! the constant templates in [`ALLOWED_QUERIES`]; [`render`] fills their placeholders with typed
//! values only (quoted identifiers, integers, a percentage, quoted string literals), and
//! `send_query` is the one function that puts SQL on the wire.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub use crate::driver::sql::Arg;
use crate::driver::sql::{Allowlist, Dialect};
pub(super) use crate::driver::Credential;
use crate::driver::{preview, Failure, ProbeCtx, Seen, Session};
use crate::net::{Check, Conn, NetError};

/// Lists the databases that accept connections: catalog metadata, read-only.
pub const LIST_DATABASES: &str = "SELECT datname FROM pg_database WHERE datallowconn";

/// Opens the transaction every inventory statement runs in.
pub const BEGIN_READ_ONLY: &str = "BEGIN READ ONLY";

/// Milliseconds: what is left of the time budget.
pub const SET_STATEMENT_TIMEOUT: &str = "SET LOCAL statement_timeout = $INT";

/// Milliseconds we wait for a lock before giving up on a table.
pub const SET_LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = $INT";

/// Ends every transaction: nothing of it is kept, whatever happened inside.
pub const ROLLBACK: &str = "ROLLBACK";

/// Databases a session may connect to (templates excluded) and whether we may.
pub const LIST_DATABASES_FOR_INVENTORY: &str =
    "SELECT datname, has_database_privilege(oid, 'CONNECT') \
     FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname";

/// The relations of the current database outside the system schemas, with the main-fork and
/// total size expressions given. Partitions are folded into their partitioned table (rows,
/// pages and bytes summed over the whole tree), so a partitioned table is one holding.
/// Columns: oid, schema, name, relkind, reltuples (-1 = never analysed), relpages, main-fork
/// bytes, total bytes (with indexes and TOAST), owned by an extension, SELECT allowed.
macro_rules! list_relations {
    ($heap:literal, $total:literal) => {
        concat!(
            "WITH RECURSIVE tree(root, rel) AS (SELECT oid, oid FROM pg_class WHERE relkind = 'p' \
             UNION ALL SELECT t.root, i.inhrelid FROM tree t JOIN pg_inherits i ON i.inhparent = t.rel), \
             parts AS (SELECT t.root, \
             sum(CASE WHEN c.relkind = 'p' THEN 0 ELSE greatest(c.reltuples, 0) END) AS tuples, \
             bool_or(c.relkind <> 'p' AND c.reltuples < 0) AS unknown, sum(c.relpages) AS pages, sum(",
            $heap,
            ") AS heap, sum(",
            $total,
            ") AS total FROM tree t JOIN pg_class c ON c.oid = t.rel GROUP BY t.root) \
             SELECT c.oid, n.nspname, c.relname, c.relkind, \
             (CASE WHEN c.relkind <> 'p' THEN c.reltuples WHEN p.unknown THEN -1 ELSE p.tuples END)::float8, \
             coalesce(p.pages, c.relpages)::int8, coalesce(p.heap, ",
            $heap,
            ")::int8, coalesce(p.total, ",
            $total,
            ")::int8, EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
             AND d.objid = c.oid AND d.deptype = 'e'), has_table_privilege(c.oid, 'SELECT') \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN parts p ON p.root = c.oid \
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') \
             AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)' \
             AND NOT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class pc ON pc.oid = i.inhparent \
             WHERE i.inhrelid = c.oid AND pc.relkind = 'p') \
             ORDER BY n.nspname, c.relname"
        )
    };
}

/// Relations with their sizes on disk. `pg_relation_size` takes a share lock on each relation,
/// so one table locked by DDL stalls this query until `lock_timeout`.
pub const LIST_RELATIONS: &str =
    list_relations!("pg_relation_size(c.oid)", "pg_total_relation_size(c.oid)");

/// The same without any relation lock, when [`LIST_RELATIONS`] hit a lock: sizes from the
/// statistics (`relpages`, heap only), so a table never vacuumed shows 0 bytes.
pub const LIST_RELATIONS_UNLOCKED: &str = list_relations!(
    "c.relpages::int8 * current_setting('block_size')::int8",
    "c.relpages::int8 * current_setting('block_size')::int8"
);

/// Column names and declared types of the same relations, in column order.
pub const LIST_COLUMNS: &str = "SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod) \
     FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
     JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f') \
     AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)' \
     AND NOT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class pc ON pc.oid = i.inhparent \
     WHERE i.inhrelid = c.oid AND pc.relkind = 'p') \
     ORDER BY n.nspname, c.relname, a.attnum";

/// Exact row count of `schema.table` (a sequential or index-only scan; constant memory).
pub const COUNT_ROWS: &str = "SELECT count(*) FROM $IDENT.$IDENT";

/// One sampled row as JSON text, with string values cut on the server so a row of large
/// values costs little to transfer: strings that look like JSON (they are parsed later) keep
/// up to the first `$INT` characters, other strings the second `$INT`. `leakscope_row.*` is a
/// whole-row reference even when the table has a column named like the alias.
macro_rules! sample_select {
    () => {
        "SELECT (SELECT jsonb_object_agg(e.key, CASE WHEN jsonb_typeof(e.value) <> 'string' \
         THEN e.value WHEN left(ltrim(e.value #>> '{}', E' \\t\\r\\n'), 1) IN ('{', '[') \
         THEN to_jsonb(left(e.value #>> '{}', $INT)) \
         ELSE to_jsonb(left(e.value #>> '{}', $INT)) END) \
         FROM jsonb_each(to_jsonb(leakscope_row.*)) AS e)::text FROM $IDENT.$IDENT AS leakscope_row"
    };
}

/// Large tables: random blocks (`$PCT` percent of them), rows shuffled, the first `$INT` kept.
pub const SAMPLE_TABLESAMPLE: &str = concat!(
    sample_select!(),
    " TABLESAMPLE SYSTEM ($PCT) ORDER BY random() LIMIT $INT"
);

/// Small tables: a uniform sample of the whole table.
pub const SAMPLE_RANDOM: &str = concat!(sample_select!(), " ORDER BY random() LIMIT $INT");

/// When TABLESAMPLE found too few rows (stale statistics, bloat): the first rows found.
pub const SAMPLE_FIRST: &str = concat!(sample_select!(), " LIMIT $INT");

/// What the catalogue knows about one column of one table, by name: `$TEXT` the column, then
/// `$TEXT` the table as `schema.table` (compared whole, so dots inside either name are fine;
/// two tables that both read `a.b.c` that way are reported as ambiguous). Columns: schema,
/// table, relkind, reltuples (-1 = never analysed), attnum (NULL: no such column), attnotnull,
/// the unique single-column index on it (the primary key first), and `pg_stats` null_frac and
/// n_distinct (NULL: no statistics). Partial and expression indexes do not count: they do not
/// make the column's values unique in the whole table.
pub const LOOKUP: &str = "SELECT n.nspname, c.relname, c.relkind, c.reltuples::float8, a.attnum, \
     a.attnotnull, (SELECT x.relname FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid \
     WHERE i.indrelid = c.oid AND i.indisunique AND i.indisvalid AND i.indnatts = 1 \
     AND i.indkey[0] = a.attnum AND i.indpred IS NULL AND i.indexprs IS NULL \
     ORDER BY i.indisprimary DESC, x.relname LIMIT 1), s.null_frac::float8, s.n_distinct::float8 \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = $TEXT AND a.attnum > 0 \
     AND NOT a.attisdropped \
     LEFT JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname \
     AND s.attname = a.attname AND s.inherited = (c.relkind = 'p') \
     WHERE n.nspname || '.' || c.relname = $TEXT AND c.relkind IN ('r', 'p', 'm')";

/// Non-NULL values of a uniquely indexed, nullable column: its distinct values.
pub const COUNT_VALUES: &str = "SELECT count($IDENT) FROM $IDENT.$IDENT";

/// Exact distinct values of a column (a sort inside the server; NULL is not a value).
pub const COUNT_DISTINCT: &str = "SELECT count(DISTINCT $IDENT) FROM $IDENT.$IDENT";

/// Exact distinct values of one key of a json/jsonb column (as text; NULL where absent).
pub const COUNT_DISTINCT_KEY: &str = "SELECT count(DISTINCT $IDENT ->> $TEXT) FROM $IDENT.$IDENT";

/// Distinct values among those whose hash has its low bits (`$INT` = modulus − 1) all zero: a
/// sample of the values, not of the rows, so every row of a sampled value is in it and the
/// count times the modulus estimates the whole (see [`crate::driver::from_value_sample`]). The distinct set
/// is a modulus-th of the full count's, which is what makes it fast on big tables.
pub const COUNT_DISTINCT_HASHED: &str =
    "SELECT count(DISTINCT $IDENT) FROM $IDENT.$IDENT WHERE hashtext($IDENT::text) & $INT = 0";

/// The only SQL leakscope ever sends to PostgreSQL, enforced in [`render`]. The inventory's
/// statements run inside `BEGIN READ ONLY`, so even a mistake here could not write.
pub const ALLOWED_QUERIES: &[&str] = &[
    LIST_DATABASES,
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
    LOOKUP,
    COUNT_VALUES,
    COUNT_DISTINCT,
    COUNT_DISTINCT_KEY,
    COUNT_DISTINCT_HASHED,
];

/// Every statement this module may send, in PostgreSQL's dialect (see [`crate::driver::sql`]).
pub const SQL: Allowlist = Allowlist {
    dialect: Dialect::PostgreSql,
    templates: ALLOWED_QUERIES,
};

/// Builds the SQL text of an allowlisted template: quoted identifiers (`$IDENT`), integers
/// (`$INT`), a percentage (`$PCT`), quoted string literals (`$TEXT`); anything else is refused
/// (see [`Allowlist::render`]).
pub fn render(template: &str, args: &[Arg]) -> Result<String, String> {
    SQL.render(template, args)
}

/// Sends one simple Query built by [`render`]: the only function that sends SQL.
pub(super) async fn send_query(
    s: &mut Session,
    template: &str,
    args: &[Arg<'_>],
) -> Result<(), Fail> {
    let mut body = render(template, args)
        .map_err(Failure::Refused)?
        .into_bytes();
    body.push(0);
    s.send(&frontend(b'Q', &body)).await
}

/// Why a statement gave no answer: the server refused it (the session is still usable; the
/// transaction is aborted), the connection broke or the peer stopped speaking the protocol,
/// or the budget ran out.
pub(crate) type Fail = Failure<PgError>;

/// The user the unauthenticated startup names: the superuser every installation has.
pub(super) const USER: &str = "postgres";

/// `postgres` may have been dropped; `template1` exists in every cluster.
pub(super) const DATABASES: &[&str] = &["postgres", "template1"];

pub(super) const PROTOCOL_3_0: i32 = 196_608;

pub(super) const SSL_REQUEST_CODE: i32 = 80_877_103;

/// PostgreSQL uses 4096; a hostile server could ask for billions to burn our CPU.
pub(super) const MAX_SCRAM_ITERATIONS: u32 = 100_000;

/// Messages accepted between AuthenticationOk and ReadyForQuery (a real server sends ~15).
pub(super) const MAX_STARTUP_MESSAGES: usize = 1_000;

/// Rows read from the catalog query before giving up on the peer.
pub(super) const MAX_ROWS: usize = 10_000;

/// Longest text kept from a peer for evidence.
pub(super) const MAX_TEXT: usize = 200;

/// A backend message: type byte and body (without the length word).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub ty: u8,
    pub body: Vec<u8>,
}

/// Checks for one backend message (type byte, int32 length including itself, body). The length
/// is judged against `cap` as soon as its four bytes are here, so a giant length costs nothing;
/// a type byte outside `allowed` ends the read at once, which is also how other protocols'
/// answers are told apart quickly.
pub fn check_message(buf: &[u8], cap: usize, allowed: &[u8]) -> Check {
    let Some(&ty) = buf.first() else {
        return Check::Incomplete;
    };
    if !allowed.contains(&ty) {
        return Check::Invalid(format!("unexpected message type {:?}", preview(&[ty])));
    }
    let Some(&[a, b, c, d]) = buf.get(1..5) else {
        return Check::Incomplete;
    };
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    if len < 4 {
        return Check::Invalid(format!("message length {len} is below 4"));
    }
    if len > cap {
        return Check::Invalid(format!("message length {len} exceeds the {cap}-byte cap"));
    }
    if buf.len() > len {
        Check::Complete(len + 1)
    } else {
        Check::Incomplete
    }
}

/// Splits a frame accepted by [`check_message`].
pub(super) fn to_msg(frame: &[u8]) -> Option<Msg> {
    let (&ty, rest) = frame.split_first()?;
    Some(Msg {
        ty,
        body: rest.get(4..)?.to_vec(),
    })
}

pub(super) async fn recv(conn: &mut Conn, cap: usize, allowed: &[u8]) -> Result<Msg, NetError> {
    let frame = conn
        .read_frame(cap.saturating_add(1), |b| check_message(b, cap, allowed))
        .await?;
    to_msg(&frame).ok_or_else(|| NetError::Invalid("short message".into()))
}

/// A frontend message with a type byte.
pub(super) fn frontend(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(ty);
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// StartupMessage, protocol 3.0.
pub fn startup_message(user: &str, database: &str) -> Vec<u8> {
    let mut body = PROTOCOL_3_0.to_be_bytes().to_vec();
    for (k, v) in [
        ("user", user),
        ("database", database),
        ("application_name", "leakscope"),
        // Text results in UTF-8 whatever the database encoding (PgBouncer passes this one on).
        ("client_encoding", "UTF8"),
    ] {
        for s in [k, v] {
            body.extend_from_slice(s.as_bytes());
            body.push(0);
        }
    }
    body.push(0);
    let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

pub(super) fn ssl_request() -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&8u32.to_be_bytes());
    out[4..].copy_from_slice(&SSL_REQUEST_CODE.to_be_bytes());
    out
}

pub(super) const TERMINATE: &[u8] = b"X\0\0\0\x04";

/// A cursor over a message body; every read is bounds-checked.
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    pub(super) fn i32(&mut self) -> Option<i32> {
        let b = self.take(4)?;
        Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(super) fn i16(&mut self) -> Option<i16> {
        let b = self.take(2)?;
        Some(i16::from_be_bytes([b[0], b[1]]))
    }

    pub(super) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    pub(super) fn cstr(&mut self) -> Option<&'a [u8]> {
        let end = self.0.iter().position(|&b| b == 0)?;
        let s = self.take(end)?;
        self.take(1)?;
        Some(s)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Printable, bounded text from peer bytes, for evidence.
pub(super) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_TEXT)
        .collect()
}

/// An Authentication ('R') message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthRequest {
    Ok,
    KerberosV5,
    Cleartext,
    Md5([u8; 4]),
    Gss,
    GssContinue,
    Sspi,
    Sasl(Vec<String>),
    SaslContinue(Vec<u8>),
    SaslFinal(Vec<u8>),
}

impl AuthRequest {
    /// The method in words, for evidence.
    pub(super) fn method(&self) -> String {
        match self {
            AuthRequest::Ok => "none (trust)".into(),
            AuthRequest::KerberosV5 => "Kerberos V5".into(),
            AuthRequest::Cleartext => "cleartext password".into(),
            AuthRequest::Md5(_) => "MD5 password".into(),
            AuthRequest::Gss | AuthRequest::GssContinue => "GSSAPI".into(),
            AuthRequest::Sspi => "SSPI".into(),
            AuthRequest::Sasl(m) => format!("SASL {}", m.join(", ")),
            AuthRequest::SaslContinue(_) | AuthRequest::SaslFinal(_) => "SASL".into(),
        }
    }
}

/// Parses an Authentication message body. Lengths must be exactly what the code implies, so a
/// stray 'R' from another protocol does not pass.
pub fn parse_auth(body: &[u8]) -> Option<AuthRequest> {
    let mut r = Reader(body);
    let code = r.i32()?;
    let fixed = |req: AuthRequest, r: &Reader| r.is_empty().then_some(req);
    match code {
        0 => fixed(AuthRequest::Ok, &r),
        2 => fixed(AuthRequest::KerberosV5, &r),
        3 => fixed(AuthRequest::Cleartext, &r),
        5 => {
            let s = r.take(4)?;
            r.is_empty()
                .then(|| AuthRequest::Md5([s[0], s[1], s[2], s[3]]))
        }
        7 => fixed(AuthRequest::Gss, &r),
        8 => Some(AuthRequest::GssContinue),
        9 => fixed(AuthRequest::Sspi, &r),
        10 => {
            let mut mechs = Vec::new();
            loop {
                let name = r.cstr()?;
                if name.is_empty() {
                    break;
                }
                if name.len() > 64
                    || !name.iter().all(|b| b.is_ascii_graphic())
                    || mechs.len() >= 16
                {
                    return None;
                }
                mechs.push(String::from_utf8_lossy(name).into_owned());
            }
            (r.is_empty() && !mechs.is_empty()).then_some(AuthRequest::Sasl(mechs))
        }
        11 => Some(AuthRequest::SaslContinue(r.0.to_vec())),
        12 => Some(AuthRequest::SaslFinal(r.0.to_vec())),
        _ => None,
    }
}

/// The fields of an ErrorResponse that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgError {
    pub severity: String,
    /// SQLSTATE, five characters.
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.severity, self.code, self.message)
    }
}

/// Parses an ErrorResponse body: typed NUL-terminated fields ending with a zero byte. A
/// PostgreSQL error always has a severity, a five-character SQLSTATE and a message.
pub fn parse_error(body: &[u8]) -> Option<PgError> {
    let mut r = Reader(body);
    let (mut sev_local, mut sev, mut code, mut message) = (None, None, None, None);
    for _ in 0..64 {
        let ty = r.u8()?;
        if ty == 0 {
            if !r.is_empty() {
                return None;
            }
            let code: &[u8] = code?;
            let valid_code = code.len() == 5
                && code
                    .iter()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase());
            let severity = sev.or(sev_local).filter(|s: &&[u8]| !s.is_empty())?;
            let message = message?;
            return valid_code.then(|| PgError {
                severity: text(severity),
                code: text(code),
                message: text(message),
            });
        }
        let value = r.cstr()?;
        match ty {
            b'S' => sev_local = Some(value),
            // Not localised (9.6+), so preferred.
            b'V' => sev = Some(value),
            b'C' => code = Some(value),
            b'M' => message = Some(value),
            _ => {}
        }
    }
    None
}

/// What the first answer to a StartupMessage says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum First {
    Auth(AuthRequest),
    Error(PgError),
}

/// Recognition: the first backend message must be a well-formed Authentication request that
/// can open a conversation, or a PostgreSQL ErrorResponse.
pub fn recognise(msg: &Msg) -> Option<First> {
    match msg.ty {
        b'R' => match parse_auth(&msg.body)? {
            AuthRequest::SaslContinue(_) | AuthRequest::SaslFinal(_) | AuthRequest::GssContinue => {
                None
            }
            a => Some(First::Auth(a)),
        },
        b'E' => parse_error(&msg.body).map(First::Error),
        _ => None,
    }
}

/// ParameterStatus values worth keeping (the rest are dropped, so a server cannot make us
/// hold a thousand large values).
pub(super) const KEPT_PARAMETERS: &[&str] = &["server_version", "is_superuser", "crdb_version"];

/// What the server reported between AuthenticationOk and ReadyForQuery.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Startup {
    pub params: Vec<(String, String)>,
}

impl Startup {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `15.18 (Debian 15.18-0+deb12u1)` → `15.18`.
    pub fn version(&self) -> Option<String> {
        let v = self.param("server_version")?.split_whitespace().next()?;
        (v.len() <= 64).then(|| v.to_string())
    }

    pub fn product(&self) -> &'static str {
        if self.param("crdb_version").is_some() {
            "CockroachDB"
        } else {
            "PostgreSQL"
        }
    }
}

/// Message types allowed after AuthenticationOk until ReadyForQuery.
pub(super) const STARTUP_TYPES: &[u8] = b"SKNEZ";

/// One step of the post-authentication phase.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    More,
    Ready,
    Failed(PgError),
}

/// Feeds one post-authentication message into `session`.
pub(super) fn startup_step(session: &mut Startup, msg: &Msg) -> Result<Step, String> {
    match msg.ty {
        b'S' => {
            let mut r = Reader(&msg.body);
            let (k, v) = r.cstr().zip(r.cstr()).ok_or("malformed ParameterStatus")?;
            let k = text(k);
            if KEPT_PARAMETERS.contains(&k.as_str()) {
                session.params.push((k, text(v)));
            }
            Ok(Step::More)
        }
        b'K' | b'N' => Ok(Step::More),
        b'E' => parse_error(&msg.body)
            .map(Step::Failed)
            .ok_or_else(|| "malformed ErrorResponse".into()),
        b'Z' => match msg.body.as_slice() {
            [b'I' | b'T' | b'E'] => Ok(Step::Ready),
            _ => Err("malformed ReadyForQuery".into()),
        },
        other => Err(format!("unexpected message {:?}", preview(&[other]))),
    }
}

/// Message types allowed in answer to a simple Query.
pub(super) const QUERY_TYPES: &[u8] = b"TDCENSAZ";

/// The answer to a one-column query, as far as it has been read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rows {
    columns: Option<usize>,
    pub count: usize,
    /// First values of the first column (bounded), for evidence.
    pub first: Vec<String>,
    complete: bool,
}

impl Rows {
    /// Feeds one message; true when ReadyForQuery ended a well-formed result. A result only
    /// counts when it had a RowDescription, rows of that width and a `SELECT n` tag that
    /// agrees with the rows seen, which a server that answers anything does not produce.
    pub(super) fn step(&mut self, msg: &Msg) -> Result<bool, Fail> {
        let proto = |s: &str| Fail::unexpected(format!("protocol error: {s}"));
        let bad = |s: &str| Err(proto(s));
        match msg.ty {
            b'T' => {
                if self.columns.is_some() {
                    return bad("second RowDescription");
                }
                let n = Reader(&msg.body)
                    .i16()
                    .ok_or_else(|| proto("malformed RowDescription"))?;
                if n < 1 {
                    return bad("RowDescription without columns");
                }
                self.columns = Some(n as usize);
            }
            b'D' => {
                let Some(cols) = self.columns else {
                    return bad("DataRow before RowDescription");
                };
                if self.complete {
                    return bad("DataRow after CommandComplete");
                }
                let mut r = Reader(&msg.body);
                if r.i16().map(|n| n as usize) != Some(cols) {
                    return bad("DataRow width differs from RowDescription");
                }
                let mut value = None;
                for i in 0..cols {
                    let len = r.i32().ok_or_else(|| proto("truncated DataRow"))?;
                    let v = match len {
                        -1 => None,
                        n if n >= 0 => Some(
                            r.take(n as usize)
                                .ok_or_else(|| proto("truncated DataRow"))?,
                        ),
                        _ => return bad("negative column length"),
                    };
                    if i == 0 {
                        value = v;
                    }
                }
                if !r.is_empty() {
                    return bad("trailing bytes in DataRow");
                }
                self.count += 1;
                if self.count > MAX_ROWS {
                    return bad("too many rows");
                }
                if self.first.len() < 10 {
                    self.first
                        .push(value.map(text).unwrap_or_else(|| "NULL".into()));
                }
            }
            b'C' => {
                let tag = Reader(&msg.body).cstr().map(text).unwrap_or_default();
                let n = tag
                    .strip_prefix("SELECT ")
                    .and_then(|n| n.parse::<usize>().ok());
                if self.columns.is_none() || n != Some(self.count) {
                    return bad(&format!(
                        "CommandComplete {tag:?} does not match {} rows",
                        self.count
                    ));
                }
                self.complete = true;
            }
            b'E' => {
                let e = parse_error(&msg.body).ok_or_else(|| proto("malformed ErrorResponse"))?;
                return Err(Failure::Server(e));
            }
            b'N' | b'S' | b'A' => {}
            b'Z' => {
                return if self.complete {
                    Ok(true)
                } else {
                    bad("ReadyForQuery before a result")
                };
            }
            other => return bad(&format!("unexpected message {:?}", preview(&[other]))),
        }
        Ok(false)
    }
}

/// Sends one allowlisted simple Query and reads its whole answer.
pub(super) async fn simple_query(s: &mut Session, sql: &str) -> Result<Rows, Fail> {
    send_query(s, sql, &[]).await?;
    let mut rows = Rows::default();
    let cap = s.ctx().opts.frame_cap;
    // Rows plus a few framing messages; a peer streaming notices forever is cut off.
    for _ in 0..MAX_ROWS + 100 {
        let frame = s
            .read_frame(cap.saturating_add(1), |b| {
                check_message(b, cap, QUERY_TYPES)
            })
            .await?;
        let msg =
            to_msg(&frame).ok_or_else(|| Fail::unexpected("protocol error: short message"))?;
        if rows.step(&msg)? {
            return Ok(rows);
        }
    }
    Err(Fail::unexpected("protocol error: too many messages"))
}

/// `md5` + hex(md5(hex(md5(password + user)) + salt)), as PasswordMessage text.
pub fn md5_response(user: &str, password: &str, salt: [u8; 4]) -> String {
    let inner = hex(&md5::Md5::digest(format!("{password}{user}").as_bytes()));
    let mut h = md5::Md5::new();
    h.update(inner.as_bytes());
    h.update(salt);
    format!("md5{}", hex(&h.finalize()))
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// A validated SCRAM server-first-message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFirst {
    pub nonce: String,
    pub salt: Vec<u8>,
    pub iterations: u32,
}

/// Parses `r=…,s=…,i=…` (RFC 5802 §5.1). The nonce must extend ours, the salt must be sane and
/// the iteration count bounded: all three come from the peer.
pub fn parse_server_first(msg: &[u8], client_nonce: &str) -> Result<ServerFirst, String> {
    if msg.len() > 1024 {
        return Err("server-first-message too long".into());
    }
    let s = std::str::from_utf8(msg).map_err(|_| "server-first-message is not UTF-8")?;
    let mut parts = s.split(',');
    let nonce = parts
        .next()
        .and_then(|p| p.strip_prefix("r="))
        .ok_or("server-first-message does not start with r= (mandatory extension?)")?;
    if nonce.len() <= client_nonce.len()
        || !nonce.starts_with(client_nonce)
        || !nonce.bytes().all(|b| b.is_ascii_graphic() && b != b',')
    {
        return Err("server nonce does not extend the client nonce".into());
    }
    let salt = parts
        .next()
        .and_then(|p| p.strip_prefix("s="))
        .and_then(|v| base64::Engine::decode(&b64(), v).ok())
        .filter(|s| !s.is_empty() && s.len() <= 256)
        .ok_or("missing or invalid salt")?;
    let iterations = parts
        .next()
        .and_then(|p| p.strip_prefix("i="))
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|&i| i >= 1)
        .ok_or("missing or invalid iteration count")?;
    if iterations > MAX_SCRAM_ITERATIONS {
        return Err(format!(
            "iteration count {iterations} exceeds {MAX_SCRAM_ITERATIONS}"
        ));
    }
    Ok(ServerFirst {
        nonce: nonce.to_string(),
        salt,
        iterations,
    })
}

pub(super) type HmacSha256 = Hmac<Sha256>;

pub(super) fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length.
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    m.update(data);
    m.finalize().into_bytes().into()
}

/// SCRAM-SHA-256 client without channel binding (gs2 header `n,,`). PostgreSQL takes the user
/// from the StartupMessage, so the SCRAM user name is empty, as libpq sends it.
pub struct Scram {
    nonce: String,
}

impl Scram {
    pub fn new(nonce: String) -> Scram {
        Scram { nonce }
    }

    /// A client with a fresh random nonce.
    pub fn random() -> Result<Scram, String> {
        let mut raw = [0u8; 18];
        getrandom::getrandom(&mut raw)
            .map_err(|e| format!("no randomness for the SCRAM nonce: {e}"))?;
        Ok(Scram::new(base64::Engine::encode(&b64(), raw)))
    }

    pub(super) fn client_first_bare(&self) -> String {
        format!("n=,r={}", self.nonce)
    }

    pub fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare())
    }

    /// The client-final-message and the server signature to expect. The password is ASCII
    /// (the documented default), so SASLprep leaves it unchanged.
    pub fn client_final(
        &self,
        password: &str,
        server_first: &[u8],
    ) -> Result<(String, [u8; 32]), String> {
        let sf = parse_server_first(server_first, &self.nonce)?;
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &sf.salt, sf.iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let without_proof = format!("c=biws,r={}", sf.nonce);
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare(),
            String::from_utf8_lossy(server_first),
            without_proof
        );
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = hmac(&salted, b"Server Key");
        let server_signature = hmac(&server_key, auth_message.as_bytes());
        let msg = format!(
            "{without_proof},p={}",
            base64::Engine::encode(&b64(), proof)
        );
        Ok((msg, server_signature))
    }
}

/// Checks the server-final-message `v=…` against the expected signature: only a server that
/// knows the password can produce it, so a fake that accepts any proof is caught here.
pub fn verify_server_final(msg: &[u8], expected: &[u8; 32]) -> Result<(), String> {
    let s = std::str::from_utf8(msg).map_err(|_| "server-final-message is not UTF-8")?;
    if let Some(e) = s.strip_prefix("e=") {
        return Err(format!(
            "server-final-message error {:?}",
            text(e.as_bytes())
        ));
    }
    let v = s
        .split(',')
        .next()
        .and_then(|p| p.strip_prefix("v="))
        .and_then(|v| base64::Engine::decode(&b64(), v).ok())
        .ok_or("server-final-message without a verifier")?;
    let same = v.len() == expected.len()
        && v.iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err("the server signature does not verify".into())
    }
}

/// Answers the server's challenge with `password`. `Ok(None)` means AuthenticationOk,
/// `Ok(Some(e))` that the server refused; `Err` is a conversation we could not finish.
pub(super) async fn authenticate(
    conn: &mut Conn,
    cap: usize,
    user: &str,
    password: &str,
    challenge: &AuthRequest,
) -> Result<Option<PgError>, String> {
    let net = |e: NetError| e.to_string();
    let mut expect_signature = None;
    match challenge {
        AuthRequest::Cleartext => {
            let mut body = password.as_bytes().to_vec();
            body.push(0);
            conn.send(&frontend(b'p', &body)).await.map_err(net)?;
        }
        AuthRequest::Md5(salt) => {
            let mut body = md5_response(user, password, *salt).into_bytes();
            body.push(0);
            conn.send(&frontend(b'p', &body)).await.map_err(net)?;
        }
        AuthRequest::Sasl(mechs) if mechs.iter().any(|m| m == "SCRAM-SHA-256") => {
            let scram = Scram::random()?;
            let first = scram.client_first();
            let mut body = b"SCRAM-SHA-256\0".to_vec();
            body.extend_from_slice(&(first.len() as u32).to_be_bytes());
            body.extend_from_slice(first.as_bytes());
            conn.send(&frontend(b'p', &body)).await.map_err(net)?;
            let msg = recv(conn, cap, b"RE").await.map_err(net)?;
            let server_first = match (msg.ty, parse_auth(&msg.body)) {
                (b'R', Some(AuthRequest::SaslContinue(d))) => d,
                (b'E', _) => {
                    return parse_error(&msg.body)
                        .map(Some)
                        .ok_or("malformed ErrorResponse".into())
                }
                _ => return Err("expected AuthenticationSASLContinue".into()),
            };
            let (last, signature) = scram.client_final(password, &server_first)?;
            conn.send(&frontend(b'p', last.as_bytes()))
                .await
                .map_err(net)?;
            expect_signature = Some(signature);
        }
        _ => return Err("not attempted (only SCRAM-SHA-256, MD5 and cleartext are)".into()),
    }
    let mut msg = recv(conn, cap, b"RE").await.map_err(net)?;
    if let Some(signature) = expect_signature {
        match (msg.ty, parse_auth(&msg.body)) {
            (b'R', Some(AuthRequest::SaslFinal(d))) => verify_server_final(&d, &signature)?,
            (b'E', _) => {}
            _ => return Err("expected AuthenticationSASLFinal".into()),
        }
        if msg.ty == b'R' {
            msg = recv(conn, cap, b"RE").await.map_err(net)?;
        }
    }
    match (msg.ty, parse_auth(&msg.body)) {
        (b'R', Some(AuthRequest::Ok)) => Ok(None),
        (b'E', _) => parse_error(&msg.body)
            .map(Some)
            .ok_or("malformed ErrorResponse".into()),
        _ => Err("expected AuthenticationOk".into()),
    }
}

/// A session past AuthenticationOk and ReadyForQuery, ready for the query.
pub(super) struct Ready {
    pub(super) conn: Box<Conn>,
    pub(super) session: Startup,
    pub(super) database: String,
    /// How a credential was accepted, in words; None when no password was asked for.
    pub(super) method: Option<String>,
}

/// How one startup ended.
pub(super) enum Login {
    Ready(Ready),
    /// A password was asked for and none was given.
    Challenge(AuthRequest),
    /// An ErrorResponse; `authenticated` when it came after AuthenticationOk.
    Refused {
        err: PgError,
        authenticated: bool,
    },
}

pub(super) enum LoginError {
    /// The first answer was not PostgreSQL.
    NotMe(Seen),
    /// PostgreSQL, but the conversation broke off.
    Broken(String),
}

pub(super) async fn login(
    ctx: &ProbeCtx,
    mut conn: Conn,
    database: &str,
    cred: Option<&Credential>,
) -> Result<Login, LoginError> {
    let cap = ctx.opts.frame_cap;
    let user = cred.map_or(USER, |c| c.user);
    if let Err(e) = conn.send(&startup_message(user, database)).await {
        return Err(LoginError::NotMe(Seen::from_error(&e, conn.buffered())));
    }
    let msg = match recv(&mut conn, cap, b"RE").await {
        Ok(m) => m,
        Err(e) => return Err(LoginError::NotMe(Seen::from_error(&e, conn.buffered()))),
    };
    let challenge = match recognise(&msg) {
        None => {
            let mut seen = vec![msg.ty];
            seen.extend_from_slice(&msg.body[..msg.body.len().min(63)]);
            return Err(LoginError::NotMe(Seen::Bytes(seen)));
        }
        Some(First::Error(err)) => {
            return Ok(Login::Refused {
                err,
                authenticated: false,
            })
        }
        Some(First::Auth(a)) => a,
    };
    let method = match (&challenge, cred) {
        (AuthRequest::Ok, _) => None,
        // Closing without answering is what a client that declines does; the server logs
        // nothing for it (a Terminate here would be logged as a protocol violation).
        (_, None) => return Ok(Login::Challenge(challenge)),
        (_, Some(c)) => match authenticate(&mut conn, cap, c.user, c.password, &challenge).await {
            Ok(None) => Some(format!(
                "with the default credential {}/{} ({})",
                c.user,
                c.password,
                match challenge {
                    AuthRequest::Sasl(_) => "SCRAM-SHA-256".to_string(),
                    ref other => other.method(),
                }
            )),
            Ok(Some(err)) => {
                return Ok(Login::Refused {
                    err,
                    authenticated: false,
                })
            }
            Err(why) => return Err(LoginError::Broken(format!("{}: {why}", challenge.method()))),
        },
    };
    let mut session = Startup::default();
    for _ in 0..MAX_STARTUP_MESSAGES {
        let msg = recv(&mut conn, cap, STARTUP_TYPES)
            .await
            .map_err(|e| LoginError::Broken(format!("after AuthenticationOk: {e}")))?;
        match startup_step(&mut session, &msg).map_err(LoginError::Broken)? {
            Step::More => {}
            Step::Ready => {
                return Ok(Login::Ready(Ready {
                    conn: Box::new(conn),
                    session,
                    database: database.to_string(),
                    method,
                }))
            }
            Step::Failed(err) => {
                return Ok(Login::Refused {
                    err,
                    authenticated: true,
                })
            }
        }
    }
    Err(LoginError::Broken(
        "no ReadyForQuery after AuthenticationOk".into(),
    ))
}

/// A fresh connection, optionally upgraded with SSLRequest.
pub(super) async fn fresh(ctx: &ProbeCtx, ssl: bool) -> Result<Conn, String> {
    let mut conn = ctx.connect().await.map_err(|e| e.to_string())?;
    if !ssl {
        return Ok(conn);
    }
    conn.send(&ssl_request()).await.map_err(|e| e.to_string())?;
    // A cap of one byte: nothing the server sends after 'S' can be buffered and later taken
    // for part of the TLS session (CVE-2021-23222).
    let answer = conn
        .read_frame(1, |b| match b.first() {
            Some(b'S' | b'N') => Check::Complete(1),
            Some(_) => Check::Invalid("not an SSLRequest answer".into()),
            None => Check::Incomplete,
        })
        .await
        .map_err(|e| e.to_string())?;
    if answer != b"S" {
        return Err("server does not offer SSL ('N')".into());
    }
    let sni = (ctx.host != ctx.addr.ip().to_string()).then_some(ctx.host.as_str());
    conn.start_tls(sni).await.map_err(|e| e.to_string())
}

/// Splits recorded backend bytes into messages (test fixtures are whole messages).
#[cfg(test)]
pub(crate) fn messages_for_tests(mut bytes: &[u8], allowed: &[u8]) -> Vec<Msg> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let Check::Complete(n) = check_message(bytes, usize::MAX, allowed) else {
            panic!(
                "fixture is whole messages: {:?}",
                check_message(bytes, usize::MAX, allowed)
            )
        };
        out.push(to_msg(&bytes[..n]).expect("a whole message"));
        bytes = &bytes[n..];
    }
    out
}

#[cfg(test)]
pub(super) mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use super::*;
    use crate::driver::{Budget, ProbeOptions};
    use crate::model::Access;

    use crate::protocols::postgresql::probe::refused_access;
    use crate::testkit::{fixture, FakeServer};
    use std::sync::Arc;

    // Captured from Debian's PostgreSQL 15.18 (lab instances on 127.0.22.x) with a raw socket
    // client sending the same StartupMessage as this probe.
    /// trust: AuthenticationOk, ParameterStatus…, BackendKeyData, ReadyForQuery.
    const TRUST_STARTUP: &[u8] = fixture!("postgresql/trust_startup.bin");

    /// trust: the answer to `LIST_DATABASES`.
    const TRUST_QUERY: &[u8] = fixture!("postgresql/trust_query.bin");

    /// trust, startup naming a database that does not exist: AuthenticationOk then 3D000.
    const DB_MISSING: &[u8] = fixture!("postgresql/db_missing.bin");

    /// scram-sha-256: AuthenticationSASL.
    const SASL: &[u8] = fixture!("postgresql/sasl.bin");

    /// md5 (password stored as MD5): AuthenticationMD5Password.
    const MD5: &[u8] = fixture!("postgresql/md5.bin");

    /// password: AuthenticationCleartextPassword.
    const CLEARTEXT: &[u8] = fixture!("postgresql/cleartext.bin");

    /// hostssl-only pg_hba.conf, plaintext startup: 28000.
    const NOHBA: &[u8] = fixture!("postgresql/nohba_nossl.bin");

    /// SSLRequest answers of a server with and without ssl=on.
    const SSL_YES: &[u8] = fixture!("postgresql/ssl_yes.bin");

    const SSL_NO: &[u8] = fixture!("postgresql/ssl_no.bin");

    /// SCRAM with client nonce `SCRAM_NONCE` and password `postgres`, accepted: SASLContinue,
    /// then SASLFinal, AuthenticationOk, …, ReadyForQuery.
    const SCRAM_OK_FIRST: &[u8] = fixture!("postgresql/scram_ok_server_first.bin");

    const SCRAM_OK_FINAL: &[u8] = fixture!("postgresql/scram_ok_server_final.bin");

    /// The same against a server with another password: SASLContinue, then 28P01.
    const SCRAM_BAD_FIRST: &[u8] = fixture!("postgresql/scram_refused_server_first.bin");

    const SCRAM_BAD_FINAL: &[u8] = fixture!("postgresql/scram_refused_server_final.bin");

    const SCRAM_NONCE: &str = "leakscopeFixtureNonce0001";

    const CAP: usize = 1 << 20;

    fn messages(bytes: &[u8], allowed: &[u8]) -> Vec<Msg> {
        super::messages_for_tests(bytes, allowed)
    }

    /// What the probe makes of the first bytes a server sends after the StartupMessage.
    fn first_answer(bytes: &[u8]) -> Option<First> {
        match check_message(bytes, CAP, b"RE") {
            Check::Complete(n) => recognise(&to_msg(&bytes[..n])?),
            _ => None,
        }
    }

    #[test]
    fn framing_checks_lengths_before_reading() {
        assert!(matches!(
            check_message(b"R\x7f\xff\xff\xff", CAP, b"RE"),
            Check::Invalid(_)
        ));
        assert!(matches!(
            check_message(b"R\xff\xff\xff\xff", CAP, b"RE"),
            Check::Invalid(_)
        ));
        assert!(matches!(
            check_message(b"R\0\0\0\x03", CAP, b"RE"),
            Check::Invalid(_)
        ));
        assert!(matches!(
            check_message(b"Q\0\0\0\x08", CAP, b"RE"),
            Check::Invalid(_)
        ));
        assert_eq!(check_message(b"R\0\0", CAP, b"RE"), Check::Incomplete);
        assert_eq!(
            check_message(b"R\0\0\0\x08\0\0\0", CAP, b"RE"),
            Check::Incomplete
        );
        assert_eq!(
            check_message(b"R\0\0\0\x08\0\0\0\0rest", CAP, b"RE"),
            Check::Complete(9)
        );
        assert!(matches!(
            check_message(b"E\0\0\x10\x01", 4096, b"RE"),
            Check::Invalid(_)
        ));
    }

    #[test]
    fn startup_message_layout() {
        let m = startup_message("postgres", "postgres");
        assert_eq!(&m[..4], &(m.len() as u32).to_be_bytes());
        assert_eq!(&m[4..8], &[0, 3, 0, 0]);
        assert!(m.ends_with(b"application_name\0leakscope\0client_encoding\0UTF8\0\0"));
        assert_eq!(ssl_request(), [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
    }

    #[test]
    fn real_trust_startup() {
        let msgs = messages(
            TRUST_STARTUP,
            STARTUP_TYPES
                .iter()
                .chain(b"R")
                .copied()
                .collect::<Vec<_>>()
                .as_slice(),
        );
        assert_eq!(recognise(&msgs[0]), Some(First::Auth(AuthRequest::Ok)));
        let mut session = Startup::default();
        let steps: Vec<Step> = msgs[1..]
            .iter()
            .map(|m| startup_step(&mut session, m).unwrap())
            .collect();
        assert_eq!(steps.last(), Some(&Step::Ready));
        assert_eq!(
            session.param("server_version"),
            Some("15.18 (Debian 15.18-0+deb12u1)")
        );
        assert_eq!(session.version().as_deref(), Some("15.18"));
        assert_eq!(session.param("is_superuser"), Some("on"));
        assert_eq!(session.product(), "PostgreSQL");
        // Only the kept parameters are held.
        assert_eq!(session.params.len(), 2);
    }

    #[test]
    fn real_query_answer() {
        let mut rows = Rows::default();
        let done: Vec<bool> = messages(TRUST_QUERY, QUERY_TYPES)
            .iter()
            .map(|m| rows.step(m).unwrap())
            .collect();
        assert_eq!(done.last(), Some(&true));
        assert_eq!(rows.count, 2);
        assert_eq!(rows.first, vec!["postgres", "template1"]);
    }

    #[test]
    fn real_challenges() {
        let sasl = first_answer(SASL).unwrap();
        assert_eq!(
            sasl,
            First::Auth(AuthRequest::Sasl(vec!["SCRAM-SHA-256".into()]))
        );
        let First::Auth(AuthRequest::Md5(salt)) = first_answer(MD5).unwrap() else {
            panic!()
        };
        assert_eq!(
            first_answer(CLEARTEXT),
            Some(First::Auth(AuthRequest::Cleartext))
        );
        // Computed independently (Python hashlib) for the captured salt.
        assert_eq!(
            md5_response("postgres", "postgres", salt),
            "md5655f5a91aa7002c21c83baa906f736b9"
        );
    }

    #[test]
    fn scram_against_real_server_messages() {
        let scram = Scram::new(SCRAM_NONCE.into());
        assert_eq!(scram.client_first(), format!("n,,n=,r={SCRAM_NONCE}"));
        let [first] = messages(SCRAM_OK_FIRST, b"R").try_into().unwrap();
        let Some(AuthRequest::SaslContinue(server_first)) = parse_auth(&first.body) else {
            panic!()
        };
        let sf = parse_server_first(&server_first, SCRAM_NONCE).unwrap();
        assert_eq!(sf.iterations, 4096);
        assert_eq!(sf.salt.len(), 16);

        let (last, signature) = scram.client_final("postgres", &server_first).unwrap();
        assert!(last.starts_with(&format!("c=biws,r={},p=", sf.nonce)));
        let fin = messages(SCRAM_OK_FINAL, b"RSKZ");
        let Some(AuthRequest::SaslFinal(v)) = parse_auth(&fin[0].body) else {
            panic!()
        };
        // The real server's signature matches ours only if our key derivation is right.
        verify_server_final(&v, &signature).unwrap();
        assert_eq!(parse_auth(&fin[1].body), Some(AuthRequest::Ok));
        let (_, wrong) = scram
            .client_final("not-the-password", &server_first)
            .unwrap();
        assert!(verify_server_final(&v, &wrong).is_err());
    }

    #[test]
    fn scram_refused_is_28p01() {
        let [first] = messages(SCRAM_BAD_FIRST, b"R").try_into().unwrap();
        let Some(AuthRequest::SaslContinue(server_first)) = parse_auth(&first.body) else {
            panic!()
        };
        Scram::new(SCRAM_NONCE.into())
            .client_final("postgres", &server_first)
            .unwrap();
        let [err] = messages(SCRAM_BAD_FINAL, b"E").try_into().unwrap();
        let err = parse_error(&err.body).unwrap();
        assert_eq!(err.code, "28P01");
        assert_eq!(err.severity, "FATAL");
        assert_eq!(
            err.message,
            "password authentication failed for user \"postgres\""
        );
        assert_eq!(refused_access(&err), Access::AuthRequired);
    }

    #[test]
    fn hostile_server_first_messages() {
        let n = SCRAM_NONCE;
        let ok = format!("r={n}xyz,s=c2FsdHNhbHQ=,i=4096");
        assert!(parse_server_first(ok.as_bytes(), n).is_ok());
        for bad in [
            format!("r={n}xyz,s=c2FsdHNhbHQ=,i=4294967295"),
            format!("r={n}xyz,s=c2FsdHNhbHQ=,i=100001"),
            format!("r={n}xyz,s=c2FsdHNhbHQ=,i=0"),
            format!("r={n}xyz,s=c2FsdHNhbHQ=,i=-1"),
            format!("r={n}xyz,s=c2FsdHNhbHQ="),
            format!("r={n}xyz,s=!!!,i=4096"),
            format!("r={n}xyz,s=,i=4096"),
            format!("r={n},s=c2FsdHNhbHQ=,i=4096"),
            format!("r=someoneelse{n},s=c2FsdHNhbHQ=,i=4096"),
            format!("m=ext,r={n}xyz,s=c2FsdHNhbHQ=,i=4096"),
            format!("r={n}x y,s=c2FsdHNhbHQ=,i=4096"),
            format!("r={n}xyz,s={},i=4096", "QUFB".repeat(300)),
            String::new(),
        ] {
            assert!(parse_server_first(bad.as_bytes(), n).is_err(), "{bad}");
        }
        assert!(verify_server_final(b"e=invalid-proof", &[0; 32]).is_err());
        assert!(verify_server_final(b"v=", &[0; 32]).is_err());
    }

    #[test]
    fn real_pg_hba_and_missing_database_errors() {
        let Some(First::Error(err)) = first_answer(NOHBA) else {
            panic!()
        };
        assert_eq!(err.code, "28000");
        assert!(
            err.message.starts_with("no pg_hba.conf entry for host"),
            "{}",
            err.message
        );
        assert_eq!(refused_access(&err), Access::AuthRequired);

        let msgs = messages(DB_MISSING, b"RE");
        assert_eq!(recognise(&msgs[0]), Some(First::Auth(AuthRequest::Ok)));
        let Ok(Step::Failed(err)) = startup_step(&mut Startup::default(), &msgs[1]) else {
            panic!()
        };
        assert_eq!(err.code, "3D000");

        // Under trust a missing role is 28000 too, and proves nothing about other roles.
        let role = PgError {
            severity: "FATAL".into(),
            code: "28000".into(),
            message: "role \"postgres\" does not exist".into(),
        };
        assert_eq!(refused_access(&role), Access::Unknown);
        assert_eq!((SSL_YES, SSL_NO), (&b"S"[..], &b"N"[..]));
    }

    #[test]
    fn other_protocols_are_not_postgres() {
        let others: &[&[u8]] = &[
            fixture!("redis/noauth.resp"),
            fixture!("redis/info_server.resp"),
            fixture!("memcached/version_stats.txt"),
            b"+OK\r\n",
            b"-ERR unknown command\r\n",
            b"ERROR\r\n",
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
            b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n",
            b"\x15\x03\x03\x00\x02\x02\x46",
            // A MySQL 8 greeting whose payload length happens to be 'R' (82).
            b"R\0\0\0\x0a8.0.36\0\x08\0\0\0abcdefgh\0\xff\xff\xff\x02\0\xff\xdf\x15\0\0\0\0\0\0\0\0\0\0ijklmnopqrst\0caching_sha2_password\0",
            // An 'E' that is not an ErrorResponse.
            b"E\0\0\0\x0cSFATAL\0\0\0",
            b"E\0\0\0\x1dSFATAL\0C28P0\0Mbad\0\0",
            b"R\0\0\0\x08\0\0\0\x0b",
            b"R\0\0\0\x09\0\0\0\0\0",
            b"R\0\0\0\x0c\0\0\0\x03\0\0\0\0",
        ];
        for bytes in others {
            assert_eq!(first_answer(bytes), None, "{:?}", preview(bytes));
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..20_000 {
            let len = (next() % 96) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Give half the buffers a plausible header so the parsers behind it are reached.
            if round % 2 == 0 && buf.len() >= 5 {
                buf[0] = b"REZSTDCK"[round / 2 % 8];
                buf[1..5].copy_from_slice(&((len - 1) as u32).to_be_bytes());
            }
            if let Check::Complete(n) = check_message(&buf, CAP, b"REZSTDCKN") {
                let m = to_msg(&buf[..n]).unwrap();
                let _ = recognise(&m);
                let _ = startup_step(&mut Startup::default(), &m);
                let _ = Rows::default().step(&m);
                let _ = Rows {
                    columns: Some(1),
                    ..Rows::default()
                }
                .step(&m);
            }
            let _ = parse_auth(&buf);
            let _ = parse_error(&buf);
            let _ = parse_server_first(&buf, "n");
            let _ = verify_server_final(&buf, &[0; 32]);
        }
    }

    #[test]
    fn a_result_must_be_well_formed() {
        let msg = |ty: u8, body: &[u8]| Msg {
            ty,
            body: body.to_vec(),
        };
        let t1 = msg(
            b'T',
            b"\0\x01datname\0\0\0\0\0\0\0\0\0\0\x13\0\x40\xff\xff\xff\xff\0\0",
        );
        let d = msg(b'D', b"\0\x01\0\0\0\x01x");
        let z = msg(b'Z', b"I");
        // A tag without a RowDescription, a count that disagrees, rows of the wrong width,
        // ReadyForQuery before a result: none of these is a read.
        let cases: Vec<Vec<Msg>> = vec![
            vec![msg(b'C', b"SELECT 5\0"), z.clone()],
            vec![t1.clone(), d.clone(), msg(b'C', b"SELECT 3\0"), z.clone()],
            vec![t1.clone(), msg(b'D', b"\0\x02\0\0\0\x01x\0\0\0\x01y")],
            vec![t1.clone(), z.clone()],
            vec![d.clone()],
            vec![t1.clone(), msg(b'D', b"\0\x01\x7f\xff\xff\xff")],
            vec![t1.clone(), msg(b'D', b"\0\x01\xff\xff\xff\xfe")],
        ];
        for case in cases {
            let mut rows = Rows::default();
            let ok = case
                .iter()
                .try_fold(false, |_, m| rows.step(m))
                .unwrap_or(false);
            assert!(!ok, "{case:?}");
        }
        let mut rows = Rows::default();
        let ok = [t1, d, msg(b'C', b"SELECT 1\0"), z]
            .iter()
            .try_fold(false, |_, m| rows.step(m));
        assert!(ok.unwrap());
    }

    pub(in crate::protocols::postgresql) fn ctx(addr: SocketAddr, try_defaults: bool) -> ProbeCtx {
        let ms = Duration::from_millis(1500);
        let opts = ProbeOptions {
            limits: crate::testkit::timeouts(ms),
            try_defaults,
            auth_interval: Duration::from_millis(1),
            ..ProbeOptions::default()
        };
        crate::driver::test_ctx(addr, opts)
    }

    #[tokio::test]
    async fn only_allowlisted_sql_is_sent() {
        let server = FakeServer::opening(Vec::new()).await;
        let ctx = ctx(server.addr(), false);
        let conn = ctx.connect().await.unwrap();
        let mut s = Session::with_conn(&ctx, conn, Arc::new(Budget::bytes_only(1 << 20)));
        let err = simple_query(&mut s, "DROP DATABASE postgres")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("non-allowlisted"), "{err}");
        drop(s);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(server.connections(), 1);
        assert!(server.messages().is_empty(), "{:?}", server.messages());
    }
}
