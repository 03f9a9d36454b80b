//! SASL on the Kafka listener (`--sasl-mechanisms`): PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 and
//! OAUTHBEARER (JWTs checked against an identity provider's keys, `oauthbearer`), as Kafka runs
//! them (SaslHandshake v1, then SaslAuthenticate round trips).
//!
//! # Guarantees
//! - With SASL on, a connection is answered nothing but ApiVersions, SaslHandshake and
//!   SaslAuthenticate until it authenticates; any other request closes it (Kafka does the same),
//!   and its frames are capped at [`PRE_AUTHENTICATION_MAX_BYTES`] (Kafka's
//!   `sasl.server.max.receive.size`), refused from the length prefix before anything is allocated.
//! - Credentials are the journal's (`floe_meta::scram`): only salted keys, the same on every
//!   agent of the virtual cluster as soon as the record is applied. PLAIN checks a password
//!   against the user's SCRAM credential, so there is one list of users and no stored password.
//! - A failed authentication answers SASL_AUTHENTICATION_FAILED with Kafka's message and closes
//!   the connection; an unknown user fails exactly like a wrong password.
//! - After authenticating, the connection's principal is `User:<name>`.
//!
//! Not yet: re-authentication (KIP-368: sessions never expire, `session_lifetime_ms` is 0, so an
//! OAUTHBEARER connection outlives its token's expiry).

pub mod oauthbearer;
pub mod scram;

use crate::handlers::str_bytes;
use bytes::Bytes;
use floe_meta::scram::{ScramCredential, ScramMechanism, MIN_ITERATIONS};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse};
use scram::ScramExchange;
use std::collections::BTreeMap;

/// Kafka's `sasl.server.max.receive.size` default: the largest frame before authentication.
pub const PRE_AUTHENTICATION_MAX_BYTES: usize = 512 * 1024;

/// A SASL mechanism the listener can offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Scram(ScramMechanism),
    OAuthBearer,
}

impl Mechanism {
    pub const ALL: [Self; 4] = [Self::Plain, Self::Scram(ScramMechanism::Sha256), Self::Scram(ScramMechanism::Sha512), Self::OAuthBearer];

    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::Scram(mechanism) => mechanism.name(),
            Self::OAuthBearer => "OAUTHBEARER",
        }
    }
}

impl std::str::FromStr for Mechanism {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, String> {
        let wanted = value.trim().to_ascii_uppercase();
        Self::ALL.into_iter().find(|mechanism| mechanism.name() == wanted).ok_or_else(|| {
            format!("unknown SASL mechanism {value:?}; the mechanisms are PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 and OAUTHBEARER, e.g. --sasl-mechanisms SCRAM-SHA-512,PLAIN")
        })
    }
}

/// A user the agent makes sure exists at start-up (`--sasl-bootstrap-user`), so a new virtual
/// cluster has someone who can create the other users.
#[derive(Clone)]
pub struct BootstrapUser {
    pub name: String,
    pub password: String,
}

impl std::fmt::Debug for BootstrapUser {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("BootstrapUser").field("name", &self.name).finish_non_exhaustive()
    }
}

impl BootstrapUser {
    /// The credential records that make `password` valid for this user under every SCRAM
    /// mechanism, skipping those whose stored credential already matches it (so a restart writes
    /// nothing, and a changed password file takes effect at the next start).
    /// `stored` is the user's current credentials.
    pub fn credentials_to_write(&self, stored: &BTreeMap<ScramMechanism, ScramCredential>) -> Vec<ScramCredential> {
        ScramMechanism::ALL
            .into_iter()
            .filter(|mechanism| !stored.get(mechanism).is_some_and(|stored| stored.matches_password(&self.password)))
            .map(|mechanism| ScramCredential::from_password(mechanism, &self.password, MIN_ITERATIONS))
            .collect()
    }
}

/// The listener's SASL settings.
#[derive(Debug, Clone)]
pub struct SaslSettings {
    /// Offered in SaslHandshake, in this order.
    pub mechanisms: Vec<Mechanism>,
    pub bootstrap_user: Option<BootstrapUser>,
    /// How long a failed authentication's answer is held before the connection closes (Kafka's
    /// `connection.failed.authentication.delay.ms`): a password guesser pays it per guess, on top
    /// of a new connection (and TLS handshake) for each.
    pub failed_authentication_delay: std::time::Duration,
    /// The token checker, when OAUTHBEARER is offered.
    pub oauth: Option<std::sync::Arc<oauthbearer::OAuthValidator>>,
    /// Kafka's `connections.max.reauth.ms` (KIP-368): zero turns re-authentication off; otherwise
    /// a session lasts at most this long (less when its credential expires sooner), the client is
    /// told so and re-authenticates on the same connection, and a connection that does not is
    /// closed at its next request.
    pub max_reauth: std::time::Duration,
}

