//! Fetch: long-poll on the replica until min_bytes or max_wait, plan the response from the local
//! index (no journal round trip), read every chunk it needs at once (`SegmentReader::read_chunks`:
//! one GET per object's neighbouring chunks, objects in parallel), rewrite batch base offsets, and
//! read the partitions' next chunks ahead into the cache for a consumer that is catching up.
//!
//! Sessions (KIP-227, `fetch_sessions.rs`): a full fetch with epoch 0 opens a session when the
//! cache has room, and later incremental fetches name only the partitions whose fetch offset or
//! limit changed (and those to forget). The fetch then runs over every partition of the session,
//! as if the client had listed them all: the same authorization, fetch-role and hand-over checks,
//! long poll and read. Only the answer differs: an incremental response leaves out the partitions
//! with no records, no error and the same offsets as last sent. Epoch -1 (librdkafka, old
//! clients, Fetch v4-6) is served without a session and answers session_id 0, as before.

use super::fetch_sessions::{Opened, SessionRequest, WantedPartition};
use super::{topic_name, AgentContext, ClientInfo};
use crate::cluster::{placement, Traffic, LEADER_EPOCH};
use crate::metadata::ChunkLocation;
use crate::protocol::batch;
use crate::storage::reader::ChunkBytes;
use bytes::{Bytes, BytesMut};
use floe_meta::acl::{Operation, ResourceType};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{AbortedTransaction, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

/// The most one fetch reads ahead of what it returned (`SegmentReader::read_ahead`).
const READ_AHEAD_BYTES: usize = 16 << 20;

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

/// The session's partitions as a fetch of them, grouped by topic in the session's order (each
/// partition is in a session once).
fn from_session(partitions: Vec<WantedPartition>, read_committed: bool) -> Vec<Vec<Requested>> {
    let mut topics: Vec<Vec<Requested>> = Vec::new();
    let mut topic_positions: HashMap<String, usize> = HashMap::new();
    for wanted in partitions {
        let index = *topic_positions.entry(wanted.topic.clone()).or_insert_with(|| {
            topics.push(Vec::new());
            topics.len() - 1
        });
        topics[index].push(Requested {
            topic: wanted.topic,
            partition: wanted.partition,
            offset: wanted.fetch_offset,
            max_bytes: wanted.partition_max_bytes.max(0) as usize,
            read_committed,
        });
    }
    topics
}

pub async fn handle(context: &AgentContext, request: FetchRequest, client: &ClientInfo) -> FetchResponse {
    let (requested, duplicates) = collapse_duplicates(&request);
    if duplicates > 0 {
        context.metrics.requests_refused.with_label_values(&["fetch_duplicate_partitions"]).inc_by(duplicates as u64);
    }
    let session_request = SessionRequest {
        session_id: request.session_id,
        epoch: request.session_epoch,
        principal: &client.principal,
        // A sessionless fetch (epoch -1: librdkafka, Fetch v4-6) opens nothing: no copy needed.
        partitions: requested
            .iter()
            .flatten()
            .filter(|_| request.session_epoch != super::fetch_sessions::FINAL_EPOCH)
            .map(|wanted| WantedPartition {
                topic: wanted.topic.clone(),
                partition: wanted.partition,
                fetch_offset: wanted.offset,
                partition_max_bytes: wanted.max_bytes.min(i32::MAX as usize) as i32,
            })
            .collect(),
        forgotten: request
            .forgotten_topics_data
            .iter()
            .flat_map(|topic| topic.partitions.iter().map(|&partition| (topic.topic.0.to_string(), partition)))
            .collect(),
    };
    let (opened, effects) = context.fetch_sessions.open(session_request, Instant::now());
    context.metrics.fetch_session_evictions.inc_by(effects.evicted as u64);
    if effects.over_partition_bound {
        context.metrics.requests_refused.with_label_values(&["fetch_session_cache_partitions"]).inc();
    }
    context.metrics.fetch_sessions.set(context.fetch_sessions.len() as i64);
    let kind = match &opened {
        Opened::Sessionless => "sessionless",
        Opened::Full { .. } => "full",
        Opened::Incremental { .. } => "incremental",
        Opened::Refused(_) => "refused",
    };
    context.metrics.fetch_requests.with_label_values(&[kind]).inc();
    let (requested, session) = match opened {
        // No partitions and session_id 0, as Kafka answers; the client starts over with a full fetch.
        Opened::Refused(error) => return FetchResponse::default().with_error_code(error.code()),
        Opened::Sessionless => (requested, None),
        Opened::Full { session_id } => (requested, Some((session_id, true))),
        Opened::Incremental { session_id, partitions } => {
            (from_session(partitions, request.isolation_level == 1), Some((session_id, false)))
        }
    };
    let mut response = serve(context, request, requested, client).await;
    if let Some((session_id, full)) = session {
        context.fetch_sessions.respond(session_id, full, &mut response);
        response.session_id = session_id;
    }
    response
}

/// Answers `requested` (the request's partitions, or its session's): authorization, the agent's
/// role, then the long poll and the read.
async fn serve(context: &AgentContext, request: FetchRequest, requested: Vec<Vec<Requested>>, client: &ClientInfo) -> FetchResponse {
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
    let leaders = placement::leaders_for_client(&context.cluster.advertised(), placement::client_zone(&client.client_id));
    let limit = response_limit(context.settings.limits.fetch_max_bytes, leaders);
    let mut response = poll_and_read(context, request, requested, !denied.is_empty(), limit).await;
    response.responses.extend(denied);
    response
}

/// The smallest share of `--fetch-max-bytes` one agent's response is cut to: below it, a consumer
/// of a large pool would pay a round trip per few partitions.
const MIN_RESPONSE_SHARE: usize = 8 << 20;

/// Most record bytes one Fetch response of this agent carries: `--fetch-max-bytes` shared among
/// the `leaders` agents a consumer's partitions are spread over (it fetches from all of them at
/// once), but at least `MIN_RESPONSE_SHARE` (or the whole limit when that is smaller). A Java
/// consumer on three agents otherwise held three 50 MiB responses where one Kafka broker sends
/// one, and spent its core in GC (agent/DESIGN.md "Fetch responses shared among the agents").
fn response_limit(fetch_max_bytes: usize, leaders: usize) -> usize {
    (fetch_max_bytes / leaders.max(1)).max(MIN_RESPONSE_SHARE.min(fetch_max_bytes))
}

/// Long-polls until `min_bytes` are available (or a partition would answer an error, or
/// `answer_now`), then reads at most `limit` record bytes (`response_limit`).
async fn poll_and_read(
    context: &AgentContext,
    request: FetchRequest,
    requested: Vec<Vec<Requested>>,
    answer_now: bool,
    limit: usize,
) -> FetchResponse {
    // The broker's fetch.max.bytes caps whatever the client asks for (KIP-74 still lets the first
    // batch through whole, so a consumer always progresses). Only a request over the configured
    // limit counts as refused: the share among agents is this agent's business, not the client's.
    let asked = request.max_bytes.max(0) as usize;
    if asked > context.settings.limits.fetch_max_bytes {
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

/// Reads every requested partition: the response is planned from the index
/// ([`plan_response`]), every chunk it needs is read from the bucket together
/// (`SegmentReader::read_chunks`), the chunks after them are read ahead into the cache, and each
/// partition is assembled in request order within the response's byte budget.
async fn read(context: &AgentContext, requested: &[Vec<Requested>], max_bytes: usize) -> FetchResponse {
    let (plans, ahead) = plan_response(context, requested, max_bytes);
    tracing::debug!(
        partitions = requested.iter().map(Vec::len).sum::<usize>(),
        chunks = plans.iter().flatten().map(|plan| plan.chunks().len()).sum::<usize>(),
        planned_bytes = plans.iter().flatten().flat_map(|plan| plan.chunks()).map(|chunk| chunk.byte_len).sum::<u64>(),
        max_bytes,
        ahead = ahead.len(),
        "fetch planned"
    );
    let fetched = context.reader.read_chunks(plans.iter().flatten().flat_map(|plan| plan.chunks())).await;
    context.reader.read_ahead(ahead);
    let mut total = 0usize;
    let mut topics = Vec::with_capacity(requested.len());
    for (topic_partitions, topic_plans) in requested.iter().zip(plans) {
        let Some(first) = topic_partitions.first() else { continue };
        let mut partitions = Vec::with_capacity(topic_partitions.len());
        for (wanted, plan) in topic_partitions.iter().zip(topic_plans) {
            let (data, copied) = assemble_partition(context, wanted, plan, &fetched, max_bytes.saturating_sub(total), total == 0).await;
            total += copied;
            partitions.push(data);
        }
        topics.push(FetchableTopicResponse::default().with_topic(topic_name(first.topic.clone())).with_partitions(partitions));
    }
    context.metrics.bytes_out.inc_by(total as u64);
    tracing::debug!(total, "fetch assembled");
    FetchResponse::default().with_responses(topics)
}

/// One partition of a response, decided from the index: an answer without records, or the chunks
/// to read and where the visible records end.
enum Plan {
    Answer(PartitionData),
    Read { base: PartitionData, chunks: Vec<ChunkLocation>, visible_end: i64 },
}

impl Plan {
    fn chunks(&self) -> &[ChunkLocation] {
        match self {
            Plan::Answer(_) => &[],
            Plan::Read { chunks, .. } => chunks,
        }
    }
}

/// Where one requested partition's chunks are, while a response is planned.
struct Cursor<'s> {
    /// The partition's chunks from the one holding the fetch offset on.
    chunks: &'s [ChunkLocation],
    next: usize,
    visible_end: i64,
    /// `partition_max_bytes` (at least one byte, so a partition always gets its first chunk).
    limit: usize,
    planned: usize,
    ahead: usize,
    taken: Vec<ChunkLocation>,
}

impl<'s> Cursor<'s> {
    /// The partition's next visible chunk (a reference into the index, not into the cursor).
    fn upcoming(&self) -> Option<&'s ChunkLocation> {
        let (chunks, visible_end) = (self.chunks, self.visible_end);
        chunks.get(self.next).filter(|chunk| chunk.base_offset < visible_end)
    }

    /// Where the walk places the next chunk: the name of the earliest object among it and the
    /// [`WRITTEN_AS_LOOKAHEAD`] chunks after it (object names begin with the journal revision).
    /// Usually the chunk's own object. But compaction writes old records into an object named
    /// with its own, young revision: ordered by that name, a partition whose next chunk lies in
    /// such an object waited until every other partition had caught up to that revision, and by
    /// then the objects holding its following chunks had left the cache and were read from the
    /// bucket a second time (half the S3-latency catch-up runs read 2.0-2.3 GETs per object
    /// written instead of 1.3-1.4). Its records are older than the chunk after it, so that
    /// chunk's object says when they were written.
    fn written_as(&self) -> Option<&'s str> {
        self.upcoming()?;
        written_as(&self.chunks[self.next..])
    }
}

