//! The figures every human-facing report leads with: what is exposed, how bad, how many people,
//! which categories of data — computed once from a scan document.

use std::collections::BTreeMap;

use crate::model::{Impact, ScanReport, Service, Severity};

/// Exposure figures of one scan.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub services: usize,
    /// Services readable without credentials or with default ones.
    pub exposed: usize,
    pub by_severity: BTreeMap<Severity, usize>,
    /// Records in containers of exposed services.
    pub exposed_records: u64,
    /// Records per sensitive category, over exposed services' containers holding it.
    pub records_by_category: BTreeMap<String, u64>,
    /// Approximate number of people in exposed stores: the scan's `impact` (distinct people
    /// across all stores) where it has one; else, for scans without it, per service the largest
    /// estimate, summed over services (an upper bound: stores may hold the same people).
    pub subjects: u64,
    /// The scan's de-duplicated people figure with its interval, when it has one.
    pub impact: Option<Impact>,
    /// True when `subjects` had to fall back to record counts (no distinct-people estimate).
    pub subjects_from_records: bool,
    /// Whether any exposed service lists what it holds (false with `--no-inventory`: then
    /// `exposed_records` is not a count of anything).
    pub inventoried: bool,
}

/// True when a verdict means data can be read by whoever reaches the port.
pub fn exposed(s: &Service) -> bool {
    s.access.is_exposed()
}

impl Summary {
    pub fn of(report: &ScanReport) -> Summary {
        let mut sum = Summary {
            services: report.services.len(),
            ..Summary::default()
        };
        for s in &report.services {
            *sum.by_severity.entry(s.severity).or_default() += 1;
            if !exposed(s) {
                continue;
            }
            sum.exposed += 1;
            sum.inventoried |= !s.containers.is_empty();
            let mut people: Option<u64> = None;
            let mut fallback = 0u64;
            for c in &s.containers {
                let records = c.records.unwrap_or(0);
                sum.exposed_records += records;
                for cat in &c.categories {
                    *sum.records_by_category.entry(cat.clone()).or_default() += records;
                }
                if let Some(n) = c.subjects_estimate {
                    people = Some(people.map_or(n, |p| p.max(n)));
                } else if c.categories.iter().any(|k| k.starts_with("identity.")) {
                    fallback = fallback.max(records);
                }
            }
            match people {
                Some(n) => sum.subjects += n,
                None if fallback > 0 => {
                    sum.subjects += fallback;
                    sum.subjects_from_records = true;
                }
                None => {}
            }
        }
        if let Some(i) = &report.impact {
            sum.subjects = i.people;
            sum.subjects_from_records = false;
            sum.impact = Some(i.clone());
        }
        sum
    }

    /// `about 10,512 people (95 %: 10,400–10,700)`, or the per-store figure's words for scans
    /// without a de-duplicated one.
    pub fn people_phrase(&self) -> String {
        match (&self.impact, self.subjects, self.subjects_from_records) {
            (Some(i), _, _) => format!(
                "about {} people (95 % interval {}–{}, de-duplicated across stores)",
                thousands(i.people),
                thousands(i.people_low),
                thousands(i.people_high)
            ),
            (None, 0, _) => "people not estimated".to_string(),
            (None, n, true) => format!("at most {} people", thousands(n)),
            (None, n, false) => format!("about {} people", thousands(n)),
        }
    }

    /// The worst severity present.
    pub fn worst(&self) -> Option<Severity> {
        self.by_severity.keys().next_back().copied()
    }
}

/// What a reader must know before any figure of the scan, when the scan is not a complete
/// scan that reached something: an incomplete scan (interrupted or still running) covers only
/// what it probed; a scan that reached nothing says nothing about exposure.
pub fn caveat(report: &ScanReport) -> Option<String> {
    let st = &report.stats;
    if !report.complete() {
        return Some(format!(
            "INCOMPLETE SCAN: interrupted or still running after {} endpoints probed; everything \
             below covers only those (continue it with `leakscope scan --resume {}`).",
            thousands(st.ports_probed),
            report.scan_id
        ));
    }
    if report.unreachable() {
        return Some(format!(
            "NOTHING COULD BE REACHED: each of the {} endpoints probed failed with a network error \
             (no route, network down or time-out); this scan says nothing about what is exposed.",
            thousands(st.ports_probed)
        ));
    }
    None
}

/// When the scan finished, or that it did not.
pub fn finished(report: &ScanReport) -> String {
    report
        .finished_at
        .clone()
        .unwrap_or_else(|| "not finished (incomplete scan)".into())
}

/// The records figure in words: a count, or that none was made (`--no-inventory`).
pub fn records_phrase(sum: &Summary) -> String {
    if sum.exposed > 0 && !sum.inventoried {
        "records not counted (no inventory)".into()
    } else {
        format!("{} records", thousands(sum.exposed_records))
    }
}

/// `address:port`, with brackets around IPv6 addresses.
pub fn endpoint(s: &Service) -> String {
    if s.address.contains(':') {
        format!("[{}]:{}", s.address, s.port)
    } else {
        format!("{}:{}", s.address, s.port)
    }
}

/// Product and version as far as known (`OpenSearch 2.19.6`, `Redis`, or empty).
pub fn product(s: &Service) -> String {
    [s.product.as_deref(), s.version.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ")
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Human wording of a category id, for reports read by people.
pub fn category_label(id: &str) -> &str {
    match id {
        "identity.email" => "e-mail addresses",
        "identity.username" => "user names",
        "identity.name" => "full names",
        "identity.phone" => "phone numbers",
        "identity.address" => "postal addresses",
        "identity.birthdate" => "dates of birth",
        "identity.user_id" => "user ids",
        "credential.password" => "passwords",
        "credential.password_hash" => "password hashes",
        "credential.api_token" => "API tokens",
        "credential.oauth_token" => "OAuth tokens (e.g. Amazon Alexa)",
        "credential.jwt" => "JSON Web Tokens",
        "credential.cloud_key" => "cloud access keys",
        "credential.private_key" => "private keys",
        "device.id" => "device serials / ids",
        "device.mac" => "MAC addresses",
        "device.model" => "device models",
        "device.firmware" => "firmware versions",
        "device.name" => "device names given by users",
        "network.ssid" => "Wi-Fi network names (SSIDs)",
        "network.ip" => "IP addresses",
        "location.geo" => "geolocation",
        "health.body" => "body measurements (health data)",
        "health.nutrition" => "nutrition intake (health data)",
        "health.vitals" => "vital signs (health data)",
        "health.condition" => "health conditions",
        "financial.card" => "payment card numbers",
        "financial.iban" => "bank account numbers (IBAN)",
        "government.id" => "government ids (SSN, codice fiscale …)",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(2_400_000), "2,400,000");
    }
}
