//! The etcd journal backend. Appends are create-only transactions on `log/<entry id>`, so a retry
//! after an unknown outcome can never append twice; the create revision is the total order. A
//! watch on the log prefix feeds every record, this agent's and others', to the replica in
//! revision order. On start, and whenever the watch falls behind etcd compaction, the replica is
//! rebuilt from the latest snapshot plus the journal tail.
//!
//! Only direct children of the log prefix (`log/<id>`, no further `/`) are this cluster's records.
//! Deeper keys belong to another virtual cluster whose etcd prefix sits under ours (the operator
//! refuses such a VirtualCluster, but a hand-run agent may not); they are skipped, never decoded.

use super::journal::{JournalBackend, JournalError};
use super::keys::KeyLayout;
use super::records::JournalEntry;
use super::replica::Replica;
use super::snapshot::{self, SnapshotPointer};
use crate::storage::SegmentStore;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

/// etcd refuses requests over 1.5 MiB; stay well below it.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// How to reach etcd.
#[derive(Debug, Clone, Default)]
pub struct EtcdSettings {
    pub endpoints: Vec<String>,
    pub prefix: String,
    pub user: Option<(String, String)>,
    pub ca_file: Option<std::path::PathBuf>,
    pub cert_file: Option<std::path::PathBuf>,
    pub key_file: Option<std::path::PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("failed to connect to etcd at {endpoints:?}: {source}")]
    Connect { endpoints: Vec<String>, source: etcd_client::Error },
    #[error("failed to read the TLS file {path}: {source}")]
    TlsFile { path: std::path::PathBuf, source: std::io::Error },
    #[error("etcd request failed: {0}")]
    Request(#[from] etcd_client::Error),
    #[error("failed to load snapshot: {0}")]
    Snapshot(#[from] snapshot::SnapshotError),
    #[error("malformed value under {key}: {reason}")]
    Malformed { key: String, reason: String },
}

pub async fn connect(settings: &EtcdSettings) -> Result<Client, EtcdError> {
    let mut options =
        ConnectOptions::new().with_keep_alive(Duration::from_secs(5), Duration::from_secs(5)).with_connect_timeout(Duration::from_secs(5));
    if let Some((user, password)) = &settings.user {
        options = options.with_user(user.clone(), password.clone());
    }
    if settings.ca_file.is_some() || settings.cert_file.is_some() {
        let read = |path: &std::path::PathBuf| std::fs::read(path).map_err(|source| EtcdError::TlsFile { path: path.clone(), source });
        let mut tls = etcd_client::TlsOptions::new();
        if let Some(ca) = &settings.ca_file {
            tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
        }
        if let (Some(cert), Some(key)) = (&settings.cert_file, &settings.key_file) {
            tls = tls.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
        }
        options = options.with_tls(tls);
    }
    Client::connect(&settings.endpoints, Some(options))
        .await
        .map_err(|source| EtcdError::Connect { endpoints: settings.endpoints.clone(), source })
}

pub struct EtcdJournal {
    client: Client,
    keys: KeyLayout,
    metrics: Arc<crate::metrics::Metrics>,
}

impl EtcdJournal {
    /// Catches the replica up (snapshot + tail) and starts the watch task that keeps it current.
    pub async fn open(
        client: Client,
        keys: KeyLayout,
        replica: Arc<Replica>,
        store: Arc<SegmentStore>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), EtcdError> {
        let mut follower = Follower {
            client: client.clone(),
            keys: keys.clone(),
            replica,
            store,
            metrics: Some(Arc::clone(&metrics)),
            warned_foreign: false,
        };
        let start = follower.catch_up().await?;
        let task = tokio::spawn(async move { follower.follow(start).await });
        Ok((Self { client, keys, metrics }, task))
    }
}

/// Loads the current state (snapshot plus journal tail) into `replica` once, without following.
pub async fn load(client: Client, keys: KeyLayout, replica: Arc<Replica>, store: Arc<SegmentStore>) -> Result<(), EtcdError> {
    Follower { client, keys, replica, store, metrics: None, warned_foreign: false }.catch_up().await.map(|_| ())
}

impl JournalBackend for EtcdJournal {
    fn append<'a>(&'a self, entry: &'a JournalEntry) -> BoxFuture<'a, Result<u64, JournalError>> {
        Box::pin(async move {
            let value = serde_json::to_vec(entry)?;
            if value.len() > MAX_RECORD_BYTES {
                return Err(JournalError::TooLarge { bytes: value.len(), limit: MAX_RECORD_BYTES });
            }
            let key = self.keys.log_key(&entry.id);
            let mut client = self.client.clone();
            let mut delay = Duration::from_millis(50);
            let mut last_error = String::new();
            // Retrying with the same key is safe: the transaction only creates.
            for _ in 0..12 {
                let txn = Txn::new()
                    .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(key.clone(), value.clone(), None)])
                    .or_else([TxnOp::get(key.clone(), None)]);
                self.metrics.etcd_transactions.with_label_values(&[entry.record.kind()]).inc();
                match client.txn(txn).await {
                    Ok(response) if response.succeeded() => {
                        let revision = response.header().map(|header| header.revision()).unwrap_or_default();
                        self.metrics.journal_appends.with_label_values(&[entry.record.kind()]).inc();
                        return Ok(revision as u64);
                    }
                    Ok(response) => {
                        // An earlier attempt whose answer was lost did create it.
                        for op in response.op_responses() {
                            if let TxnOpResponse::Get(get) = op {
                                if let Some(kv) = get.kvs().first() {
                                    self.metrics.journal_appends.with_label_values(&[entry.record.kind()]).inc();
                                    return Ok(kv.create_revision() as u64);
                                }
                            }
                        }
                        last_error = "the create-only transaction failed but the key is missing".to_string();
                    }
                    Err(error) => {
                        tracing::warn!(%error, key, "journal append failed; retrying with the same key");
                        last_error = error.to_string();
                    }
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(JournalError::Unavailable { reason: last_error })
        })
    }
}

/// Keeps one replica in step with the journal.
struct Follower {
    client: Client,
    keys: KeyLayout,
    replica: Arc<Replica>,
    store: Arc<SegmentStore>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Whether a foreign key under the log prefix was already reported.
    warned_foreign: bool,
}

/// Pure: whether `key` is one of this cluster's journal records, a direct child `<log
/// prefix><id>` with a non-empty id and no further `/`. Anything deeper belongs to another
/// virtual cluster whose prefix lies under ours.
pub fn is_own_log_key(log_prefix: &str, key: &[u8]) -> bool {
    key.strip_prefix(log_prefix.as_bytes()).is_some_and(|id| !id.is_empty() && !id.contains(&b'/'))
}

impl Follower {
    /// Loads a newer snapshot if there is one, applies the journal tail, and returns the revision
    /// to watch from.
    async fn catch_up(&mut self) -> Result<i64, EtcdError> {
        let pointer_key = self.keys.snapshot_pointer();
        let pointer = self.client.get(pointer_key.clone(), None).await?;
        if let Some(kv) = pointer.kvs().first() {
            let pointer: SnapshotPointer = serde_json::from_slice(kv.value())
                .map_err(|error| EtcdError::Malformed { key: pointer_key.clone(), reason: error.to_string() })?;
            if pointer.revision > self.replica.applied_revision() {
                let state = snapshot::read(&self.store, &pointer).await?;
                tracing::info!(revision = pointer.revision, object = pointer.object, "loaded metadata snapshot");
                self.replica.reset(state);
                if let Some(metrics) = &self.metrics {
                    metrics.snapshot_loads.inc();
                }
            }
        }
        let options = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend)
            .with_min_create_revision(self.replica.applied_revision() as i64 + 1);
        let tail = self.client.get(self.keys.log_prefix(), Some(options)).await?;
        let header_revision = tail.header().map(|header| header.revision()).unwrap_or_default();
        for kv in tail.kvs() {
            self.apply(kv.create_revision(), kv.key(), kv.value())?;
        }
        Ok(header_revision + 1)
    }

    fn apply(&mut self, revision: i64, key: &[u8], value: &[u8]) -> Result<(), EtcdError> {
        if !is_own_log_key(&self.keys.log_prefix(), key) {
            if !self.warned_foreign {
                self.warned_foreign = true;
                tracing::warn!(
                    key = %String::from_utf8_lossy(key),
                    "skipping a key under this virtual cluster's journal that is not one of its records: another virtual \
                     cluster's etcd prefix lies inside this one's; give it a prefix of its own (reported once)"
                );
            }
            return Ok(());
        }
        let entry: JournalEntry = serde_json::from_slice(value)
            .map_err(|error| EtcdError::Malformed { key: String::from_utf8_lossy(key).to_string(), reason: error.to_string() })?;
        self.replica.apply(revision as u64, &entry);
        Ok(())
    }

    async fn follow(&mut self, mut start: i64) {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.watch_from(start).await {
                Ok(()) => tracing::info!("journal watch ended; catching up"),
                Err(error) => {
                    tracing::warn!(%error, "journal watch failed; catching up");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
            match self.catch_up().await {
                Ok(next) => {
                    start = next;
                    delay = Duration::from_millis(100);
                }
                Err(error) => {
                    tracing::warn!(%error, "failed to catch up with the journal; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Applies watch events until the watch ends (compaction, cancellation or a stream error).
    async fn watch_from(&mut self, start: i64) -> Result<(), EtcdError> {
        let options = WatchOptions::new().with_prefix().with_start_revision(start);
        let mut stream = self.client.watch(self.keys.log_prefix(), Some(options)).await?;
        while let Some(response) = stream.message().await? {
            if response.compact_revision() > 0 {
                tracing::warn!(
                    compacted = response.compact_revision(),
                    "journal watch fell behind etcd compaction; reloading the snapshot"
                );
                return Ok(());
            }
            if response.canceled() {
                return Ok(());
            }
            if let (Some(metrics), Some(header)) = (&self.metrics, response.header()) {
                let last_event = response.events().last().and_then(|event| event.kv()).map(|kv| kv.create_revision());
                let applied = last_event.unwrap_or(self.replica.applied_revision() as i64);
                metrics.replica_lag_revisions.set((header.revision() - applied).max(0));
            }
            for event in response.events() {
                if event.event_type() != EventType::Put {
                    continue;
                }
                if let Some(kv) = event.kv() {
                    self.apply(kv.create_revision(), kv.key(), kv.value())?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_children_of_the_log_prefix_are_this_clusters_records() {
        let keys = KeyLayout::new("/floe", "team-a.demo");
        assert!(is_own_log_key(&keys.log_prefix(), keys.log_key("01JABCDEF").as_bytes()));
    }

    #[test]
    fn keys_of_a_cluster_nested_under_the_log_prefix_are_foreign() {
        let ours = KeyLayout::new("/floe", "team-a.demo");
        let nested = KeyLayout::new("/floe/vc/team-a.demo/log", "team-b.other");
        for key in [nested.log_key("01JABCDEF"), nested.registration(), nested.agent_key(1)] {
            assert!(key.starts_with(&ours.log_prefix()), "{key} lies under our log prefix");
            assert!(!is_own_log_key(&ours.log_prefix(), key.as_bytes()), "{key}");
        }
    }

    #[test]
    fn the_bare_prefix_and_keys_outside_it_are_not_records() {
        let keys = KeyLayout::new("/floe", "team-a.demo");
        assert!(!is_own_log_key(&keys.log_prefix(), keys.log_prefix().as_bytes()));
        assert!(!is_own_log_key(&keys.log_prefix(), keys.registration().as_bytes()));
        assert!(!is_own_log_key(&keys.log_prefix(), b"/floe/vc/team-a.demo2/log/01J"));
    }
}
