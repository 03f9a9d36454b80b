//! The console's overview in a three-agent cluster (a real etcd, a real S3 server, `floe agent`
//! processes): a producer bootstrapped normally writes to partition leaders on every agent, and
//! `/` on any agent shows the cluster's produce rate (each agent's own in its row, their sum in the
//! cards, and that sum agrees with the agents' `floe_bytes_in_total` counters); with one agent
//! frozen (SIGSTOP: still in the registry, answering nothing) the page still loads within two
//! seconds and names the silent agent.
//!
//! Plain HTTP: the page is server-rendered, no browser is needed (e2e/tests/console.rs checks it
//! in Chromium).

use anyhow::{ensure, Context, Result};
use floe_e2e::cluster::{Agent, Infrastructure};
use floe_e2e::{http_get, kafka, metric_value, wait_until};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const VIRTUAL_CLUSTER: &str = "console-cluster";
const TOPIC: &str = "console-rates";
const PARTITIONS: i32 = 12;
/// A registry lease far longer than the frozen phase: the paused agent stays listed as live.
const AGENT_FLAGS: &[&str] = &["--registry-ttl", "60s"];
const RECORD_BYTES: usize = 1024;

/// The value of the overview card labelled `label`.
fn card(page: &str, label: &str) -> Result<String> {
    let before = page.split(&format!("<div class=\"label\">{label}</div>")).next().context("the page")?;
    ensure!(before.len() < page.len(), "no {label:?} card on the overview");
    let value = before.rsplit("<div class=\"value\">").next().and_then(|rest| rest.split('<').next());
    value.map(str::to_string).context("a card without a value")
}

/// The rows of the overview's agents table (the one whose rows have eight cells), cell by cell as
/// text: node, address, zone, roles, state, produce, fetch, PUTs.
fn agent_rows(page: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for body in page.split("<tbody>").skip(1) {
        for row in body.split("</tbody>").next().unwrap_or_default().split("<tr>").skip(1) {
            let cells: Vec<String> = row
                .split("<td")
                .skip(1)
                .map(|cell| {
                    let inner = cell.split_once('>').map_or("", |(_, rest)| rest).split("</td>").next().unwrap_or_default();
                    let mut text = String::new();
                    let mut in_tag = false;
                    for character in inner.chars() {
                        match character {
                            '<' => in_tag = true,
                            '>' => in_tag = false,
                            other if !in_tag => text.push(other),
                            _ => {}
                        }
                    }
                    text.trim().to_string()
                })
                .collect();
            if cells.len() == 8 {
                rows.push(cells);
            }
        }
    }
    rows
}

/// Bytes per second from the console's `512 B/s`, `1.5 KiB/s`, `3.0 MiB/s`.
fn bytes_per_second(text: &str) -> Result<f64> {
    let (number, unit) = text.trim().trim_end_matches("/s").split_once(' ').with_context(|| format!("{text:?} is not a rate"))?;
    let scale = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        other => anyhow::bail!("unknown unit {other:?} in {text:?}"),
    };
    Ok(number.parse::<f64>().with_context(|| format!("{text:?} is not a rate"))? * scale)
}

/// The cluster's produce rate by the agents' own counters: bytes accepted by all of them over a
/// window of `window`.
fn counted_produce_rate(agents: &[Agent], window: Duration) -> Result<f64> {
    let total = || -> Result<f64> {
        let mut sum = 0.0;
        for agent in agents {
            let (_, metrics) = http_get(&agent.http, "/metrics")?;
            sum += metric_value(&metrics, "floe_bytes_in_total ").context("no floe_bytes_in_total")?;
        }
        Ok(sum)
    };
    let (before, started) = (total()?, Instant::now());
    std::thread::sleep(window);
    Ok((total()? - before) / started.elapsed().as_secs_f64())
}

