//! Helpers shared by the end-to-end suites: start the real `floe` binary as a child process on
//! loopback ports, locate the external clients that `e2e/scripts/install-deps.sh` installs, and
//! the deterministic record format every client driver produces and `verifiable` checks.

pub mod batches;
pub mod cgroup;
pub mod client_load;
pub mod cluster;
pub mod external_metrics;
pub mod faults;
pub mod history;
pub mod kafka;
pub mod kubernetes;
pub mod matrix;
pub mod pki;
pub mod pod_agents;
pub mod proxy;
pub mod secret_volumes;
pub mod verifiable;
pub mod wire;

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Root of the repository (the workspace).
pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("e2e sits in the workspace").to_path_buf()
}

/// The `floe` binary under test: `$FLOE_BIN`, else the workspace's debug build (the Makefile
/// builds it before the suites run).
pub fn floe_binary() -> Result<PathBuf> {
    if let Ok(path) = std::env::var("FLOE_BIN") {
        return Ok(PathBuf::from(path));
    }
    let path = target_directory().join("debug").join("floe");
    if !path.exists() {
        bail!("{} does not exist; run `cargo build --bin floe` (make test does) or set FLOE_BIN", path.display());
    }
    Ok(path)
}

/// A playground process with its data directory, restartable on the same data.
pub struct Playground {
    child: Option<Child>,
    pub bootstrap: String,
    pub http: String,
    pub data_dir: tempfile::TempDir,
    extra_args: Vec<String>,
    /// Where the process's log (stderr) goes, appended across restarts; inherited when `None`.
    log_file: Option<PathBuf>,
    /// A cgroup's `cgroup.procs` the process joins before it runs floe (see [`crate::cgroup`]).
    cgroup_procs: Option<PathBuf>,
}

impl Playground {
    pub fn start(extra_args: &[&str]) -> Result<Self> {
        Self::start_with_log(extra_args, None)
    }

    /// Like [`Playground::start`], with the process's log appended to `log_file` (for a test
    /// that reads what the agent logged; `--log` in `extra_args` sets the filter).
    pub fn start_with_log(extra_args: &[&str], log_file: Option<&Path>) -> Result<Self> {
        Self::start_with(extra_args, log_file, None)
    }

    /// Like [`Playground::start_with_log`], in the cgroup whose `cgroup.procs` is given: the
    /// process joins it before it execs floe, so all it allocates counts against the cgroup's limit.
    pub fn start_in_cgroup(extra_args: &[&str], log_file: Option<&Path>, cgroup_procs: &Path) -> Result<Self> {
        Self::start_with(extra_args, log_file, Some(cgroup_procs))
    }

    fn start_with(extra_args: &[&str], log_file: Option<&Path>, cgroup_procs: Option<&Path>) -> Result<Self> {
        let data_dir = tempfile::Builder::new().prefix("floe-e2e-").tempdir()?;
        let mut playground = Self {
            child: None,
            bootstrap: String::new(),
            http: String::new(),
            data_dir,
            extra_args: extra_args.iter().map(|argument| argument.to_string()).collect(),
            log_file: log_file.map(Path::to_path_buf),
            cgroup_procs: cgroup_procs.map(Path::to_path_buf),
        };
        playground.launch()?;
        Ok(playground)
    }

