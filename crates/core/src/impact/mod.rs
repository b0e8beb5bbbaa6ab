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

/// The sketch's relative error at 95 % for a count `n`: none while it still holds every
/// fingerprint (its small and array forms, up to 128), then [`SKETCH_ERR`].
fn sketch_err(n: f64) -> f64 {
    if n < 128.0 {
        0.0
    } else {
        SKETCH_ERR
    }
}

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
    /// The fingerprints among `records` that mean something only in their own system (a
    /// short user id, a user name): one that links to nothing else cannot be de-duplicated.
    pub scoped: Vec<u64>,
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
    // Lone people: a short id or user name linked to no other identifier anywhere in the scan
    // (`socialtoken.account_id`: whose account, the scan cannot tell). Each may be someone
    // already counted, so they widen the interval upwards and count in the figure only when the
    // scan knows nobody better.
    let mut size = vec![0u32; links.parent.len()];
    for i in 0..links.parent.len() {
        let r = links.root(i);
        size[r] += 1;
    }
    let scoped: HashSet<u64> = sightings
        .iter()
        .flat_map(|s| s.scoped.iter().copied())
        .collect();
    let lone = |r: usize| size[r] == 1 && scoped.contains(&links.fps[r]);

    // Complete containers: sketched per container, merged over the scan.
    let mut known = Sketch::new();
    let mut lone_sketch = Sketch::new();
    let mut known_set: HashSet<usize> = HashSet::new();
    let mut complete = 0usize;
    for (s, p) in sightings.iter().zip(&people) {
        if !s.complete || p.is_empty() {
            continue;
        }
        let (mut sketch, mut alone) = (Sketch::new(), Sketch::new());
        for &root in p {
            // The root's own fingerprint names the person (any member would do).
            if lone(root) {
                alone.insert(&links.fps[root]);
            } else {
                sketch.insert(&links.fps[root]);
                known_set.insert(root);
            }
        }
        known.merge(&sketch);
        lone_sketch.merge(&alone);
        complete += 1;
    }
    let lone_n = lone_sketch.estimate() as f64;
    let known_n = known.estimate() as f64;
    let known_err = sketch_err(known_n);

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
    let (mut add, mut add_lo, mut add_hi, mut lone_partial) = (0.0, 0.0, 0.0, 0.0);
    let mut counted: Vec<(usize, f64)> = Vec::new(); // (sighting, share of it sampled)
    for &(i, big_n) in &partial {
        let p = &people[i];
        let n = p.len() as f64;
        let alone = p.iter().filter(|&&r| lone(r)).count() as f64;
        let rest: Vec<usize> = p
            .iter()
            .copied()
            .filter(|&r| !known_set.contains(&r) && !lone(r))
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
        add_hi += big_n * hi + big_n * alone / n;
        lone_partial += big_n * alone / n;
        counted.push((i, (n / big_n).min(1.0)));
    }

    let lone_all = lone_n + lone_partial;
    let (known_n, known_err, lone_high) = if known_n + add < 0.5 {
        (lone_all, sketch_err(lone_all), 0.0)
    } else {
        (known_n, known_err, lone_n * (1.0 + sketch_err(lone_n)))
    };
    let people_n = (known_n + add).round();
    let low = (known_n * (1.0 - known_err) + add_lo).round().min(people_n);
    let high = (known_n * (1.0 + known_err) + add_hi + lone_high)
        .round()
        .max(people_n);
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
    if lone_all >= 0.5 && lone_high > 0.0 {
        method.push_str(&format!(
            "; {} user ids or names linked to no other identifier may be people already \
             counted: in the upper bound only",
            lone_all.round()
        ));
    }
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

