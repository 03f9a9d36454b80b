//! The verifiable-client contract (e2e/README.md) on the Rust side: start a client driver, read
//! the newline-delimited JSON events it prints on stdout, and decide from them whether the data
//! came back as it must. The drivers only report what their client did; every data check lives
//! here, and the expected bytes of record `i` come from [`crate::records`] alone.
//!
//! # Guarantees
//! - [`run`] fails on a line of stdout that is not one event, on a non-zero exit, on a driver that
//!   outlives its timeout, and on a stream that does not start with `startup_complete` and end
//!   with `shutdown_complete`; the error carries the tail of the driver's stderr.
//! - The checks fail on any acknowledged record that is missing, read twice, read at another
//!   partition or offset than its acknowledgement (when the client reports one), or read with a
//!   different key, value or header byte; on records read out of order; on group commits other
//!   than the end offsets; for an idempotent producer, on a second producer id or a gap in the
//!   offsets; on a record acknowledged at another partition than its key maps to; on members of
//!   one group whose last assignments overlap or leave a partition out; and on administrative
//!   calls that answer otherwise than Kafka would.
//! - A client that reads what another run wrote (the Java client's `read` and `group-consume`)
//!   is checked against that run's acknowledgements ([`Events::combined`]), so a record read at
//!   another position than it was acknowledged, or from outside the run, fails too.

use anyhow::{bail, ensure, Context, Result};
/// Kafka's default partitioner, as `floe produce` uses it.
pub use floe_agent::cli::partitioner::{default_partition, murmur2};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

/// One line of a driver's stdout. The `name` field selects the variant; unknown names and
/// missing fields are malformed lines.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// The driver parsed its arguments and is about to connect. `client` is the name it puts in
    /// the `h-client` header of the records it produces.
    StartupComplete { client: String },
    /// The broker acknowledged record `index` of the shared format at `partition`/`offset`
    /// (`null` for a client that reports no positions, kcat; see [`Expected::positions_unknown`]).
    /// `producer` names the producer instance that sent it (send order is checked per producer);
    /// `producer_id` and `producer_epoch` are what the acknowledgement carried, when the client
    /// exposes them.
    ProducerSendSuccess {
        topic: String,
        partition: Option<i32>,
        offset: Option<i64>,
        index: u64,
        #[serde(default)]
        producer: Option<String>,
        #[serde(default)]
        producer_id: Option<i64>,
        #[serde(default)]
        producer_epoch: Option<i16>,
    },
    /// Record `index` was not acknowledged: `error` is the client's error text.
    ProducerSendError { topic: String, index: u64, error: String },
    /// The consumer returned one record, bytes in lowercase hex (`null` for a null key or value).
    RecordConsumed {
        topic: String,
        partition: i32,
        offset: i64,
        #[serde(with = "hex_bytes")]
        key: Option<Vec<u8>>,
        #[serde(with = "hex_bytes")]
        value: Option<Vec<u8>>,
        headers: Vec<Header>,
        #[serde(default)]
        producer_id: Option<i64>,
        #[serde(default)]
        producer_epoch: Option<i16>,
        /// Which of the driver's consumers read it, when it runs several ([`Events::of_consumer`]).
        #[serde(default)]
        consumer: Option<String>,
    },
    /// The consumer reported an error instead of records (a fetch error, ...).
    ConsumerError {
        error: String,
        #[serde(default)]
        consumer: Option<String>,
    },
    /// The group assigned these partitions of `topic` to the driver's member (`consumer` names
    /// the member when the driver runs several, [`Events::check_group_members`]).
    PartitionsAssigned {
        topic: String,
        partitions: Vec<i32>,
        #[serde(default)]
        consumer: Option<String>,
    },
    /// The group's committed offsets of `topic`, as read back from the coordinator (OffsetFetch)
    /// after the driver committed; a partition without a commit is left out.
    OffsetsCommitted { group: String, topic: String, offsets: Vec<PartitionOffset> },
    /// The outcome of one administrative call: `error` is the Kafka error name
    /// (`TOPIC_ALREADY_EXISTS`) or `null`; `result` holds what the call answered, with the keys
    /// e2e/README.md lists per operation.
    AdminResult {
        operation: String,
        resource: String,
        error: Option<String>,
        #[serde(default)]
        result: serde_json::Value,
    },
    /// The driver closed its clients and is about to exit 0.
    ShutdownComplete {},
}

/// One record header; the value in lowercase hex (`null` for a null value).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub key: String,
    #[serde(with = "hex_bytes")]
    pub value: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionOffset {
    pub partition: i32,
    pub offset: i64,
}

/// Bytes as a lowercase (or uppercase) hex string, or `null`.
mod hex_bytes {
    use serde::{de::Error, Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<u8>>, D::Error> {
        let Some(text) = Option::<&str>::deserialize(deserializer)? else { return Ok(None) };
        decode(text).map(Some).map_err(D::Error::custom)
    }

    pub fn decode(text: &str) -> Result<Vec<u8>, String> {
        if !text.len().is_multiple_of(2) {
            return Err(format!("hex of odd length {}", text.len()));
        }
        let digit = |character: u8| match character {
            b'0'..=b'9' => Ok(character - b'0'),
            b'a'..=b'f' => Ok(character - b'a' + 10),
            b'A'..=b'F' => Ok(character - b'A' + 10),
            other => Err(format!("{:?} is not a hex digit", other as char)),
        };
        text.as_bytes().chunks(2).map(|pair| Ok(digit(pair[0])? << 4 | digit(pair[1])?)).collect()
    }
}

/// Parses one line of a driver's stdout.
pub fn parse_event(line: &str) -> Result<Event> {
    serde_json::from_str(line).with_context(|| format!("malformed event line {:?}", shorten(line, 300)))
}

/// Parses a whole event stream (one event per non-empty line), naming the line that is malformed.
pub fn parse_events(text: &str) -> Result<Events> {
    let mut events = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        events.push(parse_event(line).with_context(|| format!("stdout line {}", number + 1))?);
    }
    Events::new(events)
}

/// The events of one driver run, from `startup_complete` to `shutdown_complete`.
#[derive(Debug)]
pub struct Events {
    pub client: String,
    pub events: Vec<Event>,
}

impl Events {
    /// Checks the frame of the stream: `startup_complete` first, `shutdown_complete` last.
    pub fn new(events: Vec<Event>) -> Result<Self> {
        let client = match events.first() {
            Some(Event::StartupComplete { client }) => client.clone(),
            other => bail!("the first event is {other:?}, expected startup_complete"),
        };
        match events.last() {
            Some(Event::ShutdownComplete {}) if events.len() > 1 => {}
            other => bail!("the last event is {other:?}, expected shutdown_complete"),
        }
        Ok(Self { client, events })
    }

    /// The events with only what consumer `name` read (and its errors): for a driver that reads
    /// the topic several times (kcat: a simple consumer, a group, the group resumed).
    pub fn of_consumer(&self, name: &str) -> Events {
        let events = self
            .events
            .iter()
            .filter(|event| match event {
                Event::RecordConsumed { consumer, .. } | Event::ConsumerError { consumer, .. } => consumer.as_deref() == Some(name),
                _ => true,
            })
            .cloned()
            .collect();
        Events { client: self.client.clone(), events }
    }

    /// How many records were read.
    pub fn consumed(&self) -> usize {
        self.events.iter().filter(|event| matches!(event, Event::RecordConsumed { .. })).count()
    }

    /// The admin results of `operation` on `resource`, in the order they were reported.
    pub fn admin_results(&self, operation: &str, resource: &str) -> Vec<(Option<&str>, &serde_json::Value)> {
        self.events
            .iter()
            .filter_map(|event| match event {
                Event::AdminResult { operation: reported, resource: on, error, result } if reported == operation && on == resource => {
                    Some((error.as_deref(), result))
                }
                _ => None,
            })
            .collect()
    }

    /// A `roundtrip` mode's run: [`Events::check_read_back`], every partition assigned to the
    /// group's member (over all its `partitions_assigned`) and
    /// [`Events::check_commits_equal_end_offsets`].
    pub fn check_group_round_trip(&self, expected: &Expected) -> Result<ReadBack> {
        let read_back = self.check_read_back(expected)?;
        let mut assigned: Vec<i32> = self
            .events
            .iter()
            .filter_map(|event| match event {
                Event::PartitionsAssigned { topic, partitions, .. } if *topic == expected.topic => Some(partitions.iter().copied()),
                _ => None,
            })
            .flatten()
            .collect();
        assigned.sort_unstable();
        assigned.dedup();
        if assigned != (0..expected.partitions).collect::<Vec<_>>() {
            bail!("{}: the group assigned partitions {assigned:?} of {}, expected 0..{}", self.client, expected.topic, expected.partitions);
        }
        self.check_commits_equal_end_offsets(expected, &read_back)?;
        Ok(read_back)
    }

