//! A memory cgroup with a limit, made under the test process's own cgroup, for a server that must
//! run as it would in a container with `resources.limits.memory`. Removed when dropped (after the
//! processes in it have exited: the kernel removes only an empty cgroup).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct MemoryCgroup {
    directory: PathBuf,
}

impl MemoryCgroup {
    /// A new child of this process's memory cgroup, limited to `limit_bytes`. cgroup v1 (the
    /// `memory` hierarchy) or v2 (when this process's cgroup delegates the memory controller).
    pub fn create(name: &str, limit_bytes: u64) -> Result<Self> {
        let own = std::fs::read_to_string("/proc/self/cgroup").context("reading /proc/self/cgroup")?;
        let unique = format!("floe-e2e-{name}-{}", std::process::id());
        for line in own.lines() {
            let mut fields = line.splitn(3, ':');
            let (Some(hierarchy), Some(controllers), Some(path)) = (fields.next(), fields.next(), fields.next()) else { continue };
            let relative = path.trim_start_matches('/');
            if controllers.split(',').any(|controller| controller == "memory") {
                let parent = Path::new("/sys/fs/cgroup/memory").join(relative);
                return Self::make(parent.join(&unique), "memory.limit_in_bytes", limit_bytes);
            }
            if hierarchy == "0" && controllers.is_empty() {
                let parent = Path::new("/sys/fs/cgroup").join(relative);
                let delegated = std::fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap_or_default();
                if delegated.split_whitespace().any(|controller| controller == "memory") {
                    return Self::make(parent.join(&unique), "memory.max", limit_bytes);
                }
            }
        }
        bail!(
            "no memory cgroup to make a child of: this test needs cgroup v1's memory hierarchy at /sys/fs/cgroup/memory, or cgroup v2 with the memory controller delegated to this process's cgroup (/proc/self/cgroup: {own:?})"
        )
    }

    fn make(directory: PathBuf, limit_file: &str, limit_bytes: u64) -> Result<Self> {
        std::fs::create_dir(&directory).with_context(|| {
            format!("creating the cgroup {} (this test needs root and a writable cgroup file system)", directory.display())
        })?;
        let cgroup = Self { directory };
        let limit = cgroup.directory.join(limit_file);
        std::fs::write(&limit, limit_bytes.to_string()).with_context(|| format!("writing {}", limit.display()))?;
        Ok(cgroup)
    }

    /// The file a process writes its PID into to join the cgroup.
    pub fn procs(&self) -> PathBuf {
        self.directory.join("cgroup.procs")
    }

    /// The cgroup's directory in the cgroup file system.
    pub fn directory(&self) -> &Path {
        &self.directory
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // A process killed a moment ago may still be leaving the cgroup.
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::remove_dir(&self.directory).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
