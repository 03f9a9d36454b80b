//! `floe produce` and `floe consume` (reading chosen partitions, or as a member of a group: see
//! [`Membership`]), and the record building and fetching that `floe demo` shares with them.

use super::client::{check, check_with_message, topic_name, Client};
use super::groups::committed_offsets;
use super::membership::{Membership, Status};
use super::partitioner::default_partition;
use super::topics::list_offsets;
use super::{print_rows, ClientArgs, ConsumeArgs, ProduceArgs, Start};
use anyhow::{bail, Context, Result};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One produce request carries at most this many records of a partition, or this many bytes.
const BATCH_RECORDS: usize = 10_000;
const BATCH_BYTES: usize = 512 << 10;
/// A fetch waits at most this long for new records.
const FETCH_WAIT_MS: i32 = 500;
const FETCH_MAX_BYTES: i32 = 8 << 20;
const PARTITION_MAX_BYTES: i32 = 1 << 20;

pub fn produce(args: &ClientArgs, produce: ProduceArgs) -> Result<()> {
    let input: Box<dyn BufRead> = match &produce.file {
        Some(path) => {
            Box::new(std::io::BufReader::new(std::fs::File::open(path).with_context(|| format!("cannot read --file {}", path.display()))?))
        }
        None => Box::new(std::io::stdin().lock()),
    };
    let mut client = args.connect()?;
    let leaders = client.partition_leaders(&produce.topic)?;
    let partitions = leaders.len() as i32;
    if let Some(partition) = produce.partition {
        if !(0..partitions).contains(&partition) {
            bail!("topic {:?} has partitions 0..{partitions}, not {partition}", produce.topic);
        }
    }
    let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as i64);
    let mut pending: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
    let mut round_robin = 0;
    for line in input.lines() {
        let line = line.context("reading the records (one per line, UTF-8)")?;
        let (key, value) = match (&produce.key, &produce.key_separator) {
            (Some(key), _) => (Some(key.clone()), line),
            (None, Some(separator)) => match line.split_once(separator.as_str()) {
                Some((key, value)) => (Some(key.to_string()), value.to_string()),
                None => bail!("line {line:?} has no key separator {separator:?}; write key{separator}value"),
            },
            (None, None) => (None, line),
        };
        let partition = match (produce.partition, &key) {
            (Some(partition), _) => partition,
            (None, Some(key)) => default_partition(key.as_bytes(), partitions),
            (None, None) => {
                round_robin = (round_robin + 1) % partitions;
                round_robin
            }
        };
        let mut record = new_record(key.map(Bytes::from), Bytes::from(value), timestamp);
        for (name, value) in &produce.headers {
            record.headers.insert(StrBytes::from_string(name.clone()), Some(Bytes::from(value.clone())));
        }
        pending.entry(partition).or_default().push(record);
    }
    if pending.is_empty() {
        bail!(
            "no records: floe produce reads one record per line from standard input (or --file), e.g. echo hello | floe produce {}",
            produce.topic
        );
    }
    let leader_of: BTreeMap<i32, i32> = leaders.into_iter().collect();
    let mut rows = Vec::new();
    for (partition, records) in pending {
        for batch in split_batches(records) {
            let count = batch.len();
            let (offset, _) = send_batch(&mut client, &produce.topic, partition, leader_of[&partition], batch)?;
            rows.push(vec![partition.to_string(), offset.to_string(), count.to_string()]);
        }
    }
    print_rows(args.output, &["PARTITION", "OFFSET", "RECORDS"], &rows);
    Ok(())
}

/// A record to produce, created at `timestamp` (Unix ms), without headers. It has no producer id
/// (no idempotence, no transaction); [`encode_batch`] numbers it within its batch.
pub(super) fn new_record(key: Option<Bytes>, value: Bytes, timestamp: i64) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp,
        key,
        value: Some(value),
        headers: Default::default(),
    }
}

/// One uncompressed record batch (v2) of `records`, numbered from 0.
pub(super) fn encode_batch(mut records: Vec<Record>) -> Result<Bytes> {
    // The encoder keeps records in one batch while offset - sequence stays the same; without a
    // producer id the broker reads neither beyond the batch's own bookkeeping.
    for (index, record) in records.iter_mut().enumerate() {
        record.offset = index as i64;
        record.sequence = index as i32;
    }
    let mut encoded = BytesMut::new();
    RecordBatchEncoder::encode(&mut encoded, records.iter(), &RecordEncodeOptions { version: 2, compression: Compression::None })
        .context("encoding the records")?;
    Ok(encoded.freeze())
}

