//! `floe group ...`, and the committed offsets `floe consume --group` starts from.

use super::client::{check, topic_name, Client};
use super::membership::assigned_partitions;
use super::topics::list_offsets;
use super::{print_rows, ClientArgs, GroupCommand, Output, Start};
use anyhow::{bail, Context, Result};
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;

pub fn run(args: &ClientArgs, command: GroupCommand) -> Result<()> {
    let mut client = args.connect()?;
    match command {
        GroupCommand::List => list(&mut client, args.output),
        GroupCommand::Describe { group } => describe(&mut client, args.output, &group),
        GroupCommand::Seek { group, topic, to } => seek(&mut client, args.output, &group, &topic, to),
        GroupCommand::Delete { groups } => delete(&mut client, args.output, &groups),
    }
}

pub(super) fn group_id(group: &str) -> GroupId {
    GroupId(StrBytes::from_string(group.to_string()))
}

/// Every group of every broker (a group may be listed by several agents; it is shown once).
fn list(client: &mut Client, output: Output) -> Result<()> {
    client.metadata(Some(&[][..]))?;
    let mut groups: BTreeMap<String, (String, String)> = BTreeMap::new();
    for broker in client.brokers() {
        let response: ListGroupsResponse = client.call_broker(broker.node_id, ApiKey::ListGroups, 4, &ListGroupsRequest::default())?;
        check(response.error_code, &format!("listing the groups of agent {}", broker.node_id))?;
        for group in response.groups {
            groups.insert(group.group_id.0.to_string(), (group.protocol_type.to_string(), group.group_state.to_string()));
        }
    }
    let rows: Vec<Vec<String>> = groups.into_iter().map(|(group, (protocol, state))| vec![group, state, protocol]).collect();
    print_rows(output, &["GROUP", "STATE", "PROTOCOL TYPE"], &rows);
    Ok(())
}

fn describe(client: &mut Client, output: Output, group: &str) -> Result<()> {
    let coordinator = client.coordinator(group)?;
    let request = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
    let response: DescribeGroupsResponse = client.call_broker(coordinator, ApiKey::DescribeGroups, 5, &request)?;
    let described = response.groups.first().context("DescribeGroups answered for no group")?;
    check(described.error_code, &format!("group {group:?}"))?;
    let committed = all_committed_offsets(client, coordinator, group)?;
    if output == Output::Table {
        println!("GROUP    {group}");
        println!("STATE    {}", described.group_state);
        println!("MEMBERS  {}", described.members.len());
        for member in &described.members {
            println!("  {} (client {}, host {}){}", member.member_id, member.client_id, member.client_host, assigned(described, member));
        }
        println!();
    }
    let mut rows = Vec::new();
    for (topic, partitions) in &committed {
        let leaders = client.partition_leaders(topic)?;
        let ends = list_offsets(client, topic, &leaders, -1)?;
        for (partition, offset) in partitions {
            let end = ends.get(partition).copied().unwrap_or(-1);
            let lag = if *offset >= 0 && end >= 0 { (end - offset).max(0).to_string() } else { "-".to_string() };
            rows.push(vec![topic.clone(), partition.to_string(), offset.to_string(), end.to_string(), lag]);
        }
    }
    print_rows(output, &["TOPIC", "PARTITION", "COMMITTED", "END OFFSET", "LAG"], &rows);
    Ok(())
}

/// What a consumer group member was assigned, as ` assigned TOPIC:P,P ...` (nothing for another
/// protocol type, or a member between JoinGroup and SyncGroup).
fn assigned(group: &DescribedGroup, member: &DescribedGroupMember) -> String {
    if group.protocol_type.as_str() != "consumer" {
        return String::new();
    }
    match assigned_partitions(&member.member_assignment) {
        Ok(topics) if !topics.is_empty() => {
            let topics: Vec<String> = topics
                .iter()
                .map(|(topic, partitions)| format!("{topic}:{}", partitions.iter().map(i32::to_string).collect::<Vec<_>>().join(",")))
                .collect();
            format!(" assigned {}", topics.join(" "))
        }
        Ok(_) => " assigned nothing".to_string(),
        Err(_) => " assignment unreadable".to_string(),
    }
}

/// Every committed offset of `group`, by topic and partition.
fn all_committed_offsets(client: &mut Client, coordinator: i32, group: &str) -> Result<BTreeMap<String, BTreeMap<i32, i64>>> {
    let request = OffsetFetchRequest::default()
        .with_groups(vec![OffsetFetchRequestGroup::default().with_group_id(group_id(group)).with_topics(None)]);
    let response: OffsetFetchResponse = client.call_broker(coordinator, ApiKey::OffsetFetch, 8, &request)?;
    let answered = response.groups.first().context("OffsetFetch answered for no group")?;
    check(answered.error_code, &format!("the committed offsets of group {group:?}"))?;
    let mut offsets: BTreeMap<String, BTreeMap<i32, i64>> = BTreeMap::new();
    for topic in &answered.topics {
        for partition in &topic.partitions {
            check(partition.error_code, &format!("the committed offset of {}/{}", topic.name.0, partition.partition_index))?;
            offsets.entry(topic.name.0.to_string()).or_default().insert(partition.partition_index, partition.committed_offset);
        }
    }
    Ok(offsets)
}

