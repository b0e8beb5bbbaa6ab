//! The command line as a new user meets it (issue 14): fail-closed switches, a scope that
//! cannot be reached, output files checked before the first packet and created 0600, store
//! paths, ambiguous ids, diffs of partial scans, resume, completions and small messages.
//!
//! Scans here reach only 127.0.0.1 (closed ports, or a listener this test binds on port 0), or
//! run inside a network namespace this test creates with `unshare -n` (root, as on this
//! machine and CI), where nothing can leave the process's own empty network. No lab is needed.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::bin;
use serde_json::Value;

/// A temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir(tag: &str) -> TempDir {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let d = std::env::temp_dir().join(format!(
        "leakscope-cli-{tag}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    TempDir(d)
}

fn leakscope(args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args)
        .env("LEAKSCOPE_LOOPBACK_ONLY", "1")
        .env("NO_COLOR", "1")
        .env_remove("LEAKSCOPE_DB")
        .stdin(Stdio::null());
    c
}

fn run(args: &[&str]) -> Output {
    leakscope(args).output().expect("run leakscope")
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A listener on 127.0.0.1:0 that accepts and closes, counting connections.
fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let n = Arc::new(AtomicUsize::new(0));
    let count = n.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            count.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    (port, n)
}

/// `leakscope ARGS` inside a new, empty network namespace (its loopback down unless `lo_up`).
fn in_netns(args: &[&str], env: &[(&str, &str)], lo_up: bool) -> Output {
    assert!(
        Path::new("/usr/bin/unshare").exists(),
        "unshare (util-linux) is needed"
    );
    let mut script = String::new();
    if lo_up {
        script.push_str("ip link set lo up && ");
    }
    script.push_str("exec \"$@\"");
    let mut c = Command::new("/usr/bin/unshare");
    c.args(["-n", "sh", "-c", &script, "sh"])
        .arg(bin())
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("LEAKSCOPE_DB")
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run unshare")
}

#[test]
fn the_loopback_switch_fails_closed() {
    // On, in any spelling: a scope outside loopback is refused. The scan runs in an empty
    // network namespace, so even a build that ignored the switch could not leave the machine.
    for on in ["1", "true", "TRUE", "yes", "On"] {
        let o = in_netns(
            &["scan", "192.0.2.1:6379", "--no-store", "--quiet"],
            &[("LEAKSCOPE_LOOPBACK_ONLY", on)],
            false,
        );
        assert_eq!(
            code(&o),
            2,
            "LEAKSCOPE_LOOPBACK_ONLY={on}: {}",
            text(&o.stderr)
        );
        assert!(
            text(&o.stderr).contains("not a loopback address"),
            "LEAKSCOPE_LOOPBACK_ONLY={on}: {}",
            text(&o.stderr)
        );
    }
    // Off, in any spelling: a loopback scan runs as usual.
    let port = closed_port().to_string();
    let target = format!("127.0.0.1:{port}");
    for off in ["0", "false", "No", "off", ""] {
        let o = leakscope(&["scan", &target, "--no-store", "--quiet"])
            .env("LEAKSCOPE_LOOPBACK_ONLY", off)
            .output()
            .unwrap();
        assert_eq!(
            code(&o),
            0,
            "LEAKSCOPE_LOOPBACK_ONLY={off:?}: {}",
            text(&o.stderr)
        );
    }
    // Anything else is an error, not "off".
    for bad in ["maybe", "2", "enable", "y e s"] {
        let o = leakscope(&["scan", &target, "--no-store", "--quiet"])
            .env("LEAKSCOPE_LOOPBACK_ONLY", bad)
            .output()
            .unwrap();
        assert_eq!(code(&o), 2, "LEAKSCOPE_LOOPBACK_ONLY={bad:?} was accepted");
        assert!(
            text(&o.stderr).contains("LEAKSCOPE_LOOPBACK_ONLY"),
            "{}",
            text(&o.stderr)
        );
    }
}

