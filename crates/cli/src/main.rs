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

use leakscope_core::inventory::InventoryOptions;
use leakscope_core::model::{ScanReport, Service, Severity};
use leakscope_core::net::Limits;
use leakscope_core::probe::{self, ProbeOptions};
use leakscope_core::report::{self, Format};
use leakscope_core::scan::{self, Observer, ScanOptions};
use leakscope_core::scope::{PortList, Scope, ScopeBuilder, ScopeFile, TargetSpec};

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
    /// List the protocols leakscope identifies: ports, how each is judged, default credentials.
    Protocols,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    /// Aligned table for people (colours only on a terminal; NO_COLOR respected).
    Table,
    /// One JSON document, schema leakscope.scan/v1.
    Json,
    /// One JSON object per service, one per line.
    Jsonl,
}

#[derive(Args)]
struct ScanArgs {
    /// Addresses, CIDRs, ranges, host names, each optionally with a port.
    ///
    /// Examples: 127.0.10.1, 127.0.10.0/24, 127.0.10.1-20, 127.0.10.1-127.0.11.9, db.internal,
    /// 127.0.10.1:9200, [::1]:6379. A target with a port is probed on that port only.
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
    format: FormatArg,

    /// Write the report to FILE instead of standard output.
    ///
    /// Example: --output scan.json
    #[arg(short, long, value_name = "FILE")]
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

    /// Accept scopes of more than 65,536 addresses.
    ///
    /// Example: leakscope scan 10.0.0.0/8 --allow-large-scope --rate 2000
    #[arg(long)]
    allow_large_scope: bool,

    /// No progress bar, even on a terminal.
    ///
    /// Example: leakscope scan 10.0.3.0/24 --quiet
    #[arg(short, long)]
    quiet: bool,
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
        builder.ports = PortList::from_ports(probe::default_ports())?;
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

/// Progress bar on stderr, only when stderr is a terminal.
struct Bar(indicatif::ProgressBar);

impl Observer for Bar {
    fn endpoint_done(&self, service: Option<&Service>) {
        self.0.inc(1);
        if let Some(s) = service {
            self.0
                .set_message(format!("found {} on {}:{}", s.protocol, s.address, s.port));
        }
    }
}

async fn scan(a: ScanArgs) -> Result<ExitCode> {
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
            ..InventoryOptions::default()
        }),
    };
    let observer: Arc<dyn Observer> = if !a.quiet && std::io::stderr().is_terminal() {
        let total = u64::try_from(scope.endpoint_count()).unwrap_or(u64::MAX);
        let bar = indicatif::ProgressBar::new(total).with_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} endpoints ({per_sec}) {msg}",
            )
            .expect("valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Arc::new(Bar(bar))
    } else {
        Arc::new(scan::Quiet)
    };
    let report: ScanReport = scan::run(scope, opts, observer.clone()).await;
    drop(observer); // clears the progress bar before the report is printed

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

fn protocols() {
    println!("{}", help::protocol_table());
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Protocols => {
            protocols();
            Ok(ExitCode::SUCCESS)
        }
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
    use leakscope_core::probe::REGISTRY;

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
