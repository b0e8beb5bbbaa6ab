//! The protocol contract: what every protocol in [`crate::protocols`] implements, and the one
//! copy of what they share.
//!
//! - [`Protocol`] is a registry entry: ports, default credentials, how identification reaches
//!   the protocol, and the hooks a scan calls ([`InventoryFn`], [`SubjectsFn`], [`KeysExistFn`]).
//! - [`ProbeCtx`] is a protocol's only way to the network: it dials the endpoint being probed
//!   and nothing else, so scope containment holds by construction.
//! - [`http`] is the bounded HTTP/1.1 client of every HTTP store.
//!
//! The driver sits above `net`, `scope`, `model` and `inventory`'s data types, and below every
//! protocol; nothing here names a protocol.

mod budget;
mod context;
mod count;
mod entry;
mod failure;
pub mod http;
mod session;
pub mod sql;

pub use budget::{margin, Budget, Spent, INVENTORY_SHARE, SERVICE_DEFAULT};
pub use failure::Failure;
pub use session::{Session, Wait};

#[cfg(test)]
pub(crate) use context::test_ctx;
pub use context::{
    preview, Connector, Credential, DirectConnector, Finding, Outcome, ProbeCtx, ProbeOptions, Seen,
};
pub use count::{
    around, exact_or, from_hashed, from_value_sample, outer_column, partial_read, secs, value_at,
    value_modulus, value_sample, CutShort, DistinctCounter, Got, LooseSample, Slot, Subjects,
    SubjectsBudget, SubjectsQuery, ValueProfile, EXACT_ROWS, GRACE, PRECISE_SAMPLE,
};
pub(crate) use entry::hook;
pub use entry::{
    Counting, GreetsFn, Handler, HttpFn, InventoryFn, KeysExistFn, Protocol, RawFn, SubjectsFn,
    LINE_PROBE_MIN,
};

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The contract sits below every protocol: nothing in the driver names a protocol or a
    /// layer above it, and its files import each other by path (`super::budget::Budget`), never
    /// through this module's re-exports, so its own import graph has no loop either.
    #[test]
    fn the_driver_imports_downward_only() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/driver");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            let src = std::fs::read_to_string(&path).unwrap();
            let code = src.split("\n#[cfg(test)]\n").next().unwrap_or_default();
            let code: String = code
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            for above in [
                "crate::protocols",
                "crate::identify",
                "crate::subjects",
                "crate::scan",
                "crate::report",
                "crate::store",
            ] {
                assert!(!code.contains(above), "driver/{file} names {above}");
            }
            if file != "mod.rs" {
                assert!(
                    !code.contains("use super::{"),
                    "driver/{file}: use super::{{…}}"
                );
                for line in code.lines().filter(|l| l.starts_with("use super::")) {
                    assert!(
                        line["use super::".len()..].contains("::"),
                        "driver/{file} imports through the re-exports: {line}"
                    );
                }
            }
        }
    }
}
