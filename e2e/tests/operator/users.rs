//! KafkaUser resources on the real control plane: the operator writes the user's credential and
//! ACLs into its virtual cluster's journal, real agents (one process per KWOK pod) authenticate
//! librdkafka with the generated Secret, another virtual cluster's agents refuse the same
//! credentials, and deleting the KafkaUser revokes it.

use super::{agent_pool, create, s3_secret, virtual_cluster, READY_TIMEOUT};
use anyhow::{bail, ensure, Context, Result};
use floe_e2e::kafka;
use floe_e2e::kubernetes::{self, wait_for};
use floe_e2e::pod_agents::PodAgents;
use floe_e2e::{http_get, metric_value};
use floe_operator::crd::{AgentPool, KafkaUser, VirtualCluster};
use k8s_openapi::api::core::v1::Secret;
use kube::api::DeleteParams;
use kube::Api;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;
use serde_json::json;
use std::time::{Duration, Instant};

/// librdkafka over SASL_PLAINTEXT with SCRAM-SHA-512; failures surface within seconds.
fn scram(bootstrap: &str, user: &str, password: &str) -> ClientConfig {
    let mut config = kafka::scram_plaintext(bootstrap, user, password);
    config.set("message.timeout.ms", "3000");
    config
}

fn ready_reason(user: &KafkaUser) -> Option<(String, String)> {
    let condition = user.status.as_ref()?.conditions.iter().find(|condition| condition.type_ == "Ready")?;
    Some((condition.status.clone(), condition.reason.clone()))
}

/// One agent of `pool` answering on its Kafka port.
async fn serving(agents: &PodAgents, pool: &str) -> Result<String> {
    wait_for(&format!("an agent of {pool}"), READY_TIMEOUT, || async {
        let Some(bootstrap) = agents.bootstrap().into_iter().next() else { return Ok(None) };
        Ok(std::net::TcpStream::connect(&bootstrap).is_ok().then_some(bootstrap))
    })
    .await
}

