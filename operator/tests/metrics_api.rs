//! The external metrics API server over real TLS on a loopback port, with the front-proxy
//! settings built from test certificates and a scripted authorizer and load source in place of
//! kube-apiserver and etcd. The path through the real aggregator is e2e/tests/metrics_api.rs.

use floe_operator::metrics::Metrics;
use floe_operator::metrics_api::authn::{self, UserInfo};
use floe_operator::metrics_api::authz::{Attributes, AuthorizeError, Authorizer, Decision};
use floe_operator::metrics_api::load::{LoadError, LoadSource, PoolBandwidth};
use floe_operator::metrics_api::{server, tls};
use futures::future::BoxFuture;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const METRIC_PATH: &str = "/apis/external.metrics.k8s.io/v1beta1/namespaces/team-a/floe_agent_network_bytes_per_second";
const POOL_SELECTOR: &str = "labelSelector=app.kubernetes.io%2Finstance%3Dagents%2Capp.kubernetes.io%2Fname%3Dfloe-agent";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metrics-api").join(name)
}

/// Allows `hpa` to list the metric in `team-a`, and every authenticated user to read
/// non-resource paths (RBAC's `system:discovery`); records what it was asked.
#[derive(Default)]
struct ScriptedAuthorizer {
    asked: Mutex<Vec<(UserInfo, Attributes)>>,
}

impl Authorizer for ScriptedAuthorizer {
    fn authorize<'a>(&'a self, user: &'a UserInfo, attributes: &'a Attributes) -> BoxFuture<'a, Result<Decision, AuthorizeError>> {
        self.asked.lock().unwrap().push((user.clone(), attributes.clone()));
        let allowed = match attributes {
            Attributes::NonResource { .. } => user.groups.iter().any(|group| group == authn::AUTHENTICATED_GROUP),
            Attributes::Resource { verb, namespace, .. } => user.name == "hpa" && verb == "list" && namespace.as_deref() == Some("team-a"),
        };
        Box::pin(async move { Ok(Decision { allowed, reason: String::new() }) })
    }
}

/// `agents` carries 4000 bytes/s; `idle` has no agents; `broken` cannot reach its etcd.
struct ScriptedLoad;

impl LoadSource for ScriptedLoad {
    fn pool_bandwidth<'a>(&'a self, namespace: &'a str, pool: &'a str) -> BoxFuture<'a, Result<PoolBandwidth, LoadError>> {
        Box::pin(async move {
            match pool {
                "agents" => Ok(PoolBandwidth { bytes_per_second: 4000.4, agents: 2, unreadable: 0 }),
                "idle" => Ok(PoolBandwidth::default()),
                "broken" => Err(LoadError::Registry {
                    namespace: namespace.to_string(),
                    cluster: "demo".to_string(),
                    reason: "connection refused".to_string(),
                }),
                _ => Err(LoadError::PoolNotFound { namespace: namespace.to_string(), pool: pool.to_string() }),
            }
        })
    }
}

