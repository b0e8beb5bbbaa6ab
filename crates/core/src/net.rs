//! Bounded network I/O: the only way probes talk to a peer.
//!
//! Every connect and every frame read has a deadline; every frame read has a byte cap; bytes are
//! buffered only until a caller-supplied `check` says a whole frame is there ("check, then
//! parse"). A peer that drips one byte a second, streams forever or announces a 2 GB frame costs
//! one deadline and at most `cap` bytes of memory, never a hang.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

/// What went wrong talking to a peer. Probes turn these into verdicts and evidence.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("connection refused")]
    Refused,
    #[error("{0} timed out")]
    Timeout(&'static str),
    #[error("connection reset by peer")]
    Reset,
    #[error("peer closed the connection after {0} bytes")]
    Closed(usize),
    #[error("frame exceeds the {cap}-byte cap")]
    TooLarge { cap: usize },
    #[error("invalid frame: {0}")]
    Invalid(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl NetError {
    /// A connection that never existed (refused/unreachable) as opposed to one that misbehaved.
    pub fn is_refused(&self) -> bool {
        matches!(self, NetError::Refused)
    }
}

fn map_io(e: io::Error) -> NetError {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => NetError::Refused,
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => NetError::Reset,
        io::ErrorKind::UnexpectedEof => NetError::Closed(0),
        _ => NetError::Io(e),
    }
}

/// Answer of a frame checker looking at the bytes buffered so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// A whole frame of this many bytes is at the start of the buffer.
    Complete(usize),
    /// Not enough bytes yet.
    Incomplete,
    /// These bytes can never become a valid frame.
    Invalid(String),
    /// The peer announced a frame larger than this cap (refused before reading it).
    TooLarge(usize),
}

/// Deadlines and caps for one connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connect_timeout: Duration::from_secs(3),
            read_timeout: Duration::from_secs(3),
            write_timeout: Duration::from_secs(3),
        }
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// A connection to one peer with a bounded read buffer.
pub struct Conn {
    stream: Stream,
    buf: Vec<u8>,
    limits: Limits,
    peer: SocketAddr,
    /// Bytes received over the whole connection (for the hostile-peer accounting).
    pub received: usize,
    /// How long the TCP connect took: about one round trip to the peer.
    rtt: Duration,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("peer", &self.peer)
            .field("tls", &self.is_tls())
            .field("buffered", &self.buf.len())
            .finish()
    }
}

/// The kernel's smoothed round-trip time of a connected socket (`TCP_INFO`), measured on the
/// wire from the handshake's SYN and SYN-ACK.
#[cfg(target_os = "linux")]
fn kernel_rtt(stream: &TcpStream) -> Option<Duration> {
    use std::os::fd::AsRawFd;
    // SAFETY: `tcp_info` is a plain C struct for which all zeroes is a valid value;
    // getsockopt writes at most `len` bytes into it and says how many it wrote.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    (rc == 0 && info.tcpi_rtt > 0).then(|| Duration::from_micros(u64::from(info.tcpi_rtt)))
}

#[cfg(not(target_os = "linux"))]
fn kernel_rtt(_stream: &TcpStream) -> Option<Duration> {
    None
}

