//! Cluster-mode infrastructure for the suites: a real etcd and a real S3-compatible server
//! (s3s-fs) started through `e2e/scripts/{etcd,s3}.sh` on free loopback ports, and `floe agent`
//! processes sharing one virtual cluster.

use crate::{floe_binary, repository_root};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BUCKET: &str = "floe-test";

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn script(name: &str, arguments: &[&str]) -> Result<()> {
    let path = repository_root().join("e2e/scripts").join(name);
    let output = Command::new("bash")
        .arg(&path)
        .args(arguments)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("failed to run {}", path.display()))?;
    if !output.status.success() {
        bail!("{name} {arguments:?} failed: {}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}

/// Whether a start failed on a port: the scripts' check before starting, or the server's own bind.
fn is_port_collision(message: &str) -> bool {
    message.contains("is already in use by another process") || message.to_ascii_lowercase().contains("address already in use")
}

/// A port found free can be taken by another process before our server binds it (another test
/// binary, a build tool): start again on fresh ports, twice at most. A half-started attempt is
/// stopped when it is dropped.
fn retry_on_port_collision<T>(mut start: impl FnMut() -> Result<T>) -> Result<T> {
    for _ in 0..2 {
        match start() {
            Err(error) if is_port_collision(&format!("{error:#}")) => {
                eprintln!("{error:#}; starting again on fresh ports");
            }
            outcome => return outcome,
        }
    }
    start()
}

/// etcd (one member, or a cluster of several) plus an S3-compatible server, stopped on drop.
pub struct Infrastructure {
    pub directory: tempfile::TempDir,
    pub etcd_port: u16,
    etcd_peer_port: u16,
    pub s3_port: u16,
    /// Set by [`Infrastructure::start_with_etcd_members`]: then etcd is this cluster, and the
    /// single-member helpers (`start_etcd`, `pause_etcd`, ...) do not apply.
    pub etcd_cluster: Option<crate::faults::EtcdCluster>,
}

impl Infrastructure {
    pub fn start() -> Result<Self> {
        retry_on_port_collision(|| {
            let infrastructure = Self::unstarted()?;
            infrastructure.start_etcd()?;
            infrastructure.start_s3()?;
            script("s3.sh", &["create-bucket", &infrastructure.s3_port.to_string(), BUCKET])?;
            Ok(infrastructure)
        })
    }

    /// Like [`Infrastructure::start`], with etcd as a cluster of `members` on loopback; agents and
    /// etcdctl are given every member's endpoint.
    pub fn start_with_etcd_members(members: usize) -> Result<Self> {
        retry_on_port_collision(|| {
            let mut infrastructure = Self::unstarted()?;
            infrastructure.etcd_cluster =
                Some(crate::faults::EtcdCluster::start(&infrastructure.directory.path().join("etcd-cluster"), members)?);
            infrastructure.start_s3()?;
            script("s3.sh", &["create-bucket", &infrastructure.s3_port.to_string(), BUCKET])?;
            Ok(infrastructure)
        })
    }

    fn unstarted() -> Result<Self> {
        let directory = tempfile::Builder::new().prefix("floe-cluster-").tempdir()?;
        Ok(Self { directory, etcd_port: free_port()?, etcd_peer_port: free_port()?, s3_port: free_port()?, etcd_cluster: None })
    }

    fn path(&self, name: &str) -> String {
        self.directory.path().join(name).display().to_string()
    }

    pub fn start_etcd(&self) -> Result<()> {
        script("etcd.sh", &["start", &self.path("etcd"), &self.etcd_port.to_string(), &self.etcd_peer_port.to_string()])
    }

    pub fn stop_etcd(&self) -> Result<()> {
        script("etcd.sh", &["stop", &self.path("etcd")])
    }

    /// SIGSTOP etcd: connections stay open but nothing is answered (a hung etcd, not a dead one).
    pub fn pause_etcd(&self) -> Result<()> {
        self.signal_etcd("-STOP")
    }

    pub fn resume_etcd(&self) -> Result<()> {
        self.signal_etcd("-CONT")
    }

    fn signal_etcd(&self, signal: &str) -> Result<()> {
        let pid_file = self.directory.path().join("etcd/etcd.pid");
        let pid = std::fs::read_to_string(&pid_file).with_context(|| format!("failed to read {}", pid_file.display()))?;
        let status = Command::new("kill").arg(signal).arg(pid.trim()).status()?;
        if !status.success() {
            bail!("kill {signal} etcd ({}) failed", pid.trim());
        }
        Ok(())
    }

    pub fn start_s3(&self) -> Result<()> {
        script("s3.sh", &["start", &self.path("s3"), &self.s3_port.to_string()])
    }

    pub fn stop_s3(&self) -> Result<()> {
        script("s3.sh", &["stop", &self.path("s3")])
    }

    /// `host:port` of etcd; every member's, comma-separated, for a cluster.
    pub fn etcd_endpoint(&self) -> String {
        match &self.etcd_cluster {
            Some(cluster) => cluster.endpoints().join(","),
            None => format!("127.0.0.1:{}", self.etcd_port),
        }
    }

    pub fn metadata_url(&self) -> String {
        format!("etcd://{}/floe", self.etcd_endpoint())
    }

    /// `AWS_ENDPOINT` of the S3 server.
    pub fn s3_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    pub fn s3_environment(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.s3_endpoint()),
            ("AWS_ACCESS_KEY_ID", "floe".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "floe-secret".to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ALLOW_HTTP", "true".to_string()),
        ]
    }

    /// Runs `etcdctl` against the test etcd and returns its stdout.
    pub fn etcdctl(&self, arguments: &[&str]) -> Result<String> {
        let output = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.etcd_endpoint()))
            .args(arguments)
            .output()?;
        if !output.status.success() {
            bail!("etcdctl {arguments:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(String::from_utf8_lossy(&output.stdout).to_string())
    }

    /// Number of keys under `prefix`.
    pub fn etcd_key_count(&self, prefix: &str) -> Result<usize> {
        let output = self.etcdctl(&["get", "--prefix", "--keys-only", "--write-out=json", prefix])?;
        Ok(output.split("\"key\"").count().saturating_sub(1))
    }

    /// etcd's current revision.
    pub fn etcd_revision(&self) -> Result<u64> {
        self.etcd_status_number("revision")
    }

    /// Whether etcd has compacted its history past `revision` (reading at it is refused).
    pub fn etcd_compacted_past(&self, revision: u64) -> Result<bool> {
        match self.etcdctl(&["get", "--prefix", "--keys-only", "--limit=1", &format!("--rev={revision}"), "/"]) {
            Ok(_) => Ok(false),
            Err(error) if error.to_string().contains("compacted") => Ok(true),
            Err(error) => Err(error),
        }
    }

    /// etcd's database size in bytes.
    pub fn etcd_db_size(&self) -> Result<u64> {
        self.etcd_status_number("dbSize")
    }

    /// A number of `etcdctl endpoint status` (JSON) by field name.
    fn etcd_status_number(&self, field: &str) -> Result<u64> {
        let output = self.etcdctl(&["endpoint", "status", "--write-out=json"])?;
        let label = format!("\"{field}\":");
        let start = output.find(&label).with_context(|| format!("no {field} in etcdctl output"))? + label.len();
        let digits: String = output[start..].chars().take_while(|character| character.is_ascii_digit()).collect();
        Ok(digits.parse()?)
    }

    /// Objects under the bucket's virtual-cluster prefix, as file paths of the s3s-fs root.
    pub fn bucket_directory(&self, virtual_cluster: &str) -> PathBuf {
        self.directory.path().join("s3/root").join(BUCKET).join(virtual_cluster)
    }
}

impl Drop for Infrastructure {
    fn drop(&mut self) {
        let _ = self.stop_etcd();
        let _ = self.stop_s3();
    }
}

/// How one agent reaches its infrastructure when that differs from the defaults: through a fault
/// proxy, on another bucket, with a skewed clock.
#[derive(Debug, Clone, Default)]
pub struct AgentOptions {
    /// `--metadata` (default: the infrastructure's etcd, every member).
    pub metadata_url: Option<String>,
    /// `--object-store` (default: `s3://<BUCKET>/<virtual cluster>`).
    pub object_store: Option<String>,
    /// `AWS_ENDPOINT` (default: the infrastructure's S3 server).
    pub s3_endpoint: Option<String>,
    /// More environment for the process (for example libfaketime's).
    pub environment: Vec<(&'static str, String)>,
    /// Append the agent's log (stderr) to this file instead of the test's stderr.
    pub log_file: Option<PathBuf>,
    /// A command that runs the agent, e.g. `["prlimit", "--as=8589934592", "--"]` for an
    /// address-space limit (the process id is then the launcher's, which `exec`s the agent).
    pub launcher: Vec<String>,
}

/// One `floe agent` process.
pub struct Agent {
    child: Option<Child>,
    pub bootstrap: String,
    pub http: String,
    pub node_id: i32,
    arguments: Vec<String>,
    environment: Vec<(&'static str, String)>,
    log_file: Option<PathBuf>,
    launcher: Vec<String>,
}

impl Agent {
    pub fn start(infrastructure: &Infrastructure, virtual_cluster: &str, extra: &[&str]) -> Result<Self> {
        Self::start_with(infrastructure, virtual_cluster, extra, AgentOptions::default())
    }

    /// Starts an agent whose metadata, bucket, S3 endpoint or environment differ from the defaults.
    pub fn start_with(infrastructure: &Infrastructure, virtual_cluster: &str, extra: &[&str], options: AgentOptions) -> Result<Self> {
        let arguments = Self::arguments(infrastructure, virtual_cluster, extra, &options);
        let mut environment = infrastructure.s3_environment();
        if let Some(endpoint) = options.s3_endpoint {
            environment.retain(|(key, _)| *key != "AWS_ENDPOINT");
            environment.push(("AWS_ENDPOINT", endpoint));
        }
        environment.extend(options.environment);
        let mut agent = Self {
            child: None,
            bootstrap: String::new(),
            http: String::new(),
            node_id: 0,
            arguments,
            environment,
            log_file: options.log_file,
            launcher: options.launcher,
        };
        agent.launch()?;
        Ok(agent)
    }

    fn arguments(infrastructure: &Infrastructure, virtual_cluster: &str, extra: &[&str], options: &AgentOptions) -> Vec<String> {
        let mut arguments: Vec<String> = [
            "agent",
            "--metadata",
            &options.metadata_url.clone().unwrap_or_else(|| infrastructure.metadata_url()),
            "--virtual-cluster",
            virtual_cluster,
            "--object-store",
            &options.object_store.clone().unwrap_or_else(|| format!("s3://{BUCKET}/{virtual_cluster}")),
            "--kafka-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--group-initial-rebalance-delay",
            "0s",
            "--log",
            &std::env::var("FLOE_E2E_LOG").unwrap_or_else(|_| "warn".to_string()),
        ]
        .iter()
        .map(|argument| argument.to_string())
        .collect();
        // A fixed --kafka-listen among the extra flags (an agent behind a proxy that must keep its
        // port across restarts) replaces the ephemeral default.
        if extra.contains(&"--kafka-listen") {
            let position = arguments.iter().position(|argument| argument == "--kafka-listen").expect("set above");
            arguments.drain(position..position + 2);
        }
        arguments.extend(extra.iter().map(|argument| argument.to_string()));
        arguments
    }

    /// Runs an agent that is expected not to start: waits for it to exit (killing it after
    /// `timeout`) and returns its exit status and its stderr.
    pub fn start_expecting_exit(
        infrastructure: &Infrastructure,
        virtual_cluster: &str,
        extra: &[&str],
        timeout: Duration,
    ) -> Result<(std::process::ExitStatus, String)> {
        let mut child = Command::new(floe_binary()?)
            .args(Self::arguments(infrastructure, virtual_cluster, extra, &AgentOptions::default()))
            .envs(infrastructure.s3_environment())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("failed to start floe agent")?;
        let deadline = std::time::Instant::now() + timeout;
        while child.try_wait()?.is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let output = child.wait_with_output()?;
                bail!("the agent did not exit within {timeout:?}; stderr: {}", String::from_utf8_lossy(&output.stderr));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child.wait_with_output()?;
        Ok((output.status, String::from_utf8_lossy(&output.stderr).to_string()))
    }

    fn launch(&mut self) -> Result<()> {
        let stderr = crate::log_destination(self.log_file.as_deref())?;
        let mut command = match self.launcher.split_first() {
            Some((program, arguments)) => {
                let mut command = Command::new(program);
                command.args(arguments).arg(floe_binary()?);
                command
            }
            None => Command::new(floe_binary()?),
        };
        let mut child = command
            .args(&self.arguments)
            .envs(self.environment.iter().map(|(key, value)| (*key, value.as_str())))
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .context("failed to start floe agent")?;
        let banner = match crate::read_banner(&mut child, Duration::from_secs(60)) {
            Ok(banner) => banner,
            Err(error) => {
                // The agent's own last words say why (a panic, a refused flag, a port in use).
                let _ = child.kill();
                let status = child.wait().map(|status| status.to_string()).unwrap_or_default();
                let tail = self.log_file.as_deref().map(crate::last_lines_of).unwrap_or_default();
                bail!("{error} ({status}); the end of its log:\n{tail}");
            }
        };
        self.bootstrap = banner.bootstrap;
        self.http = banner.http;
        self.node_id = banner.node_id.unwrap_or_default();
        self.child = Some(child);
        Ok(())
    }

    pub fn kill_hard(&mut self) -> Result<()> {
        crate::kill_child(self.child.take())
    }

    /// SIGSTOP: the process keeps its sockets but does nothing (a long GC pause, a frozen VM).
    pub fn pause(&self) -> Result<()> {
        self.signal("-STOP")
    }

    pub fn resume(&self) -> Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> Result<()> {
        let Some(child) = &self.child else { bail!("the agent is not running") };
        let status = Command::new("kill").arg(signal).arg(child.id().to_string()).status()?;
        if !status.success() {
            bail!("kill {signal} failed");
        }
        Ok(())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM: the agent drains (marks itself draining, keeps serving for --drain-grace, answers
    /// what it already read, flushes, leaves the registry) and exits.
    pub fn terminate(&self) -> Result<()> {
        self.signal("-TERM")
    }

    /// Whether the process has exited (its status, reaped) or is still running (`None`).
    pub fn exit_status(&mut self) -> Result<Option<std::process::ExitStatus>> {
        let Some(child) = &mut self.child else { bail!("the agent was already reaped") };
        let status = child.try_wait()?;
        if status.is_some() {
            self.child = None;
        }
        Ok(status)
    }

    /// Waits (polling) until the process exits and returns its status; fails after `timeout`.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status()? {
                return Ok(status);
            }
            if std::time::Instant::now() > deadline {
                bail!("the agent (node {}) did not exit within {timeout:?}", self.node_id);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the agent again with the same flags (new ports; node id may be reused).
    pub fn restart(&mut self) -> Result<()> {
        self.kill_hard()?;
        self.launch()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.kill_hard();
    }
}
