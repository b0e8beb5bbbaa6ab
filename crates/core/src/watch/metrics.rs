//! `/metrics` (Prometheus text format) and `/healthz` of a running watch.
//!
//! Served only when the user gives an address (`--metrics ADDR`), with hyper's HTTP/1 server:
//! GET only, a header deadline, a bound on connections at once. `/healthz` answers 200 while
//! every group finished a re-check cycle within three intervals (plus the service deadline),
//! 503 with the stale group otherwise.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::store::OutboxStats;

type Labels = Vec<(&'static str, String)>;

/// Every metric of the watcher.
pub struct Metrics {
    registry: Registry,
    cycles: Family<Labels, Counter>,
    cycle_seconds: Family<Labels, Gauge<f64, AtomicU64>>,
    last_cycle: Family<Labels, Gauge<f64, AtomicU64>>,
    connections: Family<Labels, Counter>,
    endpoints: Family<Labels, Gauge>,
    events: Family<Labels, Counter>,
    delivered: Family<Labels, Counter>,
    failures: Family<Labels, Counter>,
    outbox: Family<Labels, Gauge>,
    reloads: Family<Labels, Counter>,
    health: Mutex<HashMap<String, (Instant, Duration)>>,
}

fn l(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("leakscope_watch");
        let cycles = Family::<Labels, Counter>::default();
        let cycle_seconds = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        let last_cycle = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        let connections = Family::<Labels, Counter>::default();
        let endpoints = Family::<Labels, Gauge>::default();
        let events = Family::<Labels, Counter>::default();
        let delivered = Family::<Labels, Counter>::default();
        let failures = Family::<Labels, Counter>::default();
        let outbox = Family::<Labels, Gauge>::default();
        let reloads = Family::<Labels, Counter>::default();
        let r = &mut registry;
        r.register(
            "cycles",
            "Cycles run, by group and kind (recheck, confirm, sweep, inventory)",
            cycles.clone(),
        );
        r.register(
            "cycle_duration_seconds",
            "Duration of the last cycle, by group and kind",
            cycle_seconds.clone(),
        );
        r.register(
            "last_cycle_timestamp_seconds",
            "Unix time the last cycle of this kind ended",
            last_cycle.clone(),
        );
        r.register(
            "connections",
            "TCP connections opened, by group and kind",
            connections.clone(),
        );
        r.register(
            "endpoints",
            "Known endpoints by group and state (exposed, protected, unreachable)",
            endpoints.clone(),
        );
        r.register("events", "Events raised, by group and kind", events.clone());
        r.register(
            "alerts_delivered",
            "Alert deliveries accepted, by route",
            delivered.clone(),
        );
        r.register(
            "alert_delivery_failures",
            "Alert delivery attempts that failed, by route",
            failures.clone(),
        );
        r.register(
            "outbox_alerts",
            "Alert deliveries in the outbox, by status (pending, delivered, failed)",
            outbox.clone(),
        );
        r.register(
            "config_reloads",
            "Configuration reloads (SIGHUP), by result",
            reloads.clone(),
        );
        Metrics {
            registry,
            cycles,
            cycle_seconds,
            last_cycle,
            connections,
            endpoints,
            events,
            delivered,
            failures,
            outbox,
            reloads,
            health: Mutex::new(HashMap::new()),
        }
    }

    /// A cycle of `kind` of `group` finished.
    pub fn cycle(&self, group: &str, kind: &str, took: Duration, connections: u64) {
        let labels = l(&[("group", group), ("kind", kind)]);
        self.cycles.get_or_create(&labels).inc();
        self.cycle_seconds
            .get_or_create(&labels)
            .set(took.as_secs_f64());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_cycle.get_or_create(&labels).set(now);
        self.connections.get_or_create(&labels).inc_by(connections);
    }

    /// A group finished a re-check; it is healthy while the next one comes within `max_age`.
    pub fn alive(&self, group: &str, max_age: Duration) {
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(group.to_string(), (Instant::now(), max_age));
    }

    /// Forgets the groups (after a reload).
    pub fn reset_groups(&self) {
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.endpoints.clear();
    }

    pub fn endpoints(&self, group: &str, exposed: usize, protected: usize, unreachable: usize) {
        for (state, n) in [
            ("exposed", exposed),
            ("protected", protected),
            ("unreachable", unreachable),
        ] {
            self.endpoints
                .get_or_create(&l(&[("group", group), ("state", state)]))
                .set(n as i64);
        }
    }

    pub fn event(&self, group: &str, kind: &str) {
        self.events
            .get_or_create(&l(&[("group", group), ("kind", kind)]))
            .inc();
    }

    pub fn delivered(&self, route: &str) {
        self.delivered.get_or_create(&l(&[("route", route)])).inc();
    }

    pub fn delivery_failed(&self, route: &str) {
        self.failures.get_or_create(&l(&[("route", route)])).inc();
    }

    pub fn outbox(&self, s: OutboxStats) {
        for (status, n) in [
            ("pending", s.pending),
            ("delivered", s.delivered),
            ("failed", s.failed),
        ] {
            self.outbox
                .get_or_create(&l(&[("status", status)]))
                .set(n as i64);
        }
    }

    pub fn reload(&self, ok: bool) {
        self.reloads
            .get_or_create(&l(&[("result", if ok { "applied" } else { "refused" })]))
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// `None` when healthy, else which group is late.
    pub fn unhealthy(&self) -> Option<String> {
        let h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        if h.is_empty() {
            return Some("no re-check cycle has finished yet".into());
        }
        h.iter()
            .filter(|(_, (at, max))| at.elapsed() > *max)
            .map(|(g, (at, _))| {
                format!(
                    "group {g}: last re-check cycle ended {}s ago",
                    at.elapsed().as_secs()
                )
            })
            .next()
    }
}

/// Binds `addr` (an error here stops the watcher: the user asked for it).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `/metrics` and `/healthz` on `listener` until cancelled.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, cancel: CancellationToken) {
    let slots = Arc::new(tokio::sync::Semaphore::new(32));
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue; // too many at once: the connection is dropped
        };
        let metrics = metrics.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let metrics = metrics.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(&req, &metrics)) }
                });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            }
            drop(permit);
        });
    }
}

