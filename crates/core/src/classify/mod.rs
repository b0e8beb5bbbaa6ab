//! Classification: which categories of sensitive data (the taxonomy of `docs/taxonomy.md`) each field
//! of a sampled container holds, with a confidence, masked examples and keyed fingerprints.
//!
//! # Evidence
//!
//! Each rule of the rules file ([`rules`], `crates/core/rules/classify.toml`) describes one way
//! a category shows, from three independent sources:
//!
//! - **Name** `N`: words of the field's path ([`words`]) in six languages. An unambiguous word
//!   in the field's own name weighs `name_strong` (0.6), an ambiguous one `name_weak` (0.45);
//!   found only in the parent object's name (`phone.number`), times `parent_factor` (0.8). A
//!   context word (in the container's name, the path, or a category assigned to a sibling
//!   field) adds `context_bonus` (0.15, at most 0.75 in all). A negative word vetoes the name
//!   evidence (`shipment_weight_kg`, `ssid_count`, `request_id`).
//! - **Schema** `S`: the store's declared type (`inet` → `network.ip`), a rule's
//!   `schema_weight` (≤ 0.45).
//! - **Values** `V`: the best of the rule's detectors ([`detect`]): its weight times how
//!   consistently the sampled values pass it — full weight when at least 90 % of the non-empty
//!   values pass, nothing below 50 %, linear in between. Shapes weigh 0.2–0.6; validators with
//!   checksums or structure (Luhn with issuer ranges, IBAN mod-97, codice fiscale check
//!   character, JWT header, `Atza|` and other vendor token formats, PEM private keys, crypt
//!   password hashes, e-mail with a real TLD) weigh 0.8–0.99.
//!
//! They combine as independent evidence: `confidence = 1 − (1 − N)(1 − S)(1 − V)`. When a name
//! matched but values were sampled and none fit the rule, the values contradict the name and
//! the confidence is `(1 − (1 − N)(1 − S)) × contradiction` (0.5).
//!
//! # Threshold
//!
//! A category is assigned when its confidence reaches [`ASSIGN_THRESHOLD`] = **0.70**. By
//! construction a name alone (≤ 0.75 only with context, otherwise ≤ 0.6) or a value shape
//! alone (≤ 0.6) stays below it; a name and a shape that agree pass (0.6 and 0.35 give 0.74);
//! a strong validator passes alone. A rule may also `require_context` (a bare `model` is a
//! device model only among device data) and be `suppressed_by` a more specific category on the
//! same field (a generic high-entropy token yields to an `Atza|` OAuth token or a JWT).
//!
//! # Bounds
//!
//! A holding's sample is classified on at most [`MAX_VALUES`] values per field, each cut to
//! [`VALUE_CAP`] bytes. A [`Stream`] (exported files, `leakscope classify`) takes every value
//! of every record, cut to the same cap.
//!
//! # Speed
//!
//! Everything a field's name and declared type say is worked out once per field path (a
//! `Plan`): the name evidence of every rule, and which detectors are worth running — those
//! of rules with name or schema evidence, and the strong validators that can carry a field
//! alone. Each value then costs one pass over its bytes ([`shape`]: length, first byte, the
//! byte classes present), after which each planned detector whose prefilter rejects that
//! shape is skipped with a few integer tests; only plausible values reach a validator.
//!
//! The phone validators parse with libphonenumber's metadata and cost microseconds per
//! value. On large inputs they are budgeted: per field, the first [`COSTLY_EXACT`] values that
//! pass their prefilter are validated, then every [`COSTLY_STRIDE`]th, and the share of
//! validated values that passed stands for the rest (the field's `matched` is then an
//! estimate). A holding's sample never reaches the budget; [`Stream::exhaustive`] turns it
//! off.
//!
//! # Output
//!
//! Per field: categories, confidence (of the strongest category), `seen` (values examined),
//! `matched` (values that passed the detector behind the strongest category), and up to three
//! masked examples ([`mask`]). No raw value leaves this module: fingerprints ([`fingerprint`],
//! of identity and credential fields, the ones a report carries) are HMACs under the user's
//! local key.
//!
//! ```
//! use leakscope_core::classify::{Classifier, Fingerprinter};
//! use leakscope_core::inventory::Holding;
//!
//! let h = Holding {
//!     name: "crm.kunden".into(),
//!     kind: "table",
//!     sample: vec![vec![
//!         ("e_mail".into(), "erika.mustermann@example.de".into()),
//!         ("versandgewicht_kg".into(), "1.25".into()),
//!     ]],
//!     ..Holding::default()
//! };
//! let fp = Fingerprinter::with_key([7; 32]);
//! let (fields, categories) = Classifier::builtin().classify_holding(&h, &fp);
//! assert_eq!(categories, ["identity.email"]);
//! assert_eq!(fields[0].examples, ["e•••@e•••.de"]);
//! assert!(fields[1].categories.is_empty());
//! ```

