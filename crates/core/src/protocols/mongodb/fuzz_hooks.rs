//! Fuzzing hooks: the parsers of the private inventory module, for `crate::fuzzing`.

use bson::raw::RawDocument;
use serde_json::Value;

use super::inventory;

/// Runs every inventory parser of reply documents on `d`; returns how many answered.
pub fn inventory_parsers(d: &RawDocument, cap: usize) -> usize {
    let mut answered = 0;
    answered += usize::from(inventory::parse_databases(d).is_some());
    answered += usize::from(inventory::parse_count(d).is_some());
    answered += usize::from(inventory::parse_coll_stats(d).is_some());
    if let Some((batch, _id)) = inventory::cursor_batch(d) {
        answered += 1;
        answered += usize::from(inventory::parse_collections(batch).is_some());
        answered += usize::from(inventory::count_documents(batch).is_some());
        for doc in batch.into_iter().map_while(Result::ok) {
            if let Some(doc) = doc.as_document() {
                let _ = document_json(doc, cap);
            }
        }
    }
    answered
}

/// A sampled document as JSON (as the inventory flattens it), plus its schema paths.
pub fn document_json(d: &RawDocument, cap: usize) -> (Value, Vec<(String, String)>) {
    let json = inventory::document_json(d, cap, 0, true);
    let mut schema = inventory::Schema::default();
    schema.add_document(d);
    (json, schema.finish())
}
