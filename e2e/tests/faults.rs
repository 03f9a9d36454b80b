//! The fault-injection tier (ARCHITECTURE.md §11, tier 7; issue 14): agents under load from
//! librdkafka (idempotent and plain) and the Java client, one fault injected and healed, then every
//! agent restarted and the independent history checker run: every acknowledged record read back
//! at its offset, nothing twice from an idempotent producer, nothing beyond the high watermark,
//! `floe admin fsck` clean.
//!
//! Each scenario prints one summary line to stderr (visible without `--nocapture`). Environment:
//! `FLOE_FAULTS_LOAD_SECONDS` (default 25) is the shortest load per run, `FLOE_FAULTS_REPEAT`
//! (default 1) runs each scenario that many times, `FLOE_FAULTS_RATE` (default 150) is each
//! producer's records per second. `make faults` runs them three times with longer loads.

use anyhow::{bail, ensure, Context, Result};
use floe_e2e::cluster::{Agent, AgentOptions, Infrastructure, BUCKET};
use floe_e2e::faults::clock::{self, skewed_environment};
use floe_e2e::faults::load::{Load, LoadPlan};
use floe_e2e::faults::{S3Fault, S3FaultProxy, TcpProxy};
use floe_e2e::history::{self, FsckTarget};
use floe_e2e::proxy::DroppingProxy;
use floe_e2e::{floe_binary, http_get, metric_value, repository_root};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

fn load_seconds() -> u64 {
    setting("FLOE_FAULTS_LOAD_SECONDS", 25)
}

fn repeats() -> u64 {
    setting("FLOE_FAULTS_REPEAT", 1).max(1)
}

fn plan(java_idempotent: bool) -> LoadPlan {
    LoadPlan { rate: setting("FLOE_FAULTS_RATE", 150), partitions: 4, java: Some(java_idempotent) }
}

/// Sleeps on the blocking fault thread (the load runs on the async runtime meanwhile).
fn pause_for(seconds: f64) {
    std::thread::sleep(Duration::from_secs_f64(seconds));
}

fn metric(agent: &Agent, sample: &str) -> f64 {
    http_get(&agent.http, "/metrics").ok().and_then(|(_, metrics)| metric_value(&metrics, sample)).unwrap_or_default()
}

