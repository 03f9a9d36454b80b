//! A VirtualCluster's listener certificate on the real control plane: renewed by updating its
//! Secret (as cert-manager does), it reaches the running agent through the pod's Secret volume
//! (projected and synced the way the kubelet does, `floe_e2e::secret_volumes`) without a restart,
//! while a client keeps producing over TLS.

use super::{agent_pool, create, s3_secret, virtual_cluster, READY_TIMEOUT};
use anyhow::{ensure, Context, Result};
use floe_e2e::kafka::{self, AckLog};
use floe_e2e::kubernetes::{self, wait_for};
use floe_e2e::pki::{connect_tls, served_serial, Pki};
use floe_e2e::pod_agents::PodAgents;
use floe_operator::crd::{AgentPool, VirtualCluster};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use rcgen::DnType;
use serde_json::json;
use std::time::{Duration, Instant};

const TOPIC: &str = "rotation";

fn certificate_data(pki: &Pki) -> Result<serde_json::Value> {
    Ok(json!({"tls.crt": std::fs::read_to_string(pki.path("server.crt"))?, "tls.key": std::fs::read_to_string(pki.path("server.key"))?}))
}

/// The serial of the certificate a new TLS connection to `bootstrap` is served.
async fn serial(pki: &Pki, bootstrap: &str) -> Result<Vec<u8>> {
    served_serial(&connect_tls(&pki.path("ca.crt"), bootstrap).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_certificate_renewed_by_updating_its_secret_is_served_without_an_agent_restart_while_a_client_keeps_producing() -> Result<()> {
    let plane = kubernetes::shared()?;
    let client = plane.client().await?;
    let namespace = plane.namespace(&client, "rotation").await?;
    let process = plane.start_operator(&namespace)?;
    s3_secret(&client, &namespace).await?;
    let pki = Pki::new()?;
    pki.issue_server()?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    create(&secrets, json!({"metadata": {"name": "listener-tls"}, "stringData": certificate_data(&pki)?})).await?;
    let clusters: Api<VirtualCluster> = Api::namespaced(client.clone(), &namespace);
    let mut cluster = virtual_cluster(plane, &namespace, "secured", "Delete");
    cluster["spec"]["listener"] = json!({"tlsSecretRef": {"name": "listener-tls"}});
    create(&clusters, cluster).await?;
    let pools: Api<AgentPool> = Api::namespaced(client.clone(), &namespace);
    create(&pools, agent_pool("secured-agents", "secured", 1)).await?;
    let logs = tempfile::Builder::new().prefix("floe-pod-agents-rotation-").tempdir()?.keep();
    let agents = PodAgents::start(client.clone(), &namespace, "secured-agents", &logs);
    let bootstrap = wait_for("the agent to serve TLS", READY_TIMEOUT, || async {
        let Some(bootstrap) = agents.bootstrap().into_iter().next() else { return Ok(None) };
        Ok((serial(&pki, &bootstrap).await? == [0x10, 0x01]).then_some(bootstrap))
    })
    .await
    .with_context(|| process.log_tail())?;

    let ca = pki.arg("ca.crt");
    let tls = [("security.protocol", "ssl"), ("ssl.ca.location", ca.as_str())];
    kafka::create_topic_with(pki.rdkafka(&bootstrap, false), TOPIC, 3).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let log = AckLog::default();
    let producer = tokio::spawn({
        let (bootstrap, log, ca) = (bootstrap.clone(), log.clone(), ca.clone());
        async move {
            let tls = [("security.protocol", "ssl"), ("ssl.ca.location", ca.as_str())];
            kafka::produce_reporting_into(&bootstrap, TOPIC, 200, &tls, stopped, log).await
        }
    });
    let started = Instant::now();
    wait_for("the producer to be acknowledged", READY_TIMEOUT, || async {
        Ok((kafka::acknowledged_after(&log, started) >= 50).then_some(()))
    })
    .await?;

    // cert-manager renews: the Secret's certificate and key are replaced together.
    pki.issue("server", &[0x20, 0x02], &[(DnType::CommonName, "localhost")], true)?;
    secrets.patch("listener-tls", &PatchParams::default(), &Patch::Merge(json!({"stringData": certificate_data(&pki)?}))).await?;
    let renewed = Instant::now();
    wait_for("new connections to get the renewed certificate", Duration::from_secs(30), || async {
        Ok((serial(&pki, &bootstrap).await? == [0x20, 0x02]).then_some(()))
    })
    .await?;
    let served_after = renewed.elapsed();
    let served = Instant::now();
    wait_for("the producer to be acknowledged after the renewal", READY_TIMEOUT, || async {
        Ok((kafka::acknowledged_after(&log, served) >= 50).then_some(()))
    })
    .await?;
    stop.send(true)?;
    let report = producer.await??;
    report.ensure_every_send_acknowledged("the producer across the renewal")?;
    ensure!(agents.exits().is_empty() && agents.running() == 1, "the agent restarted: {:?}", agents.exits());
    println!(
        "the renewed certificate was served {served_after:?} after the Secret changed; {} records acknowledged",
        report.acknowledged.len()
    );

    // Durability: every acknowledged record reads back after the agent restarted (its pod deleted
    // and replaced), over TLS with the renewed certificate.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let old = pods.list(&ListParams::default().labels("app.kubernetes.io/instance=secured-agents")).await?;
    for pod in old.items {
        pods.delete(&pod.name_any(), &DeleteParams::default()).await?;
    }
    wait_for("the replacement agent", READY_TIMEOUT, || async {
        if agents.exits().is_empty() {
            return Ok(None);
        }
        let Some(bootstrap) = agents.bootstrap().into_iter().next() else { return Ok(None) };
        Ok((serial(&pki, &bootstrap).await? == [0x20, 0x02]).then_some(bootstrap))
    })
    .await
    .with_context(|| process.log_tail())?;
    let replacement = agents.bootstrap().into_iter().next().context("no agent")?;
    let mut config = kafka::config(&replacement);
    for (key, value) in tls {
        config.set(key, value);
    }
    kafka::verify_acknowledged_with(config, TOPIC, 3, &report.acknowledged)?;

    drop(agents);
    drop(process);
    plane.delete_namespace(&client, &namespace).await;
    Ok(())
}
