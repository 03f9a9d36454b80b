//! Done-when 5 of the playground issue: every kind of bad input gets its precise outcome, the
//! agent never panics, and nothing is appended by a refused request.

use anyhow::{ensure, Result};
use bytes::Bytes;
use floe_e2e::wire::{encode_batch, RawConnection};
use floe_e2e::{floe_binary, kafka, Playground};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const CORRUPT_MESSAGE: i16 = 2;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const MESSAGE_TOO_LARGE: i16 = 10;
const UNSUPPORTED_VERSION: i16 = 35;

fn batch(count: usize, value_size: usize) -> Bytes {
    let records: Vec<(Vec<u8>, Vec<u8>)> = (0..count).map(|index| (format!("k{index}").into_bytes(), vec![b'v'; value_size])).collect();
    encode_batch(&records, 1_700_000_000_000).expect("encodable")
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn produce(connection: &mut RawConnection, topic: &str, records: Bytes) -> Result<(i16, i64)> {
    let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![TopicProduceData::default()
        .with_name(topic_name(topic))
        .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(records))])]);
    let correlation = connection.send(ApiKey::Produce, 9, &request)?;
    let response: ProduceResponse = connection.receive(ApiKey::Produce, 9, correlation)?;
    let partition = &response.responses[0].partition_responses[0];
    Ok((partition.error_code, partition.base_offset))
}

fn latest_offset(connection: &mut RawConnection, topic: &str) -> Result<(i16, i64)> {
    offset_for_timestamp(connection, topic, -1)
}

/// ListOffsets for partition 0: -1 is the latest offset, a timestamp >= 0 decodes stored records.
fn offset_for_timestamp(connection: &mut RawConnection, topic: &str, timestamp: i64) -> Result<(i16, i64)> {
    let request = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
        .with_name(topic_name(topic))
        .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(0).with_timestamp(timestamp)])]);
    let correlation = connection.send(ApiKey::ListOffsets, 5, &request)?;
    let response: ListOffsetsResponse = connection.receive(ApiKey::ListOffsets, 5, correlation)?;
    let partition = &response.topics[0].partitions[0];
    Ok((partition.error_code, partition.offset))
}

/// ApiVersions at its newest version (v4, what Kafka 4 clients and Go's sarama send first).
fn still_serves(playground: &Playground) -> Result<()> {
    let mut connection = RawConnection::connect(&playground.bootstrap)?;
    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("floe-e2e"))
        .with_client_software_version(StrBytes::from_static_str("1"));
    let correlation = connection.send(ApiKey::ApiVersions, 4, &request)?;
    let response: ApiVersionsResponse = connection.receive(ApiKey::ApiVersions, 4, correlation)?;
    ensure!(response.error_code == 0, "the agent stopped answering ApiVersions (v4 answered {})", response.error_code);
    Ok(())
}

#[test]
fn a_frame_over_the_size_limit_closes_the_connection_before_its_body_arrives() -> Result<()> {
    let playground = Playground::start(&["--max-request-bytes", "1MiB"])?;
    let mut connection = RawConnection::connect(&playground.bootstrap)?;
    // Only the 4-byte prefix is sent: the agent must close without waiting for (or allocating) 2 MiB.
    connection.send_bytes(&(2 * 1024 * 1024i32).to_be_bytes())?;
    ensure!(connection.is_closed_by_peer(), "the connection stayed open after an oversized size prefix");
    let mut negative = RawConnection::connect(&playground.bootstrap)?;
    negative.send_bytes(&(-5i32).to_be_bytes())?;
    ensure!(negative.is_closed_by_peer(), "the connection stayed open after a negative size prefix");
    still_serves(&playground)
}

