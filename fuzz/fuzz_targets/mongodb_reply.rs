//! MongoDB wire protocol: `check_reply` then `parse_reply` (OP_MSG and OP_REPLY), then every
//! parser of the reply document. The request id is taken from the input's responseTo so the
//! fuzzer can get past it.
#![no_main]

use leakscope_core::fuzzing::mongodb::*;
use leakscope_core::fuzzing::Check;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let request_id = data
        .get(8..12)
        .map_or(0, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    for cap in [64usize, 1 << 20] {
        let Check::Complete(n) = check_reply(data, cap, request_id) else {
            continue;
        };
        assert!(
            n <= data.len() && n <= cap,
            "Complete({n}) of {} bytes",
            data.len()
        );
        assert_eq!(check_reply(&data[..n], cap, request_id), Check::Complete(n));
        for wire in [Wire::Msg, Wire::Legacy] {
            let Ok(doc) = parse_reply(&data[..n], request_id, wire) else {
                continue;
            };
            let _ = parse_hello(&doc);
            let _ = parse_build_info(&doc);
            let _ = parse_list_databases(&doc);
            let _ = parse_list_collections(&doc);
            let _ = parse_connection_status(&doc);
            if let Some(e) = command_error(&doc) {
                let _ = (e.is_unauthorized(), e.is_command_not_found(), e.to_string());
            }
            inventory_parsers(&doc, 64);
        }
    }
});
