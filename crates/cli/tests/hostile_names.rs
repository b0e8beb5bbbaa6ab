//! A server that controls its names: a REAL Redis (`/usr/bin/redis-server`, installed by the
//! lab) started by this test on its own address, seeded with key names that carry data
//! (`apikey:sk_live_…`, `profile:+44…`, `login:<e-mail>`), hash fields and JSON keys that are
//! e-mail addresses, and names with terminal escapes (`ESC ] 0 ; … BEL`, `ESC [ 2 J`) and bidi
//! controls (U+202E). Issue 14: every output format (scan table, json, jsonl, `-o`, the
//! revocation list; report table, json, md, html, gdpr) and the SQLite store file (with its WAL
//! and shared memory, read while the store is open and after) must hold none of those raw
//! values and characters, while the data is still reported (typed placeholders, masked
//! examples, fingerprints).
//!
//! The server listens on `NET.36.1:6379`, NET being the lab's network (`LEAKSCOPE_LAB_NET`,
//! 127.0 unless set), a third octet no lab uses; it keeps its state in a temporary directory
//! and is stopped by PID at the end. No lab needs to be running.
//!
//! `LEAKSCOPE_TEST_BIN` runs another build of leakscope (to show this test fails on an older one).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::bin;

const REDIS: &str = "/usr/bin/redis-server";

/// Values that must never leave the process raw.
const SECRETS: &[&str] = &[
    "sk_live_51HxQ2aLkT0pZ9qWe8rTy7uIoP",
    "+442079460958",
    "442079460958",
    "erin@example.com",
    "anna@example.com",
    "zoe@example.com",
    "bob@example.org",
    "PWNED",
];

/// Raw bytes no output may carry: ESC, BEL, and U+202E (right-to-left override) in UTF-8.
const RAW_BYTES: &[(&str, &[u8])] = &[
    ("ESC", b"\x1b"),
    ("BEL", b"\x07"),
    ("U+202E", "\u{202e}".as_bytes()),
];

