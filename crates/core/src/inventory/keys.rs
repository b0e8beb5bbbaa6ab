//! Grouping the keys of key-value stores (Redis, Memcached) into containers by key pattern.
//!
//! Applications name keys `kind:id` (`user:42`, `sess:6f1c…`, `counter:events:2024-01-01`).
//! A key is cut into segments at its separator (`:`, else `/`, `|`, `.`; without any, before
//! its first digit). The last segment is the id; any other segment that looks like a value
//! rather than a word (digits, a UUID, an e-mail address, something a validator of the
//! classifier takes for a credential …) is variable too. Keys with the same literal segments
//! form one group (`user:*`, `session:*:cart`).
//!
//! Key names are data, so a group's name never holds a variable segment: each one becomes a
//! typed placeholder when all of the group's keys agree on its type (`user:<uuid>`,
//! `profile:<phone>`, `login:<email>`, `fragment:<n>`, also `<hex>` and `<date>`) and `*`
//! otherwise — also for a group of one key (`apikey:sk_live_51Hx…` is reported as
//! `apikey:*`). Only a segment all keys share that reads as a word stays (`queue:jobs`,
//! `user:<n>:profile`). The variable segments themselves are classified like field values
//! ([`add_key_fields`]: a field `key[1]`), with masked examples and fingerprints.
//!
//! The number of groups is capped; keys beyond it are counted under `*`.

use std::collections::HashMap;

use crate::classify::detect::Detector;
use crate::classify::names;

/// What a variable segment holds, as far as its shape tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Email,
    Phone,
    Uuid,
    Number,
    Date,
    Hex,
    /// A value of no type named here (a token, an opaque id): `*`.
    Other,
}

impl Slot {
    /// The placeholder written for the segment in a group's name.
    pub fn placeholder(self) -> &'static str {
        match self {
            Slot::Email => "<email>",
            Slot::Phone => "<phone>",
            Slot::Uuid => "<uuid>",
            Slot::Number => "<n>",
            Slot::Date => "<date>",
            Slot::Hex => "<hex>",
            Slot::Other => "*",
        }
    }
}

/// The type of a segment when it looks like a value rather than a word; None for a word.
pub fn slot(seg: &str) -> Option<Slot> {
    if seg.is_empty() {
        return None;
    }
    let digits = seg.bytes().filter(u8::is_ascii_digit).count();
    if seg.contains('@') && Detector::Email.check(seg) {
        return Some(Slot::Email);
    }
    if (seg.starts_with('+') || seg.starts_with("00")) && Detector::PhoneIntl.check(seg) {
        return Some(Slot::Phone);
    }
    if digits == seg.len() {
        return Some(Slot::Number);
    }
    if seg.len() == 36 && Detector::Uuid.check(seg) {
        return Some(Slot::Uuid);
    }
    if seg.len() >= 8 && digits > 0 && seg.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(Slot::Hex);
    }
    // Keys are listed by the million: the date parser only sees what could be a written date.
    if digits >= 4 && seg.contains(['-', '/', '.']) && (Detector::Date { birth: false }).check(seg)
    {
        return Some(Slot::Date);
    }
    if digits > 0 || seg.len() >= 24 || names::sensitive(seg).is_some() {
        return Some(Slot::Other);
    }
    None
}

/// A key cut into segments: the segments and what joins them (`""` for the digit split).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parts<'a> {
    pub sep: &'static str,
    pub segs: Vec<&'a str>,
    /// Per segment: variable (part of the id) or literal.
    pub variable: Vec<bool>,
    /// Per segment: its type ([`slot`]).
    pub slots: Vec<Option<Slot>>,
}

