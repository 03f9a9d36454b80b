//! The object store behind a URL: `file:///path` (our own fsyncing implementation, so a PUT is
//! durable when it returns), `memory://` and `s3://bucket/prefix` (through the object_store crate).
//!
//! Every operation is reported to a [`StoreObserver`] passed in at [`SegmentStore::open`]: the
//! agent's metrics registry implements it; the operator, which only probes and empties a bucket,
//! opens it with [`SegmentStore::open_unobserved`].

use bytes::Bytes;
use object_store::{path::Path as ObjectPath, ObjectStore, ObjectStoreExt};
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectStoreUrl {
    File(PathBuf),
    Memory,
    S3 { bucket: String, prefix: String },
}

impl std::str::FromStr for ObjectStoreUrl {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, String> {
        const EXAMPLES: &str = "examples: file:///var/lib/floe/bucket, memory://, s3://bucket/prefix";
        if let Some(path) = value.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(format!("{value:?} is not an absolute file URL; {EXAMPLES}"));
            }
            return Ok(Self::File(PathBuf::from(path)));
        }
        if value == "memory://" || value == "memory:///" {
            return Ok(Self::Memory);
        }
        if let Some(rest) = value.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("{value:?} names no bucket; {EXAMPLES}"));
            }
            return Ok(Self::S3 { bucket: bucket.to_string(), prefix: prefix.trim_matches('/').to_string() });
        }
        Err(format!("unsupported object store URL {value:?}; {EXAMPLES}"))
    }
}

/// S3 settings given as flags; anything unset falls back to the standard AWS_* environment.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub allow_http: bool,
    pub virtual_hosted_style: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("failed to write object {name}: {source}")]
    Put { name: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("failed to read object {name} bytes {start}..{end}: {source}")]
    Get { name: String, start: u64, end: u64, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("failed to delete object {name}: {source}")]
    Delete { name: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("failed to list objects under {prefix}: {source}")]
    List { prefix: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("failed to configure the object store {url}: {reason}")]
    Configure { url: String, reason: String },
}

enum Backend {
    Files(PathBuf),
    Remote { store: Arc<dyn ObjectStore>, prefix: String },
}

/// One S3 request attempt (a PUT of a full 8 MiB segment takes well under a second on S3).
const OBJECT_STORE_REQUEST_TIMEOUT: &str = "10s";
const OBJECT_STORE_CONNECT_TIMEOUT: &str = "3s";
const OBJECT_STORE_MAX_RETRIES: usize = 3;
/// No retry starts later than this after the first attempt.
const OBJECT_STORE_RETRY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Told about every store operation, for metrics. Labels are bounded: `operation` is one of
/// `put`, `get`, `delete`; `direction` one of `put`, `get`.
pub trait StoreObserver: Send + Sync {
    /// One `put`, `get` or `delete` finished after `elapsed`.
    fn operation(&self, operation: &str, elapsed: std::time::Duration, succeeded: bool);
    /// `bytes` were written (`put`) or read (`get`).
    fn bytes(&self, direction: &str, bytes: u64);
    /// An operation failed for a reason other than a missing object; `cause` is the root cause
    /// in a few words. Called after `operation`.
    fn failure(&self, _operation: &str, _cause: &str) {}
}

/// Observes nothing.
pub struct Unobserved;

impl StoreObserver for Unobserved {
    fn operation(&self, _operation: &str, _elapsed: std::time::Duration, _succeeded: bool) {}
    fn bytes(&self, _direction: &str, _bytes: u64) {}
}

/// A missing object is an answer, not a failure of the store.
fn is_not_found(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if matches!(error.downcast_ref::<object_store::Error>(), Some(object_store::Error::NotFound { .. })) {
            return true;
        }
        if error.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound) {
            return true;
        }
        current = error.source();
    }
    false
}

/// The innermost error's text, on one line and at most 120 characters: "Connection refused (os
/// error 111)" rather than the chain of wrappers around it.
pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    let text: String = current.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() > 120 {
        format!("{}…", text.chars().take(119).collect::<String>())
    } else {
        text
    }
}

/// Names are relative (`segments/01J….seg`); the store maps them under its root or prefix.
pub struct SegmentStore {
    backend: Backend,
    observer: Arc<dyn StoreObserver>,
}

impl SegmentStore {
    /// A store that reports nothing (the operator's probes and deletions).
    pub fn open_unobserved(url: &ObjectStoreUrl, s3: &S3Options) -> Result<Self, StoreError> {
        Self::open(url, s3, Arc::new(Unobserved))
    }

