//! Classifying exported files (`leakscope classify`): JSON lines, one container per file.
//!
//! A dump someone left in a bucket, an `elasticdump` or `mongoexport` output, or the lab's
//! export holds the same records a scan would sample; this classifies *every* record of them
//! with the scan's classifier. Each file is one container named by its stem
//! (`smarthome.users.jsonl` → `smarthome.users`); a directory stands for the `.jsonl` and
//! `.ndjson` files under it, recursively, in path order (a `.json` file is usually one
//! document, not lines; name it to classify it).
//!
//! Files are streamed, never held in memory: a reader cuts each file into chunks of whole
//! lines ([`CHUNK`] bytes), workers parse and flatten the lines of a chunk with the inventory's
//! flattener ([`Flat`], straight from the text into reused buffers) and classify them into a
//! [`Stream`] per chunk, and the streams of a file are merged in chunk order, so the result
//! does not depend on the thread count.
//! Memory is bounded by the chunks in flight (two per worker) and per field a few counters and
//! example values. A line longer than [`FileOptions::max_line`] is skipped and counted, as is
//! a line that is not JSON; neither stops the run. Error messages carry line numbers and the
//! parser's reason, never line content.
//!
//! Output follows the scan's container and field findings (masked examples only, no raw
//! value of a classified field): [`ClassifyReport`], schema `leakscope.classify/v1`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{Classifier, PlanCache, Stream, VALUE_CAP};
use crate::inventory::flatten::Flat;
use crate::model::Container;

/// Schema id of [`ClassifyReport`].
pub const CLASSIFY_SCHEMA: &str = "leakscope.classify/v1";
/// Bytes of whole lines handed to a worker at once.
pub const CHUNK: usize = 1 << 20;
/// Bytes read from a file at once.
const READ: usize = 256 << 10;
/// Default longest line taken (longer lines are skipped and counted).
pub const DEFAULT_MAX_LINE: usize = 1 << 20;
/// Bad lines reported per file by line number (all are counted).
const MAX_ERRORS: usize = 5;

/// How to classify files.
#[derive(Debug, Clone)]
pub struct FileOptions {
    /// Worker threads (at least 1).
    pub threads: usize,
    /// Longest line taken, in bytes.
    pub max_line: usize,
    /// Run the costly validators on every value (see the classify module docs).
    pub exhaustive: bool,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_line: DEFAULT_MAX_LINE,
            exhaustive: false,
        }
    }
}

/// Why files could not be classified at all.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{0}: no .jsonl or .ndjson files in this directory")]
    EmptyDir(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FilesError + '_ {
    move |source| FilesError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One classified file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileFindings {
    pub path: String,
    /// Non-empty lines read (records and bad lines).
    pub lines: u64,
    /// Lines that were not a JSON value.
    pub bad_lines: u64,
    /// Lines longer than the limit, skipped unread.
    pub long_lines: u64,
    /// The first bad lines: line number and the parser's reason (never the content).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// The findings, as a scan reports a container: `records` = records classified, `bytes`
    /// = file size, `kind` = `file`.
    pub container: Container,
}

/// Totals over a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClassifyStats {
    pub files: u64,
    pub bytes: u64,
    pub records: u64,
    pub bad_lines: u64,
    pub long_lines: u64,
    pub duration_ms: u64,
    pub threads: u64,
}

/// What `leakscope classify` prints (`--format json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifyReport {
    pub schema: String,
    pub stats: ClassifyStats,
    pub files: Vec<FileFindings>,
}

/// The files a list of paths stands for: files as given, directories expanded.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, FilesError> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(io_err(p))?;
        if meta.is_dir() {
            let before = out.len();
            walk(p, &mut out)?;
            if out.len() == before {
                return Err(FilesError::EmptyDir(p.clone()));
            }
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), FilesError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io_err(dir))?;
    entries.sort();
    for e in entries {
        if e.is_dir() {
            walk(&e, out)?;
        } else if matches!(
            e.extension().and_then(|x| x.to_str()),
            Some("jsonl" | "ndjson")
        ) {
            out.push(e);
        }
    }
    Ok(())
}

/// The container name of a file: its name without the extension.
pub fn container_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// A run of whole lines of one file.
struct Chunk {
    file: usize,
    seq: u64,
    /// Line number (0-based) of the first line.
    first_line: u64,
    /// Lines ending in `\n`; a skipped long line is an empty line, to keep the numbering.
    data: Vec<u8>,
}

