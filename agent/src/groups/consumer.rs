//! The KIP-848 consumer group protocol (`group.protocol=consumer`): members heartbeat with their
//! subscription and what they own; the coordinator computes the target assignment with a
//! server-side assignor and hands each member its share incrementally — a partition is given to
//! its new owner only after the previous owner stopped reporting it, so no two members ever own
//! one at once. Membership lives in the coordinating agent's memory, like the classic protocol's;
//! a member sent elsewhere after a coordinator change is answered UNKNOWN_MEMBER_ID and rejoins
//! with epoch 0, resuming from the committed offsets. See DESIGN.md "KIP-848 consumer groups".

use kafka_protocol::error::ResponseError;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Partitions by topic name.
pub type Assignment = BTreeMap<String, BTreeSet<i32>>;

/// How often members heartbeat (Kafka's `group.consumer.heartbeat.interval.ms` is 5 s; a shorter
/// interval makes rebalances converge faster at a small cost).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);
/// A member that stops heartbeating for this long is removed (`group.consumer.session.timeout.ms`).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(45);
/// Most members in one group (Kafka's `group.consumer.max.size` default is unbounded; a bound
/// keeps one client from growing the coordinator's memory without limit).
pub const MAX_MEMBERS: usize = 1_000;

/// The server-side assignors (Kafka's `uniform` and `range`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    Uniform,
    Range,
}

impl Assignor {
    pub fn named(name: Option<&str>) -> Result<Self, String> {
        match name {
            None | Some("uniform") => Ok(Self::Uniform),
            Some("range") => Ok(Self::Range),
            Some(other) => Err(format!("unknown server assignor {other:?}; this coordinator has uniform and range")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Uniform => "uniform",
            Self::Range => "range",
        }
    }
}

#[derive(Debug, Clone)]
struct Member {
    epoch: i32,
    subscribed: BTreeSet<String>,
    /// What this member was last told it owns (and has not yet been told to give up).
    assigned: Assignment,
    /// Assigned partitions it must give up before it may move to the target epoch.
    revoking: Assignment,
    revoking_since: Option<Instant>,
    rebalance_timeout: Duration,
    last_seen: Instant,
    client_id: String,
    client_host: String,
    instance_id: Option<String>,
    rack_id: Option<String>,
}

#[derive(Debug, Default)]
struct Group {
    epoch: i32,
    assignment_epoch: i32,
    assignor: Option<Assignor>,
    members: BTreeMap<String, Member>,
    /// The target assignment of `assignment_epoch`, per member.
    target: BTreeMap<String, Assignment>,
    /// Partition counts of the subscribed topics the target was computed from.
    topics: BTreeMap<String, i32>,
}

/// One heartbeat as the coordinator needs it.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    pub group_id: String,
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    /// `None`: unchanged since the last heartbeat.
    pub subscribed: Option<BTreeSet<String>>,
    pub assignor: Option<String>,
    /// What the member owns now; `None`: unchanged.
    pub owned: Option<Assignment>,
    pub client_id: String,
    pub client_host: String,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatReply {
    pub member_id: String,
    pub member_epoch: i32,
    /// The partitions the member should own now (`None` when it left).
    pub assignment: Option<Assignment>,
}

/// A consumer group as ConsumerGroupDescribe and ListGroups show it.
#[derive(Debug, Clone)]
pub struct Described {
    pub state: &'static str,
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: &'static str,
    pub members: Vec<DescribedMember>,
}

#[derive(Debug, Clone)]
pub struct DescribedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscribed: Vec<String>,
    pub assignment: Assignment,
    pub target: Assignment,
}

#[derive(Default)]
pub struct ConsumerGroups {
    groups: Mutex<HashMap<String, Group>>,
}

fn count(assignment: &Assignment) -> usize {
    assignment.values().map(BTreeSet::len).sum()
}

fn minus(left: &Assignment, right: &Assignment) -> Assignment {
    left.iter()
        .map(|(topic, partitions)| {
            let other = right.get(topic);
            (topic.clone(), partitions.iter().filter(|partition| other.is_none_or(|other| !other.contains(partition))).copied().collect())
        })
        .filter(|(_, partitions): &(String, BTreeSet<i32>)| !partitions.is_empty())
        .collect()
}

