//! Writes the starting corpus of both fuzz targets: `seed_corpus <dir>` fills
//! `<dir>/request_decoder/` and `<dir>/record_batch_decoder/` (`make fuzz` runs it; existing files
//! are overwritten, the fuzzer's own finds are kept).
//!
//! Request seeds are encoded by the `kafka-protocol` crate, one per advertised (api key, version):
//! a request with a few populated entries where the API has arrays worth exploring, else the
//! default body. Batch seeds are client-style batches in every codec, laid out as
//! `floe_agent::fuzzing::record_batch_decoder` reads them.

use bytes::{Bytes, BytesMut};
use floe_agent::fuzzing::advertised_versions;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use std::path::PathBuf;

const CODECS: [Compression; 5] = [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

fn main() {
    let Some(directory) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: seed_corpus <corpus directory>");
        std::process::exit(2);
    };
    let mut written = 0;
    let mut write = |target: &str, name: &str, bytes: &[u8]| {
        let directory = directory.join(target);
        std::fs::create_dir_all(&directory).expect("create the corpus directory");
        std::fs::write(directory.join(format!("seed-{name}")), bytes).expect("write a seed");
        written += 1;
    };
    for &(api_key, version) in advertised_versions() {
        let name = format!("{api_key:?}-v{version}");
        let populated = populated_request(api_key, version);
        let body = encode_request(api_key, version, &populated)
            .or_else(|| encode_request(api_key, version, &default_request(api_key)))
            .unwrap_or_else(|| panic!("{name}: even the default body does not encode"));
        write("request_decoder", &name, &body);
    }
    for (name, input) in batch_seeds() {
        write("record_batch_decoder", &name, &input);
    }
    for (name, input) in validator_seeds() {
        write("record_validator", &name, &input);
    }
    println!("wrote {written} seeds under {}", directory.display());
}

/// The frame without its size prefix: request header, then body.
fn encode_request(api_key: ApiKey, version: i16, body: &RequestKind) -> Option<Vec<u8>> {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("seed")));
    let mut buffer = BytesMut::new();
    header.encode(&mut buffer, api_key.request_header_version(version)).ok()?;
    body.encode(&mut buffer, version).ok()?;
    Some(buffer.to_vec())
}

fn default_request(api_key: ApiKey) -> RequestKind {
    match api_key {
        ApiKey::Produce => RequestKind::Produce(Default::default()),
        ApiKey::Fetch => RequestKind::Fetch(Default::default()),
        ApiKey::ListOffsets => RequestKind::ListOffsets(Default::default()),
        ApiKey::Metadata => RequestKind::Metadata(Default::default()),
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(Default::default()),
        ApiKey::OffsetFetch => RequestKind::OffsetFetch(Default::default()),
        ApiKey::FindCoordinator => RequestKind::FindCoordinator(Default::default()),
        ApiKey::JoinGroup => RequestKind::JoinGroup(Default::default()),
        ApiKey::Heartbeat => RequestKind::Heartbeat(Default::default()),
        ApiKey::LeaveGroup => RequestKind::LeaveGroup(Default::default()),
        ApiKey::SyncGroup => RequestKind::SyncGroup(Default::default()),
        ApiKey::DescribeGroups => RequestKind::DescribeGroups(Default::default()),
        ApiKey::ListGroups => RequestKind::ListGroups(Default::default()),
        ApiKey::ApiVersions => RequestKind::ApiVersions(Default::default()),
        ApiKey::CreateTopics => RequestKind::CreateTopics(Default::default()),
        ApiKey::DeleteTopics => RequestKind::DeleteTopics(Default::default()),
        ApiKey::InitProducerId => RequestKind::InitProducerId(Default::default()),
        ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(Default::default()),
        ApiKey::DescribeCluster => RequestKind::DescribeCluster(Default::default()),
        ApiKey::CreatePartitions => RequestKind::CreatePartitions(Default::default()),
        ApiKey::AlterConfigs => RequestKind::AlterConfigs(Default::default()),
        ApiKey::IncrementalAlterConfigs => RequestKind::IncrementalAlterConfigs(Default::default()),
        ApiKey::DeleteGroups => RequestKind::DeleteGroups(Default::default()),
        ApiKey::DeleteRecords => RequestKind::DeleteRecords(Default::default()),
        ApiKey::OffsetDelete => RequestKind::OffsetDelete(Default::default()),
        ApiKey::OffsetForLeaderEpoch => RequestKind::OffsetForLeaderEpoch(Default::default()),
        other => panic!("{other:?} is advertised but has no seed; add it here"),
    }
}

fn text(value: &'static str) -> StrBytes {
    StrBytes::from_static_str(value)
}

