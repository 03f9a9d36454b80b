//! How the `floe` commands reach a secured listener: TLS (the agents' CA, optionally a client
//! certificate for mutual TLS) and SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), as a Kafka client's
//! `security.protocol`, `ssl.*` and `sasl.*` settings would. The environment names carry
//! `FLOE_CLIENT_` so that the agent's own `FLOE_TLS_*` (its listener's certificate) never turns
//! into the commands' client certificate inside an agent's pod.

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use clap::{Args, ValueEnum};
use floe_meta::scram::ScramMechanism;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, Default, Args)]
pub struct SecurityArgs {
    /// Connect with TLS, trusting the CA certificates in this PEM file (the CA that signed the
    /// agents' certificates).
    #[arg(long, env = "FLOE_CLIENT_TLS_CA_FILE", global = true)]
    pub tls_ca_file: Option<PathBuf>,
    /// A client certificate (PEM) for listeners that require one (mutual TLS); with
    /// --tls-key-file.
    #[arg(long, env = "FLOE_CLIENT_TLS_CERT_FILE", global = true, requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "FLOE_CLIENT_TLS_KEY_FILE", global = true, requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// The SASL mechanism to authenticate with; with --sasl-username and --sasl-password.
    #[arg(long, env = "FLOE_CLIENT_SASL_MECHANISM", global = true, value_enum, ignore_case = true)]
    pub sasl_mechanism: Option<SaslMechanism>,
    #[arg(long, env = "FLOE_CLIENT_SASL_USERNAME", global = true)]
    pub sasl_username: Option<String>,
    /// Prefer the environment variable: a password on the command line is visible to every user
    /// of the machine (ps).
    #[arg(long, env = "FLOE_CLIENT_SASL_PASSWORD", global = true, hide_env_values = true)]
    pub sasl_password: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SaslMechanism {
    #[value(name = "PLAIN")]
    Plain,
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// What every connection of a command does after its TCP connect.
#[derive(Clone, Default)]
pub struct Security {
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub sasl: Option<Credentials>,
}

#[derive(Clone)]
pub struct Credentials {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: String,
}

impl SecurityArgs {
    /// The settings, checked: every file read now, a half-given SASL login refused with what is
    /// missing.
    pub fn security(&self) -> Result<Security> {
        let tls = match &self.tls_ca_file {
            Some(ca) => Some(Arc::new(tls_config(ca, self.tls_cert_file.as_deref().zip(self.tls_key_file.as_deref()))?)),
            None if self.tls_cert_file.is_some() => {
                bail!("--tls-cert-file needs --tls-ca-file (the CA that signed the agents' certificates)")
            }
            None => None,
        };
        let sasl = match (self.sasl_mechanism, &self.sasl_username, &self.sasl_password) {
            (None, None, None) => None,
            (Some(mechanism), Some(username), Some(password)) => {
                Some(Credentials { mechanism, username: username.clone(), password: password.clone() })
            }
            (None, _, _) => bail!("--sasl-username and --sasl-password need --sasl-mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"),
            (Some(mechanism), None, _) => bail!("--sasl-mechanism {} needs --sasl-username", mechanism.name()),
            (Some(mechanism), _, None) => {
                bail!("--sasl-mechanism {} needs a password: set FLOE_CLIENT_SASL_PASSWORD (or --sasl-password)", mechanism.name())
            }
        };
        Ok(Security { tls, sasl })
    }
}

fn tls_config(ca_file: &Path, client: Option<(&Path, &Path)>) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let certificates = CertificateDer::pem_file_iter(ca_file)
        .with_context(|| format!("cannot read --tls-ca-file {}", ca_file.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("--tls-ca-file {} is not a PEM certificate file", ca_file.display()))?;
    if certificates.is_empty() {
        bail!("--tls-ca-file {} holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)", ca_file.display());
    }
    for certificate in certificates {
        roots.add(certificate).with_context(|| format!("--tls-ca-file {}: a certificate that is not a CA", ca_file.display()))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("no TLS protocol version available")?
        .with_root_certificates(roots);
    Ok(match client {
        Some((certificate_file, key_file)) => {
            let chain = CertificateDer::pem_file_iter(certificate_file)
                .with_context(|| format!("cannot read --tls-cert-file {}", certificate_file.display()))?
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("--tls-cert-file {} is not a PEM certificate file", certificate_file.display()))?;
            let key = PrivateKeyDer::from_pem_file(key_file)
                .with_context(|| format!("cannot read a PEM private key from --tls-key-file {}", key_file.display()))?;
            builder.with_client_auth_cert(chain, key).context("the client certificate and key do not go together")?
        }
        None => builder.with_no_client_auth(),
    })
}

/// The name the server's certificate must carry: the host part of `address` (host:port).
pub fn server_name(address: &str) -> Result<ServerName<'static>> {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host).trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).with_context(|| format!("{host:?} is not a host name or IP address for TLS"))
}

/// PLAIN's single message (RFC 4616): no authorization id, the user, the password.
pub fn plain_message(credentials: &Credentials) -> Vec<u8> {
    format!("\0{}\0{}", credentials.username, credentials.password).into_bytes()
}

/// The client side of a SCRAM exchange (RFC 5802) as Kafka runs it, without channel binding.
pub struct ScramClient {
    mechanism: ScramMechanism,
    password: String,
    client_first_bare: String,
    nonce: String,
}

impl ScramClient {
    /// Starts an exchange; returns the client-first message.
    pub fn start(credentials: &Credentials) -> (Self, Vec<u8>) {
        let mechanism = if credentials.mechanism == SaslMechanism::ScramSha256 { ScramMechanism::Sha256 } else { ScramMechanism::Sha512 };
        let random: [u8; 24] = rand_bytes();
        let nonce = BASE64.encode(random);
        let user = credentials.username.replace('=', "=3D").replace(',', "=2C");
        let client_first_bare = format!("n={user},r={nonce}");
        let first = format!("n,,{client_first_bare}").into_bytes();
        (Self { mechanism, password: credentials.password.clone(), client_first_bare, nonce }, first)
    }

