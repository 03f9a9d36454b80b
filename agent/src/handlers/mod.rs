//! One module per Kafka API. `SUPPORTED` is the single list of what we implement: the router
//! dispatches from it and ApiVersions advertises exactly it.

pub mod api_versions;
pub mod configs;
pub mod coordinator;
pub mod delete_records;
pub mod fetch;
pub mod groups;
pub mod leader_epoch;
pub mod list_offsets;
pub mod metadata;
pub mod offsets;
pub mod produce;
pub mod producer_id;
pub mod topics;

use crate::cluster::ClusterView;
use crate::groups::GroupCoordinator;
use crate::metadata::MetadataClient;
use crate::metrics::Metrics;
use crate::storage::{SegmentReader, SegmentWriter};
use futures::future::BoxFuture;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use std::sync::Arc;

/// (api, min version, max version) of every API this agent implements.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
];

pub fn supported_range(api_key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED.iter().find(|(key, _, _)| *key == api_key).map(|(_, min, max)| (*min, *max))
}

/// Settings handlers need beyond their collaborators.
#[derive(Debug, Clone)]
pub struct HandlerSettings {
    pub default_partitions: i32,
    pub max_partitions_per_topic: i32,
    pub auto_create_topics: bool,
    pub limits: RequestLimits,
}

/// Per-request limits, with Kafka's names (DESIGN.md "Memory budgets and connection limits").
/// Each refusal counts in `floe_requests_refused_total{limit="<kafka name>"}`.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    /// Most record bytes in one Fetch response (`fetch.max.bytes`).
    pub fetch_max_bytes: usize,
    /// Longest committed-offset metadata (`offset.metadata.max.bytes`).
    pub offset_metadata_max_bytes: usize,
    /// Most members in one group (`group.max.size`).
    pub group_max_size: usize,
    /// Largest member metadata in a JoinGroup, and largest member assignment in a SyncGroup.
    pub group_max_member_metadata_bytes: usize,
    /// Most partitions one CreateTopics or CreatePartitions request adds.
    pub max_partitions_per_request: usize,
    /// Most partitions in the virtual cluster.
    pub max_partitions: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            fetch_max_bytes: 57_671_680,
            offset_metadata_max_bytes: 4096,
            group_max_size: i32::MAX as usize,
            group_max_member_metadata_bytes: 1 << 20,
            max_partitions_per_request: 50_000,
            max_partitions: 200_000,
        }
    }
}

/// Everything a handler may use: narrow collaborators, never raw etcd or S3 clients.
pub struct AgentContext {
    pub cluster: Arc<dyn ClusterView>,
    pub metadata: MetadataClient,
    pub writer: Arc<SegmentWriter>,
    pub reader: Arc<SegmentReader>,
    pub groups: Arc<GroupCoordinator>,
    pub metrics: Arc<Metrics>,
    pub settings: HandlerSettings,
    /// Threads and budget for checking produced batches off the async workers.
    pub validation: produce::ValidationPool,
}

/// Where a request came from.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub client_id: String,
    pub host: String,
}

/// What the connection should do once a request is handled.
pub enum Reply {
    Respond(Box<ResponseKind>),
    /// acks=0 produce: the client expects no response.
    Silent,
    /// acks=0 produce that failed: Kafka closes the connection so the client notices.
    Close,
}

/// Starts handling a request. Work that must happen in arrival order (appending produced batches
/// to the open segment) is done before this returns; the rest runs in the returned future, so a
/// connection can pipeline requests while responses still leave in order.
pub async fn dispatch(
    context: Arc<AgentContext>,
    header: RequestHeader,
    request: RequestKind,
    client: ClientInfo,
) -> BoxFuture<'static, Reply> {
    let version = header.request_api_version;
    match request {
        RequestKind::Produce(request) => produce::start(context, request).await,
        other => Box::pin(async move { Reply::Respond(Box::new(handle(context, version, other, client).await)) }),
    }
}

