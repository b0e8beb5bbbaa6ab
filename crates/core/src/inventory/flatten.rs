//! Flattening sampled records into `(field path, value)` pairs.
//!
//! Paths join object keys with `.` and mark array elements with `[]` (`devices[].mac`), the
//! convention of the lab manifest and the report. Strings that hold JSON (Redis values, text
//! columns, session blobs) are parsed and flattened under their own path. Values are truncated
//! to a byte cap on a character boundary; depth and item counts are capped so a hostile document
//! costs bounded work.
//!
//! Two walks fill the same [`Flat`]: JSON text goes through a parser built for this (the
//! private module `text`: `leakscope classify` sends every line of an export through it),
//! parsed trees (`serde_json::Value` from the probes) through a serde visitor. Tests and a
//! fuzz target hold them to the same pairs for the same document.

use std::fmt::Write as _;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

pub mod decode;
mod text;

pub use text::TextError;

/// One flattened record: (path, value) in document order. Repeated paths are array elements.
pub type Record = Vec<(String, String)>;

/// Deepest nesting followed (deeper values are dropped).
const MAX_DEPTH: usize = 16;
/// Most pairs taken from one record.
const MAX_PAIRS: usize = 2000;
/// Longest string parsed as embedded JSON.
const MAX_EMBEDDED: usize = 1 << 20;

/// Truncates `s` to at most `cap` bytes on a character boundary.
pub fn truncate(s: &str, cap: usize) -> String {
    s[..cut(s, cap)].to_string()
}

/// The byte length of `s` truncated to at most `cap` bytes on a character boundary.
fn cut(s: &str, cap: usize) -> usize {
    if s.len() <= cap {
        return s.len();
    }
    let mut end = cap;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// Whether a string may hold a JSON object or array worth parsing.
fn looks_embedded(s: &str) -> bool {
    // Most values start with a letter or digit: decided on the first byte, not a trim.
    match s.as_bytes().first() {
        Some(b'{' | b'[') => return s.len() <= MAX_EMBEDDED,
        Some(c) if c.is_ascii_graphic() => return false,
        _ => {}
    }
    let t = s.trim_start();
    (t.starts_with('{') || t.starts_with('[')) && s.len() <= MAX_EMBEDDED
}

/// One record flattened into reusable buffers: parsing a JSON line straight into `(path,
/// value)` pairs, with no document tree and, once the buffers have grown, no allocation per
/// record. [`flatten_json`] and [`flatten_row`] fill one too.
///
/// Each pair's path and value sit side by side in one text arena; the walk keeps the current
/// path in a buffer it extends and cuts back as it enters and leaves objects and arrays.
#[derive(Debug, Default)]
pub struct Flat {
    cap: usize,
    path: String,
    text: String,
    /// Per pair: start of the path, end of the path (= start of the value), end of the value.
    pairs: Vec<[usize; 3]>,
}

impl Flat {
    /// Empty buffers; values will be truncated to `value_cap` bytes.
    pub fn new(value_cap: usize) -> Flat {
        Flat {
            cap: value_cap,
            ..Flat::default()
        }
    }

    /// Forgets the pairs (keeps the buffers).
    pub fn clear(&mut self) {
        self.path.clear();
        self.text.clear();
        self.pairs.clear();
    }

    /// The pairs, in document order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.pairs
            .iter()
            .map(|&[a, b, c]| (&self.text[a..b], &self.text[b..c]))
    }

    /// The pairs as an owned record.
    pub fn to_record(&self) -> Record {
        self.pairs()
            .map(|(p, v)| (p.to_string(), v.to_string()))
            .collect()
    }

    /// Flattens one JSON document from bytes, replacing what was here. On an error no pairs
    /// are left (a bad line has no fields).
    pub fn json_slice(&mut self, text: &[u8]) -> Result<(), TextError> {
        match std::str::from_utf8(text) {
            Ok(s) => self.json_str(s),
            Err(e) => {
                self.clear();
                Err(TextError {
                    reason: "invalid UTF-8",
                    offset: e.valid_up_to(),
                })
            }
        }
    }

    /// As [`Flat::json_slice`], from text already known to be UTF-8 (`leakscope classify`
    /// checks a whole chunk at once), with the text parser (module `text`).
    pub fn json_str(&mut self, text: &str) -> Result<(), TextError> {
        self.text_document(text)
    }

    /// Flattens one parsed document, replacing what was here.
    pub fn json_value(&mut self, v: &Value) {
        self.clear();
        // A `Value` is always well-formed: the walk cannot fail.
        let _ = Root(self).deserialize(v);
    }

    /// Flattens a value read as bytes (a Redis string, a memcached item), replacing what was
    /// here: text as a string document (JSON or a serialized format inside it is expanded),
    /// binary in one of the formats of [`decode`] as its tree, anything else as the text it
    /// holds (invalid UTF-8 replaced).
    pub fn bytes(&mut self, b: &[u8]) {
        self.clear();
        if let Ok(s) = std::str::from_utf8(b) {
            self.root_string(s);
            return;
        }
        match decode::decode_bytes(b) {
            Some((_, v)) => self.decoded_root(&v, 0),
            None => self.root_string(&String::from_utf8_lossy(b)),
        }
    }

    /// Adds a column's value under its name; text holding a JSON object or array is expanded
    /// under the name.
    pub fn column(&mut self, name: &str, value: &str) {
        self.path.clear();
        self.path.push_str(name);
        self.string(value, 0);
    }

    fn full(&self) -> bool {
        self.pairs.len() >= MAX_PAIRS
    }

    /// Adds a pair at the current path; `write` appends the value.
    fn push(&mut self, write: impl FnOnce(&mut String)) {
        if self.full() {
            return;
        }
        let a = self.text.len();
        self.text.push_str(&self.path);
        let b = self.text.len();
        write(&mut self.text);
        self.pairs.push([a, b, self.text.len()]);
    }

    /// A string at the current path and `depth`: JSON or a serialized format ([`decode`])
    /// inside it is flattened one level deeper; otherwise it is a value, truncated.
    fn string(&mut self, s: &str, depth: usize) {
        if !self.embedded(s, depth) && !self.decoded(s, depth) {
            self.plain(s);
        }
    }

    /// Whether `s` held one of the serialized formats of [`decode`], now flattened at the
    /// current path one level below `depth`. Most values are rejected on their first bytes.
    fn decoded(&mut self, s: &str, depth: usize) -> bool {
        if depth >= MAX_DEPTH || !decode::candidate(s) {
            return false;
        }
        match decode::decode_text(s) {
            Some((_, v)) if self.path.is_empty() => {
                self.decoded_root(&v, depth);
                true
            }
            Some((_, v)) => {
                let _ = Walk {
                    f: self,
                    depth: depth + 1,
                }
                .deserialize(&v);
                true
            }
            None => false,
        }
    }

    /// A decoded tree that is the whole document: a container from the empty path, a string
    /// as a string document again (Laravel serializes a serialized payload), a scalar as
    /// `value`.
    fn decoded_root(&mut self, v: &Value, depth: usize) {
        match v {
            Value::String(s) => {
                if depth >= MAX_DEPTH
                    || !(self.embedded(s, depth + 1) || self.decoded(s, depth + 1))
                {
                    self.path.push_str("value");
                    self.plain(s);
                }
            }
            Value::Object(_) | Value::Array(_) => {
                let _ = Walk {
                    f: self,
                    depth: depth + 1,
                }
                .deserialize(v);
            }
            _ => {
                let _ = Root(self).deserialize(v);
            }
        }
    }

    /// Whether `s` held a JSON object or array, now flattened at the current path one level
    /// below `depth`. When it did not, nothing it added is left and the path is as it was.
    fn embedded(&mut self, s: &str, depth: usize) -> bool {
        looks_embedded(s) && self.text_embedded(s, depth)
    }

    /// A document that is a string: the JSON or serialized data it holds, or else the pair
    /// `value`.
    fn root_string(&mut self, s: &str) {
        // Parsed once: a string that is not JSON at the top is not JSON under `value` either.
        if !self.embedded(s, 0) && !self.decoded(s, 0) {
            self.path.push_str("value");
            self.plain(s);
        }
    }

    /// A string value at the current path, truncated.
    fn plain(&mut self, s: &str) {
        let cap = self.cap;
        self.push(|t| t.push_str(&s[..cut(s, cap)]));
    }
}

