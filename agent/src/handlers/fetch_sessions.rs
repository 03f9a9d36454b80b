//! Incremental fetch sessions (KIP-227): the state machine and the bounded cache, without I/O.
//!
//! A session remembers, per partition a consumer fetches, its fetch offset and partition limit
//! (what the client would otherwise send in every request) and the offsets last sent (so an
//! incremental response carries only partitions with something new). Nothing here is durable or
//! shared between agents: a session the agent lost (restart, eviction, another agent) answers
//! FETCH_SESSION_ID_NOT_FOUND, and the client starts over with one full fetch.
//!
//! # Guarantees
//! - At most `slots` sessions and at most `max_cached_partitions` partitions over all of them;
//!   a session is created only when it fits (evicting the least recently used session idle for
//!   [`EVICTABLE_AFTER`]), otherwise the fetch is served without a session.
//! - A session answers only the principal that created it; to anyone else it does not exist.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::FetchResponse;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The epoch of a sessionless fetch, or of one closing its session (Kafka's FINAL_EPOCH).
pub const FINAL_EPOCH: i32 = -1;
/// The epoch of a full fetch that opens a session (Kafka's INITIAL_EPOCH).
pub const INITIAL_EPOCH: i32 = 0;
/// A session unused for longer than this may be evicted to make room for a new one.
pub const EVICTABLE_AFTER: Duration = Duration::from_secs(120);
/// Partitions all sessions may cache together (about 100 bytes each).
pub const MAX_CACHED_PARTITIONS: usize = 1_000_000;

/// Kafka's `nextEpoch`: after `i32::MAX` comes 1 (0 is reserved for a session's full fetch).
pub fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

/// One partition as a fetch asks for it (from the request, or from the session).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedPartition {
    pub topic: String,
    pub partition: i32,
    pub fetch_offset: i64,
    pub partition_max_bytes: i32,
}

/// What a Fetch request says about sessions, and what it lists.
#[derive(Debug, Clone)]
pub struct SessionRequest<'r> {
    pub session_id: i32,
    pub epoch: i32,
    pub principal: &'r Arc<str>,
    /// The request's partitions, each once, in request order (left empty with the final epoch,
    /// which never opens a session).
    pub partitions: Vec<WantedPartition>,
    /// `forgotten_topics_data`: partitions an incremental fetch removes from its session.
    pub forgotten: Vec<(String, i32)>,
}

/// How a fetch is served.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// No session: serve the request's partitions, answer session id 0.
    Sessionless,
    /// A new session from this full request: serve the request's partitions, answer every one
    /// ([`FetchSessions::respond`] with `full`) and the session id.
    Full { session_id: i32 },
    /// An incremental fetch: serve every partition of the session, in its order.
    Incremental { session_id: i32, partitions: Vec<WantedPartition> },
    /// A top-level error and no partitions.
    Refused(ResponseError),
}

/// What [`FetchSessions::open`] did besides deciding, for the metrics.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effects {
    pub evicted: usize,
    /// An incremental fetch would have grown the cache past its partition bound: its session was
    /// closed.
    pub over_partition_bound: bool,
}

/// The offsets a session last sent for a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sent {
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
}

#[derive(Debug)]
struct CachedPartition {
    wanted: WantedPartition,
    /// `None` until sent, and after an error (so the partition is sent again once it clears).
    sent: Option<Sent>,
}

#[derive(Debug)]
struct Session {
    principal: Arc<str>,
    /// The epoch the next incremental fetch must carry.
    next_epoch: i32,
    last_used: Instant,
    /// In fetch order; a partition that returned records moves to the end (as Kafka does), so
    /// a response budget is shared in turn.
    partitions: Vec<CachedPartition>,
    positions: HashMap<(String, i32), usize>,
}

impl Session {
    fn new(principal: Arc<str>, wanted: Vec<WantedPartition>, now: Instant) -> Self {
        let mut session = Session { principal, next_epoch: 1, last_used: now, partitions: Vec::new(), positions: HashMap::new() };
        for partition in wanted {
            session.upsert(partition);
        }
        session
    }

    fn upsert(&mut self, wanted: WantedPartition) {
        let key = (wanted.topic.clone(), wanted.partition);
        match self.positions.get(&key) {
            Some(&index) => self.partitions[index].wanted = wanted,
            None => {
                self.positions.insert(key, self.partitions.len());
                self.partitions.push(CachedPartition { wanted, sent: None });
            }
        }
    }

