//! `leakscope`: the command line over `leakscope-core`.
//!
//! Only arguments, progress, output and exit codes live here; the scan itself is the library's.
//! Exit codes: 0 = nothing at or above `--fail-on`; 1 = something is; 2 = bad input or error.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use leakscope_core::driver::ProbeOptions;
use leakscope_core::inventory::InventoryOptions;
use leakscope_core::model::{ScanReport, Service, Severity, Stats};
use leakscope_core::net::Limits;
use leakscope_core::protocols;
use leakscope_core::report::{self, html, markdown, summary, Format};
use leakscope_core::scan::{self, Observer, ScanOptions};
use leakscope_core::scope::{PortList, Scope, ScopeBuilder, ScopeFile, TargetSpec};
use leakscope_core::store::{self, Store};
use std::collections::HashSet;

mod help;
mod watch;

#[derive(Parser)]
#[command(
    name = "leakscope",
    version,
    about = "Find your exposed data stores and tell whose data they expose.",
    long_about = "leakscope finds data stores in infrastructure you are authorized to test, identifies each by \
protocol probes (not by port number), and decides whether it can be read without credentials.\n\n\
Scan only what you own or are allowed to test: leakscope contacts exactly the targets you list, \
minus exclusions, and never the cluster peers a server tells it about.",
    after_help = "Examples:\n  leakscope scan 127.0.10.0/24\n  leakscope scan 10.0.3.0/24 --exclude 10.0.3.1 --format json -o scan.json\n  leakscope watch 10.0.3.0/24 --interval 30s --webhook https://hooks.example.com/leakscope\n  leakscope protocols"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Find data stores in TARGETS, identify them and decide whether they are open.
    #[command(after_long_help = help::scan_after_help())]
    Scan(ScanArgs),
    /// Keep checking TARGETS and alert (webhook, e-mail, command) within a minute of a store
    /// turning readable, and again when it closes.
    #[command(after_long_help = watch::WATCH_HELP)]
    Watch(Box<watch::WatchArgs>),
    /// List the scans kept in the findings store, newest first.
    Scans(StoreArgs),
    /// Show a stored scan for people or programs: table, json, md, html or a GDPR Art. 33 draft.
    #[command(
        after_help = "Examples:\n  leakscope report\n  leakscope report latest --format html -o report.html\n  leakscope report 6155c7 --format gdpr -o art33.md"
    )]
    Report(ReportArgs),
    /// What changed between two stored scans: services newly open, closed, changed.
    #[command(after_help = "Example:\n  leakscope diff 6155c7 latest")]
    Diff(DiffArgs),
    /// The exposure timeline of one endpoint: how long it was open, watch events, stored scans.
    #[command(after_help = "Example:\n  leakscope history 127.0.10.1:9200")]
    History(HistoryArgs),
    /// List the protocols leakscope identifies: ports, how each is judged, default credentials.
    Protocols,
    /// Classify every record of exported JSON-lines files (one container per file).
    #[command(after_long_help = CLASSIFY_HELP)]
    Classify(ClassifyArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish) to standard output.
    #[command(
        after_help = "Examples:\n  leakscope completions bash > ~/.local/share/bash-completion/completions/leakscope\n  leakscope completions zsh > \"${fpath[1]}/_leakscope\"\n  leakscope completions fish > ~/.config/fish/completions/leakscope.fish"
    )]
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

const CLASSIFY_HELP: &str = "\
Each file is one container, named by its file name without the extension; a directory stands for \
the .jsonl and .ndjson files under it (recursively). Every line is a JSON document, \
flattened as a scan flattens sampled records (`devices[].mac`), and every record is classified \
with the scan's rules. Output carries masked examples only, never a raw value.

Lines that are not JSON are counted and skipped (the first few are reported by line number), \
as are lines longer than --max-line; neither stops the run. Files are streamed in 1 MiB chunks: \
memory stays bounded whatever their size.

The phone validators (libphonenumber) are budgeted per field on large files: the first 256 \
candidate values of each field (in a file's first MiB), then one in 64; the share that passed \
stands for the rest and the field's `matched` is then an estimate. --exact validates every value.

Exit codes: 0 nothing sensitive found, 1 something was, 2 bad input or error.

Examples:
  leakscope classify dump/customers.jsonl
  leakscope classify export/ --format json -o findings.json
  leakscope classify export/ --threads 1 --exact";

#[derive(Clone, Copy, ValueEnum)]
enum ClassifyFormat {
    /// Per file: categories, then classified fields with masked examples.
    Table,
    /// One JSON document, schema leakscope.classify/v1.
    Json,
    /// One JSON object per file, one per line.
    Jsonl,
}

#[derive(Args)]
struct ClassifyArgs {
    /// JSON-lines files, or directories of them.
    #[arg(value_name = "PATH", required = true)]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    format: ClassifyFormat,
    /// Write to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Worker threads [default: the number of cores].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    threads: Option<u32>,
    /// Longest line read, in bytes (at least 1); longer lines are skipped and counted.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20,
          value_parser = clap::value_parser!(u64).range(1..=1 << 34))]
    max_line: u64,
    /// Run the costly validators (phone numbers) on every value instead of a budget.
    #[arg(long)]
    exact: bool,
}

