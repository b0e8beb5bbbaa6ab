//! Byte-level formatting shared by the generators and the encoders: numbers, fixed decimals,
//! UUIDs, hex, base64url and calendar dates. Everything appends to a caller's buffer, because
//! records are written millions of times and must not allocate.

use crate::rng::Rng;

pub const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";
pub const ALNUM_UPPER: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// Formats `v` in decimal into `tmp`, returning the digits.
fn digits(tmp: &mut [u8; 20], mut v: u64) -> &[u8] {
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &tmp[i..]
}

pub fn push_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(digits(&mut [0; 20], v));
}

pub fn push_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_u64(out, v.unsigned_abs());
}

/// Left-pads with zeros to `width` digits.
pub fn push_padded(out: &mut Vec<u8>, v: u64, width: usize) {
    let mut tmp = [0; 20];
    let d = digits(&mut tmp, v);
    out.resize(out.len() + width.saturating_sub(d.len()), b'0');
    out.extend_from_slice(d);
}

/// A fixed-point decimal: `v` scaled by `10^scale` (`push_decimal(723, 1)` writes `72.3`).
/// Values are kept as scaled integers so that every store reads back exactly what was written.
pub fn push_decimal(out: &mut Vec<u8>, v: i64, scale: u8) {
    if scale == 0 {
        return push_i64(out, v);
    }
    if v < 0 {
        out.push(b'-');
    }
    let p = 10u64.pow(u32::from(scale));
    let a = v.unsigned_abs();
    push_u64(out, a / p);
    out.push(b'.');
    push_padded(out, a % p, usize::from(scale));
}

pub fn string_u64(s: &mut String, v: u64) {
    let mut tmp = [0; 20];
    s.push_str(std::str::from_utf8(digits(&mut tmp, v)).expect("ascii digits"));
}

pub fn string_padded(s: &mut String, v: u64, width: usize) {
    let mut tmp = [0; 20];
    let d = digits(&mut tmp, v);
    for _ in d.len()..width {
        s.push('0');
    }
    s.push_str(std::str::from_utf8(d).expect("ascii digits"));
}

/// Random ASCII characters drawn from `alphabet` (64 symbols: 6 bits per draw).
pub fn push_random64(s: &mut String, r: &mut Rng, alphabet: &[u8; 64], n: usize) {
    let mut left = 0;
    let mut bits = 0u64;
    for _ in 0..n {
        if left == 0 {
            bits = r.next_u64();
            left = 10;
        }
        s.push(char::from(alphabet[(bits & 63) as usize]));
        bits >>= 6;
        left -= 1;
    }
}

/// Random characters from an arbitrary ASCII alphabet.
pub fn push_random_from(s: &mut String, r: &mut Rng, alphabet: &[u8], n: usize) {
    for _ in 0..n {
        s.push(char::from(alphabet[r.index(alphabet.len())]));
    }
}

pub fn push_hex(s: &mut String, bytes: &[u8], upper: bool) {
    let digits = if upper { HEX_UPPER } else { HEX_LOWER };
    for b in bytes {
        s.push(char::from(digits[usize::from(b >> 4)]));
        s.push(char::from(digits[usize::from(b & 15)]));
    }
}

/// Hex of a 16-bit group without leading zeros, as RFC 5952 prints IPv6.
pub fn push_hex_group(s: &mut String, v: u16) {
    let mut started = false;
    for shift in [12, 8, 4, 0] {
        let d = (v >> shift) & 15;
        if d != 0 || started || shift == 0 {
            s.push(char::from(HEX_LOWER[usize::from(d)]));
            started = true;
        }
    }
}

