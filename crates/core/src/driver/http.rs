//! A minimal HTTP/1.1 client over a [`Session`], for HTTP-speaking stores.
//!
//! Hand-written rather than hyper/reqwest because every byte must go through the bounded reader:
//! a `Content-Length: 10^12` or a chunked body that never ends must cost one cap and one
//! deadline. One request per connection (`Connection: close`) keeps the state machine trivial.

use base64::Engine as _;

use super::budget::Spent;
use super::context::Seen;
use super::failure::Failure;
use super::session::Session;
use crate::net::{Check, NetError};

/// Largest header block accepted.
pub const MAX_HEAD: usize = 16 * 1024;

/// A parsed response. `body` is complete (de-chunked) and at most the cap the caller gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// What identification saw of a response that is not the protocol's: the status and the
    /// start of the body.
    pub fn seen(&self) -> Seen {
        let mut seen = format!("HTTP {} ", self.status).into_bytes();
        seen.extend(self.body.iter().take(48));
        Seen::Bytes(seen)
    }
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

struct Head {
    status: u16,
    headers: Vec<(String, String)>,
    len: usize,
    framing: Framing,
}

/// Parses the status line and headers if they are complete. Content-Length is checked against
/// `body_cap` here, before any body byte is read.
fn parse_head(buf: &[u8], body_cap: usize) -> Result<Option<Head>, NetError> {
    let mut hdrs = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut hdrs);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > MAX_HEAD {
                return Err(NetError::TooLarge { cap: MAX_HEAD });
            }
            return Ok(None);
        }
        Err(e) => return Err(NetError::Invalid(format!("not HTTP: {e}"))),
    };
    let status = resp.code.unwrap_or(0);
    let headers: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.trim())
    };
    let framing =
        if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
            Framing::Chunked
        } else if let Some(v) = get("content-length") {
            let n: u64 = v
                .parse()
                .map_err(|_| NetError::Invalid(format!("bad Content-Length {v:?}")))?;
            if n > body_cap as u64 {
                return Err(NetError::TooLarge { cap: body_cap });
            }
            Framing::Length(n as usize)
        } else if status == 204 || status == 304 || (100..200).contains(&status) {
            Framing::Length(0)
        } else {
            Framing::UntilClose
        };
    Ok(Some(Head {
        status,
        headers,
        len,
        framing,
    }))
}

/// Walks chunked framing without copying; returns the end offset of the terminating chunk and
/// the de-chunked length, or None if more bytes are needed.
fn chunked_end(body: &[u8], cap: usize) -> Result<Option<(usize, usize)>, NetError> {
    let mut pos = 0;
    let mut total = 0usize;
    loop {
        let Some(eol) = body[pos..].windows(2).position(|w| w == b"\r\n") else {
            if body.len() - pos > 32 {
                return Err(NetError::Invalid("chunk size line too long".into()));
            }
            return Ok(None);
        };
        let line = std::str::from_utf8(&body[pos..pos + eol])
            .map_err(|_| NetError::Invalid("bad chunk size".into()))?;
        let hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(hex, 16)
            .map_err(|_| NetError::Invalid(format!("bad chunk size {hex:?}")))?;
        total = total
            .checked_add(size)
            .filter(|&t| t <= cap)
            .ok_or(NetError::TooLarge { cap })?;
        pos += eol + 2;
        if size == 0 {
            // Trailers end with an empty line; most servers send none.
            return match body[pos..].windows(2).position(|w| w == b"\r\n") {
                Some(i) => Ok(Some((pos + i + 2, total))),
                None => Ok(None),
            };
        }
        if body.len() < pos + size + 2 {
            return Ok(None);
        }
        pos += size + 2;
    }
}

/// De-chunks a body. Also runs on bodies cut short by the peer closing (see [`exchange`]), so
/// every offset is checked: a chunk running past the end, or a size near `usize::MAX`, ends it.
fn dechunk(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(eol) = body
        .get(pos..)
        .and_then(|rest| rest.windows(2).position(|w| w == b"\r\n"))
    {
        let hex = std::str::from_utf8(&body[pos..pos + eol]).unwrap_or("0");
        let size =
            usize::from_str_radix(hex.split(';').next().unwrap_or("0").trim(), 16).unwrap_or(0);
        pos += eol + 2;
        let Some(end) = pos.checked_add(size).filter(|&end| end <= body.len()) else {
            break;
        };
        if size == 0 {
            break;
        }
        out.extend_from_slice(&body[pos..end]);
        pos = end + 2;
    }
    out
}