pub mod checks;
pub mod detect;
pub mod eav;
pub mod files;
pub mod fingerprint;
pub mod mask;
mod matcher;
pub mod names;
pub mod rules;
pub mod secrets;
pub mod shape;
pub mod words;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, OnceLock};

pub use fingerprint::{Fingerprinter, KeyError};
pub use rules::{RulesError, TAXONOMY};

use crate::inventory::Holding;
use crate::model::Field;
use matcher::{hit, phrase_level, Matcher, WordBits};
use rules::{Context, Rule, RuleSet};
use shape::{PreTable, Shape};
use words::WordSet;

/// Confidence at which a category is assigned to a field.
pub const ASSIGN_THRESHOLD: f64 = 0.70;
/// Values examined per field of a holding's sample.
pub const MAX_VALUES: usize = 200;
/// Bytes examined of one value (the inventory's default value cap).
pub const VALUE_CAP: usize = 256;
/// Below this share of passing values a detector gives no evidence.
pub const MIN_RATIO: f64 = 0.5;
/// From this share of passing values on, a detector gives its full weight.
pub const FULL_RATIO: f64 = 0.9;
/// Fewest values of a minority category (see [`MINORITY_SHARE`]).
pub const MINORITY_MATCHES: u64 = 3;
/// Smallest share of a field's values at which a detector marked `minority` in the rules
/// assigns its category although most values are something else.
pub const MINORITY_SHARE: f64 = 0.02;
/// Value evidence of a minority category: enough alone, below any majority's.
const MINORITY_CONFIDENCE: f64 = 0.72;
/// Masked examples per field.
pub const MAX_EXAMPLES: usize = 3;
/// Values of a field that a costly validator checks before the budget applies.
pub const COSTLY_EXACT: u64 = 256;
/// Past [`COSTLY_EXACT`], a costly validator checks one value in this many.
pub const COSTLY_STRIDE: u64 = 64;
/// Highest reported confidence: sampling never makes anything certain.
const MAX_CONFIDENCE: f64 = 0.99;
/// Name evidence is capped here even with context, below two agreeing sources.
const MAX_NAME: f64 = 0.75;

/// The built-in rules, compiled once by [`Classifier::builtin`].
pub const BUILTIN_RULES: &str = include_str!("../../rules/classify.toml");

/// A compiled rule set, ready to classify holdings. Immutable and `Sync`: one instance serves
/// every scan task.
#[derive(Debug)]
pub struct Classifier {
    set: RuleSet,
    matcher: Matcher,
    /// Whether some rule's context refers to sibling categories (needs a second pass).
    uses_siblings: bool,
    /// Every detector's prefilter; per detector whether it is costly.
    pre: PreTable,
    costly: Vec<bool>,
}

/// Fingerprints of one classified field's distinct sampled values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldFingerprints {
    pub path: String,
    /// The category the values were fingerprinted as (the field's strongest).
    pub category: String,
    /// Distinct, sorted.
    pub fingerprints: Vec<String>,
}

/// Everything classification produced for one holding.
#[derive(Debug, Clone, PartialEq)]
pub struct HoldingClassification {
    /// One per sampled path (first-seen order), then declared-only paths (`seen` = 0).
    pub fields: Vec<Field>,
    /// Union of the fields' categories, sorted.
    pub categories: Vec<String>,
    /// For classified fields whose strongest category is an identity or a credential (the
    /// fingerprints a report carries).
    pub fingerprints: Vec<FieldFingerprints>,
    /// Bytes of sampled values examined (for throughput figures).
    pub bytes_examined: u64,
}

/// One rule's evidence on one field (see [`Classifier::explain`]); first pass, without
/// sibling context.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub path: String,
    pub rule: String,
    pub name: f64,
    pub schema: f64,
    pub values: f64,
    pub confidence: f64,
}

/// What a field's name and declared type say for one rule, before sibling context is known.
#[derive(Debug, Clone, Copy, Default)]
struct RuleEv {
    /// The best name weight (0 when vetoed or absent), without the context bonus.
    name: f64,
    /// A context word is in the container's name or the field's path.
    context: bool,
    /// Schema evidence.
    schema: f64,
}

/// Everything about a field that does not depend on its values, worked out once per path.
#[derive(Debug, Clone)]
struct Plan {
    rules: Vec<RuleEv>,
    /// Detectors worth running on this field's values (bit `i` = detector `i`).
    bits: u128,
}

/// The plans of one container's fields, shared by the streams of its parts (the chunks of
/// one file): a plan depends only on the container's name and the path (and a declared
/// type, which file streams do not have), so each is worked out once per file, not once per
/// chunk.
#[derive(Debug, Default)]
pub struct PlanCache(Mutex<HashMap<String, Plan>>);

