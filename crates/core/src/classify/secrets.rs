//! The secret ruleset: hundreds of vendors' token formats (GitHub, Slack, Stripe, GitLab,
//! Google, OpenAI, Twilio …) from a maintained, versioned ruleset used as data — gitleaks'
//! default rules (`config/gitleaks.toml`, MIT licence, version [`RULESET_VERSION`]).
//!
//! The ruleset is not part of the repository: `scripts/secret-rules.sh` fetches it from the Go
//! module proxy (the module `github.com/zricethezav/gitleaks/v8` at that version, checked
//! against its pinned checksum), and the build script embeds it when its SHA-256 is the pinned
//! one. A build without it works, without these formats (`SecretRules::builtin().is_empty()`);
//! the project's own rules (Amazon `Atza|`, JWT, PEM, password hashes …) do not depend on it.
//!
//! A rule's `keywords` are its prefilter, as in gitleaks, with one difference that keeps the
//! classifier fast: a stored value is the token itself, so its keyword stands at its start
//! (`ghp_…`, `xoxb-…`, `AKIA…`) or right after a URL's scheme (`https://hooks.slack.com/…`).
//! The keywords are indexed by their first two bytes (ASCII case-insensitive); a value costs
//! one table lookup there, and only the rules whose keyword it starts with run their regular
//! expression, compiled on first use. (gitleaks searches keywords anywhere because it reads
//! source files, where a token follows its variable's name.) A rule's
//! `entropy` applies to its secret group, and its stop words (allowlists) are honoured. The
//! classifier runs the ruleset on token-shaped values only (see the detector's prefilter).

use std::sync::OnceLock;

use regex::Regex;
use serde::Deserialize;

/// The ruleset's upstream version (see `scripts/secret-rules.sh`).
pub const RULESET_VERSION: &str = "gitleaks v8.30.1";
/// The embedded ruleset text (empty when the build did not have it).
const RULESET: &str = include_str!(concat!(env!("OUT_DIR"), "/secret_rules.toml"));
/// Compiled size limit of one rule's pattern.
const REGEX_SIZE: usize = 4 << 20;
/// Cache limit of one rule's lazy DFA.
const DFA_SIZE: usize = 256 << 10;

#[derive(Deserialize)]
struct FileSpec {
    #[serde(default)]
    rules: Vec<RuleSpec>,
}

#[derive(Deserialize)]
struct RuleSpec {
    id: String,
    regex: Option<String>,
    #[serde(default)]
    keywords: Vec<String>,
    entropy: Option<f64>,
    #[serde(rename = "secretGroup")]
    secret_group: Option<usize>,
    #[serde(default)]
    allowlists: Vec<AllowSpec>,
}

#[derive(Deserialize)]
struct AllowSpec {
    #[serde(default)]
    stopwords: Vec<String>,
}

/// One rule of the ruleset.
#[derive(Debug)]
pub struct SecretRule {
    pub id: String,
    pattern: String,
    entropy: f64,
    group: Option<usize>,
    stopwords: Vec<String>,
    /// Compiled on first use; None when the pattern does not compile here.
    re: OnceLock<Option<Regex>>,
}

impl SecretRule {
    fn regex(&self) -> Option<&Regex> {
        self.re
            .get_or_init(|| {
                regex::RegexBuilder::new(&self.pattern)
                    .size_limit(REGEX_SIZE)
                    .dfa_size_limit(DFA_SIZE)
                    .build()
                    .ok()
            })
            .as_ref()
    }

    /// Whether the rule finds a secret in `v`.
    fn matches(&self, v: &str) -> bool {
        let Some(re) = self.regex() else {
            return false;
        };
        let Some(caps) = re.captures(v) else {
            return false;
        };
        let secret = self
            .group
            .and_then(|g| caps.get(g))
            .or_else(|| caps.get(1))
            .or_else(|| caps.get(0))
            .map_or("", |m| m.as_str());
        if secret.is_empty() {
            return false;
        }
        if self.entropy > 0.0 && super::detect::entropy(secret) < self.entropy {
            return false;
        }
        let lower = secret.to_ascii_lowercase();
        !self.stopwords.iter().any(|w| lower.contains(w.as_str()))
    }
}