    fn reorder(&mut self, order: impl FnOnce(Vec<CachedPartition>) -> Vec<CachedPartition>) {
        self.partitions = order(std::mem::take(&mut self.partitions));
        self.positions = self
            .partitions
            .iter()
            .enumerate()
            .map(|(index, cached)| ((cached.wanted.topic.clone(), cached.wanted.partition), index))
            .collect();
    }
}

#[derive(Debug, Default)]
struct Cache {
    sessions: HashMap<i32, Session>,
    /// Partitions over all sessions.
    partitions: usize,
}

impl Cache {
    fn close(&mut self, session_id: i32) {
        if let Some(session) = self.sessions.remove(&session_id) {
            self.partitions -= session.partitions.len();
        }
    }

    /// The least recently used session idle for longer than [`EVICTABLE_AFTER`].
    fn evictable(&self, now: Instant) -> Option<i32> {
        self.sessions
            .iter()
            .filter(|(_, session)| now.saturating_duration_since(session.last_used) > EVICTABLE_AFTER)
            .min_by_key(|(_, session)| session.last_used)
            .map(|(&session_id, _)| session_id)
    }
}

/// The agent's fetch sessions (`AgentContext::fetch_sessions`).
#[derive(Debug)]
pub struct FetchSessions {
    slots: usize,
    max_cached_partitions: usize,
    cache: Mutex<Cache>,
}

