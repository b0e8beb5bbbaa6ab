//! `leakscope classify` on a small lab export: the categories found per field agree with the
//! generator's ground truth, every record is counted, bad lines are skipped and reported, and
//! no raw value of a classified field appears in either output format.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use leakscope_core::inventory::flatten_json;
use leakscope_labgen::layouts::truth;
use leakscope_labgen::model::Ctx;
use leakscope_labgen::run::export;

const USERS: u64 = 1500;
const SEED: u64 = 20191204;

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn leakscope(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_leakscope"))
        .args(args)
        .output()
        .expect("run leakscope");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).expect("utf-8 stdout"),
        String::from_utf8(out.stderr).expect("utf-8 stderr"),
    )
}

/// The file an exported container is in, relative to the export directory.
fn file_of(layout: &str, container: &str) -> String {
    format!(
        "{layout}/{}.jsonl",
        container.trim_end_matches(":*").replace(':', ".")
    )
}

/// Raw values of the truly sensitive fields of every exported file: whole values of 8–64
/// bytes, and the first 16 bytes of longer ones.
fn raw_values(dir: &Path, sensitive: &BTreeMap<String, BTreeSet<String>>) -> HashSet<String> {
    let mut out = HashSet::new();
    for (file, paths) in sensitive {
        let text = fs::read_to_string(dir.join(file)).expect("exported file");
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            // The broken line planted above is not a record.
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            for (path, value) in flatten_json(&v, 1 << 20) {
                let value = value.trim();
                if !paths.contains(&path) || value.len() < 8 {
                    continue;
                }
                if value.len() <= 64 {
                    out.insert(value.to_string());
                } else if let Some(p) = value.get(..16) {
                    out.insert(p.to_string());
                }
            }
        }
    }
    out
}

/// A raw value found anywhere in `text` (as any substring of 8–64 bytes of a line).
fn leaked<'a>(text: &str, raw: &'a HashSet<String>) -> Option<&'a String> {
    for line in text.lines() {
        let b = line.as_bytes();
        for i in 0..b.len() {
            for j in (i + 8)..=(i + 64).min(b.len()) {
                if let Some(s) = line.get(i..j) {
                    if let Some(v) = raw.get(s) {
                        return Some(v);
                    }
                }
            }
        }
    }
    None
}

#[test]
fn classify_agrees_with_the_lab_truth_and_leaks_nothing() {
    let dir = TempDir(
        std::env::temp_dir().join(format!("leakscope-classify-files-{}", std::process::id())),
    );
    let _ = fs::remove_dir_all(&dir.0);
    let ctx = Ctx {
        seed: SEED,
        users: USERS,
    };
    export(ctx, &dir.0).expect("lab export");
    // One broken line: counted, reported by number, not fatal.
    let users = dir.0.join("elasticsearch/customers.jsonl");
    let mut text = fs::read_to_string(&users).unwrap();
    let records = text.lines().count() as u64;
    text.push_str("{\"email\": \"broken\n");
    fs::write(&users, text).unwrap();

    let t = truth(ctx);
    let layouts = [
        ("elasticsearch", &t.layouts.elasticsearch),
        ("mongodb", &t.layouts.mongodb),
        ("postgresql", &t.layouts.postgresql),
        ("mysql", &t.layouts.mysql),
        ("redis", &t.layouts.redis),
        ("memcached", &t.layouts.memcached),
    ];
    let mut want: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let mut sensitive: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (layout, containers) in layouts {
        for c in containers.iter() {
            let file = file_of(layout, &c.name);
            for f in &c.fields {
                let cats: BTreeSet<String> = f.categories.iter().map(|s| s.to_string()).collect();
                if !cats.is_empty() {
                    sensitive
                        .entry(file.clone())
                        .or_default()
                        .insert(f.path.clone());
                }
                want.entry(file.clone())
                    .or_default()
                    .insert(f.path.clone(), cats);
            }
        }
    }

    let d = dir.0.to_str().unwrap();
    let (code, json, err) = leakscope(&["classify", d, "--format", "json", "--threads", "2"]);
    assert_eq!(
        code, 1,
        "sensitive data found gives exit code 1; stderr: {err}"
    );
    let report: serde_json::Value = serde_json::from_str(&json).expect("JSON report");
    assert_eq!(report["schema"], "leakscope.classify/v1");
    let files = report["files"].as_array().unwrap();
    // truth.json is not a JSON-lines file: a directory stands for .jsonl and .ndjson files.
    assert_eq!(files.len(), want.len(), "one result per exported container");
    let mut problems = Vec::new();
    for f in files {
        let path = Path::new(f["path"].as_str().unwrap());
        let rel = path
            .strip_prefix(&dir.0)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let truth = &want[&rel];
        for field in f["container"]["fields"].as_array().unwrap() {
            let p = field["path"].as_str().unwrap();
            let got: BTreeSet<String> = field["categories"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
                .collect();
            match truth.get(p) {
                Some(w) if *w == got => {}
                Some(w) => problems.push(format!("{rel} {p}: want {w:?} got {got:?}")),
                None => problems.push(format!("{rel} {p}: not in the truth")),
            }
        }
        if rel == "elasticsearch/customers.jsonl" {
            assert_eq!(
                f["container"]["records"], records,
                "every record classified"
            );
            assert_eq!(f["bad_lines"], 1);
            let e = f["errors"][0].as_str().unwrap();
            assert!(
                e.starts_with(&format!("line {}: not JSON", records + 1)),
                "{e}"
            );
            assert!(!e.contains("broken"), "errors carry no line content: {e}");
            let email = f["container"]["fields"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["path"] == "email")
                .unwrap();
            assert_eq!(email["seen"], records);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let (code, table, _) = leakscope(&["classify", d, "--threads", "1"]);
    assert_eq!(code, 1);
    assert!(table.contains("elasticsearch/customers.jsonl"), "{table}");
    assert!(table.contains("identity.email"), "{table}");

    let raw = raw_values(&dir.0, &sensitive);
    assert!(raw.len() > 1000, "the check has values to look for");
    for (name, out) in [("json", &json), ("table", &table)] {
        if let Some(v) = leaked(out, &raw) {
            panic!("raw value {v:?} in the {name} output");
        }
    }
}

#[test]
fn missing_files_are_a_clear_error() {
    let (code, _, err) = leakscope(&["classify", "/nonexistent/leakscope/dump.jsonl"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("/nonexistent/leakscope/dump.jsonl") && err.contains("No such file"),
        "{err}"
    );
}
