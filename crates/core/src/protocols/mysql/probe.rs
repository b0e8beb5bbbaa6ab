//! Identifying MySQL and MariaDB and judging access: the greeting alone (an account is always
//! needed), and with `--try-defaults` a login as `root` with an empty password proven by
//! `SHOW DATABASES`.

use std::sync::Arc;

use super::wire::{
    clean, frame, login, parse_greeting, product_version, query, read_packet, Greeting, Handshake,
    Login, QueryReply, ServerError, COM_QUIT,
};
use crate::driver::{Budget, Credential, Finding, Outcome, ProbeCtx, Seen, Session};
use crate::model::Access;
use crate::net::{Conn, NetError};

/// The registry id.
pub(super) const ID: &str = "mysql";

/// The one default tried: the login code sends an empty auth response, so it only implements
/// empty passwords.
pub(super) const ROOT_EMPTY: Credential = Credential {
    user: "root",
    password: "",
    why: "MySQL/MariaDB installs and images with an empty root password",
};

const _: () = assert!(ROOT_EMPTY.password.is_empty());

pub(super) fn product_from_message(message: &str) -> Option<String> {
    if message.contains("MariaDB") {
        Some("MariaDB".into())
    } else if message.contains("MySQL") {
        Some("MySQL".into())
    } else {
        None
    }
}

/// The finding a handshake alone supports.
pub(super) fn handshake_finding(hs: &Handshake) -> Finding {
    let mut f = Finding::new(ID);
    let (product, version) = product_version(&hs.server_version);
    f.product = Some(product.into());
    f.version = version;
    f.access = Access::AuthRequired;
    f.evidence.push(format!(
        "initial handshake (protocol 10): server version {:?}, auth plugin {}; MySQL always requires an account",
        clean(&hs.server_version),
        hs.auth_plugin.as_deref().unwrap_or("not named (pre-5.5 server)")
    ));
    f
}

/// The finding for a server that refused us before the handshake.
pub(super) fn error_greeting_finding(e: &ServerError) -> Finding {
    let mut f = Finding::new(ID);
    f.product = product_from_message(&e.message);
    f.access = match e.code {
        // ER_HOST_NOT_PRIVILEGED: no account may log in from this address.
        1130 => Access::AuthRequired,
        // Too many connections, host blocked, shutting down: says nothing about access.
        _ => Access::Unknown,
    };
    f.evidence.push(format!(
        "server refused the connection before the handshake: {e}"
    ));
    f
}

/// Logs in with the default credential and, when that works, reads the database list.
pub(super) async fn try_default(ctx: &ProbeCtx, mut conn: Conn, hs: &Handshake, f: &mut Finding) {
    let who = format!("login as {} with an empty password", ROOT_EMPTY.user);
    match login(ctx, &mut conn, hs, ROOT_EMPTY.user).await {
        Ok(Login::Accepted) => {}
        Ok(Login::Refused(e)) if matches!(e.code, 1045 | 1698) => {
            f.evidence
                .push(format!("default credential refused: {who} answered {e}"));
            return;
        }
        Ok(Login::Refused(e)) => {
            f.evidence.push(format!("{who} not completed: {e}"));
            return;
        }
        Ok(Login::GaveUp(why)) => {
            f.evidence.push(format!("{who} not completed: {why}"));
            return;
        }
        Err(e) => {
            f.evidence.push(format!("{who} failed: {e}"));
            return;
        }
    }
    // Logged in; only a protocol-valid result set counts as a read.
    let mut s = Session::with_conn(ctx, conn, Arc::new(Budget::bytes_only(ctx.opts.frame_cap)));
    match query(&mut s, "SHOW DATABASES").await {
        Ok(QueryReply::Rows(set)) => {
            f.access = Access::DefaultCredentials;
            f.credential = Some(ROOT_EMPTY);
            let n = set.rows.len();
            f.evidence.push(if set.truncated {
                format!("{who} succeeded; SHOW DATABASES returned more than {n} databases (listing cut at the cap)")
            } else {
                format!("{who} succeeded; SHOW DATABASES returned {n} databases")
            });
            if set.truncated {
                // The rest of the result set is still on the wire; the connection is done.
                return;
            }
            // The greeting's version is configurable in proxies (ProxySQL, MaxScale); the
            // server's own answer wins.
            if let Ok(QueryReply::Rows(v)) = query(&mut s, "SELECT VERSION()").await {
                if let Some(Some(real)) = v.rows.first().and_then(|r| r.first()) {
                    let (product, version) = product_version(real);
                    let differs = version != f.version || f.product.as_deref() != Some(product);
                    if version.is_some() && differs {
                        f.evidence.push(format!(
                            "the server's SELECT VERSION() answered {:?}, unlike the greeting {:?}",
                            clean(real),
                            clean(&hs.server_version)
                        ));
                        f.product = Some(product.into());
                        f.version = version;
                    }
                }
            }
            s.goodbye(&frame(0, &[COM_QUIT])).await;
        }
        Ok(QueryReply::Err(e)) => {
            f.access = Access::Unknown;
            f.evidence.push(format!(
                "{who} succeeded, but SHOW DATABASES was refused: {e}"
            ));
        }
        Ok(QueryReply::Ok) => {
            f.access = Access::Unknown;
            f.evidence.push(format!(
                "{who} was accepted, but SHOW DATABASES returned no result set"
            ));
        }
        Err(e) => {
            f.access = Access::Unknown;
            f.evidence.push(format!(
                "{who} was accepted, but SHOW DATABASES failed: {e}"
            ));
        }
    }
}