/// The session lifetime a successful authentication announces (KIP-368): `max_reauth` capped by
/// the credential's expiry; `None` when re-authentication is off.
pub fn session_lifetime(
    max_reauth: std::time::Duration,
    credential_expiry: Option<std::time::SystemTime>,
    now: std::time::SystemTime,
) -> Option<std::time::Duration> {
    if max_reauth.is_zero() {
        return None;
    }
    let until_expiry = credential_expiry.map(|expiry| expiry.duration_since(now).unwrap_or_default());
    // An already expired credential still gets a moment, so the client learns to re-authenticate
    // instead of being cut off in the middle of its first request.
    Some(until_expiry.map_or(max_reauth, |left| left.min(max_reauth)).max(std::time::Duration::from_millis(1)))
}

/// One connection's authentication, from its first byte to `Authenticated`.
pub enum Session {
    /// Nothing but ApiVersions and SaslHandshake so far.
    AwaitingHandshake,
    /// SaslHandshake chose a mechanism; SaslAuthenticate comes next.
    Handshaken(Mechanism),
    /// SCRAM's first round trip is done.
    ScramPending(Box<ScramExchange>),
    Authenticated,
}

/// What the connection does after a SaslAuthenticate.
pub enum Verdict {
    /// Send the response and wait for the next round trip.
    Continue,
    /// Send the response; the connection is authenticated as `User:<user>`, with a credential
    /// that expires at `credential_expiry` (an OAUTHBEARER token's `exp`), if it does.
    Authenticated { user: String, credential_expiry: Option<std::time::SystemTime> },
    /// Send the response and close the connection.
    Failed,
}

impl Session {
    pub fn is_authenticated(&self) -> bool {
        matches!(self, Self::Authenticated)
    }

    /// SaslHandshake: chooses the mechanism if the listener offers it. Version 0 is refused with
    /// UNSUPPORTED_VERSION: after it the client would send bare SASL tokens outside Kafka's
    /// framing, which no client since Kafka 1.0 does (they use v1 and SaslAuthenticate).
    pub fn handshake(&mut self, settings: &SaslSettings, version: i16, request: &SaslHandshakeRequest) -> SaslHandshakeResponse {
        let offered = settings.mechanisms.iter().map(|mechanism| str_bytes(mechanism.name())).collect();
        let response = SaslHandshakeResponse::default().with_mechanisms(offered);
        if version == 0 {
            return response.with_error_code(ResponseError::UnsupportedVersion.code());
        }
        if !matches!(self, Self::AwaitingHandshake) {
            return response.with_error_code(ResponseError::IllegalSaslState.code());
        }
        match settings.mechanisms.iter().find(|mechanism| mechanism.name() == request.mechanism.as_str()) {
            Some(mechanism) => {
                *self = Self::Handshaken(*mechanism);
                response
            }
            None => response.with_error_code(ResponseError::UnsupportedSaslMechanism.code()),
        }
    }

    /// SaslAuthenticate: one step of the chosen mechanism. `lookup` reads a user's credential
    /// from the local replica. PLAIN's password check (PBKDF2, a few milliseconds) runs on the
    /// blocking pool so it does not stall other connections.
    pub async fn authenticate(
        &mut self,
        request: &SaslAuthenticateRequest,
        oauth: Option<&oauthbearer::OAuthValidator>,
        lookup: impl Fn(&str, ScramMechanism) -> Option<ScramCredential> + Send + 'static,
    ) -> (SaslAuthenticateResponse, Verdict, Option<Mechanism>) {
        if matches!(self, Self::AwaitingHandshake | Self::Authenticated) {
            let response = SaslAuthenticateResponse::default()
                .with_error_code(ResponseError::IllegalSaslState.code())
                .with_error_message(Some(str_bytes("SaslAuthenticate before SaslHandshake, or after authentication")));
            return (response, Verdict::Failed, None);
        }
        let (outcome, mechanism) = match std::mem::replace(self, Self::AwaitingHandshake) {
            Self::Handshaken(Mechanism::Plain) => {
                (plain(request.auth_bytes.clone(), lookup).await.map(|(user, answer)| (user, answer, None)), Some(Mechanism::Plain))
            }
            Self::Handshaken(Mechanism::OAuthBearer) => {
                let outcome = match (oauth, oauthbearer::bearer_token(&request.auth_bytes)) {
                    (Some(validator), Ok(token)) => validator.validate(token).await.map(|(user, expiry)| (user, Vec::new(), expiry)),
                    (None, _) => Err("OAUTHBEARER is not configured on this listener".to_string()),
                    (_, Err(error)) => Err(error),
                };
                (outcome, Some(Mechanism::OAuthBearer))
            }
            Self::Handshaken(Mechanism::Scram(mechanism)) => {
                match ScramExchange::start(mechanism, &request.auth_bytes, |user| lookup(user, mechanism)) {
                    Ok((exchange, server_first)) => {
                        *self = Self::ScramPending(Box::new(exchange));
                        return (success(server_first), Verdict::Continue, None);
                    }
                    Err(error) => (Err(error.to_string()), Some(Mechanism::Scram(mechanism))),
                }
            }
            Self::ScramPending(exchange) => {
                let mechanism = Some(Mechanism::Scram(exchange.mechanism()));
                (
                    exchange.finish(&request.auth_bytes).map(|(user, answer)| (user, answer, None)).map_err(|error| error.to_string()),
                    mechanism,
                )
            }
            Self::AwaitingHandshake | Self::Authenticated => unreachable!("answered above"),
        };
        match outcome {
            Ok((user, server_final, credential_expiry)) => {
                *self = Self::Authenticated;
                (success(server_final), Verdict::Authenticated { user, credential_expiry }, mechanism)
            }
            Err(message) => {
                let response = SaslAuthenticateResponse::default()
                    .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                    .with_error_message(Some(str_bytes(message)));
                (response, Verdict::Failed, mechanism)
            }
        }
    }
}

