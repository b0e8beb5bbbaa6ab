//! The configuration of `leakscope watch`: groups of targets with their own cadence, and alert
//! routes. These doc comments are the user documentation of the TOML file (`docs/watch.md`
//! shows a whole example, which a test parses).
//!
//! ```toml
//! metrics = "127.0.0.1:9464"
//!
//! [[group]]
//! name = "databases"
//! targets = ["10.0.3.0/24"]
//! interval = "30s"
//! routes = ["oncall"]
//!
//! [route.oncall]
//! webhook = "https://hooks.example.com/leakscope"
//! ```
//!
//! Unknown keys are refused everywhere, so a misspelt setting is an error, not a silent default.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use super::EventKind;
use crate::model::Severity;
use crate::scope::{PortList, Scope, ScopeBuilder, ScopeFile, TargetSpec};

/// The largest configuration file read (a config is a few KiB; this only stops accidents).
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Errors in a watch configuration: each names the file, group or route, and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {detail}")]
    File { path: String, detail: String },
    #[error("group {group:?}: {detail}")]
    Group { group: String, detail: String },
    #[error("route {route:?}: {detail}")]
    Route { route: String, detail: String },
    #[error("{0}")]
    Other(String),
}

/// The whole configuration (`leakscope watch --config FILE`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WatchConfig {
    /// The findings store (SQLite) where state, exposure windows, events and the alert outbox
    /// are kept. Default: as for `leakscope scan` (`$LEAKSCOPE_DB`, else
    /// `~/.local/share/leakscope/leakscope.db`); `--db` overrides it.
    #[serde(default)]
    pub db: Option<PathBuf>,
    /// Serve `/metrics` (Prometheus text format) and `/healthz` on this `ADDRESS:PORT`. Nothing
    /// is served unless set; bind to a loopback or management address.
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
    /// Write a revocation list (CSV of credential fingerprints, as `scan --revocation-list`) into
    /// this directory for every exposure whose sample holds credentials.
    #[serde(default)]
    pub revocation_list: Option<PathBuf>,
    /// Hysteresis, flapping and retry settings shared by every group.
    #[serde(default)]
    pub tuning: Tuning,
    /// Groups of targets, each with its own cadence and alert routes (`[[group]]`).
    #[serde(default, rename = "group")]
    pub groups: Vec<GroupConfig>,
    /// Alert routes by name (`[route.NAME]`).
    #[serde(default, rename = "route")]
    pub routes: BTreeMap<String, RouteConfig>,
}

/// One group of targets (`[[group]]`): the same targets, ports and scope rules as `scan`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// A name for logs, metrics and alerts: letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// Addresses, CIDRs, ranges, host names, each optionally with a port (as `scan TARGETS`).
    #[serde(default)]
    pub targets: Vec<String>,
    /// Never contacted (as `scan --exclude`). Exclusions always win.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// A scope file (`allow`, `deny`, `ports`) merged with `targets` and `exclude`.
    #[serde(default)]
    pub scope_file: Option<PathBuf>,
    /// Ports probed on targets without a port (default: every registry port).
    #[serde(default)]
    pub ports: Option<String>,
    /// How often the services already known are re-checked (identification and access only).
    /// Time-to-detect is about this interval plus one identification.
    #[serde(default = "default_interval", deserialize_with = "duration")]
    #[serde(serialize_with = "ser_duration")]
    pub interval: Duration,
    /// How often the whole scope is swept for services not yet known. A sweep runs beside the
    /// re-checks, never two at once, within `sweep_rate`.
    #[serde(default = "default_sweep_interval", deserialize_with = "duration")]
    #[serde(serialize_with = "ser_duration")]
    pub sweep_interval: Duration,
    /// New connections per second a sweep may open (its rate budget); 0 = unlimited.
    #[serde(default = "default_sweep_rate")]
    pub sweep_rate: u32,
    /// How often every exposed service is inventoried again (containers, counts, categories,
    /// people) even when nothing changed. Inventory also runs on every change.
    #[serde(default = "default_inventory_interval", deserialize_with = "duration")]
    #[serde(serialize_with = "ser_duration")]
    pub inventory_interval: Duration,
    /// Time budget of one service's inventory and sampling. An exposure is alerted after its
    /// inventory (so the alert says what is exposed), so this bounds the added delay.
    #[serde(default = "default_inventory_timeout", deserialize_with = "duration")]
    #[serde(serialize_with = "ser_duration")]
    pub inventory_timeout: Duration,
    /// Records sampled per container (0 = list containers and counts, read no records).
    #[serde(default = "default_sample")]
    pub sample: u32,
    /// Identify and judge only: no inventory, alerts without categories or people.
    #[serde(default)]
    pub no_inventory: bool,
    /// Also try the documented default credentials (as `scan --try-defaults`), at every
    /// re-check of a service that asks for credentials.
    #[serde(default)]
    pub try_defaults: bool,
    /// Deadline of each connect and read.
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// Deadline for identifying and judging one service.
    #[serde(default = "default_service_timeout", deserialize_with = "duration")]
    #[serde(serialize_with = "ser_duration")]
    pub service_timeout: Duration,
    /// Endpoints probed at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// Endpoints of one address probed at once.
    #[serde(default = "default_per_host")]
    pub per_host: u32,
    /// Accept a scope of more than 65,536 addresses.
    #[serde(default)]
    pub allow_large_scope: bool,
    /// Names of the routes this group alerts; default: every route.
    #[serde(default)]
    pub routes: Option<Vec<String>>,
}

