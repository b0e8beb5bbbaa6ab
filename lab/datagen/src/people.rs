//! Realistic personal values: countries, names, usernames, unique e-mail addresses, phone
//! numbers valid for their country, public IP addresses, Wi-Fi SSIDs and credential shapes.
//! A classifier is only tested if these look like the real thing.

use crate::lists::*;
use crate::rng::Rng;
use crate::text::{push_base64url, push_hex_group, push_random64, random_bytes, string_u64};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Country {
    #[default]
    Us,
    Gb,
    De,
    It,
    Fr,
    Es,
}

impl Country {
    pub const ALL: [Country; 6] = [
        Country::Us,
        Country::Gb,
        Country::De,
        Country::It,
        Country::Fr,
        Country::Es,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Country::Us => "US",
            Country::Gb => "GB",
            Country::De => "DE",
            Country::It => "IT",
            Country::Fr => "FR",
            Country::Es => "ES",
        }
    }

    /// Customers' countries, weighted like a US company with a European market.
    pub fn draw(r: &mut Rng) -> Country {
        r.weighted(&[
            (Country::Us, 38),
            (Country::Gb, 12),
            (Country::De, 16),
            (Country::It, 12),
            (Country::Fr, 11),
            (Country::Es, 11),
        ])
    }

    pub fn first_name(self, r: &mut Rng) -> &'static str {
        match self {
            Country::Us | Country::Gb => r.pick(FIRST_EN),
            Country::De => r.pick(FIRST_DE),
            Country::It => r.pick(FIRST_IT).0,
            Country::Fr => r.pick(FIRST_FR),
            Country::Es => r.pick(FIRST_ES),
        }
    }

    pub fn last_name(self, r: &mut Rng) -> &'static str {
        match self {
            Country::Us | Country::Gb => r.pick(LAST_EN),
            Country::De => r.pick(LAST_DE),
            Country::It => r.pick(LAST_IT),
            Country::Fr => r.pick(LAST_FR),
            Country::Es => r.pick(LAST_ES),
        }
    }

    fn local_domains(self) -> &'static [&'static str] {
        match self {
            Country::Us => DOMAINS_US,
            Country::Gb => DOMAINS_GB,
            Country::De => DOMAINS_DE,
            Country::It => DOMAINS_IT,
            Country::Fr => DOMAINS_FR,
            Country::Es => DOMAINS_ES,
        }
    }

    /// The currency a customer of this country pays in.
    pub fn currency(self) -> &'static str {
        match self {
            Country::Us => "USD",
            Country::Gb => "GBP",
            _ => "EUR",
        }
    }
}

/// Appends `s` lower-cased, with accents dropped and anything but letters removed, the way
/// people spell their names in e-mail addresses and user names.
pub fn push_ascii_lower(out: &mut String, s: &str) {
    for c in s.chars() {
        let folded = match c {
            'a'..='z' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            'à' | 'á' | 'â' | 'ä' | 'ã' | 'å' | 'À' | 'Á' | 'Â' | 'Ä' => 'a',
            'è' | 'é' | 'ê' | 'ë' | 'È' | 'É' | 'Ê' | 'Ë' => 'e',
            'ì' | 'í' | 'î' | 'ï' | 'Ì' | 'Í' | 'Î' | 'Ï' => 'i',
            'ò' | 'ó' | 'ô' | 'ö' | 'õ' | 'Ò' | 'Ó' | 'Ô' | 'Ö' => 'o',
            'ù' | 'ú' | 'û' | 'ü' | 'Ù' | 'Ú' | 'Û' | 'Ü' => 'u',
            'ç' | 'Ç' => 'c',
            'ñ' | 'Ñ' => 'n',
            'ß' => {
                out.push_str("ss");
                continue;
            }
            _ => continue,
        };
        out.push(folded);
    }
}

/// Like [`push_ascii_lower`] but upper case, as embossed on cards and used by the codice fiscale.
pub fn push_ascii_upper(out: &mut String, s: &str) {
    let start = out.len();
    push_ascii_lower(out, s);
    out[start..].make_ascii_uppercase();
}

