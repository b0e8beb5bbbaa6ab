//! Grouping the keys of key-value stores (Redis, Memcached) into containers by key pattern.
//!
//! Applications name keys `kind:id` (`user:42`, `sess:6f1c…`, `counter:events:2024-01-01`), so
//! everything before the last `:` is the pattern and the last part is the id: `user:*`. A
//! pattern that matched a single key is reported as that key (`queue:jobs`), because it is one
//! object, not a family. Keys without `:` fall back to `.`, `/` and `|`, then to the text before
//! the first digit. The number of groups is capped; keys beyond it are counted under `*`.

use std::collections::HashMap;

/// The pattern of one key.
pub fn pattern(key: &str) -> String {
    for sep in [':', '.', '/', '|'] {
        if let Some(i) = key.rfind(sep) {
            if i > 0 {
                return format!("{}{sep}*", &key[..i]);
            }
        }
    }
    match key.find(|c: char| c.is_ascii_digit()) {
        Some(i) if i > 0 => format!("{}*", &key[..i]),
        _ => key.to_string(),
    }
}

/// Keys seen for one pattern.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    pub keys: u64,
    pub bytes: u64,
    /// The first keys seen, up to the sample size (SCAN and metadump orders are hash orders, so
    /// these are spread across the keyspace, not the oldest or newest).
    pub sample: Vec<String>,
    /// The one key when `keys == 1`.
    pub only: Option<String>,
}

/// Accumulates keys into patterns with a cap on the number of patterns.
#[derive(Debug, Clone)]
pub struct Grouper {
    groups: HashMap<String, Group>,
    order: Vec<String>,
    max_groups: usize,
    sample: usize,
    pub total: u64,
}

/// The pattern under which keys beyond the group cap are counted.
pub const OVERFLOW: &str = "*";

impl Grouper {
    pub fn new(max_groups: usize, sample: usize) -> Grouper {
        Grouper {
            groups: HashMap::new(),
            order: Vec::new(),
            max_groups: max_groups.max(1),
            sample,
            total: 0,
        }
    }

    pub fn add(&mut self, key: &str, bytes: u64) {
        self.total += 1;
        let mut p = pattern(key);
        if !self.groups.contains_key(&p) && self.groups.len() >= self.max_groups {
            p = OVERFLOW.to_string();
        }
        let g = self.groups.entry(p.clone()).or_insert_with(|| {
            self.order.push(p);
            Group::default()
        });
        g.keys += 1;
        g.bytes += bytes;
        if g.keys == 1 {
            g.only = Some(key.to_string());
        } else {
            g.only = None;
        }
        if g.sample.len() < self.sample {
            g.sample.push(key.to_string());
        }
    }

    /// Groups in first-seen order, as (container name, group). Single-key groups are named by
    /// their key.
    pub fn finish(mut self) -> Vec<(String, Group)> {
        self.order
            .into_iter()
            .filter_map(|p| {
                let g = self.groups.remove(&p)?;
                let name = match (&g.only, p.as_str()) {
                    (Some(k), pat) if pat != OVERFLOW => k.clone(),
                    _ => p,
                };
                Some((name, g))
            })
            .collect()
    }

    pub fn groups(&self) -> usize {
        self.groups.len()
    }
}

/// Decodes `%XX` escapes (memcached's metadump URL-encodes keys).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = hex {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert_eq!(pattern("user:2f1c-aa"), "user:*");
        assert_eq!(pattern("counter:events:2024-01-01"), "counter:events:*");
        assert_eq!(pattern("cache/user/42"), "cache/user/*");
        assert_eq!(pattern("session12345"), "session*");
        assert_eq!(pattern("config"), "config");
        assert_eq!(pattern(":odd"), ":odd");
    }

    #[test]
    fn single_key_groups_keep_their_name_and_overflow_is_counted() {
        let mut g = Grouper::new(3, 2);
        for k in [
            "user:1",
            "user:2",
            "user:3",
            "queue:jobs",
            "a:1",
            "b:1",
            "c:1",
        ] {
            g.add(k, 10);
        }
        let out = g.finish();
        let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["user:*", "queue:jobs", "a:1", "*"]);
        assert_eq!(out[0].1.keys, 3);
        assert_eq!(out[0].1.sample, vec!["user:1", "user:2"]);
        assert_eq!(out[3].1.keys, 2);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("session%3Aab%2Fc"), "session:ab/c");
        assert_eq!(percent_decode("bad%zz%4"), "bad%zz%4");
    }
}
