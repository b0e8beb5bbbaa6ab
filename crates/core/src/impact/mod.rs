//! People across the whole scan, de-duplicated: the scan's `impact`.
//!
//! Every container whose fields name a person (e-mail, phone, user id, user name, national id)
//! gives a [`Sighting`]: per record read, the keyed fingerprints of its identifiers
//! ([`ids`]). Identifiers of one record are one person (an e-mail and a user id in one row), so
//! a person known by e-mail in one store and by id in another is linked through any record that
//! holds both, in any store of the scan.
//!
//! A container whose every record was read is *complete*: its people are known exactly, and
//! they are counted with a mergeable cardinality sketch (HyperLogLog++), merged over containers
//! and services. A container read only in part (too large for the people read's budget) adds
//! its people estimate times the share of its sampled people that are new: not among the
//! complete containers' people, nor, judged by how much of each was sampled, among the people
//! of the larger partial containers counted before it. Its share comes from a sample, so its
//! interval is the share's 95 % interval; complete containers add only the sketch's error.
//!
//! No raw identifier is kept: values are fingerprinted as they are read, and the fingerprint
//! key is drawn for the scan and never written.

pub mod ids;

use std::collections::{HashMap, HashSet};

use cardinality_estimator::CardinalityEstimator;

pub use ids::{IdKind, PeopleKey};

use crate::model::Impact;

/// Records read per container for the people count, beyond the classification sample: a
/// container with at most this many records is read whole. Ten thousand is the most one
/// OpenSearch/Elasticsearch search returns by default (`index.max_result_window`), so every
/// protocol's sampler can serve it in one read.
pub const PEOPLE_READ: usize = 10_000;

/// The sketch: HyperLogLog++ with 2^14 registers (standard error about 0.8 %), exact while
/// small. Fed fingerprints, never values.
type Sketch = CardinalityEstimator<u64, wyhash::WyHash, 14, 6>;

/// Relative error of the sketch at 95 % (2 × 1.04 / √2^14) once it counts approximately.
const SKETCH_ERR: f64 = 0.0163;

/// What one container's read says about its people.
#[derive(Debug, Clone, Default)]
pub struct Sighting {
    /// `address:port` of the service.
    pub service: String,
    pub container: String,
    /// The container's distinct people as estimated by the scan (`subjects_estimate`), if any.
    pub people: Option<u64>,
    /// Per record read: the fingerprints of its identifiers (one person).
    pub records: Vec<Vec<u64>>,
    /// Every record of the container was read.
    pub complete: bool,
    /// Identifier kinds seen (for the method's words).
    pub kinds: Vec<IdKind>,
}

/// Disjoint sets over fingerprints: identifiers found together in a record are one person.
#[derive(Default)]
struct Links {
    index: HashMap<u64, usize>,
    parent: Vec<usize>,
    /// The fingerprint of each slot.
    fps: Vec<u64>,
}

impl Links {
    fn id(&mut self, fp: u64) -> usize {
        let n = self.parent.len();
        let i = *self.index.entry(fp).or_insert(n);
        if i == n {
            self.parent.push(n);
            self.fps.push(fp);
        }
        i
    }

    fn root(&mut self, mut i: usize) -> usize {
        while self.parent[i] != i {
            self.parent[i] = self.parent[self.parent[i]];
            i = self.parent[i];
        }
        i
    }

    fn link(&mut self, fps: &[u64]) {
        let Some((&first, rest)) = fps.split_first() else {
            return;
        };
        let a = self.id(first);
        for &fp in rest {
            let b = self.id(fp);
            let (ra, rb) = (self.root(a), self.root(b));
            if ra != rb {
                self.parent[rb] = ra;
            }
        }
    }
}

/// Wilson's 95 % interval of a share `k` of `n`.
fn wilson(k: f64, n: f64) -> (f64, f64) {
    if n <= 0.0 {
        return (0.0, 1.0);
    }
    let z = 1.96_f64;
    let p = (k / n).clamp(0.0, 1.0);
    let d = 1.0 + z * z / n;
    let c = (p + z * z / (2.0 * n)) / d;
    let h = z * ((p * (1.0 - p) + z * z / (4.0 * n)) / n).sqrt() / d;
    ((c - h).max(0.0), (c + h).min(1.0))
}

