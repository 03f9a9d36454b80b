//! etcd as a cluster of members on loopback (Debian's etcd, one process per member), so a test can
//! kill the leader, take quorum away for a while and give it back.
//!
//! Each member is a child process of the test with its own data directory, client port and peer
//! port; every member is killed when the cluster is dropped. A stopped member restarts on its data
//! directory (etcd then ignores the `--initial-*` flags), keeping its identity in the cluster.

use anyhow::{bail, ensure, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// A multi-member etcd cluster on 127.0.0.1.
pub struct EtcdCluster {
    directory: PathBuf,
    members: Vec<Member>,
    initial_cluster: String,
}

impl EtcdCluster {
    /// Starts `count` members under `directory` and waits until the cluster answers.
    pub fn start(directory: &Path, count: usize) -> Result<Self> {
        ensure!(count >= 1, "an etcd cluster needs at least one member");
        let mut members = Vec::new();
        for index in 0..count {
            members.push(Member { name: format!("floe-{index}"), client_port: free_port()?, peer_port: free_port()?, child: None });
        }
        let initial_cluster =
            members.iter().map(|member| format!("{}=http://127.0.0.1:{}", member.name, member.peer_port)).collect::<Vec<_>>().join(",");
        let mut cluster = Self { directory: directory.to_path_buf(), members, initial_cluster };
        for index in 0..count {
            cluster.start_member(index)?;
        }
        cluster.wait_for_leader(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// `host:port` of every member's client URL, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|member| format!("127.0.0.1:{}", member.client_port)).collect()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn is_running(&self, index: usize) -> bool {
        self.members[index].child.is_some()
    }

    /// Starts (or restarts, on its data) member `index`; returns at once (quorum may be missing).
    pub fn start_member(&mut self, index: usize) -> Result<()> {
        let etcd = ["/usr/bin/etcd", "/usr/local/bin/etcd"]
            .into_iter()
            .find(|path| Path::new(path).exists())
            .context("etcd is not installed; run e2e/scripts/install-deps.sh")?;
        let member = &mut self.members[index];
        if member.child.is_some() {
            return Ok(());
        }
        let data = self.directory.join(&member.name);
        std::fs::create_dir_all(&data)?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.directory.join(format!("{}.log", member.name)))?;
        let child = Command::new(etcd)
            .args(["--name", &member.name, "--data-dir"])
            .arg(data.join("data"))
            .args(["--listen-client-urls", &format!("http://127.0.0.1:{}", member.client_port)])
            .args(["--advertise-client-urls", &format!("http://127.0.0.1:{}", member.client_port)])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{}", member.peer_port)])
            .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{}", member.peer_port)])
            .args(["--initial-cluster", &self.initial_cluster, "--initial-cluster-token", "floe-faults"])
            .args(["--initial-cluster-state", "new", "--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("failed to start an etcd member")?;
        member.child = Some(child);
        Ok(())
    }

    /// SIGKILLs member `index` (a crashed machine).
    pub fn kill_member(&mut self, index: usize) -> Result<()> {
        if let Some(mut child) = self.members[index].child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERMs member `index` and waits for it to exit.
    pub fn stop_member(&mut self, index: usize) -> Result<()> {
        if let Some(mut child) = self.members[index].child.take() {
            Command::new("kill").arg("-TERM").arg(child.id().to_string()).status()?;
            let deadline = Instant::now() + Duration::from_secs(15);
            while child.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    child.kill()?;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// The index of the member that currently leads, as the running members report it.
    pub fn leader(&self) -> Result<Option<usize>> {
        let running: Vec<String> =
            self.members.iter().filter(|member| member.child.is_some()).map(|member| format!("127.0.0.1:{}", member.client_port)).collect();
        if running.is_empty() {
            return Ok(None);
        }
        let output = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", running.join(",")))
            .args(["--dial-timeout=1s", "--command-timeout=2s", "endpoint", "status", "--write-out=json"])
            .output()?;
        // A member without quorum still answers status; one that is down makes etcdctl fail only
        // for itself (its entry is missing), so parse whatever came back.
        let Ok(statuses) = serde_json::from_slice::<serde_json::Value>(&output.stdout) else { return Ok(None) };
        for status in statuses.as_array().into_iter().flatten() {
            let member_id = status.pointer("/Status/header/member_id").and_then(serde_json::Value::as_u64);
            let leader = status.pointer("/Status/leader").and_then(serde_json::Value::as_u64);
            if let (Some(member_id), Some(leader)) = (member_id, leader) {
                if member_id == leader && leader != 0 {
                    let endpoint = status.get("Endpoint").and_then(serde_json::Value::as_str).unwrap_or_default();
                    return Ok(self.members.iter().position(|member| endpoint.ends_with(&format!(":{}", member.client_port))));
                }
            }
        }
        Ok(None)
    }

    /// Whether a write through member `index` commits within 2 s: false without a quorum.
    pub fn write_succeeds(&self, index: usize) -> Result<bool> {
        Ok(Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoints()[index]))
            .args(["--dial-timeout=1s", "--command-timeout=2s", "put", "/floe-faults/probe", "ok"])
            .output()?
            .status
            .success())
    }

    /// Waits until some member leads and a write through the cluster succeeds.
    pub fn wait_for_leader(&self, timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(leader) = self.leader()? {
                let healthy = self.write_succeeds(leader)?;
                if healthy {
                    return Ok(leader);
                }
            }
            if Instant::now() > deadline {
                bail!("the etcd cluster elected no working leader within {timeout:?} (logs in {})", self.directory.display());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for index in 0..self.members.len() {
            let _ = self.kill_member(index);
        }
    }
}
