//! Issue 15, record validation and heavy work off the async workers: a real `floe agent` (etcd and
//! an S3-compatible server on loopback) refuses the audit's poison pill and compression bombs with
//! the codes Apache Kafka 4.x gives, keeps answering other connections while it inflates them,
//! stays alive, and still serves every record acknowledged before the probes after a restart.

use anyhow::{ensure, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use floe_e2e::cluster::{Agent, Infrastructure};
use floe_e2e::wire::{encode_batch, produce_batch, RawConnection};
use floe_e2e::{http_get, kafka, metric_value};
use kafka_protocol::compression::{Compressor, Zstd};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use std::time::{Duration, Instant};

/// Kafka's answer to a batch whose records `LogValidator` cannot read (`InvalidRecordException`).
const INVALID_RECORD: i16 = 87;
/// Floe's answer once a request's budget of decompressed bytes is spent.
const MESSAGE_TOO_LARGE: i16 = 10;

const BYSTANDER_RECORDS: usize = 1_000;
const BOMB_PARTITIONS: i32 = 16;

/// Offsets of the batch header fields the probes rewrite (see `protocol/batch.rs`).
const LENGTH_AT: usize = 8;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const RECORD_COUNT_AT: usize = 57;
const HEADER_BYTES: usize = 61;

fn zstd(data: &[u8]) -> Result<Vec<u8>> {
    let mut out = BytesMut::new();
    <Zstd as Compressor<BytesMut>>::compress(&mut out, |buffer: &mut BytesMut| -> Result<()> {
        buffer.put_slice(data);
        Ok(())
    })?;
    Ok(out.to_vec())
}

/// A batch header taken from a real one-record batch, around `payload` (zstd), declaring `count`
/// records, with a correct length and CRC: only the payload check can tell it is wrong.
fn zstd_batch(payload: &[u8], count: i32) -> Result<Bytes> {
    let template = encode_batch(&[(b"k".to_vec(), b"v".to_vec())], 1_700_000_000_000)?;
    let mut batch = template[..HEADER_BYTES].to_vec();
    batch.extend_from_slice(payload);
    let length = (batch.len() - 12) as i32;
    batch[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&4i16.to_be_bytes());
    batch[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4].copy_from_slice(&(count - 1).to_be_bytes());
    batch[RECORD_COUNT_AT..HEADER_BYTES].copy_from_slice(&count.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(Bytes::from(batch))
}

/// The audit's poison pill: 60,000,000 zero-length records (each a single 0x00 length byte) in
/// a couple of KB of zstd.
fn poison_pill() -> Result<Bytes> {
    zstd_batch(&zstd(&vec![0u8; 60_000_000])?, 60_000_000)
}

/// One well-formed record followed by `tail` bytes of zeros: valid up to its declared count, then
/// a bomb that only an agent that keeps inflating after the last record would expand.
fn trailing_bomb(tail: usize) -> Result<Bytes> {
    let template = encode_batch(&[(b"k".to_vec(), b"v".to_vec())], 1_700_000_000_000)?;
    let mut data = template[HEADER_BYTES..].to_vec();
    data.resize(data.len() + tail, 0);
    zstd_batch(&zstd(&data)?, 1)
}

/// One record whose value is `size` zeros: valid records, but past the 64 MiB per-batch budget.
fn value_bomb(size: usize) -> Result<Bytes> {
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
        value: Some(Bytes::from(vec![0u8; size])),
        headers: Default::default(),
        delete_horizon: false,
    };
    let mut batch = BytesMut::new();
    RecordBatchEncoder::encode(&mut batch, [&record], &RecordEncodeOptions { version: 2, compression: Compression::Zstd })?;
    Ok(batch.freeze())
}

fn produce_request(topic: &str, batches: Vec<(i32, Bytes)>) -> ProduceRequest {
    ProduceRequest::default().with_acks(-1).with_timeout_ms(60_000).with_topic_data(vec![TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
        .with_partition_data(
            batches
                .into_iter()
                .map(|(index, records)| PartitionProduceData::default().with_index(index).with_records(Some(records)))
                .collect(),
        )])
}

/// One partition's answer: index, error code, base offset.
type Answer = (i32, i16, i64);

/// Sends one produce request and returns each partition's answer.
fn produce(connection: &mut RawConnection, topic: &str, batches: Vec<(i32, Bytes)>) -> Result<Vec<Answer>> {
    let correlation = connection.send(ApiKey::Produce, 9, &produce_request(topic, batches))?;
    let response: ProduceResponse = connection.receive(ApiKey::Produce, 9, correlation)?;
    Ok(response.responses[0]
        .partition_responses
        .iter()
        .map(|partition| (partition.index, partition.error_code, partition.base_offset))
        .collect())
}

fn api_versions_round_trip(bootstrap: &str) -> Result<Duration> {
    let started = Instant::now();
    let mut connection = RawConnection::connect(bootstrap)?;
    let correlation = connection.send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())?;
    let response: ApiVersionsResponse = connection.receive(ApiKey::ApiVersions, 3, correlation)?;
    ensure!(response.error_code == 0, "ApiVersions answered {}", response.error_code);
    Ok(started.elapsed())
}

