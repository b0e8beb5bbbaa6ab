//! Identifying ZooKeeper and judging access: the session handshake (sent only to a server that
//! closed on every text probe, as ZooKeeper does), then `getChildren2` of the root and of its
//! top-level znodes without authentication; the version from `srvr` on a connection of its own.

use std::sync::Arc;

use super::wire::{
    handshake, parse_children, parse_srvr_version, pipeline, ERR_NO_AUTH, MAX_SRVR,
    OP_GET_CHILDREN2, SRVR, SYSTEM,
};
use crate::driver::{Budget, Finding, Outcome, ProbeCtx, Session};
use crate::model::Access;
use crate::net::{Check, Conn, NetError};

/// The registry id.
pub(super) const ID: &str = "zookeeper";

/// Top-level znodes tried for the verdict.
const TOP_TRIED: usize = 16;

/// The protocol's probe: is this ZooKeeper, and can its znodes be read without credentials?
pub(super) async fn probe(ctx: &ProbeCtx, conn: Conn) -> Outcome {
    let mut s = Session::with_conn(ctx, conn, Arc::new(Budget::bytes_only(8 << 20)));
    let connected = match handshake(&mut s).await {
        Ok(c) => c,
        Err(e) => return Outcome::NotMe(e.seen(s.buffered())),
    };
    let mut f = Finding::new(ID);
    f.product = Some("ZooKeeper".into());
    f.version = version(ctx).await;
    if connected.timeout_ms == 0 {
        f.evidence
            .push("the handshake answered a ZooKeeper ConnectResponse refusing the session".into());
        return Outcome::Found(f);
    }
    f.evidence.push(format!(
        "the handshake opened a session without credentials{}",
        if connected.read_only {
            " (read-only server)"
        } else {
            ""
        }
    ));
    judge(&mut s, &mut f).await;
    Outcome::Found(f)
}

/// The verdict: the root's children, then those of the top-level znodes that are not
/// ZooKeeper's own. Readable data means `open`; every data znode answering `NoAuth` means
/// `auth_required` (digest or SASL ACLs); anything else proves nothing.
async fn judge(s: &mut Session, f: &mut Finding) {
    let mut xid = 0;
    let children = |_: i32, body: &[u8]| parse_children(body);
    let root = match pipeline(s, &mut xid, &[(OP_GET_CHILDREN2, "/")], children).await {
        Ok(mut r) => r.remove(0),
        Err(e) => return f.evidence.push(format!("getChildren2 of / failed: {e}")),
    };
    let top: Vec<String> = match root {
        Ok((names, _)) => names.into_iter().filter(|n| n != SYSTEM).collect(),
        Err(ERR_NO_AUTH) => {
            f.access = Access::AuthRequired;
            return f
                .evidence
                .push("getChildren2 of / was refused without authentication (NoAuth)".into());
        }
        Err(code) => {
            return f
                .evidence
                .push(format!("getChildren2 of / answered error {code}"))
        }
    };
    if top.is_empty() {
        f.access = Access::Open;
        return f.evidence.push(
            "getChildren2 of / answered without authentication: no znode but ZooKeeper's own"
                .into(),
        );
    }
    let paths: Vec<String> = top
        .iter()
        .take(TOP_TRIED)
        .map(|n| format!("/{n}"))
        .collect();
    let requests: Vec<(i32, &str)> = paths
        .iter()
        .filter(|p| super::wire::is_path(p))
        .map(|p| (OP_GET_CHILDREN2, p.as_str()))
        .collect();
    let replies = match pipeline(s, &mut xid, &requests, children).await {
        Ok(r) => r,
        Err(e) => {
            return f
                .evidence
                .push(format!("getChildren2 of the top znodes failed: {e}"))
        }
    };
    let readable = replies.iter().filter(|r| r.is_ok()).count();
    let refused = replies.iter().filter(|r| **r == Err(ERR_NO_AUTH)).count();
    if readable > 0 {
        f.access = Access::Open;
        f.evidence.push(format!(
            "getChildren2 of / and of {readable} of its {} top-level znodes answered without \
             authentication",
            top.len()
        ));
    } else if refused == replies.len() {
        f.access = Access::AuthRequired;
        f.evidence.push(format!(
            "/ lists {} top-level znodes, and each refuses reads without authentication (NoAuth)",
            top.len()
        ));
    } else {
        f.evidence.push(format!(
            "/ lists {} top-level znodes, but none answered getChildren2",
            top.len()
        ));
    }
}

