//! PostgreSQL (frontend/backend protocol 3.0).
//!
//! Sends a StartupMessage as user `postgres` to database `postgres` and reads what the server
//! asks for. AuthenticationOk without a password is not enough for `open`: the session must
//! also answer one catalog query (the databases that accept connections). A SASL, MD5 or
//! cleartext challenge means a password is required; with `--try-defaults` the documented
//! default `postgres`/`postgres` is tried on a fresh connection (SCRAM-SHA-256 with the server
//! signature verified, MD5 or cleartext). A server whose `pg_hba.conf` refuses plaintext
//! (`hostssl` only) is asked again after an SSLRequest, inside TLS.
//!
//! Hand-written over [`Conn`] rather than a driver: a driver's reads are not bounded by our
//! caps and deadlines, and a driver sends statements of its own that no allowlist covers.
//!
//! Every statement sent, by the probe, the [`inventory`] and the distinct-people count
//! ([`count`]), is one of the constant templates in [`ALLOWED_QUERIES`]; [`render`] fills their
//! placeholders with typed values only (quoted identifiers, integers, a percentage, quoted string
//! literals), and `send_query` is the one function that puts SQL on the wire.

use std::sync::Arc;

use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub use crate::driver::sql::Arg;
use crate::driver::sql::{Allowlist, Dialect};
use crate::driver::{
    preview, Budget, Credential, Failure, Finding, Handler, Outcome, ProbeCtx, Protocol, Seen,
    Session,
};
use crate::model::Access;
use crate::net::{Check, Conn, NetError};

pub const PROTOCOL: Protocol = Protocol {
    id: "postgresql",
    name: "PostgreSQL",
    default_ports: &[5432],
    server_speaks_first: false,
    default_credentials: &[Credential {
        user: "postgres",
        password: "postgres",
        why: "common default in images and tutorials",
    }],
    method: "StartupMessage as user postgres; AuthenticationOk is confirmed by SELECT datname FROM \
             pg_database; a SCRAM/MD5/cleartext challenge or SQLSTATE 28P01/28000 means authentication \
             is required",
    handler: Handler::Raw(probe),
    inventory: Some(inventory::inventory),
    subjects: Some(count::subjects),
    keys_exist: None,
};

pub mod count;
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz_hooks;
pub mod inventory;

/// Lists the databases that accept connections: catalog metadata, read-only.
pub const LIST_DATABASES: &str = "SELECT datname FROM pg_database WHERE datallowconn";

