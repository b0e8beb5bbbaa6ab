//! `leakscope-labgen`: a fast, deterministic generator of the lab's synthetic smart-home
//! customer dataset (see `lab/DATASET.md`). User `i` is a pure function of `(seed, i)`; every
//! store layout, the ground truth and the benchmark export are written from that one model.
//!
//! ```
//! use leakscope_labgen::{layouts::{truth, Layout}, model::Ctx, run::emit};
//! let ctx = Ctx { seed: 1, users: 10 };
//! let mut out = Vec::new();
//! emit(ctx, Layout::Elasticsearch, Some("customers"), &mut out).unwrap();
//! assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 10);
//! assert_eq!(truth(ctx).layouts.elasticsearch[0].records, 10);
//! ```

pub mod checks;
pub mod fields;
pub mod italy;
pub mod layouts;
pub mod lists;
pub mod model;
pub mod people;
pub mod record;
pub mod rng;
pub mod run;
pub mod text;
