//! A bounded in-memory cache of segment bytes keyed by object: the writer's fresh segments whole,
//! so consumers tailing fresh data never wait on a GET, and the byte ranges fetch read from the
//! bucket, so the next fetch of another partition stored in the same range is served without one.
//! Eviction is oldest-inserted first, which for fresh segments and catch-up reads (each range is
//! read once, in offset order) is what readers want. With `--disk-cache-dir`, the segments this
//! agent wrote are also kept on local disk ([`DiskCache`]), a second tier the reader asks before
//! the bucket.

use super::disk_cache::DiskCache;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex};

pub struct SegmentCache {
    capacity_bytes: usize,
    inner: Mutex<CacheInner>,
    disk: Option<Arc<DiskCache>>,
}

#[derive(Default)]
struct CacheInner {
    /// Per object, the ranges held (a handful at most: an object is read in a few coalesced GETs).
    objects: HashMap<String, Vec<CachedRange>>,
    /// Insertion order, for eviction.
    order: VecDeque<(String, u64)>,
    bytes: usize,
}

struct CachedRange {
    start: u64,
    bytes: Bytes,
}

impl CachedRange {
    fn covers(&self, range: &Range<u64>) -> bool {
        self.start <= range.start && range.end <= self.start + self.bytes.len() as u64
    }
}

impl SegmentCache {
    pub fn new(capacity_bytes: usize) -> Self {
        Self::with_disk(capacity_bytes, None)
    }

    pub fn with_disk(capacity_bytes: usize, disk: Option<Arc<DiskCache>>) -> Self {
        Self { capacity_bytes, inner: Mutex::new(CacheInner::default()), disk }
    }

    /// Keeps a whole object this agent has just PUT: in memory, and on the disk tier if any.
    pub fn keep_written(&self, object: &str, bytes: Bytes) {
        if let Some(disk) = &self.disk {
            disk.keep(object, bytes.clone());
        }
        self.insert(object, 0, bytes);
    }

    /// `range` of `object` from the disk tier, when it holds the object.
    pub async fn read_disk(&self, object: &str, range: Range<u64>) -> Option<Bytes> {
        self.disk.as_ref()?.read(object, range).await
    }

    /// Keeps `bytes`, the object's bytes from offset `start`, unless a held range already covers
    /// them or they alone exceed the budget.
    pub fn insert(&self, object: &str, start: u64, bytes: Bytes) {
        if bytes.len() > self.capacity_bytes {
            return;
        }
        let range = start..start + bytes.len() as u64;
        let mut guard = self.lock();
        let inner = &mut *guard;
        let held = inner.objects.entry(object.to_string()).or_default();
        if held.iter().any(|cached| cached.covers(&range)) {
            return;
        }
        let added = bytes.len();
        held.push(CachedRange { start, bytes });
        inner.bytes += added;
        inner.order.push_back((object.to_string(), start));
        while inner.bytes > self.capacity_bytes {
            let Some((oldest, oldest_start)) = inner.order.pop_front() else { break };
            let Some(ranges) = inner.objects.get_mut(&oldest) else { continue };
            let Some(position) = ranges.iter().position(|cached| cached.start == oldest_start) else { continue };
            let evicted = ranges.swap_remove(position);
            if ranges.is_empty() {
                inner.objects.remove(&oldest);
            }
            inner.bytes -= evicted.bytes.len();
        }
    }

    /// The object's bytes in `range`, when one held range covers all of it.
    pub fn get(&self, object: &str, range: Range<u64>) -> Option<Bytes> {
        let inner = self.lock();
        let cached = inner.objects.get(object)?.iter().find(|cached| cached.covers(&range))?;
        let from = (range.start - cached.start) as usize;
        Some(cached.bytes.slice(from..from + (range.end - range.start) as usize))
    }

    pub fn resident_bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_stays_within_its_byte_budget() {
        let cache = SegmentCache::new(10);
        cache.insert("a", 0, Bytes::from_static(b"123456"));
        cache.insert("b", 0, Bytes::from_static(b"123456"));
        assert!(cache.get("a", 0..1).is_none());
        assert!(cache.get("b", 0..6).is_some());
        assert_eq!(cache.resident_bytes(), 6);
    }

    #[test]
    fn a_range_is_served_from_any_held_range_that_covers_it() {
        let cache = SegmentCache::new(100);
        cache.insert("a", 10, Bytes::from_static(b"abcdef"));
        assert_eq!(&cache.get("a", 12..15).unwrap()[..], b"cde");
        assert_eq!(&cache.get("a", 10..16).unwrap()[..], b"abcdef");
        assert!(cache.get("a", 9..12).is_none(), "starts before the held range");
        assert!(cache.get("a", 14..17).is_none(), "ends after the held range");
        assert!(cache.get("b", 12..15).is_none(), "another object");
    }

    #[test]
    fn a_range_already_covered_is_not_kept_twice() {
        let cache = SegmentCache::new(100);
        cache.insert("a", 0, Bytes::from_static(b"0123456789"));
        cache.insert("a", 2, Bytes::from_static(b"234"));
        assert_eq!(cache.resident_bytes(), 10);
    }

    #[test]
    fn eviction_takes_the_oldest_range_of_an_object_and_keeps_the_newer_one() {
        let cache = SegmentCache::new(10);
        cache.insert("a", 0, Bytes::from_static(b"01234"));
        cache.insert("a", 5, Bytes::from_static(b"56789"));
        cache.insert("b", 0, Bytes::from_static(b"xy"));
        assert!(cache.get("a", 0..1).is_none());
        assert_eq!(&cache.get("a", 5..10).unwrap()[..], b"56789");
        assert_eq!(&cache.get("b", 0..2).unwrap()[..], b"xy");
        assert_eq!(cache.resident_bytes(), 7);
    }
}
