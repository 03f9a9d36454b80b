//! Segment compaction: merge the oldest `fan_in` small segments into one, partition-sorted. Each
//! partition's chunks from those segments that sit next to each other in its index become one
//! chunk whose batches keep their bytes (base offsets are stored relative, so the merged chunk is
//! byte-identical to what fetch returned before). The journal record lists the exact source
//! chunks; apply replaces them only if the index still holds them, so racing retention or a
//! duplicate record from a deposed leader changes nothing.

use super::JobContext;
use crate::metadata::{ChunkLocation, ChunkReplacement, JournalRecord, MetadataState};
use crate::protocol::batch;
use crate::storage::segment::SegmentBuilder;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio::sync::watch;
use uuid::Uuid;

/// One run of adjacent chunks of a partition, all in the chosen segments.
pub struct Run {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
    pub chunks: Vec<ChunkLocation>,
}

/// The most source bytes one round reads, past which it stops choosing sources. A round holds its
/// sources and its output in memory at once: 32 sources of up to `small_bytes` (4 MiB by default)
/// made rounds of up to 256 MiB, beside a 256 MiB cache.
pub const ROUND_SOURCE_BYTES: u64 = 16 << 20;

/// Source bytes a round stops at: `small_bytes`, so that its output is just no longer small (and
/// never merged again), within [`ROUND_SOURCE_BYTES`]. A round's output is one PUT, and on a local
/// disk one write and fsync that every producer's flush queues behind: 16 MiB rounds held the
/// playground's acknowledgements up to 200-450 ms, 4 MiB rounds 35-70 ms (agent/DESIGN.md,
/// "Compaction yields to producers").
fn round_source_bytes(small_bytes: u64) -> u64 {
    small_bytes.clamp(1, ROUND_SOURCE_BYTES)
}

/// After each round compaction pauses for this many times the round's own length, so that it holds
/// the disk, the bucket and a core at most a quarter of the time, however fast or slow they are.
const PAUSE_PER_ROUND: u32 = 3;

/// The oldest segments holding fewer than `small_bytes` referenced bytes, `fan_in` of them or
/// fewer (at least two) when they reach `round_bytes` first, and the runs they form; `None` while
/// there are not enough.
pub fn plan(state: &MetadataState, fan_in: usize, small_bytes: u64, round_bytes: u64) -> Option<(BTreeSet<Arc<str>>, Vec<Run>)> {
    let mut sizes: BTreeMap<Arc<str>, u64> = BTreeMap::new();
    for topic in state.topics.values() {
        for partition in &topic.partitions {
            for chunk in &partition.chunks {
                *sizes.entry(Arc::clone(&chunk.object)).or_default() += chunk.byte_len;
            }
        }
    }
    // Segment names are ULIDs: name order is age order.
    let enough = |count: usize, bytes: u64| count >= fan_in || (count >= 2 && bytes >= round_bytes);
    let (mut chosen, mut chosen_bytes) = (BTreeSet::new(), 0u64);
    for (object, size) in sizes.into_iter().filter(|(object, size)| *size < small_bytes && object.ends_with(".seg")) {
        if enough(chosen.len(), chosen_bytes) {
            break;
        }
        chosen.insert(object);
        chosen_bytes += size;
    }
    if !enough(chosen.len(), chosen_bytes) {
        return None;
    }
    let mut runs = Vec::new();
    for (name, topic) in &state.topics {
        for (index, partition) in topic.partitions.iter().enumerate() {
            let mut current: Vec<ChunkLocation> = Vec::new();
            for chunk in &partition.chunks {
                // A gap (chunks marked lost) ends a run: a merged chunk must cover its offsets whole.
                let continues = current.last().is_none_or(|previous| previous.end_offset() == chunk.base_offset);
                if !continues {
                    runs.push(Run {
                        topic: name.clone(),
                        topic_id: topic.id,
                        partition: index as i32,
                        chunks: std::mem::take(&mut current),
                    });
                }
                if chosen.contains(&chunk.object) {
                    current.push(chunk.clone());
                } else if !current.is_empty() {
                    runs.push(Run {
                        topic: name.clone(),
                        topic_id: topic.id,
                        partition: index as i32,
                        chunks: std::mem::take(&mut current),
                    });
                }
            }
            if !current.is_empty() {
                runs.push(Run { topic: name.clone(), topic_id: topic.id, partition: index as i32, chunks: current });
            }
        }
    }
    Some((chosen, runs))
}

