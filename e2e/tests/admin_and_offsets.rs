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
    // The playground allows it by default, as Kafka does.
    let allowing = Playground::start(&["--default-partitions", "3"])?;
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

    let refusing = Playground::start(&["--auto-create-topics=false"])?;
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
    // IncrementalAlterConfigs (what kafka-configs uses): a policy that does not exist is refused
    // with a reason...
    let mut connection = RawConnection::connect(&playground.bootstrap)?;
    let bogus_policy = IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(StrBytes::from_static_str("tunable"))
        .with_configs(vec![AlterableConfig::default()
            .with_name(StrBytes::from_static_str("cleanup.policy"))
            .with_config_operation(0)
            .with_value(Some(StrBytes::from_static_str("compress")))])]);
    let correlation = connection.send(ApiKey::IncrementalAlterConfigs, 1, &bogus_policy)?;
    let response: IncrementalAlterConfigsResponse = connection.receive(ApiKey::IncrementalAlterConfigs, 1, correlation)?;
    ensure!(
        response.responses[0].error_code == 40
            && response.responses[0].error_message.as_deref().is_some_and(|message| message.contains("compact,delete")),
        "cleanup.policy=compress answered {} {:?} (expected INVALID_CONFIG naming the policies)",
        response.responses[0].error_code,
        response.responses[0].error_message
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_moves_the_log_start_and_consumers_begin_there() -> Result<()> {
    use rdkafka::message::Message;
    let cell =
        Cell::open("librdkafka", "admin", "DeleteRecords moves the log start to 40 of 100; a consumer from the beginning starts at 40");
    let playground = Playground::start(&[])?;
    kafka::create_topic(&playground.bootstrap, "trimmed", 1).await?;
    let producer: FutureProducer = kafka::config(&playground.bootstrap).set("acks", "all").set("linger.ms", "0").create()?;
    let values: Vec<String> = (0..100).map(|index| format!("record-{index}")).collect();
    let sends =
        values.iter().map(|value| producer.send(FutureRecord::to("trimmed").partition(0).key("k").payload(value), Duration::from_secs(10)));
    for delivery in futures::future::join_all(sends).await {
        delivery.map_err(|(error, _)| error)?;
    }
    let admin: AdminClient<DefaultClientContext> = kafka::config(&playground.bootstrap).create()?;
    let mut request = TopicPartitionList::new();
    request.add_partition_offset("trimmed", 0, Offset::Offset(40))?;
    let result = admin.delete_records(&request, &AdminOptions::new()).await?;
    let element = result.find_partition("trimmed", 0).ok_or_else(|| anyhow::anyhow!("no result for trimmed/0"))?;
    ensure!(element.error().is_ok(), "DeleteRecords failed: {:?}", element.error());
    ensure!(element.offset() == Offset::Offset(40), "low watermark reported as {:?}", element.offset());
    let consumer: BaseConsumer =
        kafka::config(&playground.bootstrap).set("group.id", "trimmed-reader").set("auto.offset.reset", "earliest").create()?;
    ensure!(consumer.fetch_watermarks("trimmed", 0, Duration::from_secs(10))? == (40, 100), "watermarks after DeleteRecords");
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset("trimmed", 0, Offset::Beginning)?;
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        ensure!(Instant::now() < deadline, "nothing consumed after DeleteRecords");
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message?;
            break (message.offset(), message.payload().map(|payload| payload.to_vec()));
        }
    };
    ensure!(first == (40, Some(b"record-40".to_vec())), "first consumed record is {first:?}");
    // Past the high watermark is refused with OFFSET_OUT_OF_RANGE and changes nothing.
    let mut beyond = TopicPartitionList::new();
    beyond.add_partition_offset("trimmed", 0, Offset::Offset(101))?;
    let refused = admin.delete_records(&beyond, &AdminOptions::new()).await?;
    let element = refused.find_partition("trimmed", 0).ok_or_else(|| anyhow::anyhow!("no result for trimmed/0"))?;
    ensure!(
        matches!(element.error(), Err(ref error) if error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::OffsetOutOfRange)),
        "DeleteRecords beyond the high watermark answered {:?}",
        element.error()
    );
    ensure!(consumer.fetch_watermarks("trimmed", 0, Duration::from_secs(10))? == (40, 100), "a refused DeleteRecords moved the watermarks");
    cell.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_delete_forgets_chosen_partitions_and_leader_epochs_answer_the_high_watermark() -> Result<()> {
    use floe_e2e::wire::{produce_batch, RawConnection};
    use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    let playground = Playground::start(&[])?;
    kafka::create_topic(&playground.bootstrap, "forgetful", 2).await?;
    let mut connection = RawConnection::connect(&playground.bootstrap)?;
    let records: Vec<(Vec<u8>, Vec<u8>)> = (0..5).map(|index| (b"k".to_vec(), format!("v{index}").into_bytes())).collect();
    produce_batch(&mut connection, "forgetful", 0, &records)?;
    let consumer: BaseConsumer = kafka::config(&playground.bootstrap).set("group.id", "forgetting").create()?;
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset("forgetful", 0, Offset::Offset(3))?;
    offsets.add_partition_offset("forgetful", 1, Offset::Offset(0))?;
    consumer.commit(&offsets, rdkafka::consumer::CommitMode::Sync)?;
    drop(consumer);
    let topic_name = || TopicName(StrBytes::from_static_str("forgetful"));

    let request = OffsetDeleteRequest::default().with_group_id(GroupId(StrBytes::from_static_str("forgetting"))).with_topics(vec![
        OffsetDeleteRequestTopic::default()
            .with_name(topic_name())
            .with_partitions(vec![OffsetDeleteRequestPartition::default().with_partition_index(0)]),
        OffsetDeleteRequestTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("no-such-topic")))
            .with_partitions(vec![OffsetDeleteRequestPartition::default().with_partition_index(0)]),
    ]);
    let correlation = connection.send(ApiKey::OffsetDelete, 0, &request)?;
    let response: OffsetDeleteResponse = connection.receive(ApiKey::OffsetDelete, 0, correlation)?;
    ensure!(response.error_code == 0, "OffsetDelete answered {}", response.error_code);
    ensure!(
        response.topics[0].partitions[0].error_code == 0,
        "deleting forgetful/0 answered {}",
        response.topics[0].partitions[0].error_code
    );
    ensure!(response.topics[1].partitions[0].error_code == 3, "an unknown topic answered {}", response.topics[1].partitions[0].error_code);

    let fetch = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("forgetting")))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default().with_name(topic_name()).with_partition_indexes(vec![0, 1])]));
    let correlation = connection.send(ApiKey::OffsetFetch, 5, &fetch)?;
    let fetched: OffsetFetchResponse = connection.receive(ApiKey::OffsetFetch, 5, correlation)?;
    let committed: Vec<(i32, i64)> =
        fetched.topics[0].partitions.iter().map(|partition| (partition.partition_index, partition.committed_offset)).collect();
    ensure!(committed == vec![(0, -1), (1, 0)], "committed offsets after OffsetDelete: {committed:?}");

    // A group nobody knows is GROUP_ID_NOT_FOUND.
    let unknown = OffsetDeleteRequest::default().with_group_id(GroupId(StrBytes::from_static_str("never-existed"))).with_topics(vec![]);
    let correlation = connection.send(ApiKey::OffsetDelete, 0, &unknown)?;
    let response: OffsetDeleteResponse = connection.receive(ApiKey::OffsetDelete, 0, correlation)?;
    ensure!(response.error_code == 69, "OffsetDelete of an unknown group answered {}", response.error_code);

    // OffsetForLeaderEpoch: epoch 0 ends at the high watermark (5); unknown partitions are refused.
    let request = OffsetForLeaderEpochRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![OffsetForLeaderTopic::default()
        .with_topic(topic_name())
        .with_partitions(vec![
            OffsetForLeaderPartition::default().with_partition(0).with_current_leader_epoch(0).with_leader_epoch(0),
            OffsetForLeaderPartition::default().with_partition(7).with_current_leader_epoch(-1).with_leader_epoch(0),
        ])]);
    let correlation = connection.send(ApiKey::OffsetForLeaderEpoch, 4, &request)?;
    let response: OffsetForLeaderEpochResponse = connection.receive(ApiKey::OffsetForLeaderEpoch, 4, correlation)?;
    let answers: Vec<(i16, i32, i64)> = response.topics[0]
        .partitions
        .iter()
        .map(|partition| (partition.error_code, partition.leader_epoch, partition.end_offset))
        .collect();
    ensure!(answers == vec![(0, 0, 5), (3, -1, -1)], "OffsetForLeaderEpoch answered {answers:?}");
    Ok(())
}