/// Cuts a key into segments and says which are variable (see the module docs).
pub fn parts(key: &str) -> Parts<'_> {
    let one = |slot: Option<Slot>, variable: bool| Parts {
        sep: "",
        segs: vec![key],
        variable: vec![variable],
        slots: vec![slot],
    };
    // A key that is one value as a whole (an e-mail address, which has dots; a token with `.`
    // or `|` in it) is not cut. A `:` or `/` never occurs in those, and most keys have one.
    if !key.contains([':', '/']) {
        let whole = slot(key);
        if matches!(whole, Some(Slot::Email | Slot::Phone | Slot::Uuid)) {
            return one(whole, true);
        }
        if names::sensitive(key).is_some() {
            return one(Some(Slot::Other), true);
        }
    }
    for sep in [":", "/", "|", "."] {
        if key.rfind(sep).is_some_and(|i| i > 0) {
            let segs: Vec<&str> = key.split(sep).collect();
            let slots: Vec<Option<Slot>> = segs.iter().map(|s| slot(s)).collect();
            let n = segs.len();
            let variable = slots
                .iter()
                .enumerate()
                .map(|(i, s)| i + 1 == n || s.is_some())
                .collect();
            return Parts {
                sep,
                segs,
                variable,
                slots,
            };
        }
    }
    match key.find(|c: char| c.is_ascii_digit()) {
        Some(i) if i > 0 => Parts {
            sep: "",
            segs: vec![&key[..i], &key[i..]],
            variable: vec![false, true],
            slots: vec![None, slot(&key[i..])],
        },
        _ => {
            let s = slot(key);
            one(s, s.is_some())
        }
    }
}

/// The group a key belongs to: its literal segments, `*` for each variable one
/// (`user:42` → `user:*`, `session:ab12cd34ef:cart` → `session:*:*`, `config` → `config`).
pub fn pattern(key: &str) -> String {
    structural_of(&parts(key))
}

fn structural_of(p: &Parts<'_>) -> String {
    p.segs
        .iter()
        .zip(&p.variable)
        .map(|(s, v)| if *v { "*" } else { s })
        .collect::<Vec<_>>()
        .join(p.sep)
}

