//! The registry entry: what a protocol tells the rest of leakscope about itself, and the hooks
//! through which a scan reaches its code.

use futures::future::BoxFuture;

use crate::net::Conn;

use super::context::{Credential, Finding, Outcome, ProbeCtx};
use super::count::{Subjects, SubjectsBudget, SubjectsQuery};
use super::http::Response;
use crate::inventory::{Inventory, InventoryOptions};

/// A probe that gets a connection of its own.
pub type RawFn = for<'a> fn(&'a ProbeCtx, Conn) -> BoxFuture<'a, Outcome>;

/// Whether the first bytes a server sent are this protocol's greeting.
pub type GreetsFn = fn(&[u8]) -> bool;

/// A probe that gets the response to the shared `GET /`.
pub type HttpFn = for<'a> fn(&'a ProbeCtx, &'a Response) -> BoxFuture<'a, Outcome>;

/// How identification reaches a protocol (see [`crate::identify`]): the kind of its first
/// message decides when it is sent, so that a wrong guess costs a round trip or a close, never
/// a read deadline.
pub enum Handler {
    /// The server speaks first (MySQL's greeting). `greets` tells a greeting of this protocol
    /// from the first bytes a server sent; `probe` gets a connection whose greeting is still
    /// unread.
    Greeting {
        greets: fn(&[u8]) -> bool,
        probe: RawFn,
    },
    /// The client speaks first with a text line probe: its first send is at least
    /// [`LINE_PROBE_MIN`] bytes and ends with a line break, so a text server answers it at once
    /// and a binary server reads a whole header of nonsense and closes. Sent before any
    /// binary probe.
    Line(RawFn),
    /// Gets the response to `GET /`, the line probe every HTTP protocol shares, and may send
    /// more requests.
    Http(HttpFn),
    /// The client speaks first in binary frames, which a text server would wait on for a line
    /// break: sent only to a server that closed on every line probe.
    Binary(RawFn),
}

/// The shortest first send of a [`Handler::Line`] probe: MongoDB's message header, the longest
/// fixed header a binary protocol reads before it judges a message.
pub const LINE_PROBE_MIN: usize = 16;

/// One row of the registry.
pub struct Protocol {
    /// Stable id used in the JSON contract.
    pub id: &'static str,
    /// Human name for help and reports.
    pub name: &'static str,
    pub default_ports: &'static [u16],
    pub default_credentials: &'static [Credential],
    /// What the probe asks and how it decides, in one line (used by `--help` and docs).
    pub method: &'static str,
    pub handler: Handler,
    /// Lists and samples what an `open`/`default_credentials` service holds; None until the
    /// protocol has one.
    pub inventory: Option<crate::driver::InventoryFn>,
    /// Counts distinct people per container with the store's own read-only distinct count
    /// (see [`crate::subjects`]); None where the store offers none.
    pub subjects: Option<crate::driver::SubjectsFn>,
    /// Whether given keys exist, for counting people by the ids in key names (see
    /// [`crate::subjects`], method 4); None where the store has no keys or no cheap check.
    pub keys_exist: Option<crate::driver::KeysExistFn>,
}

/// A protocol's inventory: lists, counts and samples what `finding` says is readable.
pub type InventoryFn =
    for<'a> fn(&'a ProbeCtx, &'a Finding, &'a InventoryOptions) -> BoxFuture<'a, Inventory>;

/// What a protocol's distinct counter is asked: the service, what its probe found, the
/// inventory's options, the time each container may take, and the containers.
pub struct Counting<'a> {
    pub ctx: &'a ProbeCtx,
    pub finding: &'a Finding,
    pub opts: &'a InventoryOptions,
    pub budget: SubjectsBudget,
    pub queries: &'a [SubjectsQuery<'a>],
}

