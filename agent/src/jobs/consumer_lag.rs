//! Consumer lag, computed from the metadata replica alone: pure functions, no I/O, no clock (the
//! caller passes the time). `cluster_metrics` turns the result into gauges.
//!
//! Lag in records is Kafka's: the high watermark minus the committed offset, never negative (a
//! group committed past the end of a recreated topic is caught up). Lag in seconds approximates
//! the age of the next record the group has to consume: now minus the newest timestamp of the
//! chunk holding the committed offset (the chunk's records are at most that young), 0 when the
//! group is caught up. A committed offset below the log start (retention moved past it) is
//! measured from the first chunk left.

use crate::metadata::{MetadataState, PartitionState};
use std::collections::BTreeMap;

/// One group's lag on one partition.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionLag {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub records: i64,
    pub seconds: f64,
}

/// One group's lag over all the partitions it committed offsets for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupLag {
    /// Lag in records summed over the partitions.
    pub records: i64,
    /// The largest lag in seconds.
    pub max_seconds: f64,
}

/// The lag of every group, per partition and per group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LagReport {
    /// Empty when there were more than the series limit (`partitions_dropped` says so).
    pub partitions: Vec<PartitionLag>,
    pub groups: BTreeMap<String, GroupLag>,
    pub partitions_dropped: bool,
}

/// The lag of every committed offset in `state` whose partition still exists, at `now_ms` (Unix
/// milliseconds).
///
/// # Guarantees
/// Every group with at least one committed offset on an existing partition is in `groups`; the
/// per-partition entries are kept only when there are at most `max_partition_series` of them.
pub fn compute(state: &MetadataState, now_ms: i64, max_partition_series: usize) -> LagReport {
    let mut report = LagReport::default();
    for (group, topics) in &state.group_offsets {
        for (topic, partitions) in topics {
            for (&partition, committed) in partitions {
                let Some(partition_state) = state.partition(topic, partition) else { continue };
                let (records, seconds) = partition_lag(partition_state, committed.offset, now_ms);
                let totals = report.groups.entry(group.clone()).or_default();
                totals.records += records;
                totals.max_seconds = totals.max_seconds.max(seconds);
                report.partitions.push(PartitionLag { group: group.clone(), topic: topic.clone(), partition, records, seconds });
            }
        }
    }
    if report.partitions.len() > max_partition_series {
        report.partitions = Vec::new();
        report.partitions_dropped = true;
    }
    report
}