/// How many chunks after a partition's next one [`Cursor::written_as`] looks at.
const WRITTEN_AS_LOOKAHEAD: usize = 4;

/// The earliest object name among the first chunk of `chunks` and the few after it.
fn written_as(chunks: &[ChunkLocation]) -> Option<&str> {
    chunks.iter().take(1 + WRITTEN_AS_LOOKAHEAD).map(|chunk| &*chunk.object).min()
}

/// Plans a response under one read of the index: which chunks each partition returns, and the
/// chunks to read ahead after them.
///
/// Chunks are taken across the partitions in the order their objects were written (object names
/// begin with the journal revision), not partition after partition: a consumer of many partitions
/// that is catching up finds them side by side in the same objects, so the response is filled
/// from a few objects read whole rather than from slivers of hundreds (partition after
/// partition, the first partition's 1 MiB alone would come from every object written while its
/// 1 MiB was produced, a few KiB from each).
/// Each partition stops at its `partition_max_bytes`, the response at `max_bytes` (both counted
/// at the chunks' stored size, so a response may carry less than its budget when a fetch offset
/// falls inside a chunk); then the same walk goes on for [`READ_AHEAD_BYTES`] of read-ahead.
fn plan_response(context: &AgentContext, requested: &[Vec<Requested>], max_bytes: usize) -> (Vec<Vec<Plan>>, Vec<ChunkLocation>) {
    let local = context.cluster.local().node_id;
    context.metadata.read(|state| {
        let mut cursors: Vec<Option<Cursor>> = Vec::new();
        let mut bases: Vec<Result<PartitionData, PartitionData>> = Vec::new();
        for wanted in requested.iter().flatten() {
            let base = PartitionData::default().with_partition_index(wanted.partition);
            let Some(partition) = state.partition(&wanted.topic, wanted.partition) else {
                let data =
                    base.with_error_code(ResponseError::UnknownTopicOrPartition.code()).with_high_watermark(-1).with_records(no_records());
                bases.push(Err(data));
                cursors.push(None);
                continue;
            };
            let last_stable = partition.last_stable_offset();
            let base = base
                .with_high_watermark(partition.high_watermark)
                .with_last_stable_offset(last_stable)
                .with_log_start_offset(partition.log_start_offset)
                .with_current_leader(
                    kafka_protocol::messages::fetch_response::LeaderIdAndEpoch::default()
                        .with_leader_id(kafka_protocol::messages::BrokerId(local))
                        .with_leader_epoch(LEADER_EPOCH),
                );
            if wanted.offset < partition.log_start_offset || wanted.offset > partition.high_watermark {
                let base = base.with_aborted_transactions(wanted.read_committed.then(Vec::new));
                bases.push(Err(base.with_error_code(ResponseError::OffsetOutOfRange.code()).with_records(no_records())));
                cursors.push(None);
                continue;
            }
            let visible_end = if wanted.read_committed { last_stable } else { partition.high_watermark };
            let chunks = partition.chunk_index_from(wanted.offset).map_or(&[][..], |index| &partition.chunks[index..]);
            let limit = wanted.max_bytes.max(1);
            cursors.push(Some(Cursor { chunks, next: 0, visible_end, limit, planned: 0, ahead: 0, taken: Vec::new() }));
            bases.push(Ok(base));
        }

        // The walk: the partition whose next chunk holds the earliest-written records goes next.
        let mut queue: BinaryHeap<Reverse<(&str, usize)>> =
            cursors.iter().enumerate().filter_map(|(index, cursor)| Some(Reverse((cursor.as_ref()?.written_as()?, index)))).collect();
        let (mut planned, mut ahead_bytes, mut ahead) = (0usize, 0usize, Vec::new());
        while let Some(Reverse((_, index))) = queue.pop() {
            if planned >= max_bytes.max(1) && ahead_bytes >= READ_AHEAD_BYTES {
                break;
            }
            let Some(cursor) = cursors[index].as_mut() else { continue };
            let Some(chunk) = cursor.upcoming() else { continue };
            let size = chunk.byte_len as usize;
            if planned < max_bytes.max(1) && cursor.planned < cursor.limit {
                cursor.taken.push(chunk.clone());
                cursor.planned += size;
                planned += size;
            } else if ahead_bytes < READ_AHEAD_BYTES && cursor.ahead < cursor.limit {
                ahead.push(chunk.clone());
                cursor.ahead += size;
                ahead_bytes += size;
            } else {
                continue;
            }
            cursor.next += 1;
            if let Some(key) = cursor.written_as() {
                queue.push(Reverse((key, index)));
            }
        }

        let mut flat = requested.iter().flatten().zip(bases).zip(cursors).map(|((wanted, base), cursor)| match (base, cursor) {
            (Ok(base), Some(cursor)) => {
                // Every aborted transaction with records from the fetch offset up to what this
                // fetch can return; the consumer drops their records (and skips the markers).
                // Null for read_uncommitted, as Kafka answers.
                let aborted = wanted.read_committed.then(|| {
                    let until = cursor.taken.last().map_or(wanted.offset, |chunk| chunk.end_offset());
                    state.partition(&wanted.topic, wanted.partition).map_or_else(Vec::new, |partition| {
                        partition
                            .aborted_between(wanted.offset, until)
                            .map(|aborted| {
                                AbortedTransaction::default()
                                    .with_producer_id(ProducerId(aborted.producer_id))
                                    .with_first_offset(aborted.first_offset)
                            })
                            .collect()
                    })
                });
                Plan::Read { base: base.with_aborted_transactions(aborted), chunks: cursor.taken, visible_end: cursor.visible_end }
            }
            (Ok(answer) | Err(answer), _) => Plan::Answer(answer),
        });
        let plans = requested.iter().map(|partitions| flat.by_ref().take(partitions.len()).collect()).collect();
        (plans, ahead)
    })
}