impl Plan {
    /// The planned detectors, ascending: the order of a field's tallies.
    fn dets(&self) -> impl Iterator<Item = usize> {
        let mut rest = self.bits;
        std::iter::from_fn(move || {
            (rest != 0).then(|| {
                let di = rest.trailing_zeros() as usize;
                rest &= rest - 1;
                di
            })
        })
    }
}

/// The tally of planned detector `di` in a plan's set `bits`: tallies follow the plan's
/// ascending detector order, so it is the number of planned detectors below `di`.
#[inline]
fn slot_of(bits: u128, di: usize) -> usize {
    (bits & ((1u128 << di) - 1)).count_ones() as usize
}

/// One planned detector's tally over a field's values.
#[derive(Debug, Clone, Default)]
struct Tally {
    matched: u64,
    /// Costly detectors only: values that passed the prefilter, and values validated.
    admitted: u64,
    checked: u64,
    /// The first distinct passing values, with their record ordinal.
    examples: Vec<(u64, String)>,
}

impl Tally {
    /// Matched values, the unvalidated part of a budgeted detector estimated from the
    /// validated part.
    fn matched_estimate(&self) -> u64 {
        if self.checked == 0 || self.checked >= self.admitted {
            return self.matched;
        }
        let rest =
            (self.admitted - self.checked) as f64 * self.matched as f64 / self.checked as f64;
        self.matched + rest.round() as u64
    }

    fn merge(&mut self, other: Tally) {
        self.matched += other.matched;
        self.admitted += other.admitted;
        self.checked += other.checked;
        self.examples.extend(other.examples);
        self.examples.sort_by_key(|e| e.0);
        let mut kept: Vec<(u64, String)> = Vec::with_capacity(MAX_EXAMPLES);
        for e in self.examples.drain(..) {
            if kept.len() < MAX_EXAMPLES && !kept.iter().any(|k| k.1 == e.1) {
                kept.push(e);
            }
        }
        self.examples = kept;
    }
}

/// One field being classified: its plan and what its values showed so far.
#[derive(Debug, Clone)]
struct FieldState {
    path: String,
    schema: Option<String>,
    plan: Plan,
    seen: u64,
    bytes: u64,
    tallies: Vec<Tally>,
}

impl FieldState {
    fn new(path: String, schema: Option<String>, plan: Plan) -> FieldState {
        let n = plan.bits.count_ones() as usize;
        FieldState {
            path,
            schema,
            plan,
            seen: 0,
            bytes: 0,
            tallies: vec![Tally::default(); n],
        }
    }
}

/// The outcome of one detector on one field.
#[derive(Debug, Clone)]
struct DetResult {
    matched: u64,
    ratio: f64,
    /// The first distinct passing values.
    examples: Vec<String>,
}

/// The best evidence found for one category on one field.
#[derive(Debug, Clone)]
struct Candidate {
    category: &'static str,
    confidence: f64,
    rule: usize,
    detector: Option<usize>,
}

fn noisy_or(parts: &[f64]) -> f64 {
    1.0 - parts.iter().map(|p| 1.0 - p).product::<f64>()
}

fn ramp(ratio: f64) -> f64 {
    ((ratio - MIN_RATIO) / (FULL_RATIO - MIN_RATIO)).clamp(0.0, 1.0)
}

/// Cuts `s` to at most `cap` bytes on a character boundary.
fn cap(s: &str, cap: usize) -> &str {
    if s.len() <= cap {
        return s;
    }
    let mut end = cap;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn is_null_like(v: &str) -> bool {
    matches!(
        v,
        "null" | "NULL" | "None" | "nil" | "N/A" | "n/a" | "undefined"
    )
}

/// A raw value as the detectors see it: cut to the cap and trimmed; None when empty or a
/// null placeholder.
fn prepare(value: &str) -> Option<&str> {
    let v = cap(value, VALUE_CAP);
    // Most values start and end with a visible ASCII character: nothing to trim, decided on
    // two bytes instead of a walk over Unicode whitespace from both ends.
    let visible = |b: Option<&u8>| b.is_some_and(u8::is_ascii_graphic);
    let v = if visible(v.as_bytes().first()) && visible(v.as_bytes().last()) {
        v
    } else {
        v.trim()
    };
    (!v.is_empty() && !is_null_like(v)).then_some(v)
}

/// Byte-string equality for short strings (field paths) without a call to `memcmp`: two
/// overlapping 8-byte loads from each side cover 8 to 16 bytes.
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or([0; 8]));
    match n {
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        0..=7 => a.iter().zip(b).all(|(x, y)| x == y),
        _ => a == b,
    }
}

/// Categories whose values are fingerprinted (people to notify, credentials to revoke).
fn fingerprinted(category: &str) -> bool {
    category.starts_with("identity.") || category.starts_with("credential.")
}