/// A user name from the person's names and some digits (not unique, as in real services).
pub fn username(out: &mut String, r: &mut Rng, first: &str, last: &str) {
    out.clear();
    match r.below(6) {
        0 => {
            push_ascii_lower(out, first);
            push_ascii_lower(out, last);
        }
        1 => {
            push_ascii_lower(out, first);
            out.push('_');
            push_ascii_lower(out, last);
        }
        2 => {
            push_ascii_lower(
                out,
                &first[..first.chars().next().map_or(0, char::len_utf8)],
            );
            push_ascii_lower(out, last);
        }
        3 => {
            push_ascii_lower(out, first);
            out.push('.');
            push_ascii_lower(out, &last[..last.chars().next().map_or(0, char::len_utf8)]);
        }
        4 => {
            out.push_str(first);
            out.push_str(last);
            out.retain(|c| c.is_alphabetic());
        }
        _ => {
            push_ascii_lower(out, last);
            push_ascii_lower(out, first);
        }
    }
    if r.chance(0.8) {
        let n = match r.below(4) {
            0 => r.range(1, 99),
            1 => r.range(60, 99),
            2 => r.range(1960, 2005),
            _ => r.range(100, 9999),
        };
        string_u64(out, n as u64);
    }
}

/// A unique e-mail address. `unique` must be distinct per person (a permuted index): it is
/// appended in decimal after a part made only of letters and separators, so two addresses can
/// only be equal if their `unique` numbers are.
pub fn email(
    out: &mut String,
    r: &mut Rng,
    first: &str,
    last: &str,
    unique: u64,
    country: Country,
) {
    out.clear();
    match r.below(5) {
        0 => {
            push_ascii_lower(out, first);
            out.push('.');
            push_ascii_lower(out, last);
        }
        1 => {
            push_ascii_lower(out, first);
            push_ascii_lower(out, last);
        }
        2 => {
            push_ascii_lower(
                out,
                &first[..first.chars().next().map_or(0, char::len_utf8)],
            );
            push_ascii_lower(out, last);
        }
        3 => {
            push_ascii_lower(out, last);
            out.push('.');
            push_ascii_lower(out, first);
        }
        _ => {
            push_ascii_lower(out, first);
            out.push('_');
        }
    }
    string_u64(out, unique);
    out.push('@');
    if r.chance(0.35) {
        out.push_str(r.pick(country.local_domains()));
    } else {
        out.push_str(r.weighted(DOMAINS_GLOBAL));
    }
}

fn push_digits(out: &mut String, r: &mut Rng, n: usize) {
    for _ in 0..n {
        out.push(char::from(b'0' + r.below(10) as u8));
    }
}

/// Appends `digits` split into groups of the given sizes and a last group with the rest,
/// separated by `sep`.
fn push_grouped(out: &mut String, digits: &str, groups: &[usize], sep: char) {
    let mut at = 0;
    for g in groups {
        let end = (at + g).min(digits.len());
        out.push_str(&digits[at..end]);
        at = end;
        if at < digits.len() {
            out.push(sep);
        }
    }
    out.push_str(&digits[at..]);
}

