//! Journal records: the only way metadata changes. Their encoding is part of the on-disk and
//! on-etcd format; add variants, never change the meaning of an existing one.

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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OffsetCommitEntry {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}
