//! A consumer group member for the blocking CLI client, on Kafka's classic group protocol
//! (FindCoordinator, JoinGroup, SyncGroup, Heartbeat, OffsetCommit, LeaveGroup): what lets two
//! `floe consume --group g` processes, `floe demo`'s consumers, kcat and the Java consumer share a
//! group's partitions. It joins with protocol type `consumer` and the `range` assignor, in the
//! standard subscription and assignment encodings, so any Kafka consumer may be the group's leader
//! and any may follow it.
//!
//! The client is blocking and single-threaded, so there is no heartbeat thread: the caller's
//! fetch loop calls [`Membership::heartbeat_if_due`] between fetches (a fetch waits at most half a
//! second, far less than the session). When it answers [`Status::Rebalancing`], the caller
//! commits what it has read ([`Membership::commit`]), then [`Membership::rejoin`]s and reads the
//! partitions it is given from their committed offsets. That order is what lets a partition move
//! between members with no record skipped or read twice: the group cannot finish its rebalance
//! before every member has rejoined, and every member commits before it rejoins.

use super::client::{check, topic_name, Client};
use super::groups::{group_id, offset_commit_request};
use anyhow::{bail, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const PROTOCOL_TYPE: &str = "consumer";
/// Kafka's range assignor, which every Kafka consumer (librdkafka, Java, franz-go) offers too.
const ASSIGNOR: &str = "range";
/// How long the coordinator keeps a member that stopped heartbeating. Heartbeats come from the
/// fetch loop, which stalls while standard output does (a slow reader at the end of a pipe), so
/// this is not short; a killed process's partitions wait this long (Kafka's clients wait 45 s).
const SESSION_TIMEOUT: Duration = Duration::from_secs(30);
/// The Java consumer's default pace.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);
/// How long the group waits for this member to rejoin once a rebalance starts: it rejoins at its
/// next heartbeat, after at most one round of fetches.
const REBALANCE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a JoinGroup or SyncGroup may wait at the coordinator: until every member rejoined, so
/// as long as the slowest member's rebalance timeout (librdkafka's and Java's default is 5
/// minutes).
const JOIN_WAIT: Duration = Duration::from_secs(305);
/// A join that keeps being bounced (rebalance after rebalance) gives up after this many tries.
const JOIN_ATTEMPTS: usize = 20;
/// The consumer protocol versions written: the first of each, which every consumer reads.
const SUBSCRIPTION_VERSION: i16 = 0;
const ASSIGNMENT_VERSION: i16 = 0;

/// What the group said about this member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Still a member of the current generation: keep reading the assigned partitions.
    Member,
    /// The group is rebalancing (a member came or went) or has fenced this member: commit what was
    /// read, then [`Membership::rejoin`].
    Rebalancing,
}

/// This process's membership of one group, subscribed to one topic.
pub struct Membership {
    group: String,
    topic: String,
    /// The coordinator's node id in the client (see [`Client::coordinator`]).
    coordinator: i32,
    /// Empty until the coordinator names one (MEMBER_ID_REQUIRED on the first join).
    member_id: String,
    generation_id: i32,
    /// The partitions of `topic` the current generation gave this member, sorted.
    partitions: Vec<i32>,
    next_heartbeat: Instant,
}

impl Membership {
    /// Joins `group` as a consumer of `topic` and waits for its first assignment.
    pub fn join(client: &mut Client, group: &str, topic: &str) -> Result<Self> {
        let coordinator = client.coordinator(group)?;
        let mut membership = Self {
            group: group.to_string(),
            topic: topic.to_string(),
            coordinator,
            member_id: String::new(),
            generation_id: -1,
            partitions: Vec::new(),
            next_heartbeat: Instant::now(),
        };
        membership.rejoin(client)?;
        Ok(membership)
    }

    /// The partitions of the topic this member reads in the current generation.
    pub fn partitions(&self) -> &[i32] {
        &self.partitions
    }

