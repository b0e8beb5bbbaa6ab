//! The scan engine: walks the scope's endpoints with bounded concurrency and a rate limit,
//! identifies what answers and assembles the [`ScanReport`].
//!
//! Limits, from the outside in: `concurrency` endpoints in flight at once; at most `per_host`
//! of them on one address; at most `rate` new connections per second over the whole scan; a
//! deadline per service. One endpoint's failure is recorded and the scan goes on.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::future::BoxFuture;
use futures::StreamExt;
use tokio::sync::Semaphore;

use crate::classify::{Classifier, Fingerprinter};
use crate::identify::{identify, Identified};
use crate::inventory::{Inventory, InventoryOptions};
use crate::model::{Access, Container, ScanReport, Service, Stats, SCAN_SCHEMA};

/// The fingerprint key of this user, or a key for this run only when the user's key cannot be
/// read or created (fingerprints then do not match across runs; nothing else changes).
pub fn fingerprinter() -> (Arc<Fingerprinter>, Option<String>) {
    match Fingerprinter::load_or_create() {
        Ok(f) => (Arc::new(f), None),
        Err(e) => {
            let mut key = [0u8; 32];
            let _ = getrandom::getrandom(&mut key);
            (
                Arc::new(Fingerprinter::with_key(key)),
                Some(format!("fingerprint key unavailable ({e}); fingerprints in this report use a one-time key")),
            )
        }
    }
}
use crate::driver::{Connector, ProbeCtx, ProbeOptions};
use crate::net::{Conn, Limits, NetError};
use crate::rate::severity;
use crate::scope::Scope;

/// Settings of one scan.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Endpoints probed at once.
    pub concurrency: usize,
    /// Endpoints of one address probed at once.
    pub per_host: usize,
    /// New connections per second over the whole scan; `None` = unlimited.
    pub rate: Option<u32>,
    /// Deadline for identifying and judging one service.
    pub service_timeout: Duration,
    pub probe: ProbeOptions,
    /// Inventory and sampling of exposed services; None = identify and judge only.
    pub inventory: Option<InventoryOptions>,
    /// Id for the report (a resumed scan keeps its id); a new one when None.
    pub scan_id: Option<String>,
    /// Endpoints already probed by an interrupted run of this scan: not probed again.
    pub skip: Arc<HashSet<SocketAddr>>,
    /// Key for the fingerprints of sampled identity and credential values.
    pub fingerprinter: Arc<Fingerprinter>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            concurrency: 512,
            per_host: 32,
            rate: None,
            service_timeout: Duration::from_secs(20),
            probe: ProbeOptions::default(),
            inventory: Some(InventoryOptions::default()),
            scan_id: None,
            skip: Arc::new(HashSet::new()),
            // No key file is touched by default options: a key for this run only.
            fingerprinter: Arc::new(Fingerprinter::with_key({
                let mut key = [0u8; 32];
                let _ = getrandom::getrandom(&mut key);
                key
            })),
        }
    }
}

/// Receives progress while a scan runs (a progress bar, a log).
pub trait Observer: Send + Sync {
    /// One endpoint is done; `service` is set when something answered there.
    fn endpoint_done(&self, _addr: SocketAddr, _service: Option<&Service>) {}
}

/// An observer that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}

/// Spaces out connection attempts to at most `rate` per second.
struct RateLimiter {
    interval: Duration,
    next: tokio::sync::Mutex<tokio::time::Instant>,
}

