//! An independent history checker for the fault tier: what the producers were acknowledged against
//! what a client reads back, after every agent restarted, and `floe admin fsck`.
//!
//! It shares no code with the agent (no `floe_agent` import): acknowledgements come from client
//! callbacks, reads go over the Kafka protocol (ListOffsets and Fetch, decoded by the
//! `kafka-protocol` crate), and fsck is the `floe` binary's own command, judged by its exit status
//! and output. [`classify`] is a pure function so its judgement is unit-tested on hand-made
//! histories; [`check`] does the I/O around it.
//!
//! A record is identified by its key (unique within its topic) and the CRC32C of its value.

use crate::wire::RawConnection;
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use kafka_protocol::ResponseError;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A record a producer saw acknowledged.
#[derive(Debug, Clone)]
pub struct Ack {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The record's key: unique within its topic, it names the record.
    pub key: Vec<u8>,
    /// CRC32C of the value the producer sent.
    pub value_crc: u32,
    /// Whether the producer was idempotent: then a second stored copy is a defect, not a retry.
    pub idempotent: bool,
    /// When the acknowledgement arrived.
    pub at: Instant,
}

/// A record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub offset: i64,
    pub key: Vec<u8>,
    pub value_crc: u32,
}

/// One partition read from its log start to its high watermark.
#[derive(Debug, Clone, Default)]
pub struct PartitionRead {
    pub topic: String,
    pub partition: i32,
    pub log_start: i64,
    pub high_watermark: i64,
    /// Every record the reads returned at or after the offset asked for, in order (including any
    /// beyond the high watermark).
    pub records: Vec<StoredRecord>,
    /// The first offset not read: the high watermark when the whole partition was read.
    pub read_to: i64,
    /// Why reading stopped before the high watermark (a fetch error, an empty answer, a batch that
    /// does not decode).
    pub error: Option<String>,
}

/// What `floe admin fsck` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsckOutcome {
    Clean,
    /// Not run (unit tests of the classification).
    Skipped,
    /// Problems reported, or the command failed: its output.
    NotClean(String),
}

/// The checker's judgement of one run.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    pub acked: usize,
    /// Acknowledged, readable range, not found at its offset (or acknowledged at or beyond the
    /// high watermark, or below the log start).
    pub lost: usize,
    /// Extra stored copies of a record an idempotent producer wrote.
    pub duplicated: usize,
    /// Extra stored copies from non-idempotent producers (retries: allowed, reported).
    pub retried_copies: usize,
    /// An offset holding another record than acknowledged there, two records at one offset, or
    /// two acknowledgements of different records at one offset.
    pub inconsistent: usize,
    /// Acknowledged records in a range that could not be read.
    pub unreadable: usize,
    /// Partitions that could not be read to their high watermark.
    pub unreadable_partitions: usize,
    /// Records read at or beyond the high watermark.
    pub beyond_high_watermark: usize,
    pub fsck: Option<FsckOutcome>,
    pub longest_ack_gap: Duration,
    /// A few examples of each problem, for the failure message.
    pub examples: Vec<String>,
}

impl Verdict {
    pub fn is_clean(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.inconsistent == 0
            && self.unreadable == 0
            && self.unreadable_partitions == 0
            && self.beyond_high_watermark == 0
            && matches!(self.fsck, Some(FsckOutcome::Clean) | Some(FsckOutcome::Skipped))
    }

    /// The one result line of a run.
    pub fn line(&self) -> String {
        let fsck = match &self.fsck {
            Some(FsckOutcome::Clean) => "clean",
            Some(FsckOutcome::Skipped) | None => "skipped",
            Some(FsckOutcome::NotClean(_)) => "NOT-CLEAN",
        };
        format!(
            "history: acked={} lost={} duplicated={} inconsistent={} unreadable={} unreadable_partitions={} beyond_hwm={} retried_copies={} fsck={} longest_ack_gap={:.1}s",
            self.acked,
            self.lost,
            self.duplicated,
            self.inconsistent,
            self.unreadable,
            self.unreadable_partitions,
            self.beyond_high_watermark,
            self.retried_copies,
            fsck,
            self.longest_ack_gap.as_secs_f64()
        )
    }

