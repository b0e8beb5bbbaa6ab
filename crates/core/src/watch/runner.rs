//! The scheduler of `watch`: one task per group, one outbox task, reloads and shutdown.
//!
//! A group runs three cadences side by side:
//! - **re-check** every `interval`: the endpoints already known are scanned again without
//!   inventory ([`scan::run_endpoints`]): identification and the access verdict, a few round
//!   trips each. An endpoint seen in a new state is re-checked again after `confirm_after` to
//!   confirm it (hysteresis), not a whole interval later.
//! - **sweep** every `sweep_interval`: the whole scope, within `sweep_rate` connections per
//!   second, in the background; only services not known yet are taken from it (re-checks are
//!   fresher for the others).
//! - **inventory** only when needed: an endpoint that turned readable (its `exposed` alert waits
//!   for it, so it says what is exposed), one whose product changed, or one not inventoried for
//!   `inventory_interval`. Inventories run as one stored scan per batch.
//!
//! Everything one step decides goes to the store in one transaction ([`Store::watch_commit`]).
//! On shutdown (or a reload) the current step finishes; a step that has not finished within
//! [`GRACE`] is abandoned, which loses nothing: it is done again after the restart.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::alert::{idempotency_key, Alert, AlertInput};
use super::config::{ConfigError, GroupConfig, RouteConfig, WatchConfig};
use super::deliver::Outbox;
use super::metrics::Metrics;
use super::state::{self, Effects, Policy, Raised};
use super::{EventKind, WatchError};
use crate::classify::Fingerprinter;
use crate::driver::ProbeOptions;
use crate::inventory::InventoryOptions;
use crate::model::{Exposure, ScanReport, Service, Severity};
use crate::net::Limits;
use crate::scan::{self, Observer, Quiet, ScanOptions};
use crate::scope::Scope;
use crate::store::{
    rfc3339_ms, unix_ms, EndpointStatus, NewEvent, Store, WatchCommit, WatchEndpoint,
};

/// How long a step may take to finish after shutdown or reload was asked for.
pub const GRACE: Duration = Duration::from_secs(8);

/// A checked configuration with its scopes built (host names resolved).
#[derive(Clone)]
pub struct Settings {
    pub config: WatchConfig,
    pub scopes: Vec<Arc<Scope>>,
    pub loopback_only: bool,
}

impl Settings {
    /// Checks `config` and builds every group's scope.
    pub async fn build(config: WatchConfig, loopback_only: bool) -> Result<Settings, ConfigError> {
        config.check(loopback_only)?;
        let mut scopes = Vec::new();
        for g in &config.groups {
            scopes.push(Arc::new(g.scope(loopback_only).await?));
        }
        Ok(Settings {
            config,
            scopes,
            loopback_only,
        })
    }
}

/// How the caller steers a running watch.
pub struct Control {
    /// Cancelled on SIGTERM/SIGINT: finish the current step and return.
    pub shutdown: CancellationToken,
    /// A new configuration (SIGHUP), or why the new one was refused (logged, old one kept).
    pub reload: mpsc::Receiver<Result<Settings, String>>,
    /// Run one cycle and return (`--once`).
    pub once: bool,
}

/// What a watch saw, for `--once`'s exit code.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunOutcome {
    /// Endpoints exposed at the end, with their severity.
    pub exposed: Vec<(SocketAddr, Severity)>,
    /// Alerts still undelivered at the end.
    pub undelivered: u64,
}

struct Shared {
    store: Arc<Mutex<Store>>,
    metrics: Arc<Metrics>,
    notify: Arc<Notify>,
    watcher_id: String,
    fingerprinter: Arc<Fingerprinter>,
}

impl Shared {
    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn now_ms() -> i64 {
    unix_ms(SystemTime::now())
}

fn service_addr(s: &Service) -> Option<SocketAddr> {
    s.address
        .parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, s.port))
}

fn endpoint_text(a: SocketAddr) -> String {
    a.to_string()
}