fn intersect(left: &Assignment, right: &Assignment) -> Assignment {
    left.iter()
        .filter_map(|(topic, partitions)| {
            let other = right.get(topic)?;
            let common: BTreeSet<i32> = partitions.intersection(other).copied().collect();
            (!common.is_empty()).then(|| (topic.clone(), common))
        })
        .collect()
}

/// The target assignment: every partition of every subscribed topic to exactly one member
/// subscribed to it. `uniform` spreads all partitions round-robin over the members sorted by id,
/// favouring each member's current partitions (sticky); `range` gives each member a contiguous
/// range of each topic.
fn compute_target(assignor: Assignor, members: &BTreeMap<String, Member>, topics: &BTreeMap<String, i32>) -> BTreeMap<String, Assignment> {
    let mut target: BTreeMap<String, Assignment> = members.keys().map(|id| (id.clone(), Assignment::new())).collect();
    for (topic, partitions) in topics {
        let subscribers: Vec<&String> = members.iter().filter(|(_, member)| member.subscribed.contains(topic)).map(|(id, _)| id).collect();
        if subscribers.is_empty() {
            continue;
        }
        match assignor {
            Assignor::Range => {
                let per = *partitions as usize / subscribers.len();
                let extra = *partitions as usize % subscribers.len();
                let mut next = 0i32;
                for (index, member) in subscribers.iter().enumerate() {
                    let take = per + usize::from(index < extra);
                    let range: BTreeSet<i32> = (next..next + take as i32).collect();
                    next += take as i32;
                    if !range.is_empty() {
                        target.entry((*member).clone()).or_default().insert(topic.clone(), range);
                    }
                }
            }
            Assignor::Uniform => {
                // Balanced (each member floor or floor + 1 partitions of the topic) and sticky:
                // members keep what they hold up to their share; the rest goes to the least loaded.
                let floor = *partitions as usize / subscribers.len();
                let mut extras = *partitions as usize % subscribers.len();
                let held = |member: &String| -> Vec<i32> {
                    let member = &members[member];
                    let mut held: Vec<i32> = member
                        .assigned
                        .get(topic)
                        .into_iter()
                        .flatten()
                        .chain(member.revoking.get(topic).into_iter().flatten())
                        .copied()
                        .collect();
                    held.retain(|partition| *partition < *partitions);
                    held.sort_unstable();
                    held
                };
                let mut owner: BTreeMap<i32, &String> = BTreeMap::new();
                let mut load: BTreeMap<&String, usize> = subscribers.iter().map(|member| (*member, 0)).collect();
                for keep_extra in [false, true] {
                    for member in &subscribers {
                        for partition in held(member) {
                            let limit = if keep_extra && extras > 0 { floor + 1 } else { floor };
                            if owner.contains_key(&partition) || load[member] >= limit {
                                continue;
                            }
                            if load[member] == floor {
                                extras -= 1;
                            }
                            owner.insert(partition, member);
                            *load.get_mut(member).expect("subscriber") += 1;
                        }
                    }
                }
                for partition in 0..*partitions {
                    if owner.contains_key(&partition) {
                        continue;
                    }
                    let member =
                        *load.iter().min_by_key(|(member, load)| (**load, **member)).map(|(member, _)| member).expect("subscribers");
                    owner.insert(partition, member);
                    *load.get_mut(member).expect("subscriber") += 1;
                }
                for (partition, member) in owner {
                    target.entry(member.clone()).or_default().entry(topic.clone()).or_default().insert(partition);
                }
            }
        }
    }
    target
}

impl ConsumerGroups {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `group_id` is a consumer-protocol group this agent holds.
    pub fn contains(&self, group_id: &str) -> bool {
        self.lock().contains_key(group_id)
    }

