//! Background jobs in cluster mode (done-when 6 and 7 of the cluster issue): compaction keeps
//! fetched bytes identical, retention moves the log start, GC removes orphans only after the
//! grace period, fsck reports clean, and a new agent starts from a snapshot and serves old offsets.
//! The playground (embedded metadata) runs the same compaction, retention and GC itself.

use anyhow::{bail, ensure, Result};
use bytes::{Bytes, BytesMut};
use floe_agent::storage::{ObjectStoreUrl, S3Options, SegmentStore};
use floe_e2e::cluster::{Agent, Infrastructure, BUCKET};
use floe_e2e::wire::RawConnection;
use floe_e2e::{floe_binary, http_get, kafka, metric_value, records, Playground};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const OFFSET_OUT_OF_RANGE: i16 = 1;

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// Every stored batch of a partition, as fetch returns it, from `from` to the high watermark.
fn fetch_raw(bootstrap: &str, topic: &str, partition: i32, from: i64) -> Result<(i16, Bytes)> {
    let mut connection = RawConnection::connect(bootstrap)?;
    let mut collected = BytesMut::new();
    let mut offset = from;
    loop {
        let request = FetchRequest::default().with_max_wait_ms(0).with_max_bytes(1 << 20).with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
        let correlation = connection.send(ApiKey::Fetch, 11, &request)?;
        let response: FetchResponse = connection.receive(ApiKey::Fetch, 11, correlation)?;
        let data = &response.responses[0].partitions[0];
        if data.error_code != 0 {
            return Ok((data.error_code, collected.freeze()));
        }
        let records = data.records.clone().unwrap_or_default();
        if records.is_empty() {
            return Ok((0, collected.freeze()));
        }
        // Walk the batches to find the next offset: baseOffset + lastOffsetDelta + 1.
        let mut position = 0;
        while position + 61 <= records.len() {
            let base = i64::from_be_bytes(records[position..position + 8].try_into()?);
            let length = i32::from_be_bytes(records[position + 8..position + 12].try_into()?) as usize;
            let delta = i32::from_be_bytes(records[position + 23..position + 27].try_into()?) as i64;
            offset = base + delta + 1;
            position += 12 + length;
        }
        collected.extend_from_slice(&records);
        if offset >= data.high_watermark {
            return Ok((0, collected.freeze()));
        }
    }
}

fn earliest(bootstrap: &str, topic: &str, partition: i32) -> Result<i64> {
    let mut connection = RawConnection::connect(bootstrap)?;
    let request = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
        .with_name(topic_name(topic))
        .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(partition).with_timestamp(-2)])]);
    let correlation = connection.send(ApiKey::ListOffsets, 5, &request)?;
    let response: ListOffsetsResponse = connection.receive(ApiKey::ListOffsets, 5, correlation)?;
    Ok(response.topics[0].partitions[0].offset)
}

fn metric(agent: &Agent, sample: &str) -> Result<f64> {
    metric_at(&agent.http, sample)
}

/// A sample's value; 0 when the family is exported without that sample yet. A family the agent
/// does not export at all is an error, so a check for zero cannot pass on a renamed metric.
fn metric_at(http: &str, sample: &str) -> Result<f64> {
    let (_, metrics) = http_get(http, "/metrics")?;
    let family = sample.split('{').next().unwrap_or(sample);
    ensure!(metrics.contains(&format!("# TYPE {family} ")), "the agent does not export {family}");
    Ok(metric_value(&metrics, sample).unwrap_or_default())
}

fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> Result<bool>) -> Result<Duration> {
    let started = Instant::now();
    loop {
        if condition()? {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

async fn produce_one_per_flush(
    producer: &FutureProducer,
    topic: &str,
    indexes: std::ops::Range<u64>,
    timestamp: Option<i64>,
) -> Result<()> {
    for index in indexes {
        let (key, value) = (records::key(index), records::value(index));
        let mut record = FutureRecord::to(topic).partition((index % 3) as i32).key(&key).payload(&value);
        if let Some(timestamp) = timestamp {
            record = record.timestamp(timestamp);
        }
        if let Err((error, _)) = producer.send(record, Duration::from_secs(10)).await {
            bail!("produce failed: {error}");
        }
    }
    Ok(())
}

/// Looks at the orphan once more just before its grace period (`grace`, counted from when it was
/// written) ends: it must still be there. Fails if the test itself was too slow to look in time,
/// rather than passing without having looked.
fn check_orphan_outlives_its_grace(written: &Instant, grace: Duration, exists: impl Fn() -> bool) -> Result<()> {
    let look_at = grace.saturating_sub(Duration::from_millis(1_500));
    std::thread::sleep(look_at.saturating_sub(written.elapsed()));
    let still_there = exists();
    let looked_after = written.elapsed();
    ensure!(looked_after < grace, "looked for the orphan only {looked_after:?} after writing it, past its {grace:?} grace");
    ensure!(still_there, "the orphan was deleted {looked_after:?} after it was written, within its {grace:?} grace period");
    Ok(())
}

fn fsck(infrastructure: &Infrastructure, virtual_cluster: &str) -> Result<(bool, String)> {
    let output = std::process::Command::new(floe_binary()?)
        .args(["admin", "fsck", "--metadata", &infrastructure.metadata_url(), "--virtual-cluster", virtual_cluster])
        .args(["--object-store", &format!("s3://{BUCKET}/{virtual_cluster}")])
        .envs(infrastructure.s3_environment())
        .output()?;
    Ok((output.status.success(), String::from_utf8_lossy(&output.stdout).to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_retention_gc_and_snapshots_keep_data_correct_and_fsck_clean() -> Result<()> {
    let infrastructure = Infrastructure::start()?;
    let jobs_flags = [
        "--registry-ttl",
        "3s",
        "--compaction-fan-in",
        "4",
        "--compaction-interval",
        "15s",
        "--retention-interval",
        "1s",
        "--snapshot-interval",
        "2s",
        "--gc-grace",
        "6s",
    ];
    let agent = Agent::start(&infrastructure, "jobs", &jobs_flags)?;
    let admin: AdminClient<DefaultClientContext> = kafka::config(&agent.bootstrap).create()?;
    let topics = [
        NewTopic::new("history", 3, TopicReplication::Fixed(1)),
        NewTopic::new("expiring", 3, TopicReplication::Fixed(1)).set("retention.ms", "60000"),
    ];
    for result in admin.create_topics(&topics, &AdminOptions::new()).await? {
        if let Err((name, error)) = result {
            bail!("failed to create {name}: {error}");
        }
    }
    let producer: FutureProducer = kafka::config(&agent.bootstrap).set("acks", "all").set("linger.ms", "0").create()?;
    // One acknowledged send at a time: each lands in its own segment, so there is much to compact.
    produce_one_per_flush(&producer, "history", 0..12, None).await?;
    let an_hour_ago = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64 - 3_600_000;
    produce_one_per_flush(&producer, "expiring", 100..106, Some(an_hour_ago)).await?;
    let before: Vec<Bytes> =
        (0..3).map(|partition| fetch_raw(&agent.bootstrap, "history", partition, 0).map(|(_, bytes)| bytes)).collect::<Result<_>>()?;
    ensure!(
        metric(&agent, "floe_journal_appends_total{record=\"compact_segments\"}")? == 0.0,
        "compaction ran before the baseline was read"
    );

    // Compaction: the merged segment serves byte-identical batches.
    let waited = wait_until("a compaction", Duration::from_secs(60), || {
        Ok(metric(&agent, "floe_journal_appends_total{record=\"compact_segments\"}")? >= 1.0)
    })?;
    let after: Vec<Bytes> =
        (0..3).map(|partition| fetch_raw(&agent.bootstrap, "history", partition, 0).map(|(_, bytes)| bytes)).collect::<Result<_>>()?;
    ensure!(before == after, "fetch returned different bytes after compaction");
    println!("compaction after {waited:?}: fetched bytes identical ({} bytes)", after.iter().map(Bytes::len).sum::<usize>());

    // Retention: records an hour old in a topic that keeps one minute are gone.
    wait_until("retention to move the log start", Duration::from_secs(30), || Ok(earliest(&agent.bootstrap, "expiring", 0)? > 0))?;
    let (error, _) = fetch_raw(&agent.bootstrap, "expiring", 0, 0)?;
    ensure!(error == OFFSET_OUT_OF_RANGE, "fetching a retained-away offset answered error {error}");
    ensure!(earliest(&agent.bootstrap, "history", 0)? == 0, "retention trimmed a topic with the default 7-day retention");

    // An orphan: an object no journal record will ever reference.
    let store = SegmentStore::open(
        &ObjectStoreUrl::S3 { bucket: BUCKET.to_string(), prefix: "jobs".to_string() },
        &S3Options {
            endpoint: Some(format!("http://127.0.0.1:{}", infrastructure.s3_port)),
            region: Some("us-east-1".into()),
            access_key_id: Some("floe".into()),
            secret_access_key: Some("floe-secret".into()),
            allow_http: true,
            virtual_hosted_style: false,
        },
        Arc::new(floe_agent::metrics::Metrics::new()),
    )?;
    // Named as a writer would have named it at journal revision 1, inside this cluster's prefix
    // (`clusters/<cluster id>/`, the only directory under the bucket prefix).
    let cluster_directory = std::fs::read_dir(infrastructure.bucket_directory("jobs").join("clusters"))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("no cluster directory in the bucket"))??
        .file_name();
    let orphan = format!("clusters/{}/segments/{:020}-{}.seg", cluster_directory.to_string_lossy(), 1, ulid::Ulid::new());
    store.put(&orphan, Bytes::from_static(b"not a segment")).await?;
    let orphan_written = Instant::now();

    // GC: the orphan survives its grace period, then goes.
    let exists = |name: &str| infrastructure.bucket_directory("jobs").join(name).exists();
    ensure!(exists(&orphan), "the orphan disappeared immediately");
    check_orphan_outlives_its_grace(&orphan_written, Duration::from_secs(6), || exists(&orphan))?;
    wait_until("GC of the orphan", Duration::from_secs(60), || Ok(!exists(&orphan)))?;
    // Compacted sources are orphans too once the grace period passed; fsck then lists none.
    let (clean, report) = {
        let mut last = (false, String::new());
        wait_until("a clean fsck without orphans", Duration::from_secs(60), || {
            last = fsck(&infrastructure, "jobs")?;
            Ok(last.0 && !last.1.lines().any(|line| line.starts_with("orphan ")))
        })?;
        last
    };
    print!("{report}");
    ensure!(clean && report.contains("clean"), "fsck is not clean:\n{report}");
    let referenced: usize = report
        .split("fsck: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|count| count.parse().ok())
        .unwrap_or(usize::MAX);
    ensure!(referenced < 18, "18 single-record segments were written but {referenced} are still referenced: nothing was compacted");

    // Snapshot: the journal is trimmed, and a new agent starts from the snapshot.
    wait_until("a snapshot", Duration::from_secs(30), || Ok(metric(&agent, "floe_snapshot_revision")? > 0.0))?;
    let journal_keys = infrastructure.etcd_key_count("/floe/vc/jobs/log/")?;
    let started = Instant::now();
    let newcomer = Agent::start(&infrastructure, "jobs", &["--registry-ttl", "3s", "--roles", "produce,fetch"])?;
    let recovery = started.elapsed();
    let stored = kafka::read_all(&newcomer.bootstrap, "history", 3, Duration::from_secs(60))?;
    let mut seen: Vec<u64> = stored.values().flatten().filter_map(|record| records::index_of(&record.key)).collect();
    seen.sort();
    ensure!(seen == (0..12).collect::<Vec<_>>(), "the new agent served {seen:?}");
    for record in stored.values().flatten() {
        let index = records::index_of(&record.key).expect("checked above");
        ensure!(record.value == records::value(index), "record {index} differs when served by the new agent");
    }
    println!("new agent started from the snapshot in {recovery:?} ({journal_keys} journal keys left in etcd) and served every old offset");
    Ok(())
}

/// The playground (embedded metadata, file bucket) runs compaction, retention and GC itself, and
/// everything acknowledged reads back after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_playground_compacts_retains_and_collects_garbage_itself() -> Result<()> {
    const GRACE: Duration = Duration::from_secs(6);
    let mut playground =
        // The compaction interval leaves time to read the baseline before the first compaction.
        Playground::start(&["--compaction-fan-in", "4", "--compaction-interval", "12s", "--retention-interval", "1s", "--gc-grace", "6s"])?;
    let admin: AdminClient<DefaultClientContext> = kafka::config(&playground.bootstrap).create()?;
    let topics = [
        NewTopic::new("history", 3, TopicReplication::Fixed(1)),
        NewTopic::new("expiring", 3, TopicReplication::Fixed(1)).set("retention.ms", "60000"),
    ];
    for result in admin.create_topics(&topics, &AdminOptions::new()).await? {
        if let Err((name, error)) = result {
            bail!("failed to create {name}: {error}");
        }
    }
    let producer: FutureProducer = kafka::config(&playground.bootstrap).set("acks", "all").set("linger.ms", "0").create()?;
    produce_one_per_flush(&producer, "history", 0..12, None).await?;
    let an_hour_ago = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64 - 3_600_000;
    produce_one_per_flush(&producer, "expiring", 100..106, Some(an_hour_ago)).await?;
    let before: Vec<Bytes> =
        (0..3).map(|partition| fetch_raw(&playground.bootstrap, "history", partition, 0).map(|(_, bytes)| bytes)).collect::<Result<_>>()?;
    let segments_written = playground.segment_objects()?;
    let compactions = "floe_journal_appends_total{record=\"compact_segments\"}";
    ensure!(metric_at(&playground.http, compactions)? == 0.0, "compaction ran before the baseline was read");

    let waited = wait_until("a compaction", Duration::from_secs(60), || Ok(metric_at(&playground.http, compactions)? >= 1.0))?;
    let after: Vec<Bytes> =
        (0..3).map(|partition| fetch_raw(&playground.bootstrap, "history", partition, 0).map(|(_, bytes)| bytes)).collect::<Result<_>>()?;
    ensure!(before == after, "fetch returned different bytes after compaction");

    wait_until("retention to move the log start", Duration::from_secs(30), || Ok(earliest(&playground.bootstrap, "expiring", 0)? > 0))?;
    let (error, _) = fetch_raw(&playground.bootstrap, "expiring", 0, 0)?;
    ensure!(error == OFFSET_OUT_OF_RANGE, "fetching a retained-away offset answered error {error}");
    ensure!(earliest(&playground.bootstrap, "history", 0)? == 0, "retention trimmed a topic with the default 7-day retention");

    // An orphan in the file bucket, named as a writer at journal revision 1 would name it.
    let clusters = playground.data_dir.path().join("bucket").join("clusters");
    let cluster = std::fs::read_dir(&clusters)?.next().ok_or_else(|| anyhow::anyhow!("no cluster directory in the bucket"))??.path();
    let orphan = cluster.join("segments").join(format!("{:020}-{}.seg", 1, ulid::Ulid::new()));
    std::fs::write(&orphan, b"not a segment")?;
    let orphan_written = Instant::now();
    check_orphan_outlives_its_grace(&orphan_written, GRACE, || orphan.exists())?;
    wait_until("GC of the orphan", Duration::from_secs(60), || Ok(!orphan.exists()))?;
    // The compacted sources go too, once their grace period has passed.
    wait_until("GC of the compacted sources", Duration::from_secs(60), || Ok(playground.segment_objects()? < segments_written))?;
    let segments_left = playground.segment_objects()?;
    ensure!(metric_at(&playground.http, "floe_job_runs_total{job=\"gc\",outcome=\"error\"}")? == 0.0, "a GC run failed");
    println!(
        "playground: compaction after {waited:?}, retention moved the log start, the orphan went after its grace, \
         segment objects {segments_written} -> {segments_left}"
    );

    // Everything acknowledged reads back after a restart (no cache of fresh segments).
    drop(producer);
    drop(admin);
    playground.restart()?;
    let bootstrap = playground.bootstrap.clone();
    let stored = tokio::task::spawn_blocking(move || kafka::read_all(&bootstrap, "history", 3, Duration::from_secs(60))).await??;
    let mut seen: Vec<u64> = stored.values().flatten().filter_map(|record| records::index_of(&record.key)).collect();
    seen.sort();
    ensure!(seen == (0..12).collect::<Vec<_>>(), "after the restart the playground served {seen:?}");
    for record in stored.values().flatten() {
        let index = records::index_of(&record.key).expect("checked above");
        ensure!(record.value == records::value(index), "record {index} differs after compaction and a restart");
    }
    Ok(())
}

/// (offset, key, value) of every record of partition 0 of `topic`, read from the beginning with
/// librdkafka until the record at `last_offset`; a tombstone's value is `None`.
fn read_compacted(bootstrap: &str, topic: &str, last_offset: i64) -> Result<Vec<(i64, String, Option<String>)>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    let consumer: BaseConsumer = kafka::config(bootstrap).set("group.id", "read-compacted").set("enable.auto.commit", "false").create()?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&assignment)?;
    let mut read = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while read.last().is_none_or(|(offset, _, _)| *offset < last_offset) {
        ensure!(
            Instant::now() < deadline,
            "read {} records of {topic}, the last at {:?}, not up to {last_offset}",
            read.len(),
            read.last()
        );
        let Some(message) = consumer.poll(Duration::from_millis(200)) else { continue };
        let message = message?;
        let text = |bytes: Option<&[u8]>| bytes.map(|bytes| String::from_utf8_lossy(bytes).into_owned());
        read.push((message.offset(), text(message.key()).unwrap_or_default(), text(message.payload())));
    }
    Ok(read)
}

/// Issue 19, done-when 5: a compacted topic with 100,000 updates over 1,000 keys reads back as
/// exactly the latest value of each key, at the offset it was acknowledged at; tombstones stay
/// while younger than delete.retention.ms and then go; a record without a key is refused with
/// INVALID_RECORD; all of it again after a restart. As in Kafka, the newest chunk (the active
/// segment) is never cleaned: the test ends the cleanable data with a record in a flush of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_topic_keeps_the_latest_value_of_each_key_at_its_offset_and_drops_tombstones_after_delete_retention() -> Result<()> {
    let cell = floe_e2e::matrix::Cell::open(
        "librdkafka",
        "compaction",
        "100,000 lz4 updates over 1,000 keys read back as the latest value per key at its offset; tombstones go after delete.retention.ms",
    );
    const KEYS: u64 = 1_000;
    const UPDATES: u64 = 100_000;
    const TOMBSTONED: u64 = 100;
    const DELETE_RETENTION: Duration = Duration::from_secs(12);
    let removed = "floe_key_compaction_records_removed_total";
    // Segment compaction is kept out of the way so that the newest chunk stays the sentinel's.
    let mut playground = Playground::start(&["--key-compaction-interval", "1s", "--compaction-interval", "1h"])?;
    let admin: AdminClient<DefaultClientContext> = kafka::config(&playground.bootstrap).create()?;
    let topic =
        NewTopic::new("settings", 1, TopicReplication::Fixed(1)).set("cleanup.policy", "compact").set("delete.retention.ms", "12000");
    for result in admin.create_topics(&[topic], &AdminOptions::new()).await? {
        if let Err((name, error)) = result {
            bail!("failed to create {name}: {error}");
        }
    }
    let producer: FutureProducer = kafka::config(&playground.bootstrap)
        .set("acks", "all")
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "200000")
        .create()?;
    let started = Instant::now();
    let mut deliveries = Vec::with_capacity(UPDATES as usize);
    for index in 0..UPDATES {
        let key = format!("key-{:04}", index % KEYS);
        let value = format!("value-{index}");
        let delivery = producer
            .send_result(FutureRecord::to("settings").partition(0).key(&key).payload(&value))
            .map_err(|(error, _)| anyhow::anyhow!("enqueue failed: {error}"))?;
        deliveries.push((key, Some(value), delivery));
    }
    // The tombstones' timestamps are taken when they are sent: delete.retention.ms counts from here.
    let tombstones_written = Instant::now();
    for index in 0..TOMBSTONED {
        let key = format!("key-{:04}", index);
        let delivery = producer
            .send_result(FutureRecord::<String, str>::to("settings").partition(0).key(&key))
            .map_err(|(error, _)| anyhow::anyhow!("enqueue failed: {error}"))?;
        deliveries.push((key, None, delivery));
    }
    let mut latest: std::collections::BTreeMap<String, (i64, Option<String>)> = Default::default();
    for (key, value, delivery) in deliveries {
        let offset = delivery.await?.map_err(|(error, _)| anyhow::anyhow!("produce failed: {error}"))?.offset;
        if latest.get(&key).is_none_or(|(known, _)| *known < offset) {
            latest.insert(key, (offset, value));
        }
    }
    println!("produced {} updates and {TOMBSTONED} tombstones in {:?}", UPDATES, started.elapsed());
    let keyless = producer.send(FutureRecord::<str, str>::to("settings").partition(0).payload("no key"), Duration::from_secs(10)).await;
    match keyless {
        Err((rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::InvalidRecord), _)) => {}
        other => bail!("a record without a key on a compacted topic answered {other:?}, expected INVALID_RECORD"),
    }
    let sentinel = producer
        .send(FutureRecord::to("settings").partition(0).key("sentinel").payload("last"), Duration::from_secs(10))
        .await
        .map_err(|(error, _)| anyhow::anyhow!("produce failed: {error}"))?
        .offset;
    let expected = |with_tombstones: bool| {
        let mut records: Vec<(i64, String, Option<String>)> = latest
            .iter()
            .filter(|(_, (_, value))| with_tombstones || value.is_some())
            .map(|(key, (offset, value))| (*offset, key.clone(), value.clone()))
            .collect();
        records.push((sentinel, "sentinel".to_string(), Some("last".to_string())));
        records.sort();
        records
    };

    let superseded = (UPDATES + TOMBSTONED - KEYS) as f64;
    let waited = wait_until("key compaction", Duration::from_secs(60), || Ok(metric_at(&playground.http, removed)? >= superseded))?;
    println!("key compaction removed the {superseded} superseded records {waited:?} after the last produce");
    let compacted = read_compacted(&playground.bootstrap, "settings", sentinel)?;
    ensure!(
        tombstones_written.elapsed() < DELETE_RETENTION,
        "the machine was too slow to look at the tombstones within delete.retention.ms ({:?})",
        tombstones_written.elapsed()
    );
    ensure!(compacted.len() as u64 == KEYS + 1, "read {} records after compaction, expected {}", compacted.len(), KEYS + 1);
    ensure!(compacted == expected(true), "after compaction the topic does not hold exactly the latest value of each key");
    ensure!(compacted[0].0 > 0, "offset 0 was superseded; the consumer should have moved past the gap");
    ensure!(earliest(&playground.bootstrap, "settings", 0)? == 0, "compaction moved the log start");

    let waited = wait_until("tombstones to pass delete.retention.ms", Duration::from_secs(60), || {
        Ok(metric_at(&playground.http, removed)? >= superseded + TOMBSTONED as f64)
    })?;
    println!("tombstones removed {waited:?} later ({:?} after they were written)", tombstones_written.elapsed());
    ensure!(tombstones_written.elapsed() >= DELETE_RETENTION, "tombstones went before delete.retention.ms");
    let without_tombstones = expected(false);
    ensure!(read_compacted(&playground.bootstrap, "settings", sentinel)? == without_tombstones, "tombstoned keys are still there");
    playground.restart()?;
    ensure!(
        read_compacted(&playground.bootstrap, "settings", sentinel)? == without_tombstones,
        "after a restart the topic does not hold exactly the latest value of each live key"
    );
    cell.pass();
    Ok(())
}

