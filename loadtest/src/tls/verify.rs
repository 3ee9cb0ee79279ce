//! The server certificate check: webpki's, against the public roots and `--ca-file`,
//! with one addition. A self-signed certificate made by `openssl req -x509` is marked as
//! a CA (`basicConstraints=CA:TRUE`, from OpenSSL's default configuration), and webpki
//! refuses a CA certificate as a server's own even when it is a trust anchor. Such a
//! certificate is accepted when it is byte for byte one of the `--ca-file` certificates,
//! valid for the server name, and in its validity period. Nothing else is relaxed, and
//! the handshake's signature is checked as always, so the server must hold its key.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_name};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};

/// webpki's check, and the `--ca-file` certificates trusted as themselves.
#[derive(Debug)]
pub(super) struct Verifier {
    webpki: Arc<WebPkiServerVerifier>,
    /// The `--ca-file` certificates: a server showing one of them is trusted even when
    /// it is marked as a CA.
    pinned: Vec<CertificateDer<'static>>,
}

impl Verifier {
    /// Trusts `roots` (which hold `pinned` too) and `pinned` as server certificates.
    ///
    /// # Errors
    /// When webpki's verifier cannot be built (no roots).
    pub(super) fn new(
        roots: RootCertStore,
        pinned: Vec<CertificateDer<'static>>,
        provider: Arc<CryptoProvider>,
    ) -> anyhow::Result<Self> {
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| anyhow::anyhow!("TLS certificate verifier: {e}"))?;
        Ok(Self { webpki, pinned })
    }
}

/// Whether webpki refused the server's certificate for being a CA's.
pub(super) fn ca_as_end_entity(e: &CertificateError) -> bool {
    let CertificateError::Other(other) = e else {
        return false;
    };
    matches!(
        other.0.downcast_ref::<webpki::Error>(),
        Some(webpki::Error::CaUsedAsEndEntity)
    )
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let checked = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match checked {
            // INVARIANT: webpki checks the validity period before the basic constraints,
            // so a certificate refused for being a CA is in its validity period (the
            // tests hold an expired one to this).
            Err(Error::InvalidCertificate(e))
                if ca_as_end_entity(&e) && self.pinned.iter().any(|p| p == end_entity) =>
            {
                verify_server_name(&ParsedCertificate::try_from(end_entity)?, server_name)?;
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for 127.0.0.1 marked as a CA, as `openssl req -x509`
    /// makes it, valid until `until` (a year).
    fn openssl_like(until: i32) -> CertificateDer<'static> {
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(until, 1, 1);
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("cert").der().clone()
    }

    fn verifier(pinned: &[CertificateDer<'static>]) -> Verifier {
        let mut roots = RootCertStore::empty();
        for cert in pinned {
            roots.add(cert.clone()).expect("a root");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Verifier::new(roots, pinned.to_vec(), provider).expect("verifier")
    }

    fn check(v: &Verifier, cert: &CertificateDer<'_>, host: &str) -> Result<(), Error> {
        let name = ServerName::try_from(host).expect("name");
        v.verify_server_cert(cert, &[], &name, &[], UnixTime::now())
            .map(|_| ())
    }

    #[test]
    fn a_pinned_ca_marked_certificate_is_trusted_for_its_names_only() {
        let cert = openssl_like(2200);
        let v = verifier(std::slice::from_ref(&cert));
        assert_eq!(check(&v, &cert, "127.0.0.1"), Ok(()));
        assert!(matches!(
            check(&v, &cert, "127.0.0.2"),
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForNameContext { .. }
            ))
        ));
    }

    #[test]
    fn a_ca_marked_certificate_not_given_is_refused() {
        let given = openssl_like(2200);
        let other = openssl_like(2200);
        let v = verifier(&[given]);
        let refused = check(&v, &other, "127.0.0.1").expect_err("not trusted");
        assert!(
            matches!(&refused, Error::InvalidCertificate(c) if ca_as_end_entity(c)),
            "{refused:?}"
        );
    }

    #[test]
    fn an_expired_pinned_certificate_is_refused() {
        let cert = openssl_like(2001);
        let v = verifier(std::slice::from_ref(&cert));
        assert!(matches!(
            check(&v, &cert, "127.0.0.1"),
            Err(Error::InvalidCertificate(
                CertificateError::ExpiredContext { .. }
            ))
        ));
    }
}
