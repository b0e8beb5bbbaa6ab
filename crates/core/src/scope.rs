//! Scope: what a scan may contact.
//!
//! leakscope only ever talks to what its user listed. This module turns the user's targets
//! (addresses, CIDRs, ranges, host names, optionally with a port), exclusions and port list into a
//! [`Scope`], the single authority the engine asks before opening any connection:
//! [`Scope::endpoints`] lists what to probe, and [`Scope::contains`] decides whether a peer that a
//! server told us about (cluster node, replica-set member, redirect) may be contacted or must only
//! be reported. Exclusions always win, and absurdly large scopes are refused unless the user asked
//! for them explicitly.
//!
//! ```
//! use std::collections::HashMap;
//! use std::net::{IpAddr, SocketAddr};
//! use leakscope_core::scope::{PortList, ScopeBuilder, TargetSpec};
//!
//! let scope = ScopeBuilder {
//!     allow: vec!["127.0.10.0/30".parse()?, "127.0.20.1:8080".parse()?],
//!     deny: vec!["127.0.10.2".parse()?, "127.0.10.3:9200".parse()?],
//!     ports: "6379,9200".parse()?,
//!     ..ScopeBuilder::default()
//! }
//! // No host names here, so nothing needs resolving; with names use `build().await`.
//! .build_resolved(&HashMap::new())?;
//!
//! assert_eq!(scope.address_count(), 4);
//! let peer: IpAddr = "127.0.10.1".parse()?;
//! assert!(scope.contains(peer, 9200));
//! assert!(!scope.contains("127.0.10.2".parse()?, 9200)); // excluded
//! assert!(!scope.contains("10.1.2.3".parse()?, 9200)); // never listed
//!
//! let endpoints: Vec<SocketAddr> = scope.endpoints().collect();
//! let expected: Vec<SocketAddr> = [
//!     "127.0.10.0:6379", "127.0.10.0:9200", "127.0.10.1:6379", "127.0.10.1:9200",
//!     "127.0.10.3:6379", "127.0.20.1:8080",
//! ]
//! .iter()
//! .map(|s| s.parse().unwrap())
//! .collect();
//! assert_eq!(endpoints, expected);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

/// Why a target, port list, scope or scope file was refused. Every message fits on one line and
/// quotes the input it is about, so the CLI can print it as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// A target string was empty or only whitespace.
    #[error("empty target: give an address, CIDR, range or host name")]
    EmptyTarget,
    /// A target string could not be understood.
    #[error("invalid target '{}': {}", one_line(.input), one_line(.reason))]
    InvalidTarget { input: String, reason: String },
    /// A port list could not be understood.
    #[error("invalid port list '{}': {}", one_line(.input), one_line(.reason))]
    InvalidPorts { input: String, reason: String },
    /// A host name in the scope did not resolve to any address.
    #[error("host name '{name}' did not resolve: {reason}")]
    Unresolved { name: String, reason: String },
    /// No allow targets at all.
    #[error("nothing to scan: no targets were given")]
    NoTargets,
    /// Targets were given but the exclusions remove every endpoint.
    #[error("nothing to scan: the exclusions remove every target")]
    AllExcluded,
    /// More addresses than `max_addresses` and `allow_large` not set.
    #[error(
        "the scope has {count} addresses, more than the limit of {max}; narrow it, or pass \
         --allow-large-scope if you really mean to scan that many"
    )]
    TooLarge { count: u128, max: u128 },
    /// A scope file could not be read, parsed, or holds a bad entry.
    #[error("scope file '{}': {}", one_line(.path), one_line(.detail))]
    File { path: String, detail: String },
}

/// Text the user gave (a target, a file name or entry), as it goes into an error message: on one
/// line, with control characters escaped (`a\nb` stays `a\nb`).
fn one_line(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return s.into();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

// ---------------------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------------------

/// An ordered, deduplicated list of TCP ports, parsed from text like `"6379,9200-9210,27017"`.
///
/// Order is kept because it is the order in which a host's ports are probed.
#[derive(Clone, PartialEq, Eq)]
pub struct PortList {
    ports: Vec<u16>,
    // A bitmap makes `contains` O(1) even for "1-65535", and costs a fixed 8 KiB.
    bits: Box<[u64; 1024]>,
}

impl PortList {
    /// Parses a port list: single ports and `a-b` ranges separated by commas; spaces around
    /// items and dashes are tolerated. Rejects port 0, ports above 65535, reversed ranges, empty
    /// items and anything that is not a number.
    pub fn parse(input: &str) -> Result<Self, ScopeError> {
        let bad = |reason: String| ScopeError::InvalidPorts {
            input: input.to_string(),
            reason,
        };
        if input.trim().is_empty() {
            return Err(bad("it is empty".into()));
        }
        let mut list = PortList::empty();
        for (i, item) in input.split(',').enumerate() {
            let item = item.trim();
            if item.is_empty() {
                return Err(bad(format!("item {} is empty (stray comma?)", i + 1)));
            }
            match item.split_once('-') {
                None => list.push(parse_port_number(item).map_err(bad)?),
                Some((a, b)) => {
                    let (a, b) = (a.trim(), b.trim());
                    if a.is_empty() || b.is_empty() {
                        return Err(bad(format!("range '{item}' needs a start and an end")));
                    }
                    let start = parse_port_number(a).map_err(bad)?;
                    let end = parse_port_number(b).map_err(bad)?;
                    if start > end {
                        return Err(bad(format!(
                            "range '{item}' is reversed: {start} comes after {end}"
                        )));
                    }
                    for p in start..=end {
                        list.push(p);
                    }
                }
            }
        }
        Ok(list)
    }

    /// Builds a list from ports given as numbers, keeping the first occurrence of each.
    /// Rejects port 0 and an empty list.
    pub fn from_ports(ports: impl IntoIterator<Item = u16>) -> Result<Self, ScopeError> {
        let mut list = PortList::empty();
        for p in ports {
            if p == 0 {
                return Err(ScopeError::InvalidPorts {
                    input: "0".into(),
                    reason: "port 0 is not a valid port (1-65535)".into(),
                });
            }
            list.push(p);
        }
        if list.ports.is_empty() {
            return Err(ScopeError::InvalidPorts {
                input: String::new(),
                reason: "it is empty".into(),
            });
        }
        Ok(list)
    }

    /// The default ports of the data stores leakscope knows (Elasticsearch/OpenSearch, MongoDB,
    /// Redis, PostgreSQL, MySQL/MariaDB, Memcached, CouchDB, ClickHouse, etcd, InfluxDB,
    /// ZooKeeper, MQTT, NATS, AMQP, Cassandra, Kibana, S3-compatible, FTP, rsync).
    pub fn default_data_stores() -> Self {
        Self::from_ports([
            9200, 27017, 6379, 5432, 3306, 11211, 5984, 8123, 9000, 2379, 8086, 2181, 1883, 4222,
            5672, 9042, 5601, 21, 873,
        ])
        .expect("the built-in port list is valid")
    }

    /// Whether `port` is in the list.
    pub fn contains(&self, port: u16) -> bool {
        self.bits[usize::from(port) / 64] & (1u64 << (port % 64)) != 0
    }

    /// The ports, in the order given.
    pub fn as_slice(&self) -> &[u16] {
        &self.ports
    }

    /// Iterates the ports in the order given.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        self.ports.iter().copied()
    }

    /// Number of distinct ports.
    pub fn len(&self) -> usize {
        self.ports.len()
    }

    /// Always false for a list built by [`PortList::parse`] or [`PortList::from_ports`].
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    fn empty() -> Self {
        PortList {
            ports: Vec::new(),
            bits: Box::new([0; 1024]),
        }
    }

    fn push(&mut self, p: u16) {
        if !self.contains(p) {
            self.bits[usize::from(p) / 64] |= 1u64 << (p % 64);
            self.ports.push(p);
        }
    }
}

impl FromStr for PortList {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Prints the list back in the parse syntax, folding ascending runs into ranges.
impl fmt::Display for PortList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut i = 0;
        let mut first = true;
        while i < self.ports.len() {
            let start = self.ports[i];
            let mut j = i;
            while j + 1 < self.ports.len()
                && self.ports[j] != u16::MAX
                && self.ports[j + 1] == self.ports[j] + 1
            {
                j += 1;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if j == i {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{}", self.ports[j])?;
            }
            i = j + 1;
        }
        Ok(())
    }
}

impl fmt::Debug for PortList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PortList({self})")
    }
}

fn parse_port_number(s: &str) -> Result<u16, String> {
    if s.is_empty() {
        return Err("a port is missing".into());
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{s}' is not a port number"));
    }
    match s.parse::<u32>() {
        Ok(0) => Err("port 0 is not a valid port (1-65535)".into()),
        Ok(n) if n <= 65535 => Ok(n as u16),
        _ => Err(format!("port {s} is out of range (1-65535)")),
    }
}

// ---------------------------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------------------------

/// What a target names, without its port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TargetKind {
    /// One address, e.g. `127.0.0.1` or `::1`.
    Address(IpAddr),
    /// A network, e.g. `127.0.10.0/24`; always stored truncated to its network address.
    Network(IpNet),
    /// An inclusive range of addresses of one family, `start <= end`.
    Range { start: IpAddr, end: IpAddr },
    /// A host name, kept as written; resolved when the scope is built.
    Host(String),
}

/// One target as the user wrote it: an address, CIDR, range or host name, optionally with a
/// port. With a port it means exactly that endpoint (or, in a deny list, only that port).
///
/// Accepted forms: `127.0.0.1`, `::1`, `127.0.10.0/24`, `fd00::/120`, `127.0.10.1-127.0.10.20`,
/// `127.0.10.1-20` (last octet), `db.example.internal`, `localhost`, and any of them followed by
/// `:port` (`127.0.0.1:6379`, `localhost:9200`, `127.0.10.0/24:6379`); IPv6 forms take a port
/// only in brackets: `[::1]:6379`, `[fd00::/120]:6379`. A bare `fd00::1:6379` is an IPv6
/// address, not a port. A CIDR with host bits set (`127.0.10.7/24`) means its network, as in
/// nmap.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TargetSpec {
    /// The addresses (or name) this target covers.
    pub kind: TargetKind,
    /// The one port this target is limited to, if it names one.
    pub port: Option<u16>,
}