impl FetchSessions {
    /// A cache of at most `slots` sessions (0: no sessions, every fetch is sessionless) holding
    /// at most `max_cached_partitions` partitions together.
    pub fn new(slots: usize, max_cached_partitions: usize) -> Self {
        Self { slots, max_cached_partitions, cache: Mutex::new(Cache::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decides how a fetch is served and updates the sessions as KIP-227 says (Kafka's
    /// `FetchSessionCache`/`FetchManager.newContext`): a full fetch (epoch 0 or -1) closes the
    /// session it names, and epoch 0 opens a new one; any other epoch is incremental on the
    /// session it names, which must exist for this principal and expect this epoch.
    pub fn open(&self, request: SessionRequest<'_>, now: Instant) -> (Opened, Effects) {
        let mut effects = Effects::default();
        let mut cache = self.lock();
        let owned =
            |cache: &Cache, session_id: i32| cache.sessions.get(&session_id).is_some_and(|session| &session.principal == request.principal);
        if request.epoch == INITIAL_EPOCH || request.epoch == FINAL_EPOCH {
            // Another principal's session is not closed: to this one it does not exist.
            if request.session_id != 0 && owned(&cache, request.session_id) {
                cache.close(request.session_id);
            }
            if request.epoch == FINAL_EPOCH || self.slots == 0 || request.partitions.len() > self.max_cached_partitions {
                return (Opened::Sessionless, effects);
            }
            // Room: a free slot and the partitions' share of the bound, made by evicting the
            // least recently used idle sessions if need be.
            while cache.sessions.len() >= self.slots || cache.partitions + request.partitions.len() > self.max_cached_partitions {
                let Some(evicted) = cache.evictable(now) else { return (Opened::Sessionless, effects) };
                cache.close(evicted);
                effects.evicted += 1;
            }
            let session_id = loop {
                let candidate = random_session_id();
                if !cache.sessions.contains_key(&candidate) {
                    break candidate;
                }
            };
            cache.partitions += request.partitions.len();
            cache.sessions.insert(session_id, Session::new(Arc::clone(request.principal), request.partitions, now));
            return (Opened::Full { session_id }, effects);
        }
        if !owned(&cache, request.session_id) {
            return (Opened::Refused(ResponseError::FetchSessionIdNotFound), effects);
        }
        let Cache { sessions, partitions: cached_total } = &mut *cache;
        let session = sessions.get_mut(&request.session_id).expect("checked above");
        if session.next_epoch != request.epoch {
            return (Opened::Refused(ResponseError::InvalidFetchSessionEpoch), effects);
        }
        let before = session.partitions.len();
        for wanted in request.partitions {
            session.upsert(wanted);
        }
        if !request.forgotten.is_empty() {
            let forgotten: std::collections::HashSet<(String, i32)> = request.forgotten.into_iter().collect();
            session.reorder(|partitions| {
                partitions
                    .into_iter()
                    .filter(|cached| !forgotten.contains(&(cached.wanted.topic.clone(), cached.wanted.partition)))
                    .collect()
            });
        }
        let after = session.partitions.len();
        *cached_total = *cached_total - before + after;
        if *cached_total > self.max_cached_partitions {
            cache.close(request.session_id);
            effects.over_partition_bound = true;
            return (Opened::Refused(ResponseError::FetchSessionIdNotFound), effects);
        }
        session.next_epoch = next_epoch(request.epoch);
        session.last_used = now;
        let partitions = session.partitions.iter().map(|cached| cached.wanted.clone()).collect();
        (Opened::Incremental { session_id: request.session_id, partitions }, effects)
    }

    /// Records what `response` sends for session `session_id` and, unless `full`, leaves out the
    /// partitions with nothing new: no records, no error, and the same high watermark, last
    /// stable offset and log start offset as last sent (Kafka's
    /// `CachedPartition.maybeUpdateResponseData`). A full response keeps every partition. A
    /// session closed meanwhile leaves the response whole (a superset is always valid).
    pub fn respond(&self, session_id: i32, full: bool, response: &mut FetchResponse) {
        let mut cache = self.lock();
        let Some(session) = cache.sessions.get_mut(&session_id) else { return };
        let mut with_records = Vec::new();
        for topic in &mut response.responses {
            let name = topic.topic.0.to_string();
            topic.partitions.retain(|data| {
                let Some(&index) = session.positions.get(&(name.clone(), data.partition_index)) else { return true };
                let cached = &mut session.partitions[index];
                let has_records = data.records.as_ref().is_some_and(|records| !records.is_empty());
                let sent = (data.error_code == 0).then_some(Sent {
                    high_watermark: data.high_watermark,
                    last_stable_offset: data.last_stable_offset,
                    log_start_offset: data.log_start_offset,
                });
                let changed = data.error_code != 0 || cached.sent != sent;
                cached.sent = sent;
                if has_records {
                    with_records.push(index);
                }
                full || has_records || changed
            });
        }
        response.responses.retain(|topic| !topic.partitions.is_empty());
        if !with_records.is_empty() {
            // Partitions that returned records go last, in their order.
            let mut moved = vec![false; session.partitions.len()];
            for index in with_records {
                moved[index] = true;
            }
            session.reorder(|partitions| {
                let (mut rest, mut last) = (Vec::with_capacity(partitions.len()), Vec::new());
                for (moved, cached) in moved.into_iter().zip(partitions) {
                    if moved {
                        last.push(cached)
                    } else {
                        rest.push(cached)
                    }
                }
                rest.append(&mut last);
                rest
            });
        }
    }
}

/// A random session id: positive, never 0 (0 means "no session"), unpredictable to another
/// client and unlikely to meet one from before a restart.
fn random_session_id() -> i32 {
    loop {
        let candidate = (uuid::Uuid::new_v4().as_u128() as u32 & i32::MAX as u32) as i32;
        if candidate != 0 {
            return candidate;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::topic_name;
    use bytes::Bytes;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};

    fn wanted(topic: &str, partition: i32, fetch_offset: i64) -> WantedPartition {
        WantedPartition { topic: topic.into(), partition, fetch_offset, partition_max_bytes: 1 << 20 }
    }

    fn request<'r>(principal: &'r Arc<str>, session_id: i32, epoch: i32, partitions: Vec<WantedPartition>) -> SessionRequest<'r> {
        SessionRequest { session_id, epoch, principal, partitions, forgotten: Vec::new() }
    }

    fn alice() -> Arc<str> {
        Arc::from("User:alice")
    }

    /// Opens a session of `partitions` for `principal`; returns its id.
    fn create(sessions: &FetchSessions, principal: &Arc<str>, partitions: Vec<WantedPartition>, now: Instant) -> i32 {
        match sessions.open(request(principal, 0, INITIAL_EPOCH, partitions), now).0 {
            Opened::Full { session_id } => session_id,
            other => panic!("no session: {other:?}"),
        }
    }

    fn served(opened: Opened) -> Vec<(String, i32, i64)> {
        match opened {
            Opened::Incremental { partitions, .. } => {
                partitions.into_iter().map(|wanted| (wanted.topic, wanted.partition, wanted.fetch_offset)).collect()
            }
            other => panic!("not incremental: {other:?}"),
        }
    }

    /// A response of `(topic, partition, high watermark, record bytes, error code)`.
    fn response(partitions: &[(&str, i32, i64, usize, i16)]) -> FetchResponse {
        let mut topics: Vec<FetchableTopicResponse> = Vec::new();
        for &(topic, partition, high_watermark, records, error_code) in partitions {
            let data = PartitionData::default()
                .with_partition_index(partition)
                .with_error_code(error_code)
                .with_high_watermark(high_watermark)
                .with_last_stable_offset(high_watermark)
                .with_log_start_offset(0)
                .with_records(Some(Bytes::from(vec![0u8; records])));
            match topics.iter_mut().find(|entry| entry.topic.0.as_str() == topic) {
                Some(entry) => entry.partitions.push(data),
                None => topics.push(FetchableTopicResponse::default().with_topic(topic_name(topic)).with_partitions(vec![data])),
            }
        }
        FetchResponse::default().with_responses(topics)
    }

    fn listed(response: &FetchResponse) -> Vec<(String, i32)> {
        response
            .responses
            .iter()
            .flat_map(|topic| topic.partitions.iter().map(|data| (topic.topic.0.to_string(), data.partition_index)))
            .collect()
    }

    #[test]
    fn a_full_fetch_with_epoch_zero_opens_a_session_and_the_final_epoch_stays_sessionless() {
        let sessions = FetchSessions::new(10, MAX_CACHED_PARTITIONS);
        let now = Instant::now();
        let principal = alice();
        assert_eq!(sessions.open(request(&principal, 0, FINAL_EPOCH, vec![wanted("a", 0, 0)]), now).0, Opened::Sessionless);
        assert!(sessions.is_empty());
        let first = create(&sessions, &principal, vec![wanted("a", 0, 0)], now);
        let second = create(&sessions, &principal, vec![wanted("a", 0, 0)], now);
        assert!(first > 0 && second > 0 && first != second, "{first} {second}");
        assert_eq!(sessions.len(), 2);
    }

    #[test]
    fn an_incremental_fetch_adds_and_updates_partitions_and_forgets_the_forgotten_ones() {
        let sessions = FetchSessions::new(10, MAX_CACHED_PARTITIONS);
        let now = Instant::now();
        let principal = alice();
        let id = create(&sessions, &principal, vec![wanted("a", 0, 5), wanted("a", 1, 7)], now);
        // Nothing listed: the whole session is fetched.
        assert_eq!(served(sessions.open(request(&principal, id, 1, vec![]), now).0), vec![("a".into(), 0, 5), ("a".into(), 1, 7)]);
        // An update keeps its place, a new partition goes last.
        let update = vec![wanted("a", 1, 9), wanted("b", 0, 0)];
        assert_eq!(
            served(sessions.open(request(&principal, id, 2, update), now).0),
            vec![("a".into(), 0, 5), ("a".into(), 1, 9), ("b".into(), 0, 0)]
        );
        let mut forget = request(&principal, id, 3, vec![]);
        forget.forgotten = vec![("a".into(), 0), ("unknown".into(), 3)];
        assert_eq!(served(sessions.open(forget, now).0), vec![("a".into(), 1, 9), ("b".into(), 0, 0)]);
        assert_eq!(sessions.lock().partitions, 2);
    }

    #[test]
    fn a_wrong_epoch_or_an_unknown_id_is_refused_and_the_session_survives_a_wrong_epoch() {
        let sessions = FetchSessions::new(10, MAX_CACHED_PARTITIONS);
        let now = Instant::now();
        let principal = alice();
        let id = create(&sessions, &principal, vec![wanted("a", 0, 0)], now);
        assert_eq!(sessions.open(request(&principal, id, 2, vec![]), now).0, Opened::Refused(ResponseError::InvalidFetchSessionEpoch));
        assert_eq!(
            sessions.open(request(&principal, id.wrapping_add(1).max(1), 1, vec![]), now).0,
            Opened::Refused(ResponseError::FetchSessionIdNotFound)
        );
        assert_eq!(sessions.open(request(&principal, 0, 1, vec![]), now).0, Opened::Refused(ResponseError::FetchSessionIdNotFound));
        assert_eq!(served(sessions.open(request(&principal, id, 1, vec![]), now).0).len(), 1);
        // The same epoch twice: the second is refused.
        assert_eq!(sessions.open(request(&principal, id, 1, vec![]), now).0, Opened::Refused(ResponseError::InvalidFetchSessionEpoch));
    }

    #[test]
    fn a_session_does_not_exist_for_another_principal_who_can_neither_use_nor_close_it() {
        let sessions = FetchSessions::new(10, MAX_CACHED_PARTITIONS);
        let now = Instant::now();
        let (owner, intruder): (Arc<str>, Arc<str>) = (alice(), Arc::from("User:mallory"));
        let id = create(&sessions, &owner, vec![wanted("a", 0, 0)], now);
        assert_eq!(sessions.open(request(&intruder, id, 1, vec![]), now).0, Opened::Refused(ResponseError::FetchSessionIdNotFound));
        assert_eq!(sessions.open(request(&intruder, id, FINAL_EPOCH, vec![]), now).0, Opened::Sessionless);
        assert_eq!(served(sessions.open(request(&owner, id, 1, vec![]), now).0).len(), 1, "the owner's session is intact");
    }

    #[test]
    fn a_full_fetch_naming_its_session_closes_it_and_epoch_zero_opens_another() {
        let sessions = FetchSessions::new(10, MAX_CACHED_PARTITIONS);
        let now = Instant::now();
        let principal = alice();
        let id = create(&sessions, &principal, vec![wanted("a", 0, 0)], now);
        let replaced = match sessions.open(request(&principal, id, INITIAL_EPOCH, vec![wanted("b", 0, 0)]), now).0 {
            Opened::Full { session_id } => session_id,
            other => panic!("{other:?}"),
        };
        assert_ne!(replaced, id);
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions.open(request(&principal, id, 1, vec![]), now).0, Opened::Refused(ResponseError::FetchSessionIdNotFound));
        assert_eq!(sessions.open(request(&principal, replaced, FINAL_EPOCH, vec![]), now).0, Opened::Sessionless);
        assert!(sessions.is_empty());
        assert_eq!(sessions.lock().partitions, 0);
    }

    #[test]
    fn at_capacity_only_a_session_idle_for_two_minutes_is_evicted_the_least_recently_used_first() {
        let sessions = FetchSessions::new(2, MAX_CACHED_PARTITIONS);
        let start = Instant::now();
        let principal = alice();
        let older = create(&sessions, &principal, vec![wanted("a", 0, 0)], start);
        let newer = create(&sessions, &principal, vec![wanted("a", 0, 0)], start + Duration::from_secs(10));
        // Full, nobody idle long enough: served without a session.
        let soon = start + Duration::from_secs(60);
        assert_eq!(
            sessions.open(request(&principal, 0, INITIAL_EPOCH, vec![wanted("a", 0, 0)]), soon),
            (Opened::Sessionless, Effects::default())
        );
        let later = start + EVICTABLE_AFTER + Duration::from_secs(20);
        let (opened, effects) = sessions.open(request(&principal, 0, INITIAL_EPOCH, vec![wanted("a", 0, 0)]), later);
        assert!(matches!(opened, Opened::Full { .. }), "{opened:?}");
        assert_eq!(effects.evicted, 1);
        assert_eq!(sessions.len(), 2);
        assert_eq!(sessions.open(request(&principal, older, 1, vec![]), later).0, Opened::Refused(ResponseError::FetchSessionIdNotFound));
        assert!(matches!(sessions.open(request(&principal, newer, 1, vec![]), later).0, Opened::Incremental { .. }));
    }

    #[test]
    fn a_hostile_client_opening_sessions_in_a_loop_never_holds_more_than_the_slots() {
        let sessions = FetchSessions::new(3, MAX_CACHED_PARTITIONS);
        let now = Instant::now();
        let principal = alice();
        let opened = (0..1000)
            .filter(|_| matches!(sessions.open(request(&principal, 0, INITIAL_EPOCH, vec![wanted("a", 0, 0)]), now).0, Opened::Full { .. }))
            .count();
        assert_eq!(opened, 3);
        assert_eq!(sessions.len(), 3);
    }

    #[test]
    fn the_partition_bound_refuses_a_session_too_large_and_closes_one_that_grows_past_it() {
        let sessions = FetchSessions::new(10, 3);
        let now = Instant::now();
        let principal = alice();
        let four = (0..4).map(|partition| wanted("a", partition, 0)).collect();
        assert_eq!(sessions.open(request(&principal, 0, INITIAL_EPOCH, four), now).0, Opened::Sessionless);
        let id = create(&sessions, &principal, vec![wanted("a", 0, 0), wanted("a", 1, 0)], now);
        let (opened, effects) = sessions.open(request(&principal, id, 1, vec![wanted("a", 2, 0), wanted("a", 3, 0)]), now);
        assert_eq!(opened, Opened::Refused(ResponseError::FetchSessionIdNotFound));
        assert!(effects.over_partition_bound);
        assert!(sessions.is_empty());
        assert_eq!(sessions.lock().partitions, 0);
    }

    #[test]
    fn zero_slots_disable_sessions() {
        let sessions = FetchSessions::new(0, MAX_CACHED_PARTITIONS);
        let principal = alice();
        assert_eq!(sessions.open(request(&principal, 0, INITIAL_EPOCH, vec![wanted("a", 0, 0)]), Instant::now()).0, Opened::Sessionless);
        assert!(sessions.is_empty());
    }

    #[test]
    fn the_epoch_after_i32_max_is_one() {
        assert_eq!(next_epoch(0), 1);
        assert_eq!(next_epoch(i32::MAX), 1);
        let sessions = FetchSessions::new(10, MAX_CACHED_PARTITIONS);
        let now = Instant::now();
        let principal = alice();
        let id = create(&sessions, &principal, vec![wanted("a", 0, 0)], now);
        sessions.lock().sessions.get_mut(&id).expect("live").next_epoch = i32::MAX;
        assert!(matches!(sessions.open(request(&principal, id, i32::MAX, vec![]), now).0, Opened::Incremental { .. }));
        assert!(matches!(sessions.open(request(&principal, id, 1, vec![]), now).0, Opened::Incremental { .. }));
    }

    #[test]
    fn an_incremental_response_carries_only_partitions_with_records_errors_or_moved_offsets() {
        let sessions = FetchSessions::new(10, MAX_CACHED_PARTITIONS);
        let now = Instant::now();
        let principal = alice();
        let id = create(&sessions, &principal, vec![wanted("a", 0, 0), wanted("a", 1, 0), wanted("b", 0, 0)], now);
        let mut full = response(&[("a", 0, 10, 0, 0), ("a", 1, 10, 0, 0), ("b", 0, 10, 0, 0)]);
        sessions.respond(id, true, &mut full);
        assert_eq!(listed(&full).len(), 3, "a full response keeps every partition");

        served(sessions.open(request(&principal, id, 1, vec![]), now).0);
        let mut nothing_new = response(&[("a", 0, 10, 0, 0), ("a", 1, 10, 0, 0), ("b", 0, 10, 0, 0)]);
        sessions.respond(id, false, &mut nothing_new);
        assert!(nothing_new.responses.is_empty(), "{nothing_new:?}");

        // a-0 has records, a-1's high watermark moved, b-0 fails.
        let mut changed = response(&[("a", 0, 10, 64, 0), ("a", 1, 11, 0, 0), ("b", 0, -1, 0, 6)]);
        sessions.respond(id, false, &mut changed);
        assert_eq!(listed(&changed), vec![("a".into(), 0), ("a".into(), 1), ("b".into(), 0)]);

        // The error cleared: b-0 is sent again; a-1 is unchanged now. a-0 returned records, so
        // it went last in the session's order.
        assert_eq!(
            served(sessions.open(request(&principal, id, 2, vec![]), now).0),
            vec![("a".into(), 1, 0), ("b".into(), 0, 0), ("a".into(), 0, 0)]
        );
        let mut recovered = response(&[("a", 1, 11, 0, 0), ("b", 0, 10, 0, 0), ("a", 0, 10, 0, 0)]);
        sessions.respond(id, false, &mut recovered);
        assert_eq!(listed(&recovered), vec![("b".into(), 0)]);
    }
}
