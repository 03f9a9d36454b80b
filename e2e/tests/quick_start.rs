//! The README's Kubernetes quick starts, run verbatim against a real control plane (KWOK nodes), and
//! the chart's reinstall and upgrade paths (issue 16, done-when 6).
//!
//! The shell blocks marked `<!-- run verbatim by e2e/tests/quick_start.rs -->` in README.md are
//! read from the file and run by bash as they are, with the environment a user would have: the
//! AWS keys of the bucket, and for the second block the addresses of their etcd and S3 server.
//!
//! Under KWOK no container runs, so the chart's operator pod is Ready without doing anything and
//! the in-chart etcd never starts. The test stands in for both: it runs `floe-operator run` the
//! way the chart's Deployment does (`--install-crds`), with what the pod's cluster DNS would give
//! it emulated by a private `/etc/hosts` (a mount namespace: `unshare --mount`), where
//! `floe-etcd.floe-system.svc` and the example's `minio.storage.svc` lead to loopback forwarders in
//! front of the test's real etcd and S3 server. The chart's etcd speaks TLS and admits only its
//! client certificate: the stand-in etcd does the same, with a server certificate from the CA the
//! release then uses (the test puts that CA into the Secret the chart keeps its CA in, marked as
//! the release's, so the chart signs the client Secret with it instead of a CA of its own).

use anyhow::{bail, Context, Result};
use floe_e2e::kubernetes::{operator_binary, wait_for, ControlPlane};
use floe_e2e::pki::Pki;
use floe_e2e::repository_root;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const MARKER: &str = "<!-- run verbatim by e2e/tests/quick_start.rs -->";
/// The example VirtualCluster's bucket (charts/floe/examples/virtualcluster.yaml).
const EXAMPLE_BUCKET: &str = "floe-data";
/// Keys of the test's S3 server (e2e/scripts/s3.sh).
const ACCESS_KEY: &str = "floe";
const SECRET_KEY: &str = "floe-secret";
/// Loopback addresses standing in for the Services the examples name.
const CHART_ETCD: (&str, &str) = ("floe-etcd.floe-system.svc", "127.0.7.1:2379");
const EXAMPLE_S3: (&str, &str) = ("minio.storage.svc", "127.0.7.2:9000");

/// The `sh` blocks that follow the marker, in README order.
fn verbatim_blocks() -> Result<Vec<String>> {
    let readme = std::fs::read_to_string(repository_root().join("README.md"))?;
    let mut blocks = Vec::new();
    for (_, after) in readme.match_indices(MARKER).map(|(at, _)| ((), &readme[at + MARKER.len()..])) {
        let body = after.trim_start().strip_prefix("```sh\n").context("a marker not followed by a ```sh block")?;
        let end = body.find("\n```\n").context("an unterminated ```sh block")?;
        blocks.push(body[..end + 1].to_string());
    }
    Ok(blocks)
}

/// Forwards every connection to `listen` on to `upstream` (what a Service does for the pod).
async fn forward(listen: &str, upstream: String) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("failed to listen on {listen}"))?;
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    Ok(())
}

/// The in-chart etcd as the chart configures it (etcd.tls.enabled): TLS with a server certificate
/// for `floe-etcd.floe-system.svc` and client-certificate authentication, from `pki`'s CA, which
/// is put where the chart keeps its CA (`floe-etcd-ca`, owned by the release `floe`) so that the
/// release's client Secrets are signed by it.
struct TlsEtcd {
    child: Child,
    address: String,
}