/// Flattens one JSON document (or scalar, under the path `value`).
pub fn flatten_json(v: &Value, value_cap: usize) -> Record {
    let mut f = Flat::new(value_cap);
    f.json_value(v);
    f.to_record()
}

/// Flattens a value read as bytes (see [`Flat::bytes`]).
pub fn flatten_bytes(b: &[u8], value_cap: usize) -> Record {
    let mut f = Flat::new(value_cap);
    f.bytes(b);
    f.to_record()
}

/// A JSON cell of a result row as its column's text (`None` for null): strings as they are,
/// anything else as JSON.
pub fn json_cell(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Flattens a flat row of named columns; text columns holding JSON are expanded under the
/// column name.
pub fn flatten_row<'a>(
    cols: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    value_cap: usize,
) -> Record {
    let mut f = Flat::new(value_cap);
    for (name, value) in cols {
        if let Some(value) = value {
            f.column(name, value);
        }
    }
    f.to_record()
}

/// The document itself: an object or array is walked from the empty path; a string holding
/// JSON (a Redis string, a memcached item) is that document; any other scalar is the pair
/// `value`. A top-level array flattens to paths starting with `[]`, as the manifest names them.
struct Root<'f>(&'f mut Flat);

impl<'f> Root<'f> {
    /// A scalar document is the pair `value`.
    fn scalar(self) -> Walk<'f> {
        self.0.path.push_str("value");
        Walk {
            f: self.0,
            depth: 0,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Root<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Root<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        Walk {
            f: self.0,
            depth: 0,
        }
        .visit_map(map)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        Walk {
            f: self.0,
            depth: 0,
        }
        .visit_seq(seq)
    }