#[test]
fn malformed_frames_and_unknown_apis_close_the_connection() -> Result<()> {
    let playground = Playground::start(&[])?;
    // Unknown api key 9999.
    let mut unknown = RawConnection::connect(&playground.bootstrap)?;
    unknown.send_bytes(&[0, 0, 0, 10, 0x27, 0x0f, 0, 0, 0, 0, 0, 1, 0, 0])?;
    ensure!(unknown.is_closed_by_peer(), "an unknown api key did not close the connection");
    // A Metadata v9 header followed by garbage instead of a body.
    let mut garbage = RawConnection::connect(&playground.bootstrap)?;
    garbage.send_bytes(&[0, 0, 0, 14, 0, 3, 0, 9, 0, 0, 0, 1, 0xff, 0xff, 0xde, 0xad, 0xbe, 0xef, 0x99, 0x99])?;
    ensure!(garbage.is_closed_by_peer(), "a garbage body did not close the connection");
    // A frame too short for a request header.
    let mut short = RawConnection::connect(&playground.bootstrap)?;
    short.send_bytes(&[0, 0, 0, 2, 0, 18])?;
    ensure!(short.is_closed_by_peer(), "a 2-byte frame did not close the connection");
    // A huge array count inside an otherwise valid Metadata request.
    let mut huge_array = RawConnection::connect(&playground.bootstrap)?;
    huge_array.send_bytes(&[0, 0, 0, 16, 0, 3, 0, 4, 0, 0, 0, 1, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0, 0])?;
    ensure!(huge_array.is_closed_by_peer(), "an absurd array length did not close the connection");
    still_serves(&playground)
}

#[test]
fn unsupported_versions_get_unsupported_version_from_api_versions_and_a_close_elsewhere() -> Result<()> {
    let playground = Playground::start(&[])?;
    let mut connection = RawConnection::connect(&playground.bootstrap)?;
    let correlation = connection.send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())?;
    // Hand-craft v99: header v2 layout, empty body; the agent must not decode the body.
    let _ = correlation;
    let mut raw = RawConnection::connect(&playground.bootstrap)?;
    raw.send_bytes(&[0, 0, 0, 11, 0, 18, 0, 99, 0, 0, 0, 7, 0, 0, 0])?;
    let response: ApiVersionsResponse = raw.receive(ApiKey::ApiVersions, 0, 7)?;
    ensure!(response.error_code == UNSUPPORTED_VERSION, "error code {}", response.error_code);
    let api_versions = response.api_keys.iter().find(|key| key.api_key == ApiKey::ApiVersions as i16);
    ensure!(
        api_versions.is_some_and(|range| range.min_version == 0 && range.max_version >= 3),
        "ApiVersions range missing: {:?}",
        response.api_keys
    );
    ensure!(response.api_keys.len() >= 19, "only {} APIs advertised", response.api_keys.len());
    // Produce v99: the connection is closed (no guessed body).
    let mut produce = RawConnection::connect(&playground.bootstrap)?;
    produce.send_bytes(&[0, 0, 0, 10, 0, 0, 0, 99, 0, 0, 0, 1, 0, 0])?;
    ensure!(produce.is_closed_by_peer(), "Produce v99 did not close the connection");
    still_serves(&playground)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_a_bad_crc_gets_corrupt_message_and_nothing_is_appended() -> Result<()> {
    let playground = Playground::start(&[])?;
    kafka::create_topic(&playground.bootstrap, "crc", 1).await?;
    let bootstrap = playground.bootstrap.clone();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let mut connection = RawConnection::connect(&bootstrap)?;
        let mut corrupted = batch(3, 10).to_vec();
        let last = corrupted.len() - 1;
        corrupted[last] ^= 0x40;
        ensure!(
            produce(&mut connection, "crc", Bytes::from(corrupted))? == (CORRUPT_MESSAGE, -1),
            "a bad CRC was not refused with CORRUPT_MESSAGE"
        );
        ensure!(latest_offset(&mut connection, "crc")? == (0, 0), "the refused batch moved the high watermark");
        ensure!(produce(&mut connection, "crc", batch(3, 10))? == (0, 0), "a good batch after the bad one did not start at offset 0");
        ensure!(latest_offset(&mut connection, "crc")? == (0, 3), "the good batch did not move the high watermark to 3");
        Ok(())
    })
    .await??;
    still_serves(&playground)
}

#[test]
fn a_batch_over_max_message_bytes_gets_message_too_large() -> Result<()> {
    let playground = Playground::start(&[])?;
    let mut connection = RawConnection::connect(&playground.bootstrap)?;
    let create = CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![CreatableTopic::default()
        .with_name(topic_name("small"))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(vec![CreatableTopicConfig::default()
            .with_name(StrBytes::from_static_str("max.message.bytes"))
            .with_value(Some(StrBytes::from_static_str("1000")))])]);
    let correlation = connection.send(ApiKey::CreateTopics, 5, &create)?;
    let created: CreateTopicsResponse = connection.receive(ApiKey::CreateTopics, 5, correlation)?;
    ensure!(created.topics[0].error_code == 0, "topic creation failed: {:?}", created.topics[0].error_message);
    ensure!(produce(&mut connection, "small", batch(1, 2_000))? == (MESSAGE_TOO_LARGE, -1), "an oversized batch was accepted");
    ensure!(produce(&mut connection, "small", batch(1, 100))? == (0, 0), "a small batch was refused");
    Ok(())
}