    /// The result line, then examples and fsck's problems when not clean.
    pub fn report(&self) -> String {
        let mut report = self.line();
        for example in self.examples.iter().take(20) {
            report.push_str("\n  ");
            report.push_str(example);
        }
        if let Some(FsckOutcome::NotClean(output)) = &self.fsck {
            for line in output.lines().take(15) {
                report.push_str("\n  fsck: ");
                report.push_str(line);
            }
        }
        report
    }

    fn example(&mut self, text: String) {
        if self.examples.len() < 40 {
            self.examples.push(text);
        }
    }
}

fn printable(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

/// Longest time between consecutive acknowledgements (and from `started` to the first, and the
/// last to `ended`, when given): how long the producers heard nothing.
pub fn longest_ack_gap(acks: &[Ack], started: Option<Instant>, ended: Option<Instant>) -> Duration {
    let mut times: Vec<Instant> = acks.iter().map(|ack| ack.at).collect();
    times.extend(started);
    times.extend(ended);
    times.sort();
    times.windows(2).map(|pair| pair[1] - pair[0]).max().unwrap_or_default()
}

/// Judges acknowledgements against what was read. Pure: no I/O.
pub fn classify(acks: &[Ack], reads: &[PartitionRead]) -> Verdict {
    let mut verdict = Verdict { acked: acks.len(), longest_ack_gap: longest_ack_gap(acks, None, None), ..Verdict::default() };
    // What each partition holds, offset by offset.
    let mut stored: BTreeMap<(&str, i32), BTreeMap<i64, Vec<&StoredRecord>>> = BTreeMap::new();
    let mut reads_by_partition: BTreeMap<(&str, i32), &PartitionRead> = BTreeMap::new();
    for read in reads {
        let key = (read.topic.as_str(), read.partition);
        reads_by_partition.insert(key, read);
        if let Some(error) = &read.error {
            verdict.unreadable_partitions += 1;
            verdict.example(format!(
                "unreadable: {}/{} from offset {} (high watermark {}): {error}",
                read.topic, read.partition, read.read_to, read.high_watermark
            ));
        }
        let by_offset = stored.entry(key).or_default();
        for record in &read.records {
            if record.offset >= read.high_watermark {
                verdict.beyond_high_watermark += 1;
                verdict.example(format!(
                    "beyond the high watermark: {}/{} offset {} (high watermark {})",
                    read.topic, read.partition, record.offset, read.high_watermark
                ));
            }
            let at = by_offset.entry(record.offset).or_default();
            if !at.contains(&record) {
                at.push(record);
            }
        }
        for (offset, records) in by_offset.iter() {
            if records.len() > 1 {
                verdict.inconsistent += records.len() - 1;
                verdict.example(format!(
                    "inconsistent: {}/{} offset {offset} was read with {} different records",
                    read.topic,
                    read.partition,
                    records.len()
                ));
            }
        }
    }
    // Two acknowledgements of different records at one position.
    let mut acked_at: BTreeMap<(&str, i32, i64), Vec<&Ack>> = BTreeMap::new();
    for ack in acks {
        acked_at.entry((ack.topic.as_str(), ack.partition, ack.offset)).or_default().push(ack);
    }
    for ((topic, partition, offset), group) in &acked_at {
        let distinct: BTreeSet<(&[u8], u32)> = group.iter().map(|ack| (ack.key.as_slice(), ack.value_crc)).collect();
        if distinct.len() > 1 {
            verdict.inconsistent += distinct.len() - 1;
            verdict.example(format!(
                "inconsistent: {topic}/{partition} offset {offset} was acknowledged for {} different records",
                distinct.len()
            ));
        }
    }
    for ack in acks {
        let position = (ack.topic.as_str(), ack.partition);
        let where_ = format!("{}/{} offset {} (key {})", ack.topic, ack.partition, ack.offset, printable(&ack.key));
        let Some(read) = reads_by_partition.get(&position) else {
            verdict.unreadable += 1;
            verdict.example(format!("unreadable: {where_}: the partition was not read"));
            continue;
        };
        if ack.offset >= read.high_watermark {
            verdict.lost += 1;
            verdict.example(format!("lost: {where_} is at or beyond the high watermark {}", read.high_watermark));
            continue;
        }
        if ack.offset < read.log_start {
            verdict.lost += 1;
            verdict.example(format!("lost: {where_} is below the log start {}", read.log_start));
            continue;
        }
        if ack.offset >= read.read_to {
            verdict.unreadable += 1;
            continue;
        }
        match stored.get(&position).and_then(|by_offset| by_offset.get(&ack.offset)) {
            None => {
                verdict.lost += 1;
                verdict.example(format!("lost: {where_} is not there"));
            }
            Some(records) if records.iter().any(|record| record.key == ack.key && record.value_crc == ack.value_crc) => {}
            Some(records) => {
                verdict.inconsistent += 1;
                verdict.example(format!("inconsistent: {where_} holds key {} instead", printable(&records[0].key)));
            }
        }
    }
    // Copies: one key at several offsets of a topic.
    let idempotent_topics: BTreeSet<&str> = acks.iter().filter(|ack| ack.idempotent).map(|ack| ack.topic.as_str()).collect();
    // (topic, key) -> every (partition, offset) holding it.
    type Positions = BTreeSet<(i32, i64)>;
    let mut offsets_of_key: BTreeMap<(&str, &[u8]), Positions> = BTreeMap::new();
    for read in reads {
        for record in &read.records {
            offsets_of_key.entry((read.topic.as_str(), record.key.as_slice())).or_default().insert((read.partition, record.offset));
        }
    }
    for ((topic, key), positions) in &offsets_of_key {
        if positions.len() > 1 {
            let extra = positions.len() - 1;
            if idempotent_topics.contains(topic) {
                verdict.duplicated += extra;
                verdict.example(format!("duplicated: {topic} key {} is stored at {positions:?}", printable(key)));
            } else {
                verdict.retried_copies += extra;
            }
        }
    }
    let unreadable = verdict.unreadable;
    if unreadable > 0 {
        verdict.example(format!("unreadable: {unreadable} acknowledged records lie in ranges that could not be read"));
    }
    verdict
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        Some(error) => format!("{error:?} ({code})"),
        None => "none".to_string(),
    }
}

