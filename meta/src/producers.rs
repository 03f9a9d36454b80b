//! Idempotent-producer state of one partition (ARCHITECTURE §5), part of the deterministic apply
//! function: each producer's epoch and its last five committed batches, so a retried batch is
//! recognised wherever it lands and answered with the offset it got the first time.
//!
//! The rules follow Kafka's `ProducerAppendInfo.checkSequence` (see KAFKA-PITFALLS §7):
//! - a producer with no state here (new, or evicted) is accepted at any sequence;
//! - a lower epoch is refused (INVALID_PRODUCER_EPOCH), a higher one must start at sequence 0;
//! - at the same epoch a batch matching one of the last five is a duplicate; otherwise it must
//!   continue the newest one (sequences wrap from i32::MAX to 0), else it is out of order.

use crate::records::ProducedBatch;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Batches remembered per producer and partition; Java and librdkafka keep at most five in flight.
pub const WINDOW: usize = 5;

/// Producers remembered per partition. Beyond it the one that committed longest ago is forgotten;
/// a forgotten producer is accepted at any sequence, so this bounds memory without refusing
/// anyone (it only loses duplicate detection for a producer idle that long).
pub const MAX_PRODUCERS_PER_PARTITION: usize = 1_000;

/// The producers of one partition by producer id.
pub type ProducerStates = BTreeMap<i64, ProducerState>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerState {
    pub epoch: i16,
    /// Oldest first, at most [`WINDOW`].
    pub batches: VecDeque<CommittedBatch>,
    /// Journal revision of the newest batch; eviction order.
    pub last_revision: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedBatch {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: i64,
}

/// Why a batch was left out of the log. Each maps to one Kafka error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    #[error("producer {producer_id} sent epoch {epoch}, older than its current epoch {current}")]
    StaleEpoch { producer_id: i64, epoch: i16, current: i16 },
    #[error("producer {producer_id} epoch {epoch} sent sequence {received}, expected {expected}")]
    OutOfOrder { producer_id: i64, epoch: i16, expected: i32, received: i32 },
    /// A transactional batch for a partition its producer's ongoing transaction did not add, or
    /// that arrived after the transaction ended.
    #[error("producer {producer_id} has no ongoing transaction including this partition")]
    NotInTransaction { producer_id: i64 },
}

/// What to do with one idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    Append,
    /// Already in the log at this base offset.
    Duplicate {
        base_offset: i64,
    },
    Refuse(SequenceError),
}

