//! A test certificate authority for suites that speak TLS (tls.rs, sasl.rs): a CA, server and
//! client certificates made at test time (rcgen), as PEM files in a temporary directory, and the
//! client settings that trust them.

use crate::kafka;
use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber};
use rdkafka::config::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::PathBuf;
use std::sync::Arc;

/// A test CA and the certificates it signs, as PEM files in a temporary directory.
pub struct Pki {
    directory: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    pub fn new() -> Result<Self> {
        let directory = tempfile::Builder::new().prefix("floe-e2e-tls-").tempdir()?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, "floe-e2e-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let certificate = params.self_signed(&key)?;
        std::fs::write(directory.path().join("ca.crt"), certificate.pem())?;
        std::fs::write(directory.path().join("ca.key"), key.serialize_pem())?;
        Ok(Self { directory, issuer: Issuer::new(params, key) })
    }

    pub fn directory(&self) -> &std::path::Path {
        self.directory.path()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.directory.path().join(name)
    }

    pub fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// Signs a certificate and writes `<name>.key` (PKCS#8), then `<name>.crt`, each by rename (as
    /// a Secret volume update replaces files), and `<name>.pem` (key and certificate, a Java PEM
    /// keystore). A server certificate names localhost and 127.0.0.1.
    pub fn issue(&self, name: &str, serial: &[u8], subject: &[(DnType, &str)], server: bool) -> Result<()> {
        let names: &[&str] = if server { &["localhost", "127.0.0.1"] } else { &[] };
        self.issue_for(name, serial, subject, names, server)
    }

    /// [`Pki::issue`] naming `names` (DNS names, or IP addresses) in the certificate.
    pub fn issue_for(&self, name: &str, serial: &[u8], subject: &[(DnType, &str)], names: &[&str], server: bool) -> Result<()> {
        let key = KeyPair::generate()?;
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = CertificateParams::new(names)?;
        params.serial_number = Some(SerialNumber::from(serial.to_vec()));
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (kind, value) in subject {
            params.distinguished_name.push(kind.clone(), *value);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![if server { ExtendedKeyUsagePurpose::ServerAuth } else { ExtendedKeyUsagePurpose::ClientAuth }];
        let certificate = params.signed_by(&key, &self.issuer)?;
        for (file, contents) in [(format!("{name}.key"), key.serialize_pem()), (format!("{name}.crt"), certificate.pem())] {
            let staged = self.path(&format!(".{file}.new"));
            std::fs::write(&staged, contents)?;
            std::fs::rename(&staged, self.path(&file))?;
        }
        std::fs::write(self.path(&format!("{name}.pem")), key.serialize_pem() + &certificate.pem())?;
        Ok(())
    }

    /// librdkafka over TLS trusting the CA, with the client certificate when `certificate`.
    pub fn rdkafka(&self, bootstrap: &str, certificate: bool) -> ClientConfig {
        let mut config = kafka::config(bootstrap);
        config.set("security.protocol", "ssl").set("ssl.ca.location", self.arg("ca.crt"));
        if certificate {
            config.set("ssl.certificate.location", self.arg("client.crt")).set("ssl.key.location", self.arg("client.key"));
        }
        config
    }

    /// A server certificate for localhost and 127.0.0.1, as `server.crt` and `server.key`.
    pub fn issue_server(&self) -> Result<()> {
        self.issue("server", &[0x10, 0x01], &[(DnType::CommonName, "localhost")], true)
    }

    /// The Java client's TLS properties trusting the CA (PEM truststore), one per line.
    pub fn java_truststore_lines(&self) -> String {
        format!("ssl.truststore.type=PEM\nssl.truststore.location={}\n", self.arg("ca.crt"))
    }

    /// The Java client's properties: PEM truststore (the CA) and PEM keystore (the client's key
    /// and certificate).
    pub fn java_properties(&self) -> Result<PathBuf> {
        let path = self.path("client.properties");
        std::fs::write(
            &path,
            format!(
                "security.protocol=SSL\nssl.truststore.type=PEM\nssl.truststore.location={}\nssl.keystore.type=PEM\nssl.keystore.location={}\n",
                self.arg("ca.crt"),
                self.arg("client.pem")
            ),
        )?;
        Ok(path)
    }
}

/// A TLS client connection made with rustls, trusting the CA in `ca_file`.
pub async fn connect_tls(ca_file: &std::path::Path, bootstrap: &str) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(ca_file)?)?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let stream = tokio::net::TcpStream::connect(bootstrap).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    Ok(connector.connect(ServerName::try_from("localhost")?, stream).await?)
}

/// The serial number of the certificate the server presented.
pub fn served_serial(stream: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> Result<Vec<u8>> {
    let leaf = stream.get_ref().1.peer_certificates().and_then(|chain| chain.first()).context("no server certificate")?;
    let (_, certificate) = x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|error| anyhow::anyhow!("{error}"))?;
    Ok(certificate.raw_serial().to_vec())
}