    /// The kcat adapter's run (e2e/scripts/kcat-roundtrip.sh): its `simple` and `group`
    /// consumers each read every record back exactly once ([`Events::check_read_back`]) with each
    /// partition's offsets gapless from 0, and the group, run again, resumed at its commits and
    /// read nothing.
    pub fn check_kcat_round_trip(&self, expected: &Expected) -> Result<()> {
        for consumer in ["simple", "group"] {
            let events = self.of_consumer(consumer);
            let read_back = events.check_read_back(expected).with_context(|| format!("kcat's {consumer} consumer"))?;
            events.check_exactly_once(expected, &read_back).with_context(|| format!("kcat's {consumer} consumer"))?;
        }
        let resumed = self.of_consumer("group-resumed");
        ensure!(
            resumed.consumed() == 0,
            "kcat's group read {} records again when run a second time: the commits were not honoured",
            resumed.consumed()
        );
        resumed.check_no_consumer_error()
    }

    fn check_no_consumer_error(&self) -> Result<()> {
        match self.events.iter().find(|event| matches!(event, Event::ConsumerError { .. })) {
            Some(error) => bail!("{}: {error:?}", self.client),
            None => Ok(()),
        }
    }

    /// Every record of `expected.indexes()` was acknowledged once and read back exactly once, at
    /// its acknowledged partition and offset, byte for byte (key, value, headers), with offsets
    /// increasing per partition and each producer's records in send order per partition.
    pub fn check_read_back(&self, expected: &Expected) -> Result<ReadBack> {
        let mut problems = Problems::default();
        let acknowledged = self.acknowledged(expected, &mut problems);
        let mut times_read = vec![0u32; expected.records as usize];
        let slot = |index: u64| (index - expected.first) as usize;
        let mut last_offset: HashMap<i32, i64> = HashMap::new();
        let mut last_index: HashMap<(i32, &str), u64> = HashMap::new();
        let mut consumed = 0u64;
        let mut per_partition: BTreeMap<i32, Vec<(i64, u64)>> = BTreeMap::new();
        for event in &self.events {
            match event {
                Event::ConsumerError { error, .. } => problems.add(format!("the consumer reported an error: {error}")),
                Event::RecordConsumed { topic, partition, offset, key, value, headers, .. } => {
                    consumed += 1;
                    let at = format!("{topic}/{partition}@{offset}");
                    if *topic != expected.topic {
                        problems.add(format!("a record of another topic was read: {at}"));
                        continue;
                    }
                    if let Some(previous) = last_offset.insert(*partition, *offset).filter(|previous| offset <= previous) {
                        problems.add(format!("partition {partition}: offset {offset} read after offset {previous}"));
                    }
                    let Some(index) = key.as_deref().and_then(crate::records::index_of).filter(|index| expected.indexes().contains(index))
                    else {
                        problems
                            .add(format!("{at} holds a key not produced by this run: {:?}", key.as_deref().map(String::from_utf8_lossy)));
                        continue;
                    };
                    times_read[slot(index)] += 1;
                    if times_read[slot(index)] > 1 {
                        problems.add(format!("record {index} read again at {at}"));
                        continue;
                    }
                    per_partition.entry(*partition).or_default().push((*offset, index));
                    match acknowledged.get(&index) {
                        Some(Ack { position: Some((acked_partition, acked_offset)), .. })
                            if (*acked_partition, *acked_offset) != (*partition, *offset) =>
                        {
                            problems.add(format!(
                                "record {index} read at {at} but acknowledged at {}/{acked_partition}@{acked_offset}",
                                expected.topic
                            ))
                        }
                        Some(ack) => {
                            if let Some(producer) = ack.producer {
                                if let Some(previous) =
                                    last_index.insert((*partition, producer), index).filter(|previous| index < *previous)
                                {
                                    problems.add(format!(
                                        "partition {partition}: record {index} of producer {producer} read after its record {previous}: send order lost"
                                    ));
                                }
                            }
                        }
                        None => {}
                    }
                    let producer = acknowledged.get(&index).and_then(|ack| ack.producer);
                    let expected_headers = expected.headers.of(index, &self.client, producer);
                    if let Some(difference) = payload_difference(index, &expected_headers, key.as_deref(), value.as_deref(), headers) {
                        problems.add(format!("record {index} at {at}: {difference}"));
                    }
                }
                _ => {}
            }
        }
        let missing: Vec<u64> = expected.indexes().filter(|index| times_read[slot(*index)] == 0).collect();
        if !missing.is_empty() {
            problems.add(format!(
                "{} of {} records never read, the first {:?}",
                missing.len(),
                expected.records,
                &missing[..missing.len().min(10)]
            ));
        }
        problems.into_result(&format!("{} read back from {}", self.client, expected.topic))?;
        // The acknowledged records are the last written, so a partition's end offset is one past the
        // last acknowledged there; without positions the topic started empty and it is the number
        // of records read there (each read once, checked above).
        let end_offsets = (0..expected.partitions)
            .map(|partition| {
                let end = match expected.positions_unknown {
                    false => acknowledged
                        .values()
                        .filter_map(|ack| ack.position.filter(|(at, _)| *at == partition).map(|(_, offset)| offset + 1))
                        .max()
                        .unwrap_or(0),
                    true => per_partition.get(&partition).map_or(0, Vec::len) as i64,
                };
                (partition, end)
            })
            .collect();
        Ok(ReadBack { consumed, end_offsets, per_partition })
    }

    /// The group's committed offsets (the last `offsets_committed` of the topic) equal the end
    /// offsets [`Events::check_read_back`] established. A partition that holds nothing may have no
    /// commit.
    pub fn check_commits_equal_end_offsets(&self, expected: &Expected, read_back: &ReadBack) -> Result<()> {
        let Some((group, offsets)) = self.events.iter().rev().find_map(|event| match event {
            Event::OffsetsCommitted { group, topic, offsets } if *topic == expected.topic => Some((group, offsets)),
            _ => None,
        }) else {
            bail!("{} reported no offsets_committed for {}", self.client, expected.topic)
        };
        let committed: BTreeMap<i32, i64> = offsets.iter().map(|commit| (commit.partition, commit.offset)).collect();
        let mut problems = Problems::default();
        for (partition, end) in &read_back.end_offsets {
            match committed.get(partition) {
                Some(offset) if offset == end => {}
                None if *end == 0 => {}
                other => problems.add(format!("partition {partition}: committed offset {other:?}, end offset {end}")),
            }
        }
        for partition in committed.keys().filter(|partition| !read_back.end_offsets.contains_key(partition)) {
            problems.add(format!("a commit for partition {partition}, which the topic does not have"));
        }
        problems.into_result(&format!("commits of group {group} on {}", expected.topic))
    }

    /// An idempotent producer's run: each partition read as gapless offsets from 0 up to its end
    /// offset (nothing written twice, nothing skipped) and, when the client reports producer ids,
    /// one producer id and epoch (not negative) on every acknowledgement and every record read
    /// that carries one. Returns that producer id and epoch, `None` when the client reports none
    /// (the suites then read them off the stored batches, `floe_e2e::batches`).
    pub fn check_exactly_once(&self, expected: &Expected, read_back: &ReadBack) -> Result<Option<(i64, i16)>> {
        let mut problems = Problems::default();
        let mut identities = std::collections::BTreeSet::new();
        let reports_identity = self.events.iter().any(|event| matches!(event, Event::ProducerSendSuccess { producer_id: Some(_), .. }));
        for event in &self.events {
            match event {
                Event::ProducerSendSuccess { producer_id, producer_epoch, index, .. } => match (producer_id, producer_epoch) {
                    (Some(id), Some(epoch)) => {
                        identities.insert((*id, *epoch));
                    }
                    _ if reports_identity => {
                        problems.add(format!("the acknowledgement of record {index} carries no producer id and epoch"))
                    }
                    _ => {}
                },
                Event::RecordConsumed { producer_id: Some(id), producer_epoch, partition, offset, .. } => {
                    identities.insert((*id, producer_epoch.unwrap_or(-1)));
                    if identities.len() > 1 {
                        problems.add(format!("{partition}@{offset} carries producer {id} epoch {producer_epoch:?}"));
                    }
                }
                _ => {}
            }
        }
        let identity = match identities.iter().collect::<Vec<_>>().as_slice() {
            [] => None,
            [(id, epoch)] if *id >= 0 && *epoch >= 0 => Some((*id, *epoch)),
            other => {
                problems.add(format!("the records carry (producer id, epoch) {other:?}, expected exactly one, not negative"));
                None
            }
        };
        gap_problems(read_back, &mut problems);
        problems.into_result(&format!("exactly once on {}", expected.topic))?;
        Ok(identity)
    }

