//! ListOffsets: latest (-1), earliest (-2, -4), max timestamp (-3) and first offset at or after a
//! timestamp. Timestamp lookups decode records of at most one chunk, one batch at a time under a
//! memory budget; they are not on the hot path.

use super::{topic_name, AgentContext, ClientInfo};
use crate::cluster::LEADER_EPOCH;
use crate::metadata::ChunkLocation;
use crate::protocol::batch;
use crate::protocol::records::{self, MAX_DECODED_BATCH_BYTES};
use floe_meta::acl::{Operation, ResourceType};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub async fn handle(context: &AgentContext, request: ListOffsetsRequest, version: i16, client: &ClientInfo) -> ListOffsetsResponse {
    // leader_epoch exists from v4; the codec refuses a non-default value below that.
    let leader_epoch = if version >= 4 { LEADER_EPOCH } else { -1 };
    // read_committed consumers' "latest" is the last stable offset (v2+).
    let read_committed = request.isolation_level == 1;
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let described = context.allowed(client, Operation::Describe, ResourceType::Topic, &name);
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for partition in topic.partitions {
            let response = ListOffsetsPartitionResponse::default().with_partition_index(partition.partition_index);
            if !described {
                partitions.push(response.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
                continue;
            }
            let snapshot = context.metadata.read(|state| {
                state.partition(&name, partition.partition_index).map(|found| {
                    let latest = if read_committed { found.last_stable_offset() } else { found.high_watermark };
                    (found.log_start_offset, latest, found.chunks.clone())
                })
            });
            let Some((log_start, high_watermark, chunks)) = snapshot else {
                partitions.push(response.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                continue;
            };
            let found = match partition.timestamp {
                LATEST | LATEST_TIERED => Ok(Some((-1, high_watermark))),
                EARLIEST | EARLIEST_LOCAL => Ok(Some((-1, log_start))),
                MAX_TIMESTAMP => max_timestamp(context, &chunks).await,
                timestamp if timestamp >= 0 => first_at_or_after(context, &chunks, timestamp).await,
                other => {
                    tracing::debug!(timestamp = other, "unknown ListOffsets timestamp sentinel");
                    Err(ResponseError::InvalidRequest)
                }
            };
            partitions.push(match found {
                Ok(Some((timestamp, offset))) => response.with_timestamp(timestamp).with_offset(offset).with_leader_epoch(leader_epoch),
                Ok(None) => response,
                Err(error) => response.with_error_code(error.code()),
            });
        }
        topics.push(ListOffsetsTopicResponse::default().with_name(topic_name(name)).with_partitions(partitions));
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// (timestamp, offset) of the first record in `chunk` whose timestamp satisfies `matches`.
///
/// `matches` must be monotone in the sense that a batch whose maxTimestamp fails it cannot hold a
/// matching record ("at or after t", "equal to the maximum"); such batches are skipped without
/// decoding. The others are decoded one at a time under `MAX_DECODED_BATCH_BYTES`, because a
/// stored batch is whatever a client produced and may decompress to gigabytes.
async fn scan_chunk(
    context: &AgentContext,
    chunk: &ChunkLocation,
    matches: impl Fn(i64) -> bool,
) -> Result<Option<(i64, i64)>, ResponseError> {
    let bytes = context.reader.read_chunk(chunk).await.map_err(|error| {
        tracing::warn!(%error, "failed to read a chunk for a timestamp lookup");
        ResponseError::KafkaStorageError
    })?;
    for stored in batch::walk(&bytes).filter(|stored| matches(stored.max_timestamp)) {
        let records = records::decode_batch(&bytes.slice(stored.position..stored.position + stored.size), MAX_DECODED_BATCH_BYTES)
            .map_err(|error| {
                tracing::warn!(%error, object = %chunk.object, position = stored.position, "failed to decode a stored batch");
                ResponseError::KafkaStorageError
            })?;
        if let Some(record) = records.into_iter().find(|record| matches(record.timestamp)) {
            return Ok(Some((record.timestamp, chunk.stored_offset_origin() + record.offset)));
        }
    }
    Ok(None)
}

async fn first_at_or_after(context: &AgentContext, chunks: &[ChunkLocation], timestamp: i64) -> Result<Option<(i64, i64)>, ResponseError> {
    for chunk in chunks.iter().filter(|chunk| chunk.max_timestamp >= timestamp) {
        if let Some(found) = scan_chunk(context, chunk, |record_timestamp| record_timestamp >= timestamp).await? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

async fn max_timestamp(context: &AgentContext, chunks: &[ChunkLocation]) -> Result<Option<(i64, i64)>, ResponseError> {
    let Some(newest) = chunks.iter().map(|chunk| chunk.max_timestamp).max() else { return Ok(None) };
    let chunk = chunks.iter().find(|chunk| chunk.max_timestamp == newest).expect("a chunk holds the maximum");
    scan_chunk(context, chunk, |record_timestamp| record_timestamp == newest).await
}
