//! Markdown reports: the findings for tickets and wikis, and the GDPR Art. 33 notification draft.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::summary::{
    category_label, caveat, endpoint, exposed, finished, product, records_phrase, thousands,
    Summary,
};
use crate::model::ScanReport;

/// First and last scan in which a service was seen exposed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub first_seen_open: String,
    pub last_seen_open: String,
}

/// Text in Markdown (a table cell or a line): every character with meaning in Markdown or
/// HTML is escaped, so a name or an answer from a server is shown, never rendered.
pub fn md_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '|' | '!' | '~' | '&' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// An inline code span holding `s` verbatim: its fence is longer than any run of backticks in
/// `s`, so the span cannot be closed early; `|` is escaped for tables.
pub fn md_code(s: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in s.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    let body = s.replace('|', "\\|").replace(['\n', '\r'], " ");
    let pad = if body.starts_with('`') || body.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{body}{pad}{fence}")
}

fn md_cell(s: &str) -> String {
    md_text(s)
}

/// The findings as Markdown.
pub fn findings(report: &ScanReport) -> String {
    let sum = Summary::of(report);
    let mut o = String::new();
    let _ = writeln!(o, "# leakscope report — scan `{}`\n", report.scan_id);
    if let Some(c) = caveat(report) {
        let _ = writeln!(o, "> **{}**\n", md_text(&c));
    }
    let _ = writeln!(
        o,
        "Started {}, finished {}; {} addresses, {} endpoints probed.\n",
        report.started_at,
        finished(report),
        thousands(report.stats.addresses),
        thousands(report.stats.ports_probed)
    );
    let _ = writeln!(o, "## Summary\n");
    let _ = writeln!(
        o,
        "- **{} of {} services are readable without credentials** (worst severity: {}).",
        sum.exposed,
        sum.services,
        sum.worst().map(|s| s.as_str()).unwrap_or("none")
    );
    let _ = writeln!(
        o,
        "- {} in exposed stores; people affected: {}.",
        records_phrase(&sum),
        sum.people_phrase()
    );
    if let Some(i) = &sum.impact {
        let _ = writeln!(o, "- How people were counted across stores: {}.", i.method);
    }
    if !sum.records_by_category.is_empty() {
        let _ = writeln!(o, "\n| category | records exposed |\n|---|---|");
        let mut cats: Vec<_> = sum.records_by_category.iter().collect();
        cats.sort_by_key(|c| std::cmp::Reverse(*c.1));
        for (k, v) in cats {
            let _ = writeln!(o, "| {} (`{k}`) | {} |", category_label(k), thousands(*v));
        }
    }
    let _ = writeln!(o, "\n## Services\n");
    let _ = writeln!(o, "| severity | endpoint | protocol | product | access | evidence |\n|---|---|---|---|---|---|");
    let mut services: Vec<_> = report.services.iter().collect();
    services.sort_by_key(|s| std::cmp::Reverse(s.severity));
    for s in &services {
        let product = product(s);
        let _ = writeln!(
            o,
            "| {} | {} | {}{} | {} | {} | {} |",
            s.severity,
            endpoint(s),
            s.protocol,
            if s.tls { "+tls" } else { "" },
            md_cell(&product),
            s.access,
            md_cell(&s.evidence.join("; "))
        );
    }
    let open: Vec<_> = services.iter().filter(|s| s.exposure.is_some()).collect();
    if !open.is_empty() {
        let _ = writeln!(o, "\n## Exposure windows\n");
        for s in open {
            if let Some(x) = &s.exposure {
                let _ = writeln!(o, "- {}: {}", endpoint(s), x.describe());
            }
        }
    }
    for s in services.iter().filter(|s| !s.containers.is_empty()) {
        let _ = writeln!(o, "\n### {} ({})\n", endpoint(s), s.protocol);
        if let Some(x) = &s.exposure {
            let _ = writeln!(o, "{}.\n", x.describe());
        }
        let _ = writeln!(
            o,
            "| container | kind | records | people ≈ | categories |\n|---|---|---|---|---|"
        );
        for c in &s.containers {
            let _ = writeln!(
                o,
                "| {}{} | {} | {}{} | {} | {} |",
                md_code(&c.name),
                if c.system { " (system)" } else { "" },
                c.kind,
                if c.records_estimated { "≈ " } else { "" },
                c.records.map(thousands).unwrap_or_else(|| "?".into()),
                c.subjects_estimate
                    .map(thousands)
                    .unwrap_or_else(|| "–".into()),
                c.categories.join(", ")
            );
        }
        let methods: Vec<String> = s
            .containers
            .iter()
            .filter_map(|c| {
                let m = c.subjects_method.as_deref()?;
                Some(format!("- {}: {}", md_code(&c.name), md_cell(m)))
            })
            .collect();
        if !methods.is_empty() {
            let _ = writeln!(o, "\nHow people were counted:\n\n{}", methods.join("\n"));
        }
    }
    o
}

