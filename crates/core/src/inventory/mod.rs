//! Inventory and sampling: what an exposed store holds, and a bounded, read-only sample of it.
//!
//! Each protocol implements an [`InventoryFn`](crate::driver::InventoryFn) (registered in the
//! protocol registry) that lists containers (indices, collections, tables, key patterns …)
//! with counts and sizes, reads each container's structure, and samples up to
//! [`InventoryOptions::sample`] records, spread across the container where the store allows it
//! cheaply. Records are flattened into field paths ([`flatten`]) with values truncated to a
//! byte cap.
//!
//! Samples stay inside the process: they feed classification and are never serialized. Budgets
//! (time, bytes, number of containers) bound the work on huge stores; whatever a budget cut short
//! is said in [`Inventory::notes`].

use std::time::Duration;

pub mod flatten;
pub mod keys;

pub use flatten::{flatten_json, Record};

/// Settings for inventory and sampling of one service.
#[derive(Debug, Clone)]
pub struct InventoryOptions {
    /// Records sampled per container (0 = inventory only).
    pub sample: usize,
    /// Bytes kept of one sampled value.
    pub value_cap: usize,
    /// Containers listed per service; more are counted and noted, not listed.
    pub max_containers: usize,
    /// Time for one service: its inventory and, unless `subjects_budget` or `full` say
    /// otherwise, its people counts (the model is in `driver::budget`'s docs).
    pub time_budget: Duration,
    /// Bytes read from one service for inventory and sampling together.
    pub byte_budget: usize,
    /// Exact census: count every record (scroll, cursors, full SCAN) instead of catalogue figures.
    pub full: bool,
    /// Time for one container's distinct-people count; None = the default of
    /// [`crate::driver::SubjectsBudget::for_options`].
    pub subjects_budget: Option<Duration>,
}

impl InventoryOptions {
    /// The time of the inventory alone: [`crate::driver::INVENTORY_SHARE`] of the service's
    /// when the people counts share it, else all of it.
    pub fn inventory_time(&self) -> Duration {
        if self.subjects_budget.is_none() && !self.full {
            self.time_budget.mul_f32(crate::driver::INVENTORY_SHARE)
        } else {
            self.time_budget
        }
    }
}

impl Default for InventoryOptions {
    fn default() -> Self {
        InventoryOptions {
            sample: 200,
            value_cap: 256,
            max_containers: 1000,
            time_budget: Duration::from_secs(30),
            byte_budget: 64 << 20,
            full: false,
            subjects_budget: None,
        }
    }
}

/// One container found in a store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Holding {
    /// Qualified name as reported (`customers`, `smarthome.users`, `smarthome.public.users`,
    /// `db0:user:*`).
    pub name: String,
    /// `index`, `collection`, `table`, `keyspace`, `database`, `topic` or `bucket`.
    pub kind: &'static str,
    pub records: Option<u64>,
    /// False when `records` is an estimate (catalogue statistics, sampled SCAN).
    pub records_exact: bool,
    pub bytes: Option<u64>,
    /// A system or hidden container (`.kibana`, `pg_catalog`, `admin`), listed but marked.
    pub system: bool,
    /// Declared structure: (field path, store type), from mappings, schemas or column types.
    pub schema: Vec<(String, String)>,
    /// Flattened sampled records (never serialized).
    pub sample: Vec<Record>,
    /// The key each sampled record was read under, where records have keys of their own
    /// (Redis, Memcached); parallel to `sample`, or empty. Never serialized.
    pub sample_keys: Vec<String>,
}

/// Everything inventoried on one service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inventory {
    pub holdings: Vec<Holding>,
    /// What a budget or an error cut short, in words.
    pub notes: Vec<String>,
}

/// The field paths seen in a sample, in first-seen order, with how many records had each.
pub fn paths_seen(sample: &[Record]) -> Vec<(String, u64)> {
    let mut order: Vec<(String, u64)> = Vec::new();
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for rec in sample {
        let mut seen_here: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for (path, _) in rec {
            if !seen_here.insert(path.as_str()) {
                continue;
            }
            match index.get(path.as_str()) {
                Some(&i) => order[i].1 += 1,
                None => {
                    index.insert(path.as_str(), order.len());
                    order.push((path.clone(), 1));
                }
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_counted_once_per_record() {
        let sample: Vec<Record> = vec![
            vec![
                ("a".into(), "1".into()),
                ("b[]".into(), "x".into()),
                ("b[]".into(), "y".into()),
            ],
            vec![("b[]".into(), "z".into())],
        ];
        assert_eq!(
            paths_seen(&sample),
            vec![("a".to_string(), 1), ("b[]".to_string(), 2)]
        );
    }
}
