//! The local disk tier (`--disk-cache-dir`): every segment object this agent PUT, kept whole in a
//! file of its own within a byte budget (`--disk-cache-bytes`), so a consumer reading back what
//! this agent wrote minutes ago is served from local disk (usually the page cache) instead of a
//! bucket GET. Partitions are led by the same agent for produce and fetch (rendezvous placement),
//! so in a cluster most reads of recent data land on the agent that wrote it.
//!
//! It is a cache, never a source of truth:
//! - an object is kept only after its PUT succeeded, and its file is registered only once written
//!   whole, so a read never sees a partial file;
//! - the directory is emptied at start: what a restarted agent serves comes from the bucket, so a
//!   hole in the bucket is never hidden by a file an earlier process left (durability tests read
//!   back after a restart for this reason);
//! - a file that cannot be read (deleted, disk error) is a miss: the reader GETs from the bucket.
//!
//! Eviction is oldest-written first, like the in-memory cache: fresh objects are read back in
//! the order they were written.
//!
//! Files are written and read with `O_DIRECT` where the file system allows it (not tmpfs): the
//! bytes go to the disk without passing through the page cache. On the bench machine, growing
//! the page cache by a flush's worth of pages cost the writing agent about 2.5 ms of CPU per MiB,
//! which halved its produce throughput per core; direct I/O costs a copy into an aligned buffer.
//! It also keeps the cache out of the container's memory accounting (cgroup v1 counts the page
//! cache toward the limit). Reads then come from the disk itself, which a local SSD serves at
//! several hundred MiB/s.

use crate::metrics::Metrics;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};

/// The subdirectory of `--disk-cache-dir` the agent owns and empties at start: never the given
/// directory itself, which may hold other files.
const OWN_SUBDIRECTORY: &str = "floe-segment-cache";

/// Bytes waiting to be written at most; past it an object is not kept, so a slow disk never holds
/// an unbounded queue of segments in memory.
const MAX_PENDING_WRITE_BYTES: u64 = 64 << 20;

/// Direct I/O's alignment of buffers, file offsets and lengths (a page: enough for 4 KiB sectors).
const ALIGN: usize = 4096;

pub struct DiskCache {
    shared: Arc<Shared>,
    /// To the writer thread; it ends when the cache is dropped.
    writes: Sender<(Arc<str>, Bytes)>,
}

struct Shared {
    directory: PathBuf,
    capacity_bytes: u64,
    inner: Mutex<Inner>,
    pending_write_bytes: AtomicU64,
    /// Cleared, for good, the first time the file system refuses `O_DIRECT` (tmpfs does).
    direct: AtomicBool,
    next_file: AtomicU64,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct Inner {
    files: HashMap<Arc<str>, CachedFile>,
    /// Write order, for eviction.
    order: VecDeque<Arc<str>>,
    bytes: u64,
}

struct CachedFile {
    path: PathBuf,
    /// The object's length; the file is padded to a multiple of [`ALIGN`].
    len: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("--disk-cache-dir {directory}: {reason}; give a writable directory on a local disk (an emptyDir volume in a pod)")]
pub struct DiskCacheError {
    directory: String,
    reason: std::io::Error,
}

impl DiskCache {
    /// Creates (or empties) `<parent>/floe-segment-cache` and starts the thread that writes to it.
    pub fn open(parent: &Path, capacity_bytes: u64, metrics: Arc<Metrics>) -> Result<Self, DiskCacheError> {
        let directory = parent.join(OWN_SUBDIRECTORY);
        let failed = |reason| DiskCacheError { directory: parent.display().to_string(), reason };
        match std::fs::remove_dir_all(&directory) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(failed(error)),
        }
        std::fs::create_dir_all(&directory).map_err(failed)?;
        metrics.disk_cache_capacity_bytes.set(i64::try_from(capacity_bytes).unwrap_or(i64::MAX));
        metrics.disk_cache_resident_bytes.set(0);
        let shared = Arc::new(Shared {
            directory,
            capacity_bytes,
            inner: Mutex::default(),
            pending_write_bytes: AtomicU64::new(0),
            direct: AtomicBool::new(true),
            next_file: AtomicU64::new(0),
            metrics,
        });
        let (writes, received) = std::sync::mpsc::channel();
        let writer = Arc::clone(&shared);
        std::thread::Builder::new().name("floe-disk-cache".to_string()).spawn(move || writer.write_all(received)).map_err(failed)?;
        Ok(Self { shared, writes })
    }

