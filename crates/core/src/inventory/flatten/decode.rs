//! Decoders for the serialized values applications keep in text and binary columns, session
//! stores and job queues, so that what they hold is flattened and classified like JSON:
//!
//! - PHP `serialize()` (`a:2:{s:5:"email";s:13:"…";…}`, objects, Laravel's doubly serialized
//!   payloads) and the PHP session format (`email|s:13:"…";id|i:7;`);
//! - Python pickle, read as opcodes: strings, numbers, lists, tuples, sets and dicts are
//!   rebuilt, an object becomes the dict of its state (`BUILD`), and anything that would
//!   import or call (`GLOBAL`, `REDUCE`, `NEWOBJ`, persistent ids, extensions) yields an empty
//!   placeholder. Nothing is ever executed or constructed;
//! - signed session strings (itsdangerous/Flask `payload.ts.sig`, Django `payload:ts:sig`,
//!   both optionally zlib-compressed with a leading `.`; Rails `payload--digest`) and plain
//!   base64 or base64url whose content is JSON or one of the binary formats here;
//! - URL-encoded JSON (`%7B%22email%22…`), PostgreSQL's hex `bytea` text (`\x…`), zlib
//!   streams (RQ job data) and MessagePack.
//!
//! Every decoder is bounded: at most [`MAX_INPUT`] bytes are looked at, [`MAX_NODES`] values
//! built and [`MAX_DEPTH`] levels entered; declared lengths are checked against the bytes left
//! before anything is allocated, and inflating stops at [`MAX_INFLATED`] bytes. A value cut
//! by a read cap decodes as far as it goes (a truncated session still shows its first keys).
//! What a decoder returns is a JSON tree that the flattener walks like any document; each
//! decoder has a cargo-fuzz target (`fuzz/`).

use base64::Engine as _;
use serde_json::{Map, Number, Value};

/// Bytes of one value that a decoder looks at.
pub const MAX_INPUT: usize = 1 << 20;
/// Values (strings, numbers, containers) one decode builds at most.
pub const MAX_NODES: usize = 4096;
/// Nesting one decode enters at most.
pub const MAX_DEPTH: usize = 16;
/// Largest output of a zlib stream.
pub const MAX_INFLATED: usize = 1 << 20;

/// Why a value decoded: which format it was (for tests and documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    PhpSerialize,
    PhpSession,
    Pickle,
    MessagePack,
    /// Base64 or base64url, optionally signed, optionally zlib-compressed.
    Base64,
    UrlEncoded,
    HexBytea,
    Zlib,
}

/// A value's bytes may be serialized data worth a decode attempt: decided on the first bytes,
/// as most values are plain text and must cost nothing here.
#[inline]
pub fn candidate(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 4 {
        return false;
    }
    match b[0] {
        // PHP serialize: a:, O:, C:, s:, E: followed by a digit.
        b'a' | b'O' | b'C' | b's' | b'E' if b[1] == b':' && b[2].is_ascii_digit() => true,
        b'%' => b[1] == b'7' || b[1] == b'5',
        b'\\' => b[1] == b'x',
        // Base64 of `{`, `[`, pickle, MessagePack maps and arrays, PHP `a:`/`O:`/`s:`; a
        // leading `.` marks a compressed signed payload.
        b'e' | b'W' | b'g' | b'h' | b'i' | b'j' | b'k' | b'l' | b'm' | b'n' | b'Y' | b'T'
        | b'c'
            if b.len() >= 12 =>
        {
            b64_head(s).is_some_and(plausible_head) || session_key_end(b).is_some()
        }
        b'.' => {
            b.len() >= 16
                && b[1..9]
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || b"-_".contains(c))
        }
        _ => session_key_end(b).is_some(),
    }
}

/// Decodes a text value; None when it is none of the formats (or decodes to nothing useful).
pub fn decode_text(s: &str) -> Option<(Format, Value)> {
    let b = s.as_bytes();
    let b = &b[..b.len().min(MAX_INPUT)];
    if b.len() >= 4 && b[1] == b':' && matches!(b[0], b'a' | b'O' | b'C' | b's' | b'E') {
        if let Some(v) = php_serialize(b).filter(structured_or_text) {
            return Some((Format::PhpSerialize, v));
        }
    }
    if let Some(v) = php_session(b) {
        return Some((Format::PhpSession, v));
    }
    match b.first() {
        Some(b'%') => url_encoded_json(s).map(|v| (Format::UrlEncoded, v)),
        Some(b'\\') if b.get(1) == Some(&b'x') => {
            let bytes = hex_bytes(&b[2..])?;
            decode_bytes_inner(&bytes, 1).map(|(_, v)| (Format::HexBytea, v))
        }
        Some(b'.') => base64_payload(s).map(|v| (Format::Base64, v)),
        _ if b64_head(s).is_some_and(plausible_head) => {
            base64_payload(s).map(|v| (Format::Base64, v))
        }
        _ => None,
    }
}

/// Decodes a binary value (a Redis string, a memcached item, a decoded payload): pickle,
/// MessagePack, zlib, or text in one of the text formats.
pub fn decode_bytes(b: &[u8]) -> Option<(Format, Value)> {
    decode_bytes_inner(b, 0)
}

