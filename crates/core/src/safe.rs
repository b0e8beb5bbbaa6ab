//! Making server-controlled strings safe, once, where they enter the model.
//!
//! Everything a scanned server chooses (product and version strings, evidence quoting its
//! answers, error text, container names, field paths, notes) passes [`service`] before a
//! [`Service`] leaves the scan engine, and again when one is loaded from the store (a scan kept
//! by an older version). Two things happen:
//!
//! - **Controls become visible escapes** ([`text`]): C0 and C1 control characters, DEL, the
//!   bidirectional controls (U+202A–U+202E, U+2066–U+2069, and the marks U+200E, U+200F,
//!   U+061C) and the line and paragraph separators U+2028/U+2029 are written as `\x1b`,
//!   `\u{202e}` …, so no output (a terminal table, Markdown, HTML, CSV, the SQLite store) can
//!   carry a raw escape sequence or reorder what a reader sees.
//! - **Names are data** ([`name`]): a name that holds a sensitive value (an index per customer
//!   e-mail, a JSON object keyed by phone number) has that value masked with the classifier's
//!   own validators and masks ([`crate::classify::names`]).
//!
//! Output formats still escape for their own syntax (HTML, Markdown, CSV); this module makes
//! sure what they escape is already free of terminal and bidi controls.

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::classify::names;
use crate::model::{Container, Field, ScanReport, Service};

/// Whether `c` is written as an escape (see the module docs).
fn unsafe_char(c: char) -> bool {
    let u = c as u32;
    u < 0x20
        || (0x7f..=0x9f).contains(&u)
        || (0x202a..=0x202e).contains(&u)
        || (0x2066..=0x2069).contains(&u)
        || matches!(u, 0x200e | 0x200f | 0x061c | 0x2028 | 0x2029)
}

/// `s` with control and bidi characters as visible escapes (`\x1b`, `\u{202e}`).
///
/// ```
/// use leakscope_core::safe::text;
/// assert_eq!(text("evil\u{1b}]0;PWNED\u{7}"), "evil\\x1b]0;PWNED\\x07");
/// assert_eq!(text("abc\u{202e}fed"), "abc\\u{202e}fed");
/// assert_eq!(text("plain"), "plain");
/// ```
pub fn text(s: &str) -> String {
    escape(s).into_owned()
}

fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !unsafe_char(c) {
            out.push(c);
        } else if (c as u32) <= 0xff {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
    Cow::Owned(out)
}

/// A name a server chose: sensitive spans masked, then controls escaped.
pub fn name(s: &str) -> String {
    escape(&names::mask_name(s)).into_owned()
}

/// Free text that may quote server-chosen names (notes, methods, evidence): controls escaped,
/// sensitive spans masked (digit-only spans left alone, see [`names::mask_text`]).
pub fn note(s: &str) -> String {
    escape(&names::mask_text(s)).into_owned()
}

fn each(v: &mut [String], f: fn(&str) -> String) {
    for s in v {
        *s = f(s);
    }
}

/// Makes one field safe (path masked and escaped; examples are masked already, escaped too).
pub fn field(f: &mut Field) {
    f.path = name(&f.path);
    each(&mut f.categories, text);
    each(&mut f.examples, text);
    each(&mut f.fingerprints, text);
}

/// Makes one container safe: its name, kind, method and every field.
pub fn container(c: &mut Container) {
    c.name = name(&c.name);
    c.kind = text(&c.kind);
    if let Some(m) = &mut c.subjects_method {
        *m = note(m);
    }
    each(&mut c.categories, text);
    c.fields.iter_mut().for_each(field);
}

/// Makes every server-controlled string of a service safe (see the module docs).
pub fn service(s: &mut Service) {
    s.address = text(&s.address);
    s.protocol = text(&s.protocol);
    for v in [&mut s.product, &mut s.version].into_iter().flatten() {
        *v = text(v);
    }
    each(&mut s.evidence, note);
    each(&mut s.hostnames, text);
    each(&mut s.out_of_scope_peers, note);
    each(&mut s.inventory_notes, note);
    s.containers.iter_mut().for_each(container);
}

/// [`service`] for every service of a report, and the report's own strings.
pub fn report(r: &mut ScanReport) {
    r.scan_id = text(&r.scan_id);
    r.services.iter_mut().for_each(service);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Access, Severity};

    #[test]
    fn every_kind_of_control_is_escaped() {
        let raw = "a\u{0}b\tc\nd\u{1b}[2Je\u{7f}f\u{9b}g\u{202a}h\u{2066}i\u{200f}j\u{2028}k";
        let t = text(raw);
        assert_eq!(
            t,
            "a\\x00b\\x09c\\x0ad\\x1b[2Je\\x7ff\\x9bg\\u{202a}h\\u{2066}i\\u{200f}j\\u{2028}k"
        );
        assert!(!t.chars().any(unsafe_char));
        // Escaping is idempotent: a second pass (a stored scan loaded again) changes nothing.
        assert_eq!(text(&t), t);
        assert_eq!(text("Ünïcödé ok · ≤ →"), "Ünïcödé ok · ≤ →");
    }

    #[test]
    fn a_service_is_safe_in_every_string() {
        let mut s = Service {
            address: "127.0.0.1".into(),
            port: 6379,
            tls: false,
            protocol: "redis".into(),
            product: Some("Redis\u{1b}]0;PWNED\u{7}".into()),
            version: Some("7.0\u{202e}51".into()),
            access: Access::Open,
            evidence: vec!["INFO answered -ERR \u{1b}[31mRED".into()],
            severity: Severity::High,
            hostnames: vec![],
            out_of_scope_peers: vec!["anna@example.com:27017".into()],
            auth_attempts: 0,
            containers: vec![Container {
                name: "customer-anna@example.com\u{202e}".into(),
                kind: "index".into(),
                records: Some(1),
                records_estimated: false,
                system: false,
                bytes: None,
                sampled: 1,
                subjects_estimate: None,
                subjects_method: Some("distinct by_mail.erin@example.com values".into()),
                subjects_interval: None,
                categories: vec![],
                fields: vec![Field {
                    path: "by_mail.erin@example.com.plan".into(),
                    categories: vec![],
                    confidence: 0.0,
                    seen: 1,
                    matched: 0,
                    examples: vec![],
                    fingerprints: vec![],
                }],
            }],
            inventory_notes: vec!["index customer-anna@example.com: \u{7}failed".into()],
            exposure: None,
        };
        service(&mut s);
        let json = serde_json::to_string(&s).unwrap();
        for raw in [
            "\\u001b",
            "\\u0007",
            "\u{202e}",
            "anna@example.com",
            "erin@example.com",
        ] {
            assert!(!json.contains(raw), "{raw:?} in {json}");
        }
        assert_eq!(s.product.as_deref(), Some("Redis\\x1b]0;PWNED\\x07"));
        // A dot is both a path separator and part of an address: the longest reading is masked.
        assert_eq!(s.containers[0].fields[0].path, "b•••@e•••.com.plan");
        let again = s.clone();
        service(&mut s);
        assert_eq!(s, again, "making safe twice changes nothing");
    }
}