    pub fn open(url: &ObjectStoreUrl, s3: &S3Options, observer: Arc<dyn StoreObserver>) -> Result<Self, StoreError> {
        let backend = match url {
            ObjectStoreUrl::File(root) => {
                std::fs::create_dir_all(root)
                    .map_err(|error| StoreError::Configure { url: format!("file://{}", root.display()), reason: error.to_string() })?;
                Backend::Files(root.clone())
            }
            ObjectStoreUrl::Memory => Backend::Remote { store: Arc::new(object_store::memory::InMemory::new()), prefix: String::new() },
            ObjectStoreUrl::S3 { bucket, prefix } => {
                use object_store::aws::AmazonS3ConfigKey;
                use object_store::ClientConfigKey;
                // Bounded so a hung or failing store fails a flush within seconds, not minutes
                // (object_store's defaults: 30 s per attempt, retries for up to 3 minutes), and
                // producers get a retriable error while flushes after the fault succeed at once.
                // Set before the TLS/HTTP options below, which only add to these.
                let mut builder = object_store::aws::AmazonS3Builder::from_env()
                    .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), OBJECT_STORE_REQUEST_TIMEOUT)
                    .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout), OBJECT_STORE_CONNECT_TIMEOUT)
                    .with_retry(object_store::RetryConfig {
                        backoff: Default::default(),
                        max_retries: OBJECT_STORE_MAX_RETRIES,
                        retry_timeout: OBJECT_STORE_RETRY_TIMEOUT,
                    })
                    .with_bucket_name(bucket)
                    .with_allow_http(s3.allow_http)
                    .with_virtual_hosted_style_request(s3.virtual_hosted_style);
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                if let Some(region) = &s3.region {
                    builder = builder.with_region(region);
                }
                if let Some(key) = &s3.access_key_id {
                    builder = builder.with_access_key_id(key);
                }
                if let Some(secret) = &s3.secret_access_key {
                    builder = builder.with_secret_access_key(secret);
                }
                let store = builder
                    .build()
                    .map_err(|error| StoreError::Configure { url: format!("s3://{bucket}/{prefix}"), reason: error.to_string() })?;
                Backend::Remote { store: Arc::new(store), prefix: prefix.clone() }
            }
        };
        Ok(Self { backend, observer })
    }

    fn remote_path(prefix: &str, name: &str) -> ObjectPath {
        if prefix.is_empty() {
            ObjectPath::from(name)
        } else {
            ObjectPath::from(format!("{prefix}/{name}"))
        }
    }

    fn observe<T>(&self, operation: &str, started: Instant, result: &Result<T, Box<dyn std::error::Error + Send + Sync>>) {
        self.observer.operation(operation, started.elapsed(), result.is_ok());
        if let Err(error) = result {
            if !is_not_found(error.as_ref()) {
                self.observer.failure(operation, &root_cause(error.as_ref()));
            }
        }
    }

    fn count_read<E>(&self, result: &Result<Bytes, E>) {
        if let Ok(bytes) = result {
            self.observer.bytes("get", bytes.len() as u64);
        }
    }

    /// Stores `bytes` under `name`. Durable when it returns `Ok`.
    pub async fn put(&self, name: &str, bytes: Bytes) -> Result<(), StoreError> {
        let started = Instant::now();
        let length = bytes.len() as u64;
        let result = match &self.backend {
            Backend::Files(root) => {
                let target = root.join(name);
                tokio::task::spawn_blocking(move || write_file_durably(&target, &bytes))
                    .await
                    .map_err(std::io::Error::other)
                    .and_then(|result| result)
                    .map_err(|error| Box::new(error) as Box<dyn std::error::Error + Send + Sync>)
            }
            Backend::Remote { store, prefix } => store
                .put(&Self::remote_path(prefix, name), bytes.into())
                .await
                .map(|_| ())
                .map_err(|error| Box::new(error) as Box<dyn std::error::Error + Send + Sync>),
        };
        self.observe("put", started, &result);
        if result.is_ok() {
            self.observer.bytes("put", length);
        }
        result.map_err(|source| StoreError::Put { name: name.to_string(), source })
    }

    pub async fn get_range(&self, name: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        let started = Instant::now();
        let result = match &self.backend {
            Backend::Files(root) => {
                let path = root.join(name);
                let range = range.clone();
                tokio::task::spawn_blocking(move || read_file_range(&path, range))
                    .await
                    .map_err(std::io::Error::other)
                    .and_then(|result| result)
                    .map_err(|error| Box::new(error) as Box<dyn std::error::Error + Send + Sync>)
            }
            Backend::Remote { store, prefix } => store
                .get_range(&Self::remote_path(prefix, name), range.clone())
                .await
                .map_err(|error| Box::new(error) as Box<dyn std::error::Error + Send + Sync>),
        };
        self.observe("get", started, &result);
        self.count_read(&result);
        result.map_err(|source| StoreError::Get { name: name.to_string(), start: range.start, end: range.end, source })
    }

    /// The whole object.
    pub async fn get(&self, name: &str) -> Result<Bytes, StoreError> {
        let started = Instant::now();
        let result = match &self.backend {
            Backend::Files(root) => {
                let path = root.join(name);
                tokio::task::spawn_blocking(move || std::fs::read(&path).map(Bytes::from))
                    .await
                    .map_err(std::io::Error::other)
                    .and_then(|result| result)
                    .map_err(|error| Box::new(error) as Box<dyn std::error::Error + Send + Sync>)
            }
            Backend::Remote { store, prefix } => match store.get(&Self::remote_path(prefix, name)).await {
                Ok(result) => result.bytes().await.map_err(|error| Box::new(error) as Box<dyn std::error::Error + Send + Sync>),
                Err(error) => Err(Box::new(error) as Box<dyn std::error::Error + Send + Sync>),
            },
        };
        self.observe("get", started, &result);
        self.count_read(&result);
        result.map_err(|source| StoreError::Get { name: name.to_string(), start: 0, end: u64::MAX, source })
    }

    pub async fn delete(&self, name: &str) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = match &self.backend {
            Backend::Files(root) => {
                let path = root.join(name);
                tokio::task::spawn_blocking(move || match std::fs::remove_file(&path) {
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    other => other,
                })
                .await
                .map_err(std::io::Error::other)
                .and_then(|result| result)
                .map_err(|error| Box::new(error) as Box<dyn std::error::Error + Send + Sync>)
            }
            Backend::Remote { store, prefix } => store
                .delete(&Self::remote_path(prefix, name))
                .await
                .map_err(|error| Box::new(error) as Box<dyn std::error::Error + Send + Sync>),
        };
        self.observe("delete", started, &result);
        result.map_err(|source| StoreError::Delete { name: name.to_string(), source })
    }

    /// Names of the objects under `prefix` (relative names, sorted).
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let list_error = |error: Box<dyn std::error::Error + Send + Sync>| StoreError::List { prefix: prefix.to_string(), source: error };
        let mut names = match &self.backend {
            Backend::Files(root) => {
                let directory = root.join(prefix);
                let mut names = Vec::new();
                match std::fs::read_dir(&directory) {
                    Ok(entries) => {
                        for entry in entries {
                            let entry = entry.map_err(|error| list_error(Box::new(error)))?;
                            let file_name = entry.file_name().to_string_lossy().to_string();
                            if !file_name.starts_with('.') {
                                names.push(format!("{}/{}", prefix.trim_end_matches('/'), file_name));
                            }
                        }
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => return Err(list_error(Box::new(error))),
                }
                names
            }
            Backend::Remote { store, prefix: root } => {
                use futures::TryStreamExt;
                let listing_prefix = Self::remote_path(root, prefix);
                let objects: Vec<_> = store.list(Some(&listing_prefix)).try_collect().await.map_err(|error| list_error(Box::new(error)))?;
                objects
                    .into_iter()
                    .map(|meta| {
                        let full = meta.location.to_string();
                        if root.is_empty() {
                            full
                        } else {
                            full.trim_start_matches(&format!("{root}/")).to_string()
                        }
                    })
                    .collect()
            }
        };
        names.sort();
        Ok(names)
    }
}

