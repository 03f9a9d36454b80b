//! librdkafka (bundled 2.x through the rdkafka crate) against a playground process: the
//! round trip in every codec, durability across kill -9, and the segment-count bound.

use anyhow::{bail, ensure, Result};
use floe_e2e::kafka::{self, read_all};
use floe_e2e::matrix::Cell;
use floe_e2e::records::{self, CODECS};
use floe_e2e::{http_get, metric_value, Playground};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn producer(bootstrap: &str, codec: &str, extra: &[(&str, &str)]) -> Result<FutureProducer> {
    let mut config = kafka::config(bootstrap);
    config.set("acks", "all").set("compression.codec", codec).set("linger.ms", "5").set("message.timeout.ms", "30000");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    Ok(config.create()?)
}

fn headers_for(index: u64) -> OwnedHeaders {
    OwnedHeaders::new()
        .insert(Header { key: "h-index", value: Some(index.to_string().as_bytes()) })
        .insert(Header { key: "h-client", value: Some("rdkafka".as_bytes()) })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_round_trips_100k_records_with_keys_and_headers_in_every_codec_through_a_group() -> Result<()> {
    const RECORDS: u64 = 100_000;
    let who = "librdkafka 2.12 (rdkafka crate)";
    let cells = [
        Cell::open("librdkafka", "produce", format!("{who}: 100,000 records with keys and headers in 5 codecs, acks=all")),
        Cell::open("librdkafka", "consume", format!("{who}: all 100,000 read back byte for byte, in order per partition")),
        Cell::open("librdkafka", "groups", format!("{who}: the read goes through a subscribed consumer group that commits")),
    ];
    let playground = Playground::start(&[])?;
    let topic = "rdkafka-roundtrip";
    kafka::create_topic(&playground.bootstrap, topic, 12).await?;
    let per_codec = RECORDS / CODECS.len() as u64;
    for (codec_index, codec) in CODECS.iter().enumerate() {
        let producer = producer(&playground.bootstrap, codec, &[])?;
        let first = codec_index as u64 * per_codec;
        let mut deliveries = Vec::with_capacity(per_codec as usize);
        for index in first..first + per_codec {
            let (key, value) = (records::key(index), records::value(index));
            let record = FutureRecord::to(topic).key(&key).payload(&value).headers(headers_for(index));
            deliveries.push(producer.send_result(record).map_err(|(error, _)| anyhow::anyhow!("enqueue failed: {error}"))?);
        }
        for delivery in deliveries {
            if let Err((error, _)) = delivery.await? {
                bail!("delivery failed with codec {codec}: {error}");
            }
        }
    }

    let consumer: BaseConsumer = kafka::config(&playground.bootstrap)
        .set("group.id", "rdkafka-roundtrip-group")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[topic])?;
    let mut seen: HashMap<u64, (i32, i64)> = HashMap::new();
    let mut last_index_per_partition_and_codec: BTreeMap<(i32, u64), u64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    while (seen.len() as u64) < RECORDS {
        ensure!(Instant::now() < deadline, "consumed {} of {RECORDS} records before the deadline", seen.len());
        let Some(message) = consumer.poll(Duration::from_millis(200)) else { continue };
        let message = message?;
        let key = message.key().unwrap_or_default();
        let Some(index) = records::index_of(key) else { bail!("unexpected key {key:?}") };
        ensure!(message.payload().unwrap_or_default() == records::value(index).as_slice(), "value of record {index} differs");
        let headers: Vec<(String, Vec<u8>)> = message
            .headers()
            .map(|headers| headers.iter().map(|header| (header.key.to_string(), header.value.unwrap_or_default().to_vec())).collect())
            .unwrap_or_default();
        ensure!(
            headers == vec![("h-index".to_string(), index.to_string().into_bytes()), ("h-client".to_string(), b"rdkafka".to_vec())],
            "headers of record {index} differ: {headers:?}"
        );
        ensure!(seen.insert(index, (message.partition(), message.offset())).is_none(), "record {index} consumed twice");
        let codec = index / per_codec;
        if let Some(previous) = last_index_per_partition_and_codec.insert((message.partition(), codec), index) {
            ensure!(previous < index, "partition {} returned record {index} after {previous}", message.partition());
        }
    }
    consumer.commit_consumer_state(CommitMode::Sync)?;
    println!("consumed and verified {RECORDS} records through a consumer group");

    // The HTTP side tells the same story.
    ensure!(http_get(&playground.http, "/healthz")?.0 == 200, "/healthz is not 200");
    ensure!(http_get(&playground.http, "/readyz")?.0 == 200, "/readyz is not 200");
    let (status, metrics) = http_get(&playground.http, "/metrics")?;
    ensure!(status == 200, "/metrics answered {status}");
    for (sample, at_least) in [
        ("floe_requests_total{api=\"produce\",outcome=\"ok\"}", 1.0),
        ("floe_requests_total{api=\"fetch\",outcome=\"ok\"}", 1.0),
        ("floe_flushes_total", 1.0),
        ("floe_bytes_in_total", 1_000_000.0),
        ("floe_bytes_out_total", 1_000_000.0),
        ("floe_object_store_operations_total{operation=\"put\",outcome=\"ok\"}", 1.0),
        ("floe_flush_duration_seconds_count", 1.0),
        ("floe_journal_commit_duration_seconds_count", 1.0),
    ] {
        let value = metric_value(&metrics, sample);
        ensure!(value.is_some_and(|value| value >= at_least), "metric {sample} is {value:?}, expected at least {at_least}");
    }
    cells.into_iter().for_each(Cell::pass);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_record_survives_kill_9_at_its_acknowledged_offset() -> Result<()> {
    const RECORDS: u64 = 50_000;
    const KILL_AFTER_ACKS: usize = 15_000;
    let mut playground = Playground::start(&[])?;
    let topic = "durability";
    kafka::create_topic(&playground.bootstrap, topic, 6).await?;
    let producer =
        producer(&playground.bootstrap, "lz4", &[("message.timeout.ms", "5000"), ("enable.idempotence", "false"), ("retries", "0")])?;
    let acknowledged: Arc<Mutex<Vec<(u64, i32, i64)>>> = Arc::default();
    let mut waiting = Vec::with_capacity(RECORDS as usize);
    let mut killed = false;
    for index in 0..RECORDS {
        let (key, value) = (records::key(index), records::value(index));
        let record = FutureRecord::to(topic).key(&key).payload(&value);
        let delivery = producer.send_result(record).map_err(|(error, _)| anyhow::anyhow!("enqueue failed: {error}"))?;
        let sink = Arc::clone(&acknowledged);
        waiting.push(tokio::spawn(async move {
            if let Ok(Ok(delivered)) = delivery.await {
                sink.lock().expect("not poisoned").push((index, delivered.partition, delivered.offset));
            }
        }));
        // Pace the producer so the kill lands in the middle of the stream.
        if index % 1_000 == 999 {
            tokio::time::sleep(Duration::from_millis(40)).await;
            let count = acknowledged.lock().expect("not poisoned").len();
            if !killed && count >= KILL_AFTER_ACKS {
                playground.kill_hard()?;
                killed = true;
                println!("killed the playground after {count} acknowledgements, {} records enqueued", index + 1);
            }
        }
    }
    for task in waiting {
        task.await?;
    }
    let acknowledged = std::mem::take(&mut *acknowledged.lock().expect("not poisoned"));
    ensure!(killed, "the producer finished before the kill; the test proved nothing");
    ensure!(acknowledged.len() < RECORDS as usize, "every record was acknowledged although the agent was killed");
    playground.restart_after_kill()?;
    let stored = read_all(&playground.bootstrap, topic, 6, Duration::from_secs(120))?;
    for (index, partition, offset) in &acknowledged {
        let Some(records_of_partition) = stored.get(partition) else { bail!("partition {partition} is empty after restart") };
        let Some(record) = records_of_partition.iter().find(|record| record.offset == *offset) else {
            bail!("acknowledged record {index} at {partition}/{offset} is missing after kill -9");
        };
        ensure!(record.key == records::key(*index), "offset {partition}/{offset} holds another key than acknowledged record {index}");
        ensure!(record.value == records::value(*index), "value of record {index} changed");
    }
    println!("{} acknowledged records all read back at their acknowledged offsets after kill -9", acknowledged.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_partitions_for_ten_seconds_write_a_bounded_number_of_segment_objects() -> Result<()> {
    const PARTITIONS: i32 = 1_000;
    // Four PUTs a second at most: with one object per flush for all partitions (not one per
    // partition), the objects stay within time x cap.
    const MAX_PUTS_PER_SECOND: u64 = 4;
    const FLUSH_MAX_BYTES: u64 = 8 << 20;
    let playground = Playground::start(&["--max-puts-per-second", "4"])?;
    let topic = "wide";
    kafka::create_topic(&playground.bootstrap, topic, PARTITIONS).await?;
    let before = playground.segment_objects()?;
    let producer = producer(&playground.bootstrap, "none", &[("linger.ms", "20")])?;
    let payload = vec![b'x'; 200];
    let started = Instant::now();
    let mut sent_bytes = 0u64;
    let mut deliveries = Vec::new();
    let mut index = 0u64;
    while started.elapsed() < Duration::from_secs(10) {
        for _ in 0..1_000 {
            let partition = (index % PARTITIONS as u64) as i32;
            let key = records::key(index);
            let mut record = FutureRecord::to(topic).partition(partition).key(&key).payload(&payload);
            // Back off while librdkafka's local queue is full: the test measures objects, not speed.
            let delivery = loop {
                match producer.send_result(record) {
                    Ok(delivery) => break delivery,
                    Err((rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), returned)) => {
                        record = returned;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((error, _)) => bail!("enqueue failed: {error}"),
                }
            };
            deliveries.push(delivery);
            sent_bytes += (payload.len() + key.len()) as u64;
            index += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for delivery in deliveries {
        if let Err((error, _)) = delivery.await? {
            bail!("delivery failed: {error}");
        }
    }
    let elapsed = started.elapsed();
    let written = playground.segment_objects()? - before;
    let bound = (elapsed.as_millis() as u64 * MAX_PUTS_PER_SECOND).div_ceil(1_000) + sent_bytes.div_ceil(FLUSH_MAX_BYTES) + 1;
    println!(
        "{index} records to {PARTITIONS} partitions in {elapsed:?} ({sent_bytes} bytes) wrote {written} segment objects; bound {bound}"
    );
    ensure!(written > 0, "no segment objects were written");
    ensure!((written as u64) <= bound, "{written} segment objects exceed the bound of {bound}");
    Ok(())
}

/// Issue 19, done-when 7: librdkafka's transactional producer commits every other transaction of
/// ten records and aborts the rest; a read_committed consumer reads exactly the committed records
/// once each, a read_uncommitted one sees the aborted ones too (so the hiding is real).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_transactions_commit_and_abort_and_read_committed_sees_only_the_committed() -> Result<()> {
    use rdkafka::producer::Producer;
    use rdkafka::TopicPartitionList;
    let cell = Cell::open(
        "librdkafka",
        "transactions",
        "a transactional producer commits half of 20 transactions and aborts the others; read_committed reads exactly the committed records",
    );
    const TOPIC: &str = "rdkafka-transactions";
    const PARTITIONS: i32 = 3;
    let playground = Playground::start(&[])?;
    kafka::create_topic(&playground.bootstrap, TOPIC, PARTITIONS).await?;
    let producer = producer(&playground.bootstrap, "lz4", &[("transactional.id", "rdkafka-tx")])?;
    producer.init_transactions(Duration::from_secs(30))?;
    let mut committed = Vec::new();
    for transaction in 0..20u64 {
        producer.begin_transaction()?;
        let indexes: Vec<u64> = (transaction * 10..transaction * 10 + 10).collect();
        let mut deliveries = Vec::new();
        for index in &indexes {
            let (key, value) = (records::key(*index), records::value(*index));
            let record = FutureRecord::to(TOPIC).key(&key).payload(&value).headers(headers_for(*index));
            deliveries.push(producer.send_result(record).map_err(|(error, _)| anyhow::anyhow!("enqueue failed: {error}"))?);
        }
        for delivery in deliveries {
            delivery.await?.map_err(|(error, _)| anyhow::anyhow!("send failed: {error}"))?;
        }
        if transaction % 2 == 0 {
            producer.commit_transaction(Duration::from_secs(30))?;
            committed.extend(indexes);
        } else {
            producer.abort_transaction(Duration::from_secs(30))?;
        }
    }
    let read = |isolation: &str| -> Result<Vec<u64>> {
        let consumer: BaseConsumer = kafka::config(&playground.bootstrap)
            .set("group.id", format!("rdkafka-transactions-{isolation}"))
            .set("enable.auto.commit", "false")
            .set("isolation.level", isolation)
            .create()?;
        let mut assignment = TopicPartitionList::new();
        for partition in 0..PARTITIONS {
            assignment.add_partition_offset(TOPIC, partition, rdkafka::Offset::Beginning)?;
        }
        consumer.assign(&assignment)?;
        let mut read = Vec::new();
        let (deadline, mut last) = (Instant::now() + Duration::from_secs(60), Instant::now());
        while Instant::now() < deadline && (read.len() < committed.len() || last.elapsed() < Duration::from_secs(2)) {
            if let Some(message) = consumer.poll(Duration::from_millis(200)) {
                let message = message?;
                read.push(records::index_of(message.key().unwrap_or_default()).unwrap_or(u64::MAX));
                ensure!(message.payload() == Some(records::value(read[read.len() - 1]).as_slice()), "a record with the wrong value");
                last = Instant::now();
            }
        }
        read.sort_unstable();
        Ok(read)
    };
    ensure!(read("read_committed")? == committed, "read_committed did not return exactly the committed records");
    let uncommitted = read("read_uncommitted")?;
    ensure!(uncommitted.len() == 200, "read_uncommitted returned {} records, expected all 200", uncommitted.len());
    cell.pass();
    Ok(())
}

/// Issue 19, done-when 7: two librdkafka consumers with `group.protocol=consumer` (KIP-848) split
/// six partitions between them, read every record between them and commit. A record may be read
/// twice (at least once): the first member can read a partition before the second joins and takes
/// it over from the (not yet committed) start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_consumers_with_the_kip_848_protocol_split_partitions_and_commit() -> Result<()> {
    let cell =
        Cell::open("librdkafka", "kip848", "two group.protocol=consumer members split 6 partitions, read every record once and commit");
    const TOPIC: &str = "rdkafka-kip848";
    const RECORDS: u64 = 600;
    let playground = Playground::start(&[])?;
    kafka::create_topic(&playground.bootstrap, TOPIC, 6).await?;
    let producer = producer(&playground.bootstrap, "none", &[])?;
    let mut deliveries = Vec::new();
    for index in 0..RECORDS {
        let (key, value) = (records::key(index), records::value(index));
        deliveries.push(producer.send_result(FutureRecord::to(TOPIC).key(&key).payload(&value)).map_err(|(error, _)| error)?);
    }
    for delivery in deliveries {
        delivery.await?.map_err(|(error, _)| error)?;
    }
    let members: Vec<BaseConsumer> = (0..2)
        .map(|_| {
            kafka::config(&playground.bootstrap)
                .set("group.id", "rdkafka-kip848-group")
                .set("group.protocol", "consumer")
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "earliest")
                .create()
        })
        .collect::<Result<_, _>>()?;
    for member in &members {
        member.subscribe(&[TOPIC])?;
    }
    let mut read: HashMap<u64, u32> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let assigned = |member: &BaseConsumer| -> Vec<i32> {
        member.assignment().map(|list| list.elements().iter().map(|element| element.partition()).collect()).unwrap_or_default()
    };
    loop {
        for member in &members {
            if let Some(message) = member.poll(Duration::from_millis(100)) {
                let message = message?;
                *read.entry(records::index_of(message.key().unwrap_or_default()).unwrap_or(u64::MAX)).or_default() += 1;
            }
        }
        let (first, second) = (assigned(&members[0]), assigned(&members[1]));
        let mut both: Vec<i32> = first.iter().chain(second.iter()).copied().collect();
        both.sort_unstable();
        if read.len() as u64 == RECORDS && !first.is_empty() && !second.is_empty() && both == (0..6).collect::<Vec<_>>() {
            println!("member partitions {first:?} and {second:?}");
            break;
        }
        ensure!(Instant::now() < deadline, "after 60 s: {} records read, assignments {first:?} and {second:?}", read.len());
    }
    ensure!(!read.contains_key(&u64::MAX), "a record with a foreign key was read");
    ensure!(read.len() as u64 == RECORDS, "{} distinct records read, expected {RECORDS}", read.len());
    for member in &members {
        member.commit_consumer_state(CommitMode::Sync)?;
    }
    cell.pass();
    Ok(())
}
