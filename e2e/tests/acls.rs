//! Kafka ACLs against real clients: a playground with SASL/SCRAM and `--acl-authorization`, whose
//! bootstrap user (a super user) creates alice with `kafka-configs` and manages her ACLs with
//! Kafka 4.1.1's `kafka-acls`. librdkafka and the Java client (console tools) see Kafka's exact
//! codes for a denied produce, fetch, group join, offset commit, topic creation and config change,
//! a topic she may not describe is absent from Metadata, granting lets each through, removing takes
//! it back, and the ACLs and the records are still there after the agent restarts.

use anyhow::{ensure, Context, Result};
use floe_e2e::matrix::Cell;
use floe_e2e::{http_get, kafka, kafka_tool, metric_value, run_with_timeout, verifiable, Playground};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const ACL_COMMAND: &str = "org.apache.kafka.tools.AclCommand";
const CONFIGS: &str = "kafka.admin.ConfigCommand";
const TOPICS: &str = "org.apache.kafka.tools.TopicCommand";
const CONSOLE_PRODUCER: &str = "org.apache.kafka.tools.ConsoleProducer";
const CONSOLE_CONSUMER: &str = "org.apache.kafka.tools.consumer.ConsoleConsumer";
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);
const ADMIN_PASSWORD: &str = "admin-secret";
const ALICE_PASSWORD: &str = "alice-secret";
const TOPIC: &str = "acl-orders";
const HIDDEN: &str = "acl-hidden";
const GROUP: &str = "acl-billing";
const JAVA_GROUP: &str = "acl-billing-java";
const RECORDS: u64 = 200;

fn flags(directory: &Path) -> Result<Vec<String>> {
    let password_file = directory.join("admin.password");
    std::fs::write(&password_file, ADMIN_PASSWORD)?;
    Ok(vec![
        "--sasl-mechanisms".into(),
        "SCRAM-SHA-512".into(),
        "--sasl-bootstrap-user".into(),
        "admin".into(),
        "--sasl-bootstrap-password-file".into(),
        password_file.display().to_string(),
        "--acl-authorization".into(),
    ])
}

/// librdkafka over SASL_PLAINTEXT with SCRAM-SHA-512; errors come back fast.
fn rdkafka(bootstrap: &str, user: &str, password: &str) -> ClientConfig {
    let mut config = kafka::scram_plaintext(bootstrap, user, password);
    config.set("message.timeout.ms", "10000");
    config
}

/// Runs a Kafka tool with `--bootstrap-server` and `--command-config`-style properties; returns
/// (success, stdout and stderr together).
fn tool(main_class: &str, arguments: &[&str]) -> Result<(bool, String)> {
    let mut command = kafka_tool(main_class, arguments)?;
    command.stdin(Stdio::null());
    let output = run_with_timeout(command, TOOL_TIMEOUT)?;
    Ok((output.status.success(), format!("{}\n{}", output.stdout, output.stderr)))
}

/// `kafka-acls` as the admin; fails unless it succeeds.
fn kafka_acls(bootstrap: &str, admin: &str, arguments: &[&str]) -> Result<String> {
    let mut command_line = vec!["--bootstrap-server", bootstrap, "--command-config", admin];
    command_line.extend_from_slice(arguments);
    let (succeeded, output) = tool(ACL_COMMAND, &command_line)?;
    ensure!(succeeded, "kafka-acls {arguments:?} failed:\n{output}");
    Ok(output)
}

/// The error of one librdkafka send to `topic`, or `None` when it was acknowledged.
async fn send(producer: &FutureProducer, topic: &str, index: u64) -> Option<RDKafkaErrorCode> {
    let (key, value) = (floe_e2e::records::key(index), floe_e2e::records::value(index));
    match producer.send(FutureRecord::to(topic).key(&key).payload(&value), Duration::from_secs(15)).await {
        Ok(_) => None,
        Err((error, _)) => error.rdkafka_error_code(),
    }
}

/// The first error other than `unrelated` a consumer meets polling for up to 20 s, or `None`
/// when it got a record.
fn first_poll_error(consumer: &BaseConsumer, unrelated: Option<RDKafkaErrorCode>) -> Option<RDKafkaErrorCode> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(_)) => return None,
            Some(Err(error)) if error.rdkafka_error_code() != unrelated => return error.rdkafka_error_code(),
            Some(Err(_)) | None => {}
        }
    }
    Some(RDKafkaErrorCode::OperationTimedOut)
}

