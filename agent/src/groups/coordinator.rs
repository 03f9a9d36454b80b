//! The group state machine, following Kafka's classic protocol (KIP-394 member ids, static
//! membership not yet). States: Empty → PreparingRebalance → CompletingRebalance → Stable.
//!
//! All state sits behind one mutex; requests that must wait (JoinGroup until the rebalance
//! completes, SyncGroup until the leader's assignment arrives) get a oneshot receiver. A sweeper
//! ticks to expire sessions and to end rebalances whose deadline passed.

use bytes::Bytes;
use floe_meta::groups::{StoredGroup, StoredMember};
use kafka_protocol::error::ResponseError;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
        }
    }
}

#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: an unknown member must first fetch an id (MEMBER_ID_REQUIRED).
    pub require_known_member_id: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JoinOutcome {
    pub error: Option<ResponseError>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Non-empty only for the leader: (member id, metadata for the chosen protocol).
    pub members: Vec<(String, Bytes)>,
}

impl JoinOutcome {
    fn error(error: ResponseError, member_id: String) -> Self {
        Self {
            error: Some(error),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id,
            members: vec![],
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SyncOutcome {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

struct Member {
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_seen: Instant,
    join_waiter: Option<oneshot::Sender<JoinOutcome>>,
    sync_waiter: Option<oneshot::Sender<SyncOutcome>>,
}

struct Group {
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED and not yet joined.
    pending_members: BTreeMap<String, Instant>,
    rebalance_deadline: Option<Instant>,
    /// The first rebalance of an empty group waits this long for more members (Kafka's
    /// group.initial.rebalance.delay.ms).
    initial_delay_until: Option<Instant>,
    /// (generation, empty) of the membership last handed to the journal or taken from it.
    persisted: Option<(i32, bool)>,
}

impl Group {
    fn new() -> Self {
        Self {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            rebalance_deadline: None,
            initial_delay_until: None,
            persisted: None,
        }
    }

    /// A group as its stored membership describes it: Stable with those members (their sessions
    /// start now), or Empty at that generation.
    fn from_stored(stored: &StoredGroup, now: Instant) -> Self {
        let mut group = Self::new();
        group.generation = stored.generation;
        group.persisted = Some((stored.generation, stored.members.is_empty()));
        if stored.members.is_empty() {
            return group;
        }
        group.state = GroupState::Stable;
        group.protocol_type = Some(stored.protocol_type.clone());
        group.protocol_name = Some(stored.protocol_name.clone());
        group.leader = Some(stored.leader.clone());
        for member in &stored.members {
            group.members.insert(
                member.member_id.clone(),
                Member {
                    client_id: member.client_id.clone(),
                    client_host: member.client_host.clone(),
                    session_timeout: Duration::from_millis(member.session_timeout_ms),
                    rebalance_timeout: Duration::from_millis(member.rebalance_timeout_ms),
                    protocols: vec![(stored.protocol_name.clone(), Bytes::from(member.metadata.clone()))],
                    assignment: Bytes::from(member.assignment.clone()),
                    last_seen: now,
                    join_waiter: None,
                    sync_waiter: None,
                },
            );
        }
        group
    }

    /// What the journal keeps of this group: its members only when Stable.
    fn stored(&self) -> StoredGroup {
        let protocol_name = self.protocol_name.clone().unwrap_or_default();
        let members = if self.state == GroupState::Stable {
            self.members
                .iter()
                .map(|(id, member)| StoredMember {
                    member_id: id.clone(),
                    client_id: member.client_id.clone(),
                    client_host: member.client_host.clone(),
                    session_timeout_ms: member.session_timeout.as_millis() as u64,
                    rebalance_timeout_ms: member.rebalance_timeout.as_millis() as u64,
                    metadata: member
                        .protocols
                        .iter()
                        .find(|(name, _)| *name == protocol_name)
                        .map(|(_, metadata)| metadata.to_vec())
                        .unwrap_or_default(),
                    assignment: member.assignment.to_vec(),
                })
                .collect()
        } else {
            Vec::new()
        };
        StoredGroup {
            generation: self.generation,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_name,
            leader: self.leader.clone().unwrap_or_default(),
            members,
        }
    }
}

#[derive(Debug, Clone)]
pub struct MemberSummary {
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone)]
pub struct GroupSummary {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol_name: String,
    pub members: Vec<MemberSummary>,
}

/// A group's membership as the journal stores it (the replica's `group_memberships`), only if it
/// is newer than the generation this agent holds (`None`: holds nothing), so the frequent calls
/// (every heartbeat and commit) clone nothing.
pub type StoredLookup = Arc<dyn Fn(&str, Option<i32>) -> Option<StoredGroup> + Send + Sync>;

/// Whether a stored membership should replace what an agent holds at generation `held`.
pub fn is_newer(stored: &StoredGroup, held: Option<i32>) -> bool {
    held.is_none_or(|generation| stored.generation > generation)
}

pub struct GroupCoordinator {
    groups: Mutex<BTreeMap<String, Group>>,
    initial_rebalance_delay: Duration,
    /// Kafka's group.max.size: a new member past it gets GROUP_MAX_SIZE_REACHED.
    max_size: usize,
    /// Where memberships are read from when this agent takes a group over (None: kept in memory
    /// only, as in unit tests).
    stored: Option<StoredLookup>,
    /// Memberships to write to the journal, drained by `spawn_persister`.
    outbox: Mutex<Vec<(String, StoredGroup)>>,
    outbox_ready: tokio::sync::Notify,
    /// Groups of the KIP-848 consumer protocol (`group.protocol=consumer`), swept and given up
    /// with the classic ones.
    pub consumer: super::consumer::ConsumerGroups,
}

/// Why an offset commit was refused by the group state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitCheck {
    Allowed,
    Refused(ResponseError),
}

impl GroupCoordinator {
    pub fn new(initial_rebalance_delay: Duration) -> Self {
        Self {
            groups: Mutex::new(BTreeMap::new()),
            initial_rebalance_delay,
            max_size: i32::MAX as usize,
            stored: None,
            outbox: Mutex::new(Vec::new()),
            outbox_ready: tokio::sync::Notify::new(),
            consumer: super::consumer::ConsumerGroups::default(),
        }
    }

    /// The same coordinator keeping memberships in the journal: it reads a group's stored
    /// membership when it takes the group over, and hands each completed rebalance (and each
    /// group that empties) to `spawn_persister`.
    pub fn with_stored(mut self, lookup: StoredLookup) -> Self {
        self.stored = Some(lookup);
        self
    }

    /// Takes `group_id` from the journal when this agent holds nothing for it, or holds an older
    /// generation than the journal (another agent coordinated it meanwhile).
    fn take_over(&self, groups: &mut BTreeMap<String, Group>, group_id: &str) {
        let Some(lookup) = &self.stored else { return };
        let Some(stored) = lookup(group_id, groups.get(group_id).map(|group| group.generation)) else { return };
        if let Some(replaced) = groups.insert(group_id.to_string(), Group::from_stored(&stored, Instant::now())) {
            tracing::info!(
                group = group_id,
                from = replaced.generation,
                to = stored.generation,
                "took a newer group membership from the journal"
            );
        }
    }

    /// Queues the membership of a group that became Stable or Empty for the journal, once per
    /// (generation, emptiness); an Empty group only after a Stable one was stored.
    fn note(&self, group_id: &str, group: &mut Group) {
        if self.stored.is_none() {
            return;
        }
        let mark = match group.state {
            GroupState::Stable => (group.generation, false),
            GroupState::Empty if group.persisted.is_some_and(|(_, empty)| !empty) => (group.generation, true),
            _ => return,
        };
        if group.persisted == Some(mark) {
            return;
        }
        group.persisted = Some(mark);
        self.outbox.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push((group_id.to_string(), group.stored()));
        self.outbox_ready.notify_one();
    }

    /// Writes queued memberships with `persist` (which decides whether this agent still
    /// coordinates the group, and appends the record), in order, until the task is aborted.
    pub fn spawn_persister<F, Fut>(self: &Arc<Self>, persist: F) -> tokio::task::JoinHandle<()>
    where
        F: Fn(String, StoredGroup) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let coordinator = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                coordinator.outbox_ready.notified().await;
                let queued = std::mem::take(&mut *coordinator.outbox.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
                for (group, stored) in queued {
                    persist(group, stored).await;
                }
            }
        })
    }

    /// The same coordinator with Kafka's `group.max.size`.
    pub fn with_max_size(mut self, max_size: usize) -> Self {
        self.max_size = max_size.max(1);
        self
    }

    /// Groups with membership state in memory (members, pending member ids or a rebalance).
    pub fn group_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn join(&self, request: JoinRequest) -> oneshot::Receiver<JoinOutcome> {
        let (sender, receiver) = oneshot::channel();
        let now = Instant::now();
        // Refused before the group exists: a refused join must not leave a group behind.
        if request.protocols.is_empty() || request.protocol_type.is_empty() {
            let _ = sender.send(JoinOutcome::error(ResponseError::InconsistentGroupProtocol, request.member_id));
            return receiver;
        }
        let mut groups = self.lock();
        self.take_over(&mut groups, &request.group_id);
        let group = groups.entry(request.group_id.clone()).or_insert_with(Group::new);
        let is_member = !request.member_id.is_empty() && group.members.contains_key(&request.member_id);
        if !is_member && group.members.len() >= self.max_size {
            let _ = sender.send(JoinOutcome::error(ResponseError::GroupMaxSizeReached, request.member_id));
            if group.members.is_empty() && group.pending_members.is_empty() && group.state == GroupState::Empty {
                groups.remove(&request.group_id);
            }
            return receiver;
        }
        if let Some(existing) = &group.protocol_type {
            if !group.members.is_empty() && existing != &request.protocol_type {
                let _ = sender.send(JoinOutcome::error(ResponseError::InconsistentGroupProtocol, request.member_id));
                return receiver;
            }
        }
        let mut member_id = request.member_id.clone();
        if member_id.is_empty() {
            member_id = format!("{}-{}", request.client_id, uuid::Uuid::new_v4());
            if request.require_known_member_id {
                group.pending_members.insert(member_id.clone(), now + request.session_timeout);
                let _ = sender.send(JoinOutcome::error(ResponseError::MemberIdRequired, member_id));
                return receiver;
            }
        } else if !group.members.contains_key(&member_id) && group.pending_members.remove(&member_id).is_none() {
            let _ = sender.send(JoinOutcome::error(ResponseError::UnknownMemberId, member_id));
            return receiver;
        }
        if let Some(chosen) = &group.protocol_name {
            if group.state != GroupState::Empty && !request.protocols.iter().any(|(name, _)| name == chosen) && group.members.len() > 1 {
                let _ = sender.send(JoinOutcome::error(ResponseError::InconsistentGroupProtocol, member_id));
                return receiver;
            }
        }
        let member = group.members.entry(member_id.clone()).or_insert_with(|| Member {
            client_id: request.client_id.clone(),
            client_host: request.client_host.clone(),
            session_timeout: request.session_timeout,
            rebalance_timeout: request.rebalance_timeout,
            protocols: Vec::new(),
            assignment: Bytes::new(),
            last_seen: now,
            join_waiter: None,
            sync_waiter: None,
        });
        member.protocols = request.protocols.clone();
        member.session_timeout = request.session_timeout;
        member.rebalance_timeout = request.rebalance_timeout;
        member.last_seen = now;
        if let Some(previous) = member.join_waiter.replace(sender) {
            let _ = previous.send(JoinOutcome::error(ResponseError::RebalanceInProgress, member_id.clone()));
        }
        group.protocol_type = Some(request.protocol_type.clone());
        match group.state {
            GroupState::PreparingRebalance => {}
            GroupState::Empty => {
                group.initial_delay_until = Some(now + self.initial_rebalance_delay);
                start_rebalance(group, now);
            }
            GroupState::CompletingRebalance | GroupState::Stable => start_rebalance(group, now),
        }
        try_complete_join(group, now, false);
        receiver
    }

    pub fn sync(
        &self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        assignments: Vec<(String, Bytes)>,
    ) -> oneshot::Receiver<SyncOutcome> {
        let (sender, receiver) = oneshot::channel();
        let mut groups = self.lock();
        self.take_over(&mut groups, group_id);
        let refuse = |sender: oneshot::Sender<SyncOutcome>, error| {
            let _ = sender.send(SyncOutcome { error: Some(error), protocol_type: None, protocol_name: None, assignment: Bytes::new() });
        };
        let Some(group) = groups.get_mut(group_id) else {
            refuse(sender, ResponseError::UnknownMemberId);
            return receiver;
        };
        let Some(member) = group.members.get_mut(member_id) else {
            refuse(sender, ResponseError::UnknownMemberId);
            return receiver;
        };
        member.last_seen = Instant::now();
        if generation_id != group.generation {
            refuse(sender, ResponseError::IllegalGeneration);
            return receiver;
        }
        match group.state {
            GroupState::Empty | GroupState::PreparingRebalance => refuse(sender, ResponseError::RebalanceInProgress),
            GroupState::Stable => {
                let assignment = member.assignment.clone();
                let _ = sender.send(SyncOutcome {
                    error: None,
                    protocol_type: group.protocol_type.clone(),
                    protocol_name: group.protocol_name.clone(),
                    assignment,
                });
            }
            GroupState::CompletingRebalance => {
                member.sync_waiter = Some(sender);
                if group.leader.as_deref() == Some(member_id) {
                    let assignments: BTreeMap<String, Bytes> = assignments.into_iter().collect();
                    for (id, member) in group.members.iter_mut() {
                        member.assignment = assignments.get(id).cloned().unwrap_or_default();
                    }
                    group.state = GroupState::Stable;
                    self.note(group_id, group);
                    for member in group.members.values_mut() {
                        if let Some(waiter) = member.sync_waiter.take() {
                            let _ = waiter.send(SyncOutcome {
                                error: None,
                                protocol_type: group.protocol_type.clone(),
                                protocol_name: group.protocol_name.clone(),
                                assignment: member.assignment.clone(),
                            });
                        }
                    }
                }
            }
        }
        receiver
    }

    pub fn heartbeat(&self, group_id: &str, generation_id: i32, member_id: &str) -> Option<ResponseError> {
        let mut groups = self.lock();
        self.take_over(&mut groups, group_id);
        let Some(group) = groups.get_mut(group_id) else { return Some(ResponseError::UnknownMemberId) };
        let Some(member) = group.members.get_mut(member_id) else { return Some(ResponseError::UnknownMemberId) };
        member.last_seen = Instant::now();
        if generation_id != group.generation {
            return Some(ResponseError::IllegalGeneration);
        }
        match group.state {
            GroupState::PreparingRebalance => Some(ResponseError::RebalanceInProgress),
            GroupState::Empty => Some(ResponseError::UnknownMemberId),
            GroupState::CompletingRebalance | GroupState::Stable => None,
        }
    }

    /// Removes members; returns per-member errors in request order.
    pub fn leave(&self, group_id: &str, member_ids: &[String]) -> Vec<Option<ResponseError>> {
        let now = Instant::now();
        let mut groups = self.lock();
        self.take_over(&mut groups, group_id);
        let Some(group) = groups.get_mut(group_id) else {
            return member_ids.iter().map(|_| Some(ResponseError::UnknownMemberId)).collect();
        };
        let results = member_ids
            .iter()
            .map(|member_id| match group.members.remove(member_id) {
                Some(member) => {
                    if let Some(waiter) = member.join_waiter {
                        let _ = waiter.send(JoinOutcome::error(ResponseError::UnknownMemberId, member_id.clone()));
                    }
                    None
                }
                None => Some(ResponseError::UnknownMemberId),
            })
            .collect::<Vec<_>>();
        if results.iter().any(Option::is_none) {
            members_changed(group, now);
            self.note(group_id, group);
        }
        results
    }

    /// Checks whether an offset commit from (generation, member) is acceptable right now.
    pub fn check_commit(&self, group_id: &str, generation_id: i32, member_id: &str) -> CommitCheck {
        // A consumer-protocol group validates the member epoch instead (KIP-848).
        if let Some(verdict) = self.consumer.check_commit(group_id, member_id, generation_id) {
            return match verdict {
                Ok(()) => CommitCheck::Allowed,
                Err(error) => CommitCheck::Refused(error),
            };
        }
        let mut groups = self.lock();
        self.take_over(&mut groups, group_id);
        let group = groups.get_mut(group_id);
        if generation_id < 0 && member_id.is_empty() {
            // A commit from outside the group protocol (admin tools, assign()) is fine only while
            // no member owns the partitions.
            return match group {
                Some(group) if group.state != GroupState::Empty => CommitCheck::Refused(ResponseError::UnknownMemberId),
                _ => CommitCheck::Allowed,
            };
        }
        let Some(group) = group else { return CommitCheck::Refused(ResponseError::UnknownMemberId) };
        let Some(member) = group.members.get_mut(member_id) else { return CommitCheck::Refused(ResponseError::UnknownMemberId) };
        member.last_seen = Instant::now();
        if generation_id != group.generation {
            return CommitCheck::Refused(ResponseError::IllegalGeneration);
        }
        // As in Kafka: a member of the current generation may still commit while the group
        // prepares a rebalance (it commits what it consumed before giving partitions up); only
        // between JoinGroup and SyncGroup is the assignment unknown.
        match group.state {
            GroupState::CompletingRebalance => CommitCheck::Refused(ResponseError::RebalanceInProgress),
            _ => CommitCheck::Allowed,
        }
    }

    /// KIP-447: whether a TxnOffsetCommit carrying the consumer's group metadata (generation or
    /// member epoch, and member id) comes from a current member, so a zombie application instance
    /// cannot commit offsets in a transaction after its partitions moved on. A commit without group
    /// metadata (generation -1, no member) is not checked, as in Kafka.
    pub fn check_transactional_commit(&self, group_id: &str, generation_id: i32, member_id: &str) -> Option<ResponseError> {
        if generation_id < 0 && member_id.is_empty() {
            return None;
        }
        if let Some(verdict) = self.consumer.check_commit(group_id, member_id, generation_id) {
            return match verdict {
                Ok(()) => None,
                Err(ResponseError::UnknownMemberId) => Some(ResponseError::UnknownMemberId),
                Err(_) => Some(ResponseError::IllegalGeneration),
            };
        }
        let mut groups = self.lock();
        self.take_over(&mut groups, group_id);
        let Some(group) = groups.get(group_id) else { return Some(ResponseError::UnknownMemberId) };
        if !group.members.contains_key(member_id) {
            return Some(ResponseError::UnknownMemberId);
        }
        (generation_id != group.generation).then_some(ResponseError::IllegalGeneration)
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupSummary> {
        let mut groups = self.lock();
        self.take_over(&mut groups, group_id);
        let group = groups.get(group_id)?;
        let protocol_name = group.protocol_name.clone().unwrap_or_default();
        Some(GroupSummary {
            state: group.state.name(),
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol_name: protocol_name.clone(),
            members: group
                .members
                .iter()
                .map(|(id, member)| MemberSummary {
                    member_id: id.clone(),
                    client_id: member.client_id.clone(),
                    client_host: member.client_host.clone(),
                    metadata: member
                        .protocols
                        .iter()
                        .find(|(name, _)| *name == protocol_name)
                        .map(|(_, metadata)| metadata.clone())
                        .unwrap_or_default(),
                    assignment: member.assignment.clone(),
                })
                .collect(),
        })
    }

    /// Drops an empty group's in-memory state (after DeleteGroups).
    pub fn forget(&self, group_id: &str) {
        let mut groups = self.lock();
        if groups.get(group_id).is_some_and(|group| group.members.is_empty()) {
            groups.remove(group_id);
        }
    }

    /// (group id, protocol type, state) of every group with live membership state.
    pub fn list(&self) -> Vec<(String, String, &'static str)> {
        self.lock().iter().map(|(id, group)| (id.clone(), group.protocol_type.clone().unwrap_or_default(), group.state.name())).collect()
    }

    /// Expires members whose session ran out, finishes rebalances whose deadline passed and
    /// forgets groups left empty (no members, no pending member ids): their committed offsets live
    /// in the journal, so ListGroups, DescribeGroups and OffsetFetch still find them; only the
    /// in-memory membership goes, as Kafka's periodic cleanup removes empty groups.
    pub fn tick(&self) {
        let now = Instant::now();
        self.consumer.tick(now);
        let mut groups = self.lock();
        groups.retain(|_, group| !(group.state == GroupState::Empty && group.members.is_empty() && group.pending_members.is_empty()));
        for (group_id, group) in groups.iter_mut() {
            group.pending_members.retain(|_, expires| *expires > now);
            let expired: Vec<String> = group
                .members
                .iter()
                .filter(|(_, member)| member.join_waiter.is_none() && member.last_seen + member.session_timeout < now)
                .map(|(id, _)| id.clone())
                .collect();
            if !expired.is_empty() {
                for id in &expired {
                    tracing::info!(member = %id, "group member session expired");
                    group.members.remove(id);
                }
                members_changed(group, now);
            }
            if group.state == GroupState::PreparingRebalance {
                try_complete_join(group, now, group.rebalance_deadline.is_some_and(|deadline| deadline <= now));
            }
            self.note(group_id, group);
        }
    }

    /// Gives up every group this agent coordinates (it drains): members waiting in JoinGroup or
    /// SyncGroup are answered with `error` at once instead of at their rebalance timeout, and the
    /// membership is forgotten. Membership is not handed over; members rejoin at the new
    /// coordinator and resume from their committed offsets. Returns the number of groups given up.
    pub fn step_down(&self, error: ResponseError) -> usize {
        self.consumer.step_down();
        let groups = std::mem::take(&mut *self.lock());
        let count = groups.len();
        for (member_id, member) in groups.into_values().flat_map(|group| group.members) {
            if let Some(waiter) = member.join_waiter {
                let _ = waiter.send(JoinOutcome::error(error, member_id));
            }
            if let Some(waiter) = member.sync_waiter {
                let _ = waiter.send(SyncOutcome { error: Some(error), protocol_type: None, protocol_name: None, assignment: Bytes::new() });
            }
        }
        count
    }

    /// Runs `tick` every `period` until the returned task is dropped/aborted.
    pub fn spawn_sweeper(self: &std::sync::Arc<Self>, period: Duration) -> tokio::task::JoinHandle<()> {
        let coordinator = std::sync::Arc::clone(self);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                coordinator.tick();
            }
        })
    }
}