/// Waits until `agent` runs the background jobs (its GC has run at least once).
fn wait_for_jobs_leader(agent: &Agent, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while metric(agent, "floe_job_runs_total{job=\"gc\"") < 1.0 {
        ensure!(Instant::now() < deadline, "agent {} did not run GC within {timeout:?}", agent.node_id);
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Prints a scenario's summary line whether or not the test harness captures output (a write to
/// the stderr handle bypasses libtest's capture, which only sees the print macros), and appends it
/// to target/faults/summary.log.
fn summarize(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
    let path = repository_root().join("target/faults/summary.log");
    if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(file, "{line}");
    }
}

/// What a fault did: a description for the summary line and when it was healed (production must
/// resume after it).
struct FaultReport {
    description: String,
    healed_at: Instant,
}

/// One scenario's cluster: its agents, and how fsck reaches its metadata and bucket.
struct Scenario {
    name: String,
    agents: Vec<Agent>,
    fsck: FsckTarget,
    /// target/faults/<name>: one log file per agent (kept after the run).
    logs: PathBuf,
    /// The scenario is about deletion: fail unless garbage collection deleted something.
    expect_gc_deletions: bool,
}

impl Scenario {
    fn new(name: String, infrastructure: &Infrastructure, object_store: Option<String>) -> Result<Self> {
        let fsck = FsckTarget {
            floe: floe_binary()?,
            metadata_url: infrastructure.metadata_url(),
            object_store: object_store.unwrap_or_else(|| format!("s3://{BUCKET}/{name}")),
            virtual_cluster: name.clone(),
            environment: infrastructure.s3_environment(),
        };
        let logs = repository_root().join("target/faults").join(&name);
        let _ = std::fs::remove_dir_all(&logs);
        std::fs::create_dir_all(&logs)?;
        Ok(Self { name, agents: Vec::new(), fsck, logs, expect_gc_deletions: false })
    }

    /// Starts one more agent of this scenario, logging to its own file.
    fn start_agent(&mut self, infrastructure: &Infrastructure, flags: &[&str], mut options: AgentOptions) -> Result<()> {
        options.log_file = Some(self.logs.join(format!("agent-{}.log", self.agents.len() + 1)));
        self.agents.push(Agent::start_with(infrastructure, &self.name, flags, options)?);
        Ok(())
    }

    fn bootstrap(&self) -> String {
        self.agents.iter().map(|agent| agent.bootstrap.clone()).collect::<Vec<_>>().join(",")
    }

    /// Runs the load for at least the configured time and until the fault (run on a blocking
    /// thread with the agents) has healed and production had `after_heal` to resume; then stops
    /// the load, restarts every agent and runs the checker. Fails unless the checker is clean.
    async fn run(
        mut self,
        java_idempotent: bool,
        after_heal: Duration,
        fault: impl FnOnce(&mut Vec<Agent>) -> Result<FaultReport> + Send + 'static,
    ) -> Result<()> {
        let mut load = Load::start(&self.bootstrap(), &self.name, &plan(java_idempotent)).await?;
        let started = Instant::now();
        let mut agents = std::mem::take(&mut self.agents);
        let (agents, report) = tokio::task::spawn_blocking(move || {
            let report = fault(&mut agents);
            (agents, report)
        })
        .await?;
        self.agents = agents;
        let report = report?;
        let end = (started + Duration::from_secs(load_seconds())).max(report.healed_at + after_heal);
        tokio::time::sleep(end.saturating_duration_since(Instant::now())).await;
        load.ensure_running()?;
        let outcome = load.finish().await?;
        // What garbage collection did, read before the restarts reset the counters: objects it
        // deleted, and commits refused because it sealed their object while they were in flight.
        let counter = |name: &str| -> f64 {
            self.agents
                .iter()
                .filter_map(|agent| http_get(&agent.http, "/metrics").ok())
                .map(|(_, metrics)| metric_value(&metrics, name).unwrap_or_default())
                .sum()
        };
        let gc_deleted = counter("floe_gc_deleted_objects_total");
        let commits_refused = counter("floe_segment_commits_refused_total");
        // Every agent restarts before the read-back: a writer's cache of its fresh segments would
        // still serve an object GC deleted.
        for agent in &mut self.agents {
            agent.restart()?;
        }
        let bootstraps: Vec<String> = self.agents.iter().map(|agent| agent.bootstrap.clone()).collect();
        let (topics, acks, fsck) = (outcome.topics.clone(), outcome.acks.clone(), self.fsck.clone());
        let mut verdict = tokio::task::spawn_blocking(move || history::check(&bootstraps, &topics, &acks, &fsck)).await??;
        verdict.longest_ack_gap = history::longest_ack_gap(&outcome.acks, Some(outcome.started), Some(outcome.ended));
        let after_heal_acks = outcome.acks.iter().filter(|ack| ack.at > report.healed_at).count();
        summarize(&format!(
            "faults[{}]: sent={} acknowledged={} failed={} acknowledged_after_heal={} gc_deleted={} commits_refused={} faults: {} | {} | producers: {}",
            self.name,
            outcome.sent,
            outcome.acks.len(),
            outcome.failed,
            after_heal_acks,
            gc_deleted,
            commits_refused,
            report.description,
            verdict.line(),
            outcome.producers.join(", ")
        ));
        ensure!(
            verdict.is_clean(),
            "{}: the history checker failed (agent logs in {}):\n{}",
            self.name,
            self.logs.display(),
            verdict.report()
        );
        ensure!(after_heal_acks > 0, "{}: nothing was acknowledged after the fault healed", self.name);
        ensure!(
            !self.expect_gc_deletions || gc_deleted > 0.0,
            "{}: garbage collection deleted nothing, so the scenario did not test deletion under the fault",
            self.name
        );
        Ok(())
    }
}

/// Finding 1 of issue 14: one agent's clock 15 minutes behind the jobs leader's (and one 15
/// minutes ahead), every GC setting at its default, only `--retention-interval` shortened so GC
/// runs often. The shared bucket is `file://`: an S3 server refuses requests signed 15 minutes
/// off (RequestTimeTooSkewed), as AWS does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_skew_of_fifteen_minutes_on_one_agent_loses_no_acknowledged_record() -> Result<()> {
    let infrastructure = Infrastructure::start()?;
    for run in 1..=repeats() {
        let name = format!("skew-{run}");
        let bucket = infrastructure.directory.path().join(format!("bucket-{name}"));
        std::fs::create_dir_all(&bucket)?;
        let object_store = format!("file://{}", bucket.display());
        let mut scenario = Scenario::new(name.clone(), &infrastructure, Some(object_store.clone()))?;
        let flags = ["--retention-interval", "1s"];
        let options = |environment| AgentOptions { object_store: Some(object_store.clone()), environment, ..AgentOptions::default() };
        // The correct clock leads the jobs: it sees the skewed writer's fresh objects as 15
        // minutes old.
        scenario.start_agent(&infrastructure, &flags, options(Vec::new()))?;
        wait_for_jobs_leader(&scenario.agents[0], Duration::from_secs(30))?;
        scenario.start_agent(&infrastructure, &flags, options(skewed_environment("-15m")?))?;
        scenario.start_agent(&infrastructure, &flags, options(skewed_environment("+15m")?))?;
        let verify_bucket = bucket.clone();
        scenario
            .run(run % 2 == 1, Duration::from_secs(5), move |_agents| {
                let started = Instant::now();
                // The skew is in force from the start; check that libfaketime took effect.
                let deadline = Instant::now() + Duration::from_secs(20);
                while !(clock::some_object_written_with_skew(&verify_bucket, -900)?
                    && clock::some_object_written_with_skew(&verify_bucket, 900)?)
                {
                    ensure!(Instant::now() < deadline, "no object named by a clock 15 minutes off: libfaketime did not take effect");
                    pause_for(0.5);
                }
                Ok(FaultReport {
                    description: format!(
                        "agent 2 at -15m and agent 3 at +15m for the whole run (seen in object names after {:.1}s)",
                        started.elapsed().as_secs_f64()
                    ),
                    healed_at: Instant::now(),
                })
            })
            .await?;
    }
    Ok(())
}

