//! OffsetCommit (through the journal, after the group state allows it) and OffsetFetch (from the
//! local replica).

use super::{str_bytes, topic_name, AgentContext, ClientInfo};
use crate::groups::coordinator::CommitCheck;
use crate::metadata::{JournalRecord, OffsetCommitEntry};
use floe_meta::acl::{Operation, ResourceType};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;

/// Per topic, per partition: `None` when accepted (pending the journal), else why it was refused.
type Verdicts = Vec<(String, Vec<(i32, Option<ResponseError>)>)>;
/// Per topic: (partition, offset, leader epoch, metadata).
type CommittedByTopic = Vec<(String, Vec<(i32, i64, i32, String)>)>;
/// Per topic: whether it was refused (every partition then answers that), and its partitions.
type AuthorizedCommitted = Vec<(String, Option<ResponseError>, Vec<(i32, i64, i32, String)>)>;

pub async fn commit(context: &AgentContext, request: OffsetCommitRequest, client: &ClientInfo) -> OffsetCommitResponse {
    let group = request.group_id.0.to_string();
    // READ on the group, then READ on each topic (Kafka's order and codes).
    let check = if !context.allowed(client, Operation::Read, ResourceType::Group, &group) {
        CommitCheck::Refused(ResponseError::GroupAuthorizationFailed)
    } else {
        // Membership lives in the coordinator's memory, so only it can validate a commit.
        match super::coordinator::not_coordinator(context, &group) {
            Some(error) => CommitCheck::Refused(error),
            None => context.groups.check_commit(&group, request.generation_id_or_member_epoch, &request.member_id),
        }
    };
    let metadata_limit = context.settings.limits.offset_metadata_max_bytes;
    let mut entries = Vec::new();
    // Per partition: None = accepted (pending the journal), Some(error) = refused.
    let mut verdicts: Verdicts = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let partition_count = context.metadata.read(|state| state.topics.get(&name).map(|found| found.partitions.len() as i32));
        let topic_allowed =
            matches!(check, CommitCheck::Refused(_)) || context.allowed(client, Operation::Read, ResourceType::Topic, &name);
        let mut partitions = Vec::new();
        for partition in &topic.partitions {
            let verdict = match (check, partition_count) {
                (CommitCheck::Refused(error), _) => Some(error),
                _ if !topic_allowed => Some(ResponseError::TopicAuthorizationFailed),
                (_, None) => Some(ResponseError::UnknownTopicOrPartition),
                (_, Some(count)) if partition.partition_index < 0 || partition.partition_index >= count => {
                    Some(ResponseError::UnknownTopicOrPartition)
                }
                // Kafka's offset.metadata.max.bytes: the metadata would stay in the journal (and
                // every replica's memory) for good.
                _ if partition.committed_metadata.as_ref().is_some_and(|metadata| metadata.len() > metadata_limit) => {
                    context.metrics.requests_refused.with_label_values(&["offset_metadata_max_bytes"]).inc();
                    Some(ResponseError::OffsetMetadataTooLarge)
                }
                _ => {
                    entries.push(OffsetCommitEntry {
                        topic: name.clone(),
                        partition: partition.partition_index,
                        offset: partition.committed_offset,
                        leader_epoch: partition.committed_leader_epoch,
                        metadata: partition.committed_metadata.as_ref().map(|metadata| metadata.to_string()),
                    });
                    None
                }
            };
            partitions.push((partition.partition_index, verdict));
        }
        verdicts.push((name, partitions));
    }
    let journal_error = if entries.is_empty() {
        None
    } else {
        match context.metadata.submit(JournalRecord::CommitOffsets { group, offsets: entries }).await {
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(%error, "failed to commit offsets");
                Some(ResponseError::CoordinatorNotAvailable)
            }
        }
    };
    let topics = verdicts
        .into_iter()
        .map(|(name, partitions)| {
            OffsetCommitResponseTopic::default().with_name(topic_name(name)).with_partitions(
                partitions
                    .into_iter()
                    .map(|(index, verdict)| {
                        let error = verdict.or(journal_error);
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(index)
                            .with_error_code(error.map(|error| error.code()).unwrap_or(0))
                    })
                    .collect(),
            )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// (topic, partition, offset, leader epoch, metadata) for the requested partitions, or for every
/// committed partition when `topics` is None. Missing commits answer offset -1, metadata "".
fn lookup(context: &AgentContext, group: &str, topics: Option<Vec<(String, Vec<i32>)>>) -> CommittedByTopic {
    context.metadata.read(|state| {
        let committed = state.group_offsets.get(group);
        let topics = topics.unwrap_or_else(|| {
            let mut all: std::collections::BTreeMap<String, Vec<i32>> = Default::default();
            for (topic, partitions) in committed.into_iter().flatten() {
                all.entry(topic.clone()).or_default().extend(partitions.keys().copied());
            }
            all.into_iter().collect()
        });
        topics
            .into_iter()
            .map(|(topic, partitions)| {
                let found = partitions
                    .into_iter()
                    .map(|partition| {
                        match committed.and_then(|offsets| offsets.get(&topic)).and_then(|partitions| partitions.get(&partition)) {
                            Some(offset) => (partition, offset.offset, offset.leader_epoch, offset.metadata.clone().unwrap_or_default()),
                            None => (partition, -1, -1, String::new()),
                        }
                    })
                    .collect();
                (topic, found)
            })
            .collect()
    })
}

/// The committed offsets `client` may see (DESCRIBE on the topic): a topic it may not describe is
/// left out of an all-topics answer, and answers TOPIC_AUTHORIZATION_FAILED where it was named.
fn authorized_lookup(
    context: &AgentContext,
    client: &ClientInfo,
    group: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> AuthorizedCommitted {
    let named = topics.is_some();
    lookup(context, group, topics)
        .into_iter()
        .filter_map(|(topic, partitions)| {
            if named {
                let refused = (!context.allowed(client, Operation::Describe, ResourceType::Topic, &topic))
                    .then_some(ResponseError::TopicAuthorizationFailed);
                Some((topic, refused, partitions))
            } else {
                context.visible(client, Operation::Describe, ResourceType::Topic, &topic).then_some((topic, None, partitions))
            }
        })
        .collect()
}

/// One partition's answer: the committed offset, or -1 and `refused`'s code.
fn fetched(refused: Option<ResponseError>, (index, offset, epoch, metadata): (i32, i64, i32, String)) -> (i32, i64, i32, String, i16) {
    match refused {
        Some(error) => (index, -1, -1, String::new(), error.code()),
        None => (index, offset, epoch, metadata, 0),
    }
}

/// With `require_stable` (v7+, read_committed consumers), a partition whose offset an ongoing
/// transaction will commit answers UNSTABLE_OFFSET_COMMIT, and the consumer retries rather than
/// start from an offset about to change.
fn stabilized(
    context: &AgentContext,
    require_stable: bool,
    group: &str,
    topic: &str,
    fetched: (i32, i64, i32, String, i16),
) -> (i32, i64, i32, String, i16) {
    let (index, _, _, _, error) = &fetched;
    if require_stable && *error == 0 && context.metadata.read(|state| state.has_pending_transactional_offset(group, topic, *index)) {
        return (*index, -1, -1, String::new(), ResponseError::UnstableOffsetCommit.code());
    }
    fetched
}

pub fn fetch(context: &AgentContext, request: OffsetFetchRequest, version: i16, client: &ClientInfo) -> OffsetFetchResponse {
    let require_stable = request.require_stable;
    if version >= 8 {
        let groups = request
            .groups
            .into_iter()
            .map(|group| {
                // DESCRIBE on the group, per group from v8.
                if !context.allowed(client, Operation::Describe, ResourceType::Group, &group.group_id.0) {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(group.group_id)
                        .with_error_code(ResponseError::GroupAuthorizationFailed.code());
                }
                let topics = group
                    .topics
                    .map(|topics| topics.into_iter().map(|topic| (topic.name.0.to_string(), topic.partition_indexes)).collect());
                let found = authorized_lookup(context, client, &group.group_id.0, topics);
                let group_id = group.group_id.0.to_string();
                OffsetFetchResponseGroup::default().with_group_id(group.group_id).with_topics(
                    found
                        .into_iter()
                        .map(|(topic, refused, partitions)| {
                            OffsetFetchResponseTopics::default().with_name(topic_name(topic.clone())).with_partitions(
                                partitions
                                    .into_iter()
                                    .map(|partition| {
                                        let (index, offset, epoch, metadata, error) =
                                            stabilized(context, require_stable, &group_id, &topic, fetched(refused, partition));
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(index)
                                            .with_committed_offset(offset)
                                            .with_committed_leader_epoch(epoch)
                                            .with_metadata(Some(str_bytes(metadata)))
                                            .with_error_code(error)
                                    })
                                    .collect(),
                            )
                        })
                        .collect(),
                )
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    if !context.allowed(client, Operation::Describe, ResourceType::Group, &request.group_id.0) {
        return OffsetFetchResponse::default().with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    let topics = request.topics.map(|topics| topics.into_iter().map(|topic| (topic.name.0.to_string(), topic.partition_indexes)).collect());
    let found = authorized_lookup(context, client, &request.group_id.0, topics);
    let group_id = request.group_id.0.to_string();
    let topics = found
        .into_iter()
        .map(|(topic, refused, partitions)| {
            OffsetFetchResponseTopic::default().with_name(topic_name(topic.clone())).with_partitions(
                partitions
                    .into_iter()
                    .map(|partition| {
                        let (index, offset, epoch, metadata, error) =
                            stabilized(context, require_stable, &group_id, &topic, fetched(refused, partition));
                        OffsetFetchResponsePartition::default()
                            .with_partition_index(index)
                            .with_committed_offset(offset)
                            .with_committed_leader_epoch(epoch)
                            .with_metadata(Some(str_bytes(metadata)))
                            .with_error_code(error)
                    })
                    .collect(),
            )
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}

/// Topics the live members of a consumer group subscribe to (from their JoinGroup metadata).
fn subscribed_topics(summary: &crate::groups::coordinator::GroupSummary) -> std::collections::BTreeSet<String> {
    use bytes::Buf;
    use kafka_protocol::protocol::Decodable;
    let mut topics = std::collections::BTreeSet::new();
    for member in &summary.members {
        let mut metadata = member.metadata.clone();
        if metadata.remaining() < 2 {
            continue;
        }
        // Consumer protocol metadata: a version, then the subscription in that version's layout
        // (newer versions only add fields at the end, so the highest known one reads them).
        let version = metadata.get_i16().clamp(0, 3);
        if let Ok(subscription) = ConsumerProtocolSubscription::decode(&mut metadata, version) {
            topics.extend(subscription.topics.into_iter().map(|topic| topic.to_string()));
        }
    }
    topics
}

/// OffsetDelete (`kafka-consumer-groups --delete-offsets`): forgets a group's committed offsets
/// for partitions of topics no live member subscribes to (Kafka's rule).
pub async fn delete(context: &AgentContext, request: OffsetDeleteRequest, client: &ClientInfo) -> OffsetDeleteResponse {
    use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
    let group = request.group_id.0.to_string();
    let response = OffsetDeleteResponse::default();
    if !context.allowed(client, Operation::Delete, ResourceType::Group, &group) {
        return response.with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    if let Some(error) = super::coordinator::not_coordinator(context, &group) {
        return response.with_error_code(error.code());
    }
    let summary = context.groups.describe(&group).filter(|summary| !summary.members.is_empty());
    let has_offsets = context.metadata.read(|state| state.group_offsets.contains_key(&group));
    if summary.is_none() && !has_offsets {
        return response.with_error_code(ResponseError::GroupIdNotFound.code());
    }
    let subscribed = match &summary {
        Some(summary) if summary.protocol_type == "consumer" => subscribed_topics(summary),
        // A live group of another protocol keeps everything it committed.
        Some(_) => return response.with_error_code(ResponseError::NonEmptyGroup.code()),
        None => Default::default(),
    };
    let mut deleted = Vec::new();
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let partition_count = context.metadata.read(|state| state.topics.get(&name).map(|found| found.partitions.len() as i32));
        let topic_allowed = context.allowed(client, Operation::Read, ResourceType::Topic, &name);
        let partitions = topic
            .partitions
            .iter()
            .map(|partition| {
                let index = partition.partition_index;
                let error = match partition_count {
                    _ if !topic_allowed => Some(ResponseError::TopicAuthorizationFailed),
                    Some(count) if (0..count).contains(&index) => {
                        if subscribed.contains(&name) {
                            Some(ResponseError::GroupSubscribedToTopic)
                        } else {
                            deleted.push(crate::metadata::GroupPartition { topic: name.clone(), partition: index });
                            None
                        }
                    }
                    _ => Some(ResponseError::UnknownTopicOrPartition),
                };
                OffsetDeleteResponsePartition::default()
                    .with_partition_index(index)
                    .with_error_code(error.map(|error| error.code()).unwrap_or(0))
            })
            .collect();
        topics.push(OffsetDeleteResponseTopic::default().with_name(topic.name).with_partitions(partitions));
    }
    if !deleted.is_empty() {
        if let Err(error) =
            context.metadata.submit(JournalRecord::DeletePartitionOffsets { group: group.clone(), partitions: deleted }).await
        {
            tracing::warn!(%error, group, "failed to delete committed offsets");
            return response.with_error_code(ResponseError::CoordinatorNotAvailable.code());
        }
    }
    response.with_topics(topics)
}
