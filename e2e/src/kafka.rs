//! rdkafka (librdkafka 2.x, bundled) helpers used by the Rust suites.

use anyhow::{bail, ensure, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub fn config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap).set("client.id", "floe-e2e-rdkafka");
    config
}

/// librdkafka over SASL_PLAINTEXT with SCRAM-SHA-512 as `user`.
pub fn scram_plaintext(bootstrap: &str, user: &str, password: &str) -> ClientConfig {
    let mut config = config(bootstrap);
    config
        .set("security.protocol", "sasl_plaintext")
        .set("sasl.mechanism", "SCRAM-SHA-512")
        .set("sasl.username", user)
        .set("sasl.password", password);
    config
}

/// The Java client's properties for SASL_PLAINTEXT with SCRAM-SHA-512 as `user`, written to
/// `<directory>/<user>.properties` (for a tool's `--command-config`); returns the path.
pub fn scram_plaintext_java_properties(directory: &std::path::Path, user: &str, password: &str) -> Result<String> {
    let path = directory.join(format!("{user}.properties"));
    std::fs::write(
        &path,
        format!(
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\n\
             sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"{user}\" password=\"{password}\";\n"
        ),
    )?;
    Ok(path.display().to_string())
}

pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> Result<()> {
    create_topic_with(config(bootstrap), topic, partitions).await
}

/// [`create_topic`] with a client configuration of the caller's (TLS settings, ...).
pub async fn create_topic_with(config: ClientConfig, topic: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = config.create().context("failed to create the admin client")?;
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await?;
    for result in results {
        if let Err((name, error)) = result {
            bail!("failed to create topic {name}: {error}");
        }
    }
    Ok(())
}

/// The broker ids the agent(s) at `bootstrap` advertise in Metadata right now.
pub fn broker_ids(bootstrap: &str) -> Result<Vec<i32>> {
    let consumer: BaseConsumer = config(bootstrap).create()?;
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(5))?;
    let mut ids: Vec<i32> = metadata.brokers().iter().map(|broker| broker.id()).collect();
    ids.sort();
    Ok(ids)
}

/// Sum of the high watermarks of a topic's partitions.
pub fn total_records(bootstrap: &str, topic: &str, partitions: i32) -> Result<i64> {
    let consumer: BaseConsumer = config(bootstrap).create()?;
    let mut total = 0;
    for partition in 0..partitions {
        total += consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?.1;
    }
    Ok(total)
}

/// One consumed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    pub partition: i32,
    pub offset: i64,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Reads every partition of `topic` from the beginning to its high watermark, by assignment
/// (no group), and returns the records per partition in offset order.
pub fn read_all(bootstrap: &str, topic: &str, partitions: i32, timeout: Duration) -> Result<BTreeMap<i32, Vec<Consumed>>> {
    read_all_with(config(bootstrap), topic, partitions, timeout)
}

/// [`read_all`] with a client configuration of the caller's (TLS settings, ...).
pub fn read_all_with(config: ClientConfig, topic: &str, partitions: i32, timeout: Duration) -> Result<BTreeMap<i32, Vec<Consumed>>> {
    read_all_with_context(config, rdkafka::consumer::DefaultConsumerContext, topic, partitions, timeout)
}

