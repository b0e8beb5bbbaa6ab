//! Flattening sampled records into `(field path, value)` pairs.
//!
//! Paths join object keys with `.` and mark array elements with `[]` (`devices[].mac`), the
//! convention of the lab manifest and the report. Strings that hold JSON (Redis values, text
//! columns, session blobs) are parsed and flattened under their own path. Values are truncated
//! to a byte cap on a character boundary; depth and item counts are capped so a hostile document
//! costs bounded work.

use serde_json::Value;

/// One flattened record: (path, value) in document order (serde_json keeps key order here). Repeated paths are array elements.
pub type Record = Vec<(String, String)>;

/// Deepest nesting followed (deeper values are dropped).
const MAX_DEPTH: usize = 16;
/// Most pairs taken from one record.
const MAX_PAIRS: usize = 2000;

/// Truncates `s` to at most `cap` bytes on a character boundary.
pub fn truncate(s: &str, cap: usize) -> String {
    if s.len() <= cap {
        return s.to_string();
    }
    let mut end = cap;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Parses a string that looks like a JSON object or array; None otherwise.
fn embedded_json(s: &str) -> Option<Value> {
    let t = s.trim_start();
    if !(t.starts_with('{') || t.starts_with('[')) || s.len() > 1 << 20 {
        return None;
    }
    serde_json::from_str::<Value>(s)
        .ok()
        .filter(|v| v.is_object() || v.is_array())
}

fn walk(v: &Value, path: &str, depth: usize, cap: usize, out: &mut Record) {
    if out.len() >= MAX_PAIRS || depth > MAX_DEPTH {
        return;
    }
    match v {
        Value::Null => {}
        Value::Bool(b) => out.push((path.to_string(), b.to_string())),
        Value::Number(n) => out.push((path.to_string(), n.to_string())),
        Value::String(s) => match embedded_json(s) {
            Some(inner) => walk(&inner, path, depth + 1, cap, out),
            None => out.push((path.to_string(), truncate(s, cap))),
        },
        Value::Array(items) => {
            let p = format!("{path}[]");
            for item in items {
                walk(item, &p, depth + 1, cap, out);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                walk(item, &join(path, k), depth + 1, cap, out);
            }
        }
    }
}

/// Flattens one JSON document (or scalar, under the path `value`).
pub fn flatten_json(v: &Value, value_cap: usize) -> Record {
    let mut out = Vec::new();
    match v {
        Value::Object(_) | Value::Array(_) => walk(v, "", 0, value_cap, &mut out),
        // A whole value that is JSON text (a Redis string, a memcached item) is the document.
        Value::String(s) => match embedded_json(s) {
            Some(inner) => walk(&inner, "", 1, value_cap, &mut out),
            None => walk(v, "value", 0, value_cap, &mut out),
        },
        _ => walk(v, "value", 0, value_cap, &mut out),
    }
    // A top-level array flattens to paths starting with `[]`, as the manifest names them.
    out
}

/// Flattens a flat row of named columns; text columns holding JSON are expanded under the
/// column name.
pub fn flatten_row<'a>(
    cols: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    value_cap: usize,
) -> Record {
    let mut out = Vec::new();
    for (name, value) in cols {
        let Some(value) = value else { continue };
        match embedded_json(value) {
            Some(inner) => walk(&inner, name, 1, value_cap, &mut out),
            None => out.push((name.to_string(), truncate(value, value_cap))),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pairs(r: &Record) -> Vec<(&str, &str)> {
        r.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
    }

    #[test]
    fn nested_objects_and_arrays() {
        let doc = json!({"email": "a@b.c", "devices": [{"mac": "AA"}, {"mac": "BB"}], "alexa": {"t": "Atza|x"}, "n": null});
        let r = flatten_json(&doc, 64);
        assert_eq!(
            pairs(&r),
            vec![
                ("email", "a@b.c"),
                ("devices[].mac", "AA"),
                ("devices[].mac", "BB"),
                ("alexa.t", "Atza|x")
            ]
        );
    }

    #[test]
    fn json_inside_strings_is_parsed() {
        let doc = json!({"session": "{\"user\":{\"email\":\"x@y.z\"},\"ip\":\"1.2.3.4\"}"});
        assert_eq!(
            pairs(&flatten_json(&doc, 64)),
            vec![("session.user.email", "x@y.z"), ("session.ip", "1.2.3.4")]
        );
        let row = flatten_row(
            [
                ("id", Some("7")),
                ("payload", Some("[{\"a\":1}]")),
                ("gone", None),
            ],
            64,
        );
        assert_eq!(pairs(&row), vec![("id", "7"), ("payload[].a", "1")]);
        assert_eq!(
            pairs(&flatten_json(&json!("plain"), 64)),
            vec![("value", "plain")]
        );
        assert_eq!(
            pairs(&flatten_json(&json!("{\"a\":[1]}"), 64)),
            vec![("a[]", "1")]
        );
    }

    #[test]
    fn values_are_truncated_on_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        let r = flatten_json(&json!({"k": "x".repeat(1000)}), 10);
        assert_eq!(r[0].1.len(), 10);
    }

    #[test]
    fn hostile_depth_and_width_are_bounded() {
        let mut v = json!(1);
        for _ in 0..100 {
            v = json!([v]);
        }
        assert!(flatten_json(&v, 8).is_empty());
        let wide = Value::Array((0..10_000).map(|i| json!(i)).collect());
        assert_eq!(flatten_json(&wide, 8).len(), MAX_PAIRS);
    }
}
