//! Alert delivery: the webhook, SMTP and command sinks, and the outbox loop.
//!
//! The outbox is a table of the store (`alert_outbox`): one row per alert and route, written in
//! the transaction that raised the event. The loop here takes due rows, delivers them and marks
//! each delivered or schedules its retry (exponential backoff from `retry_initial` to
//! `retry_max`, with jitter; abandoned after `give_up_after`). A row is marked delivered only
//! after its receiver accepted it, so a watcher killed mid-delivery sends that alert again after
//! restart with the same idempotency key (an `Idempotency-Key` header, the `idempotency_key`
//! field, the e-mail's Message-ID, `LEAKSCOPE_ALERT_KEY` for commands): receivers drop a key
//! they have seen, and every alert takes effect exactly once.
//!
//! Alert destinations are not scan targets, but under `LEAKSCOPE_LOOPBACK_ONLY` they must be
//! loopback too (checked in the config and again on every connection), so no test can send an
//! alert off the machine.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::alert::Alert;
use super::config::{RouteConfig, SmtpConfig, SmtpTls, Tuning, WebhookFormat, WebhookUrl};
use super::metrics::Metrics;
use crate::store::{unix_ms, OutboxRow, Store};

/// Rows delivered at once.
const BATCH: usize = 16;

/// Delivers one alert to one route. `Err` holds what went wrong, for the log and the retry.
pub async fn deliver(
    route: &RouteConfig,
    alert: &Alert,
    payload: &str,
    loopback_only: bool,
) -> Result<(), String> {
    let attempt = async {
        if let Some(url) = &route.webhook {
            let url: WebhookUrl = url.parse()?;
            let body = match route.format {
                WebhookFormat::Json => payload.as_bytes().to_vec(),
                WebhookFormat::Slack => alert.slack().to_string().into_bytes(),
            };
            let tls = match &route.ca_file {
                Some(path) => tls_with(path)?,
                None => tls_config(),
            };
            post(&url, body, &alert.idempotency_key, loopback_only, tls).await
        } else if let Some(smtp) = &route.smtp {
            mail(
                smtp,
                alert,
                loopback_only,
                route.timeout,
                route.ca_file.as_deref(),
            )
            .await
        } else if let Some(argv) = &route.command {
            command(argv, alert, payload).await
        } else {
            Err("route has no destination".to_string())
        }
    };
    match tokio::time::timeout(route.timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no answer within the {} route timeout",
            humantime::format_duration(route.timeout)
        )),
    }
}

async fn resolve(host: &str, port: u16, loopback_only: bool) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{host} has no address"));
    }
    if loopback_only {
        if let Some(bad) = addrs.iter().find(|a| !a.ip().is_loopback()) {
            return Err(format!(
                "LEAKSCOPE_LOOPBACK_ONLY is set and {host} resolves to {}, not a loopback address",
                bad.ip()
            ));
        }
    }
    Ok(addrs)
}

fn client_config(roots: rustls::RootCertStore) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn public_roots() -> rustls::RootCertStore {
    rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned())
}

/// TLS towards webhooks: certificates checked against the public roots (Mozilla's).
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CONFIG.get_or_init(|| client_config(public_roots())).clone()
}

/// The public roots plus the authorities of a route's `ca_file`.
fn tls_with(ca_file: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = public_roots();
    for c in super::config::load_ca(ca_file)? {
        roots
            .add(c)
            .map_err(|e| format!("ca_file {}: {e}", ca_file.display()))?;
    }
    Ok(client_config(roots))
}