struct Running {
    address: std::net::SocketAddr,
    metrics: Arc<Metrics>,
    authorizer: Arc<ScriptedAuthorizer>,
    directory: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn copy_into(directory: &Path, name: &str, from: &str) {
    let staged = directory.join(format!(".{name}.new"));
    std::fs::copy(fixture(from), &staged).unwrap();
    std::fs::rename(staged, directory.join(name)).unwrap();
}

async fn start() -> Running {
    let provider = tls::provider();
    let directory = tempfile::tempdir().unwrap();
    copy_into(directory.path(), "tls.crt", "serving-ec.crt");
    copy_into(directory.path(), "tls.key", "serving-ec-sec1.key");
    let certificate = tls::ReloadingCertificate::load(
        tls::PURPOSE,
        &directory.path().join("tls.crt"),
        &directory.path().join("tls.key"),
        provider.clone(),
        Duration::ZERO,
    )
    .unwrap();
    let config = tls::server_config(Arc::new(certificate), provider.clone()).unwrap();
    let data = BTreeMap::from([
        ("requestheader-client-ca-file".to_string(), std::fs::read_to_string(fixture("front-proxy-ca.crt")).unwrap()),
        ("requestheader-allowed-names".to_string(), r#"["front-proxy-client"]"#.to_string()),
    ]);
    let request_header = authn::parse_config(&data, provider).unwrap();
    let (_sender, receiver) = tokio::sync::watch::channel(Ok(Arc::new(request_header)));
    let metrics = Arc::new(Metrics::new());
    let authorizer = Arc::new(ScriptedAuthorizer::default());
    let api = Arc::new(server::MetricsApi {
        request_header: receiver,
        authorizer: authorizer.clone(),
        load: Arc::new(ScriptedLoad),
        metrics: metrics.clone(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let task = tokio::spawn(server::serve(listener, Arc::new(config), server::router(api)));
    Running { address, metrics, authorizer, directory, task }
}

/// A client certificate to present, by fixture name.
#[derive(Clone, Copy)]
enum Client {
    Anonymous,
    Certificate(&'static str),
}

struct Answer {
    status: u16,
    body: Value,
    server_certificate: CertificateDer<'static>,
}

async fn request(running: &Running, client: Client, path: &str, headers: &[(&str, &str)]) -> Answer {
    request_with_method(running, client, "GET", path, headers).await
}

async fn request_with_method(running: &Running, client: Client, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(fixture("front-proxy-ca.crt")).unwrap()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Client::Anonymous => builder.with_no_client_auth(),
        Client::Certificate(name) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_file(fixture(&format!("{name}.crt"))).unwrap()],
                PrivateKeyDer::from_pem_file(fixture(&format!("{name}.key"))).unwrap(),
            )
            .unwrap(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let stream = tokio::net::TcpStream::connect(running.address).await.unwrap();
    let mut stream = connector.connect(ServerName::try_from("localhost").unwrap(), stream).await.unwrap();
    let server_certificate = stream.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned();
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    // The server may close without close_notify once the response is complete.
    let _ = stream.read_to_end(&mut response).await;
    let response = String::from_utf8(response).unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_string() };
    let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
    Answer { status, body, server_certificate }
}

fn dechunk(mut body: &str) -> String {
    let mut text = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        text.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    text
}

fn outcome(running: &Running, outcome: &str) -> u64 {
    running.metrics.metrics_api_requests.with_label_values(&[outcome]).get()
}

const AS_HPA: &[(&str, &str)] = &[("X-Remote-User", "hpa"), ("X-Remote-Group", "system:serviceaccounts")];

#[tokio::test]
async fn the_front_proxy_gets_the_pools_bandwidth_as_an_external_metric_value_list() {
    let running = start().await;
    let answer = request(&running, Client::Certificate("front-proxy-client"), &format!("{METRIC_PATH}?{POOL_SELECTOR}"), AS_HPA).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["kind"], "ExternalMetricValueList");
    assert_eq!(answer.body["apiVersion"], "external.metrics.k8s.io/v1beta1");
    let items = answer.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["metricName"], "floe_agent_network_bytes_per_second");
    assert_eq!(items[0]["value"], "4000");
    assert_eq!(items[0]["metricLabels"]["app.kubernetes.io/instance"], "agents");
    assert_eq!(items[0]["metricLabels"]["app.kubernetes.io/name"], "floe-agent");
    let timestamp = items[0]["timestamp"].as_str().unwrap();
    assert!(timestamp.parse::<k8s_openapi::jiff::Timestamp>().is_ok() && timestamp.ends_with('Z'), "{timestamp}");
    // The review asked about the user from the headers, plus system:authenticated.
    let asked = running.authorizer.asked.lock().unwrap().clone();
    let (user, attributes) = asked.last().unwrap();
    assert_eq!(user.name, "hpa");
    assert_eq!(user.groups, ["system:serviceaccounts", "system:authenticated"]);
    assert_eq!(
        *attributes,
        Attributes::Resource {
            verb: "list".into(),
            group: "external.metrics.k8s.io".into(),
            version: "v1beta1".into(),
            namespace: Some("team-a".into()),
            resource: "floe_agent_network_bytes_per_second".into(),
            name: None,
        }
    );
    assert_eq!(outcome(&running, "ok"), 1);
}

#[tokio::test]
async fn a_pool_without_agents_reports_zero() {
    let running = start().await;
    let path = format!("{METRIC_PATH}?labelSelector=app.kubernetes.io%2Finstance%3Didle");
    let answer = request(&running, Client::Certificate("front-proxy-client"), &path, AS_HPA).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["items"][0]["value"], "0");
}

#[tokio::test]
async fn requests_without_a_trusted_allowed_front_proxy_certificate_and_a_user_get_401() {
    let running = start().await;
    let path = format!("{METRIC_PATH}?{POOL_SELECTOR}");
    for client in [Client::Anonymous, Client::Certificate("impostor"), Client::Certificate("stranger")] {
        let answer = request(&running, client, &path, AS_HPA).await;
        assert_eq!(answer.status, 401, "{}", answer.body);
        assert_eq!(answer.body["kind"], "Status");
        assert_eq!(answer.body["reason"], "Unauthorized");
    }
    let answer = request(&running, Client::Certificate("front-proxy-client"), &path, &[]).await;
    assert_eq!(answer.status, 401, "a certificate without a user header: {}", answer.body);
    assert_eq!(outcome(&running, "unauthenticated"), 4);
    assert!(running.authorizer.asked.lock().unwrap().is_empty(), "nothing unauthenticated reaches the authorizer");
}

#[tokio::test]
async fn a_user_the_authorizer_denies_gets_403_naming_the_user_and_the_metric() {
    let running = start().await;
    let answer = request(
        &running,
        Client::Certificate("front-proxy-client"),
        &format!("{METRIC_PATH}?{POOL_SELECTOR}"),
        &[("X-Remote-User", "bob")],
    )
    .await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert_eq!(answer.body["reason"], "Forbidden");
    let message = answer.body["message"].as_str().unwrap();
    assert!(message.contains("\"bob\"") && message.contains("cannot list resource \"floe_agent_network_bytes_per_second\""), "{message}");
    assert_eq!(outcome(&running, "forbidden"), 1);
}

#[tokio::test]
async fn discovery_and_openapi_are_served_to_authenticated_users() {
    let running = start().await;
    let client = Client::Certificate("front-proxy-client");
    let as_aggregator = &[("X-Remote-User", "system:kube-aggregator")];
    let list = request(&running, client, "/apis/external.metrics.k8s.io/v1beta1", as_aggregator).await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["kind"], "APIResourceList");
    assert_eq!(list.body["resources"][0]["name"], "floe_agent_network_bytes_per_second");
    assert_eq!(list.body["resources"][0]["namespaced"], true);
    assert_eq!(request(&running, client, "/openapi/v2", as_aggregator).await.body["swagger"], "2.0");
    let root = request(&running, client, "/openapi/v3", as_aggregator).await.body;
    let url = root["paths"]["apis/external.metrics.k8s.io/v1beta1"]["serverRelativeURL"].as_str().unwrap().to_string();
    assert_eq!(request(&running, client, &url, as_aggregator).await.body["openapi"], "3.0.0");
    assert_eq!(request(&running, client, "/apis", as_aggregator).await.body["kind"], "APIGroupList");
}

