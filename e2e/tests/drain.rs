//! Scale-in without client errors (ARCHITECTURE.md §8, agent/DESIGN.md "Drain"): two of three
//! agents get SIGTERM, one after the other, while an idempotent Java producer, an idempotent
//! librdkafka producer and a librdkafka consumer group run against the cluster. No producer sees a
//! single failed send, every acknowledged record is stored exactly once at its acknowledged
//! offset, the group reads everything, and each agent leaves the way the design says: marked
//! draining in the registry (and gone from Metadata) while it still runs, exit status 0 well
//! inside its drain timeout, its registry key deleted as it exits rather than left to lapse.

use anyhow::{ensure, Context, Result};
use floe_agent::cluster::registry::AgentRecord;
use floe_agent::metadata::keys::KeyLayout;
use floe_e2e::client_load::{verify_exactly_once, Group, JavaProducer};
use floe_e2e::cluster::{Agent, Infrastructure};
use floe_e2e::kafka::{self, produce_reporting};
use floe_e2e::{http_get, metric_value, wait_until};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const VIRTUAL_CLUSTER: &str = "drain";
const POOL: &str = "drain-pool";
const PARTITIONS: i32 = 12;
const JAVA_TOPIC: &str = "drain-java";
const RDKAFKA_TOPIC: &str = "drain-rdkafka";
/// Records per second, per producer.
const RATE: u64 = 400;
/// The agents' default --drain-timeout; the test uses the default drain settings.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

fn agent_key(node_id: i32) -> String {
    KeyLayout::new("/floe", VIRTUAL_CLUSTER).agent_key(node_id)
}

/// The registry record of `node_id` as etcd holds it now (`None` once the key is gone).
fn registry_record(infrastructure: &Infrastructure, node_id: i32) -> Result<Option<AgentRecord>> {
    let value = infrastructure.etcdctl(&["get", &agent_key(node_id), "--print-value-only"])?;
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    Ok(Some(serde_json::from_str(value).with_context(|| format!("registry value {value:?}"))?))
}

fn registry_records(infrastructure: &Infrastructure) -> Result<Vec<AgentRecord>> {
    let prefix = KeyLayout::new("/floe", VIRTUAL_CLUSTER).agents_prefix();
    let values = infrastructure.etcdctl(&["get", "--prefix", &prefix, "--print-value-only"])?;
    values.lines().filter(|line| !line.trim().is_empty()).map(|line| Ok(serde_json::from_str(line)?)).collect()
}

/// Records stored in both topics, as the agent at `bootstrap` sees them.
fn total(bootstrap: &str) -> Result<i64> {
    Ok(kafka::total_records(bootstrap, JAVA_TOPIC, PARTITIONS)? + kafka::total_records(bootstrap, RDKAFKA_TOPIC, PARTITIONS)?)
}

