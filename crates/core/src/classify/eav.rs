//! Entity–attribute–value tables: a key column naming what each row holds (`meta_key`,
//! `name`, `configkey`, `setting_key`) next to a value column (`meta_value`, `value`,
//! `configvalue`). Each kind of data is then one row in many, so no category dominates the
//! value column; classified as one field, it looks like noise.
//!
//! [`rewrite`] finds such a pair in a holding's sample and files each value under its key:
//! `meta_value` of a row whose `meta_key` is `billing_phone` becomes the field
//! `meta_value[billing_phone]` (and what a serialized value decoded to, `meta_value.city`,
//! becomes `meta_value[billing_address].city`). The classifier then reads the key as the
//! field's name (see `names_of`) and the values of one key together.
//!
//! Only names that occur more than once in the sample become fields (a key is copied into a
//! report's field path, so a one-off value there could be data, not a name).
//!
//! Detection is general: the key column's name ends in a key word and the value column's in
//! a value word (both lists below), the key column holds short names (letters, digits, `_`,
//! `-`, `.`, `:`; not numbers) in nearly every row, and those names repeat (fewer distinct
//! names than half the rows), as attribute names do and free text does not.

use std::collections::HashSet;

use crate::inventory::Record;

/// Endings of a key column's name.
const KEY_WORDS: &[&str] = &[
    "key",
    "name",
    "attribute",
    "attr",
    "field",
    "property",
    "option",
    "setting",
    "param",
    "parameter",
];
/// Endings of a value column's name.
const VALUE_WORDS: &[&str] = &["value", "val", "data", "content"];
/// Fewest sampled rows in which a pair is looked for.
const MIN_ROWS: usize = 8;
/// Longest key name.
const MAX_KEY: usize = 64;

fn ends_with_word(name: &str, words: &[&str]) -> bool {
    let n = name.to_ascii_lowercase();
    words.iter().any(|w| n.ends_with(w))
}

fn short_name(v: &str) -> bool {
    (1..=MAX_KEY).contains(&v.len())
        && v.bytes().any(|b| b.is_ascii_alphabetic())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// The top-level column a flattened path belongs to, when it is the column itself or below
/// it (`v`, `v.x`, `v[]`, `v[].x`).
fn column_of<'p>(path: &'p str, column: &str) -> Option<&'p str> {
    let rest = path.strip_prefix(column)?;
    (rest.is_empty() || rest.starts_with('.') || rest.starts_with('[')).then_some(rest)
}

/// The (key column, value column) of an EAV sample, if it is one.
pub fn detect(sample: &[Record]) -> Option<(String, String)> {
    if sample.len() < MIN_ROWS {
        return None;
    }
    // Top-level column names, from the first rows (rows of a table share their columns).
    let mut columns: Vec<&str> = Vec::new();
    for rec in sample.iter().take(4) {
        for (p, _) in rec {
            let top = p.split(['.', '[']).next().unwrap_or(p);
            if !columns.contains(&top) {
                columns.push(top);
            }
        }
    }
    let values: Vec<&str> = columns
        .iter()
        .copied()
        .filter(|c| ends_with_word(c, VALUE_WORDS))
        .collect();
    if values.is_empty() {
        return None;
    }
    for key in columns.iter().copied().filter(|c| {
        ends_with_word(c, KEY_WORDS) && !ends_with_word(c, VALUE_WORDS) && !values.contains(c)
    }) {
        let mut names = HashSet::new();
        let mut rows = 0;
        for rec in sample {
            if let Some((_, v)) = rec.iter().find(|(p, _)| p == key) {
                if short_name(v) {
                    rows += 1;
                    names.insert(v.as_str());
                }
            }
        }
        let enough = rows * 10 >= sample.len() * 9;
        let repeats = names.len() >= 2 && names.len() * 2 <= rows;
        if !(enough && repeats) {
            continue;
        }
        // The value column nearest the key column in the row (`meta_key`, `meta_value`).
        let at = columns.iter().position(|c| *c == key).unwrap_or(0);
        let value = values
            .iter()
            .min_by_key(|v| {
                let i = columns.iter().position(|c| c == *v).unwrap_or(0);
                i.abs_diff(at)
            })
            .copied()?;
        return Some((key.to_string(), value.to_string()));
    }
    None
}