/// POSTs `body` to a webhook; any 2xx answer is a delivery.
async fn post(
    url: &WebhookUrl,
    body: Vec<u8>,
    key: &str,
    loopback_only: bool,
    tls: Arc<rustls::ClientConfig>,
) -> Result<(), String> {
    let addrs = resolve(&url.host, url.port, loopback_only).await?;
    let mut last = String::new();
    let mut stream = None;
    for a in addrs {
        match tokio::net::TcpStream::connect(a).await {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("connect {a}: {e}"),
        }
    }
    let stream = stream.ok_or(last)?;
    let host_header = if url.host.contains(':') {
        format!("[{}]:{}", url.host, url.port)
    } else {
        format!("{}:{}", url.host, url.port)
    };
    let req = hyper::Request::post(url.path.as_str())
        .header(hyper::header::HOST, host_header)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(
            hyper::header::USER_AGENT,
            concat!("leakscope/", env!("CARGO_PKG_VERSION")),
        )
        .header("Idempotency-Key", key)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("request: {e}"))?;
    let status = if url.https {
        let name = rustls::pki_types::ServerName::try_from(url.host.clone())
            .map_err(|e| format!("TLS name {}: {e}", url.host))?;
        let tls = tokio_rustls::TlsConnector::from(tls)
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        exchange(tls, req).await?
    } else {
        exchange(stream, req).await?
    };
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("HTTP {status}"))
    }
}

async fn exchange<S>(io: S, req: hyper::Request<Full<Bytes>>) -> Result<u16, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
    let driver = tokio::spawn(conn);
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("HTTP: {e}"));
    let out = match resp {
        Ok(r) => {
            let status = r.status().as_u16();
            // The body is not needed; reading a bounded part of it lets the connection end cleanly.
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                let mut body = r.into_body();
                let mut n = 0usize;
                while let Some(Ok(frame)) = body.frame().await {
                    n += frame.data_ref().map_or(0, |d| d.len());
                    if n > 64 << 10 {
                        break;
                    }
                }
            })
            .await;
            Ok(status)
        }
        Err(e) => Err(e),
    };
    driver.abort();
    out
}

/// Sends the alert as an e-mail through `smtp`.
async fn mail(
    smtp: &SmtpConfig,
    alert: &Alert,
    loopback_only: bool,
    timeout: Duration,
    ca_file: Option<&std::path::Path>,
) -> Result<(), String> {
    use lettre::message::header::ContentType;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let port = smtp.port.unwrap_or(match smtp.tls {
        SmtpTls::Starttls => 587,
        SmtpTls::Tls => 465,
        SmtpTls::None => 25,
    });
    resolve(&smtp.server, port, loopback_only).await?;
    let builder = match smtp.tls {
        SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.server)
            .map_err(|e| e.to_string())?,
        SmtpTls::Tls => {
            AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.server).map_err(|e| e.to_string())?
        }
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.server),
    };
    let mut builder = builder.port(port).timeout(Some(timeout));
    if let (Some(path), false) = (ca_file, smtp.tls == SmtpTls::None) {
        let pem = std::fs::read(path).map_err(|e| format!("ca_file {}: {e}", path.display()))?;
        let cert = Certificate::from_pem(&pem).map_err(|e| format!("ca_file: {e}"))?;
        let params = TlsParameters::builder(smtp.server.clone())
            .add_root_certificate(cert)
            .build_rustls()
            .map_err(|e| format!("TLS: {e}"))?;
        builder = builder.tls(match smtp.tls {
            SmtpTls::Tls => Tls::Wrapper(params),
            _ => Tls::Required(params),
        });
    }
    if let (Some(user), Some(var)) = (&smtp.username, &smtp.password_env) {
        let password = std::env::var(var)
            .map_err(|_| format!("smtp: the password variable {var} is not set"))?;
        builder = builder.credentials(Credentials::new(user.clone(), password));
    }
    let transport = builder.build();
    let (subject, body) = alert.email();
    let mut msg = Message::builder()
        .from(smtp.from.parse().map_err(|e| format!("from: {e}"))?)
        .subject(subject)
        .message_id(Some(format!("<{}@leakscope>", alert.idempotency_key)))
        .header(ContentType::TEXT_PLAIN);
    for to in &smtp.to {
        msg = msg.to(to.parse().map_err(|e| format!("to {to}: {e}"))?);
    }
    let msg = msg.body(body).map_err(|e| format!("message: {e}"))?;
    transport
        .send(msg)
        .await
        .map(|_| ())
        .map_err(|e| format!("SMTP: {e}"))
}

