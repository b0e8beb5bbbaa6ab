//! What `leakscope watch` keeps in the findings store (migration 0002): endpoint state, exposure
//! windows, events and the alert outbox.
//!
//! Everything one watch cycle decides is written by [`Store::watch_commit`] in ONE transaction:
//! endpoint rows, window changes, events and their outbox rows. A watcher killed at any point has
//! either recorded an event together with its alerts, or neither; after a restart it sees the
//! same transition again and raises it with the same idempotency key, which the unique key of
//! `watch_events` turns into a no-op if the first attempt had in fact been committed.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, OptionalExtension};

use super::{sql, Store, StoreError};
use crate::model::{Access, Exposure, ScanReport, Service, Severity};

/// The confirmed state of a watched endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndpointStatus {
    /// Readable without credentials (`open` or `default_credentials`).
    Exposed,
    /// Answers, but is not readable (`auth_required`, `unknown`, not a data store).
    Protected,
    /// Known, but nothing answers any more.
    Unreachable,
}

impl EndpointStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointStatus::Exposed => "exposed",
            EndpointStatus::Protected => "protected",
            EndpointStatus::Unreachable => "unreachable",
        }
    }

    pub fn parse(s: &str) -> Option<EndpointStatus> {
        match s {
            "exposed" => Some(EndpointStatus::Exposed),
            "protected" => Some(EndpointStatus::Protected),
            "unreachable" => Some(EndpointStatus::Unreachable),
            _ => None,
        }
    }
}

/// One row of `watch_endpoints`: what the watcher knows about an endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEndpoint {
    pub addr: SocketAddr,
    pub group: String,
    pub state: EndpointStatus,
    pub protocol: Option<String>,
    pub access: Option<Access>,
    pub severity: Option<Severity>,
    /// When the confirmed state began (unix ms).
    pub since_ms: i64,
    pub last_checked_ms: i64,
    /// A different state observed but not yet confirmed, how many times in a row, since when.
    pub pending: Option<EndpointStatus>,
    pub pending_count: u32,
    pub pending_since_ms: Option<i64>,
    /// Events raised for this endpoint so far (part of every idempotency key).
    pub seq: u64,
    /// Confirmed exposed/closed transitions inside the flapping window (unix ms).
    pub transitions: Vec<i64>,
    pub flapping: bool,
    /// The last inventoried service (containers, categories, people), and when.
    pub service: Option<Service>,
    pub inventoried_ms: Option<i64>,
}

/// A change to the exposure windows of one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowOp {
    /// Seen open at `at_ms`: opens a window unless one is open (then it is `SeenOpen`).
    Open {
        addr: SocketAddr,
        protocol: String,
        at_ms: i64,
    },
    /// Still open at `at_ms`.
    SeenOpen { addr: SocketAddr, at_ms: i64 },
    /// First seen closed at `at_ms`: closes the open window, if any.
    Close { addr: SocketAddr, at_ms: i64 },
}

/// An event to record, with the alert it produced and the routes to deliver it to.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub at_ms: i64,
    pub addr: SocketAddr,
    pub group: String,
    pub kind: String,
    pub key: String,
    /// The alert document (JSON).
    pub alert: String,
    /// Raised by the first sweep of a new watch: recorded, not alerted.
    pub baseline: bool,
    pub routes: Vec<String>,
}

/// Everything one step of the watcher decided, written in one transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WatchCommit {
    pub endpoints: Vec<WatchEndpoint>,
    pub windows: Vec<WindowOp>,
    pub events: Vec<NewEvent>,
}

impl WatchCommit {
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty() && self.windows.is_empty() && self.events.is_empty()
    }
}

/// One stored exposure window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub addr: SocketAddr,
    pub protocol: String,
    pub opened_at: String,
    pub last_seen_open: String,
    pub closed_at: Option<String>,
    pub source: String,
}

impl Window {
    /// The window as the contract's `exposure` object.
    pub fn exposure(&self) -> Exposure {
        let secs = |s: &str| {
            humantime::parse_rfc3339(s)
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs())
        };
        let end = self.closed_at.as_deref().unwrap_or(&self.last_seen_open);
        Exposure {
            first_seen_open: self.opened_at.clone(),
            last_seen_open: self.last_seen_open.clone(),
            closed_at: self.closed_at.clone(),
            open_for_seconds: secs(end).saturating_sub(secs(&self.opened_at)),
        }
    }
}

