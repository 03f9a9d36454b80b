//! Metadata and DescribeCluster: the agents of the virtual cluster and where each partition is led.

use super::{str_bytes, topic_name, AgentContext, ClientInfo};
use crate::cluster::{placement, NodeInfo, LEADER_EPOCH};
use floe_meta::acl::{Operation, ResourceType, CLUSTER_NAME};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic};
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse, MetadataRequest, MetadataResponse};
use std::collections::HashMap;
use uuid::Uuid;

/// A requested topic: found (name, id, partition count), or not (the name or id asked for).
type Lookup = Result<(String, Uuid, i32), (Option<String>, Uuid)>;

/// Kafka's "authorized operations were not requested" marker.
const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;

fn broker(node: &NodeInfo) -> MetadataResponseBroker {
    MetadataResponseBroker::default()
        .with_node_id(BrokerId(node.node_id))
        .with_host(str_bytes(node.host.clone()))
        .with_port(node.port)
        .with_rack(node.rack.clone().map(str_bytes))
}

/// Whether `client` may create the topic `name`: CREATE on the cluster or on the topic.
fn may_create(context: &AgentContext, client: &ClientInfo, name: &str) -> bool {
    context.visible(client, Operation::Create, ResourceType::Cluster, CLUSTER_NAME)
        || context.allowed(client, Operation::Create, ResourceType::Topic, name)
}

/// Every agent answers with the same full list of live agents and the same leader for each
/// partition (rendezvous over that list, in the client's zone when its client.id names one).
pub async fn handle(context: &AgentContext, request: MetadataRequest, version: i16, client: &ClientInfo) -> MetadataResponse {
    // Kafka's auto.create.topics.enable: create missing topics the client names, if it allows it
    // (always implied before v4) and may create them, so they come back complete in this same
    // response.
    let auto_create = context.settings.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    if auto_create {
        let missing: Vec<String> = context.metadata.read(|state| {
            request
                .topics
                .iter()
                .flatten()
                .filter_map(|topic| topic.name.as_ref().map(|name| name.0.to_string()))
                .filter(|name| !state.topics.contains_key(name) && super::topics::validate_topic_name(name).is_ok())
                .collect()
        });
        for name in missing.into_iter().filter(|name| may_create(context, client, name)) {
            let record = crate::metadata::JournalRecord::CreateTopic {
                name: name.clone(),
                topic_id: Uuid::new_v4(),
                partitions: context.settings.default_partitions,
                configs: Default::default(),
            };
            if let Err(error) = context.metadata.submit(record).await {
                tracing::warn!(%error, topic = name, "failed to auto-create a topic");
            }
        }
    }
    // The agents serving what this one serves (its roles): a producer bootstrapped at a produce
    // pool is led only to produce agents, a consumer at a fetch pool only to fetch agents.
    let live = context.cluster.advertised();
    let local = context.cluster.local();
    let zone = placement::client_zone(&client.client_id);
    // The controller must be one of the brokers listed (an admin client sends it CreateTopics and
    // waits until it sees it): the lowest advertised node id.
    let controller = live.first().map(|node| node.node_id).unwrap_or(local.node_id);
    // v0 has no null form: an empty list there means "all topics".
    let requested: Option<Vec<(Option<String>, Uuid)>> = match request.topics {
        None => None,
        Some(topics) if topics.is_empty() && version == 0 => None,
        Some(topics) => Some(topics.into_iter().map(|topic| (topic.name.map(|name| name.0.to_string()), topic.topic_id)).collect()),
    };
    // Under the metadata lock only what is proportional to the topics named (one hash lookup
    // each, ids through an index built once): the partitions are described after it is released,
    // so a large request never holds up the journal's apply (and every acknowledgement).
    let requested_all = requested.is_none();
    let found: Vec<Lookup> = context.metadata.read(|state| {
        let summary = |name: &str, topic: &crate::metadata::TopicState| (name.to_string(), topic.id, topic.partitions.len() as i32);
        match requested {
            None => state.topics.iter().map(|(name, topic)| Ok(summary(name, topic))).collect(),
            Some(requested) => {
                let by_id: HashMap<Uuid, &str> = if requested.iter().any(|(name, _)| name.is_none()) {
                    state.topics.iter().map(|(name, topic)| (topic.id, name.as_str())).collect()
                } else {
                    HashMap::new()
                };
                requested
                    .into_iter()
                    .map(|(name, topic_id)| {
                        let found = match &name {
                            Some(name) => state.topics.get_key_value(name.as_str()),
                            None => by_id.get(&topic_id).and_then(|name| state.topics.get_key_value(*name)),
                        };
                        found.map(|(name, topic)| summary(name, topic)).ok_or((name, topic_id))
                    })
                    .collect()
            }
        }
    });
    let topic_operations = version >= 8 && request.include_topic_authorized_operations;
    let describe = |name: String, topic_id: Uuid, partition_count: i32| {
        let operations =
            if topic_operations { context.authorized_operations(client, ResourceType::Topic, &name) } else { OPERATIONS_NOT_REQUESTED };
        let partitions = (0..partition_count)
            .map(|index| {
                let leader = placement::partition_leader(&live, &name, index, zone).map(|node| node.node_id).unwrap_or(local.node_id);
                MetadataResponsePartition::default()
                    .with_partition_index(index)
                    .with_leader_id(BrokerId(leader))
                    .with_leader_epoch(LEADER_EPOCH)
                    .with_replica_nodes(vec![BrokerId(leader)])
                    .with_isr_nodes(vec![BrokerId(leader)])
            })
            .collect();
        MetadataResponseTopic::default()
            .with_name(Some(topic_name(name)))
            .with_topic_id(topic_id)
            .with_partitions(partitions)
            .with_topic_authorized_operations(operations)
    };
    let failed = |error: ResponseError, name: Option<String>, topic_id: Uuid| {
        MetadataResponseTopic::default()
            .with_error_code(error.code())
            .with_name(name.map(topic_name))
            .with_topic_id(topic_id)
            .with_topic_authorized_operations(OPERATIONS_NOT_REQUESTED)
    };
    // DESCRIBE on each topic: an all-topics answer leaves out the others; a topic named without
    // it answers TOPIC_AUTHORIZATION_FAILED whether it exists or not, so existence does not leak.
    let topics: Vec<MetadataResponseTopic> = found
        .into_iter()
        .filter_map(|found| match found {
            Ok((name, topic_id, partition_count)) if requested_all => {
                context.visible(client, Operation::Describe, ResourceType::Topic, &name).then(|| describe(name, topic_id, partition_count))
            }
            Ok((name, topic_id, partition_count)) => Some(if context.allowed(client, Operation::Describe, ResourceType::Topic, &name) {
                describe(name, topic_id, partition_count)
            } else {
                failed(ResponseError::TopicAuthorizationFailed, Some(name), Uuid::nil())
            }),
            Err((Some(name), topic_id)) => Some(
                if !context.allowed(client, Operation::Describe, ResourceType::Topic, &name)
                    || (auto_create && !may_create(context, client, &name))
                {
                    failed(ResponseError::TopicAuthorizationFailed, Some(name), topic_id)
                } else {
                    failed(ResponseError::UnknownTopicOrPartition, Some(name), topic_id)
                },
            ),
            Err((None, topic_id)) => Some(failed(ResponseError::UnknownTopicId, None, topic_id)),
        })
        .collect();
    let cluster_operations = if (8..=10).contains(&version) && request.include_cluster_authorized_operations {
        cluster_operations(context, client)
    } else {
        OPERATIONS_NOT_REQUESTED
    };
    MetadataResponse::default()
        .with_brokers(live.iter().map(broker).collect())
        .with_cluster_id(Some(str_bytes(cluster_id(context))))
        .with_controller_id(BrokerId(controller))
        .with_topics(topics)
        .with_cluster_authorized_operations(cluster_operations)
}

