//! Fuzzing hooks: this module's private parsers of peer bytes, for `crate::fuzzing`.

use crate::net::Check;

pub fn check_line(buf: &[u8]) -> Check {
    super::wire::check_line(buf)
}

pub fn check_stats(buf: &[u8]) -> Check {
    super::wire::check_stats(buf)
}

pub fn check_line_lf(buf: &[u8]) -> Check {
    super::wire::check_line_lf(buf)
}

pub fn check_values(buf: &[u8], cap: usize) -> Check {
    super::wire::check_values(buf, cap)
}

pub fn parse_values(buf: &[u8]) -> Vec<(String, Vec<u8>)> {
    super::wire::parse_values(buf)
}
