//! The agent registry in etcd: each agent claims `agents/<node id>` with a create-only
//! transaction attached to its lease (the lowest free id wins, so ids stay small and stable for
//! the agent's life), keeps the lease alive, republishes its load, and watches the prefix to know
//! who is live.

use super::load::Load;
use super::{ClusterView, NodeInfo};
use crate::metadata::keys::KeyLayout;
use etcd_client::{Client, Compare, CompareOp, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// What an agent publishes about itself: one definition, shared with the operator's metrics API
/// (`floe_meta::agents`).
pub use floe_meta::agents::AgentRecord;

fn node_of(record: &AgentRecord) -> NodeInfo {
    NodeInfo { node_id: record.node_id, host: record.host.clone(), port: record.port, rack: record.zone.clone() }
}

fn set_load(record: &mut AgentRecord, load: &Load) {
    record.bytes_in_per_second = load.bytes_in_per_second;
    record.bytes_out_per_second = load.bytes_out_per_second;
    record.object_store_bytes_per_second = load.object_store_bytes_per_second;
    record.cpu_seconds_per_second = load.cpu_seconds_per_second;
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("etcd request failed while registering the agent: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("no free node id below {limit}")]
    NoFreeNodeId { limit: i32 },
    #[error("failed to publish the agent record of node {node_id}: {source}")]
    Publish { node_id: i32, source: etcd_client::Error },
    #[error("failed to revoke the registry lease of node {node_id}: {source}")]
    Revoke { node_id: i32, source: etcd_client::Error },
}

/// The one writer of this agent's key.
struct Publisher {
    client: Client,
    keys: KeyLayout,
    lease: i64,
    ttl_seconds: i64,
    /// Set by `leave`: nothing is written or re-registered afterwards.
    left: bool,
}

pub struct Registry {
    local: RwLock<AgentRecord>,
    live: RwLock<BTreeMap<i32, AgentRecord>>,
    /// Every write of our key (load, draining, re-registration after a lost lease) happens under
    /// this lock and reads the local record inside it, so an older record never lands in etcd
    /// after a newer one (a load report racing the draining mark would otherwise undo it).
    publisher: tokio::sync::Mutex<Publisher>,
}

const MAX_NODE_ID: i32 = 100_000;

impl Registry {
    /// Registers this agent and starts the tasks that keep the registration alive (a keep-alive
    /// every third of `ttl`) and the live view current. Load is published by `publish_load`.
    pub async fn join(
        mut client: Client,
        keys: KeyLayout,
        mut record: AgentRecord,
        ttl: Duration,
    ) -> Result<(Arc<Self>, Vec<tokio::task::JoinHandle<()>>), RegistryError> {
        let ttl_seconds = ttl.as_secs().max(2) as i64;
        let lease = client.lease_grant(ttl_seconds, None).await?.id();
        record.node_id = claim(&mut client, &keys, lease, &record, None).await?;
        tracing::info!(node_id = record.node_id, pod = ?record.pod, pool = ?record.pool, "registered in the agent registry");
        let registry = Arc::new(Self {
            local: RwLock::new(record.clone()),
            live: RwLock::new(BTreeMap::from([(record.node_id, record)])),
            publisher: tokio::sync::Mutex::new(Publisher { client: client.clone(), keys: keys.clone(), lease, ttl_seconds, left: false }),
        });
        let keeper = tokio::spawn(Arc::clone(&registry).keep_registered(client.clone()));
        let watcher = tokio::spawn(Arc::clone(&registry).watch_live(client, keys));
        Ok((registry, vec![keeper, watcher]))
    }

    pub fn local_record(&self) -> AgentRecord {
        self.local.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    pub fn live_records(&self) -> Vec<AgentRecord> {
        self.live.read().unwrap_or_else(|poisoned| poisoned.into_inner()).values().cloned().collect()
    }

    fn update_local(&self, change: impl FnOnce(&mut AgentRecord)) -> AgentRecord {
        let mut local = self.local.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        change(&mut local);
        local.clone()
    }

    /// Writes the local record under the current lease. The caller holds the publisher lock.
    async fn put_local(&self, publisher: &mut Publisher) -> Result<(), RegistryError> {
        let record = self.local_record();
        let value = serde_json::to_vec(&record).unwrap_or_default();
        let options = PutOptions::new().with_lease(publisher.lease);
        publisher
            .client
            .put(publisher.keys.agent_key(record.node_id), value, Some(options))
            .await
            .map(|_| ())
            .map_err(|source| RegistryError::Publish { node_id: record.node_id, source })
    }

    /// Publishes the load of the last period (a failure is logged; the next period retries).
    /// Publishes the load of the last period and the bucket's health as this agent sees it.
    pub async fn publish_load(&self, load: Load, bucket_problem: Option<String>) {
        let mut publisher = self.publisher.lock().await;
        if publisher.left {
            return;
        }
        self.update_local(|record| {
            set_load(record, &load);
            record.bucket_problem = bucket_problem;
        });
        if let Err(error) = self.put_local(&mut publisher).await {
            tracing::warn!(%error, "failed to publish agent load");
        }
    }

    /// Marks this agent draining: at once in its own view (it stops naming itself leader or
    /// coordinator), then in etcd with one put, so every other agent drops it from Metadata and
    /// from placement.
    pub async fn mark_draining(&self) -> Result<(), RegistryError> {
        self.update_local(|record| record.draining = true);
        let mut publisher = self.publisher.lock().await;
        if publisher.left {
            return Ok(());
        }
        self.put_local(&mut publisher).await
    }

    /// Revokes the lease, which deletes this agent's key at once (instead of after the TTL), and
    /// stops the keep-alive from registering again.
    pub async fn leave(&self) -> Result<(), RegistryError> {
        let mut publisher = self.publisher.lock().await;
        publisher.left = true;
        let lease = publisher.lease;
        let node_id = self.local_record().node_id;
        publisher.client.lease_revoke(lease).await.map(|_| ()).map_err(|source| RegistryError::Revoke { node_id, source })
    }

    async fn keep_registered(self: Arc<Self>, mut client: Client) {
        let ttl_seconds = self.publisher.lock().await.ttl_seconds;
        let period = Duration::from_secs((ttl_seconds as u64 / 3).max(1));
        loop {
            tokio::time::sleep(period).await;
            let lease = {
                let publisher = self.publisher.lock().await;
                if publisher.left {
                    return;
                }
                publisher.lease
            };
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
            if alive {
                continue;
            }
            // The lease expired (a long pause or an etcd outage): claim again, preferring the
            // same node id so clients' view stays stable.
            let mut guard = self.publisher.lock().await;
            let publisher = &mut *guard;
            if publisher.left {
                return;
            }
            let record = self.local_record();
            tracing::warn!(node_id = record.node_id, "registry lease expired; registering again");
            let Ok(granted) = publisher.client.lease_grant(publisher.ttl_seconds, None).await else { continue };
            publisher.lease = granted.id();
            match claim(&mut publisher.client, &publisher.keys, publisher.lease, &record, Some(record.node_id)).await {
                Ok(node_id) if node_id != record.node_id => {
                    tracing::error!(
                        old = record.node_id,
                        new = node_id,
                        "node id was taken while the lease was lost; continuing with a new id"
                    );
                    self.update_local(|record| record.node_id = node_id);
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "failed to register again"),
            }
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
            if let Ok(record) = AgentRecord::decode(kv.value()) {
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
                        if let Ok(record) = AgentRecord::decode(kv.value()) {
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
        node_of(&self.local_record())
    }

    fn live(&self) -> Vec<NodeInfo> {
        live_view(&self.local_record(), &self.live_records())
    }

    fn advertised(&self) -> Vec<NodeInfo> {
        advertised_view(&self.local_record(), &self.live_records())
    }

    fn live_serving(&self, traffic: super::Traffic) -> Vec<NodeInfo> {
        serving_view(&self.local_record(), &self.live_records(), traffic)
    }

    fn serves(&self, traffic: super::Traffic) -> bool {
        super::roles_serve(&self.local.read().unwrap_or_else(|poisoned| poisoned.into_inner()).roles, traffic)
    }

    /// Called on every produce and fetch: the common case (not draining) reads one flag.
    fn handing_over(&self) -> bool {
        if !self.local.read().unwrap_or_else(|poisoned| poisoned.into_inner()).draining {
            return false;
        }
        let local = self.local_record();
        live_view(&local, &self.live_records()).iter().all(|node| node.node_id != local.node_id)
    }
}

/// The live view limited to the agents that serve what `local` serves (`ClusterView::advertised`).
/// Like the live view it is never empty: a draining agent with no compatible peer left keeps
/// advertising itself rather than agents that would refuse its clients' requests.
fn advertised_view(local: &AgentRecord, records: &[AgentRecord]) -> Vec<NodeInfo> {
    let compatible: Vec<AgentRecord> = records.iter().filter(|record| serves_what(record, local)).cloned().collect();
    live_view(local, &compatible)
}

/// The live view limited to the agents that serve `traffic` (`ClusterView::live_serving`); the same
/// on every agent, whatever its own roles, as coordinator placement needs.
fn serving_view(local: &AgentRecord, records: &[AgentRecord], traffic: super::Traffic) -> Vec<NodeInfo> {
    let serving: Vec<AgentRecord> = records.iter().filter(|record| super::roles_serve(&record.roles, traffic)).cloned().collect();
    let local_serves = super::roles_serve(&local.roles, traffic);
    live_view(local, &serving).into_iter().filter(|node| node.node_id != local.node_id || local_serves).collect()
}

/// Whether `record` serves every kind of client traffic `local` serves (so `local`'s clients may
/// be led to it).
fn serves_what(record: &AgentRecord, local: &AgentRecord) -> bool {
    super::Traffic::ALL.into_iter().all(|traffic| !super::roles_serve(&local.roles, traffic) || super::roles_serve(&record.roles, traffic))
}

/// Live agents that are not draining, sorted by node id. The local agent's own draining flag
/// comes from its local record (set before the etcd put reaches the watch); a draining agent
/// stays in its own view only while nothing else is live, so Metadata never lists zero brokers.
fn live_view(local: &AgentRecord, records: &[AgentRecord]) -> Vec<NodeInfo> {
    let mut nodes: Vec<NodeInfo> =
        records.iter().filter(|record| !record.draining && record.node_id != local.node_id).map(node_of).collect();
    if !local.draining || nodes.is_empty() {
        nodes.push(node_of(local));
    }
    nodes.sort_by_key(|node| node.node_id);
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(node_id: i32, draining: bool) -> AgentRecord {
        AgentRecord { node_id, host: "127.0.0.1".into(), port: 9000 + node_id, draining, ..AgentRecord::default() }
    }

    fn ids(nodes: &[NodeInfo]) -> Vec<i32> {
        nodes.iter().map(|node| node.node_id).collect()
    }

    #[test]
    fn coordinators_of_a_traffic_are_placed_over_the_agents_serving_it_whichever_agent_asks() {
        use super::super::Traffic;
        let records =
            [with_roles(1, &["produce", "jobs"]), with_roles(2, &["produce"]), with_roles(3, &["fetch"]), with_roles(4, &["fetch"])];
        for local in &records {
            assert_eq!(ids(&serving_view(local, &records, Traffic::Fetch)), [3, 4], "asked at {}", local.node_id);
            assert_eq!(ids(&serving_view(local, &records, Traffic::Produce)), [1, 2], "asked at {}", local.node_id);
        }
        let everything = [record(1, false), record(2, false)];
        assert_eq!(ids(&serving_view(&everything[0], &everything, Traffic::Fetch)), [1, 2], "no roles serves everything");
    }

    #[test]
    fn a_draining_agent_leaves_its_own_view_and_everyone_elses() {
        let others = [record(1, false), record(2, false), record(3, true)];
        assert_eq!(ids(&live_view(&record(2, false), &others)), [1, 2], "another agent's draining flag hides it");
        // Before the watch has even seen our own put, the local flag takes us out.
        assert_eq!(ids(&live_view(&record(2, true), &others)), [1]);
    }

    #[test]
    fn the_last_agent_stays_advertised_while_it_drains() {
        assert_eq!(ids(&live_view(&record(4, true), &[record(4, true), record(5, true)])), [4]);
    }

    fn with_roles(node_id: i32, roles: &[&str]) -> AgentRecord {
        AgentRecord { roles: roles.iter().map(|role| role.to_string()).collect(), ..record(node_id, false) }
    }

    #[test]
    fn clients_are_led_only_to_agents_that_serve_what_their_bootstrap_agent_serves() {
        let pools = [
            with_roles(1, &["produce", "jobs"]),
            with_roles(2, &["produce"]),
            with_roles(3, &["fetch"]),
            with_roles(4, &["fetch"]),
            with_roles(5, &["produce", "fetch", "jobs"]),
            with_roles(6, &["jobs"]),
        ];
        assert_eq!(ids(&advertised_view(&pools[1], &pools)), [1, 2, 5], "a produce pool's clients see produce agents");
        assert_eq!(ids(&advertised_view(&pools[2], &pools)), [3, 4, 5], "a fetch pool's clients see fetch agents");
        assert_eq!(ids(&advertised_view(&pools[4], &pools)), [5], "an all-round agent's clients see all-round agents");
        assert_eq!(ids(&advertised_view(&pools[5], &pools)), [1, 2, 3, 4, 5, 6], "a jobs-only agent serves no traffic of its own");
        // All coordinators are placed over the whole live set, whatever the roles.
        assert_eq!(ids(&live_view(&pools[1], &pools)), [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn a_draining_agent_without_compatible_peers_advertises_itself_not_an_agent_that_would_refuse() {
        let local = AgentRecord { draining: true, ..with_roles(1, &["produce"]) };
        assert_eq!(ids(&advertised_view(&local, &[local.clone(), with_roles(2, &["fetch"])])), [1]);
        assert_eq!(ids(&advertised_view(&local, &[local.clone(), with_roles(2, &["fetch"]), with_roles(3, &["produce"])])), [3]);
    }
}
