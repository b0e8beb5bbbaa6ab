//! Names are data: sensitive values inside the names a server chose (index, table, collection
//! and database names, JSON object keys that became field paths, hash field names, key-value
//! keys), found with the classifier's own validators and masked as its examples are.
//!
//! A name is searched for spans that one of the classifier's *validators* accepts: the value
//! detectors of the sensitive categories (identity e-mail and phone, credentials, financial and
//! government ids) whose rule weight is at least [`NAME_VALIDATOR_WEIGHT`]. Shapes that weigh
//! less (a person's name, a random-looking string, a hex digest) describe most ordinary names
//! too and are left alone. Each span found becomes its masked example (`j•••@g•••.com`,
//! `sk_live_•••QRST`); the rest of the name stays as it was.
//!
//! Spans start and end where a run of letters and digits starts or ends; from each start the
//! longest span a validator accepts is masked (a phone number with spaces is one value, not
//! four). Free text (notes, methods) is searched the same way, except that spans of digits
//! alone are left to the counts and versions they usually are there.

use std::borrow::Cow;
use std::sync::OnceLock;

use super::shape::Shape;
use super::{mask, Classifier};

/// Rule weight from which a detector is a validator whose verdict alone masks part of a name:
/// the phone-number validator's (0.45) and above; value shapes weigh less.
pub const NAME_VALIDATOR_WEIGHT: f64 = 0.45;

/// Longest span tried (a JWT or a PEM key in a name is longer, and is masked by its prefix
/// checks as far as they reach).
const MAX_SPAN: usize = 512;
/// Shortest span tried: nothing sensitive is shorter.
const MIN_SPAN: usize = 5;

/// Categories whose values must not be printed from a name.
fn sensitive_category(c: &str) -> bool {
    matches!(c, "identity.email" | "identity.phone" | "government.id")
        || c.starts_with("credential.")
        || c.starts_with("financial.")
}

/// The name validators of a classifier: (detector index, category), strongest first.
struct NameDetectors {
    list: Vec<(usize, &'static str)>,
    bits: u128,
}

impl NameDetectors {
    fn of(c: &Classifier) -> NameDetectors {
        let mut list: Vec<(usize, &'static str, f64)> = Vec::new();
        for rule in &c.set.rules {
            if !sensitive_category(rule.category) {
                continue;
            }
            for d in &rule.detectors {
                if d.weight >= NAME_VALIDATOR_WEIGHT && !list.iter().any(|x| x.0 == d.index) {
                    list.push((d.index, rule.category, d.weight));
                }
            }
        }
        list.sort_by(|a, b| b.2.total_cmp(&a.2));
        let bits = list.iter().fold(0u128, |b, x| b | 1u128 << x.0);
        NameDetectors {
            list: list.into_iter().map(|(i, c, _)| (i, c)).collect(),
            bits,
        }
    }
}

/// Compiles the built-in rules and the name detectors now, so that the first service to need
/// them does not stall the probes running beside it (see [`crate::scan`]).
///
/// The validators' own tables load on first use too (the phone number metadata, the secret
/// ruleset's patterns: 70 ms of a debug build), so a sample text goes through them once.
pub fn warm_up() {
    builtin_detectors();
    let _ = mask_text("call +44 20 7946 0958 or erin@example.com, token sk_live_51HxQ2aLkT0pZ9AbC");
}

fn builtin_detectors() -> &'static NameDetectors {
    static D: OnceLock<NameDetectors> = OnceLock::new();
    D.get_or_init(|| NameDetectors::of(Classifier::builtin()))
}

impl Classifier {
    /// The sensitive category a whole value of a name (a key segment, a path segment) belongs
    /// to by the validators alone, if any.
    pub fn name_category(&self, v: &str) -> Option<&'static str> {
        if std::ptr::eq(self, Classifier::builtin()) {
            builtin_detectors().find(self, v)
        } else {
            NameDetectors::of(self).find(self, v)
        }
    }
}

impl NameDetectors {
    fn find(&self, c: &Classifier, v: &str) -> Option<&'static str> {
        if v.len() < MIN_SPAN || v.len() > MAX_SPAN {
            return None;
        }
        let shape = Shape::of(v);
        let admitted = c.pre.admitted(&shape, self.bits);
        if admitted == 0 {
            return None;
        }
        self.list
            .iter()
            .find(|(i, _)| {
                admitted & (1u128 << i) != 0 && c.set.detectors[*i].check_shaped(v, &shape)
            })
            .map(|(_, cat)| *cat)
    }
}

