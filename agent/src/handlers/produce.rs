//! Produce: validate each partition's batch (header, CRC and every record, as Kafka's
//! `LogValidator` does), append it to the open segment in arrival order, then answer once the
//! segment is stored and committed.
//!
//! Validation (CRC, decompression, record checks) runs on a bounded pool of blocking threads
//! (`ValidationPool`), not on the async workers: one client's compression bombs must not delay
//! another client's acknowledgements, fetches or heartbeats. Only a small request is checked in
//! place, under a 1 MiB inflation budget (`check_inline`). The connection task awaits the check
//! before reading its next request, so batches are still appended in the order they arrived.
//!
//! Never UNKNOWN_SERVER_ERROR: every failure maps to a precise or retriable code.

use super::{str_bytes, topic_name, AgentContext, ClientInfo, Reply};
use crate::cluster::Traffic;
use crate::metadata::{producers, topic_config, SequenceError};
use crate::protocol::batch::{self, BatchError, BatchSummary, TopicRules};
use crate::protocol::records::RecordsError;
use crate::storage::WriteError;
use bytes::Bytes;
use floe_meta::acl::{Operation, ResourceType};
use futures::future::BoxFuture;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, Semaphore};

/// Where produced batches are checked: at most `threads` blocking threads at a time, and a budget
/// of decompressed bytes per request (`--produce-validation-threads`,
/// `--produce-max-decompressed-bytes-per-request`).
pub struct ValidationPool {
    permits: Arc<Semaphore>,
    request_budget: usize,
}

impl ValidationPool {
    pub fn new(threads: usize, request_budget: usize) -> Self {
        Self { permits: Arc::new(Semaphore::new(threads.max(1))), request_budget }
    }
}

/// Bytes (read plus inflated) one blocking task checks before it gives its thread back, unless
/// a single batch is larger: enough to amortise the hand-off, small enough that a request queued
/// behind a connection sending bombs gets a thread after about one batch's work (the semaphore is
/// first come, first served).
const ROUND_BYTES: usize = 4 << 20;

/// A request whose batches hold at most this many bytes is first checked on the connection's own
/// task, under `INLINE_DECOMPRESSED_BYTES` of inflation: a small produce (the usual acks=all
/// trickle, a heartbeat-sized request) is answered without a hand-off and never queues behind
/// another connection's bombs. If its batches inflate past that, the request goes to the pool.
const INLINE_INPUT_BYTES: usize = 64 << 10;
/// Inflation a request may cost on the connection's task before it is sent to the pool instead:
/// about a millisecond of decompression.
const INLINE_DECOMPRESSED_BYTES: usize = 1 << 20;

/// Checks a small request where it is, or says it belongs on the pool.
fn check_inline(pool: &ValidationPool, checks: &[Check]) -> Option<Vec<Result<BatchSummary, BatchError>>> {
    if checks.iter().map(|check| check.records.len()).sum::<usize>() > INLINE_INPUT_BYTES {
        return None;
    }
    let inline_budget = INLINE_DECOMPRESSED_BYTES.min(pool.request_budget);
    let mut budget = inline_budget;
    let mut results = Vec::with_capacity(checks.len());
    for check in checks {
        let result = batch::validate_produced_within(&check.records, check.rules, &mut budget);
        if matches!(result, Err(BatchError::DecompressionBudget(_))) && inline_budget < pool.request_budget {
            return None;
        }
        results.push(result);
    }
    Some(results)
}

/// One partition's batch on its way to the pool.
struct Check {
    records: Bytes,
    rules: TopicRules,
}

/// Validates `checks` in order on the pool, under one request budget; one result per check.
async fn check_batches(pool: &ValidationPool, mut checks: Vec<Check>) -> Vec<Result<BatchSummary, BatchError>> {
    let total = checks.len();
    let mut results = Vec::with_capacity(total);
    let mut budget = pool.request_budget;
    while results.len() < total {
        let Ok(permit) = Arc::clone(&pool.permits).acquire_owned().await else { break };
        let start = results.len();
        let round = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut done = Vec::new();
            let mut work = 0usize;
            for check in &checks[start..] {
                let before = budget;
                done.push(batch::validate_produced_within(&check.records, check.rules, &mut budget));
                work += check.records.len() + (before - budget);
                if work >= ROUND_BYTES {
                    break;
                }
            }
            (checks, done, budget)
        });
        match round.await {
            Ok((returned, done, left)) => {
                checks = returned;
                budget = left;
                results.extend(done);
            }
            Err(error) => {
                tracing::error!(%error, "produced batch validation failed unexpectedly; refusing the request's remaining batches");
                break;
            }
        }
    }
    while results.len() < total {
        results.push(Err(BatchError::InvalidPayload(RecordsError::Records { reason: "validation did not complete".to_string() })));
    }
    results
}