/// Cuts a reader into chunks of whole lines, skipping lines longer than `max_line` without
/// buffering them.
///
/// Blocks are read straight into the chunk and the chunk is cut after its last newline (the
/// unfinished line starts the next one), so a byte is copied once and newlines are looked for
/// once, by the pass that numbers the lines and finds the long ones: reading line by line
/// through a `BufReader` cost a copy and a search call per line.
struct Chunker<R> {
    r: R,
    max_line: usize,
    /// Bytes asked of the reader at once, and the size at which a chunk is cut.
    read: usize,
    chunk: usize,
    line: u64,
    long_lines: u64,
    eof: bool,
    /// The start of the line the last chunk was cut before.
    carry: Vec<u8>,
    /// Inside a line longer than `max_line`: its bytes are dropped up to its newline.
    skipping: bool,
}

impl<R: Read> Chunker<R> {
    fn new(r: R, max_line: usize) -> Chunker<R> {
        Chunker {
            r,
            max_line,
            read: READ,
            chunk: CHUNK,
            line: 0,
            long_lines: 0,
            eof: false,
            carry: Vec::new(),
            skipping: false,
        }
    }

    fn next_chunk(&mut self) -> io::Result<Option<(u64, Vec<u8>)>> {
        if self.eof {
            return Ok(None);
        }
        let mut data = Vec::with_capacity(self.chunk + self.read);
        data.append(&mut self.carry);
        // Where the unfinished last line starts (0: no newline yet). A chunk holds at least
        // one whole line, however small `chunk`.
        let mut open = 0;
        while data.len() < self.chunk || self.skipping || open == 0 {
            let start = data.len();
            data.reserve(self.read);
            let n = (&mut self.r)
                .take(self.read as u64)
                .read_to_end(&mut data)?;
            if n == 0 {
                self.eof = true;
                break;
            }
            if self.skipping {
                match memchr::memchr(b'\n', &data[start..]) {
                    None => {
                        data.truncate(start);
                        continue;
                    }
                    Some(i) => {
                        // The newline stays: an empty line in place of the long one.
                        data.drain(start..start + i);
                        self.skipping = false;
                    }
                }
            }
            open = memchr::memrchr(b'\n', &data[open..]).map_or(open, |i| open + i + 1);
            if data.len() - open > self.max_line {
                data.truncate(open);
                self.long_lines += 1;
                self.skipping = true;
            }
        }
        if self.eof {
            if self.skipping || data.last().is_some_and(|&b| b != b'\n') {
                // The last line had no newline.
                data.push(b'\n');
                self.skipping = false;
            }
        } else {
            self.carry.extend_from_slice(&data[open..]);
            data.truncate(open);
        }
        let first = self.line;
        let mut lines = 0;
        let mut from = 0;
        let mut long = Vec::new();
        for at in memchr::memchr_iter(b'\n', &data) {
            if at - from > self.max_line {
                long.push(from..at);
            }
            from = at + 1;
            lines += 1;
        }
        self.line += lines;
        if !long.is_empty() {
            // Whole long lines that arrived within one block.
            self.long_lines += long.len() as u64;
            for r in long.into_iter().rev() {
                data.drain(r);
            }
        }
        Ok((!data.is_empty()).then_some((first, data)))
    }
}

/// One line of a chunk: text when the whole chunk is UTF-8, else bytes.
enum Line<'a> {
    Text(&'a str),
    Bytes(&'a [u8]),
}

/// What one chunk gave.
struct ChunkResult<'c> {
    file: usize,
    seq: u64,
    stream: Stream<'c>,
    lines: u64,
    bad: u64,
    errors: Vec<String>,
}

