//! Fetch: read chunk bytes from the local index (no journal round trip), rewrite batch base
//! offsets, long-poll on the replica until min_bytes or max_wait.
//!
//! Sessions (KIP-227) are not kept: every response carries session_id 0, which clients treat as
//! "no session" and keep sending full requests.

use super::{topic_name, AgentContext, ClientInfo};
use crate::cluster::{Traffic, LEADER_EPOCH};
use crate::protocol::batch;
use bytes::{Bytes, BytesMut};
use floe_meta::acl::{Operation, ResourceType};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{AbortedTransaction, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId};
use std::collections::HashMap;
use std::time::Duration;

/// The records of a partition that answers an error: empty, not null, as Kafka sends them.
/// librdkafka cannot parse a null record set (a -1 size): it drops the whole response as
/// "Bad message format" and retries, never seeing the partition's error.
fn no_records() -> Option<Bytes> {
    Some(Bytes::new())
}

struct Requested {
    topic: String,
    partition: i32,
    offset: i64,
    max_bytes: usize,
    /// isolation_level 1: read only below the last stable offset, with the aborted transactions.
    read_committed: bool,
}

/// The requested partitions grouped by topic in request order, each partition once: Kafka keys a
/// fetch by topic-partition, so a partition named again replaces the earlier entry (its offset and
/// limit) in the earlier position. Returns how many duplicates were dropped.
fn collapse_duplicates(request: &FetchRequest) -> (Vec<Vec<Requested>>, usize) {
    let mut topics: Vec<Vec<Requested>> = Vec::new();
    let mut topic_positions: HashMap<&str, usize> = HashMap::new();
    let mut partition_positions: HashMap<(&str, i32), (usize, usize)> = HashMap::new();
    let mut duplicates = 0;
    for topic in &request.topics {
        let name: &str = &topic.topic.0;
        for partition in &topic.partitions {
            let wanted = Requested {
                topic: name.to_string(),
                partition: partition.partition,
                offset: partition.fetch_offset,
                max_bytes: partition.partition_max_bytes.max(0) as usize,
                read_committed: request.isolation_level == 1,
            };
            if let Some(&(topic_index, partition_index)) = partition_positions.get(&(name, partition.partition)) {
                topics[topic_index][partition_index] = wanted;
                duplicates += 1;
                continue;
            }
            let topic_index = *topic_positions.entry(name).or_insert_with(|| {
                topics.push(Vec::new());
                topics.len() - 1
            });
            partition_positions.insert((name, partition.partition), (topic_index, topics[topic_index].len()));
            topics[topic_index].push(wanted);
        }
    }
    (topics, duplicates)
}

pub async fn handle(context: &AgentContext, request: FetchRequest, client: &ClientInfo) -> FetchResponse {
    if request.session_id != 0 {
        return FetchResponse::default().with_error_code(ResponseError::FetchSessionIdNotFound.code());
    }
    let (requested, duplicates) = collapse_duplicates(&request);
    if duplicates > 0 {
        context.metrics.requests_refused.with_label_values(&["fetch_duplicate_partitions"]).inc_by(duplicates as u64);
    }
    // A consumer needs READ on each topic (Kafka's fetch from a consumer); a denied topic's
    // partitions answer TOPIC_AUTHORIZATION_FAILED at once, the others are served as usual.
    let (requested, denied): (Vec<Vec<Requested>>, Vec<Vec<Requested>>) = requested.into_iter().partition(|partitions| {
        partitions.first().is_none_or(|first| context.allowed(client, Operation::Read, ResourceType::Topic, &first.topic))
    });
    let denied = every_partition_failing(&denied, ResponseError::TopicAuthorizationFailed);
    // An agent without the fetch role leads no partition in its Metadata; a consumer that
    // reaches it was bootstrapped at the wrong pool. Kafka's "sent to an incompatible broker"
    // answer (the Java consumer raises it, it does not retry in silence).
    if !context.cluster.serves(Traffic::Fetch) {
        context.metrics.requests_refused.with_label_values(&["fetch_without_fetch_role"]).inc();
        let mut topics = every_partition_failing(&requested, ResponseError::InvalidRequest);
        topics.extend(denied);
        return FetchResponse::default().with_responses(topics);
    }
    if context.cluster.handing_over() {
        let mut topics = every_partition_failing(&requested, ResponseError::NotLeaderOrFollower);
        topics.extend(denied);
        return FetchResponse::default().with_responses(topics);
    }
    let mut response = poll_and_read(context, request, requested, !denied.is_empty()).await;
    response.responses.extend(denied);
    response
}

