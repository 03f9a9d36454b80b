//! `floe demo`'s built-in traffic: producers writing to the `demo` topic and consumer groups
//! reading it, one of them deliberately slow so the console has lag to show. Each runs on a
//! thread of its own with the blocking client of `floe produce` and `floe consume`, for as long as
//! the process lives; an error (the agent still starting, a restart) is logged and retried.
//!
//! Each consumer is a member of its group (as `floe consume --group` is: [`Membership`]), so the
//! console and `floe group describe` show each group Stable with one member owning the six
//! partitions, besides its committed offsets and lag.

use super::client::{check_with_message, topic_name, Client};
use super::membership::{Membership, Status};
use super::records::{by_leader, encode_batch, fetch_once, group_positions, new_record};
use super::Start;
use anyhow::{Context, Result};
use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::records::Record;
use std::collections::{BTreeMap, VecDeque};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The topic the demo writes.
pub const TOPIC: &str = "demo";
pub const PARTITIONS: i32 = 6;
pub const PRODUCERS: usize = 2;
/// Records per second each producer writes, spread over the partitions.
pub const RECORDS_PER_SECOND_PER_PRODUCER: usize = 150;
/// A group that keeps up with the producers.
pub const FAST_GROUP: &str = "demo-readers";
/// A group that reads far less than is written, so its lag grows.
pub const SLOW_GROUP: &str = "demo-slow-readers";
pub const SLOW_RECORDS_PER_SECOND: usize = 30;

/// How often a producer sends (its records per second split over these ticks).
const PRODUCE_TICK: Duration = Duration::from_millis(250);
/// How long a thread waits before trying again after an error.
const RETRY_AFTER: Duration = Duration::from_secs(1);
const COMMIT_EVERY: Duration = Duration::from_secs(1);
/// The slow group's pace: one fetch of a small budget of records every this long.
const SLOW_TICK: Duration = Duration::from_secs(1);

/// Creates the demo topic (if it is missing) and starts the producer and consumer threads
/// against `bootstrap`.
pub fn start(bootstrap: &str) -> Vec<JoinHandle<()>> {
    let mut threads = Vec::new();
    for producer in 0..PRODUCERS {
        let bootstrap = bootstrap.to_string();
        threads.push(spawn(format!("demo-producer-{producer}"), move || produce(&bootstrap, producer)));
    }
    for (group, budget) in [(FAST_GROUP, None), (SLOW_GROUP, Some(SLOW_RECORDS_PER_SECOND))] {
        let bootstrap = bootstrap.to_string();
        threads.push(spawn(format!("demo-{group}"), move || consume(&bootstrap, group, budget)));
    }
    threads
}

/// Runs `body` on a named thread, again after [`RETRY_AFTER`] whenever it fails.
fn spawn(name: String, body: impl Fn() -> Result<()> + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || loop {
            if let Err(error) = body() {
                tracing::warn!(thread = %name, error = format!("{error:#}"), "demo traffic failed; retrying");
            }
            std::thread::sleep(RETRY_AFTER);
        })
        .expect("a thread starts")
}

/// The demo topic's partitions and their leaders, creating the topic first if needed.
fn demo_partitions(client: &mut Client) -> Result<Vec<(i32, i32)>> {
    let topic = CreatableTopic::default().with_name(topic_name(TOPIC)).with_num_partitions(PARTITIONS).with_replication_factor(-1);
    let request = CreateTopicsRequest::default().with_timeout_ms(30_000).with_topics(vec![topic]);
    let response: CreateTopicsResponse = client.call(ApiKey::CreateTopics, 7, &request)?;
    let result = response.topics.first().context("CreateTopics answered for no topic")?;
    if result.error_code != kafka_protocol::error::ResponseError::TopicAlreadyExists.code() {
        check_with_message(result.error_code, result.error_message.as_ref(), "creating the demo topic")?;
    }
    client.partition_leaders(TOPIC)
}

fn unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as i64)
}

/// A small order event, as a shop might publish.
fn order(producer: usize, sequence: u64, timestamp: i64) -> Record {
    let value = format!(
        "{{\"order\":{sequence},\"producer\":{producer},\"item\":\"sku-{}\",\"quantity\":{},\"cents\":{}}}",
        sequence % 97,
        1 + sequence % 5,
        199 + (sequence * 37) % 5_000
    );
    new_record(Some(Bytes::from(format!("customer-{}", sequence % 1_000))), Bytes::from(value), timestamp)
}

