//! The in-process test tier: a real playground agent (embedded journal, file bucket) started in
//! this process from the same flags the binary parses (`launch::playground_settings`), and every
//! handler called through `handlers::dispatch` with typed requests — no socket, no client library,
//! so each test takes milliseconds and fails at the handler it concerns. What a real client sees on
//! the wire is the e2e tier's job.

mod common;

use bytes::Bytes;
use common::{error, topic, InProcess};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versions_lists_every_api_in_the_handler_table() {
    let agent = InProcess::start().await;
    let ResponseKind::ApiVersions(response) =
        agent.call(ApiKey::ApiVersions, 3, RequestKind::ApiVersions(ApiVersionsRequest::default())).await
    else {
        panic!("not an ApiVersions response")
    };
    assert_eq!(response.error_code, 0);
    for api in floe_agent::handlers::APIS {
        let listed = response.api_keys.iter().find(|listed| listed.api_key == api.key as i16);
        let listed = listed.unwrap_or_else(|| panic!("{:?} is not listed", api.key));
        assert_eq!((listed.min_version, listed.max_version), (api.min, api.max), "{:?}", api.key);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_describes_a_created_topic_and_an_unknown_one_as_unknown() {
    let agent = InProcess::start().await;
    agent.create_topic("orders", 3).await;
    let request = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(topic("orders"))),
        MetadataRequestTopic::default().with_name(Some(topic("missing"))),
    ]));
    let ResponseKind::Metadata(response) = agent.call(ApiKey::Metadata, 12, RequestKind::Metadata(request)).await else {
        panic!("not a Metadata response")
    };
    let orders = response.topics.iter().find(|found| found.name == Some(topic("orders"))).expect("orders is listed");
    assert_eq!(orders.error_code, 0);
    assert_eq!(orders.partitions.len(), 3);
    assert!(orders.partitions.iter().all(|partition| partition.leader_id == response.brokers[0].node_id));
    let missing = response.topics.iter().find(|found| found.name == Some(topic("missing"))).expect("missing is answered");
    assert_eq!(error(missing.error_code), Some(ResponseError::UnknownTopicOrPartition));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_and_list_offsets_return_what_was_produced() {
    let agent = InProcess::start().await;
    agent.create_topic("events", 1).await;
    assert_eq!(agent.produce("events", 0, 5).await, 0);
    assert_eq!(agent.produce("events", 5, 3).await, 5);

    let request = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
        .with_name(topic("events"))
        .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-1)])]);
    let ResponseKind::ListOffsets(response) = agent.call(ApiKey::ListOffsets, 7, RequestKind::ListOffsets(request)).await else {
        panic!("not a ListOffsets response")
    };
    assert_eq!(response.topics[0].partitions[0].offset, 8, "the latest offset follows both batches");

    let request =
        FetchRequest::default().with_max_wait_ms(0).with_min_bytes(1).with_max_bytes(1 << 20).with_topics(vec![FetchTopic::default()
            .with_topic(topic("events"))
            .with_partitions(vec![FetchPartition::default().with_partition(0).with_fetch_offset(3).with_partition_max_bytes(1 << 20)])]);
    let ResponseKind::Fetch(response) = agent.call(ApiKey::Fetch, 12, RequestKind::Fetch(request)).await else {
        panic!("not a Fetch response")
    };
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert_eq!(partition.high_watermark, 8);
    let mut bytes = partition.records.clone().expect("records");
    let mut values = Vec::new();
    while !bytes.is_empty() {
        let set = RecordBatchDecoder::decode(&mut bytes).expect("a batch");
        values.extend(set.records.into_iter().map(|record| (record.offset, record.value.expect("a value"))));
    }
    // A fetch returns whole batches: the first one holds offsets 0..5.
    let offsets: Vec<i64> = values.iter().map(|(offset, _)| *offset).collect();
    assert_eq!(offsets, (0..8).collect::<Vec<i64>>());
    assert_eq!(values[7].1, Bytes::from("value-7"));
}

