//! Memcached text protocol: the line, `stats` and `get` checkers, then their parsers.
#![no_main]

use leakscope_core::fuzzing::memcached::*;
use leakscope_core::fuzzing::Check;
use libfuzzer_sys::fuzz_target;

fn complete(check: Check, data: &[u8]) -> Option<&[u8]> {
    match check {
        Check::Complete(n) => {
            assert!(
                n > 0 && n <= data.len(),
                "Complete({n}) of {} bytes",
                data.len()
            );
            Some(&data[..n])
        }
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some(line) = complete(check_line(data), data) {
        let _ = parse_version(line);
    }
    if let Some(reply) = complete(check_stats(data), data) {
        let text = String::from_utf8_lossy(reply);
        let _ = stat(&text, "curr_items");
    }
    if let Some(line) = complete(check_line_lf(data), data) {
        let _ = parse_metadump_line(String::from_utf8_lossy(line).trim_end());
    }
    for cap in [4usize, 1 << 20] {
        if let Some(reply) = complete(check_values(data, cap), data) {
            assert_eq!(check_values(reply, cap), Check::Complete(reply.len()));
            for (_, value) in parse_values(reply) {
                assert!(
                    value.len() <= cap,
                    "value of {} bytes over the cap {cap}",
                    value.len()
                );
            }
        }
    }
});
