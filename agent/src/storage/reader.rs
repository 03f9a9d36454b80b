//! Reads partition chunks: from the cache when it holds them, else from the bucket. A fetch asks
//! for all the chunks its response needs at once ([`SegmentReader::read_chunks`]): the chunks of
//! one object are read in as few ranged GETs as their layout allows (a segment holds many
//! partitions side by side, so a consumer of several partitions usually wants neighbouring
//! ranges), and the GETs of different objects run in parallel, so a response waits for about one
//! GET's latency instead of one per chunk.

use super::cache::SegmentCache;
use super::{SegmentStore, StoreError};
use crate::metadata::ChunkLocation;
use bytes::Bytes;
use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, StreamExt};
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Wanted ranges of one object this far apart or closer are read in one GET: reading the bytes
/// between costs less than a second request's latency (on S3, a GET's first byte takes 10-50 ms;
/// 1 MiB streams in about 10 ms).
const COALESCE_GAP_BYTES: u64 = 1 << 20;
/// No single GET reads more than this, so one response never holds a huge range for one chunk.
const MAX_GET_BYTES: u64 = 16 << 20;
/// GETs of one fetch in flight at once.
const PARALLEL_GETS: usize = 16;
/// Read-aheads in flight at once per agent; past that a read-ahead is skipped, not queued, so a
/// burst of consumers catching up never builds a backlog of reads nobody waits for.
const MAX_READ_AHEADS: usize = 4;

pub struct SegmentReader {
    store: Arc<SegmentStore>,
    cache: Arc<SegmentCache>,
    read_aheads: AtomicUsize,
    /// GETs under way, by object: a fetch that needs a range a read-ahead (or another fetch) is
    /// already reading waits for that GET instead of reading the bytes a second time.
    in_flight: Arc<Mutex<HashMap<Arc<str>, Vec<InFlight>>>>,
    next_get: AtomicU64,
}

/// A range of an object and the GET reading it.
struct InFlight {
    id: u64,
    range: Range<u64>,
    pending: PendingGet,
}
/// A GET a read waits for: its object and range, and the chunks of the read that lie in it.
struct Wait<'a> {
    object: Arc<str>,
    range: Range<u64>,
    pending: PendingGet,
    chunks: Vec<&'a ChunkLocation>,
}

/// One GET under way, shared by everyone who needs its bytes; `None` when it failed.
type PendingGet = Shared<BoxFuture<'static, Option<Bytes>>>;

/// The bytes of the chunks one fetch read, by object and byte range. A chunk whose GET failed is
/// absent: the caller reads it alone, which reports the failure with the chunk's own context.
#[derive(Default)]
pub struct ChunkBytes {
    chunks: HashMap<(Arc<str>, u64, u64), Bytes>,
}

impl ChunkBytes {
    pub fn get(&self, chunk: &ChunkLocation) -> Option<Bytes> {
        self.chunks.get(&(Arc::clone(&chunk.object), chunk.byte_start, chunk.byte_len)).cloned()
    }

    fn insert(&mut self, chunk: &ChunkLocation, bytes: Bytes) {
        self.chunks.insert((Arc::clone(&chunk.object), chunk.byte_start, chunk.byte_len), bytes);
    }
}

impl SegmentReader {
    pub fn new(store: Arc<SegmentStore>, cache: Arc<SegmentCache>) -> Self {
        Self { store, cache, read_aheads: AtomicUsize::new(0), in_flight: Arc::default(), next_get: AtomicU64::new(0) }
    }

    /// One chunk: from the cache, else with one ranged GET (kept in the cache).
    pub async fn read_chunk(&self, chunk: &ChunkLocation) -> Result<Bytes, StoreError> {
        let range = chunk_range(chunk);
        if let Some(bytes) = self.cache.get(&chunk.object, range.clone()) {
            return Ok(bytes);
        }
        let bytes = read_uncached(&self.store, &self.cache, &chunk.object, range.clone()).await?;
        self.cache.insert(&chunk.object, range.start, bytes.clone());
        Ok(bytes)
    }

