//! Reconcile against a scripted apiserver (tower-test): which requests a reconcile makes, in
//! which order, and what it writes. The real apiserver suites are in e2e/tests/operator.rs.

use floe_operator::agent_pool::build::{build, BuildSettings};
use floe_operator::agent_pool::reconcile;
use floe_operator::context::Context;
use floe_operator::crd::{AgentPool, VirtualCluster};
use floe_operator::metrics::Metrics;
use http::{Request, Response, StatusCode};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use std::sync::Arc;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn fixture<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn settings() -> BuildSettings {
    BuildSettings { default_image: "ghcr.io/floe-dev/floe:0.1.0".to_string(), bandwidth_metric: true }
}

/// One expected request: method, a path fragment, and the answer.
struct Expect {
    method: &'static str,
    path: String,
    status: StatusCode,
    body: Value,
}

fn expect(method: &'static str, path: impl Into<String>, status: StatusCode, body: Value) -> Expect {
    Expect { method, path: path.into(), status, body }
}

/// Answers the script in order and returns the bodies of the writes it saw. Panics (failing the
/// test) on any request out of script.
async fn serve(mut handle: Handle, script: Vec<Expect>) -> Vec<(String, Value)> {
    let mut writes = Vec::new();
    for step in script {
        let (request, send) =
            handle.next_request().await.unwrap_or_else(|| panic!("expected {} {}, got no request", step.method, step.path));
        let uri = request.uri().to_string();
        assert_eq!(request.method().as_str(), step.method, "request {uri}");
        assert!(uri.contains(&step.path), "expected a path containing {}, got {} {uri}", step.path, request.method());
        if step.method != "GET" {
            let bytes = request.into_body().collect_bytes().await.unwrap();
            writes.push((uri, serde_json::from_slice(&bytes).unwrap_or(Value::Null)));
        }
        let response = Response::builder().status(step.status).body(Body::from(serde_json::to_vec(&step.body).unwrap())).unwrap();
        send.send_response(response);
    }
    writes
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
}

fn empty_list(kind: &str, api_version: &str) -> Value {
    json!({"kind": format!("{kind}List"), "apiVersion": api_version, "metadata": {"resourceVersion": "1"}, "items": []})
}

#[tokio::test]
async fn a_pool_whose_virtual_cluster_is_missing_says_so_in_status_and_writes_no_children() {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "team-a");
    let context = Arc::new(Context::new(client, Arc::new(Metrics::new()), settings(), "test"));
    let pool: AgentPool = fixture("agentpool-minimal.yaml");
    let mut status_object = serde_json::to_value(&pool).unwrap();
    status_object["status"] = json!({});
    let server = tokio::spawn(serve(
        handle,
        vec![
            expect("GET", "/apis/floe.dev/v1alpha1/namespaces/team-a/virtualclusters/demo", StatusCode::NOT_FOUND, not_found()),
            expect("POST", "/apis/events.k8s.io/v1/namespaces/team-a/events", StatusCode::CREATED, json!({})),
            expect("PATCH", "/apis/floe.dev/v1alpha1/namespaces/team-a/agentpools/agents/status", StatusCode::OK, status_object),
        ],
    ));
    let action = reconcile(Arc::new(pool), Arc::clone(&context)).await.unwrap();
    assert_eq!(format!("{action:?}"), format!("{:?}", kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(60))));
    let writes = server.await.unwrap();
    let (_, event) = &writes[0];
    assert_eq!(event["reason"], "VirtualClusterNotFound");
    let (_, status) = &writes[1];
    let condition = &status["status"]["conditions"][0];
    assert_eq!(
        (condition["type"].as_str(), condition["status"].as_str(), condition["reason"].as_str()),
        (Some("Ready"), Some("False"), Some("VirtualClusterNotFound"))
    );
    assert!(condition["message"].as_str().unwrap().contains("spec.virtualClusterRef.name"));
    assert_eq!(context.metrics.kubernetes_writes(), 1, "only the status");
}

fn cluster_list(clusters: &[&VirtualCluster]) -> Value {
    json!({
        "kind": "VirtualClusterList", "apiVersion": "floe.dev/v1alpha1", "metadata": {"resourceVersion": "1"},
        "items": clusters.iter().map(|cluster| serde_json::to_value(cluster).unwrap()).collect::<Vec<_>>(),
    })
}

