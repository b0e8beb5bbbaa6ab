//! Memcached's text protocol: its replies, checked before they are parsed, the allowlist of
//! commands, and the one function that sends.

use crate::driver::preview;
use crate::net::{Check, Conn, NetError};

/// The only command lines this module ever sends (`get` takes keys after it). All are reads:
/// `lru_crawler metadump all` lists key metadata without touching items; `get` returns values
/// (it refreshes an item's LRU position, as any client read does, and changes no data).
pub const ALLOWED_COMMANDS: &[&str] = &["version", "stats", "lru_crawler metadump all", "get"];

pub(super) const MAX_LINE: usize = 1024;

/// Keys per `get`.
pub(super) const GET_BATCH: usize = 50;

pub(super) fn check_line(buf: &[u8]) -> Check {
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(i) => Check::Complete(i + 2),
        None if buf.len() > MAX_LINE => Check::Invalid("line too long".into()),
        None => Check::Incomplete,
    }
}

/// A `stats` reply ends with `END\r\n`; errors are one line.
pub(super) fn check_stats(buf: &[u8]) -> Check {
    if buf.starts_with(b"STAT ") {
        if let Some(i) = buf.windows(7).position(|w| w == b"\r\nEND\r\n") {
            return Check::Complete(i + 7);
        }
        return Check::Incomplete;
    }
    check_line(buf)
}

pub(super) fn check_line_lf(buf: &[u8]) -> Check {
    match buf.iter().position(|&b| b == b'\n') {
        Some(i) => Check::Complete(i + 1),
        None if buf.len() > MAX_LINE => Check::Invalid("line too long".into()),
        None => Check::Incomplete,
    }
}

/// How memcached refuses a command to a client that has not authenticated (ASCII auth, SASL):
/// `CLIENT_ERROR …` or `ERROR`.
pub(super) fn is_refusal(reply: &[u8]) -> bool {
    reply.starts_with(b"CLIENT_ERROR") || reply.starts_with(b"ERROR")
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

/// One metadump line: `key=session%3Aab exp=-1 la=… cas=… fetch=no cls=10 size=669`.
pub fn parse_metadump_line(line: &str) -> Option<(String, u64)> {
    let mut key = None;
    let mut size = 0;
    for field in line.split(' ') {
        if let Some(k) = field.strip_prefix("key=") {
            key = Some(crate::inventory::keys::percent_decode(k));
        } else if let Some(s) = field.strip_prefix("size=") {
            size = s.parse().unwrap_or(0);
        }
    }
    key.map(|k| (k, size))
}

/// Checker for a `get` reply: `VALUE <key> <flags> <bytes>\r\n<data>\r\n` … `END\r\n`. Each
/// announced length is checked against `cap` before its data is awaited.
pub(super) fn check_values(buf: &[u8], cap: usize) -> Check {
    let mut pos = 0;
    loop {
        let Some(eol) = buf[pos..].windows(2).position(|w| w == b"\r\n") else {
            return if buf.len() - pos > MAX_LINE {
                Check::Invalid("line too long".into())
            } else {
                Check::Incomplete
            };
        };
        let line = &buf[pos..pos + eol];
        if line == b"END" {
            return Check::Complete(pos + eol + 2);
        }
        let Some(rest) = line.strip_prefix(b"VALUE ") else {
            return Check::Invalid(format!("unexpected reply {}", preview(line)));
        };
        let n: Option<usize> = std::str::from_utf8(rest)
            .ok()
            .and_then(|r| r.split(' ').nth(2))
            .and_then(|b| b.parse().ok());
        let Some(n) = n else {
            return Check::Invalid("bad VALUE line".into());
        };
        if n > cap {
            return Check::TooLarge(cap);
        }
        let end = pos + eol + 2 + n + 2;
        if buf.len() < end {
            return Check::Incomplete;
        }
        pos = end;
    }
}

/// Values of a checked `get` reply, in order.
pub(super) fn parse_values(buf: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(eol) = buf[pos..].windows(2).position(|w| w == b"\r\n") {
        let line = &buf[pos..pos + eol];
        let Some(rest) = line.strip_prefix(b"VALUE ") else {
            break;
        };
        let text = String::from_utf8_lossy(rest);
        let mut parts = text.split(' ');
        let key = parts.next().unwrap_or("").to_string();
        let n: usize = parts.nth(1).and_then(|b| b.parse().ok()).unwrap_or(0);
        let start = pos + eol + 2;
        if start + n > buf.len() {
            break;
        }
        out.push((key, buf[start..start + n].to_vec()));
        pos = start + n + 2;
    }
    out
}

/// Whether memcached would take `key` as one key: 1 to 250 bytes, no space or control
/// character. Keys come from the server's own key dump; a hostile one could list a "key" with
/// a line break and a command in it.
pub(super) fn is_key(key: &str) -> bool {
    (1..=250).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic() || b >= 0x80)
}