/// Fetching `TOPIC` by assignment (no group) as `config`'s user.
fn fetch_error(config: &ClientConfig) -> Result<Option<RDKafkaErrorCode>> {
    // librdkafka wants a group id even to assign, and looks up its coordinator, which alice may
    // not describe: that GROUP_AUTHORIZATION_FAILED is not what this checks.
    let consumer: BaseConsumer = config.clone().set("group.id", "acl-assign-only").set("enable.auto.commit", "false").create()?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(TOPIC, 0, Offset::Beginning)?;
    consumer.assign(&assignment)?;
    Ok(first_poll_error(&consumer, Some(RDKafkaErrorCode::GroupAuthorizationFailed)))
}

/// Joining `GROUP` on `TOPIC` as `config`'s user.
fn group_error(config: &ClientConfig) -> Result<Option<RDKafkaErrorCode>> {
    let consumer: BaseConsumer = config.clone().set("group.id", GROUP).set("auto.offset.reset", "earliest").create()?;
    consumer.subscribe(&[TOPIC])?;
    Ok(first_poll_error(&consumer, None))
}

/// Committing offset 1 of `TOPIC` for `GROUP` without joining it, as `config`'s user.
fn commit_error(config: &ClientConfig) -> Result<Option<RDKafkaErrorCode>> {
    let consumer: BaseConsumer = config.clone().set("group.id", GROUP).set("enable.auto.commit", "false").create()?;
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset(TOPIC, 0, Offset::Offset(1))?;
    Ok(match consumer.commit(&offsets, CommitMode::Sync) {
        Ok(()) => None,
        Err(error) => error.rdkafka_error_code(),
    })
}

async fn create_topic_error(admin: &AdminClient<DefaultClientContext>, name: &str) -> Result<Option<RDKafkaErrorCode>> {
    let results = admin.create_topics(&[NewTopic::new(name, 1, TopicReplication::Fixed(1))], &AdminOptions::new()).await?;
    Ok(results.into_iter().next().context("no CreateTopics result")?.err().map(|(_, code)| code))
}

fn topics_in_metadata(config: &ClientConfig) -> Result<Vec<String>> {
    let consumer: BaseConsumer = config.create()?;
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(10))?;
    Ok(metadata.topics().iter().map(|topic| topic.name().to_string()).collect())
}

/// Fails unless `what` ended with `expected`.
fn expect(what: &str, outcome: Option<RDKafkaErrorCode>, expected: RDKafkaErrorCode) -> Result<()> {
    ensure!(outcome == Some(expected), "{what} ended with {outcome:?}, expected {expected:?}");
    Ok(())
}

fn denials(playground: &Playground, resource_type: &str, operation: &str) -> Result<f64> {
    let (_, metrics) = http_get(&playground.http, "/metrics")?;
    Ok(metric_value(&metrics, &format!("floe_authorization_denials_total{{operation=\"{operation}\",resource_type=\"{resource_type}\"}}"))
        .unwrap_or(0.0))
}

