//! Transactions (KIP-98 with KIP-890 part 1): InitProducerId with a `transactional.id`,
//! AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn, DescribeTransactions and
//! ListTransactions. Every decision is a journal record that apply validates
//! (`floe_meta::transactions`), so any agent can serve any transactional id; FindCoordinator
//! still spreads them over the agents like groups. DESIGN.md "Transactions without partition
//! leaders".

use super::{str_bytes, topic_name, AgentContext, ClientInfo};
use crate::metadata::{ApplyOutcome, ChunkCommit, GroupPartition, JournalRecord, OffsetCommitEntry};
use crate::storage::segment::SegmentBuilder;
use bytes::{Bytes, BytesMut};
use floe_meta::acl::{Operation, ResourceType};
use floe_meta::transactions::{TransactionError, TransactionReply, TransactionStatus};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult};
use kafka_protocol::messages::txn_offset_commit_response::{TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, DescribeTransactionsRequest,
    DescribeTransactionsResponse, EndTxnRequest, EndTxnResponse, InitProducerIdRequest, InitProducerIdResponse, ListTransactionsRequest,
    ListTransactionsResponse, ProducerId, TransactionalId, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use uuid::Uuid;

/// Kafka's `transaction.max.timeout.ms` default: longer timeouts are refused.
pub const MAX_TRANSACTION_TIMEOUT_MS: i32 = 900_000;

/// How often a request rebuilds and resubmits a record that apply answered with
/// CONCURRENT_TRANSACTIONS before passing that answer on to the client (who retries).
const ATTEMPTS: usize = 3;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|elapsed| elapsed.as_millis() as i64).unwrap_or(0)
}

/// Kafka's code for a refused transactional record.
pub fn error_code(error: &TransactionError) -> ResponseError {
    match error {
        TransactionError::ProducerFenced { .. } => ResponseError::ProducerFenced,
        TransactionError::InvalidProducerIdMapping(_) => ResponseError::InvalidProducerIdMapping,
        TransactionError::InvalidTxnState { .. } => ResponseError::InvalidTxnState,
        TransactionError::ConcurrentTransactions(_) => ResponseError::ConcurrentTransactions,
        TransactionError::UnknownPartition { .. } => ResponseError::UnknownTopicOrPartition,
        // Kafka has no limit and so no code for it; the request is refused as malformed.
        TransactionError::TooManyPartitions => ResponseError::InvalidRequest,
    }
}

/// Submits a transactional record: its reply, or the code to answer.
async fn submit(context: &AgentContext, record: JournalRecord) -> Result<TransactionReply, ResponseError> {
    match context.metadata.submit(record).await {
        Ok(ApplyOutcome::Transaction(Ok(reply))) => Ok(reply),
        Ok(ApplyOutcome::Transaction(Err(error))) => {
            tracing::debug!(%error, "transactional request refused");
            Err(error_code(&error))
        }
        Ok(other) => {
            tracing::warn!(?other, "unexpected outcome of a transactional record");
            Err(ResponseError::CoordinatorNotAvailable)
        }
        Err(error) => {
            tracing::warn!(%error, "failed to journal a transactional record");
            Err(ResponseError::CoordinatorNotAvailable)
        }
    }
}

/// One control batch (Kafka's end-transaction marker): a single control record whose key says
/// COMMIT or ABORT and whose value carries the coordinator epoch (0: Floe has no coordinator
/// epochs; apply orders everything).
fn marker_batch(producer_id: i64, producer_epoch: i16, commit: bool, timestamp: i64) -> Bytes {
    let key = Bytes::from(vec![0, 0, 0, u8::from(commit)]);
    let value = Bytes::from(vec![0, 0, 0, 0, 0, 0]);
    let record = Record {
        transactional: true,
        control: true,
        partition_leader_epoch: 0,
        producer_id,
        producer_epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp,
        key: Some(key),
        value: Some(value),
        headers: Default::default(),
        delete_horizon: false,
    };
    let mut buffer = BytesMut::new();
    RecordBatchEncoder::encode(&mut buffer, std::iter::once(&record), &RecordEncodeOptions { version: 2, compression: Compression::None })
        .expect("a one-record control batch always encodes");
    buffer.freeze()
}