fn decode_bytes_inner(b: &[u8], nested: usize) -> Option<(Format, Value)> {
    let b = &b[..b.len().min(MAX_INPUT)];
    if nested > 3 || b.len() < 2 {
        return None;
    }
    if b[0] == 0x80 && (2..=5).contains(&b[1]) {
        return pickle(b).map(|v| (Format::Pickle, v));
    }
    if b[0] == 0x78 && (u16::from(b[0]) << 8 | u16::from(b[1])).is_multiple_of(31) {
        let out = inflate(b)?;
        return decode_bytes_inner(&out, nested + 1).map(|(_, v)| (Format::Zlib, v));
    }
    if let Ok(s) = std::str::from_utf8(b) {
        if let Some(j) = json_container(s) {
            return Some((Format::Base64, j));
        }
        if candidate(s) {
            return decode_text(s);
        }
        return None;
    }
    msgpack(b).map(|v| (Format::MessagePack, v))
}

/// A JSON object or array (not a scalar: `"1"` decoded from base64 is no evidence).
fn json_container(s: &str) -> Option<Value> {
    let t = s.trim_start();
    if !(t.starts_with('{') || t.starts_with('[')) {
        return None;
    }
    serde_json::from_str::<Value>(t)
        .ok()
        .filter(|v| v.is_object() || v.is_array())
        .map(cap_depth)
}

/// A decoded value worth flattening: a container, or a string (which the flattener decodes
/// again: Laravel serializes its serialized payload).
fn structured_or_text(v: &Value) -> bool {
    v.is_object() || v.is_array() || v.is_string()
}

fn inflate(b: &[u8]) -> Option<Vec<u8>> {
    miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(b, MAX_INFLATED)
        .ok()
        .filter(|o| !o.is_empty())
}

fn hex_bytes(h: &[u8]) -> Option<Vec<u8>> {
    if h.len() < 4 || !h.len().is_multiple_of(2) {
        return None;
    }
    h.chunks(2)
        .map(|p| {
            let d = |c: u8| (c as char).to_digit(16);
            Some((d(p[0])? * 16 + d(p[1])?) as u8)
        })
        .collect()
}

// ------------------------------------------------------------------ base64 and signatures

/// Bytes of base64 or base64url text, padding optional.
fn b64(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let t = s.trim_end_matches('=');
    if t.len() < 8 {
        return None;
    }
    if t.bytes().any(|c| c == b'+' || c == b'/') {
        STANDARD_NO_PAD.decode(t).ok()
    } else {
        URL_SAFE_NO_PAD.decode(t).ok()
    }
}

/// Values of base64 and base64url digits (both alphabets; 0xff: not a digit).
const B64: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 26 {
        t[b'A' as usize + i] = i as u8;
        t[b'a' as usize + i] = 26 + i as u8;
        i += 1;
    }
    let mut d = 0;
    while d < 10 {
        t[b'0' as usize + d] = 52 + d as u8;
        d += 1;
    }
    t[b'+' as usize] = 62;
    t[b'-' as usize] = 62;
    t[b'/' as usize] = 63;
    t[b'_' as usize] = 63;
    t
};

/// The first three bytes of base64 text, without decoding the rest (this runs on many
/// values that are no base64 at all).
fn b64_head(s: &str) -> Option<[u8; 3]> {
    let h = s.as_bytes().get(..4)?;
    let mut n = 0u32;
    for &c in h {
        let d = B64[usize::from(c)];
        if d == 0xff {
            return None;
        }
        n = n << 6 | u32::from(d);
    }
    Some([(n >> 16) as u8, (n >> 8) as u8, n as u8])
}

/// Whether three decoded bytes can start one of the formats here.
fn plausible_head(h: [u8; 3]) -> bool {
    match h[0] {
        b'{' => matches!(h[1], b'"' | b'}' | b' ' | b'\n' | b'\r' | b'\t'),
        b'[' => matches!(
            h[1],
            b'"' | b'{' | b'[' | b']' | b'-' | b'0'..=b'9' | b' ' | b'n' | b't' | b'f'
        ),
        0x80 => (2..=5).contains(&h[1]),
        0x78 => (0x7800u16 | u16::from(h[1])).is_multiple_of(31),
        0x81..=0x8f => matches!(h[1], 0xa0..=0xbf | 0xd9),
        // A fixarray whose first element is a string, map, nil, boolean or number.
        0x91..=0x9f => matches!(h[1], 0x80..=0xbf | 0xc0..=0xc3 | 0xcc..=0xd3 | 0xd9),
        b'a' | b'O' | b's' => h[1] == b':' && h[2].is_ascii_digit(),
        _ => false,
    }
}

