//! Done-when 5 of the cluster issue: steady produce across 1,000 partitions with snapshots on,
//! ten minutes under `make soak` and three under `make test` (FLOE_SOAK_SECONDS sets the length).
//! etcd's journal key count and database size stay bounded, and each flushed segment costs
//! exactly one etcd write transaction.

use anyhow::{ensure, Result};
use floe_e2e::cluster::{Agent, Infrastructure};
use floe_e2e::kafka::{self, produce_until};
use floe_e2e::{http_get, metric_value};
use std::time::{Duration, Instant};

fn metric(agent: &Agent, sample: &str) -> Result<f64> {
    let (_, metrics) = http_get(&agent.http, "/metrics")?;
    Ok(metric_value(&metrics, sample).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_minutes_across_a_thousand_partitions_keep_etcd_bounded_at_one_write_per_segment() -> Result<()> {
    let seconds: u64 = std::env::var("FLOE_SOAK_SECONDS").ok().and_then(|value| value.parse().ok()).unwrap_or(600);
    let infrastructure = Infrastructure::start()?;
    let flags = ["--registry-ttl", "3s", "--snapshot-interval", "30s"];
    let agents = [Agent::start(&infrastructure, "soak", &flags)?, Agent::start(&infrastructure, "soak", &flags)?];
    kafka::create_topic(&agents[0].bootstrap, "wide", 1_000).await?;
    let bootstrap = format!("{},{}", agents[0].bootstrap, agents[1].bootstrap);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let producer = tokio::spawn(async move { produce_until(&bootstrap, "wide", 1_000, &[], stopped).await });
    let started = Instant::now();
    let mut samples: Vec<(u64, usize, u64)> = Vec::new();
    let period = Duration::from_secs((seconds / 10).max(5));
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(period.min(Duration::from_secs(seconds).saturating_sub(started.elapsed()))).await;
        let keys = infrastructure.etcd_key_count("/floe/vc/soak/log/")?;
        let size = infrastructure.etcd_db_size()?;
        println!("soak t={:>4}s journal keys {keys:>5} etcd db {:>8.1} KiB", started.elapsed().as_secs(), size as f64 / 1024.0);
        samples.push((started.elapsed().as_secs(), keys, size));
    }
    stop.send(true)?;
    let (sent, acknowledged) = producer.await??;
    let mut flushes = 0.0;
    let mut segment_transactions = 0.0;
    for agent in &agents {
        flushes += metric(agent, "floe_flushes_total")?;
        segment_transactions += metric(agent, "floe_etcd_transactions_total{purpose=\"commit_segment\"}")?;
    }
    let writes_per_segment = segment_transactions / flushes.max(1.0);
    println!(
        "soak: {sent} sent, {} acknowledged over {seconds}s; {flushes} segments flushed with {segment_transactions} etcd transactions ({writes_per_segment:.3} per segment)",
        acknowledged.len()
    );
    ensure!(acknowledged.len() as u64 * 10 >= sent * 9, "only {} of {sent} records were acknowledged", acknowledged.len());
    ensure!(
        flushes > 0.0 && (writes_per_segment - 1.0).abs() < 1e-9,
        "{writes_per_segment} etcd transactions per flushed segment, expected exactly 1"
    );
    // Snapshots every 30 s trim the journal: two agents flush at most 8 segments a second.
    let most_keys = samples.iter().map(|(_, keys, _)| *keys).max().unwrap_or_default();
    ensure!(most_keys <= 1_000, "the journal grew to {most_keys} keys in etcd; snapshots are not trimming it");
    // The database stops growing once compaction frees pages for reuse.
    let half = samples.len() / 2;
    let first_half_peak = samples[..half.max(1)].iter().map(|(_, _, size)| *size).max().unwrap_or_default();
    let last = samples.last().map(|(_, _, size)| *size).unwrap_or_default();
    ensure!(
        last <= first_half_peak + first_half_peak / 4 + (8 << 20),
        "etcd grew from {first_half_peak} to {last} bytes in the second half"
    );
    Ok(())
}