impl TargetSpec {
    /// Parses one target; same as [`str::parse`].
    pub fn parse(input: &str) -> Result<Self, ScopeError> {
        input.parse()
    }

    /// True when the target is a host name that must be resolved before use.
    pub fn is_host(&self) -> bool {
        matches!(self.kind, TargetKind::Host(_))
    }

    /// The inclusive address range this target covers; `None` for host names.
    fn span(&self) -> Option<(IpAddr, IpAddr)> {
        match &self.kind {
            TargetKind::Address(a) => Some((*a, *a)),
            TargetKind::Network(n) => Some((n.network(), n.broadcast())),
            TargetKind::Range { start, end } => Some((*start, *end)),
            TargetKind::Host(_) => None,
        }
    }
}

impl FromStr for TargetSpec {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let input = s.trim();
        if input.is_empty() {
            return Err(ScopeError::EmptyTarget);
        }
        let bad = |reason: String| ScopeError::InvalidTarget {
            input: input.to_string(),
            reason,
        };
        if input.contains("://") {
            return Err(bad(
                "looks like a URL; give an address or host name, optionally with :port".into(),
            ));
        }
        if let Some(rest) = input.strip_prefix('[') {
            let Some(close) = rest.find(']') else {
                return Err(bad("missing ']' after the bracketed address".into()));
            };
            let (inner, after) = (&rest[..close], &rest[close + 1..]);
            if inner.trim().is_empty() {
                return Err(bad("nothing between '[' and ']'".into()));
            }
            let port = if after.is_empty() {
                None
            } else if let Some(p) = after.strip_prefix(':') {
                Some(parse_port_number(p.trim()).map_err(bad)?)
            } else {
                return Err(bad(format!(
                    "unexpected '{after}' after ']'; expected ':port'"
                )));
            };
            let kind = parse_body(inner).map_err(bad)?;
            if let TargetKind::Host(_) = kind {
                return Err(bad(
                    "only an address, CIDR or range may be written in brackets".into(),
                ));
            }
            return Ok(TargetSpec { kind, port });
        }
        // Exactly one colon is host:port; two or more can only be a bare IPv6 form.
        if input.matches(':').count() == 1 {
            let (body, port) = input.split_once(':').expect("one colon");
            if body.trim().is_empty() {
                return Err(bad("missing address or host name before ':'".into()));
            }
            let port = parse_port_number(port.trim()).map_err(bad)?;
            let kind = parse_body(body).map_err(bad)?;
            if is_v6_kind(&kind) {
                return Err(bad(
                    "write an IPv6 target with a port as [address]:port".into()
                ));
            }
            return Ok(TargetSpec {
                kind,
                port: Some(port),
            });
        }
        let kind = parse_body(input).map_err(bad)?;
        Ok(TargetSpec { kind, port: None })
    }
}

fn is_v6_kind(kind: &TargetKind) -> bool {
    match kind {
        TargetKind::Address(a) => a.is_ipv6(),
        TargetKind::Network(n) => matches!(n, IpNet::V6(_)),
        TargetKind::Range { start, .. } => start.is_ipv6(),
        TargetKind::Host(_) => false,
    }
}

/// Prints the target back in the parse syntax (canonical form: networks truncated, short ranges
/// written out), so `spec.to_string().parse()` gives `spec` back.
impl fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = match &self.kind {
            TargetKind::Address(a) => a.to_string(),
            TargetKind::Network(n) => n.to_string(),
            TargetKind::Range { start, end } => format!("{start}-{end}"),
            TargetKind::Host(h) => h.clone(),
        };
        match self.port {
            None => f.write_str(&body),
            Some(p) if is_v6_kind(&self.kind) => write!(f, "[{body}]:{p}"),
            Some(p) => write!(f, "{body}:{p}"),
        }
    }
}

/// Parses a target without its port; errors are reasons, wrapped with the full input by the
/// caller.
fn parse_body(s: &str) -> Result<TargetKind, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("the address is missing".into());
    }
    if let Some((addr, prefix)) = s.split_once('/') {
        let addr = parse_ip(addr.trim(), "a CIDR needs an IP address before '/'")?;
        let prefix = prefix.trim();
        let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let family = if addr.is_ipv4() { "IPv4" } else { "IPv6" };
        if prefix.is_empty() {
            return Err("the prefix length after '/' is missing".into());
        }
        if !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("prefix '/{prefix}' is not a number"));
        }
        let len = prefix.parse::<u32>().unwrap_or(u32::MAX);
        if len > u32::from(max) {
            return Err(format!(
                "prefix /{prefix} is longer than {max}, the maximum for {family}"
            ));
        }
        let net = IpNet::new(addr, len as u8).expect("prefix length checked");
        return Ok(TargetKind::Network(net.trunc()));
    }
    if let Some((a, b)) = s.split_once('-') {
        let a = a.trim();
        // Host names may contain '-', so this is a range only when the left side is an address.
        if let Ok(start) = a.parse::<IpAddr>() {
            return parse_range(start, b.trim());
        }
        // A dotted quad that fails to parse is a typo in a range (`127.0.10.300-5`); anything
        // shorter may be a host name such as `10-0-0-1.example`.
        if looks_like_v4(a) && a.matches('.').count() == 3 {
            return Err(diagnose_v4(a));
        }
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(TargetKind::Address(ip));
    }
    if s.contains(':') {
        return Err(diagnose_v6(s));
    }
    if looks_like_v4(s) {
        return Err(diagnose_v4(s));
    }
    validate_host_name(s)?;
    Ok(TargetKind::Host(s.to_string()))
}

fn parse_range(start: IpAddr, end: &str) -> Result<TargetKind, String> {
    if end.is_empty() {
        return Err("the end of the range after '-' is missing".into());
    }
    let end_ip = if let Ok(e) = end.parse::<IpAddr>() {
        if e.is_ipv4() != start.is_ipv4() {
            return Err("a range cannot mix IPv4 and IPv6".into());
        }
        e
    } else {
        match start {
            IpAddr::V4(s4) if end.bytes().all(|b| b.is_ascii_digit()) => {
                // Short form: the end replaces the last octet of the start.
                let octet = end.parse::<u32>().unwrap_or(u32::MAX);
                if octet > 255 || (end.len() > 1 && end.starts_with('0')) {
                    return Err(format!(
                        "range end '{end}' is not a last octet (0-255) or a full address"
                    ));
                }
                let o = s4.octets();
                IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], octet as u8))
            }
            IpAddr::V4(_) if looks_like_v4(end) => return Err(diagnose_v4(end)),
            IpAddr::V4(_) => {
                return Err(format!(
                    "range end '{end}' is not a last octet (0-255) or a full IPv4 address"
                ))
            }
            IpAddr::V6(_) => {
                return Err(format!(
                    "range end '{end}' is not an IPv6 address (IPv6 ranges need two full addresses)"
                ))
            }
        }
    };
    // Raw order, not `ip_key`: canonicalising would move a mapped end into IPv4.
    if start > end_ip {
        return Err(format!(
            "the range is reversed: {start} comes after {end_ip}"
        ));
    }
    Ok(TargetKind::Range { start, end: end_ip })
}

fn parse_ip(s: &str, what: &str) -> Result<IpAddr, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(ip);
    }
    if s.contains(':') {
        Err(diagnose_v6(s))
    } else if looks_like_v4(s) {
        Err(diagnose_v4(s))
    } else {
        Err(format!("'{s}' is not an IP address ({what})"))
    }
}

