//! Key compaction (Kafka's log cleaner) for topics whose `cleanup.policy` includes `compact`:
//! keep the latest record of every key, drop tombstones older than `delete.retention.ms`, never
//! touch records younger than `min.compaction.lag.ms`, never move an offset.
//!
//! A partition's cleanable range is its chunks from the log start, in one contiguous run, up to
//! (not including) its last chunk (Kafka never cleans the active segment: the newest records of
//! the log stay as they were written, so a consumer at the end always finds a batch ahead of it)
//! and up to the first chunk holding a record younger than `min.compaction.lag.ms`. The job reads
//! the range, keeps a record only if no later record in the range has its key, rewrites each batch
//! with the records it keeps (`protocol::retain`: same base offset, lastOffsetDelta, producer id
//! and sequence) and drops batches left empty, so the offsets they covered become gaps that fetch
//! skips. All the partitions' new chunks go into one segment object, and one `CompactSegments`
//! record replaces each range if the index still holds exactly its source chunks: the same record,
//! apply function and safety argument as segment compaction (agent/DESIGN.md, "Key compaction").
//!
//! Dropping a record is safe whoever runs the job and whenever its record applies: the record
//! that supersedes it is later in the same range and stays (it is either the latest of its key, or
//! itself superseded by a later one that stays). Clocks decide only what Kafka's clocks decide:
//! when a tombstone may go and when a record is old enough to be cleaned.

use super::compaction::run_batches;
use super::JobContext;
use crate::metadata::{topic_config, ChunkLocation, ChunkReplacement, JournalRecord, MetadataState};
use crate::protocol::records::MAX_DECODED_BATCH_BYTES;
use crate::protocol::retain;
use crate::storage::segment::SegmentBuilder;
use bytes::Bytes;
use std::collections::HashMap;
use uuid::Uuid;

/// Bytes of chunks one partition's cleaning reads at most in one run; a larger cleanable range
/// is cleaned from its newest end (where the dirty records are) and the rest on later runs.
const MAX_RANGE_BYTES: u64 = 64 << 20;

/// Bytes of chunks one run of the job reads at most across partitions.
const MAX_RUN_BYTES: u64 = 128 << 20;

/// One partition's cleanable range.
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
    pub chunks: Vec<ChunkLocation>,
    pub delete_retention_ms: i64,
    /// The partition's aborted transactions: their records are removed, as Kafka's cleaner does.
    pub aborted: Vec<floe_meta::transactions::AbortedTransaction>,
}

impl Range {
    fn end_offset(&self) -> i64 {
        self.chunks.last().map(ChunkLocation::end_offset).unwrap_or_default()
    }
}

/// What the job remembers of a partition it cleaned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cleaning {
    /// Offsets below this were cleaned.
    pub through: i64,
    /// When the oldest tombstone the cleaning kept passes `delete.retention.ms`: the partition
    /// is cleaned again then even if nothing new arrived (else the tombstone would stay for ever).
    pub tombstones_due_ms: Option<i64>,
}

/// What the job remembers between runs while it leads. A new leader starts with nothing and
/// cleans every partition once (more work, never less safety).
#[derive(Default)]
pub struct Cleaner {
    cleaned: HashMap<(Uuid, i32), Cleaning>,
}