#[test]
fn unknown_topics_get_unknown_topic_or_partition_everywhere() -> Result<()> {
    // Auto-creation off: the playground's default would create the topic Metadata asks for.
    let playground = Playground::start(&["--auto-create-topics=false"])?;
    let mut connection = RawConnection::connect(&playground.bootstrap)?;
    ensure!(produce(&mut connection, "nope", batch(1, 10))?.0 == UNKNOWN_TOPIC_OR_PARTITION, "produce to an unknown topic");
    ensure!(latest_offset(&mut connection, "nope")?.0 == UNKNOWN_TOPIC_OR_PARTITION, "list offsets of an unknown topic");
    let metadata = MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic_name("nope")))]));
    let correlation = connection.send(ApiKey::Metadata, 9, &metadata)?;
    let response: MetadataResponse = connection.receive(ApiKey::Metadata, 9, correlation)?;
    ensure!(response.topics[0].error_code == UNKNOWN_TOPIC_OR_PARTITION, "metadata of an unknown topic");
    ensure!(!response.brokers.is_empty(), "metadata listed no brokers");
    let fetch = FetchRequest::default().with_max_wait_ms(100).with_max_bytes(1 << 20).with_topics(vec![FetchTopic::default()
        .with_topic(topic_name("nope"))
        .with_partitions(vec![FetchPartition::default().with_partition(0).with_partition_max_bytes(1 << 20)])]);
    let correlation = connection.send(ApiKey::Fetch, 11, &fetch)?;
    let response: FetchResponse = connection.receive(ApiKey::Fetch, 11, correlation)?;
    ensure!(response.responses[0].partitions[0].error_code == UNKNOWN_TOPIC_OR_PARTITION, "fetch of an unknown topic");
    Ok(())
}

#[test]
fn bad_flag_values_name_the_flag_and_show_an_example() -> Result<()> {
    let cases: &[(&[&str], &str)] = &[
        (&["playground", "--flush-interval", "soon"], "--flush-interval"),
        (&["playground", "--flush-max-bytes", "lots"], "--flush-max-bytes"),
        (&["playground", "--max-request-bytes", "0"], "--max-request-bytes"),
        (&["playground", "--kafka-listen", "localhost"], "--kafka-listen"),
        (&["agent", "--metadata", "zk://x", "--object-store", "memory://"], "--metadata"),
        (&["agent", "--metadata", "embedded:///tmp/x", "--object-store", "gs://bucket"], "--object-store"),
    ];
    for (arguments, flag) in cases {
        let output = std::process::Command::new(floe_binary()?).args(*arguments).output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        ensure!(output.status.code() == Some(2), "{arguments:?} exited with {:?}", output.status);
        ensure!(stderr.contains(flag) && stderr.contains("example"), "{arguments:?} printed {stderr}");
    }
    Ok(())
}

