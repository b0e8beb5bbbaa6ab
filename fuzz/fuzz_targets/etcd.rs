//! etcd's JSON gateway: range answers and `/version` from a peer, and the allowlist's check of
//! range bodies (whatever it accepts must be a body `range_body` builds).
#![no_main]

use leakscope_core::fuzzing::etcd::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(r) = parse_range(data) {
        assert!(r.kvs.len() <= data.len(), "more keys than bytes");
    }
    let _ = parse_version(data);
    let _ = is_auth_error(&error_message(data));
    if is_range_body(data) {
        // An accepted body round-trips: it is one `range_body` builds, and stays accepted.
        let v: serde_json::Value = serde_json::from_slice(data).expect("accepted bodies are JSON");
        assert!(v.get("serializable") == Some(&serde_json::Value::Bool(true)));
        assert!(v.get("value").is_none() && v.get("compare").is_none());
    }
    let _ = range_body(&RangeReq::one(data));
});
