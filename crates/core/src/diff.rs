//! Differences between two scans: what became exposed, what was closed, what changed.
//!
//! Only endpoints both scans probed are compared: a service the later scan did not probe
//! (a narrower scope, an interrupted scan) is `not_rescanned`, never "no longer exposed", and a
//! service at an endpoint the earlier scan did not probe is `not_scanned_before`, never "newly
//! exposed". The store knows each scan's probed endpoints.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::Serialize;

use crate::model::{Access, ScanReport, Service};
use crate::report::summary::{endpoint as key, exposed};

/// What happened to one endpoint between two scans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Readable now, was not (new service, or access opened).
    NewlyExposed,
    /// Was readable, is not any more (closed, protected, or gone).
    NoLongerExposed,
    /// A service appeared (not exposed).
    Appeared,
    /// A service disappeared (was not exposed).
    Disappeared,
    /// Same exposure, different product, access, categories or counts.
    Changed,
    /// Found by the earlier scan at an endpoint the later scan did not probe: nothing is known
    /// about it now.
    NotRescanned,
    /// Found by the later scan at an endpoint the earlier scan did not probe: it may or may not
    /// have been there before.
    NotScannedBefore,
}

/// The endpoints (`address:port`, IPv6 in brackets) a scan probed.
pub type Probed = HashSet<String>;

/// One change, with the details in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub endpoint: String,
    pub kind: ChangeKind,
    pub before: Option<Access>,
    pub after: Option<Access>,
    pub details: Vec<String>,
}

fn details(a: &Service, b: &Service) -> Vec<String> {
    let mut out = Vec::new();
    if a.access != b.access {
        out.push(format!("access {} → {}", a.access, b.access));
    }
    if (&a.protocol, &a.product, &a.version) != (&b.protocol, &b.product, &b.version) {
        out.push(format!(
            "{} {} {} → {} {} {}",
            a.protocol,
            a.product.as_deref().unwrap_or("-"),
            a.version.as_deref().unwrap_or("-"),
            b.protocol,
            b.product.as_deref().unwrap_or("-"),
            b.version.as_deref().unwrap_or("-")
        ));
    }
    let ca: BTreeMap<&str, _> = a.containers.iter().map(|c| (c.name.as_str(), c)).collect();
    let cb: BTreeMap<&str, _> = b.containers.iter().map(|c| (c.name.as_str(), c)).collect();
    for (name, c) in &cb {
        match ca.get(name) {
            None => out.push(format!(
                "new container {name} ({} records)",
                c.records.unwrap_or(0)
            )),
            Some(old) => {
                if old.records != c.records {
                    out.push(format!(
                        "{name}: records {} → {}",
                        old.records.map_or("?".into(), |r| r.to_string()),
                        c.records.map_or("?".into(), |r| r.to_string())
                    ));
                }
                let (x, y): (BTreeSet<_>, BTreeSet<_>) = (
                    old.categories.iter().collect(),
                    c.categories.iter().collect(),
                );
                let added: Vec<_> = y.difference(&x).map(|s| s.as_str()).collect();
                let removed: Vec<_> = x.difference(&y).map(|s| s.as_str()).collect();
                if !added.is_empty() {
                    out.push(format!("{name}: new categories {}", added.join(", ")));
                }
                if !removed.is_empty() {
                    out.push(format!("{name}: categories gone {}", removed.join(", ")));
                }
            }
        }
    }
    for name in ca.keys().filter(|n| !cb.contains_key(*n)) {
        out.push(format!("container {name} gone"));
    }
    out
}

