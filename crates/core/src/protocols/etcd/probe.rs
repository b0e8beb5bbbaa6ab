//! Identifying etcd and judging access: the shared `GET /` (etcd's client port answers Go's
//! plain `404 page not found`), then `GET /version`, then a count-only range read of the whole
//! key space without credentials.

use std::sync::Arc;

use super::wire::{
    error_message, is_auth_error, parse_range, parse_version, range_body, send, Failure, RangeReq,
    RANGE, SMALL_BODY_CAP, VERSION,
};
use crate::driver::http::Response;
use crate::driver::{preview, Budget, Finding, Outcome, ProbeCtx, Seen};
use crate::model::Access;

/// The registry id.
pub(super) const ID: &str = "etcd";

/// The client port (2379) and the one of the old v2 API (4001), still configured in places.
pub(super) const DEFAULT_PORTS: &[u16] = &[2379, 4001];

/// Whether the root answer is worth a `GET /version`: Go's `http.NotFound`, which etcd's
/// client mux answers to `/`, or any answer on a port etcd claims. Everything else costs no
/// request.
fn worth_asking(ctx: &ProbeCtx, root: &Response) -> bool {
    (root.status == 404 && root.body.starts_with(b"404 page not found"))
        || DEFAULT_PORTS.contains(&ctx.addr.port())
}

/// The protocol's [`crate::driver::HttpFn`].
pub(super) async fn probe(ctx: &ProbeCtx, root: &Response) -> Outcome {
    if !worth_asking(ctx, root) {
        return Outcome::NotMe(Seen::Error(format!(
            "GET / answered HTTP {}, not etcd's",
            root.status
        )));
    }
    let budget = Arc::new(Budget::bytes_only(usize::MAX));
    let version = match send(ctx, &budget, VERSION, None, SMALL_BODY_CAP).await {
        Ok(r) if r.status == 200 => parse_version(&r.body),
        Ok(_) => None,
        Err(e) => return Outcome::NotMe(Seen::Error(format!("GET /version: {e}"))),
    };
    let Some(version) = version else {
        return Outcome::NotMe(Seen::Error("GET /version is not etcd's".into()));
    };
    let mut f = Finding::new(ID);
    f.product = Some("etcd".into());
    f.evidence.push(format!(
        "GET /version answered etcd {}{}",
        version.server,
        version
            .cluster
            .as_deref()
            .map_or_else(String::new, |c| format!(" (cluster version {c})"))
    ));
    f.version = Some(version.server);
    judge(ctx, &budget, &mut f).await;
    Outcome::Found(f)
}

/// The verdict from a count-only range read of every key: etcd answers it with a count and
/// the store's revision when anyone may read, and with an authentication error when auth is
/// enabled (a call without a token has no user name). Anything else proves nothing.
async fn judge(ctx: &ProbeCtx, budget: &Arc<Budget>, f: &mut Finding) {
    let body = range_body(&RangeReq::count_all());
    match send(ctx, budget, RANGE, Some(&body), SMALL_BODY_CAP).await {
        Ok(r) if r.status == 200 => match parse_range(&r.body) {
            Some(range) => {
                f.access = Access::Open;
                f.evidence.push(format!(
                    "a count-only range read of every key answered without credentials: {} keys \
                     at revision {}",
                    range.count, range.revision
                ));
            }
            None => f.evidence.push(format!(
                "a count-only range read answered 200 without a range: {}",
                preview(&r.body)
            )),
        },
        Ok(r) => {
            let msg = error_message(&r.body);
            if is_auth_error(&msg) {
                f.access = Access::AuthRequired;
                f.evidence.push(format!(
                    "a range read without credentials was refused: HTTP {} ({msg})",
                    r.status
                ));
            } else {
                f.evidence.push(format!(
                    "a range read answered HTTP {}: {}",
                    r.status,
                    if msg.is_empty() {
                        preview(&r.body)
                    } else {
                        msg
                    }
                ));
            }
        }
        Err(Failure::Net(e)) => f.evidence.push(format!("the range read failed: {e}")),
        Err(e) => f.evidence.push(format!("the range read failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::http::parse_response;
    use crate::testkit::{fixture, frames, FakeServer, Message, Reply};

    /// etcd 3.4.23's answers, captured from the lab: `GET /`, `GET /version`, a count-only
    /// range read of an open server and of one with authentication enabled.
    const ROOT: &[u8] = fixture!("etcd/root.http");
    const VERSION_REPLY: &[u8] = fixture!("etcd/version.http");
    const COUNT_OPEN: &[u8] = fixture!("etcd/count_open.http");
    const COUNT_AUTH: &[u8] = fixture!("etcd/count_auth.http");

    fn root() -> Response {
        parse_response(ROOT, 1 << 16).unwrap()
    }

    /// An HTTP server that answers `/version` and the range read with these bytes.
    async fn server(version: &'static [u8], range: &'static [u8]) -> FakeServer {
        FakeServer::start(Vec::new(), frames::http_request, move |m: &Message| {
            let t = m.text();
            if t.starts_with("GET /version ") {
                Reply::SendAndClose(version.to_vec())
            } else if t.starts_with("POST /v3/kv/range ") {
                Reply::SendAndClose(range.to_vec())
            } else {
                Reply::SendAndClose(ROOT.to_vec())
            }
        })
        .await
    }

    fn found(out: Outcome) -> Finding {
        match out {
            Outcome::Found(f) => f,
            other => panic!("not found: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_real_open_etcd_is_open() {
        let s = server(VERSION_REPLY, COUNT_OPEN).await;
        let f = found(probe(&s.ctx(), &root()).await);
        assert_eq!(f.version.as_deref(), Some("3.4.23"));
        assert_eq!(f.access, Access::Open);
        assert!(
            f.evidence[1].contains("keys at revision"),
            "{:?}",
            f.evidence
        );
        let texts = s.texts();
        assert!(texts[1].contains(r#""count_only":true"#), "{texts:?}");
        assert!(texts[1].contains(r#""serializable":true"#), "{texts:?}");
    }

    #[tokio::test]
    async fn auth_enabled_requires_authentication() {
        let s = server(VERSION_REPLY, COUNT_AUTH).await;
        let f = found(probe(&s.ctx(), &root()).await);
        assert_eq!(f.access, Access::AuthRequired);
        assert!(
            f.evidence[1].contains("user name is empty"),
            "{:?}",
            f.evidence
        );
    }

    #[tokio::test]
    async fn a_honeypot_proves_nothing_and_others_are_not_etcd() {
        // The version right, the range read a bare 200: nothing proven.
        let honeypot = server(
            VERSION_REPLY,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
        )
        .await;
        assert_eq!(
            found(probe(&honeypot.ctx(), &root()).await).access,
            Access::Unknown
        );
        // Another Go server: its /version is not etcd's.
        let other = server(
            b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{\"version\":\"1\"}",
            COUNT_OPEN,
        )
        .await;
        assert!(matches!(
            probe(&other.ctx(), &root()).await,
            Outcome::NotMe(_)
        ));
        // A root answer that is not Go's 404, on a port etcd does not claim: no request at all.
        let s = server(VERSION_REPLY, COUNT_OPEN).await;
        let page = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", 100).unwrap();
        assert!(matches!(probe(&s.ctx(), &page).await, Outcome::NotMe(_)));
        assert_eq!(s.connections(), 0);
    }
}