fn looks_like_v4(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// Explains why a digits-and-dots string is not an IPv4 address.
fn diagnose_v4(s: &str) -> String {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4 {
        return format!(
            "'{s}' is not an IPv4 address: it has {} octet{}, expected 4",
            parts.len(),
            if parts.len() == 1 { "" } else { "s" }
        );
    }
    for p in parts {
        if p.is_empty() {
            return format!("'{s}' is not an IPv4 address: an octet is empty");
        }
        if p.len() > 1 && p.starts_with('0') {
            // Refused because some tools read it as octal and others as decimal.
            return format!(
                "'{s}' is not an IPv4 address: octet '{p}' has a leading zero (ambiguous)"
            );
        }
        if p.parse::<u32>().map_or(true, |n| n > 255) {
            return format!("'{s}' is not an IPv4 address: octet {p} is out of range (0-255)");
        }
    }
    format!("'{s}' is not an IPv4 address")
}

fn diagnose_v6(s: &str) -> String {
    if s.contains('%') {
        format!("'{s}': IPv6 zone ids (%interface) are not supported")
    } else {
        format!("'{s}' is not a valid IPv6 address")
    }
}

fn validate_host_name(s: &str) -> Result<(), String> {
    let not = |why: String| {
        Err(format!(
            "'{s}' is not an address, CIDR, range or host name: {why}"
        ))
    };
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_' || *c == '.'))
    {
        return not(format!("'{c}' is not allowed in a host name"));
    }
    let name = s.strip_suffix('.').unwrap_or(s);
    if name.len() > 253 {
        return not("a host name has at most 253 characters".into());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return not("it has an empty label ('..' or a leading dot)".into());
        }
        if label.len() > 63 {
            return not("a label has more than 63 characters".into());
        }
        if label.starts_with('-') || label.ends_with('-') {
            return not(format!("label '{label}' starts or ends with '-'"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Interval sets over one address family
// ---------------------------------------------------------------------------------------------

/// Sorted, disjoint, non-adjacent inclusive intervals of addresses as integers. Keeps every scope
/// operation proportional to the number of targets, not of addresses, so a /8 or an IPv6 /64
/// costs the same as one address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct IvSet(Vec<(u128, u128)>);

impl IvSet {
    fn from_unsorted(mut v: Vec<(u128, u128)>) -> Self {
        v.sort_unstable();
        let mut out: Vec<(u128, u128)> = Vec::with_capacity(v.len());
        for (lo, hi) in v {
            if let Some(last) = out.last_mut() {
                if lo <= last.1.saturating_add(1) {
                    last.1 = last.1.max(hi);
                    continue;
                }
            }
            out.push((lo, hi));
        }
        IvSet(out)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn contains(&self, x: u128) -> bool {
        let i = self.0.partition_point(|&(_, hi)| hi < x);
        self.0.get(i).is_some_and(|&(lo, _)| lo <= x)
    }

    /// Number of addresses; saturates at `u128::MAX` (only the whole IPv6 space gets there).
    fn count(&self) -> u128 {
        self.0.iter().fold(0u128, |acc, &(lo, hi)| {
            acc.saturating_add((hi - lo).saturating_add(1))
        })
    }

    fn union(&self, other: &IvSet) -> IvSet {
        IvSet::from_unsorted(self.0.iter().chain(other.0.iter()).copied().collect())
    }

    fn intersect(&self, other: &IvSet) -> IvSet {
        let (a, b) = (&self.0, &other.0);
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        while i < a.len() && j < b.len() {
            let lo = a[i].0.max(b[j].0);
            let hi = a[i].1.min(b[j].1);
            if lo <= hi {
                out.push((lo, hi));
            }
            if a[i].1 < b[j].1 {
                i += 1;
            } else {
                j += 1;
            }
        }
        IvSet::from_unsorted(out)
    }

    fn subtract(&self, other: &IvSet) -> IvSet {
        let b = &other.0;
        let mut out = Vec::new();
        let mut j = 0;
        for &(lo, hi) in &self.0 {
            while j < b.len() && b[j].1 < lo {
                j += 1;
            }
            let mut lo = lo;
            let mut alive = true;
            let mut k = j;
            while k < b.len() && b[k].0 <= hi {
                let (blo, bhi) = b[k];
                if blo > lo {
                    out.push((lo, blo - 1));
                }
                if bhi >= hi {
                    alive = false;
                    break;
                }
                lo = bhi + 1;
                k += 1;
            }
            if alive {
                out.push((lo, hi));
            }
        }
        IvSet(out)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Family {
    V4,
    V6,
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are stored as IPv4, so that an exclusion of
/// `10.0.0.1` also stops a peer reported as `::ffff:10.0.0.1`.
const MAPPED_LO: u128 = 0xffff_u128 << 32;
const MAPPED_HI: u128 = MAPPED_LO | 0xffff_ffff;

fn ip_key(ip: IpAddr) -> (Family, u128) {
    match ip.to_canonical() {
        IpAddr::V4(a) => (Family::V4, u128::from(u32::from(a))),
        IpAddr::V6(a) => (Family::V6, u128::from(a)),
    }
}

fn key_ip(fam: Family, k: u128) -> IpAddr {
    match fam {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(k as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(k)),
    }
}

/// Splits an address span into per-family intervals, moving the IPv4-mapped part of an IPv6
/// span to IPv4.
fn split_span(start: IpAddr, end: IpAddr) -> Vec<(Family, u128, u128)> {
    match (start, end) {
        (IpAddr::V4(s), IpAddr::V4(e)) => {
            vec![(
                Family::V4,
                u128::from(u32::from(s)),
                u128::from(u32::from(e)),
            )]
        }
        (IpAddr::V6(s), IpAddr::V6(e)) => {
            let (lo, hi) = (u128::from(s), u128::from(e));
            let mut out = Vec::new();
            if lo < MAPPED_LO {
                out.push((Family::V6, lo, hi.min(MAPPED_LO - 1)));
            }
            let (mlo, mhi) = (lo.max(MAPPED_LO), hi.min(MAPPED_HI));
            if mlo <= mhi {
                out.push((Family::V4, mlo - MAPPED_LO, mhi - MAPPED_LO));
            }
            if hi > MAPPED_HI {
                out.push((Family::V6, lo.max(MAPPED_HI + 1), hi));
            }
            out
        }
        _ => unreachable!("parsing keeps both ends of a range in one family"),
    }
}

// ---------------------------------------------------------------------------------------------
// Scope
// ---------------------------------------------------------------------------------------------

/// How long one host name may take to resolve before the scope is refused.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves a host name to its addresses (IPv4-mapped IPv6 answers become IPv4), within
/// [`RESOLVE_TIMEOUT`]. Resolving asks the system resolver; it does not contact the host.
///
/// The engine can use this for peer names a server reports: resolve once, check every address
/// with [`Scope::contains`], and connect to the checked address, never to the name again (a
/// second lookup could answer differently).
pub async fn resolve_host(name: &str) -> Result<Vec<IpAddr>, ScopeError> {
    let unresolved = |reason: String| ScopeError::Unresolved {
        name: name.to_string(),
        reason,
    };
    let answer = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, 0u16)))
        .await
        .map_err(|_| unresolved(format!("no answer within {}s", RESOLVE_TIMEOUT.as_secs())))?
        .map_err(|e| unresolved(e.to_string()))?;
    let mut addrs: Vec<IpAddr> = Vec::new();
    for sa in answer {
        let ip = sa.ip().to_canonical();
        if !addrs.contains(&ip) {
            addrs.push(ip);
        }
    }
    if addrs.is_empty() {
        return Err(unresolved("it has no addresses".into()));
    }
    Ok(addrs)
}

/// Everything needed to build a [`Scope`]. Fields are public so the CLI can merge command-line
/// targets with a [`ScopeFile`].
#[derive(Debug, Clone)]
pub struct ScopeBuilder {
    /// What may be scanned. Targets with a port contribute exactly that port.
    pub allow: Vec<TargetSpec>,
    /// What must never be contacted; a target with a port excludes only that port.
    pub deny: Vec<TargetSpec>,
    /// Ports probed on every allowed target that has no port of its own.
    pub ports: PortList,
    /// The largest number of addresses accepted without `allow_large`.
    pub max_addresses: u128,
    /// Set by `--allow-large-scope`: lift the `max_addresses` limit.
    pub allow_large: bool,
}

impl ScopeBuilder {
    /// Default for [`ScopeBuilder::max_addresses`]: a /16.
    pub const DEFAULT_MAX_ADDRESSES: u128 = 65_536;

    /// A builder for `allow` with the defaults for everything else.
    pub fn new(allow: Vec<TargetSpec>) -> Self {
        ScopeBuilder {
            allow,
            ..Self::default()
        }
    }

    /// The host names in `allow` and `deny` that must be resolved, deduplicated.
    pub fn host_names(&self) -> BTreeSet<String> {
        self.allow
            .iter()
            .chain(&self.deny)
            .filter_map(|t| match &t.kind {
                TargetKind::Host(h) => Some(h.clone()),
                _ => None,
            })
            .collect()
    }

    /// Resolves the host names (concurrently, each within [`RESOLVE_TIMEOUT`]) and builds the
    /// scope. A name that does not resolve, in `allow` or in `deny`, is an error: an exclusion
    /// that silently excludes nothing is worse than no scan.
    pub async fn build(self) -> Result<Scope, ScopeError> {
        let names: Vec<String> = self.host_names().into_iter().collect();
        let answers = futures::future::join_all(names.iter().map(|n| resolve_host(n))).await;
        let mut resolved = HashMap::new();
        for (name, answer) in names.into_iter().zip(answers) {
            resolved.insert(name, answer?);
        }
        self.build_resolved(&resolved)
    }

    /// Builds the scope with host names already resolved (`name -> addresses`); does no I/O.
    /// A host name missing from `resolved`, or mapped to no address, is an error.
    pub fn build_resolved(
        self,
        resolved: &HashMap<String, Vec<IpAddr>>,
    ) -> Result<Scope, ScopeError> {
        if self.allow.is_empty() {
            return Err(ScopeError::NoTargets);
        }
        let lookup = |name: &str| -> Result<&Vec<IpAddr>, ScopeError> {
            match resolved.get(name) {
                Some(a) if !a.is_empty() => Ok(a),
                Some(_) => Err(ScopeError::Unresolved {
                    name: name.into(),
                    reason: "it has no addresses".into(),
                }),
                None => Err(ScopeError::Unresolved {
                    name: name.into(),
                    reason: "it was not resolved".into(),
                }),
            }
        };

        let mut raw = [RawFamily::default(), RawFamily::default()];
        let mut names: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
        for (targets, is_allow) in [(&self.allow, true), (&self.deny, false)] {
            for t in targets {
                let spans: Vec<(IpAddr, IpAddr)> = match &t.kind {
                    TargetKind::Host(h) => {
                        let addrs = lookup(h)?;
                        if is_allow {
                            for a in addrs {
                                let entry = names.entry(a.to_canonical()).or_default();
                                if !entry.contains(h) {
                                    entry.push(h.clone());
                                }
                            }
                        }
                        addrs.iter().map(|a| (*a, *a)).collect()
                    }
                    _ => vec![t.span().expect("not a host")],
                };
                for (s, e) in spans {
                    for (fam, lo, hi) in split_span(s, e) {
                        let r = &mut raw[fam as usize];
                        let bucket = match (is_allow, t.port) {
                            (true, None) => &mut r.allow_list,
                            (true, Some(p)) => r.allow_port.entry(p).or_default(),
                            (false, None) => &mut r.deny_all,
                            (false, Some(p)) => r.deny_port.entry(p).or_default(),
                        };
                        bucket.push((lo, hi));
                    }
                }
            }
        }

        let [raw4, raw6] = raw;
        let v4 = FamilyScope::build(Family::V4, raw4, &self.ports);
        let v6 = FamilyScope::build(Family::V6, raw6, &self.ports);
        let address_count = v4.address_count().saturating_add(v6.address_count());
        if address_count == 0 {
            return Err(ScopeError::AllExcluded);
        }
        if address_count > self.max_addresses && !self.allow_large {
            return Err(ScopeError::TooLarge {
                count: address_count,
                max: self.max_addresses,
            });
        }
        let endpoint_count = v4
            .endpoint_count(&self.ports)
            .saturating_add(v6.endpoint_count(&self.ports));
        Ok(Scope {
            ports: self.ports,
            fams: [v4, v6],
            names,
            address_count,
            endpoint_count,
        })
    }
}

impl Default for ScopeBuilder {
    /// No targets, [`PortList::default_data_stores`], a limit of 65 536 addresses.
    fn default() -> Self {
        ScopeBuilder {
            allow: Vec::new(),
            deny: Vec::new(),
            ports: PortList::default_data_stores(),
            max_addresses: Self::DEFAULT_MAX_ADDRESSES,
            allow_large: false,
        }
    }
}

#[derive(Default)]
struct RawFamily {
    allow_list: Vec<(u128, u128)>,
    allow_port: BTreeMap<u16, Vec<(u128, u128)>>,
    deny_all: Vec<(u128, u128)>,
    deny_port: BTreeMap<u16, Vec<(u128, u128)>>,
}

/// One address family of a built scope. Exclusions are already subtracted from `list` and
/// `explicit` wherever that can be done per interval, so iteration never walks excluded space.
#[derive(Debug, Clone)]
struct FamilyScope {
    fam: Family,
    /// Addresses that get the whole port list.
    list: IvSet,
    /// Addresses allowed on one specific port only, by port.
    explicit: BTreeMap<u16, IvSet>,
    deny_all: IvSet,
    deny_port: BTreeMap<u16, IvSet>,
    /// The `deny_port` sets whose port is in the port list: the only ones that can remove a port
    /// from a `list` host.
    list_denies: Vec<(u16, IvSet)>,
}

impl FamilyScope {
    fn build(fam: Family, raw: RawFamily, ports: &PortList) -> Self {
        let deny_all = IvSet::from_unsorted(raw.deny_all);
        let deny_port: BTreeMap<u16, IvSet> = raw
            .deny_port
            .into_iter()
            .map(|(p, v)| (p, IvSet::from_unsorted(v)))
            .collect();
        let mut list = IvSet::from_unsorted(raw.allow_list).subtract(&deny_all);
        // Addresses on which every listed port is excluded have nothing left to probe; dropping
        // them keeps iteration from walking e.g. a /16 excluded as "10.1.0.0/16:6379".
        if ports.iter().all(|p| deny_port.contains_key(&p)) {
            let mut all_denied: Option<IvSet> = None;
            for p in ports.iter() {
                let d = &deny_port[&p];
                all_denied = Some(match all_denied {
                    None => d.clone(),
                    Some(acc) => acc.intersect(d),
                });
            }
            if let Some(d) = all_denied {
                list = list.subtract(&d);
            }
        }
        let explicit = raw
            .allow_port
            .into_iter()
            .filter_map(|(p, v)| {
                let mut set = IvSet::from_unsorted(v).subtract(&deny_all);
                if let Some(d) = deny_port.get(&p) {
                    set = set.subtract(d);
                }
                (!set.is_empty()).then_some((p, set))
            })
            .collect();
        let list_denies = deny_port
            .iter()
            .filter(|(p, _)| ports.contains(**p))
            .map(|(p, s)| (*p, s.clone()))
            .collect();
        FamilyScope {
            fam,
            list,
            explicit,
            deny_all,
            deny_port,
            list_denies,
        }
    }

    fn address_count(&self) -> u128 {
        self.explicit
            .values()
            .fold(self.list.clone(), |acc, s| acc.union(s))
            .count()
    }

    fn endpoint_count(&self, ports: &PortList) -> u128 {
        let mut total = self.list.count().saturating_mul(ports.len() as u128);
        for (_, d) in &self.list_denies {
            total = total.saturating_sub(self.list.intersect(d).count());
        }
        for (p, set) in &self.explicit {
            let extra = if ports.contains(*p) {
                set.subtract(&self.list).count()
            } else {
                set.count()
            };
            total = total.saturating_add(extra);
        }
        total
    }

    fn contains(&self, k: u128, port: u16, ports: &PortList) -> bool {
        if self.deny_all.contains(k) || self.deny_port.get(&port).is_some_and(|d| d.contains(k)) {
            return false;
        }
        (ports.contains(port) && self.list.contains(k))
            || self.explicit.get(&port).is_some_and(|s| s.contains(k))
    }
}

/// The resolved, checked set of endpoints a scan may contact. Cheap to query; build it once per
/// scan with [`ScopeBuilder`].
#[derive(Debug, Clone)]
pub struct Scope {
    ports: PortList,
    fams: [FamilyScope; 2],
    names: BTreeMap<IpAddr, Vec<String>>,
    address_count: u128,
    endpoint_count: u128,
}

impl Scope {
    /// Whether `addr:port` may be contacted: allowed by some target and excluded by none.
    /// Use it for every address a server reports (cluster peers, replica-set members, redirects)
    /// before connecting; anything outside is reported, never contacted. An IPv4-mapped IPv6
    /// address is judged as the IPv4 address it maps.
    pub fn contains(&self, addr: IpAddr, port: u16) -> bool {
        if port == 0 {
            return false;
        }
        let (fam, k) = ip_key(addr);
        self.fams[fam as usize].contains(k, port, &self.ports)
    }

    /// [`Scope::contains`] for a socket address.
    pub fn contains_socket(&self, sa: SocketAddr) -> bool {
        self.contains(sa.ip(), sa.port())
    }

    /// Every endpoint to probe, lazily: IPv4 before IPv6, ascending address, and all ports of
    /// one host consecutively (the port list in its order, then ports given explicitly on
    /// targets). Each endpoint appears once however the targets overlap.
    pub fn endpoints(&self) -> Endpoints<'_> {
        Endpoints {
            hosts: self.hosts(),
            ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            ports: Vec::new().into_iter(),
        }
    }

    /// Every host to probe with its ports, lazily, in the order of [`Scope::endpoints`].
    pub fn hosts(&self) -> Hosts<'_> {
        Hosts {
            scope: self,
            fam: 0,
            cursors: None,
        }
    }

    /// Number of distinct addresses in the scope (saturating at `u128::MAX`).
    pub fn address_count(&self) -> u128 {
        self.address_count
    }

    /// Number of endpoints [`Scope::endpoints`] yields (saturating at `u128::MAX`), for progress
    /// reporting.
    pub fn endpoint_count(&self) -> u128 {
        self.endpoint_count
    }

    /// The port list probed on targets without their own port.
    pub fn ports(&self) -> &PortList {
        &self.ports
    }

    /// The host names the user wrote that resolved to `addr`, for reporting; empty if it was
    /// given as an address.
    pub fn host_names(&self, addr: IpAddr) -> &[String] {
        self.names
            .get(&addr.to_canonical())
            .map_or(&[], Vec::as_slice)
    }

    /// The first address of the scope outside loopback (127.0.0.0/8, ::1), if any. Test
    /// harnesses use it to refuse any scope that could leave the machine.
    pub fn first_non_loopback(&self) -> Option<IpAddr> {
        self.fams.iter().find_map(|f| {
            let sets = std::iter::once(&f.list).chain(f.explicit.values());
            sets.flat_map(|s| s.0.iter()).find_map(|&(lo, hi)| {
                let (a, b) = (key_ip(f.fam, lo), key_ip(f.fam, hi));
                if !a.is_loopback() {
                    Some(a)
                } else if !b.is_loopback() {
                    Some(b)
                } else {
                    None
                }
            })
        })
    }
}

/// Walks the union of interval sets of one family in ascending order.
#[derive(Debug, Clone)]
struct Cursor<'a> {
    ivs: &'a [(u128, u128)],
    idx: usize,
    next: u128,
}

impl<'a> Cursor<'a> {
    fn new(set: &'a IvSet) -> Self {
        Cursor {
            ivs: &set.0,
            idx: 0,
            next: set.0.first().map_or(0, |iv| iv.0),
        }
    }

    fn peek(&self) -> Option<u128> {
        (self.idx < self.ivs.len()).then_some(self.next)
    }

    fn advance(&mut self) {
        // Comparing with the interval end before incrementing avoids overflow at u128::MAX.
        if self.next == self.ivs[self.idx].1 {
            self.idx += 1;
            if let Some(iv) = self.ivs.get(self.idx) {
                self.next = iv.0;
            }
        } else {
            self.next += 1;
        }
    }
}

#[derive(Debug, Clone)]
struct FamilyCursors<'a> {
    list: Cursor<'a>,
    explicit: Vec<(u16, Cursor<'a>)>,
}

/// Lazy iterator over `(address, ports)` of a [`Scope`]; see [`Scope::hosts`].
#[derive(Debug, Clone)]
pub struct Hosts<'a> {
    scope: &'a Scope,
    fam: usize,
    cursors: Option<FamilyCursors<'a>>,
}

impl Iterator for Hosts<'_> {
    type Item = (IpAddr, Vec<u16>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let fs = self.scope.fams.get(self.fam)?;
            let cur = self.cursors.get_or_insert_with(|| FamilyCursors {
                list: Cursor::new(&fs.list),
                explicit: fs
                    .explicit
                    .iter()
                    .map(|(p, s)| (*p, Cursor::new(s)))
                    .collect(),
            });
            let next = cur
                .explicit
                .iter()
                .filter_map(|(_, c)| c.peek())
                .chain(cur.list.peek())
                .min();
            let Some(k) = next else {
                self.fam += 1;
                self.cursors = None;
                continue;
            };
            let mut ports = Vec::new();
            let in_list = cur.list.peek() == Some(k);
            if in_list {
                cur.list.advance();
                let denied: Vec<u16> = fs
                    .list_denies
                    .iter()
                    .filter(|(_, d)| d.contains(k))
                    .map(|(p, _)| *p)
                    .collect();
                ports.extend(self.scope.ports.iter().filter(|p| !denied.contains(p)));
            }
            for (p, c) in &mut cur.explicit {
                if c.peek() == Some(k) {
                    c.advance();
                    if !(in_list && self.scope.ports.contains(*p)) {
                        ports.push(*p);
                    }
                }
            }
            if !ports.is_empty() {
                return Some((key_ip(fs.fam, k), ports));
            }
        }
    }
}

