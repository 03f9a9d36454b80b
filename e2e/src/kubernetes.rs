//! A real Kubernetes control plane for the operator suites: etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler, KWOK and metrics-server started by `e2e/k8s/up.sh` on
//! loopback, plus the chart installed with the real helm, plus a real etcd and S3-compatible
//! server for the VirtualClusters (`cluster::Infrastructure`).
//!
//! One control plane serves every test of a test binary (it takes tens of seconds to start); each
//! test works in its own namespace with its own operator scoped to it. The processes are stopped
//! by watchdogs when the test process exits, since a `static` is never dropped.

use crate::cluster::Infrastructure;
use crate::repository_root;
use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Namespace the chart is installed into.
pub const RELEASE_NAMESPACE: &str = "floe-system";
pub const RELEASE: &str = "floe";

pub struct ControlPlane {
    pub state: PathBuf,
    pub kubeconfig: PathBuf,
    /// Directory holding kubectl, helm and the other built tools.
    pub bin: PathBuf,
    pub infrastructure: Infrastructure,
    /// What `helm install` printed.
    pub helm_install_output: String,
    /// Seconds `up.sh` took (includes the cached build check).
    pub startup_seconds: f64,
}

static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();

/// The control plane of this test process, started on first use.
pub fn shared() -> Result<&'static ControlPlane> {
    SHARED.get_or_init(|| ControlPlane::start().map_err(|error| format!("{error:#}"))).as_ref().map_err(|error| anyhow::anyhow!("{error}"))
}

fn read_env_file(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("failed to read {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("export ").or(Some(line.trim())))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim().to_string(), value.trim().trim_matches('"').to_string()))
        .collect())
}

impl ControlPlane {
    fn start() -> Result<Self> {
        let mut plane = Self::without_chart()?;
        plane.helm_install_output = plane.helm(&[
            "install",
            RELEASE,
            &repository_root().join("charts/floe").display().to_string(),
            "--namespace",
            RELEASE_NAMESPACE,
            "--create-namespace",
            // The external-metrics APIService needs the operator to serve it (autoscaling issue);
            // registered without a server it would only make API discovery report errors.
            "--set",
            "metricsApi.enabled=false",
            "--wait",
            "--timeout",
            "120s",
        ])?;
        // The chart's operator pod never runs under KWOK, so the CRDs it would apply at start are
        // applied here by the same code (`floe-operator crds --apply`, which waits until they are
        // Established).
        plane.install_crds()?;
        Ok(plane)
    }

    /// `floe-operator crds --apply` against this control plane.
    pub fn install_crds(&self) -> Result<()> {
        let output = Command::new(operator_binary()?)
            .args(["crds", "--apply"])
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::null())
            .output()
            .context("failed to run floe-operator crds --apply")?;
        if !output.status.success() {
            bail!("floe-operator crds --apply failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(())
    }

    /// A control plane of its own (not the process's shared one), with etcd and an S3 server for
    /// VirtualClusters but without the chart: for tests that install the chart themselves.
    pub fn without_chart() -> Result<Self> {
        let state = tempfile::Builder::new().prefix("floe-k8s-").tempdir()?.keep();
        let started = Instant::now();
        let up = repository_root().join("e2e/k8s/up.sh");
        let output = Command::new("bash")
            .arg(&up)
            .arg(&state)
            .env("FLOE_K8S_WATCH_PID", std::process::id().to_string())
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("failed to run {}", up.display()))?;
        if !output.status.success() {
            bail!("{} failed:\n{}\n{}", up.display(), String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        }
        let startup_seconds = started.elapsed().as_secs_f64();
        let env = read_env_file(&state.join("env"))?;
        let bin = PathBuf::from(env.get("FLOE_K8S_BIN").context("up.sh wrote no FLOE_K8S_BIN")?);
        let kubeconfig = state.join("kubeconfig");
        let infrastructure = Infrastructure::start()?;
        // etcd and the S3 server outlive every test of this process; stop them when it exits.
        watch_and_run(
            &format!(
                "{etcd} stop {dir}/etcd; {s3} stop {dir}/s3",
                etcd = repository_root().join("e2e/scripts/etcd.sh").display(),
                s3 = repository_root().join("e2e/scripts/s3.sh").display(),
                dir = infrastructure.directory.path().display()
            ),
            &state,
        )?;
        Ok(Self { state, kubeconfig, bin, infrastructure, helm_install_output: String::new(), startup_seconds })
    }

    pub async fn client(&self) -> Result<Client> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        Ok(Client::try_from(config)?)
    }

