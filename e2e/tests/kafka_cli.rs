//! Apache Kafka's own command-line tools (4.1.1, run from the Maven Central jars that
//! install-deps.sh caches) against a playground process: kafka-topics, kafka-configs,
//! kafka-console-producer/-consumer, kafka-consumer-groups and the verifiable producer and consumer
//! that Kafka's system tests use. Every assertion parses the tools' output. Also the README's
//! `floe topic`/`produce`/`consume`/`group` commands, run verbatim.

use anyhow::{bail, ensure, Context, Result};
use floe_e2e::matrix::Cell;
use floe_e2e::{batches, kafka, kafka_tool, run_with_timeout, wait_until, Finished, Playground};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOPICS: &str = "org.apache.kafka.tools.TopicCommand";
const CONFIGS: &str = "kafka.admin.ConfigCommand";
const CONSOLE_PRODUCER: &str = "org.apache.kafka.tools.ConsoleProducer";
const CONSOLE_CONSUMER: &str = "org.apache.kafka.tools.consumer.ConsoleConsumer";
const CONSUMER_GROUPS: &str = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand";
const VERIFIABLE_PRODUCER: &str = "org.apache.kafka.tools.VerifiableProducer";
const VERIFIABLE_CONSUMER: &str = "org.apache.kafka.tools.VerifiableConsumer";

const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// What a tool printed, whether or not it succeeded.
struct ToolRun {
    success: bool,
    stdout: String,
    stderr: String,
}

fn run_tool(main_class: &str, arguments: &[&str], stdin: Option<&Path>) -> Result<ToolRun> {
    let mut command = kafka_tool(main_class, arguments)?;
    match stdin {
        Some(path) => command.stdin(std::fs::File::open(path).with_context(|| format!("failed to open {}", path.display()))?),
        None => command.stdin(Stdio::null()),
    };
    let finished = run_with_timeout(command, TOOL_TIMEOUT)?;
    Ok(ToolRun { success: finished.status.success(), stdout: finished.stdout, stderr: finished.stderr })
}

/// Runs a tool that must succeed and returns its stdout.
fn tool(main_class: &str, arguments: &[&str]) -> Result<String> {
    tool_with_stdin(main_class, arguments, None)
}

fn tool_with_stdin(main_class: &str, arguments: &[&str], stdin: Option<&Path>) -> Result<String> {
    let run = run_tool(main_class, arguments, stdin)?;
    ensure!(run.success, "{main_class} {arguments:?} failed\n--- stdout ---\n{}\n--- stderr ---\n{}", run.stdout, run.stderr);
    Ok(run.stdout)
}

// ------------------------------------------------------------------------------------------------
// kafka-topics and kafka-configs
// ------------------------------------------------------------------------------------------------

/// One `kafka-topics --describe` line, as `Key: value` pairs split on tabs.
fn describe_fields(line: &str) -> HashMap<String, String> {
    line.trim()
        .split('\t')
        .filter_map(|field| field.split_once(": "))
        .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
        .collect()
}

/// (partition count from the topic line, configs from the topic line, partition -> leader).
fn describe_topic(bootstrap: &str, topic: &str) -> Result<(usize, String, BTreeMap<i32, i32>)> {
    let output = tool(TOPICS, &["--bootstrap-server", bootstrap, "--describe", "--topic", topic])?;
    let mut count = None;
    let mut configs = String::new();
    let mut leaders = BTreeMap::new();
    for line in output.lines().filter(|line| !line.trim().is_empty()) {
        let fields = describe_fields(line);
        ensure!(fields.get("Topic").map(String::as_str) == Some(topic), "unexpected describe line {line:?}");
        if let Some(partition) = fields.get("Partition") {
            let leader = fields.get("Leader").context("partition line without a leader")?.parse()?;
            ensure!(fields.get("Replicas") == fields.get("Isr"), "replicas and ISR differ in {line:?}");
            leaders.insert(partition.parse()?, leader);
        } else {
            count = Some(fields.get("PartitionCount").context("topic line without PartitionCount")?.parse()?);
            configs = fields.get("Configs").cloned().unwrap_or_default();
        }
    }
    Ok((count.context("kafka-topics --describe printed no topic line")?, configs, leaders))
}

fn list_topics(bootstrap: &str) -> Result<BTreeSet<String>> {
    Ok(tool(TOPICS, &["--bootstrap-server", bootstrap, "--list"])?.lines().map(|line| line.trim().to_string()).collect())
}

/// The dynamic configs `kafka-configs --describe` lists for a topic (`  key=value sensitive=...`).
fn dynamic_topic_configs(bootstrap: &str, topic: &str) -> Result<BTreeMap<String, String>> {
    let output = tool(CONFIGS, &["--bootstrap-server", bootstrap, "--entity-type", "topics", "--entity-name", topic, "--describe"])?;
    let mut lines = output.lines();
    let header = format!("Dynamic configs for topic {topic} are:");
    ensure!(lines.next().map(str::trim) == Some(header.as_str()), "kafka-configs --describe printed {output:?}");
    lines
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let setting = line.split_whitespace().next().unwrap_or_default();
            let (key, value) = setting.split_once('=').with_context(|| format!("malformed config line {line:?}"))?;
            Ok((key.to_string(), value.to_string()))
        })
        .collect()
}

