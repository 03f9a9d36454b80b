//! The write path: batches of many partitions accumulate in one open segment; a single flush task
//! PUTs it as one object when it reaches `flush_max_bytes` or `flush_interval`, then appends ONE
//! commit record to the journal. Producers are answered only after both succeeded.
//!
//! # Guarantees
//! - Flushes run one at a time, in order, so two requests for a partition get offsets in the order
//!   they were appended.
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
use tokio::sync::{oneshot, watch, Notify};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub flush_interval: Duration,
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
    opened_at: Option<Instant>,
}

pub struct SegmentWriter {
    config: WriterConfig,
    open: Mutex<OpenSegment>,
    wake_flusher: Notify,
    flushed: Notify,
    /// Set while the agent drains: flush whatever is open at once instead of waiting for
    /// `flush_interval`, so the requests still owed an answer get it quickly.
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
        let (cluster_id, applied_revision) = self.metadata.read(|state| (state.cluster_id.clone(), state.applied_revision));
        let object = BucketLayout::new(cluster_id.as_deref()).new_segment_name(applied_revision);
        if let Err(error) = self.store.put(&object, bytes.clone()).await {
            return Err(WriteError::Store { object, reason: error.to_string() });
        }
        self.cache.insert(object.clone(), bytes);
        Ok(object)
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
        open.opened_at.get_or_insert_with(Instant::now);
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

    /// The flush loop. Returns after a final flush once `shutdown` turns true.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let (empty, bytes, opened_at) = {
                let open = self.lock();
                (open.chunks.is_empty(), open.bytes, open.opened_at)
            };
            if *shutdown.borrow() {
                if !empty {
                    self.flush_once().await;
                }
                return;
            }
            if empty {
                tokio::select! {
                    _ = self.wake_flusher.notified() => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            if bytes < self.config.flush_max_bytes && !self.prompt.load(Ordering::Acquire) {
                let deadline = opened_at.unwrap_or_else(Instant::now) + self.config.flush_interval;
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline.into()) => {}
                    _ = self.wake_flusher.notified() => { continue; }
                    _ = shutdown.changed() => { continue; }
                }
            }
            self.flush_once().await;
        }
    }

    async fn flush_once(&self) {
        let segment = std::mem::take(&mut *self.lock());
        self.flushed.notify_waiters();
        // Keep each commit record far below etcd's request limit: a flush touching very many
        // partitions becomes several objects, each with its own record. A partition lives in one
        // part only, so its order is kept.
        for part in split_by_weight(segment.chunks, MAX_RECORD_WEIGHT, chunk_record_weight) {
            let bytes = part.values().flat_map(|chunk| chunk.batches.iter()).map(|(batch, _)| batch.len()).sum();
            self.flush_part(OpenSegment { chunks: part, bytes, opened_at: None }).await;
        }
    }

    async fn flush_part(&self, segment: OpenSegment) {
        if segment.chunks.is_empty() {
            return;
        }
        let started = Instant::now();
        let mut builder = SegmentBuilder::with_capacity(segment.bytes + segment.chunks.len() * 64);
        let mut commits = Vec::with_capacity(segment.chunks.len());
        let mut waiters = Vec::with_capacity(segment.chunks.len());
        for ((topic, partition), chunk) in segment.chunks {
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
        let size = bytes.len();
        // A commit that reaches the journal after garbage collection sealed its object's name is
        // refused whole (DESIGN.md "Deletion fenced by the journal"): the object may be gone, so
        // nothing of it may be acknowledged. Store the same bytes again under a fresh name, once;
        // a second refusal (this replica is far behind the journal) fails the producers, who retry.
        let mut attempts = 0;
        let (object, outcome) = loop {
            attempts += 1;
            let (cluster_id, applied_revision) = self.metadata.read(|state| (state.cluster_id.clone(), state.applied_revision));
            let object = BucketLayout::new(cluster_id.as_deref()).new_segment_name(applied_revision);
            if let Err(error) = self.store.put(&object, bytes.clone()).await {
                tracing::warn!(%error, object, "segment PUT failed; producers get a retriable error");
                let failure = WriteError::Store { object, reason: error.to_string() };
                fail_all(waiters, &failure);
                return;
            }
            self.cache.insert(object.clone(), bytes.clone());
            let journal_started = Instant::now();
            let outcome = self.metadata.submit(JournalRecord::CommitSegment { object: object.clone(), chunks: commits.clone() }).await;
            self.metrics.journal_commit_duration.observe(journal_started.elapsed().as_secs_f64());
            match outcome {
                Ok(ApplyOutcome::SegmentRefused { sealed_through_revision }) => {
                    self.metrics.refused_commits.inc();
                    tracing::warn!(
                        object,
                        applied_revision,
                        sealed_through_revision,
                        attempts,
                        "segment commit refused: garbage collection sealed its name while the commit was in flight"
                    );
                    if attempts < 2 {
                        continue;
                    }
                    let failure = WriteError::Sealed { object };
                    fail_all(waiters, &failure);
                    return;
                }
                outcome => break (object, outcome),
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
                self.metrics.flush_bytes.observe(size as f64);
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

    /// A running writer over `store`, flushing every `flush_interval`, on an embedded journal in
    /// `directory` that holds topic `t` (one partition); returns its metadata, the topic's id and
    /// the sender that stops it (the writer runs while the test holds it).
    async fn running_writer(
        directory: &std::path::Path,
        store: Arc<SegmentStore>,
        metrics: Arc<Metrics>,
        flush_interval: Duration,
    ) -> (Arc<SegmentWriter>, MetadataClient, Uuid, watch::Sender<bool>) {
        let replica = Arc::new(Replica::new());
        let journal = Arc::new(EmbeddedJournal::open(&directory.join("journal.log"), Arc::clone(&replica)).unwrap());
        let metadata = MetadataClient::new(journal, replica);
        let topic_id = Uuid::new_v4();
        let create = JournalRecord::CreateTopic { name: "t".into(), topic_id, partitions: 1, configs: Default::default() };
        metadata.submit(create).await.unwrap();
        let config = WriterConfig { flush_interval, flush_max_bytes: 8 << 20 };
        let writer = Arc::new(SegmentWriter::new(config, store, Arc::new(SegmentCache::new(1 << 20)), metadata.clone(), metrics));
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(Arc::clone(&writer).run(stopped));
        (writer, metadata, topic_id, stop)
    }

    #[tokio::test]
    async fn a_draining_writer_flushes_without_waiting_for_the_flush_interval() {
        let directory = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let store = Arc::new(SegmentStore::open(&ObjectStoreUrl::Memory, &S3Options::default(), metrics.clone()).unwrap());
        let (writer, _, topic_id, _stop) = running_writer(directory.path(), store, metrics, Duration::from_secs(3600)).await;
        let batch = encoded_batch(3, Compression::None);
        let summary = validate_produced(&batch, 1 << 20).unwrap();
        let mut first = writer.append("t", topic_id, 0, batch.clone(), summary).await;
        // The precondition: with an hour-long interval and a small segment, nothing flushes yet.
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
        let (writer, metadata, topic_id, _stop) = running_writer(directory.path(), store, metrics, Duration::from_millis(10)).await;
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
        let config = WriterConfig { flush_interval: Duration::from_millis(10), flush_max_bytes: 8 << 20 };
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
