//! Checksums and issuer rules of identifiers: payment cards (Luhn and issuer ranges), IBAN
//! (ISO 13616 mod-97 with per-country lengths), Italian codice fiscale (check character), US
//! SSN (SSA assignment rules), Spanish DNI/NIE (mod-23 letter), French NIR (mod-97 key), UK
//! National Insurance numbers (prefix rules) and IMEI (Luhn).
//!
//! These are the strong validators: a random string passes a checksum rarely, so a field whose
//! values mostly pass one is evidence on its own. Inputs are raw sampled values; each function
//! normalises the separators people write (spaces, dashes) and nothing else.

/// Digits of `s` if it consists only of digits and the given separators; None otherwise.
fn digits_with(s: &str, seps: &[char], max: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(20);
    for c in s.chars() {
        if let Some(d) = c.to_digit(10) {
            if out.len() == max {
                return None;
            }
            out.push(d as u8);
        } else if !seps.contains(&c) {
            return None;
        }
    }
    Some(out)
}

/// The bytes of `s` without the separators `drop`, upper-cased, if there are exactly `N`
/// (on the stack: these run on every value of a field that passes the prefilter).
fn packed<const N: usize>(s: &str, drop: &[u8]) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    let mut n = 0;
    for b in s.trim().bytes().filter(|b| !drop.contains(b)) {
        if n == N {
            return None;
        }
        out[n] = b.to_ascii_uppercase();
        n += 1;
    }
    (n == N).then_some(out)
}

/// The Luhn (mod 10) check over decimal digits.
pub fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &d) in digits.iter().rev().enumerate() {
        let mut v = d as u32;
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

fn prefix_num(digits: &[u8], n: usize) -> u32 {
    digits
        .iter()
        .take(n)
        .fold(0u32, |acc, &d| acc * 10 + d as u32)
}

/// Whether the issuer prefix (IIN) and length fit a known card scheme.
fn card_scheme_fits(d: &[u8]) -> bool {
    let len = d.len();
    let p1 = prefix_num(d, 1);
    let p2 = prefix_num(d, 2);
    let p3 = prefix_num(d, 3);
    let p4 = prefix_num(d, 4);
    let p6 = prefix_num(d, 6);
    match p1 {
        // Visa
        4 => matches!(len, 13 | 16 | 19),
        // Mastercard 51–55, 2221–2720; Mir 2200–2204
        5 if (51..=55).contains(&p2) => len == 16,
        2 if (2221..=2720).contains(&p4) || (2200..=2204).contains(&p4) => len == 16,
        // American Express 34, 37
        3 if p2 == 34 || p2 == 37 => len == 15,
        // JCB 3528–3589
        3 if (3528..=3589).contains(&p4) => (16..=19).contains(&len),
        // Diners Club 300–305, 36, 38–39
        3 if (300..=305).contains(&p3) || p2 == 36 || p2 == 38 || p2 == 39 => {
            (14..=19).contains(&len)
        }
        // Discover 6011, 644–649, 65, 622126–622925; UnionPay 62; Maestro 56–69 and 6304/6759…
        6 if p4 == 6011
            || (644..=649).contains(&p3)
            || p2 == 65
            || (622126..=622925).contains(&p6)
            || p2 == 62 =>
        {
            (16..=19).contains(&len)
        }
        6 => (12..=19).contains(&len),
        // Maestro 50, 56–58
        5 if p2 == 50 || (56..=58).contains(&p2) => (12..=19).contains(&len),
        _ => false,
    }
}

/// A payment card number: 12–19 digits (spaces or dashes between groups allowed), a known
/// issuer prefix for that length, and a valid Luhn check digit.
pub fn card_number(s: &str) -> bool {
    let s = s.trim();
    if s.len() < 12 || s.len() > 23 {
        return false;
    }
    let Some(d) = digits_with(s, &[' ', '-'], 19) else {
        return false;
    };
    if d.len() < 12 || d.windows(2).all(|w| w[0] == w[1]) {
        return false;
    }
    card_scheme_fits(&d) && luhn(&d)
}

/// An IMEI: 15 digits with a Luhn check digit (optionally grouped with spaces, dashes or `/`).
pub fn imei(s: &str) -> bool {
    match digits_with(s.trim(), &[' ', '-', '/'], 15) {
        Some(d) => d.len() == 15 && luhn(&d) && !d.iter().all(|&x| x == d[0]),
        None => false,
    }
}

/// IBAN lengths by country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("LY", 25),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NL", 18),
    ("NO", 15),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("SA", 24),
    ("SC", 31),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
];