/// Finding 2 of issue 14: an agent cut off from etcd (not from the bucket) for longer than the GC
/// grace while its commits retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cut_off_from_etcd_longer_than_the_gc_grace_loses_no_acknowledged_record() -> Result<()> {
    let infrastructure = Infrastructure::start()?;
    for run in 1..=repeats() {
        let name = format!("etcd-cut-{run}");
        let mut scenario = Scenario::new(name.clone(), &infrastructure, None)?;
        scenario.expect_gc_deletions = true;
        let flags = ["--gc-grace", "3s", "--retention-interval", "1s"];
        scenario.start_agent(&infrastructure, &flags, AgentOptions::default())?;
        wait_for_jobs_leader(&scenario.agents[0], Duration::from_secs(30))?;
        // The proxy outlives the fault: the agent reaches etcd through it until the end.
        let proxy = Arc::new(TcpProxy::start(&infrastructure.etcd_endpoint())?);
        let options = AgentOptions { metadata_url: Some(format!("etcd://{}/floe", proxy.address)), ..AgentOptions::default() };
        scenario.start_agent(&infrastructure, &flags, options)?;
        let etcd_link = Arc::clone(&proxy);
        scenario
            .run(run % 2 == 0, Duration::from_secs(8), move |_agents| {
                pause_for(6.0);
                etcd_link.cut();
                pause_for(9.0);
                etcd_link.heal();
                let healed_at = Instant::now();
                Ok(FaultReport {
                    description: format!(
                        "agent 2 cut off from etcd for 9s (gc-grace 3s): {} connections aborted, {} refused",
                        etcd_link.stats.aborted.load(std::sync::atomic::Ordering::Relaxed),
                        etcd_link.stats.refused.load(std::sync::atomic::Ordering::Relaxed)
                    ),
                    healed_at,
                })
            })
            .await?;
    }
    Ok(())
}

