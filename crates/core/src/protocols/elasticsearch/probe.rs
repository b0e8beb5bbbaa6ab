//! Identifying Elasticsearch and OpenSearch and judging access: the shared `GET /` (the root
//! document, or the security layer's 401), then `GET /_cat/indices` without credentials, and
//! with `--try-defaults` the documented defaults; cluster peers are reported, never contacted.

use serde_json::Value;

use super::wire::{
    cat_number, get, Failure, CAT_COUNT, CAT_INDICES, CLUSTER_HEALTH, NODES_HTTP, ROOT,
    SMALL_BODY_CAP,
};
use crate::driver::http::Response;
use crate::driver::{Credential, Finding, Outcome, ProbeCtx};
use crate::model::Access;
use crate::net::NetError;

/// The registry id.
pub(super) const ID: &str = "elasticsearch";

/// The documented defaults tried with `--try-defaults`.
pub(super) const DEFAULTS: &[Credential] = &[
    Credential {
        user: "elastic",
        password: "changeme",
        why: "Elasticsearch before 6.8 / X-Pack default",
    },
    Credential {
        user: "admin",
        password: "admin",
        why: "OpenSearch security demo configuration",
    },
];

/// Most peers reported from one `_nodes/http` reply.
pub(super) const MAX_PEERS: usize = 1024;

/// What the root document says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootDoc {
    pub product: &'static str,
    pub version: String,
    pub cluster_name: Option<String>,
}

/// A version string as Elasticsearch and OpenSearch print it (`8.17.3`, `2.19.6`,
/// `9.0.0-SNAPSHOT`); anything else is not taken from a peer.
pub(super) fn plausible_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.starts_with(|c: char| c.is_ascii_digit())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
}

/// Parses the JSON answer to `GET /`. None when it is not an Elasticsearch/OpenSearch root
/// document.
pub fn parse_root_doc(body: &[u8]) -> Option<RootDoc> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object()?;
    let ver = obj.get("version")?.as_object()?;
    let number = ver.get("number")?.as_str()?;
    if !plausible_version(number) {
        return None;
    }
    let tagline = obj.get("tagline").and_then(Value::as_str).unwrap_or("");
    let distribution = ver
        .get("distribution")
        .and_then(Value::as_str)
        .unwrap_or("");
    let cluster_name = obj.get("cluster_name").and_then(Value::as_str);
    let has_cluster =
        cluster_name.is_some() && obj.get("cluster_uuid").is_some_and(Value::is_string);
    let opensearch =
        distribution.eq_ignore_ascii_case("opensearch") || tagline.contains("OpenSearch");
    if !(tagline == "You Know, for Search" || opensearch || has_cluster) {
        return None;
    }
    Some(RootDoc {
        product: if opensearch {
            "OpenSearch"
        } else {
            "Elasticsearch"
        },
        version: number.to_string(),
        cluster_name: cluster_name.map(|s| s.chars().take(128).collect()),
    })
}

/// The security layer's refusal, read from a 401 or 403.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub product: &'static str,
    /// For evidence: the realm and the server's reason.
    pub detail: String,
}

/// `realm="X"` from a `WWW-Authenticate` value.
pub(super) fn realm(challenge: &str) -> Option<&str> {
    let lower = challenge.to_ascii_lowercase();
    let at = lower.find("realm=\"")? + "realm=\"".len();
    let rest = challenge.get(at..)?;
    rest.get(..rest.find('"')?)
}

pub(super) fn json_str<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