#[test]
fn kafka_acls_grants_and_revokes_and_librdkafka_and_java_see_kafkas_codes_until_allowed() -> Result<()> {
    let librdkafka_cell = Cell::open(
        "librdkafka",
        "acls",
        "denied produce, fetch, group join, offset commit, topic creation and config change each get Kafka's code; a topic it may \
         not describe is absent from Metadata; each works once kafka-acls grants it, and a removed grant is refused again after a restart",
    );
    let java_cell = Cell::open(
        "java",
        "acls",
        "console producer refused with TopicAuthorizationException and group consumer with GroupAuthorizationException until granted, \
         then both work",
    );
    let cli_cell = Cell::open(
        "kafka-cli",
        "acls",
        "kafka-acls adds (literal and prefixed), lists and removes ACLs; kafka-topics --create as a user without CREATE is refused",
    );
    let directory = tempfile::tempdir()?;
    let mut playground = Playground::start(&flags(directory.path())?.iter().map(String::as_str).collect::<Vec<_>>())?;
    let bootstrap = playground.bootstrap.clone();
    let runtime = tokio::runtime::Runtime::new()?;
    let admin_config = rdkafka(&bootstrap, "admin", ADMIN_PASSWORD);
    let alice = rdkafka(&bootstrap, "alice", ALICE_PASSWORD);
    let admin_properties = kafka::scram_plaintext_java_properties(directory.path(), "admin", ADMIN_PASSWORD)?;
    let alice_properties = kafka::scram_plaintext_java_properties(directory.path(), "alice", ALICE_PASSWORD)?;

    // The super user makes the topics and alice, who has no ACL yet.
    runtime.block_on(kafka::create_topic_with(admin_config.clone(), TOPIC, 1))?;
    runtime.block_on(kafka::create_topic_with(admin_config.clone(), HIDDEN, 1))?;
    let add_user = format!("SCRAM-SHA-512=[password={ALICE_PASSWORD}]");
    let (created, output) = tool(
        CONFIGS,
        &[
            "--bootstrap-server",
            &bootstrap,
            "--command-config",
            &admin_properties,
            "--alter",
            "--add-config",
            &add_user,
            "--entity-type",
            "users",
            "--entity-name",
            "alice",
        ],
    )?;
    ensure!(created, "kafka-configs could not create alice:\n{output}");

    // Denied, each with Kafka's code.
    let producer: FutureProducer = alice.clone().set("enable.idempotence", "false").create()?;
    let alice_admin: AdminClient<DefaultClientContext> = alice.create()?;
    expect("a produce without WRITE", runtime.block_on(send(&producer, TOPIC, 0)), RDKafkaErrorCode::TopicAuthorizationFailed)?;
    let created = runtime.block_on(create_topic_error(&alice_admin, "acl-alices"))?;
    expect("a topic creation without CREATE", created, RDKafkaErrorCode::TopicAuthorizationFailed)?;
    // The rdkafka crate drops AlterConfigs' per-resource errors, so the config change is tried
    // with Kafka's own kafka-configs (the Java admin client).
    let (altered, output) = tool(
        CONFIGS,
        &[
            "--bootstrap-server",
            &bootstrap,
            "--command-config",
            &alice_properties,
            "--alter",
            "--entity-type",
            "topics",
            "--entity-name",
            TOPIC,
            "--add-config",
            "retention.ms=3600000",
        ],
    )?;
    ensure!(!altered && output.contains("TopicAuthorizationException"), "a config change without ALTER_CONFIGS was not refused:\n{output}");
    ensure!(topics_in_metadata(&alice)?.is_empty(), "alice's Metadata lists topics she may not describe");
    let (created, output) = tool(
        TOPICS,
        &["--bootstrap-server", &bootstrap, "--command-config", &alice_properties, "--create", "--topic", "acl-cli", "--partitions", "1"],
    )?;
    ensure!(!created && output.contains("TopicAuthorizationException"), "kafka-topics --create without CREATE was not refused:\n{output}");
    let (produced, output) = {
        let mut command = kafka_tool(
            CONSOLE_PRODUCER,
            &[
                "--bootstrap-server",
                &bootstrap,
                "--topic",
                HIDDEN,
                "--producer.config",
                &alice_properties,
                "--producer-property",
                "max.block.ms=15000",
            ],
        )?;
        command.stdin(std::fs::File::open(write_lines(directory.path(), "java-denied.txt", 1)?)?);
        let output = run_with_timeout(command, TOOL_TIMEOUT)?;
        (output.status.success(), format!("{}\n{}", output.stdout, output.stderr))
    };
    ensure!(
        output.contains("TopicAuthorizationException"),
        "the Java producer was not refused with TopicAuthorizationException ({produced}):\n{output}"
    );
    // Without DESCRIBE, clients stop at Metadata's TOPIC_AUTHORIZATION_FAILED.
    ensure!(denials(&playground, "topic", "describe")? >= 1.0, "denied topic descriptions were not counted");

    // With DESCRIBE on the topic and the group she sees the topic in Metadata and finds the
    // group's coordinator, but may not write, read, join or commit.
    kafka_acls(
        &bootstrap,
        &admin_properties,
        &["--add", "--allow-principal", "User:alice", "--operation", "Describe", "--topic", TOPIC, "--group", GROUP],
    )?;
    ensure!(topics_in_metadata(&alice)? == vec![TOPIC.to_string()], "alice's Metadata should list only {TOPIC}");
    // A new producer: the first one remembers Metadata's refusal.
    let producer: FutureProducer = alice.clone().set("enable.idempotence", "false").create()?;
    expect("a produce request without WRITE", runtime.block_on(send(&producer, TOPIC, 0)), RDKafkaErrorCode::TopicAuthorizationFailed)?;
    ensure!(denials(&playground, "topic", "write")? >= 1.0, "the denied produce request was not counted");
    let fetched = fetch_error(&alice)?;
    expect("a fetch without READ", fetched, RDKafkaErrorCode::TopicAuthorizationFailed)?;
    expect("a group join without READ on the group", group_error(&alice)?, RDKafkaErrorCode::GroupAuthorizationFailed)?;
    expect("an offset commit without READ on the group", commit_error(&alice)?, RDKafkaErrorCode::GroupAuthorizationFailed)?;

    // kafka-acls grants WRITE and READ on topics prefixed acl-ord, and READ on the group.
    kafka_acls(
        &bootstrap,
        &admin_properties,
        &[
            "--add",
            "--allow-principal",
            "User:alice",
            "--operation",
            "Write",
            "--operation",
            "Read",
            "--topic",
            "acl-ord",
            "--resource-pattern-type",
            "prefixed",
        ],
    )?;
    // Groups prefixed acl-billing: the Java consumer below uses a group of its own.
    kafka_acls(
        &bootstrap,
        &admin_properties,
        &["--add", "--allow-principal", "User:alice", "--operation", "Read", "--group", GROUP, "--resource-pattern-type", "prefixed"],
    )?;
    let listed = kafka_acls(&bootstrap, &admin_properties, &["--list", "--principal", "User:alice"])?;
    for expected in [
        "name=acl-ord, patternType=PREFIXED",
        "operation=WRITE, permissionType=ALLOW",
        "operation=READ, permissionType=ALLOW",
        &format!("name={GROUP}, patternType=PREFIXED"),
    ] {
        ensure!(listed.contains(expected), "kafka-acls --list lacks {expected:?}:\n{listed}");
    }

    // Now each works: librdkafka produces and reads back in the group and commits; Java too.
    let producer: FutureProducer = alice.clone().set("acks", "all").create()?;
    runtime.block_on(kafka::produce_indexed(&producer, TOPIC, 0..RECORDS))?;
    ensure!(fetch_error(&alice)?.is_none(), "alice cannot fetch with READ");
    ensure!(group_error(&alice)?.is_none(), "alice cannot read in her group with READ on it");
    ensure!(commit_error(&alice)?.is_none(), "alice cannot commit with READ on her group");
    ensure!(topics_in_metadata(&alice)? == vec![TOPIC.to_string()], "alice's Metadata should list only {TOPIC}");
    let mut consumer = kafka_tool(
        CONSOLE_CONSUMER,
        &[
            "--bootstrap-server",
            &bootstrap,
            "--topic",
            TOPIC,
            "--group",
            JAVA_GROUP,
            "--from-beginning",
            "--max-messages",
            &RECORDS.to_string(),
            "--timeout-ms",
            "60000",
            "--consumer.config",
            &alice_properties,
        ],
    )?;
    consumer.stdin(Stdio::null());
    let consumed = run_with_timeout(consumer, TOOL_TIMEOUT)?;
    ensure!(consumed.status.success(), "the Java consumer failed with READ granted:\n{}", consumed.stderr);
    // The values are binary; the consumer's own count says how many it read.
    ensure!(
        consumed.stderr.contains(&format!("Processed a total of {RECORDS} messages")),
        "the Java consumer did not read the {RECORDS} records:\n{}",
        consumed.stderr
    );
    java_cell.pass();

    // Removing the WRITE grant takes produce away again.
    kafka_acls(
        &bootstrap,
        &admin_properties,
        &[
            "--remove",
            "--force",
            "--allow-principal",
            "User:alice",
            "--operation",
            "Write",
            "--topic",
            "acl-ord",
            "--resource-pattern-type",
            "prefixed",
        ],
    )?;
    ensure!(
        runtime.block_on(send(&producer, TOPIC, RECORDS)) == Some(RDKafkaErrorCode::TopicAuthorizationFailed),
        "a produce after the WRITE grant was removed was not refused"
    );
    cli_cell.pass();
    drop((producer, alice_admin));

    // After a restart the ACLs are the same (they are in the journal) and every record reads back.
    playground.restart()?;
    let bootstrap = playground.bootstrap.clone();
    let alice = rdkafka(&bootstrap, "alice", ALICE_PASSWORD);
    kafka::verify_indexed(rdkafka(&bootstrap, "admin", ADMIN_PASSWORD), TOPIC, RECORDS)?;
    ensure!(fetch_error(&alice)?.is_none(), "after a restart alice's READ grant is gone");
    let producer: FutureProducer = alice.clone().set("enable.idempotence", "false").create()?;
    ensure!(
        runtime.block_on(send(&producer, TOPIC, RECORDS)) == Some(RDKafkaErrorCode::TopicAuthorizationFailed),
        "after a restart the removed WRITE grant came back"
    );
    librdkafka_cell.pass();
    drop(producer);
    playground.stop()
}