    /// Every chunk of `chunks` that the cache or the bucket can give, read together: per object,
    /// the missing ranges coalesced into few GETs; the GETs of all objects in parallel; a range
    /// another reader is already fetching is waited for, not read again. What was read is kept in
    /// the cache.
    pub async fn read_chunks<'a>(&self, chunks: impl IntoIterator<Item = &'a ChunkLocation>) -> ChunkBytes {
        let (mut found, waits) = self.gets_for(chunks);
        // The GETs own everything they use (shared futures, boxed), so the stream borrows nothing.
        let gets: Vec<BoxFuture<'static, (usize, Option<Bytes>)>> = waits
            .iter()
            .enumerate()
            .map(|(index, wait)| {
                let pending = wait.pending.clone();
                async move { (index, pending.await) }.boxed()
            })
            .collect();
        let mut results = futures::stream::iter(gets).buffer_unordered(PARALLEL_GETS);
        while let Some((index, bytes)) = results.next().await {
            // A failed GET leaves its chunks out; `read_chunk` retries each and names the failure.
            let Some(bytes) = bytes else { continue };
            let wait = &waits[index];
            for chunk in &wait.chunks {
                let from = (chunk.byte_start - wait.range.start) as usize;
                found.insert(chunk, bytes.slice(from..from + chunk.byte_len as usize));
            }
        }
        found
    }

    /// What the cache holds of `chunks`, and the GETs that give the rest: ones already under way,
    /// and new ones (registered at once, so a reader after this one shares them).
    fn gets_for<'a>(&self, chunks: impl IntoIterator<Item = &'a ChunkLocation>) -> (ChunkBytes, Vec<Wait<'a>>) {
        let mut found = ChunkBytes::default();
        let mut waits: Vec<Wait> = Vec::new();
        let mut missing: BTreeMap<Arc<str>, Vec<&ChunkLocation>> = BTreeMap::new();
        {
            let in_flight = self.in_flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for chunk in chunks {
                let range = chunk_range(chunk);
                if let Some(bytes) = self.cache.get(&chunk.object, range.clone()) {
                    found.insert(chunk, bytes);
                    continue;
                }
                let pending = in_flight.get(&chunk.object).and_then(|gets| {
                    gets.iter()
                        .find(|get| get.range.start <= range.start && range.end <= get.range.end)
                        .map(|get| (get.range.clone(), get.pending.clone()))
                });
                match pending {
                    // The same GET is the same object and range: two objects' GETs of equal
                    // ranges are different bytes.
                    Some((range, pending)) => match waits.iter_mut().find(|wait| wait.object == chunk.object && wait.range == range) {
                        Some(wait) => wait.chunks.push(chunk),
                        None => waits.push(Wait { object: Arc::clone(&chunk.object), range, pending, chunks: vec![chunk] }),
                    },
                    None => missing.entry(Arc::clone(&chunk.object)).or_default().push(chunk),
                }
            }
        }
        for (object, chunks) in missing {
            for (range, chunks) in coalesce(chunks) {
                let pending = self.start_get(Arc::clone(&object), range.clone());
                waits.push(Wait { object: Arc::clone(&object), range, pending, chunks });
            }
        }
        (found, waits)
    }

    /// Starts the GET of `range` of `object` in a task of its own, registered as under way until it
    /// ends; its bytes go into the cache. The task runs to the end whoever waits for it, so a
    /// fetch whose client went away never leaves a half-done GET for the next reader to resume.
    fn start_get(&self, object: Arc<str>, range: Range<u64>) -> PendingGet {
        let (store, cache, in_flight) = (Arc::clone(&self.store), Arc::clone(&self.cache), Arc::clone(&self.in_flight));
        let id = self.next_get.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(object = &*object, start = range.start, end = range.end, "read from the disk tier or a bucket GET");
        let key = Arc::clone(&object);
        let wanted = range.clone();
        let get = async move {
            let bytes = read_uncached(&store, &cache, &object, range.clone())
                .await
                .ok()
                .filter(|bytes| bytes.len() as u64 == range.end - range.start);
            if let Some(bytes) = &bytes {
                cache.insert(&object, range.start, bytes.clone());
            }
            let mut in_flight = in_flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(gets) = in_flight.get_mut(&object) {
                gets.retain(|registered| registered.id != id);
                if gets.is_empty() {
                    in_flight.remove(&object);
                }
            }
            bytes
        };
        // Registered before the task can run (it takes this lock to deregister), so a GET never
        // ends before it is listed and never stays listed after it ended.
        let mut registry = self.in_flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let task = tokio::spawn(get);
        let pending: PendingGet = async move { task.await.ok().flatten() }.boxed().shared();
        registry.entry(key).or_default().push(InFlight { id, range: wanted, pending: pending.clone() });
        pending
    }

    /// Reads `chunks` into the cache in the background: the records a consumer catching up will
    /// ask for next, so its next fetch does not wait for the bucket. Skipped when
    /// [`MAX_READ_AHEADS`] are already running.
    pub fn read_ahead(self: &Arc<Self>, chunks: Vec<ChunkLocation>) {
        if chunks.is_empty() {
            return;
        }
        if self.read_aheads.fetch_add(1, Ordering::AcqRel) >= MAX_READ_AHEADS {
            self.read_aheads.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        // Registered now, before the task runs: the consumer's next fetch, which may come before
        // these bytes do, waits for these GETs instead of starting its own.
        let pending: Vec<PendingGet> = self.gets_for(&chunks).1.into_iter().map(|wait| wait.pending).collect();
        let reader = Arc::clone(self);
        tokio::spawn(async move {
            futures::stream::iter(pending).buffer_unordered(PARALLEL_GETS).for_each(|_| async {}).await;
            reader.read_aheads.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

/// `range` of `object` past the memory cache: from the disk tier when it holds the object, else
/// with a bucket GET.
async fn read_uncached(store: &SegmentStore, cache: &SegmentCache, object: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
    match cache.read_disk(object, range.clone()).await {
        Some(bytes) => Ok(bytes),
        None => store.get_range(object, range).await,
    }
}

fn chunk_range(chunk: &ChunkLocation) -> Range<u64> {
    chunk.byte_start..chunk.byte_start + chunk.byte_len
}

/// The ranges to GET for `chunks` of one object: neighbours at most [`COALESCE_GAP_BYTES`] apart
/// share a GET of at most [`MAX_GET_BYTES`] (a larger chunk gets a GET of its own).
fn coalesce(mut chunks: Vec<&ChunkLocation>) -> Vec<(Range<u64>, Vec<&ChunkLocation>)> {
    chunks.sort_by_key(|chunk| (chunk.byte_start, chunk.byte_len));
    let mut gets: Vec<(Range<u64>, Vec<&ChunkLocation>)> = Vec::new();
    for chunk in chunks {
        let wanted = chunk_range(chunk);
        if let Some((range, members)) = gets.last_mut() {
            let end = range.end.max(wanted.end);
            if wanted.start <= range.end + COALESCE_GAP_BYTES && end - range.start <= MAX_GET_BYTES {
                range.end = end;
                members.push(chunk);
                continue;
            }
        }
        gets.push((wanted, vec![chunk]));
    }
    gets
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(object: &str, byte_start: u64, byte_len: u64) -> ChunkLocation {
        ChunkLocation {
            base_offset: 0,
            record_count: 1,
            object: Arc::from(object),
            byte_start,
            byte_len,
            max_timestamp: 0,
            relative_base: 0,
        }
    }

    /// A memory bucket whose operations are counted in `Metrics`.
    fn memory_store() -> (SegmentStore, Arc<crate::metrics::Metrics>) {
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let store = SegmentStore::open(&super::super::ObjectStoreUrl::Memory, &Default::default(), metrics.clone()).unwrap();
        (store, metrics)
    }

    fn gets(metrics: &crate::metrics::Metrics) -> u64 {
        metrics.object_store_operations.with_label_values(&["get", "ok"]).get()
    }

    fn ranges(chunks: &[ChunkLocation]) -> Vec<Range<u64>> {
        coalesce(chunks.iter().collect()).into_iter().map(|(range, _)| range).collect()
    }

    #[test]
    fn neighbouring_chunks_of_an_object_share_one_get() {
        let chunks = [chunk("a", 300, 100), chunk("a", 8, 100), chunk("a", 108, 192)];
        assert_eq!(ranges(&chunks), vec![8..400]);
    }

    #[test]
    fn chunks_far_apart_get_a_get_each() {
        let far = 100 + COALESCE_GAP_BYTES + 1;
        let chunks = [chunk("a", 0, 100), chunk("a", far, 10)];
        assert_eq!(ranges(&chunks), vec![0..100, far..far + 10]);
    }

    #[test]
    fn a_get_never_grows_past_its_limit() {
        let half = MAX_GET_BYTES / 2;
        let chunks = [chunk("a", 0, half), chunk("a", half, half), chunk("a", 2 * half, 1)];
        assert_eq!(ranges(&chunks), vec![0..2 * half, 2 * half..2 * half + 1]);
    }

    #[tokio::test]
    async fn chunks_of_one_object_are_read_in_one_get_and_kept_in_the_cache() {
        let (store, metrics) = memory_store();
        let object: Vec<u8> = (0..=255u8).collect();
        store.put("segments/a.seg", Bytes::from(object)).await.unwrap();
        let cache = Arc::new(SegmentCache::new(1 << 20));
        let reader = SegmentReader::new(Arc::new(store), Arc::clone(&cache));
        let chunks = [chunk("segments/a.seg", 10, 5), chunk("segments/a.seg", 20, 5), chunk("segments/a.seg", 15, 5)];
        let read = reader.read_chunks(&chunks).await;
        for wanted in &chunks {
            let start = wanted.byte_start as u8;
            assert_eq!(&read.get(wanted).unwrap()[..], &[start, start + 1, start + 2, start + 3, start + 4]);
        }
        assert_eq!(gets(&metrics), 1, "one GET for three neighbouring chunks");
        let again = reader.read_chunks(&chunks[..1]).await;
        assert_eq!(&again.get(&chunks[0]).unwrap()[..], &[10, 11, 12, 13, 14]);
        assert_eq!(gets(&metrics), 1, "the second read is served by the cache");
    }

    #[tokio::test]
    async fn a_read_ahead_fills_the_cache_in_the_background() {
        let (store, metrics) = memory_store();
        store.put("segments/a.seg", Bytes::from_static(b"0123456789")).await.unwrap();
        let cache = Arc::new(SegmentCache::new(1 << 20));
        let reader = Arc::new(SegmentReader::new(Arc::new(store), Arc::clone(&cache)));
        reader.read_ahead(vec![chunk("segments/a.seg", 2, 3), chunk("segments/a.seg", 6, 2)]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while cache.get("segments/a.seg", 2..8).is_none() {
            assert!(std::time::Instant::now() < deadline, "the read-ahead never reached the cache");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(gets(&metrics), 1);
        let read = reader.read_chunks([&chunk("segments/a.seg", 6, 2)]).await;
        assert_eq!(&read.get(&chunk("segments/a.seg", 6, 2)).unwrap()[..], b"67");
        assert_eq!(gets(&metrics), 1, "the fetch after it is served by the cache");
    }

    #[tokio::test]
    async fn a_fetch_waits_for_a_read_ahead_of_the_same_range_instead_of_reading_it_again() {
        let (store, metrics) = memory_store();
        store.put("segments/a.seg", Bytes::from_static(b"0123456789")).await.unwrap();
        let reader = Arc::new(SegmentReader::new(Arc::new(store), Arc::new(SegmentCache::new(1 << 20))));
        let wanted = chunk("segments/a.seg", 2, 3);
        reader.read_ahead(vec![wanted.clone()]);
        // The read-ahead is registered before it runs: the fetch right after it shares its GET.
        let read = reader.read_chunks([&wanted]).await;
        assert_eq!(&read.get(&wanted).unwrap()[..], b"234");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(gets(&metrics), 1, "one GET for the read-ahead and the fetch together");
        assert!(reader.in_flight.lock().unwrap().is_empty(), "a finished GET is no longer listed as under way");
    }

    #[tokio::test]
    async fn equal_ranges_of_two_objects_under_way_at_once_give_each_object_its_own_bytes() {
        let (store, metrics) = memory_store();
        store.put("segments/a.seg", Bytes::from_static(b"aaaaaaaaaa")).await.unwrap();
        store.put("segments/b.seg", Bytes::from_static(b"bbbbbbbbbb")).await.unwrap();
        let reader = Arc::new(SegmentReader::new(Arc::new(store), Arc::new(SegmentCache::new(1 << 20))));
        let (in_a, in_b) = (chunk("segments/a.seg", 2, 3), chunk("segments/b.seg", 2, 3));
        // Both GETs are under way when the fetch asks, with the same range in both objects.
        reader.read_ahead(vec![in_a.clone(), in_b.clone()]);
        let read = reader.read_chunks([&in_a, &in_b]).await;
        assert_eq!(&read.get(&in_a).unwrap()[..], b"aaa");
        assert_eq!(&read.get(&in_b).unwrap()[..], b"bbb", "a chunk of b was cut from a's bytes");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(gets(&metrics), 2, "the fetch shared both read-ahead GETs");
    }

    #[tokio::test]
    async fn a_chunk_whose_object_is_missing_is_left_out_for_the_caller_to_report() {
        let (store, _) = memory_store();
        store.put("segments/a.seg", Bytes::from_static(b"0123456789")).await.unwrap();
        let reader = SegmentReader::new(Arc::new(store), Arc::new(SegmentCache::new(1 << 20)));
        let present = chunk("segments/a.seg", 2, 3);
        let gone = chunk("segments/gone.seg", 0, 3);
        let read = reader.read_chunks([&present, &gone]).await;
        assert_eq!(&read.get(&present).unwrap()[..], b"234");
        assert!(read.get(&gone).is_none());
        assert!(reader.read_chunk(&gone).await.is_err(), "reading it alone reports the failure");
    }
}
