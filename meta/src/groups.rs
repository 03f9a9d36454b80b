//! A consumer group's membership as of its last completed rebalance (metadata version 6), kept in
//! the journal as Kafka keeps it in `__consumer_offsets`: whichever agent coordinates the group
//! next (the coordinator died, or placement moved when an agent joined or left) knows its
//! generation, leader, members and their assignments, so the members keep heartbeating and
//! committing in their generation instead of being fenced (UNKNOWN_MEMBER_ID) and rebalancing,
//! which would make a Kafka Streams application reprocess and a consumer redeliver.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredGroup {
    pub generation: i32,
    pub protocol_type: String,
    pub protocol_name: String,
    pub leader: String,
    /// Empty when the group has no members (its generation still counts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<StoredMember>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMember {
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    /// The member's metadata for the chosen protocol (what the leader assigned from).
    #[serde(with = "crate::scram::base64_bytes")]
    pub metadata: Vec<u8>,
    #[serde(with = "crate::scram::base64_bytes")]
    pub assignment: Vec<u8>,
}
