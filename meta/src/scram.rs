//! SCRAM credentials (RFC 5802, RFC 7677; Kafka's KIP-84): what the journal keeps for a user —
//! salt, iteration count, StoredKey and ServerKey, never the password — and the derivations the
//! agent (verifying a client) and, later, the operator (creating a user) both need.
//!
//! The primitives (PBKDF2, HMAC, SHA-2, a constant-time comparison, the random salt) come from
//! aws-lc-rs, which rustls, object_store and etcd-client already link: no SCRAM server crate on
//! crates.io covers SCRAM-SHA-512 under an open-source licence (`sasl` and `rsasl` stop at
//! SHA-256), and the exchange itself is a few lines on top of these (`floe_agent::sasl::scram`).

use aws_lc_rs::rand::SecureRandom;
use aws_lc_rs::{constant_time, digest, hmac, pbkdf2};
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;

/// The two SCRAM mechanisms Kafka defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ScramMechanism {
    #[serde(rename = "SCRAM-SHA-256")]
    Sha256,
    #[serde(rename = "SCRAM-SHA-512")]
    Sha512,
}

/// Kafka's bounds on a credential's iteration count (`ScramMechanism.minIterations` and
/// `maxIterations` in the Java client).
pub const MIN_ITERATIONS: u32 = 4096;
pub const MAX_ITERATIONS: u32 = 16384;

/// Bytes of random salt in a credential this code makes (Kafka's tools use 20 to 32).
const SALT_BYTES: usize = 32;

impl ScramMechanism {
    pub const ALL: [Self; 2] = [Self::Sha256, Self::Sha512];

    /// The SASL mechanism name, as clients send it in SaslHandshake.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "SCRAM-SHA-256",
            Self::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|mechanism| mechanism.name() == name)
    }

    /// The mechanism's number in DescribeUserScramCredentials and AlterUserScramCredentials.
    pub fn kafka_type(self) -> i8 {
        match self {
            Self::Sha256 => 1,
            Self::Sha512 => 2,
        }
    }

    pub fn from_kafka_type(value: i8) -> Option<Self> {
        Self::ALL.into_iter().find(|mechanism| mechanism.kafka_type() == value)
    }

    fn hmac_algorithm(self) -> hmac::Algorithm {
        match self {
            Self::Sha256 => hmac::HMAC_SHA256,
            Self::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest_algorithm(self) -> &'static digest::Algorithm {
        match self {
            Self::Sha256 => &digest::SHA256,
            Self::Sha512 => &digest::SHA512,
        }
    }

    fn pbkdf2_algorithm(self) -> pbkdf2::Algorithm {
        match self {
            Self::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Self::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    /// Bytes of the hash: the length of a salted password, a key and a proof.
    pub fn output_len(self) -> usize {
        self.digest_algorithm().output_len()
    }

    /// HMAC(key, data) with this mechanism's hash.
    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac_algorithm(), key), data).as_ref().to_vec()
    }

    /// H(data).
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest_algorithm(), data).as_ref().to_vec()
    }

    /// Hi(password, salt, iterations) of RFC 5802: PBKDF2 with this mechanism's HMAC. Kafka
    /// applies no SASLprep to the password, and neither does this (clients must agree).
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.output_len()];
        let iterations = NonZeroU32::new(iterations.max(1)).expect("at least one iteration");
        pbkdf2::derive(self.pbkdf2_algorithm(), iterations, salt, password, &mut out);
        out
    }
}

impl std::fmt::Display for ScramMechanism {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.name())
    }
}

