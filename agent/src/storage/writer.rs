//! The write path: batches of many partitions accumulate in one open segment; a single flush task
//! PUTs it as one object (group commit: as soon as the previous PUT is done and the PUT cap
//! allows, or at once when it reaches `flush_max_bytes`), then appends ONE commit record to the
//! journal. Producers are answered only after both succeeded.
//!
//! # Guarantees
//! - PUTs run one at a time, and journal commits one at a time in flush order (the PUT of the next
//!   segment may overlap the previous commit), so two requests for a partition get offsets in the
//!   order they were appended.
//! - A waiter is resolved with an offset only after the object PUT returned and the journal entry
//!   was applied; every failure resolves it with an error instead.

use super::cache::SegmentCache;
use super::layout::BucketLayout;
use super::segment::SegmentBuilder;
use super::SegmentStore;
use crate::metadata::{ApplyOutcome, BatchApplied, ChunkApplied, ChunkCommit, JournalRecord, MetadataClient, ProducedBatch, SequenceError};
use crate::metrics::Metrics;
use crate::protocol::batch::BatchSummary;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// The least time between the starts of two flushes of partial segments: the PUT cap
    /// (`--max-puts-per-second`, or `--flush-interval`), and the longest a batch waits for its
    /// flush to start when the previous PUT is quicker.
    pub flush_spacing: Duration,
    /// A segment this large is flushed at once, whatever the spacing.
    pub flush_max_bytes: usize,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum WriteError {
    #[error("failed to store segment {object}: {reason}")]
    Store { object: String, reason: String },
    #[error("failed to commit segment {object} to the journal: {reason}")]
    Journal { object: String, reason: String },
    #[error("topic {topic} was deleted before the write committed")]
    TopicDeleted { topic: String },
    #[error("the agent is shutting down")]
    ShuttingDown,
    #[error("batch left out of the log: {0}")]
    Sequence(SequenceError),
    #[error("segment {object} was sealed by garbage collection before its commit applied; nothing was written")]
    Sealed { object: String },
}

type Waiter = oneshot::Sender<Result<i64, WriteError>>;

struct PendingChunk {
    topic_id: Uuid,
    batches: Vec<(Bytes, i64)>,
    /// Parallel to `batches`; listed in the commit record when any is idempotent.
    produced: Vec<ProducedBatch>,
    record_count: i64,
    max_timestamp: i64,
    /// (offset of the batch relative to the chunk, who waits for it)
    waiters: Vec<(i64, Waiter)>,
}

#[derive(Default)]
struct OpenSegment {
    chunks: BTreeMap<(String, i32), PendingChunk>,
    bytes: usize,
}

pub struct SegmentWriter {
    config: WriterConfig,
    open: Mutex<OpenSegment>,
    wake_flusher: Notify,
    flushed: Notify,
    /// Set while the agent drains: flush whatever is open at once instead of waiting for
    /// `flush_spacing`, so the requests still owed an answer get it quickly.
    prompt: AtomicBool,
    store: Arc<SegmentStore>,
    cache: Arc<SegmentCache>,
    metadata: MetadataClient,
    metrics: Arc<Metrics>,
}