/// (log start, high watermark) as `bootstrap` answers ListOffsets.
fn watermarks(bootstrap: &str, topic: &str, partition: i32) -> Result<(i64, i64)> {
    let mut connection = RawConnection::connect(bootstrap)?;
    let mut ask = |timestamp: i64| -> Result<i64> {
        let request = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(partition).with_timestamp(timestamp)])]);
        let correlation = connection.send(ApiKey::ListOffsets, 5, &request)?;
        let response: ListOffsetsResponse = connection.receive(ApiKey::ListOffsets, 5, correlation)?;
        let answer = response.topics.first().and_then(|topic| topic.partitions.first()).context("empty ListOffsets answer")?;
        if answer.error_code != 0 {
            bail!("ListOffsets {topic}/{partition} answered {}", error_name(answer.error_code));
        }
        Ok(answer.offset)
    };
    Ok((ask(-2)?, ask(-1)?))
}

/// One Fetch at `offset`: (error code, records at or after `offset`, the next offset to ask for).
fn fetch_once(connection: &mut RawConnection, topic: &str, partition: i32, offset: i64) -> Result<(i16, Vec<StoredRecord>, i64)> {
    let request = FetchRequest::default().with_max_wait_ms(0).with_max_bytes(1 << 20).with_topics(vec![FetchTopic::default()
        .with_topic(topic_name(topic))
        .with_partitions(vec![FetchPartition::default()
            .with_partition(partition)
            .with_fetch_offset(offset)
            .with_partition_max_bytes(1 << 20)])]);
    let correlation = connection.send(ApiKey::Fetch, 11, &request)?;
    let response: FetchResponse = connection.receive(ApiKey::Fetch, 11, correlation)?;
    let data = response.responses.first().and_then(|topic| topic.partitions.first()).context("empty Fetch answer")?;
    if data.error_code != 0 {
        return Ok((data.error_code, Vec::new(), offset));
    }
    let bytes = data.records.clone().unwrap_or_default();
    let (records, next) = decode_batches(&bytes, offset)?;
    Ok((0, records, next))
}

