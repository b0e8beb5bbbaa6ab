//! Identifying ClickHouse and judging access. The shared `GET /` tells the two ports apart:
//! the HTTP interface answers `Ok.`, the native port its own 400 (`Port 9000 is for
//! clickhouse-client program`). `Ok.` alone proves nothing (any server may say it), so the
//! HTTP port is ClickHouse only once it answers `SELECT version()` or refuses it with a
//! ClickHouse exception; the native port logs in as the default user without a password.
//! `open` needs a read: the database list, without credentials.

use super::wire::{
    probe_budget, transport_of, Client, Failure, ServerError, Transport, DATABASES, VERSION,
};
use crate::driver::http::Response;
use crate::driver::sql::Arg;
use crate::driver::{Finding, Outcome, ProbeCtx, Wait};
use crate::model::Access;

/// The registry id.
pub(super) const ID: &str = "clickhouse";

/// Most databases read by the probe's proof.
const MAX_DATABASES: i128 = 10_000;

/// A version as ClickHouse prints it (`18.16.1`, `24.3.2.23`).
fn plausible_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 32
        && v.starts_with(|c: char| c.is_ascii_digit())
        && v.chars().all(|c| c.is_ascii_digit() || c == '.')
}

fn not_me(root: &Response) -> Outcome {
    Outcome::NotMe(root.seen())
}

/// The verdict of a refused statement: a refused login is `auth_required`; so is a user that
/// logged in but may not read the catalogue (ACCESS_DENIED, 497).
fn refused(f: &mut Finding, what: &str, e: &ServerError) -> bool {
    if e.is_auth() || e.code == Some(497) {
        f.access = Access::AuthRequired;
        f.evidence
            .push(format!("{what} was refused without credentials ({e})"));
        true
    } else {
        false
    }
}

/// The protocol's probe: is this ClickHouse, on which port, and can it be read without
/// credentials?
pub(super) async fn probe(ctx: &ProbeCtx, root: &Response) -> Outcome {
    let Some(transport) = transport_of(root) else {
        return not_me(root);
    };
    let mut f = Finding::new(ID);
    let mut c = Client::new(ctx, transport, probe_budget(), Wait::Probe);
    let on = match transport {
        Transport::Http => "over HTTP",
        Transport::Native => "over the native protocol",
    };
    if transport == Transport::Native {
        f.product = Some("ClickHouse".into());
        f.evidence.push(
            "GET / answered 400 with the ClickHouse native port's refusal of HTTP \
             (\"… is for clickhouse-client program\")"
                .into(),
        );
        match c.native_login().await {
            Ok(h) => f.evidence.push(format!(
                "Hello as user default without a password was accepted by {} {} (revision {})",
                h.name, h.version, h.revision
            )),
            Err(Failure::Server(e)) => {
                if !refused(&mut f, "Hello as user default", &e) {
                    f.evidence
                        .push(format!("Hello was answered with an exception: {e}"));
                }
                return Outcome::Found(f);
            }
            Err(e) => {
                f.evidence.push(format!("Hello failed: {e}"));
                return Outcome::Found(f);
            }
        }
    }
    match c.query(VERSION, &[], 4096).await {
        Ok(rows) => {
            let version = rows
                .rows
                .first()
                .and_then(|r| r.first())
                .and_then(|v| v.as_str())
                .filter(|v| plausible_version(v));
            let Some(version) = version else {
                if transport == Transport::Http {
                    return not_me(root);
                }
                f.evidence
                    .push("SELECT version() did not answer a version".into());
                return Outcome::Found(f);
            };
            f.product = Some("ClickHouse".into());
            f.version = Some(version.to_string());
            f.evidence.push(format!(
                "SELECT version() answered {version} {on} without credentials"
            ));
        }
        Err(Failure::Server(e)) if e.code.is_some() => {
            f.product = Some("ClickHouse".into());
            if !refused(&mut f, &format!("SELECT version() {on}"), &e) {
                f.evidence
                    .push(format!("SELECT version() {on} answered an exception: {e}"));
            }
            return Outcome::Found(f);
        }
        Err(e) if transport == Transport::Http => {
            let _ = e;
            return not_me(root);
        }
        Err(e) => {
            f.evidence.push(format!("SELECT version() failed: {e}"));
            return Outcome::Found(f);
        }
    }
    match c
        .query(DATABASES, &[Arg::Int(MAX_DATABASES)], 1 << 20)
        .await
    {
        Ok(rows) => {
            f.access = Access::Open;
            f.evidence.push(format!(
                "SELECT name FROM system.databases answered {} database(s) {on} without \
                 credentials, read-only",
                rows.rows.len()
            ));
        }
        Err(Failure::Server(e)) => {
            if !refused(&mut f, "SELECT name FROM system.databases", &e) {
                f.evidence
                    .push(format!("the database list was not read: {e}"));
            }
        }
        Err(e) => f
            .evidence
            .push(format!("the database list was not read: {e}")),
    }
    Outcome::Found(f)
}

