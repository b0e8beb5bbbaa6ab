//! ZooKeeper's client protocol: the frame checker, then the reply header, the handshake's
//! answer, `getChildren2` and `getData` bodies and the `srvr` text.
#![no_main]

use leakscope_core::fuzzing::zookeeper::*;
use leakscope_core::fuzzing::Check;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for cap in [16usize, 1 << 20] {
        if let Check::Complete(n) = check_frame(data, cap) {
            assert!(n >= 4 && n <= data.len() && n <= cap, "Complete({n}) of {}", data.len());
            let frame = &data[..n];
            let _ = parse_connect_response(frame);
            if let Some(reply) = parse_reply(frame) {
                if let Ok(body) = reply.result {
                    if let Some((names, _)) = parse_children(body) {
                        assert!(names.len() * 4 <= body.len(), "more names than bytes");
                    }
                    if let Some((bytes, _)) = parse_data(body) {
                        assert!(bytes.len() <= body.len());
                    }
                }
            }
        }
    }
    let _ = parse_children(data);
    let _ = parse_data(data);
    let _ = parse_srvr_version(data);
});
