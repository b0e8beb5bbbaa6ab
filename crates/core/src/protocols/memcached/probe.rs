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