/// Where alerts go (`[route.NAME]`): exactly one of `webhook`, `smtp`, `command`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// POST every alert to this `http://` or `https://` URL.
    #[serde(default)]
    pub webhook: Option<String>,
    /// Body of webhook requests: `json` (the alert document, `leakscope.alert/v1`) or `slack`
    /// (`{"text": …}`, for Slack and compatible incoming webhooks).
    #[serde(default)]
    pub format: WebhookFormat,
    /// Send every alert as an e-mail.
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
    /// Run this program (argv list, no shell) with the alert document on standard input; exit
    /// status 0 means delivered. `LEAKSCOPE_ALERT_KEY` and `LEAKSCOPE_ALERT_KIND` are set.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Event kinds this route receives; default: all (`exposed`, `closed`, `changed`,
    /// `new_service`, `flapping`, `flapping_stopped`).
    #[serde(default)]
    pub events: Option<Vec<EventKind>>,
    /// Only alerts at or above this severity (`closed` alerts carry the severity the service
    /// had while open).
    #[serde(default)]
    pub min_severity: Option<Severity>,
    /// PEM file of the certificate authorities to trust for this route's TLS (an internal CA),
    /// in addition to the public roots (Mozilla's, built in).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Deadline of one delivery attempt.
    #[serde(default = "default_route_timeout", deserialize_with = "duration")]
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
}

/// Webhook body format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    #[default]
    Json,
    Slack,
}

/// An SMTP server and the mail to send.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Host name or address of the mail server.
    pub server: String,
    /// Port (default: 587 with `starttls`, 465 with `tls`, 25 with `none`).
    #[serde(default)]
    pub port: Option<u16>,
    /// `starttls` (default; refuses a server without it), `tls` (implicit TLS) or `none`
    /// (plain text; only for a relay on the same host).
    #[serde(default)]
    pub tls: SmtpTls,
    /// Sender address.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// User name for SMTP AUTH (optional).
    #[serde(default)]
    pub username: Option<String>,
    /// Environment variable holding the SMTP password (never the password itself in the file).
    #[serde(default)]
    pub password_env: Option<String>,
}

/// TLS mode of an SMTP route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    #[default]
    Starttls,
    Tls,
    None,
}

