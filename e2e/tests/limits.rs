//! Issue 15 (memory budgets and Kafka's limits): the probes of the hostile-client audit
//! (`../shared/audits/hostile-clients-2026-12.md`) sent to a real `floe agent` on etcd and an
//! S3-compatible server. Each probe asserts Kafka's outcome (the error code, or the limit); after
//! the probes the agent must be alive with RSS below 512 MiB, and the 1,000 records acknowledged
//! before them must read back after a restart.
//!
//! Run: `cargo build --bin floe && cargo test -p floe-e2e --test limits -- --test-threads=1`.

use anyhow::{bail, ensure, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use floe_e2e::cluster::{Agent, AgentOptions, Infrastructure};
use floe_e2e::verifiable::{self, Events, Expected};
use floe_e2e::wire::{encode_batch, RawConnection};
use floe_e2e::{http_get, java_driver, kafka, metric_value};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const KNOWN_TOPIC: &str = "known";
const KNOWN_PARTITIONS: i32 = 4;
const KNOWN_RECORDS: usize = 1_000;
/// The Java client's copy of the known records (the shared format, `floe_e2e::records`; read back
/// by the Java client after the restart and checked against its acknowledgements).
const JAVA_TOPIC: &str = "known-java";
const JAVA_PARTITIONS: i32 = 4;
const RSS_LIMIT_MIB: u64 = 512;

const MESSAGE_TOO_LARGE: i16 = 10;
const OFFSET_METADATA_TOO_LARGE: i16 = 12;
const INVALID_REQUEST: i16 = 42;
const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
const POLICY_VIOLATION: i16 = 44;
const UNKNOWN_TOPIC_ID: i16 = 100;

fn name(value: &str) -> TopicName {
    TopicName(StrBytes::from_string(value.to_string()))
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

/// Record timestamps are now: retention (7 days by default) would trim records stamped long ago
/// at the jobs leader's next pass, and the read back after the restart would find them gone.
fn now_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|elapsed| elapsed.as_millis() as i64).unwrap_or_default()
}

/// (VmRSS, VmSize) of a process in MiB.
fn memory_mib(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |key: &str| -> Result<u64> {
        let line = status.lines().find(|line| line.starts_with(key)).with_context(|| format!("no {key} in /proc/{pid}/status"))?;
        let kib: u64 = line.split_whitespace().nth(1).context("malformed status line")?.parse()?;
        Ok(kib / 1024)
    };
    Ok((field("VmRSS:")?, field("VmSize:")?))
}

/// A frame of `body` as `api_key` v`version` followed by `padding` bytes the request does not use
/// (the agent, like Kafka, ignores trailing bytes).
fn padded_frame<T: Encodable>(api_key: ApiKey, version: i16, correlation_id: i32, body: &T, padding: usize) -> Result<Vec<u8>> {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(text("floe-e2e-limits")));
    let mut buffer = BytesMut::new();
    buffer.put_i32(0);
    header.encode(&mut buffer, api_key.request_header_version(version))?;
    body.encode(&mut buffer, version)?;
    buffer.put_bytes(0, padding);
    let size = (buffer.len() - 4) as i32;
    buffer[0..4].copy_from_slice(&size.to_be_bytes());
    Ok(buffer.to_vec())
}

/// A real agent, with 1,000 records acknowledged before any probe.
struct Harness {
    infrastructure: Infrastructure,
    agent: Agent,
    virtual_cluster: String,
    /// What the Java client reported when it wrote [`JAVA_TOPIC`] (read back after the restart),
    /// when it did.
    java: Option<Events>,
    /// Per partition: the keys acknowledged, in offset order from offset 0.
    acknowledged: Vec<Vec<Vec<u8>>>,
}

impl Harness {
    fn start(virtual_cluster: &str, flags: &[&str]) -> Result<Self> {
        Self::start_with(virtual_cluster, flags, AgentOptions::default(), true)
    }

    /// `java`: also produce [`KNOWN_RECORDS`] to [`JAVA_TOPIC`] with the Java client, which reads
    /// them back after the restart.
    fn start_with(virtual_cluster: &str, flags: &[&str], options: AgentOptions, java: bool) -> Result<Self> {
        let infrastructure = Infrastructure::start()?;
        let agent = Agent::start_with(&infrastructure, virtual_cluster, flags, options)?;
        let mut harness = Self {
            infrastructure,
            agent,
            virtual_cluster: virtual_cluster.to_string(),
            java: None,
            acknowledged: vec![Vec::new(); KNOWN_PARTITIONS as usize],
        };
        harness.create_topic(KNOWN_TOPIC, KNOWN_PARTITIONS)?;
        let mut connection = harness.connect()?;
        for batch in 0..KNOWN_RECORDS / 50 {
            let partition = (batch % KNOWN_PARTITIONS as usize) as i32;
            let records: Vec<(Vec<u8>, Vec<u8>)> =
                (0..50).map(|index| (format!("key-{batch}-{index}").into_bytes(), vec![b'v'; 100])).collect();
            let base = produce(&mut connection, KNOWN_TOPIC, partition, encode_batch(&records, now_millis())?)?;
            let keys = &mut harness.acknowledged[partition as usize];
            ensure!(base == keys.len() as i64, "batch {batch} acknowledged at offset {base}, expected {}", keys.len());
            keys.extend(records.into_iter().map(|(key, _)| key));
        }
        drop(connection);
        if java {
            let count = KNOWN_RECORDS.to_string();
            let partitions = JAVA_PARTITIONS.to_string();
            let produce = java_driver(&[
                "produce-range",
                "--bootstrap",
                &harness.agent.bootstrap,
                "--topic",
                JAVA_TOPIC,
                "--partitions",
                &partitions,
                "--start",
                "0",
                "--count",
                &count,
            ])?;
            let events = verifiable::run(produce, Duration::from_secs(180))?;
            let expected = Expected::new(JAVA_TOPIC, JAVA_PARTITIONS, KNOWN_RECORDS as u64);
            events.check_acknowledged(&expected)?;
            events.check_default_partitioner(&expected)?;
            harness.java = Some(events);
        }
        Ok(harness)
    }

    fn connect(&self) -> Result<RawConnection> {
        RawConnection::connect(&self.agent.bootstrap)
    }

    fn pid(&self) -> Result<u32> {
        self.agent.pid().context("the agent is not running")
    }

    fn metrics(&self) -> Result<String> {
        Ok(http_get(&self.agent.http, "/metrics")?.1)
    }

    fn metric(&self, name_and_labels: &str) -> Result<f64> {
        Ok(metric_value(&self.metrics()?, name_and_labels).unwrap_or(0.0))
    }