/// One stored event (for `history` and status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub at: String,
    pub addr: SocketAddr,
    pub group: String,
    pub kind: String,
    pub key: String,
    pub alert: String,
    pub baseline: bool,
}

/// One undelivered alert for one route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub key: String,
    pub route: String,
    pub payload: String,
    pub created_ms: i64,
    pub attempts: u32,
    pub next_attempt_ms: i64,
}

/// Counts of the outbox, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxStats {
    pub pending: u64,
    pub delivered: u64,
    pub failed: u64,
}

/// Unix milliseconds of `t`.
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// RFC 3339 (seconds) of unix milliseconds.
pub fn rfc3339_ms(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn parse_addr(a: &str, p: u16) -> Result<SocketAddr, StoreError> {
    let ip = a
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("address {a:?}")))?;
    Ok(SocketAddr::new(ip, p))
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// Raw columns of a `watch_endpoints` row, typed once after the query.
type EndpointCols = (
    String,
    u16,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    i64,
    (Option<String>, u32, Option<String>),
    (i64, String, bool, Option<String>, Option<i64>),
);

/// Raw columns of a `watch_events` row.
type EventCols = (String, String, u16, String, String, String, String, bool);

impl Store {
    /// Every endpoint the watcher knows.
    pub fn watch_endpoints(&self) -> Result<Vec<WatchEndpoint>, StoreError> {
        let e = sql(&self.path);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT address, port, grp, state, protocol, access, severity, since, last_checked_ms,
                        pending, pending_count, pending_since, seq, transitions, flapping, service,
                        inventoried_ms
                 FROM watch_endpoints",
            )
            .map_err(&e)?;
        let rows: Vec<EndpointCols> = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    (r.get(9)?, r.get(10)?, r.get(11)?),
                    (r.get(12)?, r.get(13)?, r.get(14)?, r.get(15)?, r.get(16)?),
                ))
            })
            .map_err(&e)?
            .collect::<Result<_, _>>()
            .map_err(&e)?;
        let ms = |s: &str| -> Result<i64, StoreError> {
            humantime::parse_rfc3339(s)
                .map(unix_ms)
                .map_err(|_| corrupt(format!("time {s:?}")))
        };
        let mut out = Vec::with_capacity(rows.len());
        for (addr, port, group, state, protocol, access, severity, since, last, pend, rest) in rows
        {
            let (pending, pending_count, pending_since) = pend;
            let (seq, transitions, flapping, service, inventoried_ms) = rest;
            out.push(WatchEndpoint {
                addr: parse_addr(&addr, port)?,
                group,
                state: EndpointStatus::parse(&state)
                    .ok_or_else(|| corrupt(format!("endpoint state {state:?}")))?,
                protocol,
                access: access
                    .map(|a| serde_json::from_value(serde_json::Value::String(a)))
                    .transpose()
                    .map_err(corrupt)?,
                severity: severity
                    .map(|s| s.parse::<Severity>())
                    .transpose()
                    .map_err(corrupt)?,
                since_ms: ms(&since)?,
                last_checked_ms: last,
                pending: pending.as_deref().and_then(EndpointStatus::parse),
                pending_count,
                pending_since_ms: pending_since.as_deref().map(ms).transpose()?,
                seq: seq as u64,
                transitions: serde_json::from_str(&transitions).map_err(corrupt)?,
                flapping,
                service: service
                    .map(|d| serde_json::from_str(&d))
                    .transpose()
                    .map_err(corrupt)?,
                inventoried_ms,
            });
        }
        Ok(out)
    }

    /// Writes one step of the watcher: endpoint rows, window changes, events and their alerts,
    /// in one transaction. Returns the events that were new (an event whose key is already
    /// stored was raised before a crash and is not raised again).
    pub fn watch_commit(&self, c: &WatchCommit, now_ms: i64) -> Result<Vec<String>, StoreError> {
        let e = sql(&self.path);
        let tx = self.conn.unchecked_transaction().map_err(&e)?;
        {
            let mut up = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO watch_endpoints (address, port, grp, state, protocol,
                        access, severity, since, last_checked_ms, pending, pending_count,
                        pending_since, seq, transitions, flapping, service, inventoried_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
                )
                .map_err(&e)?;
            for w in &c.endpoints {
                let service = w
                    .service
                    .as_ref()
                    .map(serde_json::to_string)
                    .transpose()
                    .map_err(corrupt)?;
                up.execute(params![
                    w.addr.ip().to_string(),
                    w.addr.port(),
                    w.group,
                    w.state.as_str(),
                    w.protocol,
                    w.access.map(|a| a.as_str()),
                    w.severity.map(|s| s.as_str()),
                    rfc3339_ms(w.since_ms),
                    w.last_checked_ms,
                    w.pending.map(|p| p.as_str()),
                    w.pending_count,
                    w.pending_since_ms.map(rfc3339_ms),
                    w.seq as i64,
                    serde_json::to_string(&w.transitions).map_err(corrupt)?,
                    w.flapping,
                    service,
                    w.inventoried_ms,
                ])
                .map_err(&e)?;
            }
            for op in &c.windows {
                apply_window(&tx, op, "watch").map_err(&e)?;
            }
        }
        let mut fresh = Vec::new();
        for ev in &c.events {
            let n = tx
                .execute(
                    "INSERT OR IGNORE INTO watch_events (at, address, port, grp, kind, key, alert, baseline)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        rfc3339_ms(ev.at_ms),
                        ev.addr.ip().to_string(),
                        ev.addr.port(),
                        ev.group,
                        ev.kind,
                        ev.key,
                        ev.alert,
                        ev.baseline
                    ],
                )
                .map_err(&e)?;
            if n == 0 {
                continue;
            }
            fresh.push(ev.key.clone());
            if ev.baseline {
                continue;
            }
            for route in &ev.routes {
                tx.execute(
                    "INSERT OR IGNORE INTO alert_outbox (key, route, payload, created_ms, next_attempt_ms)
                     VALUES (?1, ?2, ?3, ?4, ?4)",
                    params![ev.key, route, ev.alert, now_ms],
                )
                .map_err(&e)?;
            }
        }
        tx.commit().map_err(&e)?;
        Ok(fresh)
    }

    /// Exposure windows of `addr`, oldest first.
    pub fn windows(&self, addr: SocketAddr) -> Result<Vec<Window>, StoreError> {
        let e = sql(&self.path);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT protocol, opened_at, last_seen_open, closed_at, source FROM exposure_windows
                 WHERE address = ?1 AND port = ?2 ORDER BY opened_at, id",
            )
            .map_err(&e)?;
        let rows = stmt
            .query_map(params![addr.ip().to_string(), addr.port()], |r| {
                Ok(Window {
                    addr,
                    protocol: r.get(0)?,
                    opened_at: r.get(1)?,
                    last_seen_open: r.get(2)?,
                    closed_at: r.get(3)?,
                    source: r.get(4)?,
                })
            })
            .map_err(&e)?;
        rows.collect::<Result<_, _>>().map_err(e)
    }

    /// Every window still open.
    pub fn open_windows(&self) -> Result<Vec<Window>, StoreError> {
        let e = sql(&self.path);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT address, port, protocol, opened_at, last_seen_open, source
                 FROM exposure_windows WHERE closed_at IS NULL ORDER BY opened_at",
            )
            .map_err(&e)?;
        let rows: Vec<(String, u16, String, String, String, String)> = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .map_err(&e)?
            .collect::<Result<_, _>>()
            .map_err(&e)?;
        rows.into_iter()
            .map(|(a, p, protocol, opened_at, last_seen_open, source)| {
                Ok(Window {
                    addr: parse_addr(&a, p)?,
                    protocol,
                    opened_at,
                    last_seen_open,
                    closed_at: None,
                    source,
                })
            })
            .collect()
    }

    /// Fills `exposure` on the exposed services of a stored scan: the window that was open when
    /// the scan ran (the latest one opened by then).
    pub fn attach_exposure(&self, report: &mut ScanReport) -> Result<(), StoreError> {
        let at = report
            .finished_at
            .clone()
            .unwrap_or_else(|| report.started_at.clone());
        for s in report.services.iter_mut() {
            if !s.access.is_exposed() {
                continue;
            }
            let Ok(ip) = s.address.parse() else {
                continue;
            };
            let windows = self.windows(SocketAddr::new(ip, s.port))?;
            s.exposure = windows
                .iter()
                .rev()
                .find(|w| w.opened_at <= at)
                .map(Window::exposure);
        }
        Ok(())
    }

    /// Updates the exposure windows from a finished stored scan: its exposed services are seen
    /// open at its start; an open window of an endpoint the scan probed and found not exposed
    /// is closed then. Endpoints the scan did not probe keep their windows.
    pub fn scan_windows(&self, id: &str) -> Result<(), StoreError> {
        let e = sql(&self.path);
        let (report, _) = self.load(id)?;
        let at_ms = humantime::parse_rfc3339(&report.started_at)
            .map(unix_ms)
            .map_err(|_| corrupt(format!("time {:?}", report.started_at)))?;
        let tx = self.conn.unchecked_transaction().map_err(&e)?;
        let mut exposed = std::collections::HashSet::new();
        for s in report.services.iter().filter(|s| s.access.is_exposed()) {
            let addr = parse_addr(&s.address, s.port)?;
            exposed.insert(addr);
            let op = WindowOp::Open {
                addr,
                protocol: s.protocol.clone(),
                at_ms,
            };
            apply_window(&tx, &op, "scan").map_err(&e)?;
        }
        for w in self.open_windows()? {
            if exposed.contains(&w.addr) {
                continue;
            }
            let probed: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM endpoints_done WHERE scan_id = ?1 AND address = ?2 AND port = ?3)",
                    params![id, w.addr.ip().to_string(), w.addr.port()],
                    |r| r.get(0),
                )
                .map_err(&e)?;
            if probed && w.opened_at <= report.started_at {
                let op = WindowOp::Close {
                    addr: w.addr,
                    at_ms,
                };
                apply_window(&tx, &op, "scan").map_err(&e)?;
            }
        }
        tx.commit().map_err(&e)
    }

    /// Records a scan the watcher ran (an inventory of changed or due endpoints) as a stored
    /// scan, so `leakscope report ID` shows it.
    pub fn record_scan(&self, report: &ScanReport, request: &str) -> Result<(), StoreError> {
        let e = sql(&self.path);
        let tx = self.conn.unchecked_transaction().map_err(&e)?;
        let stats = serde_json::to_string(&report.stats).map_err(corrupt)?;
        tx.execute(
            "INSERT INTO scans (id, started_at, finished_at, status, pid, request, stats)
             VALUES (?1, ?2, ?3, 'complete', ?4, ?5, ?6)",
            params![
                report.scan_id,
                report.started_at,
                report.finished_at,
                std::process::id(),
                request,
                stats
            ],
        )
        .map_err(&e)?;
        for s in &report.services {
            let doc = serde_json::to_string(s).map_err(corrupt)?;
            tx.execute(
                "INSERT OR REPLACE INTO services (scan_id, address, port, protocol, access, severity, doc)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    report.scan_id,
                    s.address,
                    s.port,
                    s.protocol,
                    s.access.as_str(),
                    s.severity.as_str(),
                    doc
                ],
            )
            .map_err(&e)?;
            tx.execute(
                "INSERT OR IGNORE INTO endpoints_done (scan_id, address, port) VALUES (?1, ?2, ?3)",
                params![report.scan_id, s.address, s.port],
            )
            .map_err(&e)?;
        }
        tx.commit().map_err(&e)
    }

    /// Events of one endpoint (or of every endpoint), newest last, at most `limit`.
    pub fn events(
        &self,
        addr: Option<SocketAddr>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let e = sql(&self.path);
        let (a, p) = addr.map_or((None, None), |a| (Some(a.ip().to_string()), Some(a.port())));
        let mut stmt = self
            .conn
            .prepare(
                "SELECT at, address, port, grp, kind, key, alert, baseline FROM (
                    SELECT * FROM watch_events
                    WHERE (?1 IS NULL OR address = ?1) AND (?2 IS NULL OR port = ?2)
                    ORDER BY id DESC LIMIT ?3) ORDER BY id",
            )
            .map_err(&e)?;
        let rows: Vec<EventCols> = stmt
            .query_map(params![a, p, limit as i64], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })
            .map_err(&e)?
            .collect::<Result<_, _>>()
            .map_err(&e)?;
        rows.into_iter()
            .map(|(at, a, p, group, kind, key, alert, baseline)| {
                Ok(StoredEvent {
                    at,
                    addr: parse_addr(&a, p)?,
                    group,
                    kind,
                    key,
                    alert,
                    baseline,
                })
            })
            .collect()
    }

    /// Undelivered alerts due at `now_ms`, oldest first, at most `limit`.
    pub fn outbox_due(&self, now_ms: i64, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        let e = sql(&self.path);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT key, route, payload, created_ms, attempts, next_attempt_ms FROM alert_outbox
                 WHERE delivered_ms IS NULL AND failed_ms IS NULL AND next_attempt_ms <= ?1
                 ORDER BY next_attempt_ms, created_ms LIMIT ?2",
            )
            .map_err(&e)?;
        let rows = stmt
            .query_map(params![now_ms, limit as i64], |r| {
                Ok(OutboxRow {
                    key: r.get(0)?,
                    route: r.get(1)?,
                    payload: r.get(2)?,
                    created_ms: r.get(3)?,
                    attempts: r.get(4)?,
                    next_attempt_ms: r.get(5)?,
                })
            })
            .map_err(&e)?;
        rows.collect::<Result<_, _>>().map_err(e)
    }

    /// When the next undelivered alert is due (unix ms), if any.
    pub fn outbox_next_due(&self) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT min(next_attempt_ms) FROM alert_outbox WHERE delivered_ms IS NULL AND failed_ms IS NULL",
                [],
                |r| r.get(0),
            )
            .map_err(sql(&self.path))
    }

    /// Marks one alert delivered to one route.
    pub fn outbox_delivered(&self, key: &str, route: &str, now_ms: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE alert_outbox SET delivered_ms = ?3, attempts = attempts + 1, last_error = NULL
                 WHERE key = ?1 AND route = ?2",
                params![key, route, now_ms],
            )
            .map_err(sql(&self.path))?;
        Ok(())
    }

    /// Records a failed attempt; the next one at `next_ms`, or none when `give_up`.
    pub fn outbox_failed_attempt(
        &self,
        key: &str,
        route: &str,
        next_ms: i64,
        give_up: Option<i64>,
        error: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE alert_outbox SET attempts = attempts + 1, next_attempt_ms = ?3, failed_ms = ?4,
                        last_error = ?5
                 WHERE key = ?1 AND route = ?2",
                params![key, route, next_ms, give_up, error],
            )
            .map_err(sql(&self.path))?;
        Ok(())
    }

    /// Pending, delivered and abandoned alert deliveries.
    pub fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        self.conn
            .query_row(
                "SELECT count(*) FILTER (WHERE delivered_ms IS NULL AND failed_ms IS NULL),
                        count(*) FILTER (WHERE delivered_ms IS NOT NULL),
                        count(*) FILTER (WHERE failed_ms IS NOT NULL)
                 FROM alert_outbox",
                [],
                |r| {
                    Ok(OutboxStats {
                        pending: r.get(0)?,
                        delivered: r.get(1)?,
                        failed: r.get(2)?,
                    })
                },
            )
            .map_err(sql(&self.path))
    }

    /// Forgets delivered and abandoned alerts older than `before_ms` (their events stay).
    pub fn outbox_prune(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "DELETE FROM alert_outbox WHERE COALESCE(delivered_ms, failed_ms) < ?1",
                params![before_ms],
            )
            .map_err(sql(&self.path))
    }

    /// A small fact of the watcher (`watch_meta`).
    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT value FROM watch_meta WHERE key = ?1",
                params![key],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql(&self.path))
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO watch_meta (key, value) VALUES (?1, ?2)",
                params![key, value],
            )
            .map_err(sql(&self.path))?;
        Ok(())
    }
}