fn metric(agents: &PodAgents, name: &str) -> Result<f64> {
    let address = agents.http_addresses().into_iter().next().context("no agent running")?;
    let (_, text) = http_get(&address, "/metrics")?;
    Ok(metric_value(&text, name).unwrap_or(0.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kafka_user_authenticates_with_its_generated_secret_is_refused_by_another_virtual_cluster_and_is_revoked_within_ten_seconds(
) -> Result<()> {
    let plane = kubernetes::shared()?;
    let client = plane.client().await?;
    let namespace = plane.namespace(&client, "users").await?;
    let process = plane.start_operator(&namespace)?;
    s3_secret(&client, &namespace).await?;
    let clusters: Api<VirtualCluster> = Api::namespaced(client.clone(), &namespace);
    let pools: Api<AgentPool> = Api::namespaced(client.clone(), &namespace);
    let users: Api<KafkaUser> = Api::namespaced(client.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    for name in ["alpha", "beta"] {
        let mut cluster = virtual_cluster(plane, &namespace, name, "Delete");
        cluster["spec"]["listener"] = json!({"authentication": {"type": "scram-sha-512"}, "authorization": {"type": "acls"}});
        create(&clusters, cluster).await?;
        create(&pools, agent_pool(&format!("{name}-agents"), name, 1)).await?;
    }
    let logs = tempfile::Builder::new().prefix("floe-pod-agents-users-").tempdir()?.keep();
    let alpha = PodAgents::start(client.clone(), &namespace, "alpha-agents", &logs);
    let beta = PodAgents::start(client.clone(), &namespace, "beta-agents", &logs);

    // A user of a VirtualCluster that does not exist says so, and deleting it is not held up.
    create(
        &users,
        json!({"apiVersion": "floe.dev/v1alpha1", "kind": "KafkaUser", "metadata": {"name": "ghost"},
               "spec": {"virtualClusterRef": {"name": "missing"}, "authentication": {"type": "scram-sha-512"}}}),
    )
    .await?;
    wait_for("ghost to report VirtualClusterNotFound", READY_TIMEOUT, || async {
        Ok((ready_reason(&users.get("ghost").await?) == Some(("False".into(), "VirtualClusterNotFound".into()))).then_some(()))
    })
    .await
    .with_context(|| process.log_tail())?;
    users.delete("ghost", &DeleteParams::default()).await?;

    create(
        &users,
        json!({"apiVersion": "floe.dev/v1alpha1", "kind": "KafkaUser", "metadata": {"name": "orders-app"},
               "spec": {"virtualClusterRef": {"name": "alpha"}, "authentication": {"type": "scram-sha-512"},
                        "authorization": {"acls": [{"resource": {"type": "topic", "name": "orders"}, "operations": ["All"]}]}}}),
    )
    .await?;
    let user = wait_for("orders-app Ready", READY_TIMEOUT, || async {
        let user = users.get("orders-app").await?;
        match ready_reason(&user) {
            Some((status, _)) if status == "True" => Ok(Some(user)),
            other => bail!("Ready is {other:?}"),
        }
    })
    .await
    .with_context(|| process.log_tail())?;
    let status = user.status.context("no status")?;
    assert_eq!((status.username.as_deref(), status.secret.as_deref()), (Some("orders-app"), Some("orders-app")));
    let secret = secrets.get("orders-app").await?;
    let data = secret.data.context("the generated Secret is empty")?;
    let field = |key: &str| data.get(key).map(|value| String::from_utf8_lossy(&value.0).to_string()).unwrap_or_default();
    let password = field("password");
    assert!(password.len() >= 32, "a generated password of {} characters", password.len());
    assert_eq!(field("username"), "orders-app");
    assert!(field("sasl.jaas.config").contains(&format!("password=\"{password}\"")), "{}", field("sasl.jaas.config"));

    // The user creates its topic and produces on alpha with the generated password.
    let alpha_bootstrap = serving(&alpha, "alpha-agents").await?;
    let beta_bootstrap = serving(&beta, "beta-agents").await?;
    kafka::create_topic_with(scram(&alpha_bootstrap, "orders-app", &password), "orders", 1).await?;
    let producer: FutureProducer = scram(&alpha_bootstrap, "orders-app", &password).set("enable.idempotence", "false").create()?;
    kafka::produce_indexed(&producer, "orders", 0..20).await?;

    // Its ACLs are exactly the spec's: another topic is refused.
    let refused = kafka::create_topic_with(scram(&alpha_bootstrap, "orders-app", &password), "payments", 1).await;
    let refused = refused.err().context("orders-app created a topic its ACLs do not cover")?.to_string();
    assert!(refused.contains("authoriz"), "creating payments failed with {refused}");

    // beta's agents never heard of the user: the same credentials fail authentication there.
    let failures = "floe_sasl_authentications_total{mechanism=\"SCRAM-SHA-512\",outcome=\"failure\"}";
    let before = metric(&beta, failures)?;
    let consumer: BaseConsumer = scram(&beta_bootstrap, "orders-app", &password).create()?;
    ensure!(consumer.fetch_metadata(None, Duration::from_secs(5)).is_err(), "alpha's user was served by beta's agents");
    drop(consumer);
    ensure!(metric(&beta, failures)? > before, "beta did not count a failed authentication");

    // Deleting the user: its open connection is closed, new ones are refused, within 10 s.
    users.delete("orders-app", &DeleteParams::default()).await?;
    let deleted = Instant::now();
    // The operator removes the ACLs and the credential; the producer's connection is closed at
    // its next request.
    let mut next = 20;
    wait_for("the agent to close the deleted user's connection", Duration::from_secs(10), || {
        next += 1;
        let producer = &producer;
        let alpha = &alpha;
        async move {
            let _ = tokio::time::timeout(Duration::from_millis(200), kafka::produce_indexed(producer, "orders", next..next + 1)).await;
            Ok((metric(alpha, "floe_sasl_sessions_revoked_total")? >= 1.0).then_some(()))
        }
    })
    .await
    .with_context(|| process.log_tail())?;
    let revoked = deleted.elapsed();
    wait_for("the deleted user's producer to be refused", Duration::from_secs(20), || {
        next += 1;
        let producer = &producer;
        async move { Ok(kafka::produce_indexed(producer, "orders", next..next + 1).await.is_err().then_some(())) }
    })
    .await
    .with_context(|| process.log_tail())?;
    let cut_off = deleted.elapsed();
    let consumer: BaseConsumer = scram(&alpha_bootstrap, "orders-app", &password).create()?;
    ensure!(consumer.fetch_metadata(None, Duration::from_secs(3)).is_err(), "a new connection of the deleted user was served");
    println!("the deleted KafkaUser's connection was closed {revoked:?} and its producer refused {cut_off:?} after the deletion");
    drop(producer);
    // Its Secret goes with it (owned; the garbage collector deletes it).
    wait_for("the generated Secret to be deleted", READY_TIMEOUT, || async {
        Ok(secrets.get_opt("orders-app").await?.is_none().then_some(()))
    })
    .await?;
    ensure!(users.get_opt("orders-app").await?.is_none(), "the KafkaUser's finalizer did not finish");

    drop(alpha);
    drop(beta);
    drop(process);
    plane.delete_namespace(&client, &namespace).await;
    Ok(())
}
