//! DescribeConfigs for topics (every known config, with its source) and for brokers.

use super::{str_bytes, AgentContext, ClientInfo};
use crate::metadata::topic_config;
use floe_meta::acl::{Operation, ResourceType, CLUSTER_NAME};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// Why `client` may not perform `operation` (DESCRIBE_CONFIGS or ALTER_CONFIGS) on a config
/// resource: a topic's are the topic's, a broker's are the cluster's (Kafka's rule and codes).
fn refused(
    context: &AgentContext,
    client: &ClientInfo,
    operation: Operation,
    resource_type: i8,
    name: &str,
) -> Option<(ResponseError, String)> {
    let (on, resource, error) = match resource_type {
        RESOURCE_TOPIC => (ResourceType::Topic, name, ResponseError::TopicAuthorizationFailed),
        RESOURCE_BROKER => (ResourceType::Cluster, CLUSTER_NAME, ResponseError::ClusterAuthorizationFailed),
        _ => return None,
    };
    (!context.allowed(client, operation, on, resource)).then(|| {
        (
            error,
            format!(
                "not authorized to {} of {name:?}",
                if operation == Operation::AlterConfigs { "alter the configs" } else { "describe the configs" }
            ),
        )
    })
}

pub fn describe(context: &AgentContext, request: DescribeConfigsRequest, client: &ClientInfo) -> DescribeConfigsResponse {
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let name = resource.resource_name.to_string();
            let wanted =
                |key: &str| resource.configuration_keys.as_ref().is_none_or(|keys| keys.iter().any(|wanted| wanted.as_str() == key));
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            if let Some((error, message)) = refused(context, client, Operation::DescribeConfigs, resource.resource_type, &name) {
                return result.with_error_code(error.code()).with_error_message(Some(str_bytes(message)));
            }
            match resource.resource_type {
                RESOURCE_TOPIC => {
                    let configs = context.metadata.read(|state| state.topics.get(&name).map(|topic| topic.configs.clone()));
                    let Some(configs) = configs else {
                        return result
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(str_bytes(format!("topic {name:?} does not exist"))));
                    };
                    let entries = topic_config::effective(&configs)
                        .into_iter()
                        .filter(|(key, _, _)| wanted(key))
                        .map(|(key, value, set)| {
                            DescribeConfigsResourceResult::default()
                                .with_name(str_bytes(key))
                                .with_value(Some(str_bytes(value)))
                                .with_config_source(if set { SOURCE_TOPIC } else { SOURCE_DEFAULT })
                        })
                        .collect();
                    result.with_configs(entries)
                }
                RESOURCE_BROKER => {
                    let broker_configs = [
                        ("broker.id", context.cluster.local().node_id.to_string()),
                        ("num.partitions", context.settings.default_partitions.to_string()),
                        ("auto.create.topics.enable", context.settings.auto_create_topics.to_string()),
                        ("message.max.bytes", topic_config::DEFAULT_MAX_MESSAGE_BYTES.to_string()),
                    ];
                    let entries = broker_configs
                        .into_iter()
                        .filter(|(key, _)| wanted(key))
                        .map(|(key, value)| {
                            DescribeConfigsResourceResult::default()
                                .with_name(str_bytes(key))
                                .with_value(Some(str_bytes(value)))
                                .with_read_only(true)
                                .with_config_source(SOURCE_STATIC_BROKER)
                        })
                        .collect();
                    result.with_configs(entries)
                }
                other => result.with_error_code(ResponseError::InvalidRequest.code()).with_error_message(Some(str_bytes(format!(
                    "config resource type {other} is not supported; use topic (2) or broker (4)"
                )))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// The outcome of altering one resource: `None` on success, else the error and its message.
async fn alter_topic(
    context: &AgentContext,
    client: &ClientInfo,
    resource_type: i8,
    name: &str,
    validate_only: bool,
    change: impl FnOnce(&mut std::collections::BTreeMap<String, String>) -> Result<(), String>,
) -> Option<(ResponseError, String)> {
    if let Some(refusal) = refused(context, client, Operation::AlterConfigs, resource_type, name) {
        return Some(refusal);
    }
    if resource_type != RESOURCE_TOPIC {
        let reason = if resource_type == RESOURCE_BROKER {
            "broker settings are agent flags (see floe agent --help), not dynamic configs"
        } else {
            "only topic configs can be altered"
        };
        return Some((ResponseError::InvalidRequest, reason.to_string()));
    }
    let Some((topic_id, mut configs)) =
        context.metadata.read(|state| state.topics.get(name).map(|topic| (topic.id, topic.configs.clone())))
    else {
        return Some((ResponseError::UnknownTopicOrPartition, format!("topic {name:?} does not exist")));
    };
    if let Err(message) = change(&mut configs).and_then(|_| topic_config::validate(&configs)) {
        return Some((ResponseError::InvalidConfig, message));
    }
    if validate_only {
        return None;
    }
    let record = crate::metadata::JournalRecord::SetTopicConfigs { name: name.to_string(), topic_id, configs };
    match context.metadata.submit(record).await {
        Ok(crate::metadata::ApplyOutcome::TopicConfigsSet) => None,
        Ok(_) => Some((ResponseError::UnknownTopicOrPartition, format!("topic {name:?} was deleted meanwhile"))),
        Err(error) => Some((ResponseError::RequestTimedOut, format!("failed to record the configs: {error}"))),
    }
}

/// The error code and message of an alteration outcome (0 and none on success).
fn error_fields(outcome: Option<(ResponseError, String)>) -> (i16, Option<kafka_protocol::protocol::StrBytes>) {
    match outcome {
        None => (0, None),
        Some((error, message)) => (error.code(), Some(str_bytes(message))),
    }
}

/// AlterConfigs: the listed configs replace every explicitly set one (Kafka's legacy semantics).
pub async fn alter(
    context: &AgentContext,
    request: kafka_protocol::messages::AlterConfigsRequest,
    client: &ClientInfo,
) -> kafka_protocol::messages::AlterConfigsResponse {
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let wanted: std::collections::BTreeMap<String, String> = resource
            .configs
            .iter()
            .filter_map(|config| config.value.as_ref().map(|value| (config.name.to_string(), value.to_string())))
            .collect();
        let outcome = alter_topic(context, client, resource.resource_type, &resource.resource_name, request.validate_only, |configs| {
            *configs = wanted;
            Ok(())
        })
        .await;
        let response =
            AlterConfigsResourceResponse::default().with_resource_type(resource.resource_type).with_resource_name(resource.resource_name);
        let (error_code, error_message) = error_fields(outcome);
        responses.push(response.with_error_code(error_code).with_error_message(error_message));
    }
    kafka_protocol::messages::AlterConfigsResponse::default().with_responses(responses)
}

/// IncrementalAlterConfigs: SET (0) and DELETE (1) per key; APPEND/SUBTRACT only apply to list
/// configs, and Floe has none that accept more than one value yet.
pub async fn incremental_alter(
    context: &AgentContext,
    request: kafka_protocol::messages::IncrementalAlterConfigsRequest,
    client: &ClientInfo,
) -> kafka_protocol::messages::IncrementalAlterConfigsResponse {
    use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let operations: Vec<(String, i8, Option<String>)> = resource
            .configs
            .iter()
            .map(|config| (config.name.to_string(), config.config_operation, config.value.as_ref().map(|value| value.to_string())))
            .collect();
        let outcome = alter_topic(context, client, resource.resource_type, &resource.resource_name, request.validate_only, |configs| {
            for (name, operation, value) in operations {
                match (operation, value) {
                    (0, Some(value)) => {
                        configs.insert(name, value);
                    }
                    (0, None) => return Err(format!("SET of {name} needs a value")),
                    (1, _) => {
                        configs.remove(&name);
                    }
                    (2 | 3, _) => return Err(format!("APPEND/SUBTRACT of {name} is not supported: it is not a list config")),
                    (other, _) => return Err(format!("unknown config operation {other} for {name}")),
                }
            }
            Ok(())
        })
        .await;
        let response =
            AlterConfigsResourceResponse::default().with_resource_type(resource.resource_type).with_resource_name(resource.resource_name);
        let (error_code, error_message) = error_fields(outcome);
        responses.push(response.with_error_code(error_code).with_error_message(error_message));
    }
    kafka_protocol::messages::IncrementalAlterConfigsResponse::default().with_responses(responses)
}
