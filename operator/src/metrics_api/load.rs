//! A pool's network load: what its agents publish in the agent registry of their VirtualCluster's
//! etcd (`<prefix>/vc/<namespace>.<name>/agents/<node id>`, JSON written by
//! `agent/src/cluster/registry.rs`). [`pool_bandwidth`] is the pure sum; [`RegistryLoad`] does
//! the I/O: AgentPool → VirtualCluster → etcd, with one etcd client per VirtualCluster kept for
//! [`CONNECTION_TTL`].
//!
//! The records are decoded with the agent's own type and decoder ([`AgentRecord::decode`], in the
//! shared crate): fields added after the first release default and unknown fields are ignored, so
//! agents older or newer than the operator are still counted.

use crate::crd::{AgentPool, VirtualCluster};
use crate::virtual_cluster::connect::{self, Unusable};
use etcd_client::GetOptions;
use floe_meta::agents::AgentRecord;
use futures::future::BoxFuture;
use kube::{Api, Client, ResourceExt};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long an etcd client is reused before the VirtualCluster's Secrets are read again.
pub const CONNECTION_TTL: Duration = Duration::from_secs(30);
/// How long reading the registry may take.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The sum over one pool's agents.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PoolBandwidth {
    /// Bytes in plus out per second of the pool's agents that are not draining.
    pub bytes_per_second: f64,
    /// Agents counted.
    pub agents: usize,
    /// Values that are not agent records (skipped).
    pub unreadable: usize,
}

fn rate(value: f64) -> f64 {
    if value.is_finite() && value > 0.0 {
        value
    } else {
        0.0
    }
}

/// Sums `bytes_in_per_second + bytes_out_per_second` over the records of `pool` that are not
/// draining (a draining agent is leaving; its load moves to the others). Records of other pools,
/// or naming no pool, do not count.
pub fn pool_bandwidth<'a>(records: impl IntoIterator<Item = &'a [u8]>, pool: &str) -> PoolBandwidth {
    let mut total = PoolBandwidth::default();
    for record in records {
        match AgentRecord::decode(record) {
            Ok(load) if load.pool.as_deref() == Some(pool) && !load.draining => {
                total.bytes_per_second += rate(load.bytes_in_per_second) + rate(load.bytes_out_per_second);
                total.agents += 1;
            }
            Ok(_) => {}
            Err(_) => total.unreadable += 1,
        }
    }
    total
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("AgentPool {namespace}/{pool} does not exist")]
    PoolNotFound { namespace: String, pool: String },
    #[error("AgentPool {namespace}/{pool} names VirtualCluster {cluster}, which does not exist")]
    VirtualClusterNotFound { namespace: String, pool: String, cluster: String },
    #[error("failed to read {what} from the Kubernetes API: {source}")]
    Kube { what: &'static str, source: kube::Error },
    #[error("VirtualCluster {namespace}/{cluster}: {source}")]
    Unusable { namespace: String, cluster: String, source: Unusable },
    #[error("failed to read the agent registry of VirtualCluster {namespace}/{cluster}: {reason}")]
    Registry { namespace: String, cluster: String, reason: String },
}

impl LoadError {
    /// A bounded label (the variant name).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::PoolNotFound { .. } => "PoolNotFound",
            Self::VirtualClusterNotFound { .. } => "VirtualClusterNotFound",
            Self::Kube { .. } => "Kube",
            Self::Unusable { .. } => "Unusable",
            Self::Registry { .. } => "Registry",
        }
    }
}

pub trait LoadSource: Send + Sync {
    /// The load of AgentPool `namespace/pool`.
    fn pool_bandwidth<'a>(&'a self, namespace: &'a str, pool: &'a str) -> BoxFuture<'a, Result<PoolBandwidth, LoadError>>;
}

struct Connection {
    /// The VirtualCluster's generation when connected: a spec change (endpoints) reconnects.
    generation: Option<i64>,
    etcd: etcd_client::Client,
    agents_prefix: String,
    opened: Instant,
}

/// Reads the agent registry of the pool's VirtualCluster.
pub struct RegistryLoad {
    client: Client,
    /// The operator's `--watch-namespace`: pools elsewhere are not ours to report.
    namespace: Option<String>,
    /// By VirtualCluster uid.
    connections: tokio::sync::Mutex<HashMap<String, Connection>>,
}

impl RegistryLoad {
    pub fn new(client: Client, namespace: Option<String>) -> Self {
        Self { client, namespace, connections: tokio::sync::Mutex::new(HashMap::new()) }
    }

    async fn connection(&self, cluster: &VirtualCluster) -> Result<(etcd_client::Client, String), LoadError> {
        let uid = cluster.uid().unwrap_or_default();
        let generation = cluster.metadata.generation;
        if let Some(connection) = self.connections.lock().await.get(&uid) {
            if connection.generation == generation && connection.opened.elapsed() < CONNECTION_TTL {
                return Ok((connection.etcd.clone(), connection.agents_prefix.clone()));
            }
        }
        let unusable =
            |source| LoadError::Unusable { namespace: cluster.namespace().unwrap_or_default(), cluster: cluster.name_any(), source };
        // Only etcd holds the agents' load: a bucket problem must not stop autoscaling.
        let (settings, keys) = connect::resolve_etcd(&self.client, cluster).await.map_err(unusable)?;
        let etcd = connect::connect_etcd(&settings).await.map_err(unusable)?;
        let agents_prefix = keys.agents_prefix();
        let mut connections = self.connections.lock().await;
        connections.retain(|_, connection| connection.opened.elapsed() < CONNECTION_TTL);
        connections
            .insert(uid, Connection { generation, etcd: etcd.clone(), agents_prefix: agents_prefix.clone(), opened: Instant::now() });
        Ok((etcd, agents_prefix))
    }
}