#[test]
fn kafka_topics_and_kafka_configs_create_describe_grow_configure_and_delete_a_topic() -> Result<()> {
    let admin = Cell::open(
        "kafka-cli",
        "admin",
        "kafka-topics --create (twice: refused), --list, --describe, --alter --partitions 3 -> 6, --delete; \
         kafka-configs --alter --add-config / --delete-config and --describe of the dynamic configs",
    );
    let playground = Playground::start(&[])?;
    let bootstrap = playground.bootstrap.as_str();
    let topic = "cli-topics";

    let created = tool(
        TOPICS,
        &[
            "--bootstrap-server",
            bootstrap,
            "--create",
            "--topic",
            topic,
            "--partitions",
            "3",
            "--replication-factor",
            "1",
            "--config",
            "retention.ms=3600000",
        ],
    )?;
    ensure!(created.contains(&format!("Created topic {topic}.")), "kafka-topics --create printed {created:?}");
    let again = run_tool(TOPICS, &["--bootstrap-server", bootstrap, "--create", "--topic", topic, "--partitions", "3"], None)?;
    ensure!(
        !again.success && format!("{}{}", again.stdout, again.stderr).contains("already exists"),
        "creating {topic} twice: success {}, output {:?} {:?}",
        again.success,
        again.stdout,
        again.stderr
    );
    ensure!(list_topics(bootstrap)?.contains(topic), "kafka-topics --list does not list {topic}");

    let (count, configs, leaders) = describe_topic(bootstrap, topic)?;
    ensure!(count == 3 && leaders.keys().copied().eq(0..3), "described {count} partitions: {leaders:?}");
    ensure!(leaders.values().all(|leader| *leader == 1), "partition leaders {leaders:?}, expected the playground's node 1");
    ensure!(configs.contains("retention.ms=3600000"), "the topic's configs are described as {configs:?}");

    tool(TOPICS, &["--bootstrap-server", bootstrap, "--alter", "--topic", topic, "--partitions", "6"])?;
    let (count, _, leaders) = describe_topic(bootstrap, topic)?;
    ensure!(count == 6 && leaders.keys().copied().eq(0..6), "after --alter --partitions 6: {count} partitions, {leaders:?}");

    let altered = tool(
        CONFIGS,
        &[
            "--bootstrap-server",
            bootstrap,
            "--entity-type",
            "topics",
            "--entity-name",
            topic,
            "--alter",
            "--add-config",
            "retention.ms=123456,retention.bytes=4096",
        ],
    )?;
    ensure!(altered.contains(&format!("Completed updating config for topic {topic}.")), "kafka-configs --alter printed {altered:?}");
    let dynamic = dynamic_topic_configs(bootstrap, topic)?;
    let expected: BTreeMap<String, String> =
        [("retention.bytes", "4096"), ("retention.ms", "123456")].map(|(key, value)| (key.to_string(), value.to_string())).into();
    ensure!(dynamic == expected, "dynamic configs after --add-config: {dynamic:?}");
    tool(
        CONFIGS,
        &[
            "--bootstrap-server",
            bootstrap,
            "--entity-type",
            "topics",
            "--entity-name",
            topic,
            "--alter",
            "--delete-config",
            "retention.bytes",
        ],
    )?;
    let dynamic = dynamic_topic_configs(bootstrap, topic)?;
    let expected: BTreeMap<String, String> = [("retention.ms".to_string(), "123456".to_string())].into();
    ensure!(dynamic == expected, "dynamic configs after --delete-config retention.bytes: {dynamic:?}");

    tool(TOPICS, &["--bootstrap-server", bootstrap, "--delete", "--topic", topic])?;
    wait_until("the deleted topic to leave kafka-topics --list", Duration::from_secs(30), || Ok(!list_topics(bootstrap)?.contains(topic)))?;
    admin.pass();
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// kafka-console-producer and kafka-console-consumer
// ------------------------------------------------------------------------------------------------

/// One line the console producer reads: headers, key and value separated by tabs.
fn console_line(index: usize, codec: &str) -> String {
    format!("h-index:{index},h-codec:{codec}\tk{}\tline-{index}\n", index % 7)
}

#[test]
fn console_producer_and_console_consumer_round_trip_keyed_lines_with_headers_in_every_codec() -> Result<()> {
    const PER_CODEC: usize = 400;
    let produce = Cell::open(
        "kafka-cli",
        "produce",
        "kafka-console-producer: 2,000 lines with keys and headers, one run per codec (none, gzip, snappy, lz4, zstd), acks=all",
    );
    let consume = Cell::open(
        "kafka-cli",
        "consume",
        "kafka-console-consumer --from-beginning prints every line once with its key and headers, offsets contiguous per partition, \
         one partition per key, send order kept",
    );
    let playground = Playground::start(&[])?;
    let bootstrap = playground.bootstrap.as_str();
    let topic = "cli-console";
    tokio::runtime::Runtime::new()?.block_on(kafka::create_topic(bootstrap, topic, 3))?;
    let input = tempfile::tempdir()?;
    for (codec_index, codec) in ["none", "gzip", "snappy", "lz4", "zstd"].into_iter().enumerate() {
        let path = input.path().join(format!("{codec}.txt"));
        let lines: String = (codec_index * PER_CODEC..(codec_index + 1) * PER_CODEC).map(|index| console_line(index, codec)).collect();
        std::fs::write(&path, lines)?;
        tool_with_stdin(
            CONSOLE_PRODUCER,
            &[
                "--bootstrap-server",
                bootstrap,
                "--topic",
                topic,
                "--compression-codec",
                codec,
                "--producer-property",
                "acks=all",
                "--property",
                "parse.key=true",
                "--property",
                "parse.headers=true",
            ],
            Some(&path),
        )?;
    }
    let total = 5 * PER_CODEC;
    let output = tool(
        CONSOLE_CONSUMER,
        &[
            "--bootstrap-server",
            bootstrap,
            "--topic",
            topic,
            "--from-beginning",
            "--max-messages",
            &total.to_string(),
            "--timeout-ms",
            "60000",
            "--group",
            "cli-console-group",
            "--property",
            "print.partition=true",
            "--property",
            "print.offset=true",
            "--property",
            "print.headers=true",
            "--property",
            "print.key=true",
        ],
    )?;

    let codec_of = |index: usize| ["none", "gzip", "snappy", "lz4", "zstd"][index / PER_CODEC];
    let mut seen = vec![false; total];
    let mut next_offset: BTreeMap<i32, i64> = BTreeMap::new();
    let mut last_index: BTreeMap<i32, usize> = BTreeMap::new();
    let mut partition_of_key: BTreeMap<String, i32> = BTreeMap::new();
    let lines: Vec<&str> = output.lines().filter(|line| !line.is_empty()).collect();
    ensure!(lines.len() == total, "the console consumer printed {} lines, expected {total}", lines.len());
    for line in lines {
        let fields: Vec<&str> = line.split('\t').collect();
        let [partition, offset, headers, key, value] = fields[..] else { bail!("unexpected console consumer line {line:?}") };
        let partition: i32 = partition.strip_prefix("Partition:").context("no partition")?.parse()?;
        let offset: i64 = offset.strip_prefix("Offset:").context("no offset")?.parse()?;
        let index: usize = value.strip_prefix("line-").with_context(|| format!("unexpected value in {line:?}"))?.parse()?;
        ensure!(index < total && !seen[index], "line {index} printed twice or out of range");
        seen[index] = true;
        let expected = console_line(index, codec_of(index));
        ensure!(format!("{headers}\t{key}\t{value}\n") == expected, "line {index} came back as {line:?}");
        let wanted = next_offset.get(&partition).copied().unwrap_or(0);
        ensure!(offset == wanted, "partition {partition}: offset {offset} printed where {wanted} was next");
        next_offset.insert(partition, offset + 1);
        if let Some(previous) = last_index.insert(partition, index) {
            ensure!(previous < index, "partition {partition}: line {index} printed after line {previous}");
        }
        let owner = *partition_of_key.entry(key.to_string()).or_insert(partition);
        ensure!(owner == partition, "key {key} is in partitions {owner} and {partition}");
    }
    ensure!(next_offset.values().sum::<i64>() == total as i64, "offsets {next_offset:?}");
    produce.pass();
    consume.pass();
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// kafka-consumer-groups
// ------------------------------------------------------------------------------------------------

/// A row of the `kafka-consumer-groups --describe` offsets table.
#[derive(Debug)]
struct GroupRow {
    partition: i32,
    current_offset: i64,
    log_end_offset: i64,
    lag: i64,
    consumer_id: String,
}

fn describe_group(bootstrap: &str, group: &str) -> Result<Vec<GroupRow>> {
    let output = tool(CONSUMER_GROUPS, &["--bootstrap-server", bootstrap, "--describe", "--group", group])?;
    let mut lines = output.lines().skip_while(|line| !line.starts_with("GROUP"));
    let header: Vec<&str> = lines.next().with_context(|| format!("no offsets table in {output:?}"))?.split_whitespace().collect();
    let column = |name: &str| header.iter().position(|title| *title == name).with_context(|| format!("no {name} column in {header:?}"));
    let (partition, current, end, lag, consumer) =
        (column("PARTITION")?, column("CURRENT-OFFSET")?, column("LOG-END-OFFSET")?, column("LAG")?, column("CONSUMER-ID")?);
    let mut rows = Vec::new();
    for line in lines.take_while(|line| !line.trim().is_empty()) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        ensure!(cells.len() == header.len() && cells[0] == group, "unexpected row {line:?}");
        rows.push(GroupRow {
            partition: cells[partition].parse()?,
            current_offset: cells[current].parse().with_context(|| format!("CURRENT-OFFSET in {line:?}"))?,
            log_end_offset: cells[end].parse()?,
            lag: cells[lag].parse().with_context(|| format!("LAG in {line:?}"))?,
            consumer_id: cells[consumer].to_string(),
        });
    }
    rows.sort_by_key(|row| row.partition);
    Ok(rows)
}

fn list_groups(bootstrap: &str) -> Result<BTreeSet<String>> {
    Ok(tool(CONSUMER_GROUPS, &["--bootstrap-server", bootstrap, "--list"])?.lines().map(|line| line.trim().to_string()).collect())
}

/// A long-running console consumer in a group, stopped with SIGTERM (its shutdown hook leaves
/// the group) when dropped.
struct LiveConsumer(Option<Child>);

impl LiveConsumer {
    fn start(bootstrap: &str, topic: &str, group: &str, output: &Path) -> Result<Self> {
        Self::start_with(bootstrap, topic, group, output, &[])
    }

    /// [`LiveConsumer::start`] with more console-consumer arguments.
    fn start_with(bootstrap: &str, topic: &str, group: &str, output: &Path, extra: &[&str]) -> Result<Self> {
        let mut arguments = vec!["--bootstrap-server", bootstrap, "--topic", topic, "--group", group];
        arguments.extend_from_slice(extra);
        let mut command: Command = kafka_tool(CONSOLE_CONSUMER, &arguments)?;
        let log = std::fs::File::create(output.with_extension("log"))?;
        let child = command.stdin(Stdio::null()).stdout(std::fs::File::create(output)?).stderr(log).spawn()?;
        Ok(Self(Some(child)))
    }

    fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.0.take() {
            Command::new("kill").arg("-TERM").arg(child.id().to_string()).status()?;
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    child.kill()?;
                    child.wait()?;
                    bail!("the console consumer did not exit within 30 s of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }
}

impl Drop for LiveConsumer {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn kafka_consumer_groups_reports_lag_resets_offsets_shows_members_and_deletes_a_group() -> Result<()> {
    const RECORDS: i64 = 1000;
    const CONSUMED: i64 = 300;
    let groups = Cell::open(
        "kafka-cli",
        "groups",
        "kafka-consumer-groups: --describe shows CURRENT-OFFSET/LOG-END-OFFSET/LAG after a console consumer read 300 of 1,000 \
         (lag 700), --reset-offsets --to-earliest (lag 1,000), a live member owning both partitions with lag 0, --list, --delete",
    );
    let playground = Playground::start(&[])?;
    let bootstrap = playground.bootstrap.as_str();
    let (topic, group) = ("cli-lag", "cli-lag-group");
    tokio::runtime::Runtime::new()?.block_on(kafka::create_topic(bootstrap, topic, 2))?;
    let work = tempfile::tempdir()?;
    let input = work.path().join("input.txt");
    std::fs::write(&input, (0..RECORDS).map(|index| format!("k{}\tv-{index}\n", index % 5)).collect::<String>())?;
    tool_with_stdin(
        CONSOLE_PRODUCER,
        &["--bootstrap-server", bootstrap, "--topic", topic, "--producer-property", "acks=all", "--property", "parse.key=true"],
        Some(&input),
    )?;

    // One poll returns one record, so the position the consumer commits on close is exactly what it printed.
    let consumed = tool(
        CONSOLE_CONSUMER,
        &[
            "--bootstrap-server",
            bootstrap,
            "--topic",
            topic,
            "--group",
            group,
            "--from-beginning",
            "--max-messages",
            &CONSUMED.to_string(),
            "--timeout-ms",
            "60000",
            "--consumer-property",
            "max.poll.records=1",
        ],
    )?;
    ensure!(consumed.lines().count() as i64 == CONSUMED, "the console consumer printed {} lines", consumed.lines().count());

    let rows = describe_group(bootstrap, group)?;
    ensure!(rows.len() == 2, "--describe lists {} partitions: {rows:?}", rows.len());
    for row in &rows {
        ensure!(row.lag == row.log_end_offset - row.current_offset, "LAG is not LOG-END-OFFSET - CURRENT-OFFSET in {row:?}");
        ensure!(row.consumer_id == "-", "a member is listed although the consumer left: {row:?}");
    }
    ensure!(rows.iter().map(|row| row.log_end_offset).sum::<i64>() == RECORDS, "log end offsets {rows:?}");
    ensure!(rows.iter().map(|row| row.current_offset).sum::<i64>() == CONSUMED, "committed offsets {rows:?}");
    ensure!(rows.iter().map(|row| row.lag).sum::<i64>() == RECORDS - CONSUMED, "lag {rows:?}");
    ensure!(list_groups(bootstrap)?.contains(group), "--list does not list {group}");

    let reset = tool(
        CONSUMER_GROUPS,
        &["--bootstrap-server", bootstrap, "--reset-offsets", "--to-earliest", "--execute", "--group", group, "--topic", topic],
    )?;
    ensure!(reset.contains("NEW-OFFSET"), "--reset-offsets printed {reset:?}");
    let rows = describe_group(bootstrap, group)?;
    ensure!(
        rows.iter().all(|row| row.current_offset == 0 && row.lag == row.log_end_offset),
        "after --reset-offsets --to-earliest: {rows:?}"
    );

    // A live member resumes from the reset offsets, owns both partitions and catches up.
    let live_output = work.path().join("live.txt");
    let mut live = LiveConsumer::start(bootstrap, topic, group, &live_output)?;
    wait_until("the live member to own both partitions with no lag", Duration::from_secs(90), || {
        let rows = describe_group(bootstrap, group)?;
        Ok(rows.len() == 2 && rows.iter().all(|row| row.lag == 0 && row.consumer_id != "-"))
    })?;
    let members = tool(CONSUMER_GROUPS, &["--bootstrap-server", bootstrap, "--describe", "--group", group, "--members"])?;
    let member_rows: Vec<&str> =
        members.lines().skip_while(|line| !line.starts_with("GROUP")).skip(1).filter(|line| !line.trim().is_empty()).collect();
    ensure!(
        member_rows.len() == 1 && member_rows[0].split_whitespace().last() == Some("2"),
        "--describe --members shows {member_rows:?}, expected one member with 2 partitions"
    );
    live.stop()?;
    let printed = std::fs::read_to_string(&live_output)?.lines().count() as i64;
    ensure!(printed == RECORDS, "the live member printed {printed} records after the reset, expected {RECORDS}");

    wait_until("the group to become Empty", Duration::from_secs(30), || {
        let state = tool(CONSUMER_GROUPS, &["--bootstrap-server", bootstrap, "--describe", "--group", group, "--state"])?;
        // GROUP  COORDINATOR (ID)  ASSIGNMENT-STRATEGY  STATE  #MEMBERS
        Ok(state.lines().filter(|line| line.starts_with(group)).any(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            cells.len() >= 2 && cells[cells.len() - 2] == "Empty" && cells[cells.len() - 1] == "0"
        }))
    })?;
    let deleted = tool(CONSUMER_GROUPS, &["--bootstrap-server", bootstrap, "--delete", "--group", group])?;
    ensure!(deleted.contains("was successful"), "--delete printed {deleted:?}");
    ensure!(!list_groups(bootstrap)?.contains(group), "--list still lists the deleted group");
    groups.pass();
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// kafka-verifiable-producer and kafka-verifiable-consumer
// ------------------------------------------------------------------------------------------------

fn json_events(output: &str) -> Result<Vec<serde_json::Value>> {
    output
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).with_context(|| format!("not a JSON event: {line:?}")))
        .collect()
}

#[test]
fn verifiable_producer_and_consumer_agree_on_100k_idempotent_messages_without_duplicates() -> Result<()> {
    const MESSAGES: usize = 100_000;
    const PARTITIONS: i32 = 6;
    let idempotence = Cell::open(
        "kafka-cli",
        "idempotence",
        "kafka-verifiable-producer (enable.idempotence=true, acks=all) acks 100,000 messages; kafka-verifiable-consumer reads \
         each value exactly once at its acked partition and offset; stored batches carry one producer id and gapless sequences",
    );
    let playground = Playground::start(&[])?;
    let bootstrap = playground.bootstrap.as_str();
    let topic = "cli-verifiable";
    tokio::runtime::Runtime::new()?.block_on(kafka::create_topic(bootstrap, topic, PARTITIONS))?;
    let work = tempfile::tempdir()?;
    let producer_config = work.path().join("producer.properties");
    // The tool defaults to retries=0, which an idempotent producer refuses.
    std::fs::write(&producer_config, "enable.idempotence=true\nacks=all\nretries=2147483647\nmax.in.flight.requests.per.connection=5\n")?;
    let produced = tool(
        VERIFIABLE_PRODUCER,
        &[
            "--bootstrap-server",
            bootstrap,
            "--topic",
            topic,
            "--max-messages",
            &MESSAGES.to_string(),
            "--acks",
            "-1",
            "--producer.config",
            producer_config.to_str().context("non-UTF-8 temporary path")?,
        ],
    )?;
    let mut acked_at: Vec<Option<(i64, i64)>> = vec![None; MESSAGES];
    let mut tool_data = None;
    for event in json_events(&produced)? {
        match event["name"].as_str() {
            Some("producer_send_success") => {
                let value: usize = event["value"].as_str().context("no value")?.parse()?;
                ensure!(value < MESSAGES && acked_at[value].is_none(), "value {value} acked twice or out of range");
                acked_at[value] =
                    Some((event["partition"].as_i64().context("no partition")?, event["offset"].as_i64().context("no offset")?));
            }
            Some("producer_send_error") => bail!("the verifiable producer reports a failed send: {event}"),
            Some("tool_data") => tool_data = Some(event),
            _ => {}
        }
    }
    let tool_data = tool_data.context("the verifiable producer printed no tool_data event")?;
    let acked = acked_at.iter().filter(|position| position.is_some()).count();
    ensure!(
        tool_data["sent"].as_u64() == Some(MESSAGES as u64) && tool_data["acked"].as_u64() == Some(acked as u64) && acked == MESSAGES,
        "the producer sent {} and acked {} ({acked} success events), expected {MESSAGES}",
        tool_data["sent"],
        tool_data["acked"]
    );

    let consumed = tool(
        VERIFIABLE_CONSUMER,
        &[
            "--bootstrap-server",
            bootstrap,
            "--topic",
            topic,
            "--group-id",
            "cli-verifiable-group",
            "--max-messages",
            &MESSAGES.to_string(),
            "--verbose",
        ],
    )?;
    let mut seen = vec![0u32; MESSAGES];
    let mut record_events = 0usize;
    let mut counted = 0u64;
    let mut committed: BTreeMap<i64, i64> = BTreeMap::new();
    for event in json_events(&consumed)? {
        match event["name"].as_str() {
            Some("record_data") => {
                record_events += 1;
                let value: usize = event["value"].as_str().context("no value")?.parse()?;
                ensure!(value < MESSAGES, "consumed unexpected value {value}");
                seen[value] += 1;
                let position = (event["partition"].as_i64().context("no partition")?, event["offset"].as_i64().context("no offset")?);
                ensure!(acked_at[value] == Some(position), "value {value} read at {position:?}, acked at {:?}", acked_at[value]);
            }
            Some("records_consumed") => counted += event["count"].as_u64().context("no count")?,
            Some("offsets_committed") => {
                ensure!(event["success"].as_bool() == Some(true), "a commit failed: {event}");
                for offset in event["offsets"].as_array().context("no offsets")? {
                    committed
                        .insert(offset["partition"].as_i64().context("no partition")?, offset["offset"].as_i64().context("no offset")?);
                }
            }
            _ => {}
        }
    }
    let duplicates: u32 = seen.iter().map(|times| times.saturating_sub(1)).sum();
    let missing = seen.iter().filter(|times| **times == 0).count();
    ensure!(duplicates == 0 && missing == 0, "the consumer saw {duplicates} duplicates and missed {missing} of {MESSAGES} acked messages");
    ensure!(record_events == MESSAGES && counted == MESSAGES as u64, "consumed {record_events} records ({counted} counted)");
    let mut ends: BTreeMap<i64, i64> = BTreeMap::new();
    for (partition, offset) in acked_at.iter().flatten() {
        let end = ends.entry(*partition).or_default();
        *end = (*end).max(offset + 1);
    }
    ensure!(committed == ends, "the last commits {committed:?} differ from the end offsets {ends:?}");

    let log = batches::check_idempotent_batches(&batches::read_batch_headers(bootstrap, topic, PARTITIONS)?)?;
    println!("stored: {} batches, {} records, producer ids {:?}", log.batches, log.records, log.producer_ids);
    ensure!(log.records == MESSAGES as i64 && log.producer_ids.len() == 1, "stored batches: {log:?}");
    idempotence.pass();
    Ok(())
}

/// Issue 19, done-when 7: `kafka-transactions` lists and describes the transactions of a Java
/// transactional producer (ListTransactions on every agent, FindCoordinator for a transactional id,
/// DescribeTransactions).
#[test]
fn kafka_transactions_lists_and_describes_a_producers_transactions() -> Result<()> {
    const TRANSACTIONS: &str = "org.apache.kafka.tools.TransactionsCommand";
    let cell = Cell::open(
        "kafka-cli",
        "transactions",
        "kafka-transactions list and describe show a Java producer's transactional id, producer id, epoch and last state",
    );
    let playground = Playground::start(&[])?;
    tool(TOPICS, &["--bootstrap-server", &playground.bootstrap, "--create", "--topic", "cli-transactions", "--partitions", "1"])?;
    // Two transactions: the first committed, the second aborted.
    let produced = run_with_timeout(
        floe_e2e::java_main("dev.floe.e2e.Transactions", &["produce", &playground.bootstrap, "cli-transactions", "cli-tx", "2", "5"])?,
        TOOL_TIMEOUT,
    )?;
    ensure!(produced.status.success() && produced.stdout.contains("\"aborted\""), "the transactional producer failed: {}", produced.stderr);
    let listed = tool(TRANSACTIONS, &["--bootstrap-server", &playground.bootstrap, "list"])?;
    let line = listed.lines().find(|line| line.starts_with("cli-tx")).with_context(|| format!("cli-tx is not listed:\n{listed}"))?;
    ensure!(
        line.contains("CompleteAbort"),
        "cli-tx is listed as {line:?}, expected CompleteAbort; the producer reported:\n{}",
        produced.stdout
    );
    let described = tool(TRANSACTIONS, &["--bootstrap-server", &playground.bootstrap, "describe", "--transactional-id", "cli-tx"])?;
    let fields: Vec<&str> = described.lines().nth(1).unwrap_or_default().split_whitespace().collect();
    ensure!(fields.contains(&"CompleteAbort") && fields.contains(&"60000"), "describe printed:\n{described}");
    let unknown = run_tool(TRANSACTIONS, &["--bootstrap-server", &playground.bootstrap, "describe", "--transactional-id", "nobody"], None)?;
    ensure!(!unknown.success && unknown.stderr.contains("ID could not be found"), "describe of an unknown id: {}", unknown.stderr);
    cell.pass();
    Ok(())
}

/// Issue 19, done-when 7: two console consumers on the KIP-848 protocol (`group.protocol=consumer`)
/// split a topic; `kafka-consumer-groups --describe` shows them (ConsumerGroupDescribe): both
/// members with their partitions, the uniform assignor, a stable group, no lag.
#[test]
fn kafka_consumer_groups_describes_a_group_of_kip_848_console_consumers() -> Result<()> {
    const RECORDS: usize = 200;
    let cell = Cell::open(
        "kafka-cli",
        "kip848",
        "two kafka-console-consumer members with group.protocol=consumer split 4 partitions and read 200 records once; \
         kafka-consumer-groups --describe (--members, --state) shows them, the uniform assignor and no lag",
    );
    let playground = Playground::start(&[])?;
    let bootstrap = playground.bootstrap.as_str();
    let (topic, group) = ("cli-kip848", "cli-kip848-group");
    tokio::runtime::Runtime::new()?.block_on(kafka::create_topic(bootstrap, topic, 4))?;
    let work = tempfile::tempdir()?;
    let input = work.path().join("input.txt");
    std::fs::write(&input, (0..RECORDS).map(|index| format!("k{index}\tv-{index}\n")).collect::<String>())?;
    tool_with_stdin(
        CONSOLE_PRODUCER,
        &["--bootstrap-server", bootstrap, "--topic", topic, "--producer-property", "acks=all", "--property", "parse.key=true"],
        Some(&input),
    )?;
    let extra = ["--from-beginning", "--consumer-property", "group.protocol=consumer"];
    let outputs = [work.path().join("first.txt"), work.path().join("second.txt")];
    let mut members = [
        LiveConsumer::start_with(bootstrap, topic, group, &outputs[0], &extra)?,
        LiveConsumer::start_with(bootstrap, topic, group, &outputs[1], &extra)?,
    ];
    wait_until("two members to own the four partitions with no lag", Duration::from_secs(90), || {
        let rows = describe_group(bootstrap, group)?;
        let owners: BTreeSet<&str> = rows.iter().map(|row| row.consumer_id.as_str()).collect();
        Ok(rows.len() == 4 && rows.iter().all(|row| row.lag == 0 && row.consumer_id != "-") && owners.len() == 2)
    })?;
    let listed = tool(CONSUMER_GROUPS, &["--bootstrap-server", bootstrap, "--describe", "--group", group, "--members"])?;
    let mut lines = listed.lines().skip_while(|line| !line.starts_with("GROUP"));
    let header: Vec<&str> = lines.next().with_context(|| format!("no members table in {listed:?}"))?.split_whitespace().collect();
    let partitions_column =
        header.iter().position(|title| *title == "#PARTITIONS").with_context(|| format!("no #PARTITIONS in {header:?}"))?;
    let counts: Vec<i64> = lines
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.split_whitespace().nth(partitions_column).unwrap_or_default().parse().unwrap_or(-1))
        .collect();
    ensure!(counts == [2, 2], "--describe --members shows partition counts {counts:?}, expected two members with 2 each:\n{listed}");
    let state = tool(CONSUMER_GROUPS, &["--bootstrap-server", bootstrap, "--describe", "--group", group, "--state"])?;
    ensure!(state.contains("uniform") && state.contains("Stable"), "--describe --state printed:\n{state}");
    for member in &mut members {
        member.stop()?;
    }
    let mut printed: Vec<String> =
        outputs.iter().map(std::fs::read_to_string).collect::<std::io::Result<Vec<_>>>()?.join("").lines().map(String::from).collect();
    printed.sort();
    printed.dedup();
    ensure!(printed.len() == RECORDS, "the two members printed {} distinct records, expected {RECORDS}", printed.len());
    cell.pass();
    Ok(())
}

const README_MARKER: &str = "<!-- run verbatim by e2e/tests/kafka_cli.rs -->";

/// The `sh` block after the marker in README.md.
fn readme_floe_block() -> Result<String> {
    let readme = std::fs::read_to_string(floe_e2e::repository_root().join("README.md"))?;
    let after = &readme[readme.find(README_MARKER).context("README.md has no block marked for kafka_cli.rs")? + README_MARKER.len()..];
    let body = after.trim_start().strip_prefix("```sh\n").context("the marker is not followed by a ```sh block")?;
    Ok(body[..body.find("\n```\n").context("an unterminated ```sh block")? + 1].to_string())
}

/// Runs `script` with bash in `directory` (where `target/release/floe` is the binary under test),
/// with FLOE_BOOTSTRAP naming the playground; stops at the first failing command.
fn floe_shell(directory: &Path, bootstrap: &str, script: &str) -> Result<Finished> {
    let mut command = Command::new("bash");
    command.args(["-euo", "pipefail", "-c", script]).current_dir(directory).env("FLOE_BOOTSTRAP", bootstrap).stdin(Stdio::null());
    run_with_timeout(command, TOOL_TIMEOUT)
}

/// Table rows of `output` (after its header line) whose first column is `first`, split on spaces.
fn rows_starting<'a>(output: &'a str, first: &str) -> Vec<Vec<&'a str>> {
    output.lines().map(|line| line.split_whitespace().collect::<Vec<_>>()).filter(|cells| cells.first() == Some(&first)).collect()
}