fn topic(value: &'static str) -> TopicName {
    TopicName(text(value))
}

/// Two entries per array and the fields a client would set, limited to what `version` has.
fn populated_request(api_key: ApiKey, version: i16) -> RequestKind {
    use kafka_protocol::messages::{
        alter_configs_request as alter, create_partitions_request as partitions, create_topics_request as create,
        describe_configs_request as describe, fetch_request as fetch, incremental_alter_configs_request as incremental,
        join_group_request as join, leave_group_request as leave, list_offsets_request as list, metadata_request as metadata,
        offset_commit_request as commit, offset_fetch_request as offsets, produce_request as produce, sync_group_request as sync,
    };
    match api_key {
        ApiKey::Produce => RequestKind::Produce(ProduceRequest::default().with_acks(-1).with_timeout_ms(30_000).with_topic_data(vec![
            produce::TopicProduceData::default().with_name(topic("events")).with_partition_data(vec![
                produce::PartitionProduceData::default().with_index(0).with_records(Some(client_batch(3, Compression::None))),
                produce::PartitionProduceData::default().with_index(1).with_records(Some(client_batch(2, Compression::Zstd))),
            ]),
        ])),
        ApiKey::Fetch => {
            RequestKind::Fetch(FetchRequest::default().with_max_wait_ms(500).with_min_bytes(1).with_max_bytes(50 << 20).with_topics(vec![
                fetch::FetchTopic::default().with_topic(topic("events")).with_partitions(vec![
                    fetch::FetchPartition::default().with_partition(0).with_fetch_offset(10).with_partition_max_bytes(1 << 20),
                    fetch::FetchPartition::default().with_partition(1).with_partition_max_bytes(1 << 20),
                ]),
            ]))
        }
        ApiKey::ListOffsets => RequestKind::ListOffsets(ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
            list::ListOffsetsTopic::default().with_name(topic("events")).with_partitions(vec![
                list::ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-1),
                list::ListOffsetsPartition::default().with_partition_index(1).with_timestamp(1_700_000_000_000),
            ]),
        ])),
        ApiKey::Metadata => RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
            metadata::MetadataRequestTopic::default().with_name(Some(topic("events"))),
            metadata::MetadataRequestTopic::default().with_name(Some(topic("orders"))),
        ]))),
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(text("group")))
                .with_generation_id_or_member_epoch(1)
                .with_member_id(text("member-1"))
                .with_topics(vec![commit::OffsetCommitRequestTopic::default().with_name(topic("events")).with_partitions(vec![
                    commit::OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(42),
                    commit::OffsetCommitRequestPartition::default()
                        .with_partition_index(1)
                        .with_committed_offset(7)
                        .with_committed_metadata(Some(text("note"))),
                ])]),
        ),
        ApiKey::OffsetFetch if version >= 8 => RequestKind::OffsetFetch(OffsetFetchRequest::default().with_groups(vec![
            offsets::OffsetFetchRequestGroup::default().with_group_id(GroupId(text("group"))).with_topics(Some(vec![
                offsets::OffsetFetchRequestTopics::default().with_name(topic("events")).with_partition_indexes(vec![0, 1]),
            ])),
        ])),
        ApiKey::OffsetFetch => {
            RequestKind::OffsetFetch(OffsetFetchRequest::default().with_group_id(GroupId(text("group"))).with_topics(Some(vec![
                offsets::OffsetFetchRequestTopic::default().with_name(topic("events")).with_partition_indexes(vec![0, 1]),
            ])))
        }
        ApiKey::FindCoordinator if version >= 4 => {
            RequestKind::FindCoordinator(FindCoordinatorRequest::default().with_coordinator_keys(vec![text("group"), text("other-group")]))
        }
        ApiKey::FindCoordinator => RequestKind::FindCoordinator(FindCoordinatorRequest::default().with_key(text("group"))),
        ApiKey::JoinGroup => RequestKind::JoinGroup(
            JoinGroupRequest::default()
                .with_group_id(GroupId(text("group")))
                .with_session_timeout_ms(45_000)
                .with_protocol_type(text("consumer"))
                .with_protocols(vec![
                    join::JoinGroupRequestProtocol::default().with_name(text("range")).with_metadata(Bytes::from_static(b"\0\x01\0\0")),
                    join::JoinGroupRequestProtocol::default().with_name(text("cooperative-sticky")),
                ]),
        ),
        ApiKey::SyncGroup => RequestKind::SyncGroup(
            SyncGroupRequest::default()
                .with_group_id(GroupId(text("group")))
                .with_generation_id(1)
                .with_member_id(text("m"))
                .with_assignments(vec![
                    sync::SyncGroupRequestAssignment::default().with_member_id(text("m")).with_assignment(Bytes::from_static(b"\0\x01")),
                    sync::SyncGroupRequestAssignment::default().with_member_id(text("n")),
                ]),
        ),
        ApiKey::LeaveGroup if version >= 3 => {
            RequestKind::LeaveGroup(LeaveGroupRequest::default().with_group_id(GroupId(text("group"))).with_members(vec![
                leave::MemberIdentity::default().with_member_id(text("m")),
                leave::MemberIdentity::default().with_member_id(text("n")),
            ]))
        }
        ApiKey::LeaveGroup => {
            RequestKind::LeaveGroup(LeaveGroupRequest::default().with_group_id(GroupId(text("group"))).with_member_id(text("m")))
        }
        ApiKey::DescribeGroups => {
            RequestKind::DescribeGroups(DescribeGroupsRequest::default().with_groups(vec![GroupId(text("a")), GroupId(text("b"))]))
        }
        ApiKey::DeleteGroups => {
            RequestKind::DeleteGroups(DeleteGroupsRequest::default().with_groups_names(vec![GroupId(text("a")), GroupId(text("b"))]))
        }
        ApiKey::ListGroups if version >= 4 => {
            RequestKind::ListGroups(ListGroupsRequest::default().with_states_filter(vec![text("Stable"), text("Empty")]))
        }
        ApiKey::ApiVersions if version >= 3 => RequestKind::ApiVersions(
            ApiVersionsRequest::default().with_client_software_name(text("seed")).with_client_software_version(text("1.0")),
        ),
        ApiKey::CreateTopics => RequestKind::CreateTopics(CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![
                create::CreatableTopic::default()
                    .with_name(topic("events"))
                    .with_num_partitions(3)
                    .with_replication_factor(1)
                    .with_configs(vec![create::CreatableTopicConfig::default()
                        .with_name(text("retention.ms"))
                        .with_value(Some(text("1000")))]),
                create::CreatableTopic::default()
                    .with_name(topic("placed"))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
                    .with_assignments(vec![create::CreatableReplicaAssignment::default()
                        .with_partition_index(0)
                        .with_broker_ids(vec![BrokerId(1)])]),
            ])),
        ApiKey::DeleteTopics if version >= 6 => RequestKind::DeleteTopics(
            DeleteTopicsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![delete_topics_request::DeleteTopicState::default().with_name(Some(topic("events")))]),
        ),
        ApiKey::DeleteTopics => {
            RequestKind::DeleteTopics(DeleteTopicsRequest::default().with_timeout_ms(10_000).with_topic_names(vec![topic("a"), topic("b")]))
        }
        ApiKey::InitProducerId => RequestKind::InitProducerId(InitProducerIdRequest::default().with_transaction_timeout_ms(60_000)),
        ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![
            describe::DescribeConfigsResource::default().with_resource_type(2).with_resource_name(text("events")),
            describe::DescribeConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(text("1"))
                .with_configuration_keys(Some(vec![text("message.max.bytes")])),
        ])),
        ApiKey::CreatePartitions => {
            RequestKind::CreatePartitions(CreatePartitionsRequest::default().with_timeout_ms(10_000).with_topics(vec![
                partitions::CreatePartitionsTopic::default().with_name(topic("events")).with_count(6),
                partitions::CreatePartitionsTopic::default().with_name(topic("placed")).with_count(2).with_assignments(Some(vec![
                    partitions::CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(1)]),
                ])),
            ]))
        }
        ApiKey::AlterConfigs => RequestKind::AlterConfigs(AlterConfigsRequest::default().with_resources(vec![
            alter::AlterConfigsResource::default().with_resource_type(2).with_resource_name(text("events")).with_configs(vec![
                alter::AlterableConfig::default().with_name(text("retention.ms")).with_value(Some(text("1000"))),
                alter::AlterableConfig::default().with_name(text("max.message.bytes")),
            ]),
        ])),
        ApiKey::IncrementalAlterConfigs => {
            RequestKind::IncrementalAlterConfigs(IncrementalAlterConfigsRequest::default().with_resources(vec![
                incremental::AlterConfigsResource::default().with_resource_type(2).with_resource_name(text("events")).with_configs(vec![
                    incremental::AlterableConfig::default().with_name(text("retention.ms")).with_value(Some(text("1000"))),
                    incremental::AlterableConfig::default().with_name(text("retention.bytes")).with_config_operation(1),
                ]),
            ]))
        }
        ApiKey::DeleteRecords => {
            use kafka_protocol::messages::delete_records_request as delete;
            RequestKind::DeleteRecords(DeleteRecordsRequest::default().with_timeout_ms(30_000).with_topics(vec![
                delete::DeleteRecordsTopic::default().with_name(topic("events")).with_partitions(vec![
                    delete::DeleteRecordsPartition::default().with_partition_index(0).with_offset(40),
                    delete::DeleteRecordsPartition::default().with_partition_index(1).with_offset(-1),
                ]),
            ]))
        }
        ApiKey::OffsetDelete => {
            use kafka_protocol::messages::offset_delete_request as delete;
            RequestKind::OffsetDelete(OffsetDeleteRequest::default().with_group_id(GroupId(text("group"))).with_topics(vec![
                delete::OffsetDeleteRequestTopic::default().with_name(topic("events")).with_partitions(vec![
                    delete::OffsetDeleteRequestPartition::default().with_partition_index(0),
                    delete::OffsetDeleteRequestPartition::default().with_partition_index(1),
                ]),
            ]))
        }
        ApiKey::OffsetForLeaderEpoch => {
            use kafka_protocol::messages::offset_for_leader_epoch_request as epoch;
            RequestKind::OffsetForLeaderEpoch(OffsetForLeaderEpochRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
                epoch::OffsetForLeaderTopic::default().with_topic(topic("events")).with_partitions(vec![
                    epoch::OffsetForLeaderPartition::default().with_partition(0).with_current_leader_epoch(0).with_leader_epoch(0),
                    epoch::OffsetForLeaderPartition::default().with_partition(1).with_current_leader_epoch(-1).with_leader_epoch(0),
                ]),
            ]))
        }
        other => default_request(other),
    }
}