/// The value of one sample of the agent's /metrics text (0 when absent).
fn metric(text: &str, sample: &str) -> f64 {
    text.lines().find_map(|line| line.strip_prefix(sample)?.trim().parse().ok()).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_of_partitions_stored_side_by_side_reads_their_object_with_one_get() {
    // A cache of one byte holds nothing: every fetch goes to the bucket, as on an agent that did
    // not write the object.
    let agent = InProcess::start_with(&["--cache-bytes", "1"]).await;
    agent.create_topic("wide", 8).await;
    // One produce to all eight partitions: one flush, one object holding eight chunks.
    produce_to_every_partition(&agent, "wide", 8, 0).await;
    let gets = r#"floe_object_store_operations_total{operation="get",outcome="ok"}"#;
    let before = metric(&agent.metric_text().await, gets);

    let request =
        FetchRequest::default().with_max_wait_ms(0).with_min_bytes(1).with_max_bytes(1 << 20).with_topics(vec![FetchTopic::default()
            .with_topic(topic("wide"))
            .with_partitions(
                (0..8)
                    .map(|partition| {
                        FetchPartition::default().with_partition(partition).with_fetch_offset(0).with_partition_max_bytes(1 << 20)
                    })
                    .collect(),
            )]);
    let ResponseKind::Fetch(response) = agent.call(ApiKey::Fetch, 12, RequestKind::Fetch(request)).await else {
        panic!("not a Fetch response")
    };
    for partition in &response.responses[0].partitions {
        assert_eq!(partition.error_code, 0, "partition {}", partition.partition_index);
        let mut bytes = partition.records.clone().expect("records");
        let set = RecordBatchDecoder::decode(&mut bytes).expect("a batch");
        let offsets: Vec<i64> = set.records.iter().map(|record| record.offset).collect();
        assert_eq!(offsets, vec![0, 1, 2], "partition {}", partition.partition_index);
        assert_eq!(set.records[2].value, Some(Bytes::from("value-2")));
    }
    let after = metric(&agent.metric_text().await, gets);
    assert_eq!(after - before, 1.0, "eight chunks of one object, one ranged GET");
}

/// Produces records `first..first + 3` to each of `partitions` partitions in one request (one
/// object holding a chunk of each).
async fn produce_to_every_partition(agent: &InProcess, name: &str, partitions: i32, first: usize) {
    let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![TopicProduceData::default()
        .with_name(topic(name))
        .with_partition_data(
            (0..partitions)
                .map(|partition| PartitionProduceData::default().with_index(partition).with_records(Some(common::batch(first, 3))))
                .collect(),
        )]);
    let ResponseKind::Produce(response) = agent.call(ApiKey::Produce, 9, RequestKind::Produce(request)).await else {
        panic!("not a Produce response")
    };
    assert!(response.responses[0].partition_responses.iter().all(|partition| partition.error_code == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_too_small_for_everything_is_filled_from_the_earliest_objects_across_partitions() {
    let agent = InProcess::start_with(&["--cache-bytes", "1"]).await;
    agent.create_topic("behind", 4).await;
    // Three objects, each holding one batch of every partition.
    for round in 0..3 {
        produce_to_every_partition(&agent, "behind", 4, round * 3).await;
    }
    // Room for one object's worth: four batches.
    let batch_bytes = common::batch(0, 3).len() as i32;
    let request = FetchRequest::default().with_max_wait_ms(0).with_min_bytes(1).with_max_bytes(4 * batch_bytes).with_topics(vec![
        FetchTopic::default().with_topic(topic("behind")).with_partitions(
            (0..4)
                .map(|partition| FetchPartition::default().with_partition(partition).with_fetch_offset(0).with_partition_max_bytes(1 << 20))
                .collect(),
        ),
    ]);
    let ResponseKind::Fetch(response) = agent.call(ApiKey::Fetch, 12, RequestKind::Fetch(request)).await else {
        panic!("not a Fetch response")
    };
    // Partition after partition, the first two would take the whole budget from all three objects
    // and the last two would get nothing; taken in the order the objects were written, every
    // partition gets its first batch.
    for partition in &response.responses[0].partitions {
        assert_eq!(partition.error_code, 0);
        let mut bytes = partition.records.clone().expect("records");
        assert!(!bytes.is_empty(), "partition {} got nothing", partition.partition_index);
        let set = RecordBatchDecoder::decode(&mut bytes).expect("a batch");
        assert_eq!(set.records.iter().map(|record| record.offset).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert!(bytes.is_empty(), "partition {} got more than its first batch", partition.partition_index);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_are_fetched_back_and_deleted() {
    let agent = InProcess::start().await;
    agent.create_topic("clicks", 2).await;
    let commit = OffsetCommitRequest::default().with_group_id(GroupId(StrBytes::from_static_str("reporting"))).with_topics(vec![
        OffsetCommitRequestTopic::default().with_name(topic("clicks")).with_partitions(vec![
            OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(42),
            OffsetCommitRequestPartition::default()
                .with_partition_index(1)
                .with_committed_offset(7)
                .with_committed_metadata(Some(StrBytes::from_static_str("note"))),
        ]),
    ]);
    let ResponseKind::OffsetCommit(response) = agent.call(ApiKey::OffsetCommit, 2, RequestKind::OffsetCommit(commit)).await else {
        panic!("not an OffsetCommit response")
    };
    assert!(response.topics[0].partitions.iter().all(|partition| partition.error_code == 0), "{response:?}");

    let fetch = || {
        OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("reporting")))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default().with_name(topic("clicks")).with_partition_indexes(vec![0, 1])]))
    };
    let ResponseKind::OffsetFetch(response) = agent.call(ApiKey::OffsetFetch, 7, RequestKind::OffsetFetch(fetch())).await else {
        panic!("not an OffsetFetch response")
    };
    let partitions = &response.topics[0].partitions;
    assert_eq!((partitions[0].committed_offset, partitions[1].committed_offset), (42, 7));
    assert_eq!(partitions[1].metadata.as_ref().map(|text| text.to_string()), Some("note".to_string()));

    let delete = OffsetDeleteRequest::default().with_group_id(GroupId(StrBytes::from_static_str("reporting"))).with_topics(vec![
        OffsetDeleteRequestTopic::default()
            .with_name(topic("clicks"))
            .with_partitions(vec![OffsetDeleteRequestPartition::default().with_partition_index(0)]),
    ]);
    let ResponseKind::OffsetDelete(response) = agent.call(ApiKey::OffsetDelete, 0, RequestKind::OffsetDelete(delete)).await else {
        panic!("not an OffsetDelete response")
    };
    assert_eq!(response.error_code, 0);
    let ResponseKind::OffsetFetch(response) = agent.call(ApiKey::OffsetFetch, 7, RequestKind::OffsetFetch(fetch())).await else {
        panic!("not an OffsetFetch response")
    };
    let partitions = &response.topics[0].partitions;
    assert_eq!((partitions[0].committed_offset, partitions[1].committed_offset), (-1, 7), "only partition 0's offset is deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_member_joins_syncs_heartbeats_is_described_and_leaves() {
    let agent = InProcess::start().await;
    let group = || GroupId(StrBytes::from_static_str("billing"));
    let find = FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("billing"));
    let ResponseKind::FindCoordinator(found) = agent.call(ApiKey::FindCoordinator, 3, RequestKind::FindCoordinator(find)).await else {
        panic!("not a FindCoordinator response")
    };
    assert_eq!(found.error_code, 0);
    assert_eq!(found.node_id, BrokerId(agent.agent.as_ref().unwrap().node_id));

    let join = JoinGroupRequest::default()
        .with_group_id(group())
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(StrBytes::from_static_str("range"))
            .with_metadata(Bytes::from_static(b"subscription"))]);
    let ResponseKind::JoinGroup(joined) = agent.call(ApiKey::JoinGroup, 3, RequestKind::JoinGroup(join)).await else {
        panic!("not a JoinGroup response")
    };
    assert_eq!(joined.error_code, 0, "{joined:?}");
    assert_eq!(joined.leader, joined.member_id, "the only member leads");
    assert_eq!(joined.members.len(), 1);
    let member = joined.member_id.clone();

    let sync = SyncGroupRequest::default()
        .with_group_id(group())
        .with_generation_id(joined.generation_id)
        .with_member_id(member.clone())
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(member.clone())
            .with_assignment(Bytes::from_static(b"assignment"))]);
    let ResponseKind::SyncGroup(synced) = agent.call(ApiKey::SyncGroup, 3, RequestKind::SyncGroup(sync)).await else {
        panic!("not a SyncGroup response")
    };
    assert_eq!(synced.error_code, 0);
    assert_eq!(synced.assignment, Bytes::from_static(b"assignment"));

    let heartbeat =
        HeartbeatRequest::default().with_group_id(group()).with_generation_id(joined.generation_id).with_member_id(member.clone());
    let ResponseKind::Heartbeat(beat) = agent.call(ApiKey::Heartbeat, 3, RequestKind::Heartbeat(heartbeat)).await else {
        panic!("not a Heartbeat response")
    };
    assert_eq!(beat.error_code, 0);
    let stale =
        HeartbeatRequest::default().with_group_id(group()).with_generation_id(joined.generation_id + 1).with_member_id(member.clone());
    let ResponseKind::Heartbeat(beat) = agent.call(ApiKey::Heartbeat, 3, RequestKind::Heartbeat(stale)).await else {
        panic!("not a Heartbeat response")
    };
    assert_eq!(error(beat.error_code), Some(ResponseError::IllegalGeneration));

    let describe = DescribeGroupsRequest::default().with_groups(vec![group()]);
    let ResponseKind::DescribeGroups(described) = agent.call(ApiKey::DescribeGroups, 5, RequestKind::DescribeGroups(describe)).await else {
        panic!("not a DescribeGroups response")
    };
    let described = &described.groups[0];
    assert_eq!(described.group_state.to_string(), "Stable");
    assert_eq!(described.members.len(), 1);
    let ResponseKind::ListGroups(listed) = agent.call(ApiKey::ListGroups, 4, RequestKind::ListGroups(ListGroupsRequest::default())).await
    else {
        panic!("not a ListGroups response")
    };
    assert!(listed.groups.iter().any(|listed| listed.group_id == group()));

    let leave = LeaveGroupRequest::default().with_group_id(group()).with_member_id(member.clone());
    let ResponseKind::LeaveGroup(left) = agent.call(ApiKey::LeaveGroup, 2, RequestKind::LeaveGroup(leave)).await else {
        panic!("not a LeaveGroup response")
    };
    assert_eq!(left.error_code, 0);
    let describe = DescribeGroupsRequest::default().with_groups(vec![group()]);
    let ResponseKind::DescribeGroups(described) = agent.call(ApiKey::DescribeGroups, 5, RequestKind::DescribeGroups(describe)).await else {
        panic!("not a DescribeGroups response")
    };
    assert_eq!(described.groups[0].group_state.to_string(), "Empty");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_configs_are_described_altered_and_a_bad_value_is_refused() {
    let agent = InProcess::start().await;
    agent.create_topic("audit", 1).await;
    let resource = || {
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("audit"))
            .with_configuration_keys(Some(vec![StrBytes::from_static_str("retention.ms")]))
    };
    let retention = |response: &DescribeConfigsResponse| {
        response.results[0].configs.iter().find(|config| config.name.as_str() == "retention.ms").and_then(|config| config.value.clone())
    };
    let ResponseKind::DescribeConfigs(described) = agent
        .call(ApiKey::DescribeConfigs, 4, RequestKind::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![resource()])))
        .await
    else {
        panic!("not a DescribeConfigs response")
    };
    assert_eq!(described.results[0].error_code, 0);
    assert_eq!(retention(&described).map(|value| value.to_string()), Some("604800000".to_string()), "Kafka's default of 7 days");

    let alter = |value: &'static str| {
        IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("audit"))
            .with_configs(vec![AlterableConfig::default()
                .with_name(StrBytes::from_static_str("retention.ms"))
                .with_config_operation(0)
                .with_value(Some(StrBytes::from_static_str(value)))])])
    };
    let ResponseKind::IncrementalAlterConfigs(altered) =
        agent.call(ApiKey::IncrementalAlterConfigs, 1, RequestKind::IncrementalAlterConfigs(alter("3600000"))).await
    else {
        panic!("not an IncrementalAlterConfigs response")
    };
    assert_eq!(altered.responses[0].error_code, 0, "{:?}", altered.responses[0].error_message);
    let ResponseKind::DescribeConfigs(described) = agent
        .call(ApiKey::DescribeConfigs, 4, RequestKind::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![resource()])))
        .await
    else {
        panic!("not a DescribeConfigs response")
    };
    assert_eq!(retention(&described).map(|value| value.to_string()), Some("3600000".to_string()));

    let ResponseKind::IncrementalAlterConfigs(refused) =
        agent.call(ApiKey::IncrementalAlterConfigs, 1, RequestKind::IncrementalAlterConfigs(alter("a week"))).await
    else {
        panic!("not an IncrementalAlterConfigs response")
    };
    assert_eq!(error(refused.responses[0].error_code), Some(ResponseError::InvalidConfig));
    let message = refused.responses[0].error_message.as_ref().map(|text| text.to_string()).unwrap_or_default();
    assert!(message.contains("retention.ms"), "the message names the config: {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_moves_the_start_offset_and_leader_epochs_and_producer_ids_answer() {
    let agent = InProcess::start().await;
    agent.create_topic("ledger", 1).await;
    agent.produce("ledger", 0, 10).await;

    let delete = DeleteRecordsRequest::default().with_timeout_ms(5_000).with_topics(vec![DeleteRecordsTopic::default()
        .with_name(topic("ledger"))
        .with_partitions(vec![DeleteRecordsPartition::default().with_partition_index(0).with_offset(4)])]);
    let ResponseKind::DeleteRecords(deleted) = agent.call(ApiKey::DeleteRecords, 2, RequestKind::DeleteRecords(delete)).await else {
        panic!("not a DeleteRecords response")
    };
    let partition = &deleted.topics[0].partitions[0];
    assert_eq!((partition.error_code, partition.low_watermark), (0, 4));
    let earliest = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
        .with_name(topic("ledger"))
        .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-2)])]);
    let ResponseKind::ListOffsets(listed) = agent.call(ApiKey::ListOffsets, 7, RequestKind::ListOffsets(earliest)).await else {
        panic!("not a ListOffsets response")
    };
    assert_eq!(listed.topics[0].partitions[0].offset, 4, "the earliest offset is the new start");

    let epochs = OffsetForLeaderEpochRequest::default().with_topics(vec![OffsetForLeaderTopic::default()
        .with_topic(topic("ledger"))
        .with_partitions(vec![OffsetForLeaderPartition::default().with_partition(0).with_leader_epoch(0)])]);
    let ResponseKind::OffsetForLeaderEpoch(epochs) =
        agent.call(ApiKey::OffsetForLeaderEpoch, 4, RequestKind::OffsetForLeaderEpoch(epochs)).await
    else {
        panic!("not an OffsetForLeaderEpoch response")
    };
    let partition = &epochs.topics[0].partitions[0];
    assert_eq!((partition.error_code, partition.end_offset), (0, 10));

    let (first, second) = (agent.init_producer_id().await, agent.init_producer_id().await);
    assert_eq!((first.error_code, second.error_code), (0, 0));
    assert!(first.producer_id.0 >= 0 && second.producer_id.0 >= 0);
    assert_ne!(first.producer_id, second.producer_id, "each producer gets its own id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_are_added_topics_and_groups_deleted_and_the_cluster_described() {
    let agent = InProcess::start().await;
    agent.create_topic("metrics", 2).await;
    let grow = CreatePartitionsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![CreatePartitionsTopic::default().with_name(topic("metrics")).with_count(5)]);
    let ResponseKind::CreatePartitions(grown) = agent.call(ApiKey::CreatePartitions, 3, RequestKind::CreatePartitions(grow)).await else {
        panic!("not a CreatePartitions response")
    };
    assert_eq!(grown.results[0].error_code, 0, "{:?}", grown.results[0].error_message);
    let shrink = CreatePartitionsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![CreatePartitionsTopic::default().with_name(topic("metrics")).with_count(3)]);
    let ResponseKind::CreatePartitions(shrunk) = agent.call(ApiKey::CreatePartitions, 3, RequestKind::CreatePartitions(shrink)).await
    else {
        panic!("not a CreatePartitions response")
    };
    assert_eq!(error(shrunk.results[0].error_code), Some(ResponseError::InvalidPartitions), "partitions cannot be removed");

    let ResponseKind::DescribeCluster(cluster) =
        agent.call(ApiKey::DescribeCluster, 1, RequestKind::DescribeCluster(DescribeClusterRequest::default())).await
    else {
        panic!("not a DescribeCluster response")
    };
    assert_eq!(cluster.error_code, 0);
    assert_eq!(cluster.brokers.len(), 1);
    assert_eq!(cluster.controller_id, cluster.brokers[0].broker_id);

    // An empty group with a committed offset is deleted; an unknown one is reported as such.
    let commit = OffsetCommitRequest::default().with_group_id(GroupId(StrBytes::from_static_str("old"))).with_topics(vec![
        OffsetCommitRequestTopic::default()
            .with_name(topic("metrics"))
            .with_partitions(vec![OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(1)]),
    ]);
    agent.call(ApiKey::OffsetCommit, 2, RequestKind::OffsetCommit(commit)).await;
    let delete = DeleteGroupsRequest::default()
        .with_groups_names(vec![GroupId(StrBytes::from_static_str("old")), GroupId(StrBytes::from_static_str("never"))]);
    let ResponseKind::DeleteGroups(deleted) = agent.call(ApiKey::DeleteGroups, 2, RequestKind::DeleteGroups(delete)).await else {
        panic!("not a DeleteGroups response")
    };
    let code = |name: &str| deleted.results.iter().find(|result| result.group_id.as_str() == name).map(|result| result.error_code);
    assert_eq!(code("old"), Some(0));
    assert_eq!(code("never").and_then(error), Some(ResponseError::GroupIdNotFound));

    let drop = DeleteTopicsRequest::default().with_timeout_ms(5_000).with_topic_names(vec![topic("metrics")]);
    let ResponseKind::DeleteTopics(dropped) = agent.call(ApiKey::DeleteTopics, 4, RequestKind::DeleteTopics(drop)).await else {
        panic!("not a DeleteTopics response")
    };
    assert_eq!(dropped.responses[0].error_code, 0);
    let request = MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic("metrics")))]));
    let ResponseKind::Metadata(response) = agent.call(ApiKey::Metadata, 12, RequestKind::Metadata(request)).await else {
        panic!("not a Metadata response")
    };
    assert_eq!(error(response.topics[0].error_code), Some(ResponseError::UnknownTopicOrPartition), "the deleted topic is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_credentials_are_upserted_described_and_deleted_with_kafkas_error_codes() {
    use alter_user_scram_credentials_request::{ScramCredentialDeletion, ScramCredentialUpsertion};
    use floe_meta::scram::ScramMechanism;
    let agent = InProcess::start().await;
    let upsertion = |user: &str, mechanism: ScramMechanism, iterations: i32| {
        let salt = b"0123456789abcdef".to_vec();
        let salted = mechanism.salted_password(b"pw", &salt, iterations.max(1) as u32);
        ScramCredentialUpsertion::default()
            .with_name(StrBytes::from_string(user.to_string()))
            .with_mechanism(mechanism.kafka_type())
            .with_iterations(iterations)
            .with_salt(Bytes::from(salt))
            .with_salted_password(Bytes::from(salted))
    };
    let deletion = |user: &str, mechanism: i8| {
        ScramCredentialDeletion::default().with_name(StrBytes::from_string(user.to_string())).with_mechanism(mechanism)
    };
    let alter = |request: AlterUserScramCredentialsRequest| {
        let agent = &agent;
        async move {
            let ResponseKind::AlterUserScramCredentials(response) =
                agent.call(ApiKey::AlterUserScramCredentials, 0, RequestKind::AlterUserScramCredentials(request)).await
            else {
                panic!("not an AlterUserScramCredentials response")
            };
            let mut results: Vec<(String, i16)> =
                response.results.iter().map(|result| (result.user.to_string(), result.error_code)).collect();
            results.sort();
            results
        }
    };

    let results = alter(
        AlterUserScramCredentialsRequest::default()
            .with_upsertions(vec![
                upsertion("alice", ScramMechanism::Sha512, 8192),
                upsertion("bob", ScramMechanism::Sha256, 4096),
                upsertion("carol", ScramMechanism::Sha256, 1024),
                upsertion("dave", ScramMechanism::Sha256, 4096).with_mechanism(9),
                upsertion("", ScramMechanism::Sha256, 4096),
                upsertion("erin", ScramMechanism::Sha256, 4096),
                // One user, two mechanisms: what kafka-configs sends for 'SCRAM-SHA-256=[...],SCRAM-SHA-512=[...]'.
                upsertion("grace", ScramMechanism::Sha256, 4096),
                upsertion("grace", ScramMechanism::Sha512, 4096),
            ])
            .with_deletions(vec![deletion("erin", 1), deletion("frank", 2)]),
    )
    .await;
    let code = |error: ResponseError| error.code();
    assert_eq!(
        results,
        vec![
            (String::new(), code(ResponseError::UnacceptableCredential)),
            ("alice".into(), 0),
            ("bob".into(), 0),
            ("carol".into(), code(ResponseError::UnacceptableCredential)),
            ("dave".into(), code(ResponseError::UnsupportedSaslMechanism)),
            ("erin".into(), code(ResponseError::DuplicateResource)),
            ("frank".into(), code(ResponseError::ResourceNotFound)),
            ("grace".into(), 0),
        ]
    );

    let describe = |users: Option<Vec<&str>>| {
        let agent = &agent;
        let users = users.map(|users| {
            users
                .into_iter()
                .map(|user| describe_user_scram_credentials_request::UserName::default().with_name(StrBytes::from_string(user.into())))
                .collect()
        });
        async move {
            let request = DescribeUserScramCredentialsRequest::default().with_users(users);
            let ResponseKind::DescribeUserScramCredentials(response) =
                agent.call(ApiKey::DescribeUserScramCredentials, 0, RequestKind::DescribeUserScramCredentials(request)).await
            else {
                panic!("not a DescribeUserScramCredentials response")
            };
            response
                .results
                .iter()
                .map(|result| {
                    let infos: Vec<(i8, i32)> = result.credential_infos.iter().map(|info| (info.mechanism, info.iterations)).collect();
                    (result.user.to_string(), result.error_code, infos)
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        describe(None).await,
        vec![
            ("alice".to_string(), 0, vec![(2, 8192)]),
            ("bob".to_string(), 0, vec![(1, 4096)]),
            ("grace".to_string(), 0, vec![(1, 4096), (2, 4096)]),
        ]
    );
    assert_eq!(
        describe(Some(vec!["bob", "nobody", "alice", "alice"])).await,
        vec![
            ("bob".to_string(), 0, vec![(1, 4096)]),
            ("nobody".to_string(), code(ResponseError::ResourceNotFound), vec![]),
            ("alice".to_string(), code(ResponseError::DuplicateResource), vec![]),
        ]
    );

    // The stored credential is the one the client derived: the password verifies against it.
    let stored =
        agent.agent.as_ref().unwrap().context.metadata.read(|state| state.scram_credential("alice", ScramMechanism::Sha512).cloned());
    assert!(stored.expect("alice's credential").matches_password("pw"));

    assert_eq!(
        alter(AlterUserScramCredentialsRequest::default().with_deletions(vec![deletion("alice", 2)])).await,
        vec![("alice".into(), 0)]
    );
    assert_eq!(describe(None).await.len(), 2, "alice was deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_quotas_are_described_as_none_and_a_malformed_filter_is_refused() {
    use describe_client_quotas_request::ComponentData;
    let agent = InProcess::start().await;
    let describe = |components: Vec<ComponentData>| {
        let agent = &agent;
        async move {
            let request = DescribeClientQuotasRequest::default().with_components(components);
            let ResponseKind::DescribeClientQuotas(response) =
                agent.call(ApiKey::DescribeClientQuotas, 1, RequestKind::DescribeClientQuotas(request)).await
            else {
                panic!("not a DescribeClientQuotas response")
            };
            response
        }
    };
    let user = |match_type: i8, name: Option<&str>| {
        ComponentData::default()
            .with_entity_type(StrBytes::from_static_str("user"))
            .with_match_type(match_type)
            .with_match(name.map(|name| StrBytes::from_string(name.to_string())))
    };
    let none = describe(vec![user(0, Some("alice"))]).await;
    assert_eq!((none.error_code, none.entries.map(|entries| entries.len())), (0, Some(0)), "no quotas exist");
    for bad in [
        vec![user(0, None)],
        vec![user(7, None)],
        vec![user(2, None), user(1, None)],
        vec![ComponentData::default().with_entity_type(StrBytes::from_static_str("group")).with_match_type(2)],
    ] {
        let refused = describe(bad).await;
        assert_eq!(refused.error_code, ResponseError::InvalidRequest.code(), "{:?}", refused.error_message);
        assert!(refused.error_message.is_some());
    }
}

/// A Fetch of `partitions` (partition, fetch offset) of topic `name` on session `session_id` at
/// `epoch`, forgetting `forgotten`, answered at once.
fn session_fetch(name: &str, session_id: i32, epoch: i32, partitions: &[(i32, i64)], forgotten: &[i32]) -> FetchRequest {
    let listed: Vec<FetchPartition> = partitions
        .iter()
        .map(|&(partition, offset)| {
            FetchPartition::default().with_partition(partition).with_fetch_offset(offset).with_partition_max_bytes(1 << 20)
        })
        .collect();
    let topics = if listed.is_empty() { vec![] } else { vec![FetchTopic::default().with_topic(topic(name)).with_partitions(listed)] };
    let forgotten = if forgotten.is_empty() {
        vec![]
    } else {
        vec![fetch_request::ForgottenTopic::default().with_topic(topic(name)).with_partitions(forgotten.to_vec())]
    };
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_session_id(session_id)
        .with_session_epoch(epoch)
        .with_topics(topics)
        .with_forgotten_topics_data(forgotten)
}

async fn fetch_as(agent: &InProcess, principal: &str, version: i16, request: FetchRequest) -> FetchResponse {
    let ResponseKind::Fetch(response) = agent.call_as(principal, ApiKey::Fetch, version, RequestKind::Fetch(request)).await else {
        panic!("not a Fetch response")
    };
    response
}

/// (partition, whether it carried records) of each partition of a response, in order.
fn answered(response: &FetchResponse) -> Vec<(i32, bool)> {
    response
        .responses
        .iter()
        .flat_map(|topic| topic.partitions.iter())
        .map(|partition| (partition.partition_index, partition.records.as_ref().is_some_and(|records| !records.is_empty())))
        .collect()
}

/// Produces records `first..first + count` to one partition with acks=all.
async fn produce_to(agent: &InProcess, name: &str, partition: i32, first: usize, count: usize) {
    let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![TopicProduceData::default()
        .with_name(topic(name))
        .with_partition_data(vec![PartitionProduceData::default().with_index(partition).with_records(Some(common::batch(first, count)))])]);
    let ResponseKind::Produce(response) = agent.call(ApiKey::Produce, 9, RequestKind::Produce(request)).await else {
        panic!("not a Produce response")
    };
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
}

const CONSUMER: &str = "User:ANONYMOUS";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_session_answers_only_partitions_that_changed_and_forgets_forgotten_ones() {
    for version in [7, 12] {
        let agent = InProcess::start().await;
        agent.create_topic("sessions", 3).await;
        produce_to(&agent, "sessions", 0, 0, 4).await;

        // A full fetch with epoch 0 opens a session and answers every partition.
        let full = fetch_as(&agent, CONSUMER, version, session_fetch("sessions", 0, 0, &[(0, 0), (1, 0), (2, 0)], &[])).await;
        assert_eq!(full.error_code, 0);
        let session = full.session_id;
        assert!(session > 0, "v{version}: no session opened");
        assert_eq!(answered(&full), vec![(0, true), (1, false), (2, false)], "v{version}");

        // Partition 0 moves to its end: nothing changed, nothing answered.
        let quiet = fetch_as(&agent, CONSUMER, version, session_fetch("sessions", session, 1, &[(0, 4)], &[])).await;
        assert_eq!((quiet.error_code, quiet.session_id), (0, session));
        assert_eq!(answered(&quiet), vec![], "v{version}");

        // Records on partition 1: only it is answered, though the request names no partition.
        produce_to(&agent, "sessions", 1, 0, 2).await;
        let changed = fetch_as(&agent, CONSUMER, version, session_fetch("sessions", session, 2, &[], &[])).await;
        assert_eq!(answered(&changed), vec![(1, true)], "v{version}");

        // Partition 1 forgotten: new records there are no longer answered; partition 2's are.
        produce_to(&agent, "sessions", 1, 2, 2).await;
        produce_to(&agent, "sessions", 2, 0, 2).await;
        let forgot = fetch_as(&agent, CONSUMER, version, session_fetch("sessions", session, 3, &[], &[1])).await;
        assert_eq!(answered(&forgot), vec![(2, true)], "v{version}");

        let metrics = agent.metric_text().await;
        assert_eq!(metric(&metrics, r#"floe_fetch_requests_total{kind="incremental"}"#), 3.0);
        assert_eq!(metric(&metrics, r#"floe_fetch_requests_total{kind="full"}"#), 1.0);
        assert_eq!(metric(&metrics, "floe_fetch_sessions"), 1.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_session_refuses_a_wrong_epoch_an_unknown_id_and_another_principal() {
    let agent = InProcess::start().await;
    agent.create_topic("guarded", 1).await;
    produce_to(&agent, "guarded", 0, 0, 2).await;
    let full = fetch_as(&agent, CONSUMER, 12, session_fetch("guarded", 0, 0, &[(0, 0)], &[])).await;
    let session = full.session_id;
    assert!(session > 0);

    let wrong_epoch = fetch_as(&agent, CONSUMER, 12, session_fetch("guarded", session, 5, &[], &[])).await;
    assert_eq!(error(wrong_epoch.error_code), Some(ResponseError::InvalidFetchSessionEpoch));
    assert!(wrong_epoch.responses.is_empty());
    let unknown = fetch_as(&agent, CONSUMER, 12, session_fetch("guarded", session ^ 1, 1, &[], &[])).await;
    assert_eq!(error(unknown.error_code), Some(ResponseError::FetchSessionIdNotFound));
    let intruder = fetch_as(&agent, "User:mallory", 12, session_fetch("guarded", session, 1, &[], &[])).await;
    assert_eq!(error(intruder.error_code), Some(ResponseError::FetchSessionIdNotFound));
    assert!(intruder.responses.is_empty());

    // The owner's session is intact at the epoch it expects.
    let owner = fetch_as(&agent, CONSUMER, 12, session_fetch("guarded", session, 1, &[], &[])).await;
    assert_eq!((owner.error_code, owner.session_id), (0, session));
    // Epoch -1 closes it and is answered without a session, every partition listed.
    let closing = fetch_as(&agent, CONSUMER, 12, session_fetch("guarded", session, -1, &[(0, 0)], &[])).await;
    assert_eq!((closing.error_code, closing.session_id), (0, 0));
    assert_eq!(answered(&closing), vec![(0, true)]);
    let closed = fetch_as(&agent, CONSUMER, 12, session_fetch("guarded", session, 2, &[], &[])).await;
    assert_eq!(error(closed.error_code), Some(ResponseError::FetchSessionIdNotFound));
    assert_eq!(metric(&agent.metric_text().await, "floe_fetch_sessions"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_session_slots_every_fetch_is_answered_without_a_session() {
    let agent = InProcess::start_with(&["--fetch-session-cache-slots", "0"]).await;
    agent.create_topic("plain", 1).await;
    produce_to(&agent, "plain", 0, 0, 2).await;
    let full = fetch_as(&agent, CONSUMER, 12, session_fetch("plain", 0, 0, &[(0, 0)], &[])).await;
    assert_eq!((full.error_code, full.session_id), (0, 0));
    assert_eq!(answered(&full), vec![(0, true)]);
    assert_eq!(metric(&agent.metric_text().await, r#"floe_fetch_requests_total{kind="sessionless"}"#), 1.0);
}