    fn visit_str<E>(self, s: &str) -> Result<(), E> {
        self.0.root_string(s);
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<(), E> {
        self.scalar().visit_bool(b)
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<(), E> {
        self.scalar().visit_u64(n)
    }

    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<(), E> {
        self.scalar().visit_i64(n)
    }

    fn visit_f64<E: serde::de::Error>(self, x: f64) -> Result<(), E> {
        self.scalar().visit_f64(x)
    }
}

/// A value at the flattener's current path, `depth` levels down. Values past [`MAX_DEPTH`] or
/// [`MAX_PAIRS`] are still read (the parser must get past them) but dropped unlooked-at.
struct Walk<'f> {
    f: &'f mut Flat,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.depth > MAX_DEPTH || self.f.full() {
            d.deserialize_ignored_any(IgnoredAny).map(|_| ())
        } else {
            d.deserialize_any(self)
        }
    }
}

/// An object key: appended to the path.
struct Key<'f>(&'f mut String);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, k: &str) -> Result<(), E> {
        if !self.0.is_empty() {
            self.0.push('.');
        }
        self.0.push_str(k);
        Ok(())
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let base = self.f.path.len();
        while map.next_key_seed(Key(&mut self.f.path))?.is_some() {
            map.next_value_seed(Walk {
                f: &mut *self.f,
                depth: self.depth + 1,
            })?;
            self.f.path.truncate(base);
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let base = self.f.path.len();
        self.f.path.push_str("[]");
        while seq
            .next_element_seed(Walk {
                f: &mut *self.f,
                depth: self.depth + 1,
            })?
            .is_some()
        {}
        self.f.path.truncate(base);
        Ok(())
    }

    fn visit_str<E>(self, s: &str) -> Result<(), E> {
        self.f.string(s, self.depth);
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<(), E> {
        self.f
            .push(|t| t.push_str(if b { "true" } else { "false" }));
        Ok(())
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<(), E> {
        self.f.push(|t| {
            let _ = write!(t, "{n}");
        });
        Ok(())
    }

    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<(), E> {
        self.f.push(|t| {
            let _ = write!(t, "{n}");
        });
        Ok(())
    }

    fn visit_f64<E: serde::de::Error>(self, x: f64) -> Result<(), E> {
        // As serde_json prints a number, so a value reads the same from text or from a tree.
        if let Some(n) = serde_json::Number::from_f64(x) {
            self.f.push(|t| {
                let _ = write!(t, "{n}");
            });
        }
        Ok(())
    }
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
        // Text that only starts like JSON stays a value, under its own path.
        let doc = json!({"t": "[not json", "u": "{\"a\": {\"b\": 1", "v": 2});
        assert_eq!(
            pairs(&flatten_json(&doc, 64)),
            vec![("t", "[not json"), ("u", "{\"a\": {\"b\": 1"), ("v", "2")]
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
    fn text_and_tree_flatten_alike() {
        let docs = [
            r#"{"a":1,"b":-2,"c":1.5e-7,"d":true,"e":null,"f":"x\"y\u00e9","g":[[1,2],{"h":"i"}],"k":{"l":{"m":"n"}}}"#,
            r#"{"s":"{\"u\":{\"e\":\"x@y.z\"}}","t":"[not json","v":" [1, {\"w\": 2}]"}"#,
            r#"[{"a":1},{"a":2}]"#,
            r#""{\"a\":[1]}""#,
            r#""plain""#,
            "12.0",
            "false",
            "null",
            r#"{"\u0061b":{"":3}}"#,
        ];
        let mut f = Flat::new(4);
        for d in docs {
            let tree: Value = serde_json::from_str(d).unwrap();
            f.json_slice(d.as_bytes()).unwrap();
            assert_eq!(f.to_record(), flatten_json(&tree, 4), "{d}");
            f.json_str(d).unwrap();
            assert_eq!(f.to_record(), flatten_json(&tree, 4), "{d}");
        }
        // The buffers are reused: a second document leaves nothing of the first.
        f.json_slice(br#"{"z":"1"}"#).unwrap();
        assert_eq!(f.pairs().collect::<Vec<_>>(), vec![("z", "1")]);
    }

    #[test]
    fn a_bad_line_leaves_no_pairs() {
        let mut f = Flat::new(64);
        for bad in [
            &br#"{"a":"b","c":"#[..],
            b"{\"a\":1} trailing",
            b"\xff",
            b"",
        ] {
            assert!(f.json_slice(bad).is_err());
            assert_eq!(f.pairs().count(), 0);
        }
        let deep = format!("{}1{}", "[".repeat(40), "]".repeat(40));
        f.json_slice(deep.as_bytes()).unwrap();
        assert_eq!(
            f.pairs().count(),
            0,
            "deeper than MAX_DEPTH is read past, not kept"
        );
        let wide = format!("[{}]", vec!["7"; 5000].join(","));
        f.json_slice(wide.as_bytes()).unwrap();
        assert_eq!(f.pairs().count(), MAX_PAIRS);
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