/// The id space of a user id field, by the usual foreign-key naming: `user_id` anywhere, and
/// the `id` of a table `users` or `auth_user`, are one space (`user_id`); `account_id` is
/// another. A short id (`42`) is one person only within its service and its space: the same
/// number in `socialtoken.account_id` and `auth_user.id` is two people.
pub fn id_space(container: &str, path: &str) -> String {
    let leaf = path
        .rsplit(['.', '[', ']'])
        .find(|s| !s.is_empty())
        .unwrap_or(path)
        .to_ascii_lowercase();
    let leaf = leaf.trim_matches('_');
    // `auth_user_id`, `owner_user_id`, `userid`: references to a user.
    if leaf.ends_with("user_id") || leaf.ends_with("userid") {
        return "user_id".into();
    }
    if leaf != "id" {
        return leaf.to_string();
    }
    let table = container
        .rsplit(['.', ':', '/'])
        .find(|s| s.chars().any(|c| c.is_ascii_alphabetic()))
        .unwrap_or(container)
        .to_ascii_lowercase();
    let word = table.rsplit('_').next().unwrap_or(&table);
    let singular = match word.strip_suffix('s') {
        Some(w) if w.len() >= 3 && !w.ends_with('s') => w,
        _ => word,
    };
    format!("{singular}_id")
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
    let mut scoped = Vec::new();
    let records = h
        .sample
        .iter()
        .flat_map(|rec| {
            // Two values at one path (`to[]`: a mailing's recipients, a job queue's
            // messages) make the record a list of people: each is its own, nothing is linked.
            let mut paths: Vec<&str> = rec
                .iter()
                .filter(|(p, _)| fields.iter().any(|(fp, _)| fp == p))
                .map(|(p, _)| p.as_str())
                .collect();
            let n = paths.len();
            paths.sort_unstable();
            paths.dedup();
            let list = paths.len() < n;
            let ids: Vec<(IdKind, u64)> = rec
                .iter()
                .filter_map(|(p, v)| {
                    let (_, kind) = fields.iter().find(|(fp, _)| fp == p)?;
                    let system = match kind {
                        IdKind::UserId => format!("{service}/{}", id_space(&c.name, p)),
                        _ => service.to_string(),
                    };
                    let (fp, local) = key.fingerprint_scoped(*kind, &system, v)?;
                    if local {
                        scoped.push(fp);
                    }
                    Some((*kind, fp))
                })
                .collect();
            // A user name is often not unique (`jsmith` twice in one customer table): it names
            // the person only where the record has nothing stronger, and never links two.
            let strong = ids.iter().any(|(k, _)| *k != IdKind::Username);
            let mut ids: Vec<(IdKind, u64)> = ids
                .into_iter()
                .filter(|(k, _)| !strong || *k != IdKind::Username)
                .collect();
            ids.sort_unstable();
            ids.dedup();
            if list {
                ids.into_iter().map(|(_, fp)| vec![fp]).collect()
            } else {
                vec![ids.into_iter().map(|(_, fp)| fp).collect::<Vec<u64>>()]
            }
        })
        .filter(|fps: &Vec<u64>| !fps.is_empty())
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
        scoped: {
            scoped.sort_unstable();
            scoped.dedup();
            scoped
        },
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
        let mut scoped = Vec::new();
        let records = chosen
            .iter()
            .map(|&p| {
                ids(p)
                    .iter()
                    .filter_map(|(k, v)| key.fingerprint_scoped(*k, name, v))
                    .map(|(fp, local)| {
                        if local {
                            scoped.push(fp);
                        }
                        fp
                    })
                    .collect()
            })
            .collect();
        Sighting {
            service: format!("{name}:1"),
            container: name.into(),
            people: Some(people.len() as u64),
            records,
            complete: read.is_none(),
            kinds: vec![IdKind::Email, IdKind::UserId],
            scoped,
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
        // The sketch counts within its error (exact below a few hundred, then about 1 %).
        let two = estimate(&[a.clone(), b]).unwrap();
        assert!((588..=612).contains(&two.people), "{two:?}");
        assert!(two.people_low <= 600 && 600 <= two.people_high, "{two:?}");
        // The same system's ids in two containers (users, orders) are the same people.
        let mut orders = a.clone();
        orders.container = "orders".into();
        let one = estimate(&[a, orders]).unwrap();
        assert!((297..=303).contains(&one.people), "{one:?}");
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

#[cfg(test)]
mod sighting_tests {
    use super::*;
    use crate::inventory::Holding;
    use crate::model::{Container, Field};

    fn field(path: &str, cat: &str) -> Field {
        Field {
            path: path.into(),
            categories: vec![cat.into()],
            confidence: 0.9,
            seen: 1,
            matched: 1,
            examples: vec![],
            fingerprints: vec![],
        }
    }

    fn holding(name: &str, rows: Vec<Vec<(&str, &str)>>) -> Holding {
        Holding {
            name: name.into(),
            kind: "table",
            records: Some(rows.len() as u64),
            records_exact: true,
            sample: rows
                .into_iter()
                .map(|r| {
                    r.into_iter()
                        .map(|(p, v)| (p.to_string(), v.to_string()))
                        .collect()
                })
                .collect(),
            ..Holding::default()
        }
    }

    fn container(name: &str, fields: &[(&str, &str)]) -> Container {
        Container {
            name: name.into(),
            kind: "table".into(),
            records: None,
            records_estimated: false,
            system: false,
            bytes: None,
            sampled: 0,
            subjects_estimate: None,
            subjects_method: None,
            subjects_interval: None,
            categories: vec![],
            fields: fields.iter().map(|(p, c)| field(p, c)).collect(),
        }
    }

    #[test]
    fn a_table_id_links_to_the_foreign_keys_named_after_it_only() {
        let key = PeopleKey::new();
        let users = holding(
            "app.public.auth_user",
            vec![
                vec![("id", "1"), ("email", "a@example.org")],
                vec![("id", "2"), ("email", "b@example.org")],
            ],
        );
        let tokens = holding(
            "app.public.oauth_token",
            vec![vec![("user_id", "1")], vec![("user_id", "2")]],
        );
        let social = holding("app.public.socialtoken", vec![vec![("account_id", "1")]]);
        let uid = [("id", "identity.user_id"), ("email", "identity.email")];
        let s = [
            sighting(&key, "h:1", &container(&users.name, &uid), &users).unwrap(),
            sighting(
                &key,
                "h:1",
                &container(&tokens.name, &[("user_id", "identity.user_id")]),
                &tokens,
            )
            .unwrap(),
        ];
        assert_eq!(estimate(&s).unwrap().people, 2);
        // `account_id` 1 is not user 1, and links to nothing: it may be anyone already
        // counted, so it widens the interval only.
        let mut more = s.to_vec();
        more.push(
            sighting(
                &key,
                "h:1",
                &container(&social.name, &[("account_id", "identity.user_id")]),
                &social,
            )
            .unwrap(),
        );
        let i = estimate(&more).unwrap();
        assert_eq!((i.people, i.people_high), (2, 3), "{i:?}");
        assert!(i.method.contains("upper bound only"), "{}", i.method);
        // Alone, numbers are all the scan knows: they count.
        assert_eq!(estimate(&more[2..]).unwrap().people, 1);
    }

    #[test]
    fn a_record_listing_several_people_links_none_of_them() {
        let key = PeopleKey::new();
        let queue = holding(
            "db3:celery",
            vec![vec![
                ("[].to", "a@example.org"),
                ("[].to", "b@example.org"),
                ("[].to", "c@example.org"),
            ]],
        );
        let c = container(&queue.name, &[("[].to", "identity.email")]);
        let s = sighting(&key, "h:1", &c, &queue).unwrap();
        assert_eq!(estimate(&[s]).unwrap().people, 3);
    }

    #[test]
    fn user_ids_are_scoped_by_their_foreign_key_name() {
        assert_eq!(id_space("apps.public.auth_user", "id"), "user_id");
        assert_eq!(id_space("smarthome.public.users", "id"), "user_id");
        assert_eq!(id_space("shop.orders", "user_id"), "user_id");
        assert_eq!(id_space("django_session", "data._auth_user_id"), "user_id");
        assert_eq!(id_space("db6:sess:*", "user.id"), "sess_id");
        assert_eq!(id_space("s.socialtoken", "account_id"), "account_id");
        assert_eq!(id_space("ghost.members", "id"), "member_id");
        assert_eq!(id_space("x.address", "id"), "address_id");
    }

    #[test]
    fn a_shared_user_name_does_not_make_two_customers_one() {
        let c = Container {
            name: "users".into(),
            kind: "table".into(),
            records: Some(3),
            records_estimated: false,
            system: false,
            bytes: None,
            sampled: 3,
            subjects_estimate: Some(3),
            subjects_method: None,
            subjects_interval: None,
            categories: vec![],
            fields: vec![
                field("email", "identity.email"),
                field("login", "identity.username"),
                field("note", "free_text"),
            ],
        };
        let rec = |mail: &str, login: &str| {
            vec![
                ("email".to_string(), mail.to_string()),
                ("login".to_string(), login.to_string()),
                ("note".to_string(), "hello".to_string()),
            ]
        };
        let h = Holding {
            name: "users".into(),
            kind: "table",
            records: Some(3),
            records_exact: true,
            sample: vec![
                rec("a@example.org", "jsmith"),
                rec("b@example.org", "jsmith"),
                rec("", "mrossi"),
            ],
            ..Holding::default()
        };
        let key = PeopleKey::new();
        let s = sighting(&key, "h:1", &c, &h).unwrap();
        assert!(s.complete);
        assert_eq!(
            s.records.iter().map(Vec::len).collect::<Vec<_>>(),
            [1, 1, 1]
        );
        // The third is known by user name alone: maybe one of the two, maybe not.
        let i = estimate(&[s]).unwrap();
        assert_eq!((i.people, i.people_high), (2, 3), "{i:?}");
        // A container without identifier fields says nothing.
        let none = Container {
            fields: vec![field("note", "free_text")],
            ..c
        };
        assert!(sighting(&key, "h:1", &none, &h).is_none());
    }
}