    /// Each partition of a topic that started empty was read as the offsets `0..end` without a
    /// gap (nothing skipped, nothing written twice), whichever producers wrote it.
    pub fn check_gapless_offsets(&self, expected: &Expected, read_back: &ReadBack) -> Result<()> {
        let mut problems = Problems::default();
        gap_problems(read_back, &mut problems);
        problems.into_result(&format!("{} reading {}", self.client, expected.topic))
    }

    /// A producer-only run: every record of `expected.indexes()` acknowledged exactly once, inside
    /// the topic's partitions, none failed, no two at one position.
    pub fn check_acknowledged(&self, expected: &Expected) -> Result<()> {
        let mut problems = Problems::default();
        self.acknowledged(expected, &mut problems);
        problems.into_result(&format!("{} producing to {}", self.client, expected.topic))
    }

    /// Each keyed record was acknowledged at the partition Kafka's default partitioner picks for
    /// its key (murmur2, positive, modulo the partition count): the client saw the topic's
    /// partitions as they are and the broker kept each record where it was sent.
    pub fn check_default_partitioner(&self, expected: &Expected) -> Result<()> {
        let mut problems = Problems::default();
        for event in &self.events {
            if let Event::ProducerSendSuccess { topic, partition: Some(partition), index, .. } = event {
                let wanted = default_partition(&crate::records::key(*index), expected.partitions);
                if *topic == expected.topic && *partition != wanted {
                    problems.add(format!("record {index} acknowledged at partition {partition}, the default partitioner picks {wanted}"));
                }
            }
        }
        problems.into_result(&format!("{} partitioning {}", self.client, expected.topic))
    }

    /// A run of `members` members of one group (each naming itself in `consumer`), checked against
    /// the acknowledgements of the run that produced `expected` (see [`Events::combined`]):
    /// [`Events::check_read_back`]; each member's last assignment non-empty, no partition in two
    /// of them and every partition in one; and [`Events::check_commits_equal_end_offsets`].
    pub fn check_group_members(&self, expected: &Expected, members: usize) -> Result<ReadBack> {
        let read_back = self.check_read_back(expected)?;
        let mut last: BTreeMap<&str, &[i32]> = BTreeMap::new();
        for event in &self.events {
            if let Event::PartitionsAssigned { topic, partitions, consumer } = event {
                if *topic == expected.topic {
                    last.insert(consumer.as_deref().unwrap_or_default(), partitions);
                }
            }
        }
        let mut problems = Problems::default();
        if last.len() != members {
            problems.add(format!("{} members reported an assignment ({:?}), expected {members}", last.len(), last.keys()));
        }
        let mut owners: BTreeMap<i32, Vec<&str>> = BTreeMap::new();
        for (member, partitions) in &last {
            if partitions.is_empty() {
                problems.add(format!("{member} was last assigned no partition"));
            }
            for partition in partitions.iter() {
                owners.entry(*partition).or_default().push(member);
            }
        }
        for partition in 0..expected.partitions {
            match owners.remove(&partition).as_deref() {
                Some([_]) => {}
                None | Some([]) => problems.add(format!("partition {partition} was in no member's last assignment")),
                Some(several) => problems.add(format!("partition {partition} was last assigned to {several:?}")),
            }
        }
        for partition in owners.keys() {
            problems.add(format!("partition {partition}, which the topic does not have, was assigned"));
        }
        problems.into_result(&format!("the assignments of the group on {}", expected.topic))?;
        self.check_commits_equal_end_offsets(expected, &read_back)?;
        Ok(read_back)
    }

    /// What `reader` (the Java client's `read` mode, say) read of the records this run produced
    /// to a topic that started empty: [`Events::check_read_back`] against this run's
    /// acknowledgements and `h-client` ([`Events::combined`]), and
    /// [`Events::check_gapless_offsets`].
    pub fn check_read_by(&self, reader: &Events, expected: &Expected) -> Result<ReadBack> {
        let combined = Events::combined(self, reader);
        let read_back =
            combined.check_read_back(expected).with_context(|| format!("{} reading what {} wrote", reader.client, self.client))?;
        combined
            .check_gapless_offsets(expected, &read_back)
            .with_context(|| format!("{} reading what {} wrote", reader.client, self.client))?;
        Ok(read_back)
    }

    /// The acknowledgements (and send errors) of `producer` with what `reader` read (its records,
    /// consumer errors, assignments and commits): for a client that reads what another client or
    /// run wrote. The records must carry `producer`'s `h-client`.
    pub fn combined(producer: &Events, reader: &Events) -> Events {
        let produced =
            producer.events.iter().filter(|event| matches!(event, Event::ProducerSendSuccess { .. } | Event::ProducerSendError { .. }));
        let read = reader.events.iter().filter(|event| {
            matches!(
                event,
                Event::RecordConsumed { .. }
                    | Event::ConsumerError { .. }
                    | Event::PartitionsAssigned { .. }
                    | Event::OffsetsCommitted { .. }
            )
        });
        Events { client: producer.client.clone(), events: produced.chain(read).cloned().collect() }
    }

    /// The Java driver's `produce-range` of `expected` on a topic of 12 partitions, its
    /// acknowledgements checked (each record once, none failed).
    pub fn java_produce_range(bootstrap: &str, expected: &Expected) -> Result<Events> {
        let (start, count) = (expected.first.to_string(), expected.records.to_string());
        let command = crate::java_driver(&[
            "produce-range",
            "--bootstrap",
            bootstrap,
            "--topic",
            &expected.topic,
            "--partitions",
            "12",
            "--start",
            &start,
            "--count",
            &count,
        ])?;
        let events = run(command, Duration::from_secs(240))?;
        events.check_acknowledged(expected)?;
        Ok(events)
    }

    /// Runs a driver's `transactions` mode (20 transactions of 10 records on 3 partitions) on a
    /// fresh playground and checks it, recording the matrix cell (issue 19, done-when 7); `driver`
    /// builds the command from the mode's arguments.
    pub fn prove_transactions(client: &'static str, driver: impl Fn(&[&str]) -> Result<Command>) -> Result<()> {
        let cell = crate::matrix::Cell::open(
            client,
            "transactions",
            "a transactional producer commits half of 20 transactions and aborts the others; read_committed reads exactly the committed records",
        );
        let playground = crate::Playground::start(&[])?;
        let (topic, transactional_id) = (format!("{client}-transactions"), format!("{client}-tx"));
        let arguments = [
            "transactions",
            "--bootstrap",
            &playground.bootstrap,
            "--topic",
            &topic,
            "--partitions",
            "3",
            "--records",
            "200",
            "--transactional-id",
            &transactional_id,
        ];
        run(driver(&arguments)?, std::time::Duration::from_secs(240))?.check_transactions(&topic)?;
        cell.pass();
        Ok(())
    }

