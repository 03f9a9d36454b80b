//! Done-when 1 and 2 of the playground issue: real clients (the Java client, kafka-python,
//! Debian's kcat on librdkafka 2.0.2) against a playground process. The drivers live in
//! e2e/java, e2e/python and e2e/scripts; each reports verifiable-client events that
//! `floe_e2e::verifiable` checks (every record byte for byte, at its acknowledged offset where the
//! client reports one, in order, commits at the end offsets or, for kcat, a group that resumes at
//! them).

use floe_e2e::matrix::Cell;
use floe_e2e::verifiable::{self, Events, Expected};
use floe_e2e::{http_get, java_driver, kafka, kcat_driver, metric_value, python_driver, wait_until, Playground};
use std::time::Duration;

const DRIVER_TIMEOUT: Duration = Duration::from_secs(600);

#[test]
fn the_java_client_round_trips_100k_records_in_every_codec_through_a_group() -> anyhow::Result<()> {
    let cells = round_trip_cells("java", "the Java client 4.1.1");
    let playground = Playground::start(&[])?;
    let expected = Expected::new("java-roundtrip", 12, 100_000);
    let command = java_driver(&[
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
    events.check_default_partitioner(&expected)?;
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
    let produce = |bootstrap: &str, expected: &Expected| -> anyhow::Result<Events> {
        let events = Events::java_produce_range(bootstrap, expected)?;
        events.check_default_partitioner(expected)?;
        Ok(events)
    };
    let consume = |bootstrap: &str, expected: &Expected| -> anyhow::Result<Events> {
        let count = expected.records.to_string();
        let command = java_driver(&[
            "group-consume",
            "--bootstrap",
            bootstrap,
            "--topic",
            &expected.topic,
            "--group",
            "resume",
            "--members",
            "3",
            "--records",
            &count,
        ])?;
        verifiable::run(command, DRIVER_TIMEOUT)
    };
    let first = Expected::range("groups", 12, 0, 20_000);
    let produced = produce(&playground.bootstrap, &first)?;
    Events::combined(&produced, &consume(&playground.bootstrap, &first)?).check_group_members(&first, 3)?;
    playground.restart()?;
    let second = Expected::range("groups", 12, 20_000, 10_000);
    let produced = produce(&playground.bootstrap, &second)?;
    // Any record below 20,000 read again (the group did not resume at its commits) or any missing
    // fails the check; the commits must reach the new end offsets.
    Events::combined(&produced, &consume(&playground.bootstrap, &second)?).check_group_members(&second, 3)?;
    cell.pass();
    Ok(())
}

/// Fetch sessions (KIP-227): the Java consumer opens one and fetches incrementally; a restart of
/// the agent loses it, and the same consumer (same process, same connection address) carries on
/// with a new session, reading every record exactly once.
#[test]
fn the_java_consumer_fetches_incrementally_and_carries_on_when_a_restart_loses_its_session() -> anyhow::Result<()> {
    // A fixed port, so the running consumer reconnects to the restarted agent.
    let listen = format!("127.0.0.1:{}", std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port());
    let mut playground = Playground::start(&["--kafka-listen", &listen])?;
    let incremental_fetches = |http: &str| -> anyhow::Result<f64> {
        let (_, metrics) = http_get(http, "/metrics")?;
        Ok(metric_value(&metrics, "floe_fetch_requests_total{kind=\"incremental\"}").unwrap_or(0.0))
    };
    let first = Expected::range("sessions", 12, 0, 1_000);
    let produced_first = Events::java_produce_range(&playground.bootstrap, &first)?;
    let bootstrap = playground.bootstrap.clone();
    let consumer = std::thread::spawn(move || -> anyhow::Result<Events> {
        let command = java_driver(&[
            "group-consume",
            "--bootstrap",
            &bootstrap,
            "--topic",
            "sessions",
            "--group",
            "sessions",
            "--members",
            "1",
            "--records",
            "2000",
        ])?;
        verifiable::run(command, DRIVER_TIMEOUT)
    });
    wait_until("the consumer fetches incrementally", Duration::from_secs(60), || Ok(incremental_fetches(&playground.http)? >= 5.0))?;
    playground.restart()?;
    let second = Expected::range("sessions", 12, 1_000, 1_000);
    let produced_second = Events::java_produce_range(&playground.bootstrap, &second)?;
    let consumed = consumer.join().map_err(|_| anyhow::anyhow!("the consumer thread panicked"))??;
    // The restarted agent saw the consumer's new session at work.
    anyhow::ensure!(incremental_fetches(&playground.http)? >= 1.0, "the consumer fetched without a session after the restart");
    let produced = Events {
        client: produced_first.client.clone(),
        events: produced_first.events.iter().chain(&produced_second.events).cloned().collect(),
    };
    Events::combined(&produced, &consumed).check_group_members(&Expected::range("sessions", 12, 0, 2_000), 1)?;
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

/// Issue 19, done-when 7: kafka-python's transactional producer commits every other transaction of ten
/// records and aborts the rest; its read_committed consumer reads exactly the committed records
/// (`Events::prove_transactions`).
#[test]
fn kafka_python_transactions_commit_and_abort_and_read_committed_sees_only_the_committed() -> anyhow::Result<()> {
    verifiable::Events::prove_transactions("kafka-python", python_driver)?;
    Ok(())
}
