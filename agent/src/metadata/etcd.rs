//! The etcd journal backend. Appends are create-only transactions on `log/<entry id>`, so a retry
//! after an unknown outcome can never append twice; the create revision is the total order. A
//! watch on the log prefix feeds every record, this agent's and others', to the replica in
//! revision order. On start, and whenever the watch falls behind etcd compaction, the replica is
//! rebuilt from the latest snapshot plus the journal tail.
//!
//! Connecting, the settings and the catch-up (snapshot plus tail, skipping keys of a nested
//! virtual cluster) live in the shared crate (`floe_meta::etcd`), which the operator uses for its
//! read-only replay; they are re-exported here so `metadata::etcd::…` paths keep working.

pub use floe_meta::etcd::{append_once, connect, is_own_log_key, load, CaughtUp, EtcdError, EtcdSettings, JournalReader, MAX_RECORD_BYTES};

use super::journal::{JournalBackend, JournalError};
use super::keys::KeyLayout;
use super::records::JournalEntry;
use super::replica::Replica;
use crate::storage::SegmentStore;
use etcd_client::{Client, EventType, WatchOptions};
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

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
        let mut follower =
            Follower { reader: JournalReader::new(client.clone(), keys.clone(), replica, store), metrics: Arc::clone(&metrics) };
        let start = follower.catch_up().await?;
        let task = tokio::spawn(async move { follower.follow(start).await });
        Ok((Self { client, keys, metrics }, task))
    }
}

impl JournalBackend for EtcdJournal {
    fn append<'a>(&'a self, entry: &'a JournalEntry) -> BoxFuture<'a, Result<u64, JournalError>> {
        Box::pin(async move {
            let mut client = self.client.clone();
            let mut delay = Duration::from_millis(50);
            let mut last_error = String::new();
            // Retrying with the same entry is safe: `append_once` only creates its key.
            for _ in 0..12 {
                self.metrics.etcd_transactions.with_label_values(&[entry.record.kind()]).inc();
                match append_once(&mut client, &self.keys, entry).await {
                    Ok(revision) => {
                        self.metrics.journal_appends.with_label_values(&[entry.record.kind()]).inc();
                        return Ok(revision);
                    }
                    Err(EtcdError::TooLarge { bytes, limit }) => return Err(JournalError::TooLarge { bytes, limit }),
                    Err(error) => {
                        tracing::warn!(%error, key = self.keys.log_key(&entry.id), "journal append failed; retrying with the same key");
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

/// The largest watch response the follower accepts.
const WATCH_MESSAGE_BYTES: usize = 64 << 20;

/// Keeps one replica in step with the journal.
struct Follower {
    reader: JournalReader,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Follower {
    /// Loads a newer snapshot if there is one, applies the journal tail, and returns the revision
    /// to watch from.
    async fn catch_up(&mut self) -> Result<i64, EtcdError> {
        let caught_up = self.reader.catch_up().await?;
        if caught_up.snapshot_loaded {
            self.metrics.snapshot_loads.inc();
        }
        Ok(caught_up.watch_from)
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
        let log_prefix = self.reader.keys().log_prefix();
        // One watch response carries up to 1,000 revisions of a watcher that fell behind: more
        // than the client's default 4 MiB message when the records are large. Past this limit too,
        // the watch fails and `follow` catches up page by page instead.
        let mut watcher = self.reader.client_mut().watch_client().max_decoding_message_size(WATCH_MESSAGE_BYTES);
        let mut stream = watcher.watch(log_prefix, Some(options)).await?;
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
            if let Some(header) = response.header() {
                let last_event = response.events().last().and_then(|event| event.kv()).map(|kv| kv.create_revision());
                let applied = last_event.unwrap_or(self.reader.replica().applied_revision() as i64);
                self.metrics.replica_lag_revisions.set((header.revision() - applied).max(0));
            }
            for event in response.events() {
                if event.event_type() != EventType::Put {
                    continue;
                }
                if let Some(kv) = event.kv() {
                    self.reader.apply(kv.create_revision(), kv.key(), kv.value())?;
                }
            }
        }
        Ok(())
    }
}