/// A partition of the request, between the cheap checks and validation.
enum Pending {
    Done(Slot),
    Check { topic_id: uuid::Uuid, check: usize },
}

enum Slot {
    Done {
        error: ResponseError,
        message: String,
    },
    /// A retry of a batch that is already committed at this offset.
    Duplicate(i64),
    Waiting(oneshot::Receiver<Result<i64, WriteError>>),
}

/// A topic or partition this cluster does not have (retriable: it may be being created).
const NO_SUCH_PARTITION: ResponseError = ResponseError::UnknownTopicOrPartition;
/// Not durable within the request's timeout; the client retries the same batch.
const NOT_DURABLE_IN_TIME: ResponseError = ResponseError::RequestTimedOut;
/// The waiter was dropped because the agent is stopping; the client goes elsewhere.
const AGENT_STOPPING: ResponseError = ResponseError::NotLeaderOrFollower;
/// This agent drains and no longer leads the partition: the client refreshes its metadata and
/// sends the batch (unwritten, so with its original sequence) to the new leader.
const HANDED_OVER: ResponseError = ResponseError::NotLeaderOrFollower;

pub fn batch_error_code(error: &BatchError) -> ResponseError {
    match error {
        BatchError::CrcMismatch { .. } | BatchError::Truncated { .. } | BatchError::Empty => ResponseError::CorruptMessage,
        BatchError::TooLarge { .. } => ResponseError::MessageTooLarge,
        BatchError::UnsupportedMagic { .. } => ResponseError::UnsupportedForMessageFormat,
        BatchError::InconsistentCount { .. }
        | BatchError::MultipleBatches { .. }
        | BatchError::ControlBatch
        | BatchError::Transactional
        | BatchError::InvalidSequence { .. }
        | BatchError::InvalidPayload(_) => ResponseError::InvalidRecord,
        // Kafka has no such budget; MESSAGE_TOO_LARGE makes the Java producer split the batch and
        // send the halves, which fits the budget again.
        BatchError::DecompressionBudget(_) => ResponseError::MessageTooLarge,
    }
}

pub fn write_error_code(error: &WriteError) -> ResponseError {
    match error {
        WriteError::Store { .. } => ResponseError::KafkaStorageError,
        WriteError::Journal { .. } | WriteError::Sealed { .. } => ResponseError::RequestTimedOut,
        WriteError::TopicDeleted { .. } => ResponseError::UnknownTopicOrPartition,
        WriteError::ShuttingDown => ResponseError::NotLeaderOrFollower,
        WriteError::Sequence(SequenceError::StaleEpoch { .. }) => ResponseError::InvalidProducerEpoch,
        WriteError::Sequence(SequenceError::OutOfOrder { .. }) => ResponseError::OutOfOrderSequenceNumber,
        // Kafka's answer when transaction verification fails (KIP-890 part 1): the producer aborts.
        WriteError::Sequence(SequenceError::NotInTransaction { .. }) => ResponseError::InvalidTxnState,
    }
}

