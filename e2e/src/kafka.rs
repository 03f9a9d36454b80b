//! rdkafka (librdkafka 2.x, bundled) helpers used by the Rust suites.

use anyhow::{bail, Context, Result};
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

pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = config(bootstrap).create().context("failed to create the admin client")?;
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
    let consumer: BaseConsumer = config(bootstrap)
        .set("group.id", format!("read-all-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
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
        let message = message?;
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