/// A signed or plain base64 payload: `[.]payload[.ts.sig | :ts:sig | --digest]`.
fn base64_payload(s: &str) -> Option<Value> {
    if s.len() < 12 {
        return None;
    }
    let (compressed, body) = match s.strip_prefix('.') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let end = body
        .find(['.', ':'])
        .or_else(|| body.find("--"))
        .unwrap_or(body.len());
    let payload = &body[..end];
    let rest = &body[end..];
    // A JSON second segment makes it a JWT (a signed session's second part is a time stamp):
    // a token, left as it is.
    if rest.starts_with(".eyJ") {
        return None;
    }
    // A signature part is short and token-shaped; a JWT (header with `alg`) stays a token.
    if rest.len() > 256
        || !rest
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".:-_=+/".contains(&c))
    {
        return None;
    }
    if !compressed && !plausible_head(b64_head(payload)?) {
        return None;
    }
    let bytes = b64(payload)?;
    let bytes = if compressed { inflate(&bytes)? } else { bytes };
    let (_, v) = decode_bytes_inner(&bytes, 1)?;
    if rest.starts_with('.') && v.get("alg").is_some_and(Value::is_string) {
        return None;
    }
    Some(v)
}

fn url_encoded_json(s: &str) -> Option<Value> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let h = b.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    json_container(std::str::from_utf8(&out).ok()?)
}

// ------------------------------------------------------------------ a bounded tree builder

/// Counts what a decode builds, so hostile input costs bounded work.
struct Budget {
    nodes: usize,
}

impl Budget {
    fn new() -> Budget {
        Budget { nodes: 0 }
    }

    fn take(&mut self) -> Option<()> {
        self.take_n(1)
    }

    fn take_n(&mut self, n: usize) -> Option<()> {
        self.nodes = self.nodes.saturating_add(n);
        (self.nodes <= MAX_NODES).then_some(())
    }
}

/// Cuts a tree below [`MAX_DEPTH`] (pickle opcodes can nest as deep as the node budget).
fn cap_depth(mut v: Value) -> Value {
    fn prune(v: &mut Value, depth: usize) {
        let kids: Vec<&mut Value> = match v {
            Value::Array(a) => a.iter_mut().collect(),
            Value::Object(m) => m.values_mut().collect(),
            _ => return,
        };
        for k in kids {
            if depth + 1 >= MAX_DEPTH {
                *k = Value::Null;
            } else {
                prune(k, depth + 1);
            }
        }
    }
    prune(&mut v, 0);
    v
}

/// The values in a tree, counted up to `limit` (a copy costs what it copies).
fn size(v: &Value, limit: usize) -> usize {
    let mut n = 0;
    let mut stack = vec![v];
    while let Some(x) = stack.pop() {
        n += 1;
        if n > limit {
            break;
        }
        match x {
            Value::Array(a) => stack.extend(a.iter()),
            Value::Object(m) => stack.extend(m.values()),
            _ => {}
        }
    }
    n
}

fn text(b: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(b).into_owned())
}

fn float(x: f64) -> Value {
    Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// A key for a decoded mapping: strings as they are, numbers printed.
fn key_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

// ------------------------------------------------------------------ PHP

/// A cursor over PHP-serialized bytes.
struct Php<'a> {
    b: &'a [u8],
    i: usize,
    budget: Budget,
    /// The input ended inside a value (a read cap cut it): what was read is kept.
    cut: bool,
}

impl<'a> Php<'a> {
    fn new(b: &'a [u8]) -> Php<'a> {
        Php {
            b,
            i: 0,
            budget: Budget::new(),
            cut: false,
        }
    }

    fn byte(&mut self, c: u8) -> Option<()> {
        if self.i >= self.b.len() {
            self.cut = true;
            return None;
        }
        (self.b[self.i] == c).then(|| self.i += 1)
    }

    /// Bytes up to (not including) `end`, which is consumed.
    fn until(&mut self, end: u8, max: usize) -> Option<&'a [u8]> {
        let rest = &self.b[self.i..];
        let Some(n) = rest.iter().take(max + 1).position(|&c| c == end) else {
            self.cut = rest.len() <= max;
            return None;
        };
        let out = &rest[..n];
        self.i += n + 1;
        Some(out)
    }

    fn uint(&mut self, end: u8) -> Option<usize> {
        let d = self.until(end, 10)?;
        if d.is_empty() || !d.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(d).ok()?.parse().ok()
    }

