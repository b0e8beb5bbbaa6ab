//! MongoDB reply documents (raw BSON from the peer): the probe's and the inventory's parsers,
//! and the conversion of sampled documents to JSON with their schema.
#![no_main]

use bson::raw::RawDocument;
use leakscope_core::fuzzing::mongodb::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = RawDocument::from_bytes(data) else {
        return;
    };
    let _ = parse_hello(doc);
    let _ = parse_build_info(doc);
    let _ = parse_list_databases(doc);
    let _ = parse_list_collections(doc);
    let _ = parse_connection_status(doc);
    if let Some(e) = command_error(doc) {
        let _ = (e.is_unauthorized(), e.is_command_not_found(), e.to_string());
    }
    inventory_parsers(doc, 16);
    let (json, schema) = document_json(doc, 16);
    assert!(json.is_object() || json.is_null());
    for (path, _) in schema {
        assert!(!path.is_empty() || data.len() > 5);
    }
});