impl SegmentWriter {
    pub fn new(
        config: WriterConfig,
        store: Arc<SegmentStore>,
        cache: Arc<SegmentCache>,
        metadata: MetadataClient,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            config,
            open: Mutex::new(OpenSegment::default()),
            wake_flusher: Notify::new(),
            flushed: Notify::new(),
            prompt: AtomicBool::new(false),
            store,
            cache,
            metadata,
            metrics,
        }
    }

    /// Stores a segment built outside the flush path (transaction markers) under a fresh,
    /// revision-stamped name and returns the name; the journal record that references it is the
    /// caller's. The bytes stay in this agent's cache like a flushed segment's.
    pub async fn store_segment(&self, bytes: Bytes) -> Result<String, WriteError> {
        self.put_new_object(&bytes).await
    }

    /// Adds a validated batch to the open segment and returns a receiver for its base offset (the
    /// original one when apply finds it is a duplicate of a committed batch).
    /// Waits (backpressure) while the unflushed bytes exceed four times `flush_max_bytes`.
    pub async fn append(
        &self,
        topic: &str,
        topic_id: Uuid,
        partition: i32,
        batch: Bytes,
        summary: BatchSummary,
    ) -> oneshot::Receiver<Result<i64, WriteError>> {
        let BatchSummary { record_count, max_timestamp, .. } = summary;
        loop {
            let flushed = self.flushed.notified();
            if self.lock().bytes < self.config.flush_max_bytes.saturating_mul(4) {
                break;
            }
            self.wake_flusher.notify_one();
            flushed.await;
        }
        let (sender, receiver) = oneshot::channel();
        let mut open = self.lock();
        open.bytes += batch.len();
        let chunk = open.chunks.entry((topic.to_string(), partition)).or_insert_with(|| PendingChunk {
            topic_id,
            batches: Vec::new(),
            produced: Vec::new(),
            record_count: 0,
            max_timestamp: -1,
            waiters: Vec::new(),
        });
        chunk.waiters.push((chunk.record_count, sender));
        chunk.record_count += record_count;
        chunk.max_timestamp = chunk.max_timestamp.max(max_timestamp);
        chunk.produced.push(ProducedBatch {
            producer_id: summary.producer_id,
            producer_epoch: summary.producer_epoch,
            base_sequence: summary.base_sequence,
            record_count,
            byte_len: batch.len() as u64,
            transactional: summary.transactional,
        });
        chunk.batches.push((batch, record_count));
        let should_wake = open.bytes >= self.config.flush_max_bytes || open.chunks.len() == 1 && chunk_is_first(&open);
        drop(open);
        if should_wake {
            self.wake_flusher.notify_one();
        }
        receiver
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OpenSegment> {
        self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// From now on, flush as soon as anything is open (the agent drains and stops accepting: the
    /// produces it already read wait for their flush, and nothing is gained by batching longer).
    pub fn flush_promptly(&self) {
        self.prompt.store(true, Ordering::Release);
        self.wake_flusher.notify_one();
    }

    /// The flush loop. Returns after a final flush, and after every commit it started, once
    /// `shutdown` turns true.
    ///
    /// When a flush starts (DESIGN.md "Adaptive flush"): as soon as something is open, the
    /// previous PUT has returned and `flush_spacing` has passed since the previous flush started
    /// (group commit: what arrived during one PUT goes into the next). A segment that reached
    /// `flush_max_bytes`, a drain (`flush_promptly`) and shutdown do not wait for the spacing.
    ///
    /// The segment's PUT and its journal commit are two stages: the PUT of segment N+1 runs
    /// while segment N commits, and commits go to the journal one at a time in flush order, so
    /// a partition's batches get offsets in the order they were appended.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let (to_commit, stored) = mpsc::channel::<StoredPart>(1);
        let committer = tokio::spawn(Arc::clone(&self).commit_in_order(stored));
        // Starting counts as a flush: an agent that restarts in a loop cannot PUT faster than the cap.
        let mut next_flush_at = Instant::now() + self.config.flush_spacing;
        let mut stopping = false;
        loop {
            let (empty, bytes) = {
                let open = self.lock();
                (open.chunks.is_empty(), open.bytes)
            };
            stopping |= *shutdown.borrow();
            if stopping {
                if !empty {
                    self.flush_once(&to_commit).await;
                }
                break;
            }
            if empty {
                tokio::select! {
                    _ = self.wake_flusher.notified() => {}
                    changed = shutdown.changed() => stopping |= changed.is_err(),
                }
                continue;
            }
            let now = Instant::now();
            let at_once = bytes >= self.config.flush_max_bytes || self.prompt.load(Ordering::Acquire);
            if !at_once && next_flush_at > now {
                tokio::select! {
                    _ = tokio::time::sleep_until(next_flush_at.into()) => {}
                    _ = self.wake_flusher.notified() => {}
                    changed = shutdown.changed() => stopping |= changed.is_err(),
                }
                continue;
            }
            let puts = self.flush_once(&to_commit).await;
            next_flush_at = now + self.config.flush_spacing * puts;
        }
        drop(to_commit);
        if let Err(error) = committer.await {
            tracing::error!(%error, "the segment commit task failed");
        }
    }

    /// Takes the open segment, PUTs it (several objects when its commit record would be too large)
    /// and hands each stored object to the commit stage. Returns the number of PUTs started.
    async fn flush_once(&self, to_commit: &mpsc::Sender<StoredPart>) -> u32 {
        let segment = std::mem::take(&mut *self.lock());
        self.flushed.notify_waiters();
        // Keep each commit record far below etcd's request limit: a flush touching very many
        // partitions becomes several objects, each with its own record. A partition lives in one
        // part only, so its order is kept.
        let mut puts = 0;
        for part in split_by_weight(segment.chunks, MAX_RECORD_WEIGHT, chunk_record_weight) {
            let bytes = part.values().flat_map(|chunk| chunk.batches.iter()).map(|(batch, _)| batch.len()).sum();
            puts += 1;
            if let Some(stored) = self.store_part(part, bytes).await {
                if let Err(mpsc::error::SendError(stored)) = to_commit.send(stored).await {
                    fail_all(stored.waiters, &WriteError::ShuttingDown);
                }
            }
        }
        puts
    }

    /// Builds one segment object from `chunks` and PUTs it; a failed PUT fails its producers
    /// (nothing of it was committed) and returns `None`.
    async fn store_part(&self, chunks: BTreeMap<(String, i32), PendingChunk>, bytes: usize) -> Option<StoredPart> {
        if chunks.is_empty() {
            return None;
        }
        let started = Instant::now();
        let mut builder = SegmentBuilder::sized_for(bytes, chunks.keys().map(|(topic, _)| topic.as_str()));
        let mut commits = Vec::with_capacity(chunks.len());
        let mut waiters = Vec::with_capacity(chunks.len());
        for ((topic, partition), chunk) in chunks {
            let entry = builder.add_chunk(&topic, chunk.topic_id, partition, &chunk.batches, chunk.max_timestamp);
            commits.push(ChunkCommit {
                topic: topic.clone(),
                topic_id: chunk.topic_id,
                partition,
                record_count: entry.record_count,
                byte_start: entry.byte_start,
                byte_len: entry.byte_len,
                max_timestamp: entry.max_timestamp,
                batches: if chunk.produced.iter().any(|batch| batch.producer_id >= 0) { chunk.produced } else { Vec::new() },
            });
            waiters.push((topic, chunk.waiters));
        }
        let (bytes, _) = builder.finish();
        match self.put_new_object(&bytes).await {
            Ok(object) => Some(StoredPart { object, bytes, commits, waiters, started }),
            Err(failure) => {
                fail_all(waiters, &failure);
                None
            }
        }
    }

    /// PUTs `bytes` under a fresh, revision-stamped name and keeps them in this agent's cache.
    async fn put_new_object(&self, bytes: &Bytes) -> Result<String, WriteError> {
        let (cluster_id, applied_revision) = self.metadata.read(|state| (state.cluster_id.clone(), state.applied_revision));
        let object = BucketLayout::new(cluster_id.as_deref()).new_segment_name(applied_revision);
        if let Err(error) = self.store.put(&object, bytes.clone()).await {
            tracing::warn!(%error, object, "segment PUT failed; producers get a retriable error");
            return Err(WriteError::Store { object, reason: error.to_string() });
        }
        self.cache.keep_written(&object, bytes.clone());
        Ok(object)
    }

    /// The commit stage: commits stored objects to the journal one at a time, in the order they
    /// were flushed, and answers their producers.
    async fn commit_in_order(self: Arc<Self>, mut stored: mpsc::Receiver<StoredPart>) {
        while let Some(part) = stored.recv().await {
            self.commit_part(part).await;
        }
    }

    async fn commit_part(&self, part: StoredPart) {
        let StoredPart { mut object, bytes, commits, waiters, started } = part;
        // A commit that reaches the journal after garbage collection sealed its object's name is
        // refused whole (DESIGN.md "Deletion fenced by the journal"): the object may be gone, so
        // nothing of it may be acknowledged. Store the same bytes again under a fresh name, once;
        // a second refusal (this replica is far behind the journal) fails the producers, who retry.
        let mut attempts = 0;
        let outcome = loop {
            attempts += 1;
            let journal_started = Instant::now();
            let outcome = self.metadata.submit(JournalRecord::CommitSegment { object: object.clone(), chunks: commits.clone() }).await;
            self.metrics.journal_commit_duration.observe(journal_started.elapsed().as_secs_f64());
            match outcome {
                Ok(ApplyOutcome::SegmentRefused { sealed_through_revision }) => {
                    self.metrics.refused_commits.inc();
                    tracing::warn!(
                        object,
                        sealed_through_revision,
                        attempts,
                        "segment commit refused: garbage collection sealed its name while the commit was in flight"
                    );
                    if attempts >= 2 {
                        fail_all(waiters, &WriteError::Sealed { object });
                        return;
                    }
                    match self.put_new_object(&bytes).await {
                        Ok(renamed) => object = renamed,
                        Err(failure) => {
                            fail_all(waiters, &failure);
                            return;
                        }
                    }
                }
                outcome => break outcome,
            }
        };
        match outcome {
            Ok(ApplyOutcome::SegmentCommitted { chunks }) => {
                for ((topic, chunk_waiters), applied) in waiters.into_iter().zip(chunks) {
                    // One waiter per batch, in batch order.
                    for (index, (relative, waiter)) in chunk_waiters.into_iter().enumerate() {
                        let result = match &applied {
                            ChunkApplied::TopicGone => Err(WriteError::TopicDeleted { topic: topic.clone() }),
                            ChunkApplied::Appended { base_offset, batches } => match batches.get(index) {
                                None => Ok(base_offset + relative),
                                Some(BatchApplied::Appended { base_offset }) => Ok(*base_offset),
                                Some(BatchApplied::Duplicate { base_offset }) => {
                                    self.metrics.duplicate_batches.inc();
                                    Ok(*base_offset)
                                }
                                Some(BatchApplied::Refused(error)) => {
                                    tracing::info!(%error, topic, "idempotent batch refused at apply");
                                    Err(WriteError::Sequence(*error))
                                }
                            },
                        };
                        let _ = waiter.send(result);
                    }
                }
                self.metrics.flushes.inc();
                self.metrics.flush_bytes.observe(bytes.len() as f64);
                self.metrics.flush_duration.observe(started.elapsed().as_secs_f64());
            }
            Ok(other) => {
                let failure = WriteError::Journal { object, reason: format!("unexpected apply outcome {other:?}") };
                fail_all(waiters, &failure);
            }
            Err(error) => {
                tracing::warn!(%error, object, "segment commit failed; the object is an orphan and nothing was acknowledged");
                let failure = WriteError::Journal { object, reason: error.to_string() };
                fail_all(waiters, &failure);
            }
        }
    }
}