/// A group's name or pattern with every placeholder as `*` (`user:<uuid>` → `user:*`): the
/// [`pattern`] of each of its keys.
pub fn structural(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..i]);
        match rest[i..].find('>') {
            Some(j) if rest[i + 1..i + j].bytes().all(|b| b.is_ascii_lowercase()) => {
                out.push('*');
                rest = &rest[i + j + 1..];
            }
            _ => {
                out.push('<');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The literal prefix of a family whose only variable part is its end (`user:<uuid>` →
/// `user:`, `counter:events:*` → `counter:events:`); None for one key (`queue:jobs`), a middle
/// placeholder (`user:<n>:profile`) or the overflow group.
pub fn family_prefix(name: &str) -> Option<&str> {
    let cut = name.rfind(['*', '<'])?;
    let prefix = &name[..cut];
    let tail = &name[cut..];
    let one_placeholder = tail == "*"
        || (tail.starts_with('<')
            && tail.ends_with('>')
            && tail[1..tail.len() - 1]
                .bytes()
                .all(|b| b.is_ascii_lowercase()));
    (one_placeholder && !prefix.is_empty() && !prefix.contains(['*', '<'])).then_some(prefix)
}

/// The variable segments of a key as flattened fields (`key[1]` = `42` for `user:42`), to be
/// classified like any field value.
pub fn key_fields(key: &str) -> Vec<(String, String)> {
    let p = parts(key);
    p.segs
        .iter()
        .zip(&p.variable)
        .enumerate()
        .filter(|(_, (_, v))| **v)
        .map(|(i, (s, _))| (format!("key[{i}]"), s.to_string()))
        .collect()
}

/// Adds the variable segments of each sampled record's key to that record ([`key_fields`]),
/// where the holding has a key per record.
pub fn add_key_fields(h: &mut super::Holding) {
    if h.sample_keys.len() != h.sample.len() {
        return;
    }
    for (rec, key) in h.sample.iter_mut().zip(&h.sample_keys) {
        rec.extend(key_fields(key));
    }
}

/// Agreement of a group's keys on one segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Agree<T> {
    #[default]
    Unset,
    Same(T),
    Mixed,
}

impl<T: PartialEq> Agree<T> {
    fn add(&mut self, v: T) {
        match self {
            Agree::Unset => *self = Agree::Same(v),
            Agree::Same(x) if *x != v => *self = Agree::Mixed,
            _ => {}
        }
    }
}

impl Agree<String> {
    /// [`Agree::add`] without a copy of a text already seen.
    fn add_str(&mut self, v: &str) {
        match self {
            Agree::Unset => *self = Agree::Same(v.to_string()),
            Agree::Same(x) if x != v => *self = Agree::Mixed,
            _ => {}
        }
    }
}

/// Keys seen for one pattern.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    pub keys: u64,
    pub bytes: u64,
    /// The first keys seen, up to the sample size (SCAN and metadump orders are hash orders, so
    /// these are spread across the keyspace, not the oldest or newest).
    pub sample: Vec<String>,
    /// Per segment: whether every key had the same text there, and the same type.
    texts: Vec<Agree<String>>,
    slots: Vec<Agree<Option<Slot>>>,
    sep: &'static str,
    variable: Vec<bool>,
    /// The first key's segments where they are literal (the same in every key of the group).
    literals: Vec<String>,
}

impl Group {
    fn add(&mut self, p: &Parts<'_>) {
        if self.texts.len() != p.segs.len() {
            self.texts = vec![Agree::Unset; p.segs.len()];
            self.slots = vec![Agree::Unset; p.segs.len()];
            self.sep = p.sep;
            self.variable = p.variable.clone();
            self.literals = p
                .segs
                .iter()
                .zip(&p.variable)
                .map(|(s, v)| if *v { String::new() } else { s.to_string() })
                .collect();
        }
        for (i, s) in p.segs.iter().enumerate() {
            if self.variable[i] {
                self.texts[i].add_str(s);
                self.slots[i].add(p.slots[i]);
            }
        }
    }

    /// The group's name: literal segments, a placeholder for each variable one (a segment
    /// every key shares that reads as a word stays).
    fn name(&self, pattern: &str) -> String {
        if self.variable.is_empty() {
            return pattern.to_string();
        }
        let mut out = Vec::with_capacity(self.variable.len());
        for i in 0..self.variable.len() {
            if !self.variable[i] {
                out.push(self.literals[i].clone());
                continue;
            }
            let seg = match (&self.texts[i], &self.slots[i]) {
                (Agree::Same(t), Agree::Same(None)) => t.clone(),
                (_, Agree::Same(Some(s))) => s.placeholder().to_string(),
                _ => "*".to_string(),
            };
            out.push(seg);
        }
        out.join(self.sep)
    }
}

/// Accumulates keys into patterns with a cap on the number of patterns.
#[derive(Debug, Clone)]
pub struct Grouper {
    groups: HashMap<String, Group>,
    order: Vec<String>,
    max_groups: usize,
    sample: usize,
    pub total: u64,
}

/// The pattern under which keys beyond the group cap are counted.
pub const OVERFLOW: &str = "*";

/// The overflow group's key inside the grouper (no key's pattern has a NUL).
const OVERFLOW_KEY: &str = "\0*";

impl Grouper {
    pub fn new(max_groups: usize, sample: usize) -> Grouper {
        Grouper {
            groups: HashMap::new(),
            order: Vec::new(),
            max_groups: max_groups.max(1),
            sample,
            total: 0,
        }
    }

    pub fn add(&mut self, key: &str, bytes: u64) {
        self.total += 1;
        let parts = parts(key);
        let mut p = structural_of(&parts);
        if !self.groups.contains_key(&p) && self.groups.len() >= self.max_groups {
            p = OVERFLOW_KEY.to_string();
        }
        let g = self.groups.entry(p.clone()).or_insert_with(|| {
            self.order.push(p.clone());
            Group::default()
        });
        g.keys += 1;
        g.bytes += bytes;
        if p != OVERFLOW_KEY {
            g.add(&parts);
        }
        if g.sample.len() < self.sample {
            g.sample.push(key.to_string());
        }
    }

    /// Groups in first-seen order, as (container name, group); names carry placeholders, never
    /// a variable segment of a key.
    pub fn finish(mut self) -> Vec<(String, Group)> {
        self.order
            .into_iter()
            .filter_map(|p| {
                let g = self.groups.remove(&p)?;
                let name = if p == OVERFLOW_KEY {
                    OVERFLOW.to_string()
                } else {
                    g.name(&p)
                };
                Some((name, g))
            })
            .collect()
    }

    pub fn groups(&self) -> usize {
        self.groups.len()
    }
}

/// Decodes `%XX` escapes (memcached's metadump URL-encodes keys).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = hex {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert_eq!(pattern("user:2f1c-aa"), "user:*");
        assert_eq!(pattern("counter:events:2024-01-01"), "counter:events:*");
        assert_eq!(pattern("cache/user/42"), "cache/user/*");
        assert_eq!(pattern("session12345"), "session*");
        assert_eq!(pattern("config"), "config");
        assert_eq!(pattern(":odd"), ":odd");
        assert_eq!(pattern("session:ab12cd34ef:cart"), "session:*:*");
        assert_eq!(pattern("erin@example.com"), "*");
        assert_eq!(structural("db0:user:<uuid>"), "db0:user:*");
        assert_eq!(structural("a<b"), "a<b");
        assert_eq!(family_prefix("user:<uuid>"), Some("user:"));
        assert_eq!(family_prefix("counter:events:*"), Some("counter:events:"));
        assert_eq!(family_prefix("session<n>"), Some("session"));
        assert_eq!(family_prefix("queue:jobs"), None);
        assert_eq!(family_prefix("user:<n>:profile"), None);
        assert_eq!(family_prefix("*"), None);
    }

    fn names(keys: &[&str]) -> Vec<String> {
        let mut g = Grouper::new(100, 2);
        for k in keys {
            g.add(k, 1);
        }
        g.finish().into_iter().map(|(n, _)| n).collect()
    }

    #[test]
    fn no_group_name_holds_a_variable_segment_even_for_one_key() {
        // Issue 14: a key alone used to become the container name verbatim.
        assert_eq!(
            names(&["apikey:sk_live_51HxQ2aLkT0pZ9qWe8rTy7uI"]),
            ["apikey:*"]
        );
        assert_eq!(names(&["profile:+442079460958"]), ["profile:<phone>"]);
        assert_eq!(names(&["login:erin@example.com"]), ["login:<email>"]);
        assert_eq!(names(&["erin@example.com"]), ["<email>"]);
        assert_eq!(names(&["session12345", "session777"]), ["session<n>"]);
        assert_eq!(names(&["queue:jobs"]), ["queue:jobs"]);
        assert_eq!(
            names(&["user:42:profile", "user:43:profile"]),
            ["user:<n>:profile"]
        );
        assert_eq!(
            names(&[
                "sess:6f1c0a52-9c1e-4d4f-8a53-0d7f7c1e2b11",
                "sess:0b9d7c4e-1f2a-4b3c-9d8e-7f6a5b4c3d2e"
            ]),
            ["sess:<uuid>"]
        );
        assert_eq!(names(&["user:erin", "user:bob"]), ["user:*"]);
        assert_eq!(names(&["user:1", "user:x-2"]), ["user:*"]);
        assert_eq!(
            names(&["counter:events:2024-01-01", "counter:events:2024-01-02"]),
            ["counter:events:<date>"]
        );
        assert_eq!(
            names(&["fragment:home:7", "fragment:home:12"]),
            ["fragment:home:<n>"]
        );
    }

    #[test]
    fn overflow_is_counted_and_groups_keep_their_samples() {
        let mut g = Grouper::new(3, 2);
        for k in [
            "user:1",
            "user:2",
            "user:3",
            "queue:jobs",
            "a:1",
            "b:1",
            "c:1",
        ] {
            g.add(k, 10);
        }
        let out = g.finish();
        let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["user:<n>", "queue:jobs", "a:<n>", "*"]);
        assert_eq!(out[0].1.keys, 3);
        assert_eq!(out[0].1.sample, vec!["user:1", "user:2"]);
        assert_eq!(out[3].1.keys, 2);
    }

    #[test]
    fn variable_segments_become_fields() {
        assert_eq!(
            key_fields("login:erin@example.com"),
            vec![("key[1]".to_string(), "erin@example.com".to_string())]
        );
        assert_eq!(
            key_fields("user:42:profile"),
            vec![
                ("key[1]".to_string(), "42".to_string()),
                ("key[2]".to_string(), "profile".to_string())
            ]
        );
        assert!(key_fields("config").is_empty());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("session%3Aab%2Fc"), "session:ab/c");
        assert_eq!(percent_decode("bad%zz%4"), "bad%zz%4");
    }
}