/// The protocol's probe: is this its protocol, and can it be read without credentials?
pub(super) async fn probe(ctx: &ProbeCtx, mut conn: Conn) -> Outcome {
    let cap = ctx.opts.frame_cap;
    let (seq, payload) =
        match tokio::time::timeout(ctx.opts.banner_wait, read_packet(&mut conn, cap)).await {
            Err(_) => {
                return Outcome::NotMe(Seen::from_error(
                    &NetError::Timeout("greeting"),
                    conn.buffered(),
                ))
            }
            Ok(Err(e)) => return Outcome::NotMe(Seen::from_error(&e, conn.buffered())),
            Ok(Ok(p)) => p,
        };
    let greeting = if seq == 0 {
        parse_greeting(&payload)
    } else {
        None
    };
    let hs = match greeting {
        Some(Greeting::Handshake(hs)) => hs,
        Some(Greeting::Error(e)) => return Outcome::Found(error_greeting_finding(&e)),
        None => {
            let mut seen = frame(seq, &payload);
            seen.truncate(64);
            return Outcome::NotMe(Seen::Bytes(seen));
        }
    };
    let mut f = handshake_finding(&hs);
    if ctx.begin_auth_attempt().await {
        try_default(ctx, conn, &hs, &mut f).await;
    } else {
        f.evidence.push(
            "no login attempted (the empty root password is tried only with --try-defaults)".into(),
        );
    }
    Outcome::Found(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::time::Duration;

    use crate::driver::ProbeOptions;
    use crate::protocols::mysql::wire::tests::{
        handshake, mysql8_greeting, ok_packet, payload, result_set, ACCESS_DENIED, GREETING,
        HOST_NOT_ALLOWED, LOGIN_OK, SELECT_VERSION, SHOW_DATABASES, SWITCH_ED25519,
    };
    use crate::protocols::mysql::wire::{Greeting, CLIENT_PROTOCOL_41, COM_QUIT};
    use crate::testkit::{frames, FakeServer, Reply};

    #[test]
    fn real_mariadb_greeting() {
        let hs = handshake(GREETING);
        assert_eq!(hs.server_version, "5.5.5-10.11.19-MariaDB-0+deb12u1");
        assert_eq!(hs.auth_plugin.as_deref(), Some("mysql_native_password"));
        assert_eq!(hs.scramble.len(), 20);
        assert_ne!(hs.capabilities & CLIENT_PROTOCOL_41, 0);
        assert_eq!(
            product_version(&hs.server_version),
            ("MariaDB", Some("10.11.19".into()))
        );
        let f = handshake_finding(&hs);
        assert_eq!(f.access, Access::AuthRequired);
        assert!(
            f.evidence[0].contains("mysql_native_password"),
            "{:?}",
            f.evidence
        );
    }

    #[test]
    fn real_host_not_allowed_greeting() {
        let Some(Greeting::Error(e)) = parse_greeting(&payload(HOST_NOT_ALLOWED)) else {
            panic!()
        };
        assert_eq!(e.code, 1130);
        assert_eq!(e.sql_state, None);
        assert_eq!(
            e.message,
            "Host '127.0.0.1' is not allowed to connect to this MariaDB server"
        );
        let f = error_greeting_finding(&e);
        assert_eq!(f.product.as_deref(), Some("MariaDB"));
        assert_eq!(f.access, Access::AuthRequired);
    }

    #[test]
    fn too_many_connections_greeting() {
        // Built from the protocol documentation (ERR before the handshake has no SQL state):
        // this MariaDB 10.11 let idle connections past max_connections=1 reach the handshake,
        // so it could not be captured.
        let mut p = vec![0xff, 0x10, 0x04];
        p.extend_from_slice(b"Too many connections");
        let Some(Greeting::Error(e)) = parse_greeting(&p) else {
            panic!()
        };
        assert_eq!(e.code, 1040);
        let f = error_greeting_finding(&e);
        assert_eq!(f.access, Access::Unknown);
        assert_eq!(f.product, None);
    }

    /// A server that sends `greeting`, then answers each client packet with the next reply
    /// (raw bytes) and closes when they run out.
    async fn scripted(greeting: Vec<u8>, replies: Vec<Vec<u8>>) -> FakeServer {
        FakeServer::start(
            vec![Reply::Send(greeting)],
            frames::mysql_packet,
            move |m| {
                replies
                    .get(m.index)
                    .cloned()
                    .map_or(Reply::Close, Reply::Send)
            },
        )
        .await
    }

    /// The payloads the client sent (packet headers off).
    fn sent(server: &FakeServer) -> Vec<Vec<u8>> {
        server
            .messages()
            .iter()
            .map(|m| m.bytes[4..].to_vec())
            .collect()
    }

    fn ctx(addr: SocketAddr, try_defaults: bool) -> ProbeCtx {
        let opts = ProbeOptions {
            try_defaults,
            banner_wait: Duration::from_millis(300),
            ..ProbeOptions::default()
        };
        crate::driver::test_ctx(addr, opts)
    }

    async fn run(addr: SocketAddr, try_defaults: bool) -> Outcome {
        let c = ctx(addr, try_defaults);
        let conn = c.connect().await.unwrap();
        probe(&c, conn).await
    }

    fn found(o: Outcome) -> Finding {
        match o {
            Outcome::Found(f) => f,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn replayed_mariadb_with_empty_root_password() {
        let server = scripted(
            GREETING.to_vec(),
            vec![
                LOGIN_OK.to_vec(),
                SHOW_DATABASES.to_vec(),
                SELECT_VERSION.to_vec(),
            ],
        )
        .await;
        let addr = server.addr();
        let f = found(run(addr, true).await);
        assert_eq!(f.access, Access::DefaultCredentials);
        assert_eq!(f.product.as_deref(), Some("MariaDB"));
        assert_eq!(f.version.as_deref(), Some("10.11.19"));
        assert!(
            f.evidence
                .iter()
                .any(|e| e.contains("SHOW DATABASES returned 6 databases")),
            "{f:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let sent = sent(&server);
        assert_eq!(sent.len(), 4);
        assert_eq!(sent[1], b"\x03SHOW DATABASES");
        assert_eq!(sent[2], b"\x03SELECT VERSION()");
        assert_eq!(sent[3], [COM_QUIT]);
    }

    #[tokio::test]
    async fn without_try_defaults_nothing_is_sent() {
        let server = scripted(GREETING.to_vec(), vec![LOGIN_OK.to_vec()]).await;
        let addr = server.addr();
        let f = found(run(addr, false).await);
        assert_eq!(f.access, Access::AuthRequired);
        assert!(sent(&server).is_empty());
    }

    #[tokio::test]
    async fn replayed_refusals_stay_auth_required() {
        for (reply, needle) in [
            (ACCESS_DENIED, "default credential refused"),
            (SWITCH_ED25519, "client_ed25519"),
        ] {
            let server = scripted(GREETING.to_vec(), vec![reply.to_vec()]).await;
            let addr = server.addr();
            let f = found(run(addr, true).await);
            assert_eq!(f.access, Access::AuthRequired);
            assert!(f.evidence.iter().any(|e| e.contains(needle)), "{f:?}");
        }
        let server = scripted(HOST_NOT_ALLOWED.to_vec(), vec![]).await;
        let addr = server.addr();
        assert_eq!(found(run(addr, true).await).access, Access::AuthRequired);
    }

    #[tokio::test]
    async fn mysql8_fast_auth_then_read() {
        let mut auth = frame(2, &[0x01, 0x03]);
        auth.extend(frame(3, &ok_packet()));
        let server = scripted(
            mysql8_greeting(),
            vec![
                auth,
                result_set(&["information_schema", "mysql", "app"]),
                result_set(&["8.0.36"]),
            ],
        )
        .await;
        let addr = server.addr();
        let f = found(run(addr, true).await);
        assert_eq!(f.access, Access::DefaultCredentials, "{f:?}");
        assert_eq!(f.product.as_deref(), Some("MySQL"));
        assert!(
            f.evidence
                .iter()
                .any(|e| e.contains("returned 3 databases")),
            "{f:?}"
        );
        assert!(sent(&server)[0].ends_with(b"caching_sha2_password\0"));

        let server = scripted(mysql8_greeting(), vec![frame(2, &[0x01, 0x04])]).await;
        let addr = server.addr();
        let f = found(run(addr, true).await);
        assert_eq!(f.access, Access::AuthRequired);
        assert!(
            f.evidence.iter().any(|e| e.contains("full authentication")),
            "{f:?}"
        );
    }

    #[tokio::test]
    async fn proxy_greeting_version_is_corrected_by_select_version() {
        // ProxySQL-style: the greeting carries a configured version, the backend tells the truth.
        let greeting = payload(&mysql8_greeting());
        let mut p = vec![10];
        p.extend_from_slice(b"5.5.30\0");
        p.extend_from_slice(&greeting[8..]);
        let server = scripted(
            frame(0, &p),
            vec![
                frame(2, &ok_packet()),
                result_set(&["mysql"]),
                result_set(&["10.6.18-MariaDB-log"]),
            ],
        )
        .await;
        let addr = server.addr();
        let f = found(run(addr, true).await);
        assert_eq!(f.access, Access::DefaultCredentials);
        assert_eq!(f.product.as_deref(), Some("MariaDB"));
        assert_eq!(f.version.as_deref(), Some("10.6.18"));
        assert!(
            f.evidence.iter().any(|e| e.contains("unlike the greeting")),
            "{f:?}"
        );
    }

    #[tokio::test]
    async fn honeypot_ok_to_everything_is_not_default_credentials() {
        let ok = |seq| frame(seq, &ok_packet());
        let server = scripted(GREETING.to_vec(), vec![ok(2), ok(1), ok(1), ok(1)]).await;
        let addr = server.addr();
        let f = found(run(addr, true).await);
        assert_eq!(f.access, Access::Unknown, "{f:?}");
    }

    #[tokio::test]
    async fn giant_greeting_and_silence_are_not_mysql() {
        // Announces a 16 MB packet and would stream it: refused from the header.
        let mut huge = vec![0xff, 0xff, 0xff, 0x00];
        huge.extend(std::iter::repeat_n(b'x', 64 * 1024));
        let server = scripted(huge, vec![]).await;
        let addr = server.addr();
        let c = ctx(addr, true);
        let conn = c.connect().await.unwrap();
        let t = std::time::Instant::now();
        assert!(matches!(
            probe(&c, conn).await,
            Outcome::NotMe(Seen::Bytes(_))
        ));
        assert!(t.elapsed() < Duration::from_secs(1));

        let silent = FakeServer::opening(vec![Reply::Stall(Duration::from_secs(2))]).await;
        assert_eq!(
            run(silent.addr(), true).await,
            Outcome::NotMe(Seen::Silence)
        );
    }
}
