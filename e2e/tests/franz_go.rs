//! franz-go (kgo and kadm; the strict Go client, idempotent by default) against a playground
//! process. The driver (e2e/go) reports what franz-go did as verifiable-client events; the checks
//! are `floe_e2e::verifiable`'s. The idempotence test also reads the stored batch headers off the
//! wire.

use anyhow::{ensure, Context, Result};
use floe_e2e::matrix::Cell;
use floe_e2e::verifiable::{self, Expected};
use floe_e2e::{batches, franz_go_driver, java_driver, Playground};
use std::time::Duration;

const DRIVER_TIMEOUT: Duration = Duration::from_secs(240);

#[test]
fn franz_go_round_trips_100k_records_in_every_codec_through_a_group() -> Result<()> {
    let produce = Cell::open(
        "franz-go",
        "produce",
        "100,000 keyed records with headers from five concurrent producers (none, gzip, snappy, lz4, zstd), acks=all; every ack checked",
    );
    let consume = Cell::open(
        "franz-go",
        "consume",
        "the 100,000 records read back byte for byte at their acknowledged partition and offset, per-partition order kept; \
         the Java client (Kafka's own decompressors) reads them all too",
    );
    let groups = Cell::open(
        "franz-go",
        "groups",
        "a cooperative-sticky group member reads every partition and commits; kadm reads the commits back equal to the end offsets",
    );
    let playground = Playground::start(&[])?;
    let expected = Expected::new("franz-go-roundtrip", 12, 100_000);
    let command = franz_go_driver(&[
        "roundtrip",
        "--bootstrap",
        &playground.bootstrap,
        "--topic",
        &expected.topic,
        "--partitions",
        "12",
        "--records",
        "100000",
    ])?;
    let events = verifiable::run(command, DRIVER_TIMEOUT)?;
    let read_back = events.check_group_round_trip(&expected)?;
    println!("franz-go: {} records read back, commits at {:?}", read_back.consumed, read_back.end_offsets);
    // Another client must be able to read what this one wrote: the Java consumer decodes every
    // codec with Kafka's own implementation, which Floe (passing batches through) does not check.
    let read = verifiable::run(java_driver(&["read", "--bootstrap", &playground.bootstrap, "--topic", &expected.topic])?, DRIVER_TIMEOUT)?;
    let java_read = events.check_read_by(&read, &expected)?;
    println!("the Java client read all {} records franz-go wrote", java_read.consumed);
    produce.pass();
    consume.pass();
    groups.pass();
    Ok(())
}

#[test]
fn kadm_creates_grows_configures_and_deletes_topics_and_groups() -> Result<()> {
    let admin = Cell::open(
        "franz-go",
        "admin",
        "kadm: create topic (and TOPIC_ALREADY_EXISTS), create partitions (shrink refused), describe and incrementally alter configs, \
         list/describe/lag a live group, NON_EMPTY_GROUP while it has a member, delete group, delete topic",
    );
    let playground = Playground::start(&[])?;
    let (topic, group) = ("franz-go-admin", "franz-go-admin-admin-group");
    let events = verifiable::run(franz_go_driver(&["admin", "--bootstrap", &playground.bootstrap, "--topic", topic])?, DRIVER_TIMEOUT)?;
    events.check_admin_results(topic, group, "floe-e2e-franz-go")?;
    admin.pass();
    Ok(())
}

#[test]
fn franz_go_idempotent_producer_writes_every_record_exactly_once_with_gapless_sequences() -> Result<()> {
    const RECORDS: u64 = 50_000;
    const PARTITIONS: i32 = 6;
    let idempotence = Cell::open(
        "franz-go",
        "idempotence",
        "50,000 records from the default idempotent producer: read back exactly once with gapless offsets, one producer id; \
         stored batches carry sequences from 0 without gaps or repeats",
    );
    let playground = Playground::start(&[])?;
    let expected = Expected::new("franz-go-idempotence", PARTITIONS, RECORDS);
    let command = franz_go_driver(&[
        "idempotence",
        "--bootstrap",
        &playground.bootstrap,
        "--topic",
        &expected.topic,
        "--partitions",
        &PARTITIONS.to_string(),
        "--records",
        &RECORDS.to_string(),
    ])?;
    let events = verifiable::run(command, DRIVER_TIMEOUT)?;
    let read_back = events.check_read_back(&expected)?;
    let identity = events.check_exactly_once(&expected, &read_back)?;
    let (producer_id, epoch) = identity.context("franz-go reports the producer id of each acknowledgement, and did not")?;
    println!("franz-go: {RECORDS} records exactly once as producer id {producer_id} epoch {epoch}");
    let log = batches::check_idempotent_batches(&batches::read_batch_headers(&playground.bootstrap, &expected.topic, PARTITIONS)?)?;
    println!("stored: {} batches, {} records, producer ids {:?}", log.batches, log.records, log.producer_ids);
    ensure!(log.records == RECORDS as i64, "the stored batches hold {} records, expected {RECORDS}", log.records);
    ensure!(log.producer_ids.len() == 1, "the batches carry producer ids {:?}, expected one", log.producer_ids);
    idempotence.pass();
    Ok(())
}

/// Issue 19, done-when 7: franz-go's transactional producer commits every other transaction of ten
/// records and aborts the rest; its read_committed consumer reads exactly the committed records
/// (`Events::prove_transactions`).
#[test]
fn franz_go_transactions_commit_and_abort_and_read_committed_sees_only_the_committed() -> Result<()> {
    verifiable::Events::prove_transactions("franz-go", franz_go_driver)?;
    Ok(())
}

