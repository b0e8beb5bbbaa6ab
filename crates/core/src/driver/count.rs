//! People counts: what a protocol's distinct counter is asked and answers, and the helpers
//! every counter shares (a bounded distinct counter, the value sample of SQL stores).
//!
//! [`crate::subjects`] decides which containers need a count and how to read the answer; each
//! protocol's `count` module asks its store.

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;

use super::budget::{margin, Budget};
use crate::inventory::{Holding, InventoryOptions};

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
    /// Where an estimate's truth lies (`[low, high]`): a 95 % interval for a sampled ratio, or
    /// certain bounds for a read cut short. None for exact counts and where unknown.
    pub interval: Option<[u64; 2]>,
}

/// Settings for the store's distinct counts.
#[derive(Debug, Clone, Copy)]
pub struct SubjectsBudget {
    /// Time for one container's count; the store is told this too where it can be
    /// (`statement_timeout`, `maxTimeMS`, `max_statement_time`).
    pub per_container: Duration,
    /// When the service's own budget ends (see [`super::SERVICE_DEFAULT`] for the model): the counts stop then
    /// however many containers are left, and each container's share is what is left divided
    /// among those still to count. None: a share of `per_container` each, however long.
    pub until: Option<Instant>,
}

impl Default for SubjectsBudget {
    fn default() -> Self {
        SubjectsBudget {
            per_container: Duration::from_secs(10),
            until: None,
        }
    }
}

impl SubjectsBudget {
    /// Time the engine gives the counts of `queries` containers: each its share, plus 5 s for
    /// logins and the slowest answer; with [`Self::until`], never more than a [`GRACE`] past it
    /// (the counters end by then themselves; the grace keeps their answers from being dropped
    /// with the future at the same instant).
    pub fn total(&self, queries: usize) -> Duration {
        let each = self
            .per_container
            .saturating_mul(u32::try_from(queries).unwrap_or(u32::MAX))
            .saturating_add(Duration::from_secs(5));
        match self.until {
            Some(until) => each.min(until.saturating_duration_since(Instant::now()) + GRACE),
            None => each,
        }
    }

    /// The budget for `queries` containers to count from now: with [`Self::until`], each
    /// container's share is the time left divided among them (at most `per_container`).
    pub fn shared(&self, queries: usize) -> SubjectsBudget {
        match self.until {
            Some(until) => SubjectsBudget {
                per_container: self.per_container.min(
                    until.saturating_duration_since(Instant::now())
                        / u32::try_from(queries.max(1)).unwrap_or(u32::MAX),
                ),
                until: Some(until),
            },
            None => *self,
        }
    }

    /// The read timeout of a counting session whose deadline, not a read timeout, ends its
    /// reads: one container's time, and 2 s for the answer to arrive after it.
    pub fn read_timeout(&self) -> Duration {
        self.per_container + Duration::from_secs(2)
    }

    /// The counts' budget for `queries` containers: the engine's time for them ([`Self::total`])
    /// less the driver's margin, and `bytes`.
    pub fn budget(&self, queries: usize, bytes: usize) -> Budget {
        let total = self.total(queries);
        Budget::new(Instant::now() + total.saturating_sub(margin(total)), bytes)
    }

    /// The user's `--subjects-timeout`; with `--full` (an exact census was asked for) the
    /// inventory's own time budget per container; else the rest of the service's budget,
    /// shared among its containers (`service_end`, see [`super::SERVICE_DEFAULT`]).
    pub fn for_options(opts: &InventoryOptions, service_end: Instant) -> SubjectsBudget {
        let default = SubjectsBudget::default().per_container;
        if let Some(b) = opts.subjects_budget {
            SubjectsBudget {
                per_container: b,
                until: None,
            }
        } else if opts.full {
            SubjectsBudget {
                per_container: opts.time_budget.max(default),
                until: None,
            }
        } else {
            SubjectsBudget {
                per_container: default,
                until: Some(service_end),
            }
        }
    }
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
        interval: Some(around(count, err)),
    }
}

