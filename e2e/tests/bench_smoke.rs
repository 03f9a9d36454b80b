//! Smoke test of `make bench`: the harness (e2e/scripts/bench.sh) in BENCH_QUICK mode runs every
//! system (Apache Kafka, the Floe playground, a 3-agent Floe cluster on etcd + s3s-fs, and the
//! same cluster with every bucket request delayed by the S3 latency proxy) through
//! every workload with tiny counts (and the playground over TLS + SCRAM through W1), against the binary under test, and its results.json carries
//! every figure the scoreboard shows. The figures themselves are not judged: a two-core machine
//! shared with other work cannot give stable numbers in seconds.

use anyhow::{bail, ensure, Context, Result};
use floe_e2e::{floe_binary, repository_root};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SYSTEMS: [&str; 4] = ["kafka", "floe-playground", "floe-cluster", "floe-cluster-s3lat"];
/// The clusters on etcd + s3s-fs: the second has every bucket request delayed by the S3 latency proxy.
const CLUSTERS: [&str; 2] = ["floe-cluster", "floe-cluster-s3lat"];
const PRODUCE_WORKLOADS: [&str; 5] = ["w1-none", "w1-defaults", "w1-lz4", "w2-none", "w2-lz4"];
const FIXED_WORKLOADS: [&str; 5] = ["w3-50", "w3-80", "w3-50-pipelined", "w3-light", "w3-defaults-50"];
const LATENCY: [&str; 7] = ["records_per_sec", "mib_per_sec", "avg_ms", "p50_ms", "p99_ms", "p999_ms", "max_ms"];
/// Figures of every produce run that only some systems have: (figure, systems that report it).
const SYSTEM_SPECIFIC: [(&str, &[&str]); 7] = [
    ("object_puts", &["floe-playground", "floe-cluster", "floe-cluster-s3lat"]),
    ("object_puts_per_sec", &["floe-playground", "floe-cluster", "floe-cluster-s3lat"]),
    ("flush_ms_mean", &["floe-playground", "floe-cluster", "floe-cluster-s3lat"]),
    ("segments", &["floe-playground", "floe-cluster", "floe-cluster-s3lat"]),
    ("etcd_txn_per_segment", &CLUSTERS),
    ("infra_cpu_seconds", &CLUSTERS),
    ("mib_per_sec_per_core_incl_infra", &CLUSTERS),
];
/// The catch-up read's bucket figures, which only Floe has.
const CATCHUP_BUCKET: [&str; 5] = ["object_gets", "object_get_mib", "gets_per_gib", "objects_per_gib", "gets_per_object"];
const SERVER: [&str; 7] = [
    "server_cpu_seconds",
    "server_cores",
    "mib_per_sec_per_core",
    "client_cpu_seconds",
    "client_cores",
    "rss_hwm_mib",
    "rss_hwm_process_mib",
];

/// Whether `figure` is a JSON number (`expect_number`) or null (not applicable to this system).
fn check(figures: &Value, place: &str, figure: &str, expect_number: bool) -> Result<()> {
    let value = figures.get(figure).with_context(|| format!("{place}: {figure} missing"))?;
    if expect_number {
        let number = value.as_f64().with_context(|| format!("{place}: {figure} is {value}, not a number"))?;
        ensure!(number.is_finite() && number >= 0.0, "{place}: {figure} is {number}");
    } else {
        ensure!(value.is_null(), "{place}: {figure} is {value}, but it does not apply to this system");
    }
    Ok(())
}

