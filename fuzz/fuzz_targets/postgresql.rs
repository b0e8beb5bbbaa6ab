//! PostgreSQL backend messages: `check_message` then `to_msg`, fed as a stream to every parser
//! (recognition of the first answer, authentication requests, errors, the post-login phase, the
//! probe's query answer and the inventory's), plus the inventory's oversized-DataRow checker.
#![no_main]

use leakscope_core::fuzzing::postgresql::*;
use leakscope_core::fuzzing::Check;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let every_type: Vec<u8> = (0..=255).collect();
    let cap = 1 << 16;
    let mut session = Startup::default();
    let mut startup_done = false;
    let mut rows = Rows::default();
    let mut rows_done = false;
    let mut answer = Answer::default();
    let mut answer_done = false;
    let mut rest = data;
    while let Check::Complete(n) = check_message(rest, cap, &every_type) {
        assert!(
            n >= 5 && n <= rest.len(),
            "Complete({n}) of {} bytes",
            rest.len()
        );
        assert_eq!(
            check_message(&rest[..n], cap, &every_type),
            Check::Complete(n)
        );
        let msg = to_msg(&rest[..n]).expect("a checked message splits");
        assert_eq!(msg.body.len(), n - 5);
        let _ = recognise(&msg);
        let _ = parse_auth(&msg.body);
        if let Some(e) = parse_error(&msg.body) {
            let _ = e.to_string();
        }
        let _ = parse_server_first(&msg.body, "rOprNGfwEbeRWgbNEkqO");
        let _ = verify_server_final(&msg.body, &[0u8; 32]);
        if !startup_done {
            startup_done = !matches!(startup_step(&mut session, &msg), Ok(StartupStep::More));
            let _ = (session.version(), session.product());
        }
        if !rows_done {
            rows_done = rows.step(&msg).unwrap_or(true);
        }
        if !answer_done {
            answer_done = answer.step(&msg, 8).unwrap_or(true);
            if answer_done {
                let _ = parse_relations("db", &answer, false);
                let _ = parse_columns(&answer);
                let _ = parse_databases(&answer);
            }
        }
        if !answer.columns.is_empty() {
            let _ = parse_data_row(&msg.body, answer.columns.len());
        }
        let _ = parse_row_description(&msg.body);
        rest = &rest[n..];
    }
    for cap in [16usize, 1 << 20] {
        if let Check::Complete(n) = check_result_message(data, cap) {
            assert!(
                n >= 5 && n <= data.len(),
                "Complete({n}) of {} bytes",
                data.len()
            );
        }
    }
});
