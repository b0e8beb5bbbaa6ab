//! The prefilter: one pass over a value's bytes that decides which detectors can possibly
//! match it, so that the detectors themselves run only on plausible values.
//!
//! A value's [`Shape`] is its length, its first byte and a 64-bit mask of the byte classes it
//! contains (digits, upper and lower case hex and non-hex letters, space, other whitespace,
//! control bytes, non-ASCII bytes, and each of the 32 ASCII punctuation characters on its own
//! bit). Computing it is one table lookup and an OR per byte. Each detector compiles to a
//! [`Pre`]: a length range, the classes it allows, groups of classes of which it needs at
//! least one, and the first bytes it can start with. [`Pre::admits`] is a handful of integer
//! tests.
//!
//! A `Pre` must be a *necessary* condition of its detector — it may let through values the
//! detector then rejects, never the reverse — or classification would change. The unit tests
//! check this on every rule's test values, on the detectors' own examples and on random
//! strings built from the characters the detectors care about.
//!
//! [`PreTable`] evaluates every detector's `Pre` at once: a value costs a few table lookups and
//! one per byte class present, whatever the number of detectors planned for its field.
//!
//! Values reach the prefilter trimmed and non-empty (see `gather` in the module above); the
//! conditions rely on that.

use super::detect::{Charset, Detector};

/// `0`–`9`
pub const DIGIT: u64 = 1 << 0;
/// `A`–`F`
pub const UPPER_HEX: u64 = 1 << 1;
/// `G`–`Z`
pub const UPPER_OTHER: u64 = 1 << 2;
/// `a`–`f`
pub const LOWER_HEX: u64 = 1 << 3;
/// `g`–`z`
pub const LOWER_OTHER: u64 = 1 << 4;
/// `' '`
pub const SPACE: u64 = 1 << 5;
/// Tab, line feed, vertical tab, form feed, carriage return.
pub const WS_OTHER: u64 = 1 << 6;
/// Other bytes below 0x20, and 0x7f.
pub const CONTROL: u64 = 1 << 7;
/// Bytes of multi-byte UTF-8 characters.
pub const NON_ASCII: u64 = 1 << 8;
/// First bit of the punctuation characters, in ASCII order from `!` on.
const PUNCT_BASE: u32 = 9;

pub const UPPER: u64 = UPPER_HEX | UPPER_OTHER;
pub const LOWER: u64 = LOWER_HEX | LOWER_OTHER;
pub const LETTER: u64 = UPPER | LOWER;
pub const ALNUM: u64 = DIGIT | LETTER;
pub const HEX: u64 = DIGIT | UPPER_HEX | LOWER_HEX;
/// Every class.
pub const ANY: u64 = u64::MAX;

/// The bit of one ASCII punctuation character.
pub const fn p(c: u8) -> u64 {
    let i = match c {
        b'!'..=b'/' => c - b'!',
        b':'..=b'@' => c - b':' + 15,
        b'['..=b'`' => c - b'[' + 22,
        b'{'..=b'~' => c - b'{' + 28,
        _ => panic!("not ASCII punctuation"),
    };
    1 << (PUNCT_BASE + i as u32)
}

/// The bits of several punctuation characters.
pub const fn ps(chars: &[u8]) -> u64 {
    let mut m = 0;
    let mut i = 0;
    while i < chars.len() {
        m |= p(chars[i]);
        i += 1;
    }
    m
}

const fn class_of(b: u8) -> u64 {
    match b {
        b'0'..=b'9' => DIGIT,
        b'A'..=b'F' => UPPER_HEX,
        b'G'..=b'Z' => UPPER_OTHER,
        b'a'..=b'f' => LOWER_HEX,
        b'g'..=b'z' => LOWER_OTHER,
        b' ' => SPACE,
        b'\t' | b'\n' | 0x0b | 0x0c | b'\r' => WS_OTHER,
        0..=0x1f | 0x7f => CONTROL,
        0x80..=0xff => NON_ASCII,
        _ => p(b),
    }
}

const CLASSES: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = class_of(i as u8);
        i += 1;
    }
    t
};

/// The classes present in `bytes`.
#[inline]
pub fn mask_of(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |m, &b| m | CLASSES[b as usize])
}

/// What the prefilter knows of one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub len: usize,
    pub mask: u64,
    pub first: u8,
}

impl Shape {
    #[inline]
    pub fn of(v: &str) -> Shape {
        let b = v.as_bytes();
        Shape {
            len: b.len(),
            mask: mask_of(b),
            first: b.first().copied().unwrap_or(0),
        }
    }
}

