//! Objects in an object_store bucket (`s3://bucket/prefix`, `memory://`), under a prefix.

use super::{ObjectBackend, ObjectError};
use bytes::Bytes;
use futures::future::BoxFuture;
use object_store::{path::Path as ObjectPath, ObjectStore, ObjectStoreExt};
use std::ops::Range;
use std::sync::Arc;

pub struct RemoteBackend {
    store: Arc<dyn ObjectStore>,
    /// Prepended to every name; empty for the bucket's root.
    prefix: String,
}

impl RemoteBackend {
    pub fn new(store: Arc<dyn ObjectStore>, prefix: String) -> Self {
        Self { store, prefix }
    }

    fn path(&self, name: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(name)
        } else {
            ObjectPath::from(format!("{}/{name}", self.prefix))
        }
    }
}

fn boxed(error: object_store::Error) -> ObjectError {
    Box::new(error)
}

impl ObjectBackend for RemoteBackend {
    fn put<'a>(&'a self, name: &'a str, bytes: Bytes) -> BoxFuture<'a, Result<(), ObjectError>> {
        Box::pin(async move { self.store.put(&self.path(name), bytes.into()).await.map(|_| ()).map_err(boxed) })
    }

    fn get_range<'a>(&'a self, name: &'a str, range: Range<u64>) -> BoxFuture<'a, Result<Bytes, ObjectError>> {
        Box::pin(async move { self.store.get_range(&self.path(name), range).await.map_err(boxed) })
    }

    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Bytes, ObjectError>> {
        Box::pin(async move { self.store.get(&self.path(name)).await.map_err(boxed)?.bytes().await.map_err(boxed) })
    }

    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ObjectError>> {
        Box::pin(async move { self.store.delete(&self.path(name)).await.map_err(boxed) })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, ObjectError>> {
        Box::pin(async move {
            use futures::TryStreamExt;
            let objects: Vec<_> = self.store.list(Some(&self.path(prefix))).try_collect().await.map_err(boxed)?;
            let root = format!("{}/", self.prefix);
            Ok(objects
                .into_iter()
                .map(|meta| {
                    let full = meta.location.to_string();
                    if self.prefix.is_empty() {
                        full
                    } else {
                        full.trim_start_matches(&root).to_string()
                    }
                })
                .collect())
        })
    }
}
