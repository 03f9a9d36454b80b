//! The KIP-848 consumer group protocol in the in-process tier (see `handlers.rs` for the tier):
//! ConsumerGroupHeartbeat, ConsumerGroupDescribe, ListGroups by type and offset commits checked
//! against the member epoch. The Java consumer's view is `e2e/tests/ecosystem.rs`.

mod common;

use common::{error, topic, InProcess};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn group() -> GroupId {
    GroupId(StrBytes::from_static_str("orders-readers"))
}

async fn heartbeat(agent: &InProcess, request: ConsumerGroupHeartbeatRequest) -> ConsumerGroupHeartbeatResponse {
    let ResponseKind::ConsumerGroupHeartbeat(response) =
        agent.call(ApiKey::ConsumerGroupHeartbeat, 1, RequestKind::ConsumerGroupHeartbeat(request)).await
    else {
        panic!("not a ConsumerGroupHeartbeat response")
    };
    response
}

fn join(member: &str) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(group())
        .with_member_id(StrBytes::from_string(member.to_string()))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(30_000)
        .with_subscribed_topic_names(Some(vec![topic("orders")]))
        .with_topic_partitions(Some(vec![]))
}

fn owned(response: &ConsumerGroupHeartbeatResponse) -> Vec<i32> {
    response
        .assignment
        .as_ref()
        .map(|assignment| assignment.topic_partitions.iter().flat_map(|topic| topic.partitions.clone()).collect())
        .unwrap_or_default()
}

async fn commit(agent: &InProcess, member: &str, epoch: i32) -> i16 {
    let request = OffsetCommitRequest::default()
        .with_group_id(group())
        .with_member_id(StrBytes::from_string(member.to_string()))
        .with_generation_id_or_member_epoch(epoch)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic("orders"))
            .with_partitions(vec![OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(5)])]);
    let ResponseKind::OffsetCommit(response) = agent.call(ApiKey::OffsetCommit, 9, RequestKind::OffsetCommit(request)).await else {
        panic!("not an OffsetCommit response")
    };
    response.topics[0].partitions[0].error_code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_share_partitions_incrementally_commit_with_their_epoch_and_are_described() {
    let agent = InProcess::start().await;
    agent.create_topic("orders", 4).await;
    let first = heartbeat(&agent, join("member-a")).await;
    assert_eq!(error(first.error_code), None, "{:?}", first.error_message);
    assert_eq!(owned(&first), [0, 1, 2, 3], "a lone member gets every partition");
    assert!(first.member_epoch > 0);
    assert_eq!(commit(&agent, "member-a", first.member_epoch).await, 0);

    let second = heartbeat(&agent, join("member-b")).await;
    assert!(owned(&second).is_empty(), "b waits until a released what it gets");
    // a learns it must give two up; it reports owning only the rest and moves to the new epoch.
    let owning = |partitions: &[i32]| {
        let topic_id = agent.topic_id("orders");
        Some(vec![TopicPartitions::default().with_topic_id(topic_id).with_partitions(partitions.to_vec())])
    };
    let revoke = heartbeat(
        &agent,
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(group())
            .with_member_id(StrBytes::from_static_str("member-a"))
            .with_member_epoch(first.member_epoch)
            .with_topic_partitions(owning(&[0, 1, 2, 3])),
    )
    .await;
    let kept = owned(&revoke);
    assert_eq!(kept.len(), 2);
    let released = heartbeat(
        &agent,
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(group())
            .with_member_id(StrBytes::from_static_str("member-a"))
            .with_member_epoch(revoke.member_epoch)
            .with_topic_partitions(owning(&kept)),
    )
    .await;
    assert!(released.member_epoch > first.member_epoch);
    assert_eq!(error(commit(&agent, "member-a", first.member_epoch).await), Some(ResponseError::StaleMemberEpoch));
    let granted = heartbeat(
        &agent,
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(group())
            .with_member_id(StrBytes::from_static_str("member-b"))
            .with_member_epoch(second.member_epoch)
            .with_topic_partitions(owning(&[])),
    )
    .await;
    let mut all = owned(&granted);
    all.extend(kept);
    all.sort();
    assert_eq!(all, [0, 1, 2, 3], "the two members own every partition once");

    let ResponseKind::ConsumerGroupDescribe(described) = agent
        .call(
            ApiKey::ConsumerGroupDescribe,
            1,
            RequestKind::ConsumerGroupDescribe(ConsumerGroupDescribeRequest::default().with_group_ids(vec![group()])),
        )
        .await
    else {
        panic!("not a ConsumerGroupDescribe response")
    };
    let described = &described.groups[0];
    assert_eq!((described.error_code, described.members.len(), described.assignor_name.as_str()), (0, 2, "uniform"));
    let ResponseKind::ListGroups(listed) = agent
        .call(
            ApiKey::ListGroups,
            5,
            RequestKind::ListGroups(ListGroupsRequest::default().with_types_filter(vec![StrBytes::from_static_str("consumer")])),
        )
        .await
    else {
        panic!("not a ListGroups response")
    };
    assert_eq!(listed.groups.len(), 1);
    assert_eq!(listed.groups[0].group_type.as_str(), "consumer");

    // A regex subscription is refused with a message that says so.
    let regex = heartbeat(&agent, join("member-c").with_subscribed_topic_regex(Some(StrBytes::from_static_str("ord.*")))).await;
    assert_eq!(error(regex.error_code), Some(ResponseError::InvalidRequest));
    assert!(regex.error_message.unwrap().contains("regular-expression"));
    // Leaving hands the partitions back.
    let left = heartbeat(
        &agent,
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(group())
            .with_member_id(StrBytes::from_static_str("member-b"))
            .with_member_epoch(-1),
    )
    .await;
    assert_eq!(left.member_epoch, -1);
}
