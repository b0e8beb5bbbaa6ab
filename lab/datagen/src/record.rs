//! Record encoding. Container writers describe a record once, as a sequence of typed fields
//! (with nesting); an [`Out`] turns that into the bytes one store loads (JSON lines, COPY text,
//! RESP commands, memcached `set`s), into the JSON a benchmark reads back, or into the list of
//! field paths and categories that becomes the ground truth. One description for all of them is
//! what keeps the truth and the data from drifting apart.

use crate::text::{push_date, push_decimal, push_i64, push_timestamp, push_u64, TimeStyle};

/// A field as the truth sees it: its name, its true categories and its SQL type.
#[derive(Debug)]
pub struct Field {
    pub name: &'static str,
    pub categories: &'static [&'static str],
    pub ty: Ty,
}

/// SQL column types, mapped to each dialect by the DDL writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    Uuid,
    /// Text with a MySQL `VARCHAR` length.
    Text(u16),
    Char(u8),
    Inet,
    Timestamp,
    Date,
    /// `NUMERIC(precision, scale)`.
    Decimal(u8, u8),
    Int,
    BigInt,
}

/// A field value. Decimals are scaled integers (`Decimal(723, 1)` is 72.3); times are seconds
/// and dates days since the epoch.
#[derive(Clone, Copy, Debug)]
pub enum Val<'a> {
    Str(&'a str),
    Int(i64),
    Decimal(i64, u8),
    Time(i64),
    Date(i64),
}

/// How field values become bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// A JSON object; with `strings`, numbers are quoted too (Redis values read back as text).
    Json { strings: bool },
    /// PostgreSQL COPY text / MySQL LOAD DATA row.
    Tsv,
    /// Redis hash field/value pairs.
    Pairs,
    /// A single bare value (Redis and Memcached strings that are not JSON).
    Scalar,
    /// Nothing is written; field paths are collected instead.
    Paths,
}

/// How a finished record is framed in the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Line,
    Hset,
    Set,
    Rpush,
    MemcachedSet,
    None,
}

/// A field path with its categories, as collected by [`Encoding::Paths`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathInfo {
    pub path: String,
    pub categories: &'static [&'static str],
    pub ty: Ty,
}

/// The output of one container: record writers call `begin`, fields, `end`.
pub struct Out {
    pub buf: Vec<u8>,
    pub records: u64,
    pub paths: Vec<PathInfo>,
    enc: Encoding,
    framing: Framing,
    style: TimeStyle,
    key: Vec<u8>,
    val: Vec<u8>,
    args: Vec<u8>,
    nargs: usize,
    tmp: Vec<u8>,
    /// Where the current record's value starts in `val`.
    rec_start: usize,
    first: bool,
    stack: Vec<bool>,
    items: bool,
    path: String,
    path_stack: Vec<usize>,
}

impl Out {
    pub fn new(enc: Encoding, framing: Framing, style: TimeStyle) -> Out {
        Out {
            buf: Vec::new(),
            records: 0,
            paths: Vec::new(),
            enc,
            framing,
            style,
            key: Vec::new(),
            val: Vec::new(),
            args: Vec::new(),
            nargs: 0,
            tmp: Vec::new(),
            rec_start: 0,
            first: true,
            stack: Vec::new(),
            items: false,
            path: String::new(),
            path_stack: Vec::new(),
        }
    }

    /// Starts a record whose value is an object (a document, a row, a hash, a JSON string).
    /// `key` is the key-value key in parts; formats without keys ignore it.
    pub fn begin(&mut self, key: &[&str]) {
        self.start(key, false);
    }

    /// Starts a record whose value is a list of objects (a Redis list of JSON jobs); each
    /// element is written between [`Out::elem`] and [`Out::end_elem`].
    pub fn begin_items(&mut self, key: &[&str]) {
        self.start(key, true);
    }

