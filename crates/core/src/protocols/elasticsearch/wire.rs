//! Elasticsearch's REST API as leakscope reads it: the allowlisted GETs (the index name the
//! only variable part, percent-encoded and checked), the one search body each search may carry,
//! and the one function that sends, each request on a fresh connection within a budget.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::driver::http::{self, Request, Response, Status};
pub(super) use crate::driver::Credential;
use crate::driver::{self, Budget, Finding, ProbeCtx, Session, Spent};
use crate::net::NetError;

pub(super) const ROOT: &str = "GET /";

pub(super) const CAT_INDICES: &str =
    "GET /_cat/indices?format=json&h=index,docs.count,store.size&bytes=b";

pub(super) const CAT_COUNT: &str = "GET /_cat/count?format=json";

pub(super) const CLUSTER_HEALTH: &str = "GET /_cluster/health";

pub(super) const NODES_HTTP: &str =
    "GET /_nodes/http?filter_path=nodes.*.http.publish_address,nodes.*.name";

/// Every index with the figures of `_cat/indices`; `expand_wildcards=all` includes hidden and
/// closed indices, `bytes=b` prints sizes as plain numbers.
pub const CAT_INDICES_ALL: &str = "GET /_cat/indices?format=json&expand_wildcards=all\
    &h=index,docs.count,pri.store.size,store.size,status,health&bytes=b";

/// `index.hidden` of every index that sets it (others answer empty settings).
pub const HIDDEN_SETTINGS: &str =
    "GET /_all/_settings/index.hidden?expand_wildcards=all&flat_settings=true";

/// Field mappings of one index.
pub const INDEX_MAPPING: &str = "GET /{index}/_mapping";

/// Exact number of top-level documents of one index.
pub const INDEX_COUNT: &str = "GET /{index}/_count";

/// A search whose body is [`super::inventory::sample_body`]; `filter_path` keeps only the documents' `_source`.
pub const INDEX_SAMPLE: &str = "GET /{index}/_search?filter_path=hits.hits._source";

/// A search with [`cardinality_body`]; `filter_path` keeps the reply to the aggregation, the
/// timeout flag and the shard tally.
pub const INDEX_CARDINALITY: &str =
    "GET /{index}/_search?filter_path=aggregations,timed_out,_shards";

/// The only requests this module ever sends: read-only GETs, nothing that writes, closes,
/// refreshes or reconfigures. `{index}` stands for one concrete index name, percent-encoded by
/// [`index_path`]; it is the only variable part of any request.
pub const ALLOWED_REQUESTS: &[&str] = &[
    ROOT,
    CAT_INDICES,
    CAT_COUNT,
    CLUSTER_HEALTH,
    NODES_HTTP,
    CAT_INDICES_ALL,
    HIDDEN_SETTINGS,
    INDEX_MAPPING,
    INDEX_COUNT,
    INDEX_SAMPLE,
    INDEX_CARDINALITY,
];

/// The allowlisted requests that may carry a body: search, whose body is a query (a GET
/// cannot be routed to a write whatever its body says; the body is built by this module).
/// [`INDEX_CARDINALITY`] takes only the one body [`is_cardinality_body`]
/// accepts: no documents, one `cardinality` aggregation.
pub(super) const BODY_ALLOWED: &[&str] = &[INDEX_SAMPLE, INDEX_CARDINALITY];

/// The placeholder for the index name in an allowlisted request.
pub(super) const INDEX_VAR: &str = "{index}";

/// Body cap for the replies that stay small whatever the cluster holds.
pub(super) const SMALL_BODY_CAP: usize = 256 * 1024;

/// True for a name Elasticsearch accepts as one concrete index: anything else (`_all`, `*`,
/// `a,b`, `..`, a path) would change what a request addresses, so it is never put in a path.
pub fn is_concrete_index_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.starts_with(['_', '-', '+'])
        && !name.chars().any(|c| {
            c.is_control()
                || c.is_whitespace()
                || matches!(
                    c,
                    '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ',' | '#' | ':'
                )
        })
}

