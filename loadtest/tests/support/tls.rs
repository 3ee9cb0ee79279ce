//! A TLS-terminating proxy, as a balancer in front of a gateway: it accepts TLS with a
//! self-signed certificate made here and forwards the bytes to the gateway's plain
//! port. Stopped when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

/// A self-signed certificate for `127.0.0.1` and `localhost`.
pub struct Cert {
    der: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    pem: String,
}

impl Cert {
    /// As `openssl req -x509 … -addext subjectAltName=IP:127.0.0.1,DNS:localhost`
    /// makes it: marked as a CA (OpenSSL's default `basicConstraints=CA:TRUE`).
    pub fn openssl_like() -> Self {
        Self::made(true)
    }

    /// A server certificate only (not a CA), as `rcgen` makes it by default.
    pub fn leaf() -> Self {
        Self::made(false)
    }

    fn made(ca: bool) -> Self {
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        if ca {
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            der: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
            pem: cert.pem(),
        }
    }

    /// Writes its PEM into `dir`; returns the file's path (what `--ca-file` takes).
    pub fn write_pem(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.pem).unwrap();
        path
    }
}

/// The proxy, on a thread of its own; stops (with its connections) when dropped.
pub struct TlsProxy {
    /// Where it accepts TLS.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TlsProxy {
    /// Listens on a free port of 127.0.0.1 and forwards each connection to `upstream`.
    pub fn start(cert: &Cert, upstream: SocketAddr) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der.clone()],
                PrivateKeyDer::Pkcs8(cert.key.clone_key()),
            )
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    _ = stopped => {}
                    () = serve(listener, acceptor, upstream) => {}
                }
            });
            // Dropping the runtime ends the connections' tasks.
        });
        Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Accepts until the listener fails; a failed handshake only ends its connection.
async fn serve(listener: TcpListener, acceptor: TlsAcceptor, upstream: SocketAddr) {
    while let Ok((tcp, _)) = listener.accept().await {
        let acceptor = acceptor.clone();
        // Owned by the runtime, which ends them when the proxy is dropped.
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            let Ok(mut plain) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = plain.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
        });
    }
}