#[tokio::test]
async fn a_pool_of_a_virtual_cluster_sharing_an_older_ones_bucket_writes_no_children_and_says_why() {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "team-a");
    let context = Arc::new(Context::new(client, Arc::new(Metrics::new()), settings(), "test"));
    let pool: AgentPool = fixture("agentpool-minimal.yaml");
    let mut cluster: VirtualCluster = fixture("virtualcluster.yaml");
    cluster.metadata.creation_timestamp = Some(serde_json::from_value(json!("2026-12-02T10:00:00Z")).unwrap());
    // An older VirtualCluster in another namespace, copied with the bucket URL unchanged.
    let mut older = cluster.clone();
    older.metadata.namespace = Some("team-b".to_string());
    older.metadata.name = Some("original".to_string());
    older.metadata.uid = Some("00000000-0000-0000-0000-000000000001".to_string());
    older.metadata.creation_timestamp = Some(serde_json::from_value(json!("2026-12-01T10:00:00Z")).unwrap());
    let mut status_object = serde_json::to_value(&pool).unwrap();
    status_object["status"] = json!({});
    let server = tokio::spawn(serve(
        handle,
        vec![
            expect(
                "GET",
                "/apis/floe.dev/v1alpha1/namespaces/team-a/virtualclusters/demo",
                StatusCode::OK,
                serde_json::to_value(&cluster).unwrap(),
            ),
            expect("GET", "/apis/floe.dev/v1alpha1/virtualclusters?", StatusCode::OK, cluster_list(&[&cluster, &older])),
            expect("POST", "/apis/events.k8s.io/v1/namespaces/team-a/events", StatusCode::CREATED, json!({})),
            expect("PATCH", "/apis/floe.dev/v1alpha1/namespaces/team-a/agentpools/agents/status", StatusCode::OK, status_object),
        ],
    ));
    reconcile(Arc::new(pool), Arc::clone(&context)).await.unwrap();
    let writes = server.await.unwrap();
    assert_eq!(writes.len(), 2, "an event and the status, no child: {writes:?}");
    assert_eq!(writes[0].1["reason"], "VirtualClusterRefused");
    let condition = &writes[1].1["status"]["conditions"][0];
    assert_eq!((condition["status"].as_str(), condition["reason"].as_str()), (Some("False"), Some("VirtualClusterRefused")));
    let message = condition["message"].as_str().unwrap();
    assert!(message.contains("team-b/original") && message.contains("is refused"), "{message}");
}

/// `cluster` as the VirtualCluster controller leaves it after a check of its current generation.
fn checked(mut cluster: VirtualCluster, ready: bool, reason: &str) -> VirtualCluster {
    cluster.metadata.generation = Some(2);
    cluster.status = Some(floe_operator::crd::virtual_cluster::VirtualClusterStatus {
        observed_generation: Some(2),
        conditions: vec![floe_operator::conditions::condition(&[], "Ready", ready, reason, "text", Some(2))],
        ..Default::default()
    });
    cluster
}

#[tokio::test]
async fn a_pool_whose_virtual_cluster_is_not_ready_writes_no_children_and_says_why() {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "team-a");
    let context = Arc::new(Context::new(client, Arc::new(Metrics::new()), settings(), "test"));
    let pool: AgentPool = fixture("agentpool-minimal.yaml");
    let cluster = checked(fixture("virtualcluster.yaml"), false, "BucketUnreachable");
    let mut status_object = serde_json::to_value(&pool).unwrap();
    status_object["status"] = json!({});
    let server = tokio::spawn(serve(
        handle,
        vec![
            expect(
                "GET",
                "/apis/floe.dev/v1alpha1/namespaces/team-a/virtualclusters/demo",
                StatusCode::OK,
                serde_json::to_value(&cluster).unwrap(),
            ),
            expect("GET", "/apis/floe.dev/v1alpha1/virtualclusters?", StatusCode::OK, cluster_list(&[&cluster])),
            expect("POST", "/apis/events.k8s.io/v1/namespaces/team-a/events", StatusCode::CREATED, json!({})),
            expect("PATCH", "/apis/floe.dev/v1alpha1/namespaces/team-a/agentpools/agents/status", StatusCode::OK, status_object),
        ],
    ));
    reconcile(Arc::new(pool), Arc::clone(&context)).await.unwrap();
    let writes = server.await.unwrap();
    assert_eq!(writes.len(), 2, "an event and the status, no child: {writes:?}");
    assert_eq!(writes[0].1["reason"], "VirtualClusterNotReady");
    let condition = &writes[1].1["status"]["conditions"][0];
    assert_eq!((condition["status"].as_str(), condition["reason"].as_str()), (Some("False"), Some("VirtualClusterNotReady")));
    let message = condition["message"].as_str().unwrap();
    assert!(message.contains("demo is not Ready (BucketUnreachable)") && message.contains("no agents start"), "{message}");
}

