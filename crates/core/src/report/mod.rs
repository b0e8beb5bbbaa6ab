//! Output formats of a scan: a table for people, JSON and JSON lines for programs, Markdown,
//! a self-contained HTML page and a GDPR Art. 33 draft.

pub mod html;
pub mod markdown;
pub mod summary;

use std::io::{self, Write};

use crate::model::{Access, ScanReport, Severity};

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
    let st = &report.stats;
    let exposed = report
        .services
        .iter()
        .filter(|s| matches!(s.access, Access::Open | Access::DefaultCredentials))
        .count();
    writeln!(
        out,
        "{} service(s) on {} address(es), {} readable without credentials; {} ports probed in {:.1}s",
        st.services,
        st.addresses,
        exposed,
        st.ports_probed,
        st.duration_ms as f64 / 1000.0
    )?;
    if report.services.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(
        out,
        "{:<8} {:<22} {:<13} {:<24} {:<19} EVIDENCE",
        "SEVERITY", "ENDPOINT", "PROTOCOL", "PRODUCT", "ACCESS"
    )?;
    for s in &report.services {
        let endpoint = if s.address.contains(':') {
            format!("[{}]:{}", s.address, s.port)
        } else {
            format!("{}:{}", s.address, s.port)
        };
        let product = match (&s.product, &s.version) {
            (Some(p), Some(v)) => format!("{p} {v}"),
            (Some(p), None) => p.clone(),
            (None, Some(v)) => v.clone(),
            (None, None) => "-".into(),
        };
        let proto = if s.tls {
            format!("{}+tls", s.protocol)
        } else {
            s.protocol.clone()
        };
        let sev = format!("{:<8}", s.severity.as_str());
        writeln!(
            out,
            "{} {:<22} {:<13} {:<24} {:<19} {}",
            paint(&sev, s.severity, color),
            endpoint,
            truncate(&proto, 13),
            truncate(&product, 24),
            s.access.as_str(),
            truncate(s.evidence.last().map(String::as_str).unwrap_or(""), 60)
        )?;
        if !s.out_of_scope_peers.is_empty() {
            writeln!(
                out,
                "{:9}peers outside the scope (not contacted): {}",
                "",
                s.out_of_scope_peers.join(", ")
            )?;
        }
    }
    Ok(())
}
