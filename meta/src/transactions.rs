//! Transactions as the journal keeps them (metadata version 7; agent/DESIGN.md "Transactions
//! without partition leaders"). Every transition is decided here, by apply, against the state
//! the journal has reached: a fenced producer, a duplicate request or a commit racing a timeout
//! abort gets the same answer on every replica, and any agent can take over a transaction.
//!
//! The transaction coordinator's clock appears only as `now_ms` fields of the records (when a
//! transaction started, for its timeout); apply never reads a clock.

use crate::records::{ChunkCommit, GroupPartition, OffsetCommitEntry};
use crate::state::{ChunkApplied, CommittedOffset, MetadataState};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Most partitions one transaction may span. Its end is one journal record with a marker per
/// partition (about 150 bytes each), which must stay far below the journal's record limit: a
/// transaction that could never be ended would hold its partitions' last stable offset, and so
/// every read_committed consumer of them, for ever.
pub const MAX_TRANSACTION_PARTITIONS: usize = 2_000;

/// Where a transaction is. Kafka's PrepareCommit/PrepareAbort do not exist: the decision and the
/// markers are one journal record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionStatus {
    Empty,
    Ongoing,
    CompleteCommit,
    CompleteAbort,
}

impl TransactionStatus {
    /// Kafka's name for the state (DescribeTransactions, ListTransactions).
    pub fn kafka_name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::Ongoing => "Ongoing",
            Self::CompleteCommit => "CompleteCommit",
            Self::CompleteAbort => "CompleteAbort",
        }
    }
}

/// One `transactional.id`'s producer and its current transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transaction {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub status: TransactionStatus,
    /// The partitions of the ongoing transaction (each gets a marker when it ends).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub partitions: BTreeSet<GroupPartition>,
    /// The groups whose offsets the transaction commits.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub groups: BTreeSet<String>,
    /// TxnOffsetCommit offsets, group → entries; they become committed offsets with the commit.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pending_offsets: BTreeMap<String, Vec<OffsetCommitEntry>>,
    /// When the ongoing transaction started, on the clock of the agent that began it.
    pub started_ms: i64,
}

/// A transaction a partition saw aborted: read_committed consumers drop its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortedTransaction {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The offset of its abort marker.
    pub last_offset: i64,
}

/// Why a transactional request was refused; each maps to one Kafka error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    #[error("producer epoch {epoch} of transactional id {transactional_id} is fenced by epoch {current}")]
    ProducerFenced { transactional_id: String, epoch: i16, current: i16 },
    #[error("transactional id {0} does not belong to this producer id")]
    InvalidProducerIdMapping(String),
    #[error("transactional id {transactional_id} is {status:?}: {detail}")]
    InvalidTxnState { transactional_id: String, status: TransactionStatus, detail: &'static str },
    #[error("transactional id {0} has a transaction in flight; retry")]
    ConcurrentTransactions(String),
    #[error("partition {topic}-{partition} does not exist")]
    UnknownPartition { topic: String, partition: i32 },
    #[error("a transaction may span at most {MAX_TRANSACTION_PARTITIONS} partitions")]
    TooManyPartitions,
}

/// What a transactional record did.
#[derive(Debug, Clone, PartialEq)]
pub enum TransactionReply {
    ProducerInitialized { producer_id: i64, producer_epoch: i16 },
    Added,
    OffsetsStaged,
    Ended { status: TransactionStatus },
}

/// The epoch after `epoch`, or `None` when the producer id is exhausted (Kafka then allocates a
/// new producer id).
fn next_epoch(epoch: i16) -> Option<i16> {
    epoch.checked_add(1).filter(|next| *next < i16::MAX)
}