/// Recognises the refusal of Elasticsearch security (X-Pack, and Shield before it) or of the
/// OpenSearch security plugin. None for any other 401/403, e.g. a reverse proxy's.
pub fn parse_refusal(resp: &Response) -> Option<Refusal> {
    if resp.status != 401 && resp.status != 403 {
        return None;
    }
    let realms: Vec<&str> = resp
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("www-authenticate"))
        .filter_map(|(_, v)| realm(v))
        .collect();
    let body: Option<Value> = serde_json::from_slice(&resp.body).ok();
    let short = |s: &str| s.chars().take(160).collect::<String>();
    let with_realm = |reason: Option<&str>, realm: Option<&str>| match (realm, reason) {
        (Some(r), Some(why)) => format!("security realm \"{r}\": {}", short(why)),
        (Some(r), None) => format!("security realm \"{r}\""),
        (None, Some(why)) => short(why),
        (None, None) => "security layer".to_string(),
    };

    if let Some(r) = realms
        .iter()
        .find(|r| r.eq_ignore_ascii_case("OpenSearch Security"))
    {
        return Some(Refusal {
            product: "OpenSearch",
            detail: with_realm(None, Some(r)),
        });
    }
    if let Some(b) = &body {
        let kind = json_str(b, &["error", "type"]).or_else(|| {
            b.get("error")?
                .get("root_cause")?
                .as_array()?
                .first()?
                .get("type")?
                .as_str()
        });
        if kind == Some("security_exception") {
            let reason = json_str(b, &["error", "reason"]);
            // The OpenSearch security plugin words its 403s "no permissions for [...]".
            let product = if reason.is_some_and(|r| r.starts_with("no permissions for")) {
                "OpenSearch"
            } else {
                "Elasticsearch"
            };
            return Some(Refusal {
                product,
                detail: with_realm(reason, realms.first().copied()),
            });
        }
        // Shield (Elasticsearch 1.x/2.x): {"error":"AuthenticationException[...]","status":401}
        if let Some(e) = json_str(b, &["error"]) {
            let shield = realms.iter().any(|r| r.eq_ignore_ascii_case("shield"));
            if shield && e.starts_with("AuthenticationException") {
                return Some(Refusal {
                    product: "Elasticsearch",
                    detail: with_realm(Some(e), Some("shield")),
                });
            }
        }
    }
    None
}

/// One row of `_cat/indices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexRow {
    pub name: String,
    /// None for a closed or red index.
    pub docs: Option<u64>,
    pub bytes: Option<u64>,
}

/// Parses the `_cat/indices?format=json` list. None unless it is a JSON array of rows that each
/// name an index.
pub fn parse_cat_indices(body: &[u8]) -> Option<Vec<IndexRow>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.as_array()?
        .iter()
        .map(|row| {
            Some(IndexRow {
                name: row.get("index")?.as_str()?.to_string(),
                docs: cat_number(row.get("docs.count")),
                bytes: cat_number(row.get("store.size")),
            })
        })
        .collect()
}

/// Document count from `_cat/count?format=json` (`[{"epoch":…,"count":"3"}]`).
pub fn parse_cat_count(body: &[u8]) -> Option<u64> {
    let v: Value = serde_json::from_slice(body).ok()?;
    cat_number(v.as_array()?.first()?.get("count"))
}

/// Cluster status from `_cluster/health` (green, yellow or red).
pub fn parse_cluster_health(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get("cluster_name")?.as_str()?;
    let status = v.get("status")?.as_str()?;
    matches!(status, "green" | "yellow" | "red").then(|| status.to_string())
}

/// `ip:port` of a `publish_address`: `10.0.0.5:9200`, `es-2/10.0.0.5:9200`,
/// `[::1]:9200`, or Elasticsearch 1.x's `inet[/10.0.0.5:9200]`.
pub fn normalise_publish_address(addr: &str) -> Option<String> {
    let a = addr.trim();
    let a = match a.strip_prefix("inet[") {
        Some(inner) => inner.strip_suffix(']')?,
        None => a,
    };
    let a = a.rsplit_once('/').map_or(a, |(_, ip)| ip);
    (!a.is_empty() && a.len() <= 128).then(|| a.to_string())
}

/// HTTP publish addresses of the nodes in a `_nodes/http` reply.
pub fn parse_nodes_http(body: &[u8]) -> Vec<String> {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let Some(nodes) = v.get("nodes").and_then(Value::as_object) else {
        return Vec::new();
    };
    nodes
        .values()
        .filter_map(|n| json_str(n, &["http", "publish_address"]))
        .filter_map(normalise_publish_address)
        .take(MAX_PEERS)
        .collect()
}