/// A client's batch of `count` small records, `count` > 0.
fn client_batch(count: usize, compression: Compression) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|index| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: index as i64,
            sequence: index as i32,
            timestamp: 1_700_000_000_000 + index as i64,
            key: Some(Bytes::from(format!("key-{index}"))),
            value: Some(Bytes::from(format!("value-{index}-{}", "x".repeat(index * 7)))),
            headers: [(text("trace"), Some(Bytes::from_static(b"abc")))].into_iter().collect(),
            delete_horizon: false,
        })
        .collect();
    let mut buffer = BytesMut::new();
    RecordBatchEncoder::encode(&mut buffer, records.iter(), &RecordEncodeOptions { version: 2, compression }).expect("encode a batch");
    buffer.freeze()
}

/// One record of `size` zeros: a few hundred bytes compressed, more than the fuzz budget inflated.
fn bomb_batch(size: usize, compression: Compression) -> Bytes {
    let record = Record {
        transactional: false,
        control: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: 0,
        timestamp: 1_700_000_000_000,
        key: None,
        value: Some(Bytes::from(vec![0; size])),
        headers: Default::default(),
        delete_horizon: false,
    };
    let mut buffer = BytesMut::new();
    RecordBatchEncoder::encode(&mut buffer, [&record], &RecordEncodeOptions { version: 2, compression }).expect("encode a batch");
    buffer.freeze()
}