fn floe_admin(arguments: &[&str]) -> Result<(bool, String)> {
    let output = std::process::Command::new(floe_e2e::floe_binary()?).arg("admin").args(arguments).output()?;
    Ok((output.status.success(), format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_object_answers_storage_errors_until_an_operator_marks_it_lost_and_then_consumers_skip_it() -> Result<()> {
    use floe_e2e::wire::{fetch_once, produce_batch, RawConnection};
    const KAFKA_STORAGE_ERROR: i16 = 56;
    let mut playground = Playground::start(&["--flush-interval", "10ms"])?;
    kafka::create_topic(&playground.bootstrap, "holes", 1).await?;
    let mut connection = RawConnection::connect(&playground.bootstrap)?;
    // Three acknowledged batches of two records, each in its own segment object.
    for batch in 0..3u64 {
        let records = [
            (floe_e2e::records::key(2 * batch), floe_e2e::records::value(2 * batch)),
            (floe_e2e::records::key(2 * batch + 1), floe_e2e::records::value(2 * batch + 1)),
        ];
        let offset = produce_batch(&mut connection, "holes", 0, &records)?;
        ensure!(offset == 2 * batch as i64, "batch {batch} got offset {offset}");
    }
    drop(connection);
    playground.stop()?;
    // Lose the middle object (names sort in write order), as a bucket accident would.
    let data = playground.data_dir.path().to_path_buf();
    let clusters: Vec<_> = std::fs::read_dir(data.join("bucket/clusters"))?.filter_map(|entry| entry.ok()).collect();
    ensure!(clusters.len() == 1, "expected one cluster directory in the bucket");
    let segments = clusters[0].path().join("segments");
    let mut objects: Vec<String> = std::fs::read_dir(&segments)?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().to_string())
        .filter(|name| name.ends_with(".seg"))
        .collect();
    objects.sort();
    ensure!(objects.len() == 3, "expected three segment objects, found {objects:?}");
    std::fs::remove_file(segments.join(&objects[1]))?;
    let lost = format!("clusters/{}/segments/{}", clusters[0].file_name().to_string_lossy(), objects[1]);

    // After a restart (no cache hides the hole) the consumer is told, not left waiting.
    playground.restart()?;
    let mut connection = RawConnection::connect(&playground.bootstrap)?;
    let (error, batches) = fetch_once(&mut connection, "holes", 0, 0)?;
    ensure!(error == 0 && batches == vec![(0, 2)], "fetch from 0: error {error}, batches {batches:?}");
    let (error, batches) = fetch_once(&mut connection, "holes", 0, 2)?;
    ensure!(error == KAFKA_STORAGE_ERROR && batches.is_empty(), "fetch from the lost offset: error {error}, batches {batches:?}");
    let (_, metrics) = floe_e2e::http_get(&playground.http, "/metrics")?;
    ensure!(floe_e2e::metric_value(&metrics, "floe_unreadable_chunks_total").unwrap_or_default() >= 1.0, "no unreadable chunk counted");
    drop(connection);
    playground.stop()?;

    let metadata = format!("--metadata=embedded://{}", data.join("metadata").display());
    let bucket = format!("--object-store=file://{}", data.join("bucket").display());
    let (clean, report) = floe_admin(&["fsck", &metadata, &bucket])?;
    ensure!(!clean && report.contains(&lost) && report.contains("unreadable"), "fsck did not report the lost object:\n{report}");
    // Without the explicit confirmation nothing changes.
    let (ok, plan) = floe_admin(&["mark-lost", &metadata, &bucket, "--object", &lost])?;
    ensure!(ok && plan.contains("would drop 2 acknowledged records") && plan.contains("holes/0 offsets 2..4"), "dry run said:\n{plan}");
    ensure!(!floe_admin(&["fsck", &metadata, &bucket])?.0, "a dry run changed the index");
    let (ok, done) = floe_admin(&["mark-lost", &metadata, &bucket, "--object", &lost, "--confirm-data-loss"])?;
    ensure!(ok && done.contains("marked") && done.contains("2 records"), "mark-lost said:\n{done}");
    let (clean, report) = floe_admin(&["fsck", &metadata, &bucket])?;
    ensure!(clean, "fsck is not clean after the object was marked lost:\n{report}");

    // Consumers move past the gap; offsets are not reused.
    playground.restart()?;
    let mut connection = RawConnection::connect(&playground.bootstrap)?;
    let (error, batches) = fetch_once(&mut connection, "holes", 0, 2)?;
    ensure!(error == 0 && batches == vec![(4, 2)], "fetch from inside the gap: error {error}, batches {batches:?}");
    let consumer: BaseConsumer =
        kafka::config(&playground.bootstrap).set("group.id", "holes-reader").set("enable.auto.commit", "false").create()?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset("holes", 0, Offset::Beginning)?;
    consumer.assign(&assignment)?;
    let mut offsets = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while offsets.last() != Some(&5) {
        ensure!(Instant::now() < deadline, "librdkafka read only offsets {offsets:?}");
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            offsets.push(rdkafka::Message::offset(&message?));
        }
    }
    ensure!(offsets == vec![0, 1, 4, 5], "librdkafka read offsets {offsets:?}");
    let produced = produce_batch(&mut connection, "holes", 0, &[(b"k".to_vec(), b"v".to_vec())])?;
    ensure!(produced == 6, "a new record got offset {produced}: offsets were reused");
    Ok(())
}
