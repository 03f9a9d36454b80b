//! ConsumerGroupHeartbeat and ConsumerGroupDescribe: the KIP-848 consumer group protocol
//! (`group.protocol=consumer` in Java 4.x), with the coordinator's state machine in
//! `groups::consumer`.

use super::{str_bytes, topic_name, AgentContext, ClientInfo};
use crate::groups::consumer::{Assignment, Heartbeat};
use floe_meta::acl::{Operation, ResourceType};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response::{self as describe_response, DescribedGroup, Member};
use kafka_protocol::messages::consumer_group_heartbeat_response::{self as heartbeat_response};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse,
};
use std::collections::BTreeSet;
use std::time::Instant;
use uuid::Uuid;

fn refuse(error: ResponseError, message: impl Into<String>) -> ConsumerGroupHeartbeatResponse {
    ConsumerGroupHeartbeatResponse::default().with_error_code(error.code()).with_error_message(Some(str_bytes(message.into())))
}

pub fn heartbeat(context: &AgentContext, request: ConsumerGroupHeartbeatRequest, client: &ClientInfo) -> ConsumerGroupHeartbeatResponse {
    let group_id = request.group_id.0.to_string();
    if !context.allowed(client, Operation::Read, ResourceType::Group, &group_id) {
        return refuse(ResponseError::GroupAuthorizationFailed, format!("no READ on group {group_id}"));
    }
    if let Some(error) = super::coordinator::not_coordinator(context, &group_id) {
        return refuse(error, "another agent coordinates this group");
    }
    if request.subscribed_topic_regex.as_ref().is_some_and(|regex| !regex.is_empty()) {
        tracing::info!(group = group_id, regex = ?request.subscribed_topic_regex, "refusing a regular-expression subscription");
        return refuse(
            ResponseError::InvalidRequest,
            "regular-expression subscriptions are not supported by this broker yet; subscribe to topic names",
        );
    }
    if context.groups.describe(&group_id).is_some_and(|classic| !classic.members.is_empty()) {
        return refuse(
            ResponseError::GroupIdNotFound,
            format!("group {group_id} is a classic group with live members; consumers of one group must use one protocol"),
        );
    }
    // Topic ids in, topic names inside, topic ids out.
    let owned = context.metadata.read(|state| {
        request.topic_partitions.as_ref().map(|topics| {
            topics
                .iter()
                .filter_map(|topic| {
                    let name = state.topics.iter().find(|(_, found)| found.id == topic.topic_id).map(|(name, _)| name.clone())?;
                    Some((name, topic.partitions.iter().copied().collect::<BTreeSet<i32>>()))
                })
                .collect::<Assignment>()
        })
    });
    let heartbeat = Heartbeat {
        group_id: group_id.clone(),
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.as_ref().map(|id| id.to_string()),
        rack_id: request.rack_id.as_ref().map(|id| id.to_string()),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        subscribed: request.subscribed_topic_names.as_ref().map(|names| names.iter().map(|name| name.0.to_string()).collect()),
        assignor: request.server_assignor.as_ref().map(|name| name.to_string()),
        owned,
        client_id: client.client_id.clone(),
        client_host: client.address.clone(),
    };
    let partitions = |topic: &str| {
        context.metadata.read(|state| state.topics.get(topic).map(|found| found.partitions.len() as i32)).filter(|_| {
            // Only topics the member may describe are assigned (Kafka's rule for subscriptions).
            context.visible(client, Operation::Describe, ResourceType::Topic, topic)
        })
    };
    let reply = context.groups.consumer.heartbeat(heartbeat, partitions, || Uuid::new_v4().to_string(), Instant::now());
    match reply {
        Err((error, message)) => {
            tracing::debug!(group = group_id, ?error, message, "consumer group heartbeat refused");
            refuse(error, message)
        }
        Ok(reply) => {
            let assignment = reply.assignment.map(|assignment| {
                let topics = context.metadata.read(|state| {
                    assignment
                        .iter()
                        .filter_map(|(name, partitions)| {
                            let id = state.topics.get(name)?.id;
                            Some(
                                heartbeat_response::TopicPartitions::default()
                                    .with_topic_id(id)
                                    .with_partitions(partitions.iter().copied().collect()),
                            )
                        })
                        .collect()
                });
                heartbeat_response::Assignment::default().with_topic_partitions(topics)
            });
            ConsumerGroupHeartbeatResponse::default()
                .with_member_id(Some(str_bytes(reply.member_id)))
                .with_member_epoch(reply.member_epoch)
                .with_heartbeat_interval_ms(crate::groups::consumer::HEARTBEAT_INTERVAL.as_millis() as i32)
                .with_assignment(assignment)
        }
    }
}

fn described_assignment(context: &AgentContext, assignment: &Assignment) -> describe_response::Assignment {
    let topics = context.metadata.read(|state| {
        assignment
            .iter()
            .map(|(name, partitions)| {
                describe_response::TopicPartitions::default()
                    .with_topic_id(state.topics.get(name).map(|topic| topic.id).unwrap_or_default())
                    .with_topic_name(topic_name(name.clone()))
                    .with_partitions(partitions.iter().copied().collect())
            })
            .collect()
    });
    describe_response::Assignment::default().with_topic_partitions(topics)
}

/// ConsumerGroupDescribe: a consumer-protocol group's members and assignments. A classic group
/// answers GROUP_ID_NOT_FOUND, and the Admin client then describes it with DescribeGroups.
pub fn describe(context: &AgentContext, request: ConsumerGroupDescribeRequest, client: &ClientInfo) -> ConsumerGroupDescribeResponse {
    let groups = request
        .group_ids
        .into_iter()
        .map(|group_id| {
            let name = group_id.0.to_string();
            let entry = DescribedGroup::default().with_group_id(group_id);
            if !context.allowed(client, Operation::Describe, ResourceType::Group, &name) {
                return entry.with_error_code(ResponseError::GroupAuthorizationFailed.code());
            }
            if let Some(error) = super::coordinator::not_coordinator(context, &name) {
                return entry.with_error_code(error.code());
            }
            let Some(described) = context.groups.consumer.describe(&name) else {
                return entry
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(str_bytes(format!("group {name} is not a consumer-protocol group"))));
            };
            let members = described
                .members
                .iter()
                .map(|member| {
                    Member::default()
                        .with_member_id(str_bytes(member.member_id.clone()))
                        .with_instance_id(member.instance_id.clone().map(str_bytes))
                        .with_rack_id(member.rack_id.clone().map(str_bytes))
                        .with_member_epoch(member.epoch)
                        .with_client_id(str_bytes(member.client_id.clone()))
                        .with_client_host(str_bytes(format!("/{}", member.client_host)))
                        .with_subscribed_topic_names(member.subscribed.iter().map(|name| topic_name(name.clone())).collect())
                        .with_assignment(described_assignment(context, &member.assignment))
                        .with_target_assignment(described_assignment(context, &member.target))
                        .with_member_type(1)
                })
                .collect();
            entry
                .with_group_state(str_bytes(described.state))
                .with_group_epoch(described.epoch)
                .with_assignment_epoch(described.assignment_epoch)
                .with_assignor_name(str_bytes(described.assignor))
                .with_members(members)
                .with_authorized_operations(i32::MIN)
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}
