//! ZooKeeper's client protocol as leakscope speaks it: the session handshake, the three reads
//! it sends (`getChildren2`, `getData`, and the `srvr` four-letter word), their parsers, and
//! the one function that sends requests.
//!
//! Hand-written: the protocol is a handful of fixed records in ZooKeeper's own serialization
//! (jute: big-endian integers, length-prefixed strings and buffers, every message behind a
//! 4-byte length), no maintained Rust client reads through a bounded, budgeted connection,
//! and every length a peer sends must be checked before anything is allocated.

use crate::driver::{self, Session};
use crate::net::Check;

/// `getData`: a znode's bytes and its stat.
pub(super) const OP_GET_DATA: i32 = 4;

/// `getChildren2`: a znode's children's names and its own stat.
pub(super) const OP_GET_CHILDREN2: i32 = 12;

/// The only operations this module ever sends on a session: reads. Nothing that creates,
/// deletes, sets data or ACLs, syncs, reconfigures or sets watches may appear here (see
/// `only_reads_are_allowlisted`); every request carries `watch = false`.
pub const ALLOWED_OPS: &[i32] = &[OP_GET_DATA, OP_GET_CHILDREN2];

/// ZooKeeper's own top-level znode (quotas, the dynamic configuration): not data of the
/// service.
pub const SYSTEM: &str = "zookeeper";

/// The four-letter word that says the server's version, whitelisted by default since 3.5.
pub const SRVR: &[u8] = b"srvr";

/// Largest reply frame read: ZooKeeper's own default `jute.maxbuffer` is 1 MiB (minus a
/// little); a server configured past it is cut here.
pub(super) const MAX_FRAME: usize = 1 << 20;

/// Largest answer to `srvr`.
pub(super) const MAX_SRVR: usize = 4096;

/// Longest znode path put in a request.
pub const MAX_PATH: usize = 4096;

/// The session timeout asked for (the server clamps it to 2..20 ticks); the session ends with
/// the connection anyway.
const SESSION_TIMEOUT_MS: i32 = 10_000;

/// Error codes of a reply header.
pub(super) const ERR_NO_NODE: i32 = -101;
pub(super) const ERR_NO_AUTH: i32 = -102;

/// The `ConnectRequest`: protocol version 0, no zxid seen, no session to resume, no password,
/// read-only allowed (a server cut off from its quorum still answers reads).
pub fn connect_request() -> Vec<u8> {
    let mut body = Vec::with_capacity(45);
    body.extend_from_slice(&0i32.to_be_bytes()); // protocolVersion
    body.extend_from_slice(&0i64.to_be_bytes()); // lastZxidSeen
    body.extend_from_slice(&SESSION_TIMEOUT_MS.to_be_bytes());
    body.extend_from_slice(&0i64.to_be_bytes()); // sessionId
    body.extend_from_slice(&16i32.to_be_bytes()); // passwd
    body.extend_from_slice(&[0; 16]);
    body.push(1); // readOnly
    frame(body)
}

fn frame(body: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend(body);
    out
}

/// A read request: `xid`, `op` (an [`ALLOWED_OPS`] entry), the path, no watch. None for an
/// operation that is not allowlisted or a path that is not one.
pub fn read_request(xid: i32, op: i32, path: &str) -> Option<Vec<u8>> {
    if !ALLOWED_OPS.contains(&op) || !is_path(path) {
        return None;
    }
    let mut body = Vec::with_capacity(path.len() + 13);
    body.extend_from_slice(&xid.to_be_bytes());
    body.extend_from_slice(&op.to_be_bytes());
    body.extend_from_slice(&(path.len() as i32).to_be_bytes());
    body.extend_from_slice(path.as_bytes());
    body.push(0); // watch = false
    Some(frame(body))
}

/// A znode path ZooKeeper accepts: absolute, no empty, `.` or `..` segment, no trailing
/// slash but the root's, no NUL or control character, at most [`MAX_PATH`] bytes.
pub fn is_path(path: &str) -> bool {
    path.len() <= MAX_PATH
        && path.starts_with('/')
        && (path == "/"
            || path[1..]
                .split('/')
                .all(|seg| !seg.is_empty() && seg != "." && seg != ".."))
        && !path.chars().any(char::is_control)
}

