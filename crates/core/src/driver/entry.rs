//! The registry entry: what a protocol tells the rest of leakscope about itself, and the hooks
//! through which a scan reaches its code.

use futures::future::BoxFuture;

use crate::net::Conn;

use super::context::{Credential, Finding, Outcome, ProbeCtx};
use super::count::{Subjects, SubjectsBudget, SubjectsQuery};
use super::http::Response;
use crate::inventory::{Inventory, InventoryOptions};

/// How a protocol is reached: raw bytes on a fresh connection, or an answer to `GET /`.
pub enum Handler {
    /// Gets a fresh, unused connection; a server-first handler reads the greeting itself.
    Raw(for<'a> fn(&'a ProbeCtx, Conn) -> BoxFuture<'a, Outcome>),
    /// Gets the response to `GET /` (shared by every HTTP protocol) and may send more requests.
    Http(for<'a> fn(&'a ProbeCtx, &'a Response) -> BoxFuture<'a, Outcome>),
}

/// One row of the registry.
pub struct Protocol {
    /// Stable id used in the JSON contract.
    pub id: &'static str,
    /// Human name for help and reports.
    pub name: &'static str,
    pub default_ports: &'static [u16],
    /// The server sends a greeting before the client says anything (MySQL).
    pub server_speaks_first: bool,
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

/// A protocol's distinct counter: one answer per query, in order; `Err` says why not (a note).
pub type SubjectsFn = for<'a> fn(Counting<'a>) -> BoxFuture<'a, Vec<Result<Subjects, String>>>;

/// How many of `keys` exist in the key-pattern container named `container` (`db0:user:*`):
/// a read-only existence check, one round trip where the store allows.
pub type KeysExistFn =
    for<'a> fn(&'a ProbeCtx, &'a str, &'a [String]) -> BoxFuture<'a, Result<u64, String>>;

/// A registry hook from a protocol's async function, so a protocol writes its probe, inventory
/// and counts as plain `async fn`s and none repeats the boxing:
/// `hook!(raw: probe::probe)` ([`Handler::Raw`]), `hook!(http: probe::probe)`
/// ([`Handler::Http`]), `hook!(inventory: inventory::inventory)` ([`InventoryFn`]),
/// `hook!(count: count::subjects)` ([`SubjectsFn`]), `hook!(keys_exist: count::keys_exist)`
/// ([`KeysExistFn`]).
macro_rules! hook {
    (raw: $f:path) => {{
        fn hook<'a>(
            ctx: &'a $crate::driver::ProbeCtx,
            conn: $crate::net::Conn,
        ) -> futures::future::BoxFuture<'a, $crate::driver::Outcome> {
            Box::pin($f(ctx, conn))
        }
        $crate::driver::Handler::Raw(hook)
    }};
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
