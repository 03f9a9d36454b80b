//! Metadata and DescribeCluster: the agents of the virtual cluster and where each partition is led.

use super::{str_bytes, topic_name, AgentContext, ClientInfo};
use crate::cluster::{placement, NodeInfo, LEADER_EPOCH};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic};
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse, MetadataRequest, MetadataResponse};
use uuid::Uuid;

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
    let topics = context.metadata.read(|state| {
        // v0 has no null form: an empty list there means "all topics".
        let requested: Option<Vec<(Option<String>, Uuid)>> = match request.topics {
            None => None,
            Some(topics) if topics.is_empty() && version == 0 => None,
            Some(topics) => Some(topics.into_iter().map(|topic| (topic.name.map(|name| name.0.to_string()), topic.topic_id)).collect()),
        };
        let describe = |name: &str, topic: &crate::metadata::TopicState| {
            let partitions = (0..topic.partitions.len() as i32)
                .map(|index| {
                    let leader = placement::partition_leader(&live, name, index, zone).map(|node| node.node_id).unwrap_or(local.node_id);
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
                .with_topic_id(topic.id)
                .with_partitions(partitions)
                .with_topic_authorized_operations(OPERATIONS_NOT_REQUESTED)
        };
        match requested {
            None => state.topics.iter().map(|(name, topic)| describe(name, topic)).collect::<Vec<_>>(),
            Some(requested) => requested
                .into_iter()
                .map(|(name, topic_id)| {
                    let found = match &name {
                        Some(name) => state.topics.get_key_value(name.as_str()),
                        None => state.topics.iter().find(|(_, topic)| topic.id == topic_id),
                    };
                    match found {
                        Some((name, topic)) => describe(name, topic),
                        None => MetadataResponseTopic::default()
                            .with_error_code(if name.is_some() {
                                ResponseError::UnknownTopicOrPartition.code()
                            } else {
                                ResponseError::UnknownTopicId.code()
                            })
                            .with_name(name.map(topic_name))
                            .with_topic_id(topic_id)
                            .with_topic_authorized_operations(OPERATIONS_NOT_REQUESTED),
                    }
                })
                .collect(),
        }
    });
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