/// A compiled ruleset.
#[derive(Debug)]
pub struct SecretRules {
    rules: Vec<SecretRule>,
    /// Keywords, lower case, with the rules each belongs to.
    keywords: Vec<(String, Vec<u32>)>,
    /// Whether some keyword of three bytes or more starts with these three bytes (lower case,
    /// hashed to 16 bits): 8 KiB that stay in cache, so most values are turned away with one
    /// bit test.
    heads: Vec<u64>,
    /// Whether some two-byte keyword (`sk`, `ey` …) is these two bytes.
    short: Vec<u16>,
    /// (first two bytes, index into `keywords`), sorted.
    by_head: Vec<(u16, u16)>,
}

fn head3(b: &[u8]) -> Option<usize> {
    match b {
        [a, c, d, ..] => {
            let x = u32::from(a.to_ascii_lowercase()) << 16
                | u32::from(c.to_ascii_lowercase()) << 8
                | u32::from(d.to_ascii_lowercase());
            Some((x.wrapping_mul(0x9E37_79B1) >> 16) as usize)
        }
        _ => None,
    }
}

fn head_of(b: &[u8]) -> Option<usize> {
    match b {
        [a, c, ..] => {
            Some(usize::from(a.to_ascii_lowercase()) << 8 | usize::from(c.to_ascii_lowercase()))
        }
        _ => None,
    }
}

impl SecretRules {
    /// Compiles a ruleset in gitleaks' format (rules without a pattern or keywords are
    /// skipped: they match file paths or would run on every value).
    pub fn parse(text: &str) -> Result<SecretRules, String> {
        let spec: FileSpec = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut rules = Vec::new();
        let mut words: Vec<String> = Vec::new();
        let mut by_keyword: Vec<Vec<u32>> = Vec::new();
        for r in spec.rules {
            let Some(pattern) = r.regex else { continue };
            if r.keywords.is_empty() {
                continue;
            }
            let ri = rules.len() as u32;
            for k in r.keywords {
                let k = k.to_ascii_lowercase();
                match words.iter().position(|w| *w == k) {
                    Some(i) => by_keyword[i].push(ri),
                    None => {
                        words.push(k);
                        by_keyword.push(vec![ri]);
                    }
                }
            }
            rules.push(SecretRule {
                id: r.id,
                pattern,
                entropy: r.entropy.unwrap_or(0.0),
                group: r.secret_group.filter(|g| *g > 0),
                stopwords: r
                    .allowlists
                    .into_iter()
                    .flat_map(|a| a.stopwords)
                    .map(|w| w.to_ascii_lowercase())
                    .collect(),
                re: OnceLock::new(),
            });
        }
        let mut heads = vec![0u64; (1 << 16) / 64];
        let mut short = Vec::new();
        let mut by_head = Vec::new();
        let mut keywords = Vec::new();
        for (w, rs) in words.into_iter().zip(by_keyword) {
            // A one-byte keyword would send every value to its rules.
            let Some(h) = head_of(w.as_bytes()) else {
                continue;
            };
            match head3(w.as_bytes()) {
                Some(h3) => heads[h3 / 64] |= 1 << (h3 % 64),
                None => short.push(h as u16),
            }
            by_head.push((h as u16, keywords.len() as u16));
            keywords.push((w, rs));
        }
        by_head.sort_unstable();
        Ok(SecretRules {
            rules,
            keywords,
            heads,
            short,
            by_head,
        })
    }

