//! Severity of a service: how urgently its owner must act.
//!
//! Rules (v2: access verdict, raised by what classification found in the sampled containers):
//! - `http` and `unknown` protocols → `info`.
//! - `open` or `default_credentials` data store with any container category `credential.*`
//!   (tokens and keys to revoke), `health.*`, `financial.*` or `government.id` (special
//!   categories and data that enable fraud) → `critical`.
//! - other `open` or `default_credentials` data stores → `high`: anyone who reaches them reads
//!   them. That includes personal data (`identity.*`, `device.*`, `network.*`, `location.*`),
//!   stores whose sample showed nothing sensitive (a bounded sample does not prove the rest is
//!   harmless), and services without containers (no inventory, or `--no-inventory`), which are
//!   rated as before classification existed.
//! - `unknown` access on an identified data store → `medium`: it answers, and nothing proved it
//!   is protected.
//! - `auth_required` data store → `low`: exposed to the network, protected by a credential.

use crate::model::{Access, Service, Severity};

/// The severity a category found in a readable store implies.
pub fn category_severity(category: &str) -> Severity {
    let family = category.split('.').next().unwrap_or("");
    match family {
        "credential" | "health" | "financial" => Severity::Critical,
        "government" => Severity::Critical,
        "identity" | "device" | "network" | "location" => Severity::High,
        _ => Severity::Medium,
    }
}

/// Severity of one service from its protocol, access verdict and container categories.
pub fn severity(s: &Service) -> Severity {
    if s.protocol == "http" || s.protocol == "unknown" {
        return Severity::Info;
    }
    match s.access {
        Access::Open | Access::DefaultCredentials => s
            .containers
            .iter()
            .flat_map(|c| c.categories.iter())
            .map(|c| category_severity(c))
            .max()
            .map_or(Severity::High, |worst| worst.max(Severity::High)),
        Access::Unknown => Severity::Medium,
        Access::AuthRequired => Severity::Low,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Container;

    fn service(protocol: &str, access: Access, categories: &[&[&str]]) -> Service {
        Service {
            address: "127.0.0.1".into(),
            port: 9200,
            tls: false,
            protocol: protocol.into(),
            product: None,
            version: None,
            access,
            evidence: Vec::new(),
            severity: Severity::Info,
            hostnames: Vec::new(),
            out_of_scope_peers: Vec::new(),
            auth_attempts: 0,
            containers: categories
                .iter()
                .enumerate()
                .map(|(i, cats)| Container {
                    name: format!("c{i}"),
                    kind: "index".into(),
                    records: Some(10),
                    records_estimated: false,
                    system: false,
                    bytes: None,
                    sampled: 10,
                    subjects_estimate: None,
                    subjects_method: None,
                    subjects_interval: None,
                    categories: cats.iter().map(|c| c.to_string()).collect(),
                    fields: Vec::new(),
                })
                .collect(),
            inventory_notes: Vec::new(),
            exposure: None,
        }
    }

    #[test]
    fn without_containers_the_access_verdict_decides() {
        assert_eq!(
            severity(&service("redis", Access::Open, &[])),
            Severity::High
        );
        assert_eq!(
            severity(&service("mysql", Access::DefaultCredentials, &[])),
            Severity::High
        );
        assert_eq!(
            severity(&service("redis", Access::Unknown, &[])),
            Severity::Medium
        );
        assert_eq!(
            severity(&service("redis", Access::AuthRequired, &[])),
            Severity::Low
        );
        assert_eq!(
            severity(&service("http", Access::Open, &[])),
            Severity::Info
        );
    }

    #[test]
    fn sensitive_categories_raise_open_stores() {
        let open = |cats: &[&[&str]]| severity(&service("elasticsearch", Access::Open, cats));
        assert_eq!(open(&[&["credential.oauth_token"]]), Severity::Critical);
        assert_eq!(
            open(&[&["identity.email"], &["health.body"]]),
            Severity::Critical
        );
        assert_eq!(open(&[&["financial.iban"]]), Severity::Critical);
        assert_eq!(open(&[&["government.id"]]), Severity::Critical);
        assert_eq!(open(&[&["identity.email", "device.mac"]]), Severity::High);
        assert_eq!(
            open(&[&[]]),
            Severity::High,
            "nothing found is not nothing there"
        );
        assert_eq!(
            severity(&service(
                "mysql",
                Access::DefaultCredentials,
                &[&["credential.password_hash"]]
            )),
            Severity::Critical
        );
        // Categories do not change the verdict on protected stores.
        assert_eq!(
            severity(&service(
                "mysql",
                Access::AuthRequired,
                &[&["credential.jwt"]]
            )),
            Severity::Low
        );
    }
}
