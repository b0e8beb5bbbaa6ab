//! Flattening JSON text without a general-purpose parser: one pass over the bytes that
//! appends `(path, value)` pairs to a [`Flat`] as it goes.
//!
//! This is `leakscope classify`'s inner loop (every line of an export goes through it), and a
//! parser built for it does less than serde_json driving a visitor: strings are found eight
//! bytes at a time (`"`, `\` and control characters at once) and taken as slices of the line
//! unless they hold escapes; integers and short decimals are copied as written. What it
//! accepts and what it yields are pinned to serde_json's: the same documents are refused
//! (including its 128-level nesting limit, control characters and lone surrogates in strings,
//! numbers out of range), and a document flattens exactly as its parsed tree does (tests and
//! the `flatten_json` fuzz target compare the two). Other numbers are handed to serde_json so
//! they print as a tree's numbers do.

use std::fmt;

use super::{Flat, MAX_DEPTH};

/// Nesting at which serde_json stops (its default recursion limit), kept so both parsers
/// refuse the same documents.
const MAX_NESTING: u32 = 128;

/// Why a text is not one JSON value: the reason and the byte where it was found. Never
/// carries content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextError {
    pub reason: &'static str,
    /// 0-based byte offset into the text.
    pub offset: usize,
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} at column {}", self.reason, self.offset + 1)
    }
}

impl std::error::Error for TextError {}

type Result<T> = std::result::Result<T, TextError>;

/// A cursor over one JSON text.
struct Text<'a> {
    src: &'a str,
    b: &'a [u8],
    i: usize,
    nesting: u32,
    /// Unescaped strings are built here.
    scratch: String,
}

