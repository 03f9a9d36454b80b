//! CreateTopics and DeleteTopics, through the journal.

use super::{str_bytes, topic_name, AgentContext, ClientInfo};
use crate::metadata::{topic_config, ApplyOutcome, JournalRecord};
use floe_meta::acl::{Operation, ResourceType};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use uuid::Uuid;

/// Kafka's rule: 1-249 characters of [a-zA-Z0-9._-], and not "." or "..".
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(format!("topic name {name:?} is not allowed"));
    }
    if name.len() > 249 {
        return Err(format!("topic name is {} characters long; the limit is 249", name.len()));
    }
    if let Some(bad) = name.chars().find(|character| !(character.is_ascii_alphanumeric() || matches!(character, '.' | '_' | '-'))) {
        return Err(format!("topic name {name:?} contains {bad:?}; only ASCII letters, digits, '.', '_' and '-' are allowed"));
    }
    Ok(())
}

/// Kafka's answer to a name (or id) a request carries more than once (ControllerApis): one
/// INVALID_REQUEST row per repeated name, and none of its entries is acted on. A CreateTopics of
/// 6.5 M empty names is thus one row, not a 211 MiB answer.
const DUPLICATE_NAME: &str = "Duplicate topic name.";
const DUPLICATE_ID: &str = "Duplicate topic id.";