fn start_rebalance(group: &mut Group, now: Instant) {
    let longest = group.members.values().map(|member| member.rebalance_timeout).max().unwrap_or(Duration::from_secs(60));
    group.state = GroupState::PreparingRebalance;
    group.rebalance_deadline = Some(now + longest);
    for member in group.members.values_mut() {
        if let Some(waiter) = member.sync_waiter.take() {
            let _ = waiter.send(SyncOutcome {
                error: Some(ResponseError::RebalanceInProgress),
                protocol_type: None,
                protocol_name: None,
                assignment: Bytes::new(),
            });
        }
    }
}

fn members_changed(group: &mut Group, now: Instant) {
    if group.members.is_empty() {
        group.state = GroupState::Empty;
        group.generation += 1;
        group.leader = None;
        group.protocol_name = None;
        group.rebalance_deadline = None;
        return;
    }
    if group.state != GroupState::PreparingRebalance {
        start_rebalance(group, now);
    }
    try_complete_join(group, now, false);
}

/// Completes the join phase when every member has rejoined (or the deadline forced it, in which
/// case members that did not rejoin are dropped).
fn try_complete_join(group: &mut Group, now: Instant, deadline_passed: bool) {
    if group.state != GroupState::PreparingRebalance {
        return;
    }
    if group.initial_delay_until.is_some_and(|until| until > now) && !deadline_passed {
        return;
    }
    let all_joined = group.members.values().all(|member| member.join_waiter.is_some());
    if !all_joined {
        if !deadline_passed {
            return;
        }
        group.members.retain(|_, member| member.join_waiter.is_some());
    }
    group.initial_delay_until = None;
    if group.members.is_empty() {
        group.state = GroupState::Empty;
        group.generation += 1;
        group.leader = None;
        return;
    }
    let leader = match &group.leader {
        Some(leader) if group.members.contains_key(leader) => leader.clone(),
        _ => group.members.keys().next().cloned().expect("non-empty"),
    };
    // Choose the first of the leader's protocols that every member supports.
    let leader_protocols: Vec<String> = group.members[&leader].protocols.iter().map(|(name, _)| name.clone()).collect();
    let chosen = leader_protocols
        .into_iter()
        .find(|name| group.members.values().all(|member| member.protocols.iter().any(|(candidate, _)| candidate == name)));
    group.generation += 1;
    group.leader = Some(leader.clone());
    let Some(chosen) = chosen else {
        for (id, member) in group.members.iter_mut() {
            if let Some(waiter) = member.join_waiter.take() {
                let _ = waiter.send(JoinOutcome::error(ResponseError::InconsistentGroupProtocol, id.clone()));
            }
        }
        group.members.clear();
        group.state = GroupState::Empty;
        return;
    };
    group.protocol_name = Some(chosen.clone());
    group.state = GroupState::CompletingRebalance;
    group.rebalance_deadline = None;
    let member_list: Vec<(String, Bytes)> = group
        .members
        .iter()
        .map(|(id, member)| {
            (
                id.clone(),
                member.protocols.iter().find(|(name, _)| *name == chosen).map(|(_, metadata)| metadata.clone()).unwrap_or_default(),
            )
        })
        .collect();
    for (id, member) in group.members.iter_mut() {
        member.last_seen = now;
        member.assignment = Bytes::new();
        if let Some(waiter) = member.join_waiter.take() {
            let _ = waiter.send(JoinOutcome {
                error: None,
                generation_id: group.generation,
                protocol_type: group.protocol_type.clone(),
                protocol_name: Some(chosen.clone()),
                leader: leader.clone(),
                member_id: id.clone(),
                members: if *id == leader { member_list.clone() } else { Vec::new() },
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join_request(member_id: &str) -> JoinRequest {
        JoinRequest {
            group_id: "g".into(),
            member_id: member_id.into(),
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(10),
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
            require_known_member_id: true,
        }
    }

    #[tokio::test]
    async fn stepping_down_answers_waiting_members_and_forgets_the_groups() {
        let coordinator = GroupCoordinator::new(Duration::ZERO);
        let first_id = coordinator.join(join_request("")).await.unwrap().member_id;
        let first = coordinator.join(join_request(&first_id)).await.unwrap();
        coordinator.sync("g", first.generation_id, &first_id, vec![(first_id.clone(), Bytes::from_static(b"all"))]).await.unwrap();
        // A second member's join starts a rebalance; both wait until the first rejoins.
        let second_id = coordinator.join(join_request("")).await.unwrap().member_id;
        let waiting = coordinator.join(join_request(&second_id));
        assert_eq!(coordinator.step_down(ResponseError::NotCoordinator), 1);
        let answered = tokio::time::timeout(Duration::from_secs(1), waiting).await.expect("answered at once").unwrap();
        assert_eq!(answered.error, Some(ResponseError::NotCoordinator));
        assert!(coordinator.list().is_empty());
        assert!(coordinator.describe("g").is_none());
    }

    /// The journal, as far as the coordinators see it: what one stores, the other reads.
    fn shared_journal() -> (Arc<Mutex<BTreeMap<String, StoredGroup>>>, StoredLookup) {
        let journal: Arc<Mutex<BTreeMap<String, StoredGroup>>> = Arc::default();
        let reader = Arc::clone(&journal);
        (journal, Arc::new(move |group: &str, held| reader.lock().unwrap().get(group).filter(|stored| is_newer(stored, held)).cloned()))
    }

    /// What `spawn_persister` would append: the queued memberships, applied in order the way
    /// the apply function does (a generation never goes back).
    fn flush(coordinator: &GroupCoordinator, journal: &Mutex<BTreeMap<String, StoredGroup>>) -> usize {
        let queued = std::mem::take(&mut *coordinator.outbox.lock().unwrap());
        let count = queued.len();
        let mut journal = journal.lock().unwrap();
        for (group, stored) in queued {
            if journal.get(&group).is_none_or(|current| stored.generation >= current.generation) {
                journal.insert(group, stored);
            }
        }
        count
    }

    #[tokio::test]
    async fn a_new_coordinator_takes_the_group_from_the_journal_and_its_members_carry_on_in_their_generation() {
        let (journal, lookup) = shared_journal();
        let first = GroupCoordinator::new(Duration::ZERO).with_stored(Arc::clone(&lookup));
        let member = first.join(join_request("")).await.unwrap().member_id;
        let joined = first.join(join_request(&member)).await.unwrap();
        first.sync("g", joined.generation_id, &member, vec![(member.clone(), Bytes::from_static(b"p0"))]).await.unwrap();
        assert_eq!(flush(&first, &journal), 1, "the completed rebalance is stored once");
        assert_eq!(first.heartbeat("g", joined.generation_id, &member), None);
        assert_eq!(flush(&first, &journal), 0, "heartbeats store nothing");

        // The first coordinator dies; another agent knows nothing of the group but the journal.
        let second = GroupCoordinator::new(Duration::ZERO).with_stored(Arc::clone(&lookup));
        assert_eq!(second.heartbeat("g", joined.generation_id, &member), None, "no UNKNOWN_MEMBER_ID, no rebalance");
        assert_eq!(second.check_commit("g", joined.generation_id, &member), CommitCheck::Allowed);
        let described = second.describe("g").expect("the group is known");
        assert_eq!((described.state, &described.members[0].assignment[..]), ("Stable", &b"p0"[..]));
        assert_eq!(second.sync("g", joined.generation_id, &member, vec![]).await.unwrap().assignment, Bytes::from_static(b"p0"));

        // The member leaves at the new coordinator: the group is stored empty, at a newer
        // generation, and a third coordinator starts it again from there.
        assert_eq!(second.leave("g", std::slice::from_ref(&member)), vec![None]);
        assert_eq!(flush(&second, &journal), 1);
        let emptied = journal.lock().unwrap()["g"].clone();
        assert!(emptied.members.is_empty() && emptied.generation > joined.generation_id);
        let third = GroupCoordinator::new(Duration::ZERO).with_stored(lookup);
        assert_eq!(third.heartbeat("g", joined.generation_id, &member), Some(ResponseError::UnknownMemberId));
        let again = third.join(join_request("")).await.unwrap().member_id;
        let rejoined = third.join(join_request(&again)).await.unwrap();
        assert!(
            rejoined.generation_id > emptied.generation,
            "generations never go back: {} after {}",
            rejoined.generation_id,
            emptied.generation
        );
    }

    #[tokio::test]
    async fn an_agent_holding_an_older_generation_takes_the_newer_one_from_the_journal() {
        let (journal, lookup) = shared_journal();
        let old = GroupCoordinator::new(Duration::ZERO).with_stored(Arc::clone(&lookup));
        let member = old.join(join_request("")).await.unwrap().member_id;
        let joined = old.join(join_request(&member)).await.unwrap();
        old.sync("g", joined.generation_id, &member, vec![(member.clone(), Bytes::from_static(b"p0"))]).await.unwrap();
        flush(&old, &journal);
        let newer = StoredGroup { generation: joined.generation_id + 3, ..journal.lock().unwrap()["g"].clone() };
        journal.lock().unwrap().insert("g".into(), newer.clone());
        assert_eq!(old.heartbeat("g", newer.generation, &member), None, "the journal's generation wins over what this agent remembered");
        assert_eq!(old.heartbeat("g", joined.generation_id, &member), Some(ResponseError::IllegalGeneration));
    }

    #[tokio::test]
    async fn two_members_join_sync_and_rebalance_when_one_leaves() {
        let coordinator = GroupCoordinator::new(Duration::ZERO);
        let first = coordinator.join(join_request("")).await.unwrap();
        assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
        let first = coordinator.join(join_request(&first.member_id)).await.unwrap();
        assert_eq!(first.error, None);
        assert_eq!(first.generation_id, 1);
        assert_eq!(first.leader, first.member_id);
        let sync = coordinator.sync("g", 1, &first.member_id, vec![(first.member_id.clone(), Bytes::from_static(b"all"))]).await.unwrap();
        assert_eq!(&sync.assignment[..], b"all");

        let second_id = coordinator.join(join_request("")).await.unwrap().member_id;
        let second = coordinator.join(join_request(&second_id));
        assert_eq!(coordinator.heartbeat("g", 1, &first.member_id), Some(ResponseError::RebalanceInProgress));
        let first_again = coordinator.join(join_request(&first.member_id)).await.unwrap();
        let second = second.await.unwrap();
        assert_eq!(first_again.generation_id, 2);
        assert_eq!(first_again.members.len(), 2);
        assert!(second.members.is_empty());
        let follower_sync = coordinator.sync("g", 2, &second_id, vec![]);
        coordinator.sync("g", 2, &first.member_id, vec![(second_id.clone(), Bytes::from_static(b"p1"))]);
        assert_eq!(&follower_sync.await.unwrap().assignment[..], b"p1");
        assert_eq!(coordinator.check_commit("g", 1, &second_id), CommitCheck::Refused(ResponseError::IllegalGeneration));
        assert_eq!(coordinator.check_commit("g", 2, &second_id), CommitCheck::Allowed);

        assert_eq!(coordinator.leave("g", std::slice::from_ref(&first.member_id)), vec![None]);
        assert_eq!(coordinator.heartbeat("g", 2, &second_id), Some(ResponseError::RebalanceInProgress));
        let alone = coordinator.join(join_request(&second_id)).await.unwrap();
        assert_eq!(alone.generation_id, 3);
        assert_eq!(alone.leader, second_id);
    }

    #[tokio::test]
    async fn an_unknown_member_id_is_refused() {
        let coordinator = GroupCoordinator::new(Duration::ZERO);
        let outcome = coordinator.join(join_request("made-up")).await.unwrap();
        assert_eq!(outcome.error, Some(ResponseError::UnknownMemberId));
    }

    #[tokio::test]
    async fn a_member_past_group_max_size_gets_group_max_size_reached_and_members_may_rejoin() {
        let coordinator = GroupCoordinator::new(Duration::ZERO).with_max_size(1);
        let first_id = coordinator.join(join_request("")).await.unwrap().member_id;
        let first = coordinator.join(join_request(&first_id)).await.unwrap();
        assert_eq!(first.error, None);
        let refused = coordinator.join(join_request("")).await.unwrap();
        assert_eq!(refused.error, Some(ResponseError::GroupMaxSizeReached));
        let again = coordinator.join(join_request(&first_id)).await.unwrap();
        assert_eq!(again.error, None, "a member already in the group is not refused");
    }

    #[tokio::test]
    async fn refused_joins_leave_no_group_behind_and_empty_groups_are_forgotten() {
        let coordinator = GroupCoordinator::new(Duration::ZERO);
        let mut no_protocols = join_request("");
        no_protocols.protocols.clear();
        let outcome = coordinator.join(no_protocols).await.unwrap();
        assert_eq!(outcome.error, Some(ResponseError::InconsistentGroupProtocol));
        assert_eq!(coordinator.group_count(), 0, "a refused join created a group");
        coordinator.join(join_request("made-up")).await.unwrap();
        coordinator.tick();
        assert_eq!(coordinator.group_count(), 0, "a group nobody joined outlived the sweep");
        let member_id = coordinator.join(join_request("")).await.unwrap().member_id;
        coordinator.join(join_request(&member_id)).await.unwrap();
        coordinator.tick();
        assert_eq!(coordinator.group_count(), 1, "a group with a member was forgotten");
        coordinator.leave("g", &[member_id]);
        coordinator.tick();
        assert_eq!(coordinator.group_count(), 0, "an empty group outlived the sweep");
    }
}