pub async fn start(context: Arc<AgentContext>, request: ProduceRequest, client: &ClientInfo) -> BoxFuture<'static, Reply> {
    let acks = request.acks;
    let timeout = Duration::from_millis(request.timeout_ms.max(1) as u64);
    let handing_over = context.cluster.handing_over();
    // An agent without the produce role never leads a partition in its Metadata; a producer that
    // reaches it was bootstrapped at the wrong pool. Kafka's "sent to an incompatible broker"
    // answer, not retriable, with what to change.
    let produce_refused = !context.cluster.serves(Traffic::Produce);
    // 1. Cheap checks on this task: topic, partition, draining.
    let mut pending: Vec<(String, Vec<(i32, Pending)>)> = Vec::with_capacity(request.topic_data.len());
    let mut checks = Vec::new();
    // A transactional produce needs WRITE on its transactional id as well (Kafka's rule), so a
    // client allowed to write a topic cannot write into transactions it may not use.
    let transaction_denied = request
        .transactional_id
        .as_ref()
        .is_some_and(|id| !context.allowed(client, Operation::Write, ResourceType::TransactionalId, &id.0));
    for topic in request.topic_data {
        let name = topic.name.0.to_string();
        // WRITE on the topic, checked before its existence, so a denied client learns nothing of
        // which topics exist (Kafka's order).
        let refusal = if transaction_denied {
            Some((ResponseError::TransactionalIdAuthorizationFailed, "not authorized to use this transactional id".to_string()))
        } else if !context.allowed(client, Operation::Write, ResourceType::Topic, &name) {
            Some((ResponseError::TopicAuthorizationFailed, format!("not authorized to write to topic {name:?}")))
        } else {
            None
        };
        if let Some((error, message)) = refusal {
            let denied = topic
                .partition_data
                .iter()
                .map(|partition| (partition.index, Pending::Done(Slot::Done { error, message: message.clone() })));
            pending.push((name, denied.collect()));
            continue;
        }
        let found = context.metadata.read(|state| {
            state.topics.get(&name).map(|found| {
                let rules = TopicRules {
                    max_message_bytes: topic_config::max_message_bytes(&found.configs),
                    keys_required: topic_config::is_compacted(&found.configs),
                };
                (found.id, found.partitions.len() as i32, rules)
            })
        });
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for partition in topic.partition_data {
            let index = partition.index;
            let Some((topic_id, partition_count, rules)) = found else {
                let message = format!("topic {name:?} does not exist");
                partitions.push((index, Pending::Done(Slot::Done { error: NO_SUCH_PARTITION, message })));
                continue;
            };
            if index < 0 || index >= partition_count {
                let message = format!("topic {name:?} has partitions 0..{partition_count}, not {index}");
                partitions.push((index, Pending::Done(Slot::Done { error: NO_SUCH_PARTITION, message })));
                continue;
            }
            if produce_refused {
                let message = "this agent does not take produce requests (its --roles leave out produce); bootstrap producers at an agent or pool with the produce role".to_string();
                partitions.push((index, Pending::Done(Slot::Done { error: ResponseError::InvalidRequest, message })));
                continue;
            }
            if handing_over {
                let message = "this agent is draining; Metadata names the partition's new leader".to_string();
                partitions.push((index, Pending::Done(Slot::Done { error: HANDED_OVER, message })));
                continue;
            }
            partitions.push((index, Pending::Check { topic_id, check: checks.len() }));
            checks.push(Check { records: partition.records.unwrap_or_default(), rules });
        }
        pending.push((name, partitions));
    }
    // 2. CRC, decompression and record validation on the pool. The records stay shared (a `Bytes`
    //    clone is a reference count), so nothing is copied.
    let records: Vec<Bytes> = checks.iter().map(|check| check.records.clone()).collect();
    let verdicts = match check_inline(&context.validation, &checks) {
        Some(verdicts) => verdicts,
        None => check_batches(&context.validation, checks).await,
    };
    // 3. Back on this task, in request order: duplicates, then appends.
    let mut topics: Vec<(String, Vec<(i32, Slot)>)> = Vec::with_capacity(pending.len());
    for (name, partitions) in pending {
        let mut slots = Vec::with_capacity(partitions.len());
        for (index, partition) in partitions {
            let (topic_id, check) = match partition {
                Pending::Done(slot) => {
                    slots.push((index, slot));
                    continue;
                }
                Pending::Check { topic_id, check } => (topic_id, check),
            };
            match &verdicts[check] {
                Err(error) => {
                    tracing::debug!(topic = %name, partition = index, %error, "refused produced batch");
                    context.metrics.refused_batches.with_label_values(&[error.reason()]).inc();
                    slots.push((index, Slot::Done { error: batch_error_code(error), message: error.to_string() }));
                }
                Ok(summary) => {
                    let summary = *summary;
                    // A retry of a committed batch (its answer was lost) gets the original offset
                    // without writing the bytes again. Batches racing with their own retry are
                    // caught later, when the journal applies them (floe-meta, meta/src/producers.rs).
                    if summary.producer_id >= 0 {
                        let committed = context.metadata.read(|state| {
                            state.partition(&name, index).and_then(|partition| {
                                producers::find_duplicate(
                                    &partition.producers,
                                    summary.producer_id,
                                    summary.producer_epoch,
                                    summary.base_sequence,
                                    summary.record_count,
                                )
                            })
                        });
                        if let Some(offset) = committed {
                            context.metrics.duplicate_batches.inc();
                            slots.push((index, Slot::Duplicate(offset)));
                            continue;
                        }
                    }
                    let records = records[check].clone();
                    context.metrics.bytes_in.inc_by(records.len() as u64);
                    let receiver = context.writer.append(&name, topic_id, index, records, summary).await;
                    slots.push((index, Slot::Waiting(receiver)));
                }
            }
        }
        topics.push((name, slots));
    }
    Box::pin(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut any_error = false;
        let mut responses = Vec::with_capacity(topics.len());
        for (name, slots) in topics {
            let mut partitions = Vec::with_capacity(slots.len());
            for (index, slot) in slots {
                let (result, message) = match slot {
                    Slot::Done { error, message } => (Err(error), Some(message)),
                    Slot::Duplicate(offset) => (Ok(offset), None),
                    Slot::Waiting(receiver) => match tokio::time::timeout_at(deadline, receiver).await {
                        Ok(Ok(Ok(offset))) => (Ok(offset), None),
                        Ok(Ok(Err(error))) => (Err(write_error_code(&error)), Some(error.to_string())),
                        Ok(Err(_)) => (Err(AGENT_STOPPING), Some("the agent is shutting down".to_string())),
                        Err(_) => (Err(NOT_DURABLE_IN_TIME), Some(format!("not durable within the request timeout of {timeout:?}"))),
                    },
                };
                let log_start_offset =
                    context.metadata.read(|state| state.partition(&name, index).map(|partition| partition.log_start_offset)).unwrap_or(-1);
                let response = PartitionProduceResponse::default()
                    .with_index(index)
                    .with_log_append_time_ms(-1)
                    .with_log_start_offset(log_start_offset);
                let response = match result {
                    Ok(offset) => response.with_base_offset(offset),
                    Err(error) => {
                        any_error = true;
                        response.with_error_code(error.code()).with_base_offset(-1).with_error_message(message.map(str_bytes))
                    }
                };
                partitions.push(response);
            }
            responses.push(TopicProduceResponse::default().with_name(topic_name(name)).with_partition_responses(partitions));
        }
        if acks == 0 {
            return if any_error { Reply::Close } else { Reply::Silent };
        }
        Reply::Respond(Box::new(kafka_protocol::messages::ResponseKind::Produce(ProduceResponse::default().with_responses(responses))))
    })
}