/// Lazy iterator over the socket addresses of a [`Scope`]; see [`Scope::endpoints`].
#[derive(Debug, Clone)]
pub struct Endpoints<'a> {
    hosts: Hosts<'a>,
    ip: IpAddr,
    ports: std::vec::IntoIter<u16>,
}

impl Iterator for Endpoints<'_> {
    type Item = SocketAddr;

    fn next(&mut self) -> Option<SocketAddr> {
        loop {
            if let Some(p) = self.ports.next() {
                return Some(SocketAddr::new(self.ip, p));
            }
            let (ip, ports) = self.hosts.next()?;
            self.ip = ip;
            self.ports = ports.into_iter();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scope file
// ---------------------------------------------------------------------------------------------

/// Scope files are written by people; anything this big is a mistake, not a scope.
const MAX_SCOPE_FILE_BYTES: u64 = 4 << 20;

/// A scope kept in a TOML file, so an authorized scope can be reviewed and versioned:
///
/// ```toml
/// allow = ["127.0.10.0/24", "localhost:9200"]
/// deny  = ["127.0.10.9"]
/// ports = "6379,9200"        # optional
/// ```
///
/// Both lists are optional, so a file may hold only a shared `deny` list; unknown keys are
/// refused so a misspelt `deny` cannot silently exclude nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeFile {
    /// Targets that may be scanned.
    pub allow: Vec<TargetSpec>,
    /// Targets that must never be contacted.
    pub deny: Vec<TargetSpec>,
    /// The port list, if the file sets one.
    pub ports: Option<PortList>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScopeFile {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    ports: Option<String>,
}

impl ScopeFile {
    /// Reads and parses a scope file. Every error is one line naming the file (and the entry).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ScopeError> {
        let path = path.as_ref();
        let fail = |detail: String| ScopeError::File {
            path: path.display().to_string(),
            detail,
        };
        let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
        if meta.len() > MAX_SCOPE_FILE_BYTES {
            return Err(fail(format!(
                "it is {} bytes, more than the {} accepted for a scope file",
                meta.len(),
                MAX_SCOPE_FILE_BYTES
            )));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
        Self::from_toml(&text, path)
    }

    /// Parses scope-file text; `path` is only used in error messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ScopeError> {
        let fail = |detail: String| ScopeError::File {
            path: path.display().to_string(),
            detail,
        };
        let raw: RawScopeFile = toml::from_str(text).map_err(|e| {
            let msg = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
            match e.span() {
                Some(span) => {
                    let (line, col) = line_col(text, span.start);
                    fail(format!("line {line}, column {col}: {msg}"))
                }
                None => fail(msg),
            }
        })?;
        let entries = |list: Vec<String>, key: &str| -> Result<Vec<TargetSpec>, ScopeError> {
            list.iter()
                .enumerate()
                .map(|(i, s)| {
                    s.parse::<TargetSpec>()
                        .map_err(|e| fail(format!("{key} entry {}: {e}", i + 1)))
                })
                .collect()
        };
        let allow = entries(raw.allow, "allow")?;
        let deny = entries(raw.deny, "deny")?;
        let ports = raw
            .ports
            .map(|p| {
                p.parse::<PortList>()
                    .map_err(|e| fail(format!("ports: {e}")))
            })
            .transpose()?;
        Ok(ScopeFile { allow, deny, ports })
    }

    /// A builder with this file's targets; its ports, or the default data-store ports.
    pub fn into_builder(self) -> ScopeBuilder {
        ScopeBuilder {
            allow: self.allow,
            deny: self.deny,
            ports: self.ports.unwrap_or_else(PortList::default_data_stores),
            ..ScopeBuilder::default()
        }
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn t(s: &str) -> TargetSpec {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn target_err(s: &str) -> String {
        match s.parse::<TargetSpec>() {
            Ok(t) => panic!("{s:?} was accepted as {t:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn ports_err(s: &str) -> String {
        match s.parse::<PortList>() {
            Ok(p) => panic!("{s:?} was accepted as {p:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn build(allow: &[&str], deny: &[&str], ports: &str) -> Result<Scope, ScopeError> {
        ScopeBuilder {
            allow: allow.iter().map(|s| t(s)).collect(),
            deny: deny.iter().map(|s| t(s)).collect(),
            ports: ports.parse().unwrap(),
            ..ScopeBuilder::default()
        }
        .build_resolved(&HashMap::new())
    }

    fn scope(allow: &[&str], deny: &[&str], ports: &str) -> Scope {
        build(allow, deny, ports).unwrap()
    }

    // --- ports -------------------------------------------------------------------------------

    #[test]
    fn port_list_forms() {
        let p: PortList = "6379,9200-9210,27017".parse().unwrap();
        assert_eq!(p.len(), 13);
        assert_eq!(p.as_slice()[..3], [6379, 9200, 9201]);
        assert_eq!(*p.as_slice().last().unwrap(), 27017);
        assert!(p.contains(9205) && p.contains(27017) && !p.contains(9211) && !p.contains(0));

        let spaced: PortList = " 6379 , 9200 - 9202 ,1".parse().unwrap();
        assert_eq!(spaced.as_slice(), [6379, 9200, 9201, 9202, 1]);

        let all: PortList = "1-65535".parse().unwrap();
        assert_eq!(all.len(), 65535);
        assert!(all.contains(65535) && all.contains(1));
    }

    #[test]
    fn port_list_dedups_keeping_first_order() {
        let p: PortList = "6379,6379,6378-6380,22".parse().unwrap();
        assert_eq!(p.as_slice(), [6379, 6378, 6380, 22]);
    }

    #[test]
    fn port_list_display_round_trips() {
        for s in ["6379,9200-9210,27017", "1-65535", "22", "80,81,79"] {
            let p: PortList = s.parse().unwrap();
            assert_eq!(p.to_string().parse::<PortList>().unwrap(), p);
        }
        assert_eq!(
            "9200-9202,6379".parse::<PortList>().unwrap().to_string(),
            "9200-9202,6379"
        );
        assert_eq!(
            "80,81,79".parse::<PortList>().unwrap().to_string(),
            "80-81,79"
        );
    }

    #[test]
    fn port_list_rejections() {
        let cases = [
            ("", "invalid port list '': it is empty"),
            ("  ", "invalid port list '  ': it is empty"),
            ("0", "invalid port list '0': port 0 is not a valid port (1-65535)"),
            ("65536", "invalid port list '65536': port 65536 is out of range (1-65535)"),
            (
                "99999999999999999999",
                "invalid port list '99999999999999999999': port 99999999999999999999 is out of range (1-65535)",
            ),
            (
                "9210-9200",
                "invalid port list '9210-9200': range '9210-9200' is reversed: 9210 comes after 9200",
            ),
            ("6379,,9200", "invalid port list '6379,,9200': item 2 is empty (stray comma?)"),
            ("6379,", "invalid port list '6379,': item 2 is empty (stray comma?)"),
            ("http", "invalid port list 'http': 'http' is not a port number"),
            ("+80", "invalid port list '+80': '+80' is not a port number"),
            ("-80", "invalid port list '-80': range '-80' needs a start and an end"),
            ("1-2-3", "invalid port list '1-2-3': '2-3' is not a port number"),
            ("0-10", "invalid port list '0-10': port 0 is not a valid port (1-65535)"),
        ];
        for (input, msg) in cases {
            assert_eq!(ports_err(input), msg, "input {input:?}");
        }
        assert!(PortList::from_ports([]).is_err());
        assert!(PortList::from_ports([80, 0]).is_err());
        assert_eq!(
            PortList::from_ports([80, 80, 443]).unwrap().as_slice(),
            [80, 443]
        );
    }

    // --- targets -----------------------------------------------------------------------------

    #[test]
    fn target_accepted_forms() {
        use TargetKind::*;
        let net = |s: &str| Network(s.parse().unwrap());
        let range = |a: &str, b: &str| Range {
            start: ip(a),
            end: ip(b),
        };
        let host = |s: &str| Host(s.to_string());
        let cases: Vec<(&str, TargetKind, Option<u16>)> = vec![
            ("127.0.0.1", Address(ip("127.0.0.1")), None),
            ("::1", Address(ip("::1")), None),
            ("  127.0.0.1  ", Address(ip("127.0.0.1")), None),
            ("127.0.10.0/24", net("127.0.10.0/24"), None),
            ("127.0.10.77/24", net("127.0.10.0/24"), None),
            ("127.0.0.1/32", net("127.0.0.1/32"), None),
            ("0.0.0.0/0", net("0.0.0.0/0"), None),
            ("fd00::/120", net("fd00::/120"), None),
            ("fd00::1:2/112", net("fd00::1:0/112"), None),
            (
                "127.0.10.1-127.0.10.20",
                range("127.0.10.1", "127.0.10.20"),
                None,
            ),
            ("127.0.10.1-20", range("127.0.10.1", "127.0.10.20"), None),
            ("127.0.10.1 - 20", range("127.0.10.1", "127.0.10.20"), None),
            ("127.0.10.5-5", range("127.0.10.5", "127.0.10.5"), None),
            (
                "127.0.9.250-127.0.10.3",
                range("127.0.9.250", "127.0.10.3"),
                None,
            ),
            ("fd00::1-fd00::20", range("fd00::1", "fd00::20"), None),
            ("db.example.internal", host("db.example.internal"), None),
            ("localhost", host("localhost"), None),
            (
                "db-1.example.internal.",
                host("db-1.example.internal."),
                None,
            ),
            ("my_db", host("my_db"), None),
            ("10-0-0-1.example", host("10-0-0-1.example"), None),
            ("1-2-3-4.nip.io:80", host("1-2-3-4.nip.io"), Some(80)),
            ("127.0.0.1:6379", Address(ip("127.0.0.1")), Some(6379)),
            ("[::1]:6379", Address(ip("::1")), Some(6379)),
            ("[::1]", Address(ip("::1")), None),
            ("localhost:9200", host("localhost"), Some(9200)),
            (
                "db-1.example.internal:65535",
                host("db-1.example.internal"),
                Some(65535),
            ),
            ("127.0.10.0/24:6379", net("127.0.10.0/24"), Some(6379)),
            (
                "127.0.10.1-20:6379",
                range("127.0.10.1", "127.0.10.20"),
                Some(6379),
            ),
            ("[fd00::/120]:6379", net("fd00::/120"), Some(6379)),
            ("[fd00::1-fd00::9]:1", range("fd00::1", "fd00::9"), Some(1)),
        ];
        for (input, kind, port) in cases {
            let spec = t(input);
            assert_eq!(spec, TargetSpec { kind, port }, "input {input:?}");
            let again: TargetSpec = spec.to_string().parse().unwrap();
            assert_eq!(again, spec, "display round trip of {input:?} via {spec}");
        }
        assert!(t("localhost").is_host() && !t("::1").is_host());
        assert_eq!(t("[fd00::/120]:6379").to_string(), "[fd00::/120]:6379");
        assert_eq!(t("127.0.10.1-20").to_string(), "127.0.10.1-127.0.10.20");
    }

    #[test]
    fn target_rejections() {
        let cases = [
            ("", "empty target: give an address, CIDR, range or host name"),
            ("   ", "empty target: give an address, CIDR, range or host name"),
            (
                "127.0.10.0/33",
                "invalid target '127.0.10.0/33': prefix /33 is longer than 32, the maximum for IPv4",
            ),
            (
                "fd00::/129",
                "invalid target 'fd00::/129': prefix /129 is longer than 128, the maximum for IPv6",
            ),
            (
                "127.0.10.0/",
                "invalid target '127.0.10.0/': the prefix length after '/' is missing",
            ),
            ("127.0.10.0/x", "invalid target '127.0.10.0/x': prefix '/x' is not a number"),
            (
                "127.0.10.0/99999999999",
                "invalid target '127.0.10.0/99999999999': prefix /99999999999 is longer than 32, the maximum for IPv4",
            ),
            (
                "db/24",
                "invalid target 'db/24': 'db' is not an IP address (a CIDR needs an IP address before '/')",
            ),
            (
                "127.0.0.256",
                "invalid target '127.0.0.256': '127.0.0.256' is not an IPv4 address: octet 256 is out of range (0-255)",
            ),
            (
                "127.0.0.256/24",
                "invalid target '127.0.0.256/24': '127.0.0.256' is not an IPv4 address: octet 256 is out of range (0-255)",
            ),
            (
                "127.0.0",
                "invalid target '127.0.0': '127.0.0' is not an IPv4 address: it has 3 octets, expected 4",
            ),
            (
                "127.0.010.1",
                "invalid target '127.0.010.1': '127.0.010.1' is not an IPv4 address: octet '010' has a leading zero (ambiguous)",
            ),
            (
                "127..0.1",
                "invalid target '127..0.1': '127..0.1' is not an IPv4 address: an octet is empty",
            ),
            (
                "127.0.10.20-127.0.10.1",
                "invalid target '127.0.10.20-127.0.10.1': the range is reversed: 127.0.10.20 comes after 127.0.10.1",
            ),
            (
                "127.0.10.20-1",
                "invalid target '127.0.10.20-1': the range is reversed: 127.0.10.20 comes after 127.0.10.1",
            ),
            (
                "fd00::9-fd00::1",
                "invalid target 'fd00::9-fd00::1': the range is reversed: fd00::9 comes after fd00::1",
            ),
            (
                "127.0.10.1-256",
                "invalid target '127.0.10.1-256': range end '256' is not a last octet (0-255) or a full address",
            ),
            (
                "127.0.10.1-",
                "invalid target '127.0.10.1-': the end of the range after '-' is missing",
            ),
            (
                "127.0.10.1-127.0.10.300",
                "invalid target '127.0.10.1-127.0.10.300': '127.0.10.300' is not an IPv4 address: octet 300 is out of range (0-255)",
            ),
            (
                "127.0.10.1-db",
                "invalid target '127.0.10.1-db': range end 'db' is not a last octet (0-255) or a full IPv4 address",
            ),
            (
                "127.0.10.300-5",
                "invalid target '127.0.10.300-5': '127.0.10.300' is not an IPv4 address: octet 300 is out of range (0-255)",
            ),
            (
                "127.0.0.1-::1",
                "invalid target '127.0.0.1-::1': a range cannot mix IPv4 and IPv6",
            ),
            (
                "fd00::1-20",
                "invalid target 'fd00::1-20': range end '20' is not an IPv6 address (IPv6 ranges need two full addresses)",
            ),
            (
                "127.0.0.1:0",
                "invalid target '127.0.0.1:0': port 0 is not a valid port (1-65535)",
            ),
            (
                "127.0.0.1:70000",
                "invalid target '127.0.0.1:70000': port 70000 is out of range (1-65535)",
            ),
            ("localhost:", "invalid target 'localhost:': a port is missing"),
            ("localhost:http", "invalid target 'localhost:http': 'http' is not a port number"),
            (":6379", "invalid target ':6379': missing address or host name before ':'"),
            ("[::1", "invalid target '[::1': missing ']' after the bracketed address"),
            ("[]:80", "invalid target '[]:80': nothing between '[' and ']'"),
            (
                "[::1]6379",
                "invalid target '[::1]6379': unexpected '6379' after ']'; expected ':port'",
            ),
            ("[::1]:0", "invalid target '[::1]:0': port 0 is not a valid port (1-65535)"),
            (
                "[db.example]:80",
                "invalid target '[db.example]:80': only an address, CIDR or range may be written in brackets",
            ),
            (
                "fd00::/120:6379",
                "invalid target 'fd00::/120:6379': prefix '/120:6379' is not a number",
            ),
            ("gggg::1", "invalid target 'gggg::1': 'gggg::1' is not a valid IPv6 address"),
            (
                "fe80::1%eth0",
                "invalid target 'fe80::1%eth0': 'fe80::1%eth0': IPv6 zone ids (%interface) are not supported",
            ),
            (
                "http://db.example:9200",
                "invalid target 'http://db.example:9200': looks like a URL; give an address or host name, optionally with :port",
            ),
            (
                "db example",
                "invalid target 'db example': 'db example' is not an address, CIDR, range or host name: ' ' is not allowed in a host name",
            ),
            (
                "db..example",
                "invalid target 'db..example': 'db..example' is not an address, CIDR, range or host name: it has an empty label ('..' or a leading dot)",
            ),
            (
                "-db.example",
                "invalid target '-db.example': '-db.example' is not an address, CIDR, range or host name: label '-db' starts or ends with '-'",
            ),
            (
                "db@example",
                "invalid target 'db@example': 'db@example' is not an address, CIDR, range or host name: '@' is not allowed in a host name",
            ),
        ];
        for (input, msg) in cases {
            assert_eq!(target_err(input), msg, "input {input:?}");
        }
        let long_label = format!("{}.example", "a".repeat(64));
        assert!(target_err(&long_label).ends_with("a label has more than 63 characters"));
        let long_name = vec!["abcdefghi"; 26].join(".");
        assert!(target_err(&long_name).ends_with("a host name has at most 253 characters"));
    }

    /// Found with fuzz/fuzz_targets/scope.rs: an entry holding a newline (a TOML `"a\nb"`, or a
    /// command-line argument) made a multi-line error.
    #[test]
    fn errors_escape_control_characters_in_what_was_given() {
        let e = target_err("a\nb");
        assert!(e.starts_with("invalid target 'a\\nb'"), "{e}");
        assert_eq!(
            ports_err("1,2\n\u{1}"),
            "invalid port list '1,2\\n\\u{1}': '2\\n\\u{1}' is not a port number"
        );
        let file = ScopeFile::from_toml("allow = [\"a\\nb\"]", Path::new("odd\nname.toml"))
            .unwrap_err()
            .to_string();
        assert!(!file.contains('\n'), "{file}");
        assert!(
            file.starts_with("scope file 'odd\\nname.toml': allow entry 1:"),
            "{file}"
        );
    }

    #[test]
    fn every_error_is_one_line() {
        for input in ["127.0.0.256", "fd00::/129", "x y", "[::1", "127.0.0.1:0"] {
            assert!(!target_err(input).contains('\n'));
        }
        let too_large = ScopeError::TooLarge {
            count: 1 << 24,
            max: 65_536,
        }
        .to_string();
        assert!(!too_large.contains('\n'));
    }

    // --- scope -------------------------------------------------------------------------------

    #[test]
    fn single_address_gets_the_port_list() {
        let s = scope(&["127.0.0.1"], &[], "6379,9200");
        let got: Vec<_> = s.endpoints().collect();
        assert_eq!(got, [sa("127.0.0.1:6379"), sa("127.0.0.1:9200")]);
        assert_eq!(s.address_count(), 1);
        assert_eq!(s.endpoint_count(), 2);
    }

    #[test]
    fn explicit_port_contributes_exactly_that_port() {
        let s = scope(&["127.0.0.1:6379", "[::1]:9200"], &[], "21,22,23");
        let got: Vec<_> = s.endpoints().collect();
        assert_eq!(got, [sa("127.0.0.1:6379"), sa("[::1]:9200")]);
        assert!(s.contains(ip("127.0.0.1"), 6379));
        assert!(!s.contains(ip("127.0.0.1"), 21));
        assert_eq!(s.endpoint_count(), 2);
    }

    #[test]
    fn exclusion_of_an_address_wins_over_a_cidr() {
        let s = scope(&["127.0.10.0/24"], &["127.0.10.9"], "6379,9200");
        assert_eq!(s.address_count(), 255);
        assert_eq!(s.endpoint_count(), 510);
        let got: Vec<_> = s.endpoints().collect();
        assert_eq!(got.len(), 510);
        assert!(got.iter().all(|e| e.ip() != ip("127.0.10.9")));
        assert!(!s.contains(ip("127.0.10.9"), 6379));
        assert!(!s.contains(ip("127.0.10.9"), 9200));
        assert!(s.contains(ip("127.0.10.8"), 6379));
        assert!(s.contains(ip("127.0.10.10"), 9200));
    }

    #[test]
    fn exclusion_of_one_port_keeps_the_others() {
        let s = scope(&["127.0.10.0/24"], &["127.0.10.9:6379"], "6379,9200");
        assert_eq!(s.address_count(), 256);
        assert_eq!(s.endpoint_count(), 511);
        let got: Vec<_> = s.endpoints().collect();
        assert_eq!(got.len(), 511);
        assert!(!got.contains(&sa("127.0.10.9:6379")));
        assert!(got.contains(&sa("127.0.10.9:9200")));
        assert!(!s.contains(ip("127.0.10.9"), 6379));
        assert!(s.contains(ip("127.0.10.9"), 9200));
        assert_eq!(
            s.hosts().find(|(a, _)| *a == ip("127.0.10.9")).unwrap().1,
            [9200]
        );
    }

    #[test]
    fn exclusions_win_over_explicit_endpoints_and_ranges() {
        assert_eq!(
            build(&["127.0.0.1:6379"], &["127.0.0.1"], "9200").unwrap_err(),
            ScopeError::AllExcluded
        );
        assert_eq!(
            build(&["127.0.0.1:6379"], &["127.0.0.0/8:6379"], "9200").unwrap_err(),
            ScopeError::AllExcluded
        );
        let s = scope(
            &["127.0.10.1-20"],
            &["127.0.10.5-15", "127.0.10.0/30"],
            "80",
        );
        let got: Vec<IpAddr> = s.hosts().map(|(a, _)| a).collect();
        let want: Vec<IpAddr> = std::iter::once(4)
            .chain(16..=20)
            .map(|i| ip(&format!("127.0.10.{i}")))
            .collect();
        assert_eq!(got, want);
        // An exclusion outside the allow list changes nothing.
        assert_eq!(
            scope(&["127.0.0.1"], &["10.0.0.0/8"], "80").endpoint_count(),
            1
        );
    }

    #[test]
    fn port_exclusions_covering_every_listed_port_remove_the_address() {
        let s = scope(
            &["127.0.10.0/24"],
            &["127.0.10.0/25:6379", "127.0.10.0/26:9200"],
            "6379,9200",
        );
        // .0-.63 lose both ports, .64-.127 keep 9200, the rest keep both.
        assert_eq!(s.address_count(), 192);
        assert_eq!(s.endpoint_count(), 64 + 128 * 2);
        assert_eq!(s.endpoints().count(), 64 + 128 * 2);
        assert_eq!(s.hosts().next().unwrap(), (ip("127.0.10.64"), vec![9200]));
        assert_eq!(
            build(&["127.0.10.0/24"], &["127.0.0.0/8:6379"], "6379").unwrap_err(),
            ScopeError::AllExcluded
        );
    }

    #[test]
    fn overlapping_allows_yield_each_endpoint_once() {
        let s = scope(
            &[
                "127.0.10.0/24",
                "127.0.10.0/25",
                "127.0.10.5",
                "127.0.10.1-127.0.10.9",
                "127.0.10.5:6379",
                "127.0.10.5:8080",
                "127.0.10.6:8080",
                "127.0.11.1:8080",
                "127.0.11.1:8080",
            ],
            &[],
            "6379,9200",
        );
        let got: Vec<_> = s.endpoints().collect();
        let unique: BTreeSet<_> = got.iter().collect();
        assert_eq!(got.len(), unique.len(), "an endpoint was yielded twice");
        assert_eq!(got.len(), 256 * 2 + 2 + 1);
        assert_eq!(s.endpoint_count(), got.len() as u128);
        assert_eq!(s.address_count(), 257);
        let five: Vec<_> = s.hosts().filter(|(a, _)| *a == ip("127.0.10.5")).collect();
        assert_eq!(five, [(ip("127.0.10.5"), vec![6379, 9200, 8080])]);
    }

    #[test]
    fn endpoints_are_host_major_v4_first_and_ascending() {
        let s = scope(
            &["::1", "127.0.0.2", "127.0.0.1", "127.0.0.1:8080"],
            &[],
            "9200,6379",
        );
        let got: Vec<_> = s.endpoints().collect();
        let want: Vec<_> = [
            "127.0.0.1:9200",
            "127.0.0.1:6379",
            "127.0.0.1:8080",
            "127.0.0.2:9200",
            "127.0.0.2:6379",
            "[::1]:9200",
            "[::1]:6379",
        ]
        .into_iter()
        .map(sa)
        .collect();
        assert_eq!(got, want);
        let hosts: Vec<_> = s.hosts().collect();
        assert_eq!(hosts.len(), 3);
        assert_eq!(hosts[0], (ip("127.0.0.1"), vec![9200, 6379, 8080]));
    }

    #[test]
    fn slash_16_counts_65536_and_slash_8_is_refused() {
        let s = scope(&["127.0.0.0/16"], &[], "80");
        assert_eq!(s.address_count(), 65_536);

        let err = build(&["127.0.0.0/8"], &[], "80").unwrap_err();
        assert_eq!(
            err,
            ScopeError::TooLarge {
                count: 16_777_216,
                max: 65_536
            }
        );
        let msg = err.to_string();
        assert!(msg.contains("16777216") && msg.contains("65536"));
        assert!(msg.contains("--allow-large-scope"));

        let mut b = ScopeBuilder::new(vec![t("127.0.0.0/8")]);
        b.allow_large = true;
        let s = b.build_resolved(&HashMap::new()).unwrap();
        assert_eq!(s.address_count(), 16_777_216);

        // The limit counts what is left after exclusions.
        assert!(build(&["127.0.0.0/15"], &["127.1.0.0/16"], "80").is_ok());
        // Overlaps are counted once.
        assert!(build(
            &["127.0.0.0/16", "127.0.0.0/17", "127.0.0.1:6379"],
            &[],
            "80"
        )
        .is_ok());

        let mut small = ScopeBuilder::new(vec![t("127.0.10.0/24")]);
        small.max_addresses = 100;
        assert_eq!(
            small.build_resolved(&HashMap::new()).unwrap_err(),
            ScopeError::TooLarge {
                count: 256,
                max: 100
            }
        );
    }

    #[test]
    fn ipv6_slash_64_is_refused_instantly() {
        let start = Instant::now();
        let err = build(&["fd00::/64"], &[], "80").unwrap_err();
        assert_eq!(
            err,
            ScopeError::TooLarge {
                count: 1 << 64,
                max: 65_536
            }
        );
        assert!(
            start.elapsed() < Duration::from_millis(250),
            "{:?}",
            start.elapsed()
        );

        // Even the whole IPv6 space is counted without walking it.
        let mut b = ScopeBuilder::new(vec![t("::/0")]);
        b.allow_large = true;
        let s = b.build_resolved(&HashMap::new()).unwrap();
        assert_eq!(s.address_count(), u128::MAX);
        assert!(start.elapsed() < Duration::from_millis(500));
    }

    #[test]
    fn endpoints_are_lazy() {
        let s = scope(&["127.0.0.0/16"], &[], "9200-9219");
        assert_eq!(s.endpoint_count(), 65_536 * 20);
        let start = Instant::now();
        let first: Vec<_> = s.endpoints().take(5).collect();
        assert!(
            // Generous so a machine busy with other builds cannot make it flaky; walking the
            // range would take seconds.
            start.elapsed() < Duration::from_millis(100),
            "{:?}",
            start.elapsed()
        );
        let want: Vec<_> = (9200..9205)
            .map(|p| SocketAddr::new(ip("127.0.0.0"), p))
            .collect();
        assert_eq!(first, want);
        // The iterator holds cursors, not addresses.
        assert!(std::mem::size_of::<Endpoints<'_>>() < 256);

        // A scope that could never be materialised still iterates.
        let mut b = ScopeBuilder::new(vec![t("fd00::/64")]);
        b.allow_large = true;
        b.ports = "80".parse().unwrap();
        let huge = b.build_resolved(&HashMap::new()).unwrap();
        let got: Vec<_> = huge.endpoints().skip(1).take(2).collect();
        assert_eq!(got, [sa("[fd00::1]:80"), sa("[fd00::2]:80")]);
    }

    #[test]
    fn full_iteration_matches_the_counts() {
        let s = scope(
            &["127.0.0.0/20", "127.0.20.1:8080", "::1"],
            &["127.0.3.0/24", "127.0.4.4:9201"],
            "9200-9219",
        );
        let mut n = 0u128;
        let mut last: Option<(IpAddr, u16)> = None;
        for e in s.endpoints() {
            assert!(s.contains_socket(e), "{e} yielded but not contained");
            if let Some((a, _)) = last {
                let (fa, ka) = ip_key(a);
                let (fe, ke) = ip_key(e.ip());
                assert!((fa, ka) <= (fe, ke), "not host-major at {e}");
            }
            last = Some((e.ip(), e.port()));
            n += 1;
        }
        assert_eq!(n, s.endpoint_count());
        assert_eq!(n, (4096 - 256) * 20 - 1 + 1 + 20);
        assert_eq!(s.address_count(), 4096 - 256 + 2);
    }

    #[test]
    fn contains_decides_about_peers() {
        let s = scope(
            &["127.0.10.0/24", "127.0.20.5:9300"],
            &["127.0.10.9", "127.0.10.10:9200"],
            "9200,9300",
        );
        assert!(s.contains(ip("127.0.10.2"), 9300)); // a cluster peer inside the scope
        assert!(!s.contains(ip("127.0.10.2"), 6379)); // port not listed
        assert!(!s.contains(ip("127.0.11.2"), 9300)); // address not listed
        assert!(!s.contains(ip("10.0.0.1"), 9300));
        assert!(!s.contains(ip("127.0.10.9"), 9300)); // excluded address
        assert!(!s.contains(ip("127.0.10.10"), 9200)); // excluded port
        assert!(s.contains(ip("127.0.10.10"), 9300));
        assert!(s.contains(ip("127.0.20.5"), 9300)); // explicit endpoint
        assert!(!s.contains(ip("127.0.20.5"), 9200));
        assert!(!s.contains(ip("127.0.10.2"), 0));
        // A peer reported as IPv4-mapped IPv6 is judged as its IPv4 address.
        assert!(s.contains(ip("::ffff:127.0.10.2"), 9300));
        assert!(!s.contains(ip("::ffff:127.0.10.9"), 9300));
        assert!(!s.contains(ip("::1"), 9300));
        assert!(s.contains_socket(sa("127.0.10.3:9200")));
    }

    #[test]
    fn ipv4_mapped_targets_are_treated_as_ipv4() {
        let s = scope(
            &["::ffff:127.0.10.0/120"],
            &["127.0.10.9", "[::ffff:127.0.10.8]:80"],
            "80",
        );
        // .9 excluded on all ports, .8 on its only port.
        assert_eq!(s.address_count(), 254);
        assert_eq!(s.hosts().next().unwrap().0, ip("127.0.10.0"));
        assert!(!s.contains(ip("127.0.10.9"), 80));
        assert!(!s.contains(ip("127.0.10.8"), 80));
        // A range straddling the mapped block splits cleanly.
        let mut b = ScopeBuilder::new(vec![t("::fffe:ffff:ffff-::ffff:0:1")]);
        b.ports = "80".parse().unwrap();
        let s = b.build_resolved(&HashMap::new()).unwrap();
        let hosts: Vec<IpAddr> = s.hosts().map(|(a, _)| a).collect();
        assert_eq!(
            hosts,
            [ip("0.0.0.0"), ip("0.0.0.1"), ip("::fffe:ffff:ffff")]
        );
    }

    #[test]
    fn no_targets_is_an_error() {
        assert_eq!(build(&[], &[], "80").unwrap_err(), ScopeError::NoTargets);
        assert_eq!(
            ScopeError::NoTargets.to_string(),
            "nothing to scan: no targets were given"
        );
    }

    #[test]
    fn host_names_use_resolved_addresses_and_are_kept_for_reports() {
        let b = ScopeBuilder {
            allow: vec![
                t("db.example.internal"),
                t("cache.example.internal:6379"),
                t("127.0.0.9"),
            ],
            deny: vec![t("old.example.internal")],
            ports: "9200".parse().unwrap(),
            ..ScopeBuilder::default()
        };
        assert_eq!(
            b.host_names().into_iter().collect::<Vec<_>>(),
            [
                "cache.example.internal",
                "db.example.internal",
                "old.example.internal"
            ]
        );
        let resolved: HashMap<String, Vec<IpAddr>> = [
            (
                "db.example.internal",
                vec![ip("127.0.0.7"), ip("127.0.0.8")],
            ),
            ("cache.example.internal", vec![ip("127.0.0.7")]),
            ("old.example.internal", vec![ip("127.0.0.8")]),
        ]
        .into_iter()
        .map(|(n, a)| (n.to_string(), a))
        .collect();
        let s = b.clone().build_resolved(&resolved).unwrap();
        let got: Vec<_> = s.endpoints().collect();
        assert_eq!(
            got,
            [
                sa("127.0.0.7:9200"),
                sa("127.0.0.7:6379"),
                sa("127.0.0.9:9200")
            ]
        );
        assert_eq!(
            s.host_names(ip("127.0.0.7")),
            ["db.example.internal", "cache.example.internal"]
        );
        assert!(s.host_names(ip("127.0.0.9")).is_empty());
        assert!(!s.contains(ip("127.0.0.8"), 9200));

        let mut partial = resolved.clone();
        partial.remove("old.example.internal");
        let err = b.clone().build_resolved(&partial).unwrap_err();
        assert_eq!(
            err.to_string(),
            "host name 'old.example.internal' did not resolve: it was not resolved"
        );
        partial.insert("old.example.internal".into(), vec![]);
        let err = b.build_resolved(&partial).unwrap_err();
        assert_eq!(
            err.to_string(),
            "host name 'old.example.internal' did not resolve: it has no addresses"
        );
    }

    #[tokio::test]
    async fn localhost_is_resolved_by_build() {
        let b = ScopeBuilder {
            allow: vec![t("localhost:9200")],
            deny: vec![],
            ports: "6379".parse().unwrap(),
            ..ScopeBuilder::default()
        };
        let s = b.build().await.unwrap();
        assert!(s.address_count() >= 1);
        for (addr, ports) in s.hosts() {
            assert!(addr.is_loopback(), "{addr}");
            assert_eq!(ports, [9200]);
            assert_eq!(s.host_names(addr), ["localhost"]);
        }
        let addrs = resolve_host("localhost").await.unwrap();
        assert!(addrs.iter().all(IpAddr::is_loopback));
        assert!(addrs.iter().any(|a| s.contains(*a, 9200)));
    }

    #[tokio::test]
    async fn deny_by_name_is_resolved_too() {
        let b = ScopeBuilder {
            allow: vec![t("127.0.0.1"), t("::1")],
            deny: vec![t("localhost")],
            ports: "6379".parse().unwrap(),
            ..ScopeBuilder::default()
        };
        let resolved = resolve_host("localhost").await.unwrap();
        match b.build().await {
            Ok(s) => {
                for a in resolved {
                    assert!(!s.contains(a, 6379), "{a} should be excluded");
                }
            }
            Err(e) => assert_eq!(e, ScopeError::AllExcluded),
        }
    }

    // --- scope file --------------------------------------------------------------------------

    fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!(
            "leakscope-scope-test-{}-{name}.toml",
            std::process::id()
        ));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn scope_file_loads() {
        let path = temp_file(
            "good",
            "# authorized by ops, ticket 42\n\
             allow = [\"127.0.10.0/24\", \"localhost:9200\"]\n\
             deny = [\"127.0.10.9\"]\n\
             ports = \"6379,9200\"\n",
        );
        let f = ScopeFile::load(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(f.allow, [t("127.0.10.0/24"), t("localhost:9200")]);
        assert_eq!(f.deny, [t("127.0.10.9")]);
        assert_eq!(f.ports, Some("6379,9200".parse().unwrap()));
        let b = f.into_builder();
        assert_eq!(b.ports.as_slice(), [6379, 9200]);
        assert_eq!(b.max_addresses, 65_536);
        assert!(!b.allow_large);
    }

    #[test]
    fn scope_file_defaults() {
        let f = ScopeFile::from_toml("deny = [\"127.0.10.9\"]", Path::new("shared.toml")).unwrap();
        assert!(f.allow.is_empty() && f.ports.is_none());
        assert_eq!(f.into_builder().ports, PortList::default_data_stores());
    }

    #[test]
    fn scope_file_errors_name_the_file_and_entry() {
        let p = Path::new("scope.toml");
        let err = |text: &str| ScopeFile::from_toml(text, p).unwrap_err().to_string();
        assert_eq!(
            err("allow = [\"127.0.10.0/24\", \"127.0.10.0/33\"]"),
            "scope file 'scope.toml': allow entry 2: invalid target '127.0.10.0/33': prefix /33 \
             is longer than 32, the maximum for IPv4"
        );
        assert_eq!(
            err("allow = [\"127.0.0.1\"]\ndeny = [\"\"]"),
            "scope file 'scope.toml': deny entry 1: empty target: give an address, CIDR, range \
             or host name"
        );
        assert_eq!(
            err("allow = [\"127.0.0.1\"]\nports = \"0\""),
            "scope file 'scope.toml': ports: invalid port list '0': port 0 is not a valid port \
             (1-65535)"
        );
        let unknown = err("allow = [\"127.0.0.1\"]\nexclude = [\"127.0.0.2\"]");
        assert!(
            unknown
                .starts_with("scope file 'scope.toml': line 2, column 1: unknown field `exclude`"),
            "{unknown}"
        );
        let bad_type = err("allow = [\"127.0.0.1\"]\nports = 6379");
        assert!(
            bad_type.starts_with("scope file 'scope.toml': line 2, column 9: "),
            "{bad_type}"
        );
        let bad_toml = err("allow = [\"127.0.0.1\"\n");
        assert!(
            bad_toml.starts_with("scope file 'scope.toml': line "),
            "{bad_toml}"
        );
        for e in [unknown, bad_type, bad_toml] {
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn unreadable_scope_file_is_one_line() {
        let path = std::env::temp_dir().join("leakscope-scope-test-does-not-exist.toml");
        let e = ScopeFile::load(&path).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "scope file '{}': cannot read it: ",
                path.display()
            )),
            "{e}"
        );
        assert!(!e.contains('\n'));
    }

    #[test]
    fn interval_set_operations() {
        let a = IvSet::from_unsorted(vec![(10, 20), (0, 5), (6, 8), (30, 40)]);
        assert_eq!(a.0, [(0, 8), (10, 20), (30, 40)]);
        let b = IvSet::from_unsorted(vec![(3, 12), (35, 35)]);
        assert_eq!(a.subtract(&b).0, [(0, 2), (13, 20), (30, 34), (36, 40)]);
        assert_eq!(a.intersect(&b).0, [(3, 8), (10, 12), (35, 35)]);
        assert_eq!(a.count(), 9 + 11 + 11);
        assert!(a.contains(0) && a.contains(40) && !a.contains(9) && !a.contains(41));
        let full = IvSet::from_unsorted(vec![(0, u128::MAX), (5, 6)]);
        assert_eq!(full.0, [(0, u128::MAX)]);
        assert_eq!(
            full.subtract(&IvSet(vec![(u128::MAX, u128::MAX)])).0,
            [(0, u128::MAX - 1)]
        );
        assert!(full.subtract(&full).is_empty());
    }

    #[test]
    fn first_non_loopback_finds_any_address_off_the_machine() {
        let build = |allow: &[&str]| {
            ScopeBuilder::new(allow.iter().map(|a| a.parse().unwrap()).collect())
                .build_resolved(&HashMap::new())
                .unwrap()
        };
        assert_eq!(
            build(&["127.0.10.0/24", "::1", "127.0.0.1:9200"]).first_non_loopback(),
            None
        );
        assert_eq!(
            build(&["127.0.10.1", "126.255.255.255-127.0.0.5"]).first_non_loopback(),
            Some("126.255.255.255".parse().unwrap())
        );
        assert_eq!(
            build(&["127.0.10.1", "192.0.2.1:80"]).first_non_loopback(),
            Some("192.0.2.1".parse().unwrap())
        );
    }
}
