//! What one piece of work on a service may spend: time until a deadline, and bytes read.
//!
//! # The budget model
//!
//! A scan's time is bounded per service, and a service's time per container:
//! - **Per service** (`--inventory-timeout`, [`SERVICE_DEFAULT`]): everything after the
//!   service is identified and judged: the listing, record counts, samples and people
//!   counts. Services are inventoried concurrently, so a whole scan takes about the
//!   identification plus the slowest service's budget.
//! - Inside it, the **inventory** (listing, then counts and samples, each protocol asking the
//!   cheap questions first) gets [`INVENTORY_SHARE`] of it, and the **people counts** the rest,
//!   shared among the containers still to count (`SubjectsBudget::until`).
//! - **Per container**: a protocol's expensive question (a count, a distinct count, a key
//!   read) ends at its share and the container keeps what was learned, marked as estimated
//!   or missing with the reason.
//!
//! More time: `--inventory-timeout` for the whole service; `--subjects-timeout` gives each
//! container's people count that long on top of the inventory's budget (which then keeps the
//! whole service budget). `--full` asks for exact figures: 3600 s per service, each people
//! count the same.
//!
//! An inventory, the people counts of a service, one probe's queries: each gets one
//! [`Budget`], shared by every connection it opens (atomically, so concurrent requests of one
//! inventory draw on the same bytes). The scan engine bounds the same work with its own timeout
//! and drops whatever future is still running then; a protocol's budget ends [`margin`] earlier,
//! so what it gathered is returned with a note rather than lost.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::inventory::InventoryOptions;

/// The default time of one service's inventory and people counts, in seconds (the budget
/// model is in this module's docs, `driver/budget.rs`). 7 s would keep the 2.4 M-user lab's
/// slowest stores near the 10 s goal (bench/RESULTS.md, seed scale), but on the 10 k lab it left
/// MongoDB (FerretDB), PostgreSQL and Redis containers without people counts in a debug build
/// on an idle machine (lab/tests/test_subjects.py), and 30 s still left FerretDB's `users`
/// unsampled in one of two full test runs: 50 s gives the inventory the 30 s it had before the
/// people counts shared its budget. The default stays where every figure of a small store is
/// exact, until the per-protocol cheap paths make 7 s enough.
pub const SERVICE_DEFAULT: f64 = 50.0;

/// The inventory's share of a service's budget when the people counts share it too.
pub const INVENTORY_SHARE: f32 = 0.6;

/// The most a protocol's budget ends before the engine's timeout.
const MAX_MARGIN: Duration = Duration::from_secs(2);

/// How long before the engine's timeout of `total` a protocol stops: a tenth, at most 2 s.
pub fn margin(total: Duration) -> Duration {
    (total / 10).min(MAX_MARGIN)
}

/// Which part of a budget ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spent {
    Time,
    Bytes,
}

impl Spent {
    /// `time budget`, `byte budget`: what ran out, for notes.
    pub fn budget(self) -> &'static str {
        match self {
            Spent::Time => "time budget",
            Spent::Bytes => "byte budget",
        }
    }
}

impl std::fmt::Display for Spent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} spent", self.budget())
    }
}

/// A deadline and a byte allowance (see the module docs).
#[derive(Debug)]
pub struct Budget {
    deadline: Instant,
    limit: usize,
    used: AtomicUsize,
}

impl Budget {
    pub fn new(deadline: Instant, bytes: usize) -> Budget {
        Budget {
            deadline,
            limit: bytes,
            used: AtomicUsize::new(0),
        }
    }

    /// An inventory's: its time budget less the [`margin`], its byte budget.
    pub fn for_inventory(opts: &InventoryOptions) -> Budget {
        Budget::new(
            Instant::now() + opts.time_budget.saturating_sub(margin(opts.time_budget)),
            opts.byte_budget,
        )
    }

    /// Bytes alone: the deadlines a session sets per exchange bound the time (a probe's
    /// queries, each within the read timeout).
    pub fn bytes_only(bytes: usize) -> Budget {
        Budget::new(Instant::now() + Duration::from_secs(24 * 3600), bytes)
    }

    /// Books every byte left as spent (an answer cut at the byte budget).
    pub fn exhaust_bytes(&self) {
        self.used.fetch_max(self.limit, Ordering::Relaxed);
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    pub fn time_left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn bytes_left(&self) -> usize {
        self.limit.saturating_sub(self.used())
    }

    /// Books `n` bytes read.
    pub fn spend(&self, n: usize) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }

    /// What has run out, if anything: time first.
    pub fn spent(&self) -> Option<Spent> {
        if self.time_left().is_zero() {
            Some(Spent::Time)
        } else if self.bytes_left() == 0 {
            Some(Spent::Bytes)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margins_and_accounts() {
        assert_eq!(margin(Duration::from_secs(30)), Duration::from_secs(2));
        assert_eq!(margin(Duration::from_secs(10)), Duration::from_secs(1));
        assert_eq!(margin(Duration::ZERO), Duration::ZERO);
        let b = Budget::new(Instant::now() + Duration::from_secs(60), 100);
        assert_eq!(b.spent(), None);
        b.spend(60);
        assert_eq!(b.bytes_left(), 40);
        b.spend(60);
        assert_eq!((b.bytes_left(), b.spent()), (0, Some(Spent::Bytes)));
        let late = Budget::new(Instant::now(), 100);
        assert_eq!(late.spent(), Some(Spent::Time));
    }
}
