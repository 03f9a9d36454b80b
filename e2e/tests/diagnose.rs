//! `floe diagnose` (issue 21, done-when 2) against a real etcd, a real S3 server (s3s-fs) and real
//! agents: it passes on a healthy three-agent cluster, and for each fault (a bucket nobody answers
//! at, a bucket refusing the credentials, an etcd nobody answers at, an agent whose clock is five
//! minutes ahead, an agent built for an older metadata version) it exits 1 with a line naming
//! what is wrong and what to do.
//!
//! The tests share one etcd, one S3 server and the healthy cluster while any of them runs (see
//! [`shared`]); each fault that needs agents of its own gets a virtual cluster of its own, so the
//! tests may run side by side.

use anyhow::{ensure, Context, Result};
use floe_agent::cluster::registry::AgentRecord;
use floe_agent::metadata::keys::KeyLayout;
use floe_agent::metadata::SUPPORTED_METADATA_VERSION;
use floe_e2e::cluster::{Agent, AgentOptions, Infrastructure, BUCKET};
use floe_e2e::faults::clock::skewed_environment;
use floe_e2e::{floe_binary, run_with_timeout};
use std::process::Command;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

const HEALTHY: &str = "diagnose-healthy";
const AGENT_FLAGS: &[&str] = &["--registry-ttl", "3s"];

/// etcd, the S3 server and the healthy cluster. Fields drop in order: agents before the servers.
struct Shared {
    agents: Vec<Agent>,
    infrastructure: Infrastructure,
}

/// Held weakly: the servers stop when the last test using them ends (a static that owned them
/// would never be dropped, leaving etcd and s3s-fs running after the test binary).
static SHARED: Mutex<Weak<Shared>> = Mutex::new(Weak::new());