/// The GDPR Art. 33(3) notification draft. `windows` holds the exposure window of exposed
/// services from the store's history (key: `address:port`).
pub fn gdpr(report: &ScanReport, windows: &BTreeMap<String, Window>) -> String {
    let sum = Summary::of(report);
    let exposed_services: Vec<_> = report.services.iter().filter(|s| exposed(s)).collect();
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Personal data breach notification — draft (GDPR Art. 33)\n"
    );
    if let Some(c) = caveat(report) {
        let _ = writeln!(o, "> **{}**\n", md_text(&c));
    }
    let _ = writeln!(
        o,
        "> Draft prepared from leakscope scan `{}` ({}). Facts below come from the scan; every \
         **[TO COMPLETE]** is for the controller to fill in. Review before sending to the \
         supervisory authority within 72 hours of becoming aware of the breach.\n",
        report.scan_id,
        finished(report)
    );
    let _ = writeln!(
        o,
        "## 1. Nature of the personal data breach (Art. 33(3)(a))\n"
    );
    let _ = writeln!(
        o,
        "{} data store(s) were readable from the network without credentials (or with \
         well-known default credentials), i.e. a breach of confidentiality:\n",
        exposed_services.len()
    );
    for s in &exposed_services {
        let key = endpoint(s);
        let window = match (&s.exposure, windows.get(&key)) {
            (Some(x), _) => x.describe(),
            (None, Some(w)) => format!(
                "first seen exposed {}, last seen exposed {}",
                w.first_seen_open, w.last_seen_open
            ),
            (None, None) => format!("seen exposed in this scan ({})", report.started_at),
        };
        let product = product(s);
        let _ = writeln!(
            o,
            "- `{key}` — {} {}, access `{}`; {window}.",
            s.protocol,
            md_text(&product),
            s.access
        );
        let _ = writeln!(o, "  Evidence: {}", md_text(&s.evidence.join("; ")));
    }
    let _ = writeln!(o, "\nExposure window: from **[TO COMPLETE: when the store became reachable, e.g. from change logs]** to **[TO COMPLETE: when access was closed]**. Scans observed it as stated above.\n");
    let _ = writeln!(o, "### Categories of personal data concerned\n");
    if sum.records_by_category.is_empty() {
        let _ = writeln!(
            o,
            "No sensitive categories were classified in the sampled data. **[TO COMPLETE]**\n"
        );
    } else {
        let _ = writeln!(o, "| category | id | records |\n|---|---|---|");
        let mut cats: Vec<_> = sum.records_by_category.iter().collect();
        cats.sort_by_key(|c| std::cmp::Reverse(*c.1));
        for (k, v) in cats {
            let _ = writeln!(o, "| {} | `{k}` | {} |", category_label(k), thousands(*v));
        }
        let special: Vec<&str> = sum
            .records_by_category
            .keys()
            .filter(|k| k.starts_with("health."))
            .map(String::as_str)
            .collect();
        if !special.is_empty() {
            let _ = writeln!(
                o,
                "\nHealth data is a special category of personal data (Art. 9 GDPR)."
            );
        }
        let _ = writeln!(o);
    }
    let _ = writeln!(
        o,
        "### Categories and approximate number of data subjects\n"
    );
    let _ = writeln!(
        o,
        "- Categories of data subjects: **[TO COMPLETE: e.g. customers, app users, employees]** (the stores hold {}).",
        if sum.records_by_category.keys().any(|k| k.starts_with("identity.")) {
            "identified individuals (names, e-mail addresses or user ids)"
        } else {
            "no directly identifying fields in the sampled data"
        }
    );
    let _ = writeln!(
        o,
        "- Approximate number of data subjects: **{} {}** ({}).",
        if sum.subjects_from_records {
            "at most"
        } else {
            "about"
        },
        thousands(sum.subjects),
        match &sum.impact {
            Some(i) => format!(
                "95 % interval {} to {}; distinct people across all exposed stores, the same \
                 person counted once: {}",
                thousands(i.people_low),
                thousands(i.people_high),
                i.method
            ),
            None if sum.subjects_from_records => {
                "upper bound from record counts; no distinct-person estimate was available".into()
            }
            None => "distinct people per store, summed over stores; the same person may be in \
                     several stores"
                .into(),
        }
    );
    let _ = writeln!(
        o,
        "- Approximate number of personal data records: **{}**.\n",
        if sum.exposed > 0 && !sum.inventoried {
            "not counted (the scan made no inventory) [TO COMPLETE]".to_string()
        } else {
            thousands(sum.exposed_records)
        }
    );
    let _ = writeln!(o, "## 2. Contact point (Art. 33(3)(b))\n\nData protection officer or other contact point: **[TO COMPLETE: name, e-mail, phone]**\n");
    let _ = writeln!(o, "## 3. Likely consequences (Art. 33(3)(c))\n");
    let cats = &sum.records_by_category;
    let mut consequences = Vec::new();
    if cats.keys().any(|k| k.starts_with("credential.")) {
        consequences.push("Account takeover and access to linked third-party services using the exposed tokens or credentials.");
    }
    if cats.keys().any(|k| k.starts_with("health.")) {
        consequences.push("Disclosure of health data (special category), with risk of discrimination and distress.");
    }
    if cats
        .keys()
        .any(|k| k.starts_with("financial.") || k == "government.id")
    {
        consequences
            .push("Fraud and identity theft using payment, bank or government identifiers.");
    }
    if cats.keys().any(|k| k.starts_with("identity.")) {
        consequences
            .push("Phishing and spam targeting the affected people using their contact details.");
    }
    if cats
        .keys()
        .any(|k| k.starts_with("network.") || k.starts_with("device."))
    {
        consequences.push("Profiling of households and devices (network names, device identifiers and locations).");
    }
    if consequences.is_empty() {
        consequences.push("**[TO COMPLETE]**");
    }
    for c in consequences {
        let _ = writeln!(o, "- {c}");
    }
    let _ = writeln!(o, "\n## 4. Measures taken or proposed (Art. 33(3)(d))\n");
    let _ = writeln!(o, "- **[TO COMPLETE: access closed at (time), by (whom)]**");
    if cats.keys().any(|k| k.starts_with("credential.")) {
        let _ = writeln!(o, "- Revoke every exposed credential (the scan's revocation list identifies them by keyed fingerprint) and sign out affected sessions. **[TO COMPLETE: done at]**");
    }
    let _ = writeln!(o, "- Audit all other data stores for the same exposure (re-run leakscope over the whole estate). **[TO COMPLETE]**");
    let _ = writeln!(o, "- Inform affected data subjects where the risk is high (Art. 34). **[TO COMPLETE: decision and date]**");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_from_a_server_is_shown_not_rendered() {
        assert_eq!(md_text("<img src=x>|*a*"), "\\<img src=x\\>\\|\\*a\\*");
        assert_eq!(md_code("a`b"), "``a`b``");
        assert_eq!(md_code("`x|y"), "`` `x\\|y ``");
        assert_eq!(md_code("users"), "`users`");
    }
}
