//! Snapshot the metadata state to object storage, point etcd at it, delete the journal keys it
//! covers and compact etcd's history, so etcd holds only the journal tail however long it runs.

use super::{Coordination, JobContext};
use crate::metadata::snapshot;
use etcd_client::{Client, CompactionOptions, Compare, CompareOp, GetOptions, SortOrder, SortTarget, Txn, TxnOp};

/// etcd allows 128 operations per transaction; stay below with the fence compare.
const DELETES_PER_TRANSACTION: usize = 100;
/// Older snapshot objects kept besides the current one (a reader may still be loading one).
const SNAPSHOTS_KEPT: usize = 2;

pub async fn run(context: &JobContext) -> Result<(), String> {
    let Coordination::Etcd { client, keys, fence } = &context.coordination else {
        return Err("snapshots trim an etcd journal; this journal is embedded".to_string());
    };
    // Every write is fenced by our leadership key: a deposed leader's writes fail.
    let fence_compare = || Compare::create_revision(keys.jobs_leader(), CompareOp::Equal, *fence);
    let state = context.metadata.read(|state| state.clone());
    let revision = state.applied_revision;
    let mut client = Client::clone(client);
    let current = client.get(keys.snapshot_pointer(), None).await.map_err(|error| error.to_string())?;
    if let Some(kv) = current.kvs().first() {
        if let Ok(pointer) = serde_json::from_slice::<snapshot::SnapshotPointer>(kv.value()) {
            if pointer.revision >= revision {
                return Ok(());
            }
        }
    }
    let pointer = snapshot::write(&context.store, &state).await.map_err(|error| error.to_string())?;
    let value = serde_json::to_vec(&pointer).map_err(|error| error.to_string())?;
    let txn = Txn::new().when([fence_compare()]).and_then([TxnOp::put(keys.snapshot_pointer(), value, None)]);
    if !client.txn(txn).await.map_err(|error| error.to_string())?.succeeded() {
        return Err("no longer the jobs leader; snapshot pointer not written".to_string());
    }
    context.metrics.snapshot_revision.set(revision as i64);
    context
        .metrics
        .snapshot_unix_seconds
        .set(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|elapsed| elapsed.as_secs_f64()).unwrap_or_default());

    // Trim the journal keys the snapshot covers.
    let covered = client
        .get(
            keys.log_prefix(),
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_keys_only()
                    .with_max_create_revision(revision as i64)
                    .with_sort(SortTarget::Create, SortOrder::Ascend),
            ),
        )
        .await
        .map_err(|error| error.to_string())?;
    // Only this cluster's records: a key deeper under `log/` belongs to another virtual cluster
    // whose etcd prefix lies inside ours, and its journal is not ours to trim.
    let log_prefix = keys.log_prefix();
    let keys: Vec<Vec<u8>> =
        covered.kvs().iter().map(|kv| kv.key().to_vec()).filter(|key| crate::metadata::etcd::is_own_log_key(&log_prefix, key)).collect();
    for batch in keys.chunks(DELETES_PER_TRANSACTION) {
        let deletes: Vec<TxnOp> = batch.iter().map(|key| TxnOp::delete(key.clone(), None)).collect();
        let txn = Txn::new().when([fence_compare()]).and_then(deletes);
        if !client.txn(txn).await.map_err(|error| error.to_string())?.succeeded() {
            return Err("no longer the jobs leader; journal trim stopped".to_string());
        }
    }
    // Drop etcd's history up to the snapshot; watchers further behind reload the snapshot.
    if let Err(error) = client.compact(revision as i64, Some(CompactionOptions::new())).await {
        tracing::debug!(%error, "etcd compaction skipped");
    }
    tracing::info!(revision, object = pointer.object, trimmed = keys.len(), "wrote metadata snapshot and trimmed the journal");

    // Only this cluster's own snapshots: another cluster may share the bucket.
    let layout = crate::storage::layout::BucketLayout::new(state.cluster_id.as_deref());
    let mut snapshots = context.store.list(&layout.snapshots_prefix()).await.map_err(|error| error.to_string())?;
    snapshots.retain(|name| *name != pointer.object);
    snapshots.sort();
    let excess = snapshots.len().saturating_sub(SNAPSHOTS_KEPT);
    for old in snapshots.into_iter().take(excess) {
        if !context.may_destroy() {
            break;
        }
        let _ = context.store.delete(&old).await;
    }
    Ok(())
}
