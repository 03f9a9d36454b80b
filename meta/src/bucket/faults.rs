//! A backend that fails or stalls on command, for tests of what a failing or slow bucket does to
//! the code above it (a flush, a fetch, a job) in process, without stopping a real server. The
//! end-to-end fault tier still breaks a real S3 server; this is for the unit and in-process tiers.

use super::{ObjectBackend, ObjectError};
use bytes::Bytes;
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The operations a fault can target (`get` covers ranged reads too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Put,
    Get,
    Delete,
    List,
}

#[derive(Default)]
struct Planned {
    /// Calls still to fail, per operation.
    failures: HashMap<Operation, usize>,
    /// Added before each call, per operation.
    delays: HashMap<Operation, Duration>,
}

/// Wraps a backend; by default it passes every call through.
pub struct FaultInjecting {
    inner: Arc<dyn ObjectBackend>,
    planned: Mutex<Planned>,
}

impl FaultInjecting {
    pub fn new(inner: Arc<dyn ObjectBackend>) -> Self {
        Self { inner, planned: Mutex::new(Planned::default()) }
    }

    /// The next `times` calls of `operation` fail (with "injected fault"), without reaching the
    /// inner backend.
    pub fn fail_next(&self, operation: Operation, times: usize) {
        self.planned.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).failures.insert(operation, times);
    }

    /// Every later call of `operation` waits `delay` first (zero removes the delay).
    pub fn delay(&self, operation: Operation, delay: Duration) {
        self.planned.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).delays.insert(operation, delay);
    }

    /// Takes one planned failure of `operation`, if any, and returns the delay to wait first.
    fn plan(&self, operation: Operation) -> (bool, Duration) {
        let mut planned = self.planned.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let fail = match planned.failures.get_mut(&operation) {
            Some(remaining) if *remaining > 0 => {
                *remaining -= 1;
                true
            }
            _ => false,
        };
        (fail, planned.delays.get(&operation).copied().unwrap_or_default())
    }

    async fn run<T>(&self, operation: Operation, call: BoxFuture<'_, Result<T, ObjectError>>) -> Result<T, ObjectError> {
        let (fail, delay) = self.plan(operation);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if fail {
            return Err(Box::new(std::io::Error::other(format!("injected fault ({operation:?})"))));
        }
        call.await
    }
}

impl ObjectBackend for FaultInjecting {
    fn put<'a>(&'a self, name: &'a str, bytes: Bytes) -> BoxFuture<'a, Result<(), ObjectError>> {
        Box::pin(self.run(Operation::Put, self.inner.put(name, bytes)))
    }

    fn get_range<'a>(&'a self, name: &'a str, range: Range<u64>) -> BoxFuture<'a, Result<Bytes, ObjectError>> {
        Box::pin(self.run(Operation::Get, self.inner.get_range(name, range)))
    }

    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Bytes, ObjectError>> {
        Box::pin(self.run(Operation::Get, self.inner.get(name)))
    }

    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ObjectError>> {
        Box::pin(self.run(Operation::Delete, self.inner.delete(name)))
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, ObjectError>> {
        Box::pin(self.run(Operation::List, self.inner.list(prefix)))
    }
}
