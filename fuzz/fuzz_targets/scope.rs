//! Targets, port lists and scope files: no panic, one-line errors, and what parses prints back
//! to itself.
#![no_main]

use std::path::Path;

use leakscope_core::fuzzing::scope::{PortList, ScopeFile, TargetSpec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match TargetSpec::parse(s) {
        Ok(t) => {
            let again = TargetSpec::parse(&t.to_string());
            assert_eq!(again.as_ref().ok(), Some(&t), "{s:?} printed as {t}");
        }
        Err(e) => assert!(!e.to_string().contains(['\n', '\r']), "{e}"),
    }
    match PortList::parse(s) {
        Ok(p) => {
            assert!(!p.is_empty());
            let again = PortList::parse(&p.to_string());
            assert_eq!(again.as_ref().ok(), Some(&p), "{s:?} printed as {p}");
        }
        Err(e) => assert!(!e.to_string().contains(['\n', '\r']), "{e}"),
    }
    if let Err(e) = ScopeFile::from_toml(s, Path::new("scope.toml")) {
        assert!(!e.to_string().contains(['\n', '\r']), "{e}");
    }
});