/// `parent/child` for a child name from the server, None when the name is not one segment.
pub fn child_path(parent: &str, child: &str) -> Option<String> {
    let path = if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    };
    (!child.contains('/') && is_path(&path)).then_some(path)
}

/// Frame checker: one length-prefixed message, its length checked against `cap` before its
/// bytes are awaited.
pub fn check_frame(buf: &[u8], cap: usize) -> Check {
    let Some(head) = buf.get(..4) else {
        return Check::Incomplete;
    };
    let len = i32::from_be_bytes(head.try_into().expect("4 bytes"));
    let Ok(len) = usize::try_from(len) else {
        return Check::Invalid(format!("negative frame length {len}"));
    };
    if len > cap.saturating_sub(4) {
        return Check::TooLarge(cap);
    }
    if buf.len() >= 4 + len {
        Check::Complete(4 + len)
    } else {
        Check::Incomplete
    }
}

/// A cursor over a jute record; every read is bounds-checked.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }

    /// A buffer or string: length, then bytes; -1 is null (an empty one here).
    fn bytes(&mut self) -> Option<&'a [u8]> {
        match self.i32()? {
            -1 => Some(&[]),
            n => self.take(usize::try_from(n).ok()?),
        }
    }

    fn rest(&self) -> usize {
        self.buf.len() - self.pos
    }
}

/// What the handshake answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    /// The negotiated session timeout; 0 means the server refused the session.
    pub timeout_ms: i32,
    pub session_id: i64,
    pub read_only: bool,
}

/// Parses a `ConnectResponse` frame (length included). None unless it is exactly one: the
/// protocol version, timeout, session id, a 16-byte password, and the optional read-only flag.
pub fn parse_connect_response(frame: &[u8]) -> Option<Connected> {
    let mut r = Reader::new(frame.get(4..)?);
    let _version = r.i32()?;
    let timeout_ms = r.i32()?;
    let session_id = r.i64()?;
    let passwd = r.bytes()?;
    if passwd.len() != 16 || timeout_ms < 0 {
        return None;
    }
    let read_only = match r.rest() {
        0 => false,
        1 => r.take(1)?[0] != 0,
        _ => return None,
    };
    Some(Connected {
        timeout_ms,
        session_id,
        read_only,
    })
}

/// A znode's stat, as much of it as leakscope uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stat {
    pub mzxid: i64,
    pub version: i32,
    pub data_length: i32,
    pub num_children: i32,
}

fn stat(r: &mut Reader<'_>) -> Option<Stat> {
    let _czxid = r.i64()?;
    let mzxid = r.i64()?;
    let _ctime = r.i64()?;
    let _mtime = r.i64()?;
    let version = r.i32()?;
    let _cversion = r.i32()?;
    let _aversion = r.i32()?;
    let _ephemeral_owner = r.i64()?;
    let data_length = r.i32()?;
    let num_children = r.i32()?;
    let _pzxid = r.i64()?;
    Some(Stat {
        mzxid,
        version,
        data_length,
        num_children,
    })
}

/// One reply: its xid and either the server's error code or the body after the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply<'a> {
    pub xid: i32,
    pub zxid: i64,
    pub result: Result<&'a [u8], i32>,
}

/// Parses a reply frame (length included): the header, then the body on success.
pub fn parse_reply(frame: &[u8]) -> Option<Reply<'_>> {
    let body = frame.get(4..)?;
    let mut r = Reader::new(body);
    let xid = r.i32()?;
    let zxid = r.i64()?;
    let err = r.i32()?;
    Some(Reply {
        xid,
        zxid,
        result: if err == 0 { Ok(&body[16..]) } else { Err(err) },
    })
}

/// Most children kept of one znode (a reply is at most [`MAX_FRAME`] anyway).
pub(super) const MAX_CHILDREN: usize = 200_000;

