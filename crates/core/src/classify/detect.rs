//! Value detectors: Rust functions that the rules file references by id.
//!
//! A detector looks at one sampled value and says whether it has a shape or passes a check:
//! validators with checksums ([`super::checks`]), known token formats, and shapes (dates,
//! versions, free text …). Detectors never decide a category; the rules weigh them against the
//! field's name (see [`super`]). Parameters come from the rules file (`{ id = "number",
//! ranges = [[45, 250]] }`) and are checked when the rules are compiled, so a typo is an error
//! naming the rule rather than a detector that silently never matches.
//!
//! Every detector is cheap on values it rejects (a byte-class pre-check comes first), because
//! most sampled values are not what any given detector looks for.

use std::net::IpAddr;
use std::sync::OnceLock;

use base64::Engine as _;

use super::checks;
use super::shape::{
    self, Shape, ALNUM, CONTROL, DIGIT, HEX, LETTER, LOWER, NON_ASCII, SPACE, UPPER, WS_OTHER,
};

/// Character classes a token may be required to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// `A–Z a–z 0–9 - _`
    Base64Url,
    /// `A–Z a–z 0–9 + / =`
    Base64,
    /// Base64 and base64url together, plus `.`, `~`, `|`, `:` (opaque tokens in the wild).
    Token,
    /// `A–Z a–z 0–9`
    Alnum,
    /// `A–Z 2–7` (base32, AWS key ids)
    UpperBase32,
    /// `A–Z 0–9`
    UpperAlnum,
    /// `0–9 a–f A–F`
    Hex,
}

impl Charset {
    fn parse(s: &str) -> Option<Charset> {
        Some(match s {
            "base64url" => Charset::Base64Url,
            "base64" => Charset::Base64,
            "token" => Charset::Token,
            "alnum" => Charset::Alnum,
            "upper_base32" => Charset::UpperBase32,
            "upper_alnum" => Charset::UpperAlnum,
            "hex" => Charset::Hex,
            _ => return None,
        })
    }

    #[inline]
    fn allows(self, b: u8) -> bool {
        match self {
            Charset::Base64Url => b.is_ascii_alphanumeric() || b == b'-' || b == b'_',
            Charset::Base64 => b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=',
            Charset::Token => {
                b.is_ascii_alphanumeric()
                    || matches!(
                        b,
                        b'-' | b'_' | b'+' | b'/' | b'=' | b'.' | b'~' | b'|' | b':'
                    )
            }
            Charset::Alnum => b.is_ascii_alphanumeric(),
            Charset::UpperBase32 => b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b),
            Charset::UpperAlnum => b.is_ascii_uppercase() || b.is_ascii_digit(),
            Charset::Hex => b.is_ascii_hexdigit(),
        }
    }
}

/// Which IP addresses an `ip` detector accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpScope {
    Public,
    Private,
    Any,
}

/// A compiled detector with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Detector {
    Email,
    /// International format (`+` or `00` and a country code), valid for its country.
    PhoneIntl,
    /// A national format valid in one of the usual regions (US, GB, DE, FR, IT, ES …).
    PhoneNational,
    /// Either of the two.
    Phone,
    Card,
    Iban,
    CodiceFiscale,
    UsSsn,
    EsDni,
    FrNir,
    UkNino,
    Imei,
    /// `AA:BB:CC:DD:EE:FF`, `AA-BB-…`, `aabb.ccdd.eeff`; unicast, not all zero.
    Mac,
    /// Twelve hex digits without separators (only meaningful with a name).
    MacBare,
    Ip(IpScope),
    /// `lat,lon` / `lat lon` / `POINT(lon lat)`.
    GeoPair,
    /// One coordinate with at least three decimals within ±`max`.
    GeoCoord {
        max: f64,
    },
    Date {
        birth: bool,
    },
    Jwt,
    PemPrivateKey,
    /// A known token format: one of `prefixes`, then a body in `charset`, total length in
    /// `len`.
    Prefixed {
        prefixes: Vec<String>,
        charset: Charset,
        min_len: usize,
        max_len: usize,
    },
    /// A random-looking token: length, character set and Shannon entropy per character.
    HighEntropy {
        min_len: usize,
        max_len: usize,
        charset: Charset,
        min_entropy: f64,
    },
    /// Hex digests of the given lengths (32 MD5, 40 SHA-1, 64 SHA-256 …).
    HexDigest {
        lengths: Vec<usize>,
    },
    /// Password hash formats: bcrypt, argon2, scrypt, sha-crypt, md5-crypt, PBKDF2 (Django and
    /// passlib), yescrypt, LDAP `{SSHA}`.
    CryptHash,
    Uuid,
    /// MongoDB ObjectId: 24 hex digits whose first 8 are a plausible creation time.
    ObjectId,
    /// A positive integer id.
    IntId,
    /// An opaque identifier: 4–64 of `[A-Za-z0-9_-]` with at least one digit.
    OpaqueId,
    /// A number within one of the ranges (decimal point or comma).
    Number {
        ranges: Vec<(f64, f64)>,
    },
    /// `120/80` with plausible systolic and diastolic values.
    BloodPressure,
    Icd10,
    /// Device serial: 6–32 of `[A-Z0-9-]`, digits and letters mixed (or long).
    Serial,
    /// Short product designation: a letter, at most four words, no sentence punctuation.
    ProductCode,
    /// Dotted numeric version `4.36.3.5711`, `v2.1.0-beta`.
    Version,
    PersonName,
    Username,
    /// Short free text with at least one letter (`max_len` chars, `max_words` words).
    FreeText {
        max_len: usize,
        max_words: usize,
    },
    /// An SSID: 1–32 bytes, not only digits.
    Ssid,
    /// A postal address: words and a number, or a street-type word from `keywords`.
    StreetAddress {
        keywords: Vec<String>,
    },
    /// Something a password could be: 4–128 visible characters, no spaces, not a boolean,
    /// date or small number.
    Secret,
    /// A vendor token format of the secret ruleset ([`super::secrets`]): the rules selected
    /// by id prefix (`only`, `except`), as bits over the ruleset's rules.
    SecretRuleset {
        allowed: Vec<u64>,
    },
}

/// The ids accepted in the rules file, for error messages.
pub const DETECTOR_IDS: &[&str] = &[
    "email",
    "phone_intl",
    "phone_national",
    "phone",
    "card",
    "iban",
    "codice_fiscale",
    "us_ssn",
    "es_dni",
    "fr_nir",
    "uk_nino",
    "imei",
    "mac",
    "mac_bare",
    "ip",
    "geo_pair",
    "geo_coord",
    "date",
    "jwt",
    "pem_private_key",
    "prefixed",
    "high_entropy",
    "hex_digest",
    "crypt_hash",
    "uuid",
    "object_id",
    "int_id",
    "opaque_id",
    "number",
    "blood_pressure",
    "icd10",
    "serial",
    "product_code",
    "version",
    "person_name",
    "username",
    "free_text",
    "ssid",
    "street_address",
    "secret",
    "secret_ruleset",
];

