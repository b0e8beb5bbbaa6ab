//! Classification: which categories of sensitive data (the taxonomy of PRODUCT.md) each field
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
//! At most [`MAX_VALUES`] values per field are examined, each cut to [`VALUE_CAP`] bytes, and
//! a detector stops as soon as enough values failed that it cannot reach the 50 % floor.
//! Detectors that could not lift a field over the threshold on their own do not run on fields
//! whose name and schema gave no evidence for their rule.
//!
//! # Output
//!
//! Per field: categories, confidence (of the strongest category), `seen` (values examined),
//! `matched` (values that passed the detector behind the strongest category), and up to three
//! masked examples ([`mask`]). No raw value leaves this module: fingerprints ([`fingerprint`])
//! are HMACs under the user's local key.
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
pub mod fingerprint;
pub mod mask;
mod matcher;
pub mod rules;
pub mod words;

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

pub use fingerprint::{Fingerprinter, KeyError};
pub use rules::{RulesError, TAXONOMY};

use crate::inventory::Holding;
use crate::model::Field;
use matcher::{hit, phrase_level, Matcher, WordBits};
use rules::{Context, Rule, RuleSet};
use words::WordSet;

/// Confidence at which a category is assigned to a field.
pub const ASSIGN_THRESHOLD: f64 = 0.70;
/// Values examined per field.
pub const MAX_VALUES: usize = 200;
/// Bytes examined of one value (the inventory's default value cap).
pub const VALUE_CAP: usize = 256;
/// Below this share of passing values a detector gives no evidence.
pub const MIN_RATIO: f64 = 0.5;
/// From this share of passing values on, a detector gives its full weight.
pub const FULL_RATIO: f64 = 0.9;
/// Masked examples per field.
pub const MAX_EXAMPLES: usize = 3;
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
    /// For classified fields only.
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

/// The sampled values of one field.
struct FieldInput<'a> {
    path: &'a str,
    values: Vec<&'a str>,
    schema: Option<String>,
}

