//! Inventory of an exposed Elasticsearch/OpenSearch cluster: which indices it holds, how many
//! documents each, their mappings, and a bounded random sample of documents from each.
//!
//! Every request is an allowlisted GET sent through `wire::send`:
//! - [`CAT_INDICES_ALL`] lists every index, hidden and closed ones included, with the
//!   primaries' document count and store size (one request for the whole cluster, done first so
//!   a budget that runs out later still leaves the list).
//! - [`HIDDEN_SETTINGS`] names the indices with `index.hidden`; they and every index whose name
//!   starts with `.` (`.kibana`, `.security-7`, `.opensearch-*`, `.ds-*`) are listed as system.
//! - [`INDEX_MAPPING`] gives the field paths and types (`Holding.schema`) and tells whether any
//!   field is `nested`.
//! - [`INDEX_SAMPLE`] draws up to N documents with `function_score`/`random_score` seeded on
//!   `_seq_no`: every shard scores every document pseudo-randomly and the top N win, so the
//!   sample is spread over the whole index, not its first segment. The fixed seed makes repeated
//!   scans of an unchanged index see the same documents.
//! - [`INDEX_COUNT`] counts top-level documents exactly.
//!
//! Counts: `docs.count` of `_cat/indices` is the primaries' live Lucene documents, which is the
//! exact number of documents unless the mapping has `nested` fields (each nested object is a
//! Lucene document of its own). So the count comes from `_cat/indices` when the mapping shows
//! no nested field, and from `_count` otherwise, and always with `--full`. `_count` visits every
//! live document of every shard (a census in the engine, not an estimate), in one small reply
//! and without any server-side state. A scroll would read every document over the network for
//! the same number and leave a search context open that only a `DELETE /_search/scroll` frees
//! early (not allowlisted); a point in time can only be opened with a POST. Neither is used.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use super::wire::{
    cat_number, unparsed, Cluster, Failure, CAT_INDICES_ALL, HIDDEN_SETTINGS, INDEX_COUNT,
    INDEX_MAPPING, INDEX_SAMPLE,
};
use crate::driver::http::Status;
use crate::driver::{Budget, Finding, ProbeCtx};
use crate::inventory::{flatten_json, Holding, Inventory, InventoryOptions, Record};
use crate::net::NetError;

/// Seed of the random sample: fixed, so an unchanged index yields the same sample every scan.
const SAMPLE_SEED: u64 = 20_191_204;
/// Cap of the index list and the hidden-settings reply (about 100 000 indices).
const LIST_CAP: usize = 16 << 20;
/// Cap of one mapping (a mapping explosion of tens of thousands of fields still fits).
pub(super) const MAPPING_CAP: usize = 8 << 20;
/// Cap of one sample reply; a larger one is retried with fewer documents.
const SAMPLE_CAP: usize = 32 << 20;
/// Cap of a `_count` reply.
const COUNT_CAP: usize = 64 * 1024;
/// Most schema entries kept from one mapping.
const MAX_SCHEMA_FIELDS: usize = 5000;
/// Indices inventoried at once.
const CONCURRENCY: usize = 4;
/// Reads of a sample or a count over a large index take longer than a probe's reads; the
/// inventory's own deadline still bounds the whole.
const MIN_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// One row of `_cat/indices` with the columns of [`CAT_INDICES_ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatIndex {
    pub name: String,
    /// Primaries' live Lucene documents (None for a closed or red index).
    pub docs: Option<u64>,
    /// Primaries' store size in bytes (replica copies are not more data).
    pub bytes: Option<u64>,
    /// False when `status` is `close`.
    pub open: bool,
}

/// Parses the reply to [`CAT_INDICES_ALL`]. None unless it is an array of rows naming indices.
pub fn parse_cat_indices_all(body: &[u8]) -> Option<Vec<CatIndex>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.as_array()?
        .iter()
        .map(|row| {
            Some(CatIndex {
                name: row.get("index")?.as_str()?.to_string(),
                docs: cat_number(row.get("docs.count")),
                bytes: cat_number(row.get("pri.store.size"))
                    .or_else(|| cat_number(row.get("store.size"))),
                open: row.get("status").and_then(Value::as_str) != Some("close"),
            })
        })
        .collect()
}

/// Names of the indices whose `index.hidden` is true in a [`HIDDEN_SETTINGS`] reply.
pub fn parse_hidden(body: &[u8]) -> HashSet<String> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return HashSet::new();
    };
    map.into_iter()
        .filter(|(_, v)| {
            let s = v.get("settings");
            // flat_settings=true gives "index.hidden"; without it the setting nests.
            let flag = s
                .and_then(|s| s.get("index.hidden"))
                .or_else(|| s?.get("index")?.get("hidden"));
            matches!(flag, Some(Value::Bool(true))) || flag.and_then(Value::as_str) == Some("true")
        })
        .map(|(k, _)| k)
        .collect()
}

