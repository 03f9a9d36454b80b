//! SASL/OAUTHBEARER (RFC 7628, Kafka's KIP-255 and KIP-768): the client sends a JWT issued by the
//! organisation's identity provider; the agent checks its signature against the provider's JSON
//! Web Key Set and its claims (expiry, not-before, issuer, audience), and the connection's
//! principal becomes `User:<claim>` (`sub` unless `--sasl-oauthbearer-principal-claim` says
//! otherwise), as Kafka's `OAuthBearerValidatorCallbackHandler` does.
//!
//! # Guarantees
//! - Only asymmetric signatures are accepted (RS*, PS*, ES*, EdDSA), by a key of the JWKS whose
//!   `kid` the token names (or the only key, when the set has one and the token names none); a
//!   token signed with HS* or `none` is refused, so a leaked JWKS never lets anyone mint tokens.
//! - `exp` is required; `exp` and `nbf` are checked with `--sasl-oauthbearer-clock-skew` of slack;
//!   `iss` and `aud` are checked when configured.
//! - The key set is read at start-up and re-read every `--sasl-oauthbearer-jwks-refresh`, and at
//!   most every 10 s when a token names a key the agent does not know (a rotated provider key is
//!   picked up without a restart); a failed refresh keeps the keys already known.

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Where the identity provider's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// `https://` (or `http://`) URL, Kafka's `sasl.oauthbearer.jwks.endpoint.url`.
    Url(String),
    /// `file://` path: a JWKS kept on disk (on Kubernetes, a mounted ConfigMap).
    File(PathBuf),
}

impl std::str::FromStr for JwksSource {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, String> {
        if let Some(path) = value.strip_prefix("file://") {
            return Ok(Self::File(PathBuf::from(path)));
        }
        if value.starts_with("https://") || value.starts_with("http://") {
            return Ok(Self::Url(value.to_string()));
        }
        Err(format!("--sasl-oauthbearer-jwks-url {value:?} must start with https://, http:// or file://, e.g. https://idp.example.com/.well-known/jwks.json"))
    }
}

