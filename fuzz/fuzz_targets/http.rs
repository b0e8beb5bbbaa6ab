//! HTTP: `check_response` then `parse_response`; and `parse_response` alone on whatever was
//! buffered, as the client does for a body that ends when the peer closes.
#![no_main]

use leakscope_core::fuzzing::http::{check_response, parse_response};
use leakscope_core::fuzzing::Check;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for cap in [8usize, 4 << 20] {
        if let Check::Complete(n) = check_response(data, cap) {
            assert!(n <= data.len(), "Complete({n}) of {} bytes", data.len());
            assert_eq!(check_response(&data[..n], cap), Check::Complete(n));
            let r = parse_response(&data[..n], cap).expect("a checked response parses");
            assert!(
                r.body.len() <= cap,
                "body {} over the cap {cap}",
                r.body.len()
            );
            let _ = r.json();
        }
        if let Ok(r) = parse_response(data, cap) {
            assert!(r.body.len() <= data.len());
        }
    }
});
