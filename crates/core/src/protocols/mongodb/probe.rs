//! Identifying MongoDB (and servers of its protocol) and judging access: `hello`, `buildInfo`,
//! then `listDatabases` (names only) without credentials; an empty list is settled by
//! `listCollections` on `admin`.

use std::sync::Arc;

use bson::raw::RawDocument;
use bson::{doc, Document};

use super::wire::{
    clean, command_error, field, handshake, is_ok, parse_build_info, Failure, Session, Wire,
};
use crate::driver::{Budget, Finding, Outcome, ProbeCtx};
use crate::model::Access;
use crate::net::{Conn, NetError};

/// The registry id.
pub(super) const ID: &str = "mongodb";

/// Database names from a successful `listDatabases` reply.
pub fn parse_list_databases(d: &RawDocument) -> Option<Vec<String>> {
    if !is_ok(d) {
        return None;
    }
    let list = field(d, "databases")?.as_array()?;
    let mut names = Vec::new();
    for entry in list {
        let db = entry.ok()?.as_document()?;
        names.push(clean(field(db, "name")?.as_str()?, 64));
    }
    Some(names)
}

/// Number of collections in the first batch of a successful `listCollections` reply.
pub fn parse_list_collections(d: &RawDocument) -> Option<usize> {
    if !is_ok(d) {
        return None;
    }
    let cursor = field(d, "cursor")?.as_document()?;
    let batch = field(cursor, "firstBatch")?.as_array()?;
    let mut n = 0;
    for entry in batch {
        entry.ok()?.as_document()?;
        n += 1;
    }
    Some(n)
}

/// Number of users a successful `connectionStatus` says this connection is authenticated as.
pub fn parse_connection_status(d: &RawDocument) -> Option<usize> {
    if !is_ok(d) {
        return None;
    }
    let info = field(d, "authInfo")?.as_document()?;
    Some(
        field(info, "authenticatedUsers")?
            .as_array()?
            .into_iter()
            .count(),
    )
}

/// The protocol's probe: is this its protocol, and can it be read without credentials?
pub(super) async fn probe(ctx: &ProbeCtx, conn: Conn) -> Outcome {
    let mut s = Session::new(
        ctx,
        conn,
        Wire::Msg,
        Arc::new(Budget::bytes_only(usize::MAX)),
    );
    let (hello, cmd) = match handshake(ctx, &mut s).await {
        Ok(h) => h,
        Err(seen) => return Outcome::NotMe(seen),
    };
    let mut f = Finding::new(ID);
    f.product = Some("MongoDB".into());
    let legacy = if s.wire == Wire::Legacy {
        " over legacy OP_QUERY"
    } else {
        ""
    };
    let wire = hello
        .max_wire_version
        .map(|v| format!(" (maxWireVersion {v})"))
        .unwrap_or_default();
    f.evidence.push(format!(
        "{cmd} answered{legacy}{wire} without authentication"
    ));
    if let Some(set) = &hello.set_name {
        f.evidence.push(format!("member of replica set {set:?}"));
    }
    let me = ctx.authority();
    f.out_of_scope_peers = ctx.out_of_scope(hello.peers.into_iter().filter(|p| *p != me));

    match s.call("buildInfo", "admin", Document::new()).await {
        Ok(d) => match parse_build_info(&d) {
            Some((product, version)) => {
                f.product = Some(product);
                f.version = Some(version);
            }
            None => f.evidence.push("buildInfo gave no version".into()),
        },
        Err(e) => f.evidence.push(format!("buildInfo failed: {e}")),
    }

    decide_access(ctx, &mut s, &mut f).await;
    Outcome::Found(f)
}