/// `--sasl-oauthbearer-*`.
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    pub jwks: JwksSource,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud` (one of the token's), when set.
    pub audience: Option<String>,
    /// The claim whose value becomes the principal's name.
    pub principal_claim: String,
    pub refresh_interval: Duration,
    pub clock_skew: Duration,
}

/// The shortest time between two refreshes caused by an unknown key id.
const UNKNOWN_KEY_REFRESH: Duration = Duration::from_secs(10);

/// Checks OAUTHBEARER tokens; shared by every connection of the listener.
pub struct OAuthValidator {
    settings: OAuthSettings,
    keys: RwLock<JwkSet>,
    last_refresh: Mutex<Option<Instant>>,
    http: reqwest::Client,
}

impl std::fmt::Debug for OAuthValidator {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("OAuthValidator").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// Why a token was refused; the text goes back to the client in SaslAuthenticate's message.
fn refused(reason: impl std::fmt::Display) -> String {
    format!("Authentication failed: invalid OAUTHBEARER token: {reason}")
}

impl OAuthValidator {
    /// A validator with no keys yet; [`Self::refresh`] loads them.
    pub fn new(settings: OAuthSettings) -> Arc<Self> {
        Arc::new(Self {
            settings,
            keys: RwLock::new(JwkSet { keys: Vec::new() }),
            last_refresh: Mutex::new(None),
            http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("an HTTP client with default settings"),
        })
    }

    /// Whether the keys come from a file (a missing file is a configuration error).
    pub fn jwks_is_file(&self) -> bool {
        matches!(self.settings.jwks, JwksSource::File(_))
    }

    /// Reads the key set now. On failure the keys already known stay in use.
    pub async fn refresh(&self) -> Result<usize, String> {
        *self.last_refresh.lock().expect("not poisoned") = Some(Instant::now());
        let text = match &self.settings.jwks {
            JwksSource::File(path) => {
                tokio::fs::read_to_string(path).await.map_err(|error| format!("reading {}: {error}", path.display()))?
            }
            JwksSource::Url(url) => {
                let response = self.http.get(url).send().await.map_err(|error| format!("fetching {url}: {error}"))?;
                let status = response.status();
                if !status.is_success() {
                    return Err(format!("fetching {url}: HTTP {status}"));
                }
                response.text().await.map_err(|error| format!("reading {url}: {error}"))?
            }
        };
        let set: JwkSet = serde_json::from_str(&text).map_err(|error| format!("the JWKS is not a JSON Web Key Set: {error}"))?;
        let count = set.keys.len();
        *self.keys.write().expect("not poisoned") = set;
        Ok(count)
    }

    /// Re-reads the key set every refresh interval until the process ends.
    pub fn spawn_refresh(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let validator = Arc::downgrade(self);
        let interval = self.settings.refresh_interval;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(validator) = validator.upgrade() else { return };
                if let Err(error) = validator.refresh().await {
                    tracing::warn!(%error, "could not refresh the OAUTHBEARER key set; keeping the keys already known");
                }
            }
        })
    }

    /// The key for a token's `kid`, refreshing the set (rate-limited) when it is unknown.
    async fn key(&self, kid: Option<&str>) -> Result<Jwk, String> {
        if let Some(key) = self.find(kid) {
            return Ok(key);
        }
        let recently = self.last_refresh.lock().expect("not poisoned").is_some_and(|at| at.elapsed() < UNKNOWN_KEY_REFRESH);
        if !recently {
            if let Err(error) = self.refresh().await {
                tracing::warn!(%error, "could not refresh the OAUTHBEARER key set for an unknown key id");
            }
        }
        self.find(kid).ok_or_else(|| refused(format!("no key {} in the identity provider's key set", kid.unwrap_or("(no kid)"))))
    }

    fn find(&self, kid: Option<&str>) -> Option<Jwk> {
        let keys = self.keys.read().expect("not poisoned");
        match kid {
            Some(kid) => keys.find(kid).cloned(),
            None if keys.keys.len() == 1 => keys.keys.first().cloned(),
            None => None,
        }
    }

    /// Checks a token and returns the principal's name (the principal claim's value) and when the
    /// token expires.
    pub async fn validate(&self, token: &str) -> Result<(String, Option<std::time::SystemTime>), String> {
        let header = jsonwebtoken::decode_header(token).map_err(refused)?;
        if !is_asymmetric(header.alg) {
            return Err(refused(format!(
                "algorithm {:?} is not accepted; sign tokens with RS256, ES256 or another public-key algorithm",
                header.alg
            )));
        }
        let jwk = self.key(header.kid.as_deref()).await?;
        let key = DecodingKey::from_jwk(&jwk).map_err(refused)?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.settings.clock_skew.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        match &self.settings.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = &self.settings.issuer {
            validation.set_issuer(&[issuer]);
        }
        let claims = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &key, &validation).map_err(refused)?.claims;
        let expiry =
            claims.get("exp").and_then(serde_json::Value::as_u64).map(|seconds| std::time::UNIX_EPOCH + Duration::from_secs(seconds));
        match claims.get(&self.settings.principal_claim) {
            Some(serde_json::Value::String(name)) if !name.is_empty() => Ok((name.clone(), expiry)),
            _ => Err(refused(format!("the token has no {:?} claim to name the principal", self.settings.principal_claim))),
        }
    }
}

fn is_asymmetric(algorithm: Algorithm) -> bool {
    !matches!(algorithm, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// The token in a client's first message (RFC 7628 §3.1): a GS2 header (`n,,` or
/// `n,a=<authzid>,`), then `\x01`-separated key=value pairs, one of them `auth=Bearer <token>`,
/// ended by `\x01\x01`.
pub fn bearer_token(message: &[u8]) -> Result<&str, String> {
    let message = std::str::from_utf8(message).map_err(|_| refused("the SASL message is not UTF-8"))?;
    let Some((gs2, rest)) = message.split_once('\u{1}') else {
        return Err(refused("the SASL message has no GS2 header (expected n,,\\x01auth=Bearer <token>\\x01\\x01)"));
    };
    if !gs2.starts_with("n,") {
        return Err(refused("channel binding is not supported (the GS2 header must start with n,)"));
    }
    rest.split('\u{1}')
        .find_map(|pair| pair.strip_prefix("auth="))
        .and_then(|auth| auth.strip_prefix("Bearer ").or_else(|| auth.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| refused("the SASL message has no auth=Bearer <token>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_found_in_an_rfc_7628_message_and_channel_binding_is_refused() {
        assert_eq!(bearer_token(b"n,,\x01auth=Bearer abc.def.ghi\x01\x01").unwrap(), "abc.def.ghi");
        assert_eq!(bearer_token(b"n,a=alice,\x01host=x\x01auth=Bearer t.o.k\x01\x01").unwrap(), "t.o.k");
        assert!(bearer_token(b"p=tls-unique,,\x01auth=Bearer t\x01\x01").unwrap_err().contains("channel binding"));
        assert!(bearer_token(b"n,,\x01\x01").unwrap_err().contains("auth=Bearer"));
        assert!(bearer_token(b"no separators").is_err());
    }

    #[test]
    fn jwks_sources_need_a_scheme_and_say_so() {
        assert_eq!("file:///etc/jwks.json".parse::<JwksSource>(), Ok(JwksSource::File(PathBuf::from("/etc/jwks.json"))));
        assert!(matches!("https://idp/jwks".parse::<JwksSource>(), Ok(JwksSource::Url(_))));
        assert!("idp/jwks".parse::<JwksSource>().unwrap_err().contains("https://"));
    }
}
