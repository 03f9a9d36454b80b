//! Issue 15, record validation and heavy work off the async workers: a real `floe agent` (etcd and
//! an S3-compatible server on loopback) refuses the audit's poison pill and compression bombs with
//! the codes Apache Kafka 4.x gives, keeps answering other connections while it inflates them,
//! stays alive, and still serves every record acknowledged before the probes after a restart.

use anyhow::{ensure, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use floe_e2e::cluster::{Agent, Infrastructure};
use floe_e2e::wire::{encode_batch, produce_batch, RawConnection};
use floe_e2e::{http_get, kafka, metric_value};
use kafka_protocol::compression::{Compressor, Gzip, Zstd};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Kafka's answer to a batch whose records `LogValidator` cannot read (`InvalidRecordException`).
const INVALID_RECORD: i16 = 87;
/// Floe's answer once a request's budget of decompressed bytes is spent.
const MESSAGE_TOO_LARGE: i16 = 10;

const BYSTANDER_RECORDS: usize = 1_000;
const BOMB_PARTITIONS: i32 = 16;
/// Connections sending gzip bombs at once while the stall is measured, for how long, and the
/// small produces (each on a fresh connection) that make the bystander's baseline.
const BOMB_CONNECTIONS: usize = 2;
const STALL_SECONDS: u64 = 30;
const BASELINE_PRODUCES: usize = 40;

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

fn gzip_member(data: &[u8]) -> Result<Vec<u8>> {
    let mut out = BytesMut::new();
    <Gzip as Compressor<BytesMut>>::compress(&mut out, |buffer: &mut BytesMut| -> Result<()> {
        buffer.put_slice(data);
        Ok(())
    })?;
    Ok(out.to_vec())
}

/// Kafka's zigzag varint.
fn varint(value: i64, out: &mut Vec<u8>) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

/// One valid record whose value is `mebibytes` MiB of zeros, as concatenated gzip members (which
/// Java's GZIPInputStream reads as one stream): a valid batch past the 64 MiB per-batch budget,
/// about 1 KB per MiB, built without compressing the whole value.
fn gzip_value_bomb(mebibytes: usize) -> Result<Bytes> {
    let value_bytes = mebibytes << 20;
    let mut head = vec![0u8, 0, 0]; // attributes, timestamp delta, offset delta
    varint(-1, &mut head); // null key
    varint(value_bytes as i64, &mut head);
    let mut record = Vec::new();
    varint((head.len() + value_bytes + 1) as i64, &mut record);
    record.extend_from_slice(&head);
    let mut payload = gzip_member(&record)?;
    let zeros = gzip_member(&vec![0u8; 1 << 20])?;
    for _ in 0..mebibytes {
        payload.extend_from_slice(&zeros);
    }
    payload.extend_from_slice(&gzip_member(&[0])?); // no headers
    compressed_batch(&payload, 1, 1)
}

/// A batch header taken from a real one-record batch, around `payload` (zstd), declaring `count`
/// records, with a correct length and CRC: only the payload check can tell it is wrong.
fn zstd_batch(payload: &[u8], count: i32) -> Result<Bytes> {
    compressed_batch(payload, count, 4)
}

/// A batch around `payload` compressed with `codec`, declaring `count` records.
fn compressed_batch(payload: &[u8], count: i32, codec: i16) -> Result<Bytes> {
    let template = encode_batch(&[(b"k".to_vec(), b"v".to_vec())], 1_700_000_000_000)?;
    let mut batch = template[..HEADER_BYTES].to_vec();
    batch.extend_from_slice(payload);
    let length = (batch.len() - 12) as i32;
    batch[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&codec.to_be_bytes());
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

/// One small acknowledged produce on its own connection, timed.
fn small_produce_round_trip(bootstrap: &str, index: usize) -> Result<Duration> {
    let started = Instant::now();
    let mut connection = RawConnection::connect(bootstrap)?;
    produce_batch(&mut connection, "latency", 0, &[(format!("probe-{index}").into_bytes(), b"v".to_vec())])?;
    Ok(started.elapsed())
}

/// The 99th percentile of `samples` (the largest when there are fewer than 100).
fn p99(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[(samples.len() * 99 / 100).min(samples.len() - 1)]
}

/// The agents' registry keys in etcd and the lease each is attached to (`etcdctl -w fields`).
fn registry_leases(etcd_endpoint: &str) -> Result<Vec<(String, i64)>> {
    let output = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([&format!("--endpoints={etcd_endpoint}"), "get", "--prefix", "", "--write-out=fields"])
        .output()?;
    ensure!(output.status.success(), "etcdctl get failed: {}", String::from_utf8_lossy(&output.stderr));
    let (mut leases, mut key) = (Vec::new(), None);
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        if let Some(value) = line.strip_prefix("\"Key\" : ") {
            key = Some(value.trim_matches('"').to_string());
        } else if let Some(value) = line.strip_prefix("\"Lease\" : ") {
            if let Some(key) = key.take().filter(|key| key.contains("/agents/")) {
                leases.push((key, value.trim().parse()?));
            }
        }
    }
    Ok(leases)
}

/// What the registry watcher saw: samples taken, samples without any registry key, and every
/// (key, lease) seen.
type RegistryWatch = (usize, usize, Vec<(String, i64)>);

/// Watches the agent's registry entry every 250 ms until `stop`. A lease that lapsed shows as a
/// missing sample or a second lease (the agent registers again under a new one).
fn watch_registry(etcd_endpoint: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Result<RegistryWatch>> {
    std::thread::spawn(move || {
        let (mut samples, mut missing, mut seen) = (0, 0, Vec::<(String, i64)>::new());
        while !stop.load(Ordering::Relaxed) {
            let leases = registry_leases(&etcd_endpoint)?;
            samples += 1;
            if leases.is_empty() {
                missing += 1;
            }
            for lease in leases {
                if !seen.contains(&lease) {
                    seen.push(lease);
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Ok((samples, missing, seen))
    })
}

fn refused(agent: &Agent, reason: &str) -> Result<f64> {
    let (_, metrics) = http_get(&agent.http, "/metrics")?;
    Ok(metric_value(&metrics, &format!("floe_produce_refused_batches_total{{reason=\"{reason}\"}}")).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_pills_and_compression_bombs_are_refused_as_kafka_does_and_acknowledged_records_survive() -> Result<()> {
    let infrastructure = Infrastructure::start()?;
    let mut agent =
        Agent::start(&infrastructure, "hostile", &["--produce-max-decompressed-bytes-per-request", "256MiB", "--registry-ttl", "3s"])?;
    kafka::create_topic(&agent.bootstrap, "bystander", 1).await?;
    kafka::create_topic(&agent.bootstrap, "latency", 1).await?;
    kafka::create_topic(&agent.bootstrap, "probes", BOMB_PARTITIONS).await?;
    let bootstrap = agent.bootstrap.clone();
    let bystanders: Vec<(Vec<u8>, Vec<u8>)> =
        (0..BYSTANDER_RECORDS).map(|index| (format!("key-{index}").into_bytes(), format!("value-{index}").into_bytes())).collect();
    let agent_for_probes = bootstrap.clone();
    let etcd_endpoint = infrastructure.etcd_endpoint();
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
        let bomb = trailing_bomb(256 << 20)?;
        let started = Instant::now();
        let answer = produce(&mut connection, "probes", vec![(1, bomb)])?;
        ensure!(answer == vec![(1, INVALID_RECORD, -1)], "trailing bomb answered {answer:?}, expected INVALID_RECORD");
        let trailing_elapsed = started.elapsed();

        // A request with a 96 MiB bomb for each of 16 partitions (1.5 GiB if inflated): refused,
        // INVALID_RECORD while the request's 256 MiB budget lasts, MESSAGE_TOO_LARGE after.
        let bomb = value_bomb(96 << 20)?;
        let started = Instant::now();
        let answer = produce(&mut connection, "probes", (0..BOMB_PARTITIONS).map(|index| (index, bomb.clone())).collect())?;
        let zstd_elapsed = started.elapsed();
        ensure!(answer.len() == BOMB_PARTITIONS as usize, "the bomb request got {} partition answers", answer.len());
        ensure!(
            answer.iter().all(|(_, code, offset)| (*code == INVALID_RECORD || *code == MESSAGE_TOO_LARGE) && *offset == -1),
            "bombs answered {answer:?}"
        );
        let budget_refusals = answer.iter().filter(|(_, code, _)| *code == MESSAGE_TOO_LARGE).count();
        ensure!(budget_refusals >= BOMB_PARTITIONS as usize - 4, "only {budget_refusals} bombs stopped by the 256 MiB request budget");

        // The stall probe: for 30 s two connections send gzip bombs (slower to inflate than
        // zstd's) while a third client asks ApiVersions and produces small batches, each on a
        // fresh connection; its produce p99 must stay within twice its baseline, and the agent's
        // registry lease (3 s TTL) must never lapse. Baseline first.
        let mut baseline: Vec<Duration> =
            (0..BASELINE_PRODUCES).map(|index| small_produce_round_trip(&agent_for_probes, index)).collect::<Result<_>>()?;
        let baseline_p99 = p99(&mut baseline);
        let gzip_bomb = gzip_value_bomb(80)?;
        ensure!(gzip_bomb.len() < 256 << 10, "the gzip bomb is {} bytes", gzip_bomb.len());
        let stop = Arc::new(AtomicBool::new(false));
        let registry = watch_registry(etcd_endpoint.clone(), Arc::clone(&stop));
        let bombers: Vec<_> = (0..BOMB_CONNECTIONS)
            .map(|_| {
                let bootstrap = agent_for_probes.clone();
                let stop = Arc::clone(&stop);
                let batches: Vec<(i32, Bytes)> = (0..BOMB_PARTITIONS).map(|index| (index, gzip_bomb.clone())).collect();
                std::thread::spawn(move || -> Result<(Vec<Answer>, usize, Duration)> {
                    let mut connection = RawConnection::connect(&bootstrap)?;
                    let started = Instant::now();
                    let (mut answers, mut requests) = (Vec::new(), 0);
                    while requests == 0 || !stop.load(Ordering::Relaxed) {
                        answers.extend(produce(&mut connection, "probes", batches.clone())?);
                        requests += 1;
                    }
                    Ok((answers, requests, started.elapsed() / requests as u32))
                })
            })
            .collect();
        let (mut slowest_api_versions, mut produces) = (Duration::ZERO, Vec::new());
        let stall_started = Instant::now();
        while stall_started.elapsed() < Duration::from_secs(STALL_SECONDS) {
            slowest_api_versions = slowest_api_versions.max(api_versions_round_trip(&agent_for_probes)?);
            produces.push(small_produce_round_trip(&agent_for_probes, 100 + produces.len())?);
        }
        let probing_done = bombers.iter().filter(|bomber| bomber.is_finished()).count();
        stop.store(true, Ordering::Relaxed);
        let produce_p99 = p99(&mut produces);
        let (registry_samples, registry_missing, registry_seen) = registry.join().expect("registry watcher")?;
        let (mut bomb_requests, mut per_request) = (0, Duration::ZERO);
        for bomber in bombers {
            let (answers, requests, elapsed) = bomber.join().expect("bomb thread")?;
            bomb_requests += requests;
            per_request = per_request.max(elapsed);
            ensure!(
                answers.iter().all(|(_, code, offset)| (*code == INVALID_RECORD || *code == MESSAGE_TOO_LARGE) && *offset == -1),
                "gzip bombs answered {answers:?}"
            );
            // Each request really inflated up to its budget (a bomb refused early would not).
            let over_budget = answers.iter().filter(|(_, code, _)| *code == MESSAGE_TOO_LARGE).count();
            ensure!(over_budget >= requests * (BOMB_PARTITIONS as usize - 4), "only {over_budget} gzip bombs hit the budget");
        }
        let registry_report = format!(
            "registry: {registry_samples} samples over {STALL_SECONDS} s, {registry_missing} without the agent's key, \
             leases seen {registry_seen:?}"
        );
        eprintln!("{registry_report}");
        ensure!(probing_done == 0, "a bomb connection failed while the probes ran");
        ensure!(registry_samples >= (STALL_SECONDS * 2) as usize, "the registry was sampled only {registry_samples} times");
        ensure!(
            registry_missing == 0 && registry_seen.len() == 1,
            "the agent's registry lease lapsed while bombs inflated ({registry_report})"
        );
        ensure!(slowest_api_versions < Duration::from_secs(1), "ApiVersions took {slowest_api_versions:?} while bombs inflated");
        ensure!(
            produce_p99 <= baseline_p99 * 2,
            "small produces had p99 {produce_p99:?} while bombs inflated, baseline p99 {baseline_p99:?}"
        );

        // Nothing from the probes was appended.
        let mut check = RawConnection::connect(&agent_for_probes)?;
        for partition in 0..BOMB_PARTITIONS {
            let (code, batches) = floe_e2e::wire::fetch_once(&mut check, "probes", partition, 0)?;
            ensure!(code == 0 && batches.is_empty(), "probes/{partition}: fetch answered {code} with {batches:?}");
        }
        Ok(format!(
            "trailing bomb refused in {trailing_elapsed:?}; {BOMB_PARTITIONS} zstd value bombs refused in {zstd_elapsed:?} \
             ({budget_refusals} by the request budget); {BOMB_CONNECTIONS} connections sent {bomb_requests} gzip bomb \
             requests in {STALL_SECONDS} s (256 MiB inflated each, at most {per_request:?} per request); meanwhile \
             {} small produces had p99 {produce_p99:?} (baseline p99 {baseline_p99:?} over {BASELINE_PRODUCES}), slowest \
             ApiVersions {slowest_api_versions:?}; {registry_report}",
            produces.len()
        ))
    })
    .await??;
    eprintln!("{summary}");
    ensure!(refused(&agent, "record_count")? >= 1.0, "the poison pill is not counted under reason=record_count");
    ensure!(refused(&agent, "trailing_bytes")? >= 1.0, "the trailing bomb is not counted under reason=trailing_bytes");
    ensure!(refused(&agent, "request_budget")? >= 1.0, "no batch counted under reason=request_budget");
    let inflated_past_batch_budget = refused(&agent, "decompressed_too_large")?;
    ensure!(
        inflated_past_batch_budget >= (1 + BOMB_CONNECTIONS) as f64 * 3.0,
        "{inflated_past_batch_budget} bombs counted under reason=decompressed_too_large"
    );
    api_versions_round_trip(&bootstrap).context("the agent is not alive after the probes")?;

    // Every acknowledged record reads back after a restart (the killed agent's registry entry
    // lapses within --registry-ttl; until then a client may try its old address).
    agent.restart()?;
    let bootstrap = agent.bootstrap.clone();
    let read = tokio::task::spawn_blocking(move || -> Result<_> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match kafka::read_all(&bootstrap, "bystander", 1, Duration::from_secs(30)) {
                Ok(read) => return Ok(read),
                Err(error) if Instant::now() < deadline => eprintln!("reading back after the restart: {error}; again"),
                Err(error) => return Err(error),
            }
        }
    })
    .await??;
    let records = read.get(&0).map(Vec::as_slice).unwrap_or_default();
    ensure!(records.len() == BYSTANDER_RECORDS, "read {} of {BYSTANDER_RECORDS} acknowledged records after a restart", records.len());
    for (index, record) in records.iter().enumerate() {
        ensure!(
            record.offset == index as i64 && record.value == format!("value-{index}").into_bytes(),
            "record {index} is {:?}",
            record.offset
        );
    }
    // And no probe was stored (asked of this agent directly: right after a restart the killed
    // agent may still lead some partitions in Metadata).
    let mut connection = RawConnection::connect(&agent.bootstrap)?;
    for partition in 0..BOMB_PARTITIONS {
        let (code, batches) = floe_e2e::wire::fetch_once(&mut connection, "probes", partition, 0)?;
        ensure!(code == 0 && batches.is_empty(), "after the restart, probes/{partition}: fetch answered {code} with {batches:?}");
    }
    Ok(())
}