impl LoadSource for RegistryLoad {
    fn pool_bandwidth<'a>(&'a self, namespace: &'a str, pool: &'a str) -> BoxFuture<'a, Result<PoolBandwidth, LoadError>> {
        Box::pin(async move {
            let not_found = || LoadError::PoolNotFound { namespace: namespace.to_string(), pool: pool.to_string() };
            if self.namespace.as_deref().is_some_and(|watched| watched != namespace) {
                return Err(not_found());
            }
            let pools: Api<AgentPool> = Api::namespaced(self.client.clone(), namespace);
            let agent_pool =
                pools.get_opt(pool).await.map_err(|source| LoadError::Kube { what: "the AgentPool", source })?.ok_or_else(not_found)?;
            let cluster_name = &agent_pool.spec.virtual_cluster_ref.name;
            let clusters: Api<VirtualCluster> = Api::namespaced(self.client.clone(), namespace);
            let cluster =
                clusters.get_opt(cluster_name).await.map_err(|source| LoadError::Kube { what: "the VirtualCluster", source })?.ok_or_else(
                    || LoadError::VirtualClusterNotFound {
                        namespace: namespace.to_string(),
                        pool: pool.to_string(),
                        cluster: cluster_name.clone(),
                    },
                )?;
            let (mut etcd, prefix) = self.connection(&cluster).await?;
            let registry_error =
                |reason: String| LoadError::Registry { namespace: namespace.to_string(), cluster: cluster_name.clone(), reason };
            let response =
                match tokio::time::timeout(READ_TIMEOUT, etcd.get(prefix.as_bytes(), Some(GetOptions::new().with_prefix()))).await {
                    Ok(Ok(response)) => response,
                    failed => {
                        // Connect afresh next time: the endpoints or the credentials may have moved.
                        self.connections.lock().await.remove(&cluster.uid().unwrap_or_default());
                        return Err(registry_error(match failed {
                            Ok(Err(error)) => error.to_string(),
                            _ => format!("no answer within {}s", READ_TIMEOUT.as_secs()),
                        }));
                    }
                };
            let bandwidth = pool_bandwidth(response.kvs().iter().map(|entry| entry.value()), pool);
            if bandwidth.unreadable > 0 {
                tracing::warn!(
                    namespace,
                    pool,
                    unreadable = bandwidth.unreadable,
                    "skipped agent registry values that are not agent records"
                );
            }
            Ok(bandwidth)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_meta::keys::KeyLayout;

    #[test]
    fn the_load_of_a_pool_sums_in_and_out_of_its_agents_that_are_not_draining() {
        let records: Vec<Vec<u8>> = [
            // As the agent writes them, with the fields added for autoscaling.
            r#"{"node_id":1,"host":"a","port":9092,"zone":null,"roles":["produce"],"draining":false,"bytes_in_per_second":1000.5,"bytes_out_per_second":2000.0,"pool":"agents","pod":"agents-0","object_store_bytes_per_second":5.0,"cpu_seconds_per_second":0.5}"#,
            r#"{"node_id":2,"host":"b","port":9092,"zone":"z1","roles":[],"bytes_in_per_second":500,"bytes_out_per_second":499.5,"pool":"agents"}"#,
            // Draining, another pool, no pool (an agent older than autoscaling): not counted.
            r#"{"node_id":3,"host":"c","port":9092,"roles":[],"draining":true,"bytes_in_per_second":10000,"bytes_out_per_second":1,"pool":"agents"}"#,
            r#"{"node_id":4,"host":"d","port":9092,"roles":[],"bytes_in_per_second":7777,"pool":"other"}"#,
            r#"{"node_id":5,"host":"e","port":9092,"roles":[],"bytes_in_per_second":3333}"#,
            // Nonsense rates count as nothing rather than poisoning the sum.
            r#"{"node_id":6,"host":"f","port":9092,"roles":[],"pool":"agents","bytes_in_per_second":-5,"bytes_out_per_second":0}"#,
            // Not agent records: no JSON, or none of the fields every agent has written since the first release.
            "not json",
            r#"{"pool":"agents","bytes_in_per_second":1}"#,
        ]
        .iter()
        .map(|text| text.as_bytes().to_vec())
        .collect();
        let bandwidth = pool_bandwidth(records.iter().map(Vec::as_slice), "agents");
        assert_eq!(bandwidth, PoolBandwidth { bytes_per_second: 4000.0, agents: 3, unreadable: 2 });
        assert_eq!(pool_bandwidth(records.iter().map(Vec::as_slice), "other").bytes_per_second, 7777.0);
    }

    #[test]
    fn a_pool_without_agents_has_no_load() {
        assert_eq!(pool_bandwidth(std::iter::empty(), "agents"), PoolBandwidth::default());
    }

    #[test]
    fn the_registry_read_is_the_agents_prefix_of_the_virtual_cluster() {
        let keys = KeyLayout::new("/floe", "team-a.demo");
        assert_eq!(keys.agents_prefix(), "/floe/vc/team-a.demo/agents/");
        assert!(keys.agent_key(1).starts_with(&keys.agents_prefix()));
        assert_eq!(keys.agent_key(1), "/floe/vc/team-a.demo/agents/0000000001");
    }
}
