//! The per-endpoint state machine of `watch`: what one observation means.
//!
//! An observation is what a re-check, a sweep or an inventory saw at one endpoint: a service (with
//! its access verdict) or nothing. The confirmed state changes as follows:
//!
//! - to `exposed` on ONE observation readable: a read succeeded without credentials, which is
//!   proof, and every second counts. The change is committed only after the service was
//!   inventoried ([`Effects::inventory`]), so the `exposed` alert says what is exposed.
//! - from `exposed` to `protected`/`unreachable` only after `confirm_closed` observations in a
//!   row (hysteresis: a restart or one lost connection is not a closure). The window is closed
//!   at the first of them.
//! - `flap_changes` open/closed changes within `flap_window` raise one `flapping` event and
//!   silence open/closed alerts until the endpoint has been stable for `flap_window`
//!   (`flapping_stopped`). Exposure windows are kept exactly all the while.
//!
//! Functions here only compute; the runner writes [`Effects`] to the store in one transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use super::config::Tuning;
use super::EventKind;
use crate::model::{Access, Service};
use crate::scan::is_exposed;
use crate::store::{EndpointStatus, WatchEndpoint, WindowOp};

/// Settings of one group that the state machine needs.
#[derive(Debug, Clone)]
pub struct Policy {
    pub tuning: Tuning,
    /// Re-inventory an exposed service after this long (ms).
    pub inventory_interval_ms: i64,
}

/// One event the state machine raised.
#[derive(Debug, Clone, PartialEq)]
pub struct Raised {
    pub kind: EventKind,
    /// The endpoint's event sequence number (part of the idempotency key).
    pub seq: u64,
    /// What changed, in words.
    pub details: Vec<String>,
    /// Access before the change, where there was one.
    pub previous_access: Option<Access>,
}

/// What an observation requires of the runner.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects {
    pub raised: Vec<Raised>,
    pub windows: Vec<WindowOp>,
    /// Inventory the endpoint: to confirm an exposure, or because its inventory is due or the
    /// service changed product or version.
    pub inventory: bool,
}

fn status_of(obs: Option<&Service>) -> EndpointStatus {
    match obs {
        Some(s) if is_exposed(s.access) => EndpointStatus::Exposed,
        Some(_) => EndpointStatus::Protected,
        None => EndpointStatus::Unreachable,
    }
}

fn raise(
    st: &mut WatchEndpoint,
    fx: &mut Effects,
    kind: EventKind,
    details: Vec<String>,
    prev: Option<Access>,
) {
    st.seq += 1;
    fx.raised.push(Raised {
        kind,
        seq: st.seq,
        details,
        previous_access: prev,
    });
}

fn words(s: EndpointStatus) -> &'static str {
    match s {
        EndpointStatus::Exposed => "readable without credentials",
        EndpointStatus::Protected => "protected",
        EndpointStatus::Unreachable => "not answering",
    }
}

/// A confirmed exposed ⇄ not-exposed change.
struct Change {
    to: EndpointStatus,
    /// When the new state began (the first observation of it).
    at_ms: i64,
    kind: EventKind,
    details: Vec<String>,
    prev: Option<Access>,
}

/// Applies a confirmed change, with flapping detection: the change is alerted as `kind`, or
/// as `flapping` when it is one too many within the window, or not at all while flapping.
fn transition(st: &mut WatchEndpoint, fx: &mut Effects, c: Change, now_ms: i64, t: &Tuning) {
    let window = t.flap_window.as_millis() as i64;
    st.transitions.push(now_ms);
    st.transitions.retain(|&x| x > now_ms - window);
    st.state = c.to;
    st.since_ms = c.at_ms;
    st.pending = None;
    st.pending_count = 0;
    st.pending_since_ms = None;
    if st.flapping {
        return;
    }
    if st.transitions.len() >= t.flap_changes as usize {
        st.flapping = true;
        let mut d = vec![format!(
            "{} open/closed changes within {}; now {}",
            st.transitions.len(),
            humantime::format_duration(t.flap_window),
            words(c.to)
        )];
        d.extend(c.details);
        raise(st, fx, EventKind::Flapping, d, c.prev);
    } else {
        raise(st, fx, c.kind, c.details, c.prev);
    }
}

