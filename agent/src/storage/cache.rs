//! A bounded in-memory cache of segment bytes, so consumers tailing fresh data never wait on a GET.
//! Eviction is oldest-inserted first, which for fresh segments is what tailing readers want.

use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

pub struct SegmentCache {
    capacity_bytes: usize,
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    entries: HashMap<String, Bytes>,
    order: VecDeque<String>,
    bytes: usize,
}

impl SegmentCache {
    pub fn new(capacity_bytes: usize) -> Self {
        Self { capacity_bytes, inner: Mutex::new(CacheInner::default()) }
    }

    pub fn insert(&self, key: String, value: Bytes) {
        if value.len() > self.capacity_bytes {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if inner.entries.contains_key(&key) {
            return;
        }
        inner.bytes += value.len();
        inner.entries.insert(key.clone(), value);
        inner.order.push_back(key);
        while inner.bytes > self.capacity_bytes {
            let Some(oldest) = inner.order.pop_front() else { break };
            if let Some(evicted) = inner.entries.remove(&oldest) {
                inner.bytes -= evicted.len();
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<Bytes> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).entries.get(key).cloned()
    }

    pub fn resident_bytes(&self) -> usize {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_stays_within_its_byte_budget() {
        let cache = SegmentCache::new(10);
        cache.insert("a".into(), Bytes::from_static(b"123456"));
        cache.insert("b".into(), Bytes::from_static(b"123456"));
        assert!(cache.get("a").is_none());
        assert!(cache.get("b").is_some());
        assert_eq!(cache.resident_bytes(), 6);
    }
}
