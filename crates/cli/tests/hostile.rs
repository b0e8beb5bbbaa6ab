//! Hostile peers: the `leakscope` binary against servers that misbehave on purpose.
//!
//! Every server here runs inside this test on a tokio listener bound to 127.N.40.x (N from
//! `LEAKSCOPE_LAB_NET`, `127.N`, so parallel labs do not collide; 127.0 without it), one
//! misbehaviour per `address:port`, on the real data-store ports so the real probes (the ones
//! that claim the port first, then every other) are exercised. The scanner gets documented
//! deadlines ([`TIMEOUT`], [`SERVICE_TIMEOUT`], [`INVENTORY_TIMEOUT`]) and must, over all of
//! them at once:
//!
//! - finish within [`wall_bound`] (one connect, one whole-service deadline and one inventory
//!   budget, all endpoints being probed concurrently, plus [`WALL_MARGIN`]);
//! - report every endpoint, each with the verdict in [`CASES`]: `unknown` for what speaks no
//!   protocol, the real protocol for a server on another protocol's port, and never `open` or
//!   `default_credentials` for a honeypot that answers "yes" to everything;
//! - stay under [`RSS_LIMIT_KIB`] of peak resident memory (VmHWM polled from /proc while it
//!   runs, and getrusage of children after it exits);
//! - stop reading endless streams at its caps: what a streaming server managed to write before
//!   the scanner closed is at most the scanner's largest read cap plus what the kernel buffers
//!   ([`stream_bound`]), and each such connection is closed within [`STREAM_CLOSE_BOUND`].
//!
//! The two tests (without and with `--try-defaults`, which exercises the login paths against
//! the honeypots) use disjoint addresses so they can run at the same time. No lab is needed.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// `--timeout`: each connect and each read.
const TIMEOUT: u64 = 1;
/// `--service-timeout`: identifying and judging one service.
const SERVICE_TIMEOUT: u64 = 5;
/// `--inventory-timeout`: inventory of one exposed service (none should be exposed here).
const INVENTORY_TIMEOUT: u64 = 5;
/// Process start, JSON output and CPU contention with the hostile servers on a small machine.
const WALL_MARGIN: Duration = Duration::from_secs(4);
/// Peak resident memory allowed to the scanner.
const RSS_LIMIT_KIB: u64 = 64 * 1024;
/// A streaming server's connection must be closed by the scanner within this long: one read
/// deadline plus scheduling slack, well under the whole-service deadline, so it is the read
/// cap or deadline that ends it, not the service deadline.
const STREAM_CLOSE_BOUND: Duration = Duration::from_secs(TIMEOUT + 2);
/// Send buffer of the hostile servers' sockets (the kernel doubles it), so that what they
/// manage to write is mostly what the scanner read or let the kernel buffer.
const SERVER_SNDBUF: u32 = 64 * 1024;
/// Connections one endpoint may cost: each candidate protocol once, a TLS handshake, each
/// candidate again inside TLS, and a few more for logins and follow-up reads.
const MAX_CONNECTIONS: usize = 16;
/// The scanner's largest read of one frame: an HTTP response, head (16 KiB) plus the body cap
/// (4 MiB) plus chunk framing allowance (64 KiB). Every other protocol's cap is smaller.
const LARGEST_READ_CAP: u64 = 16 * 1024 + (4 << 20) + 64 * 1024;

/// Wall-time bound of one scan: every endpoint is probed at once, and one endpoint costs at
/// most one connect, one service deadline and one inventory budget.
fn wall_bound() -> Duration {
    Duration::from_secs(TIMEOUT + SERVICE_TIMEOUT + INVENTORY_TIMEOUT) + WALL_MARGIN
}

/// Bytes a streaming server may write on one connection: the largest read cap, plus the
/// scanner's socket receive buffer (which the kernel fills whether or not the scanner reads; its
/// maximum is the third field of tcp_rmem), plus the server's send buffer, plus 1 MiB.
fn stream_bound() -> u64 {
    let rmem_max = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_rmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse::<u64>().ok())
        .unwrap_or(6 << 20);
    LARGEST_READ_CAP + rmem_max + 2 * u64::from(SERVER_SNDBUF) + (1 << 20)
}

// ---------------------------------------------------------------------------------------------
// The cases

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hostile {
    /// Accepts and never answers.
    Tarpit,
    /// Answers one byte per second forever (an HTTP status line, dripped).
    Drip,
    /// Streams pseudo-random bytes from the moment it accepts, forever.
    Flood,
    /// `HTTP/1.1 200` without a length, then a body that never ends.
    HttpEndlessBody,
    /// A Mongo reply header (to our request id) with messageLength 2 GB, then endless bytes.
    MongoGiantLength,
    /// RESP `$999999999`, then endless bytes.
    RespGiantBulk,
    /// A PostgreSQL message with length 0x7fffffff, then endless bytes.
    PgGiantLength,
    /// A MySQL packet header announcing 16 MB, then endless bytes.
    MysqlGiantPacket,
    /// `Content-Length: 1000000000000`, then endless bytes.
    HttpGiantContentLength,
    /// `Transfer-Encoding: chunked` with chunks that never end.
    HttpEndlessChunks,
    /// A chunked body cut off after a chunk-size line, then the connection closed.
    HttpTruncatedChunks,
    /// 512 pseudo-random bytes in answer to anything.
    Garbage,
    /// Half a PostgreSQL message in answer to anything, then a TCP reset.
    ResetPg,
    /// Half a MySQL greeting on connect, then a TCP reset.
    ResetMysqlGreeting,
    /// Half an HTTP response in answer to anything, then a TCP reset.
    ResetHttp,
    /// A password-protected Redis (`-NOAUTH`) on the MongoDB port.
    RedisOnMongoPort,
    /// A plain web server (nginx-like, HTML) on the Redis port.
    HttpOnRedisPort,
    /// A MySQL server that refuses every login, on the PostgreSQL port.
    MysqlOnPgPort,
    /// Answers "yes" in whatever protocol it is spoken to: `+OK`, HTTP 200 with a fake
    /// Elasticsearch root document for every path, a Mongo reply with ok:1 (and ismaster) to
    /// every command, PostgreSQL AuthenticationOk and CommandComplete to every query, a MySQL
    /// greeting (to a client silent for 300 ms) then OK to every packet, memcached `VERSION`
    /// then `OK`.
    Honeypot,
    /// The honeypot's Mongo part alone: ok:1 to every command, and a close on a header that is
    /// no Mongo message (as mongod does).
    MongoHoneypot,
    /// The honeypot's PostgreSQL part alone: trust login, CommandComplete to every query, and a
    /// close on a startup packet of impossible length (as postgres does).
    PgHoneypot,
    /// The honeypot's MySQL part alone, greeting at once as mysqld does: OK to every packet.
    MysqlHoneypot,
    /// Elasticsearch-security look-alike: 401 without credentials, the fake root document for
    /// every path with any credentials.
    EsAuthHoneypot,
    /// HTTP 200 `{}` to everything (also, at once, to bytes that are no HTTP request).
    HttpEmptyJson,
    /// PostgreSQL asking for a cleartext password, accepting any, then "yes" to every query.
    PgAnyPassword,
    /// A ClickHouse native port (its 400 to an HTTP request) whose Hello announces a server
    /// name of 1 MiB, then endless bytes.
    ClickHouseNativeFlood,
    /// `Ok.` to every HTTP request, as ClickHouse answers its ping: proves nothing.
    ClickHouseOkToEverything,
    /// InfluxDB's `X-Influxdb-Version` on every answer; `/query` answered with a
    /// `Content-Length` of 10^12, then endless bytes.
    InfluxGiantResult,
    /// etcd's Go 404 and `/version`, then a range answer announcing `Content-Length:
    /// 1000000000000` and streaming forever.
    EtcdGiantRange,
    /// etcd's Go 404 and `/version`, then a chunked range answer whose chunks never end.
    EtcdEndlessRange,
    /// etcd's Go 404 and `/version`, then `200 {}` to the range read: no revision, no count.
    EtcdHoneypot,
    /// Closes on text, and answers a ZooKeeper handshake with a frame of length 0x7fffffff,
    /// then endless bytes.
    ZkGiantLength,
    /// A ZooKeeper handshake answered, then a reply frame announcing almost 1 MiB that streams
    /// bytes of no reply forever.
    ZkEndlessReply,
}

