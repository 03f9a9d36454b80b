//! Connecting to etcd, and reading a virtual cluster's journal from it into a [`Replica`]: the
//! latest snapshot plus the journal tail. The agent follows the journal with a watch on top of
//! [`JournalReader`] (`agent/src/metadata/etcd.rs`, which also appends); the operator replays it
//! once, read-only, with [`load`].
//!
//! Only direct children of the log prefix (`log/<id>`, no further `/`) are this cluster's records.
//! Deeper keys belong to another virtual cluster whose etcd prefix sits under ours (the operator
//! refuses such a VirtualCluster, but a hand-run agent may not); they are skipped, never decoded.

use crate::bucket::SegmentStore;
use crate::keys::KeyLayout;
use crate::records::JournalEntry;
use crate::replica::Replica;
use crate::snapshot::{self, SnapshotPointer};
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse};
use std::sync::Arc;
use std::time::Duration;

/// etcd refuses requests over 1.5 MiB; stay well below it.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// Journal records asked for per etcd request while catching up (halved while a response exceeds
/// the client's gRPC message limit).
const TAIL_PAGE_RECORDS: i64 = 256;

/// The client refused a response larger than its gRPC message limit.
pub fn is_response_too_large(error: &etcd_client::Error) -> bool {
    matches!(error, etcd_client::Error::GRpcStatus(status) if status.message().contains("message length too large"))
}

/// etcd no longer holds the revision asked for (ErrCompacted).
pub fn is_compacted(error: &etcd_client::Error) -> bool {
    matches!(error, etcd_client::Error::GRpcStatus(status) if status.message().contains("required revision has been compacted"))
}

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
    #[error("a journal record of {bytes} bytes is larger than the {limit}-byte limit")]
    TooLarge { bytes: usize, limit: usize },
    #[error("malformed value under {key}: {reason}")]
    Malformed { key: String, reason: String },
}

/// The URLs to dial: `https://` when TLS is configured, else `http://`, whatever scheme (or none)
/// an endpoint was written with, so a TLS setting is never silently ignored or refused.
pub fn endpoint_urls(endpoints: &[String], tls: bool) -> Vec<String> {
    let scheme = if tls { "https" } else { "http" };
    endpoints
        .iter()
        .map(|endpoint| {
            let address = endpoint.split_once("://").map_or(endpoint.as_str(), |(_, address)| address);
            format!("{scheme}://{address}")
        })
        .collect()
}

pub async fn connect(settings: &EtcdSettings) -> Result<Client, EtcdError> {
    let tls_configured = settings.ca_file.is_some() || settings.cert_file.is_some();
    let mut options =
        ConnectOptions::new().with_keep_alive(Duration::from_secs(5), Duration::from_secs(5)).with_connect_timeout(Duration::from_secs(5));
    if let Some((user, password)) = &settings.user {
        options = options.with_user(user.clone(), password.clone());
    }
    if tls_configured {
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
    let endpoints = endpoint_urls(&settings.endpoints, tls_configured);
    Client::connect(&endpoints, Some(options)).await.map_err(|source| EtcdError::Connect { endpoints, source })
}

/// Loads the current state (snapshot plus journal tail) into `replica` once, without following.
pub async fn load(client: Client, keys: KeyLayout, replica: Arc<Replica>, store: Arc<SegmentStore>) -> Result<(), EtcdError> {
    JournalReader::new(client, keys, replica, store).catch_up().await.map(|_| ())
}

/// One attempt to append `entry` to the journal: a transaction that creates its key only if it
/// is absent, so retrying with the same entry after a lost answer never appends it twice.
/// Returns the create revision of the entry, whether this attempt or an earlier one created it.
/// The agent retries this with backoff (`agent/src/metadata/etcd.rs`); the operator appends
/// the records of a KafkaUser with it.
pub async fn append_once(client: &mut Client, keys: &KeyLayout, entry: &JournalEntry) -> Result<u64, EtcdError> {
    let key = keys.log_key(&entry.id);
    let value = serde_json::to_vec(entry).map_err(|error| EtcdError::Malformed { key: key.clone(), reason: error.to_string() })?;
    if value.len() > MAX_RECORD_BYTES {
        return Err(EtcdError::TooLarge { bytes: value.len(), limit: MAX_RECORD_BYTES });
    }
    match create_if_absent(client, &key, value).await? {
        Created::Now { revision } => Ok(revision as u64),
        // An earlier attempt whose answer was lost did create it.
        Created::Already(Some(existing)) => Ok(existing.create_revision() as u64),
        Created::Already(None) => {
            Err(EtcdError::Malformed { key, reason: "the create-only transaction failed but the key is missing".to_string() })
        }
    }
}

/// What [`create_if_absent`] found.
pub enum Created {
    /// This call created the key, at this revision.
    Now { revision: i64 },
    /// The key existed: its current value (`None` only if it was deleted in between).
    Already(Option<etcd_client::KeyValue>),
}

/// Puts `value` under `key` only if the key does not exist, in one transaction, so two writers
/// racing cannot both believe they created it; otherwise returns what is there.
pub async fn create_if_absent(client: &mut Client, key: &str, value: Vec<u8>) -> Result<Created, etcd_client::Error> {
    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key, value, None)])
        .or_else([TxnOp::get(key, None)]);
    let response = client.txn(txn).await?;
    if response.succeeded() {
        return Ok(Created::Now { revision: response.header().map(|header| header.revision()).unwrap_or_default() });
    }
    let existing = response.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(get) => get.kvs().first().cloned(),
        _ => None,
    });
    Ok(Created::Already(existing))
}