/// A stored batch of a run of chunks, with its log offsets.
pub struct RunBatch {
    pub bytes: bytes::Bytes,
    pub base_offset: i64,
    pub last_offset: i64,
}

/// The batches of a run of chunks (each with its bytes), with their log offsets; refused unless
/// they increase and stay inside the chunks that hold them. Gaps between batches (left by key
/// compaction) are allowed.
pub fn run_batches(chunks: &[(&ChunkLocation, bytes::Bytes)]) -> Result<Vec<RunBatch>, String> {
    let mut batches = Vec::new();
    let mut next = chunks.first().map(|(chunk, _)| chunk.base_offset).unwrap_or_default();
    for (chunk, bytes) in chunks {
        if chunk.base_offset < next {
            return Err(format!("chunks overlap at offset {}", chunk.base_offset));
        }
        for stored in batch::walk(bytes) {
            let base_offset = chunk.stored_offset_origin() + stored.base_offset;
            let last_offset = base_offset + stored.last_offset_delta as i64;
            if base_offset < next.max(chunk.base_offset) || last_offset >= chunk.end_offset() || stored.last_offset_delta < 0 {
                return Err(format!(
                    "a batch at offsets {base_offset}..={last_offset} is out of order or outside its chunk {}..{}",
                    chunk.base_offset,
                    chunk.end_offset()
                ));
            }
            next = last_offset + 1;
            batches.push(RunBatch { bytes: bytes.slice(stored.position..stored.position + stored.size), base_offset, last_offset });
        }
    }
    Ok(batches)
}

/// Bytes one run may rewrite before it leaves the rest to the next interval.
pub const REWRITE_BYTES_PER_RUN: u64 = 64 << 20;

/// Compacts rounds of `fan_in` small segments until fewer than `fan_in` remain, `budget` has
/// passed, [`REWRITE_BYTES_PER_RUN`] were written or `stop` turns true: writers make up to
/// `--max-puts-per-second` objects a second each, far more than one round per interval could merge
/// when they are tiny (light load), while large ones (heavy load) get a few rounds per interval, so
/// compaction does not write everything twice and compete with producers for the disk and CPU.
/// Rounds are spaced by [`PAUSE_PER_ROUND`] times their own length.
pub async fn run(context: &JobContext, budget: std::time::Duration, stop: watch::Receiver<bool>) -> Result<(), String> {
    run_within(context, budget, REWRITE_BYTES_PER_RUN, stop).await
}

async fn run_within(
    context: &JobContext,
    budget: std::time::Duration,
    rewrite_bytes: u64,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let started = std::time::Instant::now();
    let mut rewritten = 0;
    while started.elapsed() < budget && rewritten < rewrite_bytes {
        let round_started = std::time::Instant::now();
        match run_once(context).await? {
            Some(bytes) => rewritten += bytes,
            None => break,
        }
        let pause = round_started.elapsed() * PAUSE_PER_ROUND;
        tokio::select! {
            // A stop already asked for wins over a pause that has not begun.
            biased;
            _ = stop.wait_for(|stop| *stop) => break,
            _ = tokio::time::sleep(pause) => {}
        }
    }
    Ok(())
}

