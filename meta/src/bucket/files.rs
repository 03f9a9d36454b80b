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

/// Write to a hidden temporary file, fsync it, rename into place, fsync the directory.
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
    file.write_all(bytes)?;
    file.sync_data()?;
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