impl MetadataState {
    /// The transaction of `transactional_id` if `producer_id` and `producer_epoch` are its
    /// current producer, else the error Kafka answers.
    fn current_transaction(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<&mut Transaction, TransactionError> {
        let Some(transaction) = self.transactions.get_mut(transactional_id) else {
            return Err(TransactionError::InvalidProducerIdMapping(transactional_id.to_string()));
        };
        if transaction.producer_id != producer_id {
            return Err(TransactionError::InvalidProducerIdMapping(transactional_id.to_string()));
        }
        if transaction.producer_epoch != producer_epoch {
            return Err(TransactionError::ProducerFenced {
                transactional_id: transactional_id.to_string(),
                epoch: producer_epoch,
                current: transaction.producer_epoch,
            });
        }
        Ok(transaction)
    }

    pub(crate) fn init_transactional_producer(
        &mut self,
        transactional_id: &str,
        timeout_ms: i32,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<TransactionReply, TransactionError> {
        let fresh_id = |state: &mut Self| {
            let id = state.next_producer_id;
            state.next_producer_id += 1;
            id
        };
        let (id, epoch) = match self.transactions.get(transactional_id) {
            None => (fresh_id(self), 0),
            Some(current) => {
                if current.status == TransactionStatus::Ongoing {
                    // The agent aborts it first (with markers); this answer makes the client retry.
                    return Err(TransactionError::ConcurrentTransactions(transactional_id.to_string()));
                }
                // KIP-360: a producer naming its id and epoch may only bump its own.
                let named = producer_id >= 0 && producer_epoch >= 0;
                if named && (producer_id != current.producer_id || producer_epoch != current.producer_epoch) {
                    if producer_id == current.producer_id && producer_epoch < current.producer_epoch {
                        return Err(TransactionError::ProducerFenced {
                            transactional_id: transactional_id.to_string(),
                            epoch: producer_epoch,
                            current: current.producer_epoch,
                        });
                    }
                    return Err(TransactionError::InvalidProducerIdMapping(transactional_id.to_string()));
                }
                match next_epoch(current.producer_epoch) {
                    Some(epoch) => (current.producer_id, epoch),
                    None => (fresh_id(self), 0),
                }
            }
        };
        if let Some(previous) = self.transactions.get(transactional_id) {
            self.transactional_producers.remove(&previous.producer_id);
        }
        self.transactional_producers.insert(id, transactional_id.to_string());
        self.transactions.insert(
            transactional_id.to_string(),
            Transaction {
                producer_id: id,
                producer_epoch: epoch,
                timeout_ms,
                status: TransactionStatus::Empty,
                partitions: BTreeSet::new(),
                groups: BTreeSet::new(),
                pending_offsets: BTreeMap::new(),
                started_ms: 0,
            },
        );
        Ok(TransactionReply::ProducerInitialized { producer_id: id, producer_epoch: epoch })
    }

    /// Moves the transaction to Ongoing (starting it when it was not).
    fn begin(transaction: &mut Transaction, now_ms: i64) {
        if transaction.status != TransactionStatus::Ongoing {
            transaction.status = TransactionStatus::Ongoing;
            transaction.started_ms = now_ms;
        }
    }

    pub(crate) fn add_transaction_partitions(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[GroupPartition],
        now_ms: i64,
    ) -> Result<TransactionReply, TransactionError> {
        if let Some(missing) = partitions.iter().find(|entry| self.partition(&entry.topic, entry.partition).is_none()) {
            return Err(TransactionError::UnknownPartition { topic: missing.topic.clone(), partition: missing.partition });
        }
        let transaction = self.current_transaction(transactional_id, producer_id, producer_epoch)?;
        let added = partitions.iter().filter(|entry| !transaction.partitions.contains(*entry)).count();
        if transaction.partitions.len() + added > MAX_TRANSACTION_PARTITIONS {
            return Err(TransactionError::TooManyPartitions);
        }
        Self::begin(transaction, now_ms);
        transaction.partitions.extend(partitions.iter().cloned());
        Ok(TransactionReply::Added)
    }

    pub(crate) fn add_transaction_group(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        group: &str,
        now_ms: i64,
    ) -> Result<TransactionReply, TransactionError> {
        let transaction = self.current_transaction(transactional_id, producer_id, producer_epoch)?;
        Self::begin(transaction, now_ms);
        transaction.groups.insert(group.to_string());
        Ok(TransactionReply::Added)
    }

    pub(crate) fn stage_transaction_offsets(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        group: &str,
        offsets: &[OffsetCommitEntry],
    ) -> Result<TransactionReply, TransactionError> {
        let transaction = self.current_transaction(transactional_id, producer_id, producer_epoch)?;
        if transaction.status != TransactionStatus::Ongoing || !transaction.groups.contains(group) {
            return Err(TransactionError::InvalidTxnState {
                transactional_id: transactional_id.to_string(),
                status: transaction.status,
                detail: "TxnOffsetCommit for a group the transaction did not add (AddOffsetsToTxn)",
            });
        }
        let staged = transaction.pending_offsets.entry(group.to_string()).or_default();
        for entry in offsets {
            staged.retain(|held| held.topic != entry.topic || held.partition != entry.partition);
            staged.push(entry.clone());
        }
        Ok(TransactionReply::OffsetsStaged)
    }

    /// Commits or aborts the ongoing transaction: appends the markers (one control batch per
    /// partition, in `object`), moves the partitions' last stable offsets, and on commit makes
    /// the staged offsets the groups' committed offsets. `bump_epoch` fences the producer (a
    /// timeout abort, or a new producer taking the transactional id over).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn end_transaction(
        &mut self,
        revision: u64,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        bump_epoch: bool,
        object: &str,
        markers: &[ChunkCommit],
    ) -> Result<TransactionReply, TransactionError> {
        let transaction = self.current_transaction(transactional_id, producer_id, producer_epoch)?;
        let wanted = if commit { TransactionStatus::CompleteCommit } else { TransactionStatus::CompleteAbort };
        match transaction.status {
            TransactionStatus::Ongoing => {}
            // A retried EndTxn whose first attempt applied.
            status if status == wanted && !bump_epoch => return Ok(TransactionReply::Ended { status }),
            status => {
                return Err(TransactionError::InvalidTxnState {
                    transactional_id: transactional_id.to_string(),
                    status,
                    detail: if commit { "cannot commit" } else { "cannot abort" },
                })
            }
        }
        let marked: BTreeSet<GroupPartition> =
            markers.iter().map(|marker| GroupPartition { topic: marker.topic.clone(), partition: marker.partition }).collect();
        if marked != transaction.partitions || marked.len() != markers.len() {
            // Built from an older view of the transaction; the agent rebuilds and retries.
            return Err(TransactionError::ConcurrentTransactions(transactional_id.to_string()));
        }
        let pending = std::mem::take(&mut transaction.pending_offsets);
        transaction.partitions.clear();
        transaction.groups.clear();
        transaction.status = wanted;
        let mut new_producer = None;
        if bump_epoch {
            match next_epoch(transaction.producer_epoch) {
                Some(epoch) => transaction.producer_epoch = epoch,
                None => new_producer = Some(()),
            }
        }
        if new_producer.is_some() {
            let id = self.next_producer_id;
            self.next_producer_id += 1;
            self.transactional_producers.remove(&producer_id);
            self.transactional_producers.insert(id, transactional_id.to_string());
            if let Some(transaction) = self.transactions.get_mut(transactional_id) {
                transaction.producer_id = id;
                transaction.producer_epoch = 0;
            }
        }
        let object: Arc<str> = Arc::from(object);
        for marker in markers {
            let ChunkApplied::Appended { base_offset, .. } = self.append_chunk(revision, &object, marker) else { continue };
            let Some(partition) = self.partition_state_mut(&marker.topic, marker.partition) else { continue };
            if let Some(first_offset) = partition.open_transactions.remove(&producer_id) {
                if !commit {
                    partition.aborted_transactions.push(AbortedTransaction { producer_id, first_offset, last_offset: base_offset });
                }
            }
        }
        if commit {
            for (group, offsets) in pending {
                let committed = self.group_offsets.entry(group).or_default();
                for entry in offsets {
                    committed.entry(entry.topic).or_default().insert(
                        entry.partition,
                        CommittedOffset { offset: entry.offset, leader_epoch: entry.leader_epoch, metadata: entry.metadata },
                    );
                }
            }
        }
        Ok(TransactionReply::Ended { status: wanted })
    }

    /// Whether a transactional batch of `producer_id` at `producer_epoch` may be appended to
    /// `topic`-`partition` (KIP-890 part 1, decided at apply): its producer's transaction is
    /// ongoing at that epoch and includes the partition.
    pub(crate) fn verify_transactional_batch(
        transactions: &BTreeMap<String, Transaction>,
        transactional_producers: &BTreeMap<i64, String>,
        topic: &str,
        partition: i32,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<(), crate::producers::SequenceError> {
        let transaction = transactional_producers.get(&producer_id).and_then(|id| transactions.get(id));
        let Some(transaction) = transaction else { return Err(crate::producers::SequenceError::NotInTransaction { producer_id }) };
        if producer_epoch < transaction.producer_epoch {
            return Err(crate::producers::SequenceError::StaleEpoch {
                producer_id,
                epoch: producer_epoch,
                current: transaction.producer_epoch,
            });
        }
        let added = transaction.partitions.contains(&GroupPartition { topic: topic.to_string(), partition });
        if transaction.producer_epoch != producer_epoch || transaction.status != TransactionStatus::Ongoing || !added {
            return Err(crate::producers::SequenceError::NotInTransaction { producer_id });
        }
        Ok(())
    }

    /// Groups with offsets staged by an ongoing transaction for `topic`-`partition`: an
    /// OffsetFetch asking for stable offsets gets UNSTABLE_OFFSET_COMMIT for them.
    pub fn has_pending_transactional_offset(&self, group: &str, topic: &str, partition: i32) -> bool {
        self.transactions.values().any(|transaction| {
            transaction.status == TransactionStatus::Ongoing
                && transaction
                    .pending_offsets
                    .get(group)
                    .is_some_and(|offsets| offsets.iter().any(|entry| entry.topic == topic && entry.partition == partition))
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::records::{ChunkCommit, GroupPartition, JournalRecord, OffsetCommitEntry, ProducedBatch};
    use crate::state::{ApplyOutcome, BatchApplied, ChunkApplied, MetadataState};
    use crate::transactions::{TransactionError, TransactionReply, TransactionStatus};
    use uuid::Uuid;

    const TOPIC: Uuid = Uuid::from_u128(42);

    fn state_with_topic() -> MetadataState {
        let mut state = MetadataState::default();
        state.apply(1, &JournalRecord::CreateTopic { name: "t".into(), topic_id: TOPIC, partitions: 2, configs: Default::default() });
        state
    }

    fn init(state: &mut MetadataState, revision: u64) -> (i64, i16) {
        let record = JournalRecord::InitTransactionalProducer {
            transactional_id: "tx".into(),
            timeout_ms: 60_000,
            producer_id: -1,
            producer_epoch: -1,
        };
        match state.apply(revision, &record) {
            ApplyOutcome::Transaction(Ok(TransactionReply::ProducerInitialized { producer_id, producer_epoch })) => {
                (producer_id, producer_epoch)
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    fn add(producer: (i64, i16), partitions: &[i32]) -> JournalRecord {
        JournalRecord::AddTransactionPartitions {
            transactional_id: "tx".into(),
            producer_id: producer.0,
            producer_epoch: producer.1,
            partitions: partitions.iter().map(|partition| GroupPartition { topic: "t".into(), partition: *partition }).collect(),
            now_ms: 1_000,
        }
    }

    fn data(producer: (i64, i16), partition: i32, sequence: i32, records: i64) -> JournalRecord {
        JournalRecord::CommitSegment {
            object: format!("data-{partition}-{sequence}"),
            chunks: vec![ChunkCommit {
                topic: "t".into(),
                topic_id: TOPIC,
                partition,
                record_count: records,
                byte_start: 0,
                byte_len: 100,
                max_timestamp: 0,
                batches: vec![ProducedBatch {
                    producer_id: producer.0,
                    producer_epoch: producer.1,
                    base_sequence: sequence,
                    record_count: records,
                    byte_len: 100,
                    transactional: true,
                }],
            }],
        }
    }

    fn end(producer: (i64, i16), commit: bool, bump_epoch: bool, partitions: &[i32]) -> JournalRecord {
        JournalRecord::EndTransaction {
            transactional_id: "tx".into(),
            producer_id: producer.0,
            producer_epoch: producer.1,
            commit,
            bump_epoch,
            object: "markers".into(),
            markers: partitions
                .iter()
                .map(|partition| ChunkCommit {
                    topic: "t".into(),
                    topic_id: TOPIC,
                    partition: *partition,
                    record_count: 1,
                    byte_start: 0,
                    byte_len: 78,
                    max_timestamp: 0,
                    batches: Vec::new(),
                })
                .collect(),
        }
    }

    fn batch_outcome(outcome: ApplyOutcome) -> BatchApplied {
        match outcome {
            ApplyOutcome::SegmentCommitted { chunks } => match &chunks[0] {
                ChunkApplied::Appended { batches, .. } => batches[0],
                other => panic!("unexpected {other:?}"),
            },
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_committed_transaction_moves_the_last_stable_offset_and_its_offsets_land_with_the_marker() {
        let mut state = state_with_topic();
        let producer = init(&mut state, 2);
        assert!(matches!(state.apply(3, &add(producer, &[0])), ApplyOutcome::Transaction(Ok(_))));
        assert_eq!(batch_outcome(state.apply(4, &data(producer, 0, 0, 3))), BatchApplied::Appended { base_offset: 0 });
        let partition = state.partition("t", 0).unwrap();
        assert_eq!((partition.high_watermark, partition.last_stable_offset()), (3, 0), "open transaction holds the LSO");
        // Offsets go with the transaction.
        let group = JournalRecord::AddTransactionGroup {
            transactional_id: "tx".into(),
            producer_id: producer.0,
            producer_epoch: producer.1,
            group: "g".into(),
            now_ms: 1_000,
        };
        state.apply(5, &group);
        let offsets = JournalRecord::TxnOffsetCommit {
            transactional_id: "tx".into(),
            producer_id: producer.0,
            producer_epoch: producer.1,
            group: "g".into(),
            offsets: vec![OffsetCommitEntry { topic: "in".into(), partition: 0, offset: 7, leader_epoch: -1, metadata: None }],
        };
        assert_eq!(state.apply(6, &offsets), ApplyOutcome::Transaction(Ok(TransactionReply::OffsetsStaged)));
        assert!(state.has_pending_transactional_offset("g", "in", 0));
        assert!(!state.group_offsets.contains_key("g"), "not visible before the commit");
        // The markers must cover exactly the transaction's partitions.
        assert!(matches!(
            state.apply(7, &end(producer, true, false, &[0, 1])),
            ApplyOutcome::Transaction(Err(TransactionError::ConcurrentTransactions(_)))
        ));
        assert_eq!(
            state.apply(8, &end(producer, true, false, &[0])),
            ApplyOutcome::Transaction(Ok(TransactionReply::Ended { status: TransactionStatus::CompleteCommit }))
        );
        let partition = state.partition("t", 0).unwrap();
        assert_eq!((partition.high_watermark, partition.last_stable_offset()), (4, 4), "the marker is offset 3");
        assert!(partition.aborted_transactions.is_empty());
        assert_eq!(state.group_offsets["g"]["in"][&0].offset, 7);
        // A retried EndTxn is answered the same; an abort now is refused.
        assert!(matches!(state.apply(9, &end(producer, true, false, &[])), ApplyOutcome::Transaction(Ok(_))));
        assert!(matches!(
            state.apply(10, &end(producer, false, false, &[])),
            ApplyOutcome::Transaction(Err(TransactionError::InvalidTxnState { .. }))
        ));
        assert_eq!(state.partition("t", 0).unwrap().high_watermark, 4, "refused ends append no marker");
        // A late retry of the transaction's data is refused, not added to a next transaction.
        assert!(matches!(batch_outcome(state.apply(11, &data(producer, 0, 3, 1))), BatchApplied::Refused(_)));
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(serde_json::from_str::<MetadataState>(&json).unwrap(), state, "snapshots keep transactions");
    }

    #[test]
    fn an_abort_is_indexed_and_a_new_producer_fences_the_old_epoch() {
        let mut state = state_with_topic();
        let producer = init(&mut state, 2);
        state.apply(3, &add(producer, &[1]));
        state.apply(4, &data(producer, 1, 0, 2));
        // Data for a partition the transaction did not add is refused (KIP-890 part 1).
        assert!(matches!(batch_outcome(state.apply(5, &data(producer, 0, 0, 1))), BatchApplied::Refused(_)));
        // A second producer with the same transactional id: the agent aborts the open
        // transaction with a bumped epoch, then initializes.
        assert!(matches!(
            state.apply(
                6,
                &JournalRecord::InitTransactionalProducer {
                    transactional_id: "tx".into(),
                    timeout_ms: 60_000,
                    producer_id: -1,
                    producer_epoch: -1
                }
            ),
            ApplyOutcome::Transaction(Err(TransactionError::ConcurrentTransactions(_)))
        ));
        assert_eq!(
            state.apply(7, &end(producer, false, true, &[1])),
            ApplyOutcome::Transaction(Ok(TransactionReply::Ended { status: TransactionStatus::CompleteAbort }))
        );
        let partition = state.partition("t", 1).unwrap();
        assert_eq!(partition.last_stable_offset(), 3);
        assert_eq!(
            partition.aborted_transactions,
            vec![crate::transactions::AbortedTransaction { producer_id: producer.0, first_offset: 0, last_offset: 2 }]
        );
        let second = init(&mut state, 8);
        assert_eq!(second, (producer.0, producer.1 + 2), "same id, epoch bumped by the abort and by the init");
        // The zombie's data, its commit and its offsets are all fenced.
        assert!(matches!(
            batch_outcome(state.apply(9, &data(producer, 1, 2, 1))),
            BatchApplied::Refused(crate::producers::SequenceError::StaleEpoch { .. })
        ));
        assert!(matches!(state.apply(10, &add(producer, &[1])), ApplyOutcome::Transaction(Err(TransactionError::ProducerFenced { .. }))));
        assert!(matches!(
            state.apply(11, &end(producer, true, false, &[])),
            ApplyOutcome::Transaction(Err(TransactionError::ProducerFenced { .. }))
        ));
        // A transaction cannot grow past the partitions its end record can mark.
        state.apply(
            12,
            &JournalRecord::CreateTopic {
                name: "wide".into(),
                topic_id: Uuid::from_u128(43),
                partitions: (super::MAX_TRANSACTION_PARTITIONS + 1) as i32,
                configs: Default::default(),
            },
        );
        let wide = |partitions: std::ops::Range<usize>| JournalRecord::AddTransactionPartitions {
            transactional_id: "tx".into(),
            producer_id: second.0,
            producer_epoch: second.1,
            partitions: partitions.map(|partition| GroupPartition { topic: "wide".into(), partition: partition as i32 }).collect(),
            now_ms: 1_000,
        };
        assert!(matches!(state.apply(13, &wide(0..super::MAX_TRANSACTION_PARTITIONS)), ApplyOutcome::Transaction(Ok(_))));
        assert!(matches!(state.apply(14, &wide(0..10)), ApplyOutcome::Transaction(Ok(_))), "partitions already in count once");
        let over = wide(super::MAX_TRANSACTION_PARTITIONS..super::MAX_TRANSACTION_PARTITIONS + 1);
        assert_eq!(state.apply(15, &over), ApplyOutcome::Transaction(Err(TransactionError::TooManyPartitions)));
        // Retention forgets aborted transactions below the log start.
        state.apply(
            16,
            &JournalRecord::TrimPartitions {
                trims: vec![crate::records::PartitionTrim { topic: "t".into(), topic_id: TOPIC, partition: 1, log_start_offset: 3 }],
            },
        );
        assert!(state.partition("t", 1).unwrap().aborted_transactions.is_empty());
    }
}