impl Classifier {
    /// Compiles a rules file (see [`rules`] for the format).
    pub fn from_toml(text: &str) -> Result<Classifier, RulesError> {
        let set = rules::compile(text)?;
        let uses_siblings = set
            .rules
            .iter()
            .any(|r| r.context.iter().any(|c| matches!(c, Context::Sibling(_))));
        let matcher = Matcher::new(&set);
        let pre = PreTable::new(set.detectors.iter().map(|d| d.prefilter()).collect());
        let costly = set.detectors.iter().map(|d| d.costly()).collect();
        Ok(Classifier {
            set,
            matcher,
            uses_siblings,
            pre,
            costly,
        })
    }

    /// The built-in rules, compiled on first use.
    pub fn try_builtin() -> Result<&'static Classifier, &'static RulesError> {
        static BUILTIN: OnceLock<Result<Classifier, RulesError>> = OnceLock::new();
        BUILTIN
            .get_or_init(|| Classifier::from_toml(BUILTIN_RULES))
            .as_ref()
    }

    /// The built-in rules, compiled on first use. The rules file is part of the binary and
    /// its unit tests compile it, so a failure here is a build defect: it panics with the
    /// rule at fault.
    pub fn builtin() -> &'static Classifier {
        match Classifier::try_builtin() {
            Ok(c) => c,
            Err(e) => panic!("built-in classification rules are broken: {e}"),
        }
    }

    /// The compiled rules (for tests and documentation).
    pub fn rules(&self) -> &[Rule] {
        &self.set.rules
    }

    /// Classifies every field of a holding: `(fields, container categories)`.
    ///
    /// Fields come in first-seen order of the sample, then paths only declared in the schema.
    /// Container categories are the sorted union of the fields' categories.
    pub fn classify_holding(&self, h: &Holding, fp: &Fingerprinter) -> (Vec<Field>, Vec<String>) {
        let c = self.classify_holding_detailed(h, fp);
        (c.fields, c.categories)
    }

    /// Like [`Classifier::classify_holding`], plus keyed fingerprints of the classified
    /// identity and credential fields' values and the bytes examined.
    pub fn classify_holding_detailed(
        &self,
        h: &Holding,
        fp: &Fingerprinter,
    ) -> HoldingClassification {
        let eav = eav::rewrite(&h.sample);
        let sample = eav.as_ref().map_or(&h.sample, |(_, s)| s);
        let mut st = self.holding_stream(h, eav.as_ref().map(|(c, _)| c.as_str()));
        for (i, rec) in sample.iter().enumerate() {
            st.record(i as u64, rec.iter().map(|(p, v)| (p.as_str(), v.as_str())));
        }
        let out = st.finish_inner(None);
        let mut fingerprints = Vec::new();
        for (f, top) in out.fields.iter().zip(&out.tops) {
            let Some(category) = top.filter(|c| fingerprinted(c)) else {
                continue;
            };
            // The same values the classifier examined: capped per field, cut, trimmed.
            let mut values: Vec<&str> = sample
                .iter()
                .flat_map(|r| r.iter())
                .filter(|(p, _)| *p == f.path)
                .filter_map(|(_, v)| prepare(v))
                .take(MAX_VALUES)
                .collect();
            values.sort_unstable();
            values.dedup();
            let distinct: BTreeSet<String> =
                values.iter().map(|v| fp.fingerprint(category, v)).collect();
            fingerprints.push(FieldFingerprints {
                path: f.path.clone(),
                category: category.to_string(),
                fingerprints: distinct.into_iter().collect(),
            });
        }
        HoldingClassification {
            fields: out.fields,
            categories: out.categories,
            fingerprints,
            bytes_examined: out.bytes,
        }
    }

    /// A stream over a holding's sample: capped values per field, its declared schema (less
    /// an EAV value column, whose values are filed under their keys).
    fn holding_stream(&self, h: &Holding, eav_column: Option<&str>) -> Stream<'_> {
        let mut st = Stream::new(self, &h.name);
        st.max_values = Some(MAX_VALUES as u64);
        st.exhaustive = true;
        st.schema = h
            .schema
            .iter()
            .filter(|(p, _)| Some(p.as_str()) != eav_column)
            .map(|(p, t)| (p.clone(), t.to_ascii_lowercase()))
            .collect();
        st
    }

    /// The words of a container name, without store prefixes that carry no meaning (`db0`).
    fn container_bits(&self, name: &str) -> (WordSet, WordBits) {
        let segs: Vec<&str> = words::segments(name)
            .into_iter()
            .filter(|s| {
                !(s.len() >= 3 && s.starts_with("db") && s[2..].bytes().all(|b| b.is_ascii_digit()))
            })
            .collect();
        let ws = WordSet::from_segments(segs);
        let bits = self.matcher.word_bits(&ws, &ws, &ws);
        (ws, bits)
    }

    fn names_of(&self, path: &str, container: &(WordSet, WordBits)) -> WordBits {
        // An EAV field (`meta_value[billing_phone]`) is named by its key.
        let path = eav::as_name_path(path);
        let segs = words::segments(&path);
        let leaf = WordSet::from_segments(segs.last().copied());
        // A bare `value` (a Redis string, a scalar document) is named by its container:
        // `db0:email:*` holds e-mail addresses, `stats:ssid_count:*` holds counts, the `token`
        // of `oauth2_accesstoken` is an access token. Its own word stays.
        if segs.len() <= 1
            && leaf.seq.len() == 1
            && self.set.generic_leaves.contains(&leaf.seq[0])
            && !container.0.is_empty()
        {
            let both = container.0.union(&leaf);
            let mut bits = self.matcher.word_bits(&both, &both, &both);
            // The container's words name the field; they are not a long name of its own.
            bits.leaf_words = leaf.seq.len();
            return bits;
        }
        let scope = match segs.len() {
            0 | 1 => leaf.clone(),
            n => WordSet::from_segments([segs[n - 2]]).union(&leaf),
        };
        self.matcher
            .word_bits(&leaf, &scope, &WordSet::from_segments(segs))
    }

    /// What rule `ri` makes of a field's name before sibling context: the best name weight
    /// (0 when vetoed or absent) and whether a context word is in the container or path.
    fn rule_names(&self, ri: usize, f: &WordBits, container: &WordBits) -> (f64, bool) {
        let w = &self.set.weights;
        let m = &self.matcher.rules[ri];
        if m.negative.iter().any(|n| hit(n, &f.path, f.leaf_first))
            || m.negative_context
                .iter()
                .any(|n| hit(n, &container.path, container.leaf_first))
            || f.global_hits
                .iter()
                .zip(&m.global_exempt)
                .any(|(hit, exempt)| *hit && !exempt)
        {
            return (0.0, false);
        }
        let mut best: f64 = 0.0;
        for (list, weight) in [(&m.names, w.name_strong), (&m.weak, w.name_weak)] {
            for p in list {
                // Spanning parent and leaf (`customer.id`) names the field as fully as
                // `customer_id`; only the parent (`phone.verified`) is weaker.
                match phrase_level(p, f) {
                    // One word inside a long name (`login` in `otp_required_for_login`)
                    // names the field less than the same word standing alone.
                    2 if f.leaf_words >= 4 && p.len() * 2 < f.leaf_words => {
                        best = best.max(weight * w.parent_factor)
                    }
                    2 => best = best.max(weight),
                    1 => best = best.max(weight * w.parent_factor),
                    _ => {}
                }
            }
        }
        let context = m
            .context_words
            .iter()
            .any(|&i| container.path.has(i) || f.path.has(i));
        (best, context)
    }

    /// Name evidence of rule `ri` for a field, 0 when vetoed or absent.
    fn name_score(&self, ri: usize, ev: &RuleEv, siblings: &BTreeSet<&str>) -> f64 {
        let rule = &self.set.rules[ri];
        if ev.name == 0.0 && !rule.require_context {
            return 0.0;
        }
        let in_context = ev.context
            || self.matcher.rules[ri]
                .context_siblings
                .iter()
                .any(|p| siblings.iter().any(|s| s.starts_with(p.as_str())));
        match (in_context, rule.require_context) {
            (false, true) => 0.0,
            (true, _) if ev.name > 0.0 => (ev.name + self.set.weights.context_bonus).min(MAX_NAME),
            _ => ev.name,
        }
    }

    /// The plan of one field: per-rule name and schema evidence, and the detectors to run.
    fn plan(&self, path: &str, schema: Option<&str>, container: &(WordSet, WordBits)) -> Plan {
        let nm = self.names_of(path, container);
        let mut rules = Vec::with_capacity(self.set.rules.len());
        let mut bits = 0u128;
        for (ri, rule) in self.set.rules.iter().enumerate() {
            let (name, context) = self.rule_names(ri, &nm, &container.1);
            let schema = match schema {
                Some(t) if rule.schema_types.iter().any(|x| t.contains(x.as_str())) => {
                    rule.schema_weight
                }
                _ => 0.0,
            };
            // A detector that cannot carry a field alone is not worth running where nothing
            // else speaks for the rule. Sibling context can only add to a name that matched,
            // so this is decided here, before the siblings are known.
            for d in &rule.detectors {
                if name > 0.0 || schema > 0.0 || d.weight >= ASSIGN_THRESHOLD || d.minority {
                    bits |= 1u128 << d.index;
                }
            }
            rules.push(RuleEv {
                name,
                context,
                schema,
            });
        }
        Plan { rules, bits }
    }

    /// Runs a field's planned detectors on one prepared value.
    #[inline]
    fn observe(&self, f: &mut FieldState, ord: u64, v: &str, budget: Option<u64>) {
        f.seen += 1;
        f.bytes += v.len() as u64;
        let shape = Shape::of(v);
        let mut admitted = self.pre.admitted(&shape, f.plan.bits);
        while admitted != 0 {
            let di = admitted.trailing_zeros() as usize;
            admitted &= admitted - 1;
            let t = &mut f.tallies[slot_of(f.plan.bits, di)];
            if self.costly[di] {
                t.admitted += 1;
                if budget.is_some_and(|floor| {
                    t.admitted > floor && !t.admitted.is_multiple_of(COSTLY_STRIDE)
                }) {
                    continue;
                }
                t.checked += 1;
            }
            if self.set.detectors[di].check_shaped(v, &shape) {
                t.matched += 1;
                if t.examples.len() < MAX_EXAMPLES && !t.examples.iter().any(|e| e.1 == v) {
                    t.examples.push((ord, v.to_string()));
                }
            }
        }
    }

    /// How each rule scored each field of a holding: for tuning rules and for explaining a
    /// verdict. Values are not part of the trace.
    pub fn explain(&self, h: &Holding) -> Vec<Trace> {
        let eav = eav::rewrite(&h.sample);
        let sample = eav.as_ref().map_or(&h.sample, |(_, s)| s);
        let mut st = self.holding_stream(h, eav.as_ref().map(|(c, _)| c.as_str()));
        for (i, rec) in sample.iter().enumerate() {
            st.record(i as u64, rec.iter().map(|(p, v)| (p.as_str(), v.as_str())));
        }
        let mut out = Vec::new();
        st.finish_inner(Some(&mut out));
        out
    }

    fn score_field(
        &self,
        f: &FieldState,
        results: &[Option<DetResult>],
        siblings: &BTreeSet<&str>,
        mut trace: Option<&mut Vec<Trace>>,
    ) -> Vec<Candidate> {
        let mut best: HashMap<&'static str, Candidate> = HashMap::new();
        for (ri, rule) in self.set.rules.iter().enumerate() {
            let ev = &f.plan.rules[ri];
            let n = self.name_score(ri, ev, siblings);
            let s = ev.schema;
            let (mut v, mut vdet) = (0.0, None);
            if f.seen > 0 {
                for d in &rule.detectors {
                    if n == 0.0 && s == 0.0 && d.weight < ASSIGN_THRESHOLD && !d.minority {
                        continue;
                    }
                    // Planned whenever the test above can pass (see `plan`).
                    let Some(r) = &results[d.index] else {
                        debug_assert!(false, "detector {} not planned", d.index);
                        continue;
                    };
                    let mut score = d.weight * ramp(r.ratio);
                    // A structured format in a minority of a mixed column's values (a BSSID
                    // among temperatures): the category is there, at the share `matched/seen`.
                    if score == 0.0
                        && d.minority
                        && r.matched >= MINORITY_MATCHES
                        && r.ratio >= MINORITY_SHARE
                    {
                        score = MINORITY_CONFIDENCE;
                    }
                    if score > v {
                        v = score;
                        vdet = Some(d.index);
                    }
                }
            }
            let ns = noisy_or(&[n, s]);
            let conf = if v > 0.0 {
                noisy_or(&[ns, v])
            } else if ns > 0.0 && f.seen > 0 && !rule.detectors.is_empty() {
                ns * self.set.weights.contradiction
            } else {
                ns
            };
            if let Some(t) = trace.as_mut() {
                if conf > 0.0 {
                    t.push(Trace {
                        path: f.path.clone(),
                        rule: rule.id.clone(),
                        name: n,
                        schema: s,
                        values: v,
                        confidence: conf,
                    });
                }
            }
            if conf <= 0.0 {
                continue;
            }
            let better = match best.get(rule.category) {
                Some(c) => conf > c.confidence,
                None => true,
            };
            if better {
                best.insert(
                    rule.category,
                    Candidate {
                        category: rule.category,
                        confidence: conf,
                        rule: ri,
                        detector: vdet,
                    },
                );
            }
        }
        let assigned: Vec<Candidate> = best
            .into_values()
            .filter(|c| c.confidence >= ASSIGN_THRESHOLD)
            .collect();
        let cats: BTreeSet<&str> = assigned.iter().map(|c| c.category).collect();
        let mut out: Vec<Candidate> = assigned
            .into_iter()
            .filter(|c| {
                !self.set.rules[c.rule]
                    .suppressed_by
                    .iter()
                    .any(|s| cats.contains(s))
            })
            .collect();
        out.sort_by(|a, b| {
            b.confidence
                .total_cmp(&a.confidence)
                .then(a.category.cmp(b.category))
        });
        out
    }
}