impl<'a> Text<'a> {
    fn new(src: &'a str) -> Text<'a> {
        Text {
            src,
            b: src.as_bytes(),
            i: 0,
            nesting: 0,
            scratch: String::new(),
        }
    }

    fn err<T>(&self, reason: &'static str) -> Result<T> {
        Err(TextError {
            reason,
            offset: self.i,
        })
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// The next byte after whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    fn enter(&mut self) -> Result<()> {
        self.nesting += 1;
        if self.nesting >= MAX_NESTING {
            return self.err("recursion limit exceeded");
        }
        self.i += 1;
        Ok(())
    }

    /// The string starting at the `"` under the cursor, unescaped: a slice of the text when it
    /// holds no escapes, else the scratch buffer.
    fn string(&mut self) -> Result<&str> {
        self.i += 1;
        let start = self.i;
        let end = self.special(start)?;
        if self.b[end] == b'"' {
            self.i = end + 1;
            return Ok(&self.src[start..end]);
        }
        self.scratch.clear();
        self.scratch.push_str(&self.src[start..end]);
        self.i = end;
        loop {
            // At a backslash.
            self.i += 1;
            let Some(&e) = self.b.get(self.i) else {
                return self.err("EOF while parsing a string");
            };
            self.i += 1;
            let c = match e {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => self.unicode()?,
                _ => {
                    self.i -= 1;
                    return self.err("invalid escape");
                }
            };
            self.scratch.push(c);
            let from = self.i;
            let at = self.special(from)?;
            self.scratch.push_str(&self.src[from..at]);
            self.i = at;
            if self.b[at] == b'"' {
                self.i += 1;
                return Ok(&self.scratch);
            }
        }
    }

    /// The first `"` or `\` at or after `from`; a control character before it (not allowed
    /// raw in a JSON string) or the end of the text is an error.
    ///
    /// Eight bytes at a time with the classic zero-byte bit tricks: most strings are short,
    /// where this beats a SIMD search that must be set up per call and a second pass for the
    /// control characters.
    fn special(&mut self, from: usize) -> Result<usize> {
        const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
        const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
        let zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGH;
        let b = self.b;
        let mut i = from;
        while let Some(word) = b.get(i..i + 8) {
            let w = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
            let hits = zero(w ^ (ONES * u64::from(b'"')))
                | zero(w ^ (ONES * u64::from(b'\\')))
                | (w.wrapping_sub(ONES * 0x20) & !w & HIGH);
            if hits != 0 {
                // The lowest flagged byte is exact (borrows only flag bytes above a hit).
                i += (hits.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        while let Some(&c) = b.get(i) {
            match c {
                b'"' | b'\\' => return Ok(i),
                0..=0x1f => {
                    self.i = i;
                    return self
                        .err("control character (\\u0000-\\u001F) found while parsing a string");
                }
                _ => i += 1,
            }
        }
        self.i = i;
        self.err("EOF while parsing a string")
    }

    /// The code point of a `\u` escape (after the `u`); a surrogate must be half of a pair.
    fn unicode(&mut self) -> Result<char> {
        let n = self.hex4()?;
        let n = match n {
            0xDC00..=0xDFFF => return self.err("lone leading surrogate in hex escape"),
            0xD800..=0xDBFF => {
                if self.b.get(self.i..self.i + 2) != Some(b"\\u") {
                    return self.err("unexpected end of hex escape");
                }
                self.i += 2;
                let lo = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&lo) {
                    return self.err("lone leading surrogate in hex escape");
                }
                0x10000 + ((u32::from(n) - 0xD800) << 10) + (u32::from(lo) - 0xDC00)
            }
            n => u32::from(n),
        };
        // Every value left is a scalar value: surrogates were paired or refused above.
        char::from_u32(n).map_or_else(|| self.err("invalid unicode code point"), Ok)
    }

    fn hex4(&mut self) -> Result<u16> {
        let mut n = 0u16;
        for _ in 0..4 {
            let Some(d) = self.b.get(self.i).and_then(|&c| (c as char).to_digit(16)) else {
                return match self.b.get(self.i) {
                    None => self.err("EOF while parsing a string"),
                    Some(_) => self.err("invalid escape"),
                };
            };
            n = n << 4 | d as u16;
            self.i += 1;
        }
        Ok(n)
    }

    /// The number under the cursor, checked against JSON's grammar; whether it prints as
    /// written (integers of up to 18 digits fit i64 and u64 alike; serde_json reads `-0` as
    /// the float -0.0).
    fn number(&mut self) -> Result<(&'a str, bool)> {
        let start = self.i;
        let b = self.b;
        let mut i = start;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        let int = i;
        match b.get(i) {
            Some(b'0') => {
                i += 1;
                if b.get(i).is_some_and(u8::is_ascii_digit) {
                    self.i = i;
                    return self.err("invalid number");
                }
            }
            Some(b'1'..=b'9') => i = self.digit_run(i)?,
            _ => {
                self.i = i;
                return self.err("invalid number");
            }
        }
        let digits = i - int;
        let zero = b[int] == b'0';
        // Integers as written, and decimals too where the shortest round-trip form that
        // serde_json prints is the text itself: at most 15 significant digits (any two such
        // decimals are different doubles), the last one not a trailing zero, and the decimal
        // point where its fixed notation puts it (1e-3 to below 1e7 here, well inside).
        let mut as_written = digits <= 18 && &self.src[start..i] != "-0";
        if b.get(i) == Some(&b'.') {
            let f = i + 1;
            i = self.digit_run(f)?;
            let frac = &b[f..i];
            let lead = frac.iter().take_while(|&&c| c == b'0').count();
            let significant = if zero {
                frac.len() - lead
            } else {
                digits + frac.len()
            };
            as_written = significant <= 15
                && frac.last() != Some(&b'0')
                && if zero { lead <= 2 } else { digits <= 7 };
        }
        if let Some(b'e' | b'E') = b.get(i) {
            as_written = false;
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            i = self.digit_run(i)?;
        }
        self.i = i;
        Ok((&self.src[start..i], as_written))
    }

    /// After a member or element: true at a `,` (another follows), false at `close`; either
    /// is consumed.
    fn more(&mut self, close: u8) -> Result<bool> {
        match self.peek() {
            Some(b',') => {
                self.i += 1;
                Ok(true)
            }
            Some(c) if c == close => {
                self.i += 1;
                Ok(false)
            }
            _ if close == b'}' => self.err("expected `,` or `}`"),
            _ => self.err("expected `,` or `]`"),
        }
    }

    /// The end of the run of digits at `i`, which must hold at least one.
    fn digit_run(&mut self, i: usize) -> Result<usize> {
        let end = i + self.b[i..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if end == i {
            self.i = i;
            return self.err("invalid number");
        }
        Ok(end)
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            self.err("expected value")
        }
    }
}

impl Flat {
    /// Flattens one JSON text from its start (see [`Flat::json_str`]).
    pub(super) fn text_document(&mut self, src: &str) -> Result<()> {
        self.clear();
        let mut t = Text::new(src);
        let r = self.text_root(&mut t).and_then(|()| {
            if t.peek().is_some() {
                t.err("trailing characters")
            } else {
                Ok(())
            }
        });
        if r.is_err() {
            self.clear();
        }
        r
    }

    /// The document itself, as [`super::Root`] walks a tree.
    fn text_root(&mut self, t: &mut Text) -> Result<()> {
        match t.peek() {
            Some(b'{' | b'[') => self.text_value(t, 0),
            Some(b'"') => {
                let s = t.string()?;
                self.root_string(s);
                Ok(())
            }
            Some(b'n') => t.literal(b"null"),
            Some(_) => {
                self.path.push_str("value");
                self.text_value(t, 0)
            }
            None => t.err("EOF while parsing a value"),
        }
    }

    /// A value at the current path, `depth` levels down; past [`MAX_DEPTH`] it is read (and
    /// checked) but not kept.
    fn text_value(&mut self, t: &mut Text, depth: usize) -> Result<()> {
        let keep = depth <= MAX_DEPTH;
        match t.peek() {
            Some(b'{') => {
                t.enter()?;
                let base = self.path.len();
                if t.peek() == Some(b'}') {
                    t.i += 1;
                } else {
                    loop {
                        if t.peek() != Some(b'"') {
                            return t.err("key must be a string");
                        }
                        let k = t.string()?;
                        if keep {
                            if base > 0 {
                                self.path.push('.');
                            }
                            self.path.push_str(k);
                        }
                        if t.peek() != Some(b':') {
                            return t.err("expected `:`");
                        }
                        t.i += 1;
                        self.text_value(t, depth + 1)?;
                        self.path.truncate(base);
                        if !t.more(b'}')? {
                            break;
                        }
                    }
                }
                t.nesting -= 1;
            }
            Some(b'[') => {
                t.enter()?;
                let base = self.path.len();
                if keep {
                    self.path.push_str("[]");
                }
                if t.peek() == Some(b']') {
                    t.i += 1;
                } else {
                    loop {
                        self.text_value(t, depth + 1)?;
                        if !t.more(b']')? {
                            break;
                        }
                    }
                }
                self.path.truncate(base);
                t.nesting -= 1;
            }
            Some(b'"') => {
                let s = t.string()?;
                if keep {
                    self.string(s, depth);
                }
            }
            Some(b't') => {
                t.literal(b"true")?;
                if keep {
                    self.push(|v| v.push_str("true"));
                }
            }
            Some(b'f') => {
                t.literal(b"false")?;
                if keep {
                    self.push(|v| v.push_str("false"));
                }
            }
            Some(b'n') => t.literal(b"null")?,
            Some(b'-' | b'0'..=b'9') => {
                let at = t.i;
                let (n, as_written) = t.number()?;
                if as_written {
                    if keep {
                        self.push(|v| v.push_str(n));
                    }
                } else {
                    // As serde_json reads and prints it (floats shortest round-trip, integers
                    // past 64 bits as floats), so text and tree agree.
                    let Ok(n) = serde_json::from_str::<serde_json::Number>(n) else {
                        t.i = at;
                        return t.err("number out of range");
                    };
                    if keep {
                        self.push(|v| {
                            use std::fmt::Write as _;
                            let _ = write!(v, "{n}");
                        });
                    }
                }
            }
            Some(_) => return t.err("expected value"),
            None => return t.err("EOF while parsing a value"),
        }
        Ok(())
    }

    /// Flattens `s`, a string that looks like a JSON object or array, at the current path
    /// one level below `depth`; false when it is not JSON, and then nothing it added is left
    /// and the path is as it was (a failed parse stops inside the objects it entered).
    pub(super) fn text_embedded(&mut self, s: &str, depth: usize) -> bool {
        let mark = (self.path.len(), self.text.len(), self.pairs.len());
        let mut t = Text::new(s);
        let ok = self
            .text_value(&mut t, depth + 1)
            .is_ok_and(|()| t.peek().is_none());
        if !ok {
            self.path.truncate(mark.0);
            self.text.truncate(mark.1);
            self.pairs.truncate(mark.2);
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::flatten::flatten_json;
    use serde_json::Value;

    /// xorshift: reproducible without a dependency.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len() as u64) as usize]
        }
    }

    /// A random JSON string literal: plain text, escapes of every kind, surrogate pairs,
    /// non-ASCII characters and embedded JSON, each object's keys distinct.
    fn string(r: &mut Rng, out: &mut String) {
        out.push('"');
        for _ in 0..r.below(12) {
            let piece = r.pick(&[
                "a",
                "Z",
                "7",
                " ",
                "é",
                "日本",
                "😀",
                "\\\"",
                "\\\\",
                "\\/",
                "\\b",
                "\\f",
                "\\n",
                "\\r",
                "\\t",
                "\\u0041",
                "\\u00e9",
                "\\ud83d\\ude00",
                "\\u0000",
                "user@x.io",
                "{\\\"k\\\":[1,\\\"v\\\"]}",
                "[1,2]",
                "{",
                " [",
                "Atza|xyz",
            ]);
            out.push_str(piece);
        }
        out.push('"');
    }

    fn number(r: &mut Rng, out: &mut String) {
        let n = r.pick(&[
            "0",
            "-0",
            "7",
            "-12",
            "123456789012345678",
            "1234567890123456789",
            "-9223372036854775808",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999999",
            "0.5",
            "-0.5",
            "72.4",
            "1.50",
            "0.001",
            "0.0001",
            "0.00012",
            "1234567.5",
            "12345678.5",
            "123456789012345.6",
            "0.1234567890123456",
            "1e3",
            "1E-7",
            "2.5e+2",
            "-0.0",
            "12.0",
            "1e308",
            "3.141592653589793",
            "100.25",
            "0.000001",
        ]);
        out.push_str(n);
        if r.below(4) == 0 {
            // Random decimals, to reach digit counts the list misses.
            out.clear();
            let int = r.below(10_000_000);
            out.push_str(&format!(
                "{int}.{:0w$}",
                r.below(1_000_000),
                w = 1 + r.below(8) as usize
            ));
        }
    }

    fn value(r: &mut Rng, depth: u32, out: &mut String) {
        let ws = |r: &mut Rng, out: &mut String| {
            if r.below(5) == 0 {
                out.push_str(r.pick(&[" ", "\n", "\t ", "\r\n"]));
            }
        };
        ws(r, out);
        match if depth > 4 {
            3 + r.below(4)
        } else {
            r.below(7)
        } {
            0 | 1 => {
                out.push('{');
                for i in 0..r.below(5) {
                    if i > 0 {
                        out.push(',');
                    }
                    ws(r, out);
                    out.push_str(&format!("\"k{i}"));
                    let mut s = String::new();
                    string(r, &mut s);
                    out.push_str(&s[1..]);
                    ws(r, out);
                    out.push(':');
                    value(r, depth + 1, out);
                }
                out.push('}');
            }
            2 => {
                out.push('[');
                for i in 0..r.below(4) {
                    if i > 0 {
                        out.push(',');
                    }
                    value(r, depth + 1, out);
                }
                out.push(']');
            }
            3 | 4 => string(r, out),
            5 => {
                let mut n = String::new();
                number(r, &mut n);
                out.push_str(&n);
            }
            _ => out.push_str(r.pick(&["true", "false", "null"])),
        }
        ws(r, out);
    }

    /// Text and tree must agree: the same documents refused, the same pairs from the rest.
    fn agree(doc: &str, cap: usize) {
        let mut f = Flat::new(cap);
        let text = f.json_str(doc);
        match serde_json::from_str::<Value>(doc) {
            Ok(tree) => {
                assert!(text.is_ok(), "text refused {doc:?}: {text:?}");
                assert_eq!(f.to_record(), flatten_json(&tree, cap), "{doc:?}");
            }
            Err(e) => {
                assert!(text.is_err(), "text took {doc:?}, serde_json: {e}");
                assert_eq!(f.pairs().count(), 0);
            }
        }
    }

    #[test]
    fn agrees_with_serde_json_on_random_documents() {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let mut doc = String::new();
            value(&mut r, 0, &mut doc);
            let cap = [4, 64, 1 << 20][r.below(3) as usize];
            agree(&doc, cap);
            // Broken variants: cut short, a byte removed, a byte doubled.
            let b = doc.as_bytes();
            if b.is_empty() {
                continue;
            }
            let at = r.below(b.len() as u64) as usize;
            let variants = [
                b[..at].to_vec(),
                [&b[..at], &b[at + 1..]].concat(),
                [&b[..=at], &b[at..]].concat(),
            ];
            for v in variants {
                if let Ok(v) = String::from_utf8(v) {
                    agree(&v, cap);
                }
            }
        }
    }

    #[test]
    fn refuses_what_serde_json_refuses() {
        for bad in [
            "",
            " ",
            "{",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{a:1}",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "1e+",
            "tru",
            "nul",
            "[1 2]",
            "\"abc",
            "\"a\\x\"",
            "\"\\u12\"",
            "\"\\ud800\"",
            "\"\\ud800\\u0041\"",
            "\"\\udc00\"",
            "\"tab\there\"",
            "1e400",
            "[1]x",
            "{}}",
        ] {
            let mut f = Flat::new(64);
            let e = f.json_str(bad).expect_err(bad);
            assert!(serde_json::from_str::<Value>(bad).is_err(), "{bad:?}");
            assert!(e.offset <= bad.len(), "{bad:?}: {e}");
            assert!(!e.to_string().contains("tab"), "no content in {e}");
        }
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        agree(&nested(127), 8);
        agree(&nested(128), 8);
        assert!(Flat::new(8).json_str(&nested(128)).is_err());
    }

    #[test]
    fn numbers_print_as_serde_json_prints_them() {
        let mut r = Rng(7);
        let mut f = Flat::new(64);
        for _ in 0..100_000 {
            let digits = |r: &mut Rng, n: u64| -> String {
                (0..n)
                    .map(|_| char::from(b'0' + r.below(10) as u8))
                    .collect()
            };
            let int = match r.below(3) {
                0 => "0".to_string(),
                _ => {
                    let n = 1 + r.below(9);
                    format!("{}{}", 1 + r.below(9), digits(&mut r, n - 1))
                }
            };
            let frac = {
                let n = 1 + r.below(17);
                digits(&mut r, n)
            };
            let sign = if r.below(4) == 0 { "-" } else { "" };
            let doc = format!("{sign}{int}.{frac}");
            let want = serde_json::from_str::<serde_json::Number>(&doc)
                .unwrap()
                .to_string();
            f.json_str(&doc).unwrap();
            assert_eq!(f.pairs().next(), Some(("value", want.as_str())), "{doc}");
        }
    }
}