impl Conn {
    /// Opens a TCP connection within `limits.connect_timeout`.
    pub async fn connect(peer: SocketAddr, limits: Limits) -> Result<Conn, NetError> {
        let started = Instant::now();
        let stream =
            match tokio::time::timeout(limits.connect_timeout, TcpStream::connect(peer)).await {
                Err(_) => return Err(NetError::Timeout("connect")),
                Ok(Err(e)) => return Err(map_io(e)),
                Ok(Ok(s)) => s,
            };
        let _ = stream.set_nodelay(true);
        // The time the connect took, as this task saw it, includes every moment the runtime
        // was busy elsewhere (150 ms measured with thirty hostile peers at once, where the
        // wire took 0.1 ms). The kernel's own measurement of the handshake is what
        // identification should scale its waits by.
        let rtt = kernel_rtt(&stream).unwrap_or_else(|| started.elapsed());
        Ok(Conn {
            stream: Stream::Plain(stream),
            buf: Vec::new(),
            limits,
            peer,
            received: 0,
            rtt,
        })
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// How long the TCP connect took: about one round trip to the peer.
    pub fn rtt(&self) -> Duration {
        self.rtt
    }

    /// Changes how long one read may wait (for a reply known to take longer than most).
    pub fn set_read_timeout(&mut self, wait: Duration) {
        self.limits.read_timeout = wait;
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// Wraps this (fresh, unused) connection in TLS. Certificates are not verified: the scanner
    /// needs to talk to self-signed services, and it never sends secrets that a man in the
    /// middle could steal except the documented default credentials.
    pub async fn start_tls(self, server_name: Option<&str>) -> Result<Conn, NetError> {
        let Stream::Plain(tcp) = self.stream else {
            return Err(NetError::Tls("already TLS".into()));
        };
        let name = match server_name
            .and_then(|n| rustls::pki_types::ServerName::try_from(n.to_string()).ok())
        {
            Some(n) => n,
            None => rustls::pki_types::ServerName::IpAddress(self.peer.ip().into()),
        };
        let connector = tokio_rustls::TlsConnector::from(tls_config());
        let tls = match tokio::time::timeout(self.limits.read_timeout, connector.connect(name, tcp))
            .await
        {
            Err(_) => return Err(NetError::Timeout("TLS handshake")),
            Ok(Err(e)) => return Err(NetError::Tls(e.to_string())),
            Ok(Ok(t)) => t,
        };
        Ok(Conn {
            stream: Stream::Tls(Box::new(tls)),
            buf: Vec::new(),
            limits: self.limits,
            peer: self.peer,
            received: 0,
            rtt: self.rtt,
        })
    }

    /// Sends all of `bytes` within the write deadline.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), NetError> {
        let fut = async {
            match &mut self.stream {
                Stream::Plain(s) => {
                    s.write_all(bytes).await?;
                    s.flush().await
                }
                Stream::Tls(s) => {
                    s.write_all(bytes).await?;
                    s.flush().await
                }
            }
        };
        match tokio::time::timeout(self.limits.write_timeout, fut).await {
            Err(_) => Err(NetError::Timeout("write")),
            Ok(r) => r.map_err(map_io),
        }
    }

    async fn fill(&mut self, deadline: Instant, cap: usize) -> Result<usize, NetError> {
        // Read at most what is still allowed under the cap, so a fast streamer cannot push the
        // buffer past it between checks.
        let room = cap.saturating_sub(self.buf.len());
        if room == 0 {
            return Err(NetError::TooLarge { cap });
        }
        let mut chunk = [0u8; 8192];
        let want = room.min(chunk.len());
        let read = async {
            match &mut self.stream {
                Stream::Plain(s) => s.read(&mut chunk[..want]).await,
                Stream::Tls(s) => s.read(&mut chunk[..want]).await,
            }
        };
        let n = match timeout_at(deadline, read).await {
            Err(_) => return Err(NetError::Timeout("read")),
            Ok(Err(e)) => return Err(map_io(e)),
            Ok(Ok(n)) => n,
        };
        self.buf.extend_from_slice(&chunk[..n]);
        self.received += n;
        Ok(n)
    }

    /// Reads until `check` reports a complete frame, and returns it (leftover bytes stay buffered
    /// for the next call). The whole frame must arrive within the read deadline and fit in `cap`.
    pub async fn read_frame<F>(&mut self, cap: usize, mut check: F) -> Result<Vec<u8>, NetError>
    where
        F: FnMut(&[u8]) -> Check,
    {
        let deadline = Instant::now() + self.limits.read_timeout;
        loop {
            if !self.buf.is_empty() {
                match check(&self.buf) {
                    Check::Complete(n) if n <= self.buf.len() => {
                        let rest = self.buf.split_off(n);
                        return Ok(std::mem::replace(&mut self.buf, rest));
                    }
                    Check::Complete(_) | Check::Incomplete => {}
                    Check::Invalid(why) => return Err(NetError::Invalid(why)),
                    Check::TooLarge(cap) => return Err(NetError::TooLarge { cap }),
                }
            }
            if self.buf.len() >= cap {
                return Err(NetError::TooLarge { cap });
            }
            if self.fill(deadline, cap).await? == 0 {
                return Err(NetError::Closed(self.buf.len()));
            }
        }
    }

    /// Reads whatever arrives within `wait` (at most `cap` bytes); empty when the peer is silent.
    /// For servers that speak first (MySQL greeting, FTP banner).
    pub async fn read_banner(&mut self, cap: usize, wait: Duration) -> Result<Vec<u8>, NetError> {
        let deadline = Instant::now() + wait;
        if self.buf.is_empty() {
            match self.fill(deadline, cap).await {
                Ok(0) => return Err(NetError::Closed(0)),
                Ok(_) => {}
                Err(NetError::Timeout(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e),
            }
        }
        Ok(self.buf.clone())
    }

    /// Bytes buffered but not yet returned as a frame.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Drops `n` buffered bytes (after a banner was parsed in place).
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.buf.len());
        self.buf.drain(..n);
    }
}

