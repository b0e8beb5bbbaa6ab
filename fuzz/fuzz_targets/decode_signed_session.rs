//! Signed session strings and base64 payloads (payload.ts.sig, payload:ts:sig, --digest, zlib with a leading dot): any text through decode_text.
//! Checked: no panic, the decoded tree within the node and depth caps, and the flattened
//! value within the pair and value caps.
#![no_main]

use leakscope_core::fuzzing::decode;
use libfuzzer_sys::fuzz_target;

include!("common_decode.rs");

fuzz_target!(|data: &[u8]| {
    check_tree(std::str::from_utf8(data).ok().and_then(decode::decode_text).map(|x| x.1), data);
});
