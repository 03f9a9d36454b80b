//! `floe topic ...` and `floe cluster info`.

use super::client::{check, check_with_message, topic_name, Client};
use super::{print_rows, ClientArgs, Output, TopicCommand};
use anyhow::{bail, Context, Result};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

/// Kafka's resource type for a topic in config requests.
const TOPIC_RESOURCE: i8 = 2;
/// IncrementalAlterConfigs operations.
const SET: i8 = 0;
const DELETE: i8 = 1;
const TIMEOUT_MS: i32 = 30_000;

pub fn run(args: &ClientArgs, command: TopicCommand) -> Result<()> {
    let mut client = args.connect()?;
    match command {
        TopicCommand::Create { name, partitions, configs } => create(&mut client, args.output, &name, partitions, &configs),
        TopicCommand::List => list(&mut client, args.output),
        TopicCommand::Describe { name } => describe(&mut client, args.output, &name),
        TopicCommand::AlterConfig { name, set, delete } => alter_config(&mut client, args.output, &name, &set, &delete),
        TopicCommand::AddPartitions { name, to } => add_partitions(&mut client, args.output, &name, to),
        TopicCommand::Delete { names } => delete_topics(&mut client, args.output, &names),
    }
}

fn create(client: &mut Client, output: Output, name: &str, partitions: i32, configs: &[(String, String)]) -> Result<()> {
    if partitions < 1 {
        bail!("--partitions must be at least 1, got {partitions}");
    }
    let topic =
        CreatableTopic::default().with_name(topic_name(name)).with_num_partitions(partitions).with_replication_factor(-1).with_configs(
            configs
                .iter()
                .map(|(key, value)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(key.clone()))
                        .with_value(Some(StrBytes::from_string(value.clone())))
                })
                .collect(),
        );
    let request = CreateTopicsRequest::default().with_timeout_ms(TIMEOUT_MS).with_topics(vec![topic]);
    let response: CreateTopicsResponse = client.call(ApiKey::CreateTopics, 7, &request)?;
    let result = response.topics.first().context("CreateTopics answered for no topic")?;
    check_with_message(result.error_code, result.error_message.as_ref(), &format!("creating topic {name:?}"))?;
    print_rows(output, &["TOPIC", "PARTITIONS", "STATUS"], &[vec![name.to_string(), partitions.to_string(), "created".into()]]);
    Ok(())
}

fn list(client: &mut Client, output: Output) -> Result<()> {
    let response = client.metadata(None)?;
    let mut rows: Vec<Vec<String>> = response
        .topics
        .iter()
        .filter(|topic| topic.error_code == 0)
        .map(|topic| vec![topic.name.as_ref().map(|name| name.0.to_string()).unwrap_or_default(), topic.partitions.len().to_string()])
        .collect();
    rows.sort();
    print_rows(output, &["TOPIC", "PARTITIONS"], &rows);
    Ok(())
}

fn describe(client: &mut Client, output: Output, name: &str) -> Result<()> {
    let leaders = client.partition_leaders(name)?;
    let earliest = list_offsets(client, name, &leaders, -2)?;
    let latest = list_offsets(client, name, &leaders, -1)?;
    let rows: Vec<Vec<String>> = leaders
        .iter()
        .map(|(partition, leader)| {
            let start = earliest.get(partition).copied().unwrap_or(-1);
            let end = latest.get(partition).copied().unwrap_or(-1);
            vec![partition.to_string(), leader.to_string(), start.to_string(), end.to_string(), (end - start).max(0).to_string()]
        })
        .collect();
    print_rows(output, &["PARTITION", "LEADER", "LOG START", "END OFFSET", "RECORDS"], &rows);
    let configs = describe_configs(client, name)?;
    if output == Output::Table {
        println!();
    }
    let rows: Vec<Vec<String>> = configs.into_iter().map(|(key, value, source)| vec![key, value, source]).collect();
    print_rows(output, &["CONFIG", "VALUE", "SOURCE"], &rows);
    Ok(())
}

/// Offsets of every partition at `timestamp` (-2 earliest, -1 latest, else the first record at
/// or after that time), asked of each partition's leader. A partition with no record at or after
/// the time answers -1.
pub fn list_offsets(
    client: &mut Client,
    topic: &str,
    leaders: &[(i32, i32)],
    timestamp: i64,
) -> Result<std::collections::BTreeMap<i32, i64>> {
    let mut by_leader: std::collections::BTreeMap<i32, Vec<i32>> = std::collections::BTreeMap::new();
    for (partition, leader) in leaders {
        by_leader.entry(*leader).or_default().push(*partition);
    }
    let mut offsets = std::collections::BTreeMap::new();
    for (leader, partitions) in by_leader {
        use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
        let request = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(
                partitions
                    .iter()
                    .map(|partition| ListOffsetsPartition::default().with_partition_index(*partition).with_timestamp(timestamp))
                    .collect(),
            )]);
        let response: ListOffsetsResponse = client.call_broker(leader, ApiKey::ListOffsets, 7, &request)?;
        for answered in response.topics.iter().flat_map(|topic| &topic.partitions) {
            check(answered.error_code, &format!("offsets of {topic}/{}", answered.partition_index))?;
            offsets.insert(answered.partition_index, answered.offset);
        }
    }
    Ok(offsets)
}

