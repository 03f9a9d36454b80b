//! Who this agent is and which agents a client should see: a fixed single agent (playground and
//! embedded metadata) or the etcd registry (cluster mode), plus rendezvous placement of partition
//! leaders and group coordinators over the live set.

pub mod load;
pub mod placement;
pub mod registry;

/// The advertised identity of an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    /// The agent's zone, advertised to clients as its rack.
    pub rack: Option<String>,
}

/// Leader epoch advertised for every partition. Leaders move by placement, not by elections, and
/// Kafka clients accept a leader change at an equal epoch; a constant ≥ 0 keeps their epoch
/// checks monotonic on every agent.
pub const LEADER_EPOCH: i32 = 0;

/// The live agents of this virtual cluster, as every handler sees them.
pub trait ClusterView: Send + Sync {
    fn local(&self) -> NodeInfo;
    /// Live agents sorted by node id; never empty (it holds the local agent unless the local
    /// agent drains and others are live).
    fn live(&self) -> Vec<NodeInfo>;
    /// True while this agent drains and other live agents have taken over its partitions and
    /// groups: produce and fetch answer NOT_LEADER_OR_FOLLOWER, group APIs NOT_COORDINATOR.
    fn handing_over(&self) -> bool {
        false
    }
}

/// A cluster of exactly one agent.
pub struct SingleAgent(pub NodeInfo);

impl ClusterView for SingleAgent {
    fn local(&self) -> NodeInfo {
        self.0.clone()
    }

    fn live(&self) -> Vec<NodeInfo> {
        vec![self.0.clone()]
    }
}
