//! The object store behind a URL: `file:///path` (our own fsyncing implementation, so a PUT is
//! durable when it returns), `memory://` and `s3://bucket/prefix` (through the object_store crate).
//!
//! Every operation is reported to a [`StoreObserver`] passed in at [`SegmentStore::open`]: the
//! agent's metrics registry implements it; the operator, which only probes and empties a bucket,
//! opens it with [`SegmentStore::open_unobserved`].
//!
//! Layers: a backend ([`ObjectBackend`]: [`files`], [`remote`], or [`faults`] wrapping either)
//! does the I/O; [`SegmentStore`] adds, once for every backend, the timing, the observer and the
//! errors that name the object.

pub mod faults;
pub mod files;
pub mod remote;

use bytes::Bytes;
use files::FileBackend;
use futures::future::BoxFuture;
use object_store::ObjectStore;
use remote::RemoteBackend;
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

/// What a failed backend call returns; [`SegmentStore`] wraps it in a [`StoreError`] naming the
/// object.
pub type ObjectError = Box<dyn std::error::Error + Send + Sync>;

/// One place objects live: a directory ([`files::FileBackend`]), an object_store bucket
/// ([`remote::RemoteBackend`]), or a wrapper that breaks on command ([`faults::FaultInjecting`]).
/// Names are relative (`clusters/<id>/segments/01J….seg`); the backend maps them under its root.
pub trait ObjectBackend: Send + Sync {
    /// Stores `bytes` under `name`; durable when it returns `Ok`.
    fn put<'a>(&'a self, name: &'a str, bytes: Bytes) -> BoxFuture<'a, Result<(), ObjectError>>;
    fn get_range<'a>(&'a self, name: &'a str, range: Range<u64>) -> BoxFuture<'a, Result<Bytes, ObjectError>>;
    /// The whole object.
    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Bytes, ObjectError>>;
    /// Succeeds when the object is already gone.
    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ObjectError>>;
    /// Names under `prefix`, relative, in any order.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, ObjectError>>;
}

/// The bucket as the agent and the operator use it: a backend with every operation timed and
/// reported to the observer once, here, and errors that name the object.
pub struct SegmentStore {
    backend: Arc<dyn ObjectBackend>,
    observer: Arc<dyn StoreObserver>,
}

impl SegmentStore {
    /// A store that reports nothing (the operator's probes and deletions).
    pub fn open_unobserved(url: &ObjectStoreUrl, s3: &S3Options) -> Result<Self, StoreError> {
        Self::open(url, s3, Arc::new(Unobserved))
    }

    pub fn open(url: &ObjectStoreUrl, s3: &S3Options, observer: Arc<dyn StoreObserver>) -> Result<Self, StoreError> {
        let backend: Arc<dyn ObjectBackend> = match url {
            ObjectStoreUrl::File(root) => {
                std::fs::create_dir_all(root)
                    .map_err(|error| StoreError::Configure { url: format!("file://{}", root.display()), reason: error.to_string() })?;
                Arc::new(FileBackend::new(root.clone()))
            }
            ObjectStoreUrl::Memory => Arc::new(RemoteBackend::new(Arc::new(object_store::memory::InMemory::new()), String::new())),
            ObjectStoreUrl::S3 { bucket, prefix } => Arc::new(RemoteBackend::new(s3_client(bucket, prefix, s3)?, prefix.clone())),
        };
        Ok(Self::with_backend(backend, observer))
    }

    /// A store over any backend (tests wrap one in [`faults::FaultInjecting`]).
    pub fn with_backend(backend: Arc<dyn ObjectBackend>, observer: Arc<dyn StoreObserver>) -> Self {
        Self { backend, observer }
    }

    /// Runs one backend call, timing it and reporting its outcome.
    async fn observed<T>(&self, operation: &str, call: BoxFuture<'_, Result<T, ObjectError>>) -> Result<T, ObjectError> {
        let started = Instant::now();
        let result = call.await;
        self.observer.operation(operation, started.elapsed(), result.is_ok());
        if let Err(error) = &result {
            if !is_not_found(error.as_ref()) {
                self.observer.failure(operation, &root_cause(error.as_ref()));
            }
        }
        result
    }

    /// Stores `bytes` under `name`. Durable when it returns `Ok`.
    pub async fn put(&self, name: &str, bytes: Bytes) -> Result<(), StoreError> {
        let length = bytes.len() as u64;
        self.observed("put", self.backend.put(name, bytes)).await.map_err(|source| StoreError::Put { name: name.to_string(), source })?;
        self.observer.bytes("put", length);
        Ok(())
    }

