//! RESP: `resp::check` then `resp::parse`, and the Redis text parsers of what a reply carries.
#![no_main]

use leakscope_core::fuzzing::resp::{auth_error, check, parse, parse_info, parse_keyspace};
use leakscope_core::fuzzing::resp::{RespLimits, Value};
use leakscope_core::fuzzing::Check;
use libfuzzer_sys::fuzz_target;

fn texts(v: &Value) {
    if let Some(t) = v.text() {
        let _ = parse_info(&t);
        let _ = parse_keyspace(&t);
    }
    match v {
        Value::Error(m) => {
            let _ = auth_error(m);
        }
        Value::Array(Some(items)) => items.iter().for_each(texts),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    // Tiny limits reach the bounds; the scanner's own are the defaults.
    let limits = [
        RespLimits {
            max_bulk: 16,
            max_items: 4,
        },
        RespLimits::default(),
    ];
    for lim in limits {
        if let Check::Complete(n) = check(data, lim) {
            assert!(
                n > 0 && n <= data.len(),
                "Complete({n}) of {} bytes",
                data.len()
            );
            // The frame alone is the same frame.
            assert_eq!(check(&data[..n], lim), Check::Complete(n));
            texts(&parse(&data[..n]));
        }
    }
    let text = String::from_utf8_lossy(data);
    let _ = parse_info(&text);
    let _ = parse_keyspace(&text);
});