impl Hostile {
    /// Servers that write without being asked to stop: their bytes are accounted for.
    fn streams(self) -> bool {
        matches!(
            self,
            Hostile::Flood
                | Hostile::HttpEndlessBody
                | Hostile::MongoGiantLength
                | Hostile::RespGiantBulk
                | Hostile::PgGiantLength
                | Hostile::MysqlGiantPacket
                | Hostile::HttpGiantContentLength
                | Hostile::HttpEndlessChunks
                | Hostile::ClickHouseNativeFlood
                | Hostile::InfluxGiantResult
        )
    }
}

/// One hostile endpoint and the verdict it must get: (protocol, access) without and with
/// `--try-defaults`.
struct Case {
    /// Last octet of 127.N.40.x, before the per-test offset.
    host: u8,
    port: u16,
    kind: Hostile,
    plain: (&'static str, &'static str),
    defaults: (&'static str, &'static str),
}

const UNKNOWN: (&str, &str) = ("unknown", "unknown");

const fn case(host: u8, port: u16, kind: Hostile, v: (&'static str, &'static str)) -> Case {
    Case {
        host,
        port,
        kind,
        plain: v,
        defaults: v,
    }
}

const CASES: &[Case] = &[
    case(1, 6379, Hostile::Tarpit, UNKNOWN),
    case(2, 9200, Hostile::Drip, UNKNOWN),
    case(3, 27017, Hostile::Flood, UNKNOWN),
    case(4, 9200, Hostile::HttpEndlessBody, UNKNOWN),
    case(5, 27017, Hostile::MongoGiantLength, UNKNOWN),
    case(6, 6379, Hostile::RespGiantBulk, UNKNOWN),
    case(7, 5432, Hostile::PgGiantLength, UNKNOWN),
    case(8, 3306, Hostile::MysqlGiantPacket, UNKNOWN),
    case(9, 9200, Hostile::HttpGiantContentLength, UNKNOWN),
    case(10, 9200, Hostile::HttpEndlessChunks, UNKNOWN),
    case(11, 11211, Hostile::Garbage, UNKNOWN),
    case(12, 5432, Hostile::ResetPg, UNKNOWN),
    case(13, 3306, Hostile::ResetMysqlGreeting, UNKNOWN),
    case(14, 9200, Hostile::ResetHttp, UNKNOWN),
    // A body that ends with the connection is taken as far as it came: a `200` that is no data
    // store, so plain HTTP. (This one used to panic the whole scan.)
    case(15, 9200, Hostile::HttpTruncatedChunks, ("http", "unknown")),
    case(
        20,
        27017,
        Hostile::RedisOnMongoPort,
        ("redis", "auth_required"),
    ),
    case(21, 6379, Hostile::HttpOnRedisPort, ("http", "unknown")),
    case(22, 5432, Hostile::MysqlOnPgPort, ("mysql", "auth_required")),
    // The honeypot on every port. Identification sends the text probes (Redis, HTTP,
    // Memcached) before any binary one, so that a wrong guess never waits on a text server for
    // a line break: `+OK` is not an INFO reply, so `GET /` meets the fake root document, on
    // every port but Memcached's (whose `version` goes first there). Never readable.
    case(30, 6379, Hostile::Honeypot, ("elasticsearch", "unknown")),
    case(30, 9200, Hostile::Honeypot, ("elasticsearch", "unknown")),
    case(30, 27017, Hostile::Honeypot, ("elasticsearch", "unknown")),
    case(30, 5432, Hostile::Honeypot, ("elasticsearch", "unknown")),
    case(30, 3306, Hostile::Honeypot, ("elasticsearch", "unknown")),
    case(30, 11211, Hostile::Honeypot, ("memcached", "unknown")),
    // Its binary parts, each alone, close on the text probes as real servers do, so the binary
    // probes and logins meet their "yes".
    case(34, 27017, Hostile::MongoHoneypot, ("mongodb", "unknown")),
    case(34, 5432, Hostile::PgHoneypot, ("postgresql", "unknown")),
    // A MySQL greeting says an account is needed; logging in "works", but no result set ever
    // comes back, so nothing is proven either way.
    Case {
        host: 34,
        port: 3306,
        kind: Hostile::MysqlHoneypot,
        plain: ("mysql", "auth_required"),
        defaults: ("mysql", "unknown"),
    },
    case(
        31,
        9200,
        Hostile::EsAuthHoneypot,
        ("elasticsearch", "auth_required"),
    ),
    case(32, 9200, Hostile::HttpEmptyJson, ("http", "unknown")),
    case(
        33,
        5432,
        Hostile::PgAnyPassword,
        ("postgresql", "auth_required"),
    ),
    // The native port's refusal of HTTP names ClickHouse; its Hello never ends.
    case(
        40,
        9000,
        Hostile::ClickHouseNativeFlood,
        ("clickhouse", "unknown"),
    ),
    case(
        41,
        8123,
        Hostile::ClickHouseOkToEverything,
        ("http", "unknown"),
    ),
    case(
        42,
        8086,
        Hostile::InfluxGiantResult,
        ("influxdb", "unknown"),
    ),
    // etcd: its version proves the product, but no range answer proves a read.
    case(35, 2379, Hostile::EtcdGiantRange, ("etcd", "unknown")),
    case(36, 2379, Hostile::EtcdEndlessRange, ("etcd", "unknown")),
    case(37, 2379, Hostile::EtcdHoneypot, ("etcd", "unknown")),
    // ZooKeeper: a giant frame before the handshake is no ZooKeeper; after it, no read proven.
    case(38, 2181, Hostile::ZkGiantLength, UNKNOWN),
    case(39, 2181, Hostile::ZkEndlessReply, ("zookeeper", "unknown")),
    // On etcd's port the honeypot's `/version` is its root document again: not etcd's.
    case(30, 2379, Hostile::Honeypot, ("elasticsearch", "unknown")),
];

