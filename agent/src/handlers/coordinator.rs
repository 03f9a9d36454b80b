//! FindCoordinator: the coordinator of a group is the rendezvous winner over the live agents that
//! serve fetches, of a transactional id over those that take produce requests: the same answer
//! from every agent, and one that keeps a client bootstrapped at a fetch-only (or produce-only)
//! pool inside it (a client asks any broker it knows for Metadata, its coordinator included, and
//! would be led to the other pool's partition leaders). Exactly one entry per key (v4+).

use super::{str_bytes, AgentContext, ClientInfo};
use crate::cluster::{placement, ClusterView, NodeInfo, Traffic};
use floe_meta::acl::{Operation, ResourceType};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

/// What a coordinator coordinates (FindCoordinator's key type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coordinated {
    /// A consumer (or share) group: its members fetch.
    Group,
    /// A transactional id: its producer produces.
    Transaction,
}

impl Coordinated {
    /// Kafka's key types: 0 a group, 1 a transactional id.
    fn from_key_type(key_type: i8) -> Self {
        if key_type == 1 {
            Coordinated::Transaction
        } else {
            Coordinated::Group
        }
    }

    fn traffic(self) -> Traffic {
        match self {
            Coordinated::Group => Traffic::Fetch,
            Coordinated::Transaction => Traffic::Produce,
        }
    }
}

/// The agent coordinating `key`: over the live agents serving its clients' traffic, or over all
/// live agents when none does (a cluster whose roles leave that traffic nowhere).
pub fn coordinator_for(context: &AgentContext, coordinated: Coordinated, key: &str) -> NodeInfo {
    coordinator_in(context.cluster.as_ref(), coordinated, key)
}

/// [`coordinator_for`] from the cluster view alone (for what runs outside a request).
pub fn coordinator_in(cluster: &dyn ClusterView, coordinated: Coordinated, key: &str) -> NodeInfo {
    let mut candidates = cluster.live_serving(coordinated.traffic());
    if candidates.is_empty() {
        candidates = cluster.live();
    }
    placement::group_coordinator(&candidates, key).cloned().unwrap_or_else(|| cluster.local())
}

/// `Some(NOT_COORDINATOR)` when another agent coordinates `group_id`.
pub fn not_coordinator(context: &AgentContext, group_id: &str) -> Option<ResponseError> {
    (coordinator_for(context, Coordinated::Group, group_id).node_id != context.cluster.local().node_id)
        .then_some(ResponseError::NotCoordinator)
}

/// DESCRIBE on the group (or transactional id) the key names; its code when refused.
fn refused(context: &AgentContext, client: &ClientInfo, key_type: i8, key: &str) -> Option<ResponseError> {
    if Coordinated::from_key_type(key_type) == Coordinated::Transaction {
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
                let node = coordinator_for(context, Coordinated::from_key_type(request.key_type), &key);
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
    let node = coordinator_for(context, Coordinated::from_key_type(request.key_type), &request.key);
    FindCoordinatorResponse::default().with_node_id(BrokerId(node.node_id)).with_host(str_bytes(node.host)).with_port(node.port)
}
