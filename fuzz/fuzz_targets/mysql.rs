//! MySQL packets: `check_packet`, then the greeting, authentication-reply, ERR/OK/EOF parsers of
//! each payload in a stream of packets.
#![no_main]

use leakscope_core::fuzzing::mysql::*;
use leakscope_core::fuzzing::Check;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for cap in [8usize, 1 << 20] {
        let mut rest = data;
        while let Check::Complete(n) = check_packet(rest, cap) {
            assert!(
                n > 4 && n <= rest.len(),
                "Complete({n}) of {} bytes",
                rest.len()
            );
            assert!(n - 4 <= cap);
            assert_eq!(check_packet(&rest[..n], cap), Check::Complete(n));
            let payload = &rest[4..n];
            if let Some(Greeting::Handshake(hs)) = parse_greeting(payload) {
                let _ = product_version(&hs.server_version);
            }
            let _ = parse_auth_reply(payload);
            let _ = parse_err(payload);
            let _ = (is_ok_packet(payload), is_eof_packet(payload));
            rest = &rest[n..];
        }
    }
    let _ = product_version(&String::from_utf8_lossy(data));
});