    /// Keeps the whole object `bytes` (just PUT) in the background: the flush that called this
    /// does not wait for the disk.
    pub fn keep(&self, object: &str, bytes: Bytes) {
        let shared = &self.shared;
        let len = bytes.len() as u64;
        if len > shared.capacity_bytes {
            return;
        }
        if shared.pending_write_bytes.fetch_add(len, Ordering::AcqRel) + len > MAX_PENDING_WRITE_BYTES {
            shared.pending_write_bytes.fetch_sub(len, Ordering::AcqRel);
            shared.metrics.disk_cache_writes.with_label_values(&["skipped"]).inc();
            return;
        }
        if self.writes.send((Arc::from(object), bytes)).is_err() {
            shared.pending_write_bytes.fetch_sub(len, Ordering::AcqRel);
        }
    }

    /// `range` of `object`, when this agent wrote the object and still keeps it.
    pub async fn read(&self, object: &str, range: Range<u64>) -> Option<Bytes> {
        let shared = &self.shared;
        let path = {
            let inner = shared.lock();
            let file = inner.files.get(object)?;
            (range.start <= range.end && range.end <= file.len).then(|| file.path.clone())
        };
        let Some(path) = path else {
            shared.metrics.disk_cache_reads.with_label_values(&["miss"]).inc();
            return None;
        };
        let direct = shared.direct.load(Ordering::Relaxed);
        match tokio::task::spawn_blocking(move || read_range(&path, range, direct)).await {
            Ok(Ok(bytes)) => {
                shared.metrics.disk_cache_reads.with_label_values(&["hit"]).inc();
                Some(bytes)
            }
            // Evicted between the lookup and the open, or a disk error: the bucket has it.
            _ => {
                shared.metrics.disk_cache_reads.with_label_values(&["failed"]).inc();
                None
            }
        }
    }

    #[cfg(test)]
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.lock()
    }
}

impl Shared {
    /// The writer thread: one file per object, through one aligned buffer reused for every write
    /// (a fresh buffer per object would fault in its pages each time, the cost direct I/O avoids).
    fn write_all(&self, received: Receiver<(Arc<str>, Bytes)>) {
        let mut buffer: Vec<u8> = Vec::new();
        for (object, bytes) in received {
            let len = bytes.len() as u64;
            self.write(object, &bytes, &mut buffer);
            self.pending_write_bytes.fetch_sub(len, Ordering::AcqRel);
        }
    }

