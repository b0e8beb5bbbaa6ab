//! Identifying Memcached and judging access: `version`, then `stats`.

use super::wire::{check_line, check_stats, is_refusal, parse_version, send_lines, stat, MAX_LINE};
use crate::driver::{preview, Finding, Outcome, ProbeCtx, Seen};
use crate::model::Access;
use crate::net::Conn;

/// The registry id.
pub(super) const ID: &str = "memcached";

/// The protocol's probe: is this its protocol, and can it be read without credentials?
///
/// `version` and `stats` go out together, 16 bytes, so a server of another protocol answers
/// or closes at once (see [`crate::identify`]); the `stats` reply is read only when `version`
/// proved a Memcached.
pub(super) async fn probe(ctx: &ProbeCtx, mut conn: Conn) -> Outcome {
    let line = match send_lines(&mut conn, &["version", "stats"]).await {
        Ok(()) => conn.read_frame(MAX_LINE, check_line).await,
        Err(e) => Err(e),
    };
    let line = match line {
        Ok(l) => l,
        Err(e) => return Outcome::NotMe(Seen::from_error(&e, conn.buffered())),
    };
    let mut f = Finding::new(ID);
    f.product = Some("Memcached".into());
    match parse_version(&line) {
        Some(v) => f.version = Some(v),
        None if line.starts_with(b"CLIENT_ERROR unauthenticated") => {
            f.access = Access::AuthRequired;
            f.evidence
                .push("`version` refused: CLIENT_ERROR unauthenticated (ASCII auth)".into());
            return Outcome::Found(f);
        }
        None => return Outcome::NotMe(Seen::Bytes(line)),
    }
    f.evidence
        .push("`version` answered without authentication".into());
    match conn
        .read_frame(ctx.opts.frame_cap.min(64 * 1024), check_stats)
        .await
    {
        Ok(reply) if reply.starts_with(b"STAT ") => {
            let text = String::from_utf8_lossy(&reply);
            let items = stat(&text, "curr_items").unwrap_or("?");
            f.access = Access::Open;
            f.evidence.push(format!(
                "`stats` answered without authentication (curr_items {items})"
            ));
        }
        Ok(reply) if is_refusal(&reply) => {
            f.access = Access::AuthRequired;
            f.evidence
                .push(format!("`stats` refused: {}", preview(&reply)));
        }
        // Neither the statistics nor a refusal (a honeypot's `OK`, junk): nothing proven.
        Ok(reply) => f.evidence.push(format!(
            "`stats` gave neither statistics nor a refusal: {}",
            preview(&reply)
        )),
        Err(e) => f.evidence.push(format!("`stats` failed: {e}")),
    }
    Outcome::Found(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{fixture, FakeServer, Message, Reply};

    /// `version` then `stats` of Debian's memcached 1.6.18, captured from the lab.
    const REAL: &[u8] = fixture!("memcached/version_stats.txt");

    /// A memcached that answers `version` and `stats` with `version` and `stats`, and `ERROR`
    /// to anything else, as memcached does.
    async fn server(version: &'static [u8], stats: &'static [u8]) -> FakeServer {
        FakeServer::lines(move |m: &Message| match m.text().trim_end() {
            "version" => Reply::Send(version.to_vec()),
            "stats" => Reply::Send(stats.to_vec()),
            _ => Reply::Send(b"ERROR\r\n".to_vec()),
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
    async fn a_real_memcached_is_open() {
        let n = REAL.iter().position(|&b| b == b'\n').unwrap() + 1;
        let (version, stats) = REAL.split_at(n);
        let server = server(version, stats).await;
        let f = found(run(&server).await);
        assert_eq!(f.version.as_deref(), Some("1.6.18"));
        assert_eq!(f.access, Access::Open);
        assert!(f.evidence[1].contains("curr_items 1"), "{:?}", f.evidence);
        // Both commands, sent together (the 16 bytes identification counts on, see
        // `protocols::tests`).
        assert_eq!(server.texts(), ["version\r\n", "stats\r\n"]);
    }

    #[tokio::test]
    async fn ascii_auth_and_sasl_require_authentication() {
        let ascii = server(b"CLIENT_ERROR unauthenticated\r\n", b"").await;
        assert_eq!(found(run(&ascii).await).access, Access::AuthRequired);
        let sasl = server(
            b"VERSION 1.6.18\r\n",
            b"CLIENT_ERROR authentication failure\r\n",
        )
        .await;
        assert_eq!(found(run(&sasl).await).access, Access::AuthRequired);
    }

    #[tokio::test]
    async fn a_honeypot_proves_nothing_and_others_are_not_memcached() {
        let honeypot = server(b"VERSION 1.6.21\r\n", b"OK\r\n").await;
        assert_eq!(found(run(&honeypot).await).access, Access::Unknown);
        let redis = FakeServer::lines(|_| Reply::Send(b"-ERR unknown command\r\n".to_vec())).await;
        assert!(matches!(run(&redis).await, Outcome::NotMe(Seen::Bytes(_))));
    }
}