/// A set of bytes (for first bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSet([u64; 4]);

impl ByteSet {
    pub const ALL: ByteSet = ByteSet([u64::MAX; 4]);

    pub fn of(bytes: impl IntoIterator<Item = u8>) -> ByteSet {
        let mut s = [0u64; 4];
        for b in bytes {
            s[(b >> 6) as usize] |= 1 << (b & 63);
        }
        ByteSet(s)
    }

    #[inline]
    pub fn has(&self, b: u8) -> bool {
        self.0[(b >> 6) as usize] & (1 << (b & 63)) != 0
    }
}

/// A detector's necessary condition on a value's [`Shape`].
#[derive(Debug, Clone, PartialEq)]
pub struct Pre {
    pub min_len: usize,
    pub max_len: usize,
    /// Classes the value may contain (any other class rejects it).
    pub allowed: u64,
    /// Each group needs at least one of its classes present.
    pub need: Vec<u64>,
    pub first: ByteSet,
}

impl Pre {
    fn new(min_len: usize, max_len: usize, allowed: u64) -> Pre {
        Pre {
            min_len,
            max_len,
            allowed,
            need: Vec::new(),
            first: ByteSet::ALL,
        }
    }

    fn need(mut self, group: u64) -> Pre {
        self.need.push(group);
        self
    }

    fn first(mut self, bytes: impl IntoIterator<Item = u8>) -> Pre {
        self.first = ByteSet::of(bytes);
        self
    }

    /// Whether a value of this shape can pass the detector.
    #[inline]
    pub fn admits(&self, s: &Shape) -> bool {
        s.len >= self.min_len
            && s.len <= self.max_len
            && s.mask & !self.allowed == 0
            && self.need.iter().all(|g| s.mask & g != 0)
            && self.first.has(s.first)
    }
}

/// Most detectors one rule set may use: [`PreTable`] keeps a set of detectors in a `u128`.
pub const MAX_DETECTORS: usize = 128;
/// Lengths up to this are looked up; longer values (rare) compare each detector's range.
const LEN_TABLE: usize = 512;

/// All detectors' prefilters as bit sets (bit `i` = detector `i`), so that the detectors a
/// value can match come from three lookups and an AND, not a loop over the detectors.
/// [`PreTable::admitted`] is exactly the set of detectors whose [`Pre::admits`] holds.
#[derive(Debug, Clone)]
pub struct PreTable {
    pres: Vec<Pre>,
    /// By first byte: the detectors that may start with it.
    first: Box<[u128; 256]>,
    /// By length up to [`LEN_TABLE`]: the detectors whose length range holds it.
    len: Vec<u128>,
    /// By class bit: the detectors that do not allow the class.
    forbid: [u128; 64],
    /// Detectors with groups of classes of which a value needs one.
    needy: u128,
    /// By detector: its groups, padded with [`ANY`] (which a non-empty value always meets),
    /// so the test is a fixed run of ANDs instead of a walk over a `Vec` per detector.
    need: Vec<[u64; MAX_NEED]>,
}

/// Most need groups of one prefilter.
const MAX_NEED: usize = 4;

impl PreTable {
    /// The table of these prefilters (at most [`MAX_DETECTORS`]).
    pub fn new(pres: Vec<Pre>) -> PreTable {
        assert!(pres.len() <= MAX_DETECTORS, "{} detectors", pres.len());
        let mut first = Box::new([0u128; 256]);
        let mut len = vec![0u128; LEN_TABLE + 1];
        let mut forbid = [0u128; 64];
        let mut needy = 0;
        let mut need = vec![[ANY; MAX_NEED]; pres.len()];
        for (i, p) in pres.iter().enumerate() {
            assert!(p.need.len() <= MAX_NEED, "{} need groups", p.need.len());
            need[i][..p.need.len()].copy_from_slice(&p.need);
            let bit = 1u128 << i;
            for (b, set) in first.iter_mut().enumerate() {
                if p.first.has(b as u8) {
                    *set |= bit;
                }
            }
            for (l, set) in len.iter_mut().enumerate() {
                if (p.min_len..=p.max_len).contains(&l) {
                    *set |= bit;
                }
            }
            for (c, set) in forbid.iter_mut().enumerate() {
                if p.allowed & (1u64 << c) == 0 {
                    *set |= bit;
                }
            }
            if !p.need.is_empty() {
                needy |= bit;
            }
        }
        PreTable {
            pres,
            first,
            len,
            forbid,
            needy,
            need,
        }
    }