    fn create_topic(&self, topic: &str, partitions: i32) -> Result<()> {
        let mut connection = self.connect()?;
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![CreatableTopic::default().with_name(name(topic)).with_num_partitions(partitions).with_replication_factor(1)]);
        let correlation = connection.send(ApiKey::CreateTopics, 5, &request)?;
        let response: CreateTopicsResponse = connection.receive(ApiKey::CreateTopics, 5, correlation)?;
        ensure!(response.topics[0].error_code == 0, "creating {topic} failed: {:?}", response.topics[0].error_message);
        Ok(())
    }

    /// After a probe: the agent is alive, answers, and its RSS is below the limit.
    fn check_alive(&mut self, probe: &str) -> Result<()> {
        ensure!(self.agent.exit_status()?.is_none(), "the agent exited during {probe}");
        let (rss, size) = memory_mib(self.pid()?)?;
        println!("after {probe}: RSS {rss} MiB, VmSize {size} MiB");
        ensure!(rss < RSS_LIMIT_MIB, "RSS {rss} MiB after {probe}, limit {RSS_LIMIT_MIB} MiB");
        let mut connection = self.connect()?;
        let correlation = connection.send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())?;
        let response: ApiVersionsResponse = connection.receive(ApiKey::ApiVersions, 3, correlation)?;
        ensure!(response.error_code == 0, "ApiVersions failed after {probe}");
        Ok(())
    }

    /// Restarts the agent and reads every record acknowledged before the probes back with
    /// librdkafka.
    fn check_records_survive_a_restart(&mut self) -> Result<()> {
        self.kill_and_restart()?;
        if std::env::var("LIMITS_DEBUG").is_ok() {
            use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
            let mut connection = self.connect()?;
            for timestamp in [-2i64, -1] {
                let request = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
                    .with_name(name(KNOWN_TOPIC))
                    .with_partitions(
                        (0..4)
                            .map(|partition| ListOffsetsPartition::default().with_partition_index(partition).with_timestamp(timestamp))
                            .collect(),
                    )]);
                let correlation = connection.send(ApiKey::ListOffsets, 5, &request)?;
                let response: ListOffsetsResponse = connection.receive(ApiKey::ListOffsets, 5, correlation)?;
                println!(
                    "ListOffsets {timestamp}: {:?}",
                    response.topics[0].partitions.iter().map(|p| (p.partition_index, p.error_code, p.offset)).collect::<Vec<_>>()
                );
            }
        }
        let read = kafka::read_all(&self.agent.bootstrap, KNOWN_TOPIC, KNOWN_PARTITIONS, Duration::from_secs(60))?;
        println!(
            "read back per partition: {:?}",
            read.iter()
                .map(|(partition, records)| (*partition, records.len(), records.first().map(|record| record.offset)))
                .collect::<Vec<_>>()
        );
        for partition in 0..self.acknowledged.len() {
            let records: Vec<(i64, Vec<u8>)> = read
                .get(&(partition as i32))
                .map(|records| records.iter().map(|record| (record.offset, record.key.clone())).collect())
                .unwrap_or_default();
            self.check_partition(partition, &records)?;
        }
        if let Some(produced) = &self.java {
            let read = verifiable::run(
                java_driver(&["read", "--bootstrap", &self.agent.bootstrap, "--topic", JAVA_TOPIC])?,
                Duration::from_secs(180),
            )?;
            produced.check_read_by(&read, &Expected::new(JAVA_TOPIC, JAVA_PARTITIONS, KNOWN_RECORDS as u64))?;
        }
        Ok(())
    }

    /// SIGKILL, then a new process once the killed one's registry lease has lapsed: until then
    /// the new agent may advertise the dead one (a pre-existing window of up to --registry-ttl,
    /// in which librdkafka requests to it fail with DestroyBroker), which is not what these tests
    /// are about.
    fn kill_and_restart(&mut self) -> Result<()> {
        self.agent.kill_hard()?;
        let prefix = format!("/floe/vc/{}/agents/", self.virtual_cluster);
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.infrastructure.etcd_key_count(&prefix)? > 0 {
            ensure!(Instant::now() < deadline, "the killed agent's registry key outlived 60 s");
            std::thread::sleep(Duration::from_millis(250));
        }
        self.agent.restart()
    }

    /// The same over one raw connection (librdkafka opens several, more than a test of
    /// `--max-connections` allows).
    fn check_records_survive_a_restart_over_one_connection(&mut self) -> Result<()> {
        self.kill_and_restart()?;
        let mut connection = self.connect()?;
        for (partition, keys) in self.acknowledged.iter().enumerate() {
            let mut records: Vec<(i64, Vec<u8>)> = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while records.len() < keys.len() {
                ensure!(Instant::now() < deadline, "partition {partition}: read {} of {} records", records.len(), keys.len());
                let mut request = fetch_request(&[(KNOWN_TOPIC, partition as i32)], 10 << 20, 100);
                request.topics[0].partitions[0].fetch_offset = records.len() as i64;
                let correlation = connection.send(ApiKey::Fetch, 11, &request)?;
                let response: FetchResponse = connection.receive(ApiKey::Fetch, 11, correlation)?;
                let answer = &response.responses[0].partitions[0];
                ensure!(answer.error_code == 0, "partition {partition}: fetch answered {}", answer.error_code);
                let mut bytes = answer.records.clone().unwrap_or_default();
                for set in kafka_protocol::records::RecordBatchDecoder::decode_all(&mut bytes)? {
                    for record in set.records {
                        if record.offset >= records.len() as i64 {
                            records.push((record.offset, record.key.map(|key| key.to_vec()).unwrap_or_default()));
                        }
                    }
                }
            }
            self.check_partition(partition, &records)?;
        }
        Ok(())
    }

    fn check_partition(&self, partition: usize, records: &[(i64, Vec<u8>)]) -> Result<()> {
        let keys = &self.acknowledged[partition];
        ensure!(records.len() == keys.len(), "partition {partition}: read {} records, acknowledged {}", records.len(), keys.len());
        for (offset, ((read_offset, read_key), key)) in records.iter().zip(keys).enumerate() {
            ensure!(*read_offset == offset as i64 && read_key == key, "partition {partition} offset {offset} differs");
        }
        Ok(())
    }
}

fn produce(connection: &mut RawConnection, topic: &str, partition: i32, records: Bytes) -> Result<i64> {
    let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(30_000).with_topic_data(vec![TopicProduceData::default()
        .with_name(name(topic))
        .with_partition_data(vec![PartitionProduceData::default().with_index(partition).with_records(Some(records))])]);
    let correlation = connection.send(ApiKey::Produce, 9, &request)?;
    let response: ProduceResponse = connection.receive(ApiKey::Produce, 9, correlation)?;
    let answer = &response.responses[0].partition_responses[0];
    ensure!(answer.error_code == 0, "produce to {topic}/{partition} failed with {}", answer.error_code);
    Ok(answer.base_offset)
}

fn fetch_request(partitions: &[(&str, i32)], max_bytes: i32, max_wait_ms: i32) -> FetchRequest {
    let topics = partitions
        .iter()
        .map(|(topic, partition)| {
            FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![FetchPartition::default().with_partition(*partition).with_partition_max_bytes(i32::MAX)])
        })
        .collect();
    FetchRequest::default().with_max_wait_ms(max_wait_ms).with_min_bytes(1).with_max_bytes(max_bytes).with_topics(topics)
}

/// Record bytes per partition of a Fetch answer, in answer order.
fn fetched(response: &FetchResponse) -> Vec<(String, i32, usize)> {
    response
        .responses
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(move |partition| {
                (topic.topic.0.to_string(), partition.partition_index, partition.records.as_ref().map_or(0, Bytes::len))
            })
        })
        .collect()
}