fn check_system(system: &str, data: &Value) -> Result<()> {
    let workloads = data.get("workloads").with_context(|| format!("{system}: no workloads"))?;
    let workload = |name: &str| workloads.get(name).with_context(|| format!("{system}: workload {name} missing"));
    for name in PRODUCE_WORKLOADS.iter().chain(&FIXED_WORKLOADS) {
        let figures = workload(name)?;
        let place = format!("{system} {name}");
        for figure in LATENCY.iter().chain(&SERVER).chain(&["records"]) {
            check(figures, &place, figure, true)?;
        }
        for (figure, systems) in SYSTEM_SPECIFIC {
            check(figures, &place, figure, systems.contains(&system))?;
        }
        ensure!(figures["mib_per_sec"].as_f64() > Some(0.0), "{place}: nothing was produced");
        ensure!(figures["server_cpu_seconds"].as_f64() > Some(0.0), "{place}: the server used no CPU");
    }
    for name in PRODUCE_WORKLOADS {
        let place = format!("{system} {name}");
        let figures = workload(name)?;
        check(figures, &place, "partitions", true)?;
        let expected = if name.starts_with("w1") { 16 } else { 1_000 };
        ensure!(figures["partitions"].as_u64() == Some(expected), "{place}: partitions {}", figures["partitions"]);
        // w1-defaults is the Java producer's defaults, uncompressed.
        let compression = if name == "w1-defaults" { "none" } else { name.rsplit('-').next().expect("named <workload>-<compression>") };
        ensure!(figures["compression"].as_str() == Some(compression), "{place}: compression {}", figures["compression"]);
    }
    if system != "kafka" {
        let puts = workload("w1-none")?["object_puts"].as_f64().unwrap_or_default();
        ensure!(puts > 0.0, "{system} w1-none: the agents reported no object PUTs");
    }
    for figure in ["target_records_per_sec", "percent_of_max", "max_in_flight"] {
        for name in FIXED_WORKLOADS {
            // w3-light runs at a fixed 1,000 records/s, not at a share of the system's maximum.
            let applies = !(name == "w3-light" && figure == "percent_of_max");
            check(workload(name)?, &format!("{system} {name}"), figure, applies)?;
        }
    }
    ensure!(workload("w3-light")?["target_records_per_sec"].as_u64() == Some(1_000), "{system} w3-light: not 1,000 records/s");
    ensure!(workload("w3-50-pipelined")?["max_in_flight"].as_u64() == Some(50), "{system} w3-50-pipelined: not 50 in flight");
    ensure!(workload("w3-defaults-50")?["percent_of_max"].as_u64() == Some(50), "{system} w3-defaults-50: not at 50%");
    // The same half load again, timed after a warm-up (WarmLatency.java).
    for figure in ["warm_seconds", "warm_records", "warm_p50_ms", "warm_p99_ms", "warm_p999_ms", "warm_max_ms"] {
        check(workload("w3-defaults-50")?, &format!("{system} w3-defaults-50"), figure, true)?;
    }
    ensure!(workload("w3-defaults-50")?["warm_records"].as_u64() > Some(0), "{system} w3-defaults-50: no record timed after the warm-up");
    for name in ["consume", "catchup"] {
        for figure in ["records", "mib_per_sec", "fetch_mib_per_sec", "server_cpu_seconds", "mib_per_sec_per_core"] {
            check(workload(name)?, &format!("{system} {name}"), figure, true)?;
        }
    }
    for figure in CATCHUP_BUCKET {
        check(workload("catchup")?, &format!("{system} catchup"), figure, system != "kafka")?;
    }
    for figure in ["s3_proxy_requests", "s3_proxy_delay_p50_ms", "s3_proxy_delay_p99_ms"] {
        check(data, system, figure, system == "floe-cluster-s3lat")?;
    }
    if system == "floe-cluster-s3lat" {
        ensure!(data["s3_proxy_requests"].as_f64() > Some(0.0), "{system}: no request went through the S3 latency proxy");
    }
    for figure in ["messages", "avg_ms", "p50_ms", "p99_ms", "p999_ms"] {
        check(workload("e2e")?, &format!("{system} e2e"), figure, true)?;
    }
    check(workload("catchup")?, &format!("{system} catchup"), "mib_read", true)?;
    // Go's sarama SyncProducer, one record at a time (quick mode: 20 records).
    for figure in ["messages", "records_per_sec", "first_ms", "p50_ms", "p99_ms", "p999_ms", "max_ms"] {
        check(workload("sarama-sync")?, &format!("{system} sarama-sync"), figure, true)?;
    }
    ensure!(workload("sarama-sync")?["messages"].as_u64() == Some(20), "{system} sarama-sync: not the 20 records of quick mode");
    check(data, system, "rss_hwm_mib", true)?;
    check(data, system, "rss_hwm_process_mib", true)?;
    ensure!(
        data["rss_hwm_process_mib"].as_f64() <= data["rss_hwm_mib"].as_f64(),
        "{system}: the largest process's peak RSS exceeds the sum over its processes"
    );
    check(data, system, "infra_rss_hwm_mib", CLUSTERS.contains(&system))?;
    ensure!(data["label"].as_str().is_some_and(|label| !label.is_empty()), "{system}: no label");
    Ok(())
}

