//! Metadata and DescribeCluster: the agents of the virtual cluster and where each partition is led.

use super::{str_bytes, topic_name, AgentContext, ClientInfo};
use crate::cluster::{placement, NodeInfo, LEADER_EPOCH};
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

/// Every agent answers with the same full list of live agents and the same leader for each
/// partition (rendezvous over that list, in the client's zone when its client.id names one).
pub async fn handle(context: &AgentContext, request: MetadataRequest, version: i16, client: &ClientInfo) -> MetadataResponse {
    // Kafka's auto.create.topics.enable: create missing topics the client names, if it allows it
    // (always implied before v4), so they come back complete in this same response.
    if context.settings.auto_create_topics && (version < 4 || request.allow_auto_topic_creation) {
        let missing: Vec<String> = context.metadata.read(|state| {
            request
                .topics
                .iter()
                .flatten()
                .filter_map(|topic| topic.name.as_ref().map(|name| name.0.to_string()))
                .filter(|name| !state.topics.contains_key(name) && super::topics::validate_topic_name(name).is_ok())
                .collect()
        });
        for name in missing {
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
    let live = context.cluster.live();
    let local = context.cluster.local();
    let zone = placement::client_zone(&client.client_id);
    // The controller must be live: the lowest node id, the same on every agent.
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
    let describe = |name: String, topic_id: Uuid, partition_count: i32| {
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
            .with_topic_authorized_operations(OPERATIONS_NOT_REQUESTED)
    };
    let topics: Vec<MetadataResponseTopic> = found
        .into_iter()
        .map(|found| match found {
            Ok((name, topic_id, partition_count)) => describe(name, topic_id, partition_count),
            Err((name, topic_id)) => MetadataResponseTopic::default()
                .with_error_code(if name.is_some() {
                    ResponseError::UnknownTopicOrPartition.code()
                } else {
                    ResponseError::UnknownTopicId.code()
                })
                .with_name(name.map(topic_name))
                .with_topic_id(topic_id)
                .with_topic_authorized_operations(OPERATIONS_NOT_REQUESTED),
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(live.iter().map(broker).collect())
        .with_cluster_id(Some(str_bytes(cluster_id(context))))
        .with_controller_id(BrokerId(controller))
        .with_topics(topics)
        .with_cluster_authorized_operations(OPERATIONS_NOT_REQUESTED)
}

pub fn cluster_id(context: &AgentContext) -> String {
    context.metadata.read(|state| state.cluster_id.clone()).unwrap_or_else(|| "floe-uninitialized".to_string())
}

pub fn describe_cluster(context: &AgentContext, _request: DescribeClusterRequest) -> DescribeClusterResponse {
    let live = context.cluster.live();
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
        .with_cluster_authorized_operations(OPERATIONS_NOT_REQUESTED)
}
