//! DescribeUserScramCredentials and AlterUserScramCredentials: what
//! `kafka-configs --entity-type users --describe | --alter --add-config 'SCRAM-SHA-512=[...]'` and
//! `Admin.alterUserScramCredentials` use. The client salts and hashes the password itself; the
//! agent keeps only the derived keys, in the journal, so every agent accepts the new password as
//! soon as the record is applied. Checks and error codes follow Kafka's controller.

use super::{str_bytes, AgentContext, ClientInfo};
use crate::metadata::{ApplyOutcome, JournalRecord};
use floe_meta::acl::Operation;
use floe_meta::scram::{ScramCredential, ScramMechanism, MAX_ITERATIONS, MIN_ITERATIONS};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{CredentialInfo, DescribeUserScramCredentialsResult};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse,
};
use std::collections::{BTreeMap, HashMap};

type Refusal = (ResponseError, &'static str);

pub fn describe(
    context: &AgentContext,
    request: DescribeUserScramCredentialsRequest,
    client: &ClientInfo,
) -> DescribeUserScramCredentialsResponse {
    if !context.allowed_on_cluster(client, Operation::Describe) {
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(Some(str_bytes("not authorized to describe the cluster's users")));
    }
    let stored: BTreeMap<String, Vec<(ScramMechanism, u32)>> = context.metadata.read(|state| {
        state
            .scram_credentials
            .iter()
            .map(|(user, credentials)| {
                (user.clone(), credentials.values().map(|credential| (credential.mechanism, credential.iterations)).collect())
            })
            .collect()
    });
    let result = |user: &str, answer: Result<&Vec<(ScramMechanism, u32)>, Refusal>| {
        let result = DescribeUserScramCredentialsResult::default().with_user(str_bytes(user));
        match answer {
            Ok(credentials) => result.with_credential_infos(
                credentials
                    .iter()
                    .map(|(mechanism, iterations)| {
                        CredentialInfo::default().with_mechanism(mechanism.kafka_type()).with_iterations(*iterations as i32)
                    })
                    .collect(),
            ),
            Err((error, message)) => result.with_error_code(error.code()).with_error_message(Some(str_bytes(message))),
        }
    };
    let results = match request.users.filter(|users| !users.is_empty()) {
        // No names: every user that has a credential.
        None => stored.iter().map(|(user, credentials)| result(user, Ok(credentials))).collect(),
        Some(users) => {
            let mut counts: HashMap<&str, usize> = HashMap::new();
            for user in &users {
                *counts.entry(user.name.as_str()).or_default() += 1;
            }
            let mut answered = std::collections::HashSet::new();
            users
                .iter()
                .filter(|user| answered.insert(user.name.as_str()))
                .map(|user| {
                    let name = user.name.as_str();
                    let answer = if counts[name] > 1 {
                        Err((
                            ResponseError::DuplicateResource,
                            "Cannot describe SCRAM credentials for the same user twice in a single request",
                        ))
                    } else {
                        stored
                            .get(name)
                            .ok_or((ResponseError::ResourceNotFound, "Attempt to describe a user credential that does not exist"))
                    };
                    result(name, answer)
                })
                .collect()
        }
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

/// One user's requested changes, checked, in the order the request named the user.
#[derive(Default)]
struct UserChanges {
    set: Vec<ScramCredential>,
    remove: Vec<ScramMechanism>,
    /// The first reason to refuse the user's changes (then none of them is applied).
    refused: Option<Refusal>,
}

fn check_upsertion(mechanism: i8, iterations: i32, salt: &[u8], salted_password: &[u8], user: &str) -> Result<ScramCredential, Refusal> {
    let mechanism =
        ScramMechanism::from_kafka_type(mechanism).ok_or((ResponseError::UnsupportedSaslMechanism, "Unknown SCRAM mechanism"))?;
    if user.is_empty() {
        return Err((ResponseError::UnacceptableCredential, "Username must not be empty"));
    }
    if iterations < MIN_ITERATIONS as i32 {
        return Err((ResponseError::UnacceptableCredential, "Too few iterations (at least 4096)"));
    }
    if iterations > MAX_ITERATIONS as i32 {
        return Err((ResponseError::UnacceptableCredential, "Too many iterations (at most 16384)"));
    }
    if salt.is_empty() {
        return Err((ResponseError::UnacceptableCredential, "Salt must not be empty"));
    }
    if salted_password.len() != mechanism.output_len() {
        return Err((ResponseError::UnacceptableCredential, "The salted password has the wrong length for its mechanism"));
    }
    Ok(ScramCredential::from_salted_password(mechanism, iterations as u32, salt.to_vec(), salted_password))
}

/// `name`'s entry, created (and its place in the answer taken) on first sight.
fn changes_of<'a>(order: &mut Vec<String>, users: &'a mut HashMap<String, UserChanges>, name: &str) -> &'a mut UserChanges {
    if !users.contains_key(name) {
        order.push(name.to_string());
    }
    users.entry(name.to_string()).or_default()
}

/// One result per user. A user's changes are written as one journal record, all or nothing; a
/// user and mechanism named twice in the request refuses that user (Kafka's DUPLICATE_RESOURCE).
pub async fn alter(
    context: &AgentContext,
    request: AlterUserScramCredentialsRequest,
    client: &ClientInfo,
) -> AlterUserScramCredentialsResponse {
    let cluster_alter = context.allowed_on_cluster(client, Operation::Alter);
    let mut order: Vec<String> = Vec::new();
    let mut users: HashMap<String, UserChanges> = HashMap::new();
    let mut named: HashMap<(String, i8), usize> = HashMap::new();
    for deletion in &request.deletions {
        *named.entry((deletion.name.to_string(), deletion.mechanism)).or_default() += 1;
        let changes = changes_of(&mut order, &mut users, &deletion.name);
        match ScramMechanism::from_kafka_type(deletion.mechanism) {
            Some(mechanism) => changes.remove.push(mechanism),
            None => {
                changes.refused.get_or_insert((ResponseError::UnsupportedSaslMechanism, "Unknown SCRAM mechanism"));
            }
        }
    }
    for upsertion in &request.upsertions {
        *named.entry((upsertion.name.to_string(), upsertion.mechanism)).or_default() += 1;
        let checked =
            check_upsertion(upsertion.mechanism, upsertion.iterations, &upsertion.salt, &upsertion.salted_password, &upsertion.name);
        let changes = changes_of(&mut order, &mut users, &upsertion.name);
        match checked {
            Ok(credential) => changes.set.push(credential),
            Err(refusal) => {
                changes.refused.get_or_insert(refusal);
            }
        }
    }
    for ((name, _), count) in &named {
        if *count > 1 {
            if let Some(changes) = users.get_mut(name) {
                changes.refused = Some((ResponseError::DuplicateResource, "A user credential cannot be altered twice in the same request"));
            }
        }
    }
    let mut results = Vec::with_capacity(order.len());
    for name in order {
        let changes = users.remove(&name).unwrap_or_default();
        let outcome = match changes.refused {
            _ if !cluster_alter => Err((ResponseError::ClusterAuthorizationFailed, "not authorized to alter the cluster's users")),
            Some(refusal) => Err(refusal),
            None => apply(context, &name, changes.set, changes.remove).await,
        };
        let result = AlterUserScramCredentialsResult::default().with_user(str_bytes(&name));
        results.push(match outcome {
            Ok(()) => result,
            Err((error, message)) => result.with_error_code(error.code()).with_error_message(Some(str_bytes(message))),
        });
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}

async fn apply(context: &AgentContext, user: &str, set: Vec<ScramCredential>, remove: Vec<ScramMechanism>) -> Result<(), Refusal> {
    let record = JournalRecord::AlterScramCredentials { user: user.to_string(), set, remove };
    match context.metadata.submit(record).await {
        Ok(ApplyOutcome::ScramCredentialsAltered) => Ok(()),
        Ok(ApplyOutcome::ScramCredentialNotFound) => {
            Err((ResponseError::ResourceNotFound, "Attempt to delete a user credential that does not exist"))
        }
        Ok(other) => {
            tracing::error!(?other, "unexpected outcome of a SCRAM credential record");
            Err((ResponseError::UnknownServerError, "unexpected outcome; see the agent's log"))
        }
        Err(error) => {
            tracing::warn!(%error, "failed to commit a SCRAM credential change");
            Err((ResponseError::RequestTimedOut, "the metadata journal did not accept the change in time; retry"))
        }
    }
}
