//! FindCoordinator: the coordinator of a group is the rendezvous winner over live agents, the same
//! answer from every agent. Exactly one entry per key (v4+).

use super::{str_bytes, AgentContext};
use crate::cluster::{placement, NodeInfo};
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

pub fn find(context: &AgentContext, request: FindCoordinatorRequest, version: i16) -> FindCoordinatorResponse {
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
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
    let node = coordinator_for(context, &request.key);
    FindCoordinatorResponse::default().with_node_id(BrokerId(node.node_id)).with_host(str_bytes(node.host)).with_port(node.port)
}