impl RateLimiter {
    fn new(rate: u32) -> RateLimiter {
        RateLimiter {
            interval: Duration::from_secs(1) / rate.max(1),
            next: tokio::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            let now = tokio::time::Instant::now();
            let slot = (*next).max(now);
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// The engine's connector: every connection of the scan passes the rate limiter and is counted.
struct EngineConnector {
    limiter: Option<RateLimiter>,
    connects: AtomicU64,
}

impl Connector for Arc<EngineConnector> {
    fn connect(
        &self,
        addr: SocketAddr,
        limits: Limits,
    ) -> BoxFuture<'static, Result<Conn, NetError>> {
        let me = self.clone();
        Box::pin(async move {
            if let Some(l) = &me.limiter {
                l.wait().await;
            }
            me.connects.fetch_add(1, Ordering::Relaxed);
            Conn::connect(addr, limits).await
        })
    }
}

/// Per-address semaphores, created on first use and dropped when the address is done.
#[derive(Default)]
struct HostSlots {
    map: Mutex<HashMap<IpAddr, (Arc<Semaphore>, usize)>>,
}

impl HostSlots {
    fn enter(&self, ip: IpAddr, permits: usize) -> Arc<Semaphore> {
        let mut map = self.map.lock().expect("host slot lock");
        let entry = map
            .entry(ip)
            .or_insert_with(|| (Arc::new(Semaphore::new(permits)), 0));
        entry.1 += 1;
        entry.0.clone()
    }

    fn leave(&self, ip: IpAddr) {
        let mut map = self.map.lock().expect("host slot lock");
        if let Some(e) = map.get_mut(&ip) {
            e.1 -= 1;
            if e.1 == 0 {
                map.remove(&ip);
            }
        }
    }
}

/// What happened at one endpoint.
enum EndpointResult {
    Closed,
    Failed,
    /// A service, and what its containers say about people (fingerprints only).
    Service(Box<Service>, Vec<crate::impact::Sighting>),
}

/// How long past its time budget an inventory is waited for before it is dropped.
const INVENTORY_GRACE: Duration = Duration::from_secs(1);

/// Runs the protocol's inventory within its time budget.
async fn take_inventory(
    ctx: &ProbeCtx,
    finding: &crate::driver::Finding,
    opts: &InventoryOptions,
) -> Option<Inventory> {
    let inventory = crate::protocols::protocol(finding.protocol)?.inventory?;
    Some(
        // Protocols end their own work a margin before `time_budget` and return what they
        // found; this timeout, which drops all of it, is the guard against one that does not,
        // so it leaves a second more for a loaded machine.
        match tokio::time::timeout(
            opts.time_budget + INVENTORY_GRACE,
            inventory(ctx, finding, opts),
        )
        .await
        {
            Ok(inv) => inv,
            Err(_) => Inventory {
                holdings: Vec::new(),
                notes: vec![format!(
                    "inventory stopped at its {} time budget before it finished",
                    crate::driver::secs(opts.time_budget)
                )],
            },
        },
    )
}

/// Categories whose fingerprints go into the report (people to notify, credentials to revoke).
fn fingerprinted(category: &str) -> bool {
    category.starts_with("identity.") || category.starts_with("credential.")
}

/// Report containers from an inventory, classified: fields with categories, confidence,
/// masked examples and keyed fingerprints. Raw sampled values end here.
fn containers(inv: &Inventory, fp: &Fingerprinter) -> Vec<Container> {
    let classifier = Classifier::builtin();
    inv.holdings
        .iter()
        .map(|h| {
            let c = classifier.classify_holding_detailed(h, fp);
            let mut fields = c.fields;
            for f in &mut fields {
                if let Some(fps) = c
                    .fingerprints
                    .iter()
                    .find(|x| x.path == f.path && fingerprinted(&x.category))
                {
                    f.fingerprints = fps.fingerprints.clone();
                }
            }
            Container {
                name: h.name.clone(),
                kind: h.kind.to_string(),
                records: h.records,
                records_estimated: h.records.is_some() && !h.records_exact,
                system: h.system,
                bytes: h.bytes,
                sampled: h.sample.len() as u64,
                subjects_estimate: None,
                subjects_method: None,
                subjects_interval: None,
                categories: c.categories,
                fields,
            }
        })
        .collect()
}

async fn probe_endpoint(
    addr: SocketAddr,
    scope: Arc<Scope>,
    opts: Arc<ProbeOptions>,
    connector: Arc<EngineConnector>,
    service_timeout: Duration,
    inventory: Option<(Arc<InventoryOptions>, Arc<Fingerprinter>)>,
    people_key: Arc<crate::impact::PeopleKey>,
) -> EndpointResult {
    let host = scope.host_names(addr.ip()).first().cloned();
    let ctx = ProbeCtx::new(
        addr,
        host,
        false,
        opts.clone(),
        scope.clone(),
        Arc::new(connector.clone()),
    );
    let first = match ctx.connect().await {
        Ok(c) => Some(c),
        Err(NetError::Refused) => return EndpointResult::Closed,
        // The handshake completed and the peer reset or closed before this side looked: a
        // port that is open (something accepted), not a network that could not be reached.
        Err(NetError::Reset | NetError::Closed(_)) => None,
        Err(_) => return EndpointResult::Failed,
    };
    let identified = match first {
        None => {
            let mut f = crate::driver::Finding::new("unknown");
            f.evidence
                .push("port open; the peer accepted the connection, then reset it".to_string());
            Identified {
                finding: f,
                tls: false,
            }
        }
        Some(first) => match tokio::time::timeout(service_timeout, identify(&ctx, first)).await {
            Ok(id) => id,
            Err(_) => {
                let mut f = crate::driver::Finding::new("unknown");
                f.evidence.push(format!(
                    "port open, but no protocol was identified within the {}s service deadline",
                    service_timeout.as_secs()
                ));
                Identified {
                    finding: f,
                    tls: false,
                }
            }
        },
    };
    let Identified { finding, tls } = identified;
    let mut inv = match (&inventory, is_exposed(finding.access)) {
        (Some((iopts, fp)), true) => {
            let ictx = if tls {
                ctx.with_tls()
            } else {
                ctx.with_tls_off()
            };
            let start = tokio::time::Instant::now();
            let service_end = start
                + iopts
                    .time_budget
                    .saturating_sub(crate::driver::margin(iopts.time_budget));
            let inventory_opts = InventoryOptions {
                time_budget: iopts.inventory_time(),
                ..(**iopts).clone()
            };
            match take_inventory(&ictx, &finding, &inventory_opts).await {
                Some(mut inv) => {
                    // Key names are data: their variable segments are classified as fields.
                    for h in &mut inv.holdings {
                        crate::inventory::keys::add_key_fields(h);
                    }
                    // Classification is CPU work: off the async workers, so that the other
                    // services' round trips (and their budgets) do not wait behind it.
                    let fp = fp.clone();
                    let (inv, mut found) = match tokio::task::spawn_blocking(move || {
                        let found = containers(&inv, &fp);
                        (inv, found)
                    })
                    .await
                    {
                        Ok(done) => done,
                        Err(e) => std::panic::resume_unwind(e.into_panic()),
                    };
                    let mut notes = inv.notes.clone();
                    notes.extend(
                        crate::subjects::estimate(
                            &ictx,
                            &finding,
                            iopts,
                            crate::driver::SubjectsBudget::for_options(iopts, service_end),
                            &inv.holdings,
                            &mut found,
                        )
                        .await,
                    );
                    let sightings = people_read(
                        &ictx,
                        &finding,
                        iopts,
                        service_end,
                        (&people_key, addr),
                        &inv,
                        &found,
                    )
                    .await;
                    Some((found, notes, sightings))
                }
                None => None,
            }
        }
        _ => None,
    };
    let sightings = inv
        .as_mut()
        .map(|i| std::mem::take(&mut i.2))
        .unwrap_or_default();
    let mut service = Service {
        address: addr.ip().to_string(),
        port: addr.port(),
        tls,
        protocol: finding.protocol.to_string(),
        product: finding.product,
        version: finding.version,
        access: finding.access,
        evidence: finding.evidence,
        severity: crate::model::Severity::Info,
        hostnames: scope.host_names(addr.ip()).to_vec(),
        out_of_scope_peers: finding.out_of_scope_peers,
        auth_attempts: ctx.auth_attempts(),
        containers: inv.as_ref().map(|i| i.0.clone()).unwrap_or_default(),
        inventory_notes: inv.map(|i| i.1).unwrap_or_default(),
        exposure: None,
    };
    service.severity = severity(&service);
    // Everything the server chose enters the model here, once: controls escaped, sensitive
    // names masked (after the inventory and the people counts, which need the real names).
    crate::safe::service(&mut service);
    EndpointResult::Service(Box::new(service), sightings)
}

/// Below this much of the service budget left, the people read is not started: the
/// classification sample stands in (with the wider interval that gives).
const PEOPLE_READ_MIN: Duration = Duration::from_millis(500);

/// The people read: the containers that name a person, read whole where the people-read
/// budget allows ([`crate::impact::PEOPLE_READ`] records, the inventory's time budget), and
/// fingerprinted. The classification sample is used where it already holds every record, or
/// where the people read did not get further.
async fn people_read(
    ctx: &ProbeCtx,
    finding: &crate::driver::Finding,
    opts: &InventoryOptions,
    service_end: tokio::time::Instant,
    (key, addr): (&crate::impact::PeopleKey, SocketAddr),
    inv: &Inventory,
    found: &[Container],
) -> Vec<crate::impact::Sighting> {
    let system = addr.to_string();
    let wanted = |(h, c): &(&crate::inventory::Holding, &Container)| {
        !crate::impact::id_fields(c).is_empty() && !crate::impact::read_whole(h)
    };
    // The people read lives inside the service's budget (what the inventory and the people
    // counts left of it): a scan's time is the budget a person set, whatever it reads.
    let left = service_end.saturating_duration_since(tokio::time::Instant::now());
    let more = if opts.sample > 0
        && left >= PEOPLE_READ_MIN
        && inv.holdings.iter().zip(found).any(|p| wanted(&p))
    {
        let big = InventoryOptions {
            sample: crate::impact::PEOPLE_READ.max(opts.sample),
            byte_budget: opts.byte_budget.saturating_mul(4),
            time_budget: left,
            ..opts.clone()
        };
        take_inventory(ctx, finding, &big).await.map(|mut i| {
            for h in &mut i.holdings {
                crate::inventory::keys::add_key_fields(h);
            }
            i.holdings
        })
    } else {
        None
    };
    inv.holdings
        .iter()
        .zip(found)
        .filter_map(|(h, c)| {
            let read = more
                .iter()
                .flatten()
                .find(|m| m.name == h.name && m.sample.len() > h.sample.len())
                .unwrap_or(h);
            crate::impact::sighting(key, &system, c, read)
        })
        .collect()
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A fresh scan id: time plus process id, 16 hex digits.
pub fn new_scan_id() -> String {
    scan_id_at(SystemTime::now())
}

fn scan_id_at(t: SystemTime) -> String {
    let nanos = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    // Time plus PID is unique enough for one user's scans and needs no RNG.
    format!(
        "{:012x}{:04x}",
        (nanos / 1000) as u64 & 0xffff_ffff_ffff,
        std::process::id() & 0xffff
    )
}

/// Runs a scan of `scope` and returns the report.
pub async fn run(scope: Arc<Scope>, opts: ScanOptions, observer: Arc<dyn Observer>) -> ScanReport {
    let skip = opts.skip.clone();
    run_over(scope.clone(), None, opts, observer, move |s| {
        Box::new(s.endpoints().filter(move |a| !skip.contains(a)))
    })
    .await
}

/// Runs a scan of exactly `endpoints` (those of them inside `scope`) and returns the report:
/// how `watch` re-checks the services it knows without walking the whole scope. Host names,
/// exclusions and limits are the scope's, as in [`run`].
pub async fn run_endpoints(
    scope: Arc<Scope>,
    endpoints: Vec<SocketAddr>,
    opts: ScanOptions,
    observer: Arc<dyn Observer>,
) -> ScanReport {
    let inside: Vec<SocketAddr> = endpoints
        .into_iter()
        .filter(|a| scope.contains_socket(*a) && !opts.skip.contains(a))
        .collect();
    let addresses = inside.iter().map(|a| a.ip()).collect::<HashSet<_>>().len() as u64;
    run_over(scope, Some(addresses), opts, observer, move |_| {
        Box::new(inside.into_iter())
    })
    .await
}

type EndpointIter<'a> = Box<dyn Iterator<Item = SocketAddr> + Send + 'a>;

async fn run_over(
    scope: Arc<Scope>,
    addresses: Option<u64>,
    opts: ScanOptions,
    observer: Arc<dyn Observer>,
    endpoints: impl for<'a> FnOnce(&'a Scope) -> EndpointIter<'a>,
) -> ScanReport {
    // Compiling the classifier's rules and loading its validators' tables takes long enough
    // (130 ms in a debug build) to stall a runtime thread; done inside the first endpoint's
    // task (the first name or evidence to mask) it delays every probe beside it, so a
    // server-first peer's greeting window passes before the probes are sent.
    let _ = tokio::task::spawn_blocking(crate::classify::names::warm_up).await;
    let started = SystemTime::now();
    let t0 = Instant::now();
    let probe_opts = Arc::new(opts.probe.clone());
    let connector = Arc::new(EngineConnector {
        limiter: opts.rate.filter(|&r| r > 0).map(RateLimiter::new),
        connects: AtomicU64::new(0),
    });
    let slots = Arc::new(HostSlots::default());
    let global = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let counters = Arc::new((AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)));
    let per_host = opts.per_host.max(1);
    let people_key = Arc::new(crate::impact::PeopleKey::new());
    let inventory_opts = opts
        .inventory
        .clone()
        .map(|o| (Arc::new(o), opts.fingerprinter.clone()));

    let walk = scope.clone();
    let stream = futures::stream::iter(endpoints(&walk))
        .map(|addr| {
            let (scope, probe_opts, connector, slots, global, counters, observer) = (
                scope.clone(),
                probe_opts.clone(),
                connector.clone(),
                slots.clone(),
                global.clone(),
                counters.clone(),
                observer.clone(),
            );
            let timeout = opts.service_timeout;
            let inventory = inventory_opts.clone();
            let people_key = people_key.clone();
            async move {
                let host = slots.enter(addr.ip(), per_host);
                let result = {
                    let _h = host.acquire().await.expect("host semaphore open");
                    let _g = global.acquire().await.expect("global semaphore open");
                    probe_endpoint(
                        addr, scope, probe_opts, connector, timeout, inventory, people_key,
                    )
                    .await
                };
                slots.leave(addr.ip());
                counters.0.fetch_add(1, Ordering::Relaxed);
                match &result {
                    EndpointResult::Service(s, _) => {
                        counters.1.fetch_add(1, Ordering::Relaxed);
                        observer.endpoint_done(addr, Some(s));
                    }
                    EndpointResult::Failed => {
                        counters.2.fetch_add(1, Ordering::Relaxed);
                        observer.endpoint_done(addr, None);
                    }
                    EndpointResult::Closed => observer.endpoint_done(addr, None),
                }
                result
            }
        })
        // The global semaphore is the real limit; buffering a little more keeps it saturated
        // while finished futures are collected.
        .buffer_unordered(opts.concurrency.max(1) * 2);
    let (mut services, sightings): (Vec<Service>, Vec<Vec<crate::impact::Sighting>>) = stream
        .filter_map(|r| async move {
            match r {
                EndpointResult::Service(s, people) => Some((*s, people)),
                _ => None,
            }
        })
        .unzip()
        .await;
    let impact = crate::impact::estimate(&sightings.concat());
    services.sort_by(|a, b| {
        let ka = (a.address.parse::<IpAddr>().ok(), a.port);
        let kb = (b.address.parse::<IpAddr>().ok(), b.port);
        ka.cmp(&kb)
    });
    let finished = SystemTime::now();
    let stats = Stats {
        addresses: addresses
            .unwrap_or_else(|| u64::try_from(scope.address_count()).unwrap_or(u64::MAX)),
        ports_probed: counters.0.load(Ordering::Relaxed),
        services: services.len() as u64,
        duration_ms: t0.elapsed().as_millis() as u64,
        open_ports: counters.1.load(Ordering::Relaxed),
        connect_errors: counters.2.load(Ordering::Relaxed),
        auth_attempts: services.iter().map(|s| s.auth_attempts as u64).sum(),
        connections: connector.connects.load(Ordering::Relaxed),
    };
    ScanReport {
        schema: SCAN_SCHEMA.to_string(),
        scan_id: opts.scan_id.clone().unwrap_or_else(|| scan_id_at(started)),
        started_at: rfc3339(started),
        finished_at: Some(rfc3339(finished)),
        impact,
        stats,
        services,
    }
}

/// True when a verdict means data can be read by whoever reaches the port.
pub fn is_exposed(access: Access) -> bool {
    access.is_exposed()
}