/// Produce bytes the agent has accepted so far (`floe_bytes_in_total`).
fn bytes_in(agent: &Agent) -> Result<f64> {
    let (_, metrics) = http_get(&agent.http, "/metrics")?;
    metric_value(&metrics, "floe_bytes_in_total").context("no floe_bytes_in_total")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_two_of_three_agents_under_load_without_a_client_error_or_a_lost_record() -> Result<()> {
    let started = Instant::now();
    let infrastructure = Infrastructure::start()?;
    let mut agents = Vec::new();
    for number in 0..3 {
        let pod = format!("floe-drain-{number}");
        agents.push(Agent::start(&infrastructure, VIRTUAL_CLUSTER, &["--registry-ttl", "3s", "--pool", POOL, "--pod-name", &pod])?);
    }
    let node_ids: Vec<i32> = agents.iter().map(|agent| agent.node_id).collect();
    wait_until("every agent advertises all three", Duration::from_secs(30), || {
        Ok(agents.iter().map(|agent| kafka::broker_ids(&agent.bootstrap)).collect::<Result<Vec<_>>>()?.iter().all(|ids| ids.len() == 3))
    })?;
    kafka::create_topic(&agents[0].bootstrap, JAVA_TOPIC, PARTITIONS).await?;
    kafka::create_topic(&agents[0].bootstrap, RDKAFKA_TOPIC, PARTITIONS).await?;
    let bootstrap = agents.iter().map(|agent| agent.bootstrap.clone()).collect::<Vec<_>>().join(",");
    let survivor = agents[2].bootstrap.clone();

    // Load: a librdkafka and a Java producer (both idempotent, acks=all) and a three-member group.
    let group = Group::start(&bootstrap, "drain-readers", 3, &[JAVA_TOPIC, RDKAFKA_TOPIC])?;
    let (stop_rdkafka, rdkafka_stopped) = tokio::sync::watch::channel(false);
    let rdkafka_producer = {
        let bootstrap = bootstrap.clone();
        let extra = [("enable.idempotence", "true"), ("message.timeout.ms", "60000")];
        tokio::spawn(async move { produce_reporting(&bootstrap, RDKAFKA_TOPIC, RATE, &extra, rdkafka_stopped).await })
    };
    let mut java_producer = JavaProducer::start(&bootstrap, JAVA_TOPIC, PARTITIONS, RATE)?;

    let load_check = {
        let survivor = survivor.clone();
        let infrastructure = &infrastructure;
        let agents = &agents;
        tokio::task::block_in_place(move || -> Result<()> {
            wait_until("both producers are writing", Duration::from_secs(60), || {
                Ok(kafka::total_records(&survivor, JAVA_TOPIC, PARTITIONS)? > 0
                    && kafka::total_records(&survivor, RDKAFKA_TOPIC, PARTITIONS)? > 0)
            })?;
            // Every agent publishes its pod, pool and a non-zero load in the registry, and the
            // same figures as gauges.
            wait_until("every registry record carries pod, pool and load", Duration::from_secs(30), || {
                let records = registry_records(infrastructure)?;
                Ok(records.len() == 3
                    && records.iter().all(|record| {
                        record.pool.as_deref() == Some(POOL)
                            && record.pod.as_deref().is_some_and(|pod| pod.starts_with("floe-drain-"))
                            && record.bytes_in_per_second > 0.0
                            && record.object_store_bytes_per_second > 0.0
                            && record.cpu_seconds_per_second > 0.0
                    }))
            })?;
            for agent in agents {
                let (_, metrics) = http_get(&agent.http, "/metrics")?;
                for gauge in
                    ["floe_agent_network_bytes_per_second", "floe_agent_object_store_bytes_per_second", "floe_agent_cpu_seconds_per_second"]
                {
                    let value = metric_value(&metrics, gauge).with_context(|| format!("{gauge} missing at node {}", agent.node_id))?;
                    ensure!(value > 0.0, "{gauge} is {value} at node {} under load", agent.node_id);
                }
            }
            Ok(())
        })
    };
    load_check?;
    println!("load running and reported after {:?} (Java: {} acknowledged so far)", started.elapsed(), java_producer.acknowledged());

    // Drain agents 0 and 1, one after the other; agent 2 survives.
    for victim_position in 0..2 {
        let node_id = node_ids[victim_position];
        let survivor = survivor.clone();
        let infrastructure = &infrastructure;
        let victim = &mut agents[victim_position];
        tokio::task::block_in_place(move || -> Result<()> {
            let signalled = Instant::now();
            victim.terminate()?;
            // Marked draining in etcd, and dropped from the survivor's Metadata, while it still runs.
            wait_until(&format!("node {node_id} is marked draining in the registry"), Duration::from_secs(10), || {
                Ok(registry_record(infrastructure, node_id)?.is_some_and(|record| record.draining))
            })?;
            let marked = signalled.elapsed();
            wait_until(&format!("the survivor stops advertising node {node_id}"), Duration::from_secs(10), || {
                Ok(!kafka::broker_ids(&survivor)?.contains(&node_id))
            })?;
            let unadvertised = signalled.elapsed();
            ensure!(
                victim.exit_status()?.is_none(),
                "node {node_id} exited before it was seen draining and unadvertised: the grace period did not hold"
            );
            // During the grace the load goes on at the other agents, and none of it lands here:
            // produce is answered NOT_LEADER_OR_FOLLOWER, so clients moved at once instead of at
            // their next metadata refresh.
            let accepted = bytes_in(victim)?;
            let moving = total(&survivor)?;
            wait_until("the load goes on at the other agents", Duration::from_secs(10), || {
                Ok(total(&survivor)? >= moving + RATE as i64 / 2)
            })?;
            let accepted_later = bytes_in(victim).context("the draining agent exited before the grace period was over")?;
            ensure!(
                accepted_later == accepted,
                "node {node_id} accepted {} produce bytes after it was unadvertised",
                accepted_later - accepted
            );
            let status = victim.wait_for_exit(DRAIN_TIMEOUT)?;
            let exited = signalled.elapsed();
            ensure!(status.success(), "node {node_id} exited with {status} after SIGTERM");
            // Gone at once: the lease was revoked, not left to lapse (TTL 3 s).
            ensure!(
                registry_record(infrastructure, node_id)?.is_none(),
                "node {node_id}'s registry key outlived the process: its lease was not revoked"
            );
            println!("node {node_id}: draining in etcd after {marked:?}, unadvertised after {unadvertised:?}, exited 0 after {exited:?}");
            // The load carries on at the remaining agents before the next drain.
            let after_exit = total(&survivor)?;
            wait_until("the load goes on after the exit", Duration::from_secs(30), || {
                Ok(total(&survivor)? >= after_exit + RATE as i64 / 2)
            })?;
            Ok(())
        })?;
        // The Java producer rides through the drain (it exits early only on a broken client).
        java_producer.ensure_running()?;
        println!("Java: {} acknowledged so far", java_producer.acknowledged());
    }

    // Stop the producers; neither may have seen a failed send.
    stop_rdkafka.send(true)?;
    let rdkafka = rdkafka_producer.await??;
    let java_acks = tokio::task::block_in_place(|| java_producer.finish(Duration::from_secs(120)))?;
    rdkafka.ensure_every_send_acknowledged("librdkafka")?;
    println!("producers: librdkafka {} and Java {} records, every one acknowledged", rdkafka.sent, java_acks.len());

    let survivor_for_check = survivor.clone();
    let rdkafka_acks = rdkafka.acknowledged;
    let (expected, java_acks, rdkafka_acks) = tokio::task::spawn_blocking(move || -> Result<_> {
        verify_exactly_once(&survivor_for_check, RDKAFKA_TOPIC, PARTITIONS, &rdkafka_acks)?;
        verify_exactly_once(&survivor_for_check, JAVA_TOPIC, PARTITIONS, &java_acks)?;
        let expected: BTreeSet<(String, u64)> = rdkafka_acks
            .iter()
            .map(|ack| (RDKAFKA_TOPIC.to_string(), ack.index))
            .chain(java_acks.iter().map(|ack| (JAVA_TOPIC.to_string(), ack.index)))
            .collect();
        Ok((expected, java_acks, rdkafka_acks))
    })
    .await??;

    // The group (which lost its coordinator if it lived on a drained agent) reads everything.
    tokio::task::block_in_place(|| {
        wait_until("the consumer group has read every acknowledged record", Duration::from_secs(90), || Ok(group.missing(&expected) == 0))
    })
    .with_context(|| format!("{} records never reached the group", group.missing(&expected)))?;
    let (repeated, problems) = tokio::task::block_in_place(|| group.finish())?;
    ensure!(problems.is_empty(), "the group read bad records: {problems:?}");
    println!(
        "group read all {} records ({repeated} more than once, after rebalances); librdkafka {} and Java {} stored exactly once; {:?} in all",
        expected.len(),
        rdkafka_acks.len(),
        java_acks.len(),
        started.elapsed()
    );
    Ok(())
}

/// The drain is bounded: a second SIGTERM ends it at once, and a drain that cannot finish (etcd
/// hangs, so even the draining mark is never answered) ends at --drain-timeout. Both exit with
/// status 1 so the failure is visible; neither waits for the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_or_the_drain_timeout_ends_a_drain_early_with_an_error() -> Result<()> {
    let infrastructure = Infrastructure::start()?;
    let long_grace = ["--registry-ttl", "3s", "--drain-grace", "50s", "--drain-timeout", "55s"];
    let mut impatient = Agent::start(&infrastructure, VIRTUAL_CLUSTER, &long_grace)?;
    let mut stuck =
        Agent::start(&infrastructure, VIRTUAL_CLUSTER, &["--registry-ttl", "3s", "--drain-grace", "1s", "--drain-timeout", "3s"])?;
    let impatient_id = impatient.node_id;
    tokio::task::block_in_place(|| -> Result<()> {
        impatient.terminate()?;
        wait_until("the first SIGTERM starts the drain", Duration::from_secs(10), || {
            Ok(registry_record(&infrastructure, impatient_id)?.is_some_and(|record| record.draining))
        })?;
        let second = Instant::now();
        impatient.terminate()?;
        let status = impatient.wait_for_exit(Duration::from_secs(10))?;
        let after_second = second.elapsed();
        ensure!(status.code() == Some(1), "after a second SIGTERM the agent exited with {status}, expected 1");
        ensure!(after_second < Duration::from_secs(5), "a second SIGTERM took {after_second:?} to end the drain");

        infrastructure.pause_etcd()?;
        let signalled = Instant::now();
        stuck.terminate()?;
        let exited = stuck.wait_for_exit(Duration::from_secs(30));
        let elapsed = signalled.elapsed();
        infrastructure.resume_etcd()?;
        let status = exited?;
        ensure!(status.code() == Some(1), "a drain past its timeout exited with {status}, expected 1");
        ensure!(
            elapsed >= Duration::from_secs(3) && elapsed < Duration::from_secs(10),
            "the drain ended after {elapsed:?}; --drain-timeout is 3s"
        );
        println!("a second SIGTERM ended a drain after {after_second:?}; a stuck drain ended after {elapsed:?}");
        Ok(())
    })
}
