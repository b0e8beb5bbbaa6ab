//! Probing one endpoint: the context a protocol's code gets (the only way it reaches the
//! network), its settings, and what it answers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::model::Access;
use crate::net::{Conn, Limits, NetError};
use crate::scope::Scope;

/// A well-known credential tried only with `--try-defaults`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credential {
    pub user: &'static str,
    pub password: &'static str,
    /// Where this default comes from, for the docs.
    pub why: &'static str,
}

/// What a probe concluded about one service.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub protocol: &'static str,
    pub product: Option<String>,
    pub version: Option<String>,
    pub access: Access,
    pub evidence: Vec<String>,
    /// Peers the server named that are outside the scope (never contacted).
    pub out_of_scope_peers: Vec<String>,
    /// The default credential that was accepted, for the inventory to log in with.
    pub credential: Option<Credential>,
}

impl Finding {
    pub fn new(protocol: &'static str) -> Finding {
        Finding {
            protocol,
            product: None,
            version: None,
            access: Access::Unknown,
            evidence: Vec::new(),
            out_of_scope_peers: Vec::new(),
            credential: None,
        }
    }
}

/// What a handler saw when the bytes were not its protocol (guides TLS retry and `unknown`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// The peer sent nothing before the deadline.
    Silence,
    /// The peer closed or reset the connection.
    Closed,
    /// The peer sent these bytes (first few only).
    Bytes(Vec<u8>),
    /// Something else failed.
    Error(String),
}

impl Seen {
    /// Summarises a network error as something seen.
    pub fn from_error(e: &NetError, buffered: &[u8]) -> Seen {
        if !buffered.is_empty() {
            return Seen::Bytes(buffered[..buffered.len().min(64)].to_vec());
        }
        match e {
            NetError::Timeout(_) => Seen::Silence,
            NetError::Closed(_) | NetError::Reset => Seen::Closed,
            other => Seen::Error(other.to_string()),
        }
    }
}

/// A handler's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// This is the protocol; here is what we learned.
    Found(Finding),
    /// Not this protocol.
    NotMe(Seen),
}

/// Settings shared by every probe of a scan.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    pub limits: Limits,
    /// Try the registry's documented default credentials.
    pub try_defaults: bool,
    /// Byte cap of one HTTP body.
    pub http_body_cap: usize,
    /// Byte cap of one binary protocol frame.
    pub frame_cap: usize,
    /// How long to wait for a server that speaks first.
    pub banner_wait: Duration,
    /// Minimum interval between two credential attempts on the same service.
    pub auth_interval: Duration,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            limits: Limits::default(),
            try_defaults: false,
            http_body_cap: 4 << 20,
            frame_cap: 1 << 20,
            banner_wait: Duration::from_millis(1500),
            auth_interval: Duration::from_millis(200),
        }
    }
}

/// Context of probing one `address:port`.
pub struct ProbeCtx {
    pub addr: SocketAddr,
    /// Name used for `Host:` and SNI: the user's host name when given, else the address.
    pub host: String,
    pub tls: bool,
    pub opts: Arc<ProbeOptions>,
    pub scope: Arc<Scope>,
    pub connector: Arc<dyn Connector>,
    auth_attempts: AtomicU32,
    last_auth: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

/// Opens connections for probes; the engine's implementation applies the rate limit.
pub trait Connector: Send + Sync {
    fn connect(
        &self,
        addr: SocketAddr,
        limits: Limits,
    ) -> BoxFuture<'static, Result<Conn, NetError>>;
}

/// Connects directly, without rate limiting (unit tests, single-service use).
pub struct DirectConnector;

impl Connector for DirectConnector {
    fn connect(
        &self,
        addr: SocketAddr,
        limits: Limits,
    ) -> BoxFuture<'static, Result<Conn, NetError>> {
        Box::pin(Conn::connect(addr, limits))
    }
}

impl ProbeCtx {
    pub fn new(
        addr: SocketAddr,
        host: Option<String>,
        tls: bool,
        opts: Arc<ProbeOptions>,
        scope: Arc<Scope>,
        connector: Arc<dyn Connector>,
    ) -> ProbeCtx {
        ProbeCtx {
            addr,
            host: host.unwrap_or_else(|| addr.ip().to_string()),
            tls,
            opts,
            scope,
            connector,
            auth_attempts: AtomicU32::new(0),
            last_auth: tokio::sync::Mutex::new(None),
        }
    }

    /// A copy of this context (same endpoint, options and scope), for a session of its own.
    pub fn copy(&self) -> ProbeCtx {
        self.with_tls_flag(self.tls)
    }