    /// The `transactions` mode's run (e2e/README.md): at least one transaction committed and one
    /// aborted; read_committed returned exactly the records of the committed transactions, each
    /// once, at its acknowledged partition and offset, with its key, value and `h-index`; nothing
    /// of an aborted one.
    pub fn check_transactions(&self, topic: &str) -> Result<()> {
        let mut committed: HashMap<u64, ()> = HashMap::new();
        let mut aborted: HashMap<u64, ()> = HashMap::new();
        let mut acknowledged: HashMap<u64, (Option<i32>, Option<i64>)> = HashMap::new();
        let mut problems = Problems::default();
        for event in &self.events {
            match event {
                Event::AdminResult { operation, resource, error, result } => {
                    let first = result.get("first").and_then(|value| value.as_u64());
                    let count = result.get("count").and_then(|value| value.as_u64());
                    let (Some(first), Some(count)) = (first, count) else {
                        problems.add(format!("transaction {resource}: result {result} lacks first and count"));
                        continue;
                    };
                    match (operation.as_str(), error) {
                        ("commit_transaction", None) => committed.extend((first..first + count).map(|index| (index, ()))),
                        ("commit_transaction", Some(error)) => problems.add(format!("transaction {resource}: commit failed with {error}")),
                        ("abort_transaction", _) => aborted.extend((first..first + count).map(|index| (index, ()))),
                        (other, _) => problems.add(format!("unexpected admin_result {other}")),
                    }
                }
                Event::ProducerSendSuccess { index, partition, offset, .. } => {
                    acknowledged.insert(*index, (*partition, *offset));
                }
                _ => {}
            }
        }
        ensure!(
            !committed.is_empty() && !aborted.is_empty(),
            "{}: {} records committed and {} aborted; the run proves nothing",
            self.client,
            committed.len(),
            aborted.len()
        );
        let mut read: HashMap<u64, u32> = HashMap::new();
        for event in &self.events {
            match event {
                Event::ConsumerError { error, .. } => problems.add(format!("the consumer reported an error: {error}")),
                Event::RecordConsumed { topic: read_topic, partition, offset, key, value, headers, .. } => {
                    let at = format!("{read_topic}/{partition}@{offset}");
                    let Some(index) = key.as_deref().and_then(crate::records::index_of).filter(|_| read_topic == topic) else {
                        problems.add(format!("{at} is not a record of this run"));
                        continue;
                    };
                    if aborted.contains_key(&index) {
                        problems.add(format!("record {index} of an aborted transaction was read at {at}"));
                    } else if !committed.contains_key(&index) {
                        problems.add(format!("record {index} at {at} belongs to no committed transaction"));
                    }
                    *read.entry(index).or_default() += 1;
                    if read[&index] > 1 {
                        problems.add(format!("record {index} read again at {at}"));
                    }
                    if value.as_deref() != Some(crate::records::value(index).as_slice()) {
                        problems.add(format!("record {index} at {at} has the wrong value"));
                    }
                    if !headers
                        .iter()
                        .any(|header| header.key == "h-index" && header.value.as_deref() == Some(index.to_string().as_bytes()))
                    {
                        problems.add(format!("record {index} at {at} lacks its h-index header"));
                    }
                    match acknowledged.get(&index) {
                        Some((Some(acked_partition), Some(acked_offset))) if (acked_partition, acked_offset) != (partition, offset) => {
                            problems.add(format!("record {index} read at {at} but acknowledged at {acked_partition}@{acked_offset}"))
                        }
                        None if committed.contains_key(&index) => problems.add(format!("record {index} was read but never acknowledged")),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        let mut missing: Vec<u64> = committed.keys().filter(|index| !read.contains_key(index)).copied().collect();
        missing.sort_unstable();
        if !missing.is_empty() {
            problems.add(format!("{} committed records were not read, e.g. {:?}", missing.len(), &missing[..missing.len().min(10)]));
        }
        problems.into_result(&format!("{}: transactions on {topic}", self.client))
    }

    /// The `denied` mode's run (e2e/README.md): a user without any ACL gets Kafka's exact code for
    /// each step, `errors` being (operation, resource, expected error name or `None` for success).
    pub fn check_denials(&self, expected: &[(&str, &str, Option<&str>)]) -> Result<()> {
        let steps: Vec<(&str, &str)> = self
            .events
            .iter()
            .filter_map(|event| match event {
                Event::AdminResult { operation, resource, .. } => Some((operation.as_str(), resource.as_str())),
                _ => None,
            })
            .collect();
        let wanted: Vec<(&str, &str)> = expected.iter().map(|(operation, resource, _)| (*operation, *resource)).collect();
        ensure!(steps == wanted, "{}: the denied run reported the steps {steps:?}, expected {wanted:?}", self.client);
        for (operation, resource, error) in expected {
            let reported = self.admin_results(operation, resource);
            let names: Vec<Option<&str>> = reported.iter().map(|(error, _)| *error).collect();
            ensure!(names == [*error], "{}: {operation} on {resource} answered {names:?}, expected {error:?}", self.client);
        }
        Ok(())
    }

    /// The `admin` mode's run (e2e/README.md lists the calls): what each call must have answered
    /// on a fresh `topic` and a group `group` whose one member has client id `client_id`.
    pub fn check_admin_results(&self, topic: &str, group: &str, client_id: &str) -> Result<()> {
        use serde_json::{json, Value};
        let errors = |operation: &str, resource: &str, expected: &[Option<&str>]| -> Result<Vec<&Value>> {
            let reported = self.admin_results(operation, resource);
            let names: Vec<Option<&str>> = reported.iter().map(|(error, _)| *error).collect();
            ensure!(
                names == expected,
                "{}: {operation} on {resource} answered {reported:?}, expected the errors {expected:?}",
                self.client
            );
            Ok(reported.into_iter().map(|(_, result)| result).collect())
        };
        let ensure_results = |operation: &str, results: &[&Value], keys: &[&str], expected: &[Value]| -> Result<()> {
            let shown: Vec<Value> =
                results.iter().map(|result| keys.iter().map(|key| (key.to_string(), result[key].clone())).collect()).collect();
            ensure!(shown == expected, "{}: {operation} answered {shown:?}, expected {expected:?}", self.client);
            Ok(())
        };
        errors("create_topics", topic, &[None, Some("TOPIC_ALREADY_EXISTS")])?;
        let metadata = errors("metadata", topic, &[None, None])?;
        ensure_results(
            "metadata",
            &metadata,
            &["partitions"],
            &[json!({"partitions": [0, 1, 2]}), json!({"partitions": [0, 1, 2, 3, 4]})],
        )?;
        let led =
            |result: &&Value| result["leaders"].as_array().is_some_and(|leaders| leaders.iter().all(|leader| leader.as_i64() >= Some(0)));
        ensure!(metadata.iter().all(led), "{}: a partition of {topic} without a leader: {metadata:?}", self.client);
        // The Java client also reports whether every partition's ISR equals its replicas.
        let in_sync = |result: &&Value| result.get("isr_is_replicas").is_none_or(|in_sync| *in_sync == true);
        ensure!(metadata.iter().all(in_sync), "{}: a partition of {topic} whose ISR is not its replicas: {metadata:?}", self.client);
        errors("create_partitions", topic, &[None, Some("INVALID_PARTITIONS")])?;
        // kafkajs has only the legacy AlterConfigs (the given set replaces every set config); the
        // others alter incrementally (SET, then DELETE). Both end in the same described configs.
        let alter = if self.admin_results("alter_configs", topic).is_empty() { "incremental_alter_configs" } else { "alter_configs" };
        errors(alter, topic, &[None, None])?;
        let described = errors("describe_configs", topic, &[None, None, None])?;
        let config = |value: &str, source: &str| json!({"value": value, "source": source});
        let expected = [
            [("retention.ms", config("3600000", "DYNAMIC_TOPIC_CONFIG")), ("cleanup.policy", config("delete", "DEFAULT_CONFIG"))],
            [("retention.ms", config("7200000", "DYNAMIC_TOPIC_CONFIG")), ("retention.bytes", config("1048576", "DYNAMIC_TOPIC_CONFIG"))],
            [("retention.ms", config("7200000", "DYNAMIC_TOPIC_CONFIG")), ("retention.bytes", config("-1", "DEFAULT_CONFIG"))],
        ];
        for (step, (result, expected)) in described.iter().zip(expected).enumerate() {
            for (key, value) in expected {
                let reported = &result["configs"][key];
                ensure!(*reported == value, "{}: describe_configs {step} of {topic}: {key} is {reported}, expected {value}", self.client);
            }
        }
        let commit = errors("commit", group, &[None])?;
        ensure_results("commit", &commit, &["read"], &[json!({"read": 50})])?;
        let listed = errors("list_groups", group, &[None, None])?;
        ensure_results(
            "list_groups",
            &listed,
            &["listed", "protocol_type"],
            &[json!({"listed": true, "protocol_type": "consumer"}), json!({"listed": false, "protocol_type": ""})],
        )?;
        // A client whose ListGroups carries no state (kafkajs) reports it as null.
        ensure!(
            listed[0]["state"] == "Stable" || listed[0]["state"].is_null(),
            "{}: list_groups shows {group} in state {}, expected Stable",
            self.client,
            listed[0]["state"]
        );
        let described = errors("describe_groups", group, &[None, None])?;
        ensure_results(
            "describe_groups",
            &described,
            &["state", "members"],
            &[
                json!({"state": "Stable", "members": [{"client_id": client_id, "partitions": [0, 1, 2, 3, 4]}]}),
                json!({"state": "Empty", "members": []}),
            ],
        )?;
        ensure!(described[0]["protocol_type"] == "consumer", "{}: describe_groups answered {}", self.client, described[0]);
        // The Java client also reports the group's coordinator and the assignor the live group uses.
        ensure!(
            described[0].get("coordinator").is_none_or(|coordinator| coordinator.as_i64() >= Some(0))
                && described[0].get("assignor").is_none_or(|assignor| assignor.as_str().is_some_and(|name| !name.is_empty())),
            "{}: describe_groups answered no coordinator or no assignor for the live group: {}",
            self.client,
            described[0]
        );
        let fetched = errors("offset_fetch", group, &[None])?;
        let committed = fetched[0]["offsets"].as_object().cloned().unwrap_or_default();
        let sum: i64 = committed.values().filter_map(Value::as_i64).sum();
        ensure!(sum == 50, "{}: the committed offsets of {group} {committed:?} add up to {sum}, expected 50", self.client);
        if let [(None, ends)] = self.admin_results("list_offsets", topic).as_slice() {
            ensure!(
                ends["offsets"].as_object() == Some(&committed),
                "{}: committed offsets {committed:?}, end offsets {ends}",
                self.client
            );
        } else if let [(None, lag)] = self.admin_results("lag", group).as_slice() {
            ensure!(lag["total"] == 0, "{}: the lag of {group} is {lag}, expected 0", self.client);
        } else {
            bail!("{}: neither list_offsets of {topic} nor lag of {group} reported once", self.client);
        }
        errors("delete_groups", group, &[Some("NON_EMPTY_GROUP"), None, Some("GROUP_ID_NOT_FOUND")])?;
        errors("delete_topics", topic, &[None])?;
        // A client may also list the topics right after creating it (the Java client does).
        if self.admin_results("list_topics", topic).len() == 2 {
            let listed = errors("list_topics", topic, &[None, None])?;
            return ensure_results("list_topics", &listed, &["listed"], &[json!({"listed": true}), json!({"listed": false})]);
        }
        let listed = errors("list_topics", topic, &[None])?;
        ensure_results("list_topics", &listed, &["listed"], &[json!({"listed": false})])
    }

    /// Acknowledgements by record index; problems for send errors, repeats, foreign topics, two
    /// records at one offset and records never acknowledged.
    fn acknowledged<'a>(&'a self, expected: &Expected, problems: &mut Problems) -> HashMap<u64, Ack<'a>> {
        let mut acknowledged = HashMap::new();
        let mut positions = HashMap::new();
        for event in &self.events {
            match event {
                Event::ProducerSendError { topic, index, error } => {
                    problems.add(format!("record {index} to {topic} not acknowledged: {error}"))
                }
                Event::ProducerSendSuccess { topic, partition, offset, index, producer, .. } => {
                    let position = partition.zip(*offset);
                    if *topic != expected.topic
                        || !expected.indexes().contains(index)
                        || position.is_some_and(|(partition, _)| partition < 0 || partition >= expected.partitions)
                    {
                        problems.add(format!("an acknowledgement of record {index} at {topic}/{position:?}, outside this run"));
                        continue;
                    }
                    match position {
                        None if !expected.positions_unknown => {
                            problems.add(format!("the acknowledgement of record {index} has no partition and offset"))
                        }
                        None => {}
                        Some((partition, offset)) => {
                            if let Some(other) = positions.insert((partition, offset), *index) {
                                problems.add(format!("records {other} and {index} both acknowledged at {partition}@{offset}"));
                            }
                        }
                    }
                    let ack = Ack { position, producer: producer.as_deref() };
                    if acknowledged.insert(*index, ack).is_some() {
                        problems.add(format!("record {index} acknowledged twice"));
                    }
                }
                _ => {}
            }
        }
        let unacknowledged: Vec<u64> = expected.indexes().filter(|index| !acknowledged.contains_key(index)).collect();
        if !unacknowledged.is_empty() {
            problems.add(format!(
                "{} records never acknowledged, the first {:?}",
                unacknowledged.len(),
                &unacknowledged[..unacknowledged.len().min(10)]
            ));
        }
        acknowledged
    }
}

/// What a run was asked to produce: records `first..first + records` of the shared format into
/// `topic`, which has `partitions` partitions and held nothing before (or, for a later range,
/// only earlier records; see [`Expected::range`]).
#[derive(Debug, Clone)]
pub struct Expected {
    pub topic: String,
    pub partitions: i32,
    /// The index of the first record (0 but for [`Expected::range`]).
    pub first: u64,
    pub records: u64,
    /// The acknowledgements carry no partition and offset (kcat: an exit 0 of `kcat -P` says
    /// every delivery succeeded, not where). The read-back check then cannot compare positions;
    /// the end offsets come from what was read.
    pub positions_unknown: bool,
    pub headers: HeaderFormat,
}

/// The headers record `i` carries (the formats are `floe_e2e::records`').
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderFormat {
    /// [`crate::records::headers`]: `h-index=<i>`, `h-client=<client>`.
    PerRecord,
    /// [`crate::records::run_headers`]: the same for every record of one producer run, named by
    /// the acknowledgement's `producer` (kcat's `-H` applies to a whole run).
    PerProducerRun,
}

impl HeaderFormat {
    fn of(self, index: u64, client: &str, producer: Option<&str>) -> Vec<(String, Vec<u8>)> {
        match self {
            HeaderFormat::PerRecord => crate::records::headers(index, client),
            HeaderFormat::PerProducerRun => crate::records::run_headers(client, producer.unwrap_or_default()),
        }
    }
}

impl Expected {
    pub fn new(topic: &str, partitions: i32, records: u64) -> Self {
        Self { topic: topic.to_string(), partitions, first: 0, records, positions_unknown: false, headers: HeaderFormat::PerRecord }
    }

    /// Records `first..first + records`, written after the topic's earlier records (`0..first`,
    /// say). The end offsets then come from the acknowledgements' offsets, and the gapless-offset
    /// check ([`Events::check_gapless_offsets`], which assumes an empty topic) does not apply.
    pub fn range(topic: &str, partitions: i32, first: u64, records: u64) -> Self {
        Self { first, ..Self::new(topic, partitions, records) }
    }

    /// The indexes of the records this run is about.
    pub fn indexes(&self) -> std::ops::Range<u64> {
        self.first..self.first + self.records
    }

    /// A client that reports acknowledgements without positions and sets headers per producer
    /// run (kcat).
    pub fn kcat(topic: &str, partitions: i32, records: u64) -> Self {
        Self { positions_unknown: true, headers: HeaderFormat::PerProducerRun, ..Self::new(topic, partitions, records) }
    }
}

/// What [`Events::check_read_back`] established.
#[derive(Debug)]
pub struct ReadBack {
    /// Records the consumer returned, repeats included.
    pub consumed: u64,
    /// Each partition's end offset, from the acknowledgements (the topic was empty before).
    pub end_offsets: BTreeMap<i32, i64>,
    /// (offset, record index) per partition, in the order read, first reads only.
    pub per_partition: BTreeMap<i32, Vec<(i64, u64)>>,
}

struct Ack<'a> {
    /// (partition, offset), when the client reports it.
    position: Option<(i32, i64)>,
    producer: Option<&'a str>,
}

/// How the bytes read differ from record `index` of the shared format, or `None`.
fn payload_difference(
    index: u64,
    expected_headers: &[(String, Vec<u8>)],
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[Header],
) -> Option<String> {
    let expected_key = crate::records::key(index);
    if key != Some(expected_key.as_slice()) {
        return Some(format!("key {:?}, expected {:?}", key.map(String::from_utf8_lossy), String::from_utf8_lossy(&expected_key)));
    }
    let expected_value = crate::records::value(index);
    let value = value.unwrap_or_default();
    if value != expected_value {
        let at = value.iter().zip(&expected_value).take_while(|(read, wanted)| read == wanted).count();
        return Some(format!("value of {} bytes, expected {}, first difference at byte {at}", value.len(), expected_value.len()));
    }
    let read_headers: Vec<(String, Vec<u8>)> =
        headers.iter().map(|header| (header.key.clone(), header.value.clone().unwrap_or_default())).collect();
    if read_headers != expected_headers {
        return Some(format!("headers {}, expected {}", describe_headers(&read_headers), describe_headers(expected_headers)));
    }
    None
}

/// Problems for each partition not read as the offsets `0..end` without a gap.
fn gap_problems(read_back: &ReadBack, problems: &mut Problems) {
    for (partition, end) in &read_back.end_offsets {
        let offsets: Vec<i64> =
            read_back.per_partition.get(partition).map(|read| read.iter().map(|(offset, _)| *offset).collect()).unwrap_or_default();
        if offsets != (0..*end).collect::<Vec<_>>() {
            let gap = offsets.iter().enumerate().find(|(position, offset)| **offset != *position as i64);
            problems.add(format!("partition {partition}: offsets read are not 0..{end} without gaps (first out of place: {gap:?})"));
        }
    }
}

fn describe_headers(headers: &[(String, Vec<u8>)]) -> String {
    headers.iter().map(|(key, value)| format!("{key}={}", String::from_utf8_lossy(value))).collect::<Vec<_>>().join(",")
}

/// Check failures: the count and the first few, so 100,000 bad records make a readable error.
#[derive(Default)]
struct Problems {
    first: Vec<String>,
    count: usize,
}

impl Problems {
    fn add(&mut self, problem: String) {
        self.count += 1;
        if self.first.len() < 20 {
            self.first.push(problem);
        }
    }