/// The shared servers and healthy cluster, started by the first test that asks while none runs.
fn shared() -> Result<Arc<Shared>> {
    let mut slot = SHARED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(shared) = slot.upgrade() {
        return Ok(shared);
    }
    let infrastructure = Infrastructure::start()?;
    let agents = (0..3).map(|_| Agent::start(&infrastructure, HEALTHY, AGENT_FLAGS)).collect::<Result<Vec<_>>>()?;
    // Records in the bucket, so fsck has objects to check.
    let records = infrastructure.directory.path().join("records.txt");
    std::fs::write(&records, "one\ntwo\nthree\n")?;
    let floe = |arguments: &[&str]| -> Result<()> {
        let mut command = Command::new(floe_binary()?);
        command.args(arguments).args(["--bootstrap", &agents[0].bootstrap]);
        let finished = run_with_timeout(command, Duration::from_secs(30))?;
        ensure!(finished.status.success(), "floe {arguments:?} failed: {}", finished.stderr);
        Ok(())
    };
    floe(&["topic", "create", "checked", "--partitions", "3"])?;
    floe(&["produce", "checked", "--file", &records.display().to_string()])?;
    let shared = Arc::new(Shared { agents, infrastructure });
    *slot = Arc::downgrade(&shared);
    Ok(shared)
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// What one `floe diagnose` run printed.
struct Diagnosis {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Diagnosis {
    /// The line of check `name` (e.g. `bucket`, `agent 2 clock`), without its PASS/FAIL/SKIP.
    fn line(&self, outcome: &str, name: &str) -> Result<&str> {
        let prefix = format!("{outcome} {name}: ");
        self.stdout
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .with_context(|| format!("no `{prefix}…` line in the diagnosis:\n{}\nstderr:\n{}", self.stdout, self.stderr))
    }

    fn failures(&self) -> Vec<&str> {
        self.stdout.lines().filter(|line| line.starts_with("FAIL ")).collect()
    }
}

/// Runs `floe diagnose` on a virtual cluster of the shared servers, with the agents' S3
/// environment changed by `environment` and more flags in `extra`.
fn diagnose(infrastructure: &Infrastructure, virtual_cluster: &str, environment: &[(&str, String)], extra: &[&str]) -> Result<Diagnosis> {
    let mut command = Command::new(floe_binary()?);
    command
        .args(["diagnose", "--metadata", &infrastructure.metadata_url(), "--virtual-cluster", virtual_cluster])
        .args(["--object-store", &format!("s3://{BUCKET}/{virtual_cluster}"), "--log", "warn"])
        .args(extra)
        .envs(infrastructure.s3_environment())
        .envs(environment.iter().map(|(key, value)| (*key, value.as_str())));
    run(command)
}

fn run(command: Command) -> Result<Diagnosis> {
    let finished = run_with_timeout(command, Duration::from_secs(90))?;
    // Shown with the test's output when it fails.
    eprintln!("floe diagnose exited {:?}:\n{}{}", finished.status.code(), finished.stdout, finished.stderr);
    Ok(Diagnosis { code: finished.status.code(), stdout: finished.stdout, stderr: finished.stderr })
}

#[test]
fn a_healthy_three_agent_cluster_passes_every_check() -> Result<()> {
    let shared = shared()?;
    let diagnosis = diagnose(&shared.infrastructure, HEALTHY, &[], &[])?;
    ensure!(diagnosis.code == Some(0), "exit {:?}:\n{}\nstderr:\n{}", diagnosis.code, diagnosis.stdout, diagnosis.stderr);
    ensure!(diagnosis.failures().is_empty() && !diagnosis.stdout.contains("SKIP "), "{}", diagnosis.stdout);
    ensure!(diagnosis.line("PASS", "bucket")?.contains("PUT, GET, LIST and DELETE"), "{}", diagnosis.stdout);
    diagnosis.line("PASS", &format!("etcd 127.0.0.1:{}", shared.infrastructure.etcd_port))?;
    ensure!(diagnosis.line("PASS", "journal")?.contains(&format!("metadata version {SUPPORTED_METADATA_VERSION}")));
    ensure!(diagnosis.line("PASS", "agents")?.starts_with("3 agents registered"), "{}", diagnosis.stdout);
    for agent in &shared.agents {
        for check in ["reachable", "metadata version", "journal lag", "clock"] {
            diagnosis.line("PASS", &format!("agent {} {check}", agent.node_id))?;
        }
    }
    let fsck = diagnosis.line("PASS", "fsck")?;
    ensure!(!fsck.starts_with("0 referenced objects"), "fsck checked nothing, so its pass proves nothing: {fsck}");
    ensure!(diagnosis.stdout.contains(" 0 failed, 0 skipped"), "{}", diagnosis.stdout);

    // The same checks as one JSON object per line, for scripts.
    let json = diagnose(&shared.infrastructure, HEALTHY, &[], &["-o", "json"])?;
    ensure!(json.code == Some(0), "exit {:?}:\n{}", json.code, json.stdout);
    let lines: Vec<serde_json::Value> = json.stdout.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    // bucket, etcd, journal, agents, four per agent, fsck.
    ensure!(lines.len() == 4 + 4 * 3 + 1, "one object per check expected:\n{}", json.stdout);
    ensure!(lines.iter().all(|line| line["status"] == "pass" && line["check"].is_string() && line["detail"].is_string()));
    Ok(())
}

#[test]
fn a_bucket_nobody_answers_at_fails_the_bucket_check_naming_the_endpoint_setting() -> Result<()> {
    let shared = shared()?;
    let endpoint = format!("http://127.0.0.1:{}", closed_port()?);
    let diagnosis = diagnose(&shared.infrastructure, HEALTHY, &[("AWS_ENDPOINT", endpoint)], &[])?;
    ensure!(diagnosis.code == Some(1), "exit {:?}:\n{}", diagnosis.code, diagnosis.stdout);
    let bucket = diagnosis.line("FAIL", "bucket")?;
    for expected in [&format!("s3://{BUCKET}/{HEALTHY}: PUT of a probe object failed: connection refused"), "AWS_ENDPOINT"] {
        ensure!(bucket.contains(expected), "the bucket line lacks {expected:?}: {bucket}");
    }
    diagnosis.line("PASS", &format!("etcd 127.0.0.1:{}", shared.infrastructure.etcd_port))?;
    diagnosis.line("SKIP", "fsck")?;
    Ok(())
}

#[test]
fn a_bucket_refusing_the_credentials_fails_the_bucket_check_naming_them() -> Result<()> {
    let shared = shared()?;
    let diagnosis = diagnose(&shared.infrastructure, HEALTHY, &[("AWS_SECRET_ACCESS_KEY", "not-the-secret".to_string())], &[])?;
    ensure!(diagnosis.code == Some(1), "exit {:?}:\n{}", diagnosis.code, diagnosis.stdout);
    let bucket = diagnosis.line("FAIL", "bucket")?;
    for expected in
        ["PUT of a probe object failed: 403 Forbidden (SignatureDoesNotMatch)", "may not write (s3:PutObject)", "AWS_SECRET_ACCESS_KEY"]
    {
        ensure!(bucket.contains(expected), "the bucket line lacks {expected:?}: {bucket}");
    }
    diagnosis.line("SKIP", "fsck")?;
    Ok(())
}

#[test]
fn an_etcd_nobody_answers_at_fails_the_etcd_check_and_skips_what_needs_it() -> Result<()> {
    // Needs no shared server: the bucket is a directory, etcd a closed port.
    let bucket = tempfile::Builder::new().prefix("floe-diagnose-bucket-").tempdir()?;
    let port = closed_port()?;
    let mut command = Command::new(floe_binary()?);
    command.args(["diagnose", "--metadata", &format!("etcd://127.0.0.1:{port}/floe"), "--virtual-cluster", "nowhere"]).args([
        "--object-store",
        &format!("file://{}", bucket.path().display()),
        "--log",
        "warn",
    ]);
    let diagnosis = run(command)?;
    ensure!(diagnosis.code == Some(1), "exit {:?}:\n{}", diagnosis.code, diagnosis.stdout);
    let etcd = diagnosis.line("FAIL", &format!("etcd 127.0.0.1:{port}"))?;
    for expected in ["did not answer: connection refused", "--metadata (FLOE_METADATA)"] {
        ensure!(etcd.contains(expected), "the etcd line lacks {expected:?}: {etcd}");
    }
    ensure!(diagnosis.failures().len() == 1, "only etcd may fail:\n{}", diagnosis.stdout);
    diagnosis.line("PASS", "bucket")?;
    for skipped in ["journal", "agents", "fsck"] {
        diagnosis.line("SKIP", skipped)?;
    }
    Ok(())
}

#[test]
fn an_agent_whose_clock_is_five_minutes_ahead_fails_the_clock_check() -> Result<()> {
    let shared = shared()?;
    let options = AgentOptions { environment: skewed_environment("+5m")?, ..AgentOptions::default() };
    let skewed = Agent::start_with(&shared.infrastructure, "diagnose-skewed", AGENT_FLAGS, options)?;
    let diagnosis = diagnose(&shared.infrastructure, "diagnose-skewed", &[], &[])?;
    ensure!(diagnosis.code == Some(1), "exit {:?}:\n{}", diagnosis.code, diagnosis.stdout);
    let clock = diagnosis.line("FAIL", &format!("agent {} clock", skewed.node_id))?;
    for expected in ["its wall clock is 5m 0s ahead of this host's", "more than --max-clock-offset 30s", "NTP"] {
        ensure!(clock.contains(expected), "the clock line lacks {expected:?}: {clock}");
    }
    ensure!(diagnosis.failures().len() == 1, "only the clock may fail:\n{}", diagnosis.stdout);
    // A looser limit lets the same clock pass: the flag is what decides.
    let loose = diagnose(&shared.infrastructure, "diagnose-skewed", &[], &["--max-clock-offset", "10m"])?;
    ensure!(loose.code == Some(0), "exit {:?} with --max-clock-offset 10m:\n{}", loose.code, loose.stdout);
    Ok(())
}

#[test]
fn an_agent_built_for_an_older_metadata_version_fails_the_version_check() -> Result<()> {
    let shared = shared()?;
    let infrastructure = &shared.infrastructure;
    let current = Agent::start(infrastructure, "diagnose-older", AGENT_FLAGS)?;
    // The registry record an agent of the previous metadata version keeps alive on its lease (its
    // process is not run here, so it is unreachable too).
    let older = AgentRecord {
        node_id: 90,
        host: "127.0.0.1".into(),
        port: i32::from(closed_port()?),
        roles: vec!["produce".into(), "fetch".into(), "jobs".into()],
        version: Some("0.0.9".into()),
        supported_metadata_version: Some(SUPPORTED_METADATA_VERSION - 1),
        http: Some(format!("127.0.0.1:{}", closed_port()?)),
        ..AgentRecord::default()
    };
    let granted = infrastructure.etcdctl(&["lease", "grant", "60"])?;
    let lease = granted.split_whitespace().nth(1).context("etcdctl printed no lease id")?.to_string();
    let key = KeyLayout::new("/floe", "diagnose-older").agent_key(older.node_id);
    infrastructure.etcdctl(&["put", &format!("--lease={lease}"), &key, &serde_json::to_string(&older)?])?;
    let diagnosis = diagnose(infrastructure, "diagnose-older", &[], &[]);
    infrastructure.etcdctl(&["lease", "revoke", &lease])?;
    let diagnosis = diagnosis?;
    ensure!(diagnosis.code == Some(1), "exit {:?}:\n{}", diagnosis.code, diagnosis.stdout);
    let version = diagnosis.line("FAIL", "agent 90 metadata version")?;
    let expected = format!(
        "floe 0.0.9 implements metadata version {}, older than the cluster's journal (version {SUPPORTED_METADATA_VERSION})",
        SUPPORTED_METADATA_VERSION - 1
    );
    for expected in [expected.as_str(), "upgrade it"] {
        ensure!(version.contains(expected), "the version line lacks {expected:?}: {version}");
    }
    diagnosis.line("FAIL", "agent 90 reachable")?;
    ensure!(diagnosis.failures().len() == 2, "only the older agent may fail:\n{}", diagnosis.stdout);
    diagnosis.line("PASS", &format!("agent {} metadata version", current.node_id))?;
    Ok(())
}