// ---------------------------------------------------------------------------------------------
// Accounting of what the servers saw

/// One connection a hostile server accepted.
#[derive(Debug, Clone)]
struct ConnLog {
    endpoint: SocketAddr,
    kind: Hostile,
    /// Bytes the server managed to write.
    written: u64,
    /// From accept until the server noticed the scanner was gone.
    lifetime: Duration,
}

type Log = Arc<Mutex<Vec<ConnLog>>>;

// ---------------------------------------------------------------------------------------------
// Server building blocks

/// xorshift64*: deterministic garbage.
struct Rng(u64);

impl Rng {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            *b = (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8;
        }
    }
}

/// Reads what is there (or waits for it) into `buf`; false at EOF or error. At most 64 KiB is
/// kept; the rest is read and dropped, so a client cannot make a server grow.
async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8192];
    match s.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            if buf.len() < 64 * 1024 {
                buf.extend_from_slice(&chunk[..n]);
            }
            true
        }
    }
}

/// Reads and drops until the peer closes.
async fn drain(s: &mut TcpStream) {
    let mut chunk = [0u8; 8192];
    while matches!(s.read(&mut chunk).await, Ok(n) if n > 0) {}
}

/// Writes `head`, then pseudo-random bytes until the peer is gone; returns the bytes written.
/// Whatever the peer sends is read and dropped meanwhile.
async fn stream_forever(s: TcpStream, head: &[u8], seed: u64) -> u64 {
    let (mut rd, mut wr) = s.into_split();
    tokio::spawn(async move {
        let mut chunk = [0u8; 8192];
        while matches!(rd.read(&mut chunk).await, Ok(n) if n > 0) {}
    });
    let mut written = 0u64;
    if wr.write_all(head).await.is_err() {
        return written;
    }
    written += head.len() as u64;
    let mut rng = Rng(seed | 1);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        rng.fill(&mut chunk);
        match wr.write(&chunk).await {
            Ok(0) | Err(_) => return written,
            Ok(n) => written += n as u64,
        }
    }
}

/// Closes with a TCP reset instead of a FIN (SO_LINGER with a zero timeout).
fn reset(s: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor owned by `s`, and a correctly sized linger struct.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(s);
}

fn http_response(status: &str, headers: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads one HTTP request head (and drops its body); None when the peer closed first.
async fn read_http_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).into_owned();
            buf.drain(..i + 4);
            return Some(head);
        }
        if !read_more(s, buf).await {
            return None;
        }
    }
}

/// The root document of an Elasticsearch 7 node, faked.
const FAKE_ROOT: &str = r#"{"name":"node-1","cluster_name":"prod","cluster_uuid":"Jx2bXk3WQ1mR0Zc7lLk0dA","version":{"number":"7.10.2","build_flavor":"default","build_type":"tar","lucene_version":"8.7.0"},"tagline":"You Know, for Search"}"#;

/// Answers every HTTP request on the connection with `answer(head)`, then closes.
async fn http_server(mut s: TcpStream, mut buf: Vec<u8>, answer: fn(&str) -> Vec<u8>) -> u64 {
    let mut written = 0;
    while let Some(head) = read_http_request(&mut s, &mut buf).await {
        let reply = answer(&head);
        if s.write_all(&reply).await.is_err() {
            break;
        }
        written += reply.len() as u64;
        // Every request the scanner sends says `Connection: close`.
        if head.to_ascii_lowercase().contains("connection: close") {
            let _ = s.shutdown().await;
            drain(&mut s).await;
            break;
        }
    }
    written
}

fn root_doc_answer(_head: &str) -> Vec<u8> {
    http_response("200 OK", "Content-Type: application/json\r\n", FAKE_ROOT)
}

fn empty_json_answer(_head: &str) -> Vec<u8> {
    http_response("200 OK", "Content-Type: application/json\r\n", "{}")
}

/// HTTP 200 `{}` to everything: to each request, and at once to bytes that are no request.
async fn empty_json_server(mut s: TcpStream) -> u64 {
    let mut buf = Vec::new();
    if !read_more(&mut s, &mut buf).await {
        return 0;
    }
    if buf[0].is_ascii_uppercase() {
        return http_server(s, buf, empty_json_answer).await;
    }
    let reply = empty_json_answer("");
    let _ = s.write_all(&reply).await;
    let _ = s.shutdown().await;
    drain(&mut s).await;
    reply.len() as u64
}

fn es_auth_answer(head: &str) -> Vec<u8> {
    if head.to_ascii_lowercase().contains("\r\nauthorization:") {
        return root_doc_answer(head);
    }
    let body = r#"{"error":{"root_cause":[{"type":"security_exception","reason":"missing authentication credentials for REST request [/]","header":{"WWW-Authenticate":"Basic realm=\"security\" charset=\"UTF-8\""}}],"type":"security_exception","reason":"missing authentication credentials for REST request [/]"},"status":401}"#;
    http_response(
        "401 Unauthorized",
        "WWW-Authenticate: Basic realm=\"security\" charset=\"UTF-8\"\r\nContent-Type: application/json\r\n",
        body,
    )
}

/// etcd's client port up to the range read: Go's 404 at `/`, its version at `/version`;
/// `range` answers the range read (None: the connection is handed back to stream).
async fn etcd_server(mut s: TcpStream, range: Option<&'static [u8]>) -> (TcpStream, u64) {
    let mut buf = Vec::new();
    let Some(head) = read_http_request(&mut s, &mut buf).await else {
        return (s, 0);
    };
    let reply = if head.starts_with("GET /version ") {
        http_response(
            "200 OK",
            "Content-Type: application/json\r\n",
            r#"{"etcdserver":"3.4.23","etcdcluster":"3.4.0"}"#,
        )
    } else if head.starts_with("POST /v3/kv/range ") {
        match range {
            Some(body) => body.to_vec(),
            None => return (s, 0),
        }
    } else {
        http_response(
            "404 Not Found",
            "Content-Type: text/plain; charset=utf-8\r\n",
            "404 page not found\n",
        )
    };
    let _ = s.write_all(&reply).await;
    let _ = s.shutdown().await;
    drain(&mut s).await;
    (s, reply.len() as u64)
}