/// One round: the bytes it wrote, or None when there was nothing (left) to compact.
///
/// Planning walks every chunk of the index (about 24 ms for 300,000 chunks, release build) and
/// building copies and checks tens of MiB: both run on the blocking pool, not on an async worker,
/// where they would hold up every task queued behind them (tokio's LIFO slot is not stolen), the
/// producers' acknowledgements among them.
async fn run_once(context: &JobContext) -> Result<Option<u64>, String> {
    let (metadata, fan_in, small_bytes) =
        (context.metadata.clone(), context.settings.compaction_fan_in, context.settings.small_segment_bytes);
    let planned = off_the_workers(move || metadata.read(|state| plan(state, fan_in, small_bytes, round_source_bytes(small_bytes)))).await?;
    let Some((chosen, runs)) = planned else { return Ok(None) };
    let started = std::time::Instant::now();
    // One GET per source object, not one per chunk: a segment of a wide topic holds thousands.
    let mut sources: BTreeMap<Arc<str>, bytes::Bytes> = BTreeMap::new();
    for object in &chosen {
        let bytes = context.store.get(object).await.map_err(|error| error.to_string())?;
        sources.insert(Arc::clone(object), bytes);
    }
    tracing::debug!(sources = chosen.len(), runs = runs.len(), elapsed = ?started.elapsed(), "compaction read its sources");
    let run_count = runs.len();
    let (bytes, replacements) = off_the_workers(move || build(&runs, &sources)).await??;
    let written = bytes.len() as u64;
    tracing::debug!(elapsed = ?started.elapsed(), "compaction built its segment");
    // Stamped like a writer's segment: a compaction whose commit is held up past the garbage
    // collector's seal is refused at apply, exactly as a produce commit would be.
    let object = context
        .metadata
        .read(|state| crate::storage::layout::BucketLayout::new(state.cluster_id.as_deref()).new_segment_name(state.applied_revision));
    context.store.put(&object, bytes).await.map_err(|error| error.to_string())?;
    tracing::debug!(elapsed = ?started.elapsed(), "compaction stored its segment");
    let outcome = context
        .metadata
        .submit(JournalRecord::CompactSegments { object: object.clone(), replacements })
        .await
        .map_err(|error| error.to_string())?;
    tracing::info!(sources = chosen.len(), runs = run_count, object, ?outcome, "compacted small segments");
    // A round whose replacements all went stale (retention, another compaction) made no progress:
    // stop until the next interval rather than plan the same sources again.
    let progressed = matches!(outcome, crate::metadata::ApplyOutcome::SegmentsCompacted { applied } if applied > 0);
    Ok(progressed.then_some(written))
}

async fn off_the_workers<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(work).await.map_err(|error| format!("compaction task failed: {error}"))
}