#[cfg(test)]
mod tests {
    use super::super::wire::tests::build;
    use super::*;
    use crate::testkit::{fixture, frames, FakeServer, Message, Reply};

    fn http(status: &str, body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nX-ClickHouse-Server-Display-Name: lab\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    fn ok_root() -> Response {
        Response {
            status: 200,
            headers: Vec::new(),
            body: b"Ok.\n".to_vec(),
        }
    }

    fn native_root() -> Response {
        Response {
            status: 400,
            headers: Vec::new(),
            body: b"Port 9000 is for clickhouse-client program.\r\nYou must use port 8123 for HTTP.\r\n"
                .to_vec(),
        }
    }

    const VERSION_JSON: &str =
        r#"{"meta":[{"name":"version()","type":"String"}],"data":[["18.16.1"]],"rows":1}"#;
    const DATABASES_JSON: &str = r#"{"meta":[{"name":"name","type":"String"}],"data":[["default"],["shop"],["system"]],"rows":3}"#;

    /// A ClickHouse HTTP interface: `answer` gets the request's text.
    async fn server(answer: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static) -> FakeServer {
        FakeServer::start(Vec::new(), frames::http_request, move |m: &Message| {
            Reply::SendAndClose(answer(&m.text()))
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
    async fn an_open_http_interface_is_read_with_readonly_1() {
        let s = server(|req| {
            if req.contains("SELECT version()") {
                http("200 OK", VERSION_JSON)
            } else {
                http("200 OK", DATABASES_JSON)
            }
        })
        .await;
        let f = found(probe(&s.ctx(), &ok_root()).await);
        assert_eq!(f.access, Access::Open);
        assert_eq!(f.version.as_deref(), Some("18.16.1"));
        assert!(f.evidence[1].contains("3 database(s)"), "{:?}", f.evidence);
        let texts = s.texts();
        assert_eq!(texts.len(), 2);
        for t in &texts {
            assert!(t.starts_with("POST /?max_execution_time="), "{t}");
            assert!(
                t.lines().next().unwrap().ends_with("&readonly=1 HTTP/1.1"),
                "{t}"
            );
        }
        assert!(
            texts[1].ends_with("SELECT name FROM system.databases LIMIT 10000 FORMAT JSONCompact")
        );
    }

    #[tokio::test]
    async fn a_password_is_auth_required_old_and_new() {
        for (status, body) in [
            ("401 Unauthorized", "Code: 194, e.displayText() = DB::Exception: Password required for user default, e.what() = DB::Exception\n"),
            ("516 Unknown", "Code: 516. DB::Exception: default: Authentication failed: password is incorrect, or there is no user with such name. (AUTHENTICATION_FAILED)\n"),
        ] {
            let s = server(move |_| http(status, body)).await;
            let f = found(probe(&s.ctx(), &ok_root()).await);
            assert_eq!(f.access, Access::AuthRequired, "{body}");
            assert_eq!(f.product.as_deref(), Some("ClickHouse"));
            assert_eq!(s.texts().len(), 1);
        }
    }

    /// A user whose profile is read-only may not set `readonly`: the statement goes again as
    /// a GET, which ClickHouse runs read-only by itself.
    #[tokio::test]
    async fn a_read_only_profile_gets_a_get() {
        let s = server(|req| {
            if req.starts_with("POST") {
                http("500 Internal Server Error", "Code: 164, e.displayText() = DB::Exception: Cannot modify 'readonly' setting in readonly mode, e.what() = DB::Exception\n")
            } else if req.contains("version") {
                http("200 OK", VERSION_JSON)
            } else {
                http("200 OK", DATABASES_JSON)
            }
        })
        .await;
        let f = found(probe(&s.ctx(), &ok_root()).await);
        assert_eq!(f.access, Access::Open);
        let texts = s.texts();
        assert!(
            texts[1].starts_with("GET /?query=SELECT%20version%28%29%20FORMAT%20JSONCompact "),
            "{texts:?}"
        );
        // Once refused, the setting is not sent again.
        assert!(
            texts[2].starts_with("GET /?query=SELECT%20name"),
            "{texts:?}"
        );
    }

    #[tokio::test]
    async fn ok_alone_proves_nothing() {
        let s = server(|_| http("200 OK", "Ok.\n")).await;
        assert!(matches!(
            probe(&s.ctx(), &ok_root()).await,
            Outcome::NotMe(_)
        ));
        let s = server(|_| http("404 Not Found", "no")).await;
        assert!(matches!(
            probe(&s.ctx(), &ok_root()).await,
            Outcome::NotMe(_)
        ));
        // Another HTTP store's root is not asked anything.
        let other = Response {
            status: 200,
            headers: Vec::new(),
            body: b"{\"version\":{}}".to_vec(),
        };
        assert!(matches!(probe(&s.ctx(), &other).await, Outcome::NotMe(_)));
        assert_eq!(s.texts().len(), 1);
    }

    /// The native port: a Hello, then the statements over the same connection.
    fn native(msg: &Message, login: Vec<u8>) -> Reply {
        match msg.bytes.first() {
            Some(0) => Reply::Send(login),
            Some(1) if msg.text().contains("version()") => Reply::Send(
                [
                    build::strings(&["version()"], &[&["18.16.1"]]),
                    build::progress(),
                    build::end(),
                ]
                .concat(),
            ),
            Some(1) => Reply::Send(
                [
                    build::strings(&["name"], &[&["default"], &["system"]]),
                    build::end(),
                ]
                .concat(),
            ),
            _ => Reply::Close,
        }
    }

    /// The protected case replays what the lab's ClickHouse 18.16.1 with a password sent to a
    /// Hello without one (`clickhouse/native_password_required.bin`: exception 194).
    #[tokio::test]
    async fn the_native_port_open_and_protected() {
        let s = FakeServer::start(Vec::new(), frames::chunk, |m| {
            native(m, build::hello("ClickHouse", 18, 16, 54409))
        })
        .await;
        let f = found(probe(&s.ctx(), &native_root()).await);
        assert_eq!(f.access, Access::Open, "{:?}", f.evidence);
        assert_eq!(f.version.as_deref(), Some("18.16.1"));
        assert!(f
            .evidence
            .iter()
            .any(|e| e.contains("2 database(s) over the native protocol")));
        // One connection: Hello, then each query with readonly=1.
        assert_eq!(s.connections(), 1);
        let msgs = s.messages();
        assert!(msgs[1..]
            .iter()
            .all(|m| m.bytes.windows(8).any(|w| w == b"readonly")));

        let s = FakeServer::start(Vec::new(), frames::chunk, |m| {
            native(
                m,
                fixture!("clickhouse/native_password_required.bin").to_vec(),
            )
        })
        .await;
        let f = found(probe(&s.ctx(), &native_root()).await);
        assert_eq!(f.access, Access::AuthRequired);
        assert_eq!(f.product.as_deref(), Some("ClickHouse"));
        assert_eq!(s.messages().len(), 1);
    }

    #[tokio::test]
    async fn a_native_port_that_talks_nonsense_is_unknown() {
        let s = FakeServer::start(Vec::new(), frames::chunk, |_| {
            Reply::Send(b"\x2aNOPE".to_vec())
        })
        .await;
        let f = found(probe(&s.ctx(), &native_root()).await);
        assert_eq!(f.access, Access::Unknown);
    }
}