    fn write(&self, object: Arc<str>, bytes: &[u8], buffer: &mut Vec<u8>) {
        // Object names are never reused, so an object already kept has these very bytes.
        if self.lock().files.contains_key(&object) {
            return;
        }
        let path = self.directory.join(format!("{}.seg", self.next_file.fetch_add(1, Ordering::Relaxed)));
        let written = match self.direct.load(Ordering::Relaxed) {
            true => match write_direct(&path, bytes, buffer) {
                Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {
                    tracing::info!(directory = %self.directory.display(), "the disk cache's file system refuses O_DIRECT (tmpfs?); writing through the page cache");
                    self.direct.store(false, Ordering::Relaxed);
                    std::fs::write(&path, bytes)
                }
                other => other,
            },
            false => std::fs::write(&path, bytes),
        };
        if let Err(error) = written {
            // Disk full or gone: the object is simply not cached; reads GET it from the bucket.
            tracing::debug!(%error, path = %path.display(), "could not keep a segment in the disk cache");
            let _ = std::fs::remove_file(&path);
            self.metrics.disk_cache_writes.with_label_values(&["failed"]).inc();
            return;
        }
        self.metrics.disk_cache_writes.with_label_values(&["ok"]).inc();
        let evicted = {
            let mut inner = self.lock();
            inner.files.insert(Arc::clone(&object), CachedFile { path, len: bytes.len() as u64 });
            let mut evicted: Vec<PathBuf> = Vec::new();
            inner.bytes += bytes.len() as u64;
            inner.order.push_back(object);
            while inner.bytes > self.capacity_bytes {
                let Some(oldest) = inner.order.pop_front() else { break };
                if let Some(file) = inner.files.remove(&oldest) {
                    inner.bytes -= file.len;
                    evicted.push(file.path);
                }
            }
            self.metrics.disk_cache_resident_bytes.set(i64::try_from(inner.bytes).unwrap_or(i64::MAX));
            evicted
        };
        for path in evicted {
            // A read that opened the file before this keeps reading it (unlink frees it after).
            let _ = std::fs::remove_file(path);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `bytes` into a new file with `O_DIRECT`, padded with zeros to a multiple of [`ALIGN`].
fn write_direct(path: &Path, bytes: &[u8], buffer: &mut Vec<u8>) -> std::io::Result<()> {
    let padded = bytes.len().div_ceil(ALIGN) * ALIGN;
    if buffer.len() < padded + ALIGN {
        buffer.resize(padded + ALIGN, 0);
    }
    let skip = buffer.as_ptr().align_offset(ALIGN);
    let aligned = &mut buffer[skip..skip + padded];
    aligned[..bytes.len()].copy_from_slice(bytes);
    aligned[bytes.len()..].fill(0);
    let file = OpenOptions::new().write(true).create(true).truncate(true).custom_flags(libc::O_DIRECT).open(path)?;
    file.write_all_at(aligned, 0)
}

/// `range` of the file at `path`: with `O_DIRECT`, the aligned pages around it are read into an
/// aligned buffer and the range is a slice of it (no copy).
fn read_range(path: &Path, range: Range<u64>, direct: bool) -> std::io::Result<Bytes> {
    let len = (range.end - range.start) as usize;
    if !direct {
        let mut buffer = vec![0; len];
        File::open(path)?.read_exact_at(&mut buffer, range.start)?;
        return Ok(Bytes::from(buffer));
    }
    let first = range.start - range.start % ALIGN as u64;
    let last = range.end.div_ceil(ALIGN as u64) * ALIGN as u64;
    let span = (last - first) as usize;
    let mut buffer = vec![0u8; span + ALIGN];
    let skip = buffer.as_ptr().align_offset(ALIGN);
    let file = OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(path)?;
    file.read_exact_at(&mut buffer[skip..skip + span], first)?;
    let from = skip + (range.start - first) as usize;
    Ok(Bytes::from(buffer).slice(from..from + len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn cache(parent: &Path, capacity_bytes: u64) -> DiskCache {
        DiskCache::open(parent, capacity_bytes, Arc::new(Metrics::new())).unwrap()
    }

    /// `keep` writes in the background: waits until the object is readable.
    async fn kept(cache: &DiskCache, object: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cache.lock().files.contains_key(object) {
            assert!(Instant::now() < deadline, "{object} was never written");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_kept_object_is_read_back_by_range() {
        let parent = tempfile::tempdir().unwrap();
        let cache = cache(parent.path(), 1 << 20);
        cache.keep("segments/a.seg", Bytes::from_static(b"0123456789"));
        kept(&cache, "segments/a.seg").await;
        assert_eq!(&cache.read("segments/a.seg", 2..5).await.unwrap()[..], b"234");
        assert_eq!(&cache.read("segments/a.seg", 0..10).await.unwrap()[..], b"0123456789");
        assert!(cache.read("segments/a.seg", 8..11).await.is_none(), "past the object's end");
        assert!(cache.read("segments/b.seg", 0..1).await.is_none(), "an object never kept");
    }

    /// Ranges that start and end inside pages and cross page boundaries come back exactly, on a
    /// disk and on tmpfs (which refuses O_DIRECT before Linux 6.6: the cache then falls back).
    #[tokio::test]
    async fn unaligned_ranges_read_back_exactly_on_disk_and_on_tmpfs() {
        let object: Vec<u8> = (0..10_000u32).map(|index| (index % 251) as u8).collect();
        let on_disk = tempfile::tempdir().unwrap();
        let mut parents = vec![on_disk];
        if Path::new("/dev/shm").is_dir() {
            parents.push(tempfile::tempdir_in("/dev/shm").unwrap());
        }
        for parent in &parents {
            let cache = cache(parent.path(), 1 << 20);
            cache.keep("a", Bytes::from(object.clone()));
            kept(&cache, "a").await;
            for range in [0..1, 4000..8200, 4096..8192, 9999..10_000, 0..10_000, 123..4097] {
                let read = cache.read("a", range.start as u64..range.end as u64).await.unwrap();
                assert_eq!(&read[..], &object[range.clone()], "{range:?} under {}", parent.path().display());
            }
        }
    }

    #[tokio::test]
    async fn the_oldest_objects_are_evicted_and_their_files_deleted() {
        let parent = tempfile::tempdir().unwrap();
        let cache = cache(parent.path(), 10);
        cache.keep("a", Bytes::from_static(b"aaaaaa"));
        kept(&cache, "a").await;
        cache.keep("b", Bytes::from_static(b"bbbbbb"));
        kept(&cache, "b").await;
        assert!(cache.read("a", 0..1).await.is_none());
        assert_eq!(&cache.read("b", 0..6).await.unwrap()[..], b"bbbbbb");
        let files = std::fs::read_dir(parent.path().join(OWN_SUBDIRECTORY)).unwrap().count();
        assert_eq!(files, 1, "the evicted object's file is deleted");
        assert_eq!(cache.lock().bytes, 6);
    }

    #[tokio::test]
    async fn opening_empties_what_an_earlier_process_left_but_nothing_beside_it() {
        let parent = tempfile::tempdir().unwrap();
        std::fs::write(parent.path().join("unrelated"), b"keep me").unwrap();
        let first = cache(parent.path(), 1 << 20);
        first.keep("a", Bytes::from_static(b"old bytes"));
        kept(&first, "a").await;
        let second = cache(parent.path(), 1 << 20);
        assert!(second.read("a", 0..3).await.is_none(), "a restarted agent reads from the bucket");
        assert_eq!(std::fs::read_dir(parent.path().join(OWN_SUBDIRECTORY)).unwrap().count(), 0);
        assert_eq!(std::fs::read(parent.path().join("unrelated")).unwrap(), b"keep me");
    }

    #[tokio::test]
    async fn a_file_deleted_under_the_cache_is_a_miss_not_an_error() {
        let parent = tempfile::tempdir().unwrap();
        let cache = cache(parent.path(), 1 << 20);
        cache.keep("a", Bytes::from_static(b"abc"));
        kept(&cache, "a").await;
        for file in std::fs::read_dir(parent.path().join(OWN_SUBDIRECTORY)).unwrap() {
            std::fs::remove_file(file.unwrap().path()).unwrap();
        }
        assert!(cache.read("a", 0..3).await.is_none());
    }

    /// A disk that refuses writes (full, gone, or here the directory replaced by a file): the
    /// object is not kept, the failure is counted, and reads of it are misses for the bucket.
    #[tokio::test]
    async fn a_write_the_disk_refuses_is_counted_and_the_object_is_read_from_the_bucket() {
        let parent = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let cache = DiskCache::open(parent.path(), 1 << 20, Arc::clone(&metrics)).unwrap();
        let directory = parent.path().join(OWN_SUBDIRECTORY);
        std::fs::remove_dir(&directory).unwrap();
        std::fs::write(&directory, b"not a directory").unwrap();
        cache.keep("a", Bytes::from_static(b"abc"));
        let failed = || metrics.disk_cache_writes.with_label_values(&["failed"]).get();
        let deadline = Instant::now() + Duration::from_secs(5);
        while failed() == 0 {
            assert!(Instant::now() < deadline, "the refused write was never counted");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(cache.read("a", 0..3).await.is_none());
        assert_eq!(metrics.disk_cache_resident_bytes.get(), 0);
    }

    #[test]
    fn an_unusable_directory_is_named_with_what_to_do() {
        let parent = tempfile::tempdir().unwrap();
        let file = parent.path().join("a-file");
        std::fs::write(&file, b"").unwrap();
        let error = DiskCache::open(&file, 1 << 20, Arc::new(Metrics::new())).err().unwrap().to_string();
        assert!(error.contains("--disk-cache-dir") && error.contains("a-file") && error.contains("writable directory"), "{error}");
    }
}