/// Frame checker for one whole HTTP response (head + body) under `body_cap`.
pub fn check_response(buf: &[u8], body_cap: usize) -> Check {
    match parse_head(buf, body_cap) {
        Err(NetError::TooLarge { cap }) => Check::TooLarge(cap),
        Err(e) => Check::Invalid(e.to_string()),
        Ok(None) => Check::Incomplete,
        Ok(Some(h)) => match h.framing {
            Framing::Length(n) => {
                if buf.len() >= h.len + n {
                    Check::Complete(h.len + n)
                } else {
                    Check::Incomplete
                }
            }
            Framing::Chunked => match chunked_end(&buf[h.len..], body_cap) {
                Ok(Some((end, _))) => Check::Complete(h.len + end),
                Ok(None) => Check::Incomplete,
                Err(NetError::TooLarge { cap }) => Check::TooLarge(cap),
                Err(e) => Check::Invalid(e.to_string()),
            },
            Framing::UntilClose => Check::Incomplete,
        },
    }
}

/// Parses a complete response (as returned by [`check_response`], or everything read until the
/// peer closed for bodies without length).
pub fn parse_response(buf: &[u8], body_cap: usize) -> Result<Response, NetError> {
    let head = parse_head(buf, body_cap)?
        .ok_or_else(|| NetError::Invalid("incomplete HTTP head".into()))?;
    let raw = &buf[head.len..];
    let body = match head.framing {
        Framing::Length(n) => raw[..n.min(raw.len())].to_vec(),
        Framing::Chunked => dechunk(raw),
        Framing::UntilClose => raw[..raw.len().min(body_cap)].to_vec(),
    };
    Ok(Response {
        status: head.status,
        headers: head.headers,
        body,
    })
}

/// `s` percent-encoded for a query string: everything but ASCII letters, digits and `-_.~`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A request to send: method, path, optional basic credentials.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub host: &'a str,
    pub basic_auth: Option<(&'a str, &'a str)>,
}

impl Request<'_> {
    pub fn encode(&self) -> Vec<u8> {
        self.encode_with_body(None)
    }

    /// The request head, plus `body` as `application/json` with its `Content-Length` when given
    /// (Elasticsearch reads search bodies sent with GET).
    pub fn encode_with_body(&self, body: Option<&[u8]>) -> Vec<u8> {
        let mut out = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: leakscope/{}\r\nAccept: application/json\r\nConnection: close\r\n",
            self.method,
            self.path,
            self.host,
            env!("CARGO_PKG_VERSION")
        );
        if let Some((u, p)) = self.basic_auth {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            out.push_str(&format!("Authorization: Basic {token}\r\n"));
        }
        if let Some(b) = body {
            out.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        out.push_str("\r\n");
        let mut out = out.into_bytes();
        if let Some(b) = body {
            out.extend_from_slice(b);
        }
        out
    }
}

/// Sends `req` (with `body` as `application/json`, when given) on the session's connection
/// and reads one response with a body of at most `body_cap` bytes.
pub async fn exchange<E>(
    s: &mut Session,
    req: &Request<'_>,
    body: Option<&[u8]>,
    body_cap: usize,
) -> Result<Response, Failure<E>> {
    s.send(&req.encode_with_body(body)).await?;
    let cap = MAX_HEAD + body_cap + 64 * 1024; // chunk framing overhead is bounded by the cap too
    let parsed = match s.read_frame(cap, |b| check_response(b, body_cap)).await {
        Ok(frame) => parse_response(&frame, body_cap),
        // A body delimited by the connection closing ends here.
        Err(Failure::Net(NetError::Closed(n))) if n > 0 => parse_response(s.buffered(), body_cap),
        Err(e) => return Err(e),
    };
    parsed.map_err(Failure::Net)
}

/// [`exchange`] with the body cap cut to the bytes the session's budget has left: a body over
/// the cut cap is the byte budget running out ([`Failure::Budget`]), not a peer over its cap.
pub async fn exchange_within<E>(
    s: &mut Session,
    req: &Request<'_>,
    body: Option<&[u8]>,
    body_cap: usize,
) -> Result<Response, Failure<E>> {
    let here = body_cap.min(s.budget().bytes_left());
    if here == 0 {
        return Err(Failure::Budget(Spent::Bytes));
    }
    match exchange(s, req, body, here).await {
        Err(Failure::Net(NetError::TooLarge { .. })) if here < body_cap => {
            Err(Failure::Budget(Spent::Bytes))
        }
        other => other,
    }
}