/// The version `srvr` states, on a connection of its own (the four-letter words are answered
/// instead of a session, then the server closes); None where the word is not whitelisted.
pub(super) async fn version(ctx: &ProbeCtx) -> Option<String> {
    let mut conn = ctx.connect().await.ok()?;
    conn.send(SRVR).await.ok()?;
    let text = match conn.read_frame(MAX_SRVR, |_| Check::Incomplete).await {
        Ok(t) => t,
        Err(NetError::Closed(n)) if n > 0 => conn.buffered().to_vec(),
        Err(_) => return None,
    };
    parse_srvr_version(&text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{fixture, frames, FakeServer, Message, Reply};

    /// ZooKeeper 3.8.0's answers, captured from the lab: the handshake, `getChildren2` of `/`
    /// (xid 1) and of `/smarthome` (xid 2) on an open server and on one with digest ACLs, and
    /// `srvr`.
    const CONNECT: &[u8] = fixture!("zookeeper/connect.bin");
    const ROOT: &[u8] = fixture!("zookeeper/children_root.bin");
    const TOP_OPEN: &[u8] = fixture!("zookeeper/children_smarthome_open.bin");
    const TOP_ACL: &[u8] = fixture!("zookeeper/children_smarthome_acl.bin");
    const SRVR_TEXT: &[u8] = fixture!("zookeeper/srvr.txt");

    /// ZooKeeper's framing, and the four-letter word a connection may start with instead.
    fn zk_frames(buf: &[u8], i: usize) -> Option<usize> {
        if buf.starts_with(SRVR) {
            return Some(4);
        }
        frames::be32_length(buf, i)
    }

    /// A ZooKeeper that answers the handshake, `/` and `/smarthome` with these bytes.
    async fn server(connect: &'static [u8], top: &'static [u8]) -> FakeServer {
        FakeServer::start(Vec::new(), zk_frames, move |m: &Message| {
            let b = &m.bytes;
            if b.as_slice() == SRVR {
                Reply::SendAndClose(SRVR_TEXT.to_vec())
            } else if b.len() == 49 {
                Reply::Send(connect.to_vec())
            } else if b.ends_with(b"\0\0\0\x01/\0") {
                Reply::Send(ROOT.to_vec())
            } else if b.ends_with(b"/smarthome\0") {
                Reply::Send(top.to_vec())
            } else {
                Reply::Close
            }
        })
        .await
    }

    async fn run(server: &FakeServer) -> Outcome {
        let ctx = server.ctx();
        let conn = ctx.connect().await.expect("connect");
        probe(&ctx, conn).await
    }

    fn found(out: Outcome) -> Finding {
        match out {
            Outcome::Found(f) => f,
            other => panic!("not found: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_real_open_zookeeper_is_open() {
        let s = server(CONNECT, TOP_OPEN).await;
        let f = found(run(&s).await);
        assert_eq!(f.version.as_deref(), Some("3.8.0"));
        assert_eq!(f.access, Access::Open);
        assert!(
            f.evidence[1].contains("1 of its 1 top-level"),
            "{:?}",
            f.evidence
        );
        // Only reads, and never a watch: each request ends with `watch = false`.
        for m in s.messages().iter().filter(|m| m.bytes.len() > 49) {
            assert_eq!(&m.bytes[8..12], &12i32.to_be_bytes(), "getChildren2 only");
            assert_eq!(m.bytes.last(), Some(&0));
        }
    }

    #[tokio::test]
    async fn digest_acls_require_authentication() {
        let s = server(CONNECT, TOP_ACL).await;
        let f = found(run(&s).await);
        assert_eq!(f.access, Access::AuthRequired);
        assert!(f.evidence[1].contains("NoAuth"), "{:?}", f.evidence);
    }

    #[tokio::test]
    async fn a_honeypot_proves_nothing_and_others_are_not_zookeeper() {
        // The handshake right, then a reply that is no getChildren2 answer.
        let honeypot = server(CONNECT, b"\0\0\0\x10\0\0\0\x02\0\0\0\0\0\0\0\x01\0\0\0\0").await;
        assert_eq!(found(run(&honeypot).await).access, Access::Unknown);
        // A server that closes on the handshake (a text server), and one that answers it
        // with bytes of another protocol.
        let closes = FakeServer::start(Vec::new(), frames::chunk, |_| Reply::Close).await;
        assert!(matches!(run(&closes).await, Outcome::NotMe(_)));
        let other = FakeServer::start(Vec::new(), frames::chunk, |_| {
            Reply::Send(b"\0\0\0\x05hello".to_vec())
        })
        .await;
        assert!(matches!(run(&other).await, Outcome::NotMe(_)));
    }
}
