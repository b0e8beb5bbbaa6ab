//! etcd's v3 JSON gateway as leakscope reads it: the allowlisted requests (one version GET and
//! range reads whose body this module builds and checks), the parsers of their answers, and the
//! one function that sends, each request on a fresh connection within a budget.
//!
//! The gateway is etcd's own HTTP face of its gRPC API (served on the client port since 3.3):
//! keys and values travel base64-encoded in JSON, numbers as strings.

use std::sync::Arc;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::driver::http::{self, Request, Response, Status};
use crate::driver::{self, Budget, ProbeCtx, Session};

/// The server's and the cluster's version.
pub const VERSION: &str = "GET /version";

/// A range read: the only request that reaches the key space, with a body [`range_body`]
/// builds.
pub const RANGE: &str = "POST /v3/kv/range";

/// The only requests this module ever sends. `POST` is how the gateway takes every call, reads
/// included; [`RANGE`] is etcd's read of keys (`Range`), and [`is_range_body`] admits only the
/// bodies [`range_body`] builds. Nothing that puts, deletes, compacts, grants leases, changes
/// members, authentication or alarms may appear here (see `only_reads_are_allowlisted`).
pub const ALLOWED_REQUESTS: &[&str] = &[VERSION, RANGE];

/// Body cap of the replies that stay small whatever the server holds.
pub(super) const SMALL_BODY_CAP: usize = 64 * 1024;

/// Most keys asked for in one range page.
pub(super) const PAGE: u64 = 1000;

/// Longest key put in a request (etcd's own limit on a request is 1.5 MiB; real keys are paths).
pub(super) const MAX_KEY: usize = 4096;

/// What one range read asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeReq {
    /// The first key (inclusive).
    pub key: Vec<u8>,
    /// The end of the range (exclusive); `[0]` means every key from `key` on, empty means only
    /// `key` itself.
    pub range_end: Vec<u8>,
    /// Most keys returned (0: the server's default, all).
    pub limit: u64,
    pub keys_only: bool,
    pub count_only: bool,
}

impl RangeReq {
    /// Every key from `from` on.
    pub fn from(from: &[u8], limit: u64, keys_only: bool) -> RangeReq {
        RangeReq {
            key: from.to_vec(),
            range_end: vec![0],
            limit,
            keys_only,
            count_only: false,
        }
    }

    /// The number of keys in the whole key space (no key or value is returned).
    pub fn count_all() -> RangeReq {
        RangeReq {
            key: vec![0],
            range_end: vec![0],
            limit: 0,
            keys_only: false,
            count_only: true,
        }
    }

    /// One key and its value.
    pub fn one(key: &[u8]) -> RangeReq {
        RangeReq {
            key: key.to_vec(),
            range_end: Vec::new(),
            limit: 1,
            keys_only: false,
            count_only: false,
        }
    }

    /// The keys that start with `prefix`, from `from` on (`from` at or after `prefix`).
    pub fn prefixed(prefix: &[u8], from: &[u8], limit: u64) -> RangeReq {
        RangeReq {
            key: from.to_vec(),
            range_end: prefix_end(prefix),
            limit,
            keys_only: false,
            count_only: false,
        }
    }
}

