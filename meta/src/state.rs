//! The deterministic apply function. Given the same records in the same order, every replica
//! reaches the same state and assigns the same offsets. Nothing here reads clocks, randomness or
//! the environment.

use crate::acl::AclBinding;
use crate::groups::StoredGroup;
use crate::layout::segment_name_revision;
use crate::producers::{self, ProducerStates, SequenceCheck, SequenceError};
use crate::records::{ChunkCommit, ChunkReplacement, JournalRecord, PartitionTrim};
use crate::scram::{ScramCredential, ScramMechanism};
use crate::transactions::{AbortedTransaction, Transaction, TransactionError, TransactionReply};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use uuid::Uuid;

/// The newest apply-function version this build implements. A journal that raises the version
/// beyond it halts this replica (it must be upgraded) instead of computing different offsets.
///
/// - 1: the first format.
/// - 2: commit records may list each chunk's batches, and apply leaves duplicate and out-of-order
///   idempotent batches out of the log (a version-1 replica would append them and diverge).
/// - 3: `SealObjects` fences garbage collection: apply refuses commits and compactions naming a
///   sealed segment object (a version-2 replica would append them and diverge).
/// - 4: SCRAM credentials (`AlterScramCredentials`); a version-3 replica
///   cannot read these records, so it halts at the version change instead of failing on one.
/// - 5: ACLs (`CreateAcls`, `DeleteAcls`), for the same reason.
/// - 6: consumer group membership (`GroupMembership`), for the same reason.
/// - 7: transactions (`floe_meta::transactions`): transactional batches are appended only inside
///   their producer's ongoing transaction (a version-6 replica would append them and diverge).
pub const SUPPORTED_METADATA_VERSION: u32 = 7;

/// The first metadata version whose apply refuses commits of sealed objects.
pub const SEALING_METADATA_VERSION: u32 = 3;

/// Committed consumer offsets: group → topic → partition → offset.
pub type GroupOffsets = BTreeMap<String, BTreeMap<String, BTreeMap<i32, CommittedOffset>>>;

/// Everything the journal determines. Serializable: snapshots are this structure.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetadataState {
    pub cluster_id: Option<String>,
    pub applied_revision: u64,
    #[serde(default)]
    pub metadata_version: u32,
    /// Set when the journal asked for a metadata version this build does not implement.
    #[serde(default)]
    pub halted_at_version: Option<u32>,
    pub topics: BTreeMap<String, TopicState>,
    pub group_offsets: GroupOffsets,
    pub next_producer_id: i64,
    /// Segment objects stamped with a journal revision at or below this can no longer be
    /// committed (`SealObjects`); 0 seals nothing. Only grows.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub sealed_through_revision: u64,
    /// SASL/SCRAM users: user → mechanism → credential (salted keys only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scram_credentials: BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>,
    /// Kafka ACLs (`floe_meta::acl`), consulted when the agents enforce authorization.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub acls: BTreeSet<AclBinding>,
    /// Consumer groups' membership as of their last rebalance (`floe_meta::groups`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub group_memberships: BTreeMap<String, StoredGroup>,
    /// Transactional producers by `transactional.id` (`floe_meta::transactions`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub transactions: BTreeMap<String, Transaction>,
    /// Producer id → its `transactional.id`, to verify transactional batches at apply.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub transactional_producers: BTreeMap<i64, String>,
}