/// A `200` whose chunked body never ends: 4 KiB chunks of `[`, forever.
async fn endless_chunks(s: TcpStream) -> u64 {
    let (mut rd, mut wr) = s.into_split();
    tokio::spawn(async move {
        let mut chunk = [0u8; 1024];
        while matches!(rd.read(&mut chunk).await, Ok(n) if n > 0) {}
    });
    let head =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    if wr.write_all(head).await.is_err() {
        return 0;
    }
    let mut written = head.len() as u64;
    let mut chunk = b"1000\r\n".to_vec();
    chunk.extend(std::iter::repeat_n(b'[', 0x1000));
    chunk.extend_from_slice(b"\r\n");
    while wr.write_all(&chunk).await.is_ok() {
        written += chunk.len() as u64;
    }
    written
}

/// An etcd look-alike's answer to the range read: `200 {}`, no header, no revision.
const ETCD_EMPTY_RANGE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";

/// Reads a client's first message; true when it is a ZooKeeper `ConnectRequest` (a 45-byte
/// record behind its length). A server of this kind closes on anything else, as ZooKeeper
/// does on a length no message has.
async fn zk_handshake(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    while buf.len() < 4 {
        if !read_more(s, buf).await {
            return false;
        }
    }
    if !buf.starts_with(&[0, 0, 0, 45]) {
        return false;
    }
    while buf.len() < 49 {
        if !read_more(s, buf).await {
            return false;
        }
    }
    true
}

/// A ZooKeeper `ConnectResponse`: protocol 0, a 4 s session, session id 1, a 16-byte password.
fn zk_connected() -> Vec<u8> {
    let mut out = vec![
        0, 0, 0, 36, 0, 0, 0, 0, 0, 0, 0x0f, 0xa0, 0, 0, 0, 0, 0, 0, 0, 1,
    ];
    out.extend_from_slice(&[0, 0, 0, 16]);
    out.extend_from_slice(&[7; 16]);
    out
}

/// A tiny web server as nginx behaves: a request line that does not start like one is a 400 at
/// once; a request gets an HTML page.
async fn nginx(mut s: TcpStream) -> u64 {
    let mut buf = Vec::new();
    if !read_more(&mut s, &mut buf).await {
        return 0;
    }
    if !buf[0].is_ascii_uppercase() {
        let reply = http_response(
            "400 Bad Request",
            "Server: nginx/1.24.0\r\nContent-Type: text/html\r\n",
            "<html><head><title>400 Bad Request</title></head><body><h1>400 Bad Request</h1></body></html>\r\n",
        );
        let _ = s.write_all(&reply).await;
        let _ = s.shutdown().await;
        drain(&mut s).await;
        return reply.len() as u64;
    }
    http_server(s, buf, |_| {
        http_response(
            "200 OK",
            "Server: nginx/1.24.0\r\nContent-Type: text/html\r\n",
            "<!DOCTYPE html><html><head><title>Welcome to nginx!</title></head><body>Welcome</body></html>\r\n",
        )
    })
    .await
}

/// One RESP command (an array of bulk strings) at the start of `buf`: its length.
fn resp_command_len(buf: &[u8]) -> Option<usize> {
    let line = |from: usize| -> Option<(i64, usize)> {
        let end = from + buf.get(from..)?.windows(2).position(|w| w == b"\r\n")?;
        let n = std::str::from_utf8(buf.get(from + 1..end)?)
            .ok()?
            .parse()
            .ok()?;
        Some((n, end + 2))
    };
    let (items, mut at) = line(0)?;
    for _ in 0..items {
        let (n, next) = line(at)?;
        at = next + usize::try_from(n).ok()? + 2;
    }
    (buf.len() >= at).then_some(at)
}

/// Answers each RESP command with `reply`; anything that is not RESP with `-ERR`, except what
/// looks like HTTP, which Redis answers by closing.
async fn resp_server(mut s: TcpStream, mut buf: Vec<u8>, reply: &[u8]) -> u64 {
    let mut written = 0;
    loop {
        if buf.first() == Some(&b'*') {
            while let Some(n) = resp_command_len(&buf) {
                buf.drain(..n);
                if s.write_all(reply).await.is_err() {
                    return written;
                }
                written += reply.len() as u64;
            }
        } else if !buf.is_empty() {
            let text = String::from_utf8_lossy(&buf);
            if text.contains("Host:") || text.starts_with("POST") {
                return written;
            }
            buf.clear();
            let err = b"-ERR unknown command\r\n";
            if s.write_all(err).await.is_err() {
                return written;
            }
            written += err.len() as u64;
        }
        if !read_more(&mut s, &mut buf).await {
            return written;
        }
    }
}

/// A minimal BSON document: `{ok: 1.0, ismaster: true, isWritablePrimary: true,
/// maxWireVersion: 17}`.
fn bson_yes() -> Vec<u8> {
    let mut e = Vec::new();
    e.push(0x01);
    e.extend_from_slice(b"ok\0");
    e.extend_from_slice(&1.0f64.to_le_bytes());
    for key in ["ismaster", "isWritablePrimary"] {
        e.push(0x08);
        e.extend_from_slice(key.as_bytes());
        e.push(0);
        e.push(1);
    }
    e.push(0x10);
    e.extend_from_slice(b"maxWireVersion\0");
    e.extend_from_slice(&17i32.to_le_bytes());
    let mut doc = ((e.len() + 5) as i32).to_le_bytes().to_vec();
    doc.extend_from_slice(&e);
    doc.push(0);
    doc
}

fn mongo_header(len: i32, response_to: i32, op: i32) -> Vec<u8> {
    let mut h = len.to_le_bytes().to_vec();
    h.extend_from_slice(&7i32.to_le_bytes());
    h.extend_from_slice(&response_to.to_le_bytes());
    h.extend_from_slice(&op.to_le_bytes());
    h
}

/// The reply with ok:1 to one Mongo request frame (OP_MSG or legacy OP_QUERY).
fn mongo_yes(request: &[u8]) -> Vec<u8> {
    let id = i32::from_le_bytes(request[4..8].try_into().unwrap());
    let op = i32::from_le_bytes(request[12..16].try_into().unwrap());
    let doc = bson_yes();
    if op == 2004 {
        let mut body = 0i32.to_le_bytes().to_vec();
        body.extend_from_slice(&0i64.to_le_bytes());
        body.extend_from_slice(&0i32.to_le_bytes());
        body.extend_from_slice(&1i32.to_le_bytes());
        body.extend_from_slice(&doc);
        let mut out = mongo_header(16 + body.len() as i32, id, 1);
        out.extend_from_slice(&body);
        out
    } else {
        let mut out = mongo_header(16 + 5 + doc.len() as i32, id, 2013);
        out.extend_from_slice(&0u32.to_le_bytes());
        out.push(0);
        out.extend_from_slice(&doc);
        out
    }
}

