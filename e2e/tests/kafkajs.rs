//! kafkajs 2.2.4 (pure JavaScript; snappy, lz4 and zstd registered as codecs the way kafkajs
//! applications do) against a playground process. The driver (e2e/node) reports what kafkajs did
//! as verifiable-client events; the checks are `floe_e2e::verifiable`'s. The idempotence test also
//! reads the stored batch headers off the wire.

use anyhow::{ensure, Result};
use floe_e2e::matrix::Cell;
use floe_e2e::verifiable::{self, Expected};
use floe_e2e::{batches, java_driver, kafkajs_driver, Playground};
use std::time::Duration;

const DRIVER_TIMEOUT: Duration = Duration::from_secs(240);

#[test]
fn kafkajs_round_trips_100k_records_in_every_codec_through_a_group() -> Result<()> {
    let produce = Cell::open(
        "kafkajs",
        "produce",
        "100,000 keyed records with headers from five concurrent producers (none, gzip, snappy, lz4, zstd), acks=-1; \
         per-partition base offsets of every send checked",
    );
    let consume = Cell::open(
        "kafkajs",
        "consume",
        "the 100,000 records read back byte for byte at their acknowledged partition and offset, per-partition order kept; \
         the Java client (Kafka's own decompressors) reads them all too",
    );
    let groups = Cell::open(
        "kafkajs",
        "groups",
        "a group member (eachBatch) reads every partition and commits; fetchOffsets reads the commits back equal to the high watermarks",
    );
    let playground = Playground::start(&[])?;
    let expected = Expected::new("kafkajs-roundtrip", 12, 100_000);
    let command = kafkajs_driver(&[
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
    events.check_group_round_trip(&expected)?;
    // Another client must be able to read what this one wrote: the Java consumer decodes every
    // codec with Kafka's own implementation, which Floe (passing batches through) does not check.
    let read = verifiable::run(java_driver(&["read", "--bootstrap", &playground.bootstrap, "--topic", &expected.topic])?, DRIVER_TIMEOUT)?;
    let java_read = events.check_read_by(&read, &expected)?;
    println!("the Java client read all {} records kafkajs wrote", java_read.consumed);
    produce.pass();
    consume.pass();
    groups.pass();
    Ok(())
}

#[test]
fn kafkajs_admin_creates_grows_configures_and_deletes_topics_and_groups() -> Result<()> {
    let admin = Cell::open(
        "kafkajs",
        "admin",
        "createTopics (twice), createPartitions (shrink refused), describeConfigs and AlterConfigs (replace semantics), \
         listGroups/describeGroups of a live group, NON_EMPTY_GROUP while it has a member, deleteGroups, deleteTopics",
    );
    let playground = Playground::start(&[])?;
    let command = kafkajs_driver(&["admin", "--bootstrap", &playground.bootstrap, "--topic", "kafkajs-admin"])?;
    verifiable::run(command, DRIVER_TIMEOUT)?.check_admin_results("kafkajs-admin", "kafkajs-admin-admin-group", "floe-e2e-kafkajs")?;
    admin.pass();
    Ok(())
}

#[test]
fn kafkajs_idempotent_producer_writes_every_record_exactly_once_with_gapless_sequences() -> Result<()> {
    const RECORDS: u64 = 20_000;
    const PARTITIONS: i32 = 6;
    let idempotence = Cell::open(
        "kafkajs",
        "idempotence",
        "20,000 records from an idempotent producer (maxInFlightRequests 1): read back exactly once with gapless offsets, \
         one producer id; stored batches carry sequences from 0 without gaps or repeats",
    );
    let playground = Playground::start(&[])?;
    let expected = Expected::new("kafkajs-idempotence", PARTITIONS, RECORDS);
    let topic = expected.topic.as_str();
    let command = kafkajs_driver(&[
        "idempotence",
        "--bootstrap",
        &playground.bootstrap,
        "--topic",
        topic,
        "--partitions",
        &PARTITIONS.to_string(),
        "--records",
        &RECORDS.to_string(),
    ])?;
    let events = verifiable::run(command, DRIVER_TIMEOUT)?;
    let read_back = events.check_read_back(&expected)?;
    events.check_exactly_once(&expected, &read_back)?;
    let log = batches::check_idempotent_batches(&batches::read_batch_headers(&playground.bootstrap, topic, PARTITIONS)?)?;
    println!("stored: {} batches, {} records, producer ids {:?}", log.batches, log.records, log.producer_ids);
    ensure!(log.records == RECORDS as i64, "the stored batches hold {} records, expected {RECORDS}", log.records);
    ensure!(log.producer_ids.len() == 1, "the batches carry producer ids {:?}, expected one", log.producer_ids);
    idempotence.pass();
    Ok(())
}

/// Issue 19, done-when 7: kafkajs's transactional producer commits every other transaction of ten
/// records and aborts the rest; its read_committed consumer reads exactly the committed records
/// (`Events::prove_transactions`).
#[test]
fn kafkajs_transactions_commit_and_abort_and_read_committed_sees_only_the_committed() -> Result<()> {
    verifiable::Events::prove_transactions("kafkajs", kafkajs_driver)?;
    Ok(())
}