    /// `"bytes"` of a declared length.
    fn quoted(&mut self, len: usize) -> Option<&'a [u8]> {
        self.byte(b'"')?;
        let left = self.b.len() - self.i;
        if len > left {
            // Cut by a read cap: keep what is there.
            self.cut = true;
            let out = &self.b[self.i..];
            self.i = self.b.len();
            return Some(out);
        }
        let out = &self.b[self.i..self.i + len];
        self.i += len;
        self.byte(b'"')?;
        Some(out)
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        self.budget.take()?;
        let Some(&tag) = self.b.get(self.i) else {
            self.cut = true;
            return None;
        };
        if !b"NbidsErRaOC".contains(&tag) {
            return None;
        }
        if tag == b'N' {
            self.i += 1;
            self.byte(b';')?;
            return Some(Value::Null);
        }
        self.i += 1;
        self.byte(b':')?;
        Some(match tag {
            b'b' => {
                let d = self.until(b';', 1)?;
                Value::Bool(d == b"1")
            }
            b'i' => {
                let d = self.until(b';', 21)?;
                let s = std::str::from_utf8(d).ok()?;
                Value::Number(s.parse::<i64>().ok()?.into())
            }
            b'd' => {
                let d = self.until(b';', 64)?;
                let s = std::str::from_utf8(d).ok()?;
                s.parse::<f64>().map_or(Value::Null, float)
            }
            b's' => {
                let len = self.uint(b':')?;
                let s = self.quoted(len)?;
                if !self.cut {
                    self.byte(b';')?;
                }
                text(s)
            }
            b'E' => {
                let len = self.uint(b':')?;
                let s = self.quoted(len)?;
                self.byte(b';')?;
                text(s)
            }
            b'r' | b'R' => {
                self.uint(b';')?;
                Value::Null
            }
            b'a' => {
                let n = self.uint(b':')?;
                self.byte(b'{')?;
                let v = self.members(n, depth)?;
                if !self.cut {
                    self.byte(b'}')?;
                }
                v
            }
            b'O' => {
                let len = self.uint(b':')?;
                self.quoted(len)?;
                self.byte(b':')?;
                let n = self.uint(b':')?;
                self.byte(b'{')?;
                let v = self.members(n, depth)?;
                if !self.cut {
                    self.byte(b'}')?;
                }
                // An object is the mapping of its properties.
                match v {
                    Value::Array(a) => Value::Object(
                        a.into_iter()
                            .enumerate()
                            .map(|(i, v)| (i.to_string(), v))
                            .collect(),
                    ),
                    v => v,
                }
            }
            b'C' => {
                // A class's own serialization: its payload, which may be serialized again.
                let len = self.uint(b':')?;
                self.quoted(len)?;
                self.byte(b':')?;
                let n = self.uint(b':')?;
                self.byte(b'{')?;
                let left = self.b.len() - self.i;
                let take = n.min(left);
                let data = &self.b[self.i..self.i + take];
                self.i += take;
                if n > left {
                    self.cut = true;
                } else {
                    self.byte(b'}')?;
                }
                text(data)
            }
            _ => return None,
        })
    }

    /// `n` key/value pairs: a list when the keys are 0, 1, 2 …, a mapping otherwise.
    fn members(&mut self, n: usize, depth: usize) -> Option<Value> {
        if depth >= MAX_DEPTH {
            return None;
        }
        let mut pairs: Vec<(String, Value)> = Vec::new();
        let mut sequential = true;
        for k in 0..n {
            if self.cut {
                break;
            }
            let Some(key) = self.value(depth + 1) else {
                if self.cut {
                    break;
                }
                return None;
            };
            let mut key = key_of(&key)?;
            sequential &= key == k.to_string();
            // Private and protected properties: `\0Class\0name`, `\0*\0name`.
            if let Some(i) = key.rfind('\0') {
                key = key[i + 1..].to_string();
            }
            match self.value(depth + 1) {
                Some(v) => pairs.push((key, v)),
                None if self.cut => break,
                None => return None,
            }
        }
        Some(if sequential && !pairs.is_empty() {
            Value::Array(pairs.into_iter().map(|(_, v)| v).collect())
        } else {
            Value::Object(pairs.into_iter().collect::<Map<_, _>>())
        })
    }
}

/// One PHP-serialized value; the whole input must be it (or a cut prefix of it).
pub fn php_serialize(b: &[u8]) -> Option<Value> {
    let b = &b[..b.len().min(MAX_INPUT)];
    let mut p = Php::new(b);
    let v = p.value(0);
    match v {
        Some(v) if p.cut || p.i == b.len() => Some(v),
        _ => None,
    }
}