async fn handle(context: Arc<AgentContext>, version: i16, request: RequestKind, client: ClientInfo) -> ResponseKind {
    match request {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions::response(None)),
        RequestKind::Metadata(request) => ResponseKind::Metadata(metadata::handle(&context, request, version, &client).await),
        RequestKind::DescribeCluster(request) => ResponseKind::DescribeCluster(metadata::describe_cluster(&context, request)),
        RequestKind::CreateTopics(request) => ResponseKind::CreateTopics(topics::create(&context, request, version).await),
        RequestKind::DeleteTopics(request) => ResponseKind::DeleteTopics(topics::delete(&context, request, version).await),
        RequestKind::AlterConfigs(request) => ResponseKind::AlterConfigs(configs::alter(&context, request).await),
        RequestKind::IncrementalAlterConfigs(request) => {
            ResponseKind::IncrementalAlterConfigs(configs::incremental_alter(&context, request).await)
        }
        RequestKind::DeleteGroups(request) => ResponseKind::DeleteGroups(groups::delete(&context, request).await),
        RequestKind::CreatePartitions(request) => ResponseKind::CreatePartitions(topics::create_partitions(&context, request).await),
        RequestKind::DescribeConfigs(request) => ResponseKind::DescribeConfigs(configs::describe(&context, request)),
        RequestKind::Fetch(request) => ResponseKind::Fetch(fetch::handle(&context, request).await),
        RequestKind::ListOffsets(request) => ResponseKind::ListOffsets(list_offsets::handle(&context, request, version).await),
        RequestKind::InitProducerId(request) => ResponseKind::InitProducerId(producer_id::handle(&context, request).await),
        RequestKind::FindCoordinator(request) => ResponseKind::FindCoordinator(coordinator::find(&context, request, version)),
        RequestKind::JoinGroup(request) => ResponseKind::JoinGroup(groups::join(&context, request, version, &client).await),
        RequestKind::SyncGroup(request) => ResponseKind::SyncGroup(groups::sync(&context, request).await),
        RequestKind::Heartbeat(request) => ResponseKind::Heartbeat(groups::heartbeat(&context, request)),
        RequestKind::LeaveGroup(request) => ResponseKind::LeaveGroup(groups::leave(&context, request, version)),
        RequestKind::DescribeGroups(request) => ResponseKind::DescribeGroups(groups::describe(&context, request)),
        RequestKind::ListGroups(request) => ResponseKind::ListGroups(groups::list(&context, request)),
        RequestKind::OffsetCommit(request) => ResponseKind::OffsetCommit(offsets::commit(&context, request).await),
        RequestKind::OffsetFetch(request) => ResponseKind::OffsetFetch(offsets::fetch(&context, request, version)),
        RequestKind::OffsetDelete(request) => ResponseKind::OffsetDelete(offsets::delete(&context, request).await),
        RequestKind::DeleteRecords(request) => ResponseKind::DeleteRecords(delete_records::handle(&context, request).await),
        RequestKind::OffsetForLeaderEpoch(request) => ResponseKind::OffsetForLeaderEpoch(leader_epoch::handle(&context, request)),
        RequestKind::Produce(_) => unreachable!("produce is dispatched through produce::start"),
        other => unreachable!("the server only dispatches APIs listed in SUPPORTED, got {other:?}"),
    }
}

pub(crate) fn str_bytes(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}

pub(crate) fn topic_name(value: impl Into<String>) -> TopicName {
    TopicName(str_bytes(value))
}

#[cfg(test)]
mod tests {
    use super::SUPPORTED;

    #[test]
    fn every_advertised_version_is_one_the_protocol_crate_can_decode() {
        for (api_key, min, max) in SUPPORTED {
            let valid = api_key.valid_versions();
            assert!(
                valid.min <= *min && *max <= valid.max && min <= max,
                "{api_key:?} is advertised as {min}..={max} but the crate handles {}..={}",
                valid.min,
                valid.max
            );
        }
    }
}
