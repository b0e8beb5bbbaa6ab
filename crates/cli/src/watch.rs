//! `leakscope watch`: arguments, logging and signals around `leakscope_core::watch`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use leakscope_core::model::Severity;
use leakscope_core::store;
use leakscope_core::watch::config::{parse_duration, SmtpConfig, SmtpTls, WebhookFormat};
use leakscope_core::watch::{self, Control, GroupConfig, RouteConfig, Settings, WatchConfig};

pub const WATCH_HELP: &str = "\
Every --interval the services already known are re-checked (identification and access verdict \
only, a few round trips each); the whole scope is swept for new services every --sweep-interval \
within --sweep-rate connections per second; exposed services are inventoried (containers, counts, \
categories, people) when they turn readable, when they change, and every --inventory-interval.

Events: exposed (turned readable, or found new and readable), closed (readable no more, \
confirmed by a second observation), changed (new containers or categories, severity up, records \
doubled), new_service, flapping (one alert instead of one per change), flapping_stopped. Each is \
kept in the store with the exposure window (`leakscope history ADDR:PORT` shows it) and sent to \
every route as an alert (JSON documented in docs/alerts.md) with an idempotency key; undelivered \
alerts stay in the store's outbox and are retried with backoff, across restarts.

Signals: SIGHUP reloads --config (a bad file is refused and the running configuration kept); \
SIGTERM or Ctrl-C finishes the current step and exits 0.

Exit codes: 0 stopped by a signal, or --once found nothing exposed at or above --fail-on; \
1 --once found something; 2 bad input or error.

Examples:
  leakscope watch 10.0.3.0/24 --interval 30s --webhook https://hooks.example.com/leakscope
  leakscope watch 10.0.3.0/24 --slack-webhook https://hooks.slack.com/services/T0/B0/X \\
      --metrics 127.0.0.1:9464
  leakscope watch --config /etc/leakscope/watch.toml
  leakscope watch --check-config /etc/leakscope/watch.toml
  leakscope watch 10.0.3.0/24 --once --command '/usr/local/bin/page-oncall'   # from cron";

#[derive(Clone, Copy, Default, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line (for journald/Loki/Elastic).
    Json,
}

#[derive(Clone, Copy, Default, ValueEnum)]
enum TlsArg {
    #[default]
    Starttls,
    Tls,
    None,
}

#[derive(Args)]
pub struct WatchArgs {
    /// Addresses, CIDRs, ranges, host names, each optionally with a port (as `scan`).
    #[arg(value_name = "TARGETS", conflicts_with_all = ["config", "check_config"])]
    targets: Vec<String>,

    /// TOML file with groups of targets, their cadences and alert routes (see docs/watch.md).
    ///
    /// Example: --config /etc/leakscope/watch.toml
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Check a configuration file (syntax, targets, routes, host names) and exit.
    ///
    /// Example: --check-config watch.toml
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,

    /// Ports to probe on targets without a port [default: every registry port].
    #[arg(short, long, value_name = "LIST")]
    ports: Option<String>,

    /// Never contact these (as `scan --exclude`). Repeatable and comma-separated.
    #[arg(short = 'x', long, value_name = "TARGET", value_delimiter = ',')]
    exclude: Vec<String>,

    /// TOML scope file with `allow`, `deny` and `ports` (as `scan --scope-file`).
    #[arg(long, value_name = "FILE")]
    scope_file: Option<PathBuf>,

    /// How often known services are re-checked. Time-to-detect is about this plus one
    /// identification.
    ///
    /// Example: --interval 30s
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    interval: Duration,

