//! Field names as words: how a path like `devices[].firmwareVersion` or `posta_elettronica`
//! becomes the vocabulary the name rules match against.
//!
//! Names are folded (lower case, Latin diacritics removed, `ß` → `ss`) so one rule word covers
//! `téléphone`, `Telephone` and `TELEPHONE`. A segment is split on every non-alphanumeric
//! character and at camelCase boundaries. Because real schemas glue and pluralise words
//! unpredictably (`e_mail`, `user_name`, `emails`, `ipv4`), each word set also holds the
//! concatenation of adjacent words, the singular of plurals and the letters-only form of words
//! with digits; matching is on whole words of that set, never on substrings, so `account` does
//! not contain `count`.

use std::collections::BTreeSet;

/// Lower-cases and strips the Latin diacritics of the six supported languages.
pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        for l in c.to_lowercase() {
            match l {
                'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' => out.push('a'),
                'æ' => out.push_str("ae"),
                'ç' | 'č' | 'ć' => out.push('c'),
                'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ę' | 'ě' => out.push('e'),
                'ì' | 'í' | 'î' | 'ï' | 'ī' => out.push('i'),
                'ñ' | 'ń' | 'ň' => out.push('n'),
                'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' => out.push('o'),
                'œ' => out.push_str("oe"),
                'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' => out.push('u'),
                'ý' | 'ÿ' => out.push('y'),
                'ß' => out.push_str("ss"),
                'š' | 'ś' => out.push('s'),
                'ž' | 'ź' | 'ż' => out.push('z'),
                'ł' => out.push('l'),
                'ř' => out.push('r'),
                _ => out.push(l),
            }
        }
    }
    out
}

/// Splits one name segment into folded words: on non-alphanumerics and camelCase boundaries
/// (`firmwareVersion` → `firmware version`, `HTTPServer` → `http server`).
pub fn split_words(segment: &str) -> Vec<String> {
    let chars: Vec<char> = segment.chars().collect();
    let mut words = Vec::new();
    let mut cur = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                words.push(fold(&cur));
                cur.clear();
            }
            continue;
        }
        if !cur.is_empty() && c.is_uppercase() {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            // aB → a|B ; ABc → A|Bc (the last capital of a run starts the next word)
            if prev.is_lowercase() || prev.is_numeric() || (prev.is_uppercase() && next_lower) {
                words.push(fold(&cur));
                cur.clear();
            }
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        words.push(fold(&cur));
    }
    words
}

/// Splits a flattened path into its segments (`a.b[].c` → `a`, `b`, `c`); `:` and `/` also
/// separate, as in key-value patterns (`db0:user:*`).
pub fn segments(path: &str) -> Vec<&str> {
    path.split(['.', ':', '/'])
        .map(|s| s.trim_end_matches("[]").trim_start_matches("[]"))
        .map(|s| s.trim_matches(|c: char| c == '*' || c == '[' || c == ']'))
        .filter(|s| !s.is_empty())
        .collect()
}

/// The words of some name segments plus the derived forms the rules may match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WordSet {
    /// The words in order, as split.
    pub seq: Vec<String>,
    /// `seq` plus derived forms (joins of neighbours, singulars, letters-only forms).
    pub all: BTreeSet<String>,
}

impl WordSet {
    pub fn from_segments<'a>(segs: impl IntoIterator<Item = &'a str>) -> WordSet {
        let mut seq = Vec::new();
        for s in segs {
            seq.extend(split_words(s));
        }
        WordSet::from_words(seq)
    }

    pub fn from_words(seq: Vec<String>) -> WordSet {
        let mut all = BTreeSet::new();
        for (i, w) in seq.iter().enumerate() {
            add_forms(&mut all, w);
            if let Some(next) = seq.get(i + 1) {
                add_forms(&mut all, &format!("{w}{next}"));
            }
        }
        if seq.len() > 2 {
            all.insert(seq.concat());
        }
        WordSet { seq, all }
    }

    pub fn contains(&self, w: &str) -> bool {
        self.all.contains(w)
    }

    pub fn is_empty(&self) -> bool {
        self.seq.is_empty()
    }

    pub fn first(&self) -> Option<&str> {
        self.seq.first().map(String::as_str)
    }

    /// Union of two sets (for matching a phrase across a parent and its leaf).
    pub fn union(&self, other: &WordSet) -> WordSet {
        let mut seq = self.seq.clone();
        seq.extend(other.seq.iter().cloned());
        let mut all = self.all.clone();
        all.extend(other.all.iter().cloned());
        WordSet { seq, all }
    }
}

fn add_forms(all: &mut BTreeSet<String>, w: &str) {
    all.insert(w.to_string());
    if w.chars().any(|c| c.is_ascii_digit()) {
        let letters: String = w.chars().filter(|c| !c.is_ascii_digit()).collect();
        if letters.len() >= 2 {
            all.insert(letters);
        }
    }
    // Singulars: `emails` → `email`, `addresses` → `address`, `devices` → `device`.
    if w.len() >= 4 && w.ends_with('s') && !w.ends_with("ss") {
        all.insert(w[..w.len() - 1].to_string());
        if w.ends_with("sses") || w.ends_with("xes") || w.ends_with("ches") {
            all.insert(w[..w.len() - 2].to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_covers_european_spellings() {
        assert_eq!(fold("Téléphone"), "telephone");
        assert_eq!(fold("Größe"), "grosse");
        assert_eq!(fold("Contraseña"), "contrasena");
        assert_eq!(fold("densità_ossea"), "densita_ossea");
    }

    #[test]
    fn splitting_handles_snake_camel_and_acronyms() {
        assert_eq!(split_words("firmwareVersion"), ["firmware", "version"]);
        assert_eq!(split_words("HTTPServerIP"), ["http", "server", "ip"]);
        assert_eq!(split_words("posta-elettronica"), ["posta", "elettronica"]);
        assert_eq!(split_words("Körpergröße_cm"), ["korpergrosse", "cm"]);
        assert_eq!(segments("devices[].mac"), ["devices", "mac"]);
        assert_eq!(segments("[].request_id"), ["request_id"]);
        assert_eq!(
            segments("db0:stats:ssid_count:*"),
            ["db0", "stats", "ssid_count"]
        );
    }

    #[test]
    fn derived_forms_are_whole_words() {
        let w = WordSet::from_segments(["e_mail_addresses"]);
        assert!(w.contains("email"));
        assert!(w.contains("address"));
        let w = WordSet::from_segments(["account_total"]);
        assert!(!w.contains("count"));
        let w = WordSet::from_segments(["ipv4"]);
        assert!(w.contains("ipv4") && w.contains("ipv"));
    }
}