/// 500 sockets each declare a 100 MiB request and send 10 bytes of it. The agent used to reserve
/// the declared size at once (+50 GiB of address space; aborted after 84 sockets under an 8 GiB
/// address-space limit); now each holds one 64 KiB step.
fn probe_frames_declaring_100_mib_that_never_arrive(harness: &mut Harness) -> Result<()> {
    const SOCKETS: usize = 500;
    let step = 65536.0 * SOCKETS as f64;
    let (_, size_before) = memory_mib(harness.pid()?)?;
    let mut sockets = Vec::new();
    for _ in 0..SOCKETS {
        let mut socket = TcpStream::connect(&harness.agent.bootstrap)?;
        socket.write_all(&(100i32 << 20).to_be_bytes())?;
        socket.write_all(&[0, 3, 0, 1, 0, 0, 0, 1, 0, 0])?;
        sockets.push(socket);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let held = loop {
        let held = harness.metric("floe_request_memory_bytes")?;
        if held >= step || Instant::now() > deadline {
            break held;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (rss, size_after) = memory_mib(harness.pid()?)?;
    println!("{SOCKETS} frames declaring 100 MiB: request memory {held} bytes, RSS {rss} MiB, VmSize {size_before} -> {size_after} MiB");
    ensure!(held <= step, "the frames hold {held} bytes, expected one 64 KiB step each");
    ensure!(size_after < size_before + 2048, "VmSize grew from {size_before} to {size_after} MiB");
    harness.check_alive("500 frames declaring 100 MiB")?;
    drop(sockets);
    let deadline = Instant::now() + Duration::from_secs(20);
    while harness.metric("floe_request_memory_bytes")? > 0.0 {
        ensure!(Instant::now() < deadline, "closed connections kept their request memory");
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// A 158-byte Fetch naming one partition 8 times returned 488 MiB; Kafka keys a fetch by
/// partition, so the answer holds that partition once. A client asking for 2 GiB gets at most
/// `--fetch-max-bytes` (plus the first batch whole, KIP-74).
fn probe_fetch_amplification(harness: &mut Harness, fetch_max_bytes: usize) -> Result<()> {
    harness.create_topic("big", 1)?;
    let mut connection = harness.connect()?;
    let batch_records: Vec<(Vec<u8>, Vec<u8>)> = (0..10).map(|index| (format!("k{index}").into_bytes(), vec![b'x'; 1_000])).collect();
    let batch = encode_batch(&batch_records, now_millis())?;
    let one_batch = batch.len();
    for _ in 0..20 {
        produce(&mut connection, "big", 0, batch.clone())?;
    }
    let once = fetch_request(&[("big", 0)], i32::MAX, 0);
    let correlation = connection.send(ApiKey::Fetch, 11, &once)?;
    let single: FetchResponse = connection.receive(ApiKey::Fetch, 11, correlation)?;
    let single = fetched(&single);
    let eight = fetch_request(&[("big", 0); 8], i32::MAX, 0);
    let correlation = connection.send(ApiKey::Fetch, 11, &eight)?;
    let repeated: FetchResponse = connection.receive(ApiKey::Fetch, 11, correlation)?;
    let repeated = fetched(&repeated);
    println!("fetch naming one partition 8 times: {repeated:?}; once: {single:?}");
    ensure!(repeated.len() == 1, "the answer lists {} partitions, expected the one requested", repeated.len());
    ensure!(repeated == single, "the answer differs from a fetch naming the partition once");
    let bytes = single[0].2;
    ensure!(bytes > 0, "the capped fetch returned nothing");
    ensure!(bytes <= fetch_max_bytes + one_batch, "a fetch asking for 2 GiB got {bytes} bytes, over --fetch-max-bytes {fetch_max_bytes}");
    ensure!(harness.metric("floe_requests_refused_total{limit=\"fetch_duplicate_partitions\"}")? >= 7.0, "duplicates not counted");
    ensure!(harness.metric("floe_requests_refused_total{limit=\"fetch_max_bytes\"}")? >= 1.0, "the fetch cap was not counted");
    harness.check_alive("fetch naming one partition 8 times")
}

/// Kafka answers one request at a time per connection: four pipelined 1-second long polls on an
/// empty partition take about four seconds, and come back in order.
fn probe_pipelined_long_polls_are_served_one_at_a_time(harness: &mut Harness) -> Result<()> {
    harness.create_topic("empty", 1)?;
    let mut connection = harness.connect()?;
    let started = Instant::now();
    let correlations: Vec<i32> =
        (0..4).map(|_| connection.send(ApiKey::Fetch, 11, &fetch_request(&[("empty", 0)], 1 << 20, 1_000))).collect::<Result<_>>()?;
    for correlation in correlations {
        let _: FetchResponse = connection.receive(ApiKey::Fetch, 11, correlation)?;
    }
    let elapsed = started.elapsed();
    println!("4 pipelined 1 s long polls answered after {elapsed:?}");
    ensure!(elapsed >= Duration::from_millis(3_500), "4 pipelined long polls took {elapsed:?}: they ran concurrently");
    harness.check_alive("pipelined long polls")
}

/// Produce still pipelines (an acknowledgement waits for a flush): eight pipelined produce
/// requests share one flush instead of taking eight flush intervals, and are answered in order.
fn probe_pipelined_produces_share_a_flush(harness: &mut Harness) -> Result<()> {
    harness.create_topic("pipelined", 1)?;
    let mut connection = harness.connect()?;
    let records: Vec<(Vec<u8>, Vec<u8>)> = (0..10).map(|index| (format!("p{index}").into_bytes(), vec![b'p'; 100])).collect();
    let batch = encode_batch(&records, now_millis())?;
    let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(30_000).with_topic_data(vec![TopicProduceData::default()
        .with_name(name("pipelined"))
        .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(batch))])]);
    let started = Instant::now();
    let correlations: Vec<i32> = (0..8).map(|_| connection.send(ApiKey::Produce, 9, &request)).collect::<Result<_>>()?;
    for (index, correlation) in correlations.into_iter().enumerate() {
        let response: ProduceResponse = connection.receive(ApiKey::Produce, 9, correlation)?;
        let answer = &response.responses[0].partition_responses[0];
        ensure!(answer.error_code == 0 && answer.base_offset == 10 * index as i64, "produce {index} answered {answer:?}");
    }
    let elapsed = started.elapsed();
    println!("8 pipelined produces acknowledged after {elapsed:?} (flush interval 250 ms)");
    ensure!(elapsed < Duration::from_millis(1_500), "8 pipelined produces took {elapsed:?}: they waited for one flush each");
    harness.check_alive("pipelined produces")
}

/// Samples the agent's RSS every 50 ms until the returned flag is set; the thread returns the peak.
fn sample_peak_rss(pid: u32) -> (std::sync::Arc<std::sync::atomic::AtomicBool>, std::thread::JoinHandle<u64>) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&stop);
    let sampler = std::thread::spawn(move || {
        let mut peak = 0;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok((rss, _)) = memory_mib(pid) {
                peak = peak.max(rss);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        peak
    });
    (stop, sampler)
}

/// Twelve pipelined Fetch long polls, each frame padded to 60 MiB, pinned 600 MiB for the poll
/// (128 requests in flight per connection, topic names sliced from the frames). Now the
/// connection handles one at a time and reads at most one frame ahead.
fn probe_pipelined_fetches_padded_to_60_mib(harness: &mut Harness) -> Result<()> {
    let pid = harness.pid()?;
    let (rss_before, _) = memory_mib(pid)?;
    let (stop, sampler) = sample_peak_rss(pid);
    let mut connection = harness.connect()?;
    let request = fetch_request(&[("empty", 0)], 1 << 20, 300);
    let writer = {
        let frames: Vec<Vec<u8>> =
            (0..12).map(|index| padded_frame(ApiKey::Fetch, 11, 100 + index, &request, 60 << 20)).collect::<Result<_>>()?;
        let mut raw = connection.try_clone_stream()?;
        std::thread::spawn(move || -> std::io::Result<()> {
            for frame in frames {
                raw.write_all(&frame)?;
            }
            Ok(())
        })
    };
    for index in 0..12 {
        let _: FetchResponse = connection.receive(ApiKey::Fetch, 11, 100 + index)?;
    }
    writer.join().map_err(|_| anyhow::anyhow!("the writer thread panicked"))??;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().map_err(|_| anyhow::anyhow!("the sampler thread panicked"))?;
    println!("12 pipelined fetches padded to 60 MiB: RSS {rss_before} MiB before, peak {peak} MiB");
    ensure!(peak < rss_before + 300, "the pipelined padded fetches raised RSS from {rss_before} to {peak} MiB");
    harness.check_alive("12 pipelined fetches padded to 60 MiB")
}

/// A request that waits (a Fetch long poll, a JoinGroup waiting for the rebalance) gives its
/// frame back before waiting: the request memory budget does not count a 60 MiB padded frame
/// while the request waits, so a few such clients can not stop every connection's reads.
fn probe_waiting_requests_release_their_frames(harness: &mut Harness) -> Result<()> {
    let held_while = |harness: &Harness| -> Result<f64> {
        std::thread::sleep(Duration::from_millis(1_000));
        harness.metric("floe_request_memory_bytes")
    };
    let mut polling = harness.connect()?;
    polling.send_bytes(&padded_frame(ApiKey::Fetch, 11, 5, &fetch_request(&[("empty", 0)], 1 << 20, 3_000), 60 << 20)?)?;
    let during_poll = held_while(harness)?;
    let _: FetchResponse = polling.receive(ApiKey::Fetch, 11, 5)?;
    let join = |member_id: &str| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(text("waiting")))
            .with_session_timeout_ms(30_000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(text(member_id))
            .with_protocol_type(text("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default().with_name(text("range")).with_metadata(Bytes::from_static(b"m"))])
    };
    let mut first = harness.connect()?;
    let correlation = first.send(ApiKey::JoinGroup, 3, &join(""))?;
    let leader: JoinGroupResponse = first.receive(ApiKey::JoinGroup, 3, correlation)?;
    ensure!(leader.error_code == 0, "the first member answered {}", leader.error_code);
    // A second member's padded join starts a rebalance and waits until the first rejoins.
    let mut second = harness.connect()?;
    second.send_bytes(&padded_frame(ApiKey::JoinGroup, 3, 9, &join(""), 60 << 20)?)?;
    let during_join = held_while(harness)?;
    let correlation = first.send(ApiKey::JoinGroup, 3, &join(&leader.member_id))?;
    let rejoined: JoinGroupResponse = first.receive(ApiKey::JoinGroup, 3, correlation)?;
    let joined: JoinGroupResponse = second.receive(ApiKey::JoinGroup, 3, 9)?;
    ensure!(rejoined.error_code == 0 && joined.error_code == 0, "the rebalance answered {} and {}", rejoined.error_code, joined.error_code);
    println!("request memory held while a padded fetch long-polls: {during_poll} bytes; while a padded join waits: {during_join} bytes");
    ensure!(during_poll < (1 << 20) as f64, "a long-polling fetch kept {during_poll} bytes of its frame");
    ensure!(during_join < (1 << 20) as f64, "a waiting JoinGroup kept {during_join} bytes of its frame");
    harness.check_alive("waiting requests padded to 60 MiB")
}

/// OffsetCommit metadata of 100 KiB went into the journal for good; Kafka refuses more than
/// offset.metadata.max.bytes (4096) with OFFSET_METADATA_TOO_LARGE for that partition.
fn probe_offset_commit_metadata(harness: &mut Harness) -> Result<()> {
    let mut connection = harness.connect()?;
    let commit = |connection: &mut RawConnection, metadata: String| -> Result<i16> {
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(text("probe-group")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default().with_name(name(KNOWN_TOPIC)).with_partitions(vec![
                OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(7)
                    .with_committed_metadata(Some(StrBytes::from_string(metadata))),
            ])]);
        let correlation = connection.send(ApiKey::OffsetCommit, 8, &request)?;
        let response: OffsetCommitResponse = connection.receive(ApiKey::OffsetCommit, 8, correlation)?;
        Ok(response.topics[0].partitions[0].error_code)
    };
    let refused = commit(&mut connection, "m".repeat(100 << 10))?;
    ensure!(refused == OFFSET_METADATA_TOO_LARGE, "100 KiB of metadata answered {refused}, expected OFFSET_METADATA_TOO_LARGE");
    let accepted = commit(&mut connection, "m".repeat(4096))?;
    ensure!(accepted == 0, "4096 bytes of metadata answered {accepted}");
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(text("probe-group")))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default().with_name(name(KNOWN_TOPIC)).with_partition_indexes(vec![0])]));
    let correlation = connection.send(ApiKey::OffsetFetch, 7, &request)?;
    let response: OffsetFetchResponse = connection.receive(ApiKey::OffsetFetch, 7, correlation)?;
    let partition = &response.topics[0].partitions[0];
    ensure!(partition.committed_offset == 7, "committed offset {}", partition.committed_offset);
    ensure!(partition.metadata.as_ref().map(|metadata| metadata.len()) == Some(4096), "the accepted metadata did not round-trip");
    ensure!(harness.metric("floe_requests_refused_total{limit=\"offset_metadata_max_bytes\"}")? >= 1.0, "the refusal was not counted");
    harness.check_alive("OffsetCommit with 100 KiB metadata")
}