/// Finding 5 of issue 14: a second virtual cluster whose object store is the very same bucket URL
/// (a copied example with the prefix unchanged) runs its garbage collector with a short grace
/// while the first one takes load. The second cluster must list and delete only its own objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_virtual_cluster_on_the_same_bucket_url_deletes_none_of_the_firsts_records() -> Result<()> {
    let infrastructure = Infrastructure::start()?;
    for run in 1..=repeats() {
        let name = format!("shared-bucket-{run}");
        let shared = format!("s3://{BUCKET}/{name}");
        let mut scenario = Scenario::new(name.clone(), &infrastructure, Some(shared.clone()))?;
        let flags = ["--gc-grace", "3s", "--retention-interval", "1s"];
        let options = || AgentOptions { object_store: Some(shared.clone()), ..AgentOptions::default() };
        scenario.start_agent(&infrastructure, &flags, options())?;
        scenario.start_agent(&infrastructure, &flags, options())?;
        // The other tenant: its own etcd keys (another virtual cluster name), the same objects URL.
        let mut other_options = options();
        other_options.log_file = Some(scenario.logs.join("other-tenant.log"));
        let other = Agent::start_with(&infrastructure, &format!("{name}-other"), &flags, other_options)?;
        wait_for_jobs_leader(&other, Duration::from_secs(30))?;
        let other_http = other.http.clone();
        scenario
            .run(run % 2 == 0, Duration::from_secs(3), move |_agents| {
                // Several of the other tenant's GC passes, each past its grace period.
                pause_for(15.0);
                let (_, metrics) = http_get(&other_http, "/metrics")?;
                let passes = metric_value(&metrics, "floe_job_runs_total{job=\"gc\",outcome=\"ok\"}").unwrap_or_default();
                ensure!(passes >= 10.0, "the other tenant's garbage collector ran only {passes} times");
                Ok(FaultReport {
                    description: format!("a second virtual cluster on {shared} ran {passes} GC passes with a 3s grace"),
                    healed_at: Instant::now(),
                })
            })
            .await?;
        drop(other);
    }
    Ok(())
}

const FAST_REGISTRY: [&str; 4] = ["--registry-ttl", "3s", "--retention-interval", "1s"];