/// Builds a detector from its id and parameter table. Errors are plain text; the caller
/// names the rule.
pub fn compile(id: &str, params: &toml::Table) -> Result<Detector, String> {
    let mut p = Params {
        table: params,
        used: vec!["id", "weight", "minority"],
    };
    let d = match id {
        "email" => Detector::Email,
        "phone_intl" => Detector::PhoneIntl,
        "phone_national" => Detector::PhoneNational,
        "phone" => Detector::Phone,
        "card" => Detector::Card,
        "iban" => Detector::Iban,
        "codice_fiscale" => Detector::CodiceFiscale,
        "us_ssn" => Detector::UsSsn,
        "es_dni" => Detector::EsDni,
        "fr_nir" => Detector::FrNir,
        "uk_nino" => Detector::UkNino,
        "imei" => Detector::Imei,
        "mac" => Detector::Mac,
        "mac_bare" => Detector::MacBare,
        "ip" => Detector::Ip(match p.str("scope")?.as_deref().unwrap_or("any") {
            "public" => IpScope::Public,
            "private" => IpScope::Private,
            "any" => IpScope::Any,
            other => return Err(format!("ip scope {other:?} is not public, private or any")),
        }),
        "geo_pair" => Detector::GeoPair,
        "geo_coord" => Detector::GeoCoord {
            max: p.float("max")?.unwrap_or(180.0),
        },
        "date" => Detector::Date {
            birth: p.bool("birth")?.unwrap_or(false),
        },
        "jwt" => Detector::Jwt,
        "pem_private_key" => Detector::PemPrivateKey,
        "prefixed" => {
            let prefixes = p.strings("prefixes")?.ok_or("prefixed needs prefixes")?;
            if prefixes.is_empty() || prefixes.iter().any(String::is_empty) {
                return Err("prefixes must be non-empty strings".into());
            }
            let (min_len, max_len) = p.len_range("len")?.unwrap_or((16, 1024));
            Detector::Prefixed {
                prefixes,
                charset: p.charset("charset")?.unwrap_or(Charset::Token),
                min_len,
                max_len,
            }
        }
        "high_entropy" => {
            let (min_len, max_len) = p.len_range("len")?.unwrap_or((20, 512));
            Detector::HighEntropy {
                min_len,
                max_len,
                charset: p.charset("charset")?.unwrap_or(Charset::Token),
                min_entropy: p.float("min_entropy")?.unwrap_or(3.5),
            }
        }
        "hex_digest" => Detector::HexDigest {
            lengths: p
                .ints("lengths")?
                .unwrap_or_else(|| vec![32, 40, 56, 64, 96, 128]),
        },
        "crypt_hash" => Detector::CryptHash,
        "uuid" => Detector::Uuid,
        "object_id" => Detector::ObjectId,
        "int_id" => Detector::IntId,
        "opaque_id" => Detector::OpaqueId,
        "number" => {
            let ranges = p.ranges("ranges")?.ok_or("number needs ranges")?;
            if ranges.is_empty() || ranges.iter().any(|(a, b)| a > b) {
                return Err("ranges must be non-empty [min, max] pairs with min <= max".into());
            }
            Detector::Number { ranges }
        }
        "blood_pressure" => Detector::BloodPressure,
        "icd10" => Detector::Icd10,
        "serial" => Detector::Serial,
        "product_code" => Detector::ProductCode,
        "version" => Detector::Version,
        "person_name" => Detector::PersonName,
        "username" => Detector::Username,
        "free_text" => Detector::FreeText {
            max_len: p.int("max_len")?.unwrap_or(64),
            max_words: p.int("max_words")?.unwrap_or(6),
        },
        "ssid" => Detector::Ssid,
        "street_address" => Detector::StreetAddress {
            keywords: p
                .strings("keywords")?
                .unwrap_or_default()
                .iter()
                .map(|k| super::words::fold(k))
                .collect(),
        },
        "secret" => Detector::Secret,
        "secret_ruleset" => {
            let only = p.strings("only")?.unwrap_or_default();
            let except = p.strings("except")?.unwrap_or_default();
            Detector::SecretRuleset {
                allowed: super::secrets::SecretRules::builtin().select(&only, &except),
            }
        }
        other => {
            return Err(format!(
                "unknown detector {other:?} (known: {})",
                DETECTOR_IDS.join(", ")
            ))
        }
    };
    p.finish()?;
    Ok(d)
}

/// Typed access to a detector's parameters, remembering which were read so unknown ones are
/// reported.
struct Params<'a> {
    table: &'a toml::Table,
    used: Vec<&'static str>,
}

impl Params<'_> {
    fn get(&mut self, key: &'static str) -> Option<&toml::Value> {
        self.used.push(key);
        self.table.get(key)
    }

    fn str(&mut self, key: &'static str) -> Result<Option<String>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(format!("{key} must be a string, not {}", v.type_str())),
        }
    }

    fn bool(&mut self, key: &'static str) -> Result<Option<bool>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(toml::Value::Boolean(b)) => Ok(Some(*b)),
            Some(v) => Err(format!("{key} must be a boolean, not {}", v.type_str())),
        }
    }

    fn float(&mut self, key: &'static str) -> Result<Option<f64>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => num(v).map(Some).ok_or(format!("{key} must be a number")),
        }
    }

    fn int(&mut self, key: &'static str) -> Result<Option<usize>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(toml::Value::Integer(i)) if *i >= 0 => Ok(Some(*i as usize)),
            Some(_) => Err(format!("{key} must be a non-negative integer")),
        }
    }

    fn strings(&mut self, key: &'static str) -> Result<Option<Vec<String>>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(toml::Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or(format!("{key} must be a list of strings")),
            Some(_) => Err(format!("{key} must be a list of strings")),
        }
    }

    fn ints(&mut self, key: &'static str) -> Result<Option<Vec<usize>>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(toml::Value::Array(a)) => a
                .iter()
                .map(|v| v.as_integer().filter(|i| *i > 0).map(|i| i as usize))
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or(format!("{key} must be a list of positive integers")),
            Some(_) => Err(format!("{key} must be a list of positive integers")),
        }
    }

    fn len_range(&mut self, key: &'static str) -> Result<Option<(usize, usize)>, String> {
        match self.ints(key)? {
            None => Ok(None),
            Some(v) if v.len() == 2 && v[0] <= v[1] => Ok(Some((v[0], v[1]))),
            Some(_) => Err(format!("{key} must be [min, max] with min <= max")),
        }
    }

    fn ranges(&mut self, key: &'static str) -> Result<Option<Vec<(f64, f64)>>, String> {
        let bad = || format!("{key} must be a list of [min, max] number pairs");
        match self.get(key) {
            None => Ok(None),
            Some(toml::Value::Array(a)) => {
                let mut out = Vec::new();
                for pair in a {
                    let pair = pair.as_array().ok_or_else(bad)?;
                    if pair.len() != 2 {
                        return Err(bad());
                    }
                    out.push((
                        num(&pair[0]).ok_or_else(bad)?,
                        num(&pair[1]).ok_or_else(bad)?,
                    ));
                }
                Ok(Some(out))
            }
            Some(_) => Err(bad()),
        }
    }

    fn charset(&mut self, key: &'static str) -> Result<Option<Charset>, String> {
        match self.str(key)? {
            None => Ok(None),
            Some(s) => Charset::parse(&s).map(Some).ok_or(format!(
                "charset {s:?} is not one of base64url, base64, token, alnum, upper_base32, \
                 upper_alnum, hex"
            )),
        }
    }

    fn finish(self) -> Result<(), String> {
        for k in self.table.keys() {
            if !self.used.contains(&k.as_str()) {
                return Err(format!("unknown parameter {k:?}"));
            }
        }
        Ok(())
    }
}

fn num(v: &toml::Value) -> Option<f64> {
    match v {
        toml::Value::Integer(i) => Some(*i as f64),
        toml::Value::Float(f) => Some(*f),
        _ => None,
    }
}

impl Detector {
    /// Whether one value (already trimmed, non-empty) passes.
    pub fn check(&self, v: &str) -> bool {
        self.check_shaped(v, &Shape::of(v))
    }