/// A flapping endpoint that has not changed for the whole window is stable again.
fn flapping_check(st: &mut WatchEndpoint, fx: &mut Effects, now_ms: i64, t: &Tuning) {
    let window = t.flap_window.as_millis() as i64;
    if st.flapping && st.transitions.last().is_none_or(|&l| l <= now_ms - window) {
        st.flapping = false;
        st.transitions.retain(|&x| x > now_ms - window);
        let d = vec![format!(
            "stable for {}; now {}",
            humantime::format_duration(t.flap_window),
            words(st.state)
        )];
        raise(st, fx, EventKind::FlappingStopped, d, None);
    }
}

/// A new row for an endpoint seen for the first time, in `state`.
pub fn new_endpoint(addr: SocketAddr, group: &str, obs: &Service, now_ms: i64) -> WatchEndpoint {
    WatchEndpoint {
        addr,
        group: group.to_string(),
        state: status_of(Some(obs)),
        protocol: Some(obs.protocol.clone()),
        access: Some(obs.access),
        severity: Some(obs.severity),
        since_ms: now_ms,
        last_checked_ms: now_ms,
        pending: None,
        pending_count: 0,
        pending_since_ms: None,
        seq: 0,
        transitions: Vec::new(),
        flapping: false,
        service: None,
        inventoried_ms: None,
    }
}

/// An endpoint not known before answered. A readable one needs its inventory first (the
/// runner then calls [`confirm_exposed`]); any other is a `new_service`.
pub fn first_sight(
    addr: SocketAddr,
    group: &str,
    obs: &Service,
    now_ms: i64,
) -> (Option<WatchEndpoint>, Effects) {
    let mut fx = Effects::default();
    if is_exposed(obs.access) {
        fx.inventory = true;
        return (None, fx);
    }
    let mut st = new_endpoint(addr, group, obs, now_ms);
    let d = vec![format!(
        "{} {} answers, access {}",
        obs.protocol,
        obs.product.as_deref().unwrap_or(""),
        obs.access
    )
    .replace("  ", " ")];
    raise(&mut st, &mut fx, EventKind::NewService, d, None);
    (Some(st), fx)
}

