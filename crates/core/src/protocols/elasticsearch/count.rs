//! Distinct people per index (`subjects_estimate`): the cluster's own `cardinality`
//! aggregation on the index's person key, read-only and within a time budget.
//!
//! For each query the index mapping is read again ([`super::wire::INDEX_MAPPING`]): the
//! inventory's schema keeps leaf types but drops multi-fields and does not say which object is
//! `nested`, and both decide what can be aggregated. The person key's flattened path
//! (`user_id`, `user.email`, `devices[].owner`) is resolved in it ([`resolve`]):
//! - `keyword`, numeric, `ip`, `date`, `boolean` and `version` fields are aggregated as they are;
//! - a `text` field through its `keyword` sub-field (`email.keyword`, what dynamic mapping
//!   adds to every string); a `text` field without one is skipped (aggregating it would need
//!   `fielddata`, a heap-hungry setting change);
//! - a field under a `nested` object inside a `nested` aggregation on that object, so values
//!   of the nested documents are counted, not of the top-level ones.
//!
//! Then one search, [`INDEX_CARDINALITY`], with the body [`cardinality_body`]: no documents
//! (`size: 0`), no hit counting, a `timeout` inside the budget, and a `cardinality`
//! aggregation with `precision_threshold` 40 000 (the maximum): HyperLogLog++ whose counts
//! are exact in practice below the threshold and within about a percent above it. `wire::send`
//! refuses that request with any other body. A search that timed out or lost shards counts only
//! part of the index, so it gives an error (with the partial figure), not an estimate.

use serde_json::{Map, Value};
use tokio::time::Instant;

use super::inventory::MAPPING_CAP;
use super::wire::{
    cardinality_body, is_concrete_index_name, Cluster, Failure, Target, INDEX_CARDINALITY,
    INDEX_MAPPING, MAX_FIELD, PRECISION_THRESHOLD,
};
use crate::driver::http::Status;
use crate::driver::{Budget, Counting, Spent};
use crate::driver::{Finding, ProbeCtx};
use crate::driver::{Subjects, SubjectsBudget, SubjectsQuery};
use crate::inventory::InventoryOptions;

/// Cap of a cardinality reply (a number, a flag and the shard tally, with failure reasons).
const AGG_CAP: usize = 256 * 1024;
/// Deepest path resolved in a mapping.
const MAX_DEPTH: usize = 32;
/// Mapping types whose values a `cardinality` aggregation reads from doc values.
const AGGREGATABLE: &[&str] = &[
    "keyword",
    "constant_keyword",
    "long",
    "integer",
    "short",
    "byte",
    "double",
    "float",
    "half_float",
    "scaled_float",
    "unsigned_long",
    "ip",
    "date",
    "date_nanos",
    "boolean",
    "version",
];

/// The `properties` of a mapping reply's index: typeless (7.x and later, OpenSearch) or the
/// first mapping type (6.x `_doc`, 5.x).
fn root_properties<'v>(v: &'v Value, index: &str) -> Option<&'v Map<String, Value>> {
    let obj = v.as_object()?;
    let mappings = obj
        .get(index)
        .or_else(|| obj.values().next())?
        .get("mappings")?
        .as_object()?;
    mappings
        .get("properties")
        .and_then(Value::as_object)
        .or_else(|| {
            mappings
                .values()
                .find_map(|t| t.get("properties").and_then(Value::as_object))
        })
}

