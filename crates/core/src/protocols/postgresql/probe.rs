//! Identifying PostgreSQL and judging access: a startup as user `postgres`, its answer
//! confirmed by one catalogue query, and with `--try-defaults` the documented default
//! credential on a fresh connection.

use std::sync::Arc;

use super::wire::{
    fresh, login, simple_query, Login, LoginError, PgError, Ready, DATABASES, LIST_DATABASES,
    TERMINATE, USER,
};
use crate::driver::{Budget, Credential, Finding, Outcome, ProbeCtx, Session};
use crate::model::Access;
use crate::net::Conn;

/// The registry id.
pub(super) const ID: &str = "postgresql";

/// The default credential tried with `--try-defaults`.
pub(super) const DEFAULTS: &[Credential] = &[Credential {
    user: "postgres",
    password: "postgres",
    why: "common default in images and tutorials",
}];

/// Logs in on `first` (or fresh connections), moving to `template1` when `postgres` is gone.
/// With a credential, every connection after the first is its own counted attempt.
pub(super) async fn attempt(
    ctx: &ProbeCtx,
    mut first: Option<Conn>,
    ssl: bool,
    cred: Option<&Credential>,
) -> Result<Login, LoginError> {
    let mut last = None;
    for (i, &db) in DATABASES.iter().enumerate() {
        if i > 0 && cred.is_some() && !ctx.begin_auth_attempt().await {
            break;
        }
        let conn = match first.take() {
            Some(c) => c,
            None => fresh(ctx, ssl).await.map_err(LoginError::Broken)?,
        };
        match login(ctx, conn, db, cred).await? {
            Login::Refused { err, authenticated } if authenticated && err.code == "3D000" => {
                last = Some(Login::Refused { err, authenticated });
            }
            other => return Ok(other),
        }
    }
    last.ok_or_else(|| LoginError::Broken("no database to try".into()))
}

/// Runs the query on a ready session and records the verdict in `f`: `open` without a
/// password, `default_credentials` with one, and only when the query answered.
pub(super) async fn read_and_judge(ctx: &ProbeCtx, f: &mut Finding, ready: Ready, ssl: bool) {
    let Ready {
        conn,
        session,
        database,
        method,
    } = ready;
    f.product = Some(session.product().into());
    f.version = session.version().or(f.version.take());
    let (how, access) = match method {
        Some(m) => (m, Access::DefaultCredentials),
        None => ("without a password (trust)".to_string(), Access::Open),
    };
    let over = if ssl { " over TLS" } else { "" };
    let superuser = if session.param("is_superuser") == Some("on") {
        "; the session is a superuser"
    } else {
        ""
    };
    let mut s = Session::with_conn(ctx, *conn, Arc::new(Budget::bytes_only(usize::MAX)));
    match simple_query(&mut s, LIST_DATABASES).await {
        Ok(rows) => {
            f.access = access;
            if access == Access::DefaultCredentials {
                // The only documented default; the inventory logs in with it again.
                f.credential = DEFAULTS.first().copied();
            }
            let more = if rows.count > rows.first.len() { ", …" } else { "" };
            f.evidence.push(format!(
                "startup as user {USER} (database {database}){over} accepted {how}{superuser}; \
                 {LIST_DATABASES} returned {} rows ({}{more})",
                rows.count,
                rows.first.join(", ")
            ));
        }
        Err(e) => f.evidence.push(format!(
            "startup as user {USER} (database {database}){over} accepted {how}, but {LIST_DATABASES} \
             failed: {e}"
        )),
    }
    s.goodbye(TERMINATE).await;
}

/// Verdict for an ErrorResponse to an unauthenticated startup.
pub(super) fn refused_access(err: &PgError) -> Access {
    match err.code.as_str() {
        "28P01" => Access::AuthRequired,
        // pg_hba.conf has no entry for us or rejects us: access control refused the login.
        // The same code also says "role does not exist" under trust, which proves nothing.
        "28000" if err.message.contains("pg_hba.conf") => Access::AuthRequired,
        _ => Access::Unknown,
    }
}

/// The protocol's probe: is this its protocol, and can it be read without credentials?
pub(super) async fn probe(ctx: &ProbeCtx, conn: Conn) -> Outcome {
    let mut f = Finding::new(ID);
    let mut ssl = false;
    let mut ssl_note = None;
    let mut state = match attempt(ctx, Some(conn), false, None).await {
        Err(LoginError::NotMe(seen)) => return Outcome::NotMe(seen),
        other => other,
    };
    f.product = Some("PostgreSQL".into());
    if let Ok(Login::Refused {
        err,
        authenticated: false,
    }) = &state
    {
        // `hostssl`-only servers refuse plaintext with 28000; inside TLS the answer may differ.
        if err.code == "28000" && !ctx.tls {
            match fresh(ctx, true).await {
                Ok(conn) => {
                    ssl = true;
                    f.evidence.push(format!(
                        "plaintext startup as user {USER} refused: {err}; SSLRequest accepted, \
                             startup repeated over TLS"
                    ));
                    state = attempt(ctx, Some(conn), true, None).await;
                }
                Err(why) => ssl_note = Some(format!("SSLRequest after that: {why}")),
            }
        }
    }
    let over = if ssl { " over TLS" } else { "" };
    match state {
        Err(LoginError::NotMe(seen)) => f
            .evidence
            .push(format!("TLS startup not understood: {seen:?}")),
        Err(LoginError::Broken(why)) => f
            .evidence
            .push(format!("startup as user {USER}{over}: {why}")),
        Ok(Login::Ready(ready)) => read_and_judge(ctx, &mut f, ready, ssl).await,
        Ok(Login::Refused {
            err,
            authenticated: true,
        }) => f.evidence.push(format!(
            "startup as user {USER}{over} accepted without a password (trust), but the session \
                 failed: {err}"
        )),
        Ok(Login::Refused {
            err,
            authenticated: false,
        }) => {
            f.access = refused_access(&err);
            f.evidence
                .push(format!("startup as user {USER}{over} refused: {err}"));
        }
        Ok(Login::Challenge(challenge)) => {
            f.access = Access::AuthRequired;
            f.evidence.push(format!(
                "startup as user {USER}{over}: server requires authentication ({})",
                challenge.method()
            ));
            try_defaults(ctx, &mut f, ssl).await;
        }
    }
    f.evidence.extend(ssl_note);
    Outcome::Found(f)
}