/// Records in batches of at most [`BATCH_RECORDS`] and about [`BATCH_BYTES`].
fn split_batches(records: Vec<Record>) -> Vec<Vec<Record>> {
    let mut batches: Vec<Vec<Record>> = vec![Vec::new()];
    let mut bytes = 0;
    for record in records {
        let size = record.key.as_ref().map_or(0, Bytes::len) + record.value.as_ref().map_or(0, Bytes::len) + 16;
        let last = batches.last_mut().expect("never empty");
        if !last.is_empty() && (last.len() >= BATCH_RECORDS || bytes + size > BATCH_BYTES) {
            batches.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        batches.last_mut().expect("never empty").push(record);
    }
    batches
}

/// Produces one batch with acks=all; returns the offset of its first record.
fn send_batch(client: &mut Client, topic: &str, partition: i32, leader: i32, records: Vec<Record>) -> Result<(i64, usize)> {
    let count = records.len();
    let encoded = encode_batch(records)?;
    let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(30_000).with_topic_data(vec![TopicProduceData::default()
        .with_name(topic_name(topic))
        .with_partition_data(vec![PartitionProduceData::default().with_index(partition).with_records(Some(encoded))])]);
    let response: ProduceResponse = client.call_broker(leader, ApiKey::Produce, 9, &request)?;
    let answer = response
        .responses
        .iter()
        .flat_map(|topic| &topic.partition_responses)
        .find(|answer| answer.index == partition)
        .with_context(|| format!("Produce answered nothing for {topic}/{partition}"))?;
    check_with_message(answer.error_code, answer.error_message.as_ref(), &format!("producing to {topic}/{partition}"))?;
    Ok((answer.base_offset, count))
}

pub fn consume(args: &ClientArgs, consume: ConsumeArgs) -> Result<()> {
    let format = Format::parse(&consume.format)?;
    let mut client = args.connect()?;
    let leaders = client.partition_leaders(&consume.topic)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut reading = Reading { format, count: consume.count, idle: consume.idle, printed: 0, last_record: Instant::now() };
    if let Some(group) = &consume.group {
        return consume_in_group(&mut client, &consume, group, &leaders, &mut reading, &mut out);
    }
    let chosen: Vec<(i32, i32)> = if consume.partition.is_empty() {
        leaders
    } else {
        for partition in &consume.partition {
            if !leaders.iter().any(|(known, _)| known == partition) {
                bail!("topic {:?} has partitions 0..{}, not {partition}", consume.topic, leaders.len());
            }
        }
        leaders.into_iter().filter(|(partition, _)| consume.partition.contains(partition)).collect()
    };
    let mut positions = start_positions(&mut client, &consume.topic, &chosen, consume.from)?;
    if let Some((partition, _)) = chosen.iter().find(|(partition, _)| !positions.contains_key(partition)) {
        bail!("no start offset for {}/{partition}: its leader did not answer ListOffsets for it", consume.topic);
    }
    let by_leader = by_leader(&chosen);
    loop {
        let done = fetch_once(&mut client, &consume.topic, &by_leader, &mut positions, |partition, record| {
            reading.print(&mut out, &consume.topic, partition, record)
        })?;
        out.flush()?;
        if done || reading.idle_for_long_enough() {
            return Ok(());
        }
    }
}

/// How long a group member that was given no partition waits before it heartbeats again.
const UNASSIGNED_WAIT: Duration = Duration::from_millis(FETCH_WAIT_MS as u64);
/// How often a group member commits while it reads (the Java consumer's auto-commit interval),
/// besides before every rebalance and on the way out.
const COMMIT_INTERVAL: Duration = Duration::from_secs(5);

/// `floe consume --group`: reads the partitions the group assigns this process, as one member
/// of it, until --count, --idle, Ctrl-C or SIGTERM; then commits and leaves the group, so its
/// partitions move to the other members at once.
fn consume_in_group(
    client: &mut Client,
    consume: &ConsumeArgs,
    group: &str,
    leaders: &[(i32, i32)],
    reading: &mut Reading,
    out: &mut impl Write,
) -> Result<()> {
    let stop = stop_on_signal();
    let topic = consume.topic.as_str();
    let mut membership = Membership::join(client, group, topic)?;
    let mut positions = BTreeMap::new();
    let read = (|| -> Result<()> {
        positions = group_positions(client, group, topic, leaders, membership.partitions(), consume.from)?;
        let mut committed = positions.clone();
        let mut last_commit = Instant::now();
        loop {
            let assigned =
                by_leader(&leaders.iter().copied().filter(|(partition, _)| positions.contains_key(partition)).collect::<Vec<_>>());
            if assigned.is_empty() {
                // More members than partitions: this one waits as a standby.
                std::thread::sleep(UNASSIGNED_WAIT);
            } else if fetch_once(client, topic, &assigned, &mut positions, |partition, record| {
                reading.print(out, topic, partition, record)
            })? {
                return Ok(());
            }
            out.flush()?;
            if reading.idle_for_long_enough() || stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let mut status = membership.heartbeat_if_due(client)?;
            if status == Status::Member && last_commit.elapsed() >= COMMIT_INTERVAL && positions != committed {
                status = membership.commit(client, &positions)?;
                committed = positions.clone();
                last_commit = Instant::now();
            }
            if status == Status::Rebalancing {
                // What this member read is committed before it rejoins, so whoever the group
                // gives its partitions to starts right after it.
                membership.commit(client, &positions)?;
                membership.rejoin(client)?;
                positions = group_positions(client, group, topic, leaders, membership.partitions(), consume.from)?;
                committed = positions.clone();
            }
        }
    })();
    out.flush()?;
    // On the way out, even after an error: commit what was printed, then leave.
    let committed = membership.commit(client, &positions);
    let left = membership.leave(client);
    read?;
    committed?;
    left
}

/// Where a group member starts reading each of its `partitions`: the group's committed offset,
/// or `from` where the group has none.
pub(super) fn group_positions(
    client: &mut Client,
    group: &str,
    topic: &str,
    leaders: &[(i32, i32)],
    partitions: &[i32],
    from: Start,
) -> Result<BTreeMap<i32, i64>> {
    let mut positions = BTreeMap::new();
    if partitions.is_empty() {
        return Ok(positions);
    }
    let committed = committed_offsets(client, group, topic, partitions)?;
    let uncommitted: Vec<(i32, i32)> =
        leaders.iter().copied().filter(|(partition, _)| partitions.contains(partition) && !committed.contains_key(partition)).collect();
    if !uncommitted.is_empty() {
        positions = start_positions(client, topic, &uncommitted, from)?;
    }
    positions.extend(committed);
    if let Some(partition) = partitions.iter().find(|partition| !positions.contains_key(partition)) {
        bail!("no start offset for {topic}/{partition}: its leader did not answer ListOffsets for it");
    }
    Ok(positions)
}

/// A flag that Ctrl-C (SIGINT) or SIGTERM raises, so a group member can commit and leave the
/// group before it exits; a second signal exits at once (130), e.g. while a join waits.
fn stop_on_signal() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let raised = Arc::clone(&stop);
    // A thread of its own: the consume loop blocks, and the signal needs a runtime to arrive in.
    let watcher = std::thread::Builder::new().name("floe-consume-signals".to_string()).spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        runtime.block_on(async {
            let Ok(mut terminate) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else { return };
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
                if raised.swap(true, Ordering::Relaxed) {
                    std::process::exit(130);
                }
            }
        });
    });
    if let Err(error) = watcher {
        tracing::warn!(error = %error, "Ctrl-C will end floe consume without leaving its group");
    }
    stop
}