/// Metadata v12 naming 150,000 random topic ids held the metadata lock for 15.6 s (a scan per id).
fn probe_metadata_with_150_000_topic_ids(harness: &mut Harness) -> Result<()> {
    let mut connection = harness.connect()?;
    let topics: Vec<MetadataRequestTopic> =
        (0..150_000).map(|_| MetadataRequestTopic::default().with_name(None).with_topic_id(uuid::Uuid::new_v4())).collect();
    let request = MetadataRequest::default().with_topics(Some(topics));
    let started = Instant::now();
    let correlation = connection.send(ApiKey::Metadata, 12, &request)?;
    let response: MetadataResponse = connection.receive(ApiKey::Metadata, 12, correlation)?;
    let elapsed = started.elapsed();
    println!("Metadata v12 with 150,000 topic ids answered in {elapsed:?}");
    ensure!(response.topics.len() == 150_000, "{} topics answered", response.topics.len());
    ensure!(response.topics.iter().all(|topic| topic.error_code == UNKNOWN_TOPIC_ID), "an unknown id was not UNKNOWN_TOPIC_ID");
    ensure!(elapsed < Duration::from_secs(10), "150,000 topic ids took {elapsed:?}");
    harness.check_alive("Metadata v12 with 150,000 topic ids")
}