fn classify_cmd(a: ClassifyArgs) -> Result<ExitCode> {
    use leakscope_core::classify::{files, Classifier};
    let paths = files::expand(&a.paths)?;
    let mut opts = files::FileOptions {
        max_line: a.max_line as usize,
        exhaustive: a.exact,
        ..files::FileOptions::default()
    };
    if let Some(t) = a.threads {
        opts.threads = t as usize;
    }
    let report = files::classify_files(Classifier::builtin(), &paths, &opts)?;
    let mut buf = Vec::new();
    match a.format {
        ClassifyFormat::Table => files::write_table(&report, &mut buf)?,
        ClassifyFormat::Json => {
            serde_json::to_writer_pretty(&mut buf, &report)?;
            buf.push(b'\n');
        }
        ClassifyFormat::Jsonl => {
            for f in &report.files {
                serde_json::to_writer(&mut buf, f)?;
                buf.push(b'\n');
            }
        }
    }
    emit(&String::from_utf8_lossy(&buf), a.output.as_ref())?;
    let found = report
        .files
        .iter()
        .any(|f| !f.container.categories.is_empty());
    Ok(if found {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(Args, Clone, Default)]
struct StoreArgs {
    /// The findings store (SQLite) [default: $LEAKSCOPE_DB, else ~/.local/share/leakscope/leakscope.db].
    ///
    /// Example: --db ./findings.db
    #[arg(long, value_name = "FILE")]
    db: Option<PathBuf>,
}

impl StoreArgs {
    fn path(&self) -> PathBuf {
        self.db.clone().unwrap_or_else(store::default_path)
    }

    /// Opens the store a scan writes to, creating it if needed. Only the default location's
    /// directory is created (0700); a directory named with --db or LEAKSCOPE_DB must exist.
    fn open_rw(&self) -> Result<Store> {
        let path = self.path();
        let explicit = self.db.is_some() || std::env::var_os("LEAKSCOPE_DB").is_some();
        if !explicit {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
        }
        Ok(Store::open(&path)?)
    }

    /// Opens an existing store for a command that only reads it.
    fn open_ro(&self) -> Result<Store> {
        Ok(Store::open_existing(&self.path())?)
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum ReportFormat {
    /// Summary and detail for a terminal.
    Table,
    /// The scan document, schema leakscope.scan/v1.
    Json,
    /// Markdown for tickets and wikis.
    Md,
    /// One self-contained HTML page with charts (no network fetches).
    Html,
    /// A GDPR Art. 33 breach-notification draft (Markdown), blanks marked for the owner.
    Gdpr,
}

#[derive(Args)]
struct ReportArgs {
    /// Scan id (or a unique prefix), or `latest`.
    #[arg(default_value = "latest")]
    scan: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    format: ReportFormat,
    /// Write to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
struct DiffArgs {
    /// The earlier scan (id, prefix or `latest`).
    a: String,
    /// The later scan (id, prefix or `latest`).
    b: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    format: DiffFormat,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum DiffFormat {
    /// One line per change: kind, endpoint, details.
    Table,
    /// A JSON array of changes, each {endpoint, kind, before, after, details}
    /// (docs/leakscope.diff.v1.schema.json).
    Json,
    /// The same change objects, one per line.
    Jsonl,
}

#[derive(Args)]
struct HistoryArgs {
    /// ADDRESS:PORT of the service, e.g. `127.0.10.1:9200` or `[::1]:6379`.
    endpoint: std::net::SocketAddr,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Clone, Copy, Default, ValueEnum)]
enum FormatArg {
    #[default]
    /// Aligned table for people (colours only on a terminal; NO_COLOR respected).
    Table,
    /// One JSON document, schema leakscope.scan/v1.
    Json,
    /// One JSON object per service, one per line.
    Jsonl,
}

#[derive(Args, serde::Serialize, serde::Deserialize)]
struct ScanArgs {
    /// Addresses, CIDRs, ranges, host names, each optionally with a port.
    ///
    /// Examples: 127.0.10.1, 127.0.10.0/24, 127.0.10.1-20, 127.0.10.1-127.0.11.9, db.internal,
    /// `127.0.10.1:9200`, `[::1]:6379`. A target with a port is probed on that port only.
    #[arg(value_name = "TARGETS")]
    targets: Vec<String>,

    /// Ports to probe on targets without a port [default: every registry port, see `leakscope protocols`].
    ///
    /// Example: --ports 6379,9200-9210,27017
    #[arg(short, long, value_name = "LIST")]
    ports: Option<String>,

    /// Never contact these (addresses, CIDRs, ranges, host names, or ADDR:PORT for one port).
    /// Repeatable and comma-separated. Exclusions always win.
    ///
    /// Example: --exclude 127.0.10.9 --exclude 127.0.10.1:9200
    #[arg(short = 'x', long, value_name = "TARGET", value_delimiter = ',')]
    exclude: Vec<String>,

    /// TOML file with `allow = [...]`, `deny = [...]` and optionally `ports = "..."`; merged
    /// with TARGETS and --exclude.
    ///
    /// Example: --scope-file scope.toml
    #[arg(long, value_name = "FILE")]
    scope_file: Option<PathBuf>,

    /// Output format.
    ///
    /// Example: --format json
    #[arg(short, long, value_enum, default_value = "table")]
    #[serde(skip)]
    format: FormatArg,

    /// Write the report to FILE instead of standard output.
    ///
    /// Example: --output scan.json
    #[arg(short, long, value_name = "FILE")]
    #[serde(skip)]
    output: Option<PathBuf>,

    /// New connections per second over the whole scan (0 = unlimited).
    ///
    /// Example: --rate 200 (gentle on production firewalls)
    #[arg(long, value_name = "N", default_value_t = 0)]
    rate: u32,

    /// Endpoints probed at once.
    ///
    /// Example: --concurrency 64
    #[arg(long, value_name = "N", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=65536))]
    concurrency: u32,

    /// Endpoints of one address probed at once.
    ///
    /// Example: --per-host 4
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    per_host: u32,

    /// Deadline in seconds for each connect and each read.
    ///
    /// Example: --timeout 1.5
    #[arg(long, value_name = "SECS", default_value_t = 3.0, value_parser = parse_secs)]
    timeout: f64,

    /// Deadline in seconds for identifying and judging one service.
    ///
    /// Example: --service-timeout 10
    #[arg(long, value_name = "SECS", default_value_t = 20.0, value_parser = parse_secs)]
    service_timeout: f64,

    /// Exit with 1 when a service is at or above this severity (info, low, medium, high, critical).
    ///
    /// Example: --fail-on high
    #[arg(long, value_name = "SEVERITY", default_value = "medium", value_parser = parse_severity)]
    fail_on: Severity,

    /// Also try the short documented list of default credentials (see `leakscope protocols`);
    /// each attempt is counted and spaced out. Off by default.
    ///
    /// Example: leakscope scan 10.0.3.0/24 --try-defaults
    #[arg(long)]
    try_defaults: bool,

    /// List what exposed stores hold (containers, counts, sizes) but read no records.
    ///
    /// Example: leakscope scan 10.0.3.0/24 --no-sample
    #[arg(long, conflicts_with = "sample")]
    no_sample: bool,

    /// Records sampled per container of an exposed store, spread across it where the store
    /// allows; only masked examples ever leave the process.
    ///
    /// Example: --sample 50
    #[arg(long, value_name = "N", default_value_t = 200, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    sample: u32,

    /// Exact census of exposed stores: count every record (scroll, cursors, SCAN) instead of
    /// catalogue figures. Slower; memory stays bounded.
    ///
    /// Example: leakscope scan 127.0.10.1:9200 --full
    #[arg(long)]
    full: bool,

    /// Only identify and judge services: no inventory, no sampling.
    ///
    /// Example: leakscope scan 10.0.0.0/16 --no-inventory
    #[arg(long)]
    no_inventory: bool,

    /// Time budget in seconds for one service after it is identified: listing, counts,
    /// samples and people counts (60 % for the inventory, the rest shared among the people
    /// counts); what it cuts short is said in the report, marked estimated or missing
    /// [default: 50, or 3600 with --full].
    ///
    /// Example: --inventory-timeout 120
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    inventory_timeout: Option<f64>,

    /// Time budget in seconds for counting the distinct people of one container, on top of the
    /// service's --inventory-timeout: the store's own distinct count, or reading every key of
    /// a Redis/Memcached pattern [default: the rest of the service's budget, shared among its
    /// containers; the inventory timeout each with --full].
    ///
    /// Example: --subjects-timeout 120
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    subjects_timeout: Option<f64>,

    /// Accept scopes of more than 65,536 addresses.
    ///
    /// Example: leakscope scan 10.0.0.0/8 --allow-large-scope --rate 2000
    #[arg(long)]
    allow_large_scope: bool,

    /// No progress bar, even on a terminal.
    ///
    /// Example: leakscope scan 10.0.3.0/24 --quiet
    #[arg(short, long)]
    #[serde(skip)]
    quiet: bool,

    /// Continue an interrupted scan (Ctrl-C, kill): same targets and options, endpoints already
    /// probed are not probed again. Targets and probing options cannot be given with it (the
    /// stored ones are used); output options (--format, --output, --revocation-list, --quiet,
    /// --db) can.
    ///
    /// Example: leakscope scan --resume 6155c70ce9d072e2
    #[arg(long, value_name = "SCAN_ID", conflicts_with_all = [
        "targets", "ports", "exclude", "scope_file", "rate", "concurrency", "per_host", "timeout",
        "service_timeout", "fail_on", "try_defaults", "no_sample", "sample", "full",
        "no_inventory", "inventory_timeout", "subjects_timeout", "allow_large_scope", "no_store",
    ])]
    #[serde(skip)]
    resume: Option<String>,

    /// Write every exposed credential found in samples (type, where, keyed fingerprint) to FILE
    /// as CSV, to drive revocation. Values themselves are never written.
    ///
    /// Example: --revocation-list revoke.csv
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    revocation_list: Option<PathBuf>,

    /// Do not keep this scan in the findings store.
    ///
    /// Example: leakscope scan 127.0.10.0/24 --no-store
    #[arg(long)]
    #[serde(skip)]
    no_store: bool,

    #[command(flatten)]
    #[serde(skip)]
    store: StoreArgs,
}

fn parse_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 3600.0 => Ok(v),
        _ => Err(format!(
            "{s:?} is not a number of seconds more than 0 and at most 3600"
        )),
    }
}

