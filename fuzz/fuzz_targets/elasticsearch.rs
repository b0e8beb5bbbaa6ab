//! Elasticsearch/OpenSearch bodies: the root document, the security refusal, `_cat` and
//! `_nodes` replies, and the inventory's index list, settings, mapping, count and sample. The
//! input is tried as a whole HTTP response (as the fixtures are) and as a bare body.
#![no_main]

use leakscope_core::fuzzing::elasticsearch::*;
use leakscope_core::fuzzing::http::parse_response;
use libfuzzer_sys::fuzz_target;

fn body(b: &[u8]) {
    let _ = parse_root_doc(b);
    let _ = parse_cat_indices(b);
    let _ = parse_cat_count(b);
    let _ = parse_cluster_health(b);
    let _ = parse_nodes_http(b);
    inventory_parsers(b, "customers");
}

fuzz_target!(|data: &[u8]| {
    if let Ok(resp) = parse_response(data, 1 << 20) {
        let _ = parse_refusal(&resp);
        body(&resp.body);
    }
    body(data);
    let _ = normalise_publish_address(&String::from_utf8_lossy(data));
});
