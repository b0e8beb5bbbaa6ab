//! Fuzzing hooks: this module's parsers of peer bytes, for `crate::fuzzing`.

pub fn parse_range(buf: &[u8]) -> Option<super::wire::Range> {
    super::wire::parse_range(buf)
}

pub fn parse_version(buf: &[u8]) -> Option<super::wire::Version> {
    super::wire::parse_version(buf)
}

pub fn is_range_body(buf: &[u8]) -> bool {
    super::wire::is_range_body(buf)
}