/// Kafka's cluster authorized operations: 0 without DESCRIBE on the cluster.
fn cluster_operations(context: &AgentContext, client: &ClientInfo) -> i32 {
    if context.visible(client, Operation::Describe, ResourceType::Cluster, CLUSTER_NAME) {
        context.authorized_operations(client, ResourceType::Cluster, CLUSTER_NAME)
    } else {
        0
    }
}

pub fn cluster_id(context: &AgentContext) -> String {
    context.metadata.read(|state| state.cluster_id.clone()).unwrap_or_else(|| "floe-uninitialized".to_string())
}

pub fn describe_cluster(context: &AgentContext, request: DescribeClusterRequest, client: &ClientInfo) -> DescribeClusterResponse {
    // Every client may describe the cluster (Kafka asks no ACL for it); the authorized
    // operations are filled only with DESCRIBE on it.
    let operations =
        if request.include_cluster_authorized_operations { cluster_operations(context, client) } else { OPERATIONS_NOT_REQUESTED };
    let live = context.cluster.advertised();
    let controller = live.first().map(|node| node.node_id).unwrap_or(context.cluster.local().node_id);
    DescribeClusterResponse::default()
        .with_endpoint_type(1)
        .with_cluster_id(str_bytes(cluster_id(context)))
        .with_controller_id(BrokerId(controller))
        .with_brokers(
            live.iter()
                .map(|node| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(node.node_id))
                        .with_host(str_bytes(node.host.clone()))
                        .with_port(node.port)
                        .with_rack(node.rack.clone().map(str_bytes))
                })
                .collect(),
        )
        .with_cluster_authorized_operations(operations)
}