/// Runs the watch until `control.shutdown` (or one cycle with `control.once`).
pub async fn run(
    store_path: &Path,
    settings: Settings,
    mut control: Control,
    fingerprinter: Arc<Fingerprinter>,
) -> Result<RunOutcome, WatchError> {
    let store = Store::open(store_path)?;
    let watcher_id = match store.meta("watcher_id")? {
        Some(id) => id,
        None => {
            let mut b = [0u8; 8];
            let _ = getrandom::getrandom(&mut b);
            let id: String = b.iter().map(|x| format!("{x:02x}")).collect();
            store.set_meta("watcher_id", &id)?;
            id
        }
    };
    let shared = Arc::new(Shared {
        store: Arc::new(Mutex::new(store)),
        metrics: Arc::new(Metrics::new()),
        notify: Arc::new(Notify::new()),
        watcher_id,
        fingerprinter,
    });
    let mut settings = settings;
    let server_cancel = control.shutdown.child_token();
    if let Some(addr) = settings.config.metrics {
        let listener = super::metrics::bind(addr)
            .await
            .map_err(|source| WatchError::Metrics { addr, source })?;
        tracing::info!(%addr, "serving /metrics and /healthz");
        tokio::spawn(super::metrics::serve(
            listener,
            shared.metrics.clone(),
            server_cancel.clone(),
        ));
    }
    if control.once {
        let out = tokio::select! {
            out = once(&shared, &settings) => out,
            _ = async {
                control.shutdown.cancelled().await;
                tokio::time::sleep(GRACE).await;
            } => {
                tracing::warn!("the cycle did not finish within {GRACE:?} of the stop signal; abandoned");
                outcome(&shared)
            }
        };
        server_cancel.cancel();
        return out;
    }
    let mut reload_open = true;
    loop {
        let epoch = control.shutdown.child_token();
        let mut tasks = JoinSet::new();
        let runners = runners(&shared, &settings)?;
        tracing::info!(
            groups = runners.len(),
            store = %store_path.display(),
            "watch started"
        );
        for r in runners {
            tasks.spawn(r.run(epoch.clone()));
        }
        tasks.spawn(outbox(&shared, &settings).run(epoch.clone()));
        let next: Option<Settings> = loop {
            tokio::select! {
                _ = control.shutdown.cancelled() => break None,
                r = control.reload.recv(), if reload_open => match r {
                    None => reload_open = false,
                    Some(Err(why)) => {
                        shared.metrics.reload(false);
                        tracing::error!(error = %why, "configuration reload refused; the running configuration is kept");
                    }
                    Some(Ok(s)) => {
                        shared.metrics.reload(true);
                        break Some(s);
                    }
                },
            }
        };
        epoch.cancel();
        let finished =
            tokio::time::timeout(GRACE, async { while tasks.join_next().await.is_some() {} }).await;
        if finished.is_err() {
            tracing::warn!(
                "a step did not finish within {GRACE:?}; abandoned (it is redone after restart)"
            );
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        match next {
            None => break,
            Some(s) => {
                if s.config.metrics != settings.config.metrics {
                    tracing::warn!("the metrics address changed; it takes effect after a restart");
                }
                tracing::info!("configuration reloaded");
                shared.metrics.reset_groups();
                settings = s;
            }
        }
    }
    server_cancel.cancel();
    let outcome = outcome(&shared)?;
    tracing::info!("watch stopped");
    Ok(outcome)
}

fn outcome(shared: &Shared) -> Result<RunOutcome, WatchError> {
    let store = shared.store();
    let exposed = store
        .watch_endpoints()?
        .into_iter()
        .filter(|w| w.state == EndpointStatus::Exposed)
        .map(|w| (w.addr, w.severity.unwrap_or(Severity::High)))
        .collect();
    Ok(RunOutcome {
        exposed,
        undelivered: store.outbox_stats()?.pending,
    })
}

fn outbox(shared: &Arc<Shared>, settings: &Settings) -> Outbox {
    Outbox {
        store: shared.store.clone(),
        routes: settings.config.routes.clone(),
        tuning: settings.config.tuning.clone(),
        loopback_only: settings.loopback_only,
        notify: shared.notify.clone(),
        metrics: shared.metrics.clone(),
    }
}

/// One runner per group, each with the known endpoints it owns: an endpoint belongs to the
/// first group (in config order) whose scope contains it.
fn runners(shared: &Arc<Shared>, settings: &Settings) -> Result<Vec<GroupRunner>, WatchError> {
    let rows = shared.store().watch_endpoints()?;
    let mut owned: Vec<HashMap<SocketAddr, WatchEndpoint>> =
        vec![HashMap::new(); settings.config.groups.len()];
    for mut w in rows {
        if let Some(i) = settings
            .scopes
            .iter()
            .position(|s| s.contains_socket(w.addr))
        {
            w.group = settings.config.groups[i].name.clone();
            owned[i].insert(w.addr, w);
        }
    }
    let mut out = Vec::new();
    for (i, (g, known)) in settings.config.groups.iter().zip(owned).enumerate() {
        let last_sweep = shared
            .store()
            .meta(&format!("sweep:{}", g.name))?
            .and_then(|v| v.parse::<i64>().ok());
        let routes = settings
            .config
            .routes_of(g)
            .into_iter()
            .filter_map(|r| {
                settings
                    .config
                    .routes
                    .get(r)
                    .map(|c| (r.to_string(), c.clone()))
            })
            .collect();
        out.push(GroupRunner {
            cfg: g.clone(),
            scope: settings.scopes[i].clone(),
            earlier: settings.scopes[..i].to_vec(),
            routes,
            policy: Policy {
                tuning: settings.config.tuning.clone(),
                inventory_interval_ms: g.inventory_interval.as_millis() as i64,
            },
            known,
            to_inventory: BTreeMap::new(),
            inventory_running: HashSet::new(),
            shared: shared.clone(),
            revocation_dir: settings.config.revocation_list.clone(),
            baseline: last_sweep.is_none(),
            last_sweep_ms: last_sweep,
        });
    }
    Ok(out)
}

/// One cycle of every group, then one delivery attempt of every due alert (`--once`).
async fn once(shared: &Arc<Shared>, settings: &Settings) -> Result<RunOutcome, WatchError> {
    let mut all = runners(shared, settings)?;
    futures::future::join_all(all.iter_mut().map(|r| r.once())).await;
    outbox(shared, settings).pass().await;
    outcome(shared)
}

/// Sends what a sweep finds to its group's runner as it is found.
struct SweepObserver {
    tx: mpsc::UnboundedSender<Service>,
}

impl Observer for SweepObserver {
    fn endpoint_done(&self, _addr: SocketAddr, service: Option<&Service>) {
        if let Some(s) = service {
            let _ = self.tx.send(s.clone());
        }
    }
}

/// A finished inventory batch.
struct InventoryDone {
    batch: Vec<(SocketAddr, i64)>,
    report: ScanReport,
}

enum SweepEvent {
    Found(Service),
    Done(Result<ScanReport, tokio::task::JoinError>),
}

struct Sweep {
    handle: tokio::task::JoinHandle<ScanReport>,
    rx: mpsc::UnboundedReceiver<Service>,
    started: Instant,
    started_ms: i64,
}

struct GroupRunner {
    cfg: GroupConfig,
    scope: Arc<Scope>,
    /// Scopes of the groups before this one: what they contain is theirs.
    earlier: Vec<Arc<Scope>>,
    routes: Vec<(String, RouteConfig)>,
    policy: Policy,
    known: HashMap<SocketAddr, WatchEndpoint>,
    /// Readable or due endpoints waiting for an inventory (when they were observed).
    to_inventory: BTreeMap<SocketAddr, i64>,
    inventory_running: HashSet<SocketAddr>,
    shared: Arc<Shared>,
    revocation_dir: Option<PathBuf>,
    /// No sweep of this group has finished yet: `new_service` events are a baseline, recorded
    /// but not alerted (readable services are alerted all the same).
    baseline: bool,
    last_sweep_ms: Option<i64>,
}

impl GroupRunner {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn scan_opts(&self, inventory: bool, rate: Option<u32>) -> ScanOptions {
        let g = &self.cfg;
        ScanOptions {
            concurrency: g.concurrency as usize,
            per_host: g.per_host as usize,
            rate: rate.filter(|&r| r > 0),
            service_timeout: g.service_timeout,
            probe: ProbeOptions {
                limits: Limits {
                    connect_timeout: g.timeout,
                    read_timeout: g.timeout,
                    write_timeout: g.timeout,
                },
                try_defaults: g.try_defaults,
                banner_wait: g.timeout.min(Duration::from_millis(1500)),
                ..ProbeOptions::default()
            },
            inventory: (inventory && !g.no_inventory).then(|| InventoryOptions {
                sample: g.sample as usize,
                time_budget: g.inventory_timeout,
                subjects_budget: Some((g.inventory_timeout / 2).min(Duration::from_secs(10))),
                ..InventoryOptions::default()
            }),
            scan_id: None,
            skip: Arc::new(HashSet::new()),
            fingerprinter: self.shared.fingerprinter.clone(),
        }
    }

    /// Endpoints a re-check probes: known, not waiting for an inventory, not forgotten.
    fn recheck_targets(&self, only_pending: bool, now: i64) -> Vec<SocketAddr> {
        let forget = self.policy.tuning.forget_after.as_millis() as i64;
        let mut v: Vec<SocketAddr> = self
            .known
            .values()
            .filter(|w| !self.to_inventory.contains_key(&w.addr))
            .filter(|w| !self.inventory_running.contains(&w.addr))
            .filter(|w| {
                if only_pending {
                    w.pending.is_some()
                } else {
                    w.state != EndpointStatus::Unreachable || now - w.since_ms < forget
                }
            })
            .map(|w| w.addr)
            .collect();
        v.sort();
        v
    }

    fn dormant(&self, w: &WatchEndpoint, now: i64) -> bool {
        w.state == EndpointStatus::Unreachable
            && now - w.since_ms >= self.policy.tuning.forget_after.as_millis() as i64
    }

    async fn recheck(&mut self, only_pending: bool) {
        let started = now_ms();
        let targets = self.recheck_targets(only_pending, started);
        let t0 = std::time::Instant::now();
        let report = scan::run_endpoints(
            self.scope.clone(),
            targets.clone(),
            self.scan_opts(false, None),
            Arc::new(Quiet),
        )
        .await;
        let mut by: HashMap<SocketAddr, Service> = report
            .services
            .into_iter()
            .filter_map(|s| service_addr(&s).map(|a| (a, s)))
            .collect();
        let obs: Vec<(SocketAddr, Option<Service>)> =
            targets.iter().map(|a| (*a, by.remove(a))).collect();
        self.apply(obs, now_ms());
        let kind = if only_pending { "confirm" } else { "recheck" };
        self.shared
            .metrics
            .cycle(self.name(), kind, t0.elapsed(), report.stats.connections);
        tracing::debug!(
            group = self.name(),
            kind,
            endpoints = targets.len(),
            connections = report.stats.connections,
            ms = t0.elapsed().as_millis() as u64,
            "cycle"
        );
        if !only_pending {
            let max_age =
                self.cfg.interval * 3 + self.cfg.service_timeout + Duration::from_secs(30);
            self.shared.metrics.alive(self.name(), max_age);
        }
    }

    /// Applies observations (re-check, sweep or inventory results that did not confirm an
    /// exposure) and commits what they raised.
    fn apply(&mut self, obs: Vec<(SocketAddr, Option<Service>)>, now: i64) {
        let mut commit = WatchCommit::default();
        let mut extra = Vec::new();
        for (addr, o) in obs {
            if let Some(st) = self.known.get_mut(&addr) {
                let exposed_before = st.service.clone();
                let fx = state::observe(st, o.as_ref(), now, &self.policy);
                let st = st.clone();
                self.effects(
                    &mut commit,
                    &st,
                    fx,
                    o.as_ref(),
                    exposed_before.as_ref(),
                    None,
                    now,
                    &mut extra,
                );
                commit.endpoints.push(st);
            } else if let Some(svc) = o {
                if self.earlier.iter().any(|s| s.contains_socket(addr)) {
                    continue;
                }
                let (st, fx) = state::first_sight(addr, self.name(), &svc, now);
                if let Some(st) = st {
                    self.effects(
                        &mut commit,
                        &st,
                        fx,
                        Some(&svc),
                        None,
                        None,
                        now,
                        &mut extra,
                    );
                    self.known.insert(addr, st.clone());
                    commit.endpoints.push(st);
                } else if fx.inventory {
                    self.to_inventory.entry(addr).or_insert(now);
                }
            }
        }
        self.commit(commit, extra, now);
    }

    /// Turns effects into window changes, inventory requests and events (with their alerts).
    #[allow(clippy::too_many_arguments)]
    fn effects(
        &mut self,
        commit: &mut WatchCommit,
        st: &WatchEndpoint,
        fx: Effects,
        observed: Option<&Service>,
        exposed_before: Option<&Service>,
        scan_id: Option<&str>,
        now: i64,
        revoke: &mut Vec<(String, Service)>,
    ) {
        if fx.inventory {
            self.to_inventory.entry(st.addr).or_insert(now);
        }
        for r in &fx.raised {
            let inventory = match r.kind {
                EventKind::Closed => exposed_before.or(st.service.as_ref()),
                _ => st.service.as_ref(),
            };
            let exposure = self.exposure_for(st, r, &fx, now);
            let ev = self.event(st, r, observed, inventory, exposure, scan_id, now);
            if r.kind == EventKind::Exposed {
                if let Some(s) =
                    inventory.filter(|s| !crate::report::revocation::kinds(s).is_empty())
                {
                    revoke.push((ev.key.clone(), s.clone()));
                }
            }
            commit.events.push(ev);
        }
        commit.windows.extend(fx.windows);
    }

    /// The exposure window as the alert should state it.
    fn exposure_for(
        &self,
        st: &WatchEndpoint,
        r: &Raised,
        fx: &Effects,
        now: i64,
    ) -> Option<Exposure> {
        use crate::store::WindowOp;
        let opened = fx.windows.iter().find_map(|w| match w {
            WindowOp::Open { at_ms, .. } => Some(*at_ms),
            _ => None,
        });
        if let Some(at) = opened {
            let at_s = rfc3339_ms(at);
            return Some(Exposure {
                first_seen_open: at_s.clone(),
                last_seen_open: at_s,
                closed_at: None,
                open_for_seconds: 0,
            });
        }
        let stored = self
            .shared
            .store()
            .windows(st.addr)
            .ok()
            .and_then(|w| w.into_iter().rev().find(|w| w.closed_at.is_none()))?;
        let closed = fx.windows.iter().find_map(|w| match w {
            WindowOp::Close { at_ms, .. } => Some(*at_ms),
            _ => None,
        });
        let mut w = stored;
        match closed {
            Some(at) if r.kind == EventKind::Closed || r.kind == EventKind::Flapping => {
                w.closed_at = Some(rfc3339_ms(at).max(w.last_seen_open.clone()));
            }
            _ => w.last_seen_open = rfc3339_ms(now).max(w.last_seen_open.clone()),
        }
        Some(w.exposure())
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &self,
        st: &WatchEndpoint,
        r: &Raised,
        observed: Option<&Service>,
        inventory: Option<&Service>,
        exposure: Option<Exposure>,
        scan_id: Option<&str>,
        now: i64,
    ) -> NewEvent {
        let endpoint = endpoint_text(st.addr);
        let key = idempotency_key(&self.shared.watcher_id, &endpoint, r.seq, r.kind);
        let alert = Alert::build(AlertInput {
            key: key.clone(),
            kind: r.kind,
            at: rfc3339_ms(now),
            group: self.name(),
            endpoint,
            observed,
            inventory,
            previous_access: r.previous_access,
            details: r.details.clone(),
            exposure,
            scan_id: scan_id.map(str::to_string),
        });
        let baseline = self.baseline && r.kind == EventKind::NewService;
        let routes = self
            .routes
            .iter()
            .filter(|(_, c)| c.wants(r.kind, alert.severity))
            .map(|(n, _)| n.clone())
            .collect();
        NewEvent {
            at_ms: now,
            addr: st.addr,
            group: self.name().to_string(),
            kind: r.kind.as_str().to_string(),
            key,
            alert: serde_json::to_string(&alert).unwrap_or_default(),
            baseline,
            routes,
        }
    }

    fn commit(&mut self, commit: WatchCommit, revoke: Vec<(String, Service)>, now: i64) {
        if commit.is_empty() {
            return;
        }
        let fresh = match self.shared.store().watch_commit(&commit, now) {
            Ok(f) => f,
            Err(e) => {
                // The in-memory state ran ahead of the store; the next cycle writes it again,
                // and events are raised again with the same keys.
                tracing::error!(group = self.name(), error = %e, "cannot write the watch state");
                return;
            }
        };
        for ev in commit.events.iter().filter(|e| fresh.contains(&e.key)) {
            self.shared.metrics.event(self.name(), &ev.kind);
            let summary = serde_json::from_str::<serde_json::Value>(&ev.alert)
                .ok()
                .and_then(|v| v["summary"].as_str().map(str::to_string))
                .unwrap_or_default();
            tracing::info!(group = self.name(), endpoint = %ev.addr, kind = %ev.kind, key = %ev.key,
                baseline = ev.baseline, routes = ev.routes.len(), "{summary}");
        }
        for (key, svc) in revoke.iter().filter(|(k, _)| fresh.contains(k)) {
            self.write_revocation(key, svc, now);
        }
        if commit
            .events
            .iter()
            .any(|e| !e.baseline && !e.routes.is_empty())
        {
            self.shared.notify.notify_one();
        }
        self.refresh_gauges();
    }

    fn write_revocation(&self, key: &str, svc: &Service, now: i64) {
        let Some(dir) = &self.revocation_dir else {
            return;
        };
        let (csv, n) = crate::report::revocation::csv([svc]);
        let stamp = rfc3339_ms(now).replace(':', "");
        let name = format!(
            "{stamp}-{}-{}-{}.csv",
            svc.address.replace(':', "_"),
            svc.port,
            &key[..8.min(key.len())]
        );
        let path = dir.join(name);
        let written = std::fs::create_dir_all(dir).and_then(|_| {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            f.write_all(csv.as_bytes())
        });
        match written {
            Ok(()) => {
                tracing::info!(path = %path.display(), fingerprints = n, "revocation list written")
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot write the revocation list")
            }
        }
    }

    fn refresh_gauges(&self) {
        let (mut e, mut p, mut u) = (0, 0, 0);
        for w in self.known.values() {
            match w.state {
                EndpointStatus::Exposed => e += 1,
                EndpointStatus::Protected => p += 1,
                EndpointStatus::Unreachable => u += 1,
            }
        }
        self.shared.metrics.endpoints(self.name(), e, p, u);
    }

    fn start_inventory(&mut self, set: &mut JoinSet<InventoryDone>) {
        if !self.inventory_running.is_empty() || self.to_inventory.is_empty() {
            return;
        }
        let batch: Vec<(SocketAddr, i64)> =
            std::mem::take(&mut self.to_inventory).into_iter().collect();
        self.inventory_running = batch.iter().map(|(a, _)| *a).collect();
        let scope = self.scope.clone();
        let opts = self.scan_opts(true, None);
        let quick = self.scan_opts(false, None);
        // The people counts have their own per-container budget; the whole inventory is bounded
        // too, so an `exposed` alert never waits for a slow store longer than this.
        let deadline = self.cfg.inventory_timeout * 2 + self.cfg.service_timeout;
        let addrs: Vec<SocketAddr> = batch.iter().map(|(a, _)| *a).collect();
        tracing::debug!(
            group = self.name(),
            endpoints = addrs.len(),
            "inventory started"
        );
        set.spawn(async move {
            let mut opts = opts;
            opts.scan_id = Some(scan::new_scan_id());
            let run = scan::run_endpoints(scope.clone(), addrs.clone(), opts, Arc::new(Quiet));
            let report = match tokio::time::timeout(deadline, run).await {
                Ok(r) => r,
                Err(_) => {
                    // Identification alone, to confirm what is readable now; the containers
                    // and people come with the next inventory.
                    let mut r = scan::run_endpoints(scope, addrs, quick, Arc::new(Quiet)).await;
                    for s in &mut r.services {
                        s.inventory_notes.push(format!(
                            "inventory did not finish within {}",
                            humantime::format_duration(deadline)
                        ));
                    }
                    r
                }
            };
            InventoryDone { batch, report }
        });
    }

    fn inventory_done(&mut self, done: InventoryDone) {
        let now = now_ms();
        self.inventory_running.clear();
        let InventoryDone { batch, report } = done;
        self.shared.metrics.cycle(
            self.name(),
            "inventory",
            Duration::from_millis(report.stats.duration_ms),
            report.stats.connections,
        );
        let inventoried = !self.cfg.no_inventory && !report.services.is_empty();
        let scan_id = if inventoried {
            let request = serde_json::json!({
                "watch": self.name(),
                "targets": batch.iter().map(|(a, _)| a.to_string()).collect::<Vec<_>>(),
            });
            match self
                .shared
                .store()
                .record_scan(&report, &request.to_string())
            {
                Ok(()) => Some(report.scan_id.clone()),
                Err(e) => {
                    tracing::error!(error = %e, "cannot store the inventory scan");
                    None
                }
            }
        } else {
            None
        };
        let mut by: HashMap<SocketAddr, Service> = report
            .services
            .into_iter()
            .filter_map(|s| service_addr(&s).map(|a| (a, s)))
            .collect();
        let mut commit = WatchCommit::default();
        let mut revoke = Vec::new();
        let mut rest = Vec::new();
        for (addr, observed_ms) in batch {
            let svc = by.remove(&addr);
            match svc {
                Some(s) if scan::is_exposed(s.access) => {
                    let prior = self.known.remove(&addr);
                    if prior
                        .as_ref()
                        .is_some_and(|p| p.state == EndpointStatus::Exposed)
                    {
                        let mut st = prior.expect("checked");
                        let fx = state::reinventoried(&mut st, &s, now, &self.policy);
                        self.effects(
                            &mut commit,
                            &st,
                            fx,
                            Some(&s),
                            None,
                            scan_id.as_deref(),
                            now,
                            &mut revoke,
                        );
                        commit.endpoints.push(st.clone());
                        self.known.insert(addr, st);
                    } else {
                        if prior.is_none() && self.earlier.iter().any(|x| x.contains_socket(addr)) {
                            continue;
                        }
                        let (st, fx) = state::confirm_exposed(
                            prior,
                            addr,
                            self.name(),
                            &s,
                            observed_ms,
                            now,
                            &self.policy,
                        );
                        self.effects(
                            &mut commit,
                            &st,
                            fx,
                            Some(&s),
                            None,
                            scan_id.as_deref(),
                            now,
                            &mut revoke,
                        );
                        commit.endpoints.push(st.clone());
                        self.known.insert(addr, st);
                    }
                }
                other => rest.push((addr, other)),
            }
        }
        self.commit(commit, revoke, now);
        if !rest.is_empty() {
            // Not readable after all (closed in between): an ordinary observation.
            self.apply(rest, now);
        }
    }

    fn start_sweep(&self) -> Sweep {
        let (tx, rx) = mpsc::unbounded_channel();
        let scope = self.scope.clone();
        let opts = self.scan_opts(false, Some(self.cfg.sweep_rate));
        tracing::info!(group = self.name(), endpoints = %scope.endpoint_count(), "sweep started");
        let handle =
            tokio::spawn(
                async move { scan::run(scope, opts, Arc::new(SweepObserver { tx })).await },
            );
        Sweep {
            handle,
            rx,
            started: Instant::now(),
            started_ms: now_ms(),
        }
    }

    /// Takes what a sweep found: services not known yet (known ones are re-checked anyway).
    fn sweep_found(&mut self, found: Vec<Service>) {
        let now = now_ms();
        let obs: Vec<(SocketAddr, Option<Service>)> = found
            .into_iter()
            .filter_map(|s| service_addr(&s).map(|a| (a, s)))
            .filter(|(a, _)| {
                !self.to_inventory.contains_key(a)
                    && !self.inventory_running.contains(a)
                    && self.known.get(a).is_none_or(|w| self.dormant(w, now))
            })
            .map(|(a, s)| (a, Some(s)))
            .collect();
        if !obs.is_empty() {
            self.apply(obs, now);
        }
    }

    fn sweep_finished(&mut self, started_ms: i64, took: Duration, report: Option<ScanReport>) {
        let connections = report.as_ref().map_or(0, |r| r.stats.connections);
        self.shared
            .metrics
            .cycle(self.name(), "sweep", took, connections);
        if let Err(e) = self
            .shared
            .store()
            .set_meta(&format!("sweep:{}", self.name()), &started_ms.to_string())
        {
            tracing::error!(error = %e, "cannot record the sweep");
        }
        self.last_sweep_ms = Some(started_ms);
        self.baseline = false;
        tracing::info!(
            group = self.name(),
            ms = took.as_millis() as u64,
            connections,
            known = self.known.len(),
            "sweep finished"
        );
    }

    fn sweep_due(&self) -> bool {
        self.last_sweep_ms
            .is_none_or(|l| now_ms() - l >= self.cfg.sweep_interval.as_millis() as i64)
    }

    fn next_sweep(&self) -> Instant {
        match self.last_sweep_ms {
            None => Instant::now(),
            Some(ms) => {
                let due = ms + self.cfg.sweep_interval.as_millis() as i64;
                Instant::now() + Duration::from_millis((due - now_ms()).max(0) as u64)
            }
        }
    }

    fn next_confirm(&self) -> Option<Instant> {
        self.known
            .values()
            .any(|w| w.pending.is_some())
            .then(|| Instant::now() + self.policy.tuning.confirm_after.min(self.cfg.interval))
    }

    /// One cycle: a sweep when due (or nothing is known yet), else a re-check; then the
    /// inventories that asked for.
    async fn once(&mut self) {
        let now = now_ms();
        if self.known.is_empty() || self.sweep_due() {
            tracing::info!(group = self.name(), endpoints = %self.scope.endpoint_count(), "sweep started");
            let t0 = std::time::Instant::now();
            let report = scan::run(
                self.scope.clone(),
                self.scan_opts(false, Some(self.cfg.sweep_rate)),
                Arc::new(Quiet),
            )
            .await;
            let mut by: HashMap<SocketAddr, Service> = report
                .services
                .iter()
                .filter_map(|s| service_addr(s).map(|a| (a, s.clone())))
                .collect();
            // Every known endpoint of the scope was probed by the sweep: what is missing did
            // not answer.
            let mut obs: Vec<(SocketAddr, Option<Service>)> = self
                .recheck_targets(false, now)
                .into_iter()
                .map(|a| (a, by.remove(&a)))
                .collect();
            obs.extend(by.into_iter().map(|(a, s)| (a, Some(s))));
            self.apply(obs, now_ms());
            self.sweep_finished(now, t0.elapsed(), Some(report));
        } else {
            self.recheck(false).await;
        }
        while !self.to_inventory.is_empty() {
            let mut set = JoinSet::new();
            self.start_inventory(&mut set);
            match set.join_next().await {
                Some(Ok(done)) => self.inventory_done(done),
                _ => {
                    self.inventory_running.clear();
                    break;
                }
            }
        }
    }

    async fn run(mut self, cancel: CancellationToken) {
        let mut next_recheck = Instant::now();
        let mut next_confirm = self.next_confirm();
        let mut sweep: Option<Sweep> = None;
        let mut inventories: JoinSet<InventoryDone> = JoinSet::new();
        self.refresh_gauges();
        loop {
            self.start_inventory(&mut inventories);
            if next_confirm.is_none() {
                next_confirm = self.next_confirm();
            }
            if sweep.is_none() && self.sweep_due() {
                sweep = Some(self.start_sweep());
            }
            let mut wake = next_recheck;
            if let Some(c) = next_confirm {
                wake = wake.min(c);
            }
            if sweep.is_none() {
                wake = wake.min(self.next_sweep());
            }
            let sweep_event = async {
                match sweep.as_mut() {
                    Some(s) => tokio::select! {
                        Some(found) = s.rx.recv() => SweepEvent::Found(found),
                        r = &mut s.handle => SweepEvent::Done(r),
                    },
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                Some(done) = inventories.join_next(), if !inventories.is_empty() => match done {
                    Ok(d) => self.inventory_done(d),
                    Err(e) => {
                        tracing::error!(group = self.name(), error = %e, "inventory task failed");
                        self.inventory_running.clear();
                    }
                },
                ev = sweep_event => match ev {
                    SweepEvent::Found(first) => {
                        let mut found = vec![first];
                        if let Some(s) = sweep.as_mut() {
                            while let Ok(more) = s.rx.try_recv() {
                                found.push(more);
                            }
                        }
                        self.sweep_found(found);
                    }
                    SweepEvent::Done(r) => {
                        let s = sweep.take().expect("a sweep was running");
                        let mut rx = s.rx;
                        let mut found = Vec::new();
                        while let Ok(more) = rx.try_recv() {
                            found.push(more);
                        }
                        self.sweep_found(found);
                        match r {
                            Ok(report) => self.sweep_finished(s.started_ms, s.started.elapsed(), Some(report)),
                            Err(e) => tracing::error!(group = self.name(), error = %e, "sweep task failed"),
                        }
                    }
                },
                _ = tokio::time::sleep_until(wake) => {
                    let now = Instant::now();
                    if now >= next_recheck {
                        self.recheck(false).await;
                        next_recheck += self.cfg.interval;
                        if next_recheck < Instant::now() {
                            next_recheck = Instant::now();
                        }
                    } else if next_confirm.is_some_and(|c| now >= c) {
                        self.recheck(true).await;
                    }
                    next_confirm = self.next_confirm();
                }
            }
        }
        if let Some(s) = sweep {
            s.handle.abort();
        }
        inventories.abort_all();
    }
}
