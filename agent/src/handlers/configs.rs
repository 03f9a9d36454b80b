//! DescribeConfigs for topics (every known config, with its source) and for brokers.

use super::{str_bytes, AgentContext};
use crate::metadata::topic_config;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

pub fn describe(context: &AgentContext, request: DescribeConfigsRequest) -> DescribeConfigsResponse {
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
