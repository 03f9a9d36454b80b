//! Objects as files under a directory (`file:///path`): a PUT is written to a hidden temporary
//! file, fsynced and renamed into place, so it is durable when it returns, as an S3 PUT is.

use super::{ObjectBackend, ObjectError};
use bytes::Bytes;
use futures::future::BoxFuture;
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

pub struct FileBackend {
    root: PathBuf,
}

impl FileBackend {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }
}

/// Runs blocking file work off the async workers.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> Result<T, ObjectError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(std::io::Error::other)
        .and_then(|result| result)
        .map_err(|error| Box::new(error) as ObjectError)
}

impl ObjectBackend for FileBackend {
    fn put<'a>(&'a self, name: &'a str, bytes: Bytes) -> BoxFuture<'a, Result<(), ObjectError>> {
        let target = self.root.join(name);
        Box::pin(blocking(move || write_file_durably(&target, &bytes)))
    }

    fn get_range<'a>(&'a self, name: &'a str, range: Range<u64>) -> BoxFuture<'a, Result<Bytes, ObjectError>> {
        let path = self.root.join(name);
        Box::pin(blocking(move || read_file_range(&path, range)))
    }

    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Bytes, ObjectError>> {
        let path = self.root.join(name);
        Box::pin(blocking(move || std::fs::read(&path).map(Bytes::from)))
    }

    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ObjectError>> {
        let path = self.root.join(name);
        // Deleting what is already gone succeeds, as on S3.
        Box::pin(blocking(move || match std::fs::remove_file(&path) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }))
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, ObjectError>> {
        let directory = self.root.join(prefix);
        let prefix = prefix.trim_end_matches('/').to_string();
        Box::pin(blocking(move || {
            let mut names = Vec::new();
            match std::fs::read_dir(&directory) {
                Ok(entries) => {
                    for entry in entries {
                        let file_name = entry?.file_name().to_string_lossy().to_string();
                        // Hidden files are PUTs in progress.
                        if !file_name.starts_with('.') {
                            names.push(format!("{prefix}/{file_name}"));
                        }
                    }
                }
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
            Ok(names)
        }))
    }
}

/// How much of an object is written before it is synced: a large object is written and synced a
/// slice at a time, so that its flush never holds the disk's queue for longer than one slice takes.
/// Every other writer's fsync (a producer's flush, the journal) waits behind whatever is queued
/// ahead of it: on the bench machine one 4-16 MiB compaction output written whole held the
/// playground's acknowledgements for 50-450 ms; in 1 MiB slices its p99 at half load stayed at
/// 13-19 ms against 42-49 ms (agent/DESIGN.md, "Compaction yields to producers"). A producer's
/// objects at heavy load (up to 8 MiB) pay a few more fsyncs, which did not show in throughput.
const SYNC_SLICE_BYTES: usize = 1 << 20;

/// Write to a hidden temporary file and fsync it (a slice at a time), rename into place, fsync the
/// directory.
fn write_file_durably(target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let directory = target.parent().ok_or_else(|| std::io::Error::other("object path has no parent directory"))?;
    if !directory.is_dir() {
        std::fs::create_dir_all(directory)?;
        // New directories (`clusters/<id>/segments`) must survive a crash too: their entries in
        // their parents are made durable like the file's own entry below.
        for ancestor in directory.ancestors().skip(1).take(3) {
            if let Ok(parent) = std::fs::File::open(ancestor) {
                parent.sync_all()?;
            }
        }
    }
    let file_name = target.file_name().map(|name| name.to_string_lossy().to_string()).unwrap_or_default();
    let temporary = directory.join(format!(".{file_name}.{}.tmp", ulid::Ulid::new()));
    let mut file = std::fs::File::create(&temporary)?;
    for slice in bytes.chunks(SYNC_SLICE_BYTES) {
        file.write_all(slice)?;
        file.sync_data()?;
    }
    if bytes.is_empty() {
        file.sync_data()?;
    }
    drop(file);
    std::fs::rename(&temporary, target)?;
    std::fs::File::open(directory)?.sync_all()
}

fn read_file_range(path: &Path, range: Range<u64>) -> std::io::Result<Bytes> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(range.start))?;
    let mut buffer = vec![0u8; (range.end - range.start) as usize];
    file.read_exact(&mut buffer)?;
    Ok(Bytes::from(buffer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_written_a_slice_at_a_time_reads_back_whole_and_across_its_slices() {
        let directory = tempfile::tempdir().unwrap();
        let target = directory.path().join("segments/a.seg");
        let bytes: Vec<u8> = (0..SYNC_SLICE_BYTES * 2 + 12_345).map(|index| (index % 251) as u8).collect();
        write_file_durably(&target, &bytes).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), bytes);
        let across = (SYNC_SLICE_BYTES - 10) as u64..(SYNC_SLICE_BYTES + 10) as u64;
        assert_eq!(&read_file_range(&target, across.clone()).unwrap()[..], &bytes[across.start as usize..across.end as usize]);
        write_file_durably(&directory.path().join("segments/empty.seg"), &[]).unwrap();
        assert_eq!(std::fs::read(directory.path().join("segments/empty.seg")).unwrap(), Vec::<u8>::new());
        let leftovers: Vec<_> = std::fs::read_dir(directory.path().join("segments"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }
}