#[tokio::test]
async fn reconciling_a_pool_whose_children_are_current_only_reads() {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "team-a");
    let context = Arc::new(Context::new(client, Arc::new(Metrics::new()), settings(), "test"));
    let pool: AgentPool = fixture("agentpool-minimal.yaml");
    let cluster = checked(fixture("virtualcluster.yaml"), true, "Ready");
    let children = build(&pool, &cluster, &settings()).unwrap();
    // The live objects: what we applied plus what the apiserver adds.
    let live = |object: &dyn erased::Object| {
        let mut value = floe_operator::apply::as_applied(&object.value());
        value["metadata"]["resourceVersion"] = json!("7");
        value["metadata"]["generation"] = json!(1);
        value
    };
    let mut deployment = live(&children.deployment);
    deployment["spec"]["revisionHistoryLimit"] = json!(10);
    deployment["status"] =
        json!({"observedGeneration": 1, "replicas": 3, "readyReplicas": 3, "updatedReplicas": 3, "availableReplicas": 3});
    // The pool already shows the status this reconcile computes.
    let previous = floe_operator::agent_pool::pool_status(
        &pool,
        &Default::default(),
        &serde_json::from_value(deployment.clone()).unwrap(),
        serde_json::from_value(deployment["status"].clone()).unwrap(),
        None,
    );
    let mut pool = pool;
    pool.status = Some(previous);
    let namespace = "/namespaces/team-a/";
    let server = tokio::spawn(serve(
        handle,
        vec![
            expect(
                "GET",
                format!("/apis/floe.dev/v1alpha1{namespace}virtualclusters/demo"),
                StatusCode::OK,
                serde_json::to_value(&cluster).unwrap(),
            ),
            expect("GET", "/apis/floe.dev/v1alpha1/virtualclusters?", StatusCode::OK, cluster_list(&[&cluster])),
            expect("GET", format!("/api/v1{namespace}serviceaccounts/agents-agent"), StatusCode::OK, live(&children.service_account)),
            expect("GET", format!("/api/v1{namespace}configmaps/agents-config"), StatusCode::OK, live(&children.config_map)),
            expect("GET", format!("/api/v1{namespace}services/agents-headless"), StatusCode::OK, live(&children.headless_service)),
            expect("GET", format!("/api/v1{namespace}services/agents"), StatusCode::OK, live(&children.client_service)),
            expect("GET", format!("/apis/apps/v1{namespace}deployments/agents"), StatusCode::OK, deployment.clone()),
            expect(
                "GET",
                format!("/apis/policy/v1{namespace}poddisruptionbudgets/agents"),
                StatusCode::OK,
                live(&children.disruption_budget),
            ),
            expect(
                "GET",
                format!("/apis/networking.k8s.io/v1{namespace}networkpolicies/agents-agents"),
                StatusCode::OK,
                live(children.network_policy.as_ref().expect("a NetworkPolicy by default")),
            ),
            expect("GET", format!("/apis/apps/v1{namespace}deployments/agents"), StatusCode::OK, deployment),
            expect("GET", format!("/api/v1{namespace}serviceaccounts?"), StatusCode::OK, empty_list("ServiceAccount", "v1")),
            expect("GET", format!("/api/v1{namespace}configmaps?"), StatusCode::OK, empty_list("ConfigMap", "v1")),
            expect("GET", format!("/api/v1{namespace}services?"), StatusCode::OK, empty_list("Service", "v1")),
            expect("GET", format!("/apis/apps/v1{namespace}deployments?"), StatusCode::OK, empty_list("Deployment", "apps/v1")),
            expect(
                "GET",
                format!("/apis/policy/v1{namespace}poddisruptionbudgets?"),
                StatusCode::OK,
                empty_list("PodDisruptionBudget", "policy/v1"),
            ),
            expect(
                "GET",
                format!("/apis/autoscaling/v2{namespace}horizontalpodautoscalers?"),
                StatusCode::OK,
                empty_list("HorizontalPodAutoscaler", "autoscaling/v2"),
            ),
            expect(
                "GET",
                format!("/apis/networking.k8s.io/v1{namespace}networkpolicies?"),
                StatusCode::OK,
                empty_list("NetworkPolicy", "networking.k8s.io/v1"),
            ),
        ],
    ));
    reconcile(Arc::new(pool), Arc::clone(&context)).await.unwrap();
    let writes = server.await.unwrap();
    assert!(writes.is_empty(), "unexpected writes: {writes:?}");
    assert_eq!(context.metrics.kubernetes_writes(), 0);
}

/// Serializes any child to JSON (the children are different types).
mod erased {
    pub trait Object {
        fn value(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Object for T {
        fn value(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap()
        }
    }
}
