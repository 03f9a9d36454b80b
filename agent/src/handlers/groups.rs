//! JoinGroup, SyncGroup, Heartbeat, LeaveGroup, DescribeGroups and ListGroups over the in-memory
//! coordinator.

use super::{str_bytes, AgentContext, ClientInfo};
use crate::groups::JoinRequest;
use bytes::Bytes;
use floe_meta::acl::{Operation, ResourceType};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::*;
use std::collections::BTreeSet;
use std::time::Duration;

fn code(error: Option<ResponseError>) -> i16 {
    error.map(|error| error.code()).unwrap_or(0)
}

/// Kafka's first check of JoinGroup, SyncGroup, Heartbeat and LeaveGroup: READ on the group.
fn may_not_read(context: &AgentContext, client: &ClientInfo, group: &str) -> Option<ResponseError> {
    (!context.allowed(client, Operation::Read, ResourceType::Group, group)).then_some(ResponseError::GroupAuthorizationFailed)
}

pub async fn join(context: &AgentContext, request: JoinGroupRequest, version: i16, client: &ClientInfo) -> JoinGroupResponse {
    if let Some(error) =
        may_not_read(context, client, &request.group_id.0).or_else(|| super::coordinator::not_coordinator(context, &request.group_id.0))
    {
        return JoinGroupResponse::default().with_error_code(error.code()).with_generation_id(-1);
    }
    if request.group_id.0.is_empty() {
        return JoinGroupResponse::default().with_error_code(ResponseError::InvalidGroupId.code()).with_generation_id(-1);
    }
    let session_timeout = request.session_timeout_ms;
    if !(1000..=1_800_000).contains(&session_timeout) {
        return JoinGroupResponse::default().with_error_code(ResponseError::InvalidSessionTimeout.code()).with_generation_id(-1);
    }
    // A member's metadata is held for its session and sent to the leader at every rebalance: one
    // client could make the agent hold (and send) tens of MiB per member. Kafka fails the group's
    // SyncGroup once the group record exceeds message.max.bytes; refused here, before any of it
    // is kept, with the code that names the cause.
    let metadata_limit = context.settings.limits.group_max_member_metadata_bytes;
    if let Some(protocol) = request.protocols.iter().find(|protocol| protocol.metadata.len() > metadata_limit) {
        context.metrics.requests_refused.with_label_values(&["group_max_member_metadata_bytes"]).inc();
        tracing::warn!(
            group = %request.group_id.0,
            client_id = %client.client_id,
            protocol = %protocol.name,
            bytes = protocol.metadata.len(),
            limit = metadata_limit,
            "JoinGroup refused with MESSAGE_TOO_LARGE: member metadata past --group-max-member-metadata-bytes"
        );
        return JoinGroupResponse::default().with_error_code(ResponseError::MessageTooLarge.code()).with_generation_id(-1);
    }
    // v0 has no rebalance timeout; Kafka uses the session timeout then.
    let rebalance_timeout = if version >= 1 && request.rebalance_timeout_ms > 0 { request.rebalance_timeout_ms } else { session_timeout };
    // The request (slices of its frame) is consumed here, not kept while the join waits for the
    // rebalance: the frame's memory budget is given back now.
    let request = {
        let request = request;
        JoinRequest {
            group_id: request.group_id.0.to_string(),
            member_id: request.member_id.to_string(),
            client_id: client.client_id.clone(),
            client_host: client.host.clone(),
            session_timeout: Duration::from_millis(session_timeout as u64),
            rebalance_timeout: Duration::from_millis(rebalance_timeout as u64),
            protocol_type: request.protocol_type.to_string(),
            // Copied out of the frame: a slice would keep the whole request frame alive for the
            // member's life (8 JoinGroups padded to 60 MiB once held 420 MiB).
            protocols: request
                .protocols
                .into_iter()
                .map(|protocol| (protocol.name.to_string(), Bytes::copy_from_slice(&protocol.metadata)))
                .collect(),
            require_known_member_id: version >= 4,
        }
    };
    let outcome = context.groups.join(request);
    let Ok(outcome) = outcome.await else {
        return JoinGroupResponse::default().with_error_code(ResponseError::CoordinatorNotAvailable.code()).with_generation_id(-1);
    };
    if outcome.error == Some(ResponseError::GroupMaxSizeReached) {
        context.metrics.requests_refused.with_label_values(&["group_max_size"]).inc();
    }
    JoinGroupResponse::default()
        .with_error_code(code(outcome.error))
        .with_generation_id(outcome.generation_id)
        .with_protocol_type(outcome.protocol_type.map(str_bytes))
        // Before v7 the protocol name is not nullable; an empty string stands for "none".
        .with_protocol_name(Some(str_bytes(outcome.protocol_name.unwrap_or_default())))
        .with_leader(str_bytes(outcome.leader))
        .with_member_id(str_bytes(outcome.member_id))
        .with_members(
            outcome
                .members
                .into_iter()
                .map(|(member_id, metadata)| {
                    JoinGroupResponseMember::default().with_member_id(str_bytes(member_id)).with_metadata(metadata)
                })
                .collect(),
        )
}