    /// JoinGroup then SyncGroup, again until both succeed in one generation: a join can be
    /// bounced by another member's arrival, or be the first (MEMBER_ID_REQUIRED names the id to
    /// join with, KIP-394).
    pub fn rejoin(&mut self, client: &mut Client) -> Result<()> {
        for _ in 0..JOIN_ATTEMPTS {
            let joined = self.join_group(client)?;
            match ResponseError::try_from_code(joined.error_code) {
                _ if joined.error_code == 0 => {}
                Some(ResponseError::MemberIdRequired) => {
                    self.member_id = joined.member_id.to_string();
                    continue;
                }
                Some(ResponseError::UnknownMemberId) => {
                    // Expelled (the session ran out): join as a new member.
                    self.member_id.clear();
                    continue;
                }
                Some(ResponseError::RebalanceInProgress) => continue,
                Some(ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable | ResponseError::CoordinatorLoadInProgress) => {
                    self.find_coordinator_again(client)?;
                    continue;
                }
                _ => check(joined.error_code, &format!("joining group {:?}", self.group))?,
            }
            self.member_id = joined.member_id.to_string();
            self.generation_id = joined.generation_id;
            // The leader assigns every member's partitions; the others send none.
            let assignments = if joined.leader == joined.member_id { assign(client, &joined.members)? } else { Vec::new() };
            let synced = self.sync_group(client, joined.protocol_name.unwrap_or_default(), assignments)?;
            match ResponseError::try_from_code(synced.error_code) {
                _ if synced.error_code == 0 => {}
                Some(ResponseError::RebalanceInProgress | ResponseError::IllegalGeneration) => continue,
                Some(ResponseError::UnknownMemberId) => {
                    self.member_id.clear();
                    continue;
                }
                _ => check(synced.error_code, &format!("syncing group {:?}", self.group))?,
            }
            self.partitions = partitions_of(&synced.assignment, &self.topic)
                .with_context(|| format!("the leader of group {:?} sent an assignment that does not decode", self.group))?;
            self.next_heartbeat = Instant::now() + HEARTBEAT_INTERVAL;
            return Ok(());
        }
        bail!("unable to join group {:?}: it kept rebalancing through {JOIN_ATTEMPTS} attempts", self.group)
    }

    /// A Heartbeat, when one is due (every [`HEARTBEAT_INTERVAL`]); [`Status::Member`] otherwise.
    pub fn heartbeat_if_due(&mut self, client: &mut Client) -> Result<Status> {
        if Instant::now() < self.next_heartbeat {
            return Ok(Status::Member);
        }
        let request = HeartbeatRequest::default()
            .with_group_id(group_id(&self.group))
            .with_generation_id(self.generation_id)
            .with_member_id(StrBytes::from_string(self.member_id.clone()));
        let response: HeartbeatResponse = client.call_broker(self.coordinator, ApiKey::Heartbeat, 4, &request)?;
        self.next_heartbeat = Instant::now() + HEARTBEAT_INTERVAL;
        match ResponseError::try_from_code(response.error_code) {
            _ if response.error_code == 0 => Ok(Status::Member),
            Some(ResponseError::RebalanceInProgress | ResponseError::IllegalGeneration | ResponseError::UnknownMemberId) => {
                Ok(Status::Rebalancing)
            }
            Some(ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable) => {
                // The group moved to another agent (it keeps its members): heartbeat there next.
                self.find_coordinator_again(client)?;
                self.next_heartbeat = Instant::now();
                Ok(Status::Member)
            }
            _ => {
                check(response.error_code, &format!("heartbeat to group {:?}", self.group))?;
                Ok(Status::Member)
            }
        }
    }

    /// Commits `offsets` (the next offset to read, per partition of the topic) as this member of
    /// the current generation. [`Status::Rebalancing`] when the group refused them because this
    /// member is no longer in its generation: the partitions' next owner then starts at the
    /// previous commit (and reads those records again, as with any Kafka consumer).
    pub fn commit(&mut self, client: &mut Client, offsets: &BTreeMap<i32, i64>) -> Result<Status> {
        if offsets.is_empty() || self.member_id.is_empty() {
            return Ok(Status::Member);
        }
        let request = offset_commit_request(&self.group, self.generation_id, &self.member_id, &self.topic, offsets);
        let response: OffsetCommitResponse = client.call_broker(self.coordinator, ApiKey::OffsetCommit, 8, &request)?;
        let mut status = Status::Member;
        for partition in response.topics.iter().flat_map(|topic| &topic.partitions) {
            match ResponseError::try_from_code(partition.error_code) {
                Some(ResponseError::RebalanceInProgress | ResponseError::IllegalGeneration | ResponseError::UnknownMemberId) => {
                    status = Status::Rebalancing
                }
                _ => check(
                    partition.error_code,
                    &format!("committing {}/{} for group {:?}", self.topic, partition.partition_index, self.group),
                )?,
            }
        }
        Ok(status)
    }

    /// LeaveGroup, so the group rebalances now rather than when the session runs out. A member
    /// the group already forgot has nothing to leave.
    pub fn leave(&mut self, client: &mut Client) -> Result<()> {
        if self.member_id.is_empty() {
            return Ok(());
        }
        let request = LeaveGroupRequest::default()
            .with_group_id(group_id(&self.group))
            .with_members(vec![MemberIdentity::default().with_member_id(StrBytes::from_string(std::mem::take(&mut self.member_id)))]);
        let response: LeaveGroupResponse = client.call_broker(self.coordinator, ApiKey::LeaveGroup, 4, &request)?;
        check(response.error_code, &format!("leaving group {:?}", self.group))?;
        for member in &response.members {
            if member.error_code != ResponseError::UnknownMemberId.code() {
                check(member.error_code, &format!("leaving group {:?}", self.group))?;
            }
        }
        self.partitions.clear();
        Ok(())
    }

