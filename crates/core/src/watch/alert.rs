//! The alert document (`leakscope.alert/v1`) and its renderings for Slack and e-mail.
//!
//! An alert says what happened (`kind`), where (endpoint, product), how bad (access, severity,
//! evidence), what is exposed (categories, containers with record counts and people, masked
//! examples) and what to revoke (credential kinds, how many fingerprints), with a one-paragraph
//! summary that holds no link. It is built only from the contract's [`Service`], which carries
//! masked examples and keyed fingerprints, never a raw value; fingerprints themselves stay out
//! of alerts (they go to the revocation list).
//!
//! The idempotency key is a hash of the store's watcher id, the endpoint, the endpoint's event
//! sequence number and the kind: the same event always gets the same key, also when it is
//! raised again after a crash, and two stores never share keys.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::EventKind;
use crate::model::{human_span, Access, Exposure, Service, Severity};
use crate::report::{revocation, summary};

/// Schema id of every alert document.
pub const ALERT_SCHEMA: &str = "leakscope.alert/v1";

/// Containers listed in one alert at most (the most sensitive first); `containers_total` says
/// how many there were.
const MAX_CONTAINERS: usize = 20;
/// Fields listed per container at most, and masked examples per field.
const MAX_FIELDS: usize = 10;
const MAX_EXAMPLES: usize = 2;

/// One alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub schema: String,
    /// Same event, same key: receivers drop a key they have already seen.
    pub idempotency_key: String,
    pub kind: EventKind,
    /// When the event was raised (RFC 3339).
    pub at: String,
    /// The watch group (its config name).
    pub group: String,
    /// `address:port`.
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    pub protocol: Option<String>,
    pub product: Option<String>,
    pub version: Option<String>,
    pub tls: bool,
    /// Access now; null when nothing answers.
    pub access: Option<Access>,
    /// Access before this event, where known.
    pub previous_access: Option<Access>,
    /// The service's severity (for `closed`: what it was while open).
    pub severity: Severity,
    /// How the verdict was reached (requests a person can repeat).
    pub evidence: Vec<String>,
    /// Sensitive-data categories found in the sampled containers.
    pub categories: Vec<String>,
    /// Records in the service's containers (catalogue figures where the store gives them).
    pub records: Option<u64>,
    /// Distinct people, estimated (the largest container's estimate), and how.
    pub people: Option<u64>,
    pub people_method: Option<String>,
    pub containers: Vec<AlertContainer>,
    pub containers_total: usize,
    /// Credential kinds to revoke, with where they were seen and how many fingerprints the
    /// revocation list holds.
    pub revoke: Vec<Revoke>,
    /// The exposure window (first seen open; closed at for `closed`).
    pub exposure: Option<Exposure>,
    /// What changed, in words.
    pub details: Vec<String>,
    /// One paragraph for people, with no link in it.
    pub summary: String,
    /// The stored scan (inventory) behind the figures: `leakscope report ID`.
    pub scan_id: Option<String>,
}

/// A container in an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertContainer {
    pub name: String,
    pub kind: String,
    pub records: Option<u64>,
    pub people: Option<u64>,
    pub categories: Vec<String>,
    /// Classified fields, with masked examples only.
    pub fields: Vec<AlertField>,
}

/// A classified field in an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertField {
    pub path: String,
    pub categories: Vec<String>,
    /// Masked examples (`j•••@g•••.com`).
    pub examples: Vec<String>,
}

/// A credential kind to revoke.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revoke {
    pub category: String,
    /// `container/field` where it was found (at most 20).
    pub found_in: Vec<String>,
    /// Fingerprints of sampled values written to the revocation list.
    pub fingerprints: u64,
}