    fn start(&mut self, key: &[&str], items: bool) {
        self.key.clear();
        for part in key {
            self.key.extend_from_slice(part.as_bytes());
        }
        if self.framing == Framing::Line {
            // Lines need no length prefix, so the record is encoded straight onto the output
            // (swapped back in `end`) instead of being copied there.
            std::mem::swap(&mut self.val, &mut self.buf);
        } else {
            self.val.clear();
        }
        self.rec_start = self.val.len();
        self.args.clear();
        self.nargs = 0;
        self.first = true;
        self.stack.clear();
        self.items = items;
        match self.enc {
            Encoding::Json { .. } if !items => self.val.push(b'{'),
            // A pushed list sends every element as its own argument; read back it is an array.
            Encoding::Json { .. } if self.framing != Framing::Rpush => self.val.push(b'['),
            Encoding::Paths => {
                self.path.clear();
                self.path_stack.clear();
                if items {
                    self.path.push_str("[].");
                }
            }
            _ => {}
        }
    }

    pub fn put(&mut self, f: &'static Field, v: Val<'_>) {
        match self.enc {
            Encoding::Json { strings } => {
                self.sep();
                self.val.push(b'"');
                self.val.extend_from_slice(f.name.as_bytes());
                self.val.extend_from_slice(b"\":");
                json_value(&mut self.val, v, strings, self.style);
            }
            Encoding::Tsv => {
                if !self.first {
                    self.val.push(b'\t');
                }
                self.first = false;
                match v {
                    Val::Str(s) => push_copy_escaped(&mut self.val, s),
                    _ => text_value(&mut self.val, v, self.style),
                }
            }
            Encoding::Pairs => {
                push_bulk(&mut self.args, f.name.as_bytes());
                self.tmp.clear();
                text_value(&mut self.tmp, v, self.style);
                push_bulk(&mut self.args, &self.tmp);
                self.nargs += 2;
            }
            Encoding::Scalar => {
                self.val.truncate(self.rec_start);
                text_value(&mut self.val, v, self.style);
            }
            Encoding::Paths => {
                let len = self.path.len();
                self.path.push_str(f.name);
                if !self.paths.iter().any(|p| p.path == self.path) {
                    self.paths.push(PathInfo {
                        path: self.path.clone(),
                        categories: f.categories,
                        ty: f.ty,
                    });
                }
                self.path.truncate(len);
            }
        }
    }

    /// Opens a nested object field.
    pub fn obj(&mut self, name: &str) {
        self.open(name, b'{', ".");
    }

    pub fn end_obj(&mut self) {
        self.close(b'}');
    }

    /// Opens an array-of-objects field; elements go between [`Out::elem`] and [`Out::end_elem`].
    pub fn list(&mut self, name: &str) {
        self.open(name, b'[', "[].");
    }

    pub fn end_list(&mut self) {
        self.close(b']');
    }

    pub fn elem(&mut self) {
        match self.enc {
            Encoding::Json { .. } => {
                if self.items && self.stack.is_empty() && self.framing == Framing::Rpush {
                    self.val.clear();
                } else {
                    self.sep();
                }
                self.val.push(b'{');
                self.stack.push(self.first);
                self.first = true;
            }
            Encoding::Paths => {}
            _ => panic!("nested values in a flat encoding"),
        }
    }

    pub fn end_elem(&mut self) {
        match self.enc {
            Encoding::Json { .. } => {
                self.val.push(b'}');
                self.first = self.stack.pop().expect("balanced elem");
                if self.items && self.stack.is_empty() && self.framing == Framing::Rpush {
                    push_bulk(&mut self.args, &self.val);
                    self.nargs += 1;
                }
            }
            Encoding::Paths => {}
            _ => panic!("nested values in a flat encoding"),
        }
    }

    fn open(&mut self, name: &str, bracket: u8, suffix: &str) {
        match self.enc {
            Encoding::Json { .. } => {
                self.sep();
                self.val.push(b'"');
                self.val.extend_from_slice(name.as_bytes());
                self.val.extend_from_slice(b"\":");
                self.val.push(bracket);
                self.stack.push(self.first);
                self.first = true;
            }
            Encoding::Paths => {
                self.path_stack.push(self.path.len());
                self.path.push_str(name);
                self.path.push_str(suffix);
            }
            _ => panic!("nested values in a flat encoding"),
        }
    }