fn success(auth_bytes: Vec<u8>) -> SaslAuthenticateResponse {
    SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(auth_bytes))
}

/// PLAIN (RFC 4616): `authzid NUL authcid NUL password`, checked against the user's SCRAM
/// credential (SHA-512 if the user has one, else SHA-256).
async fn plain(
    message: Bytes,
    lookup: impl Fn(&str, ScramMechanism) -> Option<ScramCredential> + Send + 'static,
) -> Result<(String, Vec<u8>), String> {
    const FAILED: &str = "Authentication failed: Invalid username or password";
    let fields: Vec<&[u8]> = message.split(|byte| *byte == 0).collect();
    let [authorization_id, user, password] = fields.as_slice() else {
        return Err("Invalid SASL/PLAIN message: expected authorization id, user name and password separated by NUL".to_string());
    };
    let (Ok(authorization_id), Ok(user), Ok(password)) =
        (std::str::from_utf8(authorization_id), std::str::from_utf8(user), std::str::from_utf8(password))
    else {
        return Err("Invalid SASL/PLAIN message: not UTF-8".to_string());
    };
    if user.is_empty() || password.is_empty() {
        return Err("Invalid SASL/PLAIN message: empty user name or password".to_string());
    }
    if !authorization_id.is_empty() && authorization_id != user {
        return Err("Authentication failed: an authorization id other than the user name is not supported".to_string());
    }
    let credential = lookup(user, ScramMechanism::Sha512).or_else(|| lookup(user, ScramMechanism::Sha256));
    let (user, password) = (user.to_string(), password.to_string());
    let matched = tokio::task::spawn_blocking(move || credential.is_some_and(|credential| credential.matches_password(&password)))
        .await
        .unwrap_or(false);
    if matched {
        Ok((user, Vec::new()))
    } else {
        Err(FAILED.to_string())
    }
}

/// The answer to SaslHandshake and SaslAuthenticate on a listener without SASL, or on a
/// connection that already authenticated: Kafka's ILLEGAL_SASL_STATE.
pub fn handshake_not_expected() -> SaslHandshakeResponse {
    SaslHandshakeResponse::default().with_error_code(ResponseError::IllegalSaslState.code())
}

