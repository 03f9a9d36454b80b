//! Who this agent is and which agents a client should see. Today a single agent advertises itself
//! for every partition; cluster mode adds the etcd registry and rendezvous placement here.

/// The advertised identity of this agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// Leader epoch advertised for every partition. It only changes when placement changes, which a
/// single agent never does; a constant ≥ 0 keeps clients' epoch checks monotonic.
pub const LEADER_EPOCH: i32 = 0;
