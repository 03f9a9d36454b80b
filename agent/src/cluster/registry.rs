//! The agent registry in etcd: each agent claims `agents/<node id>` with a create-only
//! transaction attached to its lease (the lowest free id wins, so ids stay small and stable for
//! the agent's life), keeps the lease alive, republishes its load, and watches the prefix to know
//! who is live.

use super::{ClusterView, NodeInfo};
use crate::metadata::keys::KeyLayout;
use crate::metrics::Metrics;
use etcd_client::{Client, Compare, CompareOp, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// What an agent publishes about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub zone: Option<String>,
    pub roles: Vec<String>,
    #[serde(default)]
    pub draining: bool,
    /// Kafka bytes in and out per second over the last publishing period.
    #[serde(default)]
    pub bytes_in_per_second: f64,
    #[serde(default)]
    pub bytes_out_per_second: f64,
}

impl AgentRecord {
    fn node(&self) -> NodeInfo {
        NodeInfo { node_id: self.node_id, host: self.host.clone(), port: self.port, rack: self.zone.clone() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("etcd request failed while registering the agent: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("no free node id below {limit}")]
    NoFreeNodeId { limit: i32 },
}

pub struct Registry {
    local: RwLock<AgentRecord>,
    live: RwLock<BTreeMap<i32, AgentRecord>>,
}

const MAX_NODE_ID: i32 = 100_000;

impl Registry {
    /// Registers this agent and starts the tasks that keep the registration and the live view.
    pub async fn join(
        mut client: Client,
        keys: KeyLayout,
        mut record: AgentRecord,
        ttl: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<(Arc<Self>, Vec<tokio::task::JoinHandle<()>>), RegistryError> {
        let ttl_seconds = ttl.as_secs().max(2) as i64;
        let lease = client.lease_grant(ttl_seconds, None).await?.id();
        record.node_id = claim(&mut client, &keys, lease, &record, None).await?;
        tracing::info!(node_id = record.node_id, "registered in the agent registry");
        let registry = Arc::new(Self { local: RwLock::new(record.clone()), live: RwLock::new(BTreeMap::from([(record.node_id, record)])) });
        let keeper = tokio::spawn(Arc::clone(&registry).keep_registered(client.clone(), keys.clone(), lease, ttl_seconds, metrics));
        let watcher = tokio::spawn(Arc::clone(&registry).watch_live(client, keys));
        Ok((registry, vec![keeper, watcher]))
    }

    pub fn local_record(&self) -> AgentRecord {
        self.local.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    pub fn live_records(&self) -> Vec<AgentRecord> {
        self.live.read().unwrap_or_else(|poisoned| poisoned.into_inner()).values().cloned().collect()
    }

    async fn keep_registered(
        self: Arc<Self>,
        mut client: Client,
        keys: KeyLayout,
        mut lease: i64,
        ttl_seconds: i64,
        metrics: Arc<Metrics>,
    ) {
        let period = Duration::from_secs((ttl_seconds as u64 / 3).max(1));
        let mut last = (Instant::now(), metrics.bytes_in.get(), metrics.bytes_out.get());
        loop {
            tokio::time::sleep(period).await;
            let kept_alive = match client.lease_keep_alive(lease).await {
                Ok((mut keeper, mut responses)) => match keeper.keep_alive().await {
                    Ok(()) => responses.message().await.map(|response| response.is_some_and(|response| response.ttl() > 0)),
                    Err(error) => Err(error),
                },
                Err(error) => Err(error),
            };
            let alive = match kept_alive {
                Ok(alive) => alive,
                Err(error) => {
                    // A transport error says nothing about the lease; ask etcd whether it still exists
                    // before registering again (a new claim would otherwise take a second node id).
                    match client.lease_time_to_live(lease, None).await {
                        Ok(status) if status.ttl() > 0 => {
                            tracing::warn!(%error, "lease keep-alive failed; the lease is still valid");
                            continue;
                        }
                        Ok(_) => false,
                        Err(status_error) => {
                            tracing::warn!(%error, %status_error, "lease keep-alive failed and etcd is unreachable");
                            continue;
                        }
                    }
                }
            };
            let (now, bytes_in, bytes_out) = (Instant::now(), metrics.bytes_in.get(), metrics.bytes_out.get());
            let seconds = now.duration_since(last.0).as_secs_f64().max(0.001);
            let mut record = self.local_record();
            record.bytes_in_per_second = bytes_in.saturating_sub(last.1) as f64 / seconds;
            record.bytes_out_per_second = bytes_out.saturating_sub(last.2) as f64 / seconds;
            last = (now, bytes_in, bytes_out);
            if !alive {
                // The lease expired (a long pause or an etcd outage): claim again, preferring the
                // same node id so clients' view stays stable.
                tracing::warn!(node_id = record.node_id, "registry lease expired; registering again");
                let Ok(granted) = client.lease_grant(ttl_seconds, None).await else { continue };
                lease = granted.id();
                match claim(&mut client, &keys, lease, &record, Some(record.node_id)).await {
                    Ok(node_id) if node_id != record.node_id => {
                        tracing::error!(
                            old = record.node_id,
                            new = node_id,
                            "node id was taken while the lease was lost; continuing with a new id"
                        );
                        record.node_id = node_id;
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "failed to register again");
                        continue;
                    }
                }
            } else {
                let value = serde_json::to_vec(&record).unwrap_or_default();
                if let Err(error) = client.put(keys.agent_key(record.node_id), value, Some(PutOptions::new().with_lease(lease))).await {
                    tracing::warn!(%error, "failed to publish agent load");
                }
            }
            *self.local.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = record;
        }
    }

    async fn watch_live(self: Arc<Self>, mut client: Client, keys: KeyLayout) {
        loop {
            if let Err(error) = self.list_and_watch(&mut client, &keys).await {
                tracing::warn!(%error, "agent registry watch failed; listing again");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn list_and_watch(&self, client: &mut Client, keys: &KeyLayout) -> Result<(), etcd_client::Error> {
        let listing = client.get(keys.agents_prefix(), Some(GetOptions::new().with_prefix())).await?;
        let revision = listing.header().map(|header| header.revision()).unwrap_or_default();
        let mut live = BTreeMap::new();
        for kv in listing.kvs() {
            if let Ok(record) = serde_json::from_slice::<AgentRecord>(kv.value()) {
                live.insert(record.node_id, record);
            }
        }
        *self.live.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = live;
        let mut stream =
            client.watch(keys.agents_prefix(), Some(WatchOptions::new().with_prefix().with_start_revision(revision + 1))).await?;
        while let Some(response) = stream.message().await? {
            if response.canceled() || response.compact_revision() > 0 {
                return Ok(());
            }
            let mut live = self.live.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                match event.event_type() {
                    EventType::Put => {
                        if let Ok(record) = serde_json::from_slice::<AgentRecord>(kv.value()) {
                            live.insert(record.node_id, record);
                        }
                    }
                    EventType::Delete => {
                        let key = String::from_utf8_lossy(kv.key());
                        if let Some(node_id) = key.rsplit('/').next().and_then(|id| id.parse::<i32>().ok()) {
                            live.remove(&node_id);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Claims the lowest free node id (or `preferred` first) with a create-only put on the lease.
async fn claim(
    client: &mut Client,
    keys: &KeyLayout,
    lease: i64,
    record: &AgentRecord,
    preferred: Option<i32>,
) -> Result<i32, RegistryError> {
    let candidates = preferred.into_iter().chain(1..MAX_NODE_ID);
    for node_id in candidates {
        let mut record = record.clone();
        record.node_id = node_id;
        let key = keys.agent_key(node_id);
        let value = serde_json::to_vec(&record).unwrap_or_default();
        let txn = Txn::new().when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)]).and_then([TxnOp::put(
            key,
            value,
            Some(PutOptions::new().with_lease(lease)),
        )]);
        if client.txn(txn).await?.succeeded() {
            return Ok(node_id);
        }
    }
    Err(RegistryError::NoFreeNodeId { limit: MAX_NODE_ID })
}

impl ClusterView for Registry {
    fn local(&self) -> NodeInfo {
        self.local_record().node()
    }

    fn live(&self) -> Vec<NodeInfo> {
        let mut nodes: Vec<NodeInfo> = self.live_records().iter().filter(|record| !record.draining).map(AgentRecord::node).collect();
        let local = self.local();
        if !nodes.iter().any(|node| node.node_id == local.node_id) {
            nodes.push(local);
        }
        nodes.sort_by_key(|node| node.node_id);
        nodes
    }
}
