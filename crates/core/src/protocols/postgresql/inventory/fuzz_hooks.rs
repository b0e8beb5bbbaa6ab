//! Fuzzing hooks: this module's private parsers of peer bytes, for `crate::fuzzing`.

use crate::net::Check;

pub fn check_result_message(buf: &[u8], cap: usize) -> Check {
    super::check_result_message(buf, cap)
}
