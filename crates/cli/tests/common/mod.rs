//! Helpers shared by the binary's integration tests: which build to run, and the JSON
//! contracts every JSON output is held to (`docs/*.schema.json`).

#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value;

/// The leakscope binary under test; `LEAKSCOPE_TEST_BIN` names another build (to show a test
/// fails on an older one).
pub fn bin() -> PathBuf {
    std::env::var_os("LEAKSCOPE_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_leakscope")))
}

fn schema(file: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs")
        .join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("schema is JSON")
}

/// The schema with its root replaced by a reference to one of its definitions (a line of
/// `--format jsonl` is one `service` or one `change`).
fn definition(mut root: Value, def: &str) -> Value {
    let obj = root.as_object_mut().unwrap();
    for k in [
        "type",
        "required",
        "properties",
        "items",
        "title",
        "description",
    ] {
        obj.remove(k);
    }
    obj.insert("$ref".into(), Value::String(format!("#/$defs/{def}")));
    root
}

fn check(schema: &Value, doc: &Value, what: &str) {
    let v = jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .expect("the schema compiles");
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .take(10)
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not follow its schema:\n{}",
        errors.join("\n")
    );
}

/// A scan document (`scan --format json`, `report --format json`).
pub fn check_scan(doc: &Value) {
    check(&schema("leakscope.scan.v1.schema.json"), doc, "scan JSON");
}

/// The lines of `scan --format jsonl`, one service each.
pub fn check_scan_lines(text: &str) {
    let s = definition(schema("leakscope.scan.v1.schema.json"), "service");
    for l in text.lines() {
        check(
            &s,
            &serde_json::from_str(l).expect("a JSON line"),
            "scan JSON line",
        );
    }
}

/// `diff --format json`.
pub fn check_diff(doc: &Value) {
    check(&schema("leakscope.diff.v1.schema.json"), doc, "diff JSON");
}

/// The lines of `diff --format jsonl`, one change each.
pub fn check_diff_lines(text: &str) {
    let s = definition(schema("leakscope.diff.v1.schema.json"), "change");
    for l in text.lines() {
        check(
            &s,
            &serde_json::from_str(l).expect("a JSON line"),
            "diff JSON line",
        );
    }
}

/// The protocol ids the scan schema allows.
pub fn schema_protocols() -> Vec<String> {
    schema("leakscope.scan.v1.schema.json")["$defs"]["service"]["properties"]["protocol"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// The category ids the scan schema allows.
pub fn schema_categories() -> Vec<String> {
    schema("leakscope.scan.v1.schema.json")["$defs"]["category"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}