    /// [`Detector::check`] with the value's [`Shape`] already computed (the prefilter's): tests
    /// of which characters a value uses are then tests of its class mask, not passes over it.
    pub fn check_shaped(&self, v: &str, s: &Shape) -> bool {
        let m = s.mask;
        match self {
            Detector::Email => email(v),
            Detector::PhoneIntl => phone_intl(v),
            Detector::PhoneNational => phone_national(v),
            Detector::Phone => phone_intl(v) || phone_national(v),
            Detector::Card => checks::card_number(v),
            Detector::Iban => checks::iban(v),
            Detector::CodiceFiscale => checks::codice_fiscale(v),
            Detector::UsSsn => checks::us_ssn(v),
            Detector::EsDni => checks::es_dni(v),
            Detector::FrNir => checks::fr_nir(v),
            Detector::UkNino => checks::uk_nino(v),
            Detector::Imei => checks::imei(v),
            Detector::Mac => mac(v),
            Detector::MacBare => {
                v.len() == 12 && m & !HEX == 0 && {
                    let first = u8::from_str_radix(&v[..2], 16).unwrap_or(1);
                    first & 1 == 0 && v.bytes().any(|b| b != b'0')
                }
            }
            Detector::Ip(scope) => ip(v, *scope),
            Detector::GeoPair => geo_pair(v),
            Detector::GeoCoord { max } => geo_coord(v, *max),
            Detector::Date { birth } => match parse_date(v) {
                Some(d) if *birth => d.midnight && d.year >= 1900 && d.year <= current_year(),
                Some(_) => true,
                None => false,
            },
            Detector::Jwt => jwt(v),
            Detector::PemPrivateKey => pem_private_key(v),
            Detector::Prefixed {
                prefixes,
                charset,
                min_len,
                max_len,
            } => {
                (*min_len..=*max_len).contains(&v.len())
                    && prefixes.iter().any(|p| {
                        v.starts_with(p.as_str()) && all_in(*charset, &v.as_bytes()[p.len()..])
                    })
            }
            Detector::HighEntropy {
                min_len,
                max_len,
                charset,
                min_entropy,
            } => {
                (*min_len..=*max_len).contains(&v.len())
                    && match charset {
                        Charset::UpperBase32 => all_in(*charset, v.as_bytes()),
                        _ => m & !shape::charset_mask(*charset) == 0,
                    }
                    && m & DIGIT != 0
                    && m & LETTER != 0
                    && entropy(v) >= *min_entropy
            }
            Detector::HexDigest { lengths } => {
                lengths.contains(&v.len()) && m & !HEX == 0 && m & LETTER != 0
            }
            Detector::CryptHash => crypt_hash(v),
            Detector::Uuid => uuid(v, m),
            Detector::ObjectId => object_id(v),
            Detector::IntId => v.len() <= 19 && m & !DIGIT == 0 && !v.starts_with('0'),
            Detector::OpaqueId => {
                (4..=64).contains(&v.len())
                    && m & !(ALNUM | shape::ps(b"-_")) == 0
                    && m & DIGIT != 0
            }
            Detector::Number { ranges } => match parse_number(v) {
                Some(x) => ranges.iter().any(|(a, b)| x >= *a && x <= *b),
                None => false,
            },
            Detector::BloodPressure => blood_pressure(v),
            Detector::Icd10 => icd10(v),
            Detector::Serial => serial(v, m),
            Detector::ProductCode => product_code(v, m),
            Detector::Version => version(v),
            Detector::PersonName => person_name(v),
            Detector::Username => {
                !boolean_word(v)
                    && (2..=64).contains(&v.len())
                    && m & !(ALNUM | shape::ps(b"._-@+")) == 0
                    && m & LETTER != 0
            }
            Detector::FreeText { max_len, max_words } => free_text(v, m, *max_len, *max_words),
            Detector::Ssid => {
                !v.is_empty()
                    && v.len() <= 32
                    && !v
                        .bytes()
                        .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
                    && !v.chars().any(char::is_control)
            }
            Detector::StreetAddress { keywords } => street_address(v, keywords),
            Detector::Secret => secret(v),
            Detector::SecretRuleset { allowed } => super::secrets::SecretRules::builtin()
                .first_match(v, allowed)
                .is_some(),
        }
    }
}

/// A flag's written value (`true`, `off`, `yes` …): not a name, not text.
fn boolean_word(v: &str) -> bool {
    v.len() <= 5
        && matches!(
            v.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "t" | "f" | "y" | "n"
        )
}

/// Shannon entropy in bits per character.
pub fn entropy(s: &str) -> f64 {
    // `−Σ p·log2 p` = `log2 n − Σ c·log2 c / n`. `Σ c·log2 c` over the distinct bytes is the
    // sum of `log2 c` over every byte (a byte seen c times adds its `log2 c` c times), taken
    // from a table in 32.32 fixed point: one logarithm per value and integer additions that
    // do not wait on each other as floating-point ones do. Rounding moves the result by less
    // than 2e-10 bit (half a unit per byte, divided by the length). This runs on every
    // token-shaped value.
    const ONE: f64 = (1u64 << 32) as f64;
    /// Longest value summed from [`C_LOG_C`] (its table is 32 KiB).
    const LONG: usize = 4096;
    static LOG2: OnceLock<[u64; 256]> = OnceLock::new();
    static C_LOG_C: OnceLock<Vec<u64>> = OnceLock::new();
    if s.is_empty() {
        return 0.0;
    }
    let n = s.len() as f64;
    if s.len() < 256 {
        let table = LOG2.get_or_init(|| {
            let mut t = [0; 256];
            for (c, x) in t.iter_mut().enumerate().skip(1) {
                *x = ((c as f64).log2() * ONE).round() as u64;
            }
            t
        });
        // Counters fit a byte: fewer than 256 bytes.
        let mut counts = [0u8; 256];
        for b in s.bytes() {
            counts[b as usize] += 1;
        }
        let fixed: u64 = s.bytes().map(|b| table[counts[b as usize] as usize]).sum();
        return (n.log2() - fixed as f64 / ONE / n).max(0.0);
    }
    if s.len() <= LONG {
        // Longer tokens (OAuth refresh tokens run to hundreds of bytes): `c·log2 c` per
        // distinct byte from a second table, summed over the 256 counters.
        let table = C_LOG_C.get_or_init(|| {
            (0..=LONG)
                .map(|c| match c {
                    0 => 0,
                    c => (c as f64 * (c as f64).log2() * ONE).round() as u64,
                })
                .collect()
        });
        let mut counts = [0u16; 256];
        for b in s.bytes() {
            counts[b as usize] += 1;
        }
        let fixed: u64 = counts.iter().map(|&c| table[c as usize]).sum();
        return (n.log2() - fixed as f64 / ONE / n).max(0.0);
    }
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        counts[b as usize] += 1;
    }
    let sum: f64 = counts
        .iter()
        .filter(|&&c| c > 1)
        .map(|&c| c as f64 * (c as f64).log2())
        .sum();
    (n.log2() - sum / n).max(0.0)
}

/// Whether every byte of `bytes` is in `charset`: one pass of byte-class lookups.
fn all_in(charset: Charset, bytes: &[u8]) -> bool {
    match charset {
        Charset::UpperBase32 => bytes.iter().all(|&b| charset.allows(b)),
        _ => super::shape::mask_of(bytes) & !super::shape::charset_mask(charset) == 0,
    }
}

/// Generic top-level domains accepted besides all two-letter country codes. The list is
/// deliberately the common ones: an e-mail-shaped value under `.png` or `.local` is not a
/// deliverable address.
const GENERIC_TLDS: &[&str] = &[
    "com",
    "net",
    "org",
    "edu",
    "gov",
    "mil",
    "int",
    "info",
    "biz",
    "name",
    "pro",
    "mobi",
    "app",
    "dev",
    "io",
    "ai",
    "cloud",
    "online",
    "site",
    "tech",
    "store",
    "shop",
    "email",
    "mail",
    "xyz",
    "club",
    "blog",
    "news",
    "live",
    "life",
    "world",
    "today",
    "digital",
    "agency",
    "company",
    "services",
    "solutions",
    "network",
    "systems",
    "studio",
    "design",
    "media",
    "group",
    "email",
    "family",
    "travel",
    "museum",
    "aero",
    "coop",
    "asia",
    "cat",
    "eus",
    "gal",
    "bzh",
    "swiss",
    "berlin",
    "hamburg",
    "paris",
    "london",
    "nyc",
    "madrid",
    "barcelona",
    "wien",
    "koeln",
    "ovh",
    "team",
    "work",
    "space",
    "website",
    "host",
    "page",
    "link",
    "me",
    "global",
    "center",
    "cafe",
];