fn is_zero_u64(value: &u64) -> bool {
    *value == 0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicState {
    pub id: Uuid,
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionState>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PartitionState {
    pub log_start_offset: i64,
    /// Next offset to assign; the high watermark.
    pub high_watermark: i64,
    /// Sorted by base offset, contiguous.
    pub chunks: Vec<ChunkLocation>,
    /// Idempotent producers writing to this partition.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub producers: ProducerStates,
    /// Producer id → first offset of its open transaction here; the smallest is the last
    /// stable offset.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub open_transactions: BTreeMap<i64, i64>,
    /// Aborted transactions with records at or above the log start, in marker order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aborted_transactions: Vec<AbortedTransaction>,
}

/// Where a run of offsets lives: a byte range of a segment object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkLocation {
    pub base_offset: i64,
    pub record_count: i64,
    pub object: Arc<str>,
    pub byte_start: u64,
    pub byte_len: u64,
    pub max_timestamp: i64,
    /// The chunk-relative offset stored in the first batch of this range. Zero unless apply
    /// left a duplicate batch out and the range starts after it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub relative_base: i64,
}

fn is_zero(value: &i64) -> bool {
    *value == 0
}

impl ChunkLocation {
    pub fn end_offset(&self) -> i64 {
        self.base_offset + self.record_count
    }

    /// What to add to a stored batch's (chunk-relative) base offset to get its log offset.
    pub fn stored_offset_origin(&self) -> i64 {
        self.base_offset - self.relative_base
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// What applying one record produced, for the agent that is waiting on it.
#[derive(Debug, Clone, PartialEq)]
pub enum ApplyOutcome {
    ClusterInitialized,
    TopicCreated,
    TopicAlreadyExists,
    TopicDeleted,
    TopicNotFound,
    /// Per chunk, in commit order.
    SegmentCommitted {
        chunks: Vec<ChunkApplied>,
    },
    /// Nothing of the commit was applied: its object was sealed for garbage collection (it was
    /// named before `sealed_through_revision`, so it may already be deleted). The writer stores
    /// the data again under a new name.
    SegmentRefused {
        sealed_through_revision: u64,
    },
    ObjectsSealed {
        sealed_through_revision: u64,
    },
    /// A transactional record's answer (`floe_meta::transactions`).
    Transaction(Result<TransactionReply, TransactionError>),
    /// The chunks dropped by `MarkObjectLost`: (topic, partition, first offset, end offset).
    ObjectMarkedLost {
        ranges: Vec<(String, i32, i64, i64)>,
    },
    OffsetsCommitted,
    ProducerIdAllocated {
        producer_id: i64,
    },
    MetadataVersionSet {
        version: u32,
    },
    /// This replica cannot apply records of the journal's metadata version.
    Halted {
        version: u32,
    },
    PartitionsTrimmed,
    /// How many replacements matched the current index and were applied.
    SegmentsCompacted {
        applied: usize,
    },
    ObjectsDeleted,
    PartitionsAdded {
        partitions: i32,
    },
    TopicConfigsSet,
    GroupOffsetsDeleted,
    /// `applied` is false when a newer generation was already stored.
    GroupMembershipStored {
        applied: bool,
    },
    ScramCredentialsAltered,
    /// A removed mechanism had no credential; nothing changed.
    ScramCredentialNotFound,
    AclsCreated,
    /// The bindings of a `DeleteAcls` that were present, now removed.
    AclsDeleted {
        removed: Vec<AclBinding>,
    },
}

/// What became of one committed chunk.
#[derive(Debug, Clone, PartialEq)]
pub enum ChunkApplied {
    /// Its topic no longer exists (or was recreated); nothing was appended.
    TopicGone,
    /// Appended from `base_offset`. `batches` has one entry per listed batch (empty when the chunk
    /// listed none: then every batch was appended, contiguously from `base_offset`).
    Appended { base_offset: i64, batches: Vec<BatchApplied> },
}

/// What became of one listed batch of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchApplied {
    Appended {
        base_offset: i64,
    },
    /// Left out: the same batch is already in the log at this offset.
    Duplicate {
        base_offset: i64,
    },
    /// Left out: its sequence or epoch was refused.
    Refused(SequenceError),
}

impl MetadataState {
    pub fn apply(&mut self, revision: u64, record: &JournalRecord) -> ApplyOutcome {
        if let Some(version) = self.halted_at_version {
            return ApplyOutcome::Halted { version };
        }
        self.applied_revision = revision;
        match record {
            JournalRecord::InitCluster { cluster_id } => {
                if self.cluster_id.is_none() {
                    self.cluster_id = Some(cluster_id.clone());
                }
                ApplyOutcome::ClusterInitialized
            }
            JournalRecord::CreateTopic { name, topic_id, partitions, configs } => {
                if self.topics.contains_key(name) {
                    return ApplyOutcome::TopicAlreadyExists;
                }
                let topic = TopicState {
                    id: *topic_id,
                    configs: configs.clone(),
                    partitions: vec![PartitionState::default(); (*partitions).max(0) as usize],
                };
                self.topics.insert(name.clone(), topic);
                ApplyOutcome::TopicCreated
            }
            JournalRecord::DeleteTopic { name, topic_id } => match self.topics.get(name) {
                Some(topic) if topic.id == *topic_id => {
                    self.topics.remove(name);
                    ApplyOutcome::TopicDeleted
                }
                _ => ApplyOutcome::TopicNotFound,
            },
            JournalRecord::CommitSegment { object, chunks } => {
                if self.is_sealed(object) {
                    return ApplyOutcome::SegmentRefused { sealed_through_revision: self.sealed_through_revision };
                }
                let object: Arc<str> = Arc::from(object.as_str());
                let chunks = chunks.iter().map(|chunk| self.append_chunk(revision, &object, chunk)).collect();
                ApplyOutcome::SegmentCommitted { chunks }
            }
            JournalRecord::CommitOffsets { group, offsets } => {
                let committed = self.group_offsets.entry(group.clone()).or_default();
                for entry in offsets {
                    committed.entry(entry.topic.clone()).or_default().insert(
                        entry.partition,
                        CommittedOffset { offset: entry.offset, leader_epoch: entry.leader_epoch, metadata: entry.metadata.clone() },
                    );
                }
                ApplyOutcome::OffsetsCommitted
            }
            JournalRecord::AllocateProducerId => {
                let producer_id = self.next_producer_id;
                self.next_producer_id += 1;
                ApplyOutcome::ProducerIdAllocated { producer_id }
            }
            JournalRecord::SetMetadataVersion { version } => {
                if *version > SUPPORTED_METADATA_VERSION {
                    self.halted_at_version = Some(*version);
                    return ApplyOutcome::Halted { version: *version };
                }
                self.metadata_version = self.metadata_version.max(*version);
                ApplyOutcome::MetadataVersionSet { version: self.metadata_version }
            }
            JournalRecord::TrimPartitions { trims } => {
                for trim in trims {
                    self.trim_partition(trim);
                }
                ApplyOutcome::PartitionsTrimmed
            }
            JournalRecord::CompactSegments { object, replacements } => {
                if self.is_sealed(object) {
                    return ApplyOutcome::SegmentsCompacted { applied: 0 };
                }
                let object: Arc<str> = Arc::from(object.as_str());
                let applied = replacements.iter().filter(|replacement| self.replace_chunks(&object, replacement)).count();
                ApplyOutcome::SegmentsCompacted { applied }
            }
            JournalRecord::ObjectsDeleted { .. } => ApplyOutcome::ObjectsDeleted,
            JournalRecord::MarkObjectLost { object } => {
                let mut ranges = Vec::new();
                for (name, topic) in &mut self.topics {
                    for (index, partition) in topic.partitions.iter_mut().enumerate() {
                        partition.chunks.retain(|chunk| {
                            let lost = &*chunk.object == object.as_str();
                            if lost {
                                ranges.push((name.clone(), index as i32, chunk.base_offset, chunk.end_offset()));
                            }
                            !lost
                        });
                    }
                }
                ApplyOutcome::ObjectMarkedLost { ranges }
            }
            JournalRecord::SealObjects { through_revision } => {
                // A seal can only name revisions the journal already has: an object stamped later
                // than this record was named after the collector looked.
                let through = (*through_revision).min(revision.saturating_sub(1));
                self.sealed_through_revision = self.sealed_through_revision.max(through);
                ApplyOutcome::ObjectsSealed { sealed_through_revision: self.sealed_through_revision }
            }
            JournalRecord::AddPartitions { name, topic_id, partitions } => match self.topics.get_mut(name) {
                Some(topic) if topic.id == *topic_id => {
                    let wanted = (*partitions).max(0) as usize;
                    if wanted > topic.partitions.len() {
                        topic.partitions.resize(wanted, PartitionState::default());
                    }
                    ApplyOutcome::PartitionsAdded { partitions: topic.partitions.len() as i32 }
                }
                _ => ApplyOutcome::TopicNotFound,
            },
            JournalRecord::SetTopicConfigs { name, topic_id, configs } => match self.topics.get_mut(name) {
                Some(topic) if topic.id == *topic_id => {
                    topic.configs = configs.clone();
                    ApplyOutcome::TopicConfigsSet
                }
                _ => ApplyOutcome::TopicNotFound,
            },
            JournalRecord::DeleteGroupOffsets { group } => {
                self.group_offsets.remove(group);
                self.group_memberships.remove(group);
                ApplyOutcome::GroupOffsetsDeleted
            }
            JournalRecord::GroupMembership { group, stored } => {
                let newer = self.group_memberships.get(group).is_none_or(|current| stored.generation >= current.generation);
                if newer {
                    self.group_memberships.insert(group.clone(), stored.clone());
                }
                ApplyOutcome::GroupMembershipStored { applied: newer }
            }
            JournalRecord::DeletePartitionOffsets { group, partitions } => {
                if let Some(committed) = self.group_offsets.get_mut(group) {
                    for entry in partitions {
                        if let Some(topic) = committed.get_mut(&entry.topic) {
                            topic.remove(&entry.partition);
                            if topic.is_empty() {
                                committed.remove(&entry.topic);
                            }
                        }
                    }
                    if committed.is_empty() {
                        self.group_offsets.remove(group);
                    }
                }
                ApplyOutcome::GroupOffsetsDeleted
            }
            JournalRecord::AlterScramCredentials { user, set, remove } => {
                let held = |mechanism: &ScramMechanism| self.scram_credentials.get(user).is_some_and(|held| held.contains_key(mechanism));
                if !remove.iter().all(held) {
                    return ApplyOutcome::ScramCredentialNotFound;
                }
                let credentials = self.scram_credentials.entry(user.clone()).or_default();
                for mechanism in remove {
                    credentials.remove(mechanism);
                }
                for credential in set {
                    credentials.insert(credential.mechanism, credential.clone());
                }
                if credentials.is_empty() {
                    self.scram_credentials.remove(user);
                }
                ApplyOutcome::ScramCredentialsAltered
            }
            JournalRecord::CreateAcls { acls } => {
                self.acls.extend(acls.iter().cloned());
                ApplyOutcome::AclsCreated
            }
            JournalRecord::DeleteAcls { acls } => {
                let removed = acls.iter().filter(|binding| self.acls.remove(*binding)).cloned().collect();
                ApplyOutcome::AclsDeleted { removed }
            }
            JournalRecord::InitTransactionalProducer { transactional_id, timeout_ms, producer_id, producer_epoch } => {
                ApplyOutcome::Transaction(self.init_transactional_producer(transactional_id, *timeout_ms, *producer_id, *producer_epoch))
            }
            JournalRecord::AddTransactionPartitions { transactional_id, producer_id, producer_epoch, partitions, now_ms } => {
                ApplyOutcome::Transaction(self.add_transaction_partitions(
                    transactional_id,
                    *producer_id,
                    *producer_epoch,
                    partitions,
                    *now_ms,
                ))
            }
            JournalRecord::AddTransactionGroup { transactional_id, producer_id, producer_epoch, group, now_ms } => {
                ApplyOutcome::Transaction(self.add_transaction_group(transactional_id, *producer_id, *producer_epoch, group, *now_ms))
            }
            JournalRecord::TxnOffsetCommit { transactional_id, producer_id, producer_epoch, group, offsets } => {
                ApplyOutcome::Transaction(self.stage_transaction_offsets(transactional_id, *producer_id, *producer_epoch, group, offsets))
            }
            JournalRecord::EndTransaction { transactional_id, producer_id, producer_epoch, commit, bump_epoch, object, markers } => {
                if markers.iter().any(|marker| marker.byte_len > 0) && self.is_sealed(object) {
                    return ApplyOutcome::SegmentRefused { sealed_through_revision: self.sealed_through_revision };
                }
                ApplyOutcome::Transaction(self.end_transaction(
                    revision,
                    transactional_id,
                    *producer_id,
                    *producer_epoch,
                    *commit,
                    *bump_epoch,
                    object,
                    markers,
                ))
            }
        }
    }

    /// `user`'s credential for `mechanism`, if any.
    pub fn scram_credential(&self, user: &str, mechanism: ScramMechanism) -> Option<&ScramCredential> {
        self.scram_credentials.get(user).and_then(|credentials| credentials.get(&mechanism))
    }

    fn partition_mut(&mut self, topic: &str, topic_id: Uuid, partition: i32) -> Option<&mut PartitionState> {
        let topic = self.topics.get_mut(topic).filter(|found| found.id == topic_id)?;
        topic.partitions.get_mut(usize::try_from(partition).ok()?)
    }

    fn trim_partition(&mut self, trim: &PartitionTrim) {
        let Some(partition) = self.partition_mut(&trim.topic, trim.topic_id, trim.partition) else { return };
        let log_start = trim.log_start_offset.min(partition.high_watermark);
        if log_start <= partition.log_start_offset {
            return;
        }
        partition.log_start_offset = log_start;
        partition.chunks.retain(|chunk| chunk.end_offset() > log_start);
        partition.aborted_transactions.retain(|aborted| aborted.last_offset >= log_start);
    }

    /// Replaces the run of chunks `[base_offset, end_offset)` when it still consists of exactly
    /// the chunks of `sources`, in order.
    fn replace_chunks(&mut self, object: &Arc<str>, replacement: &ChunkReplacement) -> bool {
        let Some(partition) = self.partition_mut(&replacement.topic, replacement.topic_id, replacement.partition) else { return false };
        let Some(first) = partition.chunks.iter().position(|chunk| chunk.base_offset == replacement.base_offset) else { return false };
        let count = replacement.sources.len();
        let Some(run) = partition.chunks.get(first..first + count) else { return false };
        let matches = run.iter().zip(&replacement.sources).all(|(chunk, source)| &*chunk.object == source.as_str())
            && run.last().is_some_and(|last| last.end_offset() == replacement.end_offset);
        if !matches {
            return false;
        }
        let merged = ChunkLocation {
            base_offset: replacement.base_offset,
            record_count: replacement.end_offset - replacement.base_offset,
            object: Arc::clone(object),
            byte_start: replacement.byte_start,
            byte_len: replacement.byte_len,
            max_timestamp: replacement.max_timestamp,
            relative_base: 0,
        };
        partition.chunks.splice(first..first + count, [merged]);
        true
    }

    /// Whether apply refuses a commit naming `object`: sealing is on (metadata version 3) and the
    /// object's stamped revision is at or below the seal. Unstamped (older) names count as
    /// revision 0, so they are refused once anything is sealed.
    pub fn is_sealed(&self, object: &str) -> bool {
        self.metadata_version >= SEALING_METADATA_VERSION
            && self.sealed_through_revision > 0
            && segment_name_revision(object) <= self.sealed_through_revision
    }

    /// Every object the state references.
    pub fn referenced_objects(&self) -> std::collections::BTreeSet<Arc<str>> {
        self.topics
            .values()
            .flat_map(|topic| topic.partitions.iter())
            .flat_map(|partition| partition.chunks.iter())
            .map(|chunk| Arc::clone(&chunk.object))
            .collect()
    }

    /// The partition by name and index, whatever its topic id.
    pub(crate) fn partition_state_mut(&mut self, topic: &str, partition: i32) -> Option<&mut PartitionState> {
        self.topics.get_mut(topic)?.partitions.get_mut(usize::try_from(partition).ok()?)
    }

    pub(crate) fn append_chunk(&mut self, revision: u64, object: &Arc<str>, chunk: &ChunkCommit) -> ChunkApplied {
        let (transactions, transactional_producers) = (&self.transactions, &self.transactional_producers);
        let partition = self
            .topics
            .get_mut(&chunk.topic)
            .filter(|found| found.id == chunk.topic_id)
            .and_then(|topic| topic.partitions.get_mut(usize::try_from(chunk.partition).ok()?));
        let Some(partition) = partition else { return ChunkApplied::TopicGone };
        let base_offset = partition.high_watermark;
        let listed_records: i64 = chunk.batches.iter().map(|batch| batch.record_count).sum();
        let listed_bytes: u64 = chunk.batches.iter().map(|batch| batch.byte_len).sum();
        // A listing that does not add up to the chunk cannot be trusted to cut it; append the
        // chunk whole (every replica decides the same way).
        if chunk.batches.is_empty() || listed_records != chunk.record_count || listed_bytes != chunk.byte_len {
            partition.chunks.push(ChunkLocation {
                base_offset,
                record_count: chunk.record_count,
                object: Arc::clone(object),
                byte_start: chunk.byte_start,
                byte_len: chunk.byte_len,
                max_timestamp: chunk.max_timestamp,
                relative_base: 0,
            });
            partition.high_watermark += chunk.record_count;
            return ChunkApplied::Appended { base_offset, batches: Vec::new() };
        }
        // Walk the batches; appended ones extend the current run of bytes, a left-out batch
        // ends it. Each run becomes one index entry, so fetch never sees a left-out batch.
        let mut results = Vec::with_capacity(chunk.batches.len());
        let mut run: Option<ChunkLocation> = None;
        let (mut relative, mut byte) = (0i64, 0u64);
        for batch in &chunk.batches {
            let verified = if batch.transactional {
                MetadataState::verify_transactional_batch(
                    transactions,
                    transactional_producers,
                    &chunk.topic,
                    chunk.partition,
                    batch.producer_id,
                    batch.producer_epoch,
                )
            } else {
                Ok(())
            };
            let verdict = match verified {
                Err(error) => SequenceCheck::Refuse(error),
                Ok(()) if batch.producer_id >= 0 => producers::check(&partition.producers, batch),
                Ok(()) => SequenceCheck::Append,
            };
            match verdict {
                SequenceCheck::Append => {
                    let offset = partition.high_watermark;
                    let current = run.get_or_insert_with(|| ChunkLocation {
                        base_offset: offset,
                        record_count: 0,
                        object: Arc::clone(object),
                        byte_start: chunk.byte_start + byte,
                        byte_len: 0,
                        max_timestamp: chunk.max_timestamp,
                        relative_base: relative,
                    });
                    current.record_count += batch.record_count;
                    current.byte_len += batch.byte_len;
                    partition.high_watermark += batch.record_count;
                    if batch.producer_id >= 0 {
                        producers::record(&mut partition.producers, batch, offset, revision);
                    }
                    if batch.transactional {
                        partition.open_transactions.entry(batch.producer_id).or_insert(offset);
                    }
                    results.push(BatchApplied::Appended { base_offset: offset });
                }
                SequenceCheck::Duplicate { base_offset } => {
                    partition.chunks.extend(run.take());
                    results.push(BatchApplied::Duplicate { base_offset });
                }
                SequenceCheck::Refuse(error) => {
                    partition.chunks.extend(run.take());
                    results.push(BatchApplied::Refused(error));
                }
            }
            relative += batch.record_count;
            byte += batch.byte_len;
        }
        partition.chunks.extend(run);
        ChunkApplied::Appended { base_offset, batches: results }
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionState> {
        self.topics.get(topic)?.partitions.get(usize::try_from(partition).ok()?)
    }
}

impl PartitionState {
    /// Kafka's last stable offset: below it every transaction has ended (read_committed
    /// consumers read up to here).
    pub fn last_stable_offset(&self) -> i64 {
        self.open_transactions.values().copied().min().unwrap_or(self.high_watermark).min(self.high_watermark)
    }

    /// Aborted transactions with records in `[from, to)`, for a read_committed fetch.
    pub fn aborted_between(&self, from: i64, to: i64) -> impl Iterator<Item = &AbortedTransaction> {
        self.aborted_transactions.iter().filter(move |aborted| aborted.last_offset >= from && aborted.first_offset < to)
    }

    /// Index of the chunk to read from for `offset`: the one holding it, or, when `offset` falls
    /// in a gap an operator left by marking an object lost, the first chunk after the gap.
    pub fn chunk_index_from(&self, offset: i64) -> Option<usize> {
        let index = self.chunks.partition_point(|chunk| chunk.end_offset() <= offset);
        (index < self.chunks.len()).then_some(index)
    }

    /// Index of the chunk holding `offset`, if any.
    pub fn chunk_index_for(&self, offset: i64) -> Option<usize> {
        let index = self.chunks.partition_point(|chunk| chunk.end_offset() <= offset);
        (index < self.chunks.len() && self.chunks[index].base_offset <= offset).then_some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(topic: &str, topic_id: Uuid, partition: i32, count: i64) -> ChunkCommit {
        ChunkCommit {
            topic: topic.into(),
            topic_id,
            partition,
            record_count: count,
            byte_start: 0,
            byte_len: 10,
            max_timestamp: 5,
            batches: Vec::new(),
        }
    }

    #[test]
    fn offsets_are_assigned_in_journal_order_and_replay_identically() {
        let id = Uuid::from_u128(7);
        let records = [
            JournalRecord::CreateTopic { name: "t".into(), topic_id: id, partitions: 2, configs: Default::default() },
            JournalRecord::CommitSegment { object: "a".into(), chunks: vec![chunk("t", id, 0, 3), chunk("t", id, 1, 2)] },
            JournalRecord::CommitSegment { object: "b".into(), chunks: vec![chunk("t", id, 0, 4), chunk("gone", id, 0, 1)] },
        ];
        let mut first = MetadataState::default();
        let outcomes: Vec<_> = records.iter().enumerate().map(|(index, record)| first.apply(index as u64 + 1, record)).collect();
        assert_eq!(
            outcomes[2],
            ApplyOutcome::SegmentCommitted {
                chunks: vec![ChunkApplied::Appended { base_offset: 3, batches: vec![] }, ChunkApplied::TopicGone]
            }
        );
        let partition = first.partition("t", 0).unwrap();
        assert_eq!(partition.high_watermark, 7);
        assert_eq!(partition.chunk_index_for(2), Some(0));
        assert_eq!(partition.chunk_index_for(3), Some(1));
        assert_eq!(partition.chunk_index_for(7), None);
        let mut second = MetadataState::default();
        records.iter().enumerate().for_each(|(index, record)| {
            second.apply(index as u64 + 1, record);
        });
        assert_eq!(second.partition("t", 0).unwrap().chunks, partition.chunks);
    }

    #[test]
    fn a_metadata_version_beyond_this_build_halts_the_replica_instead_of_diverging() {
        let mut state = MetadataState::default();
        assert_eq!(state.apply(1, &JournalRecord::SetMetadataVersion { version: 1 }), ApplyOutcome::MetadataVersionSet { version: 1 });
        let too_new = SUPPORTED_METADATA_VERSION + 1;
        assert_eq!(state.apply(2, &JournalRecord::SetMetadataVersion { version: too_new }), ApplyOutcome::Halted { version: too_new });
        assert_eq!(state.apply(3, &JournalRecord::AllocateProducerId), ApplyOutcome::Halted { version: too_new });
        assert_eq!(state.next_producer_id, 0, "nothing is applied after the halt");
    }

    #[test]
    fn a_group_membership_is_replaced_only_by_one_of_its_generation_or_newer_and_goes_with_the_group() {
        use crate::groups::{StoredGroup, StoredMember};
        let stored = |generation: i32, members: usize| StoredGroup {
            generation,
            protocol_type: "consumer".into(),
            protocol_name: "range".into(),
            leader: "m0".into(),
            members: (0..members)
                .map(|index| StoredMember {
                    member_id: format!("m{index}"),
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    session_timeout_ms: 45_000,
                    rebalance_timeout_ms: 300_000,
                    metadata: vec![1, 2],
                    assignment: vec![3],
                })
                .collect(),
        };
        let mut state = MetadataState::default();
        let record = |generation, members| JournalRecord::GroupMembership { group: "g".into(), stored: stored(generation, members) };
        assert_eq!(state.apply(1, &record(3, 2)), ApplyOutcome::GroupMembershipStored { applied: true });
        assert_eq!(
            state.apply(2, &record(2, 1)),
            ApplyOutcome::GroupMembershipStored { applied: false },
            "a former coordinator's late record"
        );
        assert_eq!(state.group_memberships["g"], stored(3, 2));
        assert_eq!(state.apply(3, &record(3, 0)), ApplyOutcome::GroupMembershipStored { applied: true }, "emptied in the same generation");
        let json = serde_json::to_string(&record(4, 1)).unwrap();
        assert_eq!(serde_json::from_str::<JournalRecord>(&json).unwrap(), record(4, 1), "{json}");
        state.apply(4, &JournalRecord::DeleteGroupOffsets { group: "g".into() });
        assert!(state.group_memberships.is_empty(), "DeleteGroups forgets the membership too");
    }

    #[test]
    fn compaction_replaces_only_the_exact_source_run_and_retention_only_moves_forward() {
        let id = Uuid::from_u128(3);
        let mut state = MetadataState::default();
        state.apply(1, &JournalRecord::CreateTopic { name: "t".into(), topic_id: id, partitions: 1, configs: Default::default() });
        state.apply(2, &JournalRecord::CommitSegment { object: "a".into(), chunks: vec![chunk("t", id, 0, 3)] });
        state.apply(3, &JournalRecord::CommitSegment { object: "b".into(), chunks: vec![chunk("t", id, 0, 2)] });
        let replacement = |sources: Vec<&str>, end_offset| crate::records::ChunkReplacement {
            topic: "t".into(),
            topic_id: id,
            partition: 0,
            base_offset: 0,
            end_offset,
            sources: sources.into_iter().map(String::from).collect(),
            byte_start: 8,
            byte_len: 20,
            max_timestamp: 5,
        };
        let stale = JournalRecord::CompactSegments { object: "c".into(), replacements: vec![replacement(vec!["a", "x"], 5)] };
        assert_eq!(state.apply(4, &stale), ApplyOutcome::SegmentsCompacted { applied: 0 });
        let good = JournalRecord::CompactSegments { object: "c".into(), replacements: vec![replacement(vec!["a", "b"], 5)] };
        assert_eq!(state.apply(5, &good), ApplyOutcome::SegmentsCompacted { applied: 1 });
        let partition = state.partition("t", 0).unwrap();
        assert_eq!(partition.chunks.len(), 1);
        assert_eq!(&*partition.chunks[0].object, "c");
        let trim = |log_start_offset| JournalRecord::TrimPartitions {
            trims: vec![crate::records::PartitionTrim { topic: "t".into(), topic_id: id, partition: 0, log_start_offset }],
        };
        state.apply(6, &trim(5));
        state.apply(7, &trim(2));
        let partition = state.partition("t", 0).unwrap();
        assert_eq!(partition.log_start_offset, 5);
        assert!(partition.chunks.is_empty());
    }

    #[test]
    fn a_chunk_for_a_recreated_topic_is_not_appended() {
        let old = Uuid::from_u128(1);
        let new = Uuid::from_u128(2);
        let mut state = MetadataState::default();
        state.apply(1, &JournalRecord::CreateTopic { name: "t".into(), topic_id: new, partitions: 1, configs: Default::default() });
        let outcome = state.apply(2, &JournalRecord::CommitSegment { object: "x".into(), chunks: vec![chunk("t", old, 0, 1)] });
        assert_eq!(outcome, ApplyOutcome::SegmentCommitted { chunks: vec![ChunkApplied::TopicGone] });
    }

    fn produced(producer_id: i64, base_sequence: i32, record_count: i64, byte_len: u64) -> crate::records::ProducedBatch {
        crate::records::ProducedBatch { producer_id, producer_epoch: 0, base_sequence, record_count, byte_len, transactional: false }
    }

    #[test]
    fn duplicate_and_out_of_order_batches_are_left_out_and_the_rest_stays_fetchable() {
        let id = Uuid::from_u128(4);
        let mut state = MetadataState::default();
        state.apply(1, &JournalRecord::CreateTopic { name: "t".into(), topic_id: id, partitions: 1, configs: Default::default() });
        // Producer 7 writes sequences 0..3 and 3..5; a non-idempotent batch sits between them.
        let mut first = chunk("t", id, 0, 6);
        first.byte_len = 300;
        first.batches = vec![produced(7, 0, 3, 100), produced(-1, -1, 1, 50), produced(7, 3, 2, 150)];
        assert_eq!(
            state.apply(2, &JournalRecord::CommitSegment { object: "a".into(), chunks: vec![first] }),
            ApplyOutcome::SegmentCommitted {
                chunks: vec![ChunkApplied::Appended {
                    base_offset: 0,
                    batches: vec![
                        BatchApplied::Appended { base_offset: 0 },
                        BatchApplied::Appended { base_offset: 3 },
                        BatchApplied::Appended { base_offset: 4 }
                    ]
                }]
            }
        );
        // Another agent committed a retry of sequences 3..5, a new batch 5..6, a batch with a gap
        // (sequence 9), and another producer's batch, in one chunk at byte 1000.
        let mut second = chunk("t", id, 0, 2 + 1 + 4 + 2);
        second.byte_start = 1_000;
        second.byte_len = 150 + 40 + 60 + 70;
        second.batches = vec![produced(7, 3, 2, 150), produced(7, 5, 1, 40), produced(7, 9, 4, 60), produced(8, 0, 2, 70)];
        let outcome = state.apply(3, &JournalRecord::CommitSegment { object: "b".into(), chunks: vec![second] });
        let ApplyOutcome::SegmentCommitted { chunks } = outcome else { panic!("unexpected {outcome:?}") };
        let ChunkApplied::Appended { batches, .. } = &chunks[0] else { panic!("unexpected {chunks:?}") };
        assert_eq!(batches[0], BatchApplied::Duplicate { base_offset: 4 });
        assert_eq!(batches[1], BatchApplied::Appended { base_offset: 6 });
        assert!(matches!(batches[2], BatchApplied::Refused(crate::producers::SequenceError::OutOfOrder { expected: 6, received: 9, .. })));
        assert_eq!(batches[3], BatchApplied::Appended { base_offset: 7 });
        let partition = state.partition("t", 0).unwrap();
        assert_eq!(partition.high_watermark, 9);
        // The second chunk became two runs: bytes 1150..1190 and 1250..1320.
        let runs: Vec<_> = partition.chunks[1..]
            .iter()
            .map(|chunk| (chunk.base_offset, chunk.record_count, chunk.byte_start, chunk.byte_len, chunk.stored_offset_origin()))
            .collect();
        assert_eq!(runs, vec![(6, 1, 1_150, 40, 4), (7, 2, 1_250, 70, 0)]);
        // Stored relative offsets: the batch at relative 2 is offset 6, the one at 7 is offset 7.
        assert_eq!(partition.chunks[1].stored_offset_origin() + 2, 6);
        assert_eq!(partition.chunks[2].stored_offset_origin() + 7, 7);
        // The snapshot form round-trips, producer windows included.
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(serde_json::from_str::<MetadataState>(&json).unwrap(), state);
    }

    fn stamped(revision: u64) -> String {
        crate::layout::BucketLayout::new(Some("c")).new_segment_name(revision)
    }

    #[test]
    fn a_commit_of_a_sealed_object_is_refused_whole_and_later_names_still_commit() {
        let id = Uuid::from_u128(9);
        let mut state = MetadataState::default();
        state.apply(1, &JournalRecord::SetMetadataVersion { version: SUPPORTED_METADATA_VERSION });
        state.apply(2, &JournalRecord::CreateTopic { name: "t".into(), topic_id: id, partitions: 1, configs: Default::default() });
        let commit = |object: String| JournalRecord::CommitSegment { object, chunks: vec![chunk("t", id, 0, 3)] };
        assert!(matches!(state.apply(3, &commit(stamped(2))), ApplyOutcome::SegmentCommitted { .. }));
        // The collector saw revision 10 a grace period ago and seals through it.
        assert_eq!(
            state.apply(20, &JournalRecord::SealObjects { through_revision: 10 }),
            ApplyOutcome::ObjectsSealed { sealed_through_revision: 10 }
        );
        // A commit held up since revision 7 (a skewed or cut-off writer) lands now: refused.
        assert_eq!(state.apply(21, &commit(stamped(7))), ApplyOutcome::SegmentRefused { sealed_through_revision: 10 });
        assert_eq!(state.apply(22, &commit(stamped(10))), ApplyOutcome::SegmentRefused { sealed_through_revision: 10 });
        // Objects without a stamp (written before the per-cluster layout) are refused too.
        assert!(matches!(state.apply(23, &commit(format!("segments/{}.seg", ulid::Ulid::new()))), ApplyOutcome::SegmentRefused { .. }));
        assert_eq!(state.partition("t", 0).unwrap().high_watermark, 3, "nothing of a refused commit was appended");
        assert!(matches!(state.apply(24, &commit(stamped(11))), ApplyOutcome::SegmentCommitted { .. }));
        assert_eq!(state.partition("t", 0).unwrap().high_watermark, 6);
        // A compaction into a sealed object changes nothing.
        let replacement = crate::records::ChunkReplacement {
            topic: "t".into(),
            topic_id: id,
            partition: 0,
            base_offset: 0,
            end_offset: 6,
            sources: state.partition("t", 0).unwrap().chunks.iter().map(|chunk| chunk.object.to_string()).collect(),
            byte_start: 0,
            byte_len: 20,
            max_timestamp: 5,
        };
        let compaction = |object: String| JournalRecord::CompactSegments { object, replacements: vec![replacement.clone()] };
        assert_eq!(state.apply(25, &compaction(stamped(9))), ApplyOutcome::SegmentsCompacted { applied: 0 });
        assert_eq!(state.apply(26, &compaction(stamped(25))), ApplyOutcome::SegmentsCompacted { applied: 1 });
        // The seal never moves back, and never past the record's own revision.
        state.apply(27, &JournalRecord::SealObjects { through_revision: 4 });
        assert_eq!(state.sealed_through_revision, 10);
        state.apply(28, &JournalRecord::SealObjects { through_revision: u64::MAX });
        assert_eq!(state.sealed_through_revision, 27);
        // Snapshots carry the seal.
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(serde_json::from_str::<MetadataState>(&json).unwrap().sealed_through_revision, 27);
    }

    #[test]
    fn before_metadata_version_3_nothing_is_refused() {
        let id = Uuid::from_u128(9);
        let mut state = MetadataState::default();
        state.apply(1, &JournalRecord::SetMetadataVersion { version: 2 });
        state.apply(2, &JournalRecord::CreateTopic { name: "t".into(), topic_id: id, partitions: 1, configs: Default::default() });
        state.apply(5, &JournalRecord::SealObjects { through_revision: 4 });
        let outcome = state.apply(6, &JournalRecord::CommitSegment { object: stamped(1), chunks: vec![chunk("t", id, 0, 1)] });
        assert!(matches!(outcome, ApplyOutcome::SegmentCommitted { .. }), "a version-2 replica would have appended it: {outcome:?}");
    }

    #[test]
    fn marking_an_object_lost_drops_its_chunks_keeps_offsets_and_reads_resume_after_the_gap() {
        let id = Uuid::from_u128(11);
        let mut state = MetadataState::default();
        state.apply(1, &JournalRecord::CreateTopic { name: "t".into(), topic_id: id, partitions: 2, configs: Default::default() });
        for (revision, object) in [(2, "a.seg"), (3, "b.seg"), (4, "c.seg")] {
            state.apply(
                revision,
                &JournalRecord::CommitSegment { object: object.into(), chunks: vec![chunk("t", id, 0, 2), chunk("t", id, 1, 1)] },
            );
        }
        let outcome = state.apply(5, &JournalRecord::MarkObjectLost { object: "b.seg".into() });
        assert_eq!(outcome, ApplyOutcome::ObjectMarkedLost { ranges: vec![("t".into(), 0, 2, 4), ("t".into(), 1, 1, 2)] });
        let partition = state.partition("t", 0).unwrap();
        assert_eq!(partition.high_watermark, 6, "offsets are never reused");
        assert_eq!(partition.chunk_index_for(2), None);
        assert_eq!(partition.chunk_index_from(2), Some(1), "a read inside the gap resumes at the next chunk");
        assert_eq!(&*partition.chunks[partition.chunk_index_from(3).unwrap()].object, "c.seg");
        assert_eq!(partition.chunk_index_from(6), None);
        assert!(!state.referenced_objects().contains("b.seg"));
        // That the compaction planner does not merge across the gap is tested in the agent
        // (`jobs/compaction.rs`).
    }

    #[test]
    fn a_scram_alteration_applies_whole_or_not_at_all() {
        use crate::scram::{ScramCredential, ScramMechanism};
        let credential = |mechanism| ScramCredential {
            mechanism,
            iterations: 4096,
            salt: vec![1],
            stored_key: vec![2; mechanism.output_len()],
            server_key: vec![3; mechanism.output_len()],
        };
        let mut state = MetadataState::default();
        let set_both = JournalRecord::AlterScramCredentials {
            user: "alice".into(),
            set: vec![credential(ScramMechanism::Sha256), credential(ScramMechanism::Sha512)],
            remove: vec![],
        };
        assert_eq!(state.apply(1, &set_both), ApplyOutcome::ScramCredentialsAltered);
        // Removing a held and a missing credential of bob's changes nothing.
        let partial = JournalRecord::AlterScramCredentials { user: "bob".into(), set: vec![], remove: vec![ScramMechanism::Sha256] };
        assert_eq!(state.apply(2, &partial), ApplyOutcome::ScramCredentialNotFound);
        assert!(!state.scram_credentials.contains_key("bob"));
        let remove_both = JournalRecord::AlterScramCredentials {
            user: "alice".into(),
            set: vec![],
            remove: vec![ScramMechanism::Sha512, ScramMechanism::Sha256],
        };
        assert_eq!(state.apply(3, &remove_both), ApplyOutcome::ScramCredentialsAltered);
        assert!(state.scram_credentials.is_empty(), "a user without credentials is forgotten");
        assert_eq!(state.apply(4, &remove_both), ApplyOutcome::ScramCredentialNotFound);
    }

    #[test]
    fn acl_deletions_report_only_the_bindings_still_present() {
        use crate::acl::{AclBinding, Operation, PatternType, Permission, ResourceType};
        let binding = |operation| AclBinding {
            resource_type: ResourceType::Topic,
            pattern_type: PatternType::Literal,
            resource_name: "t".into(),
            principal: "User:alice".into(),
            host: "*".into(),
            operation,
            permission: Permission::Allow,
        };
        let mut state = MetadataState::default();
        let create =
            JournalRecord::CreateAcls { acls: vec![binding(Operation::Read), binding(Operation::Read), binding(Operation::Write)] };
        assert_eq!(state.apply(1, &create), ApplyOutcome::AclsCreated);
        assert_eq!(state.acls.len(), 2, "a binding is held once");
        let delete = JournalRecord::DeleteAcls { acls: vec![binding(Operation::Read)] };
        assert_eq!(state.apply(2, &delete), ApplyOutcome::AclsDeleted { removed: vec![binding(Operation::Read)] });
        assert_eq!(state.apply(3, &delete), ApplyOutcome::AclsDeleted { removed: vec![] }, "a concurrent second deletion claims nothing");
    }
}
