//! `leakscope`: the command line over `leakscope-core`.
//!
//! Only arguments, progress, output and exit codes live here; the scan itself is the library's.
//! Exit codes: 0 = nothing at or above `--fail-on`; 1 = something is; 2 = bad input or error.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
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

#[derive(Parser)]
#[command(
    name = "leakscope",
    version,
    about = "Find your exposed data stores and tell whose data they expose.",
    long_about = "leakscope finds data stores in infrastructure you are authorized to test, identifies each by \
protocol probes (not by port number), and decides whether it can be read without credentials.\n\n\
Scan only what you own or are allowed to test: leakscope contacts exactly the targets you list, \
minus exclusions, and never the cluster peers a server tells it about.",
    after_help = "Examples:\n  leakscope scan 127.0.10.0/24\n  leakscope scan 10.0.3.0/24 --exclude 10.0.3.1 --format json -o scan.json\n  leakscope protocols"
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
    /// The exposure timeline of one endpoint across stored scans.
    #[command(after_help = "Example:\n  leakscope history 127.0.10.1:9200")]
    History(HistoryArgs),
    /// List the protocols leakscope identifies: ports, how each is judged, default credentials.
    Protocols,
    /// Classify every record of exported JSON-lines files (one container per file).
    #[command(after_long_help = CLASSIFY_HELP)]
    Classify(ClassifyArgs),
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
    /// Longest line read, in bytes; longer lines are skipped and counted.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    max_line: usize,
    /// Run the costly validators (phone numbers) on every value instead of a budget.
    #[arg(long)]
    exact: bool,
}

fn classify_cmd(a: ClassifyArgs) -> Result<ExitCode> {
    use leakscope_core::classify::{files, Classifier};
    let paths = files::expand(&a.paths)?;
    let mut opts = files::FileOptions {
        max_line: a.max_line.max(1),
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
    /// table or json.
    #[arg(short, long, value_enum, default_value = "table")]
    format: FormatArg,
    #[command(flatten)]
    store: StoreArgs,
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

    /// Time budget in seconds for the inventory and sampling of one service; what it cuts short
    /// is said in the report [default: 30, or 3600 with --full].
    ///
    /// Example: --inventory-timeout 120
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    inventory_timeout: Option<f64>,

    /// Time budget in seconds for counting the distinct people of one container: the store's
    /// own distinct count, or reading every key of a Redis/Memcached pattern (millions of keys
    /// take longer than the default) [default: 10, or the inventory timeout with --full].
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
    /// probed are not probed again. Other scan arguments are ignored.
    ///
    /// Example: leakscope scan --resume 6155c70ce9d072e2
    #[arg(long, value_name = "SCAN_ID")]
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
            "{s:?} is not a number of seconds between 0 and 3600"
        )),
    }
}

fn parse_severity(s: &str) -> Result<Severity, String> {
    s.parse()
}