/// Parses a `getChildren2` body: the children's names and the znode's stat. A count larger
/// than the bytes could hold, a name that is not UTF-8, or bytes left over: None.
pub fn parse_children(body: &[u8]) -> Option<(Vec<String>, Stat)> {
    let mut r = Reader::new(body);
    let n = usize::try_from(r.i32()?).ok()?;
    if n > MAX_CHILDREN || n > r.rest() / 4 {
        return None;
    }
    let mut names = Vec::with_capacity(n);
    for _ in 0..n {
        names.push(String::from_utf8(r.bytes()?.to_vec()).ok()?);
    }
    let st = stat(&mut r)?;
    (r.rest() == 0).then_some((names, st))
}

/// Parses a `getData` body: the znode's bytes and its stat.
pub fn parse_data(body: &[u8]) -> Option<(Vec<u8>, Stat)> {
    let mut r = Reader::new(body);
    let data = r.bytes()?.to_vec();
    let st = stat(&mut r)?;
    (r.rest() == 0).then_some((data, st))
}

/// The version line of a `srvr` answer (`Zookeeper version: 3.8.0-…, built on …`): the
/// version number alone.
pub fn parse_srvr_version(text: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(text).ok()?;
    let line = text.lines().next()?.strip_prefix("Zookeeper version: ")?;
    let v: String = line
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(32)
        .collect();
    let v = v.split('-').next().unwrap_or("").to_string();
    (!v.is_empty() && v.starts_with(|c: char| c.is_ascii_digit())).then_some(v)
}

/// A session's failure: ZooKeeper's error codes arrive as the reply's `Err` of a request.
pub(super) type Failure = driver::Failure<i32>;

/// Sends `requests` (path per request, the op of each) pipelined on the session and reads
/// their replies in order: the one function that sends requests. `xid` numbers them. Each
/// reply is the server's error code or the body, which `parse` turns into a value.
pub(super) async fn pipeline<T>(
    s: &mut Session,
    xid: &mut i32,
    requests: &[(i32, &str)],
    parse: impl Fn(i32, &[u8]) -> Option<T>,
) -> Result<Vec<Result<T, i32>>, Failure> {
    let mut bytes = Vec::new();
    let first = *xid + 1;
    for &(op, path) in requests {
        *xid += 1;
        match read_request(*xid, op, path) {
            Some(req) => bytes.extend(req),
            None => {
                return Err(Failure::Refused(format!(
                    "refusing to send ZooKeeper op {op} on {path:?}"
                )))
            }
        }
    }
    s.send(&bytes).await?;
    let mut out = Vec::with_capacity(requests.len());
    for (i, &(op, _)) in requests.iter().enumerate() {
        let frame = s
            .read_frame_within(MAX_FRAME, |b| check_frame(b, MAX_FRAME))
            .await?;
        let reply =
            parse_reply(&frame).ok_or_else(|| Failure::unexpected("not a ZooKeeper reply"))?;
        if reply.xid != first + i as i32 {
            return Err(Failure::unexpected(format!(
                "reply {} to request {}",
                reply.xid,
                first + i as i32
            )));
        }
        out.push(match reply.result {
            Ok(body) => Ok(parse(op, body).ok_or_else(|| Failure::unexpected("malformed reply"))?),
            Err(code) => Err(code),
        });
    }
    Ok(out)
}