    pub async fn get_range(&self, name: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        let (start, end) = (range.start, range.end);
        let bytes = self.observed("get", self.backend.get_range(name, range)).await.map_err(|source| StoreError::Get {
            name: name.to_string(),
            start,
            end,
            source,
        })?;
        self.observer.bytes("get", bytes.len() as u64);
        Ok(bytes)
    }

    /// The whole object.
    pub async fn get(&self, name: &str) -> Result<Bytes, StoreError> {
        let bytes = self.observed("get", self.backend.get(name)).await.map_err(|source| StoreError::Get {
            name: name.to_string(),
            start: 0,
            end: u64::MAX,
            source,
        })?;
        self.observer.bytes("get", bytes.len() as u64);
        Ok(bytes)
    }

    pub async fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.observed("delete", self.backend.delete(name)).await.map_err(|source| StoreError::Delete { name: name.to_string(), source })
    }

    /// Names of the objects under `prefix` (relative names, sorted). Not timed: listings are
    /// the jobs' business, not a client's wait.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut names = self.backend.list(prefix).await.map_err(|source| StoreError::List { prefix: prefix.to_string(), source })?;
        names.sort();
        Ok(names)
    }
}

/// The S3 client for `s3://bucket/prefix`, with bounded timeouts and retries.
fn s3_client(bucket: &str, prefix: &str, s3: &S3Options) -> Result<Arc<dyn ObjectStore>, StoreError> {
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
    let store =
        builder.build().map_err(|error| StoreError::Configure { url: format!("s3://{bucket}/{prefix}"), reason: error.to_string() })?;
    Ok(Arc::new(store))
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

    /// Records what the store reports, for the tests below.
    #[derive(Default)]
    struct Recording {
        operations: std::sync::Mutex<Vec<(String, bool)>>,
        failures: std::sync::Mutex<Vec<(String, String)>>,
        bytes: std::sync::Mutex<Vec<(String, u64)>>,
    }

    impl StoreObserver for Recording {
        fn operation(&self, operation: &str, _elapsed: std::time::Duration, succeeded: bool) {
            self.operations.lock().unwrap().push((operation.to_string(), succeeded));
        }
        fn bytes(&self, direction: &str, bytes: u64) {
            self.bytes.lock().unwrap().push((direction.to_string(), bytes));
        }
        fn failure(&self, operation: &str, cause: &str) {
            self.failures.lock().unwrap().push((operation.to_string(), cause.to_string()));
        }
    }

    #[tokio::test]
    async fn every_backend_is_observed_the_same_way_and_an_injected_fault_is_reported_once_then_cleared() {
        let directory = tempfile::tempdir().unwrap();
        let backends: Vec<Arc<dyn ObjectBackend>> = vec![
            Arc::new(FileBackend::new(directory.path().to_path_buf())),
            Arc::new(RemoteBackend::new(Arc::new(object_store::memory::InMemory::new()), "prefix".into())),
        ];
        for inner in backends {
            let faulty = Arc::new(faults::FaultInjecting::new(inner));
            let recording = Arc::new(Recording::default());
            let store = SegmentStore::with_backend(faulty.clone(), recording.clone());
            faulty.fail_next(faults::Operation::Put, 1);
            let error = store.put("segments/a.seg", Bytes::from_static(b"0123456789")).await.unwrap_err();
            assert!(error.to_string().contains("segments/a.seg") && error.to_string().contains("injected fault"), "{error}");
            store.put("segments/a.seg", Bytes::from_static(b"0123456789")).await.unwrap();
            assert_eq!(&store.get_range("segments/a.seg", 2..5).await.unwrap()[..], b"234");
            // A missing object is an answer, not a failure of the store.
            assert!(store.get("segments/missing.seg").await.is_err());
            store.delete("segments/missing.seg").await.unwrap();
            assert_eq!(store.list("segments").await.unwrap(), vec!["segments/a.seg".to_string()]);
            assert_eq!(
                *recording.operations.lock().unwrap(),
                [("put", false), ("put", true), ("get", true), ("get", false), ("delete", true)].map(|(op, ok)| (op.to_string(), ok))
            );
            assert_eq!(*recording.failures.lock().unwrap(), vec![("put".to_string(), "injected fault (Put)".to_string())]);
            assert_eq!(*recording.bytes.lock().unwrap(), vec![("put".to_string(), 10), ("get".to_string(), 3)]);
        }
    }
}
