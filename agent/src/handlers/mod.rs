//! One module per Kafka API. The handler table (`handler_table!` below) is the single list of what
//! we implement: dispatch, the server's version check, ApiVersions and the metric labels all come
//! from it.

pub mod acls;
pub mod api_versions;
pub mod client_quotas;
pub mod configs;
pub mod consumer_groups;
pub mod coordinator;
pub mod delete_records;
pub mod fetch;
pub mod fetch_sessions;
pub mod groups;
pub mod leader_epoch;
pub mod list_offsets;
pub mod metadata;
pub mod offsets;
pub mod produce;
pub mod producer_id;
pub mod scram_credentials;
pub mod topics;
pub mod transactions;

use crate::cluster::ClusterView;
use crate::groups::GroupCoordinator;
use crate::metadata::MetadataClient;
use crate::metrics::Metrics;
use crate::storage::{SegmentReader, SegmentWriter};
use floe_meta::acl::{Operation, ResourceType};
use futures::future::BoxFuture;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use std::sync::Arc;

/// One row of the handler table: a Kafka API this agent implements, the versions it advertises
/// and accepts, its label in `floe_requests_total` / `floe_request_duration_seconds`, and what
/// it is authorized against when `--acl-authorization` is on.
#[derive(Debug, Clone, Copy)]
pub struct Api {
    pub key: ApiKey,
    pub min: i16,
    pub max: i16,
    pub metric: &'static str,
    /// The (resource type, operation) pairs the handler checks, as Kafka's `KafkaApis` does; the
    /// handler checks them where it knows the names (each topic, group, the cluster).
    pub acl: &'static [(ResourceType, Operation)],
}

impl Api {
    /// Whether this agent takes `version` of the API; the refusal names the supported range.
    pub fn accepts(&self, version: i16) -> Result<(), String> {
        if (self.min..=self.max).contains(&version) {
            Ok(())
        } else {
            Err(format!("{:?} v{version} is outside the supported range {}..={}", self.key, self.min, self.max))
        }
    }
}

/// The row for `api_key`, if this agent implements it.
pub fn api(api_key: ApiKey) -> Option<&'static Api> {
    APIS.iter().find(|api| api.key == api_key)
}

/// The handler table is written once, below: this macro turns it into `APIS` (which the server's
/// version check, ApiVersions and the metric labels read) and into `handle`'s match, so an API
/// cannot be advertised without a handler, or handled without a metric label.
macro_rules! handler_table {
    ($( $key:ident $min:literal ..= $max:literal $metric:literal [$($on:ident $operation:ident),*] => |$context:ident, $request:ident, $version:ident, $client:ident| $handler:expr; )*) => {
        /// Every API this agent implements, in Kafka's api-key order.
        pub const APIS: &[Api] = &[$(Api {
            key: ApiKey::$key,
            min: $min,
            max: $max,
            metric: $metric,
            acl: &[$((ResourceType::$on, Operation::$operation)),*],
        }),*];

        // Not every handler needs every argument; the Produce row never runs here.
        #[allow(unused_variables, unreachable_code)]
        async fn handle(context: Arc<AgentContext>, version: i16, request: RequestKind, client: ClientInfo) -> ResponseKind {
            match request {
                $(RequestKind::$key($request) => {
                    let ($context, $version, $client) = (&context, version, &client);
                    ResponseKind::$key($handler)
                })*
                other => unreachable!("the server only dispatches APIs in the handler table, got {other:?}"),
            }
        }
    };
}