    fn launch(&mut self) -> Result<()> {
        let stderr = log_destination(self.log_file.as_deref())?;
        let mut command = match &self.cgroup_procs {
            Some(procs) => {
                let mut shell = Command::new("sh");
                shell.args(["-c", r#"echo $$ > "$0" && exec "$@""#]).arg(procs).arg(floe_binary()?);
                shell
            }
            None => Command::new(floe_binary()?),
        };
        let mut child = command
            .arg("playground")
            .arg("--data-dir")
            .arg(self.data_dir.path())
            // A fixed --kafka-listen in the extra arguments (a test that restarts the process on
            // the same port) replaces the ephemeral default.
            .args(if self.extra_args.iter().any(|argument| argument == "--kafka-listen") {
                &[][..]
            } else {
                &["--kafka-listen", "127.0.0.1:0"][..]
            })
            .args(["--http-listen", "127.0.0.1:0", "--group-initial-rebalance-delay", "0s"])
            // A --log in the extra arguments (a test that reads the log) replaces the default.
            .args(if self.extra_args.iter().any(|argument| argument == "--log") {
                Vec::new()
            } else {
                vec!["--log".to_string(), std::env::var("FLOE_E2E_LOG").unwrap_or_else(|_| "warn".into())]
            })
            .args(&self.extra_args)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .context("failed to start floe playground")?;
        let banner = read_banner(&mut child, Duration::from_secs(30))?;
        self.bootstrap = banner.bootstrap;
        self.http = banner.http;
        self.child = Some(child);
        Ok(())
    }

    /// Stops the process with SIGKILL: no flush, no goodbye.
    pub fn kill_hard(&mut self) -> Result<()> {
        kill_child(self.child.take())
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops with SIGTERM and waits for the graceful exit.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            Command::new("kill").arg("-TERM").arg(child.id().to_string()).status()?;
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(status) = child.try_wait()? {
                    if !status.success() {
                        bail!("the playground exited with {status} after SIGTERM");
                    }
                    return Ok(());
                }
                if Instant::now() > deadline {
                    child.kill()?;
                    bail!("the playground did not exit within 30 s of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.launch()
    }

    pub fn restart_after_kill(&mut self) -> Result<()> {
        self.kill_hard()?;
        self.launch()
    }

    /// Segment objects currently in the playground's file bucket (`clusters/<id>/segments/`).
    pub fn segment_objects(&self) -> Result<usize> {
        let clusters = self.data_dir.path().join("bucket").join("clusters");
        if !clusters.exists() {
            return Ok(0);
        }
        let mut count = 0;
        for cluster in std::fs::read_dir(clusters)?.filter_map(|entry| entry.ok()) {
            let segments = cluster.path().join("segments");
            if segments.exists() {
                count += std::fs::read_dir(segments)?
                    .filter_map(|entry| entry.ok())
                    .filter(|entry| entry.file_name().to_string_lossy().ends_with(".seg"))
                    .count();
            }
        }
        Ok(count)
    }
}

/// Polls `check` every 100 ms until it holds; fails with `what`, the timeout and the last check's
/// outcome (an error or `false`) after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let outcome = check();
        if let Ok(true) = outcome {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting until {what} (last check: {outcome:?})");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Where a child process's stderr goes: appended to `log_file`, or this process's stderr.
pub(crate) fn log_destination(log_file: Option<&Path>) -> Result<Stdio> {
    Ok(match log_file {
        Some(path) => Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("failed to open {}", path.display()))?,
        ),
        None => Stdio::inherit(),
    })
}

/// The last 40 lines of a log file, for an error message; empty when it cannot be read.
pub fn last_lines_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// SIGKILLs a child process (if any) and reaps it.
pub fn kill_child(child: Option<Child>) -> Result<()> {
    if let Some(mut child) = child {
        child.kill()?;
        child.wait()?;
    }
    Ok(())
}

/// What `floe playground` and `floe agent` print once they serve.
pub struct Banner {
    pub bootstrap: String,
    pub http: String,
    pub node_id: Option<i32>,
}

/// Reads the child's stdout until its ready banner (bootstrap, HTTP and node id lines), then keeps
/// draining it on a thread so the child never blocks on a full pipe.
pub fn read_banner(child: &mut Child, timeout: Duration) -> Result<Banner> {
    let stdout = child.stdout.take().context("the child's stdout is not piped")?;
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + timeout;
    let (mut bootstrap, mut http, mut node_id) = (None, None, None);
    while bootstrap.is_none() || http.is_none() || node_id.is_none() {
        if Instant::now() > deadline {
            bail!("floe did not print its addresses within {timeout:?}");
        }
        let Some(line) = lines.next() else { bail!("floe exited before it was ready") };
        let line = line?;
        let line = line.trim();
        if let Some(address) = line.strip_prefix("Kafka bootstrap:") {
            bootstrap = Some(address.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("HTTP:") {
            http = Some(
                rest.split_whitespace().next().unwrap_or_default().trim_start_matches("http://").trim_end_matches("/metrics").to_string(),
            );
        } else if let Some(id) = line.strip_prefix("Node id:") {
            node_id = Some(id.trim().parse::<i32>()?);
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Ok(Banner { bootstrap: bootstrap.expect("set above"), http: http.expect("set above"), node_id })
}

impl Drop for Playground {
    fn drop(&mut self) {
        let _ = self.kill_hard();
    }
}

/// `$FLOE_CACHE`, else `~/.cache/floe`: where install-deps.sh puts downloads and built clients.
pub fn cache_directory() -> PathBuf {
    std::env::var("FLOE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/floe"))
}

/// How a command run by [`run_with_timeout`] ended.
pub struct Finished {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Waits for `child` to exit; kills it and fails naming `description` if it is still running after
/// `timeout`. The caller's pipe readers are not joined on a timeout: a grandchild may still hold
/// the pipes open.
pub fn wait_with_timeout(child: &mut std::process::Child, timeout: Duration, description: &str) -> Result<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            child.kill()?;
            child.wait()?;
            bail!("{description} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a command to completion (stdout and stderr captured; stdin as the caller set it), killing
/// it if it is still running after `timeout`.
pub fn run_with_timeout(mut command: Command, timeout: Duration) -> Result<Finished> {
    let description = format!("{command:?}");
    let mut child =
        command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().with_context(|| format!("failed to start {description}"))?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let out_thread = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let err_thread = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let status = wait_with_timeout(&mut child, timeout, &description)?;
    let stdout = out_thread.join().unwrap_or_default();
    let stderr = err_thread.join().unwrap_or_default();
    Ok(Finished { status, stdout, stderr })
}

/// The Java client's adapter, `java -cp <e2e java client> dev.floe.e2e.Main <mode> <arguments>`
/// (e2e/java), built by install-deps.sh into this checkout's e2e/java/target.
pub fn java_driver(arguments: &[&str]) -> Result<Command> {
    java_main("dev.floe.e2e.Main", arguments)
}

/// `java -cp <e2e java client> <class> <arguments>`: another program of the Java client
/// (`dev.floe.e2e.WordCount`, Kafka Streams' word count).
pub fn java_main(class: &str, arguments: &[&str]) -> Result<Command> {
    let java = repository_root().join("e2e/java/target");
    let jar = java.join("floe-e2e-java.jar");
    if !jar.exists() {
        bail!("{} is missing; run e2e/scripts/install-deps.sh (make test does)", jar.display());
    }
    let mut command = Command::new("java");
    command.arg("-cp").arg(format!("{}:{}/libs/*", jar.display(), java.display())).arg(class).args(arguments);
    Ok(command)
}

/// The kafka-python adapter (`e2e/python/driver.py <mode> ...`), run with the cached virtual
/// environment's interpreter.
pub fn python_driver(arguments: &[&str]) -> Result<Command> {
    let python = cache_directory().join("venv/bin/python");
    if !python.exists() {
        bail!("{} is missing; run e2e/scripts/install-deps.sh (make test does)", python.display());
    }
    let mut command = Command::new(python);
    command.arg(repository_root().join("e2e/python/driver.py")).args(arguments);
    Ok(command)
}

/// The target directory: `$CARGO_TARGET_DIR`, else the workspace's `target/`.
pub fn target_directory() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| repository_root().join("target"))
}

/// The franz-go driver (e2e/go), built by install-deps.sh into `<target>/e2e-bin` (per worktree,
/// so two checkouts with different driver sources never share one binary).
pub fn franz_go_driver(arguments: &[&str]) -> Result<Command> {
    let binary = target_directory().join("e2e-bin/floe-e2e-franz-go");
    if !binary.exists() {
        bail!("{} is missing; run e2e/scripts/install-deps.sh (make test does)", binary.display());
    }
    let mut command = Command::new(binary);
    command.args(arguments);
    Ok(command)
}

/// The kafkajs driver (e2e/node), whose packages install-deps.sh installs into e2e/node/node_modules.
pub fn kafkajs_driver(arguments: &[&str]) -> Result<Command> {
    let directory = repository_root().join("e2e/node");
    if !directory.join("node_modules/kafkajs").exists() {
        bail!("{}/node_modules is missing; run e2e/scripts/install-deps.sh (make test does)", directory.display());
    }
    let mut command = Command::new("node");
    command.arg(directory.join("driver.js")).args(arguments);
    Ok(command)
}

/// The Apache Kafka 4.1.1 jars (clients, tools, server) that `kafka-reference.sh jars` caches.
pub fn kafka_libs() -> Result<PathBuf> {
    let libs = cache_directory().join("kafka-4.1.1/libs");
    if !libs.join(".complete").exists() {
        bail!("{} is missing; run e2e/scripts/install-deps.sh (make test does)", libs.display());
    }
    Ok(libs)
}

/// One of Kafka's command-line tools, `java -cp '<libs>/*' <main class> <arguments>`, logging
/// warnings to stderr (kafka-topics is `org.apache.kafka.tools.TopicCommand`, kafka-configs is
/// `kafka.admin.ConfigCommand`, ...).
pub fn kafka_tool(main_class: &str, arguments: &[&str]) -> Result<Command> {
    kafka_tool_with_properties(main_class, &[], arguments)
}

/// [`kafka_tool`] with JVM system properties (`name=value`, passed as `-Dname=value`).
pub fn kafka_tool_with_properties(main_class: &str, properties: &[&str], arguments: &[&str]) -> Result<Command> {
    let libs = kafka_libs()?;
    let log_config = repository_root().join("e2e/scripts/kafka-tools-log4j2.properties");
    let mut command = Command::new("java");
    command.arg("-Xmx512m").arg(format!("-Dlog4j2.configurationFile={}", log_config.display()));
    command.args(properties.iter().map(|property| format!("-D{property}")));
    command.arg("-cp").arg(format!("{}/*", libs.display())).arg(main_class).args(arguments);
    Ok(command)
}

pub fn kcat_driver(arguments: &[&str]) -> Result<Command> {
    let mut command = Command::new("bash");
    command.arg(repository_root().join("e2e/scripts/kcat-roundtrip.sh")).args(arguments);
    Ok(command)
}

/// The record format all drivers share: key, value and headers are a function of the index (and,
/// for the headers, of the client's name). The verifiable-client checks (`verifiable`) take the
/// expected bytes of record `i` from here and nowhere else.
pub mod records {
    pub const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

    pub fn key(index: u64) -> Vec<u8> {
        format!("key-{index:08}").into_bytes()
    }

    pub fn value(index: u64) -> Vec<u8> {
        let mut value = format!("value-{index}-").into_bytes();
        value.extend((0..index % 300).map(|position| ((index * 31 + position) % 251) as u8));
        value
    }

    /// `h-index=<i>`, `h-client=<client>`, in that order.
    pub fn headers(index: u64, client: &str) -> Vec<(String, Vec<u8>)> {
        vec![("h-index".to_string(), index.to_string().into_bytes()), ("h-client".to_string(), client.as_bytes().to_vec())]
    }

    /// The headers of every record of one producer run, for a client that sets headers per run
    /// rather than per record (kcat's `-H`): `h-client=<client>`, `h-codec=<producer>`.
    pub fn run_headers(client: &str, producer: &str) -> Vec<(String, Vec<u8>)> {
        vec![("h-client".to_string(), client.as_bytes().to_vec()), ("h-codec".to_string(), producer.as_bytes().to_vec())]
    }

    pub fn index_of(key: &[u8]) -> Option<u64> {
        std::str::from_utf8(key).ok()?.strip_prefix("key-")?.parse().ok()
    }
}

/// A minimal HTTP/1.0 GET against the agent's HTTP port: (status code, body).
pub fn http_get(address: &str, path: &str) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split_whitespace().nth(1).and_then(|code| code.parse().ok()).context("malformed HTTP response")?;
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// The value of an unlabelled (or first matching) Prometheus sample.
pub fn metric_value(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find(|line| line.starts_with(name_and_labels))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}
