//! The server side of a SCRAM exchange (RFC 5802) as Kafka runs it: two SaslAuthenticate round
//! trips, client-first → server-first, client-final → server-final. No channel binding (Kafka
//! has none either), no authorization id other than the user itself, no delegation tokens.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use floe_meta::scram::{ScramCredential, ScramMechanism, MIN_ITERATIONS};

/// Where an exchange stands after the client-first message.
pub struct ScramExchange {
    mechanism: ScramMechanism,
    user: String,
    /// The credential to verify against; a made-up one for an unknown user, so an unknown user
    /// fails at the same step and with the same message as a wrong password.
    credential: ScramCredential,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    /// The client's part of the nonce.
    client_nonce: String,
    /// The whole nonce: the client's part, then ours.
    nonce: String,
}

/// Why an exchange failed: said to the client, so no more than Kafka says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("invalid SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("{0}")]
    Unsupported(&'static str),
    #[error("Authentication failed during authentication due to invalid credentials with SASL mechanism {0}")]
    InvalidCredentials(ScramMechanism),
}

impl ScramExchange {
    /// Reads the client-first message and answers the server-first one. `lookup` finds the
    /// user's stored credential.
    pub fn start(
        mechanism: ScramMechanism,
        client_first: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<(Self, Vec<u8>), ScramError> {
        let message = std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (gs2_header, client_first_bare) = split_gs2_header(message)?;
        let mut attributes = client_first_bare.split(',');
        let user = match attributes.next() {
            Some(field) if field.starts_with("m=") => return Err(ScramError::Unsupported("SCRAM mandatory extensions are not supported")),
            Some(field) => decode_saslname(field.strip_prefix("n=").ok_or(ScramError::Malformed("the first attribute must be n=<user>"))?)?,
            None => return Err(ScramError::Malformed("empty message")),
        };
        let client_nonce = attributes
            .next()
            .and_then(|field| field.strip_prefix("r="))
            .filter(|nonce| !nonce.is_empty())
            .ok_or(ScramError::Malformed("the second attribute must be r=<nonce>"))?;
        // Kafka's only extension, `tokenauth=true`, means a delegation token, which Floe does not
        // issue; other extensions are ignored, as Kafka ignores the ones it does not know.
        if attributes.any(|extension| extension == "tokenauth=true") {
            return Err(ScramError::Unsupported("delegation tokens are not supported"));
        }
        if let Some(authorization_id) = gs2_header.split(',').nth(1).filter(|field| !field.is_empty()) {
            let authorization_id =
                decode_saslname(authorization_id.strip_prefix("a=").ok_or(ScramError::Malformed("bad authorization id"))?)?;
            if authorization_id != user {
                return Err(ScramError::Unsupported("an authorization id other than the user name is not supported"));
            }
        }
        let credential = lookup(&user).filter(|credential| credential.mechanism == mechanism).unwrap_or_else(|| unknown_user(mechanism));
        let nonce = format!("{client_nonce}{}", server_nonce());
        let server_first = format!("r={nonce},s={},i={}", BASE64.encode(&credential.salt), credential.iterations);
        let exchange = Self {
            mechanism,
            user,
            credential,
            gs2_header: gs2_header.to_string(),
            client_first_bare: client_first_bare.to_string(),
            server_first: server_first.clone(),
            client_nonce: client_nonce.to_string(),
            nonce,
        };
        Ok((exchange, server_first.into_bytes()))
    }

    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// Checks the client-final message; on success returns the user and the server-final
    /// message that proves this server knew the credential.
    pub fn finish(self, client_final: &[u8]) -> Result<(String, Vec<u8>), ScramError> {
        let message = std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = message.rsplit_once(",p=").ok_or(ScramError::Malformed("the last attribute must be p=<proof>"))?;
        let mut attributes = without_proof.split(',');
        let channel_binding = attributes
            .next()
            .and_then(|field| field.strip_prefix("c="))
            .ok_or(ScramError::Malformed("the first attribute must be c=<channel binding>"))?;
        if BASE64.decode(channel_binding).ok().as_deref() != Some(self.gs2_header.as_bytes()) {
            return Err(ScramError::Malformed("the channel binding does not repeat the first message's header"));
        }
        // librdkafka before 2.6.1 (Debian's and Ubuntu's kcat among them) repeats its own part in
        // front of the whole nonce (confluentinc/librdkafka#4895); Kafka 3.8.1 and later accept
        // that form too. Every byte of our part must still come back, so a replayed or foreign
        // exchange fails either way.
        let nonce = attributes.next().and_then(|field| field.strip_prefix("r=")).unwrap_or_default();
        let repeated_by_old_librdkafka = nonce.strip_prefix(self.client_nonce.as_str()) == Some(self.nonce.as_str());
        if nonce != self.nonce && !repeated_by_old_librdkafka {
            return Err(ScramError::Malformed("the nonce does not match"));
        }
        let proof = BASE64.decode(proof).map_err(|_| ScramError::Malformed("the proof is not base64"))?;
        let auth_message = format!("{},{},{}", self.client_first_bare, self.server_first, without_proof);
        if !self.credential.verifies_proof(auth_message.as_bytes(), &proof) {
            return Err(ScramError::InvalidCredentials(self.mechanism));
        }
        let server_final = format!("v={}", BASE64.encode(self.credential.server_signature(auth_message.as_bytes())));
        Ok((self.user, server_final.into_bytes()))
    }
}

/// `n,,n=user,r=...` → (`n,,`, `n=user,r=...`). Channel binding (`p=`) is refused: Kafka
/// supports none, and a client that asks for it must not be told it succeeded without it.
fn split_gs2_header(message: &str) -> Result<(&str, &str), ScramError> {
    let flag_end = message.find(',').ok_or(ScramError::Malformed("missing GS2 header"))?;
    match &message[..flag_end] {
        "n" | "y" => {}
        flag if flag.starts_with("p=") => return Err(ScramError::Unsupported("SCRAM channel binding is not supported")),
        _ => return Err(ScramError::Malformed("bad GS2 channel binding flag")),
    }
    let authorization_end = message[flag_end + 1..].find(',').ok_or(ScramError::Malformed("missing GS2 header"))? + flag_end + 1;
    Ok((&message[..=authorization_end], &message[authorization_end + 1..]))
}

/// RFC 5802's saslname: `=2C` is a comma and `=3D` an equals sign; any other `=` is an error.
fn decode_saslname(name: &str) -> Result<String, ScramError> {
    let mut decoded = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(position) = rest.find('=') {
        decoded.push_str(&rest[..position]);
        match rest.get(position..position + 3) {
            Some("=2C") => decoded.push(','),
            Some("=3D") => decoded.push('='),
            _ => return Err(ScramError::Malformed("bad escape in user name")),
        }
        rest = &rest[position + 3..];
    }
    decoded.push_str(rest);
    if decoded.is_empty() {
        return Err(ScramError::Malformed("empty user name"));
    }
    Ok(decoded)
}

fn random_bytes(count: usize) -> Vec<u8> {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = vec![0u8; count];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes).expect("the system random generator works");
    bytes
}

