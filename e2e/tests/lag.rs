//! Consumer lag metrics (issue 21): against a playground process, the agent running the jobs
//! exports a group's lag per partition in records and in seconds, follows its commits, and
//! removes the series of a group that was deleted; in cluster mode only the jobs leader exports
//! lag and etcd's database size, and the next leader takes over.

use anyhow::{bail, ensure, Result};
use floe_e2e::cluster::{Agent, Infrastructure};
use floe_e2e::{http_get, kafka, metric_value, records, wait_until, Playground};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const TOPIC: &str = "lagging";
const GROUP: &str = "lag-reader";
const RECORDS: u64 = 20;
const BEHIND: u64 = 5;
/// How old the produced records claim to be (their CreateTime), so the lag in seconds has a
/// known lower bound instead of "a little more than zero".
const RECORD_AGE_SECONDS: i64 = 120;

/// A sample's value, or `None` when the agent does not export it.
fn sample(http: &str, name_and_labels: &str) -> Result<Option<f64>> {
    let (_, metrics) = http_get(http, "/metrics")?;
    // `name{...} value`: the trailing space keeps `..._records{group="a"}` from matching a longer label set.
    Ok(metric_value(&metrics, &format!("{name_and_labels} ")))
}

async fn produce_aged_records(bootstrap: &str) -> Result<()> {
    let producer: FutureProducer = kafka::config(bootstrap).set("acks", "all").set("linger.ms", "0").create()?;
    let created = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64 - RECORD_AGE_SECONDS * 1000;
    for index in 0..RECORDS {
        let (key, value) = (records::key(index), records::value(index));
        let record = FutureRecord::to(TOPIC).partition(0).key(&key).payload(&value).timestamp(created);
        if let Err((error, _)) = producer.send(record, Duration::from_secs(10)).await {
            bail!("produce of record {index} failed: {error}");
        }
    }
    Ok(())
}

fn commit(bootstrap: &str, offset: u64) -> Result<()> {
    let consumer: BaseConsumer = kafka::config(bootstrap).set("group.id", GROUP).create()?;
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset(TOPIC, 0, Offset::Offset(offset as i64))?;
    consumer.commit(&offsets, CommitMode::Sync)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jobs_agent_exports_a_groups_lag_in_records_and_seconds_until_it_catches_up() -> Result<()> {
    let playground = Playground::start(&["--lag-metrics-interval", "1s"])?;
    let http = playground.http.as_str();
    kafka::create_topic(&playground.bootstrap, TOPIC, 1).await?;
    produce_aged_records(&playground.bootstrap).await?;

    let records_series = format!(r#"floe_consumer_group_lag_records{{group="{GROUP}",partition="0",topic="{TOPIC}"}}"#);
    let seconds_series = format!(r#"floe_consumer_group_lag_seconds{{group="{GROUP}",partition="0",topic="{TOPIC}"}}"#);
    let total_series = format!(r#"floe_consumer_group_total_lag_records{{group="{GROUP}"}}"#);
    let max_seconds_series = format!(r#"floe_consumer_group_max_lag_seconds{{group="{GROUP}"}}"#);
    ensure!(sample(http, &records_series)?.is_none(), "lag is exported for a group that committed nothing");

    commit(&playground.bootstrap, RECORDS - BEHIND)?;
    wait_until("the lag metrics to show the group 5 records behind", Duration::from_secs(30), || {
        Ok(sample(http, &records_series)? == Some(BEHIND as f64))
    })?;
    let seconds = sample(http, &seconds_series)?.unwrap_or_default();
    ensure!(
        (RECORD_AGE_SECONDS as f64..RECORD_AGE_SECONDS as f64 + 60.0).contains(&seconds),
        "lag in seconds is {seconds}, expected the age of the records ({RECORD_AGE_SECONDS} s, plus the test's run time)"
    );
    ensure!(sample(http, &total_series)? == Some(BEHIND as f64), "the group total is not {BEHIND} records");
    ensure!(sample(http, &max_seconds_series)? == Some(seconds), "the group's max lag in seconds is not its only partition's");
    ensure!(sample(http, "floe_consumer_group_lag_partitions_dropped")? == Some(0.0), "per-partition series were dropped");

    commit(&playground.bootstrap, RECORDS)?;
    wait_until("the lag metrics to show the group caught up", Duration::from_secs(30), || {
        Ok(sample(http, &records_series)? == Some(0.0) && sample(http, &seconds_series)? == Some(0.0))
    })?;
    ensure!(sample(http, &max_seconds_series)? == Some(0.0), "a caught-up group still has a max lag in seconds");

    // A deleted group's series go away instead of freezing at their last values.
    let admin: AdminClient<DefaultClientContext> = kafka::config(&playground.bootstrap).create()?;
    let deleted = admin.delete_groups(&[GROUP], &AdminOptions::new()).await?;
    ensure!(deleted.iter().all(Result::is_ok), "DeleteGroups failed: {deleted:?}");
    wait_until("the deleted group's lag series to disappear", Duration::from_secs(30), || {
        Ok(sample(http, &records_series)?.is_none() && sample(http, &total_series)?.is_none())
    })?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cluster_mode_only_the_jobs_leader_exports_lag_and_etcds_database_size() -> Result<()> {
    let infrastructure = Infrastructure::start()?;
    let flags = ["--lag-metrics-interval", "1s", "--registry-ttl", "3s"];
    let agents = [Agent::start(&infrastructure, "lag", &flags)?, Agent::start(&infrastructure, "lag", &flags)?];
    kafka::create_topic(&agents[0].bootstrap, TOPIC, 1).await?;
    produce_aged_records(&agents[0].bootstrap).await?;
    commit(&agents[0].bootstrap, RECORDS - BEHIND)?;

    let records_series = format!(r#"floe_consumer_group_lag_records{{group="{GROUP}",partition="0",topic="{TOPIC}"}}"#);
    let exports = |agent: &Agent| -> Result<(Option<f64>, Option<f64>)> {
        Ok((sample(&agent.http, &records_series)?, sample(&agent.http, "floe_etcd_db_size_bytes")?))
    };
    let mut leader = None;
    wait_until("one agent to export the group's lag and etcd's database size", Duration::from_secs(60), || {
        let found =
            agents.iter().position(|agent| matches!(exports(agent), Ok((Some(lag), Some(size))) if lag == BEHIND as f64 && size > 0.0));
        leader = found;
        Ok(found.is_some())
    })?;
    let leader = leader.expect("set by the wait");
    let follower = &agents[1 - leader];
    ensure!(exports(follower)? == (None, None), "the agent that does not lead the jobs exports lag or etcd's size as well");
    let exported = sample(&agents[leader].http, "floe_etcd_db_size_bytes")?.unwrap_or_default();
    let measured = infrastructure.etcd_db_size()? as f64;
    ensure!(
        (measured / 2.0..=measured * 2.0).contains(&exported),
        "floe_etcd_db_size_bytes is {exported}, etcdctl endpoint status says {measured}"
    );

    // The leader drains (releasing the leadership): the other agent takes the jobs over and with
    // them the cluster metrics.
    agents[leader].terminate()?;
    wait_until("the next jobs leader to export the lag and etcd's size", Duration::from_secs(60), || {
        Ok(matches!(exports(follower)?, (Some(lag), Some(size)) if lag == BEHIND as f64 && size > 0.0))
    })?;
    Ok(())
}
