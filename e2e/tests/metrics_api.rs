//! The operator's external metrics API behind the real kube-apiserver aggregator: the operator
//! runs as a process serving `external.metrics.k8s.io/v1beta1` on a loopback port with a
//! certificate made here, registered through an ExternalName Service and an APIService the way
//! `e2e/k8s/up.sh` registers metrics-server. The aggregator authenticates with its real
//! front-proxy certificate, the operator authorizes with real SubjectAccessReviews, the value
//! comes from agent registry records in the real etcd, and the controller-manager's HPA
//! controller reads it. Every wait is on a condition.
//!
//! Only one APIService may serve `v1beta1.external.metrics.k8s.io` in a cluster, and the tests of
//! this binary share one control plane: the single test here owns it and deletes it at the end,
//! also when it fails.

use anyhow::{bail, Context, Result};
use floe_e2e::cluster::BUCKET;
use floe_e2e::external_metrics::{self, direct, free_port, hpa_external_average, issue_serving_certificate, make_ca, path, run, METRIC};
use floe_e2e::kubernetes::{self, wait_for};
use floe_operator::crd::{AgentPool, VirtualCluster};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::Api;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const SERVICE: &str = "floe-metrics-api-test";
const TIMEOUT: Duration = Duration::from_secs(120);

/// The fingerprint of the certificate the operator presents now.
fn presented_fingerprint(port: u16, host: &str) -> Result<String> {
    let script = format!(
        "openssl s_client -connect 127.0.0.1:{port} -servername {host} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
    );
    Ok(run("bash", &["-c", &script])?.trim().to_string())
}

/// An agent registry record as `agent/src/cluster/registry.rs` writes it.
fn agent_record(node_id: i32, pool: &str, bytes_in: f64, bytes_out: f64, draining: bool) -> String {
    json!({
        "node_id": node_id, "host": format!("10.0.0.{node_id}"), "port": 9092, "zone": null, "roles": ["produce", "fetch"],
        "draining": draining, "bytes_in_per_second": bytes_in, "bytes_out_per_second": bytes_out,
        "pool": pool, "pod": format!("{pool}-{node_id}"), "object_store_bytes_per_second": 0.0, "cpu_seconds_per_second": 0.1,
    })
    .to_string()
}

/// The operator's `--http-listen 127.0.0.1:0` address, from its log (colours stripped).
fn operator_http_address(log: &Path) -> Option<String> {
    let raw = std::fs::read_to_string(log).ok()?;
    let mut text = String::with_capacity(raw.len());
    let mut characters = raw.chars();
    while let Some(character) = characters.next() {
        if character == '\u{1b}' {
            // An ANSI sequence: ESC [ ... m
            characters.by_ref().find(|character| *character == 'm');
        } else {
            text.push(character);
        }
    }
    let line = text.lines().find(|line| line.contains("serving /metrics, /healthz and /readyz"))?;
    let start = line.find("address=")? + "address=".len();
    Some(line[start..].split_whitespace().next()?.to_string())
}