/// Ends the ongoing transaction of `transactional_id` (held by `producer_id` at `producer_epoch`):
/// stores one marker per partition in a segment object and journals the decision with them.
/// Rebuilds when the transaction gained a partition meanwhile.
pub async fn end_transaction(
    context: &AgentContext,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    bump_epoch: bool,
) -> Result<TransactionReply, ResponseError> {
    for attempt in 1..=ATTEMPTS {
        // The partitions as this replica sees them; apply checks they are still exactly the
        // transaction's.
        let partitions: Vec<(GroupPartition, Option<Uuid>)> = context.metadata.read(|state| {
            let Some(transaction) = state.transactions.get(transactional_id) else { return Vec::new() };
            if transaction.status != TransactionStatus::Ongoing {
                return Vec::new();
            }
            transaction.partitions.iter().map(|entry| (entry.clone(), state.topics.get(&entry.topic).map(|topic| topic.id))).collect()
        });
        let timestamp = now_ms();
        let mut markers = Vec::with_capacity(partitions.len());
        let mut builder = SegmentBuilder::with_capacity(partitions.len() * 160);
        for (entry, topic_id) in &partitions {
            let Some(topic_id) = topic_id else {
                // The topic was deleted: nothing to mark, but the partition must still be named.
                markers.push(ChunkCommit {
                    topic: entry.topic.clone(),
                    topic_id: Uuid::nil(),
                    partition: entry.partition,
                    record_count: 0,
                    byte_start: 0,
                    byte_len: 0,
                    max_timestamp: timestamp,
                    batches: Vec::new(),
                });
                continue;
            };
            let batch = marker_batch(producer_id, producer_epoch, commit, timestamp);
            let footer = builder.add_chunk(&entry.topic, *topic_id, entry.partition, &[(batch, 1)], timestamp);
            markers.push(ChunkCommit {
                topic: entry.topic.clone(),
                topic_id: *topic_id,
                partition: entry.partition,
                record_count: footer.record_count,
                byte_start: footer.byte_start,
                byte_len: footer.byte_len,
                max_timestamp: footer.max_timestamp,
                batches: Vec::new(),
            });
        }
        let object = if partitions.iter().any(|(_, topic_id)| topic_id.is_some()) {
            let (bytes, _) = builder.finish();
            match context.writer.store_segment(bytes).await {
                Ok(object) => object,
                Err(error) => {
                    tracing::warn!(%error, transactional_id, "could not store transaction markers");
                    return Err(ResponseError::CoordinatorNotAvailable);
                }
            }
        } else {
            String::new()
        };
        let record = JournalRecord::EndTransaction {
            transactional_id: transactional_id.to_string(),
            producer_id,
            producer_epoch,
            commit,
            bump_epoch,
            object,
            markers,
        };
        match context.metadata.submit(record).await {
            Ok(ApplyOutcome::Transaction(Ok(reply))) => {
                context.metrics.transactions_ended.with_label_values(&[if commit { "commit" } else { "abort" }]).inc();
                return Ok(reply);
            }
            Ok(ApplyOutcome::Transaction(Err(TransactionError::ConcurrentTransactions(_)))) | Ok(ApplyOutcome::SegmentRefused { .. })
                if attempt < ATTEMPTS =>
            {
                continue
            }
            Ok(ApplyOutcome::Transaction(Err(error))) => return Err(error_code(&error)),
            Ok(ApplyOutcome::SegmentRefused { .. }) => return Err(ResponseError::ConcurrentTransactions),
            Ok(other) => {
                tracing::warn!(?other, "unexpected outcome ending a transaction");
                return Err(ResponseError::CoordinatorNotAvailable);
            }
            Err(error) => {
                tracing::warn!(%error, transactional_id, "failed to journal the end of a transaction");
                return Err(ResponseError::CoordinatorNotAvailable);
            }
        }
    }
    Err(ResponseError::ConcurrentTransactions)
}

