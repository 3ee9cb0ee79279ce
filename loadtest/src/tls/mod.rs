//! TLS for `wss://` gateways and their `https://` API, as behind a TLS-terminating
//! balancer: rustls with the ring provider, server names verified, trusting the public
//! roots (`webpki-roots`) and the certificates of `--ca-file` (see [`verify`] for the
//! self-signed certificates OpenSSL makes). There is no insecure mode.
//!
//! [`Stream`] is a connection either way: a plain one stays a bare `TcpStream` behind
//! one `match`, with no allocation or dynamic dispatch per read or write.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};

use anyhow::{Context, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::viewer::STEP_TIMEOUT;

mod verify;

/// Largest `--ca-file` read: a bundle of a few hundred certificates fits.
const MAX_CA_FILE: u64 = 4 * 1024 * 1024;

/// The client side of TLS, built once per process from `--ca-file`.
#[derive(Clone)]
pub struct Tls {
    connector: TlsConnector,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// Trusts the public roots and every certificate in `ca_files` (PEM, one or more
    /// certificates each).
    ///
    /// # Errors
    /// A file that cannot be read, holds no certificate, or holds one rustls refuses,
    /// named by its path.
    pub fn new(ca_files: &[PathBuf]) -> anyhow::Result<Self> {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let mut pinned = Vec::new();
        for path in ca_files {
            for cert in read_certs(path)? {
                roots
                    .add(cert.clone())
                    .with_context(|| format!("--ca-file {}: a certificate", path.display()))?;
                pinned.push(cert);
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = verify::Verifier::new(roots, pinned, provider.clone())?;
        // `dangerous` only in rustls' naming: the verifier is webpki's, plus exact
        // `--ca-file` certificates (see `verify`).
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// What a connection to `host` (a name, or an IP address, in brackets for IPv6)
    /// verifies the server's certificate against.
    ///
    /// # Errors
    /// A host that is not a valid DNS name or IP address.
    pub fn target(&self, host: &str) -> anyhow::Result<TlsTarget> {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let name = match bare.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(bare.to_owned())
                .with_context(|| format!("{host}: not a TLS server name"))?,
        };
        Ok(TlsTarget {
            connector: self.connector.clone(),
            name,
        })
    }
}

/// The certificates of one PEM file.
fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let shown = path.display();
    let len = std::fs::metadata(path)
        .with_context(|| format!("--ca-file {shown}"))?
        .len();
    if len > MAX_CA_FILE {
        bail!("--ca-file {shown}: {len} bytes, more than a CA file holds ({MAX_CA_FILE})");
    }
    let pem = std::fs::read(path).with_context(|| format!("--ca-file {shown}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("--ca-file {shown}: not PEM"))?;
    if certs.is_empty() {
        bail!("--ca-file {shown}: no certificate (PEM `BEGIN CERTIFICATE`) in it");
    }
    Ok(certs)
}

/// A TLS server to connect to: the trust, and the name its certificate must show.
#[derive(Clone)]
pub struct TlsTarget {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl fmt::Debug for TlsTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TlsTarget").field(&self.name).finish()
    }
}

impl TlsTarget {
    /// The TLS handshake over `tcp`, within [`STEP_TIMEOUT`].
    ///
    /// # Errors
    /// The handshake's failure (a rustls error inside, see [`handshake_cause`]), or
    /// `TimedOut`.
    pub async fn handshake(&self, tcp: TcpStream) -> io::Result<Stream> {
        let connect = self.connector.connect(self.name.clone(), tcp);
        match tokio::time::timeout(STEP_TIMEOUT, connect).await {
            Ok(tls) => Ok(Stream::Tls(Box::new(tls?))),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            )),
        }
    }
}

/// What to do about a certificate that is not trusted, for a message.
pub const UNTRUSTED_HINT: &str = " (a self-signed or private CA's certificate needs --ca-file)";

/// [`UNTRUSTED_HINT`] when `e` refused a certificate for its issuer, or nothing.
pub fn hint(e: &io::Error) -> &'static str {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(c)) if untrusted(c) => UNTRUSTED_HINT,
        _ => "",
    }
}

