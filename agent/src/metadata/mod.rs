//! Metadata as a replicated state machine: every change is a journal record, applied in journal
//! order by a deterministic function, so every replica computes the same offsets.
//!
//! `records` defines what is written, `state` the apply function, `replica` the in-memory copy and
//! its waiters, `journal` the backends (embedded file today, etcd behind the same trait later),
//! `client` the narrow interface handlers use.

pub mod client;
pub mod etcd;
pub mod journal;
pub mod topic_config;

// The journal's format and apply function, the etcd key layout and the registration are shared
// with the operator (crate `floe-meta`); re-exported so `metadata::…` paths keep working.
pub use floe_meta::{keys, producers, records, registration, replica, snapshot, state};

pub use client::{MetadataClient, MetadataError};
pub use producers::SequenceError;
pub use records::{
    ChunkCommit, ChunkReplacement, GroupPartition, JournalEntry, JournalRecord, OffsetCommitEntry, PartitionTrim, ProducedBatch,
};
pub use state::{
    ApplyOutcome, BatchApplied, ChunkApplied, ChunkLocation, MetadataState, PartitionState, TopicState, SUPPORTED_METADATA_VERSION,
};