/// Decodes whole magic-v2 batches (a trailing partial batch is ignored, as clients do); keeps the
/// records at or after `from` and returns the offset after the last batch.
fn decode_batches(bytes: &Bytes, from: i64) -> Result<(Vec<StoredRecord>, i64)> {
    let mut records = Vec::new();
    let mut next = from;
    let mut position = 0usize;
    while position + 61 <= bytes.len() {
        let length = i32::from_be_bytes(bytes[position + 8..position + 12].try_into()?);
        let end = position + 12 + usize::try_from(length).context("negative batch length")?;
        if end > bytes.len() {
            break;
        }
        let base = i64::from_be_bytes(bytes[position..position + 8].try_into()?);
        let last_delta = i32::from_be_bytes(bytes[position + 23..position + 27].try_into()?);
        let mut batch = bytes.slice(position..end);
        let set = RecordBatchDecoder::decode(&mut batch).with_context(|| format!("the batch at offset {base} does not decode"))?;
        for record in set.records {
            if record.offset >= from {
                records.push(StoredRecord {
                    offset: record.offset,
                    key: record.key.map(|key| key.to_vec()).unwrap_or_default(),
                    value_crc: crc32c::crc32c(record.value.as_deref().unwrap_or_default()),
                });
            }
        }
        next = next.max(base + i64::from(last_delta) + 1);
        position = end;
    }
    Ok((records, next))
}

