//! Background jobs in cluster mode (done-when 6 and 7 of the cluster issue): compaction keeps
//! fetched bytes identical, retention moves the log start, GC removes orphans only after the
//! grace period, fsck reports clean, and a new agent starts from a snapshot and serves old offsets.

use anyhow::{bail, ensure, Result};
use bytes::{Bytes, BytesMut};
use floe_agent::storage::{ObjectStoreUrl, S3Options, SegmentStore};
use floe_e2e::cluster::{Agent, Infrastructure, BUCKET};
use floe_e2e::wire::RawConnection;
use floe_e2e::{floe_binary, http_get, kafka, metric_value, records};
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
    let (_, metrics) = http_get(&agent.http, "/metrics")?;
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
    let grace_left = Duration::from_secs(5).saturating_sub(orphan_written.elapsed());
    std::thread::sleep(grace_left);
    ensure!(exists(&orphan) || orphan_written.elapsed() > Duration::from_secs(6), "the orphan was deleted before its grace period");
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