/// The end of the range of keys that start with `prefix` (etcd's `GetPrefixRangeEnd`): the
/// prefix with its last byte below 0xff incremented and what follows dropped; `[0]` (every key)
/// when no byte can be.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The key after `key` in etcd's byte order: where the next page starts.
pub fn next_key(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// The JSON body of a range read. `serializable` lets the member answer from its own copy
/// without a round of consensus: a read that costs the cluster nothing.
pub fn range_body(r: &RangeReq) -> Vec<u8> {
    let mut body = json!({"key": b64(&r.key), "serializable": true});
    if !r.range_end.is_empty() {
        body["range_end"] = Value::String(b64(&r.range_end));
    }
    if r.limit > 0 {
        body["limit"] = Value::String(r.limit.to_string());
    }
    if r.keys_only {
        body["keys_only"] = Value::Bool(true);
    }
    if r.count_only {
        body["count_only"] = Value::Bool(true);
    }
    serde_json::to_vec(&body).expect("JSON value serializes")
}

/// True only for a body [`range_body`] builds: rebuilt from what it names and compared whole,
/// so nothing else (a `put`, a `txn`, a sort on a huge range) can ride along.
pub fn is_range_body(body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    let parse = || -> Option<RangeReq> {
        let key = unb64(v.get("key")?.as_str()?)?;
        let range_end = match v.get("range_end") {
            Some(e) => unb64(e.as_str()?)?,
            None => Vec::new(),
        };
        let limit = match v.get("limit") {
            Some(l) => l.as_str()?.parse().ok()?,
            None => 0,
        };
        let flag = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
        Some(RangeReq {
            key,
            range_end,
            limit,
            keys_only: flag("keys_only"),
            count_only: flag("count_only"),
        })
    };
    let Some(r) = parse() else {
        return false;
    };
    r.key.len() <= MAX_KEY
        && r.range_end.len() <= MAX_KEY + 1
        && serde_json::from_slice::<Value>(&range_body(&r)).ok() == Some(v)
}

/// Why a request gave no usable answer: an HTTP status other than 200 (with etcd's error
/// message), the connection, a reply that is not the JSON asked for, or a spent budget.
pub(super) type Failure = driver::Failure<Status>;

/// Sends one allowlisted request on a fresh connection within `budget` and reads its response
/// (any status), within the budget's bytes: the one function that sends.
pub(super) async fn send(
    ctx: &ProbeCtx,
    budget: &Arc<Budget>,
    request: &str,
    body: Option<&[u8]>,
    body_cap: usize,
) -> Result<Response, Failure> {
    let allowed = match (request, body) {
        (VERSION, None) => true,
        (RANGE, Some(b)) => is_range_body(b),
        _ => false,
    };
    if !allowed || !ALLOWED_REQUESTS.contains(&request) {
        return Err(Failure::Refused(format!(
            "refusing to send non-allowlisted etcd request {request:?}"
        )));
    }
    let (method, path) = request
        .split_once(' ')
        .expect("allowlisted requests have a method");
    let mut s = Session::new(ctx, budget.clone());
    s.connect().await?;
    let authority = ctx.authority();
    let req = Request {
        method,
        path,
        host: &authority,
        basic_auth: None,
    };
    http::exchange_within(&mut s, &req, body, body_cap).await
}

/// [`send`] of a range read; a status other than 200 is a [`Failure::Server`] with etcd's
/// message, a 200 that is not a range answer is [`Failure::Unexpected`].
pub(super) async fn range(
    ctx: &ProbeCtx,
    budget: &Arc<Budget>,
    r: &RangeReq,
    body_cap: usize,
) -> Result<Range, Failure> {
    let resp = send(ctx, budget, RANGE, Some(&range_body(r)), body_cap).await?;
    if resp.status != 200 {
        return Err(Failure::Server(Status {
            code: resp.status,
            reason: error_message(&resp.body),
        }));
    }
    parse_range(&resp.body).ok_or_else(|| Failure::unexpected("not a range answer"))
}

/// What `GET /version` says: the member's version and the cluster's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub server: String,
    pub cluster: Option<String>,
}

/// A version as etcd prints it (`3.4.23`, `3.6.0-alpha.0`); anything else is not taken.
fn plausible_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 32
        && v.starts_with(|c: char| c.is_ascii_digit())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
}

/// Parses the answer to `GET /version` (`{"etcdserver":"3.4.23","etcdcluster":"3.4.0"}`).
pub fn parse_version(body: &[u8]) -> Option<Version> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let server = v.get("etcdserver")?.as_str()?;
    if !plausible_version(server) {
        return None;
    }
    let cluster = v
        .get("etcdcluster")
        .and_then(Value::as_str)
        .filter(|c| plausible_version(c));
    Some(Version {
        server: server.to_string(),
        cluster: cluster.map(str::to_string),
    })
}

/// One key of a range answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: Vec<u8>,
    /// Empty for a keys-only read.
    pub value: Vec<u8>,
}

/// A range answer: the store's revision, the keys (at most the page), the number of keys in
/// the range and whether more follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub revision: u64,
    pub kvs: Vec<Kv>,
    pub count: u64,
    pub more: bool,
}

/// etcd's numbers are JSON strings (int64 in proto3 JSON); tolerate plain numbers too.
fn number(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// Parses a range answer. None unless it carries etcd's response header with a revision
/// (every real answer does, even of an empty range) and well-formed keys.
pub fn parse_range(body: &[u8]) -> Option<Range> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let revision = number(v.get("header")?.get("revision"))?;
    let kvs = match v.get("kvs") {
        None => Vec::new(),
        Some(list) => list
            .as_array()?
            .iter()
            .map(|kv| {
                Some(Kv {
                    key: unb64(kv.get("key")?.as_str()?)?,
                    value: match kv.get("value") {
                        Some(val) => unb64(val.as_str()?)?,
                        None => Vec::new(),
                    },
                })
            })
            .collect::<Option<Vec<_>>>()?,
    };
    Some(Range {
        revision,
        count: number(v.get("count")).unwrap_or(kvs.len() as u64),
        more: v.get("more").and_then(Value::as_bool).unwrap_or(false),
        kvs,
    })
}

/// etcd's error message of a failed call (`{"error":"etcdserver: user name is empty",
/// "code":3}`), shortened; empty when the body is not one.
pub fn error_message(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return String::new();
    };
    let msg = v
        .get("message")
        .or_else(|| v.get("error"))
        .and_then(Value::as_str)
        .unwrap_or("");
    msg.chars().take(160).collect()
}