/// Field structure of one index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mapping {
    /// (field path, type), leaves only, in mapping order; fields under a `nested` field have
    /// `[]` after it (`devices[].mac`), as they are arrays of objects.
    pub fields: Vec<(String, String)>,
    /// Some field is `nested`: `docs.count` then counts nested objects too.
    pub nested: bool,
    /// More than `MAX_SCHEMA_FIELDS` fields; the rest were dropped.
    pub truncated: bool,
}

fn walk_properties(
    props: &serde_json::Map<String, Value>,
    prefix: &str,
    depth: usize,
    out: &mut Mapping,
) {
    if depth > 32 {
        return;
    }
    for (name, def) in props {
        if out.fields.len() >= MAX_SCHEMA_FIELDS {
            out.truncated = true;
            return;
        }
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let ty = def.get("type").and_then(Value::as_str);
        let children = def.get("properties").and_then(Value::as_object);
        match (ty, children) {
            (Some("nested"), sub) => {
                out.nested = true;
                match sub {
                    Some(sub) => walk_properties(sub, &format!("{path}[]"), depth + 1, out),
                    None => out.fields.push((format!("{path}[]"), "nested".into())),
                }
            }
            (None | Some("object"), Some(sub)) => walk_properties(sub, &path, depth + 1, out),
            // Multi-fields (`email.keyword`) index the same value again; they are not
            // separate data and are left out.
            (Some(t), _) => out.fields.push((path, t.to_string())),
            (None, None) => out.fields.push((path, "object".into())),
        }
    }
}

/// Parses a `GET /<index>/_mapping` reply: typeless (7.x and later, OpenSearch) or with mapping
/// types (6.x `_doc`, 5.x several types, merged).
pub fn parse_mapping(body: &[u8], index: &str) -> Option<Mapping> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object()?;
    let entry = obj.get(index).or_else(|| obj.values().next())?;
    let mappings = entry.get("mappings")?.as_object()?;
    let mut out = Mapping::default();
    if let Some(props) = mappings.get("properties").and_then(Value::as_object) {
        walk_properties(props, "", 0, &mut out);
    } else {
        for ty in mappings.values() {
            if let Some(props) = ty.get("properties").and_then(Value::as_object) {
                walk_properties(props, "", 0, &mut out);
            }
        }
        let mut seen = HashSet::new();
        out.fields.retain(|(p, _)| seen.insert(p.clone()));
    }
    Some(out)
}

/// `count` of a `_count` reply.
pub fn parse_count(body: &[u8]) -> Option<u64> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get("count")?.as_u64()
}

/// The `_source` of each hit in an [`INDEX_SAMPLE`] reply. An empty index answers `{}` under
/// `filter_path`; hits without `_source` (disabled in the mapping) are skipped.
pub fn parse_sample(body: &[u8]) -> Option<Vec<Value>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.as_object()?;
    let Some(hits) = v.get("hits").and_then(|h| h.get("hits")) else {
        return Some(Vec::new());
    };
    Some(
        hits.as_array()?
            .iter()
            .filter_map(|h| h.get("_source").cloned())
            .collect(),
    )
}

/// The search body of a spread sample of `size` documents. `timeout` lets the shards return
/// what they have before the client's read deadline; `track_total_hits: false` spares counting.
pub fn sample_body(size: usize, random: bool, timeout: Duration) -> Vec<u8> {
    let timeout = format!("{}ms", timeout.as_millis().max(100));
    let v = if random {
        serde_json::json!({
            "size": size,
            "timeout": timeout,
            "track_total_hits": false,
            "query": {"function_score": {
                "query": {"match_all": {}},
                "random_score": {"seed": SAMPLE_SEED, "field": "_seq_no"},
                "boost_mode": "replace"
            }}
        })
    } else {
        serde_json::json!({"size": size, "timeout": timeout, "query": {"match_all": {}}})
    };
    serde_json::to_vec(&v).expect("JSON value serializes")
}

/// Rewrites schema paths to the array notation the sample showed (`devices.mac` from the
/// mapping is `devices[].mac` in the documents), so schema and fields name paths alike.
pub fn align_schema(schema: &mut [(String, String)], sample: &[Record]) {
    let mut seen: HashMap<String, &str> = HashMap::new();
    for rec in sample {
        for (path, _) in rec {
            if path.contains("[]") {
                seen.entry(path.replace("[]", "")).or_insert(path.as_str());
            }
        }
    }
    for (path, _) in schema.iter_mut() {
        if let Some(p) = seen.get(&path.replace("[]", "")) {
            *path = (*p).to_string();
        }
    }
}

/// What one index gave, and what went wrong with it.
struct Taken {
    holding: Holding,
    notes: Vec<String>,
    /// A budget (bytes or time) cut this index short.
    cut: bool,
}