/// (lag in records, lag in seconds) of a group committed at `committed` on `partition`.
pub fn partition_lag(partition: &PartitionState, committed: i64, now_ms: i64) -> (i64, f64) {
    let records = (partition.high_watermark - committed.max(0)).max(0);
    if records == 0 {
        return (0, 0.0);
    }
    // The chunk holding the next record to consume, or the first one after it (a committed offset
    // below the log start, or in a gap left by a lost object); a chunk without a timestamp (-1)
    // defers to the next one that has one.
    let first = partition.chunk_index_from(committed.max(0)).unwrap_or(partition.chunks.len());
    let timestamp = partition.chunks[first..].iter().map(|chunk| chunk.max_timestamp).find(|timestamp| *timestamp >= 0);
    let seconds = timestamp.map_or(0.0, |timestamp| (now_ms - timestamp).max(0) as f64 / 1000.0);
    (records, seconds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::state::{ChunkLocation, CommittedOffset, TopicState};

    /// A partition whose chunks hold `chunks` as (record count, max timestamp), from offset
    /// `log_start`.
    fn partition(log_start: i64, chunks: &[(i64, i64)]) -> PartitionState {
        let mut next = log_start;
        let chunks = chunks
            .iter()
            .map(|&(record_count, max_timestamp)| {
                let chunk = ChunkLocation {
                    base_offset: next,
                    record_count,
                    object: "segment".into(),
                    byte_start: 0,
                    byte_len: 1,
                    max_timestamp,
                    relative_base: 0,
                };
                next += record_count;
                chunk
            })
            .collect();
        PartitionState { log_start_offset: log_start, high_watermark: next, chunks, ..PartitionState::default() }
    }

    fn state(topics: &[(&str, Vec<PartitionState>)], offsets: &[(&str, &str, i32, i64)]) -> MetadataState {
        let mut state = MetadataState::default();
        for (name, partitions) in topics {
            state
                .topics
                .insert(name.to_string(), TopicState { id: uuid::Uuid::nil(), configs: BTreeMap::new(), partitions: partitions.clone() });
        }
        for &(group, topic, partition, offset) in offsets {
            state
                .group_offsets
                .entry(group.to_string())
                .or_default()
                .entry(topic.to_string())
                .or_default()
                .insert(partition, CommittedOffset { offset, leader_epoch: -1, metadata: None });
        }
        state
    }

    #[test]
    fn lag_is_the_records_after_the_committed_offset_and_the_age_of_their_chunk() {
        // Offsets 0-9 written at t=1000 ms, 10-19 at t=5000 ms.
        let partition = partition(0, &[(10, 1_000), (10, 5_000)]);
        assert_eq!(partition_lag(&partition, 15, 8_000), (5, 3.0));
        assert_eq!(partition_lag(&partition, 3, 8_000), (17, 7.0));
        assert_eq!(partition_lag(&partition, 10, 8_000), (10, 3.0));
    }

    #[test]
    fn a_caught_up_group_lags_zero_records_and_zero_seconds() {
        let partition = partition(0, &[(10, 1_000)]);
        assert_eq!(partition_lag(&partition, 10, 60_000), (0, 0.0));
        // Committed past the end (a recreated topic): caught up, never negative.
        assert_eq!(partition_lag(&partition, 25, 60_000), (0, 0.0));
    }

    #[test]
    fn a_committed_offset_below_the_log_start_is_measured_from_the_first_chunk_left() {
        let partition = partition(100, &[(10, 4_000), (10, 6_000)]);
        assert_eq!(partition_lag(&partition, 20, 10_000), (100, 6.0));
    }

    #[test]
    fn a_chunk_without_timestamps_defers_to_the_next_one_and_none_means_zero_seconds() {
        assert_eq!(partition_lag(&partition(0, &[(10, -1), (10, 2_000)]), 0, 5_000), (20, 3.0));
        assert_eq!(partition_lag(&partition(0, &[(10, -1)]), 0, 5_000), (10, 0.0));
    }

    #[test]
    fn a_clock_behind_the_record_timestamps_reports_zero_seconds_not_negative() {
        assert_eq!(partition_lag(&partition(0, &[(10, 9_000)]), 0, 5_000), (10, 0.0));
    }

    #[test]
    fn groups_total_their_partitions_and_skip_partitions_that_no_longer_exist() {
        let state = state(
            &[("orders", vec![partition(0, &[(10, 1_000)]), partition(0, &[(4, 3_000)])])],
            &[("billing", "orders", 0, 7), ("billing", "orders", 1, 0), ("billing", "orders", 2, 0), ("billing", "deleted", 0, 5)],
        );
        let report = compute(&state, 10_000, 100);
        assert_eq!(
            report.partitions,
            vec![
                PartitionLag { group: "billing".into(), topic: "orders".into(), partition: 0, records: 3, seconds: 9.0 },
                PartitionLag { group: "billing".into(), topic: "orders".into(), partition: 1, records: 4, seconds: 7.0 },
            ]
        );
        assert_eq!(report.groups, BTreeMap::from([("billing".to_string(), GroupLag { records: 7, max_seconds: 9.0 })]));
        assert!(!report.partitions_dropped);
    }

    #[test]
    fn past_the_series_limit_only_group_totals_are_kept() {
        let state = state(
            &[("orders", vec![partition(0, &[(10, 1_000)]), partition(0, &[(10, 1_000)])])],
            &[("a", "orders", 0, 5), ("a", "orders", 1, 10), ("b", "orders", 0, 0)],
        );
        let report = compute(&state, 2_000, 2);
        assert!(report.partitions.is_empty() && report.partitions_dropped);
        assert_eq!(report.groups["a"], GroupLag { records: 5, max_seconds: 1.0 });
        assert_eq!(report.groups["b"], GroupLag { records: 10, max_seconds: 1.0 });
        assert_eq!(compute(&state, 2_000, 3).partitions.len(), 3);
    }
}