/// An HTTP status other than success, with the server's reason in words (possibly empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: u16,
    pub reason: String,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.reason.is_empty() {
            write!(f, "HTTP {}", self.code)
        } else {
            write!(f, "HTTP {} ({})", self.code, self.reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_body() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}extra";
        assert_eq!(check_response(raw, 100), Check::Complete(raw.len() - 5));
        let r = parse_response(raw, 100).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"{}"[..]));
        assert_eq!(r.header("content-type"), Some("application/json"));
    }

    #[test]
    fn absurd_content_length_is_refused_before_reading_the_body() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n";
        assert_eq!(check_response(raw, 1 << 20), Check::TooLarge(1 << 20));
    }

    #[test]
    fn chunked_body_and_endless_chunks() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(check_response(raw, 100), Check::Complete(raw.len()));
        assert_eq!(parse_response(raw, 100).unwrap().body, b"abcde");
        // Chunks that never end stay Incomplete (the read deadline ends them) and past the cap
        // become Invalid.
        let partial = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n";
        assert_eq!(check_response(partial, 100), Check::Incomplete);
        let big = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffff\r\n";
        assert_eq!(check_response(big, 100), Check::TooLarge(100));
    }

    /// Found by fuzz/fuzz_targets/http.rs: a chunked body cut after a chunk-size line, read until
    /// the peer closed, panicked the whole scan (slice start past the end); a chunk size near
    /// `usize::MAX` overflowed the offset arithmetic.
    #[test]
    fn truncated_chunked_body_after_close_does_not_panic() {
        let cut = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\n\r\n";
        assert_eq!(check_response(cut, 100), Check::Incomplete);
        assert_eq!(parse_response(cut, 100).unwrap().body, b"abc\r\n");
        for n in 0..cut.len() {
            let _ = parse_response(&cut[..n], 100);
        }
        let huge = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\nffffffffffffffff\r\nxy";
        assert_eq!(parse_response(huge, 100).unwrap().body, b"ab");
    }

    /// A body over the bytes the budget has left ends the budget, not the peer: the inventory
    /// says "byte budget spent" instead of blaming the server.
    #[tokio::test]
    async fn a_body_over_the_budget_spends_the_budget() {
        use crate::testkit::{frames, FakeServer, Reply};
        use std::sync::Arc;
        let server = FakeServer::start(Vec::new(), frames::http_request, |_| {
            Reply::SendAndClose(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n".to_vec())
        })
        .await;
        let ctx = server.ctx();
        let req = Request {
            method: "GET",
            path: "/",
            host: "x",
            basic_auth: None,
        };
        for (left, want_budget) in [(50, true), (1 << 20, false)] {
            let budget = Arc::new(super::super::budget::Budget::bytes_only(left));
            let mut s = Session::new(&ctx, budget);
            s.connect::<()>().await.unwrap();
            let r = exchange_within::<()>(&mut s, &req, None, 64).await;
            assert_eq!(
                matches!(r, Err(Failure::Budget(Spent::Bytes))),
                want_budget,
                "{left}: {r:?}"
            );
        }
    }

    #[test]
    fn garbage_is_not_http() {
        assert!(matches!(
            check_response(b"-ERR unknown command\r\n", 100),
            Check::Invalid(_)
        ));
        assert!(matches!(
            check_response(&[0x15, 3, 3, 0, 2, 2, 0x46], 100),
            Check::Invalid(_)
        ));
    }

    #[test]
    fn head_without_length_reads_until_close() {
        let raw = b"HTTP/1.0 200 OK\r\n\r\nhello";
        assert_eq!(check_response(raw, 100), Check::Incomplete);
        assert_eq!(parse_response(raw, 100).unwrap().body, b"hello");
    }

    #[test]
    fn request_encoding_with_basic_auth() {
        let r = Request {
            method: "GET",
            path: "/_cat/indices",
            host: "127.0.0.1:9200",
            basic_auth: Some(("elastic", "changeme")),
        };
        let s = String::from_utf8(r.encode()).unwrap();
        assert!(s.starts_with("GET /_cat/indices HTTP/1.1\r\nHost: 127.0.0.1:9200\r\n"));
        assert!(s.contains("Authorization: Basic ZWxhc3RpYzpjaGFuZ2VtZQ==\r\n"));
        assert!(s.ends_with("\r\n\r\n"));
        assert!(!s.contains("Content-Length"));
    }

    #[test]
    fn query_strings_are_percent_encoded() {
        assert_eq!(
            percent_encode("SELECT * FROM \"a b\"&x=1#é"),
            "SELECT%20%2A%20FROM%20%22a%20b%22%26x%3D1%23%C3%A9"
        );
    }

    #[test]
    fn request_encoding_with_a_body() {
        let r = Request {
            method: "GET",
            path: "/customers/_search",
            host: "127.0.0.1:9200",
            basic_auth: None,
        };
        let s = String::from_utf8(r.encode_with_body(Some(br#"{"size":2}"#))).unwrap();
        assert!(s.starts_with("GET /customers/_search HTTP/1.1\r\n"));
        assert!(
            s.ends_with("Content-Type: application/json\r\nContent-Length: 10\r\n\r\n{\"size\":2}")
        );
        assert_eq!(r.encode_with_body(None), r.encode());
    }
}