/// Samples up to `n` documents; a reply over the cap is retried with fewer, and a cluster that
/// rejects `random_score` on `_seq_no` (before 6.0) gets a plain first-N search.
async fn sample(
    s: &Cluster<'_>,
    name: &str,
    n: usize,
    notes: &mut Vec<String>,
) -> Result<Vec<Value>, Failure> {
    let mut size = n;
    let mut random = true;
    let timeout = s.read_timeout.mul_f32(0.6);
    for _ in 0..4 {
        let body = sample_body(size, random, timeout);
        match s
            .get(INDEX_SAMPLE, Some(name), Some(&body), SAMPLE_CAP)
            .await
        {
            Ok(r) => {
                if size < n {
                    notes.push(format!(
                        "{name}: sample reduced to {size} documents (a reply for {n} exceeded {SAMPLE_CAP} bytes)"
                    ));
                }
                if !random {
                    notes.push(format!(
                        "{name}: random_score was refused; the sample is the first {size} documents, not spread"
                    ));
                }
                return parse_sample(&r.body).ok_or_else(unparsed);
            }
            Err(Failure::Net(NetError::TooLarge { .. })) if size > 1 => size = (size / 4).max(1),
            Err(Failure::Server(Status { code: 400, .. })) if random => random = false,
            Err(e) => return Err(e),
        }
    }
    Err(Failure::Net(NetError::TooLarge { cap: SAMPLE_CAP }))
}

/// Inventories one listed index: mapping, sample, count.
async fn take_index(
    s: &Cluster<'_>,
    row: &CatIndex,
    system: bool,
    opts: &InventoryOptions,
) -> Taken {
    let name = row.name.as_str();
    let mut t = Taken {
        holding: Holding {
            name: row.name.clone(),
            kind: "index",
            records: None,
            records_exact: false,
            bytes: row.bytes,
            system,
            schema: Vec::new(),
            sample: Vec::new(),
            sample_keys: Vec::new(),
        },
        notes: Vec::new(),
        cut: false,
    };
    if !super::wire::is_concrete_index_name(name) {
        t.notes.push(format!(
            "{name:?}: not a valid index name; listed from _cat/indices only"
        ));
        t.holding.records = row.docs;
        return t;
    }
    let fail = |t: &mut Taken, what: &str, e: Failure| {
        if e.is_budget() {
            t.cut = true;
        } else {
            t.notes.push(format!("{name}: {what} failed: {e}"));
        }
    };

    // Mapping: the structure, and whether `docs.count` includes nested documents.
    let mapping = match s.get(INDEX_MAPPING, Some(name), None, MAPPING_CAP).await {
        Ok(r) => match parse_mapping(&r.body, name) {
            Some(m) => Some(m),
            None => {
                fail(&mut t, "GET _mapping", unparsed());
                None
            }
        },
        Err(e) => {
            fail(&mut t, "GET _mapping", e);
            None
        }
    };
    if let Some(m) = &mapping {
        t.holding.schema = m.fields.clone();
        if m.truncated {
            t.notes.push(format!(
                "{name}: mapping has more than {MAX_SCHEMA_FIELDS} fields; the schema lists the first {MAX_SCHEMA_FIELDS}"
            ));
        }
    }
    if !row.open {
        t.notes.push(format!(
            "{name}: index is closed; its documents were not counted or sampled (opening it would be a write)"
        ));
        return t;
    }

    if opts.sample > 0 && row.docs != Some(0) {
        let mut notes = Vec::new();
        match sample(s, name, opts.sample, &mut notes).await {
            Ok(docs) => {
                t.holding.sample = docs
                    .iter()
                    .map(|d| flatten_json(d, opts.value_cap))
                    .collect();
                t.notes.extend(notes);
            }
            Err(e) => fail(&mut t, "sample (GET _search)", e),
        }
    }

    let nested = mapping.as_ref().map(|m| m.nested);
    let cat_exact = nested == Some(false) && row.docs.is_some();
    if opts.full || !cat_exact {
        match s.get(INDEX_COUNT, Some(name), None, COUNT_CAP).await {
            Ok(r) => match parse_count(&r.body) {
                Some(n) => {
                    t.holding.records = Some(n);
                    t.holding.records_exact = true;
                }
                None => fail(&mut t, "GET _count", unparsed()),
            },
            Err(e) => fail(&mut t, "GET _count", e),
        }
    }
    if t.holding.records.is_none() {
        t.holding.records = row.docs;
        // With nested fields (or an unknown mapping) docs.count also counts nested objects.
        t.holding.records_exact = cat_exact;
    }
    align_schema(&mut t.holding.schema, &t.holding.sample);
    t
}