/// [`read_all_with`] with a client context of the caller's (an OAUTHBEARER token callback, ...).
pub fn read_all_with_context<C: rdkafka::consumer::ConsumerContext + 'static>(
    mut config: ClientConfig,
    context: C,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<BTreeMap<i32, Vec<Consumed>>> {
    let consumer: BaseConsumer<C> = config
        .set("group.id", format!("read-all-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create_with_context(context)?;
    // Serve librdkafka's start-up events (an OAUTHBEARER token request among them) before the
    // blocking watermark calls below, which would otherwise wait for a connection that waits for it.
    // Nothing is assigned yet, so what this returns (an error event at most) is no record of ours.
    let _ = consumer.poll(Duration::from_millis(100));
    let mut ends = BTreeMap::new();
    for partition in 0..partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
        ends.insert(partition, (low, high));
    }
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let expected: i64 = ends.values().map(|(low, high)| high - low).sum();
    let mut by_partition: BTreeMap<i32, Vec<Consumed>> = BTreeMap::new();
    let mut received = 0i64;
    let deadline = Instant::now() + timeout;
    while received < expected {
        if Instant::now() > deadline {
            bail!("read {received} of {expected} records of {topic} before the deadline");
        }
        let Some(message) = consumer.poll(Duration::from_millis(200)) else { continue };
        let message = match message {
            // An agent killed a moment ago stays in Metadata until its registry lease lapses;
            // librdkafka reports each failed connection to it here and carries on.
            Err(rdkafka::error::KafkaError::MessageConsumption(rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure)) => continue,
            other => other?,
        };
        let headers = message
            .headers()
            .map(|headers| headers.iter().map(|header| (header.key.to_string(), header.value.unwrap_or_default().to_vec())).collect())
            .unwrap_or_default();
        by_partition.entry(message.partition()).or_default().push(Consumed {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().unwrap_or_default().to_vec(),
            value: message.payload().unwrap_or_default().to_vec(),
            headers,
        });
        received += 1;
    }
    Ok(by_partition)
}

/// A record a producer saw acknowledged.
#[derive(Debug, Clone, Copy)]
pub struct Acknowledged {
    pub index: u64,
    pub partition: i32,
    pub offset: i64,
    pub at: Instant,
}

/// What `produce_reporting` saw: how many records it sent, which were acknowledged where, and
/// every delivery error (the error text, one per failed record).
#[derive(Debug, Default)]
pub struct ProduceReport {
    pub sent: u64,
    pub acknowledged: Vec<Acknowledged>,
    pub failures: Vec<String>,
}

impl ProduceReport {
    /// Fails unless every send was acknowledged: no delivery error and nothing left unanswered.
    /// `who` names the producer in the error.
    pub fn ensure_every_send_acknowledged(&self, who: &str) -> Result<()> {
        if !self.failures.is_empty() {
            bail!("{who}: {} failed sends, e.g. {:?}", self.failures.len(), &self.failures[..self.failures.len().min(5)]);
        }
        if self.acknowledged.len() as u64 != self.sent {
            bail!("{who}: {} of {} sends acknowledged", self.acknowledged.len(), self.sent);
        }
        Ok(())
    }
}

/// Produces records `key(i)`/`value(i)` at about `rate` per second until `stop` turns true, and
/// returns every acknowledgement (failures are expected during fault injection and ignored).
pub async fn produce_until(
    bootstrap: &str,
    topic: &str,
    rate: u64,
    extra: &[(&str, &str)],
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(u64, Vec<Acknowledged>)> {
    let report = produce_reporting(bootstrap, topic, rate, extra, stop).await?;
    Ok((report.sent, report.acknowledged))
}

/// Like `produce_until`, but also collects every delivery error, so a test can require none.
pub async fn produce_reporting(
    bootstrap: &str,
    topic: &str,
    rate: u64,
    extra: &[(&str, &str)],
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<ProduceReport> {
    produce_reporting_into(bootstrap, topic, rate, extra, stop, AckLog::default()).await
}

/// Acknowledgements as they arrive, shared with the producing task, so a test can wait for a
/// condition on them (`acknowledged_after`) instead of sleeping.
pub type AckLog = std::sync::Arc<std::sync::Mutex<Vec<Acknowledged>>>;

/// Acknowledgements in `log` that arrived after `instant`.
pub fn acknowledged_after(log: &AckLog, instant: Instant) -> usize {
    log.lock().expect("not poisoned").iter().filter(|ack| ack.at > instant).count()
}

/// Like `produce_reporting`, appending each acknowledgement to `acknowledged` as it arrives.
pub async fn produce_reporting_into(
    bootstrap: &str,
    topic: &str,
    rate: u64,
    extra: &[(&str, &str)],
    stop: tokio::sync::watch::Receiver<bool>,
    acknowledged: AckLog,
) -> Result<ProduceReport> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let mut producer_config = config(bootstrap);
    producer_config.set("acks", "all").set("linger.ms", "5").set("message.timeout.ms", "15000").set("compression.codec", "lz4");
    for (key, value) in extra {
        producer_config.set(*key, *value);
    }
    let producer: FutureProducer = producer_config.create()?;
    let failures: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let mut waiting = Vec::new();
    let started = Instant::now();
    let mut index = 0u64;
    while !*stop.borrow() {
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        while index < due {
            let (key, value) = (crate::records::key(index), crate::records::value(index));
            let mut record = FutureRecord::to(topic).key(&key).payload(&value);
            let delivery = loop {
                match producer.send_result(record) {
                    Ok(delivery) => break Some(delivery),
                    Err((rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), returned)) => {
                        record = returned;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((error, _)) => {
                        failures.lock().expect("not poisoned").push(format!("record {index} was not queued: {error}"));
                        break None;
                    }
                }
            };
            if let Some(delivery) = delivery {
                let (sink, failed) = (std::sync::Arc::clone(&acknowledged), std::sync::Arc::clone(&failures));
                let this = index;
                waiting.push(tokio::spawn(async move {
                    match delivery.await {
                        Ok(Ok(delivered)) => sink.lock().expect("not poisoned").push(Acknowledged {
                            index: this,
                            partition: delivered.partition,
                            offset: delivered.offset,
                            at: Instant::now(),
                        }),
                        Ok(Err((error, _))) => failed.lock().expect("not poisoned").push(format!("record {this}: {error}")),
                        Err(_) => failed.lock().expect("not poisoned").push(format!("record {this}: the delivery was cancelled")),
                    }
                }));
            }
            index += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for task in waiting {
        let _ = task.await;
    }
    let acknowledged = std::mem::take(&mut *acknowledged.lock().expect("not poisoned"));
    let failures = std::mem::take(&mut *failures.lock().expect("not poisoned"));
    Ok(ProduceReport { sent: index, acknowledged, failures })
}

/// Checks that every acknowledged record is stored at exactly its acknowledged offset.
pub fn verify_acknowledged(bootstrap: &str, topic: &str, partitions: i32, acknowledged: &[Acknowledged]) -> Result<()> {
    verify_acknowledged_with(config(bootstrap), topic, partitions, acknowledged)
}

/// [`verify_acknowledged`] with a client configuration of the caller's (TLS settings, ...).
pub fn verify_acknowledged_with(config: ClientConfig, topic: &str, partitions: i32, acknowledged: &[Acknowledged]) -> Result<()> {
    let stored = read_all_with(config, topic, partitions, Duration::from_secs(180))?;
    for ack in acknowledged {
        let Some(records) = stored.get(&ack.partition) else {
            bail!("partition {} is empty but record {} was acknowledged there", ack.partition, ack.index)
        };
        let Some(record) = records.iter().find(|record| record.offset == ack.offset) else {
            bail!("acknowledged record {} at {}/{} is missing", ack.index, ack.partition, ack.offset);
        };
        if record.key != crate::records::key(ack.index) || record.value != crate::records::value(ack.index) {
            bail!("offset {}/{} does not hold acknowledged record {}", ack.partition, ack.offset, ack.index);
        }
    }
    Ok(())
}

/// Longest time between two consecutive acknowledgements.
pub fn longest_gap(acknowledged: &[Acknowledged]) -> Duration {
    let mut times: Vec<Instant> = acknowledged.iter().map(|ack| ack.at).collect();
    times.sort();
    times.windows(2).map(|pair| pair[1] - pair[0]).max().unwrap_or_default()
}

/// Produces records `indexes` (the shared record format, `crate::records`) with the producer's
/// settings, all in flight at once, and fails unless every one is acknowledged.
pub async fn produce_indexed<C: rdkafka::ClientContext + 'static>(
    producer: &rdkafka::producer::FutureProducer<C>,
    topic: &str,
    indexes: std::ops::Range<u64>,
) -> Result<()> {
    let sends = indexes.map(|index| async move {
        let (key, value) = (crate::records::key(index), crate::records::value(index));
        producer
            .send(rdkafka::producer::FutureRecord::to(topic).key(&key).payload(&value), Duration::from_secs(60))
            .await
            .map_err(|(error, _)| error)
    });
    for outcome in futures::future::join_all(sends).await {
        outcome.context("a send was not acknowledged")?;
    }
    Ok(())
}

/// Reads `topic` (one partition) with `config` and checks it holds exactly records `0..count`,
/// each once and unchanged.
pub fn verify_indexed(config: ClientConfig, topic: &str, count: u64) -> Result<()> {
    verify_indexed_across(config, topic, 1, count)
}

/// Reads every partition of `topic` with `config` and checks they hold exactly records
/// `0..count` of [`produce_indexed`] between them, each once and unchanged.
pub fn verify_indexed_across(config: ClientConfig, topic: &str, partitions: i32, count: u64) -> Result<()> {
    let read = read_all_with(config, topic, partitions, Duration::from_secs(120))?;
    let records: Vec<&Consumed> = read.values().flatten().collect();
    ensure!(records.len() as u64 == count, "{topic}: read {} records, expected {count}", records.len());
    let mut indexes: Vec<u64> = records
        .iter()
        .map(|record| {
            let index = crate::records::index_of(&record.key).context("a key not written by this test")?;
            ensure!(record.value == crate::records::value(index), "{topic}: record {index} came back changed");
            Ok(index)
        })
        .collect::<Result<_>>()?;
    indexes.sort_unstable();
    ensure!(indexes == (0..count).collect::<Vec<_>>(), "{topic}: not every record 0..{count} came back once");
    Ok(())
}
