//! RESP (Redis serialization protocol) frames: a bounded checker and a small parser; the
//! command allowlist and the one function that sends.
//!
//! "Check, then parse": [`check`] walks the buffer without allocating and refuses absurd
//! lengths (`$999999999`) and counts before anything is allocated; [`parse`] only runs on a
//! frame `check` accepted.

use crate::driver::ProbeCtx;
use crate::net::{Check, Conn, NetError};

/// Deepest nesting of arrays accepted.
const MAX_DEPTH: usize = 8;

/// Limits applied while checking a frame.
#[derive(Debug, Clone, Copy)]
pub struct RespLimits {
    /// Largest bulk string.
    pub max_bulk: usize,
    /// Most elements in one array.
    pub max_items: usize,
}

impl Default for RespLimits {
    fn default() -> Self {
        RespLimits {
            max_bulk: 1 << 20,
            max_items: 10_000,
        }
    }
}

/// A parsed RESP value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Value>>),
}

impl Value {
    /// The text of a simple or bulk string.
    pub fn text(&self) -> Option<String> {
        match self {
            Value::Simple(s) => Some(s.clone()),
            Value::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    buf[from..]
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|i| from + i)
}

fn int_at(buf: &[u8], from: usize, end: usize) -> Result<i64, String> {
    std::str::from_utf8(&buf[from..end])
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| "bad RESP integer".to_string())
}

/// Walks one value starting at `pos`; returns the offset just past it.
fn walk(buf: &[u8], pos: usize, lim: RespLimits, depth: usize) -> Result<Option<usize>, String> {
    if pos >= buf.len() {
        return Ok(None);
    }
    // Simple lines longer than this are not RESP from a real server.
    const MAX_LINE: usize = 64 * 1024;
    let Some(end) = line_end(buf, pos + 1) else {
        if buf.len() - pos > MAX_LINE {
            return Err("RESP line too long".into());
        }
        return Ok(None);
    };
    match buf[pos] {
        b'+' | b'-' => Ok(Some(end + 2)),
        b':' => int_at(buf, pos + 1, end).map(|_| Some(end + 2)),
        b'$' => {
            let n = int_at(buf, pos + 1, end)?;
            if n == -1 {
                return Ok(Some(end + 2));
            }
            if n < 0 || n as u64 > lim.max_bulk as u64 {
                return Err(format!("bulk length {n} out of bounds"));
            }
            let stop = end + 2 + n as usize + 2;
            if buf.len() < stop {
                return Ok(None);
            }
            if &buf[stop - 2..stop] != b"\r\n" {
                return Err("bulk string not terminated".into());
            }
            Ok(Some(stop))
        }
        b'*' => {
            let n = int_at(buf, pos + 1, end)?;
            if n == -1 {
                return Ok(Some(end + 2));
            }
            if n < 0 || n as u64 > lim.max_items as u64 {
                return Err(format!("array length {n} out of bounds"));
            }
            if depth >= MAX_DEPTH {
                return Err("RESP nesting too deep".into());
            }
            let mut at = end + 2;
            for _ in 0..n {
                match walk(buf, at, lim, depth + 1)? {
                    Some(next) => at = next,
                    None => return Ok(None),
                }
            }
            Ok(Some(at))
        }
        other => Err(format!("not RESP (first byte 0x{other:02x})")),
    }
}

/// Frame checker for one RESP value.
pub fn check(buf: &[u8], lim: RespLimits) -> Check {
    match walk(buf, 0, lim, 0) {
        Ok(Some(n)) => Check::Complete(n),
        Ok(None) => Check::Incomplete,
        Err(e) => Check::Invalid(e),
    }
}

fn parse_at(buf: &[u8], pos: usize) -> (Value, usize) {
    let end = line_end(buf, pos + 1).expect("checked frame");
    let text = || String::from_utf8_lossy(&buf[pos + 1..end]).into_owned();
    match buf[pos] {
        b'+' => (Value::Simple(text()), end + 2),
        b'-' => (Value::Error(text()), end + 2),
        b':' => (Value::Int(int_at(buf, pos + 1, end).unwrap_or(0)), end + 2),
        b'$' => {
            let n = int_at(buf, pos + 1, end).unwrap_or(-1);
            if n < 0 {
                return (Value::Bulk(None), end + 2);
            }
            let start = end + 2;
            (
                Value::Bulk(Some(buf[start..start + n as usize].to_vec())),
                start + n as usize + 2,
            )
        }
        _ => {
            let n = int_at(buf, pos + 1, end).unwrap_or(-1);
            if n < 0 {
                return (Value::Array(None), end + 2);
            }
            let mut at = end + 2;
            let mut items = Vec::new();
            for _ in 0..n {
                let (v, next) = parse_at(buf, at);
                items.push(v);
                at = next;
            }
            (Value::Array(Some(items)), at)
        }
    }
}

/// Parses a frame that [`check`] reported complete.
pub fn parse(frame: &[u8]) -> Value {
    parse_at(frame, 0).0
}

/// Encodes a command as a RESP array of bulk strings.
pub fn command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The allowlist and the one way commands leave