/// Runs `argv` with the alert on standard input; exit status 0 is a delivery.
async fn command(argv: &[String], alert: &Alert, payload: &str) -> Result<(), String> {
    use std::process::Stdio;
    use tokio::io::AsyncReadExt;
    let mut child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env("LEAKSCOPE_ALERT_KEY", &alert.idempotency_key)
        .env("LEAKSCOPE_ALERT_KIND", alert.kind.as_str())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A program that exits without reading is judged by its exit status, not by EPIPE.
        let _ = stdin.write_all(payload.as_bytes()).await;
        let _ = stdin.write_all(b"\n").await;
    }
    let mut err = Vec::new();
    if let Some(stderr) = child.stderr.take() {
        let _ = stderr.take(2048).read_to_end(&mut err).await;
    }
    let status = child.wait().await.map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        let text = String::from_utf8_lossy(&err);
        let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        Err(format!(
            "{} exited with {status}: {}",
            argv[0],
            text.chars().take(300).collect::<String>()
        ))
    }
}

/// The delay before attempt `attempts + 1`: `initial × 2^(attempts-1)` up to `max`, ±10 %.
pub fn backoff(attempts: u32, t: &Tuning, jitter: f64) -> Duration {
    let exp = attempts.saturating_sub(1).min(30);
    let base = t
        .retry_initial
        .saturating_mul(1u32 << exp.min(20))
        .min(t.retry_max);
    base.mul_f64(1.0 + jitter.clamp(-0.1, 0.1))
}

fn jitter() -> f64 {
    let mut b = [0u8; 2];
    let _ = getrandom::getrandom(&mut b);
    (u16::from_le_bytes(b) as f64 / u16::MAX as f64 - 0.5) / 5.0
}

/// What the outbox loop needs.
pub struct Outbox {
    pub store: Arc<Mutex<Store>>,
    pub routes: BTreeMap<String, RouteConfig>,
    pub tuning: Tuning,
    pub loopback_only: bool,
    pub notify: Arc<tokio::sync::Notify>,
    pub metrics: Arc<Metrics>,
}

/// Result of one delivery, applied to the store.
struct Attempt {
    row: OutboxRow,
    result: Result<(), String>,
}