/// Regression: a fetch whose byte budget ends inside a partition must stop there. Returning a
/// later chunk instead made librdkafka 2.0.2 (kcat) skip records it could never go back to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_budget_that_ends_inside_a_partition_never_skips_ahead() -> Result<()> {
    let playground = Playground::start(&[])?;
    kafka::create_topic(&playground.bootstrap, "budget", 2).await?;
    let bootstrap = playground.bootstrap.clone();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let mut connection = RawConnection::connect(&bootstrap)?;
        let produce_to = |connection: &mut RawConnection, partition: i32, records: Bytes| -> Result<i64> {
            let request =
                ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![TopicProduceData::default()
                    .with_name(topic_name("budget"))
                    .with_partition_data(vec![PartitionProduceData::default().with_index(partition).with_records(Some(records))])]);
            let correlation = connection.send(ApiKey::Produce, 9, &request)?;
            let response: ProduceResponse = connection.receive(ApiKey::Produce, 9, correlation)?;
            let partition = &response.responses[0].partition_responses[0];
            ensure!(partition.error_code == 0, "produce failed with {}", partition.error_code);
            Ok(partition.base_offset)
        };
        // Each acknowledged produce is its own flush, so each batch is its own chunk.
        produce_to(&mut connection, 0, batch(1, 5_000))?;
        produce_to(&mut connection, 1, batch(1, 3_000))?;
        produce_to(&mut connection, 1, batch(1, 10))?;
        let fetch = FetchRequest::default().with_max_wait_ms(0).with_max_bytes(6_000).with_topics(vec![FetchTopic::default()
            .with_topic(topic_name("budget"))
            .with_partitions(vec![
                FetchPartition::default().with_partition(0).with_partition_max_bytes(100_000),
                FetchPartition::default().with_partition(1).with_partition_max_bytes(1_000),
            ])]);
        let correlation = connection.send(ApiKey::Fetch, 11, &fetch)?;
        let response: FetchResponse = connection.receive(ApiKey::Fetch, 11, correlation)?;
        let partitions = &response.responses[0].partitions;
        ensure!(partitions[0].records.as_ref().is_some_and(|records| records.len() > 5_000), "partition 0 did not return its batch");
        let second = partitions[1].records.clone().unwrap_or_default();
        if !second.is_empty() {
            let base_offset = i64::from_be_bytes(second[0..8].try_into()?);
            ensure!(base_offset == 0, "partition 1 returned a batch at offset {base_offset} and skipped offset 0");
        }
        Ok(())
    })
    .await??;
    Ok(())
}

/// A valid batch (CRC, counts) that declares 2^31 - 1 records but holds one.
fn batch_declaring_two_billion_records() -> Bytes {
    let mut batch = batch(1, 10).to_vec();
    batch[23..27].copy_from_slice(&(i32::MAX - 1).to_be_bytes());
    batch[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(batch)
}

/// One record of 96 MiB of zeros, zstd-compressed to a few KiB.
fn zstd_bomb() -> Result<Bytes> {
    use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
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
        value: Some(Bytes::from(vec![0u8; 96 << 20])),
        headers: Default::default(),
        delete_horizon: false,
    };
    let mut batch = bytes::BytesMut::new();
    RecordBatchEncoder::encode(&mut batch, [&record], &RecordEncodeOptions { version: 2, compression: Compression::Zstd })?;
    Ok(batch.freeze())
}

/// Regression: a batch declaring 2^31 - 1 records once made a ListOffsets-by-timestamp lookup
/// reserve hundreds of GiB and abort the agent, and a compressed payload inflated without bound.
/// Produce now checks every payload (decompressed under a 64 MiB budget, records counted), so
/// such batches are refused with INVALID_RECORD and never stored; reading stays capped as well
/// (unit tests in `protocol/records.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_that_lie_about_their_count_or_inflate_past_the_budget_are_refused_at_produce() -> Result<()> {
    const INVALID_RECORD: i16 = 87;
    let playground = Playground::start(&[])?;
    kafka::create_topic(&playground.bootstrap, "count-bomb", 1).await?;
    kafka::create_topic(&playground.bootstrap, "zip-bomb", 1).await?;
    let bootstrap = playground.bootstrap.clone();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let mut connection = RawConnection::connect(&bootstrap)?;
        let zstd_bomb = zstd_bomb()?;
        ensure!(zstd_bomb.len() < 64 << 10, "the zstd bomb is {} bytes, expected a few KiB", zstd_bomb.len());
        // Valid headers and CRCs: only the payload check can tell. Nothing may be appended, so no
        // reader ever meets them.
        for (topic, records) in [("count-bomb", batch_declaring_two_billion_records()), ("zip-bomb", zstd_bomb)] {
            let (code, _) = produce(&mut connection, topic, records)?;
            ensure!(code == INVALID_RECORD, "{topic}: produce answered {code}, expected INVALID_RECORD");
            ensure!(latest_offset(&mut connection, topic)? == (0, 0), "{topic}: the latest offset moved");
            let lookup = offset_for_timestamp(&mut connection, topic, 0)?;
            ensure!(lookup.0 == 0, "{topic}: a timestamp lookup on the empty partition answered {lookup:?}");
        }
        Ok(())
    })
    .await??;
    still_serves(&playground)
}