/// The keys that occur more than once, borrowed from the request.
fn repeated<'a, K: Eq + std::hash::Hash + ?Sized + 'a>(keys: impl Iterator<Item = &'a K>) -> HashSet<&'a K> {
    let mut seen = HashSet::new();
    let mut repeated = HashSet::new();
    for key in keys {
        if !seen.insert(key) {
            repeated.insert(key);
        }
    }
    repeated
}

/// Removes every topic whose name appears more than once in `topics` and returns those names,
/// sorted: Kafka answers each with one INVALID_REQUEST "Duplicate topic name." and handles none.
fn take_repeated_names<T>(topics: &mut Vec<T>, name: impl Fn(&T) -> &str) -> Vec<String> {
    let mut names: Vec<String> = repeated(topics.iter().map(&name)).into_iter().map(str::to_string).collect();
    names.sort();
    if !names.is_empty() {
        let duplicated: HashSet<&str> = names.iter().map(String::as_str).collect();
        topics.retain(|topic| !duplicated.contains(name(topic)));
    }
    names
}

/// Partitions the virtual cluster holds now.
fn partitions_in_cluster(context: &AgentContext) -> usize {
    context.metadata.read(|state| state.topics.values().map(|topic| topic.partitions.len()).sum())
}

/// POLICY_VIOLATION's message when a request adds more partitions than one request may, counted
/// in `floe_requests_refused_total{limit="max_partitions_per_request"}`.
fn too_many_for_one_request(context: &AgentContext, adding: u64) -> Option<String> {
    let limit = context.settings.limits.max_partitions_per_request;
    if adding <= limit as u64 {
        return None;
    }
    context.metrics.requests_refused.with_label_values(&["max_partitions_per_request"]).inc();
    Some(format!("the request adds {adding} partitions; one request may add at most {limit} (--max-partitions-per-request)"))
}

/// POLICY_VIOLATION's message when `adding` partitions would take the cluster past
/// `--max-partitions`, counted in `floe_requests_refused_total{limit="max_partitions"}`.
fn too_many_for_the_cluster(context: &AgentContext, held: usize, adding: usize) -> Option<String> {
    let limit = context.settings.limits.max_partitions;
    if held.saturating_add(adding) <= limit {
        return None;
    }
    context.metrics.requests_refused.with_label_values(&["max_partitions"]).inc();
    Some(format!("the cluster holds {held} partitions; {adding} more would pass its limit of {limit} (--max-partitions)"))
}

pub async fn create(context: &AgentContext, mut request: CreateTopicsRequest, version: i16, client: &ClientInfo) -> CreateTopicsResponse {
    let duplicates = take_repeated_names(&mut request.topics, |topic| topic.name.0.as_str());
    let mut results = Vec::with_capacity(request.topics.len() + duplicates.len());
    results.extend(duplicates.into_iter().map(|name| {
        CreatableTopicResult::default()
            .with_name(topic_name(name))
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_error_message(Some(str_bytes(DUPLICATE_NAME.to_string())))
            .with_num_partitions(-1)
            .with_replication_factor(-1)
    }));
    let default_partitions = context.settings.default_partitions;
    let adding: u64 = request
        .topics
        .iter()
        .map(|topic| if topic.num_partitions == -1 { default_partitions } else { topic.num_partitions }.max(0) as u64)
        .sum();
    let request_refusal = too_many_for_one_request(context, adding);
    // Counted once, then kept up to date as topics are created: a scan per topic would make a
    // request of many topics quadratic.
    let mut held = partitions_in_cluster(context);
    // CREATE on the cluster allows every topic; otherwise CREATE on each topic (Kafka's rule).
    let cluster_create = context.visible(client, Operation::Create, ResourceType::Cluster, floe_meta::acl::CLUSTER_NAME);
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let failure = |error: ResponseError, message: String| {
            CreatableTopicResult::default()
                .with_name(topic_name(name.clone()))
                .with_error_code(error.code())
                .with_error_message(Some(str_bytes(message)))
                .with_num_partitions(-1)
                .with_replication_factor(-1)
        };
        if !cluster_create && !context.allowed(client, Operation::Create, ResourceType::Topic, &name) {
            results.push(failure(ResponseError::TopicAuthorizationFailed, format!("not authorized to create topic {name:?}")));
            continue;
        }
        if let Some(message) = &request_refusal {
            results.push(failure(ResponseError::PolicyViolation, message.clone()));
            continue;
        }
        if let Err(message) = validate_topic_name(&name) {
            results.push(failure(ResponseError::InvalidTopicException, message));
            continue;
        }
        // Existence before the partition count and configs, as Kafka checks: a client that creates
        // its topics on every start (Kafka Streams, Connect) must hear TOPIC_ALREADY_EXISTS, not a
        // complaint about settings of a topic that is already there.
        let exists = context.metadata.read(|state| state.topics.contains_key(&name));
        if exists {
            results.push(failure(ResponseError::TopicAlreadyExists, format!("topic {name:?} already exists")));
            continue;
        }
        let partitions = if topic.num_partitions == -1 { context.settings.default_partitions } else { topic.num_partitions };
        if partitions <= 0 || partitions > context.settings.max_partitions_per_topic {
            let limit = context.settings.max_partitions_per_topic;
            results.push(failure(ResponseError::InvalidPartitions, format!("partition count {partitions} must be between 1 and {limit}")));
            continue;
        }
        if topic.replication_factor == 0 || topic.replication_factor < -1 {
            results.push(failure(ResponseError::InvalidReplicationFactor, format!("replication factor {} must be -1 or positive; Floe's durability comes from object storage, so any positive value is accepted", topic.replication_factor)));
            continue;
        }
        if !topic.assignments.is_empty() {
            results.push(failure(
                ResponseError::InvalidReplicaAssignment,
                "manual replica assignments are meaningless in Floe: every agent serves every partition".to_string(),
            ));
            continue;
        }
        let mut configs = BTreeMap::new();
        for config in &topic.configs {
            if let Some(value) = &config.value {
                configs.insert(config.name.to_string(), value.to_string());
            }
        }
        if let Err(message) = topic_config::validate(&configs) {
            results.push(failure(ResponseError::InvalidConfig, message));
            continue;
        }
        if let Some(message) = too_many_for_the_cluster(context, held, partitions as usize) {
            results.push(failure(ResponseError::PolicyViolation, message));
            continue;
        }
        let topic_id = Uuid::new_v4();
        let outcome = if request.validate_only {
            Ok(ApplyOutcome::TopicCreated)
        } else {
            context.metadata.submit(JournalRecord::CreateTopic { name: name.clone(), topic_id, partitions, configs: configs.clone() }).await
        };
        let result = match outcome {
            Ok(ApplyOutcome::TopicCreated) => {
                if !request.validate_only {
                    held += partitions as usize;
                }
                let described = topic_config::effective(&configs)
                    .into_iter()
                    .map(|(key, value, set)| {
                        CreatableTopicConfigs::default()
                            .with_name(str_bytes(key))
                            .with_value(Some(str_bytes(value)))
                            .with_config_source(if set { 1 } else { 5 })
                    })
                    .collect();
                let created = CreatableTopicResult::default()
                    .with_name(topic_name(name.clone()))
                    .with_topic_id(topic_id)
                    .with_num_partitions(partitions)
                    .with_replication_factor(if topic.replication_factor == -1 { 1 } else { topic.replication_factor });
                // The configs come back only with DESCRIBE_CONFIGS on the new topic (Kafka).
                if version < 5 {
                    created
                } else if context.visible(client, Operation::DescribeConfigs, ResourceType::Topic, &name) {
                    created.with_configs(Some(described))
                } else {
                    created.with_topic_config_error_code(ResponseError::TopicAuthorizationFailed.code())
                }
            }
            Ok(_) => failure(ResponseError::TopicAlreadyExists, format!("topic {name:?} already exists")),
            Err(error) => failure(ResponseError::RequestTimedOut, format!("failed to record the topic: {error}")),
        };
        results.push(result);
    }
    CreateTopicsResponse::default().with_topics(results)
}