/// An IBAN: a registered country with its exact length, and the mod-97 check equal to 1.
/// Spaces between groups are allowed, letters may be lower case.
pub fn iban(s: &str) -> bool {
    let s = s.trim();
    if s.len() < 15 || s.len() > 42 {
        return false;
    }
    let mut c: Vec<u8> = Vec::with_capacity(34);
    for b in s.bytes() {
        match b {
            b' ' => {}
            b'0'..=b'9' | b'A'..=b'Z' => c.push(b),
            b'a'..=b'z' => c.push(b.to_ascii_uppercase()),
            _ => return false,
        }
    }
    if c.len() < 15 || !c[0].is_ascii_uppercase() || !c[1].is_ascii_uppercase() {
        return false;
    }
    if !c[2].is_ascii_digit() || !c[3].is_ascii_digit() {
        return false;
    }
    let country = std::str::from_utf8(&c[..2]).unwrap_or("");
    match IBAN_LENGTHS.iter().find(|(cc, _)| *cc == country) {
        Some(&(_, len)) if len == c.len() => {}
        _ => return false,
    }
    // Move the first four characters to the end, letters become 10..35, remainder mod 97.
    let mut rem: u32 = 0;
    for &b in c[4..].iter().chain(&c[..4]) {
        if b.is_ascii_digit() {
            rem = (rem * 10 + (b - b'0') as u32) % 97;
        } else {
            let v = (b - b'A') as u32 + 10;
            rem = (rem * 100 + v) % 97;
        }
    }
    rem == 1
}

/// Value of a character at an odd (1-based) position of a codice fiscale.
fn cf_odd(c: u8) -> u32 {
    const ODD: [u32; 26] = [
        1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24,
        23,
    ];
    let i = if c.is_ascii_digit() {
        c - b'0'
    } else {
        c - b'A'
    };
    ODD[i as usize]
}

/// An Italian codice fiscale of a person: 16 characters in the layout surname(3) name(3)
/// year(2) month-letter day(2) place(4) check, digits possibly replaced by their omocodia
/// letters, with the check character right.
pub fn codice_fiscale(s: &str) -> bool {
    let s = s.trim();
    if s.len() != 16 {
        return false;
    }
    let b: Vec<u8> = s.bytes().map(|c| c.to_ascii_uppercase()).collect();
    const OMOCODIA: &[u8] = b"LMNPQRSTUV";
    const MONTHS: &[u8] = b"ABCDEHLMPRST";
    let digit_like = |c: u8| c.is_ascii_digit() || OMOCODIA.contains(&c);
    let layout_ok = b[..6].iter().all(u8::is_ascii_uppercase)
        && digit_like(b[6])
        && digit_like(b[7])
        && MONTHS.contains(&b[8])
        && digit_like(b[9])
        && digit_like(b[10])
        && b[11].is_ascii_uppercase()
        && b[12..15].iter().all(|&c| digit_like(c))
        && b[15].is_ascii_uppercase();
    if !layout_ok {
        return false;
    }
    let mut sum = 0u32;
    for (i, &c) in b[..15].iter().enumerate() {
        // Positions are 1-based in the specification: index 0 is "odd".
        sum += if i % 2 == 0 {
            cf_odd(c)
        } else if c.is_ascii_digit() {
            (c - b'0') as u32
        } else {
            (c - b'A') as u32
        };
    }
    b[15] == b'A' + (sum % 26) as u8
}

