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
    /// Time the engine gives the counts of `queries` containers: each its share, plus 5 s for
    /// logins and the slowest answer.
    pub fn total(&self, queries: usize) -> Duration {
        self.per_container
            .saturating_mul(u32::try_from(queries).unwrap_or(u32::MAX))
            .saturating_add(Duration::from_secs(5))
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
