//! `leakscope watch`: keeps checking a scope and alerts within a minute of a store turning
//! readable, again when it closes, and keeps the exposure window.
//!
//! Pieces, bottom up:
//! - [`config`] — groups of targets with their own cadence, alert routes, tuning (TOML).
//! - [`state`] — the per-endpoint state machine: `exposed` / `protected` / `unreachable`,
//!   hysteresis before `closed`, flapping, and `changed` between two inventories.
//! - [`alert`] — the alert document (`leakscope.alert/v1`), its idempotency key, and its text
//!   for Slack and e-mail. It carries masked examples and counts, never a raw value.
//! - [`deliver`] — webhook, SMTP and command sinks, and the outbox loop that retries with
//!   backoff until every alert in the store is delivered.
//! - [`metrics`] — `/metrics` (Prometheus text) and `/healthz`.
//! - [`runner`] — the scheduler: re-check cycles of known services (a scan without inventory
//!   over those endpoints), sweeps of the whole scope at their own slower cadence under a rate
//!   budget, and inventories only on change or when due.
//!
//! Every decision of a step is written to the store in one transaction with its alerts (see
//! [`crate::store`]), so a watcher killed at any point loses no alert and, restarted, raises
//! none twice.

pub mod alert;
pub mod config;
pub mod deliver;
pub mod metrics;
pub mod runner;
pub mod state;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use config::{ConfigError, GroupConfig, RouteConfig, Tuning, WatchConfig};
pub use runner::{run, Control, RunOutcome, Settings};

/// What happened to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Turned readable without credentials (open or default credentials), or found new and open.
    Exposed,
    /// Was readable, is not any more (protected, or no longer answering), confirmed.
    Closed,
    /// Still readable, and what it exposes grew: new containers or categories, severity up,
    /// record counts multiplied.
    Changed,
    /// A service not seen before answers (not readable).
    NewService,
    /// Alternates between open and closed: reported once, instead of one alert per change.
    Flapping,
    /// A flapping service has been stable again for the flapping window.
    FlappingStopped,
}

impl EventKind {
    pub const ALL: [EventKind; 6] = [
        EventKind::Exposed,
        EventKind::Closed,
        EventKind::Changed,
        EventKind::NewService,
        EventKind::Flapping,
        EventKind::FlappingStopped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Exposed => "exposed",
            EventKind::Closed => "closed",
            EventKind::Changed => "changed",
            EventKind::NewService => "new_service",
            EventKind::Flapping => "flapping",
            EventKind::FlappingStopped => "flapping_stopped",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors of a running watch.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("metrics endpoint {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}
