//! End-to-end tests: the `leakscope` binary against the lab's real servers (`lab/up`).
//!
//! Ground truth is `lab/manifest.json`. Every scan here goes through [`scan`], which refuses
//! targets outside 127.0.0.0/8 and sets `LEAKSCOPE_LOOPBACK_ONLY=1` so the binary refuses them too.
//! Without a running lab these tests fail with a message saying how to start it.

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn manifest() -> Value {
    let path = std::env::var_os("LEAKSCOPE_LAB_MANIFEST")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../lab/manifest.json")
        });
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the lab manifest {} ({e}): start the lab with lab/up, or run ./test",
            path.display()
        )
    });
    serde_json::from_str(&text).expect("manifest is JSON")
}

/// Runs `leakscope scan ARGS --format json` and returns (exit code, report).
fn scan(args: &[&str]) -> (i32, Value) {
    for a in args.iter().filter(|a| !a.starts_with('-')) {
        let host = a.split(['/', '-']).next().unwrap();
        let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
        if let Ok(ip) = host.parse::<IpAddr>() {
            assert!(
                ip.is_loopback(),
                "test harness refuses non-loopback target {a}"
            );
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_leakscope"))
        .arg("scan")
        .args(args)
        .args(["--format", "json", "--quiet", "--no-store"])
        .env("LEAKSCOPE_LOOPBACK_ONLY", "1")
        .output()
        .expect("run leakscope");
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 1,
        "exit {code}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("scan prints JSON");
    assert_eq!(report["schema"], "leakscope.scan/v1");
    // Every JSON output follows the published contract (docs/leakscope.scan.v1.schema.json).
    common::check_scan(&report);
    (code, report)
}

/// The first two octets of the lab's addresses (`127.0` unless the lab runs on another net).
fn net(m: &Value) -> String {
    m["net"].as_str().unwrap_or("127.0").to_string()
}

/// The lab's networks on the default ports, plus the services on non-standard ports.
fn lab_targets(m: &Value) -> Vec<String> {
    let net = net(m);
    let mut t: Vec<String> = [10, 11, 12].map(|n| format!("{net}.{n}.0/24")).to_vec();
    let defaults = default_ports();
    for s in m["services"].as_array().unwrap() {
        let port = s["port"].as_u64().unwrap() as u16;
        if !defaults.contains(&port) {
            t.push(format!("{}:{}", s["address"].as_str().unwrap(), port));
        }
    }
    t
}

fn default_ports() -> Vec<u16> {
    leakscope_core::protocols::default_ports()
}

fn by_endpoint(report: &Value) -> BTreeMap<(String, u64), Value> {
    report["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                (
                    s["address"].as_str().unwrap().to_string(),
                    s["port"].as_u64().unwrap(),
                ),
                s.clone(),
            )
        })
        .collect()
}

fn check_lab_scan(try_defaults: bool) {
    let m = manifest();
    let targets = lab_targets(&m);
    let mut args: Vec<&str> = targets.iter().map(String::as_str).collect();
    if try_defaults {
        args.push("--try-defaults");
    }
    let (code, report) = scan(&args);
    let mut found = by_endpoint(&report);
    let mut problems = Vec::new();
    for want in m["services"].as_array().unwrap() {
        let key = (
            want["address"].as_str().unwrap().to_string(),
            want["port"].as_u64().unwrap(),
        );
        let name = want["name"].as_str().unwrap();
        let Some(got) = found.remove(&key) else {
            problems.push(format!("{name} {key:?}: not reported"));
            continue;
        };
        let access_key = if try_defaults {
            "access"
        } else {
            "access_without_defaults"
        };
        for (field, expected) in [
            ("protocol", &want["protocol"]),
            ("product", &want["product"]),
            ("tls", &want["tls"]),
            ("access", &want[access_key]),
        ] {
            if &got[field] != expected {
                problems.push(format!(
                    "{name}: {field} = {}, expected {expected} (evidence {})",
                    got[field], got["evidence"]
                ));
            }
        }
        // Versions must be right when reported, and reported whenever the data is readable (a
        // protected server may not say it before authentication).
        let readable = matches!(
            want[access_key].as_str(),
            Some("open" | "default_credentials")
        );
        if (readable || !got["version"].is_null()) && got["version"] != want["version"] {
            problems.push(format!(
                "{name}: version = {}, expected {}",
                got["version"], want["version"]
            ));
        }
        if got["evidence"].as_array().is_none_or(|e| e.is_empty()) {
            problems.push(format!("{name}: no evidence"));
        }
        let attempts = got["auth_attempts"].as_u64().unwrap();
        if !try_defaults && attempts != 0 {
            problems.push(format!(
                "{name}: {attempts} credential attempts without --try-defaults"
            ));
        }
    }
    for (key, extra) in &found {
        problems.push(format!("extra service {key:?}: {extra}"));
    }
    assert!(
        problems.is_empty(),
        "scan disagrees with the manifest:\n{}",
        problems.join("\n")
    );
    assert_eq!(
        code, 1,
        "open services are above the default --fail-on medium"
    );
    assert_eq!(
        report["stats"]["services"].as_u64().unwrap() as usize,
        m["services"].as_array().unwrap().len()
    );
}