/// The path of an allowlisted request with `{index}` replaced by the percent-encoded `index`.
/// None when the request has a placeholder and no valid name, or a name and no placeholder.
pub fn index_path(request: &str, index: Option<&str>) -> Option<String> {
    let path = request.strip_prefix("GET ")?;
    match (path.contains(INDEX_VAR), index) {
        (false, None) => Some(path.to_string()),
        (true, Some(name)) if is_concrete_index_name(name) => {
            let mut enc = String::with_capacity(name.len());
            for b in name.bytes() {
                if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
                    enc.push(b as char);
                } else {
                    enc.push_str(&format!("%{b:02X}"));
                }
            }
            Some(path.replacen(INDEX_VAR, &enc, 1))
        }
        _ => None,
    }
}

/// HyperLogLog++ precision: the largest Elasticsearch and OpenSearch accept (about 320 KB of
/// sketch per shard on the server); below it counts are close to exact.
pub const PRECISION_THRESHOLD: u64 = 40_000;

/// Longest field or nested path put in a body.
pub(super) const MAX_FIELD: usize = 1024;

/// What is aggregated: the doc-values field, and the `nested` object it lives under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub field: String,
    pub nested: Option<String>,
}

/// The search body of a distinct count of `t`: no documents, one `cardinality` aggregation
/// named `p` (inside a `nested` one with the sub-aggregation `c` for a nested field), the
/// shards' `timeout`, and `track_total_hits: false` unless `old` (before 7.0, which rejects it).
pub fn cardinality_body(t: &Target, timeout: Duration, old: bool) -> Vec<u8> {
    let card = json!({"cardinality": {
        "field": t.field,
        "precision_threshold": PRECISION_THRESHOLD
    }});
    let agg = match &t.nested {
        None => card,
        Some(path) => json!({"nested": {"path": path}, "aggs": {"c": card}}),
    };
    let mut body = json!({
        "size": 0,
        "timeout": format!("{}ms", timeout.as_millis().max(100)),
        "aggs": {"p": agg}
    });
    if !old {
        body["track_total_hits"] = Value::Bool(false);
    }
    serde_json::to_vec(&body).expect("JSON value serializes")
}

/// True only for a body [`cardinality_body`] builds: the one body [`INDEX_CARDINALITY`] may
/// carry. Rebuilt from the fields it names and compared whole, so no other key, query,
/// aggregation or document size can ride along.
pub fn is_cardinality_body(body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    let parse = || -> Option<(Target, Duration, bool)> {
        let ms: u64 = v
            .get("timeout")?
            .as_str()?
            .strip_suffix("ms")?
            .parse()
            .ok()?;
        let p = v.get("aggs")?.get("p")?;
        let (card, nested) = match p.get("nested") {
            Some(n) => (
                p.get("aggs")?.get("c")?,
                Some(n.get("path")?.as_str()?.to_string()),
            ),
            None => (p, None),
        };
        let field = card.get("cardinality")?.get("field")?.as_str()?.to_string();
        let old = v.get("track_total_hits").is_none();
        Some((Target { field, nested }, Duration::from_millis(ms), old))
    };
    let Some((t, timeout, old)) = parse() else {
        return false;
    };
    let sane = |s: &str| !s.is_empty() && s.len() <= MAX_FIELD && !s.contains(['*', ',']);
    sane(&t.field)
        && t.nested.as_deref().is_none_or(sane)
        && serde_json::from_slice::<Value>(&cardinality_body(&t, timeout, old)).ok() == Some(v)
}