/// One re-check (or sweep) observation of a known endpoint.
pub fn observe(
    st: &mut WatchEndpoint,
    obs: Option<&Service>,
    now_ms: i64,
    policy: &Policy,
) -> Effects {
    let t = &policy.tuning;
    let mut fx = Effects::default();
    let seen = status_of(obs);
    let prev_access = st.access;
    st.last_checked_ms = now_ms;
    // A readable observation of a closed endpoint is recorded by `confirm_exposed`, after the
    // inventory; every other one now.
    let awaiting_inventory = seen == EndpointStatus::Exposed && st.state != EndpointStatus::Exposed;
    if let (Some(s), false) = (obs, awaiting_inventory) {
        st.protocol = Some(s.protocol.clone());
        st.access = Some(s.access);
        if st.state != EndpointStatus::Exposed {
            st.severity = Some(s.severity);
        }
    }
    match (st.state, seen) {
        (EndpointStatus::Exposed, EndpointStatus::Exposed) => {
            st.pending = None;
            st.pending_count = 0;
            st.pending_since_ms = None;
            fx.windows.push(WindowOp::SeenOpen {
                addr: st.addr,
                at_ms: now_ms,
            });
            let s = obs.expect("exposed means a service");
            // An inventory that was cut short is tried again within the hour.
            let cut_short = st
                .service
                .as_ref()
                .is_some_and(|s| s.containers.is_empty() && !s.inventory_notes.is_empty());
            let every = if cut_short {
                policy.inventory_interval_ms.min(3_600_000)
            } else {
                policy.inventory_interval_ms
            };
            let due = st.inventoried_ms.is_none_or(|i| now_ms - i >= every);
            let moved = st.service.as_ref().is_some_and(|old| {
                (&old.protocol, &old.product, &old.version) != (&s.protocol, &s.product, &s.version)
            });
            fx.inventory = due || moved;
        }
        (EndpointStatus::Exposed, other) => {
            if st.pending != Some(other) {
                // Protected and unreachable both count towards a closure; keep the first time.
                st.pending_since_ms = st.pending_since_ms.or(Some(now_ms));
                st.pending = Some(other);
            }
            st.pending_count += 1;
            if st.pending_count >= t.confirm_closed {
                let at = st.pending_since_ms.unwrap_or(now_ms);
                fx.windows.push(WindowOp::Close {
                    addr: st.addr,
                    at_ms: at,
                });
                let what = match obs {
                    Some(s) => format!(
                        "access {} → {}",
                        prev_access.map_or("?", |a| a.as_str()),
                        s.access
                    ),
                    None => format!(
                        "no longer answers ({} observations in a row)",
                        st.pending_count
                    ),
                };
                let change = Change {
                    to: other,
                    at_ms: at,
                    kind: EventKind::Closed,
                    details: vec![what],
                    prev: prev_access,
                };
                transition(st, &mut fx, change, now_ms, t);
            }
        }
        (_, EndpointStatus::Exposed) => {
            // Confirmed by the inventory that follows (`confirm_exposed`).
            fx.inventory = true;
        }
        (EndpointStatus::Protected, EndpointStatus::Unreachable) => {
            if st.pending != Some(EndpointStatus::Unreachable) {
                st.pending = Some(EndpointStatus::Unreachable);
                st.pending_since_ms = Some(now_ms);
                st.pending_count = 0;
            }
            st.pending_count += 1;
            if st.pending_count >= t.confirm_closed {
                st.state = EndpointStatus::Unreachable;
                st.since_ms = st.pending_since_ms.unwrap_or(now_ms);
                st.pending = None;
                st.pending_count = 0;
                st.pending_since_ms = None;
            }
        }
        (_, seen) => {
            if st.state != seen {
                st.state = seen;
                st.since_ms = now_ms;
            }
            st.pending = None;
            st.pending_count = 0;
            st.pending_since_ms = None;
        }
    }
    flapping_check(st, &mut fx, now_ms, t);
    fx
}

/// An inventory found `svc` readable (observed at `observed_ms`): the endpoint is `exposed`
/// from then. `st` is None for an endpoint seen for the first time.
pub fn confirm_exposed(
    st: Option<WatchEndpoint>,
    addr: SocketAddr,
    group: &str,
    svc: &Service,
    observed_ms: i64,
    now_ms: i64,
    policy: &Policy,
) -> (WatchEndpoint, Effects) {
    let mut fx = Effects::default();
    let is_new = st.is_none();
    let mut st = st.unwrap_or_else(|| {
        let mut n = new_endpoint(addr, group, svc, observed_ms);
        n.state = EndpointStatus::Protected; // replaced below; a new row starts closed
        n
    });
    let prev_access = if is_new { None } else { st.access };
    let was = st.state;
    st.protocol = Some(svc.protocol.clone());
    st.access = Some(svc.access);
    st.severity = Some(svc.severity);
    st.last_checked_ms = now_ms;
    // The attempt counts even when it was cut short (a store too slow for the budget is not
    // inventoried again at every cycle); only a useful result replaces the last one.
    st.inventoried_ms = Some(now_ms);
    if !svc.containers.is_empty() || svc.inventory_notes.is_empty() || st.service.is_none() {
        st.service = Some(svc.clone());
    }
    if was == EndpointStatus::Exposed {
        // Already confirmed (a duplicate inventory); nothing to raise.
        return (st, fx);
    }
    fx.windows.push(WindowOp::Open {
        addr,
        protocol: svc.protocol.clone(),
        at_ms: observed_ms,
    });
    let detail = if is_new {
        format!("new service, access {}", svc.access)
    } else {
        format!(
            "access {} → {}",
            prev_access.map_or("none", |a| a.as_str()),
            svc.access
        )
    };
    if is_new {
        st.state = EndpointStatus::Exposed;
        st.since_ms = observed_ms;
        raise(&mut st, &mut fx, EventKind::Exposed, vec![detail], None);
    } else {
        let change = Change {
            to: EndpointStatus::Exposed,
            at_ms: observed_ms,
            kind: EventKind::Exposed,
            details: vec![detail],
            prev: prev_access,
        };
        transition(&mut st, &mut fx, change, now_ms, &policy.tuning);
    }
    (st, fx)
}

