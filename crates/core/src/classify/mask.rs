//! Masked examples: what a report may show of a sensitive value.
//!
//! The report must not become the next leak, so an example keeps only what helps
//! a person recognise the kind of data — the shape, a well-known prefix, at most a few
//! characters — and never enough to use or look up the value: `j•••@g•••.com`,
//! `+39 •••• ••12`, `•••• 4242`, `Atza|•••9f2c`. Health figures become a range (`60–70`).
//! Public prefixes that identify a vendor or an algorithm (`Atza|`, `ghp_`, `$2b$12$`) are
//! kept because revoking a credential starts with knowing whose it is.

use super::detect;

/// The mask glyph.
const M: &str = "•••";

fn first_char(s: &str) -> String {
    s.chars().next().map(|c| c.to_string()).unwrap_or_default()
}

fn last_chars(s: &str, n: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    chars[chars.len().saturating_sub(n)..].iter().collect()
}

/// Masks `value` as an example of `category`.
pub fn mask(category: &str, value: &str) -> String {
    let v = value.trim();
    if v.is_empty() {
        return String::new();
    }
    match category {
        "identity.email" => email(v),
        "identity.phone" => phone(v),
        "financial.card" => format!("•••• {}", last_digits(v, 4)),
        "financial.iban" => iban(v),
        "government.id" => format!("{M}{}", last_chars(v, 1)),
        "identity.birthdate" | "identity.address" | "identity.name" => initials(v),
        "identity.username" | "device.name" | "network.ssid" | "device.model" => {
            format!("{}{M}", first_char(v))
        }
        "identity.user_id" | "device.id" => format!("{M}{}", last_chars(v, 3)),
        "device.mac" => mac(v),
        "device.firmware" => match v.split_once('.') {
            Some((major, _)) if major.len() <= 3 => format!("{major}.{M}"),
            _ => M.to_string(),
        },
        "network.ip" => ip(v),
        "location.geo" => M.to_string(),
        "credential.password" | "credential.private_key" => private(v),
        "credential.password_hash" => password_hash(v),
        "credential.jwt" => match detect::jwt_alg(v) {
            Some(alg) => format!("JWT {alg} {M}"),
            None => format!("JWT {M}"),
        },
        "credential.api_token" | "credential.oauth_token" | "credential.cloud_key" => token(v),
        c if c.starts_with("health.") => health(v),
        _ => M.to_string(),
    }
}

fn email(v: &str) -> String {
    match v.rsplit_once('@') {
        Some((local, domain)) => {
            let tld = domain.rsplit_once('.').map_or("", |(_, t)| t);
            if tld.is_empty() || tld.len() > 12 {
                format!("{}{M}@{M}", first_char(local))
            } else {
                format!("{}{M}@{}{M}.{tld}", first_char(local), first_char(domain))
            }
        }
        None => M.to_string(),
    }
}

fn last_digits(v: &str, n: usize) -> String {
    let d: String = v.chars().filter(char::is_ascii_digit).collect();
    if d.len() <= n + 4 {
        // Too short to show anything without revealing much of it.
        return "••••".into();
    }
    last_chars(&d, n)
}

fn phone(v: &str) -> String {
    let last = last_digits(v, 2);
    if let Some(rest) = v.strip_prefix('+') {
        // Country code: the digits before the first separator, at most three.
        let cc: String = rest
            .chars()
            .take_while(char::is_ascii_digit)
            .take(3)
            .collect();
        let cc = if rest
            .chars()
            .nth(cc.len())
            .is_some_and(|c| c.is_ascii_digit())
        {
            // No separator: the calling code is ambiguous in length; show the first digit only.
            cc.chars().take(1).collect()
        } else {
            cc
        };
        format!("+{cc} •••• ••{last}")
    } else {
        format!("•••• ••{last}")
    }
}

fn iban(v: &str) -> String {
    let c: String = v.chars().filter(|c| !c.is_whitespace()).collect();
    if c.len() < 8 {
        return M.into();
    }
    format!(
        "{}•• •••• {}",
        &c[..2].to_ascii_uppercase(),
        last_chars(&c, 4)
    )
}

fn initials(v: &str) -> String {
    // Dates: the century only; names and addresses: initials of at most two words.
    if let Some(d) = detect::parse_date(v) {
        return format!("{}••-••-••", d.year / 100);
    }
    let words: Vec<String> = v
        .split_whitespace()
        .filter(|w| w.chars().next().is_some_and(char::is_alphabetic))
        .take(2)
        .map(|w| format!("{}{M}", first_char(w)))
        .collect();
    if words.is_empty() {
        M.into()
    } else {
        words.join(" ")
    }
}

fn mac(v: &str) -> String {
    let sep = if v.contains('-') { '-' } else { ':' };
    let hex: String = v.chars().filter(char::is_ascii_hexdigit).collect();
    if hex.len() != 12 {
        return M.into();
    }
    let s = sep.to_string();
    format!("{}{s}••{s}••{s}••{s}••{s}{}", &hex[..2], &hex[10..])
}

fn ip(v: &str) -> String {
    if v.contains(':') {
        format!("{}:{M}", v.split(':').next().unwrap_or(""))
    } else {
        format!("{}.•.•.•", v.split('.').next().unwrap_or(""))
    }
}