/// Tries the documented default credentials, each on a fresh connection.
pub(super) async fn try_defaults(ctx: &ProbeCtx, f: &mut Finding, ssl: bool) {
    for cred in DEFAULTS {
        if !ctx.begin_auth_attempt().await {
            return;
        }
        let pair = format!("{}/{}", cred.user, cred.password);
        let conn = match fresh(ctx, ssl).await {
            Ok(c) => c,
            Err(why) => {
                f.evidence.push(format!("default credential {pair}: {why}"));
                return;
            }
        };
        match attempt(ctx, Some(conn), ssl, Some(cred)).await {
            Ok(Login::Ready(ready)) => {
                read_and_judge(ctx, f, ready, ssl).await;
                if f.access != Access::AuthRequired {
                    return;
                }
            }
            Ok(Login::Refused { err, .. }) => f
                .evidence
                .push(format!("default credential {pair} refused: {err}")),
            Ok(Login::Challenge(_)) => {}
            Err(LoginError::NotMe(seen)) => f.evidence.push(format!(
                "default credential {pair}: answer not understood: {seen:?}"
            )),
            Err(LoginError::Broken(why)) => {
                f.evidence.push(format!("default credential {pair}: {why}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use std::net::SocketAddr;

    use crate::driver::Seen;
    use crate::protocols::postgresql::wire::tests::ctx;
    use crate::protocols::postgresql::wire::{b64, frontend};
    use crate::testkit::{frames, FakeServer, Reply};

    fn backend(ty: u8, body: &[u8]) -> Vec<u8> {
        frontend(ty, body)
    }

    async fn run(addr: SocketAddr, try_defaults: bool) -> Outcome {
        let ctx = ctx(addr, try_defaults);
        let conn = ctx.connect().await.unwrap();
        probe(&ctx, conn).await
    }

    #[tokio::test]
    async fn giant_length_is_refused_at_once() {
        let server = FakeServer::start(Vec::new(), frames::pg_message, |_| {
            Reply::Send(b"R\x7f\xff\xff\xff\0\0\0\0".to_vec())
        })
        .await;
        let t = std::time::Instant::now();
        let out = run(server.addr(), false).await;
        assert!(matches!(out, Outcome::NotMe(Seen::Bytes(_))), "{out:?}");
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
    }

    #[tokio::test]
    async fn a_peer_that_says_yes_to_everything_is_not_open() {
        // AuthenticationOk and ReadyForQuery for the startup, then `+OK` to the query.
        let server = FakeServer::start(Vec::new(), frames::pg_message, |m| match m.index {
            0 => {
                let mut out = backend(b'R', &[0, 0, 0, 0]);
                out.extend(backend(b'Z', b"I"));
                Reply::Send(out)
            }
            _ => Reply::Send(b"+OK\r\n".to_vec()),
        })
        .await;
        let Outcome::Found(f) = run(server.addr(), false).await else {
            panic!()
        };
        assert_eq!(f.access, Access::Unknown, "{f:?}");
        assert!(f.evidence[0].contains("failed"), "{f:?}");
    }

    #[tokio::test]
    async fn a_fake_scram_server_that_accepts_any_proof_is_caught() {
        let server = FakeServer::start(Vec::new(), frames::pg_message, |m| match m.index {
            0 => Reply::Send(backend(b'R', b"\0\0\0\x0aSCRAM-SHA-256\0\0")),
            1 => {
                let text = m.text();
                let nonce = text.split("r=").nth(1).unwrap().to_string();
                let sf = format!("r={nonce}srv,s=c2FsdHNhbHQ=,i=4096");
                let mut body = 11u32.to_be_bytes().to_vec();
                body.extend_from_slice(sf.as_bytes());
                Reply::Send(backend(b'R', &body))
            }
            _ => {
                let mut out = b"\0\0\0\x0cv=".to_vec();
                out.extend_from_slice(base64::Engine::encode(&b64(), [7u8; 32]).as_bytes());
                let mut msgs = backend(b'R', &out);
                msgs.extend(backend(b'R', &[0, 0, 0, 0]));
                msgs.extend(backend(b'Z', b"I"));
                Reply::Send(msgs)
            }
        })
        .await;
        let Outcome::Found(f) = run(server.addr(), true).await else {
            panic!()
        };
        assert_eq!(f.access, Access::AuthRequired, "{f:?}");
        assert!(
            f.evidence.iter().any(|e| e.contains("does not verify")),
            "{f:?}"
        );
        assert!(server.messages()[0]
            .bytes
            .windows(9)
            .any(|w| w == b"leakscope"));

        // Without --try-defaults nothing is attempted.
        let Outcome::Found(f) = run(server.addr(), false).await else {
            panic!()
        };
        assert_eq!(f.access, Access::AuthRequired);
        assert_eq!(f.evidence.len(), 1, "{f:?}");
    }
}