/// The outcome of one detector on one field.
#[derive(Debug, Clone)]
struct DetResult {
    matched: usize,
    ratio: f64,
    /// Indices of the first distinct passing values.
    examples: Vec<usize>,
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

fn eval_detector(det: &detect::Detector, values: &[&str]) -> DetResult {
    let n = values.len();
    // Stop once so many values failed that the floor cannot be reached.
    let allowed_misses = ((1.0 - MIN_RATIO) * n as f64).floor() as usize;
    let (mut matched, mut misses) = (0usize, 0usize);
    let mut examples: Vec<usize> = Vec::new();
    for (i, v) in values.iter().enumerate() {
        if det.check(v) {
            matched += 1;
            if examples.len() < MAX_EXAMPLES && !examples.iter().any(|&j| values[j] == *v) {
                examples.push(i);
            }
        } else {
            misses += 1;
            if misses > allowed_misses {
                return DetResult {
                    matched,
                    ratio: 0.0,
                    examples: Vec::new(),
                };
            }
        }
    }
    DetResult {
        matched,
        ratio: if n == 0 {
            0.0
        } else {
            matched as f64 / n as f64
        },
        examples,
    }
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
        Ok(Classifier {
            set,
            matcher,
            uses_siblings,
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
    /// fields' values and the bytes examined.
    pub fn classify_holding_detailed(
        &self,
        h: &Holding,
        fp: &Fingerprinter,
    ) -> HoldingClassification {
        let inputs = gather(h);
        let container = self.container_bits(&h.name);
        let names: Vec<WordBits> = inputs
            .iter()
            .map(|f| self.names_of(f.path, &container))
            .collect();
        let mut memos: Vec<Vec<Option<DetResult>>> = inputs
            .iter()
            .map(|_| vec![None; self.set.detectors.len()])
            .collect();
        let none = BTreeSet::new();
        let mut results: Vec<Vec<Candidate>> = (0..inputs.len())
            .map(|i| self.score_field(&inputs[i], &names[i], &container.1, &none, &mut memos[i]))
            .collect();
        if self.uses_siblings && inputs.len() > 1 {
            // Second pass: what the other fields turned out to be is context (a `nickname` next
            // to a MAC address and a firmware version names a device).
            let assigned: Vec<Vec<&'static str>> = results
                .iter()
                .map(|c| c.iter().map(|c| c.category).collect())
                .collect();
            // Siblings are fields of the same object: `devices[].mac` says what
            // `devices[].nickname` is, not what the top-level `full_name` is.
            let parents: Vec<&str> = inputs.iter().map(|f| parent_of(f.path)).collect();
            for i in 0..inputs.len() {
                let siblings: BTreeSet<&str> = assigned
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i && parents[*j] == parents[i])
                    .flat_map(|(_, cats)| cats.iter().copied())
                    // Ids are usually foreign keys: they say nothing about this record's kind.
                    .filter(|c| !c.ends_with("_id") && !c.ends_with(".id"))
                    .collect();
                results[i] = self.score_field(
                    &inputs[i],
                    &names[i],
                    &container.1,
                    &siblings,
                    &mut memos[i],
                );
            }
        }
        let mut fields = Vec::with_capacity(inputs.len());
        let mut fingerprints = Vec::new();
        let mut categories = BTreeSet::new();
        let mut bytes = 0u64;
        for (i, f) in inputs.iter().enumerate() {
            bytes += f.values.iter().map(|v| v.len() as u64).sum::<u64>();
            let cands = &results[i];
            let mut field = Field {
                path: f.path.to_string(),
                categories: cands.iter().map(|c| c.category.to_string()).collect(),
                confidence: 0.0,
                seen: f.values.len() as u64,
                matched: 0,
                examples: Vec::new(),
                fingerprints: Vec::new(),
            };
            if let Some(top) = cands.first() {
                field.confidence = (top.confidence.min(MAX_CONFIDENCE) * 100.0).round() / 100.0;
                if let Some(d) = top.detector.and_then(|d| memos[i][d].as_ref()) {
                    field.matched = d.matched as u64;
                    field.examples = d
                        .examples
                        .iter()
                        .map(|&j| mask::mask(top.category, f.values[j]))
                        .collect();
                }
                let distinct: BTreeSet<String> = f
                    .values
                    .iter()
                    .map(|v| fp.fingerprint(top.category, v))
                    .collect();
                fingerprints.push(FieldFingerprints {
                    path: f.path.to_string(),
                    category: top.category.to_string(),
                    fingerprints: distinct.into_iter().collect(),
                });
                categories.extend(cands.iter().map(|c| c.category.to_string()));
            }
            fields.push(field);
        }
        HoldingClassification {
            fields,
            categories: categories.into_iter().collect(),
            fingerprints,
            bytes_examined: bytes,
        }
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
        let segs = words::segments(path);
        let leaf = WordSet::from_segments(segs.last().copied());
        // A bare `value` (a Redis string, a scalar document) is named by its container:
        // `db0:email:*` holds e-mail addresses, `stats:ssid_count:*` holds counts.
        if segs.len() <= 1
            && leaf.seq.len() == 1
            && self.set.generic_leaves.contains(&leaf.seq[0])
            && !container.0.is_empty()
        {
            return container.1.clone();
        }
        let scope = match segs.len() {
            0 | 1 => leaf.clone(),
            n => WordSet::from_segments([segs[n - 2]]).union(&leaf),
        };
        self.matcher
            .word_bits(&leaf, &scope, &WordSet::from_segments(segs))
    }

    /// Name evidence of rule `ri` for a field, 0 when vetoed or absent.
    fn name_score(
        &self,
        ri: usize,
        f: &WordBits,
        container: &WordBits,
        siblings: &BTreeSet<&str>,
    ) -> f64 {
        let w = &self.set.weights;
        let rule = &self.set.rules[ri];
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
            return 0.0;
        }
        let mut best: f64 = 0.0;
        for (list, weight) in [(&m.names, w.name_strong), (&m.weak, w.name_weak)] {
            for p in list {
                // Spanning parent and leaf (`customer.id`) names the field as fully as
                // `customer_id`; only the parent (`phone.verified`) is weaker.
                match phrase_level(p, f) {
                    2 => best = best.max(weight),
                    1 => best = best.max(weight * w.parent_factor),
                    _ => {}
                }
            }
        }
        if best == 0.0 && !rule.require_context {
            return 0.0;
        }
        let in_context = m
            .context_words
            .iter()
            .any(|&i| container.path.has(i) || f.path.has(i))
            || m.context_siblings
                .iter()
                .any(|p| siblings.iter().any(|s| s.starts_with(p.as_str())));
        match (in_context, rule.require_context) {
            (false, true) => 0.0,
            (true, _) if best > 0.0 => (best + w.context_bonus).min(MAX_NAME),
            _ => best,
        }
    }

    /// How each rule scored each field of a holding: for tuning rules and for explaining a
    /// verdict. Values are not part of the trace.
    pub fn explain(&self, h: &Holding) -> Vec<Trace> {
        let inputs = gather(h);
        let container = self.container_bits(&h.name);
        let mut out = Vec::new();
        for f in &inputs {
            let nm = self.names_of(f.path, &container);
            let mut memo = vec![None; self.set.detectors.len()];
            self.score_field_traced(
                f,
                &nm,
                &container.1,
                &BTreeSet::new(),
                &mut memo,
                Some(&mut out),
            );
        }
        out
    }

    fn score_field(
        &self,
        f: &FieldInput,
        nm: &WordBits,
        container: &WordBits,
        siblings: &BTreeSet<&str>,
        memo: &mut [Option<DetResult>],
    ) -> Vec<Candidate> {
        self.score_field_traced(f, nm, container, siblings, memo, None)
    }

    fn score_field_traced(
        &self,
        f: &FieldInput,
        nm: &WordBits,
        container: &WordBits,
        siblings: &BTreeSet<&str>,
        memo: &mut [Option<DetResult>],
        mut trace: Option<&mut Vec<Trace>>,
    ) -> Vec<Candidate> {
        let mut best: HashMap<&'static str, Candidate> = HashMap::new();
        for (ri, rule) in self.set.rules.iter().enumerate() {
            let n = self.name_score(ri, nm, container, siblings);
            let s = match &f.schema {
                Some(t) if rule.schema_types.iter().any(|x| t.contains(x.as_str())) => {
                    rule.schema_weight
                }
                _ => 0.0,
            };
            let (mut v, mut vdet) = (0.0, None);
            if !f.values.is_empty() {
                for d in &rule.detectors {
                    // A detector that cannot carry a field alone is not worth running where
                    // nothing else speaks for the rule.
                    if n == 0.0 && s == 0.0 && d.weight < ASSIGN_THRESHOLD {
                        continue;
                    }
                    let det = &self.set.detectors[d.index];
                    let r = memo[d.index].get_or_insert_with(|| eval_detector(det, &f.values));
                    let score = d.weight * ramp(r.ratio);
                    if score > v {
                        v = score;
                        vdet = Some(d.index);
                    }
                }
            }
            let ns = noisy_or(&[n, s]);
            let conf = if v > 0.0 {
                noisy_or(&[ns, v])
            } else if ns > 0.0 && !f.values.is_empty() && !rule.detectors.is_empty() {
                ns * self.set.weights.contradiction
            } else {
                ns
            };
            if let Some(t) = trace.as_mut() {
                if conf > 0.0 {
                    t.push(Trace {
                        path: f.path.to_string(),
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

/// Groups a holding's sampled values by path, bounded by [`MAX_VALUES`] and [`VALUE_CAP`].
fn gather(h: &Holding) -> Vec<FieldInput<'_>> {
    let mut order: Vec<FieldInput> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for rec in &h.sample {
        for (path, value) in rec {
            let i = *index.entry(path.as_str()).or_insert_with(|| {
                order.push(FieldInput {
                    path: path.as_str(),
                    values: Vec::new(),
                    schema: None,
                });
                order.len() - 1
            });
            let f = &mut order[i];
            let v = cap(value, VALUE_CAP).trim();
            if f.values.len() < MAX_VALUES && !v.is_empty() && !is_null_like(v) {
                f.values.push(v);
            }
        }
    }
    for (path, ty) in &h.schema {
        let i = *index.entry(path.as_str()).or_insert_with(|| {
            order.push(FieldInput {
                path: path.as_str(),
                values: Vec::new(),
                schema: None,
            });
            order.len() - 1
        });
        order[i].schema = Some(ty.to_ascii_lowercase());
    }
    order
}

#[cfg(test)]
mod tests;
