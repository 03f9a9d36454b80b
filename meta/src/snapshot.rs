//! Snapshots: the whole metadata state at a revision, stored as an object so etcd only keeps the
//! journal tail. The pointer to the latest one lives in etcd (`KeyLayout::snapshot_pointer`).

use crate::bucket::{SegmentStore, StoreError};
use crate::layout::BucketLayout;
use crate::state::MetadataState;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotPointer {
    pub revision: u64,
    pub object: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("failed to read or write snapshot {object}: {source}")]
    Store { object: String, source: StoreError },
    #[error("snapshot {object} is not valid: {source}")]
    Decode { object: String, source: serde_json::Error },
}

pub async fn write(store: &SegmentStore, state: &MetadataState) -> Result<SnapshotPointer, SnapshotError> {
    let object = BucketLayout::new(state.cluster_id.as_deref()).new_snapshot_name(state.applied_revision);
    let bytes = serde_json::to_vec(state).map_err(|source| SnapshotError::Decode { object: object.clone(), source })?;
    store.put(&object, Bytes::from(bytes)).await.map_err(|source| SnapshotError::Store { object: object.clone(), source })?;
    Ok(SnapshotPointer { revision: state.applied_revision, object })
}

pub async fn read(store: &SegmentStore, pointer: &SnapshotPointer) -> Result<MetadataState, SnapshotError> {
    let bytes = store.get(&pointer.object).await.map_err(|source| SnapshotError::Store { object: pointer.object.clone(), source })?;
    serde_json::from_slice(&bytes).map_err(|source| SnapshotError::Decode { object: pointer.object.clone(), source })
}