    fn join_group(&mut self, client: &mut Client) -> Result<JoinGroupResponse> {
        let subscription = ConsumerProtocolSubscription::default().with_topics(vec![StrBytes::from_string(self.topic.clone())]);
        let request = JoinGroupRequest::default()
            .with_group_id(group_id(&self.group))
            .with_session_timeout_ms(SESSION_TIMEOUT.as_millis() as i32)
            .with_rebalance_timeout_ms(REBALANCE_TIMEOUT.as_millis() as i32)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_protocol_type(StrBytes::from_static_str(PROTOCOL_TYPE))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str(ASSIGNOR))
                .with_metadata(versioned(SUBSCRIPTION_VERSION, &subscription)?)]);
        client.call_broker_waiting(self.coordinator, ApiKey::JoinGroup, 7, &request, JOIN_WAIT)
    }

    fn sync_group(
        &mut self,
        client: &mut Client,
        protocol_name: StrBytes,
        assignments: Vec<SyncGroupRequestAssignment>,
    ) -> Result<SyncGroupResponse> {
        let request = SyncGroupRequest::default()
            .with_group_id(group_id(&self.group))
            .with_generation_id(self.generation_id)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_protocol_type(Some(StrBytes::from_static_str(PROTOCOL_TYPE)))
            .with_protocol_name(Some(protocol_name))
            .with_assignments(assignments);
        client.call_broker_waiting(self.coordinator, ApiKey::SyncGroup, 5, &request, JOIN_WAIT)
    }

    fn find_coordinator_again(&mut self, client: &mut Client) -> Result<()> {
        // The agent may be starting or handing the group over: give it a moment.
        std::thread::sleep(Duration::from_millis(500));
        self.coordinator = client.coordinator(&self.group)?;
        Ok(())
    }
}

/// The leader's work: every member's partitions by the range assignor, from the subscriptions
/// the members joined with and the topics' partition counts.
fn assign(client: &mut Client, members: &[JoinGroupResponseMember]) -> Result<Vec<SyncGroupRequestAssignment>> {
    let mut subscriptions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for member in members {
        // A member whose subscription does not decode subscribes to nothing (and gets nothing).
        let topics = subscribed_topics(&member.metadata).unwrap_or_default();
        subscriptions.insert(member.member_id.to_string(), topics);
    }
    let mut topics: Vec<String> = subscriptions.values().flatten().cloned().collect();
    topics.sort();
    topics.dedup();
    let metadata = client.metadata(Some(&topics))?;
    let partition_counts: BTreeMap<String, i32> = metadata
        .topics
        .iter()
        .filter(|topic| topic.error_code == 0)
        .filter_map(|topic| Some((topic.name.as_ref()?.0.to_string(), topic.partitions.len() as i32)))
        .collect();
    range_assign(&subscriptions, &partition_counts)
        .into_iter()
        .map(|(member_id, topics)| {
            let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
                topics
                    .into_iter()
                    .map(|(topic, partitions)| TopicPartition::default().with_topic(topic_name(&topic)).with_partitions(partitions))
                    .collect(),
            );
            Ok(SyncGroupRequestAssignment::default()
                .with_member_id(StrBytes::from_string(member_id))
                .with_assignment(versioned(ASSIGNMENT_VERSION, &assignment)?))
        })
        .collect()
}