/// Eight JoinGroups with 1-byte metadata and 60 MiB of trailing bytes kept 420 MiB for the
/// members' sessions: the metadata was a slice of the frame. Copied out, the frames go.
fn probe_join_groups_padded_to_60_mib(harness: &mut Harness) -> Result<()> {
    let (rss_before, _) = memory_mib(harness.pid()?)?;
    for group in 0..8 {
        let mut connection = harness.connect()?;
        let request = JoinGroupRequest::default()
            .with_group_id(GroupId(text(&format!("padded-{group}"))))
            .with_session_timeout_ms(60_000)
            .with_rebalance_timeout_ms(60_000)
            .with_member_id(text(""))
            .with_protocol_type(text("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default().with_name(text("range")).with_metadata(Bytes::from_static(b"m"))]);
        connection.send_bytes(&padded_frame(ApiKey::JoinGroup, 3, 77, &request, 60 << 20)?)?;
        let response: JoinGroupResponse = connection.receive(ApiKey::JoinGroup, 3, 77)?;
        ensure!(response.error_code == 0, "padded JoinGroup {group} answered {}", response.error_code);
    }
    let (rss_after, _) = memory_mib(harness.pid()?)?;
    println!("8 JoinGroups padded to 60 MiB: RSS {rss_before} -> {rss_after} MiB while the members live");
    ensure!(rss_after < rss_before + 150, "the members' 1-byte metadata kept {} MiB", rss_after.saturating_sub(rss_before));
    harness.check_alive("8 JoinGroups padded to 60 MiB")
}

/// A JoinGroup carrying 50 MiB of member metadata was accepted and held for the member's session
/// (and copied into the leader's answer at every rebalance). Kafka fails the group's SyncGroup
/// once its record passes message.max.bytes (1 MiB); Floe refuses the join itself with
/// MESSAGE_TOO_LARGE and keeps nothing. Metadata at the limit still joins, and a leader's
/// assignment above it gets MESSAGE_TOO_LARGE from SyncGroup.
fn probe_join_group_with_50_mib_of_metadata(harness: &mut Harness) -> Result<()> {
    let join = |group: &str, metadata: Bytes| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(text(group)))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(text(""))
            .with_protocol_type(text("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default().with_name(text("range")).with_metadata(metadata)])
    };
    let (rss_before, _) = memory_mib(harness.pid()?)?;
    let mut connection = harness.connect()?;
    for attempt in 0..4 {
        let correlation = connection.send(ApiKey::JoinGroup, 3, &join("fat-metadata", Bytes::from(vec![b'm'; 50 << 20])))?;
        let refused: JoinGroupResponse = connection.receive(ApiKey::JoinGroup, 3, correlation)?;
        ensure!(
            refused.error_code == MESSAGE_TOO_LARGE,
            "JoinGroup {attempt} with 50 MiB of metadata answered {}, expected MESSAGE_TOO_LARGE",
            refused.error_code
        );
    }
    let (rss_after, _) = memory_mib(harness.pid()?)?;
    println!("4 JoinGroups with 50 MiB of metadata refused: RSS {rss_before} -> {rss_after} MiB");
    ensure!(rss_after < rss_before + 100, "refused joins kept {} MiB", rss_after.saturating_sub(rss_before));
    let correlation = connection.send(ApiKey::JoinGroup, 3, &join("fat-metadata", Bytes::from(vec![b'm'; 1 << 20])))?;
    let joined: JoinGroupResponse = connection.receive(ApiKey::JoinGroup, 3, correlation)?;
    ensure!(joined.error_code == 0, "a JoinGroup with 1 MiB of metadata answered {}", joined.error_code);
    ensure!(joined.members.len() == 1 && joined.members[0].metadata.len() == 1 << 20, "the leader did not get the 1 MiB metadata");
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(text("fat-metadata")))
        .with_generation_id(joined.generation_id)
        .with_member_id(joined.member_id.clone())
        .with_assignments(vec![kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment::default()
            .with_member_id(joined.member_id.clone())
            .with_assignment(Bytes::from(vec![b'a'; 2 << 20]))]);
    let correlation = connection.send(ApiKey::SyncGroup, 3, &sync)?;
    let synced: SyncGroupResponse = connection.receive(ApiKey::SyncGroup, 3, correlation)?;
    ensure!(synced.error_code == MESSAGE_TOO_LARGE, "a 2 MiB assignment answered {}, expected MESSAGE_TOO_LARGE", synced.error_code);
    let leave = LeaveGroupRequest::default().with_group_id(GroupId(text("fat-metadata"))).with_member_id(joined.member_id);
    let correlation = connection.send(ApiKey::LeaveGroup, 2, &leave)?;
    let _: LeaveGroupResponse = connection.receive(ApiKey::LeaveGroup, 2, correlation)?;
    ensure!(
        harness.metric("floe_requests_refused_total{limit=\"group_max_member_metadata_bytes\"}")? >= 5.0,
        "the refusals were not counted"
    );
    harness.check_alive("JoinGroups with 50 MiB of metadata")
}

/// Eight pipelined Metadata requests for every topic, answers unread: the agent built and held all
/// eight 25 MiB answers (+425 MiB). Kafka reads the next request of a connection only once the
/// previous answer is sent; so does Floe for every request but Produce, and an answer waiting for
/// a client that does not read holds the connection's later requests unread. Of 64 pipelined
/// requests, at most what the two socket buffers hold (plus the one being written) is handled
/// until the client reads.
fn probe_unread_metadata_answers_hold_the_connection(harness: &mut Harness) -> Result<()> {
    const TOPICS: i32 = 20;
    const PIPELINED: usize = 64;
    let mut connection = harness.connect()?;
    let topics = (0..TOPICS)
        .map(|index| {
            CreatableTopic::default().with_name(name(&format!("many-{index}"))).with_num_partitions(2_500).with_replication_factor(-1)
        })
        .collect();
    let request = CreateTopicsRequest::default().with_timeout_ms(60_000).with_topics(topics);
    let correlation = connection.send(ApiKey::CreateTopics, 5, &request)?;
    let created: CreateTopicsResponse = connection.receive(ApiKey::CreateTopics, 5, correlation)?;
    ensure!(created.topics.iter().all(|topic| topic.error_code == 0), "creating 50,000 partitions failed: {:?}", created.topics[0]);
    let all_topics = MetadataRequest::default().with_topics(None);
    let correlation = connection.send(ApiKey::Metadata, 9, &all_topics)?;
    let one: MetadataResponse = connection.receive(ApiKey::Metadata, 9, correlation)?;
    let answer_bytes = one.compute_size(9)?;
    let buffer_max = |path: &str| -> Result<usize> {
        let text = std::fs::read_to_string(path)?;
        text.split_whitespace().last().and_then(|max| max.parse().ok()).with_context(|| format!("{path}: {text}"))
    };
    let buffers = buffer_max("/proc/sys/net/ipv4/tcp_wmem")? + buffer_max("/proc/sys/net/ipv4/tcp_rmem")?;
    let bound = buffers.div_ceil(answer_bytes) + 2;
    let handled_metric = "floe_requests_total{api=\"metadata\",outcome=\"ok\"}";
    let (handled_before, (rss_before, _)) = (harness.metric(handled_metric)?, memory_mib(harness.pid()?)?);
    let (stop, sampler) = sample_peak_rss(harness.pid()?);
    let correlations: Vec<i32> = (0..PIPELINED).map(|_| connection.send(ApiKey::Metadata, 9, &all_topics)).collect::<Result<_>>()?;
    std::thread::sleep(Duration::from_secs(3));
    let handled_unread = (harness.metric(handled_metric)? - handled_before) as usize;
    for correlation in correlations {
        let answer: MetadataResponse = connection.receive(ApiKey::Metadata, 9, correlation)?;
        ensure!(answer.topics.len() == one.topics.len(), "a pipelined Metadata answer lists {} topics", answer.topics.len());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().map_err(|_| anyhow::anyhow!("the sampler thread panicked"))?;
    println!(
        "{PIPELINED} pipelined Metadata requests ({answer_bytes} bytes each) unread for 3 s: {handled_unread} handled \
         (socket buffers hold {buffers} bytes: bound {bound}); RSS {rss_before} MiB, peak {peak} MiB"
    );
    ensure!(handled_unread >= 1, "no Metadata request was handled while the answers were unread");
    ensure!(
        handled_unread <= bound,
        "{handled_unread} of {PIPELINED} pipelined Metadata requests were handled with their answers unread (bound {bound})"
    );
    harness.check_alive("64 pipelined Metadata requests, answers unread")
}

/// 300 JoinGroups without protocols and with 32 KB group ids each left a group behind for good
/// (ListGroups grew to 92 MiB); refused, they now leave nothing.
fn probe_join_groups_without_protocols(harness: &mut Harness) -> Result<()> {
    let mut connection = harness.connect()?;
    for group in 0..300 {
        let request = JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(format!("{group:05}{}", "g".repeat(32_000)))))
            .with_session_timeout_ms(30_000)
            .with_rebalance_timeout_ms(30_000)
            .with_member_id(text(""))
            .with_protocol_type(text("consumer"));
        let correlation = connection.send(ApiKey::JoinGroup, 3, &request)?;
        let response: JoinGroupResponse = connection.receive(ApiKey::JoinGroup, 3, correlation)?;
        ensure!(response.error_code == INCONSISTENT_GROUP_PROTOCOL, "an empty protocol list answered {}", response.error_code);
    }
    let correlation = connection.send(ApiKey::ListGroups, 4, &ListGroupsRequest::default())?;
    let listed: ListGroupsResponse = connection.receive(ApiKey::ListGroups, 4, correlation)?;
    let left = listed.groups.iter().filter(|group| group.group_id.0.len() > 30_000).count();
    ensure!(left == 0, "{left} refused groups are still listed");
    harness.check_alive("300 JoinGroups without protocols")
}