/// Reads one partition from its log start to its high watermark through `bootstrap`, then asks
/// once at the high watermark (nothing may be there). Transport errors are retried until
/// `patience` runs out; a Kafka error code, an empty answer below the high watermark that stays
/// empty, or an undecodable batch stops the read and is reported.
pub fn read_partition(bootstrap: &str, topic: &str, partition: i32, patience: Duration) -> PartitionRead {
    let mut read = PartitionRead { topic: topic.to_string(), partition, ..PartitionRead::default() };
    let deadline = Instant::now() + patience;
    let (log_start, high_watermark) = loop {
        match watermarks(bootstrap, topic, partition) {
            Ok(marks) => break marks,
            Err(error) if Instant::now() > deadline => {
                read.error = Some(format!("no watermarks: {error:#}"));
                return read;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    };
    (read.log_start, read.high_watermark, read.read_to) = (log_start, high_watermark, log_start);
    let mut connection: Option<RawConnection> = None;
    let mut empty_answers = 0;
    let mut offset = log_start;
    // Through the high watermark inclusive: the last round must come back empty.
    loop {
        let result = match connection.as_mut() {
            Some(connection) => fetch_once(connection, topic, partition, offset),
            None => RawConnection::connect(bootstrap).and_then(|new| {
                let connection = connection.insert(new);
                fetch_once(connection, topic, partition, offset)
            }),
        };
        match result {
            Err(error) => {
                connection = None;
                if Instant::now() > deadline {
                    read.error = Some(format!("fetch at offset {offset}: {error:#}"));
                    return read;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            Ok((code, _, _)) if code != 0 => {
                read.error = Some(format!("fetch at offset {offset} answered {}", error_name(code)));
                return read;
            }
            Ok((_, records, next)) => {
                let at_the_end = offset >= high_watermark;
                if records.is_empty() {
                    if at_the_end {
                        read.read_to = offset;
                        return read;
                    }
                    empty_answers += 1;
                    if empty_answers >= 10 {
                        read.error = Some(format!("fetch at offset {offset} below the high watermark {high_watermark} stays empty"));
                        return read;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                    continue;
                }
                empty_answers = 0;
                read.records.extend(records);
                if at_the_end {
                    // Records at the high watermark: counted by classify; stop here.
                    read.read_to = offset;
                    return read;
                }
                offset = next.max(offset + 1);
                read.read_to = offset.min(high_watermark);
            }
        }
    }
}

/// How to run `floe admin fsck` against one virtual cluster.
#[derive(Debug, Clone)]
pub struct FsckTarget {
    pub floe: PathBuf,
    pub metadata_url: String,
    pub virtual_cluster: String,
    pub object_store: String,
    pub environment: Vec<(&'static str, String)>,
}

/// Runs fsck; clean means exit status 0 and the summary line saying "clean".
pub fn fsck(target: &FsckTarget) -> Result<FsckOutcome> {
    let mut command = std::process::Command::new(&target.floe);
    command
        .args(["admin", "fsck", "--metadata", &target.metadata_url, "--virtual-cluster", &target.virtual_cluster])
        .args(["--object-store", &target.object_store])
        .envs(target.environment.iter().map(|(key, value)| (*key, value.as_str())));
    let finished = crate::run_with_timeout(command, Duration::from_secs(180))?;
    let summary = finished.stdout.lines().rev().find(|line| line.starts_with("fsck:")).unwrap_or_default().to_string();
    if finished.status.success() && summary.ends_with(": clean") {
        return Ok(FsckOutcome::Clean);
    }
    let problems: Vec<&str> = finished.stdout.lines().filter(|line| !line.starts_with("orphan ")).collect();
    Ok(FsckOutcome::NotClean(format!("exit {}; {}\n{}", finished.status, problems.join("\n"), finished.stderr.trim())))
}

/// Reads every partition of `topics` (name, partition count), spreading the partitions over
/// `bootstraps` (every agent serves every partition), judges the acknowledgements against them and
/// runs fsck. Call it after every agent restarted: an agent's cache of its own fresh segments
/// hides holes.
pub fn check(bootstraps: &[String], topics: &[(String, i32)], acks: &[Ack], fsck_target: &FsckTarget) -> Result<Verdict> {
    anyhow::ensure!(!bootstraps.is_empty(), "no agent to read from");
    let mut reads = Vec::new();
    for (topic, partitions) in topics {
        for partition in 0..*partitions {
            let bootstrap = &bootstraps[partition as usize % bootstraps.len()];
            reads.push(read_partition(bootstrap, topic, partition, Duration::from_secs(60)));
        }
    }
    let mut verdict = classify(acks, &reads);
    verdict.fsck = Some(fsck(fsck_target)?);
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(partition: i32, offset: i64, key: &str) -> Ack {
        Ack {
            topic: "t".into(),
            partition,
            offset,
            key: key.as_bytes().to_vec(),
            value_crc: crc32c::crc32c(key.as_bytes()),
            idempotent: true,
            at: Instant::now(),
        }
    }

    fn stored(offset: i64, key: &str) -> StoredRecord {
        StoredRecord { offset, key: key.as_bytes().to_vec(), value_crc: crc32c::crc32c(key.as_bytes()) }
    }

    fn read(partition: i32, high_watermark: i64, records: Vec<StoredRecord>) -> PartitionRead {
        PartitionRead { topic: "t".into(), partition, log_start: 0, high_watermark, records, read_to: high_watermark, error: None }
    }

    #[test]
    fn every_acknowledged_record_at_its_offset_is_clean() {
        let acks = [ack(0, 0, "a"), ack(0, 1, "b"), ack(1, 0, "c")];
        let reads = [read(0, 2, vec![stored(0, "a"), stored(1, "b")]), read(1, 1, vec![stored(0, "c")])];
        let mut verdict = classify(&acks, &reads);
        verdict.fsck = Some(FsckOutcome::Skipped);
        assert!(verdict.is_clean(), "{}", verdict.report());
        assert_eq!(verdict.acked, 3);
    }

    #[test]
    fn a_missing_offset_and_an_ack_beyond_the_high_watermark_are_lost() {
        let acks = [ack(0, 0, "a"), ack(0, 1, "b"), ack(0, 5, "c")];
        let verdict = classify(&acks, &[read(0, 2, vec![stored(0, "a")])]);
        assert_eq!(verdict.lost, 2, "{}", verdict.report());
        assert!(!verdict.is_clean());
    }

    #[test]
    fn a_range_after_a_fetch_error_is_unreadable_not_lost() {
        let acks = [ack(0, 0, "a"), ack(0, 1, "b"), ack(0, 2, "c")];
        let mut partition = read(0, 3, vec![stored(0, "a")]);
        partition.read_to = 1;
        partition.error = Some("fetch at offset 1 answered KafkaStorageError (56)".into());
        let verdict = classify(&acks, &[partition]);
        assert_eq!((verdict.lost, verdict.unreadable, verdict.unreadable_partitions), (0, 2, 1), "{}", verdict.report());
        assert!(!verdict.is_clean());
    }

    #[test]
    fn another_record_at_an_acknowledged_offset_is_inconsistent() {
        let verdict = classify(&[ack(0, 0, "a")], &[read(0, 1, vec![stored(0, "x")])]);
        assert_eq!((verdict.inconsistent, verdict.lost), (1, 0), "{}", verdict.report());
    }

    #[test]
    fn a_changed_value_under_the_same_key_is_inconsistent() {
        let mut changed = stored(0, "a");
        changed.value_crc ^= 1;
        let verdict = classify(&[ack(0, 0, "a")], &[read(0, 1, vec![changed])]);
        assert_eq!(verdict.inconsistent, 1, "{}", verdict.report());
    }

    #[test]
    fn two_acknowledgements_of_different_records_at_one_offset_are_inconsistent() {
        let verdict = classify(&[ack(0, 0, "a"), ack(0, 0, "b")], &[read(0, 1, vec![stored(0, "a")])]);
        // The offset holds "a": "b" is inconsistent twice over (acknowledged there, not stored).
        assert_eq!(verdict.inconsistent, 2, "{}", verdict.report());
    }

    #[test]
    fn two_records_read_at_one_offset_are_inconsistent() {
        let verdict = classify(&[ack(0, 0, "a")], &[read(0, 1, vec![stored(0, "a"), stored(0, "z")])]);
        assert_eq!(verdict.inconsistent, 1, "{}", verdict.report());
    }

    #[test]
    fn a_second_copy_is_a_duplicate_for_idempotent_producers_and_a_retry_otherwise() {
        let reads = [read(0, 2, vec![stored(0, "a"), stored(1, "a")])];
        let idempotent = classify(&[ack(0, 0, "a")], &reads);
        assert_eq!((idempotent.duplicated, idempotent.retried_copies), (1, 0), "{}", idempotent.report());
        let mut plain_ack = ack(0, 0, "a");
        plain_ack.idempotent = false;
        let mut plain = classify(&[plain_ack], &reads);
        assert_eq!((plain.duplicated, plain.retried_copies), (0, 1), "{}", plain.report());
        plain.fsck = Some(FsckOutcome::Clean);
        assert!(plain.is_clean(), "{}", plain.report());
    }

    #[test]
    fn records_beyond_the_high_watermark_are_reported() {
        let verdict = classify(&[ack(0, 0, "a")], &[read(0, 1, vec![stored(0, "a"), stored(1, "ghost")])]);
        assert_eq!(verdict.beyond_high_watermark, 1, "{}", verdict.report());
        assert!(!verdict.is_clean());
    }

    #[test]
    fn an_unclean_fsck_fails_an_otherwise_clean_history() {
        let mut verdict = classify(&[ack(0, 0, "a")], &[read(0, 1, vec![stored(0, "a")])]);
        verdict.fsck = Some(FsckOutcome::NotClean("PROBLEM segments/x.seg: referenced by 1 chunks but unreadable".into()));
        assert!(!verdict.is_clean());
        assert!(verdict.line().contains("fsck=NOT-CLEAN"), "{}", verdict.line());
    }

    #[test]
    fn the_longest_gap_counts_the_edges_of_the_run() {
        let started = Instant::now();
        let mut first = ack(0, 0, "a");
        first.at = started + Duration::from_secs(1);
        let mut second = ack(0, 1, "b");
        second.at = started + Duration::from_secs(2);
        assert_eq!(longest_ack_gap(&[first.clone(), second.clone()], None, None), Duration::from_secs(1));
        assert_eq!(longest_ack_gap(&[first, second], Some(started), Some(started + Duration::from_secs(6))), Duration::from_secs(4));
    }

    #[test]
    fn batches_decode_to_absolute_offsets_and_a_partial_tail_is_ignored() {
        let records = vec![(b"k1".to_vec(), b"v1".to_vec()), (b"k2".to_vec(), b"v2".to_vec())];
        let batch = crate::wire::encode_batch(&records, 0).unwrap();
        let mut rebased = batch.to_vec();
        rebased[..8].copy_from_slice(&40i64.to_be_bytes());
        let mut bytes = rebased.clone();
        bytes.extend_from_slice(&rebased[..30]);
        let (decoded, next) = decode_batches(&Bytes::from(bytes), 41).unwrap();
        assert_eq!(decoded, vec![StoredRecord { offset: 41, key: b"k2".to_vec(), value_crc: crc32c::crc32c(b"v2") }]);
        assert_eq!(next, 42);
    }
}
