//! Person identifiers as keyed fingerprints: normalised (e-mail lower-cased and trimmed, phone
//! in E.164, user ids scoped to their system) and hashed with a key drawn for this scan only,
//! so the same person gives the same fingerprint in every store of the scan and no fingerprint
//! means anything after it.

use std::hash::{BuildHasher, RandomState};

/// The kinds of identifier that single out one person, by the classifier's category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdKind {
    Email,
    Phone,
    UserId,
    Username,
    NationalId,
}

impl IdKind {
    /// The kind of a field whose strongest category is `category`, if it names a person.
    pub fn of_category(category: &str) -> Option<IdKind> {
        Some(match category {
            "identity.email" => IdKind::Email,
            "identity.phone" => IdKind::Phone,
            "identity.user_id" => IdKind::UserId,
            "identity.username" => IdKind::Username,
            "government.id" => IdKind::NationalId,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IdKind::Email => "e-mail",
            IdKind::Phone => "phone",
            IdKind::UserId => "user id",
            IdKind::Username => "user name",
            IdKind::NationalId => "national id",
        }
    }
}

/// Regions tried for a phone number written without a country code, as the classifier does.
const NATIONAL_REGIONS: &[rlibphonenumber::Region] = {
    use rlibphonenumber::Region::*;
    &[US, GB, DE, FR, IT, ES, NL, BE, AT, CH, PT, IE, CA]
};

/// A phone number in E.164 (`+4915112345678`), from international (`+49 …`, `0049 …`) or
/// national writing (the first of the classifier's markets where it is a valid number).
pub fn e164(raw: &str) -> Option<String> {
    let t = raw.trim();
    let digits = t.bytes().filter(u8::is_ascii_digit).count();
    if !(7..=15).contains(&digits) {
        return None;
    }
    let util = &*rlibphonenumber::PHONE_NUMBER_UTIL;
    let valid = |n: &rlibphonenumber::PhoneNumber| util.is_valid_number(n);
    let intl = match t.strip_prefix("00") {
        Some(rest) => Some(format!("+{rest}")),
        None => t.starts_with('+').then(|| t.to_string()),
    };
    let number = match intl {
        Some(i) => util.parse(&i, None).ok().filter(valid)?,
        None => NATIONAL_REGIONS
            .iter()
            .find_map(|&r| util.parse(t, Some(r)).ok().filter(valid))?,
    };
    Some(
        number
            .format_as(rlibphonenumber::PhoneNumberFormat::E164)
            .into_owned(),
    )
}

/// Whether a user id is unique by construction (a UUID, or a long random-looking token), so
/// the same value in two systems is the same account; short ids (`42`, `jdoe`) are only unique
/// within their own system.
fn globally_unique(id: &str) -> bool {
    let b = id.as_bytes();
    let uuid = b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        });
    uuid || (b.len() >= 20
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
        && b.iter().filter(|c| c.is_ascii_digit()).count() >= 4
        && b.iter().filter(|c| c.is_ascii_alphabetic()).count() >= 4)
}

/// The normal form of an identifier, and whether it is comparable across systems: `None` when
/// the value is not an identifier of that kind (an empty cell, `n/a`, a number that is no phone).
pub fn normalise(kind: IdKind, raw: &str) -> Option<(String, bool)> {
    let t = raw.trim();
    if t.is_empty() || t.len() > 256 {
        return None;
    }
    match kind {
        IdKind::Email => {
            let e = t.to_lowercase();
            let (local, domain) = e.rsplit_once('@')?;
            (!local.is_empty() && domain.contains('.') && !e.contains(char::is_whitespace))
                .then_some((e, true))
        }
        IdKind::Phone => e164(t).map(|p| (p, true)),
        // National ids are unique within their country's scheme; the scheme is in the format.
        IdKind::NationalId => Some((
            t.chars()
                .filter(|c| !c.is_whitespace() && *c != '-')
                .flat_map(char::to_uppercase)
                .collect(),
            true,
        )),
        IdKind::UserId => Some((t.to_lowercase(), globally_unique(t))),
        IdKind::Username => Some((t.to_lowercase(), false)),
    }
}

/// The scan's fingerprint key: SipHash keyed with 128 random bits drawn when the scan starts
/// (`RandomState`). It is never written anywhere, so the fingerprints cannot be recomputed from
/// a guessed identifier after the scan, and two scans' fingerprints never match.
#[derive(Debug, Clone, Default)]
pub struct PeopleKey(RandomState);

impl PeopleKey {
    pub fn new() -> PeopleKey {
        PeopleKey(RandomState::new())
    }

    /// The fingerprint of `raw` as an identifier of `kind` in `system` (an `address:port`),
    /// or `None` when it is not one.
    pub fn fingerprint(&self, kind: IdKind, system: &str, raw: &str) -> Option<u64> {
        self.fingerprint_scoped(kind, system, raw).map(|(fp, _)| fp)
    }

    /// [`Self::fingerprint`], and whether the identifier is only meaningful in `system`.
    pub fn fingerprint_scoped(&self, kind: IdKind, system: &str, raw: &str) -> Option<(u64, bool)> {
        let (norm, global) = normalise(kind, raw)?;
        let scope = if global { "" } else { system };
        Some((self.0.hash_one((kind, scope, norm.as_str())), !global))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_normalised_before_they_are_hashed() {
        let k = PeopleKey::new();
        let fp = |kind, sys, v| k.fingerprint(kind, sys, v);
        assert_eq!(
            fp(IdKind::Email, "a:1", " Maria.Rossi@Example.COM "),
            fp(IdKind::Email, "b:2", "maria.rossi@example.com")
        );
        assert_eq!(fp(IdKind::Email, "a:1", "not an address"), None);
        assert_eq!(e164("+49 151 23456789").as_deref(), Some("+4915123456789"));
        assert_eq!(e164("0049 151 23456789").as_deref(), Some("+4915123456789"));
        assert_eq!(
            e164("(202) 555-0143").is_some(),
            e164("+1 202 555 0143").is_some()
        );
        assert_eq!(
            fp(IdKind::Phone, "a:1", "+39 312 345 6789"),
            fp(IdKind::Phone, "b:1", "0039-312-3456789")
        );
        assert_eq!(fp(IdKind::Phone, "a:1", "12"), None);
        // Short ids are their system's own: the same `42` in two stores is two people.
        assert_ne!(
            fp(IdKind::UserId, "a:1", "42"),
            fp(IdKind::UserId, "b:1", "42")
        );
        assert_eq!(
            fp(IdKind::UserId, "a:1", "42"),
            fp(IdKind::UserId, "a:1", "42")
        );
        // A UUID is one account wherever it appears.
        let u = "0f8fad5b-d9cb-469f-a165-70867728950e";
        let upper = u.to_uppercase();
        assert_eq!(
            fp(IdKind::UserId, "a:1", u),
            fp(IdKind::UserId, "b:1", &upper)
        );
        // Kinds never collide: an id that happens to equal a user name is not that user.
        assert_ne!(
            fp(IdKind::UserId, "a:1", "jdoe"),
            fp(IdKind::Username, "a:1", "jdoe")
        );
    }

    #[test]
    fn fingerprints_depend_on_the_scan_key() {
        let (a, b) = (PeopleKey::new(), PeopleKey::new());
        let v = "maria.rossi@example.com";
        assert_ne!(
            a.fingerprint(IdKind::Email, "", v),
            b.fingerprint(IdKind::Email, "", v)
        );
    }
}
