//! Reads partition chunks: from the cache of fresh segments when possible, else with one ranged GET.

use super::cache::SegmentCache;
use super::{SegmentStore, StoreError};
use crate::metadata::ChunkLocation;
use bytes::Bytes;
use std::sync::Arc;

pub struct SegmentReader {
    store: Arc<SegmentStore>,
    cache: Arc<SegmentCache>,
}

impl SegmentReader {
    pub fn new(store: Arc<SegmentStore>, cache: Arc<SegmentCache>) -> Self {
        Self { store, cache }
    }

    pub async fn read_chunk(&self, chunk: &ChunkLocation) -> Result<Bytes, StoreError> {
        let start = chunk.byte_start as usize;
        let end = start + chunk.byte_len as usize;
        if let Some(object) = self.cache.get(&chunk.object) {
            if end <= object.len() {
                return Ok(object.slice(start..end));
            }
        }
        let range_key = format!("{}@{}+{}", chunk.object, chunk.byte_start, chunk.byte_len);
        if let Some(bytes) = self.cache.get(&range_key) {
            return Ok(bytes);
        }
        let bytes = self.store.get_range(&chunk.object, chunk.byte_start..chunk.byte_start + chunk.byte_len).await?;
        self.cache.insert(range_key, bytes.clone());
        Ok(bytes)
    }
}