fn classify_chunk<'c>(
    classifier: &'c Classifier,
    name: &str,
    plans: &'c PlanCache,
    chunk: &Chunk,
    exhaustive: bool,
) -> ChunkResult<'c> {
    let mut stream = Stream::new(classifier, name);
    stream.share_plans(plans);
    stream.exhaustive = exhaustive;
    if chunk.seq > 0 {
        stream.continuation();
    }
    let (mut lines, mut bad) = (0u64, 0u64);
    let mut errors = Vec::new();
    let mut flat = Flat::new(VALUE_CAP);
    // One UTF-8 check for the whole chunk (the usual case) spares the parser one per string;
    // a chunk with invalid bytes is parsed line by line from bytes, its bad lines counted.
    let text = std::str::from_utf8(&chunk.data).ok();
    // Lines as `split('\n')` cuts them (an empty last piece included), found with the
    // memchr crate's SIMD search: the standard library's is several times slower.
    let data = &chunk.data;
    let mut next = Some(0);
    let spans = std::iter::from_fn(move || {
        let a = next?;
        let end = memchr::memchr(b'\n', &data[a..]).map(|n| a + n);
        next = end.map(|e| e + 1);
        Some(a..end.unwrap_or(data.len()))
    });
    let lines_of = spans.map(|r| match text {
        Some(t) => Line::Text(&t[r]),
        None => Line::Bytes(&data[r]),
    });
    for (k, line) in lines_of.enumerate() {
        let parsed = match line {
            Line::Text(l) => match l.trim_ascii() {
                "" => continue,
                l => flat.json_str(l),
            },
            Line::Bytes(l) => match l.trim_ascii() {
                [] => continue,
                l => flat.json_slice(l),
            },
        };
        lines += 1;
        let ord = chunk.first_line + k as u64;
        match parsed {
            Ok(()) => stream.record(ord, flat.pairs()),
            Err(e) => {
                bad += 1;
                if errors.len() < MAX_ERRORS {
                    // serde_json's message names the position and the kind of error only.
                    errors.push(format!("line {}: not JSON: {e}", ord + 1));
                }
            }
        }
    }
    ChunkResult {
        file: chunk.file,
        seq: chunk.seq,
        stream,
        lines,
        bad,
        errors,
    }
}

/// A file's merged results so far.
struct FileAcc<'c> {
    stream: Stream<'c>,
    next_seq: u64,
    pending: std::collections::BTreeMap<u64, ChunkResult<'c>>,
    lines: u64,
    bad: u64,
    errors: Vec<String>,
}

