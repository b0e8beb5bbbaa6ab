//! MySQL COM_QUERY answers: packets split by `check_packet` and fed to the result-set reader
//! (column count, column definitions, EOF, text rows, ERR) under a row cap and a byte budget.
#![no_main]

use leakscope_core::fuzzing::mysql::*;
use leakscope_core::fuzzing::Check;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, data)) = data.split_first() else {
        return;
    };
    let max_rows = usize::from(knobs & 0x0f);
    let budget = 64usize << (knobs >> 4);
    let mut reader = ResultReader::new(budget, max_rows);
    let mut rest = data;
    while let Check::Complete(n) = check_packet(rest, 1 << 20) {
        assert!(
            n > 4 && n <= rest.len(),
            "Complete({n}) of {} bytes",
            rest.len()
        );
        match reader.feed(&rest[4..n]) {
            Ok(None) => {}
            Ok(Some(QueryReply::Rows(set))) => {
                assert!(set.rows.len() <= max_rows);
                assert!(set.rows.iter().all(|r| r.len() == set.columns));
                break;
            }
            Ok(Some(_)) | Err(_) => break,
        }
        rest = &rest[n..];
    }
    for columns in [0usize, 1, 3] {
        let _ = parse_row(data, columns);
    }
});
