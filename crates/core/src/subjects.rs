//! Impact: how many distinct people a container exposes (`subjects_estimate`).
//!
//! A container's person key is its best identity field after classification (user id, e-mail,
//! national id, user name, phone). The estimate is, in order of preference:
//! 1. the distinct key values of the sample, when the sample is the whole container;
//! 2. the record count, when every sampled record's key (a Redis or Memcached key name) embeds
//!    that record's person key, so keys and people are one to one;
//! 3. the store's own distinct count, asked read-only by the protocol's [`SubjectsFn`]
//!    (OpenSearch `cardinality`, PostgreSQL unique index / `count(distinct)` / `pg_stats`,
//!    MySQL unique index / `COUNT(DISTINCT)`, MongoDB unique index / `$group`), within a budget.
//!
//! The method is kept with the number (`Container::subjects_method`) so a reader can judge it.
//! Where none applies the estimate stays empty rather than guessed.

use std::collections::HashSet;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::inventory::{Holding, InventoryOptions};
use crate::model::{Container, Field};
use crate::probe::{Finding, ProbeCtx};

/// Identity categories that single out one person, best first.
pub const PERSON_KEYS: &[&str] = &[
    "identity.user_id",
    "identity.email",
    "government.id",
    "identity.username",
    "identity.phone",
];

/// One container whose distinct people the store is asked to count.
#[derive(Debug, Clone)]
pub struct SubjectsQuery<'a> {
    pub holding: &'a Holding,
    /// The person key as a flattened field path (`user_id`, `user.email`, `devices[].owner`).
    pub field: String,
    /// The store type of that field from the holding's schema, when declared.
    pub field_type: Option<String>,
}

/// A distinct count and how it was obtained (`OpenSearch cardinality aggregation on user_id`).
#[derive(Debug, Clone, PartialEq)]
pub struct Subjects {
    pub count: u64,
    pub method: String,
}

/// Settings for the store's distinct counts.
#[derive(Debug, Clone, Copy)]
pub struct SubjectsBudget {
    /// Time for one container's count; the store is told this too where it can be
    /// (`statement_timeout`, `maxTimeMS`, `max_statement_time`).
    pub per_container: Duration,
}

impl Default for SubjectsBudget {
    fn default() -> Self {
        SubjectsBudget {
            per_container: Duration::from_secs(10),
        }
    }
}

impl SubjectsBudget {
    /// The user's `--subjects-timeout`; else ten seconds per container, and with `--full` (an
    /// exact census was asked for) the inventory's own time budget per container.
    pub fn for_options(opts: &InventoryOptions) -> SubjectsBudget {
        let default = SubjectsBudget::default().per_container;
        SubjectsBudget {
            per_container: if let Some(b) = opts.subjects_budget {
                b
            } else if opts.full {
                opts.time_budget.max(default)
            } else {
                default
            },
        }
    }
}

/// A protocol's distinct counter: one answer per query, in order; `Err` says why not (a note).
pub type SubjectsFn = for<'a> fn(
    &'a ProbeCtx,
    &'a Finding,
    &'a InventoryOptions,
    SubjectsBudget,
    &'a [SubjectsQuery<'a>],
) -> BoxFuture<'a, Vec<Result<Subjects, String>>>;

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
    let counter = crate::probe::protocol(finding.protocol).and_then(|p| p.subjects);
    let (Some(counter), false) = (counter, asks.is_empty()) else {
        return Vec::new();
    };
    let queries: Vec<SubjectsQuery<'_>> = asks.iter().map(|(_, q)| q.clone()).collect();
    let total = budget
        .per_container
        .saturating_mul(queries.len() as u32)
        .saturating_add(Duration::from_secs(5));
    let answers =
        match tokio::time::timeout(total, counter(ctx, finding, opts, budget, &queries)).await {
            Ok(a) => a,
            Err(_) => {
                return vec![format!(
                    "distinct-people counts stopped at their {}s budget",
                    total.as_secs()
                )]
            }
        };
    let mut notes = Vec::new();
    for ((i, q), answer) in asks.iter().zip(answers) {
        match answer {
            Ok(s) => {
                containers[*i].subjects_estimate = Some(s.count);
                containers[*i].subjects_method = Some(s.method);
            }
            Err(why) => notes.push(format!(
                "{}: no distinct-people count for {} ({why})",
                q.holding.name, q.field
            )),
        }
    }
    notes
}

/// The value-sample modulus for a table of `rows`: a power of two leaving about 40 000
/// sampled values when every row is a distinct value (± 1 % at 95 %). SQL stores count the
/// distinct values whose hash is 0 modulo this, server-side, and multiply.
pub fn value_modulus(rows: f64) -> u64 {
    ((rows / 40_000.0).max(1.0) as u64)
        .next_power_of_two()
        .clamp(8, 4096)
}