    fn into_result(self, what: &str) -> Result<()> {
        if self.count == 0 {
            return Ok(());
        }
        let mut text = format!("{what}: {} problem(s)", self.count);
        for problem in &self.first {
            text.push_str("\n  - ");
            text.push_str(problem);
        }
        if self.count > self.first.len() {
            text.push_str(&format!("\n  ... and {} more", self.count - self.first.len()));
        }
        bail!(text)
    }
}

fn shorten(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}

/// Runs a verifiable-client driver to completion and returns its events. Stdout is parsed as it
/// arrives (a 100,000-record run prints tens of megabytes); stderr is the driver's log, kept for
/// the error message and echoed when `FLOE_E2E_DRIVER_LOG` is set.
pub fn run(mut command: Command, timeout: Duration) -> Result<Events> {
    let description = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("failed to start {description}"))?;
    let stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let echo = std::env::var_os("FLOE_E2E_DRIVER_LOG").is_some();
    let events_thread = std::thread::spawn(move || -> Result<Vec<Event>> {
        let mut events = Vec::new();
        let mut malformed = None;
        for (number, line) in BufReader::new(stdout).lines().enumerate() {
            let line = line.context("failed to read the driver's stdout")?;
            if line.trim().is_empty() || malformed.is_some() {
                continue;
            }
            match parse_event(&line) {
                Ok(event) => events.push(event),
                // Keep draining so the driver never blocks on a full pipe; report the first.
                Err(error) => malformed = Some(error.context(format!("stdout line {}", number + 1))),
            }
        }
        match malformed {
            Some(error) => Err(error),
            None => Ok(events),
        }
    });
    let log_thread = std::thread::spawn(move || {
        let mut log = Vec::new();
        let mut buffer = [0u8; 8192];
        while let Ok(read) = stderr.read(&mut buffer) {
            if read == 0 {
                break;
            }
            if echo {
                eprint!("{}", String::from_utf8_lossy(&buffer[..read]));
            }
            log.extend_from_slice(&buffer[..read]);
        }
        String::from_utf8_lossy(&log).into_owned()
    });
    let status = crate::wait_with_timeout(&mut child, timeout, &description)?;
    let log = log_thread.join().unwrap_or_default();
    let tail = |log: &str| {
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    if !status.success() {
        bail!("{description} exited with {status}\n--- the end of its stderr ---\n{}", tail(&log));
    }
    let events = events_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the stdout reader panicked"))?
        .and_then(Events::new)
        .with_context(|| format!("{description} broke the event contract\n--- the end of its stderr ---\n{}", tail(&log)))?;
    println!("{}: {} events", events.client, events.events.len());
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: &str = "t";

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    fn ack(index: u64, partition: i32, offset: i64) -> String {
        format!(
            r#"{{"name":"producer_send_success","topic":"{TOPIC}","partition":{partition},"offset":{offset},"index":{index},"producer":"p","producer_id":7,"producer_epoch":0}}"#
        )
    }

    fn consumed_bytes(partition: i32, offset: i64, key: &[u8], value: &[u8], index: u64) -> String {
        format!(
            r#"{{"name":"record_consumed","topic":"{TOPIC}","partition":{partition},"offset":{offset},"key":"{}","value":"{}","headers":[{{"key":"h-index","value":"{}"}},{{"key":"h-client","value":"{}"}}]}}"#,
            hex(key),
            hex(value),
            hex(index.to_string().as_bytes()),
            hex(b"test")
        )
    }

    fn consumed(index: u64, partition: i32, offset: i64) -> String {
        consumed_bytes(partition, offset, &crate::records::key(index), &crate::records::value(index), index)
    }

    fn commits(offsets: &[(i32, i64)]) -> String {
        let offsets: Vec<String> =
            offsets.iter().map(|(partition, offset)| format!(r#"{{"partition":{partition},"offset":{offset}}}"#)).collect();
        format!(r#"{{"name":"offsets_committed","group":"g","topic":"{TOPIC}","offsets":[{}]}}"#, offsets.join(","))
    }

    /// Records 0..4: 0 and 2 on partition 0 (offsets 0, 1), 1 and 3 on partition 1 (offsets 0, 1).
    fn good_lines() -> Vec<String> {
        let mut lines = vec![r#"{"name":"startup_complete","client":"test"}"#.to_string()];
        lines.extend([ack(0, 0, 0), ack(1, 1, 0), ack(2, 0, 1), ack(3, 1, 1)]);
        lines.push(r#"{"name":"partitions_assigned","topic":"t","partitions":[0,1]}"#.to_string());
        lines.extend([consumed(0, 0, 0), consumed(1, 1, 0), consumed(2, 0, 1), consumed(3, 1, 1)]);
        lines.push(commits(&[(0, 2), (1, 2)]));
        lines.push(r#"{"name":"shutdown_complete"}"#.to_string());
        lines
    }

    fn check(lines: &[String]) -> Result<()> {
        let events = parse_events(&lines.join("\n"))?;
        let expected = Expected::new(TOPIC, 2, 4);
        let read_back = events.check_group_round_trip(&expected)?;
        events.check_exactly_once(&expected, &read_back)?;
        Ok(())
    }

    fn replace(mut lines: Vec<String>, from: &str, to: &str) -> Vec<String> {
        let position = lines.iter().position(|line| *line == from).expect("the line is in the stream");
        lines[position] = to.to_string();
        lines
    }

    #[test]
    fn a_complete_run_passes_every_check() {
        check(&good_lines()).expect("the good stream passes");
    }

    #[test]
    fn a_record_never_read_fails() {
        let lines: Vec<String> = good_lines().into_iter().filter(|line| *line != consumed(3, 1, 1)).collect();
        let error = format!("{:#}", check(&lines).unwrap_err());
        assert!(error.contains("never read, the first [3]"), "{error}");
    }

    #[test]
    fn a_record_read_twice_fails() {
        let mut lines = good_lines();
        lines.insert(7, consumed(0, 0, 0));
        let error = format!("{:#}", check(&lines).unwrap_err());
        assert!(error.contains("record 0 read again") || error.contains("offset 0 read after offset 0"), "{error}");
    }

    #[test]
    fn a_duplicate_in_the_log_at_a_later_offset_fails() {
        let mut lines = good_lines();
        lines.insert(10, consumed(1, 1, 2));
        let error = format!("{:#}", check(&lines).unwrap_err());
        assert!(error.contains("record 1 read again at t/1@2"), "{error}");
    }

    #[test]
    fn one_wrong_value_byte_fails() {
        let mut value = crate::records::value(2);
        let last = value.len() - 1;
        value[last] ^= 1;
        let lines = replace(good_lines(), &consumed(2, 0, 1), &consumed_bytes(0, 1, &crate::records::key(2), &value, 2));
        let error = format!("{:#}", check(&lines).unwrap_err());
        assert!(
            error.contains(&format!("record 2 at t/0@1: value of {} bytes, expected {0}, first difference at byte {last}", value.len())),
            "{error}"
        );
    }

    #[test]
    fn a_wrong_header_fails() {
        let wrong = consumed(1, 1, 0).replace(&hex(b"test"), &hex(b"tost"));
        let error = format!("{:#}", check(&replace(good_lines(), &consumed(1, 1, 0), &wrong)).unwrap_err());
        assert!(error.contains("headers h-index=1,h-client=tost, expected h-index=1,h-client=test"), "{error}");
    }

    #[test]
    fn a_record_read_at_another_offset_than_acknowledged_fails() {
        let lines = replace(good_lines(), &ack(3, 1, 1), &ack(3, 1, 5));
        let error = format!("{:#}", check(&lines).unwrap_err());
        assert!(error.contains("record 3 read at t/1@1 but acknowledged at t/1@5"), "{error}");
    }

    #[test]
    fn records_read_out_of_offset_order_fail() {
        let mut lines = good_lines();
        lines.swap(6, 8);
        let error = format!("{:#}", check(&lines).unwrap_err());
        assert!(error.contains("partition 0: offset 0 read after offset 1"), "{error}");
    }

    #[test]
    fn a_send_error_or_a_missing_acknowledgement_fails() {
        let failed = r#"{"name":"producer_send_error","topic":"t","index":1,"error":"REQUEST_TIMED_OUT"}"#;
        let error = format!("{:#}", check(&replace(good_lines(), &ack(1, 1, 0), failed)).unwrap_err());
        assert!(error.contains("record 1 to t not acknowledged: REQUEST_TIMED_OUT"), "{error}");
        assert!(error.contains("1 records never acknowledged, the first [1]"), "{error}");
    }

    #[test]
    fn a_commit_short_of_the_end_offset_fails() {
        let lines = replace(good_lines(), &commits(&[(0, 2), (1, 2)]), &commits(&[(0, 2), (1, 1)]));
        let error = format!("{:#}", check(&lines).unwrap_err());
        assert!(error.contains("partition 1: committed offset Some(1), end offset 2"), "{error}");
    }

    #[test]
    fn a_partition_never_assigned_to_the_group_fails() {
        let lines = replace(
            good_lines(),
            r#"{"name":"partitions_assigned","topic":"t","partitions":[0,1]}"#,
            r#"{"name":"partitions_assigned","topic":"t","partitions":[0]}"#,
        );
        let error = format!("{:#}", check(&lines).unwrap_err());
        assert!(error.contains("the group assigned partitions [0] of t, expected 0..2"), "{error}");
    }

    #[test]
    fn a_second_producer_id_fails_the_exactly_once_check() {
        let lines = replace(good_lines(), &ack(3, 1, 1), &ack(3, 1, 1).replace(r#""producer_id":7"#, r#""producer_id":8"#));
        let error = format!("{:#}", check(&lines).unwrap_err());
        assert!(error.contains("expected exactly one"), "{error}");
    }

    #[test]
    fn a_malformed_line_or_a_broken_frame_is_refused() {
        let mut lines = good_lines();
        lines.insert(3, "OK all good".to_string());
        let error = format!("{:#}", parse_events(&lines.join("\n")).unwrap_err());
        assert!(error.contains("stdout line 4") && error.contains("malformed event line \"OK all good\""), "{error}");
        let truncated = good_lines()[..5].join("\n");
        let error = format!("{:#}", parse_events(&truncated).unwrap_err());
        assert!(error.contains("expected shutdown_complete"), "{error}");
        let unknown = r#"{"name":"record_consumed","topic":"t","partition":0,"offset":0,"key":"zz","value":null,"headers":[]}"#;
        assert!(parse_event(unknown).is_err(), "a key that is not hex is malformed");
    }

    /// A kcat-like run of records 0..4: acknowledged without positions, headers per producer
    /// run, read by the `simple` and `group` consumers, then nothing by `group-resumed`.
    fn kcat_lines() -> Vec<String> {
        let mut lines = vec![r#"{"name":"startup_complete","client":"kcat"}"#.to_string()];
        for index in 0..4 {
            lines.push(format!(
                r#"{{"name":"producer_send_success","topic":"t","partition":null,"offset":null,"index":{index},"producer":"gzip"}}"#
            ));
        }
        for consumer in ["simple", "group"] {
            for (index, partition, offset) in [(0, 0, 0), (1, 1, 0), (2, 0, 1), (3, 1, 1)] {
                lines.push(format!(
                    r#"{{"name":"record_consumed","topic":"t","partition":{partition},"offset":{offset},"key":"{}","value":"{}","headers":[{{"key":"h-client","value":"{}"}},{{"key":"h-codec","value":"{}"}}],"consumer":"{consumer}"}}"#,
                    hex(&crate::records::key(index)),
                    hex(&crate::records::value(index)),
                    hex(b"kcat"),
                    hex(b"gzip"),
                ));
            }
        }
        lines.push(r#"{"name":"shutdown_complete"}"#.to_string());
        lines
    }

    fn check_kcat(lines: &[String]) -> Result<()> {
        parse_events(&lines.join("\n"))?.check_kcat_round_trip(&Expected::kcat(TOPIC, 2, 4))
    }

    #[test]
    fn a_kcat_run_passes_and_fails_on_a_missing_record_a_wrong_header_a_gap_or_a_group_that_did_not_resume() {
        check_kcat(&kcat_lines()).expect("the kcat-like stream passes");
        let group_read = |index: u64, partition: i32, offset: i64| {
            kcat_lines().into_iter().find(|line| {
                line.contains(r#""consumer":"group""#)
                    && line.contains(&format!(r#""partition":{partition},"offset":{offset},"key":"{}""#, hex(&crate::records::key(index))))
            })
        };
        let missing = group_read(3, 1, 1).expect("in the stream");
        let lines: Vec<String> = kcat_lines().into_iter().filter(|line| *line != missing).collect();
        let error = format!("{:#}", check_kcat(&lines).unwrap_err());
        assert!(error.contains("kcat's group consumer") && error.contains("never read, the first [3]"), "{error}");

        let wrong_codec = missing.replace(&hex(b"gzip"), &hex(b"zstd"));
        let error = format!("{:#}", check_kcat(&replace(kcat_lines(), &missing, &wrong_codec)).unwrap_err());
        assert!(error.contains("headers h-client=kcat,h-codec=zstd, expected h-client=kcat,h-codec=gzip"), "{error}");

        let gap = missing.replace(r#""offset":1"#, r#""offset":2"#);
        let error = format!("{:#}", check_kcat(&replace(kcat_lines(), &missing, &gap)).unwrap_err());
        assert!(error.contains("partition 1: offsets read are not 0..2 without gaps"), "{error}");

        let mut lines = kcat_lines();
        lines.insert(lines.len() - 1, missing.replace(r#""consumer":"group""#, r#""consumer":"group-resumed""#));
        let error = format!("{:#}", check_kcat(&lines).unwrap_err());
        assert!(error.contains("read 1 records again"), "{error}");
    }

    #[test]
    fn an_acknowledgement_without_a_position_fails_where_positions_are_expected() {
        let lines =
            replace(good_lines(), &ack(2, 0, 1), &ack(2, 0, 1).replace(r#""partition":0,"offset":1"#, r#""partition":null,"offset":null"#));
        let error = format!("{:#}", check(&lines).unwrap_err());
        assert!(error.contains("the acknowledgement of record 2 has no partition and offset"), "{error}");
    }

    #[test]
    fn an_acknowledgement_at_another_partition_than_the_key_maps_to_fails() {
        let expected = Expected::new(TOPIC, 2, 4);
        let partition = |index: u64| default_partition(&crate::records::key(index), 2);
        let mut lines = vec![r#"{"name":"startup_complete","client":"test"}"#.to_string()];
        lines.extend((0..4).map(|index| ack(index, partition(index), index as i64)));
        lines.push(r#"{"name":"shutdown_complete"}"#.to_string());
        parse_events(&lines.join("\n")).unwrap().check_default_partitioner(&expected).expect("every record where its key maps");
        lines[3] = ack(2, 1 - partition(2), 2);
        let error = format!("{:#}", parse_events(&lines.join("\n")).unwrap().check_default_partitioner(&expected).unwrap_err());
        assert!(
            error.contains(&format!(
                "record 2 acknowledged at partition {}, the default partitioner picks {}",
                1 - partition(2),
                partition(2)
            )),
            "{error}"
        );
    }

    #[test]
    fn a_producer_run_fails_on_a_send_error_a_repeat_or_a_record_outside_its_range() {
        let producer = |lines: &[String]| {
            let mut all = vec![r#"{"name":"startup_complete","client":"test"}"#.to_string()];
            all.extend_from_slice(lines);
            all.push(r#"{"name":"shutdown_complete"}"#.to_string());
            parse_events(&all.join("\n")).unwrap().check_acknowledged(&Expected::range(TOPIC, 2, 2, 2))
        };
        producer(&[ack(2, 0, 5), ack(3, 1, 5)]).expect("records 2 and 3 acknowledged");
        let failed = r#"{"name":"producer_send_error","topic":"t","index":3,"error":"NOT_ENOUGH_REPLICAS"}"#.to_string();
        let error = format!("{:#}", producer(&[ack(2, 0, 5), failed]).unwrap_err());
        assert!(error.contains("record 3 to t not acknowledged: NOT_ENOUGH_REPLICAS"), "{error}");
        let error = format!("{:#}", producer(&[ack(2, 0, 5), ack(3, 1, 5), ack(3, 1, 6)]).unwrap_err());
        assert!(error.contains("record 3 acknowledged twice"), "{error}");
        let error = format!("{:#}", producer(&[ack(1, 0, 4), ack(2, 0, 5), ack(3, 1, 5)]).unwrap_err());
        assert!(error.contains("an acknowledgement of record 1 at t/Some((0, 4)), outside this run"), "{error}");
    }

    fn member_consumed(index: u64, partition: i32, offset: i64, member: &str) -> String {
        consumed(index, partition, offset)
            .replace(r#"{"name":"record_consumed","#, &format!(r#"{{"name":"record_consumed","consumer":"{member}","#))
    }

    fn assigned(member: &str, partitions: &str) -> String {
        format!(r#"{{"name":"partitions_assigned","topic":"t","partitions":[{partitions}],"consumer":"{member}"}}"#)
    }

    /// A producer run of records 4..8 (the topic holds 0..4 before: offsets 2 and 3 on each
    /// partition), and a two-member group run that read them.
    fn group_runs() -> (Vec<String>, Vec<String>) {
        let mut produced = vec![r#"{"name":"startup_complete","client":"test"}"#.to_string()];
        produced.extend([ack(4, 0, 2), ack(5, 1, 2), ack(6, 0, 3), ack(7, 1, 3)]);
        produced.push(r#"{"name":"shutdown_complete"}"#.to_string());
        let mut read = vec![r#"{"name":"startup_complete","client":"java"}"#.to_string()];
        read.extend([assigned("member-0", "0,1"), assigned("member-0", "0"), assigned("member-1", "1")]);
        read.extend([member_consumed(4, 0, 2, "member-0"), member_consumed(5, 1, 2, "member-1")]);
        read.extend([member_consumed(6, 0, 3, "member-0"), member_consumed(7, 1, 3, "member-1")]);
        read.push(commits(&[(0, 4), (1, 4)]));
        read.push(r#"{"name":"shutdown_complete"}"#.to_string());
        (produced, read)
    }

    fn check_group(produced: &[String], read: &[String]) -> Result<ReadBack> {
        let combined = Events::combined(&parse_events(&produced.join("\n"))?, &parse_events(&read.join("\n"))?);
        combined.check_group_members(&Expected::range(TOPIC, 2, 4, 4), 2)
    }

    #[test]
    fn a_group_run_passes_and_fails_on_a_record_from_before_its_commits_an_overlap_a_missing_member_or_a_short_commit() {
        let (produced, read) = group_runs();
        check_group(&produced, &read).expect("the group runs pass");

        let mut not_resumed = read.clone();
        not_resumed.insert(4, member_consumed(0, 0, 0, "member-0"));
        let error = format!("{:#}", check_group(&produced, &not_resumed).unwrap_err());
        assert!(error.contains("t/0@0 holds a key not produced by this run"), "{error}");

        let overlap = replace(read.clone(), &assigned("member-1", "1"), &assigned("member-1", "0,1"));
        let error = format!("{:#}", check_group(&produced, &overlap).unwrap_err());
        assert!(error.contains(r#"partition 0 was last assigned to ["member-0", "member-1"]"#), "{error}");

        let alone = replace(read.clone(), &assigned("member-1", "1"), &assigned("member-0", "0,1"));
        let error = format!("{:#}", check_group(&produced, &alone).unwrap_err());
        assert!(error.contains("1 members reported an assignment"), "{error}");

        let short = replace(read.clone(), &commits(&[(0, 4), (1, 4)]), &commits(&[(0, 4), (1, 3)]));
        let error = format!("{:#}", check_group(&produced, &short).unwrap_err());
        assert!(error.contains("partition 1: committed offset Some(3), end offset 4"), "{error}");
    }

    #[test]
    fn a_read_of_another_runs_records_checks_its_acknowledgements_headers_and_gaps() {
        let producer = parse_events(&good_lines().join("\n")).unwrap();
        let reader = |records: &[String]| {
            let mut lines = vec![r#"{"name":"startup_complete","client":"java"}"#.to_string()];
            lines.extend_from_slice(records);
            lines.push(r#"{"name":"shutdown_complete"}"#.to_string());
            parse_events(&lines.join("\n")).unwrap()
        };
        let all = [consumed(0, 0, 0), consumed(2, 0, 1), consumed(1, 1, 0), consumed(3, 1, 1)];
        let expected = Expected::new(TOPIC, 2, 4);
        producer.check_read_by(&reader(&all), &expected).expect("the reader read every record the producer wrote");
        let error = format!("{:#}", producer.check_read_by(&reader(&all[..3]), &expected).unwrap_err());
        assert!(error.contains("java reading what test wrote") && error.contains("never read, the first [3]"), "{error}");
        let moved = [consumed(0, 0, 0), consumed(2, 0, 2), consumed(1, 1, 0), consumed(3, 1, 1)];
        let error = format!("{:#}", producer.check_read_by(&reader(&moved), &expected).unwrap_err());
        assert!(error.contains("record 2 read at t/0@2 but acknowledged at t/0@1"), "{error}");
        let java_headers = all[3].replace(&hex(b"test"), &hex(b"java"));
        let error = format!(
            "{:#}",
            producer.check_read_by(&reader(&[all[0].clone(), all[1].clone(), all[2].clone(), java_headers]), &expected).unwrap_err()
        );
        assert!(error.contains("headers h-index=3,h-client=java, expected h-index=3,h-client=test"), "{error}");
    }

    /// Event streams captured from the franz-go, kafka-python, kafkajs and Java adapters' admin
    /// mode against a playground (`<driver> admin --topic <client>-admin`).
    const ADMIN_RUNS: [(&str, &str, &str); 4] = [
        ("franz-go-admin", "floe-e2e-franz-go", include_str!("testdata/franz-go-admin.jsonl")),
        ("python-admin", "floe-e2e-python", include_str!("testdata/kafka-python-admin.jsonl")),
        ("kafkajs-admin", "floe-e2e-kafkajs", include_str!("testdata/kafkajs-admin.jsonl")),
        ("java-admin", "floe-e2e-java", include_str!("testdata/java-admin.jsonl")),
    ];

    #[test]
    fn the_java_admin_runs_extra_answers_are_checked_too() {
        let run = include_str!("testdata/java-admin.jsonl");
        let check = |run: &str| parse_events(run).unwrap().check_admin_results("java-admin", "java-admin-admin-group", "floe-e2e-java");
        check(run).expect("the captured Java run passes");
        let wrong_answers = [
            (r#""isr_is_replicas":true"#, r#""isr_is_replicas":false"#, "whose ISR is not its replicas"),
            (r#""result":{"listed":true}"#, r#""result":{"listed":false}"#, "list_topics answered"),
            (r#""coordinator":1,"assignor":"range""#, r#""coordinator":-1,"assignor":"range""#, "no coordinator or no assignor"),
            (r#""assignor":"range""#, r#""assignor":"""#, "no coordinator or no assignor"),
        ];
        for (right, wrong, complaint) in wrong_answers {
            assert!(run.contains(right), "the capture has {right}");
            let error = format!("{:#}", check(&run.replacen(right, wrong, 1)).unwrap_err());
            assert!(error.contains(complaint), "{right} -> {wrong}: {error}");
        }
    }

    #[test]
    fn captured_admin_runs_pass_and_fail_once_an_answer_is_wrong() {
        for (topic, client_id, run) in ADMIN_RUNS {
            let group = format!("{topic}-admin-group");
            parse_events(run).unwrap().check_admin_results(topic, &group, client_id).expect("the captured run passes");
            let wrong_answers = [
                (r#""error":"NON_EMPTY_GROUP""#, r#""error":null"#, "delete_groups"),
                (r#""value":"7200000""#, r#""value":"7200001""#, "describe_configs 1"),
                (r#""result":{"listed":false}"#, r#""result":{"listed":true}"#, "list_topics"),
                (r#""state":"Empty""#, r#""state":"Stable""#, "describe_groups"),
            ];
            for (right, wrong, complaint) in wrong_answers {
                assert!(run.contains(right), "{topic}: the capture has {right}");
                let error =
                    parse_events(&run.replacen(right, wrong, 1)).unwrap().check_admin_results(topic, &group, client_id).unwrap_err();
                assert!(format!("{error:#}").contains(complaint), "{topic}: {right} -> {wrong}: {error:#}");
            }
        }
    }

    #[test]
    fn run_fails_on_a_non_zero_exit_and_on_a_timeout_and_returns_the_events_otherwise() {
        let shell = |script: &str| {
            let mut command = Command::new("sh");
            command.arg("-c").arg(script);
            command
        };
        let error = format!("{:#}", run(shell("echo oops >&2; exit 3"), Duration::from_secs(10)).unwrap_err());
        assert!(error.contains("exit status: 3") && error.contains("oops"), "{error}");
        let error = format!("{:#}", run(shell("sleep 5"), Duration::from_millis(300)).unwrap_err());
        assert!(error.contains("did not finish within"), "{error}");
        let error = format!("{:#}", run(shell("echo '{\"name\":\"startup_complete\"}'"), Duration::from_secs(10)).unwrap_err());
        assert!(error.contains("malformed event line"), "{error}");
        let events =
            run(shell(r#"echo '{"name":"startup_complete","client":"sh"}'; echo '{"name":"shutdown_complete"}'"#), Duration::from_secs(10))
                .expect("a well-formed run");
        assert_eq!(events.client, "sh");
    }
}
