//! Memcached (text protocol).
//!
//! `version` identifies it; `stats` is the read: memcached has no accounts in the text
//! protocol, so a server that answers `stats` with item counts lets anyone read every key.
//! With SASL or ASCII auth enabled the same commands fail with `CLIENT_ERROR`/`ERROR`.

use futures::future::BoxFuture;

use super::{Finding, Handler, Outcome, ProbeCtx, Protocol, Seen};
use crate::model::Access;
use crate::net::{Check, Conn, NetError};

pub const PROTOCOL: Protocol = Protocol {
    id: "memcached",
    name: "Memcached",
    default_ports: &[11211],
    server_speaks_first: false,
    default_credentials: &[],
    method: "`version`, then `stats` (item counts) without authentication",
    handler: Handler::Raw(probe),
    inventory: None,
};

/// The only commands this probe ever sends. Both are read-only.
pub const ALLOWED_COMMANDS: &[&str] = &["version", "stats"];

const MAX_LINE: usize = 1024;

fn check_line(buf: &[u8]) -> Check {
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(i) => Check::Complete(i + 2),
        None if buf.len() > MAX_LINE => Check::Invalid("line too long".into()),
        None => Check::Incomplete,
    }
}

/// A `stats` reply ends with `END\r\n`; errors are one line.
fn check_stats(buf: &[u8]) -> Check {
    if buf.starts_with(b"STAT ") {
        if let Some(i) = buf.windows(7).position(|w| w == b"\r\nEND\r\n") {
            return Check::Complete(i + 7);
        }
        return Check::Incomplete;
    }
    check_line(buf)
}

/// `VERSION 1.6.18` → `1.6.18`.
pub fn parse_version(line: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(line).ok()?.trim_end();
    let v = s.strip_prefix("VERSION ")?;
    (!v.is_empty() && v.len() < 64 && v.chars().all(|c| c.is_ascii_graphic()))
        .then(|| v.to_string())
}

/// `STAT name value` lines → value of `name`.
pub fn stat<'a>(reply: &'a str, name: &str) -> Option<&'a str> {
    reply.lines().find_map(|l| {
        let mut it = l.splitn(3, ' ');
        (it.next() == Some("STAT") && it.next() == Some(name))
            .then(|| it.next())
            .flatten()
    })
}

async fn call(
    conn: &mut Conn,
    cmd: &str,
    check: fn(&[u8]) -> Check,
    cap: usize,
) -> Result<Vec<u8>, NetError> {
    if !ALLOWED_COMMANDS.contains(&cmd) {
        return Err(NetError::Invalid(format!(
            "refusing to send non-allowlisted memcached command {cmd}"
        )));
    }
    conn.send(format!("{cmd}\r\n").as_bytes()).await?;
    conn.read_frame(cap, check).await
}

fn probe<'a>(ctx: &'a ProbeCtx, mut conn: Conn) -> BoxFuture<'a, Outcome> {
    Box::pin(async move {
        let line = match call(&mut conn, "version", check_line, MAX_LINE).await {
            Ok(l) => l,
            Err(e) => return Outcome::NotMe(Seen::from_error(&e, conn.buffered())),
        };
        let mut f = Finding::new(PROTOCOL.id);
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
        match call(
            &mut conn,
            "stats",
            check_stats,
            ctx.opts.frame_cap.min(64 * 1024),
        )
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
            Ok(reply) => {
                f.access = Access::AuthRequired;
                f.evidence
                    .push(format!("`stats` refused: {}", super::preview(&reply)));
            }
            Err(e) => f.evidence.push(format!("`stats` failed: {e}")),
        }
        Outcome::Found(f)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `version` then `stats` of Debian's memcached 1.6.18, captured from the lab.
    const REAL: &[u8] = include_bytes!("../../fixtures/memcached/version_stats.txt");

    #[test]
    fn real_version_and_stats() {
        let Check::Complete(n) = check_line(REAL) else {
            panic!()
        };
        assert_eq!(parse_version(&REAL[..n]).as_deref(), Some("1.6.18"));
        let Check::Complete(m) = check_stats(&REAL[n..]) else {
            panic!()
        };
        assert_eq!(n + m, REAL.len());
        let text = String::from_utf8_lossy(&REAL[n..]);
        assert_eq!(stat(&text, "curr_items"), Some("1"));
    }

    #[test]
    fn other_protocols_are_not_memcached() {
        assert_eq!(parse_version(b"ERROR\r\n"), None);
        assert_eq!(parse_version(b"+PONG\r\n"), None);
        assert_eq!(parse_version(b"VERSION \x01\x02\r\n"), None);
        assert!(matches!(check_line(&[b'x'; 2000]), Check::Invalid(_)));
    }
}