    /// Answers the server-first message with the client-final one; returns it and the signature
    /// the server must prove in its final message.
    pub fn finish(&self, server_first: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
        let server_first = std::str::from_utf8(server_first).context("the server's SCRAM message is not UTF-8")?;
        let field = |name: &str| server_first.split(',').find_map(|part| part.strip_prefix(name));
        let nonce = field("r=").context("the server's SCRAM message has no nonce")?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            bail!("the server's SCRAM nonce does not extend ours");
        }
        let salt = BASE64.decode(field("s=").context("the server's SCRAM message has no salt")?).context("the SCRAM salt is not base64")?;
        let iterations: u32 =
            field("i=").context("the server's SCRAM message has no iteration count")?.parse().context("the SCRAM iteration count")?;
        if !(4096..=1_000_000).contains(&iterations) {
            bail!("the server asked for {iterations} SCRAM iterations (expected 4,096 to 1,000,000)");
        }
        let salted = self.mechanism.salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = self.mechanism.hmac(&salted, b"Client Key");
        let stored_key = self.mechanism.hash(&client_key);
        let without_proof = format!("c={},r={nonce}", BASE64.encode("n,,"));
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = self.mechanism.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(key, signature)| key ^ signature).collect();
        let server_key = self.mechanism.hmac(&salted, b"Server Key");
        let server_signature = self.mechanism.hmac(&server_key, auth_message.as_bytes());
        Ok((format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes(), server_signature))
    }

    /// Checks the server-final message: the server knew the password too.
    pub fn verify(server_final: &[u8], expected_signature: &[u8]) -> Result<()> {
        let server_final = std::str::from_utf8(server_final).context("the server's final SCRAM message is not UTF-8")?;
        if let Some(error) = server_final.strip_prefix("e=") {
            bail!("the server refused the login: {error}");
        }
        let signature = server_final.strip_prefix("v=").context("the server's final SCRAM message has no signature")?;
        if BASE64.decode(signature).ok().as_deref() != Some(expected_signature) {
            bail!("the server's SCRAM signature is wrong: it does not know this user's password (a server in the middle?)");
        }
        Ok(())
    }
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes).expect("the system random generator works");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials(mechanism: SaslMechanism) -> Credentials {
        Credentials { mechanism, username: "alice,=x".into(), password: "secret".into() }
    }

    #[test]
    fn a_scram_exchange_completes_against_the_agents_server_side() {
        use crate::sasl::scram::ScramExchange;
        use floe_meta::scram::ScramCredential;
        for (mechanism, server) in
            [(SaslMechanism::ScramSha256, ScramMechanism::Sha256), (SaslMechanism::ScramSha512, ScramMechanism::Sha512)]
        {
            let stored = ScramCredential::from_password(server, "secret", 4096);
            let (client, first) = ScramClient::start(&credentials(mechanism));
            assert!(String::from_utf8(first.clone()).unwrap().starts_with("n,,n=alice=2C=3Dx,r="));
            let (exchange, server_first) =
                ScramExchange::start(server, &first, |user| (user == "alice,=x").then(|| stored.clone())).unwrap();
            let (client_final, expected) = client.finish(&server_first).unwrap();
            let (user, server_final) = exchange.finish(&client_final).unwrap();
            assert_eq!(user, "alice,=x");
            ScramClient::verify(&server_final, &expected).unwrap();
            assert!(ScramClient::verify(b"v=AAAA", &expected).is_err(), "a wrong server signature is refused");
        }
    }

    #[test]
    fn a_server_nonce_that_does_not_extend_ours_or_few_iterations_are_refused() {
        let (client, _) = ScramClient::start(&credentials(SaslMechanism::ScramSha512));
        assert!(client.finish(b"r=someone-else,s=c2FsdA==,i=4096").is_err());
        let ours = format!("r={}x,s=c2FsdA==,i=1", client.nonce);
        assert!(client.finish(ours.as_bytes()).unwrap_err().to_string().contains("iterations"));
    }

    #[test]
    fn a_half_given_login_names_what_is_missing() {
        let args = |mechanism, username: Option<&str>, password: Option<&str>| SecurityArgs {
            sasl_mechanism: mechanism,
            sasl_username: username.map(str::to_string),
            sasl_password: password.map(str::to_string),
            ..SecurityArgs::default()
        };
        assert!(args(None, None, None).security().unwrap().sasl.is_none());
        let missing = |args: SecurityArgs| args.security().err().unwrap().to_string();
        assert!(missing(args(Some(SaslMechanism::Plain), Some("a"), None)).contains("FLOE_CLIENT_SASL_PASSWORD"));
        assert!(missing(args(Some(SaslMechanism::Plain), None, Some("p"))).contains("--sasl-username"));
        assert!(missing(args(None, Some("a"), Some("p"))).contains("--sasl-mechanism"));
        assert_eq!(plain_message(&credentials(SaslMechanism::Plain)), b"\0alice,=x\0secret");
    }

    #[test]
    fn the_server_name_is_the_host_of_the_address() {
        assert_eq!(server_name("agent-1.floe.svc:9093").unwrap(), ServerName::try_from("agent-1.floe.svc").unwrap());
        assert_eq!(server_name("127.0.0.1:9093").unwrap(), ServerName::try_from("127.0.0.1").unwrap());
        assert_eq!(server_name("[::1]:9093").unwrap(), ServerName::try_from("::1").unwrap());
    }
}
