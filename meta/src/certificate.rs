//! Serving certificates read from PEM files and re-read when the files change, shared by the
//! Kafka listener (`tls`) and the operator's metrics API. This module only reads files and builds
//! rustls types; it accepts no connection.
//!
//! # Guarantees
//! - A renewed certificate (cert-manager, or a Helm upgrade rewriting the Secret) is served from
//!   the next handshake after the files change; nothing restarts and open connections keep the
//!   certificate they were established with. A half-written pair (a certificate whose key has not
//!   arrived yet) is refused and the previous pair stays in use.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How often the files are checked for a change (at most once per handshake).
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("failed to read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} holds no PEM certificate: {reason}")]
    Certificate { path: PathBuf, reason: String },
    #[error("{path} holds no PEM private key (RSA PKCS#1, PKCS#8 or EC SEC1): {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("the key in {key} does not fit the certificate in {certificate}: {reason}")]
    Pair { certificate: PathBuf, key: PathBuf, reason: String },
    #[error("{path} holds no usable CA certificate: {reason}")]
    CertificateAuthority { path: PathBuf, reason: String },
    #[error("failed to build the TLS server configuration: {0}")]
    Config(rustls::Error),
}

/// The crypto provider of everything TLS in Floe (aws-lc-rs; kube and etcd-client use it too).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Every certificate in a PEM bundle, in order.
pub fn certificates_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|error| error.to_string())?;
    if certificates.is_empty() {
        return Err("no CERTIFICATE section".to_string());
    }
    Ok(certificates)
}

/// Reads a certificate chain and its private key (RSA PKCS#1, PKCS#8 or EC SEC1) and checks that
/// they belong together.
pub fn load_certified_key(certificate: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path| std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source });
    let chain =
        certificates_from_pem(&read(certificate)?).map_err(|reason| TlsError::Certificate { path: certificate.to_path_buf(), reason })?;
    let private_key =
        PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|error| TlsError::Key { path: key.to_path_buf(), reason: error.to_string() })?;
    CertifiedKey::from_der(chain, private_key, provider).map_err(|error| TlsError::Pair {
        certificate: certificate.to_path_buf(),
        key: key.to_path_buf(),
        reason: error.to_string(),
    })
}

/// What identifies one version of a file: a Secret volume swaps a symlink to a new directory on
/// update, so the inode changes even when the modification time does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp {
    modified: Option<SystemTime>,
    length: u64,
    inode: u64,
}

pub fn stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).ok()?;
    Some(FileStamp { modified: metadata.modified().ok(), length: metadata.len(), inode: metadata.ino() })
}

#[derive(Debug)]
struct Loaded {
    current: Arc<CertifiedKey>,
    /// Stamps of the files as last seen (loaded or refused), so a refused pair is retried only
    /// after another change.
    seen: (Option<FileStamp>, Option<FileStamp>),
    checked: Instant,
}

/// The serving certificate, re-read when its files change (checked at most every
/// `recheck_interval`, on a handshake).
#[derive(Debug)]
pub struct ReloadingCertificate {
    /// What the certificate serves, for the log ("Kafka listener", "metrics API").
    purpose: &'static str,
    certificate: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    recheck_interval: Duration,
    loaded: Mutex<Loaded>,
}

impl ReloadingCertificate {
    /// Loads the pair once; failing here fails start-up.
    pub fn load(
        purpose: &'static str,
        certificate: &Path,
        key: &Path,
        provider: Arc<CryptoProvider>,
        recheck_interval: Duration,
    ) -> Result<Self, TlsError> {
        let seen = (stamp(certificate), stamp(key));
        let current = Arc::new(load_certified_key(certificate, key, &provider)?);
        Ok(Self {
            purpose,
            certificate: certificate.to_path_buf(),
            key: key.to_path_buf(),
            provider,
            recheck_interval,
            loaded: Mutex::new(Loaded { current, seen, checked: Instant::now() }),
        })
    }