fn refused(agent: &Agent, reason: &str) -> Result<f64> {
    let (_, metrics) = http_get(&agent.http, "/metrics")?;
    Ok(metric_value(&metrics, &format!("floe_produce_refused_batches_total{{reason=\"{reason}\"}}")).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_pills_and_compression_bombs_are_refused_as_kafka_does_and_acknowledged_records_survive() -> Result<()> {
    let infrastructure = Infrastructure::start()?;
    let mut agent = Agent::start(&infrastructure, "hostile", &["--produce-max-decompressed-bytes-per-request", "256MiB"])?;
    kafka::create_topic(&agent.bootstrap, "bystander", 1).await?;
    kafka::create_topic(&agent.bootstrap, "probes", BOMB_PARTITIONS).await?;
    let bootstrap = agent.bootstrap.clone();
    let bystanders: Vec<(Vec<u8>, Vec<u8>)> =
        (0..BYSTANDER_RECORDS).map(|index| (format!("key-{index}").into_bytes(), format!("value-{index}").into_bytes())).collect();
    let agent_for_probes = bootstrap.clone();
    let summary = tokio::task::spawn_blocking(move || -> Result<String> {
        // 1,000 records acknowledged before any probe.
        let mut connection = RawConnection::connect(&agent_for_probes)?;
        for chunk in bystanders.chunks(100) {
            produce_batch(&mut connection, "bystander", 0, chunk)?;
        }

        // The poison pill: refused with INVALID_RECORD, nothing appended.
        let pill = poison_pill()?;
        ensure!(pill.len() < 8 << 10, "the poison pill is {} bytes, expected a few KB", pill.len());
        let answer = produce(&mut connection, "probes", vec![(0, pill.clone())])?;
        ensure!(answer == vec![(0, INVALID_RECORD, -1)], "poison pill answered {answer:?}, expected INVALID_RECORD");

        // One valid record, then 256 MiB of zeros: refused at the first byte after the record.
        let started = Instant::now();
        let answer = produce(&mut connection, "probes", vec![(1, trailing_bomb(256 << 20)?)])?;
        ensure!(answer == vec![(1, INVALID_RECORD, -1)], "trailing bomb answered {answer:?}, expected INVALID_RECORD");
        let trailing_elapsed = started.elapsed();

        // A request with a 96 MiB bomb for each of 16 partitions (1.5 GiB if inflated) on one
        // connection while a second connection keeps asking ApiVersions: the bombs are refused
        // (INVALID_RECORD while the request's budget lasts, MESSAGE_TOO_LARGE after) and the
        // other connection keeps being answered.
        let bomb = value_bomb(96 << 20)?;
        let batches: Vec<(i32, Bytes)> = (0..BOMB_PARTITIONS).map(|index| (index, bomb.clone())).collect();
        let bomb_bootstrap = agent_for_probes.clone();
        let bombing = std::thread::spawn(move || -> Result<(Vec<Answer>, Duration)> {
            let mut connection = RawConnection::connect(&bomb_bootstrap)?;
            let started = Instant::now();
            let answer = produce(&mut connection, "probes", batches)?;
            Ok((answer, started.elapsed()))
        });
        let mut slowest = Duration::ZERO;
        let mut probes = 0;
        while !bombing.is_finished() {
            slowest = slowest.max(api_versions_round_trip(&agent_for_probes)?);
            probes += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        let (answer, bomb_elapsed) = bombing.join().expect("bomb thread")?;
        ensure!(answer.len() == BOMB_PARTITIONS as usize, "the bomb request got {} partition answers", answer.len());
        ensure!(
            answer.iter().all(|(_, code, offset)| (*code == INVALID_RECORD || *code == MESSAGE_TOO_LARGE) && *offset == -1),
            "bombs answered {answer:?}"
        );
        let budget_refusals = answer.iter().filter(|(_, code, _)| *code == MESSAGE_TOO_LARGE).count();
        ensure!(budget_refusals >= BOMB_PARTITIONS as usize - 4, "only {budget_refusals} bombs stopped by the 256 MiB request budget");
        ensure!(slowest < Duration::from_secs(2), "ApiVersions on another connection took {slowest:?} while bombs inflated");

        // Nothing from the probes was appended.
        let mut check = RawConnection::connect(&agent_for_probes)?;
        for partition in 0..BOMB_PARTITIONS {
            let (code, batches) = floe_e2e::wire::fetch_once(&mut check, "probes", partition, 0)?;
            ensure!(code == 0 && batches.is_empty(), "probes/{partition}: fetch answered {code} with {batches:?}");
        }
        Ok(format!(
            "trailing bomb refused in {trailing_elapsed:?}; {BOMB_PARTITIONS} value bombs refused in {bomb_elapsed:?} \
             ({budget_refusals} by the request budget); slowest of {probes} ApiVersions meanwhile: {slowest:?}"
        ))
    })
    .await??;
    eprintln!("{summary}");
    ensure!(refused(&agent, "record_count")? >= 1.0, "the poison pill is not counted under reason=record_count");
    ensure!(refused(&agent, "trailing_bytes")? >= 1.0, "the trailing bomb is not counted under reason=trailing_bytes");
    ensure!(refused(&agent, "request_budget")? >= 1.0, "no batch counted under reason=request_budget");
    api_versions_round_trip(&bootstrap).context("the agent is not alive after the probes")?;

    // Every acknowledged record reads back after a restart, and nothing else is there.
    agent.restart()?;
    let bootstrap = agent.bootstrap.clone();
    let read = tokio::task::spawn_blocking(move || kafka::read_all(&bootstrap, "bystander", 1, Duration::from_secs(60))).await??;
    let records = read.get(&0).map(Vec::as_slice).unwrap_or_default();
    ensure!(records.len() == BYSTANDER_RECORDS, "read {} of {BYSTANDER_RECORDS} acknowledged records after a restart", records.len());
    for (index, record) in records.iter().enumerate() {
        ensure!(
            record.offset == index as i64 && record.value == format!("value-{index}").into_bytes(),
            "record {index} is {:?}",
            record.offset
        );
    }
    let bootstrap = agent.bootstrap.clone();
    let probes = tokio::task::spawn_blocking(move || kafka::total_records(&bootstrap, "probes", BOMB_PARTITIONS)).await??;
    ensure!(probes == 0, "{probes} probe records were stored");
    Ok(())
}