/// The sample with each value column's pairs filed under their row's key, when the sample
/// is an EAV table; None otherwise.
pub fn rewrite(sample: &[Record]) -> Option<(String, Vec<Record>)> {
    let (key, value) = detect(sample)?;
    let key_of = |rec: &Record| -> Option<String> {
        rec.iter()
            .find(|(p, _)| *p == key)
            .map(|(_, v)| v.clone())
            .filter(|v| short_name(v))
    };
    // Only names seen more than once become fields: a key is copied into a field's path, and
    // a name that occurs once may be data (a token, an id) rather than an attribute's name.
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for rec in sample {
        if let Some(n) = key_of(rec) {
            *seen.entry(n).or_default() += 1;
        }
    }
    let out = sample
        .iter()
        .map(|rec| {
            let name = key_of(rec).filter(|n| seen.get(n).is_some_and(|&c| c > 1));
            let name = name.as_deref();
            rec.iter()
                .map(|(p, v)| match (name, column_of(p, &value)) {
                    (Some(n), Some(rest)) => (format!("{value}[{n}]{rest}"), v.clone()),
                    _ => (p.clone(), v.clone()),
                })
                .collect()
        })
        .collect();
    Some((value, out))
}

/// A path with its EAV key as a name segment (`meta_value[billing_phone].x` →
/// `meta_value.billing_phone.x`), for the name rules; array markers `[]` are left alone.
pub fn as_name_path(path: &str) -> std::borrow::Cow<'_, str> {
    let b = path.as_bytes();
    let has_key = memchr::memchr_iter(b'[', b).any(|i| b.get(i + 1).is_some_and(|&c| c != b']'));
    if !has_key {
        return path.into();
    }
    let mut out = String::with_capacity(path.len());
    let mut chars = path.char_indices().peekable();
    let mut in_key = false;
    while let Some((_, c)) = chars.next() {
        match c {
            '[' if chars.peek().is_some_and(|&(_, n)| n != ']') => {
                in_key = true;
                out.push('.');
            }
            ']' if in_key => in_key = false,
            c => out.push(c),
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(pairs: &[(&str, &str)]) -> Record {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn meta_tables_are_filed_by_key() {
        let keys = ["billing_phone", "billing_email", "nickname", "first_name"];
        let sample: Vec<Record> = (0..40)
            .map(|i| {
                let k = keys[i % keys.len()];
                rec(&[
                    ("umeta_id", &i.to_string()),
                    ("user_id", "7"),
                    ("meta_key", k),
                    ("meta_value", "x"),
                ])
            })
            .collect();
        let (col, out) = rewrite(&sample).unwrap();
        assert_eq!(col, "meta_value");
        assert_eq!(out[0][3].0, "meta_value[billing_phone]");
        assert_eq!(out[1][3].0, "meta_value[billing_email]");
        assert_eq!(
            as_name_path("meta_value[billing_phone].city"),
            "meta_value.billing_phone.city"
        );
        assert_eq!(as_name_path("devices[].mac"), "devices[].mac");
    }

    #[test]
    fn ordinary_tables_are_left_alone() {
        // A name column of distinct names and a value column: people, not attributes.
        let sample: Vec<Record> = (0..40)
            .map(|i| rec(&[("name", &format!("user{i}")), ("value", "3")]))
            .collect();
        assert!(detect(&sample).is_none());
        // Repeating statuses, but no key word in the column's name.
        let sample: Vec<Record> = (0..40)
            .map(|i| rec(&[("status", ["a", "b"][i % 2]), ("data", "3")]))
            .collect();
        assert!(detect(&sample).is_none());
    }
}
