//! Identification of one open `address:port`: which protocol, over TLS or not, and the verdict,
//! in round trips rather than timeouts.
//!
//! 1. Listen once, for a window scaled to the round trip the connect took, for a server that
//!    speaks first; a greeting goes to the protocol that recognises it
//!    ([`Handler::Greeting`]), and a greeting no protocol knows ends identification.
//! 2. Send the line probes ([`Handler::Line`], and `GET /` shared by every
//!    [`Handler::Http`]): each is at least [`LINE_PROBE_MIN`] bytes and ends with a line
//!    break, so whatever the server is, it answers at once (a text or HTTP server) or closes (a
//!    binary server that read a header of nonsense). A greeting that arrives late is still
//!    recognised.
//! 3. Only when every line probe was met with a close, the binary probes
//!    ([`Handler::Binary`]): a text server, which would wait for a line break, never gets one.
//!
//! Within each step the protocols that claim the port go first, then the registry's order; each
//! probe gets a fresh connection (the first reuses the one that proved the port open). A wrong
//! guess costs a round trip or a close. Silence, the one thing that costs a read deadline,
//! ends identification: no other probe would fare better with a server that answers nothing.
//! When nothing matches in plaintext (and the server did not answer plain HTTP) the same is
//! tried inside TLS, so an HTTPS Elasticsearch on any port is found. What stays unidentified is reported as `http` (it spoke HTTP) or
//! `unknown`, with what was seen as evidence.
//!
//! [`LINE_PROBE_MIN`]: crate::driver::LINE_PROBE_MIN

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use crate::driver::http::{self, Request, Response};
use crate::driver::{
    preview, Budget, Finding, GreetsFn, Handler, Outcome, ProbeCtx, RawFn, Seen, Session,
};
use crate::model::Access;
use crate::net::{looks_like_tls, Conn, NetError};
use crate::protocols::candidates;

/// The result for one endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Identified {
    pub finding: Finding,
    pub tls: bool,
}

/// The shortest wait for a greeting: servers greet from their accept path, which takes a few
/// milliseconds longer than the kernel's handshake even on loopback.
const GREETING_FLOOR: Duration = Duration::from_millis(20);

/// Bytes kept of a greeting.
const GREETING_CAP: usize = 4096;

/// How long to listen for a server that speaks first, after a connect that took `rtt`: the
/// greeting is sent once the server's accept returns, about one round trip after ours, so
/// four round trips plus a floor (never more than the configured banner wait).
pub fn greeting_window(rtt: Duration, banner_wait: Duration) -> Duration {
    (rtt * 4 + GREETING_FLOOR).min(banner_wait)
}

/// Fetches `GET /` on a connection.
async fn get_root(ctx: &ProbeCtx, conn: Conn) -> Result<Response, Seen> {
    let authority = ctx.authority();
    let req = Request {
        method: "GET",
        path: "/",
        host: &authority,
        basic_auth: None,
    };
    let mut s = Session::with_conn(ctx, conn, Arc::new(Budget::bytes_only(usize::MAX)));
    match http::exchange::<Infallible>(&mut s, &req, None, ctx.opts.http_body_cap).await {
        Ok(r) => Ok(r),
        Err(e) => Err(e.seen(s.buffered())),
    }
}

/// How one pass over the candidates ended without a finding.
struct Unmatched {
    /// The response to `GET /`, when the server spoke HTTP.
    root: Option<Response>,
    /// Trying TLS could not help: the server said nothing at all, or spoke first in a
    /// protocol nobody knows, or closed at once.
    final_: bool,
}