impl<'a> Counting<'a> {
    /// When the count of query `i` (in order) must end if it starts now: its share of the
    /// budget, the time left shared among the queries still to count where the service's
    /// budget bounds them ([`SubjectsBudget::shared`]).
    pub fn deadline_for(&self, i: usize) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        match self.budget.until {
            Some(until) => {
                let left =
                    u32::try_from(self.queries.len().saturating_sub(i).max(1)).unwrap_or(u32::MAX);
                now + until.saturating_duration_since(now) / left
            }
            None => now + self.budget.per_container,
        }
    }

    /// Counts the queries in order, one at a time (each is a pass over a container of
    /// somebody's production store), each by its deadline ([`Self::deadline_for`]).
    pub async fn one_at_a_time<F, Fut>(&self, mut count: F) -> Vec<Result<Subjects, String>>
    where
        F: FnMut(&'a SubjectsQuery<'a>, tokio::time::Instant) -> Fut,
        Fut: std::future::Future<Output = Result<Subjects, String>>,
    {
        let mut out = Vec::with_capacity(self.queries.len());
        for (i, q) in self.queries.iter().enumerate() {
            let deadline = self.deadline_for(i);
            out.push(count(q, deadline).await);
        }
        out
    }
}

/// A protocol's distinct counter: one answer per query, in order; `Err` says why not (a note).
pub type SubjectsFn = for<'a> fn(Counting<'a>) -> BoxFuture<'a, Vec<Result<Subjects, String>>>;

/// How many of `keys` exist in the key-pattern container named `container` (`db0:user:*`):
/// a read-only existence check, one round trip where the store allows.
pub type KeysExistFn =
    for<'a> fn(&'a ProbeCtx, &'a str, &'a [String]) -> BoxFuture<'a, Result<u64, String>>;

/// A registry hook from a protocol's async function, so a protocol writes its probe, inventory
/// and counts as plain `async fn`s and none repeats the boxing:
/// `hook!(line: probe::probe)` ([`Handler::Line`]), `hook!(binary: probe::probe)`
/// ([`Handler::Binary`]), `hook!(greeting: wire::greets, probe::probe)` ([`Handler::Greeting`]),
/// `hook!(http: probe::probe)` ([`Handler::Http`]), `hook!(inventory: inventory::inventory)` ([`InventoryFn`]),
/// `hook!(count: count::subjects)` ([`SubjectsFn`]), `hook!(keys_exist: count::keys_exist)`
/// ([`KeysExistFn`]).
macro_rules! hook {
    (@raw $f:path) => {{
        fn hook<'a>(
            ctx: &'a $crate::driver::ProbeCtx,
            conn: $crate::net::Conn,
        ) -> futures::future::BoxFuture<'a, $crate::driver::Outcome> {
            Box::pin($f(ctx, conn))
        }
        hook
    }};
    (line: $f:path) => {
        $crate::driver::Handler::Line($crate::driver::hook!(@raw $f))
    };
    (binary: $f:path) => {
        $crate::driver::Handler::Binary($crate::driver::hook!(@raw $f))
    };
    (greeting: $greets:path, $f:path) => {
        $crate::driver::Handler::Greeting {
            greets: $greets,
            probe: $crate::driver::hook!(@raw $f),
        }
    };
    (http: $f:path) => {{
        fn hook<'a>(
            ctx: &'a $crate::driver::ProbeCtx,
            root: &'a $crate::driver::http::Response,
        ) -> futures::future::BoxFuture<'a, $crate::driver::Outcome> {
            Box::pin($f(ctx, root))
        }
        $crate::driver::Handler::Http(hook)
    }};
    (inventory: $f:path) => {{
        fn hook<'a>(
            ctx: &'a $crate::driver::ProbeCtx,
            finding: &'a $crate::driver::Finding,
            opts: &'a $crate::inventory::InventoryOptions,
        ) -> futures::future::BoxFuture<'a, $crate::inventory::Inventory> {
            Box::pin($f(ctx, finding, opts))
        }
        Some(hook as $crate::driver::InventoryFn)
    }};
    (count: $f:path) => {{
        fn hook(
            c: $crate::driver::Counting<'_>,
        ) -> futures::future::BoxFuture<'_, Vec<Result<$crate::driver::Subjects, String>>> {
            Box::pin($f(c))
        }
        Some(hook as $crate::driver::SubjectsFn)
    }};
    (keys_exist: $f:path) => {{
        fn hook<'a>(
            ctx: &'a $crate::driver::ProbeCtx,
            container: &'a str,
            keys: &'a [String],
        ) -> futures::future::BoxFuture<'a, Result<u64, String>> {
            Box::pin($f(ctx, container, keys))
        }
        Some(hook as $crate::driver::KeysExistFn)
    }};
}
pub(crate) use hook;