async fn mongo_server(mut s: TcpStream, mut buf: Vec<u8>) -> u64 {
    let mut written = 0;
    loop {
        while buf.len() >= 16 {
            let len = i32::from_le_bytes(buf[..4].try_into().unwrap());
            let Ok(len) = usize::try_from(len) else {
                return written;
            };
            if !(16..=48 * 1024).contains(&len) {
                return written;
            }
            if buf.len() < len {
                break;
            }
            let reply = mongo_yes(&buf[..len]);
            buf.drain(..len);
            if s.write_all(&reply).await.is_err() {
                return written;
            }
            written += reply.len() as u64;
        }
        if !read_more(&mut s, &mut buf).await {
            return written;
        }
    }
}

fn pg_msg(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![ty];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// AuthenticationOk, the server version, BackendKeyData and ReadyForQuery.
fn pg_logged_in() -> Vec<u8> {
    let mut out = pg_msg(b'R', &0u32.to_be_bytes());
    out.extend(pg_msg(b'S', b"server_version\x0016.1\x00"));
    out.extend(pg_msg(b'K', &[0, 0, 0x30, 0x39, 1, 2, 3, 4]));
    out.extend(pg_msg(b'Z', b"I"));
    out
}

/// A PostgreSQL server that says yes: trust login (or, with `password`, a cleartext password
/// request and then any password), and CommandComplete to every query.
async fn pg_server(mut s: TcpStream, mut buf: Vec<u8>, password: bool) -> u64 {
    let mut written = 0u64;
    let mut started = false;
    loop {
        loop {
            let reply = if !started {
                if buf.len() < 8 {
                    break;
                }
                let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
                let code = u32::from_be_bytes(buf[4..8].try_into().unwrap());
                if !(8..=10_000).contains(&len) {
                    return written;
                }
                if buf.len() < len {
                    break;
                }
                buf.drain(..len);
                match code {
                    80_877_103 => b"N".to_vec(),
                    196_608 => {
                        started = true;
                        if password {
                            pg_msg(b'R', &3u32.to_be_bytes())
                        } else {
                            pg_logged_in()
                        }
                    }
                    _ => return written,
                }
            } else {
                if buf.len() < 5 {
                    break;
                }
                let ty = buf[0];
                let len = u32::from_be_bytes(buf[1..5].try_into().unwrap()) as usize;
                if !(4..=60_000).contains(&len) {
                    return written;
                }
                if buf.len() < len + 1 {
                    break;
                }
                buf.drain(..len + 1);
                match ty {
                    b'p' => pg_logged_in(),
                    b'Q' => {
                        let mut r = pg_msg(b'C', b"SELECT 1\x00");
                        r.extend(pg_msg(b'Z', b"I"));
                        r
                    }
                    b'X' => return written,
                    _ => pg_msg(b'Z', b"I"),
                }
            };
            if s.write_all(&reply).await.is_err() {
                return written;
            }
            written += reply.len() as u64;
        }
        if !read_more(&mut s, &mut buf).await {
            return written;
        }
    }
}

fn mysql_packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    p.push(seq);
    p.extend_from_slice(payload);
    p
}

/// A MySQL 8 initial handshake (protocol 10, mysql_native_password).
fn mysql_greeting() -> Vec<u8> {
    let caps: u32 = 0x1 | 0x4 | 0x200 | 0x2000 | 0x8000 | 0x8_0000;
    let mut p = vec![10];
    p.extend_from_slice(b"8.0.36\0");
    p.extend_from_slice(&42u32.to_le_bytes());
    p.extend_from_slice(b"abcdefgh");
    p.push(0);
    p.extend_from_slice(&(caps as u16).to_le_bytes());
    p.push(33);
    p.extend_from_slice(&2u16.to_le_bytes());
    p.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
    p.push(21);
    p.extend_from_slice(&[0; 10]);
    p.extend_from_slice(b"ijklmnopqrst\0");
    p.extend_from_slice(b"mysql_native_password\0");
    mysql_packet(0, &p)
}

fn mysql_err(seq: u8, code: u16, state: &str, msg: &str) -> Vec<u8> {
    let mut p = vec![0xff];
    p.extend_from_slice(&code.to_le_bytes());
    p.push(b'#');
    p.extend_from_slice(state.as_bytes());
    p.extend_from_slice(msg.as_bytes());
    mysql_packet(seq, &p)
}

/// A MySQL server: greeting, then `answer(seq, payload)` to each packet until it says close.
async fn mysql_server(mut s: TcpStream, answer: fn(u8, &[u8]) -> (Vec<u8>, bool)) -> u64 {
    let greeting = mysql_greeting();
    if s.write_all(&greeting).await.is_err() {
        return 0;
    }
    let mut written = greeting.len() as u64;
    let mut buf = Vec::new();
    loop {
        while buf.len() >= 4 {
            let len = u32::from_le_bytes([buf[0], buf[1], buf[2], 0]) as usize;
            if buf.len() < 4 + len {
                break;
            }
            let seq = buf[3];
            let payload: Vec<u8> = buf[4..4 + len].to_vec();
            buf.drain(..4 + len);
            let (reply, close) = answer(seq, &payload);
            if s.write_all(&reply).await.is_err() {
                return written;
            }
            written += reply.len() as u64;
            if close {
                let _ = s.shutdown().await;
                drain(&mut s).await;
                return written;
            }
        }
        if !read_more(&mut s, &mut buf).await {
            return written;
        }
    }
}

/// OK to every packet (COM_QUIT closes).
fn mysql_yes(seq: u8, payload: &[u8]) -> (Vec<u8>, bool) {
    if payload == [0x01] {
        return (Vec::new(), true);
    }
    (
        mysql_packet(seq.wrapping_add(1), &[0, 0, 0, 2, 0, 0, 0]),
        false,
    )
}

/// Refuses every login (and anything that is not one) as MySQL does.
fn mysql_refuse(seq: u8, payload: &[u8]) -> (Vec<u8>, bool) {
    if seq == 1 && payload.len() >= 32 {
        let msg = "Access denied for user 'root'@'localhost' (using password: NO)";
        return (mysql_err(2, 1045, "28000", msg), true);
    }
    (
        mysql_err(seq.wrapping_add(1), 1043, "08S01", "Bad handshake"),
        true,
    )
}

