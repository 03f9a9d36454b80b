//! `/groups` and `/groups/{name}`: consumer groups as the metadata replica knows them (their
//! membership as of the last rebalance and their committed offsets) with their lag. Pure: built
//! from a [`MetadataState`] the caller holds a read lock on and the time it passes.
//!
//! Lag is the one `floe_consumer_lag_*` reports ([`partition_lag`]): records between the
//! committed offset and the high watermark, and seconds since the newest record of the chunk
//! holding the committed offset.

use super::html::{self, Cell};
use crate::jobs::consumer_lag::partition_lag;
use crate::metadata::MetadataState;
use std::collections::BTreeSet;

/// A group's lag on one partition.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionOffsets {
    pub topic: String,
    pub partition: i32,
    pub committed: i64,
    /// The high watermark.
    pub end_offset: i64,
    pub lag_records: i64,
    pub lag_seconds: f64,
}

/// A member as of the group's last rebalance.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberRow {
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupSummary {
    pub name: String,
    /// `Stable` with members, `Empty` without (offsets committed from outside the group protocol,
    /// or every member gone).
    pub state: &'static str,
    pub members: Vec<MemberRow>,
    /// Committed offsets on partitions that still exist, by topic and partition.
    pub offsets: Vec<PartitionOffsets>,
}

impl GroupSummary {
    pub fn lag_records(&self) -> i64 {
        self.offsets.iter().map(|offsets| offsets.lag_records).sum()
    }

    pub fn max_lag_seconds(&self) -> f64 {
        self.offsets.iter().map(|offsets| offsets.lag_seconds).fold(0.0, f64::max)
    }
}