/// An e-mail address: a local part of the usual characters, an `@`, a domain of valid labels
/// and a real top-level domain.
/// Bytes allowed in an e-mail's local part (RFC 5322 atext and `.`, or UTF-8 as in RFC 6531).
const EMAIL_LOCAL: [bool; 256] = byte_table(b"._%+-!#$&'*/=?^`{|}~");
/// Bytes allowed in a domain label (letters, digits, `-`, or UTF-8).
const EMAIL_LABEL: [bool; 256] = byte_table(b"-");

/// ASCII letters and digits, bytes of non-ASCII characters, and `extra`.
const fn byte_table(extra: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || b >= 0x80;
        i += 1;
    }
    let mut j = 0;
    while j < extra.len() {
        t[extra[j] as usize] = true;
        j += 1;
    }
    t
}

pub fn email(v: &str) -> bool {
    if v.len() > 254 || v.len() < 6 {
        return false;
    }
    let Some((local, domain)) = v.rsplit_once('@') else {
        return false;
    };
    // One pass per part (this runs on every e-mail-shaped value): allowed bytes, no `..` in
    // the local part, labels of 1 to 63 bytes that neither start nor end with `-`.
    let lb = local.as_bytes();
    if lb.is_empty() || lb.len() > 64 || lb[0] == b'.' || lb[lb.len() - 1] == b'.' {
        return false;
    }
    let mut prev = 0u8;
    for &b in lb {
        if !EMAIL_LOCAL[b as usize] || (b == b'.' && prev == b'.') {
            return false;
        }
        prev = b;
    }
    let db = domain.as_bytes();
    let (mut labels, mut start) = (0, 0);
    for i in 0..=db.len() {
        if i < db.len() && db[i] != b'.' {
            if !EMAIL_LABEL[db[i] as usize] {
                return false;
            }
            continue;
        }
        let label = &db[start..i];
        if label.is_empty()
            || label.len() > 63
            || label[0] == b'-'
            || label[label.len() - 1] == b'-'
        {
            return false;
        }
        labels += 1;
        start = i + 1;
    }
    if labels < 2 {
        return false;
    }
    let tld = &domain[domain.rfind('.').map_or(0, |i| i + 1)..];
    // Compared without lower-casing into a new string.
    (tld.len() == 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()))
        || GENERIC_TLDS.iter().any(|g| g.eq_ignore_ascii_case(tld))
        || tld.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("xn--"))
}

/// Characters allowed in a written phone number besides digits.
fn phone_chars_ok(v: &str) -> Option<usize> {
    let mut digits = 0;
    for c in v.chars() {
        match c {
            '0'..='9' => digits += 1,
            ' ' | '-' | '.' | '(' | ')' | '/' | '+' | '\u{a0}' => {}
            _ => return None,
        }
    }
    (7..=15).contains(&digits).then_some(digits)
}

fn phone_intl(v: &str) -> bool {
    let t = v.trim();
    let intl = t.starts_with('+') || t.starts_with("00");
    if !intl || phone_chars_ok(t).is_none() || t[1..].contains('+') {
        return false;
    }
    let t = match t.strip_prefix("00") {
        Some(rest) => format!("+{rest}"),
        None => t.to_string(),
    };
    let util = &*rlibphonenumber::PHONE_NUMBER_UTIL;
    util.parse(&t, None).is_ok_and(|n| util.is_valid_number(&n))
}

/// Regions tried for numbers written without a country code: the markets the product is
/// built for. A national number valid in one of them is accepted.
const NATIONAL_REGIONS: &[rlibphonenumber::Region] = {
    use rlibphonenumber::Region::*;
    &[US, GB, DE, FR, IT, ES, NL, BE, AT, CH, PT, IE, CA]
};

fn phone_national(v: &str) -> bool {
    let t = v.trim();
    if t.starts_with('+') || phone_chars_ok(t).is_none() || parse_date(t).is_some() {
        return false;
    }
    // Dotted groups of one digit are versions or addresses (`4.36.3.5711`), not numbers.
    if t.contains('.') && t.split('.').any(|g| g.trim().len() < 2) {
        return false;
    }
    // A run of digits without any grouping and without a trunk prefix is more often an id
    // than a phone number; written numbers are grouped or start with 0.
    let grouped = t.contains([' ', '-', '.', '(', '/']);
    if !grouped && !t.starts_with('0') {
        return false;
    }
    let util = &*rlibphonenumber::PHONE_NUMBER_UTIL;
    NATIONAL_REGIONS.iter().any(|&r| {
        util.parse(t, Some(r))
            .is_ok_and(|n| util.is_valid_number(&n))
    })
}

fn mac(v: &str) -> bool {
    fn hex(c: u8) -> Option<u8> {
        (c as char).to_digit(16).map(|d| d as u8)
    }
    let b = v.as_bytes();
    // Where the twelve hex digits stand: `aa:bb:cc:dd:ee:ff` / `aa-bb-…`, or Cisco style
    // `aabb.ccdd.eeff`; every other position must hold the separator.
    let (digits, sep): ([usize; 12], u8) = match b.len() {
        17 if b[2] == b':' || b[2] == b'-' => ([0, 1, 3, 4, 6, 7, 9, 10, 12, 13, 15, 16], b[2]),
        14 => ([0, 1, 2, 3, 5, 6, 7, 8, 10, 11, 12, 13], b'.'),
        _ => return false,
    };
    let mut octets = [0u8; 6];
    let mut at = 0;
    for (i, &c) in b.iter().enumerate() {
        if digits.get(at) == Some(&i) {
            let Some(d) = hex(c) else { return false };
            octets[at / 2] = octets[at / 2] << 4 | d;
            at += 1;
        } else if c != sep {
            return false;
        }
    }
    octets[0] & 1 == 0 && octets.iter().any(|&o| o != 0)
}

fn ip(v: &str, scope: IpScope) -> bool {
    if v.len() > 45 || !v.bytes().any(|b| b == b'.' || b == b':') {
        return false;
    }
    let Ok(addr) = v.parse::<IpAddr>() else {
        return false;
    };
    let public = match addr {
        IpAddr::V4(a) => {
            !(a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_documentation()
                || a.is_multicast()
                || a.octets()[0] == 0
                || (a.octets()[0] == 100 && (64..128).contains(&a.octets()[1])))
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            !(a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8))
        }
    };
    match scope {
        IpScope::Public => public,
        IpScope::Private => !public,
        IpScope::Any => true,
    }
}

fn decimals(s: &str) -> usize {
    s.split_once('.').map_or(0, |(_, d)| d.len())
}

fn geo_coord(v: &str, max: f64) -> bool {
    let t = v.trim();
    decimals(t) >= 3 && t.parse::<f64>().is_ok_and(|x| x.abs() <= max && x != 0.0)
}

fn geo_pair(v: &str) -> bool {
    let t = v.trim();
    let inner = t
        .strip_prefix("POINT")
        .map(|r| r.trim().trim_start_matches('(').trim_end_matches(')'))
        .unwrap_or(t);
    let parts: Vec<&str> = inner
        .split([',', ' ', ';'])
        .filter(|s| !s.is_empty())
        .collect();
    if parts.len() != 2 {
        return false;
    }
    let (a, b) = (parts[0], parts[1]);
    let (Ok(x), Ok(y)) = (a.parse::<f64>(), b.parse::<f64>()) else {
        return false;
    };
    decimals(a) >= 2
        && decimals(b) >= 2
        && ((x.abs() <= 90.0 && y.abs() <= 180.0) || (y.abs() <= 90.0 && x.abs() <= 180.0))
}