    /// Handles one heartbeat. `partitions` gives each topic's partition count (`None`: unknown
    /// topic, which gets no partitions until it exists). `new_member_id` names a joining member
    /// that sent none (heartbeat v0).
    pub fn heartbeat(
        &self,
        request: Heartbeat,
        partitions: impl Fn(&str) -> Option<i32>,
        new_member_id: impl FnOnce() -> String,
        now: Instant,
    ) -> Result<HeartbeatReply, (ResponseError, String)> {
        let mut groups = self.lock();
        let group = groups.entry(request.group_id.clone()).or_default();
        if let Some(name) = request.assignor.as_deref() {
            let assignor = Assignor::named(Some(name)).map_err(|message| (ResponseError::UnsupportedAssignor, message))?;
            group.assignor = Some(assignor);
        }
        let member_id = if request.member_id.is_empty() { new_member_id() } else { request.member_id.clone() };
        match request.member_epoch {
            // Leaving (-1), or a static member leaving for now (-2): both give their partitions up.
            -1 | -2 => {
                if group.members.remove(&member_id).is_some() {
                    group.epoch += 1;
                }
                let epoch = request.member_epoch;
                if group.members.is_empty() {
                    groups.remove(&request.group_id);
                }
                return Ok(HeartbeatReply { member_id, member_epoch: epoch, assignment: None });
            }
            0 => {
                let Some(subscribed) = request.subscribed.clone() else {
                    return Err((ResponseError::InvalidRequest, "a joining member must send its subscribed topics".into()));
                };
                if !group.members.contains_key(&member_id) && group.members.len() >= MAX_MEMBERS {
                    return Err((ResponseError::GroupMaxSizeReached, format!("the group already has {MAX_MEMBERS} members")));
                }
                // A member rejoining with epoch 0 starts over (it lost its partitions).
                group.members.insert(
                    member_id.clone(),
                    Member {
                        epoch: 0,
                        subscribed,
                        assigned: Assignment::new(),
                        revoking: Assignment::new(),
                        revoking_since: None,
                        rebalance_timeout: Duration::from_millis(request.rebalance_timeout_ms.clamp(1_000, 600_000) as u64),
                        last_seen: now,
                        client_id: request.client_id.clone(),
                        client_host: request.client_host.clone(),
                        instance_id: request.instance_id.clone(),
                        rack_id: request.rack_id.clone(),
                    },
                );
                group.epoch += 1;
            }
            epoch => {
                let Some(member) = group.members.get_mut(&member_id) else {
                    return Err((ResponseError::UnknownMemberId, format!("member {member_id} is not in group {}", request.group_id)));
                };
                if epoch != member.epoch {
                    return Err((
                        ResponseError::FencedMemberEpoch,
                        format!("member epoch {epoch} is not the member's current epoch {}", member.epoch),
                    ));
                }
                member.last_seen = now;
                if let Some(subscribed) = request.subscribed.clone() {
                    if subscribed != member.subscribed {
                        member.subscribed = subscribed;
                        group.epoch += 1;
                    }
                }
            }
        }
        // What the member says it owns is the truth about what it has released.
        if let (Some(owned), Some(member)) = (request.owned.as_ref(), group.members.get_mut(&member_id)) {
            member.assigned = intersect(&member.assigned, owned);
            member.revoking = intersect(&member.revoking, owned);
        }
        // The subscribed topics' partition counts; a change (a topic created or grown) is a new
        // group epoch.
        let subscribed: BTreeSet<String> = group.members.values().flat_map(|member| member.subscribed.iter().cloned()).collect();
        let topics: BTreeMap<String, i32> =
            subscribed.iter().filter_map(|topic| partitions(topic).map(|count| (topic.clone(), count))).collect();
        if topics != group.topics {
            group.topics = topics;
            group.epoch += 1;
        }
        if group.assignment_epoch < group.epoch {
            group.target = compute_target(group.assignor.unwrap_or(Assignor::Uniform), &group.members, &group.topics);
            group.assignment_epoch = group.epoch;
        }
        Ok(reconcile(group, &member_id, now))
    }

    /// Whether an offset commit from (member, epoch) is acceptable: `None` when `group_id` is not
    /// a consumer-protocol group here.
    pub fn check_commit(&self, group_id: &str, member_id: &str, member_epoch: i32) -> Option<Result<(), ResponseError>> {
        let groups = self.lock();
        let group = groups.get(group_id)?;
        if member_id.is_empty() && member_epoch < 0 {
            return Some(if group.members.is_empty() { Ok(()) } else { Err(ResponseError::UnknownMemberId) });
        }
        let Some(member) = group.members.get(member_id) else { return Some(Err(ResponseError::UnknownMemberId)) };
        Some(match member_epoch {
            epoch if epoch == member.epoch => Ok(()),
            epoch if epoch < member.epoch => Err(ResponseError::StaleMemberEpoch),
            _ => Err(ResponseError::FencedMemberEpoch),
        })
    }