/// The estimate from `k` sampled values at modulus `m`, and its relative error at 95 %: each
/// value is in the sample with probability 1/m whatever its number of rows, so `k` is
/// binomial and `k × m` unbiased, with relative standard error about 1/√k.
pub fn from_value_sample(k: u64, m: u64) -> (u64, f64) {
    let p = 1.0 / m as f64;
    let err = 1.96 * ((1.0 - p) / (k.max(1) as f64)).sqrt();
    (k * m, err)
}

/// The answer from `k` distinct values counted by `distinct` (`count(DISTINCT user_id)`) over
/// the values whose `hash` is 0 modulo `m`, with the method and its error in words.
pub fn value_sample(distinct: &str, hash: &str, k: u64, m: u64) -> Subjects {
    let (count, err) = from_value_sample(k, m);
    Subjects {
        count,
        method: format!(
            "{distinct} over the values whose {hash} is 0 modulo {m} ({k} values), × {m}: \
             an estimate within ±{:.1} % (95 %)",
            err * 100.0
        ),
    }
}

/// `10 s`, `1.5 s`: a budget in a method's words.
pub fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// The value at flattened `path` in a stored text (JSON is flattened the way samples are; a
/// plain string is its own value at the empty path). For stores where leakscope reads values.
pub fn value_at(text: String, path: &str, cap: usize) -> Option<String> {
    crate::inventory::flatten::flatten_json(&serde_json::Value::String(text), cap)
        .into_iter()
        .find(|(p, _)| p == path)
        .map(|(_, v)| v)
}

/// Counts distinct values in bounded memory: exactly up to [`DistinctCounter::EXACT`] values,
/// then with a HyperLogLog (2^14 registers, standard error about 0.8 %) seeded from them.
/// Used where the store has no distinct count of its own and leakscope reads every key.
#[derive(Debug, Clone)]
pub struct DistinctCounter {
    exact: Option<HashSet<u64>>,
    registers: Vec<u8>,
}

impl Default for DistinctCounter {
    fn default() -> Self {
        DistinctCounter {
            exact: Some(HashSet::new()),
            registers: Vec::new(),
        }
    }
}

impl DistinctCounter {
    /// Values counted exactly before switching to the sketch (8 bytes each).
    pub const EXACT: usize = 100_000;
    const P: u32 = 14;

    fn hash(value: &[u8]) -> u64 {
        use std::hash::{BuildHasher, BuildHasherDefault};
        // Fixed keys: the same value hashes the same in every counter of the run.
        BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(value)
    }

    fn sketch(&mut self, h: u64) {
        let m = 1usize << Self::P;
        if self.registers.is_empty() {
            self.registers = vec![0; m];
        }
        let idx = (h >> (64 - Self::P)) as usize;
        let rest = (h << Self::P) | (1 << (Self::P - 1));
        let rank = rest.leading_zeros() as u8 + 1;
        if rank > self.registers[idx] {
            self.registers[idx] = rank;
        }
    }

    pub fn add(&mut self, value: &[u8]) {
        let h = Self::hash(value);
        match &mut self.exact {
            Some(set) => {
                set.insert(h);
                if set.len() > Self::EXACT {
                    let set = self.exact.take().unwrap_or_default();
                    for h in set {
                        self.sketch(h);
                    }
                }
            }
            None => self.sketch(h),
        }
    }

    /// The answer after reading every key of a pattern: the count, with a method that says
    /// whether it is exact, what was read (`how`) and how many keys lacked the field.
    pub fn answer(&self, field: &str, keys_read: u64, how: &str, missing: u64) -> Subjects {
        let (count, exact) = self.count();
        Subjects {
            count,
            method: format!(
                "{} distinct {field} over all {keys_read} keys read ({how}){}",
                if exact {
                    "exact"
                } else {
                    "HyperLogLog estimate of"
                },
                if missing > 0 {
                    format!(", {missing} keys without it or gone")
                } else {
                    String::new()
                }
            ),
        }
    }

    /// The count, and whether it is exact.
    pub fn count(&self) -> (u64, bool) {
        if let Some(set) = &self.exact {
            return (set.len() as u64, true);
        }
        let m = self.registers.len() as f64;
        let sum: f64 = self
            .registers
            .iter()
            .map(|&r| 2f64.powi(-i32::from(r)))
            .sum();
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let e = alpha * m * m / sum;
        let zeros = self.registers.iter().filter(|&&r| r == 0).count();
        let e = if e <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            e
        };
        (e.round() as u64, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_counter_is_exact_then_close() {
        let mut c = DistinctCounter::default();
        for i in 0..50_000u32 {
            c.add(format!("user-{}", i % 20_000).as_bytes());
        }
        assert_eq!(c.count(), (20_000, true));
        let mut c = DistinctCounter::default();
        let n = 1_000_000u32;
        for i in 0..2 * n {
            c.add(format!("{:08x}-person", i % n).as_bytes());
        }
        let (got, exact) = c.count();
        assert!(!exact);
        let err = (got as f64 - f64::from(n)).abs() / f64::from(n);
        assert!(
            err < 0.03,
            "HyperLogLog estimate {got} for {n} is {err:.4} off"
        );
    }

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