impl Outbox {
    fn now_ms() -> i64 {
        unix_ms(SystemTime::now())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn attempt(&self, row: OutboxRow) -> Attempt {
        let result = match (
            self.routes.get(&row.route),
            serde_json::from_str::<Alert>(&row.payload),
        ) {
            (None, _) => Err(format!("route {:?} is no longer configured", row.route)),
            (_, Err(e)) => Err(format!("stored alert unreadable: {e}")),
            (Some(route), Ok(alert)) => {
                deliver(route, &alert, &row.payload, self.loopback_only).await
            }
        };
        Attempt { row, result }
    }

    fn record(&self, a: Attempt) {
        let now = Self::now_ms();
        let store = self.lock();
        let r = &a.row;
        let outcome = match &a.result {
            Ok(()) => {
                tracing::info!(key = %r.key, route = %r.route, attempts = r.attempts + 1, "alert delivered");
                self.metrics.delivered(&r.route);
                store.outbox_delivered(&r.key, &r.route, now)
            }
            Err(e) => {
                self.metrics.delivery_failed(&r.route);
                let attempts = r.attempts + 1;
                let gone = !self.routes.contains_key(&r.route);
                let old = now - r.created_ms > self.tuning.give_up_after.as_millis() as i64;
                if gone || old {
                    tracing::error!(key = %r.key, route = %r.route, attempts, error = %e, "alert abandoned");
                    store.outbox_failed_attempt(&r.key, &r.route, now, Some(now), e)
                } else {
                    let next = now + backoff(attempts, &self.tuning, jitter()).as_millis() as i64;
                    tracing::warn!(key = %r.key, route = %r.route, attempts, error = %e,
                        retry_in_ms = next - now, "alert delivery failed; will retry");
                    store.outbox_failed_attempt(&r.key, &r.route, next, None, e)
                }
            }
        };
        if let Err(e) = outcome {
            tracing::error!(error = %e, "cannot record an alert delivery in the store");
        }
    }

    fn refresh_gauge(&self) {
        if let Ok(s) = self.lock().outbox_stats() {
            self.metrics.outbox(s);
        }
    }

    /// Delivers every row due now, once each. Returns how many were attempted.
    pub async fn pass(&self) -> usize {
        let mut done = 0;
        loop {
            let due = match self.lock().outbox_due(Self::now_ms(), BATCH) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the alert outbox");
                    return done;
                }
            };
            if due.is_empty() {
                break;
            }
            done += due.len();
            let attempts =
                futures::future::join_all(due.into_iter().map(|r| self.attempt(r))).await;
            for a in attempts {
                self.record(a);
            }
        }
        self.refresh_gauge();
        done
    }

    /// Delivers until cancelled: due rows now, then sleeps until the next is due or a new alert
    /// is written (`notify`).
    pub async fn run(self, cancel: CancellationToken) {
        let mut last_prune = 0i64;
        loop {
            if cancel.is_cancelled() {
                return;
            }
            // Register for a wake-up before looking, so an alert written meanwhile is not missed.
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.pass().await;
            let now = Self::now_ms();
            if now - last_prune > 3_600_000 {
                last_prune = now;
                let _ = self.lock().outbox_prune(now - 30 * 24 * 3_600_000);
            }
            let next = self.lock().outbox_next_due().ok().flatten();
            let wait = match next {
                Some(t) => Duration::from_millis((t - Self::now_ms()).max(0) as u64),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = &mut notified => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap() {
        let t = Tuning::default();
        assert_eq!(backoff(1, &t, 0.0), Duration::from_secs(5));
        assert_eq!(backoff(2, &t, 0.0), Duration::from_secs(10));
        assert_eq!(backoff(4, &t, 0.0), Duration::from_secs(40));
        assert_eq!(backoff(7, &t, 0.0), Duration::from_secs(300));
        assert_eq!(backoff(60, &t, 0.0), Duration::from_secs(300));
        assert_eq!(backoff(1, &t, 0.1), Duration::from_millis(5500));
        assert!((-0.1..=0.1).contains(&jitter()));
    }

    #[tokio::test]
    async fn a_command_gets_the_alert_on_stdin_and_its_exit_status_decides() {
        let dir = std::env::temp_dir().join(format!("leakscope-cmd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("got.json");
        let a: Alert = serde_json::from_value(serde_json::json!({
            "schema": "leakscope.alert/v1", "idempotency_key": "k1", "kind": "exposed",
            "at": "2026-12-08T00:00:00Z", "group": "g", "endpoint": "127.0.0.1:1",
            "protocol": null, "product": null, "version": null, "tls": false, "access": "open",
            "previous_access": null, "severity": "high", "evidence": [], "categories": [],
            "records": null, "people": null, "people_method": null, "containers": [],
            "containers_total": 0, "revoke": [], "exposure": null, "details": [],
            "summary": "s", "scan_id": null
        }))
        .unwrap();
        let payload = serde_json::to_string(&a).unwrap();
        let script = format!(
            "cat > {}; test \"$LEAKSCOPE_ALERT_KEY\" = k1",
            out.display()
        );
        let argv = vec!["/bin/sh".to_string(), "-c".into(), script];
        command(&argv, &a, &payload).await.unwrap();
        let got: Alert = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(got, a);
        let fail = vec![
            "/bin/sh".to_string(),
            "-c".into(),
            "echo nope >&2; exit 3".into(),
        ];
        let err = command(&fail, &a, &payload).await.unwrap_err();
        assert!(err.contains("nope"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