    /// The pair to serve now, re-read first if the files changed.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if loaded.checked.elapsed() < self.recheck_interval {
            return Arc::clone(&loaded.current);
        }
        loaded.checked = Instant::now();
        let seen = (stamp(&self.certificate), stamp(&self.key));
        if seen != loaded.seen {
            loaded.seen = seen;
            match load_certified_key(&self.certificate, &self.key, &self.provider) {
                Ok(pair) => {
                    tracing::info!(certificate = %self.certificate.display(), "reloaded the {} serving certificate", self.purpose);
                    loaded.current = Arc::new(pair);
                }
                Err(error) => {
                    tracing::warn!(%error, "the {} serving certificate changed but cannot be used; serving the previous one", self.purpose)
                }
            }
        }
        Arc::clone(&loaded.current)
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../agent/tests/fixtures/tls").join(name)
    }

    #[test]
    fn rsa_pkcs1_rsa_pkcs8_ec_sec1_and_ec_pkcs8_keys_all_load() {
        let provider = provider();
        for (certificate, key) in [
            ("serving-rsa.crt", "serving-rsa-pkcs1.key"),
            ("serving-rsa.crt", "serving-rsa-pkcs8.key"),
            ("serving-ec.crt", "serving-ec-sec1.key"),
            ("serving-ec.crt", "serving-ec-pkcs8.key"),
        ] {
            let pair = load_certified_key(&fixture(certificate), &fixture(key), &provider);
            assert!(pair.is_ok(), "{certificate} with {key}: {:?}", pair.err());
        }
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_naming_both_files() {
        let error = load_certified_key(&fixture("serving-rsa.crt"), &fixture("serving-ec-pkcs8.key"), &provider()).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, TlsError::Pair { .. }), "{message}");
        assert!(message.contains("serving-rsa.crt") && message.contains("serving-ec-pkcs8.key"), "{message}");
    }

    #[test]
    fn a_file_without_pem_is_refused_with_its_path() {
        let error = load_certified_key(&fixture("README.md"), &fixture("serving-ec-pkcs8.key"), &provider()).unwrap_err();
        assert!(matches!(error, TlsError::Certificate { .. }), "{error}");
        assert!(error.to_string().contains("README.md"), "{error}");
    }

    fn replace(directory: &Path, name: &str, from: &str) {
        // Write then rename, as a Secret volume update does (atomic for the reader).
        let staged = directory.join(format!(".{name}.new"));
        std::fs::copy(fixture(from), &staged).unwrap();
        std::fs::rename(&staged, directory.join(name)).unwrap();
    }

    #[test]
    fn a_renewed_certificate_is_served_from_the_next_check_and_a_half_written_pair_keeps_the_old_one() {
        let directory = tempfile::tempdir().unwrap();
        replace(directory.path(), "tls.crt", "serving-ec.crt");
        replace(directory.path(), "tls.key", "serving-ec-sec1.key");
        let certificate = ReloadingCertificate::load(
            "test",
            &directory.path().join("tls.crt"),
            &directory.path().join("tls.key"),
            provider(),
            Duration::ZERO,
        )
        .unwrap();
        let first = certificate.current();
        assert_eq!(first.cert[0].as_ref(), certificates_from_pem(&std::fs::read(fixture("serving-ec.crt")).unwrap()).unwrap()[0].as_ref());

        // The certificate arrives before its key: refused, the old pair stays.
        replace(directory.path(), "tls.crt", "serving-rsa.crt");
        assert!(Arc::ptr_eq(&first, &certificate.current()));
        // The key follows: the new pair is served.
        replace(directory.path(), "tls.key", "serving-rsa-pkcs1.key");
        let renewed = certificate.current();
        assert!(!Arc::ptr_eq(&first, &renewed));
        assert_eq!(
            renewed.cert[0].as_ref(),
            certificates_from_pem(&std::fs::read(fixture("serving-rsa.crt")).unwrap()).unwrap()[0].as_ref()
        );
        // Unchanged files: the same pair, not re-read.
        assert!(Arc::ptr_eq(&renewed, &certificate.current()));
    }

    #[test]
    fn files_are_not_checked_again_within_the_recheck_interval() {
        let directory = tempfile::tempdir().unwrap();
        replace(directory.path(), "tls.crt", "serving-ec.crt");
        replace(directory.path(), "tls.key", "serving-ec-pkcs8.key");
        let certificate = ReloadingCertificate::load(
            "test",
            &directory.path().join("tls.crt"),
            &directory.path().join("tls.key"),
            provider(),
            Duration::from_secs(3600),
        )
        .unwrap();
        let first = certificate.current();
        replace(directory.path(), "tls.crt", "serving-rsa.crt");
        replace(directory.path(), "tls.key", "serving-rsa-pkcs8.key");
        assert!(Arc::ptr_eq(&first, &certificate.current()));
    }
}