/// The honeypot: answers "yes" in whatever protocol it is spoken to.
async fn honeypot(mut s: TcpStream) -> u64 {
    let mut buf = Vec::new();
    // A client that says nothing is waiting for a server-first protocol: MySQL.
    match tokio::time::timeout(Duration::from_millis(300), read_more(&mut s, &mut buf)).await {
        Err(_) => return mysql_server(s, mysql_yes).await,
        Ok(false) => return 0,
        Ok(true) => {}
    }
    while buf.len() < 8 && !buf.starts_with(b"*") && !buf.contains(&b'\n') {
        if !read_more(&mut s, &mut buf).await {
            return 0;
        }
    }
    let word = |b: &[u8], at: usize| u32::from_be_bytes(b[at..at + 4].try_into().unwrap());
    let mongo_op = buf
        .get(12..16)
        .map(|b| i32::from_le_bytes(b.try_into().unwrap()));
    if buf.starts_with(b"*") {
        resp_server(s, buf, b"+OK\r\n").await
    } else if buf.len() >= 8 && [80_877_103, 196_608].contains(&word(&buf, 4)) {
        pg_server(s, buf, false).await
    } else if matches!(mongo_op, Some(2013 | 2004)) {
        mongo_server(s, buf).await
    } else if buf[0].is_ascii_uppercase() && buf.windows(4).any(|w| w == b" HTT") {
        http_server(s, buf, root_doc_answer).await
    } else if buf
        .iter()
        .all(|b| b.is_ascii_graphic() || b" \r\n".contains(b))
    {
        // A memcached text command.
        let mut written = 0;
        loop {
            while let Some(i) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=i).collect();
                let reply: &[u8] = if line.starts_with(b"version") {
                    b"VERSION 1.6.21\r\n"
                } else {
                    b"OK\r\n"
                };
                if s.write_all(reply).await.is_err() {
                    return written;
                }
                written += reply.len() as u64;
            }
            if !read_more(&mut s, &mut buf).await {
                return written;
            }
        }
    } else {
        // Anything else (a TLS ClientHello): `+OK` to each chunk.
        let mut written = 0;
        loop {
            if s.write_all(b"+OK\r\n").await.is_err() {
                return written;
            }
            written += 5;
            buf.clear();
            if !read_more(&mut s, &mut buf).await {
                return written;
            }
        }
    }
}

/// Serves one accepted connection as `kind`; returns the bytes written.
async fn serve(kind: Hostile, mut s: TcpStream, seed: u64) -> u64 {
    let mut buf = Vec::new();
    match kind {
        Hostile::Tarpit => {
            drain(&mut s).await;
            0
        }
        Hostile::Drip => {
            let (mut rd, mut wr) = s.into_split();
            tokio::spawn(async move {
                let mut chunk = [0u8; 1024];
                while matches!(rd.read(&mut chunk).await, Ok(n) if n > 0) {}
            });
            let text = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n";
            let mut written = 0u64;
            for &b in text.iter().cycle() {
                if wr.write_all(&[b]).await.is_err() {
                    break;
                }
                written += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            written
        }
        Hostile::Flood => stream_forever(s, b"", seed).await,
        Hostile::HttpEndlessBody => {
            stream_forever(
                s,
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n",
                seed,
            )
            .await
        }
        Hostile::MongoGiantLength => {
            if !read_more(&mut s, &mut buf).await {
                return 0;
            }
            let to = buf
                .get(4..8)
                .map_or(0, |b| i32::from_le_bytes(b.try_into().unwrap()));
            let mut head = mongo_header(i32::MAX, to, 2013);
            head.extend_from_slice(&[0, 0, 0, 0, 0]);
            stream_forever(s, &head, seed).await
        }
        Hostile::RespGiantBulk => {
            if !read_more(&mut s, &mut buf).await {
                return 0;
            }
            stream_forever(s, b"$999999999\r\n", seed).await
        }
        Hostile::PgGiantLength => {
            if !read_more(&mut s, &mut buf).await {
                return 0;
            }
            stream_forever(s, b"R\x7f\xff\xff\xff\0\0\0\0", seed).await
        }
        Hostile::MysqlGiantPacket => stream_forever(s, &[0xff, 0xff, 0xff, 0x00, 0x0a], seed).await,
        Hostile::HttpGiantContentLength => {
            if !read_more(&mut s, &mut buf).await {
                return 0;
            }
            stream_forever(
                s,
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n",
                seed,
            )
            .await
        }
        Hostile::HttpEndlessChunks => {
            if !read_more(&mut s, &mut buf).await {
                return 0;
            }
            endless_chunks(s).await
        }
        Hostile::HttpTruncatedChunks => {
            let cut = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{}\n\r\n2\r\n\r\n";
            if !read_more(&mut s, &mut buf).await || s.write_all(cut).await.is_err() {
                return 0;
            }
            let _ = s.shutdown().await;
            drain(&mut s).await;
            cut.len() as u64
        }
        Hostile::Garbage => {
            let mut rng = Rng(seed | 1);
            let mut written = 0;
            while read_more(&mut s, &mut buf).await {
                let mut junk = [0u8; 512];
                rng.fill(&mut junk);
                if s.write_all(&junk).await.is_err() {
                    break;
                }
                written += junk.len() as u64;
            }
            written
        }
        Hostile::ResetPg => {
            if !read_more(&mut s, &mut buf).await {
                return 0;
            }
            let half = b"R\0\0\0\x08\0";
            let _ = s.write_all(half).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            reset(s);
            half.len() as u64
        }
        Hostile::ResetMysqlGreeting => {
            let greeting = mysql_greeting();
            let half = &greeting[..greeting.len() / 2];
            let _ = s.write_all(half).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            reset(s);
            half.len() as u64
        }
        Hostile::ResetHttp => {
            if !read_more(&mut s, &mut buf).await {
                return 0;
            }
            let half = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"na";
            let _ = s.write_all(half).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            reset(s);
            half.len() as u64
        }
        Hostile::RedisOnMongoPort => {
            if !read_more(&mut s, &mut buf).await {
                return 0;
            }
            resp_server(s, buf, b"-NOAUTH Authentication required.\r\n").await
        }
        Hostile::HttpOnRedisPort => nginx(s).await,
        Hostile::MysqlOnPgPort => mysql_server(s, mysql_refuse).await,
        Hostile::Honeypot => honeypot(s).await,
        Hostile::MongoHoneypot => mongo_server(s, buf).await,
        Hostile::PgHoneypot => pg_server(s, buf, false).await,
        Hostile::MysqlHoneypot => mysql_server(s, mysql_yes).await,
        Hostile::EsAuthHoneypot => http_server(s, buf, es_auth_answer).await,
        Hostile::HttpEmptyJson => empty_json_server(s).await,
        Hostile::PgAnyPassword => pg_server(s, buf, true).await,
        Hostile::ClickHouseNativeFlood => {
            if !read_more(&mut s, &mut buf).await {
                return 0;
            }
            if buf[0].is_ascii_uppercase() {
                let reply: &[u8] = b"HTTP/1.0 400 Bad Request\r\n\r\nPort 9000 is for clickhouse-client program.\r\nYou must use port 8123 for HTTP.\r\n";
                let _ = s.write_all(reply).await;
                let _ = s.shutdown().await;
                drain(&mut s).await;
                return reply.len() as u64;
            }
            // Hello (packet 0) with a name of 2^20 bytes announced.
            stream_forever(s, &[0, 0x80, 0x80, 0x40], seed).await
        }
        Hostile::InfluxGiantResult => {
            let Some(head) = read_http_request(&mut s, &mut buf).await else {
                return 0;
            };
            if head.starts_with("GET /query") {
                return stream_forever(
                    s,
                    b"HTTP/1.1 200 OK\r\nX-Influxdb-Version: 1.8.10\r\nContent-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n",
                    seed,
                )
                .await;
            }
            let reply = http_response(
                "404 Not Found",
                "X-Influxdb-Version: 1.8.10\r\n",
                "404 page not found\n",
            );
            let _ = s.write_all(&reply).await;
            let _ = s.shutdown().await;
            drain(&mut s).await;
            reply.len() as u64
        }
        Hostile::ClickHouseOkToEverything => {
            http_server(s, buf, |_| http_response("200 OK", "", "Ok.\n")).await
        }
        Hostile::EtcdGiantRange => {
            let (s, written) = etcd_server(s, None).await;
            if written > 0 {
                return written;
            }
            let head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n";
            stream_forever(s, head, seed).await
        }
        Hostile::EtcdEndlessRange => {
            let (s, written) = etcd_server(s, None).await;
            if written > 0 {
                return written;
            }
            endless_chunks(s).await
        }
        Hostile::EtcdHoneypot => etcd_server(s, Some(ETCD_EMPTY_RANGE)).await.1,
        Hostile::ZkGiantLength => {
            if !zk_handshake(&mut s, &mut buf).await {
                return 0;
            }
            stream_forever(s, &[0x7f, 0xff, 0xff, 0xff], seed).await
        }
        Hostile::ZkEndlessReply => {
            if !zk_handshake(&mut s, &mut buf).await {
                return 0;
            }
            let connected = zk_connected();
            if s.write_all(&connected).await.is_err() {
                return 0;
            }
            buf.drain(..49);
            while buf.len() < 8 {
                if !read_more(&mut s, &mut buf).await {
                    return connected.len() as u64;
                }
            }
            connected.len() as u64 + stream_forever(s, &[0, 0x0f, 0xff, 0x00], seed).await
        }
    }
}

/// The second octet of the loopback network this test may use: N of `LEAKSCOPE_LAB_NET=127.N`.
fn net_octet() -> u8 {
    match std::env::var("LEAKSCOPE_LAB_NET") {
        Ok(net) => net
            .strip_prefix("127.")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("LEAKSCOPE_LAB_NET={net:?} is not of the form 127.N")),
        Err(_) => 0,
    }
}