fn produce(bootstrap: &str, producer: usize) -> Result<()> {
    let mut client = Client::connect(bootstrap)?;
    let leaders = demo_partitions(&mut client)?;
    let per_tick = (RECORDS_PER_SECOND_PER_PRODUCER as f64 * PRODUCE_TICK.as_secs_f64()).ceil() as usize;
    let mut sequence = 0u64;
    let mut next_tick = Instant::now();
    loop {
        let timestamp = unix_ms();
        let mut by_partition: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
        for _ in 0..per_tick {
            let partition = (sequence % leaders.len() as u64) as i32;
            by_partition.entry(partition).or_default().push(order(producer, sequence, timestamp));
            sequence += 1;
        }
        let mut by_leader: BTreeMap<i32, Vec<PartitionProduceData>> = BTreeMap::new();
        for (partition, leader) in &leaders {
            if let Some(records) = by_partition.remove(partition) {
                by_leader
                    .entry(*leader)
                    .or_default()
                    .push(PartitionProduceData::default().with_index(*partition).with_records(Some(encode_batch(records)?)));
            }
        }
        for (leader, partitions) in by_leader {
            let request = ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![TopicProduceData::default().with_name(topic_name(TOPIC)).with_partition_data(partitions)]);
            let response: ProduceResponse = client.call_broker(leader, ApiKey::Produce, 9, &request)?;
            for answer in response.responses.iter().flat_map(|topic| &topic.partition_responses) {
                check_with_message(answer.error_code, answer.error_message.as_ref(), &format!("producing to {TOPIC}/{}", answer.index))?;
            }
        }
        next_tick += PRODUCE_TICK;
        std::thread::sleep(next_tick.saturating_duration_since(Instant::now()));
    }
}

/// Reads the demo topic as a member of `group` and commits what it read; with a `budget` it takes
/// at most that many records a second, whatever is waiting (the rest waits in memory, not
/// fetched again). A failure leaves the group (best effort) before [`spawn`] tries again.
fn consume(bootstrap: &str, group: &str, budget: Option<usize>) -> Result<()> {
    let mut client = Client::connect(bootstrap)?;
    let leaders = demo_partitions(&mut client)?;
    let mut membership = Membership::join(&mut client, group, TOPIC)?;
    let read = read_as_member(&mut client, &mut membership, &leaders, group, budget);
    if read.is_err() {
        let _ = membership.leave(&mut client);
    }
    read
}

fn read_as_member(
    client: &mut Client,
    membership: &mut Membership,
    leaders: &[(i32, i32)],
    group: &str,
    budget: Option<usize>,
) -> Result<()> {
    // `consumed`: the next offset to hand to the application (what is committed); `fetched`: the
    // next offset to fetch; the offsets between them wait in `waiting`.
    let mut consumed = group_positions(client, group, TOPIC, leaders, membership.partitions(), Start::Beginning)?;
    let mut fetched = consumed.clone();
    let mut waiting: BTreeMap<i32, VecDeque<i64>> = BTreeMap::new();
    // The slow group's share of its budget per partition and tick.
    let per_partition =
        budget.map(|budget| ((budget as f64 * SLOW_TICK.as_secs_f64()) / leaders.len().max(1) as f64).ceil().max(1.0) as usize);
    let mut last_commit = Instant::now();
    loop {
        let started = Instant::now();
        // Only the partitions with nothing waiting are fetched again.
        let empty: Vec<(i32, i32)> = leaders
            .iter()
            .copied()
            .filter(|(partition, _)| fetched.contains_key(partition) && waiting.get(partition).is_none_or(VecDeque::is_empty))
            .collect();
        fetch_once(client, TOPIC, &by_leader(&empty), &mut fetched, |partition, record| {
            waiting.entry(partition).or_default().push_back(record.offset);
            Ok(true)
        })?;
        for (partition, queue) in &mut waiting {
            let take = per_partition.unwrap_or(usize::MAX).min(queue.len());
            if let Some(last) = queue.drain(..take).next_back() {
                consumed.insert(*partition, last + 1);
            }
        }
        let mut status = membership.heartbeat_if_due(client)?;
        if status == Status::Member && last_commit.elapsed() >= COMMIT_EVERY {
            status = membership.commit(client, &consumed)?;
            last_commit = Instant::now();
        }
        if status == Status::Rebalancing {
            // Commit, rejoin, and start over from the commits of whatever partitions it now has.
            membership.commit(client, &consumed)?;
            membership.rejoin(client)?;
            consumed = group_positions(client, group, TOPIC, leaders, membership.partitions(), Start::Beginning)?;
            fetched = consumed.clone();
            waiting.clear();
        }
        if per_partition.is_some() {
            std::thread::sleep(SLOW_TICK.saturating_sub(started.elapsed()));
        } else if empty.is_empty() {
            // No partition (or all waiting): do not spin.
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}
