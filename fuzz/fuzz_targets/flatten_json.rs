//! Flattening of sampled records: any JSON document (and any string, which may hold JSON) into
//! bounded (path, value) pairs; and the flattener straight from text (`leakscope classify`)
//! giving exactly what the flattener of parsed documents gives, or an error and no pairs.
#![no_main]

use leakscope_core::fuzzing::flatten::{flatten_json, flatten_row, truncate, Flat};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Most pairs taken from one record (`flatten::MAX_PAIRS`).
const MAX_PAIRS: usize = 2000;
/// Longest rendering of a JSON number or boolean, which are not truncated.
const SCALAR: usize = 32;

fn check(rec: &[(String, String)], cap: usize) {
    assert!(rec.len() <= MAX_PAIRS, "{} pairs", rec.len());
    for (_, v) in rec {
        assert!(
            v.len() <= cap.max(SCALAR),
            "value of {} bytes, cap {cap}",
            v.len()
        );
    }
}

/// Whether an object of the text repeats a key: the text then has more keys than the tree
/// has members.
fn has_duplicate_keys(v: &Value, data: &[u8]) -> bool {
    fn members(v: &Value) -> usize {
        match v {
            Value::Object(m) => m.len() + m.values().map(members).sum::<usize>(),
            Value::Array(a) => a.iter().map(members).sum(),
            _ => 0,
        }
    }
    let mut keys = 0usize;
    let mut de = serde_json::Deserializer::from_slice(data);
    let counted = serde::de::Deserializer::deserialize_any(&mut de, KeyCount(&mut keys)).is_ok();
    !counted || keys != members(v)
}

struct KeyCount<'a>(&'a mut usize);

impl<'de> serde::de::DeserializeSeed<'de> for KeyCount<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for KeyCount<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        while m.next_key::<serde::de::IgnoredAny>()?.is_some() {
            *self.0 += 1;
            m.next_value_seed(KeyCount(&mut *self.0))?;
        }
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<(), A::Error> {
        while s.next_element_seed(KeyCount(&mut *self.0))?.is_some() {}
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let cap = usize::from(data.first().copied().unwrap_or(0) % 64);
    let mut flat = Flat::new(cap);
    let streamed = flat.json_slice(data);
    match serde_json::from_slice::<Value>(data) {
        Ok(v) => {
            let tree = flatten_json(&v, cap);
            check(&tree, cap);
            check(&flatten_json(&v, 256), 256);
            // Duplicate keys are the one difference: a tree keeps the last value, the text
            // walk both (both are classified).
            if streamed.is_ok() && !has_duplicate_keys(&v, data) {
                assert_eq!(flat.to_record(), tree);
            }
            assert!(
                streamed.is_ok(),
                "the text walk refused what the tree parser took"
            );
        }
        Err(_) => {
            assert!(
                streamed.is_err(),
                "the text walk took what the tree parser refused"
            );
            assert_eq!(flat.pairs().count(), 0);
        }
    }
    let text = String::from_utf8_lossy(data);
    check(&flatten_json(&Value::String(text.to_string()), cap), cap);
    let cols: Vec<(&str, Option<&str>)> = text
        .split('\u{1}')
        .map(|c| match c.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (c, None),
        })
        .collect();
    check(&flatten_row(cols, cap), cap);
    let t = truncate(&text, cap);
    assert!(t.len() <= cap && text.starts_with(&t));
});