/// The object a field belongs to: its path without the last segment.
fn parent_of(path: &str) -> &str {
    path.rfind('.').map_or("", |i| &path[..i])
}

/// Classification of one container whose records arrive one at a time, in bounded memory:
/// per field, its plan, counters per planned detector and a few example values.
///
/// Streams of parts of one container (chunks of a file classified on several threads) are
/// combined with [`Stream::merge`]; examples are the earliest by record ordinal, so the
/// result does not depend on how the work was split.
#[derive(Debug, Clone)]
pub struct Stream<'c> {
    classifier: &'c Classifier,
    container: (WordSet, WordBits),
    fields: Vec<FieldState>,
    index: HashMap<String, usize>,
    /// The field of each position of the previous record: records of one container mostly
    /// repeat their paths in order, so a string comparison usually replaces a hash lookup.
    guess: Vec<usize>,
    /// Declared types by path (lower case), in declaration order.
    schema: Vec<(String, String)>,
    records: u64,
    /// Values examined per field at most (holding samples).
    max_values: Option<u64>,
    /// Validate every value with the costly validators too (no budget).
    pub exhaustive: bool,
    /// Values per field a costly validator checks before the budget applies: a file's first
    /// chunk keeps the default [`COSTLY_EXACT`], later chunks 0 (see [`Stream::continuation`]).
    costly_floor: u64,
    /// Plans shared with the other streams of the container (see [`Stream::share_plans`]).
    plans: Option<&'c PlanCache>,
}