    /// A copy of this context for the same endpoint over TLS.
    pub fn with_tls(&self) -> ProbeCtx {
        self.with_tls_flag(true)
    }

    /// A copy of this context for the same endpoint in plaintext.
    pub fn with_tls_off(&self) -> ProbeCtx {
        self.with_tls_flag(false)
    }

    fn with_tls_flag(&self, tls: bool) -> ProbeCtx {
        ProbeCtx::new(
            self.addr,
            Some(self.host.clone()),
            tls,
            self.opts.clone(),
            self.scope.clone(),
            self.connector.clone(),
        )
    }

    /// A fresh connection to this endpoint (TLS-wrapped when the service is TLS). The only way
    /// a handler reaches the network.
    pub async fn connect(&self) -> Result<Conn, NetError> {
        let conn = self.connector.connect(self.addr, self.opts.limits).await?;
        if self.tls {
            let sni = (self.host != self.addr.ip().to_string()).then_some(self.host.as_str());
            conn.start_tls(sni).await
        } else {
            Ok(conn)
        }
    }

    /// A fresh connection, or `None` with why not in `notes` (`{what} connection failed: …`),
    /// for work that reports its failures as notes (an inventory).
    pub async fn connect_or_note(&self, notes: &mut Vec<String>, what: &str) -> Option<Conn> {
        match self.connect().await {
            Ok(c) => Some(c),
            Err(e) => {
                notes.push(format!("{what} connection failed: {e}"));
                None
            }
        }
    }

    /// A copy of this context whose reads may take at least `min` (inventory reads of big
    /// containers legitimately take longer than an identification probe).
    pub fn with_read_timeout_at_least(&self, min: Duration) -> ProbeCtx {
        let mut opts = (*self.opts).clone();
        opts.limits.read_timeout = opts.limits.read_timeout.max(min);
        ProbeCtx::new(
            self.addr,
            Some(self.host.clone()),
            self.tls,
            Arc::new(opts),
            self.scope.clone(),
            self.connector.clone(),
        )
    }

    /// `host:port` as sent in HTTP `Host:` headers.
    pub fn authority(&self) -> String {
        match self.addr {
            SocketAddr::V6(a) if self.host == a.ip().to_string() => {
                format!("[{}]:{}", a.ip(), a.port())
            }
            _ => format!("{}:{}", self.host, self.addr.port()),
        }
    }

    /// Call before each credential attempt: waits out the per-service interval and counts it.
    /// Returns false when default credentials are not to be tried at all.
    pub async fn begin_auth_attempt(&self) -> bool {
        if !self.opts.try_defaults {
            return false;
        }
        let mut last = self.last_auth.lock().await;
        if let Some(t) = *last {
            tokio::time::sleep_until(t + self.opts.auth_interval).await;
        }
        *last = Some(tokio::time::Instant::now());
        self.auth_attempts.fetch_add(1, Ordering::Relaxed);
        true
    }

    pub fn auth_attempts(&self) -> u32 {
        self.auth_attempts.load(Ordering::Relaxed)
    }

    /// Peers a server named, kept only when outside the scope (in-scope peers are scanned as
    /// targets in their own right). Unparseable names are reported as given.
    pub fn out_of_scope<I: IntoIterator<Item = String>>(&self, peers: I) -> Vec<String> {
        let mut out: Vec<String> = peers
            .into_iter()
            .filter(|p| match p.parse::<SocketAddr>() {
                Ok(sa) => !self.scope.contains(sa.ip(), sa.port()),
                Err(_) => true,
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// A context for unit tests of probes against servers the test runs on loopback: the scope is
/// exactly `addr`'s address, connections are direct.
#[cfg(test)]
pub(crate) fn test_ctx(addr: SocketAddr, opts: ProbeOptions) -> ProbeCtx {
    use crate::scope::{ScopeBuilder, TargetSpec};
    let target = TargetSpec::parse(&addr.ip().to_string()).expect("loopback address");
    let scope = ScopeBuilder::new(vec![target])
        .build_resolved(&std::collections::HashMap::new())
        .expect("one-address scope");
    ProbeCtx::new(
        addr,
        None,
        false,
        Arc::new(opts),
        Arc::new(scope),
        Arc::new(DirectConnector),
    )
}

/// Short printable preview of peer bytes for evidence strings.
pub fn preview(bytes: &[u8]) -> String {
    let s: String = bytes
        .iter()
        .take(48)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '.'
            }
        })
        .collect();
    s
}