/// Resolves the flattened `path` of a sampled field (`[]` marks arrays) in a
/// `GET /<index>/_mapping` reply; `Err` says why it cannot be aggregated.
pub fn resolve(mapping: &[u8], index: &str, path: &str) -> Result<Target, String> {
    let v: Value = serde_json::from_slice(mapping).map_err(|_| "mapping is not JSON")?;
    let mut props = root_properties(&v, index).ok_or("mapping has no properties")?;
    let plain = path.replace("[]", "");
    let segments: Vec<&str> = plain.split('.').collect();
    if plain.is_empty() || segments.len() > MAX_DEPTH || segments.iter().any(|s| s.is_empty()) {
        return Err(format!("{path:?} is not a mapping path"));
    }
    let mut nested = None;
    for (i, seg) in segments.iter().enumerate() {
        let here = segments[..=i].join(".");
        let def = props
            .get(*seg)
            .ok_or_else(|| format!("{here} is not in the mapping"))?;
        let ty = def.get("type").and_then(Value::as_str);
        if i + 1 < segments.len() {
            if ty == Some("nested") {
                // The innermost nested object is the one whose documents hold the value.
                nested = Some(here.clone());
            } else if !matches!(ty, None | Some("object")) {
                return Err(format!(
                    "{here} is a {} field, not an object",
                    ty.unwrap_or("")
                ));
            }
            props = def
                .get("properties")
                .and_then(Value::as_object)
                .ok_or_else(|| format!("{here} has no mapped sub-fields"))?;
            continue;
        }
        let field = match ty {
            Some(t) if AGGREGATABLE.contains(&t) => here,
            Some("text" | "match_only_text") => {
                let subs = def.get("fields").and_then(Value::as_object);
                let keyword = |name: &&String| {
                    subs.and_then(|s| s.get(*name))
                        .and_then(|d| d.get("type"))
                        .and_then(Value::as_str)
                        == Some("keyword")
                };
                // Dynamic mapping names it `keyword`; any keyword sub-field holds the same value.
                let sub = subs
                    .and_then(|s| s.keys().find(|k| *k == "keyword" && keyword(k)))
                    .or_else(|| subs.and_then(|s| s.keys().find(keyword)))
                    .ok_or_else(|| {
                        format!(
                            "{here} is a text field without a keyword sub-field (counting it \
                             would need fielddata enabled, a mapping change)"
                        )
                    })?;
                format!("{here}.{sub}")
            }
            Some("nested" | "object") | None => {
                return Err(format!("{here} is an object, not a value"))
            }
            Some(t) => return Err(format!("{here} is a {t} field, which cannot be aggregated")),
        };
        if field.len() > MAX_FIELD || nested.as_ref().is_some_and(|n| n.len() > MAX_FIELD) {
            return Err(format!("{path:?} is too long"));
        }
        return Ok(Target { field, nested });
    }
    unreachable!("a path has at least one segment")
}

/// What a cardinality reply says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Count {
    pub value: u64,
    /// The shards stopped at the search `timeout`: a partial count.
    pub timed_out: bool,
    /// Shards that failed, of how many.
    pub failed: u64,
    pub shards: u64,
}

/// Parses an [`INDEX_CARDINALITY`] reply. An index without documents answers no
/// aggregation at all under `filter_path` on some versions: that is a count of 0 only when
/// the shards say they all answered.
pub fn parse_cardinality(body: &[u8]) -> Option<Count> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let shards = v.get("_shards")?;
    let total = shards.get("total")?.as_u64()?;
    let failed = shards.get("failed").and_then(Value::as_u64).unwrap_or(0);
    let p = v.get("aggregations").and_then(|a| a.get("p"));
    let value = match p {
        Some(p) => p
            .get("value")
            .or_else(|| p.get("c")?.get("value"))?
            .as_u64()?,
        None if failed == 0 => 0,
        None => return None,
    };
    Some(Count {
        value,
        timed_out: v.get("timed_out").and_then(Value::as_bool).unwrap_or(false),
        failed,
        shards: total,
    })
}

/// The protocol's [`crate::driver::SubjectsFn`].
pub(super) async fn subjects(c: Counting<'_>) -> Vec<Result<Subjects, String>> {
    // Each count is a full pass over the index's doc values.
    c.one_at_a_time(|q, _| count(c.ctx, c.finding, c.opts, c.budget, q))
        .await
}