pub async fn sync(context: &AgentContext, request: SyncGroupRequest, client: &ClientInfo) -> SyncGroupResponse {
    if let Some(error) =
        may_not_read(context, client, &request.group_id.0).or_else(|| super::coordinator::not_coordinator(context, &request.group_id.0))
    {
        return SyncGroupResponse::default().with_error_code(error.code());
    }
    let assignment_limit = context.settings.limits.group_max_member_metadata_bytes;
    if let Some(assignment) = request.assignments.iter().find(|assignment| assignment.assignment.len() > assignment_limit) {
        context.metrics.requests_refused.with_label_values(&["group_max_member_metadata_bytes"]).inc();
        tracing::warn!(
            group = %request.group_id.0,
            member = %assignment.member_id,
            bytes = assignment.assignment.len(),
            limit = assignment_limit,
            "SyncGroup refused with MESSAGE_TOO_LARGE: an assignment past --group-max-member-metadata-bytes"
        );
        return SyncGroupResponse::default().with_error_code(ResponseError::MessageTooLarge.code());
    }
    // Copied out of the frame, which would otherwise live as long as the assignment; the request
    // itself is dropped before waiting for the leader's assignment.
    let outcome = {
        let request = request;
        let assignments = request
            .assignments
            .into_iter()
            .map(|assignment| (assignment.member_id.to_string(), Bytes::copy_from_slice(&assignment.assignment)))
            .collect();
        context.groups.sync(&request.group_id.0, request.generation_id, &request.member_id, assignments)
    };
    let Ok(outcome) = outcome.await else {
        return SyncGroupResponse::default().with_error_code(ResponseError::RebalanceInProgress.code());
    };
    SyncGroupResponse::default()
        .with_error_code(code(outcome.error))
        .with_protocol_type(outcome.protocol_type.map(str_bytes))
        .with_protocol_name(outcome.protocol_name.map(str_bytes))
        .with_assignment(outcome.assignment)
}

pub fn heartbeat(context: &AgentContext, request: HeartbeatRequest, client: &ClientInfo) -> HeartbeatResponse {
    if let Some(error) =
        may_not_read(context, client, &request.group_id.0).or_else(|| super::coordinator::not_coordinator(context, &request.group_id.0))
    {
        return HeartbeatResponse::default().with_error_code(error.code());
    }
    HeartbeatResponse::default().with_error_code(code(context.groups.heartbeat(
        &request.group_id.0,
        request.generation_id,
        &request.member_id,
    )))
}

pub fn leave(context: &AgentContext, request: LeaveGroupRequest, version: i16, client: &ClientInfo) -> LeaveGroupResponse {
    if let Some(error) =
        may_not_read(context, client, &request.group_id.0).or_else(|| super::coordinator::not_coordinator(context, &request.group_id.0))
    {
        return LeaveGroupResponse::default().with_error_code(error.code());
    }
    if version < 3 {
        let results = context.groups.leave(&request.group_id.0, &[request.member_id.to_string()]);
        return LeaveGroupResponse::default().with_error_code(code(results.into_iter().next().flatten()));
    }
    let ids: Vec<String> = request.members.iter().map(|member| member.member_id.to_string()).collect();
    let results = context.groups.leave(&request.group_id.0, &ids);
    let members = request
        .members
        .into_iter()
        .zip(results)
        .map(|(member, error)| {
            MemberResponse::default()
                .with_member_id(member.member_id)
                .with_group_instance_id(member.group_instance_id)
                .with_error_code(code(error))
        })
        .collect();
    LeaveGroupResponse::default().with_members(members)
}