/// The outcome of trying to read the index list.
#[derive(Debug)]
pub(super) enum Read {
    /// A read succeeded; evidence says which.
    Done(String),
    /// The security layer refused (401 or 403).
    Refused(u16, String),
    /// Neither: an error, an unexpected status or a body that is not what was asked for.
    Inconclusive(String),
}

/// How a request was made, for evidence.
pub(super) fn as_who(auth: Option<&Credential>) -> String {
    match auth {
        None => "without credentials".to_string(),
        Some(c) => format!("with the default credential {}:{}", c.user, c.password),
    }
}

pub(super) fn request_path(request: &str) -> &str {
    request
        .strip_prefix("GET ")
        .unwrap_or(request)
        .split('?')
        .next()
        .unwrap_or(request)
}

/// A body over the cap: `TooLarge` while streaming, or the `Invalid` that the HTTP frame checker
/// turns a too-large `Content-Length` into (see `http::check_response`).
pub(super) fn is_over_cap(e: &Failure) -> bool {
    matches!(e, Failure::Net(NetError::TooLarge { .. }))
}

/// Reads the index list; when it is too large for the body cap, a document count or the
/// cluster health instead (still real reads of the cluster's metadata).
pub(super) async fn read_indices(ctx: &ProbeCtx, auth: Option<&Credential>) -> Read {
    let who = as_who(auth);
    let cap = ctx.opts.http_body_cap;
    let too_large = match get(ctx, CAT_INDICES, auth, cap).await {
        Ok(r) if r.status == 200 => {
            return match parse_cat_indices(&r.body) {
                Some(rows) => Read::Done(format!(
                    "GET /_cat/indices answered 200 {who} ({} indices)",
                    rows.len()
                )),
                None => Read::Inconclusive(format!(
                    "GET /_cat/indices answered 200 {who} but not with an index list: {:?}",
                    crate::driver::preview(&r.body)
                )),
            };
        }
        Ok(r) if r.status == 401 || r.status == 403 => {
            let why = parse_refusal(&r).map_or_else(String::new, |x| format!(" ({})", x.detail));
            return Read::Refused(
                r.status,
                format!("GET /_cat/indices answered {} {who}{why}", r.status),
            );
        }
        Ok(r) => {
            return Read::Inconclusive(format!(
                "GET /_cat/indices answered HTTP {} {who}",
                r.status
            ))
        }
        Err(e) if is_over_cap(&e) => format!(
            "GET /_cat/indices answered more than {cap} bytes {who} (too many indices to list)"
        ),
        Err(e) => return Read::Inconclusive(format!("GET /_cat/indices {who} failed: {e}")),
    };
    for request in [CAT_COUNT, CLUSTER_HEALTH] {
        let path = request_path(request);
        match get(ctx, request, auth, SMALL_BODY_CAP).await {
            Ok(r) if r.status == 200 => {
                let what = if request == CAT_COUNT {
                    parse_cat_count(&r.body).map(|n| format!("{n} documents"))
                } else {
                    parse_cluster_health(&r.body).map(|s| format!("cluster status {s}"))
                };
                if let Some(what) = what {
                    return Read::Done(format!(
                        "{too_large}; GET {path} answered 200 {who} ({what})"
                    ));
                }
            }
            Ok(r) if r.status == 401 || r.status == 403 => {
                return Read::Refused(
                    r.status,
                    format!("{too_large}; GET {path} answered {} {who}", r.status),
                )
            }
            _ => {}
        }
    }
    Read::Inconclusive(format!(
        "{too_large}; neither /_cat/count nor /_cluster/health gave a usable answer"
    ))
}

/// Reports the nodes of the cluster that are outside the scope. They are never contacted.
pub(super) async fn report_peers(ctx: &ProbeCtx, auth: Option<&Credential>, f: &mut Finding) {
    let Ok(r) = get(ctx, NODES_HTTP, auth, SMALL_BODY_CAP).await else {
        return;
    };
    if r.status != 200 {
        return;
    }
    let peers = parse_nodes_http(&r.body);
    let total = peers.len();
    f.out_of_scope_peers = ctx.out_of_scope(peers);
    if !f.out_of_scope_peers.is_empty() {
        f.evidence.push(format!(
            "GET /_nodes/http named {total} node(s); {} outside the scope, not contacted",
            f.out_of_scope_peers.len()
        ));
    }
}