/// What a [`Stream`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamResult {
    /// One per path, in first-seen order (declared-only paths last, `seen` = 0).
    pub fields: Vec<Field>,
    /// Union of the fields' categories, sorted.
    pub categories: Vec<String>,
    /// Records taken.
    pub records: u64,
    /// Bytes of values examined.
    pub bytes: u64,
}

/// A [`StreamResult`] plus each field's strongest category (for fingerprints).
struct Finished {
    fields: Vec<Field>,
    tops: Vec<Option<&'static str>>,
    categories: Vec<String>,
    bytes: u64,
}

impl<'c> Stream<'c> {
    /// A stream for the container named `container` (its name is context for the rules).
    pub fn new(classifier: &'c Classifier, container: &str) -> Stream<'c> {
        Stream {
            classifier,
            container: classifier.container_bits(container),
            fields: Vec::new(),
            index: HashMap::new(),
            guess: Vec::new(),
            schema: Vec::new(),
            records: 0,
            max_values: None,
            exhaustive: false,
            costly_floor: COSTLY_EXACT,
            plans: None,
        }
    }

    /// Takes field plans from, and adds them to, `cache`, shared by every stream of this
    /// container; only for streams without declared types (the key is the path alone).
    pub fn share_plans(&mut self, cache: &'c PlanCache) {
        debug_assert!(self.schema.is_empty());
        self.plans = Some(cache);
    }

    fn plan_of(&self, path: &str, schema: Option<&str>) -> Plan {
        let make = || self.classifier.plan(path, schema, &self.container);
        match self.plans {
            Some(PlanCache(cache)) if schema.is_none() => {
                let Ok(mut cache) = cache.lock() else {
                    return make();
                };
                cache.entry(path.to_string()).or_insert_with(make).clone()
            }
            _ => make(),
        }
    }

    /// Marks this stream as a later part of a container whose first part had the exact
    /// floor of the costly validators: here they only check one value in [`COSTLY_STRIDE`].
    pub fn continuation(&mut self) {
        self.costly_floor = 0;
    }

    fn field_index(&mut self, pos: usize, path: &str) -> usize {
        if let Some(&i) = self.guess.get(pos) {
            if same(self.fields[i].path.as_bytes(), path.as_bytes()) {
                return i;
            }
        }
        let i = match self.index.get(path) {
            Some(&i) => i,
            None => {
                let schema = self
                    .schema
                    .iter()
                    .find(|(p, _)| p == path)
                    .map(|(_, t)| t.clone());
                let plan = self.plan_of(path, schema.as_deref());
                self.fields
                    .push(FieldState::new(path.to_string(), schema, plan));
                self.index.insert(path.to_string(), self.fields.len() - 1);
                self.fields.len() - 1
            }
        };
        if pos < self.guess.len() {
            self.guess[pos] = i;
        } else if pos == self.guess.len() {
            self.guess.push(i);
        }
        i
    }

    /// Takes one flattened record; `ord` orders records (line number) for the choice of
    /// examples.
    pub fn record<'v>(&mut self, ord: u64, pairs: impl IntoIterator<Item = (&'v str, &'v str)>) {
        self.records += 1;
        for (pos, (path, value)) in pairs.into_iter().enumerate() {
            let i = self.field_index(pos, path);
            let f = &mut self.fields[i];
            if self.max_values.is_some_and(|m| f.seen >= m) {
                continue;
            }
            if let Some(v) = prepare(value) {
                let budget = (!self.exhaustive).then_some(self.costly_floor);
                self.classifier.observe(f, ord, v, budget);
            }
        }
    }