/// The only commands this module ever sends. All are read-only: `SELECT` only picks the
/// connection's logical database; the rest read keys, types and values, each bounded
/// (`GETRANGE` instead of `GET`, one `HSCAN`/`SSCAN` page, `LRANGE`/`ZRANGE`/`XRANGE` with limits,
/// `HGET` of one field; `EXISTS` answers only how many of the named keys exist).
pub const ALLOWED_COMMANDS: &[&str] = &[
    "INFO", "DBSIZE", "SELECT", "SCAN", "TYPE", "GETRANGE", "HSCAN", "HGET", "LRANGE", "SSCAN",
    "ZRANGE", "XRANGE", "EXISTS",
];

pub(super) fn allowed(name: &str) -> Result<(), NetError> {
    if ALLOWED_COMMANDS
        .iter()
        .any(|c| c.eq_ignore_ascii_case(name))
    {
        Ok(())
    } else {
        Err(NetError::Invalid(format!(
            "refusing to send non-allowlisted Redis command {name}"
        )))
    }
}

pub(super) fn limits(ctx: &ProbeCtx) -> RespLimits {
    RespLimits {
        max_bulk: ctx.opts.frame_cap,
        max_items: 10_000,
    }
}

/// Sends one allowlisted command and reads one reply.
pub(super) async fn call(
    conn: &mut Conn,
    ctx: &ProbeCtx,
    args: &[&str],
) -> Result<Value, NetError> {
    allowed(args.first().copied().unwrap_or(""))?;
    conn.send(&command(args)).await?;
    let lim = limits(ctx);
    let frame = conn
        .read_frame(ctx.opts.frame_cap + 64, |b| check(b, lim))
        .await?;
    Ok(parse(&frame))
}

/// Sends a batch of allowlisted commands at once (pipelining) and reads their replies in order.
/// Returns the replies and the bytes they took.
pub(super) async fn call_many(
    conn: &mut Conn,
    ctx: &ProbeCtx,
    cmds: &[Vec<String>],
) -> Result<(Vec<Value>, usize), NetError> {
    let args: Vec<Vec<&str>> = cmds
        .iter()
        .map(|c| c.iter().map(String::as_str).collect())
        .collect();
    let refs: Vec<&[&str]> = args.iter().map(Vec::as_slice).collect();
    send_many(conn, &refs).await?;
    let mut replies = Vec::with_capacity(cmds.len());
    let mut bytes = 0;
    for _ in cmds {
        let (reply, n) = read_reply(conn, ctx).await?;
        bytes += n;
        replies.push(reply);
    }
    Ok((replies, bytes))
}

/// Sends a batch of allowlisted commands at once, without reading their replies.
pub(super) async fn send_many(conn: &mut Conn, cmds: &[&[&str]]) -> Result<(), NetError> {
    let mut out = Vec::new();
    for c in cmds {
        allowed(c.first().copied().unwrap_or(""))?;
        out.extend_from_slice(&command(c));
    }
    conn.send(&out).await
}

/// Reads the next reply, and the bytes it took.
pub(super) async fn read_reply(
    conn: &mut Conn,
    ctx: &ProbeCtx,
) -> Result<(Value, usize), NetError> {
    let lim = limits(ctx);
    let frame = conn
        .read_frame(ctx.opts.frame_cap + 64, |b| check(b, lim))
        .await?;
    Ok((parse(&frame), frame.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: RespLimits = RespLimits {
        max_bulk: 1024,
        max_items: 16,
    };

    #[test]
    fn simple_values() {
        assert_eq!(check(b"+PONG\r\n", L), Check::Complete(7));
        assert_eq!(parse(b"+PONG\r\n"), Value::Simple("PONG".into()));
        assert_eq!(parse(b":42\r\n"), Value::Int(42));
        assert_eq!(
            parse(b"-NOAUTH Authentication required.\r\n"),
            Value::Error("NOAUTH Authentication required.".into())
        );
    }

    #[test]
    fn bulk_and_arrays() {
        let f = b"*2\r\n$3\r\nfoo\r\n$-1\r\nrest";
        assert_eq!(check(f, L), Check::Complete(f.len() - 4));
        assert_eq!(
            parse(f),
            Value::Array(Some(vec![
                Value::Bulk(Some(b"foo".to_vec())),
                Value::Bulk(None)
            ]))
        );
        assert_eq!(check(b"$5\r\nhel", L), Check::Incomplete);
    }

    #[test]
    fn absurd_lengths_are_refused_before_allocating() {
        assert!(matches!(check(b"$999999999\r\n", L), Check::Invalid(_)));
        assert!(matches!(check(b"*999999999\r\n", L), Check::Invalid(_)));
        assert!(matches!(check(b"$-7\r\n", L), Check::Invalid(_)));
        let deep = "*1\r\n".repeat(20);
        assert!(matches!(check(deep.as_bytes(), L), Check::Invalid(_)));
    }

    #[test]
    fn garbage_is_not_resp() {
        assert!(matches!(
            check(b"HTTP/1.1 400 Bad Request\r\n", L),
            Check::Invalid(_)
        ));
        assert!(matches!(check(b"$abc\r\n", L), Check::Invalid(_)));
        assert!(matches!(check(b"$3\r\nfooXX", L), Check::Invalid(_)));
    }

    #[test]
    fn command_encoding() {
        assert_eq!(
            command(&["INFO", "server"]),
            b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n"
        );
    }
}