/// Long-polls until `min_bytes` are available (or a partition would answer an error, or
/// `answer_now`), then reads.
async fn poll_and_read(context: &AgentContext, request: FetchRequest, requested: Vec<Vec<Requested>>, answer_now: bool) -> FetchResponse {
    // The broker's fetch.max.bytes caps whatever the client asks for (KIP-74 still lets the first
    // batch through whole, so a consumer always progresses).
    let limit = context.settings.limits.fetch_max_bytes;
    let asked = request.max_bytes.max(0) as usize;
    if asked > limit {
        context.metrics.requests_refused.with_label_values(&["fetch_max_bytes"]).inc();
    }
    let max_bytes = asked.min(limit);
    let min_bytes = (request.min_bytes.max(0) as usize).min(limit);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    // Everything needed is copied out: the request (slices of the whole frame) is not kept through
    // the long poll.
    drop(request);
    let mut applied = context.metadata.subscribe();
    loop {
        applied.borrow_and_update();
        let (available, any_error) = available_bytes(context, &requested, min_bytes);
        if any_error || answer_now || available >= min_bytes || tokio::time::Instant::now() >= deadline {
            return read(context, &requested, max_bytes).await;
        }
        if tokio::time::timeout_at(deadline, applied.changed()).await.is_err() {
            return read(context, &requested, max_bytes).await;
        }
    }
}

/// Every requested partition answering `error`, at once instead of after a long poll: for a
/// draining agent that others have taken over from NOT_LEADER_OR_FOLLOWER (no leader hint; the
/// client refreshes Metadata, which no longer lists this agent), for a denied topic
/// TOPIC_AUTHORIZATION_FAILED.
fn every_partition_failing(requested: &[Vec<Requested>], error: ResponseError) -> Vec<FetchableTopicResponse> {
    requested
        .iter()
        .filter_map(|partitions| {
            let first = partitions.first()?;
            let partitions = partitions
                .iter()
                .map(|wanted| {
                    PartitionData::default()
                        .with_partition_index(wanted.partition)
                        .with_error_code(error.code())
                        .with_high_watermark(-1)
                        .with_last_stable_offset(-1)
                        .with_log_start_offset(-1)
                        .with_records(no_records())
                })
                .collect();
            Some(FetchableTopicResponse::default().with_topic(topic_name(first.topic.clone())).with_partitions(partitions))
        })
        .collect()
}

/// Bytes available past each requested offset, from the index alone, and whether any partition
/// would answer with an error (which ends the long poll).
fn available_bytes(context: &AgentContext, requested: &[Vec<Requested>], min_bytes: usize) -> (usize, bool) {
    context.metadata.read(|state| {
        let mut available = 0usize;
        for wanted in requested.iter().flatten() {
            let Some(partition) = state.partition(&wanted.topic, wanted.partition) else { return (available, true) };
            if wanted.offset < partition.log_start_offset || wanted.offset > partition.high_watermark {
                return (available, true);
            }
            let visible_end = if wanted.read_committed { partition.last_stable_offset() } else { partition.high_watermark };
            if let Some(index) = partition.chunk_index_from(wanted.offset) {
                // Only whether min_bytes is reached matters: stop counting there, so a consumer far
                // behind does not cost a walk over the whole partition index.
                for chunk in &partition.chunks[index..] {
                    if available >= min_bytes || chunk.base_offset >= visible_end {
                        break;
                    }
                    available += chunk.byte_len as usize;
                }
            }
        }
        (available, false)
    })
}

async fn read(context: &AgentContext, requested: &[Vec<Requested>], max_bytes: usize) -> FetchResponse {
    let mut total = 0usize;
    let mut topics = Vec::with_capacity(requested.len());
    for topic_partitions in requested {
        let Some(first) = topic_partitions.first() else { continue };
        let mut partitions = Vec::with_capacity(topic_partitions.len());
        for wanted in topic_partitions {
            let (data, copied) = read_partition(context, wanted, max_bytes.saturating_sub(total), total == 0).await;
            total += copied;
            partitions.push(data);
        }
        topics.push(FetchableTopicResponse::default().with_topic(topic_name(first.topic.clone())).with_partitions(partitions));
    }
    context.metrics.bytes_out.inc_by(total as u64);
    FetchResponse::default().with_responses(topics)
}

