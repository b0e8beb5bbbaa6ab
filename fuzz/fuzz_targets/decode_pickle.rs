//! Python pickle read as opcodes (nothing imported, called or constructed), any bytes.
//! Checked: no panic, the decoded tree within the node and depth caps, and the flattened
//! value within the pair and value caps.
#![no_main]

use leakscope_core::fuzzing::decode;
use libfuzzer_sys::fuzz_target;

include!("common_decode.rs");

fuzz_target!(|data: &[u8]| {
    check_tree(decode::pickle(data), data);
});