pub fn describe(context: &AgentContext, request: DescribeGroupsRequest, client: &ClientInfo) -> DescribeGroupsResponse {
    let with_operations = request.include_authorized_operations;
    let groups = request
        .groups
        .into_iter()
        .map(|group_id| {
            if !context.allowed(client, Operation::Describe, ResourceType::Group, &group_id.0) {
                return DescribedGroup::default()
                    .with_group_id(group_id)
                    .with_error_code(ResponseError::GroupAuthorizationFailed.code())
                    .with_authorized_operations(i32::MIN);
            }
            let operations =
                if with_operations { context.authorized_operations(client, ResourceType::Group, &group_id.0) } else { i32::MIN };
            let described = DescribedGroup::default().with_group_id(group_id.clone()).with_authorized_operations(operations);
            match context.groups.describe(&group_id.0) {
                Some(summary) => described
                    .with_group_state(str_bytes(summary.state))
                    .with_protocol_type(str_bytes(summary.protocol_type))
                    .with_protocol_data(str_bytes(summary.protocol_name))
                    .with_members(
                        summary
                            .members
                            .into_iter()
                            .map(|member| {
                                DescribedGroupMember::default()
                                    .with_member_id(str_bytes(member.member_id))
                                    .with_client_id(str_bytes(member.client_id))
                                    .with_client_host(str_bytes(member.client_host))
                                    .with_member_metadata(member.metadata)
                                    .with_member_assignment(member.assignment)
                            })
                            .collect(),
                    ),
                None => {
                    let has_offsets = context.metadata.read(|state| state.group_offsets.contains_key(group_id.0.as_str()));
                    let state = if has_offsets { "Empty" } else { "Dead" };
                    let protocol_type = if has_offsets { "consumer" } else { "" };
                    described.with_group_state(str_bytes(state)).with_protocol_type(str_bytes(protocol_type))
                }
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

/// Every group with DESCRIBE on the cluster; otherwise only the groups the client may describe
/// (Kafka's rule; nothing is refused).
pub fn list(context: &AgentContext, request: ListGroupsRequest, client: &ClientInfo) -> ListGroupsResponse {
    let all_visible = context.visible(client, Operation::Describe, ResourceType::Cluster, floe_meta::acl::CLUSTER_NAME);
    let mut seen = BTreeSet::new();
    let mut groups = Vec::new();
    // (group id, protocol type, state, type): KIP-848 groups are of type "consumer".
    for (group_id, state) in context.groups.consumer.list() {
        seen.insert(group_id.clone());
        groups.push((group_id, "consumer".to_string(), state.to_string(), "consumer"));
    }
    for (group_id, protocol_type, state) in context.groups.list() {
        if seen.insert(group_id.clone()) {
            groups.push((group_id, protocol_type, state.to_string(), "classic"));
        }
    }
    for group_id in context.metadata.read(|state| state.group_offsets.keys().cloned().collect::<Vec<_>>()) {
        if seen.insert(group_id.clone()) {
            groups.push((group_id, "consumer".to_string(), "Empty".to_string(), "classic"));
        }
    }
    let wanted = |state: &str, group_type: &str| {
        (request.states_filter.is_empty() || request.states_filter.iter().any(|filter| filter.as_str().eq_ignore_ascii_case(state)))
            && (request.types_filter.is_empty()
                || request.types_filter.iter().any(|filter| filter.as_str().eq_ignore_ascii_case(group_type)))
    };
    let listed = groups
        .into_iter()
        .filter(|(_, _, state, group_type)| wanted(state, group_type))
        .filter(|(group_id, _, _, _)| all_visible || context.visible(client, Operation::Describe, ResourceType::Group, group_id))
        .map(|(group_id, protocol_type, state, group_type)| {
            ListedGroup::default()
                .with_group_id(GroupId(str_bytes(group_id)))
                .with_protocol_type(str_bytes(protocol_type))
                .with_group_state(str_bytes(state))
                .with_group_type(str_bytes(group_type))
        })
        .collect();
    ListGroupsResponse::default().with_groups(listed)
}

/// DeleteGroups: only empty groups (no live members) can be deleted; their offsets go with them.
pub async fn delete(context: &AgentContext, request: DeleteGroupsRequest, client: &ClientInfo) -> DeleteGroupsResponse {
    use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
    let mut results = Vec::with_capacity(request.groups_names.len());
    for group_id in request.groups_names {
        let name = group_id.0.to_string();
        let error = if !context.allowed(client, Operation::Delete, ResourceType::Group, &name) {
            Some(ResponseError::GroupAuthorizationFailed)
        } else if let Some(error) = super::coordinator::not_coordinator(context, &name) {
            Some(error)
        } else {
            let live = context.groups.describe(&name).filter(|summary| !summary.members.is_empty());
            let has_offsets = context.metadata.read(|state| state.group_offsets.contains_key(&name));
            if live.is_some() {
                Some(ResponseError::NonEmptyGroup)
            } else if !has_offsets && context.groups.describe(&name).is_none() {
                Some(ResponseError::GroupIdNotFound)
            } else {
                context.groups.forget(&name);
                match context.metadata.submit(crate::metadata::JournalRecord::DeleteGroupOffsets { group: name.clone() }).await {
                    Ok(_) => None,
                    Err(error) => {
                        tracing::warn!(%error, group = name, "failed to delete group offsets");
                        Some(ResponseError::CoordinatorNotAvailable)
                    }
                }
            }
        };
        results.push(DeletableGroupResult::default().with_group_id(group_id).with_error_code(code(error)));
    }
    DeleteGroupsResponse::default().with_results(results)
}