/// The partition's records from its planned chunks, within `remaining` bytes of the response.
async fn assemble_partition(
    context: &AgentContext,
    wanted: &Requested,
    plan: Plan,
    fetched: &ChunkBytes,
    remaining: usize,
    first_in_response: bool,
) -> (PartitionData, usize) {
    let (base, chunks, visible_end) = match plan {
        Plan::Answer(data) => return (data, 0),
        Plan::Read { base, chunks, visible_end } => (base, chunks, visible_end),
    };
    // Only the first partition of a response may exceed the remaining budget (KIP-74), and only
    // by its first batch.
    let limit = wanted.max_bytes.min(remaining);
    if limit == 0 && !first_in_response {
        return (base.with_records(Some(Bytes::new())), 0);
    }
    // A partition's first batch may exceed partition_max_bytes when the response budget allows,
    // so one oversized batch never stalls a consumer.
    let force_first = first_in_response || remaining >= wanted.max_bytes;
    // Sized for the planned chunks (at most what they hold), so the records are copied once.
    let mut out = BytesMut::with_capacity(chunks.iter().map(|chunk| chunk.byte_len as usize).sum::<usize>().min(limit.max(1 << 20)));
    let mut copied = 0usize;
    for chunk in &chunks {
        if copied >= limit && copied > 0 {
            break;
        }
        // A chunk the joint read could not give is read alone, which names the failure.
        let read = match fetched.get(chunk) {
            Some(bytes) => Ok(bytes),
            None => context.reader.read_chunk(chunk).await,
        };
        let bytes = match read {
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

    #[test]
    fn a_response_is_the_limit_shared_among_the_agents_a_consumer_reads_from_but_not_below_the_floor() {
        const MIB: usize = 1 << 20;
        // One agent (the playground, a zone of one): the whole limit, Kafka's 55 MiB.
        assert_eq!(response_limit(55 * MIB, 1), 55 * MIB);
        // Three agents: about what one Kafka broker sends, in three pieces.
        assert_eq!(response_limit(54 * MIB, 3), 18 * MIB);
        // A large pool: never below the floor, so a fetch still carries many partitions.
        assert_eq!(response_limit(55 * MIB, 20), MIN_RESPONSE_SHARE);
        // An operator's limit below the floor stays the limit, whatever the pool.
        assert_eq!(response_limit(64 << 10, 1), 64 << 10);
        assert_eq!(response_limit(64 << 10, 5), 64 << 10);
        // No live view yet (zero agents): as one.
        assert_eq!(response_limit(55 * MIB, 0), 55 * MIB);
    }

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

    fn located(object: &str) -> ChunkLocation {
        ChunkLocation {
            base_offset: 0,
            record_count: 1,
            object: object.into(),
            byte_start: 0,
            byte_len: 1,
            max_timestamp: 0,
            relative_base: 0,
        }
    }

    #[test]
    fn a_chunk_compaction_rewrote_is_walked_as_old_as_the_chunks_after_it() {
        let plain = [located("0005-a.seg"), located("0006-b.seg"), located("0009-c.seg")];
        assert_eq!(written_as(&plain), Some("0005-a.seg"));
        // Records of revisions 2-4, merged into an object of revision 0800, then revision 0005.
        let compacted = [located("0800-merged.seg"), located("0005-a.seg"), located("0006-b.seg")];
        assert_eq!(written_as(&compacted), Some("0005-a.seg"));
        assert_eq!(written_as(&compacted[..1]), Some("0800-merged.seg"), "nothing after it: its own name");
        assert_eq!(written_as(&[]), None);
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