/// Sends one allowlisted request on a fresh connection within `budget` and reads its
/// response: the one function that sends.
pub(super) async fn send(
    ctx: &ProbeCtx,
    budget: &Arc<Budget>,
    request: &str,
    index: Option<&str>,
    body: Option<&[u8]>,
    auth: Option<&Credential>,
    body_cap: usize,
) -> Result<Response, Failure> {
    let allowed = ALLOWED_REQUESTS.contains(&request)
        && match body {
            None => request != INDEX_CARDINALITY,
            Some(b) if request == INDEX_CARDINALITY => is_cardinality_body(b),
            Some(_) => BODY_ALLOWED.contains(&request),
        };
    let Some(path) = index_path(request, index).filter(|_| allowed) else {
        return Err(Failure::Refused(format!(
            "refusing to send non-allowlisted Elasticsearch request {request:?} (index {index:?}, {} body)",
            if body.is_some() { "with" } else { "no" }
        )));
    };
    let mut s = Session::new(ctx, budget.clone());
    s.connect().await?;
    let authority = ctx.authority();
    let req = Request {
        method: "GET",
        path: &path,
        host: &authority,
        basic_auth: auth.map(|c| (c.user, c.password)),
    };
    http::exchange(&mut s, &req, body, body_cap).await
}

/// [`send`] for the fixed requests of the probe (each read within the probe's read timeout).
pub(super) async fn get(
    ctx: &ProbeCtx,
    request: &str,
    auth: Option<&Credential>,
    body_cap: usize,
) -> Result<Response, Failure> {
    let budget = Arc::new(Budget::bytes_only(usize::MAX));
    send(ctx, &budget, request, None, None, auth, body_cap).await
}

/// Why a request gave no usable answer: an HTTP status other than 200 (with the server's
/// error type and reason), the connection, a reply that is not the JSON asked for, or a spent
/// budget.
pub(super) type Failure = driver::Failure<Status>;

/// 200, but not the JSON that was asked for.
pub(super) fn unparsed() -> Failure {
    Failure::unexpected("unexpected reply")
}

/// `type: reason` of an Elasticsearch error body, shortened.
pub(super) fn error_reason(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return String::new();
    };
    let e = v.get("error");
    let ty = e.and_then(|e| e.get("type")).and_then(Value::as_str);
    let reason = e.and_then(|e| e.get("reason")).and_then(Value::as_str);
    let s = match (ty, reason) {
        (Some(t), Some(r)) => format!("{t}: {r}"),
        (Some(t), None) => t.to_string(),
        _ => e.and_then(Value::as_str).unwrap_or("").to_string(),
    };
    s.chars().take(160).collect()
}

/// The cluster as one inventory (or one distinct count) reads it: the finding's credential,
/// reads that may wait longer than the probe's, and one budget for every request.
pub(super) struct Cluster<'a> {
    ctx: ProbeCtx,
    auth: Option<&'a Credential>,
    budget: Arc<Budget>,
    pub(super) read_timeout: Duration,
}

impl<'a> Cluster<'a> {
    /// Requests on `ctx` whose reads may each take `min_read` (at least the probe's), with the
    /// finding's credential, within `budget`.
    pub(super) fn new(
        ctx: &ProbeCtx,
        finding: &'a Finding,
        min_read: Duration,
        budget: Budget,
    ) -> Cluster<'a> {
        let ctx = ctx.with_read_timeout_at_least(min_read);
        Cluster {
            read_timeout: ctx.opts.limits.read_timeout,
            ctx,
            auth: finding.credential.as_ref(),
            budget: Arc::new(budget),
        }
    }

    pub(super) fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Sends an allowlisted request within the remaining bytes and time.
    pub(super) async fn get(
        &self,
        request: &str,
        index: Option<&str>,
        body: Option<&[u8]>,
        cap: usize,
    ) -> Result<Response, Failure> {
        let remaining = self.budget.bytes_left();
        if remaining == 0 {
            return Err(Failure::Budget(Spent::Bytes));
        }
        let cap_here = cap.min(remaining);
        match send(
            &self.ctx,
            &self.budget,
            request,
            index,
            body,
            self.auth,
            cap_here,
        )
        .await
        {
            Ok(r) if r.status == 200 => Ok(r),
            Ok(r) => Err(Failure::Server(Status {
                code: r.status,
                reason: error_reason(&r.body),
            })),
            Err(Failure::Net(NetError::TooLarge { .. })) if cap_here < cap => {
                Err(Failure::Budget(Spent::Bytes))
            }
            Err(e) => Err(e),
        }
    }
}

