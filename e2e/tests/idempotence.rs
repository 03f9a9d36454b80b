//! Done-when 1 of the Kafka-surface issue: idempotent producers (the Java client and librdkafka)
//! write 100,000 records through a proxy that loses 10% of produce responses, across a kill -9
//! and restart of the agent, and every record is read back exactly once.
//!
//! A lost response means the agent committed the batch but the client never heard: it retries
//! the same sequence numbers on a new connection. Without duplicate detection those retries are
//! written twice; with it the agent answers them with the original offsets.

use anyhow::{bail, ensure, Result};
use floe_e2e::kafka::{self, Consumed};
use floe_e2e::matrix::Cell;
use floe_e2e::proxy::DroppingProxy;
use floe_e2e::records::{index_of, key, value};
use floe_e2e::verifiable::{self, Expected};
use floe_e2e::{http_get, java_driver, metric_value, Playground};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const RECORDS: u64 = 100_000;
const PARTITIONS: i32 = 6;
const DROP_PERCENT: u64 = 10;

fn free_loopback_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A playground on a fixed port (so a restart keeps the proxy's upstream) that advertises the
/// proxy, so every client connection goes through it.
fn playground_behind_proxy(seed: u64) -> Result<(Playground, DroppingProxy)> {
    let listen = format!("127.0.0.1:{}", free_loopback_port()?);
    let proxy = DroppingProxy::start(&listen, DROP_PERCENT, seed)?;
    // A short flush interval keeps the many small produce requests (and their retries) quick.
    let playground = Playground::start(&["--kafka-listen", &listen, "--advertise", &proxy.address, "--flush-interval", "50ms"])?;
    Ok((playground, proxy))
}

/// Waits until `count` produce responses went through (or were lost), then kill -9s the agent
/// and starts it again on the same data and port.
fn restart_mid_produce(playground: &mut Playground, proxy: &DroppingProxy, count: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while proxy.produce_responses() + proxy.dropped() < count {
        ensure!(Instant::now() < deadline, "only {} produce responses within 120 s", proxy.produce_responses());
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("restarting the agent after {} produce responses ({} lost so far)", proxy.produce_responses(), proxy.dropped());
    playground.restart_after_kill()
}

/// Every index in 0..RECORDS exactly once, with its own value; per partition in index order.
fn check_exactly_once(records: &BTreeMap<i32, Vec<Consumed>>) -> Result<()> {
    let mut seen = vec![0u32; RECORDS as usize];
    let mut problems = Vec::new();
    for (partition, consumed) in records {
        let mut previous: Option<u64> = None;
        for record in consumed {
            let Some(index) = index_of(&record.key).filter(|index| *index < RECORDS) else {
                problems.push(format!("unexpected key {:?} at {partition}/{}", String::from_utf8_lossy(&record.key), record.offset));
                continue;
            };
            seen[index as usize] += 1;
            if record.value != value(index) {
                problems.push(format!("record {index} at {partition}/{} has the wrong value", record.offset));
            }
            if previous.is_some_and(|previous| previous >= index) {
                problems.push(format!("partition {partition}: record {index} at offset {} follows record {previous:?}", record.offset));
            }
            previous = Some(index);
        }
    }
    let duplicates = seen.iter().filter(|count| **count > 1).count();
    let missing = seen.iter().filter(|count| **count == 0).count();
    println!("read back: {} distinct records, {duplicates} duplicated, {missing} missing", seen.len() - missing);
    problems.truncate(10);
    ensure!(duplicates == 0 && missing == 0 && problems.is_empty(), "{duplicates} duplicated, {missing} missing; {problems:#?}");
    Ok(())
}

fn duplicate_batches_answered(playground: &Playground) -> Result<f64> {
    let (_, metrics) = http_get(&playground.http, "/metrics")?;
    Ok(metric_value(&metrics, "floe_produce_duplicate_batches_total").unwrap_or(0.0))
}

#[test]
fn a_java_idempotent_producer_writes_exactly_once_through_lost_responses_and_a_restart() -> Result<()> {
    let cell = Cell::open(
        "java",
        "idempotence",
        "100,000 records, acks=all, idempotent; 10% of produce responses lost and the agent kill -9ed mid-run: read back exactly once, in order",
    );
    let (mut playground, proxy) = playground_behind_proxy(7)?;
    let topic = "idempotent-java";
    let count = RECORDS.to_string();
    let command = java_driver(&[
        "produce-range",
        "--bootstrap",
        &proxy.address,
        "--topic",
        topic,
        "--partitions",
        &PARTITIONS.to_string(),
        "--start",
        "0",
        "--count",
        &count,
    ])?;
    let producer = std::thread::spawn(move || verifiable::run(command, Duration::from_secs(600)));
    restart_mid_produce(&mut playground, &proxy, 20)?;
    let events = match producer.join() {
        Ok(result) => result?,
        Err(_) => bail!("the producer thread panicked"),
    };
    // Every send acknowledged, none failed, at the partition its key maps to.
    let expected = Expected::new(topic, PARTITIONS, RECORDS);
    events.check_acknowledged(&expected)?;
    events.check_default_partitioner(&expected)?;
    println!(
        "proxy: {} produce responses delivered, {} lost; agent answered {} duplicate batches since its restart",
        proxy.produce_responses(),
        proxy.dropped(),
        duplicate_batches_answered(&playground)?
    );
    ensure!(proxy.dropped() > 0, "the proxy lost no produce response, so nothing was retried");
    // The retries reached the agent and were recognised: without that, "exactly once" could just
    // mean no retry ever arrived.
    ensure!(duplicate_batches_answered(&playground)? > 0.0, "the agent recognised no retried batch as a duplicate");
    check_exactly_once(&kafka::read_all(&proxy.address, topic, PARTITIONS, Duration::from_secs(120))?)?;
    cell.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_librdkafka_idempotent_producer_writes_exactly_once_through_lost_responses_and_a_restart() -> Result<()> {
    let cell = Cell::open(
        "librdkafka",
        "idempotence",
        "100,000 records, acks=all, enable.idempotence; 10% of produce responses lost and the agent kill -9ed mid-run: read back exactly once, in order",
    );
    let (mut playground, proxy) = playground_behind_proxy(11)?;
    let topic = "idempotent-librdkafka";
    kafka::create_topic(&proxy.address, topic, PARTITIONS).await?;
    let producer: FutureProducer = kafka::config(&proxy.address)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        // Java's default batch size: many produce requests, so a tenth of them is many retries.
        .set("batch.size", "16384")
        // librdkafka backs off exponentially (to 10 s) across the ~100 broken connections this
        // test causes; cap it so the run stays short.
        .set("reconnect.backoff.max.ms", "1000")
        .set("message.timeout.ms", "300000")
        .set("queue.buffering.max.messages", "200000")
        .create()?;
    let restarter = std::thread::spawn(move || restart_mid_produce(&mut playground, &proxy, 20).map(|()| (playground, proxy)));
    let mut deliveries = Vec::with_capacity(RECORDS as usize);
    for index in 0..RECORDS {
        let (record_key, record_value) = (key(index), value(index));
        let partition = (index % PARTITIONS as u64) as i32;
        let record = FutureRecord::to(topic).key(&record_key).payload(&record_value).partition(partition);
        deliveries.push(producer.send_result(record).map_err(|(error, _)| anyhow::anyhow!("failed to enqueue record {index}: {error}"))?);
    }
    let mut failed = Vec::new();
    for (index, delivery) in deliveries.into_iter().enumerate() {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((error, _))) => failed.push(format!("record {index}: {error}")),
            Err(_) => failed.push(format!("record {index}: delivery future cancelled")),
        }
    }
    ensure!(failed.is_empty(), "{} records failed, first: {:?}", failed.len(), &failed[..failed.len().min(5)]);
    let (playground, proxy) = match restarter.join() {
        Ok(result) => result?,
        Err(_) => bail!("the restart thread panicked"),
    };
    println!(
        "proxy: {} produce responses delivered, {} lost; agent answered {} duplicate batches since its restart",
        proxy.produce_responses(),
        proxy.dropped(),
        duplicate_batches_answered(&playground)?
    );
    ensure!(proxy.dropped() > 0, "the proxy lost no produce response, so nothing was retried");
    // The retries reached the agent and were recognised: without that, "exactly once" could just
    // mean no retry ever arrived.
    ensure!(duplicate_batches_answered(&playground)? > 0.0, "the agent recognised no retried batch as a duplicate");
    let bootstrap = proxy.address.clone();
    let records = tokio::task::spawn_blocking(move || kafka::read_all(&bootstrap, topic, PARTITIONS, Duration::from_secs(120))).await??;
    check_exactly_once(&records)?;
    drop(playground);
    cell.pass();
    Ok(())
}
