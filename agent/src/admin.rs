//! `floe admin` tools. `fsck` checks the bucket against the metadata: every object the index
//! references exists, its footer is intact and describes exactly the byte ranges the index points
//! at; objects nothing references are listed as orphans (the garbage collector removes them after
//! its grace period).

use crate::agent::ClusterSettings;
use crate::config::MetadataUrl;
use crate::metadata::journal::EmbeddedJournal;
use crate::metadata::keys::KeyLayout;
use crate::metadata::replica::Replica;
use crate::metadata::{etcd, ApplyOutcome, ChunkLocation, JournalRecord, MetadataClient};
use crate::metrics::Metrics;
use crate::storage::segment::read_footer;
use crate::storage::{ObjectStoreUrl, S3Options, SegmentStore};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct FsckReport {
    pub referenced_objects: usize,
    pub checked_chunks: usize,
    pub problems: Vec<String>,
    pub orphans: Vec<String>,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for FsckReport {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for problem in &self.problems {
            writeln!(formatter, "PROBLEM {problem}")?;
        }
        for orphan in &self.orphans {
            writeln!(formatter, "orphan {orphan}")?;
        }
        writeln!(
            formatter,
            "fsck: {} referenced objects, {} chunks checked, {} problems, {} orphans: {}",
            self.referenced_objects,
            self.checked_chunks,
            self.problems.len(),
            self.orphans.len(),
            if self.is_clean() { "clean" } else { "NOT CLEAN" }
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("failed to load the metadata: {0}")]
    Metadata(String),
    #[error("failed to open or list the object store: {0}")]
    Store(#[from] crate::storage::StoreError),
}

pub async fn fsck(
    metadata: &MetadataUrl,
    cluster: Option<&ClusterSettings>,
    bucket: &ObjectStoreUrl,
    s3: &S3Options,
) -> Result<FsckReport, AdminError> {
    let store = Arc::new(SegmentStore::open(bucket, s3, Arc::new(Metrics::new()))?);
    let replica = Arc::new(Replica::new());
    load(metadata, cluster, &store, &replica).await?;
    fsck_replica(&store, &replica).await
}

/// [`fsck`] of metadata already replayed into `replica` (`floe diagnose` replays it once for
/// several checks).
pub async fn fsck_replica(store: &SegmentStore, replica: &Replica) -> Result<FsckReport, AdminError> {
    let mut by_object: BTreeMap<String, Vec<(String, i32, ChunkLocation)>> = BTreeMap::new();
    replica.read(|state| {
        for (name, topic) in &state.topics {
            for (index, partition) in topic.partitions.iter().enumerate() {
                for chunk in &partition.chunks {
                    by_object.entry(chunk.object.to_string()).or_default().push((name.clone(), index as i32, chunk.clone()));
                }
            }
        }
    });
    check(store, replica, by_object).await
}

/// Replays the metadata into `replica` without following it.
async fn load(
    metadata: &MetadataUrl,
    cluster: Option<&ClusterSettings>,
    store: &Arc<SegmentStore>,
    replica: &Arc<Replica>,
) -> Result<(), AdminError> {
    match metadata {
        MetadataUrl::Embedded(directory) => {
            EmbeddedJournal::open(&directory.join("journal.log"), Arc::clone(replica))
                .map_err(|error| AdminError::Metadata(error.to_string()))?;
        }
        MetadataUrl::Etcd { .. } => {
            let cluster = cluster.ok_or_else(|| AdminError::Metadata("etcd settings missing".to_string()))?;
            let client = etcd::connect(&cluster.etcd).await.map_err(|error| AdminError::Metadata(error.to_string()))?;
            let keys = KeyLayout::new(&cluster.etcd.prefix, &cluster.virtual_cluster);
            etcd::load(client, keys, Arc::clone(replica), Arc::clone(store))
                .await
                .map_err(|error| AdminError::Metadata(error.to_string()))?;
        }
    }
    Ok(())
}

async fn check(
    store: &SegmentStore,
    replica: &Replica,
    by_object: BTreeMap<String, Vec<(String, i32, ChunkLocation)>>,
) -> Result<FsckReport, AdminError> {
    let mut report = FsckReport { referenced_objects: by_object.len(), ..FsckReport::default() };
    for (object, chunks) in &by_object {
        let bytes = match store.get(object).await {
            Ok(bytes) => bytes,
            Err(error) => {
                report.problems.push(format!("{object}: referenced by {} chunks but unreadable: {error}", chunks.len()));
                continue;
            }
        };
        let footer = match read_footer(&bytes) {
            Ok(footer) => footer,
            Err(error) => {
                report.problems.push(format!("{object}: {error}"));
                continue;
            }
        };
        for (topic, partition, chunk) in chunks {
            report.checked_chunks += 1;
            // An index entry covers a footer chunk whole, or a run of it when apply left a
            // duplicate idempotent batch out.
            let matched = footer.iter().any(|entry| {
                entry.topic == *topic
                    && entry.partition == *partition
                    && entry.byte_start <= chunk.byte_start
                    && chunk.byte_start + chunk.byte_len <= entry.byte_start + entry.byte_len
                    && chunk.record_count <= entry.record_count
            });
            if !matched {
                report.problems.push(format!(
                    "{object}: no footer entry for {topic}/{partition} offsets {}..{} bytes {}+{}",
                    chunk.base_offset,
                    chunk.end_offset(),
                    chunk.byte_start,
                    chunk.byte_len
                ));
            }
        }
    }
    // Only this cluster's prefix: another virtual cluster may share the bucket, and objects from
    // before the per-cluster layout are listed by the index above when still referenced.
    let layout = replica.read(|state| crate::storage::layout::BucketLayout::new(state.cluster_id.as_deref()));
    for name in store.list(&layout.segments_prefix()).await? {
        if !by_object.contains_key(&name) {
            report.orphans.push(name);
        }
    }
    Ok(report)
}

/// `floe admin mark-lost`: what dropping `object` from the index costs, and, when confirmed, the
/// journal record that does it (every agent applies it; their consumers then skip the gap).
pub async fn mark_lost(
    metadata: &MetadataUrl,
    cluster: Option<&ClusterSettings>,
    bucket: &ObjectStoreUrl,
    s3: &S3Options,
    object: &str,
    confirmed: bool,
) -> Result<String, AdminError> {
    let metrics = Arc::new(Metrics::new());
    let store = Arc::new(SegmentStore::open(bucket, s3, metrics.clone())?);
    let replica = Arc::new(Replica::new());
    let describe = |ranges: &[(String, i32, i64, i64)]| {
        let records: i64 = ranges.iter().map(|(_, _, start, end)| end - start).sum();
        let mut text = String::new();
        for (topic, partition, start, end) in ranges {
            text.push_str(&format!("  {topic}/{partition} offsets {start}..{end}\n"));
        }
        (records, text)
    };
    let planned = |replica: &Replica| {
        replica.read(|state| {
            let mut ranges = Vec::new();
            for (name, topic) in &state.topics {
                for (index, partition) in topic.partitions.iter().enumerate() {
                    for chunk in partition.chunks.iter().filter(|chunk| &*chunk.object == object) {
                        ranges.push((name.clone(), index as i32, chunk.base_offset, chunk.end_offset()));
                    }
                }
            }
            ranges
        })
    };
    if !confirmed {
        load(metadata, cluster, &store, &replica).await?;
        let ranges = planned(&replica);
        if ranges.is_empty() {
            return Ok(format!("{object} holds no indexed records; nothing to mark lost\n"));
        }
        let (records, text) = describe(&ranges);
        return Ok(format!(
            "marking {object} lost would drop {records} acknowledged records from {} chunks:\n{text}\
             consumers would skip these offsets. Re-run with --confirm-data-loss to do it.\n",
            ranges.len()
        ));
    }
    let record = JournalRecord::MarkObjectLost { object: object.to_string() };
    let outcome = match metadata {
        MetadataUrl::Embedded(directory) => {
            // The playground must be stopped: the embedded journal has one writer.
            let journal = EmbeddedJournal::open(&directory.join("journal.log"), Arc::clone(&replica))
                .map_err(|error| AdminError::Metadata(error.to_string()))?;
            MetadataClient::new(Arc::new(journal), Arc::clone(&replica)).submit(record).await
        }
        MetadataUrl::Etcd { .. } => {
            let cluster = cluster.ok_or_else(|| AdminError::Metadata("etcd settings missing".to_string()))?;
            let client = etcd::connect(&cluster.etcd).await.map_err(|error| AdminError::Metadata(error.to_string()))?;
            let keys = KeyLayout::new(&cluster.etcd.prefix, &cluster.virtual_cluster);
            let (journal, follower) = etcd::EtcdJournal::open(client, keys, Arc::clone(&replica), Arc::clone(&store), metrics)
                .await
                .map_err(|error| AdminError::Metadata(error.to_string()))?;
            let outcome = MetadataClient::new(Arc::new(journal), Arc::clone(&replica)).submit(record).await;
            follower.abort();
            outcome
        }
    }
    .map_err(|error| AdminError::Metadata(error.to_string()))?;
    match outcome {
        ApplyOutcome::ObjectMarkedLost { ranges } => {
            let (records, text) = describe(&ranges);
            Ok(format!("marked {object} lost: {records} records in {} chunks dropped from the index:\n{text}", ranges.len()))
        }
        other => Err(AdminError::Metadata(format!("the journal answered {other:?} instead of marking the object lost"))),
    }
}