/// Changes from scan `a` to scan `b`, ordered by endpoint; `probed_a` and `probed_b` are the
/// endpoints each scan probed (see the module docs).
pub fn diff(a: &ScanReport, b: &ScanReport, probed_a: &Probed, probed_b: &Probed) -> Vec<Change> {
    let before: BTreeMap<String, &Service> = a.services.iter().map(|s| (key(s), s)).collect();
    let after: BTreeMap<String, &Service> = b.services.iter().map(|s| (key(s), s)).collect();
    let mut out = Vec::new();
    let endpoints: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for ep in endpoints {
        let change = match (before.get(ep), after.get(ep)) {
            (None, Some(s)) if !probed_a.contains(ep.as_str()) => Change {
                endpoint: ep.clone(),
                kind: ChangeKind::NotScannedBefore,
                before: None,
                after: Some(s.access),
                details: vec![format!(
                    "{} found, access {}; the earlier scan did not probe this endpoint",
                    s.protocol, s.access
                )],
            },
            (Some(s), None) if !probed_b.contains(ep.as_str()) => Change {
                endpoint: ep.clone(),
                kind: ChangeKind::NotRescanned,
                before: Some(s.access),
                after: None,
                details: vec![format!(
                    "{} was there (access {}); the later scan did not probe this endpoint",
                    s.protocol, s.access
                )],
            },
            (None, Some(s)) => Change {
                endpoint: ep.clone(),
                kind: if exposed(s) {
                    ChangeKind::NewlyExposed
                } else {
                    ChangeKind::Appeared
                },
                before: None,
                after: Some(s.access),
                details: vec![format!("{} appeared, access {}", s.protocol, s.access)],
            },
            (Some(s), None) => Change {
                endpoint: ep.clone(),
                kind: if exposed(s) {
                    ChangeKind::NoLongerExposed
                } else {
                    ChangeKind::Disappeared
                },
                before: Some(s.access),
                after: None,
                details: vec![format!("{} no longer answers", s.protocol)],
            },
            (Some(x), Some(y)) => {
                let d = details(x, y);
                if d.is_empty() {
                    continue;
                }
                let kind = match (exposed(x), exposed(y)) {
                    (false, true) => ChangeKind::NewlyExposed,
                    (true, false) => ChangeKind::NoLongerExposed,
                    _ => ChangeKind::Changed,
                };
                Change {
                    endpoint: ep.clone(),
                    kind,
                    before: Some(x.access),
                    after: Some(y.access),
                    details: d,
                }
            }
            (None, None) => continue,
        };
        out.push(change);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Severity, Stats};

    fn svc(addr: &str, access: Access) -> Service {
        Service {
            address: addr.into(),
            port: 6379,
            tls: false,
            protocol: "redis".into(),
            product: None,
            version: None,
            access,
            evidence: vec![],
            severity: Severity::High,
            hostnames: vec![],
            out_of_scope_peers: vec![],
            auth_attempts: 0,
            containers: vec![],
            inventory_notes: vec![],
            exposure: None,
        }
    }

    fn scan(services: Vec<Service>, finished: bool) -> ScanReport {
        ScanReport {
            schema: "leakscope.scan/v1".into(),
            scan_id: "x".into(),
            started_at: "2026-12-01T00:00:00Z".into(),
            finished_at: finished.then(|| "2026-12-01T00:01:00Z".into()),
            impact: None,
            stats: Stats::default(),
            services,
        }
    }

    fn probed(eps: &[&str]) -> Probed {
        eps.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn an_endpoint_the_later_scan_did_not_probe_is_not_rescanned() {
        // Issue 14: an interrupted second scan made every open service "no longer exposed".
        let a = scan(
            vec![
                svc("127.0.0.1", Access::Open),
                svc("127.0.0.2", Access::Open),
            ],
            true,
        );
        let b = scan(vec![], false);
        let c = diff(
            &a,
            &b,
            &probed(&["127.0.0.1:6379", "127.0.0.2:6379"]),
            &probed(&["127.0.0.2:6379"]),
        );
        let kinds: Vec<_> = c.iter().map(|c| (c.endpoint.as_str(), &c.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                ("127.0.0.1:6379", &ChangeKind::NotRescanned),
                ("127.0.0.2:6379", &ChangeKind::NoLongerExposed)
            ]
        );
    }

    #[test]
    fn an_endpoint_the_earlier_scan_did_not_probe_is_not_newly_exposed() {
        let a = scan(vec![], true);
        let b = scan(
            vec![
                svc("127.0.0.1", Access::Open),
                svc("127.0.0.2", Access::Open),
            ],
            true,
        );
        let c = diff(
            &a,
            &b,
            &probed(&["127.0.0.2:6379"]),
            &probed(&["127.0.0.1:6379", "127.0.0.2:6379"]),
        );
        let kinds: Vec<_> = c.iter().map(|c| &c.kind).collect();
        assert_eq!(
            kinds,
            vec![&ChangeKind::NotScannedBefore, &ChangeKind::NewlyExposed]
        );
    }
}
