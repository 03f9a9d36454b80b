//! Client load for tests that take agents away under it (drain, scale-in, faults): a librdkafka
//! consumer group on its own threads, the Java producer process (a verifiable-client adapter whose
//! events are read while it runs), and the exactly-once check of what the producers were
//! acknowledged against what the topic holds.

use crate::kafka::{self, Acknowledged};
use crate::verifiable::{parse_event, Event, Events};
use crate::{java_driver, records};
use anyhow::{bail, ensure, Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Seen = Arc<Mutex<BTreeMap<(String, u64), u32>>>;

/// A consumer group read by librdkafka members on their own threads: every (topic, index) seen,
/// how often, and anything that did not match the shared record format.
pub struct Group {
    seen: Seen,
    problems: Arc<Mutex<Vec<String>>>,
    /// Transient consumer events (an agent going away surfaces here), counted by text.
    events: Arc<Mutex<BTreeMap<String, usize>>>,
    stop: Arc<AtomicBool>,
    members: Vec<std::thread::JoinHandle<Result<()>>>,
}

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Group {
    pub fn start(bootstrap: &str, group: &str, members: usize, topics: &[&str]) -> Result<Self> {
        let seen: Seen = Default::default();
        let problems: Arc<Mutex<Vec<String>>> = Default::default();
        let events: Arc<Mutex<BTreeMap<String, usize>>> = Default::default();
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for member in 0..members {
            let consumer: BaseConsumer = kafka::config(bootstrap)
                .set("client.id", format!("floe-e2e-{group}-member-{member}"))
                .set("group.id", group)
                .set("auto.offset.reset", "earliest")
                .set("enable.auto.commit", "true")
                .set("auto.commit.interval.ms", "1000")
                .set("session.timeout.ms", "10000")
                .set("heartbeat.interval.ms", "1000")
                .set("enable.partition.eof", "false")
                .create()?;
            consumer.subscribe(topics)?;
            let (seen, problems, events, stop) = (Arc::clone(&seen), Arc::clone(&problems), Arc::clone(&events), Arc::clone(&stop));
            handles.push(std::thread::spawn(move || -> Result<()> {
                while !stop.load(Ordering::Acquire) {
                    let Some(message) = consumer.poll(Duration::from_millis(100)) else { continue };
                    let message = match message {
                        Ok(message) => message,
                        Err(error) => {
                            // A connection to an agent that left surfaces here as a transient
                            // event; what counts is that the group ends up with every record.
                            *locked(&events).entry(error.to_string()).or_default() += 1;
                            continue;
                        }
                    };
                    let key = message.key().unwrap_or_default();
                    let Some(index) = records::index_of(key) else {
                        locked(&problems).push(format!("unparseable key {key:?}"));
                        continue;
                    };
                    if message.payload().unwrap_or_default() != records::value(index) {
                        locked(&problems).push(format!("{} record {index}: wrong value", message.topic()));
                    }
                    *locked(&seen).entry((message.topic().to_string(), index)).or_default() += 1;
                }
                consumer.unsubscribe();
                Ok(())
            }));
        }
        Ok(Self { seen, problems, events, stop, members: handles })
    }

    /// Distinct records read so far.
    pub fn read(&self) -> usize {
        locked(&self.seen).len()
    }

    /// How many of `expected` (topic, index) the group has not read yet.
    pub fn missing(&self, expected: &BTreeSet<(String, u64)>) -> usize {
        let seen = locked(&self.seen);
        expected.iter().filter(|key| !seen.contains_key(*key)).count()
    }

    /// Stops the members; returns (records read more than once, problems).
    pub fn finish(self) -> Result<(usize, Vec<String>)> {
        self.stop.store(true, Ordering::Release);
        for member in self.members {
            member.join().map_err(|_| anyhow::anyhow!("a group member panicked"))??;
        }
        println!("consumer events: {:?}", locked(&self.events));
        let repeated = locked(&self.seen).values().filter(|count| **count > 1).count();
        let problems = std::mem::take(&mut *locked(&self.problems));
        Ok((repeated, problems))
    }
}

/// The Java driver in `produce-until` mode (acks=all, idempotent unless told otherwise): its
/// verifiable-client events are read as they arrive, each acknowledgement stamped with the moment
/// it was read, so a test sees the load's progress while agents come and go. Killed if the test
/// ends before it was stopped and reaped (the agents go away with the test, so it could never
/// finish by itself).
pub struct JavaProducer {
    child: Option<std::process::Child>,
    topic: String,
    options: JavaProducerOptions,
    stop_file: PathBuf,
    stderr: PathBuf,
    stream: Arc<Mutex<Stream>>,
    reader: Option<std::thread::JoinHandle<()>>,
    _files: tempfile::TempDir,
}

/// What the producer printed so far, each event with the moment it was read.
#[derive(Default)]
struct Stream {
    events: Vec<(Event, Instant)>,
    /// The first line that was not an event.
    malformed: Option<String>,
}

/// How the Java producer behaves beyond its defaults (idempotent, every send must succeed).
#[derive(Debug, Clone, Copy)]
pub struct JavaProducerOptions {
    pub idempotent: bool,
    /// Failed sends are expected (injected faults): they do not fail the run, and only the
    /// acknowledged records are returned.
    pub tolerate_failures: bool,
}

impl Default for JavaProducerOptions {
    fn default() -> Self {
        Self { idempotent: true, tolerate_failures: false }
    }
}

impl JavaProducer {
    pub fn start(bootstrap: &str, topic: &str, partitions: i32, rate: u64) -> Result<Self> {
        Self::start_with(bootstrap, topic, partitions, rate, JavaProducerOptions::default())
    }

    pub fn start_with(bootstrap: &str, topic: &str, partitions: i32, rate: u64, options: JavaProducerOptions) -> Result<Self> {
        let files = tempfile::tempdir()?;
        let stop_file = files.path().join("stop");
        let stderr = files.path().join("java.err");
        let mut command = java_driver(&[
            "produce-until",
            "--bootstrap",
            bootstrap,
            "--topic",
            topic,
            "--partitions",
            &partitions.to_string(),
            "--rate",
            &rate.to_string(),
            "--stop-file",
            &stop_file.display().to_string(),
            "--idempotent",
            &options.idempotent.to_string(),
        ])?;
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(std::fs::File::create(&stderr)?);
        let mut child = command.spawn().context("failed to start the Java producer")?;
        let stdout = child.stdout.take().expect("piped");
        let stream: Arc<Mutex<Stream>> = Default::default();
        let reader = {
            let stream = Arc::clone(&stream);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if line.trim().is_empty() {
                        continue;
                    }
                    let mut stream = locked(&stream);
                    match parse_event(&line) {
                        Ok(event) => stream.events.push((event, Instant::now())),
                        // Keep draining so the producer never blocks on a full pipe.
                        Err(error) => {
                            stream.malformed.get_or_insert(format!("{error:#}"));
                        }
                    }
                }
            })
        };
        Ok(Self { child: Some(child), topic: topic.to_string(), options, stop_file, stderr, stream, reader: Some(reader), _files: files })
    }

    /// Records acknowledged so far: the load's progress, live.
    pub fn acknowledged(&self) -> usize {
        locked(&self.stream).events.iter().filter(|(event, _)| matches!(event, Event::ProducerSendSuccess { .. })).count()
    }

    /// Asks the producer to stop, waits for it, and returns its acknowledgements; fails if it
    /// exited non-zero, broke the event contract, or (unless failures are tolerated) reported a
    /// failed send ([`producer_outcomes`]).
    pub fn finish(&mut self, timeout: Duration) -> Result<Vec<Acknowledged>> {
        std::fs::write(&self.stop_file, b"stop")?;
        let status = self.wait(timeout)?;
        if let Some(reader) = self.reader.take() {
            reader.join().map_err(|_| anyhow::anyhow!("the Java producer's stdout reader panicked"))?;
        }
        let stderr = std::fs::read_to_string(&self.stderr)?;
        ensure!(status.success(), "the Java producer failed ({status}):\n{stderr}");
        let stream = std::mem::take(&mut *locked(&self.stream));
        if let Some(malformed) = stream.malformed {
            bail!("the Java producer broke the event contract: {malformed}");
        }
        let acknowledged = producer_outcomes(stream.events, &self.topic, self.options.tolerate_failures)
            .with_context(|| format!("the Java producer's log:\n{stderr}"))?;
        // Its last line of log is the summary (sent, acknowledged, failed).
        println!("the Java producer: {} acknowledged ({})", acknowledged.len(), stderr.lines().last().unwrap_or_default());
        Ok(acknowledged)
    }

    /// Fails with the producer's log if it has already exited (it only exits when told to) or
    /// printed a line that is not an event.
    pub fn ensure_running(&mut self) -> Result<()> {
        if let Some(malformed) = &locked(&self.stream).malformed {
            bail!("the Java producer broke the event contract: {malformed}");
        }
        let child = self.child.as_mut().context("the Java producer was already reaped")?;
        if let Some(status) = child.try_wait()? {
            self.child = None;
            bail!("the Java producer exited early ({status}):\n{}", std::fs::read_to_string(&self.stderr)?);
        }
        Ok(())
    }

    fn wait(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let child = self.child.as_mut().context("the Java producer was already reaped")?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            ensure!(Instant::now() < deadline, "the Java producer did not stop within {timeout:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for JavaProducer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The acknowledgements of a `produce-until` run (records 0, 1, 2, ... to `topic`), each at the
/// moment it was read. The stream must start with `startup_complete` and end with
/// `shutdown_complete`; every record up to the last one sent has exactly one outcome (an
/// acknowledgement at a position, or an error), so none went unreported; and, unless
/// `tolerate_failures`, none failed.
pub fn producer_outcomes(events: Vec<(Event, Instant)>, topic: &str, tolerate_failures: bool) -> Result<Vec<Acknowledged>> {
    let times: Vec<Instant> = events.iter().map(|(_, at)| *at).collect();
    let events = Events::new(events.into_iter().map(|(event, _)| event).collect())?;
    let mut outcomes: BTreeMap<u64, u32> = BTreeMap::new();
    let mut acknowledged = Vec::new();
    let mut failures = Vec::new();
    for (event, at) in events.events.iter().zip(times) {
        match event {
            Event::ProducerSendSuccess { topic: to, partition: Some(partition), offset: Some(offset), index, .. } if to == topic => {
                *outcomes.entry(*index).or_default() += 1;
                acknowledged.push(Acknowledged { index: *index, partition: *partition, offset: *offset, at });
            }
            Event::ProducerSendError { topic: to, index, error } if to == topic => {
                *outcomes.entry(*index).or_default() += 1;
                failures.push(format!("record {index}: {error}"));
            }
            Event::StartupComplete { .. } | Event::ShutdownComplete {} => {}
            other => bail!("the Java producer reported {other:?}, expected only outcomes of sends to {topic}"),
        }
    }
    let sent = outcomes.keys().next_back().map_or(0, |last| last + 1);
    let unreported: Vec<u64> = (0..sent).filter(|index| !outcomes.contains_key(index)).take(10).collect();
    ensure!(unreported.is_empty(), "{topic}: records {unreported:?} (and maybe more) of {sent} sent have no outcome");
    let repeated: Vec<u64> = outcomes.iter().filter(|(_, count)| **count > 1).map(|(index, _)| *index).take(10).collect();
    ensure!(repeated.is_empty(), "{topic}: records {repeated:?} have more than one outcome");
    ensure!(
        tolerate_failures || failures.is_empty(),
        "{topic}: {} of {sent} sends failed, the first {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    Ok(acknowledged)
}

/// Every acknowledged record is stored at its acknowledged partition and offset, and the topic
/// holds nothing else: no loss, no duplicate (for idempotent producers).
pub fn verify_exactly_once(bootstrap: &str, topic: &str, partitions: i32, acknowledged: &[Acknowledged]) -> Result<()> {
    let stored = kafka::read_all(bootstrap, topic, partitions, Duration::from_secs(120))?;
    let mut by_position = BTreeMap::new();
    for record in stored.values().flatten() {
        let index = records::index_of(&record.key).with_context(|| format!("{topic}: unparseable key at {}", record.offset))?;
        by_position.insert((record.partition, record.offset), (index, record.value.clone()));
    }
    for ack in acknowledged {
        match by_position.get(&(ack.partition, ack.offset)) {
            Some((index, value)) if *index == ack.index && *value == records::value(ack.index) => {}
            Some((index, _)) => bail!("{topic}: {}/{} holds record {index}, acknowledged for {}", ack.partition, ack.offset, ack.index),
            None => bail!("{topic}: acknowledged record {} at {}/{} is missing", ack.index, ack.partition, ack.offset),
        }
    }
    let stored_count: usize = stored.values().map(Vec::len).sum();
    let distinct: BTreeSet<u64> = by_position.values().map(|(index, _)| *index).collect();
    ensure!(distinct.len() == stored_count, "{topic}: {} records stored twice", stored_count - distinct.len());
    ensure!(
        stored_count == acknowledged.len(),
        "{topic}: {stored_count} records stored, {} acknowledged: a failed send was written anyway",
        acknowledged.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(lines: &[&str]) -> Vec<(Event, Instant)> {
        lines.iter().map(|line| (parse_event(line).expect("an event"), Instant::now())).collect()
    }

    fn ack(index: u64, offset: i64) -> String {
        format!(r#"{{"name":"producer_send_success","topic":"t","partition":0,"offset":{offset},"index":{index},"producer":"none"}}"#)
    }

    const START: &str = r#"{"name":"startup_complete","client":"java"}"#;
    const END: &str = r#"{"name":"shutdown_complete"}"#;
    const FAILED: &str = r#"{"name":"producer_send_error","topic":"t","index":1,"error":"TimeoutException"}"#;

    #[test]
    fn every_send_acknowledged_passes_and_returns_the_acknowledgements() {
        let (first, second) = (ack(0, 0), ack(1, 1));
        let acknowledged = producer_outcomes(stream(&[START, &second, &first, END]), "t", false).expect("a good run");
        assert_eq!(acknowledged.iter().map(|ack| (ack.index, ack.offset)).collect::<Vec<_>>(), [(1, 1), (0, 0)]);
    }

    #[test]
    fn a_failed_send_fails_unless_failures_are_tolerated() {
        let first = ack(0, 0);
        let error = format!("{:#}", producer_outcomes(stream(&[START, &first, FAILED, END]), "t", false).unwrap_err());
        assert!(error.contains("1 of 2 sends failed") && error.contains("TimeoutException"), "{error}");
        let acknowledged = producer_outcomes(stream(&[START, &first, FAILED, END]), "t", true).expect("failures tolerated");
        assert_eq!(acknowledged.len(), 1);
    }

    #[test]
    fn a_send_without_an_outcome_or_with_two_fails() {
        let (first, third) = (ack(0, 0), ack(2, 1));
        let error = format!("{:#}", producer_outcomes(stream(&[START, &first, &third, END]), "t", true).unwrap_err());
        assert!(error.contains("records [1] (and maybe more) of 3 sent have no outcome"), "{error}");
        let error = format!("{:#}", producer_outcomes(stream(&[START, &first, FAILED, &ack(1, 1), END]), "t", true).unwrap_err());
        assert!(error.contains("records [1] have more than one outcome"), "{error}");
    }

    #[test]
    fn a_run_that_did_not_shut_down_or_wrote_elsewhere_fails() {
        let first = ack(0, 0);
        let error = format!("{:#}", producer_outcomes(stream(&[START, &first]), "t", false).unwrap_err());
        assert!(error.contains("expected shutdown_complete"), "{error}");
        let elsewhere = first.replace(r#""topic":"t""#, r#""topic":"u""#);
        let error = format!("{:#}", producer_outcomes(stream(&[START, &elsewhere, END]), "t", false).unwrap_err());
        assert!(error.contains("expected only outcomes of sends to t"), "{error}");
    }
}