/// The one check of every line sent: an allowlisted command, or `get` with valid keys.
fn allowed_line(line: &str) -> Result<(), NetError> {
    let verb = match line.strip_prefix("get ") {
        Some(keys) if keys.split(' ').all(is_key) => "get",
        Some(_) => "get with a key memcached would not take",
        None => line,
    };
    if !ALLOWED_COMMANDS.contains(&verb) {
        return Err(NetError::Invalid(format!(
            "refusing to send non-allowlisted memcached command {verb}"
        )));
    }
    Ok(())
}

/// The one function that sends: checks every line against the allowlist, then sends them
/// together (the probe's `version` and `stats` make one 16-byte write, see
/// [`crate::driver::LINE_PROBE_MIN`]).
pub(super) async fn send_lines(conn: &mut Conn, lines: &[&str]) -> Result<(), NetError> {
    let mut out = String::new();
    for line in lines {
        allowed_line(line)?;
        out.push_str(line);
        out.push_str("\r\n");
    }
    conn.send(out.as_bytes()).await
}

/// Sends one allowlisted line.
pub(super) async fn send_allowed(conn: &mut Conn, line: &str) -> Result<(), NetError> {
    send_lines(conn, &[line]).await
}

pub(super) async fn call(
    conn: &mut Conn,
    cmd: &str,
    check: fn(&[u8]) -> Check,
    cap: usize,
) -> Result<Vec<u8>, NetError> {
    send_allowed(conn, cmd).await?;
    conn.read_frame(cap, check).await
}

pub(super) async fn call_get(
    conn: &mut Conn,
    keys: &[&str],
    cap: usize,
) -> Result<Vec<u8>, NetError> {
    // A key memcached would not take cannot be stored there: it is simply absent.
    let keys: Vec<&str> = keys.iter().copied().filter(|k| is_key(k)).collect();
    if keys.is_empty() {
        return Ok(b"END\r\n".to_vec());
    }
    send_allowed(conn, &format!("get {}", keys.join(" "))).await?;
    // Each value is at most `cap`; the whole reply at most one cap per key plus headers.
    let total = cap
        .saturating_mul(keys.len())
        .saturating_add(keys.len() * 300 + 16);
    conn.read_frame(total, |b| check_values(b, cap)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::fixture;

    /// `version` then `stats` of Debian's memcached 1.6.18, captured from the lab.
    const REAL: &[u8] = fixture!("memcached/version_stats.txt");

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

    #[test]
    fn only_refusals_of_stats_mean_authentication_required() {
        assert!(is_refusal(b"CLIENT_ERROR unauthenticated\r\n"));
        assert!(is_refusal(b"ERROR\r\n"));
        // A honeypot that says `OK` to everything proves nothing either way.
        assert!(!is_refusal(b"OK\r\n"));
        assert!(!is_refusal(b"STORED\r\n"));
    }

    #[test]
    fn metadump_lines() {
        let l = "key=session%3A76b2d9d0 exp=-1 la=1795871308 cas=1 fetch=no cls=10 size=669";
        assert_eq!(
            parse_metadump_line(l),
            Some(("session:76b2d9d0".into(), 669))
        );
        assert_eq!(parse_metadump_line("END"), None);
    }

    #[test]
    fn get_replies_are_checked_before_reading_values() {
        let r = b"VALUE a 0 2\r\nhi\r\nVALUE b 0 3\r\nyou\r\nEND\r\n";
        assert_eq!(check_values(r, 10), Check::Complete(r.len()));
        assert_eq!(
            parse_values(r),
            vec![("a".into(), b"hi".to_vec()), ("b".into(), b"you".to_vec())]
        );
        assert_eq!(
            check_values(b"VALUE a 0 999999999\r\n", 1024),
            Check::TooLarge(1024)
        );
        assert_eq!(check_values(b"VALUE a 0 5\r\nhel", 1024), Check::Incomplete);
        assert!(matches!(
            check_values(b"SERVER_ERROR out of memory\r\n", 1024),
            Check::Invalid(_)
        ));
    }

    #[test]
    fn a_key_cannot_smuggle_a_command() {
        assert!(allowed_line("get session:1 user:2").is_ok());
        assert!(allowed_line("version").is_ok());
        for line in [
            "get a\r\nflush_all",
            "get a\nflush_all",
            "get a\rflush_all",
            "get ",
            "get a  b",
            "get \u{0}",
            "flush_all",
            "version\r\nflush_all",
            "stats\r\n",
        ] {
            assert!(allowed_line(line).is_err(), "{line:?}");
        }
        assert!(is_key("ключ:1"));
        assert!(!is_key(&"k".repeat(251)));
        assert!(!is_key("a b"));
        assert!(!is_key("a\tb"));
    }

    #[test]
    fn only_reads_are_allowlisted() {
        for c in [
            "set",
            "delete",
            "flush_all",
            "incr",
            "touch",
            "lru_crawler enable",
            "slabs reassign",
        ] {
            assert!(!ALLOWED_COMMANDS.contains(&c), "{c}");
        }
    }
}