/// The protocol's [`crate::driver::InventoryFn`].
pub(super) async fn inventory(
    ctx: &ProbeCtx,
    finding: &Finding,
    opts: &InventoryOptions,
) -> Inventory {
    // Stop a little before the engine's own timeout, which would drop everything gathered.
    let s = Cluster::new(ctx, finding, MIN_READ_TIMEOUT, Budget::for_inventory(opts));
    let mut inv = Inventory::default();

    let rows = match s.get(CAT_INDICES_ALL, None, None, LIST_CAP).await {
        Ok(r) => match parse_cat_indices_all(&r.body) {
            Some(rows) => rows,
            None => {
                inv.notes
                    .push("GET /_cat/indices did not answer an index list".into());
                return inv;
            }
        },
        Err(e) => {
            inv.notes.push(format!("GET /_cat/indices failed: {e}"));
            return inv;
        }
    };
    let hidden = match s.get(HIDDEN_SETTINGS, None, None, LIST_CAP).await {
        Ok(r) => parse_hidden(&r.body),
        Err(e) => {
            inv.notes.push(format!(
                "GET /_all/_settings/index.hidden failed ({e}); only dot-indices are marked system"
            ));
            HashSet::new()
        }
    };

    let mut rows: Vec<(bool, CatIndex)> = rows
        .into_iter()
        .map(|r| (r.name.starts_with('.') || hidden.contains(&r.name), r))
        .collect();
    // Data first, then the largest: what a budget cuts off matters least.
    rows.sort_by(|(sa, a), (sb, b)| {
        sa.cmp(sb)
            .then(b.docs.unwrap_or(0).cmp(&a.docs.unwrap_or(0)))
            .then(a.name.cmp(&b.name))
    });
    let total = rows.len();
    if total > opts.max_containers {
        let rest: u64 = rows[opts.max_containers..]
            .iter()
            .filter_map(|(_, r)| r.docs)
            .sum();
        inv.notes.push(format!(
            "listed {} of {total} indices (max containers); the other {} hold {rest} Lucene documents by _cat/indices",
            opts.max_containers,
            total - opts.max_containers
        ));
        rows.truncate(opts.max_containers);
    }

    // Futures made up front: a closure inside the stream trips the higher-ranked lifetimes
    // of the boxed, Send inventory future.
    let jobs: Vec<_> = rows
        .iter()
        .map(|(system, row)| take_index(&s, row, *system, opts))
        .collect();
    let taken: Vec<Taken> = futures::stream::iter(jobs)
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let cut = taken.iter().filter(|t| t.cut).count();
    for t in taken {
        inv.notes.extend(t.notes);
        inv.holdings.push(t.holding);
    }
    if cut > 0 {
        let why = if s.budget().bytes_left() == 0 {
            format!("the {}-byte budget was spent", s.budget().limit())
        } else {
            format!(
                "the {} time budget ran out",
                crate::driver::secs(opts.time_budget)
            )
        };
        inv.notes.push(format!(
            "{why}: {cut} of {} indices are listed with _cat/indices figures only (mapping, sample or count missing)",
            inv.holdings.len()
        ));
    }
    inv
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::driver::http;
    use crate::driver::{DirectConnector, ProbeOptions};
    use crate::inventory::paths_seen;
    use crate::protocols::elasticsearch::wire::error_reason;
    use crate::scope::{ScopeBuilder, TargetSpec};
    use crate::testkit::{fixture, frames, FakeServer, Reply};
    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::sync::Arc;

    /// Captured from a throwaway OpenSearch 2.19.6 (`lab/opensearch/run.sh` on 127.0.20.1)
    /// holding `people` (explicit mapping with a `nested` field, 3 documents = 6 Lucene
    /// documents), `logs+2024.01`, `.hidden-store` (dot name, not hidden), `hidden_plain`
    /// (`index.hidden: true`), `empty` and `closed_one` (closed): the raw bytes answering this
    /// module's own requests.
    const CAT_ALL: &[u8] = fixture!("elasticsearch/opensearch_inv_cat_indices_all.http");
    const HIDDEN: &[u8] = fixture!("elasticsearch/opensearch_inv_hidden_settings.http");
    const NESTED_MAPPING: &[u8] = fixture!("elasticsearch/opensearch_inv_nested_mapping.http");
    const NESTED_COUNT: &[u8] = fixture!("elasticsearch/opensearch_inv_nested_count.http");
    const CLOSED_COUNT: &[u8] = fixture!("elasticsearch/opensearch_inv_closed_count.http");
    const EMPTY_SAMPLE: &[u8] = fixture!("elasticsearch/opensearch_inv_empty_sample.http");
    /// Captured from the lab's opensearch-open (synthetic data of `leakscope-labgen`): the index
    /// list, the dynamic mapping of `customers`, and a 3-document random sample of it.
    const LAB_CAT_ALL: &[u8] = fixture!("elasticsearch/opensearch_lab_cat_indices_all.http");
    const LAB_CUSTOMERS_MAPPING: &[u8] =
        fixture!("elasticsearch/opensearch_lab_customers_mapping.http");
    const LAB_CUSTOMERS_SAMPLE: &[u8] =
        fixture!("elasticsearch/opensearch_lab_customers_sample.http");

    fn body(raw: &[u8]) -> Vec<u8> {
        http::parse_response(raw, 1 << 20)
            .expect("fixture is HTTP")
            .body
    }

    #[test]
    fn index_list_with_hidden_closed_and_dot_indices() {
        let rows = parse_cat_indices_all(&body(CAT_ALL)).unwrap();
        let by: HashMap<_, _> = rows.iter().map(|r| (r.name.as_str(), r)).collect();
        assert_eq!(by.len(), 6);
        // 3 documents with 3 nested objects between them: 6 Lucene documents.
        assert_eq!(by["people"].docs, Some(6));
        assert_eq!(by["people"].bytes, Some(6117));
        assert!(by["people"].open);
        assert_eq!(by["logs+2024.01"].docs, Some(1));
        let closed = by["closed_one"];
        assert_eq!(
            (closed.docs, closed.bytes, closed.open),
            (None, None, false)
        );
        assert_eq!(
            parse_hidden(&body(HIDDEN)),
            HashSet::from(["hidden_plain".to_string()])
        );
        // The nested form of the setting, and garbage.
        let nested = br#"{"a":{"settings":{"index":{"hidden":"true"}}},"b":{"settings":{}}}"#;
        assert_eq!(parse_hidden(nested), HashSet::from(["a".to_string()]));
        assert!(parse_hidden(b"[1,2]").is_empty());

        let lab = parse_cat_indices_all(&body(LAB_CAT_ALL)).unwrap();
        let mut names: Vec<_> = lab.iter().map(|r| (r.name.as_str(), r.docs)).collect();
        names.sort();
        assert_eq!(
            names,
            [
                ("customers", Some(10000)),
                ("firmware_builds", Some(200)),
                ("orders", Some(10933)),
                ("telemetry_daily", Some(2920))
            ]
        );
        assert!(parse_cat_indices_all(br#"[{"docs.count":"1"}]"#).is_none());
    }

    #[test]
    fn dynamic_mapping_of_the_lab_customers() {
        let m = parse_mapping(&body(LAB_CUSTOMERS_MAPPING), "customers").unwrap();
        assert!(!m.nested && !m.truncated);
        let get = |p: &str| {
            m.fields
                .iter()
                .find(|(f, _)| f == p)
                .map(|(_, t)| t.as_str())
        };
        assert_eq!(get("alexa.access_token"), Some("text"));
        assert_eq!(get("devices.mac"), Some("text"));
        assert_eq!(get("scale.weight_kg"), Some("float"));
        assert_eq!(get("created_at"), Some("date"));
        // Multi-fields are the same value indexed again, not fields of their own.
        assert!(
            m.fields.iter().all(|(p, _)| !p.ends_with(".keyword")),
            "{:?}",
            m.fields
        );
    }

    #[test]
    fn nested_and_disabled_objects() {
        let m = parse_mapping(&body(NESTED_MAPPING), "people").unwrap();
        assert!(m.nested);
        assert_eq!(
            m.fields,
            [
                ("devices[].fw.v".to_string(), "keyword".to_string()),
                ("devices[].mac".into(), "keyword".into()),
                ("email".into(), "keyword".into()),
                ("meta".into(), "object".into()),
                ("name".into(), "text".into()),
            ]
        );
    }

    #[test]
    fn mappings_with_types_are_merged() {
        // Elasticsearch 6.x (`_doc`) and 5.x (several types) put a type level in between.
        let v6 = br#"{"idx":{"mappings":{"_doc":{"properties":{"a":{"type":"keyword"}}}}}}"#;
        assert_eq!(
            parse_mapping(v6, "idx").unwrap().fields,
            [("a".to_string(), "keyword".to_string())]
        );
        let v5 = br#"{"idx":{"mappings":{"t1":{"properties":{"a":{"type":"keyword"}}},"t2":{"properties":{"a":{"type":"keyword"},"b":{"type":"long"}}}}}}"#;
        let f: Vec<_> = parse_mapping(v5, "idx")
            .unwrap()
            .fields
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(f, ["a", "b"]);
        // An alias asked by name answers under the concrete index; an empty mapping is no field.
        assert!(parse_mapping(br#"{"real-1":{"mappings":{}}}"#, "alias")
            .unwrap()
            .fields
            .is_empty());
        assert!(parse_mapping(b"[]", "x").is_none());
    }

    #[test]
    fn mapping_explosion_is_capped() {
        let props: serde_json::Map<String, Value> = (0..MAX_SCHEMA_FIELDS + 10)
            .map(|i| (format!("f{i}"), serde_json::json!({"type": "keyword"})))
            .collect();
        let doc = serde_json::json!({"x": {"mappings": {"properties": props}}});
        let m = parse_mapping(&serde_json::to_vec(&doc).unwrap(), "x").unwrap();
        assert_eq!(m.fields.len(), MAX_SCHEMA_FIELDS);
        assert!(m.truncated);
        // Deep nesting stops at the depth cap instead of recursing without end.
        let mut deep = serde_json::json!({"type": "keyword"});
        for _ in 0..50 {
            deep = serde_json::json!({"properties": {"a": deep}});
        }
        let doc = serde_json::json!({"x": {"mappings": {"properties": {"a": deep}}}});
        assert!(parse_mapping(&serde_json::to_vec(&doc).unwrap(), "x")
            .unwrap()
            .fields
            .is_empty());
    }

    #[test]
    fn counts_samples_and_errors() {
        assert_eq!(parse_count(&body(NESTED_COUNT)), Some(3));
        let closed = http::parse_response(CLOSED_COUNT, 1 << 20).unwrap();
        assert_eq!(closed.status, 400);
        assert_eq!(error_reason(&closed.body), "index_closed_exception: closed");
        assert_eq!(parse_sample(&body(EMPTY_SAMPLE)), Some(vec![]));
        let docs = parse_sample(&body(LAB_CUSTOMERS_SAMPLE)).unwrap();
        assert_eq!(docs.len(), 3);
        let sample: Vec<Record> = docs.iter().map(|d| flatten_json(d, 256)).collect();
        let paths: Vec<String> = paths_seen(&sample).into_iter().map(|(p, _)| p).collect();
        for p in [
            "email",
            "app.api_token",
            "devices[].mac",
            "devices[].nickname",
            "user_id",
        ] {
            assert!(paths.iter().any(|x| x == p), "{p} not in {paths:?}");
        }
        assert!(parse_sample(b"not json").is_none());
    }

    #[test]
    fn schema_paths_follow_the_sample_notation() {
        let mut schema = vec![
            ("devices.mac".to_string(), "text".to_string()),
            ("email".into(), "keyword".into()),
            ("tags".into(), "keyword".into()),
        ];
        let sample: Vec<Record> = vec![vec![
            ("devices[].mac".into(), "AA".into()),
            ("tags[]".into(), "x".into()),
            ("email".into(), "a@b.c".into()),
        ]];
        align_schema(&mut schema, &sample);
        let paths: Vec<_> = schema.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["devices[].mac", "email", "tags[]"]);
    }

    #[test]
    fn sample_body_is_a_seeded_random_score_query() {
        let v: Value =
            serde_json::from_slice(&sample_body(200, true, Duration::from_secs(6))).unwrap();
        assert_eq!(v["size"], 200);
        assert_eq!(v["timeout"], "6000ms");
        let rs = &v["query"]["function_score"]["random_score"];
        assert_eq!(
            (rs["seed"].as_u64(), rs["field"].as_str()),
            (Some(SAMPLE_SEED), Some("_seq_no"))
        );
        let plain: Value = serde_json::from_slice(&sample_body(5, false, Duration::ZERO)).unwrap();
        assert_eq!(plain["query"], serde_json::json!({"match_all": {}}));
        assert_eq!(plain["timeout"], "100ms");
    }

    // --- the whole inventory against a scripted server that records every request ---

    pub(in crate::protocols::elasticsearch) type Route = fn(&str, &str, &str) -> Vec<u8>;

    /// Serves each connection from `route(path, head, body)` and records `head` + body. An
    /// empty answer holds the connection open without a byte (a tarpit).
    pub(in crate::protocols::elasticsearch) async fn recording(route: Route) -> FakeServer {
        FakeServer::start(Vec::new(), frames::http_request, move |m| {
            let text = m.text();
            let (head, body) = text.split_at(text.find("\r\n\r\n").map_or(text.len(), |i| i + 4));
            let path = head.split(' ').nth(1).unwrap_or("");
            let answer = route(path, head, body);
            if answer.is_empty() {
                Reply::Stall(Duration::from_secs(60))
            } else {
                Reply::SendAndClose(answer)
            }
        })
        .await
    }

    fn ctx_for(addr: SocketAddr) -> ProbeCtx {
        let scope = ScopeBuilder::new(vec![TargetSpec::parse(&addr.ip().to_string()).unwrap()])
            .build_resolved(&HashMap::new())
            .unwrap();
        ProbeCtx::new(
            addr,
            None,
            false,
            Arc::new(ProbeOptions::default()),
            Arc::new(scope),
            Arc::new(DirectConnector),
        )
    }

    pub(in crate::protocols::elasticsearch) fn json_reply(body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    fn cluster(path: &str, _head: &str, _body: &str) -> Vec<u8> {
        let (p, _) = path.split_once('?').unwrap_or((path, ""));
        match p {
            "/_cat/indices" => CAT_ALL.to_vec(),
            "/_all/_settings/index.hidden" => HIDDEN.to_vec(),
            "/people/_mapping" => NESTED_MAPPING.to_vec(),
            "/people/_count" => NESTED_COUNT.to_vec(),
            "/closed_one/_count" => CLOSED_COUNT.to_vec(),
            "/empty/_search" => EMPTY_SAMPLE.to_vec(),
            p if p.ends_with("/_search") => LAB_CUSTOMERS_SAMPLE.to_vec(),
            p if p.ends_with("/_mapping") => {
                let name = p.trim_start_matches('/').split('/').next().unwrap();
                json_reply(&format!(
                    r#"{{"{name}":{{"mappings":{{"properties":{{"msg":{{"type":"text"}}}}}}}}}}"#
                ))
            }
            p if p.ends_with("/_count") => json_reply(r#"{"count":1}"#),
            _ => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_vec(),
        }
    }

    async fn run_on(route: Route, opts: &InventoryOptions) -> (Inventory, Vec<String>) {
        let server = recording(route).await;
        let ctx = ctx_for(server.addr());
        let inv = inventory(&ctx, &Finding::new("elasticsearch"), opts).await;
        (inv, server.texts())
    }

    /// Every recorded request is a GET of an allowlisted request with at most the index name
    /// substituted, and only searches carry a body.
    fn assert_allowlisted(log: &[String]) {
        assert!(!log.is_empty());
        for req in log {
            let line = req.lines().next().unwrap();
            let path = line
                .strip_prefix("GET ")
                .and_then(|l| l.strip_suffix(" HTTP/1.1"))
                .unwrap_or_else(|| panic!("not a GET: {line}"));
            let matched = super::super::wire::ALLOWED_REQUESTS.iter().any(|a| {
                let t = a.strip_prefix("GET ").unwrap();
                match t.split_once(super::super::wire::INDEX_VAR) {
                    None => t == path,
                    Some((pre, post)) => {
                        path.len() > pre.len() + post.len()
                            && path.starts_with(pre)
                            && path.ends_with(post)
                            && !path[pre.len()..path.len() - post.len()]
                                .contains(['/', '?', '*', ','])
                    }
                }
            });
            assert!(matched, "not allowlisted: {line}");
            let has_body = req.contains("Content-Length: ");
            assert_eq!(has_body, path.contains("/_search?"), "{req}");
        }
    }

    #[tokio::test]
    async fn inventory_of_a_cluster_with_nested_hidden_and_closed_indices() {
        let opts = InventoryOptions {
            sample: 3,
            ..InventoryOptions::default()
        };
        let (inv, log) = run_on(cluster, &opts).await;
        assert_allowlisted(&log);
        let by: HashMap<_, _> = inv.holdings.iter().map(|h| (h.name.as_str(), h)).collect();
        assert_eq!(inv.holdings.len(), 6, "{inv:?}");
        // Data before system indices.
        assert!(!inv.holdings[0].system && inv.holdings[5].system);
        // Nested: `_count` (3), not docs.count (6).
        let people = by["people"];
        assert_eq!((people.records, people.records_exact), (Some(3), true));
        assert_eq!(people.kind, "index");
        assert_eq!(people.bytes, Some(6117));
        assert_eq!(people.sample.len(), 3);
        assert!(people
            .schema
            .contains(&("devices[].mac".to_string(), "keyword".to_string())));
        // No nested field: docs.count is exact and no `_count` was sent.
        let logs = by["logs+2024.01"];
        assert_eq!((logs.records, logs.records_exact), (Some(1), true));
        assert!(!log
            .iter()
            .any(|r| r.starts_with("GET /logs%2B2024.01/_count")));
        assert!(log
            .iter()
            .any(|r| r.starts_with("GET /logs%2B2024.01/_mapping ")));
        // Hidden by setting and by name: listed, marked.
        assert!(by["hidden_plain"].system && by[".hidden-store"].system && !by["empty"].system);
        // An empty index is not searched.
        assert_eq!(by["empty"].records, Some(0));
        assert!(!log.iter().any(|r| r.starts_with("GET /empty/_search")));
        // Closed: listed with its mapping, not counted or sampled.
        let closed = by["closed_one"];
        assert_eq!((closed.records, closed.sample.len()), (None, 0));
        assert!(!log.iter().any(|r| r.starts_with("GET /closed_one/_search")));
        assert!(
            inv.notes
                .iter()
                .any(|n| n.starts_with("closed_one: index is closed")),
            "{:?}",
            inv.notes
        );
    }

    #[tokio::test]
    async fn full_census_counts_every_index_with_count() {
        let opts = InventoryOptions {
            sample: 0,
            full: true,
            ..InventoryOptions::default()
        };
        let (inv, log) = run_on(cluster, &opts).await;
        assert_allowlisted(&log);
        for h in &inv.holdings {
            assert!(h.sample.is_empty());
            if h.name != "closed_one" {
                assert!(h.records_exact, "{h:?}");
            }
        }
        assert!(log
            .iter()
            .any(|r| r.starts_with("GET /logs%2B2024.01/_count ")));
        assert!(!log.iter().any(|r| r.contains("/_search")));
    }

    #[tokio::test]
    async fn max_containers_and_byte_budget_are_noted() {
        let opts = InventoryOptions {
            max_containers: 2,
            ..InventoryOptions::default()
        };
        let (inv, _) = run_on(cluster, &opts).await;
        let names: Vec<_> = inv.holdings.iter().map(|h| h.name.as_str()).collect();
        // The largest data indices come first.
        assert_eq!(names, ["people", "logs+2024.01"]);
        assert!(
            inv.notes
                .iter()
                .any(|n| n.starts_with("listed 2 of 6 indices")),
            "{:?}",
            inv.notes
        );

        // Bytes for the list and the hidden settings, nothing more: the list stays, with the
        // catalogue figures marked as estimates (the mapping, which says whether nested
        // documents inflate docs.count, was not read), and the cut is noted once.
        let budget = CAT_ALL.len() + HIDDEN.len();
        let opts = InventoryOptions {
            byte_budget: budget,
            ..InventoryOptions::default()
        };
        let (inv, log) = run_on(cluster, &opts).await;
        assert_eq!(log.len(), 2, "{log:?}");
        assert_eq!(inv.holdings.len(), 6, "{inv:?}");
        let people = inv.holdings.iter().find(|h| h.name == "people").unwrap();
        assert_eq!((people.records, people.records_exact), (Some(6), false));
        assert!(people.schema.is_empty() && people.sample.is_empty());
        assert_eq!(
            inv.notes,
            [
                "closed_one: index is closed; its documents were not counted or sampled (opening it would be a write)".to_string(),
                format!(
                    "the {budget}-byte budget was spent: 6 of 6 indices are listed with _cat/indices figures only (mapping, sample or count missing)"
                )
            ]
        );
    }

    /// A sample reply too large for the cap is asked again for fewer documents.
    fn huge_documents(path: &str, head: &str, body: &str) -> Vec<u8> {
        if path.ends_with("/_search?filter_path=hits.hits._source") {
            let size: Value = serde_json::from_str(body).unwrap();
            if size["size"].as_u64().unwrap() > 10 {
                return b"HTTP/1.1 200 OK\r\ncontent-length: 999999999999\r\n\r\n{".to_vec();
            }
            return json_reply(r#"{"hits":{"hits":[{"_source":{"a":1}},{"_source":{"a":2}}]}}"#);
        }
        if path.starts_with("/_cat/indices") {
            return json_reply(
                r#"[{"index":"big","docs.count":"100","pri.store.size":"1","status":"open"}]"#,
            );
        }
        cluster(path, head, body)
    }

    #[tokio::test]
    async fn oversized_sample_is_retried_smaller() {
        let (inv, log) = run_on(huge_documents, &InventoryOptions::default()).await;
        assert_allowlisted(&log);
        let big = &inv.holdings[0];
        assert_eq!((big.records, big.sample.len()), (Some(100), 2));
        assert!(
            inv.notes
                .iter()
                .any(|n| n.starts_with("big: sample reduced to 3 documents")),
            "{:?}",
            inv.notes
        );
    }

    /// A cluster too old for `random_score` on `_seq_no` answers 400; the plain search follows.
    fn old_cluster(path: &str, head: &str, body: &str) -> Vec<u8> {
        if path.ends_with("/_search?filter_path=hits.hits._source") && body.contains("random_score")
        {
            let e = r#"{"error":{"type":"query_shard_exception","reason":"No mapping found for [_seq_no]"},"status":400}"#;
            return format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-length: {}\r\n\r\n{e}",
                e.len()
            )
            .into_bytes();
        }
        huge_documents(
            path,
            head,
            body.replace("\"size\":200", "\"size\":2").as_str(),
        )
    }

    #[tokio::test]
    async fn clusters_without_random_score_get_a_plain_sample() {
        let (inv, log) = run_on(old_cluster, &InventoryOptions::default()).await;
        assert_allowlisted(&log);
        assert_eq!(inv.holdings[0].sample.len(), 2);
        assert!(
            inv.notes.iter().any(|n| n.contains("not spread")),
            "{:?}",
            inv.notes
        );
    }

    /// Answers the list, then never answers anything else.
    fn tarpit_after_list(path: &str, _head: &str, _body: &str) -> Vec<u8> {
        if path.starts_with("/_cat/indices") {
            return LAB_CAT_ALL.to_vec();
        }
        Vec::new()
    }

    #[tokio::test]
    async fn time_budget_keeps_the_list() {
        let opts = InventoryOptions {
            time_budget: Duration::from_millis(1500),
            ..InventoryOptions::default()
        };
        let t0 = std::time::Instant::now();
        let (inv, _) = run_on(tarpit_after_list, &opts).await;
        assert!(
            t0.elapsed() < Duration::from_millis(1500),
            "{:?}",
            t0.elapsed()
        );
        assert_eq!(inv.holdings.len(), 4);
        let customers = inv.holdings.iter().find(|h| h.name == "customers").unwrap();
        // docs.count with an unknown mapping may include nested documents: an estimate.
        assert_eq!(
            (customers.records, customers.records_exact),
            (Some(10000), false)
        );
        assert!(
            inv.notes.iter().any(|n| n.contains("time budget ran out")),
            "{:?}",
            inv.notes
        );
    }

    #[tokio::test]
    async fn default_credential_is_sent_with_every_request() {
        let server = recording(cluster).await;
        let addr = server.addr();
        let ctx = ctx_for(addr);
        let mut f = Finding::new("elasticsearch");
        f.credential = Some(super::super::probe::DEFAULTS[1]);
        let inv = inventory(&ctx, &f, &InventoryOptions::default()).await;
        assert_eq!(inv.holdings.len(), 6);
        let log = server.texts();
        // base64("admin:admin")
        assert!(log
            .iter()
            .all(|r| r.contains("Authorization: Basic YWRtaW46YWRtaW4=\r\n")));
    }
}
