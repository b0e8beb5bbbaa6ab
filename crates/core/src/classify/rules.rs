//! The rules file: its format, and compiling it into the form the classifier runs.
//!
//! Rules are data (`crates/core/rules/classify.toml`, embedded at build time) so that adding a
//! language's word for "phone" or a vendor's token prefix is a data change with its own test
//! cases, not new code. The format:
//!
//! ```toml
//! [weights]                 # evidence weights, see the classify module docs
//! name_strong = 0.6         # an unambiguous field-name word ("email", "codice_fiscale")
//! name_weak = 0.45          # an ambiguous one ("name", "version", "taille")
//! parent_factor = 0.8       # the word is in the parent object's name, not the field's
//! context_bonus = 0.15      # a context word is in the container, path or sibling categories
//! contradiction = 0.5       # factor when a name matched but no sampled value fits
//!
//! [global]
//! negative = ["count", "^num", "number of"]  # veto words for every rule, leaf name only
//! generic_leaves = ["value", "data"]         # leaves that take their words from the container
//!
//! [[rule]]
//! id = "email"                          # unique, named in errors and test failures
//! category = "identity.email"           # a taxonomy id (docs/taxonomy.md)
//! names = ["email", "correo", "posta elettronica"]  # words; "a b" = all of a, b in the name
//! weak_names = ["mail"]
//! negative = ["template"]               # veto words anywhere in the path
//! negative_context = ["product"]        # veto words in the container name
//! context = ["user", "@identity"]       # context words; "@x" = a sibling field classified x.*
//! require_context = false               # without context, names count for nothing
//! suppressed_by = ["credential.jwt"]    # dropped when one of these is assigned too
//! schema_types = ["inet"]               # declared store types that are evidence …
//! schema_weight = 0.35                  # … of this weight
//! detectors = [{ id = "email", weight = 0.8, minority = true }]   # value detectors (detect.rs)
//!                                       # with weights; `minority`: counts as a minority too
//! tests = [                             # run by a unit test for every rule
//!   { kind = "tp", path = "correo", values = ["ana@ejemplo.es"] },
//!   { kind = "near_miss", path = "email_verified", values = ["true"] },
//!   { kind = "decoy", path = "asset", values = ["logo@2x.png"], container = "cdn" },
//! ]
//! ```
//!
//! Word entries are folded like field names ([`super::words::fold`]). A negative entry
//! `^w` only vetoes when `w` is the first word of the field name. Every error names the rule.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::detect::{self, Detector};
use super::shape;
use super::words::{fold, split_words};

/// The stable category ids of the taxonomy (`docs/taxonomy.md`).
pub const TAXONOMY: &[&str] = &[
    "identity.email",
    "identity.username",
    "identity.name",
    "identity.phone",
    "identity.address",
    "identity.birthdate",
    "identity.user_id",
    "credential.password",
    "credential.password_hash",
    "credential.api_token",
    "credential.oauth_token",
    "credential.jwt",
    "credential.cloud_key",
    "credential.private_key",
    "device.id",
    "device.mac",
    "device.model",
    "device.firmware",
    "device.name",
    "network.ssid",
    "network.ip",
    "location.geo",
    "health.body",
    "health.nutrition",
    "health.vitals",
    "health.condition",
    "financial.card",
    "financial.iban",
    "government.id",
];

/// A rules file that cannot be used, with the rule at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RulesError {
    #[error("rules file is not valid TOML: {0}")]
    Syntax(String),
    #[error("rules file: {0}")]
    File(String),
    #[error("rule {rule}: {message}")]
    Rule { rule: String, message: String },
    #[error("rule {rule}: detector {detector:?}: {message}")]
    Detector {
        rule: String,
        detector: String,
        message: String,
    },
}

