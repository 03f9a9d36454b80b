//! FindCoordinator: with one agent, it coordinates every group. Exactly one entry per key (v4+).

use super::{str_bytes, AgentContext};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

pub fn find(context: &AgentContext, request: FindCoordinatorRequest, version: i16) -> FindCoordinatorResponse {
    let node = &context.node;
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(node.node_id))
                    .with_host(str_bytes(node.host.clone()))
                    .with_port(node.port)
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    FindCoordinatorResponse::default().with_node_id(BrokerId(node.node_id)).with_host(str_bytes(node.host.clone())).with_port(node.port)
}