/// What `floe consume` prints and when it stops.
struct Reading {
    format: Format,
    count: Option<u64>,
    idle: Option<Duration>,
    printed: u64,
    last_record: Instant,
}

impl Reading {
    /// Prints one record; `false` once --count records were printed.
    fn print(&mut self, out: &mut impl Write, topic: &str, partition: i32, record: &Record) -> Result<bool> {
        self.format.write(out, topic, partition, record)?;
        self.printed += 1;
        self.last_record = Instant::now();
        Ok(self.count.is_none_or(|count| self.printed < count))
    }

    fn idle_for_long_enough(&self) -> bool {
        self.idle.is_some_and(|idle| self.last_record.elapsed() >= idle)
    }
}

/// Partitions by the node id of their leader.
pub(super) fn by_leader(partitions: &[(i32, i32)]) -> BTreeMap<i32, Vec<i32>> {
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for (partition, leader) in partitions {
        by_leader.entry(*leader).or_default().push(*partition);
    }
    by_leader
}

/// One fetch from each leader of `by_leader`'s partitions, each from its position in
/// `positions`. Every record an application should see (read_committed: no control record, none
/// of an aborted transaction) goes to `deliver`, in order, and moves its partition's position past
/// it; the others are skipped. Returns `true` when `deliver` returned `false` (it wants no more).
pub(super) fn fetch_once(
    client: &mut Client,
    topic: &str,
    by_leader: &BTreeMap<i32, Vec<i32>>,
    positions: &mut BTreeMap<i32, i64>,
    mut deliver: impl FnMut(i32, &Record) -> Result<bool>,
) -> Result<bool> {
    for (leader, partitions) in by_leader {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(FETCH_WAIT_MS)
            .with_min_bytes(1)
            .with_max_bytes(FETCH_MAX_BYTES)
            .with_isolation_level(1)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default().with_topic(topic_name(topic)).with_partitions(
                partitions
                    .iter()
                    .map(|partition| {
                        FetchPartition::default()
                            .with_partition(*partition)
                            .with_fetch_offset(positions[partition])
                            .with_partition_max_bytes(PARTITION_MAX_BYTES)
                    })
                    .collect(),
            )]);
        let response: FetchResponse = client.call_broker(*leader, ApiKey::Fetch, 12, &request)?;
        check(response.error_code, "fetch")?;
        for data in response.responses.iter().flat_map(|topic| &topic.partitions) {
            let partition = data.partition_index;
            let Some(position) = positions.get(&partition).copied() else { continue };
            check(data.error_code, &format!("fetching {topic}/{partition} at offset {position}"))?;
            let aborted: Vec<(i64, i64)> =
                data.aborted_transactions.iter().flatten().map(|aborted| (aborted.producer_id.0, aborted.first_offset)).collect();
            for record in decode_records(data.records.clone().unwrap_or_default())? {
                let position = positions[&partition];
                if record.offset < position || record.control || is_aborted(&record, &aborted) {
                    positions.insert(partition, position.max(record.offset + 1));
                    continue;
                }
                positions.insert(partition, record.offset + 1);
                if !deliver(partition, &record)? {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

/// A record of an aborted transaction (read_committed): its producer aborted a transaction that
/// began at or before it. Kafka's consumers drop these; so does this one.
fn is_aborted(record: &Record, aborted: &[(i64, i64)]) -> bool {
    record.transactional && aborted.iter().any(|(producer, first)| *producer == record.producer_id && *first <= record.offset)
}

/// Every record of the whole batches in `bytes` (a trailing partial batch, which a broker may
/// send at its size limit, is left for the next fetch).
pub(super) fn decode_records(mut bytes: Bytes) -> Result<Vec<Record>> {
    let mut records = Vec::new();
    while bytes.len() >= 12 {
        let length = i32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        let whole = 12 + usize::try_from(length).unwrap_or(usize::MAX).min(usize::MAX - 12);
        if length < 0 || whole > bytes.len() {
            break;
        }
        let mut batch = bytes.split_to(whole);
        let set = RecordBatchDecoder::decode(&mut batch).context("a fetched record batch does not decode")?;
        records.extend(set.records);
    }
    Ok(records)
}

/// Where each partition starts when the group has no commit for it.
fn start_positions(client: &mut Client, topic: &str, partitions: &[(i32, i32)], start: Start) -> Result<BTreeMap<i32, i64>> {
    Ok(match start {
        Start::Offset(offset) => partitions.iter().map(|(partition, _)| (*partition, offset)).collect(),
        Start::Beginning => list_offsets(client, topic, partitions, -2)?,
        Start::End => list_offsets(client, topic, partitions, -1)?,
        Start::Timestamp(time) => {
            let ends = list_offsets(client, topic, partitions, -1)?;
            // No record at or after the time: start at the end.
            list_offsets(client, topic, partitions, time)?
                .into_iter()
                .map(|(partition, offset)| (partition, if offset < 0 { ends.get(&partition).copied().unwrap_or(0) } else { offset }))
                .collect()
        }
    })
}

/// A `--format` string, parsed once.
struct Format(Vec<Piece>);

enum Piece {
    Text(String),
    Topic,
    Partition,
    Offset,
    Key,
    Value,
    Headers,
    Timestamp,
}

impl Format {
    fn parse(format: &str) -> Result<Self> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut characters = format.chars();
        while let Some(character) = characters.next() {
            let piece = match character {
                '%' => match characters.next() {
                    Some('t') => Piece::Topic,
                    Some('p') => Piece::Partition,
                    Some('o') => Piece::Offset,
                    Some('k') => Piece::Key,
                    Some('v') => Piece::Value,
                    Some('h') => Piece::Headers,
                    Some('T') => Piece::Timestamp,
                    Some('%') => {
                        text.push('%');
                        continue;
                    }
                    other => bail!(
                        "--format: unknown placeholder %{}; use %t %p %o %k %v %h %T or %%",
                        other.map(String::from).unwrap_or_default()
                    ),
                },
                '\\' => {
                    match characters.next() {
                        Some('n') => text.push('\n'),
                        Some('t') => text.push('\t'),
                        Some('\\') => text.push('\\'),
                        Some(other) => {
                            text.push('\\');
                            text.push(other);
                        }
                        None => text.push('\\'),
                    }
                    continue;
                }
                other => {
                    text.push(other);
                    continue;
                }
            };
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(piece);
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Self(pieces))
    }

    fn write(&self, out: &mut impl Write, topic: &str, partition: i32, record: &Record) -> Result<()> {
        let lossy = |bytes: &Option<Bytes>| bytes.as_ref().map(|bytes| String::from_utf8_lossy(bytes).into_owned()).unwrap_or_default();
        for piece in &self.0 {
            match piece {
                Piece::Text(text) => write!(out, "{text}")?,
                Piece::Topic => write!(out, "{topic}")?,
                Piece::Partition => write!(out, "{partition}")?,
                Piece::Offset => write!(out, "{}", record.offset)?,
                Piece::Key => write!(out, "{}", lossy(&record.key))?,
                Piece::Value => write!(out, "{}", lossy(&record.value))?,
                Piece::Timestamp => write!(out, "{}", record.timestamp)?,
                Piece::Headers => {
                    let headers: Vec<String> = record.headers.iter().map(|(name, value)| format!("{name}={}", lossy(value))).collect();
                    write!(out, "{}", headers.join(","))?
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: i64, key: Option<&str>, value: &str) -> Record {
        let mut record = new_record(key.map(|key| Bytes::from(key.to_string())), Bytes::from(value.to_string()), 1_767_225_600_000);
        record.offset = offset;
        record.sequence = offset as i32;
        record.headers.insert(StrBytes::from_static_str("source"), Some(Bytes::from_static(b"cli")));
        record
    }

    #[test]
    fn a_format_prints_each_placeholder() {
        let format = Format::parse("%t/%p@%o %k=%v [%h] %T 100%%\\n").unwrap();
        let mut out = Vec::new();
        format.write(&mut out, "orders", 2, &record(7, Some("k1"), "v1")).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "orders/2@7 k1=v1 [source=cli] 1767225600000 100%\n");
        let error = Format::parse("%x").err().expect("refused").to_string();
        assert!(error.contains("%x") && error.contains("%t %p %o"), "{error}");
    }

    #[test]
    fn whole_batches_decode_and_a_trailing_partial_batch_waits() {
        let mut encoded = BytesMut::new();
        let records = [record(0, None, "a"), record(1, Some("k"), "b")];
        RecordBatchEncoder::encode(&mut encoded, records.iter(), &RecordEncodeOptions { version: 2, compression: Compression::None })
            .unwrap();
        let whole = encoded.len();
        let mut two = encoded.clone();
        two.extend_from_slice(&encoded[..whole - 5]);
        let decoded = decode_records(two.freeze()).unwrap();
        assert_eq!(decoded.iter().map(|record| record.offset).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(decoded[1].key, Some(Bytes::from_static(b"k")));
    }

    #[test]
    fn batches_split_by_count_and_size() {
        let many: Vec<Record> = (0..25_000).map(|index| record(index, None, "x")).collect();
        let sizes: Vec<usize> = split_batches(many).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![10_000, 10_000, 5_000]);
        let big: Vec<Record> = (0..3).map(|index| record(index, None, &"y".repeat(300 << 10))).collect();
        assert_eq!(split_batches(big).len(), 3, "a batch holds about 512 KiB");
    }
}
