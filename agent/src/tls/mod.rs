//! TLS on the Kafka listener: the rustls configuration built from `--tls-*` flags (TLS 1.2 and
//! 1.3, rustls's safe default cipher suites, optional client certificates), the bounded handshake,
//! and the principal a client certificate names. The connection loop (`server/`) is the same for
//! plaintext and TLS; this module only turns an accepted socket into an encrypted stream.
//!
//! # Guarantees
//! - The serving certificate is re-read when its files change (`certificate`): new handshakes use
//!   the new pair, established connections keep theirs. The client CA bundle likewise: a changed
//!   bundle applies from the next handshake; one that cannot be used is refused with a warning and
//!   the previous bundle stays.
//! - A handshake ends within `handshake_timeout` or the socket is closed, so a client that opens a
//!   connection and stalls cannot keep a `--max-connections` slot.
//! - A client that speaks plaintext Kafka to this listener is closed after its first byte (a TLS
//!   connection starts with a handshake record, type 22); nothing is parsed.

pub use floe_meta::certificate;

use crate::config::TlsClientAuth;
use certificate::{certificates_from_pem, stamp, FileStamp, ReloadingCertificate, TlsError};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// What the `--tls-*` flags say.
#[derive(Debug, Clone)]
pub struct ListenerTlsSettings {
    pub certificate: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub client_auth: TlsClientAuth,
    pub handshake_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ListenerTlsError {
    #[error("{flag}: {source}; example: --tls-cert-file /etc/floe/tls/tls.crt --tls-key-file /etc/floe/tls/tls.key")]
    ServingCertificate { flag: &'static str, source: TlsError },
    #[error("--tls-client-ca-file: {source}; example: --tls-client-ca-file /etc/floe/tls/ca.crt")]
    ClientCertificateAuthority { source: TlsError },
    #[error("--tls-client-auth {mode} needs --tls-client-ca-file to verify client certificates; example: --tls-client-ca-file /etc/floe/tls/ca.crt")]
    ClientCertificateAuthorityMissing { mode: &'static str },
    #[error("--tls-client-ca-file is set but --tls-client-auth is none, so no client certificate would be asked for; example: --tls-client-auth required")]
    ClientAuthenticationOff,
    #[error("failed to build the Kafka listener's TLS configuration: {0}")]
    Config(rustls::Error),
}

/// The Kafka listener's TLS: an acceptor over a reloading certificate (and client CA bundle), and
/// the handshake bound. Cloning shares the state.
#[derive(Clone)]
pub struct ListenerTls {
    inner: Arc<Inner>,
    pub handshake_timeout: Duration,
}

struct Inner {
    settings: ListenerTlsSettings,
    provider: Arc<CryptoProvider>,
    serving: Arc<ReloadingCertificate>,
    recheck_interval: Duration,
    current: Mutex<Current>,
}

/// The configuration handshakes use now, and the client CA bundle's stamp it was built from.
struct Current {
    acceptor: TlsAcceptor,
    client_ca_seen: Option<FileStamp>,
    checked: Instant,
}

impl std::fmt::Debug for ListenerTls {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ListenerTls")
            .field("settings", &self.inner.settings)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

/// The flag a certificate-loading error is about, so the message names it.
fn serving_flag(error: &TlsError, key: &Path) -> &'static str {
    match error {
        TlsError::Read { path, .. } if path == key => "--tls-key-file",
        TlsError::Key { .. } => "--tls-key-file",
        TlsError::Pair { .. } => "--tls-cert-file / --tls-key-file",
        _ => "--tls-cert-file",
    }
}

/// Reads a CA bundle for client certificates.
fn client_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })?;
    let certificates = certificates_from_pem(&pem).map_err(|reason| TlsError::CertificateAuthority { path: path.to_path_buf(), reason })?;
    let mut roots = RootCertStore::empty();
    for certificate in certificates {
        roots.add(certificate).map_err(|error| TlsError::CertificateAuthority { path: path.to_path_buf(), reason: error.to_string() })?;
    }
    Ok(roots)
}

impl ListenerTls {
    /// Reads and checks every file once; failing here fails start-up with a message naming the
    /// flag and the file.
    pub fn load(settings: &ListenerTlsSettings) -> Result<Self, ListenerTlsError> {
        Self::load_with_recheck(settings, certificate::RECHECK_INTERVAL)
    }

