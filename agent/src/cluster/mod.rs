//! Who this agent is and which agents a client should see: a fixed single agent (playground and
//! embedded metadata) or the etcd registry (cluster mode), plus rendezvous placement of partition
//! leaders and group coordinators over the live set.

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
    /// Live agents sorted by node id; never empty (it always holds the local agent).
    fn live(&self) -> Vec<NodeInfo>;
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