/// A parsed calendar date.
pub struct Date {
    pub year: i32,
    pub month: u32,
    pub day: u32,
    /// No time part, or a time of exactly midnight.
    pub midnight: bool,
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

/// Parses `YYYY-MM-DD`, `YYYY/MM/DD`, `DD/MM/YYYY`, `DD.MM.YYYY`, `DD-MM-YYYY`, `MM/DD/YYYY`
/// with an optional time part.
pub fn parse_date(v: &str) -> Option<Date> {
    let t = v.trim();
    if t.len() < 8 || t.len() > 35 {
        return None;
    }
    let (date, time) = match t.find(['T', ' ']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let parts: Vec<&str> = date.split(['-', '/', '.']).collect();
    if parts.len() != 3 || !parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let n: Vec<u32> = parts.iter().map(|p| p.parse().unwrap_or(0)).collect();
    let (y, m, d) = if parts[0].len() == 4 {
        (n[0] as i32, n[1], n[2])
    } else if parts[2].len() == 4 {
        if n[1] > 12 {
            (n[2] as i32, n[0], n[1])
        } else {
            (n[2] as i32, n[1], n[0])
        }
    } else {
        return None;
    };
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) || !(1000..=2999).contains(&y) {
        return None;
    }
    let midnight = match time {
        None => true,
        Some(tm) => {
            let digits: String = tm.chars().take_while(|c| *c != '+' && *c != 'Z').collect();
            digits
                .chars()
                .filter(|c| c.is_ascii_digit())
                .all(|c| c == '0')
        }
    };
    Some(Date {
        year: y,
        month: m,
        day: d,
        midnight,
    })
}

fn current_year() -> i32 {
    static YEAR: OnceLock<i32> = OnceLock::new();
    *YEAR.get_or_init(|| {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        1970 + (secs / 31_556_952) as i32
    })
}

fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

/// A JSON Web Token (JWS or JWE compact form): the first segment decodes to a JSON object with
/// an `alg`, and a second segment follows. Values cut at the sampling cap still qualify.
pub fn jwt(v: &str) -> bool {
    if !v.starts_with("eyJ") || v.len() < 20 {
        return false;
    }
    let mut parts = v.split('.');
    let header = parts.next().unwrap_or("");
    let Some(payload) = parts.next() else {
        return false;
    };
    if payload.is_empty() || header.len() > 2048 {
        return false;
    }
    let Some(bytes) = b64url_decode(header) else {
        return false;
    };
    matches!(
        serde_json::from_slice::<serde_json::Value>(&bytes),
        Ok(serde_json::Value::Object(m)) if m.get("alg").is_some_and(|a| a.is_string())
    )
}

/// The algorithm named in a JWT header (for masked examples).
pub fn jwt_alg(v: &str) -> Option<String> {
    let header = v.split('.').next()?;
    let bytes = b64url_decode(header)?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let alg = json.get("alg")?.as_str()?;
    (alg.len() <= 10 && alg.bytes().all(|b| b.is_ascii_alphanumeric())).then(|| alg.to_string())
}

fn pem_private_key(v: &str) -> bool {
    // At each dash rather than a substring search: most values that get here hold few dashes.
    let b = v.as_bytes();
    let Some(i) = memchr::memchr_iter(b'-', b).find(|&i| b[i..].starts_with(b"-----BEGIN ")) else {
        // A PuTTY key file's first line: `PuTTY-User-Key-File-3: ssh-ed25519`.
        return v
            .strip_prefix("PuTTY-User-Key-File-")
            .and_then(|r| r.split_once(": "))
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    };
    let rest = &v[i + 11..];
    let Some(end) = rest.find("-----") else {
        return false;
    };
    let label = &rest[..end];
    label.ends_with("PRIVATE KEY") || label == "PGP PRIVATE KEY BLOCK"
}

fn crypt_chars(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
}

fn b64_chars(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
}

/// A salted digest written `digest:salt` or `digest:salt:version` (Magento, osCommerce,
/// many PHP applications): 32 to 128 hex digits, a salt of 2 to 64 token characters, a small
/// version number.
fn colon_salted(v: &str) -> bool {
    let mut parts = v.split(':');
    let (Some(h), Some(salt)) = (parts.next(), parts.next()) else {
        return false;
    };
    let version_ok = match parts.next() {
        None => true,
        Some(n) => (1..=2).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()),
    };
    version_ok
        && parts.next().is_none()
        && matches!(h.len(), 32 | 40 | 64 | 128)
        && h.bytes().all(|b| b.is_ascii_hexdigit())
        && (2..=64).contains(&salt.len())
        && salt
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"./+=_-".contains(&b))
}

/// Formats of stored password hashes (modular crypt and friends): bcrypt, argon2, scrypt,
/// yescrypt, sha-crypt, md5-crypt, phpass (`$P$`, `$H$`, WordPress and phpBB), Drupal 7
/// (`$S$`), WordPress 6.8 (`$wp$2y$`), Django's `algorithm$…` forms, LDAP `{SSHA}`, a
/// version prefix (`3|$argon2id$…`, Nextcloud) and `digest:salt[:version]`.
pub fn crypt_hash(v: &str) -> bool {
    if v.len() < 13 || v.len() > 512 {
        return false;
    }
    // Decided on the first bytes for most values (time stamps have colons too).
    let b = v.as_bytes();
    match b[0] {
        b'$' | b'{' => {}
        b'0'..=b'9' if b[1] == b'|' || b[2] == b'|' => {}
        c if c.is_ascii_hexdigit()
            && [32, 40, 64, 128].iter().any(|&n| b.get(n) == Some(&b':')) =>
        {
            return colon_salted(v);
        }
        b'a'..=b'z' => {}
        _ => return false,
    }
    // A scheme version before a bar.
    if let Some((n, rest)) = v.split_once('|') {
        return (1..=2).contains(&n.len())
            && n.bytes().all(|b| b.is_ascii_digit())
            && rest.starts_with('$')
            && crypt_hash(rest);
    }
    if let Some(rest) = v.strip_prefix("$wp") {
        return rest.starts_with('$') && crypt_hash(rest);
    }
    // Portable PHP hashes: `$P$`/`$H$`/`$S$`, an iteration character, 8 salt characters and
    // the digest (22 for MD5, 43 for Drupal's SHA-512).
    if let Some(rest) = v
        .strip_prefix("$P$")
        .or_else(|| v.strip_prefix("$H$"))
        .or_else(|| v.strip_prefix("$S$"))
    {
        return matches!(rest.len(), 31 | 52) && crypt_chars(rest);
    }
    if v.contains(':') && !v.contains('$') {
        return colon_salted(v);
    }
    if let Some(rest) = v.strip_prefix('{') {
        // LDAP {SSHA}, {SHA}, {SSHA512}, {CRYPT}…
        let Some((scheme, body)) = rest.split_once('}') else {
            return false;
        };
        return matches!(
            scheme.to_ascii_uppercase().as_str(),
            "SHA" | "SSHA" | "SHA256" | "SSHA256" | "SHA512" | "SSHA512" | "MD5" | "SMD5"
        ) && b64_chars(body);
    }
    if let Some((algo, rest)) = v.split_once('$') {
        // Django: pbkdf2_sha256$iterations$salt$hash, argon2$argon2id$…, bcrypt_sha256$$2b$…
        if algo.starts_with("pbkdf2_") {
            let p: Vec<&str> = rest.split('$').collect();
            return p.len() == 3 && p[0].bytes().all(|b| b.is_ascii_digit()) && b64_chars(p[2]);
        }
        if algo == "argon2" || algo == "bcrypt_sha256" {
            return rest.starts_with('$') || rest.starts_with("argon2");
        }
        // Django: scrypt$work$salt$block$parallel$hash, sha1$salt$hash, md5$salt$hash.
        if algo == "scrypt" {
            let p: Vec<&str> = rest.split('$').collect();
            return p.len() == 5 && p[0].bytes().all(|b| b.is_ascii_digit()) && b64_chars(p[4]);
        }
        if algo == "sha1" || algo == "md5" {
            let p: Vec<&str> = rest.split('$').collect();
            return p.len() == 2
                && !p[0].is_empty()
                && matches!(p[1].len(), 32 | 40)
                && p[1].bytes().all(|b| b.is_ascii_hexdigit());
        }
        if !algo.is_empty() {
            return false;
        }
    }
    let parts: Vec<&str> = v.split('$').collect();
    // parts[0] is empty for "$id$…"
    if parts.len() < 3 || !parts[0].is_empty() {
        return false;
    }
    match parts[1] {
        "2" | "2a" | "2b" | "2x" | "2y" => {
            parts.len() == 4
                && parts[2].len() == 2
                && parts[2].bytes().all(|b| b.is_ascii_digit())
                && parts[3].len() == 53
                && crypt_chars(parts[3])
        }
        "argon2i" | "argon2d" | "argon2id" => {
            parts.len() >= 5
                && parts.iter().any(|p| p.starts_with("m="))
                && b64_chars(parts[parts.len() - 1])
        }
        "1" | "apr1" => parts.len() == 4 && parts[3].len() == 22 && crypt_chars(parts[3]),
        "5" | "6" => {
            let hash = parts[parts.len() - 1];
            (4..=5).contains(&parts.len()) && (43..=86).contains(&hash.len()) && crypt_chars(hash)
        }
        "y" | "7" | "scrypt" | "gy" => parts.len() >= 4 && crypt_chars(parts[parts.len() - 1]),
        p if p.starts_with("pbkdf2") => {
            parts.len() >= 5 && crypt_chars(parts[parts.len() - 1].trim_end_matches('='))
        }
        _ => false,
    }
}

