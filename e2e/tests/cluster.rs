//! Cluster mode (done-when 1-4 of the cluster issue): several `floe agent` processes share one
//! virtual cluster through a real etcd and a real S3-compatible server, on loopback.

use anyhow::{ensure, Context, Result};
use floe_e2e::cluster::{Agent, AgentOptions, Infrastructure};
use floe_e2e::kafka::{self, longest_gap, produce_until, verify_acknowledged};
use floe_e2e::verifiable::{self, Events, Expected};
use floe_e2e::wire::{encode_stamped_batch, produce_batch, ProducerStamp, RawConnection};
use floe_e2e::{http_get, java_driver, metric_value};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Deserialize as _;
use std::time::{Duration, Instant};

const FAST: &[&str] = &["--registry-ttl", "3s"];

fn bytes_in(agent: &Agent) -> Result<f64> {
    let (_, metrics) = http_get(&agent.http, "/metrics")?;
    Ok(metric_value(&metrics, "floe_bytes_in_total").unwrap_or_default())
}

/// Waits until the agent at `bootstrap` advertises `count` brokers.
fn wait_for_brokers(bootstrap: &str, count: usize) -> Result<()> {
    let consumer: BaseConsumer = kafka::config(bootstrap).create()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = match consumer.fetch_metadata(None, Duration::from_secs(5)) {
            Ok(metadata) => metadata.brokers().len().to_string(),
            Err(error) => error.to_string(),
        };
        if seen == count.to_string() {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "{bootstrap} advertises {seen} brokers, expected {count}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_agents_serve_one_virtual_cluster_whichever_agent_a_client_bootstraps_at() -> Result<()> {
    let infrastructure = Infrastructure::start()?;
    let agents = [
        Agent::start(&infrastructure, "shared", FAST)?,
        Agent::start(&infrastructure, "shared", FAST)?,
        Agent::start(&infrastructure, "shared", FAST)?,
    ];
    for agent in &agents {
        wait_for_brokers(&agent.bootstrap, 3)?;
    }
    let (a, b, c) = (&agents[0], &agents[1], &agents[2]);
    kafka::create_topic(&a.bootstrap, "orders", 12).await?;
    let produce = java_driver(&[
        "produce-range",
        "--bootstrap",
        &a.bootstrap,
        "--topic",
        "orders",
        "--partitions",
        "12",
        "--start",
        "0",
        "--count",
        "100000",
    ])?;
    let consume = java_driver(&[
        "group-consume",
        "--bootstrap",
        &c.bootstrap,
        "--topic",
        "orders",
        "--group",
        "orders-readers",
        "--members",
        "3",
        "--records",
        "100000",
    ])?;
    tokio::task::spawn_blocking(move || -> Result<()> {
        let expected = Expected::new("orders", 12, 100_000);
        let produced = verifiable::run(produce, Duration::from_secs(600))?;
        produced.check_acknowledged(&expected)?;
        produced.check_default_partitioner(&expected)?;
        let consumed = verifiable::run(consume, Duration::from_secs(600))?;
        Events::combined(&produced, &consumed).check_group_members(&expected, 3)?;
        Ok(())
    })
    .await??;

    // librdkafka bootstrapped at B alone sends each partition where Metadata says: all three agents.
    let before: Vec<f64> = agents.iter().map(bytes_in).collect::<Result<_>>()?;
    let producer: FutureProducer = kafka::config(&b.bootstrap).set("acks", "all").create()?;
    kafka::create_topic(&b.bootstrap, "spread", 12).await?;
    for index in 0..1_200u64 {
        let key = floe_e2e::records::key(index);
        let record = FutureRecord::to("spread").partition((index % 12) as i32).key(&key).payload("x");
        producer.send_result(record).map_err(|(error, _)| anyhow::anyhow!("{error}"))?;
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30))?;
    let after: Vec<f64> = agents.iter().map(bytes_in).collect::<Result<_>>()?;
    for (index, (before, after)) in before.iter().zip(&after).enumerate() {
        ensure!(after > before, "agent {index} received no produce traffic from librdkafka ({before} -> {after})");
    }
    println!(
        "librdkafka produce bytes per agent: {:?}",
        after.iter().zip(&before).map(|(after, before)| after - before).collect::<Vec<_>>()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_agent_every_five_seconds_loses_no_acknowledged_record() -> Result<()> {
    let infrastructure = Infrastructure::start()?;
    let mut agents = [
        Agent::start(&infrastructure, "chaos", FAST)?,
        Agent::start(&infrastructure, "chaos", FAST)?,
        Agent::start(&infrastructure, "chaos", FAST)?,
    ];
    wait_for_brokers(&agents[0].bootstrap, 3)?;
    kafka::create_topic(&agents[0].bootstrap, "chaos", 6).await?;
    let bootstrap = agents.iter().map(|agent| agent.bootstrap.clone()).collect::<Vec<_>>().join(",");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let producer = {
        let bootstrap = bootstrap.clone();
        tokio::spawn(async move { produce_until(&bootstrap, "chaos", 2_000, &[("enable.idempotence", "false")], stopped).await })
    };
    let started = Instant::now();
    let mut victim = 0;
    while started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        agents[victim].kill_hard()?;
        agents[victim].restart()?;
        victim = (victim + 1) % agents.len();
    }
    stop.send(true)?;
    let (sent, acknowledged) = producer.await??;
    let survivor = &agents[victim].bootstrap;
    verify_acknowledged(survivor, "chaos", 6, &acknowledged)?;
    println!(
        "chaos: {sent} sent, {} acknowledged, all read back at their offsets; longest window without an acknowledgement {:?}",
        acknowledged.len(),
        longest_gap(&acknowledged)
    );
    ensure!(acknowledged.len() as u64 > sent / 2, "only {} of {sent} records were acknowledged", acknowledged.len());
    Ok(())
}

/// An agent replays the journal written since the last snapshot when it starts, and with the
/// default 60 s snapshot interval a busy cluster's tail is larger than one gRPC message (4 MiB
/// for the etcd client): read in one request, it stopped every agent that started then. Here the
/// tail grows past 5 MiB, then a new agent joins and the first restarts; both start, and every
/// acknowledged record is read back through the newcomer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_start_behind_a_journal_tail_larger_than_a_grpc_message() -> Result<()> {
    let infrastructure = Infrastructure::start()?;
    let mut first = Agent::start(&infrastructure, "long-tail", &["--registry-ttl", "3s", "--snapshot-interval", "1h"])?;
    kafka::create_topic(&first.bootstrap, "long-tail", 400).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let producer = {
        let bootstrap = first.bootstrap.clone();
        tokio::spawn(async move { produce_until(&bootstrap, "long-tail", 4_000, &[], stopped).await })
    };
    let journal_bytes =
        || -> Result<usize> { Ok(infrastructure.etcdctl(&["get", "--prefix", "--print-value-only", "/floe/vc/long-tail/log/"])?.len()) };
    let deadline = Instant::now() + Duration::from_secs(90);
    while journal_bytes()? < 5 << 20 {
        ensure!(Instant::now() < deadline, "the journal held only {} bytes after 90 s", journal_bytes()?);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    stop.send(true)?;
    let (sent, acknowledged) = producer.await??;
    let tail = journal_bytes()?;
    let second = Agent::start(&infrastructure, "long-tail", FAST).context("an agent joining behind the long tail")?;
    first.restart().context("an agent restarting behind the long tail")?;
    // The first agent's previous registration lapses with its lease (3 s).
    wait_for_brokers(&second.bootstrap, 2)?;
    verify_acknowledged(&second.bootstrap, "long-tail", 400, &acknowledged)?;
    println!(
        "long tail: {tail} bytes of journal since the last snapshot; a joining and a restarted agent started; {} of {sent} acknowledged records read back",
        acknowledged.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_etcd_during_produce_loses_nothing_and_produce_resumes_by_itself() -> Result<()> {
    let infrastructure = Infrastructure::start()?;
    let agents = [Agent::start(&infrastructure, "etcd-restart", FAST)?, Agent::start(&infrastructure, "etcd-restart", FAST)?];
    wait_for_brokers(&agents[0].bootstrap, 2)?;
    kafka::create_topic(&agents[0].bootstrap, "steady", 6).await?;
    let bootstrap = format!("{},{}", agents[0].bootstrap, agents[1].bootstrap);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let log = kafka::AckLog::default();
    let producer = {
        let log = log.clone();
        tokio::spawn(async move { kafka::produce_reporting_into(&bootstrap, "steady", 1_000, &[], stopped, log).await })
    };
    tokio::time::sleep(Duration::from_secs(6)).await;
    infrastructure.stop_etcd()?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    infrastructure.start_etcd()?;
    let restarted = Instant::now();
    // Until 1,000 records more than the ones queued during the outage are acknowledged.
    let waited_since = restarted + Duration::from_secs(2);
    let deadline = restarted + Duration::from_secs(60);
    while kafka::acknowledged_after(&log, waited_since) <= 1_000 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.send(true)?;
    let report = producer.await??;
    let (sent, acknowledged) = (report.sent, report.acknowledged);
    verify_acknowledged(&agents[1].bootstrap, "steady", 6, &acknowledged)?;
    let after_restart = acknowledged.iter().filter(|ack| ack.at > restarted + Duration::from_secs(2)).count();
    println!("etcd restart: {sent} sent, {} acknowledged, {after_restart} after etcd came back", acknowledged.len());
    ensure!(after_restart > 1_000, "produce did not resume after etcd restarted ({after_restart} acknowledgements)");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_store_outage_gives_retriable_errors_and_production_resumes() -> Result<()> {
    let infrastructure = Infrastructure::start()?;
    let agent = Agent::start(&infrastructure, "outage", FAST)?;
    kafka::create_topic(&agent.bootstrap, "outage", 3).await?;
    let bootstrap = agent.bootstrap.clone();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let log = kafka::AckLog::default();
    // Retries cover the outage: librdkafka only retries errors it considers retriable.
    let producer = {
        let log = log.clone();
        tokio::spawn(async move {
            kafka::produce_reporting_into(&bootstrap, "outage", 500, &[("message.timeout.ms", "60000")], stopped, log).await
        })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    ensure!(bucket_problems(&infrastructure, "outage")? == [None], "a healthy agent reports no bucket problem");
    infrastructure.stop_s3()?;
    let down = Instant::now();
    // The agent publishes why its flushes fail in its registry record (the operator shows it on
    // the VirtualCluster as AgentsHealthy): seen within the outage.
    let mut reported = None;
    while down.elapsed() < Duration::from_secs(20) {
        if reported.is_none() {
            reported = bucket_problems(&infrastructure, "outage")?.into_iter().flatten().next();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let reported = reported.ok_or_else(|| anyhow::anyhow!("the agent never reported the bucket outage in its registry record"))?;
    ensure!(
        reported.starts_with("put failed: ") && reported.to_lowercase().contains("refused"),
        "the reported cause should say the PUT was refused: {reported:?}"
    );
    // Acknowledgements may arrive as soon as the server accepts again, before start_s3 returns.
    let up = Instant::now();
    infrastructure.start_s3()?;
    // Until production has resumed for a while: the records queued during the outage (500 a
    // second) and 5 s worth more are acknowledged after it.
    let resumed = (up - down).as_secs() as usize * 500 + 2_500;
    let deadline = up + Duration::from_secs(60);
    while kafka::acknowledged_after(&log, up) < resumed && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.send(true)?;
    let report = producer.await??;
    let (sent, acknowledged) = (report.sent, report.acknowledged);
    // A successful flush clears the report (one load-report period, about 3 s).
    let cleared_by = Instant::now() + Duration::from_secs(15);
    while bucket_problems(&infrastructure, "outage")? != [None] {
        ensure!(Instant::now() < cleared_by, "the bucket problem stayed reported after the store came back");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("object store outage: the agent reported {reported:?}");
    verify_acknowledged(&agent.bootstrap, "outage", 3, &acknowledged)?;
    let during = acknowledged.iter().filter(|ack| ack.at > down + Duration::from_secs(5) && ack.at < up).count();
    let after = acknowledged.iter().filter(|ack| ack.at > up).count();
    let during_times: Vec<Duration> =
        acknowledged.iter().filter(|ack| ack.at > down + Duration::from_secs(5) && ack.at < up).map(|ack| ack.at - down).collect();
    println!(
        "object store outage: {sent} sent, {} acknowledged, {during} during the outage (first {:?}, last {:?} after it began), {after} after",
        acknowledged.len(),
        during_times.iter().min(),
        during_times.iter().max()
    );
    ensure!(during == 0, "{during} records were acknowledged while the object store was down");
    ensure!(after > 0, "production did not resume after the object store came back");
    ensure!(
        acknowledged.len() as u64 == sent,
        "{} of {sent} records were acknowledged: retriable errors should have been retried",
        acknowledged.len()
    );
    Ok(())
}

/// Each live agent's `bucket_problem`, as its registry record in etcd holds it.
fn bucket_problems(infrastructure: &Infrastructure, virtual_cluster: &str) -> Result<Vec<Option<String>>> {
    let prefix = floe_agent::metadata::keys::KeyLayout::new("/floe", virtual_cluster).agents_prefix();
    let values = infrastructure.etcdctl(&["get", "--prefix", &prefix, "--print-value-only"])?;
    values
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| Ok(floe_agent::cluster::registry::AgentRecord::decode(line.as_bytes())?.bucket_problem))
        .collect()
}

fn latest_offsets(bootstrap: &str, topic: &str, partitions: i32) -> Result<Vec<i64>> {
    let consumer: BaseConsumer = kafka::config(bootstrap).create()?;
    (0..partitions).map(|partition| Ok(consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?.1)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cut_off_past_a_snapshot_and_etcd_compaction_reloads_the_snapshot_and_catches_up() -> Result<()> {
    let infrastructure = Infrastructure::start()?;
    let leader = Agent::start(&infrastructure, "paused", &["--registry-ttl", "3s", "--snapshot-interval", "2s"])?;
    let follower = Agent::start(&infrastructure, "paused", &["--registry-ttl", "3s", "--roles", "produce,fetch"])?;
    kafka::create_topic(&leader.bootstrap, "paused", 3).await?;
    let snapshot_loads = |agent: &Agent| -> Result<f64> {
        let (_, metrics) = http_get(&agent.http, "/metrics")?;
        Ok(metric_value(&metrics, "floe_snapshot_loads_total").unwrap_or_default())
    };
    let leader_bootstrap = leader.bootstrap.clone();
    // Any agent accepts any partition: everything goes to the leader over one raw connection.
    let produce = move |range: std::ops::Range<u64>| -> Result<()> {
        let mut connection = RawConnection::connect(&leader_bootstrap)?;
        for index in range {
            produce_batch(
                &mut connection,
                "paused",
                (index % 3) as i32,
                &[(floe_e2e::records::key(index), floe_e2e::records::value(index))],
            )?;
        }
        Ok(())
    };
    let (first, second) = (produce.clone(), produce.clone());
    tokio::task::spawn_blocking(move || first(0..30)).await??;
    let loads_before = snapshot_loads(&follower)?;
    // Freeze the follower and break its etcd connections: when it wakes up, its watch is gone and
    // the journal it missed has been trimmed and compacted away.
    follower.pause()?;
    // The follower has applied nothing past etcd's revision now.
    let paused_at = infrastructure.etcd_revision()?;
    infrastructure.stop_etcd()?;
    infrastructure.start_etcd()?;
    let snapshot_before = metric(&leader, "floe_snapshot_revision")?;
    // While the follower sleeps, the leader keeps writing, snapshots, trims and compacts etcd.
    let paused = Instant::now();
    let mut next = 30u64;
    while paused.elapsed() < Duration::from_secs(6) {
        let batch = second.clone();
        tokio::task::spawn_blocking(move || batch(next..next + 10)).await??;
        next += 10;
    }
    // Wait until a snapshot covers everything, the journal keys are gone from etcd and etcd's
    // history is compacted past what the follower saw. The trim deletes the keys first and
    // compacts after: a follower resumed in between replays the deletions' history from its watch
    // and never needs the snapshot.
    let deadline = Instant::now() + Duration::from_secs(60);
    while infrastructure.etcd_key_count("/floe/vc/paused/log/")? > 0 || !infrastructure.etcd_compacted_past(paused_at + 1)? {
        ensure!(Instant::now() < deadline, "the journal was never trimmed and compacted while the follower was paused");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    ensure!(metric(&leader, "floe_snapshot_revision")? > snapshot_before, "no snapshot was taken while the follower was paused");
    follower.resume()?;
    let expected = latest_offsets(&leader.bootstrap, "paused", 3)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(seen) = latest_offsets(&follower.bootstrap, "paused", 3) {
            if seen == expected {
                break;
            }
        }
        ensure!(Instant::now() < deadline, "the resumed agent never caught up to {expected:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ensure!(snapshot_loads(&follower)? > loads_before, "the resumed agent caught up without reloading a snapshot");
    let stored = kafka::read_all(&follower.bootstrap, "paused", 3, Duration::from_secs(60))?;
    let total: usize = stored.values().map(Vec::len).sum();
    ensure!(total as u64 == next, "the resumed agent served {total} of {next} records");
    for record in stored.values().flatten() {
        let index = floe_e2e::records::index_of(&record.key).ok_or_else(|| anyhow::anyhow!("bad key"))?;
        ensure!(record.value == floe_e2e::records::value(index), "record {index} differs on the resumed agent");
    }
    println!("cut-off agent reloaded the snapshot after etcd compaction and served all {total} records");
    Ok(())
}

fn metric(agent: &Agent, sample: &str) -> Result<f64> {
    let (_, metrics) = http_get(&agent.http, "/metrics")?;
    Ok(metric_value(&metrics, sample).unwrap_or_default())
}

/// Sends one batch (acks=all) over its own connection and returns (error code, base offset).
fn send_batch(bootstrap: &str, topic: &str, batch: bytes::Bytes) -> Result<(i16, i64)> {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
    let mut connection = RawConnection::connect(bootstrap)?;
    let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(30_000).with_topic_data(vec![TopicProduceData::default()
        .with_name(TopicName(kafka_protocol::protocol::StrBytes::from_string(topic.to_string())))
        .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(batch))])]);
    let correlation = connection.send(ApiKey::Produce, 9, &request)?;
    let response: ProduceResponse = connection.receive(ApiKey::Produce, 9, correlation)?;
    let answer = &response.responses[0].partition_responses[0];
    Ok((answer.error_code, answer.base_offset))
}

/// Issue 4: "producer state survives agent restarts and is honoured by every agent". A batch
/// retried at another agent, after its first copy committed or while it is still in flight, is
/// answered with the first copy's offset and stored once; a gap is refused everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_agent_answers_a_retried_idempotent_batch_with_its_first_offset() -> Result<()> {
    const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    let infrastructure = Infrastructure::start()?;
    let mut agents = [Agent::start(&infrastructure, "idempotent", FAST)?, Agent::start(&infrastructure, "idempotent", FAST)?];
    kafka::create_topic(&agents[0].bootstrap, "once", 1).await?;
    let records = |first: usize, count: usize| -> Vec<(Vec<u8>, Vec<u8>)> {
        (first..first + count).map(|index| (format!("k{index}").into_bytes(), format!("v{index}").into_bytes())).collect()
    };
    let stamp = |base_sequence| Some(ProducerStamp { producer_id: 4242, epoch: 0, base_sequence });
    let batch = |first: usize, count: usize| encode_stamped_batch(&records(first, count), 1_700_000_000_000, stamp(first as i32));
    let (a, b) = (agents[0].bootstrap.clone(), agents[1].bootstrap.clone());

    // Committed at A, retried at B: B answers A's offset (from the journal, without writing).
    ensure!(send_batch(&a, "once", batch(0, 10)?)? == (0, 0), "first copy at A");
    ensure!(send_batch(&b, "once", batch(0, 10)?)? == (0, 0), "the retry at B was not answered with offset 0");

    // Both copies sent at once, one per agent. This test cannot force them to overlap: whichever
    // path stops the second copy (the handler's check of committed batches, or apply-time dedup
    // when both are in flight, which `meta/src/state.rs` unit-tests), both clients hear offset 10
    // and the log holds the batch once (read back below).
    let (first, second) = (batch(10, 5)?, batch(10, 5)?);
    let (a_copy, b_copy) = (a.clone(), b.clone());
    let racing_a = std::thread::spawn(move || send_batch(&a_copy, "once", first));
    let racing_b = std::thread::spawn(move || send_batch(&b_copy, "once", second));
    let answers = [racing_a.join().expect("thread")?, racing_b.join().expect("thread")?];
    ensure!(answers == [(0, 10), (0, 10)], "racing copies answered {answers:?}, expected offset 10 twice");

    // After a restart of A, its state comes back from the journal.
    agents[0].restart()?;
    let a = agents[0].bootstrap.clone();
    ensure!(send_batch(&a, "once", batch(10, 5)?)? == (0, 10), "after a restart, A forgot the batch");
    // A gap (sequence 20 where 15 is next) is refused on every agent; the next one is accepted.
    for agent in [&a, &b] {
        let (code, _) = send_batch(agent, "once", batch(20, 1)?)?;
        ensure!(code == OUT_OF_ORDER_SEQUENCE_NUMBER, "a sequence gap at {agent} answered {code}");
    }
    ensure!(send_batch(&b, "once", batch(15, 5)?)? == (0, 15), "the next batch at B");

    let bootstrap = a.clone();
    let stored = tokio::task::spawn_blocking(move || kafka::read_all(&bootstrap, "once", 1, Duration::from_secs(30))).await??;
    let keys: Vec<String> = stored[&0].iter().map(|record| String::from_utf8_lossy(&record.key).into_owned()).collect();
    let expected: Vec<String> = (0..20).map(|index| format!("k{index}")).collect();
    ensure!(keys == expected, "the log holds {keys:?}");
    Ok(())
}

/// Finding 5 of issue 14: an agent started for one VirtualCluster (`--virtual-cluster-uid`, set by
/// the operator) never writes into a journal whose registration names another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_refuses_to_start_against_a_registration_owned_by_another_virtual_cluster() -> Result<()> {
    let infrastructure = Infrastructure::start()?;
    // No registration yet (the operator has not written it): the agent starts.
    drop(Agent::start(&infrastructure, "unregistered", &["--virtual-cluster-uid", "uid-of-mine"])?);

    let key = "/floe/vc/owned/registration";
    infrastructure.etcdctl(&["put", key, r#"{"id":"uid-of-theirs","owner":"team-a/owned","config":{}}"#])?;
    // Registered to the same VirtualCluster: the agent starts.
    drop(Agent::start(&infrastructure, "owned", &["--virtual-cluster-uid", "uid-of-theirs"])?);
    let records = infrastructure.etcd_key_count("/floe/vc/owned/log/")?;
    ensure!(records > 0, "the agent that started wrote no journal record");

    // Registered to another VirtualCluster: the agent exits with an error that says what to do.
    let (status, stderr) =
        Agent::start_expecting_exit(&infrastructure, "owned", &["--virtual-cluster-uid", "uid-of-mine"], Duration::from_secs(30))?;
    ensure!(!status.success(), "the agent exited successfully: {stderr}");
    for part in [key, "team-a/owned", "uid-of-theirs", "uid-of-mine", "--virtual-cluster-uid"] {
        ensure!(stderr.contains(part), "{part} missing from the agent's error: {stderr}");
    }
    ensure!(infrastructure.etcd_key_count("/floe/vc/owned/log/")? == records, "the refused agent wrote into the journal");
    Ok(())
}

/// Finding 5 of issue 14, second half: one VirtualCluster's etcd prefix may sit under another's
/// `log/` (two operators, or a hand-run agent, cannot always be refused). The outer cluster's
/// agents must neither decode the inner cluster's journal nor trim it with their own, and both
/// clusters serve every record after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_cluster_nested_under_anothers_journal_leaves_both_journals_intact() -> Result<()> {
    let infrastructure = Infrastructure::start()?;
    let mut outer = Agent::start(&infrastructure, "outer", &["--registry-ttl", "3s", "--snapshot-interval", "1s"])?;
    let nested = AgentOptions { metadata_url: Some(format!("{}/vc/outer/log", infrastructure.metadata_url())), ..AgentOptions::default() };
    // The inner cluster never trims its own journal during the test, so any loss is the outer's doing.
    let mut inner = Agent::start_with(&infrastructure, "inner", &["--registry-ttl", "3s", "--snapshot-interval", "1h"], nested)?;
    kafka::create_topic(&outer.bootstrap, "outer-topic", 1).await?;
    kafka::create_topic(&inner.bootstrap, "inner-topic", 1).await?;
    const RECORDS: u64 = 20;
    let (outer_bootstrap, inner_bootstrap) = (outer.bootstrap.clone(), inner.bootstrap.clone());
    tokio::task::spawn_blocking(move || -> Result<()> {
        let mut outer = RawConnection::connect(&outer_bootstrap)?;
        let mut inner = RawConnection::connect(&inner_bootstrap)?;
        // Alternately, so both journals interleave in etcd.
        for index in 0..RECORDS {
            let record = [(floe_e2e::records::key(index), floe_e2e::records::value(index))];
            produce_batch(&mut outer, "outer-topic", 0, &record)?;
            produce_batch(&mut inner, "inner-topic", 0, &record)?;
        }
        Ok(())
    })
    .await??;
    let inner_journal = "/floe/vc/outer/log/vc/inner/log/";
    let inner_records = infrastructure.etcd_key_count(inner_journal)?;
    ensure!(inner_records > 0, "the inner cluster wrote no journal record under {inner_journal}");
    // The outer cluster snapshots and trims its own journal down to nothing.
    let outer_own = || -> Result<usize> {
        Ok(infrastructure.etcd_key_count("/floe/vc/outer/log/")? - infrastructure.etcd_key_count("/floe/vc/outer/log/vc/")?)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while outer_own()? > 0 {
        ensure!(Instant::now() < deadline, "the outer cluster never trimmed its journal ({} records left)", outer_own()?);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let left = infrastructure.etcd_key_count(inner_journal)?;
    ensure!(
        left >= inner_records,
        "the outer cluster's trim deleted {} of the inner cluster's {inner_records} journal records",
        inner_records - left
    );
    // Both replay from scratch and serve every record.
    outer.restart()?;
    inner.restart()?;
    for (agent, topic) in [(&outer, "outer-topic"), (&inner, "inner-topic")] {
        // The killed process stays in Metadata until its registry lease lapses.
        wait_for_brokers(&agent.bootstrap, 1)?;
        let bootstrap = agent.bootstrap.clone();
        let topic_name = topic.to_string();
        let stored = tokio::task::spawn_blocking(move || kafka::read_all(&bootstrap, &topic_name, 1, Duration::from_secs(30))).await??;
        let values: Vec<Vec<u8>> =
            stored.get(&0).map(|records| records.iter().map(|record| record.value.clone()).collect()).unwrap_or_default();
        let expected: Vec<Vec<u8>> = (0..RECORDS).map(floe_e2e::records::value).collect();
        ensure!(values == expected, "after a restart {topic} holds {} of its {RECORDS} records, or other values", values.len());
    }
    Ok(())
}

/// The in-chart etcd's TLS (issue 18): the chart rendered with `etcd.enabled=true` (TLS on by
/// default); a real etcd run with the TLS settings and the certificates of that rendering (only the
/// member's addresses are changed to loopback); an agent given the chart's client Secret as
/// `--etcd-ca-file`/`--etcd-cert-file`/`--etcd-key-file` serves a virtual cluster from it, while a
/// client without a certificate, or speaking plain HTTP, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_etcd_accepts_only_clients_with_its_client_certificate_and_an_agent_runs_on_it() -> Result<()> {
    use base64::Engine as _;
    let k8s = std::fs::read_dir(floe_e2e::cache_directory().join("k8s"))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
        .find(|bin| bin.join("helm").exists() && bin.join("etcd").exists())
        .context("no helm and etcd under the cache's k8s/*/bin: run make deps-k8s")?;
    let chart = floe_e2e::repository_root().join("charts/floe");
    let output = std::process::Command::new(k8s.join("helm"))
        .args(["template", "floe", &chart.to_string_lossy(), "-n", "floe-system", "--kube-version", "1.36.0", "--set", "etcd.enabled=true"])
        .output()?;
    ensure!(output.status.success(), "helm template failed: {}", String::from_utf8_lossy(&output.stderr));
    let documents: Vec<serde_yaml::Value> =
        serde_yaml::Deserializer::from_slice(&output.stdout).map(serde_yaml::Value::deserialize).collect::<std::result::Result<_, _>>()?;
    let named = |kind: &str, name: &str| {
        documents.iter().find(|document| document["kind"].as_str() == Some(kind) && document["metadata"]["name"].as_str() == Some(name))
    };
    let directory = tempfile::Builder::new().prefix("floe-e2e-chart-etcd-").tempdir()?;
    let write_secret = |name: &str| -> Result<std::path::PathBuf> {
        let secret = named("Secret", name).with_context(|| format!("the chart renders no Secret {name}"))?;
        let path = directory.path().join(name);
        std::fs::create_dir_all(&path)?;
        for key in ["ca.crt", "tls.crt", "tls.key"] {
            let encoded = secret["data"][key].as_str().with_context(|| format!("{name} has no {key}"))?;
            std::fs::write(path.join(key), base64::engine::general_purpose::STANDARD.decode(encoded)?)?;
        }
        Ok(path)
    };
    let server = write_secret("floe-etcd-server-tls")?;
    let client = write_secret("floe-etcd-client-tls")?;
    let statefulset = named("StatefulSet", "floe-etcd").context("the chart renders no etcd StatefulSet")?;
    let mounted = "/etc/etcd/tls";
    let mut environment: Vec<(String, String)> = Vec::new();
    for variable in statefulset["spec"]["template"]["spec"]["containers"][0]["env"].as_sequence().context("etcd has no env")? {
        let (Some(name), Some(value)) = (variable["name"].as_str(), variable["value"].as_str()) else { continue };
        // The chart's TLS settings, with the Secret's mount point replaced by where it was written.
        if name.contains("CERT") || name.contains("KEY_FILE") || name.contains("CA_FILE") {
            environment.push((name.to_string(), value.replace(mounted, &server.to_string_lossy())));
        }
    }
    ensure!(
        environment.iter().any(|(name, value)| name == "ETCD_CLIENT_CERT_AUTH" && value == "true"),
        "the chart's etcd does not require client certificates: {environment:?}"
    );
    let listen = statefulset["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence()
        .and_then(|env| env.iter().find(|variable| variable["name"].as_str() == Some("ETCD_LISTEN_CLIENT_URLS")))
        .and_then(|variable| variable["value"].as_str())
        .unwrap_or_default()
        .to_string();
    ensure!(listen.starts_with("https://"), "the chart's etcd listens on {listen}, not https");
    let (client_port, peer_port) = (floe_e2e::external_metrics::free_port()?, floe_e2e::external_metrics::free_port()?);
    let endpoint = format!("https://127.0.0.1:{client_port}");
    let peer = format!("https://127.0.0.1:{peer_port}");
    let log = std::fs::File::create(directory.path().join("etcd.log"))?;
    let mut etcd = std::process::Command::new(k8s.join("etcd"))
        .envs(environment)
        .args(["--name", "floe-etcd-0", "--data-dir", &directory.path().join("data").to_string_lossy()])
        .args(["--listen-client-urls", &endpoint, "--advertise-client-urls", &endpoint])
        .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("floe-etcd-0={peer}")])
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    struct Stop<'a>(&'a mut std::process::Child);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let etcd = Stop(&mut etcd);
    let etcdctl = |certificate: bool, endpoint: &str| {
        let mut command = std::process::Command::new("etcdctl");
        command.env("ETCDCTL_API", "3").args(["--endpoints", endpoint, "--dial-timeout", "2s", "--command-timeout", "3s"]);
        command.args(["--cacert", &client.join("ca.crt").to_string_lossy()]);
        if certificate {
            command.args(["--cert", &client.join("tls.crt").to_string_lossy(), "--key", &client.join("tls.key").to_string_lossy()]);
        }
        command.args(["put", "/probe", "x"]).output().map(|output| output.status.success())
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !etcdctl(true, &endpoint)? {
        ensure!(etcd.0.try_wait()?.is_none(), "etcd exited: {}", std::fs::read_to_string(directory.path().join("etcd.log"))?);
        ensure!(Instant::now() < deadline, "etcd with the chart's TLS settings did not accept the chart's client certificate in 30 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    ensure!(!etcdctl(false, &endpoint)?, "etcd accepted a client without a certificate");
    ensure!(!etcdctl(true, &format!("http://127.0.0.1:{client_port}"))?, "etcd accepted plain HTTP");

    let infrastructure = Infrastructure::start()?;
    let file = |name: &str| client.join(name).to_string_lossy().into_owned();
    let flags = [
        "--etcd-ca-file".to_string(),
        file("ca.crt"),
        "--etcd-cert-file".to_string(),
        file("tls.crt"),
        "--etcd-key-file".to_string(),
        file("tls.key"),
    ];
    let options = AgentOptions { metadata_url: Some(format!("etcd://127.0.0.1:{client_port}/floe")), ..Default::default() };
    let agent = Agent::start_with(&infrastructure, "tls", &flags.iter().map(String::as_str).collect::<Vec<_>>(), options)?;
    kafka::create_topic(&agent.bootstrap, "over-tls", 1).await?;
    let producer: rdkafka::producer::FutureProducer = kafka::config(&agent.bootstrap).set("acks", "all").create()?;
    for index in 0..20u64 {
        let (key, value) = (floe_e2e::records::key(index), floe_e2e::records::value(index));
        producer
            .send(rdkafka::producer::FutureRecord::to("over-tls").key(&key).payload(&value), Duration::from_secs(10))
            .await
            .map_err(|(error, _)| anyhow::anyhow!("produce failed: {error}"))?;
    }
    let read = kafka::read_all(&agent.bootstrap, "over-tls", 1, Duration::from_secs(30))?;
    ensure!(read.values().map(Vec::len).sum::<usize>() == 20, "read {read:?} back, not the 20 records");
    drop(agent);
    drop(etcd);
    Ok(())
}

/// Issue 20, done-when 5: a produce pool and a fetch pool serve one virtual cluster. Clients are
/// led by Metadata to the pool they bootstrapped at: produce requests reach only the produce
/// agents, fetches only the fetch agents (which read what the others wrote from the bucket); a
/// producer bootstrapped at the fetch pool gets Kafka's "incompatible broker" error, not silence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_produce_pool_and_a_fetch_pool_each_get_only_their_own_traffic() -> Result<()> {
    let infrastructure = Infrastructure::start()?;
    let produce_pool = [
        Agent::start(&infrastructure, "split", &["--registry-ttl", "3s", "--roles", "produce,jobs"])?,
        Agent::start(&infrastructure, "split", &["--registry-ttl", "3s", "--roles", "produce"])?,
    ];
    let fetch_pool = [
        Agent::start(&infrastructure, "split", &["--registry-ttl", "3s", "--roles", "fetch"])?,
        Agent::start(&infrastructure, "split", &["--registry-ttl", "3s", "--roles", "fetch"])?,
    ];
    for agent in produce_pool.iter().chain(&fetch_pool) {
        wait_for_brokers(&agent.bootstrap, 2)?;
    }
    let produce_ids = kafka::broker_ids(&produce_pool[0].bootstrap)?;
    let fetch_ids = kafka::broker_ids(&fetch_pool[0].bootstrap)?;
    ensure!(produce_ids.len() == 2 && fetch_ids.len() == 2, "pools advertise {produce_ids:?} and {fetch_ids:?}");
    ensure!(produce_ids.iter().all(|id| !fetch_ids.contains(id)), "the pools share agents: {produce_ids:?} and {fetch_ids:?}");

    kafka::create_topic(&produce_pool[0].bootstrap, "split", 12).await?;
    let count = 3_000u64;
    let producer: FutureProducer = kafka::config(&produce_pool[1].bootstrap).set("acks", "all").create()?;
    kafka::produce_indexed(&producer, "split", 0..count).await?;
    kafka::verify_indexed_across(kafka::config(&fetch_pool[1].bootstrap), "split", 12, count)
        .context("reading back through the fetch pool")?;

    let requests = |agent: &Agent, api: &str| metric(agent, &format!("floe_requests_total{{api=\"{api}\",outcome=\"ok\"}}"));
    for agent in &produce_pool {
        ensure!(requests(agent, "produce")? > 0.0, "produce agent {} took no produce request", agent.bootstrap);
        ensure!(requests(agent, "fetch")? == 0.0, "produce agent {} served a fetch", agent.bootstrap);
    }
    for agent in &fetch_pool {
        ensure!(requests(agent, "fetch")? > 0.0, "fetch agent {} served no fetch", agent.bootstrap);
        ensure!(requests(agent, "produce")? == 0.0, "fetch agent {} took a produce request", agent.bootstrap);
    }

    // Bootstrapped at the wrong pool: refused with a non-retriable error, nothing stored.
    let misrouted: FutureProducer =
        kafka::config(&fetch_pool[0].bootstrap).set("acks", "all").set("message.timeout.ms", "20000").create()?;
    let outcome = misrouted.send(FutureRecord::to("split").partition(0).key("k").payload("misrouted"), Duration::from_secs(30)).await;
    let error = match outcome {
        Ok(delivered) => anyhow::bail!("a fetch-only agent acknowledged a produce: {delivered:?}"),
        Err((error, _)) => error,
    };
    ensure!(
        error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::InvalidRequest),
        "a producer at the fetch pool got {error}, expected INVALID_REQUEST"
    );
    ensure!(kafka::total_records(&produce_pool[0].bootstrap, "split", 12)? == count as i64, "the refused record was stored");
    Ok(())
}

/// [`kafka::verify_indexed_across`] through the agent at `bootstrap`.
fn read_back_indexed(bootstrap: &str, topic: &str, partitions: i32, count: u64) -> Result<()> {
    kafka::verify_indexed_across(kafka::config(bootstrap), topic, partitions, count)
}

/// The disk tier (`--disk-cache-dir`): an agent serves reads of the segments it wrote from local
/// disk instead of bucket GETs (partitions are led by the same agent for produce and fetch); a
/// file deleted under it is read from the bucket; and a restarted agent starts with it empty, so
/// the read-back after restarting every agent comes from the bucket and would show any hole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_read_back_what_they_wrote_from_their_disk_cache_and_a_restart_reads_it_all_from_the_bucket() -> Result<()> {
    let infrastructure = Infrastructure::start()?;
    let directory = tempfile::Builder::new().prefix("floe-e2e-disk-cache-").tempdir()?;
    let mut agents = Vec::new();
    for name in ["a", "b"] {
        let cache_directory = directory.path().join(name).display().to_string();
        // A 1 MiB memory cache holds almost nothing of what is written: reads must come from disk.
        let flags = ["--registry-ttl", "3s", "--cache-bytes", "1MiB", "--disk-cache-dir", &cache_directory, "--disk-cache-bytes", "256MiB"];
        agents.push(Agent::start(&infrastructure, "disk", &flags)?);
    }
    for agent in &agents {
        wait_for_brokers(&agent.bootstrap, 2)?;
    }
    let (topic, partitions, count) = ("disk", 8, 60_000u64);
    kafka::create_topic(&agents[0].bootstrap, topic, partitions).await?;
    let producer: FutureProducer = kafka::config(&agents[0].bootstrap).set("acks", "all").create()?;
    kafka::produce_indexed(&producer, topic, 0..count).await?;
    drop(producer);

    let gets = |agents: &[Agent]| -> Result<f64> {
        agents.iter().map(|agent| metric(agent, "floe_object_store_operations_total{operation=\"get\",outcome=\"ok\"}")).sum()
    };
    let disk_reads = |agents: &[Agent], result: &str| -> Result<f64> {
        agents.iter().map(|agent| metric(agent, &format!("floe_disk_cache_reads_total{{result=\"{result}\"}}"))).sum()
    };
    let resident: f64 = agents.iter().map(|agent| metric(agent, "floe_disk_cache_resident_bytes")).sum::<Result<f64>>()?;
    ensure!(resident > 4.0 * 1024.0 * 1024.0, "the agents' disk caches hold {resident} bytes after writing about 10 MiB");

    let (gets_before, hits_before) = (gets(&agents)?, disk_reads(&agents, "hit")?);
    read_back_indexed(&agents[0].bootstrap, topic, partitions, count)?;
    let (read_gets, hits) = (gets(&agents)? - gets_before, disk_reads(&agents, "hit")? - hits_before);
    println!("read back through the disk caches: {hits} disk reads, {read_gets} bucket GETs");
    ensure!(hits > 0.0, "no read was served by a disk cache");
    ensure!(read_gets <= hits / 10.0, "{read_gets} bucket GETs against {hits} disk reads: the writers' disk caches were bypassed");

    // Files deleted under the agents (a disk wiped, an operator's mistake): read from the bucket.
    for name in ["a", "b"] {
        for file in std::fs::read_dir(directory.path().join(name).join("floe-segment-cache"))? {
            std::fs::remove_file(file?.path())?;
        }
    }
    let gets_before = gets(&agents)?;
    read_back_indexed(&agents[1].bootstrap, topic, partitions, count)?;
    ensure!(disk_reads(&agents, "failed")? > 0.0, "no disk read failed although every cached file was deleted");
    ensure!(gets(&agents)? > gets_before, "the records whose files were deleted were not read from the bucket");

    for agent in &mut agents {
        agent.kill_hard()?;
        agent.restart()?;
    }
    for agent in &agents {
        wait_for_brokers(&agent.bootstrap, 2)?;
        let resident = metric(agent, "floe_disk_cache_resident_bytes")?;
        ensure!(resident == 0.0, "a restarted agent's disk cache holds {resident} bytes: it must start empty");
    }
    let gets_before = gets(&agents)?;
    read_back_indexed(&agents[1].bootstrap, topic, partitions, count)?;
    let read_gets = gets(&agents)? - gets_before;
    ensure!(read_gets > 0.0, "after a restart of every agent the records were not read from the bucket");
    println!("after restarting every agent: all {count} records read back with {read_gets} bucket GETs");
    Ok(())
}