/// The only SQL leakscope ever sends to PostgreSQL, enforced in [`render`]. The inventory's
/// statements run inside `BEGIN READ ONLY`, so even a mistake here could not write.
pub const ALLOWED_QUERIES: &[&str] = &[
    LIST_DATABASES,
    inventory::BEGIN_READ_ONLY,
    inventory::SET_STATEMENT_TIMEOUT,
    inventory::SET_LOCK_TIMEOUT,
    inventory::ROLLBACK,
    inventory::LIST_DATABASES_FOR_INVENTORY,
    inventory::LIST_RELATIONS,
    inventory::LIST_RELATIONS_UNLOCKED,
    inventory::LIST_COLUMNS,
    inventory::COUNT_ROWS,
    inventory::SAMPLE_TABLESAMPLE,
    inventory::SAMPLE_RANDOM,
    inventory::SAMPLE_FIRST,
    count::LOOKUP,
    count::COUNT_VALUES,
    count::COUNT_DISTINCT,
    count::COUNT_DISTINCT_KEY,
    count::COUNT_DISTINCT_HASHED,
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
async fn send_query(s: &mut Session, template: &str, args: &[Arg<'_>]) -> Result<(), Fail> {
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
const USER: &str = "postgres";
/// `postgres` may have been dropped; `template1` exists in every cluster.
const DATABASES: &[&str] = &["postgres", "template1"];
const PROTOCOL_3_0: i32 = 196_608;
const SSL_REQUEST_CODE: i32 = 80_877_103;
/// PostgreSQL uses 4096; a hostile server could ask for billions to burn our CPU.
const MAX_SCRAM_ITERATIONS: u32 = 100_000;
/// Messages accepted between AuthenticationOk and ReadyForQuery (a real server sends ~15).
const MAX_STARTUP_MESSAGES: usize = 1_000;
/// Rows read from the catalog query before giving up on the peer.
const MAX_ROWS: usize = 10_000;
/// Longest text kept from a peer for evidence.
const MAX_TEXT: usize = 200;

// ---------------------------------------------------------------------------------------------
// Framing

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
fn to_msg(frame: &[u8]) -> Option<Msg> {
    let (&ty, rest) = frame.split_first()?;
    Some(Msg {
        ty,
        body: rest.get(4..)?.to_vec(),
    })
}

async fn recv(conn: &mut Conn, cap: usize, allowed: &[u8]) -> Result<Msg, NetError> {
    let frame = conn
        .read_frame(cap.saturating_add(1), |b| check_message(b, cap, allowed))
        .await?;
    to_msg(&frame).ok_or_else(|| NetError::Invalid("short message".into()))
}

/// A frontend message with a type byte.
fn frontend(ty: u8, body: &[u8]) -> Vec<u8> {
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

fn ssl_request() -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&8u32.to_be_bytes());
    out[4..].copy_from_slice(&SSL_REQUEST_CODE.to_be_bytes());
    out
}

const TERMINATE: &[u8] = b"X\0\0\0\x04";

/// A cursor over a message body; every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn i32(&mut self) -> Option<i32> {
        let b = self.take(4)?;
        Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i16(&mut self) -> Option<i16> {
        let b = self.take(2)?;
        Some(i16::from_be_bytes([b[0], b[1]]))
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn cstr(&mut self) -> Option<&'a [u8]> {
        let end = self.0.iter().position(|&b| b == 0)?;
        let s = self.take(end)?;
        self.take(1)?;
        Some(s)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Printable, bounded text from peer bytes, for evidence.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_TEXT)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Backend messages

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
    fn method(&self) -> String {
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
const KEPT_PARAMETERS: &[&str] = &["server_version", "is_superuser", "crdb_version"];

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
const STARTUP_TYPES: &[u8] = b"SKNEZ";

/// One step of the post-authentication phase.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    More,
    Ready,
    Failed(PgError),
}

/// Feeds one post-authentication message into `session`.
fn startup_step(session: &mut Startup, msg: &Msg) -> Result<Step, String> {
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

// ---------------------------------------------------------------------------------------------
// The one query

/// Message types allowed in answer to a simple Query.
const QUERY_TYPES: &[u8] = b"TDCENSAZ";

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
    fn step(&mut self, msg: &Msg) -> Result<bool, Fail> {
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
async fn simple_query(s: &mut Session, sql: &str) -> Result<Rows, Fail> {
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

// ---------------------------------------------------------------------------------------------
// Authentication

/// `md5` + hex(md5(hex(md5(password + user)) + salt)), as PasswordMessage text.
pub fn md5_response(user: &str, password: &str, salt: [u8; 4]) -> String {
    let inner = hex(&md5::Md5::digest(format!("{password}{user}").as_bytes()));
    let mut h = md5::Md5::new();
    h.update(inner.as_bytes());
    h.update(salt);
    format!("md5{}", hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn b64() -> base64::engine::GeneralPurpose {
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

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
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

    fn client_first_bare(&self) -> String {
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
async fn authenticate(
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

// ---------------------------------------------------------------------------------------------
// One login

/// A session past AuthenticationOk and ReadyForQuery, ready for the query.
struct Ready {
    conn: Box<Conn>,
    session: Startup,
    database: String,
    /// How a credential was accepted, in words; None when no password was asked for.
    method: Option<String>,
}

/// How one startup ended.
enum Login {
    Ready(Ready),
    /// A password was asked for and none was given.
    Challenge(AuthRequest),
    /// An ErrorResponse; `authenticated` when it came after AuthenticationOk.
    Refused {
        err: PgError,
        authenticated: bool,
    },
}

enum LoginError {
    /// The first answer was not PostgreSQL.
    NotMe(Seen),
    /// PostgreSQL, but the conversation broke off.
    Broken(String),
}

async fn login(
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
async fn fresh(ctx: &ProbeCtx, ssl: bool) -> Result<Conn, String> {
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

/// Logs in on `first` (or fresh connections), moving to `template1` when `postgres` is gone.
/// With a credential, every connection after the first is its own counted attempt.
async fn attempt(
    ctx: &ProbeCtx,
    mut first: Option<Conn>,
    ssl: bool,
    cred: Option<&Credential>,
) -> Result<Login, LoginError> {
    let mut last = None;
    for (i, &db) in DATABASES.iter().enumerate() {
        if i > 0 && cred.is_some() && !ctx.begin_auth_attempt().await {
            break;
        }
        let conn = match first.take() {
            Some(c) => c,
            None => fresh(ctx, ssl).await.map_err(LoginError::Broken)?,
        };
        match login(ctx, conn, db, cred).await? {
            Login::Refused { err, authenticated } if authenticated && err.code == "3D000" => {
                last = Some(Login::Refused { err, authenticated });
            }
            other => return Ok(other),
        }
    }
    last.ok_or_else(|| LoginError::Broken("no database to try".into()))
}

// ---------------------------------------------------------------------------------------------
// Verdict

/// Runs the query on a ready session and records the verdict in `f`: `open` without a
/// password, `default_credentials` with one, and only when the query answered.
async fn read_and_judge(ctx: &ProbeCtx, f: &mut Finding, ready: Ready, ssl: bool) {
    let Ready {
        conn,
        session,
        database,
        method,
    } = ready;
    f.product = Some(session.product().into());
    f.version = session.version().or(f.version.take());
    let (how, access) = match method {
        Some(m) => (m, Access::DefaultCredentials),
        None => ("without a password (trust)".to_string(), Access::Open),
    };
    let over = if ssl { " over TLS" } else { "" };
    let superuser = if session.param("is_superuser") == Some("on") {
        "; the session is a superuser"
    } else {
        ""
    };
    let mut s = Session::with_conn(ctx, *conn, Arc::new(Budget::bytes_only(usize::MAX)));
    match simple_query(&mut s, LIST_DATABASES).await {
        Ok(rows) => {
            f.access = access;
            if access == Access::DefaultCredentials {
                // The only documented default; the inventory logs in with it again.
                f.credential = PROTOCOL.default_credentials.first().copied();
            }
            let more = if rows.count > rows.first.len() { ", …" } else { "" };
            f.evidence.push(format!(
                "startup as user {USER} (database {database}){over} accepted {how}{superuser}; \
                 {LIST_DATABASES} returned {} rows ({}{more})",
                rows.count,
                rows.first.join(", ")
            ));
        }
        Err(e) => f.evidence.push(format!(
            "startup as user {USER} (database {database}){over} accepted {how}, but {LIST_DATABASES} \
             failed: {e}"
        )),
    }
    s.goodbye(TERMINATE).await;
}

/// Verdict for an ErrorResponse to an unauthenticated startup.
fn refused_access(err: &PgError) -> Access {
    match err.code.as_str() {
        "28P01" => Access::AuthRequired,
        // pg_hba.conf has no entry for us or rejects us: access control refused the login.
        // The same code also says "role does not exist" under trust, which proves nothing.
        "28000" if err.message.contains("pg_hba.conf") => Access::AuthRequired,
        _ => Access::Unknown,
    }
}

fn probe<'a>(ctx: &'a ProbeCtx, conn: Conn) -> BoxFuture<'a, Outcome> {
    Box::pin(async move {
        let mut f = Finding::new(PROTOCOL.id);
        let mut ssl = false;
        let mut ssl_note = None;
        let mut state = match attempt(ctx, Some(conn), false, None).await {
            Err(LoginError::NotMe(seen)) => return Outcome::NotMe(seen),
            other => other,
        };
        f.product = Some("PostgreSQL".into());
        if let Ok(Login::Refused {
            err,
            authenticated: false,
        }) = &state
        {
            // `hostssl`-only servers refuse plaintext with 28000; inside TLS the answer may differ.
            if err.code == "28000" && !ctx.tls {
                match fresh(ctx, true).await {
                    Ok(conn) => {
                        ssl = true;
                        f.evidence.push(format!(
                            "plaintext startup as user {USER} refused: {err}; SSLRequest accepted, \
                             startup repeated over TLS"
                        ));
                        state = attempt(ctx, Some(conn), true, None).await;
                    }
                    Err(why) => ssl_note = Some(format!("SSLRequest after that: {why}")),
                }
            }
        }
        let over = if ssl { " over TLS" } else { "" };
        match state {
            Err(LoginError::NotMe(seen)) => f
                .evidence
                .push(format!("TLS startup not understood: {seen:?}")),
            Err(LoginError::Broken(why)) => f
                .evidence
                .push(format!("startup as user {USER}{over}: {why}")),
            Ok(Login::Ready(ready)) => read_and_judge(ctx, &mut f, ready, ssl).await,
            Ok(Login::Refused {
                err,
                authenticated: true,
            }) => f.evidence.push(format!(
                "startup as user {USER}{over} accepted without a password (trust), but the session \
                 failed: {err}"
            )),
            Ok(Login::Refused {
                err,
                authenticated: false,
            }) => {
                f.access = refused_access(&err);
                f.evidence
                    .push(format!("startup as user {USER}{over} refused: {err}"));
            }
            Ok(Login::Challenge(challenge)) => {
                f.access = Access::AuthRequired;
                f.evidence.push(format!(
                    "startup as user {USER}{over}: server requires authentication ({})",
                    challenge.method()
                ));
                try_defaults(ctx, &mut f, ssl).await;
            }
        }
        f.evidence.extend(ssl_note);
        Outcome::Found(f)
    })
}

/// Tries the documented default credentials, each on a fresh connection.
async fn try_defaults(ctx: &ProbeCtx, f: &mut Finding, ssl: bool) {
    for cred in PROTOCOL.default_credentials {
        if !ctx.begin_auth_attempt().await {
            return;
        }
        let pair = format!("{}/{}", cred.user, cred.password);
        let conn = match fresh(ctx, ssl).await {
            Ok(c) => c,
            Err(why) => {
                f.evidence.push(format!("default credential {pair}: {why}"));
                return;
            }
        };
        match attempt(ctx, Some(conn), ssl, Some(cred)).await {
            Ok(Login::Ready(ready)) => {
                read_and_judge(ctx, f, ready, ssl).await;
                if f.access != Access::AuthRequired {
                    return;
                }
            }
            Ok(Login::Refused { err, .. }) => f
                .evidence
                .push(format!("default credential {pair} refused: {err}")),
            Ok(Login::Challenge(_)) => {}
            Err(LoginError::NotMe(seen)) => f.evidence.push(format!(
                "default credential {pair}: answer not understood: {seen:?}"
            )),
            Err(LoginError::Broken(why)) => {
                f.evidence.push(format!("default credential {pair}: {why}"))
            }
        }
    }
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
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use super::*;
    use crate::driver::ProbeOptions;
    use crate::net::Limits;
    use crate::testkit::{fixture, frames, FakeServer, Reply};

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

    // -- Against scripted peers on loopback ------------------------------------------------

    fn ctx(addr: SocketAddr, try_defaults: bool) -> ProbeCtx {
        let ms = Duration::from_millis(1500);
        let opts = ProbeOptions {
            limits: Limits {
                connect_timeout: ms,
                read_timeout: ms,
                write_timeout: ms,
            },
            try_defaults,
            auth_interval: Duration::from_millis(1),
            ..ProbeOptions::default()
        };
        crate::driver::test_ctx(addr, opts)
    }

    fn backend(ty: u8, body: &[u8]) -> Vec<u8> {
        frontend(ty, body)
    }

    async fn run(addr: SocketAddr, try_defaults: bool) -> Outcome {
        let ctx = ctx(addr, try_defaults);
        let conn = ctx.connect().await.unwrap();
        probe(&ctx, conn).await
    }

    #[tokio::test]
    async fn giant_length_is_refused_at_once() {
        let server = FakeServer::start(Vec::new(), frames::pg_message, |_| {
            Reply::Send(b"R\x7f\xff\xff\xff\0\0\0\0".to_vec())
        })
        .await;
        let t = std::time::Instant::now();
        let out = run(server.addr(), false).await;
        assert!(matches!(out, Outcome::NotMe(Seen::Bytes(_))), "{out:?}");
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
    }

    #[tokio::test]
    async fn a_peer_that_says_yes_to_everything_is_not_open() {
        // AuthenticationOk and ReadyForQuery for the startup, then `+OK` to the query.
        let server = FakeServer::start(Vec::new(), frames::pg_message, |m| match m.index {
            0 => {
                let mut out = backend(b'R', &[0, 0, 0, 0]);
                out.extend(backend(b'Z', b"I"));
                Reply::Send(out)
            }
            _ => Reply::Send(b"+OK\r\n".to_vec()),
        })
        .await;
        let Outcome::Found(f) = run(server.addr(), false).await else {
            panic!()
        };
        assert_eq!(f.access, Access::Unknown, "{f:?}");
        assert!(f.evidence[0].contains("failed"), "{f:?}");
    }

    #[tokio::test]
    async fn a_fake_scram_server_that_accepts_any_proof_is_caught() {
        let server = FakeServer::start(Vec::new(), frames::pg_message, |m| match m.index {
            0 => Reply::Send(backend(b'R', b"\0\0\0\x0aSCRAM-SHA-256\0\0")),
            1 => {
                let text = m.text();
                let nonce = text.split("r=").nth(1).unwrap().to_string();
                let sf = format!("r={nonce}srv,s=c2FsdHNhbHQ=,i=4096");
                let mut body = 11u32.to_be_bytes().to_vec();
                body.extend_from_slice(sf.as_bytes());
                Reply::Send(backend(b'R', &body))
            }
            _ => {
                let mut out = b"\0\0\0\x0cv=".to_vec();
                out.extend_from_slice(base64::Engine::encode(&b64(), [7u8; 32]).as_bytes());
                let mut msgs = backend(b'R', &out);
                msgs.extend(backend(b'R', &[0, 0, 0, 0]));
                msgs.extend(backend(b'Z', b"I"));
                Reply::Send(msgs)
            }
        })
        .await;
        let Outcome::Found(f) = run(server.addr(), true).await else {
            panic!()
        };
        assert_eq!(f.access, Access::AuthRequired, "{f:?}");
        assert!(
            f.evidence.iter().any(|e| e.contains("does not verify")),
            "{f:?}"
        );
        assert!(server.messages()[0]
            .bytes
            .windows(9)
            .any(|w| w == b"leakscope"));

        // Without --try-defaults nothing is attempted.
        let Outcome::Found(f) = run(server.addr(), false).await else {
            panic!()
        };
        assert_eq!(f.access, Access::AuthRequired);
        assert_eq!(f.evidence.len(), 1, "{f:?}");
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