/// One pass over the candidates of `ctx`'s port (see the module docs). `first` is the connection
/// that proved the port open (or the TLS handshake's), still unused.
async fn pass(ctx: &ProbeCtx, first: Conn, seen: &mut Vec<Seen>) -> Result<Finding, Unmatched> {
    let cands = candidates(ctx.addr.port());
    let greeters: Vec<(GreetsFn, RawFn)> = cands
        .iter()
        .filter_map(|p| match p.handler {
            Handler::Greeting { greets, probe } => Some((greets, probe)),
            _ => None,
        })
        .collect();
    let greeter = |bytes: &[u8]| {
        greeters
            .iter()
            .find(|(greets, _)| greets(bytes))
            .map(|&(_, probe)| probe)
    };
    let unmatched = |root, final_| Err(Unmatched { root, final_ });

    // 1. A greeting.
    let mut first = first;
    let window = greeting_window(first.rtt(), ctx.opts.banner_wait);
    match first.read_banner(GREETING_CAP, window).await {
        Ok(bytes) if !bytes.is_empty() => {
            if let Some(probe) = greeter(&bytes) {
                return match probe(ctx, first).await {
                    Outcome::Found(f) => Ok(f),
                    Outcome::NotMe(s) => {
                        seen.push(s);
                        unmatched(None, true)
                    }
                };
            }
            seen.push(Seen::Bytes(bytes[..bytes.len().min(64)].to_vec()));
            return unmatched(None, true);
        }
        Ok(_) => {}
        Err(e) => {
            seen.push(Seen::from_error(&e, &[]));
            return unmatched(None, true);
        }
    }

    // 2. The line probes, then 3. the binary ones.
    let mut first = Some(first);
    let mut http_done = false;
    let mut only_closes = true;
    let lines = cands
        .iter()
        .filter(|p| matches!(p.handler, Handler::Line(_) | Handler::Http(_)));
    let binaries = cands
        .iter()
        .filter(|p| matches!(p.handler, Handler::Binary(_)));
    for (step, proto) in lines.map(|p| (1, p)).chain(binaries.map(|p| (2, p))) {
        if step == 2 && !only_closes {
            break;
        }
        if matches!(proto.handler, Handler::Http(_)) && http_done {
            continue;
        }
        let conn = match first.take() {
            Some(c) => c,
            None => match ctx.connect().await {
                Ok(c) => c,
                Err(e) => {
                    seen.push(Seen::from_error(&e, &[]));
                    // A port that stopped accepting will not start again within this scan.
                    if matches!(e, NetError::Refused) {
                        return unmatched(None, true);
                    }
                    continue;
                }
            },
        };
        let reaction = match proto.handler {
            Handler::Line(probe) | Handler::Binary(probe) => match probe(ctx, conn).await {
                Outcome::Found(f) => return Ok(f),
                Outcome::NotMe(s) => s,
            },
            Handler::Http(_) => {
                http_done = true;
                match get_root(ctx, conn).await {
                    Ok(resp) => {
                        for p in &cands {
                            if let Handler::Http(probe) = p.handler {
                                if let Outcome::Found(f) = probe(ctx, &resp).await {
                                    return Ok(f);
                                }
                            }
                        }
                        // An HTTP server, but no store of ours: no other protocol either,
                        // and no TLS on a port that just spoke plaintext.
                        return unmatched(Some(resp), true);
                    }
                    Err(s) => s,
                }
            }
            Handler::Greeting { .. } => continue,
        };
        match reaction {
            // A greeting that came after the window: the probe's bytes met a server that
            // speaks first. Its protocol gets a connection of its own.
            Seen::Bytes(ref b) if greeter(b).is_some() => {
                let probe = greeter(b).expect("a greeter matched");
                seen.push(reaction.clone());
                match ctx.connect().await {
                    Ok(c) => match probe(ctx, c).await {
                        Outcome::Found(f) => return Ok(f),
                        Outcome::NotMe(s) => seen.push(s),
                    },
                    Err(e) => seen.push(Seen::from_error(&e, &[])),
                }
                return unmatched(None, true);
            }
            // Nothing answers a server that answers nothing: give up, one deadline spent.
            Seen::Silence => {
                seen.push(Seen::Silence);
                return unmatched(None, true);
            }
            Seen::Closed => seen.push(Seen::Closed),
            other => {
                // A text answer to a line probe keeps the binary probes away from a text
                // server. A binary server's refusal of another binary protocol's first frame
                // (PostgreSQL's ErrorResponse to a ZooKeeper handshake) is a round trip like a
                // close, and the next binary probe may still be its own.
                if step == 1 {
                    only_closes = false;
                }
                seen.push(other);
            }
        }
    }
    unmatched(None, false)
}

/// Identifies the service behind `first`, a connection that just succeeded.
pub async fn identify(ctx: &ProbeCtx, first: Conn) -> Identified {
    let mut seen = Vec::new();
    let plain = match pass(ctx, first, &mut seen).await {
        Ok(finding) => {
            return Identified {
                finding,
                tls: false,
            }
        }
        Err(u) => u,
    };
    // Nothing spoke plaintext: maybe TLS. A handshake costs one connection.
    let mut tls_root = None;
    let mut tls_ok = false;
    if !plain.final_ {
        let tls_ctx = ctx.with_tls();
        match tls_ctx.connect().await {
            Ok(conn) => {
                tls_ok = true;
                match pass(&tls_ctx, conn, &mut seen).await {
                    Ok(finding) => return Identified { finding, tls: true },
                    Err(u) => tls_root = u.root,
                }
            }
            Err(e) => seen.push(Seen::Error(format!("TLS: {e}"))),
        }
    }
    let (root, tls) = match (tls_root, plain.root) {
        (Some(r), _) => (Some(r), true),
        (None, Some(r)) => (Some(r), false),
        (None, None) => (None, tls_ok),
    };
    if let Some(resp) = root {
        let mut f = Finding::new("http");
        f.product = resp.header("server").map(str::to_string);
        f.evidence.push(format!(
            "GET / answered HTTP {}{}; no data-store protocol recognised",
            resp.status,
            if tls { " over TLS" } else { "" }
        ));
        return Identified { finding: f, tls };
    }
    let mut f = Finding::new("unknown");
    f.access = Access::Unknown;
    f.evidence.push(describe(&seen, tls_ok));
    Identified {
        finding: f,
        tls: tls_ok,
    }
}

