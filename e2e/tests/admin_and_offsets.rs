//! ListOffsets (earliest, latest, by timestamp), DescribeConfigs, ListGroups and DescribeGroups
//! through librdkafka against a playground process.

use anyhow::{bail, ensure, Result};
use floe_e2e::matrix::Cell;
use floe_e2e::{kafka, Playground};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_answers_earliest_latest_and_the_first_offset_at_a_timestamp() -> Result<()> {
    let playground = Playground::start(&[])?;
    kafka::create_topic(&playground.bootstrap, "times", 1).await?;
    let producer: FutureProducer = kafka::config(&playground.bootstrap).set("acks", "all").create()?;
    for (index, timestamp) in [1_000_000i64, 2_000_000, 3_000_000].into_iter().enumerate() {
        let key = format!("k{index}");
        let record = FutureRecord::to("times").partition(0).key(&key).payload("v").timestamp(timestamp);
        if let Err((error, _)) = producer.send(record, Duration::from_secs(10)).await {
            bail!("produce failed: {error}");
        }
    }
    let consumer: BaseConsumer = kafka::config(&playground.bootstrap).set("group.id", "times-reader").create()?;
    ensure!(consumer.fetch_watermarks("times", 0, Duration::from_secs(10))? == (0, 3), "watermarks are not (0, 3)");
    for (timestamp, expected) in
        [(0, Offset::Offset(0)), (1_500_000, Offset::Offset(1)), (3_000_000, Offset::Offset(2)), (3_500_000, Offset::End)]
    {
        let mut query = TopicPartitionList::new();
        query.add_partition_offset("times", 0, Offset::Offset(timestamp))?;
        let found = consumer.offsets_for_times(query, Duration::from_secs(10))?;
        let offset = found.elements_for_topic("times").first().map(|element| element.offset());
        ensure!(offset == Some(expected), "offset for timestamp {timestamp} is {offset:?}, expected {expected:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_configs_are_described_and_a_live_group_is_listed_and_described() -> Result<()> {
    let cell = Cell::open(
        "librdkafka",
        "admin",
        "CreateTopics with configs, DescribeConfigs (every key), ListGroups and DescribeGroups of a live group",
    );
    let playground = Playground::start(&[])?;
    let admin: AdminClient<DefaultClientContext> = kafka::config(&playground.bootstrap).create()?;
    let topic = NewTopic::new("configured", 3, TopicReplication::Fixed(1)).set("retention.ms", "3600000");
    for result in admin.create_topics(&[topic], &AdminOptions::new()).await? {
        if let Err((name, error)) = result {
            bail!("failed to create {name}: {error}");
        }
    }
    let described = admin.describe_configs(&[ResourceSpecifier::Topic("configured")], &AdminOptions::new()).await?;
    let Some(Ok(resource)) = described.into_iter().next() else { bail!("no DescribeConfigs result") };
    ensure!(resource.get("retention.ms").and_then(|entry| entry.value.as_deref()) == Some("3600000"), "retention.ms was not kept");
    ensure!(
        resource.get("cleanup.policy").and_then(|entry| entry.value.as_deref()) == Some("delete"),
        "the default cleanup.policy is missing"
    );
    ensure!(resource.get("max.message.bytes").is_some(), "max.message.bytes is not listed");

    let consumer: BaseConsumer =
        kafka::config(&playground.bootstrap).set("group.id", "described-group").set("auto.offset.reset", "earliest").create()?;
    consumer.subscribe(&["configured"])?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        ensure!(Instant::now() < deadline, "the consumer never got an assignment");
        let _ = consumer.poll(Duration::from_millis(200));
        if consumer.assignment()?.count() == 3 {
            break;
        }
    }
    let groups = consumer.fetch_group_list(Some("described-group"), Duration::from_secs(10))?;
    let Some(group) = groups.groups().iter().find(|group| group.name() == "described-group") else { bail!("the group is not listed") };
    ensure!(group.state() == "Stable", "group state is {}", group.state());
    ensure!(group.protocol_type() == "consumer", "protocol type is {}", group.protocol_type());
    ensure!(group.members().len() == 1, "{} members described", group.members().len());
    cell.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_partitions_grows_a_topic_and_refuses_to_shrink_it() -> Result<()> {
    let cell = Cell::open("librdkafka", "admin", "CreatePartitions grows 2 to 5 (new partition writable) and refuses to shrink");
    let playground = Playground::start(&[])?;
    kafka::create_topic(&playground.bootstrap, "growing", 2).await?;
    let admin: AdminClient<DefaultClientContext> = kafka::config(&playground.bootstrap).create()?;
    let grown = admin.create_partitions(&[rdkafka::admin::NewPartitions::new("growing", 5)], &AdminOptions::new()).await?;
    ensure!(grown.iter().all(Result::is_ok), "growing to 5 partitions failed: {grown:?}");
    let shrunk = admin.create_partitions(&[rdkafka::admin::NewPartitions::new("growing", 3)], &AdminOptions::new()).await?;
    ensure!(shrunk.iter().all(Result::is_err), "shrinking to 3 partitions was accepted");
    let consumer: BaseConsumer = kafka::config(&playground.bootstrap).create()?;
    let metadata = consumer.fetch_metadata(Some("growing"), Duration::from_secs(10))?;
    ensure!(metadata.topics()[0].partitions().len() == 5, "metadata shows {} partitions", metadata.topics()[0].partitions().len());
    let producer: FutureProducer = kafka::config(&playground.bootstrap).set("acks", "all").create()?;
    let delivered = producer.send(FutureRecord::to("growing").partition(4).key("k").payload("v"), Duration::from_secs(10)).await;
    ensure!(
        matches!(delivered, Ok(ref delivery) if delivery.partition == 4 && delivery.offset == 0),
        "produce to the new partition: {delivered:?}"
    );
    cell.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_auto_created_only_when_the_agent_allows_it() -> Result<()> {
    let allowing = Playground::start(&["--auto-create-topics", "--default-partitions", "3"])?;
    let producer: FutureProducer = kafka::config(&allowing.bootstrap).set("acks", "all").set("message.timeout.ms", "10000").create()?;
    let delivered = producer.send(FutureRecord::to("made-on-demand").key("k").payload("v"), Duration::from_secs(10)).await;
    ensure!(delivered.is_ok(), "produce to an auto-created topic failed: {delivered:?}");
    let consumer: BaseConsumer = kafka::config(&allowing.bootstrap).create()?;
    let metadata = consumer.fetch_metadata(Some("made-on-demand"), Duration::from_secs(10))?;
    ensure!(
        metadata.topics()[0].partitions().len() == 3,
        "the auto-created topic has {} partitions",
        metadata.topics()[0].partitions().len()
    );

    let refusing = Playground::start(&[])?;
    let producer: FutureProducer = kafka::config(&refusing.bootstrap).set("acks", "all").set("message.timeout.ms", "3000").create()?;
    let refused = producer.send(FutureRecord::to("never-made").key("k").payload("v"), Duration::from_secs(10)).await;
    ensure!(refused.is_err(), "a topic was created although auto-creation is off");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_can_be_altered_and_an_empty_group_deleted() -> Result<()> {
    let cell = Cell::open("librdkafka", "admin", "AlterConfigs, then DescribeConfigs shows it; DeleteGroups of an empty group");
    use floe_e2e::wire::RawConnection;
    use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    use kafka_protocol::messages::{ApiKey, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
    use kafka_protocol::protocol::StrBytes;
    let playground = Playground::start(&[])?;
    kafka::create_topic(&playground.bootstrap, "tunable", 1).await?;
    let admin: AdminClient<DefaultClientContext> = kafka::config(&playground.bootstrap).create()?;
    let altered = admin
        .alter_configs(
            &[rdkafka::admin::AlterConfig::new(ResourceSpecifier::Topic("tunable")).set("retention.ms", "123456")],
            &AdminOptions::new(),
        )
        .await?;
    ensure!(altered.iter().all(Result::is_ok), "AlterConfigs failed: {altered:?}");
    // IncrementalAlterConfigs (what kafka-configs uses): compaction is refused with a reason...
    let mut connection = RawConnection::connect(&playground.bootstrap)?;
    let compact = IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(StrBytes::from_static_str("tunable"))
        .with_configs(vec![AlterableConfig::default()
            .with_name(StrBytes::from_static_str("cleanup.policy"))
            .with_config_operation(0)
            .with_value(Some(StrBytes::from_static_str("compact")))])]);
    let correlation = connection.send(ApiKey::IncrementalAlterConfigs, 1, &compact)?;
    let response: IncrementalAlterConfigsResponse = connection.receive(ApiKey::IncrementalAlterConfigs, 1, correlation)?;
    ensure!(
        response.responses[0].error_code == 40,
        "cleanup.policy=compact answered {} (expected INVALID_CONFIG)",
        response.responses[0].error_code
    );
    // ...while SET of one key and DELETE of another apply together.
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(StrBytes::from_static_str("tunable"))
        .with_configs(vec![
            AlterableConfig::default()
                .with_name(StrBytes::from_static_str("retention.bytes"))
                .with_config_operation(0)
                .with_value(Some(StrBytes::from_static_str("4096"))),
            AlterableConfig::default().with_name(StrBytes::from_static_str("retention.ms")).with_config_operation(1),
        ])]);
    let correlation = connection.send(ApiKey::IncrementalAlterConfigs, 1, &request)?;
    let response: IncrementalAlterConfigsResponse = connection.receive(ApiKey::IncrementalAlterConfigs, 1, correlation)?;
    ensure!(response.responses[0].error_code == 0, "IncrementalAlterConfigs failed: {:?}", response.responses[0].error_message);
    let described = admin.describe_configs(&[ResourceSpecifier::Topic("tunable")], &AdminOptions::new()).await?;
    let Some(Ok(resource)) = described.into_iter().next() else { bail!("no DescribeConfigs result") };
    ensure!(resource.get("retention.bytes").and_then(|entry| entry.value.as_deref()) == Some("4096"), "retention.bytes was not set");
    ensure!(
        resource.get("retention.ms").and_then(|entry| entry.value.as_deref()) == Some("604800000"),
        "retention.ms did not fall back to its default"
    );

    // A group with committed offsets and no members can be deleted; a second delete finds nothing.
    let consumer: BaseConsumer = kafka::config(&playground.bootstrap).set("group.id", "leaving").create()?;
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset("tunable", 0, Offset::Offset(0))?;
    consumer.commit(&offsets, rdkafka::consumer::CommitMode::Sync)?;
    drop(consumer);
    let deleted = admin.delete_groups(&["leaving"], &AdminOptions::new()).await?;
    ensure!(deleted.iter().all(Result::is_ok), "DeleteGroups failed: {deleted:?}");
    let again = admin.delete_groups(&["leaving"], &AdminOptions::new()).await?;
    ensure!(again.iter().all(Result::is_err), "a deleted group was found again");
    cell.pass();
    Ok(())
}
