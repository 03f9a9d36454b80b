//! In-process tier for Kafka ACLs: an agent started with `--acl-authorization --super-users
//! User:admin`, requests sent as different principals through `handlers::dispatch`. Each denied
//! API answers Kafka's exact code; what a real client and `kafka-acls` see is e2e/tests/acls.rs.

mod common;

use common::{batch, error, topic, InProcess};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const ADMIN: &str = "User:admin";
const ALICE: &str = "User:alice";

// Kafka's wire codes (ResourceType, PatternType, AclOperation, AclPermissionType).
const TOPIC: i8 = 2;
const GROUP: i8 = 3;
const CLUSTER: i8 = 4;
const ANY: i8 = 1;
const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const READ: i8 = 3;
const WRITE: i8 = 4;
const ALTER: i8 = 7;
const ALLOW: i8 = 3;
const DENY: i8 = 2;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn acl(resource_type: i8, name: &str, pattern: i8, principal: &str, operation: i8, permission: i8) -> AclCreation {
    AclCreation::default()
        .with_resource_type(resource_type)
        .with_resource_name(text(name))
        .with_resource_pattern_type(pattern)
        .with_principal(text(principal))
        .with_host(text("*"))
        .with_operation(operation)
        .with_permission_type(permission)
}

async fn create_acls(agent: &InProcess, principal: &str, creations: Vec<AclCreation>) -> Vec<Option<ResponseError>> {
    let request = CreateAclsRequest::default().with_creations(creations);
    let ResponseKind::CreateAcls(response) = agent.call_as(principal, ApiKey::CreateAcls, 3, RequestKind::CreateAcls(request)).await else {
        panic!("not a CreateAcls response")
    };
    response.results.iter().map(|result| error(result.error_code)).collect()
}

async fn produce_as(agent: &InProcess, principal: &str, name: &str) -> Option<ResponseError> {
    let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![TopicProduceData::default()
        .with_name(topic(name))
        .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(batch(0, 3)))])]);
    let ResponseKind::Produce(response) = agent.call_as(principal, ApiKey::Produce, 9, RequestKind::Produce(request)).await else {
        panic!("not a Produce response")
    };
    error(response.responses[0].partition_responses[0].error_code)
}

async fn fetch_as(agent: &InProcess, principal: &str, name: &str) -> Option<ResponseError> {
    let request =
        FetchRequest::default().with_max_wait_ms(0).with_min_bytes(1).with_max_bytes(1 << 20).with_topics(vec![FetchTopic::default()
            .with_topic(topic(name))
            .with_partitions(vec![FetchPartition::default().with_partition(0).with_fetch_offset(0).with_partition_max_bytes(1 << 20)])]);
    let ResponseKind::Fetch(response) = agent.call_as(principal, ApiKey::Fetch, 12, RequestKind::Fetch(request)).await else {
        panic!("not a Fetch response")
    };
    let partition = &response.responses[0].partitions[0];
    // An error answer carries an empty record set, never a null one (librdkafka cannot parse -1).
    assert!(partition.records.is_some(), "a null record set");
    error(partition.error_code)
}

/// An idempotent (non-transactional) producer's InitProducerId as `principal`: its error.
async fn idempotent_producer_as(agent: &InProcess, principal: &str) -> Option<ResponseError> {
    let request = InitProducerIdRequest::default().with_transactional_id(None).with_transaction_timeout_ms(60_000);
    let ResponseKind::InitProducerId(response) =
        agent.call_as(principal, ApiKey::InitProducerId, 4, RequestKind::InitProducerId(request)).await
    else {
        panic!("not an InitProducerId response")
    };
    error(response.error_code)
}