fn parse_severity(s: &str) -> Result<Severity, String> {
    s.parse()
}

/// Environment variable that confines every scan to loopback addresses. The project's own test
/// harness and CI set it, so no test can ever reach a real network by mistake.
const LOOPBACK_ONLY_ENV: &str = "LEAKSCOPE_LOOPBACK_ONLY";

/// Whether LEAKSCOPE_LOOPBACK_ONLY confines this scan to loopback. It fails closed: a value
/// that is neither clearly on nor clearly off is an error, not "off".
fn loopback_only() -> Result<bool> {
    let v = match std::env::var(LOOPBACK_ONLY_ENV) {
        Ok(v) => v,
        Err(std::env::VarError::NotPresent) => return Ok(false),
        Err(std::env::VarError::NotUnicode(v)) => {
            bail!("{LOOPBACK_ONLY_ENV}={v:?} is not text; use 1 (on) or 0 (off)")
        }
    };
    parse_switch(&v).ok_or_else(|| {
        anyhow::anyhow!(
            "{LOOPBACK_ONLY_ENV}={v:?} is neither on (1, true, yes, on) nor off (0, false, no, \
             off, empty); refusing to scan"
        )
    })
}

/// `1/true/yes/on` → on, `0/false/no/off` or empty → off (any case); None otherwise.
fn parse_switch(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "" | "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

async fn build_scope(a: &ScanArgs) -> Result<Scope> {
    let mut builder = match &a.scope_file {
        Some(path) => ScopeFile::load(path)?.into_builder(),
        None => ScopeBuilder::default(),
    };
    for t in &a.targets {
        builder.allow.push(TargetSpec::parse(t)?);
    }
    for t in &a.exclude {
        builder.deny.push(TargetSpec::parse(t)?);
    }
    if builder.allow.is_empty() {
        bail!(
            "no targets: give addresses, CIDRs, ranges or host names (see `leakscope scan --help`)"
        );
    }
    if let Some(p) = &a.ports {
        builder.ports = PortList::parse(p)?;
    } else if a.scope_file.is_none() || builder.ports.is_empty() {
        builder.ports = PortList::from_ports(protocols::default_ports())?;
    }
    builder.allow_large = a.allow_large_scope;
    let scope = builder.build().await?;
    if loopback_only()? {
        if let Some(bad) = scope.first_non_loopback() {
            bail!("{LOOPBACK_ONLY_ENV} is on and the scope includes {bad}, which is not a loopback address");
        }
    }
    Ok(scope)
}

/// What watches a running scan: the progress bar (only on a terminal) and the store writer.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    writer: Option<store::Writer>,
}

