//! Retention by time (retention.ms) and size (retention.bytes), whole chunks at a time, as Kafka
//! deletes whole segments. The job decides with its own clock; the journal record it writes only
//! moves log start offsets forward, so applying it is deterministic.

use super::JobContext;
use crate::metadata::{topic_config, JournalRecord, MetadataState, PartitionTrim};

const TRIMS_PER_RECORD: usize = 500;

/// Log start offsets that retention allows, for every partition where it moves forward.
pub fn plan(state: &MetadataState, now_ms: i64) -> Vec<PartitionTrim> {
    let mut trims = Vec::new();
    for (name, topic) in &state.topics {
        // A compact-only topic keeps the latest value of every key for ever (Kafka Connect's
        // config topic, a changelog): retention would lose state nothing else holds.
        if !topic_config::is_deleted_by_retention(&topic.configs) {
            continue;
        }
        let setting = |key: &str, default: i64| topic.configs.get(key).and_then(|value| value.parse::<i64>().ok()).unwrap_or(default);
        let retention_ms = setting("retention.ms", 604_800_000);
        let retention_bytes = setting("retention.bytes", -1);
        for (index, partition) in topic.partitions.iter().enumerate() {
            let mut log_start = partition.log_start_offset;
            let live = || partition.chunks.iter().filter(|chunk| chunk.end_offset() > partition.log_start_offset);
            if retention_ms >= 0 {
                for chunk in live() {
                    if chunk.max_timestamp >= now_ms.saturating_sub(retention_ms) {
                        break;
                    }
                    log_start = chunk.end_offset();
                }
            }
            if retention_bytes >= 0 {
                let time_start = log_start;
                let mut total: i64 = live().filter(|chunk| chunk.end_offset() > time_start).map(|chunk| chunk.byte_len as i64).sum();
                for chunk in live().filter(|chunk| chunk.end_offset() > time_start) {
                    if total - (chunk.byte_len as i64) < retention_bytes {
                        break;
                    }
                    total -= chunk.byte_len as i64;
                    log_start = chunk.end_offset();
                }
            }
            if log_start > partition.log_start_offset {
                trims.push(PartitionTrim { topic: name.clone(), topic_id: topic.id, partition: index as i32, log_start_offset: log_start });
            }
        }
    }
    trims
}

pub async fn run(context: &JobContext) -> Result<(), String> {
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|elapsed| elapsed.as_millis() as i64).unwrap_or_default();
    let trims = context.metadata.read(|state| plan(state, now_ms));
    for batch in trims.chunks(TRIMS_PER_RECORD) {
        context.metadata.submit(JournalRecord::TrimPartitions { trims: batch.to_vec() }).await.map_err(|error| error.to_string())?;
    }
    if !trims.is_empty() {
        tracing::info!(partitions = trims.len(), "retention moved log start offsets");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{ChunkCommit, JournalRecord};
    use std::collections::BTreeMap;
    use uuid::Uuid;

    fn state_with_chunks(configs: BTreeMap<String, String>, timestamps: &[i64]) -> MetadataState {
        let id = Uuid::from_u128(1);
        let mut state = MetadataState::default();
        state.apply(1, &JournalRecord::CreateTopic { name: "t".into(), topic_id: id, partitions: 1, configs });
        for (index, timestamp) in timestamps.iter().enumerate() {
            let chunk = ChunkCommit {
                topic: "t".into(),
                topic_id: id,
                partition: 0,
                record_count: 10,
                byte_start: 0,
                byte_len: 100,
                max_timestamp: *timestamp,
                batches: Vec::new(),
            };
            state.apply(index as u64 + 2, &JournalRecord::CommitSegment { object: format!("o{index}"), chunks: vec![chunk] });
        }
        state
    }

    #[test]
    fn time_retention_drops_whole_chunks_older_than_retention_ms() {
        let configs = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
        let state = state_with_chunks(configs, &[100, 200, 5_000]);
        let trims = plan(&state, 5_500);
        assert_eq!(trims.len(), 1);
        assert_eq!(trims[0].log_start_offset, 20);
    }

    #[test]
    fn size_retention_keeps_at_least_retention_bytes() {
        let configs = BTreeMap::from([("retention.bytes".to_string(), "150".to_string())]);
        let state = state_with_chunks(configs, &[i64::MAX / 2; 4]);
        let trims = plan(&state, 0);
        assert_eq!(trims[0].log_start_offset, 20, "400 bytes trimmed to the 200 that keep >= 150");
    }

    #[test]
    fn retention_leaves_a_compact_only_topic_alone_and_applies_to_compact_delete() {
        let with = |policy: &str| {
            BTreeMap::from([("retention.ms".to_string(), "1000".to_string()), ("cleanup.policy".to_string(), policy.to_string())])
        };
        assert!(plan(&state_with_chunks(with("compact"), &[100, 200, 5_000]), 5_500).is_empty());
        assert_eq!(plan(&state_with_chunks(with("compact,delete"), &[100, 200, 5_000]), 5_500)[0].log_start_offset, 20);
    }
}
