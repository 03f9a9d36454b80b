//! `/status`: the live facts `floe diagnose` asks each agent for, as one JSON object: which node it
//! is, its build and the metadata version it implements, how far its replica has applied the
//! journal (and whether it halted), and its wall clock. Read-only and cheap (one read lock), so
//! polling it costs the agent nothing.
//!
//! The fixed facts of the build (version, supported metadata version) are also in the agent's
//! registry record, where they can be read without reaching the agent; what changes by the
//! millisecond (applied revision, clock) is only here: writing it to etcd would cost a write per
//! journal record.

use crate::cluster::ClusterView;
use crate::metadata::replica::Replica;
use crate::metadata::SUPPORTED_METADATA_VERSION;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// What `/status` answers. New fields must default, so a newer `floe diagnose` still reads an
/// older agent's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub node_id: i32,
    /// The agent's build (`floe --version`).
    pub version: String,
    /// The newest metadata version this build implements.
    pub supported_metadata_version: u32,
    /// The metadata version this agent's replica has applied (the cluster's, unless it halted).
    pub metadata_version: u32,
    /// Set when the journal raised the metadata version beyond `supported_metadata_version`: the
    /// replica stopped applying records and this agent serves stale metadata until upgraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted_at_version: Option<u32>,
    /// etcd revision of the last journal record (or snapshot) the replica has applied.
    pub applied_revision: u64,
    /// The agent's wall clock when it answered, in Unix milliseconds.
    pub unix_time_ms: u64,
}

/// Where `/status` reads its answer from.
pub struct StatusSource {
    pub replica: Arc<Replica>,
    /// For the node id, which can change when the agent registers again after a lost lease.
    pub cluster: Arc<dyn ClusterView>,
}

impl StatusSource {
    pub fn status(&self, now: SystemTime) -> AgentStatus {
        let (metadata_version, halted_at_version) = self.replica.read(|state| (state.metadata_version, state.halted_at_version));
        AgentStatus {
            node_id: self.cluster.local().node_id,
            version: crate::VERSION.to_string(),
            supported_metadata_version: SUPPORTED_METADATA_VERSION,
            metadata_version,
            halted_at_version,
            applied_revision: self.replica.applied_revision(),
            unix_time_ms: now.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{NodeInfo, SingleAgent};
    use crate::metadata::records::{JournalEntry, JournalRecord};
    use std::time::Duration;

    #[test]
    fn the_status_names_the_node_its_replicas_progress_and_its_clock() {
        let replica = Arc::new(Replica::new());
        replica.apply(5, &JournalEntry::new(JournalRecord::SetMetadataVersion { version: 3 }));
        // A journal raised beyond this build: the replica halts, its revision still moves.
        replica.apply(9, &JournalEntry::new(JournalRecord::SetMetadataVersion { version: SUPPORTED_METADATA_VERSION + 1 }));
        let node = NodeInfo { node_id: 4, host: "127.0.0.1".into(), port: 9092, rack: None };
        let source = StatusSource { replica, cluster: Arc::new(SingleAgent(node)) };
        let status = source.status(UNIX_EPOCH + Duration::from_millis(1_767_225_600_123));
        assert_eq!(
            status,
            AgentStatus {
                node_id: 4,
                version: crate::VERSION.to_string(),
                supported_metadata_version: SUPPORTED_METADATA_VERSION,
                metadata_version: 3,
                halted_at_version: Some(SUPPORTED_METADATA_VERSION + 1),
                applied_revision: 9,
                unix_time_ms: 1_767_225_600_123,
            }
        );
        let json = serde_json::to_string(&status).expect("serializes");
        assert_eq!(serde_json::from_str::<AgentStatus>(&json).expect("parses"), status);
    }
}