/// Issue 21, done-when 1: the README's path after `make run` (`floe topic create`, `floe produce`,
/// `floe consume`, `floe group describe`), run verbatim by bash with nothing but the floe binary,
/// against a playground; what each command printed is checked, then everything is read back after
/// a restart, and a missing topic fails with Kafka's error name.
#[test]
fn the_readmes_floe_commands_work_verbatim_against_the_playground() -> Result<()> {
    let block = readme_floe_block()?;
    let mut playground = Playground::start(&[])?;
    // `export PATH="$PWD/target/release:$PATH"` as in a checkout: the binary under test stands there.
    let checkout = tempfile::Builder::new().prefix("floe-cli-").tempdir()?;
    std::fs::create_dir_all(checkout.path().join("target/release"))?;
    std::os::unix::fs::symlink(floe_e2e::floe_binary()?, checkout.path().join("target/release/floe"))?;
    let run = floe_shell(checkout.path(), &playground.bootstrap, &block)?;
    ensure!(
        run.status.success(),
        "the README's floe block failed ({}):\n{block}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        run.status,
        run.stdout,
        run.stderr
    );
    let out = &run.stdout;
    ensure!(
        rows_starting(out, "demo").iter().any(|row| row[1..] == ["3", "created"]),
        "topic create did not report demo with 3 partitions:\n{out}"
    );
    // Two keyless records go round-robin: one each to two partitions, both at offset 0.
    let produced: Vec<Vec<&str>> = out
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|cells| cells.len() == 3 && cells[1..] == ["0", "1"])
        .collect();
    ensure!(produced.len() >= 2, "produce did not report two records at offset 0:\n{out}");
    let consumed: BTreeSet<&str> = out.lines().filter(|line| *line == "hello" || *line == "world").collect();
    ensure!(consumed == BTreeSet::from(["hello", "world"]), "consume did not print both records:\n{out}");
    ensure!(out.contains("STATE    Empty"), "group describe did not show the group (empty: the consumer has stopped):\n{out}");
    let lags: Vec<Vec<&str>> = rows_starting(out, "demo").into_iter().filter(|row| row.len() == 5).collect();
    ensure!(lags.len() == 3, "group describe did not list the 3 partitions of demo:\n{out}");
    for row in &lags {
        ensure!(
            row[2] == row[3] && row[4] == "0",
            "partition {} of demo: committed {}, end {}, lag {} after reading everything",
            row[1],
            row[2],
            row[3],
            row[4]
        );
    }

    // Everything acknowledged reads back after a restart (no cache of fresh segments), and the
    // JSON output parses.
    playground.restart()?;
    let again = floe_shell(
        checkout.path(),
        &playground.bootstrap,
        "target/release/floe consume demo --count 2 --format '%p %o %v\\n' && target/release/floe group describe readers -o json",
    )?;
    ensure!(again.status.success(), "after the restart: {}\n{}", again.stdout, again.stderr);
    let mut values: Vec<&str> =
        again.stdout.lines().filter_map(|line| line.split_whitespace().nth(2)).filter(|value| ["hello", "world"].contains(value)).collect();
    values.sort();
    ensure!(values == ["hello", "world"], "after the restart consume printed:\n{}", again.stdout);
    let partitions: Vec<serde_json::Value> =
        again.stdout.lines().filter(|line| line.starts_with('{')).map(serde_json::from_str).collect::<Result<_, _>>()?;
    ensure!(
        partitions.len() == 3 && partitions.iter().all(|row| row["lag"] == 0),
        "group describe -o json after the restart:\n{}",
        again.stdout
    );

    let missing = floe_shell(checkout.path(), &playground.bootstrap, "target/release/floe consume no-such-topic --count 1")?;
    ensure!(!missing.status.success(), "consuming a missing topic succeeded");
    ensure!(missing.stderr.contains("UNKNOWN_TOPIC_OR_PARTITION"), "a missing topic gave: {}", missing.stderr);
    Ok(())
}

