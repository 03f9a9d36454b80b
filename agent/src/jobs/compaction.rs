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
use uuid::Uuid;

/// One run of adjacent chunks of a partition, all in the chosen segments.
pub struct Run {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
    pub chunks: Vec<ChunkLocation>,
}

/// The oldest `fan_in` segments holding fewer than `small_bytes` referenced bytes, if there are
/// that many, and the runs they form.
pub fn plan(state: &MetadataState, fan_in: usize, small_bytes: u64) -> Option<(BTreeSet<Arc<str>>, Vec<Run>)> {
    let mut sizes: BTreeMap<Arc<str>, u64> = BTreeMap::new();
    for topic in state.topics.values() {
        for partition in &topic.partitions {
            for chunk in &partition.chunks {
                *sizes.entry(Arc::clone(&chunk.object)).or_default() += chunk.byte_len;
            }
        }
    }
    // Segment names are ULIDs: name order is age order.
    let chosen: BTreeSet<Arc<str>> = sizes
        .into_iter()
        .filter(|(object, size)| *size < small_bytes && object.ends_with(".seg"))
        .map(|(object, _)| object)
        .take(fan_in)
        .collect();
    if chosen.len() < fan_in {
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

/// Compacts rounds of `fan_in` small segments until fewer than `fan_in` remain or `budget` has
/// passed: writers make up to `--max-puts-per-second` objects a second each, far more than one
/// round per interval could merge.
pub async fn run(context: &JobContext, budget: std::time::Duration) -> Result<(), String> {
    let started = std::time::Instant::now();
    while started.elapsed() < budget && run_once(context).await? {}
    Ok(())
}

/// One round; false when there was nothing to compact.
async fn run_once(context: &JobContext) -> Result<bool, String> {
    let planned = context.metadata.read(|state| plan(state, context.settings.compaction_fan_in, context.settings.small_segment_bytes));
    let Some((chosen, runs)) = planned else { return Ok(false) };
    let started = std::time::Instant::now();
    // One GET per source object, not one per chunk: a segment of a wide topic holds thousands.
    let mut sources: BTreeMap<Arc<str>, bytes::Bytes> = BTreeMap::new();
    for object in &chosen {
        let bytes = context.store.get(object).await.map_err(|error| error.to_string())?;
        sources.insert(Arc::clone(object), bytes);
    }
    tracing::debug!(sources = chosen.len(), runs = runs.len(), elapsed = ?started.elapsed(), "compaction read its sources");
    let mut builder =
        SegmentBuilder::with_capacity(runs.iter().flat_map(|run| run.chunks.iter()).map(|chunk| chunk.byte_len as usize).sum());
    let mut replacements = Vec::with_capacity(runs.len());
    for run in &runs {
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
    let (bytes, _) = builder.finish();
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
    tracing::info!(sources = chosen.len(), runs = runs.len(), object, ?outcome, "compacted small segments");
    // A round whose replacements all went stale (retention, another compaction) made no progress:
    // stop until the next interval rather than plan the same sources again.
    Ok(matches!(outcome, crate::metadata::ApplyOutcome::SegmentsCompacted { applied } if applied > 0))
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn the_planner_does_not_merge_across_the_gap_of_a_lost_object() {
        let id = Uuid::from_u128(11);
        let mut state = MetadataState::default();
        state.apply(1, &JournalRecord::CreateTopic { name: "t".into(), topic_id: id, partitions: 2, configs: Default::default() });
        for (revision, object) in [(2, "a.seg"), (3, "b.seg"), (4, "c.seg")] {
            state.apply(revision, &JournalRecord::CommitSegment { object: object.into(), chunks: vec![chunk(id, 0, 2), chunk(id, 1, 1)] });
        }
        state.apply(5, &JournalRecord::MarkObjectLost { object: "b.seg".into() });
        let (_, runs) = plan(&state, 2, u64::MAX).expect("a.seg and c.seg are small enough to compact");
        for run in runs {
            for pair in run.chunks.windows(2) {
                assert_eq!(pair[0].end_offset(), pair[1].base_offset, "a run spans a gap");
            }
        }
    }
}