handler_table! {
    Produce 3..=11 "produce" [Topic Write, TransactionalId Write] => |context, request, version, client| unreachable!("produce is dispatched through produce::start");
    Fetch 4..=12 "fetch" [Topic Read] => |context, request, version, client| fetch::handle(context, request, client).await;
    ListOffsets 1..=7 "list_offsets" [Topic Describe] => |context, request, version, client| list_offsets::handle(context, request, version, client).await;
    Metadata 0..=12 "metadata" [Topic Describe, Topic Create, Cluster Create] => |context, request, version, client| metadata::handle(context, request, version, client).await;
    OffsetCommit 2..=9 "offset_commit" [Group Read, Topic Read] => |context, request, version, client| offsets::commit(context, request, client).await;
    OffsetFetch 1..=9 "offset_fetch" [Group Describe, Topic Describe] => |context, request, version, client| offsets::fetch(context, request, version, client);
    FindCoordinator 0..=4 "find_coordinator" [Group Describe, TransactionalId Describe] => |context, request, version, client| coordinator::find(context, request, version, client);
    JoinGroup 0..=9 "join_group" [Group Read] => |context, request, version, client| groups::join(context, request, version, client).await;
    Heartbeat 0..=4 "heartbeat" [Group Read] => |context, request, version, client| groups::heartbeat(context, request, client);
    LeaveGroup 0..=5 "leave_group" [Group Read] => |context, request, version, client| groups::leave(context, request, version, client);
    SyncGroup 0..=5 "sync_group" [Group Read] => |context, request, version, client| groups::sync(context, request, client).await;
    DescribeGroups 0..=5 "describe_groups" [Group Describe] => |context, request, version, client| groups::describe(context, request, client);
    ListGroups 0..=5 "list_groups" [Cluster Describe, Group Describe] => |context, request, version, client| groups::list(context, request, client);
    // A SASL listener answers these two itself until the connection authenticates (`server/`);
    // they reach this table only on a listener without SASL or after authentication. SaslHandshake
    // v0 is advertised because librdkafka (2.0 and older) decides whether a broker has SASL by
    // it; used, it is refused (`sasl::Session::handshake`).
    SaslHandshake 0..=1 "sasl_handshake" [] => |context, request, version, client| crate::sasl::handshake_not_expected();
    ApiVersions 0..=4 "api_versions" [] => |context, request, version, client| api_versions::response(None);
    CreateTopics 2..=7 "create_topics" [Cluster Create, Topic Create, Topic DescribeConfigs] => |context, request, version, client| topics::create(context, request, version, client).await;
    DeleteTopics 1..=6 "delete_topics" [Topic Delete] => |context, request, version, client| topics::delete(context, request, version, client).await;
    DeleteRecords 0..=2 "delete_records" [Topic Delete] => |context, request, version, client| delete_records::handle(context, request, client).await;
    InitProducerId 0..=5 "init_producer_id" [Cluster IdempotentWrite, Topic Write, TransactionalId Write] => |context, request, version, client| producer_id::handle(context, request, client).await;
    OffsetForLeaderEpoch 2..=4 "offset_for_leader_epoch" [Topic Describe] => |context, request, version, client| leader_epoch::handle(context, request, client);
    // Clients use AddPartitionsToTxn up to v3; v4 and later batch transactions for brokers.
    AddPartitionsToTxn 0..=3 "add_partitions_to_txn" [TransactionalId Write, Topic Write] => |context, request, version, client| transactions::add_partitions(context, request, client).await;
    AddOffsetsToTxn 0..=3 "add_offsets_to_txn" [TransactionalId Write, Group Read] => |context, request, version, client| transactions::add_offsets(context, request, client).await;
    // EndTxn v5 and TxnOffsetCommit v4+ belong to transaction version 2 (KIP-890 part 2), which
    // the agent does not advertise as a feature, so clients keep these.
    EndTxn 0..=4 "end_txn" [TransactionalId Write] => |context, request, version, client| transactions::end(context, request, client).await;
    TxnOffsetCommit 0..=3 "txn_offset_commit" [Group Read, Topic Read] => |context, request, version, client| transactions::commit_offsets(context, request, client).await;
    DescribeAcls 1..=3 "describe_acls" [Cluster Describe] => |context, request, version, client| acls::describe(context, request, client);
    CreateAcls 1..=3 "create_acls" [Cluster Alter] => |context, request, version, client| acls::create(context, request, client).await;
    DeleteAcls 1..=3 "delete_acls" [Cluster Alter] => |context, request, version, client| acls::delete(context, request, client).await;
    DescribeConfigs 1..=4 "describe_configs" [Topic DescribeConfigs, Cluster DescribeConfigs] => |context, request, version, client| configs::describe(context, request, client);
    AlterConfigs 0..=2 "alter_configs" [Topic AlterConfigs, Cluster AlterConfigs] => |context, request, version, client| configs::alter(context, request, client).await;
    SaslAuthenticate 0..=2 "sasl_authenticate" [] => |context, request, version, client| crate::sasl::authenticate_not_expected();
    CreatePartitions 0..=3 "create_partitions" [Topic Alter] => |context, request, version, client| topics::create_partitions(context, request, client).await;
    DeleteGroups 0..=2 "delete_groups" [Group Delete] => |context, request, version, client| groups::delete(context, request, client).await;
    IncrementalAlterConfigs 0..=1 "incremental_alter_configs" [Topic AlterConfigs, Cluster AlterConfigs] => |context, request, version, client| configs::incremental_alter(context, request, client).await;
    OffsetDelete 0..=0 "offset_delete" [Group Delete, Topic Read] => |context, request, version, client| offsets::delete(context, request, client).await;
    DescribeClientQuotas 0..=1 "describe_client_quotas" [Cluster DescribeConfigs] => |context, request, version, client| client_quotas::describe(context, request, client);
    DescribeUserScramCredentials 0..=0 "describe_user_scram_credentials" [Cluster Describe] => |context, request, version, client| scram_credentials::describe(context, request, client);
    AlterUserScramCredentials 0..=0 "alter_user_scram_credentials" [Cluster Alter] => |context, request, version, client| scram_credentials::alter(context, request, client).await;
    DescribeCluster 0..=1 "describe_cluster" [Cluster Describe] => |context, request, version, client| metadata::describe_cluster(context, request, client);
    DescribeTransactions 0..=0 "describe_transactions" [TransactionalId Describe] => |context, request, version, client| transactions::describe(context, request, client);
    ListTransactions 0..=1 "list_transactions" [TransactionalId Describe] => |context, request, version, client| transactions::list(context, request, client);
    // KIP-848, the consumer group protocol of Java 4.x's `group.protocol=consumer`.
    ConsumerGroupHeartbeat 0..=1 "consumer_group_heartbeat" [Group Read, Topic Describe] => |context, request, version, client| consumer_groups::heartbeat(context, request, client);
    ConsumerGroupDescribe 0..=1 "consumer_group_describe" [Group Describe] => |context, request, version, client| consumer_groups::describe(context, request, client);
}