/// Whether `cause` (see [`handshake_cause`]) is a certificate not trusted.
pub fn is_untrusted_cause(cause: &str) -> bool {
    ["unknown_issuer", "ca_used_as_end_entity"]
        .iter()
        .any(|why| cause.starts_with(&format!("connect_tls_certificate_{why}@")))
}

/// Whether a certificate was refused for who issued it: none trusted, or a
/// self-signed CA certificate not given with `--ca-file`.
fn untrusted(e: &CertificateError) -> bool {
    matches!(e, CertificateError::UnknownIssuer) || verify::ca_as_end_entity(e)
}

/// A failed TLS handshake with `addr` as a connect failure's cause:
/// `connect_tls_certificate_unknown_issuer@127.0.0.1:8443`.
pub fn handshake_cause(e: &io::Error, addr: SocketAddr) -> String {
    let why = match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(c)) => format!("certificate_{}", certificate(c)),
        Some(rustls::Error::AlertReceived(alert)) => format!("alert_{alert:?}").to_lowercase(),
        Some(rustls::Error::PeerIncompatible(_)) => "incompatible".into(),
        Some(_) => "protocol".into(),
        None if e.kind() == io::ErrorKind::TimedOut => "timeout".into(),
        None => format!("{:?}", e.kind()).to_lowercase(),
    };
    format!("connect_tls_{why}@{addr}")
}

/// A short name for why a certificate was refused.
fn certificate(e: &CertificateError) -> &'static str {
    match e {
        CertificateError::UnknownIssuer => "unknown_issuer",
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            "not_valid_for_name"
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => "expired",
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "not_valid_yet"
        }
        CertificateError::Revoked => "revoked",
        CertificateError::BadSignature => "bad_signature",
        CertificateError::BadEncoding => "bad_encoding",
        e if verify::ca_as_end_entity(e) => "ca_used_as_end_entity",
        _ => "invalid",
    }
}

/// A connection to a gateway: plain TCP, or TLS over it.
pub enum Stream {
    /// `ws://`, `http://`.
    Plain(TcpStream),
    /// `wss://`, `https://`. Boxed: a plain connection stays the size of a socket.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            Self::Tls(s) => s.get_ref().0,
        }
    }

    /// Writes what of `out` the connection takes now, without waiting, and drains it
    /// from `out`. Over TLS, what is encrypted but not yet taken by the socket stays in
    /// the session, and goes out with the next write or call.
    pub fn write_now(&mut self, out: &mut Vec<u8>) {
        match self {
            Self::Plain(s) => {
                while !out.is_empty() {
                    match s.try_write(out) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            out.drain(..n);
                        }
                    }
                }
            }
            Self::Tls(s) => {
                if out.is_empty() && !s.get_ref().1.wants_write() {
                    return;
                }
                // One poll, woken by nobody: the connection's owner polls it again
                // when it next reads or writes.
                let mut cx = TaskContext::from_waker(Waker::noop());
                let mut tls = Pin::new(&mut **s);
                while !out.is_empty() {
                    match tls.as_mut().poll_write(&mut cx, out) {
                        Poll::Ready(Ok(n)) if n > 0 => {
                            out.drain(..n);
                        }
                        _ => break,
                    }
                }
                let _ = tls.poll_flush(&mut cx);
            }
        }
    }
}

// === impl Stream: AsyncRead, AsyncWrite ===

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_hosts_get_ip_server_names() {
        let tls = Tls::new(&[]).expect("public roots");
        let name = |h| tls.target(h).map(|t| t.name);
        assert!(matches!(name("127.0.0.1"), Ok(ServerName::IpAddress(_))));
        assert!(matches!(name("[::1]"), Ok(ServerName::IpAddress(_))));
        assert!(matches!(name("gw.example"), Ok(ServerName::DnsName(_))));
        assert!(name("bad host").is_err());
    }

    #[test]
    fn a_bad_ca_file_is_named() {
        let dir = std::env::temp_dir().join(format!("danmaku-lt-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let missing = dir.join("missing.pem");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        for path in [missing, empty] {
            let e = Tls::new(std::slice::from_ref(&path)).expect_err("refused");
            assert!(
                format!("{e:#}").contains(&path.display().to_string()),
                "{e:#}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