/// InitProducerId for a transactional producer: aborts the transaction a previous producer left
/// open (bumping its epoch, which fences it), then hands out the id and a new epoch.
pub async fn init_producer(context: &AgentContext, request: &InitProducerIdRequest, client: &ClientInfo) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default().with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
    let Some(transactional_id) = request.transactional_id.as_ref().map(|id| id.0.to_string()) else {
        return response.with_error_code(ResponseError::InvalidRequest.code());
    };
    if !context.allowed(client, Operation::Write, ResourceType::TransactionalId, &transactional_id) {
        return response.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    if request.transaction_timeout_ms <= 0 || request.transaction_timeout_ms > MAX_TRANSACTION_TIMEOUT_MS {
        return response.with_error_code(ResponseError::InvalidTransactionTimeout.code());
    }
    for _ in 0..ATTEMPTS {
        let record = JournalRecord::InitTransactionalProducer {
            transactional_id: transactional_id.clone(),
            timeout_ms: request.transaction_timeout_ms,
            producer_id: request.producer_id.0,
            producer_epoch: request.producer_epoch,
        };
        match submit(context, record).await {
            Ok(TransactionReply::ProducerInitialized { producer_id, producer_epoch }) => {
                return response.with_producer_id(ProducerId(producer_id)).with_producer_epoch(producer_epoch)
            }
            Ok(other) => {
                tracing::warn!(?other, "unexpected reply to InitTransactionalProducer");
                return response.with_error_code(ResponseError::CoordinatorNotAvailable.code());
            }
            Err(ResponseError::ConcurrentTransactions) => {
                let current = context
                    .metadata
                    .read(|state| state.transactions.get(&transactional_id).map(|held| (held.producer_id, held.producer_epoch)));
                if let Some((producer_id, producer_epoch)) = current {
                    // Whatever the outcome (another agent may end it first), try the init again.
                    let _ = end_transaction(context, &transactional_id, producer_id, producer_epoch, false, true).await;
                }
            }
            Err(code) => return response.with_error_code(code.code()),
        }
    }
    response.with_error_code(ResponseError::ConcurrentTransactions.code())
}