/// The ranges worth cleaning now: a compacted topic's partition whose dirty bytes (those past
/// what this leader last cleaned) reach `min.cleanable.dirty.ratio` of its cleanable range,
/// holding a dirty record older than `max.compaction.lag.ms`, or a tombstone now past
/// `delete.retention.ms`.
pub fn plan(state: &MetadataState, now_ms: i64, cleaned: &HashMap<(Uuid, i32), Cleaning>) -> Vec<Range> {
    let mut ranges = Vec::new();
    let mut budget = MAX_RUN_BYTES;
    for (name, topic) in &state.topics {
        if !topic_config::is_compacted(&topic.configs) {
            continue;
        }
        let min_lag_ms = topic_config::integer(&topic.configs, "min.compaction.lag.ms");
        let max_lag_ms = topic_config::integer(&topic.configs, "max.compaction.lag.ms");
        let dirty_ratio = topic_config::min_cleanable_dirty_ratio(&topic.configs);
        for (index, partition) in topic.partitions.iter().enumerate() {
            // Only what every transaction has ended for (below the last stable offset): an open
            // transaction's records may still be aborted.
            let last_stable = partition.last_stable_offset();
            let live: Vec<&ChunkLocation> = partition
                .chunks
                .iter()
                .filter(|chunk| chunk.end_offset() > partition.log_start_offset && chunk.end_offset() <= last_stable)
                .collect();
            let Some((_, before_last)) = live.split_last() else { continue };
            let mut cleanable: Vec<ChunkLocation> = Vec::new();
            for chunk in before_last {
                let contiguous = cleanable.last().is_none_or(|previous| previous.end_offset() == chunk.base_offset);
                if !contiguous || chunk.max_timestamp > now_ms.saturating_sub(min_lag_ms) {
                    break;
                }
                cleanable.push((*chunk).clone());
            }
            // The newest chunks within the byte budget.
            let mut bytes = 0u64;
            let keep_from = cleanable
                .iter()
                .rposition(|chunk| {
                    bytes += chunk.byte_len;
                    bytes > MAX_RANGE_BYTES
                })
                .map_or(0, |over| over + 1);
            let chunks = cleanable.split_off(keep_from);
            let previous = cleaned.get(&(topic.id, index as i32));
            let through = previous.map_or(i64::MIN, |previous| previous.through);
            let total: u64 = chunks.iter().map(|chunk| chunk.byte_len).sum();
            let dirty: Vec<&ChunkLocation> = chunks.iter().filter(|chunk| chunk.end_offset() > through).collect();
            let dirty_bytes: u64 = dirty.iter().map(|chunk| chunk.byte_len).sum();
            let overdue = dirty.iter().any(|chunk| chunk.max_timestamp < now_ms.saturating_sub(max_lag_ms));
            let tombstones_due = previous.and_then(|previous| previous.tombstones_due_ms).is_some_and(|due| due <= now_ms);
            let worth = !chunks.is_empty()
                && (tombstones_due || (!dirty.is_empty() && (overdue || dirty_bytes as f64 >= dirty_ratio * total as f64)));
            if !worth || total > budget {
                continue;
            }
            budget -= total;
            ranges.push(Range {
                topic: name.clone(),
                topic_id: topic.id,
                partition: index as i32,
                chunks,
                delete_retention_ms: topic_config::integer(&topic.configs, "delete.retention.ms"),
                aborted: partition.aborted_transactions.clone(),
            });
        }
    }
    ranges
}

/// A range's batches after cleaning, relative to its first offset.
pub struct Cleaned {
    pub batches: Vec<(Bytes, i64)>,
    pub records_before: usize,
    pub records_after: usize,
    /// When the oldest tombstone kept because it is younger than `delete.retention.ms` may go.
    pub tombstones_due_ms: Option<i64>,
}

/// Distinct keys one cleaning remembers at most (a 16-byte digest and an offset each, about
/// 50 bytes with the map's overhead: 200 MiB), and records it reads at most. A range past either
/// is not cleaned (logged): a hostile producer's billions of tiny records cost it nothing but
/// compaction of its own partition.
const MAX_KEYS: usize = 4_000_000;
const MAX_RECORDS: usize = 50_000_000;

/// A key's identity in the cleaner's map: the first 16 bytes of its SHA-256, as Kafka's cleaner
/// keeps a digest (MD5) rather than the key. A collision, which would drop a record whose key has
/// no later value, cannot be crafted for SHA-256 and is as likely as one in 2^64 by chance.
type KeyDigest = [u8; 16];

fn key_digest(key: &[u8]) -> KeyDigest {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key);
    digest.as_ref()[..16].try_into().expect("SHA-256 has 32 bytes")
}

fn read(batch: &super::compaction::RunBatch) -> Result<retain::BatchRecords, String> {
    retain::read_records(&batch.bytes, MAX_DECODED_BATCH_BYTES)
        .map_err(|error| format!("batch at offset {} cannot be read: {error}", batch.base_offset))
}

