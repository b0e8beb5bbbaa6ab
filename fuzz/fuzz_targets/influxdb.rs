//! InfluxDB 1.x: `/query` results and error bodies, and what the inventory reads from them.
#![no_main]

use leakscope_core::fuzzing::influxdb::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_error(data);
    if let Some(Ok(series)) = parse_result(data) {
        for s in &series {
            for row in &s.values {
                assert_eq!(row.len(), s.columns.len(), "a row of another width");
            }
        }
        let _ = points(&series);
        for record in records(&series, 64) {
            for (_, value) in record {
                assert!(value.len() <= 64 + 4, "value of {} bytes over the cap", value.len());
            }
        }
    }
});