/// A segment object stored and waiting for its journal commit.
struct StoredPart {
    object: String,
    bytes: Bytes,
    commits: Vec<ChunkCommit>,
    waiters: Vec<(String, Vec<(i64, Waiter)>)>,
    /// When its flush started (floe_flush_duration_seconds runs to the commit).
    started: Instant,
}

/// Estimated commit-record bytes per segment object: about 600 KiB, well under the 1 MiB limit
/// the etcd backend enforces.
const MAX_RECORD_WEIGHT: usize = 600 * 1024;

/// Estimated JSON bytes a chunk adds to its commit record: about 150 for the chunk and 50 per
/// listed batch (a chunk of idempotent batches lists each one).
fn chunk_record_weight(chunk: &PendingChunk) -> usize {
    let listed = if chunk.produced.iter().any(|batch| batch.producer_id >= 0) { chunk.produced.len() } else { 0 };
    150 + 50 * listed
}

/// Splits chunks into parts whose weights sum to at most `limit` (a chunk heavier than the limit
/// gets a part of its own; a partition is never split, so its order is kept).
fn split_by_weight<V>(chunks: BTreeMap<(String, i32), V>, limit: usize, weight: impl Fn(&V) -> usize) -> Vec<BTreeMap<(String, i32), V>> {
    let mut parts = vec![BTreeMap::new()];
    let mut current = 0usize;
    for (key, value) in chunks {
        let added = weight(&value);
        if current + added > limit && parts.last().is_some_and(|part| !part.is_empty()) {
            parts.push(BTreeMap::new());
            current = 0;
        }
        current += added;
        parts.last_mut().expect("never empty").insert(key, value);
    }
    parts
}