/// Cleans one range whose chunks' bytes are `stored`: keeps the latest record of each key, and a
/// tombstone only while its timestamp is within `delete_retention_ms` of `now_ms`. Records without
/// a key (written before the topic became compacted) go, as in Kafka. A range that would be left
/// with nothing keeps its last record, so no chunk is empty. The chunk after the range (never
/// cleaned) is what a consumer in a trailing gap reads next.
///
/// Two passes, each holding one decompressed batch at a time (a batch may inflate to 64 MiB, and
/// a range holds many): the first maps every key to its latest offset, the second rewrites.
///
/// Transactions: markers are kept whole (a read_committed consumer needs an abort marker to stop
/// dropping its producer's records), and records of aborted transactions are removed without
/// counting as any key's latest value.
pub fn clean(range: &Range, stored: &[(&ChunkLocation, Bytes)], now_ms: i64) -> Result<Cleaned, String> {
    let batches = run_batches(stored)?;
    let aborted_at = |batch: &super::compaction::RunBatch, offset: i64| {
        crate::protocol::batch::transaction_flags(&batch.bytes).is_some_and(|flags| {
            flags.transactional
                && !flags.control
                && range.aborted.iter().any(|aborted| {
                    aborted.producer_id == flags.producer_id && aborted.first_offset <= offset && offset <= aborted.last_offset
                })
        })
    };
    let is_marker =
        |batch: &super::compaction::RunBatch| crate::protocol::batch::transaction_flags(&batch.bytes).is_some_and(|flags| flags.control);
    let mut latest: HashMap<KeyDigest, i64> = HashMap::new();
    let mut records_read = 0usize;
    for batch in &batches {
        if is_marker(batch) {
            continue;
        }
        let records = read(batch)?;
        records_read += records.records.len();
        for record in &records.records {
            let offset = batch.base_offset + record.offset_delta as i64;
            if let Some(key) = records.key(record).filter(|_| !aborted_at(batch, offset)) {
                latest.insert(key_digest(key), offset);
            }
        }
        if records_read > MAX_RECORDS || latest.len() > MAX_KEYS {
            return Err(format!(
                "more than {MAX_RECORDS} records or {MAX_KEYS} distinct keys in {} bytes of chunks",
                range.chunks.iter().map(|chunk| chunk.byte_len).sum::<u64>()
            ));
        }
    }
    let horizon = now_ms.saturating_sub(range.delete_retention_ms);
    let base = range.chunks.first().map(|chunk| chunk.base_offset).unwrap_or_default();
    let mut cleaned = Cleaned { batches: Vec::with_capacity(batches.len()), records_before: 0, records_after: 0, tombstones_due_ms: None };
    for (index, batch) in batches.iter().enumerate() {
        if is_marker(batch) {
            cleaned.records_before += 1;
            cleaned.records_after += 1;
            cleaned.batches.push((batch.bytes.clone(), batch.base_offset - base));
            continue;
        }
        let records = read(batch)?;
        let mut keep: Vec<bool> = records
            .records
            .iter()
            .map(|record| {
                let offset = batch.base_offset + record.offset_delta as i64;
                if aborted_at(batch, offset) {
                    return false;
                }
                let Some(key) = records.key(record) else { return false };
                let latest_of_key = latest.get(&key_digest(key)) == Some(&offset);
                let timestamp = records.base_timestamp.saturating_add(record.timestamp_delta);
                let expired_tombstone = record.is_tombstone && timestamp < horizon;
                if record.is_tombstone && latest_of_key && !expired_tombstone {
                    let due = timestamp.saturating_add(range.delete_retention_ms).saturating_add(1);
                    cleaned.tombstones_due_ms = Some(cleaned.tombstones_due_ms.map_or(due, |earliest| earliest.min(due)));
                }
                latest_of_key && !expired_tombstone
            })
            .collect();
        // A range keeps at least its last record, so its chunk is never empty.
        let last_batch = index + 1 == batches.len();
        if last_batch && cleaned.records_after == 0 && !keep.iter().any(|keep| *keep) {
            if let Some(last) = keep.last_mut() {
                *last = true;
            }
        }
        cleaned.records_before += keep.len();
        cleaned.records_after += keep.iter().filter(|keep| **keep).count();
        if let Some(bytes) = retain::rewrite_keeping(&batch.bytes, &records, &keep)
            .map_err(|error| format!("batch at offset {} cannot be rewritten: {error}", batch.base_offset))?
        {
            cleaned.batches.push((bytes, batch.base_offset - base));
        }
    }
    Ok(cleaned)
}