/// Settings handlers need beyond their collaborators.
#[derive(Debug, Clone)]
pub struct HandlerSettings {
    pub default_partitions: i32,
    pub max_partitions_per_topic: i32,
    pub auto_create_topics: bool,
    pub limits: RequestLimits,
    /// `Some` when Kafka ACLs are enforced (`--acl-authorization`).
    pub authorization: Option<crate::authorization::AuthorizationSettings>,
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
    /// Most incremental fetch sessions (KIP-227) the agent keeps; 0 disables them
    /// (`max.incremental.fetch.session.cache.slots`).
    pub fetch_session_cache_slots: usize,
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
            fetch_session_cache_slots: 1000,
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
    /// Incremental fetch sessions (KIP-227), in memory only.
    pub fetch_sessions: fetch_sessions::FetchSessions,
    /// Threads and budget for checking produced batches off the async workers.
    pub validation: produce::ValidationPool,
}

/// Where a request came from.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub client_id: String,
    pub host: String,
    /// The client's address without port, as ACL hosts name it (`10.0.0.1`).
    pub address: String,
    /// The connection's principal (`server::ConnectionState`), for authorization.
    pub principal: Arc<str>,
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
        RequestKind::Produce(request) => produce::start(context, request, &client).await,
        other => Box::pin(async move { Reply::Respond(Box::new(handle(context, version, other, client).await)) }),
    }
}

/// The handler table's authorization column as the Markdown table README.md shows ("Authorization
/// (Kafka ACLs)"); a unit test keeps the two the same.
pub fn acl_table_markdown() -> String {
    let mut table = String::from("| API | Checked with `--acl-authorization` |\n|---|---|\n");
    for api in APIS {
        let checks: Vec<String> = api
            .acl
            .iter()
            .map(|(resource_type, operation)| {
                format!("{} on {}", operation.label().to_uppercase(), resource_type.label().replace('_', " "))
            })
            .collect();
        let checks = if checks.is_empty() { "nothing (answered before authorization)".to_string() } else { checks.join(", ") };
        table.push_str(&format!("| {:?} | {checks} |\n", api.key));
    }
    table
}

pub(crate) fn str_bytes(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}

pub(crate) fn topic_name(value: impl Into<String>) -> TopicName {
    TopicName(str_bytes(value))
}

#[cfg(test)]
mod tests {
    use super::APIS;
    use std::collections::HashSet;

    #[test]
    fn every_advertised_version_is_one_the_protocol_crate_can_decode() {
        for super::Api { key: api_key, min, max, .. } in APIS {
            let valid = api_key.valid_versions();
            assert!(
                valid.min <= *min && *max <= valid.max && min <= max,
                "{api_key:?} is advertised as {min}..={max} but the crate handles {}..={}",
                valid.min,
                valid.max
            );
        }
    }

    #[test]
    fn the_readme_shows_the_handler_tables_authorization_column() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).expect("README.md");
        let table = super::acl_table_markdown();
        assert!(readme.contains(&table), "README.md's ACL table differs from the handler table; it should read:\n{table}");
    }

    #[test]
    fn each_api_appears_once_with_its_own_metric_label() {
        let keys: HashSet<i16> = APIS.iter().map(|api| api.key as i16).collect();
        let labels: HashSet<&str> = APIS.iter().map(|api| api.metric).collect();
        assert_eq!(keys.len(), APIS.len(), "an API key appears twice");
        assert_eq!(labels.len(), APIS.len(), "two APIs share a metric label");
        assert!(APIS.windows(2).all(|pair| (pair[0].key as i16) < (pair[1].key as i16)), "rows out of api-key order");
    }
}