/// Write to a hidden temporary file, fsync it, rename into place, fsync the directory.
fn write_file_durably(target: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
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

fn read_file_range(path: &std::path::Path, range: Range<u64>) -> std::io::Result<Bytes> {
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
    fn urls_parse_with_helpful_errors() {
        assert_eq!("file:///tmp/x".parse::<ObjectStoreUrl>().unwrap(), ObjectStoreUrl::File("/tmp/x".into()));
        assert_eq!("memory://".parse::<ObjectStoreUrl>().unwrap(), ObjectStoreUrl::Memory);
        assert_eq!(
            "s3://bucket/a/b".parse::<ObjectStoreUrl>().unwrap(),
            ObjectStoreUrl::S3 { bucket: "bucket".into(), prefix: "a/b".into() }
        );
        assert!("file://relative".parse::<ObjectStoreUrl>().unwrap_err().contains("absolute"));
        assert!("gs://x".parse::<ObjectStoreUrl>().unwrap_err().contains("s3://bucket/prefix"));
    }

    #[tokio::test]
    async fn file_and_memory_stores_round_trip_ranges() {
        let directory = tempfile::tempdir().unwrap();
        for url in [ObjectStoreUrl::File(directory.path().to_path_buf()), ObjectStoreUrl::Memory] {
            let store = SegmentStore::open_unobserved(&url, &S3Options::default()).unwrap();
            store.put("segments/a.seg", Bytes::from_static(b"0123456789")).await.unwrap();
            assert_eq!(&store.get_range("segments/a.seg", 2..5).await.unwrap()[..], b"234");
            assert_eq!(store.list("segments").await.unwrap(), vec!["segments/a.seg".to_string()]);
        }
    }
}