/// Hysteresis, flapping and retry settings (`[tuning]`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tuning {
    /// Observations in a row that must find an exposed service closed (protected or not
    /// answering) before `closed` is raised: one failed connect is not a closure.
    #[serde(default = "default_confirm_closed")]
    pub confirm_closed: u32,
    /// A service seen in a new state is re-checked after this delay (at most the interval) to
    /// confirm it, instead of waiting a whole interval.
    #[serde(default = "default_confirm_after", deserialize_with = "duration")]
    #[serde(serialize_with = "ser_duration")]
    pub confirm_after: Duration,
    /// This many open/closed changes within `flap_window` make a service `flapping`: one alert
    /// says so, and no open/closed alerts follow until it has been stable for `flap_window`.
    #[serde(default = "default_flap_changes")]
    pub flap_changes: u32,
    #[serde(default = "default_flap_window", deserialize_with = "duration")]
    #[serde(serialize_with = "ser_duration")]
    pub flap_window: Duration,
    /// A container whose record count grew by this factor raises `changed`.
    #[serde(default = "default_records_factor")]
    pub records_factor: f64,
    /// First retry delay of an undelivered alert; doubled on each failure up to `retry_max`.
    #[serde(default = "default_retry_initial", deserialize_with = "duration")]
    #[serde(serialize_with = "ser_duration")]
    pub retry_initial: Duration,
    #[serde(default = "default_retry_max", deserialize_with = "duration")]
    #[serde(serialize_with = "ser_duration")]
    pub retry_max: Duration,
    /// An alert still undelivered after this long is abandoned (logged, counted in metrics).
    #[serde(default = "default_give_up", deserialize_with = "duration")]
    #[serde(serialize_with = "ser_duration")]
    pub give_up_after: Duration,
    /// A known service that has not answered for this long is no longer re-checked (the sweep
    /// still finds it if it comes back).
    #[serde(default = "default_forget_after", deserialize_with = "duration")]
    #[serde(serialize_with = "ser_duration")]
    pub forget_after: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            confirm_closed: default_confirm_closed(),
            confirm_after: default_confirm_after(),
            flap_changes: default_flap_changes(),
            flap_window: default_flap_window(),
            records_factor: default_records_factor(),
            retry_initial: default_retry_initial(),
            retry_max: default_retry_max(),
            give_up_after: default_give_up(),
            forget_after: default_forget_after(),
        }
    }
}

fn default_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_sweep_interval() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_sweep_rate() -> u32 {
    500
}
fn default_inventory_interval() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_inventory_timeout() -> Duration {
    Duration::from_secs(20)
}
fn default_sample() -> u32 {
    200
}
fn default_timeout() -> Duration {
    Duration::from_secs(3)
}
fn default_service_timeout() -> Duration {
    Duration::from_secs(8)
}
fn default_concurrency() -> u32 {
    256
}
fn default_per_host() -> u32 {
    16
}
fn default_route_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_confirm_closed() -> u32 {
    2
}
fn default_confirm_after() -> Duration {
    Duration::from_secs(5)
}
fn default_flap_changes() -> u32 {
    4
}
fn default_flap_window() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_records_factor() -> f64 {
    2.0
}
fn default_retry_initial() -> Duration {
    Duration::from_secs(5)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(300)
}
fn default_give_up() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_forget_after() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

/// Parses `30s`, `1m 30s`, `2h`, `1day` (humantime); bare numbers are refused.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        format!("{s:?} is not a duration ({e}); write it with a unit, e.g. \"30s\", \"5m\", \"1h\"")
    })
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

impl GroupConfig {
    /// A group with every default and these targets.
    pub fn new(name: &str, targets: Vec<String>) -> GroupConfig {
        GroupConfig {
            name: name.to_string(),
            targets,
            exclude: Vec::new(),
            scope_file: None,
            ports: None,
            interval: default_interval(),
            sweep_interval: default_sweep_interval(),
            sweep_rate: default_sweep_rate(),
            inventory_interval: default_inventory_interval(),
            inventory_timeout: default_inventory_timeout(),
            sample: default_sample(),
            no_inventory: false,
            try_defaults: false,
            timeout: default_timeout(),
            service_timeout: default_service_timeout(),
            concurrency: default_concurrency(),
            per_host: default_per_host(),
            allow_large_scope: false,
            routes: None,
        }
    }

    fn err(&self, detail: impl Into<String>) -> ConfigError {
        ConfigError::Group {
            group: self.name.clone(),
            detail: detail.into(),
        }
    }

