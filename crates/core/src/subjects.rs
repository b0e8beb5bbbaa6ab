//! Impact: how many distinct people a container exposes (`subjects_estimate`).
//!
//! A container's person key is its best identity field after classification (user id, e-mail,
//! national id, user name, phone). The estimate is, in order of preference:
//! 1. the distinct key values of the sample, when the sample is the whole container;
//! 2. the record count, when every sampled record's key (a Redis or Memcached key name) embeds
//!    that record's person key, so keys and people are one to one;
//! 3. the store's own distinct count, asked read-only by the protocol's
//!    [`SubjectsFn`](crate::driver::SubjectsFn)
//!    (OpenSearch `cardinality`, PostgreSQL unique index / `count(distinct)` / `pg_stats`,
//!    MySQL unique index / `COUNT(DISTINCT)`, MongoDB unique index / `$group`), within a budget;
//! 4. for a key pattern without a person key in its values (`alexa:<id>` holding tokens only):
//!    the record count, when the ids in its sampled key names are the ids of a pattern with one
//!    record per person (`user:<id>`), checked by asking the store whether those keys exist
//!    ([`KeysExistFn`]). Keys are unique, so their ids are distinct people. A control asks for
//!    the same ids with their last character changed: in a dense id space (`order:1…n` against
//!    `user:1…n`) those exist too, and the match says nothing.
//!
//! The method is kept with the number (`Container::subjects_method`) so a reader can judge it.
//! Where none applies the estimate stays empty rather than guessed.

use std::collections::HashSet;

use crate::driver::{
    Counting, Finding, KeysExistFn, ProbeCtx, Subjects, SubjectsBudget, SubjectsQuery,
};
use crate::inventory::{Holding, InventoryOptions};
use crate::model::{Container, Field};

/// Identity categories that single out one person, best first.
pub const PERSON_KEYS: &[&str] = &[
    "identity.user_id",
    "identity.email",
    "government.id",
    "identity.username",
    "identity.phone",
];

/// Share of a container's sampled key ids that must be keys of a one-person-per-record
/// pattern for its keys to be counted as people (method 4).
pub const KEY_ID_MATCH: f64 = 0.95;

/// Sampled key names needed for method 4 (fewer say too little).
const KEY_ID_SAMPLE: usize = 20;

/// The literal prefix of a key pattern's keys (`alexa:` for `alexa:8f3…`), when every
/// sampled key has the same one.
fn key_prefix(keys: &[String]) -> Option<&str> {
    let first = keys.first()?;
    let pattern = crate::inventory::keys::pattern(first);
    let prefix = &first[..crate::inventory::keys::family_prefix(&pattern)?.len()];
    (!prefix.is_empty()
        && keys
            .iter()
            .all(|k| k.len() > prefix.len() && k.starts_with(prefix)))
    .then_some(prefix)
}

/// One existence check of method 4: the keys of `family` (a pattern with one record per
/// person) that `candidate`'s sampled key ids would be, and the control keys (the same ids,
/// each with its last character changed).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyIdCheck {
    pub candidate: usize,
    pub family: usize,
    pub keys: Vec<String>,
    pub controls: Vec<String>,
}

/// `id` with its last ASCII letter or digit replaced by the next one of its kind (`…7f` →
/// `…7g`, `…09` → `…00`): a near neighbour that exists only where ids are dense.
fn neighbour(id: &str) -> String {
    let mut b = id.as_bytes().to_vec();
    if let Some(c) = b.iter_mut().rev().find(|c| c.is_ascii_alphanumeric()) {
        *c = match *c {
            b'9' => b'0',
            b'z' => b'a',
            b'Z' => b'A',
            x => x + 1,
        };
    }
    String::from_utf8(b).unwrap_or_else(|_| id.to_string())
}

