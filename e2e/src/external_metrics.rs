//! The operator as the cluster's `external.metrics.k8s.io` server, wired the way the chart wires
//! it but with the operator as a local process: a serving certificate made here with openssl, an
//! ExternalName Service pointing at loopback, and an APIService whose caBundle is the test CA
//! (as `e2e/k8s/up.sh` registers metrics-server). The aggregator then authenticates with its real
//! front-proxy certificate and the controller-manager's HPA controller reads the metric.
//!
//! Only one APIService may serve `v1beta1.external.metrics.k8s.io` in a cluster, so within one
//! test binary (one control plane) a single test may own it at a time.

use crate::kubernetes::{wait_for, ControlPlane, OperatorProcess};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

pub const APISERVICE: &str = "v1beta1.external.metrics.k8s.io";
pub const METRIC: &str = "floe_agent_network_bytes_per_second";
const TIMEOUT: Duration = Duration::from_secs(120);

pub fn run(program: &str, arguments: &[&str]) -> Result<String> {
    let output = Command::new(program).args(arguments).stdin(Stdio::null()).output().with_context(|| format!("failed to run {program}"))?;
    if !output.status.success() {
        bail!("{program} {} failed: {}", arguments.join(" "), String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout).to_string())
}

pub fn path(directory: &Path, name: &str) -> String {
    directory.join(name).display().to_string()
}

/// A CA (`ca.crt`/`ca.key`) in `directory`.
pub fn make_ca(directory: &Path) -> Result<()> {
    let key = path(directory, "ca.key");
    run("openssl", &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &key])?;
    #[rustfmt::skip]
    run("openssl", &["req", "-x509", "-new", "-key", &key, "-subj", "/CN=floe-metrics-api-test-ca", "-days", "2", "-sha256",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        "-out", &path(directory, "ca.crt")])?;
    Ok(())
}

/// A serving certificate for `host`, signed by the CA in `directory`, written to
/// `tls.crt`/`tls.key` by rename, as a Secret volume update lands. `rsa` makes a PKCS#1 RSA key
/// (what Helm generates), otherwise a PKCS#8 ECDSA key (what cert-manager writes). Returns the
/// certificate's SHA-256 fingerprint as openssl prints it.
pub fn issue_serving_certificate(directory: &Path, host: &str, rsa: bool) -> Result<String> {
    let key = path(directory, "next.key");
    if rsa {
        run("openssl", &["genrsa", "-traditional", "-out", &key, "2048"])?;
    } else {
        run("openssl", &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &key])?;
    }
    let extensions = path(directory, "serving.ext");
    std::fs::write(
        &extensions,
        format!("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:{host}\n"),
    )?;
    let request = path(directory, "next.csr");
    run("openssl", &["req", "-new", "-key", &key, "-subj", &format!("/CN={host}"), "-out", &request])?;
    let serial = format!("0x{}", ulid::Ulid::new().to_string().to_lowercase().chars().filter(char::is_ascii_hexdigit).collect::<String>());
    let certificate = path(directory, "next.crt");
    #[rustfmt::skip]
    run("openssl", &["x509", "-req", "-in", &request, "-CA", &path(directory, "ca.crt"), "-CAkey", &path(directory, "ca.key"),
        "-set_serial", &serial, "-days", "2", "-sha256", "-extfile", &extensions, "-out", &certificate])?;
    // Key first: until the certificate follows, the operator refuses the mismatched pair and
    // keeps serving the previous one.
    std::fs::rename(&key, directory.join("tls.key"))?;
    std::fs::rename(&certificate, directory.join("tls.crt"))?;
    let fingerprint = run("openssl", &["x509", "-in", &path(directory, "tls.crt"), "-noout", "-fingerprint", "-sha256"])?;
    Ok(fingerprint.trim().to_string())
}

/// A request straight to the operator's port (not through the aggregator), trusting the CA in
/// `directory`: status code and body.
pub fn direct(directory: &Path, port: u16, host: &str, url_path: &str, extra: &[&str]) -> Result<(u16, String)> {
    let body = path(directory, "response.json");
    let resolve = format!("{host}:{port}:127.0.0.1");
    let url = format!("https://{host}:{port}{url_path}");
    let mut arguments =
        vec!["-sS", "-o", &body, "-w", "%{http_code}", "--max-time", "10", "--cacert", "ca.crt", "--resolve", &resolve, &url];
    arguments.extend_from_slice(extra);
    let output = Command::new("curl").current_dir(directory).args(&arguments).stdin(Stdio::null()).output()?;
    let code = String::from_utf8_lossy(&output.stdout).trim().parse().unwrap_or(0);
    Ok((code, std::fs::read_to_string(&body).unwrap_or_default()))
}

