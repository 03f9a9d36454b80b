//! A KafkaUser's password: read from the Secret key its spec names, or generated once into a
//! Secret named like the user and owned by it (deleted with it by the garbage collector). A
//! Secret of that name that this user does not own is never overwritten.

use crate::crd::kafka_user::KafkaUser;
use crate::labels;
use crate::virtual_cluster::problems::{self, Unusable};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::PostParams;
use kube::{Api, Client, Resource, ResourceExt};
use std::collections::BTreeMap;

const FIELD: &str = "spec.authentication.password.valueFrom.secretKeyRef";

/// The Secret holding the password, and the password.
pub async fn password(client: &Client, user: &KafkaUser) -> Result<(String, String), Unusable> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &user.namespace().unwrap_or_default());
    match user.spec.authentication.password.as_ref().map(|source| &source.value_from.secret_key_ref) {
        Some(reference) => {
            let secret = secrets
                .get_opt(&reference.name)
                .await
                .map_err(|error| problems::secret_unreadable(&reference.name, FIELD, &error))?
                .ok_or_else(|| problems::secret_not_found(&reference.name, FIELD))?;
            let bytes =
                value(&secret, &reference.key).ok_or_else(|| problems::secret_key_missing(&reference.name, FIELD, &reference.key))?;
            let password = String::from_utf8(bytes).map_err(|_| problems::secret_key_invalid(&reference.key))?;
            let password = password.trim_end_matches(['\n', '\r']).to_string();
            if password.is_empty() {
                return Err(problems::secret_key_empty(&reference.name, FIELD, &reference.key));
            }
            Ok((reference.name.clone(), password))
        }
        None => generated(&secrets, user).await.map(|password| (user.name_any(), password)),
    }
}

fn value(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    secret.data.as_ref().and_then(|data| data.get(key)).map(|value| value.0.clone())
}

pub(crate) fn secret_conflict(name: &str) -> Unusable {
    let message = format!(
        "Secret {} exists and does not belong to this KafkaUser; delete or rename it, or set spec.authentication.password",
        crate::messages::shorten(name, 64)
    );
    Unusable { reason: "SecretConflict", message }
}

pub(crate) fn secret_not_created(name: &str, error: &kube::Error) -> Unusable {
    let cause = match error {
        kube::Error::Api(status) if status.code == 403 => "the operator may not create Secrets (403 Forbidden)".to_string(),
        kube::Error::Api(status) => status.message.clone(),
        other => crate::messages::plain_cause(other),
    };
    let head = format!("failed to create Secret {} for the generated password: ", crate::messages::shorten(name, 64));
    problems::sentence("SecretNotCreated", &head, &cause, "check the operator's RBAC (create on secrets)")
}

/// The generated password, creating its Secret on first use.
async fn generated(secrets: &Api<Secret>, user: &KafkaUser) -> Result<String, Unusable> {
    let name = user.name_any();
    let field = "the KafkaUser's generated password";
    if let Some(existing) = secrets.get_opt(&name).await.map_err(|error| problems::secret_unreadable(&name, field, &error))? {
        let ours = existing.owner_references().iter().any(|owner| Some(&owner.uid) == user.uid().as_ref());
        if !ours {
            return Err(secret_conflict(&name));
        }
        let bytes = value(&existing, "password").ok_or_else(|| problems::secret_key_missing(&name, field, "password"))?;
        return String::from_utf8(bytes).map_err(|_| problems::secret_key_invalid("password"));
    }
    let password = new_password();
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.clone()),
            labels: Some(BTreeMap::from([(labels::MANAGED_BY.to_string(), labels::MANAGER.to_string())])),
            owner_references: user.controller_owner_ref(&()).map(|owner| vec![owner]),
            ..Default::default()
        },
        data: Some(secret_data(&name, &password)),
        type_: Some("Opaque".to_string()),
        ..Default::default()
    };
    secrets.create(&PostParams::default(), &secret).await.map_err(|error| secret_not_created(&name, &error))?;
    tracing::info!(secret = name, "generated the user's password");
    Ok(password)
}

/// What clients need: the user name, the password, and a Java client's `sasl.jaas.config`.
fn secret_data(user: &str, password: &str) -> BTreeMap<String, ByteString> {
    let jaas = format!(r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="{user}" password="{password}";"#);
    BTreeMap::from([
        ("username".to_string(), ByteString(user.as_bytes().to_vec())),
        ("password".to_string(), ByteString(password.as_bytes().to_vec())),
        ("sasl.jaas.config".to_string(), ByteString(jaas.into_bytes())),
    ])
}

/// 40 hexadecimal characters from the system's random generator (two UUIDv4s' random bits:
/// 122 of them in the first alone), safe to quote in JAAS and shell.
fn new_password() -> String {
    let mut password = uuid::Uuid::new_v4().simple().to_string();
    password.push_str(&uuid::Uuid::new_v4().simple().to_string()[..8]);
    password
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_differ_and_need_no_quoting() {
        let (first, second) = (new_password(), new_password());
        assert_ne!(first, second);
        assert_eq!(first.len(), 40);
        assert!(first.chars().all(|character| character.is_ascii_hexdigit()));
    }

    #[test]
    fn the_secret_carries_a_jaas_line_a_java_client_can_use() {
        let data = secret_data("orders", "pw");
        let jaas = String::from_utf8(data["sasl.jaas.config"].0.clone()).unwrap();
        assert_eq!(jaas, r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="orders" password="pw";"#);
    }
}