    /// The scope builder of this group (parsing only; no name is resolved).
    pub fn scope_builder(&self) -> Result<ScopeBuilder, ConfigError> {
        let mut builder = match &self.scope_file {
            Some(path) => ScopeFile::load(path)
                .map_err(|e| self.err(e.to_string()))?
                .into_builder(),
            None => ScopeBuilder::default(),
        };
        for t in &self.targets {
            builder
                .allow
                .push(TargetSpec::parse(t).map_err(|e| self.err(format!("target {t:?}: {e}")))?);
        }
        for t in &self.exclude {
            builder
                .deny
                .push(TargetSpec::parse(t).map_err(|e| self.err(format!("exclude {t:?}: {e}")))?);
        }
        if builder.allow.is_empty() {
            return Err(self.err("no targets (give `targets` or a `scope_file` with `allow`)"));
        }
        match &self.ports {
            Some(p) => {
                builder.ports = PortList::parse(p).map_err(|e| self.err(format!("ports: {e}")))?
            }
            None if self.scope_file.is_none() || builder.ports.is_empty() => {
                builder.ports = PortList::from_ports(crate::protocols::default_ports())
                    .map_err(|e| self.err(e.to_string()))?;
            }
            None => {}
        }
        builder.allow_large = self.allow_large_scope;
        Ok(builder)
    }

    /// Builds the scope (resolving host names) and checks it against `loopback_only`.
    pub async fn scope(&self, loopback_only: bool) -> Result<Scope, ConfigError> {
        let scope = self
            .scope_builder()?
            .build()
            .await
            .map_err(|e| self.err(e.to_string()))?;
        if loopback_only {
            if let Some(bad) = scope.first_non_loopback() {
                return Err(self.err(format!(
                    "LEAKSCOPE_LOOPBACK_ONLY is set and the scope includes {bad}, which is not a loopback address"
                )));
            }
        }
        Ok(scope)
    }
}

impl RouteConfig {
    /// A route with this webhook and every default.
    pub fn webhook(url: &str, format: WebhookFormat) -> RouteConfig {
        RouteConfig {
            webhook: Some(url.to_string()),
            format,
            ..RouteConfig::empty()
        }
    }

    /// A route running this program.
    pub fn command(argv: Vec<String>) -> RouteConfig {
        RouteConfig {
            command: Some(argv),
            ..RouteConfig::empty()
        }
    }

    /// A route sending e-mail.
    pub fn smtp(smtp: SmtpConfig) -> RouteConfig {
        RouteConfig {
            smtp: Some(smtp),
            ..RouteConfig::empty()
        }
    }

    fn empty() -> RouteConfig {
        RouteConfig {
            webhook: None,
            format: WebhookFormat::Json,
            smtp: None,
            command: None,
            events: None,
            min_severity: None,
            ca_file: None,
            timeout: default_route_timeout(),
        }
    }

    /// Whether this route wants an alert of `kind` and `severity`.
    pub fn wants(&self, kind: EventKind, severity: Severity) -> bool {
        self.events.as_ref().is_none_or(|k| k.contains(&kind))
            && self.min_severity.is_none_or(|m| severity >= m)
    }
}

/// A parsed webhook URL: scheme, host, port, path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl FromStr for WebhookUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let uri: hyper::Uri = s.parse().map_err(|e| format!("{s:?} is not a URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                return Err(format!(
                    "{s:?}: a webhook URL starts with http:// or https://"
                ))
            }
        };
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(format!(
                "{s:?}: credentials in the URL authority are not supported"
            ));
        }
        let host = uri
            .host()
            .ok_or_else(|| format!("{s:?} has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Ok(WebhookUrl {
            https,
            port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
            path: uri
                .path_and_query()
                .map_or("/".to_string(), |p| p.as_str().to_string()),
            host,
        })
    }
}

/// The certificates of a PEM file of certificate authorities (at least one).
pub fn load_ca(path: &Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("ca_file {}: no certificate in it", path.display()));
    }
    Ok(certs)
}

