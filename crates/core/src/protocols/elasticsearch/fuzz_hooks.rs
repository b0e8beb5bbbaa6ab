//! Fuzzing hooks: the parsers of the private inventory and subjects modules, for `crate::fuzzing`.

use super::count;
use super::inventory;

/// Runs every inventory parser of response bodies on `body`; returns how many answered.
pub fn inventory_parsers(body: &[u8], index: &str) -> usize {
    let mut answered = 0;
    answered += usize::from(inventory::parse_cat_indices_all(body).is_some());
    answered += usize::from(!inventory::parse_hidden(body).is_empty());
    answered += usize::from(inventory::parse_mapping(body, index).is_some());
    answered += usize::from(inventory::parse_count(body).is_some());
    answered += usize::from(inventory::parse_sample(body).is_some());
    answered += usize::from(count::parse_cardinality(body).is_some());
    answered += usize::from(count::resolve(body, index, "a[].b").is_ok());
    answered += usize::from(super::wire::is_cardinality_body(body));
    answered
}
