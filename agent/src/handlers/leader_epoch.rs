//! OffsetForLeaderEpoch: consumers (Java, librdkafka 2.1+) validate their position with it after
//! a leader change. Floe has one leader epoch, 0, for the life of a partition (leaders move by
//! placement, not elections; see DESIGN.md), so the answer for epoch 0 is the high watermark:
//! nothing was ever truncated. KAFKA-PITFALLS §10: never answer -1 or an offset below the
//! consumer's position, or the client reports truncation and resets.

use super::{AgentContext, ClientInfo};
use crate::cluster::LEADER_EPOCH;
use floe_meta::acl::{Operation, ResourceType};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

/// -1 in `current_leader_epoch` means the client does not know the epoch (skip the fence check).
const NO_EPOCH: i32 = -1;

pub fn handle(context: &AgentContext, request: OffsetForLeaderEpochRequest, client: &ClientInfo) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.topic.0.to_string();
            if !context.allowed(client, Operation::Describe, ResourceType::Topic, &name) {
                let refused = topic.partitions.iter().map(|wanted| {
                    EpochEndOffset::default()
                        .with_partition(wanted.partition)
                        .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                        .with_leader_epoch(-1)
                        .with_end_offset(-1)
                });
                return OffsetForLeaderTopicResult::default().with_topic(topic.topic.clone()).with_partitions(refused.collect());
            }
            let partitions = topic
                .partitions
                .iter()
                .map(|wanted| {
                    let result = EpochEndOffset::default().with_partition(wanted.partition);
                    let high_watermark =
                        context.metadata.read(|state| state.partition(&name, wanted.partition).map(|partition| partition.high_watermark));
                    let Some(high_watermark) = high_watermark else {
                        return result
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_leader_epoch(-1)
                            .with_end_offset(-1);
                    };
                    // A client that saw a newer epoch than ours talks to a stale broker in Kafka's
                    // eyes; ours never changes, so that can only be a confused client.
                    if wanted.current_leader_epoch != NO_EPOCH && wanted.current_leader_epoch > LEADER_EPOCH {
                        return result.with_error_code(ResponseError::UnknownLeaderEpoch.code()).with_leader_epoch(-1).with_end_offset(-1);
                    }
                    result.with_leader_epoch(LEADER_EPOCH).with_end_offset(high_watermark)
                })
                .collect();
            OffsetForLeaderTopicResult::default().with_topic(topic.topic).with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