/// What one [`JournalReader::catch_up`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaughtUp {
    /// The etcd revision to watch the log prefix from.
    pub watch_from: i64,
    /// Whether a newer snapshot replaced the replica's state.
    pub snapshot_loaded: bool,
}

/// Brings one replica up to the journal in etcd.
pub struct JournalReader {
    client: Client,
    keys: KeyLayout,
    replica: Arc<Replica>,
    store: Arc<SegmentStore>,
    /// Whether a foreign key under the log prefix was already reported.
    warned_foreign: bool,
}

/// Pure: whether `key` is one of this cluster's journal records, a direct child `<log
/// prefix><id>` with a non-empty id and no further `/`. Anything deeper belongs to another
/// virtual cluster whose prefix lies under ours.
pub fn is_own_log_key(log_prefix: &str, key: &[u8]) -> bool {
    key.strip_prefix(log_prefix.as_bytes()).is_some_and(|id| !id.is_empty() && !id.contains(&b'/'))
}

impl JournalReader {
    pub fn new(client: Client, keys: KeyLayout, replica: Arc<Replica>, store: Arc<SegmentStore>) -> Self {
        Self { client, keys, replica, store, warned_foreign: false }
    }

    pub fn keys(&self) -> &KeyLayout {
        &self.keys
    }

    pub fn replica(&self) -> &Arc<Replica> {
        &self.replica
    }

    /// The etcd client, for a caller that watches the log prefix after [`Self::catch_up`].
    pub fn client_mut(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Loads a newer snapshot if there is one and applies the journal tail.
    ///
    /// The snapshot pointer and every page of the tail are read at one etcd revision, so a
    /// snapshot written and a journal trimmed while this runs can neither hide records from it
    /// nor make it apply a record twice. When etcd compacted that revision away meanwhile, the
    /// catch-up starts again from the (newer) snapshot.
    pub async fn catch_up(&mut self) -> Result<CaughtUp, EtcdError> {
        let mut attempts = 0;
        loop {
            match self.catch_up_once().await {
                Err(EtcdError::Request(error)) if is_compacted(&error) && attempts < 5 => {
                    attempts += 1;
                    tracing::info!(%error, "etcd compacted the journal under a catch-up; starting again from the snapshot");
                }
                outcome => return outcome,
            }
        }
    }

    async fn catch_up_once(&mut self) -> Result<CaughtUp, EtcdError> {
        let pointer_key = self.keys.snapshot_pointer();
        let pointer = self.client.get(pointer_key.clone(), None).await?;
        // Everything below is read as of this revision.
        let revision = pointer.header().map(|header| header.revision()).unwrap_or_default();
        let mut snapshot_loaded = false;
        if let Some(kv) = pointer.kvs().first() {
            let pointer: SnapshotPointer = serde_json::from_slice(kv.value())
                .map_err(|error| EtcdError::Malformed { key: pointer_key.clone(), reason: error.to_string() })?;
            if pointer.revision > self.replica.applied_revision() {
                let state = snapshot::read(&self.store, &pointer).await?;
                tracing::info!(revision = pointer.revision, object = pointer.object, "loaded metadata snapshot");
                self.replica.reset(state);
                snapshot_loaded = true;
            }
        }
        // Page by page: a tail of many records does not fit in one gRPC message (4 MiB for the
        // client); a page that does not fit is asked again with half as many records.
        let mut page = TAIL_PAGE_RECORDS;
        loop {
            let options = GetOptions::new()
                .with_prefix()
                .with_revision(revision)
                .with_sort(SortTarget::Create, SortOrder::Ascend)
                .with_min_create_revision(self.replica.applied_revision() as i64 + 1)
                .with_limit(page);
            let tail = match self.client.get(self.keys.log_prefix(), Some(options)).await {
                Ok(tail) => tail,
                Err(error) if page > 1 && is_response_too_large(&error) => {
                    page /= 2;
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            for kv in tail.kvs() {
                self.apply(kv.create_revision(), kv.key(), kv.value())?;
            }
            // A short page is the last (etcd's `more` counts keys the revision filter left out).
            if (tail.kvs().len() as i64) < page {
                break;
            }
        }
        Ok(CaughtUp { watch_from: revision + 1, snapshot_loaded })
    }

    /// Applies the record stored under `key` at create revision `revision`; keys that are not
    /// this cluster's records are skipped (reported once).
    pub fn apply(&mut self, revision: i64, key: &[u8], value: &[u8]) -> Result<(), EtcdError> {
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
}

#[cfg(test)]
mod tests {
    #[test]
    fn endpoints_are_dialled_with_https_exactly_when_tls_is_configured() {
        let written = ["10.0.0.1:2379".to_string(), "http://etcd.floe.svc:2379".to_string(), "https://e:2379".to_string()];
        assert_eq!(endpoint_urls(&written, true), ["https://10.0.0.1:2379", "https://etcd.floe.svc:2379", "https://e:2379"]);
        assert_eq!(endpoint_urls(&written, false), ["http://10.0.0.1:2379", "http://etcd.floe.svc:2379", "http://e:2379"]);
    }

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