/// Default credentials, most likely first for the product seen.
pub(super) fn credential_order(product: Option<&str>) -> Vec<&'static Credential> {
    let mut creds: Vec<&'static Credential> = DEFAULTS.iter().collect();
    if product == Some("OpenSearch") {
        creds.reverse();
    }
    creds
}

/// Tries the documented defaults on a service that answered 401. True when one of them read
/// the index list.
pub(super) async fn try_defaults(ctx: &ProbeCtx, f: &mut Finding) -> bool {
    let mut tried = Vec::new();
    for cred in credential_order(f.product.as_deref()) {
        if !ctx.begin_auth_attempt().await {
            break;
        }
        tried.push(format!("{}:{}", cred.user, cred.password));
        let root = match get(ctx, ROOT, Some(cred), ctx.opts.http_body_cap).await {
            Ok(r) if r.status == 200 => r,
            _ => continue,
        };
        let Some(doc) = parse_root_doc(&root.body) else {
            continue;
        };
        match read_indices(ctx, Some(cred)).await {
            Read::Done(evidence) => {
                f.product = Some(doc.product.to_string());
                f.access = Access::DefaultCredentials;
                f.credential = Some(*cred);
                f.evidence.push(format!(
                    "GET / {} ({}) answered 200 with the {} {} root document",
                    as_who(Some(cred)),
                    cred.why,
                    doc.product,
                    doc.version
                ));
                f.version = Some(doc.version);
                f.evidence.push(evidence);
                report_peers(ctx, Some(cred), f).await;
                return true;
            }
            Read::Refused(_, e) | Read::Inconclusive(e) => f.evidence.push(format!(
                "{}:{} was accepted by GET / but the index list was not read: {e}",
                cred.user, cred.password
            )),
        }
    }
    if !tried.is_empty() {
        f.evidence.push(format!(
            "default credentials tried without a successful read: {}",
            tried.join(", ")
        ));
    }
    false
}

/// Verdict from an anonymous read of the index list; returns whether a 401 invites defaults.
pub(super) async fn anonymous_read(ctx: &ProbeCtx, f: &mut Finding) -> bool {
    match read_indices(ctx, None).await {
        Read::Done(evidence) => {
            f.access = Access::Open;
            f.evidence.push(evidence);
            report_peers(ctx, None, f).await;
            false
        }
        Read::Refused(status, evidence) => {
            f.access = Access::AuthRequired;
            f.evidence.push(evidence);
            status == 401
        }
        Read::Inconclusive(evidence) => {
            f.evidence.push(evidence);
            false
        }
    }
}

pub(super) fn not_me(root: &Response) -> Outcome {
    Outcome::NotMe(root.seen())
}