fn chunk_is_first(open: &OpenSegment) -> bool {
    open.chunks.values().map(|chunk| chunk.batches.len()).sum::<usize>() == 1
}

fn fail_all(waiters: Vec<(String, Vec<(i64, Waiter)>)>, failure: &WriteError) {
    for (_, chunk_waiters) in waiters {
        for (_, waiter) in chunk_waiters {
            let _ = waiter.send(Err(failure.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::journal::EmbeddedJournal;
    use crate::metadata::replica::Replica;
    use crate::protocol::batch::{tests::encoded_batch, validate_produced};
    use crate::storage::{ObjectStoreUrl, S3Options};
    use kafka_protocol::records::Compression;

    /// A running writer over `store` with `config`, on an embedded journal in `directory` that
    /// holds topic `t` (one partition); returns its metadata, the topic's id and the sender that
    /// stops it (the writer runs while the test holds it).
    async fn running_writer(
        directory: &std::path::Path,
        store: Arc<SegmentStore>,
        metrics: Arc<Metrics>,
        config: WriterConfig,
    ) -> (Arc<SegmentWriter>, MetadataClient, Uuid, watch::Sender<bool>) {
        let replica = Arc::new(Replica::new());
        let journal = Arc::new(EmbeddedJournal::open(&directory.join("journal.log"), Arc::clone(&replica)).unwrap());
        running_writer_on(journal, replica, store, metrics, config).await
    }

    async fn running_writer_on(
        journal: Arc<dyn crate::metadata::journal::JournalBackend>,
        replica: Arc<Replica>,
        store: Arc<SegmentStore>,
        metrics: Arc<Metrics>,
        config: WriterConfig,
    ) -> (Arc<SegmentWriter>, MetadataClient, Uuid, watch::Sender<bool>) {
        let metadata = MetadataClient::new(journal, replica);
        let topic_id = Uuid::new_v4();
        let create = JournalRecord::CreateTopic { name: "t".into(), topic_id, partitions: 1, configs: Default::default() };
        metadata.submit(create).await.unwrap();
        let writer = Arc::new(SegmentWriter::new(config, store, Arc::new(SegmentCache::new(1 << 20)), metadata.clone(), metrics));
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(Arc::clone(&writer).run(stopped));
        (writer, metadata, topic_id, stop)
    }

    #[tokio::test]
    async fn a_draining_writer_flushes_without_waiting_for_the_put_cap() {
        let directory = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let store = Arc::new(SegmentStore::open(&ObjectStoreUrl::Memory, &S3Options::default(), metrics.clone()).unwrap());
        // One flush an hour: nothing flushes on its own.
        let config = WriterConfig { flush_spacing: Duration::from_secs(3600), flush_max_bytes: 8 << 20 };
        let (writer, _, topic_id, _stop) = running_writer(directory.path(), store, metrics, config).await;
        let batch = encoded_batch(3, Compression::None);
        let summary = validate_produced(&batch, 1 << 20).unwrap();
        let mut first = writer.append("t", topic_id, 0, batch.clone(), summary).await;
        // The precondition: the PUT cap holds the flush.
        assert!(tokio::time::timeout(Duration::from_millis(200), &mut first).await.is_err(), "flushed before being asked");
        writer.flush_promptly();
        let offset = tokio::time::timeout(Duration::from_secs(10), first).await.expect("flushed promptly").unwrap();
        assert_eq!(offset, Ok(0));
        let second = writer.append("t", topic_id, 0, batch, summary).await;
        let offset = tokio::time::timeout(Duration::from_secs(10), second).await.expect("later appends flush promptly too").unwrap();
        assert_eq!(offset, Ok(3));
    }

    #[tokio::test]
    async fn a_failed_segment_put_fails_its_producers_commits_nothing_and_the_next_flush_succeeds() {
        use floe_meta::bucket::faults::{FaultInjecting, Operation};
        use floe_meta::bucket::remote::RemoteBackend;
        let directory = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let bucket =
            Arc::new(FaultInjecting::new(Arc::new(RemoteBackend::new(Arc::new(object_store::memory::InMemory::new()), String::new()))));
        let store = Arc::new(SegmentStore::with_backend(bucket.clone(), metrics.clone()));
        let config = WriterConfig { flush_spacing: Duration::from_millis(1), flush_max_bytes: 8 << 20 };
        let (writer, metadata, topic_id, _stop) = running_writer(directory.path(), store, metrics, config).await;
        let batch = encoded_batch(3, Compression::None);
        let summary = validate_produced(&batch, 1 << 20).unwrap();

        bucket.fail_next(Operation::Put, 1);
        let refused = writer.append("t", topic_id, 0, batch.clone(), summary).await;
        let refused = tokio::time::timeout(Duration::from_secs(10), refused).await.expect("answered").unwrap();
        assert!(matches!(refused, Err(WriteError::Store { .. })), "the producer was not told the PUT failed: {refused:?}");
        assert_eq!(metadata.read(|state| state.partition("t", 0).unwrap().high_watermark), 0, "nothing was committed");

        let accepted = writer.append("t", topic_id, 0, batch, summary).await;
        let accepted = tokio::time::timeout(Duration::from_secs(10), accepted).await.expect("answered").unwrap();
        assert_eq!(accepted, Ok(0), "the retried batch takes the first offset");
        assert_eq!(metadata.read(|state| state.partition("t", 0).unwrap().high_watermark), 3, "committed once, after the fault");
    }

    /// A journal in which garbage collection seals every name so far just before the first
    /// segment commit arrives (the commit was in flight longer than the grace period).
    struct SealingJustBeforeTheFirstCommit {
        inner: EmbeddedJournal,
        sealed: AtomicBool,
    }

    impl crate::metadata::journal::JournalBackend for SealingJustBeforeTheFirstCommit {
        fn append<'a>(
            &'a self,
            entry: &'a crate::metadata::JournalEntry,
        ) -> futures::future::BoxFuture<'a, Result<u64, crate::metadata::journal::JournalError>> {
            Box::pin(async move {
                if matches!(entry.record, JournalRecord::CommitSegment { .. }) && !self.sealed.swap(true, Ordering::AcqRel) {
                    let seal = crate::metadata::JournalEntry::new(JournalRecord::SealObjects { through_revision: u64::MAX });
                    self.inner.append(&seal).await?;
                }
                self.inner.append(entry).await
            })
        }
    }

    #[tokio::test]
    async fn a_commit_refused_by_the_seal_is_stored_again_under_a_new_name_and_acknowledged_once() {
        let directory = tempfile::tempdir().unwrap();
        let replica = Arc::new(Replica::new());
        let inner = EmbeddedJournal::open(&directory.path().join("journal.log"), Arc::clone(&replica)).unwrap();
        let journal = Arc::new(SealingJustBeforeTheFirstCommit { inner, sealed: AtomicBool::new(false) });
        let metadata = MetadataClient::new(journal, Arc::clone(&replica));
        metadata.submit(JournalRecord::InitCluster { cluster_id: "c".into() }).await.unwrap();
        metadata.submit(JournalRecord::SetMetadataVersion { version: crate::metadata::SUPPORTED_METADATA_VERSION }).await.unwrap();
        let topic_id = Uuid::new_v4();
        let create = JournalRecord::CreateTopic { name: "t".into(), topic_id, partitions: 1, configs: Default::default() };
        metadata.submit(create).await.unwrap();
        let metrics = Arc::new(Metrics::new());
        let store = Arc::new(SegmentStore::open(&ObjectStoreUrl::Memory, &S3Options::default(), metrics.clone()).unwrap());
        let config = WriterConfig { flush_spacing: Duration::from_millis(1), flush_max_bytes: 8 << 20 };
        let writer = Arc::new(SegmentWriter::new(
            config,
            Arc::clone(&store),
            Arc::new(SegmentCache::new(1 << 20)),
            metadata.clone(),
            Arc::clone(&metrics),
        ));
        let (_stop, stopped) = watch::channel(false);
        tokio::spawn(Arc::clone(&writer).run(stopped));
        let batch = encoded_batch(3, Compression::None);
        let summary = validate_produced(&batch, 1 << 20).unwrap();
        let acknowledged = writer.append("t", topic_id, 0, batch, summary).await;
        let offset = tokio::time::timeout(Duration::from_secs(10), acknowledged).await.expect("answered").unwrap();
        assert_eq!(offset, Ok(0));
        assert_eq!(metrics.refused_commits.get(), 1, "the first commit was refused");
        let (high_watermark, objects) = metadata.read(|state| {
            let partition = state.partition("t", 0).unwrap();
            (partition.high_watermark, partition.chunks.iter().map(|chunk| chunk.object.to_string()).collect::<Vec<_>>())
        });
        assert_eq!(high_watermark, 3, "appended once");
        assert_eq!(objects.len(), 1);
        assert!(!metadata.read(|state| state.is_sealed(&objects[0])), "the acknowledged object is not sealed");
        assert_eq!(store.list("clusters/c/segments").await.unwrap().len(), 2, "the refused object is left for the collector");
    }

    fn memory_store(metrics: &Arc<Metrics>) -> Arc<SegmentStore> {
        Arc::new(SegmentStore::open(&ObjectStoreUrl::Memory, &S3Options::default(), metrics.clone()).unwrap())
    }

    #[tokio::test]
    async fn a_produce_on_an_idle_writer_is_flushed_at_once() {
        let directory = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let config = WriterConfig { flush_spacing: Duration::from_millis(600), flush_max_bytes: 8 << 20 };
        let (writer, _, topic_id, _stop) = running_writer(directory.path(), memory_store(&metrics), metrics, config).await;
        let batch = encoded_batch(3, Compression::None);
        let summary = validate_produced(&batch, 1 << 20).unwrap();
        let mut last_append = Instant::now();
        for expected in [0, 3, 6] {
            // Idle longer than the spacing: nothing holds the flush.
            tokio::time::sleep(Duration::from_millis(700)).await;
            last_append = Instant::now();
            let acknowledged = writer.append("t", topic_id, 0, batch.clone(), summary).await;
            let offset = tokio::time::timeout(Duration::from_secs(10), acknowledged).await.expect("answered");
            assert_eq!(offset.unwrap(), Ok(expected));
            // A memory store and an embedded journal: milliseconds, not the spacing.
            assert!(last_append.elapsed() < Duration::from_millis(300), "took {:?}", last_append.elapsed());
        }
        // Right after a flush, the next one waits for the spacing. The previous flush started
        // after its append, so the next one starts at least the spacing after that append: the
        // bound holds whatever the previous flush took (measuring from this append alone fails
        // by that much on a loaded machine).
        let acknowledged = writer.append("t", topic_id, 0, batch, summary).await;
        assert_eq!(tokio::time::timeout(Duration::from_secs(10), acknowledged).await.expect("answered").unwrap(), Ok(9));
        assert!(last_append.elapsed() >= Duration::from_millis(600), "the spacing was not kept: {:?}", last_append.elapsed());
    }

    #[tokio::test]
    async fn producers_that_never_pause_get_flushes_no_more_often_than_the_put_cap() {
        let directory = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        // An append every millisecond would get a flush each; a cap of 10 PUTs a second allows 10.
        let config = WriterConfig { flush_spacing: Duration::from_millis(100), flush_max_bytes: 8 << 20 };
        let (writer, metadata, topic_id, _stop) = running_writer(directory.path(), memory_store(&metrics), metrics.clone(), config).await;
        let batch = encoded_batch(1, Compression::None);
        let summary = validate_produced(&batch, 1 << 20).unwrap();
        let started = Instant::now();
        let mut acknowledgements = Vec::new();
        while started.elapsed() < Duration::from_millis(1500) {
            acknowledgements.push(writer.append("t", topic_id, 0, batch.clone(), summary).await);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let elapsed = started.elapsed();
        for acknowledgement in acknowledgements.drain(..) {
            tokio::time::timeout(Duration::from_secs(10), acknowledgement).await.expect("answered").unwrap().unwrap();
        }
        let flushes = metrics.flushes.get();
        // Flushes start at least 100 ms apart: at most one more than the elapsed tenths of a
        // second, plus the last one that answered the final appends.
        let allowed = (elapsed.as_secs_f64() * 10.0).floor() as u64 + 2;
        assert!(flushes <= allowed, "{flushes} flushes in {elapsed:?} with a cap of 10 a second");
        assert!(flushes >= 10, "the cap, not something else, set the pace: only {flushes} flushes in {elapsed:?}");
        let appended = metadata.read(|state| state.partition("t", 0).unwrap().high_watermark);
        assert!(appended > 100, "every append was committed ({appended})");
    }

    #[tokio::test]
    async fn a_full_segment_is_flushed_without_waiting_for_the_put_cap() {
        let directory = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let batch = encoded_batch(3, Compression::None);
        let config = WriterConfig { flush_spacing: Duration::from_secs(3600), flush_max_bytes: batch.len() * 2 };
        let (writer, _, topic_id, _stop) = running_writer(directory.path(), memory_store(&metrics), metrics, config).await;
        let summary = validate_produced(&batch, 1 << 20).unwrap();
        let mut first = writer.append("t", topic_id, 0, batch.clone(), summary).await;
        assert!(tokio::time::timeout(Duration::from_millis(200), &mut first).await.is_err(), "a half-full segment waits for the cap");
        let second = writer.append("t", topic_id, 0, batch, summary).await;
        let (first, second) =
            tokio::time::timeout(Duration::from_secs(10), async { (first.await, second.await) }).await.expect("flushed when full");
        assert_eq!((first.unwrap(), second.unwrap()), (Ok(0), Ok(3)));
    }

    /// A journal whose first segment commit takes `delay`.
    struct SlowFirstCommit {
        inner: EmbeddedJournal,
        delayed: AtomicBool,
        delay: Duration,
    }

    impl crate::metadata::journal::JournalBackend for SlowFirstCommit {
        fn append<'a>(
            &'a self,
            entry: &'a crate::metadata::JournalEntry,
        ) -> futures::future::BoxFuture<'a, Result<u64, crate::metadata::journal::JournalError>> {
            Box::pin(async move {
                if matches!(entry.record, JournalRecord::CommitSegment { .. }) && !self.delayed.swap(true, Ordering::AcqRel) {
                    tokio::time::sleep(self.delay).await;
                }
                self.inner.append(entry).await
            })
        }
    }

    #[tokio::test]
    async fn the_next_segment_is_stored_while_the_previous_one_commits_and_offsets_keep_append_order() {
        let directory = tempfile::tempdir().unwrap();
        let replica = Arc::new(Replica::new());
        let inner = EmbeddedJournal::open(&directory.path().join("journal.log"), Arc::clone(&replica)).unwrap();
        let journal = Arc::new(SlowFirstCommit { inner, delayed: AtomicBool::new(false), delay: Duration::from_millis(1500) });
        let metrics = Arc::new(Metrics::new());
        let store = memory_store(&metrics);
        let config = WriterConfig { flush_spacing: Duration::from_millis(1), flush_max_bytes: 8 << 20 };
        let (writer, _, topic_id, _stop) = running_writer_on(journal, replica, Arc::clone(&store), metrics, config).await;
        let batch = encoded_batch(3, Compression::None);
        let summary = validate_produced(&batch, 1 << 20).unwrap();
        let mut first = writer.append("t", topic_id, 0, batch.clone(), summary).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut second = writer.append("t", topic_id, 0, batch, summary).await;
        // The second segment's PUT finishes while the first commit is held in the journal.
        let deadline = Instant::now() + Duration::from_secs(1);
        while store.list("clusters/uninitialized/segments").await.unwrap().len() < 2 {
            assert!(Instant::now() < deadline, "the second segment was not stored while the first one committed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(tokio::time::timeout(Duration::from_millis(50), &mut second).await.is_err(), "acknowledged before the first commit");
        assert!(tokio::time::timeout(Duration::from_millis(1), &mut first).await.is_err(), "the first commit is still held");
        let first = tokio::time::timeout(Duration::from_secs(10), first).await.expect("answered").unwrap();
        let second = tokio::time::timeout(Duration::from_secs(10), second).await.expect("answered").unwrap();
        assert_eq!((first, second), (Ok(0), Ok(3)), "offsets follow the append order");
    }

    #[test]
    fn a_flush_over_the_record_limit_is_split_without_splitting_a_partition() {
        let chunks: BTreeMap<(String, i32), usize> = (0..10).map(|partition| (("t".to_string(), partition), 1)).collect();
        let parts = split_by_weight(chunks, 4, |weight| *weight);
        assert_eq!(parts.iter().map(BTreeMap::len).collect::<Vec<_>>(), vec![4, 4, 2]);
        assert_eq!(split_by_weight(BTreeMap::<(String, i32), usize>::new(), 4, |weight| *weight).len(), 1);
        let heavy: BTreeMap<(String, i32), usize> =
            [(("t".to_string(), 0), 1), (("t".to_string(), 1), 9), (("t".to_string(), 2), 1)].into();
        let parts = split_by_weight(heavy, 4, |weight| *weight);
        assert_eq!(parts.iter().map(BTreeMap::len).collect::<Vec<_>>(), vec![1, 1, 1], "an overweight chunk gets a part of its own");
    }
}