/// Binds every case's listener (127.N.40.(host + offset)) and serves it in the background.
fn start(rt: &tokio::runtime::Runtime, offset: u8, log: &Log) -> Vec<(SocketAddr, &'static Case)> {
    let mut endpoints = Vec::new();
    let net = net_octet();
    for (i, c) in CASES.iter().enumerate() {
        let addr = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(127, net, 40, c.host + offset)),
            c.port,
        );
        let listener = rt.block_on(async {
            let sock = TcpSocket::new_v4().expect("socket");
            sock.set_reuseaddr(true).expect("SO_REUSEADDR");
            sock.set_send_buffer_size(SERVER_SNDBUF).expect("SO_SNDBUF");
            sock.bind(addr)
                .unwrap_or_else(|e| panic!("cannot bind the hostile server {addr}: {e}"));
            sock.listen(128).expect("listen")
        });
        let log = log.clone();
        let kind = c.kind;
        rt.spawn(async move {
            let mut n = 0u64;
            while let Ok((s, _)) = listener.accept().await {
                n += 1;
                let log = log.clone();
                let seed = (i as u64) << 32 | n;
                tokio::spawn(async move {
                    let t0 = Instant::now();
                    let written = serve(kind, s, seed).await;
                    log.lock().unwrap().push(ConnLog {
                        endpoint: addr,
                        kind,
                        written,
                        lifetime: t0.elapsed(),
                    });
                });
            }
        });
        endpoints.push((addr, c));
    }
    endpoints
}

// ---------------------------------------------------------------------------------------------
// Running the scanner

struct Run {
    report: Value,
    wall: Duration,
    /// Highest VmHWM seen in /proc while the scanner ran, KiB.
    hwm_kib: u64,
    /// ru_maxrss of waited-for children after it exited, KiB.
    maxrss_kib: u64,
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn children_maxrss_kib() -> u64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0, "getrusage");
    // Linux reports ru_maxrss in KiB.
    usage.ru_maxrss as u64
}

