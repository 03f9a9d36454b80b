//! Client load for tests that take agents away under it (drain, scale-in): a librdkafka consumer
//! group on its own threads, the Java producer process, and the exactly-once check of what the
//! producers were acknowledged against what the topic holds.

use crate::kafka::{self, Acknowledged};
use crate::{java_driver, records};
use anyhow::{bail, ensure, Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
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

/// The Java driver in `produce-until` mode (idempotent, acks=all, one send failure fails it):
/// killed if the test ends before it was stopped and reaped (the agents go away with the test, so
/// it could never finish by itself).
pub struct JavaProducer {
    child: Option<std::process::Child>,
    stop_file: PathBuf,
    acks_file: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
    _files: tempfile::TempDir,
}

/// How the Java producer behaves beyond its defaults (idempotent, every send must succeed).
#[derive(Debug, Clone, Copy)]
pub struct JavaProducerOptions {
    pub idempotent: bool,
    /// Failed sends are expected (injected faults): they do not fail the run, and only the
    /// acknowledged records are reported.
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
        let acks_file = files.path().join("java-acks");
        let (stdout, stderr) = (files.path().join("java.out"), files.path().join("java.err"));
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
            "--acks-file",
            &acks_file.display().to_string(),
            "--idempotent",
            &options.idempotent.to_string(),
            "--tolerate-failures",
            &options.tolerate_failures.to_string(),
        ])?;
        command.stdout(std::fs::File::create(&stdout)?).stderr(std::fs::File::create(&stderr)?);
        let child = command.spawn().context("failed to start the Java producer")?;
        Ok(Self { child: Some(child), stop_file, acks_file, stdout, stderr, _files: files })
    }

    /// Asks the producer to stop, waits for it, and returns its acknowledgements; fails if it
    /// failed (any failed send makes the driver exit non-zero).
    pub fn finish(&mut self, timeout: Duration) -> Result<Vec<Acknowledged>> {
        std::fs::write(&self.stop_file, b"stop")?;
        let status = self.wait(timeout)?;
        let (stdout, stderr) = (std::fs::read_to_string(&self.stdout)?, std::fs::read_to_string(&self.stderr)?);
        print!("{stdout}");
        ensure!(status.success() && stdout.contains("OK java produced-until"), "the Java producer failed ({status}):\n{stdout}\n{stderr}");
        let acknowledged = java_acknowledgements(&self.acks_file)?;
        ensure!(stdout.contains(&format!("OK java produced-until {}", acknowledged.len())), "the Java acknowledgements file is incomplete");
        Ok(acknowledged)
    }

    /// Fails with the producer's output if it has already exited (it only exits when told to, or
    /// on a failed send).
    pub fn ensure_running(&mut self) -> Result<()> {
        let child = self.child.as_mut().context("the Java producer was already reaped")?;
        if let Some(status) = child.try_wait()? {
            self.child = None;
            let (stdout, stderr) = (std::fs::read_to_string(&self.stdout)?, std::fs::read_to_string(&self.stderr)?);
            bail!("the Java producer exited early ({status}):\n{stdout}\n{stderr}");
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

/// The Java driver's acknowledgements: "index partition offset [epoch-millis]" per line (the time
/// the acknowledgement arrived, mapped onto this process's monotonic clock).
fn java_acknowledgements(path: &std::path::Path) -> Result<Vec<Acknowledged>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("failed to read {}", path.display()))?;
    let (now, wall_now) = (Instant::now(), std::time::SystemTime::now());
    text.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            ensure!(fields.len() == 3 || fields.len() == 4, "malformed acknowledgement line {line:?}");
            let at = match fields.get(3) {
                Some(millis) => {
                    let wall = std::time::UNIX_EPOCH + Duration::from_millis(millis.parse()?);
                    now.checked_sub(wall_now.duration_since(wall).unwrap_or_default()).unwrap_or(now)
                }
                None => now,
            };
            Ok(Acknowledged { index: fields[0].parse()?, partition: fields[1].parse()?, offset: fields[2].parse()?, at })
        })
        .collect()
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