    fn close(&mut self, bracket: u8) {
        match self.enc {
            Encoding::Json { .. } => {
                self.val.push(bracket);
                self.first = self.stack.pop().expect("balanced nesting");
            }
            Encoding::Paths => {
                let len = self.path_stack.pop().expect("balanced nesting");
                self.path.truncate(len);
            }
            _ => panic!("nested values in a flat encoding"),
        }
    }

    fn sep(&mut self) {
        if !self.first {
            self.val.push(b',');
        }
        self.first = false;
    }

    pub fn end(&mut self) {
        if let Encoding::Json { .. } = self.enc {
            if !self.items {
                self.val.push(b'}');
            } else if self.framing != Framing::Rpush {
                self.val.push(b']');
            }
        }
        let buf = &mut self.buf;
        match self.framing {
            Framing::Line => {
                self.val.push(b'\n');
                std::mem::swap(&mut self.val, buf);
            }
            Framing::Hset => {
                push_command(buf, 2 + self.nargs, b"HSET");
                push_bulk(buf, &self.key);
                buf.extend_from_slice(&self.args);
            }
            Framing::Set => {
                push_command(buf, 3, b"SET");
                push_bulk(buf, &self.key);
                push_bulk(buf, &self.val);
            }
            Framing::Rpush => {
                push_command(buf, 2 + self.nargs, b"RPUSH");
                push_bulk(buf, &self.key);
                buf.extend_from_slice(&self.args);
            }
            Framing::MemcachedSet => {
                buf.extend_from_slice(b"set ");
                buf.extend_from_slice(&self.key);
                buf.extend_from_slice(b" 0 0 ");
                push_u64(buf, self.val.len() as u64);
                buf.extend_from_slice(b" noreply\r\n");
                buf.extend_from_slice(&self.val);
                buf.extend_from_slice(b"\r\n");
            }
            Framing::None => {}
        }
        self.records += 1;
    }

    /// Switches the Redis database for the commands that follow.
    pub fn select_db(&mut self, db: u8) {
        push_command(&mut self.buf, 2, b"SELECT");
        let mut n = Vec::with_capacity(3);
        push_u64(&mut n, u64::from(db));
        push_bulk(&mut self.buf, &n);
    }
}

fn push_command(buf: &mut Vec<u8>, nargs: usize, name: &[u8]) {
    buf.push(b'*');
    push_u64(buf, nargs as u64);
    buf.extend_from_slice(b"\r\n");
    push_bulk(buf, name);
}

fn push_bulk(buf: &mut Vec<u8>, data: &[u8]) {
    buf.push(b'$');
    push_u64(buf, data.len() as u64);
    buf.extend_from_slice(b"\r\n");
    buf.extend_from_slice(data);
    buf.extend_from_slice(b"\r\n");
}

/// The value as plain text (no quoting or escaping).
fn text_value(out: &mut Vec<u8>, v: Val<'_>, style: TimeStyle) {
    match v {
        Val::Str(s) => out.extend_from_slice(s.as_bytes()),
        Val::Int(n) => push_i64(out, n),
        Val::Decimal(n, scale) => push_decimal(out, n, scale),
        Val::Time(t) => push_timestamp(out, t, style),
        Val::Date(d) => push_date(out, d),
    }
}

fn json_value(out: &mut Vec<u8>, v: Val<'_>, strings: bool, style: TimeStyle) {
    match v {
        Val::Str(s) => push_json_string(out, s),
        Val::Int(_) | Val::Decimal(..) if !strings => text_value(out, v, style),
        _ => {
            // Numbers as strings, times and dates: their text never needs escaping.
            out.push(b'"');
            text_value(out, v, style);
            out.push(b'"');
        }
    }
}