/// (name, value, source) of every config of the topic.
fn describe_configs(client: &mut Client, name: &str) -> Result<Vec<(String, String, String)>> {
    let request = DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
        .with_resource_type(TOPIC_RESOURCE)
        .with_resource_name(StrBytes::from_string(name.to_string()))
        .with_configuration_keys(None)]);
    let response: DescribeConfigsResponse = client.call(ApiKey::DescribeConfigs, 4, &request)?;
    let result = response.results.first().context("DescribeConfigs answered for no resource")?;
    check_with_message(result.error_code, result.error_message.as_ref(), &format!("configs of topic {name:?}"))?;
    let mut configs: Vec<(String, String, String)> = result
        .configs
        .iter()
        .map(|config| {
            let value = if config.is_sensitive {
                "(sensitive)".to_string()
            } else {
                config.value.as_ref().map(|value| value.to_string()).unwrap_or_default()
            };
            (config.name.to_string(), value, config_source(config.config_source).to_string())
        })
        .collect();
    configs.sort();
    Ok(configs)
}

/// Kafka's config source codes, as `kafka-configs` prints them.
fn config_source(code: i8) -> &'static str {
    match code {
        1 => "topic",
        2..=4 => "broker",
        5 => "default",
        _ => "unknown",
    }
}

fn alter_config(client: &mut Client, output: Output, name: &str, set: &[(String, String)], delete: &[String]) -> Result<()> {
    if set.is_empty() && delete.is_empty() {
        bail!("nothing to change: give -s key=value or -d key, e.g. floe topic alter-config {name} -s retention.ms=3600000");
    }
    let mut configs: Vec<AlterableConfig> = set
        .iter()
        .map(|(key, value)| {
            AlterableConfig::default()
                .with_name(StrBytes::from_string(key.clone()))
                .with_config_operation(SET)
                .with_value(Some(StrBytes::from_string(value.clone())))
        })
        .collect();
    configs.extend(
        delete.iter().map(|key| AlterableConfig::default().with_name(StrBytes::from_string(key.clone())).with_config_operation(DELETE)),
    );
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
        .with_resource_type(TOPIC_RESOURCE)
        .with_resource_name(StrBytes::from_string(name.to_string()))
        .with_configs(configs)]);
    let response: IncrementalAlterConfigsResponse = client.call(ApiKey::IncrementalAlterConfigs, 1, &request)?;
    let result = response.responses.first().context("IncrementalAlterConfigs answered for no resource")?;
    check_with_message(result.error_code, result.error_message.as_ref(), &format!("altering the configs of topic {name:?}"))?;
    let mut rows: Vec<Vec<String>> = set.iter().map(|(key, value)| vec![key.clone(), value.clone()]).collect();
    rows.extend(delete.iter().map(|key| vec![key.clone(), "(default)".to_string()]));
    print_rows(output, &["CONFIG", "NEW VALUE"], &rows);
    Ok(())
}

fn add_partitions(client: &mut Client, output: Output, name: &str, to: i32) -> Result<()> {
    let request = CreatePartitionsRequest::default()
        .with_timeout_ms(TIMEOUT_MS)
        .with_topics(vec![CreatePartitionsTopic::default().with_name(topic_name(name)).with_count(to).with_assignments(None)]);
    let response: CreatePartitionsResponse = client.call(ApiKey::CreatePartitions, 3, &request)?;
    let result = response.results.first().context("CreatePartitions answered for no topic")?;
    check_with_message(result.error_code, result.error_message.as_ref(), &format!("adding partitions to topic {name:?}"))?;
    print_rows(output, &["TOPIC", "PARTITIONS"], &[vec![name.to_string(), to.to_string()]]);
    Ok(())
}

fn delete_topics(client: &mut Client, output: Output, names: &[String]) -> Result<()> {
    let request = DeleteTopicsRequest::default()
        .with_timeout_ms(TIMEOUT_MS)
        .with_topics(names.iter().map(|name| DeleteTopicState::default().with_name(Some(topic_name(name)))).collect());
    let response: DeleteTopicsResponse = client.call(ApiKey::DeleteTopics, 6, &request)?;
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for result in &response.responses {
        let name = result.name.as_ref().map(|name| name.0.to_string()).unwrap_or_default();
        match check_with_message(result.error_code, result.error_message.as_ref(), &format!("deleting topic {name:?}")) {
            Ok(()) => rows.push(vec![name, "deleted".to_string()]),
            Err(error) => failures.push(error.to_string()),
        }
    }
    print_rows(output, &["TOPIC", "STATUS"], &rows);
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    Ok(())
}

pub fn cluster_info(args: &ClientArgs) -> Result<()> {
    let mut client = args.connect()?;
    let metadata = client.metadata(Some(&[][..]))?;
    let cluster_id = metadata.cluster_id.as_ref().map(|id| id.to_string()).unwrap_or_default();
    let controller = metadata.controller_id.0;
    let rows: Vec<Vec<String>> = client
        .brokers()
        .into_iter()
        .map(|broker| {
            vec![
                broker.node_id.to_string(),
                broker.address,
                broker.rack.unwrap_or_else(|| "-".to_string()),
                if broker.node_id == controller { "yes".into() } else { "".into() },
                cluster_id.clone(),
            ]
        })
        .collect();
    print_rows(args.output, &["NODE", "ADDRESS", "ZONE", "CONTROLLER", "CLUSTER ID"], &rows);
    Ok(())
}
