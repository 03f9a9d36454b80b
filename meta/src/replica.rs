//! The agent's in-memory copy of the metadata state. Backends feed it records in journal order;
//! handlers read it without touching the backend; writers wait on it for the outcome of their own
//! records.

use crate::records::JournalEntry;
use crate::state::{ApplyOutcome, MetadataState};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use tokio::sync::{oneshot, watch};

pub struct Replica {
    state: RwLock<MetadataState>,
    applied_revision: watch::Sender<u64>,
    waiters: Mutex<HashMap<String, oneshot::Sender<ApplyOutcome>>>,
    /// Counts changes to SCRAM credentials (and snapshot loads, which may change them), so a
    /// connection authenticated with a password re-checks its user only when this moved.
    credentials_epoch: AtomicU64,
}

impl Default for Replica {
    fn default() -> Self {
        Self::new()
    }
}

impl Replica {
    pub fn new() -> Self {
        Self {
            state: RwLock::new(MetadataState::default()),
            applied_revision: watch::channel(0).0,
            waiters: Mutex::new(HashMap::new()),
            credentials_epoch: AtomicU64::new(0),
        }
    }

    /// Applies one record. Callers guarantee revisions arrive in increasing order.
    pub fn apply(&self, revision: u64, entry: &JournalEntry) {
        let outcome = {
            let mut state = self.state.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            if revision <= state.applied_revision {
                return;
            }
            state.apply(revision, &entry.record)
        };
        if outcome == ApplyOutcome::ScramCredentialsAltered {
            self.credentials_epoch.fetch_add(1, Ordering::Release);
        }
        let waiter = self.waiters.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&entry.id);
        if let Some(waiter) = waiter {
            let _ = waiter.send(outcome);
        }
        self.applied_revision.send_replace(revision);
    }

    /// Registers interest in the outcome of the entry with `id`, before it is appended.
    pub fn await_outcome(&self, id: &str) -> oneshot::Receiver<ApplyOutcome> {
        let (sender, receiver) = oneshot::channel();
        self.waiters.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(id.to_string(), sender);
        receiver
    }

    pub fn forget(&self, id: &str) {
        self.waiters.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(id);
    }

    /// Replaces the whole state (loading a snapshot). Waiters are kept: their records are either
    /// in the snapshot (and their outcome lost: they time out and the writer reports an unknown
    /// outcome) or still ahead in the journal.
    pub fn reset(&self, state: MetadataState) {
        let revision = state.applied_revision;
        *self.state.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = state;
        self.credentials_epoch.fetch_add(1, Ordering::Release);
        self.applied_revision.send_replace(revision);
    }

    pub fn applied_revision(&self) -> u64 {
        *self.applied_revision.borrow()
    }

    /// Moves whenever SCRAM credentials may have changed.
    pub fn credentials_epoch(&self) -> u64 {
        self.credentials_epoch.load(Ordering::Acquire)
    }

    pub fn read<R>(&self, reader: impl FnOnce(&MetadataState) -> R) -> R {
        reader(&self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Changes whenever a record is applied; fetch long-polls wait on it.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied_revision.subscribe()
    }
}