    fn tool(&self, tool: &str, arguments: &[&str]) -> Result<String> {
        let output = Command::new(self.bin.join(tool))
            .args(arguments)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("failed to run {tool}"))?;
        if !output.status.success() {
            bail!(
                "{tool} {} failed: {}{}",
                arguments.join(" "),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).to_string())
    }

    pub fn kubectl(&self, arguments: &[&str]) -> Result<String> {
        self.tool("kubectl", arguments)
    }

    pub fn helm(&self, arguments: &[&str]) -> Result<String> {
        self.tool("helm", arguments)
    }

    /// Creates a fresh namespace for one test.
    pub async fn namespace(&self, client: &Client, name: &str) -> Result<String> {
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let namespace: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))?;
        namespaces.create(&PostParams::default(), &namespace).await.with_context(|| format!("failed to create namespace {name}"))?;
        Ok(name.to_string())
    }

    pub async fn delete_namespace(&self, client: &Client, name: &str) {
        let _ = Api::<Namespace>::all(client.clone()).delete(name, &DeleteParams::default()).await;
    }

    /// Starts `floe-operator run` as a process with the admin kubeconfig, scoped to `namespace`.
    pub fn start_operator(&self, namespace: &str) -> Result<OperatorProcess> {
        OperatorProcess::start(&self.kubeconfig, namespace, &[])
    }

    /// Like [`Self::start_operator`], with extra flags (e.g. leader election).
    pub fn start_operator_with(&self, namespace: &str, extra: &[&str]) -> Result<OperatorProcess> {
        OperatorProcess::start(&self.kubeconfig, namespace, extra)
    }
}

/// Runs `command` in the background once this test process exits (the shell polls our pid).
fn watch_and_run(command: &str, state: &Path) -> Result<()> {
    let script = format!("while kill -0 {pid} 2>/dev/null; do sleep 1; done; {command}", pid = std::process::id());
    Command::new("bash")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(state.join("test-watchdog.log"))?)
        .spawn()
        .context("failed to start the cleanup watchdog")?;
    Ok(())
}

/// The `floe-operator` binary under test: `$FLOE_OPERATOR_BIN`, else the workspace's debug build.
pub fn operator_binary() -> Result<PathBuf> {
    if let Ok(path) = std::env::var("FLOE_OPERATOR_BIN") {
        return Ok(PathBuf::from(path));
    }
    let path = repository_root().join("target/debug/floe-operator");
    if !path.exists() {
        bail!("{} is missing; run `cargo build -p floe-operator` first", path.display());
    }
    Ok(path)
}

/// One operator process; killed on drop.
pub struct OperatorProcess {
    child: Option<Child>,
    kubeconfig: PathBuf,
    namespace: String,
    extra: Vec<String>,
    pub log: PathBuf,
}

impl OperatorProcess {
    fn start(kubeconfig: &Path, namespace: &str, extra: &[&str]) -> Result<Self> {
        let log = std::env::temp_dir().join(format!("floe-operator-{namespace}-{}-{}.log", std::process::id(), ulid::Ulid::new()));
        let extra = extra.iter().map(|argument| argument.to_string()).collect();
        let mut process = Self { child: None, kubeconfig: kubeconfig.to_path_buf(), namespace: namespace.to_string(), extra, log };
        process.restart()?;
        Ok(process)
    }

    /// SIGKILL: no cleanup, no lease release.
    pub fn kill_hard(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    pub fn restart(&mut self) -> Result<()> {
        self.kill_hard()?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = Command::new(operator_binary()?)
            .args(["run", "--http-listen", "127.0.0.1:0", "--watch-namespace", &self.namespace])
            .args(&self.extra)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("FLOE_LOG", "info,kube=warn")
            .env("FLOE_AGENT_IMAGE", "registry.invalid/floe:test")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("failed to start floe-operator")?;
        self.child = Some(child);
        Ok(())
    }

    /// Sends SIGTERM and waits for the exit (a graceful stop).
    pub fn terminate(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            Command::new("kill").args(["-TERM", &child.id().to_string()]).status()?;
            child.wait()?;
        }
        Ok(())
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.kill_hard();
    }
}

/// Polls `check` until it returns `Some`, or fails after `timeout` with the last reason.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = String::from("condition not met");
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last_error = format!("{error:#}"),
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}: {last_error}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