/// The protocol's probe: is this its protocol, and can it be read without credentials?
pub(super) async fn probe(ctx: &ProbeCtx, root: &Response) -> Outcome {
    let mut f = Finding::new(ID);
    let elastic_header = root
        .header("x-elastic-product")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("Elasticsearch"));
    let doc = (root.status == 200)
        .then(|| parse_root_doc(&root.body))
        .flatten();
    let refusal = parse_refusal(root);

    let invites_defaults = if let Some(doc) = doc {
        let cluster = doc
            .cluster_name
            .as_deref()
            .map_or_else(String::new, |c| format!(", cluster \"{c}\""));
        f.evidence.push(format!(
            "GET / answered 200 with the {} {} root document{cluster}",
            doc.product, doc.version
        ));
        f.product = Some(doc.product.to_string());
        f.version = Some(doc.version);
        anonymous_read(ctx, &mut f).await
    } else if let Some(r) = refusal {
        f.product = Some(r.product.to_string());
        f.access = Access::AuthRequired;
        f.evidence
            .push(format!("GET / answered {} ({})", root.status, r.detail));
        if root.status == 401 {
            true
        } else {
            // A 403 is an authenticated (anonymous) user without the cluster privilege GET /
            // needs; it may still be allowed to list indices.
            anonymous_read(ctx, &mut f).await
        }
    } else if elastic_header {
        f.product = Some("Elasticsearch".into());
        f.evidence.push(format!(
            "GET / answered HTTP {} with X-elastic-product: Elasticsearch",
            root.status
        ));
        if root.status == 401 {
            f.access = Access::AuthRequired;
            true
        } else {
            anonymous_read(ctx, &mut f).await
        }
    } else {
        return not_me(root);
    };

    if invites_defaults {
        try_defaults(ctx, &mut f).await;
    }
    Outcome::Found(f)
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::sync::Arc;

    use super::*;
    use crate::driver::http;
    use crate::driver::{DirectConnector, ProbeOptions, Seen};
    use crate::scope::{ScopeBuilder, TargetSpec};
    use crate::testkit::{fixture, frames, FakeServer, Reply};

    /// Captured from the lab's OpenSearch 2.19.6 (`lab/opensearch/run.sh`, no security plugin)
    /// with two indices (`customers`, 1 doc; `devices`, 2 docs): the raw bytes answering this
    /// probe's own requests, recorded by a socket client sending the same request head.
    const OS_ROOT: &[u8] = fixture!("elasticsearch/opensearch_root.http");

    const OS_CAT_INDICES: &[u8] = fixture!("elasticsearch/opensearch_cat_indices.http");

    const OS_CAT_COUNT: &[u8] = fixture!("elasticsearch/opensearch_cat_count.http");

    const OS_HEALTH: &[u8] = fixture!("elasticsearch/opensearch_cluster_health.http");

    const OS_NODES: &[u8] = fixture!("elasticsearch/opensearch_nodes_http.http");

    /// CONSTRUCTED, not captured (no Elasticsearch available here): an Elasticsearch 8.17 root
    /// document in the documented layout (`GET /` reference page: `build_flavor`, no
    /// `distribution`, tagline), with the `X-elastic-product` header Elasticsearch sends since
    /// 7.14. Names, uuid and hash are invented.
    const ES8_ROOT: &[u8] = fixture!("elasticsearch/es8_root.http");

    /// CONSTRUCTED, not captured: Elasticsearch 8 with security answering `GET /` without
    /// credentials, byte layout taken from a published 8.17 reply (`security_exception`,
    /// "missing authentication credentials for REST request [/]", three challenges).
    const ES8_401: &[u8] = fixture!("elasticsearch/es8_401.http");

    /// CONSTRUCTED, not captured: the OpenSearch security plugin's 401 (text/plain
    /// `Unauthorized`, `WWW-Authenticate: Basic realm="OpenSearch Security"`).
    const OS_SECURITY_401: &[u8] = fixture!("elasticsearch/opensearch_security_401.http");

    fn resp(raw: &[u8]) -> Response {
        http::parse_response(raw, 1 << 20).expect("fixture is HTTP")
    }

    #[test]
    fn real_opensearch_root_document() {
        let r = resp(OS_ROOT);
        assert_eq!(r.status, 200);
        let doc = parse_root_doc(&r.body).unwrap();
        assert_eq!(doc.product, "OpenSearch");
        assert_eq!(doc.version, "2.19.6");
        assert_eq!(doc.cluster_name.as_deref(), Some("leakscope-lab"));
        assert!(parse_refusal(&r).is_none());
    }

    #[test]
    fn elasticsearch_8_root_document() {
        let r = resp(ES8_ROOT);
        assert_eq!(r.header("x-elastic-product"), Some("Elasticsearch"));
        let doc = parse_root_doc(&r.body).unwrap();
        assert_eq!(
            (doc.product, doc.version.as_str()),
            ("Elasticsearch", "8.17.3")
        );
        // Elasticsearch 1.x: tagline, no cluster_uuid.
        let old = br#"{"status":200,"name":"n","cluster_name":"c","version":{"number":"1.7.5"},"tagline":"You Know, for Search"}"#;
        assert_eq!(parse_root_doc(old).unwrap().version, "1.7.5");
    }

    #[test]
    fn real_opensearch_reads() {
        let rows = parse_cat_indices(&resp(OS_CAT_INDICES).body).unwrap();
        let mut names: Vec<_> = rows.iter().map(|r| r.name.as_str()).collect();
        names.sort();
        assert_eq!(names, ["customers", "devices"]);
        let devices = rows.iter().find(|r| r.name == "devices").unwrap();
        assert_eq!(devices.docs, Some(2));
        assert!(devices.bytes.unwrap() > 0);
        assert_eq!(parse_cat_indices(b"[]"), Some(vec![]));
        assert_eq!(parse_cat_count(&resp(OS_CAT_COUNT).body), Some(3));
        assert_eq!(
            parse_cluster_health(&resp(OS_HEALTH).body).as_deref(),
            Some("green")
        );
        assert_eq!(parse_nodes_http(&resp(OS_NODES).body), ["127.0.20.1:9200"]);
    }

    #[test]
    fn publish_address_forms() {
        let n = |s| normalise_publish_address(s);
        assert_eq!(n("10.0.0.5:9200").as_deref(), Some("10.0.0.5:9200"));
        assert_eq!(
            n("es-2.internal/10.0.0.5:9200").as_deref(),
            Some("10.0.0.5:9200")
        );
        assert_eq!(n("inet[/10.0.0.5:9200]").as_deref(), Some("10.0.0.5:9200"));
        assert_eq!(n("[::1]:9200").as_deref(), Some("[::1]:9200"));
        assert_eq!(n(""), None);
    }

    #[test]
    fn elasticsearch_security_refusal() {
        let r = resp(ES8_401);
        assert_eq!(r.status, 401);
        let x = parse_refusal(&r).unwrap();
        assert_eq!(x.product, "Elasticsearch");
        assert_eq!(
            x.detail,
            "security realm \"security\": missing authentication credentials for REST request [/]"
        );
        // The 6.x–8.x form of the challenge (no comma) and a 403 for the anonymous user.
        let older = Response {
            status: 401,
            headers: vec![(
                "WWW-Authenticate".into(),
                "Basic realm=\"security\" charset=\"UTF-8\"".into(),
            )],
            body: br#"{"error":{"type":"security_exception","reason":"x"},"status":401}"#.to_vec(),
        };
        let x = parse_refusal(&older).unwrap();
        assert_eq!(
            (x.product, x.detail.as_str()),
            ("Elasticsearch", "security realm \"security\": x")
        );
        let forbidden = br#"{"error":{"root_cause":[{"type":"security_exception","reason":"action [cluster:monitor/main] is unauthorized for user [_anonymous]"}],"type":"security_exception","reason":"action [cluster:monitor/main] is unauthorized for user [_anonymous]"},"status":403}"#;
        let r403 = Response {
            status: 403,
            headers: vec![],
            body: forbidden.to_vec(),
        };
        assert!(parse_refusal(&r403).unwrap().detail.contains("_anonymous"));
    }

    #[test]
    fn opensearch_security_refusal() {
        let x = parse_refusal(&resp(OS_SECURITY_401)).unwrap();
        assert_eq!(x.product, "OpenSearch");
        assert_eq!(x.detail, "security realm \"OpenSearch Security\"");
    }

    #[test]
    fn other_401s_are_not_elasticsearch() {
        let proxy = b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"Restricted\"\r\ncontent-length: 12\r\n\r\nUnauthorized";
        assert!(parse_refusal(&resp(proxy)).is_none());
        // Kibana's own 401.
        let kibana = b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 75\r\n\r\n{\"statusCode\":401,\"error\":\"Unauthorized\",\"message\":\"Authentication required\"}";
        assert!(parse_refusal(&resp(kibana)).is_none());
    }

    #[test]
    fn other_protocols_and_garbage_are_not_root_documents() {
        let couchdb = br#"{"couchdb":"Welcome","version":"3.3.3","git_sha":"40afbcfc7","uuid":"x","features":[],"vendor":{"name":"The Apache Software Foundation"}}"#;
        let bodies: &[&[u8]] = &[
            couchdb,
            b"Ok.\n",
            b"-ERR unknown command\r\n",
            b"<html><body>It works!</body></html>",
            br#"{"version":{"number":"<script>"},"tagline":"You Know, for Search"}"#,
            br#"{"version":{"number":"8.1.0"}}"#,
            br#"{"version":"8.1.0","cluster_name":"a","cluster_uuid":"b"}"#,
            b"[]",
            b"",
        ];
        for b in bodies {
            assert!(
                parse_root_doc(b).is_none(),
                "{:?}",
                String::from_utf8_lossy(b)
            );
        }
        // Deterministic pseudo-random garbage never parses nor panics.
        let mut x: u32 = 0x1234_5678;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            assert!(parse_root_doc(&bytes).is_none());
            assert!(parse_refusal(&Response {
                status: 401,
                headers: vec![],
                body: bytes.clone()
            })
            .is_none());
            let _ = parse_nodes_http(&bytes);
        }
        // An index list needs index names: a root document echoed back is not one.
        assert!(parse_cat_indices(&resp(OS_ROOT).body).is_none());
        assert!(parse_cat_indices(br#"[{"foo":"bar"}]"#).is_none());
    }

    /// Answers each connection from `route(request head)`, then closes it.
    async fn scripted(route: fn(&str) -> Vec<u8>) -> FakeServer {
        FakeServer::start(Vec::new(), frames::http_request, move |m| {
            Reply::SendAndClose(route(&m.text()))
        })
        .await
    }

    pub(in crate::protocols::elasticsearch) fn ctx_for(
        addr: SocketAddr,
        try_defaults: bool,
    ) -> ProbeCtx {
        let scope = ScopeBuilder::new(vec![TargetSpec::parse(&addr.ip().to_string()).unwrap()])
            .build_resolved(&HashMap::new())
            .unwrap();
        let opts = ProbeOptions {
            try_defaults,
            auth_interval: std::time::Duration::from_millis(1),
            ..ProbeOptions::default()
        };
        ProbeCtx::new(
            addr,
            None,
            false,
            Arc::new(opts),
            Arc::new(scope),
            Arc::new(DirectConnector),
        )
    }

    async fn run(addr: SocketAddr, try_defaults: bool) -> Finding {
        let ctx = ctx_for(addr, try_defaults);
        let conn = ctx.connect().await.unwrap();
        crate::identify::identify(&ctx, conn).await.finding
    }

    fn path_of(head: &str) -> &str {
        head.split(' ').nth(1).unwrap_or("")
    }

    fn with_peers(head: &str) -> Vec<u8> {
        match path_of(head) {
            "/" => OS_ROOT.to_vec(),
            p if p.starts_with("/_cat/indices") => OS_CAT_INDICES.to_vec(),
            p if p.starts_with("/_nodes/http") => {
                let body = br#"{"nodes":{"a":{"name":"t1","http":{"publish_address":"127.0.0.1:9200"}},"b":{"name":"t2","http":{"publish_address":"es-2/10.9.9.9:9200"}}}}"#;
                let mut r = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                r.extend_from_slice(body);
                r
            }
            _ => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_vec(),
        }
    }

    #[tokio::test]
    async fn open_cluster_with_out_of_scope_peer() {
        let f = run(scripted(with_peers).await.addr(), false).await;
        assert_eq!(f.protocol, "elasticsearch");
        assert_eq!(f.access, Access::Open);
        assert_eq!(f.product.as_deref(), Some("OpenSearch"));
        assert_eq!(f.version.as_deref(), Some("2.19.6"));
        assert!(f.evidence.contains(
            &"GET /_cat/indices answered 200 without credentials (2 indices)".to_string()
        ));
        assert_eq!(f.out_of_scope_peers, ["10.9.9.9:9200"]);
    }

    fn honeypot(_head: &str) -> Vec<u8> {
        ES8_ROOT.to_vec()
    }

    #[tokio::test]
    async fn honeypot_repeating_the_root_document_is_not_open() {
        let f = run(scripted(honeypot).await.addr(), false).await;
        assert_eq!(f.protocol, "elasticsearch");
        assert_eq!(f.access, Access::Unknown, "{f:?}");
    }

    fn huge_index_list(head: &str) -> Vec<u8> {
        match path_of(head) {
            "/" => ES8_ROOT.to_vec(),
            p if p.starts_with("/_cat/indices") => {
                b"HTTP/1.1 200 OK\r\ncontent-length: 999999999999\r\n\r\n[".to_vec()
            }
            p if p.starts_with("/_cat/count") => OS_CAT_COUNT.to_vec(),
            _ => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_vec(),
        }
    }

    #[tokio::test]
    async fn index_list_over_the_cap_falls_back_to_a_count() {
        let f = run(scripted(huge_index_list).await.addr(), false).await;
        assert_eq!(f.access, Access::Open, "{f:?}");
        assert_eq!(f.product.as_deref(), Some("Elasticsearch"));
        assert!(
            f.evidence
                .iter()
                .any(|e| e
                    .contains("GET /_cat/count answered 200 without credentials (3 documents)")),
            "{f:?}"
        );
    }

    /// Elasticsearch with security whose `elastic` password is still `changeme`.
    fn changeme(head: &str) -> Vec<u8> {
        // base64("elastic:changeme")
        if !head.contains("Authorization: Basic ZWxhc3RpYzpjaGFuZ2VtZQ==") {
            return ES8_401.to_vec();
        }
        match path_of(head) {
            "/" => ES8_ROOT.to_vec(),
            p if p.starts_with("/_cat/indices") => OS_CAT_INDICES.to_vec(),
            p if p.starts_with("/_nodes/http") => OS_NODES.to_vec(),
            _ => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_vec(),
        }
    }

    #[tokio::test]
    async fn default_credentials_only_with_try_defaults() {
        let server = scripted(changeme).await;
        let addr = server.addr();
        let f = run(addr, false).await;
        assert_eq!(f.access, Access::AuthRequired);
        assert_eq!(f.product.as_deref(), Some("Elasticsearch"));
        assert_eq!(
            f.evidence,
            ["GET / answered 401 (security realm \"security\": missing authentication credentials for REST request [/])"]
        );

        let f = run(addr, true).await;
        assert_eq!(f.access, Access::DefaultCredentials, "{f:?}");
        assert_eq!(f.version.as_deref(), Some("8.17.3"));
        assert!(f.evidence.iter().any(|e| e.starts_with(
            "GET /_cat/indices answered 200 with the default credential elastic:changeme"
        )));
        // 127.0.20.1:9200 from the captured _nodes/http is not in this scope.
        assert_eq!(f.out_of_scope_peers, ["127.0.20.1:9200"]);
    }

    fn opensearch_secured(_head: &str) -> Vec<u8> {
        OS_SECURITY_401.to_vec()
    }

    #[tokio::test]
    async fn opensearch_security_with_changed_password() {
        let f = run(scripted(opensearch_secured).await.addr(), true).await;
        assert_eq!(f.access, Access::AuthRequired);
        assert_eq!(f.product.as_deref(), Some("OpenSearch"));
        assert_eq!(
            f.evidence.last().map(String::as_str),
            Some("default credentials tried without a successful read: admin:admin, elastic:changeme")
        );
    }

    fn plain_web_server(_head: &str) -> Vec<u8> {
        b"HTTP/1.1 200 OK\r\nServer: nginx\r\ncontent-length: 12\r\n\r\nHello world\n".to_vec()
    }

    #[tokio::test]
    async fn generic_http_is_not_me() {
        let ctx = ctx_for("127.0.0.1:9".parse().unwrap(), true);
        let root = resp(&plain_web_server(""));
        assert!(matches!(
            probe(&ctx, &root).await,
            Outcome::NotMe(Seen::Bytes(_))
        ));
        let redirect = resp(b"HTTP/1.1 302 Found\r\nLocation: /app/home\r\nkbn-name: kibana\r\ncontent-length: 0\r\n\r\n");
        assert!(matches!(probe(&ctx, &redirect).await, Outcome::NotMe(_)));
        // Nothing was sent for them: the context made no credential attempt.
        assert_eq!(ctx.auth_attempts(), 0);
    }
}
