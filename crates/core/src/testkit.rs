//! The test kit of every protocol: one scriptable fake server, and captured-frame fixtures.
//!
//! A protocol's unit tests replay what a real server sent (bytes captured from the lab's
//! servers, kept under `crates/core/fixtures/`) or misbehave on purpose, against the protocol's
//! real code over a real loopback socket. [`FakeServer`] does both: on each connection it sends
//! its opening (a greeting, or nothing), splits what the client sends into messages with a
//! [`Framing`] of the protocol, logs every message, and answers each with what the test's
//! function returns: bytes, nothing, a late answer, a close, a reset, an endless stream. The
//! server stops with the test (dropping it aborts its tasks), and it buffers at most 1 MiB of
//! what a client sends.
//!
//! Only for tests: nothing here is compiled into the scanner.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::driver::{ProbeCtx, ProbeOptions};
use crate::inventory::Holding;
use crate::net::Limits;

/// The bytes of a captured fixture, by its path under `crates/core/fixtures/`.
macro_rules! fixture {
    ($path:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/", $path))
    };
}
pub(crate) use fixture;

/// One message a client sent to a [`FakeServer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Which connection, from 0 in accept order.
    pub conn: usize,
    /// Which message of that connection, from 0.
    pub index: usize,
    pub bytes: Vec<u8>,
}

impl Message {
    /// The bytes as text (lossy), for tests of text protocols and SQL.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// What a [`FakeServer`] does at accept, or in answer to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Sends these bytes and goes on reading.
    Send(Vec<u8>),
    /// Sends these bytes, then closes its side.
    SendAndClose(Vec<u8>),
    /// Sends nothing and goes on reading.
    Nothing,
    /// Waits, then sends these bytes.
    Later(Duration, Vec<u8>),
    /// Sends nothing and keeps the connection open this long (a stalled statement), then
    /// closes it.
    Stall(Duration),
    /// Closes the connection.
    Close,
    /// Closes the connection with a TCP reset.
    Reset,
    /// Sends these bytes, then `x` until the client goes away (no line, frame or record ever
    /// ends in it).
    Stream(Vec<u8>),
    /// Sends these bytes one at a time, one every interval, over and over.
    Drip(Vec<u8>, Duration),
}

/// Where the next whole message ends in what a client sent so far: `Some(n)` for the first
/// `n` bytes, `None` for more bytes. The second argument is the message's index on its
/// connection (startup messages are framed differently in some protocols).
pub type Framing = fn(&[u8], usize) -> Option<usize>;

/// Framings of the protocols leakscope speaks.
pub mod frames {
    /// A line ending with `\n`.
    pub fn line(buf: &[u8], _: usize) -> Option<usize> {
        buf.iter().position(|&b| b == b'\n').map(|i| i + 1)
    }

    /// Whatever one read brought (a client that sends one message at a time).
    pub fn chunk(buf: &[u8], _: usize) -> Option<usize> {
        (!buf.is_empty()).then_some(buf.len())
    }

    /// An HTTP/1.1 request: the head, and a body of its `Content-Length`.
    pub fn http_request(buf: &[u8], _: usize) -> Option<usize> {
        let head = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let text = String::from_utf8_lossy(&buf[..head]).to_ascii_lowercase();
        let body = text
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        (buf.len() >= head + body).then_some(head + body)
    }

    /// A message whose first four bytes are its whole length, little-endian (MongoDB).
    pub fn le32_length(buf: &[u8], _: usize) -> Option<usize> {
        let len = i32::from_le_bytes(buf.get(..4)?.try_into().ok()?);
        let len = usize::try_from(len).ok().filter(|&n| n >= 4)?;
        (buf.len() >= len).then_some(len)
    }

    /// A message behind a four-byte big-endian length that does not count itself (ZooKeeper).
    pub fn be32_length(buf: &[u8], _: usize) -> Option<usize> {
        let len = u32::from_be_bytes(buf.get(..4)?.try_into().ok()?) as usize;
        let len = len.checked_add(4)?;
        (buf.len() >= len).then_some(len)
    }

    /// A MySQL packet: 3-byte little-endian payload length, sequence id, payload.
    pub fn mysql_packet(buf: &[u8], _: usize) -> Option<usize> {
        let [a, b, c, _, ..] = *buf else { return None };
        let len = 4 + u32::from_le_bytes([a, b, c, 0]) as usize;
        (buf.len() >= len).then_some(len)
    }