fn counter(metrics: &str, outcome: &str) -> u64 {
    let series = format!("floe_operator_metrics_api_requests_total{{outcome=\"{outcome}\"}} ");
    metrics.lines().find_map(|line| line.strip_prefix(&series)).and_then(|value| value.trim().parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hpa_reads_a_pools_bandwidth_from_the_operator_through_the_aggregator() -> Result<()> {
    let plane = kubernetes::shared()?;
    let client = plane.client().await?;
    let namespace = plane.namespace(&client, "metrics-api").await?;
    let host = format!("{SERVICE}.{namespace}.svc");

    // The serving certificate, RSA PKCS#1 as Helm's genSignedCert makes it.
    let certificates = tempfile::tempdir()?;
    let directory = certificates.path();
    make_ca(directory)?;
    let first_fingerprint = issue_serving_certificate(directory, &host, true)?;
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let (certificate_file, key_file) = (path(directory, "tls.crt"), path(directory, "tls.key"));
    #[rustfmt::skip]
    let process = plane.start_operator_with(&namespace, &[
        "--metrics-api-listen", &listen, "--metrics-api-cert-file", &certificate_file, "--metrics-api-key-file", &key_file,
    ])?;
    wait_for("the operator's metrics API to answer /healthz", TIMEOUT, || async {
        Ok((direct(directory, port, &host, "/healthz", &[])?.0 == 200).then_some(()))
    })
    .await
    .with_context(|| process.log_tail())?;
    assert_eq!(presented_fingerprint(port, &host)?, first_fingerprint);

    // Requests that do not come from the aggregator are refused.
    let metric_path = format!(
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{METRIC}?labelSelector=app.kubernetes.io%2Finstance%3Dagents%2Capp.kubernetes.io%2Fname%3Dfloe-agent"
    );
    let (code, body) = direct(directory, port, &host, &metric_path, &[])?;
    assert_eq!(code, 401, "no client certificate: {body}");
    assert_eq!(serde_json::from_str::<Value>(&body)?["reason"], "Unauthorized");
    let pki = plane.state.join("pki");
    let (admin_cert, admin_key) = (path(&pki, "admin.crt"), path(&pki, "admin.key"));
    let (code, body) = direct(
        directory,
        port,
        &host,
        &metric_path,
        &["--cert", &admin_cert, "--key", &admin_key, "-H", "X-Remote-User: kubernetes-admin"],
    )?;
    assert_eq!(code, 401, "a client certificate of the cluster CA, not the front-proxy CA: {body}");
    let (proxy_cert, proxy_key) = (path(&pki, "front-proxy-client.crt"), path(&pki, "front-proxy-client.key"));
    let (code, body) =
        direct(directory, port, &host, &metric_path, &["--cert", &proxy_cert, "--key", &proxy_key, "-H", "X-Remote-User: nobody"])?;
    assert_eq!(code, 403, "a user RBAC does not allow: {body}");
    assert!(body.contains("User \\\"nobody\\\" cannot list resource"), "{body}");

    // Registered as the aggregator sees it: ExternalName to loopback, the test CA as caBundle.
    let _registration =
        external_metrics::register(plane, &namespace, SERVICE, port, directory).await.with_context(|| process.log_tail())?;
    let resources: Value = serde_json::from_str(&plane.kubectl(&["get", "--raw", "/apis/external.metrics.k8s.io/v1beta1"])?)?;
    assert_eq!(resources["resources"][0]["name"], METRIC, "{resources}");
    assert_eq!(resources["resources"][0]["kind"], "ExternalMetricValueList");

    // A pool with autoscaling on, on the test's etcd and S3.
    let infrastructure = &plane.infrastructure;
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "s3-auth"}, "stringData": {"AWS_ACCESS_KEY_ID": "floe", "AWS_SECRET_ACCESS_KEY": "floe-secret"}}),
    )?;
    Api::<Secret>::namespaced(client.clone(), &namespace).create(&PostParams::default(), &secret).await?;
    let cluster: VirtualCluster = serde_json::from_value(json!({
        "apiVersion": "floe.dev/v1alpha1", "kind": "VirtualCluster", "metadata": {"name": "demo"},
        "spec": {
            "etcd": {"endpoints": [infrastructure.etcd_endpoint()], "prefix": "/floe"},
            "objectStore": {
                "url": format!("s3://{BUCKET}/{namespace}-demo"), "region": "us-east-1",
                "endpoint": format!("http://127.0.0.1:{}", infrastructure.s3_port), "credentialsSecretRef": {"name": "s3-auth"},
            },
            "deletionPolicy": "Delete",
        },
    }))?;
    Api::<VirtualCluster>::namespaced(client.clone(), &namespace).create(&PostParams::default(), &cluster).await?;
    // The bandwidth target is far above the load, so the HPA holds minReplicas and the average it
    // reports is the total over two agents.
    let pool: AgentPool = serde_json::from_value(json!({
        "apiVersion": "floe.dev/v1alpha1", "kind": "AgentPool", "metadata": {"name": "agents"},
        "spec": {
            "virtualClusterRef": {"name": "demo"}, "replicas": 2,
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            "autoscaling": {"enabled": true, "minReplicas": 2, "maxReplicas": 4, "targetBandwidthPerAgent": "1Mi", "scaleDownStabilization": "30s"},
        },
    }))?;
    Api::<AgentPool>::namespaced(client.clone(), &namespace).create(&PostParams::default(), &pool).await?;

    // What two agents of the pool publish, plus records that must not count.
    let key = |node_id: i32| format!("/floe/vc/{namespace}.demo/agents/{node_id:010}");
    infrastructure.etcdctl(&["put", &key(1), &agent_record(1, "agents", 1000.5, 2000.0, false)])?;
    infrastructure.etcdctl(&["put", &key(2), &agent_record(2, "agents", 500.0, 499.5, false)])?;
    infrastructure.etcdctl(&["put", &key(3), &agent_record(3, "agents", 10_000.0, 10_000.0, true)])?;
    infrastructure.etcdctl(&["put", &key(4), &agent_record(4, "other", 7777.0, 0.0, false)])?;

    let value_through_aggregator = || async {
        let text = plane.kubectl(&["get", "--raw", &metric_path])?;
        let list: Value = serde_json::from_str(&text)?;
        if list["kind"] != "ExternalMetricValueList" || list["apiVersion"] != "external.metrics.k8s.io/v1beta1" {
            bail!("unexpected answer {text}");
        }
        let item = list["items"].get(0).with_context(|| format!("no items in {text}"))?.clone();
        Ok::<_, anyhow::Error>(item)
    };
    let item = wait_for("the metric through the aggregator", TIMEOUT, || async { value_through_aggregator().await.map(Some) })
        .await
        .with_context(|| process.log_tail())?;
    assert_eq!(item["metricName"], METRIC);
    assert_eq!(item["value"], "4000", "1000.5 + 2000 + 500 + 499.5; the draining agent and the other pool do not count: {item}");
    assert_eq!(item["metricLabels"], json!({"app.kubernetes.io/instance": "agents", "app.kubernetes.io/name": "floe-agent"}));
    assert!(item["timestamp"].as_str().is_some_and(|timestamp| timestamp.parse::<k8s_openapi::jiff::Timestamp>().is_ok()), "{item}");

    // The controller-manager's HPA controller reads the same value: 4000 over 2 agents.
    let autoscalers: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &namespace);
    let wait_average = |expected: i128| {
        let autoscalers = autoscalers.clone();
        async move {
            wait_for(&format!("the HPA to report an average of {expected} bytes/s per agent"), TIMEOUT, || async {
                let hpa = autoscalers.get_opt("agents").await?.context("no HorizontalPodAutoscaler yet")?;
                match hpa_external_average(&hpa) {
                    Some(average) if average == expected => Ok(Some(hpa)),
                    _ => bail!("status {}", serde_json::to_string(&hpa.status)?),
                }
            })
            .await
        }
    };
    let hpa = wait_average(2000).await.with_context(|| process.log_tail())?;
    assert_eq!(hpa.status.as_ref().map(|status| status.current_replicas), Some(Some(2)));

    // Load moves: an agent publishes more, and the HPA follows.
    infrastructure.etcdctl(&["put", &key(2), &agent_record(2, "agents", 1500.0, 1499.5, false)])?;
    wait_average(3000).await.with_context(|| process.log_tail())?;

    // cert-manager renews the serving certificate (a new ECDSA PKCS#8 key): the operator presents
    // it without a restart, and the aggregator keeps getting answers.
    let renewed_fingerprint = issue_serving_certificate(directory, &host, false)?;
    assert_ne!(renewed_fingerprint, first_fingerprint);
    wait_for("the operator to present the renewed certificate", TIMEOUT, || async {
        let presented = presented_fingerprint(port, &host)?;
        Ok((presented == renewed_fingerprint).then_some(()))
    })
    .await
    .with_context(|| process.log_tail())?;
    assert_eq!(value_through_aggregator().await?["value"], "6000");

    // The outcomes are counted.
    let address = operator_http_address(&process.log).context("the operator logged no HTTP address")?;
    let metrics = run("curl", &["-sS", "--max-time", "10", &format!("http://{address}/metrics")])?;
    assert!(counter(&metrics, "ok") >= 3, "{metrics}");
    assert!(counter(&metrics, "unauthenticated") >= 2, "{metrics}");
    assert!(counter(&metrics, "forbidden") >= 1, "{metrics}");

    drop(process);
    plane.delete_namespace(&client, &namespace).await;
    Ok(())
}