pub fn push_json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    // Nearly every value is clean; a branch-free pass (which vectorises) proves it cheaply.
    let dirty = bytes.iter().fold(false, |acc, &c| {
        acc | (c < 0x20) | (c == b'"') | (c == b'\\')
    });
    if !dirty {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &c) in bytes.iter().enumerate() {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(c >> 4)]);
            out.push(HEX[usize::from(c & 15)]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// COPY text format escaping: backslash, tab, newline and carriage return.
pub fn push_copy_escaped(out: &mut Vec<u8>, s: &str) {
    for &c in s.as_bytes() {
        match c {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static NAME: Field = Field {
        name: "name",
        categories: &["identity.name"],
        ty: Ty::Text(64),
    };
    static N: Field = Field {
        name: "n",
        categories: &[],
        ty: Ty::Int,
    };

    fn record(enc: Encoding, framing: Framing) -> String {
        let mut o = Out::new(enc, framing, TimeStyle::Iso);
        o.begin(&["k:", "1"]);
        o.put(&NAME, Val::Str("a\tb\\c\"d\ne"));
        o.put(&N, Val::Decimal(-5, 1));
        o.end();
        String::from_utf8(o.buf).unwrap()
    }

    #[test]
    fn encodings() {
        assert_eq!(
            record(Encoding::Json { strings: false }, Framing::Line),
            "{\"name\":\"a\\tb\\\\c\\\"d\\ne\",\"n\":-0.5}\n"
        );
        assert_eq!(
            record(Encoding::Json { strings: true }, Framing::Line),
            "{\"name\":\"a\\tb\\\\c\\\"d\\ne\",\"n\":\"-0.5\"}\n"
        );
        assert_eq!(
            record(Encoding::Tsv, Framing::Line),
            "a\\tb\\\\c\"d\\ne\t-0.5\n"
        );
        assert_eq!(
            record(Encoding::Pairs, Framing::Hset),
            "*6\r\n$4\r\nHSET\r\n$3\r\nk:1\r\n$4\r\nname\r\n$9\r\na\tb\\c\"d\ne\r\n$1\r\nn\r\n$4\r\n-0.5\r\n"
        );
        assert_eq!(
            record(Encoding::Scalar, Framing::MemcachedSet),
            "set k:1 0 0 4 noreply\r\n-0.5\r\n"
        );
    }

    #[test]
    fn json_strings_escape_like_serde_json() {
        let specials = [
            "\"", "\\", "\n", "\r", "\t", "\u{1}", "\u{1f}", "é", "ü", "€", "x",
        ];
        for pos in 0..20 {
            for sp in specials {
                let s = format!("{}{sp}{}", "a".repeat(pos), "b".repeat(20 - pos));
                let mut out = Vec::new();
                push_json_string(&mut out, &s);
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    serde_json::to_string(&s).unwrap(),
                    "{s:?}"
                );
            }
        }
    }

    #[test]
    fn lists_and_paths() {
        for (framing, want) in [
            (Framing::Line, "[{\"n\":1},{\"n\":2}]\n".to_string()),
            (
                Framing::Rpush,
                "*4\r\n$5\r\nRPUSH\r\n$1\r\nq\r\n$7\r\n{\"n\":1}\r\n$7\r\n{\"n\":2}\r\n"
                    .to_string(),
            ),
        ] {
            let mut o = Out::new(Encoding::Json { strings: false }, framing, TimeStyle::Iso);
            o.begin_items(&["q"]);
            for n in 1..=2 {
                o.elem();
                o.put(&N, Val::Int(n));
                o.end_elem();
            }
            o.end();
            assert_eq!(String::from_utf8(o.buf).unwrap(), want);
        }
        let mut o = Out::new(Encoding::Paths, Framing::None, TimeStyle::Iso);
        o.begin(&[]);
        o.put(&NAME, Val::Str(""));
        o.list("devices");
        o.elem();
        o.put(&N, Val::Int(1));
        o.end_elem();
        o.elem();
        o.put(&N, Val::Int(1));
        o.end_elem();
        o.end_list();
        o.obj("app");
        o.put(&NAME, Val::Str(""));
        o.end_obj();
        o.end();
        let paths: Vec<&str> = o.paths.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["name", "devices[].n", "app.name"]);
    }
}