    /// Adds what another stream of the same container saw (fields it saw first come after
    /// this stream's).
    pub fn merge(&mut self, other: Stream<'c>) {
        self.records += other.records;
        for f in other.fields {
            match self.index.get(&f.path) {
                Some(&i) => {
                    let mine = &mut self.fields[i];
                    mine.seen += f.seen;
                    mine.bytes += f.bytes;
                    for (t, o) in mine.tallies.iter_mut().zip(f.tallies) {
                        t.merge(o);
                    }
                }
                None => {
                    self.index.insert(f.path.clone(), self.fields.len());
                    self.fields.push(f);
                }
            }
        }
    }

    /// Records taken so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Classifies every field from what was seen.
    pub fn finish(self) -> StreamResult {
        let records = self.records;
        let f = self.finish_inner(None);
        StreamResult {
            fields: f.fields,
            categories: f.categories,
            records,
            bytes: f.bytes,
        }
    }

    fn finish_inner(mut self, mut trace: Option<&mut Vec<Trace>>) -> Finished {
        let c = self.classifier;
        // Declared paths never seen are listed too, classified on name and schema alone.
        for (path, ty) in std::mem::take(&mut self.schema) {
            match self.index.get(&path) {
                Some(&i) => self.fields[i].schema = Some(ty),
                None => {
                    let plan = c.plan(&path, Some(&ty), &self.container);
                    self.index.insert(path.clone(), self.fields.len());
                    self.fields.push(FieldState::new(path, Some(ty), plan));
                }
            }
        }
        let results: Vec<Vec<Option<DetResult>>> = self
            .fields
            .iter_mut()
            .map(|f| {
                let mut r = vec![None; c.set.detectors.len()];
                for (k, di) in f.plan.dets().enumerate() {
                    let t = std::mem::take(&mut f.tallies[k]);
                    let matched = t.matched_estimate().min(f.seen);
                    r[di] = Some(DetResult {
                        matched,
                        ratio: if f.seen == 0 {
                            0.0
                        } else {
                            matched as f64 / f.seen as f64
                        },
                        examples: t.examples.into_iter().map(|e| e.1).collect(),
                    });
                }
                r
            })
            .collect();
        let none = BTreeSet::new();
        let mut cands: Vec<Vec<Candidate>> = self
            .fields
            .iter()
            .zip(&results)
            .map(|(f, r)| c.score_field(f, r, &none, trace.as_deref_mut()))
            .collect();
        if c.uses_siblings && self.fields.len() > 1 {
            // Second pass: what the other fields turned out to be is context (a `nickname`
            // next to a MAC address and a firmware version names a device).
            let assigned: Vec<Vec<&'static str>> = cands
                .iter()
                .map(|c| c.iter().map(|c| c.category).collect())
                .collect();
            // Siblings are fields of the same object: `devices[].mac` says what
            // `devices[].nickname` is, not what the top-level `full_name` is.
            let parents: Vec<&str> = self.fields.iter().map(|f| parent_of(&f.path)).collect();
            for i in 0..self.fields.len() {
                let siblings: BTreeSet<&str> = assigned
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i && parents[*j] == parents[i])
                    .flat_map(|(_, cats)| cats.iter().copied())
                    // Ids are usually foreign keys: they say nothing about this record's kind.
                    .filter(|c| !c.ends_with("_id") && !c.ends_with(".id"))
                    .collect();
                cands[i] = c.score_field(&self.fields[i], &results[i], &siblings, None);
            }
        }
        let mut fields = Vec::with_capacity(self.fields.len());
        let mut tops = Vec::with_capacity(self.fields.len());
        let mut categories = BTreeSet::new();
        let mut bytes = 0u64;
        for (i, f) in self.fields.iter().enumerate() {
            bytes += f.bytes;
            let cs = &cands[i];
            let mut field = Field {
                path: f.path.clone(),
                categories: cs.iter().map(|c| c.category.to_string()).collect(),
                confidence: 0.0,
                seen: f.seen,
                matched: 0,
                examples: Vec::new(),
                fingerprints: Vec::new(),
            };
            if let Some(top) = cs.first() {
                field.confidence = (top.confidence.min(MAX_CONFIDENCE) * 100.0).round() / 100.0;
                if let Some(d) = top.detector.and_then(|d| results[i][d].as_ref()) {
                    field.matched = d.matched;
                    field.examples = d
                        .examples
                        .iter()
                        .map(|v| mask::mask(top.category, v))
                        .collect();
                }
                categories.extend(cs.iter().map(|c| c.category.to_string()));
            }
            tops.push(cs.first().map(|c| c.category));
            fields.push(field);
        }
        Finished {
            fields,
            tops,
            categories: categories.into_iter().collect(),
            bytes,
        }
    }
}

#[cfg(test)]
mod tests;