fn rule_err(rule: &str, message: impl Into<String>) -> RulesError {
    RulesError::Rule {
        rule: rule.to_string(),
        message: message.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    weights: Weights,
    global: GlobalSpec,
    rule: Vec<toml::Value>,
}

/// Evidence weights (see the classify module docs for how they combine).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Weights {
    pub name_strong: f64,
    pub name_weak: f64,
    pub parent_factor: f64,
    pub context_bonus: f64,
    pub contradiction: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GlobalSpec {
    negative: Vec<String>,
    generic_leaves: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    id: String,
    category: String,
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    weak_names: Vec<String>,
    #[serde(default)]
    negative: Vec<String>,
    #[serde(default)]
    negative_context: Vec<String>,
    #[serde(default)]
    context: Vec<String>,
    #[serde(default)]
    require_context: bool,
    #[serde(default)]
    suppressed_by: Vec<String>,
    #[serde(default)]
    schema_types: Vec<String>,
    #[serde(default)]
    schema_weight: Option<f64>,
    detectors: Vec<toml::Table>,
    #[serde(default)]
    tests: Vec<TestSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestSpec {
    kind: String,
    path: String,
    values: Vec<String>,
    #[serde(default)]
    container: Option<String>,
    #[serde(default)]
    siblings: Vec<[String; 2]>,
}

/// A word entry: all its words must be in the name.
#[derive(Debug, Clone, PartialEq)]
pub struct Phrase(pub Vec<String>);

impl Phrase {
    fn parse(s: &str) -> Option<Phrase> {
        let words: Vec<String> = s.split_whitespace().flat_map(split_words).collect();
        (!words.is_empty()).then_some(Phrase(words))
    }
}

/// A veto entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Negative {
    /// All words present anywhere in the words looked at.
    Phrase(Phrase),
    /// The word is the first word of the field name.
    First(String),
}

impl Negative {
    fn parse(s: &str) -> Option<Negative> {
        match s.strip_prefix('^') {
            Some(w) => {
                let w = fold(w.trim());
                (!w.is_empty() && !w.contains(' ')).then_some(Negative::First(w))
            }
            None => Phrase::parse(s).map(Negative::Phrase),
        }
    }
}

/// A context entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Context {
    Word(String),
    /// A sibling field of the container was assigned a category starting with this prefix.
    Sibling(String),
}

/// What a test case of a rule expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestKind {
    /// The rule's category must be assigned.
    TruePositive,
    /// Close to the rule but not it: the category must not be assigned.
    NearMiss,
    /// Looks like it to a naive detector: the category must not be assigned.
    Decoy,
}

/// One test case of a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleTest {
    pub kind: TestKind,
    pub path: String,
    pub values: Vec<String>,
    pub container: Option<String>,
    pub siblings: Vec<(String, String)>,
}

/// A value detector used by a rule: an index into the classifier's detectors, and its weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectorRef {
    pub index: usize,
    pub weight: f64,
    /// The detector's values count even as a minority of a field's values (a structured
    /// format such as an e-mail address or a MAC address that a mixed column sometimes holds).
    pub minority: bool,
}

/// A compiled rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: String,
    pub category: &'static str,
    pub names: Vec<Phrase>,
    pub weak_names: Vec<Phrase>,
    pub negative: Vec<Negative>,
    pub negative_context: Vec<Negative>,
    pub context: Vec<Context>,
    pub require_context: bool,
    pub suppressed_by: Vec<&'static str>,
    pub schema_types: Vec<String>,
    pub schema_weight: f64,
    pub detectors: Vec<DetectorRef>,
    pub tests: Vec<RuleTest>,
    /// Words of this rule's names: a global veto word that is also one of them does not veto
    /// this rule (`hash` vetoes tokens, not `password_hash`).
    pub own_words: BTreeSet<String>,
}

/// Everything compiled from a rules file.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSet {
    pub weights: Weights,
    pub global_negative: Vec<Negative>,
    pub generic_leaves: Vec<String>,
    pub rules: Vec<Rule>,
    pub detectors: Vec<Detector>,
}

fn category(rule: &str, c: &str) -> Result<&'static str, RulesError> {
    TAXONOMY
        .iter()
        .copied()
        .find(|t| *t == c)
        .ok_or_else(|| rule_err(rule, format!("unknown category {c:?}")))
}

