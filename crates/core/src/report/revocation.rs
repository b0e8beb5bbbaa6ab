//! The revocation list: every exposed credential found in samples, as CSV of keyed
//! fingerprints (never the values), for `scan --revocation-list` and `watch --revocation-list`.

use crate::model::Service;
use crate::report::summary;

/// CSV (`category,endpoint,container,field,fingerprint`) of the credential fingerprints of the
/// exposed services among `services`, and how many lines it holds. The owner matches the
/// fingerprints against their own tokens (same key) to revoke them.
pub fn csv<'a>(services: impl IntoIterator<Item = &'a Service>) -> (String, usize) {
    let mut out = String::from("category,endpoint,container,field,fingerprint\n");
    let mut n = 0;
    let cell = |s: &str| {
        // A cell a spreadsheet would take for a formula (a name chosen by a server) is
        // quoted with a leading apostrophe, as OWASP advises for CSV files.
        let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{s}")
        } else {
            s.to_string()
        };
        if s.contains([',', '"', '\n', '\'']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s
        }
    };
    for s in services.into_iter().filter(|s| summary::exposed(s)) {
        let endpoint = summary::endpoint(s);
        for c in &s.containers {
            for f in &c.fields {
                let Some(cat) = f.categories.iter().find(|k| k.starts_with("credential.")) else {
                    continue;
                };
                for fp in &f.fingerprints {
                    out.push_str(&format!(
                        "{},{},{},{},{}\n",
                        cat,
                        endpoint,
                        cell(&c.name),
                        cell(&f.path),
                        fp
                    ));
                    n += 1;
                }
            }
        }
    }
    (out, n)
}

/// The credential categories exposed by `s`, each with how many fingerprints the sample holds
/// and where (`container/field`), for the "revoke" part of an alert.
pub fn kinds(s: &Service) -> Vec<(String, Vec<String>, u64)> {
    let mut by: std::collections::BTreeMap<String, (Vec<String>, u64)> = Default::default();
    for c in &s.containers {
        for f in &c.fields {
            for cat in f.categories.iter().filter(|k| k.starts_with("credential.")) {
                let e = by.entry(cat.clone()).or_default();
                let at = format!("{}/{}", c.name, f.path);
                if !e.0.contains(&at) && e.0.len() < 20 {
                    e.0.push(at);
                }
                e.1 += f.fingerprints.len() as u64;
            }
        }
    }
    by.into_iter().map(|(k, (w, n))| (k, w, n)).collect()
}