/// `flags (1: fix CRCs, 2: force first) | from_offset | byte_limit u16 | batches`.
/// Client records (the payload of an uncompressed batch) for `record_validator`, once per codec:
/// `codec u8 | declared count u8 | split u16 | records`.
fn validator_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    for (codec, compression) in CODECS.iter().enumerate() {
        let name = format!("{compression:?}").to_lowercase();
        for count in [1u8, 5] {
            let mut input = vec![codec as u8, count, 0, 17];
            input.extend_from_slice(&client_batch(count as usize, Compression::None)[61..]);
            seeds.push((format!("{name}-{count}-records"), input));
        }
        // Zero-length records, as in the audit's poison pill.
        seeds.push((format!("{name}-empty-records"), [&[codec as u8, 200, 0, 3][..], &[0u8; 200]].concat()));
    }
    seeds
}

fn batch_seeds() -> Vec<(String, Vec<u8>)> {
    let with_parameters = |flags: u8, from: u8, limit: u16, batches: &[Bytes]| {
        let mut input = vec![flags, from];
        input.extend_from_slice(&limit.to_be_bytes());
        batches.iter().for_each(|batch| input.extend_from_slice(batch));
        input
    };
    let mut seeds = Vec::new();
    for compression in CODECS {
        let name = format!("{compression:?}").to_lowercase();
        seeds.push((format!("{name}-one"), with_parameters(1, 0, u16::MAX, &[client_batch(4, compression)])));
        let chunk = [client_batch(3, compression), client_batch(1, Compression::None), client_batch(5, compression)];
        seeds.push((format!("{name}-chunk-from-3-limited"), with_parameters(3, 3, 200, &chunk)));
        if compression != Compression::None {
            seeds.push((format!("{name}-inflates-past-budget"), with_parameters(1, 0, u16::MAX, &[bomb_batch(128 << 10, compression)])));
        }
    }
    seeds
}