/// True for the errors etcd's authentication gives a call without a valid token: the
/// user name is empty (no token), the token is invalid or expired, or permission is denied.
pub fn is_auth_error(message: &str) -> bool {
    [
        "etcdserver: user name is empty",
        "etcdserver: invalid auth token",
        "etcdserver: permission denied",
        "etcdserver: user name not found",
    ]
    .iter()
    .any(|m| message.starts_with(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing that writes or reconfigures can be sent: the allowlist holds only the version GET
    /// and the range read, and no body other than a range read passes.
    #[test]
    fn only_reads_are_allowlisted() {
        for r in ALLOWED_REQUESTS {
            let path = r.split_once(' ').unwrap().1;
            for write in [
                "put",
                "deleterange",
                "txn",
                "compaction",
                "lease",
                "auth",
                "member",
                "alarm",
                "defragment",
                "snapshot",
                "watch",
                "moveleader",
                "hash",
                "lock",
                "election",
            ] {
                assert!(!path.to_ascii_lowercase().contains(write), "{r}");
            }
        }
        assert_eq!(ALLOWED_REQUESTS, [VERSION, RANGE]);
        // A put body, a txn, a sort, extra keys: refused.
        for body in [
            br#"{"key":"Zm9v","value":"YmFy"}"#.as_slice(),
            br#"{"key":"Zm9v","serializable":true,"prev_kv":true}"#,
            br#"{"key":"Zm9v","serializable":true,"sort_order":"DESCEND"}"#,
            br#"{"compare":[],"success":[{"request_put":{"key":"Zm9v"}}]}"#,
            br#"{"key":"Zm9v"}"#,
            b"not json",
        ] {
            assert!(!is_range_body(body), "{}", String::from_utf8_lossy(body));
        }
        for r in [
            RangeReq::count_all(),
            RangeReq::one(b"a/b"),
            RangeReq::from(b"\x00", PAGE, true),
            RangeReq::prefixed(b"session:", b"session:x\x00", 10),
        ] {
            assert!(is_range_body(&range_body(&r)), "{r:?}");
        }
    }

    #[tokio::test]
    async fn send_refuses_what_is_not_allowlisted() {
        let server = crate::testkit::FakeServer::start(
            Vec::new(),
            crate::testkit::frames::http_request,
            |_| crate::testkit::Reply::Close,
        )
        .await;
        let ctx = server.ctx();
        let budget = Arc::new(Budget::bytes_only(1 << 20));
        for (req, body) in [
            (
                "POST /v3/kv/put",
                Some(&br#"{"key":"Zm9v","value":"YmFy"}"#[..]),
            ),
            (RANGE, Some(&br#"{"key":"Zm9v","value":"YmFy"}"#[..])),
            (RANGE, None),
            (VERSION, Some(&b"{}"[..])),
        ] {
            assert!(matches!(
                send(&ctx, &budget, req, body, 100).await,
                Err(Failure::Refused(_))
            ));
        }
        assert_eq!(server.connections(), 0, "nothing refused was sent");
    }

    #[test]
    fn prefix_ends_and_next_keys() {
        assert_eq!(prefix_end(b"session:"), b"session;");
        assert_eq!(prefix_end(b"a\xff\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\x00");
        assert_eq!(prefix_end(b""), b"\x00");
        assert_eq!(next_key(b"k"), b"k\x00");
    }

    #[test]
    fn parses_real_answers() {
        let v = parse_version(br#"{"etcdserver":"3.4.23","etcdcluster":"3.4.0"}"#).unwrap();
        assert_eq!(
            (v.server.as_str(), v.cluster.as_deref()),
            ("3.4.23", Some("3.4.0"))
        );
        assert!(parse_version(br#"{"etcdserver":"<script>"}"#).is_none());
        assert!(parse_version(br#"{"version":"3.4.23"}"#).is_none());
        let r = parse_range(
            br#"{"header":{"cluster_id":"1","member_id":"2","revision":"7","raft_term":"2"},
                 "kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}],
                 "more":true,"count":"3"}"#,
        )
        .unwrap();
        assert_eq!(r.revision, 7);
        assert_eq!(r.count, 3);
        assert!(r.more);
        assert_eq!(
            r.kvs,
            [Kv {
                key: b"foo".to_vec(),
                value: b"bar".to_vec()
            }]
        );
        let empty = parse_range(br#"{"header":{"revision":"1"}}"#).unwrap();
        assert_eq!((empty.count, empty.kvs.len()), (0, 0));
        // No header, bad base64, a key that is not a string: not a range answer.
        assert!(parse_range(br#"{"kvs":[]}"#).is_none());
        assert!(parse_range(br#"{"header":{"revision":"1"},"kvs":[{"key":"%%%"}]}"#).is_none());
        assert!(parse_range(br#"{"header":{"revision":"1"},"kvs":[{"key":1}]}"#).is_none());
    }

    #[test]
    fn auth_errors() {
        let body = br#"{"error":"etcdserver: user name is empty","message":"etcdserver: user name is empty","code":3}"#;
        assert!(is_auth_error(&error_message(body)));
        assert!(!is_auth_error(&error_message(
            br#"{"message":"etcdserver: request timed out"}"#
        )));
        assert_eq!(error_message(b"<html>"), "");
    }
}