/// The existence checks of method 4, in order of preference per candidate: containers still
/// without an estimate, with classified data but no person key, whose sampled keys share a
/// prefix; families are key patterns whose estimate is within 5 % of their exact record count
/// (one record per person).
pub fn key_id_checks(holdings: &[Holding], containers: &[Container]) -> Vec<KeyIdCheck> {
    let families: Vec<(usize, &str)> = holdings
        .iter()
        .zip(containers)
        .enumerate()
        .filter_map(|(j, (h, c))| {
            let (s, r) = (c.subjects_estimate?, h.records?);
            let one_each =
                h.records_exact && r > 0 && (s as f64 - r as f64).abs() <= 0.05 * r as f64;
            one_each.then_some((j, key_prefix(&h.sample_keys)?))
        })
        .collect();
    let mut out = Vec::new();
    for (i, (h, c)) in holdings.iter().zip(containers).enumerate() {
        if c.subjects_estimate.is_some()
            || c.categories.is_empty()
            || person_key(&c.fields).is_some()
            || h.sample_keys.len() < KEY_ID_SAMPLE
            || h.records.is_none()
        {
            continue;
        }
        let Some(prefix) = key_prefix(&h.sample_keys) else {
            continue;
        };
        let ids: Vec<&str> = h.sample_keys.iter().map(|k| &k[prefix.len()..]).collect();
        for &(j, family) in &families {
            if j != i && family != prefix {
                out.push(KeyIdCheck {
                    candidate: i,
                    family: j,
                    keys: ids.iter().map(|id| format!("{family}{id}")).collect(),
                    controls: ids
                        .iter()
                        .map(|id| format!("{family}{}", neighbour(id)))
                        .collect(),
                });
            }
        }
    }
    out
}

/// The container's person key: the field whose first category ranks best in [`PERSON_KEYS`].
pub fn person_key(fields: &[Field]) -> Option<&Field> {
    PERSON_KEYS.iter().find_map(|key| {
        fields
            .iter()
            .find(|f| f.categories.first().map(String::as_str) == Some(*key))
    })
}

