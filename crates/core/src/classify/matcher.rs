//! Name matching as bit tests.
//!
//! Every word the rules mention gets a number when the rules are compiled; a field's words
//! become a bit set over that vocabulary once per field, so checking a field against every
//! phrase, veto and context word of every rule costs bit tests instead of string comparisons
//! (string lookups were most of the classifier's time).

use std::collections::HashMap;

use super::rules::{Context, Negative, Phrase, RuleSet};
use super::words::WordSet;

/// A set of vocabulary ids.
#[derive(Debug, Clone, Default)]
pub struct Bits(Vec<u64>);

impl Bits {
    fn with_len(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }

    fn set(&mut self, i: u32) {
        self.0[(i / 64) as usize] |= 1 << (i % 64);
    }

    pub fn has(&self, i: u32) -> bool {
        self.0
            .get((i / 64) as usize)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn all(&self, ids: &[u32]) -> bool {
        ids.iter().all(|&i| self.has(i))
    }
}

/// A veto entry over vocabulary ids.
#[derive(Debug, Clone)]
pub enum Neg {
    All(Vec<u32>),
    First(u32),
}

/// The name side of one rule over vocabulary ids.
#[derive(Debug, Clone)]
pub struct RuleNames {
    pub names: Vec<Vec<u32>>,
    pub weak: Vec<Vec<u32>>,
    pub negative: Vec<Neg>,
    pub negative_context: Vec<Neg>,
    pub context_words: Vec<u32>,
    pub context_siblings: Vec<String>,
    /// Per global negative: whether it does not apply to this rule (its words are the rule's).
    pub global_exempt: Vec<bool>,
}

/// The words of a field (or container) as bit sets.
#[derive(Debug, Clone, Default)]
pub struct WordBits {
    pub leaf: Bits,
    pub scope: Bits,
    pub path: Bits,
    pub leaf_first: Option<u32>,
    /// Words in the leaf as split (`otp_required_for_login`: 4).
    pub leaf_words: usize,
    /// Whether each global negative hits the leaf.
    pub global_hits: Vec<bool>,
}

/// The compiled vocabulary and every rule's name side.
#[derive(Debug, Clone)]
pub struct Matcher {
    ids: HashMap<String, u32>,
    pub rules: Vec<RuleNames>,
    global: Vec<Neg>,
}

impl Matcher {
    pub fn new(set: &RuleSet) -> Matcher {
        let mut ids: HashMap<String, u32> = HashMap::new();
        let mut id = |w: &str| -> u32 {
            let n = ids.len() as u32;
            *ids.entry(w.to_string()).or_insert(n)
        };
        let mut phrase = |p: &Phrase| p.0.iter().map(|w| id(w)).collect::<Vec<u32>>();
        let mut neg = |n: &Negative| match n {
            Negative::Phrase(p) => Neg::All(phrase(p)),
            Negative::First(w) => Neg::First(phrase(&Phrase(vec![w.clone()]))[0]),
        };
        let global: Vec<Neg> = set.global_negative.iter().map(&mut neg).collect();
        let mut rules = Vec::with_capacity(set.rules.len());
        for r in &set.rules {
            let names = r
                .names
                .iter()
                .map(|p| match neg(&Negative::Phrase(p.clone())) {
                    Neg::All(v) => v,
                    Neg::First(i) => vec![i],
                })
                .collect();
            let weak = r
                .weak_names
                .iter()
                .map(|p| match neg(&Negative::Phrase(p.clone())) {
                    Neg::All(v) => v,
                    Neg::First(i) => vec![i],
                })
                .collect();
            let negative = r.negative.iter().map(&mut neg).collect();
            let negative_context = r.negative_context.iter().map(&mut neg).collect();
            let mut context_words = Vec::new();
            let mut context_siblings = Vec::new();
            for c in &r.context {
                match c {
                    Context::Word(w) => {
                        if let Neg::All(v) = neg(&Negative::Phrase(Phrase(vec![w.clone()]))) {
                            context_words.extend(v);
                        }
                    }
                    Context::Sibling(p) => context_siblings.push(p.clone()),
                }
            }
            let global_exempt = set
                .global_negative
                .iter()
                .map(|n| match n {
                    Negative::Phrase(p) => p.0.iter().all(|x| r.own_words.contains(x)),
                    Negative::First(x) => r.own_words.contains(x),
                })
                .collect();
            rules.push(RuleNames {
                names,
                weak,
                negative,
                negative_context,
                context_words,
                context_siblings,
                global_exempt,
            });
        }
        Matcher { ids, rules, global }
    }

    fn bits(&self, ws: &WordSet) -> Bits {
        let mut b = Bits::with_len(self.ids.len());
        for w in &ws.all {
            if let Some(&i) = self.ids.get(w) {
                b.set(i);
            }
        }
        b
    }

    /// The bit sets of a field's (or a container's) words.
    pub fn word_bits(&self, leaf: &WordSet, scope: &WordSet, path: &WordSet) -> WordBits {
        let leaf_bits = self.bits(leaf);
        let leaf_first = leaf.first().and_then(|w| self.ids.get(w).copied());
        let global_hits = self
            .global
            .iter()
            .map(|n| hit(n, &leaf_bits, leaf_first))
            .collect();
        WordBits {
            scope: self.bits(scope),
            path: self.bits(path),
            leaf: leaf_bits,
            leaf_first,
            leaf_words: leaf.seq.len(),
            global_hits,
        }
    }
}

/// Whether a veto entry hits a word set.
pub fn hit(n: &Neg, words: &Bits, first: Option<u32>) -> bool {
    match n {
        Neg::All(ids) => words.all(ids),
        Neg::First(i) => first == Some(*i),
    }
}

/// How a phrase list matches: 2 = in the leaf or spanning parent and leaf, 1 = only in the
/// parent, 0 = not at all.
pub fn phrase_level(p: &[u32], f: &WordBits) -> u8 {
    if f.leaf.all(p) {
        2
    } else if f.scope.all(p) {
        if p.iter().any(|&i| f.leaf.has(i)) {
            2
        } else {
            1
        }
    } else {
        0
    }
}
