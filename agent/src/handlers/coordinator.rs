//! FindCoordinator: the coordinator of a group is the rendezvous winner over live agents, the same
//! answer from every agent. Exactly one entry per key (v4+).

use super::{str_bytes, AgentContext, ClientInfo};
use crate::cluster::{placement, NodeInfo};
use floe_meta::acl::{Operation, ResourceType};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

/// The agent coordinating `key` (groups and, later, transactional ids).
pub fn coordinator_for(context: &AgentContext, key: &str) -> NodeInfo {
    let live = context.cluster.live();
    placement::group_coordinator(&live, key).cloned().unwrap_or_else(|| context.cluster.local())
}

/// `Some(NOT_COORDINATOR)` when another agent coordinates `group_id`.
pub fn not_coordinator(context: &AgentContext, group_id: &str) -> Option<ResponseError> {
    (coordinator_for(context, group_id).node_id != context.cluster.local().node_id).then_some(ResponseError::NotCoordinator)
}

/// Kafka's key types: 0 a group, 1 a transactional id.
const TRANSACTION_KEY: i8 = 1;

/// DESCRIBE on the group (or transactional id) the key names; its code when refused.
fn refused(context: &AgentContext, client: &ClientInfo, key_type: i8, key: &str) -> Option<ResponseError> {
    if key_type == TRANSACTION_KEY {
        (!context.allowed(client, Operation::Describe, ResourceType::TransactionalId, key))
            .then_some(ResponseError::TransactionalIdAuthorizationFailed)
    } else {
        (!context.allowed(client, Operation::Describe, ResourceType::Group, key)).then_some(ResponseError::GroupAuthorizationFailed)
    }
}

pub fn find(context: &AgentContext, request: FindCoordinatorRequest, version: i16, client: &ClientInfo) -> FindCoordinatorResponse {
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                if let Some(error) = refused(context, client, request.key_type, &key) {
                    return Coordinator::default().with_key(key).with_node_id(BrokerId(-1)).with_port(-1).with_error_code(error.code());
                }
                let node = coordinator_for(context, &key);
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(node.node_id))
                    .with_host(str_bytes(node.host))
                    .with_port(node.port)
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    if let Some(error) = refused(context, client, request.key_type, &request.key) {
        return FindCoordinatorResponse::default().with_node_id(BrokerId(-1)).with_port(-1).with_error_code(error.code());
    }
    let node = coordinator_for(context, &request.key);
    FindCoordinatorResponse::default().with_node_id(BrokerId(node.node_id)).with_host(str_bytes(node.host)).with_port(node.port)
}
