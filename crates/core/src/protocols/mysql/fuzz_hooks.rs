//! Fuzzing hooks: this module's private parsers of peer bytes, for `crate::fuzzing`.

use crate::net::Check;

pub fn check_packet(buf: &[u8], cap: usize) -> Check {
    super::wire::check_packet(buf, cap)
}

pub fn is_ok_packet(payload: &[u8]) -> bool {
    super::wire::is_ok_packet(payload)
}

pub fn is_eof_packet(payload: &[u8]) -> bool {
    super::wire::is_eof_packet(payload)
}

pub fn parse_row(payload: &[u8], columns: usize) -> Result<Vec<Option<String>>, String> {
    super::wire::parse_row(payload, columns)
}

/// The COM_QUERY answer reader, fed one packet payload at a time.
pub struct ResultReader(super::wire::ResultReader);

impl ResultReader {
    pub fn new(budget: usize, max_rows: usize) -> Self {
        ResultReader(super::wire::ResultReader::with_rows(budget, max_rows))
    }

    pub fn feed(&mut self, payload: &[u8]) -> Result<Option<super::wire::QueryReply>, String> {
        self.0.feed(payload)
    }
}