impl<'c> FileAcc<'c> {
    fn new(classifier: &'c Classifier, name: &str, exhaustive: bool) -> FileAcc<'c> {
        let mut stream = Stream::new(classifier, name);
        stream.exhaustive = exhaustive;
        FileAcc {
            stream,
            next_seq: 0,
            pending: Default::default(),
            lines: 0,
            bad: 0,
            errors: Vec::new(),
        }
    }

    /// Merges chunk results in sequence order (field order and examples stay deterministic).
    fn add(&mut self, r: ChunkResult<'c>) {
        self.pending.insert(r.seq, r);
        while let Some(r) = self.pending.remove(&self.next_seq) {
            self.stream.merge(r.stream);
            self.lines += r.lines;
            self.bad += r.bad;
            for e in r.errors {
                if self.errors.len() < MAX_ERRORS {
                    self.errors.push(e);
                }
            }
            self.next_seq += 1;
        }
    }
}

/// Classifies every record of `files` (see the module docs).
pub fn classify_files(
    classifier: &Classifier,
    files: &[PathBuf],
    opts: &FileOptions,
) -> Result<ClassifyReport, FilesError> {
    let start = Instant::now();
    let threads = opts.threads.max(1);
    let names: Vec<String> = files.iter().map(|p| container_name(p)).collect();
    let plans: Vec<PlanCache> = files.iter().map(|_| PlanCache::default()).collect();
    let mut accs: Vec<FileAcc> = names
        .iter()
        .map(|n| FileAcc::new(classifier, n, opts.exhaustive))
        .collect();
    let mut sizes = vec![0u64; files.len()];
    let mut long = vec![0u64; files.len()];
    // Chunks of every file, in order, from the calling thread.
    let mut read_all = |send: &mut dyn FnMut(Chunk)| -> Result<(), FilesError> {
        for (fi, path) in files.iter().enumerate() {
            let f = File::open(path).map_err(io_err(path))?;
            sizes[fi] = f.metadata().map_err(io_err(path))?.len();
            let mut ch = Chunker::new(f, opts.max_line);
            let mut seq = 0;
            while let Some((first_line, data)) = ch.next_chunk().map_err(io_err(path))? {
                send(Chunk {
                    file: fi,
                    seq,
                    first_line,
                    data,
                });
                seq += 1;
            }
            long[fi] = ch.long_lines;
        }
        Ok(())
    };
    if threads == 1 {
        // One core: no hand-offs at all.
        read_all(&mut |c: Chunk| {
            let r = classify_chunk(
                classifier,
                &names[c.file],
                &plans[c.file],
                &c,
                opts.exhaustive,
            );
            accs[c.file].add(r);
        })?;
    } else {
        std::thread::scope(|s| -> Result<(), FilesError> {
            // Two chunks per worker in flight bound the memory.
            let (tx, rx) = mpsc::sync_channel::<Chunk>(threads * 2);
            let rx = Arc::new(Mutex::new(rx));
            let (rtx, rrx) = mpsc::channel::<ChunkResult>();
            for _ in 0..threads {
                let (rx, rtx, names, plans) = (rx.clone(), rtx.clone(), &names, &plans);
                s.spawn(move || loop {
                    let next = rx.lock().map(|r| r.recv());
                    let Ok(Ok(c)) = next else { break };
                    let (name, plans) = (&names[c.file], &plans[c.file]);
                    let r = classify_chunk(classifier, name, plans, &c, opts.exhaustive);
                    if rtx.send(r).is_err() {
                        break;
                    }
                });
            }
            drop(rtx);
            let accs = &mut accs;
            let merger = s.spawn(move || {
                for r in rrx {
                    let fi = r.file;
                    accs[fi].add(r);
                }
            });
            let res = read_all(&mut |c: Chunk| {
                // A send fails only when every worker is gone, which a panic would report.
                let _ = tx.send(c);
            });
            drop(tx);
            merger.join().expect("merger thread");
            res
        })?;
    }
    let mut stats = ClassifyStats {
        files: files.len() as u64,
        threads: threads as u64,
        ..ClassifyStats::default()
    };
    let mut out = Vec::with_capacity(files.len());
    for (fi, acc) in accs.into_iter().enumerate() {
        let r = acc.stream.finish();
        stats.bytes += sizes[fi];
        stats.records += r.records;
        stats.bad_lines += acc.bad;
        stats.long_lines += long[fi];
        let mut container = Container {
            name: names[fi].clone(),
            kind: "file".into(),
            records: Some(r.records),
            records_estimated: false,
            system: false,
            bytes: Some(sizes[fi]),
            sampled: r.records,
            subjects_estimate: None,
            subjects_method: None,
            subjects_interval: None,
            categories: r.categories,
            fields: r.fields,
        };
        // File names and JSON keys come from the files: made safe as they enter the model,
        // as a scan's names are.
        crate::safe::container(&mut container);
        out.push(FileFindings {
            path: crate::safe::text(&files[fi].display().to_string()),
            lines: acc.lines,
            bad_lines: acc.bad,
            long_lines: long[fi],
            errors: acc.errors.iter().map(|e| crate::safe::text(e)).collect(),
            container,
        });
    }
    stats.duration_ms = start.elapsed().as_millis() as u64;
    Ok(ClassifyReport {
        schema: CLASSIFY_SCHEMA.into(),
        stats,
        files: out,
    })
}

/// Writes a report as a table for people: per file its categories, then its classified
/// fields with confidence, matched/seen and masked examples.
pub fn write_table(r: &ClassifyReport, out: &mut dyn Write) -> io::Result<()> {
    let st = &r.stats;
    writeln!(
        out,
        "Classified {} file(s), {} records, {:.1} MB in {:.1}s ({:.0} MB/s, {} thread(s)).",
        st.files,
        st.records,
        st.bytes as f64 / 1e6,
        st.duration_ms as f64 / 1000.0,
        st.bytes as f64 / 1e6 / (st.duration_ms.max(1) as f64 / 1000.0),
        st.threads
    )?;
    if st.bad_lines + st.long_lines > 0 {
        writeln!(
            out,
            "Skipped {} line(s) that were not JSON and {} longer than the limit.",
            st.bad_lines, st.long_lines
        )?;
    }
    for f in &r.files {
        let c = &f.container;
        writeln!(out)?;
        writeln!(
            out,
            "{}  ({} records{})",
            f.path,
            c.records.unwrap_or(0),
            if f.bad_lines + f.long_lines > 0 {
                format!(", {} bad, {} too long", f.bad_lines, f.long_lines)
            } else {
                String::new()
            }
        )?;
        for e in &f.errors {
            writeln!(out, "  ! {e}")?;
        }
        if c.categories.is_empty() {
            writeln!(out, "  no sensitive data found")?;
            continue;
        }
        writeln!(out, "  categories: {}", c.categories.join(", "))?;
        for fd in c.fields.iter().filter(|f| !f.categories.is_empty()) {
            writeln!(
                out,
                "  {:<32} {:<40} {:.2} {:>9}/{:<9} {}",
                fd.path,
                fd.categories.join(","),
                fd.confidence,
                fd.matched,
                fd.seen,
                fd.examples.join("  ")
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks_with(
        text: &[u8],
        max_line: usize,
        read: usize,
        chunk: usize,
    ) -> (Vec<(u64, Vec<u8>)>, u64) {
        let mut c = Chunker::new(text, max_line);
        (c.read, c.chunk) = (read, chunk);
        let mut out = Vec::new();
        while let Some((first, data)) = c.next_chunk().unwrap() {
            out.push((first, data));
        }
        (out, c.long_lines)
    }

    fn chunks(text: &str, max_line: usize) -> (Vec<(u64, String)>, u64) {
        let (c, long) = chunks_with(text.as_bytes(), max_line, 7, CHUNK);
        let c = c
            .into_iter()
            .map(|(first, d)| (first, String::from_utf8(d).unwrap()))
            .collect();
        (c, long)
    }

    #[test]
    fn long_lines_are_skipped_and_numbering_kept() {
        let (c, long) = chunks("{\"a\":1}\n{\"b\":\"xxxxxxxxxxxxxxxxxxxx\"}\n{\"c\":3}", 10);
        assert_eq!(long, 1);
        assert_eq!(c, vec![(0, "{\"a\":1}\n\n{\"c\":3}\n".to_string())]);
        let (c, long) = chunks("{\"a\":1}\n{\"b\":\"xxxxxxxxxxxxxxxxxxxx\"}", 10);
        assert_eq!((long, c[0].1.as_str()), (1, "{\"a\":1}\n\n"));
    }

    /// Every cut of random lines into blocks and chunks gives the lines of the text in order,
    /// each long one as an empty line, chunks of whole lines numbered from their first line.
    #[test]
    fn chunks_are_whole_lines_for_any_block_size() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..3000 {
            let mut text = Vec::new();
            for _ in 0..next(30) {
                let len = if next(4) == 0 { next(200) } else { next(12) };
                text.extend((0..len).map(|i| b'a' + (i % 26) as u8));
                text.push(b'\n');
            }
            if next(2) == 0 {
                text.extend_from_slice(&b"tail-without-newline"[..next(20) as usize]);
            }
            let max_line = 1 + next(60) as usize;
            let (read, chunk) = (1 + next(80) as usize, 1 + next(300) as usize);
            let want: Vec<&[u8]> = text
                .strip_suffix(b"\n")
                .unwrap_or(&text)
                .split(|&b| b == b'\n')
                .filter(|_| !text.is_empty())
                .map(|l| if l.len() > max_line { &b""[..] } else { l })
                .collect();
            let (got, long) = chunks_with(&text, max_line, read, chunk);
            let ctx = format!("{text:?} max_line {max_line} read {read} chunk {chunk}");
            let mut lines: Vec<&[u8]> = Vec::new();
            for (first, data) in &got {
                assert_eq!(*first, lines.len() as u64, "{ctx}");
                assert_eq!(data.last(), Some(&b'\n'), "{ctx}");
                lines.extend(data[..data.len() - 1].split(|&b| b == b'\n'));
            }
            assert_eq!(lines, want, "{ctx}");
            let long_want = text
                .split(|&b| b == b'\n')
                .filter(|l| l.len() > max_line)
                .count();
            assert_eq!(long, long_want as u64, "{ctx}");
        }
    }

    #[test]
    fn files_are_classified_with_bad_lines_counted() {
        let dir = std::env::temp_dir().join(format!("leakscope-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("crm.kunden.jsonl");
        let mut text = String::new();
        for i in 0..3000 {
            text.push_str(&format!(
                "{{\"e_mail\":\"kunde{i}@beispiel.de\",\"versandgewicht_kg\":\"1.{i}\"}}\n"
            ));
            if i == 10 {
                text.push_str("{not json\n");
            }
        }
        // A line with bytes that are not UTF-8 makes its chunk parsed line by line: it is
        // counted bad, its neighbours still classified.
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(b"{\"e_mail\":\"\xff\"}\n");
        bytes.extend_from_slice(b"{\"e_mail\":\"letzte@beispiel.de\"}\n");
        std::fs::write(&path, &bytes).unwrap();
        for threads in [1, 2] {
            let r = classify_files(
                Classifier::builtin(),
                &expand(std::slice::from_ref(&dir)).unwrap(),
                &FileOptions {
                    threads,
                    ..FileOptions::default()
                },
            )
            .unwrap();
            let f = &r.files[0];
            assert_eq!(f.container.name, "crm.kunden");
            assert_eq!((f.lines, f.bad_lines), (3003, 2));
            assert_eq!(f.errors.len(), 2);
            assert!(
                f.errors[0].starts_with("line 12: not JSON")
                    && f.errors[1].starts_with("line 3002: not JSON"),
                "{:?}",
                f.errors
            );
            assert_eq!(f.container.categories, ["identity.email"]);
            let email = &f.container.fields[0];
            assert_eq!((email.seen, email.matched), (3001, 3001));
            assert_eq!(email.examples, ["k•••@b•••.de"; 3]);
            let json = serde_json::to_string(&r).unwrap();
            assert!(!json.contains("kunde0@"), "no raw value in the output");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
