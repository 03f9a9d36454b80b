//! Journal backends. A backend makes an entry durable, assigns it a revision (the total order),
//! and delivers every entry — its own and other agents' — to the replica in revision order.
//!
//! `EmbeddedJournal` is a single-process append-only file, `journal.log`, fsynced before `append`
//! returns. Its layout and the rules that tell a torn tail from corruption are in [`format`]: in
//! short, a file header `FLOEJRN` + version 2, then `[u32 length][u32 crc32c(payload)]
//! [u32 crc32c(the 8 bytes before)][json]` per entry. On open a torn tail (an append whose fsync
//! never completed, so never acknowledged) is cut off with a warning; anything else that fails a
//! check refuses the open with [`JournalError::Corrupt`], because dropping a committed entry would
//! hand its offsets out again. A version 1 file (no file header) is read with stricter rules and
//! rewritten as version 2 (`journal.log.tmp`, fsync, rename, fsync of the directory) before
//! anything is appended.

mod format;

pub use self::format::Damage;
use self::format::{Format, ScanError};
use super::records::JournalEntry;
use super::replica::Replica;
use futures::future::BoxFuture;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("failed to open the journal at {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("failed to rewrite the journal at {path} in the current format: {source}")]
    Rewrite { path: PathBuf, source: std::io::Error },
    #[error("failed to append to the journal at {path}: {source}")]
    Append { path: PathBuf, source: std::io::Error },
    #[error("failed to encode journal entry: {0}")]
    Encode(#[from] serde_json::Error),
    #[error(
        "the journal {path} is corrupt at byte {position} ({damage}); refusing to open it rather than \
         drop acknowledged commits; restore the file from a backup, or, accepting the loss of every entry from byte \
         {position} on (acknowledged commits among them, whose offsets would be handed out again), cut it there with \
         `truncate -s {position} {path}`"
    )]
    Corrupt { path: PathBuf, position: u64, damage: Damage },
    #[error("the journal {path} has format version {version}, which this build does not read; run a newer Floe")]
    UnsupportedVersion { path: PathBuf, version: u8 },
    #[error(
        "another Floe process is using the journal {path} (it holds {lock}); stop that process, or point this one at \
         another directory (--data-dir, or --metadata embedded://<directory>)"
    )]
    Locked { path: PathBuf, lock: PathBuf },
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
    /// Counts appended records by type (`floe_journal_appends_total`), when set.
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Held for the journal's life: one process writes an embedded journal (a second one would
    /// hand out the same offsets, and its garbage collector would delete the first one's objects).
    _lock: File,
}

struct EmbeddedFile {
    file: File,
    length: u64,
    next_revision: u64,
}

impl EmbeddedJournal {
    /// Opens (or creates) the journal file and replays it into `replica`.
    ///
    /// # Guarantees
    /// - Only a torn tail is ever removed from the file (logged, then the file is cut and fsynced).
    /// - A refused file (`Corrupt`, `UnsupportedVersion`) is left exactly as it was; a failed
    ///   version 1 rewrite leaves the version 1 file (and perhaps `journal.log.tmp` beside it).
    /// - On any error nothing has been applied to `replica`.
    pub fn open(path: &Path, replica: Arc<Replica>) -> Result<Self, JournalError> {
        let open_error = |source| JournalError::Open { path: path.to_path_buf(), source };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(open_error)?;
        }
        // A separate lock file: the journal itself is replaced by rename when rewritten.
        let mut lock_name = path.file_name().unwrap_or_default().to_os_string();
        lock_name.push(".lock");
        let lock_path = path.with_file_name(lock_name);
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(open_error)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(JournalError::Locked { path: path.to_path_buf(), lock: lock_path }),
            Err(std::fs::TryLockError::Error(error)) => return Err(open_error(error)),
        }
        let contents = match std::fs::read(path) {
            Ok(contents) => contents,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(error) => return Err(open_error(error)),
        };
        let scan = format::scan(&contents).map_err(|error| match error {
            ScanError::Corrupt { position, damage } => {
                JournalError::Corrupt { path: path.to_path_buf(), position: position as u64, damage }
            }
            ScanError::UnsupportedVersion { version } => JournalError::UnsupportedVersion { path: path.to_path_buf(), version },
        })?;
        if let Some(torn) = scan.torn {
            tracing::warn!(
                path = %path.display(),
                position = torn.position,
                bytes_dropped = contents.len() - torn.position,
                kind = %torn.kind,
                "cutting off a torn, unacknowledged journal tail"
            );
        }
        let length = match scan.format {
            Format::Current => {
                if scan.end < contents.len() {
                    let file = OpenOptions::new().write(true).open(path).map_err(open_error)?;
                    file.set_len(scan.end as u64).map_err(open_error)?;
                    file.sync_all().map_err(open_error)?;
                }
                scan.end as u64
            }
            Format::Version1 | Format::Empty => {
                if scan.format == Format::Version1 {
                    tracing::info!(path = %path.display(), entries = scan.entries.len(), "rewriting a version 1 journal as version 2");
                }
                let payloads: Vec<&[u8]> = scan.entries.iter().map(|committed| committed.payload).collect();
                rewrite(path, &payloads).map_err(|source| JournalError::Rewrite { path: path.to_path_buf(), source })?
            }
        };
        let mut file = OpenOptions::new().read(true).append(true).open(path).map_err(open_error)?;
        file.seek(SeekFrom::End(0)).map_err(open_error)?;
        let mut revision = 0u64;
        for committed in &scan.entries {
            revision += 1;
            replica.apply(revision, &committed.entry);
        }
        let inner = EmbeddedFile { file, length, next_revision: revision + 1 };
        Ok(Self { path: path.to_path_buf(), inner: Arc::new(Mutex::new(inner)), replica, metrics: None, _lock: lock })
    }
}