#[test]
fn a_scope_that_cannot_be_reached_is_an_error_and_an_empty_network_is_not() {
    let args = [
        "scan",
        "127.0.0.1:6379",
        "127.0.0.1:9200",
        "--no-store",
        "--quiet",
    ];
    let env = [("LEAKSCOPE_LOOPBACK_ONLY", "1")];
    // Loopback down in a new namespace: every connect fails with "network unreachable".
    let down = in_netns(&args, &env, false);
    assert_eq!(
        code(&down),
        2,
        "stdout {} stderr {}",
        text(&down.stdout),
        text(&down.stderr)
    );
    assert!(
        text(&down.stderr).contains("nothing in the scope could be reached"),
        "{}",
        text(&down.stderr)
    );
    assert!(
        text(&down.stdout).contains("NOTHING COULD BE REACHED"),
        "{}",
        text(&down.stdout)
    );
    // Loopback up: the same ports refuse, which is an answer: a clean empty network.
    let up = in_netns(&args, &env, true);
    assert_eq!(code(&up), 0, "{}", text(&up.stderr));
    assert!(!text(&up.stdout).contains("NOTHING COULD BE REACHED"));
}

#[test]
fn output_files_are_checked_before_the_first_packet() {
    let dir = tempdir("early");
    let (port, hits) = counting_listener();
    let target = format!("127.0.0.1:{port}");
    let db = dir.join("f.db");
    for bad in [
        ["-o", "/nonexistent-dir/scan.json"],
        ["--revocation-list", "/nonexistent-dir/r.csv"],
    ] {
        let mut args = vec!["scan", &target, "--quiet", "--db", db.to_str().unwrap()];
        args.extend(bad);
        let o = run(&args);
        assert_eq!(code(&o), 2, "{bad:?}: {}", text(&o.stderr));
        assert!(
            text(&o.stderr).contains("/nonexistent-dir/"),
            "{}",
            text(&o.stderr)
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "an unwritable output must be found before anything is contacted"
    );
}

#[test]
fn a_failed_write_after_a_scan_still_names_the_stored_scan() {
    let dir = tempdir("full");
    let db = dir.join("f.db");
    let target = format!("127.0.0.1:{}", closed_port());
    // /dev/full opens, and every write to it fails (ENOSPC).
    let o = run(&[
        "scan",
        &target,
        "--quiet",
        "--db",
        db.to_str().unwrap(),
        "-o",
        "/dev/full",
    ]);
    assert_eq!(code(&o), 2);
    let err = text(&o.stderr);
    let listing = text(&run(&["scans", "--db", db.to_str().unwrap()]).stdout);
    let id = listing
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("the scan is stored: {listing}"));
    assert!(
        err.contains(&format!("kept in the store as {id}")),
        "the error must name scan {id}: {err}"
    );
}

