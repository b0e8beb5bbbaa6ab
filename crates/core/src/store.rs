//! The findings store: every scan kept in an embedded SQLite database.
//!
//! Scans are recorded while they run (services and the endpoints already probed, in small
//! transactions from one writer thread), so a scan killed with Ctrl-C or `kill -9` is left
//! `incomplete` and `scan --resume ID` continues it without probing an endpoint twice or losing
//! one. The file is created 0600 and opened in WAL mode; schema migrations are SQL files in
//! `crates/core/migrations/`, applied in order and recorded in `schema_migrations`.
//!
//! Nothing raw is stored: a service is kept as its contract document, which carries only masked
//! examples and keyed fingerprints.
//!
//! Version 2 adds what `leakscope watch` keeps (see `store/watch.rs`): the state of every endpoint
//! it knows, exposure windows (also kept by stored scans), the events it raised and the alert
//! outbox.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};

use crate::model::{Impact, ScanReport, Service, Stats, SCAN_SCHEMA};

/// Migrations, in order. Append only: a released migration never changes.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_init.sql")),
    (2, include_str!("../migrations/0002_watch.sql")),
    (3, include_str!("../migrations/0003_impact.sql")),
];

mod watch;
pub use watch::{
    rfc3339_ms, unix_ms, EndpointStatus, NewEvent, OutboxRow, OutboxStats, StoredEvent,
    WatchCommit, WatchEndpoint, Window, WindowOp,
};

/// Errors of the store layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // The cause is the error's source, not part of its message: `{e:#}` prints the chain once.
    #[error("database {path}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot create {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no scan {0:?} in the store (see `leakscope scans`)")]
    NoSuchScan(String),
    #[error("ambiguous scan id {prefix:?}: matches {}", .ids.join(", "))]
    Ambiguous { prefix: String, ids: Vec<String> },
    #[error("no findings store at {0} (run `leakscope scan` first, or name the store with --db)")]
    Missing(String),
    #[error("cannot create the store {path}: its directory {dir} does not exist")]
    NoDirectory { path: String, dir: String },
    #[error("the store is empty: run `leakscope scan` first")]
    Empty,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// Status of a stored scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanStatus {
    Running,
    Complete,
    Incomplete,
}

impl ScanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ScanStatus::Running => "running",
            ScanStatus::Complete => "complete",
            ScanStatus::Incomplete => "incomplete",
        }
    }
    fn parse(s: &str) -> ScanStatus {
        match s {
            "complete" => ScanStatus::Complete,
            "running" => ScanStatus::Running,
            _ => ScanStatus::Incomplete,
        }
    }
}

/// One line of `leakscope scans`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanSummary {
    pub id: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub status: ScanStatus,
    pub services: u64,
    pub exposed: u64,
    pub request: String,
}

/// One point of an exposure timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Sighting {
    pub scan_id: String,
    pub started_at: String,
    /// None when the endpoint was probed and nothing answered (or was not in that scan).
    pub service: Option<Service>,
}

/// An open store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

fn sql(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sqlite {
        path: path.display().to_string(),
        source,
    }
}

/// Where the store lives unless `--db` says otherwise: `$LEAKSCOPE_DB`, else
/// `$XDG_DATA_HOME/leakscope/leakscope.db`, else `~/.local/share/leakscope/leakscope.db`.
pub fn default_path() -> PathBuf {
    if let Some(p) = std::env::var_os("LEAKSCOPE_DB") {
        return PathBuf::from(p);
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("leakscope").join("leakscope.db")
}

fn create_private(path: &Path) -> Result<(), StoreError> {
    let io = |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    };
    // A mistyped directory is an error, not a directory tree created on the side.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            return Err(StoreError::NoDirectory {
                path: path.display().to_string(),
                dir: dir.display().to_string(),
            });
        }
    }
    if !path.exists() {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
    }
    Ok(())
}