impl Cleaner {
    pub async fn run(&mut self, context: &JobContext) -> Result<(), String> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_millis() as i64)
            .unwrap_or_default();
        let ranges = context.metadata.read(|state| plan(state, now_ms, &self.cleaned));
        if ranges.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let mut builder =
            SegmentBuilder::with_capacity(ranges.iter().flat_map(|range| &range.chunks).map(|chunk| chunk.byte_len as usize).sum());
        let mut replacements = Vec::new();
        let mut unchanged = Vec::new();
        let (mut before, mut after) = (0usize, 0usize);
        for range in &ranges {
            let mut stored = Vec::with_capacity(range.chunks.len());
            for chunk in &range.chunks {
                let bytes = context.reader.read_chunk(chunk).await.map_err(|error| format!("reading {}: {error}", chunk.object))?;
                stored.push((chunk, bytes));
            }
            // A partition whose batches cannot be read or rewritten stays as it is (nothing is
            // lost by not cleaning); the others are cleaned. The problem is logged every run.
            let cleaned = match clean(range, &stored, now_ms) {
                Ok(cleaned) => cleaned,
                Err(reason) => {
                    tracing::warn!(topic = %range.topic, partition = range.partition, %reason, "key compaction skipped a partition");
                    continue;
                }
            };
            before += cleaned.records_before;
            after += cleaned.records_after;
            let cleaning = Cleaning { through: range.end_offset(), tombstones_due_ms: cleaned.tombstones_due_ms };
            if cleaned.records_after == cleaned.records_before {
                unchanged.push(((range.topic_id, range.partition), cleaning));
                continue;
            }
            let first = range.chunks.first().expect("planned ranges are non-empty");
            let max_timestamp = range.chunks.iter().map(|chunk| chunk.max_timestamp).max().unwrap_or(-1);
            let span = range.end_offset() - first.base_offset;
            let entry = builder.add_chunk_at(&range.topic, range.topic_id, range.partition, &cleaned.batches, span, max_timestamp);
            replacements.push((
                ChunkReplacement {
                    topic: range.topic.clone(),
                    topic_id: range.topic_id,
                    partition: range.partition,
                    base_offset: first.base_offset,
                    end_offset: range.end_offset(),
                    sources: range.chunks.iter().map(|chunk| chunk.object.to_string()).collect(),
                    byte_start: entry.byte_start,
                    byte_len: entry.byte_len,
                    max_timestamp,
                },
                cleaning,
            ));
        }
        self.cleaned.extend(unchanged);
        if replacements.is_empty() {
            return Ok(());
        }
        let (bytes, _) = builder.finish();
        // Stamped like a writer's segment, so a commit held up past the garbage collector's seal
        // is refused at apply (as for segment compaction).
        let object = context
            .metadata
            .read(|state| crate::storage::layout::BucketLayout::new(state.cluster_id.as_deref()).new_segment_name(state.applied_revision));
        context.store.put(&object, bytes).await.map_err(|error| error.to_string())?;
        let cleanings: Vec<((Uuid, i32), Cleaning)> =
            replacements.iter().map(|(replacement, cleaning)| ((replacement.topic_id, replacement.partition), *cleaning)).collect();
        let record = JournalRecord::CompactSegments {
            object: object.clone(),
            replacements: replacements.into_iter().map(|(replacement, _)| replacement).collect(),
        };
        let outcome = context.metadata.submit(record).await.map_err(|error| error.to_string())?;
        // A range the index no longer held is simply cleaned again next time.
        self.cleaned.extend(cleanings);
        context.metrics.key_compaction_records_removed.inc_by((before - after) as u64);
        tracing::info!(
            partitions = ranges.len(),
            records_before = before,
            records_after = after,
            object,
            elapsed = ?started.elapsed(),
            ?outcome,
            "compacted topics by key"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{ChunkCommit, JournalRecord};
    use crate::protocol::records::{decode_batch, tests::record};
    use bytes::BytesMut;
    use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions};
    use std::collections::BTreeMap;

    const NOW: i64 = 1_800_000_000_000;

    /// A client batch of (key, value, timestamp) records.
    fn batch(records: &[(&str, Option<&str>, i64)]) -> Bytes {
        let records: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(index, (key, value, timestamp))| Record {
                key: Some(Bytes::from(key.to_string())),
                value: value.map(|value| Bytes::from(value.to_string())),
                timestamp: *timestamp,
                ..record(index, Bytes::new())
            })
            .collect();
        let mut buffer = BytesMut::new();
        RecordBatchEncoder::encode(&mut buffer, &records, &RecordEncodeOptions { version: 2, compression: Compression::Lz4 })
            .expect("encode");
        buffer.freeze()
    }

    /// Stores each inner list as one chunk (one batch per list entry) in its own object.
    fn chunks(lists: &[Vec<Bytes>]) -> Vec<(ChunkLocation, Bytes)> {
        let mut base = 0;
        lists
            .iter()
            .enumerate()
            .map(|(index, batches)| {
                let counted: Vec<(Bytes, i64)> = batches
                    .iter()
                    .map(|bytes| (bytes.clone(), crate::protocol::batch::walk(bytes).next().unwrap().last_offset_delta as i64 + 1))
                    .collect();
                let mut builder = SegmentBuilder::with_capacity(1024);
                let entry = builder.add_chunk("t", Uuid::from_u128(1), 0, &counted, NOW - 1000).clone();
                let (object, _) = builder.finish();
                let location = ChunkLocation {
                    base_offset: base,
                    record_count: entry.record_count,
                    object: format!("o{index}.seg").into(),
                    byte_start: entry.byte_start,
                    byte_len: entry.byte_len,
                    max_timestamp: NOW - 1000,
                    relative_base: 0,
                };
                base += entry.record_count;
                (location, object.slice(entry.byte_start as usize..(entry.byte_start + entry.byte_len) as usize))
            })
            .collect()
    }

    /// (offset, key, value) of every record in `cleaned`, starting at `base`.
    fn read_back(cleaned: &Cleaned, base: i64) -> Vec<(i64, String, Option<String>)> {
        let mut out = Vec::new();
        for (bytes, relative) in &cleaned.batches {
            for record in decode_batch(bytes, 1 << 20).unwrap() {
                let text = |bytes: Option<Bytes>| bytes.map(|bytes| String::from_utf8(bytes.to_vec()).unwrap());
                out.push((base + relative + record.offset, text(record.key).unwrap(), text(record.value)));
            }
        }
        out
    }

    fn range(stored: &[(ChunkLocation, Bytes)], delete_retention_ms: i64) -> Range {
        Range {
            topic: "t".into(),
            topic_id: Uuid::from_u128(1),
            partition: 0,
            chunks: stored.iter().map(|(chunk, _)| chunk.clone()).collect(),
            delete_retention_ms,
            aborted: Vec::new(),
        }
    }

    #[test]
    fn cleaning_keeps_the_latest_record_of_each_key_at_its_offset_and_drops_old_tombstones() {
        let old = NOW - 10_000;
        let stored = chunks(&[
            vec![batch(&[("a", Some("a1"), old), ("b", Some("b1"), old)]), batch(&[("c", Some("c1"), old)])],
            vec![batch(&[("a", Some("a2"), old), ("b", None, old), ("c", None, NOW - 10)])],
            vec![batch(&[("d", Some("d1"), old), ("a", Some("a3"), old)])],
        ]);
        let refs: Vec<(&ChunkLocation, Bytes)> = stored.iter().map(|(chunk, bytes)| (chunk, bytes.clone())).collect();
        let cleaned = clean(&range(&stored, 5_000), &refs, NOW).unwrap();
        assert_eq!(
            read_back(&cleaned, 0),
            vec![(5, "c".to_string(), None), (6, "d".to_string(), Some("d1".to_string())), (7, "a".to_string(), Some("a3".to_string()))],
            "b's tombstone is past delete.retention.ms, c's is not; offsets are unchanged"
        );
        assert_eq!((cleaned.records_before, cleaned.records_after), (8, 3));
        assert_eq!(cleaned.tombstones_due_ms, Some(NOW - 10 + 5_000 + 1), "c's tombstone is due when it passes delete.retention.ms");
        assert_eq!(cleaned.batches.len(), 2, "the batches left empty are gone, their offsets a gap");
        let walked = crate::protocol::batch::walk(&cleaned.batches[0].0).next().unwrap();
        assert_eq!(walked.last_offset_delta, 2, "a rewritten batch keeps its offset span");
    }

    #[test]
    fn a_range_left_with_nothing_keeps_its_last_record() {
        let old = NOW - 10_000;
        let stored = chunks(&[vec![batch(&[("a", Some("a1"), old)])], vec![batch(&[("a", None, old)])]]);
        let refs: Vec<(&ChunkLocation, Bytes)> = stored.iter().map(|(chunk, bytes)| (chunk, bytes.clone())).collect();
        let cleaned = clean(&range(&stored, 0), &refs, NOW).unwrap();
        assert_eq!(read_back(&cleaned, 0), vec![(1, "a".to_string(), None)]);
    }

    fn state(configs: &[(&str, &str)], max_timestamps: &[i64]) -> MetadataState {
        let id = Uuid::from_u128(1);
        let configs: BTreeMap<String, String> = configs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect();
        let mut state = MetadataState::default();
        state.apply(1, &JournalRecord::CreateTopic { name: "t".into(), topic_id: id, partitions: 1, configs });
        for (index, max_timestamp) in max_timestamps.iter().enumerate() {
            let chunk = ChunkCommit {
                topic: "t".into(),
                topic_id: id,
                partition: 0,
                record_count: 10,
                byte_start: 8,
                byte_len: 100,
                max_timestamp: *max_timestamp,
                batches: Vec::new(),
            };
            state.apply(index as u64 + 2, &JournalRecord::CommitSegment { object: format!("o{index}.seg"), chunks: vec![chunk] });
        }
        state
    }

    #[test]
    fn the_plan_leaves_the_last_chunk_young_records_delete_topics_and_clean_partitions_alone() {
        let compact = [("cleanup.policy", "compact")];
        let planned = plan(&state(&compact, &[NOW - 5, NOW - 5, NOW - 5]), NOW, &HashMap::new());
        assert_eq!(planned.len(), 1);
        assert_eq!(planned[0].chunks.len(), 2, "the newest chunk is never cleaned (Kafka's active segment)");
        assert!(plan(&state(&[], &[NOW - 5, NOW - 5, NOW - 5]), NOW, &HashMap::new()).is_empty(), "cleanup.policy=delete");
        assert!(plan(&state(&compact, &[NOW - 5]), NOW, &HashMap::new()).is_empty(), "one chunk is all last chunk");
        let lagged = [("cleanup.policy", "compact,delete"), ("min.compaction.lag.ms", "1000")];
        let planned = plan(&state(&lagged, &[NOW - 5_000, NOW - 500, NOW - 5_000, NOW]), NOW, &HashMap::new());
        assert_eq!(planned[0].chunks.len(), 1, "cleaning stops at the first chunk younger than min.compaction.lag.ms");
        let through =
            |offset, tombstones_due_ms| HashMap::from([((Uuid::from_u128(1), 0), Cleaning { through: offset, tombstones_due_ms })]);
        let cleaned = through(20, None);
        assert!(plan(&state(&compact, &[NOW - 5, NOW - 5, NOW - 5]), NOW, &cleaned).is_empty(), "nothing dirty");
        assert!(plan(&state(&compact, &[NOW - 5, NOW - 5, NOW - 5]), NOW, &through(20, Some(NOW + 1))).is_empty());
        assert_eq!(
            plan(&state(&compact, &[NOW - 5, NOW - 5, NOW - 5]), NOW, &through(20, Some(NOW))).len(),
            1,
            "a kept tombstone past delete.retention.ms brings a clean partition back"
        );
        let three_clean = through(30, None);
        let five = state(&compact, &[NOW - 5; 5]);
        assert!(plan(&five, NOW, &three_clean).is_empty(), "1 dirty chunk of 4 is below the default ratio 0.5");
        let two_clean = through(20, None);
        assert_eq!(plan(&five, NOW, &two_clean).len(), 1, "2 dirty chunks of 4 reach it");
        let overdue = state(&[("cleanup.policy", "compact"), ("max.compaction.lag.ms", "1000")], &[NOW - 5; 5]);
        assert!(plan(&overdue, NOW, &three_clean).is_empty());
        let overdue = state(&[("cleanup.policy", "compact"), ("max.compaction.lag.ms", "1")], &[NOW - 5; 5]);
        assert_eq!(plan(&overdue, NOW, &three_clean).len(), 1, "a dirty record older than max.compaction.lag.ms forces a run");
    }
}