pub fn authenticate_not_expected() -> SaslAuthenticateResponse {
    SaslAuthenticateResponse::default()
        .with_error_code(ResponseError::IllegalSaslState.code())
        .with_error_message(Some(str_bytes("this listener does not use SASL, or the connection already authenticated")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_meta::records::JournalRecord;
    use floe_meta::state::MetadataState;
    use kafka_protocol::messages::SaslHandshakeRequest;

    fn state_with(user: &str, password: &str) -> MetadataState {
        let mut state = MetadataState::default();
        let set = (BootstrapUser { name: user.into(), password: password.into() }).credentials_to_write(&BTreeMap::new());
        state.apply(1, &JournalRecord::AlterScramCredentials { user: user.into(), set, remove: Vec::new() });
        state
    }

    fn lookup(state: &MetadataState) -> impl Fn(&str, ScramMechanism) -> Option<ScramCredential> + Send + 'static {
        let state = state.clone();
        move |user, mechanism| state.scram_credential(user, mechanism).cloned()
    }

    fn settings(mechanisms: &[Mechanism]) -> SaslSettings {
        SaslSettings {
            mechanisms: mechanisms.to_vec(),
            bootstrap_user: None,
            failed_authentication_delay: std::time::Duration::ZERO,
            oauth: None,
            max_reauth: std::time::Duration::ZERO,
        }
    }

    #[test]
    fn a_bootstrap_user_is_written_once_and_again_only_when_its_password_changes() {
        let state = state_with("admin", "first");
        assert_eq!(state.scram_credentials["admin"].len(), 2, "one credential per SCRAM mechanism");
        let same = BootstrapUser { name: "admin".into(), password: "first".into() };
        assert!(same.credentials_to_write(&state.scram_credentials["admin"]).is_empty());
        let changed = BootstrapUser { name: "admin".into(), password: "second".into() };
        assert_eq!(changed.credentials_to_write(&state.scram_credentials["admin"]).len(), 2);
    }

    #[test]
    fn the_handshake_offers_the_listeners_mechanisms_and_refuses_others() {
        let listener = settings(&[Mechanism::Scram(ScramMechanism::Sha512), Mechanism::Plain]);
        let mut session = Session::AwaitingHandshake;
        let response = session.handshake(&listener, 1, &SaslHandshakeRequest::default().with_mechanism(str_bytes("GSSAPI")));
        assert_eq!(response.error_code, ResponseError::UnsupportedSaslMechanism.code());
        assert_eq!(response.mechanisms, vec![str_bytes("SCRAM-SHA-512"), str_bytes("PLAIN")]);
        let response = session.handshake(&listener, 1, &SaslHandshakeRequest::default().with_mechanism(str_bytes("PLAIN")));
        assert_eq!(response.error_code, 0);
        assert!(matches!(session, Session::Handshaken(Mechanism::Plain)));
        let again = session.handshake(&listener, 1, &SaslHandshakeRequest::default().with_mechanism(str_bytes("PLAIN")));
        assert_eq!(again.error_code, ResponseError::IllegalSaslState.code());
        let mut fresh = Session::AwaitingHandshake;
        let version_0 = fresh.handshake(&listener, 0, &SaslHandshakeRequest::default().with_mechanism(str_bytes("PLAIN")));
        assert_eq!(version_0.error_code, ResponseError::UnsupportedVersion.code(), "v0 would be followed by unframed tokens");
    }

    #[tokio::test]
    async fn plain_accepts_the_scram_users_password_and_nothing_else() {
        let state = state_with("alice", "pw");
        let attempt = |message: &'static [u8]| {
            let lookup = lookup(&state);
            async move {
                let mut session = Session::Handshaken(Mechanism::Plain);
                let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(message));
                let (response, verdict, _) = session.authenticate(&request, None, lookup).await;
                (response.error_code, matches!(verdict, Verdict::Authenticated { ref user, .. } if user == "alice"))
            }
        };
        assert_eq!(attempt(b"\0alice\0pw").await, (0, true));
        assert_eq!(attempt(b"alice\0alice\0pw").await, (0, true));
        let failed = ResponseError::SaslAuthenticationFailed.code();
        for bad in [&b"\0alice\0nope"[..], b"\0bob\0pw", b"eve\0alice\0pw", b"\0alice", b"\0\0pw", b"\0alice\0pw\0x"] {
            let mut session = Session::Handshaken(Mechanism::Plain);
            let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(bad));
            let (response, verdict, _) = session.authenticate(&request, None, lookup(&state)).await;
            assert_eq!(response.error_code, failed, "{bad:?}");
            assert!(matches!(verdict, Verdict::Failed));
        }
    }

    #[tokio::test]
    async fn authenticate_before_a_handshake_is_an_illegal_state() {
        let mut session = Session::AwaitingHandshake;
        let (response, verdict, _) = session.authenticate(&SaslAuthenticateRequest::default(), None, |_, _| None).await;
        assert_eq!(response.error_code, ResponseError::IllegalSaslState.code());
        assert!(matches!(verdict, Verdict::Failed) && !session.is_authenticated());
    }

    #[test]
    fn a_session_lasts_the_reauthentication_limit_or_until_its_credential_expires_whichever_is_sooner() {
        use std::time::{Duration, SystemTime};
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let hour = Duration::from_secs(3600);
        assert_eq!(session_lifetime(Duration::ZERO, Some(now + hour), now), None, "off");
        assert_eq!(session_lifetime(hour, None, now), Some(hour));
        assert_eq!(session_lifetime(hour, Some(now + Duration::from_secs(60)), now), Some(Duration::from_secs(60)));
        assert_eq!(session_lifetime(hour, Some(now - hour), now), Some(Duration::from_millis(1)));
    }
}