/// The playground over TLS + SCRAM-SHA-512 runs the W1 workloads only, and its MiB/s per server
/// core is set against the plaintext playground's.
fn check_secure(results: &Value) -> Result<()> {
    let system = "floe-playground-secure";
    let workloads = &results["systems"][system]["workloads"];
    for name in ["w1-none", "w1-lz4"] {
        let figures = workloads.get(name).with_context(|| format!("{system}: workload {name} missing"))?;
        let place = format!("{system} {name}");
        for figure in LATENCY.iter().chain(&SERVER).chain(&["records", "object_puts"]) {
            check(figures, &place, figure, true)?;
        }
        ensure!(figures["mib_per_sec"].as_f64() > Some(0.0), "{place}: nothing was produced over TLS + SCRAM");
        let ratio = &results["secure_over_plaintext"][name]["ratio"];
        ensure!(ratio.as_f64() > Some(0.0), "{place}: no ratio to plaintext ({ratio})");
    }
    for name in ["w2-none", "consume", "w3-50", "e2e", "sarama-sync"] {
        ensure!(workloads.get(name).is_none(), "{system} ran {name}, which it should skip");
    }
    Ok(())
}

#[test]
fn quick_bench_measures_every_workload_on_kafka_the_playground_and_the_cluster() -> Result<()> {
    let output_directory = tempfile::Builder::new().prefix("floe-bench-smoke-").tempdir()?;
    let started = Instant::now();
    let status = Command::new("bash")
        .arg(repository_root().join("e2e/scripts/bench.sh"))
        .env("BENCH_QUICK", "1")
        .env("FLOE_BIN", floe_binary()?)
        .env("BENCH_OUT", output_directory.path())
        .env_remove("BENCH_SYSTEMS")
        .env_remove("BENCH_WORKLOADS")
        .env_remove("BENCH_BASELINE_REF")
        .env_remove("BENCH_BASELINE_BIN")
        .env_remove("BENCH_PUBLISH")
        .stdin(Stdio::null())
        .status()
        .context("failed to run e2e/scripts/bench.sh")?;
    let elapsed = started.elapsed();
    if !status.success() {
        bail!("BENCH_QUICK=1 bench.sh failed with {status} after {elapsed:?}");
    }
    // A smoke run that creeps towards minutes would make `make test` pay for it every time (five
    // systems, the S3 latency one included, and twelve workloads: about two and a half minutes).
    ensure!(elapsed < Duration::from_secs(210), "the quick bench took {elapsed:?}");

    let run = output_directory.path().join("latest");
    let results: Value = serde_json::from_str(&std::fs::read_to_string(run.join("results.json"))?)?;
    ensure!(results["mode"] == "quick", "mode is {}", results["mode"]);
    for field in ["nproc", "cpu_model", "memory_gib", "kernel", "java_version", "floe_commit", "wall_seconds"] {
        let value = &results["machine"][field];
        ensure!(!value.is_null() && value != "", "machine.{field} missing");
    }
    for system in SYSTEMS {
        check_system(system, &results["systems"][system]).with_context(|| format!("results.json of {}", run.display()))?;
    }
    check_secure(&results).with_context(|| format!("results.json of {}", run.display()))?;
    let ratios = &results["ratios_mib_per_sec_per_core_floe_over_kafka"];
    for system in ["floe-playground", "floe-cluster", "floe-cluster-s3lat"] {
        for workload in PRODUCE_WORKLOADS {
            ensure!(ratios[system][workload].as_f64() > Some(0.0), "no Floe/Kafka ratio for {system} {workload}");
        }
    }

    let scoreboard = std::fs::read_to_string(run.join("scoreboard.md"))?;
    for heading in [
        "| Kafka |",
        "| Floe playground |",
        "| Floe cluster (3 agents) |",
        "| Floe cluster (3 agents), S3 latency |",
        "Smoke run",
        "## TLS + SCRAM-SHA-512 vs plaintext",
        "## Half load with the Java producer's defaults",
        "## Catch-up read (1,000 partitions)",
        "injected S3 delay measured",
    ] {
        ensure!(scoreboard.contains(heading), "scoreboard.md lacks {heading:?}");
    }
    let chart = std::fs::read(run.join("chart.png"))?;
    ensure!(chart.starts_with(b"\x89PNG\r\n\x1a\n"), "chart.png is not a PNG");
    Ok(())
}