pub async fn add_partitions(context: &AgentContext, request: AddPartitionsToTxnRequest, client: &ClientInfo) -> AddPartitionsToTxnResponse {
    let transactional_id = request.v3_and_below_transactional_id.0.to_string();
    let requested: Vec<(String, Vec<i32>)> =
        request.v3_and_below_topics.iter().map(|topic| (topic.name.0.to_string(), topic.partitions.clone())).collect();
    let answer = |codes: &dyn Fn(&str, i32) -> i16| {
        let results = requested
            .iter()
            .map(|(topic, partitions)| {
                AddPartitionsToTxnTopicResult::default().with_name(topic_name(topic.clone())).with_results_by_partition(
                    partitions
                        .iter()
                        .map(|partition| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(*partition)
                                .with_partition_error_code(codes(topic, *partition))
                        })
                        .collect(),
                )
            })
            .collect();
        AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
    };
    if !context.allowed(client, Operation::Write, ResourceType::TransactionalId, &transactional_id) {
        return answer(&|_, _| ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    let denied: Vec<String> = requested
        .iter()
        .map(|(topic, _)| topic.clone())
        .filter(|topic| !context.allowed(client, Operation::Write, ResourceType::Topic, topic))
        .collect();
    if !denied.is_empty() {
        return answer(&|topic, _| {
            if denied.iter().any(|name| name == topic) {
                ResponseError::TopicAuthorizationFailed.code()
            } else {
                ResponseError::OperationNotAttempted.code()
            }
        });
    }
    // Refused before it reaches the journal: a record this large could not be appended at all.
    if requested.iter().map(|(_, partitions)| partitions.len()).sum::<usize>() > floe_meta::transactions::MAX_TRANSACTION_PARTITIONS {
        return answer(&|_, _| ResponseError::InvalidRequest.code());
    }
    let missing: Vec<(String, i32)> = context.metadata.read(|state| {
        requested
            .iter()
            .flat_map(|(topic, partitions)| partitions.iter().map(move |partition| (topic.clone(), *partition)))
            .filter(|(topic, partition)| state.partition(topic, *partition).is_none())
            .collect()
    });
    if !missing.is_empty() {
        return answer(&|topic, partition| {
            if missing.iter().any(|(name, index)| name == topic && *index == partition) {
                ResponseError::UnknownTopicOrPartition.code()
            } else {
                ResponseError::OperationNotAttempted.code()
            }
        });
    }
    let record = JournalRecord::AddTransactionPartitions {
        transactional_id,
        producer_id: request.v3_and_below_producer_id.0,
        producer_epoch: request.v3_and_below_producer_epoch,
        partitions: requested
            .iter()
            .flat_map(|(topic, partitions)| {
                partitions.iter().map(|partition| GroupPartition { topic: topic.clone(), partition: *partition })
            })
            .collect(),
        now_ms: now_ms(),
    };
    match submit(context, record).await {
        Ok(_) => answer(&|_, _| 0),
        Err(code) => answer(&|_, _| code.code()),
    }
}

pub async fn add_offsets(context: &AgentContext, request: AddOffsetsToTxnRequest, client: &ClientInfo) -> AddOffsetsToTxnResponse {
    let transactional_id = request.transactional_id.0.to_string();
    let group = request.group_id.0.to_string();
    let response = AddOffsetsToTxnResponse::default();
    if !context.allowed(client, Operation::Write, ResourceType::TransactionalId, &transactional_id) {
        return response.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    if !context.allowed(client, Operation::Read, ResourceType::Group, &group) {
        return response.with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    let record = JournalRecord::AddTransactionGroup {
        transactional_id,
        producer_id: request.producer_id.0,
        producer_epoch: request.producer_epoch,
        group,
        now_ms: now_ms(),
    };
    match submit(context, record).await {
        Ok(_) => response,
        Err(code) => response.with_error_code(code.code()),
    }
}

pub async fn commit_offsets(context: &AgentContext, request: TxnOffsetCommitRequest, client: &ClientInfo) -> TxnOffsetCommitResponse {
    let group = request.group_id.0.to_string();
    let answer = |code: &dyn Fn(&str) -> i16| {
        let topics = request
            .topics
            .iter()
            .map(|topic| {
                TxnOffsetCommitResponseTopic::default().with_name(topic.name.clone()).with_partitions(
                    topic
                        .partitions
                        .iter()
                        .map(|partition| {
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(partition.partition_index)
                                .with_error_code(code(&topic.name.0))
                        })
                        .collect(),
                )
            })
            .collect();
        TxnOffsetCommitResponse::default().with_topics(topics)
    };
    if !context.allowed(client, Operation::Read, ResourceType::Group, &group) {
        return answer(&|_| ResponseError::GroupAuthorizationFailed.code());
    }
    let denied: Vec<String> = request
        .topics
        .iter()
        .map(|topic| topic.name.0.to_string())
        .filter(|topic| !context.allowed(client, Operation::Read, ResourceType::Topic, topic))
        .collect();
    if !denied.is_empty() {
        return answer(&|topic| {
            if denied.iter().any(|name| name == topic) {
                ResponseError::TopicAuthorizationFailed.code()
            } else {
                ResponseError::OperationNotAttempted.code()
            }
        });
    }
    // Zombie fencing by the consumer group (KIP-447): only the group's coordinator knows its
    // members, and the client sends TxnOffsetCommit there.
    if request.generation_id >= 0 || !request.member_id.is_empty() {
        if let Some(error) = super::coordinator::not_coordinator(context, &group) {
            return answer(&|_| error.code());
        }
        if let Some(error) = context.groups.check_transactional_commit(&group, request.generation_id, &request.member_id) {
            return answer(&|_| error.code());
        }
    }
    let limit = context.settings.limits.offset_metadata_max_bytes;
    if request
        .topics
        .iter()
        .flat_map(|topic| &topic.partitions)
        .any(|partition| partition.committed_metadata.as_ref().is_some_and(|metadata| metadata.len() > limit))
    {
        return answer(&|_| ResponseError::OffsetMetadataTooLarge.code());
    }
    let offsets = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|partition| OffsetCommitEntry {
                topic: topic.name.0.to_string(),
                partition: partition.partition_index,
                offset: partition.committed_offset,
                leader_epoch: partition.committed_leader_epoch,
                metadata: partition.committed_metadata.as_ref().map(|metadata| metadata.to_string()),
            })
        })
        .collect();
    let record = JournalRecord::TxnOffsetCommit {
        transactional_id: request.transactional_id.0.to_string(),
        producer_id: request.producer_id.0,
        producer_epoch: request.producer_epoch,
        group,
        offsets,
    };
    match submit(context, record).await {
        Ok(_) => answer(&|_| 0),
        Err(code) => answer(&|_| code.code()),
    }
}