/// Opens a session on `s`'s connection: the handshake, and its answer.
pub(super) async fn handshake(s: &mut Session) -> Result<Connected, Failure> {
    s.send(&connect_request()).await?;
    let frame = s.read_frame(256, |b| check_frame(b, 256)).await?;
    parse_connect_response(&frame).ok_or_else(|| Failure::unexpected("not a ConnectResponse"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_are_allowlisted() {
        // create 1, delete 2, setData 5, setACL 7, sync 9, multi 14, create2 15, reconfig 16,
        // createContainer 19, createTTL 21, setWatches 101, addWatch 106, closeSession -11.
        for write in [1, 2, 5, 7, 9, 14, 15, 16, 19, 21, 101, 106, -11] {
            assert!(!ALLOWED_OPS.contains(&write));
            assert!(read_request(1, write, "/").is_none());
        }
        assert_eq!(ALLOWED_OPS, [OP_GET_DATA, OP_GET_CHILDREN2]);
        let req = read_request(7, OP_GET_CHILDREN2, "/a").unwrap();
        assert_eq!(
            req,
            [0, 0, 0, 15, 0, 0, 0, 7, 0, 0, 0, 12, 0, 0, 0, 2, b'/', b'a', 0]
        );
        assert_eq!(*req.last().unwrap(), 0, "no watch is ever set");
    }

    #[test]
    fn paths() {
        for ok in ["/", "/a", "/a/b", "/zookeeper/quota", "/session:x"] {
            assert!(is_path(ok), "{ok}");
        }
        for bad in ["", "a", "/a/", "//a", "/a/../b", "/.", "/a\0b", "/a\nb"] {
            assert!(!is_path(bad), "{bad:?}");
        }
        assert_eq!(child_path("/", "a").as_deref(), Some("/a"));
        assert_eq!(child_path("/a", "b").as_deref(), Some("/a/b"));
        assert_eq!(child_path("/a", "b/c"), None);
        assert_eq!(child_path("/a", ".."), None);
    }

    #[test]
    fn frames_are_checked_before_they_are_read() {
        assert_eq!(check_frame(&[0, 0], 100), Check::Incomplete);
        assert_eq!(check_frame(&[0, 0, 0, 2, 1], 100), Check::Incomplete);
        assert_eq!(check_frame(&[0, 0, 0, 2, 1, 2, 3], 100), Check::Complete(6));
        assert_eq!(
            check_frame(&[0x7f, 0xff, 0xff, 0xff], 100),
            Check::TooLarge(100)
        );
        assert!(matches!(
            check_frame(&[0xff, 0xff, 0xff, 0xff], 100),
            Check::Invalid(_)
        ));
    }

    #[test]
    fn parses_replies_and_refuses_lies() {
        let mut connect = vec![0, 0, 0, 37, 0, 0, 0, 0, 0, 0, 0x4e, 0x20];
        connect.extend_from_slice(&7i64.to_be_bytes());
        connect.extend_from_slice(&16i32.to_be_bytes());
        connect.extend_from_slice(&[9; 16]);
        connect.push(0);
        let c = parse_connect_response(&connect).unwrap();
        assert_eq!(
            (c.timeout_ms, c.session_id, c.read_only),
            (20_000, 7, false)
        );
        assert!(parse_connect_response(&connect[..connect.len() - 2]).is_none());

        let mut children = 2i32.to_be_bytes().to_vec();
        for name in ["a", "zookeeper"] {
            children.extend_from_slice(&(name.len() as i32).to_be_bytes());
            children.extend_from_slice(name.as_bytes());
        }
        children.extend_from_slice(&[0; 68]);
        let (names, _) = parse_children(&children).unwrap();
        assert_eq!(names, ["a", "zookeeper"]);
        // A count of a billion children in a few bytes, a name longer than the reply.
        let mut lie = 1_000_000_000i32.to_be_bytes().to_vec();
        lie.extend_from_slice(&[0; 80]);
        assert!(parse_children(&lie).is_none());
        let mut long = 1i32.to_be_bytes().to_vec();
        long.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(parse_children(&long).is_none());

        let mut data = 3i32.to_be_bytes().to_vec();
        data.extend_from_slice(b"abc");
        data.extend_from_slice(&[0; 68]);
        assert_eq!(parse_data(&data).unwrap().0, b"abc");
        let mut null = (-1i32).to_be_bytes().to_vec();
        null.extend_from_slice(&[0; 68]);
        assert_eq!(parse_data(&null).unwrap().0, b"");

        let mut reply = vec![0, 0, 0, 16];
        reply.extend_from_slice(&5i32.to_be_bytes());
        reply.extend_from_slice(&9i64.to_be_bytes());
        reply.extend_from_slice(&ERR_NO_AUTH.to_be_bytes());
        let r = parse_reply(&reply).unwrap();
        assert_eq!((r.xid, r.zxid, r.result), (5, 9, Err(ERR_NO_AUTH)));
    }

    #[test]
    fn srvr_version() {
        let text = b"Zookeeper version: 3.8.0-${mvngit.commit.id}, built on 2024-12-29 17:54 UTC\nMode: standalone\n";
        assert_eq!(parse_srvr_version(text).as_deref(), Some("3.8.0"));
        assert_eq!(parse_srvr_version(b"<html>"), None);
    }
}