    /// A PostgreSQL frontend message: the startup (and SSLRequest) message has no type byte,
    /// the others a type byte and a big-endian length that counts itself.
    pub fn pg_message(buf: &[u8], index: usize) -> Option<usize> {
        let untyped = index == 0 || is_startup(buf);
        let (at, extra) = if untyped { (0, 0) } else { (1, 1) };
        let len = u32::from_be_bytes(buf.get(at..at + 4)?.try_into().ok()?) as usize + extra;
        (len >= 4 && buf.len() >= len).then_some(len)
    }

    /// After an SSLRequest the client sends its startup message, untyped again (protocol
    /// 3.0 in its second word).
    fn is_startup(buf: &[u8]) -> bool {
        buf.len() >= 8 && buf[4..8] == 196_608u32.to_be_bytes()
    }
}

/// Splits captured bytes into whole messages with `framing` (a fixture of several frames).
pub fn split(mut bytes: &[u8], framing: Framing) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(n) = framing(bytes, out.len()).filter(|&n| n > 0) {
        out.push(bytes[..n].to_vec());
        bytes = &bytes[n..];
    }
    assert!(bytes.is_empty(), "the fixture ends inside a frame");
    out
}

/// Connect, read and write timeouts all of `d` (tests that must not wait long).
pub fn timeouts(d: Duration) -> Limits {
    Limits {
        connect_timeout: d,
        read_timeout: d,
        write_timeout: d,
    }
}

/// A table as an inventory lists it: `records` rows (an exact count or not) and its columns
/// (name, type), for the counters' tests.
pub fn table(name: &str, records: u64, exact: bool, cols: &[(&str, &str)]) -> Holding {
    Holding {
        name: name.into(),
        kind: "table",
        records: Some(records),
        records_exact: exact,
        schema: cols
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        ..Holding::default()
    }
}

type Answer = dyn Fn(&Message) -> Reply + Send + Sync;

/// A scripted peer on `127.0.0.1` (see the module docs).
pub struct FakeServer {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Message>>>,
    accepted: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a fake server keeps of a client's unanswered bytes.
const MAX_BUFFERED: usize = 1 << 20;

impl FakeServer {
    /// Serves every connection: `opening` at accept, then `answer` to each message.
    pub async fn start(
        opening: Vec<Reply>,
        framing: Framing,
        answer: impl Fn(&Message) -> Reply + Send + Sync + 'static,
    ) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("bound address");
        let log: Arc<Mutex<Vec<Message>>> = Arc::default();
        let accepted: Arc<Mutex<usize>> = Arc::default();
        let answer: Arc<Answer> = Arc::new(answer);
        let opening = Arc::new(opening);
        let (log2, accepted2) = (log.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((s, _)) = listener.accept().await {
                // As servers do: answers to pipelined requests are not held back by Nagle.
                let _ = s.set_nodelay(true);
                let conn = {
                    let mut n = accepted2.lock().expect("lock");
                    *n += 1;
                    *n - 1
                };
                let (opening, answer, log) = (opening.clone(), answer.clone(), log2.clone());
                conns.spawn(serve(s, conn, opening, framing, answer, log));
            }
        });
        FakeServer {
            addr,
            log,
            accepted,
            task,
        }
    }

    /// A line-based peer that says nothing first.
    pub async fn lines(answer: impl Fn(&Message) -> Reply + Send + Sync + 'static) -> FakeServer {
        FakeServer::start(Vec::new(), frames::line, answer).await
    }

    /// A peer that only does `opening` and then reads whatever comes, answering nothing.
    pub async fn opening(opening: Vec<Reply>) -> FakeServer {
        FakeServer::start(opening, frames::chunk, |_| Reply::Nothing).await
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A probe context for this server with the default options.
    pub fn ctx(&self) -> ProbeCtx {
        self.ctx_with(ProbeOptions::default())
    }

    /// A probe context for this server (its address alone in scope, direct connections).
    pub fn ctx_with(&self, opts: ProbeOptions) -> ProbeCtx {
        crate::driver::test_ctx(self.addr, opts)
    }

    /// Every message received so far, in arrival order.
    pub fn messages(&self) -> Vec<Message> {
        self.log.lock().expect("lock").clone()
    }

    /// The messages received so far, as text.
    pub fn texts(&self) -> Vec<String> {
        self.messages().iter().map(Message::text).collect()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        *self.accepted.lock().expect("lock")
    }
}