/// The merged segment of `runs`, whose chunks' bytes are in `sources`, and the replacements
/// that point the index at it.
fn build(runs: &[Run], sources: &BTreeMap<Arc<str>, bytes::Bytes>) -> Result<(bytes::Bytes, Vec<ChunkReplacement>), String> {
    let bytes = runs.iter().flat_map(|run| run.chunks.iter()).map(|chunk| chunk.byte_len as usize).sum();
    let mut builder = SegmentBuilder::sized_for(bytes, runs.iter().map(|run| run.topic.as_str()));
    let mut replacements = Vec::with_capacity(runs.len());
    for run in runs {
        let mut stored = Vec::with_capacity(run.chunks.len());
        let mut max_timestamp = -1;
        for chunk in &run.chunks {
            let object = sources.get(&chunk.object).ok_or_else(|| format!("source {} was not read", chunk.object))?;
            let (start, end) = (chunk.byte_start as usize, (chunk.byte_start + chunk.byte_len) as usize);
            if end > object.len() {
                return Err(format!(
                    "{} is {} bytes, shorter than the chunk {start}..{end} the index points at",
                    chunk.object,
                    object.len()
                ));
            }
            stored.push((chunk, object.slice(start..end)));
            max_timestamp = max_timestamp.max(chunk.max_timestamp);
        }
        let first = run.chunks.first().expect("runs are non-empty");
        let last = run.chunks.last().expect("runs are non-empty");
        let batches = run_batches(&stored)
            .map_err(|reason| format!("{}/{}: {reason}; refusing to compact", run.topic, run.partition))?
            .into_iter()
            .map(|batch| (batch.bytes, batch.base_offset - first.base_offset))
            .collect::<Vec<_>>();
        let entry =
            builder.add_chunk_at(&run.topic, run.topic_id, run.partition, &batches, last.end_offset() - first.base_offset, max_timestamp);
        replacements.push(ChunkReplacement {
            topic: run.topic.clone(),
            topic_id: run.topic_id,
            partition: run.partition,
            base_offset: first.base_offset,
            end_offset: last.end_offset(),
            sources: run.chunks.iter().map(|chunk| chunk.object.to_string()).collect(),
            byte_start: entry.byte_start,
            byte_len: entry.byte_len,
            max_timestamp,
        });
    }
    Ok((builder.finish().0, replacements))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job context over a memory bucket and an embedded journal holding topic `t` (one
    /// partition) with `segments` single-batch segments, each flushed on its own; fan-in 4.
    async fn context_with_tiny_segments(directory: &std::path::Path, segments: usize) -> JobContext {
        use crate::metadata::journal::EmbeddedJournal;
        use crate::metadata::replica::Replica;
        use crate::metrics::Metrics;
        use crate::protocol::batch::{tests::encoded_batch, validate_produced};
        use crate::storage::{ObjectStoreUrl, S3Options, SegmentCache, SegmentReader, SegmentStore, SegmentWriter, WriterConfig};
        let replica = Arc::new(Replica::new());
        let journal = Arc::new(EmbeddedJournal::open(&directory.join("journal.log"), Arc::clone(&replica)).unwrap());
        let metadata = crate::metadata::MetadataClient::new(journal, replica);
        metadata.submit(JournalRecord::InitCluster { cluster_id: "c".into() }).await.unwrap();
        metadata.submit(JournalRecord::SetMetadataVersion { version: crate::metadata::SUPPORTED_METADATA_VERSION }).await.unwrap();
        let topic_id = Uuid::new_v4();
        metadata
            .submit(JournalRecord::CreateTopic { name: "t".into(), topic_id, partitions: 1, configs: Default::default() })
            .await
            .unwrap();
        let metrics = Arc::new(Metrics::new());
        let store = Arc::new(SegmentStore::open(&ObjectStoreUrl::Memory, &S3Options::default(), metrics.clone()).unwrap());
        let cache = Arc::new(SegmentCache::new(1 << 20));
        let config = WriterConfig { flush_spacing: std::time::Duration::from_millis(1), flush_max_bytes: 8 << 20 };
        let writer = Arc::new(SegmentWriter::new(config, Arc::clone(&store), Arc::clone(&cache), metadata.clone(), Arc::clone(&metrics)));
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        let running = tokio::spawn(Arc::clone(&writer).run(stopped));
        let batch = encoded_batch(2, kafka_protocol::records::Compression::None);
        let summary = validate_produced(&batch, 1 << 20).unwrap();
        for _ in 0..segments {
            writer.append("t", topic_id, 0, batch.clone(), summary).await.await.unwrap().unwrap();
        }
        running.abort();
        let resources = super::super::JobResources {
            settings: super::super::JobSettings {
                snapshot_interval: std::time::Duration::from_secs(3600),
                compaction_interval: std::time::Duration::from_secs(30),
                compaction_fan_in: 4,
                key_compaction_interval: std::time::Duration::from_secs(3600),
                small_segment_bytes: 4 << 20,
                retention_interval: std::time::Duration::from_secs(3600),
                gc_grace: std::time::Duration::from_secs(3600),
                lag_metrics_interval: std::time::Duration::from_secs(5),
                lag_metrics_max_series: 10_000,
            },
            metadata,
            reader: Arc::new(SegmentReader::new(Arc::clone(&store), cache)),
            store,
            metrics,
        };
        JobContext::new(&resources, Arc::new(crate::coordination::Sole::new()), None)
    }

    fn referenced_objects(context: &JobContext) -> usize {
        context.metadata.read(|state| {
            state.partition("t", 0).unwrap().chunks.iter().map(|chunk| Arc::clone(&chunk.object)).collect::<BTreeSet<_>>().len()
        })
    }

    #[tokio::test]
    async fn one_run_merges_round_after_round_until_fewer_than_the_fan_in_small_segments_remain() {
        let directory = tempfile::tempdir().unwrap();
        let context = context_with_tiny_segments(directory.path(), 40).await;
        assert_eq!(referenced_objects(&context), 40, "the precondition: one object per flush");
        let (_running, stop) = watch::channel(false);
        run(&context, std::time::Duration::from_secs(30), stop).await.unwrap();
        // One round of 4 would leave 37.
        assert!(referenced_objects(&context) < 4, "{} objects left after one run", referenced_objects(&context));
        assert_eq!(context.metadata.read(|state| state.partition("t", 0).unwrap().high_watermark), 80, "every record still indexed");
    }

    #[tokio::test]
    async fn one_run_stops_once_it_rewrote_its_byte_budget() {
        let directory = tempfile::tempdir().unwrap();
        let context = context_with_tiny_segments(directory.path(), 40).await;
        // A budget of one byte: the first round passes it, so exactly one round runs.
        let (_running, stop) = watch::channel(false);
        run_within(&context, std::time::Duration::from_secs(30), 1, stop).await.unwrap();
        assert_eq!(referenced_objects(&context), 37);
    }
    use crate::metadata::{ChunkCommit, JournalRecord};

    fn chunk(topic_id: Uuid, partition: i32, count: i64) -> ChunkCommit {
        ChunkCommit {
            topic: "t".into(),
            topic_id,
            partition,
            record_count: count,
            byte_start: 0,
            byte_len: 10,
            max_timestamp: 5,
            batches: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_run_asked_to_stop_ends_after_the_round_under_way() {
        let directory = tempfile::tempdir().unwrap();
        let context = context_with_tiny_segments(directory.path(), 40).await;
        let (stopping, stop) = watch::channel(false);
        stopping.send(true).unwrap();
        run(&context, std::time::Duration::from_secs(30), stop).await.unwrap();
        assert_eq!(referenced_objects(&context), 37, "one round of 4, then no pause and no second round");
    }

    #[test]
    fn a_round_reads_until_its_output_is_no_longer_small_within_the_cap() {
        assert_eq!(round_source_bytes(4 << 20), 4 << 20);
        assert_eq!(round_source_bytes(64 << 20), ROUND_SOURCE_BYTES);
        assert_eq!(round_source_bytes(0), 1);
    }

    #[test]
    fn a_round_stops_choosing_sources_at_its_byte_bound_but_never_merges_fewer_than_two() {
        let id = Uuid::from_u128(12);
        let mut state = MetadataState::default();
        state.apply(1, &JournalRecord::CreateTopic { name: "t".into(), topic_id: id, partitions: 1, configs: Default::default() });
        for (revision, object) in [(2, "a.seg"), (3, "b.seg"), (4, "c.seg"), (5, "d.seg"), (6, "e.seg")] {
            // Each segment references 10 bytes.
            state.apply(revision, &JournalRecord::CommitSegment { object: object.into(), chunks: vec![chunk(id, 0, 1)] });
        }
        let chosen = |fan_in, round_bytes| plan(&state, fan_in, u64::MAX, round_bytes).map(|(chosen, _)| chosen.len());
        // The oldest three reach 25 bytes; the fan-in of 4 is not waited for.
        assert_eq!(chosen(4, 25), Some(3));
        assert_eq!(chosen(4, u64::MAX), Some(4));
        // A first source past the bound still gets a second: one source alone merges nothing.
        assert_eq!(chosen(4, 5), Some(2));
        assert_eq!(chosen(6, u64::MAX), None, "five small segments are fewer than the fan-in");
        let (_, runs) = plan(&state, 4, u64::MAX, 25).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].chunks.len(), 3);
    }

    #[test]
    fn the_planner_does_not_merge_across_the_gap_of_a_lost_object() {
        let id = Uuid::from_u128(11);
        let mut state = MetadataState::default();
        state.apply(1, &JournalRecord::CreateTopic { name: "t".into(), topic_id: id, partitions: 2, configs: Default::default() });
        for (revision, object) in [(2, "a.seg"), (3, "b.seg"), (4, "c.seg")] {
            state.apply(revision, &JournalRecord::CommitSegment { object: object.into(), chunks: vec![chunk(id, 0, 2), chunk(id, 1, 1)] });
        }
        state.apply(5, &JournalRecord::MarkObjectLost { object: "b.seg".into() });
        let (_, runs) = plan(&state, 2, u64::MAX, u64::MAX).expect("a.seg and c.seg are small enough to compact");
        for run in runs {
            for pair in run.chunks.windows(2) {
                assert_eq!(pair[0].end_offset(), pair[1].base_offset, "a run spans a gap");
            }
        }
    }
}