/// Group `name` at `now_ms` (Unix milliseconds), or `None` if the replica knows nothing of it.
pub fn group(state: &MetadataState, name: &str, now_ms: i64) -> Option<GroupSummary> {
    let membership = state.group_memberships.get(name);
    let committed = state.group_offsets.get(name);
    if membership.is_none() && committed.is_none() {
        return None;
    }
    let members: Vec<MemberRow> = membership
        .map(|stored| {
            stored
                .members
                .iter()
                .map(|member| MemberRow {
                    member_id: member.member_id.clone(),
                    client_id: member.client_id.clone(),
                    client_host: member.client_host.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    let mut offsets = Vec::new();
    for (topic, partitions) in committed.into_iter().flatten() {
        for (&partition, committed) in partitions {
            let Some(partition_state) = state.partition(topic, partition) else { continue };
            let (lag_records, lag_seconds) = partition_lag(partition_state, committed.offset, now_ms);
            offsets.push(PartitionOffsets {
                topic: topic.clone(),
                partition,
                committed: committed.offset,
                end_offset: partition_state.high_watermark,
                lag_records,
                lag_seconds,
            });
        }
    }
    Some(GroupSummary { name: name.to_string(), state: if members.is_empty() { "Empty" } else { "Stable" }, members, offsets })
}

/// Every group with a membership or a committed offset, by name.
pub fn groups(state: &MetadataState, now_ms: i64) -> Vec<GroupSummary> {
    let names: BTreeSet<&String> = state.group_memberships.keys().chain(state.group_offsets.keys()).collect();
    names.into_iter().filter_map(|name| group(state, name, now_ms)).collect()
}

pub fn group_link(name: &str) -> String {
    format!("/groups/{}", html::path_segment(name))
}

pub fn render_list(groups: &[GroupSummary]) -> String {
    let rows: Vec<Vec<Cell>> = groups
        .iter()
        .map(|group| {
            vec![
                Cell::link(&group_link(&group.name), &group.name),
                Cell::text(group.state),
                Cell::number(group.members.len()),
                Cell::number(group.offsets.len()),
                Cell::number(group.lag_records()),
                Cell::number(html::seconds(group.max_lag_seconds())),
            ]
        })
        .collect();
    let table = html::table(&["Group", "State", "Members", "Partitions", "Lag (records)", "Max lag"], &rows, "no consumer groups yet");
    html::page("Consumer groups", "/groups", &table)
}

pub fn render_group(group: &GroupSummary) -> String {
    let mut body = html::cards(&[
        ("state", group.state.to_string()),
        ("members", group.members.len().to_string()),
        ("lag (records)", group.lag_records().to_string()),
        ("max lag", html::seconds(group.max_lag_seconds())),
    ]);
    body.push_str("<h2>Offsets</h2>");
    let rows: Vec<Vec<Cell>> = group
        .offsets
        .iter()
        .map(|offsets| {
            vec![
                Cell::link(&super::topics::topic_link(&offsets.topic), &offsets.topic),
                Cell::number(offsets.partition),
                Cell::number(offsets.committed),
                Cell::number(offsets.end_offset),
                Cell::number(offsets.lag_records),
                Cell::number(html::seconds(offsets.lag_seconds)),
            ]
        })
        .collect();
    body.push_str(&html::table(
        &["Topic", "Partition", "Committed offset", "End offset", "Lag (records)", "Lag (time)"],
        &rows,
        "no committed offsets",
    ));
    body.push_str("<h2>Members</h2>");
    let members: Vec<Vec<Cell>> = group
        .members
        .iter()
        .map(|member| vec![Cell::text(&member.member_id), Cell::text(&member.client_id), Cell::text(&member.client_host)])
        .collect();
    body.push_str(&html::table(&["Member", "Client id", "Host"], &members, "no members"));
    html::page(&format!("Group {}", group.name), "/groups", &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::state::{ChunkLocation, CommittedOffset, PartitionState, TopicState};

    /// Topic `events`, one partition of offsets 0..30 in three chunks whose newest records were
    /// written at 1, 2 and 3 seconds; group `<slow>` committed 12, group `fast` 30.
    fn state() -> MetadataState {
        let chunk = |base_offset: i64, max_timestamp: i64| ChunkLocation {
            base_offset,
            record_count: 10,
            object: "o".into(),
            byte_start: 0,
            byte_len: 1,
            max_timestamp,
            relative_base: 0,
        };
        let mut state = MetadataState::default();
        let partition = PartitionState {
            log_start_offset: 0,
            high_watermark: 30,
            chunks: vec![chunk(0, 1_000), chunk(10, 2_000), chunk(20, 3_000)],
            ..Default::default()
        };
        state
            .topics
            .insert("events".into(), TopicState { id: Default::default(), configs: Default::default(), partitions: vec![partition] });
        for (group, offset) in [("<slow>", 12), ("fast", 30)] {
            let committed = CommittedOffset { offset, leader_epoch: -1, metadata: None };
            state.group_offsets.entry(group.into()).or_default().entry("events".into()).or_default().insert(0, committed);
        }
        // An offset on a partition that no longer exists is left out.
        let gone = CommittedOffset { offset: 5, leader_epoch: -1, metadata: None };
        state.group_offsets.entry("fast".into()).or_default().entry("deleted".into()).or_default().insert(0, gone);
        state
    }

    #[test]
    fn lag_counts_records_to_the_end_and_seconds_since_the_chunk_holding_the_commit() {
        let slow = group(&state(), "<slow>", 10_000).expect("known");
        assert_eq!(
            slow.offsets,
            vec![PartitionOffsets {
                topic: "events".into(),
                partition: 0,
                committed: 12,
                end_offset: 30,
                lag_records: 18,
                lag_seconds: 8.0
            }]
        );
        let fast = group(&state(), "fast", 10_000).expect("known");
        assert_eq!((fast.lag_records(), fast.max_lag_seconds(), fast.offsets.len()), (0, 0.0, 1));
        assert_eq!(fast.state, "Empty");
        assert_eq!(group(&state(), "unknown", 10_000), None);
    }

    #[test]
    fn group_pages_escape_the_group_name_and_show_its_lag() {
        let all = groups(&state(), 10_000);
        assert_eq!(all.iter().map(|group| group.name.as_str()).collect::<Vec<_>>(), vec!["<slow>", "fast"]);
        let list = render_list(&all);
        assert!(list.contains("<a href=\"/groups/%3Cslow%3E\">&lt;slow&gt;</a>"), "{list}");
        assert!(!list.contains("<slow>"));
        let page = render_group(&all[0]);
        assert!(page.contains("<h1>Group &lt;slow&gt;</h1>") && page.contains("<td class=\"number\">18</td>"), "{page}");
        assert!(page.contains("8.0 s"));
    }
}