    /// The detectors among `within` that a value of this shape can pass.
    #[inline]
    pub fn admitted(&self, s: &Shape, within: u128) -> u128 {
        let by_len = match self.len.get(s.len) {
            Some(&set) => set,
            None => self.long(s.len),
        };
        let mut out = within & self.first[s.first as usize] & by_len;
        let mut classes = s.mask;
        while classes != 0 && out != 0 {
            out &= !self.forbid[classes.trailing_zeros() as usize];
            classes &= classes - 1;
        }
        let mut needy = out & self.needy;
        while needy != 0 {
            let i = needy.trailing_zeros() as usize;
            if !self.need[i]
                .iter()
                .fold(true, |ok, g| ok & (s.mask & g != 0))
            {
                out &= !(1u128 << i);
            }
            needy &= needy - 1;
        }
        out
    }

    #[cold]
    fn long(&self, len: usize) -> u128 {
        self.pres
            .iter()
            .enumerate()
            .filter(|(_, p)| (p.min_len..=p.max_len).contains(&len))
            .fold(0, |set, (i, _)| set | 1u128 << i)
    }
}

/// The classes of a charset (exact except for `UpperBase32`, whose digits are a subset).
pub fn charset_mask(c: Charset) -> u64 {
    match c {
        Charset::Base64Url => ALNUM | ps(b"-_"),
        Charset::Base64 => ALNUM | ps(b"+/="),
        Charset::Token => ALNUM | ps(b"-_+/=.~|:"),
        Charset::Alnum => ALNUM,
        // Digits 0, 1, 8, 9 share the digit class; the detector itself rejects them.
        Charset::UpperBase32 => UPPER | DIGIT,
        Charset::UpperAlnum => UPPER | DIGIT,
        Charset::Hex => HEX,
    }
}

const DIGITS: std::ops::RangeInclusive<u8> = b'0'..=b'9';

fn letters() -> impl Iterator<Item = u8> {
    (b'A'..=b'Z').chain(b'a'..=b'z')
}

/// Characters of a written phone number (see `detect::phone_chars_ok`; the no-break space is
/// non-ASCII).
const PHONE: u64 = DIGIT | SPACE | NON_ASCII | ps(b"-.()/+");