fn phrases(rule: &str, what: &str, list: &[String]) -> Result<Vec<Phrase>, RulesError> {
    list.iter()
        .map(|s| Phrase::parse(s).ok_or_else(|| rule_err(rule, format!("empty entry in {what}"))))
        .collect()
}

fn negatives(rule: &str, what: &str, list: &[String]) -> Result<Vec<Negative>, RulesError> {
    list.iter()
        .map(|s| {
            Negative::parse(s).ok_or_else(|| rule_err(rule, format!("bad entry {s:?} in {what}")))
        })
        .collect()
}

fn weight_ok(w: f64) -> bool {
    w.is_finite() && (0.0..=1.0).contains(&w)
}

/// Compiles a rules file.
pub fn compile(text: &str) -> Result<RuleSet, RulesError> {
    let spec: FileSpec = toml::from_str(text).map_err(|e| RulesError::Syntax(e.to_string()))?;
    let w = spec.weights;
    for (k, v) in [
        ("name_strong", w.name_strong),
        ("name_weak", w.name_weak),
        ("parent_factor", w.parent_factor),
        ("context_bonus", w.context_bonus),
        ("contradiction", w.contradiction),
    ] {
        if !weight_ok(v) {
            return Err(RulesError::File(format!("weight {k} must be within 0..=1")));
        }
    }
    let global_negative = negatives("[global]", "negative", &spec.global.negative)?;
    let generic_leaves = spec.global.generic_leaves.iter().map(|s| fold(s)).collect();
    let mut detectors: Vec<Detector> = Vec::new();
    let mut rules: Vec<Rule> = Vec::new();
    for (i, value) in spec.rule.into_iter().enumerate() {
        // Name the rule even when its own fields are wrong: by id if it has one, else by index.
        let label = value
            .get("id")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| format!("#{}", i + 1));
        let r: RuleSpec = value
            .try_into()
            .map_err(|e: toml::de::Error| rule_err(&label, e.message().to_string()))?;
        let id = r.id.clone();
        if rules.iter().any(|x| x.id == id) {
            return Err(rule_err(&id, "duplicate rule id"));
        }
        let cat = category(&id, &r.category)?;
        let suppressed_by = r
            .suppressed_by
            .iter()
            .map(|c| category(&id, c))
            .collect::<Result<Vec<_>, _>>()?;
        let names = phrases(&id, "names", &r.names)?;
        let weak_names = phrases(&id, "weak_names", &r.weak_names)?;
        if names.is_empty() && weak_names.is_empty() && r.detectors.is_empty() {
            return Err(rule_err(&id, "a rule needs names or detectors"));
        }
        let context = r
            .context
            .iter()
            .map(|c| match c.strip_prefix('@') {
                Some(p) if !p.is_empty() => Ok(Context::Sibling(p.to_string())),
                Some(_) => Err(rule_err(&id, "empty sibling context")),
                None => Ok(Context::Word(fold(c.trim()))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if r.require_context && context.is_empty() {
            return Err(rule_err(&id, "require_context without context words"));
        }
        let schema_weight = r.schema_weight.unwrap_or(0.0);
        if !weight_ok(schema_weight) || (!r.schema_types.is_empty() && schema_weight == 0.0) {
            return Err(rule_err(
                &id,
                "schema_weight must be within 0..=1 (and > 0 with schema_types)",
            ));
        }
        let mut drefs = Vec::new();
        for t in &r.detectors {
            let did = t
                .get("id")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string();
            let derr = |message: String| RulesError::Detector {
                rule: id.clone(),
                detector: did.clone(),
                message,
            };
            let weight = match t.get("weight") {
                Some(toml::Value::Float(f)) if weight_ok(*f) => *f,
                _ => return Err(derr("needs a weight within 0..=1".into())),
            };
            let minority = match t.get("minority") {
                None => false,
                Some(toml::Value::Boolean(b)) => *b,
                Some(_) => return Err(derr("minority must be a boolean".into())),
            };
            let d = detect::compile(&did, t).map_err(derr)?;
            let index = match detectors.iter().position(|x| *x == d) {
                Some(i) => i,
                None if detectors.len() == shape::MAX_DETECTORS => {
                    return Err(derr(format!(
                        "a rules file may use at most {} distinct detectors",
                        shape::MAX_DETECTORS
                    )))
                }
                None => {
                    detectors.push(d);
                    detectors.len() - 1
                }
            };
            drefs.push(DetectorRef {
                index,
                weight,
                minority,
            });
        }
        let mut tests = Vec::new();
        for t in r.tests {
            let kind = match t.kind.as_str() {
                "tp" => TestKind::TruePositive,
                "near_miss" => TestKind::NearMiss,
                "decoy" => TestKind::Decoy,
                other => {
                    return Err(rule_err(
                        &id,
                        format!("test kind {other:?} is not tp, near_miss or decoy"),
                    ))
                }
            };
            tests.push(RuleTest {
                kind,
                path: t.path,
                values: t.values,
                container: t.container,
                siblings: t.siblings.into_iter().map(|[a, b]| (a, b)).collect(),
            });
        }
        let own_words = names
            .iter()
            .chain(&weak_names)
            .flat_map(|p| p.0.iter().cloned())
            .collect();
        rules.push(Rule {
            id: id.clone(),
            category: cat,
            names,
            weak_names,
            negative: negatives(&id, "negative", &r.negative)?,
            negative_context: negatives(&id, "negative_context", &r.negative_context)?,
            context,
            require_context: r.require_context,
            suppressed_by,
            schema_types: r
                .schema_types
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            schema_weight,
            detectors: drefs,
            tests,
            own_words,
        });
    }
    if rules.is_empty() {
        return Err(RulesError::File("no rules".into()));
    }
    Ok(RuleSet {
        weights: w,
        global_negative,
        generic_leaves,
        rules,
        detectors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "[weights]\nname_strong = 0.6\nname_weak = 0.45\nparent_factor = 0.8\n\
        context_bonus = 0.15\ncontradiction = 0.5\n[global]\nnegative = []\ngeneric_leaves = []\n";

    fn err(rule: &str) -> RulesError {
        compile(&format!("{HEAD}{rule}")).unwrap_err()
    }

    #[test]
    fn errors_name_the_rule() {
        let e = err("[[rule]]\nid = \"x\"\ncategory = \"identity.nope\"\ndetectors = []\n");
        assert!(
            matches!(&e, RulesError::Rule { rule, .. } if rule == "x"),
            "{e}"
        );
        let e = err("[[rule]]\nid = \"y\"\ncategory = \"identity.email\"\n\
             detectors = [{ id = \"email\", weight = 0.8, tld = 3 }]\n");
        assert!(
            matches!(&e, RulesError::Detector { rule, detector, .. } if rule == "y" && detector == "email"),
            "{e}"
        );
        let e =
            err("[[rule]]\nid = \"z\"\ncategory = \"identity.email\"\nnmes = []\ndetectors = []\n");
        assert!(
            matches!(&e, RulesError::Rule { rule, .. } if rule == "z"),
            "{e}"
        );
        assert!(e.to_string().contains("nmes"), "{e}");
        let e = err("[[rule]]\ncategory = \"identity.email\"\ndetectors = []\n");
        assert!(
            matches!(&e, RulesError::Rule { rule, .. } if rule == "#1"),
            "{e}"
        );
        let e = err(
            "[[rule]]\nid = \"d\"\ncategory = \"identity.email\"\nnames=[\"a\"]\ndetectors = []\n\
             [[rule]]\nid = \"d\"\ncategory = \"identity.email\"\nnames=[\"a\"]\ndetectors = []\n",
        );
        assert!(e.to_string().contains("duplicate"), "{e}");
        assert!(matches!(compile("[weights"), Err(RulesError::Syntax(_))));
    }

    #[test]
    fn entries_are_folded_and_split() {
        assert_eq!(
            Phrase::parse("Téléphone portable").unwrap().0,
            ["telephone", "portable"]
        );
        assert_eq!(Negative::parse("^num"), Some(Negative::First("num".into())));
    }
}