#[cfg(test)]
mod tests {
    //! Error-code discipline for the produce path: every way a produced batch can fail, the code
    //! it gets, and how the Java client treats that code (`Errors.exception() instanceof
    //! RetriableException`, which kafka-protocol's `is_retriable` mirrors). Adding a variant to
    //! `BatchError` or `WriteError` fails to compile here until it is classified.
    use super::*;
    use crate::metadata::SequenceError;

    /// What the client should do with the error.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum ClientTreatment {
        /// Retried with the same sequence numbers (never a duplicate with idempotence).
        Retry,
        /// The batch fails for good: the input itself is wrong.
        FailBatch,
        /// Not retriable by class, but handled by the idempotent producer (epoch bump or fence).
        IdempotenceHandled,
    }

    fn batch_error_cases() -> Vec<(BatchError, ResponseError, ClientTreatment)> {
        use ClientTreatment::*;
        let all = [
            BatchError::Empty,
            BatchError::Truncated { available: 10, declared: 61 },
            BatchError::UnsupportedMagic { magic: 1 },
            BatchError::CrcMismatch { stored: 1, computed: 2 },
            BatchError::InconsistentCount { count: 2, last_offset_delta: 5 },
            BatchError::MultipleBatches { count: 2 },
            BatchError::ControlBatch,
            BatchError::Transactional,
            BatchError::InvalidSequence { producer_id: 1, base_sequence: -1 },
            BatchError::TooLarge { size: 10, limit: 5 },
            BatchError::InvalidPayload(RecordsError::Lz4Frame { reason: "uses dependent blocks" }),
            BatchError::InvalidPayload(RecordsError::CountPastBytes { count: 60_000_000, bytes: 64 << 20 }),
            BatchError::DecompressionBudget(RecordsError::RequestBudgetSpent {
                compression: kafka_protocol::records::Compression::Zstd,
                budget: 256 << 20,
            }),
        ];
        all.into_iter()
            .map(|error| {
                let expected = match error {
                    // Java retries CORRUPT_MESSAGE (CorruptRecordException is retriable): the bytes
                    // may have been damaged in transit.
                    BatchError::Empty | BatchError::Truncated { .. } | BatchError::CrcMismatch { .. } => {
                        (ResponseError::CorruptMessage, Retry)
                    }
                    // Java splits a batch that got MESSAGE_TOO_LARGE, else fails it.
                    BatchError::TooLarge { .. } => (ResponseError::MessageTooLarge, FailBatch),
                    BatchError::UnsupportedMagic { .. } => (ResponseError::UnsupportedForMessageFormat, FailBatch),
                    BatchError::InconsistentCount { .. }
                    | BatchError::MultipleBatches { .. }
                    | BatchError::ControlBatch
                    | BatchError::Transactional
                    | BatchError::InvalidSequence { .. }
                    // Deterministic: the same bytes fail the same way however often they are sent.
                    | BatchError::InvalidPayload(_) => (ResponseError::InvalidRecord, FailBatch),
                    // Java splits the batch and resends the halves (each then fits the budget).
                    BatchError::DecompressionBudget(_) => (ResponseError::MessageTooLarge, FailBatch),
                };
                (error, expected.0, expected.1)
            })
            .collect()
    }

    fn write_error_cases() -> Vec<(WriteError, ResponseError, ClientTreatment)> {
        use ClientTreatment::*;
        let all = [
            WriteError::Store { object: "o".into(), reason: "bucket unreachable".into() },
            WriteError::Journal { object: "o".into(), reason: "etcd unreachable".into() },
            WriteError::Sealed { object: "o".into() },
            WriteError::TopicDeleted { topic: "t".into() },
            WriteError::ShuttingDown,
            WriteError::Sequence(SequenceError::StaleEpoch { producer_id: 1, epoch: 0, current: 1 }),
            WriteError::Sequence(SequenceError::OutOfOrder { producer_id: 1, epoch: 0, expected: 5, received: 9 }),
            WriteError::Sequence(SequenceError::NotInTransaction { producer_id: 1 }),
        ];
        all.into_iter()
            .map(|error| {
                let expected = match error {
                    // Nothing was acknowledged; the same batch is safe to send again.
                    WriteError::Store { .. } => (ResponseError::KafkaStorageError, Retry),
                    WriteError::Journal { .. } => (ResponseError::RequestTimedOut, Retry),
                    WriteError::Sealed { .. } => (ResponseError::RequestTimedOut, Retry),
                    WriteError::TopicDeleted { .. } => (ResponseError::UnknownTopicOrPartition, Retry),
                    WriteError::ShuttingDown => (ResponseError::NotLeaderOrFollower, Retry),
                    WriteError::Sequence(SequenceError::StaleEpoch { .. }) => (ResponseError::InvalidProducerEpoch, IdempotenceHandled),
                    WriteError::Sequence(SequenceError::OutOfOrder { .. }) => (ResponseError::OutOfOrderSequenceNumber, IdempotenceHandled),
                    WriteError::Sequence(SequenceError::NotInTransaction { .. }) => (ResponseError::InvalidTxnState, IdempotenceHandled),
                };
                (error, expected.0, expected.1)
            })
            .collect()
    }

    fn check(description: String, code: ResponseError, expected: ResponseError, treatment: ClientTreatment) {
        assert_ne!(code, ResponseError::UnknownServerError, "{description}: UNKNOWN_SERVER_ERROR on the produce path");
        assert_eq!(code, expected, "{description}: wrong code");
        let retriable = code.is_retriable();
        match treatment {
            ClientTreatment::Retry => assert!(retriable, "{description}: {code:?} must be retriable for the Java client"),
            ClientTreatment::FailBatch | ClientTreatment::IdempotenceHandled => {
                assert!(!retriable, "{description}: {code:?} must not be blindly retried")
            }
        }
    }

    #[test]
    fn every_produce_failure_gets_a_precise_code_the_java_client_handles() {
        for (error, expected, treatment) in batch_error_cases() {
            check(format!("batch error {error}"), batch_error_code(&error), expected, treatment);
        }
        for (error, expected, treatment) in write_error_cases() {
            check(format!("write error {error}"), write_error_code(&error), expected, treatment);
        }
        // Failures the handler answers itself (see `start`): unknown topic or partition, a write
        // not durable within the request timeout, and a waiter dropped by a shutting-down agent.
        for (description, code, expected) in [
            ("unknown topic or partition", NO_SUCH_PARTITION, ResponseError::UnknownTopicOrPartition),
            ("not durable within the request timeout", NOT_DURABLE_IN_TIME, ResponseError::RequestTimedOut),
            ("waiter dropped at shutdown", AGENT_STOPPING, ResponseError::NotLeaderOrFollower),
            ("partition handed over by a draining agent", HANDED_OVER, ResponseError::NotLeaderOrFollower),
        ] {
            check(description.to_string(), code, expected, ClientTreatment::Retry);
        }
    }

    fn pending(records: bytes::Bytes) -> Check {
        Check { records, rules: TopicRules { max_message_bytes: usize::MAX, keys_required: false } }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pool_answers_in_request_order_and_spends_one_budget_across_rounds() {
        use crate::protocol::batch::tests::encoded_batch;
        use crate::protocol::records::tests::zeros_batch;
        use kafka_protocol::records::Compression;
        // Budget 20 MiB: two 8 MiB bombs fit, the third does not, and a compressed batch after it
        // finds nothing left; uncompressed batches cost no inflation. Rounds of 4 MiB mean every
        // bomb is its own round, on either of the two threads.
        let pool = ValidationPool::new(2, 20 << 20);
        let bomb = zeros_batch(8 << 20, Compression::Zstd);
        let checks = vec![
            pending(encoded_batch(3, Compression::Lz4)),
            pending(bomb.clone()),
            pending(bomb.clone()),
            pending(encoded_batch(2, Compression::None)),
            pending(bomb.clone()),
            pending(encoded_batch(2, Compression::Gzip)),
            pending(encoded_batch(4, Compression::None)),
        ];
        let verdicts = check_batches(&pool, checks).await;
        let counts: Vec<Option<i64>> = verdicts.iter().map(|verdict| verdict.as_ref().ok().map(|summary| summary.record_count)).collect();
        assert_eq!(counts, [Some(3), Some(1), Some(1), Some(2), None, None, Some(4)]);
        assert!(matches!(verdicts[4], Err(BatchError::DecompressionBudget(_))), "{:?}", verdicts[4]);
        assert!(matches!(verdicts[5], Err(BatchError::DecompressionBudget(_))), "{:?}", verdicts[5]);
        assert_eq!(batch_error_code(verdicts[4].as_ref().unwrap_err()), ResponseError::MessageTooLarge);
        assert_eq!(pool.permits.available_permits(), 2, "a round kept its thread");
    }

    #[test]
    fn small_requests_are_checked_in_place_and_bombs_go_to_the_pool() {
        use crate::protocol::batch::tests::encoded_batch;
        use crate::protocol::records::tests::zeros_batch;
        use kafka_protocol::records::Compression;
        let pool = ValidationPool::new(1, 256 << 20);
        let small = [pending(encoded_batch(5, Compression::Lz4)), pending(encoded_batch(5, Compression::None))];
        let verdicts = check_inline(&pool, &small).expect("a small request is checked in place");
        assert!(verdicts.iter().all(Result::is_ok));
        // A few KiB that inflate to 8 MiB: past the in-place budget, so the pool takes it.
        let bomb = zeros_batch(8 << 20, Compression::Zstd);
        assert!(bomb.len() < INLINE_INPUT_BYTES);
        assert!(check_inline(&pool, &[pending(bomb)]).is_none());
        // More than 64 KiB of batches: the pool, without looking.
        let large = encoded_batch(3_000, Compression::None);
        assert!(large.len() > INLINE_INPUT_BYTES);
        assert!(check_inline(&pool, &[pending(large)]).is_none());
        // With a request budget below the in-place one, the in-place answer is final.
        let tight = ValidationPool::new(1, 1 << 10);
        let verdicts = check_inline(&tight, &[pending(zeros_batch(8 << 20, Compression::Zstd))]).expect("final in place");
        assert!(matches!(verdicts[0], Err(BatchError::DecompressionBudget(_))));
    }
}
