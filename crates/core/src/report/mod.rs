//! Output formats of a scan: a table for people, JSON and JSON lines for programs, Markdown,
//! a self-contained HTML page and a GDPR Art. 33 draft.

pub mod html;
pub mod markdown;
pub mod revocation;
pub mod summary;

use std::io::{self, Write};

use crate::model::{Access, ScanReport, Service, Severity};

/// Output format of `leakscope scan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Jsonl,
}

/// Writes `report` in `format`. `color` adds ANSI colours to the table.
pub fn write(
    report: &ScanReport,
    format: Format,
    color: bool,
    out: &mut dyn Write,
) -> io::Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, report)?;
            writeln!(out)
        }
        Format::Jsonl => {
            for s in &report.services {
                serde_json::to_writer(&mut *out, s)?;
                writeln!(out)?;
            }
            Ok(())
        }
        Format::Table => write_table(report, color, out),
    }
}

fn paint(s: &str, sev: Severity, color: bool) -> String {
    if !color {
        return s.to_string();
    }
    let code = match sev {
        Severity::Critical => "1;31",
        Severity::High => "31",
        Severity::Medium => "33",
        Severity::Low => "36",
        Severity::Info => "2",
    };
    format!("\x1b[{code}m{s}\x1b[0m")
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn write_table(report: &ScanReport, color: bool, out: &mut dyn Write) -> io::Result<()> {
    // Read in ten seconds: what is open, how bad, how many people; then one line per service;
    // then the detail of exposed services. Everything fits 100 columns.
    let st = &report.stats;
    let sum = summary::Summary::of(report);
    writeln!(
        out,
        "Scan {}: {} addresses, {} endpoints probed in {:.1}s, {} services found.",
        report.scan_id,
        summary::thousands(st.addresses),
        summary::thousands(st.ports_probed),
        st.duration_ms as f64 / 1000.0,
        st.services
    )?;
    if let Some(c) = summary::caveat(report) {
        for line in wrap(&c, 100) {
            writeln!(out, "{}", paint(&line, Severity::High, color))?;
        }
    }
    if report.services.is_empty() {
        return Ok(());
    }
    let worst = sum.worst().unwrap_or(Severity::Info);
    let headline = if sum.exposed == 0 && report.complete() {
        "No data store is readable without credentials.".to_string()
    } else if sum.exposed == 0 {
        "No readable data store among the endpoints probed so far.".to_string()
    } else {
        let people = sum.people_phrase();
        format!(
            "EXPOSED: {} of {} services readable without credentials; {}; {people}.",
            sum.exposed,
            sum.services,
            summary::records_phrase(&sum),
        )
    };
    writeln!(out, "{}", paint(&headline, worst, color))?;
    if !sum.records_by_category.is_empty() {
        let mut cats: Vec<_> = sum.records_by_category.iter().collect();
        cats.sort_by_key(|c| std::cmp::Reverse(*c.1));
        let line: Vec<String> = cats.iter().map(|(k, _)| k.to_string()).collect();
        for chunk in wrap(&line.join(", "), 88) {
            writeln!(out, "  data: {chunk}")?;
        }
    }
    writeln!(out)?;
    writeln!(
        out,
        "{:<8} {:<21} {:<26} {:<13} {:>9} CATEGORIES",
        "SEVERITY", "ENDPOINT", "SERVICE", "ACCESS", "RECORDS"
    )?;
    let mut services: Vec<&Service> = report.services.iter().collect();
    services.sort_by_key(|s| std::cmp::Reverse(s.severity));
    for s in &services {
        let product = summary::product(s);
        let service = format!(
            "{}{} {}",
            s.protocol,
            if s.tls { "+tls" } else { "" },
            product
        );
        let records: u64 = s.containers.iter().filter_map(|c| c.records).sum();
        let mut cats: Vec<&str> = s
            .containers
            .iter()
            .flat_map(|c| c.categories.iter().map(String::as_str))
            .collect();
        cats.sort_unstable();
        cats.dedup();
        let access = match s.access {
            Access::DefaultCredentials => "default creds",
            a => a.as_str(),
        };
        let sev = format!("{:<8}", s.severity.as_str());
        writeln!(
            out,
            "{} {:<21} {:<26} {:<13} {:>9} {}",
            paint(&sev, s.severity, color),
            truncate(&summary::endpoint(s), 21),
            truncate(&service, 26),
            access,
            if s.containers.is_empty() {
                "-".to_string()
            } else {
                summary::thousands(records)
            },
            if cats.is_empty() {
                String::new()
            } else {
                truncate(&format!("{} ({})", cats[0], cats.len()), 20)
            }
        )?;
    }
    for s in services
        .iter()
        .filter(|s| summary::exposed(s) || !s.out_of_scope_peers.is_empty())
    {
        writeln!(
            out,
            "\n{} {}",
            paint(&summary::endpoint(s), s.severity, color),
            s.protocol
        )?;
        if let Some(x) = &s.exposure {
            writeln!(out, "  {}", paint(&x.describe(), s.severity, color))?;
        }
        for e in &s.evidence {
            for line in wrap(e, 94) {
                writeln!(out, "  - {line}")?;
            }
        }
        if !s.out_of_scope_peers.is_empty() {
            writeln!(
                out,
                "  - peers outside the scope (not contacted): {}",
                s.out_of_scope_peers.join(", ")
            )?;
        }
        for c in &s.containers {
            let recs = c
                .records
                .map(summary::thousands)
                .unwrap_or_else(|| "?".into());
            let cats = if c.categories.is_empty() {
                "-".to_string()
            } else {
                c.categories.join(", ")
            };
            let head = format!(
                "  {:<32} {:>11}{} ",
                truncate(&c.name, 32),
                recs,
                if c.records_estimated { "~" } else { " " }
            );
            let mut lines = wrap(&cats, 100 - head.chars().count()).into_iter();
            writeln!(out, "{head}{}", lines.next().unwrap_or_default())?;
            for l in lines {
                writeln!(out, "{:w$}{l}", "", w = head.chars().count())?;
            }
        }
        for n in &s.inventory_notes {
            for line in wrap(n, 94) {
                writeln!(out, "  ! {line}")?;
            }
        }
    }
    Ok(())
}

/// Greedy word wrap to `width` columns (long words are cut).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(10);
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in text.split_whitespace() {
        let w = truncate(word, width);
        if !cur.is_empty() && cur.chars().count() + 1 + w.chars().count() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(&w);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Access, Severity, Stats};

    fn report(services: Vec<Service>, finished: bool, stats: Stats) -> ScanReport {
        ScanReport {
            schema: crate::model::SCAN_SCHEMA.into(),
            scan_id: "0123456789abcdef".into(),
            started_at: "2026-12-01T00:00:00Z".into(),
            finished_at: finished.then(|| "2026-12-01T00:01:00Z".into()),
            impact: None,
            stats,
            services,
        }
    }

    fn open_redis() -> Service {
        Service {
            address: "127.0.0.1".into(),
            port: 6379,
            tls: false,
            protocol: "redis".into(),
            product: Some("Redis".into()),
            version: None,
            access: Access::Open,
            evidence: vec!["INFO answered without AUTH".into()],
            severity: Severity::High,
            hostnames: vec![],
            out_of_scope_peers: vec![],
            auth_attempts: 0,
            containers: vec![],
            inventory_notes: vec![],
            exposure: None,
        }
    }

    fn table(r: &ScanReport) -> String {
        let mut out = Vec::new();
        write(r, Format::Table, false, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn without_inventory_the_headline_claims_no_record_count() {
        let r = report(vec![open_redis()], true, Stats::default());
        let t = table(&r);
        assert!(t.contains("EXPOSED: 1 of 1"), "{t}");
        assert!(!t.contains("0 records"), "{t}");
        assert!(t.contains("records not counted"), "{t}");
        assert!(!markdown::findings(&r).contains("0 records"));
    }

    #[test]
    fn a_scan_that_reached_nothing_says_so_in_every_format() {
        let stats = Stats {
            addresses: 1,
            ports_probed: 4,
            connect_errors: 4,
            ..Stats::default()
        };
        let r = report(vec![], true, stats);
        let html = html::render(&r, &[]);
        let gdpr = markdown::gdpr(&r, &Default::default());
        for (fmt, out) in [
            ("table", table(&r)),
            ("md", markdown::findings(&r)),
            ("html", html),
            ("gdpr", gdpr),
        ] {
            assert!(out.contains("NOTHING COULD BE REACHED"), "{fmt}: {out}");
        }
        // Refused everywhere is an answer: a clean empty network, no caveat.
        let clean = report(
            vec![],
            true,
            Stats {
                ports_probed: 4,
                ..Stats::default()
            },
        );
        assert!(!table(&clean).contains("NOTHING COULD BE REACHED"));
    }
}