impl Observer for Progress {
    fn endpoint_done(&self, addr: std::net::SocketAddr, service: Option<&Service>) {
        if let Some(w) = &self.writer {
            w.record(addr, service);
        }
        if let Some(bar) = &self.bar {
            bar.inc(1);
            if let Some(s) = service {
                bar.set_message(format!("found {} on {}:{}", s.protocol, s.address, s.port));
            }
        }
    }
}

impl Progress {
    fn close(self) -> Result<()> {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
        if let Some(w) = self.writer {
            w.close()?;
        }
        Ok(())
    }
}

/// Loads the request of a stored scan for `--resume`, keeping this invocation's output options.
fn resumed(a: ScanArgs, store: &Store) -> Result<(ScanArgs, String)> {
    let id = store.resolve(a.resume.as_deref().unwrap_or("latest"))?;
    if store.status(&id)? == store::ScanStatus::Complete {
        bail!("scan {id} is complete: nothing to resume (show it with `leakscope report {id}`)");
    }
    let mut stored: ScanArgs = serde_json::from_str(&store.request(&id)?)
        .with_context(|| format!("scan {id} was stored by an incompatible version"))?;
    stored.format = a.format;
    stored.output = a.output;
    stored.revocation_list = a.revocation_list;
    stored.quiet = a.quiet;
    stored.store = a.store;
    Ok((stored, id))
}