/// Kafka's sequence arithmetic: sequences wrap from i32::MAX to 0.
pub fn increment_sequence(sequence: i32, increment: i64) -> i32 {
    let increment = (increment.rem_euclid(i64::from(i32::MAX) + 1)) as i32;
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

/// The last sequence of a batch of `record_count` records starting at `base_sequence`.
pub fn last_sequence(base_sequence: i32, record_count: i64) -> i32 {
    increment_sequence(base_sequence, (record_count - 1).max(0))
}

/// The committed base offset of this exact batch, if it is one of the producer's last five.
pub fn find_duplicate(producers: &ProducerStates, producer_id: i64, epoch: i16, base_sequence: i32, record_count: i64) -> Option<i64> {
    let state = producers.get(&producer_id).filter(|state| state.epoch == epoch)?;
    let last = last_sequence(base_sequence, record_count);
    state.batches.iter().find(|batch| batch.first_sequence == base_sequence && batch.last_sequence == last).map(|batch| batch.base_offset)
}

pub fn check(producers: &ProducerStates, batch: &ProducedBatch) -> SequenceCheck {
    let Some(state) = producers.get(&batch.producer_id) else { return SequenceCheck::Append };
    if batch.producer_epoch < state.epoch {
        return SequenceCheck::Refuse(SequenceError::StaleEpoch {
            producer_id: batch.producer_id,
            epoch: batch.producer_epoch,
            current: state.epoch,
        });
    }
    let expected = if batch.producer_epoch > state.epoch {
        0
    } else {
        if let Some(base_offset) =
            find_duplicate(producers, batch.producer_id, batch.producer_epoch, batch.base_sequence, batch.record_count)
        {
            return SequenceCheck::Duplicate { base_offset };
        }
        match state.batches.back() {
            Some(newest) => increment_sequence(newest.last_sequence, 1),
            None => return SequenceCheck::Append,
        }
    };
    if batch.base_sequence == expected {
        SequenceCheck::Append
    } else {
        SequenceCheck::Refuse(SequenceError::OutOfOrder {
            producer_id: batch.producer_id,
            epoch: batch.producer_epoch,
            expected,
            received: batch.base_sequence,
        })
    }
}

/// Remembers an appended batch (call only after [`check`] answered `Append`).
pub fn record(producers: &mut ProducerStates, batch: &ProducedBatch, base_offset: i64, revision: u64) {
    if !producers.contains_key(&batch.producer_id) && producers.len() >= MAX_PRODUCERS_PER_PARTITION {
        let oldest = producers.iter().min_by_key(|(id, state)| (state.last_revision, **id)).map(|(id, _)| *id);
        if let Some(oldest) = oldest {
            producers.remove(&oldest);
        }
    }
    let state = producers.entry(batch.producer_id).or_insert_with(|| ProducerState {
        epoch: batch.producer_epoch,
        batches: VecDeque::with_capacity(WINDOW),
        last_revision: revision,
    });
    if state.epoch != batch.producer_epoch {
        state.epoch = batch.producer_epoch;
        state.batches.clear();
    }
    if state.batches.len() == WINDOW {
        state.batches.pop_front();
    }
    state.batches.push_back(CommittedBatch {
        first_sequence: batch.base_sequence,
        last_sequence: last_sequence(batch.base_sequence, batch.record_count),
        base_offset,
    });
    state.last_revision = revision;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(producer_id: i64, epoch: i16, sequence: i32, count: i64) -> ProducedBatch {
        ProducedBatch {
            producer_id,
            producer_epoch: epoch,
            base_sequence: sequence,
            record_count: count,
            byte_len: 100,
            transactional: false,
        }
    }

    #[test]
    fn sequences_wrap_from_the_maximum_to_zero() {
        assert_eq!(increment_sequence(5, 1), 6);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(last_sequence(i32::MAX, 2), 0);
        assert_eq!(last_sequence(7, 1), 7);
    }

    #[test]
    fn a_retried_batch_among_the_last_five_is_a_duplicate_with_its_first_offset() {
        let mut producers = ProducerStates::new();
        for index in 0..7 {
            let produced = batch(1, 0, index * 10, 10);
            assert_eq!(check(&producers, &produced), SequenceCheck::Append);
            record(&mut producers, &produced, 1_000 + i64::from(index) * 10, index as u64);
        }
        assert_eq!(check(&producers, &batch(1, 0, 20, 10)), SequenceCheck::Duplicate { base_offset: 1_020 });
        assert_eq!(check(&producers, &batch(1, 0, 60, 10)), SequenceCheck::Duplicate { base_offset: 1_060 });
        // Older than the window: no longer recognised, and not the next sequence either.
        assert!(matches!(check(&producers, &batch(1, 0, 10, 10)), SequenceCheck::Refuse(SequenceError::OutOfOrder { expected: 70, .. })));
        assert_eq!(check(&producers, &batch(1, 0, 70, 3)), SequenceCheck::Append);
    }

    #[test]
    fn a_gap_is_out_of_order_and_epochs_fence_and_reset_sequences() {
        let mut producers = ProducerStates::new();
        // Unknown producers are accepted at any sequence (never UNKNOWN_PRODUCER_ID).
        assert_eq!(check(&producers, &batch(9, 3, 500, 5)), SequenceCheck::Append);
        record(&mut producers, &batch(9, 3, 500, 5), 0, 1);
        assert!(matches!(
            check(&producers, &batch(9, 3, 506, 1)),
            SequenceCheck::Refuse(SequenceError::OutOfOrder { expected: 505, received: 506, .. })
        ));
        assert!(matches!(check(&producers, &batch(9, 2, 505, 1)), SequenceCheck::Refuse(SequenceError::StaleEpoch { current: 3, .. })));
        assert!(matches!(check(&producers, &batch(9, 4, 505, 1)), SequenceCheck::Refuse(SequenceError::OutOfOrder { expected: 0, .. })));
        assert_eq!(check(&producers, &batch(9, 4, 0, 1)), SequenceCheck::Append);
        record(&mut producers, &batch(9, 4, 0, 1), 5, 2);
        assert_eq!(producers[&9].batches.len(), 1, "a new epoch starts a new window");
    }

    #[test]
    fn the_producer_idle_longest_is_forgotten_beyond_the_cap() {
        let mut producers = ProducerStates::new();
        for id in 0..MAX_PRODUCERS_PER_PARTITION as i64 + 1 {
            record(&mut producers, &batch(id, 0, 0, 1), id, id as u64 + 10);
        }
        assert_eq!(producers.len(), MAX_PRODUCERS_PER_PARTITION);
        assert!(!producers.contains_key(&0));
        assert_eq!(check(&producers, &batch(0, 0, 77, 1)), SequenceCheck::Append, "a forgotten producer is accepted again");
    }
}