/// The topics a Metadata for every topic lists, and the answer for one named topic.
async fn metadata_as(agent: &InProcess, principal: &str, named: &str) -> (Vec<String>, Option<ResponseError>) {
    let all = MetadataRequest::default().with_topics(None);
    let ResponseKind::Metadata(all) = agent.call_as(principal, ApiKey::Metadata, 12, RequestKind::Metadata(all)).await else {
        panic!("not a Metadata response")
    };
    let listed = all.topics.iter().filter_map(|found| found.name.as_ref().map(|name| name.0.to_string())).collect();
    let one = MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic(named)))]));
    let ResponseKind::Metadata(one) = agent.call_as(principal, ApiKey::Metadata, 12, RequestKind::Metadata(one)).await else {
        panic!("not a Metadata response")
    };
    (listed, error(one.topics[0].error_code))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_matching_acl_each_api_answers_kafkas_authorization_code_and_an_acl_lets_it_through() {
    let agent = InProcess::start_with(&["--acl-authorization", "--super-users", ADMIN]).await;
    // The super user creates two topics and the ACLs; alice has none yet.
    for name in ["orders", "secret"] {
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(5_000)
            .with_topics(vec![CreatableTopic::default().with_name(topic(name)).with_num_partitions(1).with_replication_factor(1)]);
        let ResponseKind::CreateTopics(created) = agent.call_as(ADMIN, ApiKey::CreateTopics, 7, RequestKind::CreateTopics(request)).await
        else {
            panic!("not a CreateTopics response")
        };
        assert_eq!(created.topics[0].error_code, 0, "{:?}", created.topics[0].error_message);
    }

    assert_eq!(produce_as(&agent, ALICE, "orders").await, Some(ResponseError::TopicAuthorizationFailed));
    assert_eq!(fetch_as(&agent, ALICE, "orders").await, Some(ResponseError::TopicAuthorizationFailed));
    assert_eq!(metadata_as(&agent, ALICE, "orders").await, (vec![], Some(ResponseError::TopicAuthorizationFailed)));
    // A topic that does not exist answers the same, so existence does not leak.
    assert_eq!(metadata_as(&agent, ALICE, "nowhere").await.1, Some(ResponseError::TopicAuthorizationFailed));

    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(text("billing")))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(text(""))
        .with_protocol_type(text("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default().with_name(text("range")).with_metadata(Default::default())]);
    let ResponseKind::JoinGroup(joined) = agent.call_as(ALICE, ApiKey::JoinGroup, 9, RequestKind::JoinGroup(join.clone())).await else {
        panic!("not a JoinGroup response")
    };
    assert_eq!(error(joined.error_code), Some(ResponseError::GroupAuthorizationFailed));

    let commit =
        OffsetCommitRequest::default().with_group_id(GroupId(text("billing"))).with_generation_id_or_member_epoch(-1).with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(topic("orders"))
                .with_partitions(vec![OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(1)]),
        ]);
    let ResponseKind::OffsetCommit(committed) =
        agent.call_as(ALICE, ApiKey::OffsetCommit, 8, RequestKind::OffsetCommit(commit.clone())).await
    else {
        panic!("not an OffsetCommit response")
    };
    assert_eq!(error(committed.topics[0].partitions[0].error_code), Some(ResponseError::GroupAuthorizationFailed));

    let create = CreateTopicsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![CreatableTopic::default().with_name(topic("alices")).with_num_partitions(1).with_replication_factor(1)]);
    let ResponseKind::CreateTopics(created) = agent.call_as(ALICE, ApiKey::CreateTopics, 7, RequestKind::CreateTopics(create)).await else {
        panic!("not a CreateTopics response")
    };
    assert_eq!(error(created.topics[0].error_code), Some(ResponseError::TopicAuthorizationFailed));

    let alter = IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
        .with_resource_type(TOPIC)
        .with_resource_name(text("orders"))
        .with_configs(vec![AlterableConfig::default()
            .with_name(text("retention.ms"))
            .with_config_operation(0)
            .with_value(Some(text("1000")))])]);
    let ResponseKind::IncrementalAlterConfigs(altered) =
        agent.call_as(ALICE, ApiKey::IncrementalAlterConfigs, 1, RequestKind::IncrementalAlterConfigs(alter)).await
    else {
        panic!("not an IncrementalAlterConfigs response")
    };
    assert_eq!(error(altered.responses[0].error_code), Some(ResponseError::TopicAuthorizationFailed));

    assert_eq!(idempotent_producer_as(&agent, ALICE).await, Some(ResponseError::ClusterAuthorizationFailed));

    // Alice may not grant herself anything.
    let own = vec![acl(TOPIC, "orders", LITERAL, ALICE, WRITE, ALLOW)];
    assert_eq!(create_acls(&agent, ALICE, own).await, vec![Some(ResponseError::ClusterAuthorizationFailed)]);

    // The super user grants write and read on every topic starting with "ord", read on the
    // group, and denies read on "secret" even though a wildcard allows it.
    let grants = vec![
        acl(TOPIC, "ord", PREFIXED, ALICE, WRITE, ALLOW),
        acl(TOPIC, "ord", PREFIXED, ALICE, READ, ALLOW),
        acl(GROUP, "billing", LITERAL, ALICE, READ, ALLOW),
        acl(TOPIC, "*", LITERAL, ALICE, READ, ALLOW),
        acl(TOPIC, "secret", LITERAL, ALICE, READ, DENY),
    ];
    assert_eq!(create_acls(&agent, ADMIN, grants).await, vec![None; 5]);

    assert_eq!(produce_as(&agent, ALICE, "orders").await, None);
    assert_eq!(fetch_as(&agent, ALICE, "orders").await, None);
    assert_eq!(fetch_as(&agent, ALICE, "secret").await, Some(ResponseError::TopicAuthorizationFailed), "DENY wins");
    assert_eq!(produce_as(&agent, ALICE, "secret").await, Some(ResponseError::TopicAuthorizationFailed), "no WRITE on secret");
    let (listed, named) = metadata_as(&agent, ALICE, "orders").await;
    assert_eq!(named, None);
    assert_eq!(listed, vec!["orders".to_string(), "secret".to_string()], "READ implies DESCRIBE; DENY READ does not deny DESCRIBE");
    let ResponseKind::OffsetCommit(committed) = agent.call_as(ALICE, ApiKey::OffsetCommit, 8, RequestKind::OffsetCommit(commit)).await
    else {
        panic!("not an OffsetCommit response")
    };
    assert_ne!(error(committed.topics[0].partitions[0].error_code), Some(ResponseError::GroupAuthorizationFailed));
    assert_eq!(idempotent_producer_as(&agent, ALICE).await, None, "WRITE on some topic allows an idempotent producer");

    // DescribeAcls as Kafka lays it out: one entry per resource pattern.
    // Kafka's clients send null for a filter field they leave open.
    let describe = DescribeAclsRequest::default()
        .with_resource_name_filter(None)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_resource_type_filter(TOPIC)
        .with_pattern_type_filter(ANY)
        .with_operation(ANY)
        .with_permission_type(ANY);
    let ResponseKind::DescribeAcls(described) =
        agent.call_as(ADMIN, ApiKey::DescribeAcls, 3, RequestKind::DescribeAcls(describe.clone())).await
    else {
        panic!("not a DescribeAcls response")
    };
    assert_eq!(described.error_code, 0);
    let patterns: Vec<(String, i8, usize)> = described
        .resources
        .iter()
        .map(|resource| (resource.resource_name.to_string(), resource.pattern_type, resource.acls.len()))
        .collect();
    assert_eq!(patterns, vec![("*".into(), LITERAL, 1), ("ord".into(), PREFIXED, 2), ("secret".into(), LITERAL, 1)]);
    let ResponseKind::DescribeAcls(refused) = agent.call_as(ALICE, ApiKey::DescribeAcls, 3, RequestKind::DescribeAcls(describe)).await
    else {
        panic!("not a DescribeAcls response")
    };
    assert_eq!(error(refused.error_code), Some(ResponseError::ClusterAuthorizationFailed));

    // Deleting the prefixed WRITE takes produce away again; the filter reports what it removed.
    let filter = DeleteAclsFilter::default()
        .with_resource_type_filter(TOPIC)
        .with_resource_name_filter(Some(text("ord")))
        .with_pattern_type_filter(PREFIXED)
        .with_principal_filter(Some(text(ALICE)))
        .with_host_filter(None)
        .with_operation(WRITE)
        .with_permission_type(ANY);
    let ResponseKind::DeleteAcls(deleted) = agent
        .call_as(ADMIN, ApiKey::DeleteAcls, 3, RequestKind::DeleteAcls(DeleteAclsRequest::default().with_filters(vec![filter.clone()])))
        .await
    else {
        panic!("not a DeleteAcls response")
    };
    assert_eq!(deleted.filter_results[0].error_code, 0);
    assert_eq!(deleted.filter_results[0].matching_acls.len(), 1);
    assert_eq!(produce_as(&agent, ALICE, "orders").await, Some(ResponseError::TopicAuthorizationFailed));
    let ResponseKind::DeleteAcls(again) =
        agent.call_as(ADMIN, ApiKey::DeleteAcls, 3, RequestKind::DeleteAcls(DeleteAclsRequest::default().with_filters(vec![filter]))).await
    else {
        panic!("not a DeleteAcls response")
    };
    assert!(again.filter_results[0].matching_acls.is_empty(), "a deleted ACL is not reported twice");

    let counted = agent.metric_text().await;
    assert!(counted.contains("floe_authorization_denials_total{operation=\"write\",resource_type=\"topic\"}"), "{counted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_that_kafka_would_refuse_get_invalid_request_naming_the_field() {
    let agent = InProcess::start_with(&["--acl-authorization", "--super-users", ADMIN]).await;
    let refused = create_acls(
        &agent,
        ADMIN,
        vec![
            acl(CLUSTER, "my-cluster", LITERAL, ALICE, ALTER, ALLOW),
            acl(TOPIC, "t", LITERAL, "alice", READ, ALLOW),
            acl(TOPIC, "t", ANY, ALICE, READ, ALLOW),
            acl(TOPIC, "t", LITERAL, ALICE, ANY, ALLOW),
            acl(TOPIC, "", LITERAL, ALICE, READ, ALLOW),
            acl(TOPIC, "t", LITERAL, ALICE, READ, ALLOW),
        ],
    )
    .await;
    assert_eq!(refused, [vec![Some(ResponseError::InvalidRequest); 5], vec![None]].concat());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_acl_authorization_every_client_may_act_and_the_acl_apis_answer_security_disabled() {
    let agent = InProcess::start().await;
    agent.create_topic("open", 1).await;
    assert_eq!(produce_as(&agent, ALICE, "open").await, None);
    assert_eq!(
        create_acls(&agent, ADMIN, vec![acl(TOPIC, "open", LITERAL, ALICE, READ, ALLOW)]).await,
        vec![Some(ResponseError::SecurityDisabled)]
    );
}

/// Transactional ids are authorized like Kafka's: WRITE on the transactional id to initialise a
/// transactional producer and to produce inside its transactions, even with WRITE on the topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transactional_id_needs_write_on_it_even_for_a_writer_of_the_topic() {
    const TRANSACTIONAL_ID: i8 = 5;
    let agent = InProcess::start_with(&["--acl-authorization", "--super-users", ADMIN]).await;
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![CreatableTopic::default().with_name(topic("orders")).with_num_partitions(1).with_replication_factor(1)]);
    agent.call_as(ADMIN, ApiKey::CreateTopics, 7, RequestKind::CreateTopics(request)).await;
    assert_eq!(create_acls(&agent, ADMIN, vec![acl(TOPIC, "orders", LITERAL, ALICE, WRITE, ALLOW)]).await, [None]);
    let init = |principal: &'static str| {
        let agent = &agent;
        async move {
            let request = InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(text("payments"))))
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1);
            let ResponseKind::InitProducerId(response) =
                agent.call_as(principal, ApiKey::InitProducerId, 5, RequestKind::InitProducerId(request)).await
            else {
                panic!("not an InitProducerId response")
            };
            error(response.error_code)
        }
    };
    assert_eq!(init(ALICE).await, Some(ResponseError::TransactionalIdAuthorizationFailed));
    let request = ProduceRequest::default()
        .with_transactional_id(Some(TransactionalId(text("payments"))))
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic("orders"))
            .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(batch(0, 3)))])]);
    let ResponseKind::Produce(response) = agent.call_as(ALICE, ApiKey::Produce, 9, RequestKind::Produce(request)).await else {
        panic!("not a Produce response")
    };
    assert_eq!(error(response.responses[0].partition_responses[0].error_code), Some(ResponseError::TransactionalIdAuthorizationFailed));
    assert_eq!(create_acls(&agent, ADMIN, vec![acl(TRANSACTIONAL_ID, "payments", LITERAL, ALICE, WRITE, ALLOW)]).await, [None]);
    assert_eq!(init(ALICE).await, None);
}