/// `count` ± `err` (relative), as an interval.
pub fn around(count: u64, err: f64) -> [u64; 2] {
    let c = count as f64;
    [
        (c * (1.0 - err)).max(0.0).round() as u64,
        (c * (1.0 + err)).round() as u64,
    ]
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

    pub(crate) fn hash(value: &[u8]) -> u64 {
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

    /// The answer after reading every key of a pattern or document of a collection (`unit`):
    /// the count, with a method that says whether it is exact, what was read (`how`) and how
    /// many lacked the field.
    pub fn answer(&self, field: &str, read: u64, unit: &str, how: &str, missing: u64) -> Subjects {
        let (count, exact) = self.count();
        Subjects {
            count,
            method: format!(
                "{} distinct {field} over all {read} {unit} read ({how}){}",
                if exact {
                    "exact"
                } else {
                    "HyperLogLog estimate of"
                },
                if missing > 0 {
                    format!(", {missing} {unit} without it or gone")
                } else {
                    String::new()
                }
            ),
            // 2^14 registers: a standard error of 1.04/128, so ±1.6 % at 95 %.
            interval: (!exact).then(|| around(count, 0.0163)),
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

/// How often each value occurs among the first records of a read that may be cut short: the
/// frequency profile the estimate of [`partial_read`] needs. Bounded: it stops taking records
/// once it holds [`ValueProfile::CAP`] distinct values (the records it took stay a sample).
#[derive(Debug, Clone, Default)]
pub struct ValueProfile {
    seen: std::collections::HashMap<u64, u32>,
    records: u64,
    full: bool,
}

impl ValueProfile {
    /// Distinct values kept (about 16 bytes each).
    pub const CAP: usize = 200_000;

    pub fn add(&mut self, value: &[u8]) {
        if self.full {
            return;
        }
        *self.seen.entry(DistinctCounter::hash(value)).or_insert(0) += 1;
        self.records += 1;
        self.full = self.seen.len() >= Self::CAP;
    }

    /// Records taken, distinct values among them, and the values seen once and twice.
    pub fn counts(&self) -> (u64, u64, u64, u64) {
        let f = |k: u32| self.seen.values().filter(|&&c| c == k).count() as u64;
        (self.records, self.seen.len() as u64, f(1), f(2))
    }
}

/// A read of a pattern's person field cut short: `read` records read (`missing` of them without
/// the field) of `total`, the `field`, how the records were read (`how`) and why it stopped.
#[derive(Debug, Clone, Copy)]
pub struct CutShort<'a> {
    pub read: u64,
    pub missing: u64,
    pub total: u64,
    pub field: &'a str,
    pub how: &'a str,
    pub why: &'a str,
}

/// Distinct values among `total` records when a read that went through them in an order
/// unrelated to their values (Redis SCAN walks its hash table) was cut short: `counter` holds
/// every value read (`read` records, `missing` of them without one) and `profile` the
/// frequencies among the first of them. The estimate treats the records read as a random
/// sample of fraction q and adds to the values seen the unseen ones by Chao and Lin's estimator
/// for sampling without replacement (f1² / (2·n/(n−1)·f2 + q/(1−q)·f1)); the interval is
/// certain: at least the values seen, at most those plus one per record not read.
pub fn partial_read(
    counter: &DistinctCounter,
    profile: &ValueProfile,
    cut: CutShort<'_>,
) -> Option<Subjects> {
    let CutShort {
        read,
        missing,
        total,
        field,
        how,
        why,
    } = cut;
    let (n, d, f1, f2) = profile.counts();
    let with_value = read.saturating_sub(missing);
    if n < 100 || with_value == 0 || total <= read {
        return None;
    }
    // The records of the whole pattern that hold a value, at the share read.
    let total_valued = (total as f64 * with_value as f64 / read as f64).max(n as f64);
    let q = (n as f64 / total_valued).min(0.999);
    let (n_f, f1_f, f2_f) = (n as f64, f1 as f64, f2 as f64);
    let unseen = if f1 == 0 {
        0.0
    } else {
        f1_f * f1_f / (2.0 * n_f / (n_f - 1.0) * f2_f + q / (1.0 - q) * f1_f)
    };
    // The distinct values read: exact, or a HyperLogLog figure whose low end is taken.
    let seen = match counter.count() {
        (seen, true) => seen,
        (seen, false) => around(seen, 0.0163)[0],
    };
    let high = seen + (total - read);
    let count = ((d as f64 + unseen).round() as u64).clamp(seen, high);
    Some(Subjects {
        count,
        method: format!(
            "estimate from the first {read} of {total} keys read ({how}) before {why}: {d} \
             distinct {field} among {n} of them ({f1} seen once, {f2} twice), unseen ones by \
             Chao and Lin's estimator for a sample of {:.1} %; between {seen} (distinct values \
             read) and {high} (one more per key not read)",
            q * 100.0
        ),
        interval: Some([seen, high]),
    })
}

/// How much later than a SQL server's own statement time limit a count stops waiting, so that
/// the server's cancellation arrives first and the session stays in step (MariaDB's limit is
/// whole seconds, rounded up).
pub const GRACE: Duration = Duration::from_millis(1500);

/// One container's share of the people counts, for stores that can be told to stop a
/// statement themselves (`statement_timeout`, `max_statement_time`): the server is told to stop
/// at [`Slot::end`]; the client waits until [`Slot::wait_until`], a [`GRACE`] later.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub end: Instant,
    /// The container's share of time, for the words of a note.
    pub share: Duration,
    limit: Instant,
}

impl Slot {
    /// A slot of `share` starting now, ending early enough that its grace still fits in the
    /// counts' `budget`.
    pub fn new(share: Duration, budget: &Budget) -> Slot {
        let latest = budget
            .deadline()
            .checked_sub(GRACE)
            .unwrap_or_else(Instant::now);
        Slot {
            end: (Instant::now() + share).min(latest),
            share,
            limit: budget.deadline(),
        }
    }

    /// Milliseconds left until the server should stop (0: no time to start a statement).
    pub fn millis_left(&self) -> u64 {
        self.end
            .saturating_duration_since(Instant::now())
            .as_millis() as u64
    }

    /// When the client stops waiting for a statement of this slot.
    pub fn wait_until(&self) -> Instant {
        (self.end + GRACE).min(self.limit)
    }

    /// Why a statement of this slot has no answer: `exceeded the 10 s budget`.
    pub fn exceeded(&self) -> String {
        format!("exceeded the {} budget", secs(self.share))
    }
}

/// How one statement of a count ended, short of a broken session: its answer `A`, out of time
/// (why, in words), or refused with the store's error `E`.
#[derive(Debug)]
pub enum Got<A, E> {
    Answer(A),
    OutOfTime(String),
    Refused(E),
}

/// The column a flattened field path (`profile.email`, `devices[].owner`) lies inside: the
/// longest column name the path starts with, followed by `.` or `[]` (names may hold dots).
pub fn outer_column<'c>(
    field: &str,
    columns: &'c [(String, String)],
) -> Option<&'c (String, String)> {
    columns
        .iter()
        .filter(|(c, _)| {
            field
                .strip_prefix(c.as_str())
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with("[]"))
        })
        .max_by_key(|(c, _)| c.len())
}

