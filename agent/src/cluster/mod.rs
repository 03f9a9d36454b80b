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
    /// The agents a client of this agent is shown (Metadata's brokers and partition leaders,
    /// DescribeCluster): the live agents that serve at least the traffic this one serves, so a
    /// client bootstrapped at a produce-only pool is led only to agents that take produce requests
    /// and one bootstrapped at a fetch-only pool only to agents that serve fetches. Coordinators
    /// are placed over [`ClusterView::live_serving`] (every agent must agree on them).
    fn advertised(&self) -> Vec<NodeInfo> {
        self.live()
    }
    /// The live agents that serve `traffic`: where the coordinators of that traffic's clients are
    /// placed (groups on agents serving fetch, transactional ids on agents serving produce), so a
    /// client bootstrapped at a pool learns of no agent outside it through FindCoordinator.
    fn live_serving(&self, _traffic: Traffic) -> Vec<NodeInfo> {
        self.live()
    }
    /// Whether this agent serves `traffic` (its `--roles`).
    fn serves(&self, _traffic: Traffic) -> bool {
        true
    }
    /// True while this agent drains and other live agents have taken over its partitions and
    /// groups: produce and fetch answer NOT_LEADER_OR_FOLLOWER, group APIs NOT_COORDINATOR.
    fn handing_over(&self) -> bool {
        false
    }
}

/// Client traffic an agent may be limited to by its roles (`--roles produce`, `--roles fetch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    Produce,
    Fetch,
}

impl Traffic {
    pub const ALL: [Traffic; 2] = [Traffic::Produce, Traffic::Fetch];

    /// The role that grants this traffic, as `--roles` and the agent records spell it.
    pub fn role(self) -> &'static str {
        match self {
            Traffic::Produce => "produce",
            Traffic::Fetch => "fetch",
        }
    }
}

/// Whether an agent with `roles` serves `traffic`. No roles at all (a record that never listed
/// them) serves everything, as an agent started without `--roles` does.
pub fn roles_serve(roles: &[String], traffic: Traffic) -> bool {
    roles.is_empty() || roles.iter().any(|role| role == traffic.role())
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