/// True when `host` is a loopback address literal or `localhost`.
pub fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl WatchConfig {
    /// Reads and checks a configuration file (no name is resolved: [`super::Settings::build`] does that).
    pub fn load(path: &Path, loopback_only: bool) -> Result<WatchConfig, ConfigError> {
        let fail = |detail: String| ConfigError::File {
            path: path.display().to_string(),
            detail,
        };
        let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(fail(format!(
                "it is {} bytes; a config is at most 1 MiB",
                meta.len()
            )));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
        let cfg = WatchConfig::from_toml(&text).map_err(fail)?;
        cfg.check(loopback_only)?;
        Ok(cfg)
    }

    /// Parses TOML text (syntax and types only).
    pub fn from_toml(text: &str) -> Result<WatchConfig, String> {
        toml::from_str(text).map_err(|e| {
            let msg = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
            match e.span() {
                Some(span) => {
                    let before = &text[..span.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    format!("line {line}: {msg}")
                }
                None => msg,
            }
        })
    }

    /// Checks everything that can be checked without the network: names, targets, durations,
    /// routes, and (under `loopback_only`) that no alert can leave the machine.
    pub fn check(&self, loopback_only: bool) -> Result<(), ConfigError> {
        if self.groups.is_empty() {
            return Err(ConfigError::Other(
                "no [[group]] with targets: nothing to watch".into(),
            ));
        }
        let t = &self.tuning;
        if t.confirm_closed == 0 || t.flap_changes < 2 {
            return Err(ConfigError::Other(
                "tuning: confirm_closed must be at least 1 and flap_changes at least 2".into(),
            ));
        }
        if t.records_factor.is_nan() || t.records_factor <= 1.0 {
            return Err(ConfigError::Other(
                "tuning: records_factor must be greater than 1".into(),
            ));
        }
        if t.retry_initial.is_zero() || t.retry_max < t.retry_initial {
            return Err(ConfigError::Other(
                "tuning: retry_initial must be positive and at most retry_max".into(),
            ));
        }
        let mut seen = HashMap::new();
        for g in &self.groups {
            let name_ok = !g.name.is_empty()
                && g.name.len() <= 64
                && g.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !name_ok {
                return Err(g.err("a group name is 1-64 letters, digits, '-', '_' or '.'"));
            }
            if seen.insert(g.name.clone(), ()).is_some() {
                return Err(g.err("two groups have this name"));
            }
            g.scope_builder()?;
            if g.interval < Duration::from_millis(10) {
                return Err(g.err("interval must be at least 10ms"));
            }
            if g.sweep_interval < g.interval {
                return Err(g.err("sweep_interval must be at least the interval"));
            }
            if g.timeout.is_zero() || g.service_timeout.is_zero() || g.inventory_timeout.is_zero() {
                return Err(g.err("timeouts must be positive"));
            }
            if g.concurrency == 0 || g.per_host == 0 {
                return Err(g.err("concurrency and per_host must be at least 1"));
            }
            for r in g.routes.iter().flatten() {
                if !self.routes.contains_key(r) {
                    return Err(g.err(format!("route {r:?} is not defined (no [route.{r}])")));
                }
            }
        }
        for (name, r) in &self.routes {
            let err = |detail: String| ConfigError::Route {
                route: name.clone(),
                detail,
            };
            let sinks = [r.webhook.is_some(), r.smtp.is_some(), r.command.is_some()];
            if sinks.iter().filter(|x| **x).count() != 1 {
                return Err(err(
                    "give exactly one of `webhook`, `smtp`, `command`".into()
                ));
            }
            if r.timeout.is_zero() {
                return Err(err("timeout must be positive".into()));
            }
            if let Some(url) = &r.webhook {
                let u: WebhookUrl = url.parse().map_err(err)?;
                if loopback_only && !is_loopback_host(&u.host) {
                    return Err(err(format!(
                        "LEAKSCOPE_LOOPBACK_ONLY is set and the webhook host {} is not a loopback address",
                        u.host
                    )));
                }
            }
            if let Some(s) = &r.smtp {
                if s.to.is_empty() {
                    return Err(err("smtp: `to` lists no recipient".into()));
                }
                for a in s.to.iter().chain(std::iter::once(&s.from)) {
                    a.parse::<lettre::Address>()
                        .map_err(|e| err(format!("smtp: {a:?} is not an e-mail address: {e}")))?;
                }
                if loopback_only && !is_loopback_host(&s.server) {
                    return Err(err(format!(
                        "LEAKSCOPE_LOOPBACK_ONLY is set and the SMTP server {} is not a loopback address",
                        s.server
                    )));
                }
                if s.username.is_some() != s.password_env.is_some() {
                    return Err(err(
                        "smtp: give both `username` and `password_env`, or neither".into(),
                    ));
                }
            }
            if let Some(c) = &r.command {
                if c.is_empty() || c[0].is_empty() {
                    return Err(err("command: an empty argv".into()));
                }
            }
            if let Some(path) = &r.ca_file {
                if r.command.is_some() {
                    return Err(err("ca_file is for webhook and smtp routes".into()));
                }
                load_ca(path).map_err(err)?;
            }
        }
        Ok(())
    }

    /// The routes group `g` alerts, by name.
    pub fn routes_of<'a>(&'a self, g: &'a GroupConfig) -> Vec<&'a str> {
        match &g.routes {
            Some(list) => list.iter().map(String::as_str).collect(),
            None => self.routes.keys().map(String::as_str).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
metrics = "127.0.0.1:9464"

[tuning]
confirm_closed = 3
flap_window = "10m"

[[group]]
name = "databases"
targets = ["127.0.10.0/24", "127.0.11.4:6380"]
exclude = ["127.0.10.9"]
ports = "6379,9200"
interval = "30s"
sweep_interval = "10m"
routes = ["hook", "mail"]

[[group]]
name = "caches"
targets = ["127.0.12.0/24"]

[route.hook]
webhook = "http://127.0.0.1:8080/alerts"
format = "slack"
events = ["exposed", "closed"]
min_severity = "high"

[route.mail]
smtp = { server = "127.0.0.1", port = 2525, tls = "none", from = "leakscope@example.com", to = ["sec@example.com"] }

[route.page]
command = ["/usr/local/bin/page", "--urgent"]
"#;

    #[test]
    fn a_full_example_parses_with_defaults_filled_in() {
        let c = WatchConfig::from_toml(EXAMPLE).unwrap();
        c.check(true).unwrap();
        assert_eq!(c.groups.len(), 2);
        assert_eq!(c.groups[0].interval, Duration::from_secs(30));
        assert_eq!(c.groups[1].interval, Duration::from_secs(60));
        assert_eq!(c.tuning.confirm_closed, 3);
        assert_eq!(c.tuning.flap_window, Duration::from_secs(600));
        assert_eq!(c.tuning.flap_changes, 4);
        assert_eq!(c.routes["hook"].format, WebhookFormat::Slack);
        assert!(c.routes["hook"].wants(EventKind::Exposed, Severity::Critical));
        assert!(!c.routes["hook"].wants(EventKind::Exposed, Severity::Medium));
        assert!(!c.routes["hook"].wants(EventKind::Changed, Severity::Critical));
        assert_eq!(c.routes_of(&c.groups[0]), vec!["hook", "mail"]);
        assert_eq!(c.routes_of(&c.groups[1]), vec!["hook", "mail", "page"]);
        let scope = c.groups[0].scope_builder().unwrap();
        assert_eq!(scope.ports.as_slice(), &[6379, 9200]);
    }

    #[test]
    fn mistakes_are_refused_with_what_is_wrong() {
        let bad = |text: &str, want: &str| {
            let err = match WatchConfig::from_toml(text) {
                Err(e) => e,
                Ok(c) => c.check(true).unwrap_err().to_string(),
            };
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        };
        bad(
            "[[group]]\nname = \"a\"\ntargets = [\"127.0.0.1\"]\nintervall = \"1s\"",
            "intervall",
        );
        bad(
            "[[group]]\nname = \"a\"\ntargets = [\"127.0.0.1\"]\ninterval = \"30\"",
            "unit",
        );
        bad(
            "[[group]]\nname = \"a\"\ntargets = [\"127.0.0.1/33\"]",
            "target",
        );
        bad(
            "[[group]]\nname = \"a b\"\ntargets = [\"127.0.0.1\"]",
            "group name",
        );
        bad("", "nothing to watch");
        bad(
            "[[group]]\nname = \"a\"\ntargets = [\"127.0.0.1\"]\nroutes = [\"x\"]",
            "not defined",
        );
        bad(
            "[[group]]\nname = \"a\"\ntargets = [\"127.0.0.1\"]\n[route.x]\nwebhook = \"https://hooks.example.com/x\"",
            "not a loopback",
        );
        bad(
            "[[group]]\nname = \"a\"\ntargets = [\"127.0.0.1\"]\n[route.x]\nwebhook = \"http://127.0.0.1/\"\ncommand = [\"true\"]",
            "exactly one",
        );
        bad(
            "[[group]]\nname = \"a\"\ntargets = [\"127.0.0.1\"]\n[route.x]\nsmtp = { server = \"10.0.0.1\", from = \"a@b.c\", to = [\"d@e.f\"] }",
            "not a loopback",
        );
        bad(
            "[[group]]\nname = \"a\"\ntargets = [\"127.0.0.1\"]\n[route.x]\nsmtp = { server = \"127.0.0.1\", from = \"nope\", to = [\"d@e.f\"] }",
            "not an e-mail",
        );
        bad("[[group]]\nname = \"a\"\ntargets = [\"127.0.0.1\"]\n[route.x]\nwebhook = \"ftp://127.0.0.1/\"", "http://");
    }

    #[test]
    fn the_documented_example_parses_and_shows_every_setting() {
        let doc = include_str!("../../../../docs/watch.md");
        let example = doc
            .split("```toml\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .expect("docs/watch.md has a TOML example");
        let c = WatchConfig::from_toml(example).unwrap();
        let mut checked = c.clone();
        for r in checked.routes.values_mut() {
            r.ca_file = None; // the example's CA file does not exist here
        }
        checked.check(false).unwrap();
        assert_eq!(
            c.tuning,
            Tuning::default(),
            "the [tuning] shown are the defaults"
        );
        let mut route = RouteConfig::webhook("http://x/", WebhookFormat::Json);
        route.smtp = Some(SmtpConfig {
            server: "s".into(),
            port: Some(1),
            tls: SmtpTls::None,
            from: "a@b.c".into(),
            to: vec![],
            username: Some("u".into()),
            password_env: Some("P".into()),
        });
        route.command = Some(vec![]);
        route.events = Some(vec![]);
        route.min_severity = Some(Severity::High);
        route.ca_file = Some("x".into());
        let top = WatchConfig {
            db: Some("x".into()),
            metrics: Some("127.0.0.1:1".parse().unwrap()),
            revocation_list: Some("x".into()),
            ..c.clone()
        };
        let mut group = GroupConfig::new("g", vec![]);
        group.scope_file = Some("x".into());
        group.ports = Some("1".into());
        group.routes = Some(vec![]);
        let keys = |v: serde_json::Value| -> Vec<String> {
            v.as_object().unwrap().keys().cloned().collect()
        };
        let all = [
            keys(serde_json::to_value(&top).unwrap()),
            keys(serde_json::to_value(&group).unwrap()),
            keys(serde_json::to_value(Tuning::default()).unwrap()),
            keys(serde_json::to_value(&route).unwrap()),
            keys(serde_json::to_value(route.smtp.as_ref().unwrap()).unwrap()),
        ];
        for key in all.iter().flatten() {
            let shown = match key.as_str() {
                "group" => example.contains("[[group]]"),
                "tuning" => example.contains("[tuning]"),
                "route" => example.contains("[route."),
                "smtp" => example.contains("smtp = {"),
                _ => {
                    example.contains(&format!("{key} =")) || example.contains(&format!("{key} = "))
                }
            };
            assert!(
                shown,
                "setting {key:?} is missing from the docs/watch.md example"
            );
        }
    }

    #[test]
    fn webhook_urls() {
        let u: WebhookUrl = "https://hooks.example.com/services/T0/B0?x=1"
            .parse()
            .unwrap();
        assert!(u.https);
        assert_eq!((u.host.as_str(), u.port), ("hooks.example.com", 443));
        assert_eq!(u.path, "/services/T0/B0?x=1");
        let u: WebhookUrl = "http://[::1]:8080".parse().unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 8080, "/")
        );
        assert!(is_loopback_host(&u.host));
        assert!(!is_loopback_host("127.example.com"));
        assert!("http://user:pw@127.0.0.1/".parse::<WebhookUrl>().is_err());
    }
}