pub fn random_bytes<const N: usize>(r: &mut Rng) -> [u8; N] {
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(8) {
        let v = r.next_u64().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    out
}

/// A random (version 4, RFC 4122 variant) UUID in its canonical lowercase form.
pub fn uuid4(s: &mut String, r: &mut Rng) {
    let mut b: [u8; 16] = random_bytes(r);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    s.clear();
    push_hex(s, &b[0..4], false);
    s.push('-');
    push_hex(s, &b[4..6], false);
    s.push('-');
    push_hex(s, &b[6..8], false);
    s.push('-');
    push_hex(s, &b[8..10], false);
    s.push('-');
    push_hex(s, &b[10..16], false);
}

/// Unpadded base64url (RFC 4648 §5).
pub fn push_base64url(s: &mut String, data: &[u8]) {
    for chunk in data.chunks(3) {
        let n = chunk.len();
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for k in 0..=n {
            s.push(char::from(B64URL[((v >> (18 - 6 * k)) & 63) as usize]));
        }
    }
}

// Calendar arithmetic on days since 1970-01-01 (proleptic Gregorian), using the classic
// era/day-of-era decomposition so that no date library is needed.

pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Seconds since the epoch of a UTC midnight.
pub fn epoch(y: i64, m: u32, d: u32) -> i64 {
    days_from_civil(y, m, d) * 86_400
}

/// How a timestamp is spelled for a store: what it accepts on load and prints on read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeStyle {
    /// `2019-03-04T12:34:56Z` (JSON documents, Redis and Memcached values).
    Iso,
    /// `2019-03-04 12:34:56+00` (PostgreSQL `timestamptz` in a UTC session).
    Pg,
    /// `2019-03-04 12:34:56` (MySQL `DATETIME`, which has no zone).
    My,
}

pub fn push_date(out: &mut Vec<u8>, days: i64) {
    let (y, m, d) = civil_from_days(days);
    push_padded(out, y as u64, 4);
    out.push(b'-');
    push_padded(out, u64::from(m), 2);
    out.push(b'-');
    push_padded(out, u64::from(d), 2);
}

pub fn push_timestamp(out: &mut Vec<u8>, secs: i64, style: TimeStyle) {
    push_date(out, secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400) as u64;
    out.push(if style == TimeStyle::Iso { b'T' } else { b' ' });
    push_padded(out, t / 3600, 2);
    out.push(b':');
    push_padded(out, t / 60 % 60, 2);
    out.push(b':');
    push_padded(out, t % 60, 2);
    match style {
        TimeStyle::Iso => out.push(b'Z'),
        TimeStyle::Pg => out.extend_from_slice(b"+00"),
        TimeStyle::My => {}
    }
}

pub fn date_string(days: i64) -> String {
    let mut b = Vec::with_capacity(10);
    push_date(&mut b, days);
    String::from_utf8(b).expect("ascii date")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut b = Vec::new();
        f(&mut b);
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn numbers() {
        assert_eq!(s(|b| push_u64(b, 0)), "0");
        assert_eq!(s(|b| push_i64(b, -1234)), "-1234");
        assert_eq!(s(|b| push_padded(b, 42, 8)), "00000042");
        assert_eq!(s(|b| push_decimal(b, 723, 1)), "72.3");
        assert_eq!(s(|b| push_decimal(b, -614, 1)), "-61.4");
        assert_eq!(s(|b| push_decimal(b, 5, 2)), "0.05");
    }

    #[test]
    fn calendar_round_trips() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2019, 12, 4), 18_234);
        for z in -30_000..30_000 {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(
            s(|b| push_timestamp(
                b,
                epoch(2019, 12, 4) + 4 * 3600 + 12 * 60 + 5,
                TimeStyle::Iso
            )),
            "2019-12-04T04:12:05Z"
        );
        assert_eq!(
            s(|b| push_timestamp(b, epoch(2000, 2, 29), TimeStyle::Pg)),
            "2000-02-29 00:00:00+00"
        );
    }

    #[test]
    fn base64url_matches_rfc4648_vectors() {
        let enc = |d: &[u8]| {
            let mut s = String::new();
            push_base64url(&mut s, d);
            s
        };
        assert_eq!(enc(b"f"), "Zg");
        assert_eq!(enc(b"fo"), "Zm8");
        assert_eq!(enc(b"foo"), "Zm9v");
        assert_eq!(enc(b"foobar"), "Zm9vYmFy");
        assert_eq!(enc(&[0xfb, 0xff]), "-_8");
        assert_eq!(enc(&[0u8; 32]).len(), 43);
    }

    #[test]
    fn uuid_shape() {
        let mut s = String::new();
        uuid4(&mut s, &mut Rng::new(1, 1, crate::rng::Aspect::Profile));
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"));
    }
}