async fn serve(
    mut s: TcpStream,
    conn: usize,
    opening: Arc<Vec<Reply>>,
    framing: Framing,
    answer: Arc<Answer>,
    log: Arc<Mutex<Vec<Message>>>,
) {
    for r in opening.iter() {
        if !act(&mut s, r.clone()).await {
            return;
        }
    }
    let mut buf = Vec::new();
    let mut index = 0;
    loop {
        while let Some(n) = framing(&buf, index).filter(|&n| n > 0 && n <= buf.len()) {
            let m = Message {
                conn,
                index,
                bytes: buf.drain(..n).collect(),
            };
            log.lock().expect("lock").push(m.clone());
            index += 1;
            if !act(&mut s, answer(&m)).await {
                return;
            }
        }
        let mut chunk = [0u8; 8192];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) if buf.len() < MAX_BUFFERED => buf.extend_from_slice(&chunk[..n]),
            Ok(_) => {}
        }
    }
}

/// Does `r`; false when the connection is done.
async fn act(s: &mut TcpStream, r: Reply) -> bool {
    match r {
        Reply::Send(b) => s.write_all(&b).await.is_ok(),
        Reply::SendAndClose(b) => {
            let _ = s.write_all(&b).await;
            let _ = s.shutdown().await;
            drain(s).await;
            false
        }
        Reply::Nothing => true,
        Reply::Later(wait, b) => {
            tokio::time::sleep(wait).await;
            s.write_all(&b).await.is_ok()
        }
        Reply::Stall(wait) => {
            tokio::time::sleep(wait).await;
            false
        }
        Reply::Close => false,
        Reply::Reset => {
            let _ = s.set_zero_linger();
            false
        }
        Reply::Stream(head) => {
            if s.write_all(&head).await.is_err() {
                return false;
            }
            let fill = [b'x'; 8192];
            while s.write_all(&fill).await.is_ok() {}
            false
        }
        Reply::Drip(bytes, every) => {
            for &b in bytes.iter().cycle() {
                if s.write_all(&[b]).await.is_err() {
                    return false;
                }
                tokio::time::sleep(every).await;
            }
            false
        }
    }
}

/// Reads and drops until the client closes.
async fn drain(s: &mut TcpStream) {
    let mut chunk = [0u8; 8192];
    while matches!(s.read(&mut chunk).await, Ok(n) if n > 0) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framings_split_captured_frames() {
        let pg = [
            &[0, 0, 0, 8, 4, 210, 22, 47][..],
            b"\0\0\0\x09\0\x03\0\0\0",
            b"Q\0\0\0\x05x",
        ]
        .concat();
        assert_eq!(split(&pg, frames::pg_message).len(), 3);
        let http = b"GET / HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}GET /x HTTP/1.1\r\n\r\n";
        let reqs = split(http, frames::http_request);
        assert_eq!(reqs.len(), 2);
        assert!(reqs[0].ends_with(b"{}"));
        assert_eq!(
            split(b"\x01\0\0\0a\x02\0\0\x01bc", frames::mysql_packet).len(),
            2
        );
        assert_eq!(frames::le32_length(b"\x05\0\0\0x", 0), Some(5));
        assert_eq!(frames::le32_length(b"\x05\0\0\0", 0), None);
    }

    #[tokio::test]
    async fn a_script_is_served_and_logged_per_connection() {
        let server =
            FakeServer::start(
                vec![Reply::Send(b"hello\n".to_vec())],
                frames::line,
                |m| match m.index {
                    0 => Reply::Send(format!("{}:{}", m.conn, m.text()).into_bytes()),
                    _ => Reply::Close,
                },
            )
            .await;
        for _ in 0..2 {
            let mut s = TcpStream::connect(server.addr()).await.unwrap();
            s.write_all(b"one\ntwo\n").await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            assert!(got.starts_with(b"hello\n"), "{got:?}");
        }
        assert_eq!(server.connections(), 2);
        let texts = server.texts();
        assert_eq!(texts, ["one\n", "two\n", "one\n", "two\n"]);
        assert_eq!(server.messages()[2].conn, 1);
    }

    #[tokio::test]
    async fn a_reset_is_a_reset() {
        let server = FakeServer::lines(|_| Reply::Reset).await;
        let mut c = crate::net::Conn::connect(server.addr(), Default::default())
            .await
            .unwrap();
        c.send(b"hi\n").await.unwrap();
        let e = c.read_frame(64, |_| crate::net::Check::Incomplete).await;
        assert!(matches!(e, Err(crate::net::NetError::Reset)), "{e:?}");
    }
}