#[test]
fn scan_with_defaults_matches_the_manifest() {
    check_lab_scan(true);
}

#[test]
fn scan_without_defaults_makes_no_credential_attempts() {
    check_lab_scan(false);
}

#[test]
fn closed_addresses_report_nothing_and_exit_zero() {
    let quiet = format!("{}.13.0/24", net(&manifest()));
    let (code, report) = scan(&[&quiet]);
    assert_eq!(report["services"].as_array().unwrap().len(), 0, "{report}");
    assert_eq!(report["stats"]["addresses"], 256);
    assert_eq!(
        report["stats"]["ports_probed"].as_u64().unwrap(),
        256 * default_ports().len() as u64
    );
    assert_eq!(code, 0);
}

#[test]
fn exclusions_win() {
    let m = manifest();
    let net = net(&m);
    let (excluded, one_port) = (format!("{net}.10.4"), format!("{net}.10.1"));
    let open: Vec<&Value> = m["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["address"] == excluded.as_str())
        .collect();
    assert!(!open.is_empty(), "the lab has a service on {excluded}");
    let (_, report) = scan(&[
        &format!("{net}.10.0/24"),
        "--exclude",
        &excluded,
        "--exclude",
        &format!("{one_port}:9200"),
    ]);
    let found = by_endpoint(&report);
    assert!(
        found.keys().all(|(a, _)| *a != excluded),
        "excluded address reported: {report}"
    );
    assert!(
        !found.contains_key(&(one_port.clone(), 9200)),
        "excluded endpoint reported"
    );
    assert!(
        !found.is_empty(),
        "the rest of the network is still scanned"
    );
}

/// Every lab service, each behind a forwarder on a port no protocol claims, is identified with
/// the protocol, product, TLS and verdict it has on its own port, and without waiting out a
/// read deadline: identification goes by round trips (text probes, which a binary server
/// closes on, before binary ones), not by the port and timeouts.
#[test]
fn every_service_is_identified_on_a_port_nobody_claims() {
    use tokio::net::{TcpListener, TcpStream};

    let m = manifest();
    let services = m["services"].as_array().unwrap().clone();
    // A third octet the lab does not use, in the lab's own net.
    let front = format!("{}.41.1", net(&m));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut ports = Vec::new();
    for (i, s) in services.iter().enumerate() {
        let port = 47_000 + i as u16;
        assert!(!default_ports().contains(&port));
        let upstream = format!("{}:{}", s["address"].as_str().unwrap(), s["port"]);
        let listener = rt
            .block_on(TcpListener::bind((front.as_str(), port)))
            .unwrap_or_else(|e| panic!("cannot bind the forwarder {front}:{port}: {e}"));
        rt.spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        ports.push(port.to_string());
    }
    // A read deadline longer than any round trip of the lab's servers: a scan that ends well
    // within it spent none.
    let timeout = 20;
    let started = std::time::Instant::now();
    let (_, report) = scan(&[
        &front,
        "--ports",
        &ports.join(","),
        "--try-defaults",
        "--no-inventory",
        "--timeout",
        &timeout.to_string(),
        "--service-timeout",
        &(3 * timeout).to_string(),
    ]);
    let took = started.elapsed();
    drop(rt);
    let found = by_endpoint(&report);
    let mut problems = Vec::new();
    for (s, port) in services.iter().zip(&ports) {
        let name = s["name"].as_str().unwrap();
        let Some(got) = found.get(&(front.clone(), port.parse().unwrap())) else {
            problems.push(format!("{name} on {front}:{port}: not reported"));
            continue;
        };
        for field in ["protocol", "product", "tls", "access"] {
            if got[field] != s[field] {
                problems.push(format!(
                    "{name} on port {port}: {field} = {}, expected {} (evidence {})",
                    got[field], s[field], got["evidence"]
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        took < std::time::Duration::from_secs(timeout / 2),
        "the scan took {took:?}: a read deadline of {timeout} s was waited out"
    );
}