/// The idempotency key of an event: 32 hex digits.
pub fn idempotency_key(watcher_id: &str, endpoint: &str, seq: u64, kind: EventKind) -> String {
    let mut h = Sha256::new();
    h.update(format!("{ALERT_SCHEMA}\n{watcher_id}\n{endpoint}\n{seq}\n{kind}").as_bytes());
    let d = h.finalize();
    d[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// What an alert is built from.
pub struct AlertInput<'a> {
    pub key: String,
    pub kind: EventKind,
    pub at: String,
    pub group: &'a str,
    pub endpoint: String,
    /// What answered at the observation that raised the event (None: nothing answered).
    pub observed: Option<&'a Service>,
    /// The last inventory of the service (what it exposes or exposed).
    pub inventory: Option<&'a Service>,
    pub previous_access: Option<Access>,
    pub details: Vec<String>,
    pub exposure: Option<Exposure>,
    pub scan_id: Option<String>,
}

fn sensitivity(c: &crate::model::Container) -> Severity {
    c.categories
        .iter()
        .map(|k| crate::rate::category_severity(k))
        .max()
        .unwrap_or(Severity::Info)
}

fn thousands(n: u64) -> String {
    summary::thousands(n)
}

impl Alert {
    pub fn build(i: AlertInput<'_>) -> Alert {
        // Figures from the inventory; identity and verdict from the freshest observation.
        let figures = i.inventory.or(i.observed);
        let now = i.observed.or(i.inventory);
        let mut containers: Vec<&crate::model::Container> = figures
            .map(|s| s.containers.iter().filter(|c| !c.system).collect())
            .unwrap_or_default();
        containers.sort_by_key(|c| {
            (
                std::cmp::Reverse(sensitivity(c)),
                std::cmp::Reverse(c.records),
            )
        });
        let mut categories: Vec<String> = containers
            .iter()
            .flat_map(|c| c.categories.iter().cloned())
            .collect();
        categories.sort();
        categories.dedup();
        let records = (!containers.is_empty())
            .then(|| containers.iter().filter_map(|c| c.records).sum::<u64>());
        let best = containers
            .iter()
            .filter(|c| c.subjects_estimate.is_some())
            .max_by_key(|c| c.subjects_estimate);
        let people = best.and_then(|c| c.subjects_estimate);
        let people_method = best.and_then(|c| c.subjects_method.clone());
        let revoke: Vec<Revoke> = figures
            .map(revocation::kinds)
            .unwrap_or_default()
            .into_iter()
            .map(|(category, found_in, fingerprints)| Revoke {
                category,
                found_in,
                fingerprints,
            })
            .collect();
        let severity = match i.kind {
            // What it was while open: that is what the owner must act on.
            EventKind::Closed => figures.map_or(Severity::Info, |s| s.severity),
            _ => now
                .map(|s| s.severity)
                .max(figures.map(|s| s.severity))
                .unwrap_or(Severity::Info),
        };
        let containers_total = containers.len();
        let listed: Vec<AlertContainer> = containers
            .iter()
            .take(MAX_CONTAINERS)
            .map(|c| AlertContainer {
                name: c.name.clone(),
                kind: c.kind.clone(),
                records: c.records,
                people: c.subjects_estimate,
                categories: c.categories.clone(),
                fields: c
                    .fields
                    .iter()
                    .filter(|f| !f.categories.is_empty())
                    .take(MAX_FIELDS)
                    .map(|f| AlertField {
                        path: f.path.clone(),
                        categories: f.categories.clone(),
                        examples: f.examples.iter().take(MAX_EXAMPLES).cloned().collect(),
                    })
                    .collect(),
            })
            .collect();
        let mut a = Alert {
            schema: ALERT_SCHEMA.to_string(),
            idempotency_key: i.key,
            kind: i.kind,
            at: i.at,
            group: i.group.to_string(),
            endpoint: i.endpoint,
            hostnames: now.map(|s| s.hostnames.clone()).unwrap_or_default(),
            protocol: now.map(|s| s.protocol.clone()),
            product: now.and_then(|s| s.product.clone()),
            version: now.and_then(|s| s.version.clone()),
            tls: now.is_some_and(|s| s.tls),
            access: i.observed.map(|s| s.access),
            previous_access: i.previous_access,
            severity,
            evidence: now.map(|s| s.evidence.clone()).unwrap_or_default(),
            categories,
            records,
            people,
            people_method,
            containers: listed,
            containers_total,
            revoke,
            exposure: i.exposure,
            details: i.details,
            summary: String::new(),
            scan_id: i.scan_id,
        };
        a.summary = a.summarise();
        a
    }

    fn what(&self) -> String {
        let product = match (&self.product, &self.version) {
            (Some(p), Some(v)) => format!("{p} {v}"),
            (Some(p), None) => p.clone(),
            _ => self.protocol.clone().unwrap_or_else(|| "service".into()),
        };
        format!("{product} at {}", self.endpoint)
    }

    fn exposes(&self) -> String {
        let mut parts = Vec::new();
        if self.containers_total > 0 {
            parts.push(format!(
                "{} container(s), {} records",
                self.containers_total,
                self.records.map_or("?".into(), thousands)
            ));
        }
        if let Some(p) = self.people {
            parts.push(format!("about {} people", thousands(p)));
        }
        if !self.categories.is_empty() {
            parts.push(format!("data: {}", self.categories.join(", ")));
        }
        parts.join("; ")
    }

    fn summarise(&self) -> String {
        let group = &self.group;
        let mut s = match self.kind {
            EventKind::Exposed => format!(
                "EXPOSED ({}): {} (group {group}) is readable {}.",
                self.severity,
                self.what(),
                if self.access == Some(Access::DefaultCredentials) {
                    "with well-known default credentials"
                } else {
                    "without credentials"
                }
            ),
            EventKind::Closed => format!(
                "CLOSED: {} (group {group}) is no longer readable ({}).",
                self.what(),
                self.access
                    .map_or("not answering".to_string(), |a| format!("now {a}"))
            ),
            EventKind::Changed => format!(
                "CHANGED ({}): {} (group {group}) exposes more: {}.",
                self.severity,
                self.what(),
                self.details.join("; ")
            ),
            EventKind::NewService => format!(
                "NEW SERVICE: {} (group {group}) answers, access {}.",
                self.what(),
                self.access.map_or("unknown", |a| a.as_str())
            ),
            EventKind::Flapping => format!(
                "FLAPPING ({}): {} (group {group}) keeps turning readable and closed again: {}.",
                self.severity,
                self.what(),
                self.details.first().map_or("", String::as_str)
            ),
            EventKind::FlappingStopped => format!(
                "STABLE: {} (group {group}) stopped flapping: {}.",
                self.what(),
                self.details.first().map_or("", String::as_str)
            ),
        };
        let exposes = self.exposes();
        if !exposes.is_empty() && self.kind != EventKind::NewService {
            s.push_str(if self.kind == EventKind::Closed {
                " It exposed "
            } else {
                " It exposes "
            });
            s.push_str(&exposes);
            s.push('.');
        }
        if !self.revoke.is_empty() && self.kind != EventKind::NewService {
            let kinds: Vec<&str> = self.revoke.iter().map(|r| r.category.as_str()).collect();
            s.push_str(&format!(" Revoke: {}.", kinds.join(", ")));
        }
        if let Some(e) = &self.exposure {
            match &e.closed_at {
                Some(c) => s.push_str(&format!(
                    " It was open for {} ({} to {c}).",
                    human_span(e.open_for_seconds),
                    e.first_seen_open
                )),
                None if self.kind != EventKind::NewService => {
                    s.push_str(&format!(" Open since {}.", e.first_seen_open))
                }
                None => {}
            }
        }
        if let Some(id) = &self.scan_id {
            s.push_str(&format!(" Details: leakscope report {id}."));
        }
        s
    }

    /// The body of a Slack-compatible incoming webhook: `{"text": …}`.
    pub fn slack(&self) -> serde_json::Value {
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        let mut text = format!("*{}*", esc(&self.summary));
        if !self.evidence.is_empty() && self.kind != EventKind::Closed {
            text.push_str(&format!("\nEvidence: {}", esc(&self.evidence.join("; "))));
        }
        for c in self.containers.iter().take(5) {
            text.push_str(&format!(
                "\n• `{}` {} records{}{}",
                esc(&c.name),
                c.records.map_or("?".into(), thousands),
                c.people.map_or(String::new(), |p| format!(
                    ", about {} people",
                    thousands(p)
                )),
                if c.categories.is_empty() {
                    String::new()
                } else {
                    format!(": {}", esc(&c.categories.join(", ")))
                }
            ));
        }
        text.push_str(&format!("\n_idempotency key {}_", self.idempotency_key));
        serde_json::json!({ "text": text })
    }

    /// Subject and plain-text body of an e-mail.
    pub fn email(&self) -> (String, String) {
        let subject = format!(
            "[leakscope] {} {}: {}",
            self.kind.as_str().to_uppercase().replace('_', " "),
            self.severity,
            self.what()
        );
        let mut body = format!("{}\n\n", self.summary);
        let mut line = |k: &str, v: String| body.push_str(&format!("{k:<16}{v}\n"));
        line("Endpoint:", self.endpoint.clone());
        line("Group:", self.group.clone());
        line("Service:", self.what());
        line(
            "Access:",
            format!(
                "{}{}",
                self.access.map_or("not answering", |a| a.as_str()),
                self.previous_access
                    .map_or(String::new(), |p| format!(" (was {p})"))
            ),
        );
        line("Severity:", self.severity.to_string());
        if let Some(p) = self.people {
            line("People:", format!("about {}", thousands(p)));
        }
        if !self.categories.is_empty() {
            line("Categories:", self.categories.join(", "));
        }
        for r in &self.revoke {
            line(
                "Revoke:",
                format!(
                    "{} ({} fingerprints; {})",
                    r.category,
                    r.fingerprints,
                    r.found_in.join(", ")
                ),
            );
        }
        for d in &self.details {
            line("Change:", d.clone());
        }
        for e in &self.evidence {
            line("Evidence:", e.clone());
        }
        body.push('\n');
        for c in &self.containers {
            body.push_str(&format!(
                "  {} ({}): {} records{}; {}\n",
                c.name,
                c.kind,
                c.records.map_or("?".into(), thousands),
                c.people.map_or(String::new(), |p| format!(
                    ", about {} people",
                    thousands(p)
                )),
                if c.categories.is_empty() {
                    "-".to_string()
                } else {
                    c.categories.join(", ")
                }
            ));
            for f in &c.fields {
                body.push_str(&format!(
                    "      {}: {} e.g. {}\n",
                    f.path,
                    f.categories.join(", "),
                    f.examples.join(", ")
                ));
            }
        }
        body.push_str(&format!(
            "\nIdempotency key: {}\nRaw values are never included: examples are masked.\n",
            self.idempotency_key
        ));
        (subject, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Container, Field};

    fn exposed() -> Service {
        Service {
            address: "127.0.0.1".into(),
            port: 6379,
            tls: false,
            protocol: "redis".into(),
            product: Some("Redis".into()),
            version: Some("7.0.15".into()),
            access: Access::Open,
            evidence: vec!["INFO answered without AUTH".into()],
            severity: Severity::Critical,
            hostnames: vec![],
            out_of_scope_peers: vec![],
            auth_attempts: 0,
            containers: vec![Container {
                name: "user:*".into(),
                kind: "keyspace".into(),
                records: Some(2000),
                records_estimated: false,
                system: false,
                bytes: None,
                sampled: 200,
                subjects_estimate: Some(1990),
                subjects_method: Some("HyperLogLog of user_id".into()),
                subjects_interval: None,
                categories: vec!["credential.api_token".into(), "identity.email".into()],
                fields: vec![
                    Field {
                        path: "email".into(),
                        categories: vec!["identity.email".into()],
                        confidence: 0.99,
                        seen: 200,
                        matched: 200,
                        examples: vec!["j•••@e•••.com".into(), "a•••@e•••.com".into(), "x".into()],
                        fingerprints: vec!["fp1".into()],
                    },
                    Field {
                        path: "api_token".into(),
                        categories: vec!["credential.api_token".into()],
                        confidence: 0.9,
                        seen: 200,
                        matched: 200,
                        examples: vec!["tok_•••".into()],
                        fingerprints: vec!["fpa".into(), "fpb".into()],
                    },
                ],
            }],
            inventory_notes: vec![],
            exposure: None,
        }
    }

    #[test]
    fn keys_are_stable_and_distinct() {
        let k = idempotency_key("w1", "127.0.0.1:6379", 3, EventKind::Exposed);
        assert_eq!(k.len(), 32);
        assert_eq!(
            k,
            idempotency_key("w1", "127.0.0.1:6379", 3, EventKind::Exposed)
        );
        assert_ne!(
            k,
            idempotency_key("w2", "127.0.0.1:6379", 3, EventKind::Exposed)
        );
        assert_ne!(
            k,
            idempotency_key("w1", "127.0.0.1:6379", 4, EventKind::Exposed)
        );
        assert_ne!(
            k,
            idempotency_key("w1", "127.0.0.1:6379", 3, EventKind::Closed)
        );
    }

    #[test]
    fn an_exposed_alert_says_what_whose_and_what_to_revoke_without_fingerprints() {
        let s = exposed();
        let a = Alert::build(AlertInput {
            key: "k".into(),
            kind: EventKind::Exposed,
            at: "2026-12-08T00:00:00Z".into(),
            group: "db",
            endpoint: "127.0.0.1:6379".into(),
            observed: Some(&s),
            inventory: Some(&s),
            previous_access: Some(Access::AuthRequired),
            details: vec!["access auth_required → open".into()],
            exposure: None,
            scan_id: Some("abc".into()),
        });
        assert_eq!(a.severity, Severity::Critical);
        assert_eq!(a.people, Some(1990));
        assert_eq!(a.records, Some(2000));
        assert_eq!(a.categories, vec!["credential.api_token", "identity.email"]);
        assert_eq!(a.revoke[0].category, "credential.api_token");
        assert_eq!(a.revoke[0].fingerprints, 2);
        assert_eq!(a.containers[0].fields[0].examples.len(), 2);
        let json = serde_json::to_string(&a).unwrap();
        assert!(
            !json.contains("fp1") && !json.contains("fpa"),
            "no fingerprints in alerts"
        );
        assert!(a
            .summary
            .starts_with("EXPOSED (critical): Redis 7.0.15 at 127.0.0.1:6379"));
        assert!(a.summary.contains("about 1,990 people"), "{}", a.summary);
        assert!(a.summary.contains("Revoke: credential.api_token"));
        assert!(!a.summary.contains("://"), "link-free");
        let slack = a.slack();
        assert!(slack["text"].as_str().unwrap().contains("EXPOSED"));
        let (subject, body) = a.email();
        assert_eq!(
            subject,
            "[leakscope] EXPOSED critical: Redis 7.0.15 at 127.0.0.1:6379"
        );
        assert!(body.contains("Revoke:") && body.contains("j•••@e•••.com"));
    }

    #[test]
    fn a_closed_alert_keeps_the_severity_it_had_and_the_window() {
        let inv = exposed();
        let mut now = exposed();
        now.access = Access::AuthRequired;
        now.severity = Severity::Low;
        now.containers.clear();
        let a = Alert::build(AlertInput {
            key: "k".into(),
            kind: EventKind::Closed,
            at: "2026-12-08T00:10:00Z".into(),
            group: "db",
            endpoint: "127.0.0.1:6379".into(),
            observed: Some(&now),
            inventory: Some(&inv),
            previous_access: Some(Access::Open),
            details: vec![],
            exposure: Some(Exposure {
                first_seen_open: "2026-12-08T00:00:00Z".into(),
                last_seen_open: "2026-12-08T00:09:30Z".into(),
                closed_at: Some("2026-12-08T00:10:00Z".into()),
                open_for_seconds: 600,
            }),
            scan_id: None,
        });
        assert_eq!(a.severity, Severity::Critical);
        assert_eq!(a.access, Some(Access::AuthRequired));
        assert!(a.summary.contains("now auth_required"), "{}", a.summary);
        assert!(a.summary.contains("open for 10m 0s"), "{}", a.summary);
    }
}