impl Detector {
    /// The detector's prefilter.
    pub fn prefilter(&self) -> Pre {
        let n = usize::MAX;
        match self {
            Detector::Email => Pre::new(6, 254, ALNUM | NON_ASCII | ps(b"._%+-!#$&'*/=?^`{|}~@"))
                .need(p(b'@'))
                .need(p(b'.')),
            Detector::PhoneIntl => Pre::new(7, n, PHONE).need(DIGIT).first([b'+', b'0']),
            Detector::PhoneNational | Detector::Phone => Pre::new(7, n, PHONE).need(DIGIT),
            // Separators may stand anywhere, even first.
            Detector::Card => Pre::new(12, 23, DIGIT | SPACE | p(b'-')).need(DIGIT),
            Detector::Iban => Pre::new(15, 42, ALNUM | SPACE).need(DIGIT).first(letters()),
            Detector::CodiceFiscale => Pre::new(16, 16, ALNUM).first(letters()),
            Detector::UsSsn => Pre::new(9, 11, DIGIT | SPACE | p(b'-')).first(DIGITS),
            // Eight digits or X/Y/Z and seven, then the control letter.
            Detector::EsDni => Pre::new(9, super::checks::ES_DNI_MAX_LEN, ALNUM | SPACE | p(b'-'))
                .need(DIGIT)
                .need(LETTER)
                .first(DIGITS.chain(*b"XYZxyz-")),
            Detector::FrNir => {
                Pre::new(15, n, DIGIT | SPACE | UPPER_HEX | LOWER_HEX).first([b'1', b'2'])
            }
            Detector::UkNino => Pre::new(9, n, ALNUM | SPACE).need(DIGIT).first(letters()),
            Detector::Imei => Pre::new(15, n, DIGIT | SPACE | ps(b"-/")).need(DIGIT),
            Detector::Mac => Pre::new(14, 17, HEX | ps(b":-.")),
            Detector::MacBare => Pre::new(12, 12, HEX),
            Detector::Ip(_) => Pre::new(2, 45, HEX | ps(b".:")).need(ps(b".:")),
            Detector::GeoPair => Pre::new(5, n, ANY & !(NON_ASCII | CONTROL))
                .need(DIGIT)
                .need(p(b'.')),
            // `f64` parsing takes exponents (`1.5e3`): hex letters cover `e` and `E`.
            Detector::GeoCoord { .. } => Pre::new(4, n, HEX | ps(b".-+")).need(DIGIT).need(p(b'.')),
            Detector::Date { .. } => Pre::new(8, 35, ANY).need(ps(b"-/.")).first(DIGITS),
            Detector::Jwt => Pre::new(20, n, ANY).need(p(b'.')).first([b'e']),
            // `-----BEGIN ` (G, I, N) or `PuTTY-User-Key-File-N: ` (P, T, Y, U, K), each with a
            // space.
            Detector::PemPrivateKey => Pre::new(16, n, ANY)
                .need(p(b'-'))
                .need(UPPER_OTHER)
                .need(SPACE),
            Detector::Prefixed {
                prefixes,
                charset,
                min_len,
                max_len,
            } => {
                let prefix_mask = prefixes.iter().fold(0, |m, x| m | mask_of(x.as_bytes()));
                Pre::new(*min_len, *max_len, charset_mask(*charset) | prefix_mask)
                    .first(prefixes.iter().filter_map(|x| x.bytes().next()))
            }
            Detector::HighEntropy {
                min_len,
                max_len,
                charset,
                ..
            } => Pre::new(*min_len, *max_len, charset_mask(*charset))
                .need(DIGIT)
                .need(LETTER),
            Detector::HexDigest { lengths } => Pre::new(
                lengths.iter().copied().min().unwrap_or(0),
                lengths.iter().copied().max().unwrap_or(0),
                HEX,
            )
            .need(UPPER_HEX | LOWER_HEX),
            Detector::CryptHash => Pre::new(13, 512, ANY).need(ps(b"${:|")),
            Detector::Uuid => Pre::new(36, n, HEX | ps(b"-{}")).need(p(b'-')),
            Detector::ObjectId => Pre::new(24, 24, HEX),
            Detector::IntId => Pre::new(1, 19, DIGIT).first(b'1'..=b'9'),
            Detector::OpaqueId => Pre::new(4, 64, ALNUM | ps(b"-_")).need(DIGIT),
            Detector::Number { .. } => Pre::new(1, 24, DIGIT | ps(b".,-")).need(DIGIT),
            Detector::BloodPressure => {
                Pre::new(3, n, DIGIT | SPACE | WS_OTHER | NON_ASCII | ps(b"/+"))
                    .need(p(b'/'))
                    .need(DIGIT)
            }
            Detector::Icd10 => Pre::new(3, 8, ANY).first(b'A'..=b'Z'),
            Detector::Serial => Pre::new(6, 32, ALNUM | p(b'-')),
            Detector::ProductCode => Pre::new(2, 40, ALNUM | NON_ASCII | SPACE | ps(b"-_./+(),"))
                .need(LETTER | NON_ASCII),
            Detector::Version => Pre::new(3, n, ALNUM | ps(b".-+_~"))
                .need(DIGIT)
                .need(p(b'.')),
            Detector::PersonName => {
                Pre::new(2, 70, LETTER | NON_ASCII | SPACE | ps(b"-'.")).need(LETTER | NON_ASCII)
            }
            Detector::Username => Pre::new(2, 64, ALNUM | ps(b"._-@+")).need(LETTER),
            // A character is at most four bytes.
            Detector::FreeText { max_len, .. } => {
                Pre::new(1, max_len.saturating_mul(4), ANY & !(CONTROL | WS_OTHER))
                    .need(LETTER | NON_ASCII)
                    .first((0..=255u8).filter(|b| !matches!(b, b'{' | b'[' | b'<')))
            }
            Detector::Ssid => {
                Pre::new(1, 32, ANY & !(CONTROL | WS_OTHER)).need(ANY & !(DIGIT | ps(b".-")))
            }
            Detector::StreetAddress { .. } => {
                Pre::new(6, 200, ANY & !p(b'@')).need(LETTER | NON_ASCII)
            }
            Detector::Secret => Pre::new(4, 128, ANY & !(SPACE | WS_OTHER)),
            // Tokens: no white space, letters and digits.
            Detector::SecretRuleset { .. } => {
                Pre::new(8, 4096, ANY & !(SPACE | WS_OTHER | CONTROL))
                    .need(DIGIT)
                    .need(LETTER)
            }
        }
    }