impl TlsEtcd {
    fn start(plane: &ControlPlane, pki: &Pki) -> Result<Self> {
        use rcgen::DnType;
        pki.issue_for("etcd", &[0x20, 0x01], &[(DnType::CommonName, "floe-etcd")], &[CHART_ETCD.0, "localhost", "127.0.0.1"], true)?;
        pki.issue("etcd-probe", &[0x20, 0x02], &[(DnType::CommonName, "probe")], false)?;
        let read = |name: &str| std::fs::read(pki.path(name)).with_context(|| format!("reading {name}"));
        use base64::Engine as _;
        let encode = |bytes: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(bytes);
        let secret = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {
                "name": "floe-etcd-ca", "namespace": "floe-system",
                "labels": {"app.kubernetes.io/managed-by": "Helm"},
                "annotations": {"meta.helm.sh/release-name": "floe", "meta.helm.sh/release-namespace": "floe-system"}
            },
            "data": {"tls.crt": encode(read("ca.crt")?), "tls.key": encode(read("ca.key")?)}
        });
        let manifest = pki.path("floe-etcd-ca.json");
        std::fs::write(&manifest, secret.to_string())?;
        plane.kubectl(&["create", "namespace", "floe-system"])?;
        plane.kubectl(&["apply", "-f", &manifest.to_string_lossy()])?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let peer = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let address = format!("127.0.0.1:{port}");
        let child = Command::new(plane.bin.join("etcd"))
            .args(["--name", "floe-etcd-0", "--data-dir", &plane.state.join("chart-etcd").to_string_lossy()])
            .args(["--listen-client-urls", &format!("https://{address}"), "--advertise-client-urls", &format!("https://{address}")])
            .args([
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
            ])
            .args(["--initial-cluster", &format!("floe-etcd-0=http://127.0.0.1:{peer}")])
            .args(["--cert-file", &pki.arg("etcd.crt"), "--key-file", &pki.arg("etcd.key")])
            .args(["--trusted-ca-file", &pki.arg("ca.crt"), "--client-cert-auth"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(plane.state.join("chart-etcd.log"))?)
            .spawn()
            .context("failed to start the stand-in etcd")?;
        let etcd = Self { child, address };
        let healthy = || {
            let output = Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", &format!("https://{}", etcd.address), "--cacert", &pki.arg("ca.crt")])
                .args(["--cert", &pki.arg("etcd-probe.crt"), "--key", &pki.arg("etcd-probe.key"), "endpoint", "health"])
                .output()?;
            Ok(output.status.success())
        };
        floe_e2e::wait_until("the stand-in TLS etcd is healthy", Duration::from_secs(30), healthy)
            .with_context(|| format!("see {}", plane.state.join("chart-etcd.log").display()))?;
        Ok(etcd)
    }
}

impl Drop for TlsEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The operator as the chart's pod runs it, resolving Service names through `hosts`.
struct StandInOperator {
    child: Child,
    http_port: u16,
}

impl StandInOperator {
    fn start(plane: &ControlPlane, hosts: &Path, log: &Path) -> Result<Self> {
        let http_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("unshare")
            .args(["--mount", "sh", "-c", r#"mount --bind "$0" /etc/hosts && exec "$@""#])
            .arg(hosts)
            .arg(operator_binary()?)
            .args(["run", "--install-crds=true", "--http-listen", &format!("127.0.0.1:{http_port}")])
            .env("KUBECONFIG", &plane.kubeconfig)
            .env("FLOE_LOG", "info,kube=warn")
            .env("FLOE_AGENT_IMAGE", "registry.invalid/floe:test")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()
            .context("failed to start the operator under unshare")?;
        Ok(Self { child, http_port })
    }

    /// Whether `/readyz` answers: the operator serves HTTP only once its CRDs are Established.
    fn ready(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.http_port)) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        if stream.write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n").is_err() {
            return false;
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
    }
}

impl Drop for StandInOperator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs one README block with bash, as a user's shell would (stops at the first failing command).
fn run_block(plane: &ControlPlane, block: &str, environment: &[(&str, String)]) -> Result<String> {
    let path = format!("{}:{}", plane.bin.display(), std::env::var("PATH").unwrap_or_default());
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", block])
        .current_dir(repository_root())
        .env("PATH", path)
        .env("KUBECONFIG", &plane.kubeconfig)
        .envs(environment.iter().map(|(key, value)| (*key, value.as_str())))
        .stdin(Stdio::null())
        .output()
        .context("failed to run bash")?;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        bail!("the README block failed ({}):\n{block}\n--- output ---\n{text}", output.status);
    }
    Ok(text)
}

fn can_i(plane: &ControlPlane, verb: &str, resource: &str, service_account: &str) -> Result<bool> {
    let output = Command::new(plane.bin.join("kubectl"))
        .args(["auth", "can-i", verb, resource, "--as", service_account])
        .env("KUBECONFIG", &plane.kubeconfig)
        .output()?;
    Ok(String::from_utf8_lossy(&output.stdout).trim() == "yes")
}

