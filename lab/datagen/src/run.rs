//! Producing output fast and in order: users (or stand-alone entities) are cut into chunks that
//! worker threads format in parallel, and a single writer emits the chunks in index order, so
//! the bytes never depend on thread count or scheduling.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::thread;

use anyhow::{bail, Context, Result};

use crate::layouts::{find, truth_with, Container, Layout, Mode, Scratch, Source, CONTAINERS};
use crate::model::{Ctx, Need, Totals, User};

/// Users per chunk: large enough to amortise the hand-off, small enough to bound memory when
/// every container of every layout is produced at once (a few tens of MB per chunk).
const USER_CHUNK: u64 = 4096;
const INDEX_CHUNK: u64 = 8192;

pub fn threads() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs `make(0..n)` on `threads` workers and hands the results to `consume` in index order.
pub fn ordered<T: Send>(
    n: usize,
    threads: usize,
    make: impl Fn(usize) -> T + Sync,
    mut consume: impl FnMut(T) -> io::Result<()>,
) -> io::Result<()> {
    if threads <= 1 || n <= 1 {
        return (0..n).try_for_each(|k| consume(make(k)));
    }
    let next = AtomicUsize::new(0);
    thread::scope(|s| {
        // The bound keeps finished chunks from piling up when the writer is the bottleneck.
        let (tx, rx) = mpsc::sync_channel::<(usize, T)>(threads);
        for _ in 0..threads {
            let tx = tx.clone();
            let (next, make) = (&next, &make);
            s.spawn(move || loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                // A failed send means the writer gave up (e.g. a closed pipe): stop too.
                if k >= n || tx.send((k, make(k))).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut pending = BTreeMap::new();
        let mut want = 0;
        for (k, t) in rx {
            pending.insert(k, t);
            while let Some(t) = pending.remove(&want) {
                consume(t)?;
                want += 1;
            }
        }
        Ok(())
    })
}

fn chunks(total: u64, size: u64) -> usize {
    total.div_ceil(size) as usize
}

/// Output buffers handed back after writing, one pool per output. They keep their capacity,
/// so after the first chunks nothing is regrown or page-faulted in again; per output, because
/// a small container's buffers would otherwise grow to the size of the largest one's.
struct Pools(Vec<Mutex<Vec<Vec<u8>>>>);

impl Pools {
    fn new(outputs: usize) -> Pools {
        Pools((0..outputs).map(|_| Mutex::new(Vec::new())).collect())
    }

    fn take(&self, slot: usize) -> Vec<u8> {
        self.0[slot]
            .lock()
            .expect("pool lock")
            .pop()
            .unwrap_or_default()
    }

    fn give(&self, slot: usize, mut buf: Vec<u8>) {
        buf.clear();
        self.0[slot].lock().expect("pool lock").push(buf);
    }
}

/// Formats users `lo..hi` into one buffer per container.
fn user_chunk(
    ctx: Ctx,
    outs: &[(&Container, Mode)],
    need: Need,
    lo: u64,
    hi: u64,
    pools: &Pools,
) -> Vec<Vec<u8>> {
    let mut u = User::default();
    let mut bufs: Vec<_> = outs
        .iter()
        .enumerate()
        .map(|(slot, (c, m))| {
            let mut o = c.out(*m);
            o.buf = pools.take(slot);
            o
        })
        .collect();
    for i in lo..hi {
        u.fill(ctx, i, need);
        for ((c, _), o) in outs.iter().zip(&mut bufs) {
            c.write_user(&u, o);
        }
    }
    bufs.into_iter().map(|o| o.buf).collect()
}

/// Streams one container in `mode` to `w`.
pub fn stream(ctx: Ctx, c: &Container, mode: Mode, w: &mut dyn Write) -> io::Result<()> {
    let pools = Pools::new(1);
    let write = |b: Vec<u8>| {
        w.write_all(&b)?;
        pools.give(0, b);
        Ok(())
    };
    match c.source() {
        Source::Users(need) => {
            let users = c.users_spanned(ctx);
            ordered(
                chunks(users, USER_CHUNK),
                threads(),
                |k| {
                    let lo = k as u64 * USER_CHUNK;
                    let hi = (lo + USER_CHUNK).min(users);
                    let mut bufs = user_chunk(ctx, &[(c, mode)], need, lo, hi, &pools);
                    bufs.pop().unwrap_or_default()
                },
                write,
            )
        }
        Source::Indexed => {
            let domain = c.domain(ctx);
            ordered(
                chunks(domain, INDEX_CHUNK),
                threads(),
                |k| {
                    let lo = k as u64 * INDEX_CHUNK;
                    let mut o = c.out(mode);
                    o.buf = pools.take(0);
                    let mut s = Scratch::default();
                    for j in lo..(lo + INDEX_CHUNK).min(domain) {
                        c.write_indexed(ctx, j, &mut o, &mut s);
                    }
                    o.buf
                },
                write,
            )
        }
    }
}

/// `emit`: the load data of one container, or for Redis and Memcached of the whole layout.
pub fn emit(ctx: Ctx, layout: Layout, container: Option<&str>, w: &mut dyn Write) -> Result<()> {
    let selected: Vec<&Container> = match container {
        Some(name) => vec![find(layout, name)?],
        None if matches!(layout, Layout::Redis | Layout::Memcached) => {
            layout.containers().collect()
        }
        None => {
            let names: Vec<_> = layout.containers().map(Container::name).collect();
            bail!(
                "--container is required for {}; one of: {}",
                layout.name(),
                names.join(", ")
            )
        }
    };
    let mut db = None;
    for c in selected {
        if let Some(want) = c.redis_db() {
            if db != Some(want) {
                let mut o = c.out(Mode::Emit);
                o.select_db(want);
                w.write_all(&o.buf)?;
                db = Some(want);
            }
        }
        stream(ctx, c, Mode::Emit, w)?;
    }
    w.flush()?;
    Ok(())
}

/// The file name of a container in an export: its name with `:` turned into `.` and a
/// trailing `:*` dropped (`db0:user:*` → `db0.user.jsonl`).
pub fn export_file_name(c: &Container) -> String {
    format!(
        "{}.jsonl",
        c.name().trim_end_matches(":*").replace(':', ".")
    )
}

/// `export`: every container of every layout as JSON lines, plus `truth.json`.
pub fn export(ctx: Ctx, dir: &Path) -> Result<()> {
    let mut files = Vec::with_capacity(CONTAINERS.len());
    for c in CONTAINERS {
        let sub = dir.join(c.layout().name());
        fs::create_dir_all(&sub).with_context(|| format!("creating {}", sub.display()))?;
        let path = sub.join(export_file_name(c));
        files.push(File::create(&path).with_context(|| format!("creating {}", path.display()))?);
    }
    // All per-user containers in one pass, so each user is generated once.
    let per_user: Vec<(usize, &Container)> = CONTAINERS
        .iter()
        .enumerate()
        .filter(|(_, c)| matches!(c.source(), Source::Users(_)))
        .collect();
    let outs: Vec<(&Container, Mode)> = per_user.iter().map(|(_, c)| (*c, Mode::Export)).collect();
    let need = per_user
        .iter()
        .fold(Need::default(), |n, (_, c)| match c.source() {
            Source::Users(x) => n.union(x),
            Source::Indexed => n,
        });
    let pools = Pools::new(outs.len());
    ordered(
        chunks(ctx.users, USER_CHUNK),
        threads(),
        |k| {
            let lo = k as u64 * USER_CHUNK;
            user_chunk(
                ctx,
                &outs,
                need,
                lo,
                (lo + USER_CHUNK).min(ctx.users),
                &pools,
            )
        },
        |bufs| {
            for (slot, ((idx, _), b)) in per_user.iter().zip(bufs).enumerate() {
                files[*idx].write_all(&b)?;
                pools.give(slot, b);
            }
            Ok(())
        },
    )
    .context("writing the export")?;
    for (c, f) in CONTAINERS.iter().zip(&mut files) {
        if let Source::Indexed = c.source() {
            stream(ctx, c, Mode::Export, f).with_context(|| format!("writing {}", c.name()))?;
        }
    }
    let truth = truth_with(ctx, &Totals::of(ctx));
    let path = dir.join("truth.json");
    let mut f = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    serde_json::to_writer_pretty(&mut f, &truth)?;
    f.write_all(b"\n")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_keeps_order_whatever_the_threads() {
        for threads in [1, 2, 3, 8] {
            let mut got = Vec::new();
            ordered(
                100,
                threads,
                |k| k * 2,
                |v| {
                    got.push(v);
                    Ok(())
                },
            )
            .unwrap();
            assert_eq!(got, (0..100).map(|k| k * 2).collect::<Vec<_>>());
        }
    }

    #[test]
    fn ordered_stops_on_writer_error() {
        let mut seen = 0;
        let r = ordered(
            1000,
            2,
            |k| k,
            |_| {
                seen += 1;
                if seen == 3 {
                    Err(io::Error::new(io::ErrorKind::BrokenPipe, "closed"))
                } else {
                    Ok(())
                }
            },
        );
        assert!(r.is_err());
        assert_eq!(seen, 3);
    }
}