/// One 1.2 KB CreateTopics made 1,000,000 partitions; past the per-request limit every topic gets
/// POLICY_VIOLATION with a message, and nothing is created.
fn probe_create_topics_with_a_million_partitions(harness: &mut Harness) -> Result<()> {
    let mut connection = harness.connect()?;
    let topics =
        (0..100).map(|index| CreatableTopic::default().with_name(name(&format!("wide-{index}"))).with_num_partitions(10_000)).collect();
    let request = CreateTopicsRequest::default().with_timeout_ms(30_000).with_topics(topics);
    let correlation = connection.send(ApiKey::CreateTopics, 5, &request)?;
    let response: CreateTopicsResponse = connection.receive(ApiKey::CreateTopics, 5, correlation)?;
    ensure!(response.topics.len() == 100, "{} results for 100 topics", response.topics.len());
    for topic in &response.topics {
        ensure!(topic.error_code == POLICY_VIOLATION, "{} answered {}", topic.name.0, topic.error_code);
        let message = topic.error_message.as_ref().map(|message| message.to_string()).unwrap_or_default();
        ensure!(message.contains("--max-partitions-per-request"), "the message does not name the limit: {message}");
    }
    let metadata = MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(name("wide-0")))]));
    let correlation = connection.send(ApiKey::Metadata, 9, &metadata)?;
    let described: MetadataResponse = connection.receive(ApiKey::Metadata, 9, correlation)?;
    ensure!(described.topics[0].error_code != 0, "a refused topic exists");
    ensure!(harness.metric("floe_requests_refused_total{limit=\"max_partitions_per_request\"}")? >= 1.0, "the refusal was not counted");
    harness.check_alive("CreateTopics with 1,000,000 partitions")
}

/// A 99 MiB CreateTopics of 6.5 M topics with empty names was answered topic by topic (211 MiB in
/// 29 s, +2.1 GiB). Kafka answers a name the request carries more than once with one
/// INVALID_REQUEST "Duplicate topic name." row and acts on none of its entries: one row here.
fn probe_create_topics_with_6_5_million_empty_names(harness: &mut Harness) -> Result<()> {
    // v2 topic entry: name (int16 length 0), num_partitions, replication_factor, assignments (0),
    // configs (0): 16 bytes.
    const ENTRY: usize = 16;
    let topics = (99 << 20) / ENTRY;
    let pid = harness.pid()?;
    let (stop, sampler) = sample_peak_rss(pid);
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(ApiKey::CreateTopics as i16)
        .with_request_api_version(2)
        .with_correlation_id(3)
        .encode(&mut frame, ApiKey::CreateTopics.request_header_version(2))?;
    frame.put_i32(topics as i32);
    for _ in 0..topics {
        frame.put_i16(0);
        frame.put_i32(1);
        frame.put_i16(1);
        frame.put_i32(0);
        frame.put_i32(0);
    }
    frame.put_i32(30_000);
    frame.put_u8(0);
    let size = (frame.len() - 4) as i32;
    frame[0..4].copy_from_slice(&size.to_be_bytes());
    let mut connection = harness.connect()?;
    // Decoding 6.5 M entries takes seconds in a debug build.
    connection.try_clone_stream()?.set_read_timeout(Some(Duration::from_secs(120)))?;
    let started = Instant::now();
    connection.send_bytes(&frame)?;
    drop(frame);
    let response: CreateTopicsResponse = connection.receive(ApiKey::CreateTopics, 2, 3)?;
    let elapsed = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().map_err(|_| anyhow::anyhow!("the sampler thread panicked"))?;
    println!("99 MiB CreateTopics with {topics} empty names: {} rows in {elapsed:?}, peak RSS {peak} MiB", response.topics.len());
    ensure!(response.topics.len() == 1, "{} rows for one repeated name", response.topics.len());
    let row = &response.topics[0];
    ensure!(
        row.name.0.is_empty() && row.error_code == INVALID_REQUEST,
        "the repeated empty name answered {} for {:?}",
        row.error_code,
        row.name.0
    );
    harness.check_alive("CreateTopics with 6.5 M empty names")
}

/// A 99 MiB CreateTopics frame declaring 2^31 - 1 topics made the decoder ask for 11.7 GB at once
/// and abort the process; now the decoder fails on the missing bytes and only the connection
/// closes. The topics it did decode (6.5 M zero-filled ones, 112 bytes each in memory) still cost
/// their memory while the request decodes, as Java objects do in Kafka: the peak is printed.
fn probe_create_topics_declaring_two_billion_topics(harness: &mut Harness) -> Result<()> {
    let pid = harness.pid()?;
    let (stop, sampler) = sample_peak_rss(pid);
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(ApiKey::CreateTopics as i16)
        .with_request_api_version(2)
        .with_correlation_id(1)
        .encode(&mut frame, ApiKey::CreateTopics.request_header_version(2))?;
    frame.put_i32(i32::MAX);
    frame.put_bytes(0, 99 << 20);
    let size = (frame.len() - 4) as i32;
    frame[0..4].copy_from_slice(&size.to_be_bytes());
    let mut connection = harness.connect()?;
    connection.send_bytes(&frame)?;
    ensure!(connection.is_closed_by_peer(), "the connection stayed open after an undecodable CreateTopics");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().map_err(|_| anyhow::anyhow!("the sampler thread panicked"))?;
    println!("99 MiB CreateTopics declaring 2^31 - 1 topics: peak RSS {peak} MiB");
    harness.check_alive("CreateTopics declaring 2^31 - 1 topics")
}

/// The agent runs under an 8 GiB address-space limit (what strict overcommit or a small node looks
/// like): a reservation from a declared size would abort it.
#[test]
fn the_audits_probes_get_kafkas_answers_and_the_agent_keeps_its_memory_and_records() -> Result<()> {
    const FETCH_MAX_BYTES: usize = 64 << 10;
    let options = AgentOptions { launcher: vec!["prlimit".into(), "--as=8589934592".into(), "--".into()], ..AgentOptions::default() };
    let mut harness = Harness::start_with("limits-probes", &["--fetch-max-bytes", "64KiB"], options, true)?;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", harness.pid()?))?;
    ensure!(
        limits.lines().any(|line| line.starts_with("Max address space") && line.contains("8589934592")),
        "the agent does not run under the address-space limit:\n{limits}"
    );
    harness.check_alive("producing the known records")?;
    probe_frames_declaring_100_mib_that_never_arrive(&mut harness)?;
    probe_fetch_amplification(&mut harness, FETCH_MAX_BYTES)?;
    probe_pipelined_long_polls_are_served_one_at_a_time(&mut harness)?;
    probe_pipelined_produces_share_a_flush(&mut harness)?;
    probe_pipelined_fetches_padded_to_60_mib(&mut harness)?;
    probe_waiting_requests_release_their_frames(&mut harness)?;
    probe_offset_commit_metadata(&mut harness)?;
    probe_metadata_with_150_000_topic_ids(&mut harness)?;
    probe_join_groups_padded_to_60_mib(&mut harness)?;
    probe_join_group_with_50_mib_of_metadata(&mut harness)?;
    probe_unread_metadata_answers_hold_the_connection(&mut harness)?;
    probe_join_groups_without_protocols(&mut harness)?;
    probe_create_topics_with_a_million_partitions(&mut harness)?;
    probe_create_topics_with_6_5_million_empty_names(&mut harness)?;
    probe_create_topics_declaring_two_billion_topics(&mut harness)?;
    harness.check_records_survive_a_restart()
}

