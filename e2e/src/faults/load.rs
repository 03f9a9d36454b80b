//! Producer load for fault scenarios: librdkafka producers (idempotent and plain) and the Java
//! producer, each on its own topic, run until told to stop; every acknowledgement becomes a
//! history entry for the checker. Failed sends are expected under faults and only counted.

use crate::client_load::{JavaProducer, JavaProducerOptions};
use crate::history::Ack;
use crate::kafka::{self, Acknowledged, ProduceReport};
use crate::records;
use anyhow::{Context, Result};
use std::time::{Duration, Instant};

/// Which producers run, how fast, on how many partitions.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// Records per second of each producer.
    pub rate: u64,
    pub partitions: i32,
    /// A Java producer, idempotent (`Some(true)`) or not (`Some(false)`).
    pub java: Option<bool>,
}

struct RdkafkaProducer {
    topic: String,
    idempotent: bool,
    task: tokio::task::JoinHandle<Result<ProduceReport>>,
}

/// Producers running against a cluster.
pub struct Load {
    topics: Vec<(String, i32)>,
    stop: tokio::sync::watch::Sender<bool>,
    rdkafka: Vec<RdkafkaProducer>,
    java: Option<(String, bool, JavaProducer)>,
    started: Instant,
}

/// What the producers were acknowledged.
pub struct LoadOutcome {
    pub acks: Vec<Ack>,
    pub sent: u64,
    pub failed: u64,
    /// Every topic written and its partition count.
    pub topics: Vec<(String, i32)>,
    pub started: Instant,
    pub ended: Instant,
    /// One "producer: acknowledged/sent" entry per producer.
    pub producers: Vec<String>,
}

fn history_of(topic: &str, idempotent: bool, acknowledged: &[Acknowledged]) -> Vec<Ack> {
    acknowledged
        .iter()
        .map(|ack| Ack {
            topic: topic.to_string(),
            partition: ack.partition,
            offset: ack.offset,
            key: records::key(ack.index),
            value_crc: crc32c::crc32c(&records::value(ack.index)),
            idempotent,
            at: ack.at,
        })
        .collect()
}

impl Load {
    /// Creates the topics `<name>-rdkafka-idempotent`, `<name>-rdkafka-plain` (and `<name>-java-…`)
    /// through `bootstrap` (a comma-separated list is fine) and starts producing.
    pub async fn start(bootstrap: &str, name: &str, plan: &LoadPlan) -> Result<Self> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut topics = Vec::new();
        let mut rdkafka = Vec::new();
        for idempotent in [true, false] {
            let topic = format!("{name}-rdkafka-{}", if idempotent { "idempotent" } else { "plain" });
            kafka::create_topic(bootstrap, &topic, plan.partitions).await.with_context(|| format!("failed to create {topic}"))?;
            topics.push((topic.clone(), plan.partitions));
            let (bootstrap, task_topic, stopped, rate) = (bootstrap.to_string(), topic.clone(), stopped.clone(), plan.rate);
            let task = tokio::spawn(async move {
                let settings = [
                    ("enable.idempotence", if idempotent { "true" } else { "false" }),
                    // Faults stall produce for up to a minute (a hung object store, lost quorum):
                    // retry through them rather than fail.
                    ("message.timeout.ms", "120000"),
                    ("request.timeout.ms", "30000"),
                    ("reconnect.backoff.max.ms", "1000"),
                    ("client.id", if idempotent { "floe-faults-rdkafka-idempotent" } else { "floe-faults-rdkafka-plain" }),
                ];
                kafka::produce_reporting(&bootstrap, &task_topic, rate, &settings, stopped).await
            });
            rdkafka.push(RdkafkaProducer { topic, idempotent, task });
        }
        let java = match plan.java {
            Some(idempotent) => {
                let topic = format!("{name}-java-{}", if idempotent { "idempotent" } else { "plain" });
                kafka::create_topic(bootstrap, &topic, plan.partitions).await.with_context(|| format!("failed to create {topic}"))?;
                topics.push((topic.clone(), plan.partitions));
                let options = JavaProducerOptions { idempotent, tolerate_failures: true };
                let producer = JavaProducer::start_with(bootstrap, &topic, plan.partitions, plan.rate, options)?;
                Some((topic, idempotent, producer))
            }
            None => None,
        };
        Ok(Self { topics, stop, rdkafka, java, started: Instant::now() })
    }

    /// Fails if the Java producer exited early (it only stops when told to).
    pub fn ensure_running(&mut self) -> Result<()> {
        match &mut self.java {
            Some((_, _, producer)) => producer.ensure_running(),
            None => Ok(()),
        }
    }

    /// Stops every producer, waits for its outstanding sends (acknowledged or failed) and returns
    /// the acknowledgements.
    pub async fn finish(self) -> Result<LoadOutcome> {
        let ended = Instant::now();
        self.stop.send(true)?;
        let mut outcome =
            LoadOutcome { acks: Vec::new(), sent: 0, failed: 0, topics: self.topics, started: self.started, ended, producers: Vec::new() };
        for producer in self.rdkafka {
            let report = producer.task.await??;
            outcome.sent += report.sent;
            outcome.failed += report.failures.len() as u64;
            outcome.producers.push(format!("{}: {}/{} acknowledged", producer.topic, report.acknowledged.len(), report.sent));
            outcome.acks.extend(history_of(&producer.topic, producer.idempotent, &report.acknowledged));
        }
        if let Some((topic, idempotent, mut producer)) = self.java {
            let acknowledged = tokio::task::spawn_blocking(move || producer.finish(Duration::from_secs(240))).await??;
            outcome.sent += acknowledged.len() as u64;
            outcome.producers.push(format!("{topic}: {} acknowledged", acknowledged.len()));
            outcome.acks.extend(history_of(&topic, idempotent, &acknowledged));
        }
        Ok(outcome)
    }
}
