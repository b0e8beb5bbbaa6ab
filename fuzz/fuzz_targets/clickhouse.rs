//! ClickHouse: native-protocol packets (`check_packet` then `parse_packet`, fed as a stream),
//! and the HTTP interface's JSONCompact results and exception texts.
#![no_main]

use leakscope_core::fuzzing::clickhouse::*;
use leakscope_core::fuzzing::Check;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    for cap in [16usize, 1 << 20] {
        while let Check::Complete(n) = check_packet(rest, cap) {
            assert!(n > 0 && n <= rest.len(), "Complete({n}) of {} bytes", rest.len());
            assert!(n <= cap, "Complete({n}) over the cap {cap}");
            assert_eq!(check_packet(&rest[..n], cap), Check::Complete(n));
            let (_, m) = parse_packet(&rest[..n]).expect("a complete packet parses");
            assert_eq!(m, n);
            rest = &rest[n..];
        }
        rest = data;
    }
    let _ = parse_json_compact(data);
    let _ = parse_error_text(data);
});