pub(super) async fn decide_access(ctx: &ProbeCtx, s: &mut Session, f: &mut Finding) {
    let reply = match s
        .call("listDatabases", "admin", doc! { "nameOnly": true })
        .await
    {
        Ok(d) => d,
        // FerretDB computes every database's size for listDatabases, names only or not, by
        // reading its whole SQLite file (`dbstat`): a minute at a few million documents. A
        // listing that stays silent is no verdict, so the cheap catalogue read decides instead.
        Err(Failure::Net(NetError::Timeout("read"))) => {
            f.evidence.push(format!(
                "listDatabases gave no answer within the {} ms read deadline",
                ctx.opts.limits.read_timeout.as_millis()
            ));
            return admin_collections(s, f).await;
        }
        Err(e) => {
            f.evidence.push(format!("listDatabases failed: {e}"));
            return;
        }
    };
    if let Some(err) = command_error(&reply) {
        if err.is_unauthorized() {
            f.access = Access::AuthRequired;
            f.evidence.push(format!(
                "listDatabases refused without authentication: {err}"
            ));
        } else {
            f.evidence
                .push(format!("listDatabases answered with an error: {err}"));
        }
        return;
    }
    let Some(names) = parse_list_databases(&reply) else {
        f.evidence
            .push("listDatabases gave a reply without a database list".into());
        return;
    };
    if !names.is_empty() {
        f.access = Access::Open;
        f.evidence.push(format!(
            "listDatabases answered {} database{} without authentication",
            names.len(),
            if names.len() == 1 { "" } else { "s" }
        ));
        return;
    }
    // An empty list is also what a server with authorisation answers a caller who may see no
    // database; a read it would refuse such a caller tells the two apart.
    f.evidence
        .push("listDatabases answered an empty list without authentication".into());
    if let Ok(d) = s.call("connectionStatus", "admin", Document::new()).await {
        match parse_connection_status(&d) {
            Some(0) => f
                .evidence
                .push("connectionStatus: no authenticated user on this connection".into()),
            Some(n) => f.evidence.push(format!(
                "connectionStatus: this connection runs as {n} authenticated user(s)"
            )),
            None => {}
        }
    }
    admin_collections(s, f).await;
}