/// One line summarising what an unidentified service did.
fn describe(seen: &[Seen], tls_ok: bool) -> String {
    let bytes = seen.iter().find_map(|s| match s {
        Seen::Bytes(b) => Some(b),
        _ => None,
    });
    let mut parts = Vec::new();
    if let Some(b) = bytes {
        if looks_like_tls(b) {
            parts.push("answered with TLS records".to_string());
        } else {
            parts.push(format!("answered {:?}", preview(b)));
        }
    } else if seen.iter().all(|s| *s == Seen::Silence) {
        parts.push("accepted connections but never answered".to_string());
    } else if seen.contains(&Seen::Closed) {
        parts.push("closed connections without answering".to_string());
    }
    if tls_ok {
        parts.push("completed a TLS handshake".to_string());
    }
    if parts.is_empty() {
        parts.push("accepted connections; no protocol recognised".to_string());
    }
    format!("port open; {}", parts.join("; "))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::driver::ProbeOptions;
    use crate::testkit::{fixture, frames, timeouts, FakeServer, Message, Reply};

    /// A read deadline far longer than any round trip here: a test that finishes well within
    /// it spent none.
    const DEADLINE: Duration = Duration::from_secs(5);

    /// Identifies the fake server's endpoint as a scan does: connect, then [`identify`].
    async fn run(server: &FakeServer, read_timeout: Duration) -> (Identified, Duration) {
        let mut opts = ProbeOptions {
            limits: timeouts(read_timeout),
            ..ProbeOptions::default()
        };
        opts.limits.connect_timeout = DEADLINE;
        let ctx = server.ctx_with(opts);
        let t = Instant::now();
        let conn = ctx.connect().await.expect("connect to the fake server");
        let id = identify(&ctx, conn).await;
        (id, t.elapsed())
    }

    /// Every message was text: no binary probe was sent.
    fn all_text(server: &FakeServer) -> bool {
        server.messages().iter().all(|m| {
            m.bytes
                .iter()
                .all(|b| b.is_ascii_graphic() || b" \r\n".contains(b))
        })
    }

    /// A Memcached-like text server: `ERROR` to every line it does not know, as memcached does.
    async fn memcached_like() -> FakeServer {
        FakeServer::lines(|m: &Message| match m.text().trim_end() {
            "version" => Reply::Send(b"VERSION 1.6.21\r\n".to_vec()),
            "stats" => Reply::Send(b"STAT pid 1\r\nSTAT curr_items 3\r\nEND\r\n".to_vec()),
            _ => Reply::Send(b"ERROR\r\n".to_vec()),
        })
        .await
    }

    #[tokio::test]
    async fn a_text_server_on_any_port_is_identified_in_round_trips() {
        let server = memcached_like().await;
        let (id, took) = run(&server, DEADLINE).await;
        assert_eq!(id.finding.protocol, "memcached", "{id:?}");
        assert_eq!(id.finding.access, Access::Open);
        assert!(took < DEADLINE / 2, "a read deadline was spent: {took:?}");
        // The text probes alone found it: no binary probe waited on it for a line break.
        assert!(all_text(&server), "{:?}", server.texts());
    }

    /// A binary server's framing: PostgreSQL's, except that a startup packet of a length no
    /// server accepts is judged at once (postgres closes on it).
    fn pg_or_nonsense(buf: &[u8], index: usize) -> Option<usize> {
        if index == 0 {
            let len = u32::from_be_bytes(buf.get(..4)?.try_into().ok()?);
            if !(8..=10_000).contains(&len) {
                return Some(buf.len());
            }
        }
        frames::pg_message(buf, index)
    }

    #[tokio::test]
    async fn a_binary_server_gets_the_binary_probes_after_closing_on_the_text_ones() {
        let server = FakeServer::start(Vec::new(), pg_or_nonsense, |m: &Message| {
            let len = u32::from_be_bytes(m.bytes[..4].try_into().unwrap()) as usize;
            if m.index == 0 && len == m.bytes.len() && m.bytes[4..8] == 196_608u32.to_be_bytes() {
                Reply::Send(fixture!("postgresql/sasl.bin").to_vec())
            } else {
                Reply::Close
            }
        })
        .await;
        let (id, took) = run(&server, DEADLINE).await;
        assert_eq!(id.finding.protocol, "postgresql", "{id:?}");
        assert_eq!(id.finding.access, Access::AuthRequired);
        assert!(took < DEADLINE / 2, "a read deadline was spent: {took:?}");
        // Each text probe cost one connection and a close; then the binary probes.
        let first_binary = server
            .messages()
            .iter()
            .position(|m| m.bytes.iter().any(|b| !b.is_ascii()))
            .expect("a binary probe");
        assert!(server.messages()[..first_binary]
            .iter()
            .all(|m| m.bytes.is_ascii()));
        assert!(first_binary >= 3, "{:?}", server.texts());
    }

    #[tokio::test]
    async fn a_greeting_is_identified_on_the_connection_that_proved_the_port_open() {
        let greeting = fixture!("mysql/mariadb_greeting.bin").to_vec();
        let server = FakeServer::start(vec![Reply::Send(greeting)], frames::mysql_packet, |_| {
            Reply::Close
        })
        .await;
        let (id, took) = run(&server, DEADLINE).await;
        assert_eq!(id.finding.protocol, "mysql", "{id:?}");
        assert_eq!(id.finding.access, Access::AuthRequired);
        assert_eq!(server.connections(), 1);
        assert!(server.messages().is_empty(), "{:?}", server.texts());
        assert!(took < DEADLINE / 2, "{took:?}");
    }

    #[tokio::test]
    async fn a_greeting_that_comes_after_the_window_is_still_recognised() {
        let greeting = fixture!("mysql/mariadb_greeting.bin").to_vec();
        let late = Duration::from_millis(200);
        let server = FakeServer::start(
            vec![Reply::Later(late, greeting)],
            frames::mysql_packet,
            |_| Reply::Close,
        )
        .await;
        let (id, took) = run(&server, DEADLINE).await;
        assert_eq!(id.finding.protocol, "mysql", "{id:?}");
        assert!(took < DEADLINE / 2, "{took:?}");
    }

    #[tokio::test]
    async fn a_greeting_nobody_knows_ends_identification_at_once() {
        let banner = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n".to_vec();
        let server =
            FakeServer::start(vec![Reply::Send(banner)], frames::line, |_| Reply::Nothing).await;
        let (id, took) = run(&server, DEADLINE).await;
        assert_eq!(id.finding.protocol, "unknown");
        assert!(id.finding.evidence[0].contains("SSH-2.0"), "{id:?}");
        // No probe sent, no TLS handshake tried: one connection, nothing said to it.
        assert_eq!(server.connections(), 1);
        assert!(server.messages().is_empty(), "{:?}", server.texts());
        assert!(took < DEADLINE / 2, "{took:?}");
    }

    #[tokio::test]
    async fn a_tarpit_costs_one_read_deadline_and_one_connection() {
        let server = FakeServer::start(Vec::new(), frames::chunk, |_| Reply::Nothing).await;
        let read = Duration::from_millis(400);
        let (id, took) = run(&server, read).await;
        assert_eq!(id.finding.protocol, "unknown");
        assert_eq!(
            id.finding.evidence,
            vec!["port open; accepted connections but never answered".to_string()]
        );
        assert_eq!(server.connections(), 1);
        // The greeting window, then one probe's read deadline; never one deadline per probe.
        assert!(took >= read, "{took:?}");
        assert!(took < read * 2, "{took:?}");
    }

    #[tokio::test]
    async fn a_web_server_without_a_store_is_http_after_one_get() {
        fn request_or_chunk(buf: &[u8], i: usize) -> Option<usize> {
            if buf.starts_with(b"GET ") {
                frames::http_request(buf, i)
            } else {
                frames::chunk(buf, i)
            }
        }
        let server = FakeServer::start(Vec::new(), request_or_chunk, |m: &Message| {
            if m.bytes.starts_with(b"GET / ") {
                let body = "<html><body>It works</body></html>";
                Reply::Send(
                    format!(
                        "HTTP/1.1 200 OK\r\nServer: Apache\r\nContent-Type: text/html\r\n\
                         Content-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .into_bytes(),
                )
            } else {
                Reply::SendAndClose(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_vec(),
                )
            }
        })
        .await;
        let (id, took) = run(&server, DEADLINE).await;
        assert_eq!(id.finding.protocol, "http", "{id:?}");
        assert_eq!(id.finding.product.as_deref(), Some("Apache"));
        assert!(!id.tls);
        assert!(all_text(&server), "{:?}", server.texts());
        assert!(took < DEADLINE / 2, "{took:?}");
    }

    #[test]
    fn the_greeting_window_scales_with_the_round_trip() {
        let wait = Duration::from_millis(1500);
        assert_eq!(greeting_window(Duration::ZERO, wait), GREETING_FLOOR);
        assert_eq!(
            greeting_window(Duration::from_millis(50), wait),
            Duration::from_millis(220)
        );
        assert_eq!(greeting_window(Duration::from_secs(1), wait), wait);
    }
}