    /// How often the whole scope is swept for new services.
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = parse_duration)]
    sweep_interval: Duration,

    /// New connections per second a sweep may open (0 = unlimited).
    #[arg(long, value_name = "N", default_value_t = 500)]
    sweep_rate: u32,

    /// How often exposed services are inventoried again when nothing changed.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    inventory_interval: Duration,

    /// Time budget of one service's inventory (an exposure is alerted after it).
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = parse_duration)]
    inventory_timeout: Duration,

    /// Records sampled per container of an exposed store.
    #[arg(long, value_name = "N", default_value_t = 200, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    sample: u32,

    /// Identify and judge only: alerts without containers, categories or people.
    #[arg(long)]
    no_inventory: bool,

    /// Also try the documented default credentials (as `scan --try-defaults`).
    #[arg(long)]
    try_defaults: bool,

    /// Deadline in seconds for each connect and read.
    #[arg(long, value_name = "SECS", default_value_t = 3.0, value_parser = crate::parse_secs)]
    timeout: f64,

    /// Deadline in seconds for identifying and judging one service.
    #[arg(long, value_name = "SECS", default_value_t = 8.0, value_parser = crate::parse_secs)]
    service_timeout: f64,

    /// Endpoints probed at once.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65536))]
    concurrency: u32,

    /// Endpoints of one address probed at once.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    per_host: u32,

    /// Accept scopes of more than 65,536 addresses.
    #[arg(long)]
    allow_large_scope: bool,

    /// POST every alert (JSON, schema leakscope.alert/v1) to URL. Repeatable.
    ///
    /// Example: `--webhook https://hooks.example.com/leakscope`
    #[arg(long, value_name = "URL")]
    webhook: Vec<String>,

    /// POST every alert as Slack-compatible text (`{"text": …}`) to URL. Repeatable.
    #[arg(long, value_name = "URL")]
    slack_webhook: Vec<String>,

    /// Run CMD (with /bin/sh -c) for every alert, with its JSON on standard input. Repeatable.
    ///
    /// Example: --command 'logger -t leakscope'
    #[arg(long, value_name = "CMD")]
    command: Vec<String>,

    /// E-mail every alert to ADDRESS (needs --smtp and --email-from). Repeatable.
    #[arg(long, value_name = "ADDRESS", requires_all = ["smtp", "email_from"])]
    email: Vec<String>,

    /// SMTP server for --email, HOST or HOST:PORT.
    #[arg(long, value_name = "HOST[:PORT]")]
    smtp: Option<String>,

    /// TLS towards the SMTP server.
    #[arg(long, value_enum, default_value = "starttls")]
    smtp_tls: TlsArg,

    /// Sender address of alert e-mails.
    #[arg(long, value_name = "ADDRESS")]
    email_from: Option<String>,

    /// Serve /metrics (Prometheus) and /healthz on ADDRESS:PORT.
    ///
    /// Example: --metrics 127.0.0.1:9464
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,

    /// Write a revocation list (CSV of credential fingerprints) into DIR for every exposure
    /// with credentials in its sample.
    #[arg(long, value_name = "DIR")]
    revocation_list: Option<PathBuf>,

    /// Run one cycle (a sweep when due, else a re-check; inventories; one delivery attempt of
    /// every due alert) and exit: for cron.
    #[arg(long)]
    once: bool,

    /// With --once: exit 1 when an exposed service is at or above this severity.
    #[arg(long, value_name = "SEVERITY", default_value = "medium", value_parser = crate::parse_severity)]
    fail_on: Severity,

    /// Log format on standard error.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,

    /// Log level (error, warn, info, debug, trace); RUST_LOG wins when set.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: String,

    #[command(flatten)]
    store: crate::StoreArgs,
}