/// The segment object files under the playground's data directory.
fn segment_files(playground: &Playground) -> Result<std::collections::BTreeSet<std::path::PathBuf>> {
    let mut files = std::collections::BTreeSet::new();
    let clusters = playground.data_dir.path().join("bucket").join("clusters");
    if !clusters.exists() {
        // Nothing stored yet: the first PUT makes the cluster's directory.
        return Ok(files);
    }
    for cluster in std::fs::read_dir(&clusters)? {
        let segments = cluster?.path().join("segments");
        if segments.exists() {
            for entry in std::fs::read_dir(segments)? {
                let path = entry?.path();
                if path.extension().is_some_and(|extension| extension == "seg") {
                    files.insert(path);
                }
            }
        }
    }
    Ok(files)
}

/// Issue 21, done-when 5: in the playground, a topic with retention.ms=5000 loses its old records
/// and the objects that held them leave the data directory; what is produced afterwards is served,
/// and the new log start holds after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_playground_topic_with_five_seconds_of_retention_loses_its_old_records_and_their_objects() -> Result<()> {
    // Compaction off for the test's length, so only retention and GC touch the topic's objects.
    let mut playground = Playground::start(&["--compaction-interval", "1h", "--retention-interval", "1s", "--gc-grace", "2s"])?;
    let admin: AdminClient<DefaultClientContext> = kafka::config(&playground.bootstrap).create()?;
    let topic = NewTopic::new("short-lived", 1, TopicReplication::Fixed(1)).set("retention.ms", "5000");
    for result in admin.create_topics([&topic], &AdminOptions::new()).await? {
        if let Err((name, error)) = result {
            bail!("failed to create {name}: {error}");
        }
    }
    let before = segment_files(&playground)?;
    let producer: FutureProducer = kafka::config(&playground.bootstrap).set("acks", "all").set("linger.ms", "0").create()?;
    let send = |index: u64| {
        let (key, value) = (records::key(index), records::value(index));
        let producer = &producer;
        async move {
            producer
                .send(FutureRecord::to("short-lived").partition(0).key(&key).payload(&value), Duration::from_secs(10))
                .await
                .map(|delivery| delivery.offset)
                .map_err(|(error, _)| anyhow::anyhow!("produce failed: {error}"))
        }
    };
    for index in 0..5 {
        send(index).await?;
    }
    let written: Vec<std::path::PathBuf> = segment_files(&playground)?.difference(&before).cloned().collect();
    ensure!(!written.is_empty(), "producing wrote no segment object into the data directory");

    let waited = wait_until("retention to drop the five records", Duration::from_secs(30), || {
        Ok(earliest(&playground.bootstrap, "short-lived", 0)? == 5)
    })?;
    let (error, _) = fetch_raw(&playground.bootstrap, "short-lived", 0, 0)?;
    ensure!(error == OFFSET_OUT_OF_RANGE, "fetching a retained-away offset answered error {error}");
    wait_until("GC of the objects that held them", Duration::from_secs(30), || Ok(written.iter().all(|file| !file.exists())))?;
    ensure!(send(5).await? == 5, "the next record did not follow the retained-away ones");

    drop(producer);
    drop(admin);
    playground.restart()?;
    ensure!(earliest(&playground.bootstrap, "short-lived", 0)? == 5, "the log start went back after a restart");
    let bootstrap = playground.bootstrap.clone();
    let stored = tokio::task::spawn_blocking(move || kafka::read_all(&bootstrap, "short-lived", 1, Duration::from_secs(60))).await??;
    let seen: Vec<(i64, Option<u64>)> = stored.values().flatten().map(|record| (record.offset, records::index_of(&record.key))).collect();
    ensure!(seen == [(5, Some(5))], "after the restart the topic served {seen:?}, expected only record 5 at offset 5");
    println!("retention dropped the records {waited:?} after the last produce; {} objects left the data directory", written.len());
    Ok(())
}