/// Kafka's range assignor (`RangeAssignor`): per topic, its subscribers in member id order each
/// take a contiguous range of partitions; the first `partitions % members` take one more. Every
/// member of `subscriptions` gets an entry, empty when it is given nothing.
pub fn range_assign(
    subscriptions: &BTreeMap<String, Vec<String>>,
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, BTreeMap<String, Vec<i32>>> {
    let mut assignment: BTreeMap<String, BTreeMap<String, Vec<i32>>> =
        subscriptions.keys().map(|member| (member.clone(), BTreeMap::new())).collect();
    for (topic, count) in partition_counts {
        // BTreeMap order: the subscribers sorted by member id, as Kafka sorts them.
        let subscribers: Vec<&String> =
            subscriptions.iter().filter(|(_, topics)| topics.contains(topic)).map(|(member, _)| member).collect();
        if subscribers.is_empty() {
            continue;
        }
        let (each, extra) = (*count / subscribers.len() as i32, *count % subscribers.len() as i32);
        let mut next = 0;
        for (index, member) in subscribers.into_iter().enumerate() {
            let take = each + i32::from((index as i32) < extra);
            assignment.entry(member.clone()).or_default().insert(topic.clone(), (next..next + take).collect());
            next += take;
        }
    }
    assignment
}

/// A consumer protocol message as it travels in JoinGroup and SyncGroup: its version, then it.
fn versioned(version: i16, message: &impl Encodable) -> Result<Bytes> {
    let mut bytes = BytesMut::new();
    bytes.put_i16(version);
    message.encode(&mut bytes, version)?;
    Ok(bytes.freeze())
}

/// The version prefix of a consumer protocol message; later versions only add fields at the end,
/// so one newer than this crate knows reads as the newest it does.
fn read_version(bytes: &mut Bytes) -> Result<i16> {
    if bytes.remaining() < 2 {
        bail!("a consumer protocol message of {} bytes has no version", bytes.remaining());
    }
    Ok(bytes.get_i16().clamp(0, 3))
}

/// The topics a member's JoinGroup metadata (a ConsumerProtocolSubscription) subscribes to.
fn subscribed_topics(metadata: &Bytes) -> Result<Vec<String>> {
    let mut bytes = metadata.clone();
    let version = read_version(&mut bytes)?;
    let subscription = ConsumerProtocolSubscription::decode(&mut bytes, version)?;
    Ok(subscription.topics.iter().map(|topic| topic.to_string()).collect())
}

/// Every topic and its partitions in a ConsumerProtocolAssignment (as SyncGroup hands it to a
/// member and DescribeGroups shows it); an empty assignment is none.
pub fn assigned_partitions(assignment: &Bytes) -> Result<BTreeMap<String, Vec<i32>>> {
    if assignment.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut bytes = assignment.clone();
    let version = read_version(&mut bytes)?;
    let decoded = ConsumerProtocolAssignment::decode(&mut bytes, version)?;
    let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for topic in decoded.assigned_partitions {
        topics.entry(topic.topic.0.to_string()).or_default().extend(topic.partitions);
    }
    for partitions in topics.values_mut() {
        partitions.sort_unstable();
        partitions.dedup();
    }
    Ok(topics)
}

fn partitions_of(assignment: &Bytes, topic: &str) -> Result<Vec<i32>> {
    Ok(assigned_partitions(assignment)?.remove(topic).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscriptions(members: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        members.iter().map(|(member, topics)| (member.to_string(), topics.iter().map(|topic| topic.to_string()).collect())).collect()
    }

    #[test]
    fn the_range_assignor_splits_each_topic_into_ranges_in_member_id_order() {
        let counts = BTreeMap::from([("orders".to_string(), 7), ("audit".to_string(), 2)]);
        let assigned = range_assign(&subscriptions(&[("b", &["orders"]), ("a", &["orders", "audit"]), ("c", &["orders"])]), &counts);
        assert_eq!(assigned["a"], BTreeMap::from([("orders".to_string(), vec![0, 1, 2]), ("audit".to_string(), vec![0, 1])]));
        assert_eq!(assigned["b"], BTreeMap::from([("orders".to_string(), vec![3, 4])]));
        assert_eq!(assigned["c"], BTreeMap::from([("orders".to_string(), vec![5, 6])]));
    }

    #[test]
    fn members_beyond_the_partition_count_get_an_empty_assignment() {
        let counts = BTreeMap::from([("orders".to_string(), 1)]);
        let assigned = range_assign(&subscriptions(&[("a", &["orders"]), ("b", &["orders"]), ("c", &["elsewhere"])]), &counts);
        assert_eq!(assigned["a"]["orders"], vec![0]);
        assert_eq!(assigned["b"]["orders"], Vec::<i32>::new());
        assert!(assigned["c"].is_empty());
    }

    #[test]
    fn subscriptions_and_assignments_round_trip_in_the_consumer_protocol_encoding() {
        let subscription = ConsumerProtocolSubscription::default().with_topics(vec![StrBytes::from_static_str("orders")]);
        let metadata = versioned(SUBSCRIPTION_VERSION, &subscription).unwrap();
        // Version 0, one topic: i16 version, i32 count, i16 length + "orders", null user data.
        assert_eq!(&metadata[..], b"\x00\x00\x00\x00\x00\x01\x00\x06orders\xff\xff\xff\xff");
        assert_eq!(subscribed_topics(&metadata).unwrap(), vec!["orders".to_string()]);
        let assignment = ConsumerProtocolAssignment::default()
            .with_assigned_partitions(vec![TopicPartition::default().with_topic(topic_name("orders")).with_partitions(vec![4, 1])]);
        let bytes = versioned(ASSIGNMENT_VERSION, &assignment).unwrap();
        assert_eq!(partitions_of(&bytes, "orders").unwrap(), vec![1, 4]);
        assert_eq!(partitions_of(&bytes, "audit").unwrap(), Vec::<i32>::new());
        assert!(assigned_partitions(&Bytes::new()).unwrap().is_empty());
        assert!(assigned_partitions(&Bytes::from_static(b"\x00")).is_err());
    }
}