fn answer(
    req: &hyper::Request<hyper::body::Incoming>,
    m: &Metrics,
) -> hyper::Response<Full<Bytes>> {
    let reply = |status: u16, ctype: &str, body: String| {
        hyper::Response::builder()
            .status(status)
            .header(hyper::header::CONTENT_TYPE, ctype)
            .body(Full::new(Bytes::from(body)))
            .expect("static response parts")
    };
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return reply(405, "text/plain", "GET only\n".into());
    }
    match req.uri().path() {
        "/metrics" => reply(
            200,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            m.render(),
        ),
        "/healthz" => match m.unhealthy() {
            None => reply(200, "text/plain", "ok\n".into()),
            Some(why) => reply(503, "text/plain", format!("{why}\n")),
        },
        _ => reply(
            404,
            "text/plain",
            "not found: /metrics and /healthz are served\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_as_prometheus_text() {
        let m = Metrics::new();
        m.cycle("db", "recheck", Duration::from_millis(120), 7);
        m.endpoints("db", 1, 2, 0);
        m.event("db", "exposed");
        m.delivered("hook");
        let text = m.render();
        for want in [
            "leakscope_watch_cycles_total{group=\"db\",kind=\"recheck\"} 1",
            "leakscope_watch_connections_total{group=\"db\",kind=\"recheck\"} 7",
            "leakscope_watch_endpoints{group=\"db\",state=\"exposed\"} 1",
            "leakscope_watch_events_total{group=\"db\",kind=\"exposed\"} 1",
            "leakscope_watch_alerts_delivered_total{route=\"hook\"} 1",
            "leakscope_watch_cycle_duration_seconds{group=\"db\",kind=\"recheck\"} 0.12",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
        assert!(m.unhealthy().is_some(), "unhealthy before a first cycle");
        m.alive("db", Duration::from_secs(60));
        assert!(m.unhealthy().is_none());
        m.alive("db", Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
        assert!(m.unhealthy().unwrap().contains("group db"));
    }
}