pub async fn end(context: &AgentContext, request: EndTxnRequest, client: &ClientInfo) -> EndTxnResponse {
    let transactional_id = request.transactional_id.0.to_string();
    let response = EndTxnResponse::default().with_producer_id(request.producer_id).with_producer_epoch(request.producer_epoch);
    if !context.allowed(client, Operation::Write, ResourceType::TransactionalId, &transactional_id) {
        return response.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    match end_transaction(context, &transactional_id, request.producer_id.0, request.producer_epoch, request.committed, false).await {
        Ok(_) => response,
        Err(code) => response.with_error_code(code.code()),
    }
}

pub fn describe(context: &AgentContext, request: DescribeTransactionsRequest, client: &ClientInfo) -> DescribeTransactionsResponse {
    use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
    let states = request
        .transactional_ids
        .into_iter()
        .map(|id| {
            let name = id.0.to_string();
            let entry = TransactionState::default().with_transactional_id(id);
            if !context.allowed(client, Operation::Describe, ResourceType::TransactionalId, &name) {
                return entry.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
            }
            context.metadata.read(|state| match state.transactions.get(&name) {
                None => entry.with_error_code(ResponseError::TransactionalIdNotFound.code()),
                Some(transaction) => {
                    let mut topics: Vec<TopicData> = Vec::new();
                    for partition in &transaction.partitions {
                        match topics.last_mut() {
                            Some(last) if last.topic.0.as_str() == partition.topic => last.partitions.push(partition.partition),
                            _ => topics.push(
                                TopicData::default()
                                    .with_topic(topic_name(partition.topic.clone()))
                                    .with_partitions(vec![partition.partition]),
                            ),
                        }
                    }
                    let started = if transaction.status == TransactionStatus::Ongoing { transaction.started_ms } else { -1 };
                    entry
                        .with_transaction_state(str_bytes(transaction.status.kafka_name()))
                        .with_transaction_timeout_ms(transaction.timeout_ms)
                        .with_transaction_start_time_ms(started)
                        .with_producer_id(ProducerId(transaction.producer_id))
                        .with_producer_epoch(transaction.producer_epoch)
                        .with_topics(topics)
                }
            })
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

pub fn list(context: &AgentContext, request: ListTransactionsRequest, client: &ClientInfo) -> ListTransactionsResponse {
    use kafka_protocol::messages::list_transactions_response::TransactionState;
    let known = ["Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort", "PrepareEpochFence", "Dead"];
    let unknown: Vec<_> = request.state_filters.iter().filter(|filter| !known.contains(&filter.as_str())).cloned().collect();
    let now = now_ms();
    let listed: Vec<(String, i64, &'static str)> = context.metadata.read(|state| {
        state
            .transactions
            .iter()
            .filter(|(_, transaction)| {
                request.state_filters.is_empty()
                    || request.state_filters.iter().any(|filter| filter.as_str() == transaction.status.kafka_name())
            })
            .filter(|(_, transaction)| {
                request.producer_id_filters.is_empty() || request.producer_id_filters.contains(&ProducerId(transaction.producer_id))
            })
            .filter(|(_, transaction)| {
                request.duration_filter < 0
                    || transaction.status == TransactionStatus::Ongoing && now - transaction.started_ms >= request.duration_filter
            })
            .map(|(id, transaction)| (id.clone(), transaction.producer_id, transaction.status.kafka_name()))
            .collect()
    });
    // The Admin client asks every broker and merges the answers, as each Kafka broker lists only
    // the transactions it coordinates: list only those this agent coordinates, so each appears once.
    let local = context.cluster.local().node_id;
    let states = listed
        .into_iter()
        .filter(|(id, _, _)| {
            super::coordinator::coordinator_for(context, super::coordinator::Coordinated::Transaction, id).node_id == local
        })
        .filter(|(id, _, _)| context.visible(client, Operation::Describe, ResourceType::TransactionalId, id))
        .map(|(id, producer_id, status)| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(str_bytes(id)))
                .with_producer_id(ProducerId(producer_id))
                .with_transaction_state(str_bytes(status))
        })
        .collect();
    ListTransactionsResponse::default().with_unknown_state_filters(unknown).with_transaction_states(states)
}

/// An ongoing transaction as the timeout watch tracks it: the same transactional id, producer and
/// recorded start is the same transaction.
type Watched = (String, i64, i16, i64);

/// Ongoing transactions this agent coordinates (FindCoordinator's answer, so one agent acts on
/// each; a dead coordinator's transactions pass to the next rendezvous winner with it), with
/// their timeouts.
fn coordinated_ongoing(context: &AgentContext) -> Vec<(Watched, i32)> {
    let local = context.cluster.local().node_id;
    let ongoing: Vec<(Watched, i32)> = context.metadata.read(|state| {
        state
            .transactions
            .iter()
            .filter(|(_, transaction)| transaction.status == TransactionStatus::Ongoing)
            .map(|(id, transaction)| {
                ((id.clone(), transaction.producer_id, transaction.producer_epoch, transaction.started_ms), transaction.timeout_ms)
            })
            .collect()
    });
    ongoing
        .into_iter()
        .filter(|((id, _, _, _), _)| {
            super::coordinator::coordinator_for(context, super::coordinator::Coordinated::Transaction, id).node_id == local
        })
        .collect()
}

/// Aborts (and fences) every transaction this agent coordinates once it has seen it ongoing for
/// longer than its `transaction.timeout.ms`, checking every `interval`.
///
/// The time is measured on this agent's monotonic clock from when it first saw the transaction,
/// never by comparing the start another agent recorded with this agent's wall clock: an agent
/// whose clock is minutes ahead would otherwise abort every transaction at once, and fence every
/// producer, for ever. A new coordinator starts measuring afresh, so a transaction abandoned by
/// a dead client is aborted at most one timeout later than in Kafka. Liveness only: apply decides
/// exactly once between a commit and this abort.
pub async fn run_timeouts(
    context: std::sync::Arc<AgentContext>,
    interval: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut first_seen: std::collections::HashMap<Watched, std::time::Instant> = std::collections::HashMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        let ongoing = coordinated_ongoing(&context);
        let now = std::time::Instant::now();
        first_seen.retain(|watched, _| ongoing.iter().any(|(current, _)| current == watched));
        for (watched, timeout_ms) in ongoing {
            let seen = *first_seen.entry(watched.clone()).or_insert(now);
            if now.duration_since(seen) <= std::time::Duration::from_millis(timeout_ms.max(0) as u64) {
                continue;
            }
            let (transactional_id, producer_id, producer_epoch, _) = watched;
            match end_transaction(&context, &transactional_id, producer_id, producer_epoch, false, true).await {
                Ok(_) => {
                    context.metrics.transactions_timed_out.inc();
                    tracing::info!(transactional_id, producer_id, producer_epoch, "aborted a transaction past its timeout");
                }
                Err(code) => tracing::debug!(transactional_id, ?code, "timeout abort not applied (the transaction ended meanwhile)"),
            }
        }
    }
}
