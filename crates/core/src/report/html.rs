//! The HTML report: one self-contained page (inline CSS and SVG charts, no scripts, no network
//! fetches) that a person can read offline, hand to management, or print.

use std::fmt::Write as _;

use super::summary::{
    category_label, caveat, endpoint, exposed, finished, product, thousands, Summary,
};
use crate::model::{ScanReport, Severity};

/// One scan on the exposure timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelinePoint {
    pub started_at: String,
    pub exposed_services: usize,
    pub exposed_records: u64,
}

/// HTML-escapes text for element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn sev_color(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "#b00020",
        Severity::High => "#e4572e",
        Severity::Medium => "#f3a712",
        Severity::Low => "#4f86c6",
        Severity::Info => "#9aa5b1",
    }
}

const STYLE: &str = r#"
*{box-sizing:border-box}body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;margin:0;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:24px}h1{margin:0 0 4px;font-size:26px}h2{margin:32px 0 12px;font-size:20px}h3{margin:0;font-size:16px}
.meta{color:#5b6472;font-size:13px}.cards{display:grid;grid-template-columns:repeat(4,1fr);gap:12px;margin-top:16px}
.card{background:#fff;border-radius:8px;padding:14px 16px;box-shadow:0 1px 2px #0002}.card .n{font-size:28px;font-weight:700}.card.bad .n{color:#b00020}
.card .sub{color:#5b6472;font-size:12px;margin-top:4px}
.charts{display:grid;grid-template-columns:1fr 1fr;gap:12px}.chart{background:#fff;border-radius:8px;padding:12px 16px;box-shadow:0 1px 2px #0002}
.chart.wide{grid-column:1 / span 2}.svc{background:#fff;border-radius:8px;padding:14px 16px;margin:12px 0;box-shadow:0 1px 2px #0002;border-left:6px solid #9aa5b1;break-inside:avoid}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:12px;font-weight:600;margin-left:6px;vertical-align:middle}
table{border-collapse:collapse;width:100%;margin-top:8px;font-size:13px}th,td{text-align:left;padding:4px 6px;border-bottom:1px solid #e3e6ea;vertical-align:top}
th{color:#5b6472;font-weight:600}code{font:12px ui-monospace,Menlo,Consolas,monospace;background:#eef0f3;padding:1px 4px;border-radius:3px}
ul.ev{margin:6px 0 0 18px;padding:0;font-size:13px}.cat{display:inline-block;background:#eef0f3;border-radius:3px;padding:0 5px;margin:1px 2px;font-size:12px}
.cat.sens{background:#fde2e1}.caveat{background:#fff3cd;border-left:6px solid #b00020;padding:10px 14px;border-radius:6px}footer{color:#5b6472;font-size:12px;margin:32px 0 8px}
@media print{body{background:#fff}.card,.chart,.svc{box-shadow:none;border:1px solid #ccc}main{padding:0}}
"#;

fn sensitive(cat: &str) -> bool {
    cat.starts_with("credential.")
        || cat.starts_with("health.")
        || cat.starts_with("financial.")
        || cat == "government.id"
}

/// Horizontal bar chart as inline SVG.
fn bars(title: &str, rows: &[(String, u64, &str)], id: &str) -> String {
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1);
    let row_h = 22;
    let h = 30 + rows.len().max(1) * row_h;
    let mut svg = format!(
        r#"<svg id="{id}" role="img" aria-label="{t}" viewBox="0 0 520 {h}" width="100%"><text x="0" y="16" font-size="13" font-weight="600">{t}</text>"#,
        t = esc(title)
    );
    if rows.is_empty() {
        let _ = write!(
            svg,
            r##"<text x="0" y="42" font-size="12" fill="#5b6472">nothing to show</text>"##
        );
    }
    for (i, (label, v, color)) in rows.iter().enumerate() {
        let y = 28 + i * row_h;
        let w = (*v as f64 / max as f64 * 250.0).max(2.0);
        let _ = write!(
            svg,
            r##"<text x="0" y="{ty}" font-size="12">{l}</text><rect x="210" y="{y}" width="{w:.1}" height="15" rx="2" fill="{color}"/><text x="{tx:.1}" y="{ty}" font-size="12" fill="#1d2330">{n}</text>"##,
            ty = y + 12,
            l = esc(label),
            tx = 214.0 + w,
            n = thousands(*v)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Line chart of exposed services across scans.
fn timeline(points: &[TimelinePoint]) -> String {
    let (w, h, left, top, bottom) = (1000.0, 200.0, 50.0, 30.0, 40.0);
    let mut svg = format!(
        r#"<svg id="chart-timeline" role="img" aria-label="Exposure timeline" viewBox="0 0 {w} {h}" width="100%"><text x="0" y="16" font-size="13" font-weight="600">Exposed services per scan (exposure timeline)</text>"#
    );
    if points.is_empty() {
        svg.push_str(
            r##"<text x="0" y="50" font-size="12" fill="#5b6472">no stored scans</text></svg>"##,
        );
        return svg;
    }
    let max = points
        .iter()
        .map(|p| p.exposed_services)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let n = points.len();
    let x = |i: usize| {
        if n == 1 {
            left + (w - left - 20.0) / 2.0
        } else {
            left + i as f64 * (w - left - 20.0) / (n - 1) as f64
        }
    };
    let y = |v: usize| top + (h - top - bottom) * (1.0 - v as f64 / max);
    let _ = write!(
        svg,
        r##"<line x1="{left}" y1="{b}" x2="{r}" y2="{b}" stroke="#c8ccd2"/>"##,
        b = h - bottom,
        r = w - 10.0
    );
    let path: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{:.1},{:.1}", x(i), y(p.exposed_services)))
        .collect();
    let _ = write!(
        svg,
        r##"<polyline fill="none" stroke="#b00020" stroke-width="2" points="{}"/>"##,
        path.join(" ")
    );
    for (i, p) in points.iter().enumerate() {
        let _ = write!(
            svg,
            r##"<circle cx="{cx:.1}" cy="{cy:.1}" r="4" fill="#b00020"><title>{t}: {n} exposed, {r} records</title></circle><text x="{cx:.1}" y="{ly:.1}" font-size="11" text-anchor="middle">{n}</text><text x="{cx:.1}" y="{dy}" font-size="10" text-anchor="middle" fill="#5b6472">{d}</text>"##,
            cx = x(i),
            cy = y(p.exposed_services),
            ly = y(p.exposed_services) - 8.0,
            dy = h - bottom + 16.0,
            t = esc(&p.started_at),
            n = p.exposed_services,
            r = thousands(p.exposed_records),
            d = esc(p.started_at.get(..16).unwrap_or(&p.started_at)).replace('T', " ")
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Renders the whole page.
pub fn render(report: &ScanReport, history: &[TimelinePoint]) -> String {
    let sum = Summary::of(report);
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>leakscope report {id}</title><style>{STYLE}</style></head><body><main>"#,
        id = esc(&report.scan_id)
    );
    let _ = write!(
        o,
        r#"<h1>Exposed data stores</h1><div class="meta">Scan <code>{}</code> · started {} · finished {} · {} addresses, {} endpoints probed</div>"#,
        esc(&report.scan_id),
        esc(&report.started_at),
        esc(&finished(report)),
        thousands(report.stats.addresses),
        thousands(report.stats.ports_probed)
    );
    if let Some(c) = caveat(report) {
        let _ = write!(
            o,
            r#"<p class="caveat" id="caveat"><strong>{}</strong></p>"#,
            esc(&c)
        );
    }
    let worst = sum.worst().map(|s| s.as_str()).unwrap_or("none");
    let people = if sum.subjects_from_records {
        "≤ "
    } else {
        "≈ "
    };
    let _ = write!(
        o,
        r#"<section class="cards" id="summary"><div class="card{bad}"><div class="n" id="exposed-count">{e}</div>of <span id="services-count">{t}</span> services readable without credentials</div><div class="card"><div class="n" id="people">{p}{s}</div>people whose data is exposed{i}</div><div class="card"><div class="n" id="records">{r}</div>records in exposed stores</div><div class="card{bad}"><div class="n" id="worst">{w}</div>worst severity</div></section>"#,
        bad = if sum.exposed > 0 { " bad" } else { "" },
        e = sum.exposed,
        t = sum.services,
        p = people,
        s = thousands(sum.subjects),
        i = match &sum.impact {
            Some(i) => format!(
                r#"<div class="sub" id="people-interval" title="{}">95 %: {}–{}, each person counted once across stores</div>"#,
                esc(&i.method),
                thousands(i.people_low),
                thousands(i.people_high)
            ),
            None => String::new(),
        },
        r = if sum.exposed > 0 && !sum.inventoried {
            "–".to_string()
        } else {
            thousands(sum.exposed_records)
        },
        w = worst
    );
    let mut cats: Vec<(String, u64, &str)> = sum
        .records_by_category
        .iter()
        .map(|(k, v)| {
            (
                category_label(k).to_string(),
                *v,
                if sensitive(k) { "#b00020" } else { "#4f86c6" },
            )
        })
        .collect();
    cats.sort_by_key(|c| std::cmp::Reverse(c.1));
    let sev: Vec<(String, u64, &str)> = Severity::ALL
        .iter()
        .rev()
        .map(|s| {
            (
                s.as_str().to_string(),
                *sum.by_severity.get(s).unwrap_or(&0) as u64,
                sev_color(*s),
            )
        })
        .collect();
    let _ = write!(
        o,
        r#"<h2>Overview</h2><section class="charts"><div class="chart">{}</div><div class="chart">{}</div><div class="chart wide">{}</div></section>"#,
        bars("Exposed records by category", &cats, "chart-categories"),
        bars("Services by severity", &sev, "chart-severity"),
        timeline(history)
    );
    o.push_str(r#"<h2>Services</h2>"#);
    let mut services: Vec<_> = report.services.iter().collect();
    services.sort_by_key(|s| std::cmp::Reverse(s.severity));
    for s in services {
        let endpoint = endpoint(s);
        let product = product(s);
        let _ = write!(
            o,
            r#"<article class="svc" style="border-left-color:{c}" data-severity="{sv}"><h3>{ep} — {proto}{tls} {prod}<span class="badge" style="background:{c}">{sv}</span><span class="badge" style="background:#5b6472">{acc}</span></h3><ul class="ev">"#,
            c = sev_color(s.severity),
            sv = s.severity.as_str(),
            ep = esc(&endpoint),
            proto = esc(&s.protocol),
            tls = if s.tls { " (TLS)" } else { "" },
            prod = esc(&product),
            acc = s.access.as_str()
        );
        if let Some(x) = &s.exposure {
            let _ = write!(
                o,
                r#"<li class="exposure"><strong>{}</strong></li>"#,
                esc(&x.describe())
            );
        }
        for e in &s.evidence {
            let _ = write!(o, "<li>{}</li>", esc(e));
        }
        if !s.out_of_scope_peers.is_empty() {
            let _ = write!(
                o,
                "<li>Peers outside the scope (not contacted): {}</li>",
                esc(&s.out_of_scope_peers.join(", "))
            );
        }
        for n in &s.inventory_notes {
            let _ = write!(o, "<li><em>{}</em></li>", esc(n));
        }
        o.push_str("</ul>");
        if !s.containers.is_empty() {
            o.push_str("<table><tr><th>container</th><th>kind</th><th>records</th><th>people ≈</th><th>sampled</th><th>categories</th></tr>");
            for c in &s.containers {
                let cats: String = c
                    .categories
                    .iter()
                    .map(|k| {
                        format!(
                            r#"<span class="cat{}">{}</span>"#,
                            if sensitive(k) { " sens" } else { "" },
                            esc(k)
                        )
                    })
                    .collect();
                let _ = write!(
                    o,
                    "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}{}</td><td title=\"{}\">{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&c.name),
                    if c.system { " (system)" } else { "" },
                    esc(&c.kind),
                    if c.records_estimated { "≈ " } else { "" },
                    c.records.map(thousands).unwrap_or_else(|| "?".into()),
                    esc(c.subjects_method.as_deref().unwrap_or("")),
                    c.subjects_estimate.map(thousands).unwrap_or_else(|| "–".into()),
                    c.sampled,
                    cats
                );
            }
            o.push_str("</table>");
            let fields: Vec<_> = s
                .containers
                .iter()
                .flat_map(|c| {
                    c.fields
                        .iter()
                        .filter(|f| !f.categories.is_empty())
                        .map(move |f| (c, f))
                })
                .collect();
            if !fields.is_empty() {
                o.push_str("<table><tr><th>field</th><th>categories</th><th>confidence</th><th>matched / seen</th><th>masked examples</th></tr>");
                for (c, f) in fields {
                    let _ = write!(
                        o,
                        "<tr><td><code>{}</code> in <code>{}</code></td><td>{}</td><td>{:.2}</td><td>{} / {}</td><td>{}</td></tr>",
                        esc(&f.path),
                        esc(&c.name),
                        esc(&f.categories.join(", ")),
                        f.confidence,
                        f.matched,
                        f.seen,
                        esc(&f.examples.join(", "))
                    );
                }
                o.push_str("</table>");
            }
        }
        o.push_str("</article>");
    }
    let exposed_n = report.services.iter().filter(|s| exposed(s)).count();
    let _ = writeln!(
        o,
        "<footer>Generated by leakscope {} from scan {} ({} exposed). Raw values of sensitive fields are never included: examples are masked.</footer></main></body></html>",
        env!("CARGO_PKG_VERSION"),
        esc(&report.scan_id),
        exposed_n
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn empty_report_renders() {
        let r = ScanReport {
            schema: "leakscope.scan/v1".into(),
            scan_id: "x<y".into(),
            started_at: "2026-11-28T10:00:00Z".into(),
            finished_at: Some("2026-11-28T10:00:01Z".into()),
            impact: None,
            stats: Default::default(),
            services: vec![],
        };
        let html = render(&r, &[]);
        assert!(html.starts_with("<!doctype html>"));
        assert!(html.contains("x&lt;y") && !html.contains("x<y"));
        assert!(
            !html.contains("<script") && !html.contains("http://") && !html.contains("https://")
        );
    }
}
