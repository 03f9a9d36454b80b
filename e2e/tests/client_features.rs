//! The matrix cells the original client suites (e2e/tests/clients.rs) leave open: the Java
//! client's Admin API and idempotent producer, kafka-python's KafkaAdminClient and idempotent
//! producer, and kcat's balanced consumer groups and idempotent producer (librdkafka 2.0.2).
//! Idempotence is checked twice: by the client reading back every record exactly once, and by
//! reading the stored batch headers off the wire (one producer id, gapless sequence numbers).

use anyhow::{bail, ensure, Context, Result};
use floe_e2e::matrix::Cell;
use floe_e2e::verifiable::{self, Expected};
use floe_e2e::{batches, java_driver, kafka, python_driver, run_with_timeout, Playground};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DRIVER_TIMEOUT: Duration = Duration::from_secs(240);

/// Reads the stored batches of `topic` and checks they come from one idempotent producer that
/// wrote `records` records, each exactly once.
fn assert_one_idempotent_producer(bootstrap: &str, topic: &str, partitions: i32, records: usize) -> Result<()> {
    let log = batches::check_idempotent_batches(&batches::read_batch_headers(bootstrap, topic, partitions)?)?;
    println!("stored: {} batches, {} records, producer ids {:?}", log.batches, log.records, log.producer_ids);
    ensure!(log.records == records as i64, "the stored batches hold {} records, expected {records}", log.records);
    ensure!(log.producer_ids.len() == 1, "the batches carry producer ids {:?}, expected one", log.producer_ids);
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Java (kafka-clients 4.1.1)
// ------------------------------------------------------------------------------------------------

#[test]
fn the_java_admin_client_manages_topics_configs_and_groups() -> Result<()> {
    let admin = Cell::open(
        "java",
        "admin",
        "Admin: createTopics (twice: TopicExistsException), createPartitions 3 -> 5 (shrink refused), describeConfigs, \
         incrementalAlterConfigs SET/DELETE, listConsumerGroups, describeConsumerGroups, listConsumerGroupOffsets, \
         deleteConsumerGroups (GroupNotEmptyException while live, GroupIdNotFoundException twice), deleteTopics",
    );
    let playground = Playground::start(&[])?;
    let command = java_driver(&["admin", "--bootstrap", &playground.bootstrap, "--topic", "java-admin"])?;
    verifiable::run(command, DRIVER_TIMEOUT)?.check_admin_results("java-admin", "java-admin-admin-group", "floe-e2e-java")?;
    admin.pass();
    Ok(())
}

#[test]
fn the_java_idempotent_producer_writes_every_record_exactly_once() -> Result<()> {
    const RECORDS: usize = 50_000;
    let idempotence = Cell::open(
        "java",
        "idempotence",
        "50,000 records from enable.idempotence=true, acks=all, 5 requests in flight: read back exactly once at the acked \
         offsets, gapless; stored batches carry one producer id and sequences from 0 without gaps or repeats",
    );
    let playground = Playground::start(&[])?;
    let topic = "java-idempotence";
    let command = java_driver(&[
        "idempotence",
        "--bootstrap",
        &playground.bootstrap,
        "--topic",
        topic,
        "--partitions",
        "6",
        "--records",
        &RECORDS.to_string(),
    ])?;
    let events = verifiable::run(command, DRIVER_TIMEOUT)?;
    let expected = Expected::new(topic, 6, RECORDS as u64);
    let read_back = events.check_read_back(&expected)?;
    events.check_exactly_once(&expected, &read_back)?;
    assert_one_idempotent_producer(&playground.bootstrap, topic, 6, RECORDS)?;
    idempotence.pass();
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// kafka-python 3.0
// ------------------------------------------------------------------------------------------------

#[test]
fn the_kafka_python_admin_client_manages_topics_configs_and_groups() -> Result<()> {
    let admin = Cell::open(
        "kafka-python",
        "admin",
        "KafkaAdminClient: create_topics (twice: TopicAlreadyExistsError), create_partitions 3 -> 5 (shrink refused), \
         describe_configs, alter_configs SET/DELETE, list_groups, describe_groups, list_group_offsets, delete_groups \
         (NonEmptyGroupError while live, GroupIdNotFoundError twice), delete_topics",
    );
    let playground = Playground::start(&[])?;
    let command = python_driver(&["admin", "--bootstrap", &playground.bootstrap, "--topic", "python-admin"])?;
    verifiable::run(command, DRIVER_TIMEOUT)?.check_admin_results("python-admin", "python-admin-admin-group", "floe-e2e-python")?;
    admin.pass();
    Ok(())
}

#[test]
fn the_kafka_python_idempotent_producer_writes_every_record_exactly_once() -> Result<()> {
    const RECORDS: usize = 20_000;
    let idempotence = Cell::open(
        "kafka-python",
        "idempotence",
        "20,000 records from enable_idempotence=True, acks=all: read back exactly once at the acked offsets, gapless; \
         stored batches carry one producer id and sequences from 0 without gaps or repeats",
    );
    let playground = Playground::start(&[])?;
    let topic = "python-idempotence";
    let command = python_driver(&[
        "idempotence",
        "--bootstrap",
        &playground.bootstrap,
        "--topic",
        topic,
        "--partitions",
        "6",
        "--records",
        &RECORDS.to_string(),
    ])?;
    let events = verifiable::run(command, DRIVER_TIMEOUT)?;
    let expected = Expected::new(topic, 6, RECORDS as u64);
    let read_back = events.check_read_back(&expected)?;
    events.check_exactly_once(&expected, &read_back)?;
    assert_one_idempotent_producer(&playground.bootstrap, topic, 6, RECORDS)?;
    idempotence.pass();
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// kcat 1.7.1 on librdkafka 2.0.2
// ------------------------------------------------------------------------------------------------

fn kcat(bootstrap: &str) -> Command {
    let mut command = Command::new("kcat");
    command.arg("-b").arg(bootstrap).arg("-X").arg("client.id=floe-e2e-kcat");
    command
}

/// Writes `count` lines `key-%08d<TAB>value-<i>` for kcat -P -K'\t'.
fn kcat_input(path: &Path, count: usize) -> Result<()> {
    std::fs::write(path, (0..count).map(|index| format!("key-{index:08}\tvalue-{index}\n")).collect::<String>())?;
    Ok(())
}

/// One consumed line of `-f '%p\t%o\t%k\t%s\n'`: (partition, offset, index).
fn parse_kcat_line(line: &str) -> Result<(i32, i64, usize)> {
    let fields: Vec<&str> = line.split('\t').collect();
    let [partition, offset, key, value] = fields[..] else { bail!("unexpected kcat line {line:?}") };
    let index: usize = key.strip_prefix("key-").with_context(|| format!("unexpected key in {line:?}"))?.parse()?;
    ensure!(value == format!("value-{index}"), "record {index} has value {value:?}");
    Ok((partition.parse()?, offset.parse()?, index))
}

#[test]
fn kcat_idempotent_producer_writes_every_record_exactly_once() -> Result<()> {
    const RECORDS: usize = 20_000;
    const PARTITIONS: i32 = 6;
    let idempotence = Cell::open(
        "kcat",
        "idempotence",
        "kcat -P -X enable.idempotence=true (librdkafka 2.0.2), 20,000 lz4 records: kcat -C reads each exactly once with gapless \
         offsets; stored batches carry one producer id and sequences from 0 without gaps or repeats",
    );
    let playground = Playground::start(&[])?;
    let bootstrap = playground.bootstrap.as_str();
    let topic = "kcat-idempotence";
    tokio::runtime::Runtime::new()?.block_on(kafka::create_topic(bootstrap, topic, PARTITIONS))?;
    let work = tempfile::tempdir()?;
    let input = work.path().join("input.txt");
    kcat_input(&input, RECORDS)?;
    let mut produce = kcat(bootstrap);
    produce
        .args(["-P", "-t", topic, "-K", "\t", "-z", "lz4", "-X", "enable.idempotence=true", "-X", "acks=all"])
        .stdin(std::fs::File::open(&input)?);
    let produced = run_with_timeout(produce, Duration::from_secs(120))?;
    ensure!(produced.status.success(), "kcat -P failed: {}", produced.stderr);

    let mut consume = kcat(bootstrap);
    consume.args(["-C", "-t", topic, "-o", "beginning", "-e", "-f", "%p\t%o\t%k\t%s\n"]).stdin(Stdio::null());
    let consumed = run_with_timeout(consume, Duration::from_secs(120))?;
    ensure!(consumed.status.success(), "kcat -C failed: {}", consumed.stderr);
    let mut seen = vec![0u32; RECORDS];
    let mut next_offset: BTreeMap<i32, i64> = BTreeMap::new();
    for line in consumed.stdout.lines() {
        let (partition, offset, index) = parse_kcat_line(line)?;
        ensure!(index < RECORDS, "record {index} is out of range");
        seen[index] += 1;
        let expected = next_offset.get(&partition).copied().unwrap_or(0);
        ensure!(offset == expected, "partition {partition}: offset {offset} where {expected} was next (gap or repeat)");
        next_offset.insert(partition, offset + 1);
    }
    let duplicates: u32 = seen.iter().map(|times| times.saturating_sub(1)).sum();
    let missing = seen.iter().filter(|times| **times == 0).count();
    ensure!(duplicates == 0 && missing == 0, "kcat -C saw {duplicates} duplicates and missed {missing} of {RECORDS} records");
    assert_one_idempotent_producer(bootstrap, topic, PARTITIONS, RECORDS)?;
    idempotence.pass();
    Ok(())
}

/// How many partitions a consumer-protocol assignment (as DescribeGroups returns it) holds:
/// version i16, then topics [name (i16 length + bytes), partitions [i32]], then user data.
fn assigned_partition_count(assignment: &[u8]) -> Option<usize> {
    let mut rest = assignment.get(2..)?;
    let mut take = |count: usize| -> Option<&[u8]> {
        let (head, tail) = (rest.get(..count)?, rest.get(count..)?);
        rest = tail;
        Some(head)
    };
    let topics = i32::from_be_bytes(take(4)?.try_into().ok()?);
    let mut partitions = 0usize;
    for _ in 0..topics.max(0) {
        let name_length = i16::from_be_bytes(take(2)?.try_into().ok()?);
        take(name_length.max(0) as usize)?;
        let count = i32::from_be_bytes(take(4)?.try_into().ok()?).max(0) as usize;
        take(4 * count)?;
        partitions += count;
    }
    Some(partitions)
}

/// A `kcat -G` balanced-consumer member printing to a file, stopped with SIGTERM (kcat then
/// closes the consumer: final commit and LeaveGroup).
struct KcatMember {
    child: Option<Child>,
    output: PathBuf,
}

impl KcatMember {
    fn start(bootstrap: &str, group: &str, topic: &str, output: PathBuf) -> Result<Self> {
        let mut command = kcat(bootstrap);
        command
            .args(["-G", group, "-u", "-f", "%p\t%o\t%k\t%s\n", "-X", "topic.auto.offset.reset=earliest", topic])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&output)?)
            .stderr(std::fs::File::create(output.with_extension("log"))?);
        Ok(Self { child: Some(command.spawn().context("failed to start kcat -G")?), output })
    }

    fn lines(&self) -> Result<Vec<String>> {
        Ok(std::fs::read_to_string(&self.output)?.lines().map(str::to_string).collect())
    }

    /// Stops the member and prints its log (shown by the test harness when the test fails).
    fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            let log = self.output.with_extension("log");
            let _print_log = PrintOnDrop(log);
            Command::new("kill").arg("-TERM").arg(child.id().to_string()).status()?;
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(status) = child.try_wait()? {
                    ensure!(status.success(), "kcat -G exited with {status} after SIGTERM");
                    return Ok(());
                }
                if Instant::now() > deadline {
                    child.kill()?;
                    child.wait()?;
                    bail!("kcat -G did not exit within 30 s of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }
}

struct PrintOnDrop(PathBuf);

impl Drop for PrintOnDrop {
    fn drop(&mut self) {
        println!("--- {} ---\n{}", self.0.display(), std::fs::read_to_string(&self.0).unwrap_or_default());
    }
}

impl Drop for KcatMember {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn two_kcat_balanced_consumers_split_the_partitions_and_commit_what_they_read() -> Result<()> {
    const RECORDS: usize = 10_000;
    const PARTITIONS: i32 = 6;
    let groups = Cell::open(
        "kcat",
        "groups",
        "two kcat -G members (librdkafka 2.0.2 balanced consumer) reach a Stable group, split 6 partitions between them, \
         read 10,000 records exactly once, and commit the end offsets when stopped",
    );
    let playground = Playground::start(&[])?;
    let bootstrap = playground.bootstrap.as_str();
    let (topic, group) = ("kcat-groups", "kcat-balanced");
    tokio::runtime::Runtime::new()?.block_on(kafka::create_topic(bootstrap, topic, PARTITIONS))?;
    let work = tempfile::tempdir()?;
    let mut members = vec![
        KcatMember::start(bootstrap, group, topic, work.path().join("member-0.txt"))?,
        KcatMember::start(bootstrap, group, topic, work.path().join("member-1.txt"))?,
    ];

    // Both members joined and the assignment is synced before anything is produced, so no
    // rebalance can hand a partition over mid-stream.
    let observer: BaseConsumer = kafka::config(bootstrap).create()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = observer.fetch_group_list(Some(group), Duration::from_secs(10))?;
        let stable = list.groups().iter().any(|described| {
            described.name() == group
                && described.state() == "Stable"
                && described.members().len() == 2
                && described
                    .members()
                    .iter()
                    .all(|member| member.assignment().and_then(assigned_partition_count).is_some_and(|count| count > 0))
        });
        if stable {
            break;
        }
        ensure!(Instant::now() < deadline, "the two kcat members did not form a Stable group within 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }

    let input = work.path().join("input.txt");
    kcat_input(&input, RECORDS)?;
    let mut produce = kcat(bootstrap);
    produce.args(["-P", "-t", topic, "-K", "\t", "-X", "acks=all"]).stdin(std::fs::File::open(&input)?);
    let produced = run_with_timeout(produce, Duration::from_secs(120))?;
    ensure!(produced.status.success(), "kcat -P failed: {}", produced.stderr);

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let read: usize = members.iter().map(|member| member.lines().map(|lines| lines.len())).sum::<Result<usize>>()?;
        if read >= RECORDS {
            break;
        }
        ensure!(Instant::now() < deadline, "the kcat members read {read} of {RECORDS} records within 120 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    for member in &mut members {
        member.stop()?;
    }

    let mut seen = vec![0u32; RECORDS];
    let mut owners: BTreeMap<i32, BTreeSet<usize>> = BTreeMap::new();
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for (number, member) in members.iter().enumerate() {
        let mut next_offset: BTreeMap<i32, i64> = BTreeMap::new();
        for line in member.lines()? {
            let (partition, offset, index) = parse_kcat_line(&line)?;
            ensure!(index < RECORDS, "record {index} is out of range");
            seen[index] += 1;
            owners.entry(partition).or_default().insert(number);
            let expected = next_offset.get(&partition).copied().unwrap_or(0);
            ensure!(offset == expected, "member {number}, partition {partition}: offset {offset} where {expected} was next");
            next_offset.insert(partition, offset + 1);
            ends.insert(partition, offset + 1);
        }
    }
    let duplicates: u32 = seen.iter().map(|times| times.saturating_sub(1)).sum();
    let missing = seen.iter().filter(|times| **times == 0).count();
    ensure!(duplicates == 0 && missing == 0, "the group read {duplicates} duplicates and missed {missing} of {RECORDS} records");
    ensure!(owners.len() == PARTITIONS as usize, "records came from partitions {:?} only", owners.keys());
    ensure!(owners.values().all(|owner| owner.len() == 1), "a partition was read by both members: {owners:?}");
    let per_member: BTreeSet<usize> = owners.values().flatten().copied().collect();
    ensure!(per_member.len() == 2, "one member read every partition: {owners:?}");

    // The commits kcat made on the way out are the end offsets.
    let reader: BaseConsumer = kafka::config(bootstrap).set("group.id", group).create()?;
    let mut wanted = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        wanted.add_partition(topic, partition);
    }
    let committed = reader.committed_offsets(wanted, Duration::from_secs(10))?;
    for element in committed.elements() {
        let end = ends.get(&element.partition()).copied().unwrap_or(0);
        ensure!(
            element.offset() == Offset::Offset(end),
            "partition {} committed {:?}, the group read up to {end}",
            element.partition(),
            element.offset()
        );
    }
    groups.pass();
    Ok(())
}