/// Where the key of a PHP session entry ends (the `|`), if `b` starts with one: a name of
/// letters, digits and `_`, `-`, `.` (PHP refuses `|` and `!` in session keys).
fn session_key_end(b: &[u8]) -> Option<usize> {
    let first = *b.first()?;
    if !(first.is_ascii_alphabetic() || first == b'_') {
        return None;
    }
    // Most values hold no bar at all: one vectorised search decides.
    memchr::memchr(b'|', &b[..b.len().min(66)])?;
    let n = b
        .iter()
        .take(65)
        .position(|&c| !(c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.')))?;
    (b[n] == b'|' && n > 0 && b.len() > n + 2).then_some(n)
}

/// The PHP session format (`session.serialize_handler = php`): `key|value` repeated, each
/// value PHP-serialized.
pub fn php_session(b: &[u8]) -> Option<Value> {
    let b = &b[..b.len().min(MAX_INPUT)];
    let mut p = Php::new(b);
    let mut out = Map::new();
    while p.i < b.len() {
        let n = session_key_end(&b[p.i..])?;
        let key = String::from_utf8_lossy(&b[p.i..p.i + n]).into_owned();
        p.i += n + 1;
        match p.value(1) {
            Some(v) => {
                out.insert(key, v);
            }
            None if p.cut && !out.is_empty() => break,
            None => return None,
        }
        if p.cut {
            break;
        }
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

// ------------------------------------------------------------------ pickle

/// An item on the pickle machine's stack.
#[derive(Debug, Clone)]
enum Item {
    Mark,
    V(Value),
}

/// Reads a pickle's opcodes into a tree of its plain data. Never imports, calls or constructs:
/// a global is a placeholder, a call's result is an empty mapping that a later `BUILD` fills
/// with the object's state.
pub fn pickle(b: &[u8]) -> Option<Value> {
    let b = &b[..b.len().min(MAX_INPUT)];
    let mut st: Vec<Item> = Vec::new();
    let mut memo: Vec<(u64, Value)> = Vec::new();
    let mut budget = Budget::new();
    let mut i = 0usize;
    let take = |i: &mut usize, n: usize| -> Option<&[u8]> {
        let s = b.get(*i..i.checked_add(n)?)?;
        *i += n;
        Some(s)
    };
    let line = |i: &mut usize| -> Option<&[u8]> {
        let rest = b.get(*i..)?;
        let n = rest.iter().take(4096).position(|&c| c == b'\n')?;
        *i += n + 1;
        Some(&rest[..n])
    };
    let le = |s: &[u8]| s.iter().rev().fold(0u64, |a, &c| a << 8 | u64::from(c));
    fn pop(st: &mut Vec<Item>) -> Option<Value> {
        match st.pop()? {
            Item::V(v) => Some(v),
            Item::Mark => None,
        }
    }
    fn since_mark(st: &mut Vec<Item>) -> Option<Vec<Value>> {
        let at = st.iter().rposition(|x| matches!(x, Item::Mark))?;
        let items = st.split_off(at + 1);
        st.pop();
        items
            .into_iter()
            .map(|x| match x {
                Item::V(v) => Some(v),
                Item::Mark => None,
            })
            .collect()
    }
    fn set_items(target: &mut Value, kv: Vec<Value>) {
        if let Value::Object(m) = target {
            let mut it = kv.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                if let Some(k) = key_of(&k) {
                    m.insert(k, v);
                }
            }
        }
    }
    fn append(target: &mut Value, items: Vec<Value>) {
        if let Value::Array(a) = target {
            a.extend(items);
        }
    }
    fn top(st: &mut [Item]) -> Option<&mut Value> {
        match st.last_mut()? {
            Item::V(v) => Some(v),
            Item::Mark => None,
        }
    }
    let placeholder = || Value::Object(Map::new());
    loop {
        if st.len() > MAX_NODES {
            return None;
        }
        let Some(&op) = b.get(i) else {
            // Cut by a read cap: the outermost container read so far.
            return st
                .into_iter()
                .find_map(|x| match x {
                    Item::V(v @ (Value::Object(_) | Value::Array(_))) => Some(v),
                    _ => None,
                })
                .map(cap_depth);
        };
        i += 1;
        budget.take()?;
        let pushed = match op {
            0x80 => {
                take(&mut i, 1)?;
                None
            }
            0x95 => {
                take(&mut i, 8)?;
                None
            }
            b'.' => return pop(&mut st).map(cap_depth),
            b'(' => {
                st.push(Item::Mark);
                None
            }
            b'}' => Some(placeholder()),
            b']' | b')' | 0x8f => Some(Value::Array(Vec::new())),
            b'N' => Some(Value::Null),
            0x88 => Some(Value::Bool(true)),
            0x89 => Some(Value::Bool(false)),
            b'J' => Some(Value::from(i64::from(le(take(&mut i, 4)?) as u32 as i32))),
            b'K' => Some(Value::from(le(take(&mut i, 1)?))),
            b'M' => Some(Value::from(le(take(&mut i, 2)?))),
            0x8a | 0x8b => {
                let n = if op == 0x8a {
                    le(take(&mut i, 1)?) as usize
                } else {
                    le(take(&mut i, 4)?) as usize
                };
                let d = take(&mut i, n)?;
                Some(if n <= 8 && n > 0 {
                    let mut v = le(d) as i64;
                    if n < 8 && d[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    Value::from(v)
                } else {
                    Value::Null
                })
            }
            b'I' | b'L' => {
                let l = line(&mut i)?;
                let s = std::str::from_utf8(l).ok()?.trim_end_matches('L');
                Some(match s {
                    "00" => Value::Bool(false),
                    "01" => Value::Bool(true),
                    s => s.parse::<i64>().map_or(Value::Null, Value::from),
                })
            }
            b'G' => {
                let d = take(&mut i, 8)?;
                Some(float(f64::from_be_bytes(d.try_into().ok()?)))
            }
            b'F' => {
                let l = line(&mut i)?;
                Some(
                    std::str::from_utf8(l)
                        .ok()?
                        .parse::<f64>()
                        .map_or(Value::Null, float),
                )
            }
            b'X' | 0x8c | 0x8d | b'B' | b'C' | 0x8e | 0x96 | b'T' | b'U' => {
                let n = match op {
                    0x8c | b'C' | b'U' => le(take(&mut i, 1)?),
                    b'X' | b'B' | b'T' => le(take(&mut i, 4)?),
                    _ => le(take(&mut i, 8)?),
                };
                let n = usize::try_from(n).ok()?;
                Some(text(take(&mut i, n)?))
            }
            b'V' | b'S' => {
                let l = line(&mut i)?;
                let l = if op == b'S' {
                    l.strip_prefix(b"'")
                        .and_then(|x| x.strip_suffix(b"'"))
                        .or_else(|| l.strip_prefix(b"\"").and_then(|x| x.strip_suffix(b"\"")))
                        .unwrap_or(l)
                } else {
                    l
                };
                Some(text(l))
            }
            b'd' => {
                let kv = since_mark(&mut st)?;
                let mut m = placeholder();
                set_items(&mut m, kv);
                Some(m)
            }
            b'l' | b't' | 0x91 => Some(Value::Array(since_mark(&mut st)?)),
            0x85 => {
                let a = pop(&mut st)?;
                Some(Value::Array(vec![a]))
            }
            0x86 | 0x87 => {
                let n = if op == 0x86 { 2 } else { 3 };
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(pop(&mut st)?);
                }
                items.reverse();
                Some(Value::Array(items))
            }
            b's' => {
                let v = pop(&mut st)?;
                let k = pop(&mut st)?;
                set_items(top(&mut st)?, vec![k, v]);
                None
            }
            b'u' => {
                let kv = since_mark(&mut st)?;
                set_items(top(&mut st)?, kv);
                None
            }
            b'a' => {
                let v = pop(&mut st)?;
                append(top(&mut st)?, vec![v]);
                None
            }
            b'e' | 0x90 => {
                let items = since_mark(&mut st)?;
                append(top(&mut st)?, items);
                None
            }
            b'0' => {
                st.pop()?;
                None
            }
            b'1' => {
                since_mark(&mut st)?;
                None
            }
            b'2' => {
                let v = match st.last()? {
                    Item::V(v) => v,
                    Item::Mark => return None,
                };
                // A copy costs what it copies: DUP and TUPLE3 in a loop would double a
                // tree each time.
                budget.take_n(size(v, MAX_NODES + 1))?;
                Some(v.clone())
            }
            // Memo: a copy of the value as it is now (later SETITEMS on the original are not
            // seen through it; only shared references are lost).
            0x94 | b'q' | b'r' | b'p' => {
                let key = match op {
                    0x94 => memo.len() as u64,
                    b'q' => le(take(&mut i, 1)?),
                    b'r' => le(take(&mut i, 4)?),
                    _ => std::str::from_utf8(line(&mut i)?).ok()?.parse().ok()?,
                };
                if memo.len() < MAX_NODES {
                    if let Some(Item::V(v)) = st.last() {
                        if !v.is_object() && !v.is_array() {
                            memo.push((key, v.clone()));
                        } else {
                            memo.push((key, placeholder()));
                        }
                    }
                }
                None
            }
            b'h' | b'j' | b'g' => {
                let key = match op {
                    b'h' => le(take(&mut i, 1)?),
                    b'j' => le(take(&mut i, 4)?),
                    _ => std::str::from_utf8(line(&mut i)?).ok()?.parse().ok()?,
                };
                let v = memo
                    .iter()
                    .rev()
                    .find(|(k, _)| *k == key)
                    .map_or(Value::Null, |(_, v)| v.clone());
                budget.take_n(size(&v, MAX_NODES + 1))?;
                Some(v)
            }
            // Imports: a placeholder, never resolved.
            b'c' => {
                line(&mut i)?;
                line(&mut i)?;
                Some(Value::Null)
            }
            0x93 => {
                pop(&mut st)?;
                pop(&mut st)?;
                Some(Value::Null)
            }
            // Calls and instantiation: an empty mapping in place of the object.
            b'R' | 0x81 => {
                pop(&mut st)?;
                pop(&mut st)?;
                Some(placeholder())
            }
            0x92 => {
                pop(&mut st)?;
                pop(&mut st)?;
                pop(&mut st)?;
                Some(placeholder())
            }
            b'o' => {
                since_mark(&mut st)?;
                Some(placeholder())
            }
            b'i' => {
                line(&mut i)?;
                line(&mut i)?;
                since_mark(&mut st)?;
                Some(placeholder())
            }
            // BUILD: the object's state, when it is a dict, is what the object holds.
            b'b' => {
                let state = pop(&mut st)?;
                let obj = top(&mut st)?;
                let state = match state {
                    // (state, slotstate)
                    Value::Array(mut a) if a.len() == 2 => {
                        let slots = a.pop().unwrap_or(Value::Null);
                        let mut s = a.pop().unwrap_or(Value::Null);
                        if let (Value::Object(m), Value::Object(sl)) = (&mut s, slots) {
                            m.extend(sl);
                        }
                        s
                    }
                    s => s,
                };
                if let (Value::Object(m), Value::Object(s)) = (obj, state) {
                    m.extend(s);
                }
                None
            }
            b'P' => {
                line(&mut i)?;
                Some(Value::Null)
            }
            b'Q' => {
                pop(&mut st)?;
                Some(Value::Null)
            }
            0x82 => {
                take(&mut i, 1)?;
                Some(Value::Null)
            }
            0x83 => {
                take(&mut i, 2)?;
                Some(Value::Null)
            }
            0x84 => {
                take(&mut i, 4)?;
                Some(Value::Null)
            }
            0x97 => Some(Value::Null),
            0x98 => None,
            _ => return None,
        };
        if let Some(v) = pushed {
            st.push(Item::V(v));
        }
    }
}

// ------------------------------------------------------------------ MessagePack

/// MessagePack hand-read rather than with a crate: the crates allocate what a length field
/// declares, and a hostile value would choose that length.
struct Mp<'a> {
    b: &'a [u8],
    i: usize,
    budget: Budget,
    strings: usize,
}

impl<'a> Mp<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.i..self.i.checked_add(n)?)?;
        self.i += n;
        Some(s)
    }

    fn uint(&mut self, n: usize) -> Option<u64> {
        Some(
            self.take(n)?
                .iter()
                .fold(0u64, |a, &c| a << 8 | u64::from(c)),
        )
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        self.budget.take()?;
        if depth > MAX_DEPTH {
            return None;
        }
        let t = *self.take(1)?.first()?;
        Some(match t {
            0x00..=0x7f => Value::from(t),
            0xe0..=0xff => Value::from(i64::from(t as i8)),
            0x80..=0x8f => self.map(usize::from(t & 0x0f), depth)?,
            0x90..=0x9f => self.array(usize::from(t & 0x0f), depth)?,
            0xa0..=0xbf => self.str(usize::from(t & 0x1f))?,
            0xc0 => Value::Null,
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4..=0xc6 => {
                let n = self.uint(1 << (t - 0xc4))? as usize;
                let d = self.take(n)?;
                match std::str::from_utf8(d) {
                    Ok(s) => Value::String(s.to_string()),
                    Err(_) => Value::Null,
                }
            }
            0xc7..=0xc9 => {
                let n = self.uint(1 << (t - 0xc7))? as usize;
                self.take(n + 1)?;
                Value::Null
            }
            0xca => float(f64::from(f32::from_bits(self.uint(4)? as u32))),
            0xcb => float(f64::from_bits(self.uint(8)?)),
            0xcc..=0xcf => Value::from(self.uint(1 << (t - 0xcc))?),
            0xd0..=0xd3 => {
                let n = 1usize << (t - 0xd0);
                let u = self.uint(n)?;
                let shift = 64 - 8 * n as u32;
                Value::from(((u << shift) as i64) >> shift)
            }
            0xd4..=0xd8 => {
                self.take(1 + (1 << (t - 0xd4)))?;
                Value::Null
            }
            0xd9..=0xdb => {
                let n = self.uint(1 << (t - 0xd9))? as usize;
                self.str(n)?
            }
            0xdc | 0xdd => {
                let n = self.uint(if t == 0xdc { 2 } else { 4 })? as usize;
                self.array(n, depth)?
            }
            0xde | 0xdf => {
                let n = self.uint(if t == 0xde { 2 } else { 4 })? as usize;
                self.map(n, depth)?
            }
            0xc1 => return None,
        })
    }

    fn str(&mut self, n: usize) -> Option<Value> {
        let d = self.take(n)?;
        self.strings += 1;
        Some(Value::String(std::str::from_utf8(d).ok()?.to_string()))
    }

    fn array(&mut self, n: usize, depth: usize) -> Option<Value> {
        // Each element is at least one byte: a count beyond the bytes left is a lie.
        if n > self.b.len() - self.i {
            return None;
        }
        let mut a = Vec::new();
        for _ in 0..n {
            a.push(self.value(depth + 1)?);
        }
        Some(Value::Array(a))
    }

    fn map(&mut self, n: usize, depth: usize) -> Option<Value> {
        if n.checked_mul(2)? > self.b.len() - self.i {
            return None;
        }
        let mut m = Map::new();
        for _ in 0..n {
            let k = self.value(depth + 1)?;
            let v = self.value(depth + 1)?;
            m.insert(key_of(&k)?, v);
        }
        Some(Value::Object(m))
    }
}