async fn count(
    ctx: &ProbeCtx,
    finding: &Finding,
    opts: &InventoryOptions,
    budget: SubjectsBudget,
    q: &SubjectsQuery<'_>,
) -> Result<Subjects, String> {
    let index = q.holding.name.as_str();
    if !is_concrete_index_name(index) {
        return Err("not a valid index name".into());
    }
    // Reads may take the whole budget; the session's deadline, not a read timeout, ends them.
    let s = Cluster::new(
        ctx,
        finding,
        budget.read_timeout(),
        Budget::new(Instant::now() + budget.per_container, opts.byte_budget),
    );
    let mapping = s
        .get(INDEX_MAPPING, Some(index), None, MAPPING_CAP)
        .await
        .map_err(|e| format!("GET _mapping failed: {e}"))?;
    let target = resolve(&mapping.body, index, &q.field)?;
    // The shards stop at 80 % of the budget and answer with what they counted, which is then
    // reported as partial instead of the client's deadline cutting the exchange.
    let timeout = budget.per_container.mul_f32(0.8);
    let mut old = false;
    let reply = loop {
        let body = cardinality_body(&target, timeout, old);
        match s
            .get(INDEX_CARDINALITY, Some(index), Some(&body), AGG_CAP)
            .await
        {
            Ok(r) => break r,
            // Elasticsearch 6.x does not know `track_total_hits` (it counts hits anyway).
            Err(Failure::Server(Status { code: 400, reason }))
                if !old && reason.contains("track_total_hits") =>
            {
                old = true
            }
            Err(Failure::Budget(Spent::Time)) => {
                return Err(format!(
                    "the cardinality aggregation on {} gave no answer within the {} ms budget",
                    target.field,
                    budget.per_container.as_millis()
                ))
            }
            Err(e) => return Err(format!("cardinality aggregation failed: {e}")),
        }
    };
    let c = parse_cardinality(&reply.body).ok_or("the cardinality reply had no count")?;
    if c.timed_out || c.failed > 0 {
        let why = if c.timed_out {
            format!(
                "the shards stopped at the {} ms search timeout",
                timeout.as_millis()
            )
        } else {
            format!("{} of {} shards failed", c.failed, c.shards)
        };
        return Err(format!(
            "{why}; the partial count {} on {} covers only part of the index",
            c.value, target.field
        ));
    }
    let product = finding.product.as_deref().unwrap_or("Elasticsearch");
    let under = target.nested.as_ref().map_or_else(String::new, |n| {
        format!(" inside a nested aggregation on {n}")
    });
    Ok(Subjects {
        count: c.value,
        method: format!(
            "{product} cardinality aggregation (HyperLogLog++, precision_threshold \
             {PRECISION_THRESHOLD}) on {}{under}",
            target.field
        ),
        interval: None,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::driver::http;
    use crate::driver::ProbeOptions;
    use crate::inventory::Holding;
    use crate::protocols::elasticsearch::wire::is_cardinality_body;
    use crate::testkit::fixture;
    use serde_json::json;

    use super::super::inventory::tests::{json_reply, recording};

    /// The lab's `customers` mapping (dynamic: every string is `text` with a `keyword`
    /// sub-field), captured by the inventory's tests.
    const LAB_CUSTOMERS_MAPPING: &[u8] =
        fixture!("elasticsearch/opensearch_lab_customers_mapping.http");
    /// A throwaway OpenSearch 2.19.6's `people`, with `devices` mapped `nested`.
    const NESTED_MAPPING: &[u8] = fixture!("elasticsearch/opensearch_inv_nested_mapping.http");
    /// The lab's opensearch-open answering [`INDEX_CARDINALITY`] on `customers` for
    /// `user_id.keyword` (10 000 customers).
    const LAB_CARDINALITY: &[u8] =
        fixture!("elasticsearch/opensearch_lab_customers_cardinality.http");

    fn body(raw: &[u8]) -> Vec<u8> {
        http::parse_response(raw, 1 << 20).unwrap().body
    }

    fn target(field: &str, nested: Option<&str>) -> Target {
        Target {
            field: field.into(),
            nested: nested.map(str::to_string),
        }
    }

    #[test]
    fn person_keys_resolve_to_aggregatable_fields() {
        let m = body(LAB_CUSTOMERS_MAPPING);
        let r = |p| resolve(&m, "customers", p);
        // Dynamic strings: the keyword sub-field.
        assert_eq!(r("user_id"), Ok(target("user_id.keyword", None)));
        assert_eq!(r("email"), Ok(target("email.keyword", None)));
        // Arrays of objects (not nested): `[]` is dropped, the field is a plain path.
        assert_eq!(r("devices[].mac"), Ok(target("devices.mac.keyword", None)));
        assert!(r("devices").unwrap_err().contains("object"));
        assert!(r("no_such").unwrap_err().contains("not in the mapping"));
        assert!(r("").is_err() && r("a..b").is_err());

        let m = body(NESTED_MAPPING);
        let r = |p| resolve(&m, "people", p);
        assert_eq!(r("email"), Ok(target("email", None)));
        assert_eq!(
            r("devices[].mac"),
            Ok(target("devices.mac", Some("devices")))
        );
        assert_eq!(
            r("devices[].fw.v"),
            Ok(target("devices.fw.v", Some("devices")))
        );
        assert_eq!(r("name"), Ok(target("name.keyword", None)));
        // An object with `enabled: false` has no fields to aggregate.
        assert!(r("meta").is_err());
    }

    #[test]
    fn other_sub_fields_and_types() {
        let m = br#"{"i":{"mappings":{"properties":{
            "mail":{"type":"text","fields":{"raw":{"type":"keyword"},"en":{"type":"text"}}},
            "uid":{"type":"long"},
            "bio":{"type":"text"},
            "geo":{"type":"geo_point"},
            "a":{"type":"nested","properties":{"b":{"type":"nested","properties":{"c":{"type":"keyword"}}}}}
        }}}}"#;
        assert_eq!(resolve(m, "i", "mail"), Ok(target("mail.raw", None)));
        assert_eq!(resolve(m, "i", "uid"), Ok(target("uid", None)));
        // A text field without a keyword sub-field cannot be counted without fielddata.
        assert!(resolve(m, "i", "bio").unwrap_err().contains("fielddata"));
        assert!(resolve(m, "i", "geo").unwrap_err().contains("geo_point"));
        assert!(resolve(m, "i", "uid.x")
            .unwrap_err()
            .contains("not an object"));
        // Nested inside nested: the innermost nested object.
        assert_eq!(
            resolve(m, "i", "a[].b[].c"),
            Ok(target("a.b.c", Some("a.b")))
        );
        // 6.x: a mapping type in between.
        let v6 = br#"{"i":{"mappings":{"_doc":{"properties":{"u":{"type":"keyword"}}}}}}"#;
        assert_eq!(resolve(v6, "i", "u"), Ok(target("u", None)));
        assert!(resolve(b"[]", "i", "u").is_err());
    }

    #[test]
    fn only_the_cardinality_body_is_accepted() {
        let t = target("user_id.keyword", None);
        let n = target("devices.owner", Some("devices"));
        let secs = Duration::from_secs(8);
        for b in [
            cardinality_body(&t, secs, false),
            cardinality_body(&t, secs, true),
            cardinality_body(&n, secs, false),
        ] {
            assert!(is_cardinality_body(&b), "{}", String::from_utf8_lossy(&b));
        }
        let v: Value = serde_json::from_slice(&cardinality_body(&t, secs, false)).unwrap();
        assert_eq!(
            v,
            json!({"size": 0, "track_total_hits": false, "timeout": "8000ms",
                   "aggs": {"p": {"cardinality": {"field": "user_id.keyword",
                                                  "precision_threshold": 40000}}}})
        );
        let v: Value = serde_json::from_slice(&cardinality_body(&n, secs, true)).unwrap();
        assert_eq!(v["aggs"]["p"]["nested"]["path"], "devices");
        assert_eq!(
            v["aggs"]["p"]["aggs"]["c"]["cardinality"]["field"],
            "devices.owner"
        );
        assert!(v.get("track_total_hits").is_none());

        // Anything more, less or other is refused.
        let good = json!({"size": 0, "track_total_hits": false, "timeout": "8000ms",
            "aggs": {"p": {"cardinality": {"field": "u", "precision_threshold": 40000}}}});
        assert!(is_cardinality_body(&serde_json::to_vec(&good).unwrap()));
        let variants: Vec<Value> = vec![
            {
                let mut v = good.clone();
                v["size"] = json!(10);
                v
            },
            {
                let mut v = good.clone();
                v["query"] = json!({"match_all": {}});
                v
            },
            {
                let mut v = good.clone();
                v["script_fields"] = json!({"x": {"script": "1"}});
                v
            },
            {
                let mut v = good.clone();
                v["aggs"]["q"] = json!({"terms": {"field": "u", "size": 10000}});
                v
            },
            {
                let mut v = good.clone();
                v["aggs"]["p"]["cardinality"]["script"] = json!("doc['u']");
                v
            },
            {
                let mut v = good.clone();
                v["aggs"]["p"]["cardinality"]["precision_threshold"] = json!(100);
                v
            },
            {
                let mut v = good.clone();
                v["aggs"]["p"] = json!({"terms": {"field": "u"}});
                v
            },
            {
                let mut v = good.clone();
                v["aggs"]["p"]["cardinality"]["field"] = json!("*");
                v
            },
            {
                let mut v = good.clone();
                v["timeout"] = json!("8s");
                v
            },
            {
                let mut v = good.clone();
                v["aggs"]["p"]["aggs"] = json!({"d": {"top_hits": {}}});
                v
            },
            json!({"size": 0}),
            json!([]),
        ];
        for v in variants {
            assert!(
                !is_cardinality_body(&serde_json::to_vec(&v).unwrap()),
                "{v}"
            );
        }
        assert!(!is_cardinality_body(b"not json"));
        assert!(!is_cardinality_body(b""));
    }

    #[test]
    fn real_cardinality_reply() {
        let c = parse_cardinality(&body(LAB_CARDINALITY)).unwrap();
        assert_eq!(
            c,
            Count {
                value: 10_000,
                timed_out: false,
                failed: 0,
                shards: 1
            }
        );
        let nested = br#"{"timed_out":false,"_shards":{"total":2,"successful":2,"skipped":0,"failed":0},"aggregations":{"p":{"doc_count":6,"c":{"value":3}}}}"#;
        assert_eq!(parse_cardinality(nested).unwrap().value, 3);
        let partial = br#"{"timed_out":true,"_shards":{"total":2,"successful":1,"skipped":0,"failed":1},"aggregations":{"p":{"value":7}}}"#;
        let c = parse_cardinality(partial).unwrap();
        assert!(c.timed_out && c.failed == 1 && c.value == 7);
        assert!(parse_cardinality(br#"{"_shards":{"total":1,"failed":1}}"#).is_none());
        assert_eq!(
            parse_cardinality(br#"{"_shards":{"total":1,"failed":0}}"#).map(|c| c.value),
            Some(0)
        );
        assert!(parse_cardinality(b"{}").is_none());
    }

    // --- against a scripted cluster that records every request ---

    fn cluster(path: &str, _head: &str, body: &str) -> Vec<u8> {
        let (p, _) = path.split_once('?').unwrap_or((path, ""));
        match p {
            "/customers/_mapping" => LAB_CUSTOMERS_MAPPING.to_vec(),
            "/customers/_search" if body.contains("\"cardinality\"") => LAB_CARDINALITY.to_vec(),
            "/slow/_mapping" => {
                json_reply(r#"{"slow":{"mappings":{"properties":{"uid":{"type":"keyword"}}}}}"#)
            }
            // Answers that its shards timed out.
            "/slow/_search" => json_reply(
                r#"{"timed_out":true,"_shards":{"total":1,"successful":1,"skipped":0,"failed":0},"aggregations":{"p":{"value":12}}}"#,
            ),
            // Never answers the search.
            "/tarpit/_mapping" => {
                json_reply(r#"{"tarpit":{"mappings":{"properties":{"uid":{"type":"keyword"}}}}}"#)
            }
            "/tarpit/_search" => Vec::new(),
            _ => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_vec(),
        }
    }

    fn holding(name: &str) -> Holding {
        Holding {
            name: name.into(),
            kind: "index",
            ..Holding::default()
        }
    }

    #[tokio::test]
    async fn counts_with_one_search_and_explains_failures() {
        let server = recording(cluster).await;
        let addr = server.addr();
        let ctx = crate::driver::test_ctx(addr, ProbeOptions::default());
        let mut f = Finding::new("elasticsearch");
        f.product = Some("OpenSearch".into());
        let hs = [
            holding("customers"),
            holding("customers"),
            holding("slow"),
            holding("tarpit"),
            holding("_all"),
        ];
        let q = |h, field: &str| SubjectsQuery {
            holding: h,
            field: field.into(),
            field_type: None,
        };
        let queries = [
            q(&hs[0], "user_id"),
            q(&hs[1], "devices"),
            q(&hs[2], "uid"),
            q(&hs[3], "uid"),
            q(&hs[4], "uid"),
        ];
        let budget = SubjectsBudget {
            per_container: Duration::from_millis(1500),
            until: None,
        };
        let t0 = std::time::Instant::now();
        let got = subjects(Counting {
            ctx: &ctx,
            finding: &f,
            opts: &InventoryOptions::default(),
            budget,
            queries: &queries,
        })
        .await;
        assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
        assert_eq!(
            got[0],
            Ok(Subjects {
                count: 10_000,
                method: "OpenSearch cardinality aggregation (HyperLogLog++, precision_threshold \
                         40000) on user_id.keyword"
                    .into(),
                interval: None,
            })
        );
        assert!(got[1].as_ref().unwrap_err().contains("object"), "{got:?}");
        let slow = got[2].as_ref().unwrap_err();
        assert!(
            slow.contains("1200 ms search timeout") && slow.contains("partial count 12"),
            "{slow}"
        );
        assert!(
            got[3]
                .as_ref()
                .unwrap_err()
                .contains("no answer within the 1500 ms"),
            "{got:?}"
        );
        assert_eq!(got[4], Err("not a valid index name".into()));

        // Every request: a GET of a mapping, or a search whose body is a cardinality body.
        let log = server.texts();
        assert_eq!(log.len(), 7, "{log:?}");
        for req in log.iter() {
            let line = req.lines().next().unwrap();
            assert!(line.starts_with("GET /"), "{line}");
            if line.contains("/_search?") {
                assert!(
                    line.contains("?filter_path=aggregations,timed_out,_shards "),
                    "{line}"
                );
                let body = &req[req.find("\r\n\r\n").unwrap() + 4..];
                assert!(is_cardinality_body(body.as_bytes()), "{body}");
            } else {
                assert!(line.ends_with("/_mapping HTTP/1.1"), "{line}");
            }
        }
    }
}