fn private(v: &str) -> String {
    if v.starts_with("-----BEGIN ") {
        let label: String = v.lines().next().unwrap_or("").chars().take(40).collect();
        return format!("{label}{M}");
    }
    "•••••".into()
}

fn password_hash(v: &str) -> String {
    // Keep the algorithm id and cost (`$2b$12$`), never salt or digest.
    if let Some(rest) = v.strip_prefix('$') {
        let mut out = String::from("$");
        for part in rest.split('$').take(2) {
            if part.len() <= 12 && !part.contains(['=', ',']) || part.len() <= 3 {
                out.push_str(part);
                out.push('$');
            } else {
                break;
            }
        }
        return format!("{out}{M}");
    }
    if let Some((algo, _)) = v.split_once('$') {
        if algo.len() <= 20 && algo.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return format!("{algo}${M}");
        }
    }
    if let Some(end) = v.find('}') {
        if v.starts_with('{') && end <= 10 {
            return format!("{}{M}", &v[..=end]);
        }
    }
    M.into()
}

/// Public prefixes of token formats, shown so the owner knows what to revoke. Anything else
/// in front of a token is random and stays masked.
const TOKEN_PREFIXES: &[&str] = &[
    "Atza|",
    "Atzr|",
    "Atc|",
    "github_pat_",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "xoxs-",
    "xapp-",
    "sk_live_",
    "sk_test_",
    "rk_live_",
    "rk_test_",
    "whsec_",
    "ya29.",
    "glpat-",
    "npm_",
    "pypi-",
    "shpat_",
    "shpss_",
    "SG.",
    "AKIA",
    "ASIA",
    "AIza",
    "sk-",
];

fn token_prefix(v: &str) -> Option<&'static str> {
    TOKEN_PREFIXES.iter().copied().find(|p| v.starts_with(p))
}

fn token(v: &str) -> String {
    if v.len() < 12 {
        return M.into();
    }
    match token_prefix(v) {
        Some(p) => format!("{p}{M}{}", last_chars(v, 4)),
        None => format!("{M}{}", last_chars(v, 4)),
    }
}

fn health(v: &str) -> String {
    let Some(x) = detect::parse_number(v) else {
        return M.into();
    };
    let width = if x.abs() >= 10.0 {
        10.0
    } else if x.abs() >= 1.0 {
        1.0
    } else {
        0.5
    };
    let lo = (x / width).floor() * width;
    let hi = lo + width;
    if width < 1.0 {
        format!("{lo:.1}–{hi:.1}")
    } else {
        format!("{lo:.0}–{hi:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_from_the_brief() {
        assert_eq!(
            mask("identity.email", "john.doe@gmail.com"),
            "j•••@g•••.com"
        );
        assert_eq!(mask("identity.phone", "+39 337 6965150"), "+39 •••• ••50");
        assert_eq!(mask("financial.card", "4242 4242 4242 4242"), "•••• 4242");
        assert_eq!(
            mask(
                "credential.oauth_token",
                "Atza|IwEBIDx0r9s8d7f6a5b4c3d2e1f0g9f2c"
            ),
            "Atza|•••9f2c"
        );
        assert_eq!(
            mask(
                "credential.api_token",
                "ghp_abcdefghijklmnopqrstuvwxyz0123456789"
            ),
            "ghp_•••6789"
        );
        assert_eq!(
            mask("credential.api_token", "sk_live_51HabcdefghijklmnopQRST"),
            "sk_live_•••QRST"
        );
        assert_eq!(
            mask(
                "credential.password_hash",
                "$2b$12$tAYs1NeA6O5SVZzohe9skupSN/tN.EyU1r7ECJa50poMWV1dibZ8."
            ),
            "$2b$12$•••"
        );
        assert_eq!(mask("health.body", "62.4"), "60–70");
        assert_eq!(mask("health.body", "1.11"), "1–2");
        assert_eq!(mask("identity.birthdate", "1995-06-02"), "19••-••-••");
        assert_eq!(mask("device.mac", "2C:AA:8E:E4:89:9A"), "2C:••:••:••:••:9A");
        assert_eq!(
            mask("financial.iban", "IT93G0200837523590859392976"),
            "IT•• •••• 2976"
        );
        assert_eq!(mask("identity.name", "Nuria García"), "N••• G•••");
    }

    #[test]
    fn masks_reveal_at_most_a_few_characters() {
        let samples = [
            ("identity.email", "someone.long@example.org"),
            ("identity.phone", "+17736758238"),
            (
                "credential.api_token",
                "i5T_hexrqstuJflZtLOK8cLl7EjMPmStv5kVdRUP68I",
            ),
            (
                "credential.jwt",
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
            ),
            ("credential.password", "hunter2hunter2"),
            ("government.id", "RSSMRA85T10A562S"),
            ("identity.user_id", "e94180cd-ef88-4a01-b3d8-5ecdd7a393fc"),
            ("network.ip", "45.92.249.37"),
            ("location.geo", "45.4642, 9.1900"),
        ];
        for (cat, v) in samples {
            let m = mask(cat, v);
            // Fixed labels (`JWT HS256`) aside, at most a handful of characters survive.
            let kept = m
                .trim_start_matches("JWT HS256")
                .chars()
                .filter(|c| c.is_alphanumeric())
                .count();
            assert!(kept <= 5, "{cat}: {m} keeps {kept} characters of {v}");
            assert_ne!(m, v);
        }
    }
}
