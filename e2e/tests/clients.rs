//! Done-when 1 and 2 of the playground issue: real clients (the Java client, kafka-python,
//! Debian's kcat on librdkafka 2.0.2) against a playground process. The drivers live in
//! e2e/java, e2e/python and e2e/scripts; each verifies byte-for-byte equality and per-partition
//! order itself and prints an OK line only when everything matched.

use floe_e2e::{java_driver, kafka, kcat_driver, python_driver, run_driver, Playground};
use std::time::Duration;

const DRIVER_TIMEOUT: Duration = Duration::from_secs(600);

#[test]
fn the_java_client_round_trips_100k_records_in_every_codec_through_a_group() -> anyhow::Result<()> {
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
    Ok(())
}

#[test]
fn kafka_python_round_trips_100k_records_in_every_codec_through_a_group() -> anyhow::Result<()> {
    let playground = Playground::start(&[])?;
    let command =
        python_driver(&["--bootstrap", &playground.bootstrap, "--topic", "python-roundtrip", "--partitions", "12", "--records", "100000"])?;
    run_driver(command, "OK python roundtrip 100000 records", DRIVER_TIMEOUT)?;
    Ok(())
}

#[tokio::test]
async fn kcat_on_librdkafka_2_0_2_round_trips_100k_records_in_every_codec() -> anyhow::Result<()> {
    let playground = Playground::start(&[])?;
    kafka::create_topic(&playground.bootstrap, "kcat-roundtrip", 12).await?;
    let command = kcat_driver(&[&playground.bootstrap, "kcat-roundtrip", "100000"])?;
    tokio::task::spawn_blocking(move || run_driver(command, "OK kcat roundtrip 100000 records", DRIVER_TIMEOUT)).await??;
    Ok(())
}

#[test]
fn a_java_group_of_three_resumes_from_committed_offsets_after_a_restart() -> anyhow::Result<()> {
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
    Ok(())
}
