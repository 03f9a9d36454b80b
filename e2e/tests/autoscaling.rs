//! AgentPools whose agents really run: the pod harness (`floe_e2e::pod_agents`) starts a local
//! `floe agent` for every pod KWOK marks Running and SIGTERMs it when the pod goes, so scaling
//! the Deployment (by hand or by the HPA) starts and stops real agents on the test's etcd and S3.

use anyhow::{bail, Context, Result};
use floe_e2e::cluster::BUCKET;
use floe_e2e::kafka;
use floe_e2e::kubernetes::{self, wait_for};
use floe_e2e::pod_agents::PodAgents;
use floe_operator::crd::{AgentPool, VirtualCluster};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(120);

async fn create<K>(api: &Api<K>, value: serde_json::Value) -> Result<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    Ok(api.create(&PostParams::default(), &serde_json::from_value(value)?).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scaling_a_pool_starts_and_stops_real_agents_and_loses_nothing_acknowledged() -> Result<()> {
    let plane = kubernetes::shared()?;
    let client = plane.client().await?;
    let namespace = plane.namespace(&client, "harness").await?;
    let operator = plane.start_operator(&namespace)?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    create(
        &secrets,
        json!({"metadata": {"name": "s3-auth"}, "stringData": {"AWS_ACCESS_KEY_ID": "floe", "AWS_SECRET_ACCESS_KEY": "floe-secret"}}),
    )
    .await?;
    let infrastructure = &plane.infrastructure;
    create(
        &Api::<VirtualCluster>::namespaced(client.clone(), &namespace),
        json!({
            "apiVersion": "floe.dev/v1alpha1", "kind": "VirtualCluster", "metadata": {"name": "demo"},
            "spec": {
                "etcd": {"endpoints": [infrastructure.etcd_endpoint()]},
                "objectStore": {"url": format!("s3://{BUCKET}/{namespace}-demo"), "region": "us-east-1",
                    "endpoint": format!("http://127.0.0.1:{}", infrastructure.s3_port), "credentialsSecretRef": {"name": "s3-auth"}},
            },
        }),
    )
    .await?;
    let pools: Api<AgentPool> = Api::namespaced(client.clone(), &namespace);
    create(
        &pools,
        json!({"apiVersion": "floe.dev/v1alpha1", "kind": "AgentPool", "metadata": {"name": "agents"},
               "spec": {"virtualClusterRef": {"name": "demo"}, "replicas": 2, "flush": {"interval": "20ms"}, "terminationGracePeriodSeconds": 60}}),
    )
    .await?;
    let logs = tempfile::Builder::new().prefix("floe-pod-agents-").tempdir()?.keep();
    let agents = PodAgents::start(client.clone(), &namespace, "agents", &logs);
    let registry = format!("/floe/vc/{namespace}.demo/agents/");
    let registered = |count: usize| {
        let registry = registry.clone();
        async move {
            let live = infrastructure.etcd_key_count(&registry)?;
            if live == count {
                Ok(Some(()))
            } else {
                bail!("{live} agents registered, waiting for {count}")
            }
        }
    };
    wait_for("two registered agents", TIMEOUT, || registered(2)).await.with_context(|| operator.log_tail())?;
    assert_eq!(agents.running(), 2);

    let bootstrap = agents.bootstrap().join(",");
    kafka::create_topic(&bootstrap, "scaled", 6).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let producer = tokio::spawn({
        let bootstrap = bootstrap.clone();
        async move { kafka::produce_until(&bootstrap, "scaled", 500, &[("enable.idempotence", "true")], stopped).await }
    });
    // Up to three, then down to one, while the producer runs.
    pools.patch("agents", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 3}}))).await?;
    wait_for("three registered agents", TIMEOUT, || registered(3)).await?;
    pools.patch("agents", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 1}}))).await?;
    wait_for("one registered agent", TIMEOUT, || registered(1)).await?;
    wait_for("two agents to exit", TIMEOUT, || async { Ok((agents.exits().len() == 2).then_some(())) }).await?;
    stop.send(true)?;
    let (sent, acknowledged) = producer.await??;
    assert!(acknowledged.len() as u64 > sent / 2, "only {} of {sent} acknowledged", acknowledged.len());
    let survivor = agents.bootstrap().join(",");
    kafka::verify_acknowledged(&survivor, "scaled", 6, &acknowledged)?;
    for exit in agents.exits() {
        assert!(exit.drain < exit.grace, "{} took {:?} of its {:?} grace", exit.pod, exit.drain, exit.grace);
        assert_eq!(exit.code, Some(0), "{} exited with {:?} (logs in {})", exit.pod, exit.code, agents.log_directory().display());
    }
    eprintln!("sent {sent}, acknowledged {}, exits {:?}", acknowledged.len(), agents.exits());
    drop(agents);
    drop(operator);
    plane.delete_namespace(&client, &namespace).await;
    Ok(())
}
