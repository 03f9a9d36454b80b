//! TLS for the metrics API: the serving certificate (shared code in `floe_meta::certificate`,
//! re-read when its files change), and client certificates requested but verified later, per
//! request (`authn`).
//!
//! # Guarantees
//! - A renewed certificate is served from the next handshake after the files change (see
//!   `floe_meta::certificate`).
//! - A client that presents a certificate proves it holds the key (the handshake signature is
//!   checked here); whether the certificate chains to the front-proxy CA is decided per request,
//!   against the CA bundle current at that moment, as Go's apiserver does.

pub use floe_meta::certificate::{certificates_from_pem, load_certified_key, provider, ReloadingCertificate, TlsError, RECHECK_INTERVAL};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use std::sync::Arc;

/// What the serving certificate is for, in the reload log lines.
pub const PURPOSE: &str = "metrics API";

/// Asks for a client certificate, accepts a handshake without one, and checks only that a
/// presented certificate's holder signed the handshake. Chain, validity and name are checked per
/// request by `authn::authenticate` against the CA of the moment (it is reloaded from a
/// ConfigMap, and the aggregator keeps its connections open for long).
#[derive(Debug)]
pub struct DeferredClientVerification {
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for DeferredClientVerification {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: a client then sends the certificate it has (Go's client does).
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, certificate, signature, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, certificate, signature, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// TLS 1.2 and 1.3, HTTP/2 or HTTP/1.1, the reloading certificate, optional client certificates.
pub fn server_config(certificate: Arc<ReloadingCertificate>, provider: Arc<CryptoProvider>) -> Result<ServerConfig, TlsError> {
    let verifier = Arc::new(DeferredClientVerification { provider: Arc::clone(&provider) });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(certificate);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