/// What the server keeps of a user's password for one mechanism.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub mechanism: ScramMechanism,
    pub iterations: u32,
    #[serde(with = "base64_bytes")]
    pub salt: Vec<u8>,
    /// H(HMAC(SaltedPassword, "Client Key")): checks a client's proof.
    #[serde(with = "base64_bytes")]
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key"): proves the server to the client.
    #[serde(with = "base64_bytes")]
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramCredential {
    /// Never prints the keys: they are as good as the password against this server.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ScramCredential")
            .field("mechanism", &self.mechanism)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredential {
    /// From the salted password a client computed (AlterUserScramCredentials sends this, so the
    /// password itself never reaches the server).
    pub fn from_salted_password(mechanism: ScramMechanism, iterations: u32, salt: Vec<u8>, salted_password: &[u8]) -> Self {
        let client_key = mechanism.hmac(salted_password, b"Client Key");
        Self {
            mechanism,
            iterations,
            salt,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted_password, b"Server Key"),
        }
    }

    /// A new credential for `password` with a fresh random salt.
    pub fn from_password(mechanism: ScramMechanism, password: &str, iterations: u32) -> Self {
        let mut salt = vec![0u8; SALT_BYTES];
        aws_lc_rs::rand::SystemRandom::new().fill(&mut salt).expect("the system random generator works");
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
        Self::from_salted_password(mechanism, iterations, salt, &salted)
    }

    /// Whether `password` is the one this credential was made from (SASL PLAIN checks a
    /// password this way, so PLAIN users are the SCRAM users and no password is stored).
    pub fn matches_password(&self, password: &str) -> bool {
        let salted = self.mechanism.salted_password(password.as_bytes(), &self.salt, self.iterations);
        let stored_key = self.mechanism.hash(&self.mechanism.hmac(&salted, b"Client Key"));
        constant_time::verify_slices_are_equal(&stored_key, &self.stored_key).is_ok()
    }

    /// Whether `proof` (a SCRAM client-final message's `p=`) proves knowledge of the password
    /// for `auth_message`: H(proof XOR HMAC(StoredKey, AuthMessage)) == StoredKey.
    pub fn verifies_proof(&self, auth_message: &[u8], proof: &[u8]) -> bool {
        let signature = self.mechanism.hmac(&self.stored_key, auth_message);
        if proof.len() != signature.len() {
            return false;
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(proof, signature)| proof ^ signature).collect();
        constant_time::verify_slices_are_equal(&self.mechanism.hash(&client_key), &self.stored_key).is_ok()
    }

    /// HMAC(ServerKey, AuthMessage): the server-final message's `v=`.
    pub fn server_signature(&self, auth_message: &[u8]) -> Vec<u8> {
        self.mechanism.hmac(&self.server_key, auth_message)
    }
}

/// Credentials as base64 text in the journal and in snapshots.
pub(crate) mod base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        base64::engine::general_purpose::STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn decode(text: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(text).unwrap()
    }

    /// RFC 7677's SCRAM-SHA-256 example: user "user", password "pencil".
    #[test]
    fn the_rfc_7677_exchange_verifies_and_signs_as_published() {
        let mechanism = ScramMechanism::Sha256;
        let salt = decode("W22ZaJ0SNY7soEsUEjb6gQ==");
        let salted = mechanism.salted_password(b"pencil", &salt, 4096);
        let credential = ScramCredential::from_salted_password(mechanism, 4096, salt, &salted);
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
                            r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
                            c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let proof = decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
        assert!(credential.verifies_proof(auth_message.as_bytes(), &proof));
        assert_eq!(credential.server_signature(auth_message.as_bytes()), decode("6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="));
        let mut wrong = proof.clone();
        wrong[0] ^= 1;
        assert!(!credential.verifies_proof(auth_message.as_bytes(), &wrong));
        assert!(!credential.verifies_proof(auth_message.as_bytes(), &proof[1..]));
    }

    #[test]
    fn a_credential_from_a_password_matches_only_that_password_and_serializes_without_it() {
        for mechanism in ScramMechanism::ALL {
            let credential = ScramCredential::from_password(mechanism, "s3cret", MIN_ITERATIONS);
            assert!(credential.matches_password("s3cret"));
            assert!(!credential.matches_password("s3cret "));
            let json = serde_json::to_string(&credential).unwrap();
            assert!(!json.contains("s3cret") && json.contains(mechanism.name()), "{json}");
            assert_eq!(serde_json::from_str::<ScramCredential>(&json).unwrap(), credential);
            assert!(!format!("{credential:?}").contains(&base64::engine::general_purpose::STANDARD.encode(&credential.stored_key)));
            assert_eq!(ScramMechanism::from_kafka_type(mechanism.kafka_type()), Some(mechanism));
            assert_eq!(ScramMechanism::from_name(mechanism.name()), Some(mechanism));
        }
    }
}