/// 24 random bytes as base64: printable and without commas, as RFC 5802 requires.
fn server_nonce() -> String {
    BASE64.encode(random_bytes(24))
}

/// A credential no password matches (random keys), for a user that does not exist.
fn unknown_user(mechanism: ScramMechanism) -> ScramCredential {
    ScramCredential {
        mechanism,
        iterations: MIN_ITERATIONS,
        salt: random_bytes(32),
        stored_key: random_bytes(mechanism.output_len()),
        server_key: random_bytes(mechanism.output_len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client side of RFC 5802, to drive the server in tests.
    fn client_final(mechanism: ScramMechanism, password: &str, client_first_bare: &str, server_first: &str, gs2: &str) -> String {
        let fields: Vec<&str> = server_first.split(',').collect();
        let nonce = fields[0].strip_prefix("r=").unwrap();
        let salt = BASE64.decode(fields[1].strip_prefix("s=").unwrap()).unwrap();
        let iterations: u32 = fields[2].strip_prefix("i=").unwrap().parse().unwrap();
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
        let client_key = mechanism.hmac(&salted, b"Client Key");
        let stored_key = mechanism.hash(&client_key);
        let without_proof = format!("c={},r={nonce}", BASE64.encode(gs2));
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = mechanism.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(key, signature)| key ^ signature).collect();
        format!("{without_proof},p={}", BASE64.encode(proof))
    }

    fn exchange(mechanism: ScramMechanism, stored_password: &str, password: &str, user: &str) -> Result<String, ScramError> {
        let credential = ScramCredential::from_password(mechanism, stored_password, 4096);
        let bare = format!("n={},r=fyko+d2lbbFgONRv9qkxdawL", user.replace('=', "=3D").replace(',', "=2C"));
        let (exchange, server_first) =
            ScramExchange::start(mechanism, format!("n,,{bare}").as_bytes(), |name| (name == "al,i=ce").then(|| credential.clone()))?;
        let server_first = String::from_utf8(server_first).unwrap();
        assert!(server_first.starts_with("r=fyko+d2lbbFgONRv9qkxdawL"), "{server_first}");
        let (user, server_final) = exchange.finish(client_final(mechanism, password, &bare, &server_first, "n,,").as_bytes())?;
        assert!(String::from_utf8(server_final).unwrap().starts_with("v="));
        Ok(user)
    }

    #[test]
    fn the_right_password_authenticates_and_a_wrong_one_or_an_unknown_user_fails_alike() {
        for mechanism in ScramMechanism::ALL {
            assert_eq!(exchange(mechanism, "pw", "pw", "al,i=ce").unwrap(), "al,i=ce");
            assert_eq!(exchange(mechanism, "pw", "nope", "al,i=ce").unwrap_err(), ScramError::InvalidCredentials(mechanism));
            assert_eq!(exchange(mechanism, "pw", "pw", "bob").unwrap_err(), ScramError::InvalidCredentials(mechanism));
        }
    }

    #[test]
    fn malformed_and_unsupported_first_messages_are_refused() {
        let start = |message: &str| ScramExchange::start(ScramMechanism::Sha512, message.as_bytes(), |_| None).err();
        assert!(matches!(start("p=tls-unique,,n=a,r=x"), Some(ScramError::Unsupported(_))));
        assert!(matches!(start("n,a=b,n=a,r=x"), Some(ScramError::Unsupported(_))));
        assert!(matches!(start("n,,n=a,r=x,tokenauth=true"), Some(ScramError::Unsupported(_))));
        assert!(matches!(start("n,,m=x,n=a,r=x"), Some(ScramError::Unsupported(_))));
        for bad in ["", "n", "n,,", "n,,n=a", "n,,r=x", "n,,n=,r=x", "n,,n=a=2,r=x", "x,,n=a,r=x", "n,,n=a,r="] {
            assert!(matches!(start(bad), Some(ScramError::Malformed(_))), "{bad:?} was not refused as malformed");
        }
        assert!(start("n,a=a,n=a,r=x").is_none(), "an authorization id equal to the user is allowed");
    }

    #[test]
    fn a_final_message_with_another_nonce_or_header_is_refused() {
        let credential = ScramCredential::from_password(ScramMechanism::Sha256, "pw", 4096);
        let start = || ScramExchange::start(ScramMechanism::Sha256, b"n,,n=u,r=abc", |_| Some(credential.clone())).unwrap();
        let (exchange, server_first) = start();
        let server_first = String::from_utf8(server_first).unwrap();
        let good = client_final(ScramMechanism::Sha256, "pw", "n=u,r=abc", &server_first, "n,,");
        assert!(matches!(exchange.finish(good.replace("r=abc", "r=abd").as_bytes()), Err(ScramError::Malformed(_))));
        let (exchange, server_first) = start();
        let server_first = String::from_utf8(server_first).unwrap();
        let other_header = client_final(ScramMechanism::Sha256, "pw", "n=u,r=abc", &server_first, "y,,");
        assert!(matches!(exchange.finish(other_header.as_bytes()), Err(ScramError::Malformed(_))));
        let (exchange, _) = start();
        assert!(matches!(exchange.finish(b"c=biws,r=abc"), Err(ScramError::Malformed(_))));
    }

    #[test]
    fn old_librdkafkas_repeated_client_nonce_is_accepted_and_nothing_looser() {
        let credential = ScramCredential::from_password(ScramMechanism::Sha512, "pw", 4096);
        let start = || ScramExchange::start(ScramMechanism::Sha512, b"n,,n=u,r=abc", |_| Some(credential.clone())).unwrap();
        let finish_with = |transform: &dyn Fn(&str) -> String| {
            let (exchange, server_first) = start();
            let server_first = String::from_utf8(server_first).unwrap();
            let nonce = server_first.split(',').next().unwrap().strip_prefix("r=").unwrap().to_string();
            // The proof covers the real server-first and the nonce as sent, as librdkafka computes it.
            let sent = transform(&nonce);
            let without_proof = format!("c=biws,r={sent}");
            let auth_message = format!("n=u,r=abc,{server_first},{without_proof}");
            let salted = ScramMechanism::Sha512.salted_password(b"pw", &credential.salt, 4096);
            let client_key = ScramMechanism::Sha512.hmac(&salted, b"Client Key");
            let signature = ScramMechanism::Sha512.hmac(&ScramMechanism::Sha512.hash(&client_key), auth_message.as_bytes());
            let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(key, signature)| key ^ signature).collect();
            exchange.finish(format!("{without_proof},p={}", BASE64.encode(proof)).as_bytes())
        };
        assert!(finish_with(&|nonce| nonce.to_string()).is_ok(), "the exact nonce");
        assert!(finish_with(&|nonce| format!("abc{nonce}")).is_ok(), "librdkafka's repeated client part");
        for looser in [|nonce: &str| format!("x{nonce}"), |nonce: &str| nonce[..nonce.len() - 1].to_string(), |_: &str| "abc".to_string()] {
            assert!(matches!(finish_with(&looser), Err(ScramError::Malformed(_))));
        }
    }
}