fn three_agents(infrastructure: &Infrastructure, name: &str) -> Result<Scenario> {
    let mut scenario = Scenario::new(name.to_string(), infrastructure, None)?;
    for _ in 0..3 {
        scenario.start_agent(infrastructure, &FAST_REGISTRY, AgentOptions::default())?;
    }
    Ok(scenario)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_killed_with_sigkill_mid_load_lose_no_acknowledged_record() -> Result<()> {
    let infrastructure = Infrastructure::start()?;
    for run in 1..=repeats() {
        let name = format!("kill-{run}");
        three_agents(&infrastructure, &name)?
            .run(run % 2 == 1, Duration::from_secs(6), |agents| {
                let mut kills = 0;
                for victim in [1, 2, 0] {
                    pause_for(5.0);
                    agents[victim].kill_hard()?;
                    kills += 1;
                    pause_for(2.0);
                    agents[victim].restart()?;
                }
                Ok(FaultReport { description: format!("{kills} agents kill -9ed, each restarted 2s later"), healed_at: Instant::now() })
            })
            .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_paused_longer_than_the_registry_ttl_loses_no_acknowledged_record() -> Result<()> {
    let infrastructure = Infrastructure::start()?;
    for run in 1..=repeats() {
        let name = format!("pause-{run}");
        three_agents(&infrastructure, &name)?
            .run(run % 2 == 0, Duration::from_secs(8), |agents| {
                pause_for(6.0);
                // The jobs leader (the first agent) and a plain one, each frozen past the TTL.
                agents[0].pause()?;
                pause_for(8.0);
                agents[0].resume()?;
                pause_for(3.0);
                agents[2].pause()?;
                pause_for(8.0);
                agents[2].resume()?;
                Ok(FaultReport {
                    description: "two agents (the jobs leader, then another) SIGSTOPped for 8s each (registry TTL 3s)".into(),
                    healed_at: Instant::now(),
                })
            })
            .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_partitioned_from_the_bucket_loses_no_acknowledged_record() -> Result<()> {
    let infrastructure = Infrastructure::start()?;
    for run in 1..=repeats() {
        let name = format!("bucket-cut-{run}");
        let mut scenario = Scenario::new(name.clone(), &infrastructure, None)?;
        scenario.start_agent(&infrastructure, &FAST_REGISTRY, AgentOptions::default())?;
        let proxy = Arc::new(TcpProxy::start(&format!("127.0.0.1:{}", infrastructure.s3_port))?);
        let options = AgentOptions { s3_endpoint: Some(format!("http://{}", proxy.address)), ..AgentOptions::default() };
        scenario.start_agent(&infrastructure, &FAST_REGISTRY, options)?;
        let bucket_link = Arc::clone(&proxy);
        scenario
            .run(run % 2 == 1, Duration::from_secs(8), move |_agents| {
                pause_for(6.0);
                bucket_link.cut();
                pause_for(12.0);
                bucket_link.heal();
                Ok(FaultReport {
                    description: format!(
                        "agent 2 cut off from the bucket for 12s: {} connections aborted, {} refused",
                        bucket_link.stats.aborted.load(std::sync::atomic::Ordering::Relaxed),
                        bucket_link.stats.refused.load(std::sync::atomic::Ordering::Relaxed)
                    ),
                    healed_at: Instant::now(),
                })
            })
            .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_leader_loss_and_twenty_seconds_without_quorum_lose_no_acknowledged_record() -> Result<()> {
    let infrastructure = Arc::new(std::sync::Mutex::new(Infrastructure::start_with_etcd_members(3)?));
    for run in 1..=repeats() {
        let name = format!("etcd-quorum-{run}");
        let scenario = {
            let infrastructure = infrastructure.lock().expect("not poisoned");
            let mut scenario = Scenario::new(name.clone(), &infrastructure, None)?;
            for _ in 0..2 {
                scenario.start_agent(&infrastructure, &FAST_REGISTRY, AgentOptions::default())?;
            }
            scenario
        };
        let shared = Arc::clone(&infrastructure);
        scenario
            .run(run % 2 == 0, Duration::from_secs(10), move |_agents| {
                let mut infrastructure = shared.lock().expect("not poisoned");
                let cluster = infrastructure.etcd_cluster.as_mut().context("no etcd cluster")?;
                pause_for(6.0);
                let leader = cluster.wait_for_leader(Duration::from_secs(10))?;
                cluster.kill_member(leader)?;
                let killed = Instant::now();
                let successor = cluster.wait_for_leader(Duration::from_secs(30))?;
                let election = killed.elapsed();
                pause_for(3.0);
                cluster.start_member(leader)?;
                cluster.wait_for_leader(Duration::from_secs(30))?;
                pause_for(4.0);
                // Quorum loss: two of three members stopped for 20 s.
                let keep = cluster.wait_for_leader(Duration::from_secs(10))?;
                let stopped: Vec<usize> = (0..cluster.len()).filter(|member| *member != keep).collect();
                for member in &stopped {
                    cluster.stop_member(*member)?;
                }
                let quorum_lost = Instant::now();
                // The fault must take effect: the remaining member commits nothing.
                ensure!(!cluster.write_succeeds(keep)?, "etcd member {keep} still commits writes with {stopped:?} stopped");
                pause_for((20.0 - quorum_lost.elapsed().as_secs_f64()).max(0.0));
                for member in &stopped {
                    cluster.start_member(*member)?;
                }
                cluster.wait_for_leader(Duration::from_secs(30))?;
                Ok(FaultReport {
                    description: format!(
                        "etcd leader (member {leader}) kill -9ed, member {successor} led after {:.1}s, restarted 3s later; then members {stopped:?} stopped for 20s (no quorum)",
                        election.as_secs_f64()
                    ),
                    healed_at: Instant::now(),
                })
            })
            .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_errors_slowness_hangs_and_lost_put_answers_lose_no_acknowledged_record() -> Result<()> {
    let infrastructure = Infrastructure::start()?;
    for run in 1..=repeats() {
        let name = format!("s3-faults-{run}");
        let s3 = Arc::new(S3FaultProxy::start(&format!("127.0.0.1:{}", infrastructure.s3_port))?);
        let mut scenario = Scenario::new(name.clone(), &infrastructure, None)?;
        let options = AgentOptions { s3_endpoint: Some(s3.endpoint()), ..AgentOptions::default() };
        for _ in 0..2 {
            scenario.start_agent(&infrastructure, &FAST_REGISTRY, options.clone())?;
        }
        let proxy = Arc::clone(&s3);
        scenario
            .run(run % 2 == 1, Duration::from_secs(35), move |_agents| {
                // Waits until a counted fault (a burst, lost answers) has been used up.
                let used_up = |what: &str| -> Result<()> {
                    let deadline = Instant::now() + Duration::from_secs(30);
                    while proxy.current() != S3Fault::Healthy {
                        ensure!(Instant::now() < deadline, "the object store saw too few requests to use up {what}");
                        pause_for(0.1);
                    }
                    Ok(())
                };
                pause_for(5.0);
                proxy.set(S3Fault::ErrorBurst { status: 503, remaining: 20 });
                used_up("a burst of 503s")?;
                pause_for(2.0);
                proxy.set(S3Fault::ErrorBurst { status: 500, remaining: 20 });
                used_up("a burst of 500s")?;
                pause_for(2.0);
                proxy.set(S3Fault::Slow(Duration::from_secs(2)));
                pause_for(6.0);
                proxy.heal();
                pause_for(2.0);
                proxy.set(S3Fault::LosePutAnswers { remaining: 5 });
                used_up("5 lost PUT answers")?;
                pause_for(2.0);
                // Requests arriving in these 2 s are never answered: their clients time out after
                // 30 s (object_store's default) and retry.
                proxy.set(S3Fault::Hang);
                pause_for(2.0);
                proxy.heal();
                let stats = &proxy.stats;
                let counted = |counter: &std::sync::atomic::AtomicU64| counter.load(std::sync::atomic::Ordering::Relaxed);
                ensure!(
                    counted(&stats.errors_injected) == 40 && counted(&stats.slowed) > 0 && counted(&stats.hung) > 0,
                    "a fault hit no request: {}",
                    stats.summary()
                );
                Ok(FaultReport {
                    description: format!("503 x20, 500 x20, slow 2s for 6s, 5 PUT answers lost, hang 2s: {}", stats.summary()),
                    healed_at: Instant::now(),
                })
            })
            .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_produce_responses_lose_no_acknowledged_record_and_duplicate_nothing_idempotent() -> Result<()> {
    let infrastructure = Infrastructure::start()?;
    for run in 1..=repeats() {
        let name = format!("lost-responses-{run}");
        let mut scenario = Scenario::new(name.clone(), &infrastructure, None)?;
        let mut proxies = Vec::new();
        for index in 0..2u64 {
            let listen = format!("127.0.0.1:{}", std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port());
            // Losing produce answers from the start; each closes its connection.
            let proxy = DroppingProxy::start(&listen, 5, 17 + index)?;
            let flags = [&FAST_REGISTRY[..], &["--kafka-listen", &listen, "--advertise", &proxy.address]].concat();
            scenario.start_agent(&infrastructure, &flags, AgentOptions::default())?;
            proxies.push(proxy);
        }
        // The proxies stay up until the scenario ends: the agents advertise them.
        let proxies = Arc::new(proxies);
        let watched = Arc::clone(&proxies);
        scenario
            .run(run % 2 == 0, Duration::from_secs(5), move |_agents| {
                pause_for(10.0);
                let dropped: u64 = watched.iter().map(DroppingProxy::dropped).sum();
                let delivered: u64 = watched.iter().map(DroppingProxy::produce_responses).sum();
                if dropped == 0 {
                    bail!("no produce response was lost ({delivered} delivered)");
                }
                let description =
                    format!("5% of produce responses lost for the whole run: {dropped} lost, {delivered} delivered in the first 10s");
                Ok(FaultReport { description, healed_at: Instant::now() })
            })
            .await?;
        drop(proxies);
    }
    Ok(())
}