/// A file leakscope writes (`-o`, `--revocation-list`), opened before the scan so a path that
/// cannot be written is refused before the first packet.
struct OutFile {
    path: PathBuf,
    file: std::fs::File,
    /// The file did not exist before: an interrupted scan removes it again.
    created: bool,
}

impl OutFile {
    fn open(path: &Path) -> Result<OutFile> {
        let created = !path.exists();
        Ok(OutFile {
            path: path.to_path_buf(),
            file: create_private(path)?,
            created,
        })
    }

    fn discard(self) {
        if self.created {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Creates (or truncates) a file leakscope writes, mode 0600: reports say where personal data
/// is exposed. An existing regular file is made 0600 too; a device (`/dev/stdout`) is left as
/// it is.
fn create_private(path: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let meta = f.metadata()?;
    if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot make {} private", path.display()))?;
    }
    Ok(f)
}

/// `1234.5678` → `1234.6`: a rate with at most one decimal.
fn rate_text(per_sec: f64) -> String {
    if per_sec.is_finite() {
        format!("{per_sec:.1}/s")
    } else {
        "-/s".into()
    }
}

/// The progress bar's look: position, rate (one decimal) and time left.
fn progress_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} endpoints ({rate}, ETA {eta}) {msg}",
    )
    .expect("valid template")
    .with_key(
        "rate",
        |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&rate_text(s.per_sec()));
        },
    )
}