/// Environment variable that confines every scan to loopback addresses. The project's own test
/// harness and CI set it, so no test can ever reach a real network by mistake.
const LOOPBACK_ONLY_ENV: &str = "LEAKSCOPE_LOOPBACK_ONLY";

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
    if std::env::var_os(LOOPBACK_ONLY_ENV).is_some_and(|v| v == "1") {
        if let Some(bad) = scope.first_non_loopback() {
            bail!("{LOOPBACK_ONLY_ENV}=1 and the scope includes {bad}, which is not a loopback address");
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
    let mut stored: ScanArgs = serde_json::from_str(&store.request(&id)?)
        .with_context(|| format!("scan {id} was stored by an incompatible version"))?;
    stored.format = a.format;
    stored.output = a.output;
    stored.quiet = a.quiet;
    stored.store = a.store;
    Ok((stored, id))
}

async fn scan(a: ScanArgs) -> Result<ExitCode> {
    let store = if a.no_store && a.resume.is_none() {
        None
    } else {
        Some(Store::open(&a.store.path())?)
    };
    let (a, resume_id) = match (&a.resume, &store) {
        (Some(_), Some(st)) => {
            let (args, id) = resumed(a, st)?;
            (args, Some(id))
        }
        _ => (a, None),
    };
    let scope = Arc::new(build_scope(&a).await?);
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
                30.0
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
    if let Some(st) = &store {
        let id = match &resume_id {
            Some(id) => {
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
        writer = Some(Store::writer(st.path(), &id)?);
        opts.scan_id = Some(id);
    }
    let bar = (!a.quiet && std::io::stderr().is_terminal()).then(|| {
        let total = u64::try_from(scope.endpoint_count()).unwrap_or(u64::MAX);
        let bar = indicatif::ProgressBar::new(total).with_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} endpoints ({per_sec}) {msg}",
            )
            .expect("valid template"),
        );
        bar.set_position(opts.skip.len() as u64);
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let progress = Arc::new(Progress { bar, writer });
    let scan_id = opts.scan_id.clone();
    let observer: Arc<dyn Observer> = progress.clone();
    let report: ScanReport = tokio::select! {
        r = scan::run(scope, opts, observer) => r,
        _ = tokio::signal::ctrl_c() => {
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
    let report = match (&store, &scan_id) {
        (Some(st), Some(id)) => {
            let mut stats = report.stats.clone();
            stats.ports_probed = st.done(id)?.len() as u64;
            st.finish(id, &report.finished_at, &stats)?;
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

    if let Some(path) = &a.revocation_list {
        let n = write_revocation_list(&report, path)?;
        eprintln!(
            "leakscope: {n} exposed credential fingerprint(s) written to {}",
            path.display()
        );
    }
    let format = match a.format {
        FormatArg::Table => Format::Table,
        FormatArg::Json => Format::Json,
        FormatArg::Jsonl => Format::Jsonl,
    };
    match &a.output {
        Some(path) => {
            let mut f = std::fs::File::create(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            report::write(&report, format, false, &mut f)?;
            f.flush()?;
        }
        None => {
            let stdout = std::io::stdout();
            let color =
                stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            let mut lock = stdout.lock();
            report::write(&report, format, color, &mut lock)?;
            lock.flush()?;
        }
    }
    Ok(match report.worst() {
        Some(w) if w >= a.fail_on => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}

/// CSV of exposed credentials: one line per fingerprint of a `credential.*` field of an exposed
/// service. The owner matches fingerprints against their own tokens (same key) to revoke them.
fn write_revocation_list(report: &ScanReport, path: &PathBuf) -> Result<usize> {
    let mut out = String::from("category,endpoint,container,field,fingerprint\n");
    let mut n = 0;
    let csv = |s: &str| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    for s in report.services.iter().filter(|s| summary::exposed(s)) {
        let endpoint = format!("{}:{}", s.address, s.port);
        for c in &s.containers {
            for f in &c.fields {
                let Some(cat) = f.categories.iter().find(|k| k.starts_with("credential.")) else {
                    continue;
                };
                for fp in &f.fingerprints {
                    out.push_str(&format!(
                        "{},{},{},{},{}\n",
                        cat,
                        endpoint,
                        csv(&c.name),
                        csv(&f.path),
                        fp
                    ));
                    n += 1;
                }
            }
        }
    }
    std::fs::write(path, out).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(n)
}

fn protocols() {
    println!("{}", help::protocol_table());
}

/// Writes `text` to `output` or standard output.
fn emit(text: &str, output: Option<&PathBuf>) -> Result<()> {
    match output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
            Ok(())
        }
    }
}

fn scans(a: StoreArgs) -> Result<ExitCode> {
    let store = Store::open(&a.path())?;
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
        let targets: String = targets.chars().take(40).collect();
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
    let store = Store::open(&a.store.path())?;
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
    let store = Store::open(&a.store.path())?;
    let (x, _) = store.load(&a.a)?;
    let (y, _) = store.load(&a.b)?;
    let changes = leakscope_core::diff::diff(&x, &y);
    match a.format {
        FormatArg::Json | FormatArg::Jsonl => {
            emit(&(serde_json::to_string_pretty(&changes)? + "\n"), None)?;
        }
        FormatArg::Table => {
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
    let store = Store::open(&a.store.path())?;
    let h = store.history(a.endpoint)?;
    if h.is_empty() {
        println!("{} was not probed by any stored scan", a.endpoint);
        return Ok(ExitCode::SUCCESS);
    }
    let open: Vec<&store::Sighting> = h
        .iter()
        .filter(|x| x.service.as_ref().is_some_and(summary::exposed))
        .collect();
    match (open.first(), open.last()) {
        (Some(f), Some(l)) => println!(
            "{}: first seen open {} (scan {}), last seen open {} (scan {})",
            a.endpoint, f.started_at, f.scan_id, l.started_at, l.scan_id
        ),
        _ => println!("{}: never seen open", a.endpoint),
    }
    println!(
        "{:<21} {:<17} {:<13} {:<20} SEVERITY",
        "SCAN STARTED", "SCAN", "PROTOCOL", "ACCESS"
    );
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
        Command::Scan(a) => match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(scan(a)),
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

    #[test]
    fn every_registry_protocol_is_in_the_help() {
        let help = help::scan_after_help();
        for p in REGISTRY {
            assert!(help.contains(p.id), "{} missing from scan --help", p.id);
        }
    }
}