impl Store {
    /// Opens (creating it 0600 if needed, in a directory that must exist) and migrates the
    /// store at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        create_private(path)?;
        Store::open_file(path)
    }

    /// Opens an existing store (for commands that only read): a missing file is an error, not
    /// an empty store created at a mistyped path.
    pub fn open_existing(path: &Path) -> Result<Store, StoreError> {
        if !path.is_file() {
            return Err(StoreError::Missing(path.display().to_string()));
        }
        Store::open_file(path)
    }

    fn open_file(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path).map_err(sql(path))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(sql(path))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql(path))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sql(path))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql(path))?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store.migrate()?;
        store.mark_abandoned()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let e = sql(&self.path);
        self.conn
            .execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
            .map_err(&e)?;
        let current: i64 = self
            .conn
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                [],
                |r| r.get(0),
            )
            .map_err(&e)?;
        for (version, text) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            let tx = self.conn.unchecked_transaction().map_err(&e)?;
            tx.execute_batch(text).map_err(&e)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                params![version, now()],
            )
            .map_err(&e)?;
            tx.commit().map_err(&e)?;
        }
        Ok(())
    }

    /// Scans left `running` by a process that no longer exists were interrupted.
    fn mark_abandoned(&self) -> Result<(), StoreError> {
        let e = sql(&self.path);
        let mut stmt = self
            .conn
            .prepare("SELECT id, pid FROM scans WHERE status = 'running'")
            .map_err(&e)?;
        let rows: Vec<(String, Option<i64>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(&e)?
            .collect::<Result<_, _>>()
            .map_err(&e)?;
        for (id, pid) in rows {
            let alive = pid.is_some_and(|p| {
                Path::new(&format!("/proc/{p}")).exists() && p as u32 != std::process::id()
            });
            if !alive {
                self.conn
                    .execute(
                        "UPDATE scans SET status = 'incomplete' WHERE id = ?1",
                        params![id],
                    )
                    .map_err(&e)?;
            }
        }
        Ok(())
    }

    /// Records the start of a scan. `request` is the JSON needed to resume it.
    pub fn begin(&self, id: &str, started_at: &str, request: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO scans (id, started_at, status, pid, request) VALUES (?1, ?2, 'running', ?3, ?4)",
                params![id, started_at, std::process::id(), request],
            )
            .map_err(sql(&self.path))?;
        Ok(())
    }

    /// Marks a resumed scan as running again in this process.
    pub fn reopen(&self, id: &str) -> Result<(), StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE scans SET status = 'running', pid = ?2, finished_at = NULL WHERE id = ?1",
                params![id, std::process::id()],
            )
            .map_err(sql(&self.path))?;
        if n == 0 {
            return Err(StoreError::NoSuchScan(id.to_string()));
        }
        Ok(())
    }

    /// Records a finished scan: its stats and status.
    pub fn finish(&self, id: &str, finished_at: &str, stats: &Stats) -> Result<(), StoreError> {
        let stats = serde_json::to_string(stats).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.conn
            .execute(
                "UPDATE scans SET status = 'complete', finished_at = ?2, stats = ?3 WHERE id = ?1",
                params![id, finished_at, stats],
            )
            .map_err(sql(&self.path))?;
        Ok(())
    }

    /// Records the people of a scan's last run across all its stores (`None`: not estimated).
    pub fn set_impact(&self, id: &str, impact: Option<&Impact>) -> Result<(), StoreError> {
        let doc = impact
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.conn
            .execute(
                "UPDATE scans SET impact = ?2 WHERE id = ?1",
                params![id, doc],
            )
            .map_err(sql(&self.path))?;
        Ok(())
    }

    /// Marks a scan interrupted (Ctrl-C).
    pub fn interrupt(&self, id: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE scans SET status = 'incomplete' WHERE id = ?1",
                params![id],
            )
            .map_err(sql(&self.path))?;
        Ok(())
    }

    /// Resolves `latest` or an id prefix to a scan id.
    pub fn resolve(&self, id: &str) -> Result<String, StoreError> {
        let e = sql(&self.path);
        if id == "latest" {
            return self
                .conn
                .query_row(
                    "SELECT id FROM scans ORDER BY started_at DESC, rowid DESC LIMIT 1",
                    [],
                    |r| r.get(0),
                )
                .optional()
                .map_err(&e)?
                .ok_or(StoreError::Empty);
        }
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM scans WHERE id LIKE ?1 || '%'")
            .map_err(&e)?;
        let ids: Vec<String> = stmt
            .query_map(params![id], |r| r.get(0))
            .map_err(&e)?
            .collect::<Result<_, _>>()
            .map_err(&e)?;
        match ids.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(StoreError::NoSuchScan(id.to_string())),
            many => Err(StoreError::Ambiguous {
                prefix: id.to_string(),
                ids: many.to_vec(),
            }),
        }
    }

    /// Status of a stored scan.
    pub fn status(&self, id: &str) -> Result<ScanStatus, StoreError> {
        let s: String = self
            .conn
            .query_row("SELECT status FROM scans WHERE id = ?1", params![id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql(&self.path))?
            .ok_or_else(|| StoreError::NoSuchScan(id.to_string()))?;
        Ok(ScanStatus::parse(&s))
    }

    /// Running time of a scan so far, over every run of it (a resumed scan's earlier runs
    /// included), as its writer last recorded it.
    pub fn duration_ms(&self, id: &str) -> Result<u64, StoreError> {
        let stats: Option<String> = self
            .conn
            .query_row("SELECT stats FROM scans WHERE id = ?1", params![id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql(&self.path))?
            .flatten();
        Ok(stats
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|v| v.get("duration_ms")?.as_u64())
            .unwrap_or(0))
    }

    /// The request a scan was started with.
    pub fn request(&self, id: &str) -> Result<String, StoreError> {
        self.conn
            .query_row(
                "SELECT request FROM scans WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql(&self.path))?
            .ok_or_else(|| StoreError::NoSuchScan(id.to_string()))
    }

    /// Endpoints a scan has already probed.
    pub fn done(&self, id: &str) -> Result<HashSet<SocketAddr>, StoreError> {
        let e = sql(&self.path);
        let mut stmt = self
            .conn
            .prepare("SELECT address, port FROM endpoints_done WHERE scan_id = ?1")
            .map_err(&e)?;
        let rows = stmt
            .query_map(params![id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, u16>(1)?))
            })
            .map_err(&e)?;
        let mut out = HashSet::new();
        for row in rows {
            let (a, p) = row.map_err(&e)?;
            let ip = a
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("address {a:?}")))?;
            out.insert(SocketAddr::new(ip, p));
        }
        Ok(out)
    }

    /// Every stored scan, newest first.
    pub fn scans(&self) -> Result<Vec<ScanSummary>, StoreError> {
        let e = sql(&self.path);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT s.id, s.started_at, s.finished_at, s.status, s.request,
                        (SELECT count(*) FROM services v WHERE v.scan_id = s.id),
                        (SELECT count(*) FROM services v WHERE v.scan_id = s.id
                           AND v.access IN ('open', 'default_credentials'))
                 FROM scans s ORDER BY s.started_at DESC, s.rowid DESC",
            )
            .map_err(&e)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ScanSummary {
                    id: r.get(0)?,
                    started_at: r.get(1)?,
                    finished_at: r.get(2)?,
                    status: ScanStatus::parse(&r.get::<_, String>(3)?),
                    request: r.get(4)?,
                    services: r.get(5)?,
                    exposed: r.get(6)?,
                })
            })
            .map_err(&e)?;
        rows.collect::<Result<_, _>>().map_err(e)
    }

    fn services_of(&self, id: &str) -> Result<Vec<Service>, StoreError> {
        let e = sql(&self.path);
        let mut stmt = self
            .conn
            .prepare("SELECT doc FROM services WHERE scan_id = ?1")
            .map_err(&e)?;
        let docs: Vec<String> = stmt
            .query_map(params![id], |r| r.get(0))
            .map_err(&e)?
            .collect::<Result<_, _>>()
            .map_err(&e)?;
        let mut out: Vec<Service> = docs
            .iter()
            .map(|d| parse_service(d))
            .collect::<Result<_, _>>()?;
        out.sort_by(|a, b| {
            (a.address.parse::<std::net::IpAddr>().ok(), a.port)
                .cmp(&(b.address.parse().ok(), b.port))
        });
        Ok(out)
    }

    /// A stored scan as its contract document.
    pub fn load(&self, id: &str) -> Result<(ScanReport, ScanStatus), StoreError> {
        let id = self.resolve(id)?;
        let (started_at, finished_at, status, stats, impact): (
            String,
            Option<String>,
            String,
            Option<String>,
            Option<String>,
        ) = self
            .conn
            .query_row(
                "SELECT started_at, finished_at, status, stats, impact FROM scans WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .map_err(sql(&self.path))?;
        let services = self.services_of(&id)?;
        let mut stats: Stats = match stats {
            Some(s) => serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            None => Stats::default(),
        };
        stats.services = services.len() as u64;
        let status = ScanStatus::parse(&status);
        if status != ScanStatus::Complete {
            // What an unfinished scan has done so far is its probed endpoints.
            stats.ports_probed = self.done(&id)?.len() as u64;
        }
        let mut report = ScanReport {
            schema: SCAN_SCHEMA.to_string(),
            scan_id: id,
            started_at,
            // Only a scan that ran to its end has finished (the contract's null otherwise).
            finished_at: finished_at.filter(|_| status == ScanStatus::Complete),
            impact: impact
                .map(|d| serde_json::from_str(&d))
                .transpose()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            stats,
            services,
        };
        self.attach_exposure(&mut report)?;
        Ok((report, status))
    }

    /// Every scan that probed `addr`, oldest first, with what answered there (if anything).
    pub fn history(&self, addr: SocketAddr) -> Result<Vec<Sighting>, StoreError> {
        let e = sql(&self.path);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT s.id, s.started_at, v.doc FROM scans s
                 LEFT JOIN services v ON v.scan_id = s.id AND v.address = ?1 AND v.port = ?2
                 WHERE v.doc IS NOT NULL OR EXISTS (SELECT 1 FROM endpoints_done d
                       WHERE d.scan_id = s.id AND d.address = ?1 AND d.port = ?2)
                 ORDER BY s.started_at, s.rowid",
            )
            .map_err(&e)?;
        let rows = stmt
            .query_map(params![addr.ip().to_string(), addr.port()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })
            .map_err(&e)?;
        let mut out = Vec::new();
        for row in rows {
            let (scan_id, started_at, doc) = row.map_err(&e)?;
            let service = match doc {
                Some(d) => Some(parse_service(&d)?),
                None => None,
            };
            out.push(Sighting {
                scan_id,
                started_at,
                service,
            });
        }
        Ok(out)
    }

    /// Starts the background writer that records endpoints as a scan completes them, and the
    /// scan's running time so far (`earlier_ms`, the time of earlier runs of a resumed scan,
    /// plus this run's), so a scan killed mid-way keeps the time it ran.
    pub fn writer(path: &Path, scan_id: &str, earlier_ms: u64) -> Result<Writer, StoreError> {
        let conn = Connection::open(path).map_err(sql(path))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(sql(path))?;
        let (tx, rx) = mpsc::channel::<(SocketAddr, Option<Service>)>();
        let id = scan_id.to_string();
        let path = path.to_path_buf();
        let handle = std::thread::spawn(move || write_loop(conn, &path, &id, earlier_ms, rx));
        Ok(Writer {
            tx: Some(tx),
            handle: Some(handle),
        })
    }
}