#[tokio::test]
async fn unknown_metrics_pools_and_paths_get_404_with_a_status_body() {
    let running = start().await;
    let client = Client::Certificate("front-proxy-client");
    let unknown_metric = request(&running, client, "/apis/external.metrics.k8s.io/v1beta1/namespaces/team-a/other_metric", AS_HPA).await;
    assert_eq!(unknown_metric.status, 404, "{}", unknown_metric.body);
    assert_eq!((unknown_metric.body["kind"].as_str(), unknown_metric.body["reason"].as_str()), (Some("Status"), Some("NotFound")));
    assert_eq!(unknown_metric.body["details"]["kind"], "other_metric");
    let missing_pool =
        request(&running, client, &format!("{METRIC_PATH}?labelSelector=app.kubernetes.io%2Finstance%3Dmissing"), AS_HPA).await;
    assert_eq!(missing_pool.status, 404, "{}", missing_pool.body);
    assert!(missing_pool.body["message"].as_str().unwrap().contains("AgentPool team-a/missing does not exist"));
    let unknown_path = request(&running, client, "/nothing/here", AS_HPA).await;
    assert_eq!(unknown_path.status, 404);
    assert_eq!(outcome(&running, "not_found"), 3);
}

#[tokio::test]
async fn a_selector_naming_no_pool_is_a_bad_request_and_one_the_pool_does_not_match_selects_nothing() {
    let running = start().await;
    let client = Client::Certificate("front-proxy-client");
    for query in ["", "?labelSelector=app%3Dx", "?labelSelector=a%20in%20(b"] {
        let answer = request(&running, client, &format!("{METRIC_PATH}{query}"), AS_HPA).await;
        assert_eq!(answer.status, 400, "{query}: {}", answer.body);
        assert_eq!(answer.body["reason"], "BadRequest");
    }
    let other_app = "?labelSelector=app.kubernetes.io%2Finstance%3Dagents%2Capp.kubernetes.io%2Fname%3Dsomething-else";
    let answer = request(&running, client, &format!("{METRIC_PATH}{other_app}"), AS_HPA).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["items"], Value::Array(vec![]));
}

#[tokio::test]
async fn an_unreachable_registry_is_503_and_writes_are_405() {
    let running = start().await;
    let client = Client::Certificate("front-proxy-client");
    let broken = request(&running, client, &format!("{METRIC_PATH}?labelSelector=app.kubernetes.io%2Finstance%3Dbroken"), AS_HPA).await;
    assert_eq!(broken.status, 503, "{}", broken.body);
    assert!(broken.body["message"].as_str().unwrap().contains("connection refused"));
    let as_admin = &[("X-Remote-User", "hpa")];
    let write = request_with_method(&running, client, "POST", "/apis/external.metrics.k8s.io/v1beta1", as_admin).await;
    assert_eq!(write.status, 405, "{}", write.body);
}

#[tokio::test]
async fn health_endpoints_answer_without_a_certificate() {
    let running = start().await;
    for path in ["/healthz", "/readyz", "/livez"] {
        let answer = request(&running, Client::Anonymous, path, &[]).await;
        assert_eq!(answer.status, 200, "{path}");
    }
    assert_eq!(outcome(&running, "unauthenticated"), 0);
}

#[tokio::test]
async fn a_renewed_serving_certificate_is_presented_on_the_next_connection() {
    let running = start().await;
    let before = request(&running, Client::Anonymous, "/healthz", &[]).await.server_certificate;
    assert_eq!(before, CertificateDer::from_pem_file(fixture("serving-ec.crt")).unwrap());
    copy_into(running.directory.path(), "tls.key", "serving-rsa-pkcs1.key");
    copy_into(running.directory.path(), "tls.crt", "serving-rsa.crt");
    let after = request(&running, Client::Anonymous, "/healthz", &[]).await.server_certificate;
    assert_eq!(after, CertificateDer::from_pem_file(fixture("serving-rsa.crt")).unwrap());
}