/// Sends ApiVersions v0 on a plain socket and waits at most `timeout` for any answer byte.
fn answers_within(socket: &mut TcpStream, timeout: Duration) -> Result<bool> {
    socket.set_read_timeout(Some(timeout))?;
    if socket.write_all(&[0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 9, 0, 0]).is_err() {
        return Ok(false);
    }
    let mut byte = [0u8; 1];
    match socket.read(&mut byte) {
        Ok(0) => Ok(false),
        Ok(_) => Ok(true),
        Err(error) if matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => Ok(false),
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => Ok(false),
        Err(error) => bail!("reading the ApiVersions answer failed: {error}"),
    }
}

#[test]
fn idle_connections_close_and_a_client_address_gets_at_most_max_connections_per_ip() -> Result<()> {
    let mut harness = Harness::start("limits-per-ip", &["--connections-max-idle", "3s", "--max-connections-per-ip", "4"])?;
    // connections.max.idle.ms: a connection that sends nothing is closed.
    let mut idle = harness.connect()?;
    let started = Instant::now();
    ensure!(idle.is_closed_by_peer(), "an idle connection stayed open for 10 s");
    let elapsed = started.elapsed();
    ensure!(elapsed >= Duration::from_secs(2), "an idle connection was closed after only {elapsed:?}");
    ensure!(harness.metric("floe_connections_refused_total{limit=\"connections_max_idle_ms\"}")? >= 1.0, "idle close not counted");
    // A frame that stops arriving half way holds its buffer only until the connection idles out.
    let mut stalled = TcpStream::connect(&harness.agent.bootstrap)?;
    stalled.write_all(&(100i32 << 20).to_be_bytes())?;
    stalled.write_all(&[0, 3, 0, 1, 0, 0, 0, 1, 0, 0])?;
    std::thread::sleep(Duration::from_millis(500));
    let held = harness.metric("floe_request_memory_bytes")?;
    ensure!(held > 0.0, "the stalled frame holds no request memory");
    stalled.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut byte = [0u8; 1];
    let closed = match stalled.read(&mut byte) {
        Ok(read) => read == 0,
        Err(error) => error.kind() == std::io::ErrorKind::ConnectionReset,
    };
    ensure!(closed, "a stalled frame's connection stayed open");
    std::thread::sleep(Duration::from_millis(200));
    let after = harness.metric("floe_request_memory_bytes")?;
    ensure!(after == 0.0, "the stalled frame's {after} bytes were not given back when its connection idled out");
    // max.connections.per.ip: the fifth connection from 127.0.0.1 is closed at once.
    let mut open: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(&harness.agent.bootstrap)).collect::<std::io::Result<_>>()?;
    for socket in &mut open {
        ensure!(answers_within(socket, Duration::from_secs(5))?, "one of the first four connections was not served");
    }
    let mut fifth = TcpStream::connect(&harness.agent.bootstrap)?;
    ensure!(!answers_within(&mut fifth, Duration::from_secs(2))?, "a fifth connection from one address was served");
    ensure!(harness.metric("floe_connections_refused_total{limit=\"max_connections_per_ip\"}")? >= 1.0, "the refusal was not counted");
    open.pop();
    std::thread::sleep(Duration::from_millis(300));
    let mut again = TcpStream::connect(&harness.agent.bootstrap)?;
    ensure!(answers_within(&mut again, Duration::from_secs(5))?, "a connection after one closed was not served");
    drop((open, again));
    std::thread::sleep(Duration::from_millis(300));
    harness.check_alive("per-IP limit")?;
    harness.check_records_survive_a_restart()
}

#[test]
fn past_max_connections_the_agent_stops_accepting_until_a_connection_closes() -> Result<()> {
    // The Java client opens more connections than three; this agent's records are read back raw.
    let mut harness = Harness::start_with("limits-max-connections", &["--max-connections", "3"], AgentOptions::default(), false)?;
    let mut open: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(&harness.agent.bootstrap)).collect::<std::io::Result<_>>()?;
    for socket in &mut open {
        ensure!(answers_within(socket, Duration::from_secs(5))?, "one of the first three connections was not served");
    }
    // The kernel completes the handshake (the backlog), but the agent does not serve it yet.
    let mut waiting = TcpStream::connect(&harness.agent.bootstrap)?;
    ensure!(!answers_within(&mut waiting, Duration::from_secs(2))?, "a fourth connection was served past --max-connections 3");
    ensure!(harness.metric("floe_connections_refused_total{limit=\"max_connections\"}")? >= 1.0, "the wait was not counted");
    open.pop();
    let mut byte = [0u8; 1];
    waiting.set_read_timeout(Some(Duration::from_secs(10)))?;
    ensure!(waiting.read(&mut byte)? == 1, "the waiting connection was not served after another closed");
    drop((open, waiting));
    std::thread::sleep(Duration::from_millis(300));
    harness.check_alive("max connections")?;
    harness.check_records_survive_a_restart_over_one_connection()
}