/// Sends finished endpoints to the writer thread. Dropping it (or [`Writer::close`]) flushes.
pub struct Writer {
    tx: Option<mpsc::Sender<(SocketAddr, Option<Service>)>>,
    handle: Option<JoinHandle<Result<(), StoreError>>>,
}

impl Writer {
    pub fn record(&self, addr: SocketAddr, service: Option<&Service>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send((addr, service.cloned()));
        }
    }

    /// Flushes everything and stops the writer thread.
    pub fn close(mut self) -> Result<(), StoreError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), StoreError> {
        self.tx.take();
        match self.handle.take() {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(StoreError::Corrupt("store writer panicked".into()))),
            None => Ok(()),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

fn write_loop(
    mut conn: Connection,
    path: &Path,
    id: &str,
    earlier_ms: u64,
    rx: mpsc::Receiver<(SocketAddr, Option<Service>)>,
) -> Result<(), StoreError> {
    let started = Instant::now();
    let mut timed = Instant::now();
    let default_stats =
        serde_json::to_string(&Stats::default()).map_err(|x| StoreError::Corrupt(x.to_string()))?;
    // Small transactions: a kill -9 loses at most the last fraction of a second, and those
    // endpoints are simply probed again on resume.
    const FLUSH_EVERY: Duration = Duration::from_millis(200);
    let e = sql(path);
    let mut batch = Vec::new();
    let mut last = Instant::now();
    loop {
        let msg = rx.recv_timeout(FLUSH_EVERY);
        let closed = matches!(msg, Err(mpsc::RecvTimeoutError::Disconnected));
        if let Ok(m) = msg {
            batch.push(m);
        }
        if !batch.is_empty() && (closed || last.elapsed() >= FLUSH_EVERY || batch.len() >= 5000) {
            let tx = conn.transaction().map_err(&e)?;
            {
                let mut done = tx
                    .prepare_cached("INSERT OR IGNORE INTO endpoints_done (scan_id, address, port) VALUES (?1, ?2, ?3)")
                    .map_err(&e)?;
                let mut svc = tx
                    .prepare_cached(
                        "INSERT OR REPLACE INTO services (scan_id, address, port, protocol, access, severity, doc)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )
                    .map_err(&e)?;
                for (addr, service) in batch.drain(..) {
                    if let Some(s) = service {
                        let doc = serde_json::to_string(&s)
                            .map_err(|x| StoreError::Corrupt(x.to_string()))?;
                        svc.execute(params![
                            id,
                            s.address,
                            s.port,
                            s.protocol,
                            s.access.as_str(),
                            s.severity.as_str(),
                            doc
                        ])
                        .map_err(&e)?;
                    }
                    done.execute(params![id, addr.ip().to_string(), addr.port()])
                        .map_err(&e)?;
                }
            }
            tx.commit().map_err(&e)?;
            last = Instant::now();
        }
        if closed || timed.elapsed() >= Duration::from_secs(1) {
            let ms = earlier_ms + started.elapsed().as_millis() as u64;
            conn.execute(
                "UPDATE scans SET stats = json_set(COALESCE(stats, ?2), '$.duration_ms', ?3)
                 WHERE id = ?1 AND status <> 'complete'",
                params![id, default_stats, ms],
            )
            .map_err(&e)?;
            timed = Instant::now();
        }
        if closed {
            return Ok(());
        }
    }
}

/// A stored service document, made safe as it enters the model again (a scan kept by an older
/// version may hold raw controls or names).
fn parse_service(doc: &str) -> Result<Service, StoreError> {
    let mut s: Service =
        serde_json::from_str(doc).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    crate::safe::service(&mut s);
    Ok(s)
}

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Access, Severity};

    fn service(addr: &str, port: u16, access: Access) -> Service {
        Service {
            address: addr.into(),
            port,
            tls: false,
            protocol: "redis".into(),
            product: Some("Redis".into()),
            version: Some("7.0.15".into()),
            access,
            evidence: vec!["INFO answered without AUTH".into()],
            severity: Severity::High,
            hostnames: vec![],
            out_of_scope_peers: vec![],
            auth_attempts: 0,
            containers: vec![],
            inventory_notes: vec![],
            exposure: None,
        }
    }

    #[test]
    fn round_trip_resume_and_history() {
        let dir = tempdir();
        assert!(matches!(
            Store::open(&dir.join("missing/leakscope.db")),
            Err(StoreError::NoDirectory { .. })
        ));
        assert!(
            !dir.join("missing").exists(),
            "no directory is created on the side"
        );
        assert!(matches!(
            Store::open_existing(&dir.join("leakscope.db")),
            Err(StoreError::Missing(_))
        ));
        let path = dir.join("leakscope.db");
        let store = Store::open(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        store
            .begin("a1", "2026-11-28T10:00:00Z", r#"{"targets":["127.0.0.1"]}"#)
            .unwrap();
        let w = Store::writer(&path, "a1", 0).unwrap();
        let s1 = service("127.0.0.1", 6379, Access::Open);
        w.record("127.0.0.1:6379".parse().unwrap(), Some(&s1));
        w.record("127.0.0.1:9200".parse().unwrap(), None);
        w.close().unwrap();
        // Not finished: a new process sees it as incomplete, with its progress.
        drop(store);
        let store = Store::open(&path).unwrap();
        let (report, status) = store.load("latest").unwrap();
        assert_eq!(status, ScanStatus::Incomplete);
        assert_eq!(
            report.finished_at, None,
            "an incomplete scan has not finished"
        );
        assert_eq!(report.stats.ports_probed, 2);
        assert_eq!(report.services, vec![s1.clone()]);
        assert_eq!(store.done("a1").unwrap().len(), 2);
        assert_eq!(store.request("a1").unwrap(), r#"{"targets":["127.0.0.1"]}"#);

        store.reopen("a1").unwrap();
        let stats = Stats {
            ports_probed: 2,
            ..Stats::default()
        };
        store.finish("a1", "2026-11-28T10:01:00Z", &stats).unwrap();
        let (report, status) = store.load("a1").unwrap();
        assert_eq!(status, ScanStatus::Complete);
        assert_eq!(report.finished_at.as_deref(), Some("2026-11-28T10:01:00Z"));
        assert_eq!(report.stats.ports_probed, 2);
        assert_eq!(report.stats.services, 1);

        store.begin("b2", "2026-11-29T10:00:00Z", "{}").unwrap();
        let w = Store::writer(&path, "b2", 0).unwrap();
        w.record(
            "127.0.0.1:6379".parse().unwrap(),
            Some(&service("127.0.0.1", 6379, Access::AuthRequired)),
        );
        drop(w);
        let h = store.history("127.0.0.1:6379".parse().unwrap()).unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].service.as_ref().unwrap().access, Access::Open);
        assert_eq!(h[1].service.as_ref().unwrap().access, Access::AuthRequired);
        assert_eq!(store.resolve("b").unwrap(), "b2");
        store.begin("b3", "2026-11-30T10:00:00Z", "{}").unwrap();
        let e = store.resolve("b").unwrap_err();
        assert!(matches!(e, StoreError::Ambiguous { .. }));
        assert_eq!(
            e.to_string(),
            "ambiguous scan id \"b\": matches b2, b3",
            "issue 14: an ambiguous prefix is not \"no scan\""
        );
        assert!(matches!(
            store.resolve("zz"),
            Err(StoreError::NoSuchScan(_))
        ));
        assert_eq!(store.scans().unwrap().len(), 3);
    }

    fn tempdir() -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let d = std::env::temp_dir().join(format!(
            "leakscope-store-test-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