fn run_scan(targets: &[SocketAddr], try_defaults: bool) -> Run {
    for t in targets {
        assert!(t.ip().is_loopback(), "test harness refuses {t}");
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_leakscope"));
    cmd.arg("scan")
        .args(targets.iter().map(SocketAddr::to_string))
        .args(["--timeout", &TIMEOUT.to_string()])
        .args(["--service-timeout", &SERVICE_TIMEOUT.to_string()])
        .args(["--inventory-timeout", &INVENTORY_TIMEOUT.to_string()])
        .args(["--format", "json", "--quiet", "--no-store"])
        .env("LEAKSCOPE_LOOPBACK_ONLY", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if try_defaults {
        cmd.arg("--try-defaults");
    }
    let t0 = Instant::now();
    let mut child = cmd.spawn().expect("run leakscope");
    let pid = child.id();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        stdout.read_to_end(&mut b).map(|_| b)
    });
    let err = std::thread::spawn(move || {
        let mut b = Vec::new();
        stderr.read_to_end(&mut b).map(|_| b)
    });
    let mut hwm = 0;
    // A hung scanner is killed well after the bound, so the failure is an assertion, not a hang.
    let kill_after = wall_bound() * 3;
    let status = loop {
        if let Some(h) = vm_hwm_kib(pid) {
            hwm = hwm.max(h);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if t0.elapsed() > kill_after {
            let _ = child.kill();
            let _ = child.wait();
            panic!("leakscope still running after {kill_after:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let wall = t0.elapsed();
    let stdout = out.join().unwrap().expect("read stdout");
    let stderr = err.join().unwrap().expect("read stderr");
    let code = status.code();
    assert!(
        matches!(code, Some(0 | 1)),
        "leakscope exited with {status}: {}",
        String::from_utf8_lossy(&stderr)
    );
    let report: Value = serde_json::from_slice(&stdout).unwrap_or_else(|e| {
        panic!(
            "scan output is not JSON ({e}): {}",
            String::from_utf8_lossy(&stdout)
        )
    });
    assert_eq!(report["schema"], "leakscope.scan/v1");
    Run {
        report,
        wall,
        hwm_kib: hwm,
        maxrss_kib: children_maxrss_kib(),
    }
}

fn check(offset: u8, try_defaults: bool) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let log: Log = Arc::default();
    let endpoints = start(&rt, offset, &log);
    let targets: Vec<SocketAddr> = endpoints.iter().map(|(a, _)| *a).collect();

    let run = run_scan(&targets, try_defaults);
    // Let the servers notice the scanner is gone and log their last connections.
    std::thread::sleep(Duration::from_millis(500));
    let conns = log.lock().unwrap().clone();
    drop(rt);

    let mode = if try_defaults {
        "with --try-defaults"
    } else {
        "without --try-defaults"
    };
    let mut problems = Vec::new();
    let services: BTreeMap<SocketAddr, &Value> = run.report["services"]
        .as_array()
        .expect("services")
        .iter()
        .map(|s| {
            let ip: IpAddr = s["address"].as_str().unwrap().parse().unwrap();
            (SocketAddr::new(ip, s["port"].as_u64().unwrap() as u16), s)
        })
        .collect();

    // One table per run, printed at once (the two tests run side by side).
    let mut table = format!(
        "hostile peers {mode}: wall {:?} (bound {:?}), scanner duration_ms {}, peak RSS {} KiB \
         (VmHWM) / {} KiB (ru_maxrss of children), bound {RSS_LIMIT_KIB} KiB\n{:<22} {:<24} \
         {:<14} {:<14} {:>5} {:>12}  evidence\n",
        run.wall,
        wall_bound(),
        run.report["stats"]["duration_ms"],
        run.hwm_kib,
        run.maxrss_kib,
        "endpoint",
        "misbehaviour",
        "protocol",
        "access",
        "conns",
        "max written"
    );
    for (addr, c) in &endpoints {
        let mine: Vec<&ConnLog> = conns.iter().filter(|l| l.endpoint == *addr).collect();
        let max_written = mine.iter().map(|l| l.written).max().unwrap_or(0);
        let Some(s) = services.get(addr) else {
            problems.push(format!("{addr} ({:?}): not reported", c.kind));
            continue;
        };
        let (protocol, access) = (
            s["protocol"].as_str().unwrap(),
            s["access"].as_str().unwrap(),
        );
        table += &format!(
            "{:<22} {:<24} {:<14} {:<14} {:>5} {:>12}  {}\n",
            addr.to_string(),
            format!("{:?}", c.kind),
            protocol,
            access,
            mine.len(),
            max_written,
            s["evidence"]
        );
        if mine.len() > MAX_CONNECTIONS {
            problems.push(format!(
                "{addr} ({:?}): {} connections (bound {MAX_CONNECTIONS})",
                c.kind,
                mine.len()
            ));
        }
        // The rule that matters most: nothing hostile is ever called readable.
        if matches!(access, "open" | "default_credentials") {
            problems.push(format!(
                "{addr} ({:?}) reported {access}: {}",
                c.kind, s["evidence"]
            ));
        }
        let want = if try_defaults { c.defaults } else { c.plain };
        if (protocol, access) != want {
            problems.push(format!(
                "{addr} ({:?}): got {protocol}/{access}, expected {}/{} (evidence {})",
                c.kind, want.0, want.1, s["evidence"]
            ));
        }
        if s["evidence"].as_array().is_none_or(|e| e.is_empty()) {
            problems.push(format!("{addr} ({:?}): no evidence", c.kind));
        }
        let attempts = s["auth_attempts"].as_u64().unwrap_or(0);
        if !try_defaults && attempts != 0 {
            problems.push(format!(
                "{addr}: {attempts} credential attempts without --try-defaults"
            ));
        }
        if s["containers"].as_array().is_some_and(|c| !c.is_empty()) {
            problems.push(format!("{addr} ({:?}): containers listed", c.kind));
        }
    }
    if services.len() != endpoints.len() {
        problems.push(format!(
            "{} services reported for {} endpoints",
            services.len(),
            endpoints.len()
        ));
    }

    // Bounded on the wire: streams were cut at a cap, promptly.
    let bound = stream_bound();
    for l in conns.iter().filter(|l| l.kind.streams()) {
        if l.written > bound {
            problems.push(format!(
                "{} ({:?}): the server wrote {} bytes on one connection before the scanner closed it (bound {bound})",
                l.endpoint, l.kind, l.written
            ));
        }
        if l.lifetime > STREAM_CLOSE_BOUND {
            problems.push(format!(
                "{} ({:?}): a streaming connection stayed open {:?} (bound {STREAM_CLOSE_BOUND:?})",
                l.endpoint, l.kind, l.lifetime
            ));
        }
    }
    let streamed: u64 = conns
        .iter()
        .filter(|l| l.kind.streams())
        .map(|l| l.written)
        .sum();
    table += &format!(
        "streaming servers wrote {streamed} bytes over {} connections (per-connection bound \
         {bound}, longest connection {:?})",
        conns.iter().filter(|l| l.kind.streams()).count(),
        conns
            .iter()
            .filter(|l| l.kind.streams())
            .map(|l| l.lifetime)
            .max()
            .unwrap_or_default()
    );
    eprintln!("{table}");

    // Bounded in time and memory.
    if run.wall > wall_bound() {
        problems.push(format!(
            "the scan took {:?}, more than {:?} (--timeout {TIMEOUT} + --service-timeout \
             {SERVICE_TIMEOUT} + --inventory-timeout {INVENTORY_TIMEOUT} + {WALL_MARGIN:?})",
            run.wall,
            wall_bound()
        ));
    }
    let peak = run.hwm_kib.max(run.maxrss_kib);
    if peak > RSS_LIMIT_KIB {
        problems.push(format!(
            "peak RSS {peak} KiB over the {RSS_LIMIT_KIB} KiB bound"
        ));
    }
    assert!(
        run.hwm_kib > 0,
        "VmHWM of the scanner was never read from /proc"
    );
    assert!(
        problems.is_empty(),
        "hostile peers {mode}:\n{}",
        problems.join("\n")
    );
}

#[test]
fn hostile_peers_cost_one_deadline_and_a_bounded_buffer() {
    check(0, false);
}

#[test]
fn honeypots_are_never_open_even_with_default_credentials() {
    check(100, true);
}