/// Writes `count` lines to a file in `directory` and returns its path.
fn write_lines(directory: &Path, name: &str, count: u64) -> Result<std::path::PathBuf> {
    let path = directory.join(name);
    std::fs::write(&path, (0..count).map(|index| format!("line-{index}\n")).collect::<String>())?;
    Ok(path)
}

/// Issue 18, done-when 2 for franz-go, kafka-python and kafkajs: each driver's `denied` mode
/// (e2e/README.md), run as alice who has no ACL, sees Kafka's exact code for a produce, a fetch, a
/// group join, an offset commit, a topic creation and a config change; run as the super user, every
/// step succeeds (so a driver that reports the expected codes for every call cannot pass).
#[test]
fn franz_go_kafka_python_and_kafkajs_see_kafkas_codes_for_every_denied_call() -> Result<()> {
    type Driver = fn(&[&str]) -> Result<std::process::Command>;
    let drivers: [(&'static str, Driver); 3] =
        [("franz-go", floe_e2e::franz_go_driver), ("kafka-python", floe_e2e::python_driver), ("kafkajs", floe_e2e::kafkajs_driver)];
    let cells: Vec<Cell> = drivers
        .iter()
        .map(|(client, _)| {
            Cell::open(
                client,
                "acls",
                "as a user without ACLs: produce, fetch, topic creation and config change get TOPIC_AUTHORIZATION_FAILED, group join and \
                 offset commit GROUP_AUTHORIZATION_FAILED; as a super user each succeeds",
            )
        })
        .collect();
    let directory = tempfile::tempdir()?;
    let playground = Playground::start(&flags(directory.path())?.iter().map(String::as_str).collect::<Vec<_>>())?;
    let bootstrap = playground.bootstrap.clone();
    let runtime = tokio::runtime::Runtime::new()?;
    let admin_properties = kafka::scram_plaintext_java_properties(directory.path(), "admin", ADMIN_PASSWORD)?;
    let add_user = format!("SCRAM-SHA-512=[password={ALICE_PASSWORD}]");
    let alter = ["--alter", "--add-config", &add_user, "--entity-type", "users", "--entity-name", "alice"];
    let (created, output) =
        tool(CONFIGS, &[&["--bootstrap-server", &bootstrap, "--command-config", &admin_properties], &alter[..]].concat())?;
    ensure!(created, "kafka-configs could not create alice:\n{output}");
    for (client, _) in &drivers {
        runtime.block_on(kafka::create_topic_with(rdkafka(&bootstrap, "admin", ADMIN_PASSWORD), &format!("denied-{client}"), 1))?;
    }
    let run = |client: &str, driver: Driver, user: &str, password: &str| -> Result<()> {
        let (topic, group, new_topic) =
            (format!("denied-{client}"), format!("denied-{client}-{user}"), format!("denied-{client}-new-{user}"));
        let arguments = [
            "denied",
            "--bootstrap",
            &bootstrap,
            "--topic",
            &topic,
            "--group",
            &group,
            "--new-topic",
            &new_topic,
            "--sasl-mechanism",
            "SCRAM-SHA-512",
            "--sasl-user",
            user,
            "--sasl-password",
            password,
        ];
        let (topic_denied, group_denied) =
            if user == "alice" { (Some("TOPIC_AUTHORIZATION_FAILED"), Some("GROUP_AUTHORIZATION_FAILED")) } else { (None, None) };
        // franz-go starts the group protocol only once Metadata shows it a partition of a
        // subscribed topic, so a user who may not describe the topic never sends JoinGroup: what
        // franz-go reports is the topic's denial (against Kafka as against Floe).
        let join_denied = if client == "franz-go" { topic_denied } else { group_denied };
        let expected = [
            ("produce", topic.as_str(), topic_denied),
            ("fetch", topic.as_str(), topic_denied),
            ("join_group", group.as_str(), join_denied),
            ("commit_offsets", group.as_str(), group_denied),
            ("create_topics", new_topic.as_str(), topic_denied),
            ("alter_configs", topic.as_str(), topic_denied),
        ];
        verifiable::run(driver(&arguments)?, TOOL_TIMEOUT)
            .and_then(|events| events.check_denials(&expected))
            .with_context(|| format!("{client}'s denied mode as {user}"))
    };
    // The three clients at once: each run mostly waits on its client's retries.
    let outcomes: Vec<Result<()>> = std::thread::scope(|scope| {
        let runs: Vec<_> = drivers
            .iter()
            .map(|(client, driver)| {
                let run = &run;
                scope.spawn(move || {
                    run(client, *driver, "alice", ALICE_PASSWORD).and_then(|_| run(client, *driver, "admin", ADMIN_PASSWORD))
                })
            })
            .collect();
        runs.into_iter().map(|handle| handle.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a driver thread panicked")))).collect()
    });
    let mut failures = Vec::new();
    for (cell, outcome) in cells.into_iter().zip(outcomes) {
        match outcome {
            Ok(()) => cell.pass(),
            Err(error) => failures.push(format!("{error:#}")),
        }
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}