    /// Whether one check costs microseconds rather than nanoseconds (the phone validators
    /// parse with libphonenumber's metadata): such checks are budgeted on large inputs (see
    /// the classify module docs).
    pub fn costly(&self) -> bool {
        matches!(
            self,
            Detector::Phone | Detector::PhoneIntl | Detector::PhoneNational
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Classifier;

    #[test]
    fn classes() {
        assert_eq!(mask_of(b"09"), DIGIT);
        assert_eq!(mask_of(b"aF"), LOWER_HEX | UPPER_HEX);
        assert_eq!(mask_of(b"gZ"), LOWER_OTHER | UPPER_OTHER);
        assert_eq!(mask_of("é".as_bytes()), NON_ASCII);
        assert_eq!(mask_of(b"\t\x01"), WS_OTHER | CONTROL);
        // The 32 punctuation characters have 32 distinct bits above the other classes.
        let punct: Vec<u8> = (0x21..0x7f).filter(u8::is_ascii_punctuation).collect();
        assert_eq!(punct.len(), 32);
        let all = punct.iter().fold(0u64, |m, &c| {
            assert_eq!(m & p(c), 0, "{}", c as char);
            m | p(c)
        });
        assert_eq!(all.count_ones(), 32);
        assert_eq!(all & (NON_ASCII | (NON_ASCII - 1)), 0);
    }

    /// Deterministic pseudo-random strings over the characters detectors look at.
    fn random_values(n: usize) -> Vec<String> {
        const ALPHABET: &[&str] = &[
            "0",
            "1",
            "2",
            "5",
            "9",
            "a",
            "e",
            "f",
            "g",
            "z",
            "A",
            "E",
            "F",
            "G",
            "Z",
            "T",
            " ",
            ".",
            ",",
            "-",
            "_",
            "/",
            ":",
            "@",
            "+",
            "$",
            "{",
            "}",
            "(",
            ")",
            "|",
            "=",
            "'",
            "é",
            "\u{a0}",
            "\t",
            "eyJ",
            "Atza|",
            "ghp_",
            "AKIA",
            "-----BEGIN ",
            "PRIVATE KEY-----",
            "PuTTY-User-Key-File-2: ",
            "X",
            "Y",
            "POINT",
            "00",
            "+39 ",
            ".com",
            "2019-",
            "v",
            "x",
            "[",
            "<",
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        (0..n)
            .map(|_| {
                let len = (next() % 24) as usize + 1;
                let mut s = String::new();
                for _ in 0..len {
                    s.push_str(ALPHABET[(next() % ALPHABET.len() as u64) as usize]);
                }
                s.trim().to_string()
            })
            .filter(|s| !s.is_empty())
            .collect()
    }

    #[test]
    fn the_table_admits_exactly_what_each_prefilter_admits() {
        let c = Classifier::builtin();
        let pres: Vec<Pre> = c.set.detectors.iter().map(Detector::prefilter).collect();
        let table = PreTable::new(pres.clone());
        let mut values = random_values(50_000);
        values.push("x".repeat(LEN_TABLE + 1));
        values.push(format!("-----BEGIN PRIVATE KEY-----{}", "A".repeat(2000)));
        for v in &values {
            let shape = Shape::of(v);
            let want = pres
                .iter()
                .enumerate()
                .filter(|(_, p)| p.admits(&shape))
                .fold(0u128, |set, (i, _)| set | 1 << i);
            assert_eq!(table.admitted(&shape, u128::MAX), want, "{v:?}");
            assert_eq!(
                table.admitted(&shape, want & 0b1010),
                want & 0b1010,
                "{v:?}"
            );
        }
    }

    #[test]
    fn prefilters_never_reject_what_the_detector_accepts() {
        let c = Classifier::builtin();
        let mut values: Vec<String> = random_values(200_000);
        for r in c.rules() {
            for t in &r.tests {
                values.extend(t.values.iter().map(|v| v.trim().to_string()));
            }
        }
        values.extend(
            [
                "+49 30 901820",
                "0044 20 7946 0958",
                "(415) 555-2671",
                "030\u{a0}901820",
                "1.5e1,2.25",
                "POINT(2.3522 48.8566)",
                ".1234",
                "{SSHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
                "{e94180cd-ef88-4a01-b3d8-5ecdd7a393fc}",
                "+120/80",
                "120 / 80",
                "2A 2B 1 85 05",
                "1 85 05 78 006 084 91",
                "a4da.229b.b465",
                "::ffff:1.2.3.4",
                "Jean-Paul d'Arc",
                "Ludwig van Beethoven",
            ]
            .map(String::from),
        );
        values.retain(|v| !v.is_empty());
        let dets = &c.set.detectors;
        let mut passed = 0;
        for d in dets {
            let pre = d.prefilter();
            for v in &values {
                if d.check(v) {
                    passed += 1;
                    assert!(pre.admits(&Shape::of(v)), "{d:?} rejects {v:?}");
                }
            }
        }
        assert!(passed > 100, "the test values exercise the detectors");
    }
}
