//! The scan result model: the `leakscope.scan/v1` JSON contract (`docs/leakscope.scan.v1.schema.json`).
//!
//! Field names and meanings here are a public promise: fields may be added, never renamed.
//! Everything a scan learns ends up in these types; formatting them is the report's job.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Schema id written into every scan document.
pub const SCAN_SCHEMA: &str = "leakscope.scan/v1";

/// Whether a service lets a stranger read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// A real read succeeded without any credentials.
    Open,
    /// A real read succeeded with a well-known default credential (only with `--try-defaults`).
    DefaultCredentials,
    /// The service asked for credentials and refused the read.
    AuthRequired,
    /// Identified (or not), but no verdict could be reached.
    Unknown,
}

impl Access {
    /// True when the verdict means data can be read by whoever reaches the port.
    pub fn is_exposed(self) -> bool {
        matches!(self, Access::Open | Access::DefaultCredentials)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Access::Open => "open",
            Access::DefaultCredentials => "default_credentials",
            Access::AuthRequired => "auth_required",
            Access::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How bad a finding is. Ordered: `Info < Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!(
                    "unknown severity {s:?} (expected one of: info, low, medium, high, critical)"
                )
            })
    }
}

/// One data store found on one address and port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub address: String,
    pub port: u16,
    pub tls: bool,
    /// Protocol id from the registry (`elasticsearch`, `redis`, …, `http`, `unknown`).
    pub protocol: String,
    pub product: Option<String>,
    pub version: Option<String>,
    pub access: Access,
    /// How the verdict was reached, as requests a person can repeat.
    pub evidence: Vec<String>,
    pub severity: Severity,
    /// Host names the user gave for this address, if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// Cluster peers or replica-set members the service told us about that are outside the scope.
    /// They were not contacted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub out_of_scope_peers: Vec<String>,
    /// Credential attempts made against this service (only with `--try-defaults`).
    #[serde(default)]
    pub auth_attempts: u32,
    #[serde(default)]
    pub containers: Vec<Container>,
    /// What the inventory could not finish (budgets, errors), in words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inventory_notes: Vec<String>,
    /// How long this service has been readable, from the findings store's exposure windows
    /// (kept by `watch` and by stored scans); absent when the store has no window for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposure: Option<Exposure>,
}

/// The exposure window of a readable service: first and last observation open, and the first
/// observation closed again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exposure {
    /// First observation readable without credentials (RFC 3339), by `watch` or a stored scan.
    pub first_seen_open: String,
    /// Latest observation readable (RFC 3339).
    pub last_seen_open: String,
    /// First observation no longer readable (RFC 3339); null while it is still open.
    pub closed_at: Option<String>,
    /// Seconds from `first_seen_open` to `closed_at`, or to `last_seen_open` while still open.
    pub open_for_seconds: u64,
}

impl Exposure {
    /// "open for 3h 12m (since …; closed at …)" — the phrase every report uses.
    pub fn describe(&self) -> String {
        let span = human_span(self.open_for_seconds);
        match &self.closed_at {
            Some(c) => format!(
                "open for {span} (first seen open {}, closed at {c})",
                self.first_seen_open
            ),
            None => format!(
                "open for {span} (first seen open {}, still open at {})",
                self.first_seen_open, self.last_seen_open
            ),
        }
    }
}

/// A duration for people: `45s`, `12m 5s`, `3h 12m`, `22d 4h`.
pub fn human_span(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// An index, collection, table, keyspace … and what it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Container {
    pub name: String,
    pub kind: String,
    pub records: Option<u64>,
    /// `records` is an estimate (catalogue statistics), not an exact count.
    #[serde(default)]
    pub records_estimated: bool,
    /// A system or hidden container (listed, not hidden from the report).
    #[serde(default)]
    pub system: bool,
    pub bytes: Option<u64>,
    pub sampled: u64,
    pub subjects_estimate: Option<u64>,
    /// How `subjects_estimate` was obtained (the store's distinct count, the sample …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subjects_method: Option<String>,
    /// Where the truth of an estimated `subjects_estimate` lies, `[low, high]`: a 95 % interval
    /// of a sampled ratio, or the certain bounds of a read cut short (the method says which).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subjects_interval: Option<[u64; 2]>,
    pub categories: Vec<String>,
    pub fields: Vec<Field>,
}

/// One field path of a container and what it was classified as.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Field {
    pub path: String,
    pub categories: Vec<String>,
    pub confidence: f64,
    pub seen: u64,
    pub matched: u64,
    pub examples: Vec<String>,
    /// Keyed fingerprints (HMAC-SHA256 with the user's local key) of the sampled values of
    /// identity and credential fields: the owner can match affected users and revoke tokens
    /// without the report holding the values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fingerprints: Vec<String>,
}

/// Counters over a whole scan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub addresses: u64,
    pub ports_probed: u64,
    pub services: u64,
    pub duration_ms: u64,
    /// Ports that accepted a TCP connection.
    #[serde(default)]
    pub open_ports: u64,
    /// Connections that failed for a reason other than "refused" (time-outs, resets …).
    #[serde(default)]
    pub connect_errors: u64,
    /// Credential attempts over the whole scan.
    #[serde(default)]
    pub auth_attempts: u64,
    /// TCP connections opened over the whole scan (every probe's, TLS attempts included).
    #[serde(default)]
    pub connections: u64,
}

impl Stats {
    /// Every endpoint probed failed with a network error other than a refusal, and no port
    /// accepted a connection.
    pub fn nothing_reached(&self) -> bool {
        self.open_ports == 0 && self.ports_probed > 0 && self.connect_errors >= self.ports_probed
    }
}

/// The whole scan document (`--format json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanReport {
    pub schema: String,
    pub scan_id: String,
    pub started_at: String,
    /// RFC 3339; null while the scan runs or after it was interrupted (an incomplete scan).
    pub finished_at: Option<String>,
    /// How many people the scan's exposed stores hold, de-duplicated across containers and
    /// services; absent when no exposed container names a person (or without an inventory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impact: Option<Impact>,
    pub stats: Stats,
    pub services: Vec<Service>,
}

/// Distinct people over the whole scan (see [`crate::impact`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Impact {
    /// The estimate.
    pub people: u64,
    /// Lower end of its 95 % interval.
    pub people_low: u64,
    /// Upper end of its 95 % interval.
    pub people_high: u64,
    /// How it was obtained, in words.
    pub method: String,
}

impl ScanReport {
    /// The worst severity among the services, if any.
    pub fn worst(&self) -> Option<Severity> {
        self.services.iter().map(|s| s.severity).max()
    }

    /// Whether the scan ran to its end (an interrupted or running scan has no `finished_at`).
    pub fn complete(&self) -> bool {
        self.finished_at.is_some()
    }

    /// Whether every endpoint probed failed with a network error (no route, network down,
    /// time-out) and nothing answered, not even with a refusal: nothing could be reached.
    pub fn unreachable(&self) -> bool {
        self.services.is_empty() && self.stats.nothing_reached()
    }
}