/// A mobile (or, in the US, any) number valid for the country, in one of the formats people
/// and apps store: E.164, spaced international, or US national.
pub fn phone(out: &mut String, r: &mut Rng, country: Country) {
    out.clear();
    // National significant number first, then formatting.
    let mut nsn = String::with_capacity(12);
    let (cc, groups): (&str, &[usize]) = match country {
        Country::Us => {
            string_u64(&mut nsn, u64::from(r.pick(US_AREA_CODES)));
            // Exchange: 2-9 first, never N11 and never the fictional 555.
            loop {
                let x = r.range(200, 999);
                if x % 100 != 11 && x != 555 {
                    string_u64(&mut nsn, x as u64);
                    break;
                }
            }
            push_digits(&mut nsn, r, 4);
            match r.below(4) {
                0 => {
                    out.push_str("+1");
                    out.push_str(&nsn);
                }
                1 => {
                    out.push('(');
                    out.push_str(&nsn[..3]);
                    out.push_str(") ");
                    out.push_str(&nsn[3..6]);
                    out.push('-');
                    out.push_str(&nsn[6..]);
                }
                2 => push_grouped(out, &nsn, &[3, 3], '-'),
                _ => {
                    out.push_str("+1 ");
                    push_grouped(out, &nsn, &[3, 3], '-');
                }
            }
            return;
        }
        Country::De => {
            let (prefix, lens) = r.pick(DE_MOBILE);
            nsn.push_str(prefix);
            let n = r.pick(lens);
            push_digits(&mut nsn, r, n);
            // Eight-digit subscriber numbers are often written in two blocks of four.
            (
                "49",
                if n == 8 && r.chance(0.5) {
                    &[3, 4]
                } else {
                    &[3]
                },
            )
        }
        Country::It => {
            nsn.push('3');
            nsn.push(char::from(b'2' + r.below(3) as u8));
            push_digits(&mut nsn, r, 8);
            ("39", if r.chance(0.5) { &[3, 3] } else { &[3] })
        }
        Country::Fr => {
            if r.chance(0.8) {
                nsn.push('6');
                nsn.push(char::from(r.pick(FR_MOBILE_6)));
            } else {
                nsn.push('7');
                nsn.push(char::from(r.pick(FR_MOBILE_7)));
            }
            push_digits(&mut nsn, r, 7);
            ("33", &[1, 2, 2, 2])
        }
        Country::Es => {
            nsn.push('6');
            push_digits(&mut nsn, r, 8);
            ("34", if r.chance(0.5) { &[3, 2, 2] } else { &[3, 3] })
        }
        Country::Gb => {
            nsn.push_str(r.pick(GB_MOBILE));
            push_digits(&mut nsn, r, 7);
            ("44", &[4])
        }
    };
    out.push('+');
    out.push_str(cc);
    if r.chance(0.4) {
        out.push_str(&nsn);
    } else {
        out.push(' ');
        push_grouped(out, &nsn, groups, ' ');
    }
}

/// IPv4 blocks that are not publicly routed (RFC 6890): private, loopback, link-local, shared,
/// documentation, benchmarking, multicast and reserved. Written as (first octets, prefix length).
const NON_PUBLIC_V4: &[([u8; 4], u32)] = &[
    ([0, 0, 0, 0], 8),
    ([10, 0, 0, 0], 8),
    ([100, 64, 0, 0], 10),
    ([127, 0, 0, 0], 8),
    ([169, 254, 0, 0], 16),
    ([172, 16, 0, 0], 12),
    ([192, 0, 0, 0], 24),
    ([192, 0, 2, 0], 24),
    ([192, 88, 99, 0], 24),
    ([192, 168, 0, 0], 16),
    ([198, 18, 0, 0], 15),
    ([198, 51, 100, 0], 24),
    ([203, 0, 113, 0], 24),
    ([224, 0, 0, 0], 4),
    ([240, 0, 0, 0], 4),
];

pub fn is_public_v4(ip: u32) -> bool {
    !NON_PUBLIC_V4.iter().any(|(net, len)| {
        let mask = u32::MAX << (32 - len);
        ip & mask == u32::from_be_bytes(*net)
    })
}

/// First groups of real ISP IPv6 allocations (RIPE and ARIN blocks).
const V6_PREFIXES: &[u16] = &[0x2003, 0x2600, 0x2601, 0x2604, 0x2a00, 0x2a01, 0x2a02];

/// A public address: IPv4, or in about one case in ten a global IPv6 address written without
/// zero groups, so that every store prints it back exactly as written.
pub fn public_ip(out: &mut String, r: &mut Rng) {
    out.clear();
    if r.chance(0.1) {
        push_hex_group(out, r.pick(V6_PREFIXES));
        let bits = r.next_u64();
        let bits2 = r.next_u64();
        for k in 0..7 {
            let word = (if k < 4 {
                bits >> (16 * k)
            } else {
                bits2 >> (16 * (k - 4))
            }) as u16;
            out.push(':');
            push_hex_group(out, word.max(1));
        }
        return;
    }
    let ip = loop {
        let ip = r.next_u64() as u32;
        if is_public_v4(ip) {
            break ip;
        }
    };
    for (k, b) in ip.to_be_bytes().iter().enumerate() {
        if k > 0 {
            out.push('.');
        }
        string_u64(out, u64::from(*b));
    }
}