pub async fn delete(context: &AgentContext, request: DeleteTopicsRequest, version: i16, client: &ClientInfo) -> DeleteTopicsResponse {
    // v6 names topics in `topics` (by name or id); older versions in `topic_names`.
    let requested: Vec<(Option<String>, Uuid)> = if version >= 6 {
        request.topics.into_iter().map(|topic| (topic.name.map(|name| name.0.to_string()), topic.topic_id)).collect()
    } else {
        request.topic_names.into_iter().map(|name| (Some(name.0.to_string()), Uuid::nil())).collect()
    };
    let (duplicate_names, duplicate_ids): (HashSet<String>, HashSet<Uuid>) = {
        let names = repeated(requested.iter().filter_map(|(name, _)| name.as_ref()));
        let ids = repeated(requested.iter().filter(|(name, _)| name.is_none()).map(|(_, id)| id));
        (names.into_iter().cloned().collect(), ids.into_iter().copied().collect())
    };
    let mut responses = Vec::with_capacity(requested.len());
    let mut sorted_names: Vec<&String> = duplicate_names.iter().collect();
    sorted_names.sort();
    for name in sorted_names {
        responses.push(
            DeletableTopicResult::default()
                .with_name(Some(topic_name(name.clone())))
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(str_bytes(DUPLICATE_NAME.to_string()))),
        );
    }
    for id in &duplicate_ids {
        responses.push(
            DeletableTopicResult::default()
                .with_topic_id(*id)
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(str_bytes(DUPLICATE_ID.to_string()))),
        );
    }
    let requested: Vec<(Option<String>, Uuid)> = requested
        .into_iter()
        .filter(|(name, id)| match name {
            Some(name) => !duplicate_names.contains(name),
            None => !duplicate_ids.contains(id),
        })
        .collect();
    // Topic ids are looked up in an index built once per request, not by a scan per id.
    let by_id: HashMap<Uuid, String> = if requested.iter().any(|(name, _)| name.is_none()) {
        context.metadata.read(|state| state.topics.iter().map(|(name, topic)| (topic.id, name.clone())).collect())
    } else {
        HashMap::new()
    };
    for (name, topic_id) in requested {
        // DELETE on a named topic is checked before its existence; a topic named by id is looked
        // up first (an unknown id is UNKNOWN_TOPIC_ID either way).
        let refused = DeletableTopicResult::default().with_error_code(ResponseError::TopicAuthorizationFailed.code());
        if let Some(name) = &name {
            if !context.allowed(client, Operation::Delete, ResourceType::Topic, name) {
                responses.push(refused.with_name(Some(topic_name(name.clone()))).with_topic_id(topic_id));
                continue;
            }
        }
        let found = context.metadata.read(|state| match &name {
            Some(name) => state.topics.get(name).map(|topic| (name.clone(), topic.id)),
            // The index may predate a deletion made by an earlier id of this request.
            None => by_id
                .get(&topic_id)
                .and_then(|name| state.topics.get(name).filter(|topic| topic.id == topic_id).map(|topic| (name.clone(), topic.id))),
        });
        let result = DeletableTopicResult::default().with_name(name.clone().map(topic_name)).with_topic_id(topic_id);
        let Some((found_name, found_id)) = found else {
            let error = if name.is_some() { ResponseError::UnknownTopicOrPartition } else { ResponseError::UnknownTopicId };
            responses.push(result.with_error_code(error.code()));
            continue;
        };
        if name.is_none() && !context.allowed(client, Operation::Delete, ResourceType::Topic, &found_name) {
            responses.push(refused.with_topic_id(topic_id));
            continue;
        }
        let result = result.with_name(Some(topic_name(found_name.clone()))).with_topic_id(found_id);
        match context.metadata.submit(JournalRecord::DeleteTopic { name: found_name, topic_id: found_id }).await {
            Ok(ApplyOutcome::TopicDeleted) => responses.push(result),
            Ok(_) => responses.push(result.with_error_code(ResponseError::UnknownTopicOrPartition.code())),
            Err(error) => responses.push(
                result
                    .with_error_code(ResponseError::RequestTimedOut.code())
                    .with_error_message(Some(str_bytes(format!("failed to record the deletion: {error}")))),
            ),
        }
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

/// CreatePartitions: grows topics; one result per requested topic (librdkafka fails on fewer).
pub async fn create_partitions(
    context: &AgentContext,
    mut request: CreatePartitionsRequest,
    client: &ClientInfo,
) -> CreatePartitionsResponse {
    let duplicates = take_repeated_names(&mut request.topics, |topic| topic.name.0.as_str());
    let mut results = Vec::with_capacity(request.topics.len() + duplicates.len());
    results.extend(duplicates.into_iter().map(|name| {
        CreatePartitionsTopicResult::default()
            .with_name(topic_name(name))
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_error_message(Some(str_bytes(DUPLICATE_NAME.to_string())))
    }));
    // The most this request could add (new counts above the current ones), against the per-request limit.
    let adding: u64 = context.metadata.read(|state| {
        request
            .topics
            .iter()
            .filter_map(|topic| {
                let current = state.topics.get(topic.name.0.as_str())?.partitions.len() as i64;
                Some((topic.count as i64 - current).max(0) as u64)
            })
            .sum()
    });
    let request_refusal = too_many_for_one_request(context, adding);
    let mut held = partitions_in_cluster(context);
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        let failure = |error: ResponseError, message: String| {
            result.clone().with_error_code(error.code()).with_error_message(Some(str_bytes(message)))
        };
        if !context.allowed(client, Operation::Alter, ResourceType::Topic, &name) {
            results.push(failure(ResponseError::TopicAuthorizationFailed, format!("not authorized to alter topic {name:?}")));
            continue;
        }
        if let Some(message) = &request_refusal {
            results.push(failure(ResponseError::PolicyViolation, message.clone()));
            continue;
        }
        let found = context.metadata.read(|state| state.topics.get(&name).map(|found| (found.id, found.partitions.len() as i32)));
        let Some((topic_id, current)) = found else {
            results.push(failure(ResponseError::UnknownTopicOrPartition, format!("topic {name:?} does not exist")));
            continue;
        };
        let limit = context.settings.max_partitions_per_topic;
        if topic.count <= current || topic.count > limit {
            let message =
                format!("topic {name:?} has {current} partitions; the new count {} must be larger and at most {limit}", topic.count);
            results.push(failure(ResponseError::InvalidPartitions, message));
            continue;
        }
        if topic.assignments.as_ref().is_some_and(|assignments| !assignments.is_empty()) {
            let message = "manual replica assignments are meaningless in Floe: every agent serves every partition".to_string();
            results.push(failure(ResponseError::InvalidReplicaAssignment, message));
            continue;
        }
        let added = (topic.count - current) as usize;
        if let Some(message) = too_many_for_the_cluster(context, held, added) {
            results.push(failure(ResponseError::PolicyViolation, message));
            continue;
        }
        if request.validate_only {
            results.push(result);
            continue;
        }
        match context.metadata.submit(JournalRecord::AddPartitions { name: name.clone(), topic_id, partitions: topic.count }).await {
            Ok(ApplyOutcome::PartitionsAdded { .. }) => {
                held += added;
                results.push(result)
            }
            Ok(_) => results.push(failure(ResponseError::UnknownTopicOrPartition, format!("topic {name:?} was deleted meanwhile"))),
            Err(error) => results.push(failure(ResponseError::RequestTimedOut, format!("failed to record the new partitions: {error}"))),
        }
    }
    CreatePartitionsResponse::default().with_results(results)
}

#[cfg(test)]
mod tests {
    use super::{repeated, validate_topic_name};

    #[test]
    fn a_name_given_more_than_once_is_reported_once() {
        let names = ["a", "b", "a", "", "", "", "c"];
        let mut found: Vec<&&str> = repeated(names.iter()).into_iter().collect();
        found.sort();
        assert_eq!(found, vec![&"", &"a"]);
        assert!(repeated(["x", "y"].iter()).is_empty());
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_eu-west").is_ok());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("has space").unwrap_err().contains("' '"));
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }
}