struct Server {
    child: Child,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Stopped by its PID, which this test started.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tempdir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let d = std::env::temp_dir().join(format!("leakscope-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn address() -> SocketAddr {
    let net = std::env::var("LEAKSCOPE_LAB_NET").unwrap_or_else(|_| "127.0".into());
    let addr: SocketAddr = format!("{net}.36.1:6379")
        .parse()
        .expect("LEAKSCOPE_LAB_NET");
    assert!(addr.ip().is_loopback(), "test harness refuses {addr}");
    addr
}

fn start_redis(addr: SocketAddr) -> Server {
    assert!(
        Path::new(REDIS).exists(),
        "{REDIS} is missing: lab/up (or ./test) installs it"
    );
    let dir = tempdir("redis");
    let child = Command::new(REDIS)
        .args(["--bind", &addr.ip().to_string()])
        .args(["--port", &addr.port().to_string()])
        .args(["--dir", dir.to_str().unwrap()])
        .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
        .args(["--daemonize", "no", "--logfile", ""])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server");
    let server = Server { child, dir };
    let t0 = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "redis did not start on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// Sends one command (binary-safe RESP) and reads the reply line.
fn command(conn: &mut TcpStream, args: &[&[u8]]) -> Vec<u8> {
    let mut msg = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        msg.extend(format!("${}\r\n", a.len()).as_bytes());
        msg.extend(*a);
        msg.extend(b"\r\n");
    }
    conn.write_all(&msg).unwrap();
    let mut reply = Vec::new();
    let mut b = [0u8; 1];
    while !reply.ends_with(b"\r\n") {
        conn.read_exact(&mut b).unwrap();
        reply.push(b[0]);
    }
    assert!(
        !reply.starts_with(b"-"),
        "redis refused: {}",
        String::from_utf8_lossy(&reply)
    );
    reply
}

fn seed(addr: SocketAddr) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let set = |c: &mut TcpStream, k: &[u8], v: &[u8]| {
        command(c, &[b"SET", k, v]);
    };
    // Names that carry data, each alone.
    set(
        &mut c,
        b"apikey:sk_live_51HxQ2aLkT0pZ9qWe8rTy7uIoP",
        b"{\"owner\":\"billing\"}",
    );
    command(
        &mut c,
        &[b"HSET", b"profile:+442079460958", b"plan", b"gold"],
    );
    set(
        &mut c,
        b"login:erin@example.com",
        b"{\"last_seen\":\"2026-11-02\"}",
    );
    // A family keyed by e-mail.
    for who in ["anna@example.com", "bob@example.org", "zoe@example.com"] {
        set(
            &mut c,
            format!("customer:{who}").as_bytes(),
            b"{\"tier\":\"pro\"}",
        );
    }
    // Hash field names and JSON object keys that are e-mail addresses.
    command(&mut c, &[b"HSET", b"prefs:7", b"anna@example.com", b"dark"]);
    set(
        &mut c,
        b"doc:1",
        b"{\"by_mail\":{\"zoe@example.com\":{\"plan\":\"pro\"}}}",
    );
    // Terminal and bidi injection in names.
    set(&mut c, b"evil\x1b]0;PWNED\x07\x1b[2J\x1b[31mRED", b"x");
    set(&mut c, "rtl:\u{202e}txt.exe".as_bytes(), b"y");
    command(
        &mut c,
        &[b"HSET", b"prefs:8", b"\x1b[31mcolour\x07", b"red"],
    );
}

fn run(args: &[&str], db: &Path) -> Output {
    let out = Command::new(bin())
        .args(args)
        .args(["--db", db.to_str().unwrap()])
        .env("LEAKSCOPE_LOOPBACK_ONLY", "1")
        .env("NO_COLOR", "1")
        .env("LEAKSCOPE_KEY_FILE", db.with_file_name("fingerprint.key"))
        .stdin(Stdio::null())
        .output()
        .expect("run leakscope");
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "leakscope {args:?} exited {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every string in a JSON document, decoded (escapes resolved).
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => {
            for (k, x) in o {
                out.push(k.clone());
                strings(x, out);
            }
        }
        _ => {}
    }
}

/// The raw sequences planted, as a binary file (the SQLite store) would hold them: single
/// control bytes occur in any binary file, these do not.
const RAW_SEQUENCES: &[(&str, &[u8])] = &[
    ("ESC ]", b"\x1b]"),
    ("ESC [", b"\x1b["),
    ("BEL after text", b"colour\x07"),
    ("U+202E", "\u{202e}".as_bytes()),
];

fn check_binary(what: &str, bytes: &[u8], problems: &mut Vec<String>) {
    for s in SECRETS {
        if find(bytes, s.as_bytes()) {
            problems.push(format!("{what}: raw {s:?}"));
        }
    }
    for (name, raw) in RAW_SEQUENCES {
        if find(bytes, raw) {
            problems.push(format!("{what}: raw {name}"));
        }
    }
}

fn check_clean(what: &str, bytes: &[u8], problems: &mut Vec<String>) {
    check_binary(what, bytes, problems);
    for (name, raw) in RAW_BYTES {
        if find(bytes, raw) {
            problems.push(format!("{what}: raw {name}"));
        }
    }
    // JSON escapes of controls decode to the raw characters: check the decoded strings too.
    let docs: Vec<Value> = match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => vec![v],
        Err(_) => bytes
            .split(|&b| b == b'\n')
            .filter_map(|l| serde_json::from_slice(l).ok())
            .collect(),
    };
    for d in docs {
        let mut all = Vec::new();
        strings(&d, &mut all);
        for s in all {
            if s.chars()
                .any(|c| c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c))
            {
                problems.push(format!("{what}: decoded JSON string {s:?} holds a control"));
            }
        }
    }
}