fn push_upper_hex(out: &mut String, r: &mut Rng, n: usize) {
    crate::text::push_random_from(out, r, b"0123456789ABCDEF", n);
}

fn push_upper_alnum(out: &mut String, r: &mut Rng, n: usize) {
    crate::text::push_random_from(out, r, crate::text::ALNUM_UPPER, n);
}

/// A home Wi-Fi network name in the styles routers ship with or people choose.
pub fn ssid(out: &mut String, r: &mut Rng, country: Country, last: &str) {
    out.clear();
    let local = r.chance(0.6);
    match (local, country) {
        (true, Country::De) => match r.below(4) {
            0 => {
                out.push_str("FRITZ!Box ");
                out.push_str(r.pick(&["7590", "7490", "7530", "6660 Cable", "6490 Cable"]));
                out.push(' ');
                push_random_alpha(out, r, 2);
            }
            1 => {
                out.push_str("WLAN-");
                push_digits(out, r, 6);
            }
            2 => {
                out.push_str("Vodafone-");
                push_upper_hex(out, r, 6);
            }
            _ => {
                out.push_str("Familie ");
                out.push_str(last);
            }
        },
        (true, Country::It) => match r.below(4) {
            0 => {
                out.push_str("TIM-");
                push_digits(out, r, 8);
            }
            1 => {
                out.push_str("FASTWEB-");
                push_upper_alnum(out, r, 6);
            }
            2 => {
                out.push_str("Vodafone-");
                push_upper_hex(out, r, 6);
            }
            _ => {
                out.push_str("Casa ");
                out.push_str(last);
            }
        },
        (true, Country::Fr) => match r.below(4) {
            0 => {
                out.push_str("Livebox-");
                push_upper_hex(out, r, 4);
            }
            1 => {
                out.push_str("Freebox-");
                push_upper_hex(out, r, 6);
            }
            2 => {
                out.push_str("SFR_");
                push_upper_hex(out, r, 4);
            }
            _ => {
                out.push_str("Chez ");
                out.push_str(last);
            }
        },
        (true, Country::Es) => match r.below(3) {
            0 => {
                out.push_str("MOVISTAR_");
                push_upper_hex(out, r, 4);
            }
            1 => {
                out.push_str("MiFibra-");
                push_upper_hex(out, r, 4);
            }
            _ => {
                out.push_str("Casa ");
                out.push_str(last);
            }
        },
        (true, Country::Gb) => match r.below(3) {
            0 => {
                out.push_str("BTHub6-");
                push_upper_alnum(out, r, 4);
            }
            1 => {
                out.push_str("SKY");
                push_upper_alnum(out, r, 5);
            }
            _ => {
                out.push_str("VM");
                push_digits(out, r, 7);
            }
        },
        (true, Country::Us) => match r.below(3) {
            0 => {
                out.push_str("ATT");
                push_upper_alnum(out, r, 3);
                push_random_alpha(out, r, 1);
            }
            1 => {
                out.push_str("HOME-");
                push_upper_hex(out, r, 4);
            }
            _ => {
                out.push_str("Linksys");
                push_digits(out, r, 5);
            }
        },
        _ => match r.below(8) {
            0 => {
                out.push_str("NETGEAR");
                push_digits(out, r, 2);
                if r.chance(0.3) {
                    out.push_str("-5G");
                }
            }
            1 => {
                out.push_str("TP-Link_");
                push_upper_hex(out, r, 4);
            }
            2 => {
                out.push_str("ASUS_");
                push_upper_hex(out, r, 2);
                if r.chance(0.5) {
                    out.push_str("_5G");
                }
            }
            3 => {
                out.push_str("ORBI");
                push_digits(out, r, 2);
            }
            4 => {
                out.push_str("Linksys");
                push_digits(out, r, 5);
            }
            5 => {
                push_ascii_upper_first(out, last);
                out.push_str(r.pick(&["_WiFi", " Home", "-Net", "Family"]));
            }
            _ => out.push_str(r.pick(&[
                "MyHome",
                "HomeNet",
                "The LAN Before Time",
                "Pretty Fly for a WiFi",
                "FBI Surveillance Van 3",
                "Bill Wi the Science Fi",
                "It Hurts When IP",
                "Abraham Linksys",
                "\"Not Your WiFi\"",
            ])),
        },
    }
}