#[test]
fn files_leakscope_writes_are_private() {
    let dir = tempdir("modes");
    let db = dir.join("f.db");
    let dbs = db.to_str().unwrap();
    let target = format!("127.0.0.1:{}", closed_port());
    let (scan_out, revoke, report_out, classify_out) = (
        dir.join("scan.json"),
        dir.join("revoke.csv"),
        dir.join("report.html"),
        dir.join("classify.json"),
    );
    // An existing file readable by others is made private too.
    std::fs::write(&report_out, "old").unwrap();
    std::fs::set_permissions(&report_out, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = run(&[
        "scan",
        &target,
        "--quiet",
        "--db",
        dbs,
        "--format",
        "json",
        "-o",
        scan_out.to_str().unwrap(),
        "--revocation-list",
        revoke.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let o = run(&[
        "report",
        "latest",
        "--format",
        "html",
        "--db",
        dbs,
        "-o",
        report_out.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let input = dir.join("people.jsonl");
    std::fs::write(&input, "{\"email\":\"erin@example.com\"}\n").unwrap();
    let o = run(&[
        "classify",
        input.to_str().unwrap(),
        "--format",
        "json",
        "-o",
        classify_out.to_str().unwrap(),
    ]);
    assert!(matches!(code(&o), 0 | 1), "{}", text(&o.stderr));
    for f in [&scan_out, &revoke, &report_out, &classify_out] {
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} is {mode:o}", f.display());
    }
}

#[test]
fn store_paths_are_checked_not_created() {
    let dir = tempdir("paths");
    let missing_dir = dir.join("no-such-dir");
    let db = missing_dir.join("x.db");
    let target = format!("127.0.0.1:{}", closed_port());
    let o = run(&["scan", &target, "--quiet", "--db", db.to_str().unwrap()]);
    assert_eq!(code(&o), 2);
    assert!(
        text(&o.stderr).contains("does not exist"),
        "{}",
        text(&o.stderr)
    );
    assert!(!missing_dir.exists(), "--db must not create directories");
    let typo = dir.join("typo.db");
    let t = typo.to_str().unwrap();
    for args in [
        vec!["scans", "--db", t],
        vec!["report", "latest", "--db", t],
        vec!["diff", "a", "b", "--db", t],
        vec!["history", "127.0.0.1:6379", "--db", t],
    ] {
        let o = run(&args);
        assert_eq!(code(&o), 2, "{args:?}: {}", text(&o.stdout));
        assert!(
            text(&o.stderr).contains("no findings store"),
            "{}",
            text(&o.stderr)
        );
        assert!(!typo.exists(), "{args:?} created an empty store");
    }
    // A file that is no SQLite database: the cause is said once, not twice.
    std::fs::write(&typo, vec![b'x'; 4096]).unwrap();
    let o = run(&["scans", "--db", t]);
    assert_eq!(code(&o), 2);
    let err = text(&o.stderr);
    assert_eq!(err.matches("file is not a database").count(), 1, "{err}");
}

fn scan_ids(db: &str) -> Vec<String> {
    text(&run(&["scans", "--db", db]).stdout)
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect()
}

/// Two scans in one store: A probes an endpoint where something answers and a closed one, B
/// only the closed one. Returns (store, A, B, the answering endpoint).
fn two_scans(tag: &str) -> (TempDir, PathBuf, String, String, String) {
    let dir = tempdir(tag);
    let db = dir.join("f.db");
    let dbs = db.to_str().unwrap();
    let (port, _) = counting_listener();
    let answers = format!("127.0.0.1:{port}");
    let closed = format!("127.0.0.1:{}", closed_port());
    // Scan A probes both endpoints (something answers on one); scan B only the closed one.
    assert_eq!(
        code(&run(&["scan", &answers, &closed, "--quiet", "--db", dbs])),
        0
    );
    assert_eq!(code(&run(&["scan", &closed, "--quiet", "--db", dbs])), 0);
    let ids = scan_ids(dbs);
    (dir, db, ids[1].clone(), ids[0].clone(), answers)
}

#[test]
fn an_ambiguous_id_prefix_says_so() {
    let (_dir, db, a, b, _) = two_scans("ambiguous");
    let dbs = db.to_str().unwrap();
    let (a, b) = (&a, &b);
    // Ids are time based: the two share a prefix.
    let common: String = a
        .chars()
        .zip(b.chars())
        .take_while(|(x, y)| x == y)
        .map(|p| p.0)
        .collect();
    assert!(!common.is_empty());
    let o = run(&["report", &common, "--db", dbs]);
    assert_eq!(code(&o), 2);
    let err = text(&o.stderr);
    assert!(
        err.contains("ambiguous") && err.contains(a) && err.contains(b),
        "{err}"
    );
}

#[test]
fn a_diff_compares_only_what_both_scans_probed() {
    let (_dir, db, a, b, answers) = two_scans("diff");
    let dbs = db.to_str().unwrap();
    let (a, b) = (&a, &b);
    let o = run(&["diff", a, b, "--format", "json", "--db", dbs]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let changes: Value = serde_json::from_slice(&o.stdout).expect("diff json");
    common::check_diff(&changes);
    assert_eq!(changes.as_array().unwrap().len(), 1, "{changes}");
    assert_eq!(changes[0]["endpoint"], answers.as_str());
    assert_eq!(
        changes[0]["kind"], "not_rescanned",
        "B did not probe it: nothing says it is gone"
    );
    let o = run(&["diff", a, b, "--format", "jsonl", "--db", dbs]);
    let lines = text(&o.stdout);
    assert_eq!(lines.lines().count(), 1, "one change per line: {lines}");
    common::check_diff_lines(&lines);
}

#[test]
fn resume_refuses_a_complete_scan_and_new_targets() {
    let (_dir, db, _, b, answers) = two_scans("resume-refusals");
    let dbs = db.to_str().unwrap();
    let b = &b;
    // Resume: a complete scan has nothing to resume; targets cannot be added.
    let o = run(&["scan", "--resume", b, "--quiet", "--db", dbs]);
    assert_eq!(code(&o), 2, "{}", text(&o.stdout));
    assert!(text(&o.stderr).contains("complete"), "{}", text(&o.stderr));
    let o = run(&["scan", "--resume", b, &answers, "--quiet", "--db", dbs]);
    assert_eq!(code(&o), 2, "extra targets with --resume were accepted");
}

#[test]
fn an_interrupted_scan_is_reported_as_such_and_its_resume_counts_every_run() {
    let dir = tempdir("resume");
    let db = dir.join("f.db");
    let dbs = db.to_str().unwrap();
    // 200 closed ports at 25 connections a second: 8 s in all; killed after 3 s.
    let t0 = Instant::now();
    let mut child = leakscope(&[
        "scan",
        "127.0.0.1",
        "--ports",
        "20000-20199",
        "--rate",
        "25",
        "--quiet",
        "--db",
        dbs,
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    child.kill().unwrap(); // SIGKILL: nothing is written on the way out
    child.wait().unwrap();
    let first_run = t0.elapsed();
    let id = scan_ids(dbs).remove(0);

    let mut problems = Vec::new();
    for fmt in ["table", "md", "html", "gdpr"] {
        let o = run(&["report", &id, "--format", fmt, "--db", dbs]);
        assert_eq!(code(&o), 0, "{}", text(&o.stderr));
        let out = text(&o.stdout);
        if !out.contains("INCOMPLETE SCAN") || out.contains("No data store is readable") {
            problems.push(format!(
                "report --format {fmt} does not say it is incomplete"
            ));
        }
    }
    let o = run(&["report", &id, "--format", "json", "--db", dbs]);
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    if doc["finished_at"] != Value::Null {
        problems.push(format!(
            "finished_at of an interrupted scan is {}",
            doc["finished_at"]
        ));
    }
    let o = run(&["diff", &id, &id, "--db", dbs]);
    if !text(&o.stderr).contains("warning") {
        problems.push("a diff of an incomplete scan does not warn".into());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    common::check_scan(&doc);

    let t1 = Instant::now();
    let o = run(&[
        "scan", "--resume", &id, "--quiet", "--format", "json", "--db", dbs,
    ]);
    let resume_wall = t1.elapsed();
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    common::check_scan(&doc);
    assert_eq!(doc["stats"]["ports_probed"], 200);
    let ms = doc["stats"]["duration_ms"].as_u64().unwrap();
    // The first run's time is recorded each second while it runs.
    let first_recorded_at_least = first_run.as_millis() as u64 - 1500;
    assert!(
        ms >= first_recorded_at_least + resume_wall.as_millis() as u64 / 2 && ms > resume_wall.as_millis() as u64,
        "duration_ms {ms} must count the first run (~{first_run:?}) and the resumed one ({resume_wall:?})"
    );
    assert!(doc["finished_at"].is_string());
}

#[test]
fn completions_for_every_shell() {
    for (shell, mark) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef leakscope"),
        ("fish", "complete -c leakscope"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let o = run(&["completions", shell]);
        assert_eq!(code(&o), 0, "{shell}: {}", text(&o.stderr));
        let out = text(&o.stdout);
        assert!(
            out.contains(mark) && out.contains("scan"),
            "{shell}: {out:.200}"
        );
    }
}

#[test]
fn the_timeout_message_states_the_real_range() {
    let o = run(&["scan", "127.0.0.1", "--timeout", "0", "--no-store"]);
    assert_eq!(code(&o), 2);
    assert!(
        text(&o.stderr).contains("more than 0 and at most 3600"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn classify_refuses_a_zero_line_limit() {
    let dir = tempdir("maxline");
    let f = dir.join("a.jsonl");
    std::fs::File::create(&f)
        .unwrap()
        .write_all(b"{}\n")
        .unwrap();
    let o = run(&["classify", f.to_str().unwrap(), "--max-line", "0"]);
    assert_eq!(
        code(&o),
        2,
        "--max-line 0 was accepted: {}",
        text(&o.stdout)
    );
}

#[test]
fn scans_cuts_long_columns_with_an_ellipsis() {
    let dir = tempdir("ellipsis");
    let db = dir.join("f.db");
    let targets: Vec<String> = (0..8)
        .map(|_| format!("127.0.0.1:{}", closed_port()))
        .collect();
    let mut args: Vec<&str> = vec!["scan", "--quiet", "--db", db.to_str().unwrap()];
    args.extend(targets.iter().map(String::as_str));
    assert_eq!(code(&run(&args)), 0);
    let listing = text(&run(&["scans", "--db", db.to_str().unwrap()]).stdout);
    assert!(
        listing.lines().nth(1).is_some_and(|l| l.ends_with('…')),
        "{listing}"
    );
}

#[test]
fn the_schema_knows_every_protocol_and_category() {
    let protocols = common::schema_protocols();
    for p in leakscope_core::protocols::REGISTRY {
        assert!(
            protocols.iter().any(|x| x == p.id),
            "{} missing from the schema",
            p.id
        );
    }
    let cats = common::schema_categories();
    assert_eq!(
        cats,
        leakscope_core::classify::TAXONOMY,
        "schema categories = taxonomy"
    );
    let doc = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/taxonomy.md"),
    )
    .unwrap();
    for c in leakscope_core::classify::TAXONOMY {
        let sev = leakscope_core::rate::category_severity(c).as_str();
        assert!(
            doc.contains(&format!("| `{c}` |"))
                && doc.lines().any(|l| l.starts_with(&format!("| `{c}` |"))
                    && l.trim_end().ends_with(&format!("| {sev} |"))),
            "docs/taxonomy.md must list {c} with severity {sev}"
        );
    }
}

#[test]
fn classify_shows_names_from_files_safely() {
    // JSON keys and file names come from the files: an e-mail address as a key, terminal
    // escapes and a right-to-left override in keys and values.
    let dir = tempdir("classify-names");
    let f = dir.join("export\u{202e}lmth.jsonl");
    let mut lines = String::new();
    for i in 0..20 {
        lines.push_str(&format!(
            "{{\"by_mail\":{{\"anna{i}@example.com\":{{\"plan\":\"pro\"}}}},\"\\u001b]0;PWNED\\u0007\":\"x\",\"email\":\"zoe{i}@example.org\",\"nickname\":\"\\u202ecam{i}\"}}\n"
        ));
    }
    std::fs::write(&f, lines).unwrap();
    let mut problems = Vec::new();
    for fmt in ["table", "json", "jsonl"] {
        let o = run(&["classify", f.to_str().unwrap(), "--format", fmt]);
        assert!(matches!(code(&o), 0 | 1), "{}", text(&o.stderr));
        let out = o.stdout;
        for (what, raw) in [
            ("ESC", &b"\x1b"[..]),
            ("BEL", b"\x07"),
            ("U+202E", "\u{202e}".as_bytes()),
            ("an e-mail key", b"anna3@example.com"),
            ("JSON-escaped ESC", b"\\u001b"),
        ] {
            if out.windows(raw.len()).any(|w| w == raw) {
                problems.push(format!("classify --format {fmt}: raw {what}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
