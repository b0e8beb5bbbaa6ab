// Shared by the decoder targets (included with `include!`): the bounds every decoded tree and
// its flattening keep.
use leakscope_core::fuzzing::decode::{MAX_DEPTH, MAX_NODES};
use leakscope_core::fuzzing::flatten::flatten_bytes;
use serde_json::Value;

fn nodes(v: &Value, depth: usize) -> usize {
    assert!(depth <= MAX_DEPTH + 2, "tree deeper than the cap");
    1 + match v {
        Value::Object(m) => m.values().map(|x| nodes(x, depth + 1)).sum(),
        Value::Array(a) => a.iter().map(|x| nodes(x, depth + 1)).sum(),
        _ => 0,
    }
}

/// A decoded tree stays within the node cap; flattening the input as a stored value keeps
/// the pair and value caps.
fn check_tree(v: Option<Value>, data: &[u8]) {
    if let Some(v) = v {
        assert!(nodes(&v, 0) <= MAX_NODES + 1, "tree larger than the cap");
    }
    let rec = flatten_bytes(data, 64);
    assert!(rec.len() <= 2000);
    for (_, v) in &rec {
        assert!(v.len() <= 64, "value of {} bytes", v.len());
    }
}