fn init_logs(format: LogFormat, level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(format!("leakscope_core={level},leakscope={level},warn")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The configuration the flags describe: one group `default` and one route per destination.
fn from_flags(a: &WatchArgs) -> Result<WatchConfig> {
    if a.targets.is_empty() && a.scope_file.is_none() {
        anyhow::bail!(
            "no targets: give addresses, CIDRs, ranges or host names, or --config FILE (see `leakscope watch --help`)"
        );
    }
    let mut g = GroupConfig::new("default", a.targets.clone());
    g.exclude = a.exclude.clone();
    g.scope_file = a.scope_file.clone();
    g.ports = a.ports.clone();
    g.interval = a.interval;
    g.sweep_interval = a.sweep_interval.max(a.interval);
    g.sweep_rate = a.sweep_rate;
    g.inventory_interval = a.inventory_interval;
    g.inventory_timeout = a.inventory_timeout;
    g.sample = a.sample;
    g.no_inventory = a.no_inventory;
    g.try_defaults = a.try_defaults;
    g.timeout = Duration::from_secs_f64(a.timeout);
    g.service_timeout = Duration::from_secs_f64(a.service_timeout);
    g.concurrency = a.concurrency;
    g.per_host = a.per_host;
    g.allow_large_scope = a.allow_large_scope;
    let mut routes = std::collections::BTreeMap::new();
    for (i, u) in a.webhook.iter().enumerate() {
        routes.insert(
            format!("webhook-{}", i + 1),
            RouteConfig::webhook(u, WebhookFormat::Json),
        );
    }
    for (i, u) in a.slack_webhook.iter().enumerate() {
        routes.insert(
            format!("slack-{}", i + 1),
            RouteConfig::webhook(u, WebhookFormat::Slack),
        );
    }
    for (i, c) in a.command.iter().enumerate() {
        routes.insert(
            format!("command-{}", i + 1),
            RouteConfig::command(vec!["/bin/sh".into(), "-c".into(), c.clone()]),
        );
    }
    if !a.email.is_empty() {
        let smtp = a.smtp.as_deref().unwrap_or_default();
        let (server, port) = match smtp.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.starts_with('[') => (
                h.trim_start_matches('[').trim_end_matches(']').to_string(),
                Some(
                    p.parse::<u16>()
                        .with_context(|| format!("--smtp {smtp:?}: bad port"))?,
                ),
            ),
            _ => (smtp.to_string(), None),
        };
        routes.insert(
            "email".into(),
            RouteConfig::smtp(SmtpConfig {
                server,
                port,
                tls: match a.smtp_tls {
                    TlsArg::Starttls => SmtpTls::Starttls,
                    TlsArg::Tls => SmtpTls::Tls,
                    TlsArg::None => SmtpTls::None,
                },
                from: a.email_from.clone().unwrap_or_default(),
                to: a.email.clone(),
                username: None,
                password_env: None,
            }),
        );
    }
    Ok(WatchConfig {
        db: None,
        metrics: a.metrics,
        revocation_list: a.revocation_list.clone(),
        tuning: Default::default(),
        groups: vec![g],
        routes,
    })
}

async fn settings_from_file(path: &Path, a: &WatchArgs, loopback_only: bool) -> Result<Settings> {
    let mut cfg = WatchConfig::load(path, loopback_only)?;
    if a.metrics.is_some() {
        cfg.metrics = a.metrics;
    }
    if a.revocation_list.is_some() {
        cfg.revocation_list = a.revocation_list.clone();
    }
    Ok(Settings::build(cfg, loopback_only).await?)
}

fn describe(s: &Settings) -> String {
    let mut out = String::new();
    for (g, scope) in s.config.groups.iter().zip(&s.scopes) {
        out.push_str(&format!(
            "group {}: {} endpoints ({} addresses), re-check every {}, sweep every {} at {}/s, routes: {}\n",
            g.name,
            scope.endpoint_count(),
            scope.address_count(),
            humantime::format_duration(g.interval),
            humantime::format_duration(g.sweep_interval),
            g.sweep_rate,
            s.config.routes_of(g).join(", ")
        ));
    }
    for (name, r) in &s.config.routes {
        let what = if let Some(u) = &r.webhook {
            format!("webhook {u} ({:?})", r.format).to_lowercase()
        } else if let Some(m) = &r.smtp {
            format!("e-mail to {} via {}", m.to.join(", "), m.server)
        } else {
            format!("command {:?}", r.command.as_deref().unwrap_or_default())
        };
        out.push_str(&format!("route {name}: {what}\n"));
    }
    out
}

pub async fn run(a: WatchArgs) -> Result<ExitCode> {
    let loopback_only = crate::loopback_only()?;
    if let Some(path) = &a.check_config {
        let s = settings_from_file(path, &a, loopback_only).await?;
        print!("{}", describe(&s));
        println!("{}: configuration OK", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    init_logs(a.log_format, &a.log_level);
    let settings = match &a.config {
        Some(path) => settings_from_file(path, &a, loopback_only).await?,
        None => Settings::build(from_flags(&a)?, loopback_only).await?,
    };
    if settings.config.routes.is_empty() {
        tracing::warn!("no alert route (--webhook, --slack-webhook, --command, --email or [route.*]): events are only logged and stored");
    }
    let db = a
        .store
        .db
        .clone()
        .or_else(|| settings.config.db.clone())
        .unwrap_or_else(store::default_path);
    let (tx, rx) = mpsc::channel(4);
    let shutdown = CancellationToken::new();
    let signals = {
        let shutdown = shutdown.clone();
        let config = a.config.clone();
        let a = Arc::new(a);
        let args = a.clone();
        let task = tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut hup), Ok(mut term)) = (
                signal(SignalKind::hangup()),
                signal(SignalKind::terminate()),
            ) else {
                tracing::error!("cannot install signal handlers");
                return;
            };
            loop {
                tokio::select! {
                    _ = term.recv() => break,
                    _ = tokio::signal::ctrl_c() => break,
                    _ = hup.recv() => {
                        let Some(path) = &config else {
                            tracing::warn!("SIGHUP: there is no --config file to reload");
                            continue;
                        };
                        tracing::info!(path = %path.display(), "SIGHUP: reloading the configuration");
                        let next = settings_from_file(path, &args, loopback_only)
                            .await
                            .map_err(|e| format!("{e:#}"));
                        if tx.send(next).await.is_err() {
                            break;
                        }
                    }
                }
            }
            tracing::info!("stopping: finishing the current step");
            shutdown.cancel();
        });
        (task, a)
    };
    let fingerprinter = {
        let (fp, warning) = leakscope_core::scan::fingerprinter();
        if let Some(w) = warning {
            tracing::warn!("{w}");
        }
        fp
    };
    let control = Control {
        shutdown,
        reload: rx,
        once: signals.1.once,
    };
    let outcome = watch::run(&db, settings, control, fingerprinter).await?;
    signals.0.abort();
    if signals.1.once {
        if outcome.undelivered > 0 {
            tracing::warn!(
                undelivered = outcome.undelivered,
                "alerts left in the outbox for the next run"
            );
        }
        let bad = outcome.exposed.iter().any(|(_, s)| *s >= signals.1.fail_on);
        return Ok(if bad {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }
    Ok(ExitCode::SUCCESS)
}