/// The sensitive category of a whole string by the built-in validators (see [`mask_name`]).
pub fn sensitive(v: &str) -> Option<&'static str> {
    Classifier::builtin().name_category(v)
}

/// `name` with every sensitive span masked (see the module docs); borrowed when there was none.
///
/// ```
/// use leakscope_core::classify::names::mask_name;
/// assert_eq!(mask_name("customers"), "customers");
/// assert_eq!(mask_name("by_mail:erin@example.com:plan"), "by_mail:e•••@e•••.com:plan");
/// ```
pub fn mask_name(name: &str) -> Cow<'_, str> {
    mask_spans(name, false)
}

/// Like [`mask_name`] for free text that quotes names (notes, methods): spans of digits alone
/// (counts, versions, addresses) are not taken for phone numbers or ids.
pub fn mask_text(text: &str) -> Cow<'_, str> {
    mask_spans(text, true)
}

fn mask_spans(text: &str, free_text: bool) -> Cow<'_, str> {
    if text.len() < MIN_SPAN {
        return Cow::Borrowed(text);
    }
    let d = builtin_detectors();
    let c = Classifier::builtin();
    // Spans start where a run of letters or digits starts (or at a `+`), and end where one ends.
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let word = |ch: char| ch.is_alphanumeric();
    let mut starts = Vec::new();
    let mut ends = Vec::new();
    for (k, &(i, ch)) in chars.iter().enumerate() {
        let prev = k.checked_sub(1).map(|p| chars[p].1);
        if (word(ch) && !prev.is_some_and(word)) || ch == '+' {
            starts.push(i);
        }
        let next = chars.get(k + 1).map(|n| n.1);
        if word(ch) && !next.is_some_and(word) {
            ends.push(i + ch.len_utf8());
        }
    }
    let mut out = String::new();
    let mut done = 0usize;
    let mut si = 0;
    while si < starts.len() {
        let s = starts[si];
        si += 1;
        if s < done {
            continue;
        }
        let mut hit = None;
        for &e in ends.iter().rev() {
            if e <= s || e - s < MIN_SPAN {
                break;
            }
            if e - s > MAX_SPAN {
                continue;
            }
            let span = &text[s..e];
            if free_text
                && span
                    .bytes()
                    .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b',' | b' ' | b'-' | b':'))
            {
                continue;
            }
            if let Some(cat) = d.find(c, span) {
                hit = Some((e, cat));
                break;
            }
        }
        if let Some((e, cat)) = hit {
            out.push_str(&text[done..s]);
            out.push_str(&mask::mask(cat, &text[s..e]));
            done = e;
        }
    }
    if done == 0 && out.is_empty() {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[done..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_spans_in_names_are_masked() {
        assert_eq!(mask_name("customer-index"), "customer-index");
        assert_eq!(
            mask_name("smarthome.public.users"),
            "smarthome.public.users"
        );
        assert_eq!(mask_name("logs-2024.01.01"), "logs-2024.01.01");
        let m = mask_name("apikey:sk_live_51HxQ2aLkT0pZ9qWe8rTy7uI");
        assert_eq!(m, "apikey:sk_live_•••7uI".replace("7uI", "y7uI"));
        let m = mask_name("profile.+44 20 7946 0958.name");
        assert!(!m.contains("7946"), "{m}");
        assert!(m.starts_with("profile.+44") && m.ends_with(".name"), "{m}");
        let m = mask_name("login:erin@example.com");
        assert_eq!(m, "login:e•••@e•••.com");
        let m = mask_name("cards.4111111111111111");
        assert_eq!(m, "cards.•••• 1111");
        assert_eq!(sensitive("erin@example.com"), Some("identity.email"));
        assert_eq!(sensitive("+442079460958"), Some("identity.phone"));
        assert_eq!(sensitive("users"), None);
    }

    #[test]
    fn counts_and_versions_in_free_text_stay() {
        let note = "db0: looked at 2400000 of 31207999 keys; Redis 7.0.15 at 127.0.10.4:6379";
        assert_eq!(mask_text(note), note);
        assert_eq!(
            mask_text("index anna@example.com: 3 shards failed"),
            "index a•••@e•••.com: 3 shards failed"
        );
    }
}
