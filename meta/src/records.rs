//! Journal records: the only way metadata changes. Their encoding is part of the on-disk and
//! on-etcd format; add variants, never change the meaning of an existing one.

use crate::acl::AclBinding;
use crate::groups::StoredGroup;
use crate::scram::{ScramCredential, ScramMechanism};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// One record plus the unique id that makes appends safe to retry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub id: String,
    pub record: JournalRecord,
}

impl JournalEntry {
    pub fn new(record: JournalRecord) -> Self {
        Self { id: ulid::Ulid::new().to_string(), record }
    }
}

impl JournalRecord {
    /// A bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InitCluster { .. } => "init_cluster",
            Self::CreateTopic { .. } => "create_topic",
            Self::DeleteTopic { .. } => "delete_topic",
            Self::CommitSegment { .. } => "commit_segment",
            Self::CommitOffsets { .. } => "commit_offsets",
            Self::AllocateProducerId => "allocate_producer_id",
            Self::SetMetadataVersion { .. } => "set_metadata_version",
            Self::TrimPartitions { .. } => "trim_partitions",
            Self::CompactSegments { .. } => "compact_segments",
            Self::ObjectsDeleted { .. } => "objects_deleted",
            Self::AddPartitions { .. } => "add_partitions",
            Self::SetTopicConfigs { .. } => "set_topic_configs",
            Self::DeleteGroupOffsets { .. } => "delete_group_offsets",
            Self::DeletePartitionOffsets { .. } => "delete_partition_offsets",
            Self::SealObjects { .. } => "seal_objects",
            Self::MarkObjectLost { .. } => "mark_object_lost",
            Self::AlterScramCredentials { .. } => "alter_scram_credentials",
            Self::CreateAcls { .. } => "create_acls",
            Self::DeleteAcls { .. } => "delete_acls",
            Self::GroupMembership { .. } => "group_membership",
            Self::InitTransactionalProducer { .. } => "init_transactional_producer",
            Self::AddTransactionPartitions { .. } => "add_transaction_partitions",
            Self::AddTransactionGroup { .. } => "add_transaction_group",
            Self::TxnOffsetCommit { .. } => "txn_offset_commit",
            Self::EndTransaction { .. } => "end_transaction",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JournalRecord {
    /// First record of a virtual cluster; later ones are ignored.
    InitCluster {
        cluster_id: String,
    },
    CreateTopic {
        name: String,
        topic_id: Uuid,
        partitions: i32,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        name: String,
        topic_id: Uuid,
    },
    /// One flushed segment object and the partition chunks inside it.
    CommitSegment {
        object: String,
        chunks: Vec<ChunkCommit>,
    },
    CommitOffsets {
        group: String,
        offsets: Vec<OffsetCommitEntry>,
    },
    AllocateProducerId,
    /// Raises the version of the apply function all agents must run (never lowers it).
    SetMetadataVersion {
        version: u32,
    },
    /// Retention: move each partition's log start forward; chunks wholly below it are dropped.
    TrimPartitions {
        trims: Vec<PartitionTrim>,
    },
    /// Compaction: chunks of small segments now live, byte-identical, in `object`. A replacement
    /// applies only if the partition still references exactly the listed source chunks.
    CompactSegments {
        object: String,
        replacements: Vec<ChunkReplacement>,
    },
    /// Objects the garbage collector deleted (an audit trail; the state does not change).
    ObjectsDeleted {
        objects: Vec<String>,
    },
    /// Grows a topic to `partitions` partitions (never shrinks it).
    AddPartitions {
        name: String,
        topic_id: Uuid,
        partitions: i32,
    },
    /// Replaces a topic's explicitly set configs (keys not listed fall back to defaults).
    SetTopicConfigs {
        name: String,
        topic_id: Uuid,
        configs: BTreeMap<String, String>,
    },
    /// Forgets every committed offset of a consumer group.
    DeleteGroupOffsets {
        group: String,
    },
    /// Forgets a consumer group's committed offsets for some partitions (OffsetDelete).
    DeletePartitionOffsets {
        group: String,
        partitions: Vec<GroupPartition>,
    },
    /// Garbage collection's fence (metadata version 3): from here on, apply refuses every commit
    /// or compaction naming a segment object stamped with a journal revision at or below
    /// `through_revision` (`storage::layout`), so such an object that nothing references can
    /// never be referenced again and may be deleted. Never lowers the seal.
    SealObjects {
        through_revision: u64,
    },
    /// An operator's explicit decision (`floe admin mark-lost`): `object` is gone for good, so
    /// every chunk it held is dropped from the index and consumers move past the gap, as after
    /// Kafka's unclean leader election. Offsets are never reused: high watermarks do not move.
    MarkObjectLost {
        object: String,
    },
    /// Sets and removes SCRAM credentials of one user, all or nothing (metadata version 4): apply
    /// changes nothing when a removed mechanism has no credential. Every agent verifies the
    /// user's next authentication against the result.
    AlterScramCredentials {
        user: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        set: Vec<ScramCredential>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        remove: Vec<ScramMechanism>,
    },
    /// Adds ACL bindings (metadata version 5); one already present is left as it is, as Kafka
    /// does. Every agent authorizes its next request against the result.
    CreateAcls {
        acls: Vec<AclBinding>,
    },
    /// Removes exactly these ACL bindings (metadata version 5): the agent that took a DeleteAcls
    /// request resolved its filters against its replica; apply removes those still present and
    /// reports which, so concurrent deletions answer each binding once.
    DeleteAcls {
        acls: Vec<AclBinding>,
    },
    /// A consumer group's membership after a rebalance, or with no members once it emptied
    /// (metadata version 6; `floe_meta::groups`). Applied only if its generation is not older than
    /// the stored one, so a late record from a former coordinator cannot undo a newer rebalance.
    GroupMembership {
        group: String,
        stored: StoredGroup,
    },
    /// InitProducerId with a `transactional.id` (metadata version 7, `floe_meta::transactions`):
    /// allocates its producer id, or bumps the epoch of the one it has, fencing older producers.
    /// Refused while a transaction is ongoing (the agent aborts it first).
    InitTransactionalProducer {
        transactional_id: String,
        timeout_ms: i32,
        /// The producer's own id and epoch when it asks for a bump (KIP-360), else -1.
        producer_id: i64,
        producer_epoch: i16,
    },
    /// AddPartitionsToTxn: starts the transaction if needed (`now_ms` is the coordinator's clock,
    /// for the timeout) and adds the partitions.
    AddTransactionPartitions {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<GroupPartition>,
        now_ms: i64,
    },
    /// AddOffsetsToTxn.
    AddTransactionGroup {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        group: String,
        now_ms: i64,
    },
    /// TxnOffsetCommit: offsets that become the group's committed offsets with the commit.
    TxnOffsetCommit {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        group: String,
        offsets: Vec<OffsetCommitEntry>,
    },
    /// EndTxn, a timeout abort, or the abort before a new producer takes the transactional id:
    /// the decision and its markers (one control batch per partition of the transaction, stored
    /// in `object`) in one record, so they apply together or not at all.
    EndTransaction {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        /// Fence the producer: its epoch is bumped with the end.
        bump_epoch: bool,
        object: String,
        markers: Vec<ChunkCommit>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupPartition {
    pub topic: String,
    pub partition: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionTrim {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
    pub log_start_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkReplacement {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
    /// First offset of the first replaced chunk and end offset of the last one.
    pub base_offset: i64,
    pub end_offset: i64,
    /// The source objects, in order, that the replaced chunks came from.
    pub sources: Vec<String>,
    pub byte_start: u64,
    pub byte_len: u64,
    pub max_timestamp: i64,
}

/// One partition's contiguous byte range inside a segment object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkCommit {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
    pub record_count: i64,
    pub byte_start: u64,
    pub byte_len: u64,
    pub max_timestamp: i64,
    /// Every batch of the chunk in order, listed when at least one came from an idempotent
    /// producer (empty otherwise). Apply checks their sequences and leaves duplicates and
    /// out-of-order batches out of the log (metadata version 2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batches: Vec<ProducedBatch>,
}

/// One client batch inside a chunk: who produced it and how large it is. Short JSON names keep
/// commit records small (one of these per batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducedBatch {
    /// -1 for a batch from a producer that is not idempotent.
    #[serde(rename = "p")]
    pub producer_id: i64,
    #[serde(rename = "e")]
    pub producer_epoch: i16,
    #[serde(rename = "s")]
    pub base_sequence: i32,
    #[serde(rename = "n")]
    pub record_count: i64,
    #[serde(rename = "l")]
    pub byte_len: u64,
    /// Written inside a transaction (metadata version 7): appended only while its producer's
    /// transaction is ongoing and includes the partition.
    #[serde(rename = "t", default, skip_serializing_if = "is_false")]
    pub transactional: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OffsetCommitEntry {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}