    /// [`ListenerTls::load`], checking the files for changes at most every `recheck_interval`.
    pub fn load_with_recheck(settings: &ListenerTlsSettings, recheck_interval: Duration) -> Result<Self, ListenerTlsError> {
        let provider = certificate::provider();
        let serving = Arc::new(
            ReloadingCertificate::load("Kafka listener", &settings.certificate, &settings.key, Arc::clone(&provider), recheck_interval)
                .map_err(|source| ListenerTlsError::ServingCertificate { flag: serving_flag(&source, &settings.key), source })?,
        );
        let client_ca_seen = settings.client_ca.as_deref().and_then(stamp);
        let acceptor = Self::acceptor(settings, &provider, &serving)?;
        Ok(Self {
            inner: Arc::new(Inner {
                settings: settings.clone(),
                provider,
                serving,
                recheck_interval,
                current: Mutex::new(Current { acceptor, client_ca_seen, checked: Instant::now() }),
            }),
            handshake_timeout: settings.handshake_timeout,
        })
    }

    /// Builds the rustls configuration: versions, the client certificate verifier from the CA
    /// bundle as it is now, the reloading serving certificate.
    fn acceptor(
        settings: &ListenerTlsSettings,
        provider: &Arc<CryptoProvider>,
        serving: &Arc<ReloadingCertificate>,
    ) -> Result<TlsAcceptor, ListenerTlsError> {
        let builder = ServerConfig::builder_with_provider(Arc::clone(provider))
            .with_safe_default_protocol_versions()
            .map_err(ListenerTlsError::Config)?;
        let builder = match (settings.client_auth, &settings.client_ca) {
            (TlsClientAuth::None, None) => builder.with_no_client_auth(),
            (TlsClientAuth::None, Some(_)) => return Err(ListenerTlsError::ClientAuthenticationOff),
            (mode, None) => return Err(ListenerTlsError::ClientCertificateAuthorityMissing { mode: mode.as_str() }),
            (mode, Some(path)) => {
                let roots = client_roots(path).map_err(|source| ListenerTlsError::ClientCertificateAuthority { source })?;
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider));
                let verifier = if mode == TlsClientAuth::Requested { verifier.allow_unauthenticated() } else { verifier };
                let verifier = verifier.build().map_err(|error| ListenerTlsError::ClientCertificateAuthority {
                    source: TlsError::CertificateAuthority { path: path.clone(), reason: error.to_string() },
                })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder.with_cert_resolver(Arc::clone(serving) as Arc<dyn rustls::server::ResolvesServerCert>);
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// The acceptor for the next handshake, rebuilt first if the client CA bundle changed
    /// (checked at most every `recheck_interval`).
    fn current_acceptor(&self) -> TlsAcceptor {
        let inner = &self.inner;
        let mut current = inner.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(client_ca) = inner.settings.client_ca.as_deref() else { return current.acceptor.clone() };
        if current.checked.elapsed() < inner.recheck_interval {
            return current.acceptor.clone();
        }
        current.checked = Instant::now();
        let seen = stamp(client_ca);
        if seen != current.client_ca_seen {
            // Remembered even when refused, so a bad bundle is retried only after another change.
            current.client_ca_seen = seen;
            match Self::acceptor(&inner.settings, &inner.provider, &inner.serving) {
                Ok(acceptor) => {
                    tracing::info!(client_ca = %client_ca.display(), "reloaded the Kafka listener's client CA bundle");
                    current.acceptor = acceptor;
                }
                Err(error) => {
                    tracing::warn!(%error, "the Kafka listener's client CA bundle changed but cannot be used; keeping the previous one")
                }
            }
        }
        current.acceptor.clone()
    }

    /// Runs the server side of the handshake, bounded by `handshake_timeout`, and returns the
    /// encrypted stream with the principal its client certificate names (if it sent one).
    pub async fn accept(&self, stream: TcpStream) -> Result<(TlsStream<TcpStream>, Option<String>), HandshakeError> {
        let handshake = async {
            // A TLS connection opens with a handshake record (content type 22). Anything else is a
            // plaintext client (a Kafka size prefix starts with 0): refuse it by name.
            let mut first = [0u8; 1];
            match stream.peek(&mut first).await {
                Ok(0) => return Err(HandshakeError::Closed),
                Ok(_) if first[0] != HANDSHAKE_RECORD => return Err(HandshakeError::NotTls { first_byte: first[0] }),
                Ok(_) => {}
                Err(source) => return Err(HandshakeError::Io { source }),
            }
            let stream = self.current_acceptor().accept(stream).await.map_err(HandshakeError::from_io)?;
            let principal = stream.get_ref().1.peer_certificates().and_then(|chain| chain.first()).map(|leaf| principal_of(leaf.as_ref()));
            Ok((stream, principal))
        };
        tokio::time::timeout(self.handshake_timeout, handshake).await.map_err(|_| HandshakeError::Timeout)?
    }
}

/// TLS record content type of a handshake message.
const HANDSHAKE_RECORD: u8 = 22;

/// Why a handshake failed. `reason()` is the bounded metric label.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("the client did not finish the TLS handshake in time")]
    Timeout,
    #[error("the client sent plaintext (first byte {first_byte:#04x}), not a TLS handshake; is it configured with security.protocol=SSL?")]
    NotTls { first_byte: u8 },
    #[error("the client closed the connection during the TLS handshake")]
    Closed,
    #[error("the client sent no certificate and --tls-client-auth is required")]
    NoClientCertificate,
    #[error("the client's certificate was refused: {0}")]
    BadClientCertificate(rustls::Error),
    #[error("the client offers no TLS version or cipher suite this listener accepts: {0}")]
    Incompatible(rustls::Error),
    #[error("the client aborted the TLS handshake: {0}")]
    AlertReceived(rustls::Error),
    #[error("the TLS handshake failed: {0}")]
    Protocol(rustls::Error),
    #[error("the TLS handshake failed: {source}")]
    Io { source: std::io::Error },
}