/// The group's committed offsets of `partitions` of `topic` (partitions without one are left out).
pub fn committed_offsets(client: &mut Client, group: &str, topic: &str, partitions: &[i32]) -> Result<BTreeMap<i32, i64>> {
    let coordinator = client.coordinator(group)?;
    let all = all_committed_offsets(client, coordinator, group)?;
    Ok(all
        .get(topic)
        .map(|offsets| {
            offsets
                .iter()
                .filter(|(partition, offset)| partitions.contains(*partition) && **offset >= 0)
                .map(|(partition, offset)| (*partition, *offset))
                .collect()
        })
        .unwrap_or_default())
}

/// An OffsetCommit of `offsets` of `topic` for `group`, as member `member_id` of generation
/// `generation` (-1 and "" from outside the group protocol).
pub(super) fn offset_commit_request(
    group: &str,
    generation: i32,
    member_id: &str,
    topic: &str,
    offsets: &BTreeMap<i32, i64>,
) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(StrBytes::from_string(member_id.to_string()))
        .with_topics(vec![OffsetCommitRequestTopic::default().with_name(topic_name(topic)).with_partitions(
            offsets
                .iter()
                .map(|(partition, offset)| {
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(*partition)
                        .with_committed_offset(*offset)
                        .with_committed_leader_epoch(-1)
                })
                .collect(),
        )])
}

/// Commits `offsets` of `topic` for `group` from outside the group protocol (as an admin tool
/// does, for `floe group seek`): accepted while the group has no active members.
fn commit_offsets(client: &mut Client, group: &str, topic: &str, offsets: &BTreeMap<i32, i64>) -> Result<()> {
    let coordinator = client.coordinator(group)?;
    let request = offset_commit_request(group, -1, "", topic, offsets);
    let response: OffsetCommitResponse = client.call_broker(coordinator, ApiKey::OffsetCommit, 8, &request)?;
    for partition in response.topics.iter().flat_map(|topic| &topic.partitions) {
        if partition.error_code == kafka_protocol::error::ResponseError::UnknownMemberId.code() {
            bail!("group {group:?} has active members: its offsets can be committed or moved only while it is empty (stop its consumers first)");
        }
        check(partition.error_code, &format!("committing {topic}/{} for group {group:?}", partition.partition_index))?;
    }
    Ok(())
}

fn seek(client: &mut Client, output: Output, group: &str, topic: &str, to: Start) -> Result<()> {
    let leaders = client.partition_leaders(topic)?;
    let offsets = match to {
        Start::Offset(offset) => leaders.iter().map(|(partition, _)| (*partition, offset)).collect(),
        Start::Beginning => list_offsets(client, topic, &leaders, -2)?,
        Start::End => list_offsets(client, topic, &leaders, -1)?,
        Start::Timestamp(time) => {
            let ends = list_offsets(client, topic, &leaders, -1)?;
            list_offsets(client, topic, &leaders, time)?
                .into_iter()
                .map(|(partition, offset)| (partition, if offset < 0 { ends.get(&partition).copied().unwrap_or(0) } else { offset }))
                .collect()
        }
    };
    commit_offsets(client, group, topic, &offsets)?;
    let rows: Vec<Vec<String>> =
        offsets.iter().map(|(partition, offset)| vec![topic.to_string(), partition.to_string(), offset.to_string()]).collect();
    print_rows(output, &["TOPIC", "PARTITION", "COMMITTED"], &rows);
    Ok(())
}

fn delete(client: &mut Client, output: Output, groups: &[String]) -> Result<()> {
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for group in groups {
        let coordinator = client.coordinator(group)?;
        let request = DeleteGroupsRequest::default().with_groups_names(vec![group_id(group)]);
        let response: DeleteGroupsResponse = client.call_broker(coordinator, ApiKey::DeleteGroups, 2, &request)?;
        for result in response.results {
            match check(result.error_code, &format!("deleting group {:?}", result.group_id.0.to_string())) {
                Ok(()) => rows.push(vec![result.group_id.0.to_string(), "deleted".to_string()]),
                Err(error) => failures.push(error.to_string()),
            }
        }
    }
    print_rows(output, &["GROUP", "STATUS"], &rows);
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    Ok(())
}