/// Access from `listCollections` on `admin`: an answer without credentials is open, code 13 is
/// authentication required. For when `listDatabases` cannot tell (an empty or no answer).
pub(super) async fn admin_collections(s: &mut Session, f: &mut Finding) {
    let reply = match s
        .call("listCollections", "admin", doc! { "nameOnly": true })
        .await
    {
        Ok(d) => d,
        Err(e) => {
            f.evidence
                .push(format!("listCollections on admin failed: {e}"));
            return;
        }
    };
    if let Some(n) = parse_list_collections(&reply) {
        f.access = Access::Open;
        f.evidence.push(format!(
            "listCollections on admin answered {n} collection{} without authentication",
            if n == 1 { "" } else { "s" }
        ));
    } else if let Some(err) = command_error(&reply) {
        if err.is_unauthorized() {
            f.access = Access::AuthRequired;
            f.evidence.push(format!(
                "listCollections on admin refused without authentication: {err}"
            ));
        } else {
            f.evidence.push(format!(
                "listCollections on admin answered with an error: {err}"
            ));
        }
    } else {
        f.evidence
            .push("listCollections on admin gave a reply without a collection list".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::time::Duration;

    use crate::driver::{ProbeOptions, Seen};

    use crate::protocols::mongodb::wire::tests::*;
    use crate::protocols::mongodb::wire::{read_i32, OP_MSG};
    use crate::testkit::{frames, FakeServer, Reply};

    /// The command name, requestID and opcode of one request a scripted peer received.
    fn request(frame: &[u8]) -> Option<(String, i32, i32)> {
        let (id, op) = (read_i32(frame, 4)?, read_i32(frame, 12)?);
        let rest = frame.get(16..)?;
        let doc = if op == OP_MSG {
            rest.get(5..)?
        } else {
            let nul = rest.get(4..)?.iter().position(|&b| b == 0)?;
            rest.get(4 + nul + 1 + 8..)?
        };
        let name = RawDocument::from_bytes(doc)
            .ok()?
            .iter()
            .next()?
            .ok()?
            .0
            .to_string();
        Some((name, id, op))
    }

    /// The captured replies answer the capture's requestIDs (1 to 13); those are rewritten to
    /// the request being answered. Other bytes go out as they are.
    fn readdress(frame: &[u8], id: i32) -> Vec<u8> {
        let mut f = frame.to_vec();
        if read_i32(&f, 8).is_some_and(|to| (1..=13).contains(&to)) {
            f[8..12].copy_from_slice(&id.to_le_bytes());
        }
        f
    }

    type Script = fn(cmd: &str, op: i32) -> Option<Vec<u8>>;

    /// Serves connections on a loopback port: each request gets `script`'s answer, None
    /// closes the connection.
    async fn scripted(script: Script) -> FakeServer {
        FakeServer::start(Vec::new(), frames::le32_length, move |m| {
            match request(&m.bytes).and_then(|(cmd, id, op)| Some((script(&cmd, op)?, id))) {
                Some((bytes, id)) => Reply::Send(readdress(&bytes, id)),
                None => Reply::Close,
            }
        })
        .await
    }

    fn ctx(addr: SocketAddr) -> ProbeCtx {
        let ms = Duration::from_millis(800);
        let opts = ProbeOptions {
            limits: crate::testkit::timeouts(ms),
            ..ProbeOptions::default()
        };
        crate::driver::test_ctx(addr, opts)
    }

    async fn run_probe(addr: SocketAddr) -> Outcome {
        let ctx = ctx(addr);
        let conn = ctx.connect().await.unwrap();
        probe(&ctx, conn).await
    }

    fn found(o: Outcome) -> Finding {
        match o {
            Outcome::Found(f) => f,
            other => panic!("expected a finding, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn open_server_is_open() {
        let server = scripted(|cmd, _| match cmd {
            "hello" => Some(OPEN_HELLO.to_vec()),
            "buildInfo" => Some(OPEN_BUILD_INFO.to_vec()),
            "listDatabases" => Some(OPEN_LIST_DATABASES.to_vec()),
            _ => None,
        })
        .await;
        let addr = server.addr();
        let f = found(run_probe(addr).await);
        assert_eq!(f.access, Access::Open, "{f:?}");
        assert_eq!(f.product.as_deref(), Some("FerretDB"));
        assert_eq!(f.version.as_deref(), Some("1.24.2"));
        assert!(f
            .evidence
            .iter()
            .any(|e| e == "listDatabases answered 2 databases without authentication"));
    }

    #[tokio::test]
    async fn auth_server_requires_auth() {
        let server = scripted(|cmd, _| match cmd {
            "hello" => Some(AUTH_HELLO.to_vec()),
            "buildInfo" => Some(OPEN_BUILD_INFO.to_vec()),
            "listDatabases" => Some(AUTH_LIST_DATABASES.to_vec()),
            _ => None,
        })
        .await;
        let addr = server.addr();
        let f = found(run_probe(addr).await);
        assert_eq!(f.access, Access::AuthRequired, "{f:?}");
    }

    #[tokio::test]
    async fn empty_list_is_settled_by_list_collections() {
        let open = scripted(|cmd, _| match cmd {
            "hello" => Some(OPEN_HELLO.to_vec()),
            "listDatabases" => Some(EMPTY_LIST_DATABASES.to_vec()),
            "connectionStatus" => Some(EMPTY_CONNECTION_STATUS.to_vec()),
            "listCollections" => Some(EMPTY_LIST_COLLECTIONS.to_vec()),
            _ => Some(UNKNOWN_COMMAND.to_vec()),
        })
        .await;
        let f = found(run_probe(open.addr()).await);
        assert_eq!(f.access, Access::Open, "{f:?}");
        assert_eq!(f.product.as_deref(), Some("MongoDB"));
        // A server that filters the list to what the caller may see, then refuses the read.
        let filtered = scripted(|cmd, _| match cmd {
            "hello" => Some(AUTH_HELLO.to_vec()),
            "listDatabases" => Some(EMPTY_LIST_DATABASES.to_vec()),
            "connectionStatus" => Some(AUTH_CONNECTION_STATUS.to_vec()),
            "listCollections" => Some(AUTH_LIST_COLLECTIONS.to_vec()),
            _ => Some(UNKNOWN_COMMAND.to_vec()),
        })
        .await;
        let f = found(run_probe(filtered.addr()).await);
        assert_eq!(f.access, Access::AuthRequired, "{f:?}");
    }

    #[tokio::test]
    async fn silent_list_is_settled_by_list_collections() {
        // FerretDB at millions of documents: listDatabases outlasts the read deadline (an
        // empty answer here is silence), the catalogue read answers.
        let open = scripted(|cmd, _| match cmd {
            "hello" => Some(OPEN_HELLO.to_vec()),
            "buildInfo" => Some(OPEN_BUILD_INFO.to_vec()),
            "listDatabases" => Some(Vec::new()),
            "listCollections" => Some(EMPTY_LIST_COLLECTIONS.to_vec()),
            _ => None,
        })
        .await;
        let f = found(run_probe(open.addr()).await);
        assert_eq!(f.access, Access::Open, "{f:?}");
        assert_eq!(f.product.as_deref(), Some("FerretDB"));
        assert_eq!(
            f.evidence[f.evidence.len() - 2..],
            [
                "listDatabases gave no answer within the 800 ms read deadline".to_string(),
                "listCollections on admin answered 0 collections without authentication".into()
            ]
        );
        // With authentication on, the same silence is settled the other way.
        let auth = scripted(|cmd, _| match cmd {
            "hello" => Some(AUTH_HELLO.to_vec()),
            "listDatabases" => Some(Vec::new()),
            "listCollections" => Some(AUTH_LIST_COLLECTIONS.to_vec()),
            _ => Some(UNKNOWN_COMMAND.to_vec()),
        })
        .await;
        let f = found(run_probe(auth.addr()).await);
        assert_eq!(f.access, Access::AuthRequired, "{f:?}");
    }

    #[tokio::test]
    async fn replaying_honeypot_is_never_open() {
        // Answers every request with a valid `hello` addressed to it.
        let server = scripted(|_, _| Some(OPEN_HELLO.to_vec())).await;
        let addr = server.addr();
        let f = found(run_probe(addr).await);
        assert_eq!(f.access, Access::Unknown, "{f:?}");
        // Answers everything with "+OK" / a reply to another request / garbage.
        for script in [
            (|_, _| Some(b"+OK\r\n".to_vec())) as Script,
            |_, _| {
                Some(
                    OPEN_HELLO[..8]
                        .iter()
                        .chain(&[9, 9, 9, 9])
                        .chain(&OPEN_HELLO[12..])
                        .copied()
                        .collect(),
                )
            },
            |_, _| Some(vec![0x41; 300]),
        ] {
            let server = scripted(script).await;
            let addr = server.addr();
            let o = run_probe(addr).await;
            assert!(matches!(o, Outcome::NotMe(Seen::Bytes(_))), "{o:?}");
        }
    }

    #[tokio::test]
    async fn giant_length_costs_nothing() {
        let server = FakeServer::start(Vec::new(), frames::le32_length, |_| {
            Reply::Stream(i32::MAX.to_le_bytes().to_vec())
        })
        .await;
        let ctx = ctx(server.addr());
        let conn = ctx.connect().await.unwrap();
        let t = std::time::Instant::now();
        assert!(matches!(
            probe(&ctx, conn).await,
            Outcome::NotMe(Seen::Bytes(_))
        ));
        assert!(t.elapsed() < Duration::from_millis(500));
    }

    #[tokio::test]
    async fn pre_3_6_server_gets_legacy_op_query() {
        // Like mongod before 3.6: drops the connection on OP_MSG, answers OP_QUERY.
        let server = scripted(|cmd, op| match (op, cmd) {
            (OP_MSG, _) => None,
            (_, "isMaster") => Some(LEGACY_IS_MASTER.to_vec()),
            _ => None,
        })
        .await;
        let addr = server.addr();
        let f = found(run_probe(addr).await);
        assert_eq!(f.product.as_deref(), Some("MongoDB"));
        assert!(
            f.evidence[0].starts_with("isMaster answered over legacy OP_QUERY"),
            "{f:?}"
        );
        assert_eq!(f.access, Access::Unknown);
    }

    #[tokio::test]
    async fn old_server_without_hello_gets_is_master() {
        let server = scripted(|cmd, _| match cmd {
            "isMaster" => Some(legacy_hello_as_msg()),
            _ => Some(UNKNOWN_COMMAND.to_vec()),
        })
        .await;
        let addr = server.addr();
        let f = found(run_probe(addr).await);
        assert!(
            f.evidence[0].starts_with("isMaster answered (maxWireVersion 21)"),
            "{f:?}"
        );
        assert_eq!(f.access, Access::Unknown);
    }

    /// The captured legacy `isMaster` document (`ismaster: true`) re-wrapped as OP_MSG.
    fn legacy_hello_as_msg() -> Vec<u8> {
        let d = Document::try_from(&*reply(LEGACY_IS_MASTER, 4, Wire::Legacy)).unwrap();
        op_msg(1, &d)
    }

    #[tokio::test]
    async fn members_outside_the_scope_are_reported_not_contacted() {
        let server = scripted(|cmd, _| match cmd {
            "hello" => Some(op_msg(
                1,
                &doc! {
                    "isWritablePrimary": true, "setName": "rs9", "maxWireVersion": 21, "ok": 1.0,
                    "hosts": ["127.0.0.1:27017", "10.1.2.3:27017", "db9.internal:27017"],
                },
            )),
            _ => Some(UNKNOWN_COMMAND.to_vec()),
        })
        .await;
        let addr = server.addr();
        let f = found(run_probe(addr).await);
        // 127.0.0.1:27017 is in the scope (scanned in its own right); the rest is not.
        assert_eq!(
            f.out_of_scope_peers,
            vec!["10.1.2.3:27017", "db9.internal:27017"]
        );
    }
}