    pub fn describe(&self, group_id: &str) -> Option<Described> {
        let groups = self.lock();
        let group = groups.get(group_id)?;
        let state = if group.members.is_empty() {
            "Empty"
        } else if group.assignment_epoch < group.epoch {
            "Assigning"
        } else if group.members.iter().any(|(id, member)| {
            member.epoch != group.assignment_epoch || !member.revoking.is_empty() || group.target.get(id) != Some(&member.assigned)
        }) {
            "Reconciling"
        } else {
            "Stable"
        };
        Some(Described {
            state,
            epoch: group.epoch,
            assignment_epoch: group.assignment_epoch,
            assignor: group.assignor.unwrap_or(Assignor::Uniform).name(),
            members: group
                .members
                .iter()
                .map(|(id, member)| DescribedMember {
                    member_id: id.clone(),
                    instance_id: member.instance_id.clone(),
                    rack_id: member.rack_id.clone(),
                    epoch: member.epoch,
                    client_id: member.client_id.clone(),
                    client_host: member.client_host.clone(),
                    subscribed: member.subscribed.iter().cloned().collect(),
                    assignment: member.assigned.clone(),
                    target: group.target.get(id).cloned().unwrap_or_default(),
                })
                .collect(),
        })
    }

    /// (group id, state) of every consumer-protocol group held here.
    pub fn list(&self) -> Vec<(String, &'static str)> {
        let ids: Vec<String> = self.lock().keys().cloned().collect();
        ids.into_iter().filter_map(|id| self.describe(&id).map(|described| (id, described.state))).collect()
    }

    /// Removes members whose session expired, or who did not give partitions up within their
    /// rebalance timeout (their partitions go to others), as Kafka's coordinator does.
    pub fn tick(&self, now: Instant) {
        let mut groups = self.lock();
        for group in groups.values_mut() {
            let before = group.members.len();
            group.members.retain(|id, member| {
                let expired = member.last_seen + SESSION_TIMEOUT < now;
                let stuck = member.revoking_since.is_some_and(|since| since + member.rebalance_timeout < now);
                if expired || stuck {
                    tracing::info!(member = %id, expired, stuck, "consumer group member removed");
                }
                !(expired || stuck)
            });
            if group.members.len() != before {
                group.epoch += 1;
            }
        }
        groups.retain(|_, group| !group.members.is_empty());
    }

    /// Forgets every group (the agent drains); members rejoin at the next coordinator.
    pub fn step_down(&self) {
        self.lock().clear();
    }
}