fn hex_run(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn uuid(v: &str, m: u64) -> bool {
    // Five hex groups of 8-4-4-4-12 digits: the dashes at fixed places, no splitting. The mask
    // says every byte is a hex digit, a dash or a brace; four dashes, all at their places,
    // leave hex digits (or braces, checked apart as they are rare) everywhere else.
    const BRACES: u64 = shape::ps(b"{}");
    if m & !(HEX | shape::ps(b"-") | BRACES) != 0 {
        return false;
    }
    let t = v.trim_start_matches('{').trim_end_matches('}').as_bytes();
    t.len() == 36
        && [8, 13, 18, 23].iter().all(|&i| t[i] == b'-')
        && t.iter().filter(|&&b| b == b'-').count() == 4
        && (m & BRACES == 0 || !t.iter().any(|&b| b == b'{' || b == b'}'))
}

fn object_id(v: &str) -> bool {
    if !hex_run(v, 24) {
        return false;
    }
    let ts = u32::from_str_radix(&v[..8], 16).unwrap_or(0);
    // 2009-01-01 .. 2040-01-01
    (1_230_768_000..2_208_988_800).contains(&ts)
}

/// Parses a plain decimal number, accepting a decimal comma (`62,4`).
pub fn parse_number(v: &str) -> Option<f64> {
    let t = v.trim();
    if t.is_empty() || t.len() > 24 {
        return None;
    }
    let ok = t
        .bytes()
        .enumerate()
        .all(|(i, b)| b.is_ascii_digit() || b == b'.' || b == b',' || (i == 0 && b == b'-'));
    if !ok || t.bytes().filter(|b| *b == b'.' || *b == b',').count() > 1 {
        return None;
    }
    // A decimal comma becomes a point in a stack buffer: numbers are the most common values,
    // and a heap string per value showed up in profiles.
    let mut buf = [0u8; 24];
    let bytes = &mut buf[..t.len()];
    bytes.copy_from_slice(t.as_bytes());
    if let Some(c) = bytes.iter_mut().find(|b| **b == b',') {
        *c = b'.';
    }
    std::str::from_utf8(bytes)
        .ok()?
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
}

fn blood_pressure(v: &str) -> bool {
    let Some((a, b)) = v.trim().split_once('/') else {
        return false;
    };
    match (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
        (Ok(s), Ok(d)) => (60..=260).contains(&s) && (30..=160).contains(&d) && s > d,
        _ => false,
    }
}

fn icd10(v: &str) -> bool {
    let b = v.trim().as_bytes();
    if b.len() < 3 || b.len() > 8 {
        return false;
    }
    let head_ok = b[0].is_ascii_uppercase()
        && b[0] != b'U'
        && b[1].is_ascii_digit()
        && (b[2].is_ascii_digit() || b[2] == b'A' || b[2] == b'B');
    if !head_ok {
        return false;
    }
    match b.len() {
        3 => true,
        _ => b[3] == b'.' && b.len() > 4 && b[4..].iter().all(u8::is_ascii_alphanumeric),
    }
}

fn serial(v: &str, m: u64) -> bool {
    if !(6..=32).contains(&v.len()) {
        return false;
    }
    let dash = shape::ps(b"-");
    let upper = m & !(UPPER | DIGIT | dash) == 0;
    let lower = m & !(LOWER | DIGIT | dash) == 0;
    if !(upper || lower) || v.starts_with('-') || v.ends_with('-') {
        return false;
    }
    if m & DIGIT != 0 && m & LETTER != 0 {
        return true;
    }
    let digits = v.bytes().filter(u8::is_ascii_digit).count();
    let letters = v.bytes().filter(u8::is_ascii_alphabetic).count();
    (digits > 0 && letters > 0) || (letters >= 10) || (digits >= 8 && digits == v.len())
}

fn product_code(v: &str, m: u64) -> bool {
    if m & (NON_ASCII | WS_OTHER) == 0 {
        // ASCII with spaces only: the character tests are tests of the mask (trimming drops
        // spaces only, which the allowed set has).
        let t = if m & SPACE != 0 {
            v.trim_matches(' ')
        } else {
            v
        };
        return (2..=40).contains(&t.len())
            && m & !(ALNUM | SPACE | shape::ps(b"-_./+(),")) == 0
            && m & LETTER != 0
            && ascii_words(t) <= 4;
    }
    product_code_any(v)
}

/// [`product_code`] for any text: the definition its ASCII path must agree with.
fn product_code_any(v: &str) -> bool {
    let t = v.trim();
    (2..=40).contains(&t.len())
        && t.split_whitespace().count() <= 4
        && t.chars().any(char::is_alphabetic)
        && t.chars()
            .all(|c| c.is_alphanumeric() || " -_./+(),".contains(c))
}

fn version(v: &str) -> bool {
    let t = v.strip_prefix(['v', 'V']).unwrap_or(v);
    let core_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (core, suffix) = t.split_at(core_end);
    let mut nums = 0;
    for n in core.split('.') {
        nums += 1;
        if nums > 5 || !(1..=6).contains(&n.len()) {
            return false;
        }
    }
    nums >= 2
        && (suffix.is_empty()
            || (suffix.len() <= 24
                && suffix.starts_with(['-', '+', '_', '~'])
                && suffix[1..]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')))
}

/// Lower-case particles of family names (`van`, `de la`, `di` …).
const NAME_PARTICLES: &[&str] = &[
    "de", "del", "della", "di", "da", "dos", "das", "do", "van", "von", "der", "den", "la", "le",
    "du", "des", "y", "e", "al", "bin", "ten", "ter", "zu",
];

fn person_name(v: &str) -> bool {
    let t = v.trim();
    if t.len() < 2 || t.len() > 70 {
        return false;
    }
    let words = || t.split([' ', '-']).filter(|w| !w.is_empty());
    if !(1..=5).contains(&words().count()) {
        return false;
    }
    let mut capitalised = 0;
    for w in words() {
        if NAME_PARTICLES.contains(&w) {
            continue;
        }
        // Scripts without letter case (Han, Kana, Hangul, Arabic, Hebrew, Devanagari, Thai …):
        // a short word of that script's letters stands where a capitalised word would.
        if caseless_name_word(w) {
            capitalised += 1;
            continue;
        }
        let mut chars = w.chars();
        let first = chars.next().unwrap_or(' ');
        if !first.is_alphabetic() || !first.is_uppercase() {
            return false;
        }
        if !w
            .chars()
            .all(|c| c.is_alphabetic() || c == '\'' || c == '’' || c == '.')
        {
            return false;
        }
        capitalised += 1;
    }
    capitalised > 0
}

/// A word of one to eight letters of scripts that have no letter case (a Japanese, Chinese,
/// Korean, Arabic, Hebrew, Devanagari or Thai name), possibly with a middle dot (`・`, `·`).
fn caseless_name_word(w: &str) -> bool {
    let mut n = 0;
    for c in w.chars() {
        if matches!(c, '・' | '·' | '\u{30FC}') {
            continue;
        }
        if !(c.is_alphabetic() && !c.is_uppercase() && !c.is_lowercase() && !c.is_ascii()) {
            return false;
        }
        n += 1;
    }
    (1..=8).contains(&n)
}

/// Words of an ASCII text whose only white space is the space.
fn ascii_words(t: &str) -> usize {
    let b = t.as_bytes();
    b.iter()
        .enumerate()
        .filter(|&(i, &c)| c != b' ' && (i == 0 || b[i - 1] == b' '))
        .count()
}

fn free_text(v: &str, m: u64, max_len: usize, max_words: usize) -> bool {
    if boolean_word(v) {
        return false;
    }
    if m & (NON_ASCII | WS_OTHER) == 0 {
        // ASCII, spaces the only white space: characters are bytes, and controls are a class.
        let t = if m & SPACE != 0 {
            v.trim_matches(' ')
        } else {
            v
        };
        return !t.is_empty()
            && t.len() <= max_len
            && m & LETTER != 0
            && m & CONTROL == 0
            && ascii_words(t) <= max_words
            && (m & shape::p(b':') == 0 || !t.contains("://"))
            && !t.starts_with(['{', '[', '<']);
    }
    free_text_any(v, max_len, max_words)
}

/// [`free_text`] for any text: the definition its ASCII path must agree with.
fn free_text_any(v: &str, max_len: usize, max_words: usize) -> bool {
    let t = v.trim();
    !boolean_word(v)
        && !t.is_empty()
        && t.chars().count() <= max_len
        && t.split_whitespace().count() <= max_words
        && t.chars().any(char::is_alphabetic)
        && !t.contains("://")
        && !t.chars().any(char::is_control)
        && !t.starts_with(['{', '[', '<'])
}

fn street_address(v: &str, keywords: &[String]) -> bool {
    let t = v.trim();
    if t.len() < 6 || t.len() > 200 || t.contains('@') || t.contains("://") {
        return false;
    }
    let words: Vec<String> = t
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .map(|w| super::words::fold(w.trim_end_matches('.')))
        .collect();
    if words.len() < 2 || !t.chars().any(char::is_alphabetic) {
        return false;
    }
    let has_number = words
        .iter()
        .any(|w| w.bytes().next().is_some_and(|b| b.is_ascii_digit()) && w.len() <= 6);
    // Street types are also glued to the name in German and Dutch (`Lindenweg`, `Marktplatz`).
    let has_keyword = words.iter().any(|w| {
        keywords
            .iter()
            .any(|k| k == w || (k.len() >= 3 && w.len() >= k.len() + 3 && w.ends_with(k.as_str())))
    });
    let has_word = words
        .iter()
        .any(|w| w.chars().filter(|c| c.is_alphabetic()).count() >= 3);
    has_keyword || (has_number && has_word)
}

fn secret(v: &str) -> bool {
    if !(4..=128).contains(&v.len()) || v.chars().any(char::is_whitespace) {
        return false;
    }
    let lower = v.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "true" | "false" | "null" | "none" | "yes" | "no" | "n/a" | "****" | "redacted"
    ) {
        return false;
    }
    if parse_date(v).is_some() {
        return false;
    }
    !(v.bytes().all(|b| b.is_ascii_digit()) && v.len() < 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(id: &str) -> Detector {
        compile(id, &toml::Table::new()).unwrap()
    }

    #[test]
    fn emails() {
        let e = d("email");
        for ok in [
            "ana.lopez@ejemplo.es",
            "x+tag@sub.example.com",
            "o'brien@web.de",
        ] {
            assert!(e.check(ok), "{ok}");
        }
        for bad in [
            "img/logo@2x.png",
            "user@localhost",
            "@example.com",
            "a@b",
            "a..b@c.com",
        ] {
            assert!(!e.check(bad), "{bad}");
        }
    }

    #[test]
    fn phones() {
        let i = d("phone_intl");
        let n = d("phone_national");
        for ok in [
            "+49 30 901820",
            "+33 6 12 34 56 78",
            "0044 20 7946 0958",
            "+1 415-555-2671",
        ] {
            assert!(i.check(ok), "{ok}");
        }
        assert!(!i.check("+1 000 000 0000"));
        for ok in [
            "030 901820",
            "(415) 555-2671",
            "06 12 34 56 78",
            "0612345678",
        ] {
            assert!(n.check(ok), "{ok}");
        }
        for bad in ["1234567890", "2019-01-03", "4.36.3.5711"] {
            assert!(!n.check(bad) && !i.check(bad), "{bad}");
        }
    }

    #[test]
    fn tokens_and_hashes() {
        assert!(jwt("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig"));
        assert!(!jwt("eyJmb28iOiJiYXIifQ.eyJzdWIiOiIxIn0.sig"), "no alg");
        assert!(crypt_hash(
            "$2b$12$tAYs1NeA6O5SVZzohe9skupSN/tN.EyU1r7ECJa50poMWV1dibZ8."
        ));
        assert!(crypt_hash(
            "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG"
        ));
        assert!(crypt_hash("pbkdf2_sha256$260000$abc$ZGVhZGJlZWY="));
        assert!(crypt_hash("{SSHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="));
        assert!(!crypt_hash("$100.00 or $200"));
        assert!(pem_private_key("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl"));
        assert!(!pem_private_key("-----BEGIN CERTIFICATE-----\nMIIB"));
        assert!(pem_private_key(
            "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none"
        ));
        assert!(
            !pem_private_key("PuTTY-User-Key-File-x")
                && !pem_private_key("PuTTY-User-Key-File-: a")
        );
    }

    #[test]
    fn shapes() {
        assert!(mac("2C:AA:8E:E4:89:9A") && mac("a4-da-22-9b-b4-65") && mac("a4da.229b.b465"));
        assert!(!mac("01:00:5E:00:00:01"), "multicast");
        assert!(!mac("2C:AA:8E:E4:89-9A") && !mac("2C:AA:8E:E4:89:9G") && !mac("a4da-229b-b465"));
        assert!(!mac("2C:AA:8E:E4:899A:") && !mac("a4da.229b.b46.5"));
        assert!(!mac("00:00:00:00:00:00"));
        assert!(ip("45.92.249.37", IpScope::Public));
        assert!(!ip("192.168.1.4", IpScope::Public) && ip("192.168.1.4", IpScope::Private));
        assert!(ip("2a00:1450:4001:81c::200e", IpScope::Public));
        assert!(version("4.36.3.5711") && version("v2.1.0-beta.1") && !version("2019-01-01"));
        let serial = |v| serial(v, Shape::of(v).mask);
        assert!(serial("HC3SM6E1KJNK") && serial("C02XK1JHJG5J") && !serial("hello world"));
        assert!(person_name("Nuria García") && person_name("JEAN-PAUL DE LA TOUR"));
        assert!(person_name("Ludwig van Beethoven") && !person_name("the door"));
        assert!(geo_pair("45.4642, 9.1900") && geo_pair("POINT(2.3522 48.8566)"));
        assert!(!geo_pair("1, 2"));
        assert!(parse_date("1995-06-02").is_some_and(|d| d.midnight));
        assert!(parse_date("24/02/1969").is_some_and(|d| d.year == 1969 && d.month == 2));
        assert!(parse_date("2019-02-30").is_none());
        assert!(blood_pressure("120/80") && !blood_pressure("80/120"));
        assert!(icd10("E11.9") && icd10("J45") && !icd10("U07.1"));
        assert_eq!(parse_number("62,4"), Some(62.4));
        let uuid = |v| uuid(v, Shape::of(v).mask);
        assert!(uuid("e94180cd-ef88-4a01-b3d8-5ecdd7a393fc"));
        assert!(uuid("{e94180cd-ef88-4a01-b3d8-5ecdd7a393fc}"));
        assert!(
            !uuid("e94180cd-ef88-4a01-b3d8-5ecdd7a393f-")
                && !uuid("e94180cd-ef88-4a01-b3d8-5ec{d7a393fc")
        );
    }

    /// The class-mask fast paths of `check_shaped` against the definitions they replace (the
    /// byte-by-byte code), on random strings of the characters those definitions look at.
    #[test]
    fn mask_fast_paths_agree_with_the_definitions() {
        fn uuid_def(v: &str) -> bool {
            let t = v.trim_start_matches('{').trim_end_matches('}').as_bytes();
            t.len() == 36
                && t.iter().enumerate().all(|(i, &b)| match i {
                    8 | 13 | 18 | 23 => b == b'-',
                    _ => b.is_ascii_hexdigit(),
                })
        }
        fn serial_def(v: &str) -> bool {
            if !(6..=32).contains(&v.len()) {
                return false;
            }
            let up = v
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-');
            let lo = v
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !(up || lo) || v.starts_with('-') || v.ends_with('-') {
                return false;
            }
            let digits = v.bytes().filter(u8::is_ascii_digit).count();
            let letters = v.bytes().filter(u8::is_ascii_alphabetic).count();
            (digits > 0 && letters > 0) || (letters >= 10) || (digits >= 8 && digits == v.len())
        }
        fn username_def(v: &str) -> bool {
            !boolean_word(v)
                && (2..=64).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-@+".contains(&b))
                && v.bytes().any(|b| b.is_ascii_alphabetic())
        }
        fn opaque_def(v: &str) -> bool {
            (4..=64).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && v.bytes().any(|b| b.is_ascii_digit())
        }
        fn email_def(v: &str) -> bool {
            if v.len() > 254 || v.len() < 6 {
                return false;
            }
            let Some((local, domain)) = v.rsplit_once('@') else {
                return false;
            };
            if local.is_empty()
                || local.len() > 64
                || local.starts_with('.')
                || local.ends_with('.')
                || local.contains("..")
                || !local.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || b"._%+-!#$&'*/=?^`{|}~".contains(&b) || b >= 0x80
                })
            {
                return false;
            }
            let mut labels = 0;
            let mut tld = "";
            for l in domain.split('.') {
                if l.is_empty()
                    || l.len() > 63
                    || l.starts_with('-')
                    || l.ends_with('-')
                    || !l
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b >= 0x80)
                {
                    return false;
                }
                labels += 1;
                tld = l;
            }
            labels >= 2
                && ((tld.len() == 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()))
                    || GENERIC_TLDS.iter().any(|g| g.eq_ignore_ascii_case(tld))
                    || tld.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("xn--")))
        }
        let alphabet: Vec<char> = "0123456789abcdefABCDEFxyzXYZ -_{}./+(),:@\t\n\x07é~!|"
            .chars()
            .collect();
        let free = Detector::FreeText {
            max_len: 64,
            max_words: 6,
        };
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let uuid_like = "e94180cd-ef88-4a01-b3d8-5ecdd7a393fc";
        for _ in 0..200_000 {
            let mut v: String = match next() % 4 {
                // Near misses of the fixed shapes: one character changed.
                0 => uuid_like.to_string(),
                _ => String::new(),
            };
            if v.is_empty() {
                let len = (next() % 40) as usize;
                v = (0..len)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect();
            } else {
                let at = (next() % 36) as usize;
                let c = alphabet[(next() % alphabet.len() as u64) as usize];
                v.replace_range(at..at + 1, &c.to_string());
                if next() % 3 == 0 {
                    v = format!("{{{v}}}");
                }
            }
            let m = Shape::of(&v).mask;
            assert_eq!(uuid(&v, m), uuid_def(&v), "uuid {v:?}");
            assert_eq!(serial(&v, m), serial_def(&v), "serial {v:?}");
            assert_eq!(
                product_code(&v, m),
                product_code_any(&v),
                "product code {v:?}"
            );
            assert_eq!(free.check(&v), free_text_any(&v, 64, 6), "free text {v:?}");
            assert_eq!(
                Detector::Username.check(&v),
                username_def(&v),
                "username {v:?}"
            );
            assert_eq!(
                Detector::OpaqueId.check(&v),
                opaque_def(&v),
                "opaque id {v:?}"
            );
            assert_eq!(email(&v), email_def(&v), "email {v:?}");
            // E-mail-shaped variants: the random string around an `@` and known domains.
            let at = v.len() / 2;
            if v.is_char_boundary(at) {
                for w in [
                    format!("{}@{}.com", &v[..at], &v[at..]),
                    format!("a.{v}@x-{v}.de"),
                    format!("{v}@ex.{v}"),
                ] {
                    assert_eq!(email(&w), email_def(&w), "email {w:?}");
                }
            }
        }
    }

    #[test]
    fn fast_entropy_and_charsets_agree_with_the_definitions() {
        for v in [
            "aaaa",
            "u91oLUvhityxkugzvN2XZa8MZ9wLM_2o9xZKI0gWaaQ",
            "ab",
            &"x".repeat(300),
            &"Atza|IwEB0I7jEqmIyYyQuQHxPVZQR4y2XYuaWATaj5DE4HF3t".repeat(5),
            &"Atza|IwEB0I7jEqmIyYyQuQHxPVZQR4y2XYuaWATaj5DE4HF3t".repeat(6)[..255],
            &"Atza|IwEB0I7jEqmIyYyQuQHxPVZQR4y2XYuaWATaj5DE4HF3t".repeat(6)[..256],
            &"é".repeat(127),
            &"Atza|IwEB0I7jEqmIyYyQuQHxPVZQR4y2XYuaWATaj5DE4HF3t".repeat(82)[..4096],
            &"Atza|IwEB0I7jEqmIyYyQuQHxPVZQR4y2XYuaWATaj5DE4HF3t".repeat(82)[..4097],
            &"x".repeat(4096),
        ] {
            let n = v.len() as f64;
            let mut counts = std::collections::HashMap::new();
            for b in v.bytes() {
                *counts.entry(b).or_insert(0u32) += 1;
            }
            let naive: f64 = counts
                .values()
                .map(|&c| -(c as f64 / n) * (c as f64 / n).log2())
                .sum();
            assert!((entropy(v) - naive).abs() < 1e-9, "{v}");
        }
        for cs in [
            Charset::Base64Url,
            Charset::Base64,
            Charset::Token,
            Charset::Alnum,
            Charset::UpperBase32,
            Charset::UpperAlnum,
            Charset::Hex,
        ] {
            for b in 0..=255u8 {
                assert_eq!(all_in(cs, &[b]), cs.allows(b), "{cs:?} {b}");
            }
        }
    }

    #[test]
    fn parameters_are_checked() {
        let mut t = toml::Table::new();
        t.insert("rangez".into(), toml::Value::Array(vec![]));
        assert!(compile("number", &t).unwrap_err().contains("ranges"));
        let mut t = toml::Table::new();
        t.insert("prefixes".into(), toml::Value::Array(vec!["ghp_".into()]));
        t.insert("charset".into(), "klingon".into());
        assert!(compile("prefixed", &t).unwrap_err().contains("klingon"));
        assert!(compile("telepathy", &toml::Table::new()).is_err());
    }
}