/// The estimate that needs no further question to the store, if any (methods 1 and 2 above).
pub fn from_sample(h: &Holding, key: &Field) -> Option<Subjects> {
    if h.sample.is_empty() {
        return None;
    }
    let values = |r: &crate::inventory::Record| -> Vec<String> {
        r.iter()
            .filter(|(p, _)| *p == key.path)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let complete = h
        .records
        .is_some_and(|r| r == h.sample.len() as u64 && h.records_exact);
    if complete {
        let distinct: HashSet<String> = h.sample.iter().flat_map(values).collect();
        return Some(Subjects {
            count: distinct.len() as u64,
            method: format!(
                "distinct {} values of the whole container (all {} records read)",
                key.path,
                h.sample.len()
            ),
            interval: None,
        });
    }
    // Keys name one person each when every sampled key embeds its record's person key and no
    // two sampled records share a person key.
    let records = h.records?;
    if h.sample_keys.len() != h.sample.len() || h.sample.len() < 20 {
        return None;
    }
    let mut seen = HashSet::new();
    for (rec, rkey) in h.sample.iter().zip(&h.sample_keys) {
        let vals = values(rec);
        let [v] = vals.as_slice() else { return None };
        if v.len() < 4 || !rkey.contains(v.as_str()) || !seen.insert(v.clone()) {
            return None;
        }
    }
    Some(Subjects {
        count: records,
        method: format!(
            "one person per key: each of {} sampled keys embeds its record's {}",
            h.sample.len(),
            key.path
        ),
        interval: None,
    })
}

/// Fills `subjects_estimate`/`subjects_method` of `containers` (built from `holdings`, same
/// order): from the samples where they suffice, else from the protocol's own distinct count.
/// Returns notes on counts that failed.
pub async fn estimate(
    ctx: &ProbeCtx,
    finding: &Finding,
    opts: &InventoryOptions,
    budget: SubjectsBudget,
    holdings: &[Holding],
    containers: &mut [Container],
) -> Vec<String> {
    let mut asks: Vec<(usize, SubjectsQuery<'_>)> = Vec::new();
    for (i, (h, c)) in holdings.iter().zip(containers.iter_mut()).enumerate() {
        let Some(key) = person_key(&c.fields) else {
            continue;
        };
        if let Some(s) = from_sample(h, key) {
            c.subjects_estimate = Some(s.count);
            c.subjects_method = Some(s.method);
            continue;
        }
        let field = key.path.clone();
        let field_type = h
            .schema
            .iter()
            .find(|(p, _)| *p == field)
            .map(|(_, t)| t.clone());
        asks.push((
            i,
            SubjectsQuery {
                holding: h,
                field,
                field_type,
            },
        ));
    }
    let mut notes = ask_store(ctx, finding, opts, budget, asks, containers).await;
    let exists = crate::protocols::protocol(finding.protocol).and_then(|p| p.keys_exist);
    notes.extend(by_key_ids(ctx, exists, holdings, containers).await);
    if opts.sample > 0 {
        notes.extend(unexplained(containers, &notes));
    }
    notes
}

/// Why a container that may hold people has no estimate, where no note says so yet: it was
/// not sampled (the budget ran out first), or its sample has data but no person field.
fn unexplained(containers: &[Container], notes: &[String]) -> Vec<String> {
    containers
        .iter()
        .filter(|c| c.subjects_estimate.is_none() && !c.system && c.records != Some(0))
        .filter(|c| {
            !notes
                .iter()
                .any(|n| n.starts_with(&format!("{}: ", c.name)))
        })
        .filter_map(|c| {
            let why = if c.sampled == 0 {
                "not sampled within the budget, so its person field is unknown"
            } else if !c.categories.is_empty() {
                "no person field in its sample, and no other container's keys match its key ids"
            } else {
                return None;
            };
            Some(format!("{}: no distinct-people count ({why})", c.name))
        })
        .collect()
}

/// Method 3: the protocol's distinct counts for `asks` (container index, query).
async fn ask_store(
    ctx: &ProbeCtx,
    finding: &Finding,
    opts: &InventoryOptions,
    budget: SubjectsBudget,
    asks: Vec<(usize, SubjectsQuery<'_>)>,
    containers: &mut [Container],
) -> Vec<String> {
    let counter = crate::protocols::protocol(finding.protocol).and_then(|p| p.subjects);
    let (Some(counter), false) = (counter, asks.is_empty()) else {
        return Vec::new();
    };
    let queries: Vec<SubjectsQuery<'_>> = asks.iter().map(|(_, q)| q.clone()).collect();
    let budget = budget.shared(queries.len());
    let total = budget.total(queries.len());
    let answers = match tokio::time::timeout(
        total,
        counter(Counting {
            ctx,
            finding,
            opts,
            budget,
            queries: &queries,
        }),
    )
    .await
    {
        Ok(a) => a,
        Err(_) => {
            // Each container without a count says why, as a container whose count failed does.
            return asks
                .iter()
                .map(|(_, q)| {
                    format!(
                        "{}: no distinct-people count for {} (the counts stopped at their {} \
                         budget)",
                        q.holding.name,
                        q.field,
                        crate::driver::secs(total)
                    )
                })
                .collect();
        }
    };
    let mut notes = Vec::new();
    for ((i, q), answer) in asks.iter().zip(answers) {
        match answer {
            Ok(s) => {
                containers[*i].subjects_estimate = Some(s.count);
                containers[*i].subjects_method = Some(s.method);
                containers[*i].subjects_interval = s.interval;
            }
            Err(why) => notes.push(format!(
                "{}: no distinct-people count for {} ({why})",
                q.holding.name, q.field
            )),
        }
    }
    notes
}

/// Method 4 (see the module docs): the first family whose keys the candidate's key ids are.
async fn by_key_ids(
    ctx: &ProbeCtx,
    exists: Option<KeysExistFn>,
    holdings: &[Holding],
    containers: &mut [Container],
) -> Vec<String> {
    let Some(exists) = exists else {
        return Vec::new();
    };
    let mut notes = Vec::new();
    for check in key_id_checks(holdings, containers) {
        let (c, f) = (&holdings[check.candidate], &holdings[check.family]);
        if containers[check.candidate].subjects_estimate.is_some() {
            continue;
        }
        let asked = check.keys.len() as u64;
        let verdict = async {
            // Some((matched, neighbours matched)) when the ids are the family's.
            let n = exists(ctx, &f.name, &check.keys).await?;
            if (n as f64) < KEY_ID_MATCH * asked as f64 {
                return Ok::<_, String>(None);
            }
            let k = exists(ctx, &f.name, &check.controls).await?;
            Ok(((k as f64) <= (1.0 - KEY_ID_MATCH) * asked as f64).then_some((n, k)))
        };
        match verdict.await {
            Ok(Some((n, k))) => {
                let records = c.records.unwrap_or(0);
                let target = &mut containers[check.candidate];
                // Keys whose id is not a person's (the few that did not match) are left out.
                target.subjects_estimate =
                    Some((records as f64 * n as f64 / asked as f64).round() as u64);
                target.subjects_method = Some(format!(
                    "one person per key: {n} of {asked} sampled key ids of {} are keys of {} \
                     (one record per person; {k} of their neighbouring ids are), × {records} \
                     {}records",
                    c.name,
                    f.name,
                    if c.records_exact { "" } else { "estimated " }
                ));
            }
            Ok(None) => {}
            Err(why) => notes.push(format!(
                "{}: could not check its key ids against {} ({why})",
                c.name, f.name
            )),
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(path: &str, cat: &str) -> Field {
        Field {
            path: path.into(),
            categories: vec![cat.into()],
            confidence: 0.9,
            seen: 1,
            matched: 1,
            examples: vec![],
            fingerprints: vec![],
        }
    }

    fn holding(n: usize, records: u64, exact: bool, keys: bool) -> Holding {
        Holding {
            name: "h".into(),
            kind: "keyspace",
            records: Some(records),
            records_exact: exact,
            sample: (0..n)
                .map(|i| vec![("uid".to_string(), format!("u-{:04}", i % 40))])
                .collect(),
            sample_keys: if keys {
                (0..n).map(|i| format!("user:u-{:04}", i % 40)).collect()
            } else {
                vec![]
            },
            ..Holding::default()
        }
    }

    #[test]
    fn the_best_identity_field_is_the_person_key() {
        let fields = vec![
            field("mail", "identity.email"),
            field("token", "credential.api_token"),
            field("uid", "identity.user_id"),
        ];
        assert_eq!(person_key(&fields).unwrap().path, "uid");
        assert!(person_key(&[field("token", "credential.api_token")]).is_none());
    }

    #[test]
    fn a_whole_sample_counts_distinct_values() {
        let k = field("uid", "identity.user_id");
        let s = from_sample(&holding(100, 100, true, false), &k).unwrap();
        assert_eq!(s.count, 40);
        // Not the whole container, or an estimated count: no answer from the sample.
        assert!(from_sample(&holding(100, 1000, true, false), &k).is_none());
        assert!(from_sample(&holding(100, 100, false, false), &k).is_none());
    }

    #[test]
    fn keys_that_embed_distinct_person_keys_count_people() {
        let k = field("uid", "identity.user_id");
        let s = from_sample(&holding(40, 5000, false, true), &k).unwrap();
        assert_eq!(s.count, 5000);
        // A repeated person key in the sample (two keys, one person) rules the shortcut out.
        assert!(from_sample(&holding(41, 5000, false, true), &k).is_none());
        // Keys that do not embed the person key (device:<serial> holding user_id) neither.
        let mut h = holding(40, 5000, false, true);
        h.sample_keys = (0..40).map(|i| format!("device:{i}")).collect();
        assert!(from_sample(&h, &k).is_none());
    }
}

#[cfg(test)]
mod key_id_tests {
    use super::*;

    fn kv(name: &str, prefix: &str, ids: std::ops::Range<u32>, records: u64) -> Holding {
        Holding {
            name: name.into(),
            kind: "keyspace",
            records: Some(records),
            records_exact: true,
            sample: ids.clone().map(|_| vec![]).collect(),
            sample_keys: ids.map(|i| format!("{prefix}{i:08x}")).collect(),
            ..Holding::default()
        }
    }

    fn container(subjects: Option<u64>, cats: &[&str], fields: &[(&str, &str)]) -> Container {
        Container {
            name: String::new(),
            kind: "keyspace".into(),
            records: None,
            records_estimated: false,
            system: false,
            bytes: None,
            sampled: 0,
            subjects_estimate: subjects,
            subjects_method: None,
            subjects_interval: None,
            categories: cats.iter().map(|c| c.to_string()).collect(),
            fields: fields
                .iter()
                .map(|(p, c)| Field {
                    path: p.to_string(),
                    categories: vec![c.to_string()],
                    confidence: 0.9,
                    seen: 1,
                    matched: 1,
                    examples: vec![],
                    fingerprints: vec![],
                })
                .collect(),
        }
    }

    #[test]
    fn key_ids_are_checked_against_one_record_per_person_patterns_only() {
        let holdings = vec![
            // One record per person: 1,000 records, 1,000 people.
            kv("db0:user:*", "user:", 0..40, 1000),
            // Devices: 1,600 records of 1,000 people; not a family.
            kv("db0:device:*", "device:", 0..40, 1600),
            // Tokens only, no person key: the candidate.
            kv("db1:alexa:*", "alexa:", 0..30, 400),
            // Has its own person key: not a candidate.
            kv("db0:sess:*", "sess:", 0..30, 300),
            // No classified data: not a candidate.
            kv("db0:counter:*", "counter:", 0..30, 300),
            // Too few sampled keys to judge.
            kv("db1:tiny:*", "tiny:", 0..5, 5),
        ];
        let containers = vec![
            container(
                Some(1000),
                &["identity.email"],
                &[("email", "identity.email")],
            ),
            container(
                Some(1000),
                &["identity.user_id"],
                &[("user_id", "identity.user_id")],
            ),
            container(
                None,
                &["credential.oauth_token"],
                &[("access_token", "credential.oauth_token")],
            ),
            container(
                None,
                &["identity.user_id"],
                &[("user_id", "identity.user_id")],
            ),
            container(None, &[], &[]),
            container(
                None,
                &["credential.oauth_token"],
                &[("t", "credential.oauth_token")],
            ),
        ];
        let checks = key_id_checks(&holdings, &containers);
        assert_eq!(checks.len(), 1, "{checks:?}");
        assert_eq!((checks[0].candidate, checks[0].family), (2, 0));
        assert_eq!(checks[0].keys.len(), 30);
        assert_eq!(checks[0].keys[1], "user:00000001");
        assert_eq!(checks[0].controls[1], "user:00000002");
    }

    #[test]
    fn a_family_needs_an_exact_record_count_and_one_shared_prefix() {
        let mut user = kv("db0:user:*", "user:", 0..40, 1000);
        user.records_exact = false;
        let holdings = vec![user, kv("db1:alexa:*", "alexa:", 0..30, 400)];
        let containers = vec![
            container(
                Some(1000),
                &["identity.email"],
                &[("email", "identity.email")],
            ),
            container(None, &["credential.oauth_token"], &[]),
        ];
        assert!(key_id_checks(&holdings, &containers).is_empty());
        assert_eq!(key_prefix(&["a:1".into(), "a:2".into()]), Some("a:"));
        assert_eq!(key_prefix(&["a:1".into(), "b:2".into()]), None);
        assert_eq!(key_prefix(&["plain".into()]), None);
        assert_eq!(neighbour("9f3e-c1d9"), "9f3e-c1d0");
        assert_eq!(neighbour("ab-z"), "ab-a");
        assert_eq!(neighbour("--"), "--");
    }

    /// The decision of method 4 on the store's answers; the answers themselves come from a
    /// real Redis in `lab/tests/test_subjects.py`. Here a store stands in whose keys are
    /// `user:` and the numbers in `present` (a dense id space, or sparse random ids).
    fn decide(present: fn(u32) -> bool) -> Option<u64> {
        fn exists<'a>(
            _: &'a ProbeCtx,
            _: &'a str,
            keys: &'a [String],
        ) -> futures::future::BoxFuture<'a, Result<u64, String>> {
            let n = keys
                .iter()
                .filter(|k| {
                    let id = u32::from_str_radix(k.trim_start_matches("user:"), 16).unwrap();
                    PRESENT.with(|p| p.get().is_some_and(|f| f(id)))
                })
                .count();
            Box::pin(async move { Ok(n as u64) })
        }
        type Present = Option<fn(u32) -> bool>;
        thread_local!(static PRESENT: std::cell::Cell<Present> = const { std::cell::Cell::new(None) });
        PRESENT.with(|p| p.set(Some(present)));
        let holdings = vec![
            kv("db0:user:*", "user:", 0..40, 1000),
            // Ids spaced 16 apart: 0x00, 0x10, 0x20 …
            Holding {
                sample_keys: (0..30).map(|i| format!("alexa:{:08x}", i * 16)).collect(),
                ..kv("db1:alexa:*", "alexa:", 0..30, 400)
            },
        ];
        let mut containers = vec![
            container(
                Some(1000),
                &["identity.email"],
                &[("email", "identity.email")],
            ),
            container(None, &["credential.oauth_token"], &[]),
        ];
        let ctx = crate::driver::test_ctx(
            "127.0.0.1:1".parse().unwrap(),
            crate::driver::ProbeOptions::default(),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let notes = rt.block_on(by_key_ids(&ctx, Some(exists), &holdings, &mut containers));
        assert!(notes.is_empty(), "{notes:?}");
        containers[1].subjects_estimate
    }

    #[test]
    fn key_ids_count_people_only_when_their_neighbours_are_not_keys_too() {
        // Sparse: exactly the sampled ids are user keys.
        assert_eq!(decide(|id| id % 16 == 0), Some(400));
        // Dense: every id is a user key, the neighbours too; the match means nothing.
        assert_eq!(decide(|_| true), None);
        // Too few of the ids are user keys.
        assert_eq!(decide(|id| id % 32 == 0), None);
    }
}