    /// The embedded ruleset, compiled on first use (empty when the build did not have it).
    pub fn builtin() -> &'static SecretRules {
        static BUILTIN: OnceLock<SecretRules> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            SecretRules::parse(RULESET).unwrap_or_else(|_| SecretRules {
                rules: Vec::new(),
                keywords: Vec::new(),
                heads: vec![0; (1 << 16) / 64],
                short: Vec::new(),
                by_head: Vec::new(),
            })
        })
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[SecretRule] {
        &self.rules
    }

    /// The first rule allowed by `allowed` (a bit per rule index) that finds a secret in `v`.
    pub fn first_match(&self, v: &str, allowed: &[u64]) -> Option<&SecretRule> {
        let b = v.as_bytes();
        // The token's start: the value's, or after a URL's scheme.
        let at = match b.iter().take(12).position(|&c| c == b':') {
            Some(i) if b[i + 1..].starts_with(b"//") => i + 3,
            _ => 0,
        };
        let rest = &b[at..];
        let h = head_of(rest)?;
        let long = head3(rest).is_some_and(|h3| self.heads[h3 / 64] & (1 << (h3 % 64)) != 0);
        if !long && !self.short.contains(&(h as u16)) {
            return None;
        }
        let from = self.by_head.partition_point(|&(x, _)| usize::from(x) < h);
        let mut tried: [u64; 8] = [0; 8];
        for &(_, k) in self.by_head[from..]
            .iter()
            .take_while(|&&(x, _)| usize::from(x) == h)
        {
            let (word, rules) = &self.keywords[usize::from(k)];
            if rest.len() < word.len() || !rest[..word.len()].eq_ignore_ascii_case(word.as_bytes())
            {
                continue;
            }
            for &ri in rules {
                let i = ri as usize;
                let bit = |set: &[u64]| set.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0);
                if !bit(allowed) || (i < 512 && bit(&tried)) {
                    continue;
                }
                if i < 512 {
                    tried[i / 64] |= 1 << (i % 64);
                }
                if self.rules[i].matches(v) {
                    return Some(&self.rules[i]);
                }
            }
        }
        None
    }

    /// The rule indices whose id starts with one of `only` (all when empty) and with none of
    /// `except`, as bits.
    pub fn select(&self, only: &[String], except: &[String]) -> Vec<u64> {
        let mut bits = vec![0u64; self.rules.len().div_ceil(64)];
        for (i, r) in self.rules.iter().enumerate() {
            let take = (only.is_empty() || only.iter().any(|p| r.id.starts_with(p.as_str())))
                && !except.iter().any(|p| r.id.starts_with(p.as_str()));
            if take {
                bits[i / 64] |= 1 << (i % 64);
            }
        }
        bits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
[[rules]]
id = "github-pat"
regex = '''ghp_[0-9a-zA-Z]{36}'''
keywords = ["ghp_"]

[[rules]]
id = "vendor-key"
regex = '''\bvk-([a-z0-9]{24})\b'''
entropy = 3.0
keywords = ["vk-"]
[[rules.allowlists]]
stopwords = ["example"]

[[rules]]
id = "by-path"
path = '''\.p12$'''
"#;

    #[test]
    fn keywords_gate_patterns() {
        let s = SecretRules::parse(SAMPLE).unwrap();
        assert_eq!(s.len(), 2);
        let all = s.select(&[], &[]);
        let tok = "ghp_R8d2KxW0qL5mN7vB3cJ9tY1uF4hG6sA2pE0z";
        assert_eq!(
            s.first_match(tok, &all).map(|r| r.id.as_str()),
            Some("github-pat")
        );
        assert!(s.first_match("ghp_short", &all).is_none());
        assert!(
            s.first_match("vk-aaaaaaaaaaaaaaaaaaaaaaaa", &all).is_none(),
            "entropy"
        );
        assert!(s.first_match("vk-q8zr2lkp0vxc7nw4ty1bh6jm", &all).is_some());
        assert!(
            s.first_match("vk-exampleq8zr2lkp0vxc7nw4", &all).is_none(),
            "stop word"
        );
        let none = s.select(&[], &["github".to_string()]);
        assert!(s.first_match(tok, &none).is_none());
    }

    /// The embedded ruleset, when the build had it (`./test` requires it:
    /// LEAKSCOPE_REQUIRE_SECRET_RULES=1).
    #[test]
    fn the_embedded_ruleset_finds_vendor_tokens() {
        let s = SecretRules::builtin();
        if s.is_empty() {
            assert!(
                std::env::var_os("LEAKSCOPE_REQUIRE_SECRET_RULES").is_none(),
                "built without the secret ruleset (scripts/secret-rules.sh)"
            );
            return;
        }
        assert!(s.len() > 150, "{} rules", s.len());
        assert!(s.keywords.len() < u16::MAX as usize);
        let all = s.select(&[], &[]);
        for (tok, want) in [
            ("ghp_R8d2KxW0qL5mN7vB3cJ9tY1uF4hG6sA2pE0z", "github-pat"),
            ("glpat-Zx81bK2pQ9rT4vW7yA0c", "gitlab-pat"),
            (
                "xoxb-2048204820-4096409640-Zm9vYmFyYmF6cXV4cXV1eA",
                "slack-bot-token",
            ),
            ("AKIAZ7QWERTYUIOPASDF", "aws-access-token"),
        ] {
            assert_eq!(
                s.first_match(tok, &all).map(|r| r.id.as_str()),
                Some(want),
                "{tok}"
            );
        }
        for plain in [
            "hello world",
            "Ada Lovelace",
            "2019-12-04T10:00:00Z",
            "e94180cd-ef88-4a01-b3d8-5ecdd7a393fc",
        ] {
            assert!(s.first_match(plain, &all).is_none(), "{plain}");
        }
    }
}