/// Tables estimated above this many rows are first counted on a sample of their values (see
/// [`value_sample`]): an exact count of millions of distinct values takes the server far longer
/// than the default budget (34 s for the lab's 3.8 M-row table in MariaDB; 5.6 s for the sample).
pub const EXACT_ROWS: f64 = 1_000_000.0;

/// Sampled values below this leave the estimate too loose (± 4.5 % at 95 %): the exact count
/// is tried instead, which is cheap for so few distinct values.
pub const PRECISE_SAMPLE: u64 = 2_000;

/// A value sample too small to stand on its own: kept for when the exact count runs out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LooseSample {
    /// What hashed the values (`CRC32`, `hash`).
    pub hash: &'static str,
    pub k: u64,
    pub m: u64,
}

/// What `counted` (`COUNT(DISTINCT user_id)`) over the values whose `hash` is 0 modulo `m`
/// found, `k` values: the estimate when they are enough ([`PRECISE_SAMPLE`]), else the loose
/// sample for later.
pub fn from_hashed(
    counted: &str,
    hash: &'static str,
    k: u64,
    m: u64,
) -> Result<Subjects, LooseSample> {
    if k >= PRECISE_SAMPLE {
        Ok(value_sample(counted, hash, k, m))
    } else {
        Err(LooseSample { hash, k, m })
    }
}