/// The current `averageValue` of the HPA's external metric, in whole units.
pub fn hpa_external_average(hpa: &k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler) -> Option<i128> {
    let status = serde_json::to_value(hpa.status.as_ref()?).ok()?;
    let metric = status["currentMetrics"].as_array()?.iter().find(|metric| metric["type"] == "External")?.clone();
    if metric["external"]["metric"]["name"] != METRIC {
        return None;
    }
    floe_operator::crd::quantity::nano_units(metric["external"]["current"]["averageValue"].as_str()?).map(|nano| nano / 1_000_000_000)
}

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The registered APIService; deleted on drop however the test ends, since a registered group
/// without a server leaves discovery of the whole cluster reporting errors.
pub struct ApiServiceRegistration<'a> {
    plane: &'a ControlPlane,
}

impl Drop for ApiServiceRegistration<'_> {
    fn drop(&mut self) {
        if let Err(error) = self.plane.kubectl(&["delete", "apiservice", APISERVICE, "--ignore-not-found", "--wait=false"]) {
            eprintln!("failed to delete APIService {APISERVICE}: {error:#}");
        }
    }
}

/// Registers the server on `127.0.0.1:port` (its CA in `directory`) as the cluster's external
/// metrics API through ExternalName Service `service` in `namespace`, and waits until the
/// aggregator reports the APIService Available.
pub async fn register<'a>(
    plane: &'a ControlPlane,
    namespace: &str,
    service: &str,
    port: u16,
    directory: &Path,
) -> Result<ApiServiceRegistration<'a>> {
    let registration = ApiServiceRegistration { plane };
    let ca_bundle = {
        use std::io::Write;
        let mut encoder = Command::new("base64").arg("-w0").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
        encoder.stdin.take().context("no stdin")?.write_all(&std::fs::read(directory.join("ca.crt"))?)?;
        String::from_utf8(encoder.wait_with_output()?.stdout)?
    };
    let manifest = format!(
        r#"apiVersion: v1
kind: Service
metadata:
  name: {service}
  namespace: {namespace}
spec:
  type: ExternalName
  externalName: 127.0.0.1
  ports:
  - name: https
    port: {port}
    protocol: TCP
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: {APISERVICE}
spec:
  service:
    name: {service}
    namespace: {namespace}
    port: {port}
  group: external.metrics.k8s.io
  version: v1beta1
  caBundle: {ca_bundle}
  groupPriorityMinimum: 100
  versionPriority: 100
"#
    );
    let manifest_file = directory.join("apiservice.yaml");
    std::fs::write(&manifest_file, manifest)?;
    plane.kubectl(&["apply", "-f", &manifest_file.display().to_string()])?;
    wait_for("APIService v1beta1.external.metrics.k8s.io Available", TIMEOUT, || async {
        let available =
            plane.kubectl(&["get", "apiservice", APISERVICE, "-o", "jsonpath={.status.conditions[?(@.type==\"Available\")]}"])?;
        if available.contains("\"status\":\"True\"") {
            Ok(Some(()))
        } else {
            bail!("condition {available}")
        }
    })
    .await?;
    Ok(registration)
}

/// An operator for `namespace` that also serves the external metrics API, registered with the
/// aggregator. Field order matters on drop: the APIService goes before its server.
pub struct ExternalMetricsOperator<'a> {
    pub registration: ApiServiceRegistration<'a>,
    pub operator: OperatorProcess,
    pub certificates: tempfile::TempDir,
}

/// Starts the operator for `namespace` with its metrics API on a loopback port and a fresh
/// certificate, and registers it (see [`register`]).
pub async fn start_operator_serving_external_metrics<'a>(plane: &'a ControlPlane, namespace: &str) -> Result<ExternalMetricsOperator<'a>> {
    let service = "floe-metrics-api-test";
    let host = format!("{service}.{namespace}.svc");
    let certificates = tempfile::tempdir()?;
    let directory = certificates.path();
    make_ca(directory)?;
    issue_serving_certificate(directory, &host, false)?;
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let (certificate_file, key_file) = (path(directory, "tls.crt"), path(directory, "tls.key"));
    #[rustfmt::skip]
    let operator = plane.start_operator_with(namespace, &[
        "--metrics-api-listen", &listen, "--metrics-api-cert-file", &certificate_file, "--metrics-api-key-file", &key_file,
    ])?;
    wait_for("the operator's metrics API to answer /healthz", TIMEOUT, || async {
        Ok((direct(directory, port, &host, "/healthz", &[])?.0 == 200).then_some(()))
    })
    .await
    .with_context(|| operator.log_tail())?;
    let registration = register(plane, namespace, service, port, directory).await.with_context(|| operator.log_tail())?;
    Ok(ExternalMetricsOperator { registration, operator, certificates })
}