/// The commands against a listener with TLS and SASL, configured as a user inside an agent's pod
/// would (`FLOE_CLIENT_*`, the password never on the command line): SCRAM-SHA-512 and PLAIN
/// logins create, fill and read a topic; a wrong password and a half-given login fail naming what
/// to fix.
#[test]
fn the_floe_commands_log_in_over_tls_with_scram_and_plain_and_say_why_a_login_fails() -> Result<()> {
    let pki = floe_e2e::pki::Pki::new()?;
    pki.issue_server()?;
    let password_file = pki.path("admin.password");
    std::fs::write(&password_file, "admin-secret\n")?;
    let (password_file, certificate, key) = (password_file.display().to_string(), pki.arg("server.crt"), pki.arg("server.key"));
    let playground = Playground::start(&[
        "--sasl-mechanisms",
        "SCRAM-SHA-512,PLAIN",
        "--sasl-bootstrap-user",
        "admin",
        "--sasl-bootstrap-password-file",
        &password_file,
        "--tls-cert-file",
        &certificate,
        "--tls-key-file",
        &key,
    ])?;
    let records = pki.path("records.txt");
    std::fs::write(&records, "one\ntwo\nthree\n")?;
    let floe = |login: &[(&str, &str)], arguments: &[&str]| -> Result<Finished> {
        let mut command = Command::new(floe_e2e::floe_binary()?);
        command
            .args(arguments)
            .env("FLOE_BOOTSTRAP", &playground.bootstrap)
            .env("FLOE_CLIENT_TLS_CA_FILE", pki.arg("ca.crt"))
            .envs(login.iter().copied())
            .stdin(Stdio::null());
        run_with_timeout(command, TOOL_TIMEOUT)
    };
    let scram = [
        ("FLOE_CLIENT_SASL_MECHANISM", "SCRAM-SHA-512"),
        ("FLOE_CLIENT_SASL_USERNAME", "admin"),
        ("FLOE_CLIENT_SASL_PASSWORD", "admin-secret"),
    ];
    let plain =
        [("FLOE_CLIENT_SASL_MECHANISM", "PLAIN"), ("FLOE_CLIENT_SASL_USERNAME", "admin"), ("FLOE_CLIENT_SASL_PASSWORD", "admin-secret")];
    let created = floe(&scram, &["topic", "create", "secured", "-p", "2"])?;
    ensure!(created.status.success(), "topic create over SASL_SSL (SCRAM-SHA-512) failed: {}", created.stderr);
    let produced = floe(&plain, &["produce", "secured", "--file", &records.display().to_string()])?;
    ensure!(produced.status.success(), "produce over SASL_SSL (PLAIN) failed: {}", produced.stderr);
    let consumed = floe(&scram, &["consume", "secured", "--count", "3"])?;
    ensure!(consumed.status.success(), "consume over SASL_SSL (SCRAM-SHA-512) failed: {}", consumed.stderr);
    let mut values: Vec<&str> = consumed.stdout.lines().collect();
    values.sort();
    ensure!(values == ["one", "three", "two"], "consume printed:\n{}", consumed.stdout);

    let wrong = floe(
        &[("FLOE_CLIENT_SASL_MECHANISM", "SCRAM-SHA-512"), ("FLOE_CLIENT_SASL_USERNAME", "admin"), ("FLOE_CLIENT_SASL_PASSWORD", "nope")],
        &["topic", "list"],
    )?;
    ensure!(
        !wrong.status.success() && wrong.stderr.contains("refused the SASL login") && wrong.stderr.contains("SASL_AUTHENTICATION_FAILED"),
        "a wrong password gave: {}",
        wrong.stderr
    );
    let half = floe(&[("FLOE_CLIENT_SASL_MECHANISM", "PLAIN"), ("FLOE_CLIENT_SASL_USERNAME", "admin")], &["topic", "list"])?;
    ensure!(
        !half.status.success() && half.stderr.contains("FLOE_CLIENT_SASL_PASSWORD"),
        "a login without a password gave: {}",
        half.stderr
    );
    let anonymous = floe(&[], &["topic", "list"])?;
    ensure!(!anonymous.status.success(), "a client without a SASL login listed the topics of a SASL listener: {}", anonymous.stdout);
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// floe consume --group: a member of the group
// ------------------------------------------------------------------------------------------------

/// Runs a floe command against `bootstrap` that must succeed; returns what it printed.
fn floe(bootstrap: &str, arguments: &[&str]) -> Result<String> {
    let mut command = Command::new(floe_e2e::floe_binary()?);
    command.args(arguments).env("FLOE_BOOTSTRAP", bootstrap).stdin(Stdio::null());
    let run = run_with_timeout(command, TOOL_TIMEOUT)?;
    ensure!(
        run.status.success(),
        "floe {arguments:?} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        run.status,
        run.stdout,
        run.stderr
    );
    Ok(run.stdout)
}

/// Produces `record-<index>` for each index with `floe produce` (keyless: round-robin over the
/// partitions).
fn produce_records(bootstrap: &str, topic: &str, directory: &Path, indexes: std::ops::Range<usize>) -> Result<()> {
    let input = directory.join(format!("records-{}.txt", indexes.start));
    std::fs::write(&input, indexes.map(|index| format!("record-{index:05}\n")).collect::<String>())?;
    floe(bootstrap, &["produce", topic, "--file", &input.display().to_string()])?;
    Ok(())
}

/// One record a group consumer printed: partition, offset, value.
type Printed = (i32, i64, String);

/// A long-running group consumer (`floe consume --group` or `kcat -G`) printing one
/// `partition offset value` line per record to a file; stopped with a signal, killed if dropped.
struct GroupConsumer {
    what: &'static str,
    child: Option<Child>,
    output: std::path::PathBuf,
}

impl GroupConsumer {
    fn floe(bootstrap: &str, topic: &str, group: &str, output: std::path::PathBuf) -> Result<Self> {
        let mut command = Command::new(floe_e2e::floe_binary()?);
        command.args(["consume", topic, "--group", group, "--format", "%p %o %v\\n"]).env("FLOE_BOOTSTRAP", bootstrap);
        Self::spawn("floe consume --group", command, output)
    }

    fn kcat(bootstrap: &str, topic: &str, group: &str, output: std::path::PathBuf) -> Result<Self> {
        let mut command = Command::new("kcat");
        command.args(["-b", bootstrap, "-X", "client.id=floe-e2e-kcat", "-G", group, "-u", "-f", "%p %o %s\\n"]);
        command.args(["-X", "topic.auto.offset.reset=earliest", topic]);
        Self::spawn("kcat -G", command, output)
    }

    fn spawn(what: &'static str, mut command: Command, output: std::path::PathBuf) -> Result<Self> {
        command.stdin(Stdio::null()).stdout(std::fs::File::create(&output)?).stderr(std::fs::File::create(output.with_extension("log"))?);
        let child = command.spawn().with_context(|| format!("failed to start {what}"))?;
        Ok(Self { what, child: Some(child), output })
    }

    fn printed(&self) -> Result<Vec<Printed>> {
        std::fs::read_to_string(&self.output)?
            .lines()
            .map(|line| {
                let mut fields = line.splitn(3, ' ');
                let (Some(partition), Some(offset), Some(value)) = (fields.next(), fields.next(), fields.next()) else {
                    bail!("{} printed {line:?}", self.what);
                };
                Ok((partition.parse()?, offset.parse()?, value.to_string()))
            })
            .collect()
    }

    /// Sends `signal` (INT is Ctrl-C) and waits for a clean exit, which for a group member means
    /// it committed and left the group.
    fn stop(&mut self, signal: &str) -> Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(self.output.with_extension("log")).unwrap_or_default();
                ensure!(status.success(), "{} exited with {status} after SIG{signal}; its log:\n{log}", self.what);
                return Ok(());
            }
            if Instant::now() > deadline {
                child.kill()?;
                child.wait()?;
                bail!("{} did not exit within 30 s of SIG{signal}", self.what);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What `floe group describe` printed for a group: its state, each member's client id and the
/// partitions of `topic` it was assigned, and per partition of `topic` (committed, end offset).
#[derive(Debug)]
struct DescribedGroup {
    state: String,
    members: Vec<(String, Vec<i32>)>,
    offsets: BTreeMap<i32, (i64, i64)>,
}

fn describe_floe_group(bootstrap: &str, group: &str, topic: &str) -> Result<DescribedGroup> {
    let output = floe(bootstrap, &["group", "describe", group])?;
    let state = output.lines().find_map(|line| line.strip_prefix("STATE")).context("no STATE line")?.trim().to_string();
    // `  <member id> (client <client id>, host <host>) assigned <topic>:<p>,<p> ...`
    let mut members = Vec::new();
    for line in output.lines().filter(|line| line.starts_with("  ")) {
        let client =
            line.split("(client ").nth(1).and_then(|rest| rest.split(',').next()).with_context(|| format!("member line {line:?}"))?;
        let assigned = line.split(" assigned ").nth(1).unwrap_or_default();
        let partitions = assigned
            .split_whitespace()
            .filter_map(|topic_partitions| topic_partitions.strip_prefix(&format!("{topic}:")))
            .flat_map(|list| list.split(','))
            .map(str::parse)
            .collect::<Result<Vec<i32>, _>>()?;
        members.push((client.to_string(), partitions));
    }
    let mut offsets = BTreeMap::new();
    for row in rows_starting(&output, topic).into_iter().filter(|row| row.len() == 5) {
        offsets.insert(row[1].parse()?, (row[2].parse()?, row[3].parse()?));
    }
    Ok(DescribedGroup { state, members, offsets })
}

/// True when the members' assignments are non-empty and together hold every partition of
/// 0..`partitions` exactly once.
fn splits_the_partitions(members: &[(String, Vec<i32>)], partitions: i32) -> bool {
    let mut all: Vec<i32> = members.iter().flat_map(|(_, assigned)| assigned.iter().copied()).collect();
    all.sort_unstable();
    members.iter().all(|(_, assigned)| !assigned.is_empty()) && all == (0..partitions).collect::<Vec<_>>()
}

/// Every record printed by all `consumers` together: each of `records` exactly once (by value
/// and by partition and offset).
fn read_exactly_once(consumers: &[&GroupConsumer], records: usize) -> Result<()> {
    let mut printed = Vec::new();
    for consumer in consumers {
        printed.extend(consumer.printed()?);
    }
    let values: BTreeSet<&str> = printed.iter().map(|(_, _, value)| value.as_str()).collect();
    let positions: BTreeSet<(i32, i64)> = printed.iter().map(|(partition, offset, _)| (*partition, *offset)).collect();
    ensure!(
        printed.len() == records && values.len() == records && positions.len() == records,
        "the members printed {} lines, {} distinct values at {} distinct positions; expected each of {records} records once",
        printed.len(),
        values.len(),
        positions.len()
    );
    Ok(())
}

/// After the members left: no members, an Empty group, and a commit at the end offset of every
/// partition (the records of all partitions add up to `records`).
fn left_empty_at_the_end_offsets(bootstrap: &str, group: &str, topic: &str, partitions: i32, records: usize) -> Result<()> {
    let described = describe_floe_group(bootstrap, group, topic)?;
    ensure!(described.state == "Empty" && described.members.is_empty(), "after both members stopped: {described:?}");
    ensure!(described.offsets.keys().copied().eq(0..partitions), "the commits of {group} cover {:?}", described.offsets.keys());
    ensure!(
        described.offsets.values().all(|(committed, end)| committed == end),
        "the committed offsets are not the end offsets: {:?}",
        described.offsets
    );
    let total: i64 = described.offsets.values().map(|(_, end)| end).sum();
    ensure!(total == records as i64, "the topic holds {total} records, expected {records}");
    Ok(())
}

/// `floe consume --group` joins its group as rpk's and kcat's group consumers do: two of them
/// split a 6-partition topic (`floe group describe` lists both and what each was assigned), each
/// reads only its own partitions while both are members, together they read every record once,
/// and stopped with Ctrl-C each commits and leaves: the group is Empty, committed at the end.
#[test]
fn two_floe_consumers_in_one_group_split_the_partitions_and_read_every_record_once() -> Result<()> {
    const PARTITIONS: i32 = 6;
    const RECORDS: usize = 1_200;
    let cell = Cell::open(
        "kafka-cli",
        "groups",
        "two `floe consume --group` processes join one group and split 6 partitions (floe group describe: 2 members, disjoint), \
         read 1,200 records exactly once, and on Ctrl-C commit the end offsets and leave the group Empty",
    );
    let playground = Playground::start(&[])?;
    let bootstrap = playground.bootstrap.as_str();
    let (topic, group) = ("cli-members", "cli-members-group");
    let work = tempfile::tempdir()?;
    floe(bootstrap, &["topic", "create", topic, "-p", &PARTITIONS.to_string()])?;
    // Half the records wait before the members start: the first to join may read some of them
    // alone, and gives partitions up (with their commits) when the second joins.
    produce_records(bootstrap, topic, work.path(), 0..RECORDS / 2)?;
    let mut members = [
        GroupConsumer::floe(bootstrap, topic, group, work.path().join("member-0.txt"))?,
        GroupConsumer::floe(bootstrap, topic, group, work.path().join("member-1.txt"))?,
    ];
    let mut split = Vec::new();
    wait_until("floe group describe lists two members splitting the 6 partitions", Duration::from_secs(60), || {
        let described = describe_floe_group(bootstrap, group, topic)?;
        split = described.members.iter().map(|(_, assigned)| assigned.clone()).collect();
        Ok(described.state == "Stable" && described.members.len() == 2 && splits_the_partitions(&described.members, PARTITIONS))
    })?;
    produce_records(bootstrap, topic, work.path(), RECORDS / 2..RECORDS)?;
    wait_until("the two members read every record", Duration::from_secs(60), || {
        Ok(members.iter().map(|member| member.printed().map(|printed| printed.len())).sum::<Result<usize>>()? >= RECORDS)
    })?;
    // The group did not rebalance meanwhile, so the second half was read under `split`: each
    // member's records of it come from the partitions of one assignment, a different one each.
    let described = describe_floe_group(bootstrap, group, topic)?;
    let now: Vec<Vec<i32>> = described.members.iter().map(|(_, assigned)| assigned.clone()).collect();
    ensure!(now == split, "the group rebalanced while the second half was read: {split:?}, then {now:?}");
    let mut owners = Vec::new();
    for member in &members {
        let second_half: BTreeSet<i32> = member
            .printed()?
            .into_iter()
            .filter(|(_, _, value)| value.as_str() >= format!("record-{:05}", RECORDS / 2).as_str())
            .map(|(partition, _, _)| partition)
            .collect();
        let owner = split.iter().position(|assigned| second_half.iter().all(|partition| assigned.contains(partition)));
        ensure!(owner.is_some() && !second_half.is_empty(), "a member read partitions {second_half:?}, not one assignment of {split:?}");
        owners.push(owner);
    }
    ensure!(owners[0] != owners[1], "both members read the partitions of one assignment: {split:?}");

    for member in &mut members {
        member.stop("INT")?;
    }
    read_exactly_once(&[&members[0], &members[1]], RECORDS)?;
    left_empty_at_the_end_offsets(bootstrap, group, topic, PARTITIONS, RECORDS)?;
    cell.pass();
    Ok(())
}

/// A `kcat -G` member (librdkafka's balanced consumer) and a `floe consume --group` member share
/// one group: floe reads alone first, then kcat joins, and floe hands three partitions over at
/// their committed offsets; together they read every record once, and both leave on SIGTERM.
#[test]
fn a_kcat_member_and_a_floe_member_of_one_group_share_its_partitions() -> Result<()> {
    const PARTITIONS: i32 = 6;
    const RECORDS: usize = 1_200;
    let cell = Cell::open(
        "kcat",
        "groups",
        "kcat -G (librdkafka 2.0.2) joins a group a `floe consume --group` member leads; they split 6 partitions, \
         read 1,200 records exactly once between them, and leave the group Empty at the end offsets on SIGTERM",
    );
    let playground = Playground::start(&[])?;
    let bootstrap = playground.bootstrap.as_str();
    let (topic, group) = ("cli-kcat-members", "cli-kcat-members-group");
    let work = tempfile::tempdir()?;
    floe(bootstrap, &["topic", "create", topic, "-p", &PARTITIONS.to_string()])?;
    produce_records(bootstrap, topic, work.path(), 0..RECORDS / 2)?;
    let mut floe_member = GroupConsumer::floe(bootstrap, topic, group, work.path().join("floe.txt"))?;
    wait_until("the floe member alone owns the 6 partitions and read the first half", Duration::from_secs(60), || {
        let described = describe_floe_group(bootstrap, group, topic)?;
        Ok(described.members.len() == 1
            && splits_the_partitions(&described.members, PARTITIONS)
            && floe_member.printed()?.len() == RECORDS / 2)
    })?;
    let mut kcat_member = GroupConsumer::kcat(bootstrap, topic, group, work.path().join("kcat.txt"))?;
    wait_until("floe group describe lists the floe and the kcat member splitting the partitions", Duration::from_secs(60), || {
        let described = describe_floe_group(bootstrap, group, topic)?;
        let mut clients: Vec<&str> = described.members.iter().map(|(client, _)| client.as_str()).collect();
        clients.sort_unstable();
        Ok(described.state == "Stable" && clients == ["floe-cli", "floe-e2e-kcat"] && splits_the_partitions(&described.members, PARTITIONS))
    })?;
    produce_records(bootstrap, topic, work.path(), RECORDS / 2..RECORDS)?;
    wait_until("the two members read every record", Duration::from_secs(60), || {
        Ok(floe_member.printed()?.len() + kcat_member.printed()?.len() >= RECORDS)
    })?;
    ensure!(!kcat_member.printed()?.is_empty(), "the kcat member read nothing");
    kcat_member.stop("TERM")?;
    floe_member.stop("TERM")?;
    read_exactly_once(&[&floe_member, &kcat_member], RECORDS)?;
    left_empty_at_the_end_offsets(bootstrap, group, topic, PARTITIONS, RECORDS)?;
    cell.pass();
    Ok(())
}