impl<A, E> Got<A, E> {
    /// The answer's number (as `number` reads it), the other outcomes as they were.
    pub fn number(
        self,
        number: impl FnOnce(&A) -> Result<u64, String>,
    ) -> Result<Got<u64, E>, String> {
        Ok(match self {
            Got::Answer(a) => Got::Answer(number(&a)?),
            Got::OutOfTime(why) => Got::OutOfTime(why),
            Got::Refused(e) => Got::Refused(e),
        })
    }
}

/// The last step of a SQL store's distinct count, the exact `counted` (`count(DISTINCT col)`):
/// its answer; when it ran out of time, the loose value sample if one was taken, else
/// `fallback(why)` (the store's statistics); when it was refused, why.
pub fn exact_or<E: std::fmt::Display>(
    got: Got<u64, E>,
    counted: &str,
    sampled: Option<LooseSample>,
    fallback: impl FnOnce(&str) -> Result<Subjects, String>,
) -> Result<Subjects, String> {
    match got {
        Got::Answer(n) => Ok(Subjects {
            count: n,
            method: format!("{counted}, exact"),
            interval: None,
        }),
        Got::OutOfTime(why) => match sampled {
            Some(LooseSample { hash, k, m }) => {
                let mut est = value_sample(counted, hash, k, m);
                est.method
                    .push_str(&format!(", since the exact count {why}"));
                Ok(est)
            }
            None => fallback(&why),
        },
        Got::Refused(e) => Err(format!("{counted} refused: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read cut short after a random `share` of `records` (value of record i: `value(i)`).
    fn cut_read(records: u64, share: f64, value: impl Fn(u64) -> u64) -> Option<Subjects> {
        // A fixed pseudo-random order (records sorted by a SplitMix64 hash of their index)
        // stands for SCAN's, which has nothing to do with the values.
        let mix = |i: u64| {
            let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let mut order: Vec<u64> = (0..records).collect();
        order.sort_by_key(|&i| mix(i));
        let read = (records as f64 * share) as u64;
        let (mut counter, mut profile) = (DistinctCounter::default(), ValueProfile::default());
        for &i in order.iter().take(read as usize) {
            let v = format!("person-{}", value(i));
            counter.add(v.as_bytes());
            profile.add(v.as_bytes());
        }
        let cut = CutShort {
            read,
            missing: 0,
            total: records,
            field: "user_id",
            how: "SCAN",
            why: "time ran out",
        };
        partial_read(&counter, &profile, cut)
    }

    #[test]
    fn a_read_cut_short_estimates_within_its_bounds() {
        // One record per person: every value read is new, the estimate is the record count.
        let s = cut_read(500_000, 0.05, |i| i).unwrap();
        assert_eq!(s.count, 500_000, "{}", s.method);
        let [lo, hi] = s.interval.unwrap();
        assert!(lo <= 25_000 && hi >= 500_000, "{lo} {hi}");
        // Two records per person (pairs): 250,000 people; a 20 % read sees many pairs.
        let s = cut_read(500_000, 0.2, |i| i / 2).unwrap();
        let err = (s.count as f64 - 250_000.0).abs() / 250_000.0;
        assert!(err < 0.05, "{} for 250000 ({})", s.count, s.method);
        let [lo, hi] = s.interval.unwrap();
        assert!(lo <= 250_000 && 250_000 <= hi);
        // Too little read to say anything: no estimate.
        assert!(cut_read(500_000, 0.0001, |i| i).is_none());
    }

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
}
