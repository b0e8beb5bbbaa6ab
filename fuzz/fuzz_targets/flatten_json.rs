//! Flattening of sampled records: any JSON document (and any string, which may hold JSON) into
//! bounded (path, value) pairs.
#![no_main]

use leakscope_core::fuzzing::flatten::{flatten_json, flatten_row, truncate};
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

fuzz_target!(|data: &[u8]| {
    let cap = usize::from(data.first().copied().unwrap_or(0) % 64);
    if let Ok(v) = serde_json::from_slice::<Value>(data) {
        check(&flatten_json(&v, cap), cap);
        check(&flatten_json(&v, 256), 256);
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