fn crd_json(plane: &ControlPlane, name: &str) -> Result<serde_json::Value> {
    Ok(serde_json::from_str(&plane.kubectl(&["get", "crd", name, "-o", "json"])?)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_quick_starts_work_verbatim_and_the_chart_installs_again_under_another_name() -> Result<()> {
    let blocks = verbatim_blocks()?;
    assert_eq!(blocks.len(), 2, "README.md should mark the chart-etcd and the own-etcd quick starts");
    let plane = ControlPlane::without_chart()?;
    let infrastructure = &plane.infrastructure;
    let s3 = repository_root().join("e2e/scripts/s3.sh");
    let created = Command::new("bash").arg(&s3).args(["create-bucket", &infrastructure.s3_port.to_string(), EXAMPLE_BUCKET]).status()?;
    assert!(created.success(), "creating the example's bucket failed");

    let pki = Pki::new()?;
    let _chart_etcd = TlsEtcd::start(&plane, &pki)?;
    forward(CHART_ETCD.1, _chart_etcd.address.clone()).await?;
    forward(EXAMPLE_S3.1, format!("127.0.0.1:{}", infrastructure.s3_port)).await?;
    let hosts = plane.state.join("hosts");
    let ip = |address: &str| address.split(':').next().unwrap_or_default().to_string();
    std::fs::write(&hosts, format!("127.0.0.1 localhost\n{} {}\n{} {}\n", ip(CHART_ETCD.1), CHART_ETCD.0, ip(EXAMPLE_S3.1), EXAMPLE_S3.0))?;
    let log = plane.state.join("stand-in-operator.log");
    let operator = StandInOperator::start(&plane, &hosts, &log)?;
    let log_tail = || std::fs::read_to_string(&log).unwrap_or_default().lines().rev().take(30).collect::<Vec<_>>().join("\n");
    wait_for("the operator to install its CRDs and become ready", Duration::from_secs(90), || async { Ok(operator.ready().then_some(())) })
        .await
        .with_context(log_tail)?;

    let keys = [("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()), ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string())];
    let output = run_block(&plane, &blocks[0], &keys).with_context(log_tail)?;
    for line in ["virtualcluster.floe.dev/demo", "agentpool.floe.dev/demo-agents"] {
        assert!(output.contains(line), "the quick start's last command should list {line}:\n{output}");
    }

    // The CRDs are the operator's, not the release's, and its ServiceAccount may touch only ours.
    for name in ["virtualclusters.floe.dev", "agentpools.floe.dev", "kafkausers.floe.dev"] {
        let crd = crd_json(&plane, name)?;
        let annotations = &crd["metadata"]["annotations"];
        assert!(annotations["meta.helm.sh/release-name"].is_null(), "{name} must belong to no Helm release: {annotations}");
        assert_eq!(annotations[floe_operator::crd_install::VERSION_ANNOTATION], env!("CARGO_PKG_VERSION"), "{name}");
    }
    let account = "system:serviceaccount:floe-system:floe";
    assert!(can_i(&plane, "patch", "customresourcedefinitions/agentpools.floe.dev", account)?);
    assert!(can_i(&plane, "create", "customresourcedefinitions", account)?);
    assert!(!can_i(&plane, "patch", "customresourcedefinitions/widgets.example.com", account)?, "patch must be limited to our CRDs");
    assert!(!can_i(&plane, "delete", "customresourcedefinitions/agentpools.floe.dev", account)?);

    let own = [
        keys[0].clone(),
        keys[1].clone(),
        ("ETCD_ENDPOINT", format!("127.0.0.1:{}", infrastructure.etcd_port)),
        ("S3_ENDPOINT", format!("http://127.0.0.1:{}", infrastructure.s3_port)),
        ("S3_BUCKET", EXAMPLE_BUCKET.to_string()),
    ];
    run_block(&plane, &blocks[1], &own).with_context(log_tail)?;

    // Uninstall, then install under another name: the CRDs and every resource stay, and Helm has
    // no CRD to claim, so nothing refuses the new release.
    let chart = repository_root().join("charts/floe").display().to_string();
    plane.helm(&["uninstall", "floe", "--namespace", "floe-system", "--wait"])?;
    for name in ["virtualclusters.floe.dev", "agentpools.floe.dev", "kafkausers.floe.dev"] {
        crd_json(&plane, name).with_context(|| format!("{name} should survive helm uninstall"))?;
    }
    plane.kubectl(&["-n", "floe", "get", "virtualcluster/demo", "agentpool/demo-agents"])?;
    plane.kubectl(&["-n", "kafka", "get", "virtualcluster/events", "agentpool/events-agents"])?;
    plane.helm(&["install", "floe-again", &chart, "--namespace", "floe-system", "--set", "etcd.enabled=true"])?;
    plane.helm(&["upgrade", "floe-again", &chart, "--namespace", "floe-system", "--reuse-values", "--set", "healthChecks.interval=20s"])?;
    let deployment: serde_json::Value =
        serde_json::from_str(&plane.kubectl(&["-n", "floe-system", "get", "deployment/floe-again", "-o", "json"])?)?;
    let environment = &deployment["spec"]["template"]["spec"]["containers"][0]["env"];
    let value =
        |name: &str| environment.as_array().into_iter().flatten().find(|entry| entry["name"] == name).map(|entry| entry["value"].clone());
    assert_eq!(value("FLOE_OPERATOR_HEALTH_CHECK_INTERVAL"), Some(serde_json::json!("20s")), "{environment}");
    assert_eq!(value("FLOE_OPERATOR_INSTALL_CRDS"), Some(serde_json::json!("true")), "{environment}");
    // Both virtual clusters stay Ready throughout.
    plane.kubectl(&["-n", "floe", "wait", "--for=condition=Ready", "virtualcluster/demo", "--timeout=60s"])?;
    plane.kubectl(&["-n", "kafka", "wait", "--for=condition=Ready", "virtualcluster/events", "--timeout=60s"])?;
    drop(operator);
    Ok(())
}