#[test]
fn names_with_data_and_controls_never_reach_any_output_raw() {
    let addr = address();
    let _server = start_redis(addr);
    seed(addr);
    let dir = tempdir("names");
    let db = dir.join("findings.db");
    let target = addr.to_string();
    let scan_json = dir.join("scan.json");
    let revoke = dir.join("revoke.csv");
    let mut outputs: Vec<(String, Vec<u8>)> = Vec::new();

    let table = run(&["scan", &target, "--quiet"], &db);
    outputs.push(("scan table stdout".into(), table.stdout));
    outputs.push(("scan table stderr".into(), table.stderr));
    let json = run(
        &[
            "scan",
            &target,
            "--quiet",
            "--format",
            "json",
            "-o",
            scan_json.to_str().unwrap(),
            "--revocation-list",
            revoke.to_str().unwrap(),
        ],
        &db,
    );
    outputs.push(("scan -o json stderr".into(), json.stderr));
    let jsonl = run(&["scan", &target, "--quiet", "--format", "jsonl"], &db);
    common::check_scan_lines(&String::from_utf8_lossy(&jsonl.stdout));
    outputs.push(("scan jsonl".into(), jsonl.stdout));
    // The store file while a scan holds it open (its WAL has not been checkpointed yet) is
    // read below after the reports; the reports themselves:
    for fmt in ["table", "json", "md", "html", "gdpr"] {
        let r = run(&["report", "latest", "--format", fmt], &db);
        if fmt == "json" {
            common::check_scan(&serde_json::from_slice(&r.stdout).expect("report json"));
        }
        outputs.push((format!("report {fmt}"), r.stdout));
        outputs.push((format!("report {fmt} stderr"), r.stderr));
    }
    let doc = std::fs::read(&scan_json).expect("scan -o wrote its file");
    outputs.push(("scan -o file".into(), doc.clone()));
    let csv = std::fs::read(&revoke).expect("revocation list written");
    outputs.push(("revocation list".into(), csv.clone()));
    for f in std::fs::read_dir(&dir).unwrap() {
        let f = f.unwrap().path();
        if f.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("findings.db")
        {
            outputs.push((f.display().to_string(), std::fs::read(&f).unwrap()));
        }
    }
    assert!(
        outputs.iter().any(|(w, _)| w.ends_with("findings.db")),
        "the store file was read"
    );

    let mut problems = Vec::new();
    for (what, bytes) in &outputs {
        if what.contains("findings.db") {
            check_binary(what, bytes, &mut problems);
        } else {
            check_clean(what, bytes, &mut problems);
        }
    }

    // The data is still reported, as placeholders, masked examples and fingerprints.
    let report: Value = serde_json::from_slice(&doc).unwrap();
    common::check_scan(&report);
    let redis = &report["services"][0];
    let names: Vec<&str> = redis["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for want in [
        "db0:apikey:*",
        "db0:profile:<phone>",
        "db0:login:<email>",
        "db0:customer:<email>",
    ] {
        if !names.contains(&want) {
            problems.push(format!("container {want} missing from {names:?}"));
        }
    }
    let apikey = redis["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "db0:apikey:*");
    let key_field = apikey.and_then(|c| {
        c["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == "key[1]")
            .cloned()
    });
    match key_field {
        Some(f) => {
            if f["categories"][0] != "credential.api_token"
                || !f["examples"][0]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("sk_live_•••")
                || f["fingerprints"].as_array().is_none_or(|a| a.len() != 1)
            {
                problems.push(format!("key[1] of apikey:* not classified as a token: {f}"));
            }
        }
        None => problems.push(format!("no key[1] field in {apikey:?}")),
    }
    let csv = String::from_utf8_lossy(&csv);
    if !csv
        .lines()
        .any(|l| l.starts_with("credential.api_token,") && l.contains("db0:apikey:*"))
    {
        problems.push(format!(
            "the key's token is not on the revocation list:\n{csv}"
        ));
    }
    if !String::from_utf8_lossy(&doc).contains("evil\\\\x1b]") {
        problems.push(format!(
            "the escape in the evil key name is not shown as \\x1b: {names:?}"
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}
