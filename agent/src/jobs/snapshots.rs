//! Snapshot the metadata state to object storage, point etcd at it, delete the journal keys it
//! covers and compact etcd's history, so etcd holds only the journal tail however long it runs.

use super::JobContext;
use crate::metadata::snapshot;

/// Older snapshot objects kept besides the current one (a reader may still be loading one).
const SNAPSHOTS_KEPT: usize = 2;

pub async fn run(context: &JobContext) -> Result<(), String> {
    if !context.leadership.trims_journal() {
        return Err("snapshots trim an etcd journal; this journal is embedded".to_string());
    }
    // Every write outside the journal is fenced by the leadership: a deposed leader's writes fail.
    let state = context.metadata.read(|state| state.clone());
    let revision = state.applied_revision;
    if context.leadership.latest_snapshot().await?.is_some_and(|pointer| pointer.revision >= revision) {
        return Ok(());
    }
    let pointer = snapshot::write(&context.store, &state).await.map_err(|error| error.to_string())?;
    context.leadership.publish_snapshot(&pointer).await?;
    context.metrics.snapshot_revision.set(revision as i64);
    context
        .metrics
        .snapshot_unix_seconds
        .set(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|elapsed| elapsed.as_secs_f64()).unwrap_or_default());
    let trimmed = context.leadership.trim_journal(revision).await?;
    tracing::info!(revision, object = pointer.object, trimmed, "wrote metadata snapshot and trimmed the journal");

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