/// Writes a 1 KiB record to each of `partitions` every 10 ms until `stop` is set.
fn produce_until(bootstrap: &str, partitions: Vec<i32>, stop: Arc<AtomicBool>) -> Result<std::thread::JoinHandle<Result<()>>> {
    let producer: BaseProducer = kafka::config(bootstrap).set("linger.ms", "5").create()?;
    Ok(std::thread::spawn(move || {
        let value = vec![b'x'; RECORD_BYTES];
        while !stop.load(Ordering::Acquire) {
            for partition in &partitions {
                // A full local queue only delays this record: the rate is what is measured, not each record.
                let _ = producer.send(BaseRecord::<(), _>::to(TOPIC).partition(*partition).payload(&value));
            }
            producer.poll(Duration::ZERO);
            std::thread::sleep(Duration::from_millis(10));
        }
        producer.flush(Duration::from_secs(10))?;
        Ok(())
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_of_any_agent_shows_the_clusters_rates_and_names_an_agent_that_does_not_answer() -> Result<()> {
    let infrastructure = Infrastructure::start()?;
    let mut agents = Vec::new();
    for _ in 0..3 {
        agents.push(Agent::start(&infrastructure, VIRTUAL_CLUSTER, AGENT_FLAGS)?);
    }
    wait_until("every agent lists all three in its overview", Duration::from_secs(30), || {
        let mut all = true;
        for agent in &agents {
            all &= agent_rows(&http_get(&agent.http, "/")?.1).len() == 3;
        }
        Ok(all)
    })?;
    kafka::create_topic(&agents[0].bootstrap, TOPIC, PARTITIONS).await?;

    // One partition led by each agent, as the Metadata a normally bootstrapped client gets says.
    let metadata_client: BaseProducer = kafka::config(&agents[0].bootstrap).create()?;
    let metadata = metadata_client.client().fetch_metadata(Some(TOPIC), Duration::from_secs(10))?;
    let mut led: BTreeMap<i32, i32> = BTreeMap::new();
    for partition in metadata.topics().iter().flat_map(|topic| topic.partitions()) {
        led.entry(partition.leader()).or_insert(partition.id());
    }
    for agent in &agents {
        ensure!(led.contains_key(&agent.node_id), "node {} leads none of {TOPIC}'s partitions: {led:?}", agent.node_id);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let producer = produce_until(&agents[0].bootstrap, led.values().copied().collect(), Arc::clone(&stop))?;

    // Every agent's overview: each agent's own rate in its row, the cards their sum, at least
    // twice what the agent serving the page takes alone (each agent takes about a third).
    for agent in &agents {
        let mut last = String::new();
        wait_until(&format!("the overview of node {} to show the cluster's produce rate", agent.node_id), Duration::from_secs(60), || {
            let (status, page) = http_get(&agent.http, "/")?;
            ensure!(status == 200, "/ answered {status}");
            let rows = agent_rows(&page);
            let rates = rows.iter().map(|row| bytes_per_second(&row[5])).collect::<Result<Vec<f64>>>()?;
            let own = rows.iter().zip(&rates).find(|(row, _)| row[1].ends_with("(this agent)")).map(|(_, rate)| *rate);
            let total = bytes_per_second(&card(&page, "produce")?)?;
            let sum: f64 = rates.iter().sum();
            last = format!("rows {rows:?}, produce card {total}");
            // The cards and rows are rounded to a tenth of their unit.
            Ok(rates.len() == 3
                && rates.iter().all(|rate| *rate > 0.0)
                && (total - sum).abs() <= 0.05 * sum
                && own.is_some_and(|own| total >= 2.0 * own))
        })
        .with_context(|| format!("last overview: {last}"))?;
        eprintln!("node {}: {last}", agent.node_id);
    }
    // The page's sum agrees with what the agents counted (rates over a few seconds: loosely).
    let counted = counted_produce_rate(&agents, Duration::from_secs(9))?;
    let (_, page) = http_get(&agents[1].http, "/")?;
    let shown = bytes_per_second(&card(&page, "produce")?)?;
    eprintln!("the overview shows {shown:.0} B/s produced, the agents counted {counted:.0} B/s");
    ensure!(
        (counted / 2.0..=counted * 2.0).contains(&shown),
        "the overview shows {shown} B/s produced, the agents counted {counted} B/s over 9 s"
    );
    stop.store(true, Ordering::Release);
    producer.join().map_err(|_| anyhow::anyhow!("the producer thread panicked"))??;

    // Frozen: still in the registry (its lease outlives this phase), answering nothing.
    let frozen = &agents[2];
    frozen.pause()?;
    for agent in &agents[..2] {
        let started = Instant::now();
        let (status, page) = http_get(&agent.http, "/")?;
        let took = started.elapsed();
        eprintln!("with node {} frozen, / on node {} took {took:?}", frozen.node_id, agent.node_id);
        ensure!(status == 200 && took < Duration::from_secs(2), "/ on node {} answered {status} after {took:?}", agent.node_id);
        let rows = agent_rows(&page);
        let silent = rows.iter().find(|row| row[0] == frozen.node_id.to_string()).context("the frozen agent is not listed")?;
        ensure!(silent[5] == "no answer", "the frozen agent's row: {silent:?}");
        ensure!(
            page.contains("that did not answer: node ") && page.contains(&format!("node {} (", frozen.node_id)),
            "the overview of node {} does not name the silent node {}: {page}",
            agent.node_id,
            frozen.node_id
        );
        ensure!(page.contains("of the 2 agents that answered"), "{page}");
    }
    frozen.resume()?;
    Ok(())
}

#[test]
fn rates_read_back_from_the_consoles_units() -> Result<()> {
    assert_eq!(bytes_per_second("512 B/s")?, 512.0);
    assert_eq!(bytes_per_second("1.5 KiB/s")?, 1536.0);
    assert_eq!(bytes_per_second("2.0 MiB/s")?, 2.0 * 1024.0 * 1024.0);
    assert!(bytes_per_second("no answer").is_err());
    Ok(())
}