impl HandshakeError {
    fn from_io(error: std::io::Error) -> Self {
        if error.kind() == std::io::ErrorKind::UnexpectedEof {
            return Self::Closed;
        }
        let Some(tls) = error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) else {
            return Self::Io { source: error };
        };
        match tls.clone() {
            rustls::Error::NoCertificatesPresented => Self::NoClientCertificate,
            error @ (rustls::Error::InvalidCertificate(_) | rustls::Error::InvalidCertRevocationList(_)) => {
                Self::BadClientCertificate(error)
            }
            error @ rustls::Error::PeerIncompatible(_) => Self::Incompatible(error),
            error @ rustls::Error::AlertReceived(_) => Self::AlertReceived(error),
            error => Self::Protocol(error),
        }
    }

    /// The metric label: one per variant.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::NotTls { .. } => "not_tls",
            Self::Closed => "closed",
            Self::NoClientCertificate => "no_client_certificate",
            Self::BadClientCertificate(_) => "bad_client_certificate",
            Self::Incompatible(_) => "incompatible",
            Self::AlertReceived(_) => "alert_received",
            Self::Protocol(_) => "protocol_error",
            Self::Io { .. } => "io_error",
        }
    }
}

/// Kafka's principal for a client certificate: `User:` and the subject in RFC 2253 form (the
/// last RDN first, `CN=client,O=Example`), which is what Java's `X500Principal.getName()` gives
/// Kafka's default principal builder, so ACLs written for Kafka match here too. Attributes
/// outside RFC 2253's keywords are written as their dotted OID and `#` with the hex of their
/// value's content.
pub fn principal_of(certificate_der: &[u8]) -> String {
    let Ok((_, certificate)) = x509_parser::parse_x509_certificate(certificate_der) else {
        // rustls accepted the chain, so this cannot happen short of a parser gap; an empty
        // subject never matches an ACL.
        return "User:".to_string();
    };
    let mut relative_names: Vec<String> = certificate
        .subject()
        .iter()
        .map(|relative_name| {
            relative_name
                .iter()
                .map(|attribute| {
                    let oid = attribute.attr_type().to_id_string();
                    let keyword = match oid.as_str() {
                        "2.5.4.3" => Some("CN"),
                        "2.5.4.6" => Some("C"),
                        "2.5.4.7" => Some("L"),
                        "2.5.4.8" => Some("ST"),
                        "2.5.4.9" => Some("STREET"),
                        "2.5.4.10" => Some("O"),
                        "2.5.4.11" => Some("OU"),
                        "0.9.2342.19200300.100.1.1" => Some("UID"),
                        "0.9.2342.19200300.100.1.25" => Some("DC"),
                        _ => None,
                    };
                    match (keyword, attribute.as_str()) {
                        (Some(keyword), Ok(value)) => format!("{keyword}={}", escape_rfc2253(value)),
                        (keyword, _) => {
                            let hex: String = attribute.attr_value().data.iter().map(|byte| format!("{byte:02x}")).collect();
                            format!("{}=#{hex}", keyword.unwrap_or(&oid))
                        }
                    }
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    // RFC 2253 writes the most specific name first: the reverse of the DER order.
    relative_names.reverse();
    format!("User:{}", relative_names.join(","))
}

/// Escapes an attribute value as RFC 2253 section 2.4 asks.
fn escape_rfc2253(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (index, character) in value.chars().enumerate() {
        let special = matches!(character, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (index == 0 && matches!(character, ' ' | '#'))
            || (index == last && character == ' ');
        if special {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls").join(name)
    }

    fn settings(client_auth: TlsClientAuth, client_ca: Option<&str>) -> ListenerTlsSettings {
        ListenerTlsSettings {
            certificate: fixture("serving-ec.crt"),
            key: fixture("serving-ec-pkcs8.key"),
            client_ca: client_ca.map(fixture),
            client_auth,
            handshake_timeout: Duration::from_millis(500),
        }
    }

    #[test]
    fn every_bad_file_is_refused_with_the_flag_and_the_file_it_is_about() {
        let mut missing_key = settings(TlsClientAuth::None, None);
        missing_key.key = fixture("absent.key");
        let message = ListenerTls::load(&missing_key).unwrap_err().to_string();
        assert!(message.starts_with("--tls-key-file:") && message.contains("absent.key"), "{message}");

        let mut not_pem = settings(TlsClientAuth::None, None);
        not_pem.certificate = fixture("README.md");
        let message = ListenerTls::load(&not_pem).unwrap_err().to_string();
        assert!(message.starts_with("--tls-cert-file:") && message.contains("README.md") && message.contains("no PEM"), "{message}");

        let mut mismatched = settings(TlsClientAuth::None, None);
        mismatched.key = fixture("serving-rsa-pkcs8.key");
        let message = ListenerTls::load(&mismatched).unwrap_err().to_string();
        assert!(
            message.contains("does not fit") && message.contains("serving-rsa-pkcs8.key") && message.contains("serving-ec.crt"),
            "{message}"
        );

        let message = ListenerTls::load(&settings(TlsClientAuth::Required, Some("README.md"))).unwrap_err().to_string();
        assert!(message.starts_with("--tls-client-ca-file:") && message.contains("README.md"), "{message}");
        let message = ListenerTls::load(&settings(TlsClientAuth::Required, None)).unwrap_err().to_string();
        assert!(message.contains("--tls-client-auth required needs --tls-client-ca-file"), "{message}");
        let message = ListenerTls::load(&settings(TlsClientAuth::None, Some("front-proxy-ca.crt"))).unwrap_err().to_string();
        assert!(message.contains("--tls-client-auth is none"), "{message}");
        assert!(ListenerTls::load(&settings(TlsClientAuth::Requested, Some("front-proxy-ca.crt"))).is_ok());
    }

    #[test]
    fn the_principal_is_the_subject_in_rfc2253_order_as_kafka_writes_it() {
        let client = CertificateDer::from_pem_file(fixture("front-proxy-client.crt")).unwrap();
        assert_eq!(principal_of(client.as_ref()), "User:CN=front-proxy-client");
        assert_eq!(escape_rfc2253("a,b+c \"d\" #"), "a\\,b\\+c \\\"d\\\" #");
        assert_eq!(escape_rfc2253(" #lead trail "), "\\ #lead trail\\ ");
    }

    /// A handshake over loopback against `tls`, with or without a client certificate.
    async fn handshake(tls: &ListenerTls, client_certificate: Option<(&str, &str)>) -> Result<Option<String>, HandshakeError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let provider = certificate::provider();
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from_pem_file(fixture("front-proxy-ca.crt")).unwrap()).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match client_certificate {
            Some((certificate, key)) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_file(fixture(certificate)).unwrap()],
                    PrivateKeyDer::from_pem_file(fixture(key)).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        let client = tokio::spawn(async move {
            let stream = TcpStream::connect(address).await.unwrap();
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            // In TLS 1.3 the client finishes before the server checks its certificate; a read
            // shows whether the server kept the connection.
            if let Ok(mut stream) = connector.connect(ServerName::try_from("localhost").unwrap(), stream).await {
                let _ = stream.write_all(b"ping").await;
                let mut buffer = [0u8; 4];
                let _ = stream.read(&mut buffer).await;
            }
        });
        let (stream, _) = listener.accept().await.unwrap();
        let outcome = tls.accept(stream).await;
        let principal = match outcome {
            Ok((mut stream, principal)) => {
                let mut buffer = [0u8; 4];
                stream.read_exact(&mut buffer).await.unwrap();
                stream.write_all(b"pong").await.unwrap();
                Ok(principal)
            }
            Err(error) => Err(error),
        };
        client.await.unwrap();
        principal
    }

    #[tokio::test]
    async fn required_client_authentication_refuses_a_client_without_a_certificate_or_with_an_unknown_one() {
        let tls = ListenerTls::load(&settings(TlsClientAuth::Required, Some("front-proxy-ca.crt"))).unwrap();
        let principal = handshake(&tls, Some(("front-proxy-client.crt", "front-proxy-client.key"))).await.unwrap();
        assert_eq!(principal.as_deref(), Some("User:CN=front-proxy-client"));
        assert_eq!(handshake(&tls, None).await.unwrap_err().reason(), "no_client_certificate");
        assert_eq!(handshake(&tls, Some(("impostor.crt", "impostor.key"))).await.unwrap_err().reason(), "bad_client_certificate");
    }

    #[tokio::test]
    async fn requested_client_authentication_admits_a_client_without_a_certificate_anonymously() {
        let tls = ListenerTls::load(&settings(TlsClientAuth::Requested, Some("front-proxy-ca.crt"))).unwrap();
        assert_eq!(handshake(&tls, None).await.unwrap(), None);
        let principal = handshake(&tls, Some(("front-proxy-client.crt", "front-proxy-client.key"))).await.unwrap();
        assert_eq!(principal.as_deref(), Some("User:CN=front-proxy-client"));
    }

    #[tokio::test]
    async fn a_replaced_client_ca_bundle_applies_from_the_next_handshake_and_an_unusable_one_keeps_the_previous() {
        let directory = tempfile::tempdir().unwrap();
        let bundle = directory.path().join("ca.crt");
        let replace = |from: &str| {
            let staged = directory.path().join(".ca.crt.new");
            std::fs::copy(fixture(from), &staged).unwrap();
            std::fs::rename(&staged, &bundle).unwrap();
        };
        replace("front-proxy-ca.crt");
        let mut with_bundle = settings(TlsClientAuth::Required, None);
        with_bundle.client_ca = Some(bundle.clone());
        let tls = ListenerTls::load_with_recheck(&with_bundle, Duration::ZERO).unwrap();
        let trusted = ("front-proxy-client.crt", "front-proxy-client.key");
        let other = ("impostor.crt", "impostor.key");
        assert!(handshake(&tls, Some(trusted)).await.is_ok());
        assert_eq!(handshake(&tls, Some(other)).await.unwrap_err().reason(), "bad_client_certificate");

        replace("other-ca.crt");
        assert_eq!(handshake(&tls, Some(other)).await.unwrap().as_deref(), Some("User:CN=front-proxy-client"));
        assert_eq!(handshake(&tls, Some(trusted)).await.unwrap_err().reason(), "bad_client_certificate");

        // Not PEM: refused, the other CA stays.
        replace("README.md");
        assert!(handshake(&tls, Some(other)).await.is_ok());
    }

    #[tokio::test]
    async fn a_plaintext_client_is_refused_at_its_first_byte_and_a_silent_one_at_the_timeout() {
        let tls = ListenerTls::load(&settings(TlsClientAuth::None, None)).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        // A Kafka request starts with its size prefix.
        let mut plaintext = TcpStream::connect(address).await.unwrap();
        plaintext.write_all(&[0, 0, 0, 20, 0, 18, 0, 3]).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        assert!(matches!(tls.accept(stream).await, Err(HandshakeError::NotTls { first_byte: 0 })));

        let _silent = TcpStream::connect(address).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let started = std::time::Instant::now();
        assert!(matches!(tls.accept(stream).await, Err(HandshakeError::Timeout)));
        assert!(started.elapsed() >= Duration::from_millis(450), "gave up after {:?}", started.elapsed());
    }
}