impl EmbeddedJournal {
    /// Counts every appended record in `floe_journal_appends_total`, as the etcd journal does.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }
}

/// Replaces the file at `path` with a version 2 journal holding `payloads`, atomically: a crash
/// leaves either the old file or the new one. Returns the new length.
fn rewrite(path: &Path, payloads: &[&[u8]]) -> std::io::Result<u64> {
    let mut bytes = format::FILE_HEADER.to_vec();
    for payload in payloads {
        format::frame(payload, &mut bytes);
    }
    let mut temporary_name = path.file_name().unwrap_or_default().to_os_string();
    temporary_name.push(".tmp");
    let temporary = path.with_file_name(temporary_name);
    let mut file = File::create(&temporary)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)?;
    // The rename is durable only once the directory is.
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(directory)?.sync_all()?;
    Ok(bytes.len() as u64)
}

fn encode_entry(entry: &JournalEntry) -> Result<Vec<u8>, JournalError> {
    let payload = serde_json::to_vec(entry)?;
    let mut framed = Vec::new();
    format::frame(&payload, &mut framed);
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
            let metrics = self.metrics.clone();
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
                if let Some(metrics) = metrics {
                    metrics.journal_appends.with_label_values(&[entry.record.kind()]).inc();
                }
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

    const FILE_HEADER_BYTES: usize = format::FILE_HEADER.len();
    const ENTRY_HEADER_BYTES: usize = 12;

    fn producer_id_entry() -> JournalEntry {
        JournalEntry::new(JournalRecord::AllocateProducerId)
    }

    /// A temporary directory holding `journal.log` with `count` entries appended through the journal.
    async fn journal_with_entries(count: usize) -> (tempfile::TempDir, PathBuf) {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("journal.log");
        let journal = EmbeddedJournal::open(&path, Arc::new(Replica::new())).unwrap();
        for _ in 0..count {
            journal.append(&producer_id_entry()).await.unwrap();
        }
        (directory, path)
    }

    /// Where each version 2 entry of `bytes` starts.
    fn entry_starts(bytes: &[u8]) -> Vec<usize> {
        let mut starts = Vec::new();
        let mut position = FILE_HEADER_BYTES;
        while position + ENTRY_HEADER_BYTES <= bytes.len() {
            starts.push(position);
            position += ENTRY_HEADER_BYTES + u32::from_be_bytes(bytes[position..position + 4].try_into().unwrap()) as usize;
        }
        starts
    }

    fn version_1_file(entries: &[JournalEntry]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for entry in entries {
            let payload = serde_json::to_vec(entry).unwrap();
            bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            bytes.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
            bytes.extend_from_slice(&payload);
        }
        bytes
    }

    fn producer_ids_after_open(path: &Path) -> i64 {
        let replica = Arc::new(Replica::new());
        EmbeddedJournal::open(path, Arc::clone(&replica)).unwrap();
        replica.read(|state| state.next_producer_id)
    }

    /// Writes `bytes` as the journal, opens it, and checks the open is refused at `position` for
    /// `damage`, with a message that says where and what to do, and that the file is untouched.
    fn assert_refused(path: &Path, bytes: &[u8], position: u64, damage: Damage) {
        std::fs::write(path, bytes).unwrap();
        let replica = Arc::new(Replica::new());
        let error = EmbeddedJournal::open(path, Arc::clone(&replica)).err().expect("a corrupt journal must not open");
        match &error {
            JournalError::Corrupt { path: reported, position: reported_position, damage: reported_damage } => {
                assert_eq!((reported.as_path(), *reported_position, reported_damage), (path, position, &damage));
            }
            other => panic!("expected Corrupt, got {other}"),
        }
        let message = error.to_string();
        assert!(message.contains(&format!("{} is corrupt at byte {position}", path.display())), "{message}");
        assert!(message.contains(&format!("truncate -s {position} {}", path.display())), "{message}");
        assert_eq!(std::fs::read(path).unwrap(), bytes, "a refused journal must be left as it was");
        assert_eq!(replica.read(|state| state.next_producer_id), 0, "nothing is applied from a refused journal");
    }

    /// Two committed entries, then `damage_tail` applied to the file: the open keeps both entries,
    /// cuts the file back to them, and the next append gets revision 3 and survives reopen.
    async fn assert_tail_is_cut(damage_tail: impl FnOnce(&mut Vec<u8>)) {
        let (_directory, path) = journal_with_entries(2).await;
        let committed = std::fs::read(&path).unwrap();
        let mut bytes = committed.clone();
        damage_tail(&mut bytes);
        assert_ne!(bytes, committed, "the test must add a tail");
        std::fs::write(&path, &bytes).unwrap();
        let replica = Arc::new(Replica::new());
        let journal = EmbeddedJournal::open(&path, Arc::clone(&replica)).unwrap();
        assert_eq!(replica.read(|state| state.next_producer_id), 2);
        assert_eq!(std::fs::read(&path).unwrap(), committed, "the torn tail is cut off the file");
        assert_eq!(journal.append(&producer_id_entry()).await.unwrap(), 3);
        drop(journal);
        assert_eq!(producer_ids_after_open(&path), 3);
    }

    /// A version 2 entry framed by `format::frame`, as `append` writes it.
    fn framed(entry: &JournalEntry) -> Vec<u8> {
        encode_entry(entry).unwrap()
    }

    #[tokio::test]
    async fn entries_survive_reopen_and_a_torn_tail_is_cut() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("journal.log");
        {
            let journal = EmbeddedJournal::open(&path, Arc::new(Replica::new())).unwrap();
            journal.append(&producer_id_entry()).await.unwrap();
            journal.append(&producer_id_entry()).await.unwrap();
        }
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[0, 0, 1, 0, 9, 9]).unwrap();
        drop(file);
        let replica = Arc::new(Replica::new());
        let journal = EmbeddedJournal::open(&path, Arc::clone(&replica)).unwrap();
        assert_eq!(replica.read(|state| state.next_producer_id), 2);
        let revision = journal.append(&producer_id_entry()).await.unwrap();
        assert_eq!(revision, 3);
        drop(journal);
        assert_eq!(producer_ids_after_open(&path), 3);
    }

    #[tokio::test]
    async fn a_second_opener_is_refused_while_the_first_holds_the_journal_and_admitted_after() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("journal.log");
        let first = EmbeddedJournal::open(&path, Arc::new(Replica::new())).unwrap();
        first.append(&producer_id_entry()).await.unwrap();
        let error = EmbeddedJournal::open(&path, Arc::new(Replica::new())).err().expect("a second writer must be refused");
        assert!(matches!(error, JournalError::Locked { .. }), "{error}");
        assert!(error.to_string().contains("another Floe process") && error.to_string().contains("--data-dir"), "{error}");
        drop(first);
        let replica = Arc::new(Replica::new());
        EmbeddedJournal::open(&path, Arc::clone(&replica)).unwrap();
        assert_eq!(replica.read(|state| state.next_producer_id), 1);
    }

    #[tokio::test]
    async fn a_new_journal_starts_with_the_version_2_file_header() {
        let (_directory, path) = journal_with_entries(1).await;
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..FILE_HEADER_BYTES], b"FLOEJRN\x02");
        assert_eq!(entry_starts(&bytes), vec![FILE_HEADER_BYTES]);
    }

    #[tokio::test]
    async fn a_flipped_bit_in_the_first_length_field_is_refused_and_the_file_left_unchanged() {
        let (_directory, path) = journal_with_entries(3).await;
        let mut bytes = std::fs::read(&path).unwrap();
        let first = entry_starts(&bytes)[0];
        // The length's top byte: 64 MiB more than the entry holds, far past the end of the file.
        bytes[first] ^= 0x04;
        assert_refused(&path, &bytes, first as u64, Damage::HeaderChecksum);
    }

    #[tokio::test]
    async fn a_flipped_bit_in_a_middle_payload_is_refused() {
        let (_directory, path) = journal_with_entries(3).await;
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = entry_starts(&bytes)[1];
        bytes[middle + ENTRY_HEADER_BYTES + 5] ^= 0x01;
        assert_refused(&path, &bytes, middle as u64, Damage::PayloadChecksum);
    }

    #[tokio::test]
    async fn a_flipped_bit_in_a_middle_header_checksum_is_refused() {
        let (_directory, path) = journal_with_entries(3).await;
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = entry_starts(&bytes)[1];
        bytes[middle + 9] ^= 0x80;
        assert_refused(&path, &bytes, middle as u64, Damage::HeaderChecksum);
    }

    #[tokio::test]
    async fn a_flipped_bit_in_the_last_payload_is_refused_not_cut() {
        let (_directory, path) = journal_with_entries(3).await;
        let mut bytes = std::fs::read(&path).unwrap();
        let last = entry_starts(&bytes)[2];
        bytes[last + ENTRY_HEADER_BYTES + 10] ^= 0x10;
        assert_refused(&path, &bytes, last as u64, Damage::PayloadChecksum);
    }

    #[tokio::test]
    async fn a_checksummed_payload_that_is_not_an_entry_is_refused() {
        let (_directory, path) = journal_with_entries(1).await;
        let mut bytes = std::fs::read(&path).unwrap();
        let position = bytes.len();
        format::frame(b"{\"not\":\"an entry\"}", &mut bytes);
        bytes.extend_from_slice(&framed(&producer_id_entry()));
        std::fs::write(&path, &bytes).unwrap();
        let error = EmbeddedJournal::open(&path, Arc::new(Replica::new())).err().expect("must refuse");
        assert!(
            matches!(&error, JournalError::Corrupt { position: at, damage: Damage::Undecodable { .. }, .. } if *at == position as u64),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_file_of_another_format_version_is_refused() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("journal.log");
        std::fs::write(&path, b"FLOEJRN\x03").unwrap();
        let error = EmbeddedJournal::open(&path, Arc::new(Replica::new())).err().expect("must refuse");
        assert!(matches!(error, JournalError::UnsupportedVersion { version: 3, .. }), "{error}");
    }

    #[tokio::test]
    async fn a_partial_entry_header_at_the_end_is_a_torn_tail() {
        assert_tail_is_cut(|bytes| bytes.extend_from_slice(&framed(&producer_id_entry())[..ENTRY_HEADER_BYTES - 1])).await;
    }

    #[tokio::test]
    async fn a_verified_header_whose_payload_runs_past_the_end_is_a_torn_tail() {
        assert_tail_is_cut(|bytes| {
            let entry = framed(&producer_id_entry());
            bytes.extend_from_slice(&entry[..entry.len() - 1]);
        })
        .await;
    }

    #[tokio::test]
    async fn zeros_to_the_end_of_the_file_are_a_torn_tail() {
        assert_tail_is_cut(|bytes| bytes.resize(bytes.len() + 4096, 0)).await;
    }

    #[tokio::test]
    async fn a_last_payload_ending_in_unwritten_sectors_is_a_torn_tail() {
        assert_tail_is_cut(|bytes| {
            let payload_start = bytes.len() + ENTRY_HEADER_BYTES;
            let mut entry = producer_id_entry();
            entry.id = "x".repeat(2000);
            bytes.extend_from_slice(&framed(&entry));
            let first_unwritten = payload_start.next_multiple_of(512);
            assert!(first_unwritten < bytes.len());
            bytes[first_unwritten..].fill(0);
        })
        .await;
    }

    #[tokio::test]
    async fn zeros_ending_the_last_payload_off_a_sector_boundary_are_refused() {
        let (_directory, path) = journal_with_entries(1).await;
        let mut bytes = std::fs::read(&path).unwrap();
        let position = bytes.len();
        let mut entry = producer_id_entry();
        entry.id = "x".repeat(2000);
        bytes.extend_from_slice(&framed(&entry));
        let first_zero = (position + ENTRY_HEADER_BYTES).next_multiple_of(512) + 1;
        bytes[first_zero..].fill(0);
        assert_refused(&path, &bytes, position as u64, Damage::PayloadChecksum);
    }

    #[tokio::test]
    async fn a_file_header_cut_short_opens_as_an_empty_journal() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("journal.log");
        std::fs::write(&path, b"FLOE").unwrap();
        let journal = EmbeddedJournal::open(&path, Arc::new(Replica::new())).unwrap();
        assert_eq!(journal.append(&producer_id_entry()).await.unwrap(), 1);
        drop(journal);
        assert_eq!(producer_ids_after_open(&path), 1);
    }

    #[tokio::test]
    async fn a_version_1_file_opens_and_is_rewritten_as_version_2() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("journal.log");
        let entries = [producer_id_entry(), producer_id_entry(), producer_id_entry()];
        std::fs::write(&path, version_1_file(&entries)).unwrap();
        let replica = Arc::new(Replica::new());
        let journal = EmbeddedJournal::open(&path, Arc::clone(&replica)).unwrap();
        assert_eq!(replica.read(|state| state.next_producer_id), 3);
        let mut expected = format::FILE_HEADER.to_vec();
        for entry in &entries {
            expected.extend_from_slice(&framed(entry));
        }
        assert_eq!(std::fs::read(&path).unwrap(), expected);
        assert!(!directory.path().join("journal.log.tmp").exists());
        assert_eq!(journal.append(&producer_id_entry()).await.unwrap(), 4);
        drop(journal);
        assert_eq!(producer_ids_after_open(&path), 4);
    }

    #[tokio::test]
    async fn a_version_1_file_with_an_unfinished_last_write_drops_it_and_is_rewritten() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("journal.log");
        let mut bytes = version_1_file(&[producer_id_entry(), producer_id_entry()]);
        let torn = version_1_file(&[producer_id_entry()]);
        bytes.extend_from_slice(&torn[..torn.len() - 3]);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(producer_ids_after_open(&path), 2);
        assert!(std::fs::read(&path).unwrap().starts_with(&format::FILE_HEADER));
        assert_eq!(producer_ids_after_open(&path), 2);
    }

    #[tokio::test]
    async fn a_flipped_length_bit_in_a_version_1_file_is_refused_not_truncated() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("journal.log");
        let mut bytes = version_1_file(&[producer_id_entry(), producer_id_entry(), producer_id_entry()]);
        bytes[0] ^= 0x01;
        let length = u32::from_be_bytes(bytes[0..4].try_into().unwrap()) as usize;
        assert_refused(&path, &bytes, 0, Damage::LengthPastEnd { length });
    }

    #[tokio::test]
    async fn a_small_length_error_in_a_middle_version_1_entry_is_refused() {
        // Runs past the end by a few bytes only, so just the later entry gives it away.
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("journal.log");
        let mut bytes = version_1_file(&[producer_id_entry(), producer_id_entry(), producer_id_entry()]);
        let first_length = u32::from_be_bytes(bytes[0..4].try_into().unwrap()) as usize;
        let second = 8 + first_length;
        let length = bytes.len() - second - 8 + 16;
        bytes[second..second + 4].copy_from_slice(&(length as u32).to_be_bytes());
        assert_refused(&path, &bytes, second as u64, Damage::LengthPastEnd { length });
    }

    #[tokio::test]
    async fn a_version_1_last_entry_whose_length_grew_is_refused() {
        // The bytes after its header still match its checksum: a complete entry, not a torn one.
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("journal.log");
        let mut bytes = version_1_file(&[producer_id_entry(), producer_id_entry()]);
        let first_length = u32::from_be_bytes(bytes[0..4].try_into().unwrap()) as usize;
        let last = 8 + first_length;
        bytes[last + 3] ^= 0x20;
        let length = u32::from_be_bytes(bytes[last..last + 4].try_into().unwrap()) as usize;
        assert!(last + 8 + length > bytes.len(), "the flip must make the length run past the end");
        assert_refused(&path, &bytes, last as u64, Damage::LengthPastEnd { length });
    }

    #[tokio::test]
    async fn a_flipped_bit_in_a_middle_version_1_payload_is_refused() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("journal.log");
        let mut bytes = version_1_file(&[producer_id_entry(), producer_id_entry(), producer_id_entry()]);
        let first_length = u32::from_be_bytes(bytes[0..4].try_into().unwrap()) as usize;
        let middle = 8 + first_length;
        bytes[middle + 8 + 4] ^= 0x02;
        assert_refused(&path, &bytes, middle as u64, Damage::PayloadChecksum);
    }
}