fn push_ascii_upper_first(out: &mut String, s: &str) {
    let start = out.len();
    push_ascii_lower(out, s);
    let end = (start + 1).min(out.len());
    out[start..end].make_ascii_uppercase();
}

fn push_random_alpha(out: &mut String, r: &mut Rng, n: usize) {
    crate::text::push_random_from(out, r, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", n);
}

/// A mobile app API token: 32 random bytes in unpadded base64url (43 characters).
pub fn api_token(out: &mut String, r: &mut Rng) {
    out.clear();
    push_base64url(out, &random_bytes::<32>(r));
}

const BCRYPT64: &[u8; 64] = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A bcrypt hash shape: `$2b$12$`, a 22-character salt and a 31-character hash in bcrypt's
/// base64. The last character of each part carries only 2 or 4 bits, so it is drawn from the
/// symbols a real encoder can produce.
pub fn bcrypt_hash(out: &mut String, r: &mut Rng) {
    out.clear();
    out.push_str("$2b$12$");
    push_random64(out, r, BCRYPT64, 21);
    out.push(char::from(r.pick(b".Oeu")));
    push_random64(out, r, BCRYPT64, 30);
    out.push(char::from(r.pick(b".CGKOSWaeimquy26")));
}

/// An Amazon Login-with-Amazon token: `Atza|IwEB…` (access) or `Atzr|IwEB…` (refresh).
pub fn lwa_token(out: &mut String, r: &mut Rng, refresh: bool) {
    out.clear();
    out.push_str(if refresh { "Atzr|IwEB" } else { "Atza|IwEB" });
    let n = r.range(290, 330) as usize;
    push_random64(out, r, crate::text::B64URL, n);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Aspect;

    #[test]
    fn folding() {
        let mut s = String::new();
        push_ascii_lower(&mut s, "Françoise Müller-Groß O'Brien");
        assert_eq!(s, "francoisemullergrossobrien");
        s.clear();
        push_ascii_upper(&mut s, "Niccolò");
        assert_eq!(s, "NICCOLO");
    }

    #[test]
    fn public_ips_are_public() {
        let mut r = Rng::new(3, 0, Aspect::Profile);
        let mut s = String::new();
        let mut v6 = 0;
        for _ in 0..20_000 {
            public_ip(&mut s, &mut r);
            match s.parse::<std::net::IpAddr>().unwrap() {
                std::net::IpAddr::V4(a) => {
                    assert!(!a.is_private() && !a.is_loopback() && !a.is_link_local());
                    assert!(!a.is_multicast() && !a.is_documentation() && !a.is_unspecified());
                    assert!(is_public_v4(u32::from(a)));
                }
                std::net::IpAddr::V6(a) => {
                    v6 += 1;
                    // Printed canonically, so stores read back the same text.
                    assert_eq!(a.to_string(), s);
                }
            }
        }
        assert!((1500..2500).contains(&v6), "{v6}");
        assert!(!is_public_v4(u32::from_be_bytes([100, 100, 1, 1])));
        assert!(!is_public_v4(u32::from_be_bytes([198, 19, 1, 1])));
        assert!(is_public_v4(u32::from_be_bytes([8, 8, 8, 8])));
    }

    #[test]
    fn bcrypt_shape() {
        let mut s = String::new();
        bcrypt_hash(&mut s, &mut Rng::new(1, 2, Aspect::Profile));
        assert_eq!(s.len(), 60);
        assert!(s.starts_with("$2b$12$"));
        assert!(s[7..].bytes().all(|b| BCRYPT64.contains(&b)));
    }
}