/// True when `bytes` start like a TLS record (handshake or alert), e.g. a TLS server's answer
/// to plaintext.
pub fn looks_like_tls(bytes: &[u8]) -> bool {
    bytes.len() >= 3 && matches!(bytes[0], 0x15 | 0x16) && bytes[1] == 0x03 && bytes[2] <= 0x04
}

fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default TLS versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
                .with_no_client_auth();
            Arc::new(cfg)
        })
        .clone()
}

/// Accepts any server certificate: a scanner identifies services, it does not trust them.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{FakeServer, Reply};

    fn limits(ms: u64) -> Limits {
        Limits {
            connect_timeout: Duration::from_millis(ms),
            read_timeout: Duration::from_millis(ms),
            write_timeout: Duration::from_millis(ms),
        }
    }

    fn line(buf: &[u8]) -> Check {
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => Check::Complete(i + 1),
            None => Check::Incomplete,
        }
    }

    #[tokio::test]
    async fn frames_split_and_leftovers_kept() {
        let server = FakeServer::opening(vec![
            Reply::Send(b"one\ntw".to_vec()),
            Reply::Later(Duration::from_millis(20), b"o\n".to_vec()),
        ])
        .await;
        let mut c = Conn::connect(server.addr(), limits(500)).await.unwrap();
        assert_eq!(c.read_frame(64, line).await.unwrap(), b"one\n");
        assert_eq!(c.read_frame(64, line).await.unwrap(), b"two\n");
    }

    #[tokio::test]
    async fn endless_stream_hits_the_cap() {
        let server = FakeServer::opening(vec![Reply::Stream(Vec::new())]).await;
        let mut c = Conn::connect(server.addr(), limits(2000)).await.unwrap();
        let err = c.read_frame(10_000, line).await.unwrap_err();
        assert!(matches!(err, NetError::TooLarge { cap: 10_000 }), "{err:?}");
        assert!(c.received <= 10_000);
    }

    #[tokio::test]
    async fn dripping_peer_costs_one_deadline() {
        let server =
            FakeServer::opening(vec![Reply::Drip(b"x".to_vec(), Duration::from_millis(50))]).await;
        let mut c = Conn::connect(server.addr(), limits(300)).await.unwrap();
        let t = std::time::Instant::now();
        let err = c.read_frame(1 << 20, line).await.unwrap_err();
        assert!(matches!(err, NetError::Timeout("read")), "{err:?}");
        assert!(
            t.elapsed() < Duration::from_millis(600),
            "{:?}",
            t.elapsed()
        );
    }

    #[tokio::test]
    async fn closed_and_refused_are_distinguished() {
        let server = FakeServer::opening(vec![Reply::Close]).await;
        let mut c = Conn::connect(server.addr(), limits(500)).await.unwrap();
        assert!(matches!(
            c.read_frame(64, line).await,
            Err(NetError::Closed(0))
        ));
        // A port nobody listens on (bound then dropped) refuses.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let free = l.local_addr().unwrap();
        drop(l);
        assert!(Conn::connect(free, limits(500))
            .await
            .unwrap_err()
            .is_refused());
    }

    #[tokio::test]
    async fn silent_banner_is_empty_not_an_error() {
        let server = FakeServer::opening(vec![Reply::Stall(Duration::from_millis(500))]).await;
        let mut c = Conn::connect(server.addr(), limits(500)).await.unwrap();
        assert!(c
            .read_banner(1024, Duration::from_millis(50))
            .await
            .unwrap()
            .is_empty());
    }

    #[test]
    fn tls_record_shapes() {
        assert!(looks_like_tls(&[0x15, 0x03, 0x03, 0x00, 0x02]));
        assert!(looks_like_tls(&[0x16, 0x03, 0x01]));
        assert!(!looks_like_tls(b"HTTP/1.1 400"));
        assert!(!looks_like_tls(&[0x16]));
    }
}
