//! `/topics` and `/topics/{name}`: what the metadata replica holds for each topic and partition
//! (offsets, the chunks that locate its records and the objects holding them). Pure: built from a
//! [`MetadataState`] the caller holds a read lock on.

use super::html::{self, Cell};
use crate::metadata::{MetadataState, PartitionState};
use std::collections::BTreeSet;

/// One partition's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartitionSummary {
    pub partition: i32,
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub chunks: usize,
    pub objects: usize,
    pub bytes: u64,
}

/// One topic's figures, totalled over its partitions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopicSummary {
    pub name: String,
    pub partitions: Vec<PartitionSummary>,
    /// Records between log start and high watermark, over all partitions.
    pub records: i64,
    pub bytes: u64,
    /// Distinct objects holding the topic's chunks (partitions share objects).
    pub objects: usize,
}

fn partition_summary(partition: i32, state: &PartitionState) -> PartitionSummary {
    let objects: BTreeSet<&str> = state.chunks.iter().map(|chunk| &*chunk.object).collect();
    PartitionSummary {
        partition,
        log_start_offset: state.log_start_offset,
        high_watermark: state.high_watermark,
        chunks: state.chunks.len(),
        objects: objects.len(),
        bytes: state.chunks.iter().map(|chunk| chunk.byte_len).sum(),
    }
}

/// The summary of topic `name`, or `None` if it does not exist.
pub fn topic(state: &MetadataState, name: &str) -> Option<TopicSummary> {
    let topic = state.topics.get(name)?;
    let objects: BTreeSet<&str> = topic.partitions.iter().flat_map(|partition| &partition.chunks).map(|chunk| &*chunk.object).collect();
    let partitions: Vec<PartitionSummary> =
        topic.partitions.iter().enumerate().map(|(index, partition)| partition_summary(index as i32, partition)).collect();
    Some(TopicSummary {
        name: name.to_string(),
        records: partitions.iter().map(|partition| (partition.high_watermark - partition.log_start_offset).max(0)).sum(),
        bytes: partitions.iter().map(|partition| partition.bytes).sum(),
        objects: objects.len(),
        partitions,
    })
}

/// Every topic, by name.
pub fn topics(state: &MetadataState) -> Vec<TopicSummary> {
    state.topics.keys().filter_map(|name| topic(state, name)).collect()
}

pub fn topic_link(name: &str) -> String {
    format!("/topics/{}", html::path_segment(name))
}

pub fn render_list(topics: &[TopicSummary]) -> String {
    let rows: Vec<Vec<Cell>> = topics
        .iter()
        .map(|topic| {
            vec![
                Cell::link(&topic_link(&topic.name), &topic.name),
                Cell::number(topic.partitions.len()),
                Cell::number(topic.records),
                Cell::number(html::bytes(topic.bytes as f64)),
                Cell::number(topic.objects),
            ]
        })
        .collect();
    html::page("Topics", "/topics", &html::table(&["Topic", "Partitions", "Records", "Bytes", "Objects"], &rows, "no topics yet"))
}

pub fn render_topic(topic: &TopicSummary) -> String {
    let mut body = html::cards(&[
        ("partitions", topic.partitions.len().to_string()),
        ("records", topic.records.to_string()),
        ("bytes", html::bytes(topic.bytes as f64)),
        ("objects", topic.objects.to_string()),
    ]);
    body.push_str("<h2>Partitions</h2>");
    let rows: Vec<Vec<Cell>> = topic
        .partitions
        .iter()
        .map(|partition| {
            vec![
                Cell::number(partition.partition),
                Cell::number(partition.log_start_offset),
                Cell::number(partition.high_watermark),
                Cell::number(partition.chunks),
                Cell::number(partition.objects),
                Cell::number(html::bytes(partition.bytes as f64)),
            ]
        })
        .collect();
    body.push_str(&html::table(&["Partition", "Log start", "High watermark", "Chunks", "Objects", "Bytes"], &rows, "no partitions"));
    html::page(&format!("Topic {}", topic.name), "/topics", &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::state::{ChunkLocation, TopicState};

    fn chunk(base_offset: i64, record_count: i64, object: &str, byte_len: u64) -> ChunkLocation {
        ChunkLocation { base_offset, record_count, object: object.into(), byte_start: 0, byte_len, max_timestamp: 0, relative_base: 0 }
    }

    fn state() -> MetadataState {
        let mut state = MetadataState::default();
        let partitions = vec![
            PartitionState {
                log_start_offset: 0,
                high_watermark: 15,
                chunks: vec![chunk(0, 10, "a", 100), chunk(10, 5, "b", 50)],
                ..Default::default()
            },
            PartitionState { log_start_offset: 4, high_watermark: 6, chunks: vec![chunk(4, 2, "a", 20)], ..Default::default() },
        ];
        state.topics.insert("<orders>".into(), TopicState { id: Default::default(), configs: Default::default(), partitions });
        state
    }

    #[test]
    fn a_topic_totals_records_bytes_and_distinct_objects_over_its_partitions() {
        let summary = topic(&state(), "<orders>").expect("exists");
        assert_eq!((summary.records, summary.bytes, summary.objects), (17, 170, 2));
        assert_eq!(
            summary.partitions[1],
            PartitionSummary { partition: 1, log_start_offset: 4, high_watermark: 6, chunks: 1, objects: 1, bytes: 20 }
        );
        assert_eq!(topic(&state(), "missing"), None);
    }

    #[test]
    fn topic_pages_escape_the_topic_name() {
        let list = render_list(&topics(&state()));
        assert!(list.contains("<a href=\"/topics/%3Corders%3E\">&lt;orders&gt;</a>"), "{list}");
        let page = render_topic(&topic(&state(), "<orders>").expect("exists"));
        assert!(page.contains("<h1>Topic &lt;orders&gt;</h1>") && !page.contains("<orders>"));
    }
}