async fn scan(a: ScanArgs) -> Result<ExitCode> {
    // Fail closed before anything: a confinement switch that is not clearly on or off is an
    // error, whatever the targets.
    loopback_only()?;
    let store = if a.no_store && a.resume.is_none() {
        None
    } else {
        Some(a.store.open_rw()?)
    };
    let (a, resume_id) = match (&a.resume, &store) {
        (Some(_), Some(st)) => {
            let (args, id) = resumed(a, st)?;
            (args, Some(id))
        }
        _ => (a, None),
    };
    let scope = Arc::new(build_scope(&a).await?);
    // Output files are opened now: one that cannot be written stops the scan before it sends
    // a packet, not after it has run.
    let mut output = a.output.as_deref().map(OutFile::open).transpose()?;
    let mut revocation = match a.revocation_list.as_deref().map(OutFile::open).transpose() {
        Ok(r) => r,
        Err(e) => {
            output.take().into_iter().for_each(OutFile::discard);
            return Err(e);
        }
    };
    let per_io = Duration::from_secs_f64(a.timeout);
    let opts = ScanOptions {
        concurrency: a.concurrency as usize,
        per_host: a.per_host as usize,
        rate: (a.rate > 0).then_some(a.rate),
        service_timeout: Duration::from_secs_f64(a.service_timeout),
        probe: ProbeOptions {
            limits: Limits {
                connect_timeout: per_io,
                read_timeout: per_io,
                write_timeout: per_io,
            },
            try_defaults: a.try_defaults,
            banner_wait: per_io.min(Duration::from_millis(1500)),
            ..ProbeOptions::default()
        },
        inventory: (!a.no_inventory).then(|| InventoryOptions {
            sample: if a.no_sample { 0 } else { a.sample as usize },
            time_budget: Duration::from_secs_f64(a.inventory_timeout.unwrap_or(if a.full {
                3600.0
            } else {
                leakscope_core::driver::SERVICE_DEFAULT
            })),
            full: a.full,
            subjects_budget: a.subjects_timeout.map(Duration::from_secs_f64),
            // An exact census streams every key or record through a bounded window; the byte
            // budget then only guards against a store that never ends, not against memory.
            byte_budget: if a.full {
                16 << 30
            } else {
                InventoryOptions::default().byte_budget
            },
            ..InventoryOptions::default()
        }),
        scan_id: None,
        skip: Arc::new(HashSet::new()),
        fingerprinter: {
            let (fp, warning) = scan::fingerprinter();
            if let Some(w) = warning {
                eprintln!("leakscope: warning: {w}");
            }
            fp
        },
    };
    let mut opts = opts;
    let mut writer = None;
    // Running time of earlier runs of a resumed scan: its duration counts every run.
    let mut earlier_ms = 0;
    if let Some(st) = &store {
        let id = match &resume_id {
            Some(id) => {
                earlier_ms = st.duration_ms(id)?;
                st.reopen(id)?;
                opts.skip = Arc::new(st.done(id)?);
                id.clone()
            }
            None => {
                let id = scan::new_scan_id();
                let now =
                    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
                st.begin(&id, &now, &serde_json::to_string(&a)?)?;
                id
            }
        };
        writer = Some(Store::writer(st.path(), &id, earlier_ms)?);
        opts.scan_id = Some(id);
    }
    let bar = (!a.quiet && std::io::stderr().is_terminal()).then(|| {
        let total = u64::try_from(scope.endpoint_count()).unwrap_or(u64::MAX);
        let bar = indicatif::ProgressBar::new(total).with_style(progress_style());
        bar.set_position(opts.skip.len() as u64);
        bar.reset_eta();
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let progress = Arc::new(Progress { bar, writer });
    let scan_id = opts.scan_id.clone();
    let observer: Arc<dyn Observer> = progress.clone();
    let report: ScanReport = tokio::select! {
        r = scan::run(scope, opts, observer) => r,
        _ = tokio::signal::ctrl_c() => {
            output.take().into_iter().for_each(OutFile::discard);
            revocation.take().into_iter().for_each(OutFile::discard);
            if let (Some(st), Some(id)) = (&store, &scan_id) {
                // What is recorded so far stays; the rest is probed on resume.
                st.interrupt(id)?;
                eprintln!("leakscope: interrupted; continue with: leakscope scan --resume {id}");
            }
            return Ok(ExitCode::from(130));
        }
    };
    let progress =
        Arc::try_unwrap(progress).map_err(|_| anyhow::anyhow!("scan tasks outlived the scan"))?;
    progress.close()?; // clears the progress bar and flushes the store before the report
    let this_run = report.stats.clone();
    let report = match (&store, &scan_id) {
        (Some(st), Some(id)) => {
            let mut stats = report.stats.clone();
            stats.ports_probed = st.done(id)?.len() as u64;
            stats.duration_ms = earlier_ms + report.stats.duration_ms;
            let finished = report.finished_at.clone().unwrap_or_default();
            st.finish(id, &finished, &stats)?;
            // A resumed scan's earlier runs left no fingerprints (they are never stored), so
            // its people cannot be de-duplicated across runs: no figure rather than a wrong one.
            st.set_impact(id, report.impact.as_ref().filter(|_| resume_id.is_none()))?;
            st.scan_windows(id)?;
            // The stored scan is the union of every run of it (a resumed scan included).
            let (mut stored, _) = st.load(id)?;
            stored.stats = Stats {
                services: stored.services.len() as u64,
                ..stats
            };
            stored.finished_at = report.finished_at.clone();
            stored
        }
        _ => report,
    };

    // The scan is kept whatever happens to the files: a failed write says where it is.
    let kept = |e: anyhow::Error| match &scan_id {
        Some(id) => e.context(format!(
            "the scan itself is kept in the store as {id} (`leakscope report {id}`)"
        )),
        None => e,
    };
    if let Some(out) = revocation.take() {
        let n = write_revocation_list(&report, out.file)
            .with_context(|| format!("cannot write {}", out.path.display()))
            .map_err(kept)?;
        eprintln!(
            "leakscope: {n} exposed credential fingerprint(s) written to {}",
            out.path.display()
        );
    }
    let format = match a.format {
        FormatArg::Table => Format::Table,
        FormatArg::Json => Format::Json,
        FormatArg::Jsonl => Format::Jsonl,
    };
    let written: Result<()> = match output.take() {
        Some(mut out) => report::write(&report, format, false, &mut out.file)
            .and_then(|_| out.file.flush())
            .and_then(|_| out.file.sync_all())
            .with_context(|| format!("cannot write {}", out.path.display())),
        None => {
            let stdout = std::io::stdout();
            let color =
                stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            let mut lock = stdout.lock();
            report::write(&report, format, color, &mut lock)
                .and_then(|_| lock.flush())
                .map_err(anyhow::Error::from)
        }
    };
    if let Err(e) = written {
        let broken_pipe = e
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe);
        return Err(if broken_pipe { e } else { kept(e) });
    }
    // Nothing answered, not even with a refusal: the scope could not be reached at all, which
    // is not the same as "nothing exposed".
    if report.services.is_empty() && this_run.nothing_reached() {
        eprintln!(
            "leakscope: error: nothing in the scope could be reached: each of the {} endpoint(s) \
             probed failed with a network error (no route, network down or time-out)",
            report.stats.ports_probed
        );
        return Ok(ExitCode::from(2));
    }
    Ok(match report.worst() {
        Some(w) if w >= a.fail_on => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}

/// CSV of exposed credentials (see `leakscope_core::report::revocation`), written to a file
/// created 0600 before the scan.
fn write_revocation_list(report: &ScanReport, mut file: std::fs::File) -> Result<usize> {
    let (csv, n) = report::revocation::csv(&report.services);
    file.write_all(csv.as_bytes())?;
    file.sync_all()?;
    Ok(n)
}

fn protocols() {
    println!("{}", help::protocol_table());
}

/// Writes `text` to `output` or standard output.
fn emit(text: &str, output: Option<&PathBuf>) -> Result<()> {
    match output {
        Some(path) => {
            let mut f = create_private(path)?;
            f.write_all(text.as_bytes())
                .and_then(|_| f.sync_all())
                .with_context(|| format!("cannot write {}", path.display()))
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
            Ok(())
        }
    }
}

/// `s` cut to `max` characters, the cut marked with an ellipsis.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn scans(a: StoreArgs) -> Result<ExitCode> {
    let store = a.open_ro()?;
    let list = store.scans()?;
    if list.is_empty() {
        println!(
            "no scans stored in {} yet (run `leakscope scan`)",
            store.path().display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<17} {:<21} {:<10} {:>8} {:>8}  TARGETS",
        "SCAN", "STARTED", "STATUS", "SERVICES", "EXPOSED"
    );
    for s in list {
        let targets = serde_json::from_str::<serde_json::Value>(&s.request)
            .ok()
            .and_then(|v| {
                v.get("targets").and_then(|t| t.as_array()).map(|t| {
                    t.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
            })
            .unwrap_or_default();
        let status = s.status.as_str();
        let targets = cut(&leakscope_core::safe::text(&targets), 40);
        println!(
            "{:<17} {:<21} {:<10} {:>8} {:>8}  {}",
            s.id, s.started_at, status, s.services, s.exposed, targets
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Exposure windows (first and last scan seeing each exposed service of `report` exposed).
fn windows(
    store: &Store,
    report: &ScanReport,
) -> Result<std::collections::BTreeMap<String, markdown::Window>> {
    let mut out = std::collections::BTreeMap::new();
    for s in report.services.iter().filter(|s| summary::exposed(s)) {
        let Ok(ip) = s.address.parse::<std::net::IpAddr>() else {
            continue;
        };
        let seen: Vec<String> = store
            .history(std::net::SocketAddr::new(ip, s.port))?
            .into_iter()
            .filter(|h| h.service.as_ref().is_some_and(summary::exposed))
            .map(|h| h.started_at)
            .collect();
        if let (Some(first), Some(last)) = (seen.first(), seen.last()) {
            let key = summary::endpoint(s);
            out.insert(
                key,
                markdown::Window {
                    first_seen_open: first.clone(),
                    last_seen_open: last.clone(),
                },
            );
        }
    }
    Ok(out)
}

fn timeline(store: &Store) -> Result<Vec<html::TimelinePoint>> {
    let mut points = Vec::new();
    for s in store.scans()?.into_iter().rev() {
        let (r, _) = store.load(&s.id)?;
        let sum = summary::Summary::of(&r);
        points.push(html::TimelinePoint {
            started_at: s.started_at,
            exposed_services: sum.exposed,
            exposed_records: sum.exposed_records,
        });
    }
    Ok(points)
}

fn report_cmd(a: ReportArgs) -> Result<ExitCode> {
    let store = a.store.open_ro()?;
    let (report, status) = store.load(&a.scan)?;
    if status != store::ScanStatus::Complete {
        eprintln!(
            "leakscope: note: scan {} is incomplete (resume it with `leakscope scan --resume {}`)",
            report.scan_id, report.scan_id
        );
    }
    let text = match a.format {
        ReportFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
        ReportFormat::Md => markdown::findings(&report),
        ReportFormat::Gdpr => markdown::gdpr(&report, &windows(&store, &report)?),
        ReportFormat::Html => html::render(&report, &timeline(&store)?),
        ReportFormat::Table => {
            let mut buf = Vec::new();
            let color = a.output.is_none()
                && std::io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            report::write(&report, Format::Table, color, &mut buf)?;
            String::from_utf8_lossy(&buf).into_owned()
        }
    };
    emit(&text, a.output.as_ref())?;
    if let Some(p) = &a.output {
        eprintln!("leakscope: wrote {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn diff_cmd(a: DiffArgs) -> Result<ExitCode> {
    let store = a.store.open_ro()?;
    let (x, sx) = store.load(&a.a)?;
    let (y, sy) = store.load(&a.b)?;
    for (r, st) in [(&x, sx), (&y, sy)] {
        if st != store::ScanStatus::Complete {
            eprintln!(
                "leakscope: warning: scan {} is {} ({} endpoints probed): endpoints it did not \
                 probe are not compared (listed as not_rescanned or not_scanned_before)",
                r.scan_id,
                st.as_str(),
                r.stats.ports_probed
            );
        }
    }
    let probed = |id: &str| -> Result<leakscope_core::diff::Probed> {
        Ok(store.done(id)?.iter().map(|e| e.to_string()).collect())
    };
    let changes = leakscope_core::diff::diff(&x, &y, &probed(&x.scan_id)?, &probed(&y.scan_id)?);
    match a.format {
        DiffFormat::Json => {
            emit(&(serde_json::to_string_pretty(&changes)? + "\n"), None)?;
        }
        DiffFormat::Jsonl => {
            let mut text = String::new();
            for c in &changes {
                text.push_str(&serde_json::to_string(c)?);
                text.push('\n');
            }
            emit(&text, None)?;
        }
        DiffFormat::Table => {
            println!(
                "{} change(s) from scan {} ({}) to scan {} ({})",
                changes.len(),
                x.scan_id,
                x.started_at,
                y.scan_id,
                y.started_at
            );
            for c in &changes {
                let kind = serde_json::to_value(&c.kind)?
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                println!("{:<18} {:<24} {}", kind, c.endpoint, c.details.join("; "));
            }
        }
    }
    let newly_exposed = changes
        .iter()
        .any(|c| c.kind == leakscope_core::diff::ChangeKind::NewlyExposed);
    Ok(if newly_exposed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn history_cmd(a: HistoryArgs) -> Result<ExitCode> {
    let store = a.store.open_ro()?;
    let h = store.history(a.endpoint)?;
    let windows = store.windows(a.endpoint)?;
    let events = store.events(Some(a.endpoint), 50)?;
    if h.is_empty() && windows.is_empty() && events.is_empty() {
        println!("{} was not probed by any stored scan or watch", a.endpoint);
        return Ok(ExitCode::SUCCESS);
    }
    if windows.is_empty() {
        println!("{}: never seen open", a.endpoint);
    }
    for w in &windows {
        println!(
            "{}: {} (seen by {})",
            a.endpoint,
            w.exposure().describe(),
            w.source
        );
    }
    if !events.is_empty() {
        println!(
            "\n{:<21} {:<17} {:<10} SUMMARY",
            "EVENT AT", "EVENT", "GROUP"
        );
        for e in &events {
            let summary = serde_json::from_str::<serde_json::Value>(&e.alert)
                .ok()
                .and_then(|v| v["summary"].as_str().map(str::to_string))
                .unwrap_or_default();
            println!(
                "{:<21} {:<17} {:<10} {}{}",
                e.at,
                e.kind,
                e.group,
                summary,
                if e.baseline {
                    " (baseline, not alerted)"
                } else {
                    ""
                }
            );
        }
    }
    if !h.is_empty() {
        println!(
            "\n{:<21} {:<17} {:<13} {:<20} SEVERITY",
            "SCAN STARTED", "SCAN", "PROTOCOL", "ACCESS"
        );
    }
    for x in &h {
        match &x.service {
            Some(s) => println!(
                "{:<21} {:<17} {:<13} {:<20} {}",
                x.started_at,
                x.scan_id,
                s.protocol,
                s.access.as_str(),
                s.severity
            ),
            None => println!(
                "{:<21} {:<17} {:<13} {:<20} -",
                x.started_at, x.scan_id, "-", "nothing answered"
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Protocols => {
            protocols();
            Ok(ExitCode::SUCCESS)
        }
        Command::Scans(a) => scans(a),
        Command::Report(a) => report_cmd(a),
        Command::Diff(a) => diff_cmd(a),
        Command::History(a) => history_cmd(a),
        Command::Classify(a) => classify_cmd(a),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "leakscope", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Scan(a) => match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(scan(a)),
            Err(e) => Err(e.into()),
        },
        Command::Watch(a) => match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(watch::run(*a)),
            Err(e) => Err(e.into()),
        },
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // A closed pipe (`leakscope scan … | head`) is not an error.
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("leakscope: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use leakscope_core::protocols::REGISTRY;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    /// A terminal that keeps what is written to it.
    #[derive(Debug, Clone, Default)]
    struct Screen(Arc<std::sync::Mutex<String>>);

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            160
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.write_str(&format!("{s}\n"))
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.0.lock().unwrap().push_str(s);
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn progress_shows_time_left_and_rates_with_one_decimal() {
        assert_eq!(rate_text(1218.9894), "1219.0/s");
        assert_eq!(rate_text(0.04), "0.0/s");
        let screen = Screen::default();
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(1000),
            indicatif::ProgressDrawTarget::term_like(Box::new(screen.clone())),
        )
        .with_style(progress_style());
        for _ in 0..5 {
            bar.inc(37);
            std::thread::sleep(Duration::from_millis(30));
        }
        bar.tick();
        let shown = screen.0.lock().unwrap().clone();
        let line = shown
            .lines()
            .rfind(|l| l.contains("endpoints"))
            .unwrap_or("")
            .to_string();
        assert!(line.contains("185/1000 endpoints"), "{line}");
        assert!(line.contains("ETA "), "no time left shown: {line}");
        let rate = line
            .split(['(', ','])
            .find(|p| p.trim_end().ends_with("/s"))
            .unwrap_or_else(|| panic!("no rate in {line}"))
            .trim();
        let number = rate.trim_end_matches("/s");
        assert!(
            number.parse::<f64>().is_ok() && number.split('.').nth(1).is_none_or(|d| d.len() <= 1),
            "rate {rate:?} has more than one decimal"
        );
    }

    #[test]
    fn loopback_switch_values() {
        for on in ["1", "true", "TRUE", "Yes", "on", " on "] {
            assert_eq!(parse_switch(on), Some(true), "{on}");
        }
        for off in ["", "0", "false", "NO", "Off"] {
            assert_eq!(parse_switch(off), Some(false), "{off}");
        }
        for bad in ["2", "maybe", "y", "enabled"] {
            assert_eq!(parse_switch(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_registry_protocol_is_in_the_help() {
        let help = help::scan_after_help();
        for p in REGISTRY {
            assert!(help.contains(p.id), "{} missing from scan --help", p.id);
        }
    }
}
