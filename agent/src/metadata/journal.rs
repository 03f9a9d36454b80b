//! Journal backends. A backend makes an entry durable, assigns it a revision (the total order),
//! and delivers every entry — its own and other agents' — to the replica in revision order.
//!
//! `EmbeddedJournal` is a single-process append-only file: `[len u32][crc32c u32][json]` per
//! entry, fsynced before `append` returns. A torn tail left by a crash is cut off on open; it was
//! never acknowledged because its fsync never completed.

use super::records::JournalEntry;
use super::replica::Replica;
use futures::future::BoxFuture;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("failed to open the journal at {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("failed to append to the journal at {path}: {source}")]
    Append { path: PathBuf, source: std::io::Error },
    #[error("failed to encode journal entry: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("journal entry at byte {position} of {path} is corrupt and is not the last one; refusing to start")]
    Corrupt { path: PathBuf, position: u64 },
    #[error("the journal task stopped")]
    Stopped,
    #[error("journal record of {bytes} bytes exceeds the limit of {limit}")]
    TooLarge { bytes: usize, limit: usize },
    #[error("the metadata store is unavailable: {reason}")]
    Unavailable { reason: String },
}

pub trait JournalBackend: Send + Sync {
    /// Makes `entry` durable and returns its revision. The entry reaches the replica in revision
    /// order, possibly before this future resolves.
    fn append<'a>(&'a self, entry: &'a JournalEntry) -> BoxFuture<'a, Result<u64, JournalError>>;
}

pub struct EmbeddedJournal {
    path: PathBuf,
    inner: Arc<Mutex<EmbeddedFile>>,
    replica: Arc<Replica>,
}

struct EmbeddedFile {
    file: File,
    length: u64,
    next_revision: u64,
}

const ENTRY_HEADER_BYTES: usize = 8;

impl EmbeddedJournal {
    /// Opens (or creates) the journal file and replays it into `replica`.
    pub fn open(path: &Path, replica: Arc<Replica>) -> Result<Self, JournalError> {
        let open_error = |source| JournalError::Open { path: path.to_path_buf(), source };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(open_error)?;
        }
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(path).map_err(open_error)?;
        let mut contents = Vec::new();
        file.read_to_end(&mut contents).map_err(open_error)?;
        let mut position = 0usize;
        let mut revision = 0u64;
        while position < contents.len() {
            let Some(entry) = decode_entry(&contents[position..]) else {
                if is_torn_tail(&contents[position..]) {
                    tracing::warn!(path = %path.display(), position, "cutting off a torn, unacknowledged journal tail");
                    break;
                }
                return Err(JournalError::Corrupt { path: path.to_path_buf(), position: position as u64 });
            };
            let (entry, size) = entry;
            revision += 1;
            replica.apply(revision, &entry);
            position += size;
        }
        if position < contents.len() {
            file.set_len(position as u64).map_err(open_error)?;
            file.sync_all().map_err(open_error)?;
        }
        file.seek(SeekFrom::End(0)).map_err(open_error)?;
        let inner = EmbeddedFile { file, length: position as u64, next_revision: revision + 1 };
        Ok(Self { path: path.to_path_buf(), inner: Arc::new(Mutex::new(inner)), replica })
    }
}

fn decode_entry(bytes: &[u8]) -> Option<(JournalEntry, usize)> {
    if bytes.len() < ENTRY_HEADER_BYTES {
        return None;
    }
    let length = u32::from_be_bytes(bytes[0..4].try_into().ok()?) as usize;
    let crc = u32::from_be_bytes(bytes[4..8].try_into().ok()?);
    let payload = bytes.get(ENTRY_HEADER_BYTES..ENTRY_HEADER_BYTES + length)?;
    if crc32c::crc32c(payload) != crc {
        return None;
    }
    let entry = serde_json::from_slice(payload).ok()?;
    Some((entry, ENTRY_HEADER_BYTES + length))
}

/// A tail is torn (rather than corrupt in the middle) when no later entry decodes after it.
fn is_torn_tail(bytes: &[u8]) -> bool {
    if bytes.len() < ENTRY_HEADER_BYTES {
        return true;
    }
    let length = u32::from_be_bytes(bytes[0..4].try_into().unwrap_or_default()) as usize;
    ENTRY_HEADER_BYTES + length >= bytes.len()
}

fn encode_entry(entry: &JournalEntry) -> Result<Vec<u8>, JournalError> {
    let payload = serde_json::to_vec(entry)?;
    let mut framed = Vec::with_capacity(ENTRY_HEADER_BYTES + payload.len());
    framed.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    framed.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    framed.extend_from_slice(&payload);
    Ok(framed)
}

impl JournalBackend for EmbeddedJournal {
    fn append<'a>(&'a self, entry: &'a JournalEntry) -> BoxFuture<'a, Result<u64, JournalError>> {
        Box::pin(async move {
            let framed = encode_entry(entry)?;
            let inner = Arc::clone(&self.inner);
            let replica = Arc::clone(&self.replica);
            let path = self.path.clone();
            let entry = entry.clone();
            // Write, fsync and apply under one lock so revision order equals file order.
            tokio::task::spawn_blocking(move || {
                let mut journal = inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let written = journal.file.write_all(&framed).and_then(|_| journal.file.sync_data());
                if let Err(source) = written {
                    // Leave no partial entry behind for the next append to follow.
                    let length = journal.length;
                    let _ = journal.file.set_len(length);
                    return Err(JournalError::Append { path, source });
                }
                journal.length += framed.len() as u64;
                let revision = journal.next_revision;
                journal.next_revision += 1;
                replica.apply(revision, &entry);
                Ok(revision)
            })
            .await
            .map_err(|_| JournalError::Stopped)?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::records::JournalRecord;

    #[tokio::test]
    async fn entries_survive_reopen_and_a_torn_tail_is_cut() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("journal.log");
        {
            let journal = EmbeddedJournal::open(&path, Arc::new(Replica::new())).unwrap();
            journal.append(&JournalEntry::new(JournalRecord::AllocateProducerId)).await.unwrap();
            journal.append(&JournalEntry::new(JournalRecord::AllocateProducerId)).await.unwrap();
        }
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[0, 0, 1, 0, 9, 9]).unwrap();
        drop(file);
        let replica = Arc::new(Replica::new());
        let journal = EmbeddedJournal::open(&path, Arc::clone(&replica)).unwrap();
        assert_eq!(replica.read(|state| state.next_producer_id), 2);
        let revision = journal.append(&JournalEntry::new(JournalRecord::AllocateProducerId)).await.unwrap();
        assert_eq!(revision, 3);
        drop(journal);
        let replica = Arc::new(Replica::new());
        EmbeddedJournal::open(&path, Arc::clone(&replica)).unwrap();
        assert_eq!(replica.read(|state| state.next_producer_id), 3);
    }
}