/// A US Social Security number that the SSA could have assigned: `AAA-GG-SSSS` (dashes or
/// spaces optional), area not 000, 666 or 900–999, group not 00, serial not 0000.
pub fn us_ssn(s: &str) -> bool {
    let s = s.trim();
    let Some(d) = digits_with(s, &['-', ' '], 9) else {
        return false;
    };
    if d.len() != 9 {
        return false;
    }
    // Separators, when present, must be at the standard places.
    if s.len() != 9 {
        let bytes = s.as_bytes();
        if s.len() != 11 || !(bytes[3] == bytes[6] && (bytes[3] == b'-' || bytes[3] == b' ')) {
            return false;
        }
    }
    let area = prefix_num(&d, 3);
    let group = d[3] as u32 * 10 + d[4] as u32;
    let serial = prefix_num(&d[5..], 4);
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// Longest written DNI/NIE: nine characters and three separators.
pub const ES_DNI_MAX_LEN: usize = 12;

/// A Spanish DNI (8 digits and a letter) or NIE (X/Y/Z, 7 digits, letter) with the right
/// mod-23 letter.
pub fn es_dni(s: &str) -> bool {
    const LETTERS: &[u8] = b"TRWAGMYFPDXBNJZSQVHLCKE";
    // Written with at most three separators (`X-1234567-L`, `12345678 - Z`).
    if s.len() > ES_DNI_MAX_LEN {
        return false;
    }
    let Some(b) = packed::<9>(s, b"- ") else {
        return false;
    };
    let lead = match b[0] {
        b'X' => 0,
        b'Y' => 1,
        b'Z' => 2,
        c if c.is_ascii_digit() => (c - b'0') as u32,
        _ => return false,
    };
    if !b[1..8].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let n = b[1..8]
        .iter()
        .fold(lead, |acc, &c| acc * 10 + (c - b'0') as u32);
    b[8] == LETTERS[(n % 23) as usize]
}

/// A French NIR (numéro de sécurité sociale): 13 characters (sex, year, month, department —
/// `2A`/`2B` for Corsica —, commune, order) and a 2-digit key equal to 97 − (number mod 97).
pub fn fr_nir(s: &str) -> bool {
    let Some(b) = packed::<15>(s, b" ") else {
        return false;
    };
    if !(b[0] == b'1' || b[0] == b'2') {
        return false;
    }
    let mut body = b[..13].to_vec();
    let corsica = match (body[5], body[6]) {
        (b'2', b'A') => Some(1_000_000u64),
        (b'2', b'B') => Some(2_000_000u64),
        _ => None,
    };
    if corsica.is_some() {
        body[6] = b'0';
    }
    if !body.iter().all(u8::is_ascii_digit) || !b[13..].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let month = (body[3] - b'0') * 10 + (body[4] - b'0');
    if !(1..=12).contains(&month) && !(20..=42).contains(&month) && month != 99 {
        return false;
    }
    let mut n = body
        .iter()
        .fold(0u64, |acc, &c| acc * 10 + (c - b'0') as u64);
    if let Some(sub) = corsica {
        n -= sub;
    }
    let key = ((b[13] - b'0') * 10 + (b[14] - b'0')) as u64;
    key == 97 - n % 97
}

/// A UK National Insurance number: two prefix letters (not D, F, I, Q, U, V; the second not
/// O; not BG, GB, KN, NK, NT, TN, ZZ), six digits, a suffix A–D.
pub fn uk_nino(s: &str) -> bool {
    let Some(b) = packed::<9>(s, b" ") else {
        return false;
    };
    let bad = |c: u8| matches!(c, b'D' | b'F' | b'I' | b'Q' | b'U' | b'V');
    if !b[0].is_ascii_uppercase() || !b[1].is_ascii_uppercase() || bad(b[0]) || bad(b[1]) {
        return false;
    }
    if b[1] == b'O' || [b"BG", b"GB", b"KN", b"NK", b"NT", b"TN", b"ZZ"].contains(&&[b[0], b[1]]) {
        return false;
    }
    b[2..8].iter().all(u8::is_ascii_digit) && (b'A'..=b'D').contains(&b[8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cards() {
        assert!(card_number("4242 4242 4242 4242"));
        assert!(card_number("5555-5555-5555-4444"));
        assert!(card_number("378282246310005"));
        assert!(card_number("6011111111111117"));
        assert!(!card_number("4242 4242 4242 4241"), "Luhn");
        assert!(!card_number("1234567812345670"), "no issuer starts with 1");
        assert!(!card_number("0000000000000000"));
        assert!(!card_number("1575214065000"), "a millisecond timestamp");
        assert!(!card_number("3782822463100050"), "Amex is 15 digits");
    }

    #[test]
    fn ibans() {
        assert!(iban("GB82 WEST 1234 5698 7654 32"));
        assert!(iban("DE89370400440532013000"));
        assert!(iban("fr1420041010050500013m02606"));
        assert!(!iban("GB82 WEST 1234 5698 7654 33"), "mod 97");
        assert!(!iban("DE8937040044053201300"), "length for DE");
        assert!(!iban("ZZ89370400440532013000"), "unknown country");
    }

    #[test]
    fn codice_fiscale_check_character() {
        assert!(codice_fiscale("RSSMRA85T10A562S"));
        assert!(!codice_fiscale("RSSMRA85T10A562T"));
        assert!(!codice_fiscale("RSSMRA85Z10A562S"), "Z is no month");
        assert!(!codice_fiscale("1234567890123456"));
    }

    #[test]
    fn national_ids() {
        assert!(us_ssn("536-22-1234"));
        assert!(us_ssn("536221234"));
        assert!(!us_ssn("666-22-1234"));
        assert!(!us_ssn("936-22-1234"));
        assert!(!us_ssn("536-00-1234"));
        assert!(!us_ssn("53-622-1234"));
        assert!(es_dni("12345678Z"));
        assert!(es_dni("X1234567L"));
        assert!(!es_dni("12345678A"));
        assert!(es_dni("X-1234567-L") && es_dni("12345678 - Z"));
        assert!(
            !es_dni("1 2 3 4 5 6 7 8 Z"),
            "spread out: not how a DNI is written"
        );
        assert!(fr_nir("1 85 05 78 006 084 91"));
        assert!(!fr_nir("1 85 05 78 006 084 92"));
        assert!(uk_nino("AB 12 34 56 C"));
        assert!(!uk_nino("GB123456A"));
        assert!(!uk_nino("AB123456E"));
        assert!(imei("490154203237518"));
        assert!(!imei("490154203237519"));
    }
}
