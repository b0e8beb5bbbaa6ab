//! Differences between two scans: what became exposed, what was closed, what changed.

use std::collections::{BTreeMap, BTreeSet};

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
}

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

/// Changes from scan `a` to scan `b`, ordered by endpoint.
pub fn diff(a: &ScanReport, b: &ScanReport) -> Vec<Change> {
    let before: BTreeMap<String, &Service> = a.services.iter().map(|s| (key(s), s)).collect();
    let after: BTreeMap<String, &Service> = b.services.iter().map(|s| (key(s), s)).collect();
    let mut out = Vec::new();
    let endpoints: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for ep in endpoints {
        let change = match (before.get(ep), after.get(ep)) {
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