/// A new inventory of an endpoint that was already exposed: `changed` when it exposes more.
pub fn reinventoried(
    st: &mut WatchEndpoint,
    svc: &Service,
    now_ms: i64,
    policy: &Policy,
) -> Effects {
    let mut fx = Effects::default();
    st.last_checked_ms = now_ms;
    fx.windows.push(WindowOp::SeenOpen {
        addr: st.addr,
        at_ms: now_ms,
    });
    st.inventoried_ms = Some(now_ms);
    let partial = svc.containers.is_empty() && !svc.inventory_notes.is_empty();
    if partial {
        // An inventory cut short says nothing about what disappeared; keep the last good one.
        return fx;
    }
    let details = match &st.service {
        Some(old) => changes(old, svc, policy.tuning.records_factor),
        None => Vec::new(),
    };
    st.severity = Some(svc.severity);
    st.access = Some(svc.access);
    st.service = Some(svc.clone());
    if !details.is_empty() {
        let prev = st.access;
        raise(st, &mut fx, EventKind::Changed, details, prev);
    }
    fx
}

/// What grew between two inventories of an exposed service: new containers, new categories,
/// severity up, a container's records multiplied by at least `factor`. Shrinking is not an
/// alert (the `changed` event is about more exposure).
pub fn changes(old: &Service, new: &Service, factor: f64) -> Vec<String> {
    let mut out = Vec::new();
    let before: BTreeMap<&str, _> = old
        .containers
        .iter()
        .map(|c| (c.name.as_str(), c))
        .collect();
    let added: Vec<&str> = new
        .containers
        .iter()
        .filter(|c| !before.contains_key(c.name.as_str()))
        .map(|c| c.name.as_str())
        .collect();
    if !added.is_empty() {
        let shown: Vec<&str> = added.iter().take(10).copied().collect();
        out.push(format!(
            "{} new container(s): {}{}",
            added.len(),
            shown.join(", "),
            if added.len() > shown.len() {
                ", …"
            } else {
                ""
            }
        ));
    }
    let cats = |s: &Service| -> BTreeSet<String> {
        s.containers
            .iter()
            .flat_map(|c| c.categories.iter().cloned())
            .collect()
    };
    let new_cats: Vec<String> = cats(new).difference(&cats(old)).cloned().collect();
    if !new_cats.is_empty() {
        out.push(format!("new categories: {}", new_cats.join(", ")));
    }
    if new.severity > old.severity {
        out.push(format!("severity {} → {}", old.severity, new.severity));
    }
    for c in &new.containers {
        if let (Some(o), Some(n)) = (
            before.get(c.name.as_str()).and_then(|o| o.records),
            c.records,
        ) {
            if o > 0 && n as f64 >= o as f64 * factor {
                out.push(format!("{}: records {} → {}", c.name, o, n));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Container, Severity};
    use std::time::Duration;

    fn svc(access: Access) -> Service {
        Service {
            address: "127.0.0.1".into(),
            port: 6379,
            tls: false,
            protocol: "redis".into(),
            product: Some("Redis".into()),
            version: Some("7.0.15".into()),
            access,
            evidence: vec!["INFO answered".into()],
            severity: if is_exposed(access) {
                Severity::High
            } else {
                Severity::Low
            },
            hostnames: vec![],
            out_of_scope_peers: vec![],
            auth_attempts: 0,
            containers: vec![],
            inventory_notes: vec![],
            exposure: None,
        }
    }

    fn container(name: &str, records: u64, cats: &[&str]) -> Container {
        Container {
            name: name.into(),
            kind: "keyspace".into(),
            records: Some(records),
            records_estimated: false,
            system: false,
            bytes: None,
            sampled: 10,
            subjects_estimate: None,
            subjects_method: None,
            subjects_interval: None,
            categories: cats.iter().map(|c| c.to_string()).collect(),
            fields: vec![],
        }
    }

    fn policy() -> Policy {
        Policy {
            tuning: Tuning::default(),
            inventory_interval_ms: 24 * 3600 * 1000,
        }
    }

    const ADDR: &str = "127.0.0.1:6379";

    fn kinds(fx: &Effects) -> Vec<EventKind> {
        fx.raised.iter().map(|r| r.kind).collect()
    }

    /// A protected endpoint that the runner tracks, and a helper that plays the runner:
    /// an observation needing inventory is confirmed with the same service.
    fn step(st: &mut WatchEndpoint, obs: Option<Service>, now: i64, p: &Policy) -> Vec<EventKind> {
        let fx = observe(st, obs.as_ref(), now, p);
        let mut out = kinds(&fx);
        if fx.inventory && st.state != EndpointStatus::Exposed {
            let (next, fx2) = confirm_exposed(
                Some(st.clone()),
                st.addr,
                "g",
                obs.as_ref().unwrap(),
                now,
                now,
                p,
            );
            *st = next;
            out.extend(kinds(&fx2));
        }
        out
    }

    fn protected() -> WatchEndpoint {
        let (st, fx) = first_sight(ADDR.parse().unwrap(), "g", &svc(Access::AuthRequired), 0);
        assert_eq!(kinds(&fx), vec![EventKind::NewService]);
        st.unwrap()
    }

    #[test]
    fn one_open_observation_exposes_after_inventory() {
        let p = policy();
        let mut st = protected();
        let fx = observe(&mut st, Some(&svc(Access::Open)), 1000, &p);
        assert!(
            fx.inventory && fx.raised.is_empty(),
            "committed only after inventory"
        );
        assert_eq!(st.state, EndpointStatus::Protected);
        let (st, fx) =
            confirm_exposed(Some(st), st_addr(), "g", &svc(Access::Open), 1000, 1500, &p);
        assert_eq!(st.state, EndpointStatus::Exposed);
        assert_eq!(kinds(&fx), vec![EventKind::Exposed]);
        assert_eq!(fx.raised[0].previous_access, Some(Access::AuthRequired));
        assert_eq!(fx.raised[0].seq, 2);
        assert!(matches!(fx.windows[0], WindowOp::Open { at_ms: 1000, .. }));
    }

    fn st_addr() -> SocketAddr {
        ADDR.parse().unwrap()
    }

    #[test]
    fn one_failed_connect_does_not_close_two_do_and_the_window_closes_at_the_first() {
        let p = policy();
        let mut st = protected();
        assert_eq!(
            step(&mut st, Some(svc(Access::Open)), 1000, &p),
            vec![EventKind::Exposed]
        );
        // One lost connection, then open again: nothing.
        assert!(step(&mut st, None, 2000, &p).is_empty());
        assert_eq!(st.state, EndpointStatus::Exposed);
        assert!(step(&mut st, Some(svc(Access::Open)), 3000, &p).is_empty());
        assert_eq!(st.pending_count, 0);
        // Closed for real: confirmed by the second observation, dated at the first.
        assert!(step(&mut st, None, 4000, &p).is_empty());
        let fx = observe(&mut st, Some(&svc(Access::AuthRequired)), 5000, &p);
        assert_eq!(kinds(&fx), vec![EventKind::Closed]);
        assert_eq!(st.state, EndpointStatus::Protected);
        assert_eq!(st.since_ms, 4000);
        assert!(fx.windows.contains(&WindowOp::Close {
            addr: st_addr(),
            at_ms: 4000
        }));
    }

    #[test]
    fn a_new_open_service_is_exposed_and_new_closed_one_is_new_service() {
        let p = policy();
        let (none, fx) = first_sight(st_addr(), "g", &svc(Access::Open), 0);
        assert!(none.is_none() && fx.inventory);
        let (st, fx) = confirm_exposed(None, st_addr(), "g", &svc(Access::Open), 0, 10, &p);
        assert_eq!(kinds(&fx), vec![EventKind::Exposed]);
        assert_eq!(st.seq, 1);
        assert_eq!(
            fx.raised[0].details,
            vec!["new service, access open".to_string()]
        );
    }

    #[test]
    fn flapping_is_one_alert_not_forty() {
        let p = Policy {
            tuning: Tuning {
                confirm_closed: 1,
                flap_window: Duration::from_secs(600),
                ..Tuning::default()
            },
            ..policy()
        };
        let mut st = protected();
        let mut all = Vec::new();
        let mut now = 0;
        for i in 0..40 {
            now += 10_000;
            let obs = if i % 2 == 0 {
                svc(Access::Open)
            } else {
                svc(Access::AuthRequired)
            };
            all.extend(step(&mut st, Some(obs), now, &p));
        }
        assert_eq!(
            all,
            vec![
                EventKind::Exposed,
                EventKind::Closed,
                EventKind::Exposed,
                EventKind::Flapping
            ],
            "three changes alerted, the fourth says flapping, the other 36 are silent"
        );
        assert!(st.flapping);
        // Stable (closed) for the whole window: one flapping_stopped, then quiet.
        let mut later = Vec::new();
        for _ in 0..70 {
            now += 10_000;
            later.extend(step(&mut st, Some(svc(Access::AuthRequired)), now, &p));
        }
        assert_eq!(later, vec![EventKind::FlappingStopped]);
        assert!(!st.flapping);
        // And a real exposure afterwards alerts again.
        now += 10_000;
        assert_eq!(
            step(&mut st, Some(svc(Access::Open)), now, &p),
            vec![EventKind::Exposed]
        );
    }

    #[test]
    fn protected_then_gone_is_no_alert() {
        let p = policy();
        let mut st = protected();
        assert!(step(&mut st, None, 1, &p).is_empty());
        assert!(step(&mut st, None, 2, &p).is_empty());
        assert_eq!(st.state, EndpointStatus::Unreachable);
        assert!(step(&mut st, Some(svc(Access::AuthRequired)), 3, &p).is_empty());
        assert_eq!(st.state, EndpointStatus::Protected);
    }

    #[test]
    fn inventory_when_due_or_when_the_product_changed() {
        let p = Policy {
            inventory_interval_ms: 1000,
            ..policy()
        };
        let mut st = protected();
        step(&mut st, Some(svc(Access::Open)), 10, &p);
        assert!(!observe(&mut st, Some(&svc(Access::Open)), 500, &p).inventory);
        assert!(observe(&mut st, Some(&svc(Access::Open)), 1010, &p).inventory);
        let mut v8 = svc(Access::Open);
        v8.version = Some("8.0.0".into());
        assert!(observe(&mut st, Some(&v8), 600, &p).inventory);
    }

    #[test]
    fn changed_means_more_exposure() {
        let p = policy();
        let mut old = svc(Access::Open);
        old.containers = vec![container("user:*", 100, &["identity.email"])];
        let mut new = old.clone();
        assert!(changes(&old, &new, 2.0).is_empty());
        new.containers[0].records = Some(150);
        assert!(changes(&old, &new, 2.0).is_empty(), "x1.5 is not x2");
        new.containers[0].records = Some(200);
        new.containers
            .push(container("token:*", 5, &["credential.api_token"]));
        new.severity = Severity::Critical;
        let c = changes(&old, &new, 2.0);
        assert_eq!(
            c,
            vec![
                "1 new container(s): token:*".to_string(),
                "new categories: credential.api_token".into(),
                "severity high → critical".into(),
                "user:*: records 100 → 200".into(),
            ]
        );
        // Through the state machine: one `changed`, and a shrink is quiet.
        let (mut st, _) = confirm_exposed(None, st_addr(), "g", &old, 0, 0, &p);
        assert_eq!(
            kinds(&reinventoried(&mut st, &new, 5, &p)),
            vec![EventKind::Changed]
        );
        assert!(reinventoried(&mut st, &old, 6, &p).raised.is_empty());
        // An inventory cut short keeps the last good one.
        let mut cut = svc(Access::Open);
        cut.inventory_notes = vec!["inventory stopped at its budget".into()];
        assert!(reinventoried(&mut st, &cut, 7, &p).raised.is_empty());
        assert_eq!(st.service.as_ref().unwrap().containers.len(), 1);
    }
}