/// A MessagePack map or array that is the whole input and holds at least one string.
pub fn msgpack(b: &[u8]) -> Option<Value> {
    let b = &b[..b.len().min(MAX_INPUT)];
    if !matches!(b.first()?, 0x80..=0x9f | 0xdc..=0xdf) {
        return None;
    }
    let mut m = Mp {
        b,
        i: 0,
        budget: Budget::new(),
        strings: 0,
    };
    let v = m.value(0)?;
    (m.i == b.len() && m.strings > 0).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn php_values_and_sessions() {
        let s = br#"a:3:{s:5:"email";s:17:"ada@example.co.uk";s:2:"id";i:42;s:5:"roles";a:2:{i:0;s:5:"admin";i:1;s:6:"editor";}}"#;
        assert_eq!(
            php_serialize(s),
            Some(json!({"email": "ada@example.co.uk", "id": 42, "roles": ["admin", "editor"]}))
        );
        let o =
            b"O:4:\"User\":2:{s:10:\"\0User\0name\";s:3:\"Ada\";s:8:\"\0*\0phone\";s:3:\"123\";}";
        assert_eq!(
            php_serialize(o),
            Some(json!({"name": "Ada", "phone": "123"}))
        );
        let sess = br#"user_id|i:7;email|s:11:"a@b.example";cart|a:0:{}flag|b:1;"#;
        assert_eq!(
            php_session(sess),
            Some(json!({"user_id": 7, "email": "a@b.example", "cart": {}, "flag": true}))
        );
        // Cut by a read cap: the keys read so far.
        assert_eq!(
            php_session(br#"email|s:11:"a@b.example";name|s:20:"Ada Lov"#),
            Some(json!({"email": "a@b.example", "name": "Ada Lov"}))
        );
        for bad in [
            &b"Atza|IwEBIfake"[..],
            b"a:2:{s:1:\"x\";}",
            b"s:5:\"abc\";",
            b"key|",
        ] {
            assert!(
                php_serialize(bad).is_none() && php_session(bad).is_none(),
                "{bad:?}"
            );
        }
        // A declared length beyond the input costs nothing.
        assert!(php_serialize(b"a:99999999999:{").is_none());
    }

    #[test]
    fn pickles_are_read_not_run() {
        // pickle.dumps({'email': 'a@b.example', 'ids': [1, 2], 'ok': True}, protocol=4)
        let p = b"\x80\x04\x95/\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x05email\x94\x8c\x0ba@b.example\x94\x8c\x03ids\x94]\x94(K\x01K\x02e\x8c\x02ok\x94\x88u.";
        assert_eq!(
            pickle(p),
            Some(json!({"email": "a@b.example", "ids": [1, 2], "ok": true}))
        );
        // os.system('x') by REDUCE: a placeholder, nothing imported or called.
        let evil = b"\x80\x02cos\nsystem\nq\x00X\x01\x00\x00\x00xq\x01\x85q\x02Rq\x03.";
        assert_eq!(pickle(evil), Some(json!({})));
        // An object: its state dict (NEWOBJ then BUILD).
        let obj = b"\x80\x04\x8c\x08__main__\x8c\x01U\x93)\x81}(\x8c\x04name\x8c\x03Ada\x8c\x05phone\x8c\x10+44 20 7946 0958ub.";
        assert_eq!(
            pickle(obj),
            Some(json!({"name": "Ada", "phone": "+44 20 7946 0958"}))
        );
        assert!(pickle(b"\x80\x04X\xff\xff\xff\x7f").is_none());
        // DUP and TUPLE3 in a loop would double the tree each time (found by the fuzzer).
        let mut bomb = b"\x80\x04K\x01".to_vec();
        for _ in 0..64 {
            bomb.extend_from_slice(b"22\x87");
        }
        bomb.push(b'.');
        assert!(pickle(&bomb).is_none());
        // TUPLE1 repeated nests without end: the tree is cut at MAX_DEPTH.
        let mut deep = b"\x80\x04K\x01".to_vec();
        deep.extend(std::iter::repeat_n(0x85u8, 3000));
        deep.push(b'.');
        let mut v = &pickle(&deep).unwrap();
        let mut depth = 0;
        while let Value::Array(a) = v {
            depth += 1;
            v = &a[0];
        }
        assert!(depth <= MAX_DEPTH, "{depth}");
    }

    #[test]
    fn msgpack_maps() {
        // {"email": "a@b.example", "n": [1, -1, 300]}
        let m = b"\x82\xa5email\xaba@b.example\xa1n\x93\x01\xff\xcd\x01\x2c";
        assert_eq!(
            msgpack(m),
            Some(json!({"email": "a@b.example", "n": [1, -1, 300]}))
        );
        assert!(msgpack(b"\x82\xa5email").is_none(), "cut");
        assert!(msgpack(b"\xdf\xff\xff\xff\xff").is_none(), "a lying count");
        assert!(msgpack(b"\x91\x01").is_none(), "no string: no evidence");
    }

    #[test]
    fn signed_and_encoded_payloads() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = URL_SAFE_NO_PAD.encode(br#"{"user_id":"7","email":"a@b.example"}"#);
        let want = json!({"user_id": "7", "email": "a@b.example"});
        for s in [
            format!("{payload}.Zy1xAA.c2lnbmF0dXJlc2lnbmF0dXJl"),
            format!("{payload}:1r2x3y:c2lnbmF0dXJl"),
            format!("{payload}--0123456789abcdef"),
            payload.clone(),
        ] {
            assert!(candidate(&s), "{s}");
            assert_eq!(decode_text(&s).map(|x| x.1), Some(want.clone()), "{s}");
        }
        let z = miniz_oxide::deflate::compress_to_vec_zlib(
            br#"{"email":"a@b.example","email2":"a@b.example"}"#,
            6,
        );
        let s = format!(".{}:1r2x3y:c2ln", URL_SAFE_NO_PAD.encode(z));
        assert!(decode_text(&s).is_some());
        // A JWT stays a token.
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl";
        assert!(decode_text(jwt).is_none());
        assert_eq!(
            decode_text("%7B%22email%22%3A%22a%40b.example%22%7D").map(|x| x.1),
            Some(json!({"email": "a@b.example"}))
        );
        // Plain tokens and words are left alone.
        for s in [
            "hello world",
            "ghp_R8d2KxW0qL5mN7vB3cJ9tY1uF4hG6sA2pE0z",
            "email",
            "eeeeeeeeeeeeeeee",
        ] {
            assert!(decode_text(s).is_none(), "{s}");
        }
    }
}