/// `_cat` prints numbers as strings (`"2"`), or null when it cannot tell.
pub(super) fn cat_number(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::elasticsearch::inventory::sample_body;
    use crate::protocols::elasticsearch::probe::request_path;
    use crate::protocols::elasticsearch::probe::tests::ctx_for;

    #[test]
    fn allowlist_is_read_only_gets() {
        for r in ALLOWED_REQUESTS {
            assert!(r.starts_with("GET /"), "{r}");
            assert_eq!(r.matches(' ').count(), 1, "{r}");
            // The index name, if any, is the whole first path segment and appears once.
            if r.contains(INDEX_VAR) {
                assert!(r.starts_with("GET /{index}/_"), "{r}");
                assert_eq!(r.matches(INDEX_VAR).count(), 1, "{r}");
            }
            // No endpoint that changes state even when routed as GET (scroll contexts, PIT,
            // cache clears, refresh/flush), and no method override.
            for bad in [
                "scroll",
                "_pit",
                "point_in_time",
                "_cache",
                "_refresh",
                "_flush",
                "_forcemerge",
                "_close",
                "_open",
                "_update",
                "_delete",
                "_bulk",
                "_doc",
                "method",
            ] {
                assert!(!r.contains(bad), "{r} contains {bad}");
            }
        }
        for r in BODY_ALLOWED {
            assert!(
                ALLOWED_REQUESTS.contains(r) && r.contains("/_search?"),
                "{r}"
            );
        }
        assert_eq!(request_path(CAT_INDICES), "/_cat/indices");
    }

    /// Structural proof that nothing bypasses [`send`]: outside the tests, the module builds
    /// exactly one `Request` (in `send`, with method GET), opens connections only there, and no
    /// other HTTP method appears in any string.
    #[test]
    fn every_request_goes_through_send() {
        for (file, src) in [
            ("mod.rs", include_str!("mod.rs")),
            ("wire.rs", include_str!("wire.rs")),
            ("probe.rs", include_str!("probe.rs")),
            ("inventory.rs", include_str!("inventory.rs")),
            ("count.rs", include_str!("count.rs")),
        ] {
            let code = src.split("#[cfg(test)]").next().unwrap();
            // `method: "X",` lines of struct literals (the PROTOCOL's `method` is prose).
            let methods: Vec<&str> = code
                .lines()
                .map(str::trim)
                .filter(|l| {
                    l.strip_prefix("method: \"")
                        .and_then(|m| m.strip_suffix("\","))
                        .is_some_and(|m| m.chars().all(|c| c.is_ascii_uppercase()))
                })
                .collect();
            let requests = code.matches("Request {").count();
            let connects = code.matches(".connect()").count();
            let exchanges = code.matches("http::exchange").count();
            if file == "wire.rs" {
                assert_eq!(methods, ["method: \"GET\","], "{file}");
                assert_eq!((requests, connects, exchanges), (1, 1, 1), "{file}");
            } else {
                assert!(methods.is_empty(), "{file}: {methods:?}");
                assert_eq!((requests, connects, exchanges), (0, 0, 0), "{file}");
            }
            for verb in ["POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"] {
                assert!(!code.contains(&format!("\"{verb} ")), "{file}: {verb}");
                assert!(!code.contains(&format!("\"{verb}\"")), "{file}: {verb}");
            }
        }
    }

    #[test]
    fn index_names_are_encoded_and_checked() {
        let p = |r, i| index_path(r, i);
        assert_eq!(
            p(INDEX_COUNT, Some("customers")).as_deref(),
            Some("/customers/_count")
        );
        assert_eq!(
            p(INDEX_MAPPING, Some("logs+2024.01")).as_deref(),
            Some("/logs%2B2024.01/_mapping")
        );
        assert_eq!(
            p(INDEX_MAPPING, Some(".kibana_1")).as_deref(),
            Some("/.kibana_1/_mapping")
        );
        assert_eq!(
            p(INDEX_MAPPING, Some("kundendäten")).as_deref(),
            Some("/kundend%C3%A4ten/_mapping")
        );
        // Names that would address something other than one index are never sent.
        for bad in [
            "",
            ".",
            "..",
            "_all",
            "*",
            "cust*",
            "a,b",
            "a/b",
            "../_search",
            "x?y",
            "a b",
            "-x",
            "+x",
            "a#b",
            "a:b",
            "a\u{0}b",
        ] {
            assert!(p(INDEX_COUNT, Some(bad)).is_none(), "{bad:?}");
        }
        // A placeholder needs a name, and a name needs a placeholder.
        assert!(p(INDEX_COUNT, None).is_none());
        assert!(p(ROOT, Some("customers")).is_none());
        assert_eq!(p(ROOT, None).as_deref(), Some("/"));
    }

    #[tokio::test]
    async fn non_allowlisted_requests_are_refused_before_connecting() {
        let ctx = ctx_for("127.0.0.1:9".parse().unwrap(), false);
        for bad in [
            "DELETE /customers",
            "POST /_search",
            "PUT /x",
            "GET /customers/_search",
            "GET /{index}/_search/scroll",
        ] {
            let err = get(&ctx, bad, None, 1024).await.unwrap_err();
            assert!(
                matches!(err, Failure::Refused(ref m) if m.contains("refusing")),
                "{err:?}"
            );
        }
        // A refusal comes before any connection: not a byte of the budget is spent.
        let budget = Arc::new(Budget::bytes_only(1 << 20));
        let refused = |r: Result<Response, Failure>| matches!(r, Err(Failure::Refused(ref m)) if m.contains("refusing"));
        // Allowlisted templates with a bad name, a missing name, or a body where none belongs.
        let count = INDEX_COUNT;
        let search = INDEX_SAMPLE;
        assert!(refused(
            send(&ctx, &budget, count, Some("_all"), None, None, 1024).await
        ));
        assert!(refused(
            send(&ctx, &budget, count, None, None, None, 1024).await
        ));
        assert!(refused(
            send(&ctx, &budget, count, Some("x"), Some(b"{}"), None, 1024).await
        ));
        assert!(refused(
            send(&ctx, &budget, ROOT, None, Some(b"{}"), None, 1024).await
        ));
        assert!(refused(
            send(
                &ctx,
                &budget,
                "POST /{index}/_search",
                Some("x"),
                Some(b"{}"),
                None,
                1024
            )
            .await
        ));
        assert_eq!(budget.used(), 0);
        // The allowlisted ones get as far as connecting (nothing listens on port 9).
        assert!(!refused(
            send(&ctx, &budget, search, Some("x"), Some(b"{}"), None, 1024).await
        ));
        // The distinct-count search goes out only with a cardinality body (the body checks
        // themselves are in `subjects`): not bare, not with a query or a sample's body.
        let card = INDEX_CARDINALITY;
        let target = Target {
            field: "user_id.keyword".into(),
            nested: None,
        };
        let good = cardinality_body(&target, std::time::Duration::from_secs(8), false);
        for body in [
            None,
            Some(&b"{}"[..]),
            Some(&br#"{"size":10,"query":{"match_all":{}}}"#[..]),
            Some(&sample_body(5, true, std::time::Duration::from_secs(1))[..]),
        ] {
            assert!(refused(
                send(&ctx, &budget, card, Some("x"), body, None, 1024).await
            ));
        }
        assert!(refused(
            send(&ctx, &budget, card, Some("_all"), Some(&good), None, 1024).await
        ));
        assert!(!refused(
            send(&ctx, &budget, card, Some("x"), Some(&good), None, 1024).await
        ));
    }
}
