//! TLS sniffing of a peer's first bytes (`net::looks_like_tls`).
#![no_main]

use leakscope_core::fuzzing::looks_like_tls;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let expected = matches!(data, [0x15 | 0x16, 0x03, minor, ..] if *minor <= 0x04);
    assert_eq!(looks_like_tls(data), expected);
});