/// Issue 19, done-when 7: three franz-go members on the KIP-848 protocol (`ServerSideBalancer`,
/// ConsumerGroupHeartbeat) split 12 partitions, read what the Java producer wrote exactly once,
/// and commit the end offsets; a second run in the same group, after an agent restart, resumes at
/// those commits.
#[test]
fn franz_go_consumers_with_the_kip_848_protocol_split_partitions_commit_and_resume() -> Result<()> {
    let cell = Cell::open(
        "franz-go",
        "kip848",
        "3 ServerSideBalancer members split 12 partitions, read 5,000 records once and commit; after a restart the group resumes at its commits",
    );
    let mut playground = Playground::start(&[])?;
    let produce = verifiable::Events::java_produce_range;
    let consume = |bootstrap: &str, expected: &Expected| -> Result<verifiable::Events> {
        let count = expected.records.to_string();
        let command = franz_go_driver(&[
            "group-consume",
            "--bootstrap",
            bootstrap,
            "--topic",
            &expected.topic,
            "--group",
            "franz-go-kip848",
            "--members",
            "3",
            "--records",
            &count,
        ])?;
        verifiable::run(command, DRIVER_TIMEOUT)
    };
    let first = Expected::range("franz-go-kip848", 12, 0, 5_000);
    let produced = produce(&playground.bootstrap, &first)?;
    verifiable::Events::combined(&produced, &consume(&playground.bootstrap, &first)?).check_group_members(&first, 3)?;
    playground.restart()?;
    let second = Expected::range("franz-go-kip848", 12, 5_000, 2_000);
    let produced = produce(&playground.bootstrap, &second)?;
    verifiable::Events::combined(&produced, &consume(&playground.bootstrap, &second)?).check_group_members(&second, 3)?;
    cell.pass();
    Ok(())
}

/// Issue 19, done-when 7: franz-go reads a compacted topic that key compaction cleaned (gaps in
/// the offsets, rewritten batches) as exactly the latest value of each key at the offset it was
/// acknowledged at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn franz_go_reads_a_topic_key_compaction_cleaned_as_the_latest_value_of_each_key() -> Result<()> {
    use floe_e2e::{http_get, kafka, metric_value, wait_until};
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let cell = Cell::open(
        "franz-go",
        "compaction",
        "10,000 updates over 100 keys, cleaned by key compaction: read back as the latest value per key at its acknowledged offset",
    );
    const KEYS: u64 = 100;
    const UPDATES: u64 = 10_000;
    let playground = Playground::start(&["--key-compaction-interval", "1s", "--compaction-interval", "1h"])?;
    let admin: AdminClient<DefaultClientContext> = kafka::config(&playground.bootstrap).create()?;
    let topic = NewTopic::new("franz-go-compacted", 1, TopicReplication::Fixed(1)).set("cleanup.policy", "compact");
    for result in admin.create_topics(&[topic], &AdminOptions::new()).await? {
        if let Err((name, error)) = result {
            anyhow::bail!("failed to create {name}: {error}");
        }
    }
    let producer: FutureProducer = kafka::config(&playground.bootstrap).set("acks", "all").set("linger.ms", "20").create()?;
    let mut deliveries = Vec::with_capacity(UPDATES as usize);
    for index in 0..UPDATES {
        let (key, value) = (format!("key-{:03}", index % KEYS), format!("value-{index}"));
        let delivery = producer
            .send_result(FutureRecord::to("franz-go-compacted").partition(0).key(&key).payload(&value))
            .map_err(|(error, _)| anyhow::anyhow!("enqueue failed: {error}"))?;
        deliveries.push((key, value, delivery));
    }
    let mut latest: std::collections::BTreeMap<String, (i64, String)> = Default::default();
    for (key, value, delivery) in deliveries {
        let offset = delivery.await?.map_err(|(error, _)| anyhow::anyhow!("produce failed: {error}"))?.offset;
        if latest.get(&key).is_none_or(|(known, _)| *known < offset) {
            latest.insert(key, (offset, value));
        }
    }
    // The newest chunk is never cleaned (Kafka's active segment): end with a flush of its own.
    let sentinel = producer
        .send(FutureRecord::to("franz-go-compacted").partition(0).key("sentinel").payload("last"), Duration::from_secs(10))
        .await
        .map_err(|(error, _)| anyhow::anyhow!("produce failed: {error}"))?
        .offset;
    latest.insert("sentinel".into(), (sentinel, "last".into()));
    let superseded = (UPDATES - KEYS) as f64;
    wait_until("key compaction", Duration::from_secs(60), || {
        let (_, metrics) = http_get(&playground.http, "/metrics")?;
        Ok(metric_value(&metrics, "floe_key_compaction_records_removed_total").unwrap_or_default() >= superseded)
    })?;
    let events = verifiable::run(
        franz_go_driver(&["read", "--bootstrap", &playground.bootstrap, "--topic", "franz-go-compacted"])?,
        DRIVER_TIMEOUT,
    )?;
    let mut read: Vec<(i64, String, String)> = Vec::new();
    for event in &events.events {
        if let verifiable::Event::RecordConsumed { offset, key, value, .. } = event {
            let text = |bytes: &Option<Vec<u8>>| String::from_utf8_lossy(bytes.as_deref().unwrap_or_default()).into_owned();
            read.push((*offset, text(key), text(value)));
        }
    }
    let mut expected: Vec<(i64, String, String)> = latest.into_iter().map(|(key, (offset, value))| (offset, key, value)).collect();
    expected.sort();
    ensure!(read.len() == expected.len(), "franz-go read {} records of the compacted topic, expected {}", read.len(), expected.len());
    ensure!(read == expected, "franz-go did not read exactly the latest value of each key at its offset");
    cell.pass();
    Ok(())
}
