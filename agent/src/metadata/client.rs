//! The narrow metadata interface handlers use: submit a record and get its outcome, or read the
//! local replica.

use super::journal::{JournalBackend, JournalError};
use super::records::{JournalEntry, JournalRecord};
use super::replica::Replica;
use super::state::{ApplyOutcome, MetadataState};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("failed to append to the metadata journal: {0}")]
    Journal(#[from] JournalError),
    #[error("timed out after {0:?} waiting for the journal entry to be applied")]
    ApplyTimeout(Duration),
}

#[derive(Clone)]
pub struct MetadataClient {
    journal: Arc<dyn JournalBackend>,
    replica: Arc<Replica>,
    apply_timeout: Duration,
}

impl MetadataClient {
    pub fn new(journal: Arc<dyn JournalBackend>, replica: Arc<Replica>) -> Self {
        Self { journal, replica, apply_timeout: Duration::from_secs(30) }
    }

    /// Appends a record durably and returns what applying it produced.
    pub async fn submit(&self, record: JournalRecord) -> Result<ApplyOutcome, MetadataError> {
        let entry = JournalEntry::new(record);
        let outcome = self.replica.await_outcome(&entry.id);
        if let Err(error) = self.journal.append(&entry).await {
            self.replica.forget(&entry.id);
            return Err(error.into());
        }
        match tokio::time::timeout(self.apply_timeout, outcome).await {
            Ok(Ok(outcome)) => Ok(outcome),
            _ => {
                self.replica.forget(&entry.id);
                Err(MetadataError::ApplyTimeout(self.apply_timeout))
            }
        }
    }

    pub fn read<R>(&self, reader: impl FnOnce(&MetadataState) -> R) -> R {
        self.replica.read(reader)
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.replica.subscribe()
    }

    /// Moves whenever SCRAM credentials may have changed (`Replica::credentials_epoch`).
    pub fn credentials_epoch(&self) -> u64 {
        self.replica.credentials_epoch()
    }
}