/// People across `sightings`, de-duplicated, with a 95 % interval and the method in words.
/// `None` when no container named a person.
pub fn estimate(sightings: &[Sighting]) -> Option<Impact> {
    let mut links = Links::default();
    for s in sightings {
        for r in &s.records {
            links.link(r);
        }
    }
    // Each container's people: the roots of its records' identifiers.
    let people: Vec<HashSet<usize>> = sightings
        .iter()
        .map(|s| {
            s.records
                .iter()
                .filter_map(|r| r.first().map(|fp| links.index[fp]))
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|ids| ids.into_iter().map(|i| links.root(i)).collect())
        .collect();
    if people.iter().all(HashSet::is_empty) {
        return None;
    }

    // Complete containers: sketched per container, merged over the scan.
    let mut known = Sketch::new();
    let mut known_set: HashSet<usize> = HashSet::new();
    let mut complete = 0usize;
    for (s, p) in sightings.iter().zip(&people) {
        if !s.complete || p.is_empty() {
            continue;
        }
        let mut sketch = Sketch::new();
        for &root in p {
            // The root's own fingerprint names the person (any member would do).
            sketch.insert(&links.fps[root]);
        }
        known.merge(&sketch);
        known_set.extend(p);
        complete += 1;
    }
    let known_n = known.estimate() as f64;
    // Exact while small: the sketch keeps every fingerprint below a few hundred.
    let known_err = if (known_n - known_set.len() as f64).abs() < 0.5 {
        0.0
    } else {
        SKETCH_ERR
    };

    // Partial containers, the largest first.
    let mut partial: Vec<(usize, f64)> = sightings
        .iter()
        .zip(&people)
        .enumerate()
        .filter(|(_, (s, p))| !s.complete && !p.is_empty())
        .map(|(i, (s, p))| (i, s.people.unwrap_or(0).max(p.len() as u64) as f64))
        .collect();
    let name = |i: usize| (&sightings[i].service, &sightings[i].container);
    partial.sort_by(|a, b| b.1.total_cmp(&a.1).then(name(a.0).cmp(&name(b.0))));
    let (mut add, mut add_lo, mut add_hi) = (0.0, 0.0, 0.0);
    let mut counted: Vec<(usize, f64)> = Vec::new(); // (sighting, share of it sampled)
    for &(i, big_n) in &partial {
        let p = &people[i];
        let n = p.len() as f64;
        let rest: Vec<usize> = p
            .iter()
            .copied()
            .filter(|r| !known_set.contains(r))
            .collect();
        // Sampled people also sampled in a larger partial container: each match stands for
        // 1/f of them, f being how much of that container was sampled. A person sampled in
        // several is attributed to the first (largest) only.
        let (mut overlap, mut var) = (0.0, 0.0);
        let mut unmatched = rest.clone();
        for &(j, f) in &counted {
            let before = unmatched.len();
            unmatched.retain(|r| !people[j].contains(r));
            let m = (before - unmatched.len()) as f64;
            overlap += m / f;
            var += m / (f * f);
        }
        let r = rest.len() as f64;
        let sd = var.sqrt();
        // New people indistinguishable from none (within the matches' noise) count as none:
        // clamping each container's noise at zero would add it up, container after container,
        // into a bias; the interval keeps the possibility.
        let new = match (r - overlap).clamp(0.0, r) {
            x if x < 1.96 * sd => 0.0,
            x => x,
        };
        let (lo, _) = wilson((new - 1.96 * sd).max(0.0), n);
        let (_, hi) = wilson(((r - overlap).max(0.0) + 1.96 * sd).min(r), n);
        add += big_n * new / n;
        add_lo += big_n * lo;
        add_hi += big_n * hi;
        counted.push((i, (n / big_n).min(1.0)));
    }

    let people_n = (known_n + add).round();
    let low = (known_n * (1.0 - known_err) + add_lo).round().min(people_n);
    let high = (known_n * (1.0 + known_err) + add_hi).round().max(people_n);
    let mut kinds: Vec<IdKind> = sightings.iter().flat_map(|s| s.kinds.clone()).collect();
    kinds.sort();
    kinds.dedup();
    let services: HashSet<&str> = sightings.iter().map(|s| s.service.as_str()).collect();
    let mut method = format!(
        "distinct people over {} containers of {} services, linked by {} found together in a \
         record: {} containers read whole ({} people, HyperLogLog++ sketches merged)",
        sightings.len(),
        services.len(),
        kinds
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        complete,
        known_n.round()
    );
    if !partial.is_empty() {
        method.push_str(&format!(
            "; {} containers too large to read whole add their people estimate × the share of \
             their sampled people not already counted ({} people; 95 % interval from the samples)",
            partial.len(),
            add.round()
        ));
    }
    Some(Impact {
        people: people_n as u64,
        people_low: low as u64,
        people_high: high as u64,
        method,
    })
}

/// The identifier fields of a classified container: path and kind, by each field's strongest
/// category.
pub fn id_fields(c: &crate::model::Container) -> Vec<(&str, IdKind)> {
    c.fields
        .iter()
        .filter_map(|f| Some((f.path.as_str(), IdKind::of_category(f.categories.first()?)?)))
        .collect()
}

/// Whether `h`'s read holds every record of the container.
pub fn read_whole(h: &crate::inventory::Holding) -> bool {
    h.records_exact && h.records == Some(h.sample.len() as u64)
}

/// The sighting of classified container `c` from the records of `h` (the same container, read
/// by the classification sample or the people read): each record's identifiers at `c`'s
/// identifier paths, fingerprinted with `key` as it reads them. `None` when `c` names no one.
pub fn sighting(
    key: &PeopleKey,
    service: &str,
    c: &crate::model::Container,
    h: &crate::inventory::Holding,
) -> Option<Sighting> {
    let fields = id_fields(c);
    if fields.is_empty() {
        return None;
    }
    let records = h
        .sample
        .iter()
        .map(|rec| {
            let mut fps: Vec<u64> = rec
                .iter()
                .filter_map(|(p, v)| {
                    let (_, kind) = fields.iter().find(|(fp, _)| fp == p)?;
                    key.fingerprint(*kind, service, v)
                })
                .collect();
            fps.sort_unstable();
            fps.dedup();
            fps
        })
        .filter(|fps| !fps.is_empty())
        .collect();
    let mut kinds: Vec<IdKind> = fields.iter().map(|(_, k)| *k).collect();
    kinds.sort();
    kinds.dedup();
    Some(Sighting {
        service: service.to_string(),
        container: c.name.clone(),
        people: c.subjects_estimate,
        records,
        complete: read_whole(h),
        kinds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift), so the sampling tests need no RNG crate.
    struct Xs(u64);
    impl Xs {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    fn email(i: u64) -> String {
        format!("person{i}@example.org")
    }

    fn uid(i: u64) -> String {
        format!("{i:08x}-0000-4000-8000-{i:012x}")
    }

    /// A container of `people` (person numbers), read whole or `read` of them at random, each
    /// record holding the identifiers `ids` gives.
    fn store(
        key: &PeopleKey,
        name: &str,
        people: &[u64],
        read: Option<usize>,
        rng: &mut Xs,
        ids: impl Fn(u64) -> Vec<(IdKind, String)>,
    ) -> Sighting {
        let mut chosen: Vec<u64> = people.to_vec();
        if let Some(n) = read {
            // Partial Fisher-Yates: a uniform sample of n.
            for i in 0..n.min(chosen.len()) {
                let j = i + rng.below((chosen.len() - i) as u64) as usize;
                chosen.swap(i, j);
            }
            chosen.truncate(n);
        }
        Sighting {
            service: format!("{name}:1"),
            container: name.into(),
            people: Some(people.len() as u64),
            records: chosen
                .iter()
                .map(|&p| {
                    ids(p)
                        .iter()
                        .filter_map(|(k, v)| key.fingerprint(*k, name, v))
                        .collect()
                })
                .collect(),
            complete: read.is_none(),
            kinds: vec![IdKind::Email, IdKind::UserId],
        }
    }

    #[test]
    fn a_person_known_by_email_here_and_by_id_there_counts_once() {
        let key = PeopleKey::new();
        let mut rng = Xs(7);
        let all: Vec<u64> = (0..1000).collect();
        let by_mail = store(&key, "a", &all, None, &mut rng, |p| {
            vec![(IdKind::Email, email(p).to_uppercase())]
        });
        let by_id = store(&key, "b", &all, None, &mut rng, |p| {
            vec![(IdKind::UserId, uid(p))]
        });
        // Without a record linking the two, they look like 2,000 people.
        let apart = estimate(&[by_mail.clone(), by_id.clone()]).unwrap();
        assert!((1950..=2050).contains(&apart.people), "{apart:?}");
        // A third store holding both (a users table) links them: 1,000 people, plus its own
        // 200 customers nobody else has.
        let both: Vec<u64> = (0..1200).collect();
        let users = store(&key, "c", &both, None, &mut rng, |p| {
            vec![(IdKind::Email, email(p)), (IdKind::UserId, uid(p))]
        });
        let i = estimate(&[by_mail, by_id, users]).unwrap();
        assert!((1180..=1220).contains(&i.people), "{i:?}");
        assert!(i.people_low <= 1200 && 1200 <= i.people_high, "{i:?}");
    }

    #[test]
    fn user_ids_of_different_systems_are_different_people() {
        let key = PeopleKey::new();
        let mut rng = Xs(3);
        let p: Vec<u64> = (0..300).collect();
        let a = store(&key, "a", &p, None, &mut rng, |i| {
            vec![(IdKind::UserId, i.to_string())]
        });
        let b = store(&key, "b", &p, None, &mut rng, |i| {
            vec![(IdKind::UserId, i.to_string())]
        });
        assert_eq!(estimate(&[a.clone(), b]).unwrap().people, 600);
        // The same system's ids in two containers (users, orders) are the same people.
        let mut orders = a.clone();
        orders.container = "orders".into();
        assert_eq!(estimate(&[a, orders]).unwrap().people, 300);
    }

    #[test]
    fn large_stores_read_in_part_are_estimated_within_their_interval() {
        let key = PeopleKey::new();
        let mut rng = Xs(0x9e37_79b9_7f4a_7c15);
        // 200,000 customers in three stores too large to read, 6,000 CRM-only people in a
        // small one read whole, 3,000 of the customers in a small fixture read whole.
        let customers: Vec<u64> = (0..200_000).collect();
        let crm: Vec<u64> = (1_000_000..1_006_000).collect();
        let mut s = Vec::new();
        for name in ["es", "pg", "my"] {
            s.push(store(&key, name, &customers, Some(50_000), &mut rng, |p| {
                vec![(IdKind::Email, email(p)), (IdKind::UserId, uid(p))]
            }));
        }
        s.push(store(&key, "crm", &crm, None, &mut rng, |p| {
            vec![(IdKind::Email, email(p))]
        }));
        s.push(store(
            &key,
            "app",
            &customers[..3000],
            None,
            &mut rng,
            |p| vec![(IdKind::Email, format!(" {} ", email(p).to_uppercase()))],
        ));
        let i = estimate(&s).unwrap();
        let truth = 206_000.0;
        assert!(
            (i.people as f64 - truth).abs() <= 0.05 * truth,
            "{i:?} against {truth}"
        );
        assert!(
            i.people_low as f64 <= truth && truth <= i.people_high as f64,
            "{i:?}"
        );
        // The sum of the stores would say 809,000.
        assert!(i.method.contains("too large to read whole"), "{}", i.method);
    }

    #[test]
    fn no_raw_identifier_leaves_the_fingerprints() {
        let key = PeopleKey::new();
        let mut rng = Xs(11);
        let p: Vec<u64> = (0..50).collect();
        let s = store(&key, "a", &p, None, &mut rng, |i| {
            vec![
                (IdKind::Email, email(i)),
                (IdKind::Phone, format!("+49 151 2345{i:04}")),
            ]
        });
        let i = estimate(std::slice::from_ref(&s)).unwrap();
        let out = format!("{s:?}{}", serde_json::to_string(&i).unwrap());
        for n in 0..50 {
            assert!(!out.contains(&email(n)), "raw e-mail in {out}");
            assert!(!out.contains(&format!("2345{n:04}")), "raw phone in {out}");
        }
        assert!(!out.contains("example.org"));
        assert_eq!(i.people, 50);
    }

    #[test]
    fn containers_without_identifiers_give_no_figure() {
        assert!(estimate(&[]).is_none());
        let empty = Sighting {
            service: "a:1".into(),
            container: "t".into(),
            complete: true,
            ..Sighting::default()
        };
        assert!(estimate(&[empty]).is_none());
        assert_eq!(wilson(0.0, 0.0), (0.0, 1.0));
        let (lo, hi) = wilson(50.0, 100.0);
        assert!(lo < 0.5 && hi > 0.5 && hi - lo < 0.2);
    }
}