fn apply_window(
    tx: &rusqlite::Connection,
    op: &WindowOp,
    source: &str,
) -> Result<(), rusqlite::Error> {
    let open_id = |addr: &SocketAddr| -> Result<Option<i64>, rusqlite::Error> {
        tx.query_row(
            "SELECT id FROM exposure_windows WHERE address = ?1 AND port = ?2 AND closed_at IS NULL
             ORDER BY opened_at DESC LIMIT 1",
            params![addr.ip().to_string(), addr.port()],
            |r| r.get(0),
        )
        .optional()
    };
    match op {
        WindowOp::Open {
            addr,
            protocol,
            at_ms,
        } => match open_id(addr)? {
            Some(id) => {
                tx.execute(
                    "UPDATE exposure_windows SET last_seen_open = max(last_seen_open, ?2) WHERE id = ?1",
                    params![id, rfc3339_ms(*at_ms)],
                )?;
            }
            None => {
                let at = rfc3339_ms(*at_ms);
                tx.execute(
                    "INSERT INTO exposure_windows (address, port, protocol, opened_at, last_seen_open, source)
                     VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
                    params![addr.ip().to_string(), addr.port(), protocol, at, source],
                )?;
            }
        },
        WindowOp::SeenOpen { addr, at_ms } => {
            if let Some(id) = open_id(addr)? {
                tx.execute(
                    "UPDATE exposure_windows SET last_seen_open = max(last_seen_open, ?2) WHERE id = ?1",
                    params![id, rfc3339_ms(*at_ms)],
                )?;
            }
        }
        WindowOp::Close { addr, at_ms } => {
            if let Some(id) = open_id(addr)? {
                tx.execute(
                    "UPDATE exposure_windows SET closed_at = max(last_seen_open, ?2) WHERE id = ?1",
                    params![id, rfc3339_ms(*at_ms)],
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Severity;

    fn tempdir() -> std::path::PathBuf {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let d = std::env::temp_dir().join(format!(
            "leakscope-watch-store-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn endpoint(addr: SocketAddr, state: EndpointStatus) -> WatchEndpoint {
        WatchEndpoint {
            addr,
            group: "g".into(),
            state,
            protocol: Some("redis".into()),
            access: Some(Access::Open),
            severity: Some(Severity::Critical),
            since_ms: 1_000_000,
            last_checked_ms: 1_000_000,
            pending: Some(EndpointStatus::Unreachable),
            pending_count: 1,
            pending_since_ms: Some(1_001_000),
            seq: 3,
            transitions: vec![1, 2],
            flapping: true,
            service: None,
            inventoried_ms: Some(5),
        }
    }

    fn event(addr: SocketAddr, key: &str) -> NewEvent {
        NewEvent {
            at_ms: 1_000_000,
            addr,
            group: "g".into(),
            kind: "exposed".into(),
            key: key.into(),
            alert: "{}".into(),
            baseline: false,
            routes: vec!["a".into(), "b".into()],
        }
    }

    #[test]
    fn a_version_1_store_is_migrated_and_keeps_its_scans() {
        let dir = tempdir();
        let path = dir.join("v1.db");
        {
            let c = rusqlite::Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL);",
            )
            .unwrap();
            c.execute_batch(include_str!("../../migrations/0001_init.sql"))
                .unwrap();
            c.execute_batch(
                "INSERT INTO schema_migrations VALUES (1, '2026-11-01T00:00:00Z');
                 INSERT INTO scans (id, started_at, status, request) VALUES ('old', '2026-11-01T00:00:00Z', 'complete', '{}');",
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.scans().unwrap()[0].id, "old");
        assert!(store.watch_endpoints().unwrap().is_empty());
        let v: i64 = store
            .conn
            .query_row("SELECT max(version) FROM schema_migrations", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(v, 3);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_commit_is_all_or_nothing_and_an_event_is_raised_once() {
        let dir = tempdir();
        let store = Store::open(&dir.join("w.db")).unwrap();
        let addr: SocketAddr = "127.0.0.1:6379".parse().unwrap();
        let c = WatchCommit {
            endpoints: vec![endpoint(addr, EndpointStatus::Exposed)],
            windows: vec![WindowOp::Open {
                addr,
                protocol: "redis".into(),
                at_ms: 1_000_000,
            }],
            events: vec![event(addr, "k1")],
        };
        assert_eq!(store.watch_commit(&c, 10).unwrap(), vec!["k1".to_string()]);
        // The same step again (a crash before the state was kept elsewhere): nothing new.
        assert!(store.watch_commit(&c, 11).unwrap().is_empty());
        assert_eq!(
            store.outbox_stats().unwrap().pending,
            2,
            "one row per route"
        );
        assert_eq!(store.events(None, 10).unwrap().len(), 1);
        let back = store.watch_endpoints().unwrap();
        assert_eq!(back, vec![endpoint(addr, EndpointStatus::Exposed)]);

        // Delivery bookkeeping: due rows, a retry later, a delivery.
        let due = store.outbox_due(10, 10).unwrap();
        assert_eq!(due.len(), 2);
        store
            .outbox_failed_attempt("k1", "a", 5_000, None, "refused")
            .unwrap();
        store.outbox_delivered("k1", "b", 20).unwrap();
        assert!(store.outbox_due(4_999, 10).unwrap().is_empty());
        assert_eq!(store.outbox_next_due().unwrap(), Some(5_000));
        assert_eq!(store.outbox_due(5_000, 10).unwrap()[0].attempts, 1);
        let s = store.outbox_stats().unwrap();
        assert_eq!((s.pending, s.delivered, s.failed), (1, 1, 0));

        // Windows: seen open later, then closed; a second open starts a new window.
        let later = WatchCommit {
            windows: vec![
                WindowOp::SeenOpen {
                    addr,
                    at_ms: 1_060_000,
                },
                WindowOp::Close {
                    addr,
                    at_ms: 1_090_000,
                },
                WindowOp::Open {
                    addr,
                    protocol: "redis".into(),
                    at_ms: 2_000_000,
                },
            ],
            ..WatchCommit::default()
        };
        store.watch_commit(&later, 12).unwrap();
        let w = store.windows(addr).unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].exposure().open_for_seconds, 90);
        assert_eq!(w[0].closed_at.as_deref(), Some("1970-01-01T00:18:10Z"));
        assert!(w[1].closed_at.is_none());
        assert_eq!(store.open_windows().unwrap().len(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn stored_scans_keep_windows_and_reports_say_open_for() {
        let dir = tempdir();
        let path = dir.join("s.db");
        let store = Store::open(&path).unwrap();
        let svc = |access| Service {
            address: "127.0.0.1".into(),
            port: 9200,
            tls: false,
            protocol: "elasticsearch".into(),
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
        };
        let scan = |id: &str, at: &str, access| {
            store.begin(id, at, "{}").unwrap();
            let w = Store::writer(&path, id, 0).unwrap();
            w.record("127.0.0.1:9200".parse().unwrap(), Some(&svc(access)));
            w.close().unwrap();
            store.finish(id, at, &Default::default()).unwrap();
            store.scan_windows(id).unwrap();
        };
        scan("s1", "2026-12-01T10:00:00Z", Access::Open);
        scan("s2", "2026-12-01T12:30:00Z", Access::Open);
        let (r, _) = store.load("s2").unwrap();
        let x = r.services[0].exposure.clone().unwrap();
        assert_eq!(x.first_seen_open, "2026-12-01T10:00:00Z");
        assert_eq!(x.open_for_seconds, 9000);
        assert!(
            x.describe().starts_with("open for 2h 30m"),
            "{}",
            x.describe()
        );
        scan("s3", "2026-12-02T09:00:00Z", Access::AuthRequired);
        let w = store.windows("127.0.0.1:9200".parse().unwrap()).unwrap();
        assert_eq!(w[0].closed_at.as_deref(), Some("2026-12-02T09:00:00Z"));
        // The earlier scan's report still shows the window it was part of.
        let (r, _) = store.load("s1").unwrap();
        assert_eq!(
            r.services[0]
                .exposure
                .as_ref()
                .unwrap()
                .closed_at
                .as_deref(),
            Some("2026-12-02T09:00:00Z")
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