#[test]
fn partitions_past_the_cluster_limit_get_policy_violation_and_a_full_group_refuses_new_members() -> Result<()> {
    const GROUP_MAX_SIZE_REACHED: i16 = 81;
    // The known topics hold 4 + 4 partitions of the 20 allowed.
    let mut harness = Harness::start("limits-partitions", &["--max-partitions", "20", "--group-max-size", "1"])?;
    let mut connection = harness.connect()?;
    let create = |connection: &mut RawConnection, topic: &str, partitions: i32| -> Result<(i16, String)> {
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![CreatableTopic::default().with_name(name(topic)).with_num_partitions(partitions).with_replication_factor(1)]);
        let correlation = connection.send(ApiKey::CreateTopics, 5, &request)?;
        let response: CreateTopicsResponse = connection.receive(ApiKey::CreateTopics, 5, correlation)?;
        let topic = &response.topics[0];
        Ok((topic.error_code, topic.error_message.as_ref().map(|message| message.to_string()).unwrap_or_default()))
    };
    let grow = |connection: &mut RawConnection, topic: &str, count: i32| -> Result<(i16, String)> {
        let request = CreatePartitionsRequest::default().with_timeout_ms(30_000).with_topics(vec![
            kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic::default().with_name(name(topic)).with_count(count),
        ]);
        let correlation = connection.send(ApiKey::CreatePartitions, 3, &request)?;
        let response: CreatePartitionsResponse = connection.receive(ApiKey::CreatePartitions, 3, correlation)?;
        let topic = &response.results[0];
        Ok((topic.error_code, topic.error_message.as_ref().map(|message| message.to_string()).unwrap_or_default()))
    };
    let (code, message) = create(&mut connection, "too-wide", 13)?;
    ensure!(code == POLICY_VIOLATION && message.contains("--max-partitions"), "13 more partitions answered {code}: {message}");
    ensure!(create(&mut connection, "small", 2)?.0 == 0, "2 more partitions (10 of 20) were refused");
    ensure!(grow(&mut connection, "small", 12)?.0 == 0, "growing to 20 of 20 partitions was refused");
    let (code, message) = grow(&mut connection, "small", 13)?;
    ensure!(code == POLICY_VIOLATION && message.contains("--max-partitions"), "growing to 21 of 20 answered {code}: {message}");
    ensure!(harness.metric("floe_requests_refused_total{limit=\"max_partitions\"}")? >= 2.0, "the refusals were not counted");
    // group.max.size 1: a second member is refused, the first stays.
    let join = |connection: &mut RawConnection, member_id: &str| -> Result<JoinGroupResponse> {
        let request = JoinGroupRequest::default()
            .with_group_id(GroupId(text("full")))
            .with_session_timeout_ms(30_000)
            .with_rebalance_timeout_ms(30_000)
            .with_member_id(text(member_id))
            .with_protocol_type(text("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default().with_name(text("range")).with_metadata(Bytes::from_static(b"m"))]);
        let correlation = connection.send(ApiKey::JoinGroup, 3, &request)?;
        connection.receive(ApiKey::JoinGroup, 3, correlation)
    };
    let first = join(&mut connection, "")?;
    ensure!(first.error_code == 0, "the first member answered {}", first.error_code);
    let mut other = harness.connect()?;
    let second = join(&mut other, "")?;
    ensure!(second.error_code == GROUP_MAX_SIZE_REACHED, "a second member answered {}", second.error_code);
    ensure!(harness.metric("floe_requests_refused_total{limit=\"group_max_size\"}")? >= 1.0, "the refusal was not counted");
    let again = join(&mut connection, &first.member_id.to_string())?;
    ensure!(again.error_code == 0, "the first member's rejoin answered {}", again.error_code);
    drop((connection, other));
    harness.check_alive("partition and group limits")?;
    harness.check_records_survive_a_restart()
}

/// `--queued-max-request-bytes`: once stalled large frames use the budget up, a large request
/// waits (the connection stops reading, as Kafka mutes it) while small requests (a heartbeat, an
/// ApiVersions) are still served; when the budget frees up, the waiting request is answered.
#[test]
fn past_the_request_memory_budget_large_requests_wait_and_small_ones_flow() -> Result<()> {
    let mut harness = Harness::start("limits-budget", &["--queued-max-request-bytes", "1MiB"])?;
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut socket = TcpStream::connect(&harness.agent.bootstrap)?;
        socket.write_all(&(100i32 << 20).to_be_bytes())?;
        socket.write_all(&[0, 3, 0, 1, 0, 0, 0, 1, 0, 0])?;
        stalled.push(socket);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while harness.metric("floe_request_memory_bytes")? < (1 << 20) as f64 {
        ensure!(Instant::now() < deadline, "20 stalled frames never used the 1 MiB budget up");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A 200 KiB produce waits for the budget.
    let mut producer = harness.connect()?;
    let records: Vec<(Vec<u8>, Vec<u8>)> = (0..20).map(|index| (format!("b{index}").into_bytes(), vec![b'b'; 10_000])).collect();
    let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(30_000).with_topic_data(vec![TopicProduceData::default()
        .with_name(name(KNOWN_TOPIC))
        .with_partition_data(vec![PartitionProduceData::default()
            .with_index(0)
            .with_records(Some(encode_batch(&records, now_millis())?))])]);
    let correlation = producer.send(ApiKey::Produce, 9, &request)?;
    let mut waiting = producer.try_clone_stream()?;
    waiting.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut byte = [0u8; 1];
    ensure!(waiting.read(&mut byte).is_err(), "a 200 KiB produce was answered while the budget was used up");
    ensure!(harness.metric("floe_request_memory_waits_total")? >= 1.0, "the wait was not counted");
    // Small requests still flow.
    let mut small = harness.connect()?;
    let started = Instant::now();
    let api_versions = small.send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())?;
    let answer: ApiVersionsResponse = small.receive(ApiKey::ApiVersions, 3, api_versions)?;
    ensure!(answer.error_code == 0, "ApiVersions failed while the budget was used up");
    println!("ApiVersions answered in {:?} while the request memory budget was used up", started.elapsed());
    drop(stalled);
    let response: ProduceResponse = producer.receive(ApiKey::Produce, 9, correlation)?;
    let partition = &response.responses[0].partition_responses[0];
    ensure!(partition.error_code == 0, "the waiting produce answered {}", partition.error_code);
    harness.acknowledged[0].extend(records.into_iter().map(|(key, _)| key));
    drop((producer, small));
    harness.check_alive("request memory budget")?;
    harness.check_records_survive_a_restart()
}

/// A server process runs with one glibc malloc arena (it re-executes itself with
/// `MALLOC_ARENA_MAX=1`, keeping its PID): with glibc's default the playground's catch-up peaked at
/// up to 847 MiB RSS, with one arena at 450. An operator's own `MALLOC_ARENA_MAX` wins.
#[test]
fn a_server_runs_with_one_malloc_arena_unless_told_otherwise() -> Result<()> {
    let playground = floe_e2e::Playground::start(&[])?;
    let pid = playground.pid().context("the playground is not running")?;
    let environment = std::fs::read(format!("/proc/{pid}/environ")).with_context(|| format!("reading process {pid}'s environment"))?;
    let expected = std::env::var("MALLOC_ARENA_MAX").unwrap_or_else(|_| "1".to_string());
    let set: Vec<String> = environment
        .split(|byte| *byte == 0)
        .filter_map(|entry| std::str::from_utf8(entry).ok())
        .filter_map(|entry| entry.strip_prefix("MALLOC_ARENA_MAX="))
        .map(str::to_string)
        .collect();
    ensure!(set == [expected.clone()], "the playground (pid {pid}) runs with MALLOC_ARENA_MAX {set:?}, expected {expected}");
    Ok(())
}

/// In a container with a memory limit (here a real memory cgroup of 200 MiB, as Kubernetes makes
/// for `resources.limits.memory: 200Mi`), the default segment cache is a quarter of the limit
/// (50 MiB) instead of the default: an agent needs about 250 MiB beside its cache under heavy
/// load, and one killed for memory takes its unacknowledged produces with it. The playground's
/// bucket is a directory, whose reads the page cache serves, so its default outside a limit is
/// 64 MiB (256 MiB over S3; unit tests in `memory_limit.rs`); an explicit `--cache-bytes` wins,
/// with a warning when it takes more than half of the limit.
#[test]
fn the_default_segment_cache_fits_the_memory_limit_of_the_cgroup_the_agent_runs_in() -> Result<()> {
    const MIB: f64 = 1_048_576.0;
    let cache_mib = |playground: &floe_e2e::Playground| -> Result<f64> {
        let (status, metrics) = http_get(&playground.http, "/metrics")?;
        ensure!(status == 200, "/metrics answered {status}");
        let bytes =
            metric_value(&metrics, "floe_segment_cache_capacity_bytes ").context("no floe_segment_cache_capacity_bytes in /metrics")?;
        Ok(bytes / MIB)
    };
    let cgroup = floe_e2e::cgroup::MemoryCgroup::create("cache", 200 << 20)?;
    let limited = floe_e2e::Playground::start_in_cgroup(&[], None, &cgroup.procs())?;
    let pid = limited.pid().context("the playground is not running")?;
    let memberships = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let name = cgroup.directory().file_name().and_then(|name| name.to_str()).context("cgroup name")?;
    ensure!(memberships.contains(name), "the playground (pid {pid}) is not in the cgroup {name}: {memberships}");
    ensure!(cache_mib(&limited)? == 50.0, "under a 200 MiB limit the default cache is {} MiB, expected 50", cache_mib(&limited)?);

    let unlimited = floe_e2e::Playground::start(&[])?;
    ensure!(
        cache_mib(&unlimited)? == 64.0,
        "without a limit the playground's default cache is {} MiB, expected 64 (a file bucket)",
        cache_mib(&unlimited)?
    );

    let log = tempfile::NamedTempFile::new()?;
    let explicit = floe_e2e::Playground::start_in_cgroup(&["--cache-bytes", "300MiB", "--log", "warn"], Some(log.path()), &cgroup.procs())?;
    ensure!(cache_mib(&explicit)? == 300.0, "--cache-bytes 300MiB gave a cache of {} MiB", cache_mib(&explicit)?);
    let logged = std::fs::read_to_string(log.path())?;
    ensure!(
        logged.contains("--cache-bytes is more than half of this container's memory limit") && logged.contains("memory_limit_mib=200"),
        "no warning naming the 200 MiB limit for a 300 MiB cache; the log says:\n{logged}"
    );
    drop((limited, explicit, unlimited));
    Ok(())
}
