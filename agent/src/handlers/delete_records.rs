//! DeleteRecords: move partitions' log start offsets forward (what `kafka-delete-records` and
//! `Admin.deleteRecords` do). It is the same journal record retention writes, so every agent
//! stops serving the deleted offsets at once and the garbage collector reclaims whole chunks.

use super::{AgentContext, ClientInfo};
use crate::metadata::{JournalRecord, PartitionTrim};
use floe_meta::acl::{Operation, ResourceType};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse, TopicName};

/// Per topic, per partition: the planned trim or why it was refused.
type Planned = Vec<(TopicName, Vec<(i32, Result<PartitionTrim, ResponseError>)>)>;

/// `offset` -1 in a request means "up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

/// Per requested partition: the trim to apply, or the error that refuses it.
fn plan(context: &AgentContext, topic: &str, partition: i32, offset: i64) -> Result<PartitionTrim, ResponseError> {
    context.metadata.read(|state| {
        let found = state.topics.get(topic).ok_or(ResponseError::UnknownTopicOrPartition)?;
        let current = found.partitions.get(usize::try_from(partition).map_err(|_| ResponseError::UnknownTopicOrPartition)?);
        let current = current.ok_or(ResponseError::UnknownTopicOrPartition)?;
        let target = if offset == HIGH_WATERMARK { current.high_watermark } else { offset };
        if target < 0 || target > current.high_watermark {
            return Err(ResponseError::OffsetOutOfRange);
        }
        Ok(PartitionTrim { topic: topic.to_string(), topic_id: found.id, partition, log_start_offset: target })
    })
}

pub async fn handle(context: &AgentContext, request: DeleteRecordsRequest, client: &ClientInfo) -> DeleteRecordsResponse {
    let mut planned: Planned = Vec::new();
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let allowed = context.allowed(client, Operation::Delete, ResourceType::Topic, &name);
        let partitions = topic
            .partitions
            .iter()
            .map(|partition| {
                let trim = if allowed {
                    plan(context, &name, partition.partition_index, partition.offset)
                } else {
                    Err(ResponseError::TopicAuthorizationFailed)
                };
                (partition.partition_index, trim)
            })
            .collect();
        planned.push((topic.name, partitions));
    }
    let trims: Vec<PartitionTrim> =
        planned.iter().flat_map(|(_, partitions)| partitions.iter()).filter_map(|(_, trim)| trim.as_ref().ok().cloned()).collect();
    // One record for the whole request: all its partitions move together or not at all.
    let committed = if trims.is_empty() {
        Ok(())
    } else {
        context.metadata.submit(JournalRecord::TrimPartitions { trims }).await.map(|_| ()).map_err(|error| {
            tracing::warn!(%error, "failed to commit DeleteRecords");
            ResponseError::RequestTimedOut
        })
    };
    let topics = planned
        .into_iter()
        .map(|(name, partitions)| {
            let results = partitions
                .into_iter()
                .map(|(index, trim)| {
                    let result = DeleteRecordsPartitionResult::default().with_partition_index(index);
                    match trim.and_then(|trim| committed.map(|()| trim)) {
                        Ok(trim) => {
                            // Retention may have moved the start further meanwhile; report the truth.
                            let low = context
                                .metadata
                                .read(|state| state.partition(&trim.topic, index).map(|partition| partition.log_start_offset))
                                .unwrap_or(trim.log_start_offset);
                            result.with_low_watermark(low)
                        }
                        Err(error) => result.with_low_watermark(-1).with_error_code(error.code()),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default().with_name(name).with_partitions(results)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
