//! Identification of one open `address:port`: which protocol, over TLS or not, and the verdict.
//!
//! Candidates come from the registry, those that claim the port first; each gets a fresh
//! connection (the first reuses the connection that proved the port open). HTTP protocols share
//! one `GET /`. When nothing matches in plaintext the same is tried inside TLS, so an HTTPS
//! Elasticsearch on any port is found. What stays unidentified is reported as `http` (it spoke
//! HTTP) or `unknown`, with what was seen as evidence.

use crate::driver::http::{self, Request, Response};
use std::convert::Infallible;
use std::sync::Arc;

use crate::driver::{preview, Budget, Finding, Handler, Outcome, ProbeCtx, Seen, Session};
use crate::model::Access;
use crate::net::{looks_like_tls, Conn, NetError};
use crate::protocols::candidates;

/// The result for one endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Identified {
    pub finding: Finding,
    pub tls: bool,
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

/// Tries every candidate protocol on `ctx`. `first` is an unused connection to start with.
async fn try_candidates(
    ctx: &ProbeCtx,
    mut first: Option<Conn>,
    seen: &mut Vec<Seen>,
) -> Result<Finding, Option<Response>> {
    let mut root: Option<Option<Response>> = None;
    for proto in candidates(ctx.addr.port()) {
        let conn = match first.take() {
            Some(c) => c,
            None => match ctx.connect().await {
                Ok(c) => c,
                Err(e) => {
                    seen.push(Seen::from_error(&e, &[]));
                    // A port that stopped accepting will not start again within this scan.
                    if matches!(e, NetError::Refused) {
                        break;
                    }
                    continue;
                }
            },
        };
        let outcome = match &proto.handler {
            Handler::Raw(probe) => probe(ctx, conn).await,
            Handler::Http(probe) => {
                if root.is_none() {
                    root = Some(match get_root(ctx, conn).await {
                        Ok(r) => Some(r),
                        Err(s) => {
                            seen.push(s);
                            None
                        }
                    });
                } else {
                    drop(conn);
                }
                match root.as_ref().and_then(|r| r.as_ref()) {
                    Some(resp) => probe(ctx, resp).await,
                    None => continue,
                }
            }
        };
        match outcome {
            Outcome::Found(f) => return Ok(f),
            Outcome::NotMe(s) => seen.push(s),
        }
    }
    Err(root.flatten())
}

/// Identifies the service behind `first`, a connection that just succeeded.
pub async fn identify(ctx: &ProbeCtx, first: Conn) -> Identified {
    let mut seen = Vec::new();
    let plain_root = match try_candidates(ctx, Some(first), &mut seen).await {
        Ok(finding) => {
            return Identified {
                finding,
                tls: false,
            }
        }
        Err(root) => root,
    };
    // Nothing spoke plaintext: maybe TLS. A handshake costs one connection.
    let tls_ctx = ctx.with_tls();
    let mut tls_root = None;
    let mut tls_ok = false;
    match tls_ctx.connect().await {
        Ok(conn) => {
            tls_ok = true;
            match try_candidates(&tls_ctx, Some(conn), &mut seen).await {
                Ok(finding) => return Identified { finding, tls: true },
                Err(root) => tls_root = root,
            }
        }
        Err(e) => seen.push(Seen::Error(format!("TLS: {e}"))),
    }
    let (root, tls) = match (tls_root, plain_root) {
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