async fn read_partition(context: &AgentContext, wanted: &Requested, remaining: usize, first_in_response: bool) -> (PartitionData, usize) {
    let base = PartitionData::default().with_partition_index(wanted.partition);
    let snapshot = context.metadata.read(|state| {
        state.partition(&wanted.topic, wanted.partition).map(|partition| {
            // Copy only as many index entries as this fetch can use.
            let last_stable = partition.last_stable_offset();
            let visible_end = if wanted.read_committed { last_stable } else { partition.high_watermark };
            let mut chunks = Vec::new();
            if let Some(index) = partition.chunk_index_from(wanted.offset) {
                let mut planned = 0usize;
                for chunk in &partition.chunks[index..] {
                    if planned >= wanted.max_bytes.min(remaining).max(1) || chunk.base_offset >= visible_end {
                        break;
                    }
                    planned += chunk.byte_len as usize;
                    chunks.push(chunk.clone());
                }
            }
            // Every aborted transaction with records from the fetch offset up to what this
            // fetch can return; the consumer drops their records (and skips the markers).
            let aborted: Vec<AbortedTransaction> = if wanted.read_committed {
                let until = chunks.last().map_or(wanted.offset, |chunk| chunk.end_offset());
                partition
                    .aborted_between(wanted.offset, until)
                    .map(|aborted| {
                        AbortedTransaction::default()
                            .with_producer_id(ProducerId(aborted.producer_id))
                            .with_first_offset(aborted.first_offset)
                    })
                    .collect()
            } else {
                Vec::new()
            };
            (partition.log_start_offset, partition.high_watermark, last_stable, visible_end, chunks, aborted)
        })
    });
    let Some((log_start, high_watermark, last_stable, visible_end, chunks, aborted)) = snapshot else {
        let data = base.with_error_code(ResponseError::UnknownTopicOrPartition.code()).with_high_watermark(-1).with_records(no_records());
        return (data, 0);
    };
    let base = base.with_high_watermark(high_watermark).with_last_stable_offset(last_stable).with_log_start_offset(log_start);
    // Null for read_uncommitted, as Kafka answers.
    let base = base.with_aborted_transactions(wanted.read_committed.then_some(aborted));
    let base = base.with_current_leader(
        kafka_protocol::messages::fetch_response::LeaderIdAndEpoch::default()
            .with_leader_id(kafka_protocol::messages::BrokerId(context.cluster.local().node_id))
            .with_leader_epoch(LEADER_EPOCH),
    );
    if wanted.offset < log_start || wanted.offset > high_watermark {
        return (base.with_error_code(ResponseError::OffsetOutOfRange.code()).with_records(no_records()), 0);
    }
    // Only the first partition of a response may exceed the remaining budget (KIP-74), and only
    // by its first batch.
    let limit = wanted.max_bytes.min(remaining);
    if limit == 0 && !first_in_response {
        return (base.with_records(Some(Bytes::new())), 0);
    }
    // A partition's first batch may exceed partition_max_bytes when the response budget allows,
    // so one oversized batch never stalls a consumer.
    let force_first = first_in_response || remaining >= wanted.max_bytes;
    let mut out = BytesMut::new();
    let mut copied = 0usize;
    for chunk in &chunks {
        if copied >= limit && copied > 0 {
            break;
        }
        let bytes = match context.reader.read_chunk(chunk).await {
            Ok(bytes) => bytes,
            Err(error) => {
                // The error names the object. Consumers see KAFKA_STORAGE_ERROR (retriable) rather
                // than an empty answer that would stall them without a word.
                context.metrics.unreadable_chunks.inc();
                tracing::warn!(
                    %error,
                    object = %chunk.object,
                    topic = %wanted.topic,
                    partition = wanted.partition,
                    base_offset = chunk.base_offset,
                    end_offset = chunk.end_offset(),
                    "failed to read a chunk"
                );
                if copied > 0 {
                    break;
                }
                return (base.with_error_code(ResponseError::KafkaStorageError.code()).with_records(no_records()), 0);
            }
        };
        let (added, limited) = batch::copy_rebased(
            &mut out,
            &bytes,
            chunk.stored_offset_origin(),
            wanted.offset,
            visible_end,
            limit.saturating_sub(copied),
            copied == 0 && force_first,
        );
        copied += added;
        // A batch that did not fit ends this partition's data: continuing with a later chunk
        // would hand the consumer a gap it can never go back to fill.
        if limited {
            break;
        }
    }
    (base.with_records(Some(out.freeze())), copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;

    fn topic(name: &str, partitions: &[(i32, i64)]) -> FetchTopic {
        FetchTopic::default().with_topic(TopicName(StrBytes::from_string(name.to_string()))).with_partitions(
            partitions
                .iter()
                .map(|(partition, offset)| {
                    FetchPartition::default().with_partition(*partition).with_fetch_offset(*offset).with_partition_max_bytes(1 << 20)
                })
                .collect(),
        )
    }

    #[test]
    fn a_partition_named_eight_times_is_fetched_once() {
        let request = FetchRequest::default().with_topics(vec![topic("t", &[(0, 0); 8])]);
        let (requested, duplicates) = collapse_duplicates(&request);
        assert_eq!(duplicates, 7);
        assert_eq!(requested.len(), 1);
        assert_eq!(requested[0].len(), 1);
    }

    #[test]
    fn a_repeated_partition_keeps_its_first_position_and_its_last_offset_across_topic_entries() {
        let request =
            FetchRequest::default().with_topics(vec![topic("a", &[(0, 5), (1, 0)]), topic("b", &[(0, 0)]), topic("a", &[(0, 9), (2, 0)])]);
        let (requested, duplicates) = collapse_duplicates(&request);
        assert_eq!(duplicates, 1);
        let flat: Vec<(String, i32, i64)> =
            requested.iter().flatten().map(|wanted| (wanted.topic.clone(), wanted.partition, wanted.offset)).collect();
        assert_eq!(flat, vec![("a".to_string(), 0, 9), ("a".to_string(), 1, 0), ("a".to_string(), 2, 0), ("b".to_string(), 0, 0)]);
    }
}