/// Moves `member_id` toward its target: first it gives up what the target takes from it (staying
/// at its epoch meanwhile); then it moves to the target epoch and gets what the target gives it,
/// except partitions another member still holds (added on a later heartbeat, once released).
fn reconcile(group: &mut Group, member_id: &str, now: Instant) -> HeartbeatReply {
    let target = group.target.get(member_id).cloned().unwrap_or_default();
    let held_by_others: Assignment =
        group.members.iter().filter(|(id, _)| id.as_str() != member_id).fold(Assignment::new(), |mut all, (_, other)| {
            for (topic, partitions) in other.assigned.iter().chain(other.revoking.iter()) {
                all.entry(topic.clone()).or_default().extend(partitions);
            }
            all
        });
    let member = group.members.get_mut(member_id).expect("the member was just seen");
    let to_revoke = minus(&member.assigned, &target);
    if count(&to_revoke) > 0 {
        for (topic, partitions) in &to_revoke {
            member.revoking.entry(topic.clone()).or_default().extend(partitions);
        }
        member.assigned = intersect(&member.assigned, &target);
        member.revoking_since.get_or_insert(now);
    }
    if count(&member.revoking) == 0 {
        member.revoking_since = None;
        member.epoch = group.assignment_epoch;
        let grantable = minus(&target, &held_by_others);
        for (topic, partitions) in grantable {
            member.assigned.entry(topic).or_default().extend(partitions);
        }
    }
    HeartbeatReply { member_id: member_id.to_string(), member_epoch: member.epoch, assignment: Some(member.assigned.clone()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heartbeat(member: &str, epoch: i32, owned: Option<&Assignment>) -> Heartbeat {
        Heartbeat {
            group_id: "g".into(),
            member_id: member.into(),
            member_epoch: epoch,
            instance_id: None,
            rack_id: None,
            rebalance_timeout_ms: 1_000,
            subscribed: (epoch == 0).then(|| BTreeSet::from(["t".to_string()])),
            assignor: None,
            owned: owned.cloned(),
            client_id: "c".into(),
            client_host: "h".into(),
        }
    }

    fn beat(groups: &ConsumerGroups, member: &str, epoch: i32, owned: Option<&Assignment>) -> HeartbeatReply {
        groups.heartbeat(heartbeat(member, epoch, owned), |_| Some(12), || unreachable!(), Instant::now()).expect("accepted")
    }

    fn partitions(reply: &HeartbeatReply) -> BTreeSet<i32> {
        reply.assignment.as_ref().and_then(|assignment| assignment.get("t").cloned()).unwrap_or_default()
    }

    #[test]
    fn a_partition_moves_only_after_its_previous_owner_released_it() {
        let groups = ConsumerGroups::default();
        let first = beat(&groups, "a", 0, None);
        assert_eq!(partitions(&first).len(), 12, "a lone member gets every partition");
        let owned_by_a = first.assignment.clone().unwrap();
        // b joins: the target splits 6/6, but b gets nothing a still owns.
        let joined = beat(&groups, "b", 0, None);
        assert!(partitions(&joined).is_empty(), "b must wait for a to release: {joined:?}");
        // a is told to give six up, at its old epoch.
        let revoking = beat(&groups, "a", first.member_epoch, Some(&owned_by_a));
        assert_eq!(partitions(&revoking).len(), 6);
        assert_eq!(revoking.member_epoch, first.member_epoch, "a stays at its epoch until it released");
        assert!(matches!(groups.check_commit("g", "a", first.member_epoch), Some(Ok(()))));
        // a reports it released them; it moves to the new epoch, and b gets the six.
        let released = beat(&groups, "a", first.member_epoch, revoking.assignment.as_ref());
        assert!(released.member_epoch > first.member_epoch);
        let granted = beat(&groups, "b", joined.member_epoch, Some(&Assignment::new()));
        assert_eq!(partitions(&granted).len(), 6);
        assert!(partitions(&granted).is_disjoint(&partitions(&released)));
        let stable = beat(&groups, "b", granted.member_epoch, granted.assignment.as_ref());
        assert_eq!(stable.member_epoch, released.member_epoch);
        assert_eq!(groups.describe("g").unwrap().state, "Stable");
        // An old epoch is fenced; a commit with it is stale.
        let old = groups.heartbeat(heartbeat("a", first.member_epoch, None), |_| Some(12), || unreachable!(), Instant::now());
        assert_eq!(old.unwrap_err().0, ResponseError::FencedMemberEpoch);
        assert_eq!(groups.check_commit("g", "a", first.member_epoch), Some(Err(ResponseError::StaleMemberEpoch)));
        // b leaves; a gets everything back.
        beat(&groups, "b", -1, None);
        let all = beat(&groups, "a", released.member_epoch, released.assignment.as_ref());
        assert_eq!(partitions(&all).len(), 12);
    }

    #[test]
    fn a_member_that_never_releases_is_removed_after_its_rebalance_timeout() {
        let groups = ConsumerGroups::default();
        let first = beat(&groups, "a", 0, None);
        beat(&groups, "b", 0, None);
        beat(&groups, "a", first.member_epoch, first.assignment.as_ref());
        groups.tick(Instant::now() + Duration::from_secs(2));
        let described = groups.describe("g").unwrap();
        assert_eq!(described.members.len(), 1, "a held its revoked partitions past its rebalance timeout");
        assert_eq!(described.members[0].member_id, "b");
    }
}
