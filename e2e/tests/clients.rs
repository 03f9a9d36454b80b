//! Done-when 1 and 2 of the playground issue: real clients (the Java client, kafka-python,
//! Debian's kcat on librdkafka 2.0.2) against a playground process. The drivers live in
//! e2e/java, e2e/python and e2e/scripts. The kafka-python and kcat adapters report
//! verifiable-client events that `floe_e2e::verifiable` checks (every record byte for byte, at its
//! acknowledged offset where the client reports one, in order, commits at the end offsets or, for
//! kcat, a group that resumes at them); the Java driver still verifies byte-for-byte equality and
//! per-partition order itself and prints an OK line only when everything matched.

use floe_e2e::matrix::Cell;
use floe_e2e::verifiable::{self, Expected};
use floe_e2e::{java_driver, kafka, kcat_driver, python_driver, run_driver, Playground};
use std::time::Duration;

const DRIVER_TIMEOUT: Duration = Duration::from_secs(600);

#[test]
fn the_java_client_round_trips_100k_records_in_every_codec_through_a_group() -> anyhow::Result<()> {
    let cells = round_trip_cells("java", "the Java client 4.1.1");
    let playground = Playground::start(&[])?;
    let command = java_driver(&[
        "roundtrip",
        "--bootstrap",
        &playground.bootstrap,
        "--topic",
        "java-roundtrip",
        "--partitions",
        "12",
        "--records",
        "100000",
    ])?;
    run_driver(command, "OK java roundtrip 100000 records", DRIVER_TIMEOUT)?;
    cells.into_iter().for_each(Cell::pass);
    Ok(())
}

#[test]
fn kafka_python_round_trips_100k_records_in_every_codec_through_a_group() -> anyhow::Result<()> {
    let cells = round_trip_cells("kafka-python", "kafka-python 3.0.12");
    let playground = Playground::start(&[])?;
    let expected = Expected::new("python-roundtrip", 12, 100_000);
    let command = python_driver(&[
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
    verifiable::run(command, DRIVER_TIMEOUT)?.check_group_round_trip(&expected)?;
    cells.into_iter().for_each(Cell::pass);
    Ok(())
}

#[tokio::test]
async fn kcat_on_librdkafka_2_0_2_round_trips_100k_records_in_every_codec() -> anyhow::Result<()> {
    let cells = round_trip_cells("kcat", "Debian kcat 1.7.1 on librdkafka 2.0.2 (-C, then -G twice: group resumes from its commit)");
    let playground = Playground::start(&[])?;
    kafka::create_topic(&playground.bootstrap, "kcat-roundtrip", 12).await?;
    let command = kcat_driver(&[&playground.bootstrap, "kcat-roundtrip", "100000"])?;
    let events = tokio::task::spawn_blocking(move || verifiable::run(command, DRIVER_TIMEOUT)).await??;
    events.check_kcat_round_trip(&Expected::kcat("kcat-roundtrip", 12, 100_000))?;
    cells.into_iter().for_each(Cell::pass);
    Ok(())
}

#[test]
fn a_java_group_of_three_resumes_from_committed_offsets_after_a_restart() -> anyhow::Result<()> {
    let cell =
        Cell::open("java", "groups", "3 members split 12 partitions and commit; after an agent restart they resume exactly at the commits");
    let mut playground = Playground::start(&[])?;
    let produce = |bootstrap: &str, start: &str, count: &str| {
        java_driver(&[
            "produce-range",
            "--bootstrap",
            bootstrap,
            "--topic",
            "groups",
            "--partitions",
            "12",
            "--start",
            start,
            "--count",
            count,
        ])
    };
    let consume = |bootstrap: &str, start: &str, count: &str| {
        java_driver(&[
            "group-consume",
            "--bootstrap",
            bootstrap,
            "--topic",
            "groups",
            "--group",
            "resume",
            "--members",
            "3",
            "--expect-start",
            start,
            "--expect-count",
            count,
        ])
    };
    run_driver(produce(&playground.bootstrap, "0", "20000")?, "OK java produced 20000", DRIVER_TIMEOUT)?;
    run_driver(consume(&playground.bootstrap, "0", "20000")?, "OK java group-consume 20000 records", DRIVER_TIMEOUT)?;
    playground.restart()?;
    run_driver(produce(&playground.bootstrap, "20000", "10000")?, "OK java produced 10000", DRIVER_TIMEOUT)?;
    // The driver fails if any key below 20000 comes back (not resumed) or any is missing.
    run_driver(consume(&playground.bootstrap, "20000", "10000")?, "OK java group-consume 10000 records", DRIVER_TIMEOUT)?;
    cell.pass();
    Ok(())
}

/// The produce, consume and groups cells a 100,000-record round trip through a group proves.
fn round_trip_cells(client: &'static str, who: &str) -> Vec<Cell> {
    vec![
        Cell::open(client, "produce", format!("{who}: 100,000 records with keys and headers in 5 codecs, acks=all")),
        Cell::open(client, "consume", format!("{who}: all 100,000 read back byte for byte, in order per partition")),
        Cell::open(client, "groups", format!("{who}: the read goes through a consumer group that commits")),
    ]
}
